/*
 * test_api.c — every route, status and error code of the HTTP API, through the real binary.
 *
 * Each test starts its own server (with the flags it needs) on 127.0.0.1:0 in a fresh data dir,
 * so tests never depend on each other's users, sessions or counters. Assertions are about what a
 * client sees: status, headers, body shape and whether a token still works afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <pthread.h>
#include <cmocka.h>

#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-tests"

typedef struct {
    ht_server_t srv[2];
} fixture_t;

static int setup(void **state)
{
    *state = calloc(1, sizeof(fixture_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = 0;
    for (size_t i = 0; i < 2; i++)
        rc |= ht_server_release(&f->srv[i]);
    free(f);
    return rc;
}

#define SRV(state, i) (&((fixture_t *)*(state))->srv[i])
#define START(s, ...)                                                                              \
    do {                                                                                           \
        if (ht_server_start((s), ##__VA_ARGS__, NULL) != 0)                                        \
            fail_msg("line %d: server did not start", __LINE__);                                   \
    } while (0)

/* ---- assertion helpers (fail_msg names the line and shows the body) ---- */

static void check_status(const ht_response_t *r, long got, long want, const char *what, int line)
{
    if (got != want)
        fail_msg("line %d: %s -> %ld, want %ld; error \"%s\"%s%s; body: %.400s", line, what, got,
                 want, r->error_code, r->curl_error[0] ? "; transport: " : "", r->curl_error,
                 r->body);
}
#define EXPECT(r, call, want) check_status((r), (call), (want), #call, __LINE__)

static void check_error(const ht_response_t *r, long got, long want, const char *code,
                        const char *what, int line)
{
    check_status(r, got, want, what, line);
    if (strcmp(r->error_code, code) != 0)
        fail_msg("line %d: %s -> %ld with code \"%s\", want \"%s\"; body: %.400s", line, what, got,
                 r->error_code, code, r->body);
    char ct[256], msg[512];
    if (!ht_header(r, "Content-Type", ct, sizeof ct) || strncasecmp(ct, "application/json", 16))
        fail_msg("line %d: %s: error Content-Type \"%s\", want application/json", line, what, ct);
    if (!ht_jstr(r, "error.message", msg, sizeof msg) || !msg[0])
        fail_msg("line %d: %s: error body without a message: %.400s", line, what, r->body);
    if (ht_jsize(r, "") != 1 || ht_jsize(r, "error") != 2)
        fail_msg("line %d: %s: error body is not {\"error\":{\"code\",\"message\"}}: %.400s", line,
                 what, r->body);
}
#define EXPECT_ERR(r, call, want, code) check_error((r), (call), (want), (code), #call, __LINE__)

static void check_json_ct(const ht_response_t *r, int line)
{
    char ct[256];
    if (!ht_header(r, "Content-Type", ct, sizeof ct) || strncasecmp(ct, "application/json", 16))
        fail_msg("line %d: Content-Type \"%s\", want application/json", line, ct);
}
#define EXPECT_JSON_CT(r) check_json_ct((r), __LINE__)

/* ---- small request helpers ---- */

static long send_body(const ht_server_t *s, const char *method, const char *path,
                      const char *content_type, const char *token, const char *body,
                      ht_response_t *r)
{
    char ct[256], auth[256];
    const char *h[3] = {NULL, NULL, NULL};
    size_t n = 0;
    if (content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        h[n++] = ct;
    }
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[n++] = auth;
    }
    return ht_request(s, method, path, h, body, strlen(body), r);
}

/* A request with a raw Authorization and/or Cookie header (either may be NULL). */
static long send_auth(const ht_server_t *s, const char *method, const char *path,
                      const char *authorization, const char *cookie, ht_response_t *r)
{
    char a[1100], c[1100];
    const char *h[3] = {NULL, NULL, NULL};
    size_t n = 0;
    if (authorization) {
        snprintf(a, sizeof a, "Authorization: %s", authorization);
        h[n++] = a;
    }
    if (cookie) {
        snprintf(c, sizeof c, "Cookie: %s", cookie);
        h[n++] = c;
    }
    return ht_request(s, method, path, h, NULL, 0, r);
}

static long login_json(const ht_server_t *s, const char *user, const char *pass, ht_response_t *r)
{
    json_t *j = json_pack("{s:s, s:s}", "username", user, "password", pass);
    char *body = json_dumps(j, JSON_COMPACT);
    long st = ht_json(s, "POST", "/v1/sessions", NULL, body, r);
    free(body);
    json_decref(j);
    return st;
}

static void register_ok(const ht_server_t *s, const char *user, long long *id)
{
    long st = ht_register(s, user, PASSWORD, id);
    if (st != 201)
        fail_msg("register %s -> %ld, want 201", user, st);
}

static void login_ok(const ht_server_t *s, const char *user, char *token, char *sid)
{
    long st = ht_login(s, user, PASSWORD, token, sid);
    if (st != 201)
        fail_msg("login %s -> %ld, want 201", user, st);
}

/* GET /v1/session with the bearer token: 200 or 401 (anything else fails the test). */
static bool token_works(const ht_server_t *s, const char *token)
{
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    long st = ht_get(s, "/v1/session", token, r);
    if (st != 200 && !(st == 401 && strcmp(r->error_code, "unauthenticated") == 0))
        fail_msg("GET /v1/session -> %ld \"%s\", want 200 or 401 unauthenticated", st,
                 r->error_code);
    free(r);
    return st == 200;
}

/* Set-Cookie parsed into name, value and attributes. */
typedef struct {
    char name[128];
    char value[128];
    char attrs[12][128];
    int n;
} cookie_t;

static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    while (s[i] == ' ' || s[i] == '\t')
        i++;
    memmove(s, s + i, n - i + 1);
}

static void parse_set_cookie(const ht_response_t *r, cookie_t *c)
{
    char h[1024];
    memset(c, 0, sizeof *c);
    if (!ht_header(r, "Set-Cookie", h, sizeof h))
        fail_msg("no Set-Cookie header; headers:\n%s", r->headers);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 1);
    char *save = NULL;
    char *part = strtok_r(h, ";", &save);
    assert_non_null(part);
    char *eq = strchr(part, '=');
    assert_non_null(eq);
    *eq = '\0';
    snprintf(c->name, sizeof c->name, "%s", part);
    snprintf(c->value, sizeof c->value, "%s", eq + 1);
    trim(c->name);
    trim(c->value);
    while ((part = strtok_r(NULL, ";", &save)) != NULL && c->n < 12) {
        snprintf(c->attrs[c->n], sizeof c->attrs[0], "%s", part);
        trim(c->attrs[c->n]);
        c->n++;
    }
}

static bool cookie_has(const cookie_t *c, const char *attr)
{
    for (int i = 0; i < c->n; i++)
        if (strcasecmp(c->attrs[i], attr) == 0)
            return true;
    return false;
}

static bool cookie_has_prefix(const cookie_t *c, const char *prefix)
{
    for (int i = 0; i < c->n; i++)
        if (strncasecmp(c->attrs[i], prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

/* A session object as the contract shapes it, with the two lifetimes. */
static void check_session(json_t *sess, long ttl_s, long idle_s)
{
    assert_true(json_is_object(sess));
    const char *id = json_string_value(json_object_get(sess, "id"));
    assert_true(ht_is_b64url(id, 22));
    time_t created, seen, expires, idle;
    assert_true(ht_parse_time(json_string_value(json_object_get(sess, "created_at")), &created));
    assert_true(ht_parse_time(json_string_value(json_object_get(sess, "last_seen_at")), &seen));
    assert_true(ht_parse_time(json_string_value(json_object_get(sess, "expires_at")), &expires));
    assert_true(ht_parse_time(json_string_value(json_object_get(sess, "idle_expires_at")), &idle));
    time_t now = time(NULL);
    assert_true(created <= now + 2 && created >= now - 120);
    assert_true(seen >= created);
    /* Truncating both instants to whole seconds can move the difference by one. */
    assert_true(labs((long)(expires - created) - ttl_s) <= 1);
    assert_true(labs((long)(idle - seen) - idle_s) <= 1);
    assert_null(json_object_get(sess, "token"));
}

/* The list of methods in an Allow header contains `method`. */
static bool allow_has(const char *allow, const char *method)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", allow);
    char *save = NULL;
    for (char *m = strtok_r(buf, ", ", &save); m; m = strtok_r(NULL, ", ", &save))
        if (strcmp(m, method) == 0)
            return true;
    return false;
}

/* ---- registration ---- */

static void register_returns_id_and_username(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    EXPECT(&r,
           ht_json(s, "POST", "/v1/users", NULL,
                   "{\"username\":\"Alice\",\"password\":\"" PASSWORD "\"}", &r),
           201);
    EXPECT_JSON_CT(&r);
    long long id = 0, id2 = 0;
    char name[128];
    assert_true(ht_jint(&r, "id", &id));
    assert_true(id > 0);
    assert_true(ht_jstr(&r, "username", name, sizeof name));
    assert_string_equal(name, "Alice");
    assert_false(ht_jhas(&r, "password"));
    register_ok(s, "bob", &id2);
    assert_true(id2 != id);
}

static void register_duplicate_is_409_case_insensitive(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "Carol", NULL);
    const char *again[] = {"Carol", "carol", "CAROL", "cArOl"};
    for (size_t i = 0; i < 4; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"other password\"}",
                 again[i]);
        EXPECT_ERR(&r, ht_json(s, "POST", "/v1/users", NULL, body, &r), 409, "username_taken");
    }
    /* The first account is untouched: its password still logs in. */
    assert_int_equal(ht_login(s, "carol", PASSWORD, NULL, NULL), 201);
}

static void register_rejects_invalid_usernames(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    char long65[66], long64[65];
    memset(long65, 'x', 65);
    long65[65] = '\0';
    memset(long64, 'y', 64);
    long64[64] = '\0';
    const char *bad[] = {"",           long65,      "with space", "slash/name",  "colon:name",
                         "semi;colon", "quote\\\"", "tab\\t",     "caf\xc3\xa9", "plus+sign",
                         "percent%41"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", bad[i]);
        EXPECT_ERR(&r, ht_json(s, "POST", "/v1/users", NULL, body, &r), 400, "invalid_username");
    }
    /* The edges of the allowed set and length. */
    register_ok(s, long64, NULL);
    register_ok(s, "a", NULL);
    register_ok(s, "A.b_c@d-e9", NULL);
}

static void register_rejects_weak_passwords(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"dave\",\"password\":\"1234567\"}", &r),
               400, "weak_password");
    EXPECT_ERR(
        &r, ht_json(s, "POST", "/v1/users", NULL, "{\"username\":\"dave\",\"password\":\"\"}", &r),
        400, "weak_password");
    /* 1025 bytes is too long, 1024 is fine; 8 bytes (even as 4 two-byte characters) is fine. */
    char body[1200], pw[1026];
    memset(pw, 'p', 1025);
    pw[1025] = '\0';
    snprintf(body, sizeof body, "{\"username\":\"dave\",\"password\":\"%s\"}", pw);
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/users", NULL, body, &r), 400, "weak_password");
    pw[1024] = '\0';
    assert_int_equal(ht_register(s, "dave", pw, NULL), 201);
    assert_int_equal(ht_login(s, "dave", pw, NULL, NULL), 201);
    assert_int_equal(ht_register(s, "erin", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", NULL), 201);
    assert_int_equal(ht_login(s, "erin", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", NULL, NULL), 201);
    assert_int_equal(ht_register(s, "frank", "12345678", NULL), 201);
}

/* A JSON text must be UTF-8 (RFC 8259), so raw invalid bytes make the body itself invalid:
 * 400 invalid_request. A password that is valid JSON but not an acceptable password (a NUL
 * character, escaped) is 400 weak_password. */
static void register_rejects_invalid_utf8_and_nul(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"dave\",\"password\":\"abcdefgh\xff\xfe\"}", &r),
               400, "invalid_request");
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"dave\",\"password\":\"\xc3\x28pass-word\"}", &r),
               400, "invalid_request");
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"dave\",\"password\":\"abcd\\u0000efgh\"}", &r),
               400, "weak_password");
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"da\\u0000ve\",\"password\":\"abcdefgh\"}", &r),
               400, "invalid_username");
    EXPECT_ERR(&r, login_json(s, "dave", "abcdefgh", &r), 401, "invalid_credentials");
}

static void register_closed_is_403(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--registration", "closed");
    ht_response_t r;
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"gina\",\"password\":\"" PASSWORD "\"}", &r),
               403, "registration_closed");
    EXPECT_ERR(&r, login_json(s, "gina", PASSWORD, &r), 401, "invalid_credentials");
}

/* ---- logging in ---- */

static void login_json_returns_token_session_user_and_cookie(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    long long id;
    register_ok(s, "hank", &id);
    EXPECT(&r, login_json(s, "HANK", PASSWORD, &r), 201); /* usernames match case-insensitively */
    EXPECT_JSON_CT(&r);
    char token[64], name[128];
    long long uid = 0;
    assert_true(ht_jstr(&r, "token", token, sizeof token));
    assert_true(ht_is_token(token));
    assert_true(ht_jint(&r, "user.id", &uid));
    assert_int_equal(uid, id);
    assert_true(ht_jstr(&r, "user.username", name, sizeof name));
    assert_string_equal(name, "hank");
    json_t *body = ht_jbody(&r);
    check_session(ht_jpath(body, "session"), 12 * 3600, 30 * 60);
    json_decref(body);

    cookie_t c;
    parse_set_cookie(&r, &c);
    assert_string_equal(c.name, "gatehouse_session");
    assert_string_equal(c.value, token);
    assert_true(cookie_has(&c, "Path=/"));
    assert_true(cookie_has(&c, "Max-Age=43200"));
    assert_true(cookie_has(&c, "HttpOnly"));
    assert_true(cookie_has(&c, "SameSite=Lax"));
    assert_false(cookie_has(&c, "Secure"));

    /* Two logins give two different tokens. */
    char token2[64];
    login_ok(s, "hank", token2, NULL);
    assert_string_not_equal(token, token2);
}

static void login_form_urlencoded(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    const char *pw = "p@ss w+rd&=%";
    assert_int_equal(ht_register(s, "ivy", pw, NULL), 201);
    EXPECT(&r,
           send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL,
                     "username=ivy&password=p%40ss+w%2Brd%26%3D%25", &r),
           201);
    char token[64];
    assert_true(ht_jstr(&r, "token", token, sizeof token));
    assert_true(ht_is_token(token));
    assert_true(ht_jhas(&r, "session.id"));
    assert_true(ht_jhas(&r, "user.id"));
    cookie_t c;
    parse_set_cookie(&r, &c);
    assert_string_equal(c.value, token);
    assert_true(token_works(s, token));
    /* A charset parameter is fine; field order does not matter. */
    EXPECT(&r,
           send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded; charset=UTF-8",
                     NULL, "password=p%40ss%20w%2Brd%26%3D%25&username=ivy", &r),
           201);
    /* Wrong password by form: the same 401 as JSON. */
    EXPECT_ERR(&r,
               send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL,
                         "username=ivy&password=nope-nope", &r),
               401, "invalid_credentials");
    /* Bad percent-encoding and missing fields are invalid requests. */
    EXPECT_ERR(&r,
               send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL,
                         "username=%zz&password=whatever1", &r),
               400, "invalid_request");
    EXPECT_ERR(&r,
               send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL,
                         "username=ivy", &r),
               400, "invalid_request");
    EXPECT_ERR(
        &r, send_body(s, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL, "", &r),
        400, "invalid_request");
}

static void login_cookie_secure_uses_host_prefix(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--cookie-secure", "--session-ttl", "1h");
    ht_response_t r;
    register_ok(s, "jack", NULL);
    EXPECT(&r, login_json(s, "jack", PASSWORD, &r), 201);
    char token[64];
    assert_true(ht_jstr(&r, "token", token, sizeof token));
    cookie_t c;
    parse_set_cookie(&r, &c);
    assert_string_equal(c.name, "__Host-gatehouse_session");
    assert_string_equal(c.value, token);
    assert_true(cookie_has(&c, "Secure"));
    assert_true(cookie_has(&c, "Path=/"));
    assert_true(cookie_has(&c, "Max-Age=3600"));
    assert_true(cookie_has(&c, "HttpOnly"));
    assert_true(cookie_has(&c, "SameSite=Lax"));
    assert_false(cookie_has_prefix(&c, "Domain")); /* __Host- cookies must not name a domain */

    /* A browser sends the cookie back under that name. */
    char cookie[256];
    snprintf(cookie, sizeof cookie, "__Host-gatehouse_session=%s", token);
    EXPECT(&r, send_auth(s, "GET", "/v1/session", NULL, cookie, &r), 200);

    /* Logging out clears the same cookie; a __Host- cookie is only replaced with Secure. */
    EXPECT(&r, send_auth(s, "DELETE", "/v1/session", NULL, cookie, &r), 204);
    parse_set_cookie(&r, &c);
    assert_string_equal(c.name, "__Host-gatehouse_session");
    assert_string_equal(c.value, "");
    assert_true(cookie_has(&c, "Max-Age=0"));
    assert_true(cookie_has(&c, "Secure"));
    assert_true(cookie_has(&c, "Path=/"));
    assert_false(token_works(s, token));
}

static void login_unknown_user_and_wrong_password_look_the_same(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t wrong, unknown;
    register_ok(s, "kate", NULL);
    EXPECT_ERR(&wrong, login_json(s, "kate", "not the password", &wrong), 401,
               "invalid_credentials");
    EXPECT_ERR(&unknown, login_json(s, "nobody", "not the password", &unknown), 401,
               "invalid_credentials");
    assert_int_equal(wrong.body_len, unknown.body_len);
    assert_memory_equal(wrong.body, unknown.body, wrong.body_len);
    assert_int_equal(ht_header_count(&wrong, "Set-Cookie"), 0);
    assert_int_equal(ht_header_count(&unknown, "Set-Cookie"), 0);
    char a[256], b[256];
    ht_header(&wrong, "Content-Type", a, sizeof a);
    ht_header(&unknown, "Content-Type", b, sizeof b);
    assert_string_equal(a, b);
}

static void login_rejects_invalid_requests(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "liam", NULL);
    const char *bad[] = {
        "{\"username\":\"liam\"}",
        "{\"password\":\"" PASSWORD "\"}",
        "{}",
        "{\"username\":\"liam\",\"password\":42}",
        "{\"username\":7,\"password\":\"" PASSWORD "\"}",
        "{\"username\":null,\"password\":\"" PASSWORD "\"}",
        "{\"username\":\"liam\",\"password\":[\"" PASSWORD "\"]}",
        "{\"username\":\"liam\",\"password\":",
        "[\"liam\",\"" PASSWORD "\"]",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_ERR(&r, ht_json(s, "POST", "/v1/sessions", NULL, bad[i], &r), 400,
                   "invalid_request");
}

/* ---- who am I, tokens and cookies ---- */

static void whoami_by_bearer_and_by_cookie(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    long long id, mid;
    register_ok(s, "mia", &id);
    register_ok(s, "noah", &mid);
    char token[64], sid[32], other[64];
    login_ok(s, "mia", token, sid);
    login_ok(s, "noah", other, NULL);

    EXPECT(&r, ht_get(s, "/v1/session", token, &r), 200);
    EXPECT_JSON_CT(&r);
    long long uid;
    char name[128], got_sid[64];
    assert_true(ht_jint(&r, "user.id", &uid));
    assert_int_equal(uid, id);
    assert_true(ht_jstr(&r, "user.username", name, sizeof name));
    assert_string_equal(name, "mia");
    assert_true(ht_jstr(&r, "session.id", got_sid, sizeof got_sid));
    assert_string_equal(got_sid, sid);
    json_t *body = ht_jbody(&r);
    check_session(ht_jpath(body, "session"), 12 * 3600, 30 * 60);
    assert_null(json_object_get(body, "token"));
    json_decref(body);

    char cookie[512];
    snprintf(cookie, sizeof cookie, "gatehouse_session=%s", token);
    EXPECT(&r, send_auth(s, "GET", "/v1/session", NULL, cookie, &r), 200);
    assert_true(ht_jstr(&r, "user.username", name, sizeof name));
    assert_string_equal(name, "mia");
    /* Among other cookies. */
    snprintf(cookie, sizeof cookie, "theme=dark; gatehouse_session=%s; lang=en", token);
    EXPECT(&r, send_auth(s, "GET", "/v1/session", NULL, cookie, &r), 200);
    assert_true(ht_jstr(&r, "user.username", name, sizeof name));
    assert_string_equal(name, "mia");

    /* Header and cookie together: the header wins, whichever is valid. */
    char bearer[256];
    snprintf(bearer, sizeof bearer, "Bearer %s", other);
    snprintf(cookie, sizeof cookie, "gatehouse_session=%s", token);
    EXPECT(&r, send_auth(s, "GET", "/v1/session", bearer, cookie, &r), 200);
    assert_true(ht_jstr(&r, "user.username", name, sizeof name));
    assert_string_equal(name, "noah");
    EXPECT_ERR(&r,
               send_auth(s, "GET", "/v1/session",
                         "Bearer gh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", cookie, &r),
               401, "unauthenticated");
}

static void unauthenticated_requests_get_401(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "olga", NULL);
    char token[64];
    login_ok(s, "olga", token, NULL);

    EXPECT_ERR(&r, ht_get(s, "/v1/session", NULL, &r), 401, "unauthenticated");
    /* Forged: well-formed but never issued; a real token with one character changed. */
    EXPECT_ERR(&r, ht_get(s, "/v1/session", "gh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r),
               401, "unauthenticated");
    char forged[64];
    snprintf(forged, sizeof forged, "%s", token);
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    EXPECT_ERR(&r, ht_get(s, "/v1/session", forged, &r), 401, "unauthenticated");
    /* Malformed Authorization headers and malformed tokens. */
    char no_prefix[256], extra[256], basic_tok[256], longer[256];
    snprintf(no_prefix, sizeof no_prefix, "Bearer %s", token + 3);
    snprintf(extra, sizeof extra, "Bearer %s extra", token);
    snprintf(basic_tok, sizeof basic_tok, "Basic %s", token);
    snprintf(longer, sizeof longer, "Bearer %sA", token);
    const char *bad[] = {"Bearer",
                         "Bearer ",
                         "Basic b2xnYTpwYXNzd29yZA==",
                         "gh_short",
                         "Bearer gh_short",
                         "Bearer gh_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
                         no_prefix,
                         extra,
                         basic_tok,
                         longer,
                         "Token abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_ERR(&r, send_auth(s, "GET", "/v1/session", bad[i], NULL, &r), 401,
                   "unauthenticated");
    EXPECT_ERR(&r, send_auth(s, "GET", "/v1/session", NULL, "gatehouse_session=gh_nope", &r), 401,
               "unauthenticated");
    EXPECT_ERR(&r, send_auth(s, "GET", "/v1/session", NULL, "gatehouse_session=", &r), 401,
               "unauthenticated");
    /* Every route that needs a session says the same. */
    EXPECT_ERR(&r, ht_get(s, "/v1/sessions", NULL, &r), 401, "unauthenticated");
    EXPECT_ERR(&r, ht_delete(s, "/v1/sessions", NULL, &r), 401, "unauthenticated");
    EXPECT_ERR(&r, ht_delete(s, "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA", NULL, &r), 401,
               "unauthenticated");
    EXPECT_ERR(&r, ht_delete(s, "/v1/session", NULL, &r), 401, "unauthenticated");
    EXPECT_ERR(&r,
               ht_json(s, "PUT", "/v1/password", NULL,
                       "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"another pw\"}",
                       &r),
               401, "unauthenticated");
    /* The real token still works after all that. */
    assert_true(token_works(s, token));
}

/* ---- logging out ---- */

static void logout_clears_cookie_and_kills_token(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "pete", NULL);
    char token[64], other[64];
    login_ok(s, "pete", token, NULL);
    login_ok(s, "pete", other, NULL);

    EXPECT(&r, ht_delete(s, "/v1/session", token, &r), 204);
    assert_int_equal(r.body_len, 0);
    cookie_t c;
    parse_set_cookie(&r, &c);
    assert_string_equal(c.name, "gatehouse_session");
    assert_string_equal(c.value, "");
    assert_true(cookie_has(&c, "Path=/"));
    assert_true(cookie_has(&c, "Max-Age=0"));
    assert_true(cookie_has(&c, "HttpOnly"));
    assert_true(cookie_has(&c, "SameSite=Lax"));

    assert_false(token_works(s, token));
    EXPECT_ERR(&r, ht_delete(s, "/v1/session", token, &r), 401, "unauthenticated");
    /* Only that session ended. */
    assert_true(token_works(s, other));

    /* Logging out by cookie works the same way. */
    char cookie[256];
    snprintf(cookie, sizeof cookie, "gatehouse_session=%s", other);
    EXPECT(&r, send_auth(s, "DELETE", "/v1/session", NULL, cookie, &r), 204);
    assert_false(token_works(s, other));
}

static void get_and_delete_bodies_are_ignored(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "quinn", NULL);
    char token[64];
    login_ok(s, "quinn", token, NULL);
    EXPECT(&r, send_body(s, "GET", "/v1/session", "text/plain", token, "not json at all", &r), 200);
    EXPECT(&r, send_body(s, "DELETE", "/v1/session", "text/plain", token, "{broken", &r), 204);
    assert_false(token_works(s, token));
}

/* ---- listing and revoking sessions ---- */

static void list_sessions_newest_first_with_current(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "rosa", NULL);
    register_ok(s, "sam", NULL);
    char tok[3][64], sid[3][32], sam_sid[32];
    for (int i = 0; i < 3; i++) {
        login_ok(s, "rosa", tok[i], sid[i]);
        ht_sleep_ms(20);
    }
    login_ok(s, "sam", NULL, sam_sid);

    EXPECT(&r, ht_get(s, "/v1/sessions", tok[1], &r), 200);
    EXPECT_JSON_CT(&r);
    assert_int_equal(ht_jsize(&r, "sessions"), 3);
    json_t *body = ht_jbody(&r);
    json_t *list = json_object_get(body, "sessions");
    int current = 0;
    time_t prev = (time_t)INT64_MAX;
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(list, i);
        check_session(e, 12 * 3600, 30 * 60);
        const char *id = json_string_value(json_object_get(e, "id"));
        assert_string_equal(id, sid[2 - i]); /* newest first */
        assert_string_not_equal(id, sam_sid);
        json_t *cur = json_object_get(e, "current");
        assert_true(json_is_boolean(cur));
        if (json_is_true(cur)) {
            current++;
            assert_string_equal(id, sid[1]);
        }
        time_t created;
        assert_true(ht_parse_time(json_string_value(json_object_get(e, "created_at")), &created));
        assert_true(created <= prev);
        prev = created;
    }
    assert_int_equal(current, 1);
    json_decref(body);
    /* No token appears in the listing. */
    for (int i = 0; i < 3; i++)
        assert_null(strstr(r.body, tok[i] + 3));
}

static void revoke_one_session(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "tina", NULL);
    register_ok(s, "uma", NULL);
    char t1[64], s1[32], t2[64], s2[32], u[64], us[32];
    login_ok(s, "tina", t1, s1);
    login_ok(s, "tina", t2, s2);
    login_ok(s, "uma", u, us);

    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", s1);
    EXPECT(&r, ht_delete(s, path, t2, &r), 204);
    assert_int_equal(r.body_len, 0);
    assert_false(token_works(s, t1));
    assert_true(token_works(s, t2));
    EXPECT(&r, ht_get(s, "/v1/sessions", t2, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 1);

    /* Already revoked, unknown, malformed, and another user's: all 404, nothing changes. */
    EXPECT_ERR(&r, ht_delete(s, path, t2, &r), 404, "not_found");
    EXPECT_ERR(&r, ht_delete(s, "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA", t2, &r), 404, "not_found");
    EXPECT_ERR(&r, ht_delete(s, "/v1/sessions/nope", t2, &r), 404, "not_found");
    snprintf(path, sizeof path, "/v1/sessions/%s", us);
    EXPECT_ERR(&r, ht_delete(s, path, t2, &r), 404, "not_found");
    assert_true(token_works(s, u));
    assert_true(token_works(s, t2));

    /* Revoking the session one is using ends it too. */
    snprintf(path, sizeof path, "/v1/sessions/%s", s2);
    EXPECT(&r, ht_delete(s, path, t2, &r), 204);
    assert_false(token_works(s, t2));
    assert_true(token_works(s, u));
}

static void logout_everywhere(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "vera", NULL);
    register_ok(s, "walt", NULL);
    char t[4][64], w[64];
    for (int i = 0; i < 4; i++)
        login_ok(s, "vera", t[i], NULL);
    login_ok(s, "walt", w, NULL);
    EXPECT(&r, ht_delete(s, "/v1/sessions", t[2], &r), 204);
    for (int i = 0; i < 4; i++)
        assert_false(token_works(s, t[i]));
    assert_true(token_works(s, w));
    /* Logging in again works. */
    char again[64];
    login_ok(s, "vera", again, NULL);
    EXPECT(&r, ht_get(s, "/v1/sessions", again, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 1);
}

/* ---- password change ---- */

static void password_change(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "xena", NULL);
    register_ok(s, "yuri", NULL);
    char cur[64], other[64], third[64], y[64];
    login_ok(s, "xena", cur, NULL);
    login_ok(s, "xena", other, NULL);
    login_ok(s, "xena", third, NULL);
    login_ok(s, "yuri", y, NULL);

    /* Wrong current password: 401 and nothing changes (the session is not ended either). */
    EXPECT_ERR(
        &r,
        ht_json(s, "PUT", "/v1/password", cur,
                "{\"current_password\":\"wrong password\",\"new_password\":\"brand new pw\"}", &r),
        401, "invalid_credentials");
    assert_true(token_works(s, cur));
    assert_true(token_works(s, other));
    /* Weak new password, missing and mistyped fields. */
    EXPECT_ERR(&r,
               ht_json(s, "PUT", "/v1/password", cur,
                       "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"short\"}", &r),
               400, "weak_password");
    EXPECT_ERR(
        &r, ht_json(s, "PUT", "/v1/password", cur, "{\"current_password\":\"" PASSWORD "\"}", &r),
        400, "invalid_request");
    EXPECT_ERR(&r,
               ht_json(s, "PUT", "/v1/password", cur, "{\"new_password\":\"brand new pw\"}", &r),
               400, "invalid_request");
    EXPECT_ERR(&r,
               ht_json(s, "PUT", "/v1/password", cur,
                       "{\"current_password\":\"" PASSWORD "\",\"new_password\":12345678}", &r),
               400, "invalid_request");
    assert_true(token_works(s, other));

    EXPECT(&r,
           ht_json(s, "PUT", "/v1/password", cur,
                   "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"brand new pw\"}", &r),
           204);
    assert_int_equal(r.body_len, 0);
    assert_true(token_works(s, cur));
    assert_false(token_works(s, other));
    assert_false(token_works(s, third));
    assert_true(token_works(s, y));
    EXPECT(&r, ht_get(s, "/v1/sessions", cur, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 1);

    EXPECT_ERR(&r, login_json(s, "xena", PASSWORD, &r), 401, "invalid_credentials");
    EXPECT(&r, login_json(s, "xena", "brand new pw", &r), 201);
    /* The current password is now the new one. */
    EXPECT_ERR(&r,
               ht_json(s, "PUT", "/v1/password", cur,
                       "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"third pw 333\"}",
                       &r),
               401, "invalid_credentials");
}

/* ---- forward auth ---- */

static void forward_auth(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    long long id;
    register_ok(s, "zoe.q@example-1", &id);
    char token[64], sid[32];
    login_ok(s, "zoe.q@example-1", token, sid);

    EXPECT(&r, ht_get(s, "/v1/auth", token, &r), 200);
    assert_int_equal(r.body_len, 0);
    char v[256], idbuf[32];
    assert_true(ht_header(&r, "X-Auth-User", v, sizeof v));
    assert_string_equal(v, "zoe.q@example-1");
    snprintf(idbuf, sizeof idbuf, "%lld", id);
    assert_true(ht_header(&r, "X-Auth-User-Id", v, sizeof v));
    assert_string_equal(v, idbuf);
    assert_true(ht_header(&r, "X-Auth-Session-Id", v, sizeof v));
    assert_string_equal(v, sid);

    char cookie[256];
    snprintf(cookie, sizeof cookie, "gatehouse_session=%s", token);
    EXPECT(&r, send_auth(s, "GET", "/v1/auth", NULL, cookie, &r), 200);
    assert_true(ht_header(&r, "X-Auth-User", v, sizeof v));
    assert_string_equal(v, "zoe.q@example-1");

    EXPECT_ERR(&r, ht_get(s, "/v1/auth", NULL, &r), 401, "unauthenticated");
    assert_true(ht_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer realm=\"gatehouse\"");
    assert_false(ht_header(&r, "X-Auth-User", v, sizeof v));
    EXPECT_ERR(&r, ht_get(s, "/v1/auth", "gh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &r), 401,
               "unauthenticated");
    assert_true(ht_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_string_equal(v, "Bearer realm=\"gatehouse\"");

    EXPECT(&r, ht_delete(s, "/v1/session", token, &r), 204);
    EXPECT_ERR(&r, ht_get(s, "/v1/auth", token, &r), 401, "unauthenticated");
    assert_true(ht_header(&r, "WWW-Authenticate", v, sizeof v));
}

/* ---- request validation ---- */

static void malformed_and_mistyped_json_is_invalid_request(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    const char *bad[] = {
        "{\"username\":\"abe\",",
        "not json",
        "",
        "{\"username\":\"abe\",\"password\":\"" PASSWORD "\"} trailing",
        "{\"username\":'abe',\"password\":\"" PASSWORD "\"}",
        "[]",
        "[{\"username\":\"abe\",\"password\":\"" PASSWORD "\"}]",
        "\"abe\"",
        "42",
        "null",
        "true",
        "{\"username\":42,\"password\":\"" PASSWORD "\"}",
        "{\"username\":\"abe\",\"password\":true}",
        "{\"username\":null,\"password\":\"" PASSWORD "\"}",
        "{\"username\":{\"x\":1},\"password\":\"" PASSWORD "\"}",
        "{\"username\":\"abe\"}",
        "{\"password\":\"" PASSWORD "\"}",
        "{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_ERR(&r, ht_json(s, "POST", "/v1/users", NULL, bad[i], &r), 400, "invalid_request");
    /* None of that created the account. */
    register_ok(s, "abe", NULL);

    char token[64];
    login_ok(s, "abe", token, NULL);
    const char *bad_pw[] = {"{", "[]", "\"x\"", "{\"current_password\":1,\"new_password\":2}",
                            "{}"};
    for (size_t i = 0; i < sizeof bad_pw / sizeof bad_pw[0]; i++)
        EXPECT_ERR(&r, ht_json(s, "PUT", "/v1/password", token, bad_pw[i], &r), 400,
                   "invalid_request");
}

/* A valid registration body of exactly `size` bytes (padded with JSON whitespace). */
static char *sized_body(const char *user, size_t size)
{
    char head[256];
    int n = snprintf(head, sizeof head, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"", user);
    assert_true(n > 0 && (size_t)n + 1 <= size);
    char *b = malloc(size + 1);
    assert_non_null(b);
    memcpy(b, head, (size_t)n);
    memset(b + n, ' ', size - (size_t)n - 1);
    b[size - 1] = '}';
    b[size] = '\0';
    return b;
}

static void oversized_body_is_413(void **state)
{
    ht_server_t *s = SRV(state, 0), *small = SRV(state, 1);
    START(s);
    START(small, "--max-body", "1KiB");
    ht_response_t r;

    char *b = sized_body("big1", 64 * 1024 + 1);
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/users", NULL, b, &r), 413, "payload_too_large");
    free(b);
    b = sized_body("big1", 1024 * 1024);
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/sessions", NULL, b, &r), 413, "payload_too_large");
    free(b);
    /* Exactly at the limit is fine. */
    b = sized_body("big1", 64 * 1024);
    EXPECT(&r, ht_json(s, "POST", "/v1/users", NULL, b, &r), 201);
    free(b);
    /* The server is still fine afterwards. */
    assert_int_equal(ht_login(s, "big1", PASSWORD, NULL, NULL), 201);

    b = sized_body("small1", 1025);
    EXPECT_ERR(&r, ht_json(small, "POST", "/v1/users", NULL, b, &r), 413, "payload_too_large");
    free(b);
    b = sized_body("small1", 1024);
    EXPECT(&r, ht_json(small, "POST", "/v1/users", NULL, b, &r), 201);
    free(b);
    /* The form login is limited the same way. */
    char form[2048];
    int n = snprintf(form, sizeof form, "username=small1&password=");
    memset(form + n, 'x', sizeof form - (size_t)n - 1);
    form[sizeof form - 1] = '\0';
    EXPECT_ERR(&r,
               send_body(small, "POST", "/v1/sessions", "application/x-www-form-urlencoded", NULL,
                         form, &r),
               413, "payload_too_large");
}

static void wrong_content_type_is_415(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    const char *body = "{\"username\":\"cleo\",\"password\":\"" PASSWORD "\"}";
    const char *bad[] = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                         "application/jsonx", "text/json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT_ERR(&r, send_body(s, "POST", "/v1/users", bad[i], NULL, body, &r), 415,
                   "unsupported_media_type");
    EXPECT_ERR(&r, send_body(s, "POST", "/v1/users", NULL, NULL, body, &r), 415,
               "unsupported_media_type");
    EXPECT(&r, send_body(s, "POST", "/v1/users", "application/json; charset=utf-8", NULL, body, &r),
           201);

    EXPECT_ERR(&r, send_body(s, "POST", "/v1/sessions", "text/plain", NULL, body, &r), 415,
               "unsupported_media_type");
    EXPECT_ERR(&r, send_body(s, "POST", "/v1/sessions", "multipart/form-data", NULL, body, &r), 415,
               "unsupported_media_type");
    EXPECT_ERR(&r, send_body(s, "POST", "/v1/sessions", NULL, NULL, body, &r), 415,
               "unsupported_media_type");
    char token[64];
    login_ok(s, "cleo", token, NULL);
    EXPECT_ERR(&r,
               send_body(s, "PUT", "/v1/password", "text/plain", token,
                         "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"new pw 12\"}",
                         &r),
               415, "unsupported_media_type");
    EXPECT_ERR(&r,
               send_body(s, "PUT", "/v1/password", "application/x-www-form-urlencoded", token,
                         "current_password=x&new_password=y", &r),
               415, "unsupported_media_type");
    /* Nothing changed the password. */
    assert_int_equal(ht_login(s, "cleo", PASSWORD, NULL, NULL), 201);
}

static void unknown_routes_are_404(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    const char *paths[] = {"/",
                           "/v1",
                           "/v1/",
                           "/v1/userz",
                           "/v2/users",
                           "/v1/users/1",
                           "/v1/sessions/abc/def",
                           "/v1/admin",
                           "/nope",
                           "/debug",
                           "/v1/session/extra"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        EXPECT_ERR(&r, ht_get(s, paths[i], NULL, &r), 404, "not_found");
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/nothing", NULL, "{}", &r), 404, "not_found");
}

static void wrong_method_is_405_with_allow(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--admin-token", ADMIN);
    ht_response_t r;
    struct {
        const char *method, *path;
        const char *allowed[3];
    } cases[] = {
        {"GET", "/v1/users", {"POST"}},
        {"PUT", "/v1/session", {"GET", "DELETE"}},
        {"POST", "/v1/session", {"GET", "DELETE"}},
        {"PUT", "/v1/sessions", {"POST", "GET", "DELETE"}},
        {"GET", "/v1/sessions/AAAAAAAAAAAAAAAAAAAAAA", {"DELETE"}},
        {"GET", "/v1/password", {"PUT"}},
        {"POST", "/v1/auth", {"GET"}},
        {"DELETE", "/healthz", {"GET"}},
        {"POST", "/readyz", {"GET"}},
        {"PUT", "/metrics", {"GET"}},
        {"POST", "/debug/memory", {"GET"}},
        {"PUT", "/v1/admin/users", {"POST", "GET"}},
        {"POST", "/v1/admin/users/1", {"DELETE"}},
        {"POST", "/v1/admin/users/1/sessions", {"GET", "DELETE"}},
        {"GET", "/v1/admin/users/1/sessions/AAAAAAAAAAAAAAAAAAAAAA", {"DELETE"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[256], allow[256];
        snprintf(what, sizeof what, "%s %s", cases[i].method, cases[i].path);
        long st = ht_request(s, cases[i].method, cases[i].path, NULL, NULL, 0, &r);
        check_error(&r, st, 405, "method_not_allowed", what, __LINE__);
        if (!ht_header(&r, "Allow", allow, sizeof allow))
            fail_msg("%s: 405 without Allow", what);
        for (size_t k = 0; k < 3 && cases[i].allowed[k]; k++)
            if (!allow_has(allow, cases[i].allowed[k]))
                fail_msg("%s: Allow \"%s\" lacks %s", what, allow, cases[i].allowed[k]);
        if (allow_has(allow, cases[i].method))
            fail_msg("%s: Allow \"%s\" names the refused method", what, allow);
    }
}

/* ---- operations ---- */

static void health_and_readiness(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    char v[64];
    EXPECT(&r, ht_get(s, "/healthz", NULL, &r), 200);
    EXPECT_JSON_CT(&r);
    assert_true(ht_jstr(&r, "status", v, sizeof v));
    assert_string_equal(v, "ok");
    EXPECT(&r, ht_get(s, "/readyz", NULL, &r), 200);
    EXPECT_JSON_CT(&r);
    assert_true(ht_jstr(&r, "status", v, sizeof v));
    assert_string_equal(v, "ready");
}

/* The value of the sample line that starts with `series` + ' ' (exact series, labels included). */
static bool metric_value(const char *text, const char *series, double *out)
{
    size_t n = strlen(series);
    const char *line = text;
    while (line && *line) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            *out = strtod(line + n + 1, NULL);
            return true;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static bool metric_present(const char *text, const char *name)
{
    size_t n = strlen(name);
    const char *line = text;
    while (line && *line) {
        if (strncmp(line, name, n) == 0 && (line[n] == ' ' || line[n] == '{'))
            return true;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static void metrics_exposition(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "dora", NULL);
    char t1[64], s1[32], t2[64];
    login_ok(s, "dora", t1, s1);
    login_ok(s, "dora", t2, NULL);
    EXPECT_ERR(&r, login_json(s, "dora", "bad password", &r), 401, "invalid_credentials");
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", s1);
    EXPECT(&r, ht_delete(s, path, t2, &r), 204);

    EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
    assert_false(r.truncated);
    char ct[256];
    assert_true(ht_header(&r, "Content-Type", ct, sizeof ct));
    assert_true(strncmp(ct, "text/plain; version=0.0.4", 25) == 0);
    const char *names[] = {
        "gatehouse_sessions_active",      "gatehouse_sessions_created_total",
        "gatehouse_sessions_ended_total", "gatehouse_logins_total",
        "gatehouse_http_requests_total",  "gatehouse_http_request_duration_seconds_bucket",
        "gatehouse_password_queue_depth", "gatehouse_memory_bytes",
        "gatehouse_memory_limit_bytes",   "gatehouse_memory_unexplained_bytes",
        "process_resident_memory_bytes",  "process_start_time_seconds",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!metric_present(r.body, names[i]))
            fail_msg("metric %s missing from /metrics", names[i]);
    assert_non_null(strstr(r.body, "# TYPE gatehouse_sessions_active gauge\n"));
    assert_non_null(strstr(r.body, "# TYPE gatehouse_http_requests_total counter\n"));
    assert_non_null(strstr(r.body, "# TYPE gatehouse_http_request_duration_seconds histogram\n"));

    double v = -1;
    assert_true(metric_value(r.body, "gatehouse_sessions_active", &v));
    assert_true(v == 1);
    assert_true(metric_value(r.body, "gatehouse_sessions_created_total", &v));
    assert_true(v == 2);
    assert_true(metric_value(r.body, "gatehouse_logins_total{result=\"success\"}", &v));
    assert_true(v == 2);
    assert_true(metric_value(r.body, "gatehouse_logins_total{result=\"failure\"}", &v));
    assert_true(v == 1);
    assert_true(metric_value(r.body, "gatehouse_sessions_ended_total{reason=\"revoked\"}", &v));
    assert_true(v == 1);
    assert_true(metric_value(r.body, "gatehouse_memory_bytes{component=\"sessions\"}", &v));
    assert_true(v > 0);
    /* Per route template, never per raw path. */
    assert_non_null(strstr(r.body, "route=\"/v1/sessions/{id}\""));
    assert_null(strstr(r.body, s1));
    assert_null(strstr(r.body, t1 + 3));
}

static void debug_memory_needs_the_admin_token(void **state)
{
    ht_server_t *s = SRV(state, 0), *noadmin = SRV(state, 1);
    START(s, "--admin-token", ADMIN);
    START(noadmin);
    ht_response_t r;
    register_ok(s, "earl", NULL);
    char token[64];

    EXPECT_ERR(&r, ht_get(s, "/debug/memory", NULL, &r), 401, "unauthenticated");
    EXPECT_ERR(&r, ht_get(s, "/debug/memory", "wrong-admin-token", &r), 403, "forbidden");
    EXPECT(&r, ht_get(s, "/debug/memory", ADMIN, &r), 200);
    EXPECT_JSON_CT(&r);
    long long base_bytes = -1, v = -1;
    assert_true(ht_jint(&r, "components.sessions.bytes", &base_bytes));

    login_ok(s, "earl", token, NULL);
    /* A user's session token is not an admin token. */
    EXPECT_ERR(&r, ht_get(s, "/debug/memory", token, &r), 403, "forbidden");

    EXPECT(&r, ht_get(s, "/debug/memory", ADMIN, &r), 200);
    const char *ints[] = {
        "rss_bytes",   "allocator_in_use_bytes", "accounted_bytes", "unexplained_bytes",
        "limit_bytes", "session_budget_bytes",   "sessions_active"};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (!ht_jint(&r, ints[i], &v))
            fail_msg("/debug/memory: %s is not an integer: %.600s", ints[i], r.body);
    assert_true(ht_jint(&r, "rss_bytes", &v) && v > 0);
    assert_true(ht_jint(&r, "limit_bytes", &v) && v > 0);
    assert_true(ht_jint(&r, "session_budget_bytes", &v) && v > 0);
    assert_true(ht_jint(&r, "sessions_active", &v) && v == 1);
    char policy[64];
    assert_true(ht_jstr(&r, "session_policy", policy, sizeof policy));
    assert_string_equal(policy, "evict-idle");
    const char *components[] = {"sessions", "users",   "ratelimit", "http",
                                "password", "metrics", "sqlite",    "other"};
    for (size_t i = 0; i < sizeof components / sizeof components[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "components.%s.bytes", components[i]);
        if (!ht_jint(&r, p, &v))
            fail_msg("/debug/memory: %s missing: %.600s", p, r.body);
        snprintf(p, sizeof p, "components.%s.objects", components[i]);
        if (!ht_jint(&r, p, &v))
            fail_msg("/debug/memory: %s missing: %.600s", p, r.body);
    }
    long long with_session = -1;
    assert_true(ht_jint(&r, "components.sessions.bytes", &with_session));
    assert_true(with_session > base_bytes);
    assert_null(strstr(r.body, token + 3));

    /* When the session ends, its bytes come back. */
    EXPECT(&r, ht_delete(s, "/v1/session", token, &r), 204);
    EXPECT(&r, ht_get(s, "/debug/memory", ADMIN, &r), 200);
    assert_true(ht_jint(&r, "sessions_active", &v) && v == 0);
    assert_true(ht_jint(&r, "components.sessions.bytes", &v));
    assert_int_equal(v, base_bytes);

    /* No admin token configured: admin routes are forbidden for everyone. */
    EXPECT_ERR(&r, ht_get(noadmin, "/debug/memory", ADMIN, &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_get(noadmin, "/v1/admin/users", ADMIN, &r), 403, "forbidden");
}

static void debug_memory_reports_the_configured_policy(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--admin-token", ADMIN, "--session-policy", "refuse", "--session-memory", "4MiB",
          "--memory-limit", "1GiB");
    ht_response_t r;
    EXPECT(&r, ht_get(s, "/debug/memory", ADMIN, &r), 200);
    char policy[64];
    long long v;
    assert_true(ht_jstr(&r, "session_policy", policy, sizeof policy));
    assert_string_equal(policy, "refuse");
    assert_true(ht_jint(&r, "session_budget_bytes", &v));
    assert_int_equal(v, 4 * 1024 * 1024);
    assert_true(ht_jint(&r, "limit_bytes", &v));
    assert_int_equal(v, 1024LL * 1024 * 1024);
}

/* ---- admin ---- */

static long admin(const ht_server_t *s, const char *method, const char *path, const char *json,
                  ht_response_t *r)
{
    if (json)
        return ht_json(s, method, path, ADMIN, json, r);
    return ht_request(s, method, path, (const char *const[]){"Authorization: Bearer " ADMIN, NULL},
                      NULL, 0, r);
}

static void admin_routes_need_the_admin_token(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--admin-token", ADMIN);
    ht_response_t r;
    register_ok(s, "fay", NULL);
    char token[64];
    login_ok(s, "fay", token, NULL);
    const char *body = "{\"username\":\"gus\",\"password\":\"" PASSWORD "\"}";

    EXPECT_ERR(&r, ht_get(s, "/v1/admin/users", NULL, &r), 401, "unauthenticated");
    EXPECT_ERR(&r, ht_get(s, "/v1/admin/users", "not-the-admin-token", &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_get(s, "/v1/admin/users", token, &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/admin/users", NULL, body, &r), 401, "unauthenticated");
    EXPECT_ERR(&r, ht_json(s, "POST", "/v1/admin/users", token, body, &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_delete(s, "/v1/admin/users/1", token, &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_get(s, "/v1/admin/users/1/sessions", "x", &r), 403, "forbidden");
    EXPECT_ERR(&r, ht_delete(s, "/v1/admin/users/1/sessions", NULL, &r), 401, "unauthenticated");
    /* The admin token is not a session token either. */
    EXPECT_ERR(&r, ht_get(s, "/v1/session", ADMIN, &r), 401, "unauthenticated");
    /* Nothing happened. */
    assert_true(token_works(s, token));
    EXPECT_ERR(&r, login_json(s, "gus", PASSWORD, &r), 401, "invalid_credentials");
}

static void admin_creates_and_lists_users(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--admin-token", ADMIN, "--registration", "closed");
    ht_response_t r;
    long long ids[3];
    const char *names[3] = {"hana", "igor", "jude"};
    for (int i = 0; i < 3; i++) {
        char body[256], name[64];
        snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}",
                 names[i]);
        EXPECT(&r, admin(s, "POST", "/v1/admin/users", body, &r), 201);
        assert_true(ht_jint(&r, "id", &ids[i]));
        assert_true(ht_jstr(&r, "username", name, sizeof name));
        assert_string_equal(name, names[i]);
    }
    /* Registration is closed for the public, and the admin-made users can log in. */
    EXPECT_ERR(&r,
               ht_json(s, "POST", "/v1/users", NULL,
                       "{\"username\":\"kim\",\"password\":\"" PASSWORD "\"}", &r),
               403, "registration_closed");
    assert_int_equal(ht_login(s, "hana", PASSWORD, NULL, NULL), 201);
    EXPECT_ERR(&r,
               admin(s, "POST", "/v1/admin/users",
                     "{\"username\":\"HANA\",\"password\":\"pw-pw-pw\"}", &r),
               409, "username_taken");
    EXPECT_ERR(&r,
               admin(s, "POST", "/v1/admin/users",
                     "{\"username\":\"bad name\",\"password\":\"pw-pw-pw\"}", &r),
               400, "invalid_username");
    EXPECT_ERR(
        &r, admin(s, "POST", "/v1/admin/users", "{\"username\":\"lena\",\"password\":\"pw\"}", &r),
        400, "weak_password");
    EXPECT_ERR(&r, admin(s, "POST", "/v1/admin/users", "{\"username\":\"lena\"}", &r), 400,
               "invalid_request");

    EXPECT(&r, admin(s, "GET", "/v1/admin/users", NULL, &r), 200);
    EXPECT_JSON_CT(&r);
    assert_int_equal(ht_jsize(&r, "users"), 3);
    for (int i = 0; i < 3; i++) {
        char p[64], v[64];
        long long id;
        time_t t;
        snprintf(p, sizeof p, "users.%d.id", i);
        assert_true(ht_jint(&r, p, &id));
        assert_int_equal(id, ids[i]); /* ascending ids */
        snprintf(p, sizeof p, "users.%d.username", i);
        assert_true(ht_jstr(&r, p, v, sizeof v));
        assert_string_equal(v, names[i]);
        snprintf(p, sizeof p, "users.%d.created_at", i);
        assert_true(ht_jstr(&r, p, v, sizeof v));
        assert_true(ht_parse_time(v, &t));
        snprintf(p, sizeof p, "users.%d.password", i);
        assert_false(ht_jhas(&r, p));
    }
    assert_null(strstr(r.body, "$argon2"));

    /* Paging: limit, then after. */
    char path[128];
    long long id;
    EXPECT(&r, admin(s, "GET", "/v1/admin/users?limit=1", NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "users"), 1);
    assert_true(ht_jint(&r, "users.0.id", &id));
    assert_int_equal(id, ids[0]);
    snprintf(path, sizeof path, "/v1/admin/users?after=%lld&limit=1", ids[0]);
    EXPECT(&r, admin(s, "GET", path, NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "users"), 1);
    assert_true(ht_jint(&r, "users.0.id", &id));
    assert_int_equal(id, ids[1]);
    snprintf(path, sizeof path, "/v1/admin/users?after=%lld", ids[1]);
    EXPECT(&r, admin(s, "GET", path, NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "users"), 1);
    assert_true(ht_jint(&r, "users.0.id", &id));
    assert_int_equal(id, ids[2]);
    snprintf(path, sizeof path, "/v1/admin/users?after=%lld", ids[2]);
    EXPECT(&r, admin(s, "GET", path, NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "users"), 0);
}

static void admin_manages_sessions_and_deletes_users(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--admin-token", ADMIN);
    ht_response_t r;
    long long a, b;
    register_ok(s, "mona", &a);
    register_ok(s, "ned", &b);
    char a1[64], as1[32], a2[64], as2[32], a3[64], b1[64], bs1[32];
    login_ok(s, "mona", a1, as1);
    login_ok(s, "mona", a2, as2);
    login_ok(s, "mona", a3, NULL);
    login_ok(s, "ned", b1, bs1);

    char path[256];
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", a);
    EXPECT(&r, admin(s, "GET", path, NULL, &r), 200);
    EXPECT_JSON_CT(&r);
    assert_int_equal(ht_jsize(&r, "sessions"), 3);
    json_t *body = ht_jbody(&r);
    bool seen1 = false;
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(json_object_get(body, "sessions"), i);
        check_session(e, 12 * 3600, 30 * 60);
        seen1 |= strcmp(json_string_value(json_object_get(e, "id")), as1) == 0;
        assert_string_not_equal(json_string_value(json_object_get(e, "id")), bs1);
    }
    json_decref(body);
    assert_true(seen1);
    EXPECT_ERR(&r, admin(s, "GET", "/v1/admin/users/999999/sessions", NULL, &r), 404, "not_found");

    /* Revoke one of mona's sessions. */
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions/%s", a, as1);
    EXPECT(&r, admin(s, "DELETE", path, NULL, &r), 204);
    assert_false(token_works(s, a1));
    assert_true(token_works(s, a2));
    EXPECT_ERR(&r, admin(s, "DELETE", path, NULL, &r), 404, "not_found");
    /* Ned's session id under mona's id is not found, and stays alive. */
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions/%s", a, bs1);
    EXPECT_ERR(&r, admin(s, "DELETE", path, NULL, &r), 404, "not_found");
    assert_true(token_works(s, b1));

    /* Revoke all of mona's sessions. */
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", a);
    EXPECT(&r, admin(s, "DELETE", path, NULL, &r), 204);
    assert_false(token_works(s, a2));
    assert_false(token_works(s, a3));
    assert_true(token_works(s, b1));
    EXPECT(&r, admin(s, "GET", path, NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 0);
    /* Mona can still log in. */
    assert_int_equal(ht_login(s, "mona", PASSWORD, NULL, NULL), 201);

    /* Delete ned: his session ends and he cannot log in. */
    snprintf(path, sizeof path, "/v1/admin/users/%lld", b);
    EXPECT(&r, admin(s, "DELETE", path, NULL, &r), 204);
    assert_false(token_works(s, b1));
    EXPECT_ERR(&r, login_json(s, "ned", PASSWORD, &r), 401, "invalid_credentials");
    EXPECT_ERR(&r, admin(s, "DELETE", path, NULL, &r), 404, "not_found");
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", b);
    EXPECT_ERR(&r, admin(s, "GET", path, NULL, &r), 404, "not_found");
    EXPECT_ERR(&r, admin(s, "DELETE", "/v1/admin/users/999999", NULL, &r), 404, "not_found");
    EXPECT_ERR(&r, admin(s, "DELETE", "/v1/admin/users/abc", NULL, &r), 404, "not_found");
    EXPECT(&r, admin(s, "GET", "/v1/admin/users", NULL, &r), 200);
    assert_int_equal(ht_jsize(&r, "users"), 1);
    /* The name is free again. */
    register_ok(s, "ned", NULL);
}

/* ---- throttling ---- */

static void failed_logins_are_throttled_per_ip(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--throttle-ip", "3/1m");
    ht_response_t r;
    register_ok(s, "olaf", NULL); /* 1 of 3 */
    /* Successful logins never count. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(ht_login(s, "olaf", PASSWORD, NULL, NULL), 201);
    EXPECT_ERR(&r, login_json(s, "olaf", "wrong password", &r), 401, "invalid_credentials");
    EXPECT_ERR(&r, login_json(s, "nobody", "wrong password", &r), 401, "invalid_credentials");
    EXPECT_ERR(&r, login_json(s, "olaf", "wrong password", &r), 429, "rate_limited");
    char ra[64];
    assert_true(ht_header(&r, "Retry-After", ra, sizeof ra));
    char *end;
    long secs = strtol(ra, &end, 10);
    assert_true(*ra && !*end && secs >= 1 && secs <= 60);
    assert_int_equal(ht_register(s, "pia", PASSWORD, NULL), 429);
}

/* ---- expiry ---- */

static void tokens_die_when_idle_and_at_the_absolute_deadline(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--session-ttl", "2s", "--idle-ttl", "1s");
    ht_response_t r;
    register_ok(s, "rita", NULL);
    char idle_tok[64], busy_tok[64];
    EXPECT(&r, login_json(s, "rita", PASSWORD, &r), 201);
    long long t0 = ht_now_ms();
    assert_true(ht_jstr(&r, "token", idle_tok, sizeof idle_tok));
    json_t *body = ht_jbody(&r);
    check_session(ht_jpath(body, "session"), 2, 1);
    json_decref(body);
    cookie_t c;
    parse_set_cookie(&r, &c);
    assert_true(cookie_has(&c, "Max-Age=2"));
    login_ok(s, "rita", busy_tok, NULL);

    /* busy_tok is used every 375 ms: it outlives the idle timeout ... */
    for (int i = 1; i <= 4; i++) {
        long long at = t0 + 375LL * i, now = ht_now_ms();
        if (at > now)
            ht_sleep_ms(at - now);
        bool alive = token_works(s, busy_tok);
        /* Only meaningful while we are on schedule (a stalled machine proves nothing). */
        if (ht_now_ms() - t0 < 1800)
            assert_true(alive);
    }
    /* ... while idle_tok, unused for more than a second, is gone. */
    long long now = ht_now_ms();
    if (t0 + 1600 > now)
        ht_sleep_ms(t0 + 1600 - now);
    EXPECT_ERR(&r, ht_get(s, "/v1/session", idle_tok, &r), 401, "unauthenticated");
    /* Use keeps busy_tok alive only until the absolute deadline. */
    now = ht_now_ms();
    if (t0 + 2600 > now)
        ht_sleep_ms(t0 + 2600 - now);
    EXPECT_ERR(&r, ht_get(s, "/v1/session", busy_tok, &r), 401, "unauthenticated");

    /* Both ends are counted under their reasons (expiry is incremental: allow a few ticks). */
    double idle = 0, expired = 0, active = -1;
    long long deadline = ht_now_ms() + 3000;
    do {
        EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
        metric_value(r.body, "gatehouse_sessions_ended_total{reason=\"idle\"}", &idle);
        metric_value(r.body, "gatehouse_sessions_ended_total{reason=\"expired\"}", &expired);
        metric_value(r.body, "gatehouse_sessions_active", &active);
        if (idle == 1 && expired == 1 && active == 0)
            break;
        ht_sleep_ms(100);
    } while (ht_now_ms() < deadline);
    assert_true(idle == 1);
    assert_true(expired == 1);
    assert_true(active == 0);
}

/* ---- limits ---- */

static void max_sessions_per_user_evicts_the_oldest(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--max-sessions-per-user", "3");
    ht_response_t r;
    register_ok(s, "sara", NULL);
    register_ok(s, "theo", NULL);
    char t[5][64], theo[64];
    login_ok(s, "theo", theo, NULL);
    for (int i = 0; i < 5; i++) {
        login_ok(s, "sara", t[i], NULL);
        ht_sleep_ms(5);
    }
    assert_false(token_works(s, t[0]));
    assert_false(token_works(s, t[1]));
    for (int i = 2; i < 5; i++)
        assert_true(token_works(s, t[i]));
    assert_true(token_works(s, theo));
    EXPECT(&r, ht_get(s, "/v1/sessions", t[4], &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 3);
    double v = 0;
    EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
    assert_true(metric_value(r.body, "gatehouse_sessions_ended_total{reason=\"evicted\"}", &v));
    assert_true(v == 2);
}

/* Logs in as fresh users until a login is refused (or `max` logins); returns the number of
 * successful logins and leaves the refusing response in r. */
static int login_until_refused(const ht_server_t *s, int max, char first[64], char last[64],
                               ht_response_t *r)
{
    int ok = 0;
    for (int i = 0; i < max; i++) {
        long st = login_json(s, "uma", PASSWORD, r);
        if (st != 201)
            return ok;
        if (ok == 0)
            assert_true(ht_jstr(r, "token", first, 64));
        assert_true(ht_jstr(r, "token", last, 64));
        ok++;
    }
    return ok;
}

static void session_budget_refuse_answers_503(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--session-policy", "refuse", "--session-memory", "160KiB", "--max-sessions-per-user",
          "100000");
    ht_response_t r;
    register_ok(s, "uma", NULL);
    char first[64] = "", last[64] = "";
    int ok = login_until_refused(s, 5000, first, last, &r);
    if (ok == 5000)
        fail_msg("5000 logins within a 160KiB session budget and none refused");
    assert_true(ok > 0);
    check_error(&r, r.status, 503, "overloaded", "login at the session budget", __LINE__);
    char ra[32];
    assert_true(ht_header(&r, "Retry-After", ra, sizeof ra));
    /* Existing sessions are untouched; ending one makes room for a new login. */
    assert_true(token_works(s, first));
    assert_true(token_works(s, last));
    EXPECT(&r, ht_delete(s, "/v1/session", last, &r), 204);
    EXPECT(&r, login_json(s, "uma", PASSWORD, &r), 201);
    double v = 0;
    EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
    assert_true(metric_value(r.body, "gatehouse_logins_total{result=\"overloaded\"}", &v));
    assert_true(v == 1);
}

static void session_budget_evict_idle_drops_the_least_recently_used(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s, "--session-policy", "evict-idle", "--session-memory", "160KiB",
          "--max-sessions-per-user", "100000");
    ht_response_t r;
    register_ok(s, "uma", NULL);
    /* Find how many sessions the budget holds with a refuse-free run: keep the first token
     * fresh by using it, so the least recently used is some other session. */
    char first[64] = "", last[64] = "", second[64] = "";
    EXPECT(&r, login_json(s, "uma", PASSWORD, &r), 201);
    assert_true(ht_jstr(&r, "token", first, sizeof first));
    EXPECT(&r, login_json(s, "uma", PASSWORD, &r), 201);
    assert_true(ht_jstr(&r, "token", second, sizeof second));
    double evicted = 0;
    int n = 0;
    for (; n < 5000 && evicted == 0; n++) {
        if (n % 64 == 0)
            assert_true(token_works(s, first)); /* keeps it recently used */
        EXPECT(&r, login_json(s, "uma", PASSWORD, &r), 201);
        assert_true(ht_jstr(&r, "token", last, sizeof last));
        if (n % 64 == 63) {
            EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
            metric_value(r.body, "gatehouse_sessions_ended_total{reason=\"evicted\"}", &evicted);
        }
    }
    if (evicted == 0)
        fail_msg("5000 logins within a 160KiB session budget and nothing evicted");
    assert_true(token_works(s, first));   /* recently used: kept */
    assert_false(token_works(s, second)); /* least recently used: evicted */
    assert_true(token_works(s, last));
}

typedef struct {
    const ht_server_t *s;
    long status;
    char code[64];
    char retry_after[32];
} login_job_t;

static void *login_job(void *arg)
{
    login_job_t *job = arg;
    ht_response_t *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    job->status = ht_json(job->s, "POST", "/v1/sessions", NULL,
                          "{\"username\":\"wes\",\"password\":\"" PASSWORD "\"}", r);
    snprintf(job->code, sizeof job->code, "%s", r->error_code);
    ht_header(r, "Retry-After", job->retry_after, sizeof job->retry_after);
    free(r);
    return NULL;
}

static void password_pool_full_is_503_overloaded(void **state)
{
    ht_server_t *s = SRV(state, 0);
    /* One worker, a queue of one and a slow hash: a burst of logins overflows the queue. */
    START(s, "--hash-memory", "32MiB", "--hash-ops", "4", "--hash-workers", "1", "--hash-queue",
          "1");
    ht_response_t r;
    register_ok(s, "wes", NULL);
    char token[64];
    login_ok(s, "wes", token, NULL);

    enum { N = 12 };
    login_job_t jobs[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (login_job_t){.s = s, .status = -1};
        assert_int_equal(pthread_create(&th[i], NULL, login_job, &jobs[i]), 0);
    }
    /* Token checks do not queue behind the hashing. */
    EXPECT(&r, ht_get(s, "/v1/session", token, &r), 200);
    int ok = 0, overloaded = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].status == 201) {
            ok++;
        } else if (jobs[i].status == 503 && strcmp(jobs[i].code, "overloaded") == 0) {
            overloaded++;
            assert_string_equal(jobs[i].retry_after, "1");
        } else {
            fail_msg("burst login -> %ld \"%s\", want 201 or 503 overloaded", jobs[i].status,
                     jobs[i].code);
        }
    }
    assert_true(ok >= 1);
    assert_true(overloaded >= 1);
    double v = -1;
    EXPECT(&r, ht_get(s, "/metrics", NULL, &r), 200);
    assert_true(metric_value(r.body, "gatehouse_logins_total{result=\"overloaded\"}", &v));
    assert_true(v == overloaded);
}

/* ---- durability (the restart issue) ---- */

static void sessions_survive_a_restart(void **state)
{
    ht_server_t *s = SRV(state, 0);
    START(s);
    ht_response_t r;
    register_ok(s, "vic", NULL);
    char keep[64], keep_sid[32], gone[64];
    login_ok(s, "vic", keep, keep_sid);
    login_ok(s, "vic", gone, NULL);
    EXPECT(&r, ht_delete(s, "/v1/session", gone, &r), 204);
    assert_int_equal(ht_server_stop(s), 0);

    START(s); /* same data dir */
    EXPECT(&r, ht_get(s, "/v1/session", keep, &r), 200);
    char sid[32];
    assert_true(ht_jstr(&r, "session.id", sid, sizeof sid));
    assert_string_equal(sid, keep_sid);
    assert_false(token_works(s, gone));
    EXPECT(&r, ht_get(s, "/v1/sessions", keep, &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(register_returns_id_and_username),
        T(register_duplicate_is_409_case_insensitive),
        T(register_rejects_invalid_usernames),
        T(register_rejects_weak_passwords),
        T(register_rejects_invalid_utf8_and_nul),
        T(register_closed_is_403),
        T(login_json_returns_token_session_user_and_cookie),
        T(login_form_urlencoded),
        T(login_cookie_secure_uses_host_prefix),
        T(failed_logins_are_throttled_per_ip),
        T(login_unknown_user_and_wrong_password_look_the_same),
        T(login_rejects_invalid_requests),
        T(whoami_by_bearer_and_by_cookie),
        T(unauthenticated_requests_get_401),
        T(logout_clears_cookie_and_kills_token),
        T(get_and_delete_bodies_are_ignored),
        T(list_sessions_newest_first_with_current),
        T(revoke_one_session),
        T(logout_everywhere),
        T(password_change),
        T(forward_auth),
        T(malformed_and_mistyped_json_is_invalid_request),
        T(oversized_body_is_413),
        T(wrong_content_type_is_415),
        T(unknown_routes_are_404),
        T(wrong_method_is_405_with_allow),
        T(health_and_readiness),
        T(metrics_exposition),
        T(debug_memory_needs_the_admin_token),
        T(debug_memory_reports_the_configured_policy),
        T(admin_routes_need_the_admin_token),
        T(admin_creates_and_lists_users),
        T(admin_manages_sessions_and_deletes_users),
        T(tokens_die_when_idle_and_at_the_absolute_deadline),
        T(max_sessions_per_user_evicts_the_oldest),
        T(session_budget_refuse_answers_503),
        T(session_budget_evict_idle_drops_the_least_recently_used),
        T(password_pool_full_is_503_overloaded),
        T(sessions_survive_a_restart),
#undef T
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
