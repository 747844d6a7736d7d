/*
 * session_redis.c — the session store shared by every node: sessions live in Redis, this node
 * keeps only a fixed pool of connections.
 *
 * The one decision a reader must know: every operation is ONE server-side Lua script, run with
 * EVALSHA on one connection, so each is atomic in Redis — a revocation, a per-user cap eviction,
 * a password change's "end all but this one" can never interleave with another node's lookup —
 * and there is no local cache anywhere: a lookup always asks Redis, so a session ended on any
 * node is refused on every node from that moment. When Redis does not answer, operations fail
 * with GH_ESTORE (the API answers 503 store_unavailable), never with a guess.
 *
 * Keys (P = prefix, "gh:" by default; H = hex of the token hash, never the token):
 *   P s:H        hash {u user id, i public id, c created, l last seen, e absolute deadline,
 *                ip, ua: the client, cleaned and bounded by this node before it is sent; absent in
 *                sessions made before clients were kept}; PEXPIRE at its deadline + GRACE_MS, a
 *                backstop for when no node runs. A lookup never reads ip and ua: only listing
 *                does, so the token check costs what it did.
 *   P u:<uid>    zset of H by creation time: the user's sessions, for list, cap, revoke-all
 *   P i:<id>     string H: public id -> session, for end_by_id; expires at the absolute deadline
 *   P x          zset of H by deadline min(e, l + idle): the expiry index. A session ends exactly
 *                when its member leaves P x, and the script that removes it counts it, so every
 *                ended session is counted once across all nodes.
 * Deadlines are decided by the scripts from the caller's `now` (not from Redis's clock), so
 * they hold to the millisecond whether or not the sweep has run, and tests can inject time.
 *
 * The idle refresh is coarsened: a lookup writes last-seen only when the recorded one is at least
 * touch_interval_ms old, so a token checked many times a second costs one read, not a write.
 * The per-user index stays bounded: creates drop members past the absolute deadline and, at the
 * cap, members whose session is gone; the expiry sweep (expire(), every node's janitor) removes
 * the rest in batches of at most SWEEP_BATCH, so no script holds Redis for long.
 *
 * Connections: a fixed pool; a caller takes one (waiting up to the timeout), runs one script and
 * gives it back. An I/O error bumps the pool's generation, so every connection made before the
 * failure is re-made before its next use, and starts a backoff (50 ms doubling to 2 s) during
 * which operations fail at once instead of each waiting for a timeout. Scripts are loaded on
 * every new connection (a restarted Redis has none) and again on NOSCRIPT.
 *
 * Memory: the store struct and the pool are charged to GH_MEM_SESSIONS and never grow; hiredis
 * allocates its reply objects and buffers with malloc (0.14 has no allocator hooks), bounded per
 * connection and freed after every command.
 */
#include "store/session.h"

#include <assert.h>
#include <ctype.h>
#include <hiredis.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/pool.h"
#include "store/probe.h"

#define DEFAULT_POOL 4
#define DEFAULT_TIMEOUT_MS 1000
#define DEFAULT_PREFIX "gh:"
#define PREFIX_MAX 32
#define GRACE_MS                                                                                   \
    60000 /* Redis's own TTL runs this long past the deadline: the sweep goes first                \
           */
#define SWEEP_BATCH 1000
#define HEX_LEN (GH_TOKEN_HASH_LEN * 2)
#define MAX_ARGS 12

/* ---- scripts ---- */

/* Shared by every script. ARGV[1] prefix, ARGV[2] idle TTL, ARGV[3] now, ARGV[4] grace;
 * each script's own arguments start at ARGV[5]. */
#define PRELUDE                                                                                    \
    "local P, IDLE, NOW, GRACE = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), "                  \
    "tonumber(ARGV[4])\n"                                                                          \
    "local X = P .. 'x'\n"                                                                         \
    "local function skey(h) return P .. 's:' .. h end\n"                                           \
    "local function ukey(u) return P .. 'u:' .. u end\n"                                           \
    "local function ikey(id) return P .. 'i:' .. id end\n" /* the deadline and which one it is:    \
                                                              absolute when it comes first or      \
                                                              together */                          \
    "local function dl(l, e) if e <= l + IDLE then return e, 'expired' end "                       \
    "return l + IDLE, 'idle' end\n" /* ends one session everywhere; 1 when it was there to end */  \
    "local function finish(h)\n"                                                                   \
    "  local f = redis.call('HMGET', skey(h), 'u', 'i')\n"                                         \
    "  local n = redis.call('ZREM', X, h)\n"                                                       \
    "  if f[1] then\n"                                                                             \
    "    redis.call('DEL', skey(h))\n"                                                             \
    "    redis.call('ZREM', ukey(f[1]), h)\n"                                                      \
    "    if f[2] then redis.call('DEL', ikey(f[2])) end\n"                                         \
    "    n = 1\n"                                                                                  \
    "  end\n"                                                                                      \
    "  return n\n"                                                                                 \
    "end\n"

enum { SC_CREATE, SC_LOOKUP, SC_END, SC_END_BY_ID, SC_END_USER, SC_LIST, SC_EXPIRE, SC__COUNT };

static const char *const scripts[SC__COUNT] = {
    /* ARGV[5] hash, [6] uid, [7] public id, [8] absolute deadline, [9] cap (0 none),
     * [10] session TTL, [11] client IP, [12] client user agent. Returns {0, evicted, idle,
     * expired}, {-1} if the hash exists, {-2} if the public id does. */
    [SC_CREATE] = PRELUDE
    "local h, u, id, e, cap = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "local sk, uk = skey(h), ukey(u)\n"
    "if redis.call('EXISTS', sk) == 1 then return {-1} end\n"
    "if redis.call('EXISTS', ikey(id)) == 1 then return {-2} end\n"
    "local evicted, idle, expired = 0, 0, 0\n"
    /* the user's sessions created a whole TTL ago are past their absolute deadline: end them */
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', uk, '-inf', NOW - tonumber(ARGV[10]))) do\n"
    "  if redis.call('EXISTS', skey(m)) == 0 then redis.call('ZREM', uk, m)\n"
    "  else expired = expired + finish(m) end\n"
    "end\n"
    "if cap > 0 and redis.call('ZCARD', uk) >= cap then\n"
    "  local live = {}\n"
    "  for _, m in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
    "    local f = redis.call('HMGET', skey(m), 'l', 'e')\n"
    "    if not f[1] then redis.call('ZREM', uk, m)\n"
    "    else\n"
    "      local d, why = dl(tonumber(f[1]), tonumber(f[2]))\n"
    "      if NOW < d then live[#live + 1] = m\n"
    "      elseif finish(m) == 1 then\n"
    "        if why == 'idle' then idle = idle + 1 else expired = expired + 1 end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local i = 1\n"
    "  while #live - i + 1 >= cap do\n"
    "    evicted = evicted + finish(live[i])\n"
    "    i = i + 1\n"
    "  end\n"
    "end\n"
    "redis.call('HSET', sk, 'u', u, 'i', id, 'c', ARGV[3], 'l', ARGV[3], 'e', ARGV[8], 'ip',"
    " ARGV[11], 'ua', ARGV[12])\n"
    "local d = dl(NOW, e)\n"
    "redis.call('PEXPIRE', sk, d - NOW + GRACE)\n"
    "redis.call('ZADD', X, d, h)\n"
    "redis.call('ZADD', uk, NOW, h)\n"
    "if redis.call('PTTL', uk) < e - NOW + GRACE then\n"
    "  redis.call('PEXPIRE', uk, e - NOW + GRACE)\n"
    "end\n"
    "redis.call('SET', ikey(id), h, 'PX', e - NOW + GRACE)\n"
    "return {0, evicted, idle, expired}\n",

    /* ARGV[5] hash, [6] touch interval. Returns {0} not found, {1, reason, counted} ended now
     * (reason "idle" or "expired"), or {2, u, i, c, l, e}. */
    [SC_LOOKUP] = PRELUDE "local h = ARGV[5]\n"
                          "local sk = skey(h)\n"
                          "local f = redis.call('HMGET', sk, 'u', 'i', 'c', 'l', 'e')\n"
                          "if not f[1] then return {0} end\n"
                          "local l, e = tonumber(f[4]), tonumber(f[5])\n"
                          "local d, why = dl(l, e)\n"
                          "if NOW >= d then return {1, why, finish(h)} end\n"
                          "if NOW > l and NOW - l >= tonumber(ARGV[6]) then\n"
                          "  redis.call('HSET', sk, 'l', ARGV[3])\n"
                          "  f[4] = ARGV[3]\n"
                          "  local nd = dl(NOW, e)\n"
                          "  redis.call('PEXPIRE', sk, nd - NOW + GRACE)\n"
                          "  redis.call('ZADD', X, 'XX', nd, h)\n"
                          "end\n"
                          "return {2, f[1], f[2], f[3], f[4], f[5]}\n",

    /* ARGV[5] hash. Returns 1 when ended, 0 when absent. */
    [SC_END] = PRELUDE "if redis.call('EXISTS', skey(ARGV[5])) == 0 then return 0 end\n"
                       "return finish(ARGV[5])\n",

    /* ARGV[5] uid, [6] public id. Returns 1 when ended, 0 when absent or not the user's. */
    [SC_END_BY_ID] = PRELUDE "local h = redis.call('GET', ikey(ARGV[6]))\n"
                             "if not h then return 0 end\n"
                             "if redis.call('HGET', skey(h), 'u') ~= ARGV[5] then return 0 end\n"
                             "return finish(h)\n",

    /* ARGV[5] uid, [6] hash to keep or "". Returns how many ended. */
    [SC_END_USER] = PRELUDE "local uk, n = ukey(ARGV[5]), 0\n"
                            "for _, m in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
                            "  if m ~= ARGV[6] then\n"
                            "    if redis.call('EXISTS', skey(m)) == 1 then n = n + finish(m)\n"
                            "    else redis.call('ZREM', uk, m) end\n"
                            "  end\n"
                            "end\n"
                            "return n\n",

    /* ARGV[5] uid, [6] cap. Read only. Returns {i, c, l, e, ip, ua, ...} of live sessions,
     * newest first ("" for a client a session does not have). */
    [SC_LIST] = PRELUDE "local out, cap = {}, tonumber(ARGV[6])\n"
                        "for _, m in ipairs(redis.call('ZREVRANGE', ukey(ARGV[5]), 0, -1)) do\n"
                        "  if #out >= cap * 6 then break end\n"
                        "  local f = redis.call('HMGET', skey(m), 'i', 'c', 'l', 'e', 'ip', 'ua')\n"
                        "  if f[1] and NOW < dl(tonumber(f[3]), tonumber(f[4])) then\n"
                        "    for k = 1, 6 do out[#out + 1] = f[k] or '' end\n"
                        "  end\n"
                        "end\n"
                        "return out\n",

    /* ARGV[5] batch. Returns {idle, expired, examined}. */
    [SC_EXPIRE] = PRELUDE
    "local ms = redis.call('ZRANGEBYSCORE', X, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))\n"
    "local idle, expired = 0, 0\n"
    "for _, h in ipairs(ms) do\n"
    "  local f = redis.call('HMGET', skey(h), 'l', 'e')\n"
    "  if f[1] then\n"
    "    local d, why = dl(tonumber(f[1]), tonumber(f[2]))\n"
    "    if NOW < d then redis.call('ZADD', X, d, h)\n"
    "    elseif finish(h) == 1 then\n"
    "      if why == 'idle' then idle = idle + 1 else expired = expired + 1 end\n"
    "    end\n"
    "  elseif redis.call('ZREM', X, h) == 1 then\n"
    /* Redis's backstop TTL took the key first (no node ran for GRACE_MS): the reason is lost */
    "    idle = idle + 1\n"
    "  end\n"
    "end\n"
    "return {idle, expired, #ms}\n",
};

static const gh_store_op_t script_op[SC__COUNT] = {
    [SC_CREATE] = GH_STORE_OP_CREATE,     [SC_LOOKUP] = GH_STORE_OP_LOOKUP,
    [SC_END] = GH_STORE_OP_END,           [SC_END_BY_ID] = GH_STORE_OP_END,
    [SC_END_USER] = GH_STORE_OP_END_USER, [SC_LIST] = GH_STORE_OP_LIST,
    [SC_EXPIRE] = GH_STORE_OP_EXPIRE,
};

/* ---- the store ---- */

static const gh_session_store_ops_t redis_ops; /* below: the check tells our stores by it */

typedef struct {
    gh_session_store_t base; /* first: the interface pointer is the struct pointer */
    gh_session_limits_t limits;
    int64_t touch_interval_ms;
    struct timeval timeout;
    int timeout_ms;

    /* where Redis is */
    bool unix_socket;
    char host[256]; /* host name, or the socket path */
    int port;
    char user[128], password[256];
    int db;
    char prefix[PREFIX_MAX + 1];
    char idle_arg[24], grace_arg[24]; /* ARGV[2], ARGV[4] */

    gh_store_pool_t *pool;   /* connections with back-off (store/pool.c) */
    gh_store_probe_t probe;  /* told of every round trip */
    pthread_mutex_t lock;    /* guards sha */
    char sha[SC__COUNT][41]; /* script digests, the same for every connection */
    bool sha_known;

    _Atomic int64_t clock_ms; /* the latest `now` seen: the store's clock never runs back */
    atomic_uint_fast64_t created_total;
    atomic_uint_fast64_t ended_total[GH_END__COUNT];
    atomic_uint_fast64_t active; /* the last count Redis gave */
    size_t bytes;                /* accounted bytes of the struct and the pool, fixed at open */
} redis_store_t;

static int64_t clamp_now(redis_store_t *s, int64_t now)
{
    int64_t seen = atomic_load_explicit(&s->clock_ms, memory_order_relaxed);
    while (now > seen && !atomic_compare_exchange_weak(&s->clock_ms, &seen, now)) {
    }
    return now > seen ? now : seen;
}

static void count_end(redis_store_t *s, gh_session_end_t reason, uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(&s->ended_total[reason], n, memory_order_relaxed);
}

static void to_hex(const uint8_t hash[GH_TOKEN_HASH_LEN], char out[HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < GH_TOKEN_HASH_LEN; i++) {
        out[2 * i] = digits[hash[i] >> 4];
        out[2 * i + 1] = digits[hash[i] & 15];
    }
    out[HEX_LEN] = '\0';
}

/* ---- URL ---- */

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Copies [p, p+n) into out (cap bytes) decoding %XX; GH_EINVAL when it does not fit or a
 * percent sign is not followed by two hex digits. */
static int copy_decoded(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= n)
                return GH_EINVAL;
            int hi = hexval((unsigned char)p[i + 1]), lo = hexval((unsigned char)p[i + 2]);
            if (hi < 0 || lo < 0)
                return GH_EINVAL;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap)
            return GH_EINVAL;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

static int parse_db(const char *p, int *db)
{
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end != '\0' || v < 0 || v > 100000)
        return GH_EINVAL;
    *db = (int)v;
    return 0;
}

static int parse_url(redis_store_t *s, const char *url)
{
    s->port = 6379;
    s->db = 0;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2;
        const char *q = strchr(path, '?');
        size_t n = q ? (size_t)(q - path) : strlen(path);
        if (n == 0 || copy_decoded(path, n, s->host, sizeof s->host) != 0)
            return GH_EINVAL;
        s->unix_socket = true;
        if (q) {
            if (strncmp(q, "?db=", 4) != 0)
                return GH_EINVAL;
            return parse_db(q + 4, &s->db);
        }
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return GH_EINVAL; /* rediss:// needs TLS, which this hiredis does not have */
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?#");
    const char *at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (copy_decoded(p, (size_t)(colon - p), s->user, sizeof s->user) != 0 ||
                copy_decoded(colon + 1, (size_t)(at - colon - 1), s->password,
                             sizeof s->password) != 0)
                return GH_EINVAL;
        } else if (copy_decoded(p, (size_t)(at - p), s->password, sizeof s->password) != 0) {
            return GH_EINVAL; /* redis://secret@host: a password alone */
        }
        p = at + 1;
    }
    const char *host_end;
    if (*p == '[') { /* [::1]:6379 */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return GH_EINVAL;
        if ((size_t)(rb - p - 1) >= sizeof s->host || rb == p + 1)
            return GH_EINVAL;
        memcpy(s->host, p + 1, (size_t)(rb - p - 1));
        s->host[rb - p - 1] = '\0';
        host_end = rb + 1;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (!host_end)
            host_end = end;
        if (host_end == p || (size_t)(host_end - p) >= sizeof s->host)
            return GH_EINVAL;
        memcpy(s->host, p, (size_t)(host_end - p));
        s->host[host_end - p] = '\0';
    }
    if (host_end < end) {
        if (*host_end != ':')
            return GH_EINVAL;
        char digits[8];
        size_t n = (size_t)(end - host_end - 1);
        if (n == 0 || n >= sizeof digits)
            return GH_EINVAL;
        memcpy(digits, host_end + 1, n);
        digits[n] = '\0';
        char *e;
        long port = strtol(digits, &e, 10);
        if (*e != '\0' || port < 1 || port > 65535)
            return GH_EINVAL;
        s->port = (int)port;
    }
    if (*end == '/' && end[1] != '\0')
        return parse_db(end + 1, &s->db);
    if (*end == '?' || *end == '#')
        return GH_EINVAL;
    return 0;
}

/* ---- connections ---- */

static void log_reply_error(const char *what, const redisReply *r)
{
    GH_LOG(GH_LOG_ERROR, "session store error", GH_LS("op", what),
           GH_LS("detail", r && r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply"));
}

/* Loads every script on c (pipelined: one round trip) and records their digests. */
static int load_scripts(redis_store_t *s, redisContext *c)
{
    for (int i = 0; i < SC__COUNT; i++)
        if (redisAppendCommand(c, "SCRIPT LOAD %s", scripts[i]) != REDIS_OK)
            return GH_ESTORE;
    int ret = 0;
    for (int i = 0; i < SC__COUNT; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return GH_ESTORE; /* the connection is broken: the caller drops it */
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            log_reply_error("script load", r);
            ret = GH_ESTORE;
        } else {
            pthread_mutex_lock(&s->lock);
            memcpy(s->sha[i], r->str, 40);
            s->sha[i][40] = '\0';
            pthread_mutex_unlock(&s->lock);
        }
        freeReplyObject(r);
    }
    return ret;
}

/* A simple command whose reply must be +OK. */
static int expect_ok(redisContext *c, const char *what, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int ret = 0;
    if (!r || r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0) {
        log_reply_error(what, r);
        ret = GH_ESTORE;
    }
    if (r)
        freeReplyObject(r);
    return ret;
}

static int connect_one(redis_store_t *s, redisContext **out)
{
    int64_t t0 = gh_clock_mono_ns();
    redisContext *c = s->unix_socket ? redisConnectUnixWithTimeout(s->host, s->timeout)
                                     : redisConnectWithTimeout(s->host, s->port, s->timeout);
    int ret = GH_ESTORE;
    if (!c || c->err) {
        GH_LOG(GH_LOG_DEBUG, "session store connect failed",
               GH_LS("detail", c ? c->errstr : "out of memory"));
        goto out;
    }
    if (redisSetTimeout(c, s->timeout) != REDIS_OK)
        goto out;
    if (!s->unix_socket)
        (void)redisEnableKeepAlive(c);
    if (s->password[0]) {
        const char *argv[3] = {"AUTH", s->user[0] ? s->user : s->password, s->password};
        if (expect_ok(c, "auth", s->user[0] ? 3 : 2, argv) != 0)
            goto out;
    }
    if (s->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->db);
        const char *argv[2] = {"SELECT", db};
        if (expect_ok(c, "select", 2, argv) != 0)
            goto out;
    }
    if (load_scripts(s, c) != 0)
        goto out;
    ret = 0;
out:
    gh_store_observe(&s->probe, GH_STORE_REDIS, GH_STORE_OP_CONNECT, gh_clock_mono_ns() - t0,
                     ret != 0);
    if (ret != 0 && c) {
        redisFree(c);
        c = NULL;
    }
    *out = c;
    return ret;
}

/* The pool's callbacks (store/pool.h). */
static int pool_connect(void *ctx, void **conn)
{
    redisContext *c = NULL;
    int rc = connect_one(ctx, &c);
    *conn = c;
    return rc;
}

static void pool_disconnect(void *ctx, void *conn)
{
    (void)ctx;
    redisFree(conn);
}

/* Errors that mean "this connection leads to the wrong server now", not "this command failed". */
static bool server_moved(const char *err)
{
    return strncmp(err, "READONLY", 8) == 0 || strncmp(err, "LOADING", 7) == 0 ||
           strncmp(err, "MASTERDOWN", 10) == 0;
}

/* Runs one command on a pooled connection. On success *reply is the reply (free it with
 * freeReplyObject); an error reply is returned as a reply, for the caller to judge. */
static int command(redis_store_t *s, gh_store_op_t op, int argc, const char **argv,
                   const size_t *argvlen, redisReply **reply)
{
    unsigned slot;
    void *conn;
    int64_t t0 = gh_clock_mono_ns();
    int rc = gh_store_pool_acquire(s->pool, &slot, &conn);
    if (rc != 0) {
        gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0, true);
        return rc;
    }
    redisContext *c = conn;
    redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
    if (!r) {
        GH_LOG(GH_LOG_WARN, "session store command failed", GH_LS("detail", c->errstr));
        gh_store_pool_release(s->pool, slot, true);
        gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0, true);
        return GH_ESTORE;
    }
    if (r->type == REDIS_REPLY_ERROR && server_moved(r->str)) {
        /* This server is no longer a primary we can use (a failover made it a replica, or it
         * is still loading): drop every connection, so the next ones find the primary anew. */
        GH_LOG(GH_LOG_WARN, "session store refused: reconnecting", GH_LS("detail", r->str));
        freeReplyObject(r);
        gh_store_pool_release(s->pool, slot, true);
        gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0, true);
        return GH_ESTORE;
    }
    gh_store_pool_release(s->pool, slot, false);
    gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0,
                     r->type == REDIS_REPLY_ERROR);
    *reply = r;
    return 0;
}

/* Runs script `sc` with the shared arguments, now_ms and `extra` of its own. An error reply
 * is logged and answered with GH_ESTORE; NOSCRIPT (Redis restarted or flushed its scripts
 * between our load and now) reloads the scripts and tries once more. */
static int run_script(redis_store_t *s, int sc, int64_t now_ms, int nextra, const char **extra,
                      redisReply **reply)
{
    const char *argv[MAX_ARGS + 8];
    char now[24], sha[41];
    assert(nextra + 7 <= MAX_ARGS + 8);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_mutex_lock(&s->lock);
        memcpy(sha, s->sha[sc], sizeof sha);
        pthread_mutex_unlock(&s->lock);
        int argc = 0;
        argv[argc++] = "EVALSHA";
        argv[argc++] = sha;
        argv[argc++] = "0";
        argv[argc++] = s->prefix;
        argv[argc++] = s->idle_arg;
        argv[argc++] = now;
        argv[argc++] = s->grace_arg;
        for (int i = 0; i < nextra; i++)
            argv[argc++] = extra[i];
        redisReply *r = NULL;
        int rc = command(s, script_op[sc], argc, argv, NULL, &r);
        if (rc != 0)
            return rc;
        if (r->type != REDIS_REPLY_ERROR) {
            *reply = r;
            return 0;
        }
        bool noscript = strncmp(r->str, "NOSCRIPT", 8) == 0;
        if (!noscript || attempt == 1) {
            log_reply_error("script", r);
            freeReplyObject(r);
            return GH_ESTORE;
        }
        freeReplyObject(r);
        /* Reload on some connection; every connection shares Redis's script cache. */
        unsigned slot;
        void *conn;
        if ((rc = gh_store_pool_acquire(s->pool, &slot, &conn)) != 0)
            return rc;
        redisContext *c = conn;
        rc = load_scripts(s, c);
        gh_store_pool_release(s->pool, slot, rc != 0 && c->err != 0);
        if (rc != 0)
            return rc;
    }
    return GH_ESTORE;
}

static bool int_at(const redisReply *r, size_t i, long long *v)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return false;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER) {
        *v = e->integer;
        return true;
    }
    if (e->type == REDIS_REPLY_STRING) {
        char *end;
        *v = strtoll(e->str, &end, 10);
        return end != e->str && *end == '\0';
    }
    return false;
}

static bool u64_at(const redisReply *r, size_t i, uint64_t *v)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_STRING)
        return false;
    const char *p = r->element[i]->str;
    char *end;
    if (!isdigit((unsigned char)*p))
        return false;
    *v = strtoull(p, &end, 10);
    return *end == '\0';
}

static bool str_at(const redisReply *r, size_t i, const char **v, size_t *len)
{
    if (r->type != REDIS_REPLY_ARRAY || i >= r->elements ||
        r->element[i]->type != REDIS_REPLY_STRING)
        return false;
    *v = r->element[i]->str;
    *len = r->element[i]->len;
    return true;
}

static int malformed(redisReply *r, const char *op)
{
    GH_LOG(GH_LOG_ERROR, "session store gave an unexpected reply", GH_LS("op", op));
    freeReplyObject(r);
    return GH_ESTORE;
}

/* client: what to report (create, list), or NULL for a lookup, which reads no client. */
static void fill_info(redis_store_t *s, gh_session_info_t *out, uint64_t uid, const char *id,
                      size_t idlen, long long c, long long l, long long e,
                      const gh_session_client_t *client)
{
    memset(out, 0, offsetof(gh_session_info_t, client));
    memcpy(out->id, id, idlen < GH_SESSION_ID_LEN ? idlen : GH_SESSION_ID_LEN);
    out->user_id = uid;
    out->created_at_ms = c;
    out->last_seen_at_ms = l;
    out->expires_at_ms = e;
    int64_t idle = l + s->limits.idle_ttl_ms;
    out->idle_expires_at_ms = idle < e ? idle : e;
    out->has_client = client != NULL;
    if (client)
        out->client = *client;
    else
        out->client.ip[0] = out->client.user_agent[0] = '\0';
}

/* ---- operations ---- */

static int r_create(gh_session_store_t *base, uint64_t user_id, const uint8_t *hash,
                    const gh_session_client_t *client, int64_t now, gh_session_info_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    now = clamp_now(s, now);
    gh_session_client_t cl;
    if (client)
        gh_session_client_make(&cl, client->ip, client->user_agent,
                               strnlen(client->user_agent, sizeof client->user_agent));
    else
        cl.ip[0] = cl.user_agent[0] = '\0';
    char hex[HEX_LEN + 1], uid[24], id[GH_SESSION_ID_LEN + 1], exp[24], cap[16], ttl[24];
    to_hex(hash, hex);
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    int64_t expires = now + s->limits.session_ttl_ms;
    snprintf(exp, sizeof exp, "%lld", (long long)expires);
    snprintf(cap, sizeof cap, "%u", s->limits.max_per_user);
    snprintf(ttl, sizeof ttl, "%lld", (long long)s->limits.session_ttl_ms);
    for (int attempt = 0; attempt < 3; attempt++) {
        uint8_t raw[GH_SESSION_ID_RAW_LEN];
        randombytes_buf(raw, sizeof raw);
        gh_base64url_encode(raw, sizeof raw, id);
        id[GH_SESSION_ID_LEN] = '\0';
        const char *extra[] = {hex, uid, id, exp, cap, ttl, cl.ip, cl.user_agent};
        redisReply *r = NULL;
        int rc = run_script(s, SC_CREATE, now, 8, extra, &r);
        if (rc != 0)
            return rc;
        long long status, evicted, idle, expired;
        if (!int_at(r, 0, &status))
            return malformed(r, "create");
        if (status == -1) {
            freeReplyObject(r);
            return GH_EEXISTS;
        }
        if (status == -2) { /* a public id that is taken: draw another */
            freeReplyObject(r);
            continue;
        }
        if (status != 0 || !int_at(r, 1, &evicted) || !int_at(r, 2, &idle) ||
            !int_at(r, 3, &expired))
            return malformed(r, "create");
        freeReplyObject(r);
        atomic_fetch_add_explicit(&s->created_total, 1, memory_order_relaxed);
        count_end(s, GH_END_EVICTED, (uint64_t)evicted);
        count_end(s, GH_END_IDLE, (uint64_t)idle);
        count_end(s, GH_END_EXPIRED, (uint64_t)expired);
        if (out)
            fill_info(s, out, user_id, id, GH_SESSION_ID_LEN, now, now, expires, &cl);
        return 0;
    }
    return GH_EINTERNAL; /* three random 128-bit ids taken: the generator is broken */
}

static int r_lookup(gh_session_store_t *base, const uint8_t *hash, int64_t now,
                    gh_session_info_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    now = clamp_now(s, now);
    char hex[HEX_LEN + 1], touch[24];
    to_hex(hash, hex);
    snprintf(touch, sizeof touch, "%lld", (long long)s->touch_interval_ms);
    const char *extra[] = {hex, touch};
    redisReply *r = NULL;
    int rc = run_script(s, SC_LOOKUP, now, 2, extra, &r);
    if (rc != 0)
        return rc;
    long long status, counted, c, l, e;
    uint64_t uid;
    const char *why, *id;
    size_t whylen, idlen;
    if (!int_at(r, 0, &status))
        return malformed(r, "lookup");
    if (status == 0) {
        freeReplyObject(r);
        return GH_ENOTFOUND;
    }
    if (status == 1) {
        if (!str_at(r, 1, &why, &whylen) || !int_at(r, 2, &counted))
            return malformed(r, "lookup");
        count_end(s, strcmp(why, "idle") == 0 ? GH_END_IDLE : GH_END_EXPIRED, (uint64_t)counted);
        freeReplyObject(r);
        return GH_ENOTFOUND;
    }
    if (status != 2 || !u64_at(r, 1, &uid) || !str_at(r, 2, &id, &idlen) ||
        idlen != GH_SESSION_ID_LEN || !int_at(r, 3, &c) || !int_at(r, 4, &l) || !int_at(r, 5, &e))
        return malformed(r, "lookup");
    if (out)
        fill_info(s, out, uid, id, idlen, c, l, e, NULL);
    freeReplyObject(r);
    return 0;
}

/* Scripts that answer one integer: how many sessions they ended. */
static int run_count(redis_store_t *s, int sc, int64_t now, int nextra, const char **extra,
                     long long *n)
{
    redisReply *r = NULL;
    int rc = run_script(s, sc, now, nextra, extra, &r);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        return malformed(r, "end");
    *n = r->integer;
    freeReplyObject(r);
    return 0;
}

static int r_end(gh_session_store_t *base, const uint8_t *hash, gh_session_end_t reason)
{
    redis_store_t *s = (redis_store_t *)base;
    char hex[HEX_LEN + 1];
    to_hex(hash, hex);
    const char *extra[] = {hex};
    long long n = 0;
    int rc = run_count(s, SC_END, clamp_now(s, 0), 1, extra, &n);
    if (rc != 0)
        return rc;
    count_end(s, reason, (uint64_t)n);
    return n ? 0 : GH_ENOTFOUND;
}

static bool id_valid(const char *id)
{
    if (!id || strnlen(id, GH_SESSION_ID_LEN + 1) != GH_SESSION_ID_LEN)
        return false;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
            return false;
    return true;
}

static int r_end_by_id(gh_session_store_t *base, uint64_t user_id, const char *id,
                       gh_session_end_t reason)
{
    redis_store_t *s = (redis_store_t *)base;
    if (!id_valid(id))
        return GH_ENOTFOUND;
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *extra[] = {uid, id};
    long long n = 0;
    int rc = run_count(s, SC_END_BY_ID, clamp_now(s, 0), 2, extra, &n);
    if (rc != 0)
        return rc;
    count_end(s, reason, (uint64_t)n);
    return n ? 0 : GH_ENOTFOUND;
}

static int r_end_user(gh_session_store_t *base, uint64_t user_id, const uint8_t *keep,
                      gh_session_end_t reason, size_t *ended)
{
    redis_store_t *s = (redis_store_t *)base;
    char uid[24], hex[HEX_LEN + 1] = "";
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    if (keep)
        to_hex(keep, hex);
    const char *extra[] = {uid, hex};
    long long n = 0;
    if (ended)
        *ended = 0;
    int rc = run_count(s, SC_END_USER, clamp_now(s, 0), 2, extra, &n);
    if (rc != 0)
        return rc;
    count_end(s, reason, (uint64_t)n);
    if (ended)
        *ended = (size_t)n;
    return 0;
}

static int r_list_user(gh_session_store_t *base, uint64_t user_id, int64_t now,
                       gh_session_info_t *out, size_t cap, size_t *n)
{
    redis_store_t *s = (redis_store_t *)base;
    *n = 0;
    if (cap == 0)
        return 0;
    now = clamp_now(s, now);
    char uid[24], capstr[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    snprintf(capstr, sizeof capstr, "%zu", cap);
    const char *extra[] = {uid, capstr};
    redisReply *r = NULL;
    int rc = run_script(s, SC_LIST, now, 2, extra, &r);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 6 != 0 || r->elements / 6 > cap)
        return malformed(r, "list");
    for (size_t i = 0; i < r->elements / 6; i++) {
        const char *id, *ip, *ua;
        size_t idlen, iplen, ualen;
        long long c, l, e;
        if (!str_at(r, 6 * i, &id, &idlen) || idlen != GH_SESSION_ID_LEN ||
            !int_at(r, 6 * i + 1, &c) || !int_at(r, 6 * i + 2, &l) || !int_at(r, 6 * i + 3, &e) ||
            !str_at(r, 6 * i + 4, &ip, &iplen) || !str_at(r, 6 * i + 5, &ua, &ualen)) {
            *n = 0;
            return malformed(r, "list");
        }
        /* Cleaned again: Redis is shared, and what another writer put there is not trusted. */
        gh_session_client_t cl;
        char ipz[GH_SESSION_IP_MAX + 1] = "";
        if (iplen <= GH_SESSION_IP_MAX)
            memcpy(ipz, ip, iplen);
        gh_session_client_make(&cl, ipz, ua, ualen);
        fill_info(s, &out[i], user_id, id, idlen, c, l, e, &cl);
    }
    *n = r->elements / 6;
    freeReplyObject(r);
    return 0;
}

static size_t r_expire(gh_session_store_t *base, int64_t now, size_t max_work)
{
    redis_store_t *s = (redis_store_t *)base;
    now = clamp_now(s, now);
    size_t done = 0, ended = 0;
    while (done < max_work) {
        size_t batch = max_work - done < SWEEP_BATCH ? max_work - done : SWEEP_BATCH;
        char b[24];
        snprintf(b, sizeof b, "%zu", batch);
        const char *extra[] = {b};
        redisReply *r = NULL;
        if (run_script(s, SC_EXPIRE, now, 1, extra, &r) != 0)
            break; /* Redis is away: the next tick tries again */
        long long idle, expired, examined;
        if (!int_at(r, 0, &idle) || !int_at(r, 1, &expired) || !int_at(r, 2, &examined)) {
            (void)malformed(r, "expire");
            break;
        }
        freeReplyObject(r);
        count_end(s, GH_END_IDLE, (uint64_t)idle);
        count_end(s, GH_END_EXPIRED, (uint64_t)expired);
        ended += (size_t)(idle + expired);
        done += (size_t)examined;
        if ((size_t)examined < batch)
            break;
    }
    return ended;
}

static void r_stats(gh_session_store_t *base, gh_session_stats_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    memset(out, 0, sizeof *out);
    char key[PREFIX_MAX + 2];
    snprintf(key, sizeof key, "%sx", s->prefix);
    const char *argv[] = {"ZCARD", key};
    redisReply *r = NULL;
    /* Redis counts every session of every node; when it does not answer, the last count stands. */
    if (command(s, GH_STORE_OP_STATS, 2, argv, NULL, &r) == 0) {
        if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
            atomic_store_explicit(&s->active, (uint64_t)r->integer, memory_order_relaxed);
        freeReplyObject(r);
    }
    out->active = atomic_load_explicit(&s->active, memory_order_relaxed);
    out->created_total = atomic_load_explicit(&s->created_total, memory_order_relaxed);
    for (int i = 0; i < GH_END__COUNT; i++)
        out->ended_total[i] = atomic_load_explicit(&s->ended_total[i], memory_order_relaxed);
    out->bytes = s->bytes;
    out->budget_bytes = 0;
}

static int r_ping(gh_session_store_t *base)
{
    redis_store_t *s = (redis_store_t *)base;
    const char *argv[] = {"PING"};
    redisReply *r = NULL;
    int rc = command(s, GH_STORE_OP_PING, 1, argv, NULL, &r);
    if (rc != 0)
        return GH_ESTORE;
    rc = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0 ? 0 : GH_ESTORE;
    freeReplyObject(r);
    return rc;
}

/* Every cross-reference between the keys, checked in one script (KEYS: O(everything), for
 * tests only). Returns "" or the first broken invariant. */
static const char check_script[] = PRELUDE
    "local function bad(what, k) return what .. ': ' .. k end\n"
    "for _, sk in ipairs(redis.call('KEYS', P .. 's:*')) do\n"
    "  local h = string.sub(sk, #P + 3)\n"
    "  local f = redis.call('HMGET', sk, 'u', 'i', 'c', 'l', 'e')\n"
    "  if not (f[1] and f[2] and f[3] and f[4] and f[5]) then return bad('fields', h) end\n"
    "  local d = dl(tonumber(f[4]), tonumber(f[5]))\n"
    "  if tonumber(redis.call('ZSCORE', X, h)) ~= d then return bad('expiry index', h) end\n"
    "  if tonumber(redis.call('ZSCORE', ukey(f[1]), h)) ~= tonumber(f[3]) then\n"
    "    return bad('user index', h) end\n"
    "  if redis.call('GET', ikey(f[2])) ~= h then return bad('id index', h) end\n"
    "  if redis.call('PTTL', sk) < 0 then return bad('no ttl', h) end\n"
    "end\n"
    "for _, h in ipairs(redis.call('ZRANGE', X, 0, -1)) do\n"
    "  if redis.call('EXISTS', skey(h)) == 0 then return bad('expiry member', h) end\n"
    "end\n"
    "for _, uk in ipairs(redis.call('KEYS', P .. 'u:*')) do\n"
    "  local u = string.sub(uk, #P + 3)\n"
    "  for _, h in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
    "    if redis.call('HGET', skey(h), 'u') ~= u then return bad('user member', h) end\n"
    "  end\n"
    "end\n"
    "for _, ik in ipairs(redis.call('KEYS', P .. 'i:*')) do\n"
    "  local h = redis.call('GET', ik)\n"
    "  if redis.call('HGET', skey(h), 'i') ~= string.sub(ik, #P + 3) then\n"
    "    return bad('id key', ik) end\n"
    "end\n"
    "return ''\n";

int gh_session_redis_check(gh_session_store_t *base, const char **why)
{
    static _Thread_local char broken[160];
    redis_store_t *s = (redis_store_t *)base;
    if (!base || base->ops != &redis_ops)
        return GH_EINVAL;
    const char *argv[] = {"EVAL", check_script, "0", s->prefix, s->idle_arg, "0", s->grace_arg};
    redisReply *r = NULL;
    int rc = command(s, GH_STORE_OP_STATS, 7, argv, NULL, &r);
    if (rc != 0)
        return rc;
    rc = 0;
    if (r->type != REDIS_REPLY_STRING || r->len != 0) {
        snprintf(broken, sizeof broken, "%s",
                 r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_ERROR ? r->str : "?");
        if (why)
            *why = broken;
        rc = GH_EINTERNAL;
    }
    freeReplyObject(r);
    return rc;
}

static void r_destroy(gh_session_store_t **base)
{
    redis_store_t *s = (redis_store_t *)*base;
    if (!s)
        return;
    gh_store_pool_destroy(&s->pool);
    pthread_mutex_destroy(&s->lock);
    sodium_memzero(s->password, sizeof s->password);
    gh_mem_free(GH_MEM_SESSIONS, s);
    *base = NULL;
}

static const gh_session_store_ops_t redis_ops = {
    .name = "redis",
    .create = r_create,
    .lookup = r_lookup,
    .end = r_end,
    .end_by_id = r_end_by_id,
    .end_user = r_end_user,
    .list_user = r_list_user,
    .expire = r_expire,
    .stats = r_stats,
    .destroy = r_destroy,
    .ping = r_ping,
};

int gh_session_redis_open(const gh_session_limits_t *limits, const gh_session_redis_options_t *opt,
                          gh_session_store_t **out)
{
    *out = NULL;
    if (!limits || !opt || !opt->url || limits->session_ttl_ms <= 0 || limits->idle_ttl_ms <= 0 ||
        opt->touch_interval_ms < 0 || opt->timeout_ms < 0)
        return GH_EINVAL;
    const char *prefix = opt->prefix ? opt->prefix : DEFAULT_PREFIX;
    if (strlen(prefix) > PREFIX_MAX)
        return GH_EINVAL;
    redis_store_t *s = gh_mem_calloc(GH_MEM_SESSIONS, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &redis_ops;
    s->limits = *limits;
    s->touch_interval_ms = opt->touch_interval_ms;
    s->probe = opt->probe;
    s->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->timeout.tv_sec = s->timeout_ms / 1000;
    s->timeout.tv_usec = (s->timeout_ms % 1000) * 1000;
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    snprintf(s->idle_arg, sizeof s->idle_arg, "%lld", (long long)limits->idle_ttl_ms);
    snprintf(s->grace_arg, sizeof s->grace_arg, "%d", GRACE_MS);
    pthread_mutex_init(&s->lock, NULL);
    gh_session_store_t *b = &s->base;
    int rc = parse_url(s, opt->url);
    if (rc != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot parse the Redis URL",
               GH_LS("expected", "redis://[[user]:password@]host[:port][/db] or unix:/path"));
        goto fail;
    }
    gh_store_pool_options_t po = {.what = "session store",
                                  .store = "redis",
                                  .mem = GH_MEM_SESSIONS,
                                  .size = opt->pool_size ? opt->pool_size : DEFAULT_POOL,
                                  .timeout_ms = s->timeout_ms,
                                  .connect = pool_connect,
                                  .disconnect = pool_disconnect,
                                  .ctx = s};
    if ((rc = gh_store_pool_create(&po, &s->pool)) != 0)
        goto fail;
    /* What gh_mem charged for us (it counts usable sizes); it never changes after this. */
    s->bytes = malloc_usable_size(s) + gh_store_pool_bytes(s->pool);
    /* One connection now: a wrong address or password is a start-up error, not a 503 later. */
    if ((rc = r_ping(b)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot reach Redis", GH_LS("host", s->host), GH_LI("port", s->port));
        goto fail;
    }
    *out = b;
    return 0;
fail:
    r_destroy(&b);
    return rc;
}
