/*
 * reload.c — replacing the running process without closing the listening socket and without
 * losing a session: SIGHUP (or `gatehouse reload`), systemd socket activation, the pid file.
 *
 * The one design decision: the new process (the successor) is started beside the old one (the
 * predecessor) and the two hand over in three steps over a socketpair, so that no connection is
 * refused, no request fails, and the session database has exactly one writer at every moment:
 *
 *   predecessor                                   successor (fork + exec of the same binary)
 *   flush last-seen, start logging ends
 *   fork+exec with the listening socket as fd 3 ──▶ re-reads the config (bad: exits, and the
 *                                                   predecessor serves on), opens the stores,
 *                                                   loads a snapshot of sessions.db (read only)
 *                                          ◀── 'L'
 *   stop accepting (the socket stays open: new
 *   connections wait in its queue), answer what
 *   is in flight with Connection: close, final
 *   flush, write nothing more
 *   'G' ──────────────────────────────────────────▶ take over: apply creates and ends made since
 *                                                   the snapshot, accept on the socket
 *                                          ◀── 'R'  (pid file, MAINPID+READY to systemd)
 *   exit 0
 *
 * The only time nobody accepts is from 'G' to accepting (the catch-up of a few rows), and the
 * kernel queues connections meanwhile. If the successor dies before 'L', the predecessor never
 * stopped; if it dies after 'G', the predecessor takes its own socket and the database back.
 * Between fork and exec the child only calls async-signal-safe functions: everything it needs
 * (argv, environment) is built before the fork.
 */
#include "node/node.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

extern char **environ;

#define LOAD_TIMEOUT_MS 300000 /* a successor loading a very large store */
#define READY_TIMEOUT_MS 60000
#define HANDOFF_DRAIN_MS 10000
#define MAX_ARGS 256
#define LISTEN_FD 3 /* where both systemd and we put the listening socket */
#define HANDOVER_FD 4
#define PIDFILE "gatehouse.pid"
#define FAILFILE "gatehouse.reload-failed"

static char exe_path[PATH_MAX];
static int saved_argc;
static char **saved_argv;

void gh_reload_init(int argc, char **argv)
{
    /* Resolved now, while the path names the running binary: an upgrade replaces the file,
     * and a reload then runs the new one from the same path. */
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    saved_argc = argc;
    saved_argv = argv;
}

static int parse_fd(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 0 && v < INT_MAX ? (int)v : -1;
}

static bool is_listening_socket(int fd)
{
    int yes = 0;
    socklen_t len = sizeof yes;
    return fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &yes, &len) == 0 && yes;
}

void gh_reload_inherited(gh_inherited_t *out)
{
    *out = (gh_inherited_t){.listen_fd = -1, .handover_fd = -1};
    int lfd = parse_fd(getenv("GATEHOUSE_LISTEN_FD"));
    int hfd = parse_fd(getenv("GATEHOUSE_RELOAD_FD"));
    const char *lpid = getenv("LISTEN_PID"), *lfds = getenv("LISTEN_FDS");
    if (lfd < 0 && lpid && lfds && parse_fd(lpid) == (int)getpid() && parse_fd(lfds) >= 1) {
        /* systemd socket activation (sd_listen_fds(3)): the first socket is ours. */
        lfd = LISTEN_FD;
        out->activated = true;
    }
    if (lfd >= 0 && is_listening_socket(lfd)) {
        (void)fcntl(lfd, F_SETFD, FD_CLOEXEC);
        out->listen_fd = lfd;
    }
    if (hfd >= 0 && fcntl(hfd, F_SETFD, FD_CLOEXEC) == 0)
        out->handover_fd = hfd;
    unsetenv("GATEHOUSE_LISTEN_FD");
    unsetenv("GATEHOUSE_RELOAD_FD");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

/* ---- files in the data dir ---- */

static int data_path(char *out, size_t len, const char *dir, const char *name)
{
    return snprintf(out, len, "%s/%s", dir, name) < (int)len ? 0 : GH_EINVAL;
}

int gh_reload_pidfile_write(const char *data_dir)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], line[32];
    if (data_path(path, sizeof path, data_dir, PIDFILE) != 0)
        return GH_EINVAL;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return GH_EIO;
    int n = snprintf(line, sizeof line, "%ld\n", (long)getpid());
    bool ok = write(fd, line, (size_t)n) == n;
    ok = close(fd) == 0 && ok;
    /* rename: a reader sees the old pid or the new one, never half a file. */
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return GH_EIO;
    }
    return 0;
}

static pid_t pidfile_read(const char *data_dir)
{
    char path[PATH_MAX], buf[32];
    if (data_path(path, sizeof path, data_dir, PIDFILE) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    int v = parse_fd(buf);
    return v > 0 ? (pid_t)v : -1;
}

void gh_reload_pidfile_remove(const char *data_dir)
{
    char path[PATH_MAX];
    if (pidfile_read(data_dir) == getpid() && data_path(path, sizeof path, data_dir, PIDFILE) == 0)
        unlink(path);
}

/* Why the last reload failed, for `gatehouse reload` (NULL: clear it). */
static void failfile_write(const char *data_dir, const char *why)
{
    char path[PATH_MAX];
    if (data_path(path, sizeof path, data_dir, FAILFILE) != 0)
        return;
    if (!why) {
        unlink(path);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, why, strlen(why)) < 0 || write(fd, "\n", 1) < 0) {
        /* nothing more to do: the log has the reason too */
    }
    close(fd);
}

/* ---- the handover channel ---- */

/* Waits for one byte; returns it, 0 on EOF or error, -1 on timeout. */
static int read_byte(int fd, int timeout_ms)
{
    int64_t deadline = gh_clock_mono_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int64_t left = (deadline - gh_clock_mono_ns()) / 1000000;
        if (timeout_ms >= 0 && left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, timeout_ms < 0 ? -1 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return -1;
        unsigned char c;
        ssize_t n = r > 0 ? read(fd, &c, 1) : -1;
        if (n < 0 && errno == EINTR)
            continue;
        return n == 1 ? c : 0;
    }
}

static bool write_byte(int fd, char c)
{
    ssize_t n;
    do
        n = send(fd, &c, 1, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == 1;
}

/* ---- predecessor ---- */

/* Whether this node's sessions live in sessions.db (the memory store with persistence). With
 * Redis there is nothing to hand over: both processes see the same sessions there. */
static bool persisted(gh_app_t *app)
{
    return gh_session_handover_needed(app->sessions);
}

/* The successor's environment: ours without what described our own start, plus the fds.
 * Built before the fork (the child may not allocate). Returns a gh_mem array of pointers into
 * environ and into `extra`, or NULL. */
static char **successor_env(char extra[3][64])
{
    static const char *const drop[] = {
        "GATEHOUSE_LISTEN_FD=", "GATEHOUSE_RELOAD_FD=", "GATEHOUSE_WATCHDOG_USEC=",
        "LISTEN_PID=",          "LISTEN_FDS=",          "LISTEN_FDNAMES=",
        "WATCHDOG_USEC=",       "WATCHDOG_PID="};
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = gh_mem_calloc(GH_MEM_OTHER, n + 4, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool keep = true;
        for (size_t d = 0; d < sizeof drop / sizeof drop[0]; d++)
            keep = keep && strncmp(environ[i], drop[d], strlen(drop[d])) != 0;
        if (keep)
            envp[k++] = environ[i];
    }
    snprintf(extra[0], 64, "GATEHOUSE_LISTEN_FD=%d", LISTEN_FD);
    snprintf(extra[1], 64, "GATEHOUSE_RELOAD_FD=%d", HANDOVER_FD);
    envp[k++] = extra[0];
    envp[k++] = extra[1];
    uint64_t wd = gh_notify_watchdog_usec();
    if (wd) {
        /* systemd named our pid in WATCHDOG_PID; the successor's pid is not known yet. */
        snprintf(extra[2], 64, "GATEHOUSE_WATCHDOG_USEC=%llu", (unsigned long long)wd);
        envp[k++] = extra[2];
    }
    envp[k] = NULL;
    return envp;
}

/* Reaps a successor that failed, killing it first if it still runs. Returns a text for logs. */
static void reap(pid_t pid, char *why, size_t len)
{
    int st = 0;
    pid_t w = waitpid(pid, &st, WNOHANG);
    if (w == 0) {
        kill(pid, SIGKILL);
        w = waitpid(pid, &st, 0);
        snprintf(why, len, "the new process did not answer in time (killed)");
        return;
    }
    if (w == pid && WIFEXITED(st))
        snprintf(why, len, "the new process exited with status %d (its reason is logged above)",
                 WEXITSTATUS(st));
    else if (w == pid && WIFSIGNALED(st))
        snprintf(why, len, "the new process was killed by signal %d", WTERMSIG(st));
    else
        snprintf(why, len, "the new process went away");
}

static void reload_failed(gh_node_t *node, const char *why)
{
    gh_app_t *app = gh_node_app(node);
    GH_LOG(GH_LOG_ERROR, "reload failed; this process serves on", GH_LS("reason", why));
    failfile_write(app->cfg.data_dir, why);
    (void)gh_notify("READY=1");
}

bool gh_reload_handover(gh_node_t *node)
{
    gh_app_t *app = gh_node_app(node);
    int64_t t0 = gh_clock_mono_ns();
    char why[256], extra[3][64], state[64];
    int sv[2] = {-1, -1};
    char **envp = NULL;
    const char *argv[MAX_ARGS + 2];

    snprintf(state, sizeof state, "RELOADING=1\nMONOTONIC_USEC=%lld",
             (long long)(gh_clock_mono_ns() / 1000));
    (void)gh_notify(state);
    GH_LOG(GH_LOG_INFO, "reloading", GH_LS("binary", exe_path));
    failfile_write(app->cfg.data_dir, NULL);
    if (!exe_path[0] || saved_argc < 1 || saved_argc > MAX_ARGS) {
        reload_failed(node, "cannot name the binary to run");
        return false;
    }
    argv[0] = exe_path;
    for (int i = 0; i < saved_argc; i++)
        argv[i + 1] = saved_argv[i];
    argv[saved_argc + 1] = NULL;
    if (!(envp = successor_env(extra))) {
        reload_failed(node, "out of memory");
        return false;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        gh_mem_free(GH_MEM_OTHER, envp);
        reload_failed(node, "cannot make the handover channel");
        return false;
    }
    if (persisted(app) && gh_session_handover(app->sessions, GH_HANDOVER_BEGIN, NULL) != 0) {
        close(sv[0]);
        close(sv[1]);
        gh_mem_free(GH_MEM_OTHER, envp);
        reload_failed(node, "cannot flush the session database");
        return false;
    }
    int lfd = gh_node_listen_fd(node);
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: async-signal-safe calls only. Move both fds above 4 first so the dup2s below
         * cannot clobber one with the other; dup2 clears close-on-exec on the copies. */
        int l = fcntl(lfd, F_DUPFD, 10), c = fcntl(sv[1], F_DUPFD, 10);
        if (l < 0 || c < 0 || dup2(l, LISTEN_FD) < 0 || dup2(c, HANDOVER_FD) < 0)
            _exit(127);
        execve(exe_path, (char *const *)argv, envp);
        _exit(127);
    }
    close(sv[1]);
    gh_mem_free(GH_MEM_OTHER, envp);
    if (pid < 0) {
        close(sv[0]);
        if (persisted(app))
            gh_session_handover_abort(app->sessions);
        reload_failed(node, "cannot start a new process");
        return false;
    }

    /* Step 1: the successor has its config, its stores and a snapshot of the sessions. Until
     * then nothing here has changed: on failure this process simply serves on. */
    if (read_byte(sv[0], LOAD_TIMEOUT_MS) != 'L') {
        close(sv[0]);
        reap(pid, why, sizeof why);
        if (persisted(app))
            gh_session_handover_abort(app->sessions);
        reload_failed(node, why);
        return false;
    }
    /* Step 2: stop accepting and finish what is in flight; then nothing more is written. */
    int64_t t1 = gh_clock_mono_ns();
    gh_node_handoff(node, HANDOFF_DRAIN_MS);
    if (persisted(app) && gh_session_handover(app->sessions, GH_HANDOVER_DETACH, NULL) != 0)
        GH_LOG(GH_LOG_WARN, "final flush of session times failed",
               GH_LS("effect", "some sessions may idle out a little early"));
    int64_t t2 = gh_clock_mono_ns();
    if (!write_byte(sv[0], 'G') || read_byte(sv[0], READY_TIMEOUT_MS) != 'R') {
        close(sv[0]);
        reap(pid, why, sizeof why);
        /* Take everything back: the database (the successor committed nothing, or only what
         * it would have to redo) and the socket, which never closed. */
        if (persisted(app))
            gh_session_handover_abort(app->sessions);
        if (gh_node_serve(node) != 0) {
            GH_LOG(GH_LOG_ERROR, "reload failed and serving again failed too: exiting",
                   GH_LS("reason", why));
            return true; /* nothing serves here any more; stop cleanly */
        }
        reload_failed(node, why);
        return false;
    }
    close(sv[0]);
    GH_LOG(GH_LOG_INFO, "handed over", GH_LI("successor_pid", pid),
           GH_LD("load_s", (double)(t1 - t0) / 1e9), GH_LD("drain_s", (double)(t2 - t1) / 1e9),
           GH_LD("not_accepting_s", (double)(gh_clock_mono_ns() - t1) / 1e9));
    return true;
}

/* ---- successor ---- */

int gh_reload_successor(gh_node_t *node, int handover_fd)
{
    gh_app_t *app = gh_node_app(node);
    int rc = GH_EIO;
    if (!write_byte(handover_fd, 'L'))
        goto out;
    /* 'G', or the predecessor is gone (EOF): either way it writes nothing more. */
    int c = read_byte(handover_fd, -1);
    if (c != 'G' && c != 0)
        goto out;
    gh_session_load_stats_t st = {0};
    if (persisted(app) &&
        (rc = gh_session_handover(app->sessions, GH_HANDOVER_TAKEOVER, &st)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot take the session database over",
               GH_LS("error", gh_strerror(rc)));
        goto out;
    }
    if (app->grants && (rc = gh_grant_takeover(app->grants)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot take the grant database over",
               GH_LS("error", gh_strerror(rc)));
        goto out;
    }
    GH_LOG(GH_LOG_INFO, "took over", GH_LI("created_since_snapshot", st.loaded),
           GH_LI("ended_since_snapshot", st.ended), GH_LI("expired", st.expired),
           GH_LI("duration_ms", st.duration_ms));
    if ((rc = gh_node_serve(node)) != 0)
        goto out;
    if (gh_reload_pidfile_write(app->cfg.data_dir) != 0)
        GH_LOG(GH_LOG_WARN, "cannot write the pid file", GH_LS("data_dir", app->cfg.data_dir));
    (void)write_byte(handover_fd, 'R'); /* a predecessor already gone needs no answer */
    rc = 0;
out:
    close(handover_fd);
    return rc;
}

/* ---- `gatehouse reload` ---- */

int gh_reload_cmd_main(int argc, char **argv)
{
    gh_config_t cfg;
    char err[512], path[PATH_MAX];
    /* Same flags, environment and file as serve: it finds the same data dir, and a config
     * that would not load is refused here before the node is disturbed. */
    int rc = gh_config_load(&cfg, argc, argv, stdout, err, sizeof err);
    sodium_memzero(cfg.admin_token, sizeof cfg.admin_token);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s\n", err);
        return 2;
    }
    pid_t pid = pidfile_read(cfg.data_dir);
    if (pid <= 0 || kill(pid, 0) != 0) {
        fprintf(stderr, "gatehouse: no running node found through %s/%s\n", cfg.data_dir, PIDFILE);
        return 1;
    }
    if (data_path(path, sizeof path, cfg.data_dir, FAILFILE) == 0)
        unlink(path);
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "gatehouse: cannot signal pid %ld: %s\n", (long)pid, strerror(errno));
        return 1;
    }
    int64_t deadline = gh_clock_mono_ns() + (int64_t)(LOAD_TIMEOUT_MS + READY_TIMEOUT_MS) * 1000000;
    while (gh_clock_mono_ns() < deadline) {
        pid_t now = pidfile_read(cfg.data_dir);
        if (now > 0 && now != pid && kill(now, 0) == 0) {
            printf("gatehouse: reloaded (pid %ld -> %ld)\n", (long)pid, (long)now);
            return 0;
        }
        char why[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, why, sizeof why - 1);
            close(fd);
            why[n > 0 ? n : 0] = '\0';
            why[strcspn(why, "\n")] = '\0';
            fprintf(stderr, "gatehouse: reload failed, pid %ld serves on: %s\n", (long)pid, why);
            return 1;
        }
        if (kill(pid, 0) != 0 && now == pid) {
            fprintf(stderr, "gatehouse: pid %ld exited during the reload\n", (long)pid);
            return 1;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "gatehouse: the reload did not finish in time; see the node's log\n");
    return 1;
}
