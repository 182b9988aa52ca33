/*
 * --slurm-reclaim SECONDS: every SECONDS, run `squeue -h -o %A` (the ids of
 * the jobs Slurm still knows: pending, running, completing) and release the
 * leases whose slurm_job_id is not among them: their job ended without an
 * epilog reaching us (a node died, the scheduler was down at the time).
 *
 *   uv_timer ─▶ uv_spawn squeue (stdout into a pipe; the loop never blocks)
 *                 └─ exit 0 ─▶ release leases of vanished jobs
 *                    anything else (not found, error, killed): release nothing
 *
 * A lease made while squeue ran may belong to a job squeue did not list
 * yet: only leases that existed when squeue started are considered. A
 * squeue still running at the next period is killed (nothing released).
 * Uses the SLURM_CONF and PATH of the scheduler's environment.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "rgpu/log.h"
#include "sched_core.h"
#include "sched_metrics.h"

int rgpu_slurm_reclaim_start(uv_loop_t *loop, rgpu_sched_t *sched, const char *interval);
void rgpu_slurm_reclaim_cleanup(void);

#define RGPU_SLURM_OUT_MAX (16u << 20)

static struct {
    rgpu_sched_t *sched;
    uv_timer_t timer;
    uv_process_t proc;
    uv_pipe_t out;
    int running;        /* squeue spawned, its exit not handled yet */
    int out_open;
    int exited;         /* its exit arrived */
    int64_t status;
    int signal;
    uint64_t max_id;    /* leases up to this id existed when squeue started */
    char *buf;
    size_t len, cap;
    int overflow;
} rgpu_slurm;

typedef struct {
    uint64_t *ids;
    size_t n, cap;
    uint64_t max_id;
    char **jobs;        /* sorted live job ids */
    size_t njobs;
} rgpu_slurm_scan_t;

static int rgpu_slurm_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void rgpu_slurm_max_fn(uint64_t key, void *value, void *arg)
{
    uint64_t *max = arg;

    (void)value;
    if (key > *max)
        *max = key;
}

static void rgpu_slurm_scan_fn(uint64_t key, void *value, void *arg)
{
    rgpu_slurm_scan_t *scan = arg;
    const rgpu_sched_lease_t *lease = value;
    const char *job = lease->pb->slurm_job_id;

    if (!*job || key > scan->max_id)
        return;
    if (bsearch(&job, scan->jobs, scan->njobs, sizeof(char *), rgpu_slurm_cmp))
        return;
    if (scan->n == scan->cap) {
        size_t cap = scan->cap ? scan->cap * 2 : 16;
        uint64_t *ids = realloc(scan->ids, cap * sizeof(*ids));

        if (!ids)
            return;
        scan->ids = ids;
        scan->cap = cap;
    }
    scan->ids[scan->n++] = key;
}

/* squeue succeeded: buf holds one job id per line. */
static void rgpu_slurm_reclaim(void)
{
    rgpu_slurm_scan_t scan = {NULL, 0, 0, rgpu_slurm.max_id, NULL, 0};
    size_t lines = 0;
    char *p, *save = NULL;

    for (size_t i = 0; i < rgpu_slurm.len; i++)
        lines += rgpu_slurm.buf[i] == '\n';
    scan.jobs = calloc(lines + 1, sizeof(char *));
    if (!scan.jobs) {
        rgpu_error("slurm", "out of memory reading squeue's output");
        return;
    }
    for (p = strtok_r(rgpu_slurm.buf, " \t\r\n", &save); p; p = strtok_r(NULL, " \t\r\n", &save))
        if (scan.njobs <= lines)
            scan.jobs[scan.njobs++] = p;
    qsort(scan.jobs, scan.njobs, sizeof(char *), rgpu_slurm_cmp);
    rgpu_htable_foreach(&rgpu_slurm.sched->leases, rgpu_slurm_scan_fn, &scan);
    for (size_t i = 0; i < scan.n; i++) {
        rgpu_sched_lease_t *lease = rgpu_htable_find(&rgpu_slurm.sched->leases, scan.ids[i]);
        char job[128], reason[256];

        if (!lease)
            continue;
        snprintf(job, sizeof(job), "%s", lease->pb->slurm_job_id);
        if (rgpu_sched_release(rgpu_slurm.sched, scan.ids[i], NULL, reason, sizeof(reason)) ==
            RGPU_OK) {
            rgpu_info("slurm", "lease %llu: job %s is gone from Slurm; released",
                      (unsigned long long)scan.ids[i], job);
            rgpu_sched_metrics.lease_ends_total[RGPU_SCHED_END_JOB_GONE]++;
        } else
            rgpu_warn("slurm", "lease %llu of vanished job %s: %s",
                      (unsigned long long)scan.ids[i], job, reason);
    }
    rgpu_debug("slurm", "squeue: %zu live jobs, %zu leases reclaimed", scan.njobs, scan.n);
    free(scan.ids);
    free(scan.jobs);
}

/* Both the exit and the end of the output must have arrived. */
static void rgpu_slurm_done(void)
{
    if (!rgpu_slurm.exited || rgpu_slurm.out_open)
        return;
    if (rgpu_slurm.status == 0 && rgpu_slurm.signal == 0 && !rgpu_slurm.overflow)
        rgpu_slurm_reclaim();
    else
        rgpu_warn("slurm", "squeue failed (exit status %lld, signal %d%s): no lease reclaimed",
                  (long long)rgpu_slurm.status, rgpu_slurm.signal,
                  rgpu_slurm.overflow ? ", output too long" : "");
    rgpu_slurm.running = 0;
    rgpu_slurm.len = 0;
}

static void rgpu_slurm_proc_closed(uv_handle_t *handle)
{
    (void)handle;
    rgpu_slurm_done();
}

static void rgpu_slurm_out_closed(uv_handle_t *handle)
{
    (void)handle;
    rgpu_slurm.out_open = 0;
    rgpu_slurm_done();
}

static void rgpu_slurm_on_exit(uv_process_t *proc, int64_t status, int signal)
{
    rgpu_slurm.status = status;
    rgpu_slurm.signal = signal;
    rgpu_slurm.exited = 1;
    uv_close((uv_handle_t *)proc, rgpu_slurm_proc_closed);
}

static void rgpu_slurm_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    if (rgpu_slurm.cap - rgpu_slurm.len < 4096 + 1) {
        size_t cap = rgpu_slurm.cap ? rgpu_slurm.cap * 2 : 65536;
        char *p = cap <= RGPU_SLURM_OUT_MAX ? realloc(rgpu_slurm.buf, cap) : NULL;

        if (!p) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        rgpu_slurm.buf = p;
        rgpu_slurm.cap = cap;
    }
    *buf = uv_buf_init(rgpu_slurm.buf + rgpu_slurm.len,
                       (unsigned)(rgpu_slurm.cap - rgpu_slurm.len - 1));
}

static void rgpu_slurm_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread > 0) {
        rgpu_slurm.len += (size_t)nread;
        rgpu_slurm.buf[rgpu_slurm.len] = '\0';
        return;
    }
    if (nread == 0)
        return;
    if (nread != UV_EOF)
        rgpu_slurm.overflow = 1;    /* out of buffer (UV_ENOBUFS) or a read error */
    if (!uv_is_closing((uv_handle_t *)stream))
        uv_close((uv_handle_t *)stream, rgpu_slurm_out_closed);
}

static void rgpu_slurm_on_timer(uv_timer_t *timer)
{
    char *args[] = {"squeue", "-h", "-o", "%A", NULL};
    uv_stdio_container_t stdio[3];
    uv_process_options_t opts;
    int rc;

    if (rgpu_slurm.running) {
        if (!rgpu_slurm.exited) {
            rgpu_warn("slurm", "squeue still runs after a whole period; killing it");
            uv_process_kill(&rgpu_slurm.proc, SIGKILL);
        }
        return;
    }
    rgpu_slurm.max_id = 0;
    rgpu_htable_foreach(&rgpu_slurm.sched->leases, rgpu_slurm_max_fn, &rgpu_slurm.max_id);
    if (rgpu_slurm.max_id == 0)
        return;     /* no lease: nothing to ask Slurm about */
    uv_pipe_init(timer->loop, &rgpu_slurm.out, 0);
    memset(&opts, 0, sizeof(opts));
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&rgpu_slurm.out;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    opts.file = "squeue";
    opts.args = args;
    opts.stdio = stdio;
    opts.stdio_count = 3;
    opts.exit_cb = rgpu_slurm_on_exit;
    rgpu_slurm.len = 0;
    rgpu_slurm.overflow = 0;
    rgpu_slurm.exited = 0;
    rc = uv_spawn(timer->loop, &rgpu_slurm.proc, &opts);
    if (rc != 0) {
        rgpu_warn("slurm", "cannot run squeue: %s; no lease reclaimed", uv_strerror(rc));
        uv_close((uv_handle_t *)&rgpu_slurm.proc, NULL);
        uv_close((uv_handle_t *)&rgpu_slurm.out, NULL);
        return;
    }
    rgpu_slurm.running = 1;
    rgpu_slurm.out_open = 1;
    uv_read_start((uv_stream_t *)&rgpu_slurm.out, rgpu_slurm_alloc_cb, rgpu_slurm_read_cb);
}

/* Starts the periodic check. interval: "" (off) or seconds. Returns 0, or
 * -1 with a message logged. The handles are closed by the loop's shutdown
 * walk like every other; the output buffer is freed at exit. */
int rgpu_slurm_reclaim_start(uv_loop_t *loop, rgpu_sched_t *sched, const char *interval)
{
    char *end;
    unsigned long s;

    if (!interval || !*interval)
        return 0;
    s = strtoul(interval, &end, 10);
    if (*end || s < 1 || s > 86400) {
        rgpu_error("slurm", "--slurm-reclaim %s: expected seconds between checks, 1 to 86400",
                   interval);
        return -1;
    }
    rgpu_slurm.sched = sched;
    uv_timer_init(loop, &rgpu_slurm.timer);
    uv_timer_start(&rgpu_slurm.timer, rgpu_slurm_on_timer, s * 1000, s * 1000);
    /* It does not keep the loop alive: the listener and signals do. */
    uv_unref((uv_handle_t *)&rgpu_slurm.timer);
    rgpu_info("slurm", "reclaiming leases of jobs gone from Slurm every %lu s (squeue)", s);
    return 0;
}

/* After the loop ended. */
void rgpu_slurm_reclaim_cleanup(void)
{
    free(rgpu_slurm.buf);
    rgpu_slurm.buf = NULL;
    rgpu_slurm.cap = rgpu_slurm.len = 0;
}
