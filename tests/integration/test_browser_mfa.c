/*
 * test_browser_mfa.c — the second factor in a real browser (issue #18): headless Chromium
 * (Debian's package) driven by playwright-core (tests/browser/mfa.mjs) against gatehouse at
 * http://localhost:PORT. The browser enrols an authenticator app on /account (QR code, confirm
 * with a code it computes, recovery codes shown once), logs out, and logs in with the password
 * and a code; a screenshot of each page is kept in <build>/browser-artifacts/. The server then
 * agrees: the user has one confirmed factor.
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

#include "harness.h"

#define PASSWORD "correct horse battery"
#define SCRIPT "tests/browser/mfa.mjs"

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    return ht_server_start(&f->gh, NULL);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->gh);
    free(f);
    return rc;
}

static void a_browser_enrols_and_logs_in_with_a_code(void **state)
{
    fixture_t *f = *state;
    long long id;
    assert_int_equal(ht_register(&f->gh, "mia", PASSWORD, &id), 201);
    char base[96], dir[HT_PATH_MAX + 16];
    /* localhost, not an IP: the name WebAuthn will need, and what a person types */
    snprintf(base, sizeof base, "BASE=http://localhost:%d", f->gh.port);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    const char *env[] = {base, dir, "USERNAME=mia", "PASSWORD=" PASSWORD, NULL};
    int rc = ht_run_node(SCRIPT, env, 120000);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above; screenshots in %s)", SCRIPT, rc, artifacts);
    /* What the browser did is true on the server too: one confirmed factor, a two-step login. */
    ht_response_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_json(&f->gh, "POST", "/v1/sessions", NULL,
                             "{\"username\":\"mia\",\"password\":\"" PASSWORD "\"}", r),
                     202);
    free(r);
    static const char *const shots[] = {"mfa-enrol",       "mfa-recovery-codes", "mfa-account",
                                        "mfa-second-step", "mfa-wrong-code",     "mfa-logged-in"};
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
        cmocka_unit_test_setup_teardown(a_browser_enrols_and_logs_in_with_a_code, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
