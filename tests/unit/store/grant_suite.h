/*
 * grant_suite.h — the grant store's behaviour (store/grant.h), written once and run against
 * every backend (test_grant_memory.c, test_grant_redis.c): a code is single-use and a replay
 * answers with the family it issued, a code ends at exactly 60 s, the bounds hold under both
 * policies, a rotation replaces both tokens and a spent refresh token ends the family, the
 * revocations by session, user and client, and consents. Time is injected through `now`.
 *
 * A test file defines `static grant_backend_t backend` (open with limits; reset clears the
 * server between tests, may be NULL) before including this header.
 */
#ifndef TEST_GRANT_SUITE_H
#define TEST_GRANT_SUITE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "store/grant.h"

#define T0 1700000000000LL
#define DAY (24LL * 3600 * 1000)

typedef struct {
    int (*open)(const gh_grant_limits_t *l, gh_grant_store_t **out);
    void (*reset)(void);
} grant_backend_t;

static grant_backend_t backend;

static gh_grant_limits_t glimits(void)
{
    return (gh_grant_limits_t){.max_codes = 1000,
                               .max_families = 1000,
                               .max_per_user = 100,
                               .refresh_ttl_ms = 30 * DAY,
                               .policy = GH_POLICY_EVICT_IDLE};
}

static gh_grant_store_t *gopen(const gh_grant_limits_t *l)
{
    if (backend.reset)
        backend.reset();
    gh_grant_store_t *s = NULL;
    assert_int_equal(backend.open(l, &s), 0);
    return s;
}

/* 32 bytes spread like a hash (splitmix64), distinct per (i, salt). */
static void fill(uint8_t *out, size_t n, uint64_t i, uint64_t salt)
{
    for (size_t w = 0; w * 8 < n; w++) {
        uint64_t z = i * 8 + w + salt * 0x1000003 + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(out + 8 * w, &z, n - 8 * w < 8 ? n - 8 * w : 8);
    }
}

static gh_grant_code_t a_code(uint64_t user)
{
    gh_grant_code_t c = {.user_id = user,
                         .scopes = GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_EMAIL,
                         .auth_time_ms = T0 - 5000,
                         .amr = GH_AMR_PWD | GH_AMR_OTP};
    snprintf(c.client_id, sizeof c.client_id, "wiki");
    snprintf(c.session_id, sizeof c.session_id, "sessAAAAAAAAAAAAAAAAAA");
    snprintf(c.code_challenge, sizeof c.code_challenge, "%s",
             "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    snprintf(c.nonce, sizeof c.nonce, "n-0S6_WzA2Mj");
    fill(c.redirect_hash, sizeof c.redirect_hash, user, 77);
    return c;
}

static gh_grant_family_t a_family(uint64_t i, uint64_t user, const char *client, const char *sid)
{
    gh_grant_family_t f = {.user_id = user,
                           .scopes = GH_OIDC_SCOPE_OPENID,
                           .amr = GH_AMR_HWK,
                           .auth_time_ms = T0 - 1000,
                           .access_expires_at_ms = T0 + 600000};
    fill(f.id, sizeof f.id, i, 1);
    fill(f.refresh_hash, sizeof f.refresh_hash, i, 2);
    fill(f.access_hash, sizeof f.access_hash, i, 3);
    snprintf(f.client_id, sizeof f.client_id, "%s", client);
    snprintf(f.session_id, sizeof f.session_id, "%s", sid);
    return f;
}

static void code_single_use_and_replay(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *s = gopen(&l);
    uint8_t k[GH_GRANT_KEY_LEN], other[GH_GRANT_KEY_LEN];
    fill(k, sizeof k, 1, 9);
    fill(other, sizeof other, 2, 9);
    gh_grant_code_t c = a_code(42), out;
    assert_int_equal(gh_grant_put_code(s, k, &c, T0), 0);
    assert_int_equal(gh_grant_put_code(s, k, &c, T0), GH_EEXISTS);
    assert_int_equal(gh_grant_take_code(s, other, T0, &out), GH_ENOTFOUND);
    assert_int_equal(gh_grant_take_code(s, k, T0 + 10, &out), 0);
    assert_string_equal(out.client_id, "wiki");
    assert_string_equal(out.session_id, "sessAAAAAAAAAAAAAAAAAA");
    assert_string_equal(out.code_challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    assert_string_equal(out.nonce, "n-0S6_WzA2Mj");
    assert_memory_equal(out.redirect_hash, c.redirect_hash, sizeof c.redirect_hash);
    assert_int_equal(out.user_id, 42);
    assert_int_equal(out.scopes, GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_EMAIL);
    assert_int_equal(out.auth_time_ms, T0 - 5000);
    assert_int_equal(out.amr, GH_AMR_PWD | GH_AMR_OTP);
    assert_int_equal(out.expires_at_ms, T0 + GH_GRANT_CODE_TTL_MS);
    /* a replay before the family is bound: GH_EREPLAY, no family */
    assert_int_equal(gh_grant_take_code(s, k, T0 + 20, &out), GH_EREPLAY);
    assert_false(out.has_family);
    assert_string_equal(out.client_id, "");
    /* the exchange binds its family; a replay then names it */
    gh_grant_family_t f = a_family(1, 42, "wiki", "sessAAAAAAAAAAAAAAAAAA");
    assert_int_equal(gh_grant_family_create(s, &f, T0 + 30, NULL), 0);
    assert_int_equal(gh_grant_code_bind_family(s, k, f.id, T0 + 30), 0);
    assert_int_equal(gh_grant_code_bind_family(s, other, f.id, T0 + 30), GH_ENOTFOUND);
    assert_int_equal(gh_grant_take_code(s, k, T0 + 40, &out), GH_EREPLAY);
    assert_true(out.has_family);
    assert_memory_equal(out.family_id, f.id, GH_GRANT_FAMILY_ID_LEN);
    assert_int_equal(gh_grant_family_revoke(s, out.family_id), 0);
    gh_grant_family_t g;
    assert_int_equal(gh_grant_family_get(s, f.id, T0 + 41, &g), GH_ENOTFOUND);
    /* the tombstone ends with the code's deadline */
    assert_int_equal(gh_grant_take_code(s, k, T0 + GH_GRANT_CODE_TTL_MS, &out), GH_ENOTFOUND);
    /* a nonce of 255 bytes travels whole; 256 is refused */
    gh_grant_code_t big = a_code(43);
    memset(big.nonce, 'n', GH_GRANT_NONCE_MAX);
    big.nonce[GH_GRANT_NONCE_MAX] = '\0';
    assert_int_equal(gh_grant_put_code(s, other, &big, T0), 0);
    assert_int_equal(gh_grant_take_code(s, other, T0, &out), 0);
    assert_int_equal(strlen(out.nonce), GH_GRANT_NONCE_MAX);
    gh_grant_destroy(&s);
}

static void code_expires_at_exactly_60s(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *s = gopen(&l);
    uint8_t a[GH_GRANT_KEY_LEN], b[GH_GRANT_KEY_LEN];
    fill(a, sizeof a, 10, 9);
    fill(b, sizeof b, 11, 9);
    gh_grant_code_t c = a_code(1), out;
    assert_int_equal(gh_grant_put_code(s, a, &c, T0), 0);
    assert_int_equal(gh_grant_put_code(s, b, &c, T0), 0);
    assert_int_equal(gh_grant_take_code(s, a, T0 + GH_GRANT_CODE_TTL_MS - 1, &out), 0);
    assert_int_equal(gh_grant_take_code(s, b, T0 + GH_GRANT_CODE_TTL_MS, &out), GH_ENOTFOUND);
    gh_grant_stats_t st;
    gh_grant_expire(s, T0 + GH_GRANT_CODE_TTL_MS, 1000);
    gh_grant_stats(s, &st);
    assert_int_equal(st.codes, 0);
    gh_grant_destroy(&s);
}

static void code_bound_under_both_policies(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    l.max_codes = 10;
    gh_grant_store_t *s = gopen(&l);
    gh_grant_code_t c = a_code(1), out;
    uint8_t k[GH_GRANT_KEY_LEN];
    for (uint64_t i = 0; i < 15; i++) {
        fill(k, sizeof k, 100 + i, 9);
        assert_int_equal(gh_grant_put_code(s, k, &c, T0 + (int64_t)i), 0);
    }
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.codes, 10);
    assert_int_equal(st.evicted, 5);
    fill(k, sizeof k, 100, 9); /* the oldest went */
    assert_int_equal(gh_grant_take_code(s, k, T0 + 20, &out), GH_ENOTFOUND);
    fill(k, sizeof k, 114, 9);
    assert_int_equal(gh_grant_take_code(s, k, T0 + 20, &out), 0);
    gh_grant_destroy(&s);

    l.policy = GH_POLICY_REFUSE;
    s = gopen(&l);
    for (uint64_t i = 0; i < 10; i++) {
        fill(k, sizeof k, 200 + i, 9);
        assert_int_equal(gh_grant_put_code(s, k, &c, T0), 0);
    }
    fill(k, sizeof k, 300, 9);
    assert_int_equal(gh_grant_put_code(s, k, &c, T0 + 1), GH_EBUSY);
    gh_grant_stats(s, &st);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.codes, 10);
    /* a taken code's tombstone still counts until its deadline; then room again */
    assert_int_equal(gh_grant_put_code(s, k, &c, T0 + GH_GRANT_CODE_TTL_MS), 0);
    gh_grant_destroy(&s);
}

static void family_rotation_and_reuse(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *s = gopen(&l);
    gh_grant_family_t f = a_family(1, 42, "wiki", "sessAAAAAAAAAAAAAAAAAA"), g;
    assert_int_equal(gh_grant_family_create(s, &f, T0, &g), 0);
    assert_int_equal(g.created_at_ms, T0);
    assert_int_equal(g.expires_at_ms, T0 + 30 * DAY);
    assert_int_equal(g.generation, 0);
    assert_int_equal(gh_grant_family_create(s, &f, T0, NULL), GH_EEXISTS);
    assert_int_equal(gh_grant_family_get(s, f.id, T0 + 1, &g), 0);
    assert_int_equal(g.user_id, 42);
    assert_int_equal(g.amr, GH_AMR_HWK);
    assert_string_equal(g.client_id, "wiki");
    assert_string_equal(g.session_id, "sessAAAAAAAAAAAAAAAAAA");
    /* the access token checks until its own deadline */
    assert_int_equal(gh_grant_family_check_access(s, f.id, f.access_hash, T0 + 599999, &g), 0);
    assert_int_equal(gh_grant_family_check_access(s, f.id, f.access_hash, T0 + 600000, &g),
                     GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_check_access(s, f.id, f.refresh_hash, T0 + 1, &g),
                     GH_ENOTFOUND);
    /* rotate: new refresh and access; the old access token is dead at once */
    uint8_t r2[32], a2[32], r3[32], a3[32];
    fill(r2, 32, 1, 20);
    fill(a2, 32, 1, 21);
    fill(r3, 32, 1, 22);
    fill(a3, 32, 1, 23);
    assert_int_equal(
        gh_grant_family_rotate(s, f.id, f.refresh_hash, r2, a2, T0 + 700000, T0 + 100, &g), 0);
    assert_int_equal(g.generation, 1);
    assert_memory_equal(g.refresh_hash, r2, 32);
    assert_int_equal(gh_grant_family_check_access(s, f.id, f.access_hash, T0 + 101, &g),
                     GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_check_access(s, f.id, a2, T0 + 101, &g), 0);
    assert_int_equal(g.access_expires_at_ms, T0 + 700000);
    /* the spent refresh token comes back: reuse, the family is gone, out says whose it was */
    memset(&g, 0, sizeof g);
    assert_int_equal(gh_grant_family_rotate(s, f.id, f.refresh_hash, r3, a3, T0 + 1, T0 + 200, &g),
                     GH_EREUSE);
    assert_int_equal(g.user_id, 42);
    assert_string_equal(g.client_id, "wiki");
    assert_int_equal(gh_grant_family_check_access(s, f.id, a2, T0 + 201, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_rotate(s, f.id, r2, r3, a3, T0 + 1, T0 + 202, &g),
                     GH_ENOTFOUND);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.reuse, 1);
    assert_int_equal(st.families, 0);
    /* the absolute lifetime */
    gh_grant_family_t h = a_family(2, 42, "wiki", "sessAAAAAAAAAAAAAAAAAA");
    assert_int_equal(gh_grant_family_create(s, &h, T0, NULL), 0);
    assert_int_equal(gh_grant_family_get(s, h.id, T0 + 30 * DAY - 1, &g), 0);
    assert_int_equal(gh_grant_family_get(s, h.id, T0 + 30 * DAY, &g), GH_ENOTFOUND);
    gh_grant_destroy(&s);
}

static void revocations_by_session_user_client(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *s = gopen(&l);
    const char *s1 = "sess1111111111111111AA", *s2 = "sess2222222222222222AA";
    gh_grant_family_t f[6] = {a_family(1, 1, "wiki", s1),
                              a_family(2, 1, "grafana", s1),
                              a_family(3, 1, "wiki", s2),
                              a_family(4, 2, "wiki", "sess3333333333333333AA"),
                              a_family(5, 2, "grafana", "sess3333333333333333AA"),
                              a_family(6, 3, "grafana", "sess4444444444444444AA")};
    for (int i = 0; i < 6; i++)
        assert_int_equal(gh_grant_family_create(s, &f[i], T0 + i, NULL), 0);
    gh_grant_family_t g;
    size_t n = 99;
    assert_int_equal(gh_grant_revoke_session(s, s1, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gh_grant_family_get(s, f[0].id, T0 + 10, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, f[1].id, T0 + 10, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, f[2].id, T0 + 10, &g), 0);
    assert_int_equal(gh_grant_revoke_session(s, s1, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_grant_revoke_user(s, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gh_grant_family_get(s, f[3].id, T0 + 10, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, f[4].id, T0 + 10, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_put(s, 3, "grafana", GH_OIDC_SCOPE_OPENID, T0), 0);
    assert_int_equal(gh_grant_consent_put(s, 3, "wiki", GH_OIDC_SCOPE_OPENID, T0), 0);
    assert_int_equal(gh_grant_revoke_client(s, "grafana", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gh_grant_family_get(s, f[5].id, T0 + 10, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, f[2].id, T0 + 10, &g), 0);
    uint32_t sc;
    assert_int_equal(gh_grant_consent_get(s, 3, "grafana", &sc), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_get(s, 3, "wiki", &sc), 0);
    assert_int_equal(gh_grant_family_revoke(s, f[2].id), 0);
    assert_int_equal(gh_grant_family_revoke(s, f[2].id), GH_ENOTFOUND);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 0);
    gh_grant_destroy(&s);
}

static void family_bounds(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    l.max_per_user = 3;
    l.max_families = 5;
    gh_grant_store_t *s = gopen(&l);
    gh_grant_family_t g;
    /* per user: the user's oldest is revoked */
    for (uint64_t i = 0; i < 4; i++) {
        gh_grant_family_t f = a_family(10 + i, 7, "wiki", "sess7777777777777777AA");
        assert_int_equal(gh_grant_family_create(s, &f, T0 + (int64_t)i, NULL), 0);
    }
    gh_grant_family_t first = a_family(10, 7, "wiki", "x");
    assert_int_equal(gh_grant_family_get(s, first.id, T0 + 10, &g), GH_ENOTFOUND);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 3);
    /* in all: the oldest anywhere goes (evict) */
    for (uint64_t i = 0; i < 3; i++) {
        gh_grant_family_t f = a_family(20 + i, 8 + i, "wiki", "sess8888888888888888AA");
        assert_int_equal(gh_grant_family_create(s, &f, T0 + 10 + (int64_t)i, NULL), 0);
    }
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 5);
    gh_grant_family_t second = a_family(11, 7, "wiki", "x");
    assert_int_equal(gh_grant_family_get(s, second.id, T0 + 20, &g), GH_ENOTFOUND);
    gh_grant_destroy(&s);
    /* refuse: GH_EBUSY, but a user at their own bound still makes room from their own */
    l.policy = GH_POLICY_REFUSE;
    s = gopen(&l);
    for (uint64_t i = 0; i < 5; i++) {
        gh_grant_family_t f = a_family(30 + i, i < 3 ? 9 : 10 + i, "wiki", "s");
        assert_int_equal(gh_grant_family_create(s, &f, T0 + (int64_t)i, NULL), 0);
    }
    gh_grant_family_t f = a_family(40, 99, "wiki", "s");
    assert_int_equal(gh_grant_family_create(s, &f, T0 + 10, NULL), GH_EBUSY);
    f = a_family(41, 9, "wiki", "s");
    assert_int_equal(gh_grant_family_create(s, &f, T0 + 10, NULL), 0);
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 5);
    assert_true(st.refused >= 1);
    gh_grant_destroy(&s);
}

static void consents(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    l.max_per_user = 2;
    gh_grant_store_t *s = gopen(&l);
    uint32_t sc = 0;
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_put(s, 5, "wiki", GH_OIDC_SCOPE_OPENID, T0), 0);
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), 0);
    assert_int_equal(sc, GH_OIDC_SCOPE_OPENID);
    assert_int_equal(
        gh_grant_consent_put(s, 5, "wiki", GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_PROFILE, T0 + 1),
        0);
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), 0);
    assert_int_equal(sc, GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_PROFILE);
    assert_int_equal(gh_grant_consent_get(s, 6, "wiki", &sc), GH_ENOTFOUND);
    /* at most max_per_user per user: the oldest given goes */
    assert_int_equal(gh_grant_consent_put(s, 5, "grafana", 1, T0 + 2), 0);
    assert_int_equal(gh_grant_consent_put(s, 5, "tool", 1, T0 + 3), 0);
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_get(s, 5, "grafana", &sc), 0);
    assert_int_equal(gh_grant_consent_revoke(s, 5, "grafana"), 0);
    assert_int_equal(gh_grant_consent_revoke(s, 5, "grafana"), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_put(s, 6, "wiki", 1, T0 + 4), 0);
    assert_int_equal(gh_grant_consent_revoke(s, 5, NULL), 0);
    assert_int_equal(gh_grant_consent_get(s, 5, "tool", &sc), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_get(s, 6, "wiki", &sc), 0);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.consents, 1);
    gh_grant_destroy(&s);
}

#define GRANT_SUITE_TESTS                                                                          \
    cmocka_unit_test(code_single_use_and_replay), cmocka_unit_test(code_expires_at_exactly_60s),   \
        cmocka_unit_test(code_bound_under_both_policies),                                          \
        cmocka_unit_test(family_rotation_and_reuse),                                               \
        cmocka_unit_test(revocations_by_session_user_client), cmocka_unit_test(family_bounds),     \
        cmocka_unit_test(consents)

#endif
