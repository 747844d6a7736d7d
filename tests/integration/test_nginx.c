/*
 * test_nginx.c — a real nginx with the shipped deploy/nginx/gatehouse.conf in front of a real
 * gatehouse and a stand-in app, the way an operator runs them: anonymous request → 302 to the
 * login page; the login form → back to the app, which sees X-Auth-User; logout → 302 again; a
 * foreign rd is refused.
 *
 * nginx itself is started by tests/support/nginx.h: the shipped file with only its ports
 * replaced, stopped by PID; the app is a server block that echoes the X-Auth-User it received.
 *
 * At a site's concurrency: 512 signed-in clients (wrk -c512, a few seconds) fetching guarded
 * pages through nginx, with the node run as the file says (--trusted-proxies naming nginx), see
 * no failed request — no non-2xx answer, no socket error. And during a login storm posted
 * through nginx at every default, guarded pages of the same address are still served.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>
#include <cmocka.h>

#include "../support/nginx.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define CONF "deploy/nginx/gatehouse.conf"

typedef struct {
    ht_server_t gh;
    ht_server_t front; /* only addr/port: where requests to nginx go */
    tn_nginx_t nginx;
    ht_response_t r;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (ht_server_start(&f->gh, NULL) != 0 || tn_nginx_start(&f->nginx, CONF, f->gh.addr) != 0)
        return -1;
    f->front.port = f->nginx.port;
    snprintf(f->front.addr, sizeof f->front.addr, "127.0.0.1:%d", f->nginx.port);
    return 0;
}

/* The node as the shipped file says to run it: nginx (127.0.0.1 here) is a trusted proxy. */
static int setup_trusted(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (ht_server_start(&f->gh, "--trusted-proxies", "127.0.0.1/32", NULL) != 0 ||
        tn_nginx_start(&f->nginx, CONF, f->gh.addr) != 0)
        return -1;
    f->front.port = f->nginx.port;
    snprintf(f->front.addr, sizeof f->front.addr, "127.0.0.1:%d", f->nginx.port);
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    tn_nginx_cleanup(&f->nginx);
    ht_server_cleanup(&f->gh);
    free(f);
    return 0;
}

#define F(state) ((fixture_t *)*(state))

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

static long send_h(const ht_server_t *s, const char *method, const char *path, const char *body,
                   ht_response_t *r, const char *h1, const char *h2, const char *h3)
{
    const char *hdrs[4] = {h1, h2, h3, NULL};
    if (!h1)
        hdrs[0] = NULL;
    else if (!h2)
        hdrs[1] = NULL;
    else if (!h3)
        hdrs[2] = NULL;
    return ht_request(s, method, path, hdrs, body, body ? strlen(body) : 0, r);
}

static void the_front_door_through_nginx(void **state)
{
    fixture_t *f = F(state);
    ht_server_t *n = &f->front;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_register(&f->gh, "ann", PASSWORD, NULL), 201);

    /* Anonymous: 302 to the login page, which will send the browser back here. */
    char want[512], origin[128], cookie[160], sc[512];
    EXPECT(r, send_h(n, "GET", "/app/page?x=1&y=2", NULL, r, "Accept: text/html", NULL, NULL), 302);
    snprintf(want, sizeof want,
             "/login?rd=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fapp%%2Fpage%%3Fx%%3D1%%26y%%3D2",
             n->port);
    LOCATION(r, want);
    /* The login page, served through nginx, carries rd in its form. */
    EXPECT(r, send_h(n, "GET", want, NULL, r, NULL, NULL, NULL), 200);
    snprintf(want, sizeof want, "name=\"rd\" value=\"http://127.0.0.1:%d/app/page?x=1&amp;y=2\"",
             n->port);
    if (!strstr(r->body, want))
        fail_msg("login page lacks %s: %.500s", want, r->body);

    /* The form login: 303 back to the app, then the app sees the user (not what we claim). */
    char body[512];
    snprintf(body, sizeof body,
             "rd=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fapp%%2Fpage%%3Fx%%3D1%%26y%%3D2"
             "&username=ann&password=correct+horse+battery",
             n->port);
    snprintf(origin, sizeof origin, "Origin: http://127.0.0.1:%d", n->port);
    EXPECT(r,
           send_h(n, "POST", "/v1/sessions", body, r,
                  "Content-Type: application/x-www-form-urlencoded", origin, "Accept: text/html"),
           303);
    snprintf(want, sizeof want, "http://127.0.0.1:%d/app/page?x=1&y=2", n->port);
    LOCATION(r, want);
    assert_true(ht_header(r, "Set-Cookie", sc, sizeof sc));
    snprintf(cookie, sizeof cookie, "Cookie: %.*s", (int)strcspn(sc, ";"), sc);
    EXPECT(r, send_h(n, "GET", "/app/page?x=1&y=2", NULL, r, cookie, "X-Auth-User: mallory", NULL),
           200);
    if (!strstr(r->body, "app: user=[ann] id=[1] uri=/app/page?x=1&y=2"))
        fail_msg("the app saw: %s", r->body);

    /* The account page through nginx; its logout button ends the session. */
    EXPECT(r, send_h(n, "GET", "/account", NULL, r, cookie, NULL, NULL), 200);
    const char *p = strstr(r->body, "name=\"csrf\" value=\"");
    assert_non_null(p);
    snprintf(body, sizeof body, "csrf=%.32s", p + 19);
    EXPECT(r,
           send_h(n, "POST", "/account/logout", body, r,
                  "Content-Type: application/x-www-form-urlencoded", cookie, origin),
           303);
    LOCATION(r, "/login");
    EXPECT(r, send_h(n, "GET", "/app/page", NULL, r, cookie, "Accept: text/html", NULL), 302);
    snprintf(want, sizeof want, "/login?rd=http%%3A%%2F%%2F127.0.0.1%%3A%d%%2Fapp%%2Fpage",
             n->port);
    LOCATION(r, want);
    /* Anonymous API clients get the same answer from nginx: they are not the app's users. */
    EXPECT(r, send_h(n, "GET", "/", NULL, r, NULL, NULL, NULL), 302);
    /* nginx keeps its internal locations to itself. */
    EXPECT(r, send_h(n, "GET", "/_gatehouse/auth", NULL, r, NULL, NULL, NULL), 404);
}

static void a_foreign_rd_is_refused_through_nginx(void **state)
{
    fixture_t *f = F(state);
    ht_server_t *n = &f->front;
    ht_response_t *r = &f->r;
    assert_int_equal(ht_register(&f->gh, "ann", PASSWORD, NULL), 201);
    EXPECT(r, send_h(n, "GET", "/login?rd=https://evil.example/", NULL, r, NULL, NULL, NULL), 200);
    assert_null(strstr(r->body, "evil.example"));
    static const char *const bad[] = {"https%3A%2F%2Fevil.example%2F", "%2F%2Fevil.example",
                                      "%2F%5Cevil.example",
                                      "http%3A%2F%2F127.0.0.1%40evil.example"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "rd=%s&username=ann&password=correct+horse+battery", bad[i]);
        EXPECT(r,
               send_h(n, "POST", "/v1/sessions", body, r,
                      "Content-Type: application/x-www-form-urlencoded", NULL, NULL),
               303);
        LOCATION(r, "/account");
    }
    /* A login form posted from another site never logs anyone in. */
    EXPECT(r,
           send_h(n, "POST", "/v1/sessions", "rd=%2F&username=ann&password=correct+horse+battery",
                  r, "Content-Type: application/x-www-form-urlencoded",
                  "Origin: https://evil.example", NULL),
           403);
    assert_int_equal(ht_header_count(r, "Set-Cookie"), 0);
}

#define CLIENTS 512

/* Runs wrk with CLIENTS connections for `seconds` against url, output to `out`; its exit status. */
static int run_wrk(const char *url, const char *header, int seconds, const char *out)
{
    char conns[16], dur[16];
    snprintf(conns, sizeof conns, "-c%d", CLIENTS);
    snprintf(dur, sizeof dur, "%ds", seconds);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execlp("wrk", "wrk", "-t2", conns, "-d", dur, "--timeout", "5s", "-H", header, url,
               (char *)NULL);
        _exit(127);
    }
    int st = 0;
    /* wrk stops itself after `seconds`; the test's own timeout is the backstop. */
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void many_signed_in_clients_through_nginx_lose_nothing(void **state)
{
    fixture_t *f = F(state);
    ht_server_t *n = &f->front;
    ht_response_t *r = &f->r;
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        fprintf(stderr, "wrk is not installed (scripts/deps.sh installs it): skipped\n");
        skip();
    }
    assert_int_equal(ht_register(&f->gh, "ann", PASSWORD, NULL), 201);
    char token[64], cookie[128];
    assert_int_equal(ht_login(&f->gh, "ann", PASSWORD, token, NULL), 201);
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", token);
    /* The page is guarded: without the cookie it is a redirect, with it the app's answer. */
    EXPECT(r, send_h(n, "GET", "/app/page", NULL, r, "Accept: text/html", NULL, NULL), 302);
    EXPECT(r, send_h(n, "GET", "/app/page", NULL, r, cookie, NULL, NULL), 200);
    if (!strstr(r->body, "app: user=[ann]"))
        fail_msg("the app saw: %s", r->body);

    char url[128], out[HT_PATH_MAX + 16];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/app/page", n->port);
    snprintf(out, sizeof out, "%s/wrk.out", f->gh.dir);
    int st = run_wrk(url, cookie, 4, out);
    char text[8192] = {0};
    int fd = open(out, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    assert_true(got > 0);
    fprintf(stderr, "%s", text);
    assert_int_equal(st, 0);
    /* wrk prints these lines only when something went wrong: connect, read, write or timeout
     * errors, and answers other than 2xx/3xx (a 302 would be a failed check: counted below). */
    assert_null(strstr(text, "Socket errors"));
    assert_null(strstr(text, "Non-2xx"));
    const char *req = strstr(text, " requests in ");
    assert_non_null(req);
    while (req > text && req[-1] != '\n' && req[-1] != ' ')
        req--;
    long done = atol(req);
    print_message("%d clients through nginx: %ld guarded pages, none failed\n", CLIENTS, done);
    assert_true(done > CLIENTS);
    /* Every one of them was the app's answer to ann, not a redirect to the login page. */
    EXPECT(r, send_h(n, "GET", "/app/page", NULL, r, cookie, NULL, NULL), 200);
    assert_non_null(strstr(r->body, "app: user=[ann]"));
    assert_true(ht_get(&f->gh, "/healthz", NULL, r) == 200);
}

/* The node as the file says, at every default (the harness's cheap hashing and throttle-off
 * put back to the defaults). */
static int setup_trusted_defaults(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (ht_server_start(&f->gh, "--trusted-proxies", "127.0.0.1/32", "--hash-memory", "19MiB",
                        "--hash-ops", "2", "--throttle-ip", "20/1m", NULL) != 0 ||
        tn_nginx_start(&f->nginx, CONF, f->gh.addr) != 0)
        return -1;
    f->front.port = f->nginx.port;
    snprintf(f->front.addr, sizeof f->front.addr, "127.0.0.1:%d", f->nginx.port);
    return 0;
}

#define STORM_CONNS 128
#define STORM_SECONDS 6

static const char storm_lua[] =
    "local body\n"
    "init = function(args)\n"
    "  body = string.format('{\"username\":\"%s\",\"password\":\"%s\"}', args[1], args[2])\n"
    "end\n"
    "request = function()\n"
    "  return wrk.format('POST', '/v1/sessions', {['Content-Type'] = 'application/json'}, body)\n"
    "end\n";

static void a_login_storm_through_nginx_leaves_guarded_pages_served(void **state)
{
    fixture_t *f = F(state);
    ht_server_t *n = &f->front;
    ht_response_t *r = &f->r;
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        fprintf(stderr, "wrk is not installed (scripts/deps.sh installs it): skipped\n");
        skip();
    }
    assert_int_equal(ht_register(&f->gh, "ann", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(&f->gh, "bob", PASSWORD, NULL), 201);
    char token[64], cookie[128];
    assert_int_equal(ht_login(&f->gh, "ann", PASSWORD, token, NULL), 201);
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", token);

    /* The storm: bob's correct logins through nginx on STORM_CONNS connections. */
    char lua[HT_PATH_MAX + 16], out[HT_PATH_MAX + 16], url[96], dur[16], conns[16];
    snprintf(lua, sizeof lua, "%s/storm.lua", f->gh.dir);
    snprintf(out, sizeof out, "%s/storm.out", f->gh.dir);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/sessions", n->port);
    snprintf(dur, sizeof dur, "%ds", STORM_SECONDS);
    snprintf(conns, sizeof conns, "-c%d", STORM_CONNS);
    FILE *lf = fopen(lua, "w");
    assert_non_null(lf);
    assert_true(fputs(storm_lua, lf) >= 0);
    assert_int_equal(fclose(lf), 0);
    pid_t storm = fork();
    assert_true(storm >= 0);
    if (storm == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execlp("wrk", "wrk", "-t1", conns, "-d", dur, "--timeout", "10s", "-s", lua, url, "--",
               "bob", PASSWORD, (char *)NULL);
        _exit(127);
    }
    ht_sleep_ms(1500);

    /* Guarded pages from the same address, each on a new connection, during the storm. */
    int checks = 0, ok = 0;
    long long t0 = ht_now_ms();
    while (ht_now_ms() - t0 < (STORM_SECONDS - 2) * 1000LL) {
        long st = send_h(n, "GET", "/app/page", NULL, r, cookie, NULL, NULL);
        checks++;
        if (st == 200 && strstr(r->body, "app: user=[ann]"))
            ok++;
        else
            print_message("guarded page %d during the storm: %ld %s\n", checks, st, r->curl_error);
        ht_sleep_ms(50);
    }
    int wst = 0;
    assert_int_equal(waitpid(storm, &wst, 0), storm);
    char text[4096] = {0};
    int fd = open(out, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t got = read(fd, text, sizeof text - 1);
    close(fd);
    assert_true(got > 0);
    fprintf(stderr, "%s", text);
    print_message("login storm through nginx on %d connections: %d of %d guarded pages served\n",
                  STORM_CONNS, ok, checks);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    const char *req = strstr(text, " requests in ");
    assert_non_null(req);
    while (req > text && req[-1] != '\n' && req[-1] != ' ')
        req--;
    assert_true(atol(req) > 1000); /* it was a storm */
    assert_true(checks >= 10);
    assert_int_equal(ok, checks);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_front_door_through_nginx, setup, teardown),
        cmocka_unit_test_setup_teardown(a_foreign_rd_is_refused_through_nginx, setup, teardown),
        cmocka_unit_test_setup_teardown(many_signed_in_clients_through_nginx_lose_nothing,
                                        setup_trusted, teardown),
        cmocka_unit_test_setup_teardown(a_login_storm_through_nginx_leaves_guarded_pages_served,
                                        setup_trusted_defaults, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
