/*
 * session.h — the session store interface. Handlers only ever call gh_session_* below; which
 * backend answers (memory, or Redis shared by several nodes) is chosen once at start, the way
 * Redis's ae.c picks ae_epoll.c. A backend is a struct whose first member is gh_session_store_t.
 *
 * Sessions are keyed by the BLAKE2b-256 hash of the token (common/token_format.h); no backend ever
 * sees or holds a token. Each session also has a random public id (base64url of 16 bytes, unrelated
 * to the token) used to list and revoke it. Deadlines: absolute (created + session_ttl) and idle
 * (last_seen + idle_ttl, sliding on every successful lookup). A lookup past either deadline ends
 * the session and answers GH_ENOTFOUND, so a deadline holds even before the expiry sweep runs.
 *
 * Every way a session ends goes through one release path in each backend and is counted by
 * reason in gh_session_stats_t.ended_total.
 */
#ifndef GH_STORE_SESSION_H
#define GH_STORE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base64url.h"
#include "common/err.h"
#include "common/token_format.h"
#include "store/policy.h"
#include "store/probe.h"

#define GH_SESSION_ID_RAW_LEN 16
#define GH_SESSION_ID_LEN 22 /* base64url of 16 bytes, no padding */

/* X(ENUM, "label") — labels of gatehouse_sessions_ended_total{reason}. */
#define GH_SESSION_END_MAP(X)                                                                      \
    X(LOGOUT, "logout")                                                                            \
    X(REVOKED, "revoked")                                                                          \
    X(IDLE, "idle")                                                                                \
    X(EXPIRED, "expired")                                                                          \
    X(EVICTED, "evicted")

typedef enum {
#define GH__END_ENUM(e, n) GH_END_##e,
    GH_SESSION_END_MAP(GH__END_ENUM)
#undef GH__END_ENUM
        GH_END__COUNT
} gh_session_end_t;

const char *gh_session_end_name(gh_session_end_t reason);

/*
 * The client a session was created for, so people can tell their sessions apart on /account and
 * in GET /v1/sessions: the IP address as the login throttle saw it (the peer, or the client a
 * trusted proxy names) and the User-Agent header. Both are "" when unknown. What a client sends is
 * never kept as it came: gh_session_client_make() bounds and cleans it, and every backend runs
 * what it is given through it again, so a stored client is always valid UTF-8 with no control
 * character, whoever built the struct.
 */
#define GH_SESSION_IP_MAX 45  /* the longest text form of an IPv6 address (INET6_ADDRSTRLEN - 1) */
#define GH_SESSION_UA_MAX 160 /* bytes of User-Agent kept, cut at a character boundary */
typedef struct {
    char ip[GH_SESSION_IP_MAX + 1];         /* "203.0.113.7", "2001:db8::1" or "" */
    char user_agent[GH_SESSION_UA_MAX + 1]; /* cleaned and cut (see above), or "" */
} gh_session_client_t;

/* Fills *out from what a request carried. ip: the text of an IPv4 or IPv6 address (at most
 * GH_SESSION_IP_MAX + 1 bytes are read); anything else, NULL or "::" gives "". ua: ua_len bytes
 * of User-Agent (NULL: ""); an invalid UTF-8 byte, a control character (C0, DEL, C1) and a
 * character that reorders or hides text (bidi overrides and isolates, line and paragraph
 * separators, zero-width marks) each become '?', and the result is cut to at most
 * GH_SESSION_UA_MAX bytes without splitting a character. ip and ua may point into *out (cleaning
 * in place). Idempotent; never fails. */
void gh_session_client_make(gh_session_client_t *out, const char *ip, const char *ua,
                            size_t ua_len);

/* How a session was signed in (its `amr`, a bit set; RFC 8176 names in the ID token). A session
 * restored from a store that did not record it reads as GH_AMR_PWD. */
#define GH_AMR_PWD 1u      /* password */
#define GH_AMR_OTP 2u      /* TOTP code */
#define GH_AMR_HWK 4u      /* WebAuthn: a security key as second step, or a passkey */
#define GH_AMR_RECOVERY 8u /* a recovery code */

/* A copy of one session, safe to use after the store's lock is gone. */
typedef struct {
    char id[GH_SESSION_ID_LEN + 1];
    uint64_t user_id;
    int64_t created_at_ms;
    int64_t last_seen_at_ms;
    int64_t expires_at_ms;      /* absolute deadline */
    int64_t idle_expires_at_ms; /* last_seen + idle_ttl, capped at expires_at */
    uint8_t amr;                /* GH_AMR_* (every backend, lookup included) */
    /* create and list_user fill `client` and set has_client. lookup — the token check, run on
     * every request — does not copy it: it sets has_client false and leaves both strings "". */
    bool has_client;
    gh_session_client_t client;
} gh_session_info_t;

typedef struct {
    uint64_t active;
    uint64_t created_total;
    uint64_t ended_total[GH_END__COUNT];
    uint64_t bytes;        /* bytes this store holds, accounted (memory backend: sessions) */
    uint64_t budget_bytes; /* the session budget; 0 = none */
} gh_session_stats_t;

/* Told of every session that ends, whatever the reason (evictions inside create and restore
 * included). Called with the store's lock held, in the store's own order of events: it must be
 * quick, must not block on anything a store caller may hold, and must not call the store. */
typedef void (*gh_session_end_hook_t)(void *ctx, const uint8_t token_hash[GH_TOKEN_HASH_LEN],
                                      gh_session_end_t reason);

typedef struct {
    int64_t session_ttl_ms;
    int64_t idle_ttl_ms;
    uint32_t max_per_user; /* past this, the user's oldest session is evicted */
    uint64_t budget_bytes; /* at this many accounted bytes, the policy applies */
    gh_session_policy_t policy;
    gh_session_end_hook_t on_end; /* NULL: nobody is told (memory backend only) */
    void *on_end_ctx;
    /* Told of each session the per-user cap (by_cap) or the budget's eviction ends, with its user
     * and public id (memory backend, and the persistence layer over it; the Redis store does not
     * report its cap evictions). NULL: nobody. Called with the store's lock held: it must only
     * copy (into a bounded queue, say), never block, never call the store. */
    void (*on_evict)(void *ctx, uint64_t user_id, const char session_id[GH_SESSION_ID_LEN + 1],
                     bool by_cap);
    void *on_evict_ctx;
    /* Memory backend: distinct clients (IP, user agent) it keeps at once, 0 = 65536; their
     * table holds at most GH_SESSION_CLIENT_AVG_BYTES per client on average besides. */
    uint32_t max_clients;
} gh_session_limits_t;

#define GH_SESSION_CLIENTS_DEFAULT 65536
#define GH_SESSION_CLIENT_AVG_BYTES 128

/* The memory store's client table, for tests and /debug/memory: entries in use, bytes it holds
 * (entries and index, part of the store's bytes), and creates that got the unknown client
 * because the table was at a bound. Zeros for a store that is not a memory store. */
typedef struct {
    uint64_t entries;
    uint64_t bytes;
    uint64_t max_entries;
    uint64_t max_bytes;
    uint64_t full_total;
} gh_session_clients_stats_t;
/* What a load or a takeover brought back (gh_session_persist_open, the handover's TAKEOVER). */
typedef struct {
    uint64_t loaded;     /* sessions put back in memory */
    uint64_t expired;    /* past a deadline: dropped */
    uint64_t dropped;    /* over this configuration's per-user cap or budget, or unreadable */
    uint64_t ended;      /* takeover only: ended by the predecessor after the snapshot */
    int64_t duration_ms; /* wall time of the load or the takeover */
} gh_session_load_stats_t;

/* The steps of a reload's handover of a store that a process holds alone (the persistent
 * memory store); see "persistence of the memory store" below for what each does. */
typedef enum {
    GH_HANDOVER_BEGIN,    /* predecessor, before it starts a successor */
    GH_HANDOVER_DETACH,   /* predecessor, after it stopped serving */
    GH_HANDOVER_ABORT,    /* predecessor, when the successor failed */
    GH_HANDOVER_TAKEOVER, /* successor, once the predecessor detached */
} gh_session_handover_t;

typedef struct gh_session_store gh_session_store_t;

typedef struct {
    const char *name;
    /* Creates a session for `client` (NULL: unknown; cleaned as by gh_session_client_make).
     * May evict (per-user cap; budget under evict-idle). Returns 0, GH_EBUSY at the budget under
     * the refuse policy, GH_ENOMEM, GH_ESTORE; GH_EEXISTS if a session with this hash exists (a
     * caller bug: tokens are random), GH_ELIMIT past the backend's hard maximum of sessions.
     * The client never makes a create fail: where a backend cannot keep it (the memory store's
     * client table is full, or memory for it cannot be had) the session is created with the
     * unknown client, and out->client says what was kept. amr: GH_AMR_* (0 is kept as
     * GH_AMR_PWD), returned by every later lookup and list. */
    int (*create)(gh_session_store_t *s, uint64_t user_id, const uint8_t hash[GH_TOKEN_HASH_LEN],
                  const gh_session_client_t *client, uint8_t amr, int64_t now_ms,
                  gh_session_info_t *out);
    /* Finds a live session and slides its idle deadline. GH_ENOTFOUND when absent or past a
     * deadline (then it is ended as idle/expired). out->client is left empty (see
     * gh_session_info_t). */
    int (*lookup)(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN], int64_t now_ms,
                  gh_session_info_t *out);
    /* Ends the session with this token hash. GH_ENOTFOUND when absent. */
    int (*end)(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
               gh_session_end_t reason);
    /* Ends the session with this public id if it belongs to user_id; else GH_ENOTFOUND. */
    int (*end_by_id)(gh_session_store_t *s, uint64_t user_id, const char *id,
                     gh_session_end_t reason);
    /* Ends all of a user's sessions except the one whose hash is `keep` (NULL: none kept).
     * *ended (may be NULL) receives how many ended. */
    int (*end_user)(gh_session_store_t *s, uint64_t user_id,
                    const uint8_t *keep /* GH_TOKEN_HASH_LEN or NULL */, gh_session_end_t reason,
                    size_t *ended);
    /* Copies up to cap of the user's live sessions, newest first, clients included. */
    int (*list_user)(gh_session_store_t *s, uint64_t user_id, int64_t now_ms,
                     gh_session_info_t *out, size_t cap, size_t *n);
    /* Ends sessions past a deadline, doing at most max_work units of work; returns how many
     * ended. Called often (every 100 ms) by the server's janitor. */
    size_t (*expire)(gh_session_store_t *s, int64_t now_ms, size_t max_work);
    void (*stats)(gh_session_store_t *s, gh_session_stats_t *out);
    /* Releases everything the store holds and sets *s to NULL. */
    void (*destroy)(gh_session_store_t **s);
    /* 0 when the store answers, GH_ESTORE otherwise (for /readyz). NULL for in-process stores,
     * which always answer. */
    int (*ping)(gh_session_store_t *s);
    /* The client table of a store that interns clients (for /debug/memory and /ops). NULL: the
     * store keeps none (zeros). */
    void (*clients)(gh_session_store_t *s, gh_session_clients_stats_t *out);
    /* One step of a reload's handover (stats: TAKEOVER only, may be NULL). NULL for a store that
     * needs none (Redis is shared by every process at once). Returns 0 or an error; ABORT
     * cannot fail. */
    int (*handover)(gh_session_store_t *s, gh_session_handover_t step,
                    gh_session_load_stats_t *stats);
} gh_session_store_ops_t;

struct gh_session_store {
    const gh_session_store_ops_t *ops;
};

/* The in-memory backend (session_memory.c). Charges every byte to GH_MEM_SESSIONS.
 * limits: session_ttl_ms and idle_ttl_ms > 0; max_per_user 0 = no cap; budget_bytes 0 = none.
 * Clients are interned: sessions with the same (IP, user agent) share one refcounted entry of a
 * table bounded by limits->max_clients entries and by GH_SESSION_CLIENT_AVG_BYTES per entry;
 * a session whose client does not fit (or would not fit in the budget) gets the unknown client.
 * Returns 0, GH_EINVAL, GH_ENOMEM. The caller owns *out and frees it with
 * gh_session_store_destroy(), after every other thread has stopped using it; every other
 * operation may be called from any number of threads at once. The store's clock never runs
 * backwards: a `now` older than one it has seen counts as that one. */
int gh_session_memory_open(const gh_session_limits_t *limits, gh_session_store_t **out) GH_WUR;

/*
 * Puts back a session saved earlier (the persistence layer reloading after a restart): `in` is
 * what create/list_user returned (id, user_id, created_at_ms, last_seen_at_ms, expires_at_ms,
 * client, amr (0: GH_AMR_PWD); idle_expires_at_ms and has_client are ignored, the idle deadline is
 * recomputed from the store's idle TTL, and the client is interned as on create). The store keeps
 * its rules: expires_at is capped at created_at + session_ttl, last_seen_at is kept between
 * created_at and now, the per-user cap and the budget apply as on create. Sessions may come in any
 * order (the store re-sorts its expiry lists once, on the next expire). Returns 0; GH_EEXPIRED if
 * the session is already past a deadline at now_ms (nothing stored); GH_ELIMIT if the user is at
 * the cap and this session is older than all of theirs; GH_EINVAL for a malformed id or a store
 * that is not a memory store; else as create.
 */
int gh_session_memory_restore(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
                              const gh_session_info_t *in, int64_t now_ms) GH_WUR;

/* One session's idle clock, as the persistence layer flushes it. */
typedef struct {
    uint8_t token_hash[GH_TOKEN_HASH_LEN];
    int64_t last_seen_at_ms;
} gh_session_touch_t;

/*
 * Copies (token hash, last seen) of up to cap sessions last seen in [since_ms, before_ms],
 * most recently seen first, and returns how many. It walks the least-recently-used list from
 * its newest end, so the cost is the number of sessions touched since since_ms, not the number
 * held: this is how last-seen times reach the disk in batches without token checks writing.
 * To page through more than cap, call again with before_ms = the oldest last_seen returned
 * (sessions at that instant may come twice). 0 for a store that is not a memory store.
 */
size_t gh_session_memory_touched(gh_session_store_t *s, int64_t since_ms, int64_t before_ms,
                                 gh_session_touch_t *out, size_t cap);

/*
 * Copies the token hashes of up to cap of the user's sessions, newest first, and returns how
 * many: only the one whose public id is `id` when id is not NULL (0 for a malformed id), and
 * never the one whose hash is `keep` (NULL: none kept). Sessions past a deadline but not yet
 * swept are included. 0 for a store that is not a memory store. The persistence layer deletes
 * these rows before it ends the sessions in memory, so an end that cannot be written changes
 * nothing.
 */
size_t gh_session_memory_hashes(gh_session_store_t *s, uint64_t user_id, const char *id,
                                const uint8_t *keep, uint8_t (*out)[GH_TOKEN_HASH_LEN], size_t cap);

/* Walks every index of a memory store and checks its invariants (for tests and fuzzers; O(n)
 * under the store's lock), the client table's refcounts included. Returns 0, or GH_EINTERNAL
 * with *why (may be NULL) naming the first broken invariant. */
int gh_session_memory_check(gh_session_store_t *s, const char **why) GH_WUR;

/* The memory store's client table (see gh_session_clients_stats_t); zeros for another store.
 * The rest of Gatehouse reads it through gh_session_clients(). */
void gh_session_memory_clients(gh_session_store_t *s, gh_session_clients_stats_t *out);

/*
 * The Redis backend (session_redis.c): sessions shared by any number of nodes. Every write is one
 * atomic server-side script (EVALSHA) on one pooled connection, and a token check is one GET of a
 * packed value (a script only when it must end the session or record its last use); nothing is
 * cached locally, so a session ended on one node is refused by every node at once. When Redis does
 * not answer, every operation fails with GH_ESTORE (fail closed), the pool reconnects with a
 * growing backoff, and service resumes by itself when Redis is back.
 *
 * Counters in gh_session_stats_t: created_total and ended_total count what THIS node did (each
 * ended session is counted by exactly one node); active is the number of sessions in Redis, the
 * same on every node. bytes is what this node holds for the store (flat: it does not grow with
 * the number of sessions); budget_bytes is 0 (Redis's maxmemory is the budget).
 * A session's client (IP and user agent, already bounded) is part of its packed value in Redis.
 */
typedef struct {
    /* redis://[[user]:password@]host[:port][/db], unix:/path/to/socket[?db=N], or
     * redis-sentinel://[[user]:password@]host:port,host:port,.../MASTER[/db] (sentinels, default
     * port 26379, asked for the master named MASTER; the password is the master's); the
     * password may be percent-encoded. Required. */
    const char *url;
    unsigned pool_size;        /* connections; 0 = 4. Callers block (up to timeout_ms) for one. */
    int timeout_ms;            /* connect and per-command timeout; 0 = 1000 */
    int64_t touch_interval_ms; /* a lookup within this long of the recorded last use does not
                                * write (the idle deadline may then be early by up to this
                                * much); 0 = every lookup writes */
    const char *prefix;        /* key prefix, at most 32 bytes; NULL = "gh:" */
    gh_store_probe_t probe;    /* told of every round trip (store/probe.h); zero: nobody */
    unsigned wait_replicas;    /* > 0: every create and end waits (WAIT, up to timeout_ms) until
                                * this many replicas have it, else fails with GH_ESTORE */
} gh_session_redis_options_t;

/* Opens the Redis store and checks that Redis answers (AUTH, SELECT and script loading included).
 * limits as for the memory store (budget_bytes, policy and max_clients are ignored). Returns 0;
 * GH_EINVAL for bad limits or an unparsable URL; GH_ESTORE when Redis cannot be reached or refuses
 * us; GH_ENOMEM. Thread safety and ownership as for gh_session_memory_open. */
int gh_session_redis_open(const gh_session_limits_t *limits, const gh_session_redis_options_t *opt,
                          gh_session_store_t **out) GH_WUR;

/* Checks that every key of a Redis store points where it should (session <-> expiry index,
 * user index, public id; every session has a TTL), for tests: it walks every key of the store's
 * prefix inside Redis, so never call it on a production Redis. Returns 0, GH_EINTERNAL with *why
 * (may be NULL) naming the first broken invariant, GH_EINVAL for a store that is not Redis, or
 * GH_ESTORE. */
int gh_session_redis_check(gh_session_store_t *s, const char **why) GH_WUR;

/* A new connection (a hiredis redisContext *, which the caller frees with redisFree) to the
 * server a Redis store writes to now: through the sentinels when its URL names them, with its
 * AUTH and database, and only when that server says it is the master. Other Redis users of the
 * node (the pending-login table) connect through it, so they follow a failover the same way.
 * GH_EINVAL for a store that is not Redis, GH_ESTORE when no master answers. */
int gh_session_redis_connect(gh_session_store_t *s, void **conn) GH_WUR;

/*
 * ---- persistence of the memory store (session_persist.c) ----
 *
 * A store with the same interface that keeps a memory store and <data-dir>/sessions.db (SQLite,
 * WAL) in step: a create and every end that matters after a restart (logout, revocation,
 * eviction) are committed before the call returns, so before any response is sent. Idle and
 * absolute expiry write nothing on the request path (an expired row is dropped at load anyway);
 * last-seen times are flushed once a second by a thread of the store, so token checks never
 * write. Tokens are never stored: only their hash, the public id, the user id, the times and the
 * client (IP and user agent; rows written before there were clients load with the unknown one).
 *
 * Reload hands the database from one process (the predecessor) to the next (the successor):
 * the successor opens with `successor` set, loads a snapshot while the predecessor still serves,
 * and writes nothing; the predecessor logs every end from handover_begin on; after the
 * predecessor has stopped (detach), takeover applies what changed since the snapshot. So the
 * successor starts with exactly the predecessor's final state, and a revocation made during
 * the handover is never lost.
 */

/* Opens (creating it 0600 if needed) <data_dir>/sessions.db, opens a memory store with
 * `limits` (limits->on_end must be NULL: this layer sets it) and loads every saved session into
 * it, dropping expired ones. durability: GH_DURABILITY_FULL fsyncs each commit. stats may be
 * NULL. Returns 0, GH_EINVAL, GH_ENOMEM, GH_EIO or GH_ESTORE (logged). The caller owns *out and
 * frees it with gh_session_store_destroy(), which flushes (unless detached) and closes. */
int gh_session_persist_open(const char *data_dir, const gh_session_limits_t *limits,
                            gh_durability_t durability, bool successor,
                            gh_session_load_stats_t *stats, gh_session_store_t **out) GH_WUR;
/* Predecessor, before it starts a successor: flushes, then records every end for takeover. */
int gh_session_persist_handover_begin(gh_session_store_t *s) GH_WUR;
/* Predecessor, after it stopped serving: final flush, then it writes nothing more. */
int gh_session_persist_detach(gh_session_store_t *s) GH_WUR;
/* Predecessor, when the successor failed: it is the writer again and stops recording ends. */
void gh_session_persist_handover_abort(gh_session_store_t *s);
/* Successor, once the predecessor detached: applies creates and ends made since the snapshot,
 * deletes the rows the load dropped, and becomes the writer. stats may be NULL. */
int gh_session_persist_takeover(gh_session_store_t *s, gh_session_load_stats_t *stats) GH_WUR;
/* Writes pending last-seen times and expiry deletes now (the flusher does it every second). */
int gh_session_persist_flush(gh_session_store_t *s) GH_WUR;
/* Writes (and statements of writes) that failed since open; 0 when s is not a persistent store.
 * While the last write failed, gh_session_ping answers GH_ESTORE (so /readyz answers 503) until
 * a write succeeds: the flusher tries a one-page write every second meanwhile. */
uint64_t gh_session_persist_write_failures(gh_session_store_t *s);
/* The memory store inside (for checks in tests); NULL when s is not a persistent store. */
gh_session_store_t *gh_session_persist_memory(gh_session_store_t *s);

/* Dispatch helpers: the only way the rest of Gatehouse touches a store. */
GH_WUR static inline int gh_session_create(gh_session_store_t *s, uint64_t uid, const uint8_t *hash,
                                           const gh_session_client_t *client, int64_t now,
                                           gh_session_info_t *o)
{
    return s->ops->create(s, uid, hash, client, GH_AMR_PWD, now, o);
}
/* A create that records how the user signed in (GH_AMR_*). */
GH_WUR static inline int gh_session_create_amr(gh_session_store_t *s, uint64_t uid,
                                               const uint8_t *hash,
                                               const gh_session_client_t *client, uint8_t amr,
                                               int64_t now, gh_session_info_t *o)
{
    return s->ops->create(s, uid, hash, client, amr, now, o);
}
GH_WUR static inline int gh_session_lookup(gh_session_store_t *s, const uint8_t *hash, int64_t now,
                                           gh_session_info_t *o)
{
    return s->ops->lookup(s, hash, now, o);
}
GH_WUR static inline int gh_session_end(gh_session_store_t *s, const uint8_t *hash,
                                        gh_session_end_t r)
{
    return s->ops->end(s, hash, r);
}
GH_WUR static inline int gh_session_end_by_id(gh_session_store_t *s, uint64_t uid, const char *id,
                                              gh_session_end_t r)
{
    return s->ops->end_by_id(s, uid, id, r);
}
GH_WUR static inline int gh_session_end_user(gh_session_store_t *s, uint64_t uid,
                                             const uint8_t *keep, gh_session_end_t r, size_t *n)
{
    return s->ops->end_user(s, uid, keep, r, n);
}
GH_WUR static inline int gh_session_list_user(gh_session_store_t *s, uint64_t uid, int64_t now,
                                              gh_session_info_t *o, size_t cap, size_t *n)
{
    return s->ops->list_user(s, uid, now, o, cap, n);
}
static inline size_t gh_session_expire(gh_session_store_t *s, int64_t now, size_t max_work)
{
    return s->ops->expire(s, now, max_work);
}
static inline void gh_session_stats(gh_session_store_t *s, gh_session_stats_t *o)
{
    s->ops->stats(s, o);
}
GH_WUR static inline int gh_session_ping(gh_session_store_t *s)
{
    return s->ops->ping ? s->ops->ping(s) : 0;
}
static inline void gh_session_clients(gh_session_store_t *s, gh_session_clients_stats_t *o)
{
    if (s->ops->clients)
        s->ops->clients(s, o);
    else
        *o = (gh_session_clients_stats_t){0};
}
/* True when a reload must hand this store over step by step (gh_session_handover). */
static inline bool gh_session_handover_needed(gh_session_store_t *s)
{
    return s->ops->handover != NULL;
}
GH_WUR static inline int gh_session_handover(gh_session_store_t *s, gh_session_handover_t step,
                                             gh_session_load_stats_t *stats)
{
    return s->ops->handover ? s->ops->handover(s, step, stats) : 0;
}
/* The ABORT step, which cannot fail. */
static inline void gh_session_handover_abort(gh_session_store_t *s)
{
    if (s->ops->handover)
        (void)s->ops->handover(s, GH_HANDOVER_ABORT, NULL);
}
static inline void gh_session_store_destroy(gh_session_store_t **s)
{
    if (s && *s)
        (*s)->ops->destroy(s);
}

#endif
