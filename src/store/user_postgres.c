/*
 * user_postgres.c — the user store for several nodes: one PostgreSQL table, shared.
 *
 * The one design decision a reader must know: the schema is migrated by whichever node gets
 * there first, inside ONE transaction that starts by taking a transaction-scoped advisory lock
 * (pg_advisory_xact_lock). A node that starts at the same moment waits on that lock, then finds
 * the versions already recorded in gatehouse_schema and applies nothing. DDL is transactional
 * in PostgreSQL, so a failed migration leaves the previous version whole; a database migrated by
 * a newer Gatehouse is refused rather than half understood (as the SQLite store does).
 *
 * Connections: a fixed pool; every statement is prepared once per connection right after it
 * connects, and every call runs one prepared statement with text parameters — no SQL is ever
 * built from input. When a call finds its connection broken, the pool's generation is bumped so
 * every connection made before the failure is re-made before its next use, and a backoff (50 ms
 * doubling to 2 s) makes calls fail at once (GH_ESTORE) instead of each waiting on a dead server.
 * Reads that failed on a connection broken before they ran are retried once on a fresh one;
 * writes are not (whether they happened is unknown), the caller gets GH_ESTORE.
 *
 * Usernames are unique by lower(username) (a unique index), kept as first spelled; lookups by
 * name go through that index. Ids come from an identity column, so they are never reused.
 *
 * Memory: the store struct and the pool are charged to `users`; libpq allocates its connection
 * buffers and results with malloc (it has no allocator hooks), bounded per connection, and every
 * result is cleared before the call returns.
 */
#include "store/user.h"

#include <assert.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/pool.h"
#include "store/oidc_store.h"
#include "store/probe.h"
#include "store/user_postgres.h"

#define DEFAULT_POOL 4
#define DEFAULT_TIMEOUT_MS 5000
#define MIGRATION_LOCK_KEY "7451328801944163328" /* any constant; the same in every node */

enum {
    ST_CREATE,
    ST_BY_NAME,
    ST_BY_ID,
    ST_SET_PASSWORD,
    ST_DELETE,
    ST_LIST,
    ST_PING,
    ST_SET_FLAGS,
    ST_SEARCH,
    ST_AUDIT_APPEND,
    ST_AUDIT_READ,
    ST_AUDIT_PRUNE,
    /* second factors (the block "factors" below) */
    ST_F_ADD,
    ST_F_LIST,
    ST_F_GET,
    ST_F_BY_CRED,
    ST_F_RENAME,
    ST_F_CONFIRM,
    ST_F_USE,
    ST_F_DEL,
    ST_F_DEL_ALL,
    ST_R_SET,
    ST_R_USE,
    ST_R_STATE,
    ST__COUNT
};

#define F_COLS                                                                                     \
    "id, user_id, type, name, created_at, last_used_at, encode(secret, 'hex'),"                    \
    " coalesce(encode(credential_id, 'hex'), ''), confirmed, counter"

static const struct {
    const char *name;
    const char *sql;
    int nparams;
} statements[ST__COUNT] = {
    [ST_CREATE] = {"gh_user_create",
                   "INSERT INTO gatehouse_users (username, password_hash, created_at) "
                   "VALUES ($1, $2, $3) RETURNING id",
                   3},
    [ST_BY_NAME] = {"gh_user_by_name",
                    "SELECT id, username, password_hash, created_at, admin, disabled "
                    "FROM gatehouse_users WHERE lower(username) = lower($1)",
                    1},
    [ST_BY_ID] = {"gh_user_by_id",
                  "SELECT id, username, password_hash, created_at, admin, disabled "
                  "FROM gatehouse_users WHERE id = $1",
                  1},
    [ST_SET_PASSWORD] = {"gh_user_set_password",
                         "UPDATE gatehouse_users SET password_hash = $2 WHERE id = $1", 2},
    [ST_DELETE] = {"gh_user_delete", "DELETE FROM gatehouse_users WHERE id = $1", 1},
    [ST_LIST] = {"gh_user_list",
                 "SELECT id, username, '', created_at, admin, disabled FROM gatehouse_users "
                 "WHERE id > $1 ORDER BY id LIMIT $2",
                 2},
    /* Reads the table (not just "SELECT 1"), so /readyz notices a missing grant or table. */
    [ST_PING] = {"gh_user_ping", "SELECT 1 FROM gatehouse_users LIMIT 1", 0},
    [ST_SET_FLAGS] = {"gh_user_set_flags",
                      "UPDATE gatehouse_users SET"
                      " admin = CASE WHEN $2::int < 0 THEN admin ELSE $2::int <> 0 END,"
                      " disabled = CASE WHEN $3::int < 0 THEN disabled ELSE $3::int <> 0 END"
                      " WHERE id = $1",
                      3},
    /* A literal prefix (no LIKE: '%' and '_' are plain characters) of the name or the email
     * address, any case. */
    [ST_SEARCH] = {"gh_user_search",
                   "SELECT id, username, '', created_at, admin, disabled FROM gatehouse_users"
                   " WHERE (left(lower(username), length($1)) = lower($1)"
                   " OR left(lower(email), length($1)) = lower($1)) AND id > $2"
                   " ORDER BY id LIMIT $3",
                   3},
    [ST_AUDIT_APPEND] = {"gh_audit_append",
                         "INSERT INTO gatehouse_audit_events (time, type, actor, user_id,"
                         " session_id, ip, user_agent, node, outcome, detail)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                         10},
    [ST_AUDIT_READ] = {"gh_audit_read",
                       "SELECT id, time, type, actor, user_id, session_id, ip, user_agent, node,"
                       " outcome, detail FROM gatehouse_audit_events WHERE"
                       " ($1::bigint = 0 OR user_id = $1::bigint)"
                       " AND ($2::text = '' OR type = $2::text OR ($2::text = 'admin' AND"
                       " type >= 'admin.' AND type < 'admin/'))"
                       " AND ($3::bigint = 0 OR time >= $3::bigint)"
                       " AND ($4::bigint = 0 OR time < $4::bigint)"
                       " AND ($5::bigint = 0 OR id < $5::bigint)"
                       " ORDER BY id DESC LIMIT $6",
                       6},
    [ST_AUDIT_PRUNE] = {"gh_audit_prune",
                        "DELETE FROM gatehouse_audit_events WHERE id IN (SELECT id FROM"
                        " gatehouse_audit_events WHERE time < $1 ORDER BY id LIMIT $2)",
                        2},
    [ST_F_ADD] = {"gh_factor_add",
                  "INSERT INTO gatehouse_factors (user_id, type, name, created_at, secret,"
                  " credential_id, confirmed, counter) VALUES ($1, $2, $3, $4,"
                  " decode($5, 'hex'), nullif(decode($6, 'hex'), ''::bytea), $7, $8) RETURNING id",
                  8},
    [ST_F_LIST] = {"gh_factor_list",
                   "SELECT " F_COLS " FROM gatehouse_factors WHERE user_id = $1 ORDER BY id", 1},
    [ST_F_GET] = {"gh_factor_get",
                  "SELECT " F_COLS " FROM gatehouse_factors WHERE user_id = $1 AND id = $2", 2},
    [ST_F_BY_CRED] = {"gh_factor_by_credential",
                      "SELECT " F_COLS " FROM gatehouse_factors "
                      "WHERE credential_id = decode($1, 'hex')",
                      1},
    [ST_F_RENAME] = {"gh_factor_rename",
                     "UPDATE gatehouse_factors SET name = $3 WHERE user_id = $1 AND id = $2", 3},
    [ST_F_CONFIRM] =
        {"gh_factor_confirm",
         "UPDATE gatehouse_factors SET confirmed = true WHERE user_id = $1 AND id = $2", 2},
    /* A compare-and-set: the counter only moves forward (user_factors_sqlite.c says why). */
    [ST_F_USE] = {"gh_factor_use",
                  "UPDATE gatehouse_factors SET counter = $3, last_used_at = $4 WHERE user_id = $1"
                  " AND id = $2 AND (counter < $3 OR (counter = 0 AND $3 = 0))",
                  4},
    [ST_F_DEL] = {"gh_factor_del", "DELETE FROM gatehouse_factors WHERE user_id = $1 AND id = $2",
                  2},
    [ST_F_DEL_ALL] = {"gh_factor_del_all",
                      "WITH r AS (DELETE FROM gatehouse_recovery_codes WHERE user_id = $1)"
                      " DELETE FROM gatehouse_factors WHERE user_id = $1",
                      1},
    /* One statement, so the old codes die in the same transaction the new ones are born in. */
    [ST_R_SET] = {"gh_recovery_set",
                  "WITH d AS (DELETE FROM gatehouse_recovery_codes WHERE user_id = $1)"
                  " INSERT INTO gatehouse_recovery_codes (user_id, hash, created_at)"
                  " SELECT $1, decode(h, 'hex'), $3 FROM unnest(string_to_array($2, ',')) AS h"
                  " WHERE h <> ''",
                  3},
    [ST_R_USE] = {"gh_recovery_use",
                  "UPDATE gatehouse_recovery_codes SET used_at = $2 WHERE user_id = $1 AND"
                  " hash = decode($3, 'hex') AND used_at = 0",
                  3},
    [ST_R_STATE] = {"gh_recovery_state",
                    "SELECT count(*) FILTER (WHERE used_at = 0), coalesce(max(used_at), 0)"
                    " FROM gatehouse_recovery_codes WHERE user_id = $1",
                    1},
};

/* migrations[i] brings the schema from version i to i + 1. Append; never edit an entry, a
 * database in the field may have run it already. */
static const char *const migrations[] = {
    "CREATE TABLE gatehouse_users ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " username text NOT NULL,"
    " password_hash text NOT NULL,"
    " created_at bigint NOT NULL);"
    "CREATE UNIQUE INDEX gatehouse_users_lower_username ON gatehouse_users (lower(username));",
    /* 2: roles, and the append-only audit trail (a rule makes UPDATE a no-op error). */
    "ALTER TABLE gatehouse_users ADD COLUMN admin boolean NOT NULL DEFAULT false;"
    "ALTER TABLE gatehouse_users ADD COLUMN disabled boolean NOT NULL DEFAULT false;"
    "CREATE TABLE gatehouse_audit_events ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " time bigint NOT NULL, type text NOT NULL, actor text NOT NULL, user_id bigint NOT NULL,"
    " session_id text NOT NULL, ip text NOT NULL, user_agent text NOT NULL, node text NOT NULL,"
    " outcome text NOT NULL, detail text NOT NULL);"
    "CREATE INDEX gatehouse_audit_events_user ON gatehouse_audit_events (user_id, id);"
    "CREATE INDEX gatehouse_audit_events_time ON gatehouse_audit_events (time);"
    "CREATE FUNCTION gatehouse_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$BEGIN RAISE EXCEPTION 'gatehouse_audit_events is append-only'; END$$;"
    "CREATE TRIGGER gatehouse_audit_events_append_only BEFORE UPDATE ON gatehouse_audit_events"
    " FOR EACH ROW EXECUTE FUNCTION gatehouse_audit_append_only();",
    /* 3: second factors and recovery codes */
    "CREATE TABLE gatehouse_factors ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " user_id bigint NOT NULL REFERENCES gatehouse_users(id) ON DELETE CASCADE,"
    " type text NOT NULL CHECK (type IN ('totp', 'webauthn')),"
    " name text NOT NULL,"
    " created_at bigint NOT NULL,"
    " last_used_at bigint NOT NULL DEFAULT 0,"
    " secret bytea NOT NULL,"
    " credential_id bytea UNIQUE,"
    " confirmed boolean NOT NULL DEFAULT false,"
    " counter bigint NOT NULL DEFAULT 0);"
    "CREATE INDEX gatehouse_factors_user ON gatehouse_factors (user_id);"
    "CREATE TABLE gatehouse_recovery_codes ("
    " user_id bigint NOT NULL REFERENCES gatehouse_users(id) ON DELETE CASCADE,"
    " hash bytea NOT NULL,"
    " created_at bigint NOT NULL,"
    " used_at bigint NOT NULL DEFAULT 0,"
    " PRIMARY KEY (user_id, hash));",
    /* 4: email (store/mail.h): the address and its verified flag on the user, single-use link
     * tokens (only their hashes), and the durable outbox with its lease (claimed_by/until). */
    "ALTER TABLE gatehouse_users ADD COLUMN email text,"
    " ADD COLUMN email_verified boolean NOT NULL DEFAULT false;"
    "CREATE UNIQUE INDEX gatehouse_users_lower_email ON gatehouse_users (lower(email));"
    "CREATE TABLE gatehouse_email_tokens ("
    " hash bytea PRIMARY KEY, user_id bigint NOT NULL, purpose text NOT NULL, email text,"
    " expires_at bigint NOT NULL);"
    "CREATE INDEX gatehouse_email_tokens_expiry ON gatehouse_email_tokens (expires_at);"
    "CREATE TABLE gatehouse_email_outbox ("
    " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, created_at bigint NOT NULL,"
    " kind text NOT NULL, rcpt text NOT NULL, message bytea NOT NULL,"
    " attempts integer NOT NULL DEFAULT 0, next_attempt_at bigint NOT NULL, claimed_by text,"
    " claimed_until bigint NOT NULL DEFAULT 0, state text NOT NULL DEFAULT 'queued',"
    " done_at bigint, last_error text);"
    "CREATE INDEX gatehouse_email_outbox_due ON gatehouse_email_outbox (state, next_attempt_at);",
    gh_oidc_postgres_migration, /* 5: OpenID Connect clients and signing keys (oidc_postgres.c) */
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

typedef gh_user_pg_t pg_store_t; /* store/user_postgres.h */

/* ---- connections ---- */

/* Server notices (e.g. "relation already exists, skipping") would go to stderr by default. */
static void notice_to_log(void *arg, const char *message)
{
    (void)arg;
    GH_LOG(GH_LOG_DEBUG, "user store notice", GH_LS("detail", message));
}

/* Connects with our defaults under the operator's URL; NULL when it cannot (logged at debug:
 * the caller decides how loud a failure is). */
static PGconn *connect_bare(pg_store_t *s)
{
    char connect_timeout[16], tcp_timeout[16], options[96];
    /* libpq's connect_timeout is in whole seconds and takes 1 as 2 */
    snprintf(connect_timeout, sizeof connect_timeout, "%d", (s->timeout_ms + 999) / 1000);
    snprintf(tcp_timeout, sizeof tcp_timeout, "%d", s->timeout_ms);
    snprintf(options, sizeof options, "-c statement_timeout=%d", s->timeout_ms);
    /* Later keywords win: the URL comes last, so an operator's settings override ours. */
    const char *keys[] = {"connect_timeout",  "tcp_user_timeout", "keepalives", "options",
                          "application_name", "client_encoding",  "dbname",     NULL};
    const char *values[] = {connect_timeout, tcp_timeout, "1",    options,
                            "gatehouse",     "UTF8",      s->url, NULL};
    PGconn *pg = PQconnectdbParams(keys, values, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        GH_LOG(GH_LOG_DEBUG, "user store connect failed",
               GH_LS("detail", pg ? PQerrorMessage(pg) : "out of memory"));
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, notice_to_log, NULL);
    return pg;
}

/* A pool connection: connected, with every statement prepared. */
static int connect_one(pg_store_t *s, PGconn **out)
{
    int64_t t0 = gh_clock_mono_ns();
    PGconn *pg = connect_bare(s);
    int ret = GH_ESTORE;
    if (!pg)
        goto out;
    for (int i = 0; i < ST__COUNT; i++) {
        PGresult *r =
            PQprepare(pg, statements[i].name, statements[i].sql, statements[i].nparams, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            GH_LOG(GH_LOG_ERROR, "cannot prepare a user store statement",
                   GH_LS("statement", statements[i].name), GH_LS("detail", PQerrorMessage(pg)));
        PQclear(r);
        if (!ok)
            goto out;
    }
    ret = 0;
out:
    gh_store_observe(&s->probe, GH_STORE_POSTGRES, GH_STORE_OP_CONNECT, gh_clock_mono_ns() - t0,
                     ret != 0);
    if (ret != 0 && pg) {
        PQfinish(pg);
        pg = NULL;
    }
    *out = pg;
    return ret;
}

/* The pool's callbacks (store/pool.h). */
static int pool_connect(void *ctx, void **conn)
{
    PGconn *pg = NULL;
    int rc = connect_one(ctx, &pg);
    *conn = pg;
    return rc;
}

static void pool_disconnect(void *ctx, void *conn)
{
    (void)ctx;
    PQfinish(conn);
}

/* The outcome of one statement, mapped. */
typedef enum { R_OK, R_UNIQUE, R_BAD_DATA, R_FAILED, R_BROKEN } outcome_t;

/*
 * Runs prepared statement st with text parameters. On R_OK *res holds the result (PQclear it).
 * R_UNIQUE: a unique index refused the row. R_BAD_DATA: PostgreSQL refused a value (class 22,
 * e.g. bytes that are not UTF-8). R_FAILED: any other error (logged). R_BROKEN: the connection
 * broke (or PostgreSQL is known down); nothing can be said about whether the statement ran.
 * `retry_read`: a read whose connection broke is retried once on a fresh connection.
 */
static outcome_t run(pg_store_t *s, int st, gh_store_op_t op, const char *const *params,
                     bool retry_read, PGresult **res)
{
    *res = NULL;
    for (int attempt = 0;; attempt++) {
        unsigned slot;
        void *conn;
        int64_t t0 = gh_clock_mono_ns();
        if (gh_store_pool_acquire(s->pool, &slot, &conn) != 0) {
            gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, true);
            return R_BROKEN;
        }
        PGconn *pg = conn;
        PGresult *r =
            PQexecPrepared(pg, statements[st].name, statements[st].nparams, params, NULL, NULL, 0);
        ExecStatusType status = PQresultStatus(r);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
            gh_store_pool_release(s->pool, slot, false);
            gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, false);
            *res = r;
            return R_OK;
        }
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        /* A standby after a failover (25006 read_only_sql_transaction) or a server shutting
         * down (class 57): this connection leads nowhere useful any more. */
        bool moved = state && (strcmp(state, "25006") == 0 || strncmp(state, "57", 2) == 0);
        if (PQstatus(pg) == CONNECTION_BAD || moved) {
            GH_LOG(GH_LOG_WARN, "user store connection lost", GH_LS("detail", PQerrorMessage(pg)));
            PQclear(r);
            gh_store_pool_release(s->pool, slot, true);
            gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, true);
            if (retry_read && attempt == 0)
                continue;
            return R_BROKEN;
        }
        outcome_t o = R_FAILED;
        if (state && strcmp(state, "23505") == 0)
            o = R_UNIQUE;
        else if (state && strncmp(state, "22", 2) == 0)
            o = R_BAD_DATA;
        else
            GH_LOG(GH_LOG_ERROR, "user store error", GH_LS("statement", statements[st].name),
                   GH_LS("sqlstate", state ? state : "?"), GH_LS("detail", PQerrorMessage(pg)));
        PQclear(r);
        gh_store_pool_release(s->pool, slot, false);
        gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, o == R_FAILED);
        return o;
    }
}

/* ---- operations ---- */

static bool hash_fits(const char *hash)
{
    return hash && strnlen(hash, GH_PWHASH_MAX) < GH_PWHASH_MAX;
}

static int parse_row(PGresult *r, int row, gh_user_t *out)
{
    char *end;
    const char *id = PQgetvalue(r, row, 0), *created = PQgetvalue(r, row, 3);
    memset(out, 0, sizeof *out);
    out->id = strtoull(id, &end, 10);
    if (*id == '\0' || *end != '\0')
        return GH_ESTORE;
    snprintf(out->username, sizeof out->username, "%s", PQgetvalue(r, row, 1));
    snprintf(out->password_hash, sizeof out->password_hash, "%s", PQgetvalue(r, row, 2));
    out->created_at_ms = strtoll(created, &end, 10);
    out->admin = strcmp(PQgetvalue(r, row, 4), "t") == 0;
    out->disabled = strcmp(PQgetvalue(r, row, 5), "t") == 0;
    return *created && *end == '\0' ? 0 : GH_ESTORE;
}

/* A read of at most one row; GH_ENOTFOUND when there is none. */
static int fetch_one(pg_store_t *s, int st, const char *const *params, gh_user_t *out)
{
    PGresult *r;
    outcome_t o = run(s, st, GH_STORE_OP_GET, params, true, &r);
    if (o == R_BAD_DATA)
        return GH_ENOTFOUND; /* such a value can never have been stored */
    if (o != R_OK)
        return GH_ESTORE;
    int ret = PQntuples(r) == 0 ? GH_ENOTFOUND : parse_row(r, 0, out);
    PQclear(r);
    return ret;
}

/* A write of at most one row; GH_ENOTFOUND when it touched none. */
static int change_one(pg_store_t *s, int st, gh_store_op_t op, const char *const *params)
{
    PGresult *r;
    outcome_t o = run(s, st, op, params, false, &r);
    if (o != R_OK)
        return GH_ESTORE;
    int ret = strcmp(PQcmdTuples(r), "0") == 0 ? GH_ENOTFOUND : 0;
    PQclear(r);
    return ret;
}

static int p_create(gh_user_store_t *base, const char *username, const char *hash, int64_t now,
                    gh_user_t *out)
{
    pg_store_t *s = (pg_store_t *)base;
    size_t nlen = username ? strnlen(username, GH_USERNAME_MAX + 1) : 0;
    if (nlen == 0 || nlen > GH_USERNAME_MAX || !hash_fits(hash))
        return GH_EINVAL;
    char created[24];
    snprintf(created, sizeof created, "%lld", (long long)now);
    const char *params[] = {username, hash, created};
    PGresult *r;
    outcome_t o = run(s, ST_CREATE, GH_STORE_OP_CREATE, params, false, &r);
    if (o == R_UNIQUE)
        return GH_EEXISTS;
    if (o == R_BAD_DATA)
        return GH_EINVAL;
    if (o != R_OK)
        return GH_ESTORE;
    int ret = GH_ESTORE;
    char *end;
    const char *id = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "";
    uint64_t v = strtoull(id, &end, 10);
    if (*id && *end == '\0') {
        memset(out, 0, sizeof *out);
        out->id = v;
        memcpy(out->username, username, nlen);
        snprintf(out->password_hash, sizeof out->password_hash, "%s", hash);
        out->created_at_ms = now;
        ret = 0;
    }
    PQclear(r);
    return ret;
}

static int p_get_by_name(gh_user_store_t *base, const char *username, gh_user_t *out)
{
    pg_store_t *s = (pg_store_t *)base;
    size_t nlen = username ? strnlen(username, GH_USERNAME_MAX + 1) : 0;
    if (nlen == 0 || nlen > GH_USERNAME_MAX)
        return GH_ENOTFOUND;
    const char *params[] = {username};
    return fetch_one(s, ST_BY_NAME, params, out);
}

static int p_get_by_id(gh_user_store_t *base, uint64_t id, gh_user_t *out)
{
    pg_store_t *s = (pg_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND; /* bigint ids are signed */
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)id);
    const char *params[] = {v};
    return fetch_one(s, ST_BY_ID, params, out);
}

static int p_set_password(gh_user_store_t *base, uint64_t id, const char *hash)
{
    pg_store_t *s = (pg_store_t *)base;
    if (!hash_fits(hash))
        return GH_EINVAL;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)id);
    const char *params[] = {v, hash};
    return change_one(s, ST_SET_PASSWORD, GH_STORE_OP_UPDATE, params);
}

static int p_del(gh_user_store_t *base, uint64_t id)
{
    pg_store_t *s = (pg_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)id);
    const char *params[] = {v};
    return change_one(s, ST_DELETE, GH_STORE_OP_DELETE, params);
}

static int p_list(gh_user_store_t *base, uint64_t after, gh_user_t *out, size_t cap, size_t *n)
{
    pg_store_t *s = (pg_store_t *)base;
    *n = 0;
    if (after > INT64_MAX || cap == 0)
        return 0;
    char a[24], c[24];
    snprintf(a, sizeof a, "%llu", (unsigned long long)after);
    snprintf(c, sizeof c, "%llu", (unsigned long long)(cap > INT64_MAX ? INT64_MAX : cap));
    const char *params[] = {a, c};
    PGresult *r;
    if (run(s, ST_LIST, GH_STORE_OP_LIST, params, true, &r) != R_OK)
        return GH_ESTORE;
    int rows = PQntuples(r), ret = 0;
    for (int i = 0; i < rows && (size_t)i < cap; i++) {
        if ((ret = parse_row(r, i, &out[i])) != 0)
            break;
        ++*n;
    }
    PQclear(r);
    if (ret != 0)
        *n = 0; /* all or nothing: a half page would look like the end of the list */
    return ret;
}

static int p_ping(gh_user_store_t *base)
{
    pg_store_t *s = (pg_store_t *)base;
    PGresult *r;
    if (run(s, ST_PING, GH_STORE_OP_PING, NULL, true, &r) != R_OK)
        return GH_ESTORE;
    PQclear(r);
    return 0;
}

static int p_set_flags(gh_user_store_t *base, uint64_t id, int admin, int disabled)
{
    pg_store_t *s = (pg_store_t *)base;
    if (id > INT64_MAX)
        return GH_ENOTFOUND;
    char i[24], a[4], d[4];
    snprintf(i, sizeof i, "%llu", (unsigned long long)id);
    snprintf(a, sizeof a, "%d", admin < 0 ? -1 : admin != 0);
    snprintf(d, sizeof d, "%d", disabled < 0 ? -1 : disabled != 0);
    const char *params[] = {i, a, d};
    return change_one(s, ST_SET_FLAGS, GH_STORE_OP_UPDATE, params);
}

static int p_search(gh_user_store_t *base, const char *prefix, uint64_t after, gh_user_t *out,
                    size_t cap, size_t *n)
{
    pg_store_t *s = (pg_store_t *)base;
    *n = 0;
    if (after > INT64_MAX || cap == 0 ||
        (prefix && strnlen(prefix, GH_USER_SEARCH_MAX + 1) > GH_USER_SEARCH_MAX))
        return 0;
    char a[24], c[24];
    snprintf(a, sizeof a, "%llu", (unsigned long long)after);
    snprintf(c, sizeof c, "%llu", (unsigned long long)(cap > INT64_MAX ? INT64_MAX : cap));
    const char *params[] = {prefix ? prefix : "", a, c};
    PGresult *r;
    outcome_t o = run(s, ST_SEARCH, GH_STORE_OP_LIST, params, true, &r);
    if (o == R_BAD_DATA)
        return 0;
    if (o != R_OK)
        return GH_ESTORE;
    int rows = PQntuples(r), ret = 0;
    for (int k = 0; k < rows && (size_t)k < cap; k++) {
        if ((ret = parse_row(r, k, &out[k])) != 0)
            break;
        ++*n;
    }
    PQclear(r);
    if (ret != 0)
        *n = 0;
    return ret;
}

static int p_audit_append(gh_user_store_t *base, gh_audit_event_t *ev)
{
    pg_store_t *s = (pg_store_t *)base;
    char t[24], u[24];
    snprintf(t, sizeof t, "%lld", (long long)ev->time_ms);
    snprintf(u, sizeof u, "%llu", (unsigned long long)ev->user_id);
    const char *params[] = {t,      ev->type,       ev->actor, u,           ev->session_id,
                            ev->ip, ev->user_agent, ev->node,  ev->outcome, ev->detail};
    PGresult *r;
    if (run(s, ST_AUDIT_APPEND, GH_STORE_OP_CREATE, params, false, &r) != R_OK)
        return GH_ESTORE;
    ev->id = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return 0;
}

static void pcol(PGresult *r, int row, int c, char *dst, size_t cap)
{
    snprintf(dst, cap, "%s", PQgetvalue(r, row, c));
}

static int p_audit_read(gh_user_store_t *base, const gh_audit_query_t *q, gh_audit_event_t *out,
                        size_t cap, size_t *n)
{
    pg_store_t *s = (pg_store_t *)base;
    *n = 0;
    if (cap == 0)
        return 0;
    char u[24], since[24], until[24], before[24], c[24];
    snprintf(u, sizeof u, "%llu", (unsigned long long)(q->user_id > INT64_MAX ? 0 : q->user_id));
    snprintf(since, sizeof since, "%lld", (long long)q->since_ms);
    snprintf(until, sizeof until, "%lld", (long long)q->until_ms);
    snprintf(before, sizeof before, "%lld", (long long)q->before_id);
    snprintf(c, sizeof c, "%zu", cap);
    const char *params[] = {u, q->type, since, until, before, c};
    PGresult *r;
    if (run(s, ST_AUDIT_READ, GH_STORE_OP_LIST, params, true, &r) != R_OK)
        return GH_ESTORE;
    int rows = PQntuples(r);
    for (int k = 0; k < rows && (size_t)k < cap; k++) {
        gh_audit_event_t *ev = &out[k];
        memset(ev, 0, sizeof *ev);
        ev->id = strtoll(PQgetvalue(r, k, 0), NULL, 10);
        ev->time_ms = strtoll(PQgetvalue(r, k, 1), NULL, 10);
        pcol(r, k, 2, ev->type, sizeof ev->type);
        pcol(r, k, 3, ev->actor, sizeof ev->actor);
        ev->user_id = strtoull(PQgetvalue(r, k, 4), NULL, 10);
        pcol(r, k, 5, ev->session_id, sizeof ev->session_id);
        pcol(r, k, 6, ev->ip, sizeof ev->ip);
        pcol(r, k, 7, ev->user_agent, sizeof ev->user_agent);
        pcol(r, k, 8, ev->node, sizeof ev->node);
        pcol(r, k, 9, ev->outcome, sizeof ev->outcome);
        pcol(r, k, 10, ev->detail, sizeof ev->detail);
        ++*n;
    }
    PQclear(r);
    return 0;
}

static int p_audit_prune(gh_user_store_t *base, int64_t before_ms, size_t max, size_t *removed)
{
    pg_store_t *s = (pg_store_t *)base;
    *removed = 0;
    char b[24], m[24];
    snprintf(b, sizeof b, "%lld", (long long)before_ms);
    snprintf(m, sizeof m, "%zu", max);
    const char *params[] = {b, m};
    PGresult *r;
    if (run(s, ST_AUDIT_PRUNE, GH_STORE_OP_DELETE, params, false, &r) != R_OK)
        return GH_ESTORE;
    *removed = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

/* Calls go to pool connections one at a time, so the change and the event commit separately:
 * the change first, then the event; the caller answers only when both are stored. */
static int p_audited(gh_user_store_t *base, gh_audit_event_t *ev,
                     int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    int rc = change(base, arg);
    return rc != 0 ? rc : p_audit_append(base, ev);
}

static void p_close(gh_user_store_t **base)
{
    pg_store_t *s = (pg_store_t *)*base;
    if (!s)
        return;
    gh_store_pool_destroy(&s->pool);
    if (s->url)
        gh_mem_free_secret(GH_MEM_USERS, s->url); /* it may carry a password */
    gh_mem_free(GH_MEM_USERS, s);
    *base = NULL;
}

/* ---- factors ---- */

#define HEXBUF(n) (2 * (n) + 1)

static void to_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int from_hex(const char *hex, uint8_t *out, size_t cap, size_t *n)
{
    size_t len = strlen(hex);
    if (len % 2 || len / 2 > cap)
        return GH_ESTORE;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return GH_ESTORE;
        out[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

static int parse_factor(PGresult *r, int row, gh_factor_t *f)
{
    memset(f, 0, sizeof *f);
    f->id = strtoull(PQgetvalue(r, row, 0), NULL, 10);
    f->user_id = strtoull(PQgetvalue(r, row, 1), NULL, 10);
    f->type = strcmp(PQgetvalue(r, row, 2), "webauthn") == 0 ? GH_FACTOR_WEBAUTHN : GH_FACTOR_TOTP;
    snprintf(f->name, sizeof f->name, "%s", PQgetvalue(r, row, 3));
    f->created_at_ms = strtoll(PQgetvalue(r, row, 4), NULL, 10);
    f->last_used_at_ms = strtoll(PQgetvalue(r, row, 5), NULL, 10);
    if (from_hex(PQgetvalue(r, row, 6), f->secret, sizeof f->secret, &f->secret_len) != 0 ||
        from_hex(PQgetvalue(r, row, 7), f->credential, sizeof f->credential, &f->credential_len) !=
            0)
        return GH_ESTORE;
    f->confirmed = PQgetvalue(r, row, 8)[0] == 't';
    f->counter = strtoull(PQgetvalue(r, row, 9), NULL, 10);
    return 0;
}

static int f_rows(pg_store_t *s, int st, const char *const *params, gh_factor_t *out, size_t cap,
                  size_t *n)
{
    PGresult *r;
    *n = 0;
    outcome_t o = run(s, st, GH_STORE_OP_GET, params, true, &r);
    if (o == R_BAD_DATA)
        return 0;
    if (o != R_OK)
        return GH_ESTORE;
    int ret = 0;
    for (int i = 0; i < PQntuples(r) && *n < cap; i++) {
        if ((ret = parse_factor(r, i, &out[*n])) != 0)
            break;
        ++*n;
    }
    PQclear(r);
    if (ret != 0)
        *n = 0;
    return ret;
}

static int p_factor_add(gh_user_store_t *base, gh_factor_t *f)
{
    pg_store_t *s = (pg_store_t *)base;
    size_t nlen = strnlen(f->name, GH_FACTOR_NAME_MAX + 1);
    if (nlen == 0 || nlen > GH_FACTOR_NAME_MAX || f->secret_len == 0 ||
        f->secret_len > GH_FACTOR_SECRET_MAX || f->credential_len > GH_FACTOR_CREDENTIAL_MAX ||
        (f->type != GH_FACTOR_TOTP && f->type != GH_FACTOR_WEBAUTHN))
        return GH_EINVAL;
    char uid[24], created[24], counter[24], secret[HEXBUF(GH_FACTOR_SECRET_MAX)],
        cred[HEXBUF(GH_FACTOR_CREDENTIAL_MAX)];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)f->user_id);
    snprintf(created, sizeof created, "%lld", (long long)f->created_at_ms);
    snprintf(counter, sizeof counter, "%llu", (unsigned long long)f->counter);
    to_hex(f->secret, f->secret_len, secret);
    to_hex(f->credential, f->credential_len, cred);
    const char *params[] = {uid,
                            f->type == GH_FACTOR_WEBAUTHN ? "webauthn" : "totp",
                            f->name,
                            created,
                            secret,
                            cred,
                            f->confirmed ? "true" : "false",
                            counter};
    PGresult *r;
    outcome_t o = run(s, ST_F_ADD, GH_STORE_OP_CREATE, params, false, &r);
    if (o == R_UNIQUE)
        return GH_EEXISTS;
    if (o == R_BAD_DATA)
        return GH_EINVAL;
    if (o == R_FAILED)
        return GH_ENOTFOUND; /* the foreign key: no such user (other failures are logged) */
    if (o != R_OK)
        return GH_ESTORE;
    f->id = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return 0;
}

static int p_factor_list(gh_user_store_t *base, uint64_t user_id, gh_factor_t *out, size_t cap,
                         size_t *n)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *params[] = {uid};
    return f_rows((pg_store_t *)base, ST_F_LIST, params, out, cap, n);
}

static int p_factor_get(gh_user_store_t *base, uint64_t user_id, uint64_t id, gh_factor_t *out)
{
    char uid[24], fid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)id);
    const char *params[] = {uid, fid};
    size_t n;
    int rc = f_rows((pg_store_t *)base, ST_F_GET, params, out, 1, &n);
    return rc != 0 ? rc : n ? 0 : GH_ENOTFOUND;
}

static int p_factor_by_credential(gh_user_store_t *base, const uint8_t *cred, size_t len,
                                  gh_factor_t *out)
{
    if (!cred || len == 0 || len > GH_FACTOR_CREDENTIAL_MAX)
        return GH_ENOTFOUND;
    char hex[HEXBUF(GH_FACTOR_CREDENTIAL_MAX)];
    to_hex(cred, len, hex);
    const char *params[] = {hex};
    size_t n;
    int rc = f_rows((pg_store_t *)base, ST_F_BY_CRED, params, out, 1, &n);
    return rc != 0 ? rc : n ? 0 : GH_ENOTFOUND;
}

static int p_factor_rename(gh_user_store_t *base, uint64_t user_id, uint64_t id, const char *name)
{
    size_t n = name ? strnlen(name, GH_FACTOR_NAME_MAX + 1) : 0;
    if (n == 0 || n > GH_FACTOR_NAME_MAX)
        return GH_EINVAL;
    char uid[24], fid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)id);
    const char *params[] = {uid, fid, name};
    return change_one((pg_store_t *)base, ST_F_RENAME, GH_STORE_OP_UPDATE, params);
}

static int p_factor_confirm(gh_user_store_t *base, uint64_t user_id, uint64_t id)
{
    char uid[24], fid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)id);
    const char *params[] = {uid, fid};
    return change_one((pg_store_t *)base, ST_F_CONFIRM, GH_STORE_OP_UPDATE, params);
}

static int p_factor_use(gh_user_store_t *base, uint64_t user_id, uint64_t id, uint64_t counter,
                        int64_t now_ms)
{
    char uid[24], fid[24], c[24], now[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)id);
    snprintf(c, sizeof c, "%llu", (unsigned long long)counter);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *params[] = {uid, fid, c, now};
    int rc = change_one((pg_store_t *)base, ST_F_USE, GH_STORE_OP_UPDATE, params);
    if (rc != GH_ENOTFOUND)
        return rc;
    gh_factor_t f;
    rc = p_factor_get(base, user_id, id, &f);
    return rc == 0 ? GH_ERANGE : rc;
}

static int p_factor_del(gh_user_store_t *base, uint64_t user_id, uint64_t id)
{
    char uid[24], fid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(fid, sizeof fid, "%llu", (unsigned long long)id);
    const char *params[] = {uid, fid};
    return change_one((pg_store_t *)base, ST_F_DEL, GH_STORE_OP_DELETE, params);
}

static int p_factor_del_all(gh_user_store_t *base, uint64_t user_id, size_t *n)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *params[] = {uid};
    PGresult *r;
    *n = 0;
    if (run((pg_store_t *)base, ST_F_DEL_ALL, GH_STORE_OP_DELETE, params, false, &r) != R_OK)
        return GH_ESTORE;
    *n = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

static int p_recovery_set(gh_user_store_t *base, uint64_t user_id,
                          const uint8_t (*hashes)[GH_RECOVERY_HASH_LEN], size_t n, int64_t now_ms)
{
    if (n > GH_RECOVERY_CODES * 4)
        return GH_EINVAL;
    char uid[24], now[24], list[GH_RECOVERY_CODES * 4 * (HEXBUF(GH_RECOVERY_HASH_LEN))] = "";
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            list[off++] = ',';
        to_hex(hashes[i], GH_RECOVERY_HASH_LEN, list + off);
        off += 2 * GH_RECOVERY_HASH_LEN;
    }
    const char *params[] = {uid, list, now};
    PGresult *r;
    outcome_t o = run((pg_store_t *)base, ST_R_SET, GH_STORE_OP_UPDATE, params, false, &r);
    if (o == R_FAILED)
        return GH_ENOTFOUND; /* the foreign key: no such user */
    if (o != R_OK)
        return GH_ESTORE;
    PQclear(r);
    return 0;
}

static int p_recovery_use(gh_user_store_t *base, uint64_t user_id,
                          const uint8_t hash[GH_RECOVERY_HASH_LEN], int64_t now_ms)
{
    char uid[24], now[24], hex[HEXBUF(GH_RECOVERY_HASH_LEN)];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    to_hex(hash, GH_RECOVERY_HASH_LEN, hex);
    const char *params[] = {uid, now, hex};
    return change_one((pg_store_t *)base, ST_R_USE, GH_STORE_OP_UPDATE, params);
}

static int p_recovery_state(gh_user_store_t *base, uint64_t user_id, size_t *left,
                            int64_t *last_used_ms)
{
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *params[] = {uid};
    PGresult *r;
    *left = 0;
    *last_used_ms = 0;
    if (run((pg_store_t *)base, ST_R_STATE, GH_STORE_OP_GET, params, true, &r) != R_OK)
        return GH_ESTORE;
    *left = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    *last_used_ms = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    return 0;
}

static const gh_user_store_ops_t postgres_ops = {
    .factor_add = p_factor_add,
    .factor_list = p_factor_list,
    .factor_get = p_factor_get,
    .factor_by_credential = p_factor_by_credential,
    .factor_rename = p_factor_rename,
    .factor_confirm = p_factor_confirm,
    .factor_use = p_factor_use,
    .factor_del = p_factor_del,
    .factor_del_all = p_factor_del_all,
    .recovery_set = p_recovery_set,
    .recovery_use = p_recovery_use,
    .recovery_state = p_recovery_state,
    .oidc_client_add = gh_oidc_pg_client_add,
    .oidc_client_get = gh_oidc_pg_client_get,
    .oidc_client_list = gh_oidc_pg_client_list,
    .oidc_client_del = gh_oidc_pg_client_del,
    .oidc_key_list = gh_oidc_pg_key_list,
    .oidc_key_rotate = gh_oidc_pg_key_rotate,
    .oidc_key_prune = gh_oidc_pg_key_prune,
    .name = "postgres",
    .create = p_create,
    .get_by_name = p_get_by_name,
    .get_by_id = p_get_by_id,
    .set_password = p_set_password,
    .del = p_del,
    .list = p_list,
    .ping = p_ping,
    .set_flags = p_set_flags,
    .search = p_search,
    .audit_append = p_audit_append,
    .audit_read = p_audit_read,
    .audit_prune = p_audit_prune,
    .audited = p_audited,
    .close = p_close,
};

/* ---- migrations ---- */

static bool exec_ok(PGconn *pg, const char *sql, PGresult **keep)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (ok && keep)
        *keep = r;
    else
        PQclear(r);
    return ok;
}

static int migrate(PGconn *pg)
{
    PGresult *r = NULL;
    int version = -1;
    if (!exec_ok(pg, "BEGIN", NULL))
        goto fail;
    /* Every node that starts now queues here; the first migrates, the others find it done. */
    if (!exec_ok(pg, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", NULL) ||
        !exec_ok(pg,
                 "CREATE TABLE IF NOT EXISTS gatehouse_schema ("
                 " version integer PRIMARY KEY,"
                 " applied_at timestamptz NOT NULL DEFAULT now())",
                 NULL) ||
        !exec_ok(pg, "SELECT coalesce(max(version), 0) FROM gatehouse_schema", &r))
        goto fail;
    version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    r = NULL;
    if (version > SCHEMA_VERSION) {
        GH_LOG(GH_LOG_ERROR, "the user database was written by a newer Gatehouse",
               GH_LI("schema_version", version), GH_LI("supported", SCHEMA_VERSION));
        exec_ok(pg, "ROLLBACK", NULL);
        return GH_ESTORE;
    }
    for (int v = version; v < SCHEMA_VERSION; v++) {
        char record[96];
        snprintf(record, sizeof record, "INSERT INTO gatehouse_schema (version) VALUES (%d)",
                 v + 1);
        if (!exec_ok(pg, migrations[v], NULL) || !exec_ok(pg, record, NULL))
            goto fail;
    }
    if (!exec_ok(pg, "COMMIT", NULL))
        goto fail;
    if (version < SCHEMA_VERSION)
        GH_LOG(GH_LOG_INFO, "user database schema migrated", GH_LI("from", version),
               GH_LI("to", SCHEMA_VERSION));
    return 0;
fail:
    GH_LOG(GH_LOG_ERROR, "user database migration failed", GH_LS("detail", PQerrorMessage(pg)));
    exec_ok(pg, "ROLLBACK", NULL);
    return GH_ESTORE;
}

int gh_user_postgres_open(const gh_user_postgres_options_t *opt, gh_user_store_t **out)
{
    *out = NULL;
    if (!opt || !opt->url || !*opt->url || opt->timeout_ms < 0)
        return GH_EINVAL;
    pg_store_t *s = gh_mem_calloc(GH_MEM_USERS, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &postgres_ops;
    gh_user_store_t *b = &s->base;
    int rc = GH_ENOMEM;
    s->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->probe = opt->probe;
    s->url = gh_mem_strdup(GH_MEM_USERS, opt->url);
    if (!s->url)
        goto fail;
    gh_store_pool_options_t po = {.what = "user store",
                                  .store = "postgres",
                                  .mem = GH_MEM_USERS,
                                  .size = opt->pool_size ? opt->pool_size : DEFAULT_POOL,
                                  .timeout_ms = s->timeout_ms,
                                  .connect = pool_connect,
                                  .disconnect = pool_disconnect,
                                  .ctx = s};
    if ((rc = gh_store_pool_create(&po, &s->pool)) != 0)
        goto fail;
    /* Migrate on a connection of its own: the pool's prepare statements that need the table. */
    PGconn *pg = connect_bare(s);
    if (!pg) {
        GH_LOG(GH_LOG_ERROR, "cannot connect to PostgreSQL for the user store");
        rc = GH_ESTORE;
        goto fail;
    }
    rc = migrate(pg);
    PQfinish(pg);
    if (rc != 0)
        goto fail;
    /* The first pool connection now, so a broken grant shows at start, not on first login. */
    if ((rc = p_ping(b)) != 0) {
        GH_LOG(GH_LOG_ERROR, "the user store does not answer after migrating");
        goto fail;
    }
    *out = b;
    return 0;
fail:
    p_close(&b);
    return rc;
}
