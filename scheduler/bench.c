/*
 * rgpu-scheduler --bench [SERVERS GPUS OPERATIONS [DB]]: allocations and
 * releases per second against SERVERS servers of GPUS GPUs each (default
 * 1000 x 8, 20000 operations), in memory and with the SQLite store (a
 * temporary file, or DB). Requests mix 1, 2, 4 and 8 GPUs, pack and spread;
 * about half the GPUs stay leased so the policy works on a busy cluster.
 * Prints the rate and each operation's p50/p99/p99.9 latency; asserts
 * nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rgpu/util.h"
#include "sched_core.h"

static int rgpu_bench_fill(rgpu_sched_t *s, unsigned nservers, unsigned ngpus)
{
    Rgpu__GpuInfo *gpus = calloc(ngpus, sizeof(*gpus));
    Rgpu__GpuInfo **ptrs = calloc(ngpus, sizeof(*ptrs));
    char addr[64], reason[200];
    int rc = 0;

    for (unsigned g = 0; g < ngpus; g++) {
        rgpu__gpu_info__init(&gpus[g]);
        gpus[g].index = g;
        gpus[g].model = (char *)"bench-gpu";
        gpus[g].memory = 16ull << 30;
        ptrs[g] = &gpus[g];
    }
    for (unsigned i = 0; i < nservers && rc == 0; i++) {
        Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;

        snprintf(addr, sizeof(addr), "10.0.%u.%u:7070", i / 250, i % 250 + 1);
        reg.address = addr;
        reg.transport = (char *)"tcp";
        reg.hostname = addr;
        reg.n_gpus = ngpus;
        reg.gpus = ptrs;
        if (rgpu_sched_register(s, &reg, 0, reason, sizeof(reason)) != RGPU_OK) {
            fprintf(stderr, "bench: register: %s\n", reason);
            rc = -1;
        }
    }
    free(gpus);
    free(ptrs);
    return rc;
}

static int rgpu_bench_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Sorts ns[0..n) and prints its p50, p99 and p99.9 in microseconds. */
static void rgpu_bench_pct(const char *what, uint64_t *ns, size_t n)
{
    if (!n)
        return;
    qsort(ns, n, sizeof(*ns), rgpu_bench_cmp);
    printf("   %-8s %10zu %10.1f %10.1f %10.1f %10.1f\n", what, n, ns[n / 2] / 1e3,
           ns[(n * 99) / 100] / 1e3, ns[(n * 999) / 1000] / 1e3, ns[n - 1] / 1e3);
}

static double rgpu_bench_run(rgpu_sched_t *s, unsigned nservers, unsigned ngpus, unsigned ops,
                             unsigned *failed_p)
{
    uint64_t *alloc_ns = calloc(ops + 1, sizeof(uint64_t));
    uint64_t *release_ns = calloc(ops + 1, sizeof(uint64_t));
    size_t nalloc = 0, nrelease = 0;
    double secs;
    static const unsigned counts[] = {1, 2, 4, 8};
    unsigned window = nservers * ngpus / 2 / 4;  /* leases kept: ~half the GPUs */
    uint64_t *live = calloc(window ? window : 1, sizeof(uint64_t));
    char reason[256];
    unsigned failed = 0;
    uint64_t t0, t;

    if (!alloc_ns || !release_ns || !live) {
        free(alloc_ns);
        free(release_ns);
        free(live);
        *failed_p = ops;
        return 0;
    }
    if (!window)
        window = 1;
    t0 = rgpu_time_ns();
    for (unsigned i = 0; i < ops; i++) {
        Rgpu__AllocRequest req = RGPU__ALLOC_REQUEST__INIT;
        const Rgpu__Lease *lease;
        unsigned slot = i % window;

        if (live[slot]) {
            t = rgpu_time_ns();
            rgpu_sched_release(s, live[slot], NULL, reason, sizeof(reason));
            release_ns[nrelease++] = rgpu_time_ns() - t;
            live[slot] = 0;
        }
        req.count = counts[i % 4] <= ngpus ? counts[i % 4] : 1;
        req.placement = i % 2 ? RGPU__PLACEMENT__PLACEMENT_SPREAD : RGPU__PLACEMENT__PLACEMENT_PACK;
        req.user = (char *)"bench";
        t = rgpu_time_ns();
        if (rgpu_sched_alloc(s, &req, 0, &lease, reason, sizeof(reason)) == RGPU_OK)
            live[slot] = lease->id;
        else
            failed++;
        alloc_ns[nalloc++] = rgpu_time_ns() - t;
    }
    /* Releases count as operations too: one per allocation above. */
    for (unsigned i = 0; i < window; i++) {
        if (live[i]) {
            t = rgpu_time_ns();
            rgpu_sched_release(s, live[i], NULL, reason, sizeof(reason));
            release_ns[nrelease++] = rgpu_time_ns() - t;
        }
    }
    secs = (double)(rgpu_time_ns() - t0) / 1e9;
    printf("   %-8s %10s %10s %10s %10s %10s  (microseconds)\n", "latency", "count", "p50", "p99",
           "p99.9", "max");
    rgpu_bench_pct("alloc", alloc_ns, nalloc);
    rgpu_bench_pct("release", release_ns, nrelease);
    free(alloc_ns);
    free(release_ns);
    free(live);
    *failed_p = failed;
    return secs;
}

int rgpu__sched_bench(int argc, char **argv)
{
    unsigned nservers = argc > 1 ? (unsigned)atoi(argv[1]) : 1000;
    unsigned ngpus = argc > 2 ? (unsigned)atoi(argv[2]) : 8;
    unsigned ops = argc > 3 ? (unsigned)atoi(argv[3]) : 20000;
    char tmp[] = "/tmp/rgpu-sched-bench-XXXXXX";
    const char *db = argc > 4 ? argv[4] : NULL;
    char path[512], why[600];
    rgpu_token_key_t key;

    if (!nservers || !ngpus || !ops || nservers > 100000 || ngpus > 64) {
        fprintf(stderr, "rgpu-scheduler --bench: SERVERS 1..100000, GPUS 1..64, OPERATIONS > 0\n");
        return 2;
    }
    memset(key.bytes, 7, sizeof(key.bytes));
    printf("# %u servers x %u GPUs, %u allocations (1/2/4/8 GPUs, pack/spread) + as many "
           "releases, signed tokens\n", nservers, ngpus, ops);
    printf("#%-9s %12s %10s %14s %10s\n", "store", "operations", "seconds", "ops/second",
           "refused");
    for (int with_store = 0; with_store < 2; with_store++) {
        rgpu_sched_store_t *store = NULL;
        rgpu_sched_t s;
        unsigned failed;
        double secs;

        if (with_store) {
            if (db) {
                snprintf(path, sizeof(path), "%s", db);
            } else {
                if (!mkdtemp(tmp)) {
                    perror("mkdtemp");
                    return 1;
                }
                snprintf(path, sizeof(path), "%s/sched.db", tmp);
            }
            if (rgpu_sched_store_open(path, &store, why, sizeof(why)) != RGPU_OK) {
                fprintf(stderr, "bench: %s\n", why);
                return 1;
            }
        }
        rgpu_sched_init(&s, store, &key, 3600, 15, 0);
        if (rgpu_bench_fill(&s, nservers, ngpus) != 0) {
            rgpu_sched_cleanup(&s);
            return 1;
        }
        secs = rgpu_bench_run(&s, nservers, ngpus, ops, &failed);
        printf(" %-9s %12u %10.3f %14.0f %10u\n", with_store ? "sqlite" : "memory", 2 * ops, secs,
               2 * ops / secs, failed);
        rgpu_sched_cleanup(&s);
    }
    if (!db) {
        snprintf(path, sizeof(path), "%s/sched.db", tmp);
        unlink(path);
        snprintf(path, sizeof(path), "%s/sched.db-wal", tmp);
        unlink(path);
        snprintf(path, sizeof(path), "%s/sched.db-shm", tmp);
        unlink(path);
        rmdir(tmp);
    }
    return 0;
}
