/*
 * Client core: one connection per rgpu-server, shared by every API the
 * client speaks (OpenCL now, CUDA later).
 *
 *   API call ──▶ rgpu_conn_post ──▶ send buffer ──(flush at sync points)──▶ link
 *   API call ──▶ rgpu_conn_call_start/wait ─────── flush + request ───────▶ link
 *                          the waiting caller (or the reader thread) ◀─ replies, notifications
 *
 * Asynchronous requests (no reply) are packed into a send buffer and leave at
 * the next flush: a sync call, rgpu_conn_flush, a buffer past its threshold
 * (1 KiB after a sync call, twice the last after each flush, up to 256 KiB),
 * or a bulk too large to copy. A flush sends the buffer's frames as batches
 * (several frames in one message of the transport, rgpu/wire.h). A bulk
 * larger than 64 KiB whose frame still fits the transport's eager limit is
 * sent straight from the caller's memory; a larger one goes by descriptor:
 * the memory is registered (through a registration cache) and the server
 * gets it from there, then says so (MSG_BULK_DONE) and the registration is
 * given back. A call whose reply may bring more bulk than fits a message
 * registers its destination, and the server puts the reply's bulk there.
 * Frames are received by a thread waiting for a reply, in its own call (no
 * hand-over between threads on the path of a synchronous call), or, while
 * nobody waits, by the connection's reader thread: replies complete their
 * call (bulk goes straight into the caller's destination), MSG_ASYNC_ERROR is
 * remembered as the connection's deferred error, other frames go to the
 * notify callback. When the link fails, every waiting and later call fails
 * with the reason, within the transport's timeouts.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef RGPU_CLIENT_CORE_H
#define RGPU_CLIENT_CORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"
#include "rgpu/transport.h"
#include "session.pb-c.h"

typedef struct rgpu_conn rgpu_conn_t;
typedef struct rgpu_call rgpu_call_t;

/* Called on the thread that received the call's reply (the reader thread or
 * any thread waiting on the connection) when the reply and its bulk arrived,
 * or the call failed. Must not block on the connection or take locks its
 * callers may hold. */
typedef void (*rgpu_call_done_fn)(rgpu_call_t *call);

/* A request that expects a reply. The caller owns the struct (stack or heap)
 * and must keep it alive until rgpu_conn_call_wait returns or done runs. */
struct rgpu_call {
    /* in: where the reply's bulk goes; a bulk longer than bulk_cap fails the call */
    void *bulk_dst;
    uint64_t bulk_cap;
    rgpu_call_done_fn done;     /* optional */
    void *arg;                  /* for done */
    int waited;                 /* the caller waits for it right away: no need
                                   to wake the reader thread (rgpu_conn_call sets it) */
    /* out, valid once complete: */
    rgpu_status_t status;       /* RGPU_OK or why no reply came */
    uint16_t reply_type;
    uint8_t *body;              /* reply body, freed by rgpu_call_cleanup */
    size_t body_len;
    uint64_t bulk_len;          /* bytes of reply bulk received into bulk_dst (in the reply
                                   itself, or in pieces ahead of it: MSG_BULK_PART) */
    /* private */
    uint64_t seq;
    int complete;
    rgpu_mem_t *reply_mem;      /* bulk_dst, registered for the server's puts */
    int replied;                /* the reply came; the request's MSG_BULK_DONE is due */
    int data_outstanding;       /* the request's bulk is lent by descriptor */
    rgpu_call_t *next;
};

/* Notifications (frames with seq 0 other than MSG_ASYNC_ERROR), on the
 * thread that received them. */
typedef void (*rgpu_conn_notify_fn)(void *arg, uint16_t type, const uint8_t *body, size_t len);

/* Says that the server will send notifications nobody waits for (event
 * callbacks): from now on the reader thread receives whenever no caller
 * does. Without it, frames that arrive while nobody waits stay in the
 * socket until the next call (replies of non-blocking calls excepted). */
void rgpu_conn_want_notifications(rgpu_conn_t *conn);

/* Connects to addr ("host:port"), sends hello and waits for the reply.
 * On success *conn_p is the connection and *reply_p the unpacked HelloReply
 * (free with rgpu__hello_reply__free_unpacked). On failure, reason holds a
 * sentence for the user. Returns link statuses, RGPU_ERR_REFUSED (the
 * server's SessionError reason is in reason) or RGPU_ERR_PROTOCOL. */
rgpu_status_t rgpu_conn_open(const char *addr, const Rgpu__Hello *hello, int timeout_ms,
                             rgpu_conn_notify_fn notify, void *notify_arg,
                             rgpu_conn_t **conn_p, Rgpu__HelloReply **reply_p,
                             char *reason, size_t reason_cap);

/* Says goodbye, stops the reader thread and frees the connection. Calls
 * still waiting fail with RGPU_ERR_CONN_CLOSED. */
void rgpu_conn_close(rgpu_conn_t *conn);

/* A new object id, unique within the connection's session. */
uint64_t rgpu_conn_new_id(rgpu_conn_t *conn);

/* The server's address as given to rgpu_conn_open. */
const char *rgpu_conn_addr(const rgpu_conn_t *conn);

/* RGPU_OK while the link works; else why it failed, with reason (if not
 * NULL) pointing at a sentence that stays valid until rgpu_conn_close. */
rgpu_status_t rgpu_conn_health(rgpu_conn_t *conn, const char **reason);

/* Queues an asynchronous request. The bulk is copied into the send buffer,
 * or sent, or (past the transport's eager limit) lent by descriptor and
 * taken by the server, before this returns: the caller may reuse it at once.
 * Returns RGPU_OK, RGPU_ERR_NOMEM, or the link's failure. */
rgpu_status_t rgpu_conn_post(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                             const void *bulk, uint64_t bulk_len);

/* Sends everything queued. */
rgpu_status_t rgpu_conn_flush(rgpu_conn_t *conn);

/* Sends a request (after everything queued) and registers call for its
 * reply. The caller fills bulk_dst/bulk_cap/done/arg first. A bulk past the
 * transport's eager limit is lent by descriptor: it must stay untouched
 * until the call completed (the call completes once its reply came and the
 * server gave the bulk back). A bulk_dst larger than fits a message is
 * registered until the call completes, and the server may write any of its
 * bulk_cap bytes. */
rgpu_status_t rgpu_conn_call_start(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                                   const void *bulk, uint64_t bulk_len, rgpu_call_t *call);

/* Waits until the call completed; returns call->status. */
rgpu_status_t rgpu_conn_call_wait(rgpu_conn_t *conn, rgpu_call_t *call);

/* Non-zero when the call completed (reply or failure). */
int rgpu_conn_call_done(rgpu_conn_t *conn, rgpu_call_t *call);

/* start + wait. */
rgpu_status_t rgpu_conn_call(rgpu_conn_t *conn, uint16_t type, const ProtobufCMessage *msg,
                             const void *bulk, uint64_t bulk_len, rgpu_call_t *call);

/* Frees what a completed call holds (its reply body). */
void rgpu_call_cleanup(rgpu_call_t *call);

/* Takes the first asynchronous error the server reported since the last
 * take: returns its API error code (0 if none) and logs what failed. */
int32_t rgpu_conn_take_deferred_error(rgpu_conn_t *conn);

/* RGPU_SYNC=1: every call waits for the server (debugging). */
int rgpu_conn_sync_mode(void);

#endif
