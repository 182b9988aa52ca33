/*
 * The rgpu-server option table. Each row names an option (and its key in
 * [server] of server.conf), its environment variable, default, help and
 * bounds; adding an option is adding a row. The engine (rgpu/options.h)
 * reads them; this file adds the checks that span rows (--insecure only on
 * loopback, not with --key).
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "rgpu/log.h"
#include "rgpu/transport.h"
#include "rgpu/util.h"

#ifndef RGPU_SYSCONFDIR
#define RGPU_SYSCONFDIR "/etc/rgpu"
#endif

static const char *const rgpu_server_log_levels[] = {"error", "warn", "info", "debug", "trace",
                                                     NULL};
/* The field is platform_threads_batch. */
static const char *const rgpu_server_thread_policies[] = {"batch", "normal", NULL};
static const int rgpu_server_thread_batch[] = {1, 0};

#define RGPU_CFG_STR(field) offsetof(rgpu_server_config_t, field), \
    sizeof(((rgpu_server_config_t *)0)->field)
#define RGPU_CFG_U64(field) offsetof(rgpu_server_config_t, field), sizeof(uint64_t)
#define RGPU_CFG_INT(field) offsetof(rgpu_server_config_t, field), 0

static const rgpu_opt_t rgpu_server_option_rows[] = {
    {"listen", RGPU_OPT_ADDR_LIST, "127.0.0.1:7070", "ADDR:PORT",
     "address to accept clients on, with its transport's scheme (tcp://, verbs://; none means "
     "tcp); port 0 picks a free port. Repeat the option (or give a comma-separated list) to "
     "listen on several addresses at once, up to 8",
     "RGPU_LISTEN", NULL, RGPU_CFG_STR(listen), 0, 0, NULL, 0},
    {"platform", RGPU_OPT_STRING, "", "NAME",
     "serve the OpenCL platform whose name contains NAME (default: the first platform "
     "that has devices; a platform named \"rgpu\" is never served)",
     "RGPU_PLATFORM", NULL, RGPU_CFG_STR(platform), 0, 0, NULL, 0},
    {"chunk-size", RGPU_OPT_SIZE, "4M", "SIZE",
     "bulk transfers are pipelined in chunks of SIZE bytes (4K to 1G)",
     "RGPU_CHUNK_SIZE", NULL, RGPU_CFG_U64(chunk_size), 4096, 1ull << 30, NULL, 0},
    {"max-body", RGPU_OPT_SIZE, "64M", "SIZE",
     "largest message body accepted (4K to 4G); a larger one ends the session",
     "RGPU_MAX_BODY", NULL, RGPU_CFG_U64(max_body), 4096, 0xFFFFFFFFull, NULL, 0},
    {"max-bulk", RGPU_OPT_SIZE, "16G", "SIZE",
     "largest bulk payload (buffer contents, binaries) accepted (4K to 1T); a larger one ends "
     "the session",
     "RGPU_MAX_BULK", NULL, RGPU_CFG_U64(max_bulk), 4096, 1ull << 40, NULL, 0},
    {"metrics", RGPU_OPT_ADDR, "", "ADDR:PORT",
     "serve Prometheus metrics over HTTP on ADDR:PORT (default: off)",
     "RGPU_METRICS", NULL, RGPU_CFG_STR(metrics), 0, 0, NULL, 0},
    {"log-level", RGPU_OPT_CHOICE, "info", "LEVEL", "error, warn, info, debug or trace",
     "RGPU_LOG", NULL, RGPU_CFG_INT(log_level), 0, 0, rgpu_server_log_levels, 0},
    {"key", RGPU_OPT_STRING, "", "FILE",
     "cluster key file (as rgpu-scheduler's): refuse sessions without a valid lease token "
     "for this server (--key or --insecure is required)",
     "RGPU_KEY", NULL, RGPU_CFG_STR(key), 0, 0, NULL, 0},
    {"scheduler", RGPU_OPT_ADDR, "", "ADDR:PORT",
     "register this server's devices with rgpu-scheduler at ADDR:PORT and send it heartbeats "
     "(default: off)",
     "RGPU_SCHEDULER", NULL, RGPU_CFG_STR(scheduler), 0, 0, NULL, 0},
    {"advertise", RGPU_OPT_ADDR, "", "ADDR:PORT",
     "the address clients reach this server by, as the scheduler hands it out in leases "
     "(default: the first address listened on)",
     "RGPU_ADVERTISE", NULL, RGPU_CFG_STR(advertise), 0, 0, NULL, 0},
    {"insecure", RGPU_OPT_FLAG, "no", NULL,
     "serve every client without lease checking, on loopback addresses only "
     "(excludes --key; a flag, or --insecure=no)",
     "RGPU_INSECURE", NULL, RGPU_CFG_INT(insecure), 0, 0, NULL, 0},
    {"platform-threads", RGPU_OPT_CHOICE, "batch", "POLICY",
     "scheduling policy of the threads the OpenCL platform starts (PoCL's workers, a driver's "
     "helpers): batch (SCHED_BATCH: a platform thread that wakes up does not preempt the session "
     "thread feeding it, it runs when that thread waits or at the next tick) or normal",
     "RGPU_PLATFORM_THREADS", NULL, RGPU_CFG_INT(platform_threads_batch), 0, 0,
     rgpu_server_thread_policies, 0, rgpu_server_thread_batch},
    {"max-sessions", RGPU_OPT_UINT, "256", "N",
     "serve at most N sessions at once (1 to 65536; each is two threads); a connection past "
     "them gets a \"server full\" error and is closed at once",
     "RGPU_MAX_SESSIONS", NULL, RGPU_CFG_INT(max_sessions), 1, 65536, NULL, 0},
    {"hello-timeout", RGPU_OPT_UINT, "10", "SECONDS",
     "close a connection that has not completed its handshake within SECONDS (1 to 3600)",
     "RGPU_HELLO_TIMEOUT", NULL, RGPU_CFG_INT(hello_timeout), 1, 3600, NULL, 0},
    {"backends", RGPU_OPT_STRING, "opencl,cuda", "LIST",
     "the GPU APIs to serve, comma separated: opencl, cuda (the CUDA driver, when libcuda.so.1 "
     "is installed) or cuda-emulated (an emulation in host memory for tests, never a GPU); a "
     "backend that finds no devices is skipped with a log line",
     "RGPU_BACKENDS", NULL, RGPU_CFG_STR(backends), 0, 0, NULL, 0},
};

const rgpu_opt_table_t rgpu_server_options = {
    .program = "rgpu-server",
    .man_section = 8,
    .summary = "serve this node's GPUs to rgpu clients",
    .synopsis = "[OPTION]...",
    .description =
        "rgpu-server serves this node's GPUs (OpenCL platforms and, where the driver is "
        "installed, CUDA) to rgpu clients on other nodes, over TCP or InfiniBand verbs. Each "
        "session runs its calls in order on a thread of its own and everything it created is "
        "released when it ends, however it ends.\n\n"
        "With --key, a client needs a lease token signed with the cluster key by "
        "rgpu-scheduler and naming this server; --insecure serves anyone, on loopback "
        "addresses only. Once listening, it prints \"rgpu-server listening on HOST:PORT\" "
        "on stdout for each address (and tells systemd it is ready). SIGINT or SIGTERM end "
        "every session, release its objects and exit 0.",
    .section = "server",
    .config_file = RGPU_SYSCONFDIR "/server.conf",
    .config_env = "RGPU_SERVER_CONFIG",
    .conf_title = "rgpu-server.conf",
    .opts = rgpu_server_option_rows,
    .nopts = sizeof(rgpu_server_option_rows) / sizeof(rgpu_server_option_rows[0]),
    .man_extra =
        ".SH EXIT STATUS\n0 after SIGINT or SIGTERM (or \\-\\-help and friends); 1 when it "
        "cannot start (no devices, an address in use, an unreadable key); 2 for a bad option, "
        "variable or configuration file.\n"
        ".SH EXAMPLES\n.nf\nrgpu\\-server \\-\\-key /etc/rgpu/cluster.key \\-\\-listen "
        "tcp://0.0.0.0:7070 \\-\\-listen verbs://10.1.0.5:7071 \\e\n    \\-\\-scheduler "
        "sched1:7080 \\-\\-metrics 0.0.0.0:9102\nrgpu\\-server \\-\\-insecure \\-\\-listen "
        "127.0.0.1:0    # a test on one machine\n.fi\n",
};

/* Whether host is a loopback address: 127.0.0.0/8, ::1 (or ::ffff:127.x),
 * or "localhost". Numeric addresses are parsed, not compared as text: a
 * name like 127.example.org is no loopback. */
static int rgpu_config_is_loopback(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (strcmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return 0;
}

int rgpu_server_config_listen(const rgpu_server_config_t *cfg, char addrs[][256], int max)
{
    char list[sizeof(cfg->listen)], *item, *save = NULL;
    int n = 0;

    snprintf(list, sizeof(list), "%s", cfg->listen);
    for (item = strtok_r(list, ",", &save); item && n < max; item = strtok_r(NULL, ",", &save))
        snprintf(addrs[n++], 256, "%s", item);
    return n;
}

void rgpu_server_config_print(const rgpu_server_config_t *cfg, FILE *out)
{
    rgpu_opt_print(&rgpu_server_options, cfg, &cfg->opt, out);
}

rgpu_config_action_t rgpu_server_config_load(rgpu_server_config_t *cfg, int argc,
                                             char *const argv[], rgpu_config_getenv_fn getenv_fn,
                                             FILE *out, FILE *err)
{
    char addrs[RGPU_SERVER_MAX_LISTEN + 1][256];
    int naddrs;

    switch (rgpu_opt_load(&rgpu_server_options, cfg, &cfg->opt, argc, argv, getenv_fn, out,
                          err)) {
    case RGPU_OPT_RUN:
        break;
    case RGPU_OPT_EXIT_OK:
        return RGPU_CONFIG_EXIT_OK;
    case RGPU_OPT_EXIT_USAGE:
        return RGPU_CONFIG_EXIT_USAGE;
    }
    naddrs = rgpu_server_config_listen(cfg, addrs, RGPU_SERVER_MAX_LISTEN + 1);
    if (naddrs > RGPU_SERVER_MAX_LISTEN) {
        fprintf(err, "rgpu-server: --listen names more than %d addresses\n",
                RGPU_SERVER_MAX_LISTEN);
        return RGPU_CONFIG_EXIT_USAGE;
    }
    if (cfg->insecure && cfg->key[0]) {
        fprintf(err, "rgpu-server: --insecure and --key exclude each other\n");
        return RGPU_CONFIG_EXIT_USAGE;
    }
    for (int i = 0; cfg->insecure && i < naddrs; i++) {
        const rgpu_transport_ops_t *ops;
        const char *bare = addrs[i];
        char host[256];
        uint16_t port;

        /* Without leases anyone who reaches the port uses the GPUs: only
         * this machine may. The host past the scheme (tcp://, verbs://):
         * the resolver knows them. */
        if (rgpu_transport_for_address(addrs[i], &ops, &bare, NULL, 0) != RGPU_OK)
            bare = addrs[i];
        if (rgpu_addr_split(bare, host, sizeof(host), &port) != RGPU_OK ||
            !rgpu_config_is_loopback(host)) {
            fprintf(err, "rgpu-server: --insecure serves without leases, so only on a loopback "
                         "address (127.0.0.0/8, ::1), not %s; give --key FILE instead\n", host);
            return RGPU_CONFIG_EXIT_USAGE;
        }
    }
    if (cfg->chunk_size > cfg->max_bulk) {
        fprintf(err, "rgpu-server: --chunk-size must not exceed --max-bulk\n");
        return RGPU_CONFIG_EXIT_USAGE;
    }
    if (cfg->opt.print_config) {
        rgpu_server_config_print(cfg, out);
        return RGPU_CONFIG_EXIT_OK;
    }
    if (!cfg->insecure && !cfg->key[0]) {
        fprintf(err, "rgpu-server: give --key FILE (the cluster key: clients need a lease from "
                     "rgpu-scheduler) or, to serve anyone on this machine without leases, "
                     "--insecure with a loopback --listen address\n");
        return RGPU_CONFIG_EXIT_USAGE;
    }
    return RGPU_CONFIG_RUN;
}
