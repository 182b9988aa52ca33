/* Histograms and the Prometheus text format (rgpu/metrics.h). */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "rgpu/metrics.h"

TestSuite(metrics);

static const uint64_t bounds[3] = {10, 100, 1000};

/* Whether text holds line (a whole line). */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return 1;
    return 0;
}

Test(metrics, values_land_in_the_first_bound_at_or_above_them)
{
    rgpu_histogram_t h = RGPU_HISTOGRAM_INIT(bounds);
    const uint64_t values[] = {0, 10, 11, 100, 1000, 1001, UINT64_C(1) << 40};

    cr_assert_eq(h.nbounds, 3);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
        rgpu_histogram_observe(&h, values[i]);
    cr_expect_eq(atomic_load(&h.buckets[0]), 2, "0 and 10 are <= 10");
    cr_expect_eq(atomic_load(&h.buckets[1]), 2, "11 and 100");
    cr_expect_eq(atomic_load(&h.buckets[2]), 1, "1000");
    cr_expect_eq(atomic_load(&h.buckets[3]), 2, "above every bound");
    cr_expect_eq(atomic_load(&h.sum), 0 + 10 + 11 + 100 + 1000 + 1001 + (UINT64_C(1) << 40));
}

Test(metrics, a_histogram_is_formatted_cumulative_with_sum_and_count)
{
    rgpu_histogram_t h;
    rgpu_prom_t p;

    rgpu_histogram_init(&h, bounds, 3);
    rgpu_histogram_observe(&h, 5);
    rgpu_histogram_observe(&h, 50);
    rgpu_histogram_observe(&h, 50);
    rgpu_histogram_observe(&h, 5000);
    rgpu_prom_init(&p);
    rgpu_prom_family(&p, "x_bytes", "histogram", "Sizes.");
    rgpu_prom_histogram(&p, "x_bytes", "family=\"read\"", &h, 1.0);
    cr_assert_not(p.failed);
    cr_expect(has_line(p.text, "# HELP x_bytes Sizes."), "%s", p.text);
    cr_expect(has_line(p.text, "# TYPE x_bytes histogram"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_bucket{family=\"read\",le=\"10\"} 1"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_bucket{family=\"read\",le=\"100\"} 3"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_bucket{family=\"read\",le=\"1000\"} 3"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_bucket{family=\"read\",le=\"+Inf\"} 4"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_sum{family=\"read\"} 5105"), "%s", p.text);
    cr_expect(has_line(p.text, "x_bytes_count{family=\"read\"} 4"), "%s", p.text);
    cr_expect_eq(strlen(p.text), p.len);
    rgpu_prom_free(&p);
}

/* Latencies are observed in nanoseconds and exposed in seconds, the
 * Prometheus base unit. */
Test(metrics, a_scale_turns_nanoseconds_into_seconds)
{
    rgpu_histogram_t h = RGPU_HISTOGRAM_INIT(rgpu_metrics_latency_bounds_ns);
    rgpu_prom_t p;

    rgpu_histogram_observe(&h, 30000);          /* 30 us */
    rgpu_histogram_observe(&h, 2000000000);     /* 2 s */
    rgpu_prom_init(&p);
    rgpu_prom_histogram(&p, "lat_seconds", "", &h, 1e9);
    cr_assert_not(p.failed);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"2.5e-05\"} 0"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"5e-05\"} 1"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"1\"} 1"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"2.5\"} 2"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"10\"} 2"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_bucket{le=\"+Inf\"} 2"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_sum 2.000030000"), "%s", p.text);
    cr_expect(has_line(p.text, "lat_seconds_count 2"), "%s", p.text);
    rgpu_prom_free(&p);
}

Test(metrics, the_shared_bounds_ascend_and_fit)
{
    const uint64_t *sets[] = {rgpu_metrics_latency_bounds_ns, rgpu_metrics_size_bounds};
    const unsigned n[] = {sizeof(rgpu_metrics_latency_bounds_ns) / sizeof(uint64_t),
                          sizeof(rgpu_metrics_size_bounds) / sizeof(uint64_t)};

    for (int s = 0; s < 2; s++) {
        cr_expect_leq(n[s], RGPU_HISTOGRAM_MAX_BOUNDS);
        for (unsigned i = 1; i < n[s]; i++)
            cr_expect_lt(sets[s][i - 1], sets[s][i], "set %d, bound %u", s, i);
    }
    cr_expect_eq(rgpu_metrics_size_bounds[13], UINT64_C(4) << 30);
}

Test(metrics, samples_with_and_without_labels)
{
    rgpu_prom_t p;

    rgpu_prom_init(&p);
    rgpu_prom_u64(&p, "a_total", "", UINT64_MAX);
    rgpu_prom_i64(&p, "b", "state=\"up\"", -3);
    cr_assert_not(p.failed);
    cr_expect(has_line(p.text, "a_total 18446744073709551615"), "%s", p.text);
    cr_expect(has_line(p.text, "b{state=\"up\"} -3"), "%s", p.text);
    rgpu_prom_free(&p);
}

Test(metrics, one_sample_per_label_value)
{
    static const char *const states[3] = {"up", "drained", "down"};
    const uint64_t counts[3] = {4, 0, 1};
    rgpu_prom_t p;

    rgpu_prom_init(&p);
    rgpu_prom_u64_by(&p, "servers", "state", states, counts, 3);
    cr_assert_not(p.failed);
    cr_expect_str_eq(p.text, "servers{state=\"up\"} 4\nservers{state=\"drained\"} 0\n"
                             "servers{state=\"down\"} 1\n");
    rgpu_prom_free(&p);
}

/* The text grows past its first allocation, and stops (failed, nothing
 * more appended) at RGPU_PROM_MAX_BYTES instead of growing without bound. */
Test(metrics, the_text_grows_then_stops_at_its_bound)
{
    char line[1025];
    rgpu_prom_t p;
    size_t lines = 0;

    memset(line, 'x', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    rgpu_prom_init(&p);
    while (!p.failed && lines < 2 * RGPU_PROM_MAX_BYTES / 1024) {
        rgpu_prom_printf(&p, "%s\n", line);
        if (!p.failed)
            lines++;
    }
    cr_expect(p.failed, "past %u bytes the text must fail", RGPU_PROM_MAX_BYTES);
    cr_expect_gt(lines, 4, "a few KiB must fit");
    cr_expect_eq(p.len, lines * 1025, "a failed append adds nothing");
    cr_expect_leq(p.len, RGPU_PROM_MAX_BYTES);
    size_t len = p.len;
    rgpu_prom_printf(&p, "more\n");
    cr_expect_eq(p.len, len, "nothing is appended once failed");
    rgpu_prom_free(&p);
}

/* Session threads observe concurrently: no observation may be lost. */
static rgpu_histogram_t shared = RGPU_HISTOGRAM_INIT(bounds);

static void *observe_many(void *arg)
{
    uint64_t value = (uint64_t)(uintptr_t)arg;

    for (int i = 0; i < 100000; i++)
        rgpu_histogram_observe(&shared, value);
    return NULL;
}

Test(metrics, concurrent_observations_are_all_counted)
{
    pthread_t threads[4];
    const uint64_t values[4] = {1, 50, 500, 5000};
    uint64_t total = 0;

    for (int t = 0; t < 4; t++)
        cr_assert_eq(pthread_create(&threads[t], NULL, observe_many,
                                    (void *)(uintptr_t)values[t]), 0);
    for (int t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    for (int b = 0; b <= 3; b++) {
        cr_expect_eq(atomic_load(&shared.buckets[b]), 100000, "bucket %d", b);
        total += atomic_load(&shared.buckets[b]);
    }
    cr_expect_eq(total, 400000);
    cr_expect_eq(atomic_load(&shared.sum), 100000 * (1 + 50 + 500 + 5000));
}
