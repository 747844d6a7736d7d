/*
 * user_sqlite.c — the embedded user store: <data-dir>/users.db, SQLite in WAL mode.
 *
 * Design decision: ONE connection, its statements prepared once at open, guarded by one mutex.
 * User-store calls are short (an indexed lookup takes microseconds), happen once per login or
 * registration — far rarer than token checks, which never touch SQLite — and the expensive part
 * of a login (argon2id) runs outside the lock on the password pool. One serialized connection is
 * therefore not the bottleneck, keeps SQLite's memory to one page cache, and makes every
 * statement's reset/clear-bindings trivially race-free. A pool of connections would buy nothing
 * but more memory.
 *
 * Usernames are UNIQUE COLLATE NOCASE: "Alice" and "alice" are one account, kept as first spelled.
 * Every statement is parameterized; no SQL text is ever built from input.
 *
 * Memory: SQLite allocates through its own allocator, so its heap is not charged through gh_mem;
 * instead sqlite3_memory_used() is registered as the reporter of the `sqlite` component. It is
 * bounded by sqlite3_soft_heap_limit64 (process-wide, SQLITE_SOFT_HEAP_LIMIT, set unless someone
 * set a limit already: past it SQLite recycles cache pages instead of growing) and by a small page
 * cache per connection (SQLITE_CACHE_KIB). The store struct itself is charged to `users`.
 */
#include "store/user.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "mem/mem.h"
#include "store/audit_sqlite.h"
#include "store/oidc_store.h"
#include "store/sqlite_schema.h"
#include "store/user_sqlite.h"

#define SQLITE_SOFT_HEAP_LIMIT (16 * 1024 * 1024) /* bytes, all connections of the process */
#define SQLITE_CACHE_KIB 2048                     /* page cache of this connection */
#define SQLITE_BUSY_TIMEOUT_MS 5000               /* another process (the CLI) holds the lock */

enum {
    ST_CREATE,
    ST_BY_NAME,
    ST_BY_ID,
    ST_SET_PASSWORD,
    ST_DELETE,
    ST_LIST,
    ST_PING,
    ST_PROBE,
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_CREATE] = "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
    [ST_BY_NAME] = "SELECT id, username, password_hash, created_at, admin, disabled FROM users "
                   "WHERE username = ?1",
    [ST_BY_ID] = "SELECT id, username, password_hash, created_at, admin, disabled FROM users "
                 "WHERE id = ?1",
    [ST_SET_PASSWORD] = "UPDATE users SET password_hash = ?2 WHERE id = ?1",
    [ST_DELETE] = "DELETE FROM users WHERE id = ?1",
    [ST_LIST] = "SELECT id, username, '', created_at, admin, disabled FROM users WHERE id > ?1 "
                "ORDER BY id LIMIT ?2",
    /* Reads the database file (not just "SELECT 1"), so /readyz notices a broken or locked db. */
    [ST_PING] = "SELECT count(*) FROM (SELECT 1 FROM users LIMIT 1)",
    /* While writes fail, ping writes one page (the schema version, unchanged) to see whether
     * they work again. Kept equal to SCHEMA_VERSION by a static assertion below. */
    [ST_PROBE] = "PRAGMA user_version = 5",
};

/* migrations[i] brings the schema from user_version i to i + 1. Append; never edit an entry, a
 * database in the field may have run it already. */
static const char *const migrations[] = {
    "CREATE TABLE users ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " username TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " password_hash TEXT NOT NULL,"
    " created_at INTEGER NOT NULL)",
    gh_audit_sqlite_migration, /* 2: users.admin, users.disabled, audit_events */
    /* 3: second factors and recovery codes (user_factors_sqlite.c) */
    "CREATE TABLE factors ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " type TEXT NOT NULL CHECK (type IN ('totp', 'webauthn')),"
    " name TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " last_used_at INTEGER NOT NULL DEFAULT 0,"
    " secret BLOB NOT NULL,"
    " credential_id BLOB UNIQUE,"
    " confirmed INTEGER NOT NULL DEFAULT 0,"
    " counter INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX factors_user ON factors (user_id);"
    "CREATE TABLE recovery_codes ("
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " hash BLOB NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " used_at INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (user_id, hash)) WITHOUT ROWID",
    /* 4: email (store/mail.h, mail_sqlite.c): the address and its verified flag on the user,
     * single-use link tokens (only their hashes), and the durable outbox. */
    "ALTER TABLE users ADD COLUMN email TEXT;"
    "ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;"
    "CREATE UNIQUE INDEX users_email ON users (email COLLATE NOCASE);"
    "CREATE TABLE email_tokens ("
    " hash BLOB PRIMARY KEY, user_id INTEGER NOT NULL, purpose TEXT NOT NULL, email TEXT,"
    " expires_at INTEGER NOT NULL);"
    "CREATE INDEX email_tokens_expiry ON email_tokens (expires_at);"
    "CREATE TABLE email_outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, kind TEXT NOT NULL,"
    " rcpt TEXT NOT NULL, message BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " next_attempt_at INTEGER NOT NULL, claimed_by TEXT, claimed_until INTEGER NOT NULL DEFAULT 0,"
    " state TEXT NOT NULL DEFAULT 'queued', done_at INTEGER, last_error TEXT);"
    "CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_at);",
    gh_oidc_sqlite_migration, /* 5: OpenID Connect clients and signing keys (oidc_sqlite.c) */
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))
_Static_assert(SCHEMA_VERSION == 5, "update ST_PROBE's user_version with the schema");

_Static_assert(ST__COUNT <= GH_USER_SQLITE_STATEMENTS, "raise GH_USER_SQLITE_STATEMENTS");
typedef gh_user_sqlite_t sqlite_store_t;

static size_t sqlite_bytes(void)
{
    sqlite3_int64 n = sqlite3_memory_used();
    return n > 0 ? (size_t)n : 0;
}

/* Leaves a statement ready for its next use and drops pointers to the caller's strings. */
static void finish(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Copies the current row (id, username, password_hash, created_at). The columns are NOT NULL
 * TEXT, so a NULL here means SQLite could not allocate the value: an error, not an empty hash. */
static int copy_row(sqlite_store_t *s, sqlite3_stmt *st, const char *op, gh_user_t *out)
{
    const unsigned char *name = sqlite3_column_text(st, 1);
    const unsigned char *hash = sqlite3_column_text(st, 2);
    if (!name || !hash)
        return gh_user_sqlite_error(s, op, sqlite3_errcode(s->db));
    memset(out, 0, sizeof *out);
    out->id = (uint64_t)sqlite3_column_int64(st, 0);
    snprintf(out->username, sizeof out->username, "%s", (const char *)name);
    snprintf(out->password_hash, sizeof out->password_hash, "%s", (const char *)hash);
    out->created_at_ms = sqlite3_column_int64(st, 3);
    out->admin = sqlite3_column_int(st, 4) != 0;
    out->disabled = sqlite3_column_int(st, 5) != 0;
    return 0;
}

/* Steps a bound single-row lookup and fills out; GH_ENOTFOUND when there is no row. */
static int fetch_one(sqlite_store_t *s, sqlite3_stmt *st, const char *op, gh_user_t *out)
{
    int rc = sqlite3_step(st), ret;
    if (rc == SQLITE_ROW)
        ret = copy_row(s, st, op, out);
    else if (rc == SQLITE_DONE)
        ret = GH_ENOTFOUND;
    else
        ret = gh_user_sqlite_error(s, op, rc);
    finish(st);
    return ret;
}

/* Steps a bound UPDATE/DELETE; GH_ENOTFOUND when it touched no row. */
static int change_one(sqlite_store_t *s, sqlite3_stmt *st, const char *op)
{
    int rc = sqlite3_step(st), ret = 0;
    if (rc != SQLITE_DONE)
        ret = gh_user_sqlite_error(s, op, rc);
    else if (sqlite3_changes(s->db) == 0)
        ret = GH_ENOTFOUND;
    finish(st);
    return ret;
}

/* A hash must fit gh_user_t.password_hash, or reading it back would cut it. */
static bool hash_fits(const char *hash)
{
    return hash && strnlen(hash, GH_PWHASH_MAX) < GH_PWHASH_MAX;
}

static int u_create(gh_user_store_t *base, const char *username, const char *hash, int64_t now,
                    gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    size_t nlen = username ? strnlen(username, GH_USERNAME_MAX + 1) : 0;
    if (nlen == 0 || nlen > GH_USERNAME_MAX || !hash_fits(hash))
        return GH_EINVAL;
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_CREATE];
    int rc = sqlite3_bind_text(st, 1, username, (int)nlen, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, now);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        memset(out, 0, sizeof *out);
        out->id = (uint64_t)sqlite3_last_insert_rowid(s->db);
        memcpy(out->username, username, nlen);
        snprintf(out->password_hash, sizeof out->password_hash, "%s", hash);
        out->created_at_ms = now;
        ret = 0;
    } else if (sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_UNIQUE) {
        ret = GH_EEXISTS;
    } else {
        ret = gh_user_sqlite_error(s, "create", rc);
    }
    finish(st);
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_get_by_name(gh_user_store_t *base, const char *username, gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    size_t nlen = username ? strnlen(username, GH_USERNAME_MAX + 1) : 0;
    if (nlen == 0 || nlen > GH_USERNAME_MAX)
        return GH_ENOTFOUND; /* such a name can never have been created */
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_BY_NAME];
    int rc = sqlite3_bind_text(st, 1, username, (int)nlen, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        ret = fetch_one(s, st, "get_by_name", out);
    } else {
        ret = gh_user_sqlite_error(s, "get_by_name", rc);
        finish(st);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_get_by_id(gh_user_store_t *base, uint64_t id, gh_user_t *out)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND; /* SQLite rowids are signed 64-bit */
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_BY_ID];
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (rc == SQLITE_OK) {
        ret = fetch_one(s, st, "get_by_id", out);
    } else {
        ret = gh_user_sqlite_error(s, "get_by_id", rc);
        finish(st);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_set_password(gh_user_store_t *base, uint64_t id, const char *hash)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (!hash_fits(hash))
        return GH_EINVAL;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_SET_PASSWORD];
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) {
        ret = change_one(s, st, "set_password");
    } else {
        ret = gh_user_sqlite_error(s, "set_password", rc);
        finish(st);
    }
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_del(gh_user_store_t *base, uint64_t id)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_DELETE];
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (rc == SQLITE_OK) {
        ret = change_one(s, st, "delete");
    } else {
        ret = gh_user_sqlite_error(s, "delete", rc);
        finish(st);
    }
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_list(gh_user_store_t *base, uint64_t after, gh_user_t *out, size_t cap, size_t *n)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    *n = 0;
    if (after > INT64_MAX || cap == 0)
        return 0;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_LIST];
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, cap > INT64_MAX ? INT64_MAX : (sqlite3_int64)cap);
    if (rc != SQLITE_OK) {
        ret = gh_user_sqlite_error(s, "list", rc);
        goto out;
    }
    while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((ret = copy_row(s, st, "list", &out[*n])) != 0)
            goto out;
        ++*n;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = gh_user_sqlite_error(s, "list", rc);
out:
    finish(st);
    pthread_mutex_unlock(&s->lock);
    if (ret != 0)
        *n = 0; /* all or nothing: a half page would look like the end of the list */
    return ret;
}

static int u_ping(gh_user_store_t *base)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_PING];
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 0 : gh_user_sqlite_error(s, "ping", rc);
    finish(st);
    if (ret == 0 && s->failing) {
        st = s->st[ST_PROBE];
        rc = sqlite3_step(st);
        ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : gh_user_sqlite_error(s, "probe", rc);
        finish(st);
        gh_user_sqlite_note_write(s, ret);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_set_flags(gh_user_store_t *base, uint64_t id, int admin, int disabled)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    int ret;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->audit.set_flags;
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 2, admin < 0 ? -1 : admin != 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 3, disabled < 0 ? -1 : disabled != 0);
    if (rc == SQLITE_OK) {
        ret = change_one(s, st, "set_flags");
    } else {
        ret = gh_user_sqlite_error(s, "set_flags", rc);
        finish(st);
    }
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_search(gh_user_store_t *base, const char *prefix, uint64_t after, gh_user_t *out,
                    size_t cap, size_t *n)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    *n = 0;
    size_t plen = prefix ? strnlen(prefix, GH_USER_SEARCH_MAX + 1) : 0;
    if (after > INT64_MAX || cap == 0 || plen > GH_USER_SEARCH_MAX)
        return 0;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->audit.search;
    int rc = sqlite3_bind_text(st, 1, prefix ? prefix : "", (int)plen, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)after);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, cap > INT64_MAX ? INT64_MAX : (sqlite3_int64)cap);
    if (rc != SQLITE_OK) {
        ret = gh_user_sqlite_error(s, "search", rc);
        goto out;
    }
    while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((ret = copy_row(s, st, "search", &out[*n])) != 0)
            goto out;
        ++*n;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = gh_user_sqlite_error(s, "search", rc);
out:
    finish(st);
    pthread_mutex_unlock(&s->lock);
    if (ret != 0)
        *n = 0;
    return ret;
}

static int u_audit_append(gh_user_store_t *base, gh_audit_event_t *ev)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    int rc = gh_audit_sqlite_append(s->db, &s->audit, ev);
    int ret = rc == SQLITE_OK ? 0 : gh_user_sqlite_error(s, "audit_append", rc);
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_audit_read(gh_user_store_t *base, const gh_audit_query_t *q, gh_audit_event_t *out,
                        size_t cap, size_t *n)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    int rc = gh_audit_sqlite_read(&s->audit, q, out, cap, n);
    int ret = rc == SQLITE_OK ? 0 : gh_user_sqlite_error(s, "audit_read", rc);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int u_audit_prune(gh_user_store_t *base, int64_t before_ms, size_t max, size_t *removed)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    int rc = gh_audit_sqlite_prune(s->db, &s->audit, before_ms, max, removed);
    int ret = rc == SQLITE_OK ? 0 : gh_user_sqlite_error(s, "audit_prune", rc);
    gh_user_sqlite_note_write(s, ret);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* The change and its event in one transaction: the lock is held throughout (it is recursive, so
 * the change's own operations take it again), so no other caller's statement joins it. */
static int u_audited(gh_user_store_t *base, gh_audit_event_t *ev,
                     int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    sqlite_store_t *s = (sqlite_store_t *)base;
    pthread_mutex_lock(&s->lock);
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), ret;
    if (rc != SQLITE_OK) {
        ret = gh_user_sqlite_error(s, "audited_begin", rc);
        gh_user_sqlite_note_write(s, ret);
        goto out;
    }
    ret = change(base, arg);
    if (ret == 0) {
        rc = gh_audit_sqlite_append(s->db, &s->audit, ev);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            ret = gh_user_sqlite_error(s, "audited_commit", rc);
        gh_user_sqlite_note_write(s, ret);
    }
    if (ret != 0 && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static void u_close(gh_user_store_t **base)
{
    sqlite_store_t *s = (sqlite_store_t *)*base;
    if (!s)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]); /* NULL is a no-op */
    gh_audit_sqlite_finalize(&s->audit);
    /* Every statement is finalized, so close cannot be BUSY; it checkpoints the WAL. */
    int rc = sqlite3_close(s->db);
    assert(rc == SQLITE_OK);
    (void)rc;
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
    .set_flags = u_set_flags,
    .search = u_search,
    .audit_append = u_audit_append,
    .audit_read = u_audit_read,
    .audit_prune = u_audit_prune,
    .audited = u_audited,
    .factor_add = gh_user_sqlite_factor_add,
    .factor_list = gh_user_sqlite_factor_list,
    .factor_get = gh_user_sqlite_factor_get,
    .factor_by_credential = gh_user_sqlite_factor_by_credential,
    .factor_rename = gh_user_sqlite_factor_rename,
    .factor_confirm = gh_user_sqlite_factor_confirm,
    .factor_use = gh_user_sqlite_factor_use,
    .factor_del = gh_user_sqlite_factor_del,
    .factor_del_all = gh_user_sqlite_factor_del_all,
    .recovery_set = gh_user_sqlite_recovery_set,
    .recovery_use = gh_user_sqlite_recovery_use,
    .recovery_state = gh_user_sqlite_recovery_state,
    .oidc_client_add = gh_oidc_sqlite_client_add,
    .oidc_client_get = gh_oidc_sqlite_client_get,
    .oidc_client_list = gh_oidc_sqlite_client_list,
    .oidc_client_del = gh_oidc_sqlite_client_del,
    .oidc_key_list = gh_oidc_sqlite_key_list,
    .oidc_key_rotate = gh_oidc_sqlite_key_rotate,
    .oidc_key_prune = gh_oidc_sqlite_key_prune,
    .close = u_close,
};

/* WAL lets readers (the CLI, a backup) run beside the writer; synchronous=NORMAL in WAL mode is
 * durable against a process crash and loses at most the last commits on power loss. */
static int configure(sqlite3 *db, const char *path)
{
    sqlite3_busy_timeout(db, SQLITE_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db, 1);
    char sql[160];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-%d;",
             SQLITE_CACHE_KIB);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return GH_ESTORE;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK)
        return GH_ESTORE;
    int rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    if (rc == SQLITE_ROW && mode && strcmp((const char *)mode, "wal") != 0)
        /* e.g. a filesystem without shared memory: still correct, only less concurrent */
        GH_LOG(GH_LOG_WARN, "the user database is not in WAL mode", GH_LS("path", path),
               GH_LS("journal_mode", (const char *)mode));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : GH_ESTORE;
}

int gh_user_sqlite_open(const char *data_dir, gh_user_store_t **out)
{
    char path[1024];
    int ret = GH_ESTORE;
    *out = NULL;
    if (!data_dir || !*data_dir ||
        snprintf(path, sizeof path, "%s/users.db", data_dir) >= (int)sizeof path)
        return GH_EINVAL;
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        GH_LOG(GH_LOG_ERROR, "cannot create the data directory", GH_LS("data_dir", data_dir),
               GH_LS("error", strerror(errno)));
        return GH_EIO;
    }
    /* Create the file ourselves so it is born 0600 (SQLite gives -wal and -shm the same mode);
     * the process umask is shared by every thread, so changing it here would be a race. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        GH_LOG(GH_LOG_ERROR, "cannot create the user database", GH_LS("path", path),
               GH_LS("error", strerror(errno)));
        return GH_EIO;
    }
    close(fd);

    gh_mem_set_reporter(GH_MEM_SQLITE, sqlite_bytes);
    if (sqlite3_soft_heap_limit64(-1) == 0)
        sqlite3_soft_heap_limit64(SQLITE_SOFT_HEAP_LIMIT);

    sqlite_store_t *s = gh_mem_calloc(GH_MEM_USERS, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &sqlite_ops;
    /* Recursive: gh_user_audited runs the store's own operations inside its transaction. */
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    /* NOMUTEX: our own mutex already serializes the connection. */
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot open the user database", GH_LS("path", path),
               GH_LS("detail", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc)));
        goto fail;
    }
    if (configure(s->db, path) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot configure the user database", GH_LS("path", path),
               GH_LS("detail", sqlite3_errmsg(s->db)));
        goto fail;
    }
    if (gh_sqlite_migrate(s->db, path, "user database", migrations, SCHEMA_VERSION) != 0)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            GH_LOG(GH_LOG_ERROR, "cannot prepare a user store statement", GH_LS("path", path),
                   GH_LI("statement", i), GH_LS("detail", sqlite3_errmsg(s->db)));
            goto fail;
        }
    }
    if (gh_audit_sqlite_prepare(s->db, &s->audit) != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot prepare the audit statements", GH_LS("path", path),
               GH_LS("detail", sqlite3_errmsg(s->db)));
        goto fail;
    }
    *out = &s->base;
    return 0;
fail:;
    gh_user_store_t *b = &s->base;
    u_close(&b);
    return ret;
}
