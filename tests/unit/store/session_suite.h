/*
 * session_suite.h — the session store's behaviour, one suite for every backend: a test binary
 * (test_session_memory.c, test_session_redis.c) sets `backend` and lists SESSION_SUITE_TESTS
 * among its own. Whatever a handler can observe through store/session.h is asserted here —
 * deadlines to the millisecond, revocation, listing, the per-user cap, a clock that steps back,
 * concurrent callers — and so holds for every backend alike. What only one backend promises
 * (the memory store's byte budget and restore; Redis's shared state across handles) lives in
 * that backend's own file.
 *
 * Time is injected through the `now` argument; nothing here reads a clock. Accounted memory is
 * asserted too: the memory store gives back every byte, and a Redis-backed store holds the same
 * bytes however many sessions exist.
 */
#ifndef GH_TESTS_UNIT_STORE_SESSION_SUITE_H
#define GH_TESTS_UNIT_STORE_SESSION_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthread.h>

#include "mem/mem.h"
#include "store/session.h"

typedef struct {
    const char *name;
    /* Opens a store with these limits against a backend that holds no sessions. */
    int (*open)(const gh_session_limits_t *limits, gh_session_store_t **out);
    /* Checks the store's internal invariants; NULL when the backend has no such check. */
    int (*check)(gh_session_store_t *s, const char **why);
    /* Empties the backend's shared state before each test (NULL: nothing outlives a store). */
    void (*reset)(void);
    uint64_t thread_ops; /* operations per thread in the concurrency test */
} session_backend_t;

static const session_backend_t *backend;

static int suite_setup(void **state)
{
    (void)state;
    if (backend->reset)
        backend->reset();
    return 0;
}

#define T0 1700000000000LL
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static gh_session_limits_t limits(void)
{
    return (gh_session_limits_t){.session_ttl_ms = 12 * HOUR,
                                 .idle_ttl_ms = 30 * MIN,
                                 .max_per_user = 100,
                                 .budget_bytes = 0,
                                 .policy = GH_POLICY_EVICT_IDLE};
}

/* Distinct, well-spread token hashes without the cost of BLAKE2b: the first 8 bytes are a
 * bijection of n (splitmix64), so no two n collide. */
static uint64_t mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct {
    uint8_t b[GH_TOKEN_HASH_LEN];
} hash_t;

static hash_t H(uint64_t n)
{
    hash_t h;
    for (int k = 0; k < 4; k++) {
        uint64_t w = k == 0 ? mix(n) : mix(n ^ ((uint64_t)k << 56));
        memcpy(h.b + 8 * k, &w, 8);
    }
    return h;
}

typedef struct {
    size_t bytes, objects;
} mark_t;

static mark_t mark(void)
{
    return (mark_t){gh_mem_bytes(GH_MEM_SESSIONS), gh_mem_objects(GH_MEM_SESSIONS)};
}

#define assert_at_mark(m)                                                                          \
    do {                                                                                           \
        assert_int_equal(gh_mem_bytes(GH_MEM_SESSIONS), (m).bytes);                                \
        assert_int_equal(gh_mem_objects(GH_MEM_SESSIONS), (m).objects);                            \
    } while (0)

static void assert_consistent(gh_session_store_t *s)
{
    const char *why = NULL;
    int rc = backend->check ? backend->check(s, &why) : 0;
    if (rc != 0)
        fail_msg("store inconsistent: %s", why);
}

static gh_session_stats_t stats(gh_session_store_t *s)
{
    gh_session_stats_t st;
    gh_session_stats(s, &st);
    return st;
}

static gh_session_store_t *open_store(const gh_session_limits_t *lim)
{
    gh_session_store_t *s = NULL;
    assert_int_equal(backend->open(lim, &s), 0);
    assert_non_null(s);
    return s;
}

/* Session n for user uid from `client` (NULL: unknown). */
static void create_from(gh_session_store_t *s, uint64_t uid, uint64_t n,
                        const gh_session_client_t *client, int64_t now, gh_session_info_t *info)
{
    hash_t h = H(n);
    int rc = gh_session_create(s, uid, h.b, client, now, info);
    if (rc != 0)
        fail_msg("create %llu: %s", (unsigned long long)n, gh_errname(rc));
}

static void create_ok(gh_session_store_t *s, uint64_t uid, uint64_t n, int64_t now,
                      gh_session_info_t *info)
{
    create_from(s, uid, n, NULL, now, info);
}

/* Client k of a made-up population: an address and a browser-like user agent per k. */
static gh_session_client_t client_of(uint64_t k)
{
    gh_session_client_t c;
    snprintf(c.ip, sizeof c.ip, "10.%u.%u.%u", (unsigned)(k >> 16 & 255), (unsigned)(k >> 8 & 255),
             (unsigned)(k & 255));
    snprintf(c.user_agent, sizeof c.user_agent,
             "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/%llu.0 Safari/537.36",
             (unsigned long long)k);
    return c;
}

static void assert_client(const gh_session_info_t *info, const char *ip, const char *ua)
{
    assert_true(info->has_client);
    assert_string_equal(info->client.ip, ip);
    assert_string_equal(info->client.user_agent, ua);
}

static int lookup(gh_session_store_t *s, uint64_t n, int64_t now, gh_session_info_t *info)
{
    hash_t h = H(n);
    return gh_session_lookup(s, h.b, now, info);
}

static int end(gh_session_store_t *s, uint64_t n, gh_session_end_t why)
{
    hash_t h = H(n);
    return gh_session_end(s, h.b, why);
}

/* ---- the suite ---- */

static void create_then_lookup(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t a, b;
    create_ok(s, 42, 1, T0, &a);
    assert_int_equal(strlen(a.id), GH_SESSION_ID_LEN);
    uint8_t raw[GH_SESSION_ID_RAW_LEN];
    size_t rawlen = 0;
    assert_int_equal(gh_base64url_decode(a.id, strlen(a.id), raw, sizeof raw, &rawlen), 0);
    assert_int_equal(rawlen, GH_SESSION_ID_RAW_LEN);
    assert_int_equal(a.user_id, 42);
    assert_int_equal(a.created_at_ms, T0);
    assert_int_equal(a.last_seen_at_ms, T0);
    assert_int_equal(a.expires_at_ms, T0 + 12 * HOUR);
    assert_int_equal(a.idle_expires_at_ms, T0 + 30 * MIN);

    assert_int_equal(lookup(s, 1, T0 + 5 * SEC, &b), 0);
    assert_string_equal(b.id, a.id);
    assert_int_equal(b.user_id, 42);
    assert_int_equal(b.created_at_ms, T0);
    assert_int_equal(b.last_seen_at_ms, T0 + 5 * SEC);
    assert_int_equal(b.idle_expires_at_ms, T0 + 5 * SEC + 30 * MIN);

    assert_int_equal(lookup(s, 2, T0 + 5 * SEC, &b), GH_ENOTFOUND);
    hash_t h = H(1);
    assert_int_equal(gh_session_create(s, 43, h.b, NULL, T0, NULL), GH_EEXISTS);

    gh_session_info_t c;
    create_ok(s, 42, 2, T0 + 6 * SEC, &c);
    assert_string_not_equal(c.id, a.id);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.created_total, 2);
    assert_int_equal(st.bytes, gh_mem_bytes(GH_MEM_SESSIONS) - m0.bytes);
    assert_int_equal(st.budget_bytes, 0);
    assert_consistent(s);
    gh_session_store_destroy(&s);
    assert_null(s);
    assert_at_mark(m0);
}

static void idle_deadline_slides_on_lookup(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info;
    create_ok(s, 1, 1, T0, NULL);
    int64_t t = T0;
    for (int i = 0; i < 5; i++) {
        t += 30 * MIN - 1; /* one millisecond before the idle deadline */
        assert_int_equal(lookup(s, 1, t, &info), 0);
        assert_int_equal(info.idle_expires_at_ms, t + 30 * MIN);
    }
    assert_int_equal(lookup(s, 1, t + 30 * MIN, &info), GH_ENOTFOUND);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.ended_total[GH_END_IDLE], 1);
    assert_int_equal(st.active, 0);
    gh_session_store_destroy(&s);
}

static void idle_expiry_via_lookup_and_expire(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    create_ok(s, 1, 1, T0, NULL);
    create_ok(s, 1, 2, T0 + 10, NULL);
    create_ok(s, 2, 3, T0 + 20, NULL);
    /* Exactly at the deadline a session is over; one millisecond before it is not. */
    assert_int_equal(gh_session_expire(s, T0 + 30 * MIN - 1, 100), 0);
    assert_int_equal(lookup(s, 1, T0 + 30 * MIN, NULL), GH_ENOTFOUND);  /* by lookup */
    assert_int_equal(gh_session_expire(s, T0 + 30 * MIN + 10, 100), 1); /* by the sweep */
    assert_int_equal(stats(s).active, 1);
    assert_int_equal(gh_session_expire(s, T0 + 30 * MIN + 20, 100), 1);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.ended_total[GH_END_IDLE], 3);
    assert_int_equal(st.ended_total[GH_END_EXPIRED], 0);
    gh_session_store_destroy(&s);
}

static void use_does_not_extend_the_absolute_deadline(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info;
    create_ok(s, 1, 1, T0, NULL); /* ended by lookup */
    create_ok(s, 1, 2, T0, NULL); /* ended by the sweep */
    int64_t t = T0;
    while (t + 20 * MIN < T0 + 12 * HOUR) {
        t += 20 * MIN;
        assert_int_equal(lookup(s, 1, t, NULL), 0);
        assert_int_equal(lookup(s, 2, t, &info), 0);
        assert_int_equal(info.expires_at_ms, T0 + 12 * HOUR);
        assert_int_equal(gh_session_expire(s, t, 100), 0);
    }
    /* The idle deadline is capped at the absolute one. */
    assert_int_equal(lookup(s, 2, T0 + 12 * HOUR - 1, &info), 0);
    assert_int_equal(info.idle_expires_at_ms, T0 + 12 * HOUR);
    assert_int_equal(gh_session_expire(s, T0 + 12 * HOUR - 1, 100), 0);
    assert_int_equal(lookup(s, 1, T0 + 12 * HOUR, NULL), GH_ENOTFOUND);
    assert_int_equal(gh_session_expire(s, T0 + 12 * HOUR, 100), 1);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 0);
    assert_int_equal(st.ended_total[GH_END_EXPIRED], 2);
    assert_int_equal(st.ended_total[GH_END_IDLE], 0);
    gh_session_store_destroy(&s);
}

static void expire_does_bounded_work_and_continues(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    for (int i = 0; i < 100; i++)
        create_ok(s, (uint64_t)i % 7, (uint64_t)i, T0 + i, NULL);
    int64_t t = T0 + 31 * MIN;
    assert_int_equal(gh_session_expire(s, t, 0), 0);
    assert_int_equal(gh_session_expire(s, t, 30), 30);
    assert_int_equal(stats(s).active, 70);
    assert_int_equal(gh_session_expire(s, t, 30), 30);
    assert_int_equal(gh_session_expire(s, t, 30), 30);
    assert_int_equal(gh_session_expire(s, t, 30), 10);
    assert_int_equal(gh_session_expire(s, t, 30), 0);
    assert_int_equal(stats(s).active, 0);
    gh_session_store_destroy(&s);
}

/* The janitor's promise: called every 100 ms, every session is gone within a second of its
 * deadline even if never presented again. A model tracks each session's deadline; after each
 * tick the store holds exactly the sessions the model says are alive. */
static void sweep_is_exact_under_random_use(void **state)
{
    (void)state;
    enum { N = 3000 };
    gh_session_limits_t l = limits();
    l.session_ttl_ms = 90 * SEC;
    l.idle_ttl_ms = 20 * SEC;
    gh_session_store_t *s = open_store(&l);
    static int64_t created[N], seen[N];
    static char alive[N];
    uint64_t rng = 12345;
    int64_t t = T0;
    int made = 0;
    for (int tick = 0; tick < 2000; tick++) {
        t += 100;
        for (int k = 0; k < 3 && made < N; k++, made++) {
            create_ok(s, mix((uint64_t)made) % 500, (uint64_t)made, t, NULL);
            created[made] = seen[made] = t;
            alive[made] = 1;
        }
        for (int k = 0; k < 5 && made > 0; k++) { /* presentations, some of dead sessions */
            rng = mix(rng);
            int i = (int)(rng % (uint64_t)made);
            int64_t deadline = seen[i] + l.idle_ttl_ms;
            if (created[i] + l.session_ttl_ms < deadline)
                deadline = created[i] + l.session_ttl_ms;
            int rc = lookup(s, (uint64_t)i, t, NULL);
            if (alive[i] && t < deadline) {
                assert_int_equal(rc, 0);
                seen[i] = t;
            } else {
                assert_int_equal(rc, GH_ENOTFOUND);
                alive[i] = 0;
            }
        }
        gh_session_expire(s, t, 1000);
        uint64_t expect = 0;
        for (int i = 0; i < made; i++) {
            int64_t deadline = seen[i] + l.idle_ttl_ms;
            if (created[i] + l.session_ttl_ms < deadline)
                deadline = created[i] + l.session_ttl_ms;
            if (alive[i] && t >= deadline)
                alive[i] = 0;
            expect += (uint64_t)alive[i];
        }
        assert_int_equal(stats(s).active, expect);
    }
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

static void revoke_one_and_by_id(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t a, b, c, d;
    create_ok(s, 7, 1, T0, &a);
    create_ok(s, 7, 2, T0 + 1, &b);
    create_ok(s, 7, 3, T0 + 2, &c);
    create_ok(s, 8, 4, T0 + 3, &d);

    assert_int_equal(end(s, 1, GH_END_LOGOUT), 0);
    assert_int_equal(end(s, 1, GH_END_LOGOUT), GH_ENOTFOUND);
    assert_int_equal(lookup(s, 1, T0 + 10, NULL), GH_ENOTFOUND);

    /* by public id: only the owner can, and nonsense ids are simply not found */
    assert_int_equal(gh_session_end_by_id(s, 8, b.id, GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(s, 7, d.id, GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(s, 7, "nope", GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(s, 7, "AAAAAAAAAAAAAAAAAAAAAB", GH_END_REVOKED),
                     GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(s, 7, NULL, GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(lookup(s, 2, T0 + 10, NULL), 0);
    assert_int_equal(gh_session_end_by_id(s, 7, b.id, GH_END_REVOKED), 0);
    assert_int_equal(lookup(s, 2, T0 + 10, NULL), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_by_id(s, 7, b.id, GH_END_REVOKED), GH_ENOTFOUND);
    assert_int_equal(lookup(s, 3, T0 + 10, NULL), 0);
    assert_int_equal(lookup(s, 4, T0 + 10, NULL), 0);

    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.ended_total[GH_END_LOGOUT], 1);
    assert_int_equal(st.ended_total[GH_END_REVOKED], 1);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

static void revoke_all_with_and_without_keep(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    for (uint64_t i = 0; i < 5; i++)
        create_ok(s, 7, i, T0 + (int64_t)i, NULL);
    create_ok(s, 8, 100, T0, NULL);
    size_t n = 99;
    hash_t keep = H(2); /* a middle one: neither newest nor oldest */
    assert_int_equal(gh_session_end_user(s, 7, keep.b, GH_END_REVOKED, &n), 0);
    assert_int_equal(n, 4);
    for (uint64_t i = 0; i < 5; i++)
        assert_int_equal(lookup(s, i, T0 + 10, NULL), i == 2 ? 0 : GH_ENOTFOUND);
    assert_int_equal(lookup(s, 100, T0 + 10, NULL), 0);
    assert_consistent(s);

    assert_int_equal(gh_session_end_user(s, 7, NULL, GH_END_REVOKED, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(lookup(s, 2, T0 + 10, NULL), GH_ENOTFOUND);
    assert_int_equal(gh_session_end_user(s, 7, NULL, GH_END_REVOKED, &n), 0);
    assert_int_equal(n, 0);
    /* keep names a session of another user: it is not the user's, so all of theirs go */
    create_ok(s, 9, 200, T0 + 20, NULL);
    hash_t other = H(100);
    assert_int_equal(gh_session_end_user(s, 9, other.b, GH_END_REVOKED, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(lookup(s, 100, T0 + 30, NULL), 0);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 1);
    assert_int_equal(st.ended_total[GH_END_REVOKED], 6);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

static void list_is_newest_first_and_live_only(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t made[4], got[10];
    for (int i = 0; i < 4; i++)
        create_ok(s, 7, (uint64_t)i, T0 + i * MIN, &made[i]);
    create_ok(s, 8, 50, T0, NULL);
    /* Using an old session does not make it newer: the list is by creation. */
    assert_int_equal(lookup(s, 0, T0 + 5 * MIN, NULL), 0);
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 7, T0 + 5 * MIN, got, 10, &n), 0);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(got[i].id, made[3 - i].id);
        assert_int_equal(got[i].user_id, 7);
    }
    assert_int_equal(got[3].last_seen_at_ms, T0 + 5 * MIN);
    assert_int_equal(gh_session_list_user(s, 7, T0 + 5 * MIN, got, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].id, made[3].id);
    assert_string_equal(got[1].id, made[2].id);
    assert_int_equal(gh_session_list_user(s, 99, T0 + 5 * MIN, got, 10, &n), 0);
    assert_int_equal(n, 0);
    /* Past its idle deadline a session is not listed, even before the sweep ends it. */
    assert_int_equal(gh_session_list_user(s, 7, T0 + 32 * MIN, got, 10, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].id, made[3].id);
    assert_string_equal(got[1].id, made[0].id);
    gh_session_store_destroy(&s);
}

static void per_user_cap_evicts_the_oldest(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 3;
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t made[6], got[10];
    create_ok(s, 8, 100, T0, NULL);
    for (int i = 0; i < 6; i++) {
        create_ok(s, 7, (uint64_t)i, T0 + i, &made[i]);
        if (i == 1) /* recently used, but still the oldest by creation */
            assert_int_equal(lookup(s, 0, T0 + i, NULL), 0);
    }
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 7, T0 + 10, got, 10, &n), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(got[i].id, made[5 - i].id);
    for (int i = 0; i < 6; i++)
        assert_int_equal(lookup(s, (uint64_t)i, T0 + 10, NULL), i >= 3 ? 0 : GH_ENOTFOUND);
    assert_int_equal(lookup(s, 100, T0 + 10, NULL), 0);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.active, 4);
    assert_int_equal(st.ended_total[GH_END_EVICTED], 3);
    assert_consistent(s);
    gh_session_store_destroy(&s);
}

static void clock_going_back_is_harmless(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    gh_session_info_t info;
    create_ok(s, 1, 1, T0 + 10 * SEC, NULL);
    /* a wall clock stepped back: the store keeps its own time from running backwards */
    create_ok(s, 1, 2, T0, &info);
    assert_int_equal(info.created_at_ms, T0 + 10 * SEC);
    assert_int_equal(lookup(s, 1, T0 - MIN, &info), 0);
    assert_int_equal(info.last_seen_at_ms, T0 + 10 * SEC);
    assert_consistent(s);
    assert_int_equal(gh_session_expire(s, T0 + 10 * SEC + 30 * MIN, 10), 2);
    gh_session_store_destroy(&s);
}

typedef struct {
    gh_session_store_t *s;
    uint64_t base;
    int failures;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    const uint64_t OPS = backend->thread_ops;
    for (uint64_t i = 0; i < OPS; i++) {
        uint64_t n = w->base + i, uid = w->base + i % 300;
        int64_t t = T0 + (int64_t)i;
        if (gh_session_create(w->s, uid, H(n).b, NULL, t, NULL) != 0)
            w->failures++;
        if (gh_session_lookup(w->s, H(n).b, t, NULL) != 0)
            w->failures++;
        if (i % 2 && gh_session_end(w->s, H(n).b, GH_END_LOGOUT) != 0)
            w->failures++;
        if (i % 1000 == 999) {
            size_t ended;
            if (gh_session_end_user(w->s, uid, NULL, GH_END_REVOKED, &ended) != 0)
                w->failures++;
            gh_session_expire(w->s, t, 100);
        }
    }
    return NULL;
}

static void two_threads_smoke(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    l.max_per_user = 0;
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    mark_t m1 = mark();
    worker_t w[2] = {{s, 0, 0}, {s, 1ull << 40, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(w[0].failures + w[1].failures, 0);
    assert_consistent(s);
    gh_session_stats_t st = stats(s);
    assert_int_equal(st.created_total, 2 * backend->thread_ops);
    assert_true(st.active > 0);
    assert_int_equal(gh_session_expire(s, T0 + 13 * HOUR, SIZE_MAX), st.active);
    assert_at_mark(m1);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

/* The client a session was made for comes back in listings (and from create), cleaned as
 * gh_session_client_make does; a token check does not copy it. */
static void clients_are_listed_not_looked_up(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    mark_t m0 = mark();
    gh_session_store_t *s = open_store(&l);
    gh_session_client_t a = client_of(1), b = client_of(2), hostile;
    memset(&hostile, 0, sizeof hostile);
    snprintf(hostile.ip, sizeof hostile.ip, "<script>");
    /* A control character, a right-to-left override and a lone continuation byte: cleaned
     * (each becomes '?'), never refused. */
    char ua[GH_SESSION_UA_MAX + 1];
    memset(ua, 'x', sizeof ua - 1);
    ua[GH_SESSION_UA_MAX] = '\0';
    memcpy(ua,
           "a\tb\xe2\x80\xae"
           "c\x80"
           "d",
           9);
    memcpy(hostile.user_agent, ua, sizeof ua);
    gh_session_info_t made, seen, list[4];
    create_from(s, 7, 1, &a, T0, &made);
    assert_client(&made, a.ip, a.user_agent);
    create_from(s, 7, 2, &b, T0 + 1, NULL);
    create_from(s, 7, 3, NULL, T0 + 2, NULL);
    create_from(s, 7, 4, &hostile, T0 + 3, &made);
    char want[GH_SESSION_UA_MAX + 1];
    memset(want, 'x', sizeof want - 1);
    memcpy(want, "a?b?c?d", 7);
    want[GH_SESSION_UA_MAX - 2] = '\0'; /* 9 bytes became 7 */
    assert_client(&made, "", want);
    /* The token check: no client, and it says so. */
    memset(&seen, 0x55, sizeof seen);
    assert_int_equal(lookup(s, 1, T0 + SEC, &seen), 0);
    assert_false(seen.has_client);
    assert_string_equal(seen.client.ip, "");
    assert_string_equal(seen.client.user_agent, "");
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 7, T0 + 2 * SEC, list, 4, &n), 0);
    assert_int_equal(n, 4);
    assert_client(&list[0], "", want);
    assert_client(&list[1], "", "");
    assert_client(&list[2], b.ip, b.user_agent);
    assert_client(&list[3], a.ip, a.user_agent);
    assert_consistent(s);
    assert_int_equal(gh_session_end_user(s, 7, NULL, GH_END_REVOKED, NULL), 0);
    assert_consistent(s);
    gh_session_store_destroy(&s);
    assert_at_mark(m0);
}

/* How a session was signed in (its amr) is what create was told, on lookup and list alike; a
 * plain create is a password login. */
static void amr_is_recorded(void **state)
{
    (void)state;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(&l);
    static const uint8_t kinds[] = {GH_AMR_PWD | GH_AMR_OTP, GH_AMR_HWK,
                                    GH_AMR_PWD | GH_AMR_RECOVERY, GH_AMR_PWD | GH_AMR_HWK};
    gh_session_info_t a, b;
    for (int i = 0; i < 4; i++) {
        hash_t h = H(10 + i);
        assert_int_equal(gh_session_create_amr(s, 77, h.b, NULL, kinds[i], T0 + i, &a), 0);
        assert_int_equal(a.amr, kinds[i]);
        assert_int_equal(lookup(s, 10 + i, T0 + 10, &b), 0);
        assert_int_equal(b.amr, kinds[i]);
    }
    create_ok(s, 77, 20, T0 + 20, &a);
    assert_int_equal(a.amr, GH_AMR_PWD);
    gh_session_info_t list[8];
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 77, T0 + 21, list, 8, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(list[0].amr, GH_AMR_PWD); /* newest first */
    assert_int_equal(list[1].amr, GH_AMR_PWD | GH_AMR_HWK);
    assert_int_equal(list[4].amr, GH_AMR_PWD | GH_AMR_OTP);
    gh_session_store_destroy(&s);
}

#define SESSION_SUITE_TEST(f) cmocka_unit_test_setup(f, suite_setup)
#define SESSION_SUITE_TESTS                                                                        \
    SESSION_SUITE_TEST(create_then_lookup), SESSION_SUITE_TEST(idle_deadline_slides_on_lookup),    \
        SESSION_SUITE_TEST(idle_expiry_via_lookup_and_expire),                                     \
        SESSION_SUITE_TEST(use_does_not_extend_the_absolute_deadline),                             \
        SESSION_SUITE_TEST(expire_does_bounded_work_and_continues),                                \
        SESSION_SUITE_TEST(sweep_is_exact_under_random_use),                                       \
        SESSION_SUITE_TEST(revoke_one_and_by_id),                                                  \
        SESSION_SUITE_TEST(revoke_all_with_and_without_keep),                                      \
        SESSION_SUITE_TEST(list_is_newest_first_and_live_only),                                    \
        SESSION_SUITE_TEST(per_user_cap_evicts_the_oldest),                                        \
        SESSION_SUITE_TEST(clock_going_back_is_harmless), SESSION_SUITE_TEST(two_threads_smoke),   \
        SESSION_SUITE_TEST(clients_are_listed_not_looked_up), SESSION_SUITE_TEST(amr_is_recorded)

#endif
