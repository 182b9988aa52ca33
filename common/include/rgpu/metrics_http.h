/*
 * The daemons' Prometheus endpoint: a tiny HTTP/1.0 server on a libuv loop
 * that answers every GET with the text its format callback builds
 * (rgpu/metrics.h). Library rgpu_metrics_http, built where libuv is
 * (rgpu-server, rgpu-scheduler); client builds do without.
 *
 *   accept ─▶ read the request head (bounded) ─▶ format(out, arg) ─▶ write ─▶ close
 *
 * Anyone who reaches the port may connect, so everything is bounded: at
 * most RGPU_METRICS_MAX_CONNS connections at once (more are accepted and
 * closed at once), each lives at most RGPU_METRICS_CONN_TIMEOUT_MS, a head
 * longer than RGPU_METRICS_MAX_REQUEST bytes or one that is not HTTP gets a
 * 400, and stopping closes every connection.
 */
#ifndef RGPU_METRICS_HTTP_H
#define RGPU_METRICS_HTTP_H

#include <stddef.h>

#include <uv.h>

#include "rgpu/metrics.h"
#include "rgpu/status.h"

#define RGPU_METRICS_MAX_CONNS 16           /* more are accepted and closed at once */
#define RGPU_METRICS_CONN_TIMEOUT_MS 5000   /* a connection's whole life */
#define RGPU_METRICS_MAX_REQUEST 4096       /* bytes of request head */

typedef struct rgpu_metrics_http rgpu_metrics_http_t;

/* Appends the whole exposition to out. Runs on the loop thread, once per GET
 * (and HEAD). A failed out (too large, no memory) is answered with a 500. */
typedef void (*rgpu_metrics_format_fn)(rgpu_prom_t *out, void *arg);

/* Listens on addr ("host:port", port 0 picks one) on loop and answers every
 * HTTP GET with format's text (HEAD with its head only, any other method
 * with 405, a malformed or oversized head with 400). local (if not NULL)
 * receives the address bound. Returns RGPU_ERR_ADDRESS (addr is not
 * host:port or does not resolve), RGPU_ERR_IO (cannot listen, logged) or
 * RGPU_ERR_NOMEM. Loop thread only. */
rgpu_status_t rgpu_metrics_http_start(uv_loop_t *loop, const char *addr,
                                      rgpu_metrics_format_fn format, void *arg,
                                      rgpu_metrics_http_t **server_p, char *local,
                                      size_t local_cap);

/* Stops listening and closes every open connection (an answer being written
 * is cut short); the server is freed once all their close callbacks ran, so
 * the loop can end. Call it before a uv_walk that closes the loop's other
 * handles: the endpoint's handles are then closing already. NULL is
 * ignored. Loop thread. */
void rgpu_metrics_http_stop(rgpu_metrics_http_t *server);

#endif
