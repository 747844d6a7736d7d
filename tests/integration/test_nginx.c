/*
 * test_nginx.c — a real nginx with the shipped deploy/nginx/gatehouse.conf in front of a real
 * gatehouse and a stand-in app, the way an operator runs them: anonymous request → 302 to the
 * login page; the login form → back to the app, which sees X-Auth-User; logout → 302 again; a
 * foreign rd is refused.
 *
 * The one decision: nginx runs with `daemon off; master_process off;`, so the PID we fork is the
 * server itself and we stop it by that PID. The config file is the shipped one with only its two
 * upstream addresses and its listen line replaced by free loopback ports; the app is a second
 * nginx server block that answers with the X-Auth-User it received.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "../support/servers.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define CONF "deploy/nginx/gatehouse.conf"

typedef struct {
    ht_server_t gh;
    ht_server_t front; /* only addr/port: where requests to nginx go */
    pid_t nginx;
    char dir[HT_PATH_MAX];
    ht_response_t r;
} fixture_t;

/* Replaces the first `from` in buf (cap bytes) by `to`; false when absent or it does not fit. */
static bool replace(char *buf, size_t cap, const char *from, const char *to)
{
    char *p = strstr(buf, from);
    if (!p)
        return false;
    size_t fl = strlen(from), tl = strlen(to), rest = strlen(p + fl);
    if (strlen(buf) - fl + tl + 1 > cap)
        return false;
    memmove(p + tl, p + fl, rest + 1);
    memcpy(p, to, tl);
    return true;
}

static bool port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int start_nginx(fixture_t *f)
{
    int front = ts_free_port(), app = ts_free_port();
    if (front <= 0 || app <= 0 || front == app)
        return -1;
    static char conf[65536];
    FILE *in = fopen(CONF, "r");
    if (!in) {
        fprintf(stderr, "cannot read %s\n", CONF);
        return -1;
    }
    size_t n = fread(conf, 1, sizeof conf - 1, in);
    fclose(in);
    conf[n] = '\0';
    char gh_addr[64], app_addr[64], listen[64];
    snprintf(gh_addr, sizeof gh_addr, "%s", f->gh.addr);
    snprintf(app_addr, sizeof app_addr, "127.0.0.1:%d", app);
    snprintf(listen, sizeof listen, "listen 127.0.0.1:%d;", front);
    if (!replace(conf, sizeof conf, "127.0.0.1:8080", gh_addr) ||
        !replace(conf, sizeof conf, "127.0.0.1:3000", app_addr) ||
        !replace(conf, sizeof conf, "listen 80;", listen)) {
        fprintf(stderr, "%s no longer has the lines this test templates\n", CONF);
        return -1;
    }
    char path[HT_PATH_MAX + 64], main_conf[HT_PATH_MAX + 64], err_log[HT_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/gatehouse.conf", f->dir);
    FILE *out = fopen(path, "w");
    if (!out || fputs(conf, out) < 0 || fclose(out) != 0)
        return -1;
    snprintf(main_conf, sizeof main_conf, "%s/nginx.conf", f->dir);
    snprintf(err_log, sizeof err_log, "%s/error.log", f->dir);
    out = fopen(main_conf, "w");
    if (!out)
        return -1;
    const char *d = f->dir;
    fprintf(out,
            "pid %s/nginx.pid;\nerror_log %s info;\ndaemon off;\nmaster_process off;\n"
            "events { worker_connections 64; }\n"
            "http {\n  access_log %s/access.log;\n"
            "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "  include %s;\n"
            "  server { listen 127.0.0.1:%d; location / { default_type text/plain;\n"
            "    return 200 \"app: user=[$http_x_auth_user] id=[$http_x_auth_user_id] "
            "uri=$request_uri\\n\"; } }\n}\n",
            d, err_log, d, d, d, d, d, d, path, app);
    if (fclose(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[] = {"nginx", "-e", err_log, "-p", (char *)d, "-c", main_conf, NULL};
        execv("/usr/sbin/nginx", argv);
        execvp("nginx", argv);
        _exit(127);
    }
    f->nginx = pid;
    f->front.port = front;
    snprintf(f->front.addr, sizeof f->front.addr, "127.0.0.1:%d", front);
    for (int i = 0; i < 200; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->nginx = 0;
            fprintf(stderr, "nginx exited (status %d); see %s\n", status, err_log);
            return -1;
        }
        if (port_open(front))
            return 0;
        ht_sleep_ms(50);
    }
    fprintf(stderr, "nginx did not listen on %d\n", front);
    return -1;
}

static void stop_nginx(fixture_t *f)
{
    if (f->nginx <= 0)
        return;
    kill(f->nginx, SIGQUIT);
    for (int i = 0; i < 100; i++) {
        if (waitpid(f->nginx, NULL, WNOHANG) == f->nginx) {
            f->nginx = 0;
            return;
        }
        ht_sleep_ms(50);
    }
    kill(f->nginx, SIGKILL);
    waitpid(f->nginx, NULL, 0);
    f->nginx = 0;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (ht_server_start(&f->gh, NULL) != 0 || ht_tempdir(f->dir) != 0)
        return -1;
    return start_nginx(f);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    stop_nginx(f);
    ht_server_cleanup(&f->gh);
    if (f->dir[0] && !getenv("GATEHOUSE_TEST_KEEP"))
        ht_rmtree(f->dir);
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

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_front_door_through_nginx, setup, teardown),
        cmocka_unit_test_setup_teardown(a_foreign_rd_is_refused_through_nginx, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
