/*
 * test_stats.c — the numbers behind `gatehouse load`: histogram percentiles within their stated
 * precision, a Theil–Sen slope that outliers cannot move, the /metrics reader, and the verdict on
 * synthetic series (flat, leaking, restarted, too short, per 1k cycles).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "load/load.h"

/* ---- histogram ---- */

static gh_load_hist_t hist;

static void small_values_are_exact(void **state)
{
    (void)state;
    gh_load_hist_reset(&hist);
    assert_int_equal(gh_load_hist_percentile(&hist, 50), 0); /* empty */
    for (int64_t v = 1; v <= 100; v++)
        gh_load_hist_record(&hist, v);
    assert_int_equal(hist.total, 100);
    assert_int_equal(gh_load_hist_percentile(&hist, 50), 50);
    assert_int_equal(gh_load_hist_percentile(&hist, 99), 99);
    assert_int_equal(gh_load_hist_percentile(&hist, 100), 100);
    assert_int_equal(gh_load_hist_percentile(&hist, 0.001), 1);
    assert_int_equal(hist.max_ns, 100);
}

static void every_value_is_within_its_precision(void **state)
{
    (void)state;
    /* One value at a time, across the whole range: the reported percentile is never below the
     * value and at most 1/128 above it (and never above the exact max). */
    for (int64_t v = 200; v < (1LL << 40); v = v * 3 / 2 + 7) {
        gh_load_hist_reset(&hist);
        gh_load_hist_record(&hist, v);
        gh_load_hist_record(&hist, v + 1000000000000000LL); /* a far larger max */
        int64_t p = gh_load_hist_percentile(&hist, 50);
        if (p < v || (double)p > (double)v * (1.0 + 1.0 / 128))
            fail_msg("value %lld reported as %lld", (long long)v, (long long)p);
    }
    /* Beyond the range: the last bucket, and max stays exact. */
    gh_load_hist_reset(&hist);
    gh_load_hist_record(&hist, 1LL << 50);
    assert_int_equal(gh_load_hist_percentile(&hist, 100), 1LL << 50);
    gh_load_hist_record(&hist, -5); /* a clock step backwards counts as 0 */
    assert_int_equal(gh_load_hist_percentile(&hist, 50), 0);
}

static void percentiles_of_a_uniform_spread(void **state)
{
    (void)state;
    gh_load_hist_reset(&hist);
    /* 1 us .. 100 ms in 1 us steps */
    for (int64_t us = 1; us <= 100000; us++)
        gh_load_hist_record(&hist, us * 1000);
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < 4; i++) {
        double want = ps[i] / 100 * 100000 * 1000;
        double got = (double)gh_load_hist_percentile(&hist, ps[i]);
        if (fabs(got - want) > want / 128 + 1000)
            fail_msg("p%g: %.0f, want %.0f", ps[i], got, want);
    }
    assert_int_equal(gh_load_hist_percentile(&hist, 100), 100000LL * 1000);

    static gh_load_hist_t other;
    gh_load_hist_reset(&other);
    gh_load_hist_record(&other, 5LL * 1000 * 1000 * 1000);
    gh_load_hist_merge(&hist, &other);
    assert_int_equal(hist.total, 100001);
    assert_int_equal(hist.max_ns, 5LL * 1000 * 1000 * 1000);
    assert_int_equal(gh_load_hist_percentile(&hist, 100), 5LL * 1000 * 1000 * 1000);
}

/* ---- Theil–Sen ---- */

static void slope_of_a_line_is_exact(void **state)
{
    (void)state;
    double x[50], y[50];
    gh_load_fit_t f;
    for (int i = 0; i < 50; i++) {
        x[i] = i;
        y[i] = 3 * i + 7;
    }
    assert_int_equal(gh_load_theil_sen(x, y, 50, &f), 0);
    assert_true(fabs(f.slope - 3) < 1e-12 && fabs(f.intercept - 7) < 1e-9);
    /* A perfect line leaves no doubt: the interval is the slope itself. */
    assert_true(fabs(f.low - 3) < 1e-12 && fabs(f.high - 3) < 1e-12);
    /* Two points are enough; one is not; NaN points are skipped. */
    assert_int_equal(gh_load_theil_sen(x, y, 2, &f), 0);
    assert_true(fabs(f.slope - 3) < 1e-12);
    assert_int_equal(gh_load_theil_sen(x, y, 1, &f), GH_EINVAL);
    y[10] = NAN;
    x[20] = NAN;
    assert_int_equal(gh_load_theil_sen(x, y, 50, &f), 0);
    assert_true(fabs(f.slope - 3) < 1e-12);
    double same[3] = {1, 1, 1};
    assert_int_equal(gh_load_theil_sen(same, y, 3, &f), GH_EINVAL); /* no x differs */
}

static void outliers_do_not_move_the_slope(void **state)
{
    (void)state;
    /* A flat series with 20% huge spikes (a scrape that caught a transient): least squares
     * would report a slope; Theil–Sen stays flat. */
    double x[100], y[100];
    gh_load_fit_t f;
    double sx = 0, sy = 0, sxy = 0, sxx = 0;
    for (int i = 0; i < 100; i++) {
        x[i] = i;
        y[i] = 10e6 + (i % 5 == 0 ? 50e6 * (double)i / 100 : 0);
        sx += x[i];
        sy += y[i];
        sxy += x[i] * y[i];
        sxx += x[i] * x[i];
    }
    double ols = (100 * sxy - sx * sy) / (100 * sxx - sx * sx);
    assert_int_equal(gh_load_theil_sen(x, y, 100, &f), 0);
    assert_true(ols > 50000);
    assert_true(fabs(f.slope) < 1e-9);
    assert_true(fabs(f.intercept - 10e6) < 1);
}

static void noise_widens_the_interval_around_the_truth(void **state)
{
    (void)state;
    /* A slow ramp under big random swings (argon2's working memory comes and goes): the
     * interval is wide and still holds the true slope. */
    double x[60], y[60];
    uint64_t r = 42;
    for (int i = 0; i < 60; i++) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = i;
        y[i] = 1000.0 * i + (double)(r >> 40) / (double)(1 << 24) * 4e7; /* 0 .. 40 MB */
    }
    gh_load_fit_t f;
    assert_int_equal(gh_load_theil_sen(x, y, 60, &f), 0);
    assert_true(f.low < 1000 && 1000 < f.high);
    assert_true(f.high - f.low > 100000);
}

static void long_series_are_reduced_but_keep_their_slope(void **state)
{
    (void)state;
    size_t n = 20000;
    double *x = calloc(n, sizeof *x), *y = calloc(n, sizeof *y);
    gh_load_fit_t f;
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < n; i++) {
        x[i] = (double)i;
        y[i] = 1000 + 2.5 * (double)i + ((i * 7919) % 13) * 100.0; /* bounded jitter */
    }
    size_t before = gh_mem_bytes(GH_MEM_OTHER);
    assert_int_equal(gh_load_theil_sen(x, y, n, &f), 0);
    assert_int_equal(gh_mem_bytes(GH_MEM_OTHER), before); /* scratch returned */
    assert_true(fabs(f.slope - 2.5) < 0.05);
    assert_true(f.low <= 2.5 && 2.5 <= f.high);
    free(x);
    free(y);
}

/* ---- /metrics text ---- */

static const char metrics_text[] =
    "# HELP gatehouse_sessions_active Live sessions.\n"
    "# TYPE gatehouse_sessions_active gauge\n"
    "gatehouse_sessions_active 42\n"
    "gatehouse_memory_bytes{component=\"sessions\"} 4800\n"
    "gatehouse_memory_bytes{component=\"http\"} 1200\n"
    "gatehouse_memory_bytes{component=\"other\"} 1000\n"
    "gatehouse_memory_bytes{component=\"invented\"} 99999\n"
    "gatehouse_memory_objects{component=\"sessions\"} 7\n"
    "gatehouse_memory_unexplained_bytes 8000000\n"
    "gatehouse_memory_unexplained_bytes_extra 1\n"
    "process_resident_memory_bytes 8.007e+06\n"
    "process_start_time_seconds 1764000000.5\n"
    "gatehouse_http_requests_total{route=\"/v1/auth\",method=\"GET\",code=\"200\"} 5\n"
    "process_resident_memory_bytes_bogus 1\n";

static void metrics_are_read_by_name_and_label(void **state)
{
    (void)state;
    gh_load_sample_t s;
    assert_int_equal(gh_load_parse_metrics(metrics_text, strlen(metrics_text), &s), 0);
    assert_true(s.rss == 8.007e6);
    assert_true(s.sessions == 42);
    assert_true(s.unexplained == 8e6);
    assert_true(s.start_time == 1764000000.5);
    assert_true(s.component[GH_MEM_SESSIONS] == 4800);
    assert_true(s.component[GH_MEM_HTTP] == 1200);
    assert_true(s.component[GH_MEM_OTHER] == 1000);
    assert_true(isnan(s.component[GH_MEM_USERS]));
    assert_true(s.accounted == 7000); /* an unknown component is not counted */

    /* Without the unexplained gauge it is RSS - accounted; without RSS there is no sample. */
    const char partial[] = "process_resident_memory_bytes 10000\n"
                           "gatehouse_memory_bytes{component=\"sessions\"} 4000";
    assert_int_equal(gh_load_parse_metrics(partial, strlen(partial), &s), 0);
    assert_true(s.unexplained == 6000 && isnan(s.sessions));
    const char none[] = "gatehouse_sessions_active 1\n";
    assert_int_equal(gh_load_parse_metrics(none, strlen(none), &s), GH_EINVAL);
    assert_int_equal(gh_load_parse_metrics("", 0, &s), GH_EINVAL);
}

/* ---- the verdict ---- */

static gh_load_opts_t opts(int64_t duration_ms, int64_t warmup_ms)
{
    gh_load_opts_t o;
    memset(&o, 0, sizeof o);
    o.duration_ms = duration_ms;
    o.warmup_ms = warmup_ms;
    o.max_leak = -1;
    o.concurrency = 1;
    o.users = 1;
    return o;
}

/* n samples, one a second: RSS = base + slope * t + a bounded wobble; accounted flat. */
static void fill(gh_load_result_t *r, size_t n, double slope, double wobble, double cycles_per_s)
{
    r->nsamples = 0;
    for (size_t i = 0; i < n && i < r->samples_cap; i++) {
        gh_load_sample_t *s = &r->samples[r->nsamples++];
        memset(s, 0, sizeof *s);
        for (size_t c = 0; c < GH_MEM__COUNT; c++)
            s->component[c] = c == GH_MEM_SESSIONS ? 100000 : 0;
        s->t_s = (double)i;
        s->rss = 20e6 + slope * (double)i + wobble * (double)((i * 37) % 11) / 10.0;
        s->accounted = 100000;
        s->unexplained = s->rss - s->accounted;
        s->sessions = 16;
        s->start_time = 1764000000;
        s->cycles = cycles_per_s * (double)i;
    }
}

static void verdicts_on_synthetic_series(void **state)
{
    (void)state;
    gh_load_opts_t o = opts(60000, 15000);
    gh_load_result_t *r = NULL;
    assert_int_equal(gh_load_result_new(&o, &r), 0);
    assert_true(r->samples_cap >= 61);

    /* Flat with a 512 KiB wobble: pass; the default threshold is 1 MiB / 45 s + 1 KiB/s. */
    fill(r, 61, 0, 512 * 1024, 100);
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_PASS);
    assert_true(r->memory.max_leak_default);
    assert_true(fabs(r->memory.max_leak - gh_load_default_max_leak(45)) < 1e-6);
    assert_true(fabs(r->memory.fit_window_s - 45) < 1e-9);
    assert_int_equal(r->memory.fit_samples, 46);
    assert_null(r->memory.growing);

    /* 200 KiB/s of unaccounted growth: leak, named. */
    fill(r, 61, 200 * 1024, 4096, 100);
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_LEAK);
    assert_true(fabs(r->memory.slope_bytes_per_s - 200 * 1024) < 200);
    assert_string_equal(r->memory.growing, "unaccounted");
    assert_true(fabs(r->memory.bytes_per_1k_cycles - 200 * 1024 * 10) < 2000);
    assert_non_null(strstr(r->memory.reason, "unaccounted"));

    /* The same growth in the sessions component is named as such. */
    for (size_t i = 0; i < r->nsamples; i++) {
        r->samples[i].component[GH_MEM_SESSIONS] += 200 * 1024 * (double)i;
        r->samples[i].accounted += 200 * 1024 * (double)i;
        r->samples[i].unexplained = r->samples[i].rss - r->samples[i].accounted;
    }
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_string_equal(r->memory.growing, "sessions");

    /* A threshold per 1k cycles: 2 MiB per 1k allows 200 KiB/s at 100 cycles/s. */
    o.max_leak = 2.5 * 1024 * 1024;
    o.max_leak_unit = GH_LOAD_LEAK_PER_1K;
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_PASS);
    o.max_leak = 1.5 * 1024 * 1024;
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_LEAK);
    fill(r, 61, 0, 0, 0); /* no cycles: cannot judge per cycle */
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_INCONCLUSIVE);

    /* Memory that swings by 38 MiB from one second to the next: no verdict from 45 s. */
    o.max_leak = -1;
    fill(r, 61, 0, 38.0 * 1024 * 1024, 100);
    for (size_t i = 0; i < r->nsamples; i++) { /* decorrelate the wobble */
        r->samples[i].rss = 20e6 + 38.0 * 1024 * 1024 * (double)((i * 7919 + 13) % 17) / 16;
        r->samples[i].unexplained = r->samples[i].rss - r->samples[i].accounted;
    }
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_INCONCLUSIVE);
    assert_non_null(strstr(r->memory.reason, "straddles"));

    /* A restart in the middle: inconclusive, whatever the slope. */
    o.max_leak = -1;
    fill(r, 61, 0, 0, 100);
    r->samples[30].start_time += 5;
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_INCONCLUSIVE);
    assert_true(r->memory.restarted);

    /* Too few samples after the warm-up. */
    fill(r, 20, 1e6, 0, 100);
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_INCONCLUSIVE);
    assert_int_equal(r->memory.fit_samples, 5);
    r->nsamples = 0;
    assert_int_equal(gh_load_analyse(&o, r), 0);
    assert_int_equal(r->memory.verdict, GH_LOAD_INCONCLUSIVE);

    gh_load_result_free(&r);
    assert_null(r);
}

static void default_threshold_shrinks_with_the_window(void **state)
{
    (void)state;
    double a = gh_load_default_max_leak(15), b = gh_load_default_max_leak(45),
           c = gh_load_default_max_leak(3600);
    assert_true(a > b && b > c && c > GH_LOAD_NOISE_FLOOR);
    assert_true(fabs(b - (GH_LOAD_NOISE_BAND / 45 + GH_LOAD_NOISE_FLOOR)) < 1e-9);
    /* The warm-up default: a quarter of the duration within [5 s, 2 min], at most half. */
    gh_load_opts_t o = opts(20000, -1);
    assert_int_equal(gh_load_warmup_ms(&o), 5000);
    o.duration_ms = 60000;
    assert_int_equal(gh_load_warmup_ms(&o), 15000);
    o.duration_ms = 3600000;
    assert_int_equal(gh_load_warmup_ms(&o), 120000);
    o.duration_ms = 8000; /* a short run keeps half of itself to fit */
    assert_int_equal(gh_load_warmup_ms(&o), 4000);
    o.warmup_ms = 0;
    assert_int_equal(gh_load_warmup_ms(&o), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(small_values_are_exact),
        cmocka_unit_test(every_value_is_within_its_precision),
        cmocka_unit_test(percentiles_of_a_uniform_spread),
        cmocka_unit_test(slope_of_a_line_is_exact),
        cmocka_unit_test(outliers_do_not_move_the_slope),
        cmocka_unit_test(noise_widens_the_interval_around_the_truth),
        cmocka_unit_test(long_series_are_reduced_but_keep_their_slope),
        cmocka_unit_test(metrics_are_read_by_name_and_label),
        cmocka_unit_test(verdicts_on_synthetic_series),
        cmocka_unit_test(default_threshold_shrinks_with_the_window),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
