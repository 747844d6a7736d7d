/*
 * test_admin_console.c — the admin console in a real browser: headless Chromium (Debian's
 * package) driven by playwright-core (tests/browser/admin_console.mjs) against the real binary.
 * An admin user (made with `gatehouse user add --admin`) signs in, finds a user, ends one of
 * their sessions, disables and re-enables them, resets their second factors, sends a password
 * reset (refused politely without a verified address; queued with one) and reads the trail;
 * hostile filters get 400; forged CSRF and a foreign origin are refused; a signed-in user who is
 * not an admin gets 403 on every /admin page and form. Screenshots are kept in
 * <build>/browser-artifacts/. Afterwards the server is asked what the browser did: the session is
 * gone, the user can log in, the trail names the admin as the actor of each admin.<action>.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-tests"
#define SCRIPT "tests/browser/admin_console.mjs"

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
    ht_response_t r;
    ht_run_t run;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    /* email on (queued only, no SMTP server): the console's password reset needs it */
    return ht_server_start(&f->gh, "--admin-token", ADMIN, "--public-url", "https://gatehouse.test",
                           "--smtp-from", "gatehouse@example.org", NULL);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->gh);
    free(f);
    return rc;
}

static void an_admin_uses_the_console(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_run(&f->run, PASSWORD "\n", NULL, "user", "add", "root", "--admin",
                            "--data-dir", f->gh.dir, NULL),
                     0);
    assert_int_equal(f->run.status, 0);
    long long victim, root_id = 0;
    assert_int_equal(ht_register(&f->gh, "annika", PASSWORD, &victim), 201);
    assert_int_equal(ht_register(&f->gh, "mallory", PASSWORD, NULL), 201);
    char kept[64], other_token[64], other_sid[32];
    assert_int_equal(ht_login(&f->gh, "annika", PASSWORD, kept, NULL), 201);
    assert_int_equal(ht_login(&f->gh, "annika", PASSWORD, other_token, other_sid), 201);

    /* bea has a verified address: the console's password reset mails her (queued here) */
    long long bea;
    assert_int_equal(ht_register(&f->gh, "bea", PASSWORD, &bea), 201);
    char db_path[HT_PATH_MAX + 16], sql[160];
    snprintf(db_path, sizeof db_path, "%s/users.db", f->gh.dir);
    snprintf(sql, sizeof sql,
             "UPDATE users SET email = 'bea@example.org', email_verified = 1 WHERE id = %lld", bea);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(ht_get(&f->gh, "/metrics", NULL, &f->r), 200);
    assert_non_null(strstr(f->r.body, "gatehouse_email_outbox_depth 0\n"));

    char base[96], id[32], sid[64], dir[HT_PATH_MAX + 16], mailed[40];
    snprintf(mailed, sizeof mailed, "MAILED_ID=%lld", bea);
    snprintf(base, sizeof base, "BASE=http://%s", f->gh.addr);
    snprintf(id, sizeof id, "VICTIM_ID=%lld", victim);
    snprintf(sid, sizeof sid, "OTHER_SID=%s", other_sid);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    const char *env[] = {base,
                         id,
                         mailed,
                         sid,
                         dir,
                         "ADMIN_USER=root",
                         "NON_ADMIN=mallory",
                         "VICTIM=annika",
                         "PASSWORD=" PASSWORD,
                         NULL};
    int rc = ht_run_node(SCRIPT, env, 120000);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above; screenshots in %s)", SCRIPT, rc, artifacts);

    /* What the browser did is true on the server too. */
    bool queued = false; /* the reset link is in the outbox (the figure is refreshed each second) */
    for (int i = 0; i < 50 && !queued; i++) {
        assert_int_equal(ht_get(&f->gh, "/metrics", NULL, &f->r), 200);
        queued = strstr(f->r.body, "gatehouse_email_outbox_depth 1\n") != NULL;
        if (!queued)
            ht_sleep_ms(100);
    }
    assert_true(queued);
    assert_int_equal(ht_get(&f->gh, "/v1/session", other_token, &f->r), 401);
    assert_int_equal(ht_get(&f->gh, "/v1/session", kept, &f->r), 401); /* disabling ended it */
    assert_int_equal(ht_login(&f->gh, "annika", PASSWORD, NULL, NULL), 201); /* enabled again */
    assert_int_equal(ht_get(&f->gh, "/v1/admin/users?limit=10", ADMIN, &f->r), 200);
    for (int i = 0; i < 3; i++) {
        char p[32], name[80];
        snprintf(p, sizeof p, "users.%d.username", i);
        if (ht_jstr(&f->r, p, name, sizeof name) && strcmp(name, "root") == 0) {
            snprintf(p, sizeof p, "users.%d.id", i);
            assert_true(ht_jint(&f->r, p, &root_id));
        }
    }
    assert_true(root_id > 0);
    char path[128], actor[64], got[64];
    snprintf(actor, sizeof actor, "admin:%lld", root_id);
    const char *types[] = {"admin.session_revoke", "admin.user_disable", "admin.user_enable",
                           "session.revoked",      "user.disabled",      "user.enabled"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        snprintf(path, sizeof path, "/v1/admin/audit?type=%s&user=%lld", types[i], victim);
        assert_int_equal(ht_get(&f->gh, path, ADMIN, &f->r), 200);
        if (ht_jsize(&f->r, "events") != (strcmp(types[i], "session.revoked") == 0 ? 2 : 1))
            fail_msg("%s: %s", types[i], f->r.body);
        assert_true(ht_jstr(&f->r, "events.0.actor", got, sizeof got));
        assert_string_equal(got, actor);
    }
    /* the refused forms changed nothing: no delete, no unlock by anyone */
    assert_int_equal(ht_get(&f->gh, "/v1/admin/audit?type=user.deleted", ADMIN, &f->r), 200);
    assert_int_equal(ht_jsize(&f->r, "events"), 0);
    static const char *const shots[] = {"admin-users",    "admin-user",  "admin-confirm",
                                        "admin-disabled", "admin-audit", "admin-bad-filter",
                                        "admin-forbidden"};
    for (size_t i = 0; i < sizeof shots / sizeof shots[0]; i++) {
        char p[HT_PATH_MAX + 64];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s.png", artifacts, shots[i]);
        if (stat(p, &sb) != 0 || sb.st_size < 1000)
            fail_msg("no screenshot %s", p);
    }
}

int main(int argc, char **argv)
{
    /* Screenshots go beside the test binaries: <build>/browser-artifacts. */
    const char *cut = strstr(argv[0], "/tests/integration/");
    snprintf(artifacts, sizeof artifacts, "%.*s/browser-artifacts", cut ? (int)(cut - argv[0]) : 5,
             cut ? argv[0] : "build");
    mkdir(artifacts, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(an_admin_uses_the_console, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
