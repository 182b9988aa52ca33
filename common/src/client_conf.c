/*
 * The client.conf rows shared by the ICD, the rgpu CLI and the Slurm
 * plugin; see rgpu/client_conf.h.
 */
#include "rgpu/client_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RGPU_SYSCONFDIR
#define RGPU_SYSCONFDIR "/etc/rgpu"
#endif

static const char *const rgpu_client_transports[] = {"auto", "tcp", "verbs", NULL};

#define RGPU_CC_S(f) offsetof(rgpu_client_conf_t, f), sizeof(((rgpu_client_conf_t *)0)->f)
#define RGPU_CC_INT(f) offsetof(rgpu_client_conf_t, f), 0

const rgpu_opt_t rgpu_client_conf_rows[] = {
    {"servers", RGPU_OPT_ADDR_LIST, "", "ADDR:PORT,...",
     "the rgpu-servers whose GPUs the OpenCL ICD offers, when no lease names them (a lease "
     "token in RGPU_LEASE_TOKEN names its own; RGPU_SERVERS wins over both)",
     "RGPU_SERVERS", NULL, RGPU_CC_S(servers), 0, 0, NULL, RGPU_OPT_NO_CMDLINE, NULL},
    {"scheduler", RGPU_OPT_ADDR, "127.0.0.1:7080", "ADDR:PORT",
     "the rgpu-scheduler to ask for leases and listings",
     "RGPU_SCHEDULER", NULL, RGPU_CC_S(scheduler), 0, 0, NULL, 0, NULL},
    {"transport", RGPU_OPT_CHOICE, "auto", "auto|tcp|verbs",
     "which of a server's addresses to use: auto (what the address says: verbs:// or "
     "tcp://, and a bare HOST:PORT is TCP), tcp (TCP addresses only) or verbs (verbs:// "
     "addresses only: a server without one is an error, never a silent fall back to TCP)",
     "RGPU_TRANSPORT", NULL, RGPU_CC_INT(transport), 0, 0, rgpu_client_transports,
     RGPU_OPT_NO_CMDLINE, NULL},
    {"connect-timeout-ms", RGPU_OPT_UINT, "3000", "MS",
     "milliseconds the ICD waits for a server to accept and answer its hello (1 to 3600000)",
     "RGPU_CONNECT_TIMEOUT_MS", NULL, RGPU_CC_INT(connect_timeout_ms), 1, 3600000, NULL,
     RGPU_OPT_NO_CMDLINE, NULL},
    {"timeout", RGPU_OPT_SECONDS_MS, "10", "SECONDS",
     "seconds a request to the scheduler may take, e.g. 10 or 0.5 (up to a day)",
     "RGPU_SCHED_TIMEOUT", NULL, RGPU_CC_INT(sched_timeout_ms), 1, 86400000, NULL, 0, NULL},
    {"key", RGPU_OPT_STRING, "", "FILE",
     "the cluster key that signs requests to the scheduler (default: /etc/rgpu/cluster.key "
     "when it is readable, as for root and the Slurm plugin; users go without, or with MUNGE)",
     "RGPU_KEY", NULL, RGPU_CC_S(key), 0, 0, NULL, 0, NULL},
    {"token", RGPU_OPT_STRING, "", "TOKEN",
     "a lease token: proves to the scheduler that the caller holds the lease it renews or "
     "releases, and to servers that the ICD may use their GPUs (never in a file)",
     "RGPU_LEASE_TOKEN", NULL, RGPU_CC_S(token), 0, 0, NULL, RGPU_OPT_NO_FILE | RGPU_OPT_SECRET,
     NULL},
    {"json", RGPU_OPT_FLAG, "no", NULL, "print listings and leases as JSON",
     NULL, NULL, RGPU_CC_INT(json), 0, 0, NULL, RGPU_OPT_NO_FILE | RGPU_OPT_NO_ENV, NULL},
};

const size_t rgpu_client_conf_nrows = sizeof(rgpu_client_conf_rows) /
                                      sizeof(rgpu_client_conf_rows[0]);

void rgpu_client_conf_table(rgpu_opt_table_t *table, const char *program)
{
    memset(table, 0, sizeof(*table));
    table->program = program;
    table->man_section = 1;
    table->summary = "rgpu client";
    table->synopsis = "";
    table->description = "";
    table->section = "client";
    table->config_file = RGPU_SYSCONFDIR "/client.conf";
    table->config_env = "RGPU_CONFIG";
    table->conf_title = "rgpu-client.conf";
    table->conf_readers = "the OpenCL ICD (librgpu\\-opencl.so: every OpenCL program on the "
                          "machine), \\fBrgpu\\fR(1) and the Slurm plugin, "
                          "\\fBspank\\-rgpu\\fR(8)";
    table->opts = rgpu_client_conf_rows;
    table->nopts = rgpu_client_conf_nrows;
}

int rgpu_client_conf_load(rgpu_client_conf_t *conf, rgpu_opt_getenv_fn getenv_fn, char *why,
                          size_t why_cap)
{
    rgpu_opt_table_t table;
    char *text = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&text, &len);
    FILE *out = fopen("/dev/null", "w");
    int rc = -1;

    if (!err || !out) {
        snprintf(why, why_cap, "out of memory reading the client configuration");
        goto out_close;
    }
    rgpu_client_conf_table(&table, "rgpu");
    rc = rgpu_opt_load(&table, conf, &conf->opt, 0, NULL, getenv_fn, out, err) == RGPU_OPT_RUN
             ? 0 : -1;
    fflush(err);
    if (rc != 0) {
        /* "rgpu: FILE:LINE: ..." without the program, which is not ours. */
        const char *msg = text && strncmp(text, "rgpu: ", 6) == 0 ? text + 6 : text ? text : "";

        snprintf(why, why_cap, "%.*s", (int)strcspn(msg, "\n"), msg);
    }
out_close:
    if (err)
        fclose(err);
    if (out)
        fclose(out);
    free(text);
    return rc;
}

int rgpu_client_conf_address_ok(const rgpu_client_conf_t *conf, const char *addr, char *why,
                                size_t why_cap)
{
    int verbs = strncmp(addr, "verbs://", 8) == 0;
    int tcp = !strstr(addr, "://") || strncmp(addr, "tcp://", 6) == 0;

    if (conf->transport == RGPU_CLIENT_TRANSPORT_TCP && !tcp) {
        snprintf(why, why_cap, "transport = tcp, but the server %.200s offers no TCP address",
                 addr);
        return -1;
    }
    if (conf->transport == RGPU_CLIENT_TRANSPORT_VERBS && !verbs) {
        snprintf(why, why_cap, "transport = verbs, but the server %.200s offers no verbs:// "
                 "address", addr);
        return -1;
    }
    return 0;
}
