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

/* The values of RGPU_TRANSPORT, as rgpu_transport_choose (rgpu/transport.h)
 * reads them: which of the addresses a server is reachable at to use. A
 * bare HOST:PORT is a TCP address. */
typedef enum {
    RGPU_CLIENT_TRANSPORT_AUTO = 0,     /* what the address says */
    RGPU_CLIENT_TRANSPORT_TCP,          /* TCP addresses only */
    RGPU_CLIENT_TRANSPORT_VERBS,        /* verbs:// addresses only */
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

/* Whether addr may be used under conf->transport: any with auto, a TCP
 * address (tcp:// or none) with tcp, a verbs:// one with verbs. Returns 0,
 * or -1 with a sentence in why ("transport = verbs, but the server
 * gpu1:7070 offers no verbs:// address"). */
int rgpu_client_conf_address_ok(const rgpu_client_conf_t *conf, const char *addr, char *why,
                                size_t why_cap);

#endif
