/*
 * test_browser_reset.c — the forgot-password flow in headless Chromium (playwright-core,
 * tests/browser/forgot_password.mjs) against the real binary with email on and a real SMTP
 * server (aiosmtpd, tests/support/smtp.c): from /login through "Forgot your password?", the
 * mail, its link and the new-password form, to logged in with the new password. Screenshots of
 * each page are kept in <build>/browser-artifacts/reset-*.png.
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

#include "../support/smtp.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define NEW_PASSWORD "a brand new passphrase"
#define SCRIPT "tests/browser/forgot_password.mjs"

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
    ts_smtp_t smtp;
    char url[64];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    ts_smtp_t probe = {0};
    if (ts_smtp_prepare(&probe) != 0)
        return -1;
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", probe.port);
    ts_smtp_cleanup(&probe);
    if (ts_smtp_start(&f->smtp, NULL, NULL) != 0)
        return -1;
    return ht_server_start(&f->gh, "--listen", f->url + 7, "--public-url", f->url, "--smtp-url",
                           f->smtp.url, "--smtp-from", "noreply@gatehouse.test", NULL);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->gh);
    ts_smtp_cleanup(&f->smtp);
    free(f);
    return rc;
}

static void forgot_password_from_login_to_logged_in(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    /* an account with a verified address: the verification link followed through the API */
    assert_int_equal(ht_json(&f->gh, "POST", "/v1/users", NULL,
                             "{\"username\":\"rita\",\"password\":\"" PASSWORD
                             "\",\"email\":\"rita@example.test\"}",
                             r),
                     201);
    assert_true(ts_smtp_wait(&f->smtp, 1, 15000));
    char *msg = ts_smtp_message(&f->smtp, 1), text[8192], link[512], body[256];
    assert_true(ts_mail_part(msg, "text/plain", text, sizeof text));
    free(msg);
    assert_true(ts_mail_link(text, "http://127.0.0.1:", link, sizeof link));
    snprintf(body, sizeof body, "{\"token\":\"%s\"}", strstr(link, "token=") + 6);
    assert_int_equal(ht_json(&f->gh, "POST", "/v1/email/verify", NULL, body, r), 204);
    char old_token[64];
    assert_int_equal(ht_login(&f->gh, "rita", PASSWORD, old_token, NULL), 201);

    char front[96], dir[HT_PATH_MAX + 16], maildir[600];
    snprintf(front, sizeof front, "FRONT=%s", f->url);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    snprintf(maildir, sizeof maildir, "MAILDIR=%s", f->smtp.dir);
    const char *env[] = {front,
                         dir,
                         maildir,
                         "USERNAME=rita",
                         "EMAIL=rita@example.test",
                         "NEW_PASSWORD=" NEW_PASSWORD,
                         NULL};
    int rc = ht_run_node(SCRIPT, env, 120000);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above; screenshots in %s)", SCRIPT, rc, artifacts);
    /* What the browser did is true on the server too: the old session ended, the old password
     * is dead, the new one works. */
    assert_int_equal(ht_get(&f->gh, "/v1/session", old_token, r), 401);
    assert_int_equal(ht_login(&f->gh, "rita", PASSWORD, old_token, NULL), 401);
    assert_int_equal(ht_login(&f->gh, "rita", NEW_PASSWORD, old_token, NULL), 201);
    free(r);
    static const char *const shots[] = {"reset-login",   "reset-form", "reset-sent",
                                        "reset-confirm", "reset-done", "reset-logged-in"};
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
        cmocka_unit_test_setup_teardown(forgot_password_from_login_to_logged_in, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
