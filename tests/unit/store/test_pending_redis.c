/*
 * test_pending_redis.c — the pending-login table in a real redis-server (store/pending.h,
 * pending_redis.c), with an injected clock like the memory table's test: exact expiry at 5
 * minutes, the 5th wrong step ending it, one taker, the cap under both policies across two
 * stores (two nodes) on one Redis, and a Redis that goes away failing closed (GH_ESTORE).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../support/servers.h"
#include "store/pending.h"

#define T0 1700000000000LL

static ts_server_t redis = {.kind = TS_REDIS};

static void key_of(uint64_t i, uint8_t key[GH_PENDING_KEY_LEN])
{
    memset(key, 0, GH_PENDING_KEY_LEN);
    memcpy(key, &i, sizeof i);
    key[31] = 0x5a;
}

static int flush(void **state)
{
    (void)state;
    char reply[64];
    return ts_redis_cmd(&redis, "FLUSHALL", reply, sizeof reply);
}

static void lifecycle(void **state)
{
    (void)state;
    gh_pending_store_t *a, *b;
    assert_int_equal(gh_pending_redis_create(redis.url, 100, GH_POLICY_EVICT_IDLE, &a), 0);
    assert_int_equal(gh_pending_redis_create(redis.url, 100, GH_POLICY_EVICT_IDLE, &b), 0);
    uint8_t k[32];
    key_of(1, k);
    gh_pending_t p = {.user_id = 7, .account_key = 99, .methods = GH_PENDING_TOTP}, out;
    assert_int_equal(gh_pending_put(a, k, &p, T0), 0);
    assert_int_equal(gh_pending_get(b, k, T0 + 1, &out), 0); /* the other node sees it */
    assert_int_equal(out.user_id, 7);
    assert_int_equal(out.account_key, 99);
    assert_int_equal(out.methods, GH_PENDING_TOTP);
    assert_int_equal(out.expires_at_ms, T0 + GH_PENDING_TTL_MS);
    assert_int_equal(gh_pending_get(b, k, T0 + GH_PENDING_TTL_MS, &out), GH_ENOTFOUND);
    /* wrong steps on both nodes add up */
    uint32_t left;
    assert_int_equal(gh_pending_fail(a, k, T0 + 2, &left), 0);
    assert_int_equal(left, GH_PENDING_MAX_FAILURES - 1);
    assert_int_equal(gh_pending_fail(b, k, T0 + 2, &left), 0);
    assert_int_equal(gh_pending_fail(a, k, T0 + 2, &left), 0);
    assert_int_equal(gh_pending_fail(b, k, T0 + 2, &left), 0);
    assert_int_equal(left, 1);
    assert_int_equal(gh_pending_fail(a, k, T0 + 2, &left), GH_EEXPIRED);
    assert_int_equal(gh_pending_get(b, k, T0 + 3, &out), GH_ENOTFOUND);
    /* one taker wins; the challenge travels */
    key_of(2, k);
    assert_int_equal(gh_pending_put(a, k, &p, T0), 0);
    assert_int_equal(gh_pending_set_challenge(b, k, (const uint8_t *)"ch\0al", 5, T0), 0);
    assert_int_equal(gh_pending_take(b, k, T0 + 4, &out), 0);
    assert_int_equal(out.challenge_len, 5);
    assert_memory_equal(out.challenge, "ch\0al", 5);
    assert_int_equal(gh_pending_take(a, k, T0 + 4, &out), GH_ENOTFOUND);
    gh_pending_destroy(&a);
    gh_pending_destroy(&b);
}

static void the_cap_holds_across_nodes(void **state)
{
    (void)state;
    gh_pending_store_t *a, *b;
    assert_int_equal(gh_pending_redis_create(redis.url, 50, GH_POLICY_EVICT_IDLE, &a), 0);
    assert_int_equal(gh_pending_redis_create(redis.url, 50, GH_POLICY_REFUSE, &b), 0);
    gh_pending_t p = {.user_id = 1};
    uint8_t k[32];
    for (uint64_t i = 0; i < 200; i++) {
        key_of(100 + i, k);
        assert_int_equal(gh_pending_put(a, k, &p, T0 + (int64_t)i), 0);
    }
    gh_pending_stats_t st;
    gh_pending_stats(a, &st);
    assert_int_equal(st.evicted, 150);
    gh_pending_t out;
    key_of(100, k);
    assert_int_equal(gh_pending_get(a, k, T0 + 300, &out), GH_ENOTFOUND); /* the oldest went */
    key_of(299, k);
    assert_int_equal(gh_pending_get(a, k, T0 + 300, &out), 0);
    key_of(999, k);
    assert_int_equal(gh_pending_put(b, k, &p, T0 + 300), GH_EBUSY); /* refuse at the cap */
    /* after five minutes every one is gone and the index is empty */
    int64_t later = T0 + 200 + GH_PENDING_TTL_MS;
    assert_int_equal(gh_pending_expire(a, later, SIZE_MAX), 50);
    assert_int_equal(gh_pending_put(b, k, &p, later), 0);
    gh_pending_destroy(&a);
    gh_pending_destroy(&b);
}

static void redis_away_fails_closed(void **state)
{
    (void)state;
    gh_pending_store_t *a;
    assert_int_equal(gh_pending_redis_create(redis.url, 10, GH_POLICY_EVICT_IDLE, &a), 0);
    uint8_t k[32];
    key_of(5, k);
    gh_pending_t p = {.user_id = 1}, out;
    assert_int_equal(gh_pending_put(a, k, &p, T0), 0);
    assert_int_equal(ts_server_stop(&redis), 0);
    assert_int_equal(gh_pending_get(a, k, T0, &out), GH_ESTORE);
    uint32_t left;
    assert_int_equal(gh_pending_fail(a, k, T0, &left), GH_ESTORE);
    assert_int_equal(ts_server_start(&redis), 0);
    key_of(6, k);
    assert_int_equal(gh_pending_put(a, k, &p, T0), 0); /* reconnects by itself */
    gh_pending_destroy(&a);
    gh_pending_store_t *bad;
    assert_int_equal(gh_pending_redis_create("http://nope", 10, GH_POLICY_REFUSE, &bad), GH_EINVAL);
}

int main(void)
{
    if (ts_server_start(&redis) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(lifecycle, flush),
        cmocka_unit_test_setup(the_cap_holds_across_nodes, flush),
        cmocka_unit_test_setup(redis_away_fails_closed, flush),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ts_server_cleanup(&redis);
    return rc;
}
