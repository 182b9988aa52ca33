/*
 * The server's metrics (metrics.h) and their Prometheus text.
 */
#include "metrics.h"

#include <stdio.h>

#include "session.pb-c.h"

#define RGPU_LAT(f) [f] = RGPU_HISTOGRAM_INIT(rgpu_metrics_latency_bounds_ns)
#define RGPU_SIZE(f) [f] = RGPU_HISTOGRAM_INIT(rgpu_metrics_size_bounds)
rgpu_metrics_t rgpu_metrics = {
    .call_duration = {RGPU_LAT(0), RGPU_LAT(1), RGPU_LAT(2), RGPU_LAT(3), RGPU_LAT(4),
                      RGPU_LAT(5), RGPU_LAT(6), RGPU_LAT(7), RGPU_LAT(8), RGPU_LAT(9),
                      RGPU_LAT(10), RGPU_LAT(11)},
    .call_bulk = {RGPU_SIZE(0), RGPU_SIZE(1), RGPU_SIZE(2), RGPU_SIZE(3), RGPU_SIZE(4),
                  RGPU_SIZE(5), RGPU_SIZE(6), RGPU_SIZE(7), RGPU_SIZE(8), RGPU_SIZE(9),
                  RGPU_SIZE(10), RGPU_SIZE(11)},
};
#undef RGPU_LAT
#undef RGPU_SIZE
_Static_assert(RGPU_CALL_NFAMILIES == 12, "rgpu_metrics' initializer has a histogram per family");

_Thread_local uint8_t rgpu__metrics_untimed[RGPU_CALL_NFAMILIES];

static const char *const rgpu_call_family_names[RGPU_CALL_NFAMILIES] = {
    [RGPU_CALL_SESSION] = "session", [RGPU_CALL_CREATE] = "create", [RGPU_CALL_BUILD] = "build",
    [RGPU_CALL_KERNEL] = "kernel",   [RGPU_CALL_WRITE] = "write",   [RGPU_CALL_READ] = "read",
    [RGPU_CALL_COPY] = "copy",       [RGPU_CALL_SYNC] = "sync",     [RGPU_CALL_EVENT] = "event",
    [RGPU_CALL_INFO] = "info",       [RGPU_CALL_RELEASE] = "release", [RGPU_CALL_OTHER] = "other",
};

rgpu_call_family_t rgpu_call_family(uint16_t type)
{
    switch (type) {
    case RGPU__MSG_TYPE__MSG_HELLO:
    case RGPU__MSG_TYPE__MSG_PING:
        return RGPU_CALL_SESSION;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE:
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER:
        return RGPU_CALL_CREATE;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY:
    case RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM:
    case RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM:
    case RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM:
        return RGPU_CALL_BUILD;
    case RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG:
    case RGPU__MSG_TYPE__MSG_CL_NDRANGE:
        return RGPU_CALL_KERNEL;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT:
    case RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE:
        return RGPU_CALL_WRITE;
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT:
    case RGPU__MSG_TYPE__MSG_CL_READ_IMAGE:
        return RGPU_CALL_READ;
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT:
    case RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE:
    case RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER:
    case RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE:
    case RGPU__MSG_TYPE__MSG_CL_MIGRATE:
        return RGPU_CALL_COPY;
    case RGPU__MSG_TYPE__MSG_CL_MARKER:
    case RGPU__MSG_TYPE__MSG_CL_FLUSH:
    case RGPU__MSG_TYPE__MSG_CL_FINISH:
    case RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS:
        return RGPU_CALL_SYNC;
    case RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS:
    case RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK:
        return RGPU_CALL_EVENT;
    case RGPU__MSG_TYPE__MSG_CL_GET_INFO:
        return RGPU_CALL_INFO;
    case RGPU__MSG_TYPE__MSG_CL_RELEASE:
        return RGPU_CALL_RELEASE;
    default:
        return RGPU_CALL_OTHER;
    }
}

static void rgpu_metrics_family_counters(rgpu_prom_t *out, const char *name, atomic_ullong *c)
{
    uint64_t counts[RGPU_CALL_NFAMILIES];

    for (int f = 0; f < RGPU_CALL_NFAMILIES; f++)
        counts[f] = atomic_load_explicit(&c[f], memory_order_relaxed);
    rgpu_prom_u64_by(out, name, "family", rgpu_call_family_names, counts, RGPU_CALL_NFAMILIES);
}

static void rgpu_metrics_family_histograms(rgpu_prom_t *out, const char *name,
                                           rgpu_histogram_t *h, double scale)
{
    char labels[64];

    for (int f = 0; f < RGPU_CALL_NFAMILIES; f++) {
        snprintf(labels, sizeof(labels), "family=\"%s\"", rgpu_call_family_names[f]);
        rgpu_prom_histogram(out, name, labels, &h[f], scale);
    }
}

void rgpu_metrics_format(rgpu_prom_t *out, void *arg)
{
    rgpu_metrics_t *m = &rgpu_metrics;

    (void)arg;
    rgpu_prom_family(out, "rgpu_server_sessions_active", "gauge", "Client sessions now open.");
    rgpu_prom_i64(out, "rgpu_server_sessions_active", "", atomic_load(&m->sessions_active));
    rgpu_prom_family(out, "rgpu_server_sessions_total", "counter",
                     "Client sessions accepted since start.");
    rgpu_prom_u64(out, "rgpu_server_sessions_total", "", atomic_load(&m->sessions_total));
    rgpu_prom_family(out, "rgpu_server_buffer_bytes", "gauge",
                     "Bytes of live device buffers of all sessions (sub-buffers not counted).");
    rgpu_prom_i64(out, "rgpu_server_buffer_bytes", "", atomic_load(&m->buffer_bytes));
    rgpu_prom_family(out, "rgpu_server_buffers", "gauge",
                     "Live device buffers of all sessions (sub-buffers not counted).");
    rgpu_prom_i64(out, "rgpu_server_buffers", "", atomic_load(&m->buffers));
    rgpu_prom_family(out, "rgpu_server_protocol_errors_total", "counter",
                     "Sessions ended by a protocol error.");
    rgpu_prom_u64(out, "rgpu_server_protocol_errors_total", "",
                  atomic_load(&m->protocol_errors_total));
    rgpu_prom_family(out, "rgpu_server_connections_refused_total", "counter",
                     "Connections closed at once because --max-sessions sessions were open.");
    rgpu_prom_u64(out, "rgpu_server_connections_refused_total", "",
                  atomic_load(&m->connections_refused_total));
    rgpu_prom_family(out, "rgpu_server_accept_errors_total", "counter",
                     "Failed accepts of client connections (e.g. out of file descriptors).");
    rgpu_prom_u64(out, "rgpu_server_accept_errors_total", "", atomic_load(&m->accept_errors_total));
    rgpu_prom_family(out, "rgpu_server_calls_total", "counter",
                     "Calls handled by session threads, by call family.");
    rgpu_metrics_family_counters(out, "rgpu_server_calls_total", m->calls_total);
    rgpu_prom_family(out, "rgpu_server_call_duration_seconds", "histogram",
                     "Time a session thread spent on one call, from its body received to its "
                     "handler's return (bulk data received included), by call family; the "
                     "first call of each family in a session is timed, then one in 16.");
    rgpu_metrics_family_histograms(out, "rgpu_server_call_duration_seconds", m->call_duration, 1e9);
    rgpu_prom_family(out, "rgpu_server_call_bulk_bytes", "histogram",
                     "Bulk bytes carried in by one call (buffer, image and program binary data), "
                     "by call family; calls without bulk are not counted.");
    rgpu_metrics_family_histograms(out, "rgpu_server_call_bulk_bytes", m->call_bulk, 1.0);
}

rgpu_status_t rgpu_metrics_server_start(uv_loop_t *loop, const char *addr,
                                        rgpu_metrics_server_t **server_p,
                                        char *local, size_t local_cap)
{
    return rgpu_metrics_http_start(loop, addr, rgpu_metrics_format, NULL, server_p, local,
                                   local_cap);
}

void rgpu_metrics_server_stop(rgpu_metrics_server_t *server)
{
    rgpu_metrics_http_stop(server);
}
