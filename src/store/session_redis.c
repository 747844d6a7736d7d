/*
 * session_redis.c — the session store shared by every node: sessions live in Redis, this node
 * keeps only a fixed pool of connections.
 *
 * The one decision a reader must know: every write is ONE server-side Lua script (EVALSHA) on
 * one connection, so each is atomic in Redis — a revocation, a per-user cap eviction, a password
 * change's "end all but this one" can never interleave with another node's lookup — while the
 * token check itself is one plain GET of one packed value, decided here: it writes (a script)
 * only when the session is past a deadline (to end and count it) or its recorded last use is a
 * touch interval old. There is no local cache anywhere: a lookup always asks Redis, so a session
 * ended on any node is refused on every node from that moment. When Redis does not answer,
 * operations fail with GH_ESTORE (the API answers 503 store_unavailable), never with a guess.
 *
 * Keys (P = prefix, "gh:" by default; h = the first 24 bytes of the token hash, raw — never the
 * token; 192 bits keep them unique):
 *   P k<h>     string, one packed session (below). No Redis TTL: the sweep ends every session
 *              and counts it, so run Redis with maxmemory-policy noeviction.
 *   P U:<uid>  zset of h scored by the session's deadline min(e, l + idle): the user's sessions,
 *              for list, cap and revoke-all, and where the sweep finds what is due. A user holds
 *              few sessions (the cap), so it stays in Redis's compact listpack encoding.
 *   P E        zset of uid scored by (at most) the earliest deadline of the user's sessions: the
 *              expiry index, one member per USER, not per session. A session ends exactly when
 *              its key is deleted, by the script that counts it, so every ended session is counted
 *              once across all nodes.
 *   P N        how many sessions there are (the gauge every node reports).
 * The public id is inside the value: revoking by id looks through the user's few sessions.
 * Packed value (42 bytes + uid + client; a short one is an embedded string in Redis):
 *   [0] 1 (layout)  [1..6] created  [7..12] last seen  [13..18] absolute deadline (ms, 48-bit
 *   little endian)  [19..34] public id (raw)  [35] n  [36..] uid (decimal, n bytes)  then one
 *   byte m, the client IP (m bytes) and the user agent (the rest).
 * Deadlines are decided from the caller's `now` (not Redis's clock), so they hold to the
 * millisecond whether or not the sweep has run, and tests can inject time.
 *
 * The layout before this one (a hash per session P s:<hex>, P u:<uid> zset, P i:<id>, expiry
 * zset P x) is converted on read: while P x exists, every script that meets an old session
 * (a lookup that misses, a user's list, cap or revoke, and the sweep, a batch per tick) rewrites
 * it in this layout first, so a node can start on old data with no flag day.
 *
 * Sentinel: with a redis-sentinel:// URL every new connection asks the sentinels where the master
 * is, checks ROLE says master before any command, and a thread listens for +switch-master to
 * re-make every connection at once; READONLY and a lost connection do the same through the pool.
 * --redis-wait-replicas N sends WAIT N after every write that a caller acknowledges.
 *
 * Connections: a fixed pool (store/pool.c); an I/O error re-makes every connection with a
 * backoff. Scripts are loaded on every new connection and again on NOSCRIPT.
 *
 * Memory: the store struct and the pool are charged to GH_MEM_SESSIONS and never grow; hiredis
 * allocates its reply objects and buffers with malloc (0.14 has no allocator hooks), bounded per
 * connection and freed after every command.
 */
#include "store/session.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
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
#define SWEEP_BATCH 1000
#define HEX_LEN (GH_TOKEN_HASH_LEN * 2)
#define KEY_HASH_LEN 24 /* bytes of the token hash in a key */
#define MAX_ARGS 12
#define MAX_SENTINELS 8
#define SENTINEL_BACKOFF_MAX_MS 200

/* the packed value */
#define V_LAYOUT 2 /* 1: before the amr byte (read as GH_AMR_PWD) */
#define V_C 1
#define V_L 7
#define V_E 13
#define V_ID 19
#define V_UIDLEN 35
#define V_MAX (V_UIDLEN + 1 + 20 + 1 + 1 + GH_SESSION_IP_MAX + GH_SESSION_UA_MAX)

/* ---- scripts ---- */

/* Shared by every script. ARGV[1] prefix, ARGV[2] idle TTL, ARGV[3] now, ARGV[4] "1" while data
 * in the old layout may exist; each script's own arguments start at ARGV[5]. */
#define PRELUDE                                                                                    \
    "local P, IDLE, NOW, OLD = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'\n"    \
    "local E, NK = P .. 'E', P .. 'N'\n"                                                           \
    "local function skey(h) return P .. 'k' .. h end\n"                                            \
    "local function ukey(u) return P .. 'U:' .. u end\n"                                           \
    "local function dl(l, e) if e <= l + IDLE then return e, 'expired' end "                       \
    "return l + IDLE, 'idle' end\n"                                                                \
    "local function times(v) return struct.unpack('<I6I6I6', v, 2) end\n"                          \
    "local function uid(v) return string.sub(v, 37, 36 + string.byte(v, 36)) end\n"                \
    "-- ends one session everywhere; 1 when it was there to end\n"                                 \
    "local function finish(h)\n"                                                                   \
    "  local sk = skey(h)\n"                                                                       \
    "  local v = redis.call('GET', sk)\n"                                                          \
    "  if not v then return 0 end\n"                                                               \
    "  local u = uid(v)\n"                                                                         \
    "  local uk = ukey(u)\n"                                                                       \
    "  redis.call('DEL', sk)\n"                                                                    \
    "  redis.call('ZREM', uk, h)\n"                                                                \
    "  if redis.call('EXISTS', uk) == 0 then redis.call('ZREM', E, u) end\n"                       \
    "  if redis.call('DECR', NK) <= 0 then redis.call('DEL', NK) end\n"                            \
    "  return 1\n"                                                                                 \
    "end\n"                                                                                        \
    "local function put(h, v, u, d)\n"                                                             \
    "  redis.call('SET', skey(h), v)\n"                                                            \
    "  redis.call('ZADD', ukey(u), d, h)\n"                                                        \
    "  redis.call('ZADD', E, 'LT', d, u)\n"                                                        \
    "  redis.call('INCR', NK)\n"                                                                   \
    "end\n"                                                                                        \
    "-- the old layout, converted on read\n"                                                       \
    "local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'\n"             \
    "local function b64d(s)\n"                                                                     \
    "  local out, acc, bits = {}, 0, 0\n"                                                          \
    "  for i = 1, #s do\n"                                                                         \
    "    local k = string.find(B64, string.sub(s, i, i), 1, true)\n"                               \
    "    if not k then return nil end\n"                                                           \
    "    acc, bits = acc * 64 + k - 1, bits + 6\n"                                                 \
    "    if bits >= 8 then\n"                                                                      \
    "      bits = bits - 8\n"                                                                      \
    "      local b = math.floor(acc / 2 ^ bits)\n"                                                 \
    "      out[#out + 1] = string.char(b)\n"                                                       \
    "      acc = acc - b * 2 ^ bits\n"                                                             \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  return table.concat(out)\n"                                                                 \
    "end\n"                                                                                        \
    "local function unhex(x) return (string.gsub(x, '..', function(c) "                            \
    "return string.char(tonumber(c, 16)) end)) end\n"                                              \
    "local function pack(c, l, e, id, u, ip, ua)\n"                                                \
    "  return '\\1' .. struct.pack('<I6I6I6', c, l, e) .. id .. string.char(#u) .. u .. "          \
    "string.char(#ip) .. ip .. ua\n"                                                               \
    "end\n"                                                                                        \
    "-- converts one old session (hex of its whole hash); one that is gone is left to the\n"       \
    "-- sweep, which counts it\n"                                                                  \
    "local function migrate(x)\n"                                                                  \
    "  local ok = P .. 's:' .. x\n"                                                                \
    "  local f = redis.call('HMGET', ok, 'u', 'i', 'c', 'l', 'e', 'ip', 'ua')\n"                   \
    "  if not f[1] then return 0 end\n"                                                            \
    "  redis.call('DEL', ok)\n"                                                                    \
    "  redis.call('ZREM', P .. 'x', x)\n"                                                          \
    "  redis.call('ZREM', P .. 'u:' .. f[1], x)\n"                                                 \
    "  if f[2] then redis.call('DEL', P .. 'i:' .. f[2]) end\n"                                    \
    "  local id = f[2] and b64d(f[2])\n"                                                           \
    "  local c, l, e = tonumber(f[3]), tonumber(f[4]), tonumber(f[5])\n"                           \
    "  if not (id and #id == 16 and c and l and e and #f[1] <= 20 and #x == 64) then\n"            \
    "    return -1\n" /* unreadable: dropped, counted by the caller */                             \
    "  end\n"                                                                                      \
    "  local h = string.sub(unhex(x), 1, 24)\n"                                                    \
    "  if redis.call('EXISTS', skey(h)) == 0 then\n"                                               \
    "    put(h, pack(c, l, e, id, f[1], string.sub(f[6] or '', 1, 45), "                           \
    "string.sub(f[7] or '', 1, 160)), f[1], (dl(l, e)))\n"                                         \
    "  end\n"                                                                                      \
    "  return 1\n"                                                                                 \
    "end\n"                                                                                        \
    "local function migrate_user(u)\n"                                                             \
    "  if not OLD then return end\n"                                                               \
    "  for _, x in ipairs(redis.call('ZRANGE', P .. 'u:' .. u, 0, -1)) do migrate(x) end\n"        \
    "end\n"

enum {
    SC_CREATE,
    SC_TOUCH,
    SC_MIGRATE,
    SC_END,
    SC_END_BY_ID,
    SC_END_USER,
    SC_LIST,
    SC_EXPIRE,
    SC_COUNT,
    SC__COUNT
};

static const char *const scripts[SC__COUNT] = {
    /* ARGV[5] h, [6] uid, [7] packed value, [8] absolute deadline, [9] cap (0 none).
     * Returns {0, evicted, idle, expired}, or {-1} if the session exists. */
    [SC_CREATE] = PRELUDE
    "local h, u, v, e, cap = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "migrate_user(u)\n"
    "if redis.call('EXISTS', skey(h)) == 1 then return {-1} end\n"
    "local uk = ukey(u)\n"
    "local evicted, idle, expired = 0, 0, 0\n"
    /* the user's sessions past a deadline end first: the index stays bounded */
    "for _, m in ipairs(redis.call('ZRANGEBYSCORE', uk, '-inf', NOW)) do\n"
    "  local w = redis.call('GET', skey(m))\n"
    "  if not w then redis.call('ZREM', uk, m)\n"
    "  else\n"
    "    local _, l, e2 = times(w)\n"
    "    local d, why = dl(l, e2)\n"
    "    if NOW < d then redis.call('ZADD', uk, d, m)\n"
    "    elseif finish(m) == 1 then\n"
    "      if why == 'idle' then idle = idle + 1 else expired = expired + 1 end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if cap > 0 and redis.call('ZCARD', uk) >= cap then\n"
    "  local live = {}\n"
    "  for _, m in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
    "    local w = redis.call('GET', skey(m))\n"
    "    if w then live[#live + 1] = {m, (times(w))} else redis.call('ZREM', uk, m) end\n"
    "  end\n"
    "  table.sort(live, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)\n"
    "  local i = 1\n"
    "  while #live - i + 1 >= cap do\n"
    "    evicted = evicted + finish(live[i][1])\n"
    "    i = i + 1\n"
    "  end\n"
    "end\n"
    "put(h, v, u, (dl(NOW, e)))\n"
    "return {0, evicted, idle, expired}\n",

    /* ARGV[5] h. The write half of a token check: ends a session past a deadline, or records
     * now as its last use. Returns {0} not found, {1, reason, counted} ended now (reason "idle"
     * or "expired"), or {2, last seen}. */
    [SC_TOUCH] = PRELUDE "local h = ARGV[5]\n"
                         "local sk = skey(h)\n"
                         "local v = redis.call('GET', sk)\n"
                         "if not v then return {0} end\n"
                         "local _, l, e = times(v)\n"
                         "local d, why = dl(l, e)\n"
                         "if NOW >= d then return {1, why, finish(h)} end\n"
                         "if NOW > l then\n"
                         "  redis.call('SET', sk, string.sub(v, 1, 7) .. struct.pack('<I6', NOW)"
                         " .. string.sub(v, 14))\n"
                         "  redis.call('ZADD', ukey(uid(v)), 'XX', (dl(NOW, e)), h)\n"
                         "  l = NOW\n"
                         "end\n"
                         "return {2, l}\n",

    /* ARGV[5] hex of the whole hash, [6] h. A lookup that missed while old data exists:
     * converts the session if it is in the old layout. Returns 1 when the session is in the
     * new layout now (converted here, or by another node since the lookup's GET). */
    [SC_MIGRATE] = PRELUDE "migrate(ARGV[5])\n"
                           "return redis.call('EXISTS', skey(ARGV[6]))\n",

    /* ARGV[5] h, [6] hex of the whole hash. Returns 1 when ended, 0 when absent. */
    [SC_END] = PRELUDE "if OLD then migrate(ARGV[6]) end\n"
                       "return finish(ARGV[5])\n",

    /* ARGV[5] uid, [6] public id (raw). Returns 1 when ended, 0 when absent or not the user's. */
    [SC_END_BY_ID] = PRELUDE
    "migrate_user(ARGV[5])\n"
    "for _, m in ipairs(redis.call('ZRANGE', ukey(ARGV[5]), 0, -1)) do\n"
    "  local v = redis.call('GET', skey(m))\n"
    "  if v and string.sub(v, 20, 35) == ARGV[6] and uid(v) == ARGV[5] then return finish(m) end\n"
    "end\n"
    "return 0\n",

    /* ARGV[5] uid, [6] h to keep or "". Returns how many ended. */
    [SC_END_USER] = PRELUDE "migrate_user(ARGV[5])\n"
                            "local uk, n = ukey(ARGV[5]), 0\n"
                            "for _, m in ipairs(redis.call('ZRANGE', uk, 0, -1)) do\n"
                            "  if m ~= ARGV[6] then\n"
                            "    if redis.call('EXISTS', skey(m)) == 1 then n = n + finish(m)\n"
                            "    else redis.call('ZREM', uk, m) end\n"
                            "  end\n"
                            "end\n"
                            "return n\n",

    /* ARGV[5] uid, [6] cap. Returns the packed values of up to cap live sessions, newest
     * first (read only unless old data is converted). */
    [SC_LIST] = PRELUDE
    "migrate_user(ARGV[5])\n"
    "local live = {}\n"
    "for _, m in ipairs(redis.call('ZRANGE', ukey(ARGV[5]), 0, -1)) do\n"
    "  local v = redis.call('GET', skey(m))\n"
    "  if v then\n"
    "    local c, l, e = times(v)\n"
    "    if NOW < dl(l, e) then live[#live + 1] = {c, m, v} end\n"
    "  end\n"
    "end\n"
    "table.sort(live, function(a, b) return a[1] > b[1] or (a[1] == b[1] and a[2] > b[2]) end)\n"
    "local out = {}\n"
    "for i = 1, math.min(#live, tonumber(ARGV[6])) do out[i] = live[i][3] end\n"
    "return out\n",

    /* ARGV[5] batch. Ends sessions past a deadline, converting a batch of old ones first.
     * Returns {idle, expired, examined, old data left (0/1)}. */
    [SC_EXPIRE] = PRELUDE
    "local batch = tonumber(ARGV[5])\n"
    "local idle, expired, n = 0, 0, 0\n"
    "if OLD then\n"
    "  for _, x in ipairs(redis.call('ZRANGE', P .. 'x', 0, batch - 1)) do\n"
    "    n = n + 1\n"
    "    local r = migrate(x)\n"
    /* gone (Redis's backstop TTL of the old layout took it) or unreadable: it ended unseen */
    "    if r <= 0 and (r < 0 or redis.call('ZREM', P .. 'x', x) == 1) then idle = idle + 1 end\n"
    "  end\n"
    "end\n"
    "for _, u in ipairs(redis.call('ZRANGEBYSCORE', E, '-inf', NOW, 'LIMIT', 0, batch)) do\n"
    "  if n >= batch then break end\n"
    "  local uk = ukey(u)\n"
    "  for _, m in ipairs(redis.call('ZRANGEBYSCORE', uk, '-inf', NOW, 'LIMIT', 0, batch)) do\n"
    "    n = n + 1\n"
    "    local v = redis.call('GET', skey(m))\n"
    "    if not v then redis.call('ZREM', uk, m)\n"
    "    else\n"
    "      local _, l, e = times(v)\n"
    "      local d, why = dl(l, e)\n"
    "      if NOW < d then redis.call('ZADD', uk, d, m)\n"
    "      elseif finish(m) == 1 then\n"
    "        if why == 'idle' then idle = idle + 1 else expired = expired + 1 end\n"
    "      end\n"
    "    end\n"
    "    if n >= batch then break end\n"
    "  end\n"
    "  local first = redis.call('ZRANGE', uk, 0, 0, 'WITHSCORES')\n"
    "  if first[1] then redis.call('ZADD', E, first[2], u) else redis.call('ZREM', E, u) end\n"
    "end\n"
    "return {idle, expired, n, redis.call('EXISTS', P .. 'x')}\n",

    /* Returns {sessions, old data left (0/1)}. */
    [SC_COUNT] = PRELUDE "local n = tonumber(redis.call('GET', NK) or '0')\n"
                         "local old = redis.call('EXISTS', P .. 'x')\n"
                         "if old == 1 then n = n + redis.call('ZCARD', P .. 'x') end\n"
                         "return {n, old}\n",
};

static const gh_store_op_t script_op[SC__COUNT] = {
    [SC_CREATE] = GH_STORE_OP_CREATE,  [SC_TOUCH] = GH_STORE_OP_LOOKUP,
    [SC_MIGRATE] = GH_STORE_OP_LOOKUP, [SC_END] = GH_STORE_OP_END,
    [SC_END_BY_ID] = GH_STORE_OP_END,  [SC_END_USER] = GH_STORE_OP_END_USER,
    [SC_LIST] = GH_STORE_OP_LIST,      [SC_EXPIRE] = GH_STORE_OP_EXPIRE,
    [SC_COUNT] = GH_STORE_OP_STATS,
};

/* Writes a caller acknowledges: with wait_replicas, WAIT follows them. */
static const bool script_acked[SC__COUNT] = {
    [SC_CREATE] = true, [SC_END] = true, [SC_END_BY_ID] = true, [SC_END_USER] = true};

/* ---- the store ---- */

static const gh_session_store_ops_t redis_ops; /* below: the check tells our stores by it */

typedef struct {
    char host[256];
    int port;
} endpoint_t;

typedef struct {
    gh_session_store_t base; /* first: the interface pointer is the struct pointer */
    gh_session_limits_t limits;
    int64_t touch_interval_ms;
    struct timeval timeout;
    int timeout_ms;
    unsigned wait_replicas;

    /* where Redis is */
    bool unix_socket;
    char host[256]; /* host name, or the socket path */
    int port;
    char user[128], password[256];
    int db;
    char prefix[PREFIX_MAX + 1];
    char idle_arg[24]; /* ARGV[2] */

    /* Sentinel: the sentinels, the master's name, the one that answered last */
    endpoint_t sentinels[MAX_SENTINELS];
    unsigned n_sentinels;
    char master[128];
    atomic_uint sentinel_next;
    pthread_t watcher;
    bool watching;
    atomic_bool stop;

    gh_store_pool_t *pool;   /* connections with back-off (store/pool.c) */
    gh_store_probe_t probe;  /* told of every round trip */
    pthread_mutex_t lock;    /* guards sha, and host/port in sentinel mode */
    char sha[SC__COUNT][41]; /* script digests, the same for every connection */

    atomic_bool old_layout;   /* data in the layout before this one may exist */
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

/* ---- the packed value ---- */

typedef struct {
    uint64_t uid;
    int64_t c, l, e;
    char id[GH_SESSION_ID_LEN + 1];
    uint8_t amr;
    gh_session_client_t client;
} unpacked_t;

static void put48(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 6; i++)
        p[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int64_t get48(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 5; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

/* Packs a session into out (V_MAX bytes); returns its length. */
static size_t pack(uint8_t *out, uint64_t uid, int64_t c, int64_t l, int64_t e,
                   const uint8_t id[GH_SESSION_ID_RAW_LEN], uint8_t amr,
                   const gh_session_client_t *cl)
{
    out[0] = V_LAYOUT;
    put48(out + V_C, c);
    put48(out + V_L, l);
    put48(out + V_E, e);
    memcpy(out + V_ID, id, GH_SESSION_ID_RAW_LEN);
    int n = snprintf((char *)out + V_UIDLEN + 1, 21, "%llu", (unsigned long long)uid);
    out[V_UIDLEN] = (uint8_t)n;
    size_t o = V_UIDLEN + 1 + (size_t)n;
    out[o++] = amr ? amr : GH_AMR_PWD; /* layout 2: the amr byte before the client */
    size_t iplen = strnlen(cl->ip, GH_SESSION_IP_MAX),
           ualen = strnlen(cl->user_agent, GH_SESSION_UA_MAX);
    out[o++] = (uint8_t)iplen;
    memcpy(out + o, cl->ip, iplen);
    o += iplen;
    memcpy(out + o, cl->user_agent, ualen);
    return o + ualen;
}

/* Unpacks a value read from Redis; false when it is not one this layout wrote. with_client:
 * also the client (cleaned again: Redis is shared, and what another writer put there is not
 * trusted). */
static bool unpack(const char *v, size_t n, bool with_client, unpacked_t *out)
{
    const uint8_t *p = (const uint8_t *)v;
    if (n < V_UIDLEN + 2 || (p[0] != 1 && p[0] != V_LAYOUT))
        return false;
    size_t un = p[V_UIDLEN];
    size_t amr_len = p[0] == V_LAYOUT ? 1 : 0;
    if (un == 0 || un > 20 || V_UIDLEN + 1 + un + amr_len + 1 > n)
        return false;
    char digits[21];
    memcpy(digits, v + V_UIDLEN + 1, un);
    digits[un] = '\0';
    if (!isdigit((unsigned char)digits[0]))
        return false;
    char *end;
    out->uid = strtoull(digits, &end, 10);
    if (*end != '\0')
        return false;
    out->c = get48(p + V_C);
    out->l = get48(p + V_L);
    out->e = get48(p + V_E);
    gh_base64url_encode(p + V_ID, GH_SESSION_ID_RAW_LEN, out->id);
    out->id[GH_SESSION_ID_LEN] = '\0';
    out->amr = amr_len ? p[V_UIDLEN + 1 + un] : GH_AMR_PWD;
    if (!out->amr)
        out->amr = GH_AMR_PWD;
    if (!with_client)
        return true;
    size_t o = V_UIDLEN + 1 + un + amr_len;
    size_t iplen = p[o++];
    if (o + iplen > n)
        return false;
    char ip[GH_SESSION_IP_MAX + 1] = "";
    if (iplen <= GH_SESSION_IP_MAX)
        memcpy(ip, v + o, iplen);
    o += iplen;
    size_t ualen = n - o;
    gh_session_client_make(&out->client, ip, v + o,
                           ualen > GH_SESSION_UA_MAX ? GH_SESSION_UA_MAX : ualen);
    return true;
}

/* The key of a session, P k<first 24 bytes of the hash>; returns its length. */
static size_t session_key(const redis_store_t *s, const uint8_t *hash, char *out)
{
    size_t pl = strlen(s->prefix);
    memcpy(out, s->prefix, pl);
    out[pl] = 'k';
    memcpy(out + pl + 1, hash, KEY_HASH_LEN);
    return pl + 1 + KEY_HASH_LEN;
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

/* host[:port] or [v6]:port in [p, end) */
static int parse_hostport(const char *p, const char *end, char *host, size_t cap, int *port)
{
    const char *host_end;
    if (*p == '[') { /* [::1]:6379 */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb || (size_t)(rb - p - 1) >= cap || rb == p + 1)
            return GH_EINVAL;
        memcpy(host, p + 1, (size_t)(rb - p - 1));
        host[rb - p - 1] = '\0';
        host_end = rb + 1;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (!host_end)
            host_end = end;
        if (host_end == p || (size_t)(host_end - p) >= cap)
            return GH_EINVAL;
        memcpy(host, p, (size_t)(host_end - p));
        host[host_end - p] = '\0';
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
        long v = strtol(digits, &e, 10);
        if (*e != '\0' || v < 1 || v > 65535)
            return GH_EINVAL;
        *port = (int)v;
    }
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
    bool sentinel = strncmp(url, "redis-sentinel://", 17) == 0;
    if (!sentinel && strncmp(url, "redis://", 8) != 0)
        return GH_EINVAL; /* rediss:// needs TLS, which this hiredis does not have */
    const char *p = url + (sentinel ? 17 : 8);
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
    if (!sentinel) {
        if (parse_hostport(p, end, s->host, sizeof s->host, &s->port) != 0)
            return GH_EINVAL;
        if (*end == '/' && end[1] != '\0')
            return parse_db(end + 1, &s->db);
        if (*end == '?' || *end == '#')
            return GH_EINVAL;
        return 0;
    }
    /* redis-sentinel://[[user]:password@]host:port,host:port,.../MASTER[/db] */
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (s->n_sentinels == MAX_SENTINELS)
            return GH_EINVAL;
        endpoint_t *ep = &s->sentinels[s->n_sentinels];
        ep->port = 26379;
        if (parse_hostport(p, e, ep->host, sizeof ep->host, &ep->port) != 0)
            return GH_EINVAL;
        s->n_sentinels++;
        p = comma ? comma + 1 : end;
    }
    if (s->n_sentinels == 0 || *end != '/')
        return GH_EINVAL;
    const char *name = end + 1;
    const char *slash = strchr(name, '/');
    size_t nl = slash ? (size_t)(slash - name) : strlen(name);
    if (nl == 0 || nl >= sizeof s->master || strcspn(name, "?# ") < nl)
        return GH_EINVAL;
    memcpy(s->master, name, nl);
    s->master[nl] = '\0';
    if (slash)
        return parse_db(slash + 1, &s->db);
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

/* Asks the sentinels, starting with the one that answered last, where the master is. */
static int sentinel_resolve(redis_store_t *s, char *host, size_t cap, int *port)
{
    unsigned first = atomic_load(&s->sentinel_next);
    for (unsigned k = 0; k < s->n_sentinels; k++) {
        unsigned i = (first + k) % s->n_sentinels;
        redisContext *c =
            redisConnectWithTimeout(s->sentinels[i].host, s->sentinels[i].port, s->timeout);
        if (!c || c->err) {
            if (c)
                redisFree(c);
            continue;
        }
        bool ok = false;
        if (redisSetTimeout(c, s->timeout) == REDIS_OK) {
            redisReply *r = redisCommand(c, "SENTINEL get-master-addr-by-name %s", s->master);
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                r->element[0]->type == REDIS_REPLY_STRING &&
                r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len < cap) {
                memcpy(host, r->element[0]->str, r->element[0]->len + 1);
                *port = atoi(r->element[1]->str);
                ok = *port > 0 && *port < 65536;
            }
            if (r)
                freeReplyObject(r);
        }
        redisFree(c);
        if (ok) {
            atomic_store(&s->sentinel_next, i);
            return 0;
        }
    }
    GH_LOG(GH_LOG_DEBUG, "no sentinel named the session store's master",
           GH_LS("master", s->master));
    return GH_ESTORE;
}

/* The server we reached must say it is the master before we use it (a failover may have made it
 * a replica, or the sentinels may name a server that has not been promoted yet). */
static int check_master(redisContext *c)
{
    redisReply *r = redisCommand(c, "ROLE");
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
              r->element[0]->type == REDIS_REPLY_STRING &&
              strcmp(r->element[0]->str, "master") == 0;
    if (r && !ok)
        GH_LOG(GH_LOG_WARN, "the session store's server is not a master: not using it");
    if (r)
        freeReplyObject(r);
    return ok ? 0 : GH_ESTORE;
}

static int connect_one(redis_store_t *s, redisContext **out)
{
    int64_t t0 = gh_clock_mono_ns();
    redisContext *c = NULL;
    int ret = GH_ESTORE;
    if (s->n_sentinels) {
        char host[256];
        int port = 0;
        if (sentinel_resolve(s, host, sizeof host, &port) != 0)
            goto out;
        pthread_mutex_lock(&s->lock);
        snprintf(s->host, sizeof s->host, "%s", host);
        s->port = port;
        pthread_mutex_unlock(&s->lock);
        c = redisConnectWithTimeout(host, port, s->timeout);
    } else {
        c = s->unix_socket ? redisConnectUnixWithTimeout(s->host, s->timeout)
                           : redisConnectWithTimeout(s->host, s->port, s->timeout);
    }
    if (!c || c->err) {
        GH_LOG(GH_LOG_DEBUG, "session store connect failed",
               GH_LS("detail", c ? c->errstr : "out of memory"));
        goto out;
    }
    if (redisSetTimeout(c, s->timeout) != REDIS_OK)
        goto out;
    if (!s->unix_socket)
        (void)redisEnableKeepAlive(c);
    /* Never read from a replica either: a token check there could see a revoked session. */
    if (s->password[0]) {
        const char *argv[3] = {"AUTH", s->user[0] ? s->user : s->password, s->password};
        if (expect_ok(c, "auth", s->user[0] ? 3 : 2, argv) != 0)
            goto out;
    }
    if (check_master(c) != 0)
        goto out;
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

/* Sentinel mode: a thread subscribed to +switch-master on one sentinel after another. When
 * the sentinels announce a new master for our name, every connection is re-made at once (the
 * pool's back-off ends), instead of each finding out by an error. Reads time out every 200 ms
 * so that destroy stops it promptly. */
static void *watch_sentinels(void *arg)
{
    redis_store_t *s = arg;
    struct timeval tick = {0, 200000};
    unsigned i = 0;
    while (!atomic_load(&s->stop)) {
        endpoint_t *ep = &s->sentinels[i++ % s->n_sentinels];
        redisContext *c = redisConnectWithTimeout(ep->host, ep->port, s->timeout);
        redisReply *r = NULL;
        if (!c || c->err || redisSetTimeout(c, tick) != REDIS_OK ||
            !(r = redisCommand(c, "SUBSCRIBE +switch-master"))) {
            if (c)
                redisFree(c);
            struct timespec ts = {0, 200000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        freeReplyObject(r);
        while (!atomic_load(&s->stop)) {
            r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                if (c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    c->err = 0; /* the tick: look at stop, then read on */
                    continue;
                }
                break; /* this sentinel went away: the next one */
            }
            /* ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"] */
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                r->element[2]->type == REDIS_REPLY_STRING) {
                size_t nl = strlen(s->master);
                if (strncmp(r->element[2]->str, s->master, nl) == 0 &&
                    r->element[2]->str[nl] == ' ') {
                    GH_LOG(GH_LOG_WARN, "session store master switched: reconnecting",
                           GH_LS("detail", r->element[2]->str));
                    gh_store_pool_reset(s->pool);
                }
            }
            if (r)
                freeReplyObject(r);
        }
        redisFree(c);
    }
    return NULL;
}

/* Errors that mean "this connection leads to the wrong server now", not "this command failed". */
static bool server_moved(const char *err)
{
    return strncmp(err, "READONLY", 8) == 0 || strncmp(err, "LOADING", 7) == 0 ||
           strncmp(err, "MASTERDOWN", 10) == 0;
}

/* Runs one command on a pooled connection, and with `wait` then WAIT for wait_replicas
 * replicas (pipelined: one round trip; WAIT gives up after half the command timeout, so a
 * replica that is away costs a refused write, never a connection timed out). On success *reply is
 * the reply (free it with freeReplyObject); an error reply is returned as a reply, for the caller
 * to judge. */
static int command(redis_store_t *s, gh_store_op_t op, int argc, const char **argv,
                   const size_t *argvlen, bool wait, redisReply **reply)
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
    redisReply *r = NULL, *w = NULL;
    wait = wait && s->wait_replicas > 0;
    bool sent =
        redisAppendCommandArgv(c, argc, argv, argvlen) == REDIS_OK &&
        (!wait || redisAppendCommand(c, "WAIT %u %d", s->wait_replicas,
                                     s->timeout_ms / 2 > 0 ? s->timeout_ms / 2 : 1) == REDIS_OK);
    if (sent && redisGetReply(c, (void **)&r) == REDIS_OK && r && wait &&
        (redisGetReply(c, (void **)&w) != REDIS_OK || !w)) {
        freeReplyObject(r);
        r = NULL;
    }
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
        if (w)
            freeReplyObject(w);
        gh_store_pool_release(s->pool, slot, true);
        gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0, true);
        return GH_ESTORE;
    }
    gh_store_pool_release(s->pool, slot, false);
    if (w) {
        bool enough = w->type == REDIS_REPLY_INTEGER && w->integer >= (long long)s->wait_replicas;
        if (!enough && r->type != REDIS_REPLY_ERROR) {
            /* Written on the master but not yet on enough replicas: not acknowledged. */
            GH_LOG(GH_LOG_WARN, "session store write not on enough replicas in time",
                   GH_LI("replicas", w->type == REDIS_REPLY_INTEGER ? w->integer : -1),
                   GH_LI("wanted", s->wait_replicas));
            freeReplyObject(w);
            freeReplyObject(r);
            gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0, true);
            return GH_ESTORE;
        }
        freeReplyObject(w);
    }
    gh_store_observe(&s->probe, GH_STORE_REDIS, op, gh_clock_mono_ns() - t0,
                     r->type == REDIS_REPLY_ERROR);
    *reply = r;
    return 0;
}

/* Runs script `sc` with the shared arguments, now_ms and `extra` of its own (lens: their
 * lengths, NULL when they are C strings). An error reply is logged and answered with
 * GH_ESTORE; NOSCRIPT (Redis restarted or flushed its scripts between our load and now)
 * reloads the scripts and tries once more. */
static int run_script(redis_store_t *s, int sc, int64_t now_ms, int nextra, const char **extra,
                      const size_t *lens, redisReply **reply)
{
    const char *argv[MAX_ARGS + 8];
    size_t argvlen[MAX_ARGS + 8];
    char now[24], sha[41];
    assert(nextra + 7 <= MAX_ARGS + 8);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    const char *old = atomic_load_explicit(&s->old_layout, memory_order_relaxed) ? "1" : "0";
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
        argv[argc++] = old;
        for (int i = 0; i < argc; i++)
            argvlen[i] = strlen(argv[i]);
        for (int i = 0; i < nextra; i++) {
            argvlen[argc] = lens ? lens[i] : strlen(extra[i]);
            argv[argc++] = extra[i];
        }
        redisReply *r = NULL;
        int rc = command(s, script_op[sc], argc, argv, argvlen, script_acked[sc], &r);
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
                      size_t idlen, long long c, long long l, long long e, uint8_t amr,
                      const gh_session_client_t *client)
{
    memset(out, 0, offsetof(gh_session_info_t, client));
    out->amr = amr ? amr : GH_AMR_PWD;
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
                    const gh_session_client_t *client, uint8_t amr, int64_t now,
                    gh_session_info_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    now = clamp_now(s, now);
    gh_session_client_t cl;
    if (client)
        gh_session_client_make(&cl, client->ip, client->user_agent,
                               strnlen(client->user_agent, sizeof client->user_agent));
    else
        cl.ip[0] = cl.user_agent[0] = '\0';
    char uid[24], id[GH_SESSION_ID_LEN + 1], exp[24], cap[16];
    uint8_t value[V_MAX], raw[GH_SESSION_ID_RAW_LEN];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    int64_t expires = now + s->limits.session_ttl_ms;
    snprintf(exp, sizeof exp, "%lld", (long long)expires);
    snprintf(cap, sizeof cap, "%u", s->limits.max_per_user);
    randombytes_buf(raw, sizeof raw);
    gh_base64url_encode(raw, sizeof raw, id);
    id[GH_SESSION_ID_LEN] = '\0';
    size_t vlen = pack(value, user_id, now, now, expires, raw, amr, &cl);
    const char *extra[] = {(const char *)hash, uid, (const char *)value, exp, cap};
    size_t lens[] = {KEY_HASH_LEN, strlen(uid), vlen, strlen(exp), strlen(cap)};
    redisReply *r = NULL;
    int rc = run_script(s, SC_CREATE, now, 5, extra, lens, &r);
    if (rc != 0)
        return rc;
    long long status, evicted, idle, expired;
    if (!int_at(r, 0, &status))
        return malformed(r, "create");
    if (status == -1) {
        freeReplyObject(r);
        return GH_EEXISTS;
    }
    if (status != 0 || !int_at(r, 1, &evicted) || !int_at(r, 2, &idle) || !int_at(r, 3, &expired))
        return malformed(r, "create");
    freeReplyObject(r);
    atomic_fetch_add_explicit(&s->created_total, 1, memory_order_relaxed);
    count_end(s, GH_END_EVICTED, (uint64_t)evicted);
    count_end(s, GH_END_IDLE, (uint64_t)idle);
    count_end(s, GH_END_EXPIRED, (uint64_t)expired);
    if (out)
        fill_info(s, out, user_id, id, GH_SESSION_ID_LEN, now, now, expires, amr, &cl);
    return 0;
}

/* Runs the write half of a token check (SC_TOUCH). Returns 0 with *l the recorded last use,
 * or GH_ENOTFOUND (ended now, counted, or gone). */
static int touch(redis_store_t *s, const uint8_t *hash, int64_t now, int64_t *l)
{
    const char *extra[] = {(const char *)hash};
    size_t lens[] = {KEY_HASH_LEN};
    redisReply *r = NULL;
    int rc = run_script(s, SC_TOUCH, now, 1, extra, lens, &r);
    if (rc != 0)
        return rc;
    long long status, counted, last;
    const char *why;
    size_t whylen;
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
    if (status != 2 || !int_at(r, 1, &last))
        return malformed(r, "lookup");
    freeReplyObject(r);
    *l = last;
    return 0;
}

/* The token check: one GET, decided here. It writes (a script) only to end a session past a
 * deadline, or to record its last use once the recorded one is a touch interval old. */
static int r_lookup(gh_session_store_t *base, const uint8_t *hash, int64_t now,
                    gh_session_info_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    now = clamp_now(s, now);
    char key[PREFIX_MAX + 1 + KEY_HASH_LEN];
    const char *argv[] = {"GET", key};
    size_t argvlen[] = {3, session_key(s, hash, key)};
    redisReply *r = NULL;
    int rc = command(s, GH_STORE_OP_LOOKUP, 2, argv, argvlen, false, &r);
    if (rc != 0)
        return rc;
    if (r->type == REDIS_REPLY_NIL && atomic_load_explicit(&s->old_layout, memory_order_relaxed)) {
        /* Not in this layout; it may be in the one before: convert it, then read again. */
        freeReplyObject(r);
        r = NULL;
        char hex[HEX_LEN + 1];
        to_hex(hash, hex);
        const char *extra[] = {hex, (const char *)hash};
        size_t lens[] = {HEX_LEN, KEY_HASH_LEN};
        redisReply *m = NULL;
        if ((rc = run_script(s, SC_MIGRATE, now, 2, extra, lens, &m)) != 0)
            return rc;
        bool converted = m->type == REDIS_REPLY_INTEGER && m->integer == 1;
        freeReplyObject(m);
        if (!converted)
            return GH_ENOTFOUND;
        if ((rc = command(s, GH_STORE_OP_LOOKUP, 2, argv, argvlen, false, &r)) != 0)
            return rc;
    }
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return GH_ENOTFOUND;
    }
    unpacked_t u;
    if (r->type != REDIS_REPLY_STRING || !unpack(r->str, r->len, false, &u)) {
        GH_LOG(GH_LOG_ERROR, "session store gave an unexpected reply", GH_LS("op", "lookup"));
        freeReplyObject(r);
        return GH_ESTORE;
    }
    freeReplyObject(r);
    int64_t idle = u.l + s->limits.idle_ttl_ms, deadline = idle < u.e ? idle : u.e;
    if (now >= deadline || (now > u.l && now - u.l >= s->touch_interval_ms)) {
        if ((rc = touch(s, hash, now, &u.l)) != 0)
            return rc;
    }
    if (out)
        fill_info(s, out, u.uid, u.id, GH_SESSION_ID_LEN, u.c, u.l, u.e, u.amr, NULL);
    return 0;
}

/* Scripts that answer one integer: how many sessions they ended. */
static int run_count(redis_store_t *s, int sc, int64_t now, int nextra, const char **extra,
                     const size_t *lens, long long *n)
{
    redisReply *r = NULL;
    int rc = run_script(s, sc, now, nextra, extra, lens, &r);
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
    const char *extra[] = {(const char *)hash, hex};
    size_t lens[] = {KEY_HASH_LEN, HEX_LEN};
    long long n = 0;
    int rc = run_count(s, SC_END, clamp_now(s, 0), 2, extra, lens, &n);
    if (rc != 0)
        return rc;
    count_end(s, reason, (uint64_t)n);
    return n ? 0 : GH_ENOTFOUND;
}

static int r_end_by_id(gh_session_store_t *base, uint64_t user_id, const char *id,
                       gh_session_end_t reason)
{
    redis_store_t *s = (redis_store_t *)base;
    uint8_t raw[GH_SESSION_ID_RAW_LEN];
    size_t rawlen = 0;
    if (!id || strnlen(id, GH_SESSION_ID_LEN + 1) != GH_SESSION_ID_LEN ||
        gh_base64url_decode(id, GH_SESSION_ID_LEN, raw, sizeof raw, &rawlen) != 0 ||
        rawlen != sizeof raw)
        return GH_ENOTFOUND;
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *extra[] = {uid, (const char *)raw};
    size_t lens[] = {strlen(uid), sizeof raw};
    long long n = 0;
    int rc = run_count(s, SC_END_BY_ID, clamp_now(s, 0), 2, extra, lens, &n);
    if (rc != 0)
        return rc;
    count_end(s, reason, (uint64_t)n);
    return n ? 0 : GH_ENOTFOUND;
}

static int r_end_user(gh_session_store_t *base, uint64_t user_id, const uint8_t *keep,
                      gh_session_end_t reason, size_t *ended)
{
    redis_store_t *s = (redis_store_t *)base;
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user_id);
    const char *extra[] = {uid, keep ? (const char *)keep : ""};
    size_t lens[] = {strlen(uid), keep ? KEY_HASH_LEN : 0};
    long long n = 0;
    if (ended)
        *ended = 0;
    int rc = run_count(s, SC_END_USER, clamp_now(s, 0), 2, extra, lens, &n);
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
    int rc = run_script(s, SC_LIST, now, 2, extra, NULL, &r);
    if (rc != 0)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements > cap)
        return malformed(r, "list");
    for (size_t i = 0; i < r->elements; i++) {
        unpacked_t u;
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            !unpack(r->element[i]->str, r->element[i]->len, true, &u) || u.uid != user_id) {
            *n = 0;
            return malformed(r, "list");
        }
        fill_info(s, &out[i], user_id, u.id, GH_SESSION_ID_LEN, u.c, u.l, u.e, u.amr, &u.client);
    }
    *n = r->elements;
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
        if (run_script(s, SC_EXPIRE, now, 1, extra, NULL, &r) != 0)
            break; /* Redis is away: the next tick tries again */
        long long idle, expired, examined, old;
        if (!int_at(r, 0, &idle) || !int_at(r, 1, &expired) || !int_at(r, 2, &examined) ||
            !int_at(r, 3, &old)) {
            (void)malformed(r, "expire");
            break;
        }
        freeReplyObject(r);
        atomic_store_explicit(&s->old_layout, old != 0, memory_order_relaxed);
        count_end(s, GH_END_IDLE, (uint64_t)idle);
        count_end(s, GH_END_EXPIRED, (uint64_t)expired);
        ended += (size_t)(idle + expired);
        done += (size_t)examined;
        if ((size_t)examined < batch)
            break;
    }
    return ended;
}

/* Asks Redis how many sessions there are and whether old data is left; 0 or GH_ESTORE. */
static int count(redis_store_t *s)
{
    redisReply *r = NULL;
    int rc = run_script(s, SC_COUNT, clamp_now(s, 0), 0, NULL, NULL, &r);
    if (rc != 0)
        return rc;
    long long n, old;
    if (!int_at(r, 0, &n) || !int_at(r, 1, &old) || n < 0)
        return malformed(r, "stats");
    freeReplyObject(r);
    atomic_store_explicit(&s->active, (uint64_t)n, memory_order_relaxed);
    atomic_store_explicit(&s->old_layout, old != 0, memory_order_relaxed);
    return 0;
}

static void r_stats(gh_session_store_t *base, gh_session_stats_t *out)
{
    redis_store_t *s = (redis_store_t *)base;
    memset(out, 0, sizeof *out);
    /* Redis counts every session of every node; when it does not answer, the last count stands. */
    (void)count(s);
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
    int rc = command(s, GH_STORE_OP_PING, 1, argv, NULL, false, &r);
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
    "local n, users = 0, {}\n"
    "for _, sk in ipairs(redis.call('KEYS', P .. 'k*')) do\n"
    "  local h = string.sub(sk, #P + 2)\n"
    "  local v = redis.call('GET', sk)\n"
    "  if #h ~= 24 or (string.byte(v, 1) ~= 1 and string.byte(v, 1) ~= 2) then\n"
    "    return bad('value', sk)\n"
    "  end\n"
    "  local c, l, e = times(v)\n"
    "  if not (c <= l and l < e) then return bad('times', sk) end\n"
    "  local u = uid(v)\n"
    "  local d = dl(l, e)\n"
    "  if tonumber(redis.call('ZSCORE', ukey(u), h)) ~= d then return bad('user index', u) end\n"
    "  local eu = tonumber(redis.call('ZSCORE', E, u))\n"
    "  if not eu or eu > d then return bad('expiry index', u) end\n"
    "  if redis.call('TTL', sk) ~= -1 then return bad('ttl', u) end\n"
    "  n = n + 1\n"
    "  users[u] = (users[u] or 0) + 1\n"
    "end\n"
    "if n ~= tonumber(redis.call('GET', NK) or '0') then return bad('count', tostring(n)) end\n"
    "for _, u in ipairs(redis.call('ZRANGE', E, 0, -1)) do\n"
    "  if redis.call('ZCARD', ukey(u)) ~= (users[u] or 0) then return bad('user members', u) end\n"

    "  users[u] = nil\n"
    "end\n"
    "if next(users) then return bad('user not in expiry index', next(users)) end\n"
    "return ''\n";

int gh_session_redis_connect(gh_session_store_t *base, void **conn)
{
    *conn = NULL;
    if (!base || base->ops != &redis_ops)
        return GH_EINVAL;
    redisContext *c = NULL;
    int rc = connect_one((redis_store_t *)base, &c);
    *conn = c;
    return rc;
}

int gh_session_redis_check(gh_session_store_t *base, const char **why)
{
    static _Thread_local char broken[160];
    redis_store_t *s = (redis_store_t *)base;
    if (!base || base->ops != &redis_ops)
        return GH_EINVAL;
    const char *argv[] = {"EVAL", check_script, "0", s->prefix, s->idle_arg, "0", "0"};
    redisReply *r = NULL;
    int rc = command(s, GH_STORE_OP_STATS, 7, argv, NULL, false, &r);
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
    if (s->watching) {
        atomic_store(&s->stop, true);
        pthread_join(s->watcher, NULL);
    }
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
    s->wait_replicas = opt->wait_replicas;
    s->probe = opt->probe;
    s->timeout_ms = opt->timeout_ms ? opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    s->timeout.tv_sec = s->timeout_ms / 1000;
    s->timeout.tv_usec = (s->timeout_ms % 1000) * 1000;
    snprintf(s->prefix, sizeof s->prefix, "%s", prefix);
    snprintf(s->idle_arg, sizeof s->idle_arg, "%lld", (long long)limits->idle_ttl_ms);
    pthread_mutex_init(&s->lock, NULL);
    gh_session_store_t *b = &s->base;
    int rc = parse_url(s, opt->url);
    if (rc != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot parse the Redis URL",
               GH_LS("expected", "redis://[[user]:password@]host[:port][/db], "
                                 "redis-sentinel://[[user]:password@]host:port,.../MASTER[/db] "
                                 "or unix:/path"));
        goto fail;
    }
    gh_store_pool_options_t po = {.what = "session store",
                                  .store = "redis",
                                  .mem = GH_MEM_SESSIONS,
                                  .size = opt->pool_size ? opt->pool_size : DEFAULT_POOL,
                                  .timeout_ms = s->timeout_ms,
                                  /* with sentinels, asking again is cheap and a failover
                                   * takes about a second: retry often */
                                  .backoff_max_ms = s->n_sentinels ? SENTINEL_BACKOFF_MAX_MS : 0,
                                  .connect = pool_connect,
                                  .disconnect = pool_disconnect,
                                  .ctx = s};
    if ((rc = gh_store_pool_create(&po, &s->pool)) != 0)
        goto fail;
    /* What gh_mem charged for us (it counts usable sizes); it never changes after this. */
    s->bytes = malloc_usable_size(s) + gh_store_pool_bytes(s->pool);
    /* One connection now: a wrong address or password is a start-up error, not a 503 later;
     * and whether data in the old layout is there to convert. */
    if ((rc = r_ping(b)) != 0 || (rc = count(s)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot reach Redis", GH_LS("host", s->host), GH_LI("port", s->port),
               GH_LS("master", s->master));
        rc = GH_ESTORE;
        goto fail;
    }
    if (s->n_sentinels) {
        if (pthread_create(&s->watcher, NULL, watch_sentinels, s) != 0) {
            rc = GH_ENOMEM;
            goto fail;
        }
        s->watching = true;
    }
    *out = b;
    return 0;
fail:
    r_destroy(&b);
    return rc;
}
