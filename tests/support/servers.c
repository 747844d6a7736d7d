/*
 * servers.c — starts and stops real redis-server and PostgreSQL for tests (see servers.h): free
 * loopback ports, temp dirs, PIDs, and PostgreSQL as `nobody` when the test runs as root.
 */
#include "servers.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 20000

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int ts_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The unprivileged account servers run as when we are root; NULL when we are not root. */
static const struct passwd *drop_user(void)
{
    if (geteuid() != 0)
        return NULL;
    return getpwnam("nobody");
}

static void print_log_tail(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "---- %s ----\n%s\n----\n", path, buf);
}

/* fork + (drop privileges) + exec argv with stdout and stderr appended to log. */
static pid_t spawn(char *const argv[], const char *log)
{
    const struct passwd *pw = drop_user();
    uid_t uid = pw ? pw->pw_uid : 0;
    gid_t gid = pw ? pw->pw_gid : 0;
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || null < 0)
        _exit(126);
    dup2(null, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (pw && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
        _exit(126);
    /* After the setuid: a change of credentials clears the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(126);
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int wait_exit(pid_t pid, long long timeout_ms, int *status)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() > deadline)
            return 1;
        sleep_ms(10);
    }
}

static bool alive(pid_t pid)
{
    int status;
    return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

/* ---- PostgreSQL binaries ---- */

static int pg_bindir(char *out, size_t len)
{
    FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
    if (p) {
        char line[TS_PATH_MAX] = "";
        bool got = fgets(line, sizeof line, p) != NULL;
        pclose(p);
        line[strcspn(line, "\n")] = '\0';
        char probe[TS_PATH_MAX + 16];
        snprintf(probe, sizeof probe, "%s/initdb", line);
        if (got && access(probe, X_OK) == 0) {
            snprintf(out, len, "%s", line);
            return 0;
        }
    }
    /* Debian: /usr/lib/postgresql/<major>/bin; take the newest major version. */
    DIR *d = opendir("/usr/lib/postgresql");
    int best = -1;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            int v = atoi(e->d_name);
            char probe[TS_PATH_MAX];
            snprintf(probe, sizeof probe, "/usr/lib/postgresql/%d/bin/initdb", v);
            if (v > best && access(probe, X_OK) == 0)
                best = v;
        }
        closedir(d);
    }
    if (best < 0) {
        fprintf(stderr, "servers: no PostgreSQL server binaries (install postgresql)\n");
        return -1;
    }
    snprintf(out, len, "/usr/lib/postgresql/%d/bin", best);
    return 0;
}

static bool pg_ready(const ts_server_t *s)
{
    char conn[160];
    snprintf(conn, sizeof conn, "host=127.0.0.1 port=%d user=gatehouse dbname=postgres", s->port);
    return PQping(conn) == PQPING_OK;
}

static int pg_initdb(ts_server_t *s)
{
    char bindir[TS_PATH_MAX], initdb[TS_PATH_MAX + 16], data[TS_PATH_MAX + 8];
    if (pg_bindir(bindir, sizeof bindir) != 0)
        return -1;
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(data, sizeof data, "%s/data", s->dir);
    char *argv[] = {initdb,      "-D",
                    data,        "-U",
                    "gatehouse", "-A",
                    "trust",     "-E",
                    "UTF8",      "--locale=C.UTF-8",
                    "--no-sync", "--no-instructions",
                    NULL};
    pid_t pid = spawn(argv, s->log_path);
    int status = 0;
    if (pid < 0 || wait_exit(pid, 120000, &status) != 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "servers: initdb failed\n");
        print_log_tail(s->log_path);
        return -1;
    }
    return 0;
}

static pid_t pg_spawn(ts_server_t *s)
{
    char bindir[TS_PATH_MAX], postgres[TS_PATH_MAX + 16], data[TS_PATH_MAX + 8], port[16];
    if (pg_bindir(bindir, sizeof bindir) != 0)
        return -1;
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(port, sizeof port, "%d", s->port);
    /* Durability is not what these tests are about: no fsync keeps CREATE DATABASE fast. */
    char *argv[] = {postgres,
                    "-D",
                    data,
                    "-p",
                    port,
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=16MB",
                    "-c",
                    "max_connections=200",
                    NULL};
    return spawn(argv, s->log_path);
}

/* ---- Redis ---- */

static int redis_roundtrip(int port, const char *cmd, char *reply, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[512];
    int ret = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto out;
    int n = snprintf(buf, sizeof buf, "%s\r\n", cmd);
    if (write(fd, buf, (size_t)n) != n)
        goto out;
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (memchr(buf, '\n', got))
            break;
    }
    buf[got] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (got == 0)
        goto out;
    if (reply)
        snprintf(reply, len, "%s", buf);
    ret = buf[0] == '-' ? -1 : 0;
out:
    close(fd);
    return ret;
}

int ts_redis_array(const ts_server_t *s, const char *cmd, char *out, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[1024];
    int ret = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        goto out;
    int n = snprintf(buf, sizeof buf, "%s\r\n", cmd);
    if (write(fd, buf, (size_t)n) != n)
        goto out;
    /* "*N\r\n" then N bulk strings of two lines each: read until that many lines came */
    size_t got = 0;
    int want = -1, lines = 0;
    while (got < sizeof buf - 1 && (want < 0 || lines < want)) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0)
            goto out;
        got += (size_t)r;
        buf[got] = '\0';
        if (buf[0] != '*')
            goto out;
        want = 1 + 2 * atoi(buf + 1);
        lines = 0;
        for (const char *p = buf; (p = strstr(p, "\r\n")); p += 2)
            lines++;
    }
    size_t o = 0;
    out[0] = '\0';
    const char *p = strstr(buf, "\r\n");
    for (int i = 0; p && i < (want - 1) / 2; i++) {
        p = strstr(p + 2, "\r\n"); /* past "$len" */
        if (!p)
            break;
        const char *e = strstr(p + 2, "\r\n");
        if (!e)
            break;
        o += (size_t)snprintf(out + o, o < len ? len - o : 0, "%s%.*s", i ? " " : "",
                              (int)(e - p - 2), p + 2);
        p = e;
    }
    ret = 0;
out:
    close(fd);
    return ret;
}

int ts_redis_cmd(const ts_server_t *s, const char *cmd, char *reply, size_t len)
{
    return redis_roundtrip(s->port, cmd, reply, len);
}

static pid_t redis_spawn(ts_server_t *s)
{
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    char *argv[] = {"redis-server",
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    s->dir,
                    "--save",
                    "",
                    "--appendonly",
                    s->persist ? "yes" : "no",
                    "--appendfsync",
                    "everysec",
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                    "--repl-diskless-sync-delay", /* a replica syncs at once, not in 5 s */
                    "0",
                    NULL,
                    NULL,
                    NULL,
                    NULL};
    char master[16];
    if (s->replica_of > 0) {
        snprintf(master, sizeof master, "%d", s->replica_of);
        size_t n = sizeof argv / sizeof *argv - 4;
        argv[n] = "--replicaof";
        argv[n + 1] = "127.0.0.1";
        argv[n + 2] = master;
    }
    return spawn(argv, s->log_path);
}

static pid_t sentinel_spawn(ts_server_t *s)
{
    char conf[TS_PATH_MAX + 32];
    snprintf(conf, sizeof conf, "%s/sentinel.conf", s->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    int down = s->down_after_ms > 0 ? s->down_after_ms : 1000;
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor gh 127.0.0.1 %d 2\n"
            "sentinel down-after-milliseconds gh %d\n"
            "sentinel failover-timeout gh %d\n"
            "sentinel parallel-syncs gh 1\n",
            s->port, s->dir, s->monitor_port, down, 5 * down);
    fclose(f);
    const struct passwd *pw = drop_user();
    if (pw && chown(conf, pw->pw_uid, pw->pw_gid) != 0)
        return -1;
    char *argv[] = {"redis-sentinel", conf, NULL};
    return spawn(argv, s->log_path);
}

static bool redis_ready(const ts_server_t *s)
{
    char reply[64];
    return redis_roundtrip(s->port, "PING", reply, sizeof reply) == 0 &&
           strcmp(reply, "+PONG") == 0;
}

/* ---- lifecycle ---- */

static int make_dir(ts_server_t *s)
{
    const struct passwd *pw = drop_user();
    const char *tmp = getenv("TMPDIR");
    if (pw || !tmp || !*tmp)
        tmp = "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/gatehouse-%s-XXXXXX", tmp,
             s->kind == TS_REDIS      ? "redis"
             : s->kind == TS_SENTINEL ? "sentinel"
                                      : "pg");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "servers: mkdtemp: %s\n", strerror(errno));
        s->dir[0] = '\0';
        return -1;
    }
    if (pw && chown(s->dir, pw->pw_uid, pw->pw_gid) != 0) {
        fprintf(stderr, "servers: chown %s: %s\n", s->dir, strerror(errno));
        return -1;
    }
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    int fd = open(s->log_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        if (pw && fchown(fd, pw->pw_uid, pw->pw_gid) != 0) {
            close(fd);
            return -1;
        }
        close(fd);
    }
    return 0;
}

int ts_server_start(ts_server_t *s)
{
    if (s->pid > 0)
        return 0;
    bool first = s->dir[0] == '\0';
    if (first) {
        if (make_dir(s) != 0)
            return -1;
        if (s->kind == TS_POSTGRES && pg_initdb(s) != 0)
            return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (first || attempt > 0) {
            s->port = ts_free_port();
            if (s->port <= 0)
                return -1;
            if (s->kind == TS_REDIS)
                snprintf(s->url, sizeof s->url, "redis://127.0.0.1:%d", s->port);
            else if (s->kind == TS_SENTINEL)
                snprintf(s->url, sizeof s->url, "127.0.0.1:%d", s->port);
            else
                snprintf(s->url, sizeof s->url, "postgresql://gatehouse@127.0.0.1:%d/postgres",
                         s->port);
        }
        pid_t pid = s->kind == TS_REDIS      ? redis_spawn(s)
                    : s->kind == TS_SENTINEL ? sentinel_spawn(s)
                                             : pg_spawn(s);
        if (pid < 0)
            return -1;
        s->pid = pid;
        long long deadline = now_ms() + START_TIMEOUT_MS;
        while (now_ms() < deadline && alive(pid)) {
            if (s->kind == TS_POSTGRES ? pg_ready(s) : redis_ready(s))
                return 0;
            sleep_ms(20);
        }
        bool died = !alive(pid);
        ts_server_stop(s);
        if (!died)
            break; /* it ran but never answered: another port will not help */
        if (!first)
            break; /* a restart keeps its port: clients know it */
    }
    fprintf(stderr, "servers: %s did not start\n",
            s->kind == TS_REDIS      ? "redis"
            : s->kind == TS_SENTINEL ? "sentinel"
                                     : "postgres");
    print_log_tail(s->log_path);
    return -1;
}

int ts_server_stop(ts_server_t *s)
{
    if (s->pid <= 0)
        return 0;
    int status = 0, ret = 0;
    kill(s->pid, s->kind == TS_POSTGRES ? SIGINT : SIGTERM);
    int w = wait_exit(s->pid, STOP_TIMEOUT_MS, &status);
    if (w != 0) {
        kill(s->pid, SIGKILL);
        wait_exit(s->pid, STOP_TIMEOUT_MS, &status);
        ret = -1;
    }
    s->pid = 0;
    return ret;
}

void ts_server_kill(ts_server_t *s)
{
    if (s->pid <= 0)
        return;
    int status = 0;
    kill(s->pid, SIGKILL);
    wait_exit(s->pid, STOP_TIMEOUT_MS, &status);
    s->pid = 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void ts_server_cleanup(ts_server_t *s)
{
    ts_server_stop(s);
    const char *keep = getenv("GATEHOUSE_TEST_KEEP");
    if (s->dir[0] && !(keep && strcmp(keep, "1") == 0))
        (void)nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    s->dir[0] = '\0';
}

/* ---- PostgreSQL helpers ---- */

int ts_postgres_exec(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    int ret = -1;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "servers: connect %s: %s", url, PQerrorMessage(c));
        goto out;
    }
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        ret = 0;
    else
        fprintf(stderr, "servers: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
out:
    PQfinish(c);
    return ret;
}

int ts_postgres_fresh_url(const ts_server_t *s, char *url, size_t len)
{
    /* A schema, not a database: CREATE DATABASE copies a template (most of a second each),
     * CREATE SCHEMA is instant, and search_path makes unqualified names land in it. */
    static int seq;
    char sql[96], name[48];
    snprintf(name, sizeof name, "gh_test_%d_%d", (int)getpid(), ++seq);
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", name);
    if (ts_postgres_exec(s->url, sql) != 0)
        return -1;
    snprintf(url, len, "postgresql://gatehouse@127.0.0.1:%d/postgres?options=-csearch_path%%3D%s",
             s->port, name);
    return 0;
}
