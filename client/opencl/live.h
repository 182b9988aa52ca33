/*
 * rgpu_cl_live_t: a set of the live objects of one kind that this library
 * created, keyed by their address.
 *
 * It answers "is this value one of our objects?" without dereferencing the
 * value: clSetKernelArg gets 8 bytes from the application that may be a
 * cl_mem or a 64-bit scalar, and a scalar read as a pointer would crash the
 * application (0xdeadbeefcafef00d is no address). Objects are added when
 * created and removed at their final release, before they are freed.
 *
 * Thread safety: every function may be called from any thread (a
 * reader-writer lock; lookups share it).
 */
#ifndef RGPU_CL_LIVE_H
#define RGPU_CL_LIVE_H

#include <pthread.h>

#include "rgpu/htable.h"

typedef struct {
    pthread_rwlock_t lock;
    rgpu_htable_t table;        /* key: the mixed address (never 0), value: the object */
} rgpu_cl_live_t;

#define RGPU_CL_LIVE_INITIALIZER {PTHREAD_RWLOCK_INITIALIZER, {NULL, 0, 0}}

/* Adds obj (not NULL). Returns 0, or -1 when out of memory (or obj is NULL
 * or already present). */
int rgpu__cl_live_add(rgpu_cl_live_t *set, const void *obj);

/* Removes obj; nothing happens when it is absent. The set frees its storage
 * when it becomes empty. */
void rgpu__cl_live_remove(rgpu_cl_live_t *set, const void *obj);

/* Non-zero when ptr is an object of the set. ptr may be any value: it is
 * compared, never dereferenced. */
int rgpu__cl_live_has(rgpu_cl_live_t *set, const void *ptr);

#endif
