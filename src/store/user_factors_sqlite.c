/*
 * user_factors_sqlite.c — second factors and recovery codes in the SQLite user store
 * (tables `factors` and `recovery_codes`, schema version 2 of users.db).
 *
 * The one design decision: a use is a compare-and-set in SQL. factor_use moves the counter
 * (TOTP's last accepted time step, a passkey's signature counter) only where it is still below
 * the new value, in the UPDATE's WHERE clause, so two requests racing with the same code cannot
 * both succeed; a recovery code is spent the same way (`used_at = 0` in the WHERE clause).
 * These operations are rare (a login of a user with a factor, managing factors), so each
 * prepares its statement when it runs rather than holding more prepared statements open.
 */
#include <stdio.h>
#include <string.h>

#include "store/user_sqlite.h"

#define COLS                                                                                       \
    "id, user_id, type, name, created_at, last_used_at, secret, credential_id, confirmed, counter"

static gh_user_sqlite_t *S(gh_user_store_t *b)
{
    return (gh_user_sqlite_t *)b;
}

/* Prepares sql on db (lock held): SQLITE_OK or a code. */
static int prep(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(db, sql, -1, st, NULL);
}

static bool name_ok(const char *name)
{
    size_t n = strnlen(name, GH_FACTOR_NAME_MAX + 1);
    return n > 0 && n <= GH_FACTOR_NAME_MAX;
}

static int read_row(sqlite3_stmt *st, gh_factor_t *f)
{
    memset(f, 0, sizeof *f);
    f->id = (uint64_t)sqlite3_column_int64(st, 0);
    f->user_id = (uint64_t)sqlite3_column_int64(st, 1);
    const char *type = (const char *)sqlite3_column_text(st, 2);
    const char *name = (const char *)sqlite3_column_text(st, 3);
    if (!type || !name)
        return GH_ESTORE;
    f->type = strcmp(type, "webauthn") == 0 ? GH_FACTOR_WEBAUTHN : GH_FACTOR_TOTP;
    snprintf(f->name, sizeof f->name, "%s", name);
    f->created_at_ms = sqlite3_column_int64(st, 4);
    f->last_used_at_ms = sqlite3_column_int64(st, 5);
    int n = sqlite3_column_bytes(st, 6);
    const void *p = sqlite3_column_blob(st, 6);
    if (n < 0 || (size_t)n > sizeof f->secret || (n > 0 && !p))
        return GH_ESTORE;
    if (n > 0)
        memcpy(f->secret, p, (size_t)n);
    f->secret_len = (size_t)n;
    n = sqlite3_column_bytes(st, 7);
    p = sqlite3_column_blob(st, 7);
    if (n < 0 || (size_t)n > sizeof f->credential)
        return GH_ESTORE;
    if (n > 0 && p)
        memcpy(f->credential, p, (size_t)n);
    f->credential_len = p ? (size_t)n : 0;
    f->confirmed = sqlite3_column_int(st, 8) != 0;
    f->counter = (uint64_t)sqlite3_column_int64(st, 9);
    return 0;
}

int gh_user_sqlite_factor_add(gh_user_store_t *b, gh_factor_t *f)
{
    if (!name_ok(f->name) || f->secret_len == 0 || f->secret_len > GH_FACTOR_SECRET_MAX ||
        f->credential_len > GH_FACTOR_CREDENTIAL_MAX || f->user_id > INT64_MAX ||
        f->counter > INT64_MAX || (f->type != GH_FACTOR_TOTP && f->type != GH_FACTOR_WEBAUTHN))
        return GH_EINVAL;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    int rc = prep(db,
                  "INSERT INTO factors (user_id, type, name, created_at, secret, credential_id,"
                  " confirmed, counter) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                  &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)f->user_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, f->type == GH_FACTOR_WEBAUTHN ? "webauthn" : "totp", -1,
                               SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, f->name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, f->created_at_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, 5, f->secret, (int)f->secret_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = f->credential_len
                 ? sqlite3_bind_blob(st, 6, f->credential, (int)f->credential_len, SQLITE_STATIC)
                 : sqlite3_bind_null(st, 6);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(st, 7, f->confirmed ? 1 : 0);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 8, (sqlite3_int64)f->counter);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        f->id = (uint64_t)sqlite3_last_insert_rowid(db);
    else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE)
        ret = GH_EEXISTS;
    else if (sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_FOREIGNKEY)
        ret = GH_ENOTFOUND;
    else
        ret = gh_user_sqlite_error(s, "factor_add", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret;
}

/* Runs a SELECT of COLS bound to (a, b) into out[0..cap). */
static int select_rows(gh_user_store_t *b, const char *op, const char *sql, uint64_t a, uint64_t c,
                       const uint8_t *blob, size_t blen, gh_factor_t *out, size_t cap, size_t *n)
{
    gh_user_sqlite_t *s = S(b);
    *n = 0;
    if (a > INT64_MAX || c > INT64_MAX)
        return 0;
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0, rc = prep(db, sql, &st);
    if (rc == SQLITE_OK && blob)
        rc = sqlite3_bind_blob(st, 1, blob, (int)blen, SQLITE_STATIC);
    else if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)a);
    if (rc == SQLITE_OK && !blob && sqlite3_bind_parameter_count(st) >= 2)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)c);
    if (rc != SQLITE_OK) {
        ret = gh_user_sqlite_error(s, op, rc);
        goto out;
    }
    while (*n < cap && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((ret = read_row(st, &out[*n])) != 0) {
            ret = gh_user_sqlite_error(s, op, SQLITE_CORRUPT);
            goto out;
        }
        ++*n;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = gh_user_sqlite_error(s, op, rc);
out:
    sqlite3_finalize(st);
    gh_user_sqlite_unlock(s);
    if (ret != 0)
        *n = 0;
    return ret;
}

int gh_user_sqlite_factor_list(gh_user_store_t *b, uint64_t user_id, gh_factor_t *out, size_t cap,
                               size_t *n)
{
    return select_rows(b, "factor_list",
                       "SELECT " COLS " FROM factors WHERE user_id = ?1 ORDER BY id", user_id, 0,
                       NULL, 0, out, cap, n);
}

int gh_user_sqlite_factor_get(gh_user_store_t *b, uint64_t user_id, uint64_t id, gh_factor_t *out)
{
    size_t n;
    int rc =
        select_rows(b, "factor_get", "SELECT " COLS " FROM factors WHERE user_id = ?1 AND id = ?2",
                    user_id, id, NULL, 0, out, 1, &n);
    return rc != 0 ? rc : n == 1 ? 0 : GH_ENOTFOUND;
}

int gh_user_sqlite_factor_by_credential(gh_user_store_t *b, const uint8_t *cred, size_t len,
                                        gh_factor_t *out)
{
    if (!cred || len == 0 || len > GH_FACTOR_CREDENTIAL_MAX)
        return GH_ENOTFOUND;
    size_t n;
    int rc = select_rows(b, "factor_by_credential",
                         "SELECT " COLS " FROM factors WHERE credential_id = ?1", 0, 0, cred, len,
                         out, 1, &n);
    return rc != 0 ? rc : n == 1 ? 0 : GH_ENOTFOUND;
}

/* Runs a write bound to integers args[0..nargs) (and blob as ?last when given); *changes. */
static int write_ints(gh_user_store_t *b, const char *op, const char *sql, const int64_t *args,
                      int nargs, const uint8_t *blob, size_t blen, int *changes)
{
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0, rc = prep(db, sql, &st);
    for (int i = 0; rc == SQLITE_OK && i < nargs; i++)
        rc = sqlite3_bind_int64(st, i + 1, args[i]);
    if (rc == SQLITE_OK && blob)
        rc = sqlite3_bind_blob(st, nargs + 1, blob, (int)blen, SQLITE_STATIC);
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

int gh_user_sqlite_factor_rename(gh_user_store_t *b, uint64_t user_id, uint64_t id,
                                 const char *name)
{
    if (!name || !name_ok(name))
        return GH_EINVAL;
    if (user_id > INT64_MAX || id > INT64_MAX)
        return GH_ENOTFOUND;
    int64_t args[] = {(int64_t)user_id, (int64_t)id};
    int changes = 0;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    int rc = prep(db, "UPDATE factors SET name = ?3 WHERE user_id = ?1 AND id = ?2", &st);
    for (int i = 0; rc == SQLITE_OK && i < 2; i++)
        rc = sqlite3_bind_int64(st, i + 1, args[i]);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        changes = sqlite3_changes(db);
    else
        ret = gh_user_sqlite_error(s, "factor_rename", rc);
    sqlite3_finalize(st);
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret != 0 ? ret : changes ? 0 : GH_ENOTFOUND;
}

int gh_user_sqlite_factor_confirm(gh_user_store_t *b, uint64_t user_id, uint64_t id)
{
    if (user_id > INT64_MAX || id > INT64_MAX)
        return GH_ENOTFOUND;
    int64_t args[] = {(int64_t)user_id, (int64_t)id};
    int changes = 0;
    int rc = write_ints(b, "factor_confirm",
                        "UPDATE factors SET confirmed = 1 WHERE user_id = ?1 AND id = ?2", args, 2,
                        NULL, 0, &changes);
    return rc != 0 ? rc : changes ? 0 : GH_ENOTFOUND;
}

int gh_user_sqlite_factor_use(gh_user_store_t *b, uint64_t user_id, uint64_t id, uint64_t counter,
                              int64_t now_ms)
{
    if (user_id > INT64_MAX || id > INT64_MAX || counter > INT64_MAX)
        return GH_ENOTFOUND;
    int64_t args[] = {(int64_t)user_id, (int64_t)id, (int64_t)counter, now_ms};
    int changes = 0;
    int rc = write_ints(b, "factor_use",
                        "UPDATE factors SET counter = ?3, last_used_at = ?4 WHERE user_id = ?1 AND"
                        " id = ?2 AND (counter < ?3 OR (counter = 0 AND ?3 = 0))",
                        args, 4, NULL, 0, &changes);
    if (rc != 0 || changes)
        return rc;
    gh_factor_t f;
    rc = gh_user_sqlite_factor_get(b, user_id, id, &f);
    return rc == 0 ? GH_ERANGE : rc;
}

int gh_user_sqlite_factor_del(gh_user_store_t *b, uint64_t user_id, uint64_t id)
{
    if (user_id > INT64_MAX || id > INT64_MAX)
        return GH_ENOTFOUND;
    int64_t args[] = {(int64_t)user_id, (int64_t)id};
    int changes = 0;
    int rc = write_ints(b, "factor_del", "DELETE FROM factors WHERE user_id = ?1 AND id = ?2", args,
                        2, NULL, 0, &changes);
    return rc != 0 ? rc : changes ? 0 : GH_ENOTFOUND;
}

int gh_user_sqlite_factor_del_all(gh_user_store_t *b, uint64_t user_id, size_t *n)
{
    *n = 0;
    if (user_id > INT64_MAX)
        return 0;
    int64_t args[] = {(int64_t)user_id};
    int changes = 0, ignored = 0;
    int rc = write_ints(b, "factor_del_all", "DELETE FROM factors WHERE user_id = ?1", args, 1,
                        NULL, 0, &changes);
    if (rc == 0)
        rc = write_ints(b, "factor_del_all", "DELETE FROM recovery_codes WHERE user_id = ?1", args,
                        1, NULL, 0, &ignored);
    if (rc == 0)
        *n = (size_t)changes;
    return rc;
}

int gh_user_sqlite_recovery_set(gh_user_store_t *b, uint64_t user_id,
                                const uint8_t (*hashes)[GH_RECOVERY_HASH_LEN], size_t n,
                                int64_t now_ms)
{
    if (user_id > INT64_MAX || n > GH_RECOVERY_CODES * 4)
        return GH_EINVAL;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *del = NULL, *ins = NULL;
    int ret = 0;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = prep(db, "DELETE FROM recovery_codes WHERE user_id = ?1", &del);
    if (rc == SQLITE_OK)
        rc = prep(db, "INSERT INTO recovery_codes (user_id, hash, created_at) VALUES (?1, ?2, ?3)",
                  &ins);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(del, 1, (sqlite3_int64)user_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(del) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_reset(ins);
        rc = sqlite3_bind_int64(ins, 1, (sqlite3_int64)user_id);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_blob(ins, 2, hashes[i], GH_RECOVERY_HASH_LEN, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(ins, 3, now_ms);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(ins) == SQLITE_DONE ? SQLITE_OK : sqlite3_extended_errcode(db);
    }
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
        ret = GH_ENOTFOUND;
    } else if (rc == SQLITE_OK) {
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            ret = gh_user_sqlite_error(s, "recovery_set", rc);
    } else {
        ret = gh_user_sqlite_error(s, "recovery_set", rc);
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (ret != 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    gh_user_sqlite_note_write(s, ret);
    gh_user_sqlite_unlock(s);
    return ret;
}

int gh_user_sqlite_recovery_use(gh_user_store_t *b, uint64_t user_id,
                                const uint8_t hash[GH_RECOVERY_HASH_LEN], int64_t now_ms)
{
    if (user_id > INT64_MAX)
        return GH_ENOTFOUND;
    int64_t args[] = {(int64_t)user_id, now_ms};
    int changes = 0;
    int rc = write_ints(b, "recovery_use",
                        "UPDATE recovery_codes SET used_at = ?2 WHERE user_id = ?1 AND hash = ?3"
                        " AND used_at = 0",
                        args, 2, hash, GH_RECOVERY_HASH_LEN, &changes);
    return rc != 0 ? rc : changes ? 0 : GH_ENOTFOUND;
}

int gh_user_sqlite_recovery_state(gh_user_store_t *b, uint64_t user_id, size_t *left,
                                  int64_t *last_used_ms)
{
    *left = 0;
    *last_used_ms = 0;
    if (user_id > INT64_MAX)
        return 0;
    gh_user_sqlite_t *s = S(b);
    sqlite3 *db = gh_user_sqlite_lock(s);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    int rc = prep(db,
                  "SELECT count(*) FILTER (WHERE used_at = 0), coalesce(max(used_at), 0)"
                  " FROM recovery_codes WHERE user_id = ?1",
                  &st);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *left = (size_t)sqlite3_column_int64(st, 0);
        *last_used_ms = sqlite3_column_int64(st, 1);
    } else {
        ret = gh_user_sqlite_error(s, "recovery_state", rc);
    }
    sqlite3_finalize(st);
    gh_user_sqlite_unlock(s);
    return ret;
}
