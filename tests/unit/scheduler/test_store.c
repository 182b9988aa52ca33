/* The SQLite store: servers, leases and drains survive a reopen. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sched_fixture.h"

static char dir[] = "/tmp/rgpu-store-XXXXXX";
static char path[96];
static rgpu_token_key_t key;
static char reason[256];

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sched.db", dir);
    memset(key.bytes, 3, sizeof(key.bytes));
}

static void teardown(void)
{
    char p[128];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    rmdir(dir);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

static void open_sched(rgpu_sched_t *s)
{
    rgpu_sched_store_t *store;

    cr_assert_eq(rgpu_sched_store_open(path, &store, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_assert_eq(rgpu_sched_init(s, store, &key, 3600, 15, 1000), RGPU_OK);
}

Test(store, state_survives_reopen)
{
    rgpu_sched_t s;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(3);
    uint64_t id1, id2;
    char token[4096];

    open_sched(&s);
    cr_assert_eq(fx_register(&s, 1, 2, 1ull << 30), RGPU_OK);
    cr_assert_eq(fx_register(&s, 2, 2, 1ull << 30), RGPU_OK);
    req.slurm_job_id = (char *)"job-1";
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    id1 = l->id;
    snprintf(token, sizeof(token), "%s", l->token);
    cr_assert_eq(rgpu_sched_drain(&s, "10.0.0.2:7070", 1, reason, sizeof(reason)), RGPU_OK);
    /* Like a SIGKILL: nothing but what was committed. */
    rgpu_sched_cleanup(&s);

    open_sched(&s);
    cr_expect_eq(s.nservers, 2);
    cr_expect_eq(s.leases.count, 1);
    cr_expect(s.servers[1].drained);
    /* The same job gets the same lease and token back. */
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1001, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(l->id, id1);
    cr_expect_str_eq(l->token, token);
    /* Its GPUs are still taken: only one is free. */
    req = fx_req(2);
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1001, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    cr_assert_eq(rgpu_sched_release(&s, id1, NULL, reason, sizeof(reason)), RGPU_OK);
    cr_assert_eq(rgpu_sched_drain(&s, "10.0.0.2:7070", 0, reason, sizeof(reason)), RGPU_OK);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1001, &l, reason, sizeof(reason)), RGPU_OK);
    id2 = l->id;
    cr_expect_gt(id2, id1, "lease ids are never reused");
    rgpu_sched_cleanup(&s);

    open_sched(&s);
    cr_expect_eq(s.leases.count, 1);
    cr_expect_not_null(rgpu_htable_find(&s.leases, id2));
    cr_expect(!s.servers[1].drained);
    rgpu_sched_cleanup(&s);
}
