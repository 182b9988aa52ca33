/*
 * The registration cache: registered regions by address range, so that
 * memory the application passes again and again is registered once (UCX
 * src/ucs/memory/rcache.h).
 *
 * Correctness when the application frees memory and gets the same
 * addresses back (docs/transport.md):
 *  - A region in use (between rgpu_rcache_get and rgpu_rcache_put) names
 *    memory an operation is using, which the application may not free
 *    until that operation completes (OpenCL's rule for host pointers).
 *  - A region nobody uses may be stale. With max_unused 0 (the default
 *    where registration is cheap, caps.reg_pins == 0: tcp) it is
 *    deregistered at once, so nothing survives a free: the next get makes
 *    a new registration with a new key, and the old key is refused.
 *  - Where registration pins pages (verbs), unused regions are kept up to
 *    max_unused bytes, and whoever learns that memory went away (memory
 *    hooks on munmap/brk/free, userfaultfd, as UCX's ucm does) must call
 *    rgpu_rcache_invalidate before the range is reused.
 *
 * All functions are thread-safe.
 */
#ifndef RGPU_RCACHE_H
#define RGPU_RCACHE_H

#include <stddef.h>

#include "rgpu/transport.h"

typedef struct rgpu_rcache rgpu_rcache_t;

/* max_unused: bytes of unused registrations to keep; RGPU_RCACHE_DEFAULT
 * picks by the transport's caps (0 unless registration pins pages). */
#define RGPU_RCACHE_DEFAULT ((size_t)-1)

/* Returns RGPU_OK with *rc_p, or RGPU_ERR_NOMEM. */
rgpu_status_t rgpu_rcache_create(rgpu_transport_t *tp, size_t max_unused, rgpu_rcache_t **rc_p);

/* Deregisters every region. Regions still in use are the caller's bug:
 * they are deregistered all the same. */
void rgpu_rcache_destroy(rgpu_rcache_t *rc);

/* A registration covering [addr, addr+len) (remote read and write), found
 * or made: *mem_p stays valid until the matching rgpu_rcache_put; the
 * region may start before addr (use addr - rgpu_mem_addr(*mem_p) as the
 * offset). Statuses as rgpu_mem_register's. */
rgpu_status_t rgpu_rcache_get(rgpu_rcache_t *rc, void *addr, size_t len, rgpu_memtype_t memtype,
                              rgpu_mem_t **mem_p);

/* Done with a region rgpu_rcache_get returned. */
void rgpu_rcache_put(rgpu_rcache_t *rc, rgpu_mem_t *mem);

/* [addr, addr+len) is gone or reused: no later get returns a region
 * overlapping it; unused ones are deregistered now, used ones at their
 * last put. */
void rgpu_rcache_invalidate(rgpu_rcache_t *rc, const void *addr, size_t len);

/* Counters, for tests and statistics. */
typedef struct {
    size_t hits, misses, regions, unused_bytes;
} rgpu_rcache_stats_t;
void rgpu_rcache_stats(rgpu_rcache_t *rc, rgpu_rcache_stats_t *stats_p);

#endif
