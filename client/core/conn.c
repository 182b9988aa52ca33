/*
 * rgpu_conn_t: see rgpu/client_core.h.
 *
 * Locks: send_lock serializes everything that writes to the link (the send
 * buffer, sequence numbers). pending_lock guards the list of calls waiting
 * for replies and the deferred error. The reader thread never takes
 * send_lock, so a sender blocked on a full socket can never stop the reader
 * from draining replies (which is what unblocks the server, and so the
 * sender).
 */
#include "rgpu/client_core.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/log.h"

/* Bulks up to this size are copied into the send buffer; larger ones are
 * sent straight from the caller's memory. */
#define RGPU_CONN_COPY_MAX   (64u << 10)
/* Asynchronous frames wait in the send buffer for a synchronous call, or
 * until it holds flush_at bytes. flush_at starts at RGPU_CONN_FLUSH_FIRST
 * after every synchronous call and doubles with each flush, up to
 * RGPU_CONN_FLUSH_MAX: the first launches of a burst reach the server while
 * the rest are still being encoded, and a long burst costs a few large
 * writes. */
#define RGPU_CONN_FLUSH_FIRST (1u << 10)
#define RGPU_CONN_FLUSH_MAX   (256u << 10)

struct rgpu_conn {
    rgpu_link_t *link;
    char addr[128];
    rgpu_frame_limits_t limits;

    pthread_mutex_t send_lock;
    uint8_t *sendbuf;
    size_t send_len;
    size_t send_cap;
    size_t flush_at;                /* see RGPU_CONN_FLUSH_FIRST */
    uint64_t next_seq;

    pthread_mutex_t pending_lock;
    pthread_cond_t pending_cond;    /* a call completed, or the reader role is free */
    pthread_cond_t reader_cond;     /* the reader thread may receive again */
    int waiters;                    /* threads in rgpu_conn_call_wait */
    int reading;                    /* a thread holds the reader role */
    int unwaited;                   /* registered calls without call->waited */
    int notify_wanted;              /* rgpu_conn_want_notifications ran */
    rgpu_call_t *pending_head;
    rgpu_call_t *pending_tail;
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

/* Marks the connection dead (first reason wins) and fails every waiting
 * call. Called with pending_lock held. */
static void rgpu_conn_fail_locked(rgpu_conn_t *conn, rgpu_status_t status, const char *reason)
{
    rgpu_call_t *call, *next;

    if (conn->dead == RGPU_OK) {
        conn->dead = status;
        snprintf(conn->dead_reason, sizeof(conn->dead_reason), "%s", reason);
        if (!conn->closing)
            rgpu_warn("client", "lost server %s: %s", conn->addr, reason);
    }
    for (call = conn->pending_head; call; call = next) {
        next = call->next;
        if (!call->waited)
            conn->unwaited--;
        call->status = status;
        call->complete = 1;
        if (call->done)
            call->done(call);
    }
    conn->pending_head = conn->pending_tail = NULL;
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

static rgpu_call_t *rgpu_conn_pending_take(rgpu_conn_t *conn, uint64_t seq)
{
    rgpu_call_t *prev = NULL, *call;

    for (call = conn->pending_head; call; prev = call, call = call->next) {
        if (call->seq != seq)
            continue;
        if (prev)
            prev->next = call->next;
        else
            conn->pending_head = call->next;
        if (conn->pending_tail == call)
            conn->pending_tail = prev;
        call->next = NULL;
        return call;
    }
    return NULL;
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

/* Receives one frame addressed to a call: its body, then its bulk straight
 * into the call's destination (unless pieces of it came before). */
static rgpu_status_t rgpu_conn_recv_reply(rgpu_conn_t *conn, const rgpu_frame_header_t *h,
                                          uint8_t *body, rgpu_call_t *call)
{
    rgpu_status_t status = RGPU_OK;

    call->reply_type = h->type;
    call->body = body;
    call->body_len = h->body_len;
    if (h->bulk_len > 0) {
        if (call->bulk_len || h->bulk_len > call->bulk_cap || !call->bulk_dst) {
            rgpu_warn("client", "server %s sent %llu bytes of bulk for a call that expected at most %llu",
                      conn->addr, (unsigned long long)(call->bulk_len + h->bulk_len),
                      (unsigned long long)call->bulk_cap);
            status = rgpu_link_discard(conn->link, h->bulk_len);
            call->status = RGPU_ERR_PROTOCOL;
        } else {
            status = rgpu_link_recv(conn->link, call->bulk_dst, h->bulk_len);
            call->bulk_len = h->bulk_len;
        }
    }
    return status;
}

/* Receives a piece of a reply's bulk sent ahead of the reply (MSG_BULK_PART,
 * a server's pipelined read) straight into the call's destination, after
 * the pieces before it. The call stays pending: its reply follows with the
 * status. A piece that does not continue where the last one ended, or
 * would overflow the destination, is dropped and fails the call (the
 * application's memory past what was asked for is never touched). The
 * caller holds the reader role, so the call cannot complete meanwhile. */
static rgpu_status_t rgpu_conn_recv_part(rgpu_conn_t *conn, const rgpu_frame_header_t *h,
                                         const uint8_t *body)
{
    Rgpu__BulkPart *part = rgpu__bulk_part__unpack(NULL, h->body_len, body ? body : (const uint8_t *)"");
    rgpu_call_t *call = NULL;
    rgpu_status_t status;
    int fits;

    pthread_mutex_lock(&conn->pending_lock);
    for (call = conn->pending_head; call && call->seq != h->seq; call = call->next)
        ;
    pthread_mutex_unlock(&conn->pending_lock);
    fits = part && call && call->bulk_dst && call->status == RGPU_OK && part->offset == call->bulk_len &&
           h->bulk_len <= call->bulk_cap - call->bulk_len;
    if (part)
        rgpu__bulk_part__free_unpacked(part, NULL);
    if (!fits) {
        if (call && call->status == RGPU_OK) {
            rgpu_warn("client", "server %s sent a piece of %llu bytes that does not continue the %llu bytes "
                      "received of at most %llu", conn->addr, (unsigned long long)h->bulk_len,
                      (unsigned long long)call->bulk_len, (unsigned long long)call->bulk_cap);
            call->status = RGPU_ERR_PROTOCOL;
        } else if (!call) {
            rgpu_warn("client", "server %s sent a piece of bulk for no pending call (seq %llu); ignored",
                      conn->addr, (unsigned long long)h->seq);
        }
        return rgpu_link_discard(conn->link, h->bulk_len);
    }
    status = rgpu_link_recv(conn->link, (uint8_t *)call->bulk_dst + call->bulk_len, (size_t)h->bulk_len);
    if (status == RGPU_OK)
        call->bulk_len += h->bulk_len;
    return status;
}

/* Receives one frame and hands it on: a reply completes its call (its bulk
 * lands in the call's destination), an asynchronous error is kept for the
 * next sync point, a notification goes to the notify callback. The caller
 * holds the reader role. *mine is set when the frame completed `call`. On
 * failure reason gets one line. */
static rgpu_status_t rgpu_conn_read_frame(rgpu_conn_t *conn, const rgpu_call_t *call, int *mine,
                                          char *reason, size_t reason_cap)
{
    rgpu_frame_header_t h;
    uint8_t *body = NULL;
    rgpu_call_t *taken = NULL;
    rgpu_status_t status;

    status = rgpu_link_recv_header(conn->link, &conn->limits, &h);
    if (status != RGPU_OK)
        goto out_status;
    if (h.body_len) {
        body = malloc(h.body_len);
        if (!body) {
            status = RGPU_ERR_NOMEM;
            goto out_status;
        }
        status = rgpu_link_recv(conn->link, body, h.body_len);
        if (status != RGPU_OK) {
            free(body);
            goto out_status;
        }
    }
    if (h.type == RGPU__MSG_TYPE__MSG_BULK_PART && h.seq != 0) {
        status = rgpu_conn_recv_part(conn, &h, body);
        free(body);
        if (status != RGPU_OK)
            goto out_status;
        return RGPU_OK;
    }
    if (h.seq != 0) {
        pthread_mutex_lock(&conn->pending_lock);
        taken = rgpu_conn_pending_take(conn, h.seq);
        pthread_mutex_unlock(&conn->pending_lock);
    }
    if (taken) {
        status = rgpu_conn_recv_reply(conn, &h, body, taken);
        pthread_mutex_lock(&conn->pending_lock);
        taken->complete = 1;
        if (!taken->waited)
            conn->unwaited--;
        if (status != RGPU_OK && taken->status == RGPU_OK)
            taken->status = status;
        if (taken->done)
            taken->done(taken);
        if (taken == call)
            *mine = 1;
        else
            pthread_cond_broadcast(&conn->pending_cond);
        pthread_mutex_unlock(&conn->pending_lock);
        if (status != RGPU_OK)
            goto out_status;
        return RGPU_OK;
    }
    if (h.type == RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
        rgpu_conn_record_async_error(conn, body, h.body_len);
    } else if (h.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR) {
        Rgpu__SessionError *err = rgpu__session_error__unpack(NULL, h.body_len, body);

        snprintf(reason, reason_cap, "the server ended the session: %s",
                 err ? err->reason : "(no reason given)");
        if (err)
            rgpu__session_error__free_unpacked(err, NULL);
        free(body);
        return RGPU_ERR_REFUSED;
    } else if (conn->notify && h.seq == 0) {
        conn->notify(conn->notify_arg, h.type, body, h.body_len);
    } else {
        rgpu_warn("client", "server %s sent an unexpected frame (type %u, seq %llu); ignored",
                  conn->addr, h.type, (unsigned long long)h.seq);
    }
    free(body);
    if (h.bulk_len && (status = rgpu_link_discard(conn->link, h.bulk_len)) != RGPU_OK)
        goto out_status;
    return RGPU_OK;
out_status:
    snprintf(reason, reason_cap, "%s", rgpu_status_str(status));
    return status;
}

/* Reads frames until call (if any) completed and nothing received is left
 * in the link's buffer, so that no frame waits there unseen once the role
 * is given back. The caller holds the reader role. */
static rgpu_status_t rgpu_conn_read_until(rgpu_conn_t *conn, const rgpu_call_t *call,
                                          char *reason, size_t reason_cap)
{
    rgpu_status_t status;
    int mine = call == NULL;

    do
        status = rgpu_conn_read_frame(conn, call, &mine, reason, reason_cap);
    while (status == RGPU_OK && (!mine || rgpu_link_buffered(conn->link) > 0));
    return status;
}

/* The reader thread has work while nobody waits: a reply nobody will wait
 * for at once, notifications, or a link to see closed. pending_lock held. */
static int rgpu_conn_reader_needed(const rgpu_conn_t *conn)
{
    return conn->unwaited > 0 || conn->notify_wanted || conn->closing;
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
 * and receives whole frames for everyone. A thread waiting for its reply
 * takes the role itself when it is free, so a synchronous call costs one
 * send and one receive in the caller's own thread, with no hand-over
 * between threads (rCUDA receives in the caller for the same reason).
 * The reader thread below takes the role only while nobody waits, and only
 * when something may arrive that nobody will wait for (the reply of a
 * non-blocking read, event notifications, the end at close): then it waits
 * in poll(), outside the role, and steps back as soon as a caller waits.
 * Otherwise it sleeps, and a program making only synchronous calls never
 * wakes it.
 *
 * rgpu_conn_lead runs one turn in the role: pending_lock held and the role
 * free on entry, held again on return. It reads until call completed (the
 * reader thread passes NULL: what has arrived, if anything), then gives the
 * role back: on a failure every call fails, otherwise the threads waiting
 * by then (besides the caller, counted in waiters when self_waiting) may
 * take the role next.
 */
static void rgpu_conn_lead(rgpu_conn_t *conn, const rgpu_call_t *call, int self_waiting)
{
    rgpu_status_t status = RGPU_OK;
    char reason[256];

    conn->reading = 1;
    pthread_mutex_unlock(&conn->pending_lock);
    /* The reader thread: a caller may have taken what poll saw, so read
     * only what will not block. */
    if (call || rgpu_link_buffered(conn->link) > 0 || rgpu_link_wait_readable(conn->link, 0))
        status = rgpu_conn_read_until(conn, call, reason, sizeof(reason));
    pthread_mutex_lock(&conn->pending_lock);
    conn->reading = 0;
    if (status != RGPU_OK)
        rgpu_conn_fail_locked(conn, status, reason);
    else if (conn->waiters > self_waiting)
        pthread_cond_broadcast(&conn->pending_cond);
}

static void *rgpu_conn_reader(void *arg)
{
    rgpu_conn_t *conn = arg;

    pthread_mutex_lock(&conn->pending_lock);
    while (conn->dead == RGPU_OK) {
        if (conn->waiters || conn->reading || !rgpu_conn_reader_needed(conn)) {
            pthread_cond_wait(&conn->reader_cond, &conn->pending_lock);
            continue;
        }
        pthread_mutex_unlock(&conn->pending_lock);
        rgpu_link_wait_readable(conn->link, -1);
        pthread_mutex_lock(&conn->pending_lock);
        if (conn->dead != RGPU_OK || conn->waiters || conn->reading || !rgpu_conn_reader_needed(conn))
            continue;
        rgpu_conn_lead(conn, NULL, 0);
    }
    pthread_mutex_unlock(&conn->pending_lock);
    return NULL;
}

/* Sends the send buffer plus an optional extra frame and bulk. send_lock held. */
static rgpu_status_t rgpu_conn_send_locked(rgpu_conn_t *conn, const uint8_t *frame, size_t frame_len,
                                           const void *bulk, uint64_t bulk_len)
{
    struct iovec iov[3];
    int n = 0;
    rgpu_status_t status;

    if (conn->send_len)
        iov[n++] = (struct iovec){conn->sendbuf, conn->send_len};
    if (frame_len)
        iov[n++] = (struct iovec){(void *)frame, frame_len};
    if (bulk_len)
        iov[n++] = (struct iovec){(void *)bulk, (size_t)bulk_len};
    if (n == 0)
        return RGPU_OK;
    conn->send_len = 0;
    status = rgpu_link_sendv(conn->link, iov, n);
    if (status != RGPU_OK) {
        /* The reader sees the same failure and fails waiting calls; make
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

/* Queues (or sends, when sync is set or the bulk is large) one frame. */
static rgpu_status_t rgpu_conn_enqueue(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                                       const void *bulk, uint64_t bulk_len, int send_now,
                                       rgpu_call_t *call)
{
    size_t frame_len = rgpu_frame_packed_size(msg);
    int copy_bulk = bulk_len <= RGPU_CONN_COPY_MAX;
    rgpu_status_t status;
    const char *reason;

    if ((status = rgpu_conn_health(conn, &reason)) != RGPU_OK)
        return status;
    pthread_mutex_lock(&conn->send_lock);
    status = rgpu_conn_reserve_locked(conn, frame_len + (copy_bulk ? (size_t)bulk_len : 0));
    if (status != RGPU_OK)
        goto out_unlock;
    uint64_t seq = ++conn->next_seq;
    uint8_t *frame = conn->sendbuf + conn->send_len;
    rgpu_frame_pack(frame, type, seq, 0, msg, bulk_len);
    conn->send_len += frame_len;
    if (copy_bulk && bulk_len) {
        memcpy(conn->sendbuf + conn->send_len, bulk, (size_t)bulk_len);
        conn->send_len += (size_t)bulk_len;
    }
    if (call) {
        /* Registered before the request leaves, so the reply always finds it. */
        call->seq = seq;
        call->complete = 0;
        call->status = RGPU_OK;
        call->body = NULL;
        call->bulk_len = 0;
        call->next = NULL;
        pthread_mutex_lock(&conn->pending_lock);
        if (conn->dead != RGPU_OK) {
            status = conn->dead;
            pthread_mutex_unlock(&conn->pending_lock);
            conn->send_len -= frame_len + (copy_bulk ? (size_t)bulk_len : 0);
            goto out_unlock;
        }
        if (conn->pending_tail)
            conn->pending_tail->next = call;
        else
            conn->pending_head = call;
        conn->pending_tail = call;
        if (!call->waited && conn->unwaited++ == 0)
            pthread_cond_signal(&conn->reader_cond);   /* its reply may come while nobody waits */
        pthread_mutex_unlock(&conn->pending_lock);
    }
    if (!copy_bulk)
        status = rgpu_conn_send_locked(conn, NULL, 0, bulk, bulk_len);
    else if (send_now || conn->send_len >= conn->flush_at)
        status = rgpu_conn_send_locked(conn, NULL, 0, NULL, 0);
    if (send_now)
        conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    else if (copy_bulk && conn->send_len == 0 && conn->flush_at < RGPU_CONN_FLUSH_MAX)
        conn->flush_at *= 2;    /* the buffer reached flush_at and left */
out_unlock:
    pthread_mutex_unlock(&conn->send_lock);
    return status;
}

rgpu_status_t rgpu_conn_post(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                             const void *bulk, uint64_t bulk_len)
{
    return rgpu_conn_enqueue(conn, type, msg, bulk, bulk_len, 0, NULL);
}

rgpu_status_t rgpu_conn_flush(rgpu_conn_t *conn)
{
    rgpu_status_t status;

    pthread_mutex_lock(&conn->send_lock);
    status = rgpu_conn_send_locked(conn, NULL, 0, NULL, 0);
    conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    pthread_mutex_unlock(&conn->send_lock);
    return status;
}

rgpu_status_t rgpu_conn_call_start(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                                   const void *bulk, uint64_t bulk_len, rgpu_call_t *call)
{
    rgpu_status_t status = rgpu_conn_enqueue(conn, type, msg, bulk, bulk_len, 1, call);

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
    conn->waiters++;
    while (!call->complete) {
        if (conn->reading || conn->dead != RGPU_OK) {
            /* Someone else receives (and completes this call when its
             * reply comes); a dead link has completed every call. */
            pthread_cond_wait(&conn->pending_cond, &conn->pending_lock);
            continue;
        }
        rgpu_conn_lead(conn, call, 1);
    }
    if (--conn->waiters == 0 && rgpu_conn_reader_needed(conn))
        pthread_cond_signal(&conn->reader_cond);
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
    const rgpu_transport_ops_t *ops;
    const char *bare;

    conn = calloc(1, sizeof(*conn));
    if (!conn) {
        snprintf(reason, reason_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    snprintf(conn->addr, sizeof(conn->addr), "%s", addr);
    conn->limits.max_body = RGPU_FRAME_DEFAULT_MAX_BODY;
    conn->limits.max_bulk = RGPU_FRAME_DEFAULT_MAX_BULK;
    conn->next_id = 1;
    conn->flush_at = RGPU_CONN_FLUSH_FIRST;
    conn->notify = notify;
    conn->notify_arg = notify_arg;
    pthread_mutex_init(&conn->send_lock, NULL);
    pthread_mutex_init(&conn->pending_lock, NULL);
    pthread_cond_init(&conn->pending_cond, NULL);
    pthread_cond_init(&conn->reader_cond, NULL);

    status = rgpu_transport_for_address(addr, &ops, &bare, reason, reason_cap);
    if (status == RGPU_OK)
        status = ops->connect(bare, timeout_ms, &conn->link, reason, reason_cap);
    if (status != RGPU_OK)
        goto out_free;
    if (pthread_create(&conn->reader, NULL, rgpu_conn_reader, conn) != 0) {
        snprintf(reason, reason_cap, "cannot start a thread");
        status = RGPU_ERR_NOMEM;
        goto out_close_link;
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
out_close_link:
    rgpu_link_close(conn->link);
out_free:
    pthread_mutex_destroy(&conn->send_lock);
    pthread_mutex_destroy(&conn->pending_lock);
    pthread_cond_destroy(&conn->pending_cond);
    pthread_cond_destroy(&conn->reader_cond);
    free(conn);
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
    rgpu_link_shutdown(conn->link);
    if (conn->reader_started)
        pthread_join(conn->reader, NULL);
    rgpu_link_close(conn->link);
    free(conn->sendbuf);
    pthread_mutex_destroy(&conn->send_lock);
    pthread_mutex_destroy(&conn->pending_lock);
    pthread_cond_destroy(&conn->pending_cond);
    pthread_cond_destroy(&conn->reader_cond);
    free(conn);
}
