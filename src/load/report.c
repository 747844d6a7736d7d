/*
 * report.c — what `gatehouse load` shows: the summary table, the --json document and the --report
 * HTML page.
 *
 * The one design decision: the HTML report is one file with everything inline — CSS in a <style>
 * block, every chart an <svg> drawn here from the series — and no script, font or image from
 * anywhere. It can be attached to a ticket or archived by CI and still open, unchanged, in years.
 */
#include "load/load.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static double throughput(const gh_load_result_t *r)
{
    return r->elapsed_s > 0 ? (double)r->requests / r->elapsed_s : 0;
}

static double pct_ms(const gh_load_result_t *r, double p)
{
    return (double)gh_load_hist_percentile(&r->latency, p) / 1e6;
}

static const char *loop_name(const gh_load_opts_t *o, char *buf, size_t len)
{
    if (o->rate > 0)
        snprintf(buf, len, "open loop at %.0f req/s", o->rate);
    else
        snprintf(buf, len, "closed loop");
    return buf;
}

/* ---- the summary table ---- */

static void print_rate(FILE *out, const char *label, double v, const char *unit)
{
    char b[32];
    gh_load_format_bytes(v, b, sizeof b);
    fprintf(out, "%s%s%s%s", label, isfinite(v) && v > 0 ? "+" : "", b, unit);
}

void gh_load_print_summary(FILE *out, const gh_load_opts_t *o, const gh_load_result_t *r)
{
    const gh_load_memory_t *m = &r->memory;
    char loop[64], b1[32], b2[32];
    fprintf(out, "gatehouse load: %s on %s, %.1f s, %u connections, %s%s\n",
            gh_load_scenario_name(o->scenario), o->url, r->elapsed_s, o->concurrency,
            loop_name(o, loop, sizeof loop), r->interrupted ? " (interrupted)" : "");
    fprintf(out, "  %-15s %llu (%.1f/s)\n", "requests", (unsigned long long)r->requests,
            throughput(r));
    fprintf(out, "  %-15s %llu (%.2f%%)", "errors", (unsigned long long)r->errors,
            r->requests ? 100.0 * (double)r->errors / (double)r->requests : 0.0);
    for (size_t s = 0; s < GH_LOAD_STATUS_MAX; s++)
        if (r->status_error[s])
            fprintf(out, "  %zu x%llu", s, (unsigned long long)r->status_error[s]);
    for (size_t c = 0; c < sizeof r->transport / sizeof r->transport[0]; c++)
        if (r->transport[c])
            fprintf(out, "  \"%s\" x%llu", curl_easy_strerror((CURLcode)c),
                    (unsigned long long)r->transport[c]);
    fprintf(out, "\n");
    if (r->abandoned)
        fprintf(out, "  %-15s %llu still in flight %d s after the end\n", "abandoned",
                (unsigned long long)r->abandoned, GH_LOAD_DRAIN_MS / 1000);
    fprintf(out, "  %-15s %llu (%.1f/s)\n", "session cycles", (unsigned long long)r->cycles,
            r->elapsed_s > 0 ? (double)r->cycles / r->elapsed_s : 0.0);
    if (r->wave_sessions)
        fprintf(out, "  %-15s every %.1f s: %u x %u sessions logged in, used, logged out\n",
                "waves", r->wave_s, o->concurrency, r->wave_sessions);
    fprintf(out, "  %-15s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f%s\n", "latency ms",
            pct_ms(r, 50), pct_ms(r, 90), pct_ms(r, 99), pct_ms(r, 99.9),
            (double)r->latency.max_ns / 1e6, o->rate > 0 ? "  (from intended send times)" : "");
    fprintf(out, "  %-15s", "answers");
    bool any = false;
    for (size_t s = 0; s < GH_LOAD_STATUS_MAX; s++) {
        if (r->status[s]) {
            fprintf(out, " %zu x%llu", s, (unsigned long long)r->status[s]);
            any = true;
        }
    }
    fprintf(out, "%s\n", any ? "" : " none");
    gh_load_format_bytes(m->start_bytes, b1, sizeof b1);
    gh_load_format_bytes(m->end_bytes, b2, sizeof b2);
    fprintf(out, "  %-15s %zu samples (%zu after the %.0f s warm-up, %llu failed), rss %s -> %s",
            "memory", m->samples, m->fit_samples, m->warmup_s,
            (unsigned long long)r->scrapes_failed, b1, b2);
    if (isfinite(m->sessions_start))
        fprintf(out, ", sessions %.0f -> %.0f", m->sessions_start, m->sessions_end);
    fprintf(out, "\n");
    if (isfinite(m->slope_bytes_per_s)) {
        fprintf(out, "  %-15s", "slope");
        print_rate(out, " rss ", m->slope_bytes_per_s, "/s");
        if (isfinite(m->bytes_per_1k_cycles))
            print_rate(out, " (", m->bytes_per_1k_cycles, " per 1k cycles)");
        print_rate(out, ", unexplained ", m->unexplained_slope, "/s");
        print_rate(out, ", accounted ", m->accounted_slope, "/s");
        fprintf(out, "\n");
    }
    gh_load_format_bytes(m->max_leak, b1, sizeof b1);
    if (!isfinite(m->max_leak))
        fprintf(out, "  %-15s default (1 MiB / fit window + 1 KiB/s), no fit window", "max-leak");
    else
        fprintf(out, "  %-15s %s%s", "max-leak", b1,
                m->max_leak_unit == GH_LOAD_LEAK_PER_1K ? " per 1k cycles" : "/s");
    if (m->max_leak_default && m->fit_window_s > 0)
        fprintf(out, " (default for a %.0f s fit window)", m->fit_window_s);
    const gh_load_heap_t *h = &r->heap;
    fprintf(out, "\n");
    if (!h->fetched) {
        fprintf(out, "  %-15s not read: %s\n", "heap growth", h->why[0] ? h->why : "-");
    } else if (h->n == 0) {
        fprintf(out, "  %-15s no call stack grew by more than 1 MiB (/debug/heap)\n",
                "heap growth");
    } else {
        for (size_t i = 0; i < h->n; i++) {
            gh_load_format_bytes(h->top[i].growth, b1, sizeof b1);
            fprintf(out, "  %-15s +%s (%.0f%%) at %s\n", i ? "" : "heap growth", b1,
                    100 * h->top[i].share, h->top[i].stack);
        }
    }
    fprintf(out, "\n  %-15s %s: %s\n", "verdict", gh_load_verdict_name(m->verdict), m->reason);
}

/* ---- JSON ---- */

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *build_json(const gh_load_opts_t *o, const gh_load_result_t *r)
{
    const gh_load_memory_t *m = &r->memory;
    json_t *root = json_object();
    json_t *lat = json_object(), *mem = json_object(), *by_status = json_object(),
           *answers = json_object(), *by_transport = json_object(), *leak = json_object();
    json_t *result = NULL;
    if (!root || !lat || !mem || !by_status || !answers || !by_transport || !leak)
        goto out;
    int bad = 0;
    bad |= json_object_set_new(lat, "p50", num(pct_ms(r, 50)));
    bad |= json_object_set_new(lat, "p90", num(pct_ms(r, 90)));
    bad |= json_object_set_new(lat, "p99", num(pct_ms(r, 99)));
    bad |= json_object_set_new(lat, "p999", num(pct_ms(r, 99.9)));
    bad |= json_object_set_new(lat, "max", num((double)r->latency.max_ns / 1e6));

    bad |= json_object_set_new(mem, "samples", json_integer((json_int_t)m->samples));
    bad |= json_object_set_new(mem, "start_bytes", num(m->start_bytes));
    bad |= json_object_set_new(mem, "end_bytes", num(m->end_bytes));
    bad |= json_object_set_new(mem, "slope_bytes_per_s", num(m->slope_bytes_per_s));
    bad |= json_object_set_new(mem, "bytes_per_1k_cycles", num(m->bytes_per_1k_cycles));
    json_t *ci = json_array();
    bad |= ci ? 0 : -1;
    bad |= json_array_append_new(ci, num(m->slope_low));
    bad |= json_array_append_new(ci, num(m->slope_high));
    bad |= json_object_set_new(mem, "slope_ci95_bytes_per_s", ci);
    bad |= json_object_set_new(mem, "fit_samples", json_integer((json_int_t)m->fit_samples));
    bad |= json_object_set_new(mem, "warmup_s", num(m->warmup_s));
    bad |= json_object_set_new(mem, "fit_window_s", num(m->fit_window_s));
    bad |= json_object_set_new(mem, "rss_band_bytes", num(m->rss_band_bytes));
    bad |= json_object_set_new(mem, "unexplained_slope_bytes_per_s", num(m->unexplained_slope));
    bad |= json_object_set_new(mem, "accounted_slope_bytes_per_s", num(m->accounted_slope));
    bad |= json_object_set_new(mem, "sessions_start", num(m->sessions_start));
    bad |= json_object_set_new(mem, "sessions_end", num(m->sessions_end));
    bad |= json_object_set_new(mem, "cycles_per_s", num(m->cycles_per_s));
    bad |= json_object_set_new(mem, "growing", m->growing ? json_string(m->growing) : json_null());
    bad |= json_object_set_new(mem, "restarted", json_boolean(m->restarted));
    bad |= json_object_set_new(mem, "scrapes_failed", json_integer((json_int_t)r->scrapes_failed));
    bad |= json_object_set_new(leak, "value", num(m->max_leak));
    bad |= json_object_set_new(leak, "unit",
                               json_string(m->max_leak_unit == GH_LOAD_LEAK_PER_1K
                                               ? "bytes_per_1k_cycles"
                                               : "bytes_per_s"));
    bad |= json_object_set_new(leak, "default", json_boolean(m->max_leak_default));
    bad |= json_object_set_new(mem, "max_leak", leak);
    leak = NULL;

    for (size_t s = 0; s < GH_LOAD_STATUS_MAX; s++) {
        char key[8];
        snprintf(key, sizeof key, "%zu", s);
        if (r->status[s])
            bad |= json_object_set_new(answers, key, json_integer((json_int_t)r->status[s]));
        if (r->status_error[s])
            bad |=
                json_object_set_new(by_status, key, json_integer((json_int_t)r->status_error[s]));
    }
    for (size_t c = 0; c < sizeof r->transport / sizeof r->transport[0]; c++)
        if (r->transport[c])
            bad |= json_object_set_new(by_transport, curl_easy_strerror((CURLcode)c),
                                       json_integer((json_int_t)r->transport[c]));

    bad |= json_object_set_new(root, "requests", json_integer((json_int_t)r->requests));
    bad |= json_object_set_new(root, "errors", json_integer((json_int_t)r->errors));
    bad |= json_object_set_new(root, "throughput_rps", num(throughput(r)));
    bad |= json_object_set_new(root, "latency_ms", lat);
    lat = NULL;
    bad |= json_object_set_new(root, "memory", mem);
    mem = NULL;
    bad |= json_object_set_new(root, "verdict", json_string(gh_load_verdict_name(m->verdict)));
    bad |= json_object_set_new(root, "reason", json_string(m->reason));
    json_t *hs = json_array();
    for (size_t i = 0; hs && i < r->heap.n; i++)
        bad |= json_array_append_new(
            hs, json_pack("{s:s, s:f, s:f, s:f, s:f}", "stack", r->heap.top[i].stack, "start_bytes",
                          r->heap.top[i].start_bytes, "end_bytes", r->heap.top[i].end_bytes,
                          "growth_bytes", r->heap.top[i].growth, "share", r->heap.top[i].share));
    bad |= json_object_set_new(
        root, "heap_growth",
        json_pack("{s:b, s:s, s:o*}", "read", r->heap.fetched, "why", r->heap.why, "stacks", hs));
    bad |= json_object_set_new(root, "scenario", json_string(gh_load_scenario_name(o->scenario)));
    bad |= json_object_set_new(root, "url", json_string(o->url));
    bad |= json_object_set_new(root, "duration_s", num((double)o->duration_ms / 1000));
    bad |= json_object_set_new(root, "elapsed_s", num(r->elapsed_s));
    bad |= json_object_set_new(root, "concurrency", json_integer(o->concurrency));
    bad |= json_object_set_new(root, "rate", o->rate > 0 ? json_real(o->rate) : json_null());
    bad |= json_object_set_new(root, "cycles", json_integer((json_int_t)r->cycles));
    bad |= json_object_set_new(root, "wave",
                               r->wave_sessions
                                   ? json_pack("{s:f,s:I}", "period_s", r->wave_s,
                                               "sessions_per_vu", (json_int_t)r->wave_sessions)
                                   : json_null());
    bad |= json_object_set_new(root, "abandoned", json_integer((json_int_t)r->abandoned));
    bad |= json_object_set_new(root, "interrupted", json_boolean(r->interrupted));
    bad |= json_object_set_new(root, "answers_by_status", answers);
    answers = NULL;
    bad |= json_object_set_new(root, "errors_by_status", by_status);
    by_status = NULL;
    bad |= json_object_set_new(root, "errors_by_transport", by_transport);
    by_transport = NULL;
    if (!bad) {
        result = root;
        root = NULL;
    }
out:
    json_decref(root);
    json_decref(lat);
    json_decref(mem);
    json_decref(by_status);
    json_decref(answers);
    json_decref(by_transport);
    json_decref(leak);
    return result;
}

int gh_load_write_json(const char *path, const gh_load_opts_t *o, const gh_load_result_t *r)
{
    json_t *j = build_json(o, r);
    if (!j) {
        errno = ENOMEM;
        return GH_ENOMEM;
    }
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) == 0 ? 0 : GH_EIO;
    json_decref(j);
    return rc;
}

/* ---- HTML and SVG ---- */

#define CW 760.0 /* chart width and height in SVG units */
#define CH 260.0
#define ML 78.0 /* margins */
#define MR 16.0
#define MT 14.0
#define MB 40.0
#define CHART_POINTS 1500 /* at most this many points per drawn series */

typedef enum { AXIS_SECONDS, AXIS_PERCENTILE } x_kind_t;
typedef enum { Y_BYTES, Y_COUNT, Y_MS } y_kind_t;

typedef struct {
    const char *name;
    const char *color;
    const double *x, *y;
    size_t n;
    bool dashed;
} series_t;

static void html_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* A round step near range / 5: 1, 2 or 5 times a power of ten (of 1024 for bytes). */
static double nice_step(double range, y_kind_t kind)
{
    if (!(range > 0))
        return 1;
    double raw = range / 5;
    double base = 10;
    if (kind == Y_BYTES && raw >= 1024) {
        double p = 1;
        while (p * 1024 <= raw)
            p *= 1024;
        double f = raw / p;
        double m = f <= 1     ? 1
                   : f <= 2   ? 2
                   : f <= 4   ? 4
                   : f <= 8   ? 8
                   : f <= 16  ? 16
                   : f <= 32  ? 32
                   : f <= 64  ? 64
                   : f <= 128 ? 128
                   : f <= 256 ? 256
                              : 512;
        return m * p;
    }
    double p = pow(base, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

static void y_label(double v, y_kind_t kind, char *buf, size_t len)
{
    if (kind == Y_BYTES)
        gh_load_format_bytes(v, buf, len);
    else if (kind == Y_MS)
        snprintf(buf, len, "%g ms", v);
    else
        snprintf(buf, len, "%g", v);
}

/*
 * One chart: a frame, grid, axes with labels, the series as polylines and a legend. shade_to > 0
 * greys out [0, shade_to] on the x axis (the warm-up). from_zero keeps 0 on the y axis.
 */
static void svg_chart(FILE *f, const char *id, const char *title, x_kind_t xk, y_kind_t yk,
                      const series_t *s, size_t ns, double shade_to, bool from_zero)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t k = 0; k < ns; k++)
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i]))
                continue;
            xmin = fmin(xmin, s[k].x[i]);
            xmax = fmax(xmax, s[k].x[i]);
            ymin = fmin(ymin, s[k].y[i]);
            ymax = fmax(ymax, s[k].y[i]);
        }
    bool empty = !isfinite(xmin);
    if (empty) {
        xmin = 0;
        xmax = 1;
        ymin = 0;
        ymax = 1;
    }
    if (xk == AXIS_SECONDS)
        xmin = 0;
    if (xk == AXIS_PERCENTILE) {
        xmin = 0;
        xmax = fmax(ceil(xmax - 1e-9), 1);
    }
    if (from_zero || (ymin > 0 && ymin < (ymax - ymin) * 0.5))
        ymin = fmin(0, ymin);
    /* A zoomed memory chart spans at least the noise band, so the wander of a healthy node looks
     * as flat as it is and a leak looks like the ramp it is. */
    if (yk == Y_BYTES && ymin > 0 && ymax - ymin < GH_LOAD_NOISE_BAND) {
        double mid = (ymax + ymin) / 2;
        ymin = fmax(0, mid - GH_LOAD_NOISE_BAND / 2);
        ymax = ymin + GH_LOAD_NOISE_BAND;
    }
    if (ymax <= ymin)
        ymax = ymin + (ymin == 0 ? 1 : fabs(ymin) * 0.1);
    double ystep = nice_step(ymax - ymin, yk);
    ymin = floor(ymin / ystep) * ystep;
    ymax = ceil(ymax / ystep) * ystep;
    if (xmax <= xmin)
        xmax = xmin + 1;
    double pw = CW - ML - MR, ph = CH - MT - MB;
#define PX(v) (ML + ((v)-xmin) / (xmax - xmin) * pw)
#define PY(v) (MT + ph - ((v)-ymin) / (ymax - ymin) * ph)

    fprintf(f, "<figure>\n<figcaption>");
    html_escape(f, title);
    fprintf(f,
            "</figcaption>\n<svg id=\"%s\" class=\"chart\" viewBox=\"0 0 %.0f %.0f\" "
            "xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"",
            id, CW, CH);
    html_escape(f, title);
    fprintf(f, "\">\n<title>");
    html_escape(f, title);
    fprintf(f, "</title>\n");
    if (shade_to > xmin)
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#eee\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" class=\"note\">warm-up</text>\n",
                ML, MT, PX(fmin(shade_to, xmax)) - ML, ph, ML + 4, MT + ph - 6);
    /* y grid and labels */
    for (double v = ymin; v <= ymax + ystep / 2; v += ystep) {
        char lab[32];
        y_label(fabs(v) < ystep * 1e-9 ? 0 : v, yk, lab, sizeof lab);
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" class=\"ylab\">%s</text>\n",
                ML, ML + pw, PY(v), PY(v), ML - 6, PY(v) + 4, lab);
    }
    /* x grid and labels */
    if (xk == AXIS_PERCENTILE) {
        static const char *const pl[] = {"0%",     "90%",     "99%",     "99.9%",
                                         "99.99%", "99.999%", "99.9999%"};
        for (int k = 0; k <= (int)xmax && k < 7; k++)
            fprintf(f,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" class=\"xlab\"%s>%s</text>\n",
                    PX(k), PX(k), MT, MT + ph, PX(k), MT + ph + 16,
                    k == (int)xmax ? " style=\"text-anchor:end\"" : "", pl[k]);
    } else {
        double xstep = nice_step(xmax - xmin, Y_COUNT);
        for (double v = xmin; v <= xmax + xstep / 2; v += xstep)
            fprintf(f,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" class=\"xlab\">%g s</text>\n",
                    PX(v), PX(v), MT, MT + ph, PX(v), MT + ph + 16, v);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"frame\"/>\n", ML,
            MT, pw, ph);
    for (size_t k = 0; k < ns; k++) {
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\"%s points=\"", s[k].color,
                s[k].dashed ? " stroke-dasharray=\"6 4\"" : "");
        /* A day-long soak has 86,400 samples; the chart is 760 units wide. Every stride-th point
         * (and the last) keeps the file small and the shape intact. */
        size_t stride = s[k].n > CHART_POINTS ? (s[k].n + CHART_POINTS - 1) / CHART_POINTS : 1;
        for (size_t i = 0; i < s[k].n; i++)
            if ((i % stride == 0 || i + 1 == s[k].n) && isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                fprintf(f, "%.1f,%.1f ", PX(s[k].x[i]), PY(s[k].y[i]));
        fprintf(f, "\"/>\n");
    }
    /* legend */
    double lx = ML + 8;
    for (size_t k = 0; k < ns; k++) {
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"3\"%s/><text x=\"%.1f\" y=\"%.1f\" class=\"legend\">",
                lx, lx + 18, CH - 8, CH - 8, s[k].color,
                s[k].dashed ? " stroke-dasharray=\"6 4\"" : "", lx + 22, CH - 4);
        html_escape(f, s[k].name);
        fprintf(f, "</text>\n");
        lx += 32 + 7.0 * (double)strlen(s[k].name);
    }
    if (empty)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"note\">no data</text>\n", ML + pw / 2,
                MT + ph / 2);
    fprintf(f, "</svg>\n</figure>\n");
#undef PX
#undef PY
}

static void row(FILE *f, const char *k, const char *v)
{
    fprintf(f, "<tr><th>");
    html_escape(f, k);
    fprintf(f, "</th><td>");
    html_escape(f, v);
    fprintf(f, "</td></tr>\n");
}

static int write_charts(FILE *f, const gh_load_result_t *r)
{
    const gh_load_memory_t *m = &r->memory;
    size_t ns = r->nsamples, nt = r->ticks ? r->nticks : 0;
    /* Scratch columns for the charts: t, rss, accounted, unexplained, sessions, fit, per tick
     * t, rate, errors, p50, p99, and the percentile curve. */
    enum { NPCT = 160 };
    size_t cols = (6 + GH_MEM__COUNT) * (ns + 1) + 5 * (nt + 1) + 2 * NPCT;
    double *buf = gh_mem_calloc(GH_MEM_OTHER, cols, sizeof *buf);
    if (!buf)
        return GH_ENOMEM;
    double *t = buf, *rss = t + ns + 1, *acc = rss + ns + 1, *unx = acc + ns + 1,
           *ses = unx + ns + 1, *fit = ses + ns + 1;
    double *tt = fit + ns + 1, *rate = tt + nt + 1, *errs = rate + nt + 1, *p50 = errs + nt + 1,
           *p99 = p50 + nt + 1;
    double *px = p99 + nt + 1, *py = px + NPCT;
    double *comp = py + NPCT; /* GH_MEM__COUNT columns of ns + 1 */
    series_t components[GH_MEM__COUNT];
    size_t ncomp = 0;
    static const char *const palette[] = {"#1e8449", "#2471a3", "#b9770e", "#c0392b",
                                          "#7d3c98", "#17a589", "#566573", "#d35400"};
    for (size_t c = 0; c < GH_MEM__COUNT; c++) {
        double *col = comp + c * (ns + 1);
        bool any = false;
        for (size_t i = 0; i < ns; i++) {
            col[i] = r->samples[i].component[c];
            any |= isfinite(col[i]) && col[i] != 0;
        }
        if (any)
            components[ncomp++] = (series_t){
                gh_mem_component_name((gh_mem_component_t)c), palette[c % 8], t, col, ns, false};
    }
    for (size_t i = 0; i < ns; i++) {
        const gh_load_sample_t *s = &r->samples[i];
        t[i] = s->t_s;
        rss[i] = s->rss;
        acc[i] = s->accounted;
        unx[i] = s->unexplained;
        ses[i] = s->sessions;
        fit[i] = s->t_s >= m->warmup_s && isfinite(m->slope_bytes_per_s)
                     ? m->intercept + m->slope_bytes_per_s * s->t_s
                     : NAN;
    }
    double prev = 0;
    for (size_t i = 0; i < nt; i++) {
        const gh_load_tick_t *k = &r->ticks[i];
        double dt = k->t_s - prev;
        tt[i] = k->t_s;
        rate[i] = dt > 0 ? (double)k->requests / dt : NAN;
        errs[i] = dt > 0 ? (double)k->errors / dt : NAN;
        p50[i] = k->requests ? k->p50_ms : NAN;
        p99[i] = k->requests ? k->p99_ms : NAN;
        prev = k->t_s;
    }
    size_t np = 0;
    if (r->latency.total > 0) {
        /* x = -log10(1 - p): 0 at p0, 1 at p90, 2 at p99 ... up to the resolution the count
         * allows (one in `total`). */
        double top = fmin(6, log10((double)r->latency.total));
        for (size_t i = 0; i < NPCT; i++) {
            double x = top * (double)i / (NPCT - 1);
            double p = 100.0 * (1.0 - pow(10, -x));
            px[np] = x;
            py[np] = (double)gh_load_hist_percentile(&r->latency, p > 0 ? p : 1e-9) / 1e6;
            np++;
        }
    }

    series_t memory[] = {
        {"RSS", "#c0392b", t, rss, ns, false},
        {"unexplained (RSS - accounted)", "#7d3c98", t, unx, ns, false},
        {"RSS slope after warm-up", "#000", t, fit, ns, true},
    };
    series_t accounted[GH_MEM__COUNT + 1];
    accounted[0] = (series_t){"accounted, all", "#000", t, acc, ns, true};
    memcpy(accounted + 1, components, ncomp * sizeof *components);
    series_t sessions[] = {{"live sessions", "#1e8449", t, ses, ns, false}};
    series_t thr[] = {{"requests/s", "#2471a3", tt, rate, nt, false},
                      {"errors/s", "#c0392b", tt, errs, nt, false}};
    series_t lat_t[] = {{"p50", "#2471a3", tt, p50, nt, false},
                        {"p99", "#c0392b", tt, p99, nt, false}};
    series_t lat_p[] = {{"latency at percentile", "#c0392b", px, py, np, false}};

    svg_chart(f, "chart-memory", "Resident memory of the target over time", AXIS_SECONDS, Y_BYTES,
              memory, 3, m->warmup_s, false);
    svg_chart(f, "chart-components", "Accounted memory by component over time", AXIS_SECONDS,
              Y_BYTES, accounted, ncomp + 1, m->warmup_s, true);
    svg_chart(f, "chart-sessions", "Live sessions over time", AXIS_SECONDS, Y_COUNT, sessions, 1,
              m->warmup_s, true);
    svg_chart(f, "chart-throughput", "Throughput over time (per second)", AXIS_SECONDS, Y_COUNT,
              thr, 2, 0, true);
    svg_chart(f, "chart-latency", "Latency by percentile (whole run)", AXIS_PERCENTILE, Y_MS, lat_p,
              1, 0, true);
    svg_chart(f, "chart-latency-time", "Latency over time (p50 and p99 of each second)",
              AXIS_SECONDS, Y_MS, lat_t, 2, 0, true);
    gh_mem_free(GH_MEM_OTHER, buf);
    return 0;
}

int gh_load_write_report(const char *path, const gh_load_opts_t *o, const gh_load_result_t *r)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return GH_EIO;
    const gh_load_memory_t *m = &r->memory;
    char v[256], loop[64], b1[32], b2[32];
    fprintf(f,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<title>gatehouse load: %s, verdict %s</title>\n<style>\n"
            "body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:800px;color:#222}\n"
            "h1{font-size:1.4em}table{border-collapse:collapse;margin:1em 0}\n"
            "th,td{text-align:left;padding:2px 12px 2px 0;vertical-align:top}th{color:#555;"
            "font-weight:normal}\n"
            ".verdict{font-size:1.2em;padding:.5em 1em;border-radius:4px;display:inline-block}\n"
            ".pass{background:#d5f5e3}.leak{background:#f5b7b1}.inconclusive{background:#fcf3cf}\n"
            "figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.3em}\n"
            "svg.chart{width:100%%;height:auto;font-size:11px}\n"
            ".grid{stroke:#ddd;stroke-width:1}.frame{fill:none;stroke:#999}\n"
            ".series{stroke-width:1.6}.ylab{text-anchor:end;fill:#555}"
            ".xlab{text-anchor:middle;fill:#555}\n"
            ".legend{fill:#333}.note{fill:#777}\n"
            "</style>\n</head>\n<body>\n",
            gh_load_scenario_name(o->scenario), gh_load_verdict_name(m->verdict));
    fprintf(f, "<h1>gatehouse load — %s</h1>\n<p class=\"verdict %s\">verdict: <b>%s</b> — ",
            gh_load_scenario_name(o->scenario), gh_load_verdict_name(m->verdict),
            gh_load_verdict_name(m->verdict));
    html_escape(f, m->reason);
    fprintf(f, "</p>\n");
    fprintf(f, "<h2>Heap growth by call stack</h2>\n<p id=\"heap-growth\">");
    if (!r->heap.fetched) {
        fprintf(f, "Not read: ");
        html_escape(f, r->heap.why[0] ? r->heap.why : "-");
        fprintf(f, "</p>\n");
    } else if (r->heap.n == 0) {
        fprintf(f, "No call stack grew by more than 1 MiB between the start and the end "
                   "(<code>/debug/heap</code>).</p>\n");
    } else {
        fprintf(f, "From <code>/debug/heap</code> at the start and the end:</p>\n<ol>\n");
        for (size_t i = 0; i < r->heap.n; i++) {
            char b[32];
            gh_load_format_bytes(r->heap.top[i].growth, b, sizeof b);
            fprintf(f, "<li>+%s (%.0f%%) <code class=\"stack\">", b, 100 * r->heap.top[i].share);
            html_escape(f, r->heap.top[i].stack);
            fprintf(f, "</code></li>\n");
        }
        fprintf(f, "</ol>\n");
    }
    fprintf(f, "<table>\n");
    row(f, "target", o->url);
    snprintf(v, sizeof v, "%s, %.1f s (asked %.0f s)%s, %u connections, %s",
             gh_load_scenario_name(o->scenario), r->elapsed_s, (double)o->duration_ms / 1000,
             r->interrupted ? ", interrupted" : "", o->concurrency,
             loop_name(o, loop, sizeof loop));
    row(f, "run", v);
    snprintf(v, sizeof v, "%llu, %.1f per second", (unsigned long long)r->requests, throughput(r));
    row(f, "requests", v);
    snprintf(v, sizeof v, "%llu (%.2f%%)", (unsigned long long)r->errors,
             r->requests ? 100.0 * (double)r->errors / (double)r->requests : 0.0);
    row(f, "errors", v);
    v[0] = '\0';
    for (size_t s = 0; s < GH_LOAD_STATUS_MAX; s++)
        if (r->status[s] && strlen(v) + 40 < sizeof v)
            snprintf(v + strlen(v), sizeof v - strlen(v), "%s%zu: %llu%s", v[0] ? ", " : "", s,
                     (unsigned long long)r->status[s], r->status_error[s] ? " (unexpected)" : "");
    row(f, "answers by status", v[0] ? v : "none");
    v[0] = '\0';
    for (size_t c = 0; c < sizeof r->transport / sizeof r->transport[0]; c++)
        if (r->transport[c] && strlen(v) + 80 < sizeof v)
            snprintf(v + strlen(v), sizeof v - strlen(v), "%s%s: %llu", v[0] ? ", " : "",
                     curl_easy_strerror((CURLcode)c), (unsigned long long)r->transport[c]);
    row(f, "transport failures", v[0] ? v : "none");
    snprintf(v, sizeof v, "%llu, %.1f per second", (unsigned long long)r->cycles,
             r->elapsed_s > 0 ? (double)r->cycles / r->elapsed_s : 0.0);
    row(f, "session cycles", v);
    if (r->wave_sessions) {
        snprintf(v, sizeof v,
                 "every %.1f s, each of the %u connections logs in %u sessions, uses and logs out "
                 "each: live sessions climb to %u and fall back to 0",
                 r->wave_s, o->concurrency, r->wave_sessions, o->concurrency * r->wave_sessions);
        row(f, "waves", v);
    }
    snprintf(v, sizeof v, "p50 %.3f, p90 %.3f, p99 %.3f, p99.9 %.3f, max %.3f%s", pct_ms(r, 50),
             pct_ms(r, 90), pct_ms(r, 99), pct_ms(r, 99.9), (double)r->latency.max_ns / 1e6,
             o->rate > 0 ? " (from intended send times)" : "");
    row(f, "latency (ms)", v);
    gh_load_format_bytes(m->start_bytes, b1, sizeof b1);
    gh_load_format_bytes(m->end_bytes, b2, sizeof b2);
    snprintf(v, sizeof v, "%s → %s; %zu samples, %zu after the %.0f s warm-up, %llu failed", b1, b2,
             m->samples, m->fit_samples, m->warmup_s, (unsigned long long)r->scrapes_failed);
    row(f, "RSS", v);
    gh_load_format_bytes(m->slope_bytes_per_s, b1, sizeof b1);
    gh_load_format_bytes(m->bytes_per_1k_cycles, b2, sizeof b2);
    snprintf(v, sizeof v, "%s/s; per 1,000 session cycles %s", b1, b2);
    row(f, "RSS slope after warm-up", v);
    gh_load_format_bytes(m->unexplained_slope, b1, sizeof b1);
    gh_load_format_bytes(m->accounted_slope, b2, sizeof b2);
    snprintf(v, sizeof v, "unexplained %s/s, accounted %s/s%s%s", b1, b2,
             m->growing ? "; steepest: " : "", m->growing ? m->growing : "");
    row(f, "slopes", v);
    gh_load_format_bytes(m->max_leak, b1, sizeof b1);
    snprintf(v, sizeof v, "%s%s%s", b1,
             m->max_leak_unit == GH_LOAD_LEAK_PER_1K ? " per 1k cycles" : "/s",
             m->max_leak_default ? " (default: 1 MiB / fit window + 1 KiB/s)" : "");
    row(f, "max-leak", v);
    fprintf(f, "</table>\n");
    int rc = write_charts(f, r);
    fprintf(f, "<p>How to read this: docs/OPERATIONS.md, “Running a soak before a deploy”.</p>\n"
               "</body>\n</html>\n");
    if (fclose(f) != 0 && rc == 0)
        rc = GH_EIO;
    return rc;
}
