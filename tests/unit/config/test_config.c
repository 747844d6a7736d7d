/*
 * test_config.c — strict parsing of durations, sizes and listen addresses; precedence of flag,
 * environment, file and default; errors that name the key; --help; admin-token-file; auto values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config/config.h"
#include "mem/mem.h"

#define KIB 1024ULL
#define MIB (1024ULL * 1024ULL)

/* Every GATEHOUSE_* variable a test may set; cleared before and after each test so the
 * machine's environment and earlier tests cannot leak in. */
static const char *const env_used[] = {
    "GATEHOUSE_CONFIG",           "GATEHOUSE_SESSION_TTL",   "GATEHOUSE_IDLE_TTL",
    "GATEHOUSE_LISTEN",           "GATEHOUSE_HASH_OPS",      "GATEHOUSE_ADMIN_TOKEN",
    "GATEHOUSE_ADMIN_TOKEN_FILE", "GATEHOUSE_NOT_A_KEY",     "GATEHOUSE_MEMORY_LIMIT",
    "GATEHOUSE_SESSION_MEMORY",   "GATEHOUSE_COOKIE_SECURE", "GATEHOUSE_LOG_LEVEL",
};

/* Temporary files of the running test, removed by its teardown even when it fails. */
static char temps[8][64];
static size_t ntemps;

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_used / sizeof env_used[0]; i++)
        unsetenv(env_used[i]);
    return 0;
}

static int cleanup(void **state)
{
    for (size_t i = 0; i < ntemps; i++)
        unlink(temps[i]);
    ntemps = 0;
    return clear_env(state);
}

/* Loads with argv = {"serve", args..., NULL}. */
#define LOAD(cfg, err, ...)                                                                        \
    load_args((cfg), (err), sizeof(err), (char *[]){"serve", ##__VA_ARGS__, NULL})

static int load_args(gh_config_t *cfg, char *err, size_t errlen, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return gh_config_load(cfg, argc, argv, NULL, err, errlen);
}

/* Writes text to a fresh temporary file; path receives its name. */
static void temp_file(char *path, size_t len, const char *text)
{
    assert_true(ntemps < sizeof temps / sizeof temps[0] && len <= sizeof temps[0]);
    const char *dir = getenv("TMPDIR");
    snprintf(path, len, "%s/gh-test-config-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    memcpy(temps[ntemps++], path, len);
}

/* ---- durations ---- */

static void duration_every_unit(void **state)
{
    (void)state;
    int64_t ms = -1;
    assert_int_equal(gh_config_parse_duration("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(gh_config_parse_duration("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(gh_config_parse_duration("30m", &ms), 0);
    assert_int_equal(ms, 1800000);
    assert_int_equal(gh_config_parse_duration("12h", &ms), 0);
    assert_int_equal(ms, 43200000);
    assert_int_equal(gh_config_parse_duration("2d", &ms), 0);
    assert_int_equal(ms, 172800000);
    assert_int_equal(gh_config_parse_duration("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(gh_config_parse_duration("0s", &ms), 0);
    assert_int_equal(ms, 0);
}

static void duration_rejects_garbage(void **state)
{
    (void)state;
    int64_t ms = 77;
    const char *bad[] = {"",   "12x",  "-5s",  "5 s",  " 5s",   "5s ", "5",   "s", "+5s",
                         "5S", "5sec", "1.5h", "5ms5", "0x10s", "abc", "5hh", "ms"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(gh_config_parse_duration(bad[i], &ms), GH_EINVAL);
        assert_int_equal(ms, 77); /* untouched on error */
    }
}

static void duration_overflow_is_range(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(gh_config_parse_duration("99999999999999999999h", &ms), GH_ERANGE);
    assert_int_equal(gh_config_parse_duration("99999999999999999999ms", &ms), GH_ERANGE);
    /* Fits in 64 bits as a number but not once multiplied into milliseconds. */
    assert_int_equal(gh_config_parse_duration("9223372036854776d", &ms), GH_ERANGE);
    assert_int_equal(gh_config_parse_duration("9223372036854775807ms", &ms), 0);
    assert_int_equal(ms, INT64_MAX);
    assert_int_equal(gh_config_parse_duration("9223372036854775808ms", &ms), GH_ERANGE);
}

/* ---- sizes ---- */

static void size_every_unit(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } cases[] = {
        {"0", 0},
        {"123", 123},
        {"7B", 7},
        {"512KiB", 512 * KIB},
        {"256MiB", 256 * MIB},
        {"3GiB", 3ULL << 30},
        {"2TiB", 2ULL << 40},
        {"5KB", 5000},
        {"5MB", 5000000},
        {"5GB", 5000000000ULL},
        {"5TB", 5000000000000ULL},
        {"4K", 4 * KIB},
        {"4M", 4 * MIB},
        {"4G", 4ULL << 30},
        {"18446744073709551615", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t v = 1;
        assert_int_equal(gh_config_parse_size(cases[i].s, &v), 0);
        assert_true(v == cases[i].v);
    }
}

static void size_rejects_garbage_and_overflow(void **state)
{
    (void)state;
    uint64_t v = 42;
    const char *bad[] = {"",    "12x",  "-5",  "-5KiB",  "5 KiB", " 5KiB", "5KiB ",
                         "KiB", "5kib", "5Ki", "1.5GiB", "5iB",   "+5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(gh_config_parse_size(bad[i], &v), GH_EINVAL);
    assert_int_equal(gh_config_parse_size("18446744073709551616", &v), GH_ERANGE);
    assert_int_equal(gh_config_parse_size("99999999999999999999KiB", &v), GH_ERANGE);
    assert_int_equal(gh_config_parse_size("16777216TiB", &v), GH_ERANGE);
    assert_int_equal(v, 42);
}

/* ---- listen ---- */

static void listen_forms(void **state)
{
    (void)state;
    char host[64];
    uint16_t port = 1;
    assert_int_equal(gh_config_parse_listen("127.0.0.1:8080", host, sizeof host, &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(gh_config_parse_listen("0.0.0.0:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 0);
    assert_int_equal(gh_config_parse_listen("localhost:65535", host, sizeof host, &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 65535);
    assert_int_equal(gh_config_parse_listen("[::1]:443", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    assert_int_equal(gh_config_parse_listen("[::]:9", host, sizeof host, &port), 0);
    assert_string_equal(host, "::");

    const char *bad[] = {"",
                         "8080",
                         "127.0.0.1",
                         "127.0.0.1:",
                         ":8080",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "256.0.0.1:80",
                         "example.com:80",
                         "::1:80",
                         "[::1]80",
                         "[::1]:",
                         "[nope]:80",
                         "127.0.0.1: 80",
                         " 127.0.0.1:80",
                         "[]:80",
                         "127.0.0.1:999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(gh_config_parse_listen(bad[i], host, sizeof host, &port), GH_EINVAL);
    char tiny[4];
    assert_int_equal(gh_config_parse_listen("127.0.0.1:80", tiny, sizeof tiny, &port), GH_ERANGE);
}

/* ---- defaults ---- */

static void defaults_match_the_contract(void **state)
{
    (void)state;
    gh_config_t c;
    gh_config_defaults(&c);
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 8080);
    assert_string_equal(c.data_dir, "./var");
    assert_int_equal(c.session_ttl_ms, 12 * 3600000LL);
    assert_int_equal(c.idle_ttl_ms, 30 * 60000LL);
    assert_int_equal(c.max_sessions_per_user, 100);
    assert_int_equal(c.memory_limit, 0);
    assert_int_equal(c.session_memory, 0);
    assert_int_equal(c.session_policy, GH_POLICY_EVICT_IDLE);
    assert_int_equal(c.session_clients, 65536);
    assert_int_equal(c.hash_memory, 19 * MIB);
    assert_int_equal(c.hash_ops, 2);
    assert_int_equal(c.hash_workers, 0);
    assert_int_equal(c.hash_queue, 64);
    assert_true(c.registration_open);
    assert_int_equal(c.throttle_ip_count, 20);
    assert_int_equal(c.throttle_ip_window_ms, 60000);
    assert_int_equal(c.throttle_account, 10);
    assert_string_equal(c.trusted_proxies, "");
    assert_string_equal(c.admin_token, "");
    assert_false(c.cookie_secure);
    assert_int_equal(c.user_store, GH_USER_STORE_SQLITE);
    assert_int_equal(c.session_store, GH_SESSION_STORE_MEMORY);
    assert_string_equal(c.statsd, "");
    assert_int_equal(c.watch_window_ms, 600000);
    assert_int_equal(c.watch_interval_ms, 1000);
    assert_int_equal(c.memory_warn_percent, 70);
    assert_int_equal(c.memory_critical_percent, 85);
    assert_int_equal(c.forecast_horizon_ms, 2 * 3600000LL);
    assert_int_equal(c.log_format, GH_LOG_JSON);
    assert_int_equal(c.log_level, GH_LOG_INFO);
    assert_int_equal(c.http_threads, 0);
    assert_int_equal(c.max_connections, 1024);
    assert_int_equal(c.max_connections_per_ip, 64);
    assert_int_equal(c.connection_timeout_ms, 30000);
    assert_int_equal(c.connection_memory, 32 * KIB);
    assert_int_equal(c.max_body, 64 * KIB);
    assert_int_equal(c.user_cache, 16384);
    assert_int_equal(c.user_cache_ttl_ms, 1000);
}

static void load_with_nothing_resolves_auto_values(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err), 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c.hash_workers, cores > 1 ? cores / 2 : 1);
    assert_int_equal(c.http_threads, cores);
    assert_true(c.memory_limit > 0);
    assert_int_equal(c.session_memory, c.memory_limit / 2);
    uint64_t cg = gh_mem_cgroup_limit();
    if (cg)
        assert_int_equal(c.memory_limit, cg);
    else
        assert_int_equal(c.memory_limit, gh_mem_physical_bytes() / 2);
}

/* ---- flags ---- */

static void flags_both_forms_and_every_kind(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256] = "";
    int rc =
        LOAD(&c, err, "--listen", "[::1]:0", "--data-dir=/srv/gh", "--session-ttl", "2d",
             "--idle-ttl=90s", "--max-sessions-per-user", "3", "--memory-limit", "512MiB",
             "--session-memory=100MiB", "--session-policy", "refuse", "--hash-memory", "8KiB",
             "--hash-ops=1", "--hash-workers", "3", "--hash-queue", "5", "--registration", "closed",
             "--throttle-ip=0", "--throttle-account", "4", "--trusted-proxies",
             "10.0.0.0/8, ::1/128,192.168.1.1", "--cookie-secure", "--user-store", "postgres",
             "--postgres-url", "postgres://u@127.0.0.1/db", "--session-store=redis", "--redis-url",
             "redis://127.0.0.1:6379", "--statsd", "127.0.0.1:8125", "--alert-webhook",
             "https://hooks.example/x", "--watch-window", "1m", "--watch-interval", "100ms",
             "--memory-warn", "60", "--memory-critical=95", "--forecast-horizon", "30m",
             "--log-format", "text", "--log-level=debug", "--http-threads", "7",
             "--max-connections", "10", "--max-connections-per-ip", "2", "--connection-timeout",
             "5s", "--connection-memory", "8KiB", "--max-body", "1KiB");
    assert_int_equal(rc, 0);
    assert_string_equal(err, "");
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.data_dir, "/srv/gh");
    assert_int_equal(c.session_ttl_ms, 2 * 86400000LL);
    assert_int_equal(c.idle_ttl_ms, 90000);
    assert_int_equal(c.max_sessions_per_user, 3);
    if (gh_mem_cgroup_limit() == 0 || gh_mem_cgroup_limit() >= 512 * MIB)
        assert_int_equal(c.memory_limit, 512 * MIB);
    assert_int_equal(c.session_memory, 100 * MIB);
    assert_int_equal(c.session_policy, GH_POLICY_REFUSE);
    assert_int_equal(c.hash_memory, 8 * KIB);
    assert_int_equal(c.hash_ops, 1);
    assert_int_equal(c.hash_workers, 3);
    assert_int_equal(c.hash_queue, 5);
    assert_false(c.registration_open);
    assert_int_equal(c.throttle_ip_count, 0);
    assert_int_equal(c.throttle_account, 4);
    assert_string_equal(c.trusted_proxies, "10.0.0.0/8, ::1/128,192.168.1.1");
    assert_true(c.cookie_secure);
    assert_int_equal(c.user_store, GH_USER_STORE_POSTGRES);
    assert_int_equal(c.session_store, GH_SESSION_STORE_REDIS);
    assert_string_equal(c.redis_url, "redis://127.0.0.1:6379");
    assert_string_equal(c.statsd, "127.0.0.1:8125");
    assert_int_equal(c.watch_window_ms, 60000);
    assert_int_equal(c.watch_interval_ms, 100);
    assert_int_equal(c.memory_warn_percent, 60);
    assert_int_equal(c.memory_critical_percent, 95);
    assert_int_equal(c.forecast_horizon_ms, 30 * 60000LL);
    assert_int_equal(c.log_format, GH_LOG_TEXT);
    assert_int_equal(c.log_level, GH_LOG_DEBUG);
    assert_int_equal(c.http_threads, 7);
    assert_int_equal(c.max_connections, 10);
    assert_int_equal(c.max_connections_per_ip, 2);
    assert_int_equal(c.connection_timeout_ms, 5000);
    assert_int_equal(c.connection_memory, 8 * KIB);
    assert_int_equal(c.max_body, 1 * KIB);
}

static void bool_flag_forms(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--cookie-secure=true"), 0);
    assert_true(c.cookie_secure);
    assert_int_equal(LOAD(&c, err, "--cookie-secure", "--cookie-secure=false"), 0);
    assert_false(c.cookie_secure);
    assert_int_equal(LOAD(&c, err, "--cookie-secure=yes"), GH_EINVAL);
    assert_non_null(strstr(err, "--cookie-secure"));
    assert_non_null(strstr(err, "true or false"));
    /* A bare boolean does not swallow the next word. */
    assert_int_equal(LOAD(&c, err, "--cookie-secure", "true"), GH_EINVAL);
    assert_non_null(strstr(err, "\"true\""));
}

static void pages_and_forward_auth_keys(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err), 0);
    assert_string_equal(c.allowed_redirect_hosts, "");
    assert_false(c.forward_auth_redirect);
    assert_string_equal(c.login_url, "/login");
    assert_string_equal(c.ops_users, "");
    assert_int_equal(LOAD(&c, err, "--allowed-redirect-hosts", "wiki.example,.corp.example",
                          "--forward-auth-redirect", "--login-url", "https://auth.example/login",
                          "--ops-users=olga,oscar"),
                     0);
    assert_string_equal(c.allowed_redirect_hosts, "wiki.example,.corp.example");
    assert_true(c.forward_auth_redirect);
    assert_string_equal(c.login_url, "https://auth.example/login");
    assert_string_equal(c.ops_users, "olga,oscar");
}

static void throttle_ip_rate(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--throttle-ip", "5/30s"), 0);
    assert_int_equal(c.throttle_ip_count, 5);
    assert_int_equal(c.throttle_ip_window_ms, 30000);
    const char *bad[] = {"20", "20/", "/1m", "20/1", "20/0", "x/1m", "-1/1m", "20/1m/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(LOAD(&c, err, "--throttle-ip", (char *)bad[i]), GH_EINVAL);
        assert_non_null(strstr(err, "--throttle-ip"));
    }
}

/* ---- errors ---- */

static void bad_duration_error_is_one_exact_line(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--session-ttl", "abc"), GH_EINVAL);
    assert_string_equal(err,
                        "--session-ttl: expected a duration like 500ms, 30m or 12h, got \"abc\"");
    assert_int_equal(LOAD(&c, err, "--idle-ttl=0"), GH_EINVAL);
    assert_string_equal(err, "--idle-ttl: expected a duration from 1ms to 365d, got \"0\"");
    assert_int_equal(LOAD(&c, err, "--idle-ttl", "99999999999999999999h"), GH_EINVAL);
    assert_non_null(strstr(err, "(too large)"));
    /* A value with a newline in it still makes one line. */
    assert_int_equal(LOAD(&c, err, "--idle-ttl", "5\nm"), GH_EINVAL);
    assert_null(strchr(err, '\n'));
}

static void unknown_flag_names_it(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--foo"), GH_EINVAL);
    assert_string_equal(err, "unknown flag --foo (see gatehouse serve --help)");
    /* The value after '=' is never echoed: it could be a mistyped secret flag. */
    assert_int_equal(LOAD(&c, err, "--admin-tokn=hunter2"), GH_EINVAL);
    assert_string_equal(err, "unknown flag --admin-tokn (see gatehouse serve --help)");
    assert_int_equal(LOAD(&c, err, "-x"), GH_EINVAL);
    assert_non_null(strstr(err, "-x"));
}

static void positional_and_missing_values_are_errors(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "extra"), GH_EINVAL);
    assert_non_null(strstr(err, "\"extra\""));
    assert_int_equal(LOAD(&c, err, "--listen"), GH_EINVAL);
    assert_non_null(strstr(err, "--listen needs a value"));
    assert_int_equal(LOAD(&c, err, "--listen", "--data-dir", "x"), GH_EINVAL);
    assert_non_null(strstr(err, "--listen needs a value"));
    assert_int_equal(LOAD(&c, err, "--config"), GH_EINVAL);
    assert_non_null(strstr(err, "--config"));
}

static void range_and_enum_errors(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--hash-memory", "4KiB"), GH_EINVAL);
    assert_string_equal(err, "--hash-memory: expected a size from 8KiB to 4GiB, got \"4KiB\"");
    assert_int_equal(LOAD(&c, err, "--hash-ops", "0"), GH_EINVAL);
    assert_non_null(strstr(err, "--hash-ops: expected an integer from 1"));
    assert_int_equal(LOAD(&c, err, "--hash-workers", "0"), GH_EINVAL);
    assert_non_null(strstr(err, "--hash-workers"));
    assert_int_equal(LOAD(&c, err, "--hash-queue", "0"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--max-sessions-per-user", "0"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--session-clients", "0"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--session-clients", "16777217"), GH_EINVAL);
    assert_non_null(strstr(err, "--session-clients"));
    assert_int_equal(LOAD(&c, err, "--session-clients", "100"), 0);
    assert_int_equal(c.session_clients, 100);
    assert_int_equal(LOAD(&c, err, "--max-body", "1023"), GH_EINVAL);
    assert_non_null(strstr(err, "--max-body"));
    assert_int_equal(LOAD(&c, err, "--hash-queue", "99999999999999999999999"), GH_EINVAL);
    assert_non_null(strstr(err, "too large"));
    assert_int_equal(LOAD(&c, err, "--max-connections", "-1"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--session-policy", "lru"), GH_EINVAL);
    assert_string_equal(err, "--session-policy: expected one of evict-idle, refuse, got \"lru\"");
    assert_int_equal(LOAD(&c, err, "--log-level", "INFO"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--listen", "example.com:80"), GH_EINVAL);
    assert_non_null(strstr(err, "--listen: expected host:port"));
    assert_int_equal(LOAD(&c, err, "--trusted-proxies", "10.0.0.0/33"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--statsd", "127.0.0.1"), GH_EINVAL);
    assert_int_equal(LOAD(&c, err, "--alert-webhook", "ftp://x"), GH_EINVAL);
}

static void cross_key_checks(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--memory-limit", "64MiB", "--session-memory", "65MiB"),
                     GH_EINVAL);
    assert_non_null(strstr(err, "--session-memory: expected at most the memory limit"));
    assert_int_equal(LOAD(&c, err, "--user-store", "postgres"), GH_EINVAL);
    assert_non_null(strstr(err, "--postgres-url"));
    assert_int_equal(LOAD(&c, err, "--session-store", "redis"), GH_EINVAL);
    assert_non_null(strstr(err, "--redis-url"));
    assert_int_equal(LOAD(&c, err, "--watch-window", "1s", "--watch-interval", "2s"), GH_EINVAL);
    assert_non_null(strstr(err, "--watch-interval"));
    /* The watchdog's ring: at least 8 samples, at most a day's worth at 1 s. */
    assert_int_equal(LOAD(&c, err, "--watch-window", "5s", "--watch-interval", "1s"), GH_EINVAL);
    assert_non_null(strstr(err, "--watch-window: expected 7 to 86399 times --watch-interval"));
    assert_int_equal(LOAD(&c, err, "--watch-window", "2d", "--watch-interval", "1s"), GH_EINVAL);
    assert_non_null(strstr(err, "--watch-window"));
    assert_int_equal(LOAD(&c, err, "--watch-window", "7s", "--watch-interval", "1s"), 0);
    assert_int_equal(LOAD(&c, err, "--memory-warn", "90", "--memory-critical", "80"), GH_EINVAL);
    assert_non_null(strstr(err, "--memory-warn: expected at most --memory-critical (80), got 90"));
    assert_int_equal(LOAD(&c, err, "--memory-critical", "101"), GH_EINVAL);
    assert_non_null(strstr(err, "--memory-critical"));
}

static void secrets_are_not_echoed(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--alert-webhook", "ftp://user:s3cr3t@h"), GH_EINVAL);
    assert_non_null(strstr(err, "--alert-webhook"));
    assert_null(strstr(err, "s3cr3t"));
}

/* ---- precedence ---- */

static void precedence_flag_env_file_default(void **state)
{
    (void)state;
    char path[64];
    temp_file(path, sizeof path,
              "; gatehouse test\n"
              "session-ttl = 1h\n"
              "[gatehouse]\n"
              "idle-ttl = 1m\n"
              "hash-ops = 3\n"
              "log-level = warn\n");
    gh_config_t c;
    char err[256] = "";
    setenv("GATEHOUSE_IDLE_TTL", "2m", 1);
    setenv("GATEHOUSE_HASH_OPS", "4", 1);
    setenv("GATEHOUSE_NOT_A_KEY", "whatever", 1); /* ignored */
    /* The flag comes before --config on purpose: order must not matter. */
    assert_int_equal(LOAD(&c, err, "--hash-ops", "5", "--config", path), 0);
    assert_string_equal(err, "");
    assert_int_equal(c.session_ttl_ms, 3600000); /* file beats default */
    assert_int_equal(c.idle_ttl_ms, 120000);     /* env beats file */
    assert_int_equal(c.hash_ops, 5);             /* flag beats env */
    assert_int_equal(c.log_level, GH_LOG_WARN);  /* file */
    assert_int_equal(c.hash_queue, 64);          /* default */

    /* GATEHOUSE_CONFIG names the file when --config does not. */
    setenv("GATEHOUSE_CONFIG", path, 1);
    assert_int_equal(LOAD(&c, err), 0);
    assert_int_equal(c.session_ttl_ms, 3600000);
    assert_int_equal(c.hash_ops, 4);
}

static void env_errors_name_the_variable(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    setenv("GATEHOUSE_SESSION_TTL", "forever", 1);
    assert_int_equal(LOAD(&c, err), GH_EINVAL);
    assert_string_equal(err, "GATEHOUSE_SESSION_TTL: expected a duration like 500ms, 30m or 12h, "
                             "got \"forever\"");
    /* An empty variable counts as unset. */
    setenv("GATEHOUSE_SESSION_TTL", "", 1);
    assert_int_equal(LOAD(&c, err), 0);
    assert_int_equal(c.session_ttl_ms, 12 * 3600000LL);
    setenv("GATEHOUSE_COOKIE_SECURE", "true", 1);
    assert_int_equal(LOAD(&c, err), 0);
    assert_true(c.cookie_secure);
}

static void file_errors_name_file_line_and_key(void **state)
{
    (void)state;
    char path[64], want[160];
    gh_config_t c;
    char err[256];

    temp_file(path, sizeof path, "listen = 127.0.0.1:9000\n\n  bogus-key = 1\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    snprintf(want, sizeof want, "%s:3: unknown key \"bogus-key\" (see gatehouse serve --help)",
             path);
    assert_string_equal(err, want);

    temp_file(path, sizeof path, "[gatehouse]\nidle-ttl = 1m\nsession-ttl = soon\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    snprintf(want, sizeof want,
             "%s:3: session-ttl: expected a duration like 500ms, 30m or 12h, got \"soon\"", path);
    assert_string_equal(err, want);

    temp_file(path, sizeof path, "[other]\nidle-ttl = 1m\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    assert_non_null(strstr(err, "[other]"));
    assert_non_null(strstr(err, ":2:"));

    temp_file(path, sizeof path, "idle-ttl = 1m\nthis line has no equals sign\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    assert_non_null(strstr(err, ":2:"));

    temp_file(path, sizeof path, "idle-ttl = 1m\nidle-ttl = 2m\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    assert_non_null(strstr(err, ":2: idle-ttl"));

    char big[600];
    memset(big, 'a', sizeof big);
    memcpy(big, "data-dir = ", 11);
    big[sizeof big - 2] = '\n';
    big[sizeof big - 1] = '\0';
    temp_file(path, sizeof path, big);
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    assert_non_null(strstr(err, "too long"));

    assert_int_equal(LOAD(&c, err, "--config", "/nonexistent/gatehouse.ini"), GH_EINVAL);
    assert_non_null(strstr(err, "--config"));
    assert_non_null(strstr(err, "/nonexistent/gatehouse.ini"));
}

static void file_indented_keys_stand_alone(void **state)
{
    (void)state;
    char path[64];
    gh_config_t c;
    char err[256];
    /* inih would read the indented lines as continuations of idle-ttl's value. */
    temp_file(path, sizeof path,
              "[gatehouse]\nidle-ttl = 1m\n  hash-ops = 3\n\tlog-format = text ; a comment\n"
              "# another comment\n");
    assert_int_equal(LOAD(&c, err, "--config", path), 0);
    assert_int_equal(c.idle_ttl_ms, 60000);
    assert_int_equal(c.hash_ops, 3);
    assert_int_equal(c.log_format, GH_LOG_TEXT);
}

/* ---- --help ---- */

static void help_returns_1_and_lists_every_key(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    gh_config_t c;
    char err[256];
    char *argv[] = {"serve", "--session-ttl", "bogus", "--help", NULL};
    assert_int_equal(gh_config_load(&c, 4, argv, out, err, sizeof err), 1);
    fclose(out);
    const char *names[] = {"--listen HOST:PORT",
                           "--data-dir",
                           "--session-ttl DURATION",
                           "--idle-ttl",
                           "--max-sessions-per-user",
                           "--memory-limit",
                           "--session-memory",
                           "--session-policy",
                           "--hash-memory",
                           "--hash-ops",
                           "--hash-workers",
                           "--hash-queue",
                           "--registration",
                           "--throttle-ip",
                           "--throttle-account",
                           "--trusted-proxies",
                           "--admin-token",
                           "--admin-token-file",
                           "--cookie-secure",
                           "--user-store",
                           "--postgres-url",
                           "--session-store",
                           "--redis-url",
                           "--statsd",
                           "--alert-webhook",
                           "--watch-window",
                           "--watch-interval",
                           "--memory-warn",
                           "--memory-critical",
                           "--forecast-horizon",
                           "--log-format",
                           "--log-level",
                           "--http-threads",
                           "--max-connections",
                           "--max-connections-per-ip",
                           "--connection-timeout",
                           "--connection-memory",
                           "--max-body",
                           "--config FILE",
                           "GATEHOUSE_",
                           "(default: 12h)",
                           "(default: 127.0.0.1:8080)",
                           "(default: cgroup limit, else 50% of RAM)",
                           "(default: half of --memory-limit)",
                           "(default: number of cores)",
                           "(default: 20/1m)",
                           "environment beats the file"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(buf, names[i]))
            fail_msg("--help lacks \"%s\"", names[i]);
    }
    free(buf);

    buf = NULL;
    out = open_memstream(&buf, &len);
    char *argv2[] = {"serve", "-h", NULL};
    assert_int_equal(gh_config_load(&c, 2, argv2, out, err, sizeof err), 1);
    fclose(out);
    assert_non_null(strstr(buf, "usage: gatehouse serve"));
    free(buf);
}

static void help_never_shows_a_secret(void **state)
{
    (void)state;
    setenv("GATEHOUSE_ADMIN_TOKEN", "tok-3f9a8c", 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    gh_config_t c;
    char err[256];
    char *argv[] = {"serve", "--help", NULL};
    assert_int_equal(gh_config_load(&c, 2, argv, out, err, sizeof err), 1);
    fclose(out);
    assert_null(strstr(buf, "tok-3f9a8c"));
    assert_non_null(strstr(buf, "--admin-token TOKEN"));
    free(buf);
}

/* ---- admin-token-file ---- */

static void admin_token_file_first_line(void **state)
{
    (void)state;
    char path[64];
    gh_config_t c;
    char err[256];
    temp_file(path, sizeof path, "s3cret-token\r\nsecond line ignored\n");
    assert_int_equal(LOAD(&c, err, "--admin-token-file", path), 0);
    assert_string_equal(c.admin_token, "s3cret-token");

    temp_file(path, sizeof path, "no-newline");
    setenv("GATEHOUSE_ADMIN_TOKEN_FILE", path, 1);
    assert_int_equal(LOAD(&c, err), 0);
    assert_string_equal(c.admin_token, "no-newline");
    unsetenv("GATEHOUSE_ADMIN_TOKEN_FILE");

    temp_file(path, sizeof path, "\nlater\n");
    assert_int_equal(LOAD(&c, err, "--admin-token-file", path), GH_EINVAL);
    assert_non_null(strstr(err, "--admin-token-file"));

    assert_int_equal(LOAD(&c, err, "--admin-token-file", "/nonexistent/token"), GH_EINVAL);
    assert_non_null(strstr(err, "--admin-token-file: cannot read \"/nonexistent/token\""));
    assert_string_equal(c.admin_token, "");

    assert_int_equal(LOAD(&c, err, "--admin-token", "abc"), 0);
    assert_string_equal(c.admin_token, "abc");
}

/* ---- memory limit ---- */

static void memory_limit_rule(void **state)
{
    (void)state;
    const uint64_t G = 1ULL << 30;
    /* auto: cgroup if any, else half of RAM */
    assert_true(gh_config_effective_memory_limit(0, 2 * G, 16 * G) == 2 * G);
    assert_true(gh_config_effective_memory_limit(0, 0, 16 * G) == 8 * G);
    /* configured: never above the cgroup limit */
    assert_true(gh_config_effective_memory_limit(4 * G, 2 * G, 16 * G) == 2 * G);
    assert_true(gh_config_effective_memory_limit(1 * G, 2 * G, 16 * G) == 1 * G);
    assert_true(gh_config_effective_memory_limit(32 * G, 0, 16 * G) == 32 * G);
    /* nothing known: still not 0 */
    assert_true(gh_config_effective_memory_limit(0, 0, 0) > 0);
}

static void memory_limit_loaded_respects_cgroup(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--memory-limit", "1TiB"), 0);
    uint64_t cg = gh_mem_cgroup_limit();
    if (cg)
        assert_true(c.memory_limit <= cg);
    else
        assert_true(c.memory_limit == 1ULL << 40);
    assert_int_equal(c.session_memory, c.memory_limit / 2);
    /* "0" and "auto" both mean automatic. */
    assert_int_equal(LOAD(&c, err, "--memory-limit", "0", "--session-memory=auto"), 0);
    assert_true(c.memory_limit > 0);
    assert_int_equal(c.session_memory, c.memory_limit / 2);
}

static void durability_normal_or_full(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err), 0);
    assert_int_equal(c.durability, GH_DURABILITY_NORMAL);
    assert_int_equal(LOAD(&c, err, "--durability", "full"), 0);
    assert_int_equal(c.durability, GH_DURABILITY_FULL);
    assert_int_equal(LOAD(&c, err, "--durability=fsync"), GH_EINVAL);
    assert_string_equal(err, "--durability: expected one of normal, full, got \"fsync\"");
}

/* ---- ranges: every numeric key has a finite maximum, enforced at parse time ---- */

#define MAX_RANGES 64

/* Every duration, size and integer key names a max (none left to the field's own limit), its
 * min is not above it, and the defaults lie inside. */
static void every_numeric_key_has_a_finite_range(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err), 0);
    gh_config_range_t r[MAX_RANGES];
    size_t n = gh_config_ranges(&c, r, MAX_RANGES);
    assert_true(n >= 20 && n <= MAX_RANGES);
    for (size_t i = 0; i < n; i++) {
        if (r[i].max == 0 || r[i].min > r[i].max)
            fail_msg("--%s: range %llu..%llu", r[i].name, (unsigned long long)r[i].min,
                     (unsigned long long)r[i].max);
        if (r[i].value < r[i].min || r[i].value > r[i].max)
            fail_msg("--%s: default %llu outside %llu..%llu", r[i].name,
                     (unsigned long long)r[i].value, (unsigned long long)r[i].min,
                     (unsigned long long)r[i].max);
    }
}

/* The key's max as a value in its plainest form: "<ms>ms" for durations, else the number. */
static void plain_value(const gh_config_range_t *r, uint64_t v, char *buf, size_t len)
{
    snprintf(buf, len, r->duration ? "%llums" : "%llu", (unsigned long long)v);
}

/* For every numeric key: max + 1 is refused with one line naming the key and its range; max
 * itself is never refused by its own range (a check across keys may still object). */
static void every_numeric_key_refuses_max_plus_one(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256], flag[96], value[32];
    assert_int_equal(LOAD(&c, err), 0);
    gh_config_range_t r[MAX_RANGES];
    size_t n = gh_config_ranges(&c, r, MAX_RANGES);
    assert_true(n <= MAX_RANGES);
    for (size_t i = 0; i < n; i++) {
        snprintf(flag, sizeof flag, "--%s", r[i].name);
        plain_value(&r[i], r[i].max + 1, value, sizeof value);
        if (LOAD(&c, err, flag, value) != GH_EINVAL)
            fail_msg("%s %s was accepted", flag, value);
        char want[128];
        snprintf(want, sizeof want, "%s: expected ", flag);
        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, " from ") ||
            !strstr(err, " to ") || strchr(err, '\n'))
            fail_msg("%s %s: \"%s\" does not state the key and its range", flag, value, err);
        plain_value(&r[i], r[i].max, value, sizeof value);
        if (LOAD(&c, err, flag, value) != 0 && strstr(err, " from "))
            fail_msg("%s %s (its max) was refused: %s", flag, value, err);
    }
}

/* The values of issue 23: each wrapped or hung the node at start; now each is refused with
 * the key and its range. */
static void out_of_range_values_are_refused_with_the_range(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--max-body", "18446744073709551615"), GH_EINVAL);
    assert_string_equal(
        err, "--max-body: expected a size from 1KiB to 64MiB, got \"18446744073709551615\"");
    assert_int_equal(LOAD(&c, err, "--hash-ops", "4294967295"), GH_EINVAL);
    assert_string_equal(err, "--hash-ops: expected an integer from 1 to 64, got \"4294967295\"");
    assert_int_equal(LOAD(&c, err, "--session-ttl", "99999999999h"), GH_EINVAL);
    assert_string_equal(
        err, "--session-ttl: expected a duration from 1ms to 365d, got \"99999999999h\"");
    assert_int_equal(LOAD(&c, err, "--connection-timeout", "4294967296s"), GH_EINVAL);
    assert_string_equal(
        err, "--connection-timeout: expected a duration from 1ms to 1d, got \"4294967296s\"");
    assert_int_equal(LOAD(&c, err, "--connection-memory", "1TiB"), GH_EINVAL);
    assert_non_null(strstr(err, "--connection-memory: expected a size from 4KiB to 16MiB"));
    /* Too large to read at all: still the range, and why. */
    assert_int_equal(LOAD(&c, err, "--max-body", "99999999999999999999999"), GH_EINVAL);
    assert_non_null(strstr(err, "--max-body: expected a size from 1KiB to 64MiB"));
    assert_non_null(strstr(err, "(too large)"));
    /* The maxima themselves load. */
    assert_int_equal(LOAD(&c, err, "--max-body", "64MiB", "--session-ttl", "365d",
                          "--connection-timeout", "1d", "--hash-ops", "64"),
                     0);
    assert_int_equal(c.max_body, 64 * MIB);
    assert_int_equal(c.session_ttl_ms, 365LL * 86400000);
    assert_int_equal(c.connection_timeout_ms, 86400000);
    assert_int_equal(c.hash_ops, 64);
    /* The same bounds hold in the environment and in a file. */
    setenv("GATEHOUSE_HASH_OPS", "65", 1);
    assert_int_equal(LOAD(&c, err), GH_EINVAL);
    assert_string_equal(err, "GATEHOUSE_HASH_OPS: expected an integer from 1 to 64, got \"65\"");
    unsetenv("GATEHOUSE_HASH_OPS");
    char path[64], want[160];
    temp_file(path, sizeof path, "idle-ttl = 366d\n");
    assert_int_equal(LOAD(&c, err, "--config", path), GH_EINVAL);
    snprintf(want, sizeof want,
             "%s:1: idle-ttl: expected a duration from 1ms to 365d, got \"366d\"", path);
    assert_string_equal(err, want);
}

/* What one hash costs is memory x passes: each within its range can still multiply into a
 * start-up of minutes (the dummy hash is made at start). */
static void hash_cost_product_is_bounded(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--hash-memory", "1GiB", "--hash-ops", "32"), GH_EINVAL);
    assert_string_equal(err, "--hash-ops: expected --hash-memory x --hash-ops at most 16GiB "
                             "(1GiB x 16, 4GiB x 4), got 1GiB x 32");
    assert_int_equal(LOAD(&c, err, "--hash-memory", "4GiB", "--hash-ops", "4"), 0);
    assert_int_equal(LOAD(&c, err, "--hash-memory", "19MiB", "--hash-ops", "64"), 0);
}

static void throttle_ip_rate_is_bounded(void **state)
{
    (void)state;
    gh_config_t c;
    char err[256];
    assert_int_equal(LOAD(&c, err, "--throttle-ip", "1000000/1d"), 0);
    assert_int_equal(c.throttle_ip_count, 1000000);
    assert_int_equal(c.throttle_ip_window_ms, 86400000);
    const char *bad[] = {"1000001/1m", "20/2d", "20/9223372036854775807ms", "4294967296/1m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(LOAD(&c, err, "--throttle-ip", (char *)bad[i]), GH_EINVAL);
        assert_non_null(strstr(err, "--throttle-ip: expected count/duration like 20/1m (count 1 "
                                    "to 1000000, duration up to 1d)"));
    }
}

/* --help states each numeric key's range beside its default. */
static void help_shows_ranges(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    gh_config_t c;
    char err[256];
    char *argv[] = {"serve", "--help", NULL};
    assert_int_equal(gh_config_load(&c, 2, argv, out, err, sizeof err), 1);
    fclose(out);
    assert_non_null(strstr(buf, "[1KiB to 64MiB] (default: 64KiB)"));
    assert_non_null(strstr(buf, "[1ms to 365d] (default: 12h)"));
    assert_non_null(strstr(buf, "[1 to 64] (default: 2)"));
    /* The admin routes answer 403 when no token is set (request.c), not 401. */
    assert_non_null(strstr(buf, "(unset: those routes answer 403)"));
    assert_null(strstr(buf, "answer 401"));
    free(buf);
}

#define T(f) cmocka_unit_test_setup_teardown(f, clear_env, cleanup)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        T(duration_every_unit),
        T(duration_rejects_garbage),
        T(duration_overflow_is_range),
        T(size_every_unit),
        T(size_rejects_garbage_and_overflow),
        T(listen_forms),
        T(defaults_match_the_contract),
        T(load_with_nothing_resolves_auto_values),
        T(flags_both_forms_and_every_kind),
        T(bool_flag_forms),
        T(pages_and_forward_auth_keys),
        T(throttle_ip_rate),
        T(bad_duration_error_is_one_exact_line),
        T(unknown_flag_names_it),
        T(positional_and_missing_values_are_errors),
        T(range_and_enum_errors),
        T(cross_key_checks),
        T(secrets_are_not_echoed),
        T(precedence_flag_env_file_default),
        T(env_errors_name_the_variable),
        T(file_errors_name_file_line_and_key),
        T(file_indented_keys_stand_alone),
        T(help_returns_1_and_lists_every_key),
        T(help_never_shows_a_secret),
        T(admin_token_file_first_line),
        T(memory_limit_rule),
        T(memory_limit_loaded_respects_cgroup),
        T(durability_normal_or_full),
        T(every_numeric_key_has_a_finite_range),
        T(every_numeric_key_refuses_max_plus_one),
        T(out_of_range_values_are_refused_with_the_range),
        T(hash_cost_product_is_bounded),
        T(throttle_ip_rate_is_bounded),
        T(help_shows_ranges),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
