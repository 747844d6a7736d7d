/*
 * harness.h — black-box test harness: runs the real gatehouse binary and talks HTTP to it.
 *
 * A server is started with `serve --listen 127.0.0.1:0` in a fresh mkdtemp data dir, its stderr
 * going to server.log in that dir; the harness waits (bounded) for the "listening" log line and
 * takes the port from it. Everything a test needs lives in its ht_server_t and ht_response_t, so
 * two servers in one test never share state. Responses are fixed-size buffers a test keeps on its
 * stack: a failed cmocka assertion longjmps out of the test, and nothing must leak or dangle then.
 * The child process gets PR_SET_PDEATHSIG, so a crashed test binary never leaves servers behind.
 *
 * The binary is $GATEHOUSE_BIN (default build/gatehouse). GATEHOUSE_* variables of the caller's
 * environment are not passed on: a developer's shell must not change what the tests see.
 * Set GATEHOUSE_TEST_KEEP=1 to keep data dirs (and their logs) for a post-mortem, and
 * GATEHOUSE_TEST_TIMEOUT_SCALE=N to give a slow server (valgrind) N times the start and stop
 * limits. A sanitizer or valgrind report in a server's log or a command's stderr fails the test
 * (see ht_server_cleanup and ht_run).
 */
#ifndef GH_TESTS_INTEGRATION_HARNESS_H
#define GH_TESTS_INTEGRATION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#define HT_PATH_MAX 512
#define HT_MAX_ENV 16

/* Zero-initialize; ht_server_cleanup when done. Restarting a stopped server keeps its dir. */
typedef struct {
    /* Set by the caller before ht_server_start (both optional). */
    const char *data_dir;        /* use this dir instead of a fresh one (not removed after) */
    const char *env[HT_MAX_ENV]; /* extra "GATEHOUSE_KEY=value" entries, NULL-terminated */

    /* Filled by ht_server_start. */
    pid_t pid;                       /* 0 when not running */
    bool owns_dir;                   /* dir was made by the harness and is removed by cleanup */
    char dir[HT_PATH_MAX];           /* the data dir */
    char log_path[HT_PATH_MAX + 32]; /* dir/server.log: the server's stderr */
    char addr[64];                   /* "127.0.0.1:PORT" from the listening line */
    int port;
    int exit_status; /* after ht_server_stop: see there */
} ht_server_t;

#define HT_HEADERS_MAX 16384
#define HT_BODY_MAX (256 * 1024)

typedef struct {
    long status;                  /* HTTP status, 0 when no response arrived */
    char headers[HT_HEADERS_MAX]; /* raw header lines of the final response ("Name: value\r\n") */
    size_t headers_len;
    char body[HT_BODY_MAX + 1]; /* NUL-terminated */
    size_t body_len;
    bool truncated;       /* body or headers did not fit */
    char error_code[64];  /* error.code of an error body, "" otherwise */
    char curl_error[256]; /* transport error text, "" when none */
} ht_response_t;

/*
 * Starts `$GATEHOUSE_BIN serve --listen 127.0.0.1:0 --data-dir DIR --hash-memory 8KiB
 * --hash-ops 1 --throttle-ip 0 ARGS...`; a default is left out when ARGS or s->env name the same
 * key, so a test can override any of them. ARGS is a NULL-terminated list of strings.
 * Waits up to 10 s for the "listening" line. Returns 0, or -1 (the reason and the server log
 * are printed on stderr and the child is gone).
 */
int ht_server_start(ht_server_t *s, ...) __attribute__((sentinel));
int ht_server_startv(ht_server_t *s, const char *const *args);

/* Sends sig and waits up to 10 s, then SIGKILL. Returns the exit code, 128+signal when killed
 * by a signal, or -1 when it had to be killed after the timeout. Idempotent. */
int ht_server_stop_sig(ht_server_t *s, int sig);
int ht_server_stop(ht_server_t *s); /* SIGTERM */

/* Stops the server if it still runs and removes the data dir when the harness made it.
 * The server's log is checked once it has stopped (LeakSanitizer reports at exit): a report of
 * AddressSanitizer, LeakSanitizer, UndefinedBehaviorSanitizer ("runtime error:") or valgrind
 * ("ERROR SUMMARY" above 0) is printed and fails the test — ht_server_stop* and
 * ht_server_cleanup fail it with fail_msg, after their own work is done. ht_server_release does
 * the same work and returns -1 instead, for a cmocka teardown (return its result there: a
 * longjmp out of a teardown would skip the rest of it). */
void ht_server_cleanup(ht_server_t *s);
int ht_server_release(ht_server_t *s);

/* Copies the server log into buf (NUL-terminated); returns its length (cut at len - 1). */
size_t ht_server_log(const ht_server_t *s, char *buf, size_t len);

/* Waits up to timeout_ms for a JSON log line whose msg is `msg`. */
bool ht_server_wait_log(const ht_server_t *s, const char *msg, int timeout_ms);

/*
 * One HTTP/1.1 request to the server. headers is a NULL-terminated list of "Name: value" or NULL;
 * body may be NULL. Returns the status (also in r->status), 0 on a transport failure.
 */
long ht_request(const ht_server_t *s, const char *method, const char *path,
                const char *const *headers, const char *body, size_t body_len, ht_response_t *r);

/* GET/DELETE with an optional bearer token (NULL = none). */
long ht_get(const ht_server_t *s, const char *path, const char *token, ht_response_t *r);
long ht_delete(const ht_server_t *s, const char *path, const char *token, ht_response_t *r);
/* method with a JSON body and Content-Type: application/json, optional bearer token. */
long ht_json(const ht_server_t *s, const char *method, const char *path, const char *token,
             const char *json, ht_response_t *r);

/* POST /v1/users; returns the status (and the new id in *id when 201 and id != NULL). */
long ht_register(const ht_server_t *s, const char *username, const char *password, long long *id);
/* POST /v1/sessions with JSON; on 201 copies the token (token[64]) and the session id
 * (sid[32]) when those are non-NULL. Returns the status. */
long ht_login(const ht_server_t *s, const char *username, const char *password, char *token,
              char *sid);

/* Response headers: the first header named `name` (case-insensitive), value trimmed. */
bool ht_header(const ht_response_t *r, const char *name, char *buf, size_t len);
int ht_header_count(const ht_response_t *r, const char *name);

/*
 * JSON field access by a dotted path ("session.id", "sessions.0.current"); numeric parts index
 * arrays. ht_jbody returns a new reference to the parsed body (json_decref it) or NULL.
 */
json_t *ht_jbody(const ht_response_t *r);
json_t *ht_jpath(json_t *root, const char *path); /* borrowed reference or NULL */
bool ht_jstr(const ht_response_t *r, const char *path, char *buf, size_t len);
bool ht_jint(const ht_response_t *r, const char *path, long long *out);
bool ht_jbool(const ht_response_t *r, const char *path, bool *out);
bool ht_jnumber(const ht_response_t *r, const char *path, double *out);
/* Array length or object size at path; -1 when absent or neither. */
long ht_jsize(const ht_response_t *r, const char *path);
bool ht_jhas(const ht_response_t *r, const char *path);

/* "2026-11-24T18:42:23Z" exactly (RFC 3339, UTC, whole seconds). */
bool ht_parse_time(const char *s, time_t *out);
/* n characters of the base64url alphabet and nothing else (s must be exactly n long). */
bool ht_is_b64url(const char *s, size_t n);
/* "gh_" + 43 base64url characters. */
bool ht_is_token(const char *s);

typedef struct {
    int timeout_ms;  /* in: how long the program may run; 0 = 20 s */
    int status;      /* exit code, 128+signal, or -1 when killed after the timeout */
    char out[65536]; /* stdout, NUL-terminated (cut when longer) */
    size_t out_len;
    char err[16384]; /* stderr, NUL-terminated */
    size_t err_len;
} ht_run_t;

/*
 * Runs `$GATEHOUSE_BIN ARGS...` to completion (at most r->timeout_ms, then SIGKILL) with stdin_data
 * (or an empty stdin) and the extra environment entries env (NULL-terminated or NULL). Returns 0
 * when the program ran (its status is in r->status), -1 when it could not be started. A
 * sanitizer or valgrind report on the program's stderr fails the test (fail_msg).
 */
int ht_run(ht_run_t *r, const char *stdin_data, const char *const *env, ...)
    __attribute__((sentinel));

/* Makes a fresh temp dir (out[HT_PATH_MAX]); removes a dir tree. */
int ht_tempdir(char *out);
/* A secret key file (--secret-key-file) made once per test process and removed at its exit: the
 * nodes of one test that share a user store must share it, as a cluster's nodes must (it seals
 * the TOTP seeds and the OpenID signing keys they all read). NULL when it cannot be made. */
const char *ht_shared_secret_key(void);
void ht_rmtree(const char *dir);

/* Monotonic milliseconds, and sleeping that long. */
long long ht_now_ms(void);
void ht_sleep_ms(long long ms);

/* Lines of buf that are exactly one line each: counts '\n' in buf. */
int ht_count_lines(const char *buf);

/* The 6-digit TOTP code oathtool computes for secret (base32) at now + offset_s, into out; a
 * failure of oathtool fails the running test. */
void ht_totp(const char *secret, int offset_s, char out[7]);

/* Runs `node script` with the extra env entries (NULL-terminated, "NAME=value") in its own
 * process group, so a browser it starts goes with it; returns its exit status (128 + signal when
 * killed), or -1 when it overran timeout_ms (then its whole group is killed). */
int ht_run_node(const char *script, const char *const *env, long long timeout_ms);

#endif
