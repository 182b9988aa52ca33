/*
 * rgpu-bench internals: what rgpu_bench.c (options, reports), bench_tcp.c
 * (the raw TCP baseline and its peer), bench_cl.c (the OpenCL measurements,
 * run the same way on the rgpu platform and on the local one) and
 * bench_report.c (statistics, JSON, plot) share.
 *
 * Measurements are steps (one timed iteration each, in microseconds), so
 * that rgpu_bench.c can interleave the paths of one figure iteration by
 * iteration; bench_stats_compute turns the samples into the figures
 * printed. Nothing here asserts anything about speed: a benchmark reports,
 * it does not judge.
 */
#ifndef RGPU_BENCH_H
#define RGPU_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

/* ---- statistics (bench_report.c) ---- */

typedef struct {
    size_t n;
    double min, median, mean, p99, p999, max;   /* microseconds */
    double total;                               /* sum of the samples */
} bench_stats_t;

/* Sorts samples in place and fills *stats. n may be 0 (all figures 0). */
void bench_stats_compute(double *samples, size_t n, bench_stats_t *stats);

/* Bandwidth in MB/sec where MB = 2^20 bytes, as perftest reports it. */
double bench_mbps(uint64_t bytes, double usec);

/* Monotonic time in microseconds. */
double bench_now_us(void);

/* ---- progress on stderr (bench_report.c) ---- */

/* One line that rewrites itself on a terminal; silent when quiet is set. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_done(void);
extern int bench_quiet;

/* ---- a small JSON writer (bench_report.c) ----
 * Keys and values are written in order; the writer adds commas. */
typedef struct {
    FILE *f;
    int depth;
    int first[32];      /* no element yet at this depth */
} bench_json_t;

void bench_json_init(bench_json_t *j, FILE *f);
void bench_json_begin_obj(bench_json_t *j, const char *key);   /* key NULL inside arrays / at top */
void bench_json_end_obj(bench_json_t *j);
void bench_json_begin_arr(bench_json_t *j, const char *key);
void bench_json_end_arr(bench_json_t *j);
void bench_json_str(bench_json_t *j, const char *key, const char *value);
void bench_json_num(bench_json_t *j, const char *key, double value);   /* NaN writes null */
void bench_json_int(bench_json_t *j, const char *key, long long value);
void bench_json_bool(bench_json_t *j, const char *key, int value);
void bench_json_stats(bench_json_t *j, const char *key, const bench_stats_t *s);

/* ---- raw TCP baseline (bench_tcp.c) ---- */

/* What a connection to the peer does, chosen by its first message. */
typedef enum {
    BENCH_TCP_ECHO = 1,     /* peer receives size bytes and sends them back */
    BENCH_TCP_SINK = 2,     /* peer receives size bytes and answers 1 byte */
    BENCH_TCP_SOURCE = 3,   /* peer receives 1 byte and answers size bytes */
} bench_tcp_mode_t;

/* `rgpu-bench tcp-peer --listen HOST:PORT`: serves until killed. */
int bench_tcp_peer_main(int argc, char **argv);

/* A connection to the peer in one mode; each step is one timed iteration:
 *   ECHO    send size bytes, receive them back (ping-pong)
 *   SINK    send size bytes, wait for the 1-byte ack (like a blocking write)
 *   SOURCE  send 1 byte, receive size bytes (like a blocking read)
 * Return 0, or -1 with a message on stderr. */
typedef struct {
    int connected;              /* 0 in a zeroed struct: disconnect does nothing */
    int fd;                     /* a plain socket: the baseline measures the network */
    const char *addr;
    bench_tcp_mode_t mode;
    size_t size;
} bench_tcp_conn_t;

int bench_tcp_connect(bench_tcp_conn_t *c, const char *addr, bench_tcp_mode_t mode, size_t size);
/* buf holds size bytes: what is sent (ECHO, SINK), where data lands (ECHO, SOURCE). */
int bench_tcp_step(bench_tcp_conn_t *c, void *buf, double *us);
void bench_tcp_disconnect(bench_tcp_conn_t *c);

/* ---- OpenCL side (bench_cl.c) ---- */

typedef struct {
    const char *label;              /* "rgpu" or "local" */
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel k_empty, k_vadd, k_fma;
    char platform_name[256];
    char device_name[256];
    /* bandwidth resources, sized for the largest transfer */
    size_t bw_size;
    cl_mem bw_dev;                  /* the device buffer transfers go to and from */
    cl_mem bw_pinned;               /* CL_MEM_ALLOC_HOST_PTR, mapped at bw_pinned_ptr */
    void *bw_pinned_ptr;
} bench_cl_t;

/* Finds a platform: by exact name, else by case-insensitive substring of
 * its name or vendor. exclude (may be NULL) names a platform never chosen;
 * name NULL or "" picks the first platform that is not exclude. Returns
 * NULL when none matches. */
cl_platform_id bench_cl_find_platform(const char *name, const char *exclude);

/* Gives the local platforms what rgpu-server gives its own: opens every
 * platform but the one named skip (its devices counted) with this thread
 * under SCHED_BATCH, so that the threads they start (PoCL's workers)
 * inherit it, then goes back to SCHED_OTHER. Returns 0, or -1 with a
 * message on stderr. */
int bench_cl_platform_threads_batch(const char *skip);

/* How many threads of this process run under SCHED_BATCH. */
int bench_threads_batch(void);

/* Opens the first device of platform: context, queue, the bench's kernels.
 * Returns 0, or -1 with a message on stderr. */
int bench_cl_open(bench_cl_t *cl, const char *label, cl_platform_id platform);
void bench_cl_close(bench_cl_t *cl);

typedef enum {
    BENCH_LAT_FINISH,       /* clFinish on an empty queue */
    BENCH_LAT_EVENT_STATUS, /* clGetEventInfo(CL_EVENT_COMMAND_EXECUTION_STATUS) of a completed event */
    BENCH_LAT_READ4,        /* blocking 4-byte clEnqueueReadBuffer */
    BENCH_LAT_COUNT
} bench_lat_call_t;

extern const char *const bench_lat_call_name[BENCH_LAT_COUNT];

/* A synchronous call ready to be timed: begin prepares (an event, a
 * buffer), step runs and times one call, end releases. */
typedef struct {
    bench_cl_t *cl;
    bench_lat_call_t call;
    cl_event event;
    cl_mem mem;
    uint32_t word;
} bench_cl_lat_t;

int bench_cl_lat_begin(bench_cl_lat_t *l, bench_cl_t *cl, bench_lat_call_t call);
int bench_cl_lat_step(bench_cl_lat_t *l, double *us);
void bench_cl_lat_end(bench_cl_lat_t *l);

/* Allocates the bandwidth buffers for transfers up to size bytes. */
int bench_cl_bw_setup(bench_cl_t *cl, size_t size);
void bench_cl_bw_teardown(bench_cl_t *cl);
/* The host memory of the pinned case (valid after bench_cl_bw_setup). */
void *bench_cl_pinned_ptr(bench_cl_t *cl);
/* One iteration: h2d = blocking clEnqueueWriteBuffer + clFinish (the data
 * is on the device); d2h = blocking clEnqueueReadBuffer. host is the
 * application memory. */
int bench_cl_bw_step(bench_cl_t *cl, int h2d, void *host, size_t size, double *us);

/* Empty-kernel launches: async = n enqueues then one clFinish, timed as a
 * whole; sync = one enqueue + clFinish. */
int bench_cl_launch_async(bench_cl_t *cl, size_t n, double *us);
int bench_cl_launch_sync_step(bench_cl_t *cl, double *us);

/* vector add of n floats: upload a and b, run, download c, check c; the
 * time of one such run in *us. Returns -1 on error or wrong results. */
int bench_cl_vadd(bench_cl_t *cl, size_t n, double *us);
/* The compute-bound kernel: items work items, iters FMA rounds (8 chains
 * each); out receives items floats. */
int bench_cl_fma(bench_cl_t *cl, size_t items, uint32_t iters, float *out, double *us);

#endif
