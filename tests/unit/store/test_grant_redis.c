/*
 * test_grant_redis.c — the grant store in a real redis-server (grant_redis.c): the shared suite
 * (grant_suite.h) against it, then what sharing promises: a code taken on one node is a replay
 * on another, a family made on one node is rotated, revoked by a logout, and its reuse detected
 * on another, and a Redis that goes away fails closed (GH_ESTORE). Connections come through a
 * Redis session store (gh_session_redis_connect), as the node makes them.
 */
#include "../../support/servers.h"
#include "grant_suite.h"

static ts_server_t redis = {.kind = TS_REDIS};
static gh_session_store_t *sessions;

static int connect_fn(void *ctx, void **conn)
{
    return gh_session_redis_connect(ctx, conn);
}

static int open_redis(const gh_grant_limits_t *l, gh_grant_store_t **out)
{
    return gh_grant_redis_open(connect_fn, sessions, l, out);
}

static void flush(void)
{
    char reply[64];
    assert_int_equal(ts_redis_cmd(&redis, "FLUSHALL", reply, sizeof reply), 0);
}

static void two_nodes_share_codes_and_families(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *a = gopen(&l), *b = NULL;
    assert_int_equal(open_redis(&l, &b), 0);
    uint8_t k[GH_GRANT_KEY_LEN];
    fill(k, sizeof k, 1, 50);
    gh_grant_code_t c = a_code(9), out;
    assert_int_equal(gh_grant_put_code(a, k, &c, T0), 0);
    assert_int_equal(gh_grant_take_code(b, k, T0 + 1, &out), 0); /* exchanged on node b */
    assert_int_equal(out.user_id, 9);
    gh_grant_family_t f = a_family(1, 9, "wiki", "sessGGGGGGGGGGGGGGGGGG"), g;
    assert_int_equal(gh_grant_family_create(b, &f, T0 + 2, NULL), 0);
    assert_int_equal(gh_grant_code_bind_family(b, k, f.id, T0 + 2), 0);
    assert_int_equal(gh_grant_take_code(a, k, T0 + 3, &out), GH_EREPLAY); /* replayed on a */
    assert_true(out.has_family);
    assert_memory_equal(out.family_id, f.id, GH_GRANT_FAMILY_ID_LEN);
    /* rotate on a, the old refresh token comes back on b: reuse, gone for both */
    uint8_t r2[32], a2[32];
    fill(r2, 32, 2, 51);
    fill(a2, 32, 2, 52);
    assert_int_equal(
        gh_grant_family_rotate(a, f.id, f.refresh_hash, r2, a2, T0 + 600000, T0 + 4, NULL), 0);
    assert_int_equal(gh_grant_family_check_access(b, f.id, a2, T0 + 5, &g), 0);
    assert_int_equal(
        gh_grant_family_rotate(b, f.id, f.refresh_hash, r2, a2, T0 + 600000, T0 + 6, &g),
        GH_EREUSE);
    assert_int_equal(gh_grant_family_check_access(a, f.id, a2, T0 + 7, &g), GH_ENOTFOUND);
    /* a logout on b ends what a issued in that session */
    gh_grant_family_t h = a_family(3, 9, "wiki", "sessHHHHHHHHHHHHHHHHHH");
    assert_int_equal(gh_grant_family_create(a, &h, T0 + 8, NULL), 0);
    size_t n;
    assert_int_equal(gh_grant_revoke_session(b, "sessHHHHHHHHHHHHHHHHHH", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gh_grant_family_get(a, h.id, T0 + 9, &g), GH_ENOTFOUND);
    gh_grant_stats_t st;
    gh_grant_stats(a, &st);
    assert_int_equal(st.families, 0);
    gh_grant_destroy(&a);
    gh_grant_destroy(&b);
}

static void redis_away_fails_closed(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *a = gopen(&l);
    gh_grant_family_t f = a_family(1, 9, "wiki", "sessGGGGGGGGGGGGGGGGGG"), g;
    assert_int_equal(gh_grant_family_create(a, &f, T0, NULL), 0);
    assert_int_equal(ts_server_stop(&redis), 0);
    assert_int_equal(gh_grant_family_check_access(a, f.id, f.access_hash, T0 + 1, &g), GH_ESTORE);
    uint8_t k[GH_GRANT_KEY_LEN];
    fill(k, sizeof k, 1, 50);
    gh_grant_code_t c = a_code(9);
    assert_int_equal(gh_grant_put_code(a, k, &c, T0), GH_ESTORE);
    assert_int_equal(ts_server_start(&redis), 0);
    gh_grant_destroy(&a);
}

int main(void)
{
    gh_mem_init();
    if (ts_server_start(&redis) != 0)
        return 1;
    gh_session_limits_t sl = {.session_ttl_ms = 3600000, .idle_ttl_ms = 600000};
    gh_session_redis_options_t o = {.url = redis.url, .pool_size = 2, .timeout_ms = 2000};
    if (gh_session_redis_open(&sl, &o, &sessions) != 0)
        return 1;
    backend.open = open_redis;
    backend.reset = flush;
    const struct CMUnitTest tests[] = {GRANT_SUITE_TESTS,
                                       cmocka_unit_test(two_nodes_share_codes_and_families),
                                       cmocka_unit_test(redis_away_fails_closed)};
    int rc = cmocka_run_group_tests_name("grant store: redis", tests, NULL, NULL);
    gh_session_store_destroy(&sessions);
    ts_server_cleanup(&redis);
    return rc;
}
