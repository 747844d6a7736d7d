/*
 * test_audit.c — the audit trail through the real binary: the events a user's requests make
 * appear once each in GET /v1/admin/audit, in GET /v1/account/activity (their own only) and as
 * lines of --audit-log; hostile filters get a clear 400; a revocation answered 204 is in the
 * trail after kill -9 and a restart; PATCH /v1/admin/users/{id} disables (every session ends, the
 * login answers exactly as a wrong password) and enables; `gatehouse audit` prints JSON lines.
 * The first test runs again on a node whose user store is PostgreSQL.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../support/servers.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-tests"

typedef struct {
    ht_server_t srv;
    ht_response_t r;
    char log[HT_PATH_MAX + 32];
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

static char pg_url[256]; /* set: the node's user store is this PostgreSQL schema */

static void start(fixture_t *f)
{
    static char dir[HT_PATH_MAX];
    if (!f->srv.dir[0]) {
        assert_int_equal(ht_tempdir(dir), 0);
        f->srv.data_dir = dir;
        snprintf(f->log, sizeof f->log, "%s/audit.jsonl", dir);
    }
    assert_int_equal(ht_server_start(&f->srv, "--admin-token", ADMIN, "--audit-log", f->log, NULL),
                     0);
}

/* Events of the trail matching query (e.g. "type=logout&user=1"), newest first. */
static long events(fixture_t *f, const char *query)
{
    char path[512];
    snprintf(path, sizeof path, "/v1/admin/audit?%s", query);
    if (ht_get(&f->srv, path, ADMIN, &f->r) != 200)
        fail_msg("GET %s: %ld %s", path, f->r.status, f->r.body);
    return ht_jsize(&f->r, "events");
}

/* Waits for the queued events (failed logins) to be stored: at most 2 s. */
static void wait_events(fixture_t *f, const char *query, long want)
{
    for (int i = 0; i < 200 && events(f, query) < want; i++)
        ht_sleep_ms(10);
    assert_int_equal(events(f, query), want);
}

static void str_at(fixture_t *f, const char *path, const char *want)
{
    char got[256];
    if (!ht_jstr(&f->r, path, got, sizeof got))
        fail_msg("%s missing in %s", path, f->r.body);
    assert_string_equal(got, want);
}

static void requests_make_their_events_once(void **state)
{
    fixture_t *f = *state;
    start(f);
    long long alice, bob;
    char tok[64], sid[32], tok2[64], sid2[32], q[64];
    assert_int_equal(ht_register(&f->srv, "alice", PASSWORD, &alice), 201);
    assert_int_equal(ht_register(&f->srv, "bob", PASSWORD, &bob), 201);
    assert_int_equal(ht_login(&f->srv, "alice", "not her password", NULL, NULL), 401);
    /* A failed login's event goes through the queue and its writer thread, a success's is stored
     * before the reply: let the queued one land first, so the trail's order is the requests'. */
    snprintf(q, sizeof q, "user=%lld&type=login.failed", alice);
    wait_events(f, q, 1);
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, tok, sid), 201);
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, tok2, sid2), 201);
    char path[128];
    snprintf(path, sizeof path, "/v1/sessions/%s", sid2);
    assert_int_equal(ht_delete(&f->srv, path, tok, &f->r), 204);
    assert_int_equal(ht_login(&f->srv, "bob", PASSWORD, NULL, NULL), 201);

    snprintf(q, sizeof q, "user=%lld", alice);
    wait_events(f, q, 5); /* created, failed, succeeded x2, revoked */
    const char *want[] = {"session.revoked", "login.succeeded", "login.succeeded", "login.failed",
                          "user.created"};
    for (int i = 0; i < 5; i++) {
        char p[32];
        snprintf(p, sizeof p, "events.%d.type", i);
        str_at(f, p, want[i]);
    }
    str_at(f, "events.0.session_id", sid2);
    str_at(f, "events.0.outcome", "success");
    str_at(f, "events.3.outcome", "failure");
    str_at(f, "events.3.actor", "anonymous");
    str_at(f, "events.3.detail", "reason=invalid_credentials");
    str_at(f, "events.3.ip", "127.0.0.1");
    long long user;
    assert_true(ht_jint(&f->r, "events.0.user", &user) && user == alice);
    /* every field of the contract, on every event */
    const char *fields[] = {"id", "time",       "type", "actor",   "user",  "session_id",
                            "ip", "user_agent", "node", "outcome", "detail"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        char p[64];
        snprintf(p, sizeof p, "events.4.%s", fields[i]);
        if (!ht_jhas(&f->r, p))
            fail_msg("%s missing: %s", p, f->r.body);
    }
    assert_int_equal(ht_jsize(&f->r, "events.0"), 11);
    assert_true(ht_jhas(&f->r, "next_cursor"));

    /* a logout, then alice's own activity: hers only, newest first */
    assert_int_equal(ht_delete(&f->srv, "/v1/session", tok, &f->r), 204);
    assert_int_equal(events(f, "type=logout"), 1);
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, tok, sid), 201);
    assert_int_equal(ht_get(&f->srv, "/v1/account/activity", tok, &f->r), 200);
    assert_int_equal(ht_jsize(&f->r, "events"), 7);
    str_at(f, "events.0.type", "login.succeeded");
    str_at(f, "events.1.type", "logout");
    assert_true(strstr(f->r.body, "\"user\":") != NULL);
    char bobs[32];
    snprintf(bobs, sizeof bobs, "\"user\":%lld", bob);
    assert_null(strstr(f->r.body, bobs));
    assert_int_equal(ht_get(&f->srv, "/v1/account/activity", NULL, &f->r), 401);

    /* the shipped lines: one per stored event, the same shape */
    long total = events(f, "limit=200");
    char buf[65536];
    FILE *fp = fopen(f->log, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_int_equal(ht_count_lines(buf), total);
    assert_non_null(strstr(buf, "\"type\":\"session.revoked\""));
    assert_null(strstr(buf, PASSWORD));
    assert_null(strstr(buf, "not her password"));

    assert_int_equal(ht_get(&f->srv, "/metrics", NULL, &f->r), 200);
    char line[64];
    snprintf(line, sizeof line, "gatehouse_audit_events_total %ld", total);
    assert_non_null(strstr(f->r.body, line));
    assert_non_null(strstr(f->r.body, "gatehouse_audit_dropped_total 0"));
}

static void pages_walk_the_trail_once(void **state)
{
    fixture_t *f = *state;
    start(f);
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof name, "u%d", i);
        assert_int_equal(ht_register(&f->srv, name, PASSWORD, NULL), 201);
    }
    char query[128] = "type=user.created&limit=3";
    int seen = 0;
    for (int page = 0; page < 5; page++) {
        long n = events(f, query);
        seen += (int)n;
        /* an event arriving mid-walk is newer than the cursor: never in this walk */
        assert_int_equal(ht_register(&f->srv,
                                     page == 0   ? "late0"
                                     : page == 1 ? "late1"
                                                 : "late2",
                                     PASSWORD, NULL),
                         page < 3 ? 201 : 409);
        char cursor[32];
        if (!ht_jstr(&f->r, "next_cursor", cursor, sizeof cursor))
            break;
        snprintf(query, sizeof query, "type=user.created&limit=3&cursor=%s", cursor);
    }
    assert_int_equal(seen, 7);
}

static void hostile_filters_are_a_clear_400(void **state)
{
    fixture_t *f = *state;
    start(f);
    assert_int_equal(ht_register(&f->srv, "alice", PASSWORD, NULL), 201);
    static char huge[6000]; /* the harness's URLs stop at 8 KiB */
    memset(huge, 'a', sizeof huge - 1);
    const char *bad[] = {
        "user=1%27%20OR%201%3D1",
        "user=-1",
        "user=99999999999999999999999",
        "user=",
        "user=0x10",
        "type=login.failed%27--",
        "type=%25",
        "type=admin.",
        "type=LOGIN.FAILED",
        "since=yesterday",
        "since=2026-13-45T00:00:00Z",
        "until=2026-01-01T00:00:00+01:00",
        "cursor=abc",
        "cursor=0",
        "cursor=1%3BDROP%20TABLE%20users",
        "cursor=-5",
        "limit=0",
        "limit=1000",
        "limit=abc",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[256];
        snprintf(path, sizeof path, "/v1/admin/audit?%s", bad[i]);
        if (ht_get(&f->srv, path, ADMIN, &f->r) != 400 ||
            strcmp(f->r.error_code, "invalid_request") != 0)
            fail_msg("%s: %ld %s", path, f->r.status, f->r.body);
    }
    char path[sizeof huge + 64];
    snprintf(path, sizeof path, "/v1/admin/audit?type=%s", huge);
    assert_int_equal(ht_get(&f->srv, path, ADMIN, &f->r), 400);
    assert_string_equal(f->r.error_code, "invalid_request");
    snprintf(path, sizeof path, "/v1/admin/audit?user=%s", huge);
    assert_int_equal(ht_get(&f->srv, path, ADMIN, &f->r), 400);
    /* the valid forms of the same parameters */
    assert_int_equal(events(f, "type=admin"), 0);
    assert_int_equal(events(f, "since=2026-01-01T00:00:00Z&until=2999-01-01T00:00:00.000Z"), 1);
    assert_int_equal(events(f, "user=1&type=user.created&limit=200"), 1);
    /* the table is still there, and so is alice */
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, NULL, NULL), 201);
}

static void a_revocation_survives_kill_9(void **state)
{
    fixture_t *f = *state;
    start(f);
    char tok[64], sid[32], tok2[64], sid2[32], path[128];
    assert_int_equal(ht_register(&f->srv, "carol", PASSWORD, NULL), 201);
    assert_int_equal(ht_login(&f->srv, "carol", PASSWORD, tok, sid), 201);
    assert_int_equal(ht_login(&f->srv, "carol", PASSWORD, tok2, sid2), 201);
    snprintf(path, sizeof path, "/v1/sessions/%s", sid2);
    assert_int_equal(ht_delete(&f->srv, path, tok, &f->r), 204);
    assert_int_equal(ht_server_stop_sig(&f->srv, SIGKILL), 128 + SIGKILL);
    start(f);
    assert_int_equal(events(f, "type=session.revoked"), 1);
    str_at(f, "events.0.session_id", sid2);
}

/* A login past --max-sessions-per-user evicts the user's oldest session: session.revoked by the
 * system, by=cap, naming that session (queued, so waited for). */
static void a_cap_eviction_is_audited(void **state)
{
    fixture_t *f = *state;
    static char dir[HT_PATH_MAX];
    assert_int_equal(ht_tempdir(dir), 0);
    f->srv.data_dir = dir;
    assert_int_equal(
        ht_server_start(&f->srv, "--admin-token", ADMIN, "--max-sessions-per-user", "2", NULL), 0);
    long long dora;
    char first[32], q[96];
    assert_int_equal(ht_register(&f->srv, "dora", PASSWORD, &dora), 201);
    assert_int_equal(ht_login(&f->srv, "dora", PASSWORD, NULL, first), 201);
    assert_int_equal(ht_login(&f->srv, "dora", PASSWORD, NULL, NULL), 201);
    snprintf(q, sizeof q, "type=session.revoked&user=%lld", dora);
    assert_int_equal(events(f, q), 0); /* at the cap, nothing ended yet */
    assert_int_equal(ht_login(&f->srv, "dora", PASSWORD, NULL, NULL), 201);
    wait_events(f, q, 1);
    str_at(f, "events.0.session_id", first);
    str_at(f, "events.0.actor", "system");
    str_at(f, "events.0.detail", "by=cap");
}

static void disabling_ends_sessions_and_login_fails_as_a_wrong_password(void **state)
{
    fixture_t *f = *state;
    start(f);
    long long id;
    char tok[64], path[64];
    static char wrong[HT_BODY_MAX + 1];
    assert_int_equal(ht_register(&f->srv, "dave", PASSWORD, &id), 201);
    assert_int_equal(ht_login(&f->srv, "dave", PASSWORD, tok, NULL), 201);
    assert_int_equal(ht_json(&f->srv, "POST", "/v1/sessions", NULL,
                             "{\"username\":\"dave\",\"password\":\"wrong password!!\"}", &f->r),
                     401);
    memcpy(wrong, f->r.body, f->r.body_len + 1);
    snprintf(path, sizeof path, "/v1/admin/users/%lld", id);
    assert_int_equal(ht_json(&f->srv, "PATCH", path, ADMIN, "{\"disabled\":true}", &f->r), 200);
    bool b;
    assert_true(ht_jbool(&f->r, "disabled", &b) && b);
    assert_true(ht_jbool(&f->r, "admin", &b) && !b);
    str_at(f, "username", "dave");
    assert_int_equal(ht_get(&f->srv, "/v1/session", tok, &f->r), 401); /* its session ended */
    assert_int_equal(ht_json(&f->srv, "POST", "/v1/sessions", NULL,
                             "{\"username\":\"dave\",\"password\":\"" PASSWORD "\"}", &f->r),
                     401);
    assert_string_equal(f->r.body, wrong); /* exactly as a wrong password */
    assert_int_equal(ht_json(&f->srv, "PATCH", path, ADMIN, "{\"disabled\":false}", &f->r), 200);
    assert_int_equal(ht_login(&f->srv, "dave", PASSWORD, NULL, NULL), 201);
    assert_int_equal(ht_json(&f->srv, "PATCH", path, ADMIN, "{\"admin\":true}", &f->r), 200);
    assert_true(ht_jbool(&f->r, "admin", &b) && b);
    const char *bad[] = {"{}", "{\"disabled\":1}", "{\"admin\":\"yes\"}",
                         "{\"disabled\":true,\"extra\":1}", "[]"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ht_json(&f->srv, "PATCH", path, ADMIN, bad[i], &f->r) != 400)
            fail_msg("%s: %ld", bad[i], f->r.status);
    assert_int_equal(
        ht_json(&f->srv, "PATCH", "/v1/admin/users/99999", ADMIN, "{\"admin\":true}", &f->r), 404);
    assert_int_equal(events(f, "type=user.disabled"), 1);
    str_at(f, "events.0.actor", "token");
    assert_int_equal(events(f, "type=user.enabled"), 1);
    assert_int_equal(events(f, "type=admin"), 3); /* disable, enable, grant admin */
    wait_events(f, "type=login.failed", 2);
    str_at(f, "events.0.detail", "reason=disabled");
}

static void the_command_line_reads_the_trail(void **state)
{
    fixture_t *f = *state;
    start(f);
    assert_int_equal(ht_register(&f->srv, "erin", PASSWORD, NULL), 201);
    assert_int_equal(ht_login(&f->srv, "erin", PASSWORD, NULL, NULL), 201);
    ht_run_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_run(r, NULL, NULL, "audit", "--data-dir", f->srv.dir, NULL), 0);
    assert_int_equal(r->status, 0);
    assert_int_equal(ht_count_lines(r->out), 2);
    assert_non_null(strstr(r->out, "\"type\":\"login.succeeded\""));
    assert_int_equal(
        ht_run(r, NULL, NULL, "audit", "--data-dir", f->srv.dir, "--type", "user.created", NULL),
        0);
    assert_int_equal(ht_count_lines(r->out), 1);
    assert_int_equal(
        ht_run(r, NULL, NULL, "audit", "--data-dir", f->srv.dir, "--type", "x' OR 1=1", NULL), 0);
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, "--type"));
    /* an admin made on the command line is audited as the command line's act */
    assert_int_equal(ht_run(r, "a good long password\n", NULL, "user", "add", "root", "--admin",
                            "--data-dir", f->srv.dir, NULL),
                     0);
    assert_int_equal(r->status, 0);
    assert_int_equal(events(f, "type=user.created"), 2);
    str_at(f, "events.0.actor", "cli");
    str_at(f, "events.0.detail", "admin=true");
    free(r);
}

/* The same requests on a node whose user store is PostgreSQL (a real server, tests/support). */
static void requests_make_their_events_once_on_postgresql(void **state)
{
    static ts_server_t pg = {.kind = TS_POSTGRES};
    if (ts_server_start(&pg) != 0 || ts_postgres_fresh_url(&pg, pg_url, sizeof pg_url) != 0)
        fail_msg("cannot start PostgreSQL");
    requests_make_their_events_once(state);
    fixture_t *f = *state;
    assert_int_equal(ht_server_stop(&f->srv), 0);
    pg_url[0] = '\0';
    ts_server_cleanup(&pg);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(requests_make_their_events_once),
        T(pages_walk_the_trail_once),
        T(hostile_filters_are_a_clear_400),
        T(a_revocation_survives_kill_9),
        T(a_cap_eviction_is_audited),
        T(disabling_ends_sessions_and_login_fails_as_a_wrong_password),
        T(the_command_line_reads_the_trail),
        T(requests_make_their_events_once_on_postgresql),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
