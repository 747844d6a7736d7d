/*
 * test_account.c — the account service driven directly, with no HTTP: every workflow's success
 * and each of its failure codes, on the memory session store and the SQLite user store in a
 * temporary directory. The argon2 steps run for real on a password pool at libsodium's minimum
 * cost (8 KiB, 1 pass), submitted and waited for the way a handler's suspend and resume do.
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

#include "account/account.h"
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
    if (gh_user_sqlite_open(f->dir, &f->users) != 0 ||
        gh_session_memory_open(&limits, &f->sessions) != 0 ||
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
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    gh_password_pool_stop(&f->passwords);
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
    gh_user_t u;
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

/* ---- register ---- */

static void register_creates_a_user(void **state)
{
    fixture_t *f = *state;
    gh_user_t u;
    assert_int_equal(do_register(f, "ann", PASSWORD, false, &u), 0);
    assert_true(u.id > 0);
    assert_string_equal(u.username, "ann");
    assert_string_equal(u.password_hash, ""); /* a result carries no hash */
    gh_user_t stored;
    assert_int_equal(gh_user_get_by_name(f->users, "ann", &stored), 0);
    assert_int_equal(stored.id, u.id);
    assert_non_null(strstr(stored.password_hash, "$argon2id$"));
}

static void register_refuses_what_it_must(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(do_register(f, "", PASSWORD, false, NULL), GH_EUSERNAME);
    assert_int_equal(do_register(f, "no spaces", PASSWORD, false, NULL), GH_EUSERNAME);
    assert_int_equal(do_register(f, "ann", "short", false, NULL), GH_EPASSWORD);
    assert_int_equal(do_register(f, "ann", PASSWORD, false, NULL), 0);
    assert_int_equal(do_register(f, "ann", PASSWORD, false, NULL), GH_EEXISTS);
    assert_int_equal(do_register(f, "ANN", PASSWORD, true, NULL), GH_EEXISTS); /* any case */
    f->a.registration_open = false;
    assert_int_equal(do_register(f, "bob", PASSWORD, false, NULL), GH_ECLOSED);
    assert_int_equal(do_register(f, "bob", PASSWORD, true, NULL), 0); /* admins still can */
}

static void register_cannot_claim_an_operator_name(void **state)
{
    fixture_t *f = *state;
    f->a.operators = "olga, 7";
    assert_int_equal(do_register(f, "olga", PASSWORD, false, NULL), GH_EEXISTS);
    assert_int_equal(do_register(f, "Olga", PASSWORD, false, NULL), GH_EEXISTS);
    assert_int_equal(do_register(f, "7", PASSWORD, false, NULL), 0); /* ids reserve no name */
    gh_user_t olga;
    assert_int_equal(do_register(f, "olga", PASSWORD, true, &olga), 0);
    assert_true(gh_account_is_operator(&f->a, &olga));
}

static void register_is_throttled_per_address(void **state)
{
    fixture_t *f = *state;
    throttle(f, 2, 0);
    gh_account_client_t c = client_at("198.51.100.9");
    int64_t retry = 0;
    assert_int_equal(gh_account_register_admit(&f->a, &c, &retry), 0);
    assert_int_equal(gh_account_register_admit(&f->a, &c, &retry), 0);
    assert_int_equal(gh_account_register_admit(&f->a, &c, &retry), GH_ELIMIT);
    assert_true(retry > 0);
    gh_account_client_t other = client_at("198.51.100.10");
    assert_int_equal(gh_account_register_admit(&f->a, &other, &retry), 0);
}

/* ---- log in ---- */

static void login_creates_a_session(void **state)
{
    fixture_t *f = *state;
    uint64_t id = registered(f, "ann");
    gh_account_login_t st;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
    assert_int_equal(st.next, GH_ACCOUNT_NEXT_DONE);
    assert_int_equal(st.user.id, id);
    assert_string_equal(st.user.password_hash, "");
    assert_int_equal(strncmp(st.token, "gh_", 3), 0);
    uint8_t hash[GH_TOKEN_HASH_LEN];
    assert_int_equal(gh_token_hash(st.token, strlen(st.token), hash), 0);
    assert_memory_equal(hash, st.token_hash, sizeof hash);
    assert_true(token_lives(f, hash));
    assert_string_equal(st.session.client.ip, "203.0.113.5");
    assert_string_equal(st.session.client.user_agent, "unit-test/1.0");
    assert_int_equal(f->counted[GH_LOGIN_SUCCESS], 1);
    /* A client that never got the token: the session goes. */
    gh_account_login_abandon(&f->a, &st);
    assert_false(token_lives(f, hash));
}

static void login_fails_alike_for_every_wrong_credential(void **state)
{
    fixture_t *f = *state;
    registered(f, "ann");
    gh_account_login_t st;
    assert_int_equal(do_login(f, "ann", "wrong password", "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(do_login(f, "nobody", PASSWORD, "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(do_login(f, "not a name!", PASSWORD, "203.0.113.5", &st), GH_EAUTH);
    char huge[GH_PASSWORD_MAX + 2];
    memset(huge, 'x', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(do_login(f, "ann", huge, "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(f->counted[GH_LOGIN_FAILURE], 4);
    assert_int_equal(f->counted[GH_LOGIN_SUCCESS], 0);
    /* Each of them was a real verification on the pool (the dummy hash for unknown users). */
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
}

static void login_is_throttled_and_success_gives_back(void **state)
{
    fixture_t *f = *state;
    registered(f, "ann");
    throttle(f, 3, 0);
    gh_account_login_t st;
    /* Successes give their attempt back: any number of them. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(do_login(f, "ann", "wrong password", "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), GH_ELIMIT);
    assert_true(st.retry_ms > 0);
    assert_int_equal(f->counted[GH_LOGIN_RATE_LIMITED], 1);
    /* Another address is not this one's budget. */
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.6", &st), 0);
}

static void login_backs_off_an_account(void **state)
{
    fixture_t *f = *state;
    registered(f, "ann");
    throttle(f, 0, 2);
    gh_account_login_t st;
    assert_int_equal(do_login(f, "ann", "wrong password", "203.0.113.5", &st), GH_EAUTH);
    assert_int_equal(do_login(f, "ann", "wrong password", "203.0.113.6", &st), GH_EAUTH);
    /* Locked for a minute, whatever the address and even with the right password. */
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.7", &st), GH_ELIMIT);
    assert_true(st.retry_ms > 0);
}

static void login_rehashes_an_outdated_hash(void **state)
{
    fixture_t *f = *state;
    gh_password_params_t old = cheap;
    old.ops = 2;
    char hash[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&old, PASSWORD, strlen(PASSWORD), hash), 0);
    gh_user_t u;
    assert_int_equal(gh_user_create(f->users, "old", hash, gh_clock_now_ms(), &u), 0);
    assert_non_null(strstr(hash, "t=2"));
    gh_account_login_t st;
    assert_int_equal(do_login(f, "old", PASSWORD, "203.0.113.5", &st), 0);
    gh_user_t after;
    assert_int_equal(gh_user_get_by_id(f->users, u.id, &after), 0);
    assert_non_null(strstr(after.password_hash, "t=1"));
    assert_int_equal(do_login(f, "old", PASSWORD, "203.0.113.5", &st), 0);
}

/* A full password queue: the login is refused as overloaded (never waited on), counted so, and
 * gives its throttle attempt back. */
static void login_overloaded_when_the_pool_is_full(void **state)
{
    fixture_t *f = *state;
    registered(f, "ann");
    gh_password_params_t slow = {.memory = 32 << 20, .ops = 3, .workers = 1, .queue = 1};
    gh_password_pool_t *pool = NULL;
    assert_int_equal(gh_password_pool_start(&slow, &pool), 0);
    f->a.passwords = pool;
    throttle(f, 4, 0);
    enum { N = 6 };
    gh_account_login_t st[N];
    waiter_t w[N];
    bool queued[N];
    int refused = -1;
    for (int i = 0; i < N; i++) {
        gh_account_client_t c = client_at("203.0.113.5");
        assert_int_equal(
            gh_account_login_begin(&f->a, &st[i], "ann", 3, PASSWORD, strlen(PASSWORD), &c), 0);
        w[i] = (waiter_t){PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
        queued[i] = gh_account_submit(&f->a, &st[i].job, wake, &w[i]);
        if (!queued[i]) {
            refused = i;
            break;
        }
    }
    assert_true(refused > 0);
    assert_int_equal(gh_account_login_continue(&f->a, &st[refused]), GH_EBUSY);
    assert_int_equal(f->counted[GH_LOGIN_OVERLOADED], 1);
    for (int i = 0; i < refused; i++) {
        pthread_mutex_lock(&w[i].lock);
        while (!w[i].done)
            pthread_cond_wait(&w[i].cond, &w[i].lock);
        pthread_mutex_unlock(&w[i].lock);
        assert_int_equal(gh_account_login_continue(&f->a, &st[i]), 0);
    }
    gh_password_pool_stop(&pool);
    f->a.passwords = f->passwords;
    /* Successes and the overloaded one gave their attempts back: the budget of 4 is whole. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(do_login(f, "ann", "wrong password", "203.0.113.5", &st[0]), GH_EAUTH);
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st[0]), GH_ELIMIT);
}

/* ---- the caller's session, sessions ---- */

static void logout_and_the_session_user(void **state)
{
    fixture_t *f = *state;
    uint64_t id = registered(f, "ann");
    gh_account_login_t st;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
    gh_user_t u;
    assert_int_equal(gh_account_session_user(&f->a, &st.session, st.token_hash, &u), 0);
    assert_int_equal(u.id, id);
    assert_int_equal(gh_account_logout(&f->a, st.token_hash), 0);
    assert_false(token_lives(f, st.token_hash));
    assert_int_equal(gh_account_logout(&f->a, st.token_hash), 0); /* already gone: fine */
    /* A session whose user was deleted behind the service's back ends when it is used. */
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &st), 0);
    assert_int_equal(gh_user_del(f->users, id), 0);
    assert_int_equal(gh_account_session_user(&f->a, &st.session, st.token_hash, &u), GH_ENOTFOUND);
    assert_false(token_lives(f, st.token_hash));
}

static void sessions_are_listed_and_revoked(void **state)
{
    fixture_t *f = *state;
    uint64_t ann = registered(f, "ann"), bob = registered(f, "bob");
    gh_account_login_t s[3], b;
    for (int i = 0; i < 3; i++)
        assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &s[i]), 0);
    assert_int_equal(do_login(f, "bob", PASSWORD, "203.0.113.5", &b), 0);
    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, 1 << 20);
    gh_account_sessions_t out;
    assert_int_equal(gh_account_sessions_list(&f->a, &pool, ann, false, &out), 0);
    assert_int_equal(out.n, 3);
    for (size_t i = 0; i < out.n; i++)
        assert_true(out.list[i].has_client);
    assert_int_equal(gh_account_sessions_list(&f->a, &pool, ann, true, &out), 0);
    assert_int_equal(out.n, 3);
    assert_int_equal(gh_account_sessions_list(&f->a, &pool, 999, true, &out), GH_ENOTFOUND);
    assert_int_equal(gh_account_sessions_list(&f->a, &pool, 999, false, &out), 0);
    assert_int_equal(out.n, 0);
    /* One by id: only the user's own. */
    assert_int_equal(gh_account_sessions_revoke(&f->a, ann, b.session.id), GH_ENOTFOUND);
    assert_true(token_lives(f, b.token_hash));
    assert_int_equal(gh_account_sessions_revoke(&f->a, ann, s[0].session.id), 0);
    assert_false(token_lives(f, s[0].token_hash));
    assert_int_equal(gh_account_sessions_revoke(&f->a, ann, s[0].session.id), GH_ENOTFOUND);
    /* All of them. */
    size_t n = 0;
    assert_int_equal(gh_account_sessions_revoke_all(&f->a, 999, true, &n), GH_ENOTFOUND);
    assert_int_equal(gh_account_sessions_revoke_all(&f->a, ann, false, &n), 0);
    assert_int_equal(n, 2);
    assert_false(token_lives(f, s[1].token_hash) || token_lives(f, s[2].token_hash));
    assert_int_equal(gh_account_sessions_revoke_all(&f->a, bob, true, &n), 0);
    assert_int_equal(n, 1);
    gh_pool_release(&pool);
}

/* ---- change the password ---- */

static void password_change_keeps_the_asking_session_only(void **state)
{
    fixture_t *f = *state;
    uint64_t id = registered(f, "ann");
    gh_account_login_t me, other;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &me), 0);
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.6", &other), 0);
    gh_account_password_t st;
    assert_int_equal(do_password(f, id, me.token_hash, PASSWORD, "a new password", &st), 0);
    assert_int_equal(st.revoked, 1);
    assert_true(token_lives(f, me.token_hash));
    assert_false(token_lives(f, other.token_hash));
    gh_account_login_t l;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &l), GH_EAUTH);
    assert_int_equal(do_login(f, "ann", "a new password", "203.0.113.5", &l), 0);
}

static void password_change_refuses_what_it_must(void **state)
{
    fixture_t *f = *state;
    uint64_t id = registered(f, "ann");
    gh_account_login_t me, other;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &me), 0);
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.6", &other), 0);
    gh_account_password_t st;
    assert_int_equal(do_password(f, id, me.token_hash, "not it at all", "a new password", &st),
                     GH_ECURRENT);
    assert_int_equal(do_password(f, id, me.token_hash, PASSWORD, "short", &st), GH_EPASSWORD);
    /* Nothing changed: the other session lives, the old password works. */
    assert_true(token_lives(f, other.token_hash));
    gh_account_login_t l;
    assert_int_equal(do_login(f, "ann", PASSWORD, "203.0.113.5", &l), 0);
    /* A user deleted behind the service's back (another process): refused, and the asking
     * session ends with its user. */
    uint64_t bob = registered(f, "bob");
    gh_account_login_t b;
    assert_int_equal(do_login(f, "bob", PASSWORD, "203.0.113.5", &b), 0);
    assert_int_equal(gh_user_del(f->users, bob), 0);
    assert_int_equal(do_password(f, bob, b.token_hash, PASSWORD, "a new password", &st), GH_EAUTH);
    assert_false(token_lives(f, b.token_hash));
    assert_true(token_lives(f, me.token_hash));
}

/* ---- users (admin) ---- */

static void users_are_listed_and_deleted(void **state)
{
    fixture_t *f = *state;
    uint64_t ann = registered(f, "ann"), bob = registered(f, "bob");
    gh_user_t list[4];
    size_t n = 0;
    assert_int_equal(gh_account_users_list(&f->a, 0, list, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gh_account_users_list(&f->a, ann, list, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, bob);
    gh_user_t u;
    assert_int_equal(gh_account_user_get(&f->a, bob, &u), 0);
    assert_string_equal(u.password_hash, "");
    assert_int_equal(gh_account_user_get(&f->a, 999, &u), GH_ENOTFOUND);
    gh_account_login_t s;
    assert_int_equal(do_login(f, "bob", PASSWORD, "203.0.113.5", &s), 0);
    size_t revoked = 0;
    assert_int_equal(gh_account_user_delete(&f->a, bob, &revoked), 0);
    assert_int_equal(revoked, 1);
    assert_false(token_lives(f, s.token_hash));
    assert_int_equal(gh_account_user_delete(&f->a, bob, &revoked), GH_ENOTFOUND);
    assert_int_equal(do_login(f, "bob", PASSWORD, "203.0.113.5", &s), GH_EAUTH);
}

/* ---- operators ---- */

static void operators_by_id_and_by_name(void **state)
{
    fixture_t *f = *state;
    uint64_t ann = registered(f, "ann");
    registered(f, "bob");
    char list[64];
    snprintf(list, sizeof list, " %llu , olga,  12345", (unsigned long long)ann);
    f->a.operators = list;
    gh_user_t u;
    assert_int_equal(gh_account_user_get(&f->a, ann, &u), 0);
    assert_true(gh_account_is_operator(&f->a, &u));
    assert_int_equal(gh_user_get_by_name(f->users, "bob", &u), 0);
    assert_false(gh_account_is_operator(&f->a, &u));
    /* olga and user 12345 do not exist. */
    assert_int_equal(gh_account_check_operators(&f->a), 2);
    assert_int_equal(do_register(f, "olga", PASSWORD, true, NULL), 0);
    assert_int_equal(gh_account_check_operators(&f->a), 1);
    f->a.operators = NULL;
    assert_int_equal(gh_account_check_operators(&f->a), 0);
    assert_false(gh_account_is_operator(&f->a, &u));
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(register_creates_a_user),
        T(register_refuses_what_it_must),
        T(register_cannot_claim_an_operator_name),
        T(register_is_throttled_per_address),
        T(login_creates_a_session),
        T(login_fails_alike_for_every_wrong_credential),
        T(login_is_throttled_and_success_gives_back),
        T(login_backs_off_an_account),
        T(login_rehashes_an_outdated_hash),
        T(login_overloaded_when_the_pool_is_full),
        T(logout_and_the_session_user),
        T(sessions_are_listed_and_revoked),
        T(password_change_keeps_the_asking_session_only),
        T(password_change_refuses_what_it_must),
        T(users_are_listed_and_deleted),
        T(operators_by_id_and_by_name),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
