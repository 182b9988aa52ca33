/*
 * Sessions: one per client link, each on a thread of its own.
 *
 *   loop thread        accept ─▶ rgpu_session_start ─▶ (thread)
 *   session thread     hello ─▶ frame loop ─▶ teardown ─▶ unref
 *   sender thread      sends frames posted by API callbacks, in order
 *   API callbacks      rgpu_session_post (never the link directly)
 *
 * Sends are serialized by the session's send mutex: the session thread sends
 * replies directly (rgpu_session_send), the sender thread sends what was
 * posted, one whole frame at a time (a pipelined read's pieces are frames
 * of their own). Callbacks never take the send mutex, so a callback the
 * device runs never waits behind a session thread blocked on a slow client.
 *
 * A session is reference counted: its thread holds one reference, every
 * callback that may still run holds one. The last unref frees it.
 */
#ifndef RGPU_SERVER_SESSION_H
#define RGPU_SERVER_SESSION_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backend.h"
#include "config.h"
#include "rgpu/htable.h"
#include "rgpu/token.h"
#include "rgpu/transport.h"

/* Backends one server hosts (--backends): at most one per API family. */
#define RGPU_SERVER_MAX_BACKENDS 4

/* A backend the server opened: its ops and what its open made. */
typedef struct rgpu_server_backend {
    const rgpu_backend_ops_t *ops;
    rgpu_backend_t *backend;
} rgpu_server_backend_t;

/* The server as sessions see it: shared by the loop and every session. */
typedef struct rgpu_server {
    const rgpu_server_config_t *config;
    /* The backends serving sessions, set before the first session and
     * constant afterwards; the handshake picks by Hello.api. */
    rgpu_server_backend_t backends[RGPU_SERVER_MAX_BACKENDS];
    size_t n_backends;
    /* Per ApiFamily value (indexes 0..RGPU_SERVER_MAX_BACKENDS-1): why this
     * server does not serve that API ("libcuda.so.1 not found"), told to a
     * client asking for it; "" = not configured (--backends). */
    char absent[RGPU_SERVER_MAX_BACKENDS][160];
    char hostname[128];
    /* Lease checking (--key): NULL = every client is welcome. advertise is
     * the address lease tokens must name. Set before the first session. */
    const rgpu_token_key_t *lease_key;
    char advertise[256];
    /* Every address it listens on, with its scheme ("tcp://h:p",
     * "verbs://h:p"), for the registrar: clients choose among them; tokens
     * keep naming advertise. Set before the registrar starts. At most 127
     * characters each, as the scheduler takes them. */
    char endpoints[RGPU_SERVER_MAX_LISTEN][128];
    size_t n_endpoints;

    pthread_mutex_t lock;       /* protects what follows */
    pthread_cond_t idle;        /* signalled when a session leaves the list */
    rgpu_session_t *sessions;   /* running sessions, linked by next */
    int stopping;               /* no new sessions */
    /* Device memory held per lease, across all its sessions on this server:
     * one budget, whatever the number of sessions. */
    struct rgpu_lease_use *lease_uses;
    /* Leases that ended (released, expired, reclaimed): their tokens open no
     * session, even before they expire. Lease id -> unix second after which
     * no token of it can be valid anyway (the entry then goes). */
    rgpu_htable_t ended;
} rgpu_server_t;

/* Initializes the lock and list of a zeroed server. */
void rgpu_server_init(rgpu_server_t *server);
void rgpu_server_cleanup(rgpu_server_t *server);

/* Starts a session for link on a new thread; the session owns link from now
 * on, even on failure (then the link is closed). Loop thread. Returns
 * RGPU_ERR_NOMEM or RGPU_ERR_REFUSED (server stopping). */
rgpu_status_t rgpu_session_start(rgpu_server_t *server, rgpu_link_t *link);

/* Shuts down the link of every running session so their threads end, and
 * refuses new ones. Any thread. */
void rgpu_server_stop_sessions(rgpu_server_t *server);

/* A session as the server reports it to the scheduler. */
typedef struct rgpu_session_info {
    uint64_t id;
    char client_arch[32];
    char client_host[64];
    uint32_t client_pid;
    uint64_t lease_id;
    uint64_t memory;            /* bytes of device memory its buffers hold */
    int64_t started_unix;
} rgpu_session_info_t;

/* The sessions past their handshake, in *infos_p (caller frees); returns
 * how many. Any thread. */
size_t rgpu_server_sessions_snapshot(rgpu_server_t *server, rgpu_session_info_t **infos_p);

/* Milliseconds of CLOCK_MONOTONIC: the server's clock for deadlines and
 * for ordering events. */
uint64_t rgpu_server_clock_ms(void);

/* The scheduler's list of live leases of this server (ids[i] until
 * expires[i]), as answered to a heartbeat sent at asked_at_ms
 * (rgpu_server_clock_ms): sessions of leases it lists get the new expiry;
 * sessions of other leases that shook hands before asked_at_ms are ended
 * (released, expired, reclaimed). Any thread. */
void rgpu_server_leases_update(rgpu_server_t *server, const uint64_t *ids,
                               const int64_t *expires, size_t n, uint64_t asked_at_ms);

/* Leases the scheduler says have ended (released, reclaimed): their
 * sessions end, and their tokens are refused at the handshake from now on,
 * even before they expire. Any thread. */
void rgpu_server_leases_ended(rgpu_server_t *server, const uint64_t *ids, size_t n);

/* Ends the sessions whose lease expired by now (unix seconds), and the
 * connections that did not complete their handshake within the
 * configured hello_timeout: each gets a SessionError saying so, and its
 * objects and device memory are freed. Any thread; the server calls it
 * every second. */
void rgpu_server_expire_sessions(rgpu_server_t *server, int64_t now);

/* Waits until every session thread has finished, at most timeout_ms.
 * Returns the number of sessions still running. */
int rgpu_server_wait_sessions(rgpu_server_t *server, int timeout_ms);

/* ---- for backends ---------------------------------------------------- */

/* "session 3 (127.0.0.1:40112)", for logs. */
const char *rgpu_session_name(const rgpu_session_t *session);
const rgpu_server_config_t *rgpu_session_config(const rgpu_session_t *session);

void rgpu_session_ref(rgpu_session_t *session);
void rgpu_session_unref(rgpu_session_t *session);

/* ---- bulk data: pull and push ---------------------------------------
 *
 * A backend moves bulk data (buffer contents, images, program binaries)
 * only through this pair: rgpu_session_pull takes the bytes a request
 * carries, rgpu_session_push gives the bytes a reply carries. Where they
 * travel is the session layer's business, not the backend's: inline in the
 * link's frames (tcp today), or by the transport's get/put against memory
 * the client registered and described (large transfers; verbs). A backend
 * written against these two calls (OpenCL, CUDA) works unchanged on every
 * transport, and a transport needs no change in any backend.
 *
 * Failures in the middle of a transfer are statuses, never filler bytes: a
 * backend that cannot use the rest of a request's data simply stops pulling
 * (the session layer drops what it did not take once session_handle
 * returns), and a backend whose read fails after some pieces were pushed
 * stops pushing and says so in the reply.
 */

/* Copies the next len bytes of the bulk of the request being handled into
 * dst, in order: successive pulls take successive bytes. The request's
 * frame header says how many it carries (bulk_len); what the backend does not
 * pull is dropped after session_handle returns, so a refused request needs
 * no draining. Returns RGPU_OK, RGPU_ERR_INVALID_ARG (len past what is left:
 * a backend's bug, nothing is read) or a link status (the session ends).
 * May block while the client's data arrives. Session thread, inside
 * session_handle. */
rgpu_status_t rgpu_session_pull(rgpu_session_t *session, void *dst, uint64_t len);

/* Bytes of the current request's bulk not pulled yet. Session thread. */
uint64_t rgpu_session_pull_left(const rgpu_session_t *session);

/* Sends len bytes from src as the piece of the reply to request seq that
 * starts at offset: pieces go in order and without gaps (offset is the sum
 * of the earlier pieces' lengths), then the reply itself follows with
 * rgpu_session_send (no bulk) and carries the status. The client lands
 * each piece straight in the call's destination, so a large read leaves
 * the device chunk by chunk, each chunk sent from where it lies (a mapped
 * buffer) with no copy. src may be reused when this returns. Returns
 * RGPU_OK or a link status. Session thread (it may block while the client
 * is slow to read); other frames may go out between pieces. */
rgpu_status_t rgpu_session_push(rgpu_session_t *session, uint64_t seq, uint64_t offset,
                                const void *src, uint64_t len);

/* Sends one frame now, under the send mutex, with an optional bulk sent
 * straight from where it is (a reply whose data is whole: small reads).
 * Session thread (it may block while the client is slow to read). */
rgpu_status_t rgpu_session_send(rgpu_session_t *session, uint16_t type, uint64_t seq,
                                const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len);

/* Queues a frame for the sender thread; msg is packed now, bulk is sent
 * from where it is and then bulk_free(bulk_arg) runs (also when the frame is
 * dropped because the session is closing). Frames leave in the order they
 * were posted. Any thread; never blocks on the link. */
void rgpu_session_post(rgpu_session_t *session, uint16_t type, uint64_t seq,
                       const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len,
                       void (*bulk_free)(void *arg), void *bulk_arg);

/* Bytes of device memory the session's lease allows per device; 0 = no
 * quota. Set by the handshake, constant afterwards. Session thread. */
uint64_t rgpu_session_mem_quota(const rgpu_session_t *session);

/* Reserves bytes of device memory against the budget of the session's
 * lease on this server (its quota per device times the devices of this
 * server it names), shared by every session of the lease. Returns 0, or -1
 * when the budget does not allow it (nothing reserved then). Without a
 * quota it always succeeds. What a session still holds when it ends is
 * given back by the session layer. Session thread. */
int rgpu_session_mem_reserve(rgpu_session_t *session, uint64_t bytes);
/* Gives back bytes reserved by rgpu_session_mem_reserve. Session thread. */
void rgpu_session_mem_unreserve(rgpu_session_t *session, uint64_t bytes);

/* Non-zero when the session may use the device of that server index: any
 * device without --key, else the devices its lease names. Any thread. */
int rgpu_session_device_allowed(const rgpu_session_t *session, uint32_t index);

/* Counts bytes of device memory the session's live buffers hold (reported
 * to the scheduler with the session). Session thread. */
void rgpu_session_memory_add(rgpu_session_t *session, int64_t delta);

/* Non-zero once the session stopped talking to its client (teardown). */
int rgpu_session_closing(rgpu_session_t *session);

#endif
