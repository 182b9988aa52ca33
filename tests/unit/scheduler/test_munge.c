/* Issue 11, users authenticated by MUNGE: what runs without munged. A
 * credential's payload binds it to one request (type, seq, body); accepted
 * credentials are remembered until they expire; leases belong to the uid
 * that allocated them, and a user's listing shows only theirs; operators. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "rgpu/munge.h"
#include "sched_fixture.h"

static rgpu_sched_t s;
static rgpu_token_key_t key;
static char reason[256];

static void setup(void)
{
    memset(key.bytes, 9, sizeof(key.bytes));
    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    cr_assert_eq(fx_register(&s, 1, 4, 8ull << 30), RGPU_OK);
}

static void teardown(void)
{
    rgpu_sched_cleanup(&s);
}

TestSuite(munge, .init = setup, .fini = teardown, .timeout = 30);

Test(munge, a_credential_binds_type_seq_and_body)
{
    const uint8_t body[] = {0x08, 0x01}, other[] = {0x08, 0x02};
    uint8_t d[RGPU_MUNGE_DIGEST_BYTES], e[RGPU_MUNGE_DIGEST_BYTES];
    char why[128] = "";

    rgpu_munge_request_digest(302, 1, body, sizeof(body), d);
    cr_expect_eq(rgpu_munge_check_binding(d, sizeof(d), 302, 1, body, sizeof(body), why,
                                          sizeof(why)), RGPU_OK);
    cr_expect_eq(rgpu_munge_check_binding(d, sizeof(d), 302, 1, other, sizeof(other), why,
                                          sizeof(why)), RGPU_ERR_REFUSED, "another body");
    cr_expect_str_eq(why, "the credential was made for another request");
    cr_expect_eq(rgpu_munge_check_binding(d, sizeof(d), 302, 2, body, sizeof(body), NULL, 0),
                 RGPU_ERR_REFUSED, "another seq");
    cr_expect_eq(rgpu_munge_check_binding(d, sizeof(d), 304, 1, body, sizeof(body), NULL, 0),
                 RGPU_ERR_REFUSED, "another type");
    cr_expect_eq(rgpu_munge_check_binding(d, 31, 302, 1, body, sizeof(body), why, sizeof(why)),
                 RGPU_ERR_REFUSED, "a short payload");
    cr_expect_eq(rgpu_munge_check_binding(NULL, 0, 302, 1, body, sizeof(body), NULL, 0),
                 RGPU_ERR_REFUSED, "no payload (munge -n)");
    /* The wire format: BLAKE2b-256 of the domain, le16 type, le32 seq, body. */
    rgpu_munge_request_digest(302, 1, NULL, 0, e);
    cr_expect_neq(memcmp(d, e, sizeof(d)), 0);
}

Test(munge, only_longer_than_the_key_trailer_is_a_credential)
{
    char cred[RGPU_MUNGE_CRED_MAX + 2];

    memset(cred, 'A', sizeof(cred));
    memcpy(cred, "MUNGE:", 6);
    cr_expect(!rgpu_munge_is_cred(cred, 40), "40 bytes is the key's trailer");
    cr_expect(rgpu_munge_is_cred(cred, 41));
    cr_expect(rgpu_munge_is_cred(cred, RGPU_MUNGE_CRED_MAX));
    cr_expect(!rgpu_munge_is_cred(cred, RGPU_MUNGE_CRED_MAX + 1));
    cred[0] = 'm';
    cr_expect(!rgpu_munge_is_cred(cred, 100));
}

Test(munge, without_munged_encoding_fails_and_says_why)
{
    const uint8_t body[] = {0x08, 0x01};
    char *cred = NULL, why[400] = "";
    rgpu_munge_identity_t id;
    rgpu_status_t st = rgpu_munge_encode_request("/nonexistent/munge.sock", 302, 1, body,
                                                 sizeof(body), &cred, why, sizeof(why));

    if (!rgpu_munge_supported()) {
        cr_expect_eq(st, RGPU_ERR_UNSUPPORTED);
        cr_expect(strstr(why, "built without MUNGE"), "%s", why);
        return;
    }
    cr_expect_eq(st, RGPU_ERR_CONN_REFUSED, "%s", why);
    cr_expect(strstr(why, "munged cannot be reached at /nonexistent/munge.sock"), "%s", why);
    cr_expect_null(cred);
    st = rgpu_munge_decode_request("/nonexistent/munge.sock", 302, 1, body, sizeof(body),
                                   "not a credential, but long enough to look like one....", 53,
                                   &id, why, sizeof(why));
    cr_expect_eq(st, RGPU_ERR_REFUSED, "not MUNGE:...: refused before munged is asked");
}

Test(munge, a_credential_serves_one_request)
{
    rgpu_sched_replay_t r;
    const char *a = "MUNGE:credential-a:", *b = "MUNGE:credential-b:";

    rgpu_sched_replay_init(&r, 2);
    cr_expect_eq(rgpu_sched_replay_check(&r, a, strlen(a), 1300, 1000), RGPU_OK);
    cr_expect_eq(rgpu_sched_replay_check(&r, a, strlen(a), 1300, 1001), RGPU_ERR_EXISTS);
    cr_expect_eq(rgpu_sched_replay_check(&r, b, strlen(b), 1100, 1001), RGPU_OK);
    /* Full of unexpired credentials: a third is not remembered. */
    cr_expect_eq(rgpu_sched_replay_check(&r, "MUNGE:c:", 8, 1300, 1002), RGPU_ERR_NOMEM);
    /* b expired at 1100: pruned, and there is room again. */
    cr_expect_eq(rgpu_sched_replay_prune(&r, 1100), 1);
    cr_expect_eq(rgpu_sched_replay_check(&r, "MUNGE:c:", 8, 1300, 1101), RGPU_OK);
    cr_expect_eq(rgpu_sched_replay_check(&r, a, strlen(a), 1300, 1299), RGPU_ERR_EXISTS);
    /* Past its expiry munged refuses it; nothing is remembered. */
    cr_expect_eq(rgpu_sched_replay_check(&r, a, strlen(a), 1300, 1300), RGPU_OK);
    rgpu_sched_replay_cleanup(&r);
}

static uint64_t alloc_as(uint32_t uid, int uid_set, const char *user)
{
    Rgpu__AllocRequest req = fx_req(1);
    const Rgpu__Lease *l;

    req.user = (char *)user;
    req.uid = uid;
    req.uid_set = uid_set;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_expect_eq(l->owner_known, uid_set);
    cr_expect_eq(l->owner_uid, uid_set ? uid : 0);
    return l->id;
}

static rgpu_sched_caller_t munge_caller(uint32_t uid, int admin)
{
    rgpu_sched_caller_t c;

    memset(&c, 0, sizeof(c));
    c.how = RGPU_SCHED_CALLER_MUNGE;
    c.uid = uid;
    c.admin = admin;
    snprintf(c.name, sizeof(c.name), "uid %u", uid);
    return c;
}

Test(munge, users_see_and_manage_only_their_own_leases)
{
    uint64_t mine = alloc_as(1001, 1, "alice"), theirs = alloc_as(1002, 1, "bob");
    uint64_t nobodys = alloc_as(0, 0, "anyone");
    rgpu_sched_caller_t alice = munge_caller(1001, 0), op = munge_caller(7, 1), anon;
    Rgpu__SessionInfo s1 = RGPU__SESSION_INFO__INIT, s2 = RGPU__SESSION_INFO__INIT;
    Rgpu__SessionInfo *sessions[2] = {&s1, &s2};
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;
    Rgpu__ListReply list;

    (void)nobodys;
    memset(&anon, 0, sizeof(anon));
    cr_expect(rgpu_sched_caller_owns(&alice,
                                     ((rgpu_sched_lease_t *)rgpu_htable_find(&s.leases, mine))->pb));
    cr_expect(!rgpu_sched_caller_owns(&alice,
                                      ((rgpu_sched_lease_t *)rgpu_htable_find(&s.leases, theirs))->pb));
    cr_expect(rgpu_sched_caller_owns(&op,
                                     ((rgpu_sched_lease_t *)rgpu_htable_find(&s.leases, theirs))->pb));
    cr_expect(!rgpu_sched_caller_owns(&anon,
                                      ((rgpu_sched_lease_t *)rgpu_htable_find(&s.leases, mine))->pb),
              "no proof owns nothing");

    s1.session_id = 1;
    s1.lease_id = mine;
    s2.session_id = 2;
    s2.lease_id = theirs;
    hb.address = (char *)"10.0.0.1:7070";
    hb.n_sessions = 2;
    hb.sessions = sessions;
    cr_assert_eq(rgpu_sched_heartbeat(&s, &hb, 1001, NULL), RGPU_OK);

    cr_assert_eq(rgpu_sched_list_as(&s, 1001, &alice, &list), RGPU_OK);
    cr_expect(!list.everything);
    cr_assert_eq(list.n_leases, 1);
    cr_expect_eq(list.leases[0]->id, mine);
    cr_expect_str_empty(list.leases[0]->token);
    cr_assert_eq(list.n_servers, 1);
    cr_assert_eq(list.servers[0]->n_sessions, 1, "only the sessions of alice's lease");
    cr_expect_eq(list.servers[0]->sessions[0]->lease_id, mine);
    for (size_t g = 0; g < list.n_gpus; g++)
        for (size_t k = 0; k < list.gpus[g]->n_leases; k++)
            cr_expect_eq(list.gpus[g]->leases[k], mine, "GPU %zu names lease %llu", g,
                         (unsigned long long)list.gpus[g]->leases[k]);
    rgpu_sched_list_free(&list);

    cr_assert_eq(rgpu_sched_list_as(&s, 1001, &op, &list), RGPU_OK);
    cr_expect(list.everything);
    cr_expect_eq(list.n_leases, 3);
    cr_expect_eq(list.servers[0]->n_sessions, 2);
    rgpu_sched_list_free(&list);
}

Test(munge, operators_by_uid_name_and_group)
{
    rgpu_sched_operators_t ops;
    rgpu_sched_caller_t c;
    char why[200] = "", who[128];

    cr_assert_eq(rgpu_sched_operators_parse(&ops, "1001,root", "0", why, sizeof(why)), 0, "%s",
                 why);
    cr_expect_eq(ops.nuids, 2);
    cr_expect(rgpu_sched_is_operator(&ops, 1001, 5000, NULL));
    cr_expect(rgpu_sched_is_operator(&ops, 0, 5000, NULL));
    cr_expect(rgpu_sched_is_operator(&ops, 4242, 0, NULL), "the operator group's gid");
    cr_expect(!rgpu_sched_is_operator(&ops, 4242, 4242, "nosuchuser"));
    rgpu_sched_operators_free(&ops);
    cr_expect_eq(rgpu_sched_operators_parse(&ops, "1001,,2", NULL, why, sizeof(why)), -1);
    cr_expect_eq(rgpu_sched_operators_parse(&ops, "no-such-user-here", NULL, why, sizeof(why)),
                 -1);
    cr_expect(strstr(why, "neither a uid nor a known user"), "%s", why);
    cr_expect_eq(rgpu_sched_operators_parse(&ops, NULL, "no-such-group-here", why, sizeof(why)),
                 -1);
    /* root is always an admin; a uid unknown to the user database keeps its number. */
    memset(&ops, 0, sizeof(ops));
    rgpu_sched_caller_munge(&c, &ops, 0, 0);
    cr_expect(c.admin);
    cr_expect_str_eq(c.name, "root");
    rgpu_sched_caller_munge(&c, &ops, 3999999, 3999999);
    cr_expect(!c.admin);
    cr_expect_str_eq(c.name, "uid 3999999");
    rgpu_sched_caller_describe(&c, who, sizeof(who));
    cr_expect_str_eq(who, "uid 3999999 (MUNGE)");
}
