/*
 * The rgpu-server configuration table. Each row names an option, its
 * environment variable, default, help and parser; adding an option is adding
 * a row. See config.h for the precedence rules.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "rgpu/log.h"
#include "rgpu/transport.h"
#include "rgpu/util.h"

typedef struct rgpu_config_row rgpu_config_row_t;

/* Parses value into field; on failure writes why (no trailing period) into
 * why and returns -1. */
typedef int (*rgpu_config_parse_fn)(const rgpu_config_row_t *row, const char *value, void *field,
                                    char *why, size_t why_cap);
typedef void (*rgpu_config_format_fn)(const rgpu_config_row_t *row, const void *field, char *out,
                                      size_t cap);

struct rgpu_config_row {
    const char *name;           /* option name, without "--" */
    const char *env;            /* environment variable */
    const char *metavar;        /* what the value looks like in --help */
    const char *def;            /* default, parsed like any other value */
    const char *help;
    size_t offset;              /* of the field in rgpu_server_config_t */
    size_t cap;                 /* string rows: size of the char array */
    rgpu_config_parse_fn parse;
    rgpu_config_format_fn format;
    uint64_t min, max;          /* size and count rows: accepted range */
};

static int rgpu_config_parse_string(const rgpu_config_row_t *row, const char *value, void *field,
                                    char *why, size_t why_cap)
{
    if (strlen(value) >= row->cap) {
        snprintf(why, why_cap, "longer than %zu characters", row->cap - 1);
        return -1;
    }
    strcpy(field, value);
    return 0;
}

/* "host:port", or "" where the row's default is "" (meaning off). */
static int rgpu_config_parse_addr(const rgpu_config_row_t *row, const char *value, void *field,
                                  char *why, size_t why_cap)
{
    char host[256];
    uint16_t port;

    if (*value == '\0' && row->def && *row->def == '\0') {
        *(char *)field = '\0';
        return 0;
    }
    if (rgpu_addr_split(value, host, sizeof(host), &port) != RGPU_OK) {
        snprintf(why, why_cap, "expected HOST:PORT (e.g. 127.0.0.1:7070 or [::1]:0)");
        return -1;
    }
    return rgpu_config_parse_string(row, value, field, why, why_cap);
}

static void rgpu_config_size_format(uint64_t size, char *out, size_t cap)
{
    static const char units[] = "KMGT";
    int unit = -1;

    while (size && size % 1024 == 0 && unit < 3) {
        size /= 1024;
        unit++;
    }
    if (unit < 0)
        snprintf(out, cap, "%llu", (unsigned long long)size);
    else
        snprintf(out, cap, "%llu%c", (unsigned long long)size, units[unit]);
}

static int rgpu_config_parse_size(const rgpu_config_row_t *row, const char *value, void *field,
                                  char *why, size_t why_cap)
{
    uint64_t size;
    char lo[32], hi[32];

    if (rgpu_size_parse(value, &size) != 0) {
        snprintf(why, why_cap, "expected a size such as 4096, 64K, 4M or 16G");
        return -1;
    }
    if (size < row->min || size > row->max) {
        rgpu_config_size_format(row->min, lo, sizeof(lo));
        rgpu_config_size_format(row->max, hi, sizeof(hi));
        snprintf(why, why_cap, "must be between %s and %s", lo, hi);
        return -1;
    }
    *(uint64_t *)field = size;
    return 0;
}

static int rgpu_config_parse_log_level(const rgpu_config_row_t *row, const char *value,
                                       void *field, char *why, size_t why_cap)
{
    int level = rgpu_log_level_parse(value);

    if (level < 0) {
        snprintf(why, why_cap, "expected one of error, warn, info, debug, trace");
        return -1;
    }
    *(int *)field = level;
    return 0;
}

/* A flag: "--name" alone means yes; "--name=no" and the environment say it. */
static int rgpu_config_parse_flag(const rgpu_config_row_t *row, const char *value, void *field,
                                  char *why, size_t why_cap)
{
    if (!strcmp(value, "yes") || !strcmp(value, "1") || !strcmp(value, "true") ||
        !strcmp(value, "on")) {
        *(int *)field = 1;
    } else if (!strcmp(value, "no") || !strcmp(value, "0") || !strcmp(value, "false") ||
               !strcmp(value, "off")) {
        *(int *)field = 0;
    } else {
        snprintf(why, why_cap, "expected yes or no");
        return -1;
    }
    return 0;
}

static void rgpu_config_format_flag(const rgpu_config_row_t *row, const void *field, char *out,
                                    size_t cap)
{
    snprintf(out, cap, "%s", *(const int *)field ? "yes" : "no");
}

static int rgpu_config_parse_threads(const rgpu_config_row_t *row, const char *value, void *field,
                                     char *why, size_t why_cap)
{
    if (!strcmp(value, "batch") || !strcmp(value, "normal")) {
        *(int *)field = !strcmp(value, "batch");
        return 0;
    }
    snprintf(why, why_cap, "expected batch or normal");
    return -1;
}

static void rgpu_config_format_threads(const rgpu_config_row_t *row, const void *field, char *out,
                                       size_t cap)
{
    snprintf(out, cap, "%s", *(const int *)field ? "batch" : "normal");
}

/* A plain decimal count (no size suffix) within the row's bounds, into an int. */
static int rgpu_config_parse_count(const rgpu_config_row_t *row, const char *value, void *field,
                                   char *why, size_t why_cap)
{
    unsigned long long n = 0;
    const char *p = value;

    if (*p == '\0')
        goto out_bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            goto out_bad;
        n = n * 10 + (unsigned long long)(*p - '0');
        if (n > row->max)
            break;      /* keeps n from overflowing; reported below */
    }
    if (n < row->min || n > row->max) {
        snprintf(why, why_cap, "must be between %llu and %llu", (unsigned long long)row->min,
                 (unsigned long long)row->max);
        return -1;
    }
    *(int *)field = (int)n;
    return 0;

out_bad:
    snprintf(why, why_cap, "expected a whole number between %llu and %llu",
             (unsigned long long)row->min, (unsigned long long)row->max);
    return -1;
}

static void rgpu_config_format_count(const rgpu_config_row_t *row, const void *field, char *out,
                                     size_t cap)
{
    snprintf(out, cap, "%d", *(const int *)field);
}

static void rgpu_config_format_string(const rgpu_config_row_t *row, const void *field, char *out,
                                      size_t cap)
{
    snprintf(out, cap, "%s", (const char *)field);
}

static void rgpu_config_format_size(const rgpu_config_row_t *row, const void *field, char *out,
                                    size_t cap)
{
    rgpu_config_size_format(*(const uint64_t *)field, out, cap);
}

static void rgpu_config_format_log_level(const rgpu_config_row_t *row, const void *field,
                                         char *out, size_t cap)
{
    static const char *const names[] = {"error", "warn", "info", "debug", "trace"};
    int level = *(const int *)field;

    snprintf(out, cap, "%s", level >= 0 && level <= 4 ? names[level] : "?");
}

#define RGPU_CFG_STR(field) offsetof(rgpu_server_config_t, field), \
    sizeof(((rgpu_server_config_t *)0)->field)
#define RGPU_CFG_NUM(field) offsetof(rgpu_server_config_t, field), 0

static const rgpu_config_row_t rgpu_server_config_table[] = {
    {"listen", "RGPU_LISTEN", "ADDR:PORT", "127.0.0.1:7070",
     "address to accept clients on; port 0 picks a free port",
     RGPU_CFG_STR(listen), rgpu_config_parse_addr, rgpu_config_format_string, 0, 0},
    {"platform", "RGPU_PLATFORM", "NAME", "",
     "serve the OpenCL platform whose name contains NAME (default: the first platform "
     "that has devices; a platform named \"rgpu\" is never served)",
     RGPU_CFG_STR(platform), rgpu_config_parse_string, rgpu_config_format_string, 0, 0},
    {"chunk-size", "RGPU_CHUNK_SIZE", "SIZE", "4M",
     "bulk transfers are pipelined in chunks of SIZE bytes",
     RGPU_CFG_NUM(chunk_size), rgpu_config_parse_size, rgpu_config_format_size,
     4096, 1ull << 30},
    {"max-body", "RGPU_MAX_BODY", "SIZE", "64M",
     "largest message body accepted; a larger one ends the session",
     RGPU_CFG_NUM(max_body), rgpu_config_parse_size, rgpu_config_format_size,
     4096, 0xFFFFFFFFull},
    {"max-bulk", "RGPU_MAX_BULK", "SIZE", "16G",
     "largest bulk payload (buffer contents, binaries) accepted; a larger one ends the session",
     RGPU_CFG_NUM(max_bulk), rgpu_config_parse_size, rgpu_config_format_size,
     4096, 1ull << 40},
    {"metrics", "RGPU_METRICS", "ADDR:PORT", "",
     "serve Prometheus metrics over HTTP on ADDR:PORT (default: off)",
     RGPU_CFG_STR(metrics), rgpu_config_parse_addr, rgpu_config_format_string, 0, 0},
    {"log-level", "RGPU_LOG", "LEVEL", "info",
     "error, warn, info, debug or trace",
     RGPU_CFG_NUM(log_level), rgpu_config_parse_log_level, rgpu_config_format_log_level, 0, 0},
    {"key", "RGPU_KEY", "FILE", "",
     "cluster key file (as rgpu-scheduler's): refuse sessions without a valid lease token "
     "for this server (--key or --insecure is required)",
     RGPU_CFG_STR(key), rgpu_config_parse_string, rgpu_config_format_string, 0, 0},
    {"scheduler", "RGPU_SCHEDULER", "ADDR:PORT", "",
     "register this server's devices with rgpu-scheduler at ADDR:PORT and send it heartbeats "
     "(default: off)",
     RGPU_CFG_STR(scheduler), rgpu_config_parse_addr, rgpu_config_format_string, 0, 0},
    {"advertise", "RGPU_ADVERTISE", "ADDR:PORT", "",
     "the address clients reach this server by, as the scheduler hands it out in leases "
     "(default: the address listened on)",
     RGPU_CFG_STR(advertise), rgpu_config_parse_addr, rgpu_config_format_string, 0, 0},
    {"insecure", "RGPU_INSECURE", "", "no",
     "serve every client without lease checking, on loopback addresses only "
     "(excludes --key; a flag, or --insecure=no)",
     RGPU_CFG_NUM(insecure), rgpu_config_parse_flag, rgpu_config_format_flag, 0, 0},
    {"platform-threads", "RGPU_PLATFORM_THREADS", "POLICY", "batch",
     "scheduling policy of the threads the OpenCL platform starts (PoCL's workers, a driver's "
     "helpers): batch (SCHED_BATCH: a platform thread that wakes up does not preempt the session "
     "thread feeding it, it runs when that thread waits or at the next tick) or normal",
     RGPU_CFG_NUM(platform_threads_batch), rgpu_config_parse_threads, rgpu_config_format_threads, 0, 0},
    {"max-sessions", "RGPU_MAX_SESSIONS", "N", "256",
     "serve at most N sessions at once (each is two threads); a connection past them gets a "
     "\"server full\" error and is closed at once",
     RGPU_CFG_NUM(max_sessions), rgpu_config_parse_count, rgpu_config_format_count, 1, 65536},
    {"hello-timeout", "RGPU_HELLO_TIMEOUT", "SECONDS", "10",
     "close a connection that has not completed its handshake within SECONDS (1 to 3600)",
     RGPU_CFG_NUM(hello_timeout), rgpu_config_parse_count, rgpu_config_format_count, 1, 3600},
    {"backends", "RGPU_BACKENDS", "LIST", "opencl,cuda",
     "the GPU APIs to serve, comma separated: opencl, cuda (the CUDA driver, when libcuda.so.1 "
     "is installed) or cuda-emulated (an emulation in host memory for tests, never a GPU); a "
     "backend that finds no devices is skipped with a log line",
     RGPU_CFG_STR(backends), rgpu_config_parse_string, rgpu_config_format_string, 0, 0},
};

#define RGPU_CONFIG_NROWS (sizeof(rgpu_server_config_table) / sizeof(rgpu_server_config_table[0]))

_Static_assert(RGPU_CONFIG_NROWS <= RGPU_SERVER_CONFIG_MAX_ROWS, "grow RGPU_SERVER_CONFIG_MAX_ROWS");

static const rgpu_config_row_t *rgpu_config_row_find(const char *name, size_t len)
{
    for (size_t i = 0; i < RGPU_CONFIG_NROWS; i++) {
        const rgpu_config_row_t *row = &rgpu_server_config_table[i];
        if (strlen(row->name) == len && strncmp(row->name, name, len) == 0)
            return row;
    }
    return NULL;
}

static int rgpu_config_apply(rgpu_server_config_t *cfg, const rgpu_config_row_t *row,
                             const char *value, rgpu_config_source_t source, FILE *err)
{
    char why[160];

    if (row->parse(row, value, (char *)cfg + row->offset, why, sizeof(why)) != 0) {
        if (source == RGPU_CONFIG_SRC_ENV)
            fprintf(err, "rgpu-server: bad value \"%s\" in %s: %s\n", value, row->env, why);
        else
            fprintf(err, "rgpu-server: bad value \"%s\" for --%s: %s\n", value, row->name, why);
        return -1;
    }
    cfg->source[row - rgpu_server_config_table] = source;
    return 0;
}

void rgpu_server_config_usage(FILE *out, const char *progname)
{
    fprintf(out,
            "usage: %s [OPTION]...\n"
            "Serve this node's OpenCL devices to rgpu clients over TCP.\n"
            "\n"
            "Options (each also read from the environment variable shown; the command\n"
            "line wins over the environment, which wins over the default):\n",
            progname);
    for (size_t i = 0; i < RGPU_CONFIG_NROWS; i++) {
        const rgpu_config_row_t *row = &rgpu_server_config_table[i];
        char opt[64];

        snprintf(opt, sizeof(opt), "--%s %s", row->name, row->metavar);
        fprintf(out, "  %-24s %s\n", opt, row->help);
        fprintf(out, "  %-24s [env %s; default: %s]\n", "", row->env,
                *row->def ? row->def : "none");
    }
    fprintf(out,
            "  %-24s print the effective configuration and exit\n"
            "  %-24s print this help and exit\n"
            "  %-24s print the version and exit\n"
            "\n"
            "Once listening, prints \"rgpu-server listening on HOST:PORT\" on stdout.\n"
            "SIGINT or SIGTERM end every session, release its objects and exit 0.\n",
            "--print-config", "--help", "--version");
}

void rgpu_server_config_print(const rgpu_server_config_t *cfg, FILE *out)
{
    static const char *const sources[] = {"default", "environment", "command line"};

    for (size_t i = 0; i < RGPU_CONFIG_NROWS; i++) {
        const rgpu_config_row_t *row = &rgpu_server_config_table[i];
        char value[300];
        char line[340];

        row->format(row, (const char *)cfg + row->offset, value, sizeof(value));
        snprintf(line, sizeof(line), "%s = %s", row->name, value);
        fprintf(out, "%-40s # %s\n", line, sources[cfg->source[i]]);
    }
}

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

rgpu_config_action_t rgpu_server_config_load(rgpu_server_config_t *cfg, int argc,
                                             char *const argv[], rgpu_config_getenv_fn getenv_fn,
                                             FILE *out, FILE *err)
{
    int print_config = 0;

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < RGPU_CONFIG_NROWS; i++) {
        /* Defaults are valid by construction; a failure here is a table bug. */
        if (rgpu_config_apply(cfg, &rgpu_server_config_table[i], rgpu_server_config_table[i].def,
                              RGPU_CONFIG_SRC_DEFAULT, err) != 0)
            return RGPU_CONFIG_EXIT_USAGE;
    }
    for (size_t i = 0; getenv_fn && i < RGPU_CONFIG_NROWS; i++) {
        const char *value = getenv_fn(rgpu_server_config_table[i].env);
        if (value && rgpu_config_apply(cfg, &rgpu_server_config_table[i], value,
                                       RGPU_CONFIG_SRC_ENV, err) != 0)
            return RGPU_CONFIG_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *name, *eq, *value;
        const rgpu_config_row_t *row;

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            rgpu_server_config_usage(out, "rgpu-server");
            return RGPU_CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--version") == 0) {
            fprintf(out, "rgpu-server %s\n", RGPU_VERSION);
            return RGPU_CONFIG_EXIT_OK;
        }
        if (strcmp(arg, "--print-config") == 0) {
            print_config = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(err, "rgpu-server: unexpected argument \"%s\" (try --help)\n", arg);
            return RGPU_CONFIG_EXIT_USAGE;
        }
        name = arg + 2;
        eq = strchr(name, '=');
        row = rgpu_config_row_find(name, eq ? (size_t)(eq - name) : strlen(name));
        if (!row) {
            fprintf(err, "rgpu-server: unknown option \"%s\" (try --help)\n", arg);
            return RGPU_CONFIG_EXIT_USAGE;
        }
        if (eq) {
            value = eq + 1;
        } else if (row->parse == rgpu_config_parse_flag) {
            value = "yes";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(err, "rgpu-server: option --%s needs a value (%s)\n", row->name, row->metavar);
            return RGPU_CONFIG_EXIT_USAGE;
        }
        if (rgpu_config_apply(cfg, row, value, RGPU_CONFIG_SRC_CMDLINE, err) != 0)
            return RGPU_CONFIG_EXIT_USAGE;
    }
    if (cfg->insecure && cfg->key[0]) {
        fprintf(err, "rgpu-server: --insecure and --key exclude each other\n");
        return RGPU_CONFIG_EXIT_USAGE;
    }
    if (cfg->insecure) {
        char host[256];
        uint16_t port;

        /* Without leases anyone who reaches the port uses the GPUs: only
         * this machine may. */
        const rgpu_transport_ops_t *ops;
        const char *bare = cfg->listen;

        /* The host past the scheme (tcp://, verbs://): the resolver knows them. */
        if (rgpu_transport_for_address(cfg->listen, &ops, &bare, NULL, 0) != RGPU_OK)
            bare = cfg->listen;
        rgpu_addr_split(bare, host, sizeof(host), &port);
        if (!rgpu_config_is_loopback(host)) {
            fprintf(err, "rgpu-server: --insecure serves without leases, so only on a loopback "
                         "address (127.0.0.0/8, ::1), not %s; give --key FILE instead\n", host);
            return RGPU_CONFIG_EXIT_USAGE;
        }
    }
    if (cfg->chunk_size > cfg->max_bulk) {
        fprintf(err, "rgpu-server: --chunk-size must not exceed --max-bulk\n");
        return RGPU_CONFIG_EXIT_USAGE;
    }
    if (print_config) {
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
