/*
 * rgpu-bench: what users of remote GPUs look at, each figure measured twice
 * in the same run -- through rgpu and against its baseline -- and quoted as
 * a ratio:
 *
 *   lat     round trip of synchronous calls      vs raw TCP 64 B ping-pong, local OpenCL
 *   bw      host<->device bandwidth by size       vs raw TCP stream, local OpenCL
 *   launch  empty-kernel launch rate and latency  vs local OpenCL
 *   app     whole programs (vector add, FMA loop) vs local OpenCL
 *
 *   rgpu-bench {lat|bw|launch|app|all} [options]
 *   rgpu-bench tcp-peer --listen HOST:PORT
 *
 * rgpu is the OpenCL platform named "rgpu" (librgpu-opencl through the
 * ocl-icd loader); the local baseline is another platform of the same
 * loader, so OCL_ICD_VENDORS must list both .icd files (bench/run.sh sets
 * it up). The raw TCP baseline talks to `rgpu-bench tcp-peer`, which should
 * run where rgpu-server runs, so both cross the same path.
 *
 * Output lines up with perftest (#bytes #iterations BW peak[MB/sec]
 * BW average[MB/sec], MB = 2^20 bytes) so it can be put beside ib_write_bw.
 * No figure is checked against a target: the tool reports, people judge.
 */
#include <dlfcn.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "rgpu/options.h"
#include "rgpu/util.h"

#ifndef RGPU_BENCH_VERSION
#define RGPU_BENCH_VERSION "0"
#endif
#ifndef RGPU_BENCH_BUILD_TYPE
#define RGPU_BENCH_BUILD_TYPE ""
#endif

typedef struct {
    const char *command;
    const char *platform;           /* the rgpu platform's name */
    const char *local_platform;     /* NULL: first other platform; "none": no local baseline */
    const char *tcp_peer;           /* NULL or "none": no TCP baseline */
    size_t iterations;              /* 0: each test's default */
    size_t batch;                   /* launch: only this many per clFinish (0: 16 to 8192) */
    int local_batch;                /* local platforms' threads under SCHED_BATCH, like rgpu-server's */
    uint64_t min_size, max_size;
    int json;
    int quick;
    const char *plot;
} bench_opts_t;

/* One bandwidth measurement: a path at one size. */
typedef struct {
    size_t iters;
    double peak, avg;               /* MB/sec; NAN when not measured */
} bench_bw_fig_t;

typedef struct {
    size_t size;
    bench_bw_fig_t rgpu, tcp, local;
} bench_bw_row_t;

enum { BENCH_BW_H2D_PAGEABLE, BENCH_BW_H2D_PINNED, BENCH_BW_D2H_PAGEABLE, BENCH_BW_D2H_PINNED, BENCH_BW_TESTS };

typedef struct {
    bench_opts_t opt;
    bench_cl_t rgpu;
    bench_cl_t local;
    int have_local;
    int have_tcp;
    FILE *out;                      /* the tables: stdout, or stderr under --json */
    FILE *json_mem;                 /* --json: the object being built */
    char *json_buf;
    size_t json_len;
    bench_json_t json;
    bench_bw_row_t *bw_rows[BENCH_BW_TESTS];
    size_t bw_nrows;
} bench_t;

static const struct {
    const char *key, *title;
    int h2d, pinned;
} bench_bw_tests[BENCH_BW_TESTS] = {
    {"h2d_pageable", "host to device, pageable memory", 1, 0},
    {"h2d_pinned", "host to device, pinned memory (CL_MEM_ALLOC_HOST_PTR, mapped)", 1, 1},
    {"d2h_pageable", "device to host, pageable memory", 0, 0},
    {"d2h_pinned", "device to host, pinned memory (CL_MEM_ALLOC_HOST_PTR, mapped)", 0, 1},
};

/* ---- small helpers ---- */

static size_t bench_iters(const bench_t *b, size_t deflt, size_t quick)
{
    if (b->opt.iterations)
        return b->opt.iterations;
    return b->opt.quick ? quick : deflt;
}

/* A figure or "-" when it was not measured. */
static const char *bench_fmt(char *buf, size_t cap, const char *fmt, double v)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, fmt, v);
    return buf;
}

static double bench_ratio(double a, double b)
{
    return isnan(a) || isnan(b) || b == 0 ? NAN : a / b;
}

static double *bench_samples(size_t n)
{
    double *s = calloc(n ? n : 1, sizeof(double));

    if (!s) {
        fprintf(stderr, "rgpu-bench: out of memory for %zu samples\n", n);
        exit(1);
    }
    return s;
}

static const char *bench_size_str(char *buf, size_t cap, uint64_t size)
{
    if (size >= (1u << 30) && size % (1u << 30) == 0)
        snprintf(buf, cap, "%llu GiB", (unsigned long long)(size >> 30));
    else if (size >= (1u << 20) && size % (1u << 20) == 0)
        snprintf(buf, cap, "%llu MiB", (unsigned long long)(size >> 20));
    else if (size >= 1024 && size % 1024 == 0)
        snprintf(buf, cap, "%llu KiB", (unsigned long long)(size >> 10));
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)size);
    return buf;
}

/* ---- interleaving ----
 * The paths of one figure (rgpu, raw TCP, local) run iteration by
 * iteration in turn, the order rotating, so that whatever else the machine
 * does at that moment hits every path alike: the ratios hold even when the
 * absolute figures drift. */

typedef struct {
    int (*step)(void *ctx, double *us);
    void *ctx;
    double *samples;            /* iters entries */
} bench_path_t;

static int bench_interleave(bench_path_t *paths, int npaths, size_t warmup, size_t iters)
{
    for (size_t i = 0; i < warmup + iters; i++) {
        for (int k = 0; k < npaths; k++) {
            bench_path_t *p = &paths[(i + (size_t)k) % (size_t)npaths];
            double us;
            if (p->step(p->ctx, &us) != 0)
                return -1;
            if (i >= warmup)
                p->samples[i - warmup] = us;
        }
    }
    return 0;
}

typedef struct {
    bench_tcp_conn_t conn;
    void *buf;
} bench_tcp_ctx_t;

static int bench_tcp_step_fn(void *ctx, double *us)
{
    bench_tcp_ctx_t *t = ctx;
    return bench_tcp_step(&t->conn, t->buf, us);
}

static int bench_lat_step_fn(void *ctx, double *us)
{
    return bench_cl_lat_step(ctx, us);
}

typedef struct {
    bench_cl_t *cl;
    int h2d;
    void *host;
    size_t size;
} bench_bw_ctx_t;

static int bench_bw_step_fn(void *ctx, double *us)
{
    bench_bw_ctx_t *c = ctx;
    return bench_cl_bw_step(c->cl, c->h2d, c->host, c->size, us);
}

static int bench_launch_step_fn(void *ctx, double *us)
{
    return bench_cl_launch_sync_step(ctx, us);
}

/* ---- lat ---- */

static void bench_lat_row(bench_t *b, const char *call, const char *path, const bench_stats_t *s,
                          double minus_tcp, double over_tcp, double over_local)
{
    char d[32], r1[32], r2[32];

    fprintf(b->out, " %-27s %-6s %-12zu %-15.2f %-12.2f %-14.2f %-15s %-9s %s\n", call, path, s->n, s->median,
            s->p99, s->p999, bench_fmt(d, sizeof(d), "%+.2f", minus_tcp), bench_fmt(r1, sizeof(r1), "%.2f", over_tcp),
            bench_fmt(r2, sizeof(r2), "%.1f", over_local));
}

static int bench_run_lat(bench_t *b)
{
    size_t iters = bench_iters(b, 10000, 200), warmup = b->opt.quick ? 20 : 200;
    double *samples[3] = {bench_samples(iters), bench_samples(iters), bench_samples(iters)};
    char ping[64] = {0};
    int rc = -1;

    fprintf(b->out, "\n# lat: round trip of a synchronous call, %zu timed iterations after %zu warm-up (usec);\n"
                    "# rgpu, TCP and local iterations alternate\n",
            iters, warmup);
    if (b->have_tcp)
        fprintf(b->out, "# baseline: raw TCP 64-byte ping-pong with the tcp-peer at %s (plain sockets)\n",
                b->opt.tcp_peer);
    fprintf(b->out, " %-27s %-6s %-12s %-15s %-12s %-14s %-15s %-9s %s\n", "#call", "path", "#iterations",
            "t_median[usec]", "t_p99[usec]", "t_p99.9[usec]", "rgpu-TCP[usec]", "rgpu/TCP", "rgpu/local");
    bench_json_begin_obj(&b->json, "lat");
    bench_json_int(&b->json, "iterations", (long long)iters);
    bench_json_begin_arr(&b->json, "calls");
    for (int c = 0; c < BENCH_LAT_COUNT; c++) {
        bench_cl_lat_t lr, ll;
        bench_tcp_ctx_t tcp = {.buf = ping};
        bench_path_t paths[3];
        bench_stats_t rgpu, local = {0}, ts = {0};
        double minus_tcp = NAN, over_tcp = NAN, over_local = NAN;
        int n = 0, ok;

        memset(&ll, 0, sizeof(ll));
        bench_progress("lat: %s", bench_lat_call_name[c]);
        if (bench_cl_lat_begin(&lr, &b->rgpu, (bench_lat_call_t)c) != 0)
            goto out;
        paths[n++] = (bench_path_t){bench_lat_step_fn, &lr, samples[0]};
        ok = !b->have_local || bench_cl_lat_begin(&ll, &b->local, (bench_lat_call_t)c) == 0;
        if (ok && b->have_local)
            paths[n++] = (bench_path_t){bench_lat_step_fn, &ll, samples[1]};
        ok = ok && (!b->have_tcp || bench_tcp_connect(&tcp.conn, b->opt.tcp_peer, BENCH_TCP_ECHO, sizeof(ping)) == 0);
        if (ok && b->have_tcp)
            paths[n++] = (bench_path_t){bench_tcp_step_fn, &tcp, samples[2]};
        ok = ok && bench_interleave(paths, n, warmup, iters) == 0;
        bench_tcp_disconnect(&tcp.conn);
        bench_cl_lat_end(&lr);
        bench_cl_lat_end(&ll);
        if (!ok)
            goto out;
        bench_progress_done();

        bench_stats_compute(samples[0], iters, &rgpu);
        if (b->have_local) {
            bench_stats_compute(samples[1], iters, &local);
            over_local = bench_ratio(rgpu.median, local.median);
        }
        if (b->have_tcp) {
            bench_stats_compute(samples[2], iters, &ts);
            minus_tcp = rgpu.median - ts.median;
            over_tcp = bench_ratio(rgpu.median, ts.median);
            bench_lat_row(b, "TCP ping-pong 64 B", "tcp", &ts, NAN, NAN, NAN);
        }
        bench_lat_row(b, bench_lat_call_name[c], "rgpu", &rgpu, minus_tcp, over_tcp, over_local);
        if (b->have_local)
            bench_lat_row(b, bench_lat_call_name[c], "local", &local, NAN, NAN, NAN);
        fflush(b->out);
        bench_json_begin_obj(&b->json, NULL);
        bench_json_str(&b->json, "call", bench_lat_call_name[c]);
        bench_json_stats(&b->json, "rgpu", &rgpu);
        if (b->have_local)
            bench_json_stats(&b->json, "local", &local);
        if (b->have_tcp)
            bench_json_stats(&b->json, "tcp_pingpong_64B", &ts);
        bench_json_num(&b->json, "rgpu_minus_tcp_median_us", minus_tcp);
        bench_json_num(&b->json, "rgpu_minus_tcp_p99_us", b->have_tcp ? rgpu.p99 - ts.p99 : NAN);
        bench_json_num(&b->json, "rgpu_over_tcp_median", over_tcp);
        bench_json_num(&b->json, "rgpu_over_local_median", over_local);
        bench_json_end_obj(&b->json);
    }
    rc = 0;
out:
    bench_json_end_arr(&b->json);
    bench_json_end_obj(&b->json);
    bench_progress_done();
    for (int i = 0; i < 3; i++)
        free(samples[i]);
    return rc;
}

/* ---- bw ---- */

static void bench_fill(void *buf, size_t size, unsigned seed)
{
    uint32_t *w = buf, x = seed * 2654435761u + 1;

    for (size_t i = 0; i < size / 4; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        w[i] = x;
    }
    memset((char *)buf + size / 4 * 4, (int)seed, size % 4);
}

static void bench_bw_fig(bench_bw_fig_t *fig, double *samples, size_t iters, size_t size)
{
    bench_stats_t s;

    bench_stats_compute(samples, iters, &s);
    fig->iters = iters;
    fig->peak = bench_mbps(size, s.min);
    fig->avg = bench_mbps((uint64_t)size * iters, s.total);
}

/* Puts known data on the device before a d2h test (untimed) and clears
 * where it will land. */
static int bench_bw_prepare(bench_cl_t *cl, const char *src, char *host, size_t size)
{
    double us;

    if (bench_cl_bw_step(cl, 1, (void *)src, size, &us) != 0)
        return -1;
    memset(host, 0, size);
    return 0;
}

static int bench_bw_check(const bench_cl_t *cl, const char *src, const char *host, size_t size)
{
    if (memcmp(host, src, size) != 0) {
        fprintf(stderr, "rgpu-bench: %s: %zu bytes read back differ from what was written\n", cl->label, size);
        return -1;
    }
    return 0;
}

static void bench_bw_print_header(bench_t *b, int test)
{
    fprintf(b->out, "\n# bw: %s: %s\n", bench_bw_tests[test].title,
            bench_bw_tests[test].h2d ? "each iteration = blocking clEnqueueWriteBuffer + clFinish"
                                     : "each iteration = blocking clEnqueueReadBuffer");
    if (b->have_tcp)
        fprintf(b->out, "# baseline: raw TCP to the tcp-peer at %s, %s\n", b->opt.tcp_peer,
                bench_bw_tests[test].h2d ? "send #bytes, wait for a 1-byte ack" : "send 1 byte, receive #bytes");
    if (b->have_local)
        fprintf(b->out, "# local: platform \"%s\"; ratios are rgpu BW average over the baseline's\n",
                b->local.platform_name);
    fprintf(b->out, " %-10s %-14s %-18s %-20s %-18s %-8s %-15s %s\n", "#bytes", "#iterations", "BW peak[MB/sec]",
            "BW average[MB/sec]", "baseline[MB/sec]", "ratio", "local[MB/sec]", "ratio");
}

static void bench_bw_print_row(bench_t *b, const bench_bw_row_t *r)
{
    char t[32], rt[32], l[32], rl[32];

    fprintf(b->out, " %-10zu %-14zu %-18.2f %-20.2f %-18s %-8s %-15s %s\n", r->size, r->rgpu.iters, r->rgpu.peak,
            r->rgpu.avg, bench_fmt(t, sizeof(t), "%.2f", r->tcp.avg),
            bench_fmt(rt, sizeof(rt), "%.3f", bench_ratio(r->rgpu.avg, r->tcp.avg)),
            bench_fmt(l, sizeof(l), "%.2f", r->local.avg),
            bench_fmt(rl, sizeof(rl), "%.3f", bench_ratio(r->rgpu.avg, r->local.avg)));
    fflush(b->out);
}

static void bench_bw_json(bench_t *b)
{
    bench_json_begin_obj(&b->json, "bw");
    bench_json_str(&b->json, "unit", "MB/sec, MB = 2^20 bytes (as perftest)");
    for (int t = 0; t < BENCH_BW_TESTS; t++) {
        bench_json_begin_arr(&b->json, bench_bw_tests[t].key);
        for (size_t i = 0; i < b->bw_nrows; i++) {
            const bench_bw_row_t *r = &b->bw_rows[t][i];
            bench_json_begin_obj(&b->json, NULL);
            bench_json_int(&b->json, "bytes", (long long)r->size);
            bench_json_int(&b->json, "iterations", (long long)r->rgpu.iters);
            bench_json_num(&b->json, "rgpu_peak", r->rgpu.peak);
            bench_json_num(&b->json, "rgpu_avg", r->rgpu.avg);
            bench_json_num(&b->json, "tcp_peak", r->tcp.peak);
            bench_json_num(&b->json, "tcp_avg", r->tcp.avg);
            bench_json_num(&b->json, "local_peak", r->local.peak);
            bench_json_num(&b->json, "local_avg", r->local.avg);
            bench_json_num(&b->json, "ratio_tcp", bench_ratio(r->rgpu.avg, r->tcp.avg));
            bench_json_num(&b->json, "ratio_local", bench_ratio(r->rgpu.avg, r->local.avg));
            bench_json_end_obj(&b->json);
        }
        bench_json_end_arr(&b->json);
    }
    bench_json_end_obj(&b->json);
}

static int bench_run_bw(bench_t *b)
{
    size_t cap = bench_iters(b, 1000, 20);
    uint64_t budget = b->opt.quick ? (16u << 20) : (256u << 20);  /* bytes per path and size */
    size_t nsizes = 0, max = (size_t)b->opt.max_size;
    char *src, *dst_rgpu, *dst_local, *tcp_buf;
    double *samples[3] = {bench_samples(cap), bench_samples(cap), bench_samples(cap)};
    int rc = -1;

    for (uint64_t s = b->opt.min_size; s <= b->opt.max_size; s *= 2)
        nsizes++;
    src = malloc(max);
    dst_rgpu = malloc(max);
    dst_local = malloc(max);
    tcp_buf = malloc(max);
    for (int t = 0; t < BENCH_BW_TESTS; t++)
        b->bw_rows[t] = calloc(nsizes, sizeof(bench_bw_row_t));
    if (!src || !dst_rgpu || !dst_local || !tcp_buf || !b->bw_rows[BENCH_BW_TESTS - 1]) {
        fprintf(stderr, "rgpu-bench: out of memory for %zu-byte transfers\n", max);
        exit(1);
    }
    /* Touched before any timing, so page faults are nobody's cost. */
    memset(dst_rgpu, 0, max);
    memset(dst_local, 0, max);
    memset(tcp_buf, 0, max);
    if (bench_cl_bw_setup(&b->rgpu, max) != 0 || (b->have_local && bench_cl_bw_setup(&b->local, max) != 0))
        goto out;
    b->bw_nrows = nsizes;
    for (int t = 0; t < BENCH_BW_TESTS; t++) {
        int h2d = bench_bw_tests[t].h2d, pinned = bench_bw_tests[t].pinned;
        char *host_rgpu = pinned ? bench_cl_pinned_ptr(&b->rgpu) : h2d ? src : dst_rgpu;
        char *host_local = !b->have_local ? NULL : pinned ? bench_cl_pinned_ptr(&b->local) : h2d ? src : dst_local;
        size_t i = 0;

        bench_bw_print_header(b, t);
        for (uint64_t s64 = b->opt.min_size; s64 <= b->opt.max_size; s64 *= 2, i++) {
            size_t size = (size_t)s64, iters = cap, warmup;
            bench_bw_row_t *r = &b->bw_rows[t][i];
            bench_bw_ctx_t cr = {&b->rgpu, h2d, host_rgpu, size}, cloc = {&b->local, h2d, host_local, size};
            bench_tcp_ctx_t tcp = {.buf = h2d ? src : tcp_buf};
            bench_path_t paths[3];
            char sz[32];
            int n = 0, ok;

            /* Big sizes run fewer iterations: at most `budget` bytes per path, at least 4. */
            if ((uint64_t)iters * size > budget)
                iters = (size_t)(budget / size);
            if (iters < 4)
                iters = cap < 4 ? cap : 4;
            warmup = b->opt.quick ? 1 : (iters / 10 < 1 ? 1 : iters / 10 > 10 ? 10 : iters / 10);
            r->size = size;
            r->tcp.peak = r->tcp.avg = r->local.peak = r->local.avg = NAN;
            bench_fill(src, size, (unsigned)(i + 1) * 31u + (unsigned)t);
            if (pinned && h2d) {
                memcpy(host_rgpu, src, size);
                if (b->have_local)
                    memcpy(host_local, src, size);
            }
            if (!h2d && (bench_bw_prepare(&b->rgpu, src, host_rgpu, size) != 0 ||
                         (b->have_local && bench_bw_prepare(&b->local, src, host_local, size) != 0)))
                goto out;
            paths[n++] = (bench_path_t){bench_bw_step_fn, &cr, samples[0]};
            if (b->have_local)
                paths[n++] = (bench_path_t){bench_bw_step_fn, &cloc, samples[1]};
            if (b->have_tcp) {
                if (bench_tcp_connect(&tcp.conn, b->opt.tcp_peer, h2d ? BENCH_TCP_SINK : BENCH_TCP_SOURCE, size) != 0)
                    goto out;
                paths[n++] = (bench_path_t){bench_tcp_step_fn, &tcp, samples[2]};
            }
            bench_progress("bw: %s, %s", bench_bw_tests[t].key, bench_size_str(sz, sizeof(sz), size));
            ok = bench_interleave(paths, n, warmup, iters) == 0;
            bench_tcp_disconnect(&tcp.conn);
            if (!ok)
                goto out;
            if (!h2d && (bench_bw_check(&b->rgpu, src, host_rgpu, size) != 0 ||
                         (b->have_local && bench_bw_check(&b->local, src, host_local, size) != 0)))
                goto out;
            bench_bw_fig(&r->rgpu, samples[0], iters, size);
            if (b->have_local)
                bench_bw_fig(&r->local, samples[1], iters, size);
            if (b->have_tcp)
                bench_bw_fig(&r->tcp, samples[2], iters, size);
            bench_progress_done();
            bench_bw_print_row(b, r);
        }
    }
    rc = 0;
out:
    bench_progress_done();
    bench_cl_bw_teardown(&b->rgpu);
    if (b->have_local)
        bench_cl_bw_teardown(&b->local);
    if (rc == 0)
        bench_bw_json(b);
    free(src);
    free(dst_rgpu);
    free(dst_local);
    free(tcp_buf);
    for (int k = 0; k < 3; k++)
        free(samples[k]);
    return rc;
}

/* gnuplot, when installed; the data and script are kept next to the image
 * either way, so the plot can be made elsewhere. */
static int bench_plot(bench_t *b)
{
    char path[4096];
    FILE *f;

    if (!b->bw_nrows)
        return 0;
    snprintf(path, sizeof(path), "%s.dat", b->opt.plot);
    if (!(f = fopen(path, "w"))) {
        fprintf(stderr, "rgpu-bench: cannot write %s: %m\n", path);
        return -1;
    }
    fprintf(f, "# bytes");
    for (int t = 0; t < BENCH_BW_TESTS; t++)
        fprintf(f, " rgpu_%s tcp_%s local_%s", bench_bw_tests[t].key, bench_bw_tests[t].key, bench_bw_tests[t].key);
    fprintf(f, "\n");
    for (size_t i = 0; i < b->bw_nrows; i++) {
        fprintf(f, "%zu", b->bw_rows[0][i].size);
        for (int t = 0; t < BENCH_BW_TESTS; t++) {
            const bench_bw_row_t *r = &b->bw_rows[t][i];
            fprintf(f, " %.2f", r->rgpu.avg);
            fprintf(f, isnan(r->tcp.avg) ? " NaN" : " %.2f", r->tcp.avg);
            fprintf(f, isnan(r->local.avg) ? " NaN" : " %.2f", r->local.avg);
        }
        fprintf(f, "\n");
    }
    fclose(f);
    snprintf(path, sizeof(path), "%s.gp", b->opt.plot);
    if (!(f = fopen(path, "w"))) {
        fprintf(stderr, "rgpu-bench: cannot write %s: %m\n", path);
        return -1;
    }
    fprintf(f,
            "set terminal pngcairo size 1400,560 noenhanced\n"
            "set output '%s'\n"
            "set datafile missing 'NaN'\n"
            "set logscale x 2\nset logscale y 10\n"
            "set format x '%%.0b %%BB'\n"
            "set xlabel 'transfer size'\nset ylabel 'BW average [MB/sec]'\n"
            "set key left top\nset grid\n"
            "set multiplot layout 1,2 title 'rgpu-bench bw: rgpu vs raw TCP vs local OpenCL'\n"
            "set title 'host to device'\n"
            "plot '%s.dat' using 1:2 with linespoints title 'rgpu pageable', "
            "'' using 1:5 with linespoints title 'rgpu pinned', "
            "'' using 1:3 with linespoints title 'raw TCP', "
            "'' using 1:4 with linespoints title 'local pageable'\n"
            "set title 'device to host'\n"
            "plot '%s.dat' using 1:8 with linespoints title 'rgpu pageable', "
            "'' using 1:11 with linespoints title 'rgpu pinned', "
            "'' using 1:9 with linespoints title 'raw TCP', "
            "'' using 1:10 with linespoints title 'local pageable'\n"
            "unset multiplot\n",
            b->opt.plot, b->opt.plot, b->opt.plot);
    fclose(f);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "rgpu-bench: gnuplot not found; run `gnuplot %s` where it is (data in %s.dat)\n", path,
                b->opt.plot);
        return 0;
    }
    {
        char cmd[8300];
        snprintf(cmd, sizeof(cmd), "gnuplot '%s'", path);
        if (system(cmd) != 0) {
            fprintf(stderr, "rgpu-bench: gnuplot failed on %s\n", path);
            return -1;
        }
    }
    fprintf(stderr, "rgpu-bench: bandwidth plot written to %s\n", b->opt.plot);
    return 0;
}

/* ---- launch ---- */

/* Async launch rate with `batch` launches per clFinish: rgpu and local
 * rounds alternate until each ran at least `total` launches and at least
 * BENCH_LAUNCH_MIN_ROUNDS rounds (one round of 8192 is a few tens of ms: two
 * of them would say more about the scheduler than about rgpu). */
#define BENCH_LAUNCH_MIN_ROUNDS 16
static int bench_launch_async_rate(bench_t *b, size_t batch, size_t total, size_t *done_p, double *rgpu_rate,
                                   double *local_rate)
{
    double rgpu_us = 0, local_us = 0, us;
    size_t done = 0;

    for (size_t k = 0; done < total || k < BENCH_LAUNCH_MIN_ROUNDS; k++, done += batch) {
        for (int j = 0; j < 2; j++) {
            int local = (int)((k + (size_t)j) % 2);
            if (local && !b->have_local)
                continue;
            if (bench_cl_launch_async(local ? &b->local : &b->rgpu, batch, &us) != 0)
                return -1;
            *(local ? &local_us : &rgpu_us) += us;
        }
    }
    *done_p = done;
    *rgpu_rate = (double)done / (rgpu_us / 1e6);
    *local_rate = b->have_local ? (double)done / (local_us / 1e6) : NAN;
    return 0;
}

static int bench_run_launch(bench_t *b)
{
    size_t batches[] = {16, 128, 1024, 8192};
    size_t iters = bench_iters(b, 10000, 500), warmup = b->opt.quick ? 20 : 200;
    size_t nbatch = b->opt.quick ? 2 : sizeof(batches) / sizeof(batches[0]);

    if (b->opt.batch) {
        batches[0] = b->opt.batch;
        nbatch = 1;
    }
    double *samples[2] = {bench_samples(iters), bench_samples(iters)};
    double rgpu_rate[4], local_rate[4], us;
    size_t launches[4];
    bench_path_t paths[2];
    bench_stats_t rs, ls = {0};
    char v[32], r[32], name[64];
    int rc = -1, n = 0;

    /* Async: the rate depends on how many launches go between two clFinish
     * (rgpu batches them until a sync point), so several batch sizes. */
    if (bench_cl_launch_async(&b->rgpu, warmup, &us) != 0 ||
        (b->have_local && bench_cl_launch_async(&b->local, warmup, &us) != 0))
        goto out;
    for (size_t k = 0; k < nbatch; k++) {
        bench_progress("launch: async rate, %zu per clFinish", batches[k]);
        if (bench_launch_async_rate(b, batches[k], iters, &launches[k], &rgpu_rate[k], &local_rate[k]) != 0)
            goto out;
    }
    /* Sync: enqueue + clFinish, rgpu and local iterations alternating. */
    bench_progress("launch: sync latency");
    paths[n++] = (bench_path_t){bench_launch_step_fn, &b->rgpu, samples[0]};
    if (b->have_local)
        paths[n++] = (bench_path_t){bench_launch_step_fn, &b->local, samples[1]};
    if (bench_interleave(paths, n, warmup, iters) != 0)
        goto out;
    bench_stats_compute(samples[0], iters, &rs);
    if (b->have_local)
        bench_stats_compute(samples[1], iters, &ls);
    bench_progress_done();
    fprintf(b->out, "\n# launch: empty kernel, 1 work item; async = N enqueues then clFinish, at least %zu launches "
                    "and %d rounds\n# per N (#iterations: launches on each side); sync = enqueue + clFinish each; "
                    "rgpu and local\n# rounds and iterations alternate\n", iters, BENCH_LAUNCH_MIN_ROUNDS);
    fprintf(b->out, " %-36s %-12s %-14s %-14s %s\n", "#test", "#iterations", "rgpu", "local", "rgpu/local");
#define BENCH_LAUNCH_ROW(name, count, rv, lv, fmt)                                                              \
    fprintf(b->out, " %-36s %-12zu " fmt " %-14s %s\n", name, count, rv, bench_fmt(v, sizeof(v), fmt, lv), \
            bench_fmt(r, sizeof(r), "%.3f", bench_ratio(rv, lv)))
    for (size_t k = 0; k < nbatch; k++) {
        snprintf(name, sizeof(name), "async rate, N=%zu [launch/sec]", batches[k]);
        BENCH_LAUNCH_ROW(name, launches[k], rgpu_rate[k], local_rate[k], "%-14.0f");
    }
    BENCH_LAUNCH_ROW("sync launch t_median[usec]", iters, rs.median, b->have_local ? ls.median : NAN, "%-14.2f");
    BENCH_LAUNCH_ROW("sync launch t_p99[usec]", iters, rs.p99, b->have_local ? ls.p99 : NAN, "%-14.2f");
    BENCH_LAUNCH_ROW("sync launch t_p99.9[usec]", iters, rs.p999, b->have_local ? ls.p999 : NAN, "%-14.2f");
#undef BENCH_LAUNCH_ROW
    fflush(b->out);
    bench_json_begin_obj(&b->json, "launch");
    bench_json_int(&b->json, "iterations", (long long)iters);
    bench_json_begin_arr(&b->json, "async");
    for (size_t k = 0; k < nbatch; k++) {
        bench_json_begin_obj(&b->json, NULL);
        bench_json_int(&b->json, "launches_per_finish", (long long)batches[k]);
        bench_json_int(&b->json, "launches", (long long)launches[k]);
        bench_json_num(&b->json, "rgpu_launches_per_sec", rgpu_rate[k]);
        bench_json_num(&b->json, "local_launches_per_sec", local_rate[k]);
        bench_json_num(&b->json, "ratio", bench_ratio(rgpu_rate[k], local_rate[k]));
        bench_json_end_obj(&b->json);
    }
    bench_json_end_arr(&b->json);
    bench_json_stats(&b->json, "rgpu_sync", &rs);
    if (b->have_local)
        bench_json_stats(&b->json, "local_sync", &ls);
    bench_json_num(&b->json, "sync_median_ratio", bench_ratio(rs.median, b->have_local ? ls.median : NAN));
    bench_json_end_obj(&b->json);
    rc = 0;
out:
    bench_progress_done();
    free(samples[0]);
    free(samples[1]);
    return rc;
}

/* ---- app ---- */

static int bench_cmp_dbl(const void *a, const void *c)
{
    double x = *(const double *)a, y = *(const double *)c;
    return x < y ? -1 : x > y;
}

static double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), bench_cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
    const char *key;
    char name[96];
    size_t runs;
    double remote_med, remote_min, local_med, local_min;    /* seconds */
} bench_app_fig_t;

static void bench_app_row(bench_t *b, const bench_app_fig_t *a)
{
    char l[32], s[32], lm[32], sm[32];

    fprintf(b->out, " %-44s %-6zu %-16.4f %-15s %-13s %-13.4f %-12s %s\n", a->name, a->runs, a->remote_med,
            bench_fmt(l, sizeof(l), "%.4f", a->local_med),
            bench_fmt(s, sizeof(s), "%.4f", bench_ratio(a->remote_med, a->local_med)), a->remote_min,
            bench_fmt(lm, sizeof(lm), "%.4f", a->local_min),
            bench_fmt(sm, sizeof(sm), "%.4f", bench_ratio(a->remote_min, a->local_min)));
    fflush(b->out);
}

static void bench_app_json(bench_t *b, const bench_app_fig_t *a)
{
    bench_json_begin_obj(&b->json, a->key);
    bench_json_str(&b->json, "program", a->name);
    bench_json_int(&b->json, "runs", (long long)a->runs);
    bench_json_num(&b->json, "remote_median_s", a->remote_med);
    bench_json_num(&b->json, "local_median_s", a->local_med);
    bench_json_num(&b->json, "slowdown_median", bench_ratio(a->remote_med, a->local_med));
    bench_json_num(&b->json, "remote_min_s", a->remote_min);
    bench_json_num(&b->json, "local_min_s", a->local_min);
    bench_json_num(&b->json, "slowdown_min", bench_ratio(a->remote_min, a->local_min));
    bench_json_end_obj(&b->json);
}

/* Runs remote and local alternately, so slow drifts hit both alike. */
static int bench_app_vadd(bench_t *b, size_t n, size_t runs, bench_app_fig_t *a)
{
    double rt[16], lt[16];

    a->key = "vector_add";
    snprintf(a->name, sizeof(a->name), "vector add, %zuM floats (%zu MiB moved)", n >> 20, 3 * n * 4 >> 20);
    a->runs = runs;
    for (size_t i = 0; i < runs; i++) {
        bench_progress("app: vector add, run %zu/%zu", i + 1, runs);
        if (bench_cl_vadd(&b->rgpu, n, &rt[i]) != 0)
            return -1;
        if (b->have_local && bench_cl_vadd(&b->local, n, &lt[i]) != 0)
            return -1;
    }
    a->remote_med = bench_median(rt, runs) / 1e6;
    a->remote_min = rt[0] / 1e6;
    a->local_med = b->have_local ? bench_median(lt, runs) / 1e6 : NAN;
    a->local_min = b->have_local ? lt[0] / 1e6 : NAN;
    return 0;
}

static int bench_app_fma(bench_t *b, double target_s, size_t runs, bench_app_fig_t *a)
{
    const size_t items = 16384;
    bench_cl_t *ref = b->have_local ? &b->local : &b->rgpu;
    float *out_r = malloc(items * sizeof(float)), *out_l = malloc(items * sizeof(float));
    double rt[16], lt[16], us;
    uint32_t iters = 256;
    int rc = -1;

    if (!out_r || !out_l)
        goto out;
    /* Warm up both (kernel compiled for this size), then calibrate locally. */
    bench_progress("app: FMA loop, calibrating");
    if (bench_cl_fma(&b->rgpu, items, 16, out_r, &us) != 0 || bench_cl_fma(ref, items, 16, out_l, &us) != 0)
        goto out;
    for (int k = 0; k < 3; k++) {
        if (bench_cl_fma(ref, items, iters, out_l, &us) != 0)
            goto out;
        double want = target_s * 1e6 / us * iters;
        iters = (uint32_t)(want > 4e9 ? 4e9 : want < 16 ? 16 : want);
        if (us > target_s * 1e6 / 4)
            break;
    }
    a->key = "fma_loop";
    snprintf(a->name, sizeof(a->name), "FMA loop, %zu items x %u iters x 8 FMA", items, iters);
    a->runs = runs;
    for (size_t i = 0; i < runs; i++) {
        bench_progress("app: FMA loop, run %zu/%zu", i + 1, runs);
        if (bench_cl_fma(&b->rgpu, items, iters, out_r, &rt[i]) != 0)
            goto out;
        if (b->have_local && bench_cl_fma(&b->local, items, iters, out_l, &lt[i]) != 0)
            goto out;
    }
    if (b->have_local) {
        for (size_t i = 0; i < items; i++) {
            if (fabsf(out_r[i] - out_l[i]) > 1e-4f * fabsf(out_l[i]) + 1e-6f) {
                fprintf(stderr, "rgpu-bench: FMA loop: item %zu is %g remotely, %g locally\n", i, (double)out_r[i],
                        (double)out_l[i]);
                goto out;
            }
        }
    }
    a->remote_med = bench_median(rt, runs) / 1e6;
    a->remote_min = rt[0] / 1e6;
    a->local_med = b->have_local ? bench_median(lt, runs) / 1e6 : NAN;
    a->local_min = b->have_local ? lt[0] / 1e6 : NAN;
    rc = 0;
out:
    free(out_r);
    free(out_l);
    return rc;
}

static int bench_run_app(bench_t *b)
{
    size_t runs = b->opt.quick ? 1 : 5;
    bench_app_fig_t vadd = {0}, fma = {0};
    int rc = -1;

    if (bench_app_vadd(b, b->opt.quick ? (1u << 20) : (16u << 20), runs, &vadd) != 0)
        goto out;
    if (bench_app_fma(b, b->opt.quick ? 0.02 : 0.5, runs, &fma) != 0)
        goto out;
    bench_progress_done();
    fprintf(b->out, "\n# app: whole programs, remote (rgpu) against local; remote and local runs alternate\n");
    fprintf(b->out, "# vector add = create 3 buffers, 2 blocking writes, kernel, blocking read, release; "
                    "FMA loop = kernel + read of the results\n");
    fprintf(b->out, " %-44s %-6s %-16s %-15s %-13s %-13s %-12s %s\n", "#program", "#runs", "remote median[s]",
            "local median[s]", "slowdown", "remote min[s]", "local min[s]", "slowdown(min)");
    bench_app_row(b, &vadd);
    bench_app_row(b, &fma);
    bench_json_begin_obj(&b->json, "app");
    bench_app_json(b, &vadd);
    bench_app_json(b, &fma);
    bench_json_end_obj(&b->json);
    rc = 0;
out:
    bench_progress_done();
    return rc;
}

/* ---- setup and main ---- */

/* The command line as the option engine (rgpu/options.h) reads it; bench_parse
 * turns it into bench_opts_t. */
typedef struct {
    char platform[256];
    char local_platform[256];
    char tcp_peer[256];
    int iterations;
    int batch;
    int local_batch;
    uint64_t min_size, max_size;
    int json;
    char plot[512];
    int quick;
    int quiet;
    rgpu_opt_state_t opt;
} bench_cli_t;

static const char *const bench_thread_policies[] = {"normal", "batch", NULL};

#define BENCH_S(f) offsetof(bench_cli_t, f), sizeof(((bench_cli_t *)0)->f)
#define BENCH_INT(f) offsetof(bench_cli_t, f), 0
#define BENCH_U64(f) offsetof(bench_cli_t, f), sizeof(uint64_t)

static const rgpu_opt_t bench_option_rows[] = {
    {"platform", RGPU_OPT_STRING, "rgpu", "NAME", "the rgpu platform", NULL, NULL,
     BENCH_S(platform), 0, 0, NULL, 0, NULL, 0},
    {"local-platform", RGPU_OPT_STRING, "", "NAME",
     "the local baseline: platform name, or a part of its name or vendor (default: the first "
     "platform that is not the rgpu one; \"none\" to skip)", NULL, NULL,
     BENCH_S(local_platform), 0, 0, NULL, 0, NULL, 0},
    {"tcp-peer", RGPU_OPT_STRING, "", "HOST:PORT",
     "the raw TCP baseline peer (`rgpu-bench tcp-peer` on the server's node; \"none\" or "
     "nothing to skip)", "RGPU_BENCH_TCP_PEER", NULL, BENCH_S(tcp_peer), 0, 0, NULL, 0, NULL, 0},
    {"iterations", RGPU_OPT_UINT, "0", "N",
     "timed iterations (lat, launch; bw: at most N per size); 0: each test's own", NULL, NULL,
     BENCH_INT(iterations), 0, 100000000, NULL, 0, NULL, 'n'},
    {"batch", RGPU_OPT_UINT, "0", "N",
     "launch: only N launches per clFinish (0: 16, 128, 1024 and 8192 in turn)", NULL, NULL,
     BENCH_INT(batch), 0, 1000000, NULL, 0, NULL, 0},
    {"local-platform-threads", RGPU_OPT_CHOICE, "normal", "normal|batch",
     "scheduling policy of the local platform's threads: normal (as a program gets them) or "
     "batch (as rgpu-server starts its platform's threads)", NULL, NULL,
     BENCH_INT(local_batch), 0, 0, bench_thread_policies, 0, NULL, 0},
    {"min-size", RGPU_OPT_SIZE, "4K", "SIZE", "smallest bw transfer", NULL, NULL,
     BENCH_U64(min_size), 1, 1ull << 40, NULL, 0, NULL, 0},
    {"max-size", RGPU_OPT_SIZE, "256M", "SIZE", "largest bw transfer (1M with --quick)", NULL,
     NULL, BENCH_U64(max_size), 1, 1ull << 40, NULL, 0, NULL, 0},
    {"json", RGPU_OPT_FLAG, "no", NULL,
     "print one JSON object with every figure on stdout (the tables go to stderr)", NULL, NULL,
     BENCH_INT(json), 0, 0, NULL, 0, NULL, 0},
    {"plot", RGPU_OPT_STRING, "", "FILE.png",
     "plot bandwidth vs size with its baselines (gnuplot)", NULL, NULL, BENCH_S(plot), 0, 0,
     NULL, 0, NULL, 0},
    {"quick", RGPU_OPT_FLAG, "no", NULL, "tiny sizes and counts: proves the tool works in seconds",
     NULL, NULL, BENCH_INT(quick), 0, 0, NULL, 0, NULL, 0},
    {"quiet", RGPU_OPT_FLAG, "no", NULL, "no progress line on stderr", NULL, NULL,
     BENCH_INT(quiet), 0, 0, NULL, 0, NULL, 'q'},
};

static const rgpu_opt_table_t bench_options = {
    .program = "rgpu-bench",
    .man_section = 1,
    .summary = "measure rgpu against raw TCP and a local GPU in the same run",
    .synopsis = "{lat|bw|launch|app|all} [OPTION]...\n"
                "       rgpu-bench tcp-peer --listen HOST:PORT",
    .description =
        "rgpu-bench measures rgpu and, in the same run, its baselines: raw TCP to a tcp-peer "
        "on the server's node, and a local OpenCL platform. Each figure is printed beside its "
        "baseline, with the ratio; bandwidth lines up with perftest's columns.\n\n"
        "lat: round trip of synchronous calls (clFinish, clGetEventInfo, 4-byte read). bw: "
        "host to device and back by size, pageable and pinned memory. launch: empty-kernel "
        "launch rate (async) and latency (sync). app: vector add and a compute-bound FMA loop, "
        "remote vs local. all: all of the above.\n\n"
        "OCL_ICD_VENDORS must list both the rgpu and the local .icd files, and RGPU_SERVERS "
        "(or client.conf) name the server: bench/run.sh sets everything up on one machine.",
    .section = "bench",
    .conf_title = "rgpu-bench.conf",
    .opts = bench_option_rows,
    .nopts = sizeof(bench_option_rows) / sizeof(bench_option_rows[0]),
    .positional = RGPU_OPT_ARGS_ANY,
};

static const char *bench_getenv(const char *name)
{
    return getenv(name);
}

/* 0: run, 1: exit 0 (--help), 2: exit 2. The strings of o live in a
 * static bench_cli_t. */
static int bench_parse(int argc, char **argv, bench_opts_t *o)
{
    static bench_cli_t cli;

    memset(o, 0, sizeof(*o));
    switch (rgpu_opt_load(&bench_options, &cli, &cli.opt, argc, argv, bench_getenv, stdout,
                          stderr)) {
    case RGPU_OPT_RUN:
        break;
    case RGPU_OPT_EXIT_OK:
        return 1;
    case RGPU_OPT_EXIT_USAGE:
        return 2;
    }
    if (cli.opt.print_config) {
        rgpu_opt_print(&bench_options, &cli, &cli.opt, stdout);
        return 1;
    }
    if (cli.opt.nargs != 1) {
        fprintf(stderr, cli.opt.nargs ? "rgpu-bench: one command at a time (lat, bw, launch, "
                                        "app, all), not \"%s\" too\n"
                                      : "rgpu-bench: which test? (lat, bw, launch, app, all; "
                                        "see --help)%s\n",
                cli.opt.nargs ? cli.opt.args[1] : "");
        return 2;
    }
    o->command = cli.opt.args[0];
    o->platform = cli.platform;
    o->local_platform = cli.local_platform[0] ? cli.local_platform : NULL;
    o->tcp_peer = cli.tcp_peer[0] && strcmp(cli.tcp_peer, "none") ? cli.tcp_peer : NULL;
    o->iterations = (size_t)cli.iterations;
    o->batch = (size_t)cli.batch;
    o->local_batch = cli.local_batch;
    o->min_size = cli.min_size;
    o->max_size = cli.max_size;
    o->json = cli.json;
    o->plot = cli.plot[0] ? cli.plot : NULL;
    o->quick = cli.quick;
    bench_quiet = cli.quiet;
    if (strcmp(o->command, "lat") && strcmp(o->command, "bw") && strcmp(o->command, "launch") &&
        strcmp(o->command, "app") && strcmp(o->command, "all")) {
        fprintf(stderr, "rgpu-bench: unknown command \"%s\" (lat, bw, launch, app, all, tcp-peer)\n", o->command);
        return 2;
    }
    if (o->quick && cli.opt.origin[7].from == RGPU_OPT_FROM_DEFAULT)
        o->max_size = 1u << 20;         /* row 7: max-size */
    if (o->min_size > o->max_size) {
        fprintf(stderr, "rgpu-bench: --min-size is larger than --max-size\n");
        return 2;
    }
    return 0;
}

static int bench_setup(bench_t *b)
{
    cl_platform_id rp, lp = NULL;

    if (b->opt.local_batch && bench_cl_platform_threads_batch(b->opt.platform) != 0)
        return -1;
    rp = bench_cl_find_platform(b->opt.platform, NULL);
    if (!rp) {
        fprintf(stderr, "rgpu-bench: no OpenCL platform named \"%s\"; does OCL_ICD_VENDORS list rgpu.icd?\n",
                b->opt.platform);
        return -1;
    }
    if (bench_cl_open(&b->rgpu, "rgpu", rp) != 0)
        return -1;
    if (!b->opt.local_platform || strcmp(b->opt.local_platform, "none")) {
        /* Named explicitly, even the rgpu platform itself may serve (to test the tool). */
        lp = bench_cl_find_platform(b->opt.local_platform, b->opt.local_platform ? NULL : b->rgpu.platform_name);
        if (!lp && b->opt.local_platform) {
            fprintf(stderr, "rgpu-bench: no local platform matches \"%s\"\n", b->opt.local_platform);
            return -1;
        }
        if (!lp)
            fprintf(stderr, "rgpu-bench: no other OpenCL platform: no local baseline (OCL_ICD_VENDORS should list "
                            "the local .icd too)\n");
    }
    if (lp) {
        if (bench_cl_open(&b->local, "local", lp) != 0)
            return -1;
        b->have_local = 1;
    }
    b->have_tcp = b->opt.tcp_peer != NULL;
    if (!b->have_tcp)
        fprintf(stderr, "rgpu-bench: no --tcp-peer: no raw TCP baseline\n");
    return 0;
}

static void bench_describe(bench_t *b)
{
    const char *servers = getenv("RGPU_SERVERS");
    char host[256] = "?";
    cpu_set_t cpus;
    int ncpus = 0;

    gethostname(host, sizeof(host) - 1);
    if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
        ncpus = CPU_COUNT(&cpus);
    double load[3] = {NAN, NAN, NAN};
    getloadavg(load, 3);
    /* Other processes change every figure: say how busy the machine was. */
    fprintf(b->out, "# rgpu-bench %s (%s build): %s%s on %s (%d CPUs allowed, load average %.2f)\n",
            RGPU_BENCH_VERSION, RGPU_BENCH_BUILD_TYPE[0] ? RGPU_BENCH_BUILD_TYPE : "unoptimized", b->opt.command,
            b->opt.quick ? " --quick" : "", host, ncpus, load[0]);
    fprintf(b->out, "# rgpu:  platform \"%s\", device \"%s\", RGPU_SERVERS=%s\n", b->rgpu.platform_name,
            b->rgpu.device_name, servers ? servers : "(unset)");
    /* What the local platform runs with: rgpu-server gives its platform
     * jemalloc and SCHED_BATCH threads; a program gets neither by default. */
    const char *allocator = dlsym(RTLD_DEFAULT, "mallctl") ? "jemalloc" : "the C library's";
    int batch_threads = bench_threads_batch();
    if (b->have_local)
        fprintf(b->out, "# local: platform \"%s\", device \"%s\"; malloc: %s, %d thread(s) under SCHED_BATCH\n",
                b->local.platform_name, b->local.device_name, allocator, batch_threads);
    if (b->have_tcp)
        fprintf(b->out, "# TCP:   rgpu-bench tcp-peer at %s (plain sockets, rgpu's socket options)\n",
                b->opt.tcp_peer);
    bench_json_str(&b->json, "tool", "rgpu-bench");
    bench_json_str(&b->json, "version", RGPU_BENCH_VERSION);
    bench_json_str(&b->json, "command", b->opt.command);
    bench_json_bool(&b->json, "quick", b->opt.quick);
    bench_json_str(&b->json, "build_type", RGPU_BENCH_BUILD_TYPE);
    bench_json_str(&b->json, "host", host);
    bench_json_int(&b->json, "cpus_allowed", ncpus);
    bench_json_str(&b->json, "bench_allocator", allocator);
    bench_json_int(&b->json, "bench_threads_sched_batch", batch_threads);
    bench_json_num(&b->json, "load_average_1min", load[0]);
    bench_json_begin_obj(&b->json, "rgpu");
    bench_json_str(&b->json, "platform", b->rgpu.platform_name);
    bench_json_str(&b->json, "device", b->rgpu.device_name);
    bench_json_str(&b->json, "servers", servers ? servers : "");
    bench_json_end_obj(&b->json);
    if (b->have_local) {
        bench_json_begin_obj(&b->json, "local");
        bench_json_str(&b->json, "platform", b->local.platform_name);
        bench_json_str(&b->json, "device", b->local.device_name);
        bench_json_end_obj(&b->json);
    }
    bench_json_str(&b->json, "tcp_peer", b->have_tcp ? b->opt.tcp_peer : "");
}

int main(int argc, char **argv)
{
    static bench_t b;
    int all, rc = 1;

    if (argc > 1 && !strcmp(argv[1], "tcp-peer"))
        return bench_tcp_peer_main(argc - 1, argv + 1);
    switch (bench_parse(argc, argv, &b.opt)) {
    case 0:
        break;
    case 1:
        return 0;
    default:
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    b.out = b.opt.json ? stderr : stdout;
    b.json_mem = open_memstream(&b.json_buf, &b.json_len);
    if (!b.json_mem)
        return 1;
    bench_json_init(&b.json, b.json_mem);
    bench_json_begin_obj(&b.json, NULL);
    if (bench_setup(&b) != 0)
        goto out;
    bench_describe(&b);

    all = !strcmp(b.opt.command, "all");
    if ((all || !strcmp(b.opt.command, "lat")) && bench_run_lat(&b) != 0)
        goto out;
    if ((all || !strcmp(b.opt.command, "bw")) && bench_run_bw(&b) != 0)
        goto out;
    if ((all || !strcmp(b.opt.command, "launch")) && bench_run_launch(&b) != 0)
        goto out;
    if ((all || !strcmp(b.opt.command, "app")) && bench_run_app(&b) != 0)
        goto out;
    if (b.opt.plot && bench_plot(&b) != 0)
        goto out;
    rc = 0;
out:
    bench_progress_done();
    bench_json_bool(&b.json, "ok", rc == 0);
    bench_json_end_obj(&b.json);
    fclose(b.json_mem);
    if (b.opt.json)
        fwrite(b.json_buf, 1, b.json_len, stdout);
    free(b.json_buf);
    for (int t = 0; t < BENCH_BW_TESTS; t++)
        free(b.bw_rows[t]);
    if (b.have_local)
        bench_cl_close(&b.local);
    if (b.rgpu.context)
        bench_cl_close(&b.rgpu);
    return rc;
}
