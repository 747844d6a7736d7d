/*
 * test_session_redis.c — the Redis session store against a real redis-server on a free loopback
 * port: the shared session suite (session_suite.h), then what only a shared store promises —
 * two stores (two nodes) see one another's sessions and revocations at once; a token check
 * does not always write; the per-user index stays bounded; nothing is left in Redis once every
 * session has ended; the node's memory stays flat; and when Redis goes away every operation
 * fails closed, then works again without reopening the store once Redis is back.
 */
#include <sodium.h>
#include <stdio.h>
#include <time.h>

#include "auth/token.h"
#include "session_suite.h"
#include "store/probe.h"
#include "../../support/servers.h"

static ts_server_t redis = {.kind = TS_REDIS};

static gh_session_redis_options_t options(void)
{
    return (gh_session_redis_options_t){.url = redis.url, .pool_size = 3, .timeout_ms = 2000};
}

static int redis_open(const gh_session_limits_t *l, gh_session_store_t **out)
{
    gh_session_redis_options_t o = options();
    return gh_session_redis_open(l, &o, out);
}

static void redis_reset(void)
{
    char reply[64];
    if (ts_redis_cmd(&redis, "FLUSHALL", reply, sizeof reply) != 0)
        fail_msg("FLUSHALL failed: %s", reply);
}

static const session_backend_t redis_backend = {
    .name = "redis",
    .open = redis_open,
    .check = gh_session_redis_check,
    .reset = redis_reset,
    .thread_ops = 3000,
};

/* An integer reply (":N") of an inline command. */
static long long redis_int(const char *cmd)
{
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    assert_int_equal(reply[0], ':');
    return atoll(reply + 1);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- input ---- */

static void open_rejects_bad_input(void **state)
{
    (void)state;
    mark_t m0 = mark();
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    gh_session_redis_options_t o = options();
    assert_int_equal(gh_session_redis_open(NULL, &o, &s), GH_EINVAL);
    l.idle_ttl_ms = 0;
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_EINVAL);
    l = limits();
    const char *bad[] = {"",
                         "http://127.0.0.1:6379",
                         "rediss://127.0.0.1:6379", /* TLS: not in this hiredis */
                         "redis://",
                         "redis://127.0.0.1:0",
                         "redis://127.0.0.1:65536",
                         "redis://127.0.0.1:12a",
                         "redis://127.0.0.1/x",
                         "redis://:pa%zzss@127.0.0.1",
                         "redis://[::1",
                         "unix:",
                         "redis-sentinel://127.0.0.1:26379",      /* no master name */
                         "redis-sentinel://127.0.0.1:26379/",     /* an empty one */
                         "redis-sentinel:///mymaster",            /* no sentinel */
                         "redis-sentinel://127.0.0.1:0/mymaster", /* a bad port */
                         "redis-sentinel://a:1,b:2,c:3,d:4,e:5,f:6,g:7,h:8,i:9/m", /* too many */
                         "redis-sentinel://127.0.0.1:26379/mymaster/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        o.url = bad[i];
        if (gh_session_redis_open(&l, &o, &s) != GH_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
    o = options();
    o.prefix = "a-prefix-that-is-far-too-long-for-a-key-prefix";
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_EINVAL);
    /* Nobody listens there: a start-up error, not a store that answers later. */
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ts_free_port());
    o = options();
    o.url = url;
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_ESTORE);
    /* This Redis has no password: AUTH is refused, and so is the store. */
    snprintf(url, sizeof url, "redis://:secret@127.0.0.1:%d", redis.port);
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_ESTORE);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/99999", redis.port); /* no such db */
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_ESTORE);
    /* Sentinels nobody runs: nobody names a master, a start-up error as well. */
    snprintf(url, sizeof url, "redis-sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster", ts_free_port(),
             ts_free_port());
    assert_int_equal(gh_session_redis_open(&l, &o, &s), GH_ESTORE);
    assert_null(s);
    assert_at_mark(m0);
    /* A numbered database and a user name in the URL are understood. */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", redis.port);
    assert_int_equal(gh_session_redis_open(&l, &o, &s), 0);
    create_ok(s, 1, 1, T0, NULL);
    assert_int_equal(redis_int("DBSIZE"), 0); /* db 0 is untouched */
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

/* ---- several nodes, one store ---- */

static void two_nodes_share_every_session(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 3;
    gh_session_store_t *a = open_store(&l), *b = open_store(&l);
    gh_session_info_t made, seen;
    create_ok(a, 7, 1, T0, &made);
    assert_int_equal(lookup(b, 1, T0 + SEC, &seen), 0);
    assert_string_equal(seen.id, made.id);
    assert_int_equal(seen.user_id, 7);
    assert_int_equal(lookup(a, 1, T0 + 2 * SEC, &seen), 0);
    assert_int_equal(seen.last_seen_at_ms, T0 + 2 * SEC);
    /* a logout on one node is refused on the other at once */
    assert_int_equal(end(b, 1, GH_END_LOGOUT), 0);
    assert_int_equal(lookup(a, 1, T0 + 3 * SEC, NULL), GH_ENOTFOUND);
    assert_int_equal(end(a, 1, GH_END_LOGOUT), GH_ENOTFOUND);

    /* a password change on one node (all but this session) holds on the other; each node's
     * clock only moves forward, so the times below do too */
    gh_session_info_t keep;
    create_ok(a, 8, 10, T0 + 10 * SEC, NULL);
    create_ok(b, 8, 11, T0 + 11 * SEC, &keep);
    create_ok(a, 8, 12, T0 + 12 * SEC, NULL);
    size_t n = 0;
    assert_int_equal(gh_session_end_user(b, 8, H(11).b, GH_END_REVOKED, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(lookup(a, 10, T0 + 20 * SEC, NULL), GH_ENOTFOUND);
    assert_int_equal(lookup(a, 12, T0 + 20 * SEC, NULL), GH_ENOTFOUND);
    assert_int_equal(lookup(a, 11, T0 + 20 * SEC, NULL), 0);
    /* revoke by public id across nodes, owner only */
    assert_int_equal(gh_session_end_by_id(a, 9, keep.id, GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(a, 8, keep.id, GH_END_REVOKED), 0);
    assert_int_equal(lookup(b, 11, T0 + 30 * SEC, NULL), GH_ENOTFOUND);

    /* the per-user cap counts the sessions made on every node */
    for (uint64_t i = 0; i < 5; i++)
        create_ok(i % 2 ? a : b, 9, 100 + i, T0 + 100 * SEC + (int64_t)i, NULL);
    gh_session_info_t list[8];
    assert_int_equal(gh_session_list_user(a, 9, T0 + 200 * SEC, list, 8, &n), 0);
    assert_int_equal(n, 3);
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(lookup(b, 100 + i, T0 + 200 * SEC, NULL), i >= 2 ? 0 : GH_ENOTFOUND);

    /* every node reports the same live count, and each ended session is counted once */
    assert_int_equal(stats(a).active, 3);
    assert_int_equal(stats(b).active, 3);
    size_t swept = gh_session_expire(a, T0 + 13 * HOUR, SIZE_MAX) +
                   gh_session_expire(b, T0 + 13 * HOUR, SIZE_MAX);
    assert_int_equal(swept, 3);
    gh_session_stats_t sa = stats(a), sb = stats(b);
    assert_int_equal(sa.active + sb.active, 0);
    assert_int_equal(sa.created_total + sb.created_total, 9);
    uint64_t ended = 0;
    for (int r = 0; r < GH_END__COUNT; r++)
        ended += sa.ended_total[r] + sb.ended_total[r];
    assert_int_equal(ended, 9);
    assert_int_equal(sa.ended_total[GH_END_EVICTED] + sb.ended_total[GH_END_EVICTED], 2);
    assert_consistent(a);
    gh_session_store_destroy(&a);
    gh_session_store_destroy(&b);
}

/* ---- what Redis-backed nodes promise ---- */

static void token_checks_write_only_past_the_touch_interval(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_redis_options_t o = options();
    o.touch_interval_ms = 10 * SEC;
    gh_session_store_t *s = NULL, *exact = open_store(&l);
    assert_int_equal(gh_session_redis_open(&l, &o, &s), 0);
    gh_session_info_t info;
    create_ok(s, 1, 1, T0, NULL);
    for (int64_t t = T0 + SEC; t < T0 + 10 * SEC; t += SEC) {
        assert_int_equal(lookup(s, 1, t, &info), 0);
        assert_int_equal(info.last_seen_at_ms, T0); /* read back from Redis: nothing written */
        assert_int_equal(info.idle_expires_at_ms, T0 + 30 * MIN);
    }
    assert_int_equal(lookup(s, 1, T0 + 10 * SEC, &info), 0);
    assert_int_equal(info.last_seen_at_ms, T0 + 10 * SEC);
    /* another node sees what was recorded */
    assert_int_equal(lookup(s, 1, T0 + 11 * SEC, NULL), 0);
    assert_int_equal(lookup(exact, 1, T0 + 12 * SEC, &info), 0);
    assert_int_equal(info.last_seen_at_ms, T0 + 12 * SEC);
    /* a coarse node never keeps a session past the recorded deadline */
    assert_int_equal(lookup(s, 1, T0 + 12 * SEC + 30 * MIN, NULL), GH_ENOTFOUND);
    assert_int_equal(stats(s).ended_total[GH_END_IDLE], 1);
    gh_session_store_destroy(&s);
    gh_session_store_destroy(&exact);
}

static void user_index_stays_bounded(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 3;
    gh_session_store_t *s = open_store(&l);
    int64_t t = T0;
    /* A client that logs in and walks away, again and again: its sessions idle out unseen. */
    for (uint64_t i = 0; i < 50; i++, t += 31 * MIN)
        create_ok(s, 42, i, t, NULL);
    assert_true(redis_int("ZCARD gh:U:42") <= 3);
    /* sessions past the absolute deadline leave the index too */
    gh_session_limits_t l2 = limits();
    l2.max_per_user = 0;
    l2.session_ttl_ms = HOUR; /* the same idle TTL: every node of one Redis must agree on it */
    gh_session_store_t *s2 = open_store(&l2);
    for (uint64_t i = 0; i < 50; i++, t += 20 * MIN)
        create_ok(s2, 43, 1000 + i, t, NULL);
    assert_true(redis_int("ZCARD gh:U:43") <= 4);
    assert_consistent(s2);
    gh_session_store_destroy(&s2);
    gh_session_store_destroy(&s);
}

/* Every way a session ends leaves nothing behind in Redis: no session, index or id key. */
static void nothing_left_once_every_session_ended(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 5;
    l.session_ttl_ms = 2 * HOUR;
    gh_session_store_t *s = open_store(&l);
    enum { N = 600 };
    static gh_session_info_t info[N];
    for (uint64_t i = 0; i < N; i++)
        create_ok(s, i % 100, i, T0 + (int64_t)i, &info[i]); /* 6 per user: cap evictions */
    assert_true(stats(s).ended_total[GH_END_EVICTED] == 100);
    for (uint64_t i = 100; i < 200; i++)
        assert_int_equal(end(s, i, GH_END_LOGOUT), 0);
    for (uint64_t i = 200; i < 300; i++)
        assert_int_equal(gh_session_end_by_id(s, i % 100, info[i].id, GH_END_REVOKED), 0);
    for (uint64_t u = 0; u < 20; u++)
        assert_int_equal(gh_session_end_user(s, u, H(500 + u).b, GH_END_REVOKED, NULL), 0);
    assert_consistent(s);
    /* half of the rest are used until only their absolute deadline is left; the rest idle out */
    for (int64_t t = T0 + 20 * MIN; t < T0 + 2 * HOUR; t += 20 * MIN)
        for (uint64_t i = 300; i < N; i += 2)
            GH_IGNORE(lookup(s, i, t, NULL));
    assert_true(gh_session_expire(s, T0 + 3 * HOUR, SIZE_MAX) > 0);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 0);
    assert_true(st.ended_total[GH_END_IDLE] > 0);
    assert_true(st.ended_total[GH_END_EXPIRED] > 0);
    uint64_t ended = 0;
    for (int r = 0; r < GH_END__COUNT; r++)
        ended += st.ended_total[r];
    assert_int_equal(ended, N);
    assert_int_equal(redis_int("DBSIZE"), 0);
    gh_session_store_destroy(&s);
}

static void node_memory_stays_flat(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    mark_t m1 = mark();
    size_t bytes = stats(s).bytes;
    assert_int_equal(bytes, m1.bytes - m0.bytes);
    for (uint64_t i = 0; i < 5000; i++) {
        create_ok(s, i % 1000, i, T0 + (int64_t)i, NULL);
        assert_int_equal(lookup(s, i, T0 + (int64_t)i, NULL), 0);
    }
    gh_session_info_t list[8];
    size_t n;
    assert_int_equal(gh_session_list_user(s, 3, T0 + 5000, list, 8, &n), 0);
    assert_int_equal(n, 5);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 5000);
    assert_int_equal(st.bytes, bytes); /* 5,000 sessions in Redis, not one more byte here */
    assert_consistent(s);
    assert_at_mark(m1);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

static void tokens_are_not_stored(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    char token[GH_TOKEN_LEN + 1];
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_token_new(token, hash);
    assert_int_equal(gh_session_create(s, 5, hash, NULL, T0, NULL), 0);
    /* the store is keyed by the hash; nothing in Redis contains the token's secret part */
    char cmd[160], reply[128];
    snprintf(cmd, sizeof cmd, "KEYS *%s*", token + 3);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    assert_string_equal(reply, "*0");
    assert_int_equal(redis_int("EXISTS gh:U:5"), 1);
    sodium_memzero(token, sizeof token);
    gh_session_store_destroy(&s);
}

static void scripts_come_back_after_a_flush(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    create_ok(s, 1, 1, T0, NULL);
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis, "SCRIPT FLUSH", reply, sizeof reply), 0);
    assert_int_equal(lookup(s, 1, T0 + 1, NULL), 0);
    create_ok(s, 1, 2, T0 + 2, NULL);
    gh_session_store_destroy(&s);
}

/* ---- the layout before this one: converted on read ---- */

/* Writes one session the way the store before the packed layout did (a hash per session, a
 * zset per user, a public-id key and the global expiry zset, with Redis TTLs). */
static void put_old(uint64_t uid, uint64_t n, const char *id, int64_t c, int64_t l, const char *ip,
                    const char *ua)
{
    char hex[65], cmd[512], reply[64];
    hash_t h = H(n);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h.b[i]);
    int64_t e = c + limits().session_ttl_ms, idle = l + limits().idle_ttl_ms;
    int64_t d = idle < e ? idle : e;
    snprintf(cmd, sizeof cmd, "HSET gh:s:%s u %llu i %s c %lld l %lld e %lld ip %s ua %s", hex,
             (unsigned long long)uid, id, (long long)c, (long long)l, (long long)e, ip, ua);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "PEXPIRE gh:s:%s 3600000", hex); /* its backstop TTL */
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "ZADD gh:u:%llu %lld %s", (unsigned long long)uid, (long long)c, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "SET gh:i:%s %s", id, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "ZADD gh:x %lld %s", (long long)d, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
}

static void old_layout_is_converted_on_read(void **state)
{
    (void)state;
    /* four sessions a node before this layout made; the fourth idled out meanwhile */
    put_old(7, 1, "AAAAAAAAAAAAAAAAAAAAAA", T0, T0 + MIN, "203.0.113.7", "curl/8.0");
    put_old(8, 2, "BBBBBBBBBBBBBBBBBBBBBA", T0 + 1, T0 + 1, "2001:db8::1", "Mozilla/5.0");
    put_old(9, 3, "CCCCCCCCCCCCCCCCCCCCCA", T0 + 2, T0 + 2, "198.51.100.1", "Firefox");
    put_old(9, 4, "DDDDDDDDDDDDDDDDDDDDDA", T0 - HOUR, T0 - HOUR, "198.51.100.1", "Firefox");
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info, list[4];
    assert_int_equal(stats(s).active, 4);
    /* a token check finds the old session, with its times and public id */
    assert_int_equal(lookup(s, 1, T0 + 2 * MIN, &info), 0);
    assert_int_equal(info.user_id, 7);
    assert_int_equal(info.created_at_ms, T0);
    assert_string_equal(info.id, "AAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(redis_int("EXISTS gh:U:7"), 1);
    assert_int_equal(redis_int("EXISTS gh:u:7"), 0);
    /* listing converts the user's sessions and keeps their clients */
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 8, T0 + 2 * MIN, list, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].id, "BBBBBBBBBBBBBBBBBBBBBA");
    assert_string_equal(list[0].client.ip, "2001:db8::1");
    assert_string_equal(list[0].client.user_agent, "Mozilla/5.0");
    assert_int_equal(list[0].created_at_ms, T0 + 1);
    /* revoking by the old public id works */
    assert_int_equal(gh_session_end_by_id(s, 9, "CCCCCCCCCCCCCCCCCCCCCA", GH_END_REVOKED), 0);
    assert_int_equal(lookup(s, 3, T0 + 2 * MIN, NULL), GH_ENOTFOUND);
    /* the sweep ends the one that idled out, counted once */
    gh_session_expire(s, T0 + 2 * MIN, 100);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.ended_total[GH_END_IDLE], 1);
    assert_int_equal(st.ended_total[GH_END_REVOKED], 1);
    /* nothing of the old layout is left, and the new one is whole */
    assert_int_equal(redis_int("EXISTS gh:x"), 0);
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis, "KEYS gh:[siu]:*", reply, sizeof reply), 0);
    assert_string_equal(reply, "*0");
    assert_consistent(s);
    /* a second node started now sees the same sessions, without converting anything */
    gh_session_store_t *s2 = open_store(&l);
    assert_int_equal(lookup(s2, 2, T0 + 3 * MIN, &info), 0);
    assert_int_equal(info.user_id, 8);
    gh_session_store_destroy(&s2);
    gh_session_store_destroy(&s);
}

/* A session stays one small value: a short one is stored inside Redis's object (embstr), and
 * the per-user index stays in the compact encoding. */
static void a_session_is_small_in_redis(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    for (uint64_t i = 0; i < 5; i++)
        create_ok(s, 12345, i, T0 + (int64_t)i, NULL);
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis,
                                  "EVAL \"return redis.call('OBJECT', 'ENCODING', "
                                  "redis.call('KEYS', 'gh:k*')[1])\" 0",
                                  reply, sizeof reply),
                     0);
    assert_string_equal(reply, "$6"); /* "embstr" */
    assert_int_equal(ts_redis_cmd(&redis, "OBJECT ENCODING gh:U:12345", reply, sizeof reply), 0);
    assert_string_equal(reply, "$8");             /* "listpack" */
    assert_int_equal(redis_int("ZCARD gh:E"), 1); /* one expiry entry for the user */
    gh_session_store_destroy(&s);
}

/* ---- acknowledged writes ---- */

/* With wait_replicas, a create or an end is acknowledged only once a replica has it. */
static void writes_wait_for_replicas(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_redis_options_t o = options();
    o.wait_replicas = 1;
    /* WAIT gets half of it: room for a replica's acknowledgement on a loaded machine (at 400 ms
     * a busy CI machine sometimes missed it); the case without a replica waits it out once. */
    o.timeout_ms = 3000;
    gh_session_store_t *s = NULL;
    assert_int_equal(gh_session_redis_open(&l, &o, &s), 0);
    /* no replica: written on the master, but not acknowledged */
    assert_int_equal(gh_session_create(s, 1, H(1).b, NULL, T0, NULL), GH_ESTORE);
    assert_int_equal(lookup(s, 1, T0 + 1, NULL), 0); /* a check never waits */
    ts_server_t replica = {.kind = TS_REDIS, .replica_of = redis.port};
    assert_int_equal(ts_server_start(&replica), 0);
    char reply[64];
    for (int i = 0; i < 200; i++) {
        if (ts_redis_cmd(&replica,
                         "EVAL \"return redis.call('INFO', 'replication')"
                         ":match('master_link_status:up') and 1 or 0\" 0",
                         reply, sizeof reply) == 0 &&
            strcmp(reply, ":1") == 0)
            break;
        sleep_ms(50);
    }
    assert_string_equal(reply, ":1");
    create_ok(s, 1, 2, T0 + 2, NULL);
    assert_int_equal(end(s, 2, GH_END_LOGOUT), 0);
    ts_server_cleanup(&replica);
    assert_int_equal(end(s, 1, GH_END_LOGOUT), GH_ESTORE); /* the replica is gone again */
    gh_session_store_destroy(&s);
}

/* ---- failure: fail closed, recover by itself ---- */

static void redis_going_away_fails_closed_and_recovers(void **state)
{
    (void)state;
    ts_server_t own = {.kind = TS_REDIS, .persist = true};
    assert_int_equal(ts_server_start(&own), 0);
    gh_session_limits_t l = limits();
    gh_session_redis_options_t o = options();
    o.url = own.url;
    o.timeout_ms = 500;
    gh_session_store_t *s = NULL;
    assert_int_equal(gh_session_redis_open(&l, &o, &s), 0);
    gh_session_info_t info;
    create_ok(s, 1, 1, T0, NULL);
    uint64_t errors0 = gh_store_errors(GH_STORE_REDIS);

    assert_int_equal(ts_server_stop(&own), 0);
    /* Never a guess: not "not found" (a revoked session), not "found" (a stale one). */
    assert_int_equal(lookup(s, 1, T0 + SEC, &info), GH_ESTORE);
    assert_int_equal(gh_session_ping(s), GH_ESTORE);
    assert_int_equal(gh_session_create(s, 1, H(2).b, NULL, T0 + SEC, NULL), GH_ESTORE);
    assert_int_equal(end(s, 1, GH_END_LOGOUT), GH_ESTORE);
    assert_int_equal(gh_session_end_user(s, 1, NULL, GH_END_REVOKED, NULL), GH_ESTORE);
    size_t n = 9;
    assert_int_equal(gh_session_list_user(s, 1, T0 + SEC, &info, 1, &n), GH_ESTORE);
    assert_int_equal(n, 0);
    assert_int_equal(gh_session_expire(s, T0 + SEC, 100), 0);
    assert_true(gh_store_errors(GH_STORE_REDIS) > errors0);

    assert_int_equal(ts_server_start(&own), 0);
    /* The same store handle recovers within its backoff (at most 2 s); keep asking. */
    int rc = GH_ESTORE;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = lookup(s, 1, T0 + 2 * SEC, &info);
        if (rc != 0)
            sleep_ms(50);
    }
    assert_int_equal(rc, 0); /* the append-only file kept the session */
    assert_int_equal(info.user_id, 1);
    assert_int_equal(gh_session_ping(s), 0);
    create_ok(s, 1, 3, T0 + 3 * SEC, NULL);
    gh_session_store_destroy(&s);
    ts_server_cleanup(&own);
}

/* A failover turns the server we talk to into a replica: writes answer READONLY. The store
 * must not keep using it (fail closed) and must find the primary again by reconnecting. */
static void a_primary_turned_replica_fails_closed_and_recovers(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    create_ok(s, 1, 1, T0, NULL);
    char cmd[64], reply[64];
    snprintf(cmd, sizeof cmd, "REPLICAOF 127.0.0.1 %d", ts_free_port()); /* a primary nobody runs */
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    assert_int_equal(gh_session_create(s, 1, H(2).b, NULL, T0 + 1, NULL), GH_ESTORE);
    assert_int_equal(lookup(s, 1, T0 + 2, NULL), GH_ESTORE);
    assert_int_equal(ts_redis_cmd(&redis, "REPLICAOF NO ONE", reply, sizeof reply), 0);
    int rc = GH_ESTORE;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = lookup(s, 1, T0 + 3, NULL);
        if (rc != 0)
            sleep_ms(50);
    }
    assert_int_equal(rc, 0);
    create_ok(s, 1, 2, T0 + 4, NULL);
    gh_session_store_destroy(&s);
}

static int group_setup(void **state)
{
    (void)state;
    return ts_server_start(&redis);
}

static int group_teardown(void **state)
{
    (void)state;
    ts_server_cleanup(&redis);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    backend = &redis_backend;
    const struct CMUnitTest tests[] = {
        SESSION_SUITE_TESTS,
        SESSION_SUITE_TEST(open_rejects_bad_input),
        SESSION_SUITE_TEST(two_nodes_share_every_session),
        SESSION_SUITE_TEST(token_checks_write_only_past_the_touch_interval),
        SESSION_SUITE_TEST(user_index_stays_bounded),
        SESSION_SUITE_TEST(nothing_left_once_every_session_ended),
        SESSION_SUITE_TEST(node_memory_stays_flat),
        SESSION_SUITE_TEST(tokens_are_not_stored),
        SESSION_SUITE_TEST(scripts_come_back_after_a_flush),
        SESSION_SUITE_TEST(old_layout_is_converted_on_read),
        SESSION_SUITE_TEST(a_session_is_small_in_redis),
        SESSION_SUITE_TEST(writes_wait_for_replicas),
        SESSION_SUITE_TEST(redis_going_away_fails_closed_and_recovers),
        SESSION_SUITE_TEST(a_primary_turned_replica_fails_closed_and_recovers),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
