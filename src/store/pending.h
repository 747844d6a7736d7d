/*
 * pending.h — pending logins: a user who gave the right password and still owes the second
 * factor (issue #18). A pending login is NOT a session: it lives in its own table, keyed by the
 * hash of a token only the client holds, and no token check ever looks here.
 *
 * The one design decision: the table is bounded and accounted like the session store. Every
 * entry is at most GH_PENDING_TTL_MS old (5 minutes; expiry is exact on every read), allows
 * GH_PENDING_MAX_FAILURES wrong second steps (the last one ends it), and there are at most
 * `cap` of them: at the cap the policy either evicts the oldest (evict-idle) or refuses the new
 * one (refuse: the login answers 503). Its memory is the `pending` component.
 *
 * Backends: memory (this node; pending_memory.c) and Redis (every node; pending_redis.c, with
 * --session-store redis: a login started on one node is finished on another).
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef GH_STORE_PENDING_H
#define GH_STORE_PENDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "store/policy.h"

#define GH_PENDING_TTL_MS (5 * 60 * 1000)
#define GH_PENDING_MAX_FAILURES 5
#define GH_PENDING_KEY_LEN 32 /* the hash of the pending token (auth/token.h's hash) */
#define GH_PENDING_CHALLENGE_MAX 64

/* Methods a pending login may be finished with (a bit set). */
#define GH_PENDING_TOTP (1u << 0)
#define GH_PENDING_RECOVERY (1u << 1)
#define GH_PENDING_WEBAUTHN (1u << 2)

typedef struct {
    uint64_t user_id;
    uint64_t account_key; /* the login throttle's account (wrong codes count against it) */
    int64_t created_at_ms;
    int64_t expires_at_ms;
    uint32_t failures;
    uint32_t methods; /* GH_PENDING_* */
    /* The WebAuthn assertion challenge this login was given (the passkey step sets it with
     * gh_pending_set_challenge); 0 bytes until then. */
    uint8_t challenge[GH_PENDING_CHALLENGE_MAX];
    size_t challenge_len;
} gh_pending_t;

typedef struct {
    uint64_t live;    /* pending logins now */
    uint64_t evicted; /* taken by the cap (evict-idle) */
    uint64_t refused; /* refused at the cap (refuse) */
    uint64_t expired; /* timed out or ended by the 5th wrong step */
} gh_pending_stats_t;

typedef struct gh_pending_store gh_pending_store_t;

typedef struct {
    const char *name;
    /* Adds p under key (expires_at = now + TTL, failures = 0 are set here). GH_EBUSY at the cap
     * under refuse; GH_ENOMEM. */
    int (*put)(gh_pending_store_t *s, const uint8_t key[GH_PENDING_KEY_LEN], const gh_pending_t *p,
               int64_t now_ms);
    /* Reads it: GH_ENOTFOUND when absent or expired. */
    int (*get)(gh_pending_store_t *s, const uint8_t key[GH_PENDING_KEY_LEN], int64_t now_ms,
               gh_pending_t *out);
    /* A wrong step: 0 with *left steps still allowed, or GH_EEXPIRED when that was the last
     * (the entry is gone), GH_ENOTFOUND when absent or expired. */
    int (*fail_step)(gh_pending_store_t *s, const uint8_t key[GH_PENDING_KEY_LEN], int64_t now_ms,
                     uint32_t *left);
    /* Removes it and answers what it held (a finished login: exactly one taker wins).
     * GH_ENOTFOUND when absent or expired. */
    int (*take)(gh_pending_store_t *s, const uint8_t key[GH_PENDING_KEY_LEN], int64_t now_ms,
                gh_pending_t *out);
    /* Stores a WebAuthn challenge on it: GH_ENOTFOUND, GH_EINVAL when too long. */
    int (*set_challenge)(gh_pending_store_t *s, const uint8_t key[GH_PENDING_KEY_LEN],
                         const uint8_t *challenge, size_t len, int64_t now_ms);
    /* Drops expired entries (at most max); returns how many. */
    size_t (*expire)(gh_pending_store_t *s, int64_t now_ms, size_t max);
    void (*stats)(gh_pending_store_t *s, gh_pending_stats_t *out);
    void (*destroy)(gh_pending_store_t **s);
} gh_pending_ops_t;

struct gh_pending_store {
    const gh_pending_ops_t *ops;
};

/* The memory backend: at most cap entries (> 0), the policy at the cap. GH_EINVAL, GH_ENOMEM. */
int gh_pending_memory_create(size_t cap, gh_session_policy_t policy,
                             gh_pending_store_t **out) GH_WUR;

/* The Redis backend (pending_redis.c): shared by every node on the same Redis (url as
 * --redis-url; percent-escapes in it are not decoded). Connects on first use. */
int gh_pending_redis_create(const char *url, size_t cap, gh_session_policy_t policy,
                            gh_pending_store_t **out) GH_WUR;
/* The same table on connections that connect(ctx, &conn) makes (a hiredis redisContext *; the
 * node passes the Redis session store's, gh_session_redis_connect, so sentinels, AUTH, the
 * database and the master check are the session store's own). */
typedef int (*gh_pending_connect_fn)(void *ctx, void **conn);
int gh_pending_redis_create_on(gh_pending_connect_fn connect, void *ctx, size_t cap,
                               gh_session_policy_t policy, gh_pending_store_t **out);

GH_WUR static inline int gh_pending_put(gh_pending_store_t *s, const uint8_t *key,
                                        const gh_pending_t *p, int64_t now)
{
    return s->ops->put(s, key, p, now);
}
GH_WUR static inline int gh_pending_get(gh_pending_store_t *s, const uint8_t *key, int64_t now,
                                        gh_pending_t *out)
{
    return s->ops->get(s, key, now, out);
}
GH_WUR static inline int gh_pending_fail(gh_pending_store_t *s, const uint8_t *key, int64_t now,
                                         uint32_t *left)
{
    return s->ops->fail_step(s, key, now, left);
}
GH_WUR static inline int gh_pending_take(gh_pending_store_t *s, const uint8_t *key, int64_t now,
                                         gh_pending_t *out)
{
    return s->ops->take(s, key, now, out);
}
GH_WUR static inline int gh_pending_set_challenge(gh_pending_store_t *s, const uint8_t *key,
                                                  const uint8_t *challenge, size_t len, int64_t now)
{
    return s->ops->set_challenge(s, key, challenge, len, now);
}
static inline size_t gh_pending_expire(gh_pending_store_t *s, int64_t now, size_t max)
{
    return s->ops->expire(s, now, max);
}
static inline void gh_pending_stats(gh_pending_store_t *s, gh_pending_stats_t *out)
{
    s->ops->stats(s, out);
}
static inline void gh_pending_destroy(gh_pending_store_t **s)
{
    if (s && *s)
        (*s)->ops->destroy(s);
}

#endif
