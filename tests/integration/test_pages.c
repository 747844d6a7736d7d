/*
 * test_pages.c — the browser's front door through the real binary: the login page and where a
 * form login sends the browser (never to a foreign host), the account page and its buttons with
 * their CSRF checks, /ops, and the 302 that forward auth answers browsers.
 *
 * Requests are built the way a browser sends them (form bodies, Cookie, Origin, Accept:
 * text/html); assertions are about status, Location, Set-Cookie, the HTML a user reads and
 * whether a session still works afterwards.
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

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-tests"
#define FORM "Content-Type: application/x-www-form-urlencoded"

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
    ht_server_cleanup(&f->srv);
    free(f);
    return 0;
}

#define F(state) ((fixture_t *)*(state))
#define START(s, ...)                                                                              \
    do {                                                                                           \
        if (ht_server_start((s), ##__VA_ARGS__, NULL) != 0)                                        \
            fail_msg("line %d: server did not start", __LINE__);                                   \
    } while (0)

static void check_status(const ht_response_t *r, long got, long want, const char *what, int line)
{
    if (got != want)
        fail_msg("line %d: %s -> %ld, want %ld; %s; body: %.300s", line, what, got, want,
                 r->curl_error, r->body);
}
#define EXPECT(r, call, want) check_status((r), (call), (want), #call, __LINE__)

static void check_location(const ht_response_t *r, const char *want, int line)
{
    char loc[1024] = "";
    if (!ht_header(r, "Location", loc, sizeof loc) || strcmp(loc, want) != 0)
        fail_msg("line %d: Location \"%s\", want \"%s\"", line, loc, want);
}
#define LOCATION(r, want) check_location((r), (want), __LINE__)

#define CONTAINS(r, needle)                                                                        \
    do {                                                                                           \
        if (!strstr((r)->body, (needle)))                                                          \
            fail_msg("line %d: body lacks \"%s\": %.600s", __LINE__, (needle), (r)->body);         \
    } while (0)

/* POST a form body with up to three extra headers (NULL ends). */
static long post_form(const ht_server_t *s, const char *path, const char *body, ht_response_t *r,
                      const char *h1, const char *h2, const char *h3)
{
    const char *hdrs[5] = {FORM, h1, h2, h3, NULL};
    if (!h1)
        hdrs[1] = NULL;
    else if (!h2)
        hdrs[2] = NULL;
    else if (!h3)
        hdrs[3] = NULL;
    return ht_request(s, "POST", path, hdrs, body, strlen(body), r);
}

static long get_h(const ht_server_t *s, const char *path, ht_response_t *r, const char *h1,
                  const char *h2, const char *h3)
{
    const char *hdrs[4] = {h1, h2, h3, NULL};
    if (!h1)
        hdrs[0] = NULL;
    else if (!h2)
        hdrs[1] = NULL;
    else if (!h3)
        hdrs[2] = NULL;
    return ht_request(s, "GET", path, hdrs, NULL, 0, r);
}

/* "Cookie: gatehouse_session=<token>" from a reply's Set-Cookie; false when there is none. */
static bool cookie_header(const ht_response_t *r, char out[128])
{
    char sc[512];
    if (!ht_header(r, "Set-Cookie", sc, sizeof sc) || strncmp(sc, "gatehouse_session=gh_", 21))
        return false;
    snprintf(out, 128, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    return true;
}

static void cookie_for_token(const char *token, char out[128])
{
    snprintf(out, 128, "Cookie: gatehouse_session=%s", token);
}

/* The csrf hidden value of a rendered account page. */
static void csrf_of(const ht_response_t *r, char out[64])
{
    const char *p = strstr(r->body, "name=\"csrf\" value=\"");
    if (!p)
        fail_msg("no csrf field: %.400s", r->body);
    p += 19;
    size_t n = strcspn(p, "\"");
    assert_true(n < 64);
    memcpy(out, p, n);
    out[n] = '\0';
}

static bool token_works(const ht_server_t *s, const char *token)
{
    ht_response_t *r = calloc(1, sizeof *r);
    long st = ht_get(s, "/v1/session", token, r);
    free(r);
    return st == 200;
}

/* ---- /login ---- */

static void login_page_has_labelled_form_and_escapes_rd(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    EXPECT(r, ht_get(s, "/login?rd=/app%22%3E%3Cscript%3Ealert(1)%3C/script%3E", NULL, r), 200);
    char ct[128];
    assert_true(ht_header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "text/html; charset=utf-8");
    CONTAINS(r, "<form method=\"post\" action=\"/v1/sessions\"");
    CONTAINS(r, "<label for=\"username\">");
    CONTAINS(r, "<input id=\"username\" name=\"username\"");
    CONTAINS(r, "<label for=\"password\">");
    CONTAINS(r, "type=\"password\"");
    CONTAINS(r, "value=\"/app&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\"");
    assert_null(strstr(r->body, "<script"));
    assert_null(strstr(r->body, "http://")); /* no external asset */
    char csp[256];
    assert_true(ht_header(r, "Content-Security-Policy", csp, sizeof csp));
    assert_non_null(strstr(csp, "default-src 'none'"));
    /* A foreign rd is not even carried in the form. */
    EXPECT(r, ht_get(s, "/login?rd=https://evil.example/", NULL, r), 200);
    CONTAINS(r, "name=\"rd\" value=\"\"");
    assert_null(strstr(r->body, "evil.example"));
}

static void form_login_goes_back_to_rd_on_this_origin(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    EXPECT(r,
           post_form(s, "/v1/sessions",
                     "username=ann&password=correct+horse+battery&rd=%2Fapp%2Fpage%3Fx%3D1", r,
                     NULL, NULL, NULL),
           303);
    LOCATION(r, "/app/page?x=1");
    char cookie[128];
    assert_true(cookie_header(r, cookie));
    char sc[512];
    assert_true(ht_header(r, "Set-Cookie", sc, sizeof sc));
    assert_non_null(strstr(sc, "HttpOnly"));
    assert_non_null(strstr(sc, "SameSite=Lax"));
    assert_int_equal(r->body_len, 0); /* no token in a body the browser would show */
    assert_true(token_works(s, cookie + strlen("Cookie: gatehouse_session=")));
    /* An absolute URL naming this very host. */
    char body[256], want[128];
    snprintf(want, sizeof want, "http://%s/x", s->addr);
    snprintf(body, sizeof body,
             "username=ann&password=correct+horse+battery&rd=http%%3A%%2F%%2F%s%%2Fx", s->addr);
    EXPECT(r, post_form(s, "/v1/sessions", body, r, NULL, NULL, NULL), 303);
    LOCATION(r, want);
    /* No rd: a browser (Accept: text/html) lands on its account page. */
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=correct+horse+battery", r,
                     "Accept: text/html", NULL, NULL),
           303);
    LOCATION(r, "/account");
    /* API clients keep the JSON contract, form body or not. */
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=correct+horse+battery", r, NULL,
                     NULL, NULL),
           201);
    assert_true(ht_jhas(r, "token"));
    EXPECT(r,
           ht_json(s, "POST", "/v1/sessions", NULL,
                   "{\"username\":\"ann\",\"password\":\"" PASSWORD "\"}", r),
           201);
    assert_true(ht_jhas(r, "session.id"));
}

static void form_login_never_redirects_off_site(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    /* Form-encoded values of rd (decoded once by the form, never again by the server). */
    static const char *const bad[] = {
        "https%3A%2F%2Fevil.example%2F",              /* another host */
        "%2F%2Fevil.example%2F",                      /* scheme-relative */
        "%2F%5Cevil.example",                         /* /\host: browsers read \ as / */
        "%5C%5Cevil.example",                         /* \\host */
        "%2F%09%2Fevil.example",                      /* a tab browsers drop */
        "javascript%3Aalert(1)",                      /* another scheme */
        "data%3Atext%2Fhtml%2C%3Cscript%3E",          /* another scheme */
        "http%3A%2Fevil.example",                     /* one slash */
        "http%3A%2F%2F127.0.0.1%40evil.example",      /* user info */
        "%252F%252Fevil.example",                     /* double-encoded // */
        "http%3A%2F%2Fevil.example%252F%40127.0.0.1", /* encoded slash before user info */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "username=ann&password=correct+horse+battery&rd=%s", bad[i]);
        long st = post_form(s, "/v1/sessions", body, r, NULL, NULL, NULL);
        char loc[512] = "";
        ht_header(r, "Location", loc, sizeof loc);
        if (st != 303 || strcmp(loc, "/account") != 0)
            fail_msg("rd=%s -> %ld Location \"%s\", want 303 /account", bad[i], st, loc);
    }
}

static void allowed_redirect_hosts_widen_the_rule(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s, "--allowed-redirect-hosts", "wiki.example,.corp.example");
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    static const struct {
        const char *rd, *want;
    } cases[] = {
        {"https%3A%2F%2Fwiki.example%2Fpage", "https://wiki.example/page"},
        {"https%3A%2F%2Fa.corp.example%3A8443%2F", "https://a.corp.example:8443/"},
        {"https%3A%2F%2Fevilcorp.example%2F", "/account"},
        {"https%3A%2F%2Fwiki.example.evil%2F", "/account"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body, "username=ann&password=correct+horse+battery&rd=%s",
                 cases[i].rd);
        EXPECT(r, post_form(s, "/v1/sessions", body, r, NULL, NULL, NULL), 303);
        LOCATION(r, cases[i].want);
    }
}

static void form_login_failure_is_the_page_again_with_401(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=wrong-password&rd=%2Fapp", r, NULL,
                     NULL, NULL),
           401);
    CONTAINS(r, "role=\"alert\"");
    CONTAINS(r, "Invalid username or password.");
    CONTAINS(r, "name=\"rd\" value=\"/app\"");
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
    char wrong[HT_BODY_MAX + 1];
    memcpy(wrong, r->body, r->body_len + 1);
    /* An unknown user and a malformed attempt read exactly the same. */
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=nobody&password=wrong-password&rd=%2Fapp", r,
                     NULL, NULL, NULL),
           401);
    assert_string_equal(r->body, wrong);
    EXPECT(r, post_form(s, "/v1/sessions", "username=ann&rd=%2Fapp", r, NULL, NULL, NULL), 401);
    assert_string_equal(r->body, wrong);
}

static void form_login_throttled_is_the_page_with_429(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s, "--throttle-ip", "2/1m");
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    long st = 0;
    for (int i = 0; i < 5 && st != 429; i++)
        st = post_form(s, "/v1/sessions", "username=ann&password=wrong-password&rd=%2Fapp", r, NULL,
                       NULL, NULL);
    EXPECT(r, st, 429);
    CONTAINS(r, "Too many attempts.");
    CONTAINS(r, "<form method=\"post\" action=\"/v1/sessions\"");
    char ct[128], retry[32];
    assert_true(ht_header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "text/html; charset=utf-8");
    assert_true(ht_header(r, "Retry-After", retry, sizeof retry));
    assert_true(atoi(retry) >= 1);
    assert_int_equal(ht_header_count(r, "Retry-After"), 1);
}

static void form_login_from_another_site_is_refused(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=correct+horse+battery&rd=%2F", r,
                     "Origin: https://evil.example", NULL, NULL),
           403);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=correct+horse+battery&rd=%2F", r,
                     "Origin: null", NULL, NULL),
           403);
    char origin[128];
    snprintf(origin, sizeof origin, "Origin: http://%s", s->addr);
    EXPECT(r,
           post_form(s, "/v1/sessions", "username=ann&password=correct+horse+battery&rd=%2F", r,
                     origin, NULL, NULL),
           303);
}

/* A form login without rd and without Accept: text/html is another client's, not the page's; it
 * sets the cookie all the same, so it is a login CSRF unless Origin is checked on it too. */
static void every_form_login_checks_origin(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    const char *body = "username=ann&password=correct+horse+battery";
    EXPECT(r, post_form(s, "/v1/sessions", body, r, "Origin: https://evil.example", NULL, NULL),
           403);
    assert_string_equal(r->error_code, "forbidden");
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
    EXPECT(r, post_form(s, "/v1/sessions", body, r, "Referer: https://evil.example/x", NULL, NULL),
           403);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
    EXPECT(r, post_form(s, "/v1/sessions", body, r, "Origin: null", NULL, NULL), 403);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
    /* From this origin, or from a client that names none: the JSON answer and the cookie. */
    char origin[128];
    snprintf(origin, sizeof origin, "Origin: http://%s", s->addr);
    EXPECT(r, post_form(s, "/v1/sessions", body, r, origin, NULL, NULL), 201);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 1);
    EXPECT(r, post_form(s, "/v1/sessions", body, r, NULL, NULL, NULL), 201);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 1);
}

/* --ops-users names operators by id; a name it lists can never be taken by registering it, and
 * the node says at start which entries name nobody. */
static void ops_users_names_cannot_be_claimed(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s, "--admin-token", ADMIN, "--ops-users", "olga, 2, 99");
    assert_true(ht_server_wait_log(s, "--ops-users names no existing user", 5000));
    char *log = calloc(1, 65536);
    assert_non_null(log);
    ht_server_log(s, log, 65536);
    assert_non_null(strstr(log, "\"entry\":\"olga\""));
    assert_non_null(strstr(log, "\"entry\":\"99\""));
    assert_non_null(strstr(log, "\"entry\":\"2\""));
    free(log);
    /* Open registration cannot claim a listed name, in any case. */
    assert_int_equal(ht_register(s, "olga", PASSWORD, NULL), 409);
    assert_int_equal(ht_register(s, "OLGA", PASSWORD, NULL), 409);
    long long ann = 0, bob = 0;
    assert_int_equal(ht_register(s, "ann", PASSWORD, &ann), 201);
    assert_int_equal(ht_register(s, "bob", PASSWORD, &bob), 201);
    assert_true(ann == 1 && bob == 2);
    char t[64], cookie[128];
    assert_int_equal(ht_login(s, "ann", PASSWORD, t, NULL), 201);
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/ops", r, cookie, NULL, NULL), 403);
    assert_int_equal(ht_login(s, "bob", PASSWORD, t, NULL), 201); /* user 2 is listed */
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/ops", r, cookie, NULL, NULL), 200);
    /* An admin may create the listed name: that user is the operator. */
    EXPECT(r,
           ht_json(s, "POST", "/v1/admin/users", ADMIN,
                   "{\"username\":\"olga\",\"password\":\"" PASSWORD "\"}", r),
           201);
    assert_int_equal(ht_login(s, "olga", PASSWORD, t, NULL), 201);
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/ops", r, cookie, NULL, NULL), 200);
}

/* ---- /account and its buttons ---- */

static void account_without_session_goes_to_login(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    EXPECT(r, ht_get(s, "/account", NULL, r), 303);
    LOCATION(r, "/login?rd=/account");
    EXPECT(r, get_h(s, "/account", r, "Cookie: gatehouse_session=gh_forged", NULL, NULL), 303);
    EXPECT(r, post_form(s, "/account/logout", "csrf=x", r, NULL, NULL, NULL), 303);
    LOCATION(r, "/login?rd=/account");
}

static void account_lists_sessions_and_logs_one_out(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann<b>", PASSWORD, NULL), 400); /* names cannot carry HTML */
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    char ta[64], sa[32], tb[64], sb[32], cookie[128], path[128];
    assert_int_equal(ht_login(s, "ann", PASSWORD, ta, sa), 201);
    assert_int_equal(ht_login(s, "ann", PASSWORD, tb, sb), 201);
    cookie_for_token(ta, cookie);
    EXPECT(r, get_h(s, "/account", r, cookie, NULL, NULL), 200);
    CONTAINS(r, "<strong id=\"username\">ann</strong>");
    CONTAINS(r, sa);
    CONTAINS(r, sb);
    CONTAINS(r, "(this session)");
    CONTAINS(r, "Log out everywhere");
    CONTAINS(r, "aria-label=\"Log out session ");
    assert_null(strstr(strstr(r->body, "(this session)") + 1, "(this session)"));
    char csrf[64];
    csrf_of(r, csrf);
    char body[128];
    snprintf(body, sizeof body, "csrf=%s", csrf);
    snprintf(path, sizeof path, "/account/sessions/%s/delete", sb);
    EXPECT(r, post_form(s, path, body, r, cookie, NULL, NULL), 303);
    LOCATION(r, "/account?done=revoked");
    assert_false(token_works(s, tb));
    assert_true(token_works(s, ta));
    EXPECT(r, get_h(s, "/account?done=revoked", r, cookie, NULL, NULL), 200);
    CONTAINS(r, "The session was logged out.");
    assert_null(strstr(r->body, sb));
    /* Logging out this session from its own row ends it and clears the cookie. */
    snprintf(path, sizeof path, "/account/sessions/%s/delete", sa);
    EXPECT(r, post_form(s, path, body, r, cookie, NULL, NULL), 303);
    LOCATION(r, "/login");
    char sc[256];
    assert_true(ht_header(r, "Set-Cookie", sc, sizeof sc));
    assert_non_null(strstr(sc, "Max-Age=0"));
    assert_false(token_works(s, ta));
}

/* POST /v1/sessions (JSON) with a User-Agent and, when xff is not NULL, X-Forwarded-For;
 * copies the token and the session id. */
static void login_from(const ht_server_t *s, const char *ua, const char *xff, char token[64],
                       char sid[32])
{
    ht_response_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    char uah[512], xffh[256];
    snprintf(uah, sizeof uah, "User-Agent: %s", ua);
    snprintf(xffh, sizeof xffh, "X-Forwarded-For: %s", xff ? xff : "");
    const char *hdrs[] = {"Content-Type: application/json", uah, xff ? xffh : NULL, NULL};
    static const char body[] = "{\"username\":\"ann\",\"password\":\"" PASSWORD "\"}";
    long st = ht_request(s, "POST", "/v1/sessions", hdrs, body, sizeof body - 1, r);
    if (st != 201)
        fail_msg("login from %s -> %ld: %.300s", ua, st, r->body);
    assert_true(ht_jstr(r, "token", token, 64));
    assert_true(ht_jstr(r, "session.id", sid, 32));
    free(r);
}

/* GET /v1/sessions: the index of session sid, its user_agent and ip. */
static int listed(const ht_server_t *s, const char *token, const char *sid, char *ua, size_t ualen,
                  char ip[64])
{
    ht_response_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_get(s, "/v1/sessions", token, r), 200);
    long n = ht_jsize(r, "sessions");
    int found = -1;
    for (long i = 0; i < n && found < 0; i++) {
        char path[64], id[32];
        snprintf(path, sizeof path, "sessions.%ld.id", i);
        assert_true(ht_jstr(r, path, id, sizeof id));
        if (strcmp(id, sid) != 0)
            continue;
        found = (int)i;
        snprintf(path, sizeof path, "sessions.%ld.user_agent", i);
        assert_true(ht_jstr(r, path, ua, ualen));
        snprintf(path, sizeof path, "sessions.%ld.ip", i);
        assert_true(ht_jstr(r, path, ip, 64));
    }
    free(r);
    return found;
}

/* Each session shows the device and the address it was created from — on /account (escaped)
 * and in GET /v1/sessions — and the address is the client's as the login throttle sees it:
 * the peer, or behind a trusted proxy the right-most address it does not trust. */
static void sessions_show_their_device_and_address(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s, "--trusted-proxies", "127.0.0.1/32");
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    static const char firefox[] =
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    static const char hostile[] = "<img src=x onerror=alert(1)> \"Phone\" & Co";
    char ta[64], sa[32], tb[64], sb[32], tc[64], sc[32], ua[256], ip[64];
    /* Through a proxy: a forged left-most entry is the client's to choose; the proxy's own
     * entry (right-most) is the address. */
    login_from(s, firefox, "203.0.113.99, 198.51.100.23", ta, sa);
    login_from(s, hostile, NULL, tb, sb);
    char long_ua[400];
    memset(long_ua, 'z', sizeof long_ua - 1);
    long_ua[sizeof long_ua - 1] = '\0';
    login_from(s, long_ua, "2001:DB8::0:7", tc, sc);

    assert_true(listed(s, ta, sa, ua, sizeof ua, ip) >= 0);
    assert_string_equal(ua, firefox);
    assert_string_equal(ip, "198.51.100.23");
    assert_true(listed(s, ta, sb, ua, sizeof ua, ip) >= 0);
    assert_string_equal(ua, hostile);
    assert_string_equal(ip, "127.0.0.1");
    assert_true(listed(s, ta, sc, ua, sizeof ua, ip) >= 0);
    assert_int_equal(strlen(ua), 160);
    assert_string_equal(ip, "2001:db8::7");
    /* Who-am-I is the token check, which does not read the client: no fields rather than
     * empty ones. */
    EXPECT(r, ht_get(s, "/v1/session", ta, r), 200);
    assert_false(ht_jhas(r, "session.user_agent"));
    assert_false(ht_jhas(r, "session.ip"));

    char cookie[128];
    cookie_for_token(ta, cookie);
    EXPECT(r, get_h(s, "/account", r, cookie, NULL, NULL), 200);
    CONTAINS(r, firefox);
    CONTAINS(r, "198.51.100.23");
    CONTAINS(r, "&lt;img src=x onerror=alert(1)&gt; &quot;Phone&quot; &amp; Co");
    assert_null(strstr(r->body, "<img"));
    CONTAINS(r, "127.0.0.1");
    CONTAINS(r, "2001:db8::7");
    CONTAINS(r, "<th scope=\"col\">Device</th>");
    CONTAINS(r, "<th scope=\"col\">IP address</th>");
    /* The row of this session carries the marker; a login without a User-Agent is an unknown
     * device. */
    const char *row = strstr(r->body, "<tr class=\"cur\"");
    assert_non_null(row);
    assert_non_null(strstr(row, firefox));
    assert_true(strstr(row, "(this session)") < strstr(row, "</tr>"));
    char tn[64];
    assert_int_equal(ht_login(s, "ann", PASSWORD, tn, NULL), 201);
    EXPECT(r, get_h(s, "/account", r, cookie, NULL, NULL), 200);
    CONTAINS(r, "unknown device");

    /* Without --trusted-proxies, X-Forwarded-For is the client's own claim: ignored. */
    ht_server_cleanup(s);
    memset(s, 0, sizeof *s);
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    login_from(s, firefox, "198.51.100.23", ta, sa);
    assert_true(listed(s, ta, sa, ua, sizeof ua, ip) >= 0);
    assert_string_equal(ip, "127.0.0.1");
}

static void account_buttons_check_csrf(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(s, "bob", PASSWORD, NULL), 201);
    char ta[64], sa[32], tb[64], sb[32], tc[64], ca[128], cb[128], cc[128], path[128], body[128];
    assert_int_equal(ht_login(s, "ann", PASSWORD, ta, sa), 201);
    assert_int_equal(ht_login(s, "ann", PASSWORD, tb, sb), 201);
    assert_int_equal(ht_login(s, "bob", PASSWORD, tc, NULL), 201);
    cookie_for_token(ta, ca);
    cookie_for_token(tb, cb);
    cookie_for_token(tc, cc);
    char csrf_a[64], csrf_b[64], csrf_c[64];
    EXPECT(r, get_h(s, "/account", r, ca, NULL, NULL), 200);
    csrf_of(r, csrf_a);
    EXPECT(r, get_h(s, "/account", r, cb, NULL, NULL), 200);
    csrf_of(r, csrf_b);
    EXPECT(r, get_h(s, "/account", r, cc, NULL, NULL), 200);
    csrf_of(r, csrf_c);
    assert_string_not_equal(csrf_a, csrf_b); /* per session, not per user */
    snprintf(path, sizeof path, "/account/sessions/%s/delete", sb);
    /* No token, an empty one, a wrong one, another session's, another user's: all refused. */
    EXPECT(r, post_form(s, path, "", r, ca, NULL, NULL), 403);
    EXPECT(r, post_form(s, path, "csrf=", r, ca, NULL, NULL), 403);
    EXPECT(r, post_form(s, path, "csrf=00000000000000000000000000000000", r, ca, NULL, NULL), 403);
    snprintf(body, sizeof body, "csrf=%s", csrf_b);
    EXPECT(r, post_form(s, path, body, r, ca, NULL, NULL), 403);
    snprintf(body, sizeof body, "csrf=%s", csrf_c);
    EXPECT(r, post_form(s, path, body, r, ca, NULL, NULL), 403);
    EXPECT(r, post_form(s, "/account/logout-all", body, r, ca, NULL, NULL), 403);
    /* The right token from a foreign Origin or Referer: refused too. */
    snprintf(body, sizeof body, "csrf=%s", csrf_a);
    EXPECT(r, post_form(s, path, body, r, ca, "Origin: https://evil.example", NULL), 403);
    EXPECT(r, post_form(s, path, body, r, ca, "Referer: https://evil.example/account", NULL), 403);
    assert_true(token_works(s, tb));
    /* Bob's own session cannot end Ann's even with Bob's valid token. */
    snprintf(body, sizeof body, "csrf=%s", csrf_c);
    EXPECT(r, post_form(s, path, body, r, cc, NULL, NULL), 303);
    assert_true(token_works(s, tb));
    /* And the right token from this origin works. */
    char origin[128];
    snprintf(origin, sizeof origin, "Origin: http://%s", s->addr);
    snprintf(body, sizeof body, "csrf=%s", csrf_a);
    EXPECT(r, post_form(s, path, body, r, ca, origin, NULL), 303);
    assert_false(token_works(s, tb));
}

static void logout_and_logout_everywhere(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    char ta[64], tb[64], tc[64], ca[128], cb[128], csrf[64], body[128];
    assert_int_equal(ht_login(s, "ann", PASSWORD, ta, NULL), 201);
    assert_int_equal(ht_login(s, "ann", PASSWORD, tb, NULL), 201);
    assert_int_equal(ht_login(s, "ann", PASSWORD, tc, NULL), 201);
    cookie_for_token(ta, ca);
    cookie_for_token(tb, cb);
    EXPECT(r, get_h(s, "/account", r, ca, NULL, NULL), 200);
    csrf_of(r, csrf);
    snprintf(body, sizeof body, "csrf=%s", csrf);
    EXPECT(r, post_form(s, "/account/logout", body, r, ca, NULL, NULL), 303);
    LOCATION(r, "/login");
    char sc[256];
    assert_true(ht_header(r, "Set-Cookie", sc, sizeof sc));
    assert_non_null(strstr(sc, "Max-Age=0"));
    assert_false(token_works(s, ta));
    assert_true(token_works(s, tb));
    EXPECT(r, get_h(s, "/account", r, cb, NULL, NULL), 200);
    csrf_of(r, csrf);
    snprintf(body, sizeof body, "csrf=%s", csrf);
    EXPECT(r, post_form(s, "/account/logout-all", body, r, cb, NULL, NULL), 303);
    LOCATION(r, "/login");
    assert_false(token_works(s, tb));
    assert_false(token_works(s, tc));
}

static void password_change_form(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    START(s);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    char ta[64], tb[64], ca[128], csrf[64], body[256];
    assert_int_equal(ht_login(s, "ann", PASSWORD, ta, NULL), 201);
    assert_int_equal(ht_login(s, "ann", PASSWORD, tb, NULL), 201);
    cookie_for_token(ta, ca);
    EXPECT(r, get_h(s, "/account", r, ca, NULL, NULL), 200);
    CONTAINS(r, "<form method=\"post\" action=\"/account/password\"");
    CONTAINS(r, "<label for=\"current_password\">");
    CONTAINS(r, "<label for=\"new_password\">");
    csrf_of(r, csrf);
    /* No CSRF token: refused, nothing changed. */
    EXPECT(r,
           post_form(s, "/account/password",
                     "current_password=correct+horse+battery&new_password=a+new+password", r, ca,
                     NULL, NULL),
           403);
    /* A wrong current password: the page again with a message. */
    snprintf(body, sizeof body, "csrf=%s&current_password=wrong+one&new_password=a+new+password",
             csrf);
    EXPECT(r, post_form(s, "/account/password", body, r, ca, NULL, NULL), 401);
    CONTAINS(r, "The current password is wrong.");
    /* A weak new one. */
    snprintf(body, sizeof body, "csrf=%s&current_password=correct+horse+battery&new_password=short",
             csrf);
    EXPECT(r, post_form(s, "/account/password", body, r, ca, NULL, NULL), 400);
    assert_int_equal(ht_login(s, "ann", PASSWORD, NULL, NULL), 201);
    assert_true(token_works(s, tb));
    /* The real thing: this session stays, the others end, the new password works. */
    snprintf(body, sizeof body,
             "csrf=%s&current_password=correct+horse+battery&new_password=a+new+password", csrf);
    EXPECT(r, post_form(s, "/account/password", body, r, ca, NULL, NULL), 303);
    LOCATION(r, "/account?done=password");
    assert_true(token_works(s, ta));
    assert_false(token_works(s, tb));
    assert_int_equal(ht_login(s, "ann", PASSWORD, NULL, NULL), 401);
    assert_int_equal(ht_login(s, "ann", "a new password", NULL, NULL), 201);
    EXPECT(r, get_h(s, "/account?done=password", r, ca, NULL, NULL), 200);
    CONTAINS(r, "Your password was changed");
}

/* ---- /ops ---- */

static void ops_page_for_admins_and_operators_only(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    /* A watchdog sampling every 50 ms: the chart has its history within a moment. Operators are
     * named by user id (olga registers first: user 1); a listed name could be registered by
     * anyone (ops_users_names_cannot_be_claimed). */
    START(s, "--admin-token", ADMIN, "--ops-users", "1, 77", "--watch-interval", "50ms",
          "--watch-window", "10s");
    assert_int_equal(ht_register(s, "olga", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    EXPECT(r, ht_get(s, "/ops", NULL, r), 303);
    LOCATION(r, "/login?rd=/ops");
    EXPECT(r, ht_get(s, "/ops", "wrong-token", r), 403);
    ht_sleep_ms(500);
    EXPECT(r, ht_get(s, "/ops", ADMIN, r), 200);
    /* Live without JavaScript, and without state in the URL: the watchdog's ring is the
     * history. */
    CONTAINS(r, "<meta http-equiv=\"refresh\" content=\"5; url=/ops\">");
    assert_null(strstr(r->body, "<script"));
    CONTAINS(r, "Memory over time");
    CONTAINS(r, "<svg role=\"img\" aria-labelledby=\"hist-title hist-desc\"");
    CONTAINS(r, "<polyline class=\"rss\"");
    CONTAINS(r, "<polygon class=\"area\""); /* accounted bytes stacked by component */
    CONTAINS(r, "<title>sessions</title>");
    CONTAINS(r, "Chart legend");
    /* A healthy node: no alert, and the forecast says so. */
    CONTAINS(r, "id=\"no-alerts\">No alerts");
    assert_null(strstr(r->body, "class=\"alert "));
    CONTAINS(r, "<p id=\"forecast\"><strong>Forecast:</strong> ");
    CONTAINS(r, "sessions active");
    CONTAINS(r, "requests per second (last minute)");
    CONTAINS(r, "5xx per second (last minute)");
    CONTAINS(r, "failed logins per second (last minute)");
    CONTAINS(r, "requests (total)");
    /* The page and /debug/memory are one reading: the same ring, the same verdict. */
    const char *auth[] = {"Authorization: Bearer " ADMIN, NULL};
    ht_response_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    assert_int_equal(ht_request(s, "GET", "/debug/memory", auth, NULL, 0, d), 200);
    long long points = 0;
    assert_true(ht_jint(d, "watchdog.history.points", &points));
    assert_true(points >= 2 && points <= 240);
    assert_int_equal(ht_jsize(d, "watchdog.history.rss_bytes"), points);
    assert_int_equal(ht_jsize(d, "watchdog.history.components.sessions"), points);
    assert_true(ht_jhas(d, "watchdog.forecast_level_bytes"));
    assert_true(ht_jhas(d, "session_clients.entries"));
    assert_true(ht_jhas(d, "totals.requests"));
    free(d);
    /* Query parameters carry nothing any more, and are never echoed. */
    EXPECT(r, ht_get(s, "/ops?hr=1,2,%3Cscript%3E&t=%3Cx%3E", ADMIN, r), 200);
    assert_null(strstr(r->body, "<script"));
    assert_null(strstr(r->body, "<x>"));
    char t[64], cookie[128];
    assert_int_equal(ht_login(s, "ann", PASSWORD, t, NULL), 201);
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/ops", r, cookie, NULL, NULL), 403);
    assert_int_equal(ht_login(s, "olga", PASSWORD, t, NULL), 201);
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/ops", r, cookie, NULL, NULL), 200);
    CONTAINS(r, "<svg");
}

/* ---- forward auth for browsers ---- */

static void forward_auth_redirects_browsers_when_asked(void **state)
{
    ht_server_t *s = &F(state)->srv;
    ht_response_t *r = &F(state)->r;
    const char *fwd[] = {"X-Forwarded-Proto: https", "X-Forwarded-Host: app.example",
                         "X-Forwarded-Uri: /wiki/page?x=1&y=2"};
    START(s);
    /* Off by default: a browser gets the 401 nginx's auth_request expects. */
    EXPECT(r, get_h(s, "/v1/auth", r, "Accept: text/html", fwd[1], fwd[2]), 401);
    /* ?rd= asks for it explicitly. */
    EXPECT(r, ht_get(s, "/v1/auth?rd=https://app.example/x", NULL, r), 302);
    LOCATION(r, "/login?rd=https%3A%2F%2Fapp.example%2Fx");
    ht_server_cleanup(s);
    memset(s, 0, sizeof *s);
    START(s, "--forward-auth-redirect");
    const char *hdrs[] = {"Accept: text/html,application/xhtml+xml", fwd[0], fwd[1], fwd[2], NULL};
    EXPECT(r, ht_request(s, "GET", "/v1/auth", hdrs, NULL, 0, r), 302);
    LOCATION(r, "/login?rd=https%3A%2F%2Fapp.example%2Fwiki%2Fpage%3Fx%3D1%26y%3D2");
    /* API clients and non-navigations keep the 401. */
    EXPECT(r, get_h(s, "/v1/auth", r, "Accept: application/json", fwd[1], fwd[2]), 401);
    EXPECT(r, get_h(s, "/v1/auth", r, "Accept: text/html", "X-Forwarded-Method: POST", fwd[2]),
           401);
    /* Signed in: 200 with the identity headers, redirect or not. */
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 201);
    char t[64], cookie[128], user[64];
    assert_int_equal(ht_login(s, "ann", PASSWORD, t, NULL), 201);
    cookie_for_token(t, cookie);
    EXPECT(r, get_h(s, "/v1/auth", r, "Accept: text/html", cookie, fwd[2]), 200);
    assert_true(ht_header(r, "X-Auth-User", user, sizeof user));
    assert_string_equal(user, "ann");
    ht_server_cleanup(s);
    memset(s, 0, sizeof *s);
    START(s, "--forward-auth-redirect", "--login-url", "https://auth.example/login");
    EXPECT(r, ht_request(s, "GET", "/v1/auth", hdrs, NULL, 0, r), 302);
    LOCATION(
        r, "https://auth.example/login?rd=https%3A%2F%2Fapp.example%2Fwiki%2Fpage%3Fx%3D1%26y%3D2");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(login_page_has_labelled_form_and_escapes_rd),
        T(form_login_goes_back_to_rd_on_this_origin),
        T(form_login_never_redirects_off_site),
        T(allowed_redirect_hosts_widen_the_rule),
        T(form_login_failure_is_the_page_again_with_401),
        T(form_login_throttled_is_the_page_with_429),
        T(form_login_from_another_site_is_refused),
        T(every_form_login_checks_origin),
        T(ops_users_names_cannot_be_claimed),
        T(account_without_session_goes_to_login),
        T(account_lists_sessions_and_logs_one_out),
        T(sessions_show_their_device_and_address),
        T(account_buttons_check_csrf),
        T(logout_and_logout_everywhere),
        T(password_change_form),
        T(ops_page_for_admins_and_operators_only),
        T(forward_auth_redirects_browsers_when_asked),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
