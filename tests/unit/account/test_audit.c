/*
 * test_audit.c — the account service's audit events, with no HTTP: each workflow's events appear
 * exactly once with the right actor, subject and outcome; throttled and failed logins go through
 * the bounded queue, which counts what it drops; pages stay stable while events arrive; retention
 * prunes the old and keeps the rest. Every test runs twice: on the SQLite user store in a
 * temporary directory, then on PostgreSQL (a real server from tests/support, a fresh schema per
 * test); the real password pool at libsodium's minimum cost.
 */
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "../../support/servers.h"
#include "account/account.h"
#include "account/audit.h"
#include "mem/mem.h"
#include "common/clock.h"

#define PASSWORD "correct horse battery"
#define HOUR (3600 * 1000LL)

static const gh_password_params_t cheap = {.memory = 8192, .ops = 1, .workers = 2, .queue = 8};

typedef struct {
    char dir[256];
    gh_user_store_t *users;
    gh_session_store_t *sessions;
    gh_password_pool_t *passwords;
    gh_ratelimit_t *ratelimit;
    uint8_t salt[16];
    uint64_t counted[GH_LOGIN__COUNT];
    gh_account_t a;
    gh_audit_t *audit;
} fixture_t;

static void count_login(void *ctx, gh_login_result_t result)
{
    fixture_t *f = ctx;
    f->counted[result]++;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static ts_server_t pg = {.kind = TS_POSTGRES};
static bool on_postgres; /* the second round */

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/gh-account-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    *state = f; /* the teardown frees it, whatever happens below */
    if (!mkdtemp(f->dir))
        return -1;
    gh_session_limits_t limits = {.session_ttl_ms = 12 * HOUR,
                                  .idle_ttl_ms = HOUR,
                                  .max_per_user = 10,
                                  .budget_bytes = 0,
                                  .policy = GH_POLICY_EVICT_IDLE};
    char url[256];
    gh_user_postgres_options_t po = {.url = url, .pool_size = 3, .timeout_ms = 5000};
    if (on_postgres ? ts_postgres_fresh_url(&pg, url, sizeof url) != 0 ||
                          gh_user_postgres_open(&po, &f->users) != 0
                    : gh_user_sqlite_open(f->dir, &f->users) != 0)
        return -1;
    if (gh_session_memory_open(&limits, &f->sessions) != 0 ||
        gh_password_pool_start(&cheap, &f->passwords) != 0)
        return -1;
    randombytes_buf(f->salt, sizeof f->salt);
    f->a = (gh_account_t){.users = f->users,
                          .sessions = f->sessions,
                          .passwords = f->passwords,
                          .ratelimit = NULL,
                          .registration_open = true,
                          .max_sessions_per_user = 10,
                          .operators = "",
                          .log_salt = f->salt,
                          .count_login = count_login,
                          .count_ctx = f};
    gh_audit_options_t ao = {
        .users = f->users, .node = "unit", .queue_cap = 64, .retention_ms = HOUR};
    if (gh_audit_open(&ao, &f->audit) != 0)
        return -1;
    f->a.audit = f->audit;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    gh_password_pool_stop(&f->passwords);
    gh_audit_close(&f->audit);
    gh_session_store_destroy(&f->sessions);
    gh_user_store_close(&f->users);
    gh_ratelimit_destroy(&f->ratelimit);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Throttles: `per_ip` attempts per minute per address, back-off after `account` failures. */
static void throttle(fixture_t *f, uint32_t per_ip, uint32_t account)
{
    gh_ratelimit_params_t p = {.ip_count = per_ip,
                               .ip_window_ms = 60000,
                               .account_threshold = account,
                               .account_base_delay_ms = 60000,
                               .account_max_delay_ms = 600000,
                               .account_forget_ms = HOUR,
                               .ip_slots = 64,
                               .account_slots = 64};
    assert_int_equal(gh_ratelimit_create(&p, &f->ratelimit), 0);
    f->a.ratelimit = f->ratelimit;
}

/* ---- the asynchronous step, as a handler's suspend and resume ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} waiter_t;

static void wake(void *arg)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Submits the job and waits for the pool's callback; false when it was not queued. */
static bool run_job(gh_account_t *a, gh_account_job_t *job)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    if (!gh_account_submit(a, job, wake, &w))
        return false;
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    return true;
}

static gh_account_client_t client_at(const char *ip)
{
    gh_account_client_t c;
    memset(&c, 0, sizeof c);
    assert_int_equal(gh_ip_parse(ip, strlen(ip), &c.ip), 0);
    gh_session_client_make(&c.client, ip, "unit-test/1.0", 13);
    c.via = "test";
    return c;
}

/* Open registration end to end: admission, begin, the hash, continue. */
static int do_register(fixture_t *f, const char *name, const char *pw, bool by_admin,
                       gh_user_t *out)
{
    gh_account_register_t st;
    int64_t retry = 0;
    gh_account_client_t c = client_at("192.0.2.1");
    int rc = by_admin ? 0 : gh_account_register_admit(&f->a, &c, &retry);
    if (rc == 0)
        rc = gh_account_register_begin(&f->a, &st, name, strlen(name), pw, strlen(pw), by_admin);
    if (rc != 0)
        return rc;
    (void)run_job(&f->a, &st.job);
    rc = gh_account_register_continue(&f->a, &st);
    if (rc == 0 && out)
        *out = st.user;
    return rc;
}

static uint64_t registered(fixture_t *f, const char *name)
{
    gh_user_t u = {0};
    assert_int_equal(do_register(f, name, PASSWORD, false, &u), 0);
    return u.id;
}

static int do_login(fixture_t *f, const char *name, const char *pw, const char *ip,
                    gh_account_login_t *st)
{
    gh_account_client_t c = client_at(ip);
    int rc = gh_account_login_begin(&f->a, st, name, strlen(name), pw, strlen(pw), &c);
    if (rc != 0)
        return rc;
    (void)run_job(&f->a, &st->job);
    return gh_account_login_continue(&f->a, st);
}

static int do_password(fixture_t *f, uint64_t user_id, const uint8_t keep[GH_TOKEN_HASH_LEN],
                       const char *cur, const char *next, gh_account_password_t *st)
{
    int rc =
        gh_account_password_begin(&f->a, st, user_id, keep, cur, strlen(cur), next, strlen(next));
    while (rc == 0 || rc == GH_ACCOUNT_PENDING) {
        (void)run_job(&f->a, &st->job);
        rc = gh_account_password_continue(&f->a, st);
        if (rc != GH_ACCOUNT_PENDING)
            break;
    }
    return rc;
}

static bool token_lives(fixture_t *f, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    gh_session_info_t info;
    return gh_session_lookup(f->sessions, hash, gh_clock_now_ms(), &info) == 0;
}

/* ---- reading the trail ---- */

/* Waits until the queue's writer has stored everything queued so far. */
static void drain(fixture_t *f)
{
    for (int i = 0; i < 2000; i++) {
        gh_audit_stats_t st;
        gh_audit_stats(f->audit, &st);
        if (st.queue_len == 0) {
            /* the writer may hold one popped event: a second empty look after a pause */
            usleep(5000);
            gh_audit_stats(f->audit, &st);
            if (st.queue_len == 0)
                return;
        }
        usleep(1000);
    }
    fail_msg("the audit queue did not drain");
}

/* Every event of the trail, newest first (at most cap). */
static size_t all_events(fixture_t *f, const char *type, uint64_t user, gh_audit_event_t *out,
                         size_t cap)
{
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    q.user_id = user;
    snprintf(q.type, sizeof q.type, "%s", type ? type : "");
    size_t n = 0;
    int64_t next = 0;
    assert_int_equal(gh_audit_read(f->audit, &q, out, cap, &n, &next), 0);
    return n;
}

/* Exactly one event of this type for this user: returned in *out. */
static void expect_one(fixture_t *f, const char *type, uint64_t user, const char *actor,
                       const char *outcome, gh_audit_event_t *out)
{
    static gh_audit_event_t evs[64];
    size_t n = all_events(f, type, user, evs, 64);
    if (n != 1)
        fail_msg("%zu events of type %s for user %llu, want 1", n, type, (unsigned long long)user);
    assert_string_equal(evs[0].actor, actor);
    assert_string_equal(evs[0].outcome, outcome);
    assert_string_equal(evs[0].node, "unit");
    if (out)
        *out = evs[0];
}

static void each_workflow_emits_its_event_once(void **state)
{
    fixture_t *f = *state;
    char self[32];
    uint64_t id = registered(f, "ann");
    snprintf(self, sizeof self, "user:%llu", (unsigned long long)id);
    expect_one(f, "user.created", id, self, "success", NULL);

    gh_account_login_t st, other;
    assert_int_equal(do_login(f, "ann", "wrong password!", "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(do_login(f, "nobody", "wrong password!", "203.0.113.5", &st), GH_EAUTH);
    drain(f);
    gh_audit_event_t ev;
    expect_one(f, "login.failed", id, "anonymous", "failure", &ev);
    assert_string_equal(ev.detail, "reason=invalid_credentials");
    assert_string_equal(ev.ip, "203.0.113.5");
    assert_string_equal(ev.user_agent, "unit-test/1.0");
    static gh_audit_event_t evs[64];
    assert_int_equal(all_events(f, "login.failed", 0, evs, 64), 2); /* user 0: every user */
    assert_int_equal(evs[0].user_id, 0);                            /* "nobody": no user */
    assert_string_equal(evs[0].detail, "reason=unknown_user");

    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
    expect_one(f, "login.succeeded", id, self, "success", &ev);
    assert_string_equal(ev.session_id, st.session.id);

    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.6", &other), 0);
    assert_int_equal(gh_account_sessions_revoke(&f->a, id, other.session.id), 0);
    expect_one(f, "session.revoked", id, self, "success", &ev);
    assert_string_equal(ev.session_id, other.session.id);
    assert_string_equal(ev.detail, "by=user");

    gh_account_password_t pw;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.6", &other), 0);
    assert_int_equal(do_password(f, id, st.token_hash, PASSWORD, "another good password", &pw), 0);
    expect_one(f, "password.changed", id, self, "success", &ev);
    assert_string_equal(ev.detail, "sessions_revoked=1");
    assert_int_equal(all_events(f, "session.revoked", id, evs, 64), 2);
    assert_string_equal(evs[0].detail, "by=password_change count=1");

    assert_int_equal(gh_account_logout(&f->a, st.token_hash), 0);
    expect_one(f, "logout", id, self, "success", &ev);
    assert_string_equal(ev.session_id, st.session.id);
    assert_int_equal(gh_account_logout(&f->a, st.token_hash), 0); /* gone: no second event */
    expect_one(f, "logout", id, self, "success", NULL);

    /* An administrator (the bearer token) disables, enables and deletes. */
    gh_account_t admin = f->a;
    snprintf(admin.actor, sizeof admin.actor, "token");
    gh_user_t u;
    assert_int_equal(do_login(f, "ann", "another good password", "203.0.113.7", &st), 0);
    assert_int_equal(gh_account_user_set_flags(&admin, id, -1, 1, &u), 0);
    assert_true(u.disabled);
    assert_false(token_lives(f, st.token_hash)); /* disabling ends every session */
    expect_one(f, "user.disabled", id, "token", "success", &ev);
    assert_string_equal(ev.detail, "sessions_revoked=1");
    expect_one(f, "admin.user_disable", id, "token", "success", NULL);
    /* A disabled user's login fails as a wrong password does; the trail says why. */
    assert_int_equal(do_login(f, "ann", "another good password", "203.0.113.7", &st), GH_EAUTH);
    drain(f);
    assert_int_equal(all_events(f, "login.failed", id, evs, 64), 2);
    assert_string_equal(evs[0].detail, "reason=disabled");
    assert_int_equal(gh_account_user_set_flags(&admin, id, -1, 0, &u), 0);
    expect_one(f, "user.enabled", id, "token", "success", NULL);
    assert_int_equal(gh_account_user_set_flags(&admin, id, -1, 0, &u), 0); /* no change */
    expect_one(f, "user.enabled", id, "token", "success", NULL);
    assert_int_equal(do_login(f, "ann", "another good password", "203.0.113.7", &st), 0);
    size_t revoked = 0;
    assert_int_equal(gh_account_user_delete(&admin, id, &revoked), 0);
    expect_one(f, "user.deleted", id, "token", "success", &ev);
    assert_string_equal(ev.detail, "username=ann sessions_revoked=1");
    expect_one(f, "admin.user_delete", id, "token", "success", NULL);
    assert_int_equal(all_events(f, "admin", id, evs, 64), 3); /* disable, enable, delete */
}

static void throttled_logins_are_audited(void **state)
{
    fixture_t *f = *state;
    throttle(f, 1, 10);
    registered(f, "bea"); /* registration admission took the address's one attempt */
    gh_account_login_t st;
    assert_int_equal(do_login(f, "bea", "wrong", "192.0.2.1", &st), GH_ELIMIT);
    drain(f);
    gh_audit_event_t ev;
    expect_one(f, "login.throttled", 0, "anonymous", "failure", &ev);
    assert_non_null(strstr(ev.detail, "limit=ip"));
    assert_string_equal(ev.ip, "192.0.2.1");
}

static void an_admin_unlocks_the_account_throttle(void **state)
{
    fixture_t *f = *state;
    throttle(f, 1000, 2); /* back-off after 2 failures */
    uint64_t id = registered(f, "cleo");
    gh_account_login_t st;
    for (int i = 0; i < 3; i++)
        (void)do_login(f, "cleo", "wrong password", "198.51.100.1", &st);
    assert_int_equal(do_login(f, "cleo", PASSWORD, "198.51.100.1", &st), GH_ELIMIT);
    gh_account_t admin = f->a;
    snprintf(admin.actor, sizeof admin.actor, "admin:7");
    bool was = false;
    assert_int_equal(gh_account_throttle_unlock(&admin, id, &was), 0);
    assert_true(was);
    assert_int_equal(do_login(f, "cleo", PASSWORD, "198.51.100.1", &st), 0); /* admitted */
    gh_audit_event_t ev;
    expect_one(f, "throttle.unlocked", id, "admin:7", "success", &ev);
    assert_string_equal(ev.detail, "was_locked=true");
    expect_one(f, "admin.throttle_unlock", id, "admin:7", "success", NULL);
    assert_int_equal(gh_account_throttle_unlock(&admin, 999999, &was), GH_ENOTFOUND);
}

static void pages_are_stable_while_events_arrive(void **state)
{
    fixture_t *f = *state;
    gh_audit_event_t ev;
    for (int i = 0; i < 25; i++) {
        gh_audit_event_init(&ev, GH_AUDIT_LOGOUT, GH_AUDIT_SUCCESS, 7, NULL);
        gh_audit_event_detail(&ev, "n=%d", i);
        assert_int_equal(gh_account_audit(&f->a, &ev), 0);
    }
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    gh_audit_event_t page[10];
    int seen[25] = {0}, total = 0;
    int64_t last_id = INT64_MAX;
    for (;;) {
        size_t n = 0;
        int64_t next = 0;
        assert_int_equal(gh_audit_read(f->audit, &q, page, 10, &n, &next), 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].id < last_id); /* newest first, never a repeat */
            last_id = page[i].id;
            int k = atoi(page[i].detail + 2);
            assert_true(k >= 0 && k < 25);
            seen[k]++;
            total++;
        }
        /* New events arrive between pages: they are newer than the cursor, never in the walk. */
        gh_audit_event_init(&ev, GH_AUDIT_LOGOUT, GH_AUDIT_SUCCESS, 7, NULL);
        gh_audit_event_detail(&ev, "n=new");
        assert_int_equal(gh_account_audit(&f->a, &ev), 0);
        if (!next)
            break;
        q.before_id = next;
    }
    assert_int_equal(total, 25);
    for (int k = 0; k < 25; k++)
        assert_int_equal(seen[k], 1);
}

static void retention_prunes_the_old_and_keeps_the_rest(void **state)
{
    fixture_t *f = *state;
    int64_t now = gh_clock_now_ms();
    gh_audit_event_t ev;
    for (int i = 0; i < 30; i++) {
        gh_audit_event_init(&ev, GH_AUDIT_LOGOUT, GH_AUDIT_SUCCESS, 9, NULL);
        ev.time_ms = i < 20 ? now - 2 * HOUR : now - HOUR / 2; /* retention is 1 h */
        assert_int_equal(gh_account_audit(&f->a, &ev), 0);
    }
    size_t removed = 0;
    assert_int_equal(gh_audit_prune(f->audit, now, 8, &removed), 0); /* bounded per step */
    assert_int_equal(removed, 8);
    assert_int_equal(gh_audit_prune(f->audit, now, 100, &removed), 0);
    assert_int_equal(removed, 12);
    assert_int_equal(gh_audit_prune(f->audit, now, 100, &removed), 0);
    assert_int_equal(removed, 0);
    static gh_audit_event_t evs[64];
    size_t n = all_events(f, NULL, 9, evs, 64);
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++)
        assert_true(evs[i].time_ms >= now - HOUR);
}

static void the_queue_is_bounded_and_counts_drops(void **state)
{
    fixture_t *f = *state;
    size_t before = gh_mem_bytes(GH_MEM_AUDIT);
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE, 0, NULL);
    const int flood = 20000;
    for (int i = 0; i < flood; i++) {
        gh_account_audit_queued(&f->a, &ev);
        gh_audit_stats_t st;
        gh_audit_stats(f->audit, &st);
        assert_true(st.queue_len <= st.queue_cap);
    }
    assert_int_equal(gh_mem_bytes(GH_MEM_AUDIT), before); /* a flood costs no memory */
    drain(f);
    gh_audit_stats_t st;
    gh_audit_stats(f->audit, &st);
    assert_true(st.dropped_total > 0);
    assert_int_equal(st.queue_cap, 64);
    /* every event is either stored or counted as dropped */
    gh_audit_close(&f->audit); /* drains what is left */
    gh_audit_options_t ao = {.users = f->users, .node = "unit", .queue_cap = 64};
    assert_int_equal(gh_audit_open(&ao, &f->audit), 0);
    f->a.audit = f->audit;
    static gh_audit_event_t evs[200];
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    snprintf(q.type, sizeof q.type, "login.failed");
    size_t stored = 0, n;
    int64_t next;
    do {
        assert_int_equal(gh_audit_read(f->audit, &q, evs, 200, &n, &next), 0);
        stored += n;
        q.before_id = next;
    } while (next);
    assert_int_equal(stored + st.dropped_total, (uint64_t)flood);
}

static void types_and_json(void **state)
{
    (void)state;
    assert_true(gh_audit_type_valid("login.failed"));
    assert_true(gh_audit_type_valid("admin.user_disable"));
    assert_false(gh_audit_type_valid("admin"));
    assert_false(gh_audit_type_valid("admin."));
    assert_false(gh_audit_type_valid("admin.X"));
    assert_false(gh_audit_type_valid("login.failed' OR 1=1 --"));
    assert_false(gh_audit_type_valid(""));
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE, 0, NULL);
    gh_audit_event_detail(&ev, "quote\" backslash\\ newline\n");
    ev.id = 12;
    char buf[1024];
    int n = gh_audit_event_json(&ev, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "\"id\":\"12\""));
    assert_non_null(strstr(buf, "\"user\":null"));
    assert_non_null(strstr(buf, "\"detail\":\"quote\\\" backslash\\\\ newline\\u000a\""));
    assert_int_equal(gh_audit_event_json(&ev, buf, 40), GH_ETOOBIG);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(each_workflow_emits_its_event_once),
        T(throttled_logins_are_audited),
        T(an_admin_unlocks_the_account_throttle),
        T(pages_are_stable_while_events_arrive),
        T(retention_prunes_the_old_and_keeps_the_rest),
        T(the_queue_is_bounded_and_counts_drops),
        cmocka_unit_test(types_and_json),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    int failed = cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
    if (ts_server_start(&pg) != 0)
        return 1;
    on_postgres = true;
    failed += cmocka_run_group_tests_name("postgres", tests, NULL, NULL);
    ts_server_cleanup(&pg);
    return failed;
}
