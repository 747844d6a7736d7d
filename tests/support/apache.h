/*
 * apache.h — a real Apache httpd with mod_auth_openidc for tests: a relying party of gatehouse's
 * OpenID provider, on a free loopback port, from an inline config in a temp dir, stopped by PID.
 *
 * The one decision: /usr/sbin/apache2 runs directly with -DFOREGROUND (never apache2ctl or
 * systemd), so the PID we fork is Apache's parent process, and SIGTERM to it stops its children
 * too. The config is written whole here (ServerRoot, PidFile, ErrorLog, Mutex and runtime dir in
 * the temp dir; only the modules it needs, loaded from Debian's /usr/lib/apache2/modules); when
 * the test runs as root the children run as `nobody`, so the dir is made world-readable.
 *
 * Starting takes two calls, because the client must be registered with Apache's redirect URI
 * before Apache starts: ta_apache_prepare picks the port and makes the dir (a->redirect_uri is
 * then known), ta_apache_start writes the config and starts it.
 *
 * What it serves (a->base is http://127.0.0.1:PORT):
 *   /protected/             AuthType openid-connect; an SSI page that shows the user's claims:
 *                           `<p id="NAME">VALUE</p>` for preferred_username, sub, name, email,
 *                           acr, amr, iss (mod_auth_openidc's OIDC_CLAIM_* variables), and
 *                           the serialized ID token in <code id="id_token">
 *   /protected/mfa.html     only for a session whose ID token says acr urn:gatehouse:mfa
 *                           (`Require claim acr:…`); others get 401
 *   /protected/redirect_uri mod_auth_openidc's own endpoint (the code comes back here; with
 *                           ?logout=URL it logs out through the provider's end_session_endpoint)
 *   /loggedout.html         a public page: where a logout ends
 * Like servers.h, it uses nothing of libgatehouse.
 */
#ifndef GH_TESTS_SUPPORT_APACHE_H
#define GH_TESTS_SUPPORT_APACHE_H

#include <stdbool.h>
#include <sys/types.h>

#define TA_PATH_MAX 512

typedef struct {
    pid_t pid; /* 0 when not running */
    int port;
    char dir[TA_PATH_MAX];
    char base[64];                    /* http://127.0.0.1:PORT */
    char redirect_uri[128];           /* base + /protected/redirect_uri */
    char logged_out_uri[128];         /* base + /loggedout.html */
    char error_log[TA_PATH_MAX + 32]; /* dir/error.log */
} ta_apache_t;

typedef struct {
    const char *issuer; /* http://127.0.0.1:P: its /.well-known/openid-configuration is fetched */
    const char *client_id;
    const char *client_secret;
    const char *scope; /* NULL: "openid profile email" */
} ta_oidc_t;

/* Picks a free port and makes the temp dir. Returns 0 or -1. */
int ta_apache_prepare(ta_apache_t *a);
/* Writes the config and the pages, starts Apache and waits up to 10 s until it listens.
 * Returns 0, or -1 with the reason and the end of its error log on stderr (nothing runs then). */
int ta_apache_start(ta_apache_t *a, const ta_oidc_t *oidc);
/* True when the error log holds needle (the log is read whole, up to 1 MiB). */
bool ta_apache_log_has(const ta_apache_t *a, const char *needle);
/* Prints the end of the error log (the last `bytes` bytes) on stderr: for a failing test. */
void ta_apache_print_log(const ta_apache_t *a, long bytes);
/* Stops it (SIGTERM, then SIGKILL after 10 s) and removes its dir unless GATEHOUSE_TEST_KEEP=1. */
void ta_apache_cleanup(ta_apache_t *a);

#endif
