/* TCP addresses and connecting (rgpu/net.h), on loopback: what the TCP
 * transport and rgpu-bench's baseline rely on. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rgpu/net.h"

#define NET_TIMEOUT 30

/* A TCP socket bound to a free loopback port, listening with backlog unless
 * backlog < 0 (then bound only: connects to it are refused). Its address,
 * "127.0.0.1:PORT", goes to addr. */
static int net_bound(int backlog, char *addr, size_t addr_cap)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0, "bind: %s", strerror(errno));
    if (backlog >= 0)
        cr_assert_eq(listen(fd, backlog), 0, "listen: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(addr, addr_cap, "127.0.0.1:%u", ntohs(sin.sin_port));
    return fd;
}

static struct addrinfo *net_resolve(const char *addr)
{
    struct addrinfo *res = NULL;
    char why[128] = "";

    cr_assert_eq(rgpu_addr_resolve(addr, 0, &res, why, sizeof(why)), RGPU_OK, "%s: %s", addr, why);
    cr_assert_not_null(res);
    return res;
}

TestSuite(net, .timeout = NET_TIMEOUT);

Test(net, resolve_gives_stream_addresses_and_refuses_what_is_no_address)
{
    static const char *bad[] = {"", "127.0.0.1", ":7000", "host:", "host:http", "host:70000"};
    struct addrinfo *res = net_resolve("127.0.0.1:7000");
    char why[128];

    cr_expect_eq(res->ai_family, AF_INET);
    cr_expect_eq(res->ai_socktype, SOCK_STREAM);
    cr_expect_eq(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 7000);
    freeaddrinfo(res);
    res = net_resolve("[::1]:7001");
    cr_expect_eq(res->ai_family, AF_INET6);
    freeaddrinfo(res);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        res = NULL;
        why[0] = '\0';
        cr_expect_eq(rgpu_addr_resolve(bad[i], 0, &res, why, sizeof(why)), RGPU_ERR_ADDRESS,
                     "\"%s\" resolved", bad[i]);
        cr_expect_null(res);
        cr_expect_str_eq(why, "not an address (expected host:port)", "\"%s\": %s", bad[i], why);
        /* The reason is optional. */
        cr_expect_eq(rgpu_addr_resolve(bad[i], 0, &res, NULL, 0), RGPU_ERR_ADDRESS);
    }
}

Test(net, connect_gives_a_blocking_close_on_exec_socket_that_carries_bytes)
{
    char addr[64], byte = 0;
    int lfd = net_bound(8, addr, sizeof(addr)), err = 0, fd, peer;
    struct addrinfo *res = net_resolve(addr);

    fd = rgpu_socket_connect(res, 5000, &err);
    freeaddrinfo(res);
    cr_assert_geq(fd, 0, "connect to %s: %s", addr, strerror(err));
    cr_expect_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "the socket is left non-blocking");
    cr_expect_neq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "the socket is inherited by exec");
    peer = accept(lfd, NULL, NULL);
    cr_assert_geq(peer, 0, "accept: %s", strerror(errno));
    cr_expect_eq(write(fd, "x", 1), 1);
    cr_expect_eq(read(peer, &byte, 1), 1);
    cr_expect_eq(byte, 'x');
    close(peer);
    close(fd);
    close(lfd);
}

Test(net, connect_where_nothing_listens_is_refused)
{
    char addr[64];
    int bfd = net_bound(-1, addr, sizeof(addr)), err = 0;
    struct addrinfo *res = net_resolve(addr);

    cr_expect_eq(rgpu_socket_connect(res, 5000, &err), -1);
    cr_expect_eq(err, ECONNREFUSED, "%s", strerror(err));
    freeaddrinfo(res);
    close(bfd);
}

/* A name may resolve to several addresses (::1 and 127.0.0.1 for
 * localhost): one that refuses does not stop the next from being tried. */
Test(net, connect_tries_each_address_in_turn)
{
    char refusing[64], listening[64];
    int bfd = net_bound(-1, refusing, sizeof(refusing));
    int lfd = net_bound(8, listening, sizeof(listening)), err = 0, fd, peer;
    struct addrinfo *first = net_resolve(refusing), *second = net_resolve(listening);

    cr_assert_null(first->ai_next, "127.0.0.1 resolved to more than one address");
    first->ai_next = second;
    fd = rgpu_socket_connect(first, 5000, &err);
    first->ai_next = NULL;
    cr_assert_geq(fd, 0, "connect: %s", strerror(err));
    peer = accept(lfd, NULL, NULL);
    cr_expect_geq(peer, 0, "the second address was not the one connected");
    close(peer);
    close(fd);
    freeaddrinfo(first);
    freeaddrinfo(second);
    close(lfd);
    close(bfd);
}

/* A listener whose accept queue is full drops new connection requests
 * (Linux holds backlog + 1 connections): the connect that follows is
 * answered by nobody and ends at its bound, not at the kernel's own
 * (minutes of retries). */
Test(net, connect_to_a_peer_that_does_not_answer_ends_at_its_bound)
{
    char addr[64];
    int lfd = net_bound(0, addr, sizeof(addr)), err = 0, fds[8], n = 0;
    struct addrinfo *res = net_resolve(addr);

    while (n < 8) {
        fds[n] = rgpu_socket_connect(res, 300, &err);
        if (fds[n] < 0)
            break;
        n++;
    }
    cr_expect_lt(n, 8, "%d connects to a listener with backlog 0 all succeeded", n);
    cr_expect_eq(err, ETIMEDOUT, "after %d connections: %s", n, strerror(err));
    while (n > 0)
        close(fds[--n]);
    freeaddrinfo(res);
    close(lfd);
}
