/*
 * test_stop.c — every stop is clean, through the real binary and real signals:
 *
 * - nodes started and stopped in a tight loop while clients open connections as fast as they
 *   can never abort (libmicrohttpd's "Failed to remove listen FD from epoll set", exit 134, when
 *   the listening socket was closed before its threads let go of it): every exit status is 0;
 * - a SIGTERM sent at any moment of start-up — right after the signals are taken, while a large
 *   sessions.db loads, while the dummy hash is computed at a high cost — ends the node with
 *   status 0 within a few seconds;
 * - at an open-file limit of 256 with --max-connections 1024 the node says so at start, naming
 *   its own flag, and again with libmicrohttpd's advice when it runs out of descriptors.
 *
 * Everything runs on 127.0.0.1, bounded in time.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "harness.h"

/* ---- clients that open connections as fast as they can ---- */

typedef struct {
    int port;
    atomic_bool stop;
    atomic_ulong requests;
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    static const char req[] =
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)l->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[512];
    while (!atomic_load(&l->stop)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        struct timeval tv = {0, 200000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            send(fd, req, sizeof req - 1, MSG_NOSIGNAL) > 0 && recv(fd, buf, sizeof buf, 0) > 0)
            atomic_fetch_add(&l->requests, 1);
        close(fd);
    }
    return NULL;
}

#define STOP_ROUNDS 30
#define LOAD_THREADS 4

static void stops_under_load_never_abort(void **state)
{
    (void)state;
    unsigned long total = 0;
    long long t0 = ht_now_ms();
    int rounds = 0;
    for (; rounds < STOP_ROUNDS && ht_now_ms() - t0 < 60000; rounds++) {
        ht_server_t s = {0};
        assert_int_equal(ht_server_start(&s, "--http-threads", "4", NULL), 0);
        load_t l = {.port = s.port};
        pthread_t t[LOAD_THREADS];
        for (int i = 0; i < LOAD_THREADS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, load_main, &l), 0);
        /* Stop at a different moment of the churn each round. */
        ht_sleep_ms(20 + (rounds * 37) % 150);
        int st = ht_server_stop(&s);
        atomic_store(&l.stop, true);
        for (int i = 0; i < LOAD_THREADS; i++)
            pthread_join(t[i], NULL);
        total += atomic_load(&l.requests);
        if (st != 0) {
            char log[4096];
            ht_server_log(&s, log, sizeof log);
            fprintf(stderr, "%s\n", log);
        }
        ht_server_cleanup(&s);
        assert_int_equal(st, 0);
    }
    print_message("%d nodes stopped under load, every exit status 0 (%lu requests answered)\n",
                  rounds, total);
    assert_true(rounds >= 10);
    assert_true(total > 0);
}

/* ---- a node started by hand, to signal it before it is listening ---- */

typedef struct {
    pid_t pid;
    char log[HT_PATH_MAX + 32];
} proc_t;

/* Starts `gatehouse serve` on dir with args (NULL-terminated), nofile as its open-file limit
 * (0: unchanged), stderr into dir/start.log. */
static void spawn(proc_t *p, const char *dir, rlim_t nofile, const char *const *args)
{
    const char *bin = getenv("GATEHOUSE_BIN");
    if (!bin || !*bin)
        bin = "build/gatehouse";
    snprintf(p->log, sizeof p->log, "%s/start.log", dir);
    const char *argv[32] = {bin,          "serve", "--listen",      "127.0.0.1:0",
                            "--data-dir", dir,     "--hash-memory", "8KiB",
                            "--hash-ops", "1",     "--throttle-ip", "0"};
    size_t n = 12;
    for (size_t i = 0; args && args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        if (nofile) {
            struct rlimit rl = {nofile, nofile};
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        /* No GATEHOUSE_* setting of the caller's shell leaks in (sanitizer settings do). */
        extern char **environ;
        for (size_t i = 0; environ[i];) {
            size_t len = strcspn(environ[i], "=");
            if (strncmp(environ[i], "GATEHOUSE_", 10) == 0 && len < 128) {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)len, environ[i]);
                unsetenv(name);
            } else {
                i++;
            }
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
}

/* True once the process's signal handling is in place: its main thread blocks SIGTERM, or it
 * runs more than one thread (the start-up thread is made after the signals are taken; and
 * while the main thread waits in sigwaitinfo, the kernel shows SIGTERM unblocked). */
static bool takes_signals(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool yes = false;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "SigBlk:", 7) == 0)
            yes |= (strtoull(line + 7, NULL, 16) >> (SIGTERM - 1)) & 1;
        else if (strncmp(line, "Threads:", 8) == 0)
            yes |= strtol(line + 8, NULL, 10) > 1;
    fclose(f);
    return yes;
}

/* Waits up to timeout_ms for the process; its exit status (128+signal when killed), or -1 when
 * it was still running (it is then killed). */
static int reap(pid_t pid, long long timeout_ms, long long *took_ms)
{
    long long t0 = ht_now_ms();
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            break;
        if (ht_now_ms() - t0 > timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *took_ms = ht_now_ms() - t0;
            return -1;
        }
        ht_sleep_ms(5);
    }
    *took_ms = ht_now_ms() - t0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void print_log(const char *path)
{
    char buf[8192];
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "--- %s ---\n%s\n", path, buf);
}

/* Reads the file into buf (NUL-terminated, cut at len - 1). */
static void read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* True when the log holds a sanitizer report (an ASan build of the node writes it there). */
static bool sanitizer_report(const char *path)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, "ERROR: AddressSanitizer") || strstr(buf, "ERROR: LeakSanitizer") ||
           strstr(buf, "runtime error:");
}

/* Starts a node, sends SIGTERM delay_ms after its signal handling is in place, and checks that
 * it exits 0 within the limit. */
static void term_after(const char *dir, const char *const *args, int delay_ms, long long limit_ms)
{
    proc_t p = {0};
    spawn(&p, dir, 0, args);
    long long t0 = ht_now_ms();
    while (!takes_signals(p.pid) && ht_now_ms() - t0 < 10000)
        ht_sleep_ms(1);
    if (!takes_signals(p.pid))
        print_log(p.log);
    assert_true(takes_signals(p.pid));
    if (delay_ms)
        ht_sleep_ms(delay_ms);
    assert_int_equal(kill(p.pid, SIGTERM), 0);
    long long took = 0;
    int st = reap(p.pid, 20000, &took);
    print_message("SIGTERM %4d ms into start-up: exit %d after %lld ms\n", delay_ms, st, took);
    bool report = sanitizer_report(p.log);
    if (st != 0 || took > limit_ms || report)
        print_log(p.log);
    assert_false(report);
    assert_int_equal(st, 0);
    assert_true(took <= limit_ms);
}

/* Writes n live sessions into dir/sessions.db, in the store's own schema (made by a node that
 * started and stopped there first). */
static void fill_sessions(const char *dir, int n)
{
    ht_server_t s = {.data_dir = dir};
    assert_int_equal(ht_server_start(&s, NULL), 0);
    assert_int_equal(ht_server_stop(&s), 0);
    ht_server_cleanup(&s);
    char path[HT_PATH_MAX + 32], sql[512];
    snprintf(path, sizeof path, "%s/sessions.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    long long now = (long long)time(NULL) * 1000;
    snprintf(sql, sizeof sql,
             "INSERT INTO sessions (token_hash, id, user_id, created_at, last_seen_at, "
             "expires_at) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE "
             "x < %d) SELECT randomblob(32), randomblob(16), x, %lld, %lld, %lld FROM c",
             n, now, now, now + 3600 * 1000LL);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite: %s\n", err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
}

static void sigterm_at_any_moment_of_start_up(void **state)
{
    (void)state;
    char dir[HT_PATH_MAX];
    assert_int_equal(ht_tempdir(dir), 0);
    /* Enough persisted sessions that loading them takes a while. */
    fill_sessions(dir, 400000);
    static const char *const big[] = {"--session-memory", "1GiB", NULL};
    static const int delays[] = {0, 2, 10, 30, 100, 250, 600};
    for (size_t i = 0; i < sizeof delays / sizeof delays[0]; i++)
        term_after(dir, big, delays[i], 5000);
    ht_rmtree(dir);
}

static void sigterm_during_the_dummy_hash(void **state)
{
    (void)state;
    char dir[HT_PATH_MAX];
    assert_int_equal(ht_tempdir(dir), 0);
    /* One hash at this cost takes seconds here: start-up computes one before it listens. */
    static const char *const slow[] = {"--hash-memory",  "64MiB", "--hash-ops", "60",
                                       "--hash-workers", "1",     NULL};
    term_after(dir, slow, 300, 5000);
    term_after(dir, slow, 0, 5000);
    ht_rmtree(dir);
}

static void a_low_open_file_limit_is_named_at_start(void **state)
{
    (void)state;
    char dir[HT_PATH_MAX];
    assert_int_equal(ht_tempdir(dir), 0);
    static const char *const args[] = {"--max-connections", "1024", "--max-connections-per-ip",
                                       "1024", NULL};
    proc_t p = {0};
    spawn(&p, dir, 256, args);
    static char buf[65536];
    buf[0] = '\0';
    long long t0 = ht_now_ms();
    while (!strstr(buf, "\"listening\"") && ht_now_ms() - t0 < 10000) {
        ht_sleep_ms(20);
        read_file(p.log, buf, sizeof buf);
    }
    /* Past the descriptors it has: libmicrohttpd's own advice comes with ours. */
    const char *at = strstr(buf, "\"addr\":\"127.0.0.1:");
    assert_non_null(at);
    int port = atoi(at + strlen("\"addr\":\"127.0.0.1:"));
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fds[300];
    size_t nfds = 0;
    for (; nfds < 300; nfds++) {
        fds[nfds] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[nfds] < 0 || connect(fds[nfds], (struct sockaddr *)&sa, sizeof sa) != 0) {
            if (fds[nfds] >= 0)
                close(fds[nfds]);
            break;
        }
    }
    t0 = ht_now_ms();
    while (!strstr(buf, "MHD_OPTION_CONNECTION_LIMIT") && ht_now_ms() - t0 < 10000) {
        ht_sleep_ms(50);
        read_file(p.log, buf, sizeof buf);
    }
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    const char *hint = strstr(buf, "MHD_OPTION_CONNECTION_LIMIT");
    if (!hint)
        fprintf(stderr, "%s\n", buf);
    assert_non_null(hint);
    assert_non_null(strstr(hint, "\"hint\":\"out of file descriptors"));
    kill(p.pid, SIGTERM);
    long long took = 0;
    int st = reap(p.pid, 15000, &took);
    const char *warn = strstr(buf, "open-file limit is below what --max-connections needs");
    if (!warn)
        fprintf(stderr, "%s\n", buf);
    assert_non_null(warn);
    assert_non_null(strstr(buf, "\"nofile_limit\":256"));
    assert_non_null(strstr(buf, "\"max_connections\":1024"));
    assert_false(sanitizer_report(p.log));
    assert_int_equal(st, 0);

    /* Within the limit: no warning. */
    static const char *const fits[] = {"--max-connections", "100", "--http-threads", "2", NULL};
    spawn(&p, dir, 256, fits);
    t0 = ht_now_ms();
    buf[0] = '\0';
    while (!strstr(buf, "\"listening\"") && ht_now_ms() - t0 < 10000) {
        ht_sleep_ms(20);
        FILE *f = fopen(p.log, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            fclose(f);
        }
    }
    kill(p.pid, SIGTERM);
    st = reap(p.pid, 15000, &took);
    assert_non_null(strstr(buf, "\"listening\""));
    assert_null(strstr(buf, "open-file limit"));
    assert_false(sanitizer_report(p.log));
    assert_int_equal(st, 0);
    ht_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stops_under_load_never_abort),
        cmocka_unit_test(sigterm_at_any_moment_of_start_up),
        cmocka_unit_test(sigterm_during_the_dummy_hash),
        cmocka_unit_test(a_low_open_file_limit_is_named_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
