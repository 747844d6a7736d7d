/* test_trend.c — the one robust trend (common/trend.c) that the watchdog and `gatehouse load`
 * share: quickselect agrees with sorting, Theil–Sen finds a line exactly and ignores a minority
 * of wild points, the lag window of the watchdog holds a GC sawtooth near no slope and still
 * sees a leak under it, the pair cap bounds the work, and Sen's interval holds the true slope
 * and narrows as points are added. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/trend.h"

#define N 600

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A fixed pseudo-random sequence (xorshift), uniform in [0, 1). */
static double uniform(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void select_and_median_agree_with_sorting(void **state)
{
    (void)state;
    uint64_t seed = 42;
    double a[101] = {0}, sorted[101] = {0}, work[101] = {0};
    for (size_t n = 1; n <= 101; n += 10) {
        for (size_t i = 0; i < n; i++)
            a[i] = floor(uniform(&seed) * 20); /* ties on purpose */
        memcpy(sorted, a, n * sizeof *a);
        qsort(sorted, n, sizeof *sorted, cmp);
        for (size_t k = 0; k < n; k++) {
            memcpy(work, a, n * sizeof *a);
            assert_true(gh_trend_select(work, n, k) == sorted[k]);
        }
        memcpy(work, a, n * sizeof *a);
        double want = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
        assert_true(gh_trend_median(work, n) == want);
    }
    assert_true(gh_trend_median(work, 0) == 0);
}

static void a_line_is_found_exactly_and_outliers_are_ignored(void **state)
{
    (void)state;
    static double t[N], y[N], scratch[N * (N - 1) / 2];
    for (size_t i = 0; i < N; i++) {
        t[i] = (double)i * 2.0;
        y[i] = 5.0 + 3.0 * t[i];
    }
    gh_trend_pairs_t every = {.lag_lo = 1, .lag_hi = N - 1};
    assert_true(gh_trend_scratch(N, &every) <= sizeof scratch / sizeof *scratch);
    gh_trend_fit_t f;
    assert_int_equal(gh_trend_theil_sen(t, y, N, &every, 1, scratch, &f), 0);
    assert_true(fabs(f.slope - 3.0) < 1e-9);
    assert_true(fabs(f.low - 3.0) < 1e-9 && fabs(f.high - 3.0) < 1e-9);
    assert_int_equal(f.npairs, N * (N - 1) / 2);
    assert_true(fabs(gh_trend_level(t, y, N, f.slope, 0, scratch) - 5.0) < 1e-6);
    assert_true(fabs(gh_trend_level(t, y, N, f.slope, t[N - 1], scratch) - y[N - 1]) < 1e-6);

    /* One point in five thrown a million away: least squares would be lost, the median not. */
    for (size_t i = 0; i < N; i += 5)
        y[i] += (i % 10 ? 1e6 : -1e6);
    assert_int_equal(gh_trend_theil_sen(t, y, N, &every, 0, scratch, &f), 0);
    assert_true(fabs(f.slope - 3.0) < 0.05);
}

/* A sawtooth: memory that grows for a GC period and drops back, no net growth. */
static void the_lag_window_sees_through_a_sawtooth(void **state)
{
    (void)state;
    static double t[N], y[N], scratch[N * (N - 1) / 2];
    for (size_t i = 0; i < N; i++) {
        t[i] = (double)i;
        y[i] = 1e6 + 1000.0 * (double)(i % 37);
    }
    gh_trend_pairs_t every = {.lag_lo = 1, .lag_hi = N - 1};
    gh_trend_pairs_t window = {
        .lag_lo = N / 4, .lag_hi = 3 * N / 4, .max_lags = 64, .max_pairs = 2048};
    gh_trend_fit_t all, win;
    assert_int_equal(gh_trend_theil_sen(t, y, N, &every, 0, scratch, &all), 0);
    assert_int_equal(gh_trend_theil_sen(t, y, N, &window, 0, scratch, &win), 0);
    /* Long lags see as many drops as rises: about no slope; the pair cap held. */
    assert_true(fabs(win.slope) < 5.0);
    assert_true(win.npairs <= 2048 + 64);
    assert_true(win.npairs <= gh_trend_scratch(N, &window));
    print_message("sawtooth: every pair %.2f/s, lags N/4..3N/4 %.2f/s (%zu pairs)\n", all.slope,
                  win.slope, win.npairs);
    /* A steady leak under the same sawtooth is seen by both. */
    for (size_t i = 0; i < N; i++)
        y[i] += 250.0 * t[i];
    assert_int_equal(gh_trend_theil_sen(t, y, N, &window, 0, scratch, &win), 0);
    assert_true(fabs(win.slope - 250.0) < 10.0);
}

static void the_interval_holds_the_slope_and_narrows(void **state)
{
    (void)state;
    static double t[N], y[N], scratch[N * (N - 1) / 2];
    uint64_t seed = 7;
    for (size_t i = 0; i < N; i++) {
        t[i] = (double)i;
        y[i] = 2.0 * t[i] + 200.0 * (uniform(&seed) - 0.5);
    }
    double width_before = INFINITY;
    for (size_t n = 50; n <= N; n *= 2) {
        gh_trend_pairs_t every = {.lag_lo = 1, .lag_hi = n - 1};
        gh_trend_fit_t f;
        assert_int_equal(gh_trend_theil_sen(t, y, n, &every, 1, scratch, &f), 0);
        assert_true(f.low <= 2.0 && 2.0 <= f.high);
        assert_true(f.high - f.low < width_before);
        width_before = f.high - f.low;
    }
}

static void no_distinct_time_is_an_error(void **state)
{
    (void)state;
    double t[4] = {1, 1, 1, 1}, y[4] = {1, 2, 3, 4}, scratch[8];
    gh_trend_pairs_t every = {.lag_lo = 1, .lag_hi = 3};
    gh_trend_fit_t f;
    assert_int_equal(gh_trend_theil_sen(t, y, 4, &every, 1, scratch, &f), GH_EINVAL);
    assert_true(f.slope == 0);
    gh_trend_pairs_t bad = {.lag_lo = 0, .lag_hi = 3};
    assert_int_equal(gh_trend_theil_sen(t, y, 4, &bad, 0, scratch, &f), GH_EINVAL);
    assert_int_equal(gh_trend_theil_sen(t, y, 1, &every, 0, scratch, &f), GH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(select_and_median_agree_with_sorting),
        cmocka_unit_test(a_line_is_found_exactly_and_outliers_are_ignored),
        cmocka_unit_test(the_lag_window_sees_through_a_sawtooth),
        cmocka_unit_test(the_interval_holds_the_slope_and_narrows),
        cmocka_unit_test(no_distinct_time_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
