/*
 * user.h — the user store interface (SQLite embedded, PostgreSQL for several nodes). Handlers call
 * gh_user_*; the backend is chosen at start. Usernames are unique case-insensitively and kept as
 * given; the store holds only argon2id hash strings, never passwords. Every statement is
 * parameterized.
 *
 * Thread safety: every function may be called from any thread (the backend serializes).
 */
#ifndef GH_STORE_USER_H
#define GH_STORE_USER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "store/audit_record.h"
#include "store/oidc_records.h"
#include "store/probe.h"

#define GH_USERNAME_MAX 64
/* The longest search prefix: an email address (RFC 5321 path limit). */
#define GH_USER_SEARCH_MAX 254
#define GH_PWHASH_MAX 128 /* crypto_pwhash_STRBYTES */

typedef struct {
    uint64_t id;
    char username[GH_USERNAME_MAX + 1];
    char password_hash[GH_PWHASH_MAX];
    int64_t created_at_ms;
    bool admin;    /* may use the admin console and admin API (gatehouse user add --admin) */
    bool disabled; /* cannot log in (answers as a wrong password); sessions were ended */
} gh_user_t;

typedef struct gh_user_store gh_user_store_t;

/*
 * Second factors (issue #18): a user's TOTP authenticators and WebAuthn passkeys, and their
 * recovery codes. The store keeps what it is given: `secret` is already sealed by the caller
 * (a TOTP secret encrypted with the secret key; a passkey's public key), recovery codes arrive
 * as keyed hashes. Factors and codes go with their user (ON DELETE CASCADE).
 */
#define GH_FACTOR_NAME_MAX 64
#define GH_FACTOR_SECRET_MAX 1024     /* sealed TOTP secret, or a COSE public key */
#define GH_FACTOR_CREDENTIAL_MAX 1023 /* a WebAuthn credential id (the spec's bound) */
#define GH_FACTORS_MAX 20             /* per user; the account service enforces it */
#define GH_RECOVERY_CODES 10
#define GH_RECOVERY_HASH_LEN 32

typedef enum { GH_FACTOR_TOTP = 1, GH_FACTOR_WEBAUTHN = 2 } gh_factor_type_t;

typedef struct {
    uint64_t id;
    uint64_t user_id;
    gh_factor_type_t type;
    char name[GH_FACTOR_NAME_MAX + 1];
    int64_t created_at_ms;
    int64_t last_used_at_ms; /* 0: never */
    bool confirmed;          /* TOTP: a first correct code was given; WebAuthn: always */
    /* TOTP: the last accepted time step (a code is accepted once); WebAuthn: the signature
     * counter. Only ever moves forward (factor_use). */
    uint64_t counter;
    uint8_t secret[GH_FACTOR_SECRET_MAX];
    size_t secret_len;
    uint8_t credential[GH_FACTOR_CREDENTIAL_MAX]; /* WebAuthn credential id; TOTP: none */
    size_t credential_len;
} gh_factor_t;

typedef struct {
    const char *name;
    /* GH_EEXISTS when the name is taken (any case). Fills out (id, created_at). GH_EINVAL when
     * the name is empty or over GH_USERNAME_MAX bytes or the hash does not fit GH_PWHASH_MAX
     * (the store does not judge the characters: that is gh_auth_username_valid's job). */
    int (*create)(gh_user_store_t *s, const char *username, const char *password_hash,
                  int64_t now_ms, gh_user_t *out);
    /* Case-insensitive. GH_ENOTFOUND when absent. */
    int (*get_by_name)(gh_user_store_t *s, const char *username, gh_user_t *out);
    int (*get_by_id)(gh_user_store_t *s, uint64_t id, gh_user_t *out);
    /* GH_ENOTFOUND when absent, GH_EINVAL when the hash does not fit GH_PWHASH_MAX. */
    int (*set_password)(gh_user_store_t *s, uint64_t id, const char *password_hash);
    /* GH_ENOTFOUND when absent. */
    int (*del)(gh_user_store_t *s, uint64_t id);
    /* Users with id > after_id in id order, up to cap. password_hash is left empty. */
    int (*list)(gh_user_store_t *s, uint64_t after_id, gh_user_t *out, size_t cap, size_t *n);
    /* 0 when the store answers; GH_ESTORE otherwise (for /readyz). */
    int (*ping)(gh_user_store_t *s);
    /* ---- roles and the audit trail (account/audit.h); audit_events is append-only ---- */
    /* Sets the flags given (admin / disabled: -1 leaves it as it is, 0 or 1 sets it).
     * GH_ENOTFOUND when absent. */
    int (*set_flags)(gh_user_store_t *s, uint64_t id, int admin, int disabled);
    /* Users whose name or email address starts with prefix (any case; "" every user; at most
     * GH_USER_SEARCH_MAX bytes, longer matches nobody) and id > after_id, in id order, up to cap;
     * password_hash left empty. The prefix is matched literally (no wildcard). */
    int (*search)(gh_user_store_t *s, const char *prefix, uint64_t after_id, gh_user_t *out,
                  size_t cap, size_t *n);
    /* Appends one event; sets ev->id. */
    int (*audit_append)(gh_user_store_t *s, gh_audit_event_t *ev);
    /* Events matching q, newest (highest id) first, up to cap. */
    int (*audit_read)(gh_user_store_t *s, const gh_audit_query_t *q, gh_audit_event_t *out,
                      size_t cap, size_t *n);
    /* Deletes at most max of the oldest events with time < before_ms; *removed how many. */
    int (*audit_prune)(gh_user_store_t *s, int64_t before_ms, size_t max, size_t *removed);
    /* Runs change(s, arg) — calls of this store's own operations on s — and appends ev, in ONE
     * transaction where the backend can (SQLite: both or neither; PostgreSQL: the change, then
     * the event, each committed, since its calls may take different connections). change's
     * error is returned and nothing is appended; when the append fails the change is rolled back
     * (SQLite) and its error returned. change may fill ev (the id of a user it created). */
    int (*audited)(gh_user_store_t *s, gh_audit_event_t *ev,
                   int (*change)(gh_user_store_t *s, void *arg), void *arg);

    /* ---- second factors; a wrapper store (the cache) sets `inner` instead ---- */
    gh_user_store_t *(*inner)(gh_user_store_t *s);
    /* Stores f (user_id, type, name, created_at, confirmed, counter, secret, credential) and
     * fills f->id. GH_EINVAL for an empty or too long name or blob, GH_ENOTFOUND when the user
     * does not exist, GH_EEXISTS when the credential id is taken. */
    int (*factor_add)(gh_user_store_t *s, gh_factor_t *f);
    /* The user's factors in id order, up to cap (unconfirmed ones too). */
    int (*factor_list)(gh_user_store_t *s, uint64_t user_id, gh_factor_t *out, size_t cap,
                       size_t *n);
    /* One factor of the user: GH_ENOTFOUND. */
    int (*factor_get)(gh_user_store_t *s, uint64_t user_id, uint64_t id, gh_factor_t *out);
    /* The factor with this WebAuthn credential id, any user: GH_ENOTFOUND. */
    int (*factor_by_credential)(gh_user_store_t *s, const uint8_t *cred, size_t len,
                                gh_factor_t *out);
    /* Renames it: GH_ENOTFOUND, GH_EINVAL (empty or over GH_FACTOR_NAME_MAX bytes). */
    int (*factor_rename)(gh_user_store_t *s, uint64_t user_id, uint64_t id, const char *name);
    /* Marks it confirmed: GH_ENOTFOUND. */
    int (*factor_confirm)(gh_user_store_t *s, uint64_t user_id, uint64_t id);
    /* Records a use: sets counter and last_used_at only when counter moves forward (or stays
     * 0 for an authenticator without a counter). GH_ERANGE when it does not (a replayed TOTP
     * step, a cloned passkey), GH_ENOTFOUND. */
    int (*factor_use)(gh_user_store_t *s, uint64_t user_id, uint64_t id, uint64_t counter,
                      int64_t now_ms);
    /* GH_ENOTFOUND. */
    int (*factor_del)(gh_user_store_t *s, uint64_t user_id, uint64_t id);
    /* Every factor and recovery code of the user; *n factors removed. */
    int (*factor_del_all)(gh_user_store_t *s, uint64_t user_id, size_t *n);
    /* Replaces the user's recovery codes with these n hashes, atomically. */
    int (*recovery_set)(gh_user_store_t *s, uint64_t user_id,
                        const uint8_t (*hashes)[GH_RECOVERY_HASH_LEN], size_t n, int64_t now_ms);
    /* Spends the unused code with this hash: 0, GH_ENOTFOUND (no such unused code). */
    int (*recovery_use)(gh_user_store_t *s, uint64_t user_id,
                        const uint8_t hash[GH_RECOVERY_HASH_LEN], int64_t now_ms);
    /* Unused codes left, and when one was last used (0: never). */
    int (*recovery_state)(gh_user_store_t *s, uint64_t user_id, size_t *left,
                          int64_t *last_used_ms);
    /* ---- OpenID Connect clients and signing keys (store/oidc_records.h; oidc_sqlite.c,
     * oidc_postgres.c); a wrapper store answers them through `inner` ---- */
    /* Stores c. GH_EEXISTS when the client_id is taken, GH_EINVAL when a field does not fit. */
    int (*oidc_client_add)(gh_user_store_t *s, const gh_oidc_client_t *c);
    /* GH_ENOTFOUND when absent. */
    int (*oidc_client_get)(gh_user_store_t *s, const char *client_id, gh_oidc_client_t *out);
    /* Clients with client_id > after ("" from the first) in client_id order, up to cap. */
    int (*oidc_client_list)(gh_user_store_t *s, const char *after, gh_oidc_client_t *out,
                            size_t cap, size_t *n);
    /* GH_ENOTFOUND when absent. */
    int (*oidc_client_del)(gh_user_store_t *s, const char *client_id);
    /* Every stored key, newest generation first (then by alg), up to cap. */
    int (*oidc_key_list)(gh_user_store_t *s, gh_oidc_key_rec_t *out, size_t cap, size_t *n);
    /* In ONE transaction: stores the n keys (all of one generation G) and retires (retired_at =
     * now_ms) every current key of an older generation. GH_EEXISTS (nothing written) when
     * generation G exists already: someone else rotated first. */
    int (*oidc_key_rotate)(gh_user_store_t *s, const gh_oidc_key_rec_t *keys, size_t n,
                           int64_t now_ms);
    /* Deletes the keys retired at or before retired_before_ms; *removed how many. */
    int (*oidc_key_prune)(gh_user_store_t *s, int64_t retired_before_ms, size_t *removed);
    void (*close)(gh_user_store_t **s);
} gh_user_store_ops_t;

struct gh_user_store {
    const gh_user_store_ops_t *ops;
};

/* Opens (creating if needed) <data_dir>/users.db in WAL mode and applies the schema migrations.
 * data_dir is created with mode 0700 when missing (its parent must exist); a new users.db is
 * created 0600. GH_EIO when the directory or file cannot be created, GH_ESTORE when SQLite fails
 * or the database was written by a newer schema version, GH_ENOMEM. Close with
 * gh_user_store_close, which frees everything and sets the pointer to NULL. */
int gh_user_sqlite_open(const char *data_dir, gh_user_store_t **out) GH_WUR;

/*
 * The PostgreSQL backend (user_postgres.c), for any number of nodes sharing one user table.
 * A fixed pool of connections, each with every statement prepared once; the schema is migrated
 * at open under an advisory lock, so nodes starting together migrate once. Usernames are unique
 * by lower(username), as SQLite's NOCASE. When PostgreSQL does not answer, calls fail with
 * GH_ESTORE; the pool reconnects (with a growing backoff) on later calls, without a restart.
 */
typedef struct {
    /* libpq connection string or URL (postgresql://user:password@host:port/db?sslmode=...);
     * its own settings win over the defaults below. Required. */
    const char *url;
    unsigned pool_size;     /* connections; 0 = 4. Callers block (up to timeout_ms) for one. */
    int timeout_ms;         /* connect timeout and statement_timeout; 0 = 5000 */
    gh_store_probe_t probe; /* told of every round trip (store/probe.h); zero: nobody */
} gh_user_postgres_options_t;

/* Connects, migrates and prepares. GH_EINVAL without a URL, GH_ESTORE when PostgreSQL cannot be
 * reached, refuses us, the migration fails or the schema is newer than this build; GH_ENOMEM.
 * Close with gh_user_store_close. */
int gh_user_postgres_open(const gh_user_postgres_options_t *opt, gh_user_store_t **out) GH_WUR;

/*
 * A cache in front of any user store (user_cache.c) for the token check's "who is this session's
 * user". The cache is itself a user store: every operation goes to `backend` (get_by_id too,
 * uncached), and set_password and del drop the user's entry. gh_user_get_by_id_cached answers
 * from the cache when the entry was fetched within ttl_ms; so a change made by another process
 * (the `gatehouse user` command, another node) is seen by token checks within ttl_ms.
 * When the backend fails (GH_ESTORE: PostgreSQL away; GH_EBUSY: its pool stuck on a server that
 * hangs), it answers from an expired entry fetched within stale_max_ms instead, and counts it
 * (ending a user also ends their sessions, so a session that still exists belongs to a user that
 * existed when it was last seen).
 * A fixed table of `entries` (rounded up to a power of two times 8; at most GH_USER_CACHE_MAX),
 * allocated at open and charged to GH_MEM_USERS (about 96 bytes an entry).
 */
#define GH_USER_CACHE_MAX (1u << 24)
#define GH_USER_STALE_MAX_MS ((int64_t)7 * 24 * 3600 * 1000)
typedef struct {
    uint32_t entries;     /* > 0 */
    int64_t ttl_ms;       /* > 0 */
    int64_t stale_max_ms; /* 0 = never answer stale; at most GH_USER_STALE_MAX_MS */
} gh_user_cache_options_t;

/* What the cache answered from stale entries. */
typedef struct {
    uint64_t stale_total;     /* lookups answered stale because the backend failed */
    int64_t stale_age_max_ms; /* age of the oldest entry answered stale since the backend last
                               * answered a lookup (0 once it answers again) */
    uint64_t refused_total;   /* backend failures with no entry young enough (the error out) */
} gh_user_cache_stats_t;

/* Zeros for a store that is not a cache. */
void gh_user_cache_stats(gh_user_store_t *s, gh_user_cache_stats_t *out);

/* On success the cache owns backend (closing the cache closes it); on failure the caller still
 * does. GH_EINVAL for bad options, GH_ENOMEM. */
int gh_user_cache_open(gh_user_store_t *backend, const gh_user_cache_options_t *opt,
                       gh_user_store_t **out) GH_WUR;
/* The user with this id, as get_by_id but with password_hash always empty, from the cache when
 * it is fresh (on any store: without a cache this is get_by_id). */
int gh_user_get_by_id_cached(gh_user_store_t *s, uint64_t id, gh_user_t *out) GH_WUR;

GH_WUR static inline int gh_user_create(gh_user_store_t *s, const char *name, const char *hash,
                                        int64_t now, gh_user_t *out)
{
    return s->ops->create(s, name, hash, now, out);
}
GH_WUR static inline int gh_user_get_by_name(gh_user_store_t *s, const char *name, gh_user_t *out)
{
    return s->ops->get_by_name(s, name, out);
}
GH_WUR static inline int gh_user_get_by_id(gh_user_store_t *s, uint64_t id, gh_user_t *out)
{
    return s->ops->get_by_id(s, id, out);
}
GH_WUR static inline int gh_user_set_password(gh_user_store_t *s, uint64_t id, const char *hash)
{
    return s->ops->set_password(s, id, hash);
}
GH_WUR static inline int gh_user_del(gh_user_store_t *s, uint64_t id)
{
    return s->ops->del(s, id);
}
GH_WUR static inline int gh_user_list(gh_user_store_t *s, uint64_t after, gh_user_t *out,
                                      size_t cap, size_t *n)
{
    return s->ops->list(s, after, out, cap, n);
}
GH_WUR static inline int gh_user_ping(gh_user_store_t *s)
{
    return s->ops->ping(s);
}
GH_WUR static inline int gh_user_set_flags(gh_user_store_t *s, uint64_t id, int admin, int disabled)
{
    return s->ops->set_flags(s, id, admin, disabled);
}
GH_WUR static inline int gh_user_search(gh_user_store_t *s, const char *prefix, uint64_t after,
                                        gh_user_t *out, size_t cap, size_t *n)
{
    return s->ops->search(s, prefix, after, out, cap, n);
}
GH_WUR static inline int gh_user_audit_append(gh_user_store_t *s, gh_audit_event_t *ev)
{
    return s->ops->audit_append(s, ev);
}
GH_WUR static inline int gh_user_audit_read(gh_user_store_t *s, const gh_audit_query_t *q,
                                            gh_audit_event_t *out, size_t cap, size_t *n)
{
    return s->ops->audit_read(s, q, out, cap, n);
}
GH_WUR static inline int gh_user_audited(gh_user_store_t *s, gh_audit_event_t *ev,
                                         int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    return s->ops->audited(s, ev, change, arg);
}
GH_WUR static inline int gh_user_audit_prune(gh_user_store_t *s, int64_t before_ms, size_t max,
                                             size_t *removed)
{
    return s->ops->audit_prune(s, before_ms, max, removed);
}
/* The store that holds the factors (a cache answers its backend). */
static inline gh_user_store_t *gh_user_factor_store(gh_user_store_t *s)
{
    return s->ops->inner ? s->ops->inner(s) : s;
}
GH_WUR static inline int gh_user_factor_add(gh_user_store_t *s, gh_factor_t *f)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_add(s, f);
}
GH_WUR static inline int gh_user_factor_list(gh_user_store_t *s, uint64_t user_id, gh_factor_t *out,
                                             size_t cap, size_t *n)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_list(s, user_id, out, cap, n);
}
GH_WUR static inline int gh_user_factor_get(gh_user_store_t *s, uint64_t user_id, uint64_t id,
                                            gh_factor_t *out)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_get(s, user_id, id, out);
}
GH_WUR static inline int gh_user_factor_by_credential(gh_user_store_t *s, const uint8_t *cred,
                                                      size_t len, gh_factor_t *out)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_by_credential(s, cred, len, out);
}
GH_WUR static inline int gh_user_factor_rename(gh_user_store_t *s, uint64_t user_id, uint64_t id,
                                               const char *name)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_rename(s, user_id, id, name);
}
GH_WUR static inline int gh_user_factor_confirm(gh_user_store_t *s, uint64_t user_id, uint64_t id)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_confirm(s, user_id, id);
}
GH_WUR static inline int gh_user_factor_use(gh_user_store_t *s, uint64_t user_id, uint64_t id,
                                            uint64_t counter, int64_t now_ms)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_use(s, user_id, id, counter, now_ms);
}
GH_WUR static inline int gh_user_factor_del(gh_user_store_t *s, uint64_t user_id, uint64_t id)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_del(s, user_id, id);
}
GH_WUR static inline int gh_user_factor_del_all(gh_user_store_t *s, uint64_t user_id, size_t *n)
{
    s = gh_user_factor_store(s);
    return s->ops->factor_del_all(s, user_id, n);
}
GH_WUR static inline int gh_user_recovery_set(gh_user_store_t *s, uint64_t user_id,
                                              const uint8_t (*hashes)[GH_RECOVERY_HASH_LEN],
                                              size_t n, int64_t now_ms)
{
    s = gh_user_factor_store(s);
    return s->ops->recovery_set(s, user_id, hashes, n, now_ms);
}
GH_WUR static inline int gh_user_recovery_use(gh_user_store_t *s, uint64_t user_id,
                                              const uint8_t hash[GH_RECOVERY_HASH_LEN],
                                              int64_t now_ms)
{
    s = gh_user_factor_store(s);
    return s->ops->recovery_use(s, user_id, hash, now_ms);
}
GH_WUR static inline int gh_user_recovery_state(gh_user_store_t *s, uint64_t user_id, size_t *left,
                                                int64_t *last_used_ms)
{
    s = gh_user_factor_store(s);
    return s->ops->recovery_state(s, user_id, left, last_used_ms);
}
/* OpenID Connect clients and keys (a cache answers its backend, as for factors). */
GH_WUR static inline int gh_user_oidc_client_add(gh_user_store_t *s, const gh_oidc_client_t *c)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_client_add(s, c);
}
GH_WUR static inline int gh_user_oidc_client_get(gh_user_store_t *s, const char *client_id,
                                                 gh_oidc_client_t *out)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_client_get(s, client_id, out);
}
GH_WUR static inline int gh_user_oidc_client_list(gh_user_store_t *s, const char *after,
                                                  gh_oidc_client_t *out, size_t cap, size_t *n)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_client_list(s, after, out, cap, n);
}
GH_WUR static inline int gh_user_oidc_client_del(gh_user_store_t *s, const char *client_id)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_client_del(s, client_id);
}
GH_WUR static inline int gh_user_oidc_key_list(gh_user_store_t *s, gh_oidc_key_rec_t *out,
                                               size_t cap, size_t *n)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_key_list(s, out, cap, n);
}
GH_WUR static inline int gh_user_oidc_key_rotate(gh_user_store_t *s, const gh_oidc_key_rec_t *keys,
                                                 size_t n, int64_t now_ms)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_key_rotate(s, keys, n, now_ms);
}
GH_WUR static inline int gh_user_oidc_key_prune(gh_user_store_t *s, int64_t retired_before_ms,
                                                size_t *removed)
{
    s = gh_user_factor_store(s);
    return s->ops->oidc_key_prune(s, retired_before_ms, removed);
}
static inline void gh_user_store_close(gh_user_store_t **s)
{
    if (s && *s)
        (*s)->ops->close(s);
}

#endif
