/*
 * test_oidc_rp.c — gatehouse's OpenID provider (issue #21) proven with real relying parties:
 *
 * - Apache httpd with mod_auth_openidc (tests/support/apache.c) protects a page; headless
 *   Chromium (tests/browser/oidc_rp.mjs) opens it, signs in on gatehouse's login page (password;
 *   a second user also with the TOTP code), sees the user's claims on the page; the signing keys
 *   rotate while the first Apache session lives (it goes on; the next login is signed by the new
 *   key, which mod_auth_openidc fetches: its log says it refetched the JWKS); a location behind
 *   `Require claim acr:urn:gatehouse:mfa` admits only the TOTP user; logout through the RP (the
 *   pre-rotation ID token as id_token_hint) ends the gatehouse session.
 *   Screenshots in <build>/browser-artifacts/oidc-rp-*.png.
 * - Debian's python3-authlib (tests/oidc/authlib_client.py) runs the code flow with PKCE,
 *   validates the ID token against the JWKS, refreshes (and sees reuse detection revoke the
 *   family), detects a key rotation, revokes and introspects; a public client runs the flow with
 *   PKCE and no secret, and a wrong verifier is invalid_grant.
 *
 * The one decision: each client is registered with the real command (`gatehouse client add`, on
 * the running node's data dir) and each key rotation is the real `gatehouse keys rotate`, so what
 * an operator does is what is tested. The scripts run by PID with a deadline (their process
 * group is killed when they overrun); their output is printed and asserted on.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "../support/apache.h"
#include "../support/proc.h"
#include "../support/servers.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define BROWSER_SCRIPT "tests/browser/oidc_rp.mjs"
#define AUTHLIB_SCRIPT "tests/oidc/authlib_client.py"
#define OUT_MAX 65536

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
    ta_apache_t apache;
    char issuer[64];
    char out[OUT_MAX]; /* the last script's stdout and stderr */
    ht_response_t r;
    ht_run_t run;
} fixture_t;

static const char *gatehouse_bin(void)
{
    const char *b = getenv("GATEHOUSE_BIN");
    return b && *b ? b : "build/gatehouse";
}

/* The node re-reads its signing keys every second (default 60 s), so a `gatehouse keys rotate`
 * is in use and published within a second. A fixed port on the command line, as a deployment
 * has. With public_url the issuer is --public-url (and email is on: users may have addresses;
 * mail only queues), else http:// + the --listen address. */
static int start(void **state, bool public_url)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    char listen[32];
    int port = ts_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(f->issuer, sizeof f->issuer, "http://%s", listen);
    if (public_url)
        return ht_server_start(&f->gh, "--listen", listen, "--oidc-key-refresh", "1s",
                               "--public-url", f->issuer, "--smtp-from", "gatehouse@example.com",
                               NULL);
    return ht_server_start(&f->gh, "--listen", listen, "--oidc-key-refresh", "1s", NULL);
}

static int setup(void **state)
{
    return start(state, false);
}

static int setup_public_url(void **state)
{
    return start(state, true);
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->apache.pid > 0 && getenv("GATEHOUSE_TEST_VERBOSE"))
        ta_apache_print_log(&f->apache, 8000);
    ta_apache_cleanup(&f->apache);
    int rc = ht_server_release(&f->gh);
    free(f);
    return rc;
}

/* Runs argv with the extra env entries (NULL-terminated) in its own process group, collecting
 * stdout and stderr into out (NUL-terminated, cut at OUT_MAX - 1) and printing them; returns its
 * exit status, or -1 when it overran timeout_ms (then its group is killed). */
static int run_script(const char *const *argv, const char *const *env, long long timeout_ms,
                      char *out)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0); /* its own group: chromium's processes go with it on a timeout */
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        for (size_t i = 0; env[i]; i++)
            putenv((char *)env[i]);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    size_t len = 0;
    out[0] = '\0';
    long long deadline = ht_now_ms() + timeout_ms;
    int status = 0;
    bool overran = false;
    for (;;) {
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        long long left = deadline - ht_now_ms();
        if (left <= 0) {
            overran = true;
            break;
        }
        int n = poll(&pfd, 1, (int)(left > 200 ? 200 : left));
        if (n > 0) {
            char buf[4096];
            ssize_t got = read(p[0], buf, sizeof buf);
            if (got == 0)
                break; /* every writer closed: the script ended */
            if (got > 0) {
                fwrite(buf, 1, (size_t)got, stdout);
                size_t keep = (size_t)got < OUT_MAX - 1 - len ? (size_t)got : OUT_MAX - 1 - len;
                memcpy(out + len, buf, keep);
                len += keep;
                out[len] = '\0';
            }
        }
    }
    close(p[0]);
    fflush(stdout);
    if (overran) {
        kill(-pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    /* The pipe closed; the script exits (a straggling child of its group is killed). */
    return ts_wait_group(pid, 10000, 20);
}

/* `gatehouse client add NAME --redirect-uri URI --post-logout-uri URI [--public]` on the node's
 * data dir: prints {"client_id","client_secret"} (no secret for a public client: secret NULL). */
static void add_client_ex(fixture_t *f, const char *name, const char *redirect_uri,
                          const char *logout_uri, char id[128], char *secret)
{
    ht_run_t *run = &f->run;
    memset(run, 0, sizeof *run);
    assert_int_equal(ht_run(run, NULL, NULL, "client", "add", name, "--redirect-uri", redirect_uri,
                            "--post-logout-uri", logout_uri, "--data-dir", f->gh.dir,
                            secret ? NULL : "--public", NULL),
                     0);
    if (run->status != 0)
        fail_msg("gatehouse client add exited %d: %s%s", run->status, run->out, run->err);
    json_error_t e;
    json_t *j = json_loads(run->out, 0, &e);
    if (!j)
        fail_msg("gatehouse client add printed no JSON: %s", run->out);
    const char *cid = json_string_value(json_object_get(j, "client_id"));
    const char *sec = json_string_value(json_object_get(j, "client_secret"));
    bool ok = cid && strlen(cid) < 128 && (secret ? sec && strlen(sec) < 128 : !sec);
    if (ok) {
        snprintf(id, 128, "%s", cid);
        if (secret)
            snprintf(secret, 128, "%s", sec);
    }
    json_decref(j);
    if (!ok)
        fail_msg("gatehouse client add: not the client_id%s wanted: %s",
                 secret ? " and client_secret" : " alone", run->out);
}

static void add_client(fixture_t *f, const char *name, const char *redirect_uri,
                       const char *logout_uri, char id[128], char secret[128])
{
    add_client_ex(f, name, redirect_uri, logout_uri, id, secret);
}

/* Registers name with an authenticator app (confirmed with oathtool's code); secret[64]. */
static void user_with_totp(fixture_t *f, const char *name, char *secret)
{
    ht_response_t *r = &f->r;
    char token[64], path[128], body[64], code[7];
    long long factor;
    assert_int_equal(ht_register(&f->gh, name, PASSWORD, NULL), 201);
    assert_int_equal(ht_login(&f->gh, name, PASSWORD, token, NULL), 201);
    assert_int_equal(ht_json(&f->gh, "POST", "/v1/factors/totp", token,
                             "{\"current_password\":\"" PASSWORD "\"}", r),
                     201);
    assert_true(ht_jint(r, "id", &factor));
    assert_true(ht_jstr(r, "secret", secret, 64));
    snprintf(path, sizeof path, "/v1/factors/totp/%lld/confirm", factor);
    ht_totp(secret, 0, code);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code);
    assert_int_equal(ht_json(&f->gh, "POST", path, token, body, r), 200);
}

/* The value of a counter line of /metrics ("name{labels} value"); -1 when absent. */
static double metric(fixture_t *f, const char *line_start)
{
    assert_int_equal(ht_get(&f->gh, "/metrics", NULL, &f->r), 200);
    const char *p = f->r.body;
    size_t n = strlen(line_start);
    while (p && *p) {
        if (strncmp(p, line_start, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

static void rotate_argv(fixture_t *f, char *buf, size_t len)
{
    snprintf(buf, len, "ROTATE=[\"%s\",\"keys\",\"rotate\",\"--data-dir\",\"%s\"]", gatehouse_bin(),
             f->gh.dir);
}

static void apache_mod_auth_openidc_in_a_browser(void **state)
{
    fixture_t *f = *state;
    char secret_totp[64], cid[128], csecret[128];
    /* ann has an address (the email scope's claim), mia an authenticator app */
    assert_int_equal(ht_json(&f->gh, "POST", "/v1/users", NULL,
                             "{\"username\":\"ann\",\"password\":\"" PASSWORD
                             "\",\"email\":\"ann@example.com\"}",
                             &f->r),
                     201);
    user_with_totp(f, "mia", secret_totp);

    assert_int_equal(ta_apache_prepare(&f->apache), 0);
    add_client(f, "apache", f->apache.redirect_uri, f->apache.logged_out_uri, cid, csecret);
    ta_oidc_t oidc = {.issuer = f->issuer, .client_id = cid, .client_secret = csecret};
    assert_int_equal(ta_apache_start(&f->apache, &oidc), 0);

    char app[96], gh[96], totp_env[96], dir[HT_PATH_MAX + 16], rotate[2 * HT_PATH_MAX];
    snprintf(app, sizeof app, "APP=%s", f->apache.base);
    snprintf(gh, sizeof gh, "GH=%s", f->issuer);
    snprintf(totp_env, sizeof totp_env, "TOTP_SECRET=%s", secret_totp);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    rotate_argv(f, rotate, sizeof rotate);
    const char *env[] = {app,         gh,
                         "USER1=ann", "EMAIL1=ann@example.com",
                         "USER2=mia", "PASSWORD=" PASSWORD,
                         totp_env,    dir,
                         rotate,      NULL};
    const char *argv[] = {"node", BROWSER_SCRIPT, NULL};
    int rc = run_script(argv, env, 90000, f->out);
    if (rc != 0) {
        ta_apache_print_log(&f->apache, 6000);
        fail_msg("%s exited %d (see its output above; screenshots in %s)", BROWSER_SCRIPT, rc,
                 artifacts);
    }
    assert_non_null(strstr(f->out, "RESULT ok"));

    /* The server agrees with what the browser saw: the first user's gatehouse session is over,
     * and two codes were exchanged by Apache. */
    const char *c = strstr(f->out, "COOKIE ");
    assert_non_null(c);
    char cookie[160], hdr[200];
    assert_int_equal(sscanf(c, "COOKIE %159s", cookie), 1);
    snprintf(hdr, sizeof hdr, "Cookie: gatehouse_session=%s", cookie);
    const char *headers[] = {hdr, NULL};
    assert_int_equal(ht_request(&f->gh, "GET", "/v1/session", headers, NULL, 0, &f->r), 401);
    double codes = metric(
        f, "gatehouse_oidc_token_grants_total{grant_type=\"authorization_code\",result=\"ok\"}");
    if (codes < 2)
        fail_msg("gatehouse_oidc_token_grants_total{authorization_code,ok} is %g, want >= 2",
                 codes);

    /* mod_auth_openidc found the new kid by fetching the JWKS again (Debian 12's 2.4.12 logs
     * this when a token names a key its cache lacks). */
    if (!ta_apache_log_has(&f->apache, "doing a forced refresh")) {
        ta_apache_print_log(&f->apache, 6000);
        fail_msg("mod_auth_openidc did not refetch the JWKS after the rotation");
    }
    static const char *const shots[] = {"oidc-rp-login", "oidc-rp-protected", "oidc-rp-second-step",
                                        "oidc-rp-protected-mfa", "oidc-rp-logged-out"};
    for (size_t i = 0; i < sizeof shots / sizeof shots[0]; i++) {
        char path[HT_PATH_MAX + 64];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s.png", artifacts, shots[i]);
        if (stat(path, &sb) != 0 || sb.st_size < 1000)
            fail_msg("no screenshot %s", path);
    }
}

static void authlib_client_flow_refresh_rotation_revocation(void **state)
{
    fixture_t *f = *state;
    char cid[128], csecret[128];
    assert_int_equal(ht_register(&f->gh, "bob", PASSWORD, NULL), 201);
    /* The redirect URI is never contacted: the client reads the code from the 302. */
    const char *redirect = "http://127.0.0.1:9/callback";
    add_client(f, "authlib", redirect, "http://127.0.0.1:9/logged-out", cid, csecret);
    char pub[128], pub_env[160];
    add_client_ex(f, "authlib-public", redirect, "http://127.0.0.1:9/logged-out", pub, NULL);
    snprintf(pub_env, sizeof pub_env, "PUBLIC_CLIENT_ID=%s", pub);

    char issuer[96], id[160], secret[160], rotate[2 * HT_PATH_MAX], uri[96];
    snprintf(issuer, sizeof issuer, "ISSUER=%s", f->issuer);
    snprintf(id, sizeof id, "CLIENT_ID=%s", cid);
    snprintf(secret, sizeof secret, "CLIENT_SECRET=%s", csecret);
    snprintf(uri, sizeof uri, "REDIRECT_URI=%s", redirect);
    rotate_argv(f, rotate, sizeof rotate);
    const char *env[] = {issuer, id,      secret, uri, "USERNAME=bob", "PASSWORD=" PASSWORD,
                         rotate, pub_env, NULL};
    /* Debian's python3, which has python3-authlib, whatever else PATH holds */
    const char *argv[] = {"/usr/bin/python3", AUTHLIB_SCRIPT, NULL};
    int rc = run_script(argv, env, 60000, f->out);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above)", AUTHLIB_SCRIPT, rc);
    static const char *const steps[] = {
        "authlib: ok discovery",         "authlib: ok code flow with PKCE",
        "authlib: ok ID token verified", "authlib: ok userinfo",
        "authlib: ok refresh:",          "authlib: ok refresh reuse:",
        "authlib: ok key rotation:",     "authlib: ok introspection:",
        "authlib: ok revocation",        "authlib: ok public client",
        "authlib: all checks passed"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if (!strstr(f->out, steps[i]))
            fail_msg("the authlib client did not print \"%s\"", steps[i]);
    /* The server counted the reuse it detected. */
    if (metric(f, "gatehouse_oidc_refresh_reuse_total") < 1)
        fail_msg("gatehouse_oidc_refresh_reuse_total did not count the reuse");
}

int main(int argc, char **argv)
{
    /* Screenshots go beside the test binaries: <build>/browser-artifacts. */
    const char *cut = strstr(argv[0], "/tests/integration/");
    snprintf(artifacts, sizeof artifacts, "%.*s/browser-artifacts", cut ? (int)(cut - argv[0]) : 5,
             cut ? argv[0] : "build");
    mkdir(artifacts, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(authlib_client_flow_refresh_rotation_revocation, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(apache_mod_auth_openidc_in_a_browser, setup_public_url,
                                        teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
