/*
 * The client side's configuration: /etc/rgpu/client.conf ([client]), read
 * by everything that talks to servers or the scheduler on a compute node:
 * the OpenCL ICD (librgpu-opencl), the rgpu CLI and the Slurm plugin. One
 * set of rows (client_conf.c) serves all three through the option engine
 * (rgpu/options.h); each program adds only its texts.
 *
 *   key              environment               default
 *   servers          RGPU_SERVERS              (the lease token's, else none)
 *   scheduler        RGPU_SCHEDULER            127.0.0.1:7080
 *   transport        RGPU_TRANSPORT            auto
 *   connect-timeout-ms RGPU_CONNECT_TIMEOUT_MS 3000
 *   timeout          RGPU_SCHED_TIMEOUT        10 (seconds a scheduler request may take)
 *   key              RGPU_KEY                  (/etc/rgpu/cluster.key when readable)
 *   (not in files)   RGPU_LEASE_TOKEN          the lease's token: --token
 *
 * RGPU_CONFIG names another file (the CLI's --config too). Precedence:
 * default < file < environment < command line, as everywhere.
 */
#ifndef RGPU_CLIENT_CONF_H
#define RGPU_CLIENT_CONF_H

#include <stddef.h>

#include "rgpu/options.h"

typedef enum {
    RGPU_CLIENT_TRANSPORT_AUTO = 0,     /* as each address says (tcp:// when it says none) */
    RGPU_CLIENT_TRANSPORT_TCP,
    RGPU_CLIENT_TRANSPORT_VERBS,
} rgpu_client_transport_t;

typedef struct {
    char servers[4096];         /* comma-separated [scheme://]HOST:PORT; "" = none */
    char scheduler[256];
    int transport;              /* rgpu_client_transport_t */
    int connect_timeout_ms;
    int sched_timeout_ms;
    char key[512];              /* "" = RGPU_SCHED_DEFAULT_KEY when it exists */
    char token[8192];           /* RGPU_LEASE_TOKEN or --token; never from a file */
    int json;                   /* the CLI's --json */
    rgpu_opt_state_t opt;
} rgpu_client_conf_t;

/* The rows, for programs that build their own table around them (the CLI
 * adds its synopsis and description). servers is row 0, for its origin. */
#define RGPU_CLIENT_CONF_ROW_SERVERS 0
extern const rgpu_opt_t rgpu_client_conf_rows[];
extern const size_t rgpu_client_conf_nrows;

/* Fills *table with the client rows and the file's defaults (section
 * "client", RGPU_CONFIG, client.conf), for program. The caller may then set
 * the texts. */
void rgpu_client_conf_table(rgpu_opt_table_t *table, const char *program);

/*
 * Reads the client configuration without a command line: defaults, the
 * file (RGPU_CONFIG or client.conf), then getenv_fn (NULL: no environment,
 * as in slurmstepd). For libraries that may not print: returns 0, or -1
 * with the first error in why ("/etc/rgpu/client.conf:3: unknown key ...").
 */
int rgpu_client_conf_load(rgpu_client_conf_t *conf, rgpu_opt_getenv_fn getenv_fn, char *why,
                          size_t why_cap);

/* The address to connect to for addr: with transport tcp or verbs, an
 * address without a scheme gets that one; an address with a scheme keeps
 * it (a lease names its servers exactly). Returns 0, or -1 when out is too
 * small. */
int rgpu_client_conf_address(const rgpu_client_conf_t *conf, const char *addr, char *out,
                             size_t cap);

#endif
