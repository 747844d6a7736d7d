/*
 * test_durable.c — sessions survive a clean stop, a kill -9 and a reload, revocations never come
 * back, and a reload under load drops nothing — all through the real binary.
 *
 * A reload replaces the server process: the new one is a child of the old one and outlives it.
 * This test binary makes itself a child subreaper, so the new process becomes its child when the
 * old one exits, and the harness can stop and reap it like the first (s->pid is updated from
 * <data-dir>/gatehouse.pid).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-durable-tests"

typedef struct {
    ht_server_t srv;
    ht_response_t r;
} fixture_t;

static int setup(void **state)
{
    *state = calloc(1, sizeof(fixture_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ht_server_cleanup(&f->srv);
    free(f);
    return 0;
}

#define SRV(state) (&((fixture_t *)*(state))->srv)
#define RESP(state) (&((fixture_t *)*(state))->r)
#define START(s, ...)                                                                              \
    do {                                                                                           \
        if (ht_server_start((s), ##__VA_ARGS__, NULL) != 0)                                        \
            fail_msg("line %d: server did not start", __LINE__);                                   \
    } while (0)

static void expect_status(long got, long want, const char *what, int line)
{
    if (got != want)
        fail_msg("line %d: %s -> %ld, want %ld", line, what, got, want);
}
#define EXPECT(call, want) expect_status((call), (want), #call, __LINE__)

static void register_ok(const ht_server_t *s, const char *user)
{
    EXPECT(ht_register(s, user, PASSWORD, NULL), 201);
}

static void login_ok(const ht_server_t *s, const char *user, char token[64], char sid[32])
{
    EXPECT(ht_login(s, user, PASSWORD, token, sid), 201);
}

static bool token_works(const ht_server_t *s, const char *token)
{
    static ht_response_t r;
    long st = ht_get(s, "/v1/session", token, &r);
    if (st != 200 && st != 401)
        fail_msg("GET /v1/session -> %ld, want 200 or 401", st);
    return st == 200;
}

static double metric(const ht_server_t *s, const char *series)
{
    static ht_response_t r;
    EXPECT(ht_get(s, "/metrics", NULL, &r), 200);
    size_t n = strlen(series);
    for (const char *line = r.body; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    fail_msg("no %s in /metrics", series);
    return -1;
}

static pid_t pidfile(const ht_server_t *s)
{
    char path[HT_PATH_MAX + 32], buf[32] = {0};
    snprintf(path, sizeof path, "%s/gatehouse.pid", s->dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? (pid_t)atol(buf) : -1;
}

/* Waits (bounded) for a child to exit; its exit code, 128+signal, or -1 on timeout. */
static int wait_exit(pid_t pid, int timeout_ms)
{
    long long deadline = ht_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (ht_now_ms() >= deadline)
            return -1;
        ht_sleep_ms(5);
    }
}

/* The old process hands over and exits 0; the server's pid becomes the successor's. */
static void await_handover(ht_server_t *s, pid_t old)
{
    int st = wait_exit(old, 20000);
    if (st != 0)
        fail_msg("the old process ended with %d after a reload, want 0", st);
    pid_t np = pidfile(s);
    if (np <= 0 || np == old || kill(np, 0) != 0)
        fail_msg("no new process after the reload (pid file says %ld)", (long)np);
    s->pid = np;
}

static void reload_by_signal(ht_server_t *s)
{
    pid_t old = s->pid;
    assert_int_equal(kill(old, SIGHUP), 0);
    await_handover(s, old);
}

/* ---- restarts ---- */

static void clean_restart_keeps_sessions_and_revocations(void **state)
{
    ht_server_t *s = SRV(state);
    ht_response_t *r = RESP(state);
    START(s);
    register_ok(s, "ann");
    register_ok(s, "bob");
    char a1[64], a2[64], a3[64], b1[64], b2[64], a1_sid[32], a2_sid[32], path[96];
    login_ok(s, "ann", a1, a1_sid);
    login_ok(s, "ann", a2, a2_sid);
    login_ok(s, "ann", a3, NULL);
    login_ok(s, "bob", b1, NULL);
    login_ok(s, "bob", b2, NULL);
    snprintf(path, sizeof path, "/v1/sessions/%s", a2_sid);
    EXPECT(ht_delete(s, path, a1, r), 204);           /* revoked by id */
    EXPECT(ht_delete(s, "/v1/session", a3, r), 204);  /* logged out */
    EXPECT(ht_delete(s, "/v1/sessions", b1, r), 204); /* bob logs out everywhere */
    assert_true(metric(s, "gatehouse_sessions_active") == 1);
    assert_int_equal(ht_server_stop(s), 0);

    START(s);
    assert_true(token_works(s, a1));
    assert_false(token_works(s, a2));
    assert_false(token_works(s, a3));
    assert_false(token_works(s, b1));
    assert_false(token_works(s, b2));
    assert_true(metric(s, "gatehouse_sessions_active") == 1);
    EXPECT(ht_get(s, "/v1/session", a1, r), 200);
    char sid[32];
    assert_true(ht_jstr(r, "session.id", sid, sizeof sid));
    assert_string_equal(sid, a1_sid);
    /* And again: what the second run wrote comes back too. */
    assert_int_equal(ht_server_stop(s), 0);
    START(s);
    assert_true(token_works(s, a1));
    assert_false(token_works(s, a2));
    assert_true(metric(s, "gatehouse_sessions_active") == 1);
}

/* Written before the response is sent: a kill -9 right after a 204 keeps the revocation. */
static void kill_9_keeps_sessions_and_a_revocation_made_just_before(void **state)
{
    ht_server_t *s = SRV(state);
    ht_response_t *r = RESP(state);
    START(s);
    register_ok(s, "kim");
    char k1[64], k2[64], k3[64], k3_sid[32], path[96];
    login_ok(s, "kim", k1, NULL);
    login_ok(s, "kim", k2, NULL);
    login_ok(s, "kim", k3, k3_sid);
    snprintf(path, sizeof path, "/v1/sessions/%s", k3_sid);
    EXPECT(ht_delete(s, path, k1, r), 204);
    EXPECT(ht_delete(s, "/v1/session", k2, r), 204);
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);

    START(s);
    assert_true(token_works(s, k1));
    assert_false(token_works(s, k2));
    assert_false(token_works(s, k3));
    assert_true(metric(s, "gatehouse_sessions_active") == 1);
    /* A session created a moment before the kill is there too. */
    char k4[64];
    login_ok(s, "kim", k4, NULL);
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);
    START(s);
    assert_true(token_works(s, k1));
    assert_true(token_works(s, k4));
    assert_true(metric(s, "gatehouse_sessions_active") == 2);
}

static void evictions_stay_evicted_after_a_restart(void **state)
{
    ht_server_t *s = SRV(state);
    START(s, "--max-sessions-per-user", "2");
    register_ok(s, "eve");
    char e1[64], e2[64], e3[64];
    login_ok(s, "eve", e1, NULL);
    login_ok(s, "eve", e2, NULL);
    login_ok(s, "eve", e3, NULL); /* evicts e1 */
    assert_false(token_works(s, e1));
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);
    /* Even with a cap that would have room for it, the evicted session does not come back. */
    START(s, "--max-sessions-per-user", "10");
    assert_false(token_works(s, e1));
    assert_true(token_works(s, e2));
    assert_true(token_works(s, e3));
    assert_true(metric(s, "gatehouse_sessions_active") == 2);
}

static void expired_sessions_are_dropped_at_load(void **state)
{
    ht_server_t *s = SRV(state);
    START(s, "--session-ttl", "1s");
    register_ok(s, "xan");
    char x1[64];
    login_ok(s, "xan", x1, NULL);
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);
    ht_sleep_ms(1200);
    START(s, "--session-ttl", "1s");
    assert_true(metric(s, "gatehouse_sessions_active") == 0);
    assert_false(token_works(s, x1));
    char log[65536];
    ht_server_log(s, log, sizeof log);
    assert_non_null(strstr(log, "\"msg\":\"sessions loaded\",\"loaded\":0,\"expired\":1"));
}

/* ---- the client of each session ---- */

static void login_ua(const ht_server_t *s, const char *user, const char *ua, char token[64],
                     char sid[32])
{
    static ht_response_t r;
    char uah[256], body[128];
    snprintf(uah, sizeof uah, "User-Agent: %s", ua);
    snprintf(body, sizeof body, "{\"username\":\"%s\",\"password\":\"" PASSWORD "\"}", user);
    const char *hdrs[] = {"Content-Type: application/json", uah, NULL};
    EXPECT(ht_request(s, "POST", "/v1/sessions", hdrs, body, strlen(body), &r), 201);
    assert_true(ht_jstr(&r, "token", token, 64));
    assert_true(ht_jstr(&r, "session.id", sid, 32));
}

/* GET /v1/sessions lists session sid with this user agent, from 127.0.0.1. */
static void listed_with(const ht_server_t *s, const char *token, const char *sid, const char *ua)
{
    static ht_response_t r;
    EXPECT(ht_get(s, "/v1/sessions", token, &r), 200);
    for (long i = 0; i < ht_jsize(&r, "sessions"); i++) {
        char path[64], id[32], got[256], ip[64];
        snprintf(path, sizeof path, "sessions.%ld.id", i);
        assert_true(ht_jstr(&r, path, id, sizeof id));
        if (strcmp(id, sid) != 0)
            continue;
        snprintf(path, sizeof path, "sessions.%ld.user_agent", i);
        assert_true(ht_jstr(&r, path, got, sizeof got));
        snprintf(path, sizeof path, "sessions.%ld.ip", i);
        assert_true(ht_jstr(&r, path, ip, sizeof ip));
        if (strcmp(got, ua) != 0 || strcmp(ip, "127.0.0.1") != 0)
            fail_msg("session %s: user agent \"%s\" from %s, want \"%s\" from 127.0.0.1", sid, got,
                     ip, ua);
        return;
    }
    fail_msg("session %s is not listed: %.500s", sid, r.body);
}

/* A session's device is part of it: a restart, a kill -9 and a reload keep it, and a session
 * made by the successor of a reload keeps its own. */
static void restarts_and_reloads_keep_each_sessions_client(void **state)
{
    ht_server_t *s = SRV(state);
    START(s);
    register_ok(s, "uma");
    static const char laptop[] = "Mozilla/5.0 (Macintosh) Firefox/128.0",
                      phone[] = "Téléphone/2.0 «mobile» (Android 14)";
    char t1[64], s1[32], t2[64], s2[32], t3[64], s3[32];
    login_ua(s, "uma", laptop, t1, s1);
    login_ua(s, "uma", phone, t2, s2);
    assert_int_equal(ht_server_stop(s), 0);
    START(s);
    listed_with(s, t1, s1, laptop);
    listed_with(s, t1, s2, phone);
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);
    START(s);
    listed_with(s, t2, s1, laptop);
    reload_by_signal(s);
    listed_with(s, t1, s1, laptop);
    listed_with(s, t1, s2, phone);
    login_ua(s, "uma", "curl/8.5.0", t3, s3);
    reload_by_signal(s);
    listed_with(s, t3, s3, "curl/8.5.0");
    listed_with(s, t3, s2, phone);
}

/* ---- reload ---- */

static void reload_keeps_sessions_revocations_and_counts(void **state)
{
    ht_server_t *s = SRV(state);
    ht_response_t *r = RESP(state);
    START(s);
    register_ok(s, "ray");
    char t1[64], t2[64], t3[64];
    login_ok(s, "ray", t1, NULL);
    login_ok(s, "ray", t2, NULL);
    login_ok(s, "ray", t3, NULL);
    EXPECT(ht_delete(s, "/v1/session", t2, r), 204);
    reload_by_signal(s);
    assert_true(token_works(s, t1));
    assert_false(token_works(s, t2));
    assert_true(token_works(s, t3));
    assert_true(metric(s, "gatehouse_sessions_active") == 2);

    /* `gatehouse reload` finds the node through the pid file and waits for the new one. */
    EXPECT(ht_delete(s, "/v1/session", t3, r), 204);
    char dir_flag[HT_PATH_MAX + 16];
    snprintf(dir_flag, sizeof dir_flag, "--data-dir=%s", s->dir);
    ht_run_t *run = calloc(1, sizeof *run);
    assert_non_null(run);
    pid_t old = s->pid;
    assert_int_equal(ht_run(run, NULL, NULL, "reload", dir_flag, NULL), 0);
    if (run->status != 0)
        fail_msg("gatehouse reload -> %d: %s", run->status, run->err);
    assert_non_null(strstr(run->out, "reloaded"));
    free(run);
    await_handover(s, old);
    assert_true(token_works(s, t1));
    assert_false(token_works(s, t3));
    assert_true(metric(s, "gatehouse_sessions_active") == 1);

    /* What the successor wrote survives it being killed. */
    char t4[64];
    login_ok(s, "ray", t4, NULL);
    assert_int_equal(ht_server_stop_sig(s, SIGKILL), 128 + SIGKILL);
    START(s);
    assert_true(token_works(s, t1));
    assert_false(token_works(s, t2));
    assert_false(token_works(s, t3));
    assert_true(token_works(s, t4));
    assert_true(metric(s, "gatehouse_sessions_active") == 2);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void reload_with_a_broken_config_keeps_the_old_node_serving(void **state)
{
    ht_server_t *s = SRV(state);
    ht_response_t *r = RESP(state);
    char conf[HT_PATH_MAX], conf_flag[HT_PATH_MAX + 16], dir_flag[HT_PATH_MAX + 16];
    assert_int_equal(ht_tempdir(conf), 0);
    char conf_dir[HT_PATH_MAX];
    snprintf(conf_dir, sizeof conf_dir, "%s", conf);
    strncat(conf, "/gatehouse.ini", sizeof conf - strlen(conf) - 1);
    write_file(conf, "admin-token = " ADMIN "\nsession-policy = evict-idle\n");
    snprintf(conf_flag, sizeof conf_flag, "--config=%s", conf);
    START(s, conf_flag);
    snprintf(dir_flag, sizeof dir_flag, "--data-dir=%s", s->dir);
    register_ok(s, "bea");
    char t1[64];
    login_ok(s, "bea", t1, NULL);
    pid_t old = s->pid;

    write_file(conf, "admin-token = " ADMIN "\nidle-ttl = banana\n");
    /* The command checks the config itself and does not disturb the node. */
    ht_run_t *run = calloc(1, sizeof *run);
    assert_non_null(run);
    assert_int_equal(ht_run(run, NULL, NULL, "reload", conf_flag, dir_flag, NULL), 0);
    assert_int_equal(run->status, 2);
    assert_non_null(strstr(run->err, "idle-ttl"));
    /* A SIGHUP with the broken file: the new process refuses it, the old one serves on. */
    assert_int_equal(kill(old, SIGHUP), 0);
    assert_true(ht_server_wait_log(s, "reload failed; this process serves on", 10000));
    assert_int_equal(kill(old, 0), 0);
    assert_int_equal(pidfile(s), old);
    assert_true(token_works(s, t1));
    char t2[64];
    login_ok(s, "bea", t2, NULL);
    char log[65536];
    ht_server_log(s, log, sizeof log);
    assert_non_null(strstr(log, "idle-ttl")); /* the new process said why, in the same log */

    /* Fixed, the config is re-read: the new process runs with the new policy. */
    write_file(conf, "admin-token = " ADMIN "\nsession-policy = refuse\n");
    memset(run, 0, sizeof *run);
    assert_int_equal(ht_run(run, NULL, NULL, "reload", conf_flag, dir_flag, NULL), 0);
    if (run->status != 0)
        fail_msg("gatehouse reload -> %d: %s", run->status, run->err);
    free(run);
    await_handover(s, old);
    assert_true(token_works(s, t1));
    assert_true(token_works(s, t2));
    static const char *const h[] = {"Authorization: Bearer " ADMIN, NULL};
    EXPECT(ht_request(s, "GET", "/debug/memory", h, NULL, 0, r), 200);
    char policy[32];
    assert_true(ht_jstr(r, "session_policy", policy, sizeof policy));
    assert_string_equal(policy, "refuse");
    ht_rmtree(conf_dir);
}

/* Runs wrk against the server for `seconds` in the background; output to a file. */
static pid_t wrk_start(const ht_server_t *s, const char *token, int seconds, const char *out)
{
    char url[128], auth[128], dur[16];
    snprintf(url, sizeof url, "http://%s/v1/auth", s->addr);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    snprintf(dur, sizeof dur, "%ds", seconds);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            _exit(127);
        execlp("wrk", "wrk", "-t2", "-c16", "-d", dur, "--timeout", "5s", "-H", auth, url,
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

/*
 * The claim docs/OPERATIONS.md makes, under its conditions: 16 connections from one address
 * (below --max-connections-per-ip, 64) at the default --max-requests-per-connection (1000, named
 * here so the condition is visible), so every connection is also closed and reopened many times
 * during the reloads — and wrk sees no socket error and no non-2xx answer. (At 64 connections a
 * reopen can race the per-address cap, which wrk counts as a read error; that is documented,
 * not tested here.)
 */
static void reload_under_wrk_load_drops_nothing(void **state)
{
    ht_server_t *s = SRV(state);
    if (system("command -v wrk >/dev/null 2>&1") != 0) {
        fprintf(stderr, "wrk is not installed (scripts/deps.sh installs it): skipped\n");
        skip();
    }
    START(s, "--max-requests-per-connection", "1000", "--max-connections-per-ip", "64");
    register_ok(s, "wes");
    char t1[64];
    login_ok(s, "wes", t1, NULL);
    char out[HT_PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/wrk.out", s->dir);
    pid_t wrk = wrk_start(s, t1, 6, out);
    assert_true(wrk > 0);
    ht_sleep_ms(1500);
    reload_by_signal(s);
    ht_sleep_ms(1500);
    reload_by_signal(s); /* the successor can hand over in turn */
    int st = wait_exit(wrk, 20000);
    char text[8192] = {0};
    int fd = open(out, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    assert_true(n > 0);
    fprintf(stderr, "%s", text);
    assert_int_equal(st, 0);
    /* wrk prints these lines only when something went wrong. */
    assert_null(strstr(text, "Socket errors"));
    assert_null(strstr(text, "Non-2xx"));
    const char *req = strstr(text, " requests in ");
    assert_non_null(req);
    while (req > text && req[-1] != '\n' && req[-1] != ' ')
        req--;
    assert_true(atol(req) > 1000);
    /* The cap was in play: on average each of the 16 connections was closed at 1000 requests
     * and reopened at least twice. (Below this on a very slow machine, the run proves less.) */
    if (atol(req) < 2 * 16 * 1000)
        fprintf(stderr, "only %ld requests: --max-requests-per-connection was barely exercised\n",
                atol(req));
    assert_true(token_works(s, t1));
    assert_true(metric(s, "gatehouse_sessions_active") == 1);
}

/* systemd socket activation: the socket comes as fd 3 with LISTEN_FDS=1 and LISTEN_PID. */
static void serves_on_a_socket_activated_listener(void **state)
{
    ht_server_t *s = SRV(state);
    char bin[HT_PATH_MAX];
    const char *gb = getenv("GATEHOUSE_BIN");
    assert_non_null(realpath(gb && *gb ? gb : "build/gatehouse", bin));
    assert_int_equal(ht_tempdir(s->dir), 0);
    s->owns_dir = true;
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 64), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
    char dir_flag[HT_PATH_MAX + 16];
    snprintf(dir_flag, sizeof dir_flag, "--data-dir=%s", s->dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int log = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (log < 0 || dup2(log, 2) < 0 || dup2(lfd, 3) < 0)
            _exit(127);
        char pidv[32];
        snprintf(pidv, sizeof pidv, "%ld", (long)getpid());
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", pidv, 1);
        /* --listen names another port: the activated socket wins. */
        execl(bin, bin, "serve", dir_flag, "--listen", "127.0.0.1:1", "--hash-memory", "8KiB",
              "--hash-ops", "1", (char *)NULL);
        _exit(127);
    }
    close(lfd);
    s->pid = pid;
    assert_true(ht_server_wait_log(s, "listening", 10000));
    char log[16384];
    ht_server_log(s, log, sizeof log);
    assert_non_null(strstr(log, "\"socket_activated\":true"));
    register_ok(s, "sam");
    char t1[64];
    login_ok(s, "sam", t1, NULL);
    assert_true(token_works(s, t1));
    /* A reload passes the activated socket on like any other. */
    reload_by_signal(s);
    assert_true(token_works(s, t1));
    assert_int_equal(ht_server_stop(s), 0);
}

/* ---- a full disk ---- */

/* The full-disk test's mount: a small tmpfs that is the node's --data-dir (the server log stays
 * outside it, in base). Unmounted by its teardown whatever happened. */
static char full_base[HT_PATH_MAX], full_mnt[HT_PATH_MAX + 8], full_fill[HT_PATH_MAX + 16];

static int teardown_full(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    if (full_mnt[0]) {
        if (umount2(full_mnt, MNT_DETACH) != 0)
            fprintf(stderr, "umount %s: %s\n", full_mnt, strerror(errno));
        full_mnt[0] = '\0';
    }
    if (full_base[0]) {
        const char *keep = getenv("GATEHOUSE_TEST_KEEP");
        if (keep && strcmp(keep, "1") == 0)
            fprintf(stderr, "kept %s\n", full_base);
        else
            ht_rmtree(full_base);
        full_base[0] = '\0';
    }
    free(f);
    return rc;
}

/* Writes zeros to `path` until the filesystem says ENOSPC; the bytes written. */
static long long fill_disk(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        fail_msg("open %s: %s", path, strerror(errno));
    static char zeros[4096];
    long long n = 0;
    for (;;) {
        ssize_t w = write(fd, zeros, sizeof zeros);
        if (w > 0) {
            n += w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != ENOSPC)
            fail_msg("write %s: %s", path, strerror(errno));
        break;
    }
    /* The last partial block too: a 1-byte write until that fails as well. */
    while (write(fd, zeros, 1) == 1)
        n++;
    close(fd);
    return n;
}

static long readyz(const ht_server_t *s)
{
    static ht_response_t r;
    return ht_get(s, "/readyz", NULL, &r);
}

static void start_on(ht_server_t *s, const char *data_dir)
{
    START(s, "--data-dir", data_dir);
}

/* Logins (of "cat") until one answers 503: the database's log cannot grow any more. */
static void logins_until_one_fails(const ht_server_t *s)
{
    long st = 0;
    for (int k = 0; k < 200 && (st = ht_login(s, "cat", PASSWORD, NULL, NULL)) == 201; k++)
        ;
    if (st != 503)
        fail_msg("logins on a full disk never failed (last %ld)", st);
}

#define NFULL 8

/*
 * The data dir on a real full filesystem (a 2 MiB tmpfs filled with dd-like writes). SQLite
 * can still commit small writes into WAL space it reuses after a checkpoint, so a logout may
 * succeed on a full disk — then it must be on disk (it is checked after the restarts). Logins
 * are driven until one fails (the WAL must grow), and then a logout must fail: 503, the
 * session still works, the retry while full is 503 again (never 401), /readyz is 503 and the
 * write gauges say so; after the space is freed /readyz comes back by itself and the retry
 * answers 204; after a kill -9 and after a clean stop, every 204'd logout stays logged out and
 * every other session still works.
 */
static void full_disk_logout_fails_whole_and_a_204_holds_across_restarts(void **state)
{
    ht_server_t *s = SRV(state);
    ht_response_t *r = RESP(state);
    if (ht_tempdir(full_base) != 0)
        fail_msg("no temp dir");
    snprintf(full_mnt, sizeof full_mnt, "%s/data", full_base);
    snprintf(full_fill, sizeof full_fill, "%s/fill", full_mnt);
    assert_int_equal(mkdir(full_mnt, 0700), 0);
    if (mount("gatehouse-test", full_mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") !=
        0) {
        int e = errno;
        full_mnt[0] = '\0';
        if (e == EPERM) {
            fprintf(stderr, "SKIPPED: mounting a tmpfs is not permitted here (run as root for "
                            "the full-disk test)\n");
            skip();
        }
        fail_msg("mount tmpfs: %s", strerror(e));
    }
    s->data_dir = full_base; /* the server log lives outside the full filesystem */
    start_on(s, full_mnt);
    register_ok(s, "ann");
    register_ok(s, "bob");
    register_ok(s, "cat"); /* whose logins fill the WAL (and hit her per-user cap) */
    char t[NFULL][64], b1[64], b2[64];
    for (int i = 0; i < NFULL; i++)
        login_ok(s, "ann", t[i], NULL);
    login_ok(s, "bob", b1, NULL);
    login_ok(s, "bob", b2, NULL);
    EXPECT(readyz(s), 200);
    assert_true(fill_disk(full_fill) > 0);

    bool out[NFULL] = {false}; /* logged out with a 204 */
    int failed = -1;
    for (int i = 0; i < NFULL && failed < 0; i++) {
        logins_until_one_fails(s);
        long d = ht_delete(s, "/v1/session", t[i], r);
        if (d == 204) {
            out[i] = true;
            assert_false(token_works(s, t[i]));
            continue;
        }
        if (d != 503)
            fail_msg("DELETE /v1/session on a full disk -> %ld, want 503 or 204", d);
        assert_string_equal(r->error_code, "store_unavailable");
        failed = i;
    }
    if (failed < 0)
        fail_msg("no logout failed on a full disk");
    /* Nothing was done: the session works, and a retry is answered the same way (not 401). */
    EXPECT(ht_get(s, "/v1/session", t[failed], r), 200);
    EXPECT(readyz(s), 503);
    assert_true(metric(s, "gatehouse_store_writable{store=\"sessions\"}") == 0);
    assert_true(metric(s, "gatehouse_store_write_failures_total{store=\"sessions\"}") >= 2);
    /* The watchdog raises store_writes_failing after 5 one-second samples of a failed last
     * write. A small write can succeed meanwhile (SQLite reuses log space it has checkpointed),
     * and then the store is writable again, rightly: keep logins coming, as traffic would. */
    const char *alert =
        "gatehouse_alert_firing{alert=\"store_writes_failing\",severity=\"critical\"}";
    long long until = ht_now_ms() + 30000;
    while (metric(s, alert) != 1 && ht_now_ms() < until) {
        if (metric(s, "gatehouse_store_writable{store=\"sessions\"}") == 1)
            logins_until_one_fails(s);
        ht_sleep_ms(200);
    }
    assert_true(metric(s, alert) == 1);
    EXPECT(ht_get(s, "/v1/session", t[failed], r), 200);
    logins_until_one_fails(s);
    long again = ht_delete(s, "/v1/session", t[failed], r);
    if (again != 503 && again != 204)
        fail_msg("the retry on a full disk -> %ld, want 503 (or 204)", again);
    /* A registration on the full disk: users.db cannot grow either (or it fits, and is kept). */
    long reg = ht_register(s, "dan", PASSWORD, NULL);
    if (reg != 503 && reg != 201)
        fail_msg("a registration on a full disk -> %ld, want 503 or 201", reg);
    if (reg == 503)
        assert_true(metric(s, "gatehouse_store_writable{store=\"users\"}") == 0);
    /* "Log out everywhere" on a full disk: all of bob's sessions end, or none. */
    long all = ht_delete(s, "/v1/sessions", b1, r);
    if (all == 204) {
        assert_false(token_works(s, b1));
        assert_false(token_works(s, b2));
    } else {
        if (all != 503)
            fail_msg("DELETE /v1/sessions on a full disk -> %ld, want 503 or 204", all);
        assert_true(token_works(s, b1));
        assert_true(token_works(s, b2));
    }

    print_message("on the full disk: logout %d of %d failed first, its retry %ld, registration "
                  "%ld, log out everywhere %ld\n",
                  failed + 1, NFULL, again, reg, all);
    /* Space again: /readyz recovers by itself (the store's probe write), and the retry works. */
    assert_int_equal(unlink(full_fill), 0);
    long long deadline = ht_now_ms() + 10000;
    while (readyz(s) != 200 && ht_now_ms() < deadline)
        ht_sleep_ms(50);
    EXPECT(readyz(s), 200);
    assert_true(metric(s, "gatehouse_store_writable{store=\"sessions\"}") == 1);
    assert_true(metric(s, "gatehouse_store_writable{store=\"users\"}") == 1);
    EXPECT(ht_register(s, "dan", PASSWORD, NULL), reg == 503 ? 201 : 409);
    if (again == 503) {
        EXPECT(ht_delete(s, "/v1/session", t[failed], r), 204);
    }
    out[failed] = true;
    assert_false(token_works(s, t[failed]));
    if (all == 503)
        EXPECT(ht_delete(s, "/v1/sessions", b1, r), 204);
    assert_false(token_works(s, b2));

    /* Every 204 holds after a kill -9, and after a clean stop; every other session works. */
    for (int round = 0; round < 2; round++) {
        int code = ht_server_stop_sig(s, round == 0 ? SIGKILL : SIGTERM);
        assert_int_equal(code, round == 0 ? 128 + SIGKILL : 0);
        start_on(s, full_mnt);
        for (int i = 0; i < NFULL; i++)
            if (token_works(s, t[i]) == out[i])
                fail_msg("after %s: session %d %s", round == 0 ? "kill -9" : "SIGTERM", i,
                         out[i] ? "was logged out (204) and works again" : "was lost");
        assert_false(token_works(s, b1));
        assert_false(token_works(s, b2));
        EXPECT(readyz(s), 200);
    }
}

int main(int argc, char **argv)
{
    /* Reloaded servers are grandchildren; make them ours when their parent exits. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(clean_restart_keeps_sessions_and_revocations),
        T(kill_9_keeps_sessions_and_a_revocation_made_just_before),
        T(evictions_stay_evicted_after_a_restart),
        T(expired_sessions_are_dropped_at_load),
        T(restarts_and_reloads_keep_each_sessions_client),
        T(reload_keeps_sessions_revocations_and_counts),
        T(reload_with_a_broken_config_keeps_the_old_node_serving),
        T(reload_under_wrk_load_drops_nothing),
        T(serves_on_a_socket_activated_listener),
        cmocka_unit_test_setup_teardown(
            full_disk_logout_fails_whole_and_a_204_holds_across_restarts, setup, teardown_full),
#undef T
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
