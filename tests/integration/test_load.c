/*
 * test_load.c — `gatehouse load` against real nodes: a healthy node passes with plausible figures,
 * a node made to leak (tests/integration/leak_preload.c, preloaded into the server) gets `leak` and
 * exit 1, an unreachable URL and a non-loopback host exit 2 with one line, every scenario runs,
 * --json has the documented schema and --report carries its SVG charts.
 *
 * Durations: the two verdict runs are 20 s soaks with a 5 s warm-up, so the slope is fitted over
 * 15 s of samples. The default threshold scales with the fit window (1 MiB / window + 1 KiB/s,
 * docs/BENCHMARKS.md), which makes it ~70 KiB/s here. `pass` needs the whole 95% interval of the
 * slope under it, `leak` the whole interval over it: a healthy node measured about 4 KiB/s over
 * such windows, and the preloaded leak runs at 512 KiB/s, seven times the threshold. A 70 KiB/s
 * leak is 250 MB an hour, so a `pass` over 15 s still means "no leak that would hurt within hours";
 * the real gate (`make soak`, 60 s) and soaks before a deploy fit longer windows and catch slower
 * leaks. The soak runs at a fixed rate (open loop, 1,000 requests/s), so the figures the test
 * checks do not depend on how fast this machine is.
 *
 * The healthy run is made once and its JSON and HTML are checked by three tests; a test run alone
 * by name makes the run itself.
 *
 * Sanitizer builds (SANITIZER=address: this binary and the node under test come from the same build
 * dir): ASan holds freed memory in a quarantine of up to 256 MiB, so the RSS of a healthy node
 * grows by ~10 MiB/s under this load, by design. There the verdict says nothing about the code, so
 * the assertions on the verdict are left out and the leak test is skipped; everything else (the
 * engine, the figures, the JSON, the report, the exit codes of usage and connection errors) is
 * checked as usual.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <math.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

#define SOAK_SECONDS 20
#define SOAK_RATE 1000
/* The node's heap profiler is off under ASan (ASan owns malloc). */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_PROFILED 0
#else
#define HEAP_PROFILED 1
#endif
/* The soaks' nodes take this admin token, so `gatehouse load` reads their /debug/heap. */
#define SOAK_ADMIN "load-soak-admin-token"
#define SOAK_CONCURRENCY 8
#define LEAK_RATE (512 * 1024)

#if defined(__SANITIZE_ADDRESS__)
#define VERDICTS_MEAN_SOMETHING 0
#else
#define VERDICTS_MEAN_SOMETHING 1
#endif

typedef struct {
    ht_server_t srv;
    ht_run_t run;
    char dir[HT_PATH_MAX];
    char json[HT_PATH_MAX + 32];
    char html[HT_PATH_MAX + 32];
} fixture_t;

/* The healthy soak, shared by the tests that read its output. */
static fixture_t *healthy;
static bool healthy_done;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f || ht_tempdir(f->dir) != 0) {
        free(f);
        return -1;
    }
    snprintf(f->json, sizeof f->json, "%s/out.json", f->dir);
    snprintf(f->html, sizeof f->html, "%s/report.html", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ht_server_cleanup(&f->srv);
    ht_rmtree(f->dir);
    free(f);
    return 0;
}

#define FIX(state) ((fixture_t *)*(state))

static void url_of(const ht_server_t *s, char *out, size_t len)
{
    snprintf(out, len, "http://%s", s->addr);
}

/* A loopback port nothing listens on: bound once, then closed. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void expect_one_line_exit_2(const ht_run_t *r, const char *needle, int line)
{
    if (r->status != 2)
        fail_msg("line %d: exit %d, want 2; stderr: %s; stdout: %s", line, r->status, r->err,
                 r->out);
    if (ht_count_lines(r->err) != 1 || r->err[r->err_len - 1] != '\n')
        fail_msg("line %d: want exactly one line on stderr, got \"%s\"", line, r->err);
    if (needle && !strstr(r->err, needle))
        fail_msg("line %d: stderr does not say \"%s\": %s", line, needle, r->err);
}
#define EXPECT_EXIT_2(r, needle) expect_one_line_exit_2((r), (needle), __LINE__)

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: not JSON: %s (line %d)", path, e.text, e.line);
    return j;
}

static double jnum(json_t *root, const char *path)
{
    json_t *v = ht_jpath(root, path);
    if (!json_is_number(v))
        fail_msg("JSON: %s is not a number", path);
    return json_number_value(v);
}

static const char *jstr(json_t *root, const char *path)
{
    json_t *v = ht_jpath(root, path);
    if (!json_is_string(v))
        fail_msg("JSON: %s is not a string", path);
    return json_string_value(v);
}

/* Runs a soak against f->srv (started by the caller), writing f->json and f->html. */
static void run_soak(fixture_t *f, int timeout_ms)
{
    char url[96], duration[16], rate[16], conc[16];
    url_of(&f->srv, url, sizeof url);
    snprintf(duration, sizeof duration, "%ds", SOAK_SECONDS);
    snprintf(rate, sizeof rate, "%d", SOAK_RATE);
    snprintf(conc, sizeof conc, "%d", SOAK_CONCURRENCY);
    f->run.timeout_ms = timeout_ms;
    assert_int_equal(ht_run(&f->run, NULL, NULL, "load", "--url", url, "--scenario", "soak",
                            "--duration", duration, "--warmup", "5s", "--rate", rate,
                            "--concurrency", conc, "--json", f->json, "--report", f->html,
                            "--admin-token", SOAK_ADMIN, NULL),
                     0);
}

/* The healthy soak, made once. */
static fixture_t *healthy_run(void)
{
    if (healthy_done)
        return healthy;
    healthy = calloc(1, sizeof *healthy);
    assert_non_null(healthy);
    assert_int_equal(ht_tempdir(healthy->dir), 0);
    snprintf(healthy->json, sizeof healthy->json, "%s/out.json", healthy->dir);
    snprintf(healthy->html, sizeof healthy->html, "%s/report.html", healthy->dir);
    assert_int_equal(ht_server_start(&healthy->srv, "--admin-token", SOAK_ADMIN, NULL), 0);
    run_soak(healthy, (SOAK_SECONDS + 30) * 1000);
    ht_server_stop(&healthy->srv);
    healthy_done = true;
    return healthy;
}

static void healthy_node_passes_with_plausible_figures(void **state)
{
    (void)state;
    fixture_t *f = healthy_run();
    ht_run_t *r = &f->run;
    if (VERDICTS_MEAN_SOMETHING) {
        if (r->status != 0)
            fail_msg("exit %d, want 0; stderr: %s; stdout: %s", r->status, r->err, r->out);
        /* Not a TTY: no progress line, nothing on stderr at all for a pass. */
        assert_int_equal(r->err_len, 0);
        assert_non_null(strstr(r->out, "verdict         pass"));
    } else if (r->status != 0 && r->status != 1) {
        fail_msg("exit %d, want a verdict; stderr: %s; stdout: %s", r->status, r->err, r->out);
    }

    json_t *j = load_json(f->json);
    if (VERDICTS_MEAN_SOMETHING)
        assert_string_equal(jstr(j, "verdict"), "pass");
    double requests = jnum(j, "requests");
    double expected = (double)SOAK_RATE * SOAK_SECONDS;
    /* Open loop: what was scheduled is what is sent; a slow machine sends late, not less. */
    if (requests < expected * 0.9 || requests > expected * 1.02 + SOAK_CONCURRENCY)
        fail_msg("requests %.0f, scheduled %.0f", requests, expected);
    assert_true(jnum(j, "errors") == 0);
    /* Every churn cycle is login, 5 checks, logout: 7 requests. */
    double cycles = jnum(j, "cycles");
    if (cycles < requests / 7 - SOAK_CONCURRENCY - 1 || cycles > requests / 7 + SOAK_CONCURRENCY)
        fail_msg("cycles %.0f for %.0f requests", cycles, requests);
    assert_true(jnum(j, "answers_by_status.201") >= cycles);
    assert_true(jnum(j, "answers_by_status.204") == cycles);
    double p50 = jnum(j, "latency_ms.p50"), p90 = jnum(j, "latency_ms.p90"),
           p99 = jnum(j, "latency_ms.p99"), p999 = jnum(j, "latency_ms.p999"),
           max = jnum(j, "latency_ms.max");
    assert_true(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);
    /* The node's RSS is megabytes, not bytes or terabytes; one sample a second. */
    double start = jnum(j, "memory.start_bytes"), end = jnum(j, "memory.end_bytes");
    assert_true(start > 1e6 && start < 1e9 && end > 1e6 && end < 1e9);
    double samples = jnum(j, "memory.samples");
    assert_true(samples >= SOAK_SECONDS - 2 && samples <= SOAK_SECONDS + 2);
    if (VERDICTS_MEAN_SOMETHING)
        assert_true(jnum(j, "memory.slope_bytes_per_s") < jnum(j, "memory.max_leak.value"));
    /* Eight VUs hold at most eight sessions: churn ends what it starts. */
    assert_true(jnum(j, "memory.sessions_end") <= SOAK_CONCURRENCY);
    /* The node's heap profile was read; a pass names no stack in its reason (a cache that
     * filled during the run may be listed under "heap growth", with its bytes, but it is not
     * what the verdict is about). */
    if (HEAP_PROFILED) {
        assert_true(json_is_true(ht_jpath(j, "heap_growth.read")));
        assert_non_null(strstr(r->out, "heap growth     "));
        if (strstr(jstr(j, "reason"), "the heap grew most at"))
            fail_msg("a pass blames a stack: %s", r->out);
    }
    json_decref(j);
}

static void json_has_the_documented_schema(void **state)
{
    (void)state;
    fixture_t *f = healthy_run();
    json_t *j = load_json(f->json);
    /* The fields the issue documents, with their types. */
    const char *numbers[] = {"requests",
                             "errors",
                             "throughput_rps",
                             "latency_ms.p50",
                             "latency_ms.p90",
                             "latency_ms.p99",
                             "latency_ms.p999",
                             "latency_ms.max",
                             "memory.samples",
                             "memory.start_bytes",
                             "memory.end_bytes",
                             "memory.slope_bytes_per_s",
                             "memory.bytes_per_1k_cycles"};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        (void)jnum(j, numbers[i]);
    assert_true(json_is_integer(ht_jpath(j, "requests")));
    assert_true(json_is_integer(ht_jpath(j, "errors")));
    assert_true(json_is_integer(ht_jpath(j, "memory.samples")));
    const char *v = jstr(j, "verdict");
    assert_true(strcmp(v, "pass") == 0 || strcmp(v, "leak") == 0 || strcmp(v, "inconclusive") == 0);
    assert_int_equal(json_object_size(ht_jpath(j, "latency_ms")), 5);
    /* Throughput is requests over the elapsed time. */
    double rps = jnum(j, "throughput_rps"), el = jnum(j, "elapsed_s");
    assert_true(el >= SOAK_SECONDS && el < SOAK_SECONDS + 6);
    assert_true(rps > 0 && rps * el > jnum(j, "requests") * 0.99 &&
                rps * el < jnum(j, "requests") * 1.01);
    /* Per 1k cycles is the slope divided by the cycle rate. */
    double per1k = jnum(j, "memory.bytes_per_1k_cycles"),
           slope = jnum(j, "memory.slope_bytes_per_s"), cps = jnum(j, "memory.cycles_per_s");
    assert_true(cps > 0);
    assert_true(fabs(per1k - slope / cps * 1000) <= 1e-6 * fabs(per1k) + 1e-9);
    json_decref(j);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void report_has_its_charts(void **state)
{
    (void)state;
    fixture_t *f = healthy_run();
    FILE *fp = fopen(f->html, "r");
    assert_non_null(fp);
    static char html[1 << 20];
    size_t n = fread(html, 1, sizeof html - 1, fp);
    fclose(fp);
    html[n] = '\0';
    assert_true(n > 0 && n < sizeof html - 1);
    assert_true(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(html, "</html>"));
    /* The charts the issue asks for, each an inline SVG with a drawn series. */
    const char *charts[] = {"chart-memory", "chart-sessions", "chart-throughput",
                            "chart-latency\""};
    for (size_t i = 0; i < sizeof charts / sizeof charts[0]; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "<svg id=\"%s", charts[i]);
        const char *svg = strstr(html, needle);
        if (!svg) {
            fail_msg("the report has no %s", charts[i]);
            continue;
        }
        const char *end = strstr(svg, "</svg>");
        const char *line = strstr(svg, "<polyline");
        assert_non_null(end);
        assert_true(line && line < end);
        /* A series with points in it, not an empty polyline. */
        const char *pts = strstr(line, "points=\"");
        assert_true(pts && pts[8] >= '0' && pts[8] <= '9');
    }
    assert_true(count_of(html, "<svg") >= 4);
    /* Self-contained: nothing is fetched from anywhere. */
    assert_null(strstr(html, "<script"));
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "<link"));
    assert_non_null(
        strstr(html, VERDICTS_MEAN_SOMETHING ? "verdict: <b>pass</b>" : "verdict: <b>"));
}

/* The preload library next to the binary under test (BUILD/tests/integration/leak_preload.so). */
static void leak_library(char *out, size_t len)
{
    const char *bin = getenv("GATEHOUSE_BIN");
    if (!bin || !*bin)
        bin = "build/gatehouse";
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", bin);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char rel[PATH_MAX + 64];
    snprintf(rel, sizeof rel, "%s/tests/integration/leak_preload.so", dir);
    if (!realpath(rel, out))
        fail_msg("%s is missing: make test-integration builds it", rel);
    (void)len;
}

static void leaking_node_gives_leak_and_exit_1(void **state)
{
    fixture_t *f = FIX(state);
    if (!VERDICTS_MEAN_SOMETHING)
        skip(); /* ASan's quarantine grows faster than the leak; see the top of the file */
    char lib[PATH_MAX], preload[PATH_MAX + 16], rate[64];
    leak_library(lib, sizeof lib);
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
    snprintf(rate, sizeof rate, "GH_TEST_LEAK_RATE=%d", LEAK_RATE);
    f->srv.env[0] = preload;
    f->srv.env[1] = rate;
    assert_int_equal(ht_server_start(&f->srv, "--admin-token", SOAK_ADMIN, NULL), 0);
    run_soak(f, (SOAK_SECONDS + 30) * 1000);
    ht_run_t *r = &f->run;
    if (r->status != 1)
        fail_msg("exit %d, want 1; stderr: %s; stdout: %s", r->status, r->err, r->out);
    assert_non_null(strstr(r->out, "verdict         leak"));
    json_t *j = load_json(f->json);
    assert_string_equal(jstr(j, "verdict"), "leak");
    double slope = jnum(j, "memory.slope_bytes_per_s");
    /* The slope is the leak's rate, give or take the node's own noise. */
    if (slope < LEAK_RATE * 0.7 || slope > LEAK_RATE * 1.5)
        fail_msg("slope %.0f B/s for a leak of %d B/s", slope, LEAK_RATE);
    /* Nothing of it is accounted, and the report says so. */
    assert_string_equal(jstr(j, "memory.growing"), "unaccounted");
    assert_true(jnum(j, "memory.unexplained_slope_bytes_per_s") > LEAK_RATE * 0.7);
    assert_true(jnum(j, "errors") == 0);
    /* The node's heap profile names the function that leaks, in the summary, the verdict's
     * reason, the JSON and the report. */
    if (!strstr(r->out, "(leak_preload.so)") && !strstr(r->out, "leak_main"))
        fail_msg("the summary names no leaking stack: %s", r->out);
    const char *reason = jstr(j, "reason");
    if (!strstr(reason, "the heap grew most at leak_main"))
        fail_msg("reason: %s", reason);
    const char *top = jstr(j, "heap_growth.stacks.0.stack");
    assert_true(strncmp(top, "leak_main", 9) == 0);
    /* the largest part of the heap's growth; the rest is caches filling over the run (SQLite's
     * page cache under the audit trail's writes) */
    if (!(jnum(j, "heap_growth.stacks.0.share") >= 0.5))
        fail_msg("leak_main has %.0f%% of the heap's growth: %s",
                 100 * jnum(j, "heap_growth.stacks.0.share"), r->out);
    json_decref(j);
    FILE *fp = fopen(f->html, "r");
    assert_non_null(fp);
    static char html[1 << 20];
    size_t n = fread(html, 1, sizeof html - 1, fp);
    fclose(fp);
    html[n] = '\0';
    assert_non_null(strstr(html, "verdict: <b>leak</b>"));
    assert_non_null(strstr(html, "<code class=\"stack\">leak_main"));
}

static void unreachable_url_exits_2_with_one_line(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    r->timeout_ms = 10000;
    assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", url, "--duration", "5s", NULL), 0);
    EXPECT_EXIT_2(r, "cannot reach");
    assert_non_null(strstr(r->err, url));
    assert_int_equal(r->out_len, 0);
}

static void non_loopback_hosts_are_refused(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    /* TEST-NET and public names would hang or send traffic away if they were tried: the short
     * run limit turns any attempt into a failure. */
    const char *urls[] = {"http://192.0.2.1:8080",
                          "http://example.com",
                          "http://127.0.0.2:8080",
                          "http://[::2]:8080",
                          "http://localhost.example.com:8080",
                          "http://0.0.0.0:8080",
                          "ftp://127.0.0.1/",
                          "http://user@127.0.0.1:1"};
    r->timeout_ms = 3000;
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", urls[i], NULL), 0);
        EXPECT_EXIT_2(r, "--url");
    }
    assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", "http://127.0.0.1:1", "--metrics-url",
                            "http://192.0.2.1/metrics", NULL),
                     0);
    EXPECT_EXIT_2(r, "--metrics-url");
    assert_non_null(strstr(r->err, "refusing"));
}

static void usage_errors_exit_2_naming_the_flag(void **state)
{
    ht_run_t *r = &FIX(state)->run;
    r->timeout_ms = 3000;
    struct {
        const char *flag, *value;
    } cases[] = {
        {"--scenario", "stampede"}, {"--duration", "forever"}, {"--duration", "25h"},
        {"--concurrency", "0"},     {"--rate", "-5"},          {"--max-leak", "lots"},
        {"--users", "many"},        {"--warmup", "1m"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", "http://127.0.0.1:1", cases[i].flag,
                                cases[i].value, NULL),
                         0);
        EXPECT_EXIT_2(r, cases[i].flag);
    }
    /* --url is required; --help explains every flag. */
    assert_int_equal(ht_run(r, NULL, NULL, "load", NULL), 0);
    EXPECT_EXIT_2(r, "--url");
    assert_int_equal(ht_run(r, NULL, NULL, "load", "--help", NULL), 0);
    assert_int_equal(r->status, 0);
    assert_non_null(strstr(r->out, "--max-leak"));
    assert_non_null(strstr(r->out, "login-flood"));
}

/* With registration closed the pool is registered through the admin route, given the token; without
 * it the setup is refused and the tool says how to fix it, in one line, exit 2. */
static void closed_registration_needs_the_admin_token(void **state)
{
    fixture_t *f = FIX(state);
    assert_int_equal(
        ht_server_start(&f->srv, "--registration", "closed", "--admin-token", "load-admin", NULL),
        0);
    char url[96];
    url_of(&f->srv, url, sizeof url);
    ht_run_t *r = &f->run;
    r->timeout_ms = 20000;
    assert_int_equal(
        ht_run(r, NULL, NULL, "load", "--url", url, "--duration", "2s", "--users", "10", NULL), 0);
    EXPECT_EXIT_2(r, "--admin-token");
    assert_non_null(strstr(r->err, "registration_closed"));
    assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", url, "--duration", "2s", "--users",
                            "10", "--admin-token", "wrong", NULL),
                     0);
    EXPECT_EXIT_2(r, "admin token was refused");
    assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", url, "--duration", "2s", "--users",
                            "10", "--admin-token", "load-admin", "--json", f->json, NULL),
                     0);
    if (r->status != 0)
        fail_msg("exit %d; stderr: %s", r->status, r->err);
    json_t *j = load_json(f->json);
    assert_true(jnum(j, "errors") == 0 && jnum(j, "cycles") > 0);
    json_decref(j);
    /* The pool exists now: the admin API lists load-0 .. load-9. */
    ht_response_t *resp = calloc(1, sizeof *resp);
    assert_non_null(resp);
    assert_int_equal(ht_get(&f->srv, "/v1/admin/users?limit=100", "load-admin", resp), 200);
    long n = ht_jsize(resp, "users");
    free(resp);
    assert_int_equal(n, 10);
}

/* Every scenario drives the node briefly with the answers it should get and no error. Three
 * seconds give no verdict (too few samples): that is `inconclusive`, exit 0, said on stderr. */
static void every_scenario_runs(void **state)
{
    fixture_t *f = FIX(state);
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    char url[96];
    url_of(&f->srv, url, sizeof url);
    struct {
        const char *scenario;
        const char *statuses[5]; /* answers that must appear */
    } cases[] = {
        {"churn", {"201", "200", "204"}},
        {"validate", {"200"}},
        {"mixed", {"201", "200", "204", "401"}},
        {"login-flood", {"401"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ht_run_t *r = &f->run;
        r->timeout_ms = 30000;
        assert_int_equal(ht_run(r, NULL, NULL, "load", "--url", url, "--scenario",
                                cases[i].scenario, "--duration", "3s", "--concurrency", "4",
                                "--users", "20", "--json", f->json, NULL),
                         0);
        if (r->status != 0)
            fail_msg("%s: exit %d; stderr: %s", cases[i].scenario, r->status, r->err);
        assert_non_null(strstr(r->err, "inconclusive"));
        json_t *j = load_json(f->json);
        assert_string_equal(jstr(j, "scenario"), cases[i].scenario);
        assert_string_equal(jstr(j, "verdict"), "inconclusive");
        if (jnum(j, "errors") != 0)
            fail_msg("%s: %.0f errors: %s", cases[i].scenario, jnum(j, "errors"), r->out);
        assert_true(jnum(j, "requests") > 0);
        for (size_t k = 0; k < 5 && cases[i].statuses[k]; k++) {
            char path[64];
            snprintf(path, sizeof path, "answers_by_status.%s", cases[i].statuses[k]);
            if (!json_is_integer(ht_jpath(j, path)))
                fail_msg("%s: no %s answer: %s", cases[i].scenario, cases[i].statuses[k], r->out);
        }
        json_decref(j);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(usage_errors_exit_2_naming_the_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(non_loopback_hosts_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(unreachable_url_exits_2_with_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(every_scenario_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(closed_registration_needs_the_admin_token, setup, teardown),
        cmocka_unit_test_setup_teardown(healthy_node_passes_with_plausible_figures, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(json_has_the_documented_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(report_has_its_charts, setup, teardown),
        cmocka_unit_test_setup_teardown(leaking_node_gives_leak_and_exit_1, setup, teardown),
    };
    /* A sanitizer build refuses a preloaded library ahead of its runtime unless told not to. */
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (healthy) {
        ht_server_cleanup(&healthy->srv);
        ht_rmtree(healthy->dir);
        free(healthy);
    }
    return rc;
}
