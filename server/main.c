/*
 * rgpu-server: serves this node's GPUs to rgpu clients.
 *
 *   main thread (libuv loop)
 *     ├─ uv_poll on each listener (--listen, repeatable) ─▶ accept ─▶ rgpu_session_start
 *     │                                                     ─▶ session thread
 *     │    past --max-sessions: SessionError "server full", close
 *     │    accept failed (EMFILE...): stop polling, uv_timer resumes it later
 *     ├─ uv_signal SIGINT/SIGTERM ─▶ stop accepting, shut every session down
 *     └─ uv_tcp metrics endpoint (--metrics)
 *
 * The loop never runs GPU calls: each session executes its calls in order
 * on its own thread, so a long kernel or a blocking wait in one session
 * stalls neither the loop nor the other sessions.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "backend.h"
#include "config.h"
#include "metrics.h"
#include "registrar.h"
#include "rgpu/log.h"
#include "rgpu/systemd.h"
#include "rgpu/transport.h"
#include "rgpu/wire.h"
#include "session.h"
#include "session.pb-c.h"

/* How long shutdown waits for sessions to release their objects. */
#define RGPU_SERVER_SHUTDOWN_WAIT_MS 30000
/* After a failed accept (out of descriptors: the pending connection stays in
 * the backlog and the listener stays readable), how long to stop polling. */
#define RGPU_SERVER_ACCEPT_PAUSE_MS 200
/* Connections accepted per wakeup of the loop, so signals and metrics still
 * get their turn under a connection flood. */
#define RGPU_SERVER_ACCEPT_BATCH 64
/* Repeated warnings (refusals, accept errors) at most once per this. */
#define RGPU_SERVER_WARN_INTERVAL_MS 1000

/* A warning that repeats under load: logged at most once per interval, with
 * how many were left unsaid since the last one. */
typedef struct {
    uint64_t last_ms;           /* uv_now of the last line; 0 = never */
    unsigned long suppressed;
} rgpu_ratelimit_t;

typedef struct rgpu_daemon rgpu_daemon_t;

/* One per --listen address: a TCP port and a verbs port at once, say. */
typedef struct {
    rgpu_listener_t *listener;
    uv_poll_t poll;                 /* .data: this struct */
    rgpu_daemon_t *daemon;
} rgpu_daemon_listen_t;

struct rgpu_daemon {
    rgpu_server_t server;
    rgpu_daemon_listen_t listen[RGPU_SERVER_MAX_LISTEN];
    int nlisten;
    uv_signal_t sigint, sigterm;
    rgpu_metrics_server_t *metrics;
    rgpu_registrar_t *registrar;    /* --scheduler */
    rgpu_token_key_t key;           /* --key */
    uv_timer_t lease_timer;         /* ends expired leases' sessions and late handshakes */
    int lease_timer_on;
    uv_timer_t accept_timer;        /* resumes accepting after a failed accept */
    rgpu_ratelimit_t full_warn, accept_warn;
    int stopping;
};

static const char *rgpu_daemon_getenv(const char *name)
{
    return getenv(name);
}

/* Returns 1 when the warning may be logged now (and *suppressed_p says how
 * many were not since the last one), 0 when it is to be counted only. */
static int rgpu_ratelimit_pass(rgpu_ratelimit_t *rl, uint64_t now_ms, unsigned long *suppressed_p)
{
    if (rl->last_ms && now_ms - rl->last_ms < RGPU_SERVER_WARN_INTERVAL_MS) {
        rl->suppressed++;
        return 0;
    }
    *suppressed_p = rl->suppressed;
    rl->suppressed = 0;
    rl->last_ms = now_ms ? now_ms : 1;
    return 1;
}

/* Every backend this binary has, by the name --backends uses. The CUDA
 * ones load nothing until opened: "cuda" dlopens the driver, so one binary
 * serves nodes with and without CUDA. */
static const rgpu_backend_ops_t *const rgpu_daemon_known_backends[] = {
    &rgpu_backend_opencl_ops,
    &rgpu_backend_cuda_ops,
    &rgpu_backend_cuda_emulated_ops,
};

#define RGPU_DAEMON_N_KNOWN \
    (sizeof(rgpu_daemon_known_backends) / sizeof(rgpu_daemon_known_backends[0]))

/* Opens the backends --backends names, in its order. One whose library or
 * devices are missing is skipped with a log line, and a client asking for
 * its API is told why (server->absent). Returns 0 when at least one backend
 * serves, -1 (logged) when the list is wrong or nothing can be served. */
static int rgpu_daemon_open_backends(rgpu_server_t *server, const rgpu_server_config_t *config)
{
    char list[sizeof(config->backends)], *save = NULL;

    snprintf(list, sizeof(list), "%s", config->backends);
    for (char *name = strtok_r(list, ", ", &save); name; name = strtok_r(NULL, ", ", &save)) {
        const rgpu_backend_ops_t *ops = NULL;
        rgpu_backend_t *backend = NULL;
        const char *why;
        rgpu_status_t status;

        for (size_t k = 0; k < RGPU_DAEMON_N_KNOWN && !ops; k++)
            if (strcmp(rgpu_daemon_known_backends[k]->name, name) == 0)
                ops = rgpu_daemon_known_backends[k];
        if (!ops) {
            rgpu_error("server", "--backends: unknown backend \"%s\" (known: opencl, cuda, "
                       "cuda-emulated)", name);
            return -1;
        }
        if ((size_t)ops->api >= RGPU_SERVER_MAX_BACKENDS)
            return -1;
        for (size_t i = 0; i < server->n_backends; i++) {
            if (server->backends[i].ops->api == ops->api) {
                rgpu_error("server", "--backends names two %s backends (%s and %s): choose one",
                           rgpu_api_name(ops->api), server->backends[i].ops->name, ops->name);
                return -1;
            }
        }
        if (server->absent[ops->api][0]) {
            rgpu_error("server", "--backends names two %s backends: choose one",
                       rgpu_api_name(ops->api));
            return -1;
        }
        status = ops->open(config, &backend);
        if (status != RGPU_OK) {
            why = ops->open_failure ? ops->open_failure() : NULL;
            if (!why || !*why)
                why = "no usable devices were found (see the server's log)";
            snprintf(server->absent[ops->api], sizeof(server->absent[ops->api]), "%s", why);
            rgpu_info("server", "not serving %s (backend %s): %s", rgpu_api_name(ops->api),
                      ops->name, why);
            continue;
        }
        server->backends[server->n_backends].ops = ops;
        server->backends[server->n_backends].backend = backend;
        server->n_backends++;
        rgpu_info("server", "serving %s with backend %s: %s", rgpu_api_name(ops->api), ops->name,
                  ops->describe(backend));
    }
    if (!server->n_backends) {
        rgpu_error("server", "nothing to serve: no backend of --backends %s found devices",
                   config->backends);
        return -1;
    }
    return 0;
}

/* Closes what rgpu_daemon_open_backends opened, last first. */
static void rgpu_daemon_close_backends(rgpu_server_t *server)
{
    while (server->n_backends) {
        rgpu_server_backend_t *b = &server->backends[--server->n_backends];

        b->ops->close(b->backend);
    }
}

static void rgpu_daemon_on_accept(uv_poll_t *poll, int status, int events);

static void rgpu_daemon_on_accept_timer(uv_timer_t *timer)
{
    rgpu_daemon_t *daemon = timer->data;

    for (int i = 0; !daemon->stopping && i < daemon->nlisten; i++)
        uv_poll_start(&daemon->listen[i].poll, UV_READABLE, rgpu_daemon_on_accept);
}

/* Accept failed with errnum: the connection that made the listener readable
 * is still queued, so polling again at once would spin on the same error.
 * Stop polling for a moment instead (descriptors free up as sessions end). */
static void rgpu_daemon_accept_pause(rgpu_daemon_t *daemon, rgpu_status_t st, int errnum)
{
    unsigned long suppressed;

    atomic_fetch_add(&rgpu_metrics.accept_errors_total, 1);
    if (rgpu_ratelimit_pass(&daemon->accept_warn, uv_now(daemon->accept_timer.loop), &suppressed))
        rgpu_warn("server", "accept failed: %s; not accepting for %d ms (%lu more failures "
                  "since the last report)",
                  st == RGPU_ERR_IO ? strerror(errnum) : rgpu_status_str(st),
                  RGPU_SERVER_ACCEPT_PAUSE_MS, suppressed);
    for (int i = 0; i < daemon->nlisten; i++)
        uv_poll_stop(&daemon->listen[i].poll);
    uv_timer_start(&daemon->accept_timer, rgpu_daemon_on_accept_timer,
                   RGPU_SERVER_ACCEPT_PAUSE_MS, 0);
}

/* Past --max-sessions: say why, cheaply (a fresh socket's send buffer takes
 * the small frame without blocking), and close. */
/* Refusals in flight on their own threads, and the most there may be:
 * past it a refused connection is closed without a word. */
static atomic_int rgpu_refusers;
#define RGPU_SERVER_MAX_REFUSERS 16

typedef struct {
    rgpu_link_t *link;
    char reason[96];
} rgpu_refusal_t;

/* Tells a refused client why and closes its link, off the loop thread: on
 * verbs the send waits until the peer has finished connecting (up to
 * RGPU_VERBS_ACCEPT_MS), which must not hold up every other accept. */
static void *rgpu_refusal_main(void *arg)
{
    rgpu_refusal_t *r = arg;
    Rgpu__SessionError error = RGPU__SESSION_ERROR__INIT;

    pthread_setname_np(pthread_self(), "rgpu-refuse");
    error.status = RGPU_ERR_REFUSED;
    error.reason = r->reason;
    rgpu_wire_send(r->link, RGPU__MSG_TYPE__MSG_SESSION_ERROR, 0, 0, &error.base, NULL, 0);
    rgpu_link_close(r->link);
    free(r);
    atomic_fetch_sub(&rgpu_refusers, 1);
    return NULL;
}

static void rgpu_daemon_refuse(rgpu_daemon_t *daemon, rgpu_link_t *link, long long active)
{
    rgpu_refusal_t *r = calloc(1, sizeof(*r));
    unsigned long suppressed;
    pthread_attr_t attr;
    int started = 0;

    atomic_fetch_add(&rgpu_metrics.connections_refused_total, 1);
    if (rgpu_ratelimit_pass(&daemon->full_warn, uv_now(daemon->accept_timer.loop), &suppressed))
        rgpu_warn("server", "server full: %lld sessions (--max-sessions %d): refused %s and %lu more "
                  "since the last report", active, daemon->server.config->max_sessions, link->peer,
                  suppressed);
    if (r && atomic_fetch_add(&rgpu_refusers, 1) < RGPU_SERVER_MAX_REFUSERS) {
        r->link = link;
        snprintf(r->reason, sizeof(r->reason), "server full: %lld sessions", active);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&(pthread_t){0}, &attr, rgpu_refusal_main, r) == 0;
        pthread_attr_destroy(&attr);
        if (started)
            return;
    }
    if (r)
        atomic_fetch_sub(&rgpu_refusers, 1);
    free(r);
    rgpu_link_close(link);  /* too many refusals at once: closed without a word */
}

static void rgpu_daemon_on_accept(uv_poll_t *poll, int status, int events)
{
    rgpu_daemon_listen_t *l = poll->data;
    rgpu_daemon_t *daemon = l->daemon;

    if (status < 0) {
        rgpu_warn("server", "listener poll failed: %s", uv_strerror(status));
        return;
    }
    /* Drain the backlog, a batch at a time: the listener is non-blocking and
     * says when it is empty, and the poll calls again while it is not. */
    for (int n = 0; n < RGPU_SERVER_ACCEPT_BATCH; n++) {
        rgpu_link_t *link;
        rgpu_status_t st;
        long long active;

        errno = 0;
        st = l->listener->ops->accept(l->listener, &link);
        if (st == RGPU_ERR_TIMEOUT)
            break;
        if (st != RGPU_OK) {
            rgpu_daemon_accept_pause(daemon, st, errno);
            break;
        }
        /* Sessions end on their own threads, so the count only falls
         * between here and rgpu_session_start: never past the bound. */
        active = atomic_load(&rgpu_metrics.sessions_active);
        if (active >= daemon->server.config->max_sessions) {
            rgpu_daemon_refuse(daemon, link, active);
            continue;
        }
        rgpu_session_start(&daemon->server, link);
    }
}

static void rgpu_daemon_listener_closed(uv_handle_t *handle)
{
    rgpu_daemon_listen_t *l = handle->data;

    /* The fd may be closed only once libuv stopped watching it. */
    l->listener->ops->listener_close(l->listener);
    l->listener = NULL;
}

static void rgpu_daemon_on_lease_timer(uv_timer_t *timer)
{
    rgpu_daemon_t *daemon = timer->data;

    rgpu_server_expire_sessions(&daemon->server, (int64_t)time(NULL));
}

static void rgpu_daemon_stop(rgpu_daemon_t *daemon, const char *why)
{
    if (daemon->stopping)
        return;
    daemon->stopping = 1;
    rgpu_info("server", "%s: shutting down", why);
    for (int i = 0; i < daemon->nlisten; i++) {
        uv_poll_stop(&daemon->listen[i].poll);
        uv_close((uv_handle_t *)&daemon->listen[i].poll, rgpu_daemon_listener_closed);
    }
    uv_close((uv_handle_t *)&daemon->accept_timer, NULL);
    rgpu_metrics_server_stop(daemon->metrics);
    daemon->metrics = NULL;
    rgpu_registrar_stop(daemon->registrar);
    daemon->registrar = NULL;
    if (daemon->lease_timer_on)
        uv_close((uv_handle_t *)&daemon->lease_timer, NULL);
    uv_close((uv_handle_t *)&daemon->sigint, NULL);
    uv_close((uv_handle_t *)&daemon->sigterm, NULL);
    rgpu_server_stop_sessions(&daemon->server);
}

static void rgpu_daemon_on_signal(uv_signal_t *handle, int signum)
{
    rgpu_daemon_stop(handle->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* The endpoints the registrar advertises: each listener as scheme://host:port,
 * a wildcard host (0.0.0.0, ::) replaced by the advertise address's host,
 * which is how clients reach this machine. */
static void rgpu_daemon_endpoints(rgpu_daemon_t *daemon, char addrs[][256])
{
    const char *adv = daemon->server.advertise, *colon;
    int adv_host_len;

    adv = strstr(adv, "://") ? strstr(adv, "://") + 3 : adv;
    colon = strrchr(adv, ':');
    adv_host_len = colon ? (int)(colon - adv) : (int)strlen(adv);

    daemon->server.n_endpoints = 0;
    for (int i = 0; i < daemon->nlisten; i++) {
        const char *local = daemon->listen[i].listener->local, *port = strrchr(local, ':');
        const char *scheme = strncmp(addrs[i], "verbs://", 8) == 0 ? "verbs" : "tcp";
        int wild = port && (strncmp(local, "0.0.0.0:", 8) == 0 || strncmp(local, "[::]:", 5) == 0);
        char *out = daemon->server.endpoints[daemon->server.n_endpoints];
        size_t cap = sizeof(daemon->server.endpoints[0]);
        int len = wild ? snprintf(out, cap, "%s://%.*s%s", scheme, adv_host_len, adv, port)
                       : snprintf(out, cap, "%s://%s", scheme, local);

        /* A cut address would send clients elsewhere: leave it out. */
        if (len < 0 || (size_t)len >= cap) {
            rgpu_warn("server", "not advertising %s to the scheduler: its address is longer "
                      "than %zu characters", addrs[i], cap - 1);
            continue;
        }
        daemon->server.n_endpoints++;
    }
}

int main(int argc, char **argv)
{
    static rgpu_daemon_t daemon;
    rgpu_server_config_t config;
    uv_loop_t *loop;
    rgpu_status_t status;
    int left, exit_code = 1;
    char addrs[RGPU_SERVER_MAX_LISTEN][256];
    int naddrs;

    signal(SIGPIPE, SIG_IGN);
    switch (rgpu_server_config_load(&config, argc, argv, rgpu_daemon_getenv, stdout, stderr)) {
    case RGPU_CONFIG_RUN:
        break;
    case RGPU_CONFIG_EXIT_OK:
        return 0;
    case RGPU_CONFIG_EXIT_USAGE:
        return 2;
    }
    rgpu_log_init("rgpu-server", (rgpu_log_level_t)config.log_level);
    /* The table already applied RGPU_LOG and --log-level in order. */
    rgpu_log_level = (rgpu_log_level_t)config.log_level;
    rgpu_log_journal_attach();

    daemon.server.config = &config;
    if (gethostname(daemon.server.hostname, sizeof(daemon.server.hostname) - 1) != 0)
        strcpy(daemon.server.hostname, "?");
    rgpu_server_init(&daemon.server);
    if (config.key[0]) {
        char why[600];

        status = rgpu_token_key_load(config.key, &daemon.key, why, sizeof(why));
        if (status != RGPU_OK) {
            rgpu_error("server", "%s", why);
            goto out_cleanup_server;
        }
        daemon.server.lease_key = &daemon.key;
    }

    if (rgpu_daemon_open_backends(&daemon.server, &config) != 0)
        goto out_close_backend;
#ifdef RGPU_WITH_JEMALLOC
    rgpu_info("server", "memory allocator: jemalloc");
#else
    rgpu_info("server", "memory allocator: the C library's malloc (built without jemalloc)");
#endif

    naddrs = rgpu_server_config_listen(&config, addrs, RGPU_SERVER_MAX_LISTEN);
    for (daemon.nlisten = 0; daemon.nlisten < naddrs; daemon.nlisten++) {
        const char *addr = addrs[daemon.nlisten], *bare;
        const rgpu_transport_ops_t *ops;
        char why[256];

        status = rgpu_transport_for_address(addr, &ops, &bare, why, sizeof(why));
        if (status != RGPU_OK) {
            rgpu_error("server", "cannot listen on %s: %s", addr, why);
            goto out_close_listeners;
        }
        status = ops->listen(bare, &daemon.listen[daemon.nlisten].listener);
        if (status != RGPU_OK) {
            rgpu_error("server", "cannot listen on %s: %s", addr,
                       status == RGPU_ERR_EXISTS ? "address already in use"
                                                 : rgpu_status_str(status));
            goto out_close_listeners;
        }
    }

    loop = uv_default_loop();
    for (int i = 0; i < daemon.nlisten; i++) {
        rgpu_daemon_listen_t *l = &daemon.listen[i];

        l->daemon = &daemon;
        uv_poll_init(loop, &l->poll, l->listener->ops->listener_fd(l->listener));
        l->poll.data = l;
        uv_poll_start(&l->poll, UV_READABLE, rgpu_daemon_on_accept);
    }
    uv_timer_init(loop, &daemon.accept_timer);
    daemon.accept_timer.data = &daemon;
    uv_signal_init(loop, &daemon.sigint);
    uv_signal_init(loop, &daemon.sigterm);
    daemon.sigint.data = daemon.sigterm.data = &daemon;
    uv_signal_start(&daemon.sigint, rgpu_daemon_on_signal, SIGINT);
    uv_signal_start(&daemon.sigterm, rgpu_daemon_on_signal, SIGTERM);

    if (config.metrics[0]) {
        char local[96] = "";

        status = rgpu_metrics_server_start(loop, config.metrics, &daemon.metrics, local,
                                           sizeof(local));
        if (status != RGPU_OK) {
            rgpu_error("server", "cannot serve metrics on %s: %s", config.metrics,
                       rgpu_status_str(status));
            rgpu_daemon_stop(&daemon, "metrics endpoint failed");
            uv_run(loop, UV_RUN_DEFAULT);
            goto out_close_loop;
        }
        rgpu_info("server", "metrics on http://%s/metrics", local);
        /* Scripts parse this line to learn the metrics port (with port 0). */
        printf("rgpu-server metrics on %s\n", local);
        fflush(stdout);
    }

    snprintf(daemon.server.advertise, sizeof(daemon.server.advertise), "%s",
             config.advertise[0] ? config.advertise : daemon.listen[0].listener->local);
    rgpu_daemon_endpoints(&daemon, addrs);
    if (config.key[0])
        rgpu_info("server", "lease tokens required, naming %s", daemon.server.advertise);
    else
        rgpu_info("server", "no lease checking (--insecure)");
    /* Every second: a session ends with its lease (at the token's expiry, or
     * the later one the scheduler reports after a renewal), and a connection
     * that did not complete its handshake within --hello-timeout is closed. */
    uv_timer_init(loop, &daemon.lease_timer);
    daemon.lease_timer.data = &daemon;
    uv_timer_start(&daemon.lease_timer, rgpu_daemon_on_lease_timer, 1000, 1000);
    daemon.lease_timer_on = 1;
    if (config.scheduler[0]) {
        status = rgpu_registrar_start(loop, &daemon.server, config.scheduler, &daemon.registrar);
        if (status != RGPU_OK) {
            rgpu_error("server", "cannot start registering with %s: %s", config.scheduler,
                       rgpu_status_str(status));
            rgpu_daemon_stop(&daemon, "registrar failed");
            uv_run(loop, UV_RUN_DEFAULT);
            goto out_close_loop;
        }
    }

    /* Test scripts parse this exact line to learn the port (the first
     * line: the first --listen address). */
    for (int i = 0; i < daemon.nlisten; i++) {
        printf("rgpu-server listening on %s\n", daemon.listen[i].listener->local);
        rgpu_info("server", "listening on %s", daemon.listen[i].listener->local);
    }
    fflush(stdout);
    /* Type=notify units start what depends on the server only now, when
     * clients can connect. */
    rgpu_notify_ready();

    uv_run(loop, UV_RUN_DEFAULT);

    left = rgpu_server_wait_sessions(&daemon.server, RGPU_SERVER_SHUTDOWN_WAIT_MS);
    if (left)
        rgpu_warn("server", "%d sessions still releasing after %d s; exiting anyway", left,
                  RGPU_SERVER_SHUTDOWN_WAIT_MS / 1000);
    else
        rgpu_info("server", "all sessions closed");
    exit_code = 0;
    if (left)
        _exit(0);   /* sessions still use the backend: do not free it under them */

out_close_loop:
    uv_loop_close(loop);
    goto out_close_backend;
out_close_listeners:
    /* Not yet watched by libuv: closed directly. */
    for (int i = 0; i < daemon.nlisten; i++)
        daemon.listen[i].listener->ops->listener_close(daemon.listen[i].listener);
out_close_backend:
    rgpu_daemon_close_backends(&daemon.server);
out_cleanup_server:
    rgpu_server_cleanup(&daemon.server);
    return exit_code;
}
