/*
 * trend.h — the robust trend of a series: Theil–Sen (the median of the slopes between pairs of
 * points), the level of the fitted line, Sen's confidence interval, and the quickselect median
 * they rest on, and the test of steady growth. One implementation for the memory watchdog
 * (watch/watchdog.c), which fits every few seconds over its ring, its heap profiler's ranking of
 * call stacks (watch/heap_growth.c) and `gatehouse load`'s leak verdict (load/stats.c), so the
 * service and its soak tool agree on what growth is.
 *
 * The one design decision: which pairs enter is the caller's, as a window of lags (j - i) with
 * caps on the lags and the pairs; everything else is shared. The watchdog takes lags from a
 * quarter to three quarters of its span (a GC sawtooth's rising edges cancel its drops) and at
 * most 2048 pairs; the load tool takes every pair of at most 600 block medians, and asks for
 * the interval. No allocation: the caller hands the scratch.
 */
#ifndef GH_COMMON_TREND_H
#define GH_COMMON_TREND_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* The k-th smallest of a[0..n) (n > 0, k < n), rearranging a: afterwards a[0..k) <= a[k]. */
double gh_trend_select(double *a, size_t n, size_t k);

/* The median of a[0..n) (the mean of the middle two when n is even), rearranging a; 0 when n
 * is 0. */
double gh_trend_median(double *a, size_t n);

/* Which pairs (i, i + lag) a fit uses: lags from lag_lo to lag_hi (1 <= lag_lo <= lag_hi < n),
 * at most max_lags of them spread evenly over that range (0: every lag), and about max_pairs
 * pairs in all, spread evenly within each lag (0: every pair). */
typedef struct {
    size_t lag_lo, lag_hi;
    size_t max_lags;
    size_t max_pairs;
} gh_trend_pairs_t;

/* Slots of scratch a fit needs: max_pairs + max_lags, or n (n - 1) / 2 for every pair; and at
 * least n (for the level). */
size_t gh_trend_scratch(size_t n, const gh_trend_pairs_t *pairs);

typedef struct {
    double slope;     /* y per unit of t */
    double low, high; /* Sen's 95% interval of the slope (when asked for; else = slope) */
    size_t npairs;    /* pairs that had distinct t */
} gh_trend_fit_t;

/* Theil–Sen over the pairs `pairs` names of (t[i], y[i]), i < n: the median of their slopes;
 * pairs with equal t are left out. With interval, also Sen's 95% interval (Kendall's S variance
 * n (n - 1) (2n + 5) / 18, ties ignored, which only widens it; meant for every pair). scratch
 * holds gh_trend_scratch() slots. Returns 0, or GH_EINVAL when no pair has distinct t (then
 * out->slope is 0). */
int gh_trend_theil_sen(const double *t, const double *y, size_t n, const gh_trend_pairs_t *pairs,
                       int interval, double *scratch, gh_trend_fit_t *out) GH_WUR;

/* The level of the line of this slope through the series, at t_ref: the median of
 * y[i] - slope (t[i] - t_ref). scratch holds n slots. */
double gh_trend_level(const double *t, const double *y, size_t n, double slope, double t_ref,
                      double *scratch);

/* Whether y[0..n) over t grows steadily along the line of this slope (> 0) whose level at
 * t[n - 1] is `level` (n >= 8): it rises by more than twice the residual noise (MAD); the medians
 * of its four quarters each rise by at least half of what the slope predicts, less two standard
 * errors of sample noise, never less than a quarter (one step and a plateau fails, and so does
 * growth that only started late); and the line fits every quarter (no quarter's median residual
 * beyond 15% of the growth plus noise). The watchdog's and the heap profiler's test of a leak.
 * scratch holds n slots. */
bool gh_trend_steady(const double *t, const double *y, size_t n, double slope, double level,
                     double *scratch);

#endif
