/*
 * test_mfa.c — the second factor through the real binary (issue #18), with codes computed by a
 * real authenticator implementation (Debian's oathtool) from the secret of the enrolment URI:
 * enrol and confirm, the two-step login (202, a pending login that passes no token check, then
 * 201 exactly like a one-step login), a replayed code refused, five wrong codes ending the
 * pending login, recovery codes (single use, announced in the factor list), factor removal
 * needing the password, the admin reset (HTTP and `gatehouse user mfa-reset`), factors kept
 * across a restart, hostile bodies, the metrics, and the secret key file's start-up errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "../support/servers.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-tests"

typedef struct {
    ht_server_t srv;
    ht_response_t r;
} fixture_t;

static int setup(void **state)
{
    *state = calloc(1, sizeof(fixture_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    free(f);
    return rc;
}

#define EXPECT(r, call, want)                                                                      \
    do {                                                                                           \
        long got_ = (call);                                                                        \
        if (got_ != (want))                                                                        \
            fail_msg("%s: got %ld, want %d: %.600s", #call, got_, (int)(want), (r)->body);         \
    } while (0)
#define EXPECT_ERR(r, call, want, code)                                                            \
    do {                                                                                           \
        EXPECT(r, call, want);                                                                     \
        if (strcmp((r)->error_code, (code)) != 0)                                                  \
            fail_msg("%s: error code %s, want %s", #call, (r)->error_code, (code));                \
    } while (0)

typedef struct {
    long long user_id;
    char token[64];
    long long factor_id;
    char secret[64];
    char codes[10][16];
} user_t;

/* Registers name, logs in, enrols a TOTP factor (checking the enrolment body) and confirms it
 * with oathtool's code: the user then has one factor and 10 recovery codes. */
static void enrolled(fixture_t *f, const char *name, user_t *u)
{
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    memset(u, 0, sizeof *u);
    assert_int_equal(ht_register(s, name, PASSWORD, &u->user_id), 201);
    assert_int_equal(ht_login(s, name, PASSWORD, u->token, NULL), 201);
    /* without proof, or with the wrong password: refused */
    EXPECT_ERR(r, ht_json(s, "POST", "/v1/factors/totp", u->token, "{}", r), 400,
               "invalid_request");
    EXPECT_ERR(r,
               ht_json(s, "POST", "/v1/factors/totp", u->token,
                       "{\"current_password\":\"wrong password\"}", r),
               401, "invalid_credentials");
    EXPECT_ERR(
        r,
        ht_json(s, "POST", "/v1/factors/totp", NULL, "{\"current_password\":\"" PASSWORD "\"}", r),
        401, "unauthenticated");
    EXPECT(r,
           ht_json(s, "POST", "/v1/factors/totp", u->token,
                   "{\"current_password\":\"" PASSWORD "\",\"name\":\"phone\"}", r),
           201);
    char uri[512], svg[16];
    assert_true(ht_jint(r, "id", &u->factor_id));
    assert_true(ht_jstr(r, "secret", u->secret, sizeof u->secret));
    assert_true(ht_jstr(r, "otpauth_uri", uri, sizeof uri));
    assert_true(ht_jstr(r, "qr_svg", svg, sizeof svg) || strstr(r->body, "\"qr_svg\":\"<svg"));
    assert_non_null(strstr(r->body, "\"qr_svg\":\"<svg"));
    assert_int_equal(strlen(u->secret), 32);
    char want[256];
    snprintf(want, sizeof want, "otpauth://totp/Gatehouse:%s?secret=%s&issuer=Gatehouse", name,
             u->secret);
    assert_true(strncmp(uri, want, strlen(want)) == 0);
    /* inactive until confirmed: a login is still one step */
    assert_int_equal(ht_login(s, name, PASSWORD, NULL, NULL), 201);
    char path[128], body[64], code[7];
    snprintf(path, sizeof path, "/v1/factors/totp/%lld/confirm", u->factor_id);
    EXPECT_ERR(r, ht_json(s, "POST", path, u->token, "{\"code\":\"12345\"}", r), 401,
               "invalid_code");
    EXPECT_ERR(r, ht_json(s, "POST", path, u->token, "{\"code\":12345}", r), 400,
               "invalid_request");
    ht_totp(u->secret, -600, code); /* ten minutes old */
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    EXPECT_ERR(r, ht_json(s, "POST", path, u->token, body, r), 401, "invalid_code");
    ht_totp(u->secret, 0, code);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    EXPECT(r, ht_json(s, "POST", path, u->token, body, r), 200);
    bool confirmed = false;
    assert_true(ht_jbool(r, "factor.confirmed", &confirmed) && confirmed);
    assert_int_equal(ht_jsize(r, "recovery_codes"), 10);
    for (int i = 0; i < 10; i++) {
        char p[32];
        snprintf(p, sizeof p, "recovery_codes.%d", i);
        assert_true(ht_jstr(r, p, u->codes[i], sizeof u->codes[i]));
        assert_int_equal(strlen(u->codes[i]), 11);
    }
}

/* POST /v1/sessions for a user with a factor: 202 with a pending token. */
static void pending_login(fixture_t *f, const char *name, char pending[64])
{
    ht_response_t *r = &f->r;
    EXPECT(r,
           ht_json(&f->srv, "POST", "/v1/sessions", NULL,
                   "{\"username\":\"" PASSWORD "\",\"password\":\"x\"}", r),
           401); /* (a wrong login is still 401) */
    char body[256];
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", name);
    EXPECT(r, ht_json(&f->srv, "POST", "/v1/sessions", NULL, body, r), 202);
    bool b = false;
    assert_true(ht_jbool(r, "mfa_required", &b) && b);
    assert_true(ht_jstr(r, "pending", pending, 64));
    assert_true(ht_is_token(pending));
    char exp[64];
    time_t t = 0;
    assert_true(ht_jstr(r, "expires_at", exp, sizeof exp) && ht_parse_time(exp, &t));
    assert_true(t > time(NULL) + 240 && t <= time(NULL) + 301);
    assert_non_null(strstr(r->body, "\"methods\":[\"totp\",\"recovery_code\"]"));
    assert_false(ht_jhas(r, "token"));
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
}

static long finish(fixture_t *f, const char *pending, const char *method, const char *code)
{
    char body[256];
    snprintf(body, sizeof body, "{\"pending\":\"%s\",\"method\":\"%s\",\"code\":\"%s\"}", pending,
             method, code);
    return ht_json(&f->srv, "POST", "/v1/sessions/mfa", NULL, body, &f->r);
}

static void two_step_login_with_an_authenticator(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(s, NULL), 0);
    user_t u;
    enrolled(f, "alice", &u);
    EXPECT(r, ht_get(s, "/v1/factors", u.token, r), 200);
    long long left = 0;
    assert_true(ht_jint(r, "recovery_codes_left", &left) && left == 10);
    assert_int_equal(ht_jsize(r, "factors"), 1);
    char type[16];
    assert_true(ht_jstr(r, "factors.0.type", type, sizeof type));
    assert_string_equal(type, "totp");
    assert_null(strstr(r->body, u.secret)); /* the secret is shown once, at enrolment */

    char pending[64], code[7];
    pending_login(f, "alice", pending);
    /* the pending login is no session: no token check passes with it */
    EXPECT_ERR(r, ht_get(s, "/v1/session", pending, r), 401, "unauthenticated");
    EXPECT(r, ht_get(s, "/v1/auth", pending, r), 401);
    EXPECT_ERR(r, ht_get(s, "/v1/factors", pending, r), 401, "unauthenticated");
    /* the code that confirmed the factor was used: a replay is refused */
    ht_totp(u.secret, 0, code);
    EXPECT_ERR(r, finish(f, pending, "totp", code), 401, "invalid_code");
    /* the next step's code (within the ±1 step window) is accepted, once */
    ht_totp(u.secret, 30, code);
    EXPECT(r, finish(f, pending, "totp", code), 201);
    char token[64];
    assert_true(ht_jstr(r, "token", token, sizeof token) && ht_is_token(token));
    assert_true(ht_jhas(r, "session.id"));
    char uname[32];
    assert_true(ht_jstr(r, "user.username", uname, sizeof uname));
    assert_string_equal(uname, "alice");
    char cookie[256];
    assert_true(ht_header(r, "Set-Cookie", cookie, sizeof cookie));
    assert_non_null(strstr(cookie, token));
    EXPECT(r, ht_get(s, "/v1/session", token, r), 200);
    /* the pending login is spent */
    EXPECT_ERR(r, finish(f, pending, "totp", code), 401, "pending_expired");
    /* and the same code on a new pending login: a replay */
    pending_login(f, "alice", pending);
    EXPECT_ERR(r, finish(f, pending, "totp", code), 401, "invalid_code");

    /* renaming needs only the session */
    char fpath[64];
    snprintf(fpath, sizeof fpath, "/v1/factors/%lld", u.factor_id);
    EXPECT(r, ht_json(s, "PATCH", fpath, u.token, "{\"name\":\"work phone\"}", r), 200);
    char fname[32];
    assert_true(ht_jstr(r, "factor.name", fname, sizeof fname));
    assert_string_equal(fname, "work phone");
    EXPECT_ERR(r, ht_json(s, "PATCH", fpath, u.token, "{\"name\":\"\"}", r), 400,
               "invalid_request");
    EXPECT(r, ht_json(s, "PATCH", "/v1/factors/424242", u.token, "{\"name\":\"x\"}", r), 404);
    EXPECT(r, ht_json(s, "PATCH", fpath, NULL, "{\"name\":\"x\"}", r), 401);
    /* the factor list shows the use */
    EXPECT(r, ht_get(s, "/v1/factors", u.token, r), 200);
    char used[64];
    assert_true(ht_jstr(r, "factors.0.last_used_at", used, sizeof used));

    /* metrics */
    EXPECT(r, ht_get(s, "/metrics", NULL, r), 200);
    assert_non_null(strstr(r->body, "gatehouse_mfa_total{method=\"totp\",result=\"success\"} 1\n"));
    assert_non_null(strstr(r->body, "gatehouse_mfa_total{method=\"totp\",result=\"failure\"} 2\n"));
    assert_non_null(strstr(r->body, "gatehouse_pending_logins 1\n"));
    assert_non_null(strstr(r->body, "gatehouse_memory_bytes{component=\"pending\"}"));
}

static void five_wrong_codes_end_the_pending_login(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    user_t u;
    enrolled(f, "bob", &u);
    char pending[64], code[7];
    pending_login(f, "bob", pending);
    ht_totp(u.secret, 0, code);
    char wrong[7] = "000000";
    if (strcmp(code, wrong) == 0)
        wrong[0] = '1';
    for (int i = 0; i < 4; i++)
        EXPECT_ERR(r, finish(f, pending, "totp", wrong), 401, "invalid_code");
    EXPECT_ERR(r, finish(f, pending, "totp", wrong), 401, "pending_expired");
    ht_totp(u.secret, 30, code);
    EXPECT_ERR(r, finish(f, pending, "totp", code), 401, "pending_expired");
    /* the password starts a new one, and the right code finishes it */
    pending_login(f, "bob", pending);
    EXPECT(r, finish(f, pending, "totp", code), 201);
}

/* Wrong codes count toward the account's back-off, like wrong passwords: knowing the password
 * does not buy unlimited guesses at the code. */
static void wrong_codes_count_toward_the_back_off(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(&f->srv, "--throttle-account", "3", NULL), 0);
    user_t u;
    enrolled(f, "hana", &u);
    char pending[64], code[7], wrong[7] = "000000";
    ht_totp(u.secret, 30, code);
    if (strcmp(code, wrong) == 0)
        wrong[0] = '1';
    pending_login(f, "hana", pending);
    for (int i = 0; i < 3; i++)
        EXPECT_ERR(r, finish(f, pending, "totp", wrong), 401, "invalid_code");
    /* the account is in back-off now: the next step waits, even with the right code */
    EXPECT_ERR(r, finish(f, pending, "totp", code), 429, "rate_limited");
    char retry[16];
    assert_true(ht_header(r, "Retry-After", retry, sizeof retry));
}

static void recovery_codes_are_single_use(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(s, NULL), 0);
    user_t u;
    enrolled(f, "carol", &u);
    char pending[64];
    pending_login(f, "carol", pending);
    EXPECT(r, finish(f, pending, "recovery_code", u.codes[3]), 201);
    pending_login(f, "carol", pending);
    EXPECT_ERR(r, finish(f, pending, "recovery_code", u.codes[3]), 401, "invalid_code");
    /* typed in capitals, without the dash: the same code */
    char typed[32];
    snprintf(typed, sizeof typed, "%.5s%.5s", u.codes[4], u.codes[4] + 6);
    for (char *p = typed; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    EXPECT(r, finish(f, pending, "recovery_code", typed), 201);
    /* announced: the factor list says how many are left and when one was used */
    EXPECT(r, ht_get(s, "/v1/factors", u.token, r), 200);
    long long left = 0;
    assert_true(ht_jint(r, "recovery_codes_left", &left) && left == 8);
    assert_true(ht_jhas(r, "recovery_code_used_at"));
    /* new codes need the password, end the other sessions, and kill the old codes */
    EXPECT_ERR(r, ht_json(s, "POST", "/v1/recovery-codes", u.token, "{}", r), 400,
               "invalid_request");
    char other[64];
    pending_login(f, "carol", pending);
    EXPECT(r, finish(f, pending, "recovery_code", u.codes[5]), 201);
    assert_true(ht_jstr(r, "token", other, sizeof other));
    EXPECT(r,
           ht_json(s, "POST", "/v1/recovery-codes", u.token,
                   "{\"current_password\":\"" PASSWORD "\"}", r),
           200);
    assert_int_equal(ht_jsize(r, "recovery_codes"), 10);
    char fresh[16];
    assert_true(ht_jstr(r, "recovery_codes.0", fresh, sizeof fresh));
    EXPECT(r, ht_get(s, "/v1/session", other, r), 401);
    EXPECT(r, ht_get(s, "/v1/session", u.token, r), 200);
    pending_login(f, "carol", pending);
    EXPECT_ERR(r, finish(f, pending, "recovery_code", u.codes[6]), 401, "invalid_code");
    EXPECT(r, finish(f, pending, "recovery_code", fresh), 201);
    EXPECT(r, ht_get(s, "/metrics", NULL, r), 200);
    assert_non_null(
        strstr(r->body, "gatehouse_mfa_total{method=\"recovery_code\",result=\"success\"} 4\n"));
}

static void removing_a_factor_needs_the_password(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(s, NULL), 0);
    user_t u;
    enrolled(f, "dave", &u);
    char other[64], pending[64], code[7], path[64];
    pending_login(f, "dave", pending);
    ht_totp(u.secret, 30, code);
    EXPECT(r, finish(f, pending, "totp", code), 201);
    assert_true(ht_jstr(r, "token", other, sizeof other));
    snprintf(path, sizeof path, "/v1/factors/%lld", u.factor_id);
    EXPECT(r,
           ht_request(s, "DELETE", path,
                      (const char *const[]){"Content-Type: application/json", NULL}, "{}", 2, r),
           401); /* no session */
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", u.token);
    const char *const hdr[] = {auth, "Content-Type: application/json", NULL};
    EXPECT_ERR(r, ht_request(s, "DELETE", path, hdr, "{}", 2, r), 400, "invalid_request");
    const char *wrong = "{\"current_password\":\"not the password\"}";
    EXPECT_ERR(r, ht_request(s, "DELETE", path, hdr, wrong, strlen(wrong), r), 401,
               "invalid_credentials");
    const char *bad_code = "{\"code\":\"000000\"}";
    EXPECT(r, ht_request(s, "DELETE", path, hdr, bad_code, strlen(bad_code), r), 401);
    const char *right = "{\"current_password\":\"" PASSWORD "\"}";
    EXPECT(r, ht_request(s, "DELETE", "/v1/factors/999999", hdr, right, strlen(right), r), 404);
    EXPECT(r, ht_request(s, "DELETE", path, hdr, right, strlen(right), r), 204);
    /* the last factor gone: the other session ended, this one lives, logins are one step */
    EXPECT(r, ht_get(s, "/v1/session", other, r), 401);
    EXPECT(r, ht_get(s, "/v1/session", u.token, r), 200);
    assert_int_equal(ht_login(s, "dave", PASSWORD, NULL, NULL), 201);
    EXPECT(r, ht_get(s, "/v1/factors", u.token, r), 200);
    assert_int_equal(ht_jsize(r, "factors"), 0);
}

static void admin_reset_and_restart(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(s, "--admin-token", ADMIN, NULL), 0);
    user_t u, v;
    enrolled(f, "erin", &u);
    enrolled(f, "frank", &v);
    /* a restart keeps the factors (and the secret key that opens them) */
    assert_int_equal(ht_server_stop(s), 0);
    assert_int_equal(ht_server_start(s, "--admin-token", ADMIN, NULL), 0);
    char pending[64], code[7], path[96];
    pending_login(f, "erin", pending);
    ht_totp(u.secret, 30, code);
    EXPECT(r, finish(f, pending, "totp", code), 201);
    /* admin reset over HTTP */
    snprintf(path, sizeof path, "/v1/admin/users/%lld/factors", u.user_id);
    EXPECT(r, ht_delete(s, path, NULL, r), 401);
    EXPECT(r, ht_delete(s, path, ADMIN, r), 204);
    EXPECT_ERR(r, ht_delete(s, "/v1/admin/users/987654/factors", ADMIN, r), 404, "not_found");
    assert_int_equal(ht_login(s, "erin", PASSWORD, NULL, NULL), 201);
    /* and from the command line, on the same data dir */
    ht_run_t run = {0};
    assert_int_equal(
        ht_run(&run, NULL, NULL, "user", "mfa-reset", "frank", "--data-dir", s->dir, NULL), 0);
    if (run.status != 0)
        fail_msg("mfa-reset: %s", run.err);
    assert_non_null(strstr(run.out, "removed 1 second factor"));
    assert_int_equal(ht_login(s, "frank", PASSWORD, NULL, NULL), 201);
    assert_int_equal(
        ht_run(&run, NULL, NULL, "user", "mfa-reset", "nobody", "--data-dir", s->dir, NULL), 0);
    assert_int_equal(run.status, 1);
}

static void hostile_second_steps(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_server_start(s, NULL), 0);
    user_t u;
    enrolled(f, "gina", &u);
    char pending[64];
    pending_login(f, "gina", pending);
    EXPECT_ERR(r, finish(f, "gh_not-a-pending-token", "totp", "123456"), 401, "pending_expired");
    EXPECT_ERR(r, finish(f, "", "totp", "123456"), 401, "pending_expired");
    EXPECT_ERR(r, finish(f, pending, "sms", "123456"), 400, "invalid_request");
    EXPECT_ERR(r, finish(f, pending, "webauthn", "123456"), 400, "invalid_request");
    EXPECT_ERR(r, finish(f, pending, "totp", "12345a"), 401, "invalid_code");
    EXPECT_ERR(r, finish(f, pending, "totp", "1234567890123456789012345678901234567890"), 401,
               "invalid_code");
    EXPECT_ERR(r,
               ht_json(s, "POST", "/v1/sessions/mfa", NULL,
                       "{\"pending\":1,\"method\":\"totp\",\"code\":\"1\"}", r),
               400, "invalid_request");
    EXPECT_ERR(r, ht_json(s, "POST", "/v1/sessions/mfa", NULL, "{\"pending\":", r), 400,
               "invalid_request");
    /* a huge body */
    size_t n = 4 * 1024 * 1024;
    char *big = malloc(n + 64);
    assert_non_null(big);
    int o = snprintf(big, n + 64, "{\"pending\":\"%s\",\"method\":\"totp\",\"code\":\"", pending);
    memset(big + o, '1', n - (size_t)o - 2);
    memcpy(big + n - 2, "\"}", 2);
    long st = ht_request(s, "POST", "/v1/sessions/mfa",
                         (const char *const[]){"Content-Type: application/json", NULL}, big, n, r);
    free(big);
    assert_true(st == 413 || st == 400);
    /* the wrong codes above (3 counted) left the pending login alive; the node still serves */
    char code[7];
    ht_totp(u.secret, 30, code);
    EXPECT(r, finish(f, pending, "totp", code), 201);
}

/* With --session-store redis the pending login lives in Redis: started on node A, finished on
 * node B; and the wrong steps count across nodes. (Both nodes share one SQLite data dir, in WAL
 * mode, and so the secret key in it.) */
static void a_login_started_on_one_node_finishes_on_another(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    ts_server_t redis = {.kind = TS_REDIS};
    if (ts_server_start(&redis) != 0)
        fail_msg("cannot start redis-server");
    assert_int_equal(
        ht_server_start(&f->srv, "--session-store", "redis", "--redis-url", redis.url, NULL), 0);
    ht_server_t b = {.data_dir = f->srv.dir};
    assert_int_equal(
        ht_server_start(&b, "--session-store", "redis", "--redis-url", redis.url, NULL), 0);
    user_t u;
    enrolled(f, "ivan", &u);
    char pending[64], code[7], wrong[7] = "000000";
    pending_login(f, "ivan", pending); /* on A */
    ht_totp(u.secret, 30, code);
    if (strcmp(code, wrong) == 0)
        wrong[0] = '1';
    char body[256];
    snprintf(body, sizeof body, "{\"pending\":\"%s\",\"method\":\"totp\",\"code\":\"%s\"}", pending,
             code);
    EXPECT(r, ht_json(&b, "POST", "/v1/sessions/mfa", NULL, body, r), 201); /* on B */
    char token[64];
    assert_true(ht_jstr(r, "token", token, sizeof token));
    EXPECT(r, ht_get(&f->srv, "/v1/session", token, r), 200); /* a session for both */
    /* finished on B: spent on A too */
    EXPECT_ERR(r, finish(f, pending, "totp", code), 401, "pending_expired");
    /* wrong steps on both nodes add up: 3 on A and 2 on B end it */
    pending_login(f, "ivan", pending);
    snprintf(body, sizeof body, "{\"pending\":\"%s\",\"method\":\"totp\",\"code\":\"%s\"}", pending,
             wrong);
    for (int i = 0; i < 3; i++)
        EXPECT_ERR(r, finish(f, pending, "totp", wrong), 401, "invalid_code");
    EXPECT_ERR(r, ht_json(&b, "POST", "/v1/sessions/mfa", NULL, body, r), 401, "invalid_code");
    EXPECT_ERR(r, ht_json(&b, "POST", "/v1/sessions/mfa", NULL, body, r), 401, "pending_expired");
    /* the gauge reads Redis: one pending login left from neither node */
    pending_login(f, "ivan", pending);
    EXPECT(r, ht_get(&b, "/metrics", NULL, r), 200);
    assert_non_null(strstr(r->body, "gatehouse_pending_logins 1\n"));
    assert_int_equal(ht_server_release(&b), 0);
    ts_server_cleanup(&redis);
}

static void the_secret_key_file(void **state)
{
    (void)state;
    char dir[HT_PATH_MAX], key[HT_PATH_MAX + 32];
    assert_int_equal(ht_tempdir(dir), 0);
    snprintf(key, sizeof key, "%s/named.key", dir);
    ht_run_t run = {.timeout_ms = 10000};
    /* a named file that is missing: exit 2, one line, no key made */
    assert_int_equal(ht_run(&run, NULL, NULL, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir,
                            "--secret-key-file", key, NULL),
                     0);
    assert_int_equal(run.status, 2);
    assert_int_equal(ht_count_lines(run.err), 1);
    assert_non_null(strstr(run.err, "--secret-key-file"));
    FILE *fp = fopen(key, "r");
    assert_null(fp);
    /* a malformed one: exit 2 */
    fp = fopen(key, "w");
    fputs("c2hvcnQ=\n", fp);
    fclose(fp);
    assert_int_equal(ht_run(&run, NULL, NULL, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir,
                            "--secret-key-file", key, NULL),
                     0);
    assert_int_equal(run.status, 2);
    assert_non_null(strstr(run.err, "is not a key"));
    ht_rmtree(dir);
}

static void the_default_key_is_made_once(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    char path[HT_PATH_MAX + 32], first[128] = "", again[128] = "";
    snprintf(path, sizeof path, "%s/secret.key", f->srv.dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(first, sizeof first, fp));
    fclose(fp);
    assert_int_equal(strlen(first), 45); /* 44 base64 characters and a newline */
    assert_int_equal(ht_server_stop(&f->srv), 0);
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    fp = fopen(path, "r");
    assert_non_null(fgets(again, sizeof again, fp));
    fclose(fp);
    assert_string_equal(first, again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(two_step_login_with_an_authenticator, setup, teardown),
        cmocka_unit_test_setup_teardown(five_wrong_codes_end_the_pending_login, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_codes_count_toward_the_back_off, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_codes_are_single_use, setup, teardown),
        cmocka_unit_test_setup_teardown(removing_a_factor_needs_the_password, setup, teardown),
        cmocka_unit_test_setup_teardown(admin_reset_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_second_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(a_login_started_on_one_node_finishes_on_another, setup,
                                        teardown),
        cmocka_unit_test(the_secret_key_file),
        cmocka_unit_test_setup_teardown(the_default_key_is_made_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
