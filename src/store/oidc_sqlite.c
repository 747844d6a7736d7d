/*
 * oidc_sqlite.c — OpenID Connect clients and signing keys in the SQLite user store (tables
 * `oidc_clients` and `oidc_keys`, migration 5 of users.db; store/oidc_records.h).
 *
 * The one design decision: a client's URI lists are stored as one text column each, the URIs
 * joined by newlines. A URI the account service accepts never holds whitespace or a control
 * character, so the join is unambiguous, and a client is one row read in one step. These
 * operations are rare (a token request reads one client; rotations happen every few weeks), so
 * each prepares its statement when it runs, as the factor operations do.
 */
#include <stdio.h>
#include <string.h>

#include "store/oidc_store.h"
#include "store/user_sqlite.h"

#define CLIENT_COLS                                                                                \
    "client_id, name, public, consent, id_token_alg, redirect_uris, post_logout_uris,"             \
    " secret_hash, created_at"
#define KEY_COLS "kid, alg, generation, created_at, retired_at, sealed"

const char gh_oidc_sqlite_migration[] = "CREATE TABLE oidc_clients ("
                                        " client_id TEXT PRIMARY KEY,"
                                        " name TEXT NOT NULL,"
                                        " public INTEGER NOT NULL DEFAULT 0,"
                                        " consent INTEGER NOT NULL DEFAULT 0,"
                                        " id_token_alg TEXT NOT NULL,"
                                        " redirect_uris TEXT NOT NULL,"
                                        " post_logout_uris TEXT NOT NULL DEFAULT '',"
                                        " secret_hash BLOB,"
                                        " created_at INTEGER NOT NULL);"
                                        "CREATE TABLE oidc_keys ("
                                        " kid TEXT PRIMARY KEY,"
                                        " alg TEXT NOT NULL,"
                                        " generation INTEGER NOT NULL,"
                                        " created_at INTEGER NOT NULL,"
                                        " retired_at INTEGER NOT NULL DEFAULT 0,"
                                        " sealed BLOB NOT NULL,"
                                        " UNIQUE (generation, alg))";

static gh_user_sqlite_t *S(gh_user_store_t *b)
{
    return (gh_user_sqlite_t *)b;
}

static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

/* ---- clients ---- */

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", v ? v : "");
}

static int read_client(sqlite3_stmt *st, gh_oidc_client_t *c)
{
    memset(c, 0, sizeof *c);
    copy_col(st, 0, c->client_id, sizeof c->client_id);
    copy_col(st, 1, c->name, sizeof c->name);
    c->is_public = sqlite3_column_int(st, 2) != 0;
    c->consent = sqlite3_column_int(st, 3) != 0;
    copy_col(st, 4, c->id_token_alg, sizeof c->id_token_alg);
    const char *r = (const char *)sqlite3_column_text(st, 5);
    const char *p = (const char *)sqlite3_column_text(st, 6);
    if (gh_oidc_uris_split(r ? r : "", c->redirect_uris, &c->n_redirect) != 0 ||
        gh_oidc_uris_split(p ? p : "", c->post_logout_uris, &c->n_post_logout) != 0)
        return GH_ESTORE;
    int n = sqlite3_column_bytes(st, 7);
    const void *h = sqlite3_column_blob(st, 7);
    if (h && n == GH_OIDC_SECRET_HASH_LEN)
        memcpy(c->secret_hash, h, GH_OIDC_SECRET_HASH_LEN);
    c->created_at = sqlite3_column_int64(st, 8);
    return 0;
}

int gh_oidc_sqlite_client_add(gh_user_store_t *b, const gh_oidc_client_t *c)
{
    char redirect[GH_OIDC_URIS_TEXT_MAX], logout[GH_OIDC_URIS_TEXT_MAX];
    if (gh_oidc_client_fits(c) != 0 ||
        gh_oidc_uris_join(c->redirect_uris, c->n_redirect, redirect, sizeof redirect) != 0 ||
        gh_oidc_uris_join(c->post_logout_uris, c->n_post_logout, logout, sizeof logout) != 0)
        return GH_EINVAL;
    static const uint8_t zero[GH_OIDC_SECRET_HASH_LEN];
    bool has_secret = memcmp(c->secret_hash, zero, sizeof zero) != 0;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    /* The bound on the table is part of the insert: no row when it is full. */
    int rc = prep(db,
                  "INSERT INTO oidc_clients (" CLIENT_COLS ") SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7,"
                  " ?8, ?9 WHERE (SELECT count(*) FROM oidc_clients) < ?10",
                  &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, c->client_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, c->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 3, c->is_public ? 1 : 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 4, c->consent ? 1 : 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 5, c->id_token_alg, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 6, redirect, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 7, logout, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = has_secret
                 ? sqlite3_bind_blob(st, 8, c->secret_hash, GH_OIDC_SECRET_HASH_LEN, SQLITE_STATIC)
                 : sqlite3_bind_null(st, 8);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 9, c->created_at);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 10, GH_OIDC_CLIENTS_MAX);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        ret = sqlite3_changes(db) == 1 ? 0 : GH_ELIMIT;
    else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY ||
             sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE)
        ret = GH_EEXISTS;
    else
        ret = gh_user_sqlite_error(s, "oidc_client_add", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_oidc_sqlite_client_get(gh_user_store_t *b, const char *client_id, gh_oidc_client_t *out)
{
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret;
    int rc = prep(db, "SELECT " CLIENT_COLS " FROM oidc_clients WHERE client_id = ?1", &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, client_id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        ret = read_client(st, out);
    else if (rc == SQLITE_DONE)
        ret = GH_ENOTFOUND;
    else
        ret = gh_user_sqlite_error(s, "oidc_client_get", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_oidc_sqlite_client_list(gh_user_store_t *b, const char *after, gh_oidc_client_t *out,
                               size_t cap, size_t *n)
{
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    *n = 0;
    int rc = prep(db,
                  "SELECT " CLIENT_COLS " FROM oidc_clients WHERE client_id > ?1"
                  " ORDER BY client_id LIMIT ?2",
                  &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 1, after, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)cap);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW || *n >= cap)
            break;
        if ((ret = read_client(st, &out[*n])) != 0)
            break;
        (*n)++;
    }
    if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = gh_user_sqlite_error(s, "oidc_client_list", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_unlock(s);
    return ret;
}

/* Runs a write bound to one text (and optionally an integer) parameter; *changes rows. */
static int write1(gh_user_sqlite_t *s, const char *op, const char *sql, const char *text,
                  int64_t num, int *changes)
{
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    int rc = prep(db, sql, &st);
    if (rc == SQLITE_OK)
        rc = text ? sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC)
                  : sqlite3_bind_int64(st, 1, num);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        *changes = sqlite3_changes(db);
    else
        ret = gh_user_sqlite_error(s, op, rc);
    sqlite3_finalize(st);
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_oidc_sqlite_client_del(gh_user_store_t *b, const char *client_id)
{
    int changes = 0;
    int ret = write1(S(b), "oidc_client_del", "DELETE FROM oidc_clients WHERE client_id = ?1",
                     client_id, 0, &changes);
    return ret != 0 ? ret : changes == 1 ? 0 : GH_ENOTFOUND;
}

/* ---- signing keys ---- */

int gh_oidc_sqlite_key_list(gh_user_store_t *b, gh_oidc_key_rec_t *out, size_t cap, size_t *n)
{
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    *n = 0;
    int rc =
        prep(db, "SELECT " KEY_COLS " FROM oidc_keys ORDER BY generation DESC, alg LIMIT ?1", &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)cap);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW || *n >= cap)
            break;
        gh_oidc_key_rec_t *k = &out[*n];
        memset(k, 0, sizeof *k);
        copy_col(st, 0, k->kid, sizeof k->kid);
        copy_col(st, 1, k->alg, sizeof k->alg);
        k->generation = sqlite3_column_int64(st, 2);
        k->created_at = sqlite3_column_int64(st, 3);
        k->retired_at = sqlite3_column_int64(st, 4);
        int len = sqlite3_column_bytes(st, 5);
        const void *p = sqlite3_column_blob(st, 5);
        if (!p || len <= 0 || (size_t)len > sizeof k->sealed) {
            ret = GH_ESTORE;
            break;
        }
        memcpy(k->sealed, p, (size_t)len);
        k->sealed_len = (size_t)len;
        (*n)++;
    }
    if (ret == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = gh_user_sqlite_error(s, "oidc_key_list", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_oidc_sqlite_key_rotate(gh_user_store_t *b, const gh_oidc_key_rec_t *keys, size_t n,
                              int64_t now_ms)
{
    if (n == 0)
        return GH_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (gh_oidc_key_fits(&keys[i]) != 0 || keys[i].generation != keys[0].generation)
            return GH_EINVAL;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    /* A savepoint, not BEGIN: it nests inside gh_user_audited's transaction (the rotation and
     * its audit event commit together) and is a transaction of its own outside one. */
    bool outermost = sqlite3_get_autocommit(db) != 0;
    int rc = sqlite3_exec(db, "SAVEPOINT oidc_rotate", NULL, NULL, NULL);
    bool open_sp = rc == SQLITE_OK;
    if (rc == SQLITE_OK)
        rc = prep(db,
                  "INSERT INTO oidc_keys (kid, alg, generation, created_at, sealed)"
                  " VALUES (?1, ?2, ?3, ?4, ?5)",
                  &st);
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        const gh_oidc_key_rec_t *k = &keys[i];
        sqlite3_reset(st);
        rc = sqlite3_bind_text(st, 1, k->kid, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(st, 2, k->alg, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 3, k->generation);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 4, k->created_at);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_blob(st, 5, k->sealed, (int)k->sealed_len, SQLITE_STATIC);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) {
        int ext = sqlite3_extended_errcode(db);
        ret = ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY
                  ? GH_EEXISTS
                  : gh_user_sqlite_error(s, "oidc_key_rotate", rc);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (ret == 0) {
        rc = prep(db,
                  "UPDATE oidc_keys SET retired_at = ?1 WHERE retired_at = 0 AND generation < ?2",
                  &st);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 1, now_ms);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(st, 2, keys[0].generation);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
            ret = gh_user_sqlite_error(s, "oidc_key_rotate", rc);
        sqlite3_finalize(st);
    }
    if (ret != 0 && open_sp)
        sqlite3_exec(db, "ROLLBACK TO oidc_rotate", NULL, NULL, NULL);
    if (open_sp && sqlite3_exec(db, "RELEASE oidc_rotate", NULL, NULL, NULL) != SQLITE_OK) {
        if (ret == 0)
            ret = gh_user_sqlite_error(s, "oidc_key_rotate", sqlite3_errcode(db));
        if (outermost && !sqlite3_get_autocommit(db)) /* the commit failed: leave no transaction */
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_oidc_sqlite_key_prune(gh_user_store_t *b, int64_t retired_before_ms, size_t *removed)
{
    int changes = 0;
    *removed = 0;
    int ret = write1(S(b), "oidc_key_prune",
                     "DELETE FROM oidc_keys WHERE retired_at > 0 AND retired_at <= ?1", NULL,
                     retired_before_ms, &changes);
    if (ret == 0)
        *removed = (size_t)changes;
    return ret;
}
