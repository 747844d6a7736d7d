/*
 * stats.c — the numbers of `gatehouse load`: the log-linear latency histogram, the Theil–Sen
 * slope (common/trend.c, the watchdog's own, over block medians of the samples), reading the
 * target's /metrics text, and the memory analysis that gives the verdict.
 *
 * The one design decision: the verdict rests on a robust slope of RSS taken only after the
 * warm-up, compared against a threshold that shrinks with the length of the fit window (a bounded
 * wander of a healthy node can fake at most band / window of slope). A short run therefore
 * demands a steeper slope before it calls a leak, and a long soak catches a slower one.
 */
#include "load/load.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/trend.h"

/* ---- histogram ---- */

static size_t bucket_of(int64_t ns)
{
    uint64_t v = ns > 0 ? (uint64_t)ns : 0;
    if (v < GH_LOAD_HIST_LINEAR)
        return (size_t)v;
    int e = 63 - __builtin_clzll(v); /* 2^e <= v < 2^(e+1), e >= 8 */
    if (e >= GH_LOAD_HIST_MAX_BITS)
        return GH_LOAD_HIST_BUCKETS - 1;
    int shift = e - GH_LOAD_HIST_SUB_BITS;
    size_t sub = (size_t)(v >> shift) - (1u << GH_LOAD_HIST_SUB_BITS); /* 0 .. 127 */
    return GH_LOAD_HIST_LINEAR + (size_t)(e - 8) * (1u << GH_LOAD_HIST_SUB_BITS) + sub;
}

/* The largest value that lands in bucket idx. */
static int64_t bucket_upper(size_t idx)
{
    if (idx < GH_LOAD_HIST_LINEAR)
        return (int64_t)idx;
    size_t k = idx - GH_LOAD_HIST_LINEAR;
    int e = 8 + (int)(k >> GH_LOAD_HIST_SUB_BITS);
    uint64_t sub = (1u << GH_LOAD_HIST_SUB_BITS) + (k & ((1u << GH_LOAD_HIST_SUB_BITS) - 1));
    int shift = e - GH_LOAD_HIST_SUB_BITS;
    return (int64_t)(((sub + 1) << shift) - 1);
}

void gh_load_hist_reset(gh_load_hist_t *h)
{
    memset(h, 0, sizeof *h);
}

void gh_load_hist_record(gh_load_hist_t *h, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    h->counts[bucket_of(ns)]++;
    h->total++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

void gh_load_hist_merge(gh_load_hist_t *dst, const gh_load_hist_t *src)
{
    for (size_t i = 0; i < GH_LOAD_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max_ns > dst->max_ns)
        dst->max_ns = src->max_ns;
}

int64_t gh_load_hist_percentile(const gh_load_hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    if (p > 100.0)
        p = 100.0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < GH_LOAD_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            if (i == GH_LOAD_HIST_BUCKETS - 1) /* the overflow bucket: only max is known */
                return h->max_ns;
            int64_t up = bucket_upper(i);
            return up < h->max_ns ? up : h->max_ns;
        }
    }
    return h->max_ns;
}

/* ---- Theil–Sen ---- */

int gh_load_theil_sen(const double *x, const double *y, size_t n, gh_load_fit_t *fit)
{
    int rc = GH_ENOMEM;
    double *px = NULL, *py = NULL, *pairs = NULL, *block = NULL;
    size_t usable = 0;
    for (size_t i = 0; i < n; i++)
        usable += isfinite(x[i]) && isfinite(y[i]);
    if (usable < 2)
        return GH_EINVAL;

    /* Reduce to at most GH_LOAD_SLOPE_MAX_POINTS points: medians of consecutive blocks. */
    size_t per = (usable + GH_LOAD_SLOPE_MAX_POINTS - 1) / GH_LOAD_SLOPE_MAX_POINTS;
    size_t m = (usable + per - 1) / per;
    px = gh_mem_calloc(GH_MEM_OTHER, m, sizeof *px);
    py = gh_mem_calloc(GH_MEM_OTHER, m, sizeof *py);
    block = gh_mem_calloc(GH_MEM_OTHER, 2 * per, sizeof *block);
    if (!px || !py || !block)
        goto out;
    size_t k = 0, in_block = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        block[in_block] = x[i];
        block[per + in_block] = y[i];
        in_block++;
        if (in_block == per) {
            px[k] = gh_trend_median(block, in_block);
            py[k] = gh_trend_median(block + per, in_block);
            k++;
            in_block = 0;
        }
    }
    if (in_block) {
        px[k] = gh_trend_median(block, in_block);
        py[k] = gh_trend_median(block + per, in_block);
        k++;
    }
    assert(k == m);

    /* Every pair of the reduced points, and Sen's interval (common/trend.c). */
    gh_trend_pairs_t every = {.lag_lo = 1, .lag_hi = m > 1 ? m - 1 : 1};
    pairs = gh_mem_calloc(GH_MEM_OTHER, gh_trend_scratch(m, &every), sizeof *pairs);
    if (!pairs)
        goto out;
    gh_trend_fit_t tf;
    if (m < 2 || gh_trend_theil_sen(px, py, m, &every, 1, pairs, &tf) != 0) {
        rc = GH_EINVAL;
        goto out;
    }
    fit->slope = tf.slope;
    fit->low = tf.low;
    fit->high = tf.high;
    fit->intercept = gh_trend_level(px, py, m, tf.slope, 0, pairs);
    rc = 0;
out:
    gh_mem_free(GH_MEM_OTHER, px);
    gh_mem_free(GH_MEM_OTHER, py);
    gh_mem_free(GH_MEM_OTHER, block);
    gh_mem_free(GH_MEM_OTHER, pairs);
    return rc;
}

/* ---- Prometheus text ---- */

/* The value of label `name` in a label block `{a="x",b="y"}` (n bytes); copies it into out. */
static bool label_value(const char *labels, size_t n, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    const char *end = labels + n;
    for (const char *p = labels; p + nl + 2 <= end; p++) {
        bool at_start = p == labels || p[-1] == '{' || p[-1] == ',';
        if (!at_start || strncmp(p, name, nl) != 0 || p[nl] != '=' || p[nl + 1] != '"')
            continue;
        const char *v = p + nl + 2;
        size_t k = 0;
        while (v < end && *v != '"' && k + 1 < len) {
            if (*v == '\\' && v + 1 < end)
                v++;
            out[k++] = *v++;
        }
        out[k] = '\0';
        return v < end && *v == '"';
    }
    return false;
}

int gh_load_parse_metrics(const char *text, size_t len, gh_load_sample_t *out)
{
    double nan = NAN;
    out->rss = out->accounted = out->unexplained = out->sessions = out->start_time = nan;
    for (size_t c = 0; c < GH_MEM__COUNT; c++)
        out->component[c] = nan;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (p < le && *p != '#') {
            size_t name_len = strcspn(p, "{ \t\n");
            if (name_len > (size_t)(le - p))
                name_len = (size_t)(le - p);
            const char *labels = NULL;
            size_t labels_len = 0;
            const char *q = p + name_len;
            if (q < le && *q == '{') {
                const char *close = memchr(q, '}', (size_t)(le - q));
                if (!close) {
                    p = le + (nl != NULL);
                    continue;
                }
                labels = q;
                labels_len = (size_t)(close - q + 1);
                q = close + 1;
            }
            char num[64];
            while (q < le && (*q == ' ' || *q == '\t'))
                q++;
            size_t vl = strcspn(q, " \t\n");
            if (vl > (size_t)(le - q))
                vl = (size_t)(le - q);
            if (vl > 0 && vl < sizeof num) {
                memcpy(num, q, vl);
                num[vl] = '\0';
                char *e;
                double v = strtod(num, &e);
                if (*e == '\0') {
#define IS(s) (name_len == sizeof(s) - 1 && strncmp(p, s, name_len) == 0)
                    if (IS("process_resident_memory_bytes")) {
                        out->rss = v;
                    } else if (IS("process_start_time_seconds")) {
                        out->start_time = v;
                    } else if (IS("gatehouse_memory_unexplained_bytes")) {
                        out->unexplained = v;
                    } else if (IS("gatehouse_sessions_active")) {
                        out->sessions = v;
                    } else if (IS("gatehouse_memory_bytes") && labels) {
                        char comp[64];
                        if (label_value(labels, labels_len, "component", comp, sizeof comp)) {
                            for (size_t c = 0; c < GH_MEM__COUNT; c++)
                                if (strcmp(comp, gh_mem_component_name((gh_mem_component_t)c)) == 0)
                                    out->component[c] = v;
                        }
                    }
#undef IS
                }
            }
        }
        p = le + (nl != NULL);
    }
    if (!isfinite(out->rss))
        return GH_EINVAL;
    double sum = 0;
    bool any = false;
    for (size_t c = 0; c < GH_MEM__COUNT; c++) {
        if (isfinite(out->component[c])) {
            sum += out->component[c];
            any = true;
        }
    }
    out->accounted = any ? sum : nan;
    if (!isfinite(out->unexplained) && any)
        out->unexplained = out->rss - sum;
    return 0;
}

/* ---- the verdict ---- */

static const char *const scenario_names[GH_LOAD__SCENARIOS] = {
    [GH_LOAD_CHURN] = "churn", [GH_LOAD_VALIDATE] = "validate",
    [GH_LOAD_MIXED] = "mixed", [GH_LOAD_LOGIN_FLOOD] = "login-flood",
    [GH_LOAD_SOAK] = "soak",
};

const char *gh_load_scenario_name(gh_load_scenario_t s)
{
    return (unsigned)s < GH_LOAD__SCENARIOS ? scenario_names[s] : "?";
}

const char *gh_load_verdict_name(gh_load_verdict_t v)
{
    switch (v) {
    case GH_LOAD_PASS:
        return "pass";
    case GH_LOAD_LEAK:
        return "leak";
    case GH_LOAD_INCONCLUSIVE:
        return "inconclusive";
    }
    return "?";
}

double gh_load_default_max_leak(double window_s)
{
    if (!(window_s > 1.0))
        window_s = 1.0;
    return GH_LOAD_NOISE_BAND / window_s + GH_LOAD_NOISE_FLOOR;
}

int64_t gh_load_warmup_ms(const gh_load_opts_t *o)
{
    if (o->warmup_ms >= 0)
        return o->warmup_ms;
    int64_t w = o->duration_ms / 4;
    if (w < 5000)
        w = 5000;
    if (w > 120000)
        w = 120000;
    if (w > o->duration_ms / 2) /* short runs: half of it is still left to fit */
        w = o->duration_ms / 2;
    return w;
}

void gh_load_format_bytes(double b, char *out, size_t len)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double a = fabs(b);
    size_t u = 0;
    while (a >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        a /= 1024.0;
        b /= 1024.0;
        u++;
    }
    if (!isfinite(b))
        snprintf(out, len, "-");
    else if (u == 0)
        snprintf(out, len, "%.0f B", b);
    else
        snprintf(out, len, "%.1f %s", b, units[u]);
}

/* Fit of one field of the samples; all NaN when it cannot be had (the field is missing). */
static int fit_field(const gh_load_sample_t *s, size_t n, size_t offset, double *tbuf, double *ybuf,
                     gh_load_fit_t *fit)
{
    for (size_t i = 0; i < n; i++) {
        tbuf[i] = s[i].t_s;
        memcpy(&ybuf[i], (const char *)&s[i] + offset, sizeof ybuf[i]);
    }
    int rc = gh_load_theil_sen(tbuf, ybuf, n, fit);
    if (rc == GH_EINVAL) {
        fit->slope = fit->intercept = fit->low = fit->high = NAN;
        return 0;
    }
    return rc;
}

int gh_load_analyse(const gh_load_opts_t *o, gh_load_result_t *res)
{
    gh_load_memory_t *m = &res->memory;
    memset(m, 0, sizeof *m);
    m->warmup_s = (double)gh_load_warmup_ms(o) / 1000.0;
    m->samples = res->nsamples;
    m->start_bytes = m->end_bytes = m->slope_bytes_per_s = m->intercept = NAN;
    m->slope_low = m->slope_high = NAN;
    m->unexplained_slope = m->accounted_slope = m->cycles_per_s = m->bytes_per_1k_cycles = NAN;
    m->sessions_start = m->sessions_end = m->fit_window_s = m->rss_band_bytes = NAN;
    for (size_t c = 0; c < GH_MEM__COUNT; c++)
        m->component_slope[c] = NAN;
    m->max_leak_unit = o->max_leak_unit;
    m->max_leak = o->max_leak;
    m->max_leak_default = !(o->max_leak >= 0);
    m->verdict = GH_LOAD_INCONCLUSIVE;

    if (res->nsamples == 0) {
        snprintf(m->reason, sizeof m->reason, "no memory sample could be taken from the target");
        return 0;
    }
    const gh_load_sample_t *all = res->samples;
    m->start_bytes = all[0].rss;
    m->end_bytes = all[res->nsamples - 1].rss;
    for (size_t i = 1; i < res->nsamples; i++)
        if (isfinite(all[0].start_time) && isfinite(all[i].start_time) &&
            all[i].start_time != all[0].start_time)
            m->restarted = true;

    size_t first = 0;
    while (first < res->nsamples && all[first].t_s < m->warmup_s)
        first++;
    const gh_load_sample_t *fit = all + first;
    size_t n = res->nsamples - first;
    m->fit_samples = n;
    if (n > 0) {
        m->sessions_start = fit[0].sessions;
        m->sessions_end = fit[n - 1].sessions;
        m->fit_window_s = fit[n - 1].t_s - fit[0].t_s;
    }
    if (m->max_leak_default) {
        m->max_leak_unit = GH_LOAD_LEAK_PER_S;
        m->max_leak = m->fit_window_s > 0 ? gh_load_default_max_leak(m->fit_window_s) : NAN;
    }
    if (m->restarted) {
        snprintf(m->reason, sizeof m->reason,
                 "the target restarted during the run (process_start_time_seconds changed)");
        return 0;
    }
    if (n < GH_LOAD_MIN_FIT_SAMPLES) {
        snprintf(m->reason, sizeof m->reason,
                 "only %zu memory samples after the %.0f s warm-up (%d needed): run longer", n,
                 m->warmup_s, GH_LOAD_MIN_FIT_SAMPLES);
        return 0;
    }

    int rc = GH_ENOMEM;
    double *tb = gh_mem_calloc(GH_MEM_OTHER, n, sizeof *tb);
    double *yb = gh_mem_calloc(GH_MEM_OTHER, n, sizeof *yb);
    if (!tb || !yb)
        goto out;
    gh_load_fit_t rss, f;
    if ((rc = fit_field(fit, n, offsetof(gh_load_sample_t, rss), tb, yb, &rss)))
        goto out;
    m->slope_bytes_per_s = rss.slope;
    m->intercept = rss.intercept;
    m->slope_low = rss.low;
    m->slope_high = rss.high;
    if ((rc = fit_field(fit, n, offsetof(gh_load_sample_t, unexplained), tb, yb, &f)))
        goto out;
    m->unexplained_slope = f.slope;
    if ((rc = fit_field(fit, n, offsetof(gh_load_sample_t, accounted), tb, yb, &f)))
        goto out;
    m->accounted_slope = f.slope;
    for (size_t c = 0; c < GH_MEM__COUNT; c++) {
        size_t off = offsetof(gh_load_sample_t, component) + c * sizeof(double);
        if ((rc = fit_field(fit, n, off, tb, yb, &f)))
            goto out;
        m->component_slope[c] = f.slope;
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double resid = fit[i].rss - (m->intercept + m->slope_bytes_per_s * fit[i].t_s);
        lo = fmin(lo, resid);
        hi = fmax(hi, resid);
    }
    m->rss_band_bytes = hi - lo;
    double cycles = fit[n - 1].cycles - fit[0].cycles;
    if (m->fit_window_s > 0)
        m->cycles_per_s = cycles / m->fit_window_s;
    if (m->cycles_per_s > 0)
        m->bytes_per_1k_cycles = m->slope_bytes_per_s / m->cycles_per_s * 1000.0;
    rc = 0;

    bool per_1k = m->max_leak_unit == GH_LOAD_LEAK_PER_1K;
    if (per_1k && !(m->cycles_per_s > 0)) {
        snprintf(m->reason, sizeof m->reason,
                 "no session cycle completed after the warm-up, and --max-leak is per 1k cycles");
        goto out;
    }
    /* Everything is compared in bytes per second; a per-1k threshold is converted at the cycle
     * rate of the same window. */
    double limit = per_1k ? m->max_leak / 1000.0 * m->cycles_per_s : m->max_leak;

    /* The component (or the unaccounted rest) with the steepest growth, when it matters. */
    double best = limit / 4;
    for (size_t c = 0; c < GH_MEM__COUNT; c++) {
        if (m->component_slope[c] > best) {
            best = m->component_slope[c];
            m->growing = gh_mem_component_name((gh_mem_component_t)c);
        }
    }
    if (m->unexplained_slope > best)
        m->growing = "unaccounted";

    /* leak: the whole 95% interval of the slope is above the threshold; pass: all of it is at
     * or below; otherwise the noise is too large for this window to tell. */
    if (m->slope_low > limit)
        m->verdict = GH_LOAD_LEAK;
    else if (m->slope_high <= limit)
        m->verdict = GH_LOAD_PASS;
    else
        m->verdict = GH_LOAD_INCONCLUSIVE;

    char sl[24], lo_s[24], hi_s[24], lim[24], band[24];
    double scale = per_1k ? 1000.0 / m->cycles_per_s : 1.0;
    const char *unit = per_1k ? " per 1k cycles" : "/s";
    gh_load_format_bytes(m->slope_bytes_per_s * scale, sl, sizeof sl);
    gh_load_format_bytes(m->slope_low * scale, lo_s, sizeof lo_s);
    gh_load_format_bytes(m->slope_high * scale, hi_s, sizeof hi_s);
    gh_load_format_bytes(limit * scale, lim, sizeof lim);
    gh_load_format_bytes(m->rss_band_bytes, band, sizeof band);
    switch (m->verdict) {
    case GH_LOAD_LEAK:
        snprintf(
            m->reason, sizeof m->reason,
            "the RSS slope after the warm-up is %s%s (95%% interval %s to %s%s), over the %s%s "
            "allowed; growing: %s",
            sl, unit, lo_s, hi_s, unit, lim, unit, m->growing ? m->growing : "-");
        break;
    case GH_LOAD_PASS:
        snprintf(m->reason, sizeof m->reason,
                 "the RSS slope after the warm-up is %s%s (95%% interval %s to %s%s), within the "
                 "%s%s allowed",
                 sl, unit, lo_s, hi_s, unit, lim, unit);
        break;
    case GH_LOAD_INCONCLUSIVE:
        snprintf(m->reason, sizeof m->reason,
                 "the RSS slope after the warm-up is %s%s, but its 95%% interval (%s to %s%s) "
                 "straddles the %s%s allowed: RSS wanders by %s around its trend, too much for a "
                 "%.0f s window (argon2 working memory at a high --hash-memory?); run longer",
                 sl, unit, lo_s, hi_s, unit, lim, unit, band, m->fit_window_s);
        break;
    }
out:
    gh_mem_free(GH_MEM_OTHER, tb);
    gh_mem_free(GH_MEM_OTHER, yb);
    return rc;
}

/* ---- the result ---- */

int gh_load_result_new(const gh_load_opts_t *o, gh_load_result_t **out)
{
    gh_load_result_t *r = gh_mem_calloc(GH_MEM_OTHER, 1, sizeof *r);
    if (!r)
        return GH_ENOMEM;
    /* One tick per second of the load and of the drain, a few spare for partial seconds. */
    size_t cap = (size_t)((o->duration_ms + GH_LOAD_DRAIN_MS) / 1000) + 8;
    r->ticks = gh_mem_calloc(GH_MEM_OTHER, cap, sizeof *r->ticks);
    r->samples = gh_mem_calloc(GH_MEM_OTHER, cap, sizeof *r->samples);
    if (!r->ticks || !r->samples) {
        gh_load_result_free(&r);
        return GH_ENOMEM;
    }
    r->ticks_cap = r->samples_cap = cap;
    *out = r;
    return 0;
}

void gh_load_result_free(gh_load_result_t **r)
{
    if (!r || !*r)
        return;
    gh_mem_free(GH_MEM_OTHER, (*r)->ticks);
    gh_mem_free(GH_MEM_OTHER, (*r)->samples);
    gh_mem_free(GH_MEM_OTHER, *r);
    *r = NULL;
}
