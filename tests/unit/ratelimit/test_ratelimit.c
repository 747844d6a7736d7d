/* test_ratelimit.c — the per-IP buckets and the per-account back-off: exact budgets, refunds,
 * the growing and capped delay, reset on success, lost attempts, memory that stays flat under a
 * flood of distinct keys while the entries that throttle someone survive it, and exact counts
 * under concurrent use. Time is injected, so nothing here depends on the machine's speed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "ratelimit/ratelimit.h"

#define T0 1700000000000LL /* an arbitrary wall-clock start, ms */

static gh_ratelimit_params_t params(uint32_t count, int64_t window_ms, uint32_t threshold)
{
    return (gh_ratelimit_params_t){.ip_count = count,
                                   .ip_window_ms = window_ms,
                                   .account_threshold = threshold,
                                   .account_base_delay_ms = 1000,
                                   .account_max_delay_ms = 60000,
                                   .account_forget_ms = 3600 * 1000,
                                   .ip_slots = 1024,
                                   .account_slots = 1024};
}

static gh_ratelimit_t *make(gh_ratelimit_params_t p)
{
    gh_ratelimit_t *rl = NULL;
    assert_int_equal(gh_ratelimit_create(&p, &rl), 0);
    assert_non_null(rl);
    return rl;
}

static gh_ip_t ip(const char *s)
{
    gh_ip_t out;
    assert_int_equal(gh_ip_parse(s, strlen(s), &out), 0);
    return out;
}

static gh_ip_t ip_n(uint32_t n)
{
    gh_ip_t out = ip("0.0.0.0");
    out.b[12] = (uint8_t)(n >> 24);
    out.b[13] = (uint8_t)(n >> 16);
    out.b[14] = (uint8_t)(n >> 8);
    out.b[15] = (uint8_t)n;
    return out;
}

/* Takes until refused; returns how many were allowed (at most limit). */
static int drain(gh_ratelimit_t *rl, const gh_ip_t *a, int64_t now, int limit, int64_t *retry)
{
    for (int i = 0; i < limit; i++)
        if (gh_ratelimit_ip_take(rl, a, now, retry) != 0)
            return i;
    return limit;
}

static void ip_budget_is_exact_and_refills_over_the_window(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(20, 60000, 10));
    gh_ip_t a = ip("192.0.2.1"), b = ip("192.0.2.2");
    int64_t retry = 0;
    assert_int_equal(drain(rl, &a, T0, 100, &retry), 20);
    assert_int_equal(gh_ratelimit_ip_take(rl, &a, T0, &retry), GH_ELIMIT);
    assert_int_equal(retry, 3000); /* one attempt every 60 s / 20 */
    /* Another client is untouched. */
    assert_int_equal(drain(rl, &b, T0, 100, &retry), 20);
    /* One interval later, exactly one more. */
    assert_int_equal(gh_ratelimit_ip_take(rl, &a, T0 + 2999, &retry), GH_ELIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(drain(rl, &a, T0 + 3000, 100, &retry), 1);
    /* A whole quiet window later, the full burst again. */
    assert_int_equal(drain(rl, &a, T0 + 3000 + 60000, 100, &retry), 20);
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(rl, &st);
    assert_true(st.ip_rejected >= 4);
    gh_ratelimit_destroy(&rl);
    assert_null(rl);
}

static void refunds_give_back_but_never_above_capacity(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(5, 60000, 10));
    gh_ip_t a = ip("192.0.2.1");
    int64_t retry;
    /* Refunding a client never seen, or a full bucket, adds nothing. */
    gh_ratelimit_ip_refund(rl, &a, T0);
    assert_int_equal(gh_ratelimit_ip_take(rl, &a, T0, &retry), 0);
    gh_ratelimit_ip_refund(rl, &a, T0);
    gh_ratelimit_ip_refund(rl, &a, T0);
    assert_int_equal(drain(rl, &a, T0, 100, &retry), 5);
    /* Refunds after the bucket ran dry hand back exactly what was refunded. */
    gh_ratelimit_ip_refund(rl, &a, T0);
    gh_ratelimit_ip_refund(rl, &a, T0);
    assert_int_equal(drain(rl, &a, T0, 100, &retry), 2);
    gh_ratelimit_destroy(&rl);
}

static void zero_turns_the_ip_throttle_off(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 10));
    gh_ip_t a = ip("192.0.2.1");
    int64_t retry;
    assert_int_equal(drain(rl, &a, T0, 10000, &retry), 10000);
    gh_ratelimit_destroy(&rl);
    gh_ratelimit_params_t bad = params(5, 0, 10);
    assert_int_equal(gh_ratelimit_create(&bad, &rl), GH_EINVAL);
    assert_null(rl);
}

static void ipv6_clients_share_their_slash_64(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(3, 60000, 10));
    gh_ip_t a = ip("2001:db8:1:2::1"), b = ip("2001:db8:1:2:ffff::99"), c = ip("2001:db8:1:3::1");
    gh_ip_t v4a = ip("198.51.100.1"), v4b = ip("198.51.100.2");
    int64_t retry;
    assert_int_equal(drain(rl, &a, T0, 100, &retry), 3);
    assert_int_equal(drain(rl, &b, T0, 100, &retry), 0);
    assert_int_equal(drain(rl, &c, T0, 100, &retry), 3);
    assert_int_equal(drain(rl, &v4a, T0, 100, &retry), 3);
    assert_int_equal(drain(rl, &v4b, T0, 100, &retry), 3);
    gh_ratelimit_destroy(&rl);
}

static void memory_is_flat_under_a_flood_and_throttled_clients_stay_throttled(void **state)
{
    (void)state;
    size_t before = gh_mem_bytes(GH_MEM_RATELIMIT);
    gh_ratelimit_t *rl = make(params(5, 60000, 3));
    size_t after_create = gh_mem_bytes(GH_MEM_RATELIMIT);
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(rl, &st);
    assert_true(after_create - before >= st.bytes);
    assert_int_equal(st.ip_capacity, 1024);
    assert_int_equal(st.account_capacity, 1024);

    gh_ip_t victim = ip("203.0.113.66");
    int64_t retry;
    assert_int_equal(drain(rl, &victim, T0, 100, &retry), 5);
    uint64_t locked = gh_ratelimit_account_key(rl, "mallory-target", 14);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(gh_ratelimit_account_begin(rl, locked, T0, &retry), 0);
        gh_ratelimit_account_end(rl, locked, GH_RATELIMIT_FAILURE, T0, NULL);
    }

    /* 200,000 distinct addresses and usernames, each failing once, within one second. */
    for (uint32_t i = 0; i < 200000; i++) {
        int64_t now = T0 + i / 200;
        gh_ip_t a = ip_n(0x0a000000u + i);
        assert_int_equal(gh_ratelimit_ip_take(rl, &a, now, &retry), 0);
        char name[32];
        int n = snprintf(name, sizeof name, "user%u", i);
        uint64_t k = gh_ratelimit_account_key(rl, name, (size_t)n);
        assert_int_equal(gh_ratelimit_account_begin(rl, k, now, &retry), 0);
        gh_ratelimit_account_end(rl, k, GH_RATELIMIT_FAILURE, now, NULL);
    }
    assert_int_equal(gh_mem_bytes(GH_MEM_RATELIMIT), after_create);
    gh_ratelimit_stats(rl, &st);
    assert_true(st.ip_entries <= st.ip_capacity);
    assert_true(st.account_entries <= st.account_capacity);
    assert_true(st.ip_evictions > 0);
    assert_true(st.account_evictions > 0);

    /* The entries that were holding someone back were not the ones replaced. */
    assert_int_equal(gh_ratelimit_ip_take(rl, &victim, T0 + 1000, &retry), GH_ELIMIT);
    assert_int_equal(gh_ratelimit_account_begin(rl, locked, T0 + 500, &retry), GH_ELIMIT);

    gh_ratelimit_destroy(&rl);
    assert_int_equal(gh_mem_bytes(GH_MEM_RATELIMIT), before);
}

/* One failed attempt at `now`. */
static void fail_once(gh_ratelimit_t *rl, uint64_t k, int64_t now, gh_ratelimit_verdict_t *v)
{
    int64_t retry;
    assert_int_equal(gh_ratelimit_account_begin(rl, k, now, &retry), 0);
    gh_ratelimit_account_end(rl, k, GH_RATELIMIT_FAILURE, now, v);
}

static void account_backoff_starts_at_the_threshold_and_doubles_to_the_cap(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 10)); /* base 1 s, cap 60 s */
    uint64_t k = gh_ratelimit_account_key(rl, "alice", 5);
    gh_ratelimit_verdict_t v;
    int64_t retry, now = T0;
    for (int i = 1; i <= 9; i++) {
        fail_once(rl, k, now, &v);
        assert_int_equal(v.failures, i);
        assert_int_equal(v.delay_ms, 0);
        assert_false(v.lockout);
    }
    fail_once(rl, k, now, &v);
    assert_int_equal(v.failures, 10);
    assert_true(v.lockout);
    assert_int_equal(v.delay_ms, 1000);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, now + 999, &retry), GH_ELIMIT);
    assert_int_equal(retry, 1);

    int64_t want[] = {2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    now += 1000;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        fail_once(rl, k, now, &v);
        assert_false(v.lockout);
        assert_int_equal(v.delay_ms, want[i]);
        assert_int_equal(gh_ratelimit_account_begin(rl, k, now + want[i] - 1, &retry), GH_ELIMIT);
        now += want[i];
    }
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(rl, &st);
    assert_int_equal(st.lockouts, 1);
    assert_true(st.account_rejected >= 9);

    /* Never permanent: at the cap an attempt is always allowed once the delay has passed, and
     * the right password clears everything. */
    assert_int_equal(gh_ratelimit_account_begin(rl, k, now, &retry), 0);
    gh_ratelimit_account_end(rl, k, GH_RATELIMIT_SUCCESS, now, &v);
    assert_int_equal(v.failures, 0);
    for (int i = 0; i < 9; i++)
        fail_once(rl, k, now, NULL);
    gh_ratelimit_stats(rl, &st);
    assert_int_equal(st.lockouts, 1);
    gh_ratelimit_destroy(&rl);
}

static void usernames_are_case_insensitive_and_accounts_separate(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 2));
    uint64_t a = gh_ratelimit_account_key(rl, "Alice@Example.org", 17);
    assert_int_equal(a, gh_ratelimit_account_key(rl, "alice@example.ORG", 17));
    uint64_t b = gh_ratelimit_account_key(rl, "bob", 3);
    assert_true(a != b && a != 0 && b != 0);
    assert_true(gh_ratelimit_account_key(rl, "", 0) != 0);
    int64_t retry;
    fail_once(rl, a, T0, NULL);
    fail_once(rl, a, T0, NULL);
    assert_int_equal(gh_ratelimit_account_begin(rl, a, T0, &retry), GH_ELIMIT);
    assert_int_equal(gh_ratelimit_account_begin(rl, b, T0, &retry), 0);
    gh_ratelimit_account_end(rl, b, GH_RATELIMIT_SUCCESS, T0, NULL);
    gh_ratelimit_destroy(&rl);
}

static void parallel_attempts_cannot_slip_past_the_threshold(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 3));
    uint64_t k = gh_ratelimit_account_key(rl, "carol", 5);
    int64_t retry;
    /* Three guesses in flight fill the allowance; one more gets through as the first attempt
     * of the back-off, and then the door is held. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), 0);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), GH_ELIMIT);
    for (int i = 0; i < 4; i++)
        gh_ratelimit_account_end(rl, k, GH_RATELIMIT_FAILURE, T0, NULL);
    /* Four failures: the delay is the second step's. */
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0 + 1999, &retry), GH_ELIMIT);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0 + 2000, &retry), 0);
    gh_ratelimit_destroy(&rl);
}

static void abandoned_and_lost_attempts_do_not_count(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 2));
    uint64_t k = gh_ratelimit_account_key(rl, "dave", 4);
    int64_t retry;
    gh_ratelimit_verdict_t v;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), 0);
        gh_ratelimit_account_end(rl, k, GH_RATELIMIT_ABANDONED, T0, &v);
        assert_int_equal(v.failures, 0);
    }
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(rl, &st);
    assert_int_equal(st.account_entries, 0);

    /* Attempts whose request vanished without an outcome stop counting after a while. */
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), 0);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), 0);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), 0);
    assert_int_equal(gh_ratelimit_account_begin(rl, k, T0, &retry), GH_ELIMIT);
    int64_t later = T0 + 10 * 60 * 1000;
    assert_int_equal(gh_ratelimit_account_begin(rl, k, later, &retry), 0);
    gh_ratelimit_account_end(rl, k, GH_RATELIMIT_SUCCESS, later, NULL);
    gh_ratelimit_stats(rl, &st);
    assert_int_equal(st.account_entries, 0);
    gh_ratelimit_destroy(&rl);
}

static void quiet_accounts_are_forgotten(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(0, 0, 3)); /* forget after 1 h */
    uint64_t k = gh_ratelimit_account_key(rl, "erin", 4);
    gh_ratelimit_verdict_t v;
    fail_once(rl, k, T0, &v);
    fail_once(rl, k, T0, &v);
    assert_int_equal(v.failures, 2);
    fail_once(rl, k, T0 + 3600 * 1000 + 1, &v);
    assert_int_equal(v.failures, 1);
    gh_ratelimit_destroy(&rl);
}

/* NIST SP 800-63B 5.2.2: no more than 100 consecutive failures. With the shipped schedule, the
 * fastest possible attacker (an attempt the moment each delay ends) needs more than 20 hours to
 * make 100. */
static void the_shipped_schedule_makes_100_failures_take_a_day(void **state)
{
    (void)state;
    gh_ratelimit_params_t p = {.account_threshold = 10,
                               .account_base_delay_ms = GH_RATELIMIT_BASE_DELAY_MS,
                               .account_max_delay_ms = GH_RATELIMIT_MAX_DELAY_MS,
                               .account_forget_ms = GH_RATELIMIT_FORGET_MS,
                               .ip_slots = 8,
                               .account_slots = 8};
    gh_ratelimit_t *rl = make(p);
    uint64_t k = gh_ratelimit_account_key(rl, "frank", 5);
    int64_t now = T0, retry;
    int failures = 0;
    while (failures < 100) {
        if (gh_ratelimit_account_begin(rl, k, now, &retry) != 0) {
            assert_true(retry > 0 && retry <= GH_RATELIMIT_MAX_DELAY_MS);
            now += retry;
            continue;
        }
        gh_ratelimit_account_end(rl, k, GH_RATELIMIT_FAILURE, now, NULL);
        failures++;
    }
    print_message("100 consecutive failures took %.1f h at the fastest\n",
                  (double)(now - T0) / 3600000.0);
    assert_true(now - T0 > 20LL * 3600 * 1000);
    gh_ratelimit_destroy(&rl);
}

typedef struct {
    gh_ratelimit_t *rl;
    gh_ip_t ip;
    uint64_t account;
    int allowed;
} worker_t;

static void *hammer(void *arg)
{
    worker_t *w = arg;
    int64_t retry;
    for (int i = 0; i < 5000; i++) {
        if (gh_ratelimit_ip_take(w->rl, &w->ip, T0, &retry) == 0)
            w->allowed++;
        if (gh_ratelimit_account_begin(w->rl, w->account, T0, &retry) == 0)
            gh_ratelimit_account_end(w->rl, w->account, GH_RATELIMIT_ABANDONED, T0, NULL);
    }
    return NULL;
}

static void concurrent_takes_are_counted_exactly(void **state)
{
    (void)state;
    gh_ratelimit_t *rl = make(params(1000, 60000, 5));
    enum { N = 8 };
    pthread_t t[N];
    worker_t w[N];
    gh_ip_t shared = ip("198.51.100.200");
    uint64_t acct = gh_ratelimit_account_key(rl, "grace", 5);
    for (int i = 0; i < N; i++) {
        w[i] = (worker_t){.rl = rl, .ip = shared, .account = acct};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        total += w[i].allowed;
    }
    assert_int_equal(total, 1000);
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(rl, &st);
    assert_int_equal(st.ip_rejected, N * 5000 - 1000);
    assert_int_equal(st.account_entries, 0); /* every attempt ended; nothing left behind */
    gh_ratelimit_destroy(&rl);
}

static void allocation_failure_leaks_nothing(void **state)
{
    (void)state;
    size_t before = gh_mem_bytes(GH_MEM_RATELIMIT);
    gh_ratelimit_params_t p = params(5, 1000, 3);
    for (uint64_t n = 1; n <= 3; n++) {
        gh_ratelimit_t *rl = NULL;
        gh_mem_fail_at(n);
        assert_int_equal(gh_ratelimit_create(&p, &rl), GH_ENOMEM);
        assert_null(rl);
        assert_int_equal(gh_mem_bytes(GH_MEM_RATELIMIT), before);
    }
    gh_mem_fail_at(0);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ip_budget_is_exact_and_refills_over_the_window),
        cmocka_unit_test(refunds_give_back_but_never_above_capacity),
        cmocka_unit_test(zero_turns_the_ip_throttle_off),
        cmocka_unit_test(ipv6_clients_share_their_slash_64),
        cmocka_unit_test(memory_is_flat_under_a_flood_and_throttled_clients_stay_throttled),
        cmocka_unit_test(account_backoff_starts_at_the_threshold_and_doubles_to_the_cap),
        cmocka_unit_test(usernames_are_case_insensitive_and_accounts_separate),
        cmocka_unit_test(parallel_attempts_cannot_slip_past_the_threshold),
        cmocka_unit_test(abandoned_and_lost_attempts_do_not_count),
        cmocka_unit_test(quiet_accounts_are_forgotten),
        cmocka_unit_test(the_shipped_schedule_makes_100_failures_take_a_day),
        cmocka_unit_test(concurrent_takes_are_counted_exactly),
        cmocka_unit_test(allocation_failure_leaks_nothing),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
