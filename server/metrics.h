/*
 * Server-wide counters, histograms and the Prometheus text endpoint
 * (docs/observability.md lists every metric).
 *
 * Counters and histogram buckets are atomics: sessions update them from
 * their own threads and from OpenCL event callbacks; the endpoint reads them
 * on the libuv loop. The HTTP side is common's (rgpu/metrics_http.h).
 *
 *   rgpu_server_sessions_active          gauge   sessions now open
 *   rgpu_server_sessions_total           counter sessions ever accepted
 *   rgpu_server_buffer_bytes             gauge   bytes of live cl_mem buffers
 *                                                (sub-buffers not counted)
 *   rgpu_server_buffers                  gauge   live buffers (no sub-buffers)
 *   rgpu_server_protocol_errors_total    counter sessions ended by a protocol error
 *   rgpu_server_connections_refused_total counter connections closed at once because
 *                                                --max-sessions sessions were open
 *   rgpu_server_accept_errors_total      counter failed accepts (out of descriptors...)
 *   rgpu_server_calls_total              counter{family} calls handled
 *   rgpu_server_call_duration_seconds    histogram{family} time a session thread spent
 *                                                on one call: the first of each family
 *                                                in a session, then one in
 *                                                RGPU_METRICS_TIME_EVERY
 *   rgpu_server_call_bulk_bytes          histogram{family} bulk bytes a call carried in
 *                                                (buffer, image and binary data)
 *
 * The session loop's hooks (rgpu_server_metrics_call_begin/_end) run once
 * per call on the fast path: an async kernel launch costs the server about
 * a microsecond, and two clock reads cost 40 to 160 ns (a VM's TSC is
 * slow), so only sampled calls read the clock; every call is still counted.
 */
#ifndef RGPU_SERVER_METRICS_H
#define RGPU_SERVER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "rgpu/metrics.h"
#include "rgpu/metrics_http.h"
#include "rgpu/status.h"

/* Calls are grouped in families, a label set bounded whatever the client
 * sends (docs/observability.md lists each family's messages). */
typedef enum {
    RGPU_CALL_SESSION = 0,      /* hello, ping */
    RGPU_CALL_CREATE,           /* contexts, queues, buffers, images, samplers, kernels, ... */
    RGPU_CALL_BUILD,            /* program binaries, build, compile, link */
    RGPU_CALL_KERNEL,           /* kernel arguments, NDRange launches */
    RGPU_CALL_WRITE,            /* buffer, rect and image writes */
    RGPU_CALL_READ,             /* buffer, rect and image reads */
    RGPU_CALL_COPY,             /* copies, fills and migrations on the device */
    RGPU_CALL_SYNC,             /* markers, flush, finish, waits */
    RGPU_CALL_EVENT,            /* user event status, event callbacks */
    RGPU_CALL_INFO,             /* object queries */
    RGPU_CALL_RELEASE,          /* releases */
    RGPU_CALL_OTHER,            /* any other type */
    RGPU_CALL_NFAMILIES
} rgpu_call_family_t;

/* A family's calls are timed one in this many per session thread (the
 * first always): rare calls (builds, finishes, reads) are timed nearly
 * always, a stream of launches one in 16. */
#define RGPU_METRICS_TIME_EVERY 16

typedef struct {
    atomic_llong sessions_active;
    atomic_ullong sessions_total;
    atomic_llong buffer_bytes;
    atomic_llong buffers;
    atomic_ullong protocol_errors_total;
    atomic_ullong connections_refused_total;
    atomic_ullong accept_errors_total;
    atomic_ullong calls_total[RGPU_CALL_NFAMILIES];
    rgpu_histogram_t call_duration[RGPU_CALL_NFAMILIES];   /* nanoseconds, sampled */
    rgpu_histogram_t call_bulk[RGPU_CALL_NFAMILIES];       /* bytes */
} rgpu_metrics_t;

extern rgpu_metrics_t rgpu_metrics;

/* The family of a message type (any value: unknown ones are OTHER). */
rgpu_call_family_t rgpu_call_family(uint16_t type);

/* Per session thread: calls of each family left before the next timed one. */
extern _Thread_local uint8_t rgpu__metrics_untimed[RGPU_CALL_NFAMILIES];

/* The session loop's hooks, around each call it handles (its body received):
 *
 *   uint64_t t = rgpu_server_metrics_call_begin(header.type);
 *   ... handle the call ...
 *   rgpu_server_metrics_call_end(header.type, header.bulk_len, t);
 *
 * begin returns the time (rgpu_metrics_now_ns) when this call is to be
 * timed, 0 when not. end counts the call, its duration when timed, and its
 * bulk_len bytes when it carried any. Session thread only: lock-free, no
 * allocation; an untimed call costs a thread-local decrement and one
 * relaxed atomic addition. */
static inline uint64_t rgpu_server_metrics_call_begin(uint16_t type)
{
    uint8_t *untimed = &rgpu__metrics_untimed[rgpu_call_family(type)];

    if (*untimed) {
        --*untimed;
        return 0;
    }
    *untimed = RGPU_METRICS_TIME_EVERY - 1;
    return rgpu_metrics_now_ns();
}

static inline void rgpu_server_metrics_call_end(uint16_t type, uint64_t bulk_len, uint64_t start_ns)
{
    rgpu_call_family_t family = rgpu_call_family(type);

    atomic_fetch_add_explicit(&rgpu_metrics.calls_total[family], 1, memory_order_relaxed);
    if (start_ns)
        rgpu_histogram_observe(&rgpu_metrics.call_duration[family],
                               rgpu_metrics_now_ns() - start_ns);
    if (bulk_len)
        rgpu_histogram_observe(&rgpu_metrics.call_bulk[family], bulk_len);
}

/* Appends the Prometheus text of rgpu_metrics to out (the endpoint's
 * format callback; arg is unused). Loop thread. */
void rgpu_metrics_format(rgpu_prom_t *out, void *arg);

typedef rgpu_metrics_http_t rgpu_metrics_server_t;

/* rgpu_metrics_http_start with rgpu_metrics_format: the server's endpoint
 * (same returns). Loop thread only. */
rgpu_status_t rgpu_metrics_server_start(uv_loop_t *loop, const char *addr,
                                        rgpu_metrics_server_t **server_p,
                                        char *local, size_t local_cap);

/* rgpu_metrics_http_stop. NULL is ignored. Loop thread. */
void rgpu_metrics_server_stop(rgpu_metrics_server_t *server);

#endif
