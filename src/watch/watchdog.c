/*
 * watchdog.c — forecast, leak suspicion and alert state machine over a fixed ring of samples.
 *
 * The one design decision a reader must know: growth counts only when it is STEADY (see
 * watchdog.h). A robust slope alone is fooled by a single step — Theil-Sen pairs that straddle
 * a step all report growth — so every trend is also checked for growth spread across the four
 * quarters of its span and for growth above the residual noise. That is what keeps a cache that
 * filled once, or a GC sawtooth, from paging anyone, while a leak of any speed is steady by
 * nature.
 *
 * Cost per evaluation: 3 scales x (3 + GH_MEM__COUNT) series x (MAX_PAIRS slopes and a dozen
 * quickselects over at most MAX_POINTS samples): about 0.44 ms of CPU for the default 601-sample
 * ring, 0.74 ms for any ring longer than MAX_POINTS (bench/bench_watchdog.c).
 */
#include "watch/watchdog.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/trend.h"
#include "watch/statsd.h"
#include "watch/webhook.h"

#define MAX_PAIRS 2048
#define MAX_POINTS 1024 /* samples a trend looks at, at most (longer rings are thinned) */
#define MAX_LAGS 64
#define NSCALES 3
#define RATE_SPAN_MS 60000
/* RSS moves in pages and allocator arenas: growth below this is never "steady growth". */
#define MIN_STEADY_GROWTH (64.0 * 1024)
#define MiB (1024.0 * 1024.0)

const char *const gh_watch_alert_names[GH_WATCH__NALERTS] = {
#define GH__WATCH_ALERT_NAME(e, n) n,
    GH_WATCH_ALERT_MAP(GH__WATCH_ALERT_NAME)
#undef GH__WATCH_ALERT_NAME
};
const char *const gh_watch_severity_labels[2] = {"warning", "critical"};

static const char *const component_names[GH_MEM__COUNT] = {
#define GH__MEM_NAME(e, n) n,
    GH_MEM_COMPONENT_MAP(GH__MEM_NAME)
#undef GH__MEM_NAME
};

const char *gh_watch_severity_name(gh_watch_severity_t s)
{
    return s == GH_WATCH_CRITICAL ? "critical" : s == GH_WATCH_WARNING ? "warning" : "ok";
}

/* Series the watchdog follows. */
enum { SER_RSS = 0, SER_UNEXPLAINED, SER_SESSIONS, SER_COMPONENT0 };
#define SER__COUNT (SER_COMPONENT0 + GH_MEM__COUNT)

typedef struct {
    double slope;  /* bytes (or sessions) per second */
    double level;  /* fitted value at the newest sample */
    double span_s; /* newest - oldest sample time */
    bool steady;
} trend_t;

typedef struct {
    gh_watch_severity_t level;
    unsigned up, down; /* consecutive evaluations above / below level */
    gh_watch_severity_t pend_up, pend_down;
    int64_t since_ms;
    char summary[GH_WATCH_SUMMARY_LEN];
} alert_state_t;

/* Everything one evaluation derives from the ring; the sinks and summaries read it. */
typedef struct {
    const gh_watch_sample_t *now;
    double rss, accounted, unexplained, limit;
    double req_rate, failed_rate, limited_rate, error_rate; /* last minute */
    double audit_drop_rate;                                 /* last minute */
    double req_rate_window;                                 /* whole ring */
    /* forecast */
    double eta_s, forecast_slope, forecast_level, forecast_span_s;
    int forecast_scale; /* -1 none */
    /* fastest steadily growing series (unexplained or a component), any scale */
    int growing; /* series index, -1 none */
    double growing_slope, growing_span_s;
    /* leak */
    int leak; /* series index, -1 none */
    double leak_slope, leak_span_s, leak_eta_s;
    int leak_scale;
    /* sessions over the scale of the leak (or of the whole ring) */
    double sessions_growth_ratio;
    bool sessions_flat;
} eval_t;

struct gh_watchdog {
    gh_watch_options_t opt;
    size_t cap, head, count; /* ring: head is the oldest sample */
    gh_watch_sample_t *ring;
    double *ts, *ys, *scratch;
    size_t scratch_len;
    size_t min_history;   /* samples in the ring before any trend is trusted: half the window */
    size_t min_trend;     /* samples a trend spans at least: a quarter of the window */
    double leak_min_rate; /* bytes/s */
    gh_statsd_t *statsd;
    gh_webhook_t *webhook;
    gh_heap_growth_t *growth; /* NULL: no heap profile */
    int64_t last_periodic_ms;
    bool periodic_started;
    alert_state_t alerts[GH_WATCH__NALERTS];
    uint64_t events;
    char host[64];
    trend_t tr[SER__COUNT][NSCALES];
    size_t scale_m[NSCALES]; /* samples per scale this evaluation; 0 = not evaluated */

    /* thread */
    pthread_t thread;
    bool running, stop;
    pthread_mutex_t tlock;
    pthread_cond_t twake;

    /* published read-outs */
    pthread_mutex_t lock;
    gh_watch_status_t status;
};

/* ------------------------------------------------------------------ formatting */

char *gh_watch_fmt_bytes(double b, char *out, size_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = fabs(b);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (v < 10 && u > 0) {
        snprintf(out, n, "%s%.1f %s", b < 0 ? "-" : "", v, units[u]);
        size_t l = strlen(out);
        /* "1.0 GiB" reads better as "1 GiB" */
        char *dot = strstr(out, ".0 ");
        if (dot)
            memmove(dot, dot + 2, l - (size_t)(dot - out) - 1);
    } else {
        snprintf(out, n, "%s%.0f %s", b < 0 ? "-" : "", v, units[u]);
    }
    return out;
}

char *gh_watch_fmt_duration(double s, char *out, size_t n)
{
    if (!isfinite(s) || s >= 100.0 * 365 * 86400) {
        snprintf(out, n, "never");
        return out;
    }
    long long t = s <= 0 ? 0 : (long long)(s + 0.5);
    if (t < 60)
        snprintf(out, n, "%llds", t);
    else if (t < 3600)
        snprintf(out, n, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, n, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    else
        snprintf(out, n, "%lldd%lldh", t / 86400, (t % 86400) / 3600);
    return out;
}

/* 1204 -> "1,204"; rates under 10 keep one decimal ("0.4"). */
static char *fmt_count(double v, char *out, size_t n)
{
    if (!isfinite(v))
        v = 0;
    if (fabs(v) < 10 && v != floor(v)) {
        snprintf(out, n, "%.1f", v);
        return out;
    }
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", fabs(v));
    size_t len = strlen(digits), o = 0;
    if (v < 0 && o + 1 < n)
        out[o++] = '-';
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        if (i && (len - i) % 3 == 0 && o + 2 < n)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

static const char *series_name(int ser)
{
    if (ser == SER_UNEXPLAINED)
        return "unexplained";
    if (ser == SER_RSS)
        return "rss";
    if (ser == SER_SESSIONS)
        return "sessions_active";
    if (ser >= SER_COMPONENT0 && ser < SER__COUNT)
        return component_names[ser - SER_COMPONENT0];
    return "";
}

/* ------------------------------------------------------------------ robust statistics */

/* Theil-Sen over pairs a quarter to three quarters of the span apart: lags shorter than a GC
 * period would see only the rising edge of a sawtooth; lags spread over several periods see
 * rises and drops symmetrically. At most MAX_LAGS lags and about MAX_PAIRS pairs. */
static double ts_slope(double *scratch, const double *t, const double *y, size_t m)
{
    if (m < 2)
        return 0;
    size_t lo = m / 4 ? m / 4 : 1, hi = 3 * m / 4;
    if (hi > m - 1)
        hi = m - 1;
    if (hi < lo)
        hi = lo;
    gh_trend_pairs_t pairs = {
        .lag_lo = lo, .lag_hi = hi, .max_lags = MAX_LAGS, .max_pairs = MAX_PAIRS};
    gh_trend_fit_t fit;
    return gh_trend_theil_sen(t, y, m, &pairs, 0, scratch, &fit) == 0 ? fit.slope : 0;
}

/* Slope, fitted level and steadiness of y over t (seconds, newest last). */
static trend_t trend(double *scratch, const double *t, const double *y, size_t m, double min_growth)
{
    trend_t tr = {0};
    if (m < 2)
        return tr;
    tr.span_s = t[m - 1] - t[0];
    tr.slope = ts_slope(scratch, t, y, m);
    for (size_t i = 0; i < m; i++)
        scratch[i] = y[i] - tr.slope * (t[i] - t[m - 1]);
    tr.level = gh_trend_median(scratch, m);
    if (!(tr.slope > 0) || tr.span_s <= 0 || m < 8)
        return tr;
    if (tr.slope * tr.span_s >= min_growth)
        tr.steady = gh_trend_steady(t, y, m, tr.slope, tr.level, scratch);
    return tr;
}

/* ------------------------------------------------------------------ ring */

static const gh_watch_sample_t *at(const gh_watchdog_t *wd, size_t i) /* 0 = oldest */
{
    assert(i < wd->count);
    return &wd->ring[(wd->head + i) % wd->cap];
}

static double accounted_of(const gh_watch_sample_t *s)
{
    double sum = 0;
    for (int c = 0; c < GH_MEM__COUNT; c++)
        sum += (double)s->component_bytes[c];
    return sum;
}

static double series_value(const gh_watch_sample_t *s, int ser)
{
    switch (ser) {
    case SER_RSS:
        return (double)s->rss_bytes;
    case SER_UNEXPLAINED:
        return (double)s->rss_bytes - accounted_of(s);
    case SER_SESSIONS:
        return (double)s->sessions_active;
    default:
        return (double)s->component_bytes[ser - SER_COMPONENT0];
    }
}

/* Per-second rate of a cumulative counter between two samples; a counter that went down
 * (restart of its owner) gives 0. */
static double rate_between(const gh_watch_sample_t *a, const gh_watch_sample_t *b, size_t off)
{
    uint64_t va, vb;
    memcpy(&va, (const char *)a + off, sizeof va);
    memcpy(&vb, (const char *)b + off, sizeof vb);
    double dt = (double)(b->t_ms - a->t_ms) / 1000.0;
    if (dt <= 0 || vb < va)
        return 0;
    return (double)(vb - va) / dt;
}

/* ------------------------------------------------------------------ evaluation */

static void evaluate_trends(gh_watchdog_t *wd)
{
    size_t n = wd->count;
    for (int k = 0; k < NSCALES; k++) {
        size_t m = n >> k;
        wd->scale_m[k] = n >= wd->min_history && m >= wd->min_trend ? m : 0;
        if (!wd->scale_m[k])
            continue;
        /* A long ring is thinned to at most MAX_POINTS evenly spaced samples ending at the
         * newest, so an evaluation costs the same for a 10 min and a 24 h window. */
        size_t stride = (m + MAX_POINTS - 1) / MAX_POINTS, first = n - m;
        size_t np = (m - 1) / stride + 1, base = n - 1 - (np - 1) * stride;
        assert(np <= MAX_POINTS && base >= first);
        int64_t t_last = at(wd, n - 1)->t_ms;
        for (size_t i = 0; i < np; i++)
            wd->ts[i] = (double)(at(wd, base + i * stride)->t_ms - t_last) / 1000.0;
        for (int ser = 0; ser < SER__COUNT; ser++) {
            for (size_t i = 0; i < np; i++)
                wd->ys[i] = series_value(at(wd, base + i * stride), ser);
            double floor_growth = ser == SER_SESSIONS ? 0 : MIN_STEADY_GROWTH;
            trend_t *tr = &wd->tr[ser][k];
            *tr = trend(wd->scratch, wd->ts, wd->ys, np, floor_growth);
            /* A recent stretch of growth is only news if it climbs clearly above where the
             * series already was earlier in the ring: the rising edge of a slow GC sawtooth
             * looks like a leak for a while, but it never leaves the band it always lived in. */
            if (tr->steady && first > 0) {
                size_t ne = 0;
                for (size_t i = first % stride; i < first; i += stride)
                    wd->scratch[ne++] = series_value(at(wd, i), ser);
                double before = ne ? gh_trend_select(wd->scratch, ne, ne - 1 - ne / 50) : -INFINITY;
                if (tr->level - before < 0.25 * tr->slope * tr->span_s)
                    tr->steady = false;
            }
        }
    }
}

static bool sessions_flat(const gh_watchdog_t *wd, int k, double *ratio)
{
    const trend_t *s = &wd->tr[SER_SESSIONS][k];
    double growth = s->slope * s->span_s, start = s->level - growth;
    if (start < 0)
        start = 0;
    *ratio = start > 0 ? growth / start : (growth > 0 ? INFINITY : 0);
    double allowed = 0.10 * start > 10 ? 0.10 * start : 10;
    return growth <= allowed;
}

static void evaluate(gh_watchdog_t *wd, eval_t *e)
{
    memset(e, 0, sizeof *e);
    size_t n = wd->count;
    const gh_watch_sample_t *now = at(wd, n - 1), *oldest = at(wd, 0), *minute_ago = oldest;
    for (size_t i = n; i-- > 0;) {
        if (now->t_ms - at(wd, i)->t_ms > RATE_SPAN_MS)
            break;
        minute_ago = at(wd, i);
    }
    e->now = now;
    e->rss = (double)now->rss_bytes;
    e->accounted = accounted_of(now);
    e->unexplained = e->rss - e->accounted;
    e->limit = (double)wd->opt.limit_bytes;
    e->req_rate = rate_between(minute_ago, now, offsetof(gh_watch_sample_t, requests_total));
    e->failed_rate =
        rate_between(minute_ago, now, offsetof(gh_watch_sample_t, failed_logins_total));
    e->limited_rate =
        rate_between(minute_ago, now, offsetof(gh_watch_sample_t, rate_limited_total));
    e->error_rate = rate_between(minute_ago, now, offsetof(gh_watch_sample_t, server_errors_total));
    e->audit_drop_rate =
        rate_between(minute_ago, now, offsetof(gh_watch_sample_t, audit_dropped_total));
    e->req_rate_window = rate_between(oldest, now, offsetof(gh_watch_sample_t, requests_total));

    evaluate_trends(wd);

    /* Forecast: the fastest steady RSS trend over any scale. */
    e->eta_s = INFINITY;
    e->forecast_scale = -1;
    for (int k = 0; k < NSCALES; k++) {
        const trend_t *r = &wd->tr[SER_RSS][k];
        if (wd->scale_m[k] && r->steady && r->slope > e->forecast_slope) {
            e->forecast_slope = r->slope;
            e->forecast_level = r->level;
            e->forecast_span_s = r->span_s;
            e->forecast_scale = k;
            double left = e->limit - r->level;
            e->eta_s = e->limit <= 0 ? INFINITY : left <= 0 ? 0 : left / r->slope;
        }
    }

    /* The fastest steadily growing part of memory. */
    e->growing = -1;
    for (int k = 0; k < NSCALES; k++) {
        if (!wd->scale_m[k])
            continue;
        for (int ser = SER_UNEXPLAINED; ser < SER__COUNT; ser++) {
            if (ser == SER_SESSIONS)
                continue;
            const trend_t *t = &wd->tr[ser][k];
            if (t->steady && t->slope > e->growing_slope) {
                e->growing = ser;
                e->growing_slope = t->slope;
                e->growing_span_s = t->span_s;
            }
        }
    }

    /* Leak: only once half a window has been seen (start-up warms caches), over scales of at
     * least half a window, while sessions stay flat. */
    e->leak = -1;
    e->leak_scale = -1;
    e->leak_eta_s = INFINITY;
    e->sessions_flat = true;
    if (wd->scale_m[0])
        e->sessions_flat = sessions_flat(wd, 0, &e->sessions_growth_ratio);
    if (n >= wd->cap / 2) {
        for (int k = 0; k < NSCALES; k++) {
            if (!wd->scale_m[k] || wd->scale_m[k] < wd->cap / 2)
                continue;
            double ratio = 0;
            if (!sessions_flat(wd, k, &ratio))
                continue;
            for (int ser = SER_UNEXPLAINED; ser < SER__COUNT; ser++) {
                if (ser == SER_SESSIONS)
                    continue;
                const trend_t *t = &wd->tr[ser][k];
                if (!t->steady || t->slope < wd->leak_min_rate || t->slope <= e->leak_slope)
                    continue;
                /* Unexplained bytes also rise when accounted memory is freed but the
                 * allocator keeps the pages: only a leak if RSS itself grows. */
                if (ser == SER_UNEXPLAINED && !(wd->tr[SER_RSS][k].slope > 0))
                    continue;
                e->leak = ser;
                e->leak_slope = t->slope;
                e->leak_span_s = t->span_s;
                e->leak_scale = k;
                e->sessions_growth_ratio = ratio;
                e->sessions_flat = true;
            }
        }
        if (e->leak >= 0) {
            double left = e->limit - e->rss;
            double by_leak = e->limit <= 0 ? INFINITY : left <= 0 ? 0 : left / e->leak_slope;
            e->leak_eta_s = by_leak < e->eta_s ? by_leak : e->eta_s;
        }
    }
}

static gh_watch_severity_t candidate(const gh_watchdog_t *wd, const eval_t *e, gh_watch_alert_t a)
{
    switch (a) {
    case GH_WATCH_MEMORY_HIGH:
        if (e->limit <= 0)
            return GH_WATCH_OK;
        if (e->rss >= wd->opt.critical_ratio * e->limit)
            return GH_WATCH_CRITICAL;
        if (e->rss >= wd->opt.warn_ratio * e->limit)
            return GH_WATCH_WARNING;
        return GH_WATCH_OK;
    case GH_WATCH_EXHAUSTION_FORECAST: {
        double horizon = (double)wd->opt.horizon_ms / 1000.0;
        if (e->eta_s < horizon / 4)
            return GH_WATCH_CRITICAL;
        if (e->eta_s < horizon)
            return GH_WATCH_WARNING;
        return GH_WATCH_OK;
    }
    case GH_WATCH_LEAK_SUSPECTED:
        return e->leak >= 0 ? GH_WATCH_WARNING : GH_WATCH_OK;
    case GH_WATCH_STORE_WRITES_FAILING:
        return e->now->stores_not_writable ? GH_WATCH_CRITICAL : GH_WATCH_OK;
    case GH_WATCH_AUDIT_EVENTS_DROPPED:
        return e->audit_drop_rate > 0 ? GH_WATCH_WARNING : GH_WATCH_OK;
    case GH_WATCH_EMAIL_OUTBOX_STUCK:
        if (e->now->email_oldest_age_ms >= 4 * GH_WATCH_EMAIL_STUCK_MS)
            return GH_WATCH_CRITICAL;
        return e->now->email_oldest_age_ms >= GH_WATCH_EMAIL_STUCK_MS ? GH_WATCH_WARNING
                                                                      : GH_WATCH_OK;
    default:
        return GH_WATCH_OK;
    }
}

/* ------------------------------------------------------------------ summaries */

/* snprintf for summaries: a line cut at its buffer's end is fine, so truncation is no error. */
static int say(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    return r;
}

/* The largest part of memory (unexplained or a component). */
static int largest_part(const eval_t *e, double *bytes)
{
    int best = SER_UNEXPLAINED;
    *bytes = e->unexplained;
    for (int c = 0; c < GH_MEM__COUNT; c++) {
        double b = (double)e->now->component_bytes[c];
        if (b > *bytes) {
            *bytes = b;
            best = SER_COMPONENT0 + c;
        }
    }
    return best;
}

static void traffic_phrase(const eval_t *e, char *out, size_t n)
{
    char s[32], r[32], f[32], q[32];
    say(out, n, "sessions %s, requests %s/s, failed logins %s/s, rate-limited %s/s",
        fmt_count((double)e->now->sessions_active, s, sizeof s),
        fmt_count(e->req_rate, r, sizeof r), fmt_count(e->failed_rate, f, sizeof f),
        fmt_count(e->limited_rate, q, sizeof q));
}

/* "growing +2.9 MiB/s (fastest: unexplained +2.8 MiB/s), limit in 5m12s" or the largest part. */
static void growth_phrase(const eval_t *e, char *out, size_t n)
{
    char a[32], b[32], c[32];
    if (e->forecast_scale >= 0) {
        int len = say(out, n, "growing +%s/s", gh_watch_fmt_bytes(e->forecast_slope, a, 32));
        if (e->growing >= 0 && len > 0 && (size_t)len < n)
            len += say(out + len, n - (size_t)len, " (fastest: %s +%s/s)", series_name(e->growing),
                       gh_watch_fmt_bytes(e->growing_slope, b, 32));
        if (len > 0 && (size_t)len < n)
            say(out + len, n - (size_t)len, ", limit in %s",
                gh_watch_fmt_duration(e->eta_s, c, 32));
    } else {
        double bytes;
        int part = largest_part(e, &bytes);
        say(out, n, "not growing steadily; largest part: %s %s", series_name(part),
            gh_watch_fmt_bytes(bytes, a, 32));
    }
}

/* "; 96% of the growth allocated at leak_main ← start_thread (libc.so.6); 3% at ..." */
static void stacks_phrase(const gh_watchdog_t *wd, char *out, size_t n)
{
    gh_heap_growing_t g[GH_WATCH_STACKS];
    size_t k = gh_heap_growth_ranked(wd->growth, g, GH_WATCH_STACKS, NULL), len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < k && len + 1 < n; i++) {
        char where[GH_WATCH_STACK_LEN];
        gh_heap_stack_headline(g[i].stack, 3, where, sizeof where);
        int w = snprintf(out + len, n - len,
                         i ? "; %.0f%% at %s" : "; %.0f%% of the growth allocated at %s",
                         100 * g[i].share, where);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len >= n && n > 0)
        out[n - 1] = '\0';
    gh_heap_utf8_trim(out);
}

static void describe_base(const gh_watchdog_t *wd, const eval_t *e, gh_watch_alert_t a, char *out,
                          size_t n);

static void describe(const gh_watchdog_t *wd, const eval_t *e, gh_watch_alert_t a, char *out,
                     size_t n)
{
    describe_base(wd, e, a, out, n);
    if (wd->growth && (a == GH_WATCH_LEAK_SUSPECTED || a == GH_WATCH_EXHAUSTION_FORECAST)) {
        size_t len = strlen(out);
        stacks_phrase(wd, out + len, n - len);
    }
    gh_heap_utf8_trim(out);
}

static void describe_base(const gh_watchdog_t *wd, const eval_t *e, gh_watch_alert_t a, char *out,
                          size_t n)
{
    char rss[32], lim[32], grow[160], traffic[160], x[32], y[32], z[32];
    gh_watch_fmt_bytes(e->rss, rss, sizeof rss);
    gh_watch_fmt_bytes(e->limit, lim, sizeof lim);
    traffic_phrase(e, traffic, sizeof traffic);
    growth_phrase(e, grow, sizeof grow);
    int pct = e->limit > 0 ? (int)(100.0 * e->rss / e->limit + 0.5) : 0;
    switch (a) {
    case GH_WATCH_MEMORY_HIGH: {
        bool crit = e->rss >= wd->opt.critical_ratio * e->limit;
        double thr = crit ? wd->opt.critical_ratio : wd->opt.warn_ratio;
        say(out, n, "RSS %s is %d%% of the limit %s (%s at %d%%); %s; %s", rss, pct, lim,
            crit ? "critical" : "warning", (int)(thr * 100 + 0.5), grow, traffic);
        break;
    }
    case GH_WATCH_EXHAUSTION_FORECAST:
        if (e->forecast_scale >= 0)
            say(out, n, "RSS %s grows +%s/s steadily over %s%s%s%s: limit %s in %s; %s", rss,
                gh_watch_fmt_bytes(e->forecast_slope, x, sizeof x),
                gh_watch_fmt_duration(e->forecast_span_s, y, sizeof y),
                e->growing >= 0 ? " (fastest: " : "",
                e->growing >= 0 ? series_name(e->growing) : "", e->growing >= 0 ? ")" : "", lim,
                gh_watch_fmt_duration(e->eta_s, z, sizeof z), traffic);
        else
            say(out, n, "RSS %s of the limit %s does not grow steadily; %s", rss, lim, traffic);
        break;
    case GH_WATCH_LEAK_SUSPECTED: {
        if (e->leak < 0) {
            say(out, n, "no part of memory grows steadily while sessions are flat; %s", traffic);
            break;
        }
        char sess[96], req[64], verdict[128], cnt[32], r[32], eta[32];
        fmt_count((double)e->now->sessions_active, cnt, sizeof cnt);
        say(sess, sizeof sess, "sessions are flat at %s", cnt);
        bool rising = e->req_rate > 1.33 * e->req_rate_window && e->req_rate > 1;
        bool falling = e->req_rate < 0.75 * e->req_rate_window;
        say(req, sizeof req, "requests %s at %s/s",
            rising    ? "rising"
            : falling ? "falling"
                      : "steady",
            fmt_count(e->req_rate, r, sizeof r));
        bool attack =
            (e->failed_rate >= 1 && e->failed_rate >= 0.05 * e->req_rate) || e->limited_rate >= 1;
        if (attack)
            say(verdict, sizeof verdict,
                "failed logins %s/s and rate-limited %s/s: an attack may be under way too",
                fmt_count(e->failed_rate, x, sizeof x), fmt_count(e->limited_rate, y, sizeof y));
        else if (rising)
            say(verdict, sizeof verdict, "not an attack; requests are rising");
        else
            say(verdict, sizeof verdict, "not load, not an attack");
        gh_watch_fmt_duration(e->leak_eta_s, eta, sizeof eta);
        say(out, n, "%s memory +%s/s for %s while %s and %s: %s; limit %s %s%s",
            series_name(e->leak), gh_watch_fmt_bytes(e->leak_slope, x, sizeof x),
            gh_watch_fmt_duration(e->leak_span_s, y, sizeof y), sess, req, verdict, lim,
            isfinite(e->leak_eta_s) ? "in " : "", isfinite(e->leak_eta_s) ? eta : "not in sight");
        break;
    }
    case GH_WATCH_STORE_WRITES_FAILING:
        if (e->now->stores_not_writable)
            say(out, n,
                "%u local database%s cannot be written (%llu failed writes since start): logins, "
                "logouts and revocations answer 503 and change nothing, /readyz answers 503; "
                "free space in --data-dir",
                (unsigned)e->now->stores_not_writable, e->now->stores_not_writable == 1 ? "" : "s",
                (unsigned long long)e->now->store_write_failures_total);
        else
            say(out, n, "the local databases take writes again (%llu failed writes since start)",
                (unsigned long long)e->now->store_write_failures_total);
        break;
    case GH_WATCH_AUDIT_EVENTS_DROPPED:
        say(out, n,
            "%.1f audit events/s dropped in the last minute (%llu since start): the audit queue "
            "(--audit-queue) is full, failed and throttled logins are missing from the trail; "
            "%.1f failed logins/s, %.1f throttled/s",
            e->audit_drop_rate, (unsigned long long)e->now->audit_dropped_total, e->failed_rate,
            e->limited_rate);
        break;
    case GH_WATCH_EMAIL_OUTBOX_STUCK:
        say(out, n,
            "the oldest of %llu emails in the outbox has waited %.0f s: the mail server is down "
            "or refusing, or --smtp-url is unset; reset links and notices are not arriving "
            "(see the 'email delivery failed' log lines)",
            (unsigned long long)e->now->email_outbox_depth,
            (double)e->now->email_oldest_age_ms / 1000.0);
        break;
    default:
        out[0] = '\0';
    }
}

static void state_summary(const gh_watchdog_t *wd, const eval_t *e, char *out, size_t n)
{
    char rss[32], lim[32], grow[160], traffic[160];
    int pct = e->limit > 0 ? (int)(100.0 * e->rss / e->limit + 0.5) : 0;
    growth_phrase(e, grow, sizeof grow);
    traffic_phrase(e, traffic, sizeof traffic);
    if (wd->scale_m[0] == 0)
        say(grow, sizeof grow, "trend after %zu more samples", wd->min_history - wd->count);
    say(out, n, "RSS %s of %s (%d%%), %s; %s", gh_watch_fmt_bytes(e->rss, rss, sizeof rss),
        gh_watch_fmt_bytes(e->limit, lim, sizeof lim), pct, grow, traffic);
}

/* ------------------------------------------------------------------ sinks */

static void fill_event(const gh_watchdog_t *wd, const eval_t *e, gh_watch_alert_t a,
                       gh_watch_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->alert = a;
    ev->name = gh_watch_alert_names[a];
    ev->at_ms = wd->opt.wall_clock_ms();
    snprintf(ev->host, sizeof ev->host, "%s", wd->host);
    ev->rss_bytes = e->now->rss_bytes;
    ev->limit_bytes = wd->opt.limit_bytes;
    ev->sessions_active = e->now->sessions_active;
    ev->request_rate = e->req_rate;
    ev->failed_login_rate = e->failed_rate;
    ev->rate_limited_rate = e->limited_rate;
    ev->eta_s = e->eta_s;
    if (a == GH_WATCH_LEAK_SUSPECTED || a == GH_WATCH_EXHAUSTION_FORECAST) {
        gh_heap_growing_t g[GH_WATCH_STACKS];
        size_t k = gh_heap_growth_ranked(wd->growth, g, GH_WATCH_STACKS, NULL);
        for (size_t i = 0; i < k; i++) {
            gh_heap_stack_headline(g[i].stack, 3, ev->stacks[i].where, sizeof ev->stacks[i].where);
            ev->stacks[i].share = g[i].share;
            ev->stacks[i].slope_bytes_per_s = g[i].slope;
        }
        ev->nstacks = (unsigned)k;
    }
    if (a == GH_WATCH_LEAK_SUSPECTED && e->leak >= 0) {
        snprintf(ev->component, sizeof ev->component, "%s", series_name(e->leak));
        double v = series_value(e->now, e->leak);
        ev->bytes = v > 0 ? (uint64_t)v : 0;
        ev->slope_bytes_per_s = e->leak_slope;
        ev->growth_span_ms = (int64_t)(e->leak_span_s * 1000);
        ev->eta_s = e->leak_eta_s;
    } else {
        ev->bytes = e->now->rss_bytes;
        ev->slope_bytes_per_s = e->forecast_slope;
        ev->growth_span_ms = (int64_t)(e->forecast_span_s * 1000);
        double bytes;
        int part = e->growing >= 0 ? e->growing : largest_part(e, &bytes);
        snprintf(ev->component, sizeof ev->component, "%s", series_name(part));
    }
}

static int worst_severity(const gh_watchdog_t *wd, const char **summary)
{
    int worst = 0;
    *summary = NULL;
    for (int a = 0; a < GH_WATCH__NALERTS; a++) {
        if (a == GH_WATCH_STORE_WRITES_FAILING || a == GH_WATCH_AUDIT_EVENTS_DROPPED ||
            a == GH_WATCH_EMAIL_OUTBOX_STUCK)
            continue; /* not about memory */
        if ((int)wd->alerts[a].level > worst) {
            worst = (int)wd->alerts[a].level;
            *summary = wd->alerts[a].summary;
        }
    }
    return worst;
}

static void send_service_check(gh_watchdog_t *wd, const char *ok_summary)
{
    const char *msg;
    int status = worst_severity(wd, &msg);
    GH_IGNORE(gh_statsd_service_check(wd->statsd, "gatehouse.memory", status,
                                      msg ? msg : ok_summary, NULL));
}

static void webhook_send(gh_watchdog_t *wd, const gh_watch_event_t *ev)
{
    char at[GH_RFC3339_LEN], eta[32], text[GH_WATCH_SUMMARY_LEN + 160];
    gh_clock_rfc3339(ev->at_ms, at);
    gh_watch_fmt_duration(ev->eta_s, eta, sizeof eta);
    if (ev->firing)
        snprintf(text, sizeof text, "%s *%s* %s on %s: %s",
                 ev->severity == GH_WATCH_CRITICAL ? ":red_circle: CRITICAL" : ":warning: WARNING",
                 ev->name, ev->previous ? "changed" : "firing", ev->host, ev->summary);
    else
        snprintf(text, sizeof text, ":white_check_mark: RESOLVED *%s* on %s: %s", ev->name,
                 ev->host, ev->summary);
    json_t *j = json_object();
    if (!j)
        return;
    int bad = 0;
    bad |= json_object_set_new(j, "service", json_string("gatehouse"));
    bad |= json_object_set_new(j, "host", json_string(ev->host));
    bad |= json_object_set_new(j, "alert", json_string(ev->name));
    bad |= json_object_set_new(j, "state", json_string(ev->firing ? "firing" : "resolved"));
    bad |= json_object_set_new(j, "severity", json_string(gh_watch_severity_name(ev->severity)));
    bad |= json_object_set_new(j, "previous_severity",
                               json_string(gh_watch_severity_name(ev->previous)));
    bad |= json_object_set_new(j, "at", json_string(at));
    bad |= json_object_set_new(j, "component", json_string(ev->component));
    bad |= json_object_set_new(j, "bytes", json_integer((json_int_t)ev->bytes));
    bad |= json_object_set_new(j, "slope_bytes_per_second", json_real(ev->slope_bytes_per_s));
    bad |= json_object_set_new(j, "growth_seconds", json_real((double)ev->growth_span_ms / 1000.0));
    bad |= json_object_set_new(j, "eta_seconds",
                               isfinite(ev->eta_s) ? json_real(ev->eta_s) : json_null());
    bad |= json_object_set_new(j, "eta", json_string(eta));
    bad |= json_object_set_new(j, "rss_bytes", json_integer((json_int_t)ev->rss_bytes));
    bad |= json_object_set_new(j, "limit_bytes", json_integer((json_int_t)ev->limit_bytes));
    bad |= json_object_set_new(j, "sessions_active", json_integer((json_int_t)ev->sessions_active));
    bad |= json_object_set_new(j, "request_rate", json_real(ev->request_rate));
    bad |= json_object_set_new(j, "failed_login_rate", json_real(ev->failed_login_rate));
    bad |= json_object_set_new(j, "rate_limited_rate", json_real(ev->rate_limited_rate));
    bad |= json_object_set_new(j, "summary", json_string(ev->summary));
    json_t *stacks = json_array();
    for (unsigned i = 0; stacks && i < ev->nstacks; i++)
        bad |= json_array_append_new(stacks,
                                     json_pack("{s:s, s:f, s:f}", "stack", ev->stacks[i].where,
                                               "share", ev->stacks[i].share, "bytes_per_second",
                                               ev->stacks[i].slope_bytes_per_s));
    bad |= json_object_set_new(j, "growing_stacks", stacks);
    bad |= json_object_set_new(j, "text", json_string(text));
    char buf[8192];
    size_t len = bad ? 0 : json_dumpb(j, buf, sizeof buf, JSON_COMPACT);
    json_decref(j);
    if (len == 0 || len > sizeof buf) {
        GH_LOG(GH_LOG_WARN, "alert webhook body could not be built", GH_LS("alert", ev->name));
        return;
    }
    if (gh_webhook_post(wd->webhook, buf, len) != 0)
        GH_LOG(GH_LOG_WARN, "alert webhook body not queued", GH_LS("alert", ev->name));
}

static void emit(gh_watchdog_t *wd, const gh_watch_event_t *ev, const char *ok_summary)
{
    char eta[32];
    gh_watch_fmt_duration(ev->eta_s, eta, sizeof eta);
    gh_log_level_t level = ev->severity == GH_WATCH_CRITICAL ? GH_LOG_ERROR : GH_LOG_WARN;
    GH_LOG(level, "alert", GH_LS("alert", ev->name),
           GH_LS("state", ev->firing ? "firing" : "resolved"),
           GH_LS("severity", gh_watch_severity_name(ev->severity)),
           GH_LS("previous", gh_watch_severity_name(ev->previous)),
           GH_LS("component", ev->component), GH_LI("bytes", ev->bytes),
           GH_LD("slope_bytes_per_s", ev->slope_bytes_per_s),
           GH_LI("eta_s", isfinite(ev->eta_s) ? (long long)ev->eta_s : -1), GH_LS("eta", eta),
           GH_LI("sessions", ev->sessions_active), GH_LD("request_rate", ev->request_rate),
           GH_LD("failed_login_rate", ev->failed_login_rate),
           GH_LD("rate_limited_rate", ev->rate_limited_rate), GH_LS("summary", ev->summary));
    if (wd->statsd) {
        char title[128], tags[128];
        snprintf(title, sizeof title, "gatehouse %s %s", ev->name,
                 ev->firing ? gh_watch_severity_name(ev->severity) : "resolved");
        snprintf(tags, sizeof tags, "alert:%s,severity:%s", ev->name,
                 gh_watch_severity_name(ev->firing ? ev->severity : ev->previous));
        const char *type = !ev->firing                         ? "success"
                           : ev->severity == GH_WATCH_CRITICAL ? "error"
                                                               : "warning";
        GH_IGNORE(gh_statsd_event(wd->statsd, title, ev->summary, type, tags));
        send_service_check(wd, ok_summary);
    }
    if (wd->webhook)
        webhook_send(wd, ev);
    if (wd->opt.on_event)
        wd->opt.on_event(wd->opt.event_ctx, ev);
}

static void send_gauges(gh_watchdog_t *wd, const eval_t *e, const char *ok_summary)
{
    gh_statsd_t *s = wd->statsd;
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.rss_bytes", e->rss, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.allocator_bytes",
                              (double)e->now->allocator_bytes, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.accounted_bytes", e->accounted, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.unexplained_bytes", e->unexplained, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.limit_bytes", e->limit, NULL));
    for (int c = 0; c < GH_MEM__COUNT; c++) {
        char tag[48];
        snprintf(tag, sizeof tag, "component:%s", component_names[c]);
        GH_IGNORE(
            gh_statsd_gauge(s, "gatehouse.memory.bytes", (double)e->now->component_bytes[c], tag));
    }
    GH_IGNORE(
        gh_statsd_gauge(s, "gatehouse.memory.growth_bytes_per_second", e->forecast_slope, NULL));
    if (isfinite(e->eta_s)) /* DogStatsD has no +Inf: no ETA, no point */
        GH_IGNORE(gh_statsd_gauge(s, "gatehouse.memory.exhaustion_eta_seconds", e->eta_s, NULL));
    GH_IGNORE(
        gh_statsd_gauge(s, "gatehouse.sessions.active", (double)e->now->sessions_active, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.requests.rate", e->req_rate, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.logins.failed_rate", e->failed_rate, NULL));
    GH_IGNORE(gh_statsd_gauge(s, "gatehouse.logins.rate_limited_rate", e->limited_rate, NULL));
    for (int a = 0; a < GH_WATCH__NALERTS; a++) {
        char tag[64];
        snprintf(tag, sizeof tag, "alert:%s", gh_watch_alert_names[a]);
        GH_IGNORE(gh_statsd_gauge(s, "gatehouse.alert.firing", (double)wd->alerts[a].level, tag));
    }
    send_service_check(wd, ok_summary);
}

/* ------------------------------------------------------------------ state machine */

/* Moves one alert's hysteresis counters; returns true when its level changed. */
static bool advance(alert_state_t *st, gh_watch_severity_t c, unsigned fire_after,
                    unsigned resolve_after, gh_watch_severity_t *previous)
{
    *previous = st->level;
    if (c > st->level) {
        st->down = 0;
        st->pend_up = st->up == 0 || c < st->pend_up ? c : st->pend_up;
        if (++st->up >= fire_after) {
            st->level = st->pend_up;
            st->up = 0;
            return true;
        }
    } else if (c < st->level) {
        st->up = 0;
        st->pend_down = st->down == 0 || c > st->pend_down ? c : st->pend_down;
        if (++st->down >= resolve_after) {
            st->level = st->pend_down;
            st->down = 0;
            return true;
        }
    } else {
        st->up = st->down = 0;
    }
    return false;
}

static void publish(gh_watchdog_t *wd, const eval_t *e, const char *summary)
{
    gh_watch_status_t st;
    memset(&st, 0, sizeof st);
    st.window_ms = wd->opt.window_ms;
    st.interval_ms = wd->opt.interval_ms;
    st.samples = wd->count;
    st.capacity = wd->cap;
    st.limit_bytes = wd->opt.limit_bytes;
    st.warn_ratio = wd->opt.warn_ratio;
    st.critical_ratio = wd->opt.critical_ratio;
    st.horizon_ms = wd->opt.horizon_ms;
    st.rss_bytes = e->now->rss_bytes;
    st.allocator_bytes = e->now->allocator_bytes;
    st.accounted_bytes = (uint64_t)e->accounted;
    st.unexplained_bytes = e->unexplained > 0 ? (uint64_t)e->unexplained : 0;
    memcpy(st.component_bytes, e->now->component_bytes, sizeof st.component_bytes);
    st.sessions_active = e->now->sessions_active;
    st.request_rate = e->req_rate;
    st.failed_login_rate = e->failed_rate;
    st.rate_limited_rate = e->limited_rate;
    st.server_error_rate = e->error_rate;
    if (wd->scale_m[0]) {
        st.rss_slope = wd->tr[SER_RSS][0].slope;
        st.rss_steady = wd->tr[SER_RSS][0].steady;
        st.unexplained_slope = wd->tr[SER_UNEXPLAINED][0].slope;
        for (int c = 0; c < GH_MEM__COUNT; c++)
            st.component_slope[c] = wd->tr[SER_COMPONENT0 + c][0].slope;
    }
    st.forecast_slope = e->forecast_slope;
    st.forecast_level = e->forecast_level;
    st.forecast_span_ms = (int64_t)(e->forecast_span_s * 1000);
    st.eta_s = e->eta_s;
    if (e->growing >= 0) {
        snprintf(st.growing, sizeof st.growing, "%s", series_name(e->growing));
        st.growing_slope = e->growing_slope;
    }
    for (int a = 0; a < GH_WATCH__NALERTS; a++) {
        st.severity[a] = wd->alerts[a].level;
        st.since_ms[a] = wd->alerts[a].since_ms;
        if (wd->alerts[a].level)
            memcpy(st.alert_summary[a], wd->alerts[a].summary, GH_WATCH_SUMMARY_LEN);
    }
    snprintf(st.summary, sizeof st.summary, "%s", summary);
    st.heap_profile = wd->growth != NULL;
    st.nstacks = gh_heap_growth_ranked(wd->growth, st.stacks, GH_WATCH_STACKS, &st.stacks_span_s);
    st.events = wd->events;
    if (wd->statsd) {
        st.statsd_sent = gh_statsd_sent(wd->statsd);
        st.statsd_dropped = gh_statsd_dropped(wd->statsd);
    }
    if (wd->webhook) {
        gh_webhook_stats_t ws;
        gh_webhook_stats(wd->webhook, &ws);
        st.webhook_delivered = ws.delivered;
        st.webhook_failed = ws.failed;
        st.webhook_dropped = ws.dropped;
    }
    pthread_mutex_lock(&wd->lock);
    wd->status = st;
    pthread_mutex_unlock(&wd->lock);
}

void gh_watchdog_step(gh_watchdog_t *wd, const gh_watch_sample_t *s)
{
    assert(wd && s);
    if (wd->count && s->t_ms < at(wd, wd->count - 1)->t_ms)
        return;
    /* Only this thread writes the ring, so it reads it without the lock; readers of the ring
     * (gh_watchdog_history) take the lock, so the write does too. */
    pthread_mutex_lock(&wd->lock);
    if (wd->count == wd->cap) {
        wd->ring[wd->head] = *s;
        wd->head = (wd->head + 1) % wd->cap;
    } else {
        wd->ring[(wd->head + wd->count) % wd->cap] = *s;
        wd->count++;
    }
    pthread_mutex_unlock(&wd->lock);
    gh_heap_growth_add(wd->growth, s->t_ms);

    eval_t e;
    evaluate(wd, &e);
    char summary[GH_WATCH_SUMMARY_LEN];
    state_summary(wd, &e, summary, sizeof summary);

    for (int a = 0; a < GH_WATCH__NALERTS; a++) {
        alert_state_t *st = &wd->alerts[a];
        gh_watch_severity_t prev;
        /* Trend alerts judge minutes of samples; one noisy stretch must not resolve them, so
         * they stay until a quarter window has been clear. */
        unsigned resolve_after = wd->opt.resolve_after;
        if (a != GH_WATCH_MEMORY_HIGH && a != GH_WATCH_STORE_WRITES_FAILING &&
            a != GH_WATCH_AUDIT_EVENTS_DROPPED && a != GH_WATCH_EMAIL_OUTBOX_STUCK &&
            resolve_after < wd->min_trend)
            resolve_after = (unsigned)wd->min_trend;
        bool changed = advance(st, candidate(wd, &e, (gh_watch_alert_t)a), wd->opt.fire_after,
                               resolve_after, &prev);
        if (st->level)
            describe(wd, &e, (gh_watch_alert_t)a, st->summary, sizeof st->summary);
        if (!changed)
            continue;
        gh_watch_event_t ev;
        fill_event(wd, &e, (gh_watch_alert_t)a, &ev);
        ev.severity = st->level;
        ev.previous = prev;
        ev.firing = st->level != GH_WATCH_OK;
        if (ev.firing) {
            memcpy(ev.summary, st->summary, sizeof ev.summary);
        } else {
            char now[GH_WATCH_SUMMARY_LEN - 16];
            describe(wd, &e, (gh_watch_alert_t)a, now, sizeof now);
            snprintf(ev.summary, sizeof ev.summary, "resolved: %s", now);
            st->summary[0] = '\0';
        }
        st->since_ms = ev.at_ms;
        wd->events++;
        emit(wd, &ev, summary);
    }

    if (wd->statsd) {
        if (!wd->periodic_started || s->t_ms - wd->last_periodic_ms >= wd->opt.statsd_period_ms) {
            wd->periodic_started = true;
            wd->last_periodic_ms = s->t_ms;
            send_gauges(wd, &e, summary);
        }
    }
    publish(wd, &e, summary);
}

/* ------------------------------------------------------------------ sampling and thread */

int gh_watch_sample_process(gh_watch_counters_fn counters, void *ctx, gh_watch_sample_t *out)
{
    memset(out, 0, sizeof *out);
    out->t_ms = gh_clock_mono_ns() / 1000000;
    out->rss_bytes = gh_mem_rss_bytes();
    if (!out->rss_bytes)
        return GH_EIO;
    out->allocator_bytes = gh_mem_allocator_in_use();
    for (int c = 0; c < GH_MEM__COUNT; c++)
        out->component_bytes[c] = gh_mem_bytes((gh_mem_component_t)c);
    if (counters)
        counters(ctx, out);
    return 0;
}

static int default_sampler(void *ctx, gh_watch_sample_t *out)
{
    gh_watchdog_t *wd = ctx;
    return gh_watch_sample_process(wd->opt.counters, wd->opt.counters_ctx, out);
}

int gh_watchdog_tick(gh_watchdog_t *wd)
{
    gh_watch_sample_t s;
    memset(&s, 0, sizeof s);
    int rc = wd->opt.sampler(wd->opt.sampler_ctx, &s);
    if (rc != 0)
        return rc;
    gh_watchdog_step(wd, &s);
    return 0;
}

static struct timespec mono_after(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

static void *watch_main(void *arg)
{
    gh_watchdog_t *wd = arg;
    pthread_mutex_lock(&wd->tlock);
    while (!wd->stop) {
        struct timespec until = mono_after(wd->opt.interval_ms);
        while (!wd->stop && pthread_cond_timedwait(&wd->twake, &wd->tlock, &until) != ETIMEDOUT) {
        }
        if (wd->stop)
            break;
        pthread_mutex_unlock(&wd->tlock);
        GH_IGNORE(gh_watchdog_tick(wd)); /* an unknown figure skips one tick */
        pthread_mutex_lock(&wd->tlock);
    }
    pthread_mutex_unlock(&wd->tlock);
    return NULL;
}

int gh_watchdog_start(gh_watchdog_t *wd)
{
    pthread_mutex_lock(&wd->tlock);
    if (wd->running) {
        pthread_mutex_unlock(&wd->tlock);
        return GH_EINVAL;
    }
    wd->stop = false;
    int rc = pthread_create(&wd->thread, NULL, watch_main, wd) == 0 ? 0 : GH_EINTERNAL;
    wd->running = rc == 0;
    pthread_mutex_unlock(&wd->tlock);
    return rc;
}

void gh_watchdog_stop(gh_watchdog_t *wd)
{
    pthread_mutex_lock(&wd->tlock);
    if (!wd->running) {
        pthread_mutex_unlock(&wd->tlock);
        return;
    }
    wd->stop = true;
    pthread_cond_broadcast(&wd->twake);
    pthread_mutex_unlock(&wd->tlock);
    pthread_join(wd->thread, NULL);
    pthread_mutex_lock(&wd->tlock);
    wd->running = false;
    pthread_mutex_unlock(&wd->tlock);
}

/* ------------------------------------------------------------------ life cycle */

static void free_all(gh_watchdog_t *wd)
{
    gh_webhook_stop(&wd->webhook, 2000);
    gh_statsd_close(&wd->statsd);
    gh_heap_growth_destroy(&wd->growth);
    gh_mem_free(GH_MEM_METRICS, wd->ring);
    gh_mem_free(GH_MEM_METRICS, wd->ts);
    gh_mem_free(GH_MEM_METRICS, wd->ys);
    gh_mem_free(GH_MEM_METRICS, wd->scratch);
    gh_mem_free(GH_MEM_METRICS, wd);
}

int gh_watchdog_create(const gh_watch_options_t *opt, gh_watchdog_t **out)
{
    *out = NULL;
    gh_watch_options_t o = *opt;
    if (!o.interval_ms)
        o.interval_ms = 1000;
    if (!o.window_ms)
        o.window_ms = 600000;
    if (!o.warn_ratio)
        o.warn_ratio = 0.70;
    if (!o.critical_ratio)
        o.critical_ratio = 0.85;
    if (!o.horizon_ms)
        o.horizon_ms = 2 * 3600 * 1000;
    if (!o.fire_after)
        o.fire_after = 5;
    if (!o.resolve_after)
        o.resolve_after = 30;
    if (!o.leak_min_growth)
        o.leak_min_growth = 4u << 20;
    if (!o.statsd_period_ms)
        o.statsd_period_ms = 10000;
    if (!o.wall_clock_ms)
        o.wall_clock_ms = gh_clock_now_ms;
    if (!o.limit_bytes) {
        o.limit_bytes = gh_mem_cgroup_limit();
        if (!o.limit_bytes)
            o.limit_bytes = gh_mem_physical_bytes() / 2;
    }
    if (o.interval_ms <= 0 || o.window_ms < o.interval_ms || o.horizon_ms < 0 ||
        !(o.warn_ratio > 0) || !(o.critical_ratio >= o.warn_ratio) || o.critical_ratio > 1)
        return GH_EINVAL;
    int64_t cap = o.window_ms / o.interval_ms + 1;
    if (cap < 8 || cap > GH_WATCH_MAX_SAMPLES)
        return GH_EINVAL;

    gh_watchdog_t *wd = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *wd);
    if (!wd)
        return GH_ENOMEM;
    wd->cap = (size_t)cap;
    wd->min_trend = wd->cap / 4 >= 8 ? wd->cap / 4 : 8;
    wd->min_history = wd->cap / 2 >= 8 ? wd->cap / 2 : 8;
    wd->leak_min_rate = (double)o.leak_min_growth / ((double)o.window_ms / 1000.0);
    wd->scratch_len = wd->cap > MAX_PAIRS + MAX_LAGS ? wd->cap : MAX_PAIRS + MAX_LAGS;
    wd->ring = gh_mem_calloc(GH_MEM_METRICS, wd->cap, sizeof *wd->ring);
    wd->ts = gh_mem_calloc(GH_MEM_METRICS, wd->cap, sizeof *wd->ts);
    wd->ys = gh_mem_calloc(GH_MEM_METRICS, wd->cap, sizeof *wd->ys);
    wd->scratch = gh_mem_calloc(GH_MEM_METRICS, wd->scratch_len, sizeof *wd->scratch);
    int rc = GH_ENOMEM;
    if (!wd->ring || !wd->ts || !wd->ys || !wd->scratch)
        goto fail;
    if (!o.sampler) {
        o.sampler = default_sampler;
        o.sampler_ctx = wd;
    }
    if (o.heap_source || gh_heap_active()) {
        /* A stack grows when it adds a quarter of what a leak must: the alert names the stacks
         * that make up a leak, not only one that would be a leak alone. */
        rc = gh_heap_growth_create(o.window_ms, o.interval_ms, (double)o.leak_min_growth / 4,
                                   o.heap_source, &wd->growth);
        if (rc != 0)
            goto fail;
    }
    if (gethostname(wd->host, sizeof wd->host - 1) != 0)
        snprintf(wd->host, sizeof wd->host, "unknown");
    if (o.statsd && *o.statsd) {
        rc = gh_statsd_open(o.statsd, "service:gatehouse", &wd->statsd);
        if (rc == GH_EINVAL || rc == GH_ENOMEM)
            goto fail;
        if (rc != 0)
            GH_LOG(GH_LOG_WARN, "statsd disabled: the agent address does not resolve",
                   GH_LS("statsd", o.statsd), GH_LS("error", gh_strerror(rc)));
    }
    if (o.webhook_url && *o.webhook_url) {
        gh_webhook_options_t wo = {.url = o.webhook_url, .backoff_ms = o.webhook_backoff_ms};
        if ((rc = gh_webhook_start(&wo, &wd->webhook)) != 0)
            goto fail;
    }
    /* The strings are not kept: the sinks hold their own copies. */
    o.statsd = NULL;
    o.webhook_url = NULL;
    wd->opt = o;
    pthread_mutex_init(&wd->lock, NULL);
    pthread_mutex_init(&wd->tlock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&wd->twake, &ca);
    pthread_condattr_destroy(&ca);
    wd->status.window_ms = o.window_ms;
    wd->status.interval_ms = o.interval_ms;
    wd->status.capacity = wd->cap;
    wd->status.limit_bytes = o.limit_bytes;
    wd->status.warn_ratio = o.warn_ratio;
    wd->status.critical_ratio = o.critical_ratio;
    wd->status.horizon_ms = o.horizon_ms;
    wd->status.eta_s = INFINITY;
    snprintf(wd->status.summary, sizeof wd->status.summary, "no sample yet");
    *out = wd;
    return 0;
fail:
    free_all(wd);
    return rc;
}

void gh_watchdog_destroy(gh_watchdog_t **wdp)
{
    if (!wdp || !*wdp)
        return;
    gh_watchdog_t *wd = *wdp;
    gh_watchdog_stop(wd);
    pthread_mutex_destroy(&wd->lock);
    pthread_mutex_destroy(&wd->tlock);
    pthread_cond_destroy(&wd->twake);
    free_all(wd);
    *wdp = NULL;
}

/* ------------------------------------------------------------------ read-outs */

size_t gh_watchdog_heap_growth(gh_watchdog_t *wd, gh_heap_growing_t *out, size_t cap,
                               double *span_s)
{
    return gh_heap_growth_ranked(wd ? wd->growth : NULL, out, cap, span_s);
}

double gh_watchdog_eta_seconds(gh_watchdog_t *wd)
{
    pthread_mutex_lock(&wd->lock);
    double eta = wd->status.eta_s;
    pthread_mutex_unlock(&wd->lock);
    return eta;
}

gh_watch_severity_t gh_watchdog_severity(gh_watchdog_t *wd, gh_watch_alert_t a)
{
    assert(a < GH_WATCH__NALERTS);
    pthread_mutex_lock(&wd->lock);
    gh_watch_severity_t s = wd->status.severity[a];
    pthread_mutex_unlock(&wd->lock);
    return s;
}

bool gh_watchdog_memory_critical(gh_watchdog_t *wd)
{
    return gh_watchdog_severity(wd, GH_WATCH_MEMORY_HIGH) == GH_WATCH_CRITICAL;
}

void gh_watchdog_status(gh_watchdog_t *wd, gh_watch_status_t *out)
{
    pthread_mutex_lock(&wd->lock);
    *out = wd->status;
    pthread_mutex_unlock(&wd->lock);
}

size_t gh_watchdog_history(gh_watchdog_t *wd, gh_watch_sample_t *out, size_t cap)
{
    if (!wd || !out || cap == 0)
        return 0;
    pthread_mutex_lock(&wd->lock);
    size_t n = wd->count, k = n < cap ? n : cap;
    /* Sample j of k is ring sample j(n-1)/(k-1): the oldest first, the newest last, strictly
     * increasing because k <= n. */
    for (size_t j = 0; j < k; j++)
        out[j] = *at(wd, k == 1 ? n - 1 : j * (n - 1) / (k - 1));
    pthread_mutex_unlock(&wd->lock);
    return k;
}

int gh_watchdog_collect_firing(void *ctx, double *values, size_t nseries)
{
    gh_watch_status_t st;
    gh_watchdog_t *wd = ctx;
    pthread_mutex_lock(&wd->lock);
    memcpy(st.severity, wd->status.severity, sizeof st.severity);
    pthread_mutex_unlock(&wd->lock);
    for (size_t a = 0; a < GH_WATCH__NALERTS; a++)
        for (size_t s = 0; s < 2; s++)
            if (a * 2 + s < nseries)
                values[a * 2 + s] = st.severity[a] == (gh_watch_severity_t)(s + 1) ? 1 : 0;
    return 0;
}

int gh_watchdog_collect_eta(void *ctx, double *values, size_t nseries)
{
    if (nseries)
        values[0] = gh_watchdog_eta_seconds(ctx);
    return 0;
}

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

json_t *gh_watch_status_json(const gh_watch_status_t *st)
{
    char eta[32];
    json_t *comps = json_object(), *alerts = json_array();
    json_t *j = json_object();
    if (!comps || !alerts || !j)
        goto fail;
    int bad = 0;
    for (int c = 0; c < GH_MEM__COUNT; c++)
        bad |= json_object_set_new(
            comps, component_names[c],
            json_pack("{s:I, s:o}", "bytes", (json_int_t)st->component_bytes[c],
                      "slope_bytes_per_second", real_or_null(st->component_slope[c])));
    for (int a = 0; a < GH_WATCH__NALERTS; a++) {
        char since[GH_RFC3339_LEN] = "";
        if (st->since_ms[a])
            gh_clock_rfc3339(st->since_ms[a], since);
        bad |= json_array_append_new(
            alerts, json_pack("{s:s, s:b, s:s, s:s?, s:s}", "alert", gh_watch_alert_names[a],
                              "firing", st->severity[a] != GH_WATCH_OK, "severity",
                              gh_watch_severity_name(st->severity[a]), "since",
                              st->since_ms[a] ? since : NULL, "summary", st->alert_summary[a]));
    }
    gh_watch_fmt_duration(st->eta_s, eta, sizeof eta);
    bad |= json_object_set_new(j, "window_seconds", json_real((double)st->window_ms / 1000.0));
    bad |= json_object_set_new(j, "interval_seconds", json_real((double)st->interval_ms / 1000.0));
    bad |= json_object_set_new(j, "samples", json_integer((json_int_t)st->samples));
    bad |= json_object_set_new(j, "capacity", json_integer((json_int_t)st->capacity));
    bad |= json_object_set_new(j, "limit_bytes", json_integer((json_int_t)st->limit_bytes));
    bad |= json_object_set_new(j, "warn_ratio", json_real(st->warn_ratio));
    bad |= json_object_set_new(j, "critical_ratio", json_real(st->critical_ratio));
    bad |= json_object_set_new(j, "horizon_seconds", json_real((double)st->horizon_ms / 1000.0));
    bad |= json_object_set_new(j, "rss_bytes", json_integer((json_int_t)st->rss_bytes));
    bad |= json_object_set_new(j, "allocator_bytes", json_integer((json_int_t)st->allocator_bytes));
    bad |= json_object_set_new(j, "accounted_bytes", json_integer((json_int_t)st->accounted_bytes));
    bad |= json_object_set_new(j, "unexplained_bytes",
                               json_integer((json_int_t)st->unexplained_bytes));
    bad |= json_object_set_new(j, "unexplained_slope_bytes_per_second",
                               real_or_null(st->unexplained_slope));
    bad |= json_object_set_new(j, "rss_slope_bytes_per_second", real_or_null(st->rss_slope));
    bad |= json_object_set_new(j, "rss_growth_steady", json_boolean(st->rss_steady));
    bad |=
        json_object_set_new(j, "forecast_slope_bytes_per_second", real_or_null(st->forecast_slope));
    bad |= json_object_set_new(j, "forecast_level_bytes", real_or_null(st->forecast_level));
    bad |= json_object_set_new(j, "forecast_span_seconds",
                               json_real((double)st->forecast_span_ms / 1000.0));
    bad |= json_object_set_new(j, "eta_seconds", real_or_null(st->eta_s));
    bad |= json_object_set_new(j, "eta", json_string(eta));
    bad |= json_object_set_new(j, "growing_component",
                               st->growing[0] ? json_string(st->growing) : json_null());
    bad |=
        json_object_set_new(j, "growing_slope_bytes_per_second", real_or_null(st->growing_slope));
    bad |= json_object_set_new(j, "sessions_active", json_integer((json_int_t)st->sessions_active));
    bad |= json_object_set_new(j, "request_rate", real_or_null(st->request_rate));
    bad |= json_object_set_new(j, "failed_login_rate", real_or_null(st->failed_login_rate));
    bad |= json_object_set_new(j, "rate_limited_rate", real_or_null(st->rate_limited_rate));
    bad |= json_object_set_new(j, "server_error_rate", real_or_null(st->server_error_rate));
    bad |= json_object_set_new(j, "components", comps);
    comps = NULL;
    bad |= json_object_set_new(j, "alerts", alerts);
    alerts = NULL;
    bad |= json_object_set_new(j, "summary", json_string(st->summary));
    gh_heap_stats_t hs;
    gh_heap_stats(&hs);
    json_t *hp = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:I, s:f}", "state",
                           gh_heap_state(), "sample_interval_bytes", (json_int_t)hs.interval,
                           "samples_live", (json_int_t)hs.samples_live, "samples_dropped",
                           (json_int_t)hs.samples_dropped, "stacks", (json_int_t)hs.stacks,
                           "stacks_overflow", (json_int_t)hs.stacks_overflow,
                           "estimated_live_bytes", hs.live_bytes, "own_bytes",
                           (json_int_t)hs.table_bytes, "growth_span_seconds", st->stacks_span_s);
    json_t *gs = json_array();
    for (size_t i = 0; hp && gs && i < st->nstacks; i++) {
        char where[GH_WATCH_STACK_LEN];
        gh_heap_stack_headline(st->stacks[i].stack, 3, where, sizeof where);
        bad |= json_array_append_new(
            gs, json_pack("{s:s, s:f, s:f, s:f, s:f}", "stack", where, "share", st->stacks[i].share,
                          "bytes_per_second", st->stacks[i].slope, "growth_bytes",
                          st->stacks[i].growth, "live_bytes", st->stacks[i].live_bytes));
    }
    bad |= json_object_set_new(hp, "growing_stacks", gs);
    bad |= json_object_set_new(j, "heap_profile", hp);
    bad |= json_object_set_new(
        j, "sinks",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "events", (json_int_t)st->events, "statsd_sent",
                  (json_int_t)st->statsd_sent, "statsd_dropped", (json_int_t)st->statsd_dropped,
                  "webhook_delivered", (json_int_t)st->webhook_delivered, "webhook_failed",
                  (json_int_t)st->webhook_failed, "webhook_dropped",
                  (json_int_t)st->webhook_dropped));
    if (bad)
        goto fail;
    return j;
fail:
    json_decref(comps);
    json_decref(alerts);
    json_decref(j);
    return NULL;
}
