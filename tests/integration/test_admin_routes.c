/*
 * test_admin_routes.c — every route the table flags GH_ROUTE_ADMIN, walked from the table itself
 * (gh_api_routes, linked from the library) and asked through the real binary without a token,
 * with a wrong one and with a user's session token: each must be refused with the contract's body
 * (401 unauthenticated, 403 forbidden) before its handler runs — so nothing happens, whatever the
 * request asked. A route added to the table with the flag is covered without touching this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "api/api.h"
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

/* The route's template with each {param} filled: "{id}" with the user's id, any other (a
 * session id) with the user's session id. */
static void concrete_path(const char *tpl, long long user_id, const char *sid, char *out,
                          size_t cap)
{
    size_t o = 0;
    for (const char *p = tpl; *p && o + 1 < cap;) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            assert_non_null(close);
            char v[64];
            if (close - p == 3 && strncmp(p, "{id}", 4) == 0)
                snprintf(v, sizeof v, "%lld", user_id);
            else
                snprintf(v, sizeof v, "%s", sid);
            int n = snprintf(out + o, cap - o, "%s", v);
            assert_true(n > 0 && (size_t)n < cap - o);
            o += (size_t)n;
            p = close + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static const char *method_name(unsigned methods)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{GH_HTTP_GET, "GET"},       {GH_HTTP_POST, "POST"},   {GH_HTTP_PUT, "PUT"},
                 {GH_HTTP_DELETE, "DELETE"}, {GH_HTTP_PATCH, "PATCH"}, {GH_HTTP_HEAD, "HEAD"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (methods & names[i].bit)
            return names[i].name;
    return "GET";
}

static void expect_refused(ht_response_t *r, long got, long want, const char *code,
                           const char *what, const char *method, const char *path)
{
    if (got != want || strcmp(r->error_code, code) != 0)
        fail_msg("%s %s %s -> %ld \"%s\", want %ld \"%s\"; body: %.300s", what, method, path, got,
                 r->error_code, want, code, r->body);
    char msg[256];
    if (!ht_jstr(r, "error.message", msg, sizeof msg) || !msg[0] || ht_jsize(r, "") != 1 ||
        ht_jsize(r, "error") != 2)
        fail_msg("%s %s %s: not the contract's error body: %.300s", what, method, path, r->body);
    if (want == 401 && ht_header_count(r, "WWW-Authenticate") != 1)
        fail_msg("%s %s %s: 401 without WWW-Authenticate", what, method, path);
}

static void every_admin_route_refuses_without_the_admin_token(void **state)
{
    fixture_t *f = *state;
    ht_server_t *s = &f->srv;
    ht_response_t *r = &f->r;
    if (ht_server_start(s, "--admin-token", ADMIN, NULL) != 0)
        fail_msg("server did not start");
    long long uid = 0;
    char token[64], sid[32];
    assert_int_equal(ht_register(s, "fay", PASSWORD, &uid), 201);
    assert_int_equal(ht_login(s, "fay", PASSWORD, token, sid), 201);
    /* A body each handler would act on, were it ever reached. */
    const char *body = "{\"username\":\"gus\",\"password\":\"" PASSWORD "\"}";
    char bearer_wrong[128], bearer_user[128];
    snprintf(bearer_wrong, sizeof bearer_wrong, "Authorization: Bearer not-the-%s", ADMIN);
    snprintf(bearer_user, sizeof bearer_user, "Authorization: Bearer %s", token);
    const char *ct = "Content-Type: application/json";

    size_t admin_routes = 0;
    for (size_t i = 0; i < gh_api_nroutes; i++) {
        const gh_route_t *route = &gh_api_routes[i];
        if ((route->flags & GH_ROUTE_ADMIN) != GH_ROUTE_ADMIN)
            continue;
        admin_routes++;
        char path[256];
        concrete_path(route->template, uid, sid, path, sizeof path);
        const char *m = method_name(route->methods);
        size_t blen = strlen(body);
        const char *none[] = {ct, NULL};
        const char *wrong[] = {ct, bearer_wrong, NULL};
        const char *user[] = {ct, bearer_user, NULL};
        const char *malformed[] = {ct, "Authorization: Basic Zm9vOmJhcg==", NULL};
        expect_refused(r, ht_request(s, m, path, none, body, blen, r), 401, "unauthenticated",
                       "without a token", m, path);
        expect_refused(r, ht_request(s, m, path, malformed, body, blen, r), 401, "unauthenticated",
                       "with Basic auth", m, path);
        expect_refused(r, ht_request(s, m, path, wrong, body, blen, r), 403, "forbidden",
                       "with a wrong token", m, path);
        expect_refused(r, ht_request(s, m, path, user, body, blen, r), 403, "forbidden",
                       "with a user's session token", m, path);
    }
    print_message("%zu admin routes refused three ways\n", admin_routes);
    assert_true(admin_routes >= 7);
    /* Nothing happened: fay and her session are there, gus was never created. */
    assert_int_equal(ht_get(s, "/v1/session", token, r), 200);
    assert_int_equal(ht_login(s, "gus", PASSWORD, NULL, NULL), 401);
    /* And the admin token opens them (one read-only route as the witness). */
    const char *admin_hdr[] = {"Authorization: Bearer " ADMIN, NULL};
    assert_int_equal(ht_request(s, "GET", "/v1/admin/users", admin_hdr, NULL, 0, r), 200);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_admin_route_refuses_without_the_admin_token, setup,
                                        teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
