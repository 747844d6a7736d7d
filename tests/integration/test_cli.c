/*
 * test_cli.c — the command line as an operator meets it: `version`, `serve --help`, bad flags,
 * values and config files (exit 2, one line naming the key), the precedence flag > environment >
 * config file, graceful stop on SIGTERM/SIGINT, and `gatehouse user ...` on a data dir that a
 * server then serves.
 *
 * Commands that should fail at once get a short run limit: if a bad flag were ignored and the
 * server started, the test fails in seconds instead of hanging.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>
#include <signal.h>
#include <cmocka.h>

#include "harness.h"

#define PASSWORD "correct horse battery"

typedef struct {
    ht_server_t srv;
    ht_run_t run;
    char dir[HT_PATH_MAX]; /* scratch dir for config files and data dirs */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || ht_tempdir(f->dir) != 0) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    ht_rmtree(f->dir);
    free(f);
    return rc;
}

#define FIX(state) ((fixture_t *)*(state))

/* Writes `text` to DIR/name and returns the path in out[HT_PATH_MAX + 64]. */
static const char *write_file(const fixture_t *f, const char *name, const char *text, char *out)
{
    snprintf(out, HT_PATH_MAX + 64, "%s/%s", f->dir, name);
    FILE *fp = fopen(out, "w");
    assert_non_null(fp);
    assert_true(fputs(text, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
    return out;
}

static void check_usage_error(const ht_run_t *r, const char *key, const char *alt, int line)
{
    if (r->status != 2)
        fail_msg("line %d: exit status %d, want 2; stderr: %s", line, r->status, r->err);
    if (ht_count_lines(r->err) != 1 || r->err[r->err_len - 1] != '\n')
        fail_msg("line %d: want exactly one line on stderr, got: \"%s\"", line, r->err);
    if (!strstr(r->err, key) && !(alt && strstr(r->err, alt)))
        fail_msg("line %d: stderr does not name %s: %s", line, key, r->err);
}
#define EXPECT_USAGE_ERROR(r, key, alt) check_usage_error((r), (key), (alt), __LINE__)

static void run_ok(ht_run_t *r, int line)
{
    if (r->status != 0)
        fail_msg("line %d: exit status %d, want 0; stderr: %s; stdout: %s", line, r->status, r->err,
                 r->out);
}
#define EXPECT_RUN_OK(r) run_ok((r), __LINE__)

/* ---- version and help ---- */

static void version_prints_the_version(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    assert_int_equal(ht_run(r, NULL, NULL, "version", NULL), 0);
    EXPECT_RUN_OK(r);
    assert_int_equal(ht_count_lines(r->out), 1);
    int major = -1, minor = -1, patch = -1;
    assert_int_equal(sscanf(r->out, "gatehouse %d.%d.%d", &major, &minor, &patch), 3);
    assert_true(major >= 0 && minor >= 0 && patch >= 0);

    /* Top-level help names the commands; an unknown command is a usage error. */
    assert_int_equal(ht_run(r, NULL, NULL, "--help", NULL), 0);
    EXPECT_RUN_OK(r);
    assert_non_null(strstr(r->out, "serve"));
    assert_non_null(strstr(r->out, "user"));
    assert_non_null(strstr(r->out, "version"));
    assert_int_equal(ht_run(r, NULL, NULL, "no-such-command", NULL), 0);
    assert_int_equal(r->status, 2);
}

/* The help text of one key: from "--key" up to the next line that starts a flag. */
static bool help_entry(const char *help, const char *key, char *out, size_t len)
{
    char flag[96];
    snprintf(flag, sizeof flag, "--%s", key);
    size_t fl = strlen(flag);
    for (const char *p = strstr(help, flag); p; p = strstr(p + 1, flag)) {
        char next = p[fl];
        bool word_end = !((next >= 'a' && next <= 'z') || (next >= '0' && next <= '9') ||
                          next == '-' || next == '_');
        if (!word_end)
            continue;
        const char *end = p + fl;
        for (;;) {
            const char *nl = strchr(end, '\n');
            if (!nl) {
                end += strlen(end);
                break;
            }
            const char *q = nl + 1;
            while (*q == ' ' || *q == '\t')
                q++;
            end = nl + 1;
            if (strncmp(q, "--", 2) == 0 || *q == '\0' || *q == '\n')
                break;
        }
        size_t n = (size_t)(end - p) < len - 1 ? (size_t)(end - p) : len - 1;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
    }
    return false;
}

static void serve_help_lists_every_key_with_its_default(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--help", NULL), 0);
    EXPECT_RUN_OK(r);
    /* key, default as DESIGN.md gives it (NULL where the default is computed or "none") */
    const char *keys[][2] = {
        {"config", NULL},
        {"listen", "127.0.0.1:8080"},
        {"data-dir", "./var"},
        {"session-ttl", "12h"},
        {"idle-ttl", "30m"},
        {"max-sessions-per-user", "100"},
        {"memory-limit", NULL},
        {"session-memory", NULL},
        {"session-policy", "evict-idle"},
        {"hash-memory", "19MiB"},
        {"hash-ops", "2"},
        {"hash-workers", NULL},
        {"hash-queue", "64"},
        {"registration", "open"},
        {"throttle-ip", "20/1m"},
        {"throttle-account", "10"},
        {"trusted-proxies", NULL},
        {"admin-token", NULL},
        {"admin-token-file", NULL},
        {"cookie-secure", "false"},
        {"user-store", "sqlite"},
        {"postgres-url", NULL},
        {"session-store", "memory"},
        {"redis-url", NULL},
        {"statsd", NULL},
        {"alert-webhook", NULL},
        {"watch-window", "10m"},
        {"watch-interval", "1s"},
        {"log-format", "json"},
        {"log-level", "info"},
        {"max-body", "64KiB"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char entry[2048];
        if (!help_entry(r->out, keys[i][0], entry, sizeof entry))
            fail_msg("serve --help does not list --%s", keys[i][0]);
        if (keys[i][1] && !strstr(entry, keys[i][1]))
            fail_msg("serve --help: --%s does not show its default %s: \"%s\"", keys[i][0],
                     keys[i][1], entry);
    }
}

/* ---- usage errors ---- */

static void bad_flags_and_values_exit_2_naming_the_key(void **state)
{
    fixture_t *f = FIX(state);
    ht_run_t *r = &f->run;
    r->timeout_ms = 5000;
    struct {
        const char *flag, *value, *key;
    } cases[] = {
        {"--no-such-flag", "1", "no-such-flag"},
        {"--session-ttl", "banana", "session-ttl"},
        {"--idle-ttl", "10", "idle-ttl"}, /* a duration needs a unit */
        {"--idle-ttl", "-5m", "idle-ttl"},
        {"--session-ttl", "99999999999999999999h", "session-ttl"},
        {"--hash-memory", "12XB", "hash-memory"},
        {"--hash-memory", "4KiB", "hash-memory"}, /* below libsodium's minimum */
        {"--hash-ops", "0", "hash-ops"},
        {"--listen", "127.0.0.1:99999", "listen"},
        {"--listen", "nowhere", "listen"},
        {"--session-policy", "maybe", "session-policy"},
        {"--registration", "sometimes", "registration"},
        {"--log-format", "xml", "log-format"},
        {"--log-level", "loud", "log-level"},
        {"--max-sessions-per-user", "many", "max-sessions-per-user"},
        {"--throttle-ip", "lots", "throttle-ip"},
        {"--user-store", "mysql", "user-store"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ht_run(r, NULL, NULL, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                f->dir, cases[i].flag, cases[i].value, NULL),
                         0);
        if (r->status != 2 || ht_count_lines(r->err) != 1 || !strstr(r->err, cases[i].key))
            fail_msg("serve %s %s: exit %d, stderr \"%s\"; want exit 2 and one line naming %s",
                     cases[i].flag, cases[i].value, r->status, r->err, cases[i].key);
    }
    /* A flag without its value. */
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--listen", "127.0.0.1:0", "--data-dir", f->dir,
                            "--session-ttl", NULL),
                     0);
    EXPECT_USAGE_ERROR(r, "session-ttl", NULL);
}

/* Values that once wrapped or hung the node at start (a 5 KB body corrupting the heap after
 * --max-body 2^64-1, a dummy hash that never ended, a timeout wrapped to none) are refused
 * before anything starts: exit 2, one line naming the key and its range. */
static void out_of_range_values_exit_2_naming_the_key_and_range(void **state)
{
    fixture_t *f = FIX(state);
    ht_run_t *r = &f->run;
    r->timeout_ms = 5000;
    struct {
        const char *flag, *value, *want;
    } cases[] = {
        {"--max-body", "18446744073709551615", "--max-body: expected a size from 1KiB to 64MiB"},
        {"--hash-ops", "4294967295", "--hash-ops: expected an integer from 1 to 64"},
        {"--session-ttl", "99999999999h", "--session-ttl: expected a duration from 1ms to 365d"},
        {"--connection-timeout", "4294967296s",
         "--connection-timeout: expected a duration from 1ms to 1d"},
        {"--connection-memory", "18446744073709551615B",
         "--connection-memory: expected a size from 4KiB to 16MiB"},
        {"--hash-memory", "1TiB", "--hash-memory: expected a size from 8KiB to 4GiB"},
        {"--max-connections", "4294967295", "--max-connections: expected an integer from 1 to"},
        {"--header-timeout", "50d", "--header-timeout: expected a duration from 0ms to 1h"},
        {"--throttle-ip", "20/9999999d", "--throttle-ip: expected count/duration"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ht_run(r, NULL, NULL, "serve", "--listen", "127.0.0.1:0", "--data-dir",
                                f->dir, cases[i].flag, cases[i].value, NULL),
                         0);
        if (r->status != 2 || ht_count_lines(r->err) != 1 || !strstr(r->err, cases[i].want))
            fail_msg("serve %s %s: exit %d, stderr \"%s\"; want exit 2 and one line with \"%s\"",
                     cases[i].flag, cases[i].value, r->status, r->err, cases[i].want);
    }
}

static void bad_config_files_exit_2_naming_the_key(void **state)
{
    fixture_t *f = FIX(state);
    ht_run_t *r = &f->run;
    r->timeout_ms = 5000;
    char path[HT_PATH_MAX + 64];

    snprintf(path, sizeof path, "%s/absent.ini", f->dir);
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--config", path, "--listen", "127.0.0.1:0",
                            "--data-dir", f->dir, NULL),
                     0);
    EXPECT_USAGE_ERROR(r, "config", NULL);

    write_file(f, "bad-value.ini", "idle-ttl = soon\n", path);
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--config", path, "--listen", "127.0.0.1:0",
                            "--data-dir", f->dir, NULL),
                     0);
    EXPECT_USAGE_ERROR(r, "idle-ttl", NULL);

    write_file(f, "unknown-key.ini", "[gatehouse]\nno-such-key = 1\n", path);
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--config", path, "--listen", "127.0.0.1:0",
                            "--data-dir", f->dir, NULL),
                     0);
    EXPECT_USAGE_ERROR(r, "no-such-key", NULL);

    write_file(f, "syntax.ini", "registration = open\nthis line is not ini\n", path);
    assert_int_equal(ht_run(r, NULL, NULL, "serve", "--config", path, "--listen", "127.0.0.1:0",
                            "--data-dir", f->dir, NULL),
                     0);
    assert_int_equal(r->status, 2);
    assert_int_equal(ht_count_lines(r->err), 1);

    /* A bad value in the environment is named too (by key or by variable). */
    const char *env[] = {"GATEHOUSE_IDLE_TTL=soon", NULL};
    assert_int_equal(
        ht_run(r, NULL, env, "serve", "--listen", "127.0.0.1:0", "--data-dir", f->dir, NULL), 0);
    EXPECT_USAGE_ERROR(r, "idle-ttl", "GATEHOUSE_IDLE_TTL");
}

/* ---- precedence: flag > environment > config file > default ---- */

/* Logs "user" in on s and returns the cookie's Max-Age. */
static long cookie_max_age(const ht_server_t *s, const char *user)
{
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    assert_int_equal(ht_register(s, user, PASSWORD, NULL), 201);
    json_t *j = json_pack("{s:s, s:s}", "username", user, "password", PASSWORD);
    char *body = json_dumps(j, JSON_COMPACT);
    assert_int_equal(ht_json(s, "POST", "/v1/sessions", NULL, body, r), 201);
    free(body);
    json_decref(j);
    char h[512];
    assert_true(ht_header(r, "Set-Cookie", h, sizeof h));
    const char *m = strcasestr(h, "Max-Age=");
    assert_non_null(m);
    long age = strtol(m + 8, NULL, 10);
    free(r);
    return age;
}

static void environment_and_config_file_are_honoured(void **state)
{
    fixture_t *f = FIX(state);
    ht_server_t *s = &f->srv;
    ht_response_t *r = malloc(sizeof *r);
    assert_non_null(r);
    char conf[HT_PATH_MAX + 64];
    write_file(f, "gatehouse.ini",
               "# a comment\n[gatehouse]\nsession-ttl = 60s\nregistration = closed\n"
               "admin-token = from-the-file\n",
               conf);

    /* Config file alone. */
    assert_int_equal(ht_server_start(s, "--config", conf, NULL), 0);
    assert_int_equal(ht_register(s, "ann", PASSWORD, NULL), 403);
    assert_int_equal(ht_get(s, "/debug/memory", "from-the-file", r), 200);
    assert_int_equal(ht_server_stop(s), 0);

    /* Environment beats the file ('-' as '_', upper case). */
    s->env[0] = "GATEHOUSE_SESSION_TTL=90s";
    s->env[1] = "GATEHOUSE_REGISTRATION=open";
    s->env[2] = "GATEHOUSE_ADMIN_TOKEN=from-the-env";
    s->env[3] = NULL;
    assert_int_equal(ht_server_start(s, "--config", conf, NULL), 0);
    assert_int_equal(cookie_max_age(s, "bea"), 90);
    assert_int_equal(ht_get(s, "/debug/memory", "from-the-env", r), 200);
    assert_int_equal(ht_get(s, "/debug/memory", "from-the-file", r), 403);
    assert_int_equal(ht_server_stop(s), 0);

    /* A flag beats both. */
    assert_int_equal(ht_server_start(s, "--config", conf, "--session-ttl", "120s", NULL), 0);
    assert_int_equal(cookie_max_age(s, "cid"), 120);
    assert_int_equal(ht_server_stop(s), 0);

    /* The environment alone, with no file. */
    s->env[0] = "GATEHOUSE_REGISTRATION=closed";
    s->env[1] = NULL;
    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_register(s, "dan", PASSWORD, NULL), 403);
    assert_int_equal(ht_server_stop(s), 0);

    /* --admin-token-file reads the token from a file (a trailing newline is not part of it). */
    char tokfile[HT_PATH_MAX + 64];
    write_file(f, "admin.token", "token-from-a-file\n", tokfile);
    assert_int_equal(ht_server_start(s, "--admin-token-file", tokfile, NULL), 0);
    assert_int_equal(ht_get(s, "/debug/memory", "token-from-a-file", r), 200);
    assert_int_equal(ht_get(s, "/debug/memory", "token-from-a-fil", r), 403);
    assert_int_equal(ht_server_stop(s), 0);

    /* --flag=value works like --flag value. */
    s->env[0] = NULL;
    assert_int_equal(ht_server_start(s, "--session-ttl=45s", NULL), 0);
    assert_int_equal(cookie_max_age(s, "eve"), 45);
    free(r);
}

/* ---- stopping ---- */

static void sigterm_and_sigint_stop_with_status_0(void **state)
{
    ht_server_t *s = &FIX(state)->srv;
    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_register(s, "fred", PASSWORD, NULL), 201);
    assert_int_equal(ht_server_stop_sig(s, SIGTERM), 0);
    assert_true(ht_server_wait_log(s, "stopped", 0));

    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_login(s, "fred", PASSWORD, NULL, NULL), 201); /* the user persisted */
    assert_int_equal(ht_server_stop_sig(s, SIGINT), 0);
    assert_true(ht_server_wait_log(s, "stopped", 0));
}

typedef struct {
    const ht_server_t *s;
    long status;
} login_job_t;

static void *login_thread(void *arg)
{
    login_job_t *job = arg;
    job->status = ht_login(job->s, "gail", PASSWORD, NULL, NULL);
    return NULL;
}

static void sigterm_finishes_an_in_flight_login(void **state)
{
    ht_server_t *s = &FIX(state)->srv;
    /* An expensive hash keeps the login in flight while the signal arrives. */
    assert_int_equal(ht_server_start(s, "--hash-memory", "64MiB", "--hash-ops", "8",
                                     "--hash-workers", "1", NULL),
                     0);
    assert_int_equal(ht_register(s, "gail", PASSWORD, NULL), 201);
    long long t0 = ht_now_ms();
    assert_int_equal(ht_login(s, "gail", PASSWORD, NULL, NULL), 201);
    long long one_login = ht_now_ms() - t0;

    login_job_t job = {.s = s, .status = -1};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, login_thread, &job), 0);
    ht_sleep_ms(one_login / 3 > 20 ? one_login / 3 : 20);
    assert_int_equal(ht_server_stop_sig(s, SIGTERM), 0);
    pthread_join(th, NULL);
    assert_int_equal(job.status, 201);
}

/* ---- gatehouse user ---- */

static void user_commands_manage_the_store_a_server_uses(void **state)
{
    fixture_t *f = FIX(state);
    ht_run_t *r = &f->run;
    ht_server_t *s = &f->srv;
    r->timeout_ms = 15000;
    char data[HT_PATH_MAX + 64];
    snprintf(data, sizeof data, "%s/data", f->dir);

#define USER(stdin_data, ...)                                                                      \
    assert_int_equal(ht_run(r, (stdin_data), NULL, "user", __VA_ARGS__, "--data-dir", data,        \
                            "--hash-memory", "8KiB", "--hash-ops", "1", NULL),                     \
                     0)

    USER(PASSWORD "\n", "add", "hugo");
    EXPECT_RUN_OK(r);
    USER("another password\n", "add", "iris");
    EXPECT_RUN_OK(r);
    /* Taken (case-insensitively), invalid name, weak password: refused, nothing changes. */
    USER("third password\n", "add", "HUGO");
    assert_true(r->status != 0);
    USER("third password\n", "add", "bad name");
    assert_true(r->status != 0);
    USER("short\n", "add", "jane");
    assert_true(r->status != 0);

    assert_int_equal(ht_run(r, NULL, NULL, "user", "list", "--data-dir", data, NULL), 0);
    EXPECT_RUN_OK(r);
    assert_non_null(strstr(r->out, "hugo"));
    assert_non_null(strstr(r->out, "iris"));
    assert_null(strstr(r->out, "jane"));
    assert_null(strstr(r->out, "$argon2"));

    /* A server on the same data dir logs them in. */
    s->data_dir = data;
    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_login(s, "hugo", PASSWORD, NULL, NULL), 201);
    assert_int_equal(ht_login(s, "iris", "another password", NULL, NULL), 201);
    assert_int_equal(ht_login(s, "jane", "short", NULL, NULL), 401);
    assert_int_equal(ht_server_stop(s), 0);

    USER("a new password\n", "passwd", "hugo");
    EXPECT_RUN_OK(r);
    USER("whatever pw\n", "passwd", "nobody");
    assert_true(r->status != 0);
    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_login(s, "hugo", PASSWORD, NULL, NULL), 401);
    assert_int_equal(ht_login(s, "hugo", "a new password", NULL, NULL), 201);
    assert_int_equal(ht_server_stop(s), 0);

    USER(NULL, "del", "iris");
    EXPECT_RUN_OK(r);
    USER(NULL, "del", "iris");
    assert_true(r->status != 0);
    assert_int_equal(ht_run(r, NULL, NULL, "user", "list", "--data-dir", data, NULL), 0);
    EXPECT_RUN_OK(r);
    assert_non_null(strstr(r->out, "hugo"));
    assert_null(strstr(r->out, "iris"));
    assert_int_equal(ht_server_start(s, NULL), 0);
    assert_int_equal(ht_login(s, "iris", "another password", NULL, NULL), 401);
    assert_int_equal(ht_login(s, "hugo", "a new password", NULL, NULL), 201);
#undef USER
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(version_prints_the_version),
        T(serve_help_lists_every_key_with_its_default),
        T(bad_flags_and_values_exit_2_naming_the_key),
        T(out_of_range_values_exit_2_naming_the_key_and_range),
        T(bad_config_files_exit_2_naming_the_key),
        T(environment_and_config_file_are_honoured),
        T(sigterm_and_sigint_stop_with_status_0),
        T(sigterm_finishes_an_in_flight_login),
        T(user_commands_manage_the_store_a_server_uses),
#undef T
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
