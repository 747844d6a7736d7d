/*
 * test_pending_memory.c — the pending-login table (store/pending.h) with an injected clock:
 * a pending login expires at exactly 5 minutes, the 5th wrong step ends it, one taker wins, and
 * a flood of 100,000 half-logins stays within the cap under either policy, is accounted to the
 * `pending` component, and gives back every byte — to the exact baseline — once they expire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "store/pending.h"

#define T0 1700000000000LL

static void key_of(uint64_t i, uint8_t key[GH_PENDING_KEY_LEN])
{
    /* a spread of keys, as hashes would be (splitmix64) */
    for (int w = 0; w < 4; w++) {
        uint64_t z = i * 4 + (uint64_t)w + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(key + 8 * w, &z, 8);
    }
}

static void lifecycle_expiry_failures_and_take(void **state)
{
    (void)state;
    gh_pending_store_t *s;
    assert_int_equal(gh_pending_memory_create(16, GH_POLICY_EVICT_IDLE, &s), 0);
    uint8_t a[32], b[32];
    key_of(1, a);
    key_of(2, b);
    gh_pending_t p = {.user_id = 7, .account_key = 99, .methods = GH_PENDING_TOTP}, out;
    assert_int_equal(gh_pending_put(s, a, &p, T0), 0);
    assert_int_equal(gh_pending_get(s, a, T0 + 1, &out), 0);
    assert_int_equal(out.user_id, 7);
    assert_int_equal(out.account_key, 99);
    assert_int_equal(out.expires_at_ms, T0 + GH_PENDING_TTL_MS);
    assert_int_equal(gh_pending_get(s, b, T0, &out), GH_ENOTFOUND);
    /* four wrong steps leave 4..1 left; the fifth ends it */
    uint32_t left;
    for (uint32_t i = 1; i < GH_PENDING_MAX_FAILURES; i++) {
        assert_int_equal(gh_pending_fail(s, a, T0 + 2, &left), 0);
        assert_int_equal(left, GH_PENDING_MAX_FAILURES - i);
    }
    assert_int_equal(gh_pending_fail(s, a, T0 + 3, &left), GH_EEXPIRED);
    assert_int_equal(gh_pending_get(s, a, T0 + 3, &out), GH_ENOTFOUND);
    assert_int_equal(gh_pending_fail(s, a, T0 + 3, &left), GH_ENOTFOUND);
    /* expiry is exact */
    assert_int_equal(gh_pending_put(s, b, &p, T0), 0);
    assert_int_equal(gh_pending_get(s, b, T0 + GH_PENDING_TTL_MS - 1, &out), 0);
    assert_int_equal(gh_pending_get(s, b, T0 + GH_PENDING_TTL_MS, &out), GH_ENOTFOUND);
    /* one taker wins */
    assert_int_equal(gh_pending_put(s, a, &p, T0), 0);
    assert_int_equal(gh_pending_set_challenge(s, a, (const uint8_t *)"chal", 4, T0), 0);
    assert_int_equal(gh_pending_take(s, a, T0 + 5, &out), 0);
    assert_int_equal(out.challenge_len, 4);
    assert_memory_equal(out.challenge, "chal", 4);
    assert_int_equal(gh_pending_take(s, a, T0 + 5, &out), GH_ENOTFOUND);
    uint8_t big[GH_PENDING_CHALLENGE_MAX + 1] = {0};
    assert_int_equal(gh_pending_put(s, a, &p, T0), 0);
    assert_int_equal(gh_pending_set_challenge(s, a, big, sizeof big, T0), GH_EINVAL);
    gh_pending_stats_t st;
    gh_pending_stats(s, &st);
    assert_int_equal(st.live, 1);
    assert_int_equal(st.expired, 2); /* the fifth wrong step, and b */
    gh_pending_destroy(&s);
    assert_null(s);
}

#define FLOOD 100000
#define CAP 10000

static void flood(gh_session_policy_t policy)
{
    size_t b0 = gh_mem_bytes(GH_MEM_PENDING), o0 = gh_mem_objects(GH_MEM_PENDING);
    gh_pending_store_t *s;
    assert_int_equal(gh_pending_memory_create(CAP, policy, &s), 0);
    size_t empty = gh_mem_bytes(GH_MEM_PENDING), empty_objects = gh_mem_objects(GH_MEM_PENDING);
    gh_pending_t p = {.user_id = 1, .methods = GH_PENDING_TOTP};
    size_t refused = 0;
    /* 100,000 half-logins over 100 s: none ever finished */
    for (uint64_t i = 0; i < FLOOD; i++) {
        uint8_t k[32];
        key_of(i, k);
        int rc = gh_pending_put(s, k, &p, T0 + (int64_t)(i / 1000));
        if (policy == GH_POLICY_REFUSE && rc == GH_EBUSY)
            refused++;
        else
            assert_int_equal(rc, 0);
        assert_true(gh_mem_objects(GH_MEM_PENDING) - empty_objects <= CAP);
    }
    gh_pending_stats_t st;
    gh_pending_stats(s, &st);
    assert_int_equal(st.live, CAP);
    size_t full = gh_mem_bytes(GH_MEM_PENDING) - empty;
    assert_int_equal(gh_mem_objects(GH_MEM_PENDING) - empty_objects, CAP);
    assert_true(full >= CAP * sizeof(gh_pending_t) && full <= CAP * 512); /* accounted, bounded */
    uint8_t k[32];
    gh_pending_t out;
    if (policy == GH_POLICY_REFUSE) {
        assert_int_equal(refused, FLOOD - CAP);
        assert_int_equal(st.refused, FLOOD - CAP);
        key_of(0, k); /* the first ones are kept */
        assert_int_equal(gh_pending_get(s, k, T0 + 100, &out), 0);
    } else {
        assert_int_equal(st.evicted, FLOOD - CAP);
        key_of(FLOOD - 1, k); /* the newest are kept */
        assert_int_equal(gh_pending_get(s, k, T0 + 100, &out), 0);
        key_of(0, k);
        assert_int_equal(gh_pending_get(s, k, T0 + 100, &out), GH_ENOTFOUND);
    }
    /* after five minutes every one is gone: exactly the empty table again */
    assert_int_equal(gh_pending_expire(s, T0 + 100 + GH_PENDING_TTL_MS, SIZE_MAX), CAP);
    assert_int_equal(gh_mem_bytes(GH_MEM_PENDING), empty);
    assert_int_equal(gh_mem_objects(GH_MEM_PENDING), empty_objects);
    gh_pending_destroy(&s);
    assert_int_equal(gh_mem_bytes(GH_MEM_PENDING), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_PENDING), o0);
}

static void a_flood_is_bounded_under_evict_idle(void **state)
{
    (void)state;
    flood(GH_POLICY_EVICT_IDLE);
}

static void a_flood_is_bounded_under_refuse(void **state)
{
    (void)state;
    flood(GH_POLICY_REFUSE);
}

static void allocation_failure_is_clean(void **state)
{
    (void)state;
    size_t o0 = gh_mem_objects(GH_MEM_PENDING);
    for (uint64_t n = 1;; n++) {
        gh_pending_store_t *s = NULL;
        gh_mem_fail_at(n);
        int rc = gh_pending_memory_create(8, GH_POLICY_EVICT_IDLE, &s);
        uint8_t k[32];
        key_of(n, k);
        gh_pending_t p = {.user_id = 1};
        int rc2 = rc == 0 ? gh_pending_put(s, k, &p, T0) : GH_ENOMEM;
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        if (rc == 0)
            gh_pending_destroy(&s);
        else
            assert_int_equal(rc, GH_ENOMEM);
        assert_int_equal(gh_mem_objects(GH_MEM_PENDING), o0);
        if (!fired) {
            assert_int_equal(rc2, 0);
            break;
        }
    }
    gh_pending_store_t *s;
    assert_int_equal(gh_pending_memory_create(0, GH_POLICY_REFUSE, &s), GH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lifecycle_expiry_failures_and_take),
        cmocka_unit_test(a_flood_is_bounded_under_evict_idle),
        cmocka_unit_test(a_flood_is_bounded_under_refuse),
        cmocka_unit_test(allocation_failure_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
