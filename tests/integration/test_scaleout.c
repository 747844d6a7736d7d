/*
 * test_scaleout.c — two Gatehouse nodes on shared stores, through the real binary: users in a
 * real PostgreSQL, sessions in a real redis-server, both started by this test on free loopback
 * ports (tests/support/servers.h). What one node does, the other sees at once: a name taken, a
 * login, a logout, a password change, a revocation. A restarted node sees every session. When a
 * store is stopped in the middle, both nodes answer 503 store_unavailable (never a guess) and
 * come back by themselves when it returns, without a restart of either node — except token
 * checks of users a node has already seen while PostgreSQL is away, which answer from the last
 * known user record (bounded by --user-stale-max).
 *
 * The stores and nodes are started once for the group; each test uses its own users.
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
#include <time.h>
#include <cmocka.h>

#include "auth/token.h"
#include "harness.h"
#include "../support/servers.h"

#define PASSWORD "correct horse battery"
#define ADMIN "scaleout-admin-token"

static ts_server_t redis = {.kind = TS_REDIS, .persist = true};
static ts_server_t pg = {.kind = TS_POSTGRES};
static char pg_url[256];
static ht_server_t node[2];
static ht_server_t node_c; /* started by one test with a short --user-stale-max */
static ht_response_t r;    /* big: kept off the stack */

static int start_node(ht_server_t *n)
{
    return ht_server_start(n, "--user-store", "postgres", "--postgres-url", pg_url,
                           "--session-store", "redis", "--redis-url", redis.url, "--admin-token",
                           ADMIN, "--idle-ttl", "10m", "--secret-key-file", ht_shared_secret_key(),
                           NULL);
}

static void check_status(long got, long want, const char *what, int line)
{
    if (got != want)
        fail_msg("line %d: %s -> %ld, want %ld; error \"%s\"%s%s; body: %.300s", line, what, got,
                 want, r.error_code, r.curl_error[0] ? "; transport: " : "", r.curl_error, r.body);
}
#define EXPECT(call, want) check_status((call), (want), #call, __LINE__)
#define A (&node[0])
#define B (&node[1])

static void login(const ht_server_t *n, const char *user, const char *password, char token[64])
{
    long st = ht_login(n, user, password, token, NULL);
    if (st != 201)
        fail_msg("login %s on %s -> %ld", user, n->addr, st);
}

static void register_user(const ht_server_t *n, const char *user)
{
    long st = ht_register(n, user, PASSWORD, NULL);
    if (st != 201)
        fail_msg("register %s -> %ld", user, st);
}

/* Polls /readyz until it answers `want` (at most 15 s). */
static void wait_ready(const ht_server_t *n, long want)
{
    long got = 0;
    for (int i = 0; i < 150; i++) {
        got = ht_get(n, "/readyz", NULL, &r);
        if (got == want)
            return;
        ht_sleep_ms(100);
    }
    fail_msg("/readyz on %s stayed %ld, want %ld", n->addr, got, want);
}

/* One sample from /metrics, -1 when absent. */
static double metric(const ht_server_t *n, const char *series)
{
    assert_int_equal(ht_get(n, "/metrics", NULL, &r), 200);
    size_t len = strlen(series);
    for (const char *line = r.body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
    return -1;
}

/* ---- what one node does, the other sees at once ---- */

static void name_taken_on_one_is_refused_on_the_other(void **state)
{
    (void)state;
    register_user(A, "Alice");
    EXPECT(ht_register(B, "alice", PASSWORD, NULL), 409);
    ht_json(B, "POST", "/v1/users", NULL, "{\"username\":\"ALICE\",\"password\":\"" PASSWORD "\"}",
            &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(r.error_code, "username_taken");
}

static void login_on_one_is_valid_on_the_other(void **state)
{
    (void)state;
    char token[64], sid[32];
    register_user(B, "bob");
    EXPECT(ht_login(A, "BOB", PASSWORD, token, sid), 201);
    EXPECT(ht_get(B, "/v1/session", token, &r), 200);
    char got[64];
    assert_true(ht_jstr(&r, "user.username", got, sizeof got));
    assert_string_equal(got, "bob");
    assert_true(ht_jstr(&r, "session.id", got, sizeof got));
    assert_string_equal(got, sid);
    EXPECT(ht_get(B, "/v1/auth", token, &r), 200);
    assert_true(ht_header(&r, "X-Auth-User", got, sizeof got));
    assert_string_equal(got, "bob");
    /* and a wrong password is refused on either */
    EXPECT(ht_login(B, "bob", "not the password", NULL, NULL), 401);
}

static void logout_on_one_is_refused_on_the_other(void **state)
{
    (void)state;
    char token[64];
    register_user(A, "carol");
    login(A, "carol", PASSWORD, token);
    EXPECT(ht_get(B, "/v1/session", token, &r), 200);
    EXPECT(ht_delete(B, "/v1/session", token, &r), 204);
    EXPECT(ht_get(A, "/v1/session", token, &r), 401);
    EXPECT(ht_get(A, "/v1/auth", token, &r), 401);
    EXPECT(ht_get(B, "/v1/session", token, &r), 401);
}

static void password_change_on_one_ends_the_others_everywhere(void **state)
{
    (void)state;
    char t1[64], t2[64], t3[64];
    register_user(B, "dave");
    login(A, "dave", PASSWORD, t1);
    login(A, "dave", PASSWORD, t2);
    login(B, "dave", PASSWORD, t3);
    EXPECT(ht_json(B, "PUT", "/v1/password", t3,
                   "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"a whole new one\"}",
                   &r),
           204);
    EXPECT(ht_get(A, "/v1/session", t1, &r), 401);
    EXPECT(ht_get(A, "/v1/session", t2, &r), 401);
    EXPECT(ht_get(B, "/v1/session", t1, &r), 401);
    EXPECT(ht_get(A, "/v1/session", t3, &r), 200); /* the session that changed it stays */
    EXPECT(ht_login(A, "dave", PASSWORD, NULL, NULL), 401);
    EXPECT(ht_login(A, "dave", "a whole new one", NULL, NULL), 201);
}

static void revocations_hold_on_every_node(void **state)
{
    (void)state;
    char t1[64], t2[64], t3[64], sid[32];
    register_user(A, "erin");
    EXPECT(ht_login(A, "erin", PASSWORD, t1, sid), 201);
    login(B, "erin", PASSWORD, t2);
    login(A, "erin", PASSWORD, t3);
    /* B lists the sessions A made, and revokes one of them by id */
    EXPECT(ht_get(B, "/v1/sessions", t2, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 3);
    char path[64];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid);
    EXPECT(ht_delete(B, path, t2, &r), 204);
    EXPECT(ht_get(A, "/v1/session", t1, &r), 401);
    /* log out everywhere from A: B refuses its own session at once */
    EXPECT(ht_delete(A, "/v1/sessions", t3, &r), 204);
    EXPECT(ht_get(B, "/v1/session", t2, &r), 401);
    EXPECT(ht_get(A, "/v1/session", t3, &r), 401);
}

static void a_restarted_node_sees_every_session(void **state)
{
    (void)state;
    char tokens[4][64];
    register_user(A, "frank");
    for (int i = 0; i < 4; i++)
        login(i % 2 ? A : B, "frank", PASSWORD, tokens[i]);
    assert_int_equal(ht_server_stop(A), 0);
    /* while A is down, B serves every session */
    for (int i = 0; i < 4; i++)
        EXPECT(ht_get(B, "/v1/session", tokens[i], &r), 200);
    assert_int_equal(start_node(A), 0);
    for (int i = 0; i < 4; i++)
        EXPECT(ht_get(A, "/v1/session", tokens[i], &r), 200);
    EXPECT(ht_get(A, "/readyz", NULL, &r), 200);
}

/* The node holds connections, not sessions: a thousand more sessions, not a byte more here. */
static void node_memory_does_not_grow_with_sessions(void **state)
{
    (void)state;
    register_user(A, "gina");
    long long before = 0, after = 0;
    EXPECT(ht_get(A, "/debug/memory", ADMIN, &r), 200);
    assert_true(ht_jint(&r, "components.sessions.bytes", &before));
    for (int i = 0; i < 300; i++) {
        char token[64];
        login(i % 2 ? A : B, "gina", PASSWORD, token);
    }
    EXPECT(ht_get(A, "/debug/memory", ADMIN, &r), 200);
    assert_true(ht_jint(&r, "components.sessions.bytes", &after));
    assert_true(before > 0);
    assert_int_equal(after, before);
    /* both nodes report the store's live count (the per-user cap, 100, holds it for gina) */
    assert_true(metric(A, "gatehouse_sessions_active") >= 100);
    assert_true(metric(A, "gatehouse_sessions_active") == metric(B, "gatehouse_sessions_active"));
    assert_true(metric(A, "gatehouse_store_request_duration_seconds_count{store=\"redis\","
                          "op=\"create\"}") > 0);
    assert_true(metric(A, "gatehouse_store_request_duration_seconds_count{store=\"postgres\","
                          "op=\"get\"}") > 0);
}

/* `gatehouse user` on the shared table: what it does, every node sees. */
static void the_command_line_works_on_the_shared_table(void **state)
{
    (void)state;
    static ht_run_t run;
    const char *const flags[] = {"--user-store",  "postgres", "--postgres-url", pg_url,
                                 "--hash-memory", "8KiB",     "--hash-ops",     "1"};
    memset(&run, 0, sizeof run);
    assert_int_equal(ht_run(&run, PASSWORD "\n", NULL, "user", "add", "kate", flags[0], flags[1],
                            flags[2], flags[3], flags[4], flags[5], flags[6], flags[7], NULL),
                     0);
    if (run.status != 0)
        fail_msg("user add -> %d: %s", run.status, run.err);
    char t1[64], t2[64];
    login(A, "kate", PASSWORD, t1);
    login(B, "KATE", PASSWORD, t2);
    memset(&run, 0, sizeof run);
    assert_int_equal(ht_run(&run, "another long one\n", NULL, "user", "passwd", "kate", flags[0],
                            flags[1], flags[2], flags[3], flags[4], flags[5], flags[6], flags[7],
                            NULL),
                     0);
    assert_int_equal(run.status, 0);
    EXPECT(ht_login(B, "kate", PASSWORD, NULL, NULL), 401);
    EXPECT(ht_login(A, "kate", "another long one", NULL, NULL), 201);
    memset(&run, 0, sizeof run);
    assert_int_equal(
        ht_run(&run, NULL, NULL, "user", "list", flags[0], flags[1], flags[2], flags[3], NULL), 0);
    assert_int_equal(run.status, 0);
    assert_non_null(strstr(run.out, "kate"));
    assert_non_null(strstr(run.out, "Alice")); /* registered through the API earlier */
}

/* ---- sessions a release before the packed layout left in Redis ---- */

/* One session written the way that release did: a hash per session, a per-user zset, a
 * public-id key and the global expiry zset (docs/SCALING.md). Returns its token. */
static void put_old_session(long long uid, const char *id, const char *ua, char token[64])
{
    uint8_t hash[GH_TOKEN_HASH_LEN];
    char hex[2 * GH_TOKEN_HASH_LEN + 1], cmd[512], reply[64];
    gh_token_new(token, hash);
    for (int i = 0; i < GH_TOKEN_HASH_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* sessions' times are wall-clock milliseconds */
    long long c = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - 1000;
    long long e = c + 12LL * 3600 * 1000, d = c + 10 * 60 * 1000;
    snprintf(cmd, sizeof cmd, "HSET gh:s:%s u %lld i %s c %lld l %lld e %lld ip 192.0.2.9 ua %s",
             hex, uid, id, c, c, e, ua);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "ZADD gh:u:%lld %lld %s", uid, c, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "SET gh:i:%s %s", id, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
    snprintf(cmd, sizeof cmd, "ZADD gh:x %lld %s", d, hex);
    assert_int_equal(ts_redis_cmd(&redis, cmd, reply, sizeof reply), 0);
}

static void nodes_read_and_convert_the_old_layout(void **state)
{
    (void)state;
    long long uid = 0;
    EXPECT(ht_register(A, "olga", PASSWORD, &uid), 201);
    char t1[64], t2[64];
    put_old_session(uid, "OldSessionNumberOne00A", "OldBrowser/1.0", t1);
    put_old_session(uid, "OldSessionNumberTwo00A", "OldBrowser/2.0", t2);
    /* nodes started on them read them (a check converts the session it needs; each node's
     * sweep converts the rest within 100 ms) */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ht_server_stop(&node[i]), 0);
        assert_int_equal(start_node(&node[i]), 0);
    }
    EXPECT(ht_get(B, "/v1/session", t1, &r), 200);
    char got[64];
    assert_true(ht_jstr(&r, "session.id", got, sizeof got));
    assert_string_equal(got, "OldSessionNumberOne00A");
    EXPECT(ht_get(A, "/v1/sessions", t2, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 2);
    /* revoking one by its old public id holds on both nodes */
    EXPECT(ht_delete(A, "/v1/sessions/OldSessionNumberOne00A", t2, &r), 204);
    EXPECT(ht_get(B, "/v1/auth", t1, &r), 401);
    EXPECT(ht_get(B, "/v1/auth", t2, &r), 200);
    /* nothing of the old layout is left */
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis, "EXISTS gh:x", reply, sizeof reply), 0);
    assert_string_equal(reply, ":0");
    assert_int_equal(ts_redis_cmd(&redis, "KEYS gh:[siu]:*", reply, sizeof reply), 0);
    assert_string_equal(reply, "*0");
}

/* ---- a store goes away, and comes back ---- */

static void redis_away_means_503_then_recovery(void **state)
{
    (void)state;
    char token[64];
    register_user(A, "hank");
    login(A, "hank", PASSWORD, token);
    double errors0 = metric(B, "gatehouse_store_errors_total{store=\"redis\"}");
    assert_int_equal(ts_server_stop(&redis), 0);

    for (int i = 0; i < 2; i++) {
        EXPECT(ht_get(&node[i], "/readyz", NULL, &r), 503);
        assert_string_equal(r.error_code, "store_unavailable");
        /* fail closed: not 401 (that would log people out), not 200 (that would be a guess) */
        EXPECT(ht_get(&node[i], "/v1/session", token, &r), 503);
        assert_string_equal(r.error_code, "store_unavailable");
        EXPECT(ht_get(&node[i], "/v1/auth", token, &r), 503);
        EXPECT(ht_login(&node[i], "hank", PASSWORD, NULL, NULL), 503);
    }
    ht_json(A, "POST", "/v1/sessions", NULL,
            "{\"username\":\"hank\",\"password\":\"" PASSWORD "\"}", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.error_code, "store_unavailable");
    assert_true(metric(B, "gatehouse_store_errors_total{store=\"redis\"}") > errors0);

    assert_int_equal(ts_server_start(&redis), 0);
    wait_ready(A, 200);
    wait_ready(B, 200);
    /* Redis kept its data (append-only file): the session works again on both nodes */
    EXPECT(ht_get(A, "/v1/session", token, &r), 200);
    EXPECT(ht_get(B, "/v1/auth", token, &r), 200);
    EXPECT(ht_login(B, "hank", PASSWORD, NULL, NULL), 201);
}

static void postgres_away_means_503_then_recovery(void **state)
{
    (void)state;
    char token[64];
    register_user(B, "ivy");
    login(B, "ivy", PASSWORD, token);
    assert_int_equal(ts_server_stop(&pg), 0);

    for (int i = 0; i < 2; i++) {
        EXPECT(ht_get(&node[i], "/readyz", NULL, &r), 503);
        assert_string_equal(r.error_code, "store_unavailable");
        EXPECT(ht_get(&node[i], "/v1/session", token, &r), 503);
        assert_string_equal(r.error_code, "store_unavailable");
    }
    ht_json(A, "POST", "/v1/users", NULL, "{\"username\":\"jack\",\"password\":\"" PASSWORD "\"}",
            &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.error_code, "store_unavailable");
    ht_json(B, "POST", "/v1/sessions", NULL, "{\"username\":\"ivy\",\"password\":\"" PASSWORD "\"}",
            &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.error_code, "store_unavailable");

    assert_int_equal(ts_server_start(&pg), 0);
    wait_ready(A, 200);
    wait_ready(B, 200);
    EXPECT(ht_get(A, "/v1/session", token, &r), 200);
    EXPECT(ht_register(A, "jack", PASSWORD, NULL), 201);
    EXPECT(ht_register(B, "Jack", PASSWORD, NULL), 409);
}

/* Token checks in a loop on one node (loopback, bounded by `stop`), counting what they got. */
typedef struct {
    const ht_server_t *n;
    const char *token;
    atomic_bool stop;
    long ok, other, last_other;
    pthread_t thread;
} checker_t;

static void *check_loop(void *arg)
{
    checker_t *c = arg;
    ht_response_t *resp = malloc(sizeof *resp);
    if (!resp)
        return NULL;
    while (!atomic_load(&c->stop)) {
        long st = ht_get(c->n, "/v1/auth", c->token, resp);
        if (st == 200) {
            c->ok++;
        } else {
            c->other++;
            c->last_other = st;
        }
        ht_sleep_ms(2);
    }
    free(resp);
    return NULL;
}

/*
 * A PostgreSQL outage under load: token checks of users the nodes have already seen keep
 * answering 200 the whole time (from the last known user record), logins and registrations
 * answer 503, the stale answers are counted, and when PostgreSQL is back everything works again
 * by itself. A node started with --user-stale-max 2s answers from a record only that long.
 */
static void postgres_away_token_checks_of_seen_users_keep_working(void **state)
{
    (void)state;
    char t_kit[64], t_lou[64];
    register_user(A, "kit");
    register_user(A, "lou");
    login(A, "kit", PASSWORD, t_kit);
    login(B, "lou", PASSWORD, t_lou);
    if (ht_server_start(&node_c, "--user-store", "postgres", "--postgres-url", pg_url,
                        "--session-store", "redis", "--redis-url", redis.url, "--admin-token",
                        ADMIN, "--user-stale-max", "2s", "--secret-key-file",
                        ht_shared_secret_key(), NULL) != 0)
        fail_msg("node C did not start");
    /* Seen: each node has looked each user up once. */
    for (int i = 0; i < 2; i++) {
        EXPECT(ht_get(&node[i], "/v1/session", t_kit, &r), 200);
        EXPECT(ht_get(&node[i], "/v1/auth", t_lou, &r), 200);
    }
    EXPECT(ht_get(&node_c, "/v1/auth", t_kit, &r), 200);
    double stale0 = metric(A, "gatehouse_user_lookups_stale_total");
    assert_true(stale0 >= 0);

    checker_t ck[2] = {{.n = A, .token = t_kit}, {.n = B, .token = t_lou}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&ck[i].thread, NULL, check_loop, &ck[i]), 0);
    ht_sleep_ms(300);
    assert_int_equal(ts_server_stop(&pg), 0);
    long long t_stop = ht_now_ms();

    /* During the outage: checks go on; logins and registrations fail closed. */
    ht_sleep_ms(1500);
    EXPECT(ht_get(A, "/v1/session", t_kit, &r), 200);
    EXPECT(ht_get(B, "/v1/session", t_kit, &r), 200);
    ht_json(A, "POST", "/v1/sessions", NULL, "{\"username\":\"kit\",\"password\":\"" PASSWORD "\"}",
            &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.error_code, "store_unavailable");
    ht_json(B, "POST", "/v1/users", NULL, "{\"username\":\"max\",\"password\":\"" PASSWORD "\"}",
            &r);
    assert_int_equal(r.status, 503);
    assert_true(metric(A, "gatehouse_user_lookups_stale_total") > stale0);
    assert_true(metric(A, "gatehouse_user_stale_age_seconds") >= 1);
    /* Node C's records are older than its 2 s bound now: it fails closed. */
    long long wait_c = t_stop + 2500 - ht_now_ms();
    if (wait_c > 0)
        ht_sleep_ms(wait_c);
    EXPECT(ht_get(&node_c, "/v1/auth", t_kit, &r), 503);
    assert_string_equal(r.error_code, "store_unavailable");

    assert_int_equal(ts_server_start(&pg), 0);
    wait_ready(A, 200);
    wait_ready(B, 200);
    ht_sleep_ms(300);
    for (int i = 0; i < 2; i++) {
        atomic_store(&ck[i].stop, true);
        pthread_join(ck[i].thread, NULL);
    }
    for (int i = 0; i < 2; i++) {
        if (ck[i].other != 0 || ck[i].ok < 50)
            fail_msg("token checks on %s during the outage: %ld answered 200, %ld did not (last "
                     "%ld)",
                     ck[i].n->addr, ck[i].ok, ck[i].other, ck[i].last_other);
        print_message("token checks on node %d across the outage: %ld, all 200\n", i, ck[i].ok);
    }
    /* Everything recovers by itself. */
    EXPECT(ht_get(&node_c, "/v1/auth", t_kit, &r), 200);
    EXPECT(ht_login(B, "kit", PASSWORD, NULL, NULL), 201);
    EXPECT(ht_register(A, "max", PASSWORD, NULL), 201);
    EXPECT(ht_get(A, "/v1/auth", t_lou, &r), 200);
    assert_true(metric(A, "gatehouse_user_stale_age_seconds") == 0);
    ht_server_cleanup(&node_c);
}

static int group_setup(void **state)
{
    (void)state;
    if (ts_server_start(&redis) != 0 || ts_server_start(&pg) != 0 ||
        ts_postgres_fresh_url(&pg, pg_url, sizeof pg_url) != 0)
        return -1;
    /* Two nodes at once: both migrate the empty database, under the advisory lock. */
    return start_node(A) == 0 && start_node(B) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    ht_server_cleanup(A);
    ht_server_cleanup(B);
    ht_server_cleanup(&node_c);
    ts_server_cleanup(&redis);
    ts_server_cleanup(&pg);
    return 0;
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(name_taken_on_one_is_refused_on_the_other),
        cmocka_unit_test(login_on_one_is_valid_on_the_other),
        cmocka_unit_test(logout_on_one_is_refused_on_the_other),
        cmocka_unit_test(password_change_on_one_ends_the_others_everywhere),
        cmocka_unit_test(revocations_hold_on_every_node),
        cmocka_unit_test(a_restarted_node_sees_every_session),
        cmocka_unit_test(node_memory_does_not_grow_with_sessions),
        cmocka_unit_test(the_command_line_works_on_the_shared_table),
        cmocka_unit_test(nodes_read_and_convert_the_old_layout),
        cmocka_unit_test(redis_away_means_503_then_recovery),
        cmocka_unit_test(postgres_away_means_503_then_recovery),
        cmocka_unit_test(postgres_away_token_checks_of_seen_users_keep_working),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
