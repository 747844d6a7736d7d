/*
 * test_failover.c — Redis Sentinel failover under load, through the real binary: a Redis master,
 * one replica and three sentinels (Debian's redis-sentinel, short down-after and failover
 * timeouts) on loopback, users in a real PostgreSQL, two Gatehouse nodes with
 * --redis-url redis-sentinel://s1,s2,s3/gh and --redis-wait-replicas 1. Token checks and logins
 * run against both nodes while the master is killed with SIGKILL. What must hold at every moment:
 * no token check answers 200 for a revoked or unknown token, and a live one answers 200 or 503
 * (never 401). Afterwards the nodes (never restarted) serve from the new master, every session
 * whose login was acknowledged (201) is there and every acknowledged revocation holds. The test
 * prints the longest window of 503s a live token saw.
 *
 * The one design decision: the load is bounded (two checker threads, one login thread, each one
 * request at a time, for at most the failover plus a few seconds), so the test stays well under
 * a minute on a shared machine.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "../support/servers.h"

#define PASSWORD "correct horse battery"
#define LIVE 8
#define REVOKED 8
#define MAX_ACKED 512

static ts_server_t master = {.kind = TS_REDIS, .persist = true};
static ts_server_t replica = {.kind = TS_REDIS, .persist = true};
static ts_server_t sentinel[3];
static ts_server_t pg = {.kind = TS_POSTGRES};
static char pg_url[256], sentinel_url[256];
static ht_server_t node[2];
static ht_response_t r; /* big: kept off the stack */

static char live[LIVE][64], revoked[REVOKED][64], unknown[64];
static char acked[MAX_ACKED][64];
static atomic_int n_acked;
static atomic_bool stop;
static atomic_long bad_200, bad_401, checks_total, checks_503;
static atomic_llong longest_503_ms;

static int start_node(ht_server_t *n)
{
    return ht_server_start(
        n, "--user-store", "postgres", "--postgres-url", pg_url, "--session-store", "redis",
        "--redis-url", sentinel_url, "--redis-wait-replicas", "1", "--idle-ttl", "10m",
        "--max-sessions-per-user", "100000", "--secret-key-file", ht_shared_secret_key(), NULL);
}

/* An integer a Redis or sentinel answers to one inline command; -1 when it does not. */
static long long redis_int(const ts_server_t *s, const char *cmd)
{
    char reply[128];
    if (ts_redis_cmd(s, cmd, reply, sizeof reply) != 0 || reply[0] != ':')
        return -1;
    return atoll(reply + 1);
}

/* Waits (at most 20 s) until the sentinels know the replica and one another: only then can
 * they agree on a failover. */
static int wait_sentinels_ready(void)
{
    for (int i = 0; i < 200; i++) {
        bool ok = true;
        for (int k = 0; k < 3 && ok; k++) {
            char reply[160];
            ok = ts_redis_cmd(&sentinel[k], "SENTINEL CKQUORUM gh", reply, sizeof reply) == 0 &&
                 strstr(reply, "3 usable") != NULL &&
                 ts_redis_cmd(&sentinel[k], "SENTINEL REPLICAS gh", reply, sizeof reply) == 0 &&
                 strcmp(reply, "*1") == 0;
        }
        if (ok && redis_int(&replica, "EVAL \"return redis.call('INFO', 'replication')"
                                      ":match('master_link_status:up') and 1 or 0\" 0") == 1)
            return 0;
        ht_sleep_ms(100);
    }
    return -1;
}

/* ---- load ---- */

typedef struct {
    int id;
    ht_response_t *resp;
} worker_t;

static void *checker(void *arg)
{
    worker_t *w = arg;
    long long first_503 = 0; /* start of the current run of 503s on live tokens, 0: none */
    unsigned i = (unsigned)w->id;
    while (!atomic_load(&stop)) {
        const ht_server_t *n = &node[i % 2];
        unsigned k = i / 2;
        i++;
        /* mostly live tokens; every fourth a revoked or unknown one */
        if (k % 4 == 3) {
            const char *t = (k / 4) % 3 == 2 ? unknown : revoked[(k / 4) % REVOKED];
            long st = ht_get(n, "/v1/auth", t, w->resp);
            if (st == 200)
                atomic_fetch_add(&bad_200, 1);
            atomic_fetch_add(&checks_total, 1);
            continue;
        }
        long st = ht_get(n, "/v1/auth", live[k % LIVE], w->resp);
        atomic_fetch_add(&checks_total, 1);
        long long now = ht_now_ms();
        if (st == 503) {
            atomic_fetch_add(&checks_503, 1);
            if (!first_503)
                first_503 = now;
        } else if (st == 200) {
            if (first_503) {
                long long d = now - first_503, seen = atomic_load(&longest_503_ms);
                while (d > seen && !atomic_compare_exchange_weak(&longest_503_ms, &seen, d)) {
                }
                first_503 = 0;
            }
        } else {
            atomic_fetch_add(&bad_401, 1);
            fprintf(stderr, "live token on node %u -> %ld (%s)\n", i % 2, st, w->resp->error_code);
        }
    }
    if (first_503) /* still failing when the load stopped: the whole run counts */
        atomic_store(&longest_503_ms, 1000000);
    return NULL;
}

/* Logs in again and again; every 201 is an acknowledged session that must survive. */
static void *login_loop(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!atomic_load(&stop) && atomic_load(&n_acked) < MAX_ACKED) {
        char token[64];
        long st = ht_login(&node[i++ % 2], "frank", PASSWORD, token, NULL);
        if (st == 201) {
            int k = atomic_fetch_add(&n_acked, 1);
            memcpy(acked[k], token, sizeof acked[k]);
        }
        ht_sleep_ms(20);
    }
    return NULL;
}

static void failover_under_load(void **state)
{
    (void)state;
    /* sessions before: some live, some revoked (acknowledged by WAIT 1) */
    assert_int_equal(ht_register(&node[0], "frank", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(&node[1], "grace", PASSWORD, NULL), 201);
    for (int i = 0; i < LIVE; i++)
        assert_int_equal(ht_login(&node[i % 2], "grace", PASSWORD, live[i], NULL), 201);
    for (int i = 0; i < REVOKED; i++) {
        assert_int_equal(ht_login(&node[i % 2], "frank", PASSWORD, revoked[i], NULL), 201);
        assert_int_equal(ht_delete(&node[(i + 1) % 2], "/v1/session", revoked[i], &r), 204);
    }
    /* a well-formed token nobody issued: a live one with one character of its secret changed */
    memcpy(unknown, live[0], sizeof unknown);
    size_t len = strlen(unknown);
    unknown[len - 5] = unknown[len - 5] == 'A' ? 'B' : 'A';
    for (int i = 0; i < LIVE; i++)
        assert_int_equal(ht_get(&node[i % 2], "/v1/auth", live[i], &r), 200);
    pid_t pids[2] = {node[0].pid, node[1].pid};

    static ht_response_t resp[2];
    static worker_t w[2];
    pthread_t th[3];
    for (int i = 0; i < 2; i++) {
        w[i] = (worker_t){.id = i, .resp = &resp[i]};
        assert_int_equal(pthread_create(&th[i], NULL, checker, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&th[2], NULL, login_loop, NULL), 0);
    ht_sleep_ms(1000);
    long before = atomic_load(&checks_total);
    int acked_before = atomic_load(&n_acked);

    /* the master dies without a word */
    long long t_kill = ht_now_ms();
    ts_server_kill(&master);
    /* the sentinels promote the replica: wait until every one of them names it (at most 30 s);
     * from the kill to then is the failover's own time */
    char want[32], reply[160];
    snprintf(want, sizeof want, "127.0.0.1 %d", replica.port);
    long long t_switch = 0;
    for (int i = 0; i < 1500 && !t_switch; i++) {
        int named = 0;
        for (int k = 0; k < 3; k++)
            named += ts_redis_array(&sentinel[k], "SENTINEL get-master-addr-by-name gh", reply,
                                    sizeof reply) == 0 &&
                     strcmp(reply, want) == 0;
        if (named == 3)
            t_switch = ht_now_ms();
        else
            ht_sleep_ms(20);
    }
    /* the old master comes back as a replica of the new one (what the sentinels would make of
     * it within their 10 s INFO period), so WAIT 1 can be satisfied again */
    master.replica_of = replica.port;
    int restarted = t_switch ? ts_server_start(&master) : -1;
    /* keep the load on until both nodes answered 200 for a while after the switch */
    if (t_switch)
        ht_sleep_ms(4000);
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_true(t_switch > 0);
    assert_int_equal(restarted, 0);

    long total = atomic_load(&checks_total);
    printf("failover: master killed; sentinels switched after %lld ms; %ld token checks "
           "(%ld before the kill), %ld answered 503; longest window of 503s: %lld ms; "
           "%d logins acknowledged (%d before the kill)\n",
           t_switch - t_kill, total, before, atomic_load(&checks_503), atomic_load(&longest_503_ms),
           atomic_load(&n_acked), acked_before);
    fflush(stdout);
    assert_int_equal(atomic_load(&bad_200), 0); /* never a revoked or unknown token */
    assert_int_equal(atomic_load(&bad_401), 0); /* never a live one refused as unknown */
    assert_true(total > before);
    /* 503s only for the failover's own time (plus a reconnect, and this test's polling) */
    assert_true(atomic_load(&longest_503_ms) <= (t_switch - t_kill) + 500);

    /* the same processes serve from the new master */
    assert_int_equal(node[0].pid, pids[0]);
    assert_int_equal(node[1].pid, pids[1]);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < LIVE; i++)
            assert_int_equal(ht_get(&node[k], "/v1/auth", live[i], &r), 200);
        for (int i = 0; i < REVOKED; i++)
            assert_int_equal(ht_get(&node[k], "/v1/auth", revoked[i], &r), 401);
        int n = atomic_load(&n_acked);
        for (int i = 0; i < n; i++)
            if (ht_get(&node[k], "/v1/auth", acked[i], &r) != 200)
                fail_msg("acknowledged session %d of %d lost on node %d: %ld", i, n, k, r.status);
    }
    /* and new sessions are acknowledged again (the old master is the replica now) */
    char token[64];
    long st = 0;
    for (int i = 0; i < 100 && st != 201; i++) {
        st = ht_login(&node[0], "frank", PASSWORD, token, NULL);
        if (st != 201)
            ht_sleep_ms(100);
    }
    assert_int_equal(st, 201);
    assert_int_equal(ht_get(&node[1], "/v1/auth", token, &r), 200);
}

static int group_setup(void **state)
{
    (void)state;
    if (ts_server_start(&master) != 0)
        return -1;
    replica.replica_of = master.port;
    if (ts_server_start(&replica) != 0)
        return -1;
    int n = snprintf(sentinel_url, sizeof sentinel_url, "redis-sentinel://");
    for (int i = 0; i < 3; i++) {
        sentinel[i] =
            (ts_server_t){.kind = TS_SENTINEL, .monitor_port = master.port, .down_after_ms = 500};
        if (ts_server_start(&sentinel[i]) != 0)
            return -1;
        n += snprintf(sentinel_url + n, sizeof sentinel_url - (size_t)n, "%s%s", i ? "," : "",
                      sentinel[i].url);
    }
    snprintf(sentinel_url + n, sizeof sentinel_url - (size_t)n, "/gh");
    if (wait_sentinels_ready() != 0) {
        fprintf(stderr, "the sentinels never agreed on the master and its replica\n");
        return -1;
    }
    if (ts_server_start(&pg) != 0 || ts_postgres_fresh_url(&pg, pg_url, sizeof pg_url) != 0)
        return -1;
    return start_node(&node[0]) == 0 && start_node(&node[1]) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    ht_server_cleanup(&node[0]);
    ht_server_cleanup(&node[1]);
    for (int i = 0; i < 3; i++)
        ts_server_cleanup(&sentinel[i]);
    ts_server_cleanup(&replica);
    ts_server_cleanup(&master);
    ts_server_cleanup(&pg);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failover_under_load),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
