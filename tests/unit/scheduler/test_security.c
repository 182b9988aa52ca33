/* Issue 11: who gets tokens, proof of holding a lease, memory quotas that
 * cannot overflow, bounded ttls, ended leases told to their servers. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "sched_fixture.h"

static rgpu_sched_t s;
static rgpu_token_key_t key;
static char reason[256];

static void setup(void)
{
    memset(key.bytes, 7, sizeof(key.bytes));
    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    for (unsigned n = 1; n <= 2; n++)
        cr_assert_eq(fx_register(&s, n, 2, 8ull << 30), RGPU_OK);
}

static void teardown(void)
{
    rgpu_sched_cleanup(&s);
}

TestSuite(security, .init = setup, .fini = teardown, .timeout = 30);

Test(security, a_listing_carries_no_token)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);
    Rgpu__ListReply list;

    req.slurm_job_id = (char *)"77";
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_assert(*l->token, "the allocation itself gets its token");
    req = fx_req(1);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_assert_eq(rgpu_sched_list(&s, 1000, &list), RGPU_OK);
    cr_assert_eq(list.n_leases, 2);
    for (size_t i = 0; i < list.n_leases; i++)
        cr_expect_str_empty(list.leases[i]->token, "lease %llu listed with its token",
                            (unsigned long long)list.leases[i]->id);
    cr_expect(list.leases[0]->id < list.leases[1]->id, "listed in id order");
    rgpu_sched_list_free(&list);
    /* The state keeps the token (renewals and the idempotent alloc need it). */
    cr_expect(*l->token);
}

Test(security, renew_and_release_need_a_token_of_that_lease)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);
    uint64_t a, b;
    char *token_a, *token_b, *renewed;

    req.ttl_s = 100;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    a = l->id;
    token_a = strdup(l->token);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    b = l->id;
    token_b = strdup(l->token);

    cr_expect_eq(rgpu_sched_check_token(&s, a, "", 1001, reason, sizeof(reason)),
                 RGPU_ERR_REFUSED);
    cr_expect(strstr(reason, "no token") != NULL, "reason: %s", reason);
    cr_expect_eq(rgpu_sched_check_token(&s, a, token_b, 1001, reason, sizeof(reason)),
                 RGPU_ERR_REFUSED);
    cr_expect(strstr(reason, "the token is of lease") != NULL, "reason: %s", reason);
    cr_expect_eq(rgpu_sched_check_token(&s, a, "v1.AAAA.BBBB", 1001, reason, sizeof(reason)),
                 RGPU_ERR_REFUSED);
    cr_expect_eq(rgpu_sched_check_token(&s, a, token_a, 1001, reason, sizeof(reason)), RGPU_OK,
                 "%s", reason);
    /* Expired: no longer a proof. */
    cr_expect_eq(rgpu_sched_check_token(&s, a, token_a, 1100, reason, sizeof(reason)),
                 RGPU_ERR_REFUSED);
    cr_expect(strstr(reason, "expired") != NULL, "reason: %s", reason);

    /* After a renewal both the new and the old (unexpired) token prove it. */
    cr_assert_eq(rgpu_sched_renew(&s, a, 500, 1050, &l, reason, sizeof(reason)), RGPU_OK);
    renewed = strdup(l->token);
    cr_expect_str_neq(renewed, token_a);
    cr_expect_eq(rgpu_sched_check_token(&s, a, renewed, 1200, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(rgpu_sched_check_token(&s, a, token_a, 1060, reason, sizeof(reason)), RGPU_OK);
    free(token_a);
    free(token_b);
    free(renewed);
    (void)b;
}

Test(security, without_a_key_nothing_is_checked)
{
    rgpu_sched_t open;

    cr_assert_eq(rgpu_sched_init(&open, NULL, NULL, 3600, 15, 1000), RGPU_OK);
    cr_expect_eq(rgpu_sched_check_token(&open, 1, "", 1000, reason, sizeof(reason)), RGPU_OK);
    rgpu_sched_cleanup(&open);
}

Test(security, shared_without_memory_reserves_the_default)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);
    Rgpu__ListReply list;
    uint64_t reserved = 0;

    req.shared = 1;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_expect_eq(l->memory_quota, RGPU_SCHED_DEFAULT_SHARED_MEM, "quota %llu",
                 (unsigned long long)l->memory_quota);
    cr_assert_eq(rgpu_sched_list(&s, 1000, &list), RGPU_OK);
    for (size_t g = 0; g < list.n_gpus; g++)
        reserved += list.gpus[g]->memory_reserved;
    cr_expect_eq(reserved, RGPU_SCHED_DEFAULT_SHARED_MEM);
    rgpu_sched_list_free(&list);

    /* The default is capped at the GPU's memory: never 0, never more. */
    s.default_shared_mem = 1ull << 40;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_expect_eq(l->memory_quota, 8ull << 30);
}

Test(security, shared_sizes_do_not_wrap)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);
    Rgpu__ListReply list;

    req.shared = 1;
    req.memory = 1ull << 30;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    /* reserved (1G) + 2^64 - 1G wraps to 0 in a plain sum. */
    req.memory = UINT64_MAX - (1ull << 30) + 1;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    cr_expect(strstr(reason, "the largest GPU has") != NULL, "reason: %s", reason);
    req.memory = UINT64_MAX;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    /* One byte more than a GPU has. */
    req.memory = (8ull << 30) + 1;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    cr_assert_eq(rgpu_sched_list(&s, 1000, &list), RGPU_OK);
    for (size_t g = 0; g < list.n_gpus; g++)
        cr_expect_leq(list.gpus[g]->memory_reserved, list.gpus[g]->gpu->memory);
    cr_expect_eq(list.n_leases, 1);
    rgpu_sched_list_free(&list);
}

Test(security, count_and_ttl_are_bounded)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(0);
    uint64_t id;

    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    req.count = RGPU_SCHED_MAX_COUNT + 1;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    req.count = UINT32_MAX;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    req.count = 1;
    req.ttl_s = UINT32_MAX;     /* `rgpu alloc --ttl -1` used to ask for this: 136 years */
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    cr_expect(strstr(reason, "--max-lease-ttl") != NULL, "reason: %s", reason);
    req.ttl_s = s.max_lease_ttl_s;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    id = l->id;
    cr_expect_eq(rgpu_sched_renew(&s, id, s.max_lease_ttl_s + 1, 1000, &l, reason,
                                  sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    cr_expect_eq(rgpu_sched_renew(&s, id, 60, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    /* A renewal that shortens the lease keeps the latest token expiry. */
    cr_expect_eq(l->tokens_expire_unix, 1000 + (int64_t)s.max_lease_ttl_s);
}

Test(security, a_server_is_told_which_of_its_leases_ended)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(2);
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;
    Rgpu__HeartbeatReply reply;
    uint64_t on1, expired;
    int listed = 0;
    char server[64];

    /* Two GPUs of server 1 (pack), released early: its tokens still live. */
    req.same_server = 1;
    req.ttl_s = 100;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    on1 = l->id;
    cr_assert_str_eq(l->gpus[0]->server, l->gpus[1]->server);
    snprintf(server, sizeof(server), "%s", l->gpus[0]->server);   /* the lease's goes */
    hb.address = server;
    req = fx_req(1);
    req.ttl_s = 5;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    expired = l->id;
    cr_assert_eq(rgpu_sched_release(&s, on1, NULL, reason, sizeof(reason)), RGPU_OK);

    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1010, &reply), RGPU_OK);
    cr_expect_eq(reply.n_ended_leases, 1, "once per lease, whatever its GPUs on this server");
    for (size_t i = 0; i < reply.n_ended_leases; i++)
        listed |= reply.ended_leases[i] == on1;
    cr_expect(listed, "released lease %llu not in ended_leases",
              (unsigned long long)on1);
    for (size_t i = 0; i < reply.n_leases; i++)
        cr_expect_neq(reply.leases[i]->lease_id, on1);
    rgpu_sched_heartbeat_reply_free(&reply);

    /* Not told to the other server. */
    hb.address = (char *)(strcmp(hb.address, "10.0.0.1:7070") == 0 ? "10.0.0.2:7070"
                                                                    : "10.0.0.1:7070");
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1010, &reply), RGPU_OK);
    for (size_t i = 0; i < reply.n_ended_leases; i++)
        cr_expect_neq(reply.ended_leases[i], on1);
    rgpu_sched_heartbeat_reply_free(&reply);

    /* A lease reclaimed at its expiry has no live token: nothing to tell.
     * Past the released lease's expiry (1100) it is no longer told either. */
    rgpu_sched_tick(&s, 1006);
    cr_expect_null(rgpu_htable_find(&s.leases, expired));
    hb.address = (char *)"10.0.0.1:7070";
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1100, &reply), RGPU_OK);
    cr_expect_eq(reply.n_ended_leases, 0);
    rgpu_sched_heartbeat_reply_free(&reply);
    hb.address = (char *)"10.0.0.2:7070";
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1100, &reply), RGPU_OK);
    cr_expect_eq(reply.n_ended_leases, 0);
    rgpu_sched_heartbeat_reply_free(&reply);
}

Test(security, a_server_registers_at_most_so_many_gpus)
{
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;

    reg.address = (char *)"10.0.0.9:7070";
    reg.transport = (char *)"tcp";
    reg.hostname = (char *)"x";
    reg.n_gpus = RGPU_SCHED_MAX_GPUS_PER_SERVER + 1;    /* gpus not read: refused first */
    cr_expect_eq(rgpu_sched_register(&s, &reg, 1000, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
}
