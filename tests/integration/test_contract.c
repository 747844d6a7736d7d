/*
 * test_contract.c — the contract's three tables (the design document: the v1 HTTP routes, the
 * command-line keys every deployment needs, the metrics) read against a running node, so a row
 * that the code stops honouring fails here: every v1 route answers its documented success
 * status, every key of the table is in `serve --help` with its default, and every metric of the
 * table is on /metrics with its type (and, for the password pool's histogram, with the login
 * that was just made counted).
 *
 * The tables are copied here row by row on purpose: the document is the contract, and a change
 * to either side should be a visible change to this file. Known, documented deviations are
 * marked where they are checked (--hash-workers defaults to half the cores, not all of them:
 * docs/OPERATIONS.md).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define ADMIN "contract-admin-token"
#define PASSWORD "correct horse battery"
#define NEW_PASSWORD "battery staple horse"

typedef struct {
    ht_server_t srv;
    ht_response_t res;
    ht_run_t run;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    free(f);
    return rc;
}

#define FIX(state) ((fixture_t *)*(state))

static void expect_status(long got, long want, const char *what, const ht_response_t *r)
{
    if (got != want)
        fail_msg("%s: status %ld, want %ld; body: %.300s", what, got, want, r->body);
}

/* ---- HTTP API (v1) ---- */

/* Every row of the v1 table, with a request that should succeed, and its documented status. */
static void every_v1_route_answers_as_documented(void **state)
{
    fixture_t *f = FIX(state);
    ht_response_t *r = &f->res;
    char a[64], b[64], sid_b[32], buf[256], path[128];
    long long id = 0;
    assert_int_equal(ht_server_start(&f->srv, "--admin-token", ADMIN, NULL), 0);

    expect_status(ht_json(&f->srv, "POST", "/v1/users", NULL,
                          "{\"username\":\"contract\",\"password\":\"" PASSWORD "\"}", r),
                  201, "POST /v1/users", r);
    assert_true(ht_jint(r, "id", &id) && id > 0);
    assert_true(ht_jstr(r, "username", buf, sizeof buf) && strcmp(buf, "contract") == 0);

    expect_status(ht_json(&f->srv, "POST", "/v1/sessions", NULL,
                          "{\"username\":\"contract\",\"password\":\"" PASSWORD "\"}", r),
                  201, "POST /v1/sessions", r);
    assert_true(ht_jstr(r, "token", a, sizeof a) && ht_is_token(a));
    assert_true(ht_jhas(r, "session.id"));
    assert_true(ht_header(r, "Set-Cookie", buf, sizeof buf));
    assert_non_null(strstr(buf, "gatehouse_session="));
    assert_non_null(strstr(buf, "HttpOnly"));
    assert_non_null(strstr(buf, "SameSite=Lax"));
    assert_non_null(strstr(buf, "Path=/"));
    assert_int_equal(ht_login(&f->srv, "contract", PASSWORD, b, sid_b), 201);

    expect_status(ht_get(&f->srv, "/v1/session", a, r), 200, "GET /v1/session", r);
    assert_true(ht_jhas(r, "user.id") && ht_jhas(r, "user.username"));
    const char *fields[] = {"id", "created_at", "last_seen_at", "expires_at", "idle_expires_at"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        snprintf(buf, sizeof buf, "session.%s", fields[i]);
        if (!ht_jhas(r, buf))
            fail_msg("GET /v1/session lacks %s: %s", buf, r->body);
    }

    expect_status(ht_get(&f->srv, "/v1/sessions", a, r), 200, "GET /v1/sessions", r);
    assert_int_equal(ht_jsize(r, "sessions"), 2);

    expect_status(ht_get(&f->srv, "/v1/auth", a, r), 200, "GET /v1/auth", r);
    assert_true(ht_header(r, "X-Auth-User", buf, sizeof buf) && strcmp(buf, "contract") == 0);
    assert_true(ht_header(r, "X-Auth-User-Id", buf, sizeof buf));
    assert_true(ht_header(r, "X-Auth-Session-Id", buf, sizeof buf));
    expect_status(ht_get(&f->srv, "/v1/auth", NULL, r), 401, "GET /v1/auth without a token", r);
    assert_true(ht_header(r, "WWW-Authenticate", buf, sizeof buf));
    assert_non_null(strstr(buf, "Bearer"));

    snprintf(path, sizeof path, "/v1/sessions/%s", sid_b);
    expect_status(ht_delete(&f->srv, path, a, r), 204, "DELETE /v1/sessions/{id}", r);
    expect_status(ht_get(&f->srv, "/v1/session", b, r), 401, "a revoked session", r);

    expect_status(
        ht_json(&f->srv, "PUT", "/v1/password", a,
                "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"" NEW_PASSWORD "\"}", r),
        204, "PUT /v1/password", r);

    expect_status(ht_delete(&f->srv, "/v1/sessions", a, r), 204, "DELETE /v1/sessions", r);
    assert_int_equal(ht_login(&f->srv, "contract", NEW_PASSWORD, a, NULL), 201);
    expect_status(ht_delete(&f->srv, "/v1/session", a, r), 204, "DELETE /v1/session", r);

    expect_status(ht_get(&f->srv, "/healthz", NULL, r), 200, "GET /healthz", r);
    expect_status(ht_get(&f->srv, "/readyz", NULL, r), 200, "GET /readyz", r);
    expect_status(ht_get(&f->srv, "/metrics", NULL, r), 200, "GET /metrics", r);
    assert_true(ht_header(r, "Content-Type", buf, sizeof buf));
    assert_non_null(strstr(buf, "version=0.0.4"));

    /* Admin routes: 401 without a token, 403 with a wrong one, 200 with the admin token. */
    const char *admin_gets[] = {"/debug/memory", "/v1/admin/users"};
    for (size_t i = 0; i < 2; i++) {
        expect_status(ht_get(&f->srv, admin_gets[i], NULL, r), 401, admin_gets[i], r);
        expect_status(ht_get(&f->srv, admin_gets[i], "not-the-token", r), 403, admin_gets[i], r);
        expect_status(ht_get(&f->srv, admin_gets[i], ADMIN, r), 200, admin_gets[i], r);
    }
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", id);
    expect_status(ht_get(&f->srv, path, ADMIN, r), 200, "GET /v1/admin/users/{id}/sessions", r);
    expect_status(ht_json(&f->srv, "POST", "/v1/admin/users", ADMIN,
                          "{\"username\":\"made-by-admin\",\"password\":\"" PASSWORD "\"}", r),
                  201, "POST /v1/admin/users", r);
    long long made = 0;
    assert_true(ht_jint(r, "id", &made) && made > 0);
    snprintf(path, sizeof path, "/v1/admin/users/%lld", made);
    expect_status(ht_delete(&f->srv, path, ADMIN, r), 204, "DELETE /v1/admin/users/{id}", r);

    /* The table's general failures. */
    expect_status(ht_get(&f->srv, "/v1/no-such-route", NULL, r), 404, "an unknown route", r);
    expect_status(ht_delete(&f->srv, "/v1/users", NULL, r), 405, "a wrong method", r);
    assert_true(ht_header(r, "Allow", buf, sizeof buf));
    ht_server_cleanup(&f->srv);
}

/* ---- command line ---- */

/* The help text of one key: its line, from "--key" (then a space, "[=" or the end of the line)
 * to the end of the line. */
static bool help_line(const char *help, const char *key, char *out, size_t len)
{
    char flag[96];
    snprintf(flag, sizeof flag, "\n  --%s", key);
    for (const char *p = strstr(help, flag); p; p = strstr(p + 1, flag)) {
        char next = p[strlen(flag)];
        if (next != ' ' && next != '[' && next != '\n')
            continue;
        p++;
        size_t n = strcspn(p, "\n");
        snprintf(out, len, "%.*s", (int)n, p);
        return true;
    }
    return false;
}

static void every_key_of_the_table_is_in_serve_help(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--help", NULL), 0);
    assert_int_equal(r->status, 0);
    /* flag, default as the table gives it (NULL: computed, or none) */
    const char *rows[][2] = {
        {"listen", "127.0.0.1:8080"},
        {"data-dir", "./var"},
        {"session-ttl", "12h"},
        {"idle-ttl", "30m"},
        {"max-sessions-per-user", "100"},
        {"memory-limit", "cgroup limit, else 50% of RAM"},
        {"session-memory", "half of --memory-limit"},
        {"session-policy", "evict-idle"},
        {"hash-memory", "19MiB"},
        {"hash-ops", "2"},
        /* Documented deviation: half the cores, not all (docs/OPERATIONS.md, BENCHMARKS.md). */
        {"hash-workers", "half the cores"},
        {"hash-queue", "64"},
        {"registration", "open"},
        {"throttle-ip", "20/1m"},
        {"throttle-account", "10"},
        {"trusted-proxies", "none"},
        {"admin-token", "none"},
        {"admin-token-file", "none"},
        {"cookie-secure", "false"},
        {"user-store", "sqlite"},
        {"postgres-url", "none"},
        {"session-store", "memory"},
        {"redis-url", "none"},
        {"statsd", "off"},
        {"alert-webhook", "off"},
        {"watch-window", "10m"},
        {"watch-interval", "1s"},
        {"heap-profile", "on"},
        {"heap-sample-interval", "512KiB"},
        {"log-format", "json"},
        {"log-level", "info"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char line[1024], want[128];
        if (!help_line(r->out, rows[i][0], line, sizeof line))
            fail_msg("serve --help lacks --%s", rows[i][0]);
        snprintf(want, sizeof want, "(default: %s", rows[i][1]);
        if (!strstr(line, want))
            fail_msg("serve --help: --%s does not show its default \"%s\": %s", rows[i][0],
                     rows[i][1], line);
    }
    /* The admin routes answer 403 when no token is configured (the HTTP table, docs/API.md). */
    char line[1024];
    assert_true(help_line(r->out, "admin-token", line, sizeof line));
    assert_non_null(strstr(line, "403"));
    assert_null(strstr(line, "401"));
}

/* ---- metrics ---- */

/* "# TYPE name type" is on the page. */
static void expect_type(const char *page, const char *name, const char *type)
{
    char want[160];
    snprintf(want, sizeof want, "# TYPE %s %s\n", name, type);
    if (!strstr(page, want))
        fail_msg("/metrics lacks \"# TYPE %s %s\"", name, type);
}

/* A sample line that starts with `prefix` (name and the start of its labels). */
static void expect_sample(const char *page, const char *prefix)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s", prefix);
    if (!strstr(page, want))
        fail_msg("/metrics has no sample starting %s", prefix);
}

static void every_metric_of_the_table_is_exported_with_its_type(void **state)
{
    fixture_t *f = FIX(state);
    ht_response_t *r = &f->res;
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    assert_int_equal(ht_register(&f->srv, "metered", PASSWORD, NULL), 201);
    char token[64];
    assert_int_equal(ht_login(&f->srv, "metered", PASSWORD, token, NULL), 201);
    assert_int_equal(ht_login(&f->srv, "metered", "wrong password", NULL, NULL), 401);
    assert_int_equal(ht_get(&f->srv, "/v1/session", token, r), 200);
    /* A request's duration is observed when libmicrohttpd reports it complete, which can come
     * after the client has its reply: a scrape right behind it may not show it yet. */
    for (int tries = 0;; tries++) {
        assert_int_equal(ht_get(&f->srv, "/metrics", NULL, r), 200);
        if (strstr(r->body,
                   "\ngatehouse_http_request_duration_seconds_bucket{route=\"/v1/session\",") ||
            tries == 100)
            break;
        usleep(20 * 1000);
    }
    assert_false(r->truncated);
    const char *page = r->body;

    const char *rows[][2] = {
        {"gatehouse_sessions_active", "gauge"},
        {"gatehouse_sessions_created_total", "counter"},
        {"gatehouse_sessions_ended_total", "counter"},
        {"gatehouse_logins_total", "counter"},
        {"gatehouse_http_requests_total", "counter"},
        {"gatehouse_http_request_duration_seconds", "histogram"},
        {"gatehouse_password_queue_depth", "gauge"},
        {"gatehouse_password_hash_duration_seconds", "histogram"},
        {"gatehouse_memory_bytes", "gauge"},
        {"gatehouse_memory_limit_bytes", "gauge"},
        {"gatehouse_memory_unexplained_bytes", "gauge"},
        {"gatehouse_memory_exhaustion_eta_seconds", "gauge"},
        {"gatehouse_alert_firing", "gauge"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_virtual_memory_bytes", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_open_fds", "gauge"},
        {"process_max_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        expect_type(page, rows[i][0], rows[i][1]);

    /* The labels the table names, with every value it lists. */
    const char *reasons[] = {"logout", "revoked", "idle", "expired", "evicted"};
    for (size_t i = 0; i < 5; i++) {
        char p[128];
        snprintf(p, sizeof p, "gatehouse_sessions_ended_total{reason=\"%s\"}", reasons[i]);
        expect_sample(page, p);
    }
    const char *results[] = {"success", "failure", "rate_limited", "overloaded"};
    for (size_t i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof p, "gatehouse_logins_total{result=\"%s\"}", results[i]);
        expect_sample(page, p);
    }
    const char *components[] = {"sessions", "users",   "ratelimit", "http",
                                "password", "metrics", "sqlite",    "other"};
    for (size_t i = 0; i < 8; i++) {
        char p[128];
        snprintf(p, sizeof p, "gatehouse_memory_bytes{component=\"%s\"}", components[i]);
        expect_sample(page, p);
    }
    const char *alerts[] = {"memory_high", "memory_exhaustion_forecast", "memory_leak_suspected"};
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof p, "gatehouse_alert_firing{alert=\"%s\",severity=", alerts[i]);
        expect_sample(page, p);
    }
    /* Per route template, never per raw path. */
    expect_sample(page, "gatehouse_http_requests_total{route=\"/v1/sessions\",");
    assert_non_null(strstr(page, "code=\"201\"}"));
    expect_sample(page, "gatehouse_http_request_duration_seconds_bucket{route=\"/v1/session\",");

    /* The password pool's histogram counts the registration's hash and both logins' verifies. */
    const char *count = strstr(page, "\ngatehouse_password_hash_duration_seconds_count ");
    assert_non_null(count);
    long long n = atoll(count + strlen("\ngatehouse_password_hash_duration_seconds_count "));
    if (n < 3)
        fail_msg("gatehouse_password_hash_duration_seconds_count is %lld, want at least 3", n);
    expect_sample(page, "gatehouse_password_hash_duration_seconds_bucket{le=\"+Inf\"}");
    ht_server_cleanup(&f->srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_v1_route_answers_as_documented, setup, teardown),
        cmocka_unit_test_setup_teardown(every_key_of_the_table_is_in_serve_help, setup, teardown),
        cmocka_unit_test_setup_teardown(every_metric_of_the_table_is_exported_with_its_type, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
