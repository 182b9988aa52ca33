/*
 * rgpu-scheduler: hands out GPU leases for a whole cluster.
 *
 *   main thread (libuv loop)
 *     ├─ uv_poll on the listening socket ─▶ accept4 ─▶ one uv_tcp per peer
 *     │     (servers, rgpu CLI, Slurm plugin), at most --max-connections; an
 *     │     accept failing for want of descriptors pauses accepting 100 ms
 *     │     frames in ─▶ sched.c (policy.c picks, store.c commits) ─▶ reply frame out
 *     ├─ uv_timer, every second ─▶ rgpu_sched_tick: reclaim expired leases,
 *     │                             mark servers that stopped heartbeating down;
 *     │                             close peers silent for --idle-timeout
 *     ├─ uv_tcp metrics endpoint (--metrics, rgpu/metrics_http.h): GET ─▶ metrics.c
 *     └─ uv_signal SIGINT/SIGTERM ─▶ close everything, exit 0
 *
 * Everything runs on the loop thread; a request is committed to SQLite
 * before its reply is written, so a SIGKILL loses nothing acknowledged.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "rgpu/frame.h"
#include "rgpu/log.h"
#include "rgpu/metrics_http.h"
#include "rgpu/munge.h"
#include "rgpu/options.h"
#include "rgpu/systemd.h"
#include "rgpu/transport.h"
#include "rgpu/util.h"
#include "rgpu/wire.h"
#include "sched_core.h"
#include "sched_metrics.h"

int rgpu__sched_bench(int argc, char **argv);
int rgpu_slurm_reclaim_start(uv_loop_t *loop, rgpu_sched_t *sched, const char *interval);
void rgpu_slurm_reclaim_cleanup(void);                 /* slurm_jobs.c */

/* ---- configuration: one table ---- */

#ifndef RGPU_SYSCONFDIR
#define RGPU_SYSCONFDIR "/etc/rgpu"
#endif

typedef struct {
    char listen[256];
    char db[512];
    char key[512];
    uint64_t heartbeat_timeout;     /* seconds */
    uint64_t lease_ttl;             /* seconds */
    uint64_t max_lease_ttl;         /* seconds */
    uint64_t default_shared_mem;    /* bytes */
    uint64_t max_connections;
    uint64_t idle_timeout;          /* seconds */
    int log_level;                  /* rgpu_log_level_t */
    char slurm_reclaim[16];         /* seconds, "" off (slurm_jobs.c) */
    int auth;                       /* RGPU_SCFG_AUTH_*: what every request must carry */
    char munge_socket[512];         /* "" libmunge's default */
    char operators[1024];           /* uids or user names, comma-separated */
    char operator_group[64];
    char metrics[256];              /* "" off; else HOST:PORT of the Prometheus endpoint */
    int require_signed;             /* --require-signed: --auth key */
    rgpu_opt_state_t opt;           /* where each value came from */
} rgpu_sched_config_t;

static const char *const rgpu_sched_log_levels[] = {"error", "warn", "info", "debug", "trace",
                                                    NULL};
/* --auth, by index: main() maps them onto rgpu_sched_auth_t. */
enum { RGPU_SCFG_AUTH_NONE, RGPU_SCFG_AUTH_KEY, RGPU_SCFG_AUTH_MUNGE };
static const char *const rgpu_sched_auth_names[] = {"none", "key", "munge", NULL};

#define RGPU_SCFG_S(f) offsetof(rgpu_sched_config_t, f), sizeof(((rgpu_sched_config_t *)0)->f)
#define RGPU_SCFG_U64(f) offsetof(rgpu_sched_config_t, f), sizeof(uint64_t)
#define RGPU_SCFG_INT(f) offsetof(rgpu_sched_config_t, f), 0
/* Seconds: 1 s to a year; counts: 1 to a million; sizes: 1 byte to 1P. */
#define RGPU_SCFG_SECONDS 1, 31536000
#define RGPU_SCFG_COUNT 1, 1000000
#define RGPU_SCFG_SIZE 1, 1ull << 50

static const rgpu_opt_t rgpu_sched_cfg_rows[] = {
    {"listen", RGPU_OPT_ADDR, "127.0.0.1:7080", "ADDR:PORT",
     "address to accept servers and clients on; port 0 picks a free port", "RGPU_SCHED_LISTEN",
     NULL, RGPU_SCFG_S(listen), 0, 0, NULL, 0, NULL},
    {"db", RGPU_OPT_STRING, "rgpu-scheduler.db", "PATH",
     "SQLite database (WAL) holding servers and leases across restarts (under systemd: "
     "/var/lib/rgpu-scheduler/rgpu-scheduler.db)", "RGPU_SCHED_DB", NULL, RGPU_SCFG_S(db), 0, 0,
     NULL, 0, NULL},
    {"key", RGPU_OPT_STRING, "", "FILE",
     "cluster key file that signs lease tokens (32+ random bytes, mode 600; "
     "default: tokens are empty, for servers run without --key)",
     "RGPU_KEY", NULL, RGPU_SCFG_S(key), 0, 0, NULL, 0, NULL},
    {"heartbeat-timeout", RGPU_OPT_UINT, "15", "SECONDS",
     "a server silent this long is marked down with its GPUs",
     "RGPU_SCHED_HEARTBEAT_TIMEOUT", NULL, RGPU_SCFG_U64(heartbeat_timeout), RGPU_SCFG_SECONDS,
     NULL, 0, NULL},
    {"lease-ttl", RGPU_OPT_UINT, "86400", "SECONDS",
     "lifetime of a lease that is not renewed (requests may ask for less or more)",
     "RGPU_SCHED_LEASE_TTL", NULL, RGPU_SCFG_U64(lease_ttl), RGPU_SCFG_SECONDS, NULL, 0, NULL},
    {"max-lease-ttl", RGPU_OPT_UINT, "604800", "SECONDS",
     "the longest ttl an allocation or renewal may ask for (at least --lease-ttl); "
     "longer ones are refused",
     "RGPU_SCHED_MAX_LEASE_TTL", NULL, RGPU_SCFG_U64(max_lease_ttl), RGPU_SCFG_SECONDS, NULL, 0,
     NULL},
    {"default-shared-mem", RGPU_OPT_SIZE, "1G", "SIZE",
     "memory a shared allocation without a size reserves on each GPU (capped at the GPU's "
     "memory); it is the lease's quota",
     "RGPU_SCHED_DEFAULT_SHARED_MEM", NULL, RGPU_SCFG_U64(default_shared_mem), RGPU_SCFG_SIZE,
     NULL, 0, NULL},
    {"max-connections", RGPU_OPT_UINT, "1024", "N",
     "connections served at once; more are accepted and closed at once",
     "RGPU_SCHED_MAX_CONNECTIONS", NULL, RGPU_SCFG_U64(max_connections), RGPU_SCFG_COUNT, NULL,
     0, NULL},
    {"idle-timeout", RGPU_OPT_UINT, "30", "SECONDS",
     "a connection that completes no request for this long is closed",
     "RGPU_SCHED_IDLE_TIMEOUT", NULL, RGPU_SCFG_U64(idle_timeout), RGPU_SCFG_SECONDS, NULL, 0,
     NULL},
    {"log-level", RGPU_OPT_CHOICE, "info", "LEVEL", "error, warn, info, debug or trace",
     "RGPU_LOG", NULL, RGPU_SCFG_INT(log_level), 0, 0, rgpu_sched_log_levels, 0, NULL},
    {"slurm-reclaim", RGPU_OPT_STRING, "", "SECONDS",
     "every SECONDS, release leases of Slurm jobs that squeue no longer lists (default: off)",
     "RGPU_SCHED_SLURM_RECLAIM", NULL, RGPU_SCFG_S(slurm_reclaim), 0, 0, NULL, 0, NULL},
    {"auth", RGPU_OPT_CHOICE, "none", "none|key|munge",
     "what every request must carry: none (only servers, drains and job ids need the key), "
     "key (the cluster key's signature; as --require-signed), munge (a MUNGE credential of "
     "its user, or the key's signature; needs --key)",
     "RGPU_SCHED_AUTH", NULL, RGPU_SCFG_INT(auth), 0, 0, rgpu_sched_auth_names, 0, NULL},
    {"require-signed", RGPU_OPT_FLAG, "no", NULL,
     "refuse every request not signed with the cluster key (--auth key; needs --key)",
     NULL, NULL, RGPU_SCFG_INT(require_signed), 0, 0, NULL, 0, NULL},
    {"munge-socket", RGPU_OPT_STRING, "", "PATH",
     "munged's socket that decodes credentials (default: libmunge's, "
     "/run/munge/munge.socket.2)",
     "RGPU_MUNGE_SOCKET", NULL, RGPU_SCFG_S(munge_socket), 0, 0, NULL, 0, NULL},
    {"operators", RGPU_OPT_STRING, "", "UID,...",
     "with --auth munge, users (uids or names) who see every lease, release or renew any "
     "and drain/resume servers, as root does",
     "RGPU_SCHED_OPERATORS", NULL, RGPU_SCFG_S(operators), 0, 0, NULL, 0, NULL},
    {"operator-group", RGPU_OPT_STRING, "", "GROUP",
     "with --auth munge, members of GROUP (name or gid) are operators too",
     "RGPU_SCHED_OPERATOR_GROUP", NULL, RGPU_SCFG_S(operator_group), 0, 0, NULL, 0, NULL},
    {"metrics", RGPU_OPT_ADDR, "", "ADDR:PORT",
     "serve Prometheus metrics over HTTP on ADDR:PORT (docs/observability.md; default: off)",
     "RGPU_SCHED_METRICS", NULL, RGPU_SCFG_S(metrics), 0, 0, NULL, 0, NULL},
};

static const rgpu_opt_table_t rgpu_sched_options = {
    .program = "rgpu-scheduler",
    .man_section = 8,
    .summary = "hand out leases on a cluster's remote GPUs",
    .synopsis = "[OPTION]...\n       rgpu-scheduler --bench [SERVERS GPUS_PER_SERVER OPERATIONS [DB]]",
    .description =
        "rgpu-scheduler keeps the cluster's rgpu-servers and their GPUs (servers register and "
        "send heartbeats) and hands GPUs out as leases: the GPUs, an expiry and a token signed "
        "with the cluster key, which the servers check on their own. Its state lives in SQLite "
        "(WAL): a scheduler killed at any moment restarts with every lease and server it had. "
        "Expired leases, and those of Slurm jobs that are gone (--slurm-reclaim), are "
        "reclaimed.\n\n"
        "Once listening, it prints \"rgpu-scheduler listening on HOST:PORT\" on stdout (and "
        "tells systemd it is ready). SIGINT or SIGTERM close everything and exit 0.",
    .section = "scheduler",
    .config_file = RGPU_SYSCONFDIR "/scheduler.conf",
    .config_env = "RGPU_SCHEDULER_CONFIG",
    .conf_title = "rgpu-scheduler.conf",
    .opts = rgpu_sched_cfg_rows,
    .nopts = sizeof(rgpu_sched_cfg_rows) / sizeof(rgpu_sched_cfg_rows[0]),
    .extra_help = "  --bench                    measure allocations and releases per second, "
                  "then exit\n",
    .man_extra =
        ".SH EXIT STATUS\n0 after SIGINT or SIGTERM (or \\-\\-help and friends); 1 when it "
        "cannot start (an unreadable key or database, an address in use); 2 for a bad option, "
        "variable or configuration file.\n"
        ".SH EXAMPLES\n.nf\nrgpu\\-scheduler \\-\\-key /etc/rgpu/cluster.key \\-\\-listen "
        "0.0.0.0:7080 \\-\\-db /var/lib/rgpu\\-scheduler/rgpu\\-scheduler.db \\e\n"
        "    \\-\\-auth munge \\-\\-slurm\\-reclaim 60\n.fi\n",
};

static const char *rgpu_sched_getenv(const char *name)
{
    return getenv(name);
}

/* 0: run, 1: exit 0, 2: exit 2. */
static int rgpu_sched_cfg_load(rgpu_sched_config_t *cfg, int argc, char **argv)
{
    switch (rgpu_opt_load(&rgpu_sched_options, cfg, &cfg->opt, argc, argv, rgpu_sched_getenv, stdout,
                          stderr)) {
    case RGPU_OPT_RUN:
        break;
    case RGPU_OPT_EXIT_OK:
        return 1;
    case RGPU_OPT_EXIT_USAGE:
        return 2;
    }
    if (cfg->lease_ttl > cfg->max_lease_ttl) {
        fprintf(stderr, "rgpu-scheduler: --lease-ttl %llu is longer than --max-lease-ttl %llu\n",
                (unsigned long long)cfg->lease_ttl, (unsigned long long)cfg->max_lease_ttl);
        return 2;
    }
    if (cfg->require_signed) {
        if (cfg->auth != RGPU_SCFG_AUTH_NONE && cfg->auth != RGPU_SCFG_AUTH_KEY) {
            fprintf(stderr, "rgpu-scheduler: --require-signed is --auth key, not --auth munge\n");
            return 2;
        }
        cfg->auth = RGPU_SCFG_AUTH_KEY;
    }
    if (cfg->auth == RGPU_SCFG_AUTH_KEY && !cfg->key[0]) {
        fprintf(stderr, "rgpu-scheduler: --require-signed (--auth key) needs --key (the cluster "
                        "key that checks the signatures)\n");
        return 2;
    }
    if (cfg->auth == RGPU_SCFG_AUTH_MUNGE && !cfg->key[0]) {
        fprintf(stderr, "rgpu-scheduler: --auth munge needs --key (servers sign with it, and "
                        "lease tokens are worth nothing unsigned)\n");
        return 2;
    }
    if (cfg->auth == RGPU_SCFG_AUTH_MUNGE && !rgpu_munge_supported()) {
        fprintf(stderr, "rgpu-scheduler: --auth munge: this rgpu-scheduler was built without "
                        "MUNGE (RGPU_WITH_MUNGE=OFF; install libmunge-dev and rebuild)\n");
        return 2;
    }
    if (cfg->opt.print_config) {
        rgpu_opt_print(&rgpu_sched_options, cfg, &cfg->opt, stdout);
        return 1;
    }
    return 0;
}

/* ---- the daemon ---- */

#define RGPU_SCHED_MAX_BODY (16u << 20)
/* A signed request's time may be this far from ours. */
#define RGPU_SCHED_MAX_SKEW_S 60

/* Accepting stops this long after an accept failed for want of file
 * descriptors (or memory), instead of retrying at once in a loop. */
#define RGPU_SCHED_ACCEPT_PAUSE_MS 100
/* MUNGE credentials remembered at most (about 200 requests/s over munged's
 * default ttl of 300 s); past it munged's own replay check stands alone. */
#define RGPU_SCHED_MAX_REPLAY 65536

typedef enum {
    RGPU_SCHED_AUTH_NONE = 0,   /* users' requests need no proof (servers, drains, jobs: the key) */
    RGPU_SCHED_AUTH_KEY,        /* every request signed with the cluster key */
    RGPU_SCHED_AUTH_MUNGE,      /* every request: a MUNGE credential or the cluster key */
} rgpu_sched_auth_t;

typedef struct rgpu_sched_conn rgpu_sched_conn_t;

typedef struct {
    rgpu_sched_t sched;
    rgpu_token_key_t key;
    int have_key;
    int require_signed;         /* --auth key (kept for the harnesses that set it) */
    rgpu_sched_auth_t auth;
    const char *munge_socket;   /* NULL: libmunge's default */
    rgpu_sched_operators_t operators;
    rgpu_sched_replay_t replay; /* MUNGE credentials accepted, until they expire */
    uint64_t replay_logged_ms;
    size_t eager;               /* the peers' eager limit: a larger reply goes in fragments */
    int listen_fd;
    uv_poll_t acceptor;         /* readable listen_fd: accept */
    uv_timer_t accept_pause;    /* restarts the acceptor after a failed accept */
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    rgpu_metrics_http_t *metrics;   /* --metrics; NULL: off */
    int stopping;
    rgpu_sched_conn_t *conns;   /* every open connection (a list) */
    uint32_t nconns, max_conns;
    uint64_t idle_ms;
    uint64_t full_logged_ms, emfile_logged_ms;  /* rate limit of those warnings */
    unsigned full_dropped, emfile_failed;       /* since the last warning */
} rgpu_sched_daemon_t;

struct rgpu_sched_conn {
    uv_tcp_t tcp;
    rgpu_sched_daemon_t *daemon;
    rgpu_sched_conn_t *prev, *next;
    uint64_t active_ms;         /* uv_now at accept and at each complete request */
    uint8_t *buf;
    size_t len, cap;
    char peer[80];
};

typedef struct {
    uv_write_t req;
    uint8_t *buf;               /* the frame, then its fragments' headers if it has any */
} rgpu_sched_write_t;

static int64_t rgpu_sched_now(void)
{
    return (int64_t)time(NULL);
}

static void rgpu_sched_conn_closed(uv_handle_t *handle)
{
    rgpu_sched_conn_t *conn = handle->data;
    rgpu_sched_daemon_t *d = conn->daemon;

    if (conn->prev)
        conn->prev->next = conn->next;
    else
        d->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    d->nconns--;
    free(conn->buf);
    free(conn);
}

static void rgpu_sched_conn_close(rgpu_sched_conn_t *conn)
{
    if (!uv_is_closing((uv_handle_t *)&conn->tcp))
        uv_close((uv_handle_t *)&conn->tcp, rgpu_sched_conn_closed);
}

static void rgpu_sched_written(uv_write_t *req, int status)
{
    rgpu_sched_write_t *w = (rgpu_sched_write_t *)req;

    free(w->buf);
    free(w);
}

/* Writes a reply frame. signed (with a cluster key): its bulk part is the
 * auth trailer over type, seq and the body, as a request's (heartbeat
 * replies, which the registrar checks). A frame larger than the peers'
 * eager limit (a long lease or server list) goes as MSG_FRAGMENT pieces,
 * exactly as rgpu_wire_send_frame would send it: the peer receives through
 * rgpu_wire_recv, whose transport takes no larger message. */
static void rgpu_sched_reply_frame(rgpu_sched_conn_t *conn, uint16_t type, uint64_t seq,
                                   const ProtobufCMessage *msg, int sign)
{
    const size_t eager = conn->daemon->eager;
    const int sign_it = sign && conn->daemon->have_key;
    const size_t len = rgpu_frame_packed_size(msg) + (sign_it ? RGPU_REQUEST_AUTH_LEN : 0);
    rgpu_sched_write_t *w = malloc(sizeof(*w));
    size_t npieces = 0, packed, off;
    uv_buf_t one, *bufs = &one;
    unsigned nbufs = 1;
    uint8_t *heads, head[RGPU_FRAME_HEADER_SIZE];

    for (off = 0; len > eager && off < len; npieces++)
        off += rgpu_wire_fragment_head(len, off, eager, head);
    /* The frame, then its fragments' headers. */
    if (!w || !(w->buf = malloc(len + npieces * RGPU_FRAME_HEADER_SIZE)))
        goto out_nomem;
    packed = rgpu_frame_pack(w->buf, type, seq, 0, msg, sign_it ? RGPU_REQUEST_AUTH_LEN : 0);
    if (sign_it)
        rgpu_token_sign_request(&conn->daemon->key, type, (uint32_t)seq,
                                w->buf + RGPU_FRAME_HEADER_SIZE, packed - RGPU_FRAME_HEADER_SIZE,
                                rgpu_sched_now(), w->buf + packed);
    one = uv_buf_init((char *)w->buf, (unsigned)len);
    if (npieces) {
        heads = w->buf + len;
        bufs = malloc(2 * npieces * sizeof(*bufs));
        if (!bufs)
            goto out_nomem;
        for (off = 0, nbufs = 0; off < len; heads += RGPU_FRAME_HEADER_SIZE) {
            size_t piece = rgpu_wire_fragment_head(len, off, eager, heads);

            bufs[nbufs++] = uv_buf_init((char *)heads, RGPU_FRAME_HEADER_SIZE);
            bufs[nbufs++] = uv_buf_init((char *)w->buf + off, (unsigned)piece);
            off += piece;
        }
    }
    /* uv_write copies the array of buffers, not what they point at. */
    if (uv_write(&w->req, (uv_stream_t *)&conn->tcp, bufs, nbufs, rgpu_sched_written) != 0) {
        if (bufs != &one)
            free(bufs);
        free(w->buf);
        free(w);
        rgpu_sched_conn_close(conn);
        return;
    }
    if (bufs != &one)
        free(bufs);
    return;

out_nomem:
    if (w)
        free(w->buf);
    free(w);
    rgpu_sched_conn_close(conn);
}

static void rgpu_sched_reply(rgpu_sched_conn_t *conn, uint16_t type, uint64_t seq,
                             const ProtobufCMessage *msg)
{
    rgpu_sched_reply_frame(conn, type, seq, msg, 0);
}

static void rgpu_sched_status_reply(rgpu_sched_conn_t *conn, uint64_t seq, rgpu_status_t status,
                                    const char *reason)
{
    Rgpu__SchedStatus reply = RGPU__SCHED_STATUS__INIT;

    reply.status = status;
    reply.reason = (char *)(status == RGPU_OK ? "" : reason);
    rgpu_sched_reply(conn, RGPU__MSG_TYPE__MSG_SCHED_STATUS, seq, &reply.base);
}

static void rgpu_sched_lease_reply(rgpu_sched_conn_t *conn, uint64_t seq, rgpu_status_t status,
                                   const char *reason, const Rgpu__Lease *lease)
{
    Rgpu__LeaseReply reply = RGPU__LEASE_REPLY__INIT;

    reply.status = status;
    reply.reason = (char *)(status == RGPU_OK ? "" : reason);
    if (status == RGPU_OK)
        reply.lease = (Rgpu__Lease *)lease;
    rgpu_sched_reply(conn, RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, seq, &reply.base);
}

#define RGPU_UNPACK(msgtype, fn)                                                                  \
    msgtype *msg = fn(NULL, header->body_len, body);                                              \
    if (!msg) {                                                                                \
        rgpu_warn("sched", "%s: message type %u does not unpack; closing", conn->peer,         \
                  header->type);                                                               \
        return -1;                                                                             \
    }

static const char *rgpu_sched_type_name(uint16_t type)
{
    switch (type) {
    case RGPU__MSG_TYPE__MSG_SCHED_REGISTER: return "register";
    case RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT: return "heartbeat";
    case RGPU__MSG_TYPE__MSG_SCHED_ALLOC: return "alloc";
    case RGPU__MSG_TYPE__MSG_SCHED_RENEW: return "renew";
    case RGPU__MSG_TYPE__MSG_SCHED_RELEASE: return "release";
    case RGPU__MSG_TYPE__MSG_SCHED_LIST: return "list";
    case RGPU__MSG_TYPE__MSG_SCHED_DRAIN: return "drain";
    default: return "request";
    }
}

/* Non-zero at most once a second (per *last_ms): rate-limited warnings. */
static int rgpu_sched_ratelimit(uint64_t *last_ms, uint64_t now_ms)
{
    if (*last_ms && now_ms - *last_ms < 1000)
        return 0;
    *last_ms = now_ms;
    return 1;
}

/* What a request needs besides its type's general rule. */
typedef enum {
    RGPU_SCHED_NEED_USER = 0,   /* alloc, renew, release by id, list */
    RGPU_SCHED_NEED_KEY,        /* register, heartbeat: GPU servers hold the key */
    RGPU_SCHED_NEED_ADMIN,      /* drain, resume: the key, root or an operator */
    RGPU_SCHED_NEED_JOB,        /* naming a Slurm job: the key or root */
} rgpu_sched_need_t;

/* Who sent this frame, and may they send it (docs/scheduler.md,
 * "Authentication"). auth is the frame's bulk part (auth_len bytes; NULL
 * when none): the cluster key's trailer (40 bytes) or a MUNGE credential.
 * A trailer that is there is always checked (with a key); a credential is
 * read only with --auth munge. Without a key and with --auth none nothing
 * can be checked and everything is allowed. 0: allowed, *c says who (ANON
 * for no proof); -1: refused, reason says why (logged). */
static int rgpu_sched_identify(rgpu_sched_conn_t *conn, const rgpu_frame_header_t *header,
                               const uint8_t *body, const uint8_t *auth, size_t auth_len,
                               rgpu_sched_need_t need, int64_t now, rgpu_sched_caller_t *c,
                               char *reason, size_t cap)
{
    rgpu_sched_daemon_t *d = conn->daemon;
    const char *what = rgpu_sched_type_name(header->type);
    rgpu_sched_auth_t mode = d->require_signed ? RGPU_SCHED_AUTH_KEY : d->auth;
    char why[400], who[128];

    memset(c, 0, sizeof(*c));
    if (!d->have_key && mode == RGPU_SCHED_AUTH_NONE)
        return 0;
    if (auth && auth_len == RGPU_REQUEST_AUTH_LEN) {
        if (rgpu_token_verify_request(&d->key, header->type, (uint32_t)header->seq, body,
                                      header->body_len, auth, now, RGPU_SCHED_MAX_SKEW_S, why,
                                      sizeof(why)) != RGPU_OK) {
            snprintf(reason, cap, "%s refused: %s", what, why);
            goto out_refuse;
        }
        c->how = RGPU_SCHED_CALLER_KEY;
        c->admin = 1;
    } else if (auth && mode == RGPU_SCHED_AUTH_MUNGE) {
        rgpu_munge_identity_t id;
        rgpu_status_t st;

        st = rgpu_munge_decode_request(d->munge_socket, header->type, (uint32_t)header->seq, body,
                                       header->body_len, auth, auth_len, &id, why, sizeof(why));
        if (st != RGPU_OK) {
            snprintf(reason, cap, "%s refused: %s", what, why);
            if (st == RGPU_ERR_CONN_REFUSED)
                rgpu_error("sched", "%s: %s", conn->peer, reason);
            goto out_refuse;
        }
        st = rgpu_sched_replay_check(&d->replay, auth, auth_len,
                                     id.encoded_unix + (int64_t)id.ttl_s, now);
        if (st == RGPU_ERR_EXISTS) {
            snprintf(reason, cap, "%s refused: the MUNGE credential was used before (a replay)",
                     what);
            goto out_refuse;
        }
        if (st != RGPU_OK &&
            rgpu_sched_ratelimit(&d->replay_logged_ms, uv_now(conn->tcp.loop)))
            rgpu_warn("sched", "%zu MUNGE credentials remembered: new ones are not (munged "
                               "still refuses replays)", d->replay.seen.count);
        rgpu_sched_caller_munge(c, &d->operators, id.uid, id.gid);
    }
    /* (A credential sent to a scheduler without --auth munge is not read.) */
    rgpu_sched_caller_describe(c, who, sizeof(who));
    if (mode == RGPU_SCHED_AUTH_KEY && c->how != RGPU_SCHED_CALLER_KEY) {
        snprintf(reason, cap, "request not signed: %s needs the cluster key (rgpu-scheduler "
                              "--auth key)", what);
        goto out_refuse;
    }
    if (mode == RGPU_SCHED_AUTH_MUNGE && c->how == RGPU_SCHED_CALLER_ANON) {
        snprintf(reason, cap, "request not authenticated: %s needs a MUNGE credential or the "
                              "cluster key (rgpu-scheduler --auth munge)", what);
        goto out_refuse;
    }
    switch (need) {
    case RGPU_SCHED_NEED_KEY:
        if (c->how == RGPU_SCHED_CALLER_KEY || !d->have_key)
            return 0;
        snprintf(reason, cap, "request not signed: %s needs the cluster key", what);
        goto out_refuse;
    case RGPU_SCHED_NEED_ADMIN:
        if (c->how == RGPU_SCHED_CALLER_KEY || (c->how == RGPU_SCHED_CALLER_MUNGE && c->admin))
            return 0;
        if (c->how == RGPU_SCHED_CALLER_MUNGE)
            snprintf(reason, cap, "%s refused: %s is not root or an operator (rgpu-scheduler "
                                  "--operators, --operator-group)", what, who);
        else
            snprintf(reason, cap, "request not signed: %s needs the cluster key", what);
        goto out_refuse;
    case RGPU_SCHED_NEED_JOB:
        if (c->how == RGPU_SCHED_CALLER_KEY || (c->how == RGPU_SCHED_CALLER_MUNGE && c->uid == 0))
            return 0;
        if (c->how == RGPU_SCHED_CALLER_MUNGE)
            snprintf(reason, cap, "%s refused: naming a Slurm job needs the cluster key or root, "
                                  "not %s", what, who);
        else
            snprintf(reason, cap, "request not signed: %s needs the cluster key", what);
        goto out_refuse;
    default:
        return 0;
    }
out_refuse:
    rgpu_warn("sched", "%s: %s", conn->peer, reason);
    return -1;
}

/* A renew or release of lease id by a caller who did not sign with the
 * key: allowed when the caller owns the lease (MUNGE: its uid, root, an
 * operator) or token is one of its unexpired tokens. An unknown lease is
 * let through (sched.c says "no lease N"). 0: allowed; -1: refused, reason
 * says why (logged). */
static int rgpu_sched_may_manage(rgpu_sched_conn_t *conn, const rgpu_sched_caller_t *c,
                                 const char *what, uint64_t id, const char *token, int64_t now,
                                 char *reason, size_t cap)
{
    rgpu_sched_daemon_t *d = conn->daemon;
    const rgpu_sched_lease_t *lease = rgpu_htable_find(&d->sched.leases, id);
    char why[200], who[128];

    if (c->how == RGPU_SCHED_CALLER_KEY)
        return 0;
    if (c->how == RGPU_SCHED_CALLER_MUNGE && (!lease || rgpu_sched_caller_owns(c, lease->pb)))
        return 0;
    if (rgpu_sched_check_token(&d->sched, id, token, now, why, sizeof(why)) == RGPU_OK)
        return 0;
    if (c->how == RGPU_SCHED_CALLER_MUNGE) {
        rgpu_sched_caller_describe(c, who, sizeof(who));
        if (lease->pb->owner_known)
            snprintf(reason, cap, "%s refused: lease %llu belongs to %s (uid %u), not to %s; "
                                  "give its token (--token) or ask root or an operator",
                     what, (unsigned long long)id, *lease->pb->user ? lease->pb->user : "?",
                     lease->pb->owner_uid, who);
        else
            snprintf(reason, cap, "%s refused: lease %llu has no known owner, and %s is not "
                                  "root or an operator; give its token (--token)",
                     what, (unsigned long long)id, who);
    } else {
        snprintf(reason, cap, "%s refused: %s", what, why);
    }
    rgpu_warn("sched", "%s: %s", conn->peer, reason);
    return -1;
}

/* Handles one frame; auth: its bulk part (auth_len bytes: the key's
 * trailer or a MUNGE credential), NULL when none. -1: close the connection. */
static int rgpu_sched_handle(rgpu_sched_conn_t *conn, const rgpu_frame_header_t *header,
                             const uint8_t *body, const uint8_t *auth, size_t auth_len)
{
    rgpu_sched_daemon_t *d = conn->daemon;
    rgpu_sched_t *s = &d->sched;
    const Rgpu__Lease *lease = NULL;
    rgpu_sched_caller_t caller;
    char reason[512] = "";
    rgpu_status_t status;
    int64_t now = rgpu_sched_now();

#define RGPU_IDENTIFY(need, cleanup, refuse)                                                     \
    if (rgpu_sched_identify(conn, header, body, auth, auth_len, need, now, &caller, reason,    \
                            sizeof(reason)) < 0) {                                             \
        cleanup;                                                                               \
        refuse;                                                                                \
        return 0;                                                                              \
    }

    switch (header->type) {
    case RGPU__MSG_TYPE__MSG_SCHED_REGISTER: {
        RGPU_IDENTIFY(RGPU_SCHED_NEED_KEY, (void)0,
                      rgpu_sched_status_reply(conn, header->seq, RGPU_ERR_REFUSED, reason));
        RGPU_UNPACK(Rgpu__RegisterServer, rgpu__register_server__unpack);
        status = rgpu_sched_register(s, msg, now, reason, sizeof(reason));
        rgpu__register_server__free_unpacked(msg, NULL);
        rgpu_sched_status_reply(conn, header->seq, status, reason);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT: {
        Rgpu__HeartbeatReply reply = RGPU__HEARTBEAT_REPLY__INIT;
        uint64_t nonce;

        /* Every reply is signed (with a key) and echoes the heartbeat's
         * nonce, so the server can tell it comes from us and answers this
         * heartbeat, not an older one. */
        RGPU_UNPACK(Rgpu__Heartbeat, rgpu__heartbeat__unpack);
        nonce = reply.nonce = msg->nonce;
        RGPU_IDENTIFY(RGPU_SCHED_NEED_KEY, rgpu__heartbeat__free_unpacked(msg, NULL), {
            reply.status = RGPU_ERR_REFUSED;
            reply.reason = reason;
            rgpu_sched_reply_frame(conn, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY, header->seq,
                                   &reply.base, 1);
        });
        status = rgpu_sched_heartbeat(s, msg, now, &reply);
        if (status == RGPU_ERR_NOT_FOUND)
            snprintf(reason, sizeof(reason), "unknown server %s: register again", msg->address);
        else if (status != RGPU_OK)
            snprintf(reason, sizeof(reason), "%s", rgpu_status_str(status));
        rgpu__heartbeat__free_unpacked(msg, NULL);
        reply.nonce = nonce;    /* rgpu_sched_heartbeat initialized the reply */
        reply.status = status;
        reply.reason = status == RGPU_OK ? (char *)"" : reason;
        rgpu_sched_reply_frame(conn, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY, header->seq,
                               &reply.base, 1);
        if (status == RGPU_OK)
            rgpu_sched_heartbeat_reply_free(&reply);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_ALLOC: {
        char *sent_user;

        RGPU_UNPACK(Rgpu__AllocRequest, rgpu__alloc_request__unpack);
        RGPU_IDENTIFY(msg->slurm_job_id[0] ? RGPU_SCHED_NEED_JOB : RGPU_SCHED_NEED_USER,
                      rgpu__alloc_request__free_unpacked(msg, NULL), {
                          rgpu_sched_metrics_alloc(RGPU_ERR_REFUSED);
                          rgpu_sched_lease_reply(conn, header->seq, RGPU_ERR_REFUSED, reason, NULL);
                      });
        /* The owner: a user's credential names them, whatever the request
         * says; root and the key may name anyone (the Slurm plugin: the
         * job's user); nobody else can claim one. (msg->user is restored
         * before the message is freed: it owns its strings.) */
        sent_user = msg->user;
        if (caller.how == RGPU_SCHED_CALLER_MUNGE && (caller.uid != 0 || !msg->uid_set)) {
            if (caller.uid != 0 || !*msg->user)
                msg->user = caller.name;
            msg->uid = caller.uid;
            msg->uid_set = 1;
        } else if (caller.how == RGPU_SCHED_CALLER_ANON) {
            msg->uid_set = 0;
        }
        status = rgpu_sched_alloc(s, msg, now, &lease, reason, sizeof(reason));
        rgpu_sched_metrics_alloc(status);
        if (status == RGPU_OK)
            rgpu_info("sched", "%s: lease %llu: %zu GPUs for user \"%s\"%s job \"%s\"",
                      conn->peer, (unsigned long long)lease->id, lease->n_gpus, lease->user,
                      caller.how == RGPU_SCHED_CALLER_MUNGE ? " (MUNGE)" : "",
                      msg->slurm_job_id);
        else
            rgpu_info("sched", "%s: allocation refused: %s", conn->peer, reason);
        msg->user = sent_user;
        rgpu__alloc_request__free_unpacked(msg, NULL);
        rgpu_sched_lease_reply(conn, header->seq, status, reason, lease);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_RENEW: {
        RGPU_UNPACK(Rgpu__RenewRequest, rgpu__renew_request__unpack);
        RGPU_IDENTIFY(RGPU_SCHED_NEED_USER, rgpu__renew_request__free_unpacked(msg, NULL),
                      rgpu_sched_lease_reply(conn, header->seq, RGPU_ERR_REFUSED, reason, NULL));
        /* Not signed: the caller owns the lease (MUNGE) or holds one of its tokens. */
        if (rgpu_sched_may_manage(conn, &caller, "renew", msg->lease_id, msg->token, now, reason,
                                  sizeof(reason)) != 0) {
            rgpu__renew_request__free_unpacked(msg, NULL);
            rgpu_sched_lease_reply(conn, header->seq, RGPU_ERR_REFUSED, reason, NULL);
            return 0;
        }
        status = rgpu_sched_renew(s, msg->lease_id, msg->ttl_s, now, &lease, reason,
                                  sizeof(reason));
        rgpu_sched_metrics.renewals_total += status == RGPU_OK;
        rgpu__renew_request__free_unpacked(msg, NULL);
        rgpu_sched_lease_reply(conn, header->seq, status, reason, lease);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_RELEASE: {
        RGPU_UNPACK(Rgpu__ReleaseRequest, rgpu__release_request__unpack);
        /* By job id: the key or root. By lease id: as renew. */
        RGPU_IDENTIFY(msg->lease_id == 0 && msg->slurm_job_id[0] ? RGPU_SCHED_NEED_JOB
                                                                  : RGPU_SCHED_NEED_USER,
                      rgpu__release_request__free_unpacked(msg, NULL),
                      rgpu_sched_status_reply(conn, header->seq, RGPU_ERR_REFUSED, reason));
        if (msg->lease_id && rgpu_sched_may_manage(conn, &caller, "release", msg->lease_id,
                                                   msg->token, now, reason,
                                                   sizeof(reason)) != 0) {
            rgpu__release_request__free_unpacked(msg, NULL);
            rgpu_sched_status_reply(conn, header->seq, RGPU_ERR_REFUSED, reason);
            return 0;
        }
        status = rgpu_sched_release(s, msg->lease_id, msg->slurm_job_id, reason, sizeof(reason));
        rgpu_sched_metrics.lease_ends_total[RGPU_SCHED_END_RELEASED] += status == RGPU_OK;
        if (status == RGPU_OK)
            rgpu_info("sched", "%s: released lease %llu%s%s", conn->peer,
                      (unsigned long long)msg->lease_id, *msg->slurm_job_id ? " of job " : "",
                      msg->slurm_job_id);
        rgpu__release_request__free_unpacked(msg, NULL);
        rgpu_sched_status_reply(conn, header->seq, status, reason);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_LIST: {
        Rgpu__ListReply reply;
        char who[128];

        RGPU_IDENTIFY(RGPU_SCHED_NEED_USER, (void)0, {
            rgpu__list_reply__init(&reply);
            reply.status = RGPU_ERR_REFUSED;
            reply.reason = reason;
            rgpu_sched_reply(conn, RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY, header->seq, &reply.base);
        });
        /* Only --auth munge knows users: the others list everything, as before. */
        status = rgpu_sched_list_as(s, now, d->auth == RGPU_SCHED_AUTH_MUNGE ? &caller : NULL,
                                    &reply);
        if (status != RGPU_OK) {
            rgpu__list_reply__init(&reply);
            reply.status = status;
            reply.reason = (char *)"out of memory";
            rgpu_sched_reply(conn, RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY, header->seq, &reply.base);
            return 0;
        }
        rgpu_sched_caller_describe(&caller, who, sizeof(who));
        reply.caller = who;
        rgpu_sched_reply(conn, RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY, header->seq, &reply.base);
        rgpu_sched_list_free(&reply);
        return 0;
    }
    case RGPU__MSG_TYPE__MSG_SCHED_DRAIN: {
        RGPU_IDENTIFY(RGPU_SCHED_NEED_ADMIN, (void)0,
                      rgpu_sched_status_reply(conn, header->seq, RGPU_ERR_REFUSED, reason));
        RGPU_UNPACK(Rgpu__DrainRequest, rgpu__drain_request__unpack);
        status = rgpu_sched_drain(s, msg->address, msg->drain, reason, sizeof(reason));
        rgpu__drain_request__free_unpacked(msg, NULL);
        rgpu_sched_status_reply(conn, header->seq, status, reason);
        return 0;
    }
    default:
        rgpu_warn("sched", "%s: unknown message type %u; closing", conn->peer, header->type);
        return -1;
    }
#undef RGPU_IDENTIFY
}

static void rgpu_sched_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    rgpu_sched_conn_t *conn = handle->data;

    if (conn->cap - conn->len < 65536) {
        size_t cap = conn->cap ? conn->cap * 2 : 131072;
        uint8_t *grown = realloc(conn->buf, cap);

        if (!grown) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        conn->buf = grown;
        conn->cap = cap;
    }
    *buf = uv_buf_init((char *)conn->buf + conn->len, (unsigned)(conn->cap - conn->len));
}

static void rgpu_sched_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    rgpu_sched_conn_t *conn = stream->data;
    /* The only bulk a request may carry is its proof: the key's trailer or a
     * MUNGE credential. */
    rgpu_frame_limits_t limits = {RGPU_SCHED_MAX_BODY, RGPU_MUNGE_CRED_MAX};
    size_t off = 0;

    if (nread < 0) {
        if (nread != UV_EOF)
            rgpu_debug("sched", "%s: %s", conn->peer, uv_strerror((int)nread));
        rgpu_sched_conn_close(conn);
        return;
    }
    conn->len += (size_t)nread;
    while (conn->len - off >= RGPU_FRAME_HEADER_SIZE) {
        rgpu_frame_header_t header;
        const uint8_t *body;
        size_t frame_len;
        rgpu_status_t status = rgpu_frame_header_decode(conn->buf + off, &limits, &header);

        if (status != RGPU_OK) {
            rgpu_warn("sched", "%s: %s; closing", conn->peer, rgpu_status_str(status));
            rgpu_sched_conn_close(conn);
            return;
        }
        if (header.bulk_len != 0 && header.bulk_len != RGPU_REQUEST_AUTH_LEN &&
            header.bulk_len <= RGPU_REQUEST_AUTH_LEN) {
            rgpu_warn("sched", "%s: a bulk part of %llu bytes is not an auth trailer; closing",
                      conn->peer, (unsigned long long)header.bulk_len);
            rgpu_sched_conn_close(conn);
            return;
        }
        frame_len = RGPU_FRAME_HEADER_SIZE + (size_t)header.body_len + (size_t)header.bulk_len;
        if (conn->len - off < frame_len)
            break;
        body = conn->buf + off + RGPU_FRAME_HEADER_SIZE;
        conn->active_ms = uv_now(stream->loop);
        if (header.bulk_len > RGPU_REQUEST_AUTH_LEN &&
            !rgpu_munge_is_cred(body + header.body_len, (size_t)header.bulk_len)) {
            rgpu_warn("sched", "%s: a bulk part of %llu bytes is neither an auth trailer nor a "
                               "MUNGE credential; closing",
                      conn->peer, (unsigned long long)header.bulk_len);
            rgpu_sched_conn_close(conn);
            return;
        }
        uint64_t start_ns = rgpu_metrics_now_ns();
        int handled = rgpu_sched_handle(conn, &header, body,
                                        header.bulk_len ? body + header.body_len : NULL,
                                        (size_t)header.bulk_len);

        rgpu_sched_metrics_request(header.type, start_ns);
        if (handled != 0) {
            rgpu_sched_conn_close(conn);
            return;
        }
        off += frame_len;
    }
    memmove(conn->buf, conn->buf + off, conn->len - off);
    conn->len -= off;
}


static void rgpu_sched_conn_open(rgpu_sched_daemon_t *daemon, int fd)
{
    rgpu_sched_conn_t *conn = calloc(1, sizeof(*conn));
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (!conn) {
        close(fd);
        return;
    }
    conn->daemon = daemon;
    uv_tcp_init(daemon->acceptor.loop, &conn->tcp);
    conn->tcp.data = conn;
    conn->active_ms = uv_now(daemon->acceptor.loop);
    conn->next = daemon->conns;
    if (daemon->conns)
        daemon->conns->prev = conn;
    daemon->conns = conn;
    daemon->nconns++;
    if (uv_tcp_open(&conn->tcp, fd) != 0) {
        close(fd);
        rgpu_sched_conn_close(conn);
        return;
    }
    strcpy(conn->peer, "?");
    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char host[64] = "";

        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
            snprintf(conn->peer, sizeof(conn->peer), "[%s]:%u", host,
                     ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
            snprintf(conn->peer, sizeof(conn->peer), "%s:%u", host,
                     ntohs(((struct sockaddr_in *)&ss)->sin_port));
        }
    }
    if (uv_read_start((uv_stream_t *)&conn->tcp, rgpu_sched_alloc_cb, rgpu_sched_read_cb) != 0)
        rgpu_sched_conn_close(conn);
}

static void rgpu_sched_on_acceptable(uv_poll_t *poll, int status, int events);

static void rgpu_sched_accept_resume(uv_timer_t *timer)
{
    rgpu_sched_daemon_t *daemon = timer->data;

    if (!daemon->stopping)
        uv_poll_start(&daemon->acceptor, UV_READABLE, rgpu_sched_on_acceptable);
}

/* Accepts what is pending (64 at most per wakeup: the loop serves the
 * others in between). Past --max-connections a connection is closed at
 * once. Out of descriptors or memory, accept fails at once again on the
 * same pending connection: accepting pauses RGPU_SCHED_ACCEPT_PAUSE_MS
 * instead of spinning, and the warnings say so at most once a second. */
static void rgpu_sched_on_acceptable(uv_poll_t *poll, int status, int events)
{
    rgpu_sched_daemon_t *daemon = poll->data;
    uint64_t now_ms = uv_now(poll->loop);

    (void)events;
    if (status < 0) {
        rgpu_warn("sched", "listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < 64; i++) {
        int fd = accept4(daemon->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            int err = errno;

            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            daemon->emfile_failed++;
            if (rgpu_sched_ratelimit(&daemon->emfile_logged_ms, now_ms)) {
                rgpu_warn("sched", "cannot accept connections: %s (%u times since the last "
                                   "warning); pausing accepts for %d ms",
                          strerror(err), daemon->emfile_failed, RGPU_SCHED_ACCEPT_PAUSE_MS);
                daemon->emfile_failed = 0;
            }
            uv_poll_stop(&daemon->acceptor);
            uv_timer_start(&daemon->accept_pause, rgpu_sched_accept_resume,
                           RGPU_SCHED_ACCEPT_PAUSE_MS, 0);
            return;
        }
        if (daemon->nconns >= daemon->max_conns) {
            close(fd);
            daemon->full_dropped++;
            rgpu_sched_metrics.connections_refused_total++;
            if (rgpu_sched_ratelimit(&daemon->full_logged_ms, now_ms)) {
                rgpu_warn("sched", "%u connections open (--max-connections): closed %u new "
                                   "ones since the last warning",
                          daemon->nconns, daemon->full_dropped);
                daemon->full_dropped = 0;
            }
            continue;
        }
        rgpu_sched_conn_open(daemon, fd);
    }
}

static void rgpu_sched_on_tick(uv_timer_t *timer)
{
    rgpu_sched_daemon_t *daemon = timer->data;
    uint64_t now_ms = uv_now(timer->loop);

    rgpu_sched_metrics.lease_ends_total[RGPU_SCHED_END_EXPIRED] +=
        rgpu_sched_tick(&daemon->sched, rgpu_sched_now());
    rgpu_sched_replay_prune(&daemon->replay, rgpu_sched_now());
    /* A peer that completes no request for --idle-timeout (silent, or
     * trickling a partial frame) gives its connection and buffer back. */
    for (rgpu_sched_conn_t *c = daemon->conns; c; c = c->next) {
        if (now_ms - c->active_ms > daemon->idle_ms && !uv_is_closing((uv_handle_t *)&c->tcp)) {
            rgpu_info("sched", "%s: no complete request for %llu s%s; closing", c->peer,
                      (unsigned long long)(daemon->idle_ms / 1000),
                      c->len ? " (a partial one buffered)" : "");
            rgpu_sched_conn_close(c);
        }
    }
}

static void rgpu_sched_close_walk(uv_handle_t *handle, void *arg)
{
    if (uv_is_closing(handle))
        return;
    if (handle->type == UV_TCP && handle->data != arg)
        uv_close(handle, rgpu_sched_conn_closed);   /* a peer connection */
    else
        uv_close(handle, NULL);
}

static void rgpu_sched_on_signal(uv_signal_t *handle, int signum)
{
    rgpu_sched_daemon_t *daemon = handle->data;

    if (daemon->stopping)
        return;
    daemon->stopping = 1;
    rgpu_info("sched", "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    /* First: the walk would take the endpoint's connections for peers. */
    rgpu_metrics_http_stop(daemon->metrics);
    daemon->metrics = NULL;
    uv_walk(handle->loop, rgpu_sched_close_walk, daemon);
}

/* The endpoint's format callback: the state's gauges and the counters. */
static void rgpu_sched_format_metrics(rgpu_prom_t *out, void *arg)
{
    rgpu_sched_daemon_t *daemon = arg;

    rgpu_sched_metrics.connections = daemon->nconns;
    rgpu_sched_metrics_format(out, &daemon->sched);
}

/* Opens the listening socket (non-blocking, close-on-exec): the acceptor
 * polls it itself, so that it can pause. -1 on error (logged). */
static int rgpu_sched_bind(const char *addr, char *local, size_t cap)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd, one = 1;

    memset(&ss, 0, sizeof(ss));
    rgpu_addr_split(addr, host, sizeof(host), &port);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0) {
        rgpu_error("sched", "cannot listen on %s: not a numeric IPv4 or IPv6 address", addr);
        return -1;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rgpu_error("sched", "cannot listen on %s: socket: %m", addr);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                                  : sizeof(struct sockaddr_in)) != 0 ||
        listen(fd, 128) != 0) {
        rgpu_error("sched", "cannot listen on %s: %m", addr);
        close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
        snprintf(local, cap, "[%s]:%u", host, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
        snprintf(local, cap, "%s:%u", host, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    return fd;
}

int main(int argc, char **argv)
{
    static rgpu_sched_daemon_t daemon;
    rgpu_sched_config_t cfg;
    rgpu_sched_store_t *store;
    uv_loop_t *loop = uv_default_loop();
    char why[600], local[300];
    int rc;

    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        return rgpu__sched_bench(argc - 1, argv + 1);
    rc = rgpu_sched_cfg_load(&cfg, argc, argv);
    if (rc)
        return rc == 1 ? 0 : 2;
    rgpu_log_init("rgpu-scheduler", (rgpu_log_level_t)cfg.log_level);
    /* The table already applied RGPU_LOG and --log-level in order. */
    rgpu_log_level = (rgpu_log_level_t)cfg.log_level;
    rgpu_log_journal_attach();

    if (cfg.key[0] &&
        rgpu_token_key_load(cfg.key, &daemon.key, why, sizeof(why)) != RGPU_OK) {
        rgpu_error("sched", "%s", why);
        return 1;
    }
    if (!cfg.key[0])
        rgpu_warn("sched", "no --key: leases carry no signed token and requests are not "
                           "authenticated (servers must run without --key)");
    daemon.have_key = cfg.key[0] != 0;
    daemon.auth = cfg.auth == RGPU_SCFG_AUTH_MUNGE ? RGPU_SCHED_AUTH_MUNGE
                  : cfg.auth == RGPU_SCFG_AUTH_KEY ? RGPU_SCHED_AUTH_KEY
                                                   : RGPU_SCHED_AUTH_NONE;
    daemon.munge_socket = cfg.munge_socket[0] ? cfg.munge_socket : NULL;
    if (rgpu_sched_operators_parse(&daemon.operators, cfg.operators, cfg.operator_group, why,
                                   sizeof(why)) != 0) {
        rgpu_error("sched", "%s", why);
        return 2;
    }
    if ((daemon.operators.nuids || daemon.operators.have_group) &&
        daemon.auth != RGPU_SCHED_AUTH_MUNGE)
        rgpu_warn("sched", "--operators and --operator-group matter only with --auth munge");
    rgpu_sched_replay_init(&daemon.replay, RGPU_SCHED_MAX_REPLAY);
    if (daemon.auth == RGPU_SCHED_AUTH_MUNGE)
        rgpu_info("sched", "users authenticated by MUNGE (munged at %s); %zu operator uids%s%s",
                  daemon.munge_socket ? daemon.munge_socket : "libmunge's default socket",
                  daemon.operators.nuids, daemon.operators.have_group ? ", operator group " : "",
                  daemon.operators.group);
    daemon.max_conns = (uint32_t)cfg.max_connections;
    daemon.idle_ms = cfg.idle_timeout * 1000;
    if (rgpu_sched_store_open(cfg.db, &store, why, sizeof(why)) != RGPU_OK) {
        rgpu_error("sched", "%s", why);
        return 1;
    }
    if (rgpu_sched_init(&daemon.sched, store, cfg.key[0] ? &daemon.key : NULL,
                        (uint32_t)cfg.lease_ttl, (uint32_t)cfg.heartbeat_timeout,
                        rgpu_sched_now()) != RGPU_OK) {
        rgpu_error("sched", "cannot load the state from %s", cfg.db);
        rgpu_sched_cleanup(&daemon.sched);
        return 1;
    }
    daemon.sched.max_lease_ttl_s = (uint32_t)cfg.max_lease_ttl;
    daemon.sched.default_shared_mem = cfg.default_shared_mem;
    rgpu_info("sched", "state from %s: %u servers, %zu leases", cfg.db, daemon.sched.nservers,
              daemon.sched.leases.count);

    if (rgpu_slurm_reclaim_start(loop, &daemon.sched, cfg.slurm_reclaim) != 0) {
        rgpu_sched_cleanup(&daemon.sched);
        return 2;
    }
    {
        /* The peers (registrars, the CLI, the Slurm plugin) receive through
         * rgpu's TCP transport: its eager limit is theirs. */
        rgpu_transport_t *tcp;

        if (rgpu_transport_open("tcp", &tcp) != RGPU_OK) {
            rgpu_error("sched", "cannot open the TCP transport to learn its limits");
            rgpu_slurm_reclaim_cleanup();
            rgpu_sched_cleanup(&daemon.sched);
            return 1;
        }
        daemon.eager = rgpu_transport_caps(tcp)->max_eager;
        rgpu_transport_close(tcp);
    }
    daemon.listen_fd = rgpu_sched_bind(cfg.listen, local, sizeof(local));
    if (daemon.listen_fd < 0) {
        uv_walk(loop, rgpu_sched_close_walk, &daemon);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        rgpu_slurm_reclaim_cleanup();
        rgpu_sched_cleanup(&daemon.sched);
        return 1;
    }
    uv_poll_init_socket(loop, &daemon.acceptor, daemon.listen_fd);
    daemon.acceptor.data = &daemon;
    uv_poll_start(&daemon.acceptor, UV_READABLE, rgpu_sched_on_acceptable);
    uv_timer_init(loop, &daemon.accept_pause);
    daemon.accept_pause.data = &daemon;
    uv_timer_init(loop, &daemon.tick);
    daemon.tick.data = &daemon;
    uv_timer_start(&daemon.tick, rgpu_sched_on_tick, 1000, 1000);
    uv_signal_init(loop, &daemon.sigint);
    uv_signal_init(loop, &daemon.sigterm);
    daemon.sigint.data = daemon.sigterm.data = &daemon;
    uv_signal_start(&daemon.sigint, rgpu_sched_on_signal, SIGINT);
    uv_signal_start(&daemon.sigterm, rgpu_sched_on_signal, SIGTERM);
    if (cfg.metrics[0]) {
        char metrics_local[300];

        if (rgpu_metrics_http_start(loop, cfg.metrics, rgpu_sched_format_metrics, &daemon,
                                    &daemon.metrics, metrics_local,
                                    sizeof(metrics_local)) != RGPU_OK) {
            rgpu_error("sched", "cannot serve metrics on %s", cfg.metrics);
            uv_walk(loop, rgpu_sched_close_walk, &daemon);
            uv_run(loop, UV_RUN_DEFAULT);
            uv_loop_close(loop);
            close(daemon.listen_fd);
            rgpu_slurm_reclaim_cleanup();
            rgpu_sched_cleanup(&daemon.sched);
            rgpu_sched_replay_cleanup(&daemon.replay);
            rgpu_sched_operators_free(&daemon.operators);
            return 1;
        }
        /* Before the listening line: scripts that read that line find this one. */
        printf("rgpu-scheduler metrics on %s\n", metrics_local);
        rgpu_info("sched", "metrics on http://%s/metrics", metrics_local);
    }

    printf("rgpu-scheduler listening on %s\n", local);
    fflush(stdout);
    rgpu_info("sched", "listening on %s", local);
    /* Type=notify units start what depends on the scheduler (servers on the
     * same host, for one) only now, when it accepts requests. */
    rgpu_notify_ready();
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    close(daemon.listen_fd);
    rgpu_slurm_reclaim_cleanup();
    rgpu_sched_cleanup(&daemon.sched);
    rgpu_sched_replay_cleanup(&daemon.replay);
    rgpu_sched_operators_free(&daemon.operators);
    return 0;
}
