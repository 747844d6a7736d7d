/*
 * pending_redis.c — pending logins in Redis (pending.h), so that a login whose password step
 * ran on one node is finished on any other (--session-store redis uses it).
 *
 * The one design decision: as for sessions, every operation is ONE Lua script, atomic in Redis:
 * the cap and its policy (evict the oldest, or refuse), counting a wrong step and ending the
 * pending login at the 5th, and taking it out when it is finished (exactly one node wins) can
 * never interleave with another node's. Deadlines are the caller's `now` (so tests inject time
 * and a pending login ends to the millisecond whether or not a sweep ran); PEXPIRE is only the
 * backstop that frees Redis when no node runs.
 *
 * Keys (P = "gh:"; H = hex of the pending token's hash, never the token):
 *   P pl:H   hash {d: user id, account key, created, methods (fixed binary), e: deadline,
 *            f: wrong steps, c: WebAuthn challenge}
 *   P plx    zset of H by deadline: the cap's count and the live gauge
 * One connection behind a mutex (a pending login is touched twice per two-step login, far from
 * the token-check path), re-made after an error; when Redis does not answer, operations fail
 * with GH_ESTORE. The store struct is charged to `pending`; hiredis's replies are malloc'd by
 * hiredis and freed after each command.
 */
#include "store/pending.h"
#include "store/redis_common.h"

#include <hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "mem/mem.h"

#define PREFIX "gh:"
#define INDEX PREFIX "plx"
#define GRACE_MS 60000
#define TIMEOUT_MS 2000
#define BLOB_LEN 36

typedef struct {
    gh_pending_store_t base;
    pthread_mutex_t lock;
    redisContext *c;
    gh_pending_connect_fn connect; /* set: connections come from it (the URL fields unused) */
    void *connect_ctx;
    char host[256], password[256];
    int port, db;
    bool unix_socket;
    size_t cap;
    gh_session_policy_t policy;
    gh_pending_stats_t stats; /* this node's evictions, refusals, expiries */
} redis_t;

static const char PUT[] = "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])\n"
                          "local ev = 0\n"
                          "if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then\n"
                          "  if ARGV[5] == '1' then return -1 end\n"
                          "  local old = redis.call('ZPOPMIN', KEYS[2])\n"
                          "  redis.call('DEL', '" PREFIX "pl:' .. old[1])\n"
                          "  ev = 1\n"
                          "end\n"
                          "redis.call('HSET', KEYS[1], 'd', ARGV[6], 'f', 0, 'e', ARGV[3])\n"
                          "redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) - tonumber(ARGV[2]) + "
                          "60000)\n"
                          "redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])\n"
                          "return ev\n";
static const char GET[] =
    "local v = redis.call('HMGET', KEYS[1], 'd', 'f', 'e', 'c')\n"
    "if not v[1] or tonumber(v[3]) <= tonumber(ARGV[1]) then return false end\n"
    "return {v[1], v[2], v[3], v[4] or ''}\n";
static const char FAIL[] =
    "local e = redis.call('HGET', KEYS[1], 'e')\n"
    "if not e or tonumber(e) <= tonumber(ARGV[1]) then return -2 end\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'f', 1)\n"
    "if n >= tonumber(ARGV[3]) then\n"
    "  redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[2]); return -1\n"
    "end\n"
    "return tonumber(ARGV[3]) - n\n";
static const char TAKE[] =
    "local v = redis.call('HMGET', KEYS[1], 'd', 'f', 'e', 'c')\n"
    "redis.call('DEL', KEYS[1]); redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "if not v[1] or tonumber(v[3]) <= tonumber(ARGV[1]) then return false end\n"
    "return {v[1], v[2], v[3], v[4] or ''}\n";
static const char CHALLENGE[] = "local e = redis.call('HGET', KEYS[1], 'e')\n"
                                "if not e or tonumber(e) <= tonumber(ARGV[1]) then return 0 end\n"
                                "redis.call('HSET', KEYS[1], 'c', ARGV[2]); return 1\n";
static const char EXPIRE[] = "return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n";
static const char LIVE[] = "return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')\n";

static int parse_url(redis_t *s, const char *url)
{
    s->port = 6379;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        size_t n = strcspn(p, "?");
        if (n == 0 || n >= sizeof s->host)
            return GH_EINVAL;
        memcpy(s->host, p, n);
        s->unix_socket = true;
        if (p[n] == '?' && sscanf(p + n, "?db=%d", &s->db) != 1)
            return GH_EINVAL;
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return GH_EINVAL;
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((size_t)(at - pw) >= sizeof s->password)
            return GH_EINVAL;
        memcpy(s->password, pw, (size_t)(at - pw));
        p = at + 1;
    }
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= sizeof s->host)
        return GH_EINVAL;
    memcpy(s->host, p, n);
    p += n;
    if (*p == ':') {
        char *e;
        long port = strtol(p + 1, &e, 10);
        if (port < 1 || port > 65535)
            return GH_EINVAL;
        s->port = (int)port;
        p = e;
    }
    if (*p == '/' && p[1] && sscanf(p + 1, "%d", &s->db) != 1)
        return GH_EINVAL;
    return 0;
}

/* A connected context (lock held), or NULL. */
static redisContext *conn(redis_t *s)
{
    if (s->c && !s->c->err)
        return s->c;
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    if (s->connect) {
        void *c = NULL;
        if (s->connect(s->connect_ctx, &c) != 0) {
            GH_LOG(GH_LOG_WARN, "pending-login store: cannot reach the Redis master");
            return NULL;
        }
        s->c = c;
        return s->c;
    }
    struct timeval tv = {TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000};
    s->c = s->unix_socket ? redisConnectUnixWithTimeout(s->host, tv)
                          : redisConnectWithTimeout(s->host, s->port, tv);
    if (!s->c || s->c->err || redisSetTimeout(s->c, tv) != REDIS_OK)
        goto fail;
    redisReply *r = NULL;
    if (s->password[0]) {
        r = redisCommand(s->c, "AUTH %s", s->password);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail_reply;
        freeReplyObject(r);
    }
    if (s->db) {
        r = redisCommand(s->c, "SELECT %d", s->db);
        if (!r || r->type == REDIS_REPLY_ERROR)
            goto fail_reply;
        freeReplyObject(r);
    }
    return s->c;
fail_reply:
    if (r)
        freeReplyObject(r);
fail:
    GH_LOG(GH_LOG_WARN, "pending-login store: cannot reach Redis",
           GH_LS("detail", s->c && s->c->errstr[0] ? s->c->errstr : "refused"));
    if (s->c)
        redisFree(s->c);
    s->c = NULL;
    return NULL;
}

/* EVAL script with nkeys keys then the args (lengths given): the reply, or NULL (GH_ESTORE). */
static redisReply *eval(redis_t *s, const char *script, int nkeys, int argc, const char **argv,
                        const size_t *lens)
{
    const char *av[16];
    size_t al[16];
    char nk[4];
    snprintf(nk, sizeof nk, "%d", nkeys);
    av[0] = "EVAL";
    al[0] = 4;
    av[1] = script;
    al[1] = strlen(script);
    av[2] = nk;
    al[2] = strlen(nk);
    for (int i = 0; i < argc && i < 13; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    redisContext *c = conn(s);
    if (!c)
        return NULL;
    redisReply *r = redisCommandArgv(c, 3 + argc, av, al);
    return gh_redis_reply_ok(&s->c, r, "pending-login store: Redis error") ? r : NULL;
}

static void key_of(const uint8_t *key, char hex[2 * GH_PENDING_KEY_LEN + 1],
                   char name[sizeof PREFIX + 3 + 2 * GH_PENDING_KEY_LEN])
{
    gh_redis_hex(key, GH_PENDING_KEY_LEN, hex);
    snprintf(name, sizeof PREFIX + 3 + 2 * GH_PENDING_KEY_LEN, PREFIX "pl:%s", hex);
}

/* Reads a GET/TAKE reply {d, f, e, c} into out: 0, GH_ENOTFOUND (nil), GH_ESTORE. */
static int read_entry(redisReply *r, gh_pending_t *out)
{
    if (r->type == REDIS_REPLY_NIL)
        return GH_ENOTFOUND;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[0]->len != BLOB_LEN)
        return GH_ESTORE;
    const uint8_t *d = (const uint8_t *)r->element[0]->str;
    memset(out, 0, sizeof *out);
    out->user_id = gh_redis_get64(d);
    out->account_key = gh_redis_get64(d + 8);
    out->created_at_ms = (int64_t)gh_redis_get64(d + 16);
    out->methods = (uint32_t)gh_redis_get64(d + 24);
    out->failures = (uint32_t)strtoul(r->element[1]->str ? r->element[1]->str : "0", NULL, 10);
    out->expires_at_ms = strtoll(r->element[2]->str ? r->element[2]->str : "0", NULL, 10);
    size_t cl = r->element[3]->len;
    if (cl > GH_PENDING_CHALLENGE_MAX)
        return GH_ESTORE;
    if (cl)
        memcpy(out->challenge, r->element[3]->str, cl);
    out->challenge_len = cl;
    return 0;
}

static int p_put(gh_pending_store_t *b, const uint8_t *key, const gh_pending_t *p, int64_t now)
{
    redis_t *s = (redis_t *)b;
    char hex[65], name[80], snow[24], sexp[24], scap[24];
    key_of(key, hex, name);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    snprintf(sexp, sizeof sexp, "%lld", (long long)(now + GH_PENDING_TTL_MS));
    snprintf(scap, sizeof scap, "%zu", s->cap);
    uint8_t blob[BLOB_LEN] = {0};
    gh_redis_put64(blob, p->user_id);
    gh_redis_put64(blob + 8, p->account_key);
    gh_redis_put64(blob + 16, (uint64_t)now);
    gh_redis_put64(blob + 24, p->methods);
    const char *argv[] = {name,
                          INDEX,
                          hex,
                          snow,
                          sexp,
                          scap,
                          s->policy == GH_POLICY_REFUSE ? "1" : "0",
                          (const char *)blob};
    size_t lens[] = {strlen(name), strlen(INDEX), strlen(hex), strlen(snow),
                     strlen(sexp), strlen(scap),  1,           BLOB_LEN};
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, PUT, 2, 8, argv, lens);
    int ret = !r ? GH_ESTORE : r->integer < 0 ? GH_EBUSY : 0;
    if (r && r->integer == 1)
        s->stats.evicted++;
    if (ret == GH_EBUSY)
        s->stats.refused++;
    pthread_mutex_unlock(&s->lock);
    if (r)
        freeReplyObject(r);
    return ret;
}

static int get_or_take(gh_pending_store_t *b, const char *script, const uint8_t *key, int64_t now,
                       gh_pending_t *out)
{
    redis_t *s = (redis_t *)b;
    char hex[65], name[80], snow[24];
    key_of(key, hex, name);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    const char *argv[] = {name, INDEX, snow, hex};
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, script, 2, 4, argv, NULL);
    pthread_mutex_unlock(&s->lock);
    if (!r)
        return GH_ESTORE;
    int ret = read_entry(r, out);
    freeReplyObject(r);
    return ret;
}

static int p_get(gh_pending_store_t *b, const uint8_t *key, int64_t now, gh_pending_t *out)
{
    return get_or_take(b, GET, key, now, out);
}

static int p_take(gh_pending_store_t *b, const uint8_t *key, int64_t now, gh_pending_t *out)
{
    return get_or_take(b, TAKE, key, now, out);
}

static int p_fail(gh_pending_store_t *b, const uint8_t *key, int64_t now, uint32_t *left)
{
    redis_t *s = (redis_t *)b;
    char hex[65], name[80], snow[24], smax[8];
    key_of(key, hex, name);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    snprintf(smax, sizeof smax, "%d", GH_PENDING_MAX_FAILURES);
    const char *argv[] = {name, INDEX, snow, hex, smax};
    *left = 0;
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, FAIL, 2, 5, argv, NULL);
    if (r && r->integer == -1)
        s->stats.expired++;
    pthread_mutex_unlock(&s->lock);
    if (!r)
        return GH_ESTORE;
    long long v = r->integer;
    freeReplyObject(r);
    if (v == -2)
        return GH_ENOTFOUND;
    if (v == -1)
        return GH_EEXPIRED;
    *left = (uint32_t)v;
    return 0;
}

static int p_set_challenge(gh_pending_store_t *b, const uint8_t *key, const uint8_t *c, size_t len,
                           int64_t now)
{
    if (len > GH_PENDING_CHALLENGE_MAX)
        return GH_EINVAL;
    redis_t *s = (redis_t *)b;
    char hex[65], name[80], snow[24];
    key_of(key, hex, name);
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    const char *argv[] = {name, snow, (const char *)c};
    size_t lens[] = {strlen(name), strlen(snow), len};
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, CHALLENGE, 1, 3, argv, lens);
    pthread_mutex_unlock(&s->lock);
    if (!r)
        return GH_ESTORE;
    int ret = r->integer == 1 ? 0 : GH_ENOTFOUND;
    freeReplyObject(r);
    return ret;
}

static size_t p_expire(gh_pending_store_t *b, int64_t now, size_t max)
{
    (void)max; /* one ZREMRANGEBYSCORE: the entries themselves expire in Redis */
    redis_t *s = (redis_t *)b;
    char snow[24];
    snprintf(snow, sizeof snow, "%lld", (long long)now);
    const char *argv[] = {INDEX, snow};
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, EXPIRE, 1, 2, argv, NULL);
    size_t n = r && r->type == REDIS_REPLY_INTEGER ? (size_t)r->integer : 0;
    s->stats.expired += n;
    pthread_mutex_unlock(&s->lock);
    if (r)
        freeReplyObject(r);
    return n;
}

static void p_stats(gh_pending_store_t *b, gh_pending_stats_t *out)
{
    redis_t *s = (redis_t *)b;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char snow[24];
    snprintf(snow, sizeof snow, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    const char *argv[] = {INDEX, snow};
    pthread_mutex_lock(&s->lock);
    redisReply *r = eval(s, LIVE, 1, 2, argv, NULL);
    *out = s->stats;
    out->live = r && r->type == REDIS_REPLY_INTEGER ? (uint64_t)r->integer : 0;
    pthread_mutex_unlock(&s->lock);
    if (r)
        freeReplyObject(r);
}

static void p_destroy(gh_pending_store_t **b)
{
    redis_t *s = (redis_t *)*b;
    if (s->c)
        redisFree(s->c);
    pthread_mutex_destroy(&s->lock);
    gh_mem_free_secret(GH_MEM_PENDING, s);
    *b = NULL;
}

static const gh_pending_ops_t redis_ops = {
    .name = "redis",
    .put = p_put,
    .get = p_get,
    .fail_step = p_fail,
    .take = p_take,
    .set_challenge = p_set_challenge,
    .expire = p_expire,
    .stats = p_stats,
    .destroy = p_destroy,
};

int gh_pending_redis_create_on(gh_pending_connect_fn connect, void *ctx, size_t cap,
                               gh_session_policy_t policy, gh_pending_store_t **out)
{
    *out = NULL;
    if (!connect || cap == 0)
        return GH_EINVAL;
    redis_t *s = gh_mem_calloc(GH_MEM_PENDING, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->connect = connect;
    s->connect_ctx = ctx;
    s->base.ops = &redis_ops;
    s->cap = cap;
    s->policy = policy;
    pthread_mutex_init(&s->lock, NULL);
    *out = &s->base;
    return 0;
}

int gh_pending_redis_create(const char *url, size_t cap, gh_session_policy_t policy,
                            gh_pending_store_t **out)
{
    *out = NULL;
    if (!url || cap == 0)
        return GH_EINVAL;
    redis_t *s = gh_mem_calloc(GH_MEM_PENDING, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    if (parse_url(s, url) != 0) {
        gh_mem_free_secret(GH_MEM_PENDING, s);
        return GH_EINVAL;
    }
    s->base.ops = &redis_ops;
    s->cap = cap;
    s->policy = policy;
    pthread_mutex_init(&s->lock, NULL);
    *out = &s->base;
    return 0;
}
