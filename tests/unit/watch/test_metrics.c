/* test_metrics.c — the registry renders exact Prometheus text, bounded and fully accounted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "watch/metrics.h"

static const char *const routes[] = {"/a", "/b/{id}"};
static const char *const codes[] = {"200", "404"};
static const gh_metric_label_t route_code[] = {
    {.name = "route", .values = routes, .nvalues = 2},
    {.name = "code", .values = codes, .nvalues = 2},
};
static const double small_buckets[] = {0.125, 1};

static char *render(gh_metrics_t *m)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gh_metrics_render(m, GH_METRICS_RENDER_MAX, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void tiny_registry_renders_exactly(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    gh_metric_t *req = NULL, *up = NULL, *lat = NULL;
    assert_int_equal(gh_metrics_create(&m), 0);
    gh_metric_desc_t d_req = {.name = "t_requests_total",
                              .help = "Requests served.",
                              .type = GH_METRIC_COUNTER,
                              .labels = route_code,
                              .nlabels = 2};
    gh_metric_desc_t d_up = {.name = "t_up", .help = "Whether it is up.", .type = GH_METRIC_GAUGE};
    gh_metric_desc_t d_lat = {.name = "t_latency_seconds",
                              .help = "Latency.",
                              .type = GH_METRIC_HISTOGRAM,
                              .labels = route_code,
                              .nlabels = 1,
                              .buckets = small_buckets,
                              .nbuckets = 2};
    assert_int_equal(gh_metrics_add(m, &d_req, &req), 0);
    assert_int_equal(gh_metrics_add(m, &d_up, &up), 0);
    assert_int_equal(gh_metrics_add(m, &d_lat, &lat), 0);
    assert_int_equal(gh_metric_nseries(req), 4);
    assert_int_equal(gh_metric_nseries(lat), 2);

    gh_metric_add(req, GH_METRIC_AT(req, 0, 0), 3);
    gh_metric_inc(req, GH_METRIC_AT(req, 1, 1));
    gh_metric_inc(req, GH_METRIC_AT(req, 1, 1));
    gh_metric_inc(req, GH_METRIC_AT(req, 1, 0));
    gh_metric_set(up, 0, 1);
    gh_metric_observe(lat, 0, 0.0625);
    gh_metric_observe(lat, 0, 0.5);
    gh_metric_observe_ns(lat, 0, 4000000000);

    char *text = render(m);
    assert_string_equal(text, "# HELP t_requests_total Requests served.\n"
                              "# TYPE t_requests_total counter\n"
                              "t_requests_total{route=\"/a\",code=\"200\"} 3\n"
                              "t_requests_total{route=\"/a\",code=\"404\"} 0\n"
                              "t_requests_total{route=\"/b/{id}\",code=\"200\"} 1\n"
                              "t_requests_total{route=\"/b/{id}\",code=\"404\"} 2\n"
                              "# HELP t_up Whether it is up.\n"
                              "# TYPE t_up gauge\n"
                              "t_up 1\n"
                              "# HELP t_latency_seconds Latency.\n"
                              "# TYPE t_latency_seconds histogram\n"
                              "t_latency_seconds_bucket{route=\"/a\",le=\"0.125\"} 1\n"
                              "t_latency_seconds_bucket{route=\"/a\",le=\"1\"} 2\n"
                              "t_latency_seconds_bucket{route=\"/a\",le=\"+Inf\"} 3\n"
                              "t_latency_seconds_sum{route=\"/a\"} 4.5625\n"
                              "t_latency_seconds_count{route=\"/a\"} 3\n"
                              "t_latency_seconds_bucket{route=\"/b/{id}\",le=\"0.125\"} 0\n"
                              "t_latency_seconds_bucket{route=\"/b/{id}\",le=\"1\"} 0\n"
                              "t_latency_seconds_bucket{route=\"/b/{id}\",le=\"+Inf\"} 0\n"
                              "t_latency_seconds_sum{route=\"/b/{id}\"} 0\n"
                              "t_latency_seconds_count{route=\"/b/{id}\"} 0\n");
    gh_metrics_text_free(&text);
    assert_null(text);

    /* Reading back gives what the render showed. */
    assert_true(gh_metric_value(req, GH_METRIC_AT(req, 1, 1)) == 2);
    assert_true(gh_metric_total(req) == 6);
    assert_true(gh_metric_value(lat, 0) == 3);
    assert_true(gh_metric_sum(lat, 0) == 4.5625);
    assert_int_equal(gh_metric_label_index(req, 1, "404"), 1);
    assert_int_equal(gh_metric_label_index(req, 1, "500"), -1);
    assert_int_equal(gh_metric_label_index(req, 2, "200"), -1);
    gh_metrics_destroy(&m);
    assert_null(m);
}

static void label_values_and_help_are_escaped(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    static const char *const odd[] = {"a\"b\\c\nd"};
    gh_metric_label_t l = {.name = "path", .values = odd, .nvalues = 1};
    gh_metric_desc_t d = {.name = "t_odd_total",
                          .help = "Back\\slash and \"quotes\".",
                          .type = GH_METRIC_COUNTER,
                          .labels = &l,
                          .nlabels = 1};
    gh_metric_t *f = NULL;
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &d, &f), 0);
    gh_metric_inc(f, 0);
    char *text = render(m);
    /* HELP escapes backslash only (quotes stay); label values escape \, " and newline. */
    assert_string_equal(text, "# HELP t_odd_total Back\\\\slash and \"quotes\".\n"
                              "# TYPE t_odd_total counter\n"
                              "t_odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

static void buckets_are_cumulative_and_inclusive(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    gh_metric_t *h = NULL;
    static const double b[] = {1, 2, 4};
    gh_metric_desc_t d = {
        .name = "t_h", .help = "h.", .type = GH_METRIC_HISTOGRAM, .buckets = b, .nbuckets = 3};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &d, &h), 0);
    /* An observation equal to a bound belongs to that bucket (le = less or equal). */
    const double obs[] = {0.5, 1, 1.5, 2, 3, 4, 100, -1};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        gh_metric_observe(h, 0, obs[i]);
    gh_metric_observe(h, 0, NAN); /* ignored */
    char *text = render(m);
    assert_string_equal(text, "# HELP t_h h.\n"
                              "# TYPE t_h histogram\n"
                              "t_h_bucket{le=\"1\"} 3\n"
                              "t_h_bucket{le=\"2\"} 5\n"
                              "t_h_bucket{le=\"4\"} 7\n"
                              "t_h_bucket{le=\"+Inf\"} 8\n"
                              "t_h_sum 111\n"
                              "t_h_count 8\n");
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

static void gauge_values_format_as_prometheus_expects(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    gh_metric_t *g = NULL;
    static const char *const which[] = {"inf", "neginf", "nan", "tenth", "nano", "big", "neg"};
    gh_metric_label_t l = {.name = "v", .values = which, .nvalues = 7};
    gh_metric_desc_t d = {
        .name = "t_g", .help = "g.", .type = GH_METRIC_GAUGE, .labels = &l, .nlabels = 1};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &d, &g), 0);
    gh_metric_set(g, 0, INFINITY);
    gh_metric_set(g, 1, -INFINITY);
    gh_metric_set(g, 2, NAN);
    gh_metric_set(g, 3, 0.1);
    gh_metric_set(g, 4, 1e-9);
    gh_metric_set(g, 5, 12345678901234567890.0);
    gh_metric_gauge_add(g, 6, 2.5);
    gh_metric_gauge_add(g, 6, -5);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_g g.\n"
                              "# TYPE t_g gauge\n"
                              "t_g{v=\"inf\"} +Inf\n"
                              "t_g{v=\"neginf\"} -Inf\n"
                              "t_g{v=\"nan\"} NaN\n"
                              "t_g{v=\"tenth\"} 0.1\n"
                              "t_g{v=\"nano\"} 1e-09\n"
                              "t_g{v=\"big\"} 1.2345678901234567e+19\n"
                              "t_g{v=\"neg\"} -2.5\n");
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

static int collect_components(void *ctx, double *values, size_t n)
{
    const double *src = ctx;
    for (size_t i = 0; i < n; i++)
        values[i] = src[i];
    return 0;
}

static int collect_unknown(void *ctx, double *values, size_t n)
{
    (void)ctx;
    (void)values;
    (void)n;
    return -1;
}

static void callback_families_fill_every_series(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    static const char *const comps[] = {"sessions", "users", "http"};
    gh_metric_label_t l = {.name = "component", .values = comps, .nvalues = 3};
    double owned[3] = {1024, 0, 65536};
    gh_metric_desc_t mem = {.name = "t_memory_bytes",
                            .help = "Accounted bytes.",
                            .type = GH_METRIC_GAUGE,
                            .labels = &l,
                            .nlabels = 1,
                            .collect = collect_components,
                            .collect_ctx = owned};
    gh_metric_desc_t gone = {.name = "t_unknown",
                             .help = "Not known now.",
                             .type = GH_METRIC_GAUGE,
                             .collect = collect_unknown};
    gh_metric_desc_t ends = {.name = "t_ended_total",
                             .help = "Ended.",
                             .type = GH_METRIC_COUNTER,
                             .labels = &l,
                             .nlabels = 1,
                             .collect = collect_components,
                             .collect_ctx = owned,
                             .flags = GH_METRIC_SKIP_ZERO};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &mem, NULL), 0);
    assert_int_equal(gh_metrics_add(m, &gone, NULL), 0);
    assert_int_equal(gh_metrics_add(m, &ends, NULL), 0);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_memory_bytes Accounted bytes.\n"
                              "# TYPE t_memory_bytes gauge\n"
                              "t_memory_bytes{component=\"sessions\"} 1024\n"
                              "t_memory_bytes{component=\"users\"} 0\n"
                              "t_memory_bytes{component=\"http\"} 65536\n"
                              "# HELP t_ended_total Ended.\n"
                              "# TYPE t_ended_total counter\n"
                              "t_ended_total{component=\"sessions\"} 1024\n"
                              "t_ended_total{component=\"http\"} 65536\n");
    gh_metrics_text_free(&text);
    /* Values are read at render time, not at registration. */
    owned[1] = 7;
    text = render(m);
    assert_non_null(strstr(text, "t_memory_bytes{component=\"users\"} 7\n"));
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

static void skip_zero_leaves_out_untouched_series(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    gh_metric_t *c = NULL, *h = NULL;
    gh_metric_desc_t dc = {.name = "t_c_total",
                           .help = "c.",
                           .type = GH_METRIC_COUNTER,
                           .labels = route_code,
                           .nlabels = 2,
                           .flags = GH_METRIC_SKIP_ZERO};
    gh_metric_desc_t dh = {.name = "t_wait_seconds",
                           .help = "h.",
                           .type = GH_METRIC_HISTOGRAM,
                           .labels = route_code,
                           .nlabels = 1,
                           .buckets = small_buckets,
                           .nbuckets = 1,
                           .flags = GH_METRIC_SKIP_ZERO};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &dc, &c), 0);
    assert_int_equal(gh_metrics_add(m, &dh, &h), 0);
    gh_metric_inc(c, GH_METRIC_AT(c, 1, 0));
    gh_metric_observe(h, 1, 0.25);
    char *text = render(m);
    assert_string_equal(text, "# HELP t_c_total c.\n"
                              "# TYPE t_c_total counter\n"
                              "t_c_total{route=\"/b/{id}\",code=\"200\"} 1\n"
                              "# HELP t_wait_seconds h.\n"
                              "# TYPE t_wait_seconds histogram\n"
                              "t_wait_seconds_bucket{route=\"/b/{id}\",le=\"0.125\"} 0\n"
                              "t_wait_seconds_bucket{route=\"/b/{id}\",le=\"+Inf\"} 1\n"
                              "t_wait_seconds_sum{route=\"/b/{id}\"} 0.25\n"
                              "t_wait_seconds_count{route=\"/b/{id}\"} 1\n");
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

static void bad_registrations_are_refused(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    assert_int_equal(gh_metrics_create(&m), 0);
    size_t base = gh_mem_bytes(GH_MEM_METRICS);
    static const double unsorted[] = {1, 0.5};
    static const double with_inf[] = {1, INFINITY};
    static const char *const dup[] = {"x", "x"};
    static const char *const empty[] = {""};
    const char *many_values[100];
    char names[100][12];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "%d", i);
        many_values[i] = names[i];
    }
    gh_metric_label_t le = {.name = "le", .values = codes, .nvalues = 2};
    gh_metric_label_t reserved = {.name = "__x", .values = codes, .nvalues = 2};
    gh_metric_label_t dupv = {.name = "x", .values = dup, .nvalues = 2};
    gh_metric_label_t emptyv = {.name = "x", .values = empty, .nvalues = 1};
    gh_metric_label_t none = {.name = "x", .values = codes, .nvalues = 0};
    gh_metric_label_t big[3] = {{.name = "a", .values = many_values, .nvalues = 100},
                                {.name = "b", .values = many_values, .nvalues = 100},
                                {.name = "c", .values = many_values, .nvalues = 100}};
    gh_metric_label_t twice[2] = {{.name = "a", .values = codes, .nvalues = 2},
                                  {.name = "a", .values = routes, .nvalues = 2}};
    struct {
        gh_metric_desc_t d;
        int rc;
    } cases[] = {
        {{.name = "", .help = "", .type = GH_METRIC_GAUGE}, GH_EINVAL},
        {{.name = "1abc", .help = "", .type = GH_METRIC_GAUGE}, GH_EINVAL},
        {{.name = "a-b", .help = "", .type = GH_METRIC_GAUGE}, GH_EINVAL},
        {{.name = "ok", .help = "two\nlines", .type = GH_METRIC_GAUGE}, GH_EINVAL},
        {{.name = "ok", .help = "", .type = 0}, GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_HISTOGRAM, .labels = &le, .nlabels = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = &reserved, .nlabels = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = &dupv, .nlabels = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = &emptyv, .nlabels = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = &none, .nlabels = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = twice, .nlabels = 2},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_GAUGE, .labels = big, .nlabels = 3},
         GH_ERANGE},
        {{.name = "ok",
          .help = "",
          .type = GH_METRIC_HISTOGRAM,
          .buckets = unsorted,
          .nbuckets = 2},
         GH_EINVAL},
        {{.name = "ok",
          .help = "",
          .type = GH_METRIC_HISTOGRAM,
          .buckets = with_inf,
          .nbuckets = 2},
         GH_EINVAL},
        {{.name = "ok",
          .help = "",
          .type = GH_METRIC_GAUGE,
          .buckets = small_buckets,
          .nbuckets = 1},
         GH_EINVAL},
        {{.name = "ok", .help = "", .type = GH_METRIC_HISTOGRAM, .collect = collect_unknown},
         GH_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gh_metric_t *f = (gh_metric_t *)&cases[i];
        assert_int_equal(gh_metrics_add(m, &cases[i].d, &f), cases[i].rc);
        assert_null(f);
    }
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), base);
    gh_metric_desc_t good = {.name = "ok", .help = "", .type = GH_METRIC_GAUGE};
    assert_int_equal(gh_metrics_add(m, &good, NULL), 0);
    assert_int_equal(gh_metrics_add(m, &good, NULL), GH_EEXISTS);
    gh_metrics_destroy(&m);
}

static void render_respects_its_maximum(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    gh_metric_desc_t d = {.name = "t_c_total",
                          .help = "c.",
                          .type = GH_METRIC_COUNTER,
                          .labels = route_code,
                          .nlabels = 2};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &d, NULL), 0);
    size_t base = gh_mem_bytes(GH_MEM_METRICS);
    char *text = render(m);
    size_t full = strlen(text);
    gh_metrics_text_free(&text);

    size_t len = 99;
    text = (char *)"sentinel";
    assert_int_equal(gh_metrics_render(m, full - 1, &text, &len), GH_ETOOBIG);
    assert_null(text);
    assert_int_equal(len, 0);
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), base);
    /* Exactly the maximum fits. */
    assert_int_equal(gh_metrics_render(m, full, &text, &len), 0);
    assert_int_equal(len, full);
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

/* ------------------------------------------------------------ concurrency ---- */

#define PER_THREAD 200000

typedef struct {
    gh_metric_t *counter;
    gh_metric_t *gauge;
    gh_metric_t *hist;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        gh_metric_inc(h->counter, GH_METRIC_AT(h->counter, 1, 0));
        gh_metric_gauge_add(h->gauge, 0, 1);
        gh_metric_observe(h->hist, 0, (i & 1) ? 0.5 : 2); /* sum stays an exact integer */
    }
    return NULL;
}

static void *render_loop(void *arg)
{
    gh_metrics_t *m = arg;
    for (int i = 0; i < 200; i++) {
        char *text = NULL;
        size_t len;
        if (gh_metrics_render(m, GH_METRICS_RENDER_MAX, &text, &len) == 0)
            gh_metrics_text_free(&text);
    }
    return NULL;
}

static void concurrent_updates_sum_exactly(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    hammer_t h = {0};
    gh_metric_desc_t dc = {.name = "t_c_total",
                           .help = "c.",
                           .type = GH_METRIC_COUNTER,
                           .labels = route_code,
                           .nlabels = 2};
    gh_metric_desc_t dg = {.name = "t_g", .help = "g.", .type = GH_METRIC_GAUGE};
    gh_metric_desc_t dh = {.name = "t_wait_seconds",
                           .help = "h.",
                           .type = GH_METRIC_HISTOGRAM,
                           .buckets = small_buckets,
                           .nbuckets = 2};
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add(m, &dc, &h.counter), 0);
    assert_int_equal(gh_metrics_add(m, &dg, &h.gauge), 0);
    assert_int_equal(gh_metrics_add(m, &dh, &h.hist), 0);
    pthread_t t[3];
    assert_int_equal(pthread_create(&t[0], NULL, hammer, &h), 0);
    assert_int_equal(pthread_create(&t[1], NULL, hammer, &h), 0);
    assert_int_equal(pthread_create(&t[2], NULL, render_loop, m), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(gh_metric_value(h.counter, GH_METRIC_AT(h.counter, 1, 0)) == 2.0 * PER_THREAD);
    assert_true(gh_metric_total(h.counter) == 2.0 * PER_THREAD);
    assert_true(gh_metric_value(h.gauge, 0) == 2.0 * PER_THREAD);
    assert_true(gh_metric_value(h.hist, 0) == 2.0 * PER_THREAD);
    assert_true(gh_metric_sum(h.hist, 0) == (0.5 + 2) * PER_THREAD);
    char *text = render(m);
    char want[128];
    snprintf(want, sizeof want, "t_wait_seconds_bucket{le=\"1\"} %d\n", PER_THREAD);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof want, "t_wait_seconds_count %d\n", 2 * PER_THREAD);
    assert_non_null(strstr(text, want));
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

/* ----------------------------------------------------------------- memory ---- */

/* Builds a registry with every kind of family and renders it once. */
static int build_and_render(gh_metrics_t **out, char **text)
{
    static double owned[3] = {1, 2, 3};
    static const char *const comps[] = {"sessions", "users", "http"};
    gh_metric_label_t l = {.name = "component", .values = comps, .nvalues = 3};
    gh_metric_desc_t ds[] = {
        {.name = "t_c_total",
         .help = "c.",
         .type = GH_METRIC_COUNTER,
         .labels = route_code,
         .nlabels = 2},
        {.name = "t_g", .help = "g.", .type = GH_METRIC_GAUGE},
        {.name = "t_wait_seconds",
         .help = "h.",
         .type = GH_METRIC_HISTOGRAM,
         .labels = route_code,
         .nlabels = 1,
         .buckets = gh_metric_latency_buckets,
         .nbuckets = gh_metric_latency_nbuckets},
        {.name = "t_memory_bytes",
         .help = "m.",
         .type = GH_METRIC_GAUGE,
         .labels = &l,
         .nlabels = 1,
         .collect = collect_components,
         .collect_ctx = owned},
    };
    gh_metrics_t *m = NULL;
    size_t len;
    int rc = gh_metrics_create(&m);
    if (rc)
        goto out;
    for (size_t i = 0; i < sizeof ds / sizeof ds[0] && !rc; i++)
        rc = gh_metrics_add(m, &ds[i], NULL);
    if (!rc)
        rc = gh_metrics_add_process(m);
    if (!rc)
        rc = gh_metrics_render(m, GH_METRICS_RENDER_MAX, text, &len);
out:
    *out = m;
    return rc;
}

static void memory_returns_to_baseline(void **state)
{
    (void)state;
    size_t base = gh_mem_bytes(GH_MEM_METRICS);
    size_t objs = gh_mem_objects(GH_MEM_METRICS);
    gh_metrics_t *m = NULL;
    char *text = NULL;
    assert_int_equal(build_and_render(&m, &text), 0);
    assert_true(gh_mem_bytes(GH_MEM_METRICS) > base);
    size_t with_text = gh_mem_bytes(GH_MEM_METRICS);
    gh_metrics_text_free(&text);
    assert_true(gh_mem_bytes(GH_MEM_METRICS) < with_text);
    gh_metrics_destroy(&m);
    assert_null(m);
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), base);
    assert_int_equal(gh_mem_objects(GH_MEM_METRICS), objs);
}

static void every_allocation_failure_is_clean(void **state)
{
    (void)state;
    size_t base = gh_mem_bytes(GH_MEM_METRICS);
    uint64_t before = gh_mem_alloc_count();
    gh_metrics_t *m = NULL;
    char *text = NULL;
    assert_int_equal(build_and_render(&m, &text), 0);
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
    uint64_t needed = gh_mem_alloc_count() - before;
    assert_true(needed > 10);
    for (uint64_t n = 1; n <= needed; n++) {
        gh_mem_fail_at(n);
        int rc = build_and_render(&m, &text);
        assert_true(gh_mem_fail_fired());
        assert_int_equal(rc, GH_ENOMEM);
        assert_null(text);
        gh_metrics_destroy(&m);
        assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), base);
    }
    gh_mem_fail_at(0);
}

/* ---------------------------------------------------------------- process ---- */

/* The value of an unlabelled sample "name value\n" in text, or NAN when absent. */
static double sample(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static unsigned long long statm_resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    unsigned long long size_pages = 0, resident_pages = 0;
    int n = fscanf(f, "%llu %llu", &size_pages, &resident_pages);
    fclose(f);
    assert_int_equal(n, 2);
    return resident_pages;
}

static void process_metrics_are_present_and_plausible(void **state)
{
    (void)state;
    gh_metrics_t *m = NULL;
    assert_int_equal(gh_metrics_create(&m), 0);
    assert_int_equal(gh_metrics_add_process(m), 0);
    unsigned long long before = statm_resident_pages();
    char *text = render(m);
    unsigned long long after = statm_resident_pages();
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(text, "# TYPE process_resident_memory_bytes gauge\n"));

    double rss = sample(text, "process_resident_memory_bytes");
    double virt = sample(text, "process_virtual_memory_bytes");
    double cpu = sample(text, "process_cpu_seconds_total");
    double open_fds = sample(text, "process_open_fds");
    double max_fds = sample(text, "process_max_fds");
    double start = sample(text, "process_start_time_seconds");
    gh_metrics_text_free(&text);

    /* RSS agrees with /proc/self/statm read independently just before and after the render,
     * within a few pages. (Bracketing, not one read after: under valgrind the RSS moves by many
     * pages between two reads, as the tool translates code.) */
    double page = (double)sysconf(_SC_PAGESIZE);
    double lo = (double)(before < after ? before : after),
           hi = (double)(before < after ? after : before);
    assert_true(rss >= (lo - 16) * page && rss <= (hi + 16) * page);
    assert_true(virt >= rss);
    assert_true(cpu >= 0 && cpu < 1e6);
    /* stdin, stdout and stderr at least; never more than the limit. */
    assert_true(open_fds >= 3 && open_fds <= max_fds);
    /* Started after 2020 and not in the future. */
    time_t now = time(NULL);
    assert_true(start > 1577836800.0 && start <= (double)now + 1);

    gh_process_stats_t ps;
    assert_int_equal(gh_metrics_process_read(&ps), 0);
    assert_true(fabs(ps.start_time_seconds - start) < 0.02);
    assert_true(ps.max_fds == max_fds);
    gh_metrics_destroy(&m);
}

static void process_open_fds_follows_opens(void **state)
{
    (void)state;
    gh_process_stats_t a, b;
    assert_int_equal(gh_metrics_process_read(&a), 0);
    int fds[3];
    assert_int_equal(pipe(fds), 0);
    fds[2] = dup(fds[0]);
    assert_true(fds[2] >= 0);
    assert_int_equal(gh_metrics_process_read(&b), 0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    assert_true(b.open_fds == a.open_fds + 3);
}

/* --------------------------------------------------------------- promtool ---- */

static void promtool_finds_nothing_to_complain_about(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        skip();
        return;
    }
    gh_metrics_t *m = NULL;
    char *text = NULL;
    assert_int_equal(build_and_render(&m, &text), 0);
    /* Give the escaping and special values something to chew on too. */
    static const char *const odd[] = {"a\"b\\c\nd", "plain"};
    gh_metric_label_t l = {.name = "path", .values = odd, .nvalues = 2};
    gh_metric_desc_t d = {.name = "t_odd",
                          .help = "Back\\slash.",
                          .type = GH_METRIC_GAUGE,
                          .labels = &l,
                          .nlabels = 1};
    gh_metrics_text_free(&text);
    gh_metric_t *g = NULL;
    assert_int_equal(gh_metrics_add(m, &d, &g), 0);
    gh_metric_set(g, 0, INFINITY);
    gh_metric_set(g, 1, NAN);
    text = render(m);

    const char *tmpdir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/gh-metrics-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[640];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    unlink(path);
    if (status != 0 || n != 0)
        fprintf(stderr, "promtool said (status %d):\n%s\n--- input ---\n%s", status, out, text);
    assert_int_equal(status, 0);
    assert_int_equal(n, 0);
    gh_metrics_text_free(&text);
    gh_metrics_destroy(&m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiny_registry_renders_exactly),
        cmocka_unit_test(label_values_and_help_are_escaped),
        cmocka_unit_test(buckets_are_cumulative_and_inclusive),
        cmocka_unit_test(gauge_values_format_as_prometheus_expects),
        cmocka_unit_test(callback_families_fill_every_series),
        cmocka_unit_test(skip_zero_leaves_out_untouched_series),
        cmocka_unit_test(bad_registrations_are_refused),
        cmocka_unit_test(render_respects_its_maximum),
        cmocka_unit_test(concurrent_updates_sum_exactly),
        cmocka_unit_test(memory_returns_to_baseline),
        cmocka_unit_test(every_allocation_failure_is_clean),
        cmocka_unit_test(process_metrics_are_present_and_plausible),
        cmocka_unit_test(process_open_fds_follows_opens),
        cmocka_unit_test(promtool_finds_nothing_to_complain_about),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
