/*
 * test_browser_passkey.c — passkeys in a real browser: headless Chromium (Debian's package) driven
 * by playwright-core (tests/browser/passkey.mjs) with the DevTools protocol's virtual
 * authenticator, against gatehouse on http://localhost:PORT (WebAuthn needs a secure context and
 * a domain for its RP ID, so not 127.0.0.1). The browser registers a passkey on /account, logs in
 * with password + passkey, then with the passkey alone, and a cloned credential with a lower
 * counter is refused; a screenshot of each step is kept in <build>/browser-artifacts/.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define PASSWORD "correct horse battery"
#define SCRIPT "tests/browser/passkey.mjs"

static char artifacts[HT_PATH_MAX];

typedef struct {
    ht_server_t gh;
    int port;
} fixture_t;

/* A free loopback port: the origin must be known before the node starts. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    char listen[64], origin[64];
    for (int attempt = 0; attempt < 3; attempt++) {
        if ((f->port = free_port()) < 0)
            return -1;
        snprintf(listen, sizeof listen, "127.0.0.1:%d", f->port);
        snprintf(origin, sizeof origin, "http://localhost:%d", f->port);
        if (ht_server_start(&f->gh, "--listen", listen, "--webauthn-rp-id", "localhost",
                            "--webauthn-origin", origin, NULL) == 0)
            return 0;
    }
    return -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ht_server_cleanup(&f->gh);
    free(f);
    return 0;
}

static void passkeys_in_a_browser(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_register(&f->gh, "kim", PASSWORD, NULL), 201);
    char base[96], dir[HT_PATH_MAX + 16];
    snprintf(base, sizeof base, "BASE=http://localhost:%d", f->port);
    snprintf(dir, sizeof dir, "ARTIFACTS=%s", artifacts);
    const char *env[] = {base, dir, "USERNAME=kim", "PASSWORD=" PASSWORD, NULL};
    int rc = ht_run_node(SCRIPT, env, 120000);
    if (rc != 0)
        fail_msg("%s exited %d (see its output above; screenshots in %s)", SCRIPT, rc, artifacts);
    /* What the browser did is true on the server too: the clone was logged. */
    assert_true(ht_server_wait_log(
        &f->gh, "passkey counter went backwards: possible cloned authenticator", 2000));
    static const char *const shots[] = {"passkey-account", "passkey-second-step",
                                        "passkey-after-second-step", "passkey-passwordless",
                                        "passkey-clone-refused"};
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
        cmocka_unit_test_setup_teardown(passkeys_in_a_browser, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
