/*
 * Prometheus metrics shared by the daemons: histograms cheap enough for the
 * fast path, and the text exposition format (version 0.0.4) they are
 * scraped in. The HTTP endpoint that serves the text is rgpu/metrics_http.h.
 *
 * A histogram is a fixed array of atomic bucket counters over bounds chosen
 * at compile time: observing a value is a binary search over at most
 * RGPU_HISTOGRAM_MAX_BOUNDS bounds and two relaxed atomic additions, with
 * no lock and no allocation, so any thread may observe at any time while
 * another formats.
 *
 *   session thread ─ rgpu_histogram_observe ─▶ buckets (atomics)
 *   loop thread    ─ rgpu_prom_histogram ─▶ cumulative _bucket{le}, _sum, _count
 */
#ifndef RGPU_METRICS_H
#define RGPU_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RGPU_HISTOGRAM_MAX_BOUNDS 24

typedef struct {
    const uint64_t *bounds;     /* ascending upper bounds (inclusive), in the observed unit */
    unsigned nbounds;           /* 1..RGPU_HISTOGRAM_MAX_BOUNDS */
    /* Per bucket, not cumulative: buckets[i] counts values in
     * (bounds[i-1], bounds[i]]; buckets[nbounds] those above every bound. */
    atomic_ullong buckets[RGPU_HISTOGRAM_MAX_BOUNDS + 1];
    atomic_ullong sum;          /* of every value observed, in the observed unit */
} rgpu_histogram_t;

/* A static initializer: rgpu_histogram_t h = RGPU_HISTOGRAM_INIT(bounds),
 * bounds being an array (not a pointer) of at most RGPU_HISTOGRAM_MAX_BOUNDS. */
#define RGPU_HISTOGRAM_INIT(b) {.bounds = (b), .nbounds = sizeof(b) / sizeof((b)[0])}

/* Bounds used by both daemons, so that their dashboards compare.
 * Latencies in nanoseconds, 10 us to 10 s (formatted in seconds). */
extern const uint64_t rgpu_metrics_latency_bounds_ns[19];
/* Sizes in bytes, 64 B to 4 GiB by factors of 4. */
extern const uint64_t rgpu_metrics_size_bounds[14];

/* Sets h empty over bounds (nbounds must be 1..RGPU_HISTOGRAM_MAX_BOUNDS and
 * bounds ascending; they are borrowed and must outlive h). Not thread safe. */
void rgpu_histogram_init(rgpu_histogram_t *h, const uint64_t *bounds, unsigned nbounds);

/* Counts value in its bucket and adds it to the sum. Any thread, lock-free. */
static inline void rgpu_histogram_observe(rgpu_histogram_t *h, uint64_t value)
{
    unsigned lo = 0, hi = h->nbounds;

    /* The first bound >= value; nbounds when none is. */
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;

        if (h->bounds[mid] < value)
            lo = mid + 1;
        else
            hi = mid;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

/* Nanoseconds of CLOCK_MONOTONIC, for latencies. */
uint64_t rgpu_metrics_now_ns(void);

/* ---- text exposition ---- */

/* At most this many bytes of text per scrape; past it the text is cut and
 * rgpu_prom_t.failed set (the endpoint answers 500). */
#define RGPU_PROM_MAX_BYTES (4u << 20)

typedef struct {
    char *text;                 /* NUL terminated; owned, free with rgpu_prom_free */
    size_t len, cap;
    int failed;                 /* out of memory or past RGPU_PROM_MAX_BYTES */
} rgpu_prom_t;

void rgpu_prom_init(rgpu_prom_t *p);
void rgpu_prom_free(rgpu_prom_t *p);

/* Appends printf-formatted text; on failure sets p->failed and appends
 * nothing more. */
void rgpu_prom_printf(rgpu_prom_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram):
 * once per metric, before its samples. help must not hold a newline. */
void rgpu_prom_family(rgpu_prom_t *p, const char *name, const char *type, const char *help);

/* One sample: name{labels} value. labels is "" or the inside of the braces,
 * e.g. "state=\"up\"", with values the caller wrote (never a client's bytes). */
void rgpu_prom_u64(rgpu_prom_t *p, const char *name, const char *labels, uint64_t value);
void rgpu_prom_i64(rgpu_prom_t *p, const char *name, const char *labels, int64_t value);

/* One sample per value of one label: name{label="values[i]"} counts[i],
 * for i < n (a counter or gauge broken down by state, reason, ...). */
void rgpu_prom_u64_by(rgpu_prom_t *p, const char *name, const char *label,
                      const char *const *values, const uint64_t *counts, size_t n);

/* A histogram's samples: name_bucket{labels,le="..."} cumulative over every
 * bound and "+Inf", name_sum and name_count. Bounds and sum are divided by
 * scale when printed (1e9 turns nanoseconds into seconds; 1 for bytes).
 * _count is the "+Inf" bucket of the same snapshot, so the two are always
 * equal; _sum may include a value observed while the buckets were read. */
void rgpu_prom_histogram(rgpu_prom_t *p, const char *name, const char *labels,
                         rgpu_histogram_t *h, double scale);

#endif
