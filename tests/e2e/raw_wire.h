/*
 * rgpu's wire (rgpu/wire.h) spoken over a plain TCP socket, for the tests
 * that must send what no client library would (tests/e2e/hostile.c,
 * cuda_hostile.c): they write frames byte by byte, so a server that takes
 * messages from rgpu's TCP transport must still get them in the shapes it
 * accepts, and what it sends back in batches and fragments must be put
 * back together here.
 *
 *   - A frame that fits the TCP transport's eager limit goes as itself; a
 *     larger one goes as MSG_FRAGMENT pieces cut by rgpu_wire_fragment_head,
 *     exactly as rgpu_wire_send_frame cuts them. The pieces carry the bytes
 *     the caller sends, which may be fewer than its header announces: the
 *     server sees the header in the first piece and may refuse at once.
 *   - raw_wire_next hands over one whole frame at a time: out of a
 *     MSG_BATCH, put back together from MSG_FRAGMENT pieces, or as it came.
 *
 * Deadlines are CLOCK_MONOTONIC milliseconds (raw_wire_now_ms). Functions
 * return 1 done, 0 the deadline passed, -1 the connection is gone (or the
 * peer sent something no rgpu peer sends, with a line on stderr).
 */
#ifndef RGPU_TEST_RAW_WIRE_H
#define RGPU_TEST_RAW_WIRE_H

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "rgpu/transport.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

/* Frames put back together from fragments are at most this large. */
#define RAW_WIRE_MAX_FRAME (1ull << 30)

typedef struct {
    int fd;
    uint8_t *batch;             /* the MSG_BATCH being handed out, if any */
    size_t batch_len, batch_off;
} raw_wire_t;

static inline int64_t raw_wire_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The TCP transport's eager limit: the largest message the server takes. */
static inline size_t raw_wire_eager(void)
{
    static size_t eager;

    if (!eager) {
        rgpu_transport_t *tcp;

        if (rgpu_transport_open("tcp", &tcp) != RGPU_OK) {
            fprintf(stderr, "raw_wire: cannot open the TCP transport to learn its eager limit\n");
            exit(2);
        }
        eager = rgpu_transport_caps(tcp)->max_eager;
        rgpu_transport_close(tcp);
    }
    return eager;
}

/* Sends or receives all len bytes by the deadline. */
static inline int raw_wire_io(int fd, void *buf, size_t len, int sending, int64_t deadline)
{
    uint8_t *p = buf;

    while (len) {
        struct pollfd pfd = {fd, sending ? POLLOUT : POLLIN, 0};
        int64_t left = deadline - raw_wire_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
            return 0;
        n = sending ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Sends bytes [off, off+len) of the frame whose first hb_len bytes are hb
 * (header and body) and whose bulk follows (bulk NULL: zeros). */
static inline int raw_wire_send_range(int fd, const uint8_t *hb, size_t hb_len, const uint8_t *bulk,
                                      uint64_t off, uint64_t len, int64_t deadline)
{
    static const uint8_t zeros[1 << 16];
    int rc = 1;

    if (off < hb_len) {
        size_t n = hb_len - off < len ? hb_len - (size_t)off : (size_t)len;

        rc = raw_wire_io(fd, (void *)(hb + off), n, 1, deadline);
        off += n;
        len -= n;
    }
    while (rc == 1 && len) {
        size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);

        rc = raw_wire_io(fd, (void *)(bulk ? bulk + (off - hb_len) : zeros), n, 1, deadline);
        off += n;
        len -= n;
    }
    return rc;
}

/* Sends a frame: hb holds its header and body (hb_len bytes), bulk_len
 * bytes of bulk follow (bulk NULL: zeros), whatever the header announces.
 * As itself within the eager limit, else as fragments. */
static inline int raw_wire_send(raw_wire_t *w, const uint8_t *hb, size_t hb_len, const void *bulk,
                                uint64_t bulk_len, int64_t deadline)
{
    const size_t eager = raw_wire_eager();
    uint64_t total = hb_len + bulk_len, off = 0;

    if (total <= eager)
        return raw_wire_send_range(w->fd, hb, hb_len, bulk, 0, total, deadline);
    while (off < total) {
        uint8_t head[RGPU_FRAME_HEADER_SIZE];
        size_t piece = rgpu_wire_fragment_head(total, off, eager, head);
        int rc = raw_wire_io(w->fd, head, sizeof(head), 1, deadline);

        if (rc == 1)
            rc = raw_wire_send_range(w->fd, hb, hb_len, bulk, off, piece, deadline);
        if (rc != 1)
            return rc;
        off += piece;
    }
    return 1;
}

/* Receives one message: its header in *h, its body and bulk in *data_p
 * (malloc'd, h->body_len + h->bulk_len bytes). The first byte must come
 * by first_deadline, the rest within rest_ms. */
static inline int raw_wire_message(raw_wire_t *w, int64_t first_deadline, int rest_ms,
                                   rgpu_frame_header_t *h, uint8_t **data_p)
{
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    int rc = raw_wire_io(w->fd, raw, 1, 0, first_deadline);
    uint64_t len;

    if (rc != 1)
        return rc;
    if ((rc = raw_wire_io(w->fd, raw + 1, sizeof(raw) - 1, 0, raw_wire_now_ms() + rest_ms)) != 1)
        return rc == 0 ? -1 : rc;
    if (rgpu_frame_header_decode(raw, NULL, h) != RGPU_OK) {
        fprintf(stderr, "raw_wire: the server sent a bad frame header\n");
        return -1;
    }
    len = (uint64_t)h->body_len + h->bulk_len;
    if (RGPU_FRAME_HEADER_SIZE + len > raw_wire_eager()) {
        fprintf(stderr, "raw_wire: the server sent a message of %llu bytes, past the eager limit\n",
                (unsigned long long)(RGPU_FRAME_HEADER_SIZE + len));
        return -1;
    }
    *data_p = malloc((size_t)len + 1);
    if (!*data_p) {
        fprintf(stderr, "raw_wire: out of memory\n");
        exit(2);
    }
    if ((rc = raw_wire_io(w->fd, *data_p, (size_t)len, 0, raw_wire_now_ms() + rest_ms)) != 1) {
        free(*data_p);
        return rc == 0 ? -1 : rc;
    }
    return 1;
}

/* Takes the next frame out of the current batch into *frame_p (malloc'd,
 * *len_p bytes). */
static inline int raw_wire_from_batch(raw_wire_t *w, uint8_t **frame_p, size_t *len_p)
{
    rgpu_frame_header_t h;
    size_t left = w->batch_len - w->batch_off;
    uint64_t size;

    if (left < RGPU_FRAME_HEADER_SIZE ||
        rgpu_frame_header_decode(w->batch + w->batch_off, NULL, &h) != RGPU_OK ||
        (size = RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len + h.bulk_len) > left) {
        fprintf(stderr, "raw_wire: the server sent a batch whose frames do not add up\n");
        return -1;
    }
    *frame_p = malloc((size_t)size);
    if (!*frame_p) {
        fprintf(stderr, "raw_wire: out of memory\n");
        exit(2);
    }
    memcpy(*frame_p, w->batch + w->batch_off, (size_t)size);
    *len_p = (size_t)size;
    w->batch_off += (size_t)size;
    if (w->batch_off == w->batch_len) {
        free(w->batch);
        w->batch = NULL;
    }
    return 1;
}

/* The next whole frame (header, body, bulk) in *frame_p (malloc'd, *len_p
 * bytes). Its first byte must come by first_deadline; every later byte,
 * fragments included, within rest_ms of the one before. */
static inline int raw_wire_next(raw_wire_t *w, int64_t first_deadline, int rest_ms, uint8_t **frame_p,
                                size_t *len_p)
{
    rgpu_frame_header_t h, inner;
    uint8_t *data, *whole = NULL;
    uint64_t total = 0, got = 0;
    int rc;

    if (w->batch)
        return raw_wire_from_batch(w, frame_p, len_p);
    rc = raw_wire_message(w, first_deadline, rest_ms, &h, &data);
    if (rc != 1)
        return rc;
    if (h.type == RGPU__MSG_TYPE__MSG_BATCH) {
        w->batch = data;
        w->batch_len = (size_t)h.bulk_len;
        w->batch_off = 0;
        return raw_wire_from_batch(w, frame_p, len_p);
    }
    if (h.type != RGPU__MSG_TYPE__MSG_FRAGMENT) {
        /* A frame as itself: put its header back in front. */
        *frame_p = malloc(RGPU_FRAME_HEADER_SIZE + (size_t)h.body_len + (size_t)h.bulk_len);
        if (!*frame_p) {
            fprintf(stderr, "raw_wire: out of memory\n");
            exit(2);
        }
        rgpu_frame_header_encode(&h, *frame_p);
        memcpy(*frame_p + RGPU_FRAME_HEADER_SIZE, data, h.body_len + (size_t)h.bulk_len);
        *len_p = RGPU_FRAME_HEADER_SIZE + h.body_len + (size_t)h.bulk_len;
        free(data);
        return 1;
    }
    for (;;) {
        int last = (h.flags & RGPU_FRAME_F_LAST) != 0;

        if (!whole) {
            if (h.bulk_len < RGPU_FRAME_HEADER_SIZE || rgpu_frame_header_decode(data, NULL, &inner) != RGPU_OK ||
                (total = RGPU_FRAME_HEADER_SIZE + (uint64_t)inner.body_len + inner.bulk_len) > RAW_WIRE_MAX_FRAME ||
                !(whole = malloc((size_t)total))) {
                fprintf(stderr, "raw_wire: the server's first fragment does not start a frame this test takes\n");
                free(data);
                return -1;
            }
        }
        if (h.body_len || h.bulk_len > total - got) {
            fprintf(stderr, "raw_wire: the server's fragments overrun their frame\n");
            free(data);
            free(whole);
            return -1;
        }
        memcpy(whole + got, data, (size_t)h.bulk_len);
        got += h.bulk_len;
        free(data);
        if (last)
            break;
        rc = raw_wire_message(w, raw_wire_now_ms() + rest_ms, rest_ms, &h, &data);
        if (rc != 1 || h.type != RGPU__MSG_TYPE__MSG_FRAGMENT) {
            if (rc == 1) {
                fprintf(stderr, "raw_wire: the server sent a frame of type %u between fragments\n", h.type);
                free(data);
            }
            free(whole);
            return -1;
        }
    }
    if (got != total) {
        fprintf(stderr, "raw_wire: the server's fragments add up to %llu bytes of a %llu-byte frame\n",
                (unsigned long long)got, (unsigned long long)total);
        free(whole);
        return -1;
    }
    *frame_p = whole;
    *len_p = (size_t)total;
    return 1;
}

static inline void raw_wire_fini(raw_wire_t *w)
{
    free(w->batch);
    w->batch = NULL;
}

#endif
