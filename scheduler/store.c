/*
 * The scheduler's state store: SQLite in WAL mode. Servers and leases are
 * stored as their packed protobuf messages (the same bytes the wire
 * carries), keyed by address and lease id, so a scheduler killed at any
 * moment restarts with exactly what it had acknowledged: every change is
 * committed before its reply is sent.
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

static const char rgpu_store_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "PRAGMA locking_mode=EXCLUSIVE;"
    "CREATE TABLE IF NOT EXISTS servers(address TEXT PRIMARY KEY, drained INTEGER, reg BLOB);"
    "CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY, lease BLOB);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v INTEGER);"
    "INSERT OR IGNORE INTO meta VALUES('next_lease_id', 1);";

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
