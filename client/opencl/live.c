/* The set of live objects (see live.h). */
#include "live.h"

#include <stdint.h>

/* A bijection of 64-bit values (the finalizer of SplitMix64) that maps only
 * 0 to 0. Addresses are 16-byte aligned and the table hashes by the key's
 * low bits: mixed, they spread over the whole table, and being a bijection,
 * two addresses never share a key. */
static uint64_t rgpu_cl_live_key(const void *ptr)
{
    uint64_t x = (uint64_t)(uintptr_t)ptr;

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

int rgpu__cl_live_add(rgpu_cl_live_t *set, const void *obj)
{
    rgpu_status_t status;

    if (!obj)
        return -1;
    pthread_rwlock_wrlock(&set->lock);
    status = rgpu_htable_insert(&set->table, rgpu_cl_live_key(obj), (void *)obj);
    pthread_rwlock_unlock(&set->lock);
    return status == RGPU_OK ? 0 : -1;
}

void rgpu__cl_live_remove(rgpu_cl_live_t *set, const void *obj)
{
    if (!obj)
        return;
    pthread_rwlock_wrlock(&set->lock);
    rgpu_htable_remove(&set->table, rgpu_cl_live_key(obj));
    if (set->table.count == 0)
        rgpu_htable_cleanup(&set->table);
    pthread_rwlock_unlock(&set->lock);
}

int rgpu__cl_live_has(rgpu_cl_live_t *set, const void *ptr)
{
    int found;

    if (!ptr)
        return 0;
    pthread_rwlock_rdlock(&set->lock);
    found = rgpu_htable_find(&set->table, rgpu_cl_live_key(ptr)) == ptr;
    pthread_rwlock_unlock(&set->lock);
    return found;
}
