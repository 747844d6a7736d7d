/*
 * oidc_postgres.c — OpenID Connect clients and signing keys in the PostgreSQL user store
 * (gatehouse_oidc_clients, gatehouse_oidc_keys: migration 5; store/oidc_records.h), run on the
 * user store's connection pool (store/user_postgres.h).
 *
 * The one design decision: a rotation is ONE statement — the new generation's keys inserted and
 * the older current keys retired by a data-modifying WITH — so it commits whole or not at all
 * without a transaction spanning calls, and the unique (generation, alg) index makes a second
 * rotation of the same generation (another node, the command line) fail as GH_EEXISTS.
 * Statements are not prepared (they are rare: a client per token request at most, a rotation
 * every few weeks): each runs with text parameters through PQexecParams, never built from input.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "store/oidc_store.h"
#include "store/user_postgres.h"

const char gh_oidc_postgres_migration[] = "CREATE TABLE gatehouse_oidc_clients ("
                                          " client_id text PRIMARY KEY,"
                                          " name text NOT NULL,"
                                          " public boolean NOT NULL DEFAULT false,"
                                          " consent boolean NOT NULL DEFAULT false,"
                                          " id_token_alg text NOT NULL,"
                                          " redirect_uris text NOT NULL,"
                                          " post_logout_uris text NOT NULL DEFAULT '',"
                                          " secret_hash bytea,"
                                          " created_at bigint NOT NULL);"
                                          "CREATE TABLE gatehouse_oidc_keys ("
                                          " kid text PRIMARY KEY,"
                                          " alg text NOT NULL,"
                                          " generation bigint NOT NULL,"
                                          " created_at bigint NOT NULL,"
                                          " retired_at bigint NOT NULL DEFAULT 0,"
                                          " sealed bytea NOT NULL,"
                                          " UNIQUE (generation, alg));";

#define CLIENT_COLS                                                                                \
    "client_id, name, public, consent, id_token_alg, redirect_uris, post_logout_uris,"             \
    " coalesce(encode(secret_hash, 'hex'), ''), created_at"

typedef enum { R_OK, R_UNIQUE, R_FAILED, R_BROKEN } outcome_t;

/* Runs sql with n text parameters on a pool connection; R_OK leaves the result in *res. */
static outcome_t exec(gh_user_pg_t *s, gh_store_op_t op, const char *sql, int n,
                      const char *const *params, bool retry_read, PGresult **res)
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
        PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            gh_store_pool_release(s->pool, slot, false);
            gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, false);
            *res = r;
            return R_OK;
        }
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
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
        outcome_t o = state && strcmp(state, "23505") == 0 ? R_UNIQUE : R_FAILED;
        if (o == R_FAILED)
            GH_LOG(GH_LOG_ERROR, "user store error", GH_LS("op", "oidc"),
                   GH_LS("sqlstate", state ? state : "?"), GH_LS("detail", PQerrorMessage(pg)));
        PQclear(r);
        gh_store_pool_release(s->pool, slot, false);
        gh_store_observe(&s->probe, GH_STORE_POSTGRES, op, gh_clock_mono_ns() - t0, o == R_FAILED);
        return o;
    }
}

static gh_user_pg_t *P(gh_user_store_t *b)
{
    return (gh_user_pg_t *)b;
}

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

/* ---- clients ---- */

static int parse_client(PGresult *r, int row, gh_oidc_client_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->client_id, sizeof c->client_id, "%s", PQgetvalue(r, row, 0));
    snprintf(c->name, sizeof c->name, "%s", PQgetvalue(r, row, 1));
    c->is_public = PQgetvalue(r, row, 2)[0] == 't';
    c->consent = PQgetvalue(r, row, 3)[0] == 't';
    snprintf(c->id_token_alg, sizeof c->id_token_alg, "%s", PQgetvalue(r, row, 4));
    if (gh_oidc_uris_split(PQgetvalue(r, row, 5), c->redirect_uris, &c->n_redirect) != 0 ||
        gh_oidc_uris_split(PQgetvalue(r, row, 6), c->post_logout_uris, &c->n_post_logout) != 0)
        return GH_ESTORE;
    const char *h = PQgetvalue(r, row, 7);
    size_t hn = 0;
    if (h[0] && (from_hex(h, c->secret_hash, sizeof c->secret_hash, &hn) != 0 ||
                 hn != GH_OIDC_SECRET_HASH_LEN))
        return GH_ESTORE;
    c->created_at = strtoll(PQgetvalue(r, row, 8), NULL, 10);
    return 0;
}

int gh_oidc_pg_client_add(gh_user_store_t *b, const gh_oidc_client_t *c)
{
    char redirect[GH_OIDC_URIS_TEXT_MAX], logout[GH_OIDC_URIS_TEXT_MAX];
    char hash[2 * GH_OIDC_SECRET_HASH_LEN + 1] = "", created[24], max[24];
    if (gh_oidc_client_fits(c) != 0 ||
        gh_oidc_uris_join(c->redirect_uris, c->n_redirect, redirect, sizeof redirect) != 0 ||
        gh_oidc_uris_join(c->post_logout_uris, c->n_post_logout, logout, sizeof logout) != 0)
        return GH_EINVAL;
    static const uint8_t zero[GH_OIDC_SECRET_HASH_LEN];
    if (memcmp(c->secret_hash, zero, sizeof zero) != 0)
        to_hex(c->secret_hash, GH_OIDC_SECRET_HASH_LEN, hash);
    snprintf(created, sizeof created, "%lld", (long long)c->created_at);
    snprintf(max, sizeof max, "%d", GH_OIDC_CLIENTS_MAX);
    const char *params[] = {c->client_id,
                            c->name,
                            c->is_public ? "true" : "false",
                            c->consent ? "true" : "false",
                            c->id_token_alg,
                            redirect,
                            logout,
                            hash,
                            created,
                            max};
    PGresult *r;
    /* The bound on the table is part of the insert: no row when it is full. */
    outcome_t o = exec(P(b), GH_STORE_OP_CREATE,
                       "INSERT INTO gatehouse_oidc_clients (client_id, name, public, consent,"
                       " id_token_alg, redirect_uris, post_logout_uris, secret_hash, created_at)"
                       " SELECT $1, $2, $3::boolean, $4::boolean, $5, $6, $7,"
                       " nullif(decode($8, 'hex'), ''::bytea), $9::bigint"
                       " WHERE (SELECT count(*) FROM gatehouse_oidc_clients) < $10::bigint",
                       10, params, false, &r);
    if (o == R_UNIQUE)
        return GH_EEXISTS;
    if (o != R_OK)
        return GH_ESTORE;
    int ret = strcmp(PQcmdTuples(r), "1") == 0 ? 0 : GH_ELIMIT;
    PQclear(r);
    return ret;
}

int gh_oidc_pg_client_get(gh_user_store_t *b, const char *client_id, gh_oidc_client_t *out)
{
    const char *params[] = {client_id};
    PGresult *r;
    if (exec(P(b), GH_STORE_OP_GET,
             "SELECT " CLIENT_COLS " FROM gatehouse_oidc_clients WHERE client_id = $1", 1, params,
             true, &r) != R_OK)
        return GH_ESTORE;
    int ret = PQntuples(r) == 1 ? parse_client(r, 0, out) : GH_ENOTFOUND;
    PQclear(r);
    return ret;
}

int gh_oidc_pg_client_list(gh_user_store_t *b, const char *after, gh_oidc_client_t *out, size_t cap,
                           size_t *n)
{
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", cap);
    const char *params[] = {after, limit};
    PGresult *r;
    *n = 0;
    if (exec(P(b), GH_STORE_OP_LIST,
             "SELECT " CLIENT_COLS " FROM gatehouse_oidc_clients WHERE client_id > $1"
             " ORDER BY client_id COLLATE \"C\" LIMIT $2::bigint",
             2, params, true, &r) != R_OK)
        return GH_ESTORE;
    int ret = 0;
    for (int i = 0; i < PQntuples(r) && *n < cap && ret == 0; i++)
        if ((ret = parse_client(r, i, &out[*n])) == 0)
            (*n)++;
    PQclear(r);
    return ret;
}

int gh_oidc_pg_client_del(gh_user_store_t *b, const char *client_id)
{
    const char *params[] = {client_id};
    PGresult *r;
    if (exec(P(b), GH_STORE_OP_DELETE, "DELETE FROM gatehouse_oidc_clients WHERE client_id = $1", 1,
             params, false, &r) != R_OK)
        return GH_ESTORE;
    int ret = strcmp(PQcmdTuples(r), "1") == 0 ? 0 : GH_ENOTFOUND;
    PQclear(r);
    return ret;
}

/* ---- signing keys ---- */

int gh_oidc_pg_key_list(gh_user_store_t *b, gh_oidc_key_rec_t *out, size_t cap, size_t *n)
{
    char limit[24];
    snprintf(limit, sizeof limit, "%zu", cap);
    const char *params[] = {limit};
    PGresult *r;
    *n = 0;
    if (exec(P(b), GH_STORE_OP_LIST,
             "SELECT kid, alg, generation, created_at, retired_at, encode(sealed, 'hex')"
             " FROM gatehouse_oidc_keys ORDER BY generation DESC, alg COLLATE \"C\""
             " LIMIT $1::bigint",
             1, params, true, &r) != R_OK)
        return GH_ESTORE;
    int ret = 0;
    for (int i = 0; i < PQntuples(r) && *n < cap; i++) {
        gh_oidc_key_rec_t *k = &out[*n];
        memset(k, 0, sizeof *k);
        snprintf(k->kid, sizeof k->kid, "%s", PQgetvalue(r, i, 0));
        snprintf(k->alg, sizeof k->alg, "%s", PQgetvalue(r, i, 1));
        k->generation = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        k->created_at = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        k->retired_at = strtoll(PQgetvalue(r, i, 4), NULL, 10);
        if ((ret = from_hex(PQgetvalue(r, i, 5), k->sealed, sizeof k->sealed, &k->sealed_len)) != 0)
            break;
        (*n)++;
    }
    PQclear(r);
    return ret;
}

#define ROTATE_MAX 8 /* keys in one rotation (one per alg) */

int gh_oidc_pg_key_rotate(gh_user_store_t *b, const gh_oidc_key_rec_t *keys, size_t n,
                          int64_t now_ms)
{
    if (n == 0 || n > ROTATE_MAX)
        return GH_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (gh_oidc_key_fits(&keys[i]) != 0 || keys[i].generation != keys[0].generation)
            return GH_EINVAL;
    /* Array literals of base64url kids, alg names and hex: no character needs quoting. */
    static char sealed[ROTATE_MAX * (2 * GH_OIDC_KEY_SEALED_MAX + 1) + 3];
    char kids[ROTATE_MAX * (GH_OIDC_KID_MAX + 1) + 3], algs[ROTATE_MAX * 9 + 3], gen[24], now[24];
    /* sealed is large: built under a lock of its own (rotations are rare). */
    static pthread_mutex_t sealed_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&sealed_lock);
    size_t ko = 0, ao = 0, so = 0;
    kids[ko++] = algs[ao++] = sealed[so++] = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            kids[ko++] = algs[ao++] = sealed[so++] = ',';
        ko += (size_t)snprintf(kids + ko, sizeof kids - ko, "%s", keys[i].kid);
        ao += (size_t)snprintf(algs + ao, sizeof algs - ao, "%s", keys[i].alg);
        to_hex(keys[i].sealed, keys[i].sealed_len, sealed + so);
        so += 2 * keys[i].sealed_len;
    }
    snprintf(kids + ko, sizeof kids - ko, "}");
    snprintf(algs + ao, sizeof algs - ao, "}");
    snprintf(sealed + so, sizeof sealed - so, "}");
    snprintf(gen, sizeof gen, "%lld", (long long)keys[0].generation);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *params[] = {kids, algs, gen, now, sealed};
    PGresult *r;
    outcome_t o = exec(P(b), GH_STORE_OP_UPDATE,
                       "WITH ins AS (INSERT INTO gatehouse_oidc_keys"
                       " (kid, alg, generation, created_at, sealed)"
                       " SELECT k, a, $3::bigint, $4::bigint, decode(h, 'hex')"
                       " FROM unnest($1::text[], $2::text[], $5::text[]) AS t(k, a, h)"
                       " RETURNING 1)"
                       " UPDATE gatehouse_oidc_keys SET retired_at = $4::bigint"
                       " WHERE retired_at = 0 AND generation < $3::bigint",
                       5, params, false, &r);
    pthread_mutex_unlock(&sealed_lock);
    if (o == R_UNIQUE)
        return GH_EEXISTS;
    if (o != R_OK)
        return GH_ESTORE;
    PQclear(r);
    return 0;
}

int gh_oidc_pg_key_prune(gh_user_store_t *b, int64_t retired_before_ms, size_t *removed)
{
    char before[24];
    snprintf(before, sizeof before, "%lld", (long long)retired_before_ms);
    const char *params[] = {before};
    PGresult *r;
    *removed = 0;
    if (exec(P(b), GH_STORE_OP_DELETE,
             "DELETE FROM gatehouse_oidc_keys WHERE retired_at > 0 AND retired_at <= $1::bigint", 1,
             params, false, &r) != R_OK)
        return GH_ESTORE;
    *removed = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}
