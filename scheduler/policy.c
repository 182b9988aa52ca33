/*
 * Allocation policy: which GPUs a request gets.
 *
 *   pack   (default) fill the servers that have the fewest free GPUs
 *          first, so whole servers stay free for big or same-server jobs;
 *   spread one GPU per server, round after round, starting with the
 *          servers that have the most free GPUs.
 *
 * A GPU is free for an exclusive request when no lease holds it, and for a
 * shared one when no exclusive lease holds it and the reserved memory plus
 * the request's still fits. A shared request always reserves: its memory,
 * or without one the scheduler's default (--default-shared-mem, capped at
 * the GPU's memory), which becomes the lease's quota; a GPU of unknown
 * (zero) memory is never shared. Sizes are compared without overflow (a
 * request for 2^64 - 1 bytes fits nowhere). Down and drained servers give
 * nothing. A GPU is never in two leases exclusively: eligibility is checked
 * against the use counters that every lease change updates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched_core.h"

uint64_t rgpu__policy_shared_need(const rgpu_sched_t *s, const Rgpu__AllocRequest *req,
                                  uint64_t gpu_memory)
{
    if (req->memory)
        return req->memory;
    return s->default_shared_mem < gpu_memory ? s->default_shared_mem : gpu_memory;
}

/* Whether gpu serves api (API_NONE: OpenCL); a GPU listing no API is one
 * of a server from before CUDA, which served OpenCL only. */
static int rgpu_policy_serves(const Rgpu__GpuInfo *gpu, Rgpu__ApiFamily api)
{
    api = rgpu__sched_api(api);
    if (!gpu->n_apis)
        return api == RGPU__API_FAMILY__API_OPENCL;
    for (size_t a = 0; a < gpu->n_apis; a++)
        if (rgpu__sched_api(gpu->apis[a]) == api)
            return 1;
    return 0;
}

uint32_t rgpu__policy_apis_all(const Rgpu__RegisterServer *reg)
{
    uint32_t all = 0;

    for (uint32_t api = RGPU__API_FAMILY__API_OPENCL; api <= RGPU__API_FAMILY__API_CUDA; api++) {
        int every = 1;

        for (size_t p = 0; p < reg->n_gpus && every; p++)
            every = rgpu_policy_serves(reg->gpus[p], (Rgpu__ApiFamily)api);
        all |= every ? 1u << api : 0;
    }
    return all;
}

static int rgpu_policy_gpu_ok(const rgpu_sched_t *s, const rgpu_sched_server_t *server, size_t p,
                              const Rgpu__AllocRequest *req)
{
    uint64_t need;

    const Rgpu__GpuInfo *gpu = server->reg->gpus[p];
    const rgpu_sched_gpu_use_t *use = &server->use[p];

    if (gpu->memory < req->min_memory)
        return 0;
    if (!rgpu_policy_serves(gpu, req->api))
        return 0;
    if (use->exclusive)
        return 0;
    if (!req->shared)
        return use->shared == 0;
    need = rgpu__policy_shared_need(s, req, gpu->memory);
    /* reserved + need <= memory, without the sum. */
    return need && need <= gpu->memory && use->reserved <= gpu->memory - need;
}

/* A plain request (exclusive, any memory) takes any GPU no lease holds on
 * a server whose every GPU serves its API (api_bit: 1 << its ApiFamily,
 * computed once per request): the server's nfree counter answers without
 * a scan. */
static uint32_t rgpu_policy_free_count(const rgpu_sched_t *s, const rgpu_sched_server_t *server,
                                       const Rgpu__AllocRequest *req, uint32_t api_bit)
{
    uint32_t n = 0;

    if (!server->up || server->drained)
        return 0;
    if (!req->shared && !req->min_memory && (server->apis_all & api_bit))
        return server->nfree;
    for (size_t p = 0; p < server->reg->n_gpus; p++)
        n += (uint32_t)rgpu_policy_gpu_ok(s, server, p, req);
    return n;
}

/* qsort has no context argument: the free counts are passed through this. */
static _Thread_local const uint32_t *rgpu_policy_free;

static int rgpu_policy_cmp_fewest(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint32_t fx = rgpu_policy_free[x], fy = rgpu_policy_free[y];

    if (fx != fy)
        return fx < fy ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int rgpu_policy_cmp_most(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint32_t fx = rgpu_policy_free[x], fy = rgpu_policy_free[y];

    if (fx != fy)
        return fx > fy ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* Orders the candidates by free GPUs, fewest (or most) first, ties by
 * server index: a counting sort, since free counts are small; qsort for
 * servers of more than RGPU_POLICY_MAX_BUCKET GPUs. */
#define RGPU_POLICY_MAX_BUCKET 256

static void rgpu_policy_order(uint32_t *order, uint32_t n, const uint32_t *nfree, int most_first)
{
    uint32_t count[RGPU_POLICY_MAX_BUCKET + 1] = {0}, max = 0;
    uint32_t *sorted;

    for (uint32_t i = 0; i < n; i++)
        max = nfree[order[i]] > max ? nfree[order[i]] : max;
    sorted = max <= RGPU_POLICY_MAX_BUCKET ? malloc(n * sizeof(*sorted) + 1) : NULL;
    if (!sorted) {
        rgpu_policy_free = nfree;
        qsort(order, n, sizeof(*order), most_first ? rgpu_policy_cmp_most : rgpu_policy_cmp_fewest);
        return;
    }
    for (uint32_t i = 0; i < n; i++)
        count[most_first ? max - nfree[order[i]] : nfree[order[i]]]++;
    for (uint32_t b = 0, sum = 0; b <= max; b++) {
        uint32_t c = count[b];

        count[b] = sum;
        sum += c;
    }
    /* order[] is in server index order: placing in that order keeps ties by index. */
    for (uint32_t i = 0; i < n; i++)
        sorted[count[most_first ? max - nfree[order[i]] : nfree[order[i]]]++] = order[i];
    memcpy(order, sorted, n * sizeof(*order));
    free(sorted);
}

/* The most memory any registered GPU has (a scan: only on refusals). */
static uint64_t rgpu_policy_largest(const rgpu_sched_t *s)
{
    uint64_t most = 0;

    for (uint32_t i = 0; i < s->nservers; i++)
        for (size_t p = 0; p < s->servers[i].reg->n_gpus; p++)
            if (s->servers[i].reg->gpus[p]->memory > most)
                most = s->servers[i].reg->gpus[p]->memory;
    return most;
}

/* Whether any registered GPU, up or not, serves api (a scan: only on refusals). */
static int rgpu_policy_any_serves(const rgpu_sched_t *s, Rgpu__ApiFamily api)
{
    for (uint32_t i = 0; i < s->nservers; i++)
        for (size_t p = 0; p < s->servers[i].reg->n_gpus; p++)
            if (rgpu_policy_serves(s->servers[i].reg->gpus[p], api))
                return 1;
    return 0;
}

rgpu_status_t rgpu__sched_pick(rgpu_sched_t *s, const Rgpu__AllocRequest *req, uint32_t *server,
                               uint32_t *pos, char *reason, size_t cap)
{
    uint32_t *order = s->scratch, *nfree = s->scratch2;
    uint32_t ncand = 0, got = 0;
    uint64_t total = 0;     /* GPUs of every server: may pass 2^32 */
    int spread = req->placement == RGPU__PLACEMENT__PLACEMENT_SPREAD;
    uint32_t family = (uint32_t)rgpu__sched_api(req->api);
    uint32_t api_bit = family < 32 ? 1u << family : 0;

    for (uint32_t i = 0; i < s->nservers; i++) {
        nfree[i] = rgpu_policy_free_count(s, &s->servers[i], req, api_bit);
        if (nfree[i] && (!req->same_server || nfree[i] >= req->count)) {
            order[ncand++] = i;
            total += nfree[i];
        }
    }
    if (total < req->count) {
        uint64_t largest = rgpu_policy_largest(s);
        uint64_t want = req->shared && req->memory > req->min_memory ? req->memory
                                                                      : req->min_memory;

        if (largest && want > largest) {
            snprintf(reason, cap, "asked for %llu bytes per GPU; the largest GPU has %llu",
                     (unsigned long long)want, (unsigned long long)largest);
            return RGPU_ERR_INVALID_ARG;
        }
        const char *api = rgpu__sched_api_name(req->api);

        if (total == 0 && !rgpu_policy_any_serves(s, req->api))
            snprintf(reason, cap, "no GPU serving %s is free: no rgpu-server registered "
                     "with the scheduler serves %s (see rgpu gpus)", api, api);
        else if (total == 0)
            snprintf(reason, cap, "no GPU serving %s is free%s", api,
                     req->min_memory ? " with that much memory" : "");
        else if (req->same_server)
            snprintf(reason, cap, "no server has %u %s %s GPUs free%s", req->count,
                     req->shared ? "shareable" : "unleased", api,
                     req->min_memory ? " with that much memory" : "");
        else
            snprintf(reason, cap, "only %llu of the %u %s GPUs asked for are free%s",
                     (unsigned long long)total, req->count, api,
                     req->min_memory ? " with that much memory" : "");
        return RGPU_ERR_NOT_FOUND;
    }
    rgpu_policy_order(order, ncand, nfree, spread && !req->same_server);
    if (req->same_server)
        ncand = 1;  /* the fullest server that still fits the whole request */

    if (!spread || req->same_server) {
        for (uint32_t c = 0; c < ncand && got < req->count; c++) {
            const rgpu_sched_server_t *sv = &s->servers[order[c]];

            for (size_t p = 0; p < sv->reg->n_gpus && got < req->count; p++) {
                if (rgpu_policy_gpu_ok(s, sv, p, req)) {
                    server[got] = order[c];
                    pos[got++] = (uint32_t)p;
                }
            }
        }
    } else {
        /* Round r takes each candidate's r-th free GPU. */
        for (uint32_t round = 0; got < req->count; round++) {
            uint32_t before = got;

            for (uint32_t c = 0; c < ncand && got < req->count; c++) {
                const rgpu_sched_server_t *sv = &s->servers[order[c]];
                uint32_t seen = 0;

                for (size_t p = 0; p < sv->reg->n_gpus; p++) {
                    if (!rgpu_policy_gpu_ok(s, sv, p, req))
                        continue;
                    if (seen++ == round) {
                        server[got] = order[c];
                        pos[got++] = (uint32_t)p;
                        break;
                    }
                }
            }
            if (got == before)
                break;
        }
    }
    if (got < req->count) {
        snprintf(reason, cap, "only %u of the %u GPUs asked for could be placed", got, req->count);
        return RGPU_ERR_NOT_FOUND;
    }
    return RGPU_OK;
}
