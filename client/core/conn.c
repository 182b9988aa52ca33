/*
 * rgpu_conn_t: see rgpu/client_core.h.
 *
 * Locks: send_lock serializes everything that writes to the link (the send
 * buffer, sequence numbers, the pieces of a fragmented frame).
 * pending_lock guards the list of calls waiting for replies, the list of
 * outstanding data descriptors and the deferred error. The thread that
 * receives never takes send_lock, so a sender blocked on a full link can
 * never stop the receiver from draining replies and serving the server's
 * gets (which is what unblocks the server, and so the sender).
 *
 * Descriptors (docs/transport.md): a request whose frame would not fit the
 * transport's eager limit sends its bulk by descriptor: the source is
 * registered through the registration cache and named in the frame
 * (RGPU_FRAME_F_DESC, a packed BulkRefs); the server gets it and says
 * MSG_BULK_DONE when it will not touch it again, and only then is it given
 * back to the cache. A call whose reply may bring more bulk than fits a
 * message registers its destination too, and the server puts the bytes
 * there (MSG_BULK_PART with put_len). On TCP the server's gets are served
 * by whichever thread receives, so a descriptor still outstanding needs a
 * receiver just as a reply nobody waits for does.
 *
 * In the stream: on a transport with caps.stream_bulk (TCP) a request's
 * large data rather follows its frame on the connection, sent from the
 * caller's memory (RGPU_FRAME_F_STREAM), and the server receives it
 * straight into its memory: no round trip before the bytes move, and the
 * memory is free again once sent. The server takes that data before it
 * reads anything behind it, so this is done only while nothing the server
 * may wait for can be behind it: no data descriptor outstanding (its get's
 * answer) and no reply by descriptor pending (its puts' answers). Checked
 * and sent under send_lock, so nothing slips in between.
 * RGPU_STREAM_BULK=0 turns it off (everything past the eager limit then
 * goes by descriptor, as on verbs).
 */
#include "rgpu/client_core.h"

#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/log.h"
#include "rgpu/rcache.h"
#include "rgpu/wire.h"

/* Bulks up to this size are copied into the send buffer; larger ones that
 * still fit a message are sent straight from the caller's memory. */
#define RGPU_CONN_COPY_MAX   (64u << 10)
/* Asynchronous frames wait in the send buffer for a synchronous call, or
 * until it holds flush_at bytes. flush_at starts at RGPU_CONN_FLUSH_FIRST
 * after every synchronous call and doubles with each flush, up to
 * RGPU_CONN_FLUSH_MAX: the first launches of a burst reach the server while
 * the rest are still being encoded, and a long burst costs a few large
 * writes. */
#define RGPU_CONN_FLUSH_FIRST (1u << 10)
#define RGPU_CONN_FLUSH_MAX   (256u << 10)
/* A reply's bulk goes into a registered destination (the server puts it)
 * when the call may receive more than this much less than the eager limit:
 * the rest of a message is the reply's header and body. */
#define RGPU_CONN_REPLY_ROOM  4096u

/* What a post waits for when its bulk went by descriptor (on its stack). */
typedef struct {
    int lent;                   /* the bulk went by descriptor */
    int released;               /* ...and came back: the caller may reuse it */
    rgpu_status_t status;       /* RGPU_OK (MSG_BULK_DONE) or the connection's end */
} rgpu_conn_lend_t;

/* A request's bulk lent to the server by descriptor, until its
 * MSG_BULK_DONE (or the connection's end) gives it back to the cache. */
typedef struct rgpu_conn_desc {
    uint64_t seq;               /* the request's */
    rgpu_mem_t *mem;            /* from rgpu_rcache_get */
    rgpu_call_t *call;          /* the request's call, or NULL: a post */
    rgpu_conn_lend_t *lend;     /* a post's, told when mem went back */
    struct rgpu_conn_desc *next;
} rgpu_conn_desc_t;

struct rgpu_conn {
    rgpu_transport_t *tp;           /* this connection's own instance */
    rgpu_rcache_t *rcache;
    rgpu_link_t *link;
    rgpu_wire_rx_t rx;              /* used only by the reader role's holder */
    size_t max_eager;               /* the transport's, fixed at open */
    int stream_bulk;                /* large request data may go in the stream */
    char addr[128];

    pthread_mutex_t send_lock;
    uint8_t *sendbuf;
    size_t send_len;
    size_t send_cap;
    size_t flush_at;                /* see RGPU_CONN_FLUSH_FIRST */
    uint64_t next_seq;

    pthread_mutex_t pending_lock;
    pthread_cond_t pending_cond;    /* a call or descriptor completed, or the reader role is free */
    pthread_cond_t reader_cond;     /* the reader thread may receive again */
    int waiters;                    /* threads waiting for a call or a descriptor */
    int reading;                    /* a thread holds the reader role */
    int unwaited;                   /* registered calls without call->waited */
    int notify_wanted;              /* rgpu_conn_want_notifications ran */
    rgpu_call_t *pending_head;
    rgpu_call_t *pending_tail;
    rgpu_conn_desc_t *descs;        /* outstanding data descriptors */
    int reply_descs;                /* pending calls whose reply comes by descriptor */
    rgpu_status_t dead;             /* RGPU_OK while the link works */
    char dead_reason[256];
    int32_t deferred_error;
    char deferred_what[256];

    _Atomic uint64_t next_id;
    pthread_t reader;
    int reader_started;
    int closing;                    /* rgpu_conn_close ran: a dead link is expected */
    rgpu_conn_notify_fn notify;
    void *notify_arg;
};

int rgpu_conn_sync_mode(void)
{
    static int mode = -1;

    if (mode < 0) {
        const char *env = getenv("RGPU_SYNC");
        mode = env && env[0] == '1';
    }
    return mode;
}

uint64_t rgpu_conn_new_id(rgpu_conn_t *conn)
{
    return atomic_fetch_add(&conn->next_id, 1);
}

const char *rgpu_conn_addr(const rgpu_conn_t *conn)
{
    return conn->addr;
}

/* Removes call from the pending list (if it is there). pending_lock held. */
static void rgpu_conn_pending_unlink(rgpu_conn_t *conn, rgpu_call_t *call)
{
    rgpu_call_t *prev = NULL, *c;

    for (c = conn->pending_head; c && c != call; prev = c, c = c->next)
        ;
    if (!c)
        return;
    if (prev)
        prev->next = c->next;
    else
        conn->pending_head = c->next;
    if (conn->pending_tail == c)
        conn->pending_tail = prev;
    c->next = NULL;
}

static rgpu_call_t *rgpu_conn_pending_find(rgpu_conn_t *conn, uint64_t seq)
{
    rgpu_call_t *call;

    for (call = conn->pending_head; call && call->seq != seq; call = call->next)
        ;
    return call;
}

/* Completes a call: its reply destination goes back to the cache before
 * done runs (the application may free it from there). pending_lock held. */
static void rgpu_conn_complete_locked(rgpu_conn_t *conn, rgpu_call_t *call, rgpu_status_t status)
{
    rgpu_conn_pending_unlink(conn, call);
    if (call->reply_mem) {
        rgpu_rcache_put(conn->rcache, call->reply_mem);
        call->reply_mem = NULL;
        conn->reply_descs--;
    }
    if (status != RGPU_OK && call->status == RGPU_OK)
        call->status = status;
    if (!call->waited)
        conn->unwaited--;
    call->complete = 1;
    if (call->done)
        call->done(call);
    pthread_cond_broadcast(&conn->pending_cond);
}

/* Gives a descriptor's registration back and says so to whoever waits for
 * it (its post, or its call, which completes if its reply came too).
 * pending_lock held; desc is unlinked and freed. */
static void rgpu_conn_desc_release_locked(rgpu_conn_t *conn, rgpu_conn_desc_t *desc, rgpu_status_t status)
{
    rgpu_call_t *call = desc->call;

    rgpu_rcache_put(conn->rcache, desc->mem);
    if (desc->lend) {
        desc->lend->status = status;
        desc->lend->released = 1;
    }
    if (call) {
        call->data_outstanding = 0;
        if (call->replied || status != RGPU_OK)
            rgpu_conn_complete_locked(conn, call, status);
    }
    free(desc);
    pthread_cond_broadcast(&conn->pending_cond);
}

/* Marks the connection dead (first reason wins), fails every waiting call
 * and gives back every registration. Called with pending_lock held. */
static void rgpu_conn_fail_locked(rgpu_conn_t *conn, rgpu_status_t status, const char *reason)
{
    if (conn->dead == RGPU_OK) {
        conn->dead = status;
        snprintf(conn->dead_reason, sizeof(conn->dead_reason), "%s", reason);
        if (!conn->closing)
            rgpu_warn("client", "lost server %s: %s", conn->addr, reason);
    }
    while (conn->descs) {
        rgpu_conn_desc_t *desc = conn->descs;

        conn->descs = desc->next;
        rgpu_conn_desc_release_locked(conn, desc, status);
    }
    while (conn->pending_head)
        rgpu_conn_complete_locked(conn, conn->pending_head, status);
    pthread_cond_broadcast(&conn->pending_cond);
}

rgpu_status_t rgpu_conn_health(rgpu_conn_t *conn, const char **reason)
{
    rgpu_status_t status;

    pthread_mutex_lock(&conn->pending_lock);
    status = conn->dead;
    if (reason)
        *reason = conn->dead_reason;
    pthread_mutex_unlock(&conn->pending_lock);
    return status;
}

static void rgpu_conn_record_async_error(rgpu_conn_t *conn, const uint8_t *body, size_t len)
{
    Rgpu__AsyncError *err = rgpu__async_error__unpack(NULL, len, body);

    if (!err)
        return;
    rgpu_debug("client", "server %s: asynchronous call (seq %llu, type %u) failed with %d: %s",
               conn->addr, (unsigned long long)err->seq, err->msg_type, err->cl_error, err->what);
    pthread_mutex_lock(&conn->pending_lock);
    if (conn->deferred_error == 0) {
        conn->deferred_error = err->cl_error;
        snprintf(conn->deferred_what, sizeof(conn->deferred_what), "%s", err->what);
    }
    pthread_mutex_unlock(&conn->pending_lock);
    rgpu__async_error__free_unpacked(err, NULL);
}

int32_t rgpu_conn_take_deferred_error(rgpu_conn_t *conn)
{
    int32_t err;

    pthread_mutex_lock(&conn->pending_lock);
    err = conn->deferred_error;
    conn->deferred_error = 0;
    if (err)
        rgpu_warn("client", "an earlier asynchronous call failed on server %s (error %d): %s",
                  conn->addr, err, conn->deferred_what);
    pthread_mutex_unlock(&conn->pending_lock);
    return err;
}

/* ---- receiving -------------------------------------------------------- */

/* A frame addressed to a call: its body is kept, its inline bulk copied into
 * the call's destination (unless pieces of it came before). The call
 * completes now, or at its MSG_BULK_DONE if its request's bulk is still
 * lent to the server. The caller holds the reader role. */
static void rgpu_conn_take_reply(rgpu_conn_t *conn, const rgpu_wire_frame_t *f, rgpu_call_t *call)
{
    const rgpu_frame_header_t *h = &f->header;
    rgpu_status_t status = RGPU_OK;
    uint8_t *body = NULL;

    if (h->body_len) {
        body = malloc(h->body_len);
        if (body)
            memcpy(body, f->body, h->body_len);
        else
            status = RGPU_ERR_NOMEM;
    }
    if (h->flags & RGPU_FRAME_F_DESC) {
        rgpu_warn("client", "server %s answered with descriptors, which only requests carry", conn->addr);
        status = RGPU_ERR_PROTOCOL;
    } else if (h->bulk_len > 0) {
        if (call->bulk_len || h->bulk_len > call->bulk_cap || !call->bulk_dst) {
            rgpu_warn("client", "server %s sent %llu bytes of bulk for a call that expected at most %llu",
                      conn->addr, (unsigned long long)(call->bulk_len + h->bulk_len),
                      (unsigned long long)call->bulk_cap);
            status = RGPU_ERR_PROTOCOL;
        } else {
            memcpy(call->bulk_dst, f->bulk, (size_t)h->bulk_len);
            call->bulk_len = h->bulk_len;
        }
    }
    pthread_mutex_lock(&conn->pending_lock);
    call->reply_type = h->type;
    call->body = body;
    call->body_len = body ? h->body_len : 0;
    call->replied = 1;
    if (status != RGPU_OK && call->status == RGPU_OK)
        call->status = status;
    if (!call->data_outstanding)
        rgpu_conn_complete_locked(conn, call, RGPU_OK);
    pthread_mutex_unlock(&conn->pending_lock);
}

/* A piece of a reply's bulk sent ahead of the reply (MSG_BULK_PART, a
 * server's pipelined read): inline bytes are copied into the call's
 * destination after the pieces before them; put_len says that many bytes
 * were put into the registered destination there. The call stays pending:
 * its reply follows with the status. A piece that does not continue where
 * the last one ended, or would overflow the destination, is dropped and
 * fails the call (the application's memory past what was asked for is
 * never touched: a put can reach no further than the registration, which
 * is the destination). The caller holds the reader role, so the call
 * cannot complete meanwhile. */
static void rgpu_conn_take_part(rgpu_conn_t *conn, const rgpu_wire_frame_t *f)
{
    const rgpu_frame_header_t *h = &f->header;
    Rgpu__BulkPart *part = rgpu__bulk_part__unpack(NULL, h->body_len, f->body);
    rgpu_call_t *call;
    uint64_t len = 0;
    int fits = 0, put = 0;

    pthread_mutex_lock(&conn->pending_lock);
    call = rgpu_conn_pending_find(conn, h->seq);
    pthread_mutex_unlock(&conn->pending_lock);
    if (call && call->replied)
        call = NULL;
    if (part && call && call->status == RGPU_OK && part->offset == call->bulk_len) {
        if (part->put_len) {
            put = 1;
            len = part->put_len;
            fits = h->bulk_len == 0 && call->reply_mem && len <= call->bulk_cap - call->bulk_len;
        } else {
            len = h->bulk_len;
            fits = call->bulk_dst && len <= call->bulk_cap - call->bulk_len;
        }
    }
    if (part)
        rgpu__bulk_part__free_unpacked(part, NULL);
    if (!fits) {
        if (call && call->status == RGPU_OK) {
            rgpu_warn("client", "server %s sent a piece of %llu bytes that does not continue the %llu bytes "
                      "received of at most %llu", conn->addr, (unsigned long long)(len ? len : h->bulk_len),
                      (unsigned long long)call->bulk_len, (unsigned long long)call->bulk_cap);
            call->status = RGPU_ERR_PROTOCOL;
        } else if (!call) {
            rgpu_warn("client", "server %s sent a piece of bulk for no pending call (seq %llu); ignored",
                      conn->addr, (unsigned long long)h->seq);
        }
        return;
    }
    if (!put)
        memcpy((uint8_t *)call->bulk_dst + call->bulk_len, f->bulk, (size_t)len);
    call->bulk_len += len;
}

/* MSG_BULK_DONE: the server will not touch the request's data descriptor
 * again, so its registration goes back to the cache. */
static void rgpu_conn_take_bulk_done(rgpu_conn_t *conn, const rgpu_wire_frame_t *f)
{
    Rgpu__BulkDone *done = rgpu__bulk_done__unpack(NULL, f->header.body_len, f->body);
    rgpu_conn_desc_t **pp, *desc = NULL;

    if (done && done->status != RGPU_OK)
        rgpu_debug("client", "server %s could not take all of request %llu's bulk: %s", conn->addr,
                   (unsigned long long)f->header.seq, rgpu_status_str((rgpu_status_t)done->status));
    if (done)
        rgpu__bulk_done__free_unpacked(done, NULL);
    pthread_mutex_lock(&conn->pending_lock);
    for (pp = &conn->descs; *pp; pp = &(*pp)->next) {
        if ((*pp)->seq == f->header.seq) {
            desc = *pp;
            *pp = desc->next;
            break;
        }
    }
    if (desc)
        rgpu_conn_desc_release_locked(conn, desc, RGPU_OK);
    pthread_mutex_unlock(&conn->pending_lock);
    if (!desc)
        rgpu_warn("client", "server %s released a descriptor it was never lent (seq %llu); ignored",
                  conn->addr, (unsigned long long)f->header.seq);
}

/* Hands one received frame on: a reply completes its call, a piece of bulk
 * lands in its call's destination, MSG_BULK_DONE releases a descriptor, an
 * asynchronous error is kept for the next sync point, a notification goes
 * to the notify callback. The caller holds the reader role. Returns RGPU_OK,
 * or why the connection must end (with a sentence in reason). */
static rgpu_status_t rgpu_conn_dispatch(rgpu_conn_t *conn, const rgpu_wire_frame_t *f, char *reason,
                                        size_t reason_cap)
{
    const rgpu_frame_header_t *h = &f->header;
    rgpu_call_t *call = NULL;

    if (h->seq != 0 && h->type == RGPU__MSG_TYPE__MSG_BULK_PART) {
        rgpu_conn_take_part(conn, f);
        return RGPU_OK;
    }
    if (h->seq != 0 && h->type == RGPU__MSG_TYPE__MSG_BULK_DONE) {
        rgpu_conn_take_bulk_done(conn, f);
        return RGPU_OK;
    }
    if (h->seq != 0) {
        pthread_mutex_lock(&conn->pending_lock);
        call = rgpu_conn_pending_find(conn, h->seq);
        pthread_mutex_unlock(&conn->pending_lock);
    }
    if (call && !call->replied) {
        rgpu_conn_take_reply(conn, f, call);
    } else if (h->type == RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
        rgpu_conn_record_async_error(conn, f->body, h->body_len);
    } else if (h->type == RGPU__MSG_TYPE__MSG_SESSION_ERROR) {
        Rgpu__SessionError *err = rgpu__session_error__unpack(NULL, h->body_len, f->body);

        snprintf(reason, reason_cap, "the server ended the session: %s",
                 err && err->reason ? err->reason : "(no reason given)");
        if (err)
            rgpu__session_error__free_unpacked(err, NULL);
        return RGPU_ERR_REFUSED;
    } else if (conn->notify && h->seq == 0) {
        conn->notify(conn->notify_arg, h->type, f->body, h->body_len);
    } else {
        rgpu_warn("client", "server %s sent an unexpected frame (type %u, seq %llu); ignored",
                  conn->addr, h->type, (unsigned long long)h->seq);
    }
    return RGPU_OK;
}

/* Receives and hands on frames. until == NULL (the reader thread): only
 * what has arrived, until nothing is left. Otherwise (a waiting caller):
 * without a time limit until *until is set (a call completed, a descriptor
 * came back) and nothing received is left in the wire's or the transport's
 * buffers, so that no frame waits there unseen once the role is given
 * back. The caller holds the reader role. */
static rgpu_status_t rgpu_conn_read_until(rgpu_conn_t *conn, const int *until, char *reason,
                                          size_t reason_cap)
{
    rgpu_wire_frame_t f;
    rgpu_status_t status;

    for (;;) {
        status = rgpu_wire_recv(&conn->rx, &f, until ? -1 : 0, reason, reason_cap);
        if (status == RGPU_ERR_TIMEOUT && !until && !rgpu_wire_rx_pending(&conn->rx))
            return RGPU_OK;
        if (status == RGPU_ERR_TIMEOUT)
            continue;
        if (status != RGPU_OK)
            return status;
        status = rgpu_conn_dispatch(conn, &f, reason, reason_cap);
        if (status != RGPU_OK)
            return status;
        /* Only this thread sets *until (the role's holder completes calls
         * and releases descriptors), so it may read it unlocked. */
        if (until && *until && !rgpu_wire_rx_pending(&conn->rx))
            return RGPU_OK;
    }
}

/* The reader thread has work while nobody waits: a reply nobody will wait
 * for at once, notifications, a descriptor the server may still get from
 * (on TCP someone must receive for its gets to be served, and its
 * MSG_BULK_DONE to arrive), or a link to see closed. pending_lock held. */
static int rgpu_conn_reader_needed(const rgpu_conn_t *conn)
{
    return conn->unwaited > 0 || conn->descs || conn->notify_wanted || conn->closing;
}

void rgpu_conn_want_notifications(rgpu_conn_t *conn)
{
    pthread_mutex_lock(&conn->pending_lock);
    if (!conn->notify_wanted) {
        conn->notify_wanted = 1;
        pthread_cond_signal(&conn->reader_cond);
    }
    pthread_mutex_unlock(&conn->pending_lock);
}

/*
 * Who receives. One thread at a time holds the reader role (conn->reading)
 * and receives whole frames for everyone through conn->rx. A thread waiting
 * for its reply takes the role itself when it is free, so a synchronous
 * call costs one send and one receive in the caller's own thread, with no
 * hand-over between threads (rCUDA receives in the caller for the same
 * reason). The reader thread below takes the role only while nobody waits,
 * and only when something may arrive that nobody will wait for (the reply
 * of a non-blocking read, event notifications, the server's gets of a
 * descriptor and its MSG_BULK_DONE, the end at close): then it sleeps in
 * poll() on the link's event fd, outside the role, and steps back as soon
 * as a caller waits. Otherwise it sleeps on a condition variable, and a
 * program making only synchronous calls never wakes it.
 *
 * rgpu_conn_lead runs one turn in the role: pending_lock held and the role
 * free on entry, held again on return. It receives until *until is set (the
 * reader thread passes NULL: what has arrived, if anything), then gives the
 * role back: on a failure every call fails and the link is shut down (the
 * server hears it, and a reader thread in poll() wakes), otherwise the
 * threads waiting by then (besides the caller, counted in waiters when
 * self_waiting) may take the role next.
 */
static void rgpu_conn_lead(rgpu_conn_t *conn, const int *until, int self_waiting)
{
    rgpu_status_t status;
    char reason[256];

    conn->reading = 1;
    pthread_mutex_unlock(&conn->pending_lock);
    status = rgpu_conn_read_until(conn, until, reason, sizeof(reason));
    pthread_mutex_lock(&conn->pending_lock);
    conn->reading = 0;
    if (status != RGPU_OK) {
        rgpu_conn_fail_locked(conn, status, reason);
        rgpu_link_shutdown(conn->link);
    } else if (conn->waiters > self_waiting) {
        pthread_cond_broadcast(&conn->pending_cond);
    }
}

static void *rgpu_conn_reader(void *arg)
{
    rgpu_conn_t *conn = arg;
    struct pollfd pfd = {rgpu_link_event_fd(conn->link), POLLIN, 0};

    pthread_mutex_lock(&conn->pending_lock);
    while (conn->dead == RGPU_OK) {
        if (conn->waiters || conn->reading || !rgpu_conn_reader_needed(conn)) {
            pthread_cond_wait(&conn->reader_cond, &conn->pending_lock);
            continue;
        }
        pthread_mutex_unlock(&conn->pending_lock);
        poll(&pfd, 1, -1);
        pthread_mutex_lock(&conn->pending_lock);
        if (conn->dead != RGPU_OK || conn->waiters || conn->reading || !rgpu_conn_reader_needed(conn))
            continue;
        rgpu_conn_lead(conn, NULL, 0);
    }
    pthread_mutex_unlock(&conn->pending_lock);
    return NULL;
}

/* Waits until *flag is set (a call completed, a post's descriptor came
 * back), receiving in this thread whenever the reader role is free.
 * pending_lock held. */
static void rgpu_conn_wait_locked(rgpu_conn_t *conn, const int *flag)
{
    conn->waiters++;
    while (!*flag) {
        if (conn->reading || conn->dead != RGPU_OK) {
            /* Someone else receives (and sets the flag when its frame
             * comes); a dead link has completed every call and released
             * every descriptor. */
            pthread_cond_wait(&conn->pending_cond, &conn->pending_lock);
            continue;
        }
        rgpu_conn_lead(conn, flag, 1);
    }
    if (--conn->waiters == 0 && rgpu_conn_reader_needed(conn))
        pthread_cond_signal(&conn->reader_cond);
}

/* ---- sending ---------------------------------------------------------- */

/* Sends the send buffer's frames (as batches where several fit a message).
 * send_lock held. */
static rgpu_status_t rgpu_conn_flush_locked(rgpu_conn_t *conn)
{
    rgpu_status_t status;

    if (conn->send_len == 0)
        return RGPU_OK;
    status = rgpu_wire_send_frames(conn->link, conn->sendbuf, conn->send_len);
    conn->send_len = 0;
    if (status != RGPU_OK) {
        /* The receiver sees the same failure and fails waiting calls; make
         * sure it wakes up even if only our direction broke. */
        rgpu_link_shutdown(conn->link);
    }
    return status;
}

static rgpu_status_t rgpu_conn_reserve_locked(rgpu_conn_t *conn, size_t need)
{
    if (conn->send_len + need <= conn->send_cap)
        return RGPU_OK;
    size_t cap = conn->send_cap ? conn->send_cap : 4096;
    while (cap < conn->send_len + need)
        cap *= 2;
    uint8_t *p = realloc(conn->sendbuf, cap);
    if (!p)
        return RGPU_ERR_NOMEM;
    conn->sendbuf = p;
    conn->send_cap = cap;
    return RGPU_OK;
}

/* The descriptor the server needs for [addr, addr+len) of a region the
 * cache returned (which may start before addr). */
static void rgpu_conn_describe(const rgpu_mem_t *mem, const void *addr, uint64_t len, rgpu_mem_desc_t *desc_p)
{
    *desc_p = rgpu_mem_desc(mem);
    desc_p->addr = (uint64_t)(uintptr_t)addr;
    desc_p->len = len;
}

/*
 * Queues (or sends) one frame. Its bulk travels:
 *  - copied into the send buffer, up to RGPU_CONN_COPY_MAX when the frame
 *    fits a message;
 *  - straight from the caller's memory, after what was queued, when it is
 *    larger and the frame still fits a message;
 *  - by descriptor (lend->lent set: a post must wait for lend->released
 *    before the memory may be reused) when the frame would not fit, or when the
 *    call's reply bulk goes by descriptor (the frame's inline bulk is then
 *    the descriptors).
 * send_now: a synchronous call, which sends everything at once.
 */
static rgpu_status_t rgpu_conn_enqueue(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                                       const void *bulk, uint64_t bulk_len, int send_now,
                                       rgpu_call_t *call, rgpu_conn_lend_t *lend)
{
    size_t frame_len = rgpu_frame_packed_size(msg);
    size_t reply_inline_max = conn->max_eager > RGPU_CONN_REPLY_ROOM ? conn->max_eager - RGPU_CONN_REPLY_ROOM : 0;
    int reply_by_desc = call && call->bulk_dst && call->bulk_cap > reply_inline_max;
    int data_by_desc = bulk_len > 0 && (reply_by_desc || frame_len + bulk_len > conn->max_eager);
    rgpu_mem_t *data_mem = NULL, *reply_mem = NULL;
    rgpu_conn_desc_t *desc = NULL;
    uint8_t refs[RGPU_WIRE_REFS_MAX];
    const void *inline_bulk = bulk;
    uint64_t inline_len = bulk_len;
    uint32_t flags = 0;
    int copy_bulk, locked = 0;
    size_t frame_off;
    rgpu_status_t status;

    if ((status = rgpu_conn_health(conn, NULL)) != RGPU_OK)
        return status;
    if (data_by_desc && !reply_by_desc && conn->stream_bulk) {
        /* In the stream when nothing the server may wait for can be
         * behind it (top of this file); send_lock stays held until sent. */
        pthread_mutex_lock(&conn->send_lock);
        locked = 1;
        pthread_mutex_lock(&conn->pending_lock);
        if (!conn->descs && conn->reply_descs == 0) {
            data_by_desc = 0;
            flags = RGPU_FRAME_F_STREAM;
        }
        pthread_mutex_unlock(&conn->pending_lock);
    }
    if (data_by_desc || reply_by_desc) {
        rgpu_mem_desc_t data_desc, reply_desc;

        if (data_by_desc) {
            desc = calloc(1, sizeof(*desc));
            if (!desc) {
                status = RGPU_ERR_NOMEM;
                goto out_unlock;
            }
            status = rgpu_rcache_get(conn->rcache, (void *)bulk, (size_t)bulk_len, RGPU_MEMTYPE_HOST, &data_mem);
            if (status != RGPU_OK)
                goto out_unlock;
            rgpu_conn_describe(data_mem, bulk, bulk_len, &data_desc);
        }
        if (reply_by_desc) {
            status = rgpu_rcache_get(conn->rcache, call->bulk_dst, (size_t)call->bulk_cap, RGPU_MEMTYPE_HOST,
                                     &reply_mem);
            if (status != RGPU_OK)
                goto out_unlock;
            rgpu_conn_describe(reply_mem, call->bulk_dst, call->bulk_cap, &reply_desc);
        }
        inline_len = rgpu_wire_refs_pack(data_by_desc ? &data_desc : NULL, reply_by_desc ? &reply_desc : NULL,
                                         refs);
        inline_bulk = refs;
        flags = RGPU_FRAME_F_DESC;
    }
    copy_bulk = inline_len <= RGPU_CONN_COPY_MAX && !(flags & RGPU_FRAME_F_STREAM);

    if (!locked) {
        pthread_mutex_lock(&conn->send_lock);
        locked = 1;
    }
    status = rgpu_conn_reserve_locked(conn, frame_len + (copy_bulk ? (size_t)inline_len : 0));
    if (status != RGPU_OK)
        goto out_unlock;
    uint64_t seq = ++conn->next_seq;
    frame_off = conn->send_len;
    rgpu_frame_pack(conn->sendbuf + frame_off, type, seq, flags, msg, inline_len);
    conn->send_len += frame_len;
    if (copy_bulk && inline_len) {
        memcpy(conn->sendbuf + conn->send_len, inline_bulk, (size_t)inline_len);
        conn->send_len += (size_t)inline_len;
    }
    /* The call and the descriptor are registered before the request
     * leaves, so that its reply and its MSG_BULK_DONE always find them. */
    if (call) {
        call->seq = seq;
        call->complete = 0;
        call->status = RGPU_OK;
        call->body = NULL;
        call->body_len = 0;
        call->bulk_len = 0;
        call->reply_mem = reply_mem;
        call->replied = 0;
        call->data_outstanding = data_by_desc;
        call->next = NULL;
    }
    pthread_mutex_lock(&conn->pending_lock);
    if (conn->dead != RGPU_OK) {
        status = conn->dead;
        pthread_mutex_unlock(&conn->pending_lock);
        conn->send_len = frame_off;
        if (call) {
            call->seq = 0;
            call->reply_mem = NULL;
            call->data_outstanding = 0;
        }
        goto out_unlock;
    }
    if (call) {
        if (conn->pending_tail)
            conn->pending_tail->next = call;
        else
            conn->pending_head = call;
        conn->pending_tail = call;
        if (call->reply_mem)
            conn->reply_descs++;
        if (!call->waited && conn->unwaited++ == 0)
            pthread_cond_signal(&conn->reader_cond);   /* its reply may come while nobody waits */
    }
    if (desc) {
        /* No need to wake the reader thread: a post waits for its
         * descriptor itself, and so does a call's waiter, or the call is
         * unwaited and woke it above. */
        *desc = (rgpu_conn_desc_t){seq, data_mem, call, call ? NULL : lend, conn->descs};
        conn->descs = desc;
        if (lend)
            lend->lent = 1;
        desc = NULL;
        data_mem = NULL;
    }
    reply_mem = NULL;
    pthread_mutex_unlock(&conn->pending_lock);

    if (!copy_bulk) {
        /* Too large to copy: what was queued goes first, then this frame
         * from the caller's memory, in one message. */
        struct iovec iov[2] = {{conn->sendbuf + frame_off, frame_len}, {(void *)inline_bulk, (size_t)inline_len}};

        conn->send_len = frame_off;
        status = rgpu_conn_flush_locked(conn);
        if (status == RGPU_OK) {
            status = rgpu_wire_send_frame(conn->link, iov, 2);
            if (status != RGPU_OK)
                rgpu_link_shutdown(conn->link);
        }
    } else if (send_now || flags || conn->send_len >= conn->flush_at) {
        status = rgpu_conn_flush_locked(conn);
    }
    if (send_now || flags)
        conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    else if (copy_bulk && conn->send_len == 0 && conn->flush_at < RGPU_CONN_FLUSH_MAX)
        conn->flush_at *= 2;    /* the buffer reached flush_at and left */
out_unlock:
    if (locked)
        pthread_mutex_unlock(&conn->send_lock);
    if (reply_mem)
        rgpu_rcache_put(conn->rcache, reply_mem);
    if (data_mem)
        rgpu_rcache_put(conn->rcache, data_mem);
    free(desc);
    return status;
}

rgpu_status_t rgpu_conn_post(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                             const void *bulk, uint64_t bulk_len)
{
    rgpu_conn_lend_t lend = {0};
    rgpu_status_t status = rgpu_conn_enqueue(conn, type, msg, bulk, bulk_len, 0, NULL, &lend);

    if (lend.lent) {
        /* The bulk went by descriptor: the caller may reuse its memory
         * once the server has taken it (or the connection died). */
        pthread_mutex_lock(&conn->pending_lock);
        rgpu_conn_wait_locked(conn, &lend.released);
        if (status == RGPU_OK)
            status = lend.status;
        pthread_mutex_unlock(&conn->pending_lock);
    }
    return status;
}

rgpu_status_t rgpu_conn_flush(rgpu_conn_t *conn)
{
    rgpu_status_t status;

    pthread_mutex_lock(&conn->send_lock);
    status = rgpu_conn_flush_locked(conn);
    conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    pthread_mutex_unlock(&conn->send_lock);
    return status;
}

rgpu_status_t rgpu_conn_call_start(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                                   const void *bulk, uint64_t bulk_len, rgpu_call_t *call)
{
    rgpu_status_t status = rgpu_conn_enqueue(conn, type, msg, bulk, bulk_len, 1, call, NULL);

    if (status != RGPU_OK && call->seq == 0) {
        /* Never registered: complete it here so waiters do not hang. */
        call->status = status;
        call->complete = 1;
    }
    return status;
}

int rgpu_conn_call_done(rgpu_conn_t *conn, rgpu_call_t *call)
{
    int done;

    pthread_mutex_lock(&conn->pending_lock);
    done = call->complete;
    pthread_mutex_unlock(&conn->pending_lock);
    return done;
}

rgpu_status_t rgpu_conn_call_wait(rgpu_conn_t *conn, rgpu_call_t *call)
{
    rgpu_status_t status;

    pthread_mutex_lock(&conn->pending_lock);
    rgpu_conn_wait_locked(conn, &call->complete);
    status = call->status;
    pthread_mutex_unlock(&conn->pending_lock);
    return status;
}

rgpu_status_t rgpu_conn_call(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                             const void *bulk, uint64_t bulk_len, rgpu_call_t *call)
{
    call->seq = 0;
    call->waited = 1;
    rgpu_status_t status = rgpu_conn_call_start(conn, type, msg, bulk, bulk_len, call);
    if (status != RGPU_OK && call->seq == 0)
        return status;
    return rgpu_conn_call_wait(conn, call);
}

void rgpu_call_cleanup(rgpu_call_t *call)
{
    free(call->body);
    call->body = NULL;
}

/* ---- opening and closing ---------------------------------------------- */

static void rgpu_conn_free(rgpu_conn_t *conn)
{
    rgpu_wire_rx_fini(&conn->rx);
    if (conn->link)
        rgpu_link_close(conn->link);
    /* Every registration went back with the calls and descriptors that
     * held it; the cache and the instance go once no link can serve them. */
    if (conn->rcache)
        rgpu_rcache_destroy(conn->rcache);
    if (conn->tp)
        rgpu_transport_close(conn->tp);
    free(conn->sendbuf);
    pthread_mutex_destroy(&conn->send_lock);
    pthread_mutex_destroy(&conn->pending_lock);
    pthread_cond_destroy(&conn->pending_cond);
    pthread_cond_destroy(&conn->reader_cond);
    free(conn);
}

/* The connection's own transport instance (its registrations are its own),
 * its registration cache and its link to addr. */
static rgpu_status_t rgpu_conn_connect(rgpu_conn_t *conn, const char *addr, int timeout_ms, char *reason,
                                       size_t reason_cap)
{
    const rgpu_transport_ops_t *ops;
    const char *bare;
    rgpu_frame_limits_t limits = {RGPU_FRAME_DEFAULT_MAX_BODY, RGPU_FRAME_DEFAULT_MAX_BULK};
    rgpu_status_t status;

    status = rgpu_transport_for_address(addr, &ops, &bare, reason, reason_cap);
    if (status != RGPU_OK)
        return status;
    status = rgpu_transport_open(ops->name, &conn->tp);
    if (status != RGPU_OK) {
        snprintf(reason, reason_cap, "cannot open the %s transport: %s", ops->name, rgpu_status_str(status));
        return status;
    }
    conn->max_eager = rgpu_transport_caps(conn->tp)->max_eager;
    {
        const char *env = getenv("RGPU_STREAM_BULK");

        conn->stream_bulk = rgpu_transport_caps(conn->tp)->stream_bulk && !(env && !strcmp(env, "0"));
    }
    status = rgpu_rcache_create(conn->tp, RGPU_RCACHE_DEFAULT, &conn->rcache);
    if (status != RGPU_OK) {
        snprintf(reason, reason_cap, "out of memory");
        return status;
    }
    status = rgpu_transport_connect(conn->tp, bare, timeout_ms, &conn->link, reason, reason_cap);
    if (status != RGPU_OK)
        return status;
    /* A frame put back together from fragments (a long build log, a reply
     * small enough to come inline) is at most a body and a message. */
    rgpu_wire_rx_init(&conn->rx, conn->link, &limits,
                      RGPU_FRAME_HEADER_SIZE + (uint64_t)limits.max_body + conn->max_eager);
    return RGPU_OK;
}

rgpu_status_t rgpu_conn_open(const char *addr, const Rgpu__Hello *hello, int timeout_ms,
                             rgpu_conn_notify_fn notify, void *notify_arg,
                             rgpu_conn_t **conn_p, Rgpu__HelloReply **reply_p,
                             char *reason, size_t reason_cap)
{
    rgpu_conn_t *conn;
    rgpu_call_t call = {0};
    Rgpu__HelloReply *reply;
    rgpu_status_t status;
    const char *why;

    conn = calloc(1, sizeof(*conn));
    if (!conn) {
        snprintf(reason, reason_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    snprintf(conn->addr, sizeof(conn->addr), "%s", addr);
    conn->next_id = 1;
    conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    conn->notify = notify;
    conn->notify_arg = notify_arg;
    pthread_mutex_init(&conn->send_lock, NULL);
    pthread_mutex_init(&conn->pending_lock, NULL);
    pthread_cond_init(&conn->pending_cond, NULL);
    pthread_cond_init(&conn->reader_cond, NULL);

    status = rgpu_conn_connect(conn, addr, timeout_ms, reason, reason_cap);
    if (status != RGPU_OK)
        goto out_free;
    if (pthread_create(&conn->reader, NULL, rgpu_conn_reader, conn) != 0) {
        snprintf(reason, reason_cap, "cannot start a thread");
        status = RGPU_ERR_NOMEM;
        goto out_free;
    }
    conn->reader_started = 1;

    status = rgpu_conn_call(conn, RGPU__MSG_TYPE__MSG_HELLO, &hello->base, NULL, 0, &call);
    if (status != RGPU_OK) {
        rgpu_conn_health(conn, &why);
        snprintf(reason, reason_cap, "%s", why[0] ? why : rgpu_status_str(status));
        /* A reply may have come and failed the call (bulk it cannot take). */
        goto out_cleanup_call;
    }
    if (call.reply_type != RGPU__MSG_TYPE__MSG_HELLO_REPLY ||
        !(reply = rgpu__hello_reply__unpack(NULL, call.body_len, call.body))) {
        snprintf(reason, reason_cap, "the server's handshake reply is malformed");
        status = RGPU_ERR_PROTOCOL;
        goto out_cleanup_call;
    }
    rgpu_call_cleanup(&call);
    *conn_p = conn;
    *reply_p = reply;
    return RGPU_OK;

out_cleanup_call:
    rgpu_call_cleanup(&call);
    rgpu_conn_close(conn);
    return status;
out_free:
    rgpu_conn_free(conn);
    return status;
}

void rgpu_conn_close(rgpu_conn_t *conn)
{
    Rgpu__Goodbye bye = RGPU__GOODBYE__INIT;

    if (rgpu_conn_health(conn, NULL) == RGPU_OK) {
        rgpu_conn_post(conn, RGPU__MSG_TYPE__MSG_GOODBYE, &bye.base, NULL, 0);
        rgpu_conn_flush(conn);
    }
    pthread_mutex_lock(&conn->pending_lock);
    conn->closing = 1;
    pthread_cond_signal(&conn->reader_cond);
    pthread_mutex_unlock(&conn->pending_lock);
    /* The reader thread sees the link end, fails what still waits and
     * gives back every registration, then leaves. */
    rgpu_link_shutdown(conn->link);
    if (conn->reader_started)
        pthread_join(conn->reader, NULL);
    pthread_mutex_lock(&conn->pending_lock);
    rgpu_conn_fail_locked(conn, RGPU_ERR_CONN_CLOSED, "the connection was closed");
    pthread_mutex_unlock(&conn->pending_lock);
    rgpu_conn_free(conn);
}
