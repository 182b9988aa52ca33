/*
 * Server-wide counters and the Prometheus text endpoint.
 *
 * Counters are atomics: sessions update them from their own threads and from
 * OpenCL event callbacks; the endpoint reads them on the libuv loop.
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
 */
#ifndef RGPU_SERVER_METRICS_H
#define RGPU_SERVER_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "rgpu/status.h"

typedef struct {
    atomic_llong sessions_active;
    atomic_ullong sessions_total;
    atomic_llong buffer_bytes;
    atomic_llong buffers;
    atomic_ullong protocol_errors_total;
    atomic_ullong connections_refused_total;
    atomic_ullong accept_errors_total;
} rgpu_metrics_t;

extern rgpu_metrics_t rgpu_metrics;

/* Writes the Prometheus text exposition of rgpu_metrics into out (NUL
 * terminated); returns its length, truncated to cap - 1. */
size_t rgpu_metrics_format(char *out, size_t cap);

typedef struct rgpu_metrics_server rgpu_metrics_server_t;

/* The endpoint's bounds: anyone who reaches its port may connect. */
#define RGPU_METRICS_MAX_CONNS 16           /* more are accepted and closed at once */
#define RGPU_METRICS_CONN_TIMEOUT_MS 5000   /* a connection's whole life */
#define RGPU_METRICS_MAX_REQUEST 4096       /* bytes of request head */

/* Listens on addr ("host:port", port 0 picks one) on loop and answers every
 * HTTP GET with rgpu_metrics_format (HEAD with its head only, any other
 * method with 405, a malformed or oversized head with 400). local (if not NULL) receives the address
 * bound. Returns RGPU_ERR_ADDRESS, RGPU_ERR_IO or RGPU_ERR_NOMEM on failure.
 * Runs on the loop thread only. */
rgpu_status_t rgpu_metrics_server_start(uv_loop_t *loop, const char *addr,
                                        rgpu_metrics_server_t **server_p,
                                        char *local, size_t local_cap);

/* Stops listening and closes every open connection (an answer being
 * written is cut short); the server is freed once all their close callbacks
 * ran, so the loop can end. NULL is ignored. Loop thread. */
void rgpu_metrics_server_stop(rgpu_metrics_server_t *server);

#endif
