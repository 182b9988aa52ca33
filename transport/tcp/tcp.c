/*
 * TCP transport: blocking sockets, TCP_NODELAY (frames are batched above us,
 * so Nagle only adds latency), keepalive and TCP_USER_TIMEOUT so that a peer
 * that vanished without a FIN is noticed in seconds, not hours.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rgpu/net.h"
#include "rgpu/util.h"
#include "transport_int.h"

/* The largest message: batched asynchronous calls and small transfers go
 * inline, larger bulk by get/put (carried in the stream all the same). */
#define RGPU_TCP_MAX_EAGER (256u << 10)

/* Receives go through a small buffer: a stream of small frames (batched
 * asynchronous calls) then costs one recv per buffer, not two per frame.
 * Reads at least this large bypass it and land in place. */
#define RGPU_TCP_RX_CAP (64u << 10)

typedef struct {
    rgpu_link_t base;
    int fd;
    size_t rx_pos, rx_len;      /* unread bytes are rx[rx_pos, rx_len) */
    uint8_t rx[RGPU_TCP_RX_CAP];
} rgpu_tcp_link_t;

typedef struct {
    rgpu_listener_t base;
    int fd;
} rgpu_tcp_listener_t;

static void rgpu_tcp_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[64] = "?", port[16] = "?";

    getnameinfo(sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                host, sizeof(host), port, sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static void rgpu_tcp_tune(int fd)
{
    int one = 1, idle = 5, intvl = 2, cnt = 3;
    unsigned user_timeout_ms = 15000;
    int buf = 4 << 20;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
    /* Large buffers let a bulk stream run ahead of the receiver's copies. */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

static rgpu_status_t rgpu_tcp_link_new(rgpu_transport_t *tp, int fd, rgpu_link_t **link_p)
{
    rgpu_tcp_link_t *link = calloc(1, sizeof(*link));
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (!link)
        return RGPU_ERR_NOMEM;
    link->base.ops = &rgpu_tcp_ops;
    link->fd = fd;
    if (!tp || rgpu__link_init(&link->base, tp, fd) != RGPU_OK) {
        free(link);
        return RGPU_ERR_NOMEM;
    }
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        rgpu_tcp_format_addr((struct sockaddr *)&ss, link->base.peer, sizeof(link->base.peer));
    rgpu_tcp_tune(fd);
    *link_p = &link->base;
    return RGPU_OK;
}

static rgpu_status_t rgpu_tcp_resolve(const char *addr, int passive, struct addrinfo **res_p)
{
    return rgpu_addr_resolve(addr, passive, res_p, NULL, 0);
}

static rgpu_status_t rgpu_tcp_tp_connect(rgpu_transport_t *tp, const char *addr, int timeout_ms,
                                         rgpu_link_t **link_p, char *reason, size_t reason_cap)
{
    struct addrinfo *res;
    rgpu_status_t status;
    int fd, err;

    if (rgpu_tcp_resolve(addr, 0, &res) != RGPU_OK) {
        if (reason)
            snprintf(reason, reason_cap, "cannot resolve address \"%s\" (expected host:port)", addr);
        return RGPU_ERR_ADDRESS;
    }
    fd = rgpu_socket_connect(res, timeout_ms, &err);
    freeaddrinfo(res);
    if (fd < 0) {
        if (reason)
            snprintf(reason, reason_cap, "%s", strerror(err));
        return err == ETIMEDOUT ? RGPU_ERR_TIMEOUT : RGPU_ERR_CONN_REFUSED;
    }
    status = rgpu_tcp_link_new(tp, fd, link_p);
    if (status != RGPU_OK)
        close(fd);
    return status;
}

static rgpu_status_t rgpu_tcp_connect(const char *addr, int timeout_ms, rgpu_link_t **link_p,
                                      char *reason, size_t reason_cap)
{
    return rgpu_tcp_tp_connect(rgpu__transport_default(&rgpu_tcp_ops), addr, timeout_ms, link_p,
                               reason, reason_cap);
}

static rgpu_status_t rgpu_tcp_tp_listen(rgpu_transport_t *tp, const char *addr,
                                        rgpu_listener_t **listener_p)
{
    struct addrinfo *res;
    rgpu_tcp_listener_t *listener;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd, one = 1;
    rgpu_status_t status;

    status = rgpu_tcp_resolve(addr, 1, &res);
    if (status != RGPU_OK)
        return status;
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        status = RGPU_ERR_IO;
        goto out_free_res;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        status = errno == EADDRINUSE ? RGPU_ERR_EXISTS : RGPU_ERR_IO;
        goto out_close;
    }
    listener = calloc(1, sizeof(*listener));
    if (!listener) {
        status = RGPU_ERR_NOMEM;
        goto out_close;
    }
    listener->base.ops = &rgpu_tcp_ops;
    listener->base.tp = tp;
    listener->fd = fd;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        rgpu_tcp_format_addr((struct sockaddr *)&ss, listener->base.local, sizeof(listener->base.local));
    freeaddrinfo(res);
    *listener_p = &listener->base;
    return RGPU_OK;

out_close:
    close(fd);
out_free_res:
    freeaddrinfo(res);
    return status;
}

static rgpu_status_t rgpu_tcp_listen(const char *addr, rgpu_listener_t **listener_p)
{
    return rgpu_tcp_tp_listen(rgpu__transport_default(&rgpu_tcp_ops), addr, listener_p);
}

static int rgpu_tcp_listener_fd(rgpu_listener_t *listener)
{
    return ((rgpu_tcp_listener_t *)listener)->fd;
}

static rgpu_status_t rgpu_tcp_accept(rgpu_listener_t *listener, rgpu_link_t **link_p)
{
    int fd = accept4(((rgpu_tcp_listener_t *)listener)->fd, NULL, NULL, SOCK_CLOEXEC);
    rgpu_status_t status;

    if (fd < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? RGPU_ERR_TIMEOUT : RGPU_ERR_IO;
    status = rgpu_tcp_link_new(listener->tp, fd, link_p);
    if (status != RGPU_OK)
        close(fd);
    return status;
}

static void rgpu_tcp_listener_close(rgpu_listener_t *listener)
{
    close(((rgpu_tcp_listener_t *)listener)->fd);
    free(listener);
}

static rgpu_status_t rgpu_tcp_errno_status(void)
{
    switch (errno) {
    case EPIPE:
    case ECONNRESET:
        return RGPU_ERR_CONN_CLOSED;
    case ETIMEDOUT:
        return RGPU_ERR_TIMEOUT;
    default:
        return RGPU_ERR_IO;
    }
}

static rgpu_status_t rgpu_tcp_sendv(rgpu_link_t *base, const struct iovec *iov_in, int iovcnt)
{
    rgpu_tcp_link_t *link = (rgpu_tcp_link_t *)base;
    struct iovec iov[16];
    struct msghdr msg = {0};

    if (iovcnt > 16)
        return RGPU_ERR_INVALID_ARG;
    memcpy(iov, iov_in, (size_t)iovcnt * sizeof(*iov));
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)iovcnt;
    while (msg.msg_iovlen > 0) {
        ssize_t n = sendmsg(link->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return rgpu_tcp_errno_status();
        }
        /* Advance past what was sent. */
        while (msg.msg_iovlen > 0 && (size_t)n >= msg.msg_iov->iov_len) {
            n -= (ssize_t)msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + n;
            msg.msg_iov->iov_len -= (size_t)n;
        }
    }
    return RGPU_OK;
}

static rgpu_status_t rgpu_tcp_recv(rgpu_link_t *base, void *buf, size_t len)
{
    rgpu_tcp_link_t *link = (rgpu_tcp_link_t *)base;
    char *p = buf;

    while (len > 0) {
        size_t have = link->rx_len - link->rx_pos;
        ssize_t n;

        if (have > 0) {
            size_t take = have < len ? have : len;
            memcpy(p, link->rx + link->rx_pos, take);
            link->rx_pos += take;
            p += take;
            len -= take;
            continue;
        }
        if (len >= RGPU_TCP_RX_CAP) {
            /* Bulk: straight into the caller's memory. */
            n = recv(link->fd, p, len, MSG_WAITALL);
        } else {
            /* Small: take whatever has arrived, up to a buffer full. */
            n = recv(link->fd, link->rx, RGPU_TCP_RX_CAP, 0);
            if (n > 0) {
                link->rx_pos = 0;
                link->rx_len = (size_t)n;
                continue;
            }
        }
        if (n == 0)
            return RGPU_ERR_CONN_CLOSED;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return rgpu_tcp_errno_status();
        }
        p += n;
        len -= (size_t)n;
    }
    return RGPU_OK;
}

static size_t rgpu_tcp_buffered(rgpu_link_t *base)
{
    rgpu_tcp_link_t *link = (rgpu_tcp_link_t *)base;

    return link->rx_len - link->rx_pos;
}

static int rgpu_tcp_wait_readable(rgpu_link_t *base, int timeout_ms)
{
    struct pollfd pfd = {.fd = ((rgpu_tcp_link_t *)base)->fd, .events = POLLIN};
    int n;

    do
        n = poll(&pfd, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    /* An error or a hang-up counts: the next receive reports it. */
    return n != 0;
}

static void rgpu_tcp_shutdown(rgpu_link_t *base)
{
    shutdown(((rgpu_tcp_link_t *)base)->fd, SHUT_RDWR);
}

static void rgpu_tcp_shutdown_recv(rgpu_link_t *base)
{
    shutdown(((rgpu_tcp_link_t *)base)->fd, SHUT_RD);
}

static void rgpu_tcp_close(rgpu_link_t *base)
{
    rgpu__link_fini(base);
    close(((rgpu_tcp_link_t *)base)->fd);
    free(base);
}

static rgpu_status_t rgpu_tcp_tp_open(rgpu_transport_t *tp)
{
    tp->caps.max_eager = RGPU_TCP_MAX_EAGER;
    tp->caps.remote_access = 0;
    tp->caps.max_rma = RGPU_FRAME_DEFAULT_MAX_BULK;
    tp->caps.rma_align = 1;
    tp->caps.reg_pins = 0;
    tp->caps.stream_bulk = 1;   /* bulk past max_eager follows its frame (RGPU_FRAME_F_STREAM) */
    return RGPU_OK;
}

const rgpu_transport_ops_t rgpu_tcp_ops = {
    .name = "tcp",
    .connect = rgpu_tcp_connect,
    .listen = rgpu_tcp_listen,
    .listener_fd = rgpu_tcp_listener_fd,
    .accept = rgpu_tcp_accept,
    .listener_close = rgpu_tcp_listener_close,
    .sendv = rgpu_tcp_sendv,
    .recv = rgpu_tcp_recv,
    .buffered = rgpu_tcp_buffered,
    .wait_readable = rgpu_tcp_wait_readable,
    .shutdown = rgpu_tcp_shutdown,
    .shutdown_recv = rgpu_tcp_shutdown_recv,
    .close = rgpu_tcp_close,
    .tp_open = rgpu_tcp_tp_open,
    .tp_connect = rgpu_tcp_tp_connect,
    .tp_listen = rgpu_tcp_tp_listen,
};
