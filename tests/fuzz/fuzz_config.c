/*
 * fuzz_config.c — configuration input: duration and size values, listen addresses, INI files
 * (through gh_config_load, as `gatehouse serve --config FILE` reads them) and command lines.
 *
 * The first byte picks the parser (mod 5); the rest is its input. Properties: parsers answer
 * 0, GH_EINVAL or GH_ERANGE; an accepted value, written back in its plainest form ("<ms>ms",
 * "<bytes>", "host:port"), parses to the same value; a configuration either loads with every
 * automatic value resolved or fails with exactly one line naming what was wrong. A configuration
 * that loads has every numeric key within its declared range (each key has a finite max), and
 * the arithmetic the node does on those values cannot wrap: the request pool of 2 x max-body +
 * 512KiB, timeouts in whole seconds for libmicrohttpd and in nanoseconds for the stores, the
 * hash cost memory x passes.
 *
 * Inputs that name /dev, /proc or /sys are skipped: a file key pointing at a terminal would
 * block the fuzzer on a read, and reading such files tests nothing of ours.
 */
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz.h"

extern char **environ;

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* The developer's GATEHOUSE_* variables must not change what the parser sees. */
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "GATEHOUSE_", 10) == 0) {
                char name[256];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)n, *e);
                unsetenv(name);
                again = true;
                break;
            }
        }
    }
    devnull = fopen("/dev/null", "w");
    return 0;
}

static char *cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static void duration(const char *s)
{
    int64_t ms = -1;
    int rc = gh_config_parse_duration(s, &ms);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ERANGE);
    if (rc != 0)
        return;
    FUZZ_CHECK(ms >= 0);
    char plain[32];
    snprintf(plain, sizeof plain, "%lldms", (long long)ms);
    int64_t again = -1;
    FUZZ_CHECK(gh_config_parse_duration(plain, &again) == 0 && again == ms);
}

static void size_value(const char *s)
{
    uint64_t bytes = 0;
    int rc = gh_config_parse_size(s, &bytes);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ERANGE);
    if (rc != 0)
        return;
    char plain[32];
    snprintf(plain, sizeof plain, "%llu", (unsigned long long)bytes);
    uint64_t again = 1;
    FUZZ_CHECK(gh_config_parse_size(plain, &again) == 0 && again == bytes);
}

static void listen_addr(const char *s)
{
    char host[64];
    uint16_t port = 1;
    int rc = gh_config_parse_listen(s, host, sizeof host, &port);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ERANGE);
    if (rc != 0)
        return;
    FUZZ_CHECK(strlen(host) < sizeof host);
    char plain[96], host2[64];
    snprintf(plain, sizeof plain, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
    uint16_t port2 = 0;
    FUZZ_CHECK(gh_config_parse_listen(plain, host2, sizeof host2, &port2) == 0);
    FUZZ_CHECK(strcmp(host, host2) == 0 && port == port2);
}

static void check_loaded(int rc, const gh_config_t *cfg, const char *err)
{
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == 1);
    if (rc == GH_EINVAL) {
        FUZZ_CHECK(err[0] != '\0');
        FUZZ_CHECK(strchr(err, '\n') == NULL && strchr(err, '\r') == NULL);
        return;
    }
    if (rc == 1)
        return;
    FUZZ_CHECK(cfg->memory_limit > 0);
    FUZZ_CHECK(cfg->session_memory > 0 && cfg->session_memory <= cfg->memory_limit);
    FUZZ_CHECK(cfg->hash_workers > 0 && cfg->http_threads > 0);
    FUZZ_CHECK(cfg->hash_memory >= 8 * 1024 && cfg->hash_ops >= 1);
    FUZZ_CHECK(cfg->watch_interval_ms <= cfg->watch_window_ms);
    FUZZ_CHECK(memchr(cfg->data_dir, '\0', sizeof cfg->data_dir) != NULL);
    FUZZ_CHECK(memchr(cfg->admin_token, '\0', sizeof cfg->admin_token) != NULL);

    gh_config_range_t r[64];
    size_t n = gh_config_ranges(cfg, r, 64);
    FUZZ_CHECK(n > 0 && n <= 64);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(r[i].max != 0 && r[i].min <= r[i].max);
        FUZZ_CHECK(r[i].value >= r[i].min && r[i].value <= r[i].max);
    }
    /* Independently of the table: the sums and products the node computes stay far from
     * wrapping. */
    const uint64_t day_ms = 86400000, year_ms = 366 * day_ms;
    FUZZ_CHECK(cfg->max_body >= 1024 && cfg->max_body <= (1ULL << 30));
    FUZZ_CHECK(cfg->connection_memory <= (1ULL << 30));
    FUZZ_CHECK(cfg->hash_ops >= 1 && cfg->hash_ops <= 64 && cfg->hash_memory <= (4ULL << 30));
    FUZZ_CHECK(cfg->hash_memory * cfg->hash_ops <= (16ULL << 30));
    FUZZ_CHECK(cfg->connection_timeout_ms > 0 && (uint64_t)cfg->connection_timeout_ms <= day_ms);
    FUZZ_CHECK((uint64_t)cfg->connection_timeout_ms / 1000 + 1 <= UINT_MAX);
    FUZZ_CHECK(cfg->header_timeout_ms >= 0 && cfg->header_timeout_ms <= (int64_t)UINT_MAX);
    FUZZ_CHECK(cfg->body_timeout_ms >= 0 && cfg->body_timeout_ms <= (int64_t)UINT_MAX);
    const int64_t durations[] = {cfg->session_ttl_ms,    cfg->idle_ttl_ms,
                                 cfg->user_cache_ttl_ms, cfg->watch_window_ms,
                                 cfg->watch_interval_ms, cfg->forecast_horizon_ms};
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++)
        FUZZ_CHECK(durations[i] > 0 && (uint64_t)durations[i] <= year_ms); /* x 1e6 fits ns */
    FUZZ_CHECK((uint64_t)cfg->throttle_ip_window_ms <= day_ms && cfg->throttle_ip_count <= 1000000);
    FUZZ_CHECK(cfg->max_connections >= 1 && cfg->max_connections <= (1u << 20));
}

static void ini_file(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.ini", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, data, size) == (ssize_t)size);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    char *argv[] = {"serve", "--config", path, NULL};
    gh_config_t cfg;
    char err[512] = "";
    int rc = gh_config_load(&cfg, 3, argv, devnull, err, sizeof err);
    check_loaded(rc, &cfg, err);
    close(fd);
}

static void command_line(const uint8_t *data, size_t size)
{
    char *buf = cstr(data, size);
    char *argv[34] = {"serve"};
    int argc = 1;
    /* Arguments are the NUL-separated pieces of the input. */
    for (size_t off = 0; off < size && argc < 33;) {
        argv[argc++] = buf + off;
        off += strlen(buf + off) + 1;
    }
    argv[argc] = NULL;
    gh_config_t cfg;
    char err[512] = "";
    int rc = gh_config_load(&cfg, argc, argv, devnull, err, sizeof err);
    check_loaded(rc, &cfg, err);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    if (!devnull)
        LLVMFuzzerInitialize(NULL, NULL);
    int mode = data[0] % 5;
    data++;
    size--;
    if (mode >= 3 && (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) ||
                      memmem(data, size, "/sys", 4)))
        return 0;
    char *s = cstr(data, size);
    switch (mode) {
    case 0:
        duration(s);
        break;
    case 1:
        size_value(s);
        break;
    case 2:
        listen_addr(s);
        break;
    case 3:
        ini_file(data, size);
        break;
    default:
        command_line(data, size);
    }
    free(s);
    return 0;
}
