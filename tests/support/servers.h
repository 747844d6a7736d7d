/*
 * servers.h — real redis-server and PostgreSQL for tests and benchmarks: each on a free loopback
 * port, in its own temp dir, started and stopped by PID (never by name), so tests can stop and
 * restart a store in the middle of a test and two test binaries never share one.
 *
 * The one design decision: PostgreSQL refuses to run as root, so when the test runs as root the
 * child drops to the unprivileged user `nobody` itself (setgid/setuid between fork and exec)
 * instead of going through su/runuser: the PID we hold is then the postmaster's own, and stopping
 * it by PID stops the server. The temp dir is handed to that user; it lives under /tmp when
 * running as root (a TMPDIR below a root-only directory would not be reachable by `nobody`).
 *
 * Binaries: redis-server from PATH; PostgreSQL's from `pg_config --bindir`, else the newest
 * /usr/lib/postgresql/N/bin (Debian's layout). The children get PR_SET_PDEATHSIG, so a crashed
 * test binary leaves no server behind. Set GATEHOUSE_TEST_KEEP=1 to keep the dirs and logs.
 *
 * Nothing here uses libgatehouse (only libc and libpq), so it links into any test binary.
 */
#ifndef GH_TESTS_SUPPORT_SERVERS_H
#define GH_TESTS_SUPPORT_SERVERS_H

#include <stdbool.h>
#include <sys/types.h>

#define TS_PATH_MAX 512

/* TS_SENTINEL: a redis-sentinel (Debian's redis-sentinel) watching the master at
 * 127.0.0.1:monitor_port under the name "gh", with a quorum of 2, down-after-milliseconds
 * down_after_ms (0 = 1000) and a failover-timeout of five times that: failovers of seconds. */
typedef enum { TS_REDIS = 1, TS_POSTGRES, TS_SENTINEL } ts_kind_t;

/* Zero-initialize and set `kind` (and for Redis, `persist`); ts_server_cleanup when done. */
typedef struct {
    ts_kind_t kind;
    bool persist;      /* Redis: append-only file, so a restart keeps every key */
    int replica_of;    /* Redis: the port of a master on 127.0.0.1 to replicate (0: a master) */
    int monitor_port;  /* Sentinel: the port of the master it watches */
    int down_after_ms; /* Sentinel: see TS_SENTINEL */

    /* Filled by the first ts_server_start and kept across restarts. */
    pid_t pid; /* 0 when not running */
    int port;
    char dir[TS_PATH_MAX];
    char log_path[TS_PATH_MAX + 32];
    /* redis://127.0.0.1:PORT, postgresql://gatehouse@127.0.0.1:PORT/postgres, or for a
     * sentinel 127.0.0.1:PORT */
    char url[128];
} ts_server_t;

/* Starts the server (initdb on PostgreSQL's first start) and waits up to 30 s until it answers.
 * A restart reuses the dir and the port. Returns 0, or -1 with the reason and the log tail on
 * stderr (then nothing is left running). */
int ts_server_start(ts_server_t *s);

/* Stops it (SIGTERM for Redis, SIGINT — fast shutdown — for PostgreSQL), waits up to 20 s, then
 * SIGKILL. Returns 0 when it exited by itself. Idempotent. */
int ts_server_stop(ts_server_t *s);

/* SIGKILL, no warning (a crash, for failover tests); waits for it. Idempotent. */
void ts_server_kill(ts_server_t *s);

/* Stops it if running and removes its dir (unless GATEHOUSE_TEST_KEEP=1). */
void ts_server_cleanup(ts_server_t *s);

/* PostgreSQL: makes a new empty schema (unique within the server) and writes to url (len bytes)
 * a URL whose search_path is that schema, so every unqualified table lands there: a fresh,
 * isolated user store per test. Returns 0 or -1. */
int ts_postgres_fresh_url(const ts_server_t *s, char *url, size_t len);

/* Runs one SQL command on the database at url; returns 0 or -1 (the error on stderr). */
int ts_postgres_exec(const char *url, const char *sql);

/* Redis: sends one inline command ("FLUSHALL", "DBSIZE") and copies the first reply line into
 * reply (may be NULL). Returns 0 when the reply is not an error. */
int ts_redis_cmd(const ts_server_t *s, const char *cmd, char *reply, size_t len);

/* Redis or a sentinel: sends one inline command whose reply is an array of bulk strings and
 * writes them space-separated into out ("127.0.0.1 6379"). Returns 0 or -1. */
int ts_redis_array(const ts_server_t *s, const char *cmd, char *out, size_t len);

/* A loopback TCP port that was free a moment ago. */
int ts_free_port(void);

#endif
