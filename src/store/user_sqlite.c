/*
 * user_sqlite.c — the embedded user store: <data-dir>/users.db, SQLite in WAL mode.
 *
 * One connection, prepared statements made once at open, guarded by one mutex. User-store calls
 * are short (an indexed lookup is a few microseconds) and far rarer than token checks, which
 * never touch SQLite, so one serialized connection is simpler than a pool and not the bottleneck.
 * Usernames are UNIQUE COLLATE NOCASE: "Alice" and "alice" are one account, kept as first spelled.
 * SQLite's own heap is reported as the `sqlite` memory component and bounded by a soft heap limit.
 */
#include "store/user.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "mem/mem.h"

#define SQLITE_SOFT_HEAP_LIMIT (16 * 1024 * 1024)
#define SCHEMA_VERSION 1

enum {
    ST_CREATE,
    ST_BY_NAME,
    ST_BY_ID,
    ST_SET_PASSWORD,
    ST_DELETE,
    ST_LIST,
    ST_PING,
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_CREATE] = "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
    [ST_BY_NAME] = "SELECT id, username, password_hash, created_at FROM users WHERE username = ?1",
    [ST_BY_ID] = "SELECT id, username, password_hash, created_at FROM users WHERE id = ?1",
    [ST_SET_PASSWORD] = "UPDATE users SET password_hash = ?2 WHERE id = ?1",
    [ST_DELETE] = "DELETE FROM users WHERE id = ?1",
    [ST_LIST] = "SELECT id, username, '', created_at FROM users WHERE id > ?1 ORDER BY id LIMIT ?2",
    [ST_PING] = "SELECT 1",
};

/* Each entry migrates from version i to i + 1; append, never edit. */
static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " username TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " password_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL)",
};

typedef struct {
    gh_user_store_t base;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    pthread_mutex_t lock;
} sqlite_store_t;

static size_t sqlite_bytes(void)
{
    sqlite3_int64 n = sqlite3_memory_used();
    return n > 0 ? (size_t)n : 0;
}

static int store_error(sqlite_store_t *s, const char *what, int rc)
{
    GH_LOG(GH_LOG_ERROR, "user store error", GH_LS("op", what), GH_LI("sqlite_rc", rc),
           GH_LS("detail", sqlite3_errmsg(s->db)));
    return GH_ESTORE;
}

static void copy_row(sqlite3_stmt *st, gh_user_t *out)
{
    memset(out, 0, sizeof *out);
    out->id = (uint64_t)sqlite3_column_int64(st, 0);
    const unsigned char *name = sqlite3_column_text(st, 1);
    const unsigned char *hash = sqlite3_column_text(st, 2);
    snprintf(out->username, sizeof out->username, "%s", name ? (const char *)name : "");
    snprintf(out->password_hash, sizeof out->password_hash, "%s", hash ? (const char *)hash : "");
    out->created_at_ms = sqlite3_column_int64(st, 3);
}

/* Runs a single-row lookup statement already bound; fills out. */
static int fetch_one(sqlite_store_t *s, sqlite3_stmt *st, const char *what, gh_user_t *out)
{
    int rc = sqlite3_step(st);
    int ret;
    if (rc == SQLITE_ROW) {
        copy_row(st, out);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = GH_ENOTFOUND;
    } else {
        ret = store_error(s, what, rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static int u_create(gh_user_store_t *base, const char *username, const char *hash, int64_t now,
                    gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_CREATE];
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_DONE) {
        memset(out, 0, sizeof *out);
        out->id = (uint64_t)sqlite3_last_insert_rowid(s->db);
        snprintf(out->username, sizeof out->username, "%s", username);
        snprintf(out->password_hash, sizeof out->password_hash, "%s", hash);
        out->created_at_ms = now;
    } else if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE) {
        ret = GH_EEXISTS;
    } else {
        ret = store_error(s, "create", rc);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_get_by_name(gh_user_store_t *base, const char *username, gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_bind_text(s->st[ST_BY_NAME], 1, username, -1, SQLITE_STATIC);
    int ret = fetch_one(s, s->st[ST_BY_NAME], "get_by_name", out);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_get_by_id(gh_user_store_t *base, uint64_t id, gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    sqlite3_bind_int64(s->st[ST_BY_ID], 1, (sqlite3_int64)id);
    int ret = fetch_one(s, s->st[ST_BY_ID], "get_by_id", out);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* Runs a bound UPDATE/DELETE; GH_ENOTFOUND when it touched no row. */
static int change_one(sqlite_store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st), ret = 0;
    if (rc != SQLITE_DONE)
        ret = store_error(s, what, rc);
    else if (sqlite3_changes(s->db) == 0)
        ret = GH_ENOTFOUND;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static int u_set_password(gh_user_store_t *base, uint64_t id, const char *hash)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    sqlite3_bind_int64(s->st[ST_SET_PASSWORD], 1, (sqlite3_int64)id);
    sqlite3_bind_text(s->st[ST_SET_PASSWORD], 2, hash, -1, SQLITE_STATIC);
    int ret = change_one(s, s->st[ST_SET_PASSWORD], "set_password");
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_del(gh_user_store_t *base, uint64_t id)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    pthread_mutex_lock(&s->lock);
    sqlite3_bind_int64(s->st[ST_DELETE], 1, (sqlite3_int64)id);
    int ret = change_one(s, s->st[ST_DELETE], "delete");
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_list(gh_user_store_t *base, uint64_t after, gh_user_t *out, size_t cap, size_t *n)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    *n = 0;
    if (after > INT64_MAX)
        return 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_LIST];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)cap);
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < cap)
        copy_row(st, &out[(*n)++]);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = store_error(s, "list", rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_ping(gh_user_store_t *base)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    int rc = sqlite3_step(s->st[ST_PING]);
    sqlite3_reset(s->st[ST_PING]);
    pthread_mutex_unlock(&s->lock);
    return rc == SQLITE_ROW ? 0 : GH_ESTORE;
}

static void u_close(gh_user_store_t **base)
{
    sqlite_store_t *s = (sqlite_store_t *)*base;
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    gh_mem_free(GH_MEM_USERS, s);
    *base = NULL;
}

static const gh_user_store_ops_t sqlite_ops = {
    .name = "sqlite",
    .create = u_create,
    .get_by_name = u_get_by_name,
    .get_by_id = u_get_by_id,
    .set_password = u_set_password,
    .del = u_del,
    .list = u_list,
    .ping = u_ping,
    .close = u_close,
};

/* Brings the schema up to SCHEMA_VERSION inside one transaction. */
static int migrate(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return GH_ESTORE;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version >= SCHEMA_VERSION)
        return 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return GH_ESTORE;
    for (int v = version; v < SCHEMA_VERSION; v++) {
        if (sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return GH_ESTORE;
}

int gh_user_sqlite_open(const char *data_dir, gh_user_store_t **out)
{
    char path[1024];
    if (snprintf(path, sizeof path, "%s/users.db", data_dir) >= (int)sizeof path)
        return GH_EINVAL;
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return GH_EIO;
    gh_mem_set_reporter(GH_MEM_SQLITE, sqlite_bytes);
    sqlite3_soft_heap_limit64(SQLITE_SOFT_HEAP_LIMIT);

    sqlite_store_t *s = gh_mem_calloc(GH_MEM_USERS, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot open the user database", GH_LS("path", path),
               GH_LS("detail", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc)));
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    sqlite3_extended_result_codes(s->db, 1);
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                     "PRAGMA foreign_keys=ON; PRAGMA cache_size=-2048",
                     NULL, NULL, NULL) != SQLITE_OK ||
        migrate(s->db) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot prepare the user database", GH_LS("path", path),
               GH_LS("detail", sqlite3_errmsg(s->db)));
        goto fail;
    }
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            GH_LOG(GH_LOG_ERROR, "cannot prepare a statement", GH_LS("detail", sqlite3_errmsg(s->db)));
            goto fail;
        }
    }
    chmod(path, 0600);
    *out = &s->base;
    return 0;
fail:;
    gh_user_store_t *b = &s->base;
    u_close(&b);
    return GH_ESTORE;
}
