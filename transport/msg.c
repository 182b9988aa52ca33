/*
 * Messages and get/put over a byte stream (tcp; any transport without
 * remote memory access). Every frame on the link is read whole by one
 * thread at a time, the "leader" (leader/follower, as client/core/conn.c
 * does today): frames of the layer above are queued for rgpu_link_msg_recv,
 * the transport's own frames serve or complete get/put.
 *
 * Get/put in the stream (frame types from RGPU_FRAME_TYPE_TRANSPORT_FIRST):
 *
 *   GET_REQ  seq=id body{addr,len,key}            -> GET_RESP seq=id body{status} bulk=len bytes
 *   PUT_REQ  seq=id body{addr,len,key} bulk=len   -> PUT_RESP seq=id body{status}
 *
 * The side that is asked checks key, bounds and permission against its
 * registrations (rgpu__mem_acquire) and only then touches memory: a put's
 * bytes land straight in the registered region, a get's reply is sent
 * straight from it. A refused request gets a status and no bytes (a refused
 * put's bytes are read and dropped).
 *
 * Replies are sent by a per-link responder thread, started at the first
 * request, never by the leader: a leader that blocked on a send while the
 * peer's leader did the same would deadlock both. The leader only reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include "transport_int.h"

#define RGPU_TP_GET_REQ  (RGPU_FRAME_TYPE_TRANSPORT_FIRST + 1)
#define RGPU_TP_GET_RESP (RGPU_FRAME_TYPE_TRANSPORT_FIRST + 2)
#define RGPU_TP_PUT_REQ  (RGPU_FRAME_TYPE_TRANSPORT_FIRST + 3)
#define RGPU_TP_PUT_RESP (RGPU_FRAME_TYPE_TRANSPORT_FIRST + 4)
#define RGPU_TP_REQ_BODY  24u
#define RGPU_TP_RESP_BODY 4u

/* The most bytes of frames a link queues for rgpu_link_msg_recv. A stream
 * has no flow control of its own, and a reader that waits for a get's
 * reply must read (and keep) every frame before it: without a bound a peer
 * could send frames until the receiver runs out of memory. */
#define RGPU_MSG_QUEUE_MAX (64u << 20)

/* Frames of at most this many bytes after the header (a synchronous call's
 * request or reply) are received into buffers of this capacity, and a link
 * keeps one released buffer for the next: a round trip then costs no
 * malloc/free. The queue's bound counts a buffer's capacity, not the
 * frame's size, so small frames cannot use more memory than it says. */
#define RGPU_MSG_SMALL 1024u

/* A get or put waiting for its reply. */
typedef struct rgpu_op {
    uint64_t id;
    int is_get;
    uint8_t *dst;               /* get: where the reply's bytes land */
    uint64_t len;
    rgpu_completion_t *c;
    struct rgpu_op *next;
} rgpu_op_t;

/* A reply for the responder to send. */
typedef struct rgpu_job {
    uint16_t type;
    uint64_t id;
    rgpu_status_t status;
    rgpu_mem_t *mem;            /* a get being served: acquired, released after */
    const uint8_t *src;
    uint64_t len;
    struct rgpu_job *next;
} rgpu_job_t;

struct rgpu__link_state {
    pthread_mutex_t lock;       /* everything below but tx_lock */
    pthread_cond_t cond;        /* something completed, arrived or failed; rx freed */
    int cond_waiters;           /* threads in a wait on cond */
    pthread_mutex_t tx_lock;    /* one frame at a time on the wire */
    int event_fd;
    int rx_busy;                /* a leader is reading */
    rgpu_msg_t *q_head, *q_tail;
    uint64_t q_bytes;           /* queued frames' buffers, at most RGPU_MSG_QUEUE_MAX */
    rgpu_msg_t *spare;          /* a released small buffer, or NULL (atomic) */
    rgpu_msg_t *stream_msg;     /* handed over with its bulk still in the
                                 * stream: nobody leads until it is taken */
    size_t rx_left;             /* bytes the last leader left in the transport's
                                 * receive buffer (rgpu_link_has_buffered) */
    rgpu_op_t *ops;
    uint64_t next_id;
    rgpu_status_t failed;       /* receiving failed (or was stopped) */
    rgpu_status_t tx_failed;    /* sending failed: the link is dead */
    int rx_stopped;             /* rgpu_link_shutdown_recv: failed, but sends go on */
    char reason[384];
    pthread_t responder;
    int responder_started, stopping;
    pthread_cond_t jobs_cond;
    rgpu_job_t *jobs_head, *jobs_tail;
};

static void rgpu_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void rgpu_put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rgpu_get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Where a failure comes from. */
typedef enum {
    RGPU_FAIL_RX,               /* receiving: the peer closed, sent garbage, ... */
    RGPU_FAIL_TX,               /* sending */
    RGPU_FAIL_RX_STOP,          /* rgpu_link_shutdown_recv */
} rgpu_fail_how_t;

/* Records a failure and fails every pending operation.
 * A failed send ends sending and shuts the link down both ways, so that the
 * peer and every blocked call see it, but it does not end receiving: what
 * the peer sent before (a server's SessionError saying why it closed) is
 * still handed over, then the receiving side meets the end and records
 * that as the link's failure. A failure found receiving (the peer closed,
 * or sent what this side refuses) or a stop (RGPU_FAIL_RX_STOP) ends
 * receiving only, so that the owner can still say why before it closes
 * the link; a stop also withholds frames not taken yet. */
static void rgpu_link_fail_how(rgpu_link_t *link, rgpu_status_t status, const char *reason,
                               rgpu_fail_how_t how)
{
    rgpu__link_state_t *s = link->state;
    rgpu_op_t *ops = NULL;

    pthread_mutex_lock(&s->lock);
    if (how == RGPU_FAIL_TX ? s->tx_failed != RGPU_OK : s->failed != RGPU_OK) {
        pthread_mutex_unlock(&s->lock);
        return;
    }
    /* The first failure's status and reason stay the link's. */
    if (!s->reason[0])
        snprintf(s->reason, sizeof(s->reason), "%s", reason);
    if (how == RGPU_FAIL_TX) {
        __atomic_store_n(&s->tx_failed, status, __ATOMIC_RELEASE);
    } else {
        __atomic_store_n(&s->failed, s->tx_failed != RGPU_OK ? s->tx_failed : status, __ATOMIC_RELEASE);
        if (how == RGPU_FAIL_RX_STOP)
            s->rx_stopped = 1;
    }
    ops = s->ops;
    s->ops = NULL;
    pthread_mutex_unlock(&s->lock);
    if (how == RGPU_FAIL_TX)
        link->ops->shutdown(link);
    else if (link->ops->shutdown_recv)
        link->ops->shutdown_recv(link);     /* a leader blocked in a receive returns */
    while (ops) {
        rgpu_op_t *next = ops->next;
        rgpu__complete(ops->c, status);
        free(ops);
        ops = next;
    }
    pthread_mutex_lock(&s->lock);
    pthread_cond_broadcast(&s->cond);
    pthread_cond_broadcast(&s->jobs_cond);
    pthread_mutex_unlock(&s->lock);
}

static void rgpu_link_fail(rgpu_link_t *link, rgpu_status_t status, const char *reason)
{
    rgpu_link_fail_how(link, status, reason, RGPU_FAIL_RX);
}

static void rgpu_link_fail_io(rgpu_link_t *link, rgpu_status_t status, rgpu_fail_how_t how,
                              const char *doing)
{
    char reason[256];

    if (status == RGPU_ERR_CONN_CLOSED)
        snprintf(reason, sizeof(reason), "the peer %s closed the connection (%s)", link->peer, doing);
    else
        snprintf(reason, sizeof(reason), "%s with %s: %s", doing, link->peer, rgpu_status_str(status));
    rgpu_link_fail_how(link, status, reason, how);
}

/* What a send meets: a link whose receiving was only stopped still sends.
 * Read without the lock (written once, atomically): it is on every send. */
static rgpu_status_t rgpu_link_send_failed(rgpu_link_t *link)
{
    return __atomic_load_n(&link->state->tx_failed, __ATOMIC_ACQUIRE);
}

/* Receives exactly len bytes from the stream. */
static rgpu_status_t rgpu_stream_recv(rgpu_link_t *link, void *buf, size_t len)
{
    return link->ops->recv(link, buf, len);
}

/* Receives and throws away len bytes (a refused put's). */
static rgpu_status_t rgpu_stream_discard(rgpu_link_t *link, uint64_t len)
{
    uint8_t sink[16384];

    while (len > 0) {
        size_t n = len < sizeof(sink) ? (size_t)len : sizeof(sink);
        rgpu_status_t status = rgpu_stream_recv(link, sink, n);
        if (status != RGPU_OK)
            return status;
        len -= n;
    }
    return RGPU_OK;
}

/* Sends a transport frame: header, a small body, an optional bulk. */
static rgpu_status_t rgpu_send_internal(rgpu_link_t *link, uint16_t type, uint64_t id,
                                        const uint8_t *body, uint32_t body_len, const void *bulk,
                                        uint64_t bulk_len)
{
    rgpu__link_state_t *s = link->state;
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, body_len, id, bulk_len};
    uint8_t head[RGPU_FRAME_HEADER_SIZE + RGPU_TP_REQ_BODY];
    struct iovec iov[2] = {{head, RGPU_FRAME_HEADER_SIZE + body_len}, {(void *)bulk, bulk_len}};
    rgpu_status_t status;

    rgpu_frame_header_encode(&h, head);
    memcpy(head + RGPU_FRAME_HEADER_SIZE, body, body_len);
    pthread_mutex_lock(&s->tx_lock);
    status = link->ops->sendv(link, iov, bulk_len ? 2 : 1);
    pthread_mutex_unlock(&s->tx_lock);
    return status;
}

static void *rgpu_responder(void *arg)
{
    rgpu_link_t *link = arg;
    rgpu__link_state_t *s = link->state;

    pthread_mutex_lock(&s->lock);
    for (;;) {
        rgpu_job_t *job;
        int skip;

        while (!s->jobs_head && !s->stopping)
            pthread_cond_wait(&s->jobs_cond, &s->lock);
        job = s->jobs_head;
        if (!job)
            break;
        s->jobs_head = job->next;
        if (!s->jobs_head)
            s->jobs_tail = NULL;
        skip = s->stopping || s->failed != RGPU_OK || s->tx_failed != RGPU_OK;
        pthread_mutex_unlock(&s->lock);
        if (!skip) {
            uint8_t body[RGPU_TP_RESP_BODY];
            int with_bytes = job->type == RGPU_TP_GET_RESP && job->status == RGPU_OK;
            rgpu_status_t status;

            rgpu_put_le32(body, (uint32_t)job->status);
            status = rgpu_send_internal(link, job->type, job->id, body, sizeof(body),
                                        with_bytes ? job->src : NULL, with_bytes ? job->len : 0);
            if (status != RGPU_OK)
                rgpu_link_fail_io(link, status, RGPU_FAIL_TX, "replying to a get/put");
        }
        if (job->mem)
            rgpu__mem_release(job->mem);
        free(job);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Queues a reply for the responder, starting it the first time. On
 * failure the job is dropped (and its region released). */
static rgpu_status_t rgpu_respond(rgpu_link_t *link, uint16_t type, uint64_t id,
                                  rgpu_status_t result, rgpu_mem_t *mem, uint64_t addr, uint64_t len)
{
    rgpu__link_state_t *s = link->state;
    rgpu_job_t *job = calloc(1, sizeof(*job));
    rgpu_status_t status = RGPU_OK;

    if (!job) {
        status = RGPU_ERR_NOMEM;
        goto out_release;
    }
    *job = (rgpu_job_t){type, id, result, mem, (const uint8_t *)(uintptr_t)addr, len, NULL};
    pthread_mutex_lock(&s->lock);
    if (!s->responder_started) {
        if (pthread_create(&s->responder, NULL, rgpu_responder, link) != 0) {
            pthread_mutex_unlock(&s->lock);
            free(job);
            status = RGPU_ERR_NOMEM;
            goto out_release;
        }
        s->responder_started = 1;
    }
    if (s->jobs_tail)
        s->jobs_tail->next = job;
    else
        s->jobs_head = job;
    s->jobs_tail = job;
    pthread_cond_signal(&s->jobs_cond);
    pthread_mutex_unlock(&s->lock);
    return RGPU_OK;

out_release:
    if (mem)
        rgpu__mem_release(mem);
    return status;
}

static rgpu_op_t *rgpu_op_take(rgpu__link_state_t *s, uint64_t id)
{
    rgpu_op_t **pp, *op = NULL;

    pthread_mutex_lock(&s->lock);
    for (pp = &s->ops; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            op = *pp;
            *pp = op->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return op;
}

/* A status a peer sent: only those a server of get/put gives. */
/* The memory a received frame with header h occupies (see RGPU_MSG_SMALL). */
static uint64_t rgpu_msg_cost(const rgpu_frame_header_t *h)
{
    uint64_t payload = (uint64_t)h->body_len + h->bulk_len;

    return sizeof(rgpu_msg_t) + (payload <= RGPU_MSG_SMALL ? RGPU_MSG_SMALL : payload);
}

/* What a received message occupies (its bulk in the stream not counted). */
static uint64_t rgpu_msg_cost_of(const rgpu_msg_t *msg)
{
    rgpu_frame_header_t in = msg->header;

    if (in.flags & RGPU_FRAME_F_STREAM)
        in.bulk_len = 0;
    return rgpu_msg_cost(&in);
}

/* A buffer for a frame with header h: the link's spare for a small one. */
static rgpu_msg_t *rgpu_msg_alloc(rgpu__link_state_t *s, const rgpu_frame_header_t *h)
{
    uint64_t payload = (uint64_t)h->body_len + h->bulk_len;
    rgpu_msg_t *msg = NULL;

    if (payload <= RGPU_MSG_SMALL)
        msg = __atomic_exchange_n(&s->spare, NULL, __ATOMIC_ACQUIRE);
    return msg ? msg : malloc((size_t)rgpu_msg_cost(h));
}

static rgpu_status_t rgpu_peer_status(uint32_t raw)
{
    rgpu_status_t status = (rgpu_status_t)(int32_t)raw;

    return status == RGPU_OK || status == RGPU_ERR_NOT_FOUND || status == RGPU_ERR_INVALID_ARG
               ? status
               : RGPU_ERR_PROTOCOL;
}

/* Reads and handles one frame; the caller is the leader. A frame of the
 * layer above goes to *take when take is given (the leader wants a message
 * and none is queued before it), else to the queue. Returns RGPU_OK,
 * RGPU_ERR_TIMEOUT (nothing arrived in timeout_ms) or the failure it
 * recorded. */
static rgpu_status_t rgpu_drive_one(rgpu_link_t *link, int timeout_ms, rgpu_msg_t **take)
{
    rgpu__link_state_t *s = link->state;
    rgpu_frame_limits_t limits = {(uint32_t)link->tp->caps.max_eager, RGPU_FRAME_DEFAULT_MAX_BULK};
    rgpu_frame_header_t h;
    uint8_t raw[RGPU_FRAME_HEADER_SIZE], body[RGPU_TP_REQ_BODY];
    rgpu_status_t status;
    const char *doing = "receiving";
    uint64_t queued_cost = 0;
    char why[384];

    /* Waiting without a limit blocks in the receive itself: one system
     * call per frame on the blocking paths, not a poll() and a recv(). */
    if (timeout_ms >= 0 && link->ops->buffered(link) == 0 &&
        !link->ops->wait_readable(link, timeout_ms))
        return RGPU_ERR_TIMEOUT;
    if ((status = rgpu_stream_recv(link, raw, sizeof(raw))) != RGPU_OK)
        goto out_fail;
    status = rgpu_frame_header_decode(raw, &limits, &h);
    if (status != RGPU_OK) {
        char what[200];
        rgpu_frame_header_explain(raw, &limits, status, what, sizeof(what));
        snprintf(why, sizeof(why), "the peer %s sent a bad frame header: %s", link->peer, what);
        rgpu_link_fail(link, status, why);
        return status;
    }

    if (h.type < RGPU_FRAME_TYPE_TRANSPORT_FIRST) {
        /* A frame with RGPU_FRAME_F_STREAM leaves its bulk in the stream:
         * only its header and body are received here. */
        int stream = (h.flags & RGPU_FRAME_F_STREAM) && h.bulk_len > 0;
        rgpu_frame_header_t in = h;
        uint64_t size, cost;
        rgpu_msg_t *msg;
        int full;

        if (stream && !link->tp->caps.stream_bulk) {
            snprintf(why, sizeof(why), "the peer %s sent a frame with its data in the stream, which "
                     "this transport does not carry", link->peer);
            rgpu_link_fail(link, RGPU_ERR_PROTOCOL, why);
            return RGPU_ERR_PROTOCOL;
        }
        if (stream)
            in.bulk_len = 0;
        size = RGPU_FRAME_HEADER_SIZE + (uint64_t)in.body_len + in.bulk_len;
        cost = rgpu_msg_cost(&in);
        if (size > link->tp->caps.max_eager) {
            snprintf(why, sizeof(why), "the peer %s sent a %llu-byte message, past the %zu-byte "
                     "eager limit", link->peer, (unsigned long long)size,
                     link->tp->caps.max_eager);
            rgpu_link_fail(link, RGPU_ERR_TOO_LARGE, why);
            return RGPU_ERR_TOO_LARGE;
        }
        /* A frame handed straight to its receiver is never queued, so it
         * skips the queue's bound and its lock: a synchronous call's reply
         * costs no lock here. */
        if (!take) {
            pthread_mutex_lock(&s->lock);
            full = s->q_bytes + cost > RGPU_MSG_QUEUE_MAX;
            if (!full) {
                s->q_bytes += cost;
                queued_cost = cost;
            }
            pthread_mutex_unlock(&s->lock);
        } else {
            full = 0;
        }
        if (full) {
            snprintf(why, sizeof(why), "the peer %s sent more than %u MiB of messages that were "
                     "not taken", link->peer, RGPU_MSG_QUEUE_MAX >> 20);
            rgpu_link_fail(link, RGPU_ERR_TOO_LARGE, why);
            return RGPU_ERR_TOO_LARGE;
        }
        msg = rgpu_msg_alloc(s, &in);
        if (!msg) {
            status = RGPU_ERR_NOMEM;
            goto out_unqueue;
        }
        msg->header = h;
        msg->body = (const uint8_t *)(msg + 1);
        msg->bulk = stream ? NULL : msg->body + h.body_len;
        msg->stream_left = stream ? h.bulk_len : 0;
        msg->link = link;
        msg->next = NULL;
        status = rgpu_stream_recv(link, msg + 1, in.body_len + (size_t)in.bulk_len);
        if (status != RGPU_OK) {
            free(msg);
            goto out_unqueue;
        }
        if (take && !stream) {
            *take = msg;
            return RGPU_OK;
        }
        pthread_mutex_lock(&s->lock);
        /* Nobody leads past the bulk until its receiver has taken it. */
        if (stream)
            s->stream_msg = msg;
        if (take) {
            pthread_mutex_unlock(&s->lock);
            *take = msg;
            return RGPU_OK;
        }
        if (s->q_tail)
            s->q_tail->next = msg;
        else
            s->q_head = msg;
        s->q_tail = msg;
        pthread_mutex_unlock(&s->lock);
        return RGPU_OK;
    }

    switch (h.type) {
    case RGPU_TP_GET_REQ:
    case RGPU_TP_PUT_REQ: {
        int is_put = h.type == RGPU_TP_PUT_REQ;
        uint64_t addr, len, key;
        rgpu_mem_t *mem = NULL;
        rgpu_status_t result;

        if (h.body_len != RGPU_TP_REQ_BODY || (!is_put && h.bulk_len != 0))
            goto out_protocol;
        doing = is_put ? "receiving a put" : "receiving a get";
        if ((status = rgpu_stream_recv(link, body, RGPU_TP_REQ_BODY)) != RGPU_OK)
            goto out_fail;
        addr = rgpu_get_le(body, 8);
        len = rgpu_get_le(body + 8, 8);
        key = rgpu_get_le(body + 16, 8);
        if (is_put && h.bulk_len != len)
            goto out_protocol;
        result = rgpu__mem_acquire(link->tp, key, addr, len,
                                   is_put ? RGPU_MEM_REMOTE_WRITE : RGPU_MEM_REMOTE_READ, &mem);
        if (is_put) {
            if (result == RGPU_OK) {
                status = rgpu_stream_recv(link, (void *)(uintptr_t)addr, (size_t)len);
                rgpu__mem_release(mem);
                mem = NULL;
            } else {
                status = rgpu_stream_discard(link, h.bulk_len);
            }
            if (status != RGPU_OK)
                goto out_fail;
        }
        status = rgpu_respond(link, is_put ? RGPU_TP_PUT_RESP : RGPU_TP_GET_RESP, h.seq, result,
                              mem, addr, len);
        if (status != RGPU_OK)
            goto out_fail;
        return RGPU_OK;
    }
    case RGPU_TP_GET_RESP:
    case RGPU_TP_PUT_RESP: {
        int is_get = h.type == RGPU_TP_GET_RESP;
        rgpu_op_t *op;
        rgpu_status_t result;

        if (h.body_len != RGPU_TP_RESP_BODY)
            goto out_protocol;
        if ((status = rgpu_stream_recv(link, body, RGPU_TP_RESP_BODY)) != RGPU_OK)
            goto out_fail;
        result = rgpu_peer_status((uint32_t)rgpu_get_le(body, 4));
        op = rgpu_op_take(s, h.seq);
        if (!op || op->is_get != is_get || result == RGPU_ERR_PROTOCOL ||
            h.bulk_len != (is_get && result == RGPU_OK ? op->len : 0)) {
            if (op) {
                rgpu__complete(op->c, RGPU_ERR_PROTOCOL);
                free(op);
            }
            goto out_protocol;
        }
        if (h.bulk_len) {
            doing = "receiving a get's bytes";
            status = rgpu_stream_recv(link, op->dst, (size_t)h.bulk_len);
            if (status != RGPU_OK) {
                rgpu__complete(op->c, status);
                free(op);
                goto out_fail;
            }
        }
        rgpu__complete(op->c, result);
        free(op);
        return RGPU_OK;
    }
    default:
        goto out_protocol;
    }

out_protocol:
    snprintf(why, sizeof(why), "the peer %s broke the transport's protocol (frame type %u)",
             link->peer, h.type);
    rgpu_link_fail(link, RGPU_ERR_PROTOCOL, why);
    return RGPU_ERR_PROTOCOL;
out_unqueue:
    if (queued_cost) {
        pthread_mutex_lock(&s->lock);
        s->q_bytes -= queued_cost;
        pthread_mutex_unlock(&s->lock);
    }
out_fail:
    rgpu_link_fail_io(link, status, RGPU_FAIL_RX, doing);
    return status;
}

static int rgpu_ready_completion(rgpu__link_state_t *s, void *arg)
{
    return __atomic_load_n(&((rgpu_completion_t *)arg)->done, __ATOMIC_ACQUIRE);
}

/* After rgpu_link_shutdown_recv nothing more is handed over. */
static int rgpu_ready_msg(rgpu__link_state_t *s, void *arg)
{
    return s->q_head != NULL && !s->rx_stopped;
}

static int rgpu_remaining_ms(int timeout_ms, uint64_t deadline_ns)
{
    struct timespec ts;
    uint64_t now;

    if (timeout_ms < 0)
        return -1;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return now >= deadline_ns ? 0 : (int)((deadline_ns - now + 999999) / 1000000);
}

/* Progresses the link, as leader or as a follower waiting for the leader,
 * until ready() holds (RGPU_OK), the link failed (its status) or timeout_ms
 * passed (RGPU_ERR_TIMEOUT). Returns with s->lock held. With take (a
 * receiver of messages), a leader that finds the queue empty keeps the
 * frame it reads for itself: *take is set and RGPU_OK returned. */
static rgpu_status_t rgpu_link_run(rgpu_link_t *link, int (*ready)(rgpu__link_state_t *, void *),
                                   void *arg, int timeout_ms, rgpu_msg_t **take)
{
    rgpu__link_state_t *s = link->state;
    struct timespec ts;
    uint64_t deadline_ns = 0;
    int tried = 0;

    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                      (uint64_t)timeout_ms * 1000000ull;
    }
    pthread_mutex_lock(&s->lock);
    for (;;) {
        int left;

        if (ready(s, arg))
            return RGPU_OK;
        if (s->failed != RGPU_OK)
            return s->failed;
        left = rgpu_remaining_ms(timeout_ms, deadline_ns);
        if (left == 0 && tried)
            return RGPU_ERR_TIMEOUT;
        tried = 1;
        if (!s->rx_busy && !s->stream_msg) {
            /* Only the leader queues, so a queue empty now stays empty
             * while this thread leads: the frame it reads is the next. */
            rgpu_msg_t **direct = take && !s->q_head ? take : NULL;

            s->rx_busy = 1;
            pthread_mutex_unlock(&s->lock);
            rgpu_drive_one(link, left, direct);
            pthread_mutex_lock(&s->lock);
            s->rx_left = link->ops->buffered(link);
            s->rx_busy = 0;
            if (s->cond_waiters)    /* a round trip with no follower wakes no one */
                pthread_cond_broadcast(&s->cond);
            if (direct && *direct) {
                if (!s->rx_stopped)
                    return RGPU_OK;
                if (s->stream_msg == *direct)
                    s->stream_msg = NULL;
                free(*direct);      /* stopped meanwhile: withheld, as queued frames are */
                *direct = NULL;
            }
        } else if (left < 0) {
            s->cond_waiters++;
            pthread_cond_wait(&s->cond, &s->lock);
            s->cond_waiters--;
        } else {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += left / 1000;
            until.tv_nsec += (long)(left % 1000) * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            s->cond_waiters++;
            pthread_cond_timedwait(&s->cond, &s->lock, &until);
            s->cond_waiters--;
        }
    }
}

rgpu_status_t rgpu_link_msg_send(rgpu_link_t *link, const struct iovec *iov, int iovcnt,
                                 rgpu_completion_t *c)
{
    rgpu__link_state_t *s = link->state;
    rgpu_frame_header_t h;
    uint64_t total = 0;
    rgpu_status_t status;

    if (link->ops->msg_send)
        return link->ops->msg_send(link, iov, iovcnt, c);
    if (iovcnt < 1 || iovcnt > 16 || iov[0].iov_len < RGPU_FRAME_HEADER_SIZE)
        return RGPU_ERR_INVALID_ARG;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (rgpu_frame_header_decode(iov[0].iov_base, NULL, &h) != RGPU_OK ||
        h.type >= RGPU_FRAME_TYPE_TRANSPORT_FIRST ||
        RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len + h.bulk_len != total)
        return RGPU_ERR_INVALID_ARG;
    /* With its bulk in the stream, only the header and body must fit. */
    if ((h.flags & RGPU_FRAME_F_STREAM) && link->tp->caps.stream_bulk
            ? RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len > link->tp->caps.max_eager
            : total > link->tp->caps.max_eager)
        return RGPU_ERR_TOO_LARGE;
    status = rgpu_link_send_failed(link);
    if (status == RGPU_OK) {
        pthread_mutex_lock(&s->tx_lock);
        status = link->ops->sendv(link, iov, iovcnt);
        pthread_mutex_unlock(&s->tx_lock);
        if (status != RGPU_OK)
            rgpu_link_fail_io(link, status, RGPU_FAIL_TX, "sending a message");
    }
    if (c && status == RGPU_OK)
        rgpu__complete(c, status);
    return status;
}

rgpu_status_t rgpu_link_msg_recv(rgpu_link_t *link, rgpu_msg_t **msg_p, int timeout_ms)
{
    rgpu__link_state_t *s = link->state;
    rgpu_msg_t *direct = NULL;
    rgpu_status_t status;

    if (link->ops->msg_recv)
        return link->ops->msg_recv(link, msg_p, timeout_ms);
    status = rgpu_link_run(link, rgpu_ready_msg, NULL, timeout_ms, &direct);
    if (status == RGPU_OK && direct) {
        *msg_p = direct;
    } else if (status == RGPU_OK) {
        rgpu_msg_t *msg = s->q_head;
        s->q_head = msg->next;
        if (!s->q_head)
            s->q_tail = NULL;
        msg->next = NULL;
        s->q_bytes -= rgpu_msg_cost_of(msg);
        *msg_p = msg;
    }
    pthread_mutex_unlock(&s->lock);
    return status;
}

/* The stream is past msg's bulk (taken, dropped or failed): others may
 * lead again. */
static void rgpu_msg_stream_done(rgpu_msg_t *msg)
{
    rgpu__link_state_t *s = msg->link->state;

    msg->stream_left = 0;
    pthread_mutex_lock(&s->lock);
    if (s->stream_msg == msg) {
        s->stream_msg = NULL;
        s->rx_left = msg->link->ops->buffered(msg->link);
        if (s->cond_waiters)
            pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
}

rgpu_status_t rgpu_msg_take_bulk(rgpu_msg_t *msg, void *dst, uint64_t len)
{
    rgpu_link_t *link = msg->link;
    rgpu_status_t status;

    if (link->ops->msg_recv)
        return RGPU_ERR_UNSUPPORTED;    /* a transport of whole messages */
    if (len > msg->stream_left)
        return RGPU_ERR_INVALID_ARG;
    if (len == 0)
        return RGPU_OK;
    status = rgpu_stream_recv(link, dst, (size_t)len);
    if (status != RGPU_OK) {
        rgpu_link_fail_io(link, status, RGPU_FAIL_RX, "receiving a message's data");
        rgpu_msg_stream_done(msg);
        return status;
    }
    msg->stream_left -= len;
    if (msg->stream_left == 0)
        rgpu_msg_stream_done(msg);
    return RGPU_OK;
}

void rgpu_msg_release(rgpu_msg_t *msg)
{
    if (msg && msg->link && msg->link->ops->msg_release) {
        msg->link->ops->msg_release(msg);
        return;
    }
    /* Data its receiver did not take is read and dropped, unless the link
     * failed (it will not be read then). */
    if (msg && msg->link && msg->stream_left) {
        rgpu_status_t status = RGPU_OK;

        if (__atomic_load_n(&msg->link->state->failed, __ATOMIC_ACQUIRE) == RGPU_OK)
            status = rgpu_stream_discard(msg->link, msg->stream_left);
        if (status != RGPU_OK)
            rgpu_link_fail_io(msg->link, status, RGPU_FAIL_RX, "dropping a message's data");
        rgpu_msg_stream_done(msg);
    }
    /* A small buffer becomes the link's spare (the link outlives its
     * messages); the spare it replaces, if any, is freed. */
    if (msg && msg->link && (uint64_t)msg->header.body_len + msg->header.bulk_len <= RGPU_MSG_SMALL)
        msg = __atomic_exchange_n(&msg->link->state->spare, msg, __ATOMIC_ACQ_REL);
    if (msg)                    /* free(NULL) costs 40 instructions under jemalloc */
        free(msg);
}

rgpu_status_t rgpu_link_wait(rgpu_link_t *link, rgpu_completion_t *c, int timeout_ms)
{
    rgpu_status_t status;

    if (link->ops->wait)
        return link->ops->wait(link, c, timeout_ms);
    status = rgpu_link_run(link, rgpu_ready_completion, c, timeout_ms, NULL);
    /* A failed link completes every operation it knew, but not all at the
     * instant it is marked failed: the failing thread completes the ones
     * pending after it lets go of the lock, and a leader completes the one
     * whose reply it is receiving when its receive fails. The caller's c
     * (often on its stack) must not be written after this returns: wait
     * for it. (A timeout leaves c pending, as documented.) */
    while (status != RGPU_OK && status != RGPU_ERR_TIMEOUT && !__atomic_load_n(&c->done, __ATOMIC_ACQUIRE)) {
        link->state->cond_waiters++;
        pthread_cond_wait(&link->state->cond, &link->state->lock);
        link->state->cond_waiters--;
    }
    pthread_mutex_unlock(&link->state->lock);
    if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE))
        return c->status;
    return status == RGPU_OK ? RGPU_ERR_TIMEOUT : status;
}

static rgpu_status_t rgpu_link_rma(rgpu_link_t *link, int is_get, rgpu_mem_t *local,
                                   uint64_t local_off, const rgpu_mem_desc_t *remote,
                                   uint64_t remote_off, uint64_t len, rgpu_completion_t *c)
{
    rgpu__link_state_t *s = link->state;
    rgpu_completion_t own = {0};
    uint8_t body[RGPU_TP_REQ_BODY];
    rgpu_op_t *op;
    uint64_t id = 0;
    rgpu_status_t status;
    int done;

    if (link->ops->rma)
        return link->ops->rma(link, is_get, local, local_off, remote, remote_off, len, c);
    status = rgpu__rma_check(link, local, local_off, remote, remote_off, len, c, &done);
    if (status != RGPU_OK || done)
        return status;
    /* tcp has no key test of its own here: the peer looks the key up. */
    if (!c)
        c = &own;
    op = calloc(1, sizeof(*op));
    if (!op)
        return RGPU_ERR_NOMEM;
    op->is_get = is_get;
    op->dst = local->addr + local_off;
    op->len = len;
    op->c = c;
    pthread_mutex_lock(&s->lock);
    status = s->failed != RGPU_OK ? s->failed : s->tx_failed;
    if (status == RGPU_OK) {
        op->id = id = ++s->next_id;
        op->next = s->ops;
        s->ops = op;
    }
    pthread_mutex_unlock(&s->lock);
    if (status != RGPU_OK) {
        free(op);
        return status;
    }
    rgpu_put_le64(body, remote->addr + remote_off);
    rgpu_put_le64(body + 8, len);
    rgpu_put_le64(body + 16, remote->key);
    status = rgpu_send_internal(link, is_get ? RGPU_TP_GET_REQ : RGPU_TP_PUT_REQ, id, body,
                                sizeof(body), is_get ? NULL : local->addr + local_off,
                                is_get ? 0 : len);
    /* A failed send fails the link's sending side, which completes the
     * operations pending then; this one too, if sending had already
     * failed on another thread. */
    if (status != RGPU_OK) {
        rgpu_link_fail_io(link, status, RGPU_FAIL_TX, is_get ? "sending a get" : "sending a put");
        op = rgpu_op_take(s, id);
        if (op) {
            rgpu__complete(op->c, status);
            free(op);
            pthread_mutex_lock(&s->lock);
            pthread_cond_broadcast(&s->cond);   /* a waiter for it may sleep */
            pthread_mutex_unlock(&s->lock);
        }
    }
    if (c == &own)
        return rgpu_link_wait(link, c, -1);
    return RGPU_OK;
}

rgpu_status_t rgpu_link_get(rgpu_link_t *link, rgpu_mem_t *local, uint64_t local_off,
                            const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                            rgpu_completion_t *c)
{
    return rgpu_link_rma(link, 1, local, local_off, remote, remote_off, len, c);
}

rgpu_status_t rgpu_link_put(rgpu_link_t *link, rgpu_mem_t *local, uint64_t local_off,
                            const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                            rgpu_completion_t *c)
{
    return rgpu_link_rma(link, 0, local, local_off, remote, remote_off, len, c);
}

int rgpu_link_progress(rgpu_link_t *link)
{
    rgpu__link_state_t *s = link->state;
    int n = 0;
    rgpu_status_t status;

    if (link->ops->progress)
        return link->ops->progress(link);
    pthread_mutex_lock(&s->lock);
    status = s->failed;
    /* Another thread leads, or holds a frame whose bulk is next. */
    if (status != RGPU_OK || s->rx_busy || s->stream_msg) {
        pthread_mutex_unlock(&s->lock);
        return status;
    }
    s->rx_busy = 1;
    pthread_mutex_unlock(&s->lock);
    while ((status = rgpu_drive_one(link, 0, NULL)) == RGPU_OK)
        n++;
    pthread_mutex_lock(&s->lock);
    s->rx_left = link->ops->buffered(link);
    s->rx_busy = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return status == RGPU_ERR_TIMEOUT ? n : status;
}

int rgpu_link_event_fd(rgpu_link_t *link)
{
    if (link->ops->event_fd)
        return link->ops->event_fd(link);
    return link->state->event_fd;
}

const char *rgpu_link_reason(rgpu_link_t *link)
{
    rgpu__link_state_t *s = link->state;
    int failed;

    if (link->ops->reason)
        return link->ops->reason(link);
    /* Written once, with the first failure, and never again. */
    pthread_mutex_lock(&s->lock);
    failed = s->failed != RGPU_OK || s->tx_failed != RGPU_OK;
    pthread_mutex_unlock(&s->lock);
    return failed ? s->reason : "";
}

int rgpu_link_has_buffered(rgpu_link_t *link)
{
    rgpu__link_state_t *s = link->state;
    int n;

    if (link->ops->msg_recv)
        return link->ops->has_buffered ? link->ops->has_buffered(link) : 0;
    pthread_mutex_lock(&s->lock);
    n = (s->q_head != NULL && !s->rx_stopped) || (s->rx_left > 0 && s->failed == RGPU_OK);
    pthread_mutex_unlock(&s->lock);
    return n;
}

void rgpu_link_shutdown_recv(rgpu_link_t *link)
{
    if (link->ops->msg_recv) {
        if (link->ops->shutdown_recv)
            link->ops->shutdown_recv(link);
        return;
    }
    rgpu_link_fail_how(link, RGPU_ERR_CONN_CLOSED, "receiving was stopped on this side",
                       RGPU_FAIL_RX_STOP);
}

rgpu_status_t rgpu__link_init(rgpu_link_t *link, rgpu_transport_t *tp, int event_fd)
{
    rgpu__link_state_t *s = calloc(1, sizeof(*s));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = link};

    if (!s)
        return RGPU_ERR_NOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->tx_lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    pthread_cond_init(&s->jobs_cond, NULL);
    s->event_fd = event_fd;
    link->tp = tp;
    link->state = s;
    if (tp && event_fd >= 0)
        epoll_ctl(tp->epfd, EPOLL_CTL_ADD, event_fd, &ev);
    return RGPU_OK;
}

void rgpu__link_fini(rgpu_link_t *link)
{
    rgpu__link_state_t *s = link->state;
    rgpu_op_t *ops;

    if (!s)
        return;
    if (link->tp && s->event_fd >= 0)
        epoll_ctl(link->tp->epfd, EPOLL_CTL_DEL, s->event_fd, NULL);
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->jobs_cond);
    pthread_mutex_unlock(&s->lock);
    if (s->responder_started) {
        link->ops->shutdown(link);  /* a reply blocked in a send gives up */
        pthread_join(s->responder, NULL);
    }
    for (ops = s->ops; ops;) {
        rgpu_op_t *next = ops->next;
        rgpu__complete(ops->c, RGPU_ERR_CONN_CLOSED);
        free(ops);
        ops = next;
    }
    while (s->q_head) {
        rgpu_msg_t *next = s->q_head->next;
        free(s->q_head);
        s->q_head = next;
    }
    free(s->spare);
    pthread_cond_destroy(&s->jobs_cond);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->tx_lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
    link->state = NULL;
}
