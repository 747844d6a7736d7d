/*
 * apache.c — a real Apache httpd with mod_auth_openidc for tests (apache.h): the forked PID is
 * Apache's parent (-DFOREGROUND), so it is stopped by that PID and never by name.
 */
#include "apache.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"
#include "servers.h"

#define APACHE_BIN "/usr/sbin/apache2"
#define MODULES "/usr/lib/apache2/modules"

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[TA_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *out = fopen(path, "w");
    if (!out) {
        fprintf(stderr, "apache: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = fputs(text, out) < 0 ? -1 : 0;
    if (fclose(out) != 0)
        rc = -1;
    /* readable by Apache's children (nobody when we are root), whatever the umask */
    return rc == 0 && chmod(path, 0644) == 0 ? 0 : -1;
}

int ta_apache_prepare(ta_apache_t *a)
{
    a->pid = 0;
    a->port = ts_free_port();
    if (a->port <= 0)
        return -1;
    snprintf(a->base, sizeof a->base, "http://127.0.0.1:%d", a->port);
    snprintf(a->redirect_uri, sizeof a->redirect_uri, "%s/protected/redirect_uri", a->base);
    snprintf(a->logged_out_uri, sizeof a->logged_out_uri, "%s/loggedout.html", a->base);
    /* Under /tmp when root: Apache's children run as nobody and must reach the pages. */
    const char *tmp = geteuid() == 0 ? "/tmp" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(a->dir, sizeof a->dir, "%s/gh-apache-XXXXXX", tmp);
    if (!mkdtemp(a->dir)) {
        a->dir[0] = '\0';
        return -1;
    }
    snprintf(a->error_log, sizeof a->error_log, "%s/error.log", a->dir);
    char sub[TA_PATH_MAX + 32];
    snprintf(sub, sizeof sub, "%s/htdocs", a->dir);
    int rc = mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/htdocs/protected", a->dir);
    if (rc != 0 || mkdir(sub, 0755) != 0 || chmod(sub, 0755) != 0 || chmod(a->dir, 0755) != 0)
        return -1;
    snprintf(sub, sizeof sub, "%s/htdocs", a->dir);
    if (chmod(sub, 0755) != 0)
        return -1;
    return 0;
}

/* The protected page: SSI prints mod_auth_openidc's claim variables, HTML-escaped. */
static const char PROTECTED_PAGE[] =
    "<!DOCTYPE html>\n<html><head><title>Protected app</title>\n"
    "<style>body{font-family:sans-serif;margin:2em} dt{font-weight:bold}</style></head>\n"
    "<body><h1>Protected app (Apache + mod_auth_openidc)</h1>\n"
    "<p>Signed in through Gatehouse as "
    "<strong id=\"user\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_preferred_username\" "
    "--></strong></p>\n<dl>\n"
    "<dt>preferred_username</dt><dd id=\"preferred_username\"><!--#echo encoding=\"entity\" "
    "var=\"OIDC_CLAIM_preferred_username\" --></dd>\n"
    "<dt>sub</dt><dd id=\"sub\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_sub\" --></dd>\n"
    "<dt>name</dt><dd id=\"name\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_name\" --></dd>\n"
    "<dt>email</dt><dd id=\"email\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_email\" "
    "--></dd>\n"
    "<dt>acr</dt><dd id=\"acr\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_acr\" --></dd>\n"
    "<dt>amr</dt><dd id=\"amr\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_amr\" --></dd>\n"
    "<dt>iss</dt><dd id=\"iss\"><!--#echo encoding=\"entity\" var=\"OIDC_CLAIM_iss\" --></dd>\n"
    "</dl>\n<details><summary>ID token</summary><code id=\"id_token\" "
    "style=\"word-break:break-all\"><!--#echo encoding=\"entity\" var=\"OIDC_id_token\" "
    "--></code></details>\n<p><a id=\"logout\" "
    "href=\"/protected/redirect_uri?logout=LOGGED_OUT\">Log out</a></p>\n"
    "</body></html>\n";

static const char MFA_PAGE[] =
    "<!DOCTYPE html>\n<html><head><title>Second factor only</title></head>\n"
    "<body style=\"font-family:sans-serif;margin:2em\"><h1 id=\"mfa-only\">Signed in with a second "
    "factor</h1></body></html>\n";

static const char LOGGED_OUT_PAGE[] =
    "<!DOCTYPE html>\n<html><head><title>Logged out</title></head>\n"
    "<body style=\"font-family:sans-serif;margin:2em\"><h1 id=\"logged-out\">Logged out of the "
    "protected app</h1>\n<p>mod_auth_openidc ended its session and "
    "Gatehouse's.</p></body></html>\n";

/* Percent-encodes s for a query parameter value. */
static void url_encode(const char *s, char *out, size_t len)
{
    size_t o = 0;
    for (; *s && o + 4 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
    }
    out[o] = '\0';
}

static int write_pages(const ta_apache_t *a)
{
    char page[sizeof PROTECTED_PAGE + 256], enc[256], dir[TA_PATH_MAX + 32];
    url_encode(a->logged_out_uri, enc, sizeof enc);
    const char *mark = strstr(PROTECTED_PAGE, "LOGGED_OUT");
    snprintf(page, sizeof page, "%.*s%s%s", (int)(mark - PROTECTED_PAGE), PROTECTED_PAGE, enc,
             mark + strlen("LOGGED_OUT"));
    snprintf(dir, sizeof dir, "%s/htdocs", a->dir);
    if (write_file(dir, "loggedout.html", LOGGED_OUT_PAGE) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/htdocs/protected", a->dir);
    if (write_file(dir, "mfa.html", MFA_PAGE) != 0)
        return -1;
    return write_file(dir, "index.shtml", page);
}

static int write_config(const ta_apache_t *a, const ta_oidc_t *o, char *conf, size_t len)
{
    static const char *const modules[] = {"mpm_event", "authn_core", "authz_core", "authz_user",
                                          "mime",      "dir",        "include",    "auth_openidc"};
    char text[8192], passphrase[33];
    size_t n = 0;
    /* A passphrase of this run only: it encrypts mod_auth_openidc's state and session cookies. */
    FILE *rnd = fopen("/dev/urandom", "r");
    unsigned char raw[16];
    if (!rnd || fread(raw, 1, sizeof raw, rnd) != sizeof raw) {
        if (rnd)
            fclose(rnd);
        return -1;
    }
    fclose(rnd);
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(passphrase + 2 * i, 3, "%02x", raw[i]);
#define ADD(...) n += (size_t)snprintf(text + n, n < sizeof text ? sizeof text - n : 0, __VA_ARGS__)
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
        ADD("LoadModule %s_module %s/mod_%s.so\n", modules[i], MODULES, modules[i]);
    ADD("ServerRoot \"%s\"\nServerName 127.0.0.1\nListen 127.0.0.1:%d\n", a->dir, a->port);
    ADD("PidFile \"%s/apache.pid\"\nErrorLog \"%s\"\nLogLevel warn auth_openidc:info\n", a->dir,
        a->error_log);
    ADD("DefaultRuntimeDir \"%s\"\nMutex file:%s default\n", a->dir, a->dir);
    ADD("LogFormat \"%%h \\\"%%r\\\" %%>s\" short\nCustomLog \"%s/access.log\" short\n", a->dir);
    ADD("StartServers 1\nServerLimit 1\nThreadsPerChild 16\nMaxRequestWorkers 16\n"
        "MinSpareThreads 1\nMaxSpareThreads 16\n");
    if (geteuid() == 0) { /* the children drop to nobody (by number: any group name works) */
        const struct passwd *pw = getpwnam("nobody");
        if (!pw) {
            fprintf(stderr, "apache: running as root and there is no user nobody\n");
            return -1;
        }
        ADD("User #%u\nGroup #%u\n", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
    }
    ADD("DocumentRoot \"%s/htdocs\"\n<Directory \"%s/htdocs\">\n  Options +Includes\n"
        "  Require all granted\n</Directory>\n",
        a->dir, a->dir);
    ADD("TypesConfig /dev/null\nAddType text/html .html .shtml\nAddOutputFilter INCLUDES .shtml\n"
        "DirectoryIndex index.shtml index.html\n");
    ADD("OIDCProviderMetadataURL %s/.well-known/openid-configuration\n", o->issuer);
    ADD("OIDCClientID %s\nOIDCClientSecret %s\n", o->client_id, o->client_secret);
    ADD("OIDCRedirectURI %s\nOIDCCryptoPassphrase %s\n", a->redirect_uri, passphrase);
    ADD("OIDCScope \"%s\"\nOIDCPKCEMethod S256\n", o->scope ? o->scope : "openid profile email");
    ADD("OIDCProviderTokenEndpointAuth client_secret_basic\n");
    /* the page shows the ID token (OIDC_id_token), so a test can read the kid that signed it */
    ADD("OIDCPassIDTokenAs claims serialized\n");
    ADD("<Location /protected>\n  AuthType openid-connect\n  Require valid-user\n</Location>\n");
    /* a page only for sessions signed in with a second factor (the acr Gatehouse sets) */
    ADD("<Location /protected/mfa.html>\n  AuthType openid-connect\n"
        "  Require claim acr:urn:gatehouse:mfa\n</Location>\n");
#undef ADD
    if (n >= sizeof text)
        return -1;
    snprintf(conf, len, "%s/apache.conf", a->dir);
    return write_file(a->dir, "apache.conf", text);
}

bool ta_apache_log_has(const ta_apache_t *a, const char *needle)
{
    static char buf[1 << 20];
    FILE *f = fopen(a->error_log, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

void ta_apache_print_log(const ta_apache_t *a, long bytes)
{
    FILE *f = fopen(a->error_log, "r");
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > bytes)
        fseek(f, -bytes, SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    char buf[4096];
    size_t got;
    fprintf(stderr, "---- apache error log (%s) ----\n", a->error_log);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, got, stderr);
    fprintf(stderr, "---- end of apache error log ----\n");
    fclose(f);
}

int ta_apache_start(ta_apache_t *a, const ta_oidc_t *oidc)
{
    char conf[TA_PATH_MAX + 32];
    if (write_pages(a) != 0 || write_config(a, oidc, conf, sizeof conf) != 0) {
        fprintf(stderr, "apache: cannot write the config in %s\n", a->dir);
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[] = {"apache2", "-d", a->dir, "-f", conf, "-DFOREGROUND", NULL};
        /* Apache's own environment: no locale or proxy settings of the caller's shell. */
        char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", NULL};
        execve(APACHE_BIN, argv, envp);
        _exit(127);
    }
    a->pid = pid;
    int status = 0;
    int rc = ts_wait_listening(&a->pid, a->port, 200, &status);
    if (rc == 0)
        return 0;
    if (rc > 0) {
        fprintf(stderr, "apache exited (status %d)\n", status);
        ta_apache_print_log(a, 4000);
        return -1;
    }
    fprintf(stderr, "apache did not listen on %d\n", a->port);
    ta_apache_print_log(a, 4000);
    ta_apache_cleanup(a);
    return -1;
}

void ta_apache_cleanup(ta_apache_t *a)
{
    ts_stop_pid(&a->pid, SIGTERM, 200);
    if (a->dir[0] && !getenv("GATEHOUSE_TEST_KEEP"))
        ts_rmtree(a->dir);
    a->dir[0] = '\0';
}
