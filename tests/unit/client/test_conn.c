/*
 * rgpu_conn_t against a scripted peer: a real TCP listener on loopback, run
 * by a thread of the test, that receives and sends real frames through the
 * wire layer (rgpu/wire.h) and gets and puts the client's registered memory
 * as a server does (docs/transport.md).
 *
 * The peer's thread never asserts (Criterion's asserts belong to the test's
 * own thread): it records its first failed check, and finish() asserts on
 * it. The test and the peer meet at numbered gates, each waited for with a
 * deadline.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "opencl.pb-c.h"
#include "rgpu/client_core.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

typedef struct {
    rgpu_transport_t *tp;
    rgpu_listener_t *listener;
    rgpu_link_t *link;
    rgpu_wire_rx_t rx;
    pthread_t thread;
    void (*script)(void);
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int gate;                   /* the last gate reached */
    char failure[512];          /* the peer's first failed check */
} peer_t;

static peer_t peer = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
/* The notify callback open_with gives the connection (tests set it first). */
static rgpu_conn_notify_fn open_notify;
static void *open_notify_arg;

/* Records the peer's first failed check, for finish() to report. */
static void peer_fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_fail(int line, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&peer.lock);
    if (!peer.failure[0]) {
        int n = snprintf(peer.failure, sizeof(peer.failure), "line %d: ", line);
        va_start(ap, fmt);
        vsnprintf(peer.failure + n, sizeof(peer.failure) - (size_t)n, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&peer.lock);
}

#define PEER_CHECK(cond, ...) ((cond) ? 1 : (peer_fail(__LINE__, __VA_ARGS__), 0))

/* Gates: one side says it reached n, the other waits for it (10 s at most). */
static void gate_reach(int n)
{
    pthread_mutex_lock(&peer.lock);
    peer.gate = n;
    pthread_cond_broadcast(&peer.cond);
    pthread_mutex_unlock(&peer.lock);
}

static int gate_wait(int n)
{
    struct timespec until;
    int ok;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&peer.lock);
    while (peer.gate < n && pthread_cond_timedwait(&peer.cond, &peer.lock, &until) == 0)
        ;
    ok = peer.gate >= n;
    pthread_mutex_unlock(&peer.lock);
    return ok;
}

/* One frame as the peer received it; body and bulk are the peer's copies. */
typedef struct {
    rgpu_frame_header_t h;
    uint8_t *body;
    uint8_t *bulk;
} frame_t;

static void frame_free(frame_t *f)
{
    free(f->body);
    free(f->bulk);
    memset(f, 0, sizeof(*f));
}

/* Receives one frame (type 0 when the link failed: recorded as a failure). */
static frame_t peer_recv(void)
{
    rgpu_wire_frame_t wf;
    frame_t f = {0};
    char reason[256];
    rgpu_status_t status = rgpu_wire_recv(&peer.rx, &wf, -1, reason, sizeof(reason));

    if (!PEER_CHECK(status == RGPU_OK, "receiving: %s", reason))
        return f;
    f.h = wf.header;
    f.body = malloc(f.h.body_len + 1);
    f.bulk = malloc(f.h.bulk_len + 1);
    memcpy(f.body, wf.body, f.h.body_len);
    if (!(f.h.flags & RGPU_FRAME_F_STREAM)) {
        memcpy(f.bulk, wf.bulk, (size_t)f.h.bulk_len);
    } else {
        /* The data follows the frame in the stream: taken in two pieces,
         * as a backend may. */
        uint64_t half = f.h.bulk_len / 2;

        status = rgpu_wire_take_bulk(&peer.rx, f.bulk, half);
        if (status == RGPU_OK)
            status = rgpu_wire_take_bulk(&peer.rx, f.bulk + half, f.h.bulk_len - half);
        PEER_CHECK(status == RGPU_OK, "taking a frame's data from the stream: %s", rgpu_status_str(status));
    }
    return f;
}

/* Receives one frame of the given type and returns its seq (0 if not). */
static uint64_t peer_expect(uint16_t type)
{
    frame_t f = peer_recv();
    uint64_t seq = f.h.seq;

    if (f.h.type != 0 && !PEER_CHECK(f.h.type == type, "expected a frame of type %u, got %u", type, f.h.type))
        seq = 0;
    frame_free(&f);
    return seq;
}

static void peer_send(uint16_t type, uint64_t seq, const ProtobufCMessage *msg, const void *bulk, uint64_t len)
{
    rgpu_status_t status = rgpu_wire_send(peer.link, type, seq, 0, msg, bulk, len);

    PEER_CHECK(status == RGPU_OK, "sending a frame of type %u: %s", type, rgpu_status_str(status));
}

/* Answers the handshake with one device. */
static void peer_hello(void)
{
    Rgpu__HelloReply reply = RGPU__HELLO_REPLY__INIT;
    uint64_t seq = peer_expect(RGPU__MSG_TYPE__MSG_HELLO);

    reply.protocol_version = RGPU_PROTOCOL_VERSION;
    reply.server_name = "scripted test peer";
    reply.little_endian = 1;
    peer_send(RGPU__MSG_TYPE__MSG_HELLO_REPLY, seq, &reply.base, NULL, 0);
}

static void *peer_main(void *arg)
{
    struct pollfd pfd = {peer.listener->ops->listener_fd(peer.listener), POLLIN, 0};

    (void)arg;
    if (PEER_CHECK(poll(&pfd, 1, 10000) == 1, "the client did not connect within 10 s") &&
        PEER_CHECK(peer.listener->ops->accept(peer.listener, &peer.link) == RGPU_OK, "accept failed")) {
        rgpu_wire_rx_init(&peer.rx, peer.link, NULL, 64u << 20);
        peer.rx.take_stream = 1;    /* as a server's session does */
        peer_hello();
        peer.script();
    }
    return NULL;
}

static rgpu_conn_t *open_with(void (*script)(void))
{
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    Rgpu__HelloReply *reply;
    rgpu_conn_t *conn;
    char reason[256];

    peer.script = script;
    peer.gate = 0;
    peer.failure[0] = '\0';
    cr_assert_eq(rgpu_transport_open("tcp", &peer.tp), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(peer.tp, "127.0.0.1:0", &peer.listener), RGPU_OK);
    cr_assert_eq(pthread_create(&peer.thread, NULL, peer_main, NULL), 0);
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    cr_assert_eq(rgpu_conn_open(peer.listener->local, &hello, 5000, open_notify, open_notify_arg, &conn, &reply, reason,
                                sizeof(reason)), RGPU_OK, "open failed: %s", reason);
    cr_assert_str_eq(reply->server_name, "scripted test peer");
    rgpu__hello_reply__free_unpacked(reply, NULL);
    return conn;
}

/* Closes the connection, waits for the peer's script and reports its
 * first failed check. */
static void finish(rgpu_conn_t *conn)
{
    rgpu_conn_close(conn);
    pthread_join(peer.thread, NULL);
    rgpu_wire_rx_fini(&peer.rx);
    if (peer.link)
        rgpu_link_close(peer.link);
    peer.listener->ops->listener_close(peer.listener);
    rgpu_transport_close(peer.tp);
    peer.tp = NULL;
    peer.listener = NULL;
    peer.link = NULL;
    cr_assert(peer.failure[0] == '\0', "the scripted peer saw: %s", peer.failure);
}

TestSuite(client_conn, .timeout = 30);

/* ---- batching ---- */

static void script_batch(void)
{
    rgpu_msg_t *m = NULL;
    rgpu_status_t status;

    /* Nothing may arrive before the client flushes (a negative check:
     * it can only wait so long, 200 ms). */
    if (!PEER_CHECK(gate_wait(1), "the client did not post"))
        return;
    status = rgpu_link_msg_recv(peer.link, &m, 200);
    PEER_CHECK(status == RGPU_ERR_TIMEOUT, "posts left before a flush (%s)", rgpu_status_str(status));
    if (m)
        rgpu_msg_release(m);
    gate_reach(2);

    /* The ten posts arrive as one batch, in order. */
    status = rgpu_link_msg_recv(peer.link, &m, -1);
    if (!PEER_CHECK(status == RGPU_OK, "receiving the batch: %s", rgpu_status_str(status)))
        return;
    if (PEER_CHECK(m->header.type == RGPU__MSG_TYPE__MSG_BATCH, "the posts came as type %u, not as one batch",
                   m->header.type)) {
        uint64_t off = 0, last_seq = 0;
        int i = 0;

        while (off < m->header.bulk_len) {
            rgpu_frame_header_t h;
            Rgpu__ClRelease *rel;

            if (!PEER_CHECK(rgpu_frame_header_decode(m->bulk + off, NULL, &h) == RGPU_OK, "a bad frame in the batch"))
                break;
            rel = rgpu__cl_release__unpack(NULL, h.body_len, m->bulk + off + RGPU_FRAME_HEADER_SIZE);
            PEER_CHECK(h.type == RGPU__MSG_TYPE__MSG_CL_RELEASE && h.seq > last_seq && rel && rel->id == (uint64_t)i + 1,
                       "frame %d of the batch is not release %d in order", i, i + 1);
            if (rel)
                rgpu__cl_release__free_unpacked(rel, NULL);
            last_seq = h.seq;
            off += RGPU_FRAME_HEADER_SIZE + h.body_len + h.bulk_len;
            i++;
        }
        PEER_CHECK(i == 10, "the batch held %d frames, not 10", i);
    }
    rgpu_msg_release(m);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, posts_wait_for_flush_and_leave_as_one_batch)
{
    rgpu_conn_t *conn = open_with(script_batch);

    for (int i = 0; i < 10; i++) {
        Rgpu__ClRelease rel = RGPU__CL_RELEASE__INIT;
        rel.kind = RGPU__CL_OBJECT_KIND__CL_OBJ_MEM;
        rel.id = (uint64_t)i + 1;
        cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_RELEASE, &rel.base, NULL, 0), RGPU_OK);
    }
    gate_reach(1);
    cr_assert(gate_wait(2), "the peer did not check");
    cr_assert_eq(rgpu_conn_flush(conn), RGPU_OK);
    finish(conn);
}

/* ---- replies with bulk: inline, in pieces, by put ---- */

#define BIG (3u << 20)          /* past the 256 KiB eager limit of tcp */
#define MID (200u << 10)        /* past the copy limit, within the eager limit */
#define GUARD 64u

static uint8_t pattern(size_t i, unsigned salt)
{
    return (uint8_t)(i * 7 + (i >> 11) + salt);
}

static void fill(uint8_t *p, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++)
        p[i] = pattern(i, salt);
}

/* The first byte of p[0..len) that is not the pattern, or len. */
static size_t first_wrong(const uint8_t *p, size_t len, unsigned salt)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != pattern(i, salt))
            return i;
    return len;
}

/* The peer's end of a read: the reply to f with len bytes of data inline
 * (none when the data went as pieces), then the client's goodbye. */
static void peer_read_reply_end(frame_t *f, const uint8_t *data, uint64_t len)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;

    peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, f->h.seq, &reply.base, data, len);
    frame_free(f);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

/* Opens a connection to a peer running script and calls a read of len
 * bytes, lending src_len bytes of src as the request's bulk; checks that
 * the reply brought all len bytes of pattern salt into the destination and
 * wrote nothing past it, then finishes. */
static void read_with(void (*script)(void), const uint8_t *src, size_t src_len, size_t len, unsigned salt)
{
    rgpu_conn_t *conn = open_with(script);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    uint8_t *dst = calloc(1, len + GUARD);
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = len};

    cr_assert_not_null(dst);
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, src, src_len, &call),
                 RGPU_OK);
    cr_assert_eq(call.reply_type, RGPU__MSG_TYPE__MSG_CL_READ_REPLY);
    cr_assert_eq(call.bulk_len, len, "received %llu bytes", (unsigned long long)call.bulk_len);
    cr_assert_eq(first_wrong(dst, len, salt), len, "byte %zu wrong", first_wrong(dst, len, salt));
    for (size_t i = len; i < len + GUARD; i++)
        cr_assert_eq(dst[i], 0, "guard byte %zu overwritten", i);
    rgpu_call_cleanup(&call);
    free(dst);
    finish(conn);
}

static void script_read_inline(void)
{
    uint8_t *data = malloc(MID);
    frame_t f = peer_recv();

    PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_READ_BUFFER && !(f.h.flags & RGPU_FRAME_F_DESC),
               "a read that fits a message came as type %u, flags %u", f.h.type, f.h.flags);
    fill(data, MID, 1);
    peer_read_reply_end(&f, data, MID);
    free(data);
}

Test(client_conn, reply_bulk_that_fits_lands_in_destination)
{
    read_with(script_read_inline, NULL, 0, MID, 1);
}

/* Sends a piece of the reply to seq: inline bytes at offset, or (data
 * NULL) the word that put_len bytes were put there. */
static void send_piece(uint64_t seq, uint64_t offset, const uint8_t *data, uint64_t len)
{
    Rgpu__BulkPart part = RGPU__BULK_PART__INIT;

    part.offset = offset;
    part.put_len = data ? 0 : len;
    peer_send(RGPU__MSG_TYPE__MSG_BULK_PART, seq, &part.base, data, data ? len : 0);
}

/* The request's descriptors; 0 if it carries none (recorded as a failure
 * when want_data / want_reply say it should). */
static int peer_refs(const frame_t *f, int want_data, int want_reply, rgpu_mem_desc_t *data, rgpu_mem_desc_t *reply)
{
    int has_data = 0, has_reply = 0;
    char reason[256];

    if (!PEER_CHECK(f->h.flags & RGPU_FRAME_F_DESC, "a request of type %u without descriptors", f->h.type))
        return 0;
    if (!PEER_CHECK(rgpu_wire_refs_unpack(f->bulk, (size_t)f->h.bulk_len, data, &has_data, reply, &has_reply, reason,
                                          sizeof(reason)) == RGPU_OK, "descriptors: %s", reason))
        return 0;
    return PEER_CHECK(has_data == want_data && has_reply == want_reply,
                      "descriptors for data %d and reply %d, wanted %d and %d", has_data, has_reply, want_data,
                      want_reply);
}

/* A read past the eager limit: the client registered its destination and
 * the peer puts into it in three pieces, then replies. A put one byte past
 * the destination is refused. */
static void script_read_put(void)
{
    uint8_t *data = malloc(BIG);
    frame_t f = peer_recv();
    rgpu_mem_desc_t dd, rd;
    rgpu_mem_t *mem = NULL;
    uint64_t cut[4] = {0, 1, BIG / 3, BIG};
    rgpu_status_t status;

    fill(data, BIG, 2);
    if (peer_refs(&f, 0, 1, &dd, &rd) && PEER_CHECK(rd.len == BIG, "the destination is %llu bytes",
                                                    (unsigned long long)rd.len) &&
        PEER_CHECK(rgpu_mem_register(peer.tp, data, BIG, RGPU_MEMTYPE_HOST, &mem) == RGPU_OK, "register")) {
        for (int i = 0; i < 3; i++) {
            status = rgpu_link_put(peer.link, mem, cut[i], &rd, cut[i], cut[i + 1] - cut[i], NULL);
            PEER_CHECK(status == RGPU_OK, "put %d: %s", i, rgpu_status_str(status));
            send_piece(f.h.seq, cut[i], NULL, cut[i + 1] - cut[i]);
        }
        rgpu_mem_desc_t past = rd;
        past.len = rd.len + 1;
        status = rgpu_link_put(peer.link, mem, 0, &past, rd.len, 1, NULL);
        PEER_CHECK(status == RGPU_ERR_INVALID_ARG, "a put past the destination was answered %s",
                   rgpu_status_str(status));
        rgpu_mem_deregister(mem);
    }
    peer_read_reply_end(&f, NULL, 0);
    free(data);
}

Test(client_conn, read_past_eager_limit_lands_by_put)
{
    read_with(script_read_put, NULL, 0, BIG, 2);
}

/* A pipelined read whose pieces come inline (the peer ignores the
 * destination's descriptor, which a server may): three pieces of uneven
 * size, the largest in fragments, then the reply. */
static void script_read_pieces(void)
{
    uint8_t *data = malloc(BIG);
    frame_t f = peer_recv();
    uint64_t cut[4] = {0, 1, BIG / 3, BIG};

    PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, "expected a read, got type %u", f.h.type);
    fill(data, BIG, 3);
    for (int i = 0; i < 3; i++)
        send_piece(f.h.seq, cut[i], data + cut[i], cut[i + 1] - cut[i]);
    peer_read_reply_end(&f, NULL, 0);
    free(data);
}

Test(client_conn, reply_pieces_land_in_destination_in_order)
{
    read_with(script_read_pieces, NULL, 0, BIG, 3);
}

#define PIECE_CAP 4096u

/* Pieces a server must not send: one leaving a gap (first call), one past
 * the destination's end (second call), a put into a destination the call
 * never registered (third call). Then a plain ping, which must work. */
static void script_bad_pieces(void)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    Rgpu__Pong pong = RGPU__PONG__INIT;
    static uint8_t data[2 * PIECE_CAP];
    uint64_t seq;

    memset(data, 0xAB, sizeof(data));
    seq = peer_expect(RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
    send_piece(seq, 0, data, 100);
    send_piece(seq, 200, data, 100);                    /* a gap */
    peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, seq, &reply.base, NULL, 0);
    seq = peer_expect(RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
    send_piece(seq, 0, data, PIECE_CAP - 10);
    send_piece(seq, PIECE_CAP - 10, data, 20);          /* 10 bytes too many */
    peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, seq, &reply.base, NULL, 0);
    seq = peer_expect(RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
    send_piece(seq, 0, NULL, 100);                      /* "put" where nothing was registered */
    peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, seq, &reply.base, NULL, 0);
    seq = peer_expect(RGPU__MSG_TYPE__MSG_PING);
    peer_send(RGPU__MSG_TYPE__MSG_PONG, seq, &pong.base, NULL, 0);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

/* A read of PIECE_CAP bytes into dst that what (the peer's misplaced
 * piece) must fail; returns how many bytes the call took before. */
static uint64_t expect_read_refused(rgpu_conn_t *conn, uint8_t *dst, const char *what)
{
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = PIECE_CAP};
    uint64_t got;

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call),
                 RGPU_ERR_PROTOCOL, "%s must fail the call", what);
    got = call.bulk_len;
    rgpu_call_cleanup(&call);
    return got;
}

Test(client_conn, misplaced_pieces_fail_the_call_and_spare_memory)
{
    rgpu_conn_t *conn = open_with(script_bad_pieces);
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint8_t *dst = calloc(1, PIECE_CAP + GUARD);
    rgpu_call_t pcall = {0};

    cr_assert_eq(expect_read_refused(conn, dst, "a piece after a gap"), 100);
    for (size_t i = 100; i < PIECE_CAP + GUARD; i++)
        cr_assert_eq(dst[i], 0, "byte %zu written by a piece after a gap", i);
    expect_read_refused(conn, dst, "a piece past the destination");
    for (size_t i = PIECE_CAP; i < PIECE_CAP + GUARD; i++)
        cr_assert_eq(dst[i], 0, "guard byte %zu overwritten", i);
    cr_assert_eq(expect_read_refused(conn, dst, "a put into a destination never registered"), 0);

    /* The connection still works. */
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &pcall), RGPU_OK);
    cr_assert_eq(pcall.reply_type, RGPU__MSG_TYPE__MSG_PONG);
    rgpu_call_cleanup(&pcall);
    free(dst);
    finish(conn);
}

/* ---- large bulks: from the caller's memory, or by descriptor ---- */

/* The peer's side of a write by descriptor. */
static atomic_int peer_bulk_done_sent;
static uint64_t peer_keys[2];
static uint64_t peer_addrs[2];

/* Opens a connection to a peer running script, posts a queued call (a
 * flush), then a write of len bytes of pattern salt, and overwrites the
 * caller's memory as soon as the post returned, as a caller may. A write
 * by_descriptor must have waited for the server's BULK_DONE. */
static void write_with(void (*script)(void), size_t len, unsigned salt, int by_descriptor)
{
    rgpu_conn_t *conn = open_with(script);
    Rgpu__ClQueueOp op = RGPU__CL_QUEUE_OP__INIT;
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t *src = malloc(len);

    cr_assert_not_null(src);
    atomic_store(&peer_bulk_done_sent, 0);
    fill(src, len, salt);
    wr.size = len;
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_FLUSH, &op.base, NULL, 0), RGPU_OK);
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, len), RGPU_OK);
    if (by_descriptor)
        cr_assert(atomic_load(&peer_bulk_done_sent), "the post returned before the server's BULK_DONE");
    memset(src, 0, len);
    free(src);
    finish(conn);
}

static void script_mid_write(void)
{
    frame_t f;

    peer_expect(RGPU__MSG_TYPE__MSG_CL_FLUSH);          /* what was queued goes first */
    f = peer_recv();
    if (PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER && !(f.h.flags & RGPU_FRAME_F_DESC) &&
                   f.h.bulk_len == MID, "the write came as type %u, flags %u, %llu bytes inline", f.h.type,
                   f.h.flags, (unsigned long long)f.h.bulk_len))
        PEER_CHECK(first_wrong(f.bulk, MID, 4) == MID, "byte %zu of the write wrong", first_wrong(f.bulk, MID, 4));
    frame_free(&f);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

/* The bytes went with the frame: the caller may reuse its memory at once. */
Test(client_conn, write_within_eager_limit_goes_inline_after_queued_calls)
{
    write_with(script_mid_write, MID, 4, 0);
}

/* Gets the request's data (len bytes by descriptor) in four pieces and
 * checks it against pattern salt. Returns the descriptor in *dd. */
static int peer_get_data(const frame_t *f, uint64_t len, unsigned salt, rgpu_mem_desc_t *dd)
{
    rgpu_mem_desc_t rd;
    rgpu_mem_t *mem = NULL;
    uint8_t *got = calloc(1, len);
    uint64_t piece = len / 4 + 1;
    int ok = 0;

    if (peer_refs(f, 1, 0, dd, &rd) &&
        PEER_CHECK(dd->len == len, "the data descriptor is %llu bytes", (unsigned long long)dd->len) &&
        PEER_CHECK(rgpu_mem_register(peer.tp, got, len, RGPU_MEMTYPE_HOST, &mem) == RGPU_OK, "register")) {
        ok = 1;
        for (uint64_t off = 0; off < len; off += piece) {
            uint64_t n = len - off < piece ? len - off : piece;
            rgpu_status_t status = rgpu_link_get(peer.link, mem, off, dd, off, n, NULL);

            ok &= PEER_CHECK(status == RGPU_OK, "get at %llu: %s", (unsigned long long)off, rgpu_status_str(status));
        }
        ok &= PEER_CHECK(first_wrong(got, len, salt) == len, "byte %zu of the data got wrong",
                         first_wrong(got, len, salt));
        rgpu_mem_deregister(mem);
    }
    free(got);
    return ok;
}

static void peer_bulk_done(uint64_t seq)
{
    Rgpu__BulkDone done = RGPU__BULK_DONE__INIT;

    atomic_store(&peer_bulk_done_sent, 1);
    peer_send(RGPU__MSG_TYPE__MSG_BULK_DONE, seq, &done.base, NULL, 0);
}

static void script_desc_write(void)
{
    rgpu_mem_desc_t dd;
    frame_t f;

    peer_expect(RGPU__MSG_TYPE__MSG_CL_FLUSH);          /* what was queued goes first */
    f = peer_recv();
    if (PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, "expected the write, got type %u", f.h.type)) {
        Rgpu__ClWriteBuffer *wr = rgpu__cl_write_buffer__unpack(NULL, f.h.body_len, f.body);

        PEER_CHECK(wr && wr->size == BIG, "the write's body does not unpack or names another size");
        if (wr)
            rgpu__cl_write_buffer__free_unpacked(wr, NULL);
        peer_get_data(&f, BIG, 5, &dd);
        peer_bulk_done(f.h.seq);
    }
    frame_free(&f);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, write_past_eager_limit_goes_by_descriptor_without_the_stream)
{
    /* The post returns once the server has taken the bytes: the caller
     * may reuse its memory then. */
    setenv("RGPU_STREAM_BULK", "0", 1);     /* as on verbs (each test is its own process) */
    write_with(script_desc_write, BIG, 5, 1);
}

/* On TCP the write's data follows its frame in the stream, straight from
 * the caller's memory: no descriptor, no BULK_DONE, and the memory may be
 * reused as soon as the post returns (write_with overwrites it then). */
static void script_stream_write(void)
{
    frame_t f;

    peer_expect(RGPU__MSG_TYPE__MSG_CL_FLUSH);
    f = peer_recv();
    if (PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER && (f.h.flags & RGPU_FRAME_F_STREAM) &&
                   !(f.h.flags & RGPU_FRAME_F_DESC) && f.h.bulk_len == BIG,
                   "the write came as type %u, flags %#x, %llu bytes", f.h.type, f.h.flags,
                   (unsigned long long)f.h.bulk_len))
        PEER_CHECK(first_wrong(f.bulk, BIG, 11) == BIG, "byte %zu of the write wrong", first_wrong(f.bulk, BIG, 11));
    frame_free(&f);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, write_past_eager_limit_goes_in_the_stream_on_tcp)
{
    write_with(script_stream_write, BIG, 11, 0);
}

/* While a read's reply may still come by put, the server may wait for the
 * client's answer to that put: a large write then goes by descriptor, not
 * in the stream in front of that answer. Once the read is done, the next
 * large write goes in the stream again. */
static void script_write_behind_read(void)
{
    uint8_t *data = malloc(BIG);
    frame_t rd = peer_recv(), wr;
    rgpu_mem_desc_t dd, rdesc;
    rgpu_mem_t *mem = NULL;

    fill(data, BIG, 12);
    wr = peer_recv();
    if (peer_refs(&rd, 0, 1, &dd, &rdesc) &&
        PEER_CHECK(wr.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER && (wr.h.flags & RGPU_FRAME_F_DESC) &&
                   !(wr.h.flags & RGPU_FRAME_F_STREAM), "a write behind a read by put came with flags %#x",
                   wr.h.flags) &&
        peer_get_data(&wr, BIG, 13, &dd)) {
        peer_bulk_done(wr.h.seq);
        if (PEER_CHECK(rgpu_mem_register(peer.tp, data, BIG, RGPU_MEMTYPE_HOST, &mem) == RGPU_OK, "register")) {
            PEER_CHECK(rgpu_link_put(peer.link, mem, 0, &rdesc, 0, BIG, NULL) == RGPU_OK, "the put failed");
            send_piece(rd.h.seq, 0, NULL, BIG);
            rgpu_mem_deregister(mem);
        }
    }
    frame_free(&wr);
    {
        Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;

        peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, rd.h.seq, &reply.base, NULL, 0);
    }
    frame_free(&rd);
    wr = peer_recv();
    PEER_CHECK(wr.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER && (wr.h.flags & RGPU_FRAME_F_STREAM) &&
                   first_wrong(wr.bulk, BIG, 14) == BIG,
               "the write after the read came with flags %#x, or wrong", wr.h.flags);
    frame_free(&wr);
    free(data);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, a_write_goes_by_descriptor_while_a_reply_may_come_by_put)
{
    rgpu_conn_t *conn = open_with(script_write_behind_read);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t *dst = calloc(1, BIG), *src = malloc(BIG);
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = BIG};

    cr_assert(dst && src);
    cr_assert_eq(rgpu_conn_call_start(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call), RGPU_OK);
    fill(src, BIG, 13);
    wr.size = BIG;
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, BIG), RGPU_OK);
    cr_assert_eq(rgpu_conn_call_wait(conn, &call), RGPU_OK);
    cr_assert_eq(first_wrong(dst, BIG, 12), BIG, "byte %zu of the read wrong", first_wrong(dst, BIG, 12));
    rgpu_call_cleanup(&call);
    fill(src, BIG, 14);
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, BIG), RGPU_OK);
    free(src);
    free(dst);
    finish(conn);
}

/* A call lent its data by descriptor and nobody waits for it (the client's
 * reader thread serves the gets). The peer replies before it says
 * BULK_DONE: the call completes only at BULK_DONE, the data stays
 * registered until then, and a get after it is refused. */
static rgpu_status_t stale_get_status = RGPU_OK;

static void script_desc_call(void)
{
    Rgpu__Pong pong = RGPU__PONG__INIT;
    rgpu_mem_desc_t dd;
    rgpu_mem_t *mem = NULL;
    uint8_t byte = 0;
    frame_t f = peer_recv();
    uint64_t seq;

    if (!PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, "expected the write, got type %u", f.h.type) ||
        !peer_get_data(&f, BIG, 6, &dd) ||
        !PEER_CHECK(rgpu_mem_register(peer.tp, &byte, 1, RGPU_MEMTYPE_HOST, &mem) == RGPU_OK, "register")) {
        frame_free(&f);
        return;
    }
    peer_send(RGPU__MSG_TYPE__MSG_PONG, f.h.seq, &pong.base, NULL, 0);
    /* This get is served after the reply was handled (one stream): the
     * data is still registered. */
    PEER_CHECK(rgpu_link_get(peer.link, mem, 0, &dd, BIG - 1, 1, NULL) == RGPU_OK && byte == pattern(BIG - 1, 6),
               "a get after the reply, before BULK_DONE, failed");
    gate_reach(1);
    if (PEER_CHECK(gate_wait(2), "the test did not look at the call")) {
        peer_bulk_done(f.h.seq);
        /* Served by whoever receives next on the client: the test's ping. */
        stale_get_status = rgpu_link_get(peer.link, mem, 0, &dd, 0, 1, NULL);
        seq = peer_expect(RGPU__MSG_TYPE__MSG_PING);
        peer_send(RGPU__MSG_TYPE__MSG_PONG, seq, &pong.base, NULL, 0);
    }
    rgpu_mem_deregister(mem);
    frame_free(&f);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, lent_data_stays_registered_until_bulk_done)
{
    rgpu_conn_t *conn;

    setenv("RGPU_STREAM_BULK", "0", 1);
    conn = open_with(script_desc_call);
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint8_t *src = malloc(BIG);
    rgpu_call_t call = {0}, pcall = {0};
    int done = 0;

    fill(src, BIG, 6);
    wr.size = BIG;
    stale_get_status = RGPU_OK;
    cr_assert_eq(rgpu_conn_call_start(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, BIG, &call), RGPU_OK);
    cr_assert(gate_wait(1), "the peer did not get the data and reply");
    cr_assert_not(rgpu_conn_call_done(conn, &call), "the call completed before the server gave its data back");
    gate_reach(2);
    for (int i = 0; i < 1000 && !(done = rgpu_conn_call_done(conn, &call)); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert(done, "the call did not complete within 10 s of BULK_DONE");
    cr_assert_eq(call.status, RGPU_OK);
    cr_assert_eq(call.reply_type, RGPU__MSG_TYPE__MSG_PONG);
    rgpu_call_cleanup(&call);
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &pcall), RGPU_OK);
    rgpu_call_cleanup(&pcall);
    free(src);
    finish(conn);
    cr_assert_eq(stale_get_status, RGPU_ERR_NOT_FOUND, "a get after BULK_DONE was answered %s",
                 rgpu_status_str(stale_get_status));
}

/* free-then-malloc at the same address between two large writes: the
 * second write sends the new contents, under a new key. */
static void script_two_writes(void)
{
    rgpu_mem_desc_t dd;

    for (int i = 0; i < 2; i++) {
        frame_t f = peer_recv();

        if (PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, "expected write %d, got type %u", i,
                       f.h.type) && peer_get_data(&f, BIG, 7 + (unsigned)i, &dd)) {
            peer_keys[i] = dd.key;
            peer_addrs[i] = dd.addr;
        }
        peer_bulk_done(f.h.seq);
        frame_free(&f);
    }
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, memory_freed_and_mapped_again_sends_new_contents)
{
    rgpu_conn_t *conn;

    setenv("RGPU_STREAM_BULK", "0", 1);
    conn = open_with(script_two_writes);
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t *p, *q;

    wr.size = BIG;
    p = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(p, MAP_FAILED);
    fill(p, BIG, 7);
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, p, BIG), RGPU_OK);
    cr_assert_eq(munmap(p, BIG), 0);
    q = mmap(p, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    cr_assert_eq(q, p, "the same addresses could not be mapped again");
    fill(q, BIG, 8);
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, q, BIG), RGPU_OK);
    munmap(q, BIG);
    finish(conn);
    cr_assert_eq(peer_addrs[0], peer_addrs[1], "the two writes did not name the same address");
    cr_assert_neq(peer_keys[0], peer_keys[1], "the second write reused the first one's key");
}

/* A call whose reply goes by descriptor sends its own small bulk by
 * descriptor too (the frame's inline bulk is the descriptors): the peer
 * gets the request's bulk, says BULK_DONE, puts the reply's and replies. */
#define SMALL 100u

static void script_both_ways(void)
{
    rgpu_mem_desc_t dd, rd;
    rgpu_mem_t *in_mem = NULL, *out_mem = NULL;
    uint8_t in[SMALL];
    uint8_t *out = malloc(BIG);
    frame_t f = peer_recv();

    fill(out, BIG, 10);
    if (peer_refs(&f, 1, 1, &dd, &rd) &&
        PEER_CHECK(dd.len == SMALL && rd.len == BIG, "descriptors of %llu and %llu bytes",
                   (unsigned long long)dd.len, (unsigned long long)rd.len) &&
        PEER_CHECK(rgpu_mem_register(peer.tp, in, SMALL, RGPU_MEMTYPE_HOST, &in_mem) == RGPU_OK, "register") &&
        PEER_CHECK(rgpu_mem_register(peer.tp, out, BIG, RGPU_MEMTYPE_HOST, &out_mem) == RGPU_OK, "register")) {
        PEER_CHECK(rgpu_link_get(peer.link, in_mem, 0, &dd, 0, SMALL, NULL) == RGPU_OK &&
                   first_wrong(in, SMALL, 9) == SMALL, "the request's bulk got wrong");
        peer_bulk_done(f.h.seq);
        PEER_CHECK(rgpu_link_put(peer.link, out_mem, 0, &rd, 0, BIG, NULL) == RGPU_OK, "the put failed");
        send_piece(f.h.seq, 0, NULL, BIG);
    }
    if (in_mem)
        rgpu_mem_deregister(in_mem);
    if (out_mem)
        rgpu_mem_deregister(out_mem);
    peer_read_reply_end(&f, NULL, 0);
    free(out);
}

Test(client_conn, reply_by_descriptor_sends_the_request_bulk_by_descriptor_too)
{
    uint8_t src[SMALL];

    fill(src, SMALL, 9);
    read_with(script_both_ways, src, SMALL, BIG, 10);
}

/* ---- asynchronous errors surface at the next sync point ---- */

static void script_async_error(void)
{
    Rgpu__AsyncError err = RGPU__ASYNC_ERROR__INIT;
    Rgpu__Pong pong = RGPU__PONG__INIT;
    uint64_t seq = peer_expect(RGPU__MSG_TYPE__MSG_CL_NDRANGE);

    err.seq = seq;
    err.msg_type = RGPU__MSG_TYPE__MSG_CL_NDRANGE;
    err.cl_error = -52; /* CL_INVALID_KERNEL_ARGS */
    err.what = "clEnqueueNDRangeKernel";
    peer_send(RGPU__MSG_TYPE__MSG_ASYNC_ERROR, 0, &err.base, NULL, 0);
    seq = peer_expect(RGPU__MSG_TYPE__MSG_PING);
    peer_send(RGPU__MSG_TYPE__MSG_PONG, seq, &pong.base, NULL, 0);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(client_conn, async_error_is_reported_once_at_sync_point)
{
    rgpu_conn_t *conn = open_with(script_async_error);
    Rgpu__ClNDRange nd = RGPU__CL_NDRANGE__INIT;
    Rgpu__Ping ping = RGPU__PING__INIT;
    rgpu_call_t call = {0};

    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_NDRANGE, &nd.base, NULL, 0), RGPU_OK);
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &call), RGPU_OK);
    rgpu_call_cleanup(&call);
    cr_assert_eq(rgpu_conn_take_deferred_error(conn), -52);
    cr_assert_eq(rgpu_conn_take_deferred_error(conn), 0, "a deferred error is reported once");
    finish(conn);
}

/* ---- a dead peer fails waiting calls, it does not hang them ---- */

/* The peer goes away: its end of the connection closes, as a killed
 * server's does. */
static void peer_die(void)
{
    rgpu_wire_rx_fini(&peer.rx);
    rgpu_link_close(peer.link);
    peer.link = NULL;
}

static void script_die(void)
{
    peer_expect(RGPU__MSG_TYPE__MSG_PING); /* the ping that will never be answered */
    peer_die();
}

Test(client_conn, peer_death_fails_waiting_call)
{
    rgpu_conn_t *conn = open_with(script_die);
    Rgpu__Ping ping = RGPU__PING__INIT;
    rgpu_call_t call = {0};
    const char *reason;

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &call),
                 RGPU_ERR_CONN_CLOSED);
    cr_assert_eq(rgpu_conn_health(conn, &reason), RGPU_ERR_CONN_CLOSED);
    cr_assert(strstr(reason, "closed the connection") != NULL, "reason: %s", reason);
    /* Later calls fail at once. */
    Rgpu__ClRelease rel = RGPU__CL_RELEASE__INIT;
    cr_assert_neq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_RELEASE, &rel.base, NULL, 0), RGPU_OK);
    finish(conn);
}

/* A dead peer in the middle of a write by descriptor: the post fails, it
 * does not wait for a BULK_DONE that never comes. */
static void script_die_in_get(void)
{
    frame_t f = peer_recv();

    PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER && (f.h.flags & RGPU_FRAME_F_DESC),
               "expected a write by descriptor, got type %u", f.h.type);
    frame_free(&f);
    peer_die();
}

Test(client_conn, peer_death_fails_a_write_by_descriptor)
{
    rgpu_conn_t *conn;

    setenv("RGPU_STREAM_BULK", "0", 1);
    conn = open_with(script_die_in_get);
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t *src = calloc(1, BIG);

    wr.size = BIG;
    rgpu_status_t status = rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, BIG);

    cr_assert_eq(status, RGPU_ERR_CONN_CLOSED, "the post returned %s", rgpu_status_str(status));
    free(src);
    finish(conn);
}

/* A server's SessionError ends the connection with its reason. */
static void script_session_error(void)
{
    Rgpu__SessionError err = RGPU__SESSION_ERROR__INIT;

    peer_expect(RGPU__MSG_TYPE__MSG_PING);
    err.reason = "the lease expired";
    peer_send(RGPU__MSG_TYPE__MSG_SESSION_ERROR, 0, &err.base, NULL, 0);
}

Test(client_conn, session_error_ends_the_connection_with_its_reason)
{
    rgpu_conn_t *conn = open_with(script_session_error);
    Rgpu__Ping ping = RGPU__PING__INIT;
    rgpu_call_t call = {0};
    const char *reason;

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &call), RGPU_ERR_REFUSED);
    cr_assert_eq(rgpu_conn_health(conn, &reason), RGPU_ERR_REFUSED);
    cr_assert(strstr(reason, "the lease expired") != NULL, "reason: %s", reason);
    finish(conn);
}

/* ---- who receives: the waiting caller, or the reader thread ---- */

static void script_late_reply(void)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    uint64_t data = 0x5eedULL;
    uint64_t seq = peer_expect(RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);

    /* The client is not waiting: it polls rgpu_conn_call_done. */
    peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, seq, &reply.base, &data, sizeof(data));
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

static void mark_done(rgpu_call_t *call)
{
    *(int *)call->arg = 1;
}

Test(client_conn, reply_nobody_waits_for_is_received)
{
    rgpu_conn_t *conn = open_with(script_late_reply);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    uint64_t dst = 0;
    int done_ran = 0;
    rgpu_call_t call = {.bulk_dst = &dst, .bulk_cap = sizeof(dst), .done = mark_done, .arg = &done_ran};

    /* A non-blocking read: nobody calls rgpu_conn_call_wait. */
    cr_assert_eq(rgpu_conn_call_start(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call),
                 RGPU_OK);
    for (int i = 0; i < 500 && !rgpu_conn_call_done(conn, &call); i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert(rgpu_conn_call_done(conn, &call), "the reply was not received within 5 s");
    cr_assert_eq(call.status, RGPU_OK);
    cr_assert_eq(dst, 0x5eedULL);
    cr_assert(done_ran, "the done callback did not run");
    rgpu_call_cleanup(&call);
    finish(conn);
}

#define CALLERS 4
#define CALLS_EACH 500

/* Answers every read with its offset as 8 bytes of bulk, in arrival order. */
static void script_echo_offsets(void)
{
    for (int i = 0; i < CALLERS * CALLS_EACH; i++) {
        Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
        frame_t f = peer_recv();
        Rgpu__ClReadBuffer *req = rgpu__cl_read_buffer__unpack(NULL, f.h.body_len, f.body);

        if (!PEER_CHECK(f.h.type == RGPU__MSG_TYPE__MSG_CL_READ_BUFFER && req, "frame %d is no read", i)) {
            frame_free(&f);
            return;
        }
        peer_send(RGPU__MSG_TYPE__MSG_CL_READ_REPLY, f.h.seq, &reply.base, &req->offset, sizeof(req->offset));
        rgpu__cl_read_buffer__free_unpacked(req, NULL);
        frame_free(&f);
    }
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

/* A caller thread's count of calls answered with another call's reply. */
static void *caller_main(void *arg)
{
    rgpu_conn_t *conn = arg;
    static _Atomic uint64_t next = 1;
    intptr_t wrong = 0;

    for (int i = 0; i < CALLS_EACH; i++) {
        Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
        uint64_t got = 0;
        rgpu_call_t call = {.bulk_dst = &got, .bulk_cap = sizeof(got)};

        req.offset = next++;
        if (rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call) != RGPU_OK ||
            got != req.offset)
            wrong++;
        rgpu_call_cleanup(&call);
    }
    return (void *)wrong;
}

Test(client_conn, concurrent_callers_each_get_their_reply)
{
    rgpu_conn_t *conn = open_with(script_echo_offsets);
    pthread_t threads[CALLERS];

    /* Whichever caller receives hands the others their replies. */
    for (int t = 0; t < CALLERS; t++)
        cr_assert_eq(pthread_create(&threads[t], NULL, caller_main, conn), 0);
    for (int t = 0; t < CALLERS; t++) {
        void *wrong;
        pthread_join(threads[t], &wrong);
        cr_assert_eq((intptr_t)wrong, 0, "caller %d: %ld calls failed or got another call's reply", t,
                     (long)(intptr_t)wrong);
    }
    finish(conn);
}

static void script_notify(void)
{
    Rgpu__EventNotify note = RGPU__EVENT_NOTIFY__INIT;

    peer_expect(RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK);
    note.callback_id = 7;
    note.status = 0; /* CL_COMPLETE */
    peer_send(RGPU__MSG_TYPE__MSG_EVENT_NOTIFY, 0, &note.base, NULL, 0);
    peer_expect(RGPU__MSG_TYPE__MSG_GOODBYE);
}

static void count_notify(void *arg, uint16_t type, const uint8_t *body, size_t len)
{
    Rgpu__EventNotify *note = rgpu__event_notify__unpack(NULL, len, body);

    if (type == RGPU__MSG_TYPE__MSG_EVENT_NOTIFY && note && note->callback_id == 7)
        atomic_fetch_add((_Atomic int *)arg, 1);
    if (note)
        rgpu__event_notify__free_unpacked(note, NULL);
}

Test(client_conn, notification_arrives_while_nobody_calls)
{
    static _Atomic int notes;
    Rgpu__ClSetEventCallback req = RGPU__CL_SET_EVENT_CALLBACK__INIT;
    rgpu_conn_t *conn;

    open_notify = count_notify;
    open_notify_arg = (void *)&notes;
    conn = open_with(script_notify);
    open_notify = NULL;
    open_notify_arg = NULL;
    rgpu_conn_want_notifications(conn);
    req.callback_id = 7;
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK, &req.base, NULL, 0), RGPU_OK);
    cr_assert_eq(rgpu_conn_flush(conn), RGPU_OK);
    for (int i = 0; i < 500 && atomic_load(&notes) == 0; i++)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    cr_assert_eq(atomic_load(&notes), 1, "the notification was not received within 5 s");
    finish(conn);
}
