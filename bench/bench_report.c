/* Statistics, progress line and JSON writer of rgpu-bench (see bench.h). */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

int bench_quiet;

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted samples. */
static double bench_percentile(const double *sorted, size_t n, double p)
{
    size_t rank = (size_t)ceil(p * (double)n);

    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

void bench_stats_compute(double *samples, size_t n, bench_stats_t *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats->n = n;
    if (n == 0)
        return;
    qsort(samples, n, sizeof(*samples), bench_cmp_double);
    for (size_t i = 0; i < n; i++)
        stats->total += samples[i];
    stats->min = samples[0];
    stats->max = samples[n - 1];
    stats->mean = stats->total / (double)n;
    stats->median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    stats->p99 = bench_percentile(samples, n, 0.99);
    stats->p999 = bench_percentile(samples, n, 0.999);
}

double bench_mbps(uint64_t bytes, double usec)
{
    return usec > 0 ? (double)bytes / (double)(1u << 20) / (usec / 1e6) : 0;
}

double bench_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* ---- progress ---- */

static int bench_progress_shown;

void bench_progress(const char *fmt, ...)
{
    static int tty = -1;
    va_list ap;

    if (bench_quiet)
        return;
    static double last_line_us;
    if (tty < 0)
        tty = isatty(STDERR_FILENO);
    /* In a log, a line every few seconds says enough about a long run. */
    if (!tty) {
        double now = bench_now_us();
        if (last_line_us && now - last_line_us < 5e6)
            return;
        last_line_us = now;
    }
    /* On a terminal the line rewrites itself; in a log every step is a line. */
    fputs(tty ? "\r\033[K" : "", stderr);
    fputs("rgpu-bench: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(tty ? "" : "\n", stderr);
    fflush(stderr);
    bench_progress_shown = tty;
}

void bench_progress_done(void)
{
    if (bench_progress_shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        bench_progress_shown = 0;
    }
}

/* ---- JSON ---- */

void bench_json_init(bench_json_t *j, FILE *f)
{
    memset(j, 0, sizeof(*j));
    j->f = f;
    j->first[0] = 1;
}

static void bench_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void bench_json_sep(bench_json_t *j, const char *key)
{
    if (!j->first[j->depth])
        fputc(',', j->f);
    j->first[j->depth] = 0;
    if (j->depth > 0) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    if (key) {
        bench_json_string(j->f, key);
        fputs(": ", j->f);
    }
}

static void bench_json_open(bench_json_t *j, const char *key, char c)
{
    bench_json_sep(j, key);
    fputc(c, j->f);
    if (j->depth < (int)(sizeof(j->first) / sizeof(j->first[0])) - 1)
        j->depth++;
    j->first[j->depth] = 1;
}

static void bench_json_close(bench_json_t *j, char c)
{
    int empty = j->first[j->depth];

    j->depth--;
    if (!empty) {
        fputc('\n', j->f);
        for (int i = 0; i < j->depth; i++)
            fputs("  ", j->f);
    }
    fputc(c, j->f);
    if (j->depth == 0)
        fputc('\n', j->f);
}

void bench_json_begin_obj(bench_json_t *j, const char *key)
{
    bench_json_open(j, key, '{');
}

void bench_json_end_obj(bench_json_t *j)
{
    bench_json_close(j, '}');
}

void bench_json_begin_arr(bench_json_t *j, const char *key)
{
    bench_json_open(j, key, '[');
}

void bench_json_end_arr(bench_json_t *j)
{
    bench_json_close(j, ']');
}

void bench_json_str(bench_json_t *j, const char *key, const char *value)
{
    bench_json_sep(j, key);
    bench_json_string(j->f, value);
}

void bench_json_num(bench_json_t *j, const char *key, double value)
{
    bench_json_sep(j, key);
    if (isfinite(value))
        fprintf(j->f, "%.6g", value);
    else
        fputs("null", j->f);
}

void bench_json_int(bench_json_t *j, const char *key, long long value)
{
    bench_json_sep(j, key);
    fprintf(j->f, "%lld", value);
}

void bench_json_bool(bench_json_t *j, const char *key, int value)
{
    bench_json_sep(j, key);
    fputs(value ? "true" : "false", j->f);
}

void bench_json_stats(bench_json_t *j, const char *key, const bench_stats_t *s)
{
    bench_json_begin_obj(j, key);
    bench_json_int(j, "iterations", (long long)s->n);
    bench_json_num(j, "min_us", s->min);
    bench_json_num(j, "median_us", s->median);
    bench_json_num(j, "mean_us", s->mean);
    bench_json_num(j, "p99_us", s->p99);
    bench_json_num(j, "p99_9_us", s->p999);
    bench_json_num(j, "max_us", s->max);
    bench_json_end_obj(j);
}
