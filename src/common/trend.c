/*
 * trend.c — Theil–Sen and the quickselect median (trend.h), shared by the memory watchdog and
 * `gatehouse load`. Pairs are taken lag by lag, evenly strided, so a cap on the pairs keeps
 * every lag of the window represented; the interval is two more selections over the same
 * slopes, never a sort.
 */
#include "common/trend.h"

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

double gh_trend_select(double *a, size_t n, size_t k)
{
    assert(n > 0 && k < n);
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, kk = (ptrdiff_t)k;
    while (lo < hi) {
        double x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        double pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (kk <= j)
            hi = j;
        else if (kk >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

double gh_trend_median(double *a, size_t n)
{
    if (n == 0)
        return 0;
    double upper = gh_trend_select(a, n, n / 2);
    if (n % 2)
        return upper;
    double lower = a[0];
    for (size_t i = 1; i < n / 2; i++)
        if (a[i] > lower)
            lower = a[i];
    return (lower + upper) / 2;
}

size_t gh_trend_scratch(size_t n, const gh_trend_pairs_t *p)
{
    size_t need = p->max_pairs ? p->max_pairs + (p->max_lags ? p->max_lags : n) : n * (n - 1) / 2;
    return need > n ? need : n;
}

int gh_trend_theil_sen(const double *t, const double *y, size_t n, const gh_trend_pairs_t *p,
                       int interval, double *scratch, gh_trend_fit_t *out)
{
    *out = (gh_trend_fit_t){0};
    if (n < 2 || p->lag_lo < 1 || p->lag_hi < p->lag_lo || p->lag_hi > n - 1)
        return GH_EINVAL;
    size_t lo = p->lag_lo, hi = p->lag_hi, nlags = hi - lo + 1;
    size_t k_lags = p->max_lags && nlags > p->max_lags ? p->max_lags : nlags;
    size_t per_lag = p->max_pairs ? p->max_pairs / k_lags : 0, ns = 0;
    for (size_t k = 0; k < k_lags; k++) {
        size_t lag = k_lags == 1 ? lo : lo + k * (hi - lo) / (k_lags - 1);
        size_t npairs = n - lag;
        size_t stride = per_lag ? (npairs + per_lag - 1) / per_lag : 1;
        if (stride == 0)
            stride = 1;
        for (size_t i = k % stride; i + lag < n; i += stride) {
            double dt = t[i + lag] - t[i];
            if (dt != 0)
                scratch[ns++] = (y[i + lag] - y[i]) / dt;
        }
    }
    assert(ns <= gh_trend_scratch(n, p));
    out->npairs = ns;
    if (ns == 0)
        return GH_EINVAL;
    out->slope = out->low = out->high = gh_trend_median(scratch, ns);
    if (interval) {
        double c = 1.959964 * sqrt((double)n * (double)(n - 1) * (double)(2 * n + 5) / 18.0);
        double lo_rank = floor(((double)ns - c) / 2.0), hi_rank = ceil(((double)ns + c) / 2.0);
        size_t lo_i = lo_rank < 1 ? 0 : (size_t)lo_rank - 1;
        size_t hi_i = hi_rank > (double)ns ? ns - 1 : (size_t)hi_rank - 1;
        out->low = gh_trend_select(scratch, ns, lo_i);
        out->high = gh_trend_select(scratch, ns, hi_i);
        assert(out->low <= out->slope && out->slope <= out->high);
    }
    return 0;
}

double gh_trend_level(const double *t, const double *y, size_t n, double slope, double t_ref,
                      double *scratch)
{
    for (size_t i = 0; i < n; i++)
        scratch[i] = y[i] - slope * (t[i] - t_ref);
    return gh_trend_median(scratch, n);
}

bool gh_trend_steady(const double *t, const double *y, size_t n, double slope, double level,
                     double *scratch)
{
    if (!(slope > 0) || n < 8)
        return false;
    double span = t[n - 1] - t[0], growth = slope * span;
    if (!(span > 0))
        return false;
    for (size_t i = 0; i < n; i++)
        scratch[i] = fabs(y[i] - (level + slope * (t[i] - t[n - 1])));
    if (growth < 2 * gh_trend_median(scratch, n))
        return false;
    /* Growth spread over the span: each quarter's median above the previous one by at least
     * half of what the slope predicts, less what sample noise can take off a difference of two
     * medians (two standard errors). The noise comes from consecutive differences, which a step
     * or a trend hardly moves: sigma = 1.4826 MAD(diff) / sqrt(2). */
    for (size_t i = 0; i + 1 < n; i++)
        scratch[i] = y[i + 1] - y[i];
    double d_med = gh_trend_median(scratch, n - 1);
    for (size_t i = 0; i + 1 < n; i++)
        scratch[i] = fabs(y[i + 1] - y[i] - d_med);
    double sigma = 1.4826 * gh_trend_median(scratch, n - 1) / sqrt(2.0);
    double q_med[4], expected = growth / 4;
    size_t q = n / 4;
    /* median standard error 1.2533 sigma / sqrt(q); a difference of two: sqrt(2) times that */
    double allowance = 2 * 1.7725 * sigma / sqrt((double)q);
    for (int j = 0; j < 4; j++) {
        size_t from = (size_t)j * q, to = j == 3 ? n : from + q;
        memcpy(scratch, y + from, (to - from) * sizeof *y);
        q_med[j] = gh_trend_median(scratch, to - from);
    }
    /* ... but never less than a quarter of it: noise must not excuse a flat quarter. */
    double need = 0.5 * expected - allowance;
    if (need < 0.25 * expected)
        need = 0.25 * expected;
    for (int j = 1; j < 4; j++)
        if (q_med[j] - q_med[j - 1] < need)
            return false;
    /* And the line must fit: a flat stretch followed by a climb (a leak that began late in the
     * span, or a smeared step) leaves quarter residuals of a sixth of the growth or more, where a
     * line, however noisy, leaves only the median's standard error. */
    for (int j = 0; j < 4; j++) {
        size_t from = (size_t)j * q, to = j == 3 ? n : from + q;
        for (size_t i = from; i < to; i++)
            scratch[i - from] = y[i] - (level + slope * (t[i] - t[n - 1]));
        if (fabs(gh_trend_median(scratch, to - from)) >
            0.15 * growth + 2 * 1.2533 * sigma / sqrt((double)q))
            return false;
    }
    return true;
}
