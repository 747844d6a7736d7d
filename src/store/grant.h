/*
 * grant.h — the OpenID Connect grant store (issue #21): authorization codes, refresh-token
 * families (each with its one current access token) and consents. Handlers never see a backend:
 * the node opens one (memory, memory + SQLite, or Redis, following the session store's choice)
 * and everything goes through the gh_grant_* dispatchers below.
 *
 * The one design decision: nothing here holds a token, only its hash, and a family is a FIXED
 * record. An access token `gha_` and a refresh token `ghr_` both carry their family's 16-byte id,
 * so the token finds its family in one lookup, and the family keeps the hash of its ONE current
 * refresh token and ONE current access token: rotating a refresh token replaces both hashes, a
 * spent refresh token (not the current one) is reuse, and a family costs the same bytes however
 * often it is refreshed. Codes live GH_GRANT_CODE_TTL_MS; a taken code leaves a small tombstone
 * until that deadline, so a replay is answered GH_EREPLAY with the family it issued (which the
 * caller revokes) rather than GH_ENOTFOUND.
 *
 * Bounds: at most max_codes codes (tombstones included), max_families families and at most
 * max_per_user families per user (the user's oldest is revoked by a new one), at most
 * max_per_user consents per user (the oldest given is dropped) and max_families consents in all.
 * At max_codes / max_families the session store's policy applies: evict the oldest, or refuse
 * with GH_EBUSY. Memory: the components `oidc_codes`, `oidc_tokens`, `oidc_consents`.
 *
 * Deadlines are the caller's `now` (ms since the epoch, as the session store): a code is gone at
 * exactly expires_at whether or not the sweep (gh_grant_expire, the node's janitor) ran.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef GH_STORE_GRANT_H
#define GH_STORE_GRANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/token_format.h"
#include "store/policy.h"
#include "store/session.h"

#define GH_GRANT_CODE_TTL_MS 60000
#define GH_GRANT_KEY_LEN GH_TOKEN_HASH_LEN  /* the hash of the `ghc_` code (auth/token.h's) */
#define GH_GRANT_HASH_LEN GH_TOKEN_HASH_LEN /* the hash of an access or refresh token */
#define GH_GRANT_FAMILY_ID_LEN 16
#define GH_GRANT_CLIENT_ID_MAX 64     /* bytes of a client id (printable ASCII) */
#define GH_GRANT_REDIRECT_HASH_LEN 32 /* SHA-256 or BLAKE2b-256 of the redirect_uri */
#define GH_GRANT_CHALLENGE_MAX 43     /* base64url SHA-256: the S256 code_challenge */
#define GH_GRANT_NONCE_MAX 255

/* Scope bits (BRIEF: `openid` required; `offline_access` is not needed for a refresh token). */
#define GH_OIDC_SCOPE_OPENID 1u
#define GH_OIDC_SCOPE_PROFILE 2u
#define GH_OIDC_SCOPE_EMAIL 4u

/* An authorization code as put and as taken. The stored entry keeps the nonce in exactly its
 * length; this struct (a caller's stack copy) has room for the longest. */
typedef struct {
    char client_id[GH_GRANT_CLIENT_ID_MAX + 1];
    uint64_t user_id;
    char session_id[GH_SESSION_ID_LEN + 1]; /* the Gatehouse session's public id */
    uint8_t redirect_hash[GH_GRANT_REDIRECT_HASH_LEN];
    char code_challenge[GH_GRANT_CHALLENGE_MAX + 1]; /* S256 challenge, "" when none */
    char nonce[GH_GRANT_NONCE_MAX + 1];              /* "" when none */
    uint32_t scopes;                                 /* GH_OIDC_SCOPE_* */
    int64_t auth_time_ms;                            /* the session's created_at */
    uint8_t amr;                                     /* GH_AMR_* of the session */
    int64_t expires_at_ms;                           /* set by put: now + 60 s */
    /* take on a replay (GH_EREPLAY): the family the first take issued, if one was bound. */
    bool has_family;
    uint8_t family_id[GH_GRANT_FAMILY_ID_LEN];
} gh_grant_code_t;

/* A refresh-token family: one grant of one client to one user, and its current tokens. */
typedef struct {
    uint8_t id[GH_GRANT_FAMILY_ID_LEN]; /* random, chosen by the caller */
    char client_id[GH_GRANT_CLIENT_ID_MAX + 1];
    uint64_t user_id;
    char session_id[GH_SESSION_ID_LEN + 1]; /* the Gatehouse session it was issued in */
    uint32_t scopes;
    uint8_t amr;
    int64_t auth_time_ms;
    uint8_t refresh_hash[GH_GRANT_HASH_LEN]; /* the current refresh token's hash */
    uint8_t access_hash[GH_GRANT_HASH_LEN];  /* the current access token's hash */
    int64_t access_expires_at_ms;
    int64_t created_at_ms; /* set by create */
    int64_t expires_at_ms; /* set by create: created + refresh_ttl (absolute) */
    uint32_t generation;   /* 0 at create, +1 per rotation */
} gh_grant_family_t;

typedef struct {
    uint64_t codes;    /* live codes (tombstones of taken codes included) */
    uint64_t families; /* live families */
    uint64_t consents;
    uint64_t evicted; /* codes, families and consents taken by a bound */
    uint64_t refused; /* refused at a bound (policy refuse) */
    uint64_t expired; /* codes and families past their deadline */
    uint64_t reuse;   /* rotations that presented a spent refresh token */
    uint64_t replays; /* codes taken twice */
    uint64_t bytes;   /* bytes this node holds for the store (accounted) */
} gh_grant_stats_t;

typedef struct {
    size_t max_codes;           /* > 0 */
    size_t max_families;        /* > 0; also the bound of consents in all */
    uint32_t max_per_user;      /* > 0: families per user, consents per user */
    int64_t refresh_ttl_ms;     /* > 0: a family's absolute lifetime */
    gh_session_policy_t policy; /* at max_codes / max_families */
} gh_grant_limits_t;

typedef struct gh_grant_store gh_grant_store_t;

typedef struct {
    const char *name;
    /* Stores a code under key (the hash of the code); expires_at = now + 60 s is set here.
     * GH_EBUSY at max_codes under refuse; GH_EINVAL for an over-long field; GH_EEXISTS; GH_ENOMEM;
     * GH_ESTORE. */
    int (*put_code)(gh_grant_store_t *s, const uint8_t key[GH_GRANT_KEY_LEN],
                    const gh_grant_code_t *c, int64_t now_ms);
    /* The first take answers 0 with the code and leaves a tombstone until its deadline; a later
     * take answers GH_EREPLAY with out->has_family / out->family_id (the rest of out zeroed);
     * GH_ENOTFOUND when absent or expired (at expires_at exactly). */
    int (*take_code)(gh_grant_store_t *s, const uint8_t key[GH_GRANT_KEY_LEN], int64_t now_ms,
                     gh_grant_code_t *out);
    /* Records on a taken code's tombstone the family its exchange created. GH_ENOTFOUND. */
    int (*code_bind_family)(gh_grant_store_t *s, const uint8_t key[GH_GRANT_KEY_LEN],
                            const uint8_t family_id[GH_GRANT_FAMILY_ID_LEN], int64_t now_ms);

    /* Creates a family from f (id, client, user, session, scopes, amr, auth_time, both hashes,
     * access_expires_at); created_at, expires_at and generation are set here (and copied to out,
     * which may be NULL). The user's oldest family is revoked past max_per_user; at
     * max_families the policy applies (GH_EBUSY under refuse). GH_EEXISTS for a used id. */
    int (*family_create)(gh_grant_store_t *s, const gh_grant_family_t *f, int64_t now_ms,
                         gh_grant_family_t *out);
    /* A live family: GH_ENOTFOUND when absent, revoked or past expires_at. */
    int (*family_get)(gh_grant_store_t *s, const uint8_t id[GH_GRANT_FAMILY_ID_LEN], int64_t now_ms,
                      gh_grant_family_t *out);
    /* Rotation: when presented_refresh_hash is the current refresh hash, both hashes are
     * replaced, generation +1, 0 and the new family in out (may be NULL). When it is not (a
     * spent token came back) the family is revoked here, at once, and GH_EREUSE answers with
     * the family as it was in out (for the audit); GH_ENOTFOUND when absent or expired. */
    int (*family_rotate)(gh_grant_store_t *s, const uint8_t id[GH_GRANT_FAMILY_ID_LEN],
                         const uint8_t presented_refresh_hash[GH_GRANT_HASH_LEN],
                         const uint8_t new_refresh_hash[GH_GRANT_HASH_LEN],
                         const uint8_t new_access_hash[GH_GRANT_HASH_LEN],
                         int64_t access_expires_at_ms, int64_t now_ms, gh_grant_family_t *out);
    /* An access token's check: 0 with the family when access_hash is its current access token
     * and now < access_expires_at (and the family is live); GH_ENOTFOUND otherwise. */
    int (*family_check_access)(gh_grant_store_t *s, const uint8_t id[GH_GRANT_FAMILY_ID_LEN],
                               const uint8_t access_hash[GH_GRANT_HASH_LEN], int64_t now_ms,
                               gh_grant_family_t *out);
    /* Revokes one family: 0, GH_ENOTFOUND. */
    int (*family_revoke)(gh_grant_store_t *s, const uint8_t id[GH_GRANT_FAMILY_ID_LEN]);
    /* Revoke every family issued in a Gatehouse session (logout) / of a user (password change,
     * reset, disable, delete) / of a client (deleted); *n (may be NULL) = how many. */
    int (*revoke_session)(gh_grant_store_t *s, const char *session_id, size_t *n);
    int (*revoke_user)(gh_grant_store_t *s, uint64_t user_id, size_t *n);
    /* Also drops every consent given to the client. */
    int (*revoke_client)(gh_grant_store_t *s, const char *client_id, size_t *n);

    /* Records that the user consented to scopes for the client (replacing what was there). */
    int (*consent_put)(gh_grant_store_t *s, uint64_t user_id, const char *client_id,
                       uint32_t scopes, int64_t now_ms);
    /* The scopes consented: 0, GH_ENOTFOUND when none. */
    int (*consent_get)(gh_grant_store_t *s, uint64_t user_id, const char *client_id,
                       uint32_t *scopes);
    /* Drops the user's consent to the client, or every consent of the user when client_id is
     * NULL (a deleted user). 0, GH_ENOTFOUND when there was none. */
    int (*consent_revoke)(gh_grant_store_t *s, uint64_t user_id, const char *client_id);

    /* Drops expired codes and families, at most max_work of them; returns how many. */
    size_t (*expire)(gh_grant_store_t *s, int64_t now_ms, size_t max_work);
    void (*stats)(gh_grant_store_t *s, gh_grant_stats_t *out);
    void (*destroy)(gh_grant_store_t **s);
    /* A reload's successor, once its predecessor has stopped writing and before it serves:
     * reads again what the predecessor made and ended since this store was opened. NULL for a
     * store every process shares (Redis) or keeps alone (memory). */
    int (*takeover)(gh_grant_store_t *s);
} gh_grant_ops_t;

struct gh_grant_store {
    const gh_grant_ops_t *ops;
};

/* The memory backend (grant_memory.c). GH_EINVAL for bad limits, GH_ENOMEM. */
int gh_grant_memory_open(const gh_grant_limits_t *limits, gh_grant_store_t **out) GH_WUR;

/* The memory backend with families and consents written through to <data_dir>/grants.db
 * (SQLite, WAL) before each call returns, and loaded back at open (expired rows dropped).
 * Codes stay in memory only: they live 60 s, and a restart in between costs one login. */
int gh_grant_persist_open(const char *data_dir, const gh_grant_limits_t *limits,
                          gh_durability_t durability, gh_grant_store_t **out) GH_WUR;

/* The Redis backend (grant_redis.c), shared by every node: connections come from connect(ctx,
 * &conn) (a hiredis redisContext *; the node passes gh_session_redis_connect with the Redis
 * session store, so sentinels, AUTH and the database are the session store's). */
typedef int (*gh_grant_connect_fn)(void *ctx, void **conn);
int gh_grant_redis_open(gh_grant_connect_fn connect, void *ctx, const gh_grant_limits_t *limits,
                        gh_grant_store_t **out) GH_WUR;

GH_WUR static inline int gh_grant_put_code(gh_grant_store_t *s, const uint8_t *key,
                                           const gh_grant_code_t *c, int64_t now)
{
    return s->ops->put_code(s, key, c, now);
}
GH_WUR static inline int gh_grant_take_code(gh_grant_store_t *s, const uint8_t *key, int64_t now,
                                            gh_grant_code_t *out)
{
    return s->ops->take_code(s, key, now, out);
}
GH_WUR static inline int gh_grant_code_bind_family(gh_grant_store_t *s, const uint8_t *key,
                                                   const uint8_t *family_id, int64_t now)
{
    return s->ops->code_bind_family(s, key, family_id, now);
}
GH_WUR static inline int gh_grant_family_create(gh_grant_store_t *s, const gh_grant_family_t *f,
                                                int64_t now, gh_grant_family_t *out)
{
    return s->ops->family_create(s, f, now, out);
}
GH_WUR static inline int gh_grant_family_get(gh_grant_store_t *s, const uint8_t *id, int64_t now,
                                             gh_grant_family_t *out)
{
    return s->ops->family_get(s, id, now, out);
}
GH_WUR static inline int
gh_grant_family_rotate(gh_grant_store_t *s, const uint8_t *id, const uint8_t *presented,
                       const uint8_t *new_refresh, const uint8_t *new_access,
                       int64_t access_expires_at, int64_t now, gh_grant_family_t *out)
{
    return s->ops->family_rotate(s, id, presented, new_refresh, new_access, access_expires_at, now,
                                 out);
}
GH_WUR static inline int gh_grant_family_check_access(gh_grant_store_t *s, const uint8_t *id,
                                                      const uint8_t *access_hash, int64_t now,
                                                      gh_grant_family_t *out)
{
    return s->ops->family_check_access(s, id, access_hash, now, out);
}
GH_WUR static inline int gh_grant_family_revoke(gh_grant_store_t *s, const uint8_t *id)
{
    return s->ops->family_revoke(s, id);
}
GH_WUR static inline int gh_grant_revoke_session(gh_grant_store_t *s, const char *session_id,
                                                 size_t *n)
{
    return s->ops->revoke_session(s, session_id, n);
}
GH_WUR static inline int gh_grant_revoke_user(gh_grant_store_t *s, uint64_t user_id, size_t *n)
{
    return s->ops->revoke_user(s, user_id, n);
}
GH_WUR static inline int gh_grant_revoke_client(gh_grant_store_t *s, const char *client_id,
                                                size_t *n)
{
    return s->ops->revoke_client(s, client_id, n);
}
GH_WUR static inline int gh_grant_consent_put(gh_grant_store_t *s, uint64_t user_id,
                                              const char *client_id, uint32_t scopes, int64_t now)
{
    return s->ops->consent_put(s, user_id, client_id, scopes, now);
}
GH_WUR static inline int gh_grant_consent_get(gh_grant_store_t *s, uint64_t user_id,
                                              const char *client_id, uint32_t *scopes)
{
    return s->ops->consent_get(s, user_id, client_id, scopes);
}
GH_WUR static inline int gh_grant_consent_revoke(gh_grant_store_t *s, uint64_t user_id,
                                                 const char *client_id)
{
    return s->ops->consent_revoke(s, user_id, client_id);
}
static inline size_t gh_grant_expire(gh_grant_store_t *s, int64_t now, size_t max_work)
{
    return s->ops->expire(s, now, max_work);
}
static inline void gh_grant_stats(gh_grant_store_t *s, gh_grant_stats_t *out)
{
    s->ops->stats(s, out);
}
GH_WUR static inline int gh_grant_takeover(gh_grant_store_t *s)
{
    return s->ops->takeover ? s->ops->takeover(s) : 0;
}
static inline void gh_grant_destroy(gh_grant_store_t **s)
{
    if (s && *s)
        (*s)->ops->destroy(s);
}

#endif
