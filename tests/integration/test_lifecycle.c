/*
 * test_lifecycle.c — the session lifecycle through the real binary: idle and absolute expiry
 * without anyone presenting the token, the session budget under both policies, the per-user cap,
 * and the sessions component back at its baseline once every session has ended.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "harness.h"

#define ADMIN "lifecycle-admin-token"
#define PASSWORD "correct horse battery"

/* Reads one sample from /metrics: `series` is the name with its labels exactly as rendered. */
static double metric(const ht_server_t *s, const char *series)
{
    static ht_response_t r;
    assert_int_equal(ht_get(s, "/metrics", NULL, &r), 200);
    size_t n = strlen(series);
    for (const char *line = r.body; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return -1;
}

/* Accounted bytes and objects of the sessions component, from /debug/memory. */
static void session_memory(const ht_server_t *s, long long *bytes, long long *objects)
{
    static ht_response_t r;
    assert_int_equal(ht_get(s, "/debug/memory", ADMIN, &r), 200);
    assert_true(ht_jint(&r, "components.sessions.bytes", bytes));
    assert_true(ht_jint(&r, "components.sessions.objects", objects));
}

/* A keep-alive client for floods of logins (the harness opens a connection per request). */
typedef struct {
    CURL *c;
    char url[128];
    char body[2048];
    size_t len;
} flood_t;

static size_t flood_body(char *p, size_t size, size_t n, void *arg)
{
    flood_t *f = arg;
    size_t len = size * n, room = sizeof f->body - 1 - f->len;
    size_t take = len < room ? len : room;
    memcpy(f->body + f->len, p, take);
    f->len += take;
    f->body[f->len] = '\0';
    return len;
}

static void flood_init(flood_t *f, const ht_server_t *s)
{
    f->c = curl_easy_init();
    assert_non_null(f->c);
    snprintf(f->url, sizeof f->url, "http://%s/v1/sessions", s->addr);
}

/* One login; returns the status and copies the token on 201. */
static long flood_login(flood_t *f, const char *user, char token[64])
{
    char json[160];
    long status = 0;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(json, sizeof json, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", user);
    f->len = 0;
    f->body[0] = '\0';
    curl_easy_setopt(f->c, CURLOPT_URL, f->url);
    curl_easy_setopt(f->c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(f->c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(f->c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(f->c, CURLOPT_WRITEFUNCTION, flood_body);
    curl_easy_setopt(f->c, CURLOPT_WRITEDATA, f);
    if (curl_easy_perform(f->c) == CURLE_OK)
        curl_easy_getinfo(f->c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    if (status == 201 && token) {
        const char *t = strstr(f->body, "\"token\":\"");
        assert_non_null(t);
        memcpy(token, t + 9, 46);
        token[46] = '\0';
    }
    return status;
}

static void flood_done(flood_t *f)
{
    curl_easy_cleanup(f->c);
}

static long auth_status(const ht_server_t *s, const char *token)
{
    static ht_response_t r;
    return ht_get(s, "/v1/auth", token, &r);
}

static void expiry_is_exact_without_anyone_asking(void **state)
{
    (void)state;
    ht_server_t s = {0};
    assert_int_equal(ht_server_start(&s, "--session-ttl", "4s", "--idle-ttl", "2s", "--admin-token",
                                     ADMIN, NULL),
                     0);
    long long base_bytes, base_objects, bytes, objects;
    session_memory(&s, &base_bytes, &base_objects);
    assert_int_equal(ht_register(&s, "erin", PASSWORD, NULL), 201);
    char idle[64], busy[64];
    assert_int_equal(ht_login(&s, "erin", PASSWORD, idle, NULL), 201);
    assert_int_equal(ht_login(&s, "erin", PASSWORD, busy, NULL), 201);
    long long t0 = ht_now_ms();

    /* `busy` is used every 300 ms; `idle` is never presented again. */
    long long idle_ended_at = 0;
    while (ht_now_ms() - t0 < 3500) {
        assert_int_equal(auth_status(&s, busy), 200);
        if (!idle_ended_at && metric(&s, "gatehouse_sessions_ended_total{reason=\"idle\"}") == 1)
            idle_ended_at = ht_now_ms();
        ht_sleep_ms(100);
    }
    assert_true(idle_ended_at > 0);
    print_message("idle session ended %lld ms after login (deadline 2000)\n", idle_ended_at - t0);
    assert_true(idle_ended_at - t0 >= 1900);
    assert_true(idle_ended_at - t0 <= 3000 + 150);

    /* The busy one outlived its idle timeout; it still ends at the absolute deadline. */
    long long expired_at = 0;
    while (ht_now_ms() - t0 < 7000 && !expired_at) {
        if (metric(&s, "gatehouse_sessions_ended_total{reason=\"expired\"}") == 1)
            expired_at = ht_now_ms();
        else
            ht_sleep_ms(50);
    }
    assert_true(expired_at > 0);
    print_message("used session ended %lld ms after login (deadline 4000)\n", expired_at - t0);
    assert_true(expired_at - t0 >= 3900);
    assert_true(expired_at - t0 <= 5000 + 150);
    assert_int_equal(auth_status(&s, busy), 401);
    assert_int_equal(auth_status(&s, idle), 401);
    assert_true(metric(&s, "gatehouse_sessions_active") == 0);
    session_memory(&s, &bytes, &objects);
    assert_int_equal(bytes, base_bytes);
    assert_int_equal(objects, base_objects);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
}

#define BUDGET (1024 * 1024)

static void budget_evicts_least_recently_used(void **state)
{
    (void)state;
    ht_server_t s = {0};
    assert_int_equal(ht_server_start(&s, "--session-memory", "1MiB", "--max-sessions-per-user",
                                     "1000000", "--admin-token", ADMIN, NULL),
                     0);
    assert_int_equal(ht_register(&s, "flood", PASSWORD, NULL), 201);
    flood_t f;
    flood_init(&f, &s);
    char first[64], kept[64], last[64];
    assert_int_equal(flood_login(&f, "flood", first), 201);
    assert_int_equal(flood_login(&f, "flood", kept), 201);
    long long bytes, objects, max_bytes = 0;
    int i;
    for (i = 0; i < 20000; i++) {
        assert_int_equal(flood_login(&f, "flood", last), 201);
        if (i % 500 == 0) {
            assert_int_equal(auth_status(&s, kept), 200); /* recently used: not the LRU one */
            session_memory(&s, &bytes, &objects);
            max_bytes = bytes > max_bytes ? bytes : max_bytes;
            assert_true(bytes <= BUDGET);
        }
        if (i > 2000 && i % 1000 == 0 &&
            metric(&s, "gatehouse_sessions_ended_total{reason=\"evicted\"}") > 1000)
            break;
    }
    flood_done(&f);
    double evicted = metric(&s, "gatehouse_sessions_ended_total{reason=\"evicted\"}");
    double active = metric(&s, "gatehouse_sessions_active");
    print_message("%d logins, %.0f evicted, %.0f active, sessions bytes peaked at %lld\n", i + 3,
                  evicted, active, max_bytes);
    assert_true(evicted > 0);
    assert_true(active > 1000);
    assert_int_equal(auth_status(&s, first), 401); /* the least recently used went first */
    assert_int_equal(auth_status(&s, kept), 200);
    assert_int_equal(auth_status(&s, last), 200);
    session_memory(&s, &bytes, &objects);
    assert_true(bytes <= BUDGET);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
}

static void budget_refuses_new_logins_and_keeps_old_ones(void **state)
{
    (void)state;
    ht_server_t s = {0};
    assert_int_equal(ht_server_start(&s, "--session-memory", "1MiB", "--session-policy", "refuse",
                                     "--max-sessions-per-user", "1000000", "--admin-token", ADMIN,
                                     NULL),
                     0);
    assert_int_equal(ht_register(&s, "flood", PASSWORD, NULL), 201);
    flood_t f;
    flood_init(&f, &s);
    char first[64], tok[64];
    assert_int_equal(flood_login(&f, "flood", first), 201);
    long status = 0;
    int i;
    for (i = 0; i < 20000; i++) {
        status = flood_login(&f, "flood", tok);
        if (status != 201)
            break;
    }
    assert_int_equal(status, 503);
    assert_non_null(strstr(f.body, "\"code\":\"overloaded\""));
    flood_done(&f);
    print_message("refused after %d logins\n", i + 1);
    ht_response_t *r = calloc(1, sizeof *r);
    assert_int_equal(ht_json(&s, "POST", "/v1/sessions", NULL,
                             "{\"username\":\"flood\",\"password\":\"" PASSWORD "\"}", r),
                     503);
    char retry[16];
    assert_true(ht_header(r, "Retry-After", retry, sizeof retry));
    free(r);
    assert_int_equal(auth_status(&s, first), 200);
    assert_int_equal(auth_status(&s, tok), 200);
    assert_true(metric(&s, "gatehouse_logins_total{result=\"overloaded\"}") >= 2);
    assert_true(metric(&s, "gatehouse_sessions_ended_total{reason=\"evicted\"}") == 0);
    long long bytes, objects;
    session_memory(&s, &bytes, &objects);
    assert_true(bytes <= BUDGET);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
}

static void per_user_cap_evicts_the_oldest(void **state)
{
    (void)state;
    ht_server_t s = {0};
    assert_int_equal(ht_server_start(&s, "--max-sessions-per-user", "3", NULL), 0);
    assert_int_equal(ht_register(&s, "capped", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(&s, "other", PASSWORD, NULL), 201);
    char tok[5][64], other[64];
    assert_int_equal(ht_login(&s, "other", PASSWORD, other, NULL), 201);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ht_login(&s, "capped", PASSWORD, tok[i], NULL), 201);
    assert_int_equal(auth_status(&s, tok[0]), 401);
    assert_int_equal(auth_status(&s, tok[1]), 401);
    for (int i = 2; i < 5; i++)
        assert_int_equal(auth_status(&s, tok[i]), 200);
    assert_int_equal(auth_status(&s, other), 200);
    static ht_response_t r;
    assert_int_equal(ht_get(&s, "/v1/sessions", tok[4], &r), 200);
    assert_int_equal(ht_jsize(&r, "sessions"), 3);
    assert_true(metric(&s, "gatehouse_sessions_ended_total{reason=\"evicted\"}") == 2);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
}

/* Thousands of sessions ended by every API path: the books must balance exactly. */
static void every_end_path_returns_to_baseline(void **state)
{
    (void)state;
    ht_server_t s = {0};
    assert_int_equal(
        ht_server_start(&s, "--admin-token", ADMIN, "--max-sessions-per-user", "1000", NULL), 0);
    long long base_bytes, base_objects, bytes, objects;
    session_memory(&s, &base_bytes, &base_objects);
    enum { USERS = 4, PER_USER = 500 };
    static char tokens[USERS][PER_USER][64];
    long long ids[USERS];
    flood_t f;
    flood_init(&f, &s);
    for (int u = 0; u < USERS; u++) {
        char name[16];
        snprintf(name, sizeof name, "user%d", u);
        assert_int_equal(ht_register(&s, name, PASSWORD, &ids[u]), 201);
        for (int i = 0; i < PER_USER; i++)
            assert_int_equal(flood_login(&f, name, tokens[u][i]), 201);
    }
    flood_done(&f);
    assert_true(metric(&s, "gatehouse_sessions_active") == USERS * PER_USER);
    session_memory(&s, &bytes, &objects);
    print_message("%d sessions hold %lld accounted bytes (%.1f per session)\n", USERS * PER_USER,
                  bytes - base_bytes, (double)(bytes - base_bytes) / (USERS * PER_USER));
    static ht_response_t r;
    /* user0: each logs out; user1: revoke by id one at a time via the admin API, then the rest
     * by log-out-everywhere; user2: admin revokes all; user3: admin deletes the user. */
    for (int i = 0; i < PER_USER; i++)
        assert_int_equal(ht_delete(&s, "/v1/session", tokens[0][i], &r), 204);
    assert_int_equal(ht_delete(&s, "/v1/sessions", tokens[1][0], &r), 204);
    char path[128];
    snprintf(path, sizeof path, "/v1/admin/users/%lld/sessions", ids[2]);
    assert_int_equal(ht_delete(&s, path, ADMIN, &r), 204);
    snprintf(path, sizeof path, "/v1/admin/users/%lld", ids[3]);
    assert_int_equal(ht_delete(&s, path, ADMIN, &r), 204);
    assert_true(metric(&s, "gatehouse_sessions_active") == 0);
    assert_true(metric(&s, "gatehouse_sessions_ended_total{reason=\"logout\"}") == PER_USER);
    assert_true(metric(&s, "gatehouse_sessions_ended_total{reason=\"revoked\"}") == 3 * PER_USER);
    session_memory(&s, &bytes, &objects);
    assert_int_equal(bytes, base_bytes);
    assert_int_equal(objects, base_objects);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expiry_is_exact_without_anyone_asking),
        cmocka_unit_test(budget_evicts_least_recently_used),
        cmocka_unit_test(budget_refuses_new_logins_and_keeps_old_ones),
        cmocka_unit_test(per_user_cap_evicts_the_oldest),
        cmocka_unit_test(every_end_path_returns_to_baseline),
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
