/*
 * The plugstack.conf arguments of spank_rgpu.so; see spank_options.h.
 */
#include "spank_options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/client_conf.h"
#include "rgpu/sched_client.h"

#ifndef RGPU_SYSCONFDIR
#define RGPU_SYSCONFDIR "/etc/rgpu"
#endif

#define RGPU_SPANK_S(f) offsetof(rgpu_spank_conf_t, f), sizeof(((rgpu_spank_conf_t *)0)->f)
#define RGPU_SPANK_INT(f) offsetof(rgpu_spank_conf_t, f), 0

static const rgpu_opt_t rgpu_spank_rows[] = {
    {"config", RGPU_OPT_STRING, RGPU_SYSCONFDIR "/client.conf", "FILE",
     "the client configuration to read first: its scheduler, timeout and key apply unless "
     "this line gives them (a file named here must exist; the default one may be absent)",
     NULL, NULL, RGPU_SPANK_S(config), 0, 0, NULL, 0, NULL, 0},
    {"scheduler", RGPU_OPT_ADDR, RGPU_SCHED_DEFAULT_ADDR, "HOST:PORT",
     "the rgpu-scheduler to ask for the job's lease", NULL, NULL, RGPU_SPANK_S(scheduler), 0, 0,
     NULL, 0, NULL, 0},
    {"icd_vendors", RGPU_OPT_STRING, "", "DIR",
     "the tasks' OCL_ICD_VENDORS: a directory holding rgpu.icd (default: the tasks keep the "
     "loader's, /etc/OpenCL/vendors)", NULL, NULL, RGPU_SPANK_S(icd_vendors), 0, 0, NULL, 0,
     NULL, 0},
    {"cuda_libdir", RGPU_OPT_STRING, RGPU_CUDA_LIBDIR_DEFAULT, "DIR",
     "the directory of rgpu's libcudart.so.13, put first in the LD_LIBRARY_PATH of the tasks "
     "of an api=cuda job", NULL, NULL, RGPU_SPANK_S(cuda_libdir), 0, 0, NULL, 0, NULL, 0},
    {"timeout", RGPU_OPT_SECONDS_MS, "10", "SECONDS",
     "seconds a request to the scheduler may take, e.g. 10 or 0.5", NULL, NULL,
     RGPU_SPANK_INT(timeout_ms), 1, 86400000, NULL, 0, NULL, 0},
    {"ttl", RGPU_OPT_UINT, "604800", "SECONDS",
     "lifetime of the job's lease (1 to 31536000); the epilog releases it sooner, and "
     "rgpu-scheduler --slurm-reclaim when the job vanishes without one", NULL, NULL,
     RGPU_SPANK_INT(ttl_s), 1, 31536000, NULL, 0, NULL, 0},
    {"key", RGPU_OPT_STRING, RGPU_SCHED_DEFAULT_KEY, "FILE",
     "the cluster key that signs requests naming a job (a key named here or in client.conf "
     "must load; the default one may be absent: requests then carry root's MUNGE credential)",
     NULL, NULL, RGPU_SPANK_S(key), 0, 0, NULL, 0, NULL, 0},
    {"state_dir", RGPU_OPT_STRING, "/run/rgpu-spank", "/DIR",
     "where each node marks the jobs whose lease it asked for, so that its epilog releases "
     "them (an absolute path)", NULL, NULL, RGPU_SPANK_S(state_dir), 0, 0, NULL, 0, NULL, 0},
    {"munge_socket", RGPU_OPT_STRING, "", "/PATH",
     "munged's socket for root's credential (default: RGPU_MUNGE_SOCKET or libmunge's)",
     NULL, NULL, RGPU_SPANK_S(munge_socket), 0, 0, NULL, 0, NULL, 0},
};

const rgpu_opt_table_t rgpu_spank_options = {
    .program = "spank-rgpu",
    .man_section = 8,
    .summary = "remote GPUs for Slurm jobs (srun, sbatch and salloc --rgpu=N)",
    .synopsis = "optional spank_rgpu.so [NAME=VALUE]...   (a line of plugstack.conf)",
    .description =
        "spank_rgpu.so adds --rgpu=N[:mem=SIZE][:api=opencl|cuda][:shared] to srun, sbatch "
        "and salloc. On the compute nodes it asks rgpu-scheduler for the job's lease (the "
        "first step creates it, later steps and nodes get the same one), gives the tasks "
        "RGPU_SERVERS, RGPU_LEASE_TOKEN, RGPU_LEASE, RGPU_SCHEDULER and OCL_ICD_VENDORS, and "
        "releases the lease in the job's epilog. A failure never drains the node: the job's "
        "tasks fail with the reason.\n\n"
        "mem=SIZE: each GPU has at least SIZE of memory (512M, 4G; with shared, SIZE is "
        "reserved per GPU and is the job's quota). api=opencl|cuda: GPUs that serve that API. "
        "shared: share the GPUs with other shared jobs. Example: srun --rgpu=2:mem=8G ./app.",
    .section = "client",
    .config_file = RGPU_SYSCONFDIR "/client.conf",
    .conf_title = "rgpu-client.conf",
    .opts = rgpu_spank_rows,
    .nopts = sizeof(rgpu_spank_rows) / sizeof(rgpu_spank_rows[0]),
    .key_value = 1,
    .man_extra = ".SH EXAMPLES\n.nf\noptional /usr/lib/x86_64\\-linux\\-gnu/slurm\\-wlm/"
                 "spank_rgpu.so icd_vendors=/etc/OpenCL/vendors timeout=5\n.fi\n",
};

int rgpu_spank_conf_load(int ac, char **av, rgpu_spank_conf_t *conf, char *why, size_t why_cap)
{
    rgpu_client_conf_t *client;
    rgpu_opt_table_t table;
    const char *path = NULL;
    char *cargv[] = {"spank_rgpu", "--config", NULL};
    FILE *devnull = fopen("/dev/null", "w");
    rgpu_opt_action_t action;
    int rc = -1;

    if (!devnull) {
        snprintf(why, why_cap, "cannot open /dev/null");
        return -1;
    }
    /* The defaults: never an error but a table bug. */
    action = rgpu_opt_load(&rgpu_spank_options, conf, &conf->opt, 0, NULL, NULL, devnull,
                           devnull);
    fclose(devnull);
    if (action != RGPU_OPT_RUN) {
        snprintf(why, why_cap, "the plugin's option table is broken");
        return -1;
    }
    for (int i = 0; i < ac; i++)
        if (strncmp(av[i], "config=", 7) == 0)
            path = av[i] + 7;

    /* client.conf, without the environment: slurmstepd's is not the user's. */
    client = calloc(1, sizeof(*client));
    if (!client) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    cargv[2] = (char *)path;
    rgpu_client_conf_table(&table, "rgpu");
    {
        char *text = NULL;
        size_t len = 0;
        FILE *err = open_memstream(&text, &len);
        FILE *out = fopen("/dev/null", "w");

        if (err && out)
            action = rgpu_opt_load(&table, client, &client->opt, path ? 3 : 0, cargv, NULL,
                                   out, err);
        else
            action = RGPU_OPT_EXIT_USAGE;
        if (err)
            fclose(err);
        if (out)
            fclose(out);
        if (action != RGPU_OPT_RUN)
            snprintf(why, why_cap, "%.*s", (int)strcspn(text ? text : "", "\n"),
                     text ? text : "cannot read the client configuration");
        free(text);
        if (action != RGPU_OPT_RUN)
            goto out_free;
    }
    if (client->opt.origin[rgpu_opt_row(&table, "scheduler")].from != RGPU_OPT_FROM_DEFAULT)
        snprintf(conf->scheduler, sizeof(conf->scheduler), "%s", client->scheduler);
    if (client->opt.origin[rgpu_opt_row(&table, "timeout")].from != RGPU_OPT_FROM_DEFAULT)
        conf->timeout_ms = client->sched_timeout_ms;
    conf->key_default = 1;
    if (client->key[0]) {
        snprintf(conf->key, sizeof(conf->key), "%s", client->key);
        conf->key_default = 0;
    }

    for (int i = 0; i < ac; i++) {
        const char *eq = strchr(av[i], '=');
        char name[32], reason[200];

        if (!eq || (size_t)(eq - av[i]) >= sizeof(name)) {
            snprintf(why, why_cap, "plugstack.conf: \"%s\" is not NAME=VALUE", av[i]);
            goto out_free;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - av[i]), av[i]);
        if (rgpu_opt_set(&rgpu_spank_options, conf, &conf->opt, name, eq + 1, reason,
                         sizeof(reason)) != 0) {
            snprintf(why, why_cap, "plugstack.conf: %s: %s (see spank-rgpu(8): config, "
                     "scheduler, icd_vendors, cuda_libdir, timeout, ttl, key, state_dir, munge_socket)",
                     av[i], reason);
            goto out_free;
        }
        if (strcmp(name, "key") == 0)
            conf->key_default = 0;
    }
    if (conf->state_dir[0] != '/' ||
        (conf->munge_socket[0] && conf->munge_socket[0] != '/')) {
        snprintf(why, why_cap, "plugstack.conf: state_dir and munge_socket must be absolute "
                 "paths");
        goto out_free;
    }
    rc = 0;
out_free:
    free(client);
    return rc;
}
