/*
 * spank_rgpu.so: `--rgpu=N[:mem=SIZE][:api=opencl|cuda][:shared]` on srun,
 * sbatch and salloc gives the job N remote GPUs from rgpu-scheduler.
 *
 *   plugstack.conf:
 *     optional /usr/lib/x86_64-linux-gnu/slurm-wlm/spank_rgpu.so \
 *         [config=FILE] [scheduler=HOST:PORT] [icd_vendors=DIR] [timeout=SECONDS]
 *         [ttl=SECONDS] [key=FILE] [state_dir=/DIR] [munge_socket=PATH]
 * Those words win over /etc/rgpu/client.conf (config=FILE names another),
 * which gives the scheduler, its timeout and the key (spank_options.c;
 * spank-rgpu(8) is printed from the same table).
 * Requests are signed with the cluster key (key=, default
 * /etc/rgpu/cluster.key when it exists): a scheduler with --key refuses
 * unsigned requests naming a job. Without a key they carry root's MUNGE
 * credential instead (munged at munge_socket=, RGPU_MUNGE_SOCKET or
 * libmunge's default), which a scheduler with --auth munge accepts for job
 * ids. The lease is owned by the job's user (AllocRequest.uid), who can
 * then list, renew and release it with the rgpu CLI.
 *
 * Where each part runs (see ../shared/notes/slurm-in-ci.md):
 *   srun/sbatch/salloc  the option is parsed: a malformed value stops the
 *                       submission; the value goes to prolog/epilog
 *                       (spank_job_control_setenv: SPANK_RGPU).
 *   slurmstepd          init_post_opt (root, every step, the batch step
 *                       too) asks the scheduler for "the lease of job J":
 *                       the first step creates it, later steps and nodes
 *                       get the same one. It never fails (that would drain
 *                       the node): a failure is remembered and
 *                       task_init_privileged fails each task with the
 *                       message, so the job FAILS and the node stays up.
 *                       Tasks get RGPU_SERVERS, RGPU_LEASE_TOKEN,
 *                       RGPU_LEASE, RGPU_SCHEDULER and OCL_ICD_VENDORS
 *                       (api=cuda: LD_LIBRARY_PATH with cuda_libdir first).
 *   job_epilog          releases the lease of job J (once per node; the
 *                       second release finds nothing), always returns 0;
 *                       for jobs with SPANK_RGPU or a marker STATE_DIR/job.J
 *                       left by init_post_opt on this node.
 * Leases of jobs that vanish without an epilog (a dead node) expire after
 * ttl, or `rgpu-scheduler --slurm-reclaim` releases them sooner.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

#include "rgpu/sched_client.h"
#include "rgpu/token.h"
#include "rgpu/util.h"
#include "scheduler.pb-c.h"
#include "spank_options.h"

SPANK_PLUGIN(rgpu, 1);

typedef struct {
    int set;
    uint32_t count;
    uint64_t mem;
    int api;
    int shared;
    char text[128];
} rgpu_spank_req_t;

static rgpu_spank_req_t rgpu_spank_req;
/* Why this step's tasks cannot have their GPUs ("" when they can). */
static char rgpu_spank_failure[1024];

static int rgpu_spank_opt_cb(int val, const char *optarg, int remote);

static struct spank_option rgpu_spank_opts[] = {
    {"rgpu", "N[:mem=SIZE][:api=opencl|cuda][:shared]",
     "Lease N remote GPUs (rgpu) for the job; its tasks' OpenCL programs run on them. "
     "mem=SIZE: each GPU has at least SIZE of memory (512M, 4G; with shared, SIZE is "
     "reserved per GPU and is the job's quota); api=opencl|cuda: GPUs that serve that "
     "API; shared: share the GPUs with other shared jobs. Example: --rgpu=2:mem=8G",
     1, 0, rgpu_spank_opt_cb},
    SPANK_OPTIONS_TABLE_END};

/* Parses "N[:mem=SIZE][:api=opencl|cuda][:shared]"; why gets what is wrong. */
static int rgpu_spank_parse(const char *text, rgpu_spank_req_t *req, char *why, size_t cap)
{
    char buf[128], *save = NULL, *part, *end;
    unsigned long n;

    memset(req, 0, sizeof(*req));
    if (!text || !*text) {
        snprintf(why, cap, "--rgpu needs a value: the number of GPUs, e.g. --rgpu=1");
        return -1;
    }
    if (strlen(text) >= sizeof(buf)) {
        snprintf(why, cap, "--rgpu=%.40s...: too long", text);
        return -1;
    }
    strcpy(buf, text);
    part = strtok_r(buf, ":", &save);
    errno = 0;
    n = part ? strtoul(part, &end, 10) : 0;
    if (!part || *end || errno || n < 1 || n > 4096 || *part < '0' || *part > '9') {
        snprintf(why, cap, "--rgpu=%s: expected the number of GPUs (1 to 4096) first, "
                 "e.g. --rgpu=2 or --rgpu=1:mem=4G", text);
        return -1;
    }
    req->count = (uint32_t)n;
    while ((part = strtok_r(NULL, ":", &save))) {
        if (strncmp(part, "mem=", 4) == 0) {
            if (rgpu_size_parse(part + 4, &req->mem) != 0 || !req->mem) {
                snprintf(why, cap, "--rgpu=%s: mem=%s: expected a size such as 512M or 4G",
                         text, part + 4);
                return -1;
            }
        } else if (strcmp(part, "api=opencl") == 0) {
            req->api = RGPU__API_FAMILY__API_OPENCL;
        } else if (strcmp(part, "api=cuda") == 0) {
            req->api = RGPU__API_FAMILY__API_CUDA;
        } else if (strncmp(part, "api=", 4) == 0) {
            snprintf(why, cap, "--rgpu=%s: api=%s: expected api=opencl or api=cuda", text,
                     part + 4);
            return -1;
        } else if (strcmp(part, "shared") == 0) {
            req->shared = 1;
        } else {
            snprintf(why, cap, "--rgpu=%s: unknown part \"%s\" (expected mem=SIZE, "
                     "api=opencl|cuda or shared)", text, part);
            return -1;
        }
    }
    snprintf(req->text, sizeof(req->text), "%s", text);
    req->set = 1;
    return 0;
}

static int rgpu_spank_opt_cb(int val, const char *optarg, int remote)
{
    char why[256];

    (void)val;
    if (rgpu_spank_parse(optarg, &rgpu_spank_req, why, sizeof(why)) != 0) {
        /* remote: cannot happen (validated at submission); never fail there. */
        if (remote)
            return 0;
        slurm_error("rgpu: %s", why);
        return -1;
    }
    return 0;
}

/* conf from plugstack.conf's words over client.conf; a mistake is logged
 * where the administrator and the user see it. */
static int rgpu_spank_conf(int ac, char **av, rgpu_spank_conf_t *conf)
{
    char why[700];

    if (rgpu_spank_conf_load(ac, av, conf, why, sizeof(why)) == 0)
        return 0;
    slurm_error("rgpu: %s", why);
    return -1;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
    rgpu_spank_conf_t conf;

    (void)ac;
    (void)av;
    if (spank_context() == S_CTX_SLURMD || spank_context() == S_CTX_JOB_SCRIPT)
        return 0;
    /* A bad plugstack line is reported where users see it, but must not
     * stop slurmstepd (that drains the node): checked, not fatal. */
    if (!spank_remote(sp) && rgpu_spank_conf(ac, av, &conf) != 0)
        slurm_error("rgpu: the administrator's plugstack.conf line is wrong; using defaults");
    return spank_option_register(sp, &rgpu_spank_opts[0]) == ESPANK_SUCCESS ? 0 : -1;
}

static int rgpu_spank_job_id(spank_t sp, char *out, size_t cap)
{
    uint32_t id = 0;

    if (spank_get_item(sp, S_JOB_ID, &id) == ESPANK_SUCCESS && id) {
        snprintf(out, cap, "%u", id);
        return 0;
    }
    if (getenv("SLURM_JOB_ID")) {
        snprintf(out, cap, "%s", getenv("SLURM_JOB_ID"));
        return 0;
    }
    return -1;
}

/* Why the last request went without a MUNGE credential ("" when it had one). */
static char rgpu_spank_munge_error[400];

/* The client for conf: signed with the cluster key (as root in slurmstepd
 * and the epilog). A key named in plugstack.conf must load; the default
 * one may be absent (requests then carry root's MUNGE credential when
 * munged can make one, else go unsigned). Returns 0, or -1 with why. */
static int rgpu_spank_client(const rgpu_spank_conf_t *conf, rgpu_sched_client_t *client,
                             rgpu_token_key_t *key, char *why, size_t cap)
{
    memset(client, 0, sizeof(*client));
    client->addr = conf->scheduler;
    client->timeout_ms = conf->timeout_ms;
    client->munge = 1;
    client->munge_socket = conf->munge_socket;
    client->munge_error = rgpu_spank_munge_error;
    client->munge_error_cap = sizeof(rgpu_spank_munge_error);
    if (!*conf->key || (conf->key_default && access(conf->key, F_OK) != 0))
        return 0;
    client->munge = 0;
    if (rgpu_token_key_load(conf->key, key, why, cap) != RGPU_OK)
        return -1;
    client->key = key;
    return 0;
}

/* RGPU_SERVERS for a lease: its servers, each once, in lease order. */
static void rgpu_spank_servers(const Rgpu__Lease *l, char *out, size_t cap)
{
    size_t len = 0;

    *out = '\0';
    for (size_t g = 0; g < l->n_gpus; g++) {
        int seen = 0;

        for (size_t k = 0; k < g; k++)
            seen |= strcmp(l->gpus[k]->server, l->gpus[g]->server) == 0;
        if (!seen && len < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? "," : "",
                                    l->gpus[g]->server);
    }
}

/* STATE_DIR/job.J: this node holds a lease of job J, so its epilog
 * releases it even when --rgpu reached no job control environment (given
 * only to an srun inside an allocation). */
static void rgpu_spank_marker(const rgpu_spank_conf_t *conf, const char *job, char *out,
                              size_t cap)
{
    snprintf(out, cap, "%s/job.%s", conf->state_dir, job);
}

/* The remote part: get or create the lease of this job, set the tasks'
 * environment. Never returns an error (that would drain the node). */
static void rgpu_spank_remote(spank_t sp, int ac, char **av)
{
    Rgpu__AllocRequest req = RGPU__ALLOC_REQUEST__INIT;
    rgpu_sched_client_t client;
    rgpu_token_key_t key;
    rgpu_spank_conf_t conf;
    Rgpu__LeaseReply *r;
    char job[32], user[128] = "", err[512], servers[2048], id[32];
    uint32_t uid = 0;
    struct passwd *pw;

    if (rgpu_spank_conf(ac, av, &conf) != 0) {
        snprintf(rgpu_spank_failure, sizeof(rgpu_spank_failure),
                 "rgpu: the plugin's plugstack.conf line is wrong (see slurmd's log); "
                 "no GPUs for job");
        return;
    }
    if (rgpu_spank_job_id(sp, job, sizeof(job)) != 0) {
        snprintf(rgpu_spank_failure, sizeof(rgpu_spank_failure), "rgpu: no Slurm job id");
        return;
    }
    if (spank_get_item(sp, S_JOB_UID, &uid) == ESPANK_SUCCESS) {
        /* The job's user owns the lease (believed from the key or root). */
        req.uid = uid;
        req.uid_set = 1;
        if ((pw = getpwuid(uid)))
            snprintf(user, sizeof(user), "%s", pw->pw_name);
    }
    req.count = rgpu_spank_req.count;
    req.api = rgpu_spank_req.api;
    req.shared = rgpu_spank_req.shared;
    req.min_memory = rgpu_spank_req.mem;
    if (req.shared)
        req.memory = rgpu_spank_req.mem;
    req.slurm_job_id = job;
    req.user = user;
    req.ttl_s = (uint32_t)conf.ttl_s;
    if (rgpu_spank_client(&conf, &client, &key, err, sizeof(err)) != 0) {
        snprintf(rgpu_spank_failure, sizeof(rgpu_spank_failure),
                 "rgpu: job %s: cannot sign requests to the scheduler: %s", job, err);
        return;
    }
    r = rgpu_sched_call(&client, RGPU__MSG_TYPE__MSG_SCHED_ALLOC, &req.base,
                        RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, &rgpu__lease_reply__descriptor,
                        err, sizeof(err));
    if (!r) {
        snprintf(rgpu_spank_failure, sizeof(rgpu_spank_failure),
                 "rgpu: job %s: cannot get %u remote GPUs: %s", job, req.count, err);
        return;
    }
    if (r->status || !r->lease) {
        snprintf(rgpu_spank_failure, sizeof(rgpu_spank_failure),
                 "rgpu: job %s: the scheduler at %s refused %u GPUs (--rgpu=%s): %.300s%s%.200s",
                 job,
                 conf.scheduler, req.count, rgpu_spank_req.text,
                 *r->reason ? r->reason : "no reason given",
                 r->status == RGPU_ERR_REFUSED && *rgpu_spank_munge_error
                     ? "; no cluster key and no MUNGE credential: " : "",
                 r->status == RGPU_ERR_REFUSED ? rgpu_spank_munge_error : "");
        rgpu__lease_reply__free_unpacked(r, NULL);
        return;
    }
    rgpu_spank_servers(r->lease, servers, sizeof(servers));
    snprintf(id, sizeof(id), "%llu", (unsigned long long)r->lease->id);
    spank_setenv(sp, "RGPU_SERVERS", servers, 1);
    spank_setenv(sp, "RGPU_LEASE_TOKEN", r->lease->token, 1);
    spank_setenv(sp, "RGPU_LEASE", id, 1);
    spank_setenv(sp, "RGPU_SCHEDULER", conf.scheduler, 1);
    if (*conf.icd_vendors)
        spank_setenv(sp, "OCL_ICD_VENDORS", conf.icd_vendors, 1);
    if (r->lease->api == RGPU__API_FAMILY__API_CUDA) {
        /* rgpu's libcudart.so.13 first, so the tasks' programs (built with
         * -cudart shared) load it instead of NVIDIA's. */
        static char old[16384], path[sizeof(old) + sizeof(conf.cuda_libdir) + 1];
        spank_err_t got = spank_getenv(sp, "LD_LIBRARY_PATH", old, sizeof(old));

        if (got == ESPANK_NOSPACE) {
            slurm_error("rgpu: job %s: LD_LIBRARY_PATH is longer than %zu characters; "
                        "not adding %s to it", job, sizeof(old) - 1, conf.cuda_libdir);
        } else {
            if (got != ESPANK_SUCCESS)
                old[0] = '\0';
            snprintf(path, sizeof(path), "%s%s%s", conf.cuda_libdir, *old ? ":" : "", old);
            spank_setenv(sp, "LD_LIBRARY_PATH", path, 1);
        }
    }
    slurm_info("rgpu: job %s: lease %s, %zu GPUs on %s", job, id, r->lease->n_gpus, servers);
    {
        char marker[600];
        FILE *f;

        rgpu_spank_marker(&conf, job, marker, sizeof(marker));
        if (mkdir(conf.state_dir, 0700) != 0 && errno != EEXIST)
            slurm_error("rgpu: cannot create %s: %s", conf.state_dir, strerror(errno));
        else if (!(f = fopen(marker, "w")))
            slurm_error("rgpu: cannot create %s: %s", marker, strerror(errno));
        else
            fclose(f);
    }
    rgpu__lease_reply__free_unpacked(r, NULL);
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
    if (!rgpu_spank_req.set)
        return 0;
    if (spank_remote(sp)) {
        rgpu_spank_remote(sp, ac, av);
        return 0;
    }
    /* srun/sbatch/salloc: tell prolog and epilog this job has GPUs. An
     * srun inside an allocation may not be allowed to: not an error. */
    if (spank_context() == S_CTX_LOCAL || spank_context() == S_CTX_ALLOCATOR)
        spank_job_control_setenv(sp, "RGPU", rgpu_spank_req.text, 1);
    return 0;
}

/* The clean way to fail: the task exits 1, the job FAILS, the node stays up. */
int slurm_spank_task_init_privileged(spank_t sp, int ac, char **av)
{
    (void)sp;
    (void)ac;
    (void)av;
    if (!rgpu_spank_req.set || !*rgpu_spank_failure)
        return 0;
    fprintf(stderr, "%s\n", rgpu_spank_failure);
    fflush(stderr);
    slurm_error("%s", rgpu_spank_failure);
    return -1;
}

int slurm_spank_job_epilog(spank_t sp, int ac, char **av)
{
    Rgpu__ReleaseRequest req = RGPU__RELEASE_REQUEST__INIT;
    rgpu_sched_client_t client;
    rgpu_token_key_t key;
    rgpu_spank_conf_t conf;
    Rgpu__SchedStatus *r;
    char job[32], err[512];

    char marker[600];
    int held;

    if (rgpu_spank_conf(ac, av, &conf) != 0 || rgpu_spank_job_id(sp, job, sizeof(job)) != 0)
        return 0;
    /* Only jobs submitted with --rgpu (SPANK_RGPU from job_control_setenv)
     * or that took a lease on this node (the marker). */
    rgpu_spank_marker(&conf, job, marker, sizeof(marker));
    held = unlink(marker) == 0;
    if (!held && !getenv("SPANK_RGPU"))
        return 0;
    req.slurm_job_id = job;
    if (rgpu_spank_client(&conf, &client, &key, err, sizeof(err)) != 0) {
        slurm_error("rgpu: job %s: cannot release its lease: %s", job, err);
        return 0;
    }
    r = rgpu_sched_call(&client, RGPU__MSG_TYPE__MSG_SCHED_RELEASE, &req.base,
                        RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor, err,
                        sizeof(err));
    if (!r) {
        slurm_error("rgpu: job %s: cannot release its lease: %s (it expires after its ttl, or "
                    "rgpu-scheduler --slurm-reclaim releases it)", job, err);
        return 0;
    }
    if (r->status == 0)
        slurm_info("rgpu: job %s: lease released", job);
    else if (r->status == RGPU_ERR_REFUSED)
        slurm_error("rgpu: job %s: the scheduler refused to release its lease: %s%s%s", job,
                    r->reason, *rgpu_spank_munge_error ? "; no MUNGE credential: " : "",
                    rgpu_spank_munge_error);
    else
        slurm_debug("rgpu: job %s: nothing to release: %s", job, r->reason);
    rgpu__sched_status__free_unpacked(r, NULL);
    return 0;
}
