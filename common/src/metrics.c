/*
 * Histograms and the Prometheus text format (rgpu/metrics.h).
 */
#include "rgpu/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const uint64_t rgpu_metrics_latency_bounds_ns[19] = {
    10000,     25000,     50000,     100000,    250000,     500000,     1000000,
    2500000,   5000000,   10000000,  25000000,  50000000,   100000000,  250000000,
    500000000, 1000000000, 2500000000, 5000000000, 10000000000};

const uint64_t rgpu_metrics_size_bounds[14] = {
    64,          256,          1ull << 10,   4ull << 10,  16ull << 10, 64ull << 10, 256ull << 10,
    1ull << 20,  4ull << 20,   16ull << 20,  64ull << 20, 256ull << 20, 1ull << 30, 4ull << 30};

void rgpu_histogram_init(rgpu_histogram_t *h, const uint64_t *bounds, unsigned nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds;
}

uint64_t rgpu_metrics_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rgpu_prom_init(rgpu_prom_t *p)
{
    memset(p, 0, sizeof(*p));
}

void rgpu_prom_free(rgpu_prom_t *p)
{
    free(p->text);
    memset(p, 0, sizeof(*p));
}

void rgpu_prom_printf(rgpu_prom_t *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->failed)
        return;
    for (;;) {
        size_t room = p->cap - p->len;

        va_start(ap, fmt);
        n = vsnprintf(p->text ? p->text + p->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            p->failed = 1;
            return;
        }
        if ((size_t)n < room) {
            p->len += (size_t)n;
            return;
        }
        /* Grow by doubling, up to the bound; the next pass formats again. */
        size_t want = p->len + (size_t)n + 1, cap = p->cap ? p->cap : 4096;
        char *grown;

        while (cap < want)
            cap *= 2;
        if (want > RGPU_PROM_MAX_BYTES || !(grown = realloc(p->text, cap))) {
            p->failed = 1;
            return;
        }
        p->text = grown;
        p->cap = cap;
    }
}

void rgpu_prom_family(rgpu_prom_t *p, const char *name, const char *type, const char *help)
{
    rgpu_prom_printf(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void rgpu_prom_u64(rgpu_prom_t *p, const char *name, const char *labels, uint64_t value)
{
    rgpu_prom_printf(p, "%s%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
                     *labels ? "}" : "", value);
}

void rgpu_prom_i64(rgpu_prom_t *p, const char *name, const char *labels, int64_t value)
{
    rgpu_prom_printf(p, "%s%s%s%s %" PRId64 "\n", name, *labels ? "{" : "", labels,
                     *labels ? "}" : "", value);
}

void rgpu_prom_u64_by(rgpu_prom_t *p, const char *name, const char *label,
                      const char *const *values, const uint64_t *counts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rgpu_prom_printf(p, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, values[i], counts[i]);
}

void rgpu_prom_histogram(rgpu_prom_t *p, const char *name, const char *labels,
                         rgpu_histogram_t *h, double scale)
{
    const char *sep = *labels ? "," : "";
    uint64_t cumulative = 0;

    for (unsigned i = 0; i <= h->nbounds; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->nbounds)
            rgpu_prom_printf(p, "%s_bucket{%s%sle=\"%.9g\"} %" PRIu64 "\n", name, labels, sep,
                             (double)h->bounds[i] / scale, cumulative);
        else
            rgpu_prom_printf(p, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep,
                             cumulative);
    }
    if (scale == 1.0)
        rgpu_prom_printf(p, "%s_sum%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
                         *labels ? "}" : "", (uint64_t)atomic_load(&h->sum));
    else
        rgpu_prom_printf(p, "%s_sum%s%s%s %.9f\n", name, *labels ? "{" : "", labels,
                         *labels ? "}" : "", (double)atomic_load(&h->sum) / scale);
    rgpu_prom_printf(p, "%s_count%s%s%s %" PRIu64 "\n", name, *labels ? "{" : "", labels,
                     *labels ? "}" : "", cumulative);
}
