/*
 * bench_verbs: the verbs transport's own figures in perftest's columns, for
 * scripts/bench-verbs.sh to set beside ib_write_bw / ib_read_bw /
 * ib_send_lat measured between the same endpoints in the same run.
 *
 *   bench_verbs write|read ADDR SIZE ITERS   puts (RDMA WRITE) / gets (RDMA
 *                                            READ) of SIZE bytes, a window
 *                                            of them in flight, as ib_*_bw
 *   bench_verbs lat ADDR SIZE ITERS          ping-pong of SIZE-byte
 *                                            messages, half the round trip,
 *                                            as ib_send_lat
 *
 * ADDR is the rxe/IPoIB address to listen on (port 0: any); both ends run
 * in this process, each with its own transport instance, the serving end
 * on its own thread, as two processes on one node would.
 */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rgpu/transport.h"

#define WINDOW 16  /* transfers in flight, as perftest's default tx depth allows */

static rgpu_listener_t *server_listener;
static rgpu_link_t *server_link;
static volatile int server_stop;
static int accepted;
static pthread_mutex_t accepted_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t accepted_cond = PTHREAD_COND_INITIALIZER;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, rgpu_status_t status, const char *reason)
{
    fprintf(stderr, "bench_verbs: %s: %s%s%s\n", what, rgpu_status_str(status),
            reason && *reason ? ": " : "", reason ? reason : "");
    exit(1);
}

/* The serving end: echoes every message (lat); for bw, the HCA serves. */
static void *serve(void *arg)
{
    struct pollfd pfd = {server_listener->ops->listener_fd(server_listener), POLLIN, 0};

    if (poll(&pfd, 1, 10000) != 1 || server_listener->ops->accept(server_listener, &server_link) != RGPU_OK)
        server_link = NULL;
    pthread_mutex_lock(&accepted_lock);
    accepted = 1;
    pthread_cond_broadcast(&accepted_cond);
    pthread_mutex_unlock(&accepted_lock);
    while (server_link && !server_stop) {
        rgpu_msg_t *m;
        rgpu_status_t status = rgpu_link_msg_recv(server_link, &m, 100);

        if (status == RGPU_ERR_TIMEOUT)
            continue;
        if (status != RGPU_OK)
            break;
        if (m->header.type == 7) {
            uint8_t head[RGPU_FRAME_HEADER_SIZE];
            struct iovec iov[2] = {{head, sizeof(head)}, {(void *)m->body, m->header.body_len}};
            rgpu_frame_header_encode(&m->header, head);
            status = rgpu_link_msg_send(server_link, iov, 2, NULL);
        }
        rgpu_msg_release(m);
        if (status != RGPU_OK)
            break;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rgpu_transport_t *tpc, *tps;
    rgpu_listener_t *l;
    rgpu_link_t *c;
    rgpu_mem_t *lmem, *rmem;
    rgpu_mem_desc_t desc;
    rgpu_status_t status;
    char reason[256] = "";
    pthread_t th;
    size_t size;
    long iters;
    unsigned char *lbuf, *rbuf;
    const char *mode;
    double t0 = 0, t1;

    if (argc != 5) {
        fprintf(stderr, "usage: bench_verbs write|read|lat ADDR SIZE ITERS\n");
        return 2;
    }
    mode = argv[1];
    size = (size_t)strtoull(argv[3], NULL, 10);
    iters = atol(argv[4]);
    if (size == 0 || iters <= 0)
        return 2;
    if ((status = rgpu_transport_open("verbs", &tpc)) != RGPU_OK ||
        (status = rgpu_transport_open("verbs", &tps)) != RGPU_OK) {
        rgpu_transport_usable("verbs", reason, sizeof(reason));
        die("opening verbs", status, reason);
    }
    if ((status = rgpu_transport_listen(tps, argv[2], &l)) != RGPU_OK)
        die("listen", status, NULL);
    /* Over RDMA a connect completes once the other side accepts: the
     * serving thread accepts, then serves. */
    server_listener = l;
    pthread_create(&th, NULL, serve, NULL);
    if ((status = rgpu_transport_connect(tpc, l->local, 10000, &c, reason, sizeof(reason))) != RGPU_OK)
        die("connect", status, reason);
    pthread_mutex_lock(&accepted_lock);
    while (!accepted)
        pthread_cond_wait(&accepted_cond, &accepted_lock);
    pthread_mutex_unlock(&accepted_lock);
    if (!server_link)
        die("accept", RGPU_ERR_TIMEOUT, NULL);

    if (strcmp(mode, "lat") == 0) {
        size_t body = size > RGPU_FRAME_HEADER_SIZE ? size - RGPU_FRAME_HEADER_SIZE : 0;
        uint8_t *payload = calloc(1, body + 1), head[RGPU_FRAME_HEADER_SIZE];
        rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, 7, 0, (uint32_t)body, 0, 0};
        struct iovec iov[2] = {{head, sizeof(head)}, {payload, body}};
        long warm = iters / 10 + 1;

        for (long i = -warm; i < iters; i++) {
            rgpu_msg_t *m;
            if (i == 0)
                t0 = now_s();
            h.seq = (uint64_t)(i + warm);
            rgpu_frame_header_encode(&h, head);
            if ((status = rgpu_link_msg_send(c, iov, 2, NULL)) != RGPU_OK ||
                (status = rgpu_link_msg_recv(c, &m, 10000)) != RGPU_OK)
                die("ping-pong", status, rgpu_link_reason(c));
            rgpu_msg_release(m);
        }
        t1 = now_s();
        /* perftest's ib_send_lat reports half the round trip. */
        printf(" #bytes #iterations t_avg[usec]\n %zu %ld %.2f\n", size, iters,
               (t1 - t0) / (double)iters / 2.0 * 1e6);
        free(payload);
    } else {
        int is_get = strcmp(mode, "read") == 0;
        rgpu_completion_t cs[WINDOW];
        long posted = 0, done = 0;

        lbuf = malloc(size * WINDOW);
        rbuf = malloc(size * WINDOW);
        memset(lbuf, 1, size * WINDOW);
        memset(rbuf, 2, size * WINDOW);
        if ((status = rgpu_mem_register(tpc, lbuf, size * WINDOW, RGPU_MEMTYPE_HOST, &lmem)) != RGPU_OK ||
            (status = rgpu_mem_register(tps, rbuf, size * WINDOW, RGPU_MEMTYPE_HOST, &rmem)) != RGPU_OK)
            die("register", status, NULL);
        desc = rgpu_mem_desc(rmem);
        memset(cs, 0, sizeof(cs));
        t0 = now_s();
        while (done < iters) {
            while (posted < iters && posted - done < WINDOW) {
                rgpu_completion_t *k = &cs[posted % WINDOW];
                uint64_t off = (uint64_t)(posted % WINDOW) * size;
                *k = (rgpu_completion_t){0};
                status = is_get ? rgpu_link_get(c, lmem, off, &desc, off, size, k)
                                : rgpu_link_put(c, lmem, off, &desc, off, size, k);
                if (status != RGPU_OK)
                    die(mode, status, rgpu_link_reason(c));
                posted++;
            }
            if ((status = rgpu_link_wait(c, &cs[done % WINDOW], 30000)) != RGPU_OK)
                die(mode, status, rgpu_link_reason(c));
            done++;
        }
        t1 = now_s();
        printf(" #bytes #iterations BW average[MB/sec]\n %zu %ld %.2f\n", size, iters,
               (double)size * (double)iters / (t1 - t0) / 1048576.0); /* perftest: MB = 2^20 */
        rgpu_mem_deregister(lmem);
        rgpu_mem_deregister(rmem);
        free(lbuf);
        free(rbuf);
    }
    server_stop = 1;
    rgpu_link_close(c);
    pthread_join(th, NULL);
    rgpu_link_close(server_link);
    rgpu_transport_ops(tps)->listener_close(l);
    rgpu_transport_close(tpc);
    rgpu_transport_close(tps);
    return 0;
}
