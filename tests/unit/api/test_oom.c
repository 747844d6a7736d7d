/*
 * test_oom.c — allocation failure through the whole request path (SQLite's OOM tests, curl's
 * torture mode). A node runs in this process; for each step of register → login (JSON and HTML
 * form) → token check → list → logout → expiry, the n-th allocation is failed for n = 1, 2, ...
 * until a request runs without reaching it. Every answer must be the step's success or the
 * contract's 503 `overloaded` body, the node must keep serving, and when everything has ended the
 * sessions and http components must be back at their baseline exactly. (Under `make test-asan`,
 * LeakSanitizer also checks that nothing leaked outside the accounting.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "api/api.h"
#include "node/node.h"
#include "common/clock.h"
#include "mem/mem.h"

#define PASSWORD "correct horse battery"
#define MAX_SWEEP 400

static gh_node_t *node;
static CURL *curl;
static char base[64];
static char dir[256];

typedef struct {
    long status;
    char body[8192];
    size_t len;
} resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = size * n, room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    return len;
}

static long req_typed(const char *method, const char *path, const char *token,
                      const char *content_type, const char *body, resp_t *r)
{
    char url[256], auth[128];
    struct curl_slist *h = NULL;
    memset(r, 0, sizeof *r);
    snprintf(url, sizeof url, "%s%s", base, path);
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (body) {
        char ct[96];
        snprintf(ct, sizeof ct, "Content-Type: %s", content_type);
        h = curl_slist_append(h, ct);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    return r->status;
}

static long req(const char *method, const char *path, const char *token, const char *json,
                resp_t *r)
{
    return req_typed(method, path, token, "application/json", json, r);
}

static void assert_ok_or_overloaded(const resp_t *r, long ok)
{
    if (r->status == ok)
        return;
    if (r->status == 503 && strstr(r->body, "\"code\":\"overloaded\""))
        return;
    fail_msg("expected %ld or 503 overloaded, got %ld: %s", ok, r->status, r->body);
}

static void still_serving(void)
{
    resp_t r;
    assert_int_equal(req("GET", "/healthz", NULL, NULL, &r), 200);
}

/* Requests finish (and free their pool) just after the reply is read: wait for it. */
static void wait_component(gh_mem_component_t c, size_t want)
{
    for (int i = 0; i < 200 && gh_mem_bytes(c) != want; i++)
        usleep(10000);
    assert_int_equal(gh_mem_bytes(c), want);
}

static int login(const char *user, char token[64])
{
    char body[160];
    resp_t r;
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", user);
    if (req("POST", "/v1/sessions", NULL, body, &r) != 201)
        return -1;
    const char *t = strstr(r.body, "\"token\":\"");
    if (!t)
        return -1;
    memcpy(token, t + 9, GH_TOKEN_LEN);
    token[GH_TOKEN_LEN] = '\0';
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/gh-oom-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    char *argv[] = {"serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--data-dir",
                    dir,
                    "--hash-memory",
                    "8KiB",
                    "--hash-ops",
                    "1",
                    "--log-level",
                    "error",
                    "--hash-workers",
                    "1",
                    "--throttle-ip",
                    "0", /* hundreds of registrations from one address:
                            not what this tests */
                    "--webauthn-rp-id",
                    "localhost",
                    NULL};
    gh_config_t cfg;
    char err[256];
    if (gh_config_load(&cfg, 17, argv, stdout, err, sizeof err) != 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    gh_log_setup(GH_LOG_JSON, GH_LOG_ERROR);
    if (gh_node_start(&cfg, &node) != 0)
        return -1;
    snprintf(base, sizeof base, "http://127.0.0.1:%u", gh_node_port(node));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl = curl_easy_init();
    return curl ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    curl_easy_cleanup(curl);
    gh_node_stop(&node, 1000);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs one step with the n-th allocation failing, for every n the step reaches. */
typedef long (*step_fn)(uint64_t n, resp_t *r);

static int sweep(step_fn step, long ok)
{
    for (uint64_t n = 1; n <= MAX_SWEEP; n++) {
        resp_t r;
        gh_mem_fail_at(n);
        step(n, &r);
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        if (r.status != ok && r.status != 503)
            printf("failing allocation %llu of the step\n", (unsigned long long)n);
        assert_ok_or_overloaded(&r, ok);
        still_serving();
        if (!fired) {
            assert_int_equal(r.status, ok);
            return (int)n;
        }
    }
    fail_msg("the step still allocates after %d failures", MAX_SWEEP);
    return -1;
}

static char token[64];

static long step_register(uint64_t n, resp_t *r)
{
    char body[160];
    snprintf(body, sizeof body, "{\"username\":\"user%llu\",\"password\":\"" PASSWORD "\"}",
             (unsigned long long)n);
    return req("POST", "/v1/users", NULL, body, r);
}

static long step_login(uint64_t n, resp_t *r)
{
    (void)n;
    return req("POST", "/v1/sessions", NULL, "{\"username\":\"oom\",\"password\":\"" PASSWORD "\"}",
               r);
}

/* The HTML form login: its decoder takes request pool memory a JSON login does not. */
static long step_login_form(uint64_t n, resp_t *r)
{
    (void)n;
    return req_typed("POST", "/v1/sessions", NULL, "application/x-www-form-urlencoded",
                     "username=oom&password=correct+horse+battery", r);
}

static long step_auth(uint64_t n, resp_t *r)
{
    (void)n;
    return req("GET", "/v1/auth", token, NULL, r);
}

static long step_whoami(uint64_t n, resp_t *r)
{
    (void)n;
    return req("GET", "/v1/session", token, NULL, r);
}

static long step_list(uint64_t n, resp_t *r)
{
    (void)n;
    return req("GET", "/v1/sessions", token, NULL, r);
}

static long step_logout(uint64_t n, resp_t *r)
{
    (void)n;
    char fresh[64];
    gh_mem_fail_at(0);
    if (login("oom", fresh) != 0)
        fail_msg("login without failures failed");
    gh_mem_fail_at(n);
    return req("DELETE", "/v1/session", fresh, NULL, r);
}

/* Passkeys: options (a challenge in the accounted table) and a malformed credential. */
static long step_passkey_options(uint64_t n, resp_t *r)
{
    (void)n;
    return req("POST", "/v1/sessions/passkey/options", NULL, "{}", r);
}

static long step_passkey_register_options(uint64_t n, resp_t *r)
{
    (void)n;
    return req("POST", "/v1/factors/webauthn/options", token, "{}", r);
}

static long step_passkey_malformed(uint64_t n, resp_t *r)
{
    (void)n;
    return req("POST", "/v1/sessions/passkey", NULL,
               "{\"credential\":{\"type\":\"public-key\",\"rawId\":\"AAAA\",\"response\":{}}}", r);
}

static void every_step_survives_each_failed_allocation(void **state)
{
    (void)state;
    gh_app_t *app = gh_node_app(node);
    size_t sessions0 = gh_mem_bytes(GH_MEM_SESSIONS);
    size_t sessions_obj0 = gh_mem_objects(GH_MEM_SESSIONS);
    size_t http0 = gh_mem_bytes(GH_MEM_HTTP);
    resp_t r;

    int n = sweep(step_register, 201);
    printf("register: %d allocations\n", n - 1);
    assert_int_equal(
        req("POST", "/v1/users", NULL, "{\"username\":\"oom\",\"password\":\"" PASSWORD "\"}", &r),
        201);
    n = sweep(step_login, 201);
    printf("login: %d allocations\n", n - 1);
    n = sweep(step_login_form, 201);
    printf("login (form): %d allocations\n", n - 1);
    assert_int_equal(login("oom", token), 0);
    printf("auth: %d, whoami: %d, list: %d allocations\n", sweep(step_auth, 200) - 1,
           sweep(step_whoami, 200) - 1, sweep(step_list, 200) - 1);
    printf("passkey options: %d, registration options: %d, malformed: %d allocations\n",
           sweep(step_passkey_options, 200) - 1, sweep(step_passkey_register_options, 200) - 1,
           sweep(step_passkey_malformed, 400) - 1);
    printf("logout: %d allocations\n", sweep(step_logout, 204) - 1);

    /* Expiry allocates nothing: with every allocation failing, a sweep two days ahead still
     * ends every session left (50 more, and the one the checks above used). */
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    char t[GH_TOKEN_LEN + 1];
    for (int i = 0; i < 50; i++) {
        gh_token_new(t, hash);
        assert_int_equal(
            gh_session_create(app->sessions, 999, hash, NULL, gh_clock_now_ms(), &info), 0);
    }
    int64_t later = gh_clock_now_ms() + 48LL * 3600 * 1000;
    gh_mem_fail_at(1);
    for (int i = 0; i < 100; i++)
        (void)gh_session_expire(app->sessions, later, 1000);
    bool fired = gh_mem_fail_fired();
    gh_mem_fail_at(0);
    assert_false(fired);
    gh_session_stats_t st;
    gh_session_stats(app->sessions, &st);
    assert_int_equal(st.active, 0);
    assert_int_equal(req("GET", "/v1/auth", token, NULL, &r), 401);

    /* Every byte is back. */
    wait_component(GH_MEM_HTTP, http0);
    assert_int_equal(gh_mem_bytes(GH_MEM_SESSIONS), sessions0);
    assert_int_equal(gh_mem_objects(GH_MEM_SESSIONS), sessions_obj0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_step_survives_each_failed_allocation),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, setup, teardown);
}
