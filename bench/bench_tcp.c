/*
 * The raw TCP baseline: `rgpu-bench tcp-peer` and the client side.
 *
 * Both ends use plain blocking sockets, not rgpu's transport: the baseline
 * measures the network between the two endpoints, so that rgpu's figures
 * divided by it show what rgpu costs, its transport included. The sockets
 * get the options rgpu's TCP transport sets on its own (TCP_NODELAY, 4 MiB
 * send and receive buffers), so the baseline is the best the same kernel
 * path can do, not a slower one. Addresses are "host:port", "[v6]:port" or
 * "tcp://" followed by either. Run the peer where rgpu-server runs.
 *
 * A connection starts with a 16-byte setup message, little endian:
 *   0  4  magic "RBTP"
 *   4  4  mode  (bench_tcp_mode_t)
 *   8  8  size  bytes per message
 * then repeats its mode until the client closes:
 *   ECHO    client sends size bytes, peer sends them back
 *   SINK    client sends size bytes, peer answers 1 byte
 *   SOURCE  client sends 1 byte, peer answers size bytes
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "rgpu/net.h"
#include "rgpu/util.h"

#define BENCH_TCP_MAGIC 0x50544252u     /* "RBTP" read as little-endian u32 */
#define BENCH_TCP_MAX_SIZE (8ull << 30)
#define BENCH_TCP_CONNECT_TIMEOUT_MS 5000
/* The socket buffer size rgpu's TCP transport asks for (transport/tcp/tcp.c). */
#define BENCH_TCP_SOCKBUF (4 << 20)

static void bench_put_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t bench_get_le(const uint8_t *p, int bytes)
{
    uint64_t v = 0;

    for (int i = bytes - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* ---- plain sockets ---- */

static void bench_tcp_tune(int fd)
{
    int one = 1, buf = BENCH_TCP_SOCKBUF;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
}

/* Sends (sending) or receives exactly len bytes of buf: 0, or -1 when the
 * peer closed or failed. A send to a peer that is gone fails, without
 * SIGPIPE. */
static int bench_io_all(int fd, void *buf, size_t len, int sending)
{
    char *p = buf;

    while (len) {
        ssize_t n = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, MSG_WAITALL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int bench_send_all(int fd, void *buf, size_t len)
{
    return bench_io_all(fd, buf, len, 1);
}

static int bench_recv_all(int fd, void *buf, size_t len)
{
    return bench_io_all(fd, buf, len, 0);
}

/* Resolves "host:port", "[v6]:port" or "tcp://..." of either; 0 or -1 with
 * the reason in why. */
static int bench_tcp_resolve(const char *addr, int passive, struct addrinfo **res_p, char *why,
                             size_t why_cap)
{
    if (!strncmp(addr, "tcp://", 6))
        addr += 6;
    else if (strstr(addr, "://")) {
        snprintf(why, why_cap, "the raw TCP baseline takes tcp:// or host:port addresses only");
        return -1;
    }
    return rgpu_addr_resolve(addr, passive, res_p, why, why_cap) == RGPU_OK ? 0 : -1;
}

/* A connected, tuned, blocking socket, or -1 with the reason in why. The
 * connect is bounded by timeout_ms, and made as rgpu's TCP transport makes
 * its own (rgpu_socket_connect). */
static int bench_tcp_dial(const char *addr, int timeout_ms, char *why, size_t why_cap)
{
    struct addrinfo *res;
    int err, fd;

    if (bench_tcp_resolve(addr, 0, &res, why, why_cap) != 0)
        return -1;
    fd = rgpu_socket_connect(res, timeout_ms, &err);
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(why, why_cap, "%s", strerror(err));
        return -1;
    }
    bench_tcp_tune(fd);
    return fd;
}

/* ---- the peer ---- */

static void *bench_tcp_peer_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t setup[16], byte = 0;
    uint64_t size;
    uint32_t mode;
    char *buf = NULL;
    int rc;

    if (bench_recv_all(fd, setup, sizeof(setup)) != 0)
        goto out_close;
    mode = (uint32_t)bench_get_le(setup + 4, 4);
    size = bench_get_le(setup + 8, 8);
    if (bench_get_le(setup, 4) != BENCH_TCP_MAGIC || size == 0 || size > BENCH_TCP_MAX_SIZE ||
        mode < BENCH_TCP_ECHO || mode > BENCH_TCP_SOURCE) {
        fprintf(stderr, "rgpu-bench tcp-peer: a client sent a bad setup message; closed\n");
        goto out_close;
    }
    buf = malloc((size_t)size);
    if (!buf) {
        fprintf(stderr, "rgpu-bench tcp-peer: out of memory for %llu-byte messages\n",
                (unsigned long long)size);
        goto out_close;
    }
    /* Touch the buffer once, so page faults are not part of the first message. */
    memset(buf, 0x5a, (size_t)size);
    for (;;) {
        switch (mode) {
        case BENCH_TCP_ECHO:
            rc = bench_recv_all(fd, buf, (size_t)size);
            if (rc == 0)
                rc = bench_send_all(fd, buf, (size_t)size);
            break;
        case BENCH_TCP_SINK:
            rc = bench_recv_all(fd, buf, (size_t)size);
            if (rc == 0)
                rc = bench_send_all(fd, &byte, 1);
            break;
        default:
            rc = bench_recv_all(fd, &byte, 1);
            if (rc == 0)
                rc = bench_send_all(fd, buf, (size_t)size);
            break;
        }
        if (rc != 0)
            break;      /* the client closed: that is how a test ends */
    }
    free(buf);
out_close:
    close(fd);
    return NULL;
}

static void bench_tcp_peer_usage(FILE *f)
{
    fprintf(f,
            "usage: rgpu-bench tcp-peer --listen HOST:PORT\n"
            "  A raw TCP echo/sink/source peer for rgpu-bench's TCP baseline, on plain\n"
            "  sockets. Port 0 picks a free port. Prints\n"
            "    rgpu-bench tcp-peer listening on HOST:PORT\n"
            "  once ready, then serves until killed.\n");
}

int bench_tcp_peer_main(int argc, char **argv)
{
    const char *listen_addr = NULL;
    struct addrinfo *res;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char why[256] = "", host[64] = "?", port[16] = "?";
    int lfd, one = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
            listen_addr = argv[++i];
        } else if (!strncmp(argv[i], "--listen=", 9)) {
            listen_addr = argv[i] + 9;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            bench_tcp_peer_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "rgpu-bench tcp-peer: unknown argument \"%s\"\n", argv[i]);
            bench_tcp_peer_usage(stderr);
            return 2;
        }
    }
    if (!listen_addr) {
        bench_tcp_peer_usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (bench_tcp_resolve(listen_addr, 1, &res, why, sizeof(why)) != 0) {
        fprintf(stderr, "rgpu-bench tcp-peer: cannot listen on %s: %s\n", listen_addr, why);
        return 1;
    }
    lfd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (lfd >= 0)
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, res->ai_addr, res->ai_addrlen) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0) {
        fprintf(stderr, "rgpu-bench tcp-peer: cannot listen on %s: %m\n", listen_addr);
        freeaddrinfo(res);
        if (lfd >= 0)
            close(lfd);
        return 1;
    }
    freeaddrinfo(res);
    getnameinfo((struct sockaddr *)&ss, sslen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    printf(ss.ss_family == AF_INET6 ? "rgpu-bench tcp-peer listening on [%s]:%s\n"
                                    : "rgpu-bench tcp-peer listening on %s:%s\n",
           host, port);
    fflush(stdout);
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        pthread_t thread;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            break;
        }
        bench_tcp_tune(fd);
        if (pthread_create(&thread, NULL, bench_tcp_peer_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(thread);
    }
    fprintf(stderr, "rgpu-bench tcp-peer: accept failed: %m\n");
    close(lfd);
    return 1;
}

/* ---- the client side ---- */

int bench_tcp_connect(bench_tcp_conn_t *c, const char *addr, bench_tcp_mode_t mode, size_t size)
{
    char why[256] = "";
    uint8_t setup[16];
    int fd;

    memset(c, 0, sizeof(*c));
    fd = bench_tcp_dial(addr, BENCH_TCP_CONNECT_TIMEOUT_MS, why, sizeof(why));
    if (fd < 0) {
        fprintf(stderr, "rgpu-bench: cannot reach the TCP peer at %s: %s\n", addr, why);
        return -1;
    }
    bench_put_le(setup, BENCH_TCP_MAGIC, 4);
    bench_put_le(setup + 4, mode, 4);
    bench_put_le(setup + 8, size, 8);
    if (bench_send_all(fd, setup, sizeof(setup)) != 0) {
        fprintf(stderr, "rgpu-bench: the TCP peer at %s closed the connection\n", addr);
        close(fd);
        return -1;
    }
    c->connected = 1;
    c->fd = fd;
    c->addr = addr;
    c->mode = mode;
    c->size = size;
    return 0;
}

int bench_tcp_step(bench_tcp_conn_t *c, void *buf, double *us)
{
    uint8_t byte = 1;
    int rc;
    double t0 = bench_now_us();

    switch (c->mode) {
    case BENCH_TCP_ECHO:
        rc = bench_send_all(c->fd, buf, c->size);
        if (rc == 0)
            rc = bench_recv_all(c->fd, buf, c->size);
        break;
    case BENCH_TCP_SINK:
        rc = bench_send_all(c->fd, buf, c->size);
        if (rc == 0)
            rc = bench_recv_all(c->fd, &byte, 1);
        break;
    default:
        rc = bench_send_all(c->fd, &byte, 1);
        if (rc == 0)
            rc = bench_recv_all(c->fd, buf, c->size);
        break;
    }
    *us = bench_now_us() - t0;
    if (rc != 0) {
        fprintf(stderr, "rgpu-bench: raw TCP with %s failed: the peer closed the connection\n",
                c->addr);
        return -1;
    }
    return 0;
}

void bench_tcp_disconnect(bench_tcp_conn_t *c)
{
    if (c->connected)
        close(c->fd);
    c->connected = 0;
}
