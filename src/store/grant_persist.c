/*
 * grant_persist.c — the memory grant store made durable: refresh-token families and consents are
 * written through to <data-dir>/grants.db (SQLite, WAL) before each call returns, and loaded back
 * at open, so a restart or a kill -9 neither logs an app out nor brings a revoked grant back.
 * Authorization codes stay in memory only: they live 60 s, and a restart in between costs the
 * user one more trip through /oidc/authorize.
 *
 * The one design decision: one writer at a time (db_lock), and an end is on disk before memory
 * forgets it. A revocation (one family, a session's, a user's, a client's), a rotation and a
 * consent's withdrawal write and commit FIRST and only then change memory, so an end that cannot
 * be written changes nothing and an end that answered success holds across a restart. A create
 * (a family, a consent) changes memory inside an open transaction — the memory store's hooks
 * delete, in that transaction, the rows of what its bounds evicted — inserts the row and
 * commits; if the commit fails the new entry is taken back out of memory and the call fails.
 * Expiry writes nothing on the request path: an expired row is dropped at load, and the
 * janitor's expire purges expired rows at most once a minute.
 *
 * Memory: the memory store's components; this layer's own struct is `oidc_tokens`, SQLite's heap
 * shows under `sqlite`.
 *
 * Reload: a successor loads the file while its predecessor still serves, and loads it again
 * (takeover) once the predecessor has stopped writing and before it serves itself, so what the
 * predecessor granted or revoked during the hand-over holds. Codes do not cross a reload.
 */
#include "store/grant.h"
#include "store/grant_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/sqlite_schema.h"

#define BUSY_TIMEOUT_MS 5000
#define PURGE_PERIOD_MS 60000
#define ID_BATCH 256

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_FAM_INSERT,
    ST_FAM_DELETE,
    ST_FAM_ROTATE,
    ST_FAM_LOAD,
    ST_CON_PUT,
    ST_CON_DELETE,
    ST_CON_DELETE_USER,
    ST_CON_DELETE_CLIENT,
    ST_CON_LOAD,
    ST_PURGE,
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_FAM_INSERT] = "INSERT INTO families (id, client_id, user_id, session_id, scopes, amr,"
                      " auth_time, refresh_hash, access_hash, access_expires_at, created_at,"
                      " expires_at, generation) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                      " ?11, ?12, ?13)",
    [ST_FAM_DELETE] = "DELETE FROM families WHERE id = ?1",
    [ST_FAM_ROTATE] = "UPDATE families SET refresh_hash = ?2, access_hash = ?3,"
                      " access_expires_at = ?4, generation = ?5 WHERE id = ?1",
    [ST_FAM_LOAD] = "SELECT id, client_id, user_id, session_id, scopes, amr, auth_time,"
                    " refresh_hash, access_hash, access_expires_at, created_at, expires_at,"
                    " generation FROM families ORDER BY created_at",
    [ST_CON_PUT] = "INSERT OR REPLACE INTO consents (user_id, client_id, scopes, given_at)"
                   " VALUES (?1, ?2, ?3, ?4)",
    [ST_CON_DELETE] = "DELETE FROM consents WHERE user_id = ?1 AND client_id = ?2",
    [ST_CON_DELETE_USER] = "DELETE FROM consents WHERE user_id = ?1",
    [ST_CON_DELETE_CLIENT] = "DELETE FROM consents WHERE client_id = ?1",
    [ST_CON_LOAD] = "SELECT user_id, client_id, scopes, given_at FROM consents ORDER BY given_at",
    [ST_PURGE] = "DELETE FROM families WHERE expires_at <= ?1",
};

/* migrations[i] brings grants.db from user_version i to i + 1. Append; never edit. */
static const char *const migrations[] = {
    "CREATE TABLE families ("
    " id BLOB PRIMARY KEY,"
    " client_id TEXT NOT NULL,"
    " user_id INTEGER NOT NULL,"
    " session_id TEXT NOT NULL,"
    " scopes INTEGER NOT NULL,"
    " amr INTEGER NOT NULL,"
    " auth_time INTEGER NOT NULL,"
    " refresh_hash BLOB NOT NULL,"
    " access_hash BLOB NOT NULL,"
    " access_expires_at INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL,"
    " generation INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX families_expires ON families (expires_at);"
    "CREATE TABLE consents ("
    " user_id INTEGER NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scopes INTEGER NOT NULL,"
    " given_at INTEGER NOT NULL,"
    " PRIMARY KEY (user_id, client_id)) WITHOUT ROWID",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

typedef struct {
    gh_grant_store_t base;
    gh_grant_store_t *mem;
    pthread_mutex_t db_lock;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    char path[1024];
    bool in_txn; /* the hooks delete rows inside the writer's open transaction */
    int txn_rc;  /* the hooks' first failure */
    int64_t last_purge_ms;
    uint8_t (*ids)[GH_GRANT_FAMILY_ID_LEN]; /* ID_BATCH, fixed */
} persist_t;

static int db_error(persist_t *p, const char *op)
{
    GH_LOG(GH_LOG_ERROR, "grant database error", GH_LS("op", op),
           GH_LS("detail", sqlite3_errmsg(p->db)));
    return GH_ESTORE;
}

static int run(persist_t *p, int which)
{
    sqlite3_stmt *st = p->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : db_error(p, statements[which]);
}

static int begin(persist_t *p)
{
    return run(p, ST_BEGIN);
}

static int commit(persist_t *p)
{
    int rc = run(p, ST_COMMIT);
    if (rc != 0 && !sqlite3_get_autocommit(p->db))
        (void)run(p, ST_ROLLBACK);
    return rc;
}

static void rollback(persist_t *p)
{
    if (!sqlite3_get_autocommit(p->db))
        (void)run(p, ST_ROLLBACK);
}

static int delete_family(persist_t *p, const uint8_t *id)
{
    sqlite3_bind_blob(p->st[ST_FAM_DELETE], 1, id, GH_GRANT_FAMILY_ID_LEN, SQLITE_STATIC);
    return run(p, ST_FAM_DELETE);
}

static int delete_consent(persist_t *p, uint64_t user_id, const char *client_id)
{
    sqlite3_stmt *st = p->st[client_id ? ST_CON_DELETE : ST_CON_DELETE_USER];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    if (client_id)
        sqlite3_bind_text(st, 2, client_id, -1, SQLITE_STATIC);
    return run(p, client_id ? ST_CON_DELETE : ST_CON_DELETE_USER);
}

/* The memory store's hooks (its lock held, on the writer's thread). */
static void on_family_gone(void *ctx, const uint8_t *id)
{
    persist_t *p = ctx;
    if (!p->in_txn)
        return; /* a disk-first end: the row is gone already */
    int rc = delete_family(p, id);
    if (rc != 0 && p->txn_rc == 0)
        p->txn_rc = rc;
}

static void on_consent_gone(void *ctx, uint64_t user_id, const char *client_id)
{
    persist_t *p = ctx;
    if (!p->in_txn)
        return;
    int rc = delete_consent(p, user_id, client_id);
    if (rc != 0 && p->txn_rc == 0)
        p->txn_rc = rc;
}

static int insert_family(persist_t *p, const gh_grant_family_t *f)
{
    sqlite3_stmt *st = p->st[ST_FAM_INSERT];
    sqlite3_bind_blob(st, 1, f->id, GH_GRANT_FAMILY_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, f->client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)f->user_id);
    sqlite3_bind_text(st, 4, f->session_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, f->scopes);
    sqlite3_bind_int(st, 6, f->amr);
    sqlite3_bind_int64(st, 7, f->auth_time_ms);
    sqlite3_bind_blob(st, 8, f->refresh_hash, GH_GRANT_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 9, f->access_hash, GH_GRANT_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, f->access_expires_at_ms);
    sqlite3_bind_int64(st, 11, f->created_at_ms);
    sqlite3_bind_int64(st, 12, f->expires_at_ms);
    sqlite3_bind_int64(st, 13, f->generation);
    return run(p, ST_FAM_INSERT);
}

/* ---- codes: memory only ---- */

static int p_put_code(gh_grant_store_t *b, const uint8_t *key, const gh_grant_code_t *c,
                      int64_t now)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_put_code(p->mem, key, c, now);
}

static int p_take_code(gh_grant_store_t *b, const uint8_t *key, int64_t now, gh_grant_code_t *out)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_take_code(p->mem, key, now, out);
}

static int p_code_bind(gh_grant_store_t *b, const uint8_t *key, const uint8_t *id, int64_t now)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_code_bind_family(p->mem, key, id, now);
}

/* ---- families ---- */

static int p_family_create(gh_grant_store_t *b, const gh_grant_family_t *f, int64_t now,
                           gh_grant_family_t *out)
{
    persist_t *p = (persist_t *)b;
    gh_grant_family_t made;
    pthread_mutex_lock(&p->db_lock);
    int rc = begin(p);
    if (rc != 0)
        goto out;
    p->in_txn = true;
    p->txn_rc = 0;
    rc = gh_grant_family_create(p->mem, f, now, &made);
    p->in_txn = false;
    if (rc != 0) {
        /* A refused create may still have revoked the user's oldest (their own bound): those
         * deletes commit, so memory and disk agree. */
        if (p->txn_rc != 0 || commit(p) != 0)
            rollback(p);
        goto out;
    }
    if ((rc = p->txn_rc) != 0 || (rc = insert_family(p, &made)) != 0 || (rc = commit(p)) != 0) {
        rollback(p);
        GH_IGNORE(gh_grant_family_revoke(p->mem, made.id)); /* taken back (hook: not in txn) */
        goto out;
    }
    if (out)
        *out = made;
out:
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static int p_family_get(gh_grant_store_t *b, const uint8_t *id, int64_t now, gh_grant_family_t *out)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_family_get(p->mem, id, now, out);
}

static int p_family_check_access(gh_grant_store_t *b, const uint8_t *id, const uint8_t *access,
                                 int64_t now, gh_grant_family_t *out)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_family_check_access(p->mem, id, access, now, out);
}

static int p_family_rotate(gh_grant_store_t *b, const uint8_t *id, const uint8_t *presented,
                           const uint8_t *new_refresh, const uint8_t *new_access,
                           int64_t access_expires_at, int64_t now, gh_grant_family_t *out)
{
    persist_t *p = (persist_t *)b;
    gh_grant_family_t cur;
    pthread_mutex_lock(&p->db_lock);
    /* Writers are serialized: what memory holds now is what the rotation will see (expiry
     * only removes, and then the rotation answers GH_ENOTFOUND, which writes nothing). */
    int rc = gh_grant_family_get(p->mem, id, now, &cur);
    if (rc != 0)
        goto out;
    if (sodium_memcmp(cur.refresh_hash, presented, GH_GRANT_HASH_LEN) == 0) {
        sqlite3_stmt *st = p->st[ST_FAM_ROTATE];
        sqlite3_bind_blob(st, 1, id, GH_GRANT_FAMILY_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, new_refresh, GH_GRANT_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, new_access, GH_GRANT_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, access_expires_at);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)cur.generation + 1);
        rc = run(p, ST_FAM_ROTATE);
    } else {
        rc = delete_family(p, id); /* reuse: the family ends, on disk first */
    }
    if (rc != 0)
        goto out;
    rc = gh_grant_family_rotate(p->mem, id, presented, new_refresh, new_access, access_expires_at,
                                now, out);
out:
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static int p_family_revoke(gh_grant_store_t *b, const uint8_t *id)
{
    persist_t *p = (persist_t *)b;
    pthread_mutex_lock(&p->db_lock);
    int rc = delete_family(p, id);
    if (rc == 0)
        rc = gh_grant_family_revoke(p->mem, id);
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

/* Revokes what `by` selects: rows first (one transaction per batch of ids), then memory. */
static int revoke_many(persist_t *p, gh_grant_select_t by, uint64_t user_id, const char *key,
                       size_t *n)
{
    size_t total = 0;
    int rc = 0;
    pthread_mutex_lock(&p->db_lock);
    for (;;) {
        size_t k = gh_grant_memory_family_ids(p->mem, by, user_id, key, p->ids, ID_BATCH);
        if (k == 0)
            break;
        if ((rc = begin(p)) != 0)
            break;
        for (size_t i = 0; i < k && rc == 0; i++)
            rc = delete_family(p, p->ids[i]);
        if (rc != 0 || (rc = commit(p)) != 0) {
            rollback(p);
            break;
        }
        for (size_t i = 0; i < k; i++)
            if (gh_grant_family_revoke(p->mem, p->ids[i]) == 0)
                total++;
        if (k < ID_BATCH)
            break;
    }
    if (rc == 0 && by == GH_GRANT_BY_CLIENT) {
        sqlite3_bind_text(p->st[ST_CON_DELETE_CLIENT], 1, key, -1, SQLITE_STATIC);
        rc = run(p, ST_CON_DELETE_CLIENT);
        size_t ignored;
        if (rc == 0)
            rc = gh_grant_revoke_client(p->mem, key, &ignored);
    }
    pthread_mutex_unlock(&p->db_lock);
    if (n)
        *n = total;
    return rc;
}

static int p_revoke_session(gh_grant_store_t *b, const char *sid, size_t *n)
{
    return revoke_many((persist_t *)b, GH_GRANT_BY_SESSION, 0, sid, n);
}

static int p_revoke_user(gh_grant_store_t *b, uint64_t user_id, size_t *n)
{
    return revoke_many((persist_t *)b, GH_GRANT_BY_USER, user_id, NULL, n);
}

static int p_revoke_client(gh_grant_store_t *b, const char *client_id, size_t *n)
{
    return revoke_many((persist_t *)b, GH_GRANT_BY_CLIENT, 0, client_id, n);
}

/* ---- consents ---- */

static int p_consent_put(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t scopes, int64_t now)
{
    persist_t *p = (persist_t *)b;
    uint32_t before = 0;
    pthread_mutex_lock(&p->db_lock);
    bool had = gh_grant_consent_get(p->mem, user_id, client_id, &before) == 0;
    int rc = begin(p);
    if (rc != 0)
        goto out;
    p->in_txn = true;
    p->txn_rc = 0;
    rc = gh_grant_consent_put(p->mem, user_id, client_id, scopes, now);
    p->in_txn = false;
    if (rc != 0) {
        if (p->txn_rc != 0 || commit(p) != 0)
            rollback(p);
        goto out;
    }
    sqlite3_stmt *st = p->st[ST_CON_PUT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    sqlite3_bind_text(st, 2, client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, scopes);
    sqlite3_bind_int64(st, 4, now);
    if ((rc = p->txn_rc) != 0 || (rc = run(p, ST_CON_PUT)) != 0 || (rc = commit(p)) != 0) {
        rollback(p);
        if (had) /* put back what it was (its place in the order aside) */
            GH_IGNORE(gh_grant_consent_put(p->mem, user_id, client_id, before, now));
        else
            GH_IGNORE(gh_grant_consent_revoke(p->mem, user_id, client_id));
    }
out:
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static int p_consent_get(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t *scopes)
{
    persist_t *p = (persist_t *)b;
    return gh_grant_consent_get(p->mem, user_id, client_id, scopes);
}

static int p_consent_revoke(gh_grant_store_t *b, uint64_t user_id, const char *client_id)
{
    persist_t *p = (persist_t *)b;
    pthread_mutex_lock(&p->db_lock);
    int rc = delete_consent(p, user_id, client_id);
    if (rc == 0)
        rc = gh_grant_consent_revoke(p->mem, user_id, client_id);
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

/* ---- the rest ---- */

static size_t p_expire(gh_grant_store_t *b, int64_t now, size_t max)
{
    persist_t *p = (persist_t *)b;
    size_t n = gh_grant_expire(p->mem, now, max);
    if (now - p->last_purge_ms >= PURGE_PERIOD_MS && pthread_mutex_trylock(&p->db_lock) == 0) {
        p->last_purge_ms = now;
        sqlite3_bind_int64(p->st[ST_PURGE], 1, now);
        (void)run(p, ST_PURGE);
        pthread_mutex_unlock(&p->db_lock);
    }
    return n;
}

static void p_stats(gh_grant_store_t *b, gh_grant_stats_t *out)
{
    persist_t *p = (persist_t *)b;
    gh_grant_stats(p->mem, out);
}

static void p_destroy(gh_grant_store_t **b)
{
    persist_t *p = (persist_t *)*b;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(p->st[i]);
    if (p->db)
        sqlite3_close(p->db);
    gh_grant_destroy(&p->mem);
    gh_mem_free(GH_MEM_OIDC_TOKENS, p->ids);
    pthread_mutex_destroy(&p->db_lock);
    gh_mem_free(GH_MEM_OIDC_TOKENS, p);
    *b = NULL;
}

static int load(persist_t *p, int64_t now, size_t *loaded);

/* The successor of a reload: the predecessor has stopped writing, so the file is the truth;
 * what the snapshot at open holds is replaced by it. */
static int p_takeover(gh_grant_store_t *b)
{
    persist_t *p = (persist_t *)b;
    size_t loaded = 0;
    pthread_mutex_lock(&p->db_lock);
    gh_grant_memory_clear(p->mem);
    int rc = load(p, gh_clock_now_ms(), &loaded);
    pthread_mutex_unlock(&p->db_lock);
    if (rc == 0)
        GH_LOG(GH_LOG_INFO, "grants taken over", GH_LS("path", p->path), GH_LI("families", loaded));
    return rc;
}

static const gh_grant_ops_t persist_ops = {
    .name = "memory+sqlite",
    .put_code = p_put_code,
    .take_code = p_take_code,
    .code_bind_family = p_code_bind,
    .family_create = p_family_create,
    .family_get = p_family_get,
    .family_rotate = p_family_rotate,
    .family_check_access = p_family_check_access,
    .family_revoke = p_family_revoke,
    .revoke_session = p_revoke_session,
    .revoke_user = p_revoke_user,
    .revoke_client = p_revoke_client,
    .consent_put = p_consent_put,
    .consent_get = p_consent_get,
    .consent_revoke = p_consent_revoke,
    .expire = p_expire,
    .stats = p_stats,
    .destroy = p_destroy,
    .takeover = p_takeover,
};

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* Loads every row; expired families are left for the purge. */
static int load(persist_t *p, int64_t now, size_t *loaded)
{
    *loaded = 0;
    sqlite3_stmt *st = p->st[ST_FAM_LOAD];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        gh_grant_family_t f = {0};
        if (sqlite3_column_bytes(st, 0) != GH_GRANT_FAMILY_ID_LEN ||
            sqlite3_column_bytes(st, 7) != GH_GRANT_HASH_LEN ||
            sqlite3_column_bytes(st, 8) != GH_GRANT_HASH_LEN)
            continue;
        memcpy(f.id, sqlite3_column_blob(st, 0), GH_GRANT_FAMILY_ID_LEN);
        copy_text(f.client_id, sizeof f.client_id, sqlite3_column_text(st, 1));
        f.user_id = (uint64_t)sqlite3_column_int64(st, 2);
        copy_text(f.session_id, sizeof f.session_id, sqlite3_column_text(st, 3));
        f.scopes = (uint32_t)sqlite3_column_int64(st, 4);
        f.amr = (uint8_t)sqlite3_column_int(st, 5);
        f.auth_time_ms = sqlite3_column_int64(st, 6);
        memcpy(f.refresh_hash, sqlite3_column_blob(st, 7), GH_GRANT_HASH_LEN);
        memcpy(f.access_hash, sqlite3_column_blob(st, 8), GH_GRANT_HASH_LEN);
        f.access_expires_at_ms = sqlite3_column_int64(st, 9);
        f.created_at_ms = sqlite3_column_int64(st, 10);
        f.expires_at_ms = sqlite3_column_int64(st, 11);
        f.generation = (uint32_t)sqlite3_column_int64(st, 12);
        if (gh_grant_memory_restore_family(p->mem, &f, now) == 0)
            (*loaded)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_error(p, "load families");
    st = p->st[ST_CON_LOAD];
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *client = sqlite3_column_text(st, 1);
        if (client)
            GH_IGNORE(gh_grant_memory_restore_consent(
                p->mem, (uint64_t)sqlite3_column_int64(st, 0), (const char *)client,
                (uint32_t)sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3)));
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_error(p, "load consents");
}

int gh_grant_persist_open(const char *data_dir, const gh_grant_limits_t *limits,
                          gh_durability_t durability, gh_grant_store_t **out)
{
    *out = NULL;
    if (!data_dir || gh_grant_limits_check(limits) != 0)
        return GH_EINVAL;
    persist_t *p = gh_mem_calloc(GH_MEM_OIDC_TOKENS, 1, sizeof *p);
    if (!p)
        return GH_ENOMEM;
    p->base.ops = &persist_ops;
    pthread_mutex_init(&p->db_lock, NULL);
    int rc = GH_ENOMEM;
    p->ids = gh_mem_calloc(GH_MEM_OIDC_TOKENS, ID_BATCH, sizeof *p->ids);
    if (!p->ids)
        goto fail;
    if ((size_t)snprintf(p->path, sizeof p->path, "%s/grants.db", data_dir) >= sizeof p->path) {
        rc = GH_EINVAL;
        goto fail;
    }
    if ((rc = gh_grant_memory_open(limits, &p->mem)) != 0)
        goto fail;
    /* Born 0600, like sessions.db: it holds token hashes and user ids. */
    int fd = open(p->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        GH_LOG(GH_LOG_ERROR, "cannot create the grant database", GH_LS("path", p->path),
               GH_LS("error", strerror(errno)));
        rc = GH_EIO;
        goto fail;
    }
    close(fd);
    rc = GH_ESTORE;
    if (sqlite3_open_v2(p->path, &p->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot open the grant database", GH_LS("path", p->path));
        goto fail;
    }
    sqlite3_busy_timeout(p->db, BUSY_TIMEOUT_MS);
    /* WAL + NORMAL: a commit is a write() into the WAL, so a killed process loses nothing;
     * FULL adds an fsync per commit for power loss. */
    char sql[120];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s;",
             durability == GH_DURABILITY_FULL ? "FULL" : "NORMAL");
    if (sqlite3_exec(p->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        (void)db_error(p, "configure");
        goto fail;
    }
    if ((rc = gh_sqlite_migrate(p->db, p->path, "grant database", migrations, SCHEMA_VERSION)) != 0)
        goto fail;
    rc = GH_ESTORE;
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(p->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &p->st[i],
                               NULL) != SQLITE_OK) {
            (void)db_error(p, "prepare");
            goto fail;
        }
    int64_t now = gh_clock_now_ms();
    size_t loaded = 0;
    if ((rc = load(p, now, &loaded)) != 0)
        goto fail;
    gh_grant_hooks_t hooks = {
        .family_gone = on_family_gone, .consent_gone = on_consent_gone, .ctx = p};
    gh_grant_memory_set_hooks(p->mem, &hooks);
    GH_LOG(GH_LOG_INFO, "grants loaded", GH_LS("path", p->path), GH_LI("families", loaded));
    *out = &p->base;
    return 0;
fail : {
    gh_grant_store_t *b = &p->base;
    p_destroy(&b);
}
    return rc;
}
