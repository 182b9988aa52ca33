/*
 * The scheduler's state store: SQLite in WAL mode. Servers and leases are
 * stored as their packed protobuf messages (the same bytes the wire
 * carries), keyed by address and lease id, so a scheduler killed at any
 * moment restarts with exactly what it had acknowledged: every change is
 * committed before its reply is sent.
 *
 * The schema has a version (PRAGMA user_version, RGPU_SCHED_STORE_VERSION).
 * Opening an older database migrates it in one transaction, so that the
 * rest of the scheduler only ever sees the current form:
 *   0 -> 1  servers get their endpoints (tcp://ADDRESS: every server then
 *           listened on TCP only), leases their API (OpenCL, the only one)
 *           and their GPUs the endpoints of their server.
 * A database of a newer scheduler is refused, not guessed at.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "rgpu/log.h"
#include "sched_core.h"

struct rgpu_sched_store {
    sqlite3 *db;
    sqlite3_stmt *put_server, *put_lease, *del_lease, *next_id;
};

static rgpu_status_t rgpu_store_bind_msg(sqlite3_stmt *stmt, int col, const ProtobufCMessage *msg);

static const char rgpu_store_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA locking_mode=EXCLUSIVE;"
    "CREATE TABLE IF NOT EXISTS servers(address TEXT PRIMARY KEY, drained INTEGER, reg BLOB);"
    "CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, lease BLOB);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER);"
    "INSERT OR IGNORE INTO meta VALUES('next_lease_id', 1);";

/* Rewrites each row select gives (key, blob) through fix, which returns
 * the message to store again, NULL to leave the row. Returns the rows
 * rewritten, -1 on an error. */
static int rgpu_store_rewrite(sqlite3 *db, const char *select, const char *update,
                              ProtobufCMessage *(*fix)(const void *blob, size_t len))
{
    sqlite3_stmt *rows = NULL, *put = NULL;
    int rc, n = 0;

    if (sqlite3_prepare_v2(db, select, -1, &rows, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, update, -1, &put, NULL) != SQLITE_OK) {
        sqlite3_finalize(rows);
        return -1;
    }
    while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
        ProtobufCMessage *msg = fix(sqlite3_column_blob(rows, 1),
                                    (size_t)sqlite3_column_bytes(rows, 1));

        if (!msg)
            continue;
        sqlite3_bind_value(put, 2, sqlite3_column_value(rows, 0));
        if (rgpu_store_bind_msg(put, 1, msg) != RGPU_OK) {
            protobuf_c_message_free_unpacked(msg, NULL);
            break;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        if (sqlite3_step(put) != SQLITE_DONE) {
            rc = SQLITE_ERROR;
            break;
        }
        sqlite3_reset(put);
        sqlite3_clear_bindings(put);
        n++;
    }
    sqlite3_finalize(rows);
    sqlite3_finalize(put);
    return rc == SQLITE_DONE ? n : -1;
}

static ProtobufCMessage *rgpu_store_fix_server_v1(const void *blob, size_t len)
{
    Rgpu__RegisterServer *reg = rgpu__register_server__unpack(NULL, len, blob);

    /* A row that does not unpack stays as it is: loading skips it with a warning. */
    if (reg && rgpu__sched_endpoints_default(reg) != RGPU_OK) {
        rgpu__register_server__free_unpacked(reg, NULL);
        return NULL;
    }
    return reg ? &reg->base : NULL;
}

static ProtobufCMessage *rgpu_store_fix_lease_v1(const void *blob, size_t len)
{
    Rgpu__Lease *lease = rgpu__lease__unpack(NULL, len, blob);

    if (!lease)
        return NULL;
    lease->api = rgpu__sched_api(lease->api);
    for (size_t g = 0; g < lease->n_gpus; g++) {
        Rgpu__LeaseGpu *gpu = lease->gpus[g];
        size_t elen = strlen(gpu->server) + 7;

        if (gpu->n_endpoints)
            continue;
        gpu->endpoints = malloc(sizeof(*gpu->endpoints));
        if (!gpu->endpoints || !(gpu->endpoints[0] = malloc(elen))) {
            free(gpu->endpoints);
            gpu->endpoints = NULL;
            rgpu__lease__free_unpacked(lease, NULL);
            return NULL;
        }
        snprintf(gpu->endpoints[0], elen, "tcp://%s", gpu->server);
        gpu->n_endpoints = 1;
    }
    return &lease->base;
}

/* Brings the database from version to RGPU_SCHED_STORE_VERSION. */
static int rgpu_store_migrate(sqlite3 *db, int version, const char *path, char *why, size_t cap)
{
    char set[64];
    int servers = 0, leases = 0;

    if (version > RGPU_SCHED_STORE_VERSION) {
        snprintf(why, cap, "database %s is of a newer rgpu-scheduler (schema %d; this one "
                 "knows up to %d)", path, version, RGPU_SCHED_STORE_VERSION);
        return -1;
    }
    if (version == RGPU_SCHED_STORE_VERSION)
        return 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out_fail;
    if (version < 1) {
        servers = rgpu_store_rewrite(db, "SELECT address, reg FROM servers",
                                     "UPDATE servers SET reg = ? WHERE address = ?",
                                     rgpu_store_fix_server_v1);
        leases = servers < 0 ? -1 : rgpu_store_rewrite(db, "SELECT id, lease FROM leases",
                                                       "UPDATE leases SET lease = ? WHERE id = ?",
                                                       rgpu_store_fix_lease_v1);
        if (leases < 0)
            goto out_rollback;
    }
    snprintf(set, sizeof(set), "PRAGMA user_version = %d", RGPU_SCHED_STORE_VERSION);
    if (sqlite3_exec(db, set, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto out_rollback;
    /* A new database is "migrated" too, silently: it had nothing. */
    if (servers || leases)
        rgpu_info("store", "database %s migrated from schema %d to %d (%d servers, %d leases)",
                  path, version < 0 ? 0 : version, RGPU_SCHED_STORE_VERSION, servers, leases);
    return 0;

out_rollback:
    snprintf(why, cap, "cannot migrate database %s from schema %d to %d: %s", path, version,
             RGPU_SCHED_STORE_VERSION, sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
out_fail:
    snprintf(why, cap, "cannot migrate database %s: %s", path, sqlite3_errmsg(db));
    return -1;
}

static int rgpu_store_version(sqlite3 *db)
{
    sqlite3_stmt *stmt;
    int version = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return version;
}

rgpu_status_t rgpu_sched_store_open(const char *path, rgpu_sched_store_t **store_p, char *why,
                                    size_t cap)
{
    rgpu_sched_store_t *store = calloc(1, sizeof(*store));
    char *err = NULL;

    if (!store)
        return RGPU_ERR_NOMEM;
    if (sqlite3_open(path, &store->db) != SQLITE_OK) {
        snprintf(why, cap, "cannot open database %s: %s", path, sqlite3_errmsg(store->db));
        goto out_close;
    }
    sqlite3_busy_timeout(store->db, 5000);
    if (sqlite3_exec(store->db, rgpu_store_schema, NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, cap, "cannot set database %s up: %s", path, err ? err : "?");
        sqlite3_free(err);
        goto out_close;
    }
    if (rgpu_store_migrate(store->db, rgpu_store_version(store->db), path, why, cap) != 0)
        goto out_close;
    if (sqlite3_prepare_v2(store->db,
                           "INSERT OR REPLACE INTO servers(address, drained, reg) VALUES(?,?,?)",
                           -1, &store->put_server, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->db, "INSERT OR REPLACE INTO leases(id, lease) VALUES(?,?)", -1,
                           &store->put_lease, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->db, "DELETE FROM leases WHERE id = ?", -1, &store->del_lease,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(store->db,
                           "UPDATE meta SET v = v + 1 WHERE k = 'next_lease_id' RETURNING v - 1",
                           -1, &store->next_id, NULL) != SQLITE_OK) {
        snprintf(why, cap, "cannot prepare statements on %s: %s", path, sqlite3_errmsg(store->db));
        goto out_close;
    }
    *store_p = store;
    return RGPU_OK;

out_close:
    rgpu_sched_store_close(store);
    return RGPU_ERR_IO;
}

void rgpu_sched_store_close(rgpu_sched_store_t *store)
{
    if (!store)
        return;
    sqlite3_finalize(store->put_server);
    sqlite3_finalize(store->put_lease);
    sqlite3_finalize(store->del_lease);
    sqlite3_finalize(store->next_id);
    sqlite3_close(store->db);
    free(store);
}

static rgpu_status_t rgpu_store_step(rgpu_sched_store_t *store, sqlite3_stmt *stmt)
{
    int rc = sqlite3_step(stmt);

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        rgpu_error("store", "sqlite: %s", sqlite3_errmsg(store->db));
        return RGPU_ERR_IO;
    }
    return RGPU_OK;
}

static rgpu_status_t rgpu_store_bind_msg(sqlite3_stmt *stmt, int col, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);

    if (!buf)
        return RGPU_ERR_NOMEM;
    protobuf_c_message_pack(msg, buf);
    sqlite3_bind_blob(stmt, col, buf, (int)len, free);
    return RGPU_OK;
}

rgpu_status_t rgpu__store_put_server(rgpu_sched_store_t *store, const Rgpu__RegisterServer *reg,
                                     int drained)
{
    sqlite3_bind_text(store->put_server, 1, reg->address, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(store->put_server, 2, drained);
    if (rgpu_store_bind_msg(store->put_server, 3, &reg->base) != RGPU_OK) {
        sqlite3_reset(store->put_server);
        return RGPU_ERR_NOMEM;
    }
    return rgpu_store_step(store, store->put_server);
}

rgpu_status_t rgpu__store_put_lease(rgpu_sched_store_t *store, const Rgpu__Lease *lease)
{
    sqlite3_bind_int64(store->put_lease, 1, (sqlite3_int64)lease->id);
    if (rgpu_store_bind_msg(store->put_lease, 2, &lease->base) != RGPU_OK) {
        sqlite3_reset(store->put_lease);
        return RGPU_ERR_NOMEM;
    }
    return rgpu_store_step(store, store->put_lease);
}

rgpu_status_t rgpu__store_del_lease(rgpu_sched_store_t *store, uint64_t id)
{
    sqlite3_bind_int64(store->del_lease, 1, (sqlite3_int64)id);
    return rgpu_store_step(store, store->del_lease);
}

rgpu_status_t rgpu__store_begin(rgpu_sched_store_t *store)
{
    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rgpu_error("store", "cannot begin a transaction: %s", sqlite3_errmsg(store->db));
        return RGPU_ERR_IO;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu__store_end(rgpu_sched_store_t *store, int commit)
{
    if (sqlite3_exec(store->db, commit ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK) {
        rgpu_error("store", "cannot %s: %s", commit ? "commit" : "roll back",
                   sqlite3_errmsg(store->db));
        if (commit)
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return RGPU_ERR_IO;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu__store_next_id(rgpu_sched_store_t *store, uint64_t *id_p)
{
    int rc = sqlite3_step(store->next_id);
    uint64_t id = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(store->next_id, 0) : 0;

    /* RETURNING rows are written once the statement runs to its end. */
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(store->next_id);
    sqlite3_reset(store->next_id);
    if (rc != SQLITE_DONE || id == 0) {
        rgpu_error("store", "cannot take a lease id: %s", sqlite3_errmsg(store->db));
        return RGPU_ERR_IO;
    }
    *id_p = id;
    return RGPU_OK;
}

rgpu_status_t rgpu__store_load(rgpu_sched_store_t *store, void *arg,
                               void (*server_fn)(void *arg, Rgpu__RegisterServer *reg, int drained),
                               void (*lease_fn)(void *arg, Rgpu__Lease *lease))
{
    sqlite3_stmt *stmt;
    int rc;

    if (sqlite3_prepare_v2(store->db, "SELECT reg, drained FROM servers ORDER BY rowid", -1, &stmt,
                           NULL) != SQLITE_OK)
        return RGPU_ERR_IO;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        Rgpu__RegisterServer *reg = rgpu__register_server__unpack(
            NULL, (size_t)sqlite3_column_bytes(stmt, 0), sqlite3_column_blob(stmt, 0));
        if (!reg) {
            rgpu_warn("store", "a stored server does not unpack; skipped");
            continue;
        }
        server_fn(arg, reg, sqlite3_column_int(stmt, 1));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return RGPU_ERR_IO;
    if (sqlite3_prepare_v2(store->db, "SELECT lease FROM leases ORDER BY id", -1, &stmt, NULL) !=
        SQLITE_OK)
        return RGPU_ERR_IO;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        Rgpu__Lease *lease = rgpu__lease__unpack(NULL, (size_t)sqlite3_column_bytes(stmt, 0),
                                                 sqlite3_column_blob(stmt, 0));
        if (!lease) {
            rgpu_warn("store", "a stored lease does not unpack; skipped");
            continue;
        }
        lease_fn(arg, lease);
    }
    sqlite3_finalize(stmt);
    return rc == SQLITE_DONE ? RGPU_OK : RGPU_ERR_IO;
}
