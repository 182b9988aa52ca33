/*
 * The registration cache (include/rgpu/rcache.h has the correctness
 * argument). A list of regions, most recently used first: regions live only
 * while in use on tcp, so it stays short; verbs, keeping unused ones, will
 * want an interval tree (UCX's ucs_pgtable) in its place.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "rgpu/rcache.h"

typedef struct rgpu_region {
    rgpu_mem_t *mem;
    uintptr_t start, end;       /* [start, end) */
    rgpu_memtype_t memtype;
    unsigned refs;
    int invalid;                /* no new users; deregistered at the last put */
    struct rgpu_region *next;
} rgpu_region_t;

struct rgpu_rcache {
    rgpu_transport_t *tp;
    size_t max_unused;
    pthread_mutex_t lock;
    rgpu_region_t *regions;
    rgpu_rcache_stats_t stats;
};

rgpu_status_t rgpu_rcache_create(rgpu_transport_t *tp, size_t max_unused, rgpu_rcache_t **rc_p)
{
    rgpu_rcache_t *rc = calloc(1, sizeof(*rc));

    if (!rc)
        return RGPU_ERR_NOMEM;
    rc->tp = tp;
    if (max_unused == RGPU_RCACHE_DEFAULT)
        max_unused = rgpu_transport_caps(tp)->reg_pins ? (size_t)256 << 20 : 0;
    rc->max_unused = max_unused;
    pthread_mutex_init(&rc->lock, NULL);
    *rc_p = rc;
    return RGPU_OK;
}

void rgpu_rcache_destroy(rgpu_rcache_t *rc)
{
    if (!rc)
        return;
    while (rc->regions) {
        rgpu_region_t *r = rc->regions;
        rc->regions = r->next;
        rgpu_mem_deregister(r->mem);
        free(r);
    }
    pthread_mutex_destroy(&rc->lock);
    free(rc);
}

/* Unlinks unused regions past the budget (least recently used: the list's
 * tail) or invalid ones onto *out, for deregistering outside the lock. */
static void rgpu_rcache_trim(rgpu_rcache_t *rc, rgpu_region_t **out)
{
    rgpu_region_t **pp = &rc->regions, *last_unused = NULL, **last_pp = NULL;

    for (;;) {
        last_unused = NULL;
        for (pp = &rc->regions; *pp; pp = &(*pp)->next) {
            if ((*pp)->refs == 0 && (*pp)->invalid) {
                last_unused = *pp;
                last_pp = pp;
                break;
            }
            if ((*pp)->refs == 0) {
                last_unused = *pp;
                last_pp = pp;
            }
        }
        if (!last_unused || (!last_unused->invalid && rc->stats.unused_bytes <= rc->max_unused))
            return;
        *last_pp = last_unused->next;
        if (!last_unused->invalid)
            rc->stats.unused_bytes -= last_unused->end - last_unused->start;
        rc->stats.regions--;
        last_unused->next = *out;
        *out = last_unused;
    }
}

static void rgpu_rcache_free_list(rgpu_region_t *r)
{
    while (r) {
        rgpu_region_t *next = r->next;
        rgpu_mem_deregister(r->mem);
        free(r);
        r = next;
    }
}

rgpu_status_t rgpu_rcache_get(rgpu_rcache_t *rc, void *addr, size_t len, rgpu_memtype_t memtype,
                              rgpu_mem_t **mem_p)
{
    uintptr_t start = (uintptr_t)addr, end = start + len;
    rgpu_region_t **pp, *r;
    rgpu_mem_t *mem;
    rgpu_status_t status;

    if (!addr || len == 0 || end < start)
        return RGPU_ERR_INVALID_ARG;
    pthread_mutex_lock(&rc->lock);
    for (pp = &rc->regions; (r = *pp); pp = &r->next) {
        if (!r->invalid && r->memtype == memtype && r->start <= start && end <= r->end) {
            if (r->refs++ == 0)
                rc->stats.unused_bytes -= r->end - r->start;
            *pp = r->next;          /* most recently used first */
            r->next = rc->regions;
            rc->regions = r;
            rc->stats.hits++;
            pthread_mutex_unlock(&rc->lock);
            *mem_p = r->mem;
            return RGPU_OK;
        }
    }
    rc->stats.misses++;
    pthread_mutex_unlock(&rc->lock);

    r = calloc(1, sizeof(*r));
    if (!r)
        return RGPU_ERR_NOMEM;
    status = rgpu_mem_register(rc->tp, addr, len, memtype, &mem);
    if (status != RGPU_OK) {
        free(r);
        return status;
    }
    *r = (rgpu_region_t){mem, start, end, memtype, 1, 0, NULL};
    pthread_mutex_lock(&rc->lock);
    r->next = rc->regions;
    rc->regions = r;
    rc->stats.regions++;
    pthread_mutex_unlock(&rc->lock);
    *mem_p = mem;
    return RGPU_OK;
}

void rgpu_rcache_put(rgpu_rcache_t *rc, rgpu_mem_t *mem)
{
    rgpu_region_t *r, *drop = NULL;

    pthread_mutex_lock(&rc->lock);
    for (r = rc->regions; r && r->mem != mem; r = r->next)
        ;
    if (r && r->refs > 0 && --r->refs == 0) {
        if (!r->invalid)
            rc->stats.unused_bytes += r->end - r->start;
        rgpu_rcache_trim(rc, &drop);
    }
    pthread_mutex_unlock(&rc->lock);
    rgpu_rcache_free_list(drop);
}

void rgpu_rcache_invalidate(rgpu_rcache_t *rc, const void *addr, size_t len)
{
    uintptr_t start = (uintptr_t)addr, end = start + len;
    rgpu_region_t *r, *drop = NULL;

    pthread_mutex_lock(&rc->lock);
    for (r = rc->regions; r; r = r->next) {
        if (!r->invalid && r->start < end && start < r->end) {
            r->invalid = 1;
            if (r->refs == 0)
                rc->stats.unused_bytes -= r->end - r->start;
        }
    }
    rgpu_rcache_trim(rc, &drop);
    pthread_mutex_unlock(&rc->lock);
    rgpu_rcache_free_list(drop);
}

void rgpu_rcache_stats(rgpu_rcache_t *rc, rgpu_rcache_stats_t *stats_p)
{
    pthread_mutex_lock(&rc->lock);
    *stats_p = rc->stats;
    pthread_mutex_unlock(&rc->lock);
}
