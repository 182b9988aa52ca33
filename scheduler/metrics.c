/*
 * rgpu-scheduler's metrics and their Prometheus text (sched_metrics.h).
 */
#include "sched_metrics.h"

#include <stdio.h>

#include "scheduler.pb-c.h"

#define RGPU_LAT(i) [i] = RGPU_HISTOGRAM_INIT(rgpu_metrics_latency_bounds_ns)
rgpu_sched_metrics_t rgpu_sched_metrics = {
    .request_duration = {RGPU_LAT(0), RGPU_LAT(1), RGPU_LAT(2), RGPU_LAT(3), RGPU_LAT(4),
                         RGPU_LAT(5), RGPU_LAT(6), RGPU_LAT(7)},
};
#undef RGPU_LAT
_Static_assert(RGPU_SCHED_REQ_N == 8, "rgpu_sched_metrics' initializer has a histogram per type");

static const char *const rgpu_sched_req_names[RGPU_SCHED_REQ_N] = {
    "register", "heartbeat", "alloc", "renew", "release", "list", "drain", "other"};
static const char *const rgpu_sched_refusal_names[RGPU_SCHED_REFUSED_N] = {
    "no_capacity", "invalid_request", "not_authorized", "store_error", "other"};
static const char *const rgpu_sched_end_names[RGPU_SCHED_END_N] = {"released", "expired",
                                                                   "job_gone"};

static rgpu_sched_req_t rgpu_sched_req_of(uint16_t type)
{
    switch (type) {
    case RGPU__MSG_TYPE__MSG_SCHED_REGISTER: return RGPU_SCHED_REQ_REGISTER;
    case RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT: return RGPU_SCHED_REQ_HEARTBEAT;
    case RGPU__MSG_TYPE__MSG_SCHED_ALLOC: return RGPU_SCHED_REQ_ALLOC;
    case RGPU__MSG_TYPE__MSG_SCHED_RENEW: return RGPU_SCHED_REQ_RENEW;
    case RGPU__MSG_TYPE__MSG_SCHED_RELEASE: return RGPU_SCHED_REQ_RELEASE;
    case RGPU__MSG_TYPE__MSG_SCHED_LIST: return RGPU_SCHED_REQ_LIST;
    case RGPU__MSG_TYPE__MSG_SCHED_DRAIN: return RGPU_SCHED_REQ_DRAIN;
    default: return RGPU_SCHED_REQ_OTHER;
    }
}

void rgpu_sched_metrics_request(uint16_t type, uint64_t start_ns)
{
    rgpu_histogram_observe(&rgpu_sched_metrics.request_duration[rgpu_sched_req_of(type)],
                           rgpu_metrics_now_ns() - start_ns);
}

void rgpu_sched_metrics_alloc(rgpu_status_t status)
{
    rgpu_sched_refusal_t why;

    switch (status) {
    case RGPU_OK:
        rgpu_sched_metrics.allocations_total++;
        return;
    case RGPU_ERR_NOT_FOUND: why = RGPU_SCHED_REFUSED_NO_CAPACITY; break;
    case RGPU_ERR_INVALID_ARG: why = RGPU_SCHED_REFUSED_INVALID; break;
    case RGPU_ERR_REFUSED: why = RGPU_SCHED_REFUSED_AUTH; break;
    case RGPU_ERR_IO: why = RGPU_SCHED_REFUSED_STORE; break;
    default: why = RGPU_SCHED_REFUSED_OTHER; break;
    }
    rgpu_sched_metrics.refusals_total[why]++;
}

/* Leases by mode and by whether every GPU's server is up. */
typedef struct {
    const rgpu_sched_t *s;
    uint64_t n[2][2];           /* [shared][degraded] */
} rgpu_sched_lease_count_t;

static void rgpu_sched_count_lease(uint64_t key, void *value, void *arg)
{
    rgpu_sched_lease_count_t *c = arg;
    const rgpu_sched_lease_t *lease = value;
    int degraded = 0;

    (void)key;
    for (size_t g = 0; g < lease->pb->n_gpus && !degraded; g++)
        degraded = lease->server[g] == UINT32_MAX || !c->s->servers[lease->server[g]].up;
    c->n[lease->pb->shared ? 1 : 0][degraded]++;
}

void rgpu_sched_metrics_format(rgpu_prom_t *out, void *arg)
{
    const rgpu_sched_t *s = arg;
    rgpu_sched_metrics_t *m = &rgpu_sched_metrics;
    rgpu_sched_lease_count_t leases = {s, {{0}}};
    /* servers: up, drained, down; GPUs: free, exclusive, shared, drained, down */
    uint64_t servers[3] = {0}, gpus[5] = {0};
    static const char *const server_states[3] = {"up", "drained", "down"};
    static const char *const gpu_states[5] = {"free", "exclusive", "shared", "drained", "down"};
    char labels[96];

    rgpu_htable_foreach(&s->leases, rgpu_sched_count_lease, &leases);
    for (uint32_t i = 0; i < s->nservers; i++) {
        const rgpu_sched_server_t *server = &s->servers[i];

        servers[!server->up ? 2 : server->drained ? 1 : 0]++;
        for (size_t g = 0; g < server->reg->n_gpus; g++) {
            const rgpu_sched_gpu_use_t *use = &server->use[g];

            gpus[use->exclusive ? 1 : use->shared ? 2 : !server->up ? 4 : server->drained ? 3 : 0]++;
        }
    }

    rgpu_prom_family(out, "rgpu_scheduler_leases", "gauge",
                     "Leases alive, by mode (exclusive, shared) and state (active: every GPU's "
                     "server is up; degraded: a server is down or unknown).");
    for (int sh = 0; sh < 2; sh++)
        for (int dg = 0; dg < 2; dg++) {
            snprintf(labels, sizeof(labels), "mode=\"%s\",state=\"%s\"",
                     sh ? "shared" : "exclusive", dg ? "degraded" : "active");
            rgpu_prom_u64(out, "rgpu_scheduler_leases", labels, leases.n[sh][dg]);
        }
    rgpu_prom_family(out, "rgpu_scheduler_servers", "gauge",
                     "Registered GPU servers by state (up, drained: up but taking no new "
                     "leases, down: heartbeats missed).");
    rgpu_prom_u64_by(out, "rgpu_scheduler_servers", "state", server_states, servers, 3);
    rgpu_prom_family(out, "rgpu_scheduler_gpus", "gauge",
                     "GPUs of registered servers by state (free, exclusive and shared: held by "
                     "leases, drained and down: free GPUs of such servers).");
    rgpu_prom_u64_by(out, "rgpu_scheduler_gpus", "state", gpu_states, gpus, 5);
    rgpu_prom_family(out, "rgpu_scheduler_allocations_total", "counter",
                     "Allocation requests answered with a lease (a job's repeated request "
                     "answered with its existing lease included).");
    rgpu_prom_u64(out, "rgpu_scheduler_allocations_total", "", m->allocations_total);
    rgpu_prom_family(out, "rgpu_scheduler_allocation_refusals_total", "counter",
                     "Allocation requests refused, by reason.");
    rgpu_prom_u64_by(out, "rgpu_scheduler_allocation_refusals_total", "reason",
                     rgpu_sched_refusal_names, m->refusals_total, RGPU_SCHED_REFUSED_N);
    rgpu_prom_family(out, "rgpu_scheduler_renewals_total", "counter", "Leases renewed.");
    rgpu_prom_u64(out, "rgpu_scheduler_renewals_total", "", m->renewals_total);
    rgpu_prom_family(out, "rgpu_scheduler_lease_ends_total", "counter",
                     "Leases that ended, by reason (released, expired, job_gone: its Slurm job "
                     "vanished).");
    rgpu_prom_u64_by(out, "rgpu_scheduler_lease_ends_total", "reason", rgpu_sched_end_names,
                     m->lease_ends_total, RGPU_SCHED_END_N);
    rgpu_prom_family(out, "rgpu_scheduler_connections", "gauge",
                     "Connections of servers, the rgpu CLI and the Slurm plugin open now.");
    rgpu_prom_u64(out, "rgpu_scheduler_connections", "", m->connections);
    rgpu_prom_family(out, "rgpu_scheduler_connections_refused_total", "counter",
                     "Connections closed at once because --max-connections were open.");
    rgpu_prom_u64(out, "rgpu_scheduler_connections_refused_total", "",
                  m->connections_refused_total);
    rgpu_prom_family(out, "rgpu_scheduler_request_duration_seconds", "histogram",
                     "Time the scheduler took to handle one request, from its frame received "
                     "to its reply queued (the store's commit included), by request type.");
    for (int i = 0; i < RGPU_SCHED_REQ_N; i++) {
        snprintf(labels, sizeof(labels), "type=\"%s\"", rgpu_sched_req_names[i]);
        rgpu_prom_histogram(out, "rgpu_scheduler_request_duration_seconds", labels,
                            &m->request_duration[i], 1e9);
    }
}
