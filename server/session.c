/*
 * A session: handshake, frame loop and teardown for one client link, on a
 * thread of its own, plus a sender thread for frames posted by callbacks.
 * See session.h for the threads and the locking.
 */
#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "rgpu/log.h"
#include "rgpu/wire.h"

/* The longest a get or put of the session may take: a client that stops
 * serving its own descriptors (tcp: it stops reading) ends its session
 * instead of holding the session thread. */
#define RGPU_SESSION_RMA_TIMEOUT_MS 60000
/* Staging on RDMA transports: chunks of this size, this many in flight,
 * so a chunk is copied to or from the backend's memory while the next
 * one crosses the network (rCUDA's pinned staging, for the same reason:
 * registering the backend's memory for every transfer would pin its pages
 * every time). */
#define RGPU_SESSION_STAGE_CHUNK (1u << 20)
#define RGPU_SESSION_STAGE_DEPTH 3
/* Reads waiting for their replies whose client registered the destination
 * (reply descriptors): a bound, so a client cannot grow the table forever. */
#define RGPU_SESSION_MAX_REPLY_DESCS 65536
/* At most this many puts of a session on TCP whose client's status has not
 * come back yet; past it the session waits for them (a client that never
 * answers its puts must not grow the server's memory). */
#define RGPU_SESSION_MAX_UNANSWERED_PUTS 4096u

/* A put started and not answered yet (see rgpu_session_put_start). */
typedef struct rgpu_put_wait {
    rgpu_completion_t c;
    struct rgpu_put_wait *next;
} rgpu_put_wait_t;

/* Where a request's reply bulk goes: the client's registered destination. */
typedef struct rgpu_reply_dest {
    rgpu_mem_desc_t desc;
    uint64_t put_len;           /* bytes put so far (pieces go in order) */
} rgpu_reply_dest_t;

typedef struct rgpu_outframe {
    struct rgpu_outframe *next;
    uint8_t *head;              /* frame header + packed body */
    size_t head_len;
    const void *bulk;
    uint64_t bulk_len;
    void (*bulk_free)(void *arg);
    void *bulk_arg;
} rgpu_outframe_t;

struct rgpu_session {
    rgpu_server_t *server;
    rgpu_session_t *next;       /* in server->sessions, under server->lock */
    uint64_t id;
    char name[128];
    rgpu_link_t *link;
    rgpu_frame_limits_t limits;
    rgpu_wire_rx_t rx;          /* the session thread's receiving end of link */
    atomic_int refs;
    atomic_int closing;

    pthread_mutex_t send_lock;  /* serializes every send on link */

    pthread_mutex_t post_lock;  /* protects the post queue and sender state */
    pthread_cond_t post_cond;
    rgpu_outframe_t *post_head, *post_tail;
    int sender_stop;
    int sender_stopped;
    pthread_t sender;

    const rgpu_backend_ops_t *backend_ops;  /* the backend serving it: set by the handshake */
    void *backend_ctx;          /* set by the handshake */
    /* The request being handled: its bulk is inline (bulk), following it
     * in the stream (by_stream), or in the client's registered memory
     * (by_desc: src), len bytes in all. */
    struct {
        const uint8_t *bulk;
        int by_stream;
        int by_desc;
        rgpu_mem_desc_t src;
        uint64_t seq;
        uint64_t len;
        int done_sent;          /* MSG_BULK_DONE went out */
        char reason[256];       /* why a get failed */
    } pull;
    uint64_t bulk_left;         /* bytes of the current request's bulk not pulled yet */
    pthread_mutex_t reply_lock; /* protects replies and unanswered */
    rgpu_put_wait_t *unanswered; /* TCP puts whose client's status has not come */
    unsigned n_unanswered;
    int replies_n;              /* entries in replies, atomic: a reply finds
                                 * none without taking reply_lock */
    /* Registered staging for transports where registering pins pages
     * (RDMA): RGPU_SESSION_STAGE_DEPTH chunks, registered once, made at the
     * first transfer; one transfer at a time uses them. */
    pthread_mutex_t stage_lock;
    uint8_t *stage;
    rgpu_mem_t *stage_mem;
    rgpu_htable_t replies;      /* seq -> rgpu_reply_dest_t *, reads whose reply goes by put */
    uint64_t mem_quota;         /* from the lease token; 0 = none */
    uint64_t device_mask;       /* with --key: bit i = the lease names device index i */
    struct rgpu_lease_use *lease_use;   /* with a lease: its budget here (server->lock) */
    uint64_t mem_reserved;      /* bytes this session reserved in lease_use */
    uint64_t accepted_ms;       /* CLOCK_MONOTONIC, for the handshake deadline */

    /* What the server reports to the scheduler; set by the handshake
     * (before hello_done is set), read by the registrar under server->lock. */
    atomic_int hello_done;
    uint64_t lease_id;          /* 0: no lease (--insecure) */
    char client_arch[32];
    char client_host[64];
    uint32_t client_pid;
    int64_t started_unix;
    uint64_t started_ms;        /* rgpu_server_clock_ms() at the handshake */
    atomic_llong lease_expires; /* unix seconds; the token's, then the scheduler's */
    atomic_ullong memory;       /* bytes of live buffers */
    /* Ended by the server (lease gone): the reason, set once under
     * server->lock before ended is raised. */
    atomic_int ended;
    char end_reason[160];
};

/* Device memory one lease holds on this server, across its sessions. */
struct rgpu_lease_use {
    struct rgpu_lease_use *next;
    uint64_t lease_id;
    uint64_t budget;            /* 0: no quota */
    uint64_t used;
    int sessions;               /* sessions holding this entry */
};

/* Before the handshake a client is nobody: its first frame is small. A
 * Hello with a lease token naming many GPUs stays far below this. */
#define RGPU_SESSION_PREHELLO_MAX_BODY (64u << 10)

/* How long an ended lease is remembered when its expiry is unknown: longer
 * than any token the scheduler signs lives. */
#define RGPU_SESSION_ENDED_KEEP_S (8 * 24 * 3600)
/* At most this many ended leases are remembered (the oldest go first). */
#define RGPU_SESSION_ENDED_MAX 65536

static atomic_ullong rgpu_session_next_id = 1;

/* Why a transfer on link failed with status, in words: the link's reason
 * when it failed, else the status. */
static const char *rgpu_session_link_why(rgpu_link_t *link, rgpu_status_t status)
{
    return rgpu_link_reason(link)[0] ? rgpu_link_reason(link) : rgpu_status_str(status);
}

uint64_t rgpu_server_clock_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- server list ---------------------------------------------------- */

void rgpu_server_init(rgpu_server_t *server)
{
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->idle, NULL);
    server->sessions = NULL;
    server->stopping = 0;
    server->lease_uses = NULL;
    rgpu_htable_init(&server->ended);
}

void rgpu_server_cleanup(rgpu_server_t *server)
{
    while (server->lease_uses) {
        struct rgpu_lease_use *u = server->lease_uses;
        server->lease_uses = u->next;
        free(u);
    }
    rgpu_htable_cleanup(&server->ended);
    pthread_cond_destroy(&server->idle);
    pthread_mutex_destroy(&server->lock);
}

/* ---- leases: ended ones, and memory budgets -------------------------- */

typedef struct {
    int64_t now;
    uint64_t *stale;
    size_t n_stale, cap;
    uint64_t oldest_id;
    int64_t oldest_until;
} rgpu_ended_sweep_t;

static void rgpu_ended_sweep_one(uint64_t key, void *value, void *arg)
{
    rgpu_ended_sweep_t *sw = arg;
    int64_t until = (int64_t)(intptr_t)value;

    if (until <= sw->now && sw->n_stale < sw->cap)
        sw->stale[sw->n_stale++] = key;
    if (!sw->oldest_id || until < sw->oldest_until) {
        sw->oldest_id = key;
        sw->oldest_until = until;
    }
}

/* Forgets ended leases whose tokens have all expired by now; at the size
 * limit, also the one that would be forgotten first. Caller holds the lock. */
static void rgpu_server_ended_sweep_locked(rgpu_server_t *server, int64_t now, int make_room)
{
    uint64_t stale[256];
    rgpu_ended_sweep_t sw = {.now = now, .stale = stale, .cap = 256};

    if (!server->ended.count)
        return;
    rgpu_htable_foreach(&server->ended, rgpu_ended_sweep_one, &sw);
    for (size_t i = 0; i < sw.n_stale; i++)
        rgpu_htable_remove(&server->ended, stale[i]);
    if (make_room && !sw.n_stale && server->ended.count >= RGPU_SESSION_ENDED_MAX && sw.oldest_id)
        rgpu_htable_remove(&server->ended, sw.oldest_id);
}

/* Remembers that a lease ended; until: when its last token expires, or 0
 * when unknown. Caller holds the lock. */
static void rgpu_server_ended_add_locked(rgpu_server_t *server, uint64_t lease_id, int64_t until)
{
    int64_t now = (int64_t)time(NULL);

    if (!lease_id || rgpu_htable_find(&server->ended, lease_id))
        return;
    if (until <= now)
        until = now + RGPU_SESSION_ENDED_KEEP_S;
    if (server->ended.count >= RGPU_SESSION_ENDED_MAX)
        rgpu_server_ended_sweep_locked(server, now, 1);
    if (rgpu_htable_insert(&server->ended, lease_id, (void *)(intptr_t)until) != RGPU_OK)
        rgpu_warn("session", "cannot remember that lease %llu ended (out of memory)",
                  (unsigned long long)lease_id);
}

/* Joins the session to its lease's memory budget here. Caller holds the lock. */
static int rgpu_session_lease_join_locked(rgpu_session_t *session)
{
    rgpu_server_t *server = session->server;
    struct rgpu_lease_use *u;
    uint64_t devices = (uint64_t)__builtin_popcountll(session->device_mask);

    for (u = server->lease_uses; u && u->lease_id != session->lease_id; u = u->next)
        ;
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u)
            return -1;
        u->lease_id = session->lease_id;
        /* Quota per device, times this server's devices in the lease. */
        if (session->mem_quota && __builtin_mul_overflow(session->mem_quota, devices, &u->budget))
            u->budget = UINT64_MAX;
        u->next = server->lease_uses;
        server->lease_uses = u;
    }
    u->sessions++;
    session->lease_use = u;
    return 0;
}

/* Gives back what the session still holds and leaves its lease's budget. */
static void rgpu_session_lease_leave(rgpu_session_t *session)
{
    rgpu_server_t *server = session->server;
    struct rgpu_lease_use *u = session->lease_use;

    if (!u)
        return;
    pthread_mutex_lock(&server->lock);
    u->used -= session->mem_reserved;
    session->mem_reserved = 0;
    session->lease_use = NULL;
    if (--u->sessions == 0) {
        for (struct rgpu_lease_use **pp = &server->lease_uses; *pp; pp = &(*pp)->next) {
            if (*pp == u) {
                *pp = u->next;
                break;
            }
        }
        free(u);
    }
    pthread_mutex_unlock(&server->lock);
}

int rgpu_session_mem_reserve(rgpu_session_t *session, uint64_t bytes)
{
    struct rgpu_lease_use *u = session->lease_use;
    uint64_t total;
    int ok;

    if (!u) {
        session->mem_reserved += bytes;
        return 0;
    }
    pthread_mutex_lock(&session->server->lock);
    ok = !__builtin_add_overflow(u->used, bytes, &total) && (!u->budget || total <= u->budget);
    if (ok) {
        u->used = total;
        session->mem_reserved += bytes;
    }
    pthread_mutex_unlock(&session->server->lock);
    return ok ? 0 : -1;
}

void rgpu_session_mem_unreserve(rgpu_session_t *session, uint64_t bytes)
{
    struct rgpu_lease_use *u = session->lease_use;

    if (bytes > session->mem_reserved)
        bytes = session->mem_reserved;
    session->mem_reserved -= bytes;
    if (!u)
        return;
    pthread_mutex_lock(&session->server->lock);
    u->used -= bytes;
    pthread_mutex_unlock(&session->server->lock);
}

void rgpu_server_stop_sessions(rgpu_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    server->stopping = 1;
    /* A session leaves the list only after its thread closed the link and
     * cleared it (under this lock): a NULL link is one already closed. */
    for (rgpu_session_t *s = server->sessions; s; s = s->next)
        if (s->link)
            rgpu_link_shutdown(s->link);
    pthread_mutex_unlock(&server->lock);
}

int rgpu_server_wait_sessions(rgpu_server_t *server, int timeout_ms)
{
    struct timespec deadline;
    int left = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&server->lock);
    while (server->sessions) {
        if (pthread_cond_timedwait(&server->idle, &server->lock, &deadline) == ETIMEDOUT)
            break;
    }
    for (rgpu_session_t *s = server->sessions; s; s = s->next)
        left++;
    pthread_mutex_unlock(&server->lock);
    return left;
}

/* Ends a session from outside its thread: it stops receiving, then tells
 * its client why and tears down (freeing its device memory). Caller holds
 * server->lock, which keeps the session in the list and alive. */
static void rgpu_session_end_locked(rgpu_session_t *session, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void rgpu_session_end_locked(rgpu_session_t *session, const char *fmt, ...)
{
    va_list ap;

    if (atomic_load(&session->ended) || atomic_load(&session->closing) || !session->link)
        return;
    va_start(ap, fmt);
    vsnprintf(session->end_reason, sizeof(session->end_reason), fmt, ap);
    va_end(ap);
    atomic_store(&session->ended, 1);
    rgpu_info("session", "%s: ending it: %s", session->name, session->end_reason);
    rgpu_link_shutdown_recv(session->link);
}

size_t rgpu_server_sessions_snapshot(rgpu_server_t *server, rgpu_session_info_t **infos_p)
{
    rgpu_session_info_t *infos = NULL;
    size_t n = 0, cap = 0;

    pthread_mutex_lock(&server->lock);
    for (rgpu_session_t *s = server->sessions; s; s = s->next)
        cap++;
    if (cap)
        infos = calloc(cap, sizeof(*infos));
    for (rgpu_session_t *s = server->sessions; infos && s; s = s->next) {
        rgpu_session_info_t *info = &infos[n];

        if (!atomic_load(&s->hello_done) || atomic_load(&s->ended))
            continue;
        info->id = s->id;
        memcpy(info->client_arch, s->client_arch, sizeof(info->client_arch));
        memcpy(info->client_host, s->client_host, sizeof(info->client_host));
        info->client_pid = s->client_pid;
        info->lease_id = s->lease_id;
        info->memory = atomic_load(&s->memory);
        info->started_unix = s->started_unix;
        n++;
    }
    pthread_mutex_unlock(&server->lock);
    *infos_p = infos;
    return n;
}

void rgpu_server_leases_update(rgpu_server_t *server, const uint64_t *ids,
                               const int64_t *expires, size_t n, uint64_t asked_at_ms)
{
    pthread_mutex_lock(&server->lock);
    for (rgpu_session_t *s = server->sessions; s; s = s->next) {
        size_t i;

        /* A lease granted after the scheduler answered is not in its list:
         * judge only sessions that shook hands before the question (in
         * milliseconds: whole seconds skipped a session that started
         * earlier in the same second, and its renewal waited a heartbeat). */
        if (!atomic_load(&s->hello_done) || !s->lease_id || s->started_ms >= asked_at_ms)
            continue;
        for (i = 0; i < n && ids[i] != s->lease_id; i++)
            ;
        /* Its session ends; its tokens are refused only once the scheduler
         * names the lease among the ended ones (a lease the reply missed by
         * a race must not be shut out for good). */
        if (i < n)
            atomic_store(&s->lease_expires, expires[i]);
        else
            rgpu_session_end_locked(s, "lease %llu was released or has expired (the scheduler "
                                    "no longer lists it)", (unsigned long long)s->lease_id);
    }
    pthread_mutex_unlock(&server->lock);
}

void rgpu_server_leases_ended(rgpu_server_t *server, const uint64_t *ids, size_t n)
{
    pthread_mutex_lock(&server->lock);
    for (size_t i = 0; i < n; i++)
        rgpu_server_ended_add_locked(server, ids[i], 0);
    for (rgpu_session_t *s = server->sessions; s; s = s->next) {
        if (atomic_load(&s->hello_done) && s->lease_id && rgpu_htable_find(&server->ended, s->lease_id))
            rgpu_session_end_locked(s, "lease %llu was released (the scheduler says it ended)",
                                    (unsigned long long)s->lease_id);
    }
    pthread_mutex_unlock(&server->lock);
}

void rgpu_server_expire_sessions(rgpu_server_t *server, int64_t now)
{
    /* Whole seconds would end a connection up to a second early. */
    uint64_t now_ms = rgpu_server_clock_ms();
    int64_t hello_timeout = (int64_t)server->config->hello_timeout;

    pthread_mutex_lock(&server->lock);
    for (rgpu_session_t *s = server->sessions; s; s = s->next) {
        int64_t expires = atomic_load(&s->lease_expires);

        /* (Not remembered as ended: a renewal the scheduler had not yet
         * reported makes its newer tokens valid; expired ones are refused
         * by their own expiry.) */
        if (atomic_load(&s->hello_done) && s->lease_id && expires <= now) {
            rgpu_session_end_locked(s, "lease %llu expired %lld s ago",
                                    (unsigned long long)s->lease_id, (long long)(now - expires));
        } else if (!atomic_load(&s->hello_done) && hello_timeout > 0 &&
                   now_ms - s->accepted_ms >= (uint64_t)hello_timeout * 1000) {
            rgpu_session_end_locked(s, "no handshake within %lld s of connecting (--hello-timeout)",
                                    (long long)hello_timeout);
        }
    }
    rgpu_server_ended_sweep_locked(server, now, 0);
    pthread_mutex_unlock(&server->lock);
}

void rgpu_session_memory_add(rgpu_session_t *session, int64_t delta)
{
    atomic_fetch_add(&session->memory, (unsigned long long)delta);
}

static void rgpu_server_remove_session(rgpu_server_t *server, rgpu_session_t *session)
{
    pthread_mutex_lock(&server->lock);
    for (rgpu_session_t **pp = &server->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == session) {
            *pp = session->next;
            break;
        }
    }
    pthread_cond_broadcast(&server->idle);
    pthread_mutex_unlock(&server->lock);
}

/* ---- accessors and references --------------------------------------- */

const char *rgpu_session_name(const rgpu_session_t *session)
{
    return session->name;
}

const rgpu_server_config_t *rgpu_session_config(const rgpu_session_t *session)
{
    return session->server->config;
}

int rgpu_session_closing(rgpu_session_t *session)
{
    return atomic_load(&session->closing);
}

void rgpu_session_ref(rgpu_session_t *session)
{
    atomic_fetch_add(&session->refs, 1);
}

/* After the link is closed (which completes every operation it had). */
static void rgpu_reply_dest_free(uint64_t seq, void *value, void *arg)
{
    rgpu_reply_dest_t *d = value;

    (void)seq;
    (void)arg;
    free(d);
}

void rgpu_session_unref(rgpu_session_t *session)
{
    if (atomic_fetch_sub(&session->refs, 1) != 1)
        return;
    /* Last reference: the session thread is done and no callback can run. */
    if (session->backend_ctx)
        session->backend_ops->session_free(session->backend_ctx);
    pthread_cond_destroy(&session->post_cond);
    pthread_mutex_destroy(&session->post_lock);
    pthread_mutex_destroy(&session->send_lock);
    pthread_mutex_destroy(&session->reply_lock);
    pthread_mutex_destroy(&session->stage_lock);
    if (session->stage_mem)
        rgpu_mem_deregister(session->stage_mem);
    free(session->stage);
    rgpu_htable_foreach(&session->replies, rgpu_reply_dest_free, NULL);
    rgpu_htable_cleanup(&session->replies);
    /* The link is closed: it completed every put it had. */
    while (session->unanswered) {
        rgpu_put_wait_t *next = session->unanswered->next;
        free(session->unanswered);
        session->unanswered = next;
    }
    free(session);
}

/* ---- receiving and sending ------------------------------------------ */

/* Moves len bytes between local memory and the client's registered region
 * desc at off (get: into local; put: from local), waiting at most
 * RGPU_SESSION_RMA_TIMEOUT_MS. local is registered for the transfer only,
 * for local use (the client can neither read nor write it by itself). On
 * failure reason says why, naming what was being done. */
/* Waits for an operation of the session within RGPU_SESSION_RMA_TIMEOUT_MS.
 * A client that stopped serving its memory gets its link ended, which
 * fails the operation, so nothing touches the local side after this. */
static rgpu_status_t rgpu_session_rma_wait(rgpu_session_t *session, rgpu_completion_t *c)
{
    rgpu_status_t status = rgpu_link_wait(session->link, c, RGPU_SESSION_RMA_TIMEOUT_MS);

    if (status == RGPU_ERR_TIMEOUT) {
        rgpu_link_shutdown(session->link);
        rgpu_link_wait(session->link, c, -1);
    }
    return status;
}

/* The transfer of rgpu_session_rma through the session's registered
 * staging chunks, pipelined: gets land in a chunk and are copied out while
 * the next chunks arrive; puts are copied into a chunk while the chunks
 * before are on the wire. stage_lock held. */
static rgpu_status_t rgpu_session_rma_staged(rgpu_session_t *session, int is_get, uint8_t *local,
                                             uint64_t len, const rgpu_mem_desc_t *desc, uint64_t off)
{
    rgpu_link_t *link = session->link;
    rgpu_completion_t c[RGPU_SESSION_STAGE_DEPTH];
    uint64_t started = 0, finished = 0;   /* bytes of chunks started / completed, in order */
    unsigned issued = 0, retired = 0;     /* chunk counts */
    rgpu_status_t status = RGPU_OK;

    while (finished < len) {
        /* Start chunks while a slot is free and bytes remain. */
        while (status == RGPU_OK && started < len && issued - retired < RGPU_SESSION_STAGE_DEPTH) {
            unsigned slot = issued % RGPU_SESSION_STAGE_DEPTH;
            uint64_t n = len - started < RGPU_SESSION_STAGE_CHUNK ? len - started : RGPU_SESSION_STAGE_CHUNK;
            uint64_t at = (uint64_t)slot * RGPU_SESSION_STAGE_CHUNK;

            memset(&c[slot], 0, sizeof(c[slot]));
            if (!is_get)
                memcpy(session->stage + at, local + started, (size_t)n);
            status = is_get ? rgpu_link_get(link, session->stage_mem, at, desc, off + started, n, &c[slot])
                            : rgpu_link_put(link, session->stage_mem, at, desc, off + started, n, &c[slot]);
            if (status != RGPU_OK)
                break;
            started += n;
            issued++;
        }
        if (retired == issued)
            break;      /* nothing in flight: a start failed */
        /* Retire the oldest chunk. */
        {
            unsigned slot = retired % RGPU_SESSION_STAGE_DEPTH;
            uint64_t n = len - finished < RGPU_SESSION_STAGE_CHUNK ? len - finished : RGPU_SESSION_STAGE_CHUNK;
            rgpu_status_t st = rgpu_session_rma_wait(session, &c[slot]);

            if (st == RGPU_OK && status == RGPU_OK && is_get)
                memcpy(local + finished, session->stage + (uint64_t)slot * RGPU_SESSION_STAGE_CHUNK, (size_t)n);
            if (st != RGPU_OK && status == RGPU_OK)
                status = st;
            finished += n;
            retired++;
        }
    }
    return status;
}

static rgpu_status_t rgpu_session_rma(rgpu_session_t *session, int is_get, void *local, uint64_t len,
                                      const rgpu_mem_desc_t *desc, uint64_t off, const char *doing,
                                      char *reason, size_t reason_cap)
{
    rgpu_link_t *link = session->link;
    rgpu_completion_t c = {0};
    rgpu_mem_t *mem;
    rgpu_status_t status;

    if (rgpu_transport_caps(link->tp)->remote_access) {
        pthread_mutex_lock(&session->stage_lock);
        status = RGPU_OK;
        if (!session->stage) {
            session->stage = aligned_alloc(4096, (size_t)RGPU_SESSION_STAGE_DEPTH * RGPU_SESSION_STAGE_CHUNK);
            status = session->stage ? rgpu_mem_register_access(link->tp, session->stage,
                                                               (size_t)RGPU_SESSION_STAGE_DEPTH * RGPU_SESSION_STAGE_CHUNK,
                                                               RGPU_MEMTYPE_HOST, RGPU_MEM_LOCAL, &session->stage_mem)
                                    : RGPU_ERR_NOMEM;
            if (status != RGPU_OK) {
                free(session->stage);
                session->stage = NULL;
            }
        }
        if (status == RGPU_OK)
            status = rgpu_session_rma_staged(session, is_get, local, len, desc, off);
        pthread_mutex_unlock(&session->stage_lock);
        if (status == RGPU_ERR_NOMEM) {
            snprintf(reason, reason_cap, "cannot register this server's staging memory for %s", doing);
            return status;
        }
        goto out_reason;
    }
    status = rgpu_mem_register_access(link->tp, local, (size_t)len, RGPU_MEMTYPE_HOST, RGPU_MEM_LOCAL, &mem);
    if (status != RGPU_OK) {
        snprintf(reason, reason_cap, "cannot register %llu bytes of this server's memory for %s: %s",
                 (unsigned long long)len, doing, rgpu_status_str(status));
        return status;
    }
    status = is_get ? rgpu_link_get(link, mem, 0, desc, off, len, &c)
                    : rgpu_link_put(link, mem, 0, desc, off, len, &c);
    if (status == RGPU_OK)
        status = rgpu_session_rma_wait(session, &c);
    rgpu_mem_deregister(mem);
out_reason:
    switch (status) {
    case RGPU_OK:
        break;
    case RGPU_ERR_NOT_FOUND:
        snprintf(reason, reason_cap, "%s: the client's descriptor names no memory it registered "
                 "(a stale or forged key)", doing);
        break;
    case RGPU_ERR_INVALID_ARG:
        snprintf(reason, reason_cap, "%s: %llu bytes at offset %llu of the client's %llu-byte "
                 "descriptor fall outside what it registered or allows", doing,
                 (unsigned long long)len, (unsigned long long)off, (unsigned long long)desc->len);
        break;
    case RGPU_ERR_TIMEOUT:
        snprintf(reason, reason_cap, "%s: the client did not serve its memory within %d s", doing,
                 RGPU_SESSION_RMA_TIMEOUT_MS / 1000);
        break;
    default:
        snprintf(reason, reason_cap, "%s: %s", doing,
                 rgpu_session_link_why(link, status));
        break;
    }
    return status;
}

/* Tells the client the session is done with the request's data descriptor
 * (it may deregister it). Once per request, and before the backend's reply
 * when the backend pulled everything first. */
static void rgpu_session_bulk_done(rgpu_session_t *session, rgpu_status_t result)
{
    Rgpu__BulkDone done = RGPU__BULK_DONE__INIT;

    if (!session->pull.by_desc || session->pull.done_sent)
        return;
    session->pull.done_sent = 1;
    done.status = result;
    rgpu_session_send(session, RGPU__MSG_TYPE__MSG_BULK_DONE, session->pull.seq, &done.base, NULL, 0);
}

rgpu_status_t rgpu_session_pull(rgpu_session_t *session, void *dst, uint64_t len)
{
    uint64_t at = session->pull.len - session->bulk_left;
    rgpu_status_t status;

    if (len > session->bulk_left)
        return RGPU_ERR_INVALID_ARG;
    if (len == 0)
        return RGPU_OK;
    if (session->pull.by_stream) {
        /* Straight from the socket into the backend's memory. */
        status = rgpu_wire_take_bulk(&session->rx, dst, len);
        if (status != RGPU_OK) {
            snprintf(session->pull.reason, sizeof(session->pull.reason), "receiving a request's data: %s",
                     rgpu_session_link_why(session->link, status));
            return status;
        }
        session->bulk_left -= len;
        return RGPU_OK;
    }
    if (!session->pull.by_desc) {
        memcpy(dst, session->pull.bulk + at, (size_t)len);
        session->bulk_left -= len;
        return RGPU_OK;
    }
    status = rgpu_session_rma(session, 1, dst, len, &session->pull.src, at, "getting a request's data",
                              session->pull.reason, sizeof(session->pull.reason));
    if (status != RGPU_OK)
        return status;
    session->bulk_left -= len;
    if (session->bulk_left == 0)
        rgpu_session_bulk_done(session, RGPU_OK);
    return RGPU_OK;
}

uint64_t rgpu_session_pull_left(const rgpu_session_t *session)
{
    return session->bulk_left;
}

/* The reply descriptor of request seq, if its client sent one; take: remove
 * it (its reply is being sent). */
static rgpu_reply_dest_t *rgpu_session_reply_dest(rgpu_session_t *session, uint64_t seq, int take)
{
    rgpu_reply_dest_t *d;

    /* A reply's destination was recorded when its request arrived, before
     * the request was handled, so a count of 0 seen here means none. */
    if (seq == 0 || __atomic_load_n(&session->replies_n, __ATOMIC_ACQUIRE) == 0)
        return NULL;
    pthread_mutex_lock(&session->reply_lock);
    d = take ? rgpu_htable_remove(&session->replies, seq) : rgpu_htable_find(&session->replies, seq);
    if (take && d)
        __atomic_sub_fetch(&session->replies_n, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&session->reply_lock);
    return d;
}

/* Sends a frame as it is, under the send mutex. */
static rgpu_status_t rgpu_session_send_raw(rgpu_session_t *session, uint16_t type, uint64_t seq,
                                           const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len)
{
    rgpu_status_t status;

    pthread_mutex_lock(&session->send_lock);
    status = rgpu_wire_send(session->link, type, seq, 0, msg, bulk, bulk_len);
    pthread_mutex_unlock(&session->send_lock);
    return status;
}

/* Logs a put the client refused; the client, which refused it, fails its
 * read itself. */
static void rgpu_session_put_answered(rgpu_session_t *session, const rgpu_put_wait_t *w)
{
    if (w->c.status != RGPU_OK)
        rgpu_warn("session", "%s: the client refused a put of a reply's data: %s", session->name,
                  w->c.status == RGPU_ERR_NOT_FOUND ? "its descriptor names no memory it registered"
                  : w->c.status == RGPU_ERR_INVALID_ARG ? "its descriptor does not allow it"
                  : rgpu_status_str(w->c.status));
}

/* Frees the records of puts whose answer came (taking what has arrived if
 * nobody else receives). Past RGPU_SESSION_MAX_UNANSWERED_PUTS it waits
 * for all of them, each within RGPU_SESSION_RMA_TIMEOUT_MS, without
 * holding a lock (the session thread must stay free to receive). */
static void rgpu_session_puts_reap(rgpu_session_t *session)
{
    rgpu_put_wait_t *all = NULL, **pp;

    rgpu_link_progress(session->link);
    pthread_mutex_lock(&session->reply_lock);
    for (pp = &session->unanswered; *pp;) {
        rgpu_put_wait_t *w = *pp;

        if (!__atomic_load_n(&w->c.done, __ATOMIC_ACQUIRE)) {
            pp = &w->next;
            continue;
        }
        rgpu_session_put_answered(session, w);
        *pp = w->next;
        session->n_unanswered--;
        free(w);
    }
    if (session->n_unanswered >= RGPU_SESSION_MAX_UNANSWERED_PUTS) {
        all = session->unanswered;
        session->unanswered = NULL;
        session->n_unanswered = 0;
    }
    pthread_mutex_unlock(&session->reply_lock);
    while (all) {
        rgpu_put_wait_t *next = all->next;

        if (rgpu_link_wait(session->link, &all->c, RGPU_SESSION_RMA_TIMEOUT_MS) == RGPU_ERR_TIMEOUT) {
            rgpu_warn("session", "%s: the client did not answer a put of a reply's data within %d s",
                      session->name, RGPU_SESSION_RMA_TIMEOUT_MS / 1000);
            rgpu_link_shutdown(session->link);
            rgpu_link_wait(session->link, &all->c, -1);
        }
        rgpu_session_put_answered(session, all);
        free(all);
        all = next;
    }
}

/* Starts a put of a reply's piece on a transport whose puts have sent
 * their bytes when they return (caps.remote_access 0: tcp): the piece's
 * source may be reused at once, the next piece leaves without a round trip
 * in between, and the reply follows without waiting for the client's
 * status: the stream keeps them in order, so the client has the bytes
 * before it reads the reply. Only the record of the put waits for the
 * answer (reaped at the next put; at most RGPU_SESSION_MAX_UNANSWERED_PUTS). */
static rgpu_status_t rgpu_session_put_start(rgpu_session_t *session, rgpu_reply_dest_t *d,
                                            uint64_t offset, const void *src, uint64_t len)
{
    rgpu_link_t *link = session->link;
    rgpu_put_wait_t *w = calloc(1, sizeof(*w));
    rgpu_mem_t *mem;
    rgpu_status_t status;

    if (!w)
        return RGPU_ERR_NOMEM;
    rgpu_session_puts_reap(session);
    status = rgpu_mem_register_access(link->tp, (void *)src, (size_t)len, RGPU_MEMTYPE_HOST, RGPU_MEM_LOCAL, &mem);
    if (status == RGPU_OK) {
        status = rgpu_link_put(link, mem, 0, &d->desc, offset, len, &w->c);
        rgpu_mem_deregister(mem);
    }
    if (status != RGPU_OK) {
        rgpu_warn("session", "%s: putting a reply's data: %s", session->name,
                  rgpu_session_link_why(link, status));
        free(w);
        return status;
    }
    pthread_mutex_lock(&session->reply_lock);
    w->next = session->unanswered;
    session->unanswered = w;
    session->n_unanswered++;
    pthread_mutex_unlock(&session->reply_lock);
    return RGPU_OK;
}

/* Puts a piece of request seq's reply into the client's destination d, then
 * tells the client it is there. Any thread that may send. */
static rgpu_status_t rgpu_session_put_piece(rgpu_session_t *session, rgpu_reply_dest_t *d, uint64_t seq,
                                            uint64_t offset, const void *src, uint64_t len)
{
    Rgpu__BulkPart part = RGPU__BULK_PART__INIT;
    char reason[320];
    rgpu_status_t status;

    if (len == 0)
        return RGPU_OK;
    if (offset > d->desc.len || len > d->desc.len - offset) {
        rgpu_warn("session", "%s: a reply of %llu bytes at offset %llu does not fit the %llu bytes "
                  "the client registered for it", session->name, (unsigned long long)len,
                  (unsigned long long)offset, (unsigned long long)d->desc.len);
        return RGPU_ERR_TOO_LARGE;
    }
    if (!rgpu_transport_caps(session->link->tp)->remote_access) {
        /* The bytes are on their way when it returns; in the stream the
         * notice below follows them. */
        status = rgpu_session_put_start(session, d, offset, src, len);
        if (status != RGPU_OK)
            return status;
    } else {
        status = rgpu_session_rma(session, 0, (void *)src, len, &d->desc, offset, "putting a reply's data",
                                  reason, sizeof(reason));
        if (status != RGPU_OK) {
            rgpu_warn("session", "%s: %s", session->name, reason);
            return status;
        }
    }
    d->put_len = offset + len;
    part.offset = offset;
    part.put_len = len;
    return rgpu_session_send_raw(session, RGPU__MSG_TYPE__MSG_BULK_PART, seq, &part.base, NULL, 0);
}

rgpu_status_t rgpu_session_push(rgpu_session_t *session, uint64_t seq, uint64_t offset,
                                const void *src, uint64_t len)
{
    Rgpu__BulkPart part = RGPU__BULK_PART__INIT;
    rgpu_reply_dest_t *d = rgpu_session_reply_dest(session, seq, 0);

    if (d)
        return rgpu_session_put_piece(session, d, seq, offset, src, len);
    part.offset = offset;
    return rgpu_session_send_raw(session, RGPU__MSG_TYPE__MSG_BULK_PART, seq, &part.base, src, len);
}

/* Whether a frame of this type, with a seq, is the reply that ends its
 * request (and so the life of the request's reply descriptor). */
static int rgpu_session_is_reply(uint16_t type)
{
    return type != RGPU__MSG_TYPE__MSG_BULK_PART && type != RGPU__MSG_TYPE__MSG_BULK_DONE;
}

rgpu_status_t rgpu_session_send(rgpu_session_t *session, uint16_t type, uint64_t seq,
                                const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len)
{
    rgpu_reply_dest_t *d = rgpu_session_is_reply(type) ? rgpu_session_reply_dest(session, seq, 1) : NULL;
    rgpu_status_t status = RGPU_OK;

    if (d) {
        /* The reply's data goes into the client's destination, after any
         * pieces pushed before it; the reply itself carries none. */
        if (bulk_len)
            status = rgpu_session_put_piece(session, d, seq, d->put_len, bulk, bulk_len);
        free(d);
        bulk = NULL;
        bulk_len = 0;
        if (status != RGPU_OK)
            return status;
    }
    return rgpu_session_send_raw(session, type, seq, msg, bulk, bulk_len);
}

static void rgpu_outframe_free(rgpu_outframe_t *frame)
{
    if (frame->bulk_free)
        frame->bulk_free(frame->bulk_arg);
    free(frame->head);
    free(frame);
}

void rgpu_session_post(rgpu_session_t *session, uint16_t type, uint64_t seq,
                       const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len,
                       void (*bulk_free)(void *arg), void *bulk_arg)
{
    rgpu_outframe_t *frame = calloc(1, sizeof(*frame));
    size_t need = rgpu_frame_packed_size(msg);

    if (!frame)
        goto out_drop;
    frame->bulk = bulk;
    frame->bulk_len = bulk_len;
    frame->bulk_free = bulk_free;
    frame->bulk_arg = bulk_arg;
    frame->head = malloc(need);
    if (!frame->head) {
        free(frame);
        frame = NULL;
        goto out_drop;
    }
    frame->head_len = rgpu_frame_pack(frame->head, type, seq, 0, msg, bulk_len);
    pthread_mutex_lock(&session->post_lock);
    if (session->sender_stopped) {
        pthread_mutex_unlock(&session->post_lock);
        rgpu_outframe_free(frame);
        return;
    }
    if (session->post_tail)
        session->post_tail->next = frame;
    else
        session->post_head = frame;
    session->post_tail = frame;
    pthread_cond_signal(&session->post_cond);
    pthread_mutex_unlock(&session->post_lock);
    return;

out_drop:
    /* The client will miss this frame; its call fails when the session ends. */
    rgpu_error("session", "%s: out of memory posting a message of type %u", session->name, type);
    if (bulk_free)
        bulk_free(bulk_arg);
}

static void *rgpu_session_sender_main(void *arg)
{
    rgpu_session_t *session = arg;
    int link_failed = 0;

    pthread_setname_np(pthread_self(), "rgpu-sender");

    for (;;) {
        rgpu_outframe_t *frame;

        pthread_mutex_lock(&session->post_lock);
        while (!session->post_head && !session->sender_stop)
            pthread_cond_wait(&session->post_cond, &session->post_lock);
        frame = session->post_head;
        if (!frame) {
            session->sender_stopped = 1;
            pthread_mutex_unlock(&session->post_lock);
            break;
        }
        session->post_head = frame->next;
        if (!session->post_head)
            session->post_tail = NULL;
        pthread_mutex_unlock(&session->post_lock);

        if (!link_failed && !atomic_load(&session->closing)) {
            struct iovec iov[2] = {{frame->head, frame->head_len},
                                   {(void *)frame->bulk, (size_t)frame->bulk_len}};
            rgpu_frame_header_t h;
            rgpu_reply_dest_t *d = NULL;
            rgpu_status_t status = RGPU_OK;

            /* A reply posted by a callback (a non-blocking read) whose
             * client registered the destination: its data goes by put. */
            if (rgpu_frame_header_decode(frame->head, NULL, &h) == RGPU_OK && rgpu_session_is_reply(h.type))
                d = rgpu_session_reply_dest(session, h.seq, 1);
            if (d) {
                if (frame->bulk_len)
                    status = rgpu_session_put_piece(session, d, h.seq, d->put_len, frame->bulk, frame->bulk_len);
                free(d);
                h.bulk_len = 0;
                rgpu_frame_header_encode(&h, frame->head);
                iov[1].iov_len = 0;
            }
            if (status == RGPU_OK) {
                pthread_mutex_lock(&session->send_lock);
                status = rgpu_wire_send_frame(session->link, iov, iov[1].iov_len ? 2 : 1);
                pthread_mutex_unlock(&session->send_lock);
            }
            /* The session thread notices a dead link on its next receive;
             * a reply that could not go out ends the session (its client
             * would wait for it forever). */
            if (status != RGPU_OK) {
                link_failed = 1;
                rgpu_link_shutdown(session->link);
            }
        }
        rgpu_outframe_free(frame);
    }
    return NULL;
}

static void rgpu_session_sender_stop(rgpu_session_t *session)
{
    pthread_mutex_lock(&session->post_lock);
    session->sender_stop = 1;
    pthread_cond_signal(&session->post_cond);
    pthread_mutex_unlock(&session->post_lock);
    pthread_join(session->sender, NULL);
}

/* ---- the handshake and the frame loop ------------------------------- */

static int rgpu_session_is_link_error(rgpu_status_t status)
{
    return status == RGPU_ERR_CONN_CLOSED || status == RGPU_ERR_IO || status == RGPU_ERR_TIMEOUT;
}

uint64_t rgpu_session_mem_quota(const rgpu_session_t *session)
{
    return session->mem_quota;
}

int rgpu_session_device_allowed(const rgpu_session_t *session, uint32_t index)
{
    if (!session->server->lease_key)
        return 1;
    return index < 64 && (session->device_mask >> index & 1);
}

/* With --key: the client's lease token must be signed with the cluster key,
 * unexpired, and name this server. Sets the session's memory quota. */
static rgpu_status_t rgpu_session_check_lease(rgpu_session_t *session, const char *token,
                                              char *reason, size_t reason_cap)
{
    rgpu_server_t *server = session->server;
    Rgpu__TokenPayload *payload;
    char why[256];
    rgpu_status_t status;

    status = rgpu_token_verify(server->lease_key, token, (int64_t)time(NULL), &payload, why,
                               sizeof(why));
    if (status != RGPU_OK) {
        snprintf(reason, reason_cap, "lease refused: %s", why);
        return RGPU_ERR_REFUSED;
    }
    for (size_t g = 0; g < payload->n_gpus; g++) {
        if (strcmp(payload->gpus[g]->server, server->advertise) == 0 && payload->gpus[g]->index < 64)
            session->device_mask |= 1ull << payload->gpus[g]->index;
    }
    if (!session->device_mask) {
        snprintf(reason, reason_cap, "lease refused: lease %llu names no GPU of this server (%s)",
                 (unsigned long long)payload->lease_id, server->advertise);
        rgpu__token_payload__free_unpacked(payload, NULL);
        return RGPU_ERR_REFUSED;
    }
    pthread_mutex_lock(&server->lock);
    if (rgpu_htable_find(&server->ended, payload->lease_id)) {
        pthread_mutex_unlock(&server->lock);
        snprintf(reason, reason_cap, "lease refused: lease %llu has ended (released or expired); "
                 "ask the scheduler for a new one", (unsigned long long)payload->lease_id);
        rgpu__token_payload__free_unpacked(payload, NULL);
        return RGPU_ERR_REFUSED;
    }
    session->mem_quota = payload->memory_quota;
    session->lease_id = payload->lease_id;
    if (rgpu_session_lease_join_locked(session) != 0) {
        pthread_mutex_unlock(&server->lock);
        snprintf(reason, reason_cap, "out of memory joining lease %llu", (unsigned long long)payload->lease_id);
        rgpu__token_payload__free_unpacked(payload, NULL);
        return RGPU_ERR_NOMEM;
    }
    pthread_mutex_unlock(&server->lock);
    atomic_store(&session->lease_expires, payload->expires_unix);
    rgpu_info("session", "%s: lease %llu of user \"%s\"%s", session->name,
              (unsigned long long)payload->lease_id, payload->user,
              payload->memory_quota ? " with a memory quota" : "");
    rgpu__token_payload__free_unpacked(payload, NULL);
    return RGPU_OK;
}

/* The backend serving api, or NULL with the reason the client is told. */
static const rgpu_server_backend_t *rgpu_server_backend_for(const rgpu_server_t *server,
                                                            Rgpu__ApiFamily api, char *reason,
                                                            size_t reason_cap)
{
    for (size_t i = 0; i < server->n_backends; i++)
        if (server->backends[i].ops->api == api)
            return &server->backends[i];
    if (api <= RGPU__API_FAMILY__API_NONE || (size_t)api >= RGPU_SERVER_MAX_BACKENDS)
        snprintf(reason, reason_cap, "client asked for API family %d, which this server does "
                 "not know", (int)api);
    else if (server->absent[api][0])
        snprintf(reason, reason_cap, "this server has no %s devices: %s", rgpu_api_name(api),
                 server->absent[api]);
    else
        snprintf(reason, reason_cap, "this server does not serve %s (not in its --backends)",
                 rgpu_api_name(api));
    return NULL;
}

static rgpu_status_t rgpu_session_hello(rgpu_session_t *session, const rgpu_frame_header_t *header,
                                        const uint8_t *body, char *reason, size_t reason_cap)
{
    const rgpu_server_backend_t *sb;
    rgpu_server_t *server = session->server;
    Rgpu__HelloReply reply = RGPU__HELLO_REPLY__INIT;
    Rgpu__Device *leased[64];
    char server_name[256];
    Rgpu__Hello *hello;
    rgpu_status_t status;

    if (header->bulk_len) {
        snprintf(reason, reason_cap, "hello carries %llu bytes of bulk, expected none",
                 (unsigned long long)header->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    hello = rgpu__hello__unpack(NULL, header->body_len, body);
    if (!hello) {
        snprintf(reason, reason_cap, "hello body (%u bytes) does not unpack", header->body_len);
        return RGPU_ERR_BAD_MESSAGE;
    }
    if (hello->protocol_version != RGPU_PROTOCOL_VERSION) {
        snprintf(reason, reason_cap,
                 "client speaks protocol version %u, this server speaks version %u",
                 hello->protocol_version, RGPU_PROTOCOL_VERSION);
        status = RGPU_ERR_BAD_VERSION;
        goto out_free_hello;
    }
    sb = rgpu_server_backend_for(server, hello->api, reason, reason_cap);
    if (!sb) {
        status = RGPU_ERR_REFUSED;
        goto out_free_hello;
    }
    if (server->lease_key) {
        status = rgpu_session_check_lease(session, hello->lease_token, reason, reason_cap);
        if (status != RGPU_OK)
            goto out_free_hello;
    }
    rgpu_info("session", "session %llu from %s: client arch %s, pid %u, host %s",
              (unsigned long long)session->id, session->link->peer,
              *hello->client_arch ? hello->client_arch : "?", hello->client_pid,
              *hello->client_host ? hello->client_host : "?");
    snprintf(session->client_arch, sizeof(session->client_arch), "%s",
             *hello->client_arch ? hello->client_arch : "?");
    snprintf(session->client_host, sizeof(session->client_host), "%s",
             *hello->client_host ? hello->client_host : "?");
    session->client_pid = hello->client_pid;
    session->started_unix = (int64_t)time(NULL);
    session->started_ms = rgpu_server_clock_ms();
    session->backend_ops = sb->ops;
    status = sb->ops->session_open(sb->backend, session, &session->backend_ctx);
    if (status != RGPU_OK) {
        snprintf(reason, reason_cap, "cannot open a %s session: %s", sb->ops->name,
                 rgpu_status_str(status));
        goto out_free_hello;
    }
    snprintf(server_name, sizeof(server_name), "rgpu-server %s on %s", RGPU_VERSION,
             server->hostname);
    reply.protocol_version = RGPU_PROTOCOL_VERSION;
    reply.server_name = server_name;
    reply.little_endian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
    reply.session_id = session->id;
    sb->ops->hello_fill(sb->backend, &reply);
    if (server->lease_key) {
        /* The client sees the leased devices only (by their server index). */
        size_t n = 0;

        for (size_t d = 0; d < reply.n_devices && n < 64; d++)
            if (rgpu_session_device_allowed(session, reply.devices[d]->index))
                leased[n++] = reply.devices[d];
        reply.devices = leased;
        reply.n_devices = n;
    }
    status = rgpu_session_send(session, RGPU__MSG_TYPE__MSG_HELLO_REPLY, header->seq,
                               &reply.base, NULL, 0);
    atomic_store(&session->hello_done, 1);

out_free_hello:
    rgpu__hello__free_unpacked(hello, NULL);
    return status;
}

static rgpu_status_t rgpu_session_ping(rgpu_session_t *session, const rgpu_frame_header_t *header,
                                       const uint8_t *body, char *reason, size_t reason_cap)
{
    Rgpu__Pong pong = RGPU__PONG__INIT;
    Rgpu__Ping *ping;
    rgpu_status_t status;

    if (header->bulk_len) {
        snprintf(reason, reason_cap, "ping carries %llu bytes of bulk, expected none",
                 (unsigned long long)header->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    ping = rgpu__ping__unpack(NULL, header->body_len, body);
    if (!ping) {
        snprintf(reason, reason_cap, "ping body (%u bytes) does not unpack", header->body_len);
        return RGPU_ERR_BAD_MESSAGE;
    }
    pong.payload = ping->payload;
    status = rgpu_session_send(session, RGPU__MSG_TYPE__MSG_PONG, header->seq, &pong.base, NULL, 0);
    rgpu__ping__free_unpacked(ping, NULL);
    return status;
}

/* Makes the request's bulk reachable by pull: inline in the frame, or in
 * the client's memory named by the frame's descriptors (RGPU_FRAME_F_DESC),
 * and remembers where its reply's bulk goes. header->bulk_len becomes the
 * bulk's length as the backend sees it. */
static rgpu_status_t rgpu_session_take_bulk(rgpu_session_t *session, rgpu_frame_header_t *header,
                                            const uint8_t *bulk, char *reason, size_t reason_cap)
{
    rgpu_mem_desc_t data, reply;
    int has_data, has_reply;
    rgpu_reply_dest_t *d;
    rgpu_status_t status;

    memset(&session->pull, 0, sizeof(session->pull));
    session->pull.bulk = bulk;
    session->pull.seq = header->seq;
    session->pull.len = header->bulk_len;
    if (header->flags & RGPU_FRAME_F_STREAM) {
        /* The wire layer checked its length against --max-bulk. */
        if (header->flags & RGPU_FRAME_F_DESC) {
            snprintf(reason, reason_cap, "a request of type %u has its data both in the stream and "
                     "by descriptor", header->type);
            return RGPU_ERR_PROTOCOL;
        }
        session->pull.by_stream = 1;
        return RGPU_OK;
    }
    if (!(header->flags & RGPU_FRAME_F_DESC))
        return RGPU_OK;
    status = rgpu_wire_refs_unpack(bulk, (size_t)header->bulk_len, &data, &has_data, &reply, &has_reply,
                                   reason, reason_cap);
    if (status != RGPU_OK)
        return status;
    if (has_data && data.len > session->limits.max_bulk) {
        snprintf(reason, reason_cap, "a request of type %u describes %llu bytes of data, past the limit "
                 "of %llu (--max-bulk)", header->type, (unsigned long long)data.len,
                 (unsigned long long)session->limits.max_bulk);
        return RGPU_ERR_TOO_LARGE;
    }
    session->pull.bulk = NULL;
    session->pull.by_desc = has_data;
    session->pull.src = data;
    session->pull.len = has_data ? data.len : 0;
    header->bulk_len = session->pull.len;
    if (!has_reply)
        return RGPU_OK;
    if (header->seq == 0) {
        snprintf(reason, reason_cap, "a request of type %u wants no reply but names where to put one",
                 header->type);
        return RGPU_ERR_PROTOCOL;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(reason, reason_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    d->desc = reply;
    pthread_mutex_lock(&session->reply_lock);
    if (session->replies.count >= RGPU_SESSION_MAX_REPLY_DESCS) {
        snprintf(reason, reason_cap, "more than %u reads wait for their replies",
                 RGPU_SESSION_MAX_REPLY_DESCS);
        status = RGPU_ERR_TOO_LARGE;
    } else if (rgpu_htable_find(&session->replies, header->seq)) {
        snprintf(reason, reason_cap, "two requests waiting for replies share sequence number %llu",
                 (unsigned long long)header->seq);
        status = RGPU_ERR_PROTOCOL;
    } else {
        status = rgpu_htable_insert(&session->replies, header->seq, d);
        if (status != RGPU_OK)
            snprintf(reason, reason_cap, "out of memory");
        else
            __atomic_add_fetch(&session->replies_n, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&session->reply_lock);
    if (status != RGPU_OK)
        free(d);
    return status;
}

/* Runs frames until the client leaves or breaks the protocol. RGPU_OK means
 * an orderly goodbye; link statuses mean the client went away; anything
 * else comes with a reason. */
static rgpu_status_t rgpu_session_loop(rgpu_session_t *session, char *reason, size_t reason_cap)
{
    for (;;) {
        rgpu_wire_frame_t f;
        rgpu_frame_header_t header;
        rgpu_status_t status;

        if (atomic_load(&session->ended))
            return RGPU_ERR_REFUSED;
        status = rgpu_wire_recv(&session->rx, &f, -1, reason, reason_cap);
        if (status != RGPU_OK)
            return status;
        header = f.header;
        /* Nothing is committed to a client before it has shaken hands. */
        if (!session->backend_ctx && (header.type != RGPU__MSG_TYPE__MSG_HELLO ||
                                      header.body_len > RGPU_SESSION_PREHELLO_MAX_BODY ||
                                      header.bulk_len || header.flags)) {
            snprintf(reason, reason_cap, "first message has type %u, body %u bytes and bulk %llu bytes; "
                     "expected a hello (type %u) of at most %u bytes", header.type, header.body_len,
                     (unsigned long long)header.bulk_len, RGPU__MSG_TYPE__MSG_HELLO, RGPU_SESSION_PREHELLO_MAX_BODY);
            return RGPU_ERR_PROTOCOL;
        }
        rgpu_trace("session", "%s: frame type %u seq %llu flags %u body %u bulk %llu", session->name,
                   header.type, (unsigned long long)header.seq, header.flags, header.body_len,
                   (unsigned long long)header.bulk_len);
        status = rgpu_session_take_bulk(session, &header, f.bulk, reason, reason_cap);
        if (status != RGPU_OK)
            return status;

        uint64_t call_start_ns = rgpu_server_metrics_call_begin(header.type);
        switch (header.type) {
        case RGPU__MSG_TYPE__MSG_HELLO:
            if (session->backend_ctx) {
                snprintf(reason, reason_cap, "second hello in one session");
                status = RGPU_ERR_PROTOCOL;
                break;
            }
            status = rgpu_session_hello(session, &header, f.body, reason, reason_cap);
            /* From now on a frame may be as large as the limits allow, and
             * a request's data may follow it in the stream. */
            session->rx.max_assembled = RGPU_FRAME_HEADER_SIZE + (uint64_t)session->limits.max_body +
                                        rgpu_transport_caps(session->link->tp)->max_eager;
            session->rx.take_stream = status == RGPU_OK;
            break;
        case RGPU__MSG_TYPE__MSG_PING:
            status = rgpu_session_ping(session, &header, f.body, reason, reason_cap);
            break;
        case RGPU__MSG_TYPE__MSG_GOODBYE:
            return RGPU_OK;
        default:
            session->bulk_left = header.bulk_len;
            status = session->backend_ops->session_handle(session->backend_ctx, &header, f.body,
                                                          reason, reason_cap);
            /* A get that failed says why better than the backend can. */
            if (status != RGPU_OK && session->pull.reason[0])
                snprintf(reason, reason_cap, "%s", session->pull.reason);
            /* Data the backend refused or stopped taking midway is dropped
             * unread (inline: with the frame; in the stream: read and
             * dropped at the next receive; by descriptor: never got). */
            rgpu_session_bulk_done(session, status);
            session->bulk_left = 0;
            break;
        }
        rgpu_server_metrics_call_end(header.type, header.bulk_len, call_start_ns);
        if (status != RGPU_OK)
            return status;
    }
}

static void *rgpu_session_main(void *arg)
{
    rgpu_session_t *session = arg;
    rgpu_server_t *server = session->server;
    char reason[512] = "";

    /* Named for top -H and ps -L: the platform's threads keep "rgpu-server". */
    pthread_setname_np(pthread_self(), "rgpu-session");
    rgpu_log_set_session(session->id);   /* journald's RGPU_SESSION_ID */
    rgpu_link_t *link;
    rgpu_status_t status;

    status = rgpu_session_loop(session, reason, sizeof(reason));
    if (atomic_load(&session->ended)) {
        /* The server ended it (its lease is gone), whatever the loop saw. */
        status = RGPU_ERR_REFUSED;
        pthread_mutex_lock(&server->lock);
        snprintf(reason, sizeof(reason), "%s", session->end_reason);
        pthread_mutex_unlock(&server->lock);
    }
    if (status == RGPU_OK) {
        rgpu_info("session", "%s: client said goodbye", session->name);
    } else if (rgpu_session_is_link_error(status)) {
        rgpu_info("session", "%s: client went away (%s)", session->name, rgpu_status_str(status));
    } else {
        Rgpu__SessionError error = RGPU__SESSION_ERROR__INIT;

        rgpu_warn("session", "%s: ending session: %s", session->name, reason);
        if (status <= RGPU_ERR_BAD_MAGIC && status >= RGPU_ERR_REFUSED &&
            !atomic_load(&session->ended))
            atomic_fetch_add(&rgpu_metrics.protocol_errors_total, 1);
        error.status = status;
        error.reason = reason;
        rgpu_session_send(session, RGPU__MSG_TYPE__MSG_SESSION_ERROR, 0, &error.base, NULL, 0);
    }

    /* From here on nothing reaches the client: callbacks drop their frames. */
    atomic_store(&session->closing, 1);
    rgpu_link_shutdown(session->link);
    rgpu_session_sender_stop(session);
    if (session->backend_ctx)
        session->backend_ops->session_teardown(session->backend_ctx);
    rgpu_session_lease_leave(session);
    rgpu_wire_rx_fini(&session->rx);
    rgpu_debug("session", "%s: closed", session->name);

    /* Under the lock: rgpu_session_end_locked may be looking at the link. */
    pthread_mutex_lock(&server->lock);
    link = session->link;
    session->link = NULL;
    pthread_mutex_unlock(&server->lock);
    rgpu_link_close(link);
    atomic_fetch_sub(&rgpu_metrics.sessions_active, 1);
    rgpu_server_remove_session(server, session);
    rgpu_session_unref(session);
    return NULL;
}

rgpu_status_t rgpu_session_start(rgpu_server_t *server, rgpu_link_t *link)
{
    rgpu_session_t *session = calloc(1, sizeof(*session));
    pthread_attr_t attr;
    rgpu_status_t status;
    int err;

    if (!session) {
        rgpu_error("session", "out of memory for a session from %s", link->peer);
        rgpu_link_close(link);
        return RGPU_ERR_NOMEM;
    }
    session->server = server;
    session->id = atomic_fetch_add(&rgpu_session_next_id, 1);
    session->link = link;
    session->accepted_ms = rgpu_server_clock_ms();
    session->limits.max_body = (uint32_t)server->config->max_body;
    session->limits.max_bulk = server->config->max_bulk;
    atomic_init(&session->refs, 1);
    atomic_init(&session->closing, 0);
    snprintf(session->name, sizeof(session->name), "session %llu (%s)",
             (unsigned long long)session->id, link->peer);
    pthread_mutex_init(&session->send_lock, NULL);
    pthread_mutex_init(&session->post_lock, NULL);
    pthread_cond_init(&session->post_cond, NULL);
    pthread_mutex_init(&session->reply_lock, NULL);
    pthread_mutex_init(&session->stage_lock, NULL);
    rgpu_htable_init(&session->replies);
    /* Before the handshake a frame in fragments is as small as a hello. */
    rgpu_wire_rx_init(&session->rx, link, &session->limits,
                      RGPU_FRAME_HEADER_SIZE + RGPU_SESSION_PREHELLO_MAX_BODY);

    pthread_mutex_lock(&server->lock);
    if (server->stopping) {
        pthread_mutex_unlock(&server->lock);
        status = RGPU_ERR_REFUSED;
        goto out_free;
    }
    session->next = server->sessions;
    server->sessions = session;
    pthread_mutex_unlock(&server->lock);

    err = pthread_create(&session->sender, NULL, rgpu_session_sender_main, session);
    if (err != 0) {
        rgpu_error("session", "%s: cannot start its sender thread: %s", session->name,
                   strerror(err));
        status = RGPU_ERR_NOMEM;
        goto out_remove;
    }
    atomic_fetch_add(&rgpu_metrics.sessions_active, 1);
    atomic_fetch_add(&rgpu_metrics.sessions_total, 1);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    err = pthread_create(&(pthread_t){0}, &attr, rgpu_session_main, session);
    pthread_attr_destroy(&attr);
    if (err != 0) {
        rgpu_error("session", "%s: cannot start its thread: %s", session->name, strerror(err));
        atomic_fetch_sub(&rgpu_metrics.sessions_active, 1);
        rgpu_session_sender_stop(session);
        status = RGPU_ERR_NOMEM;
        goto out_remove;
    }
    rgpu_debug("session", "%s: accepted", session->name);
    return RGPU_OK;

out_remove:
    rgpu_server_remove_session(server, session);
out_free:
    rgpu_link_close(link);
    session->link = NULL;
    rgpu_session_unref(session);
    return status;
}
