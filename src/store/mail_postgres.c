/*
 * mail_postgres.c — the email tables (store/mail.h) in the PostgreSQL user store's database, for
 * any number of nodes sharing one outbox.
 *
 * The one design decision: a claim is one UPDATE of the oldest due row chosen FOR UPDATE SKIP
 * LOCKED, so nodes claiming at the same moment take different rows and never wait on each other;
 * with the lease (claimed_until) a row belongs to one node until it settles it or the lease runs
 * out. One connection, serialized by a mutex and re-made after a failure: the outbox's traffic is
 * a few statements per message, far below what one connection carries. Tokens are taken with
 * DELETE … RETURNING, which two confirms racing cannot both win.
 */
#include "store/mail.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mem/mem.h"

#define MAIL_SCHEMA_MIN 4 /* the user store's migration that made these tables */

typedef struct {
    gh_mail_store_t base;
    PGconn *pg;
    char *url;
    int timeout_ms;
    pthread_mutex_t lock;
} mail_pg_t;

static const char *const purposes[] = {"reset", "verify", "change"};

/* A live connection (lock held), re-made when the last one broke. */
static bool conn_ok(mail_pg_t *s)
{
    if (s->pg && PQstatus(s->pg) == CONNECTION_OK)
        return true;
    if (s->pg)
        PQfinish(s->pg);
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", (s->timeout_ms + 999) / 1000);
    const char *keys[] = {"dbname", "connect_timeout", NULL};
    const char *vals[] = {s->url, timeout, NULL};
    s->pg = PQconnectdbParams(keys, vals, 1);
    if (!s->pg || PQstatus(s->pg) != CONNECTION_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot connect to PostgreSQL for the mail tables",
               GH_LS("detail", s->pg ? PQerrorMessage(s->pg) : "no memory"));
        return false;
    }
    return true;
}

/* Runs one statement; *out the result when it returned rows (PQclear it). GH_ESTORE, GH_EEXISTS
 * (unique violation) or 0. */
static int q(mail_pg_t *s, const char *op, const char *sql, int n, const char *const *v,
             const int *lens, const int *fmts, PGresult **out)
{
    if (out)
        *out = NULL;
    if (!conn_ok(s))
        return GH_ESTORE;
    PGresult *r = PQexecParams(s->pg, sql, n, NULL, v, lens, fmts, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = r;
        else
            PQclear(r);
        return 0;
    }
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int rc = state && strcmp(state, "23505") == 0 ? GH_EEXISTS : GH_ESTORE;
    if (rc == GH_ESTORE)
        GH_LOG(GH_LOG_ERROR, "mail store error", GH_LS("op", op),
               GH_LS("detail", s->pg ? PQerrorMessage(s->pg) : ""));
    PQclear(r);
    return rc;
}

static void i64(char buf[24], int64_t v)
{
    snprintf(buf, 24, "%lld", (long long)v);
}

static int m_set_email(gh_mail_store_t *base, uint64_t user_id, const char *email, bool verified)
{
    mail_pg_t *s = (mail_pg_t *)base;
    char id[24];
    i64(id, (int64_t)user_id);
    const char *v[] = {id, email, verified ? "true" : "false"};
    PGresult *r;
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "set_email",
               "UPDATE gatehouse_users SET email = $2, email_verified = $3 WHERE id = $1 "
               "RETURNING id",
               3, v, NULL, NULL, &r);
    if (rc == 0) {
        rc = PQntuples(r) ? 0 : GH_ENOTFOUND;
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_get_email(gh_mail_store_t *base, uint64_t user_id,
                       char email[GH_MAILSTORE_ADDR_MAX + 1], bool *verified)
{
    mail_pg_t *s = (mail_pg_t *)base;
    char id[24];
    i64(id, (int64_t)user_id);
    const char *v[] = {id};
    PGresult *r;
    email[0] = '\0';
    *verified = false;
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "get_email",
               "SELECT coalesce(email, ''), email_verified FROM gatehouse_users WHERE id = $1", 1,
               v, NULL, NULL, &r);
    if (rc == 0) {
        if (PQntuples(r)) {
            snprintf(email, GH_MAILSTORE_ADDR_MAX + 1, "%s", PQgetvalue(r, 0, 0));
            *verified = PQgetvalue(r, 0, 1)[0] == 't';
        } else {
            rc = GH_ENOTFOUND;
        }
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_find(gh_mail_store_t *base, const char *email, uint64_t *user_id)
{
    mail_pg_t *s = (mail_pg_t *)base;
    const char *v[] = {email};
    PGresult *r;
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "find_by_email", "SELECT id FROM gatehouse_users WHERE lower(email) = lower($1)",
               1, v, NULL, NULL, &r);
    if (rc == 0) {
        if (PQntuples(r))
            *user_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        else
            rc = GH_ENOTFOUND;
        PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_issue(gh_mail_store_t *base, const uint8_t *hash, uint64_t user_id,
                   gh_mail_token_purpose_t purpose, const char *email, int64_t expires_ms,
                   const char *kind, const char *rcpt, const char *msg, size_t len, int64_t now_ms)
{
    mail_pg_t *s = (mail_pg_t *)base;
    char id[24], exp[24], now[24];
    i64(id, (int64_t)user_id);
    i64(exp, expires_ms);
    i64(now, now_ms);
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "issue", "BEGIN", 0, NULL, NULL, NULL, NULL);
    if (rc == 0 && hash) {
        const char *v[] = {(const char *)hash, id, purposes[purpose], email, exp};
        const int lens[] = {GH_MAILSTORE_HASH_LEN, 0, 0, 0, 0};
        const int fmts[] = {1, 0, 0, 0, 0};
        rc = q(s, "token_put",
               "INSERT INTO gatehouse_email_tokens (hash, user_id, purpose, email, expires_at) "
               "VALUES ($1, $2, $3, $4, $5)",
               5, v, lens, fmts, NULL);
    }
    if (rc == 0 && rcpt) {
        const char *v[] = {now, kind, rcpt, msg};
        const int lens[] = {0, 0, 0, (int)len};
        const int fmts[] = {0, 0, 0, 1};
        rc = q(s, "outbox_put",
               "INSERT INTO gatehouse_email_outbox (created_at, kind, rcpt, message, "
               "next_attempt_at) VALUES ($1, $2, $3, $4, $1)",
               4, v, lens, fmts, NULL);
    }
    if (rc == 0)
        rc = q(s, "issue_commit", "COMMIT", 0, NULL, NULL, NULL, NULL);
    else if (s->pg)
        PQclear(PQexec(s->pg, "ROLLBACK"));
    pthread_mutex_unlock(&s->lock);
    return rc == GH_EEXISTS ? GH_ESTORE : rc;
}

static int m_token(gh_mail_store_t *base, const uint8_t hash[GH_MAILSTORE_HASH_LEN],
                   gh_mail_token_purpose_t purpose, int64_t now_ms, bool spend, uint64_t *user_id,
                   char email[GH_MAILSTORE_ADDR_MAX + 1])
{
    mail_pg_t *s = (mail_pg_t *)base;
    char now[24];
    i64(now, now_ms);
    const char *v[] = {(const char *)hash, purposes[purpose], now};
    const int lens[] = {GH_MAILSTORE_HASH_LEN, 0, 0};
    const int fmts[] = {1, 0, 0};
    PGresult *r;
    email[0] = '\0';
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "token",
               spend ? "DELETE FROM gatehouse_email_tokens WHERE hash = $1 AND purpose = $2 AND "
                       "expires_at > $3 RETURNING user_id, coalesce(email, '')"
                     : "SELECT user_id, coalesce(email, '') FROM gatehouse_email_tokens WHERE "
                       "hash = $1 AND purpose = $2 AND expires_at > $3",
               3, v, lens, fmts, &r);
    if (rc == 0) {
        if (PQntuples(r)) {
            *user_id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
            snprintf(email, GH_MAILSTORE_ADDR_MAX + 1, "%s", PQgetvalue(r, 0, 1));
        } else {
            rc = GH_ENOTFOUND;
        }
        PQclear(r);
    }
    if (rc == 0 && spend && purpose == GH_TOKEN_RESET) {
        char id[24];
        i64(id, (int64_t)*user_id);
        const char *w[] = {id};
        GH_IGNORE(q(s, "token_spend",
                    "DELETE FROM gatehouse_email_tokens WHERE user_id = $1 AND purpose = 'reset'",
                    1, w, NULL, NULL, NULL));
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_claim(gh_mail_store_t *base, const char *node, int64_t now_ms, int64_t lease_ms,
                   gh_mail_row_t *out)
{
    mail_pg_t *s = (mail_pg_t *)base;
    char until[24], now[24];
    i64(until, now_ms + lease_ms);
    i64(now, now_ms);
    const char *v[] = {node, until, now};
    PGresult *r;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "claim",
               "UPDATE gatehouse_email_outbox SET claimed_by = $1, claimed_until = $2 WHERE id = "
               "(SELECT id FROM gatehouse_email_outbox WHERE state = 'queued' AND "
               "next_attempt_at <= $3 AND claimed_until <= $3 ORDER BY next_attempt_at, id "
               "LIMIT 1 FOR UPDATE SKIP LOCKED) "
               "RETURNING id, kind, rcpt, convert_from(message, 'UTF8'), attempts, created_at",
               3, v, NULL, NULL, &r);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        return rc;
    if (!PQntuples(r)) {
        PQclear(r);
        return GH_ENOTFOUND;
    }
    out->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(out->kind, sizeof out->kind, "%s", PQgetvalue(r, 0, 1));
    snprintf(out->rcpt, sizeof out->rcpt, "%s", PQgetvalue(r, 0, 2));
    int n = PQgetlength(r, 0, 3);
    out->message = gh_mem_alloc(GH_MEM_MAIL, (size_t)n + 1);
    if (out->message) {
        memcpy(out->message, PQgetvalue(r, 0, 3), (size_t)n);
        out->message[n] = '\0';
        out->len = (size_t)n;
    }
    out->attempts = atoi(PQgetvalue(r, 0, 4));
    out->created_at_ms = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
    PQclear(r);
    return out->message ? 0 : GH_ENOMEM;
}

static int m_settle(gh_mail_store_t *base, int64_t id, const char *node, gh_mail_outcome_t outcome,
                    int64_t next_ms, const char *error, int64_t now_ms)
{
    static const char *const states[] = {"sent", "queued", "failed"};
    mail_pg_t *s = (mail_pg_t *)base;
    char sid[24], next[24], now[24];
    i64(sid, id);
    i64(next, next_ms);
    i64(now, now_ms);
    const char *v[] = {sid, node, states[outcome], next, error && *error ? error : NULL, now};
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "settle",
               "UPDATE gatehouse_email_outbox SET state = $3, attempts = attempts + 1, "
               "next_attempt_at = $4, last_error = $5, claimed_by = NULL, claimed_until = 0, "
               "done_at = CASE WHEN $3 = 'queued' THEN NULL ELSE $6::bigint END "
               "WHERE id = $1 AND claimed_by = $2",
               6, v, NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int m_stats(gh_mail_store_t *base, gh_mail_stats_t *out)
{
    mail_pg_t *s = (mail_pg_t *)base;
    PGresult *r;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "stats",
               "SELECT count(*) FILTER (WHERE state = 'queued'), "
               "coalesce(min(created_at) FILTER (WHERE state = 'queued'), 0), "
               "count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'failed') "
               "FROM gatehouse_email_outbox",
               0, NULL, NULL, NULL, &r);
    pthread_mutex_unlock(&s->lock);
    if (rc != 0)
        return rc;
    out->depth = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    out->oldest_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    out->sent = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
    out->failed = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
    PQclear(r);
    return 0;
}

static int m_purge(gh_mail_store_t *base, int64_t now_ms, int64_t keep_before_ms)
{
    mail_pg_t *s = (mail_pg_t *)base;
    char now[24], keep[24];
    i64(now, now_ms);
    i64(keep, keep_before_ms);
    const char *v1[] = {now}, *v2[] = {keep};
    pthread_mutex_lock(&s->lock);
    int rc = q(s, "purge", "DELETE FROM gatehouse_email_tokens WHERE expires_at <= $1", 1, v1, NULL,
               NULL, NULL);
    if (rc == 0)
        rc = q(s, "purge",
               "DELETE FROM gatehouse_email_outbox WHERE state <> 'queued' AND done_at < $1", 1, v2,
               NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void m_close(gh_mail_store_t **base)
{
    mail_pg_t *s = (mail_pg_t *)*base;
    if (s->pg)
        PQfinish(s->pg);
    gh_mem_free_secret(GH_MEM_MAIL, s->url);
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

int gh_mail_postgres_open(const char *url, int timeout_ms, gh_mail_store_t **out)
{
    *out = NULL;
    if (!url || !*url)
        return GH_EINVAL;
    mail_pg_t *s = gh_mem_calloc(GH_MEM_MAIL, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &ops;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    pthread_mutex_init(&s->lock, NULL);
    s->url = gh_mem_strdup(GH_MEM_MAIL, url);
    PGresult *r = NULL;
    int rc = s->url ? q(s, "open", "SELECT coalesce(max(version), 0) FROM gatehouse_schema", 0,
                        NULL, NULL, NULL, &r)
                    : GH_ENOMEM;
    if (rc == 0) {
        int version = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (version < MAIL_SCHEMA_MIN) {
            GH_LOG(GH_LOG_ERROR, "the user database has no mail tables",
                   GH_LI("schema_version", version));
            rc = GH_ESTORE;
        }
    }
    if (rc != 0) {
        gh_mail_store_t *b = &s->base;
        m_close(&b);
        return rc;
    }
    *out = &s->base;
    return 0;
}
