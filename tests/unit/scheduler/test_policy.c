/* Allocation policy: no double allocation, idempotency, pack vs spread. */
#include <criterion/criterion.h>
#include <string.h>

#include "sched_fixture.h"

static rgpu_sched_t s;
static rgpu_token_key_t key;
static char reason[256];

static void setup(void)
{
    memset(key.bytes, 1, sizeof(key.bytes));
    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    for (unsigned n = 1; n <= 4; n++)
        cr_assert_eq(fx_register(&s, n, 4, 8ull << 30), RGPU_OK);
}

static void teardown(void)
{
    rgpu_sched_cleanup(&s);
}

TestSuite(policy, .init = setup, .fini = teardown, .timeout = 30);

Test(policy, never_one_gpu_exclusively_in_two_leases)
{
    char seen[4][4] = {{0}};
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(3);
    unsigned total = 0;

    /* 16 GPUs: five leases of 3 fit, the sixth does not. */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                     reason);
        for (size_t g = 0; g < l->n_gpus; g++) {
            unsigned sv = (unsigned)(l->gpus[g]->server[7] - '1');
            cr_assert_eq(seen[sv][l->gpus[g]->index], 0, "GPU %s/%u leased twice",
                         l->gpus[g]->server, l->gpus[g]->index);
            seen[sv][l->gpus[g]->index] = 1;
            total++;
        }
    }
    cr_expect_eq(total, 15);
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    cr_expect(strstr(reason, "only 1 of the 3") != NULL, "reason: %s", reason);
}

Test(policy, release_frees_the_gpus)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(16);
    uint64_t id;

    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    id = l->id;
    req.count = 1;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    cr_assert_eq(rgpu_sched_release(&s, id, NULL, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(rgpu_sched_release(&s, id, NULL, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
}

Test(policy, same_job_gets_the_same_lease)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(2);
    uint64_t id;
    char *token;

    req.slurm_job_id = (char *)"4242";
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    id = l->id;
    token = strdup(l->token);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1001, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(l->id, id);
    cr_expect_str_eq(l->token, token);
    cr_expect_eq(s.leases.count, 1);
    cr_assert_eq(rgpu_sched_release(&s, 0, "4242", reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(s.leases.count, 0);
    free(token);
}

Test(policy, pack_fills_one_server_first)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);

    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    char first[64];
    strcpy(first, l->gpus[0]->server);
    /* The next three single GPUs land on the same (now busiest) server. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
        cr_expect_str_eq(l->gpus[0]->server, first);
    }
    req.count = 4;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(fx_nservers(l), 1);
}

Test(policy, spread_uses_one_gpu_per_server)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(4);

    req.placement = RGPU__PLACEMENT__PLACEMENT_SPREAD;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(fx_nservers(l), 4);
    req.count = 8;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(fx_nservers(l), 4);
}

Test(policy, same_server_and_memory_constraints)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(5);

    req.same_server = 1;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    req.count = 4;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(fx_nservers(l), 1);
    req = fx_req(1);
    /* More than any GPU has: refused as such, not as "busy". */
    req.min_memory = 16ull << 30;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_INVALID_ARG);
    cr_expect(strstr(reason, "the largest GPU has 8589934592") != NULL, "reason: %s", reason);
    req.min_memory = 0;
    req.api = RGPU__API_FAMILY__API_CUDA;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
}

Test(policy, shared_leases_share_by_memory)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(16);
    uint64_t first;

    req.shared = 1;
    req.memory = 5ull << 30;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    first = l->id;
    cr_expect_eq(l->memory_quota, 5ull << 30);
    /* 5G + 5G > 8G: no second shared lease of 5G, but one of 3G fits. */
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    req.memory = 3ull << 30;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    /* An exclusive request finds nothing while shared leases hold the GPUs. */
    req = fx_req(1);
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    cr_assert_eq(rgpu_sched_release(&s, first, NULL, reason, sizeof(reason)), RGPU_OK);
}

Test(policy, drained_and_down_servers_give_nothing)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(9);

    cr_assert_eq(rgpu_sched_drain(&s, "10.0.0.1:7070", 1, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(rgpu_sched_drain(&s, "10.9.9.9:7070", 1, reason, sizeof(reason)),
                 RGPU_ERR_NOT_FOUND);
    /* Servers 2..4 heartbeat; server 1 and the others go quiet at 1020 except 2. */
    cr_assert_eq(fx_heartbeat(&s, "10.0.0.2:7070", 1010), RGPU_OK);
    rgpu_sched_tick(&s, 1020);
    req.count = 5;
    cr_expect_eq(rgpu_sched_alloc(&s, &req, 1020, &l, reason, sizeof(reason)), RGPU_ERR_NOT_FOUND);
    req.count = 4;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1020, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_str_eq(l->gpus[0]->server, "10.0.0.2:7070");
    cr_expect_eq(fx_heartbeat(&s, "10.0.0.9:7070", 1020), RGPU_ERR_NOT_FOUND);
}

Test(policy, expired_leases_are_reclaimed)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(16);

    req.ttl_s = 10;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(l->expires_unix, 1010);
    cr_expect_eq(rgpu_sched_tick(&s, 1005), 0);
    cr_assert_eq(rgpu_sched_renew(&s, l->id, 20, 1005, &l, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(l->expires_unix, 1025);
    cr_expect_eq(rgpu_sched_tick(&s, 1012), 0);
    cr_expect_eq(rgpu_sched_tick(&s, 1025), 1);
    cr_expect_eq(s.leases.count, 0);
}

Test(policy, heartbeat_keeps_sessions_and_lists_the_servers_leases)
{
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(4);
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;
    Rgpu__SessionInfo si[2] = {RGPU__SESSION_INFO__INIT, RGPU__SESSION_INFO__INIT};
    Rgpu__SessionInfo *sp[2] = {&si[0], &si[1]};
    Rgpu__HeartbeatReply reply;
    Rgpu__ListReply list;
    uint64_t on1, elsewhere, seen1 = 0;
    int64_t exp1 = 0;

    /* pack fills server 1 (4 GPUs) first; the next lease goes elsewhere. */
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    on1 = l->id;
    cr_assert_str_eq(l->gpus[0]->server, "10.0.0.1:7070");
    req.count = 1;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK);
    elsewhere = l->id;
    cr_assert_str_neq(l->gpus[0]->server, "10.0.0.1:7070");
    cr_assert_eq(rgpu_sched_renew(&s, on1, 500, 1005, &l, reason, sizeof(reason)), RGPU_OK);

    si[0].session_id = 11;
    si[0].client_arch = (char *)"x86_64";
    si[0].lease_id = on1;
    si[1].session_id = 12;
    si[1].client_arch = (char *)"aarch64";
    si[1].lease_id = on1;
    hb.address = (char *)"10.0.0.1:7070";
    hb.n_sessions = 2;
    hb.sessions = sp;
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1010, &reply), RGPU_OK);
    for (size_t i = 0; i < reply.n_leases; i++) {
        cr_expect_neq(reply.leases[i]->lease_id, elsewhere, "a lease of another server");
        if (reply.leases[i]->lease_id == on1) {
            seen1++;
            exp1 = reply.leases[i]->expires_unix;
        }
    }
    cr_expect_eq(seen1, 1, "the lease of 4 GPUs there, listed once");
    cr_expect_eq(exp1, 1505, "with its renewed expiry");
    rgpu_sched_heartbeat_reply_free(&reply);

    cr_assert_eq(rgpu_sched_list(&s, 1010, &list), RGPU_OK);
    for (size_t i = 0; i < list.n_servers; i++) {
        if (strcmp(list.servers[i]->address, "10.0.0.1:7070") == 0) {
            cr_assert_eq(list.servers[i]->n_sessions, 2);
            cr_expect_str_eq(list.servers[i]->sessions[1]->client_arch, "aarch64");
        } else {
            cr_expect_eq(list.servers[i]->n_sessions, 0);
        }
    }
    rgpu_sched_list_free(&list);

    /* Released: no longer in the reply; fewer sessions replace the old. */
    cr_assert_eq(rgpu_sched_release(&s, on1, NULL, reason, sizeof(reason)), RGPU_OK);
    hb.n_sessions = 0;
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1020, &reply), RGPU_OK);
    for (size_t i = 0; i < reply.n_leases; i++)
        cr_expect_neq(reply.leases[i]->lease_id, on1);
    rgpu_sched_heartbeat_reply_free(&reply);
    cr_assert_eq(rgpu_sched_list(&s, 1020, &list), RGPU_OK);
    for (size_t i = 0; i < list.n_servers; i++)
        cr_expect_eq(list.servers[i]->n_sessions, 0);
    rgpu_sched_list_free(&list);
}

/* The per-server count of GPUs no lease holds (the policy's shortcut for
 * plain exclusive requests) matches a scan after any mix of leases. */
Test(policy, free_counters_match_the_gpus)
{
    const Rgpu__Lease *l;
    uint64_t live[64] = {0};
    unsigned seed = 12345;

    for (unsigned i = 0; i < 2000; i++) {
        Rgpu__AllocRequest req = fx_req(1 + (seed >> 16) % 4);
        unsigned slot;

        seed = seed * 1103515245u + 12345u;
        slot = (seed >> 16) % 64;
        if (live[slot]) {
            cr_assert_eq(rgpu_sched_release(&s, live[slot], NULL, reason, sizeof(reason)), RGPU_OK);
            live[slot] = 0;
            continue;
        }
        req.shared = (seed >> 8) % 3 == 0;
        req.memory = 1ull << 30;
        req.placement = (seed >> 4) % 2;
        if (rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)) == RGPU_OK)
            live[slot] = l->id;
        for (uint32_t k = 0; k < s.nservers; k++) {
            uint32_t n = 0;

            for (size_t p = 0; p < s.servers[k].reg->n_gpus; p++)
                n += !s.servers[k].use[p].exclusive && !s.servers[k].use[p].shared;
            cr_assert_eq(s.servers[k].nfree, n, "server %u after operation %u", k, i);
        }
    }
    /* A server registering again keeps its leases' use. */
    cr_assert_eq(fx_register(&s, 1, 4, 8ull << 30), RGPU_OK);
    for (uint32_t k = 0; k < s.nservers; k++) {
        uint32_t n = 0;

        for (size_t p = 0; p < s.servers[k].reg->n_gpus; p++)
            n += !s.servers[k].use[p].exclusive && !s.servers[k].use[p].shared;
        cr_assert_eq(s.servers[k].nfree, n, "server %u after registering again", k);
    }
}
