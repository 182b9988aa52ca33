/*
 * The raw TCP baseline: `rgpu-bench tcp-peer` and the client side.
 *
 * Both ends use rgpu's own TCP transport (through rgpu_transport_for_address,
 * which takes "tcp://host:port" or "host:port": the same socket
 * options, buffer sizes, send and receive loops as rgpu-server and the
 * client library), so the baseline crosses exactly the path rgpu crosses,
 * minus rgpu. Run the peer where rgpu-server runs.
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
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "rgpu/transport.h"

#define BENCH_TCP_MAGIC 0x50544252u     /* "RBTP" read as little-endian u32 */
#define BENCH_TCP_MAX_SIZE (8ull << 30)
#define BENCH_TCP_CONNECT_TIMEOUT_MS 5000

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

/* ---- the peer ---- */

static void *bench_tcp_peer_conn(void *arg)
{
    rgpu_link_t *link = arg;
    uint8_t setup[16], byte = 0;
    uint64_t size;
    uint32_t mode;
    char *buf = NULL;
    rgpu_status_t st;

    if (rgpu_link_recv(link, setup, sizeof(setup)) != RGPU_OK)
        goto out_close;
    mode = (uint32_t)bench_get_le(setup + 4, 4);
    size = bench_get_le(setup + 8, 8);
    if (bench_get_le(setup, 4) != BENCH_TCP_MAGIC || size == 0 || size > BENCH_TCP_MAX_SIZE ||
        mode < BENCH_TCP_ECHO || mode > BENCH_TCP_SOURCE) {
        fprintf(stderr, "rgpu-bench tcp-peer: %s sent a bad setup message; closed\n", link->peer);
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
            st = rgpu_link_recv(link, buf, (size_t)size);
            if (st == RGPU_OK)
                st = rgpu_link_send(link, buf, (size_t)size);
            break;
        case BENCH_TCP_SINK:
            st = rgpu_link_recv(link, buf, (size_t)size);
            if (st == RGPU_OK)
                st = rgpu_link_send(link, &byte, 1);
            break;
        default:
            st = rgpu_link_recv(link, &byte, 1);
            if (st == RGPU_OK)
                st = rgpu_link_send(link, buf, (size_t)size);
            break;
        }
        if (st != RGPU_OK)
            break;      /* the client closed: that is how a test ends */
    }
    free(buf);
out_close:
    rgpu_link_close(link);
    return NULL;
}

static void bench_tcp_peer_usage(FILE *f)
{
    fprintf(f,
            "usage: rgpu-bench tcp-peer --listen HOST:PORT\n"
            "  A raw TCP echo/sink/source peer for rgpu-bench's TCP baseline, using rgpu's\n"
            "  TCP transport. Port 0 picks a free port. Prints\n"
            "    rgpu-bench tcp-peer listening on HOST:PORT\n"
            "  once ready, then serves until killed.\n");
}

int bench_tcp_peer_main(int argc, char **argv)
{
    const char *listen_addr = NULL;
    rgpu_listener_t *listener;
    rgpu_status_t st;
    const rgpu_transport_ops_t *ops;
    const char *bare;
    char reason[256] = "";

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
    st = rgpu_transport_for_address(listen_addr, &ops, &bare, reason, sizeof(reason));
    if (st == RGPU_OK)
        st = ops->listen(bare, &listener);
    if (st != RGPU_OK) {
        fprintf(stderr, "rgpu-bench tcp-peer: cannot listen on %s: %s\n", listen_addr,
                reason[0] ? reason : rgpu_status_str(st));
        return 1;
    }
    printf("rgpu-bench tcp-peer listening on %s\n", listener->local);
    fflush(stdout);
    for (;;) {
        struct pollfd pfd = {listener->ops->listener_fd(listener), POLLIN, 0};
        rgpu_link_t *link;
        pthread_t thread;

        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            break;
        while ((st = listener->ops->accept(listener, &link)) == RGPU_OK) {
            if (pthread_create(&thread, NULL, bench_tcp_peer_conn, link) != 0) {
                rgpu_link_close(link);
                continue;
            }
            pthread_detach(thread);
        }
    }
    listener->ops->listener_close(listener);
    return 1;
}

/* ---- the client side ---- */

int bench_tcp_connect(bench_tcp_conn_t *c, const char *addr, bench_tcp_mode_t mode, size_t size)
{
    char reason[256] = "";
    uint8_t setup[16];
    rgpu_link_t *link;
    rgpu_status_t st;
    const rgpu_transport_ops_t *ops;
    const char *bare;

    memset(c, 0, sizeof(*c));
    st = rgpu_transport_for_address(addr, &ops, &bare, reason, sizeof(reason));
    if (st == RGPU_OK)
        st = ops->connect(bare, BENCH_TCP_CONNECT_TIMEOUT_MS, &link, reason, sizeof(reason));
    if (st != RGPU_OK) {
        fprintf(stderr, "rgpu-bench: cannot reach the TCP peer at %s: %s\n", addr,
                reason[0] ? reason : rgpu_status_str(st));
        return -1;
    }
    bench_put_le(setup, BENCH_TCP_MAGIC, 4);
    bench_put_le(setup + 4, mode, 4);
    bench_put_le(setup + 8, size, 8);
    if (rgpu_link_send(link, setup, sizeof(setup)) != RGPU_OK) {
        fprintf(stderr, "rgpu-bench: the TCP peer at %s closed the connection\n", addr);
        rgpu_link_close(link);
        return -1;
    }
    c->link = link;
    c->addr = addr;
    c->mode = mode;
    c->size = size;
    return 0;
}

int bench_tcp_step(bench_tcp_conn_t *c, void *buf, double *us)
{
    rgpu_link_t *link = c->link;
    uint8_t byte = 1;
    rgpu_status_t st;
    double t0 = bench_now_us();

    switch (c->mode) {
    case BENCH_TCP_ECHO:
        st = rgpu_link_send(link, buf, c->size);
        if (st == RGPU_OK)
            st = rgpu_link_recv(link, buf, c->size);
        break;
    case BENCH_TCP_SINK:
        st = rgpu_link_send(link, buf, c->size);
        if (st == RGPU_OK)
            st = rgpu_link_recv(link, &byte, 1);
        break;
    default:
        st = rgpu_link_send(link, &byte, 1);
        if (st == RGPU_OK)
            st = rgpu_link_recv(link, buf, c->size);
        break;
    }
    *us = bench_now_us() - t0;
    if (st != RGPU_OK) {
        fprintf(stderr, "rgpu-bench: raw TCP with %s failed: %s\n", c->addr, rgpu_status_str(st));
        return -1;
    }
    return 0;
}

void bench_tcp_disconnect(bench_tcp_conn_t *c)
{
    if (c->link)
        rgpu_link_close(c->link);
    c->link = NULL;
}
