/*
 * cli.c — the `gatehouse load` command: flags, the loopback-only rule, and the exit status.
 *
 * The one design decision: the target's address is checked before anything else happens, by
 * parsing the URL the way libcurl will (curl_url), and only 127.0.0.1, localhost and [::1] pass.
 * A load generator that could be pointed at someone else's service by a typo is a weapon; this one
 * refuses with exit 2 (and the engine checks again that the connection it got is on loopback).
 */
#include "load/load.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/config.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gatehouse load --url URL [flags]\n"
            "\n"
            "Drives a Gatehouse node on this machine with a scenario, samples its /metrics every\n"
            "second, and ends with a leak verdict. The target must be on 127.0.0.1, localhost or\n"
            "[::1]. Exit status: 0 pass (or inconclusive), 1 leak, 2 usage or connection error.\n"
            "\n"
            "  --url URL             the node, e.g. http://127.0.0.1:8080 (required)\n"
            "  --scenario S          churn (default): log in, --checks token checks, log out\n"
            "                        validate: token checks on sessions logged in up front\n"
            "                        mixed: checks, who-am-I, listings, failed logins, churn\n"
            "                        login-flood: logins with wrong passwords\n"
            "                        soak: churn at a fixed --rate (default 100/s) for long,\n"
            "                        in waves that fill the node with sessions and empty it\n"
            "  --duration D          how long to load (default 30s; soak 10m; at most 24h)\n"
            "  --warmup D            samples before this are left out of the slope\n"
            "                        (default 25%% of --duration within 5s..2m, at most half)\n"
            "  --concurrency C       virtual users, each with one keep-alive connection\n"
            "                        (default 16, at most 1024)\n"
            "  --rate R              open loop: R requests per second in total, latency measured\n"
            "                        from each request's intended send time; default closed loop\n"
            "  --users N             pool of users registered up front (default 100)\n"
            "  --checks K            token checks per churn cycle (default 5)\n"
            "  --wave D              soak: every D each virtual user logs in a batch of sessions,\n"
            "                        uses and logs out each, in step with the others (default 5s;\n"
            "                        0 = a steady churn)\n"
            "  --user-prefix P       pool user names are P0, P1, ... (default load-)\n"
            "  --admin-token T       register the pool through /v1/admin/users (needed when\n"
            "                        registration is closed); also --admin-token-file FILE\n"
            "  --max-leak RATE       leak threshold for the slope of RSS after the warm-up:\n"
            "                        SIZE/s, SIZE/min, SIZE/h, or SIZE/1k (per 1,000 session\n"
            "                        cycles). Default: 1MiB / fit window + 1KiB/s, from the\n"
            "                        measured noise floor (docs/BENCHMARKS.md)\n"
            "  --metrics-url URL     where the node's metrics are (default URL/metrics)\n"
            "  --timeout D           per request (default 10s)\n"
            "  --json FILE           write the result as JSON\n"
            "  --report FILE.html    write a self-contained HTML report with charts\n");
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int gh_load_parse_url(const char *url, char *base, size_t baselen, char *err, size_t errlen)
{
    int rc = GH_EINVAL;
    char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL, *fragment = NULL;
    CURLU *u = curl_url();
    if (!u) {
        set_err(err, errlen, "out of memory");
        return GH_ENOMEM;
    }
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        set_err(err, errlen, "'%s' is not an http:// URL", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        set_err(err, errlen, "'%s': expected http:// or https://", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        set_err(err, errlen, "'%s' has no host", url);
        goto out;
    }
    if (strcmp(host, "127.0.0.1") != 0 && strcasecmp(host, "localhost") != 0 &&
        strcmp(host, "[::1]") != 0) {
        set_err(err, errlen,
                "refusing %s: the target must be on this machine (127.0.0.1, localhost or [::1])",
                host);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK) {
        set_err(err, errlen, "'%s': no user, query or fragment expected", url);
        goto out;
    }
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n >= baselen) {
        set_err(err, errlen, "URL longer than %zu bytes", baselen - 1);
        goto out;
    }
    memcpy(base, url, n);
    base[n] = '\0';
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(user);
    curl_free(query);
    curl_free(fragment);
    curl_url_cleanup(u);
    return rc;
}

int gh_load_parse_leak(const char *s, double *bytes, gh_load_leak_unit_t *unit)
{
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || slash - s >= 64)
        return GH_EINVAL;
    char size[64];
    memcpy(size, s, (size_t)(slash - s));
    size[slash - s] = '\0';
    uint64_t b;
    if (gh_config_parse_size(size, &b) != 0)
        return GH_EINVAL;
    const char *per = slash + 1;
    if (strcmp(per, "s") == 0) {
        *bytes = (double)b;
        *unit = GH_LOAD_LEAK_PER_S;
    } else if (strcmp(per, "min") == 0) {
        *bytes = (double)b / 60.0;
        *unit = GH_LOAD_LEAK_PER_S;
    } else if (strcmp(per, "h") == 0) {
        *bytes = (double)b / 3600.0;
        *unit = GH_LOAD_LEAK_PER_S;
    } else if (strcmp(per, "1k") == 0) {
        *bytes = (double)b;
        *unit = GH_LOAD_LEAK_PER_1K;
    } else {
        return GH_EINVAL;
    }
    return 0;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return GH_EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static bool prefix_ok(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n >= GH_LOAD_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static int read_token_file(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return GH_EIO;
    int rc = fgets(out, (int)len, f) ? 0 : GH_EINVAL;
    fclose(f);
    size_t n = strlen(out);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return rc == 0 && n > 0 ? 0 : GH_EINVAL;
}

int gh_load_parse_args(gh_load_opts_t *o, int argc, char **argv, FILE *out, char *err,
                       size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->scenario = GH_LOAD_CHURN;
    o->warmup_ms = -1;
    o->timeout_ms = 10000;
    o->concurrency = 16;
    o->users = 100;
    o->checks = 5;
    o->max_leak = -1;
    snprintf(o->user_prefix, sizeof o->user_prefix, "load-");
    bool have_duration = false, have_rate = false, have_wave = false;
    char url[GH_LOAD_URL_MAX] = "", metrics[GH_LOAD_URL_MAX] = "";

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(out);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            set_err(err, errlen, "gatehouse load: unexpected argument '%s'", arg);
            return GH_EINVAL;
        }
        char name[48];
        const char *val;
        const char *eq = strchr(arg, '=');
        size_t nl = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (nl >= sizeof name) {
            set_err(err, errlen, "gatehouse load: unknown flag %s", arg);
            return GH_EINVAL;
        }
        memcpy(name, arg + 2, nl);
        name[nl] = '\0';
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            set_err(err, errlen, "gatehouse load: --%s: a value is expected", name);
            return GH_EINVAL;
        }
#define BAD(...)                                                                                   \
    do {                                                                                           \
        set_err(err, errlen, __VA_ARGS__);                                                         \
        return GH_EINVAL;                                                                          \
    } while (0)
        if (strcmp(name, "url") == 0) {
            if (snprintf(url, sizeof url, "%s", val) >= (int)sizeof url)
                BAD("gatehouse load: --url: longer than %zu bytes", sizeof url - 1);
        } else if (strcmp(name, "metrics-url") == 0) {
            if (snprintf(metrics, sizeof metrics, "%s", val) >= (int)sizeof metrics)
                BAD("gatehouse load: --metrics-url: longer than %zu bytes", sizeof metrics - 1);
        } else if (strcmp(name, "scenario") == 0) {
            int s = -1;
            for (int k = 0; k < GH_LOAD__SCENARIOS; k++)
                if (strcmp(val, gh_load_scenario_name((gh_load_scenario_t)k)) == 0)
                    s = k;
            if (s < 0)
                BAD("gatehouse load: --scenario: expected churn, validate, mixed, login-flood or "
                    "soak, got '%s'",
                    val);
            o->scenario = (gh_load_scenario_t)s;
        } else if (strcmp(name, "duration") == 0) {
            if (gh_config_parse_duration(val, &o->duration_ms) != 0 || o->duration_ms < 1000 ||
                o->duration_ms > GH_LOAD_DURATION_MAX)
                BAD("gatehouse load: --duration: expected a duration from 1s to 24h (like 30s, "
                    "10m), got '%s'",
                    val);
            have_duration = true;
        } else if (strcmp(name, "warmup") == 0) {
            if (gh_config_parse_duration(val, &o->warmup_ms) != 0)
                BAD("gatehouse load: --warmup: expected a duration (like 15s), got '%s'", val);
        } else if (strcmp(name, "wave") == 0) {
            if (gh_config_parse_duration(val, &o->wave_ms) != 0 ||
                (o->wave_ms != 0 && o->wave_ms < 100) || o->wave_ms > 3600000)
                BAD("gatehouse load: --wave: expected 0 or a duration from 100ms to 1h, got '%s'",
                    val);
            have_wave = true;
        } else if (strcmp(name, "timeout") == 0) {
            if (gh_config_parse_duration(val, &o->timeout_ms) != 0 || o->timeout_ms < 1 ||
                o->timeout_ms > 600000)
                BAD("gatehouse load: --timeout: expected a duration from 1ms to 10m, got '%s'",
                    val);
        } else if (strcmp(name, "concurrency") == 0) {
            if (parse_u32(val, 1, GH_LOAD_CONCURRENCY_MAX, &o->concurrency) != 0)
                BAD("gatehouse load: --concurrency: expected 1 to %u, got '%s'",
                    GH_LOAD_CONCURRENCY_MAX, val);
        } else if (strcmp(name, "users") == 0) {
            if (parse_u32(val, 1, GH_LOAD_USERS_MAX, &o->users) != 0)
                BAD("gatehouse load: --users: expected 1 to %u, got '%s'", GH_LOAD_USERS_MAX, val);
        } else if (strcmp(name, "checks") == 0) {
            if (parse_u32(val, 0, GH_LOAD_CHECKS_MAX, &o->checks) != 0)
                BAD("gatehouse load: --checks: expected 0 to %u, got '%s'", GH_LOAD_CHECKS_MAX,
                    val);
        } else if (strcmp(name, "rate") == 0) {
            char *end;
            errno = 0;
            double r = strtod(val, &end);
            if (strcmp(end, "/s") == 0)
                end += 2;
            if (errno || end == val || *end || !(r > 0) || r > GH_LOAD_RATE_MAX)
                BAD("gatehouse load: --rate: expected requests per second, more than 0 and at "
                    "most 1000000, got '%s'",
                    val);
            o->rate = r;
            have_rate = true;
        } else if (strcmp(name, "max-leak") == 0) {
            if (gh_load_parse_leak(val, &o->max_leak, &o->max_leak_unit) != 0)
                BAD("gatehouse load: --max-leak: expected SIZE/s, SIZE/min, SIZE/h or SIZE/1k "
                    "(like 64KiB/min), got '%s'",
                    val);
        } else if (strcmp(name, "json") == 0 || strcmp(name, "report") == 0) {
            char *dst = name[0] == 'j' ? o->json_path : o->report_path;
            if (!*val || strlen(val) >= GH_LOAD_PATH_MAX)
                BAD("gatehouse load: --%s: expected a file name", name);
            snprintf(dst, GH_LOAD_PATH_MAX, "%s", val);
        } else if (strcmp(name, "admin-token") == 0) {
            if (!*val || strlen(val) >= sizeof o->admin_token)
                BAD("gatehouse load: --admin-token: expected a token");
            snprintf(o->admin_token, sizeof o->admin_token, "%s", val);
        } else if (strcmp(name, "admin-token-file") == 0) {
            if (read_token_file(val, o->admin_token, sizeof o->admin_token) != 0)
                BAD("gatehouse load: --admin-token-file: cannot read a token from '%s'", val);
        } else if (strcmp(name, "user-prefix") == 0) {
            if (!prefix_ok(val))
                BAD("gatehouse load: --user-prefix: expected 1 to %d of [A-Za-z0-9._@-], got "
                    "'%s'",
                    GH_LOAD_PREFIX_MAX - 1, val);
            snprintf(o->user_prefix, sizeof o->user_prefix, "%s", val);
        } else {
            BAD("gatehouse load: unknown flag --%s (see gatehouse load --help)", name);
        }
#undef BAD
    }

    char why[256];
    if (!url[0]) {
        set_err(err, errlen, "gatehouse load: --url: required (like http://127.0.0.1:8080)");
        return GH_EINVAL;
    }
    if (gh_load_parse_url(url, o->url, sizeof o->url, why, sizeof why) != 0) {
        set_err(err, errlen, "gatehouse load: --url: %s", why);
        return GH_EINVAL;
    }
    if (!metrics[0] &&
        snprintf(metrics, sizeof metrics, "%s/metrics", o->url) >= (int)sizeof metrics) {
        set_err(err, errlen, "gatehouse load: --url: too long");
        return GH_EINVAL;
    }
    if (gh_load_parse_url(metrics, o->metrics_url, sizeof o->metrics_url, why, sizeof why) != 0) {
        set_err(err, errlen, "gatehouse load: --metrics-url: %s", why);
        return GH_EINVAL;
    }
    if (o->scenario == GH_LOAD_SOAK) {
        if (!have_duration)
            o->duration_ms = 10 * 60 * 1000;
        if (!have_rate)
            o->rate = 100;
        if (!have_wave)
            o->wave_ms = 5000;
    } else if (!have_duration) {
        o->duration_ms = 30 * 1000;
    }
    if (have_wave && o->scenario != GH_LOAD_SOAK) {
        set_err(err, errlen, "gatehouse load: --wave: only --scenario soak runs in waves");
        return GH_EINVAL;
    }
    if (o->warmup_ms >= o->duration_ms) {
        set_err(err, errlen, "gatehouse load: --warmup: must be shorter than --duration");
        return GH_EINVAL;
    }
    if (o->max_leak_unit == GH_LOAD_LEAK_PER_1K &&
        (o->scenario == GH_LOAD_VALIDATE || o->scenario == GH_LOAD_LOGIN_FLOOD)) {
        set_err(err, errlen,
                "gatehouse load: --max-leak: a threshold per 1k session cycles needs a scenario "
                "that completes cycles (churn, mixed or soak)");
        return GH_EINVAL;
    }
    return 0;
}

/* ---- allocation hooks: libcurl and jansson charge GH_MEM_OTHER like the rest of the tool ---- */

static void *load_malloc(size_t n)
{
    return gh_mem_alloc(GH_MEM_OTHER, n);
}

static void load_free(void *p)
{
    gh_mem_free(GH_MEM_OTHER, p);
}

static void *load_realloc(void *p, size_t n)
{
    return gh_mem_realloc(GH_MEM_OTHER, p, n);
}

static char *load_strdup(const char *s)
{
    return gh_mem_strdup(GH_MEM_OTHER, s);
}

static void *load_calloc(size_t count, size_t size)
{
    return gh_mem_calloc(GH_MEM_OTHER, count, size);
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int gh_load_main(int argc, char **argv)
{
    int status = 2;
    gh_load_result_t *res = NULL;
    char err[512];
    gh_load_opts_t *o = gh_mem_calloc(GH_MEM_OTHER, 1, sizeof *o);
    if (!o) {
        fprintf(stderr, "gatehouse load: out of memory\n");
        return 2;
    }
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, load_malloc, load_free, load_realloc, load_strdup,
                             load_calloc) != CURLE_OK) {
        fprintf(stderr, "gatehouse load: cannot initialise libcurl\n");
        gh_mem_free(GH_MEM_OTHER, o);
        return 2;
    }
    json_set_alloc_funcs(load_malloc, load_free);

    int rc = gh_load_parse_args(o, argc, argv, stdout, err, sizeof err);
    if (rc == 1) {
        status = 0;
        goto out;
    }
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    o->progress = isatty(STDERR_FILENO);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((rc = gh_load_result_new(o, &res)) != 0) {
        fprintf(stderr, "gatehouse load: out of memory\n");
        goto out;
    }
    /* The node's heap profile before and after (admin only): which call stacks grew. */
    char *heap0 = NULL, *heap1 = NULL;
    size_t heap0_len = 0, heap1_len = 0;
    bool heap_ok =
        gh_load_heap_fetch(o, &heap0, &heap0_len, res->heap.why, sizeof res->heap.why) == 0;
    if ((rc = gh_load_run(o, res, &stop_requested, err, sizeof err)) != 0) {
        fprintf(stderr, "%s\n", err);
        gh_mem_free(GH_MEM_OTHER, heap0);
        goto out;
    }
    if (heap_ok)
        heap_ok =
            gh_load_heap_fetch(o, &heap1, &heap1_len, res->heap.why, sizeof res->heap.why) == 0;
    if (heap_ok && heap0_len == 0 && heap1_len == 0)
        snprintf(res->heap.why, sizeof res->heap.why, "the node's heap profiler is off");
    else if (heap_ok && gh_load_heap_compare(heap0, heap0_len, heap1, heap1_len, &res->heap) != 0)
        snprintf(res->heap.why, sizeof res->heap.why, "out of memory");
    gh_mem_free(GH_MEM_OTHER, heap0);
    gh_mem_free(GH_MEM_OTHER, heap1);
    if ((rc = gh_load_analyse(o, res)) != 0) {
        fprintf(stderr, "gatehouse load: analysing the samples: %s\n", gh_strerror(rc));
        goto out;
    }
    gh_load_heap_explain(&res->heap, &res->memory);
    gh_load_print_summary(stdout, o, res);
    fflush(stdout);
    if (o->json_path[0] && gh_load_write_json(o->json_path, o, res) != 0) {
        fprintf(stderr, "gatehouse load: cannot write %s: %s\n", o->json_path, strerror(errno));
        goto out;
    }
    if (o->report_path[0] && gh_load_write_report(o->report_path, o, res) != 0) {
        fprintf(stderr, "gatehouse load: cannot write %s: %s\n", o->report_path, strerror(errno));
        goto out;
    }
    if (res->target_lost) {
        double t = res->nticks ? res->ticks[res->nticks - 1].t_s : 0;
        fprintf(stderr,
                "gatehouse load: the target stopped answering (only transport failures in the "
                "last seconds of the run, which ended at %.0f s)\n",
                t);
        goto out;
    }
    switch (res->memory.verdict) {
    case GH_LOAD_PASS:
        status = 0;
        break;
    case GH_LOAD_LEAK:
        status = 1;
        break;
    case GH_LOAD_INCONCLUSIVE:
        fprintf(stderr, "gatehouse load: verdict inconclusive: %s\n", res->memory.reason);
        status = 0;
        break;
    }
out:
    gh_load_result_free(&res);
    sodium_memzero(o->admin_token, sizeof o->admin_token);
    gh_mem_free(GH_MEM_OTHER, o);
    curl_global_cleanup();
    return status;
}
