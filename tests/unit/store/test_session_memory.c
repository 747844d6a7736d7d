/*
 * test_session_memory.c — the in-memory session store: the shared session suite
 * (session_suite.h) against it, then what only this backend promises: the byte budget under
 * both policies, restore, and the promise the outage broke — every way a session ends gives
 * back every byte, exactly. Time is injected through the `now` argument; nothing here reads a
 * clock.
 */
#include <sodium.h>

#include "session_suite.h"

#define BIG 100000 /* sessions in the exact-baseline tests */

static int memory_check(gh_session_store_t *s, const char **why)
{
    return gh_session_memory_check(s, why);
}

static const session_backend_t memory_backend = {
    .name = "memory",
    .open = gh_session_memory_open,
    .check = memory_check,
    .reset = NULL,
    .thread_ops = 100000,
};

/* ---- basics ---- */

static void open_rejects_bad_limits(void **state)
{
    (void)state;
    gh_session_store_t *s = NULL;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    assert_int_equal(gh_session_memory_open(NULL, &s), GH_EINVAL);
    l.session_ttl_ms = 0;
    assert_int_equal(gh_session_memory_open(&l, &s), GH_EINVAL);
    l = limits();
    l.idle_ttl_ms = -1;
    assert_int_equal(gh_session_memory_open(&l, &s), GH_EINVAL);
    l = limits();
    l.policy = (gh_session_policy_t)7;
    assert_int_equal(gh_session_memory_open(&l, &s), GH_EINVAL);
    assert_null(s);
    gh_mem_fail_at(1);
    l = limits();
    assert_int_equal(gh_session_memory_open(&l, &s), GH_ENOMEM);
    gh_mem_fail_at(0);
    assert_null(s);
    assert_at_mark(m0);
}

/* ---- the per-user cap without allocation ---- */

static void cap_replacement_allocates_nothing(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 1;
    l.policy = GH_POLICY_REFUSE;
    gh_session_store_t *s = open_store(&l);
    /* exactly one full chunk of records, so a growing create would need a new one */
    for (uint64_t i = 0; i < 1024; i++)
        create_ok(s, i, i, T0, NULL);
    l.budget_bytes = stats(s).bytes; /* and a store that is exactly at its budget */
    gh_session_store_t *b = open_store(&l);
    for (uint64_t i = 0; i < 1024; i++)
        assert_int_equal(gh_session_create(b, i, H(i).b, NULL, T0, NULL), 0);
    assert_int_equal(gh_session_create(b, 5000, H(5000).b, NULL, T0, NULL), GH_EBUSY);
    mark_t m = mark();
    uint64_t a0 = gh_mem_alloc_count();
    for (uint64_t i = 0; i < 3000; i++) /* each user logs in again: their old session goes */
        assert_int_equal(gh_session_create(b, i % 1024, H(10000 + i).b, NULL, T0 + 1, NULL), 0);
    assert_int_equal(gh_mem_alloc_count(), a0);
    assert_at_mark(m);
    assert_int_equal(stats(b).ended_total[GH_END_EVICTED], 3000);
    assert_consistent(b);
    gh_session_store_destroy(&b);
    gh_session_store_destroy(&s);
}

/* What the eviction report told: copies only, as the node's queue does. */
typedef struct {
    int calls, by_cap;
    uint64_t user_id;
    char sid[GH_SESSION_ID_LEN + 1];
} evicted_t;

static void on_evict(void *ctx, uint64_t user_id, const char session_id[GH_SESSION_ID_LEN + 1],
                     bool by_cap)
{
    evicted_t *e = ctx;
    e->calls++;
    e->by_cap += by_cap;
    e->user_id = user_id;
    memcpy(e->sid, session_id, sizeof e->sid);
}

static void evictions_are_reported_with_user_and_session(void **state)
{
    (void)state;
    evicted_t e = {0};
    gh_session_limits_t l = limits();
    l.max_per_user = 2;
    l.on_evict = on_evict;
    l.on_evict_ctx = &e;
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t oldest;
    create_ok(s, 7, 1, T0, &oldest);
    create_ok(s, 7, 2, T0 + 1, NULL);
    create_ok(s, 8, 3, T0 + 2, NULL);
    assert_int_equal(e.calls, 0);     /* under the cap: nothing */
    create_ok(s, 7, 4, T0 + 3, NULL); /* the third of user 7: the oldest goes */
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.by_cap, 1);
    assert_int_equal(e.user_id, 7);
    assert_string_equal(e.sid, oldest.id);
    assert_int_equal(lookup(s, 1, T0 + 4, NULL), GH_ENOTFOUND);
    /* a logout or a revocation is not an eviction */
    assert_int_equal(gh_session_end(s, H(2).b, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_end_user(s, 8, NULL, GH_END_REVOKED, NULL), 0);
    assert_int_equal(e.calls, 1);
    gh_session_store_destroy(&s);

    /* the budget's eviction (evict-idle): by_cap false, the least recently used */
    memset(&e, 0, sizeof e);
    l = limits();
    l.max_per_user = 0;
    l.policy = GH_POLICY_EVICT_IDLE;
    l.on_evict = on_evict;
    l.on_evict_ctx = &e;
    s = open_store(&l);
    l.budget_bytes = stats(s).bytes + 400 * 1024; /* a few thousand sessions */
    gh_session_store_destroy(&s);
    s = open_store(&l);
    gh_session_info_t first;
    create_ok(s, 1, 1, T0, &first);
    int made = 1;
    for (; e.calls == 0 && made < 100000; made++)
        create_ok(s, 2, (uint64_t)(1 + made), T0 + made, NULL);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.by_cap, 0);
    assert_int_equal(e.user_id, 1);
    assert_string_equal(e.sid, first.id);
    assert_int_equal(stats(s).ended_total[GH_END_EVICTED], 1);
    gh_session_store_destroy(&s);
}

/* ---- the budget ---- */

/* The bytes of an empty store, to size budgets relative to it. */
static size_t empty_store_bytes(void)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    size_t b = stats(s).bytes;
    gh_session_store_destroy(&s);
    return b;
}

static void budget_evict_idle_keeps_under_and_evicts_lru(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 0;
    l.budget_bytes = empty_store_bytes() + 400 * 1024; /* room for roughly 3,500 sessions */
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    enum { N = 12000 };
    for (int i = 0; i < N; i++) {
        create_ok(s, (uint64_t)i % 1000, (uint64_t)i, T0 + i, NULL);
        if (i % 100 == 0) /* session 0 is the oldest but is used all the time */
            assert_int_equal(lookup(s, 0, T0 + i, NULL), 0);
        gh_session_stats_t st = stats(s);
        assert_true(st.bytes <= l.budget_bytes);
        assert_int_equal(st.bytes, gh_mem_bytes(GH_MEM_SESSIONS) - m0.bytes);
    }
    gh_session_stats_t st = stats(s);
    assert_true(st.ended_total[GH_END_EVICTED] > N / 2);
    assert_int_equal(st.active + st.ended_total[GH_END_EVICTED], N);
    assert_int_equal(st.budget_bytes, l.budget_bytes);
    assert_consistent(s);
    /* Exactly the most recently used survive: session 0 and the newest st.active - 1. */
    uint64_t first_live = N - (st.active - 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(lookup(s, (uint64_t)i, T0 + N, NULL),
                         i == 0 || (uint64_t)i >= first_live ? 0 : GH_ENOTFOUND);
    gh_session_store_destroy(&s);
}

static void budget_refuse_says_busy_and_changes_nothing(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 0;
    l.policy = GH_POLICY_REFUSE;
    l.budget_bytes = empty_store_bytes() + 400 * 1024;
    gh_session_store_t *s = open_store(&l);
    int i = 0, rc;
    while (i < 100000 &&
           (rc = gh_session_create(s, (uint64_t)i % 50, H((uint64_t)i).b, NULL, T0 + i, NULL)) == 0)
        i++;
    assert_int_equal(rc, GH_EBUSY);
    assert_true(i > 1000);
    gh_session_stats_t before = stats(s);
    assert_true(before.bytes <= l.budget_bytes);
    mark_t m = mark();
    for (int k = 0; k < 10; k++)
        assert_int_equal(gh_session_create(s, 1, H(1000000 + (uint64_t)k).b, NULL, T0 + i, NULL),
                         GH_EBUSY);
    gh_session_stats_t after = stats(s);
    assert_int_equal(after.active, before.active);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.ended_total[GH_END_EVICTED], 0);
    assert_at_mark(m);
    /* Existing sessions still work, and ending one makes room again. */
    for (int k = 0; k < i; k += 97)
        assert_int_equal(lookup(s, (uint64_t)k, T0 + i, NULL), 0);
    assert_int_equal(end(s, 5, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_create(s, 1, H(2000000).b, NULL, T0 + i, NULL), 0);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

/* ---- exact baseline, one test per way a session ends ---- */

typedef struct {
    gh_session_store_t *s;
    mark_t before_open, open;
    gh_session_info_t *info; /* BIG entries */
} big_t;

static big_t big_open(const gh_session_limits_t *l)
{
    big_t b;
    b.before_open = mark();
    b.s = open_store(l);
    b.open = mark();
    b.info = gh_mem_calloc(GH_MEM_OTHER, BIG, sizeof *b.info);
    assert_non_null(b.info);
    return b;
}

/* Session i's client in the baseline tests: one of 1,000 clients, and every seventh unknown, so
 * every way a session ends also drops client references and entries. */
static gh_session_client_t *big_client(uint64_t i, gh_session_client_t *c)
{
    if (i % 7 == 0)
        return NULL;
    *c = client_of(i % 1000);
    return c;
}

/* Creates BIG sessions for users uid(i), session i created at T0 + i/100 ms steps. */
static void big_fill(big_t *b, uint64_t users)
{
    gh_session_client_t c;
    for (uint64_t i = 0; i < BIG; i++)
        create_from(b->s, i % users, i, big_client(i, &c), T0 + (int64_t)(i / 100), &b->info[i]);
    gh_session_clients_stats_t cs;
    gh_session_memory_clients(b->s, &cs);
    assert_int_equal(cs.entries, 1000);
    gh_session_stats_t st = stats(b->s);
    assert_int_equal(st.active, BIG);
    assert_true(gh_mem_bytes(GH_MEM_SESSIONS) > b->open.bytes + BIG * 100);
}

static void big_close(big_t *b, gh_session_end_t reason, uint64_t ended)
{
    gh_session_stats_t st = stats(b->s);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.ended_total[reason], ended);
    assert_consistent(b->s);
    /* The heart of it: not a byte, not an object more than the empty store held. */
    assert_at_mark(b->open);
    assert_int_equal(st.bytes, b->open.bytes - b->before_open.bytes);
    gh_session_store_destroy(&b->s);
    assert_at_mark(b->before_open);
    gh_mem_free(GH_MEM_OTHER, b->info);
}

static void baseline_after_logout(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, BIG / 3);
    for (uint64_t i = 0; i < BIG; i++) /* in a scrambled order */
        assert_int_equal(end(b.s, (i * 7919) % BIG, GH_END_LOGOUT), 0);
    big_close(&b, GH_END_LOGOUT, BIG);
}

static void baseline_after_revoke_by_id(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, 1000);
    for (uint64_t i = 0; i < BIG; i++)
        assert_int_equal(gh_session_end_by_id(b.s, i % 1000, b.info[i].id, GH_END_REVOKED), 0);
    big_close(&b, GH_END_REVOKED, BIG);
}

static void baseline_after_revoke_all(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, BIG / 10);
    size_t total = 0, n = 0;
    for (uint64_t u = 0; u < BIG / 10; u++) {
        assert_int_equal(gh_session_end_user(b.s, u, NULL, GH_END_REVOKED, &n), 0);
        assert_int_equal(n, 10);
        total += n;
    }
    assert_int_equal(total, BIG);
    big_close(&b, GH_END_REVOKED, BIG);
}

static void baseline_after_password_change(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, BIG / 20);
    size_t n = 0;
    /* Each user changes their password from their latest session: the other 19 end. */
    for (uint64_t u = 0; u < BIG / 20; u++) {
        hash_t keep = H(BIG - BIG / 20 + u);
        assert_int_equal(gh_session_end_user(b.s, u, keep.b, GH_END_REVOKED, &n), 0);
        assert_int_equal(n, 19);
    }
    assert_int_equal(stats(b.s).active, BIG / 20);
    for (uint64_t u = 0; u < BIG / 20; u++)
        assert_int_equal(end(b.s, BIG - BIG / 20 + u, GH_END_LOGOUT), 0);
    big_close(&b, GH_END_REVOKED, BIG - BIG / 20);
}

static void baseline_after_user_deleted(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 0; /* a few heavy users: deleting one ends tens of thousands at once */
    big_t b = big_open(&l);
    big_fill(&b, 4);
    size_t n = 0;
    for (uint64_t u = 0; u < 4; u++) {
        assert_int_equal(gh_session_end_user(b.s, u, NULL, GH_END_REVOKED, &n), 0);
        assert_int_equal(n, BIG / 4);
        assert_consistent(b.s);
    }
    big_close(&b, GH_END_REVOKED, BIG);
}

static void baseline_after_idle(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, BIG);
    /* A tenth are presented after their deadline and end by lookup; the sweep takes the rest. */
    int64_t t = T0 + 30 * MIN + BIG / 100;
    for (uint64_t i = 0; i < BIG; i += 10)
        assert_int_equal(lookup(b.s, i, t, NULL), GH_ENOTFOUND);
    size_t swept = 0;
    for (size_t k; (k = gh_session_expire(b.s, t, 4096)) != 0;)
        swept += k;
    assert_int_equal(swept, BIG - BIG / 10);
    assert_int_equal(stats(b.s).ended_total[GH_END_EXPIRED], 0);
    big_close(&b, GH_END_IDLE, BIG);
}

static void baseline_after_absolute_expiry(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.session_ttl_ms = 1 * HOUR;
    big_t b = big_open(&l);
    big_fill(&b, BIG / 2);
    /* Used every 25 minutes, so only the absolute deadline can end them. */
    for (int64_t t = T0 + 25 * MIN; t < T0 + HOUR; t += 25 * MIN) {
        for (uint64_t i = 0; i < BIG; i++)
            assert_int_equal(lookup(b.s, i, t, NULL), 0);
        assert_int_equal(gh_session_expire(b.s, t, SIZE_MAX), 0);
    }
    int64_t t = T0 + HOUR + BIG / 100;
    for (uint64_t i = 0; i < BIG; i += 10)
        assert_int_equal(lookup(b.s, i, t, NULL), GH_ENOTFOUND);
    assert_int_equal(gh_session_expire(b.s, t, SIZE_MAX), BIG - BIG / 10);
    assert_int_equal(stats(b.s).ended_total[GH_END_IDLE], 0);
    big_close(&b, GH_END_EXPIRED, BIG);
}

static void baseline_after_per_user_cap(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 2;
    big_t b = big_open(&l);
    big_fill(&b, BIG / 2); /* every user at the cap */
    mark_t full = mark();
    /* BIG more logins from the same clients: each evicts its user's oldest; the store does not
     * grow. */
    gh_session_client_t c;
    for (uint64_t i = 0; i < BIG; i++)
        create_from(b.s, i % (BIG / 2), BIG + i, big_client(i, &c),
                    T0 + 2 * HOUR / 3 + (int64_t)i / 100, NULL);
    assert_int_equal(stats(b.s).ended_total[GH_END_EVICTED], BIG);
    assert_at_mark(full);
    for (uint64_t i = 0; i < BIG; i++)
        assert_int_equal(lookup(b.s, i, T0 + HOUR, NULL), GH_ENOTFOUND);
    for (uint64_t i = 0; i < BIG; i++)
        assert_int_equal(end(b.s, BIG + i, GH_END_LOGOUT), 0);
    big_close(&b, GH_END_EVICTED, BIG);
}

static void baseline_after_budget_eviction(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.budget_bytes = empty_store_bytes() + BIG / 2 * 128;
    big_t b = big_open(&l);
    gh_session_client_t c;
    for (uint64_t i = 0; i < 2 * BIG; i++) {
        create_from(b.s, i % 5000, i, big_client(i, &c), T0 + (int64_t)(i / 100), NULL);
        assert_true(gh_mem_bytes(GH_MEM_SESSIONS) - b.before_open.bytes <= l.budget_bytes);
    }
    gh_session_stats_t st = stats(b.s);
    assert_true(st.ended_total[GH_END_EVICTED] >= BIG);
    assert_int_equal(st.active + st.ended_total[GH_END_EVICTED], 2 * BIG);
    for (uint64_t u = 0; u < 5000; u++)
        assert_int_equal(gh_session_end_user(b.s, u, NULL, GH_END_REVOKED, NULL), 0);
    big_close(&b, GH_END_EVICTED, st.ended_total[GH_END_EVICTED]);
}

/* What a session costs: the footprint promise, at one session per user (the worst case: every
 * session carries a user-table entry). */
static void footprint_per_session(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    big_t b = big_open(&l);
    big_fill(&b, BIG);
    size_t per = (gh_mem_bytes(GH_MEM_SESSIONS) - b.open.bytes) / BIG;
    print_message("accounted bytes per session: %zu\n", per);
    assert_true(per <= 128);
    for (uint64_t i = 0; i < BIG; i++)
        assert_int_equal(end(b.s, i, GH_END_LOGOUT), 0);
    big_close(&b, GH_END_LOGOUT, BIG);
}

static void million_cycles_leave_nothing(void **state)
{
    (void)state;
    enum { CYCLES = 1000000, WINDOW = 3000 };
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    mark_t m1 = mark();
    /* Up to WINDOW live at once, so chunks and table segments come and go all the time. */
    for (uint64_t i = 0; i < CYCLES; i++) {
        create_ok(s, i % 777, i, T0 + (int64_t)(i / 1000), NULL);
        if (i >= WINDOW)
            assert_int_equal(end(s, i - WINDOW, GH_END_LOGOUT), 0);
    }
    for (uint64_t i = CYCLES - WINDOW; i < CYCLES; i++)
        assert_int_equal(end(s, i, GH_END_LOGOUT), 0);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.created_total, CYCLES);
    assert_int_equal(st.ended_total[GH_END_LOGOUT], CYCLES);
    assert_at_mark(m1);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
    assert_int_equal(gh_mem_objects(GH_MEM_SESSIONS), m0.objects);
}

/* ---- allocation failure ---- */

/* A batch that crosses chunk, segment and directory boundaries in both tables, with per-user
 * cap evictions and budget evictions on the way. Returns how many creates succeeded. */
static int failure_batch(gh_session_store_t *s, uint64_t base, int count, int *nomem)
{
    int ok = 0;
    for (int i = 0; i < count; i++) {
        hash_t h = H(base + (uint64_t)i);
        /* every tenth login goes to one of five heavy users, who run into the cap */
        uint64_t uid = i % 10 == 0 ? (uint64_t)(i % 5) : (uint64_t)(i % 1500);
        int rc = gh_session_create(s, uid, h.b, NULL, T0 + i, NULL);
        if (rc == 0) {
            ok++;
        } else if (rc == GH_ENOMEM) {
            /* at once, before later creates could use up capacity a failure left behind */
            (*nomem)++;
            assert_consistent(s);
            assert_int_equal(lookup(s, base + (uint64_t)i, T0 + i, NULL), GH_ENOTFOUND);
        } else
            fail_msg("create returned %s", gh_errname(rc));
    }
    return ok;
}

static void allocation_failure_sweep(void **state)
{
    (void)state;
    enum { BATCH = 12000 };
    gh_session_limits_t l = limits();
    l.max_per_user = 6;
    l.budget_bytes = empty_store_bytes() + 700 * 1024; /* budget evictions from about 6,000 */
    /* How many allocations a clean batch makes: the sweep covers every one and a bit more. */
    gh_session_store_t *s = open_store(&l);
    uint64_t a0 = gh_mem_alloc_count();
    int nomem = 0;
    assert_int_equal(failure_batch(s, 0, BATCH, &nomem), BATCH);
    uint64_t allocs = gh_mem_alloc_count() - a0;
    gh_session_stats_t clean = stats(s);
    assert_true(clean.ended_total[GH_END_EVICTED] > 1000);
    gh_session_store_destroy(&s);
    assert_true(allocs > 10);

    for (uint64_t n = 1; n <= allocs + 3; n++) {
        mark_t m0 = mark();
        s = open_store(&l);
        mark_t m1 = mark();
        nomem = 0;
        gh_mem_fail_at(n);
        int ok = failure_batch(s, n * 100000, BATCH, &nomem);
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        assert_int_equal(ok + nomem, BATCH);
        assert_int_equal(nomem, fired ? 1 : 0);
        if (n <= allocs) /* the batch is deterministic: the n-th allocation happens */
            assert_true(fired);
        assert_consistent(s);
        gh_session_stats_t st = stats(s);
        uint64_t ended = 0;
        for (int r = 0; r < GH_END__COUNT; r++)
            ended += st.ended_total[r];
        assert_int_equal(st.created_total, (uint64_t)ok);
        assert_int_equal(st.active, st.created_total - ended);
        assert_int_equal(st.bytes, gh_mem_bytes(GH_MEM_SESSIONS) - m0.bytes);
        /* Still fully usable after the failure. */
        assert_int_equal(gh_session_create(s, 1, H(n * 100000 + BATCH).b, NULL, T0 + BATCH, NULL),
                         0);
        for (uint64_t u = 0; u < 1500; u++)
            assert_int_equal(gh_session_end_user(s, u, NULL, GH_END_REVOKED, NULL), 0);
        assert_int_equal(stats(s).active, 0);
        assert_at_mark(m1);
        gh_session_store_destroy(&s);
        assert_at_mark(m0);
    }
}

static void ending_never_allocates(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info[8];
    for (uint64_t i = 0; i < 5000; i++)
        create_ok(s, i % 50, i, T0 + (int64_t)i, NULL);
    uint64_t a0 = gh_mem_alloc_count();
    size_t n;
    assert_int_equal(lookup(s, 10, T0 + 6000, NULL), 0);
    assert_int_equal(gh_session_list_user(s, 3, T0 + 6000, info, 8, &n), 0);
    for (uint64_t i = 0; i < 2000; i++)
        assert_int_equal(end(s, i, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_end_user(s, 7, NULL, GH_END_REVOKED, &n), 0);
    assert_true(gh_session_expire(s, T0 + HOUR, SIZE_MAX) > 0);
    assert_int_equal(stats(s).active, 0);
    assert_int_equal(gh_mem_alloc_count(), a0);
    gh_session_store_destroy(&s);
}

/* ---- the client table ---- */

static gh_session_clients_stats_t clients(gh_session_store_t *s)
{
    gh_session_clients_stats_t cs;
    gh_session_memory_clients(s, &cs);
    return cs;
}

/* Sessions from one client share one entry; the entry goes with the last of them, and the
 * table's index with the last entry: not a byte stays. */
static void clients_are_shared_and_go_with_their_last_session(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    mark_t m1 = mark();
    assert_int_equal(clients(s).entries, 0);
    gh_session_client_t a = client_of(1), b = client_of(2);
    create_from(s, 1, 1, &a, T0, NULL);
    size_t one = clients(s).bytes;
    assert_true(one > 0);
    create_from(s, 2, 2, &a, T0, NULL); /* another user, the same browser behind the same NAT */
    create_from(s, 1, 3, &a, T0, NULL);
    assert_int_equal(clients(s).entries, 1);
    assert_int_equal(clients(s).bytes, one); /* shared: no new bytes */
    create_from(s, 1, 4, &b, T0, NULL);
    create_from(s, 3, 5, NULL, T0, NULL);
    assert_int_equal(clients(s).entries, 2);
    assert_consistent(s);
    /* a: three references. Two go; the entry stays for the third. */
    assert_int_equal(end(s, 1, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_end_user(s, 2, NULL, GH_END_REVOKED, NULL), 0);
    assert_int_equal(clients(s).entries, 2);
    assert_consistent(s);
    gh_session_info_t list[4];
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 1, T0, list, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_client(&list[0], b.ip, b.user_agent);
    assert_client(&list[1], a.ip, a.user_agent);
    assert_int_equal(end(s, 3, GH_END_LOGOUT), 0); /* a's last */
    assert_int_equal(clients(s).entries, 1);
    assert_consistent(s);
    assert_int_equal(gh_session_expire(s, T0 + HOUR, SIZE_MAX), 2); /* b's last, and the unknown */
    assert_int_equal(clients(s).entries, 0);
    assert_int_equal(clients(s).bytes, 0);
    assert_consistent(s);
    assert_at_mark(m1);
    /* Ids are reused: a table that fills and empties again and again stays put. */
    for (int round = 0; round < 3; round++) {
        for (uint64_t k = 0; k < 300; k++) {
            gh_session_client_t c = client_of(k);
            create_from(s, k, 1000 * (uint64_t)round + k, &c, T0 + HOUR, NULL);
        }
        assert_int_equal(clients(s).entries, 300);
        assert_consistent(s);
        for (uint64_t k = 0; k < 300; k++)
            assert_int_equal(end(s, 1000 * (uint64_t)round + (k * 7) % 300, GH_END_LOGOUT), 0);
        assert_at_mark(m1);
    }
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

/* A client whose entry is small: the entry bound binds before the byte bound. */
static gh_session_client_t short_client(uint64_t k)
{
    gh_session_client_t c;
    snprintf(c.ip, sizeof c.ip, "10.0.0.%u", (unsigned)k);
    snprintf(c.user_agent, sizeof c.user_agent, "agent %u", (unsigned)k);
    return c;
}

/* What a client sends is the key, so the table has bounds; past them a login still succeeds,
 * with the unknown client, and a freed entry makes room again. */
static void a_full_client_table_gives_the_unknown_client(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_clients = 4;
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info;
    for (uint64_t k = 0; k < 6; k++) {
        gh_session_client_t c = short_client(k);
        create_from(s, k, k, &c, T0, &info);
        if (k < 4)
            assert_client(&info, c.ip, c.user_agent);
        else
            assert_client(&info, "", "");
    }
    gh_session_clients_stats_t cs = clients(s);
    assert_int_equal(cs.entries, 4);
    assert_int_equal(cs.max_entries, 4);
    assert_int_equal(cs.full_total, 2);
    assert_true(cs.bytes <= cs.max_bytes);
    /* A known client is still shared at the bound. */
    gh_session_client_t c0 = short_client(0), c9 = short_client(9);
    create_from(s, 50, 50, &c0, T0, &info);
    assert_client(&info, c0.ip, c0.user_agent);
    assert_consistent(s);
    /* One entry goes; the next new client gets in. */
    assert_int_equal(end(s, 1, GH_END_LOGOUT), 0);
    create_from(s, 51, 51, &c9, T0, &info);
    assert_client(&info, c9.ip, c9.user_agent);
    assert_int_equal(clients(s).entries, 4);
    assert_consistent(s);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);

    /* The byte bound: 4 x 128 bytes hold fewer than four user agents of the longest kind. */
    s = open_store(&l);
    gh_session_client_t longest;
    snprintf(longest.ip, sizeof longest.ip, "2001:db8:ffff:ffff:ffff:ffff:ffff:1");
    int kept = 0;
    for (int k = 0; k < 4; k++) {
        memset(longest.user_agent, 'a' + k, GH_SESSION_UA_MAX);
        longest.user_agent[GH_SESSION_UA_MAX] = '\0';
        create_from(s, 1, 100 + (uint64_t)k, &longest, T0, &info);
        kept += info.client.user_agent[0] != '\0';
    }
    cs = clients(s);
    assert_true(kept >= 1 && kept < 4);
    assert_int_equal(cs.entries, (uint64_t)kept);
    assert_true(cs.bytes <= cs.max_bytes);
    assert_int_equal(stats(s).active, 4); /* every login went through */
    assert_consistent(s);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

/* A client entry never costs a session: over the session budget it is the unknown client,
 * and nothing is evicted for it. */
static void a_client_never_evicts_or_refuses(void **state)
{
    (void)state;
    for (int policy = 0; policy < 2; policy++) {
        gh_session_limits_t l = limits();
        l.policy = policy ? GH_POLICY_REFUSE : GH_POLICY_EVICT_IDLE;
        /* A budget a little above what the first chunk of records costs: the chunk holds 1,024
         * sessions, but only a few dozen client entries fit beside it. */
        gh_session_store_t *s = open_store(&l);
        create_ok(s, 1, 1, T0, NULL);
        l.budget_bytes = stats(s).bytes + 8192;
        gh_session_store_destroy(&s);
        s = open_store(&l);
        for (uint64_t k = 0; k < 300; k++) {
            gh_session_client_t c = client_of(k);
            create_from(s, k, k, &c, T0, NULL);
        }
        gh_session_clients_stats_t cs = clients(s);
        gh_session_stats_t st = stats(s);
        assert_int_equal(st.active, 300);
        assert_int_equal(st.ended_total[GH_END_EVICTED], 0);
        assert_true(cs.entries > 0 && cs.entries < 300);
        assert_int_equal(cs.full_total, 300 - cs.entries);
        assert_true(st.bytes <= l.budget_bytes);
        assert_consistent(s);
        gh_session_store_destroy(&s);
    }
}

/* The user's oldest session and the new one share a client: the reference is taken before the
 * eviction, so the entry stays (no free and make again) and nothing is allocated. */
static void a_cap_eviction_keeps_a_shared_client(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 1;
    gh_session_store_t *s = open_store(&l);
    gh_session_client_t c = client_of(3);
    create_from(s, 1, 1, &c, T0, NULL);
    size_t bytes = clients(s).bytes;
    uint64_t a0 = gh_mem_alloc_count();
    gh_session_info_t info;
    create_from(s, 1, 2, &c, T0 + 1, &info);
    assert_int_equal(gh_mem_alloc_count(), a0);
    assert_int_equal(stats(s).ended_total[GH_END_EVICTED], 1);
    assert_client(&info, c.ip, c.user_agent);
    assert_int_equal(clients(s).entries, 1);
    assert_int_equal(clients(s).bytes, bytes);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

/* Every allocation of a create with a new client failed in turn: the session is either created
 * (with its client, or with the unknown one when the client's entry or index failed) or refused
 * with GH_ENOMEM, and the store stays whole and returns to baseline. */
static void client_allocation_failures(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    for (uint64_t n = 1; n <= 8; n++) {
        mark_t m0 = mark();
        gh_session_store_t *s = open_store(&l);
        mark_t m1 = mark();
        gh_session_client_t c = client_of(n);
        gh_session_info_t info;
        hash_t h = H(n);
        gh_mem_fail_at(n);
        int rc = gh_session_create(s, 1, h.b, &c, T0, &info);
        gh_mem_fail_at(0);
        if (rc == 0)
            assert_true(info.client.user_agent[0] == '\0' ||
                        strcmp(info.client.user_agent, c.user_agent) == 0);
        else
            assert_int_equal(rc, GH_ENOMEM);
        assert_consistent(s);
        assert_int_equal(clients(s).entries, rc == 0 && info.client.user_agent[0] ? 1 : 0);
        assert_int_equal(gh_session_end_user(s, 1, NULL, GH_END_REVOKED, NULL), 0);
        assert_at_mark(m1);
        gh_session_store_destroy(&s);
        assert_at_mark(m0);
    }
}

/* ---- restore (persistence reload) ---- */

/* A restored session comes back with its client, cleaned and interned like a new one. */
static void restore_keeps_the_client(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t in, list[3];
    memset(&in, 0, sizeof in);
    snprintf(in.id, sizeof in.id, "AAAAAAAAAAAAAAAAAAAAAA");
    in.user_id = 9;
    in.created_at_ms = in.last_seen_at_ms = T0;
    in.expires_at_ms = T0 + HOUR;
    in.client = client_of(5);
    assert_int_equal(gh_session_memory_restore(s, H(1).b, &in, T0 + 1), 0);
    snprintf(in.id, sizeof in.id, "AAAAAAAAAAAAAAAAAAAAAQ");
    in.created_at_ms = in.last_seen_at_ms = T0 + 1;
    assert_int_equal(gh_session_memory_restore(s, H(2).b, &in, T0 + 1), 0);
    /* What a disk or another writer holds is cleaned again on the way in. */
    snprintf(in.id, sizeof in.id, "AAAAAAAAAAAAAAAAAAAAAg");
    in.created_at_ms = in.last_seen_at_ms = T0 + 2;
    snprintf(in.client.ip, sizeof in.client.ip, "2001:DB8::0:1");
    snprintf(in.client.user_agent, sizeof in.client.user_agent,
             "bad\x01"
             "agent");
    assert_int_equal(gh_session_memory_restore(s, H(3).b, &in, T0 + 2), 0);
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 9, T0 + 2, list, 3, &n), 0);
    assert_int_equal(n, 3);
    gh_session_client_t c = client_of(5);
    assert_client(&list[0], "2001:db8::1", "bad?agent");
    assert_client(&list[1], c.ip, c.user_agent);
    assert_client(&list[2], c.ip, c.user_agent);
    assert_int_equal(clients(s).entries, 2);
    assert_consistent(s);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

static void restore_in_any_order_keeps_deadlines(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.session_ttl_ms = 2 * HOUR;
    l.idle_ttl_ms = 10 * MIN;
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    mark_t m1 = mark();
    enum { N = 2000 };
    static int64_t deadline[N];
    int64_t now = T0 + 3 * HOUR;
    uint64_t rng = 99;
    int restored = 0;
    for (int i = 0; i < N; i++) {
        rng = mix(rng);
        gh_session_info_t in = {0};
        uint8_t raw[GH_SESSION_ID_RAW_LEN];
        memcpy(raw, &rng, 8);
        memcpy(raw + 8, &i, sizeof i);
        memset(raw + 8 + sizeof i, 0, sizeof raw - 8 - sizeof i);
        gh_base64url_encode(raw, sizeof raw, in.id);
        in.user_id = (uint64_t)i % 300;
        in.created_at_ms = now - (int64_t)(rng % (2 * HOUR));
        in.last_seen_at_ms = now - (int64_t)((rng >> 20) % (12 * MIN)); /* some already idle */
        if (in.last_seen_at_ms < in.created_at_ms)
            in.last_seen_at_ms = in.created_at_ms;
        in.expires_at_ms = in.created_at_ms + 2 * HOUR;
        int rc = gh_session_memory_restore(s, H((uint64_t)i).b, &in, now);
        int64_t idle = in.last_seen_at_ms + 10 * MIN;
        deadline[i] = idle < in.expires_at_ms ? idle : in.expires_at_ms;
        if (deadline[i] <= now) {
            assert_int_equal(rc, GH_EEXPIRED);
            deadline[i] = 0;
        } else {
            assert_int_equal(rc, 0);
            restored++;
        }
    }
    assert_int_equal(stats(s).active, restored);
    assert_int_equal(stats(s).created_total, 0);
    /* The sweep ends each exactly at its own deadline, whatever order they came in. */
    for (int64_t t = now; t <= now + 11 * MIN; t += 7 * SEC) {
        gh_session_expire(s, t, SIZE_MAX);
        assert_consistent(s);
        uint64_t expect = 0;
        for (int i = 0; i < N; i++)
            expect += deadline[i] > t;
        assert_int_equal(stats(s).active, expect);
    }
    assert_int_equal(stats(s).active, 0);
    assert_at_mark(m1);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

static void restore_applies_the_store_rules(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 2;
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t in = {0}, out;
    strcpy(in.id, "AAAAAAAAAAAAAAAAAAAAAA");
    in.user_id = 5;
    in.created_at_ms = T0 - HOUR;
    in.last_seen_at_ms = T0 - MIN;
    in.expires_at_ms = T0 + 48 * HOUR; /* longer than the configured 12 h: capped */
    assert_int_equal(gh_session_memory_restore(s, H(1).b, &in, T0), 0);
    assert_int_equal(lookup(s, 1, T0, &out), 0);
    assert_string_equal(out.id, in.id);
    assert_int_equal(out.created_at_ms, T0 - HOUR);
    assert_int_equal(out.expires_at_ms, T0 + 11 * HOUR);
    assert_int_equal(gh_session_memory_restore(s, H(1).b, &in, T0), GH_EEXISTS);
    /* the id survives the trip: the owner can revoke it by id */
    create_ok(s, 5, 2, T0 + 1, NULL);
    assert_int_equal(gh_session_end_by_id(s, 5, in.id, GH_END_REVOKED), 0);
    /* at the cap, a restored session older than all of the user's is the one that loses */
    create_ok(s, 5, 3, T0 + 2, NULL);
    in.created_at_ms = T0 - 2 * HOUR;
    strcpy(in.id, "BAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(gh_session_memory_restore(s, H(4).b, &in, T0 + 3), GH_ELIMIT);
    /* and one newer than their oldest evicts it */
    in.created_at_ms = T0 + 1;
    in.last_seen_at_ms = T0 + 1;
    assert_int_equal(gh_session_memory_restore(s, H(4).b, &in, T0 + 3), 0);
    assert_int_equal(lookup(s, 2, T0 + 3, NULL), GH_ENOTFOUND);
    /* past a deadline, or malformed: nothing stored */
    in.created_at_ms = T0 - 13 * HOUR;
    assert_int_equal(gh_session_memory_restore(s, H(5).b, &in, T0 + 3), GH_EEXPIRED);
    in.created_at_ms = T0 - HOUR;
    in.last_seen_at_ms = T0 - 31 * MIN;
    assert_int_equal(gh_session_memory_restore(s, H(5).b, &in, T0 + 3), GH_EEXPIRED);
    in.last_seen_at_ms = T0;
    strcpy(in.id, "short");
    assert_int_equal(gh_session_memory_restore(s, H(5).b, &in, T0 + 3), GH_EINVAL);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.ended_total[GH_END_EVICTED], 1);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

/* ---- names ---- */

static void end_reason_names(void **state)
{
    (void)state;
    assert_string_equal(gh_session_end_name(GH_END_LOGOUT), "logout");
    assert_string_equal(gh_session_end_name(GH_END_REVOKED), "revoked");
    assert_string_equal(gh_session_end_name(GH_END_IDLE), "idle");
    assert_string_equal(gh_session_end_name(GH_END_EXPIRED), "expired");
    assert_string_equal(gh_session_end_name(GH_END_EVICTED), "evicted");
    assert_string_equal(gh_session_end_name(GH_END__COUNT), "?");
}

/* ---- the end hook and the touched walk (what persistence builds on) ---- */

typedef struct {
    int n;
    hash_t hash[16];
    gh_session_end_t reason[16];
} ends_t;

static void record_end(void *ctx, const uint8_t h[GH_TOKEN_HASH_LEN], gh_session_end_t reason)
{
    ends_t *e = ctx;
    if (e->n < 16) {
        memcpy(e->hash[e->n].b, h, GH_TOKEN_HASH_LEN);
        e->reason[e->n] = reason;
    }
    e->n++;
}

static void end_hook_hears_every_end_with_its_reason(void **state)
{
    (void)state;
    ends_t e = {0};
    gh_session_limits_t l = limits();
    l.max_per_user = 2;
    l.idle_ttl_ms = 10 * SEC;
    l.on_end = record_end;
    l.on_end_ctx = &e;
    gh_session_store_t *s = NULL;
    assert_int_equal(gh_session_memory_open(&l, &s), 0);
    hash_t h[6];
    gh_session_info_t info[6];
    for (int i = 0; i < 6; i++)
        h[i] = H((uint64_t)i);
    assert_int_equal(gh_session_create(s, 1, h[0].b, NULL, T0, &info[0]), 0);
    assert_int_equal(gh_session_create(s, 1, h[1].b, NULL, T0 + 1, &info[1]), 0);
    assert_int_equal(e.n, 0);
    assert_int_equal(gh_session_create(s, 1, h[2].b, NULL, T0 + 2, &info[2]), 0); /* evicts h0 */
    assert_int_equal(e.n, 1);
    assert_memory_equal(e.hash[0].b, h[0].b, GH_TOKEN_HASH_LEN);
    assert_int_equal(e.reason[0], GH_END_EVICTED);
    assert_int_equal(gh_session_end(s, h[1].b, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_end_by_id(s, 1, info[2].id, GH_END_REVOKED), 0);
    assert_int_equal(gh_session_create(s, 2, h[3].b, NULL, T0 + 3, NULL), 0);
    assert_int_equal(gh_session_create(s, 2, h[4].b, NULL, T0 + 4, NULL), 0);
    size_t ended = 0;
    assert_int_equal(gh_session_end_user(s, 2, h[4].b, GH_END_REVOKED, &ended), 0);
    assert_int_equal(gh_session_expire(s, T0 + 4 + 10 * SEC, 100), 1); /* h4 idles out */
    assert_int_equal(e.n, 5);
    const int order[5] = {0, 1, 2, 3, 4};
    const gh_session_end_t why[5] = {GH_END_EVICTED, GH_END_LOGOUT, GH_END_REVOKED, GH_END_REVOKED,
                                     GH_END_IDLE};
    for (int i = 0; i < 5; i++) {
        assert_memory_equal(e.hash[i].b, h[order[i]].b, GH_TOKEN_HASH_LEN);
        assert_int_equal(e.reason[i], why[i]);
    }
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

static void touched_lists_recent_use_newest_first_and_pages(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    assert_int_equal(gh_session_memory_open(&l, &s), 0);
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(gh_session_create(s, i, H(i).b, NULL, T0, NULL), 0);
    /* Sessions 10..19 are used later, one ms apart. */
    for (uint64_t i = 10; i < 20; i++)
        assert_int_equal(gh_session_lookup(s, H(i).b, T0 + SEC + (int64_t)i, NULL), 0);
    gh_session_touch_t t[8];
    size_t n = gh_session_memory_touched(s, T0 + 1, INT64_MAX, t, 8);
    assert_int_equal(n, 8);
    for (size_t k = 0; k < n; k++) {
        assert_memory_equal(t[k].token_hash, H(19 - k).b, GH_TOKEN_HASH_LEN);
        assert_int_equal(t[k].last_seen_at_ms, T0 + SEC + 19 - (int64_t)k);
    }
    /* The next page starts at the oldest one returned (it may come twice). */
    n = gh_session_memory_touched(s, T0 + 1, t[7].last_seen_at_ms, t, 8);
    assert_int_equal(n, 3);
    assert_memory_equal(t[0].token_hash, H(12).b, GH_TOKEN_HASH_LEN);
    assert_memory_equal(t[2].token_hash, H(10).b, GH_TOKEN_HASH_LEN);
    /* Nothing used since then: nothing to flush. */
    assert_int_equal(gh_session_memory_touched(s, T0 + 2 * SEC, INT64_MAX, t, 8), 0);
    gh_session_store_destroy(&s);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    backend = &memory_backend;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_rejects_bad_limits),
        SESSION_SUITE_TESTS,
        cmocka_unit_test(cap_replacement_allocates_nothing),
        cmocka_unit_test(evictions_are_reported_with_user_and_session),
        cmocka_unit_test(budget_evict_idle_keeps_under_and_evicts_lru),
        cmocka_unit_test(budget_refuse_says_busy_and_changes_nothing),
        cmocka_unit_test(baseline_after_logout),
        cmocka_unit_test(baseline_after_revoke_by_id),
        cmocka_unit_test(baseline_after_revoke_all),
        cmocka_unit_test(baseline_after_password_change),
        cmocka_unit_test(baseline_after_user_deleted),
        cmocka_unit_test(baseline_after_idle),
        cmocka_unit_test(baseline_after_absolute_expiry),
        cmocka_unit_test(baseline_after_per_user_cap),
        cmocka_unit_test(baseline_after_budget_eviction),
        cmocka_unit_test(footprint_per_session),
        cmocka_unit_test(million_cycles_leave_nothing),
        cmocka_unit_test(allocation_failure_sweep),
        cmocka_unit_test(ending_never_allocates),
        cmocka_unit_test(clients_are_shared_and_go_with_their_last_session),
        cmocka_unit_test(a_full_client_table_gives_the_unknown_client),
        cmocka_unit_test(a_client_never_evicts_or_refuses),
        cmocka_unit_test(a_cap_eviction_keeps_a_shared_client),
        cmocka_unit_test(client_allocation_failures),
        cmocka_unit_test(restore_keeps_the_client),
        cmocka_unit_test(restore_in_any_order_keeps_deadlines),
        cmocka_unit_test(restore_applies_the_store_rules),
        cmocka_unit_test(end_reason_names),
        cmocka_unit_test(end_hook_hears_every_end_with_its_reason),
        cmocka_unit_test(touched_lists_recent_use_newest_first_and_pages),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
