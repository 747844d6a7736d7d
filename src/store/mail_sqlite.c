/*
 * mail_sqlite.c — the email tables (store/mail.h) in <data-dir>/users.db.
 *
 * The one design decision: a connection of its own to users.db (WAL: readers and this writer do
 * not block each other's reads), with its statements prepared once and one mutex, like the user
 * store's. A token and the message that carries it are written in one transaction
 * (BEGIN IMMEDIATE … COMMIT), so a crash leaves both or neither; a claim is one UPDATE … RETURNING
 * of the oldest due row whose lease has run out.
 */
#include "store/mail.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "mem/mem.h"
#include "store/sqlite_schema.h"

#define BUSY_TIMEOUT_MS 5000
#define MAIL_SCHEMA_MIN 4 /* the user store's migration that made these tables */

enum {
    ST_SET_EMAIL,
    ST_GET_EMAIL,
    ST_FIND,
    ST_TOKEN_PUT,
    ST_OUTBOX_PUT,
    ST_TOKEN_GET,
    ST_TOKEN_DEL,
    ST_TOKEN_DEL_RESETS,
    ST_CLAIM,
    ST_SETTLE,
    ST_STATS,
    ST_PURGE_TOKENS,
    ST_PURGE_OUTBOX,
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_SET_EMAIL] = "UPDATE users SET email = ?2, email_verified = ?3 WHERE id = ?1",
    [ST_GET_EMAIL] = "SELECT coalesce(email, ''), email_verified FROM users WHERE id = ?1",
    [ST_FIND] = "SELECT id FROM users WHERE email = ?1",
    [ST_TOKEN_PUT] = "INSERT INTO email_tokens (hash, user_id, purpose, email, expires_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_OUTBOX_PUT] = "INSERT INTO email_outbox (created_at, kind, rcpt, message, next_attempt_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?1)",
    [ST_TOKEN_GET] = "SELECT user_id, coalesce(email, '') FROM email_tokens"
                     " WHERE hash = ?1 AND purpose = ?2 AND expires_at > ?3",
    [ST_TOKEN_DEL] = "DELETE FROM email_tokens WHERE hash = ?1",
    [ST_TOKEN_DEL_RESETS] = "DELETE FROM email_tokens WHERE user_id = ?1 AND purpose = 'reset'",
    [ST_CLAIM] = "UPDATE email_outbox SET claimed_by = ?1, claimed_until = ?2"
                 " WHERE id = (SELECT id FROM email_outbox WHERE state = 'queued'"
                 " AND next_attempt_at <= ?3 AND claimed_until <= ?3"
                 " ORDER BY next_attempt_at, id LIMIT 1)"
                 " RETURNING id, kind, rcpt, message, attempts, created_at",
    [ST_SETTLE] = "UPDATE email_outbox SET state = ?3, attempts = attempts + 1,"
                  " next_attempt_at = ?4, last_error = ?5, claimed_by = NULL, claimed_until = 0,"
                  " done_at = CASE WHEN ?3 = 'queued' THEN NULL ELSE ?6 END"
                  " WHERE id = ?1 AND claimed_by = ?2",
    [ST_STATS] = "SELECT (SELECT count(*) FROM email_outbox WHERE state = 'queued'),"
                 " (SELECT coalesce(min(created_at), 0) FROM email_outbox WHERE state = 'queued'),"
                 " (SELECT count(*) FROM email_outbox WHERE state = 'sent'),"
                 " (SELECT count(*) FROM email_outbox WHERE state = 'failed')",
    [ST_PURGE_TOKENS] = "DELETE FROM email_tokens WHERE expires_at <= ?1",
    [ST_PURGE_OUTBOX] = "DELETE FROM email_outbox WHERE state <> 'queued' AND done_at < ?1",
};

static const char *const purposes[] = {"reset", "verify", "change"};

typedef struct {
    gh_mail_store_t base;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    pthread_mutex_t lock;
} mail_sqlite_t;

static int fail(mail_sqlite_t *s, const char *op)
{
    GH_LOG(GH_LOG_ERROR, "mail store error", GH_LS("op", op),
           GH_LI("sqlite_rc", sqlite3_errcode(s->db)), GH_LS("detail", sqlite3_errmsg(s->db)));
    return GH_ESTORE;
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void copy_text(char *out, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static int m_set_email(gh_mail_store_t *base, uint64_t user_id, const char *email, bool verified)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_SET_EMAIL];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    if (email)
        sqlite3_bind_text(st, 2, email, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 2);
    sqlite3_bind_int(st, 3, verified ? 1 : 0);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_CONSTRAINT)
        ret = GH_EEXISTS;
    else if (rc != SQLITE_DONE)
        ret = fail(s, "set_email");
    else if (sqlite3_changes(s->db) == 0)
        ret = GH_ENOTFOUND;
    done(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_get_email(gh_mail_store_t *base, uint64_t user_id,
                       char email[GH_MAILSTORE_ADDR_MAX + 1], bool *verified)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_GET_EMAIL];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)user_id);
    int rc = sqlite3_step(st), ret = 0;
    email[0] = '\0';
    *verified = false;
    if (rc == SQLITE_ROW) {
        copy_text(email, GH_MAILSTORE_ADDR_MAX + 1, st, 0);
        *verified = sqlite3_column_int(st, 1) != 0;
    } else if (rc == SQLITE_DONE) {
        ret = GH_ENOTFOUND;
    } else {
        ret = fail(s, "get_email");
    }
    done(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_find(gh_mail_store_t *base, const char *email, uint64_t *user_id)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_FIND];
    sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW)
        *user_id = (uint64_t)sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        ret = GH_ENOTFOUND;
    else
        ret = fail(s, "find_by_email");
    done(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_issue(gh_mail_store_t *base, const uint8_t *hash, uint64_t user_id,
                   gh_mail_token_purpose_t purpose, const char *email, int64_t expires_ms,
                   const char *kind, const char *rcpt, const char *msg, size_t len, int64_t now_ms)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    int ret = 0;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = fail(s, "issue");
        goto out;
    }
    if (hash) {
        sqlite3_stmt *st = s->st[ST_TOKEN_PUT];
        sqlite3_bind_blob(st, 1, hash, GH_MAILSTORE_HASH_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)user_id);
        sqlite3_bind_text(st, 3, purposes[purpose], -1, SQLITE_STATIC);
        if (email)
            sqlite3_bind_text(st, 4, email, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, expires_ms);
        int rc = sqlite3_step(st);
        done(st);
        if (rc != SQLITE_DONE) {
            ret = fail(s, "token_put");
            goto rollback;
        }
    }
    if (rcpt) {
        sqlite3_stmt *st = s->st[ST_OUTBOX_PUT];
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, rcpt, -1, SQLITE_STATIC);
        sqlite3_bind_blob64(st, 4, msg, len, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        done(st);
        if (rc != SQLITE_DONE) {
            ret = fail(s, "outbox_put");
            goto rollback;
        }
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        goto out;
    ret = fail(s, "issue_commit");
rollback:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_token(gh_mail_store_t *base, const uint8_t hash[GH_MAILSTORE_HASH_LEN],
                   gh_mail_token_purpose_t purpose, int64_t now_ms, bool spend, uint64_t *user_id,
                   char email[GH_MAILSTORE_ADDR_MAX + 1])
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    int ret = 0;
    email[0] = '\0';
    pthread_mutex_lock(&s->lock);
    if (spend && sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        ret = fail(s, "token");
        goto out;
    }
    sqlite3_stmt *st = s->st[ST_TOKEN_GET];
    sqlite3_bind_blob(st, 1, hash, GH_MAILSTORE_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, purposes[purpose], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *user_id = (uint64_t)sqlite3_column_int64(st, 0);
        copy_text(email, GH_MAILSTORE_ADDR_MAX + 1, st, 1);
    } else {
        ret = rc == SQLITE_DONE ? GH_ENOTFOUND : fail(s, "token_get");
    }
    done(st);
    if (!spend)
        goto out;
    if (ret == 0) {
        st = s->st[ST_TOKEN_DEL];
        sqlite3_bind_blob(st, 1, hash, GH_MAILSTORE_HASH_LEN, SQLITE_STATIC);
        rc = sqlite3_step(st);
        done(st);
        if (rc == SQLITE_DONE && purpose == GH_TOKEN_RESET) {
            st = s->st[ST_TOKEN_DEL_RESETS];
            sqlite3_bind_int64(st, 1, (sqlite3_int64)*user_id);
            rc = sqlite3_step(st);
            done(st);
        }
        if (rc != SQLITE_DONE)
            ret = fail(s, "token_spend");
    }
    if (ret == 0 && sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        goto out;
    if (ret == 0)
        ret = fail(s, "token_commit");
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&s->lock);
    return ret;
}

void gh_mailstore_row_free(gh_mail_row_t *row)
{
    if (row && row->message) {
        gh_mem_free_secret(GH_MEM_MAIL, row->message);
        row->message = NULL;
    }
}

static int m_claim(gh_mail_store_t *base, const char *node, int64_t now_ms, int64_t lease_ms,
                   gh_mail_row_t *out)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_CLAIM];
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms + lease_ms);
    sqlite3_bind_int64(st, 3, now_ms);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        copy_text(out->kind, sizeof out->kind, st, 1);
        copy_text(out->rcpt, sizeof out->rcpt, st, 2);
        int n = sqlite3_column_bytes(st, 3);
        const void *p = sqlite3_column_blob(st, 3);
        out->message = gh_mem_alloc(GH_MEM_MAIL, (size_t)n + 1);
        if (!out->message) {
            ret = GH_ENOMEM;
        } else {
            if (n > 0)
                memcpy(out->message, p, (size_t)n);
            out->message[n] = '\0';
            out->len = (size_t)n;
        }
        out->attempts = sqlite3_column_int(st, 4);
        out->created_at_ms = sqlite3_column_int64(st, 5);
        /* RETURNING: the UPDATE is done when the statement has run to its end */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            ;
        if (rc != SQLITE_DONE)
            ret = fail(s, "claim");
    } else if (rc == SQLITE_DONE) {
        ret = GH_ENOTFOUND;
    } else {
        ret = fail(s, "claim");
    }
    done(st);
    pthread_mutex_unlock(&s->lock);
    if (ret != 0)
        gh_mailstore_row_free(out);
    return ret;
}

static int m_settle(gh_mail_store_t *base, int64_t id, const char *node, gh_mail_outcome_t outcome,
                    int64_t next_ms, const char *error, int64_t now_ms)
{
    static const char *const states[] = {"sent", "queued", "failed"};
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_SETTLE];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, states[outcome], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, next_ms);
    if (error && *error)
        sqlite3_bind_text(st, 5, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now_ms);
    int rc = sqlite3_step(st), ret = rc == SQLITE_DONE ? 0 : fail(s, "settle");
    done(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_stats(gh_mail_store_t *base, gh_mail_stats_t *out)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_STATS];
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW) {
        out->depth = (uint64_t)sqlite3_column_int64(st, 0);
        out->oldest_ms = sqlite3_column_int64(st, 1);
        out->sent = (uint64_t)sqlite3_column_int64(st, 2);
        out->failed = (uint64_t)sqlite3_column_int64(st, 3);
    } else {
        ret = fail(s, "stats");
    }
    done(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int m_purge(gh_mail_store_t *base, int64_t now_ms, int64_t keep_before_ms)
{
    mail_sqlite_t *s = (mail_sqlite_t *)base;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->st[ST_PURGE_TOKENS];
    sqlite3_bind_int64(st, 1, now_ms);
    int rc = sqlite3_step(st);
    done(st);
    if (rc == SQLITE_DONE) {
        st = s->st[ST_PURGE_OUTBOX];
        sqlite3_bind_int64(st, 1, keep_before_ms);
        rc = sqlite3_step(st);
        done(st);
    }
    int ret = rc == SQLITE_DONE ? 0 : fail(s, "purge");
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static void m_close(gh_mail_store_t **base)
{
    mail_sqlite_t *s = (mail_sqlite_t *)*base;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    gh_mem_free(GH_MEM_MAIL, s);
    *base = NULL;
}

static const gh_mail_store_ops_t ops = {
    .set_email = m_set_email,
    .get_email = m_get_email,
    .find_by_email = m_find,
    .issue = m_issue,
    .token = m_token,
    .claim = m_claim,
    .settle = m_settle,
    .stats = m_stats,
    .purge = m_purge,
    .close = m_close,
};

int gh_mail_sqlite_open(const char *data_dir, gh_mail_store_t **out)
{
    *out = NULL;
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/users.db", data_dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return GH_EINVAL;
    mail_sqlite_t *s = gh_mem_calloc(GH_MEM_MAIL, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &ops;
    pthread_mutex_init(&s->lock, NULL);
    int version = 0;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS) != SQLITE_OK ||
        gh_sqlite_read_int(s->db, "PRAGMA user_version", &version) != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot open the mail tables", GH_LS("path", path),
               GH_LS("detail", s->db ? sqlite3_errmsg(s->db) : "no memory"));
        goto fail;
    }
    if (version < MAIL_SCHEMA_MIN) {
        GH_LOG(GH_LOG_ERROR, "the user database has no mail tables", GH_LS("path", path),
               GH_LI("schema_version", version));
        goto fail;
    }
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                               NULL) != SQLITE_OK) {
            GH_LOG(GH_LOG_ERROR, "cannot prepare a mail statement", GH_LI("statement", i),
                   GH_LS("detail", sqlite3_errmsg(s->db)));
            goto fail;
        }
    *out = &s->base;
    return 0;
fail:
    m_close((gh_mail_store_t **)&s);
    return GH_ESTORE;
}
