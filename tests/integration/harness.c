/*
 * harness.c — starts and stops the real gatehouse binary and speaks HTTP to it over loopback.
 *
 * Design decision: every request uses its own curl easy handle and fixed buffers owned by the
 * caller, and every server is a plain struct with its own pid, dir and port. No state is shared
 * between servers or requests, so a test can run several servers at once and a failed assertion
 * (a longjmp in cmocka) leaves nothing half-done that the next test could trip over.
 */
#include "harness.h"

#include "auth/secretkey.h"
#include "../support/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>
/* cmocka: a sanitizer report in a server's log fails the running test (fail_msg). */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

extern char **environ;

#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 10000
#define RUN_TIMEOUT_MS 20000
#define MAX_ARGS 64

long long ht_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ht_sleep_ms(long long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int ht_tempdir(char *out)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int n = snprintf(out, HT_PATH_MAX, "%s/gatehouse-it-XXXXXX", tmp);
    if (n < 0 || n >= HT_PATH_MAX || !mkdtemp(out)) {
        fprintf(stderr, "harness: mkdtemp in %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static char shared_key_dir[HT_PATH_MAX];
static char shared_key_path[HT_PATH_MAX + 16];

static void shared_key_remove(void)
{
    if (shared_key_dir[0])
        ht_rmtree(shared_key_dir);
}

const char *ht_shared_secret_key(void)
{
    if (shared_key_path[0])
        return shared_key_path;
    if (ht_tempdir(shared_key_dir) != 0)
        return NULL;
    snprintf(shared_key_path, sizeof shared_key_path, "%s/secret.key", shared_key_dir);
    /* made as a node makes its default key: 32 random bytes in base64, mode 0600 */
    uint8_t key[GH_SECRET_KEY_LEN];
    char why[256];
    int rc = gh_secret_key_load(shared_key_path, true, key, why, sizeof why);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        fprintf(stderr, "harness: %s\n", why);
        ht_rmtree(shared_key_dir);
        shared_key_dir[0] = shared_key_path[0] = '\0';
        return NULL;
    }
    atexit(shared_key_remove);
    return shared_key_path;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
    return 0;
}

void ht_rmtree(const char *dir)
{
    if (dir && *dir)
        (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int ht_count_lines(const char *buf)
{
    int n = 0;
    for (const char *p = buf; *p; p++)
        n += *p == '\n';
    return n;
}

/* The binary under test as an absolute path, so children may chdir. */
static int binary_path(char out[PATH_MAX])
{
    const char *bin = getenv("GATEHOUSE_BIN");
    if (!bin || !*bin)
        bin = "build/gatehouse";
    if (!realpath(bin, out)) {
        fprintf(stderr, "harness: gatehouse binary %s: %s\n", bin, strerror(errno));
        return -1;
    }
    return 0;
}

/* The caller's environment without GATEHOUSE_*, plus extra. Points into environ and extra;
 * the array itself is the caller's. */
/* True when extra sets the variable of the "NAME=value" entry e: the test's value wins (the first
 * of two entries is the one getenv finds, so the caller's must go, not just come first). */
static bool overridden_by(const char *e, const char *const *extra)
{
    size_t len = strcspn(e, "=");
    for (size_t i = 0; extra && extra[i] && i < HT_MAX_ENV; i++)
        if (strncmp(extra[i], e, len) == 0 && extra[i][len] == '=')
            return true;
    return false;
}

static void build_env(const char **out, size_t cap, const char *const *extra)
{
    size_t n = 0;
    for (char **e = environ; *e && n + HT_MAX_ENV + 1 < cap; e++)
        if (strncmp(*e, "GATEHOUSE_", 10) != 0 && !overridden_by(*e, extra))
            out[n++] = *e;
    for (size_t i = 0; extra && extra[i] && i < HT_MAX_ENV; i++)
        out[n++] = extra[i];
    out[n] = NULL;
}

static size_t env_count(void)
{
    size_t n = 0;
    while (environ[n])
        n++;
    return n;
}

/* Child side of a fork: never returns. */
static void exec_child(const char *bin, const char **argv, const char **envp, int in_fd, int out_fd,
                       int err_fd, const char *cwd, pid_t parent)
{
    /* The server dies with the test binary, even when that one crashes. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    if (cwd && chdir(cwd) != 0)
        _exit(127);
    /* Children should not inherit a blocked or ignored SIGTERM from the test runner. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    execve(bin, (char *const *)argv, (char *const *)envp);
    dprintf(2, "harness: exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* GATEHOUSE_TEST_TIMEOUT_SCALE=N stretches the start and stop limits (a server under valgrind
 * runs 20-50 times slower); 1 when unset or not a number from 1 to 100. */
static int scaled(int ms)
{
    const char *s = getenv("GATEHOUSE_TEST_TIMEOUT_SCALE");
    int k = s ? atoi(s) : 1;
    return k >= 1 && k <= 100 ? ms * k : ms;
}

/* The lines by which the sanitizers and valgrind say something went wrong. A server built with
 * SANITIZER=address writes ASan, LSan (at exit) and UBSan reports to its stderr, which is
 * server.log; valgrind writes its summary there too when the binary runs under it. */
static const char *const report_marks[] = {
    "ERROR SUMMARY: ", /* first: valgrind's "0 errors" is the one line that is not a report */
    "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",       "runtime error:",
    "ERROR: ThreadSanitizer",  "blocks are definitely lost", "blocks are indirectly lost",
};

/* True when line (n bytes) is a report line. "ERROR SUMMARY: 0 errors" is valgrind saying all
 * is well; any other count is a failure. */
static bool is_report_line(const char *line, size_t n)
{
    for (size_t i = 0; i < sizeof report_marks / sizeof report_marks[0]; i++) {
        const char *m = memmem(line, n, report_marks[i], strlen(report_marks[i]));
        if (!m)
            continue;
        if (i == 0) {
            const char *d = m + strlen(report_marks[i]);
            if (d < line + n && *d == '0' && (d + 1 == line + n || d[1] == ' '))
                continue;
        }
        return true;
    }
    return false;
}

/* Offset of the first report line in buf, or -1. */
static long find_report(const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        const char *nl = memchr(buf + off, '\n', len - off);
        size_t n = nl ? (size_t)(nl - (buf + off)) : len - off;
        if (is_report_line(buf + off, n))
            return (long)off;
        off += n + 1;
    }
    return -1;
}

/* The last 8 KiB of the server log, where a crash leaves its last words. */
static void dump_log_tail(const ht_server_t *s)
{
    const size_t cap = 16u << 20;
    char *buf = malloc(cap);
    if (!buf)
        return;
    size_t len = ht_server_log(s, buf, cap);
    size_t from = len > 8192 ? len - 8192 : 0;
    fprintf(stderr, "---- end of server log (%s) ----\n%s---- (log ends) ----\n", s->log_path,
            buf + from);
    free(buf);
}

/* Reads the whole log of a stopped server (bounded) and prints it from its first report line
 * on. Returns true when there was a report. */
static bool server_log_has_report(const ht_server_t *s)
{
    const size_t cap = 16u << 20;
    char *buf = malloc(cap);
    if (!buf)
        return false;
    size_t len = ht_server_log(s, buf, cap);
    long at = find_report(buf, len);
    if (at >= 0) {
        /* Back up to the "=====" banner line before an ASan report, when there is one. */
        long from = at;
        for (int lines = 0; from > 0 && lines < 2; lines++) {
            from--;
            while (from > 0 && buf[from - 1] != '\n')
                from--;
        }
        fprintf(stderr, "harness: sanitizer/valgrind report in the server log (%s):\n%.65536s\n",
                s->log_path, buf + from);
    }
    free(buf);
    return at >= 0;
}

/* Waits for pid up to timeout_ms; returns the decoded status or -2 when still running. */
static int wait_bounded(pid_t pid, int timeout_ms)
{
    long long deadline = ht_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            if (WIFSIGNALED(st))
                return 128 + WTERMSIG(st);
            return -1;
        }
        if (w < 0 && errno != EINTR)
            return -1;
        if (ht_now_ms() >= deadline)
            return -2;
        ht_sleep_ms(5);
    }
}

size_t ht_server_log(const ht_server_t *s, char *buf, size_t len)
{
    size_t n = 0;
    if (len == 0)
        return 0;
    int fd = open(s->log_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t k;
        while (n + 1 < len && (k = read(fd, buf + n, len - 1 - n)) > 0)
            n += (size_t)k;
        close(fd);
    }
    buf[n] = '\0';
    return n;
}

/* Finds the first JSON log line of buf whose msg is `msg`; returns a new reference or NULL. */
static json_t *find_log_line(const char *buf, const char *msg)
{
    const char *line = buf;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        if (!end)
            break; /* a line still being written */
        json_t *j = json_loadb(line, n, 0, NULL);
        if (j) {
            json_t *m = json_object_get(j, "msg");
            if (json_is_string(m) && strcmp(json_string_value(m), msg) == 0)
                return j;
            json_decref(j);
        }
        line = end + 1;
    }
    return NULL;
}

bool ht_server_wait_log(const ht_server_t *s, const char *msg, int timeout_ms)
{
    const size_t cap = 4u << 20;
    char *buf = malloc(cap);
    bool found = false;
    long long deadline = ht_now_ms() + timeout_ms;
    while (buf && !found) {
        ht_server_log(s, buf, cap);
        json_t *j = find_log_line(buf, msg);
        found = j != NULL;
        json_decref(j);
        if (found || ht_now_ms() >= deadline)
            break;
        ht_sleep_ms(10);
    }
    free(buf);
    return found;
}

static void dump_log(const ht_server_t *s)
{
    char buf[8192];
    ht_server_log(s, buf, sizeof buf);
    fprintf(stderr, "---- server log (%s) ----\n%s---- end of server log ----\n", s->log_path, buf);
}

/* True when args or env already set config key `flag` ("--hash-memory"). */
static bool overridden(const char *flag, const char *const *args, const char *const *env)
{
    size_t fl = strlen(flag);
    for (size_t i = 0; args && args[i]; i++)
        if (strncmp(args[i], flag, fl) == 0 && (args[i][fl] == '\0' || args[i][fl] == '='))
            return true;
    char var[128] = "GATEHOUSE_";
    size_t v = strlen(var);
    for (const char *p = flag + 2; *p && v + 2 < sizeof var; p++)
        var[v++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    var[v++] = '=';
    var[v] = '\0';
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], var, v) == 0)
            return true;
    return false;
}

int ht_server_startv(ht_server_t *s, const char *const *args)
{
    char bin[PATH_MAX];
    s->pid = 0;
    s->port = 0;
    s->addr[0] = '\0';
    s->exit_status = -1;
    if (binary_path(bin) != 0)
        return -1;
    if (s->data_dir) {
        snprintf(s->dir, sizeof s->dir, "%s", s->data_dir);
        s->owns_dir = false;
    } else if (!s->owns_dir || !s->dir[0]) {
        /* A restarted server keeps the dir it made the first time. */
        if (ht_tempdir(s->dir) != 0)
            return -1;
        s->owns_dir = true;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    char out_path[HT_PATH_MAX + 16];
    snprintf(out_path, sizeof out_path, "%s/server.stdout", s->dir);

    const char *defaults[][2] = {
        {"--listen", "127.0.0.1:0"}, {"--data-dir", s->dir}, {"--hash-memory", "8KiB"},
        {"--hash-ops", "1"},         {"--throttle-ip", "0"},
    };
    const char *argv[MAX_ARGS];
    size_t n = 0;
    argv[n++] = bin;
    argv[n++] = "serve";
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (overridden(defaults[i][0], args, s->env))
            continue;
        argv[n++] = defaults[i][0];
        argv[n++] = defaults[i][1];
    }
    for (size_t i = 0; args && args[i]; i++) {
        if (n + 1 >= MAX_ARGS) {
            fprintf(stderr, "harness: too many arguments\n");
            return -1;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;

    size_t env_cap = env_count() + HT_MAX_ENV + 2;
    const char **envp = calloc(env_cap, sizeof *envp);
    if (!envp)
        return -1;
    build_env(envp, env_cap, s->env);

    int log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int rc = -1;
    if (log_fd < 0 || out_fd < 0 || in_fd < 0) {
        fprintf(stderr, "harness: open %s: %s\n", s->log_path, strerror(errno));
        goto out;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        goto out;
    }
    if (pid == 0)
        exec_child(bin, argv, envp, in_fd, out_fd, log_fd, s->dir, parent);
    s->pid = pid;

    long long deadline = ht_now_ms() + scaled(START_TIMEOUT_MS);
    char buf[65536];
    for (;;) {
        ht_server_log(s, buf, sizeof buf);
        json_t *line = find_log_line(buf, "listening");
        if (line) {
            const char *addr = json_string_value(json_object_get(line, "addr"));
            const char *colon = addr ? strrchr(addr, ':') : NULL;
            if (colon && strncmp(addr, "127.0.0.1:", 10) == 0) {
                snprintf(s->addr, sizeof s->addr, "%s", addr);
                s->port = atoi(colon + 1);
            }
            json_decref(line);
            if (s->port <= 0 || s->port > 65535) {
                fprintf(stderr, "harness: listening line without a 127.0.0.1 addr\n");
                break;
            }
            rc = 0;
            break;
        }
        int st = wait_bounded(pid, 0);
        if (st != -2) {
            s->pid = 0;
            s->exit_status = st;
            fprintf(stderr, "harness: server exited with status %d before listening\n", st);
            break;
        }
        if (ht_now_ms() >= deadline) {
            fprintf(stderr, "harness: no \"listening\" line within %d ms\n",
                    scaled(START_TIMEOUT_MS));
            break;
        }
        ht_sleep_ms(10);
    }
    if (rc != 0) {
        dump_log(s);
        if (s->pid) {
            kill(s->pid, SIGKILL);
            (void)wait_bounded(s->pid, STOP_TIMEOUT_MS);
            s->pid = 0;
        }
    }
out:
    if (log_fd >= 0)
        close(log_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (in_fd >= 0)
        close(in_fd);
    free(envp);
    return rc;
}

int ht_server_start(ht_server_t *s, ...)
{
    const char *args[MAX_ARGS];
    size_t n = 0;
    va_list ap;
    va_start(ap, s);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n + 1 < MAX_ARGS)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    return ht_server_startv(s, args);
}

/* Stops the server and checks its log; never fails the test itself, so cleanup can finish
 * first. *report is set when the log holds a sanitizer or valgrind report. */
static int stop_server(ht_server_t *s, int sig, bool *report)
{
    *report = false;
    if (s->pid <= 0)
        return s->exit_status;
    kill(s->pid, sig);
    int st = wait_bounded(s->pid, scaled(STOP_TIMEOUT_MS));
    if (st == -2) {
        fprintf(stderr, "harness: server did not stop within %d ms; SIGKILL\n",
                scaled(STOP_TIMEOUT_MS));
        kill(s->pid, SIGKILL);
        (void)wait_bounded(s->pid, STOP_TIMEOUT_MS);
        st = -1;
    }
    s->pid = 0;
    s->exit_status = st;
    /* The leak check runs when the process exits: only now is the log complete. */
    *report = server_log_has_report(s);
    /* Died of something other than the signal sent (an abort, a crash): show why, whatever the
     * test then makes of the status. */
    if (!*report && st > 128 && st != 128 + sig && st != 128 + SIGKILL) {
        fprintf(stderr, "harness: the server died of signal %d when sent %d\n", st - 128, sig);
        dump_log_tail(s);
    }
    return st;
}

int ht_server_stop_sig(ht_server_t *s, int sig)
{
    bool report;
    int st = stop_server(s, sig, &report);
    if (report)
        fail_msg("the server's log has a sanitizer or valgrind report (printed above; dir %s)",
                 s->dir);
    return st;
}

int ht_server_stop(ht_server_t *s)
{
    return ht_server_stop_sig(s, SIGTERM);
}

int ht_server_release(ht_server_t *s)
{
    bool report;
    (void)stop_server(s, SIGTERM, &report);
    if (s->owns_dir && s->dir[0]) {
        const char *keep = getenv("GATEHOUSE_TEST_KEEP");
        if (keep && *keep && strcmp(keep, "0") != 0)
            fprintf(stderr, "harness: kept %s\n", s->dir);
        else
            ht_rmtree(s->dir);
        s->dir[0] = '\0';
        s->owns_dir = false;
    }
    if (report)
        fprintf(stderr, "harness: the server's log had a sanitizer or valgrind report (above)\n");
    return report ? -1 : 0;
}

void ht_server_cleanup(ht_server_t *s)
{
    if (ht_server_release(s) != 0)
        fail_msg("the server's log had a sanitizer or valgrind report (printed above)");
}

/* ---- HTTP ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    ht_response_t *r = userp;
    size_t n = size * nmemb, room = HT_BODY_MAX - r->body_len;
    if (n > room)
        r->truncated = true;
    size_t k = n < room ? n : room;
    memcpy(r->body + r->body_len, data, k);
    r->body_len += k;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userp)
{
    ht_response_t *r = userp;
    size_t n = size * nmemb;
    /* Only the final response's headers count (not those of a "100 Continue"). */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        r->headers_len = 0;
    size_t room = HT_HEADERS_MAX - 1 - r->headers_len;
    if (n > room)
        r->truncated = true;
    size_t k = n < room ? n : room;
    memcpy(r->headers + r->headers_len, data, k);
    r->headers_len += k;
    r->headers[r->headers_len] = '\0';
    return n;
}

static bool has_header(const char *const *headers, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, nl) == 0 && headers[i][nl] == ':')
            return true;
    return false;
}

static void fill_error_code(ht_response_t *r)
{
    r->error_code[0] = '\0';
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    if (!j)
        return;
    json_t *code = json_object_get(json_object_get(j, "error"), "code");
    if (json_is_string(code))
        snprintf(r->error_code, sizeof r->error_code, "%s", json_string_value(code));
    json_decref(j);
}

long ht_request(const ht_server_t *s, const char *method, const char *path,
                const char *const *headers, const char *body, size_t body_len, ht_response_t *r)
{
    static bool curl_ready;
    if (!curl_ready) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl_ready = true;
    }
    r->status = 0;
    r->headers[0] = '\0';
    r->headers_len = 0;
    r->body[0] = '\0';
    r->body_len = 0;
    r->truncated = false;
    r->error_code[0] = '\0';
    r->curl_error[0] = '\0';

    char url[8192];
    int un = snprintf(url, sizeof url, "http://%s%s", s->addr, path);
    if (!s->port || un < 0 || (size_t)un >= sizeof url) {
        snprintf(r->curl_error, sizeof r->curl_error, "no server or path too long");
        return 0;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(r->curl_error, sizeof r->curl_error, "curl_easy_init failed");
        return 0;
    }
    struct curl_slist *list = NULL;
    for (size_t i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    /* libcurl would add a form Content-Type to every POST; the test says what it sends. */
    if (!has_header(headers, "Content-Type"))
        list = curl_slist_append(list, "Content-Type:");

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* traffic stays on loopback */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);

    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }

    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        snprintf(r->curl_error, sizeof r->curl_error, "%s", curl_easy_strerror(cc));
        fprintf(stderr, "harness: %s %s: %s (status %ld)\n", method, path, r->curl_error, status);
    }
    curl_slist_free_all(list);
    curl_easy_cleanup(c);

    r->body[r->body_len] = '\0';
    r->status = status;
    fill_error_code(r);
    return status;
}

long ht_get(const ht_server_t *s, const char *path, const char *token, ht_response_t *r)
{
    char auth[512];
    const char *h[2] = {NULL, NULL};
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[0] = auth;
    }
    return ht_request(s, "GET", path, h, NULL, 0, r);
}

long ht_delete(const ht_server_t *s, const char *path, const char *token, ht_response_t *r)
{
    char auth[512];
    const char *h[2] = {NULL, NULL};
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[0] = auth;
    }
    return ht_request(s, "DELETE", path, h, NULL, 0, r);
}

long ht_json(const ht_server_t *s, const char *method, const char *path, const char *token,
             const char *json, ht_response_t *r)
{
    char auth[512];
    const char *h[3] = {"Content-Type: application/json", NULL, NULL};
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[1] = auth;
    }
    return ht_request(s, method, path, h, json, strlen(json), r);
}

/* {"username":u,"password":p} with proper escaping; free() the result. */
static char *credentials_json(const char *username, const char *password)
{
    json_t *j = json_pack("{s:s, s:s}", "username", username, "password", password);
    char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return out;
}

long ht_register(const ht_server_t *s, const char *username, const char *password, long long *id)
{
    ht_response_t *r = malloc(sizeof *r); /* too large for a helper's stack frame */
    char *body = credentials_json(username, password);
    long st = 0;
    if (r && body) {
        st = ht_json(s, "POST", "/v1/users", NULL, body, r);
        if (st == 201 && id && !ht_jint(r, "id", id))
            st = 0;
    }
    free(body);
    free(r);
    return st;
}

long ht_login(const ht_server_t *s, const char *username, const char *password, char *token,
              char *sid)
{
    ht_response_t *r = malloc(sizeof *r);
    char *body = credentials_json(username, password);
    long st = 0;
    if (r && body) {
        st = ht_json(s, "POST", "/v1/sessions", NULL, body, r);
        if (st == 201 && token && !ht_jstr(r, "token", token, 64))
            st = 0;
        if (st == 201 && sid && !ht_jstr(r, "session.id", sid, 32))
            st = 0;
    }
    free(body);
    free(r);
    return st;
}

bool ht_header(const ht_response_t *r, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *line = r->headers;
    while (*line) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t n = (size_t)(ve - v);
            if (n >= len)
                n = len - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return true;
        }
        line = *end ? end + 2 : end;
    }
    if (len)
        buf[0] = '\0';
    return false;
}

int ht_header_count(const ht_response_t *r, const char *name)
{
    size_t nl = strlen(name);
    int count = 0;
    const char *line = r->headers;
    while (*line) {
        const char *end = strstr(line, "\r\n");
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':')
            count++;
        line = *end ? end + 2 : end;
    }
    return count;
}

/* ---- JSON ---- */

json_t *ht_jbody(const ht_response_t *r)
{
    return json_loadb(r->body, r->body_len, 0, NULL);
}

json_t *ht_jpath(json_t *root, const char *path)
{
    json_t *node = root;
    const char *p = path;
    while (node && *p) {
        char part[128];
        size_t n = strcspn(p, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        if (json_is_array(node)) {
            char *end;
            unsigned long idx = strtoul(part, &end, 10);
            node = (*part && !*end) ? json_array_get(node, idx) : NULL;
        } else if (json_is_object(node)) {
            node = json_object_get(node, part);
        } else {
            node = NULL;
        }
        p += n;
        if (*p == '.')
            p++;
    }
    return node;
}

bool ht_jstr(const ht_response_t *r, const char *path, char *buf, size_t len)
{
    json_t *root = ht_jbody(r);
    json_t *v = ht_jpath(root, path);
    bool ok = json_is_string(v);
    if (ok)
        snprintf(buf, len, "%s", json_string_value(v));
    else if (len)
        buf[0] = '\0';
    json_decref(root);
    return ok;
}

bool ht_jint(const ht_response_t *r, const char *path, long long *out)
{
    json_t *root = ht_jbody(r);
    json_t *v = ht_jpath(root, path);
    bool ok = json_is_integer(v);
    if (ok)
        *out = json_integer_value(v);
    json_decref(root);
    return ok;
}

bool ht_jbool(const ht_response_t *r, const char *path, bool *out)
{
    json_t *root = ht_jbody(r);
    json_t *v = ht_jpath(root, path);
    bool ok = json_is_boolean(v);
    if (ok)
        *out = json_is_true(v);
    json_decref(root);
    return ok;
}

bool ht_jnumber(const ht_response_t *r, const char *path, double *out)
{
    json_t *root = ht_jbody(r);
    json_t *v = ht_jpath(root, path);
    bool ok = json_is_number(v);
    if (ok)
        *out = json_number_value(v);
    json_decref(root);
    return ok;
}

long ht_jsize(const ht_response_t *r, const char *path)
{
    json_t *root = ht_jbody(r);
    json_t *v = *path ? ht_jpath(root, path) : root;
    long n = json_is_array(v)    ? (long)json_array_size(v)
             : json_is_object(v) ? (long)json_object_size(v)
                                 : -1;
    json_decref(root);
    return n;
}

bool ht_jhas(const ht_response_t *r, const char *path)
{
    json_t *root = ht_jbody(r);
    bool ok = ht_jpath(root, path) != NULL;
    json_decref(root);
    return ok;
}

bool ht_parse_time(const char *s, time_t *out)
{
    /* YYYY-MM-DDTHH:MM:SSZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    if (!s || strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    struct tm tm = {0};
    if (!strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return false;
    *out = timegm(&tm);
    return true;
}

bool ht_is_b64url(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

bool ht_is_token(const char *s)
{
    return s && strncmp(s, "gh_", 3) == 0 && ht_is_b64url(s + 3, 43);
}

/* ---- running the CLI ---- */

static size_t read_memfd(int fd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t k;
    while (n + 1 < len && (k = pread(fd, buf + n, len - 1 - n, (off_t)n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    return n;
}

int ht_run(ht_run_t *r, const char *stdin_data, const char *const *env, ...)
{
    char bin[PATH_MAX];
    r->status = -1;
    r->out[0] = r->err[0] = '\0';
    r->out_len = r->err_len = 0;
    if (binary_path(bin) != 0)
        return -1;

    const char *argv[MAX_ARGS];
    size_t n = 0;
    argv[n++] = bin;
    va_list ap;
    va_start(ap, env);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n + 1 < MAX_ARGS)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;

    size_t env_cap = env_count() + HT_MAX_ENV + 2;
    const char **envp = calloc(env_cap, sizeof *envp);
    if (!envp)
        return -1;
    build_env(envp, env_cap, env);

    int rc = -1;
    int in_fd = memfd_create("ht-stdin", MFD_CLOEXEC);
    int out_fd = memfd_create("ht-stdout", MFD_CLOEXEC);
    int err_fd = memfd_create("ht-stderr", MFD_CLOEXEC);
    if (in_fd < 0 || out_fd < 0 || err_fd < 0)
        goto out;
    if (stdin_data) {
        size_t len = strlen(stdin_data), off = 0;
        while (off < len) {
            ssize_t k = write(in_fd, stdin_data + off, len - off);
            if (k <= 0)
                goto out;
            off += (size_t)k;
        }
        lseek(in_fd, 0, SEEK_SET);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        goto out;
    if (pid == 0)
        exec_child(bin, argv, envp, in_fd, out_fd, err_fd, NULL, parent);
    int limit = scaled(r->timeout_ms > 0 ? r->timeout_ms : RUN_TIMEOUT_MS);
    int st = wait_bounded(pid, limit);
    if (st == -2) {
        fprintf(stderr, "harness: %s %s did not finish within %d ms; SIGKILL\n", bin,
                n > 1 ? argv[1] : "", limit);
        kill(pid, SIGKILL);
        (void)wait_bounded(pid, STOP_TIMEOUT_MS);
        st = -1;
    }
    r->status = st;
    r->out_len = read_memfd(out_fd, r->out, sizeof r->out);
    r->err_len = read_memfd(err_fd, r->err, sizeof r->err);
    rc = 0;
out:
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    free(envp);
    /* A command's sanitizer report is on its stderr; fail here, with everything released. */
    if (rc == 0 && find_report(r->err, r->err_len) >= 0)
        fail_msg("`%s %s` reported (sanitizer or valgrind):\n%s", bin, n > 1 ? argv[1] : "",
                 r->err);
    return rc;
}

void ht_totp(const char *secret, int offset_s, char out[7])
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "oathtool --totp -b '%s' -N '@%lld'", secret,
             (long long)time(NULL) + offset_s);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[32] = "";
    assert_non_null(fgets(line, sizeof line, p));
    assert_int_equal(pclose(p), 0);
    line[strcspn(line, "\n")] = '\0';
    assert_int_equal(strlen(line), 6);
    memcpy(out, line, 7);
}

int ht_run_node(const char *script, const char *const *env, long long timeout_ms)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0); /* its own group: chromium's processes go with it on a timeout */
        for (size_t i = 0; env[i]; i++)
            putenv((char *)env[i]);
        execlp("node", "node", script, (char *)NULL);
        _exit(127);
    }
    return ts_wait_group(pid, (long)timeout_ms, 100);
}
