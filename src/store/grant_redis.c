/*
 * grant_redis.c — the grant store in Redis (grant.h), shared by every node on the same Redis:
 * a code issued on one node is exchanged on another, a code taken on one node is a replay on
 * every other, and a logout on any node ends the session's families everywhere.
 *
 * The one design decision: as for sessions and pending logins, every operation is ONE Lua
 * script, atomic in Redis, so the bounds and their policy, single use of a code, rotation with
 * reuse detection and the revocations never interleave with another node's. Deadlines are the
 * caller's `now` (exact to the millisecond whether or not a sweep ran); PEXPIRE (the deadline
 * plus a minute) is the backstop that frees Redis when no node runs.
 *
 * Keys (P = "gh:"; H = hex of a code's hash, F = hex of a family id, never a token):
 *   P oc:H        hash {b: the code (packed), e: deadline, t: taken, f: family id}
 *   P ocx         zset of H by deadline (the bound and the live gauge)
 *   P of:F        hash {u user, c client, s session, sc scopes, am amr, at auth_time,
 *                 r refresh hash, a access hash, ae access deadline, cr created, e deadline,
 *                 g generation}
 *   P ofx         zset of F by deadline (the bound, eviction of the oldest, expiry)
 *   P ofu:USER    zset of F by creation (the per-user bound, revoke_user)
 *   P ofs:SESSION set of F (revoke_session: a logout)
 *   P ofc:CLIENT  set of F (revoke_client)
 *   P ok:USER     hash client -> scopes (consents); P okz:USER zset client by time given;
 *   P okx         zset "USER:client" by time given (the bound); P okc:CLIENT set of USER
 * Four connections, each behind its own mutex (made on first use, re-made after an error); when
 * Redis does not answer, operations fail with GH_ESTORE (fail closed). The store struct is charged
 * to `oidc_tokens`.
 */
#include "store/grant.h"
#include "store/grant_internal.h"
#include "store/redis_common.h"

#include <hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "mem/mem.h"

#define GRACE_MS 60000
#define MAX_ARGS 24

#define CONNS 4     /* connections, each behind its own mutex */
#define NSCRIPTS 20 /* more than the scripts below */

typedef struct {
    pthread_mutex_t lock;
    redisContext *c;
} slot_t;

typedef struct {
    gh_grant_store_t base;
    pthread_mutex_t lock; /* the counters */
    slot_t slots[CONNS];
    _Atomic unsigned next;
    gh_grant_connect_fn connect;
    void *connect_ctx;
    /* the SHA1 of each script Redis has loaded (EVALSHA saves sending the text each time);
     * guarded by lock */
    struct {
        const char *script;
        char sha[41];
    } shas[NSCRIPTS];
    unsigned nshas;
    gh_grant_limits_t limits;
    gh_grant_stats_t stats;  /* this node's evictions, refusals, expiries, reuse, replays */
    _Atomic int64_t seen_ms; /* the latest `now` a caller gave: the live gauges' clock */
} redis_t;

static void saw(redis_t *s, int64_t now)
{
    int64_t v = atomic_load_explicit(&s->seen_ms, memory_order_relaxed);
    while (now > v && !atomic_compare_exchange_weak(&s->seen_ms, &v, now)) {
    }
}

#define LUA_PRELUDE                                                                                \
    "local P = 'gh:'\n"                                                                            \
    "local function fam_del(id)\n"                                                                 \
    "  local k = P .. 'of:' .. id\n"                                                               \
    "  local v = redis.call('HMGET', k, 'u', 's', 'c')\n"                                          \
    "  local n = redis.call('DEL', k)\n"                                                           \
    "  redis.call('ZREM', P .. 'ofx', id)\n"                                                       \
    "  if v[1] then\n"                                                                             \
    "    redis.call('ZREM', P .. 'ofu:' .. v[1], id)\n"                                            \
    "    redis.call('SREM', P .. 'ofs:' .. v[2], id)\n"                                            \
    "    redis.call('SREM', P .. 'ofc:' .. v[3], id)\n"                                            \
    "  end\n"                                                                                      \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local function con_del(u, c)\n"                                                               \
    "  local n = redis.call('HDEL', P .. 'ok:' .. u, c)\n"                                         \
    "  redis.call('ZREM', P .. 'okz:' .. u, c)\n"                                                  \
    "  redis.call('ZREM', P .. 'okx', u .. ':' .. c)\n"                                            \
    "  redis.call('SREM', P .. 'okc:' .. c, u)\n"                                                  \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local FIELDS = {'u', 'c', 's', 'sc', 'am', 'at', 'r', 'a', 'ae', 'cr', 'e', 'g'}\n"

/* ARGV: H, now, deadline, cap, refuse, packed code */
static const char PUT_CODE[] =
    LUA_PRELUDE "local k = P .. 'oc:' .. ARGV[1]\n"
                "local now = tonumber(ARGV[2])\n"
                "redis.call('ZREMRANGEBYSCORE', P .. 'ocx', '-inf', now)\n"
                "local e = redis.call('HGET', k, 'e')\n"
                "if e and tonumber(e) > now then return -2 end\n"
                "local ev = 0\n"
                "if redis.call('ZCARD', P .. 'ocx') >= tonumber(ARGV[4]) then\n"
                "  if ARGV[5] == '1' then return -1 end\n"
                "  local old = redis.call('ZPOPMIN', P .. 'ocx')\n"
                "  redis.call('DEL', P .. 'oc:' .. old[1])\n"
                "  ev = 1\n"
                "end\n"
                "redis.call('DEL', k)\n"
                "redis.call('HSET', k, 'b', ARGV[6], 'e', ARGV[3])\n"
                "redis.call('PEXPIRE', k, tonumber(ARGV[3]) - now + 60000)\n"
                "redis.call('ZADD', P .. 'ocx', ARGV[3], ARGV[1])\n"
                "return ev\n";
/* ARGV: H, now -> nil | {'C', packed, deadline} | {'R', family id or ''} */
static const char TAKE_CODE[] =
    LUA_PRELUDE "local k = P .. 'oc:' .. ARGV[1]\n"
                "local v = redis.call('HMGET', k, 'b', 'e', 't', 'f')\n"
                "if not v[2] or tonumber(v[2]) <= tonumber(ARGV[2]) then return false end\n"
                "if v[3] then return {'R', v[4] or '', v[2]} end\n"
                "redis.call('HDEL', k, 'b')\n"
                "redis.call('HSET', k, 't', '1')\n"
                "return {'C', v[1], v[2]}\n";
/* ARGV: H, now, family id */
static const char BIND[] =
    LUA_PRELUDE "local k = P .. 'oc:' .. ARGV[1]\n"
                "local v = redis.call('HMGET', k, 'e', 't')\n"
                "if not v[1] or tonumber(v[1]) <= tonumber(ARGV[2]) or not v[2] then return 0 end\n"
                "redis.call('HSET', k, 'f', ARGV[3])\n"
                "return 1\n";
/* ARGV: F, now, deadline, cap, refuse, max per user, then the 12 FIELDS' values.
 * -> evicted count, -1 refused, -2 exists */
static const char FAMILY_CREATE[] =
    LUA_PRELUDE "local id = ARGV[1]\n"
                "local now = tonumber(ARGV[2])\n"
                "local k = P .. 'of:' .. id\n"
                "if redis.call('EXISTS', k) == 1 then return -2 end\n"
                "local user, sid, client = ARGV[7], ARGV[9], ARGV[8]\n"
                "local uk = P .. 'ofu:' .. user\n"
                "local ev = 0\n"
                "while redis.call('ZCARD', uk) >= tonumber(ARGV[6]) do\n"
                "  local o = redis.call('ZPOPMIN', uk)\n"
                "  if fam_del(o[1]) == 1 then ev = ev + 1 end\n"
                "end\n"
                "if redis.call('ZCARD', P .. 'ofx') >= tonumber(ARGV[4]) then\n"
                "  local o = redis.call('ZRANGE', P .. 'ofx', 0, 0)\n"
                "  if ARGV[5] == '1' then\n"
                "    local e = redis.call('HGET', P .. 'of:' .. o[1], 'e')\n"
                "    if e and tonumber(e) > now then return {ev, -1} end\n"
                "  end\n"
                "  fam_del(o[1])\n"
                "  ev = ev + 1\n"
                "end\n"
                "local args = {}\n"
                "for i = 1, 12 do args[2 * i - 1] = FIELDS[i]; args[2 * i] = ARGV[6 + i] end\n"
                "redis.call('HSET', k, unpack(args))\n"
                "local ttl = tonumber(ARGV[3]) - now + 60000\n"
                "redis.call('PEXPIRE', k, ttl)\n"
                "redis.call('ZADD', P .. 'ofx', ARGV[3], id)\n"
                "redis.call('ZADD', uk, now, id)\n"
                "redis.call('PEXPIRE', uk, ttl)\n"
                "redis.call('SADD', P .. 'ofs:' .. sid, id)\n"
                "redis.call('PEXPIRE', P .. 'ofs:' .. sid, ttl)\n"
                "redis.call('SADD', P .. 'ofc:' .. client, id)\n"
                "return {ev, 0}\n";
/* ARGV: F, now -> nil | the 12 FIELDS */
static const char FAMILY_GET[] =
    LUA_PRELUDE "local v = redis.call('HMGET', P .. 'of:' .. ARGV[1], unpack(FIELDS))\n"
                "if not v[1] or tonumber(v[11]) <= tonumber(ARGV[2]) then return false end\n"
                "return v\n";
/* ARGV: F, now, presented, new refresh, new access, access deadline
 * -> nil | {'OK', FIELDS...} | {'X', FIELDS...} (reuse: the family is gone) */
static const char FAMILY_ROTATE[] =
    LUA_PRELUDE "local k = P .. 'of:' .. ARGV[1]\n"
                "local v = redis.call('HMGET', k, unpack(FIELDS))\n"
                "if not v[1] or tonumber(v[11]) <= tonumber(ARGV[2]) then return false end\n"
                "if v[7] ~= ARGV[3] then\n"
                "  fam_del(ARGV[1])\n"
                "  table.insert(v, 1, 'X')\n"
                "  return v\n"
                "end\n"
                "local g = redis.call('HINCRBY', k, 'g', 1)\n"
                "redis.call('HSET', k, 'r', ARGV[4], 'a', ARGV[5], 'ae', ARGV[6])\n"
                "v[7] = ARGV[4]; v[8] = ARGV[5]; v[9] = ARGV[6]; v[12] = tostring(g)\n"
                "table.insert(v, 1, 'OK')\n"
                "return v\n";
/* ARGV: F, now, access hash -> nil | FIELDS */
static const char FAMILY_CHECK[] =
    LUA_PRELUDE "local v = redis.call('HMGET', P .. 'of:' .. ARGV[1], unpack(FIELDS))\n"
                "local now = tonumber(ARGV[2])\n"
                "if not v[1] or tonumber(v[11]) <= now or tonumber(v[9]) <= now or\n"
                "   v[8] ~= ARGV[3] then return false end\n"
                "return v\n";
static const char FAMILY_REVOKE[] = LUA_PRELUDE "return fam_del(ARGV[1])\n";
static const char REVOKE_SESSION[] =
    LUA_PRELUDE "local sk = P .. 'ofs:' .. ARGV[1]\n"
                "local n = 0\n"
                "for _, id in ipairs(redis.call('SMEMBERS', sk)) do n = n + fam_del(id) end\n"
                "redis.call('DEL', sk)\n"
                "return n\n";
static const char REVOKE_USER[] =
    LUA_PRELUDE "local uk = P .. 'ofu:' .. ARGV[1]\n"
                "local n = 0\n"
                "for _, id in ipairs(redis.call('ZRANGE', uk, 0, -1)) do n = n + fam_del(id) end\n"
                "redis.call('DEL', uk)\n"
                "return n\n";
static const char REVOKE_CLIENT[] =
    LUA_PRELUDE "local ck = P .. 'ofc:' .. ARGV[1]\n"
                "local n = 0\n"
                "for _, id in ipairs(redis.call('SMEMBERS', ck)) do n = n + fam_del(id) end\n"
                "redis.call('DEL', ck)\n"
                "for _, u in ipairs(redis.call('SMEMBERS', P .. 'okc:' .. ARGV[1])) do\n"
                "  con_del(u, ARGV[1])\n"
                "end\n"
                "return n\n";
/* ARGV: user, client, scopes, now, max per user, cap, refuse -> evicted | -1 refused */
static const char CONSENT_PUT[] =
    LUA_PRELUDE "local u, c = ARGV[1], ARGV[2]\n"
                "local hk = P .. 'ok:' .. u\n"
                "local zk = P .. 'okz:' .. u\n"
                "local ev = 0\n"
                "if redis.call('HEXISTS', hk, c) == 0 then\n"
                "  while redis.call('ZCARD', zk) >= tonumber(ARGV[5]) do\n"
                "    local o = redis.call('ZPOPMIN', zk)\n"
                "    con_del(u, o[1]); ev = ev + 1\n"
                "  end\n"
                "  if redis.call('ZCARD', P .. 'okx') >= tonumber(ARGV[6]) then\n"
                "    if ARGV[7] == '1' then return -1 end\n"
                "    local o = redis.call('ZPOPMIN', P .. 'okx')\n"
                "    local i = string.find(o[1], ':', 1, true)\n"
                "    con_del(string.sub(o[1], 1, i - 1), string.sub(o[1], i + 1)); ev = ev + 1\n"
                "  end\n"
                "end\n"
                "redis.call('HSET', hk, c, ARGV[3])\n"
                "redis.call('ZADD', zk, ARGV[4], c)\n"
                "redis.call('ZADD', P .. 'okx', ARGV[4], u .. ':' .. c)\n"
                "redis.call('SADD', P .. 'okc:' .. c, u)\n"
                "return ev\n";
static const char CONSENT_GET[] = "return redis.call('HGET', 'gh:ok:' .. ARGV[1], ARGV[2])\n";
/* ARGV: user, client or '' (every consent of the user) -> removed */
static const char CONSENT_REVOKE[] =
    LUA_PRELUDE "if ARGV[2] ~= '' then return con_del(ARGV[1], ARGV[2]) end\n"
                "local n = 0\n"
                "for _, c in ipairs(redis.call('HKEYS', P .. 'ok:' .. ARGV[1])) do\n"
                "  n = n + con_del(ARGV[1], c)\n"
                "end\n"
                "return n\n";
/* ARGV: now, max -> {codes, families} removed */
static const char EXPIRE[] =
    LUA_PRELUDE "local codes = redis.call('ZREMRANGEBYSCORE', P .. 'ocx', '-inf', ARGV[1])\n"
                "local n = 0\n"
                "for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ofx', '-inf', ARGV[1],\n"
                "                               'LIMIT', 0, tonumber(ARGV[2]))) do\n"
                "  fam_del(id); n = n + 1\n"
                "end\n"
                "return {codes, n}\n";
/* ARGV: now -> {codes, families, consents} */
static const char LIVE[] = "local now = ARGV[1]\n"
                           "return {redis.call('ZCOUNT', 'gh:ocx', '(' .. now, '+inf'),\n"
                           "        redis.call('ZCOUNT', 'gh:ofx', '(' .. now, '+inf'),\n"
                           "        redis.call('ZCARD', 'gh:okx')}\n";

/* A connected context of the slot (its lock held), or NULL. */
static redisContext *conn(redis_t *s, slot_t *sl)
{
    if (sl->c && !sl->c->err)
        return sl->c;
    if (sl->c)
        redisFree(sl->c);
    sl->c = NULL;
    void *c = NULL;
    if (s->connect(s->connect_ctx, &c) != 0) {
        GH_LOG(GH_LOG_WARN, "grant store: cannot reach the Redis master");
        return NULL;
    }
    sl->c = c;
    return sl->c;
}

/* EVAL script with no keys and the args: the reply, or NULL (GH_ESTORE). Slot lock held. */
/* The script's SHA1 once Redis has loaded it (copied into sha), else false. */
static bool sha_of(redis_t *s, const char *script, char sha[41])
{
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = 0; i < s->nshas && !found; i++)
        if (s->shas[i].script == script) {
            memcpy(sha, s->shas[i].sha, 41);
            found = true;
        }
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void sha_learn(redis_t *s, const char *script, const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING || r->len != 40)
        return;
    pthread_mutex_lock(&s->lock);
    bool known = false;
    for (unsigned i = 0; i < s->nshas; i++)
        known |= s->shas[i].script == script;
    if (!known && s->nshas < NSCRIPTS) {
        s->shas[s->nshas].script = script;
        memcpy(s->shas[s->nshas].sha, r->str, 40);
        s->shas[s->nshas].sha[40] = '\0';
        s->nshas++;
    }
    pthread_mutex_unlock(&s->lock);
}

/* EVALSHA (EVAL when Redis does not have the script) with no keys and the args: the reply, or
 * NULL (GH_ESTORE). Slot lock held. */
static redisReply *eval(redis_t *s, slot_t *sl, const char *script, int argc, const char **argv,
                        const size_t *lens)
{
    const char *av[MAX_ARGS + 3];
    size_t al[MAX_ARGS + 3];
    char sha[41];
    av[2] = "0";
    al[2] = 1;
    for (int i = 0; i < argc && i < MAX_ARGS; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens && lens[i] != (size_t)-1 ? lens[i] : strlen(argv[i]);
    }
    redisContext *c = conn(s, sl);
    if (!c)
        return NULL;
    redisReply *r = NULL;
    if (!sha_of(s, script, sha)) {
        r = redisCommand(c, "SCRIPT LOAD %s", script);
        if (r && r->type == REDIS_REPLY_STRING)
            sha_learn(s, script, r);
        if (r)
            freeReplyObject(r);
        r = NULL;
    }
    if (sha_of(s, script, sha)) {
        av[0] = "EVALSHA";
        al[0] = 7;
        av[1] = sha;
        al[1] = 40;
        r = redisCommandArgv(c, 3 + argc, av, al);
        if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            freeReplyObject(r); /* a restarted or flushed Redis: the text loads it again */
            r = NULL;
        }
    }
    if (!r && !c->err) {
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = script;
        al[1] = strlen(script);
        r = redisCommandArgv(c, 3 + argc, av, al);
    }
    return gh_redis_reply_ok(&sl->c, r, "grant store: Redis error") ? r : NULL;
}

static redisReply *call(redis_t *s, const char *script, int argc, const char **argv,
                        const size_t *lens)
{
    /* a free connection if there is one, else wait for the next in turn */
    slot_t *sl = NULL;
    unsigned first = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    for (unsigned i = 0; i < CONNS && !sl; i++)
        if (pthread_mutex_trylock(&s->slots[(first + i) % CONNS].lock) == 0)
            sl = &s->slots[(first + i) % CONNS];
    if (!sl) {
        sl = &s->slots[first % CONNS];
        pthread_mutex_lock(&sl->lock);
    }
    redisReply *r = eval(s, sl, script, argc, argv, lens);
    pthread_mutex_unlock(&sl->lock);
    return r;
}

static long long to_ll(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

/* ---- codes ---- */

/* The packed code: client 65, session 23, challenge 44, redirect 32, user 8, scopes 8,
 * auth_time 8, amr 1, nonce_len 1, nonce. */
#define CODE_FIXED (65 + 23 + 44 + 32 + 8 + 8 + 8 + 1 + 1)

static size_t pack_code(const gh_grant_code_t *c, uint8_t *b)
{
    size_t o = 0, nl = strnlen(c->nonce, sizeof c->nonce);
    memset(b, 0, CODE_FIXED);
    memcpy(b + o, c->client_id, strnlen(c->client_id, GH_GRANT_CLIENT_ID_MAX));
    o += 65;
    memcpy(b + o, c->session_id, strnlen(c->session_id, GH_SESSION_ID_LEN));
    o += 23;
    memcpy(b + o, c->code_challenge, strnlen(c->code_challenge, GH_GRANT_CHALLENGE_MAX));
    o += 44;
    memcpy(b + o, c->redirect_hash, 32);
    o += 32;
    gh_redis_put64(b + o, c->user_id);
    o += 8;
    gh_redis_put64(b + o, c->scopes);
    o += 8;
    gh_redis_put64(b + o, (uint64_t)c->auth_time_ms);
    o += 8;
    b[o++] = c->amr;
    b[o++] = (uint8_t)nl;
    memcpy(b + o, c->nonce, nl);
    return o + nl;
}

static int unpack_code(const uint8_t *b, size_t len, gh_grant_code_t *c)
{
    if (len < CODE_FIXED || len != (size_t)CODE_FIXED + b[CODE_FIXED - 1])
        return GH_ESTORE;
    size_t o = 0;
    memcpy(c->client_id, b + o, 64);
    o += 65;
    memcpy(c->session_id, b + o, 22);
    o += 23;
    memcpy(c->code_challenge, b + o, 43);
    o += 44;
    memcpy(c->redirect_hash, b + o, 32);
    o += 32;
    c->user_id = gh_redis_get64(b + o);
    o += 8;
    c->scopes = (uint32_t)gh_redis_get64(b + o);
    o += 8;
    c->auth_time_ms = (int64_t)gh_redis_get64(b + o);
    o += 8;
    c->amr = b[o++];
    size_t nl = b[o++];
    memcpy(c->nonce, b + o, nl);
    c->nonce[nl] = '\0';
    return 0;
}

static int r_put_code(gh_grant_store_t *b, const uint8_t *key, const gh_grant_code_t *c,
                      int64_t now)
{
    redis_t *s = (redis_t *)b;
    if (strnlen(c->nonce, sizeof c->nonce) > GH_GRANT_NONCE_MAX ||
        strnlen(c->client_id, sizeof c->client_id) > GH_GRANT_CLIENT_ID_MAX ||
        strnlen(c->code_challenge, sizeof c->code_challenge) > GH_GRANT_CHALLENGE_MAX ||
        strnlen(c->session_id, sizeof c->session_id) > GH_SESSION_ID_LEN)
        return GH_EINVAL;
    char h[2 * GH_GRANT_KEY_LEN + 1], snow[24], sexp[24], scap[24];
    gh_redis_hex(key, GH_GRANT_KEY_LEN, h);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    snprintf(sexp, sizeof sexp, "%lld", (long long)(now + GH_GRANT_CODE_TTL_MS));
    snprintf(scap, sizeof scap, "%zu", s->limits.max_codes);
    uint8_t packed[CODE_FIXED + GH_GRANT_NONCE_MAX];
    size_t plen = pack_code(c, packed);
    const char *argv[] = {h,
                          snow,
                          sexp,
                          scap,
                          s->limits.policy == GH_POLICY_REFUSE ? "1" : "0",
                          (const char *)packed};
    size_t lens[] = {(size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, (size_t)-1, plen};
    redisReply *r = call(s, PUT_CODE, 6, argv, lens);
    if (!r)
        return GH_ESTORE;
    long long v = to_ll(r);
    freeReplyObject(r);
    pthread_mutex_lock(&s->lock);
    if (v == 1)
        s->stats.evicted++;
    if (v == -1)
        s->stats.refused++;
    pthread_mutex_unlock(&s->lock);
    return v == -1 ? GH_EBUSY : v == -2 ? GH_EEXISTS : 0;
}

static int r_take_code(gh_grant_store_t *b, const uint8_t *key, int64_t now, gh_grant_code_t *out)
{
    redis_t *s = (redis_t *)b;
    memset(out, 0, sizeof *out);
    char h[2 * GH_GRANT_KEY_LEN + 1], snow[24];
    gh_redis_hex(key, GH_GRANT_KEY_LEN, h);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    const char *argv[] = {h, snow};
    redisReply *r = call(s, TAKE_CODE, 2, argv, NULL);
    if (!r)
        return GH_ESTORE;
    int ret = GH_ESTORE;
    if (r->type == REDIS_REPLY_NIL) {
        ret = GH_ENOTFOUND;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->str) {
        out->expires_at_ms = to_ll(r->element[2]);
        if (r->element[0]->str[0] == 'R') {
            if (r->element[1]->len == GH_GRANT_FAMILY_ID_LEN) {
                memcpy(out->family_id, r->element[1]->str, GH_GRANT_FAMILY_ID_LEN);
                out->has_family = true;
            }
            pthread_mutex_lock(&s->lock);
            s->stats.replays++;
            pthread_mutex_unlock(&s->lock);
            ret = GH_EREPLAY;
        } else {
            ret = unpack_code((const uint8_t *)r->element[1]->str, r->element[1]->len, out);
        }
    }
    freeReplyObject(r);
    return ret;
}

static int r_code_bind(gh_grant_store_t *b, const uint8_t *key, const uint8_t *id, int64_t now)
{
    redis_t *s = (redis_t *)b;
    char h[2 * GH_GRANT_KEY_LEN + 1], snow[24];
    gh_redis_hex(key, GH_GRANT_KEY_LEN, h);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    const char *argv[] = {h, snow, (const char *)id};
    size_t lens[] = {(size_t)-1, (size_t)-1, GH_GRANT_FAMILY_ID_LEN};
    redisReply *r = call(s, BIND, 3, argv, lens);
    if (!r)
        return GH_ESTORE;
    int ret = to_ll(r) == 1 ? 0 : GH_ENOTFOUND;
    freeReplyObject(r);
    return ret;
}

/* ---- families ---- */

static void copy_str(char *dst, size_t cap, const redisReply *r)
{
    size_t n = r && r->str ? r->len : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, r->str, n);
    dst[n] = '\0';
}

/* The 12 FIELDS from element[first..first+11] into f (id from the caller). */
static int read_family(const redisReply *r, size_t first, const uint8_t *id, gh_grant_family_t *f)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != first + 12)
        return GH_ESTORE;
    redisReply *const *e = r->element + first;
    if (!e[0]->str || e[6]->len != GH_GRANT_HASH_LEN || e[7]->len != GH_GRANT_HASH_LEN)
        return GH_ESTORE;
    memset(f, 0, sizeof *f);
    memcpy(f->id, id, GH_GRANT_FAMILY_ID_LEN);
    f->user_id = strtoull(e[0]->str, NULL, 10);
    copy_str(f->client_id, sizeof f->client_id, e[1]);
    copy_str(f->session_id, sizeof f->session_id, e[2]);
    f->scopes = (uint32_t)to_ll(e[3]);
    f->amr = (uint8_t)to_ll(e[4]);
    f->auth_time_ms = to_ll(e[5]);
    memcpy(f->refresh_hash, e[6]->str, GH_GRANT_HASH_LEN);
    memcpy(f->access_hash, e[7]->str, GH_GRANT_HASH_LEN);
    f->access_expires_at_ms = to_ll(e[8]);
    f->created_at_ms = to_ll(e[9]);
    f->expires_at_ms = to_ll(e[10]);
    f->generation = (uint32_t)to_ll(e[11]);
    return 0;
}

static int r_family_create(gh_grant_store_t *b, const gh_grant_family_t *in, int64_t now,
                           gh_grant_family_t *out)
{
    redis_t *s = (redis_t *)b;
    size_t cl = strnlen(in->client_id, sizeof in->client_id);
    if (cl == 0 || cl > GH_GRANT_CLIENT_ID_MAX ||
        strnlen(in->session_id, sizeof in->session_id) > GH_SESSION_ID_LEN)
        return GH_EINVAL;
    gh_grant_family_t f = *in;
    f.client_id[GH_GRANT_CLIENT_ID_MAX] = '\0';
    f.session_id[GH_SESSION_ID_LEN] = '\0';
    f.created_at_ms = now;
    f.expires_at_ms = now + s->limits.refresh_ttl_ms;
    f.generation = 0;
    char id[2 * GH_GRANT_FAMILY_ID_LEN + 1], snow[24], sexp[24], scap[24], smax[24], su[24],
        ssc[16], sam[8], sat[24], sae[24];
    gh_redis_hex(f.id, GH_GRANT_FAMILY_ID_LEN, id);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    snprintf(sexp, sizeof sexp, "%lld", (long long)f.expires_at_ms);
    snprintf(scap, sizeof scap, "%zu", s->limits.max_families);
    snprintf(smax, sizeof smax, "%u", s->limits.max_per_user);
    snprintf(su, sizeof su, "%llu", (unsigned long long)f.user_id);
    snprintf(ssc, sizeof ssc, "%u", f.scopes);
    snprintf(sam, sizeof sam, "%u", f.amr);
    snprintf(sat, sizeof sat, "%lld", (long long)f.auth_time_ms);
    snprintf(sae, sizeof sae, "%lld", (long long)f.access_expires_at_ms);
    const char *argv[] = {id,
                          snow,
                          sexp,
                          scap,
                          s->limits.policy == GH_POLICY_REFUSE ? "1" : "0",
                          smax,
                          su,
                          f.client_id,
                          f.session_id,
                          ssc,
                          sam,
                          sat,
                          (const char *)f.refresh_hash,
                          (const char *)f.access_hash,
                          sae,
                          snow,
                          sexp,
                          "0"};
    size_t lens[18];
    for (int i = 0; i < 18; i++)
        lens[i] = (size_t)-1;
    lens[12] = lens[13] = GH_GRANT_HASH_LEN;
    redisReply *r = call(s, FAMILY_CREATE, 18, argv, lens);
    if (!r)
        return GH_ESTORE;
    int ret = 0;
    if (r->type == REDIS_REPLY_INTEGER) {
        ret = GH_EEXISTS;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        pthread_mutex_lock(&s->lock);
        s->stats.evicted += (uint64_t)to_ll(r->element[0]);
        if (to_ll(r->element[1]) == -1) {
            s->stats.refused++;
            ret = GH_EBUSY;
        }
        pthread_mutex_unlock(&s->lock);
    } else {
        ret = GH_ESTORE;
    }
    freeReplyObject(r);
    if (ret == 0 && out)
        *out = f;
    return ret;
}

static int family_read_op(redis_t *s, const char *script, const uint8_t *fid, int64_t now,
                          const uint8_t *hash, gh_grant_family_t *out)
{
    char id[2 * GH_GRANT_FAMILY_ID_LEN + 1], snow[24];
    gh_redis_hex(fid, GH_GRANT_FAMILY_ID_LEN, id);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    const char *argv[] = {id, snow, (const char *)hash};
    size_t lens[] = {(size_t)-1, (size_t)-1, GH_GRANT_HASH_LEN};
    redisReply *r = call(s, script, hash ? 3 : 2, argv, lens);
    if (!r)
        return GH_ESTORE;
    gh_grant_family_t f;
    int ret = r->type == REDIS_REPLY_NIL ? GH_ENOTFOUND : read_family(r, 0, fid, &f);
    freeReplyObject(r);
    if (ret == 0 && out)
        *out = f;
    return ret;
}

static int r_family_get(gh_grant_store_t *b, const uint8_t *id, int64_t now, gh_grant_family_t *out)
{
    return family_read_op((redis_t *)b, FAMILY_GET, id, now, NULL, out);
}

static int r_family_check_access(gh_grant_store_t *b, const uint8_t *id, const uint8_t *access,
                                 int64_t now, gh_grant_family_t *out)
{
    return family_read_op((redis_t *)b, FAMILY_CHECK, id, now, access, out);
}

static int r_family_rotate(gh_grant_store_t *b, const uint8_t *fid, const uint8_t *presented,
                           const uint8_t *new_refresh, const uint8_t *new_access,
                           int64_t access_expires_at, int64_t now, gh_grant_family_t *out)
{
    redis_t *s = (redis_t *)b;
    char id[2 * GH_GRANT_FAMILY_ID_LEN + 1], snow[24], sae[24];
    gh_redis_hex(fid, GH_GRANT_FAMILY_ID_LEN, id);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    snprintf(sae, sizeof sae, "%lld", (long long)access_expires_at);
    const char *argv[] = {
        id, snow, (const char *)presented, (const char *)new_refresh, (const char *)new_access,
        sae};
    size_t lens[] = {(size_t)-1,        (size_t)-1,        GH_GRANT_HASH_LEN,
                     GH_GRANT_HASH_LEN, GH_GRANT_HASH_LEN, (size_t)-1};
    redisReply *r = call(s, FAMILY_ROTATE, 6, argv, lens);
    if (!r)
        return GH_ESTORE;
    gh_grant_family_t f;
    int ret;
    if (r->type == REDIS_REPLY_NIL) {
        ret = GH_ENOTFOUND;
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 13 && r->element[0]->str) {
        bool reuse = r->element[0]->str[0] == 'X';
        ret = read_family(r, 1, fid, &f);
        if (ret == 0 && reuse) {
            ret = GH_EREUSE;
            pthread_mutex_lock(&s->lock);
            s->stats.reuse++;
            pthread_mutex_unlock(&s->lock);
        }
        if ((ret == 0 || ret == GH_EREUSE) && out)
            *out = f;
    } else {
        ret = GH_ESTORE;
    }
    freeReplyObject(r);
    return ret;
}

static int r_family_revoke(gh_grant_store_t *b, const uint8_t *fid)
{
    redis_t *s = (redis_t *)b;
    char id[2 * GH_GRANT_FAMILY_ID_LEN + 1];
    gh_redis_hex(fid, GH_GRANT_FAMILY_ID_LEN, id);
    const char *argv[] = {id};
    redisReply *r = call(s, FAMILY_REVOKE, 1, argv, NULL);
    if (!r)
        return GH_ESTORE;
    int ret = to_ll(r) == 1 ? 0 : GH_ENOTFOUND;
    freeReplyObject(r);
    return ret;
}

static int revoke_by(redis_t *s, const char *script, const char *arg, size_t *n)
{
    const char *argv[] = {arg};
    redisReply *r = call(s, script, 1, argv, NULL);
    if (n)
        *n = 0;
    if (!r)
        return GH_ESTORE;
    if (n)
        *n = (size_t)to_ll(r);
    freeReplyObject(r);
    return 0;
}

static int r_revoke_session(gh_grant_store_t *b, const char *sid, size_t *n)
{
    return revoke_by((redis_t *)b, REVOKE_SESSION, sid, n);
}

static int r_revoke_user(gh_grant_store_t *b, uint64_t user_id, size_t *n)
{
    char su[24];
    snprintf(su, sizeof su, "%llu", (unsigned long long)user_id);
    return revoke_by((redis_t *)b, REVOKE_USER, su, n);
}

static int r_revoke_client(gh_grant_store_t *b, const char *client_id, size_t *n)
{
    return revoke_by((redis_t *)b, REVOKE_CLIENT, client_id, n);
}

/* ---- consents ---- */

static int r_consent_put(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t scopes, int64_t now)
{
    redis_t *s = (redis_t *)b;
    size_t len = strnlen(client_id, GH_GRANT_CLIENT_ID_MAX + 1);
    if (len == 0 || len > GH_GRANT_CLIENT_ID_MAX)
        return GH_EINVAL;
    char su[24], ssc[16], snow[24], smax[24], scap[24];
    snprintf(su, sizeof su, "%llu", (unsigned long long)user_id);
    snprintf(ssc, sizeof ssc, "%u", scopes);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    snprintf(smax, sizeof smax, "%u", s->limits.max_per_user);
    snprintf(scap, sizeof scap, "%zu", s->limits.max_families);
    const char *argv[] = {
        su, client_id, ssc, snow, smax, scap, s->limits.policy == GH_POLICY_REFUSE ? "1" : "0"};
    redisReply *r = call(s, CONSENT_PUT, 7, argv, NULL);
    if (!r)
        return GH_ESTORE;
    long long v = to_ll(r);
    freeReplyObject(r);
    pthread_mutex_lock(&s->lock);
    if (v > 0)
        s->stats.evicted += (uint64_t)v;
    if (v == -1)
        s->stats.refused++;
    pthread_mutex_unlock(&s->lock);
    return v == -1 ? GH_EBUSY : 0;
}

static int r_consent_get(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t *scopes)
{
    redis_t *s = (redis_t *)b;
    char su[24];
    snprintf(su, sizeof su, "%llu", (unsigned long long)user_id);
    const char *argv[] = {su, client_id};
    redisReply *r = call(s, CONSENT_GET, 2, argv, NULL);
    if (!r)
        return GH_ESTORE;
    int ret = GH_ENOTFOUND;
    if (r->type == REDIS_REPLY_STRING) {
        *scopes = (uint32_t)to_ll(r);
        ret = 0;
    }
    freeReplyObject(r);
    return ret;
}

static int r_consent_revoke(gh_grant_store_t *b, uint64_t user_id, const char *client_id)
{
    redis_t *s = (redis_t *)b;
    char su[24];
    snprintf(su, sizeof su, "%llu", (unsigned long long)user_id);
    const char *argv[] = {su, client_id ? client_id : ""};
    redisReply *r = call(s, CONSENT_REVOKE, 2, argv, NULL);
    if (!r)
        return GH_ESTORE;
    int ret = to_ll(r) > 0 ? 0 : GH_ENOTFOUND;
    freeReplyObject(r);
    return ret;
}

/* ---- the rest ---- */

static size_t r_expire(gh_grant_store_t *b, int64_t now, size_t max)
{
    redis_t *s = (redis_t *)b;
    char snow[24], smax[24];
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    saw(s, now);
    snprintf(smax, sizeof smax, "%zu", max ? max : 1);
    const char *argv[] = {snow, smax};
    redisReply *r = call(s, EXPIRE, 2, argv, NULL);
    size_t n = 0;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
        n = (size_t)(to_ll(r->element[0]) + to_ll(r->element[1]));
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&s->lock);
    s->stats.expired += n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void r_stats(gh_grant_store_t *b, gh_grant_stats_t *out)
{
    redis_t *s = (redis_t *)b;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = atomic_load_explicit(&s->seen_ms, memory_order_relaxed);
    if (now == 0) /* no operation yet: the wall clock */
        now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char snow[24];
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    const char *argv[] = {snow};
    redisReply *r = call(s, LIVE, 1, argv, NULL);
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    pthread_mutex_unlock(&s->lock);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
        out->codes = (uint64_t)to_ll(r->element[0]);
        out->families = (uint64_t)to_ll(r->element[1]);
        out->consents = (uint64_t)to_ll(r->element[2]);
    }
    if (r)
        freeReplyObject(r);
    out->bytes = gh_mem_bytes(GH_MEM_OIDC_CODES) + gh_mem_bytes(GH_MEM_OIDC_TOKENS) +
                 gh_mem_bytes(GH_MEM_OIDC_CONSENTS);
}

static void r_destroy(gh_grant_store_t **b)
{
    redis_t *s = (redis_t *)*b;
    for (int i = 0; i < CONNS; i++) {
        if (s->slots[i].c)
            redisFree(s->slots[i].c);
        pthread_mutex_destroy(&s->slots[i].lock);
    }
    pthread_mutex_destroy(&s->lock);
    gh_mem_free(GH_MEM_OIDC_TOKENS, s);
    *b = NULL;
}

static const gh_grant_ops_t redis_ops = {
    .name = "redis",
    .put_code = r_put_code,
    .take_code = r_take_code,
    .code_bind_family = r_code_bind,
    .family_create = r_family_create,
    .family_get = r_family_get,
    .family_rotate = r_family_rotate,
    .family_check_access = r_family_check_access,
    .family_revoke = r_family_revoke,
    .revoke_session = r_revoke_session,
    .revoke_user = r_revoke_user,
    .revoke_client = r_revoke_client,
    .consent_put = r_consent_put,
    .consent_get = r_consent_get,
    .consent_revoke = r_consent_revoke,
    .expire = r_expire,
    .stats = r_stats,
    .destroy = r_destroy,
};

int gh_grant_redis_open(gh_grant_connect_fn connect, void *ctx, const gh_grant_limits_t *limits,
                        gh_grant_store_t **out)
{
    *out = NULL;
    if (!connect || gh_grant_limits_check(limits) != 0)
        return GH_EINVAL;
    redis_t *s = gh_mem_calloc(GH_MEM_OIDC_TOKENS, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->base.ops = &redis_ops;
    s->connect = connect;
    s->connect_ctx = ctx;
    s->limits = *limits;
    pthread_mutex_init(&s->lock, NULL);
    for (int i = 0; i < CONNS; i++)
        pthread_mutex_init(&s->slots[i].lock, NULL);
    *out = &s->base;
    return 0;
}
