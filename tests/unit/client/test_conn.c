/*
 * rgpu_conn_t against a scripted peer: a real TCP listener on loopback, run
 * by a thread of the test, that reads and writes real frames.
 */
#include <criterion/criterion.h>
#include <poll.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "opencl.pb-c.h"
#include "rgpu/client_core.h"
#include "session.pb-c.h"

typedef struct {
    rgpu_listener_t *listener;
    rgpu_link_t *link;
    pthread_t thread;
    void (*script)(rgpu_link_t *link);
} peer_t;

static peer_t peer;
/* The notify callback open_with gives the connection (tests set it first). */
static rgpu_conn_notify_fn open_notify;
static void *open_notify_arg;

/* Receives one frame; returns its header, body (malloc'd) and bulk (malloc'd). */
static rgpu_frame_header_t peer_recv(rgpu_link_t *link, uint8_t **body_p, uint8_t **bulk_p)
{
    rgpu_frame_header_t h;
    cr_assert_eq(rgpu_link_recv_header(link, NULL, &h), RGPU_OK);
    uint8_t *body = malloc(h.body_len + 1), *bulk = malloc(h.bulk_len + 1);
    cr_assert_eq(rgpu_link_recv(link, body, h.body_len), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(link, bulk, h.bulk_len), RGPU_OK);
    if (body_p)
        *body_p = body;
    else
        free(body);
    if (bulk_p)
        *bulk_p = bulk;
    else
        free(bulk);
    return h;
}

/* Answers the handshake with one device. */
static void peer_hello(rgpu_link_t *link)
{
    Rgpu__HelloReply reply = RGPU__HELLO_REPLY__INIT;
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_HELLO);
    reply.protocol_version = RGPU_PROTOCOL_VERSION;
    reply.server_name = "scripted test peer";
    reply.little_endian = 1;
    cr_assert_eq(rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_HELLO_REPLY, h.seq, &reply.base, NULL, 0), RGPU_OK);
}

static void *peer_main(void *arg)
{
    (void)arg;
    int fd = rgpu_tcp_ops.listener_fd(peer.listener);
    struct pollfd pfd = {fd, POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 10000), 1);
    cr_assert_eq(rgpu_tcp_ops.accept(peer.listener, &peer.link), RGPU_OK);
    peer_hello(peer.link);
    peer.script(peer.link);
    return NULL;
}

static rgpu_conn_t *open_with(void (*script)(rgpu_link_t *))
{
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    Rgpu__HelloReply *reply;
    rgpu_conn_t *conn;
    char reason[256];

    peer.script = script;
    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &peer.listener), RGPU_OK);
    pthread_create(&peer.thread, NULL, peer_main, NULL);
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    cr_assert_eq(rgpu_conn_open(peer.listener->local, &hello, 5000, open_notify, open_notify_arg, &conn, &reply, reason,
                                sizeof(reason)), RGPU_OK, "open failed: %s", reason);
    cr_assert_str_eq(reply->server_name, "scripted test peer");
    rgpu__hello_reply__free_unpacked(reply, NULL);
    return conn;
}

static void finish(rgpu_conn_t *conn)
{
    rgpu_conn_close(conn);
    pthread_join(peer.thread, NULL);
    if (peer.link)
        rgpu_link_close(peer.link);
    rgpu_tcp_ops.listener_close(peer.listener);
    memset(&peer, 0, sizeof(peer));
}

static int readable_within(rgpu_link_t *link, int ms);

/* ---- batching ---- */

static void script_batch(rgpu_link_t *link)
{
    uint64_t last_seq = 0;
    uint8_t *body;

    /* Nothing may arrive before the client flushes. */
    cr_assert_eq(readable_within(link, 200), 0, "async posts left before a flush");
    for (int i = 0; i < 10; i++) {
        rgpu_frame_header_t h = peer_recv(link, &body, NULL);
        cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_RELEASE);
        cr_assert_gt(h.seq, last_seq, "frames out of order");
        last_seq = h.seq;
        Rgpu__ClRelease *rel = rgpu__cl_release__unpack(NULL, h.body_len, body);
        cr_assert_not_null(rel);
        cr_assert_eq(rel->id, (uint64_t)i + 1);
        rgpu__cl_release__free_unpacked(rel, NULL);
        free(body);
    }
    /* Goodbye on close. */
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);
    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_GOODBYE);
}

/* The test's own link is the peer's; peek with poll on a dup of the fd is not
 * portable across transports, so wait for a frame header with a deadline. */
static int readable_within(rgpu_link_t *link, int ms)
{
    /* rgpu_tcp_link_t starts with rgpu_link_t then the fd (tcp.c). */
    struct { rgpu_link_t base; int fd; } *tcp = (void *)link;
    struct pollfd pfd = {tcp->fd, POLLIN, 0};
    return poll(&pfd, 1, ms);
}

TestSuite(client_conn, .timeout = 30);

Test(client_conn, posts_wait_for_flush_and_keep_order)
{
    rgpu_conn_t *conn = open_with(script_batch);

    for (int i = 0; i < 10; i++) {
        Rgpu__ClRelease rel = RGPU__CL_RELEASE__INIT;
        rel.kind = RGPU__CL_OBJECT_KIND__CL_OBJ_MEM;
        rel.id = (uint64_t)i + 1;
        cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_RELEASE, &rel.base, NULL, 0), RGPU_OK);
    }
    usleep(300000);
    cr_assert_eq(rgpu_conn_flush(conn), RGPU_OK);
    finish(conn);
}

/* ---- replies with bulk ---- */

#define BIG (3u << 20)

static void script_read(rgpu_link_t *link)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    uint8_t *data = malloc(BIG);
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
    for (size_t i = 0; i < BIG; i++)
        data[i] = (uint8_t)(i * 7);
    cr_assert_eq(rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base, data, BIG),
                 RGPU_OK);
    free(data);
    peer_recv(link, NULL, NULL); /* goodbye */
}

Test(client_conn, reply_bulk_lands_in_destination)
{
    rgpu_conn_t *conn = open_with(script_read);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    uint8_t *dst = calloc(1, BIG);
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = BIG};

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call), RGPU_OK);
    cr_assert_eq(call.reply_type, RGPU__MSG_TYPE__MSG_CL_READ_REPLY);
    cr_assert_eq(call.bulk_len, BIG);
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(dst[i], (uint8_t)(i * 7), "byte %zu wrong", i);
    rgpu_call_cleanup(&call);
    free(dst);
    finish(conn);
}

/* ---- replies whose bulk comes in pieces ahead of them ---- */

/* What the scripted peer saw, checked on the test's own thread. */
static atomic_int pieces_peer_ok;

/* Sends a piece of the reply to seq: offset in its body, len bytes. */
static rgpu_status_t send_piece(rgpu_link_t *link, uint64_t seq, uint64_t offset, const uint8_t *data,
                                uint64_t len)
{
    Rgpu__BulkPart part = RGPU__BULK_PART__INIT;

    part.offset = offset;
    return rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_BULK_PART, seq, &part.base, data, len);
}

/* A pipelined read: three pieces of uneven size, then the reply. */
static void script_read_pieces(rgpu_link_t *link)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    uint8_t *data = malloc(BIG);
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);
    uint64_t cut[4] = {0, 1, BIG / 3, BIG};
    int ok = h.type == RGPU__MSG_TYPE__MSG_CL_READ_BUFFER;

    for (size_t i = 0; i < BIG; i++)
        data[i] = (uint8_t)(i * 13 + 1);
    for (int i = 0; i < 3; i++)
        ok &= send_piece(link, h.seq, cut[i], data + cut[i], cut[i + 1] - cut[i]) == RGPU_OK;
    ok &= rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base, NULL, 0) == RGPU_OK;
    free(data);
    atomic_store(&pieces_peer_ok, ok);
    peer_recv(link, NULL, NULL); /* goodbye */
}

Test(client_conn, reply_pieces_land_in_destination_in_order)
{
    rgpu_conn_t *conn = open_with(script_read_pieces);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    uint8_t *dst = calloc(1, BIG);
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = BIG};

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call), RGPU_OK);
    cr_assert_eq(call.reply_type, RGPU__MSG_TYPE__MSG_CL_READ_REPLY);
    cr_assert_eq(call.bulk_len, BIG, "received %llu bytes in pieces", (unsigned long long)call.bulk_len);
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(dst[i], (uint8_t)(i * 13 + 1), "byte %zu wrong", i);
    rgpu_call_cleanup(&call);
    free(dst);
    finish(conn);
    cr_assert(atomic_load(&pieces_peer_ok), "the peer could not send its pieces");
}

#define PIECE_CAP 4096u
#define PIECE_GUARD 64u

/* Pieces a server must not send: one leaving a gap (first call), one past
 * the destination's end (second call). Then a plain ping, which must work. */
static void script_bad_pieces(rgpu_link_t *link)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    Rgpu__Pong pong = RGPU__PONG__INIT;
    static uint8_t data[2 * PIECE_CAP];
    rgpu_frame_header_t h;
    int ok = 1;

    memset(data, 0xAB, sizeof(data));
    h = peer_recv(link, NULL, NULL);
    ok &= send_piece(link, h.seq, 0, data, 100) == RGPU_OK;
    ok &= send_piece(link, h.seq, 200, data, 100) == RGPU_OK;          /* a gap */
    ok &= rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base, NULL, 0) == RGPU_OK;
    h = peer_recv(link, NULL, NULL);
    ok &= send_piece(link, h.seq, 0, data, PIECE_CAP - 10) == RGPU_OK;
    ok &= send_piece(link, h.seq, PIECE_CAP - 10, data, 20) == RGPU_OK; /* 10 bytes too many */
    ok &= rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base, NULL, 0) == RGPU_OK;
    h = peer_recv(link, NULL, NULL);
    ok &= h.type == RGPU__MSG_TYPE__MSG_PING;
    ok &= rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_PONG, h.seq, &pong.base, NULL, 0) == RGPU_OK;
    atomic_store(&pieces_peer_ok, ok);
    peer_recv(link, NULL, NULL); /* goodbye */
}

Test(client_conn, misplaced_pieces_fail_the_call_and_spare_memory)
{
    rgpu_conn_t *conn = open_with(script_bad_pieces);
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint8_t *dst = calloc(1, PIECE_CAP + PIECE_GUARD);
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = PIECE_CAP};
    rgpu_call_t pcall = {0};

    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call),
                 RGPU_ERR_PROTOCOL, "a piece after a gap must fail the call");
    cr_assert_eq(call.bulk_len, 100);
    for (size_t i = 100; i < PIECE_CAP + PIECE_GUARD; i++)
        cr_assert_eq(dst[i], 0, "byte %zu written by a piece after a gap", i);
    rgpu_call_cleanup(&call);

    memset(&call, 0, sizeof(call));
    call.bulk_dst = dst;
    call.bulk_cap = PIECE_CAP;
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call),
                 RGPU_ERR_PROTOCOL, "a piece past the destination must fail the call");
    for (size_t i = PIECE_CAP; i < PIECE_CAP + PIECE_GUARD; i++)
        cr_assert_eq(dst[i], 0, "guard byte %zu overwritten", i);
    rgpu_call_cleanup(&call);

    /* The connection still works. */
    cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &pcall), RGPU_OK);
    cr_assert_eq(pcall.reply_type, RGPU__MSG_TYPE__MSG_PONG);
    rgpu_call_cleanup(&pcall);
    free(dst);
    finish(conn);
    cr_assert(atomic_load(&pieces_peer_ok), "the peer saw something unexpected");
}

/* ---- large bulks are sent whole, after what was queued ---- */

static void script_big_write(rgpu_link_t *link)
{
    uint8_t *body, *bulk;
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_FLUSH, "queued frame must go before the big write");
    h = peer_recv(link, &body, &bulk);
    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER);
    cr_assert_eq(h.bulk_len, BIG);
    for (size_t i = 0; i < BIG; i++)
        cr_assert_eq(bulk[i], (uint8_t)(i ^ (i >> 8)), "byte %zu wrong", i);
    free(body);
    free(bulk);
    peer_recv(link, NULL, NULL);
}

Test(client_conn, big_write_goes_after_queued_calls)
{
    rgpu_conn_t *conn = open_with(script_big_write);
    Rgpu__ClQueueOp op = RGPU__CL_QUEUE_OP__INIT;
    Rgpu__ClWriteBuffer wr = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t *src = malloc(BIG);

    for (size_t i = 0; i < BIG; i++)
        src[i] = (uint8_t)(i ^ (i >> 8));
    wr.size = BIG;
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_FLUSH, &op.base, NULL, 0), RGPU_OK);
    cr_assert_eq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &wr.base, src, BIG), RGPU_OK);
    /* The caller may reuse its memory at once. */
    memset(src, 0, BIG);
    free(src);
    finish(conn);
}

/* ---- asynchronous errors surface at the next sync point ---- */

static void script_async_error(rgpu_link_t *link)
{
    Rgpu__AsyncError err = RGPU__ASYNC_ERROR__INIT;
    Rgpu__Pong pong = RGPU__PONG__INIT;
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_NDRANGE);
    err.seq = h.seq;
    err.msg_type = h.type;
    err.cl_error = -52; /* CL_INVALID_KERNEL_ARGS */
    err.what = "clEnqueueNDRangeKernel";
    rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_ASYNC_ERROR, 0, &err.base, NULL, 0);
    h = peer_recv(link, NULL, NULL);
    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_PING);
    rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_PONG, h.seq, &pong.base, NULL, 0);
    peer_recv(link, NULL, NULL);
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

static void script_die(rgpu_link_t *link)
{
    peer_recv(link, NULL, NULL); /* the ping that will never be answered */
    rgpu_link_close(link);
    peer.link = NULL;
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
    cr_assert(strlen(reason) > 0);
    /* Later calls fail at once. */
    Rgpu__ClRelease rel = RGPU__CL_RELEASE__INIT;
    cr_assert_neq(rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_CL_RELEASE, &rel.base, NULL, 0), RGPU_OK);
    finish(conn);
}

/* ---- who receives: the waiting caller, or the reader thread ---- */

static void script_late_reply(rgpu_link_t *link)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    uint64_t data = 0x5eedULL;
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
    usleep(100 * 1000);     /* the client is not waiting by then */
    cr_assert_eq(rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base, &data,
                                    sizeof(data)), RGPU_OK);
    peer_recv(link, NULL, NULL); /* goodbye */
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
        usleep(10 * 1000);
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
static void script_echo_offsets(rgpu_link_t *link)
{
    for (int i = 0; i < CALLERS * CALLS_EACH; i++) {
        Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
        uint8_t *body;
        rgpu_frame_header_t h = peer_recv(link, &body, NULL);
        Rgpu__ClReadBuffer *req;

        cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER);
        req = rgpu__cl_read_buffer__unpack(NULL, h.body_len, body);
        cr_assert_not_null(req);
        cr_assert_eq(rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, h.seq, &reply.base,
                                        &req->offset, sizeof(req->offset)), RGPU_OK);
        rgpu__cl_read_buffer__free_unpacked(req, NULL);
        free(body);
    }
    peer_recv(link, NULL, NULL); /* goodbye */
}

static void *caller_main(void *arg)
{
    rgpu_conn_t *conn = arg;
    static _Atomic uint64_t next = 1;

    for (int i = 0; i < CALLS_EACH; i++) {
        Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
        uint64_t got = 0;
        rgpu_call_t call = {.bulk_dst = &got, .bulk_cap = sizeof(got)};

        req.offset = next++;
        cr_assert_eq(rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, NULL, 0, &call),
                     RGPU_OK);
        cr_assert_eq(got, req.offset, "a caller got another call's reply (%llu for %llu)",
                     (unsigned long long)got, (unsigned long long)req.offset);
        rgpu_call_cleanup(&call);
    }
    return NULL;
}

Test(client_conn, concurrent_callers_each_get_their_reply)
{
    rgpu_conn_t *conn = open_with(script_echo_offsets);
    pthread_t threads[CALLERS];

    /* Whichever caller receives hands the others their replies. */
    for (int t = 0; t < CALLERS; t++)
        cr_assert_eq(pthread_create(&threads[t], NULL, caller_main, conn), 0);
    for (int t = 0; t < CALLERS; t++)
        pthread_join(threads[t], NULL);
    finish(conn);
}

static void script_notify(rgpu_link_t *link)
{
    Rgpu__EventNotify note = RGPU__EVENT_NOTIFY__INIT;
    rgpu_frame_header_t h = peer_recv(link, NULL, NULL);

    cr_assert_eq(h.type, RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK);
    usleep(50 * 1000);
    note.callback_id = 7;
    note.status = 0; /* CL_COMPLETE */
    cr_assert_eq(rgpu_link_send_msg(link, RGPU__MSG_TYPE__MSG_EVENT_NOTIFY, 0, &note.base, NULL, 0), RGPU_OK);
    peer_recv(link, NULL, NULL); /* goodbye */
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
        usleep(10 * 1000);
    cr_assert_eq(atomic_load(&notes), 1, "the notification was not received within 5 s");
    finish(conn);
}
