/* Shared helpers of the scheduler unit tests: a cluster in memory. */
#ifndef RGPU_TEST_SCHED_FIXTURE_H
#define RGPU_TEST_SCHED_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "sched_core.h"

/* Registers server "10.0.0.<n>:7070" with ngpus GPUs of mem bytes each. */
static inline rgpu_status_t fx_register(rgpu_sched_t *s, unsigned n, unsigned ngpus, uint64_t mem)
{
    Rgpu__GpuInfo gpus[16], *ptrs[16];
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
    Rgpu__ApiFamily apis[1] = {RGPU__API_FAMILY__API_OPENCL};
    char addr[64], reason[256];

    for (unsigned g = 0; g < ngpus; g++) {
        rgpu__gpu_info__init(&gpus[g]);
        gpus[g].index = g;
        gpus[g].model = (char *)"test-gpu";
        gpus[g].memory = mem;
        gpus[g].n_apis = 1;
        gpus[g].apis = apis;
        ptrs[g] = &gpus[g];
    }
    snprintf(addr, sizeof(addr), "10.0.0.%u:7070", n);
    reg.address = addr;
    reg.transport = (char *)"tcp";
    reg.hostname = (char *)"node";
    reg.n_gpus = ngpus;
    reg.gpus = ptrs;
    return rgpu_sched_register(s, &reg, 1000, reason, sizeof(reason));
}

/* A heartbeat without sessions, no reply wanted. */
static inline rgpu_status_t fx_heartbeat(rgpu_sched_t *s, const char *address, int64_t now)
{
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;

    hb.address = (char *)address;
    return rgpu_sched_heartbeat(s, &hb, now, NULL);
}

static inline Rgpu__AllocRequest fx_req(uint32_t count)
{
    Rgpu__AllocRequest req = RGPU__ALLOC_REQUEST__INIT;

    req.count = count;
    req.user = (char *)"alice";
    return req;
}

/* Number of distinct servers in a lease. */
static inline unsigned fx_nservers(const Rgpu__Lease *l)
{
    unsigned n = 0;

    for (size_t g = 0; g < l->n_gpus; g++) {
        int seen = 0;
        for (size_t k = 0; k < g; k++)
            seen |= strcmp(l->gpus[k]->server, l->gpus[g]->server) == 0;
        n += !seen;
    }
    return n;
}

#endif
