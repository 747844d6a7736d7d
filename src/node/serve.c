/*
 * serve.c — `gatehouse serve`: reads the configuration, starts a node (node.c), takes over from a
 * predecessor when started by a reload, says READY to systemd, then waits for a signal: SIGHUP
 * hands over to a successor (reload.c), SIGTERM/SIGINT stop in order (stop accepting, finish
 * in-flight requests, close everything, exit 0).
 *
 * Signals are taken with sigwait on the main thread (blocked everywhere else), so no handler
 * runs at an arbitrary point of another thread. They are blocked first thing, before anything
 * can take time, and the node starts on a thread of its own while the main thread already waits
 * for them: a stop sent at any moment of start-up (loading a million persisted sessions,
 * computing the dummy hash at a high cost) is acted on at once.
 */
#include "node/node.h"

#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/stop.h"
#include "common/version.h"

#define DRAIN_MS 10000
/* After a stop during start-up, how long the start-up may take to notice it and give up. A step
 * that cannot be interrupted (one argon2id hash at a very high cost) is left behind after this:
 * the process exits without it, and nothing was served or written that needs it. */
#define STARTUP_STOP_GRACE_MS 2000
/* File descriptors a node needs besides its connections: stores, the pool's epoll and wake-up
 * descriptors for each HTTP thread, logs, databases, the watchdog. */
#define FD_RESERVE 64
#define FD_PER_THREAD 4

static size_t fmt_bytes(uint64_t b, char *out, size_t n)
{
    return (size_t)snprintf(out, n, "%.1fMiB", (double)b / (1024.0 * 1024.0));
}

static uint64_t active_sessions(gh_node_t *n)
{
    gh_session_stats_t st;
    gh_session_stats(gh_node_app(n)->sessions, &st);
    return st.active;
}

/* Raises the soft limit on open files to the hard one, and warns, naming the flags, when it is
 * still below what --max-connections needs: otherwise the first sign is libmicrohttpd failing
 * to accept under load. */
static void raise_fd_limit(const gh_config_t *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t before = rl.rlim_cur;
    if (rl.rlim_cur != rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = before;
    }
    uint64_t need =
        (uint64_t)cfg->max_connections + FD_RESERVE + (uint64_t)cfg->http_threads * FD_PER_THREAD;
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < need)
        GH_LOG(GH_LOG_WARN,
               "the open-file limit is below what --max-connections needs: raise the hard "
               "limit (ulimit -n, systemd LimitNOFILE=) or lower --max-connections",
               GH_LI("nofile_limit", (uint64_t)rl.rlim_cur), GH_LI("nofile_needed", need),
               GH_LI("max_connections", cfg->max_connections),
               GH_LI("http_threads", cfg->http_threads));
    else if (rl.rlim_cur != before)
        GH_LOG(GH_LOG_DEBUG, "open-file limit raised", GH_LI("from", (uint64_t)before),
               GH_LI("to", (uint64_t)rl.rlim_cur));
}

/* The start-up, on a thread of its own: the node, and a reload's takeover. */
typedef struct {
    const gh_config_t *cfg;
    const gh_inherited_t *inh;
    pthread_t waiter; /* told (SIGUSR1) when start-up is over */
    gh_node_t *node;  /* the started node, NULL when start-up failed */
    int rc;           /* exit status of start-up: 0, 1 or 2 */
    atomic_bool done;
} starter_t;

static void *starter_main(void *arg)
{
    starter_t *st = arg;
    gh_node_opts_t opts = {.listen_fd = st->inh->listen_fd, .successor = st->inh->handover_fd >= 0};
    int rc = gh_node_start_ex(st->cfg, &opts, &st->node);
    if (rc != 0)
        st->rc = rc == GH_EINVAL ? 2 : 1;
    else if (st->inh->handover_fd >= 0 &&
             gh_reload_successor(st->node, st->inh->handover_fd) != 0) {
        gh_node_stop(&st->node, 0);
        st->rc = 1;
    }
    atomic_store(&st->done, true);
    pthread_kill(st->waiter, SIGUSR1);
    return NULL;
}

/* Waits for the start-up, taking SIGTERM and SIGINT meanwhile. Returns the signal that asked
 * for a stop (0: none) and leaves *st as the starter left it, or exits the process when the
 * start-up did not give up within STARTUP_STOP_GRACE_MS of a stop. */
static int await_start(starter_t *st, pthread_t thread)
{
    sigset_t wait;
    sigemptyset(&wait);
    sigaddset(&wait, SIGTERM);
    sigaddset(&wait, SIGINT);
    sigaddset(&wait, SIGUSR1);
    int stop_sig = 0;
    int64_t deadline = 0;
    while (!atomic_load(&st->done)) {
        int sig;
        if (stop_sig == 0) {
            sig = sigwaitinfo(&wait, NULL);
        } else {
            struct timespec ts = {0, 50 * 1000000L};
            sig = sigtimedwait(&wait, NULL, &ts);
            if (gh_clock_mono_ns() / 1000000 >= deadline && !atomic_load(&st->done)) {
                GH_LOG(GH_LOG_WARN, "stopped during start-up; a start-up step did not end in time",
                       GH_LI("grace_ms", STARTUP_STOP_GRACE_MS));
                _exit(0);
            }
        }
        if ((sig == SIGTERM || sig == SIGINT) && stop_sig == 0) {
            stop_sig = sig;
            gh_stop_request();
            deadline = gh_clock_mono_ns() / 1000000 + STARTUP_STOP_GRACE_MS;
            GH_LOG(GH_LOG_INFO, "stopping during start-up",
                   GH_LS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        }
    }
    pthread_join(thread, NULL);
    return stop_sig;
}

int gh_serve_main(int argc, char **argv)
{
    /* First of all, before anything can take time: SIGTERM, SIGINT and SIGHUP are taken by
     * sigwait on this thread and blocked in every thread started from here on. Their
     * dispositions are reset first: one ignored by whoever started us (SIG_IGN is inherited
     * across exec) would be discarded even while blocked, and the stop never seen. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigset_t blocked = sigs;
    sigaddset(&blocked, SIGUSR1); /* the starter's "done" */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    signal(SIGPIPE, SIG_IGN);

    gh_config_t cfg;
    char err[512];
    gh_inherited_t inh;
    gh_reload_init(argc, argv);
    gh_notify_init();
    gh_reload_inherited(&inh); /* before anything can fail: the fds must not leak on */
    int rc = gh_config_load(&cfg, argc, argv, stdout, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        /* In a reload this line lands in the predecessor's log, which serves on. */
        fprintf(stderr, "gatehouse: %s\n", err);
        return 2;
    }
    gh_log_setup(cfg.log_format, cfg.log_level);
    raise_fd_limit(&cfg);

    starter_t st = {.cfg = &cfg, .inh = &inh, .waiter = pthread_self()};
    pthread_t starter;
    if (pthread_create(&starter, NULL, starter_main, &st) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot start the node's start-up thread");
        return 1;
    }
    int stop_sig = await_start(&st, starter);
    sodium_memzero(cfg.admin_token, sizeof cfg.admin_token);
    gh_node_t *node = st.node;
    if (stop_sig != 0) {
        /* Nothing was announced yet: no READY, no pid file. */
        gh_node_stop(&node, DRAIN_MS);
        GH_LOG(GH_LOG_INFO, "stopped");
        return 0;
    }
    if (!node)
        return st.rc;
    if (gh_reload_pidfile_write(cfg.data_dir) != 0)
        GH_LOG(GH_LOG_WARN, "cannot write the pid file; `gatehouse reload` will not find us",
               GH_LS("data_dir", cfg.data_dir));

    char addr[GH_CONFIG_STR + 16], limit[32], budget[32];
    bool v6 = strchr(cfg.listen_host, ':') != NULL;
    snprintf(addr, sizeof addr, v6 ? "[%s]:%u" : "%s:%u", cfg.listen_host, gh_node_port(node));
    if (inh.listen_fd >= 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char host[64];
        if (getsockname(inh.listen_fd, (struct sockaddr *)&ss, &sl) == 0 &&
            getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, NULL, 0, NI_NUMERICHOST) ==
                0)
            snprintf(addr, sizeof addr, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host,
                     gh_node_port(node));
    }
    fmt_bytes(cfg.memory_limit, limit, sizeof limit);
    fmt_bytes(cfg.session_memory, budget, sizeof budget);
    GH_LOG(
        GH_LOG_INFO, "listening", GH_LS("addr", addr), GH_LS("version", GH_VERSION),
        GH_LS("data_dir", cfg.data_dir), GH_LS("memory_limit", limit),
        GH_LS("session_budget", budget),
        GH_LS("session_policy", cfg.session_policy == GH_POLICY_REFUSE ? "refuse" : "evict-idle"),
        GH_LI("http_threads", cfg.http_threads), GH_LI("hash_workers", cfg.hash_workers),
        GH_LI("sessions", active_sessions(node)), GH_LB("socket_activated", inh.activated),
        GH_LB("reloaded", inh.handover_fd >= 0));
    char ready[64];
    snprintf(ready, sizeof ready, "MAINPID=%ld\nREADY=1", (long)getpid());
    (void)gh_notify(ready);

    bool handed_over = false;
    for (;;) {
        int sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (gh_reload_handover(node)) {
                handed_over = true;
                break;
            }
            continue;
        }
        (void)gh_notify("STOPPING=1");
        GH_LOG(GH_LOG_INFO, "stopping", GH_LS("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
               GH_LI("inflight", gh_node_inflight(node)));
        break;
    }
    gh_node_stop(&node, DRAIN_MS);
    /* After a handover the pid file names the successor, and stays. */
    if (!handed_over)
        gh_reload_pidfile_remove(cfg.data_dir);
    GH_LOG(GH_LOG_INFO, handed_over ? "stopped after handing over" : "stopped");
    return 0;
}
