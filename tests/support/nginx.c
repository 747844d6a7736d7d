/*
 * nginx.c — a real nginx for tests (nginx.h). The forked PID is the server (master_process off),
 * so it is stopped by that PID and never by name.
 */
#include "nginx.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"
#include "servers.h"

/* Replaces the first `from` in buf (cap bytes) by `to`; false when absent or it does not fit. */
static bool replace(char *buf, size_t cap, const char *from, const char *to)
{
    char *p = strstr(buf, from);
    if (!p)
        return false;
    size_t fl = strlen(from), tl = strlen(to), rest = strlen(p + fl);
    if (strlen(buf) - fl + tl + 1 > cap)
        return false;
    memmove(p + tl, p + fl, rest + 1);
    memcpy(p, to, tl);
    return true;
}

static int write_configs(tn_nginx_t *n, const char *conf_path, const char *gatehouse_addr,
                         char *main_conf, size_t mlen, char *err_log, size_t elen)
{
    static char conf[65536];
    FILE *in = fopen(conf_path, "r");
    if (!in) {
        fprintf(stderr, "nginx: cannot read %s\n", conf_path);
        return -1;
    }
    size_t len = fread(conf, 1, sizeof conf - 1, in);
    fclose(in);
    conf[len] = '\0';
    char app_addr[64], listen[64];
    snprintf(app_addr, sizeof app_addr, "127.0.0.1:%d", n->app_port);
    snprintf(listen, sizeof listen, "listen 127.0.0.1:%d;", n->port);
    if (!replace(conf, sizeof conf, "127.0.0.1:8080", gatehouse_addr) ||
        !replace(conf, sizeof conf, "127.0.0.1:3000", app_addr) ||
        !replace(conf, sizeof conf, "listen 80;", listen)) {
        fprintf(stderr, "nginx: %s no longer has the lines the tests template\n", conf_path);
        return -1;
    }
    char path[TN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/gatehouse.conf", n->dir);
    FILE *out = fopen(path, "w");
    if (!out)
        return -1;
    if (fputs(conf, out) < 0) {
        fclose(out);
        return -1;
    }
    if (fclose(out) != 0)
        return -1;
    snprintf(main_conf, mlen, "%s/nginx.conf", n->dir);
    snprintf(err_log, elen, "%s/error.log", n->dir);
    out = fopen(main_conf, "w");
    if (!out)
        return -1;
    const char *d = n->dir;
    fprintf(out,
            "pid %s/nginx.pid;\nerror_log %s info;\ndaemon off;\nmaster_process off;\n"
            /* 512 clients (test_nginx.c) each hold a client connection, an upstream one to
             * gatehouse and two for the stand-in app (out and back in): room for all of them. */
            "worker_rlimit_nofile 10240;\nevents { worker_connections 4096; }\n"
            "http {\n  access_log %s/access.log;\n"
            "  client_body_temp_path %s/body; proxy_temp_path %s/proxy;\n"
            "  fastcgi_temp_path %s/fcgi; uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "  include %s;\n"
            "  server { listen 127.0.0.1:%d; location / { default_type text/plain;\n"
            "    return 200 \"app: user=[$http_x_auth_user] id=[$http_x_auth_user_id] "
            "uri=$request_uri\\n\"; } }\n}\n",
            d, err_log, d, d, d, d, d, d, path, n->app_port);
    return fclose(out) == 0 ? 0 : -1;
}

int tn_nginx_start(tn_nginx_t *n, const char *conf_path, const char *gatehouse_addr)
{
    n->pid = 0;
    n->port = ts_free_port();
    n->app_port = ts_free_port();
    if (n->port <= 0 || n->app_port <= 0 || n->port == n->app_port)
        return -1;
    snprintf(n->dir, sizeof n->dir, "%s/gh-nginx-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(n->dir)) {
        n->dir[0] = '\0';
        return -1;
    }
    char main_conf[TN_PATH_MAX + 64], err_log[TN_PATH_MAX + 64];
    if (write_configs(n, conf_path, gatehouse_addr, main_conf, sizeof main_conf, err_log,
                      sizeof err_log) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char *argv[] = {"nginx", "-e", err_log, "-p", n->dir, "-c", main_conf, NULL};
        execv("/usr/sbin/nginx", argv);
        execvp("nginx", argv);
        _exit(127);
    }
    n->pid = pid;
    int status = 0;
    int rc = ts_wait_listening(&n->pid, n->port, 200, &status);
    if (rc == 0)
        return 0;
    if (rc > 0) {
        fprintf(stderr, "nginx exited (status %d); see %s\n", status, err_log);
        return -1;
    }
    fprintf(stderr, "nginx did not listen on %d; see %s\n", n->port, err_log);
    tn_nginx_cleanup(n);
    return -1;
}

void tn_nginx_cleanup(tn_nginx_t *n)
{
    ts_stop_pid(&n->pid, SIGQUIT, 100);
    if (n->dir[0] && !getenv("GATEHOUSE_TEST_KEEP"))
        ts_rmtree(n->dir);
    n->dir[0] = '\0';
}
