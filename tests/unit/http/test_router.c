/* test_router.c — route matching: literal and parameter segments, 404 vs 405 with the allowed
 * methods, HEAD answered where GET is, and hostile paths that must never reach a handler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http/http.h"

static void h(gh_req_t *r)
{
    (void)r;
}

static const gh_route_t routes[] = {
    {GH_HTTP_POST, "/v1/sessions", h, 0},
    {GH_HTTP_GET, "/v1/sessions", h, 0},
    {GH_HTTP_DELETE, "/v1/sessions/{id}", h, 0},
    {GH_HTTP_GET, "/v1/admin/users/{id}/sessions", h, 0},
    {GH_HTTP_DELETE, "/v1/admin/users/{id}/sessions/{sid}", h, 0},
    {GH_HTTP_GET, "/healthz", h, 0},
};
#define N (sizeof routes / sizeof routes[0])

static int match(unsigned method, const char *path, unsigned *allowed,
                 char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1], size_t *np)
{
    return gh_router_match(routes, N, method, path, params, np, allowed);
}

static void literal_routes_match_by_method(void **state)
{
    (void)state;
    char p[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t np;
    unsigned allowed;
    assert_int_equal(match(GH_HTTP_POST, "/v1/sessions", &allowed, p, &np), 0);
    assert_int_equal(match(GH_HTTP_GET, "/v1/sessions", &allowed, p, &np), 1);
    assert_int_equal(np, 0);
    assert_int_equal(match(GH_HTTP_GET, "/healthz", &allowed, p, &np), 5);
    assert_int_equal(match(GH_HTTP_HEAD, "/healthz", &allowed, p, &np), 5);
}

static void parameters_are_captured(void **state)
{
    (void)state;
    char p[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t np;
    unsigned allowed;
    assert_int_equal(match(GH_HTTP_DELETE, "/v1/sessions/AbC-_9", &allowed, p, &np), 2);
    assert_int_equal(np, 1);
    assert_string_equal(p[0], "AbC-_9");
    assert_int_equal(match(GH_HTTP_DELETE, "/v1/admin/users/42/sessions/xyz", &allowed, p, &np), 4);
    assert_int_equal(np, 2);
    assert_string_equal(p[0], "42");
    assert_string_equal(p[1], "xyz");
}

static void wrong_method_lists_allowed(void **state)
{
    (void)state;
    char p[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t np;
    unsigned allowed;
    assert_int_equal(match(GH_HTTP_PUT, "/v1/sessions", &allowed, p, &np), -1);
    assert_int_equal(allowed, GH_HTTP_POST | GH_HTTP_GET | GH_HTTP_HEAD);
    char allow[64];
    gh_http_allow_header(allowed, allow);
    assert_string_equal(allow, "GET, HEAD, POST");
    assert_int_equal(match(GH_HTTP_GET, "/v1/sessions/abc", &allowed, p, &np), -1);
    assert_int_equal(allowed, GH_HTTP_DELETE);
}

static void unknown_and_hostile_paths_do_not_match(void **state)
{
    (void)state;
    char p[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t np;
    unsigned allowed;
    char long_id[200] = "/v1/sessions/";
    memset(long_id + strlen(long_id), 'a', 100);
    const char *bad[] = {"",
                         "/",
                         "/v1",
                         "/v1/sessions/",
                         "/v1/sessions//",
                         "/v1/sessions/a/b",
                         "/v1/sessions/a%2Fb",
                         "/v1/sessions/../users",
                         "/v1/sessions/a b",
                         "//v1/sessions",
                         "/v1/sessionsX",
                         "/V1/SESSIONS",
                         "/healthz/",
                         "v1/sessions",
                         long_id};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        for (unsigned m = GH_HTTP_GET; m <= GH_HTTP_OTHER; m <<= 1) {
            int rc = match(m, bad[i], &allowed, p, &np);
            if (rc >= 0)
                fail_msg("%s matched route %d", bad[i], rc);
        }
        assert_int_equal(allowed, 0);
    }
}

static void method_names(void **state)
{
    (void)state;
    assert_int_equal(gh_http_method_parse("GET"), GH_HTTP_GET);
    assert_int_equal(gh_http_method_parse("DELETE"), GH_HTTP_DELETE);
    assert_int_equal(gh_http_method_parse("get"), GH_HTTP_OTHER);
    assert_int_equal(gh_http_method_parse("BREW"), GH_HTTP_OTHER);
}

static int admit_nobody(gh_req_t *r)
{
    (void)r;
    return GH_EAUTH;
}

/* A guarded route with no admit function to guard it: the server refuses to start rather than
 * serve the route open. */
static void guarded_routes_need_an_admit_function(void **state)
{
    (void)state;
    static const gh_route_t guarded[] = {
        {GH_HTTP_GET, "/healthz", h, 0},
        {GH_HTTP_GET, "/v1/admin/users", h, GH_ROUTE_GUARDED | 1u},
    };
    gh_http_options_t opt = {
        .listen_fd = -1, .threads = 1, .max_connections = 4, .routes = guarded, .nroutes = 2};
    gh_http_server_t *s = NULL;
    assert_int_equal(gh_http_start(&opt, &s), GH_EINVAL);
    assert_null(s);
    /* With one, it starts (on a socket of its own) and stops. */
    int fd = -1;
    uint16_t port = 0;
    assert_int_equal(gh_http_listen("127.0.0.1", 0, &fd, &port), 0);
    opt.listen_fd = fd;
    opt.admit = admit_nobody;
    assert_int_equal(gh_http_start(&opt, &s), 0);
    gh_http_stop(&s, 0);
    assert_null(s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(literal_routes_match_by_method),
        cmocka_unit_test(parameters_are_captured),
        cmocka_unit_test(wrong_method_lists_allowed),
        cmocka_unit_test(unknown_and_hostile_paths_do_not_match),
        cmocka_unit_test(method_names),
        cmocka_unit_test(guarded_routes_need_an_admit_function),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
