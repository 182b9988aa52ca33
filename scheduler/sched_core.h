/*
 * The scheduler's state and operations, private to scheduler/ (rgpu__ and
 * rgpu_sched_ names). The daemon (main.c) and the unit tests drive it; it
 * never touches the network.
 *
 *   main.c ─ frames ─▶ rgpu_sched_{register,heartbeat,alloc,renew,release,list,drain}
 *                           │ policy.c picks GPUs        │ store.c persists (SQLite, WAL)
 *   uv_timer ─────────▶ rgpu_sched_tick: expired leases reclaimed, silent servers down
 *
 * Ownership: the state owns every server's Rgpu__RegisterServer and every
 * lease's Rgpu__Lease (both unpacked copies, freed with free_unpacked).
 * Replies built from them borrow their strings. Single-threaded: the loop
 * thread (or the test) is the only caller.
 */
#ifndef RGPU_SCHED_CORE_H
#define RGPU_SCHED_CORE_H

#include <stdint.h>

#include "rgpu/htable.h"
#include "rgpu/status.h"
#include "rgpu/token.h"
#include "scheduler.pb-c.h"

typedef struct rgpu_sched_store rgpu_sched_store_t;

typedef struct {
    uint64_t exclusive;     /* id of the exclusive lease holding it; 0: none */
    uint32_t shared;        /* shared leases holding it */
    uint64_t reserved;      /* bytes those shared leases reserved */
} rgpu_sched_gpu_use_t;

/* A lease that ended (released, reclaimed) while a token of it may still
 * be unexpired: its servers are told in their heartbeat replies. */
typedef struct {
    uint64_t id;
    int64_t until;              /* its tokens' latest expiry */
} rgpu_sched_ended_t;

/* At most this many ended leases are kept per server (the oldest go first:
 * their sessions still end when the lease is no longer listed). */
#define RGPU_SCHED_MAX_ENDED 16384
/* A server registers at most this many GPUs. */
#define RGPU_SCHED_MAX_GPUS_PER_SERVER 4096
/* An allocation asks for at most this many GPUs. */
#define RGPU_SCHED_MAX_COUNT 4096
/* A server registers at most this many endpoints (rgpu-server listens on
 * at most 8 addresses), each at most this long: they travel in every
 * token of its leases, which clients read from the environment. */
#define RGPU_SCHED_MAX_ENDPOINTS 8
#define RGPU_SCHED_MAX_ENDPOINT_LEN 127
/* Defaults of the scheduler's options (docs/scheduler.md). */
#define RGPU_SCHED_DEFAULT_SHARED_MEM (1ull << 30)
#define RGPU_SCHED_DEFAULT_MAX_TTL_S (7u * 86400)

typedef struct {
    Rgpu__RegisterServer *reg;  /* owned: address, GPUs */
    rgpu_sched_gpu_use_t *use;  /* reg->n_gpus entries */
    uint32_t nfree;             /* GPUs no lease holds (exclusive or shared): the policy's
                                 * free count for plain exclusive requests, no GPU scan */
    uint32_t apis_all;          /* bit 1 << ApiFamily: APIs every one of its GPUs serves */
    int up;
    int drained;
    int64_t last_seen;          /* unix seconds of the last register/heartbeat */
    Rgpu__Heartbeat *hb;        /* owned: its last heartbeat (sessions); NULL: none yet.
                                 * Memory only: the next heartbeat refreshes it. */
    rgpu_sched_ended_t *ended;  /* leases of its GPUs that ended, oldest first; memory only */
    uint32_t nended, ended_cap;
} rgpu_sched_server_t;

typedef struct {
    Rgpu__Lease *pb;            /* owned */
    uint32_t *server;           /* per GPU: index in servers; UINT32_MAX: server unknown */
    uint32_t *pos;              /* per GPU: position in that server's reg->gpus */
} rgpu_sched_lease_t;

typedef struct {
    rgpu_sched_server_t *servers;
    uint32_t nservers, servers_cap;
    rgpu_htable_t leases;       /* id -> rgpu_sched_lease_t* */
    rgpu_htable_t by_address;   /* FNV-1a of the address -> server index + 1 */
    rgpu_sched_store_t *store;  /* NULL: in memory only (tests, bench) */
    const rgpu_token_key_t *key;
    uint32_t lease_ttl_s;
    uint32_t max_lease_ttl_s;   /* a request's or renewal's ttl may not exceed it */
    uint64_t default_shared_mem;/* reserved per GPU by a shared request without memory
                                 * (capped at the GPU's memory); the lease's quota */
    uint32_t heartbeat_timeout_s;
    uint64_t next_lease_id;     /* used when store is NULL */
    uint32_t *scratch;          /* policy's work space, nservers entries */
    uint32_t *scratch2;
} rgpu_sched_t;

/* Initializes s; with store (may be NULL) loads everything it holds. The
 * store is owned by s from now on. RGPU_ERR_IO when loading failed.
 * max_lease_ttl_s starts at RGPU_SCHED_DEFAULT_MAX_TTL_S (or lease_ttl_s when
 * larger) and default_shared_mem at RGPU_SCHED_DEFAULT_SHARED_MEM; the
 * caller may change both after init. */
rgpu_status_t rgpu_sched_init(rgpu_sched_t *s, rgpu_sched_store_t *store,
                              const rgpu_token_key_t *key, uint32_t lease_ttl_s,
                              uint32_t heartbeat_timeout_s, int64_t now);
void rgpu_sched_cleanup(rgpu_sched_t *s);

/* Each fills reason (one sentence) on error. */
rgpu_status_t rgpu_sched_register(rgpu_sched_t *s, const Rgpu__RegisterServer *reg, int64_t now,
                                  char *reason, size_t cap);
/* Keeps hb's sessions for the listing. RGPU_ERR_NOT_FOUND: unknown server,
 * register again. With reply (may be NULL), on success fills reply->leases
 * with every lease alive that names a GPU of that server and its expiry,
 * and reply->ended_leases with the leases of its GPUs that ended while a
 * token of theirs is unexpired; free it with rgpu_sched_heartbeat_reply_free.
 * (Signing the reply and echoing hb->nonce is the daemon's.) */
rgpu_status_t rgpu_sched_heartbeat(rgpu_sched_t *s, const Rgpu__Heartbeat *hb, int64_t now,
                                   Rgpu__HeartbeatReply *reply);
void rgpu_sched_heartbeat_reply_free(Rgpu__HeartbeatReply *reply);
/* On success *lease_p is borrowed from the state (valid until the next call). */
rgpu_status_t rgpu_sched_alloc(rgpu_sched_t *s, const Rgpu__AllocRequest *req, int64_t now,
                               const Rgpu__Lease **lease_p, char *reason, size_t cap);
/* Alloc and renew refuse (RGPU_ERR_INVALID_ARG) a ttl above max_lease_ttl_s,
 * a count outside 1..RGPU_SCHED_MAX_COUNT, and a shared memory larger than
 * every GPU has. */
rgpu_status_t rgpu_sched_renew(rgpu_sched_t *s, uint64_t id, uint32_t ttl_s, int64_t now,
                               const Rgpu__Lease **lease_p, char *reason, size_t cap);
/* Proof of holding lease id for a renew or release that is not signed with
 * the cluster key: token must be an unexpired token of that lease, signed
 * with the cluster key. RGPU_OK when it is (or when s has no key: nothing
 * can be checked); else RGPU_ERR_REFUSED with the reason. Says nothing about
 * whether the lease still exists. */
rgpu_status_t rgpu_sched_check_token(rgpu_sched_t *s, uint64_t id, const char *token, int64_t now,
                                     char *reason, size_t cap);
/* By id, or by job id when id is 0. RGPU_ERR_NOT_FOUND when nothing matched. */
rgpu_status_t rgpu_sched_release(rgpu_sched_t *s, uint64_t id, const char *job, char *reason,
                                 size_t cap);
rgpu_status_t rgpu_sched_drain(rgpu_sched_t *s, const char *address, int drain, char *reason,
                               size_t cap);
/* Fills reply (status 0); free it with rgpu_sched_list_free (it borrows).
 * Its leases carry no token: a token goes only to its holder. */
rgpu_status_t rgpu_sched_list(rgpu_sched_t *s, int64_t now, Rgpu__ListReply *reply);
void rgpu_sched_list_free(Rgpu__ListReply *reply);
/* ---- auth.c: who is asking (docs/scheduler.md, "Authentication") ---- */

typedef enum {
    RGPU_SCHED_CALLER_ANON = 0,     /* no proof (or --auth none: credentials are not read) */
    RGPU_SCHED_CALLER_KEY,          /* signed with the cluster key */
    RGPU_SCHED_CALLER_MUNGE,        /* a MUNGE credential bound to the request */
} rgpu_sched_caller_how_t;

typedef struct {
    rgpu_sched_caller_how_t how;
    uint32_t uid, gid;              /* MUNGE only */
    int admin;                      /* the key, root or an operator: every lease, drain */
    char name[64];                  /* MUNGE: the uid's user name, or "uid N" */
} rgpu_sched_caller_t;

/* Operators: --operators UID|NAME,... and --operator-group NAME. */
typedef struct {
    uint32_t *uids;
    size_t nuids;
    int have_group;
    uint32_t gid;
    char group[64];
} rgpu_sched_operators_t;

/* Parses list (may be NULL or "": none; uids or user names, comma-separated)
 * and group (may be NULL or ""; a group name or gid). -1 with why when a
 * name is unknown or a number malformed. ops is zeroed first; free it with
 * rgpu_sched_operators_free. */
int rgpu_sched_operators_parse(rgpu_sched_operators_t *ops, const char *list, const char *group,
                               char *why, size_t cap);
void rgpu_sched_operators_free(rgpu_sched_operators_t *ops);
/* Non-zero when uid is listed, gid is the group's, or user name (may be
 * NULL) is a member of the group (its supplementary members). */
int rgpu_sched_is_operator(const rgpu_sched_operators_t *ops, uint32_t uid, uint32_t gid,
                           const char *name);
/* Fills c for a MUNGE credential of uid/gid: its name from the user
 * database ("uid N" when unknown), admin when root or an operator. */
void rgpu_sched_caller_munge(rgpu_sched_caller_t *c, const rgpu_sched_operators_t *ops,
                             uint32_t uid, uint32_t gid);
/* "nobody (uid 65534, MUNGE)", "the cluster key", "anyone (not authenticated)". */
void rgpu_sched_caller_describe(const rgpu_sched_caller_t *c, char *out, size_t cap);
/* Non-zero when c may see, renew and release lease without its token: an
 * admin, or a MUNGE caller whose uid owns it. */
int rgpu_sched_caller_owns(const rgpu_sched_caller_t *c, const Rgpu__Lease *lease);
/* rgpu_sched_list as c sees it: NULL or an admin see everything; others
 * see their own leases only (rgpu_sched_caller_owns), and only those in
 * GpuState.leases and among ServerState.sessions. reply->everything says
 * which; reply->caller is left to the caller. */
rgpu_status_t rgpu_sched_list_as(rgpu_sched_t *s, int64_t now, const rgpu_sched_caller_t *c,
                                 Rgpu__ListReply *reply);

/* Credentials accepted, remembered until they expire: one credential serves
 * one request, even if munged forgot it (a restart). At most max kept. */
typedef struct {
    rgpu_htable_t seen;             /* BLAKE2b of the credential (64 bits) -> expiry */
    size_t max;
} rgpu_sched_replay_t;

void rgpu_sched_replay_init(rgpu_sched_replay_t *r, size_t max);
void rgpu_sched_replay_cleanup(rgpu_sched_replay_t *r);
/* RGPU_OK: first seen, remembered until expires_unix; RGPU_ERR_EXISTS: seen
 * before and not expired (a replay); RGPU_ERR_NOMEM: not remembered (max
 * unexpired ones kept, or no memory): the caller decides. */
rgpu_status_t rgpu_sched_replay_check(rgpu_sched_replay_t *r, const void *cred, size_t len,
                                      int64_t expires_unix, int64_t now);
/* Forgets credentials expired at now. Returns how many. */
size_t rgpu_sched_replay_prune(rgpu_sched_replay_t *r, int64_t now);

/* Reclaims expired leases, marks silent servers down. Returns leases reclaimed. */
unsigned rgpu_sched_tick(rgpu_sched_t *s, int64_t now);

/* ---- policy.c ---- */
/* Picks req->count GPUs; writes (server, pos) pairs. RGPU_ERR_NOT_FOUND
 * with reason when the request cannot be met now. */
rgpu_status_t rgpu__sched_pick(rgpu_sched_t *s, const Rgpu__AllocRequest *req, uint32_t *server,
                               uint32_t *pos, char *reason, size_t cap);
/* Bytes a shared request reserves on a GPU of gpu_memory bytes: its memory,
 * or without one s->default_shared_mem capped at the GPU's memory. */
uint64_t rgpu__policy_shared_need(const rgpu_sched_t *s, const Rgpu__AllocRequest *req,
                                  uint64_t gpu_memory);
/* Bit 1 << ApiFamily for each API every GPU of reg serves (a GPU listing
 * none serves OpenCL: servers before CUDA). */
uint32_t rgpu__policy_apis_all(const Rgpu__RegisterServer *reg);

/* ---- endpoints and APIs (sched.c) ---- */
/* Gives reg (an unpacked message, owned by the caller) the one endpoint of
 * a server that predates RegisterServer.endpoints: "<transport>://<address>"
 * ("tcp" when transport is empty). Nothing when it has endpoints. */
rgpu_status_t rgpu__sched_endpoints_default(Rgpu__RegisterServer *reg);
/* The API a request asks for: API_NONE means OpenCL, as before CUDA. */
Rgpu__ApiFamily rgpu__sched_api(Rgpu__ApiFamily api);
/* "OpenCL", "CUDA": for reasons users read. */
const char *rgpu__sched_api_name(Rgpu__ApiFamily api);

/* ---- store.c: SQLite (WAL) ---- */
/* The store's schema version (PRAGMA user_version). 0: before versions
 * (leases without api, servers without endpoints); opening migrates. */
#define RGPU_SCHED_STORE_VERSION 1
rgpu_status_t rgpu_sched_store_open(const char *path, rgpu_sched_store_t **store_p, char *why,
                                    size_t cap);
void rgpu_sched_store_close(rgpu_sched_store_t *store);
rgpu_status_t rgpu__store_put_server(rgpu_sched_store_t *store, const Rgpu__RegisterServer *reg,
                                     int drained);
rgpu_status_t rgpu__store_put_lease(rgpu_sched_store_t *store, const Rgpu__Lease *lease);
rgpu_status_t rgpu__store_del_lease(rgpu_sched_store_t *store, uint64_t id);
/* One transaction around several changes (an allocation: its id and its
 * lease). end commits (commit != 0) or rolls back. */
rgpu_status_t rgpu__store_begin(rgpu_sched_store_t *store);
rgpu_status_t rgpu__store_end(rgpu_sched_store_t *store, int commit);
/* Next lease id: one past every id ever handed out (kept in the store). */
rgpu_status_t rgpu__store_next_id(rgpu_sched_store_t *store, uint64_t *id_p);
/* Calls server_fn for each stored server and lease_fn for each lease; the
 * callee owns the unpacked message. */
rgpu_status_t rgpu__store_load(rgpu_sched_store_t *store, void *arg,
                               void (*server_fn)(void *arg, Rgpu__RegisterServer *reg, int drained),
                               void (*lease_fn)(void *arg, Rgpu__Lease *lease));

#endif
