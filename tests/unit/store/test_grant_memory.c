/*
 * test_grant_memory.c — the grant store in memory (grant_memory.c) and with its SQLite
 * persistence (grant_persist.c): the shared suite (grant_suite.h) against both, then what only
 * they promise — every byte of oidc_codes, oidc_tokens and oidc_consents comes back to the exact
 * baseline (100,000 abandoned codes expiring included), and families and consents survive a
 * reopen of grants.db while a revoked family, a rotation and a withdrawn consent hold.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "grant_suite.h"

static char data_dir[] = "/tmp/gh_grant_test_XXXXXX";
static bool persisted;

static int open_persist(const gh_grant_limits_t *l, gh_grant_store_t **out)
{
    return gh_grant_persist_open(data_dir, l, GH_DURABILITY_NORMAL, out);
}

static void reset_dir(void)
{
    char path[128];
    static const char *const files[] = {"grants.db", "grants.db-wal", "grants.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", data_dir, files[i]);
        unlink(path);
    }
}

static int use_memory(void **state)
{
    (void)state;
    backend.open = gh_grant_memory_open;
    backend.reset = NULL;
    persisted = false;
    return 0;
}

static int use_persist(void **state)
{
    (void)state;
    backend.open = open_persist;
    backend.reset = reset_dir;
    persisted = true;
    return 0;
}

typedef struct {
    size_t codes, tokens, consents;
} mark_t;

static mark_t mark(void)
{
    return (mark_t){gh_mem_bytes(GH_MEM_OIDC_CODES), gh_mem_bytes(GH_MEM_OIDC_TOKENS),
                    gh_mem_bytes(GH_MEM_OIDC_CONSENTS)};
}

static void back_to_baseline(void **state)
{
    (void)state;
    mark_t m0 = mark();
    gh_grant_limits_t l = glimits();
    l.max_families = 20000;
    gh_grant_store_t *s = gopen(&l);
    mark_t m1 = mark(); /* the empty store */
    uint8_t k[GH_GRANT_KEY_LEN];
    gh_grant_code_t c = a_code(1), out;
    for (uint64_t i = 0; i < 5000; i++) {
        fill(k, sizeof k, i, 5);
        assert_int_equal(gh_grant_put_code(s, k, &c, T0), 0);
        if (i % 2)
            assert_int_equal(gh_grant_take_code(s, k, T0, &out), 0); /* tombstones too */
    }
    for (uint64_t i = 0; i < 10000; i++) {
        gh_grant_family_t f = a_family(i, i % 3000, "wiki", "sessBBBBBBBBBBBBBBBBBB");
        assert_int_equal(gh_grant_family_create(s, &f, T0, NULL), 0);
        assert_int_equal(gh_grant_consent_put(s, i % 3000, i % 2 ? "wiki" : "grafana", 1, T0), 0);
    }
    assert_true(gh_mem_bytes(GH_MEM_OIDC_CODES) > m1.codes);
    assert_true(gh_mem_bytes(GH_MEM_OIDC_TOKENS) > m1.tokens);
    assert_true(gh_mem_bytes(GH_MEM_OIDC_CONSENTS) > m1.consents);
    /* codes by expiry, families by revocation of users and by expiry, consents by revocation */
    size_t n;
    for (uint64_t u = 0; u < 1500; u++)
        assert_int_equal(gh_grant_revoke_user(s, u, &n), 0);
    while (gh_grant_expire(s, T0 + 30 * DAY, 1000) > 0) {
    }
    for (uint64_t u = 0; u < 3000; u++)
        GH_IGNORE(gh_grant_consent_revoke(s, u, NULL));
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.codes, 0);
    assert_int_equal(st.families, 0);
    assert_int_equal(st.consents, 0);
    mark_t m2 = mark();
    assert_int_equal(m2.codes, m1.codes);
    assert_int_equal(m2.tokens, m1.tokens);
    assert_int_equal(m2.consents, m1.consents);
    gh_grant_destroy(&s);
    mark_t m3 = mark();
    assert_int_equal(m3.codes, m0.codes);
    assert_int_equal(m3.tokens, m0.tokens);
    assert_int_equal(m3.consents, m0.consents);
}

/* 100,000 abandoned authorizations: every code put, none taken, all expire: exact baseline. */
static void abandoned_codes_return_to_baseline(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    l.max_codes = 100000;
    gh_grant_store_t *s = gopen(&l);
    size_t base = gh_mem_bytes(GH_MEM_OIDC_CODES), base_objects = gh_mem_objects(GH_MEM_OIDC_CODES);
    uint8_t k[GH_GRANT_KEY_LEN];
    gh_grant_code_t c = a_code(1);
    for (uint64_t i = 0; i < 100000; i++) {
        fill(k, sizeof k, i, 6);
        assert_int_equal(gh_grant_put_code(s, k, &c, T0 + (int64_t)(i / 1000)), 0);
    }
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.codes, 100000);
    assert_int_equal(st.evicted, 0);
    size_t peak = gh_mem_bytes(GH_MEM_OIDC_CODES);
    assert_true(peak > base + 100000 * 100);
    /* the janitor's bounded steps */
    size_t total = 0, step;
    while ((step = gh_grant_expire(s, T0 + GH_GRANT_CODE_TTL_MS + 100, 20000)) > 0)
        total += step;
    assert_int_equal(total, 100000);
    assert_int_equal(gh_mem_bytes(GH_MEM_OIDC_CODES), base);
    assert_int_equal(gh_mem_objects(GH_MEM_OIDC_CODES), base_objects);
    gh_grant_destroy(&s);
}

static void survives_a_reopen(void **state)
{
    (void)state;
    if (!persisted)
        skip();
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *s = gopen(&l);
    int64_t now = gh_clock_now_ms();
    gh_grant_family_t kept = a_family(1, 5, "wiki", "sessCCCCCCCCCCCCCCCCCC");
    gh_grant_family_t rotated = a_family(2, 5, "wiki", "sessCCCCCCCCCCCCCCCCCC");
    gh_grant_family_t revoked = a_family(3, 5, "grafana", "sessDDDDDDDDDDDDDDDDDD");
    gh_grant_family_t reused = a_family(4, 6, "grafana", "sessEEEEEEEEEEEEEEEEEE");
    gh_grant_family_t other = a_family(5, 7, "tool", "sessFFFFFFFFFFFFFFFFFF");
    gh_grant_family_t *all[] = {&kept, &rotated, &revoked, &reused, &other};
    for (int i = 0; i < 5; i++) {
        all[i]->access_expires_at_ms = now + 600000;
        assert_int_equal(gh_grant_family_create(s, all[i], now, NULL), 0);
    }
    uint8_t r2[32], a2[32];
    fill(r2, 32, 9, 30);
    fill(a2, 32, 9, 31);
    assert_int_equal(gh_grant_family_rotate(s, rotated.id, rotated.refresh_hash, r2, a2,
                                            now + 900000, now, NULL),
                     0);
    assert_int_equal(gh_grant_family_revoke(s, revoked.id), 0);
    assert_int_equal(
        gh_grant_family_rotate(s, reused.id, r2 /* not its token */, r2, a2, now, now, NULL),
        GH_EREUSE);
    size_t n;
    assert_int_equal(gh_grant_revoke_session(s, "sessFFFFFFFFFFFFFFFFFF", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(gh_grant_consent_put(s, 5, "wiki", 3, now), 0);
    assert_int_equal(gh_grant_consent_put(s, 5, "grafana", 1, now), 0);
    assert_int_equal(gh_grant_consent_revoke(s, 5, "grafana"), 0);
    gh_grant_destroy(&s);

    /* reopen the same file (no reset) */
    assert_int_equal(open_persist(&l, &s), 0);
    gh_grant_family_t g;
    assert_int_equal(gh_grant_family_get(s, kept.id, now + 1, &g), 0);
    assert_int_equal(g.amr, GH_AMR_HWK);
    assert_int_equal(g.user_id, 5);
    assert_string_equal(g.session_id, "sessCCCCCCCCCCCCCCCCCC");
    assert_int_equal(gh_grant_family_check_access(s, kept.id, kept.access_hash, now + 1, &g), 0);
    assert_int_equal(gh_grant_family_check_access(s, rotated.id, a2, now + 1, &g), 0);
    assert_int_equal(g.generation, 1);
    assert_int_equal(g.access_expires_at_ms, now + 900000);
    assert_int_equal(
        gh_grant_family_rotate(s, rotated.id, rotated.refresh_hash, r2, a2, now, now + 2, NULL),
        GH_EREUSE); /* the spent token is still spent after the restart */
    assert_int_equal(gh_grant_family_get(s, revoked.id, now + 1, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, reused.id, now + 1, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, other.id, now + 1, &g), GH_ENOTFOUND);
    uint32_t sc;
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), 0);
    assert_int_equal(sc, 3);
    assert_int_equal(gh_grant_consent_get(s, 5, "grafana", &sc), GH_ENOTFOUND);
    gh_grant_destroy(&s);
    /* and the rotation's reuse above was written too */
    assert_int_equal(open_persist(&l, &s), 0);
    assert_int_equal(gh_grant_family_get(s, rotated.id, now + 3, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, kept.id, now + 3, &g), 0);
    gh_grant_destroy(&s);
}

/* What a bound revoked stays revoked after a restart: the rows go with the evictions. */
static void bounds_hold_across_a_reopen(void **state)
{
    (void)state;
    if (!persisted)
        skip();
    gh_grant_limits_t l = glimits();
    l.max_per_user = 2;
    l.max_families = 3;
    gh_grant_store_t *s = gopen(&l);
    int64_t now = gh_clock_now_ms();
    gh_grant_family_t f[4] = {a_family(1, 5, "wiki", "s"), a_family(2, 5, "wiki", "s"),
                              a_family(3, 5, "wiki", "s"), a_family(4, 6, "wiki", "s")};
    for (int i = 0; i < 4; i++)
        assert_int_equal(gh_grant_family_create(s, &f[i], now + i, NULL), 0);
    /* f1 went by the user's bound; f4 then fits (3 in all) */
    assert_int_equal(gh_grant_consent_put(s, 5, "a", 1, now), 0);
    assert_int_equal(gh_grant_consent_put(s, 5, "b", 1, now + 1), 0);
    assert_int_equal(gh_grant_consent_put(s, 5, "c", 1, now + 2), 0); /* "a" goes */
    gh_grant_destroy(&s);
    assert_int_equal(open_persist(&l, &s), 0);
    gh_grant_family_t g;
    uint32_t sc;
    assert_int_equal(gh_grant_family_get(s, f[0].id, now + 5, &g), GH_ENOTFOUND);
    for (int i = 1; i < 4; i++)
        assert_int_equal(gh_grant_family_get(s, f[i].id, now + 5, &g), 0);
    assert_int_equal(gh_grant_consent_get(s, 5, "a", &sc), GH_ENOTFOUND);
    assert_int_equal(gh_grant_consent_get(s, 5, "c", &sc), 0);
    /* evict-idle at max_families: the oldest anywhere (f2) goes, on disk too */
    gh_grant_family_t f5 = a_family(5, 7, "wiki", "s");
    assert_int_equal(gh_grant_family_create(s, &f5, now + 6, NULL), 0);
    gh_grant_destroy(&s);
    assert_int_equal(open_persist(&l, &s), 0);
    assert_int_equal(gh_grant_family_get(s, f[1].id, now + 7, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(s, f5.id, now + 7, &g), 0);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 3);
    gh_grant_destroy(&s);
}

typedef struct {
    gh_grant_store_t *s;
    uint64_t base;
    int ok;
} worker_t;

/* One thread's share: codes put and taken, families made, checked, rotated, half revoked. */
static void *worker(void *arg)
{
    worker_t *w = arg;
    w->ok = 1;
    for (uint64_t i = 0; i < 2000; i++) {
        uint64_t n = w->base + i;
        uint8_t k[GH_GRANT_KEY_LEN], r2[32], a2[32];
        fill(k, sizeof k, n, 70);
        fill(r2, 32, n, 71);
        fill(a2, 32, n, 72);
        gh_grant_code_t c = a_code(n % 50), out;
        gh_grant_family_t f = a_family(n, n % 50, "wiki", "sessTTTTTTTTTTTTTTTTTT"), g;
        if (gh_grant_put_code(w->s, k, &c, T0) != 0 || gh_grant_take_code(w->s, k, T0, &out) != 0 ||
            gh_grant_family_create(w->s, &f, T0, NULL) != 0 ||
            gh_grant_code_bind_family(w->s, k, f.id, T0) != 0 ||
            gh_grant_family_rotate(w->s, f.id, f.refresh_hash, r2, a2, T0 + 600000, T0, NULL) !=
                0 ||
            gh_grant_family_check_access(w->s, f.id, a2, T0 + 1, &g) != 0)
            w->ok = 0;
        if (i % 2 && gh_grant_family_revoke(w->s, f.id) != 0)
            w->ok = 0;
    }
    return NULL;
}

static void two_threads_at_once(void **state)
{
    (void)state;
    gh_grant_limits_t l = glimits();
    l.max_codes = 10000;
    l.max_families = 10000;
    l.max_per_user = 1000;
    gh_grant_store_t *s = gopen(&l);
    worker_t w[2] = {{s, 0, 0}, {s, 100000, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, worker, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(w[0].ok && w[1].ok);
    gh_grant_stats_t st;
    gh_grant_stats(s, &st);
    assert_int_equal(st.families, 2000);
    assert_int_equal(st.codes, 4000);
    size_t n = 0;
    assert_int_equal(gh_grant_revoke_session(s, "sessTTTTTTTTTTTTTTTTTT", &n), 0);
    assert_int_equal(n, 2000);
    gh_grant_destroy(&s);
}

/* A reload: the successor opens the file while the predecessor still writes; its takeover sees
 * what the predecessor granted and revoked since. */
static void a_successor_takes_over_what_changed(void **state)
{
    (void)state;
    if (!persisted)
        skip();
    gh_grant_limits_t l = glimits();
    gh_grant_store_t *pred = gopen(&l), *succ = NULL;
    int64_t now = gh_clock_now_ms();
    gh_grant_family_t f1 = a_family(1, 5, "wiki", "sessCCCCCCCCCCCCCCCCCC");
    gh_grant_family_t f2 = a_family(2, 5, "wiki", "sessCCCCCCCCCCCCCCCCCC");
    assert_int_equal(gh_grant_family_create(pred, &f1, now, NULL), 0);
    assert_int_equal(open_persist(&l, &succ), 0); /* the snapshot: f1 */
    assert_int_equal(gh_grant_family_create(pred, &f2, now + 1, NULL), 0);
    assert_int_equal(gh_grant_family_revoke(pred, f1.id), 0);
    assert_int_equal(gh_grant_consent_put(pred, 5, "wiki", 1, now + 2), 0);
    gh_grant_family_t g;
    uint32_t sc;
    assert_int_equal(gh_grant_family_get(succ, f1.id, now + 3, &g), 0); /* stale until takeover */
    assert_int_equal(gh_grant_takeover(succ), 0);
    assert_int_equal(gh_grant_family_get(succ, f1.id, now + 3, &g), GH_ENOTFOUND);
    assert_int_equal(gh_grant_family_get(succ, f2.id, now + 3, &g), 0);
    assert_int_equal(gh_grant_consent_get(succ, 5, "wiki", &sc), 0);
    gh_grant_stats_t st;
    gh_grant_stats(succ, &st);
    assert_int_equal(st.families, 1);
    gh_grant_destroy(&pred);
    gh_grant_destroy(&succ);
}

/* Every acknowledged write survives a kill -9: a child process grants, rotates and revokes, then
 * dies by SIGKILL with the store open (no destroy, no close); the parent opens the file. */
static void acknowledged_writes_survive_a_kill(void **state)
{
    (void)state;
    if (!persisted)
        skip();
    gh_grant_limits_t l = glimits();
    if (backend.reset)
        backend.reset();
    int64_t now = gh_clock_now_ms();
    gh_grant_family_t f1 = a_family(1, 5, "wiki", "sessCCCCCCCCCCCCCCCCCC");
    gh_grant_family_t f2 = a_family(2, 6, "wiki", "sessDDDDDDDDDDDDDDDDDD");
    uint8_t r2[32], a2[32];
    fill(r2, 32, 9, 40);
    fill(a2, 32, 9, 41);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        gh_grant_store_t *s = NULL;
        if (open_persist(&l, &s) != 0 || gh_grant_family_create(s, &f1, now, NULL) != 0 ||
            gh_grant_family_create(s, &f2, now, NULL) != 0 ||
            gh_grant_family_rotate(s, f1.id, f1.refresh_hash, r2, a2, now + 900000, now, NULL) !=
                0 ||
            gh_grant_family_revoke(s, f2.id) != 0 ||
            gh_grant_consent_put(s, 5, "wiki", 7, now) != 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    gh_grant_store_t *s = NULL;
    assert_int_equal(open_persist(&l, &s), 0);
    gh_grant_family_t g;
    assert_int_equal(gh_grant_family_check_access(s, f1.id, a2, now + 1, &g), 0);
    assert_int_equal(g.generation, 1);
    assert_int_equal(gh_grant_family_get(s, f2.id, now + 1, &g), GH_ENOTFOUND);
    uint32_t sc;
    assert_int_equal(gh_grant_consent_get(s, 5, "wiki", &sc), 0);
    assert_int_equal(sc, 7);
    gh_grant_destroy(&s);
}

int main(void)
{
    gh_mem_init();
    if (!mkdtemp(data_dir))
        return 1;
    const struct CMUnitTest memory[] = {GRANT_SUITE_TESTS, cmocka_unit_test(back_to_baseline),
                                        cmocka_unit_test(two_threads_at_once),
                                        cmocka_unit_test(abandoned_codes_return_to_baseline)};
    const struct CMUnitTest persist[] = {GRANT_SUITE_TESTS,
                                         cmocka_unit_test(back_to_baseline),
                                         cmocka_unit_test(survives_a_reopen),
                                         cmocka_unit_test(bounds_hold_across_a_reopen),
                                         cmocka_unit_test(two_threads_at_once),
                                         cmocka_unit_test(a_successor_takes_over_what_changed),
                                         cmocka_unit_test(acknowledged_writes_survive_a_kill)};
    int failed = cmocka_run_group_tests_name("grant store: memory", memory, use_memory, NULL);
    failed +=
        cmocka_run_group_tests_name("grant store: memory + grants.db", persist, use_persist, NULL);
    reset_dir();
    rmdir(data_dir);
    return failed;
}
