/*
 * test_log.c — what the server writes to its log during a realistic session of requests:
 * one JSON object per line with ts/level/msg, one "request" line per request with the route
 * template (never a raw session id), and no secret anywhere — no token, no password, no
 * password hash, no admin token — not even for requests that fail.
 *
 * The secrets are collected while the requests are made and then searched for in the whole log
 * byte by byte, so a secret leaking in any field or in a non-JSON line is caught.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"

#define ADMIN "log-test-admin-token-9f3c"
#define LOG_MAX (8u << 20)

typedef struct {
    ht_server_t srv;
    char *log;
    const char *secrets[64];
    char secret_buf[64][128];
    size_t nsecrets;
    char sids[16][32]; /* session ids that must never appear raw */
    size_t nsids;
    int nreq; /* requests made: the log must have exactly this many request lines */
} fixture_t;

#define REQ(f, call) ((f)->nreq++, (call))

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->log = malloc(LOG_MAX);
    if (!f->log) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    free(f->log);
    free(f);
    return rc;
}

static void secret(fixture_t *f, const char *s)
{
    assert_true(f->nsecrets < 64);
    snprintf(f->secret_buf[f->nsecrets], sizeof f->secret_buf[0], "%.127s", s);
    f->secrets[f->nsecrets] = f->secret_buf[f->nsecrets];
    f->nsecrets++;
}

static void token_secret(fixture_t *f, const char *token)
{
    secret(f, token);
    secret(f, token + 3); /* the random part alone, in case the prefix is cut off */
}

static void session_id(fixture_t *f, const char *sid)
{
    assert_true(f->nsids < 16);
    snprintf(f->sids[f->nsids++], sizeof f->sids[0], "%.31s", sid);
}

static long login(fixture_t *f, const char *user, const char *pass)
{
    char token[64], sid[32];
    long st = REQ(f, ht_login(&f->srv, user, pass, token, sid));
    if (st == 201) {
        token_secret(f, token);
        session_id(f, sid);
    }
    return st;
}

/* Drives a session of requests through every kind of route, successful and failing. */
static void run_session(fixture_t *f)
{
    ht_server_t *s = &f->srv;
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    const char *pw1 = "first-Secret-pw-7d1", *pw2 = "second-Secret-pw-b42";
    const char *wrong = "wrong-Secret-pw-0a9", *pw3 = "third-Secret-pw-e55";
    secret(f, pw1);
    secret(f, pw2);
    secret(f, wrong);
    secret(f, pw3);
    secret(f, ADMIN);

    long long uid;
    assert_int_equal(REQ(f, ht_register(s, "logan", pw1, &uid)), 201);
    assert_int_equal(REQ(f, ht_register(s, "mara", pw3, NULL)), 201);
    assert_int_equal(REQ(f, ht_register(s, "logan", pw1, NULL)), 409);
    assert_int_equal(REQ(f, ht_register(s, "weak", "short", NULL)), 400);

    char tok[3][64], sid[3][32];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(REQ(f, ht_login(s, "logan", pw1, tok[i], sid[i])), 201);
        token_secret(f, tok[i]);
        session_id(f, sid[i]);
    }
    assert_int_equal(login(f, "logan", wrong), 401);
    assert_int_equal(login(f, "nobody", wrong), 401);

    /* A form login with the password percent-encoded. */
    const char *form_pw = "form Secret&pw=9";
    secret(f, form_pw);
    secret(f, "form+Secret%26pw%3D9");
    assert_int_equal(REQ(f, ht_register(s, "nina", form_pw, NULL)), 201);
    assert_int_equal(REQ(f, ht_request(s, "POST", "/v1/sessions",
                                       (const char *const[]){
                                           "Content-Type: application/x-www-form-urlencoded", NULL},
                                       "username=nina&password=form+Secret%26pw%3D9",
                                       strlen("username=nina&password=form+Secret%26pw%3D9"), r)),
                     201);
    char form_tok[64], form_sid[32];
    assert_true(ht_jstr(r, "token", form_tok, sizeof form_tok));
    assert_true(ht_jstr(r, "session.id", form_sid, sizeof form_sid));
    token_secret(f, form_tok);
    session_id(f, form_sid);

    assert_int_equal(REQ(f, ht_get(s, "/v1/session", tok[0], r)), 200);
    char cookie[128];
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", tok[1]);
    assert_int_equal(
        REQ(f, ht_request(s, "GET", "/v1/auth", (const char *const[]){cookie, NULL}, NULL, 0, r)),
        200);
    assert_int_equal(REQ(f, ht_get(s, "/v1/sessions", tok[0], r)), 200);
    char path[256];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid[2]);
    assert_int_equal(REQ(f, ht_delete(s, path, tok[0], r)), 204);
    assert_int_equal(REQ(f, ht_delete(s, path, tok[0], r)), 404);
    /* Revoked and forged tokens. */
    assert_int_equal(REQ(f, ht_get(s, "/v1/auth", tok[2], r)), 401);
    const char *forged = "gh_Zm9yZ2VkLXRva2VuLXRoYXQtd2FzLW5ldmVyLWlzc3V";
    token_secret(f, forged);
    assert_int_equal(REQ(f, ht_get(s, "/v1/session", forged, r)), 401);

    /* Password change: both passwords travel in one body. */
    char body[512];
    snprintf(body, sizeof body, "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", wrong,
             pw2);
    assert_int_equal(REQ(f, ht_json(s, "PUT", "/v1/password", tok[0], body, r)), 401);
    snprintf(body, sizeof body, "{\"current_password\":\"%s\",\"new_password\":\"%s\"}", pw1, pw2);
    assert_int_equal(REQ(f, ht_json(s, "PUT", "/v1/password", tok[0], body, r)), 204);
    assert_int_equal(login(f, "logan", pw2), 201);
    char fresh_sid[32];
    snprintf(fresh_sid, sizeof fresh_sid, "%s", f->sids[f->nsids - 1]);

    /* Bad requests that carry a password. */
    snprintf(body, sizeof body, "{\"username\":\"logan\",\"password\":\"%s\"", pw2);
    assert_int_equal(REQ(f, ht_json(s, "POST", "/v1/sessions", NULL, body, r)), 400);
    snprintf(body, sizeof body, "{\"username\":\"logan\",\"password\":\"%s\"}", pw2);
    assert_int_equal(REQ(f, ht_request(s, "POST", "/v1/users",
                                       (const char *const[]){"Content-Type: text/plain", NULL},
                                       body, strlen(body), r)),
                     415);

    /* Admin routes. */
    assert_int_equal(REQ(f, ht_get(s, "/v1/admin/users", ADMIN, r)), 200);
    assert_int_equal(REQ(f, ht_get(s, "/v1/admin/users", "not-the-admin-token-x", r)), 403);
    secret(f, "not-the-admin-token-x");
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", uid);
    assert_int_equal(REQ(f, ht_get(s, path, ADMIN, r)), 200);
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions/%s", uid, fresh_sid);
    assert_int_equal(REQ(f, ht_delete(s, path, ADMIN, r)), 204);
    assert_int_equal(REQ(f, ht_get(s, "/debug/memory", ADMIN, r)), 200);

    /* Operations and unknown routes. */
    assert_int_equal(REQ(f, ht_get(s, "/healthz", NULL, r)), 200);
    assert_int_equal(REQ(f, ht_get(s, "/readyz", NULL, r)), 200);
    assert_int_equal(REQ(f, ht_get(s, "/metrics", NULL, r)), 200);
    assert_int_equal(REQ(f, ht_get(s, "/no/such/route", NULL, r)), 404);
    assert_int_equal(REQ(f, ht_request(s, "PUT", "/v1/session", NULL, NULL, 0, r)), 405);

    assert_int_equal(REQ(f, ht_delete(s, "/v1/session", tok[0], r)), 204);
    assert_int_equal(REQ(f, ht_delete(s, "/v1/sessions", form_tok, r)), 204);
    free(r);
}

typedef struct {
    int lines, requests, with_session, debug;
    bool listening, stopped;
    bool revoke_route; /* a request line with route /v1/sessions/{id} */
} log_summary_t;

static void check_line(json_t *j, const char *line, log_summary_t *sum)
{
    if (!json_is_object(j))
        fail_msg("log line is not a JSON object: %s", line);
    json_t *ts = json_object_get(j, "ts"), *level = json_object_get(j, "level"),
           *msg = json_object_get(j, "msg");
    if (!ts || !(json_is_string(ts) || json_is_number(ts)))
        fail_msg("log line without ts: %s", line);
    if (json_is_string(ts)) {
        /* RFC 3339 UTC, with or without a fraction. */
        const char *t = json_string_value(ts);
        if (strlen(t) < 20 || t[4] != '-' || t[10] != 'T' || t[strlen(t) - 1] != 'Z')
            fail_msg("log ts is not RFC 3339 UTC: %s", line);
    }
    const char *lv = json_string_value(level);
    if (!lv ||
        (strcmp(lv, "debug") && strcmp(lv, "info") && strcmp(lv, "warn") && strcmp(lv, "error")))
        fail_msg("log line without a valid level: %s", line);
    const char *m = json_string_value(msg);
    if (!m || !*m)
        fail_msg("log line without msg: %s", line);
    sum->listening |= strcmp(m, "listening") == 0;
    sum->stopped |= strcmp(m, "stopped") == 0;
    if (strcmp(m, "request") != 0)
        return;

    sum->requests++;
    const char *method = json_string_value(json_object_get(j, "method"));
    json_t *route = json_object_get(j, "route");
    json_t *status = json_object_get(j, "status");
    json_t *dur = json_object_get(j, "duration_ms");
    if (!method || !*method)
        fail_msg("request line without method: %s", line);
    if (!json_is_integer(status) || json_integer_value(status) < 100 ||
        json_integer_value(status) > 599)
        fail_msg("request line without an integer status: %s", line);
    if (!json_is_number(dur) || json_number_value(dur) < 0)
        fail_msg("request line without duration_ms: %s", line);
    if (json_integer_value(status) != 404 && !json_is_string(route))
        fail_msg("request line without route: %s", line);
    const char *rt = json_string_value(route);
    if (rt && strcmp(rt, "/v1/sessions/{id}") == 0)
        sum->revoke_route = true;
    /* The bulk of the traffic is logged at debug when it succeeds; everything else at info. */
    bool quiet = rt && strcmp(method, "GET") == 0 &&
                 (!strcmp(rt, "/v1/auth") || !strcmp(rt, "/v1/session") ||
                  !strcmp(rt, "/healthz") || !strcmp(rt, "/readyz") || !strcmp(rt, "/metrics"));
    long st = (long)json_integer_value(status);
    const char *want = quiet && st >= 200 && st < 300 ? "debug" : "info";
    if (strcmp(lv, want) != 0)
        fail_msg("request line at %s, not %s: %s", lv, want, line);
    sum->debug += strcmp(lv, "debug") == 0;
    json_t *sess = json_object_get(j, "session");
    if (sess) {
        const char *h = json_string_value(sess);
        if (!h || strlen(h) != 8 || strspn(h, "0123456789abcdef") != 8)
            fail_msg("request session field is not 8 hex chars: %s", line);
        sum->with_session++;
    }
}

static void log_is_json_lines_with_templates_and_no_secrets(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    assert_int_equal(ht_server_start(s, "--admin-token", ADMIN, "--log-level", "debug", NULL), 0);
    run_session(f);
    assert_int_equal(ht_server_stop(s), 0);

    size_t n = ht_server_log(s, f->log, LOG_MAX);
    assert_true(n > 0 && n < LOG_MAX - 1);
    assert_int_equal(f->log[n - 1], '\n');
    assert_int_equal(strlen(f->log), n); /* no NUL bytes */

    /* No secret anywhere, in any form. */
    for (size_t i = 0; i < f->nsecrets; i++)
        if (strstr(f->log, f->secrets[i]))
            fail_msg("the log contains the secret \"%s\"", f->secrets[i]);
    assert_null(strstr(f->log, "$argon2"));
    /* Raw session ids are neither in routes nor anywhere else. */
    for (size_t i = 0; i < f->nsids; i++)
        if (strstr(f->log, f->sids[i]))
            fail_msg("the log contains the raw session id %s", f->sids[i]);

    log_summary_t sum = {0};
    char *save = NULL;
    for (char *line = strtok_r(f->log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j)
            fail_msg("log line is not JSON (%s): %s", err.text, line);
        check_line(j, line, &sum);
        json_decref(j);
        sum.lines++;
    }
    assert_true(sum.listening);
    assert_true(sum.stopped);
    assert_true(sum.revoke_route);
    /* One request line per request made. */
    if (sum.requests != f->nreq)
        fail_msg("%d request lines in the log for %d requests", sum.requests, f->nreq);
    assert_true(sum.with_session >= 5);
    assert_true(sum.debug > 0);
}

/* At the default level (info) a token check that passes writes no line; one that fails does. */
static void passing_token_checks_are_not_logged_at_info(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    assert_int_equal(ht_server_start(s, NULL), 0);
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_register(s, "pia", "pia-password-1", NULL), 201);
    char tok[64];
    assert_int_equal(ht_login(s, "pia", "pia-password-1", tok, NULL), 201);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ht_get(s, "/v1/auth", tok, r), 200);
    assert_int_equal(ht_get(s, "/v1/auth", "gh_not-a-real-token", r), 401);
    assert_int_equal(ht_get(s, "/healthz", NULL, r), 200);
    free(r);
    assert_int_equal(ht_server_stop(s), 0);
    ht_server_log(s, f->log, LOG_MAX);

    int auth = 0, login = 0, health = 0;
    char *save = NULL;
    for (char *line = strtok_r(f->log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *route = json_string_value(json_object_get(j, "route"));
        if (route && strcmp(json_string_value(json_object_get(j, "msg")), "request") == 0) {
            if (strcmp(route, "/v1/auth") == 0) {
                assert_int_equal(json_integer_value(json_object_get(j, "status")), 401);
                auth++;
            }
            login += strcmp(route, "/v1/sessions") == 0;
            health += strcmp(route, "/healthz") == 0;
        }
        json_decref(j);
    }
    assert_int_equal(auth, 1);
    assert_int_equal(login, 1);
    assert_int_equal(health, 0);
}

static void session_field_is_a_stable_pseudonym(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    assert_int_equal(ht_server_start(s, "--log-level", "debug", NULL), 0);
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_register(s, "otto", "otto-password-1", NULL), 201);
    char a[64], b[64];
    assert_int_equal(ht_login(s, "otto", "otto-password-1", a, NULL), 201);
    assert_int_equal(ht_login(s, "otto", "otto-password-1", b, NULL), 201);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ht_get(s, "/v1/session", a, r), 200);
        assert_int_equal(ht_get(s, "/v1/auth", b, r), 200);
    }
    free(r);
    assert_int_equal(ht_server_stop(s), 0);
    ht_server_log(s, f->log, LOG_MAX);

    /* The same session always maps to the same 8 hex chars; different sessions differ. */
    char seen_a[16] = "", seen_b[16] = "";
    int na = 0, nb = 0;
    char *save = NULL;
    for (char *line = strtok_r(f->log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *route = json_string_value(json_object_get(j, "route"));
        const char *sess = json_string_value(json_object_get(j, "session"));
        if (route && sess && strcmp(route, "/v1/session") == 0) {
            if (!*seen_a)
                snprintf(seen_a, sizeof seen_a, "%s", sess);
            assert_string_equal(sess, seen_a);
            na++;
        }
        if (route && sess && strcmp(route, "/v1/auth") == 0) {
            if (!*seen_b)
                snprintf(seen_b, sizeof seen_b, "%s", sess);
            assert_string_equal(sess, seen_b);
            nb++;
        }
        json_decref(j);
    }
    assert_int_equal(na, 3);
    assert_int_equal(nb, 3);
    assert_string_not_equal(seen_a, seen_b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(log_is_json_lines_with_templates_and_no_secrets, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(session_field_is_a_stable_pseudonym, setup, teardown),
        cmocka_unit_test_setup_teardown(passing_token_checks_are_not_logged_at_info, setup,
                                        teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
