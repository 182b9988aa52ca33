/*
 * The scheduler's view of a mixed cluster: GPUs chosen by API (OpenCL,
 * CUDA), servers reachable at several endpoints (TCP and verbs) carried by
 * leases and their tokens, and the store's migration from the schema
 * before both (version 0: leases without an API, servers without
 * endpoints).
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sched_fixture.h"

static rgpu_token_key_t key;
static char reason[256];

/* Registers "10.0.1.<n>:7070" with ngpus GPUs serving apis (napis of them,
 * 0: a server from before GpuInfo.apis was filled) and endpoints. */
static rgpu_status_t reg_server(rgpu_sched_t *s, unsigned n, unsigned ngpus,
                                Rgpu__ApiFamily *apis, size_t napis, char **endpoints,
                                size_t nendpoints)
{
    Rgpu__GpuInfo gpus[8], *ptrs[8];
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
    char addr[64];

    for (unsigned g = 0; g < ngpus; g++) {
        rgpu__gpu_info__init(&gpus[g]);
        gpus[g].index = g;
        gpus[g].model = (char *)"test-gpu";
        gpus[g].memory = 1ull << 30;
        gpus[g].n_apis = napis;
        gpus[g].apis = apis;
        ptrs[g] = &gpus[g];
    }
    snprintf(addr, sizeof(addr), "10.0.1.%u:7070", n);
    reg.address = addr;
    reg.transport = (char *)"tcp";
    reg.hostname = (char *)"node";
    reg.n_gpus = ngpus;
    reg.gpus = ptrs;
    reg.n_endpoints = nendpoints;
    reg.endpoints = endpoints;
    return rgpu_sched_register(s, &reg, 1000, reason, sizeof(reason));
}

static Rgpu__ApiFamily opencl_only[] = {RGPU__API_FAMILY__API_OPENCL};
static Rgpu__ApiFamily opencl_cuda[] = {RGPU__API_FAMILY__API_OPENCL, RGPU__API_FAMILY__API_CUDA};

static void setup(void)
{
    memset(key.bytes, 5, sizeof(key.bytes));
}

TestSuite(cluster, .init = setup, .timeout = 60);

Test(cluster, cuda_gets_only_gpus_serving_cuda)
{
    rgpu_sched_t s;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);

    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    cr_assert_eq(reg_server(&s, 1, 2, opencl_only, 1, NULL, 0), RGPU_OK, "%s", reason);
    cr_assert_eq(reg_server(&s, 2, 1, opencl_cuda, 2, NULL, 0), RGPU_OK, "%s", reason);

    req.api = RGPU__API_FAMILY__API_CUDA;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_assert_str_eq(l->gpus[0]->server, "10.0.1.2:7070");
    cr_assert_eq(l->api, RGPU__API_FAMILY__API_CUDA);

    /* The one CUDA GPU is taken: OpenCL GPUs are free, but not for CUDA. */
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_NOT_FOUND);
    cr_assert(strstr(reason, "no GPU serving CUDA is free"), "%s", reason);

    /* A request naming no API is an OpenCL one, as before CUDA. */
    req.api = RGPU__API_FAMILY__API_NONE;
    req.count = 2;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_assert_eq(l->api, RGPU__API_FAMILY__API_OPENCL);
    cr_assert_str_eq(l->gpus[0]->server, "10.0.1.1:7070");
    rgpu_sched_cleanup(&s);
}

Test(cluster, cuda_without_cuda_servers_is_refused_with_the_reason)
{
    rgpu_sched_t s;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);

    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    cr_assert_eq(reg_server(&s, 1, 2, opencl_only, 1, NULL, 0), RGPU_OK, "%s", reason);
    /* A server from before GpuInfo.apis: its GPUs serve OpenCL only. */
    cr_assert_eq(reg_server(&s, 2, 2, NULL, 0, NULL, 0), RGPU_OK, "%s", reason);
    req.api = RGPU__API_FAMILY__API_CUDA;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                 RGPU_ERR_NOT_FOUND);
    cr_assert(strstr(reason, "no GPU serving CUDA is free: no rgpu-server registered"), "%s",
              reason);
    req.api = RGPU__API_FAMILY__API_OPENCL;
    req.count = 4;
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    rgpu_sched_cleanup(&s);
}

Test(cluster, endpoints_reach_the_lease_and_its_token)
{
    rgpu_sched_t s;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(2);
    Rgpu__ListReply list = RGPU__LIST_REPLY__INIT;
    Rgpu__TokenPayload *payload;
    char *two[] = {(char *)"tcp://10.0.1.1:7070", (char *)"verbs://10.0.1.1:7071"};
    char why[256];

    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    cr_assert_eq(reg_server(&s, 1, 2, opencl_only, 1, two, 2), RGPU_OK, "%s", reason);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    for (size_t g = 0; g < 2; g++) {
        cr_assert_str_eq(l->gpus[g]->server, "10.0.1.1:7070", "the identity stays the address");
        cr_assert_eq(l->gpus[g]->n_endpoints, 2);
        cr_assert_str_eq(l->gpus[g]->endpoints[0], two[0]);
        cr_assert_str_eq(l->gpus[g]->endpoints[1], two[1]);
    }
    /* The token names the server by its identity, and lists its endpoints once. */
    cr_assert_eq(rgpu_token_verify(&key, l->token, 1000, &payload, why, sizeof(why)), RGPU_OK,
                 "%s", why);
    cr_assert(rgpu_token_names_gpu(payload, "10.0.1.1:7070", 1));
    cr_assert_eq(payload->gpus[0]->n_endpoints, 2);
    cr_assert_str_eq(payload->gpus[0]->endpoints[1], two[1]);
    cr_assert_eq(payload->gpus[1]->n_endpoints, 0);
    rgpu__token_payload__free_unpacked(payload, NULL);

    cr_assert_eq(rgpu_sched_list(&s, 1000, &list), RGPU_OK);
    cr_assert_eq(list.n_servers, 1);
    cr_assert_eq(list.servers[0]->n_endpoints, 2);
    cr_assert_str_eq(list.servers[0]->endpoints[1], two[1]);
    rgpu_sched_list_free(&list);
    rgpu_sched_cleanup(&s);
}

Test(cluster, a_server_without_endpoints_is_reached_at_its_address)
{
    rgpu_sched_t s;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);
    Rgpu__TokenPayload *payload;
    char why[256];

    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    cr_assert_eq(reg_server(&s, 3, 1, opencl_only, 1, NULL, 0), RGPU_OK, "%s", reason);
    cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK, "%s",
                 reason);
    cr_assert_eq(l->gpus[0]->n_endpoints, 1);
    cr_assert_str_eq(l->gpus[0]->endpoints[0], "tcp://10.0.1.3:7070");
    /* The token leaves out what its server's identity already says. */
    cr_assert_eq(rgpu_token_verify(&key, l->token, 1000, &payload, why, sizeof(why)), RGPU_OK,
                 "%s", why);
    cr_assert_eq(payload->gpus[0]->n_endpoints, 0);
    rgpu__token_payload__free_unpacked(payload, NULL);
    rgpu_sched_cleanup(&s);
}

Test(cluster, bad_endpoints_are_refused)
{
    rgpu_sched_t s;
    char *bad[][1] = {{(char *)"ftp://10.0.1.1:7070"}, {(char *)"tcp://"},
                      {(char *)"tcp://a b:1"},         {(char *)"verbs://h:1,tcp://h:2"},
                      {(char *)"tcp://nohostport"}};
    char *many[RGPU_SCHED_MAX_ENDPOINTS + 1];

    cr_assert_eq(rgpu_sched_init(&s, NULL, &key, 3600, 15, 1000), RGPU_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(reg_server(&s, 1, 1, opencl_only, 1, bad[i], 1), RGPU_ERR_INVALID_ARG,
                     "%s was taken", bad[i][0]);
        cr_assert(strstr(reason, "is not tcp://HOST:PORT or verbs://HOST:PORT"), "%s", reason);
    }
    for (size_t i = 0; i < RGPU_SCHED_MAX_ENDPOINTS + 1; i++)
        many[i] = (char *)"tcp://10.0.1.1:7070";
    cr_assert_eq(reg_server(&s, 1, 1, opencl_only, 1, many, RGPU_SCHED_MAX_ENDPOINTS + 1),
                 RGPU_ERR_INVALID_ARG);
    cr_assert(strstr(reason, "endpoints; a server has at most"), "%s", reason);
    cr_assert_eq(s.nservers, 0, "a refused registration left a server behind");
    rgpu_sched_cleanup(&s);
}

/* ---- the store's migration from schema 0 ---- */

static char dir[] = "/tmp/rgpu-migrate-XXXXXX";
static char path[96];

static void store_setup(void)
{
    setup();
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sched.db", dir);
}

static void store_teardown(void)
{
    char p[128];

    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
    rmdir(dir);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;

    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql,
                 err ? err : "?");
}

static void insert_blob(sqlite3 *db, const char *sql, const char *text_key, int64_t int_key,
                        const ProtobufCMessage *msg)
{
    sqlite3_stmt *stmt;
    uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(msg, buf);

    cr_assert_lt(len, sizeof(buf));
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (text_key)
        sqlite3_bind_text(stmt, 1, text_key, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(stmt, 1, int_key);
    sqlite3_bind_blob(stmt, 2, buf, (int)len, SQLITE_TRANSIENT);
    cr_assert_eq(sqlite3_step(stmt), SQLITE_DONE, "%s", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
}

static int user_version(void)
{
    sqlite3 *db;
    sqlite3_stmt *stmt;
    int v = -1;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL), SQLITE_OK);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

/* A database as the scheduler before schema versions left it: the same
 * tables, a server registered without endpoints, an exclusive lease of one
 * of its GPUs without an API or endpoints, user_version 0. */
static void write_v0_database(void)
{
    sqlite3 *db;
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
    Rgpu__GpuInfo gpus[2], *gptrs[2];
    Rgpu__Lease lease = RGPU__LEASE__INIT;
    Rgpu__LeaseGpu lg = RGPU__LEASE_GPU__INIT, *lptrs[1] = {&lg};

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "CREATE TABLE servers(address TEXT PRIMARY KEY, drained INTEGER, reg BLOB);"
                 "CREATE TABLE leases(id INTEGER PRIMARY KEY, lease BLOB);"
                 "CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER);"
                 "INSERT INTO meta VALUES('next_lease_id', 8);");
    for (size_t g = 0; g < 2; g++) {
        rgpu__gpu_info__init(&gpus[g]);
        gpus[g].index = (uint32_t)g;
        gpus[g].model = (char *)"old-gpu";
        gpus[g].memory = 1ull << 30;
        gpus[g].n_apis = 1;
        gpus[g].apis = opencl_only;
        gptrs[g] = &gpus[g];
    }
    reg.address = (char *)"10.0.2.1:7070";
    reg.transport = (char *)"tcp";
    reg.hostname = (char *)"old";
    reg.n_gpus = 2;
    reg.gpus = gptrs;
    insert_blob(db, "INSERT INTO servers(address, drained, reg) VALUES(?, 0, ?)", reg.address, 0,
                &reg.base);
    lg.server = reg.address;
    lg.index = 1;
    lg.model = (char *)"old-gpu";
    lg.memory = 1ull << 30;
    lease.id = 7;
    lease.n_gpus = 1;
    lease.gpus = lptrs;
    lease.expires_unix = 5000;
    lease.tokens_expire_unix = 5000;
    lease.token = (char *)"";
    lease.user = (char *)"alice";
    insert_blob(db, "INSERT INTO leases(id, lease) VALUES(?, ?)", NULL, 7, &lease.base);
    sqlite3_close(db);
}

TestSuite(migration, .init = store_setup, .fini = store_teardown, .timeout = 60);

Test(migration, a_version_0_database_is_migrated_once)
{
    rgpu_sched_store_t *store;
    rgpu_sched_t s;
    Rgpu__ListReply list = RGPU__LIST_REPLY__INIT;
    const Rgpu__Lease *l;
    Rgpu__AllocRequest req = fx_req(1);

    write_v0_database();
    cr_assert_eq(user_version(), 0);
    for (int round = 0; round < 2; round++) {   /* the second open finds it migrated */
        cr_assert_eq(rgpu_sched_store_open(path, &store, reason, sizeof(reason)), RGPU_OK, "%s",
                     reason);
        cr_assert_eq(rgpu_sched_init(&s, store, &key, 3600, 15, 1000), RGPU_OK);
        cr_assert_eq(rgpu_sched_list(&s, 1000, &list), RGPU_OK);
        cr_assert_eq(list.n_servers, 1);
        cr_assert_eq(list.servers[0]->n_endpoints, 1);
        cr_assert_str_eq(list.servers[0]->endpoints[0], "tcp://10.0.2.1:7070");
        cr_assert_eq(list.n_leases, 1);
        cr_assert_eq(list.leases[0]->id, 7);
        cr_assert_eq(list.leases[0]->api, RGPU__API_FAMILY__API_OPENCL);
        cr_assert_eq(list.leases[0]->gpus[0]->n_endpoints, 1);
        cr_assert_str_eq(list.leases[0]->gpus[0]->endpoints[0], "tcp://10.0.2.1:7070");
        rgpu_sched_list_free(&list);
        /* The old lease still holds its GPU; the other one is free, and
         * lease ids go on from the stored counter. */
        if (round == 0) {
            cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)), RGPU_OK,
                         "%s", reason);
            cr_assert_eq(l->gpus[0]->index, 0);
            cr_assert_eq(l->id, 8);
            cr_assert_eq(rgpu_sched_alloc(&s, &req, 1000, &l, reason, sizeof(reason)),
                         RGPU_ERR_NOT_FOUND);
            cr_assert_eq(rgpu_sched_release(&s, 8, NULL, reason, sizeof(reason)), RGPU_OK);
        }
        rgpu_sched_cleanup(&s);
        /* Read once the scheduler let go (it holds the database exclusively). */
        cr_assert_eq(user_version(), RGPU_SCHED_STORE_VERSION);
    }
}

Test(migration, a_newer_database_is_refused)
{
    rgpu_sched_store_t *store = NULL;
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "PRAGMA user_version = 99");
    sqlite3_close(db);
    cr_assert_eq(rgpu_sched_store_open(path, &store, reason, sizeof(reason)), RGPU_ERR_IO);
    cr_assert(strstr(reason, "is of a newer rgpu-scheduler (schema 99"), "%s", reason);
    cr_assert_null(store);
}
