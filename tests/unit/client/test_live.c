/*
 * rgpu_cl_live_t (client/opencl/live.c): the set clSetKernelArg asks
 * whether 8 bytes of an application are one of our buffers. Lookups never
 * dereference what they are given.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "live.h"

static rgpu_cl_live_t set = RGPU_CL_LIVE_INITIALIZER;

TestSuite(client_live, .timeout = 30);

Test(client_live, add_has_remove)
{
    int a = 0, b = 0;

    cr_assert_not(rgpu__cl_live_has(&set, &a));
    cr_assert_eq(rgpu__cl_live_add(&set, &a), 0);
    cr_assert(rgpu__cl_live_has(&set, &a));
    cr_assert_not(rgpu__cl_live_has(&set, &b));
    cr_assert_neq(rgpu__cl_live_add(&set, &a), 0, "an object is in the set once");
    cr_assert_neq(rgpu__cl_live_add(&set, NULL), 0);
    rgpu__cl_live_remove(&set, &a);
    cr_assert_not(rgpu__cl_live_has(&set, &a));
    rgpu__cl_live_remove(&set, &a);     /* absent: nothing happens */
    cr_assert_eq(set.table.count, 0);
    cr_assert_null(set.table.slots, "an empty set frees its storage");
}

/* Values that are no address at all, or point next to a live object: a
 * lookup compares them and never reads through them (ASan would say so). */
Test(client_live, never_dereferences)
{
    char *obj = calloc(1, 64);
    static const uint64_t scalars[] = {0, 1, 0xdeadbeefcafef00dull, 0xffffffffffffffffull, 0x8000000000000000ull,
                                       0x0000100000000000ull};

    cr_assert_eq(rgpu__cl_live_add(&set, obj), 0);
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
        cr_assert_not(rgpu__cl_live_has(&set, (const void *)(uintptr_t)scalars[i]), "%#llx",
                      (unsigned long long)scalars[i]);
    for (int d = 1; d < 64; d++)
        cr_assert_not(rgpu__cl_live_has(&set, obj + d), "obj + %d", d);
    cr_assert(rgpu__cl_live_has(&set, obj));
    /* A released object's address is no longer one of ours. */
    rgpu__cl_live_remove(&set, obj);
    cr_assert_not(rgpu__cl_live_has(&set, obj));
    free(obj);
}

/* Many objects (the table grows and shrinks), removed in another order. */
Test(client_live, many)
{
    enum { N = 5000 };
    void **objs = calloc(N, sizeof(*objs));

    for (int i = 0; i < N; i++) {
        objs[i] = malloc(48);
        cr_assert_eq(rgpu__cl_live_add(&set, objs[i]), 0);
    }
    for (int i = 0; i < N; i++)
        cr_assert(rgpu__cl_live_has(&set, objs[i]));
    for (int i = 0; i < N; i += 2)
        rgpu__cl_live_remove(&set, objs[i]);
    for (int i = 0; i < N; i++)
        cr_assert_eq(rgpu__cl_live_has(&set, objs[i]), i % 2, "object %d", i);
    for (int i = 1; i < N; i += 2)
        rgpu__cl_live_remove(&set, objs[i]);
    cr_assert_eq(set.table.count, 0);
    for (int i = 0; i < N; i++)
        free(objs[i]);
    free(objs);
}

/* Lookups on some threads while others add and remove. */
#define THREADS 4
#define ROUNDS 2000

static void *churn(void *arg)
{
    void *mine[16];

    (void)arg;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 16; i++) {
            mine[i] = malloc(32);
            cr_assert_eq(rgpu__cl_live_add(&set, mine[i]), 0);
        }
        for (int i = 0; i < 16; i++) {
            cr_assert(rgpu__cl_live_has(&set, mine[i]));
            rgpu__cl_live_remove(&set, mine[i]);
            free(mine[i]);
        }
    }
    return NULL;
}

Test(client_live, threads)
{
    pthread_t t[THREADS];

    for (int i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(set.table.count, 0);
}
