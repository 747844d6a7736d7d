/*
 * test_mfa.c — the second factor in the account service (account/mfa.c), driven directly with
 * no HTTP, on the memory session store, the SQLite user store and the memory pending table:
 * enrolment and confirmation, the password step making a pending login and no session, codes
 * computed here from the secret (auth/totp.h) accepted once, the fifth wrong step ending the
 * pending login, recovery codes, removal and the admin reset. The fixture is test_account.c's.
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
#include "auth/secretkey.h"
#include "auth/totp.h"
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
    gh_pending_store_t *pending;
    uint8_t key[GH_SECRET_KEY_LEN];
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
    if (gh_pending_memory_create(100, GH_POLICY_EVICT_IDLE, &f->pending) != 0)
        return -1;
    randombytes_buf(f->key, sizeof f->key);
    f->a.pending = f->pending;
    f->a.secret_key = f->key;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    gh_password_pool_stop(&f->passwords);
    gh_session_store_destroy(&f->sessions);
    gh_user_store_close(&f->users);
    gh_ratelimit_destroy(&f->ratelimit);
    gh_pending_destroy(&f->pending);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
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

static bool token_lives(fixture_t *f, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    gh_session_info_t info;
    return gh_session_lookup(f->sessions, hash, gh_clock_now_ms(), &info) == 0;
}

/* ---- register ---- */

/* A user with a confirmed TOTP factor: its secret (raw), the factor id and the recovery codes. */
typedef struct {
    uint64_t id, factor;
    uint8_t secret[GH_TOTP_SECRET_LEN];
    char codes[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
} enrolled_t;

static void code_at(const uint8_t *secret, int offset_s, char out[7])
{
    uint64_t step = (uint64_t)(gh_clock_now_ms() / 1000 + offset_s) / GH_TOTP_STEP_S;
    assert_int_equal(gh_totp_code(secret, GH_TOTP_SECRET_LEN, step, out), 0);
}

static void enrol(fixture_t *f, const char *name, enrolled_t *e)
{
    e->id = registered(f, name);
    gh_user_t u = {0};
    assert_int_equal(gh_user_get_by_id(f->users, e->id, &u), 0);
    gh_account_totp_enrol_t en;
    assert_int_equal(gh_account_totp_enrol(&f->a, &u, "phone", &en), 0);
    e->factor = en.factor.id;
    /* the secret is stored sealed, never as it was shown */
    gh_factor_t stored;
    assert_int_equal(gh_user_factor_get(f->users, e->id, e->factor, &stored), 0);
    assert_int_equal(stored.secret_len, GH_TOTP_SECRET_LEN + GH_SEAL_OVERHEAD);
    assert_int_equal(gh_secret_open(f->key, stored.secret, stored.secret_len, e->secret), 0);
    char b32[40];
    gh_totp_base32(e->secret, GH_TOTP_SECRET_LEN, b32, sizeof b32);
    assert_string_equal(b32, en.secret_b32);
    assert_null(memmem(stored.secret, stored.secret_len, e->secret, GH_TOTP_SECRET_LEN));
    assert_false(stored.confirmed);
    /* unconfirmed: still one step */
    gh_account_login_t l;
    assert_int_equal(do_login(f, name, PASSWORD, "192.0.2.9", &l), 0);
    assert_int_equal(l.next, GH_ACCOUNT_NEXT_DONE);
    char code[7];
    gh_factor_t confirmed;
    size_t n = 0;
    assert_int_equal(
        gh_account_totp_confirm(&f->a, e->id, e->factor, "000000x", 7, &confirmed, e->codes, &n),
        GH_ECODE);
    code_at(e->secret, 0, code);
    assert_int_equal(
        gh_account_totp_confirm(&f->a, e->id, e->factor, code, 6, &confirmed, e->codes, &n), 0);
    assert_int_equal(n, GH_RECOVERY_CODES);
    assert_true(confirmed.confirmed);
}

static void the_password_step_makes_a_pending_login_not_a_session(void **state)
{
    fixture_t *f = *state;
    enrolled_t e;
    enrol(f, "pat", &e);
    size_t before = 0;
    gh_session_stats_t st;
    gh_session_stats(f->sessions, &st);
    before = st.active;
    gh_account_login_t l;
    assert_int_equal(do_login(f, "pat", PASSWORD, "192.0.2.9", &l), 0);
    assert_int_equal(l.next, GH_ACCOUNT_NEXT_MFA);
    assert_int_equal(l.methods, GH_PENDING_TOTP | GH_PENDING_RECOVERY);
    assert_string_equal(l.token, "");
    gh_session_stats(f->sessions, &st);
    assert_int_equal(st.active, before); /* no session was made */
    uint8_t h[GH_TOKEN_HASH_LEN];
    assert_int_equal(gh_token_hash(l.pending, strlen(l.pending), h), 0);
    assert_false(token_lives(f, h)); /* the pending token is no session token */

    /* the code that confirmed the factor is spent; the next step's is accepted once */
    char code[7], pending[GH_TOKEN_LEN + 1];
    memcpy(pending, l.pending, sizeof pending);
    gh_account_client_t c = client_at("192.0.2.10");
    code_at(e.secret, 0, code);
    gh_account_mfa_proof_t p = {.method = GH_MFA_TOTP, .code = code, .code_len = 6};
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c), GH_ECODE);
    code_at(e.secret, 30, code);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c), 0);
    assert_true(token_lives(f, l.token_hash));
    assert_int_equal(l.user.id, e.id);
    assert_string_equal(l.session.client.ip, "192.0.2.10"); /* who finished it */
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c),
                     GH_EPENDING);
}

static void the_fifth_wrong_step_ends_it(void **state)
{
    fixture_t *f = *state;
    enrolled_t e;
    enrol(f, "quinn", &e);
    gh_account_login_t l;
    assert_int_equal(do_login(f, "quinn", PASSWORD, "192.0.2.9", &l), 0);
    char pending[GH_TOKEN_LEN + 1], code[7];
    memcpy(pending, l.pending, sizeof pending);
    gh_account_client_t c = client_at("192.0.2.9");
    code_at(e.secret, 30, code);
    char wrong[7] = "000000";
    if (strcmp(code, wrong) == 0)
        wrong[0] = '1';
    gh_account_mfa_proof_t bad = {.method = GH_MFA_TOTP, .code = wrong, .code_len = 6};
    for (int i = 0; i < GH_PENDING_MAX_FAILURES - 1; i++)
        assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &bad, &c),
                         GH_ECODE);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &bad, &c),
                     GH_EPENDING);
    gh_account_mfa_proof_t good = {.method = GH_MFA_TOTP, .code = code, .code_len = 6};
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &good, &c),
                     GH_EPENDING);
    gh_account_mfa_proof_t other = {.method = "sms", .code = code, .code_len = 6};
    assert_int_equal(do_login(f, "quinn", PASSWORD, "192.0.2.9", &l), 0);
    memcpy(pending, l.pending, sizeof pending);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &other, &c),
                     GH_EINVAL);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, "gh_x", 4, &good, &c), GH_EPENDING);
}

static void recovery_codes_removal_and_reset(void **state)
{
    fixture_t *f = *state;
    enrolled_t e;
    enrol(f, "rae", &e);
    gh_account_login_t l;
    gh_account_client_t c = client_at("192.0.2.9");
    char pending[GH_TOKEN_LEN + 1];
    gh_account_mfa_proof_t p = {.method = GH_MFA_RECOVERY, .code = e.codes[2], .code_len = 11};
    assert_int_equal(do_login(f, "rae", PASSWORD, "192.0.2.9", &l), 0);
    memcpy(pending, l.pending, sizeof pending);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c), 0);
    assert_int_equal(l.recovery_left, GH_RECOVERY_CODES - 1);
    uint8_t keep[GH_TOKEN_HASH_LEN];
    memcpy(keep, l.token_hash, sizeof keep);
    assert_int_equal(do_login(f, "rae", PASSWORD, "192.0.2.9", &l), 0);
    memcpy(pending, l.pending, sizeof pending);
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c), GH_ECODE);
    p.code = e.codes[3];
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &p, &c), 0);
    uint8_t other[GH_TOKEN_HASH_LEN];
    memcpy(other, l.token_hash, sizeof other);
    /* regenerating ends the other sessions and kills the old codes */
    char fresh[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
    size_t revoked = 0;
    assert_int_equal(gh_account_recovery_regenerate(&f->a, e.id, keep, fresh, &revoked), 0);
    assert_true(revoked >= 1);
    assert_false(token_lives(f, other));
    assert_true(token_lives(f, keep));
    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, 1 << 20);
    gh_account_factors_t list;
    assert_int_equal(gh_account_factors_list(&f->a, &pool, e.id, &list), 0);
    assert_int_equal(list.n, 1);
    assert_int_equal(list.recovery_left, GH_RECOVERY_CODES);
    assert_int_equal(list.recovery_used_at_ms, 0); /* the new set has none used */
    gh_pool_release(&pool);
    /* removing the last factor: one step again, the other sessions end */
    assert_int_equal(gh_account_factor_remove(&f->a, e.id, e.factor + 99, keep, &revoked),
                     GH_ENOTFOUND);
    assert_int_equal(gh_account_factor_remove(&f->a, e.id, e.factor, keep, &revoked), 0);
    assert_int_equal(do_login(f, "rae", PASSWORD, "192.0.2.9", &l), 0);
    assert_int_equal(l.next, GH_ACCOUNT_NEXT_DONE);
    /* the admin reset */
    enrolled_t g;
    enrol(f, "sam", &g);
    size_t removed = 0;
    assert_int_equal(gh_account_factors_reset(&f->a, g.id, &removed), 0);
    assert_int_equal(removed, 1);
    assert_int_equal(gh_account_factors_reset(&f->a, g.id + 1000, &removed), GH_ENOTFOUND);
    assert_int_equal(do_login(f, "sam", PASSWORD, "192.0.2.9", &l), 0);
    assert_int_equal(l.next, GH_ACCOUNT_NEXT_DONE);
}

/* The session remembers how it was signed in (its amr, for the ID token): the password alone,
 * the password and a TOTP code, the password and a recovery code — and a token check says so. */
static void a_session_records_how_it_was_signed_in(void **state)
{
    fixture_t *f = *state;
    gh_account_login_t l;
    gh_session_info_t info;
    registered(f, "plain");
    assert_int_equal(do_login(f, "plain", PASSWORD, "192.0.2.9", &l), 0);
    assert_int_equal(l.next, GH_ACCOUNT_NEXT_DONE);
    assert_int_equal(l.session.amr, GH_AMR_PWD);
    assert_int_equal(gh_session_lookup(f->sessions, l.token_hash, gh_clock_now_ms(), &info), 0);
    assert_int_equal(info.amr, GH_AMR_PWD);

    enrolled_t e;
    enrol(f, "sam", &e);
    gh_account_client_t c = client_at("192.0.2.9");
    char pending[GH_TOKEN_LEN + 1], code[7];
    assert_int_equal(do_login(f, "sam", PASSWORD, "192.0.2.9", &l), 0);
    memcpy(pending, l.pending, sizeof pending);
    code_at(e.secret, 30, code);
    gh_account_mfa_proof_t totp = {.method = GH_MFA_TOTP, .code = code, .code_len = 6};
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &totp, &c), 0);
    assert_int_equal(l.session.amr, GH_AMR_PWD | GH_AMR_OTP);
    assert_int_equal(gh_session_lookup(f->sessions, l.token_hash, gh_clock_now_ms(), &info), 0);
    assert_int_equal(info.amr, GH_AMR_PWD | GH_AMR_OTP);

    assert_int_equal(do_login(f, "sam", PASSWORD, "192.0.2.9", &l), 0);
    memcpy(pending, l.pending, sizeof pending);
    gh_account_mfa_proof_t rec = {.method = GH_MFA_RECOVERY, .code = e.codes[0], .code_len = 11};
    assert_int_equal(gh_account_mfa_finish(&f->a, &l, pending, strlen(pending), &rec, &c), 0);
    assert_int_equal(l.session.amr, GH_AMR_PWD | GH_AMR_RECOVERY);
    gh_session_info_t list[8];
    size_t n = 0;
    assert_int_equal(gh_session_list_user(f->sessions, e.id, gh_clock_now_ms(), list, 8, &n), 0);
    assert_true(n >= 2);
    assert_int_equal(list[0].amr, GH_AMR_PWD | GH_AMR_RECOVERY); /* newest first */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_password_step_makes_a_pending_login_not_a_session,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(the_fifth_wrong_step_ends_it, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_codes_removal_and_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(a_session_records_how_it_was_signed_in, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
