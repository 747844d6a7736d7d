/*
 * test_browser.c — a real browser through the front door: headless Chromium (Debian's package)
 * driven by playwright-core (tests/browser/front_door.mjs) against nginx with the shipped config
 * in front of gatehouse. The browser logs in through the page, lands where it was going, sees its
 * sessions on /account (its own with its user agent), logs out another session, opens /ops (the
 * watchdog's chart and forecast, "No alerts"; it refreshes itself) and logs out; a screenshot of
 * each page is kept in <build>/browser-artifacts/.
 *
 * The script runs with JavaScript off in the pages (they must work without it). It is started
 * by PID with a deadline and killed by that PID when it overruns.
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

#include "../support/nginx.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define SCRIPT "tests/browser/front_door.mjs"

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
    tn_nginx_t nginx;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    /* The watchdog samples every 250 ms, so /ops has a history to draw by the time the browser
     * gets there (its chart is the watchdog's ring). */
    if (ht_server_start(&f->gh, "--ops-users", "1" /* ann, the first user */, "--watch-interval",
                        "250ms", NULL) != 0)
        return -1;
    return tn_nginx_start(&f->nginx, "deploy/nginx/gatehouse.conf", f->gh.addr);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    tn_nginx_cleanup(&f->nginx);
    ht_server_cleanup(&f->gh);
    free(f);
    return 0;
}

static void a_browser_through_the_front_door(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_register(&f->gh, "ann", PASSWORD, NULL), 201);
    char other_token[64], other_sid[32];
    assert_int_equal(ht_login(&f->gh, "ann", PASSWORD, other_token, other_sid), 201);
    char front[96], sid[64], dir[HT_PATH_MAX + 16];
    snprintf(front, sizeof front, "FRONT=http://127.0.0.1:%d", f->nginx.port);
    snprintf(sid, sizeof sid, "OTHER_SID=%s", other_sid);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    const char *env[] = {front, sid, dir, "USERNAME=ann", "PASSWORD=" PASSWORD, NULL};
    int rc = ht_run_node(SCRIPT, env, 120000);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above; screenshots in %s)", SCRIPT, rc, artifacts);
    /* What the browser did is true on the server too. */
    ht_response_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    long st = ht_get(&f->gh, "/v1/session", other_token, r);
    free(r);
    assert_int_equal(st, 401);
    static const char *const shots[] = {
        "login", "login-failed", "app", "account", "account-after-logout", "ops", "ops-live"};
    for (size_t i = 0; i < sizeof shots / sizeof shots[0]; i++) {
        char path[HT_PATH_MAX + 64];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s.png", artifacts, shots[i]);
        if (stat(path, &sb) != 0 || sb.st_size < 1000)
            fail_msg("no screenshot %s", path);
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
        cmocka_unit_test_setup_teardown(a_browser_through_the_front_door, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
