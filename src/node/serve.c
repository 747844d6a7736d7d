/*
 * serve.c — `gatehouse serve`: reads the configuration, starts a node (node.c), takes over from a
 * predecessor when started by a reload, says READY to systemd, then waits for a signal: SIGHUP
 * hands over to a successor (reload.c), SIGTERM/SIGINT stop in order (stop accepting, finish
 * in-flight requests, close everything, exit 0).
 *
 * Signals are taken with sigwait on the main thread (blocked everywhere else), so no handler
 * runs at an arbitrary point of another thread.
 */
#include "node/node.h"

#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/version.h"

#define DRAIN_MS 10000

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

int gh_serve_main(int argc, char **argv)
{
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

    /* Every thread started from here on inherits the blocked set; main takes them by sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    gh_node_t *node = NULL;
    gh_node_opts_t opts = {.listen_fd = inh.listen_fd, .successor = inh.handover_fd >= 0};
    rc = gh_node_start_ex(&cfg, &opts, &node);
    sodium_memzero(cfg.admin_token, sizeof cfg.admin_token);
    if (rc != 0)
        return rc == GH_EINVAL ? 2 : 1;
    if (inh.handover_fd >= 0 && (rc = gh_reload_successor(node, inh.handover_fd)) != 0) {
        gh_node_stop(&node, 0);
        return 1;
    }
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
