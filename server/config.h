/*
 * rgpu-server configuration: one declarative table (config.c) read by the
 * option engine (rgpu/options.h) from four sources. Precedence: built-in
 * default < /etc/rgpu/server.conf ([server]; --config FILE or
 * RGPU_SERVER_CONFIG names another) < RGPU_* environment < command line.
 *
 *   option          environment        default
 *   --listen        RGPU_LISTEN        127.0.0.1:7070 (repeatable: one listener each)
 *   --platform      RGPU_PLATFORM      (first platform with devices)
 *   --chunk-size    RGPU_CHUNK_SIZE    4M
 *   --max-body      RGPU_MAX_BODY      64M
 *   --max-bulk      RGPU_MAX_BULK      16G
 *   --metrics       RGPU_METRICS       (off)
 *   --log-level     RGPU_LOG           info
 *   --key           RGPU_KEY           (none; --key or --insecure is required)
 *   --scheduler     RGPU_SCHEDULER     (off: no registration)
 *   --advertise     RGPU_ADVERTISE     (the first address actually listened on)
 *   --insecure      RGPU_INSECURE      no (a flag: serve without leases, loopback only)
 *   --platform-threads RGPU_PLATFORM_THREADS batch (or normal: their scheduling policy)
 *   --max-sessions  RGPU_MAX_SESSIONS  256 (connections past it are refused at once)
 *   --hello-timeout RGPU_HELLO_TIMEOUT 10 (seconds a connection has to complete its handshake)
 *   --backends      RGPU_BACKENDS      opencl,cuda (cuda-emulated only when named)
 *
 * Everything here runs on the main thread before the loop starts.
 */
#ifndef RGPU_SERVER_CONFIG_H
#define RGPU_SERVER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "rgpu/options.h"

/* Addresses --listen may name: one listener (and descriptor) each. */
#define RGPU_SERVER_MAX_LISTEN 8

typedef struct {
    char listen[1024];          /* comma-separated [scheme://]HOST:PORT; port 0 picks a free
                                 * port; at most RGPU_SERVER_MAX_LISTEN of them */
    char platform[256];         /* substring of CL_PLATFORM_NAME; "" = first with devices */
    uint64_t chunk_size;        /* bulk pipelining granularity */
    uint64_t max_body;          /* largest protobuf body accepted */
    uint64_t max_bulk;          /* largest bulk payload accepted */
    char metrics[256];          /* "host:port" of the HTTP metrics endpoint; "" = off */
    int log_level;              /* rgpu_log_level_t */
    char key[512];              /* cluster key file: Hello.lease_token required; "" = off */
    char scheduler[256];        /* "host:port" of rgpu-scheduler to register with; "" = off */
    char advertise[256];        /* address clients (and lease tokens) name this server by */
    int insecure;               /* explicitly no lease checking; loopback listen only */
    int platform_threads_batch; /* start the platform's threads under SCHED_BATCH */
    int max_sessions;           /* sessions open at once (1..65536); more are refused */
    int hello_timeout;          /* seconds (1..3600) a new connection has to send its hello */
    char backends[128];         /* comma list of backends to open: opencl, cuda, cuda-emulated */
    rgpu_opt_state_t opt;       /* where each value came from, the file read */
} rgpu_server_config_t;

typedef enum {
    RGPU_CONFIG_RUN = 0,        /* start the server */
    RGPU_CONFIG_EXIT_OK,        /* --help, --version, --print-config, --man: printed, exit 0 */
    RGPU_CONFIG_EXIT_USAGE,     /* bad option, value or file: message printed, exit 2 */
} rgpu_config_action_t;

/* Looks an environment variable up; getenv in the daemon, a fake in tests. */
typedef const char *(*rgpu_config_getenv_fn)(const char *name);

/* The table: for the man pages and the tests. */
extern const rgpu_opt_table_t rgpu_server_options;

/* Fills cfg from defaults, the configuration file, then getenv_fn (may be
 * NULL: no environment and no RGPU_SERVER_CONFIG), then argv[1..argc-1].
 * --help/--version/--print-config/--man print to out; errors print one clear
 * sentence to err. cfg is fully initialized whatever the outcome. */
rgpu_config_action_t rgpu_server_config_load(rgpu_server_config_t *cfg, int argc,
                                             char *const argv[], rgpu_config_getenv_fn getenv_fn,
                                             FILE *out, FILE *err);

/* Prints "name = value   # source" for every row: a server.conf. */
void rgpu_server_config_print(const rgpu_server_config_t *cfg, FILE *out);

/* Splits cfg->listen into its addresses: copies each into addrs[i] (cap
 * bytes each) and returns how many (1..RGPU_SERVER_MAX_LISTEN). */
int rgpu_server_config_listen(const rgpu_server_config_t *cfg,
                              char addrs[][256], int max);

#endif
