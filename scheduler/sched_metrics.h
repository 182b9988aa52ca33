/*
 * rgpu-scheduler's metrics (docs/observability.md lists each one). The
 * counters and histograms are bumped by main.c (and slurm_jobs.c) where a
 * request's outcome is known; the gauges (leases, servers, GPUs) are read
 * from the state when scraped. Everything runs on the loop thread, like the
 * rest of the scheduler.
 *
 *   frame in ─ rgpu_sched_handle ─▶ rgpu_sched_metrics_request (latency by type)
 *                    alloc ───────▶ rgpu_sched_metrics_alloc (granted, or refused: reason)
 *   GET /metrics ─ rgpu_sched_metrics_format(state) ─▶ text
 */
#ifndef RGPU_SCHED_METRICS_H
#define RGPU_SCHED_METRICS_H

#include <stdint.h>

#include "rgpu/metrics.h"
#include "rgpu/status.h"
#include "sched_core.h"

/* Request types with a latency histogram each; anything else is OTHER. */
typedef enum {
    RGPU_SCHED_REQ_REGISTER = 0,
    RGPU_SCHED_REQ_HEARTBEAT,
    RGPU_SCHED_REQ_ALLOC,
    RGPU_SCHED_REQ_RENEW,
    RGPU_SCHED_REQ_RELEASE,
    RGPU_SCHED_REQ_LIST,
    RGPU_SCHED_REQ_DRAIN,
    RGPU_SCHED_REQ_OTHER,
    RGPU_SCHED_REQ_N
} rgpu_sched_req_t;

/* Why an allocation was refused (the reason label). */
typedef enum {
    RGPU_SCHED_REFUSED_NO_CAPACITY = 0, /* no GPUs free that match (RGPU_ERR_NOT_FOUND) */
    RGPU_SCHED_REFUSED_INVALID,         /* count, ttl or memory out of bounds */
    RGPU_SCHED_REFUSED_AUTH,            /* not authenticated or not allowed */
    RGPU_SCHED_REFUSED_STORE,           /* the SQLite store failed */
    RGPU_SCHED_REFUSED_OTHER,           /* out of memory, anything else */
    RGPU_SCHED_REFUSED_N
} rgpu_sched_refusal_t;

/* How leases ended (the reason label). */
typedef enum {
    RGPU_SCHED_END_RELEASED = 0,        /* a release request */
    RGPU_SCHED_END_EXPIRED,             /* reclaimed at expiry */
    RGPU_SCHED_END_JOB_GONE,            /* its Slurm job vanished (--slurm-reclaim) */
    RGPU_SCHED_END_N
} rgpu_sched_end_t;

typedef struct {
    uint64_t allocations_total;
    uint64_t refusals_total[RGPU_SCHED_REFUSED_N];
    uint64_t renewals_total;
    uint64_t lease_ends_total[RGPU_SCHED_END_N];
    uint64_t connections_refused_total; /* past --max-connections */
    uint32_t connections;               /* open now (set by main.c) */
    rgpu_histogram_t request_duration[RGPU_SCHED_REQ_N];  /* nanoseconds */
} rgpu_sched_metrics_t;

extern rgpu_sched_metrics_t rgpu_sched_metrics;

/* A request of message type took from start_ns (rgpu_metrics_now_ns) to now. */
void rgpu_sched_metrics_request(uint16_t type, uint64_t start_ns);

/* An allocation was answered with status: RGPU_OK counts a grant, anything
 * else a refusal by the reason status stands for (RGPU_ERR_REFUSED: not
 * authenticated or not allowed). */
void rgpu_sched_metrics_alloc(rgpu_status_t status);

/* Appends the scheduler's Prometheus text, its gauges read from s (an
 * rgpu_sched_t *: the endpoint's format callback). Loop thread. */
void rgpu_sched_metrics_format(rgpu_prom_t *out, void *s);

#endif
