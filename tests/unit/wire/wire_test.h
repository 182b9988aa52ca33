/*
 * What the wire tests share: two tcp instances on loopback (the two ends of
 * a real network), a link a -> b, b's receiver (wt_rx), and frames whose
 * every byte says where it belongs, so a piece put back in the wrong place
 * or a byte lost between fragments shows.
 *
 * Every test of a binary keeps the same .timeout (WT_TIMEOUT): criterion
 * 2.4's runner leaks when they differ, and LeakSanitizer fails the binary
 * in the ASan build (docs/testing.md).
 */
#ifndef RGPU_TESTS_WIRE_TEST_H
#define RGPU_TESTS_WIRE_TEST_H

#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/wire.h"
#include "session.pb-c.h"

#define WT_TIMEOUT 30
/* The longest a receive waits for what the test sent. */
#define WT_WAIT_MS 10000
/* What b puts back together from fragments unless a test says otherwise. */
#define WT_MAX_ASSEMBLED (64ull << 20)

static rgpu_transport_t *wt_tp_a, *wt_tp_b;
static rgpu_listener_t *wt_lst;     /* on b */
static rgpu_link_t *wt_a, *wt_b;    /* a's link to b, b's to a */
static rgpu_wire_rx_t wt_rx;        /* b's receiver */
static size_t wt_eager;             /* the links' eager limit */

typedef struct {
    rgpu_listener_t *l;
    rgpu_link_t *link;
    rgpu_status_t status;
} wt_acceptor_t;

/* Accepts on its own thread, as the peer's process would (over RDMA a
 * connect completes only once the other side accepts). */
static void *wt_accept_thread(void *arg)
{
    wt_acceptor_t *acc = arg;
    const rgpu_transport_ops_t *ops = rgpu_transport_ops(wt_tp_b);
    struct pollfd pfd = {ops->listener_fd(acc->l), POLLIN, 0};

    acc->status = RGPU_ERR_TIMEOUT;
    if (poll(&pfd, 1, WT_WAIT_MS) == 1)
        acc->status = ops->accept(acc->l, &acc->link);
    return NULL;
}

static inline void wt_setup(void)
{
    char reason[256] = "";
    wt_acceptor_t acc = {NULL, NULL, RGPU_OK};
    pthread_t th;
    rgpu_status_t status;

    cr_assert_eq(rgpu_transport_open("tcp", &wt_tp_a), RGPU_OK);
    cr_assert_eq(rgpu_transport_open("tcp", &wt_tp_b), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(wt_tp_b, "127.0.0.1:0", &wt_lst), RGPU_OK);
    acc.l = wt_lst;
    cr_assert_eq(pthread_create(&th, NULL, wt_accept_thread, &acc), 0);
    status = rgpu_transport_connect(wt_tp_a, wt_lst->local, WT_WAIT_MS, &wt_a, reason,
                                    sizeof(reason));
    pthread_join(th, NULL);
    cr_assert_eq(status, RGPU_OK, "connect to %s: %s", wt_lst->local, reason);
    cr_assert_eq(acc.status, RGPU_OK, "accept: %s", rgpu_status_str(acc.status));
    wt_b = acc.link;
    wt_eager = rgpu_transport_caps(wt_tp_a)->max_eager;
    cr_assert_eq(rgpu_transport_caps(wt_tp_b)->max_eager, wt_eager);
    rgpu_wire_rx_init(&wt_rx, wt_b, NULL, WT_MAX_ASSEMBLED);
}

static inline void wt_teardown(void)
{
    rgpu_wire_rx_fini(&wt_rx);
    if (wt_a)
        rgpu_link_close(wt_a);
    if (wt_b)
        rgpu_link_close(wt_b);
    if (wt_lst)
        rgpu_transport_ops(wt_tp_b)->listener_close(wt_lst);
    if (wt_tp_a)
        rgpu_transport_close(wt_tp_a);
    if (wt_tp_b)
        rgpu_transport_close(wt_tp_b);
    wt_a = wt_b = NULL;
    wt_lst = NULL;
    wt_tp_a = wt_tp_b = NULL;
}

/* ---- contents --------------------------------------------------------- */

/* Byte i of the stream named seed: no period a fragment size could hide. */
static inline uint8_t wt_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (seed + 1) * 0xBF58476D1CE4E5B9ull;

    x ^= x >> 29;
    return (uint8_t)(x * 0x94D049BB133111EBull >> 56);
}

static inline void wt_fill(uint8_t *buf, uint64_t len, uint64_t seed)
{
    for (uint64_t i = 0; i < len; i++)
        buf[i] = wt_byte(seed, i);
}

/* Index of the first byte of buf that is not stream seed's, or len. */
static inline uint64_t wt_first_wrong(const uint8_t *buf, uint64_t len, uint64_t seed)
{
    for (uint64_t i = 0; i < len; i++)
        if (buf[i] != wt_byte(seed, i))
            return i;
    return len;
}

/* ---- frames ----------------------------------------------------------- */

/* A frame as the tests describe it: a Ping body whose payload is stream
 * 2*seq (payload < 0: no body at all), and bulk_len bytes of bulk from
 * stream 2*seq+1. */
typedef struct {
    uint16_t type;
    uint64_t seq;
    uint32_t flags;
    long payload;
    uint64_t bulk_len;
} wt_frame_t;

/* The packed body's size (0 without a body). */
static inline size_t wt_body_size(long payload)
{
    static const uint8_t one;
    Rgpu__Ping ping = RGPU__PING__INIT;

    if (payload < 0)
        return 0;
    ping.payload.data = (uint8_t *)&one;
    ping.payload.len = (size_t)payload;
    return rgpu_frame_packed_size(&ping.base) - RGPU_FRAME_HEADER_SIZE;
}

/* Header + body + bulk. */
static inline uint64_t wt_frame_size(const wt_frame_t *w)
{
    return RGPU_FRAME_HEADER_SIZE + wt_body_size(w->payload) + w->bulk_len;
}

/* The bulk that makes the frame exactly size bytes long. */
static inline uint64_t wt_bulk_for(long payload, uint64_t size)
{
    return size - RGPU_FRAME_HEADER_SIZE - wt_body_size(payload);
}

/* Packs w whole at out (wt_frame_size bytes); returns its size, 0 when out
 * of memory. */
static inline uint64_t wt_pack(const wt_frame_t *w, uint8_t *out)
{
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint8_t *payload = NULL;
    size_t head;

    if (w->payload >= 0) {
        payload = malloc((size_t)w->payload + 1);
        if (!payload)
            return 0;
        wt_fill(payload, (uint64_t)w->payload, 2 * w->seq);
        ping.payload.data = payload;
        ping.payload.len = (size_t)w->payload;
    }
    head = rgpu_frame_pack(out, w->type, w->seq, w->flags, w->payload >= 0 ? &ping.base : NULL,
                           w->bulk_len);
    free(payload);
    wt_fill(out + head, w->bulk_len, 2 * w->seq + 1);
    return head + w->bulk_len;
}

/* Packs n frames back to back into a new buffer (*len_p bytes), as a
 * client's send buffer holds them. */
static inline uint8_t *wt_pack_all(const wt_frame_t *w, int n, size_t *len_p)
{
    size_t len = 0, at = 0;
    uint8_t *buf;

    for (int i = 0; i < n; i++)
        len += (size_t)wt_frame_size(&w[i]);
    buf = malloc(len + 1);
    cr_assert_not_null(buf);
    for (int i = 0; i < n; i++) {
        uint64_t size = wt_pack(&w[i], buf + at);

        cr_assert_eq(size, wt_frame_size(&w[i]), "packing frame %d", i);
        at += (size_t)size;
    }
    *len_p = len;
    return buf;
}

/* Checks that f is w, byte for byte. */
static inline void wt_expect_frame(const rgpu_wire_frame_t *f, const wt_frame_t *w)
{
    uint64_t wrong;

    cr_assert_eq(f->header.version, RGPU_PROTOCOL_VERSION);
    cr_assert_eq(f->header.type, w->type, "frame %llu: type %u, sent %u",
                 (unsigned long long)w->seq, f->header.type, w->type);
    cr_assert_eq(f->header.seq, w->seq, "frame %llu arrived where %llu was expected",
                 (unsigned long long)f->header.seq, (unsigned long long)w->seq);
    cr_assert_eq(f->header.flags, w->flags, "frame %llu: flags", (unsigned long long)w->seq);
    cr_assert_eq(f->header.body_len, wt_body_size(w->payload), "frame %llu: body of %u bytes",
                 (unsigned long long)w->seq, f->header.body_len);
    cr_assert_eq(f->header.bulk_len, w->bulk_len, "frame %llu: bulk of %llu bytes",
                 (unsigned long long)w->seq, (unsigned long long)f->header.bulk_len);
    cr_assert_not_null(f->body, "a frame's body is never NULL");
    if (w->payload >= 0) {
        Rgpu__Ping *ping = rgpu__ping__unpack(NULL, f->header.body_len, f->body);

        cr_assert_not_null(ping, "frame %llu: the body does not unpack", (unsigned long long)w->seq);
        cr_assert_eq(ping->payload.len, (size_t)w->payload);
        wrong = wt_first_wrong(ping->payload.data, ping->payload.len, 2 * w->seq);
        rgpu__ping__free_unpacked(ping, NULL);
        cr_assert_eq(wrong, (uint64_t)w->payload, "frame %llu: body payload byte %llu is wrong",
                     (unsigned long long)w->seq, (unsigned long long)wrong);
    }
    if (w->bulk_len > 0) {
        cr_assert_not_null(f->bulk);
        wrong = wt_first_wrong(f->bulk, w->bulk_len, 2 * w->seq + 1);
        cr_assert_eq(wrong, w->bulk_len, "frame %llu: bulk byte %llu of %llu is wrong",
                     (unsigned long long)w->seq, (unsigned long long)wrong,
                     (unsigned long long)w->bulk_len);
    }
}

/* Receives the next frame on b and checks that it is w. */
static inline void wt_recv_expect(const wt_frame_t *w)
{
    rgpu_wire_frame_t f;
    char reason[512] = "";
    rgpu_status_t status = rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason));

    cr_assert_eq(status, RGPU_OK, "receiving frame %llu: %s: %s", (unsigned long long)w->seq,
                 rgpu_status_str(status), reason);
    wt_expect_frame(&f, w);
}

/* ---- a sender on its own thread --------------------------------------- */

/* Sends what it is given from its own thread, so that the receiver (the
 * test's thread) drains the socket meanwhile: several MiB do not fit the
 * socket buffers. It asserts nothing (criterion asserts only on the test's
 * thread); the test checks status after wt_send_join. */
typedef struct {
    rgpu_link_t *link;
    const wt_frame_t *frames;   /* each sent by rgpu_wire_send */
    int n;
    const uint8_t *packed;      /* or: packed_len bytes by rgpu_wire_send_frames */
    size_t packed_len;
    const struct iovec *iov;    /* or: one frame by rgpu_wire_send_frame */
    int iovcnt;
    rgpu_status_t status;
    pthread_t th;
} wt_sender_t;

static rgpu_status_t wt_send_one(rgpu_link_t *link, const wt_frame_t *w)
{
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint8_t *payload = malloc(w->payload > 0 ? (size_t)w->payload : 1);
    uint8_t *bulk = malloc(w->bulk_len + 1);
    rgpu_status_t status = RGPU_ERR_NOMEM;

    if (payload && bulk) {
        wt_fill(payload, w->payload > 0 ? (uint64_t)w->payload : 0, 2 * w->seq);
        wt_fill(bulk, w->bulk_len, 2 * w->seq + 1);
        ping.payload.data = payload;
        ping.payload.len = w->payload > 0 ? (size_t)w->payload : 0;
        status = rgpu_wire_send(link, w->type, w->seq, w->flags,
                                w->payload >= 0 ? &ping.base : NULL, bulk, w->bulk_len);
    }
    free(payload);
    free(bulk);
    return status;
}

static void *wt_send_thread(void *arg)
{
    wt_sender_t *s = arg;

    s->status = RGPU_OK;
    if (s->packed)
        s->status = rgpu_wire_send_frames(s->link, s->packed, s->packed_len);
    else if (s->iov)
        s->status = rgpu_wire_send_frame(s->link, s->iov, s->iovcnt);
    for (int i = 0; i < s->n && s->status == RGPU_OK; i++)
        s->status = wt_send_one(s->link, &s->frames[i]);
    return NULL;
}

static inline void wt_send_start(wt_sender_t *s)
{
    cr_assert_eq(pthread_create(&s->th, NULL, wt_send_thread, s), 0);
}

static inline void wt_send_join(wt_sender_t *s)
{
    pthread_join(s->th, NULL);
    cr_assert_eq(s->status, RGPU_OK, "sending: %s", rgpu_status_str(s->status));
}

/* Sends the frames one by one with rgpu_wire_send from a thread of its own. */
static inline void wt_send_frames_async(wt_sender_t *s, const wt_frame_t *w, int n)
{
    memset(s, 0, sizeof(*s));
    s->link = wt_a;
    s->frames = w;
    s->n = n;
    wt_send_start(s);
}

/* Sends packed frames with rgpu_wire_send_frames from a thread of its own. */
static inline void wt_send_packed_async(wt_sender_t *s, const uint8_t *packed, size_t len)
{
    memset(s, 0, sizeof(*s));
    s->link = wt_a;
    s->packed = packed;
    s->packed_len = len;
    wt_send_start(s);
}

/* ---- raw messages, as a hostile peer sends them ----------------------- */

/* Writes a frame header at out, magic included. */
static inline void wt_put_header(uint8_t out[RGPU_FRAME_HEADER_SIZE], uint16_t version,
                                 uint16_t type, uint32_t flags, uint32_t body_len, uint64_t seq,
                                 uint64_t bulk_len)
{
    rgpu_frame_header_t h = {version, type, flags, body_len, seq, bulk_len};

    rgpu_frame_header_encode(&h, out);
}

/* Sends one message of the given type straight through the transport:
 * body_len bytes of body and bulk_len of inline bulk, whatever they are. */
static inline void wt_raw_send(rgpu_link_t *link, uint16_t type, uint32_t flags,
                               const void *body, uint32_t body_len, const void *bulk,
                               uint64_t bulk_len)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    struct iovec iov[3] = {{head, sizeof(head)}, {(void *)body, body_len},
                           {(void *)bulk, (size_t)bulk_len}};
    rgpu_status_t status;

    wt_put_header(head, RGPU_PROTOCOL_VERSION, type, flags, body_len, 0, bulk_len);
    status = rgpu_link_msg_send(link, iov, 3, NULL);
    cr_assert_eq(status, RGPU_OK, "sending a raw message of type %u: %s", type,
                 rgpu_status_str(status));
}

/* Receives the next message on link as the transport hands it over. */
static inline rgpu_msg_t *wt_raw_recv(rgpu_link_t *link)
{
    rgpu_msg_t *m = NULL;
    rgpu_status_t status = rgpu_link_msg_recv(link, &m, WT_WAIT_MS);

    cr_assert_eq(status, RGPU_OK, "receiving a message: %s: %s", rgpu_status_str(status),
                 rgpu_link_reason(link));
    return m;
}

#endif
