/*
 * heap_growth.c — growth by call stack over the watchdog's window (heap_growth.h).
 *
 * The one design decision: snapshots are taken at a fixed period (window / 31) whatever the
 * watchdog's sample interval, so every stack's series has at most 32 points and the ranking
 * (Theil-Sen over every pair, 496 slopes per stack) costs a few milliseconds per snapshot at the
 * table's 4096 stacks; between snapshots it costs nothing.
 */
#include "watch/heap_growth.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "common/trend.h"
#include "mem/mem.h"

struct gh_heap_growth {
    int64_t period_ms, window_ms;
    double min_growth;
    gh_heap_source_fn source;
    size_t head, count;
    int64_t t_ms[GH_HEAP_GROWTH_SNAPS];
    uint32_t nstacks[GH_HEAP_GROWTH_SNAPS];
    float *snaps; /* GH_HEAP_GROWTH_SNAPS x GH_HEAP_MAX_STACKS */
    double *now;  /* GH_HEAP_MAX_STACKS */
    double t[GH_HEAP_GROWTH_SNAPS], y[GH_HEAP_GROWTH_SNAPS];
    double scratch[GH_HEAP_GROWTH_SNAPS * GH_HEAP_GROWTH_SNAPS];
    pthread_mutex_t lock;
    gh_heap_growing_t ranked[GH_HEAP_GROWTH_RANKED];
    size_t nranked;
    double span_s;
};

int gh_heap_growth_create(int64_t window_ms, int64_t interval_ms, double min_growth,
                          gh_heap_source_fn source, gh_heap_growth_t **out)
{
    *out = NULL;
    if (window_ms <= 0 || interval_ms <= 0)
        return GH_EINVAL;
    gh_heap_growth_t *g = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *g);
    if (!g)
        return GH_ENOMEM;
    g->snaps = gh_mem_calloc(GH_MEM_METRICS, (size_t)GH_HEAP_GROWTH_SNAPS * GH_HEAP_MAX_STACKS,
                             sizeof *g->snaps);
    g->now = gh_mem_calloc(GH_MEM_METRICS, GH_HEAP_MAX_STACKS, sizeof *g->now);
    if (!g->snaps || !g->now) {
        gh_mem_free(GH_MEM_METRICS, g->snaps);
        gh_mem_free(GH_MEM_METRICS, g->now);
        gh_mem_free(GH_MEM_METRICS, g);
        return GH_ENOMEM;
    }
    g->window_ms = window_ms;
    g->period_ms = window_ms / (GH_HEAP_GROWTH_SNAPS - 1);
    if (g->period_ms < interval_ms)
        g->period_ms = interval_ms;
    g->min_growth = min_growth;
    g->source = source ? source : gh_heap_live_by_stack;
    pthread_mutex_init(&g->lock, NULL);
    *out = g;
    return 0;
}

void gh_heap_growth_destroy(gh_heap_growth_t **gp)
{
    if (!gp || !*gp)
        return;
    gh_heap_growth_t *g = *gp;
    pthread_mutex_destroy(&g->lock);
    gh_mem_free(GH_MEM_METRICS, g->snaps);
    gh_mem_free(GH_MEM_METRICS, g->now);
    gh_mem_free(GH_MEM_METRICS, g);
    *gp = NULL;
}

static size_t slot(const gh_heap_growth_t *g, size_t i) /* 0 = oldest */
{
    return (g->head + i) % GH_HEAP_GROWTH_SNAPS;
}

/* As the leak suspicion asks of a steady trend (watchdog.h): the medians of the series' four
 * quarters each rise by at least a quarter of what the slope predicts, so one step (a cache
 * that filled once) and a plateau is not growth. g->y holds the series; uses g->scratch. */
static bool quarters_rise(gh_heap_growth_t *g, size_t m, double growth)
{
    size_t q = m / 4;
    double prev = 0;
    for (int j = 0; j < 4; j++) {
        size_t from = (size_t)j * q, to = j == 3 ? m : from + q;
        memcpy(g->scratch, g->y + from, (to - from) * sizeof *g->y);
        double med = gh_trend_median(g->scratch, to - from);
        if (j > 0 && med - prev < 0.25 * growth / 4)
            return false;
        prev = med;
    }
    return true;
}

static void rank(gh_heap_growth_t *g)
{
    size_t m = g->count;
    int64_t t0 = g->t_ms[slot(g, 0)], tn = g->t_ms[slot(g, m - 1)];
    double span = (double)(tn - t0) / 1000.0;
    gh_heap_growing_t top[GH_HEAP_GROWTH_RANKED] = {{0}};
    size_t ntop = 0;
    double positive = 0;
    if (m >= 8 && (tn - t0) * 2 >= g->window_ms - g->period_ms) {
        uint32_t n = g->nstacks[slot(g, m - 1)];
        for (size_t i = 0; i < m; i++)
            g->t[i] = (double)(g->t_ms[slot(g, i)] - tn) / 1000.0;
        gh_trend_pairs_t pairs = {.lag_lo = 1, .lag_hi = m - 1};
        for (uint32_t id = 0; id < n; id++) {
            bool moves = false;
            for (size_t i = 0; i < m; i++) {
                size_t s = slot(g, i);
                g->y[i] = id < g->nstacks[s] ? g->snaps[s * GH_HEAP_MAX_STACKS + id] : 0;
                moves |= g->y[i] != g->y[0];
            }
            if (!moves)
                continue;
            gh_trend_fit_t fit;
            if (gh_trend_theil_sen(g->t, g->y, m, &pairs, 1, g->scratch, &fit) != 0)
                continue;
            if (fit.slope > 0)
                positive += fit.slope;
            if (!(fit.low > 0) || fit.slope * span < g->min_growth ||
                !quarters_rise(g, m, fit.slope * span))
                continue;
            gh_heap_growing_t x = {.stack = id,
                                   .slope = fit.slope,
                                   .growth = fit.slope * span,
                                   .live_bytes = g->y[m - 1]};
            /* insertion into the top list, fastest first */
            size_t at = ntop;
            while (at > 0 && top[at - 1].slope < x.slope)
                at--;
            if (at >= GH_HEAP_GROWTH_RANKED)
                continue;
            size_t last = ntop < GH_HEAP_GROWTH_RANKED ? ntop : GH_HEAP_GROWTH_RANKED - 1;
            memmove(&top[at + 1], &top[at], (last - at) * sizeof *top);
            top[at] = x;
            if (ntop < GH_HEAP_GROWTH_RANKED)
                ntop++;
        }
        for (size_t i = 0; i < ntop; i++)
            top[i].share = positive > 0 ? top[i].slope / positive : 0;
    } else {
        span = 0;
    }
    pthread_mutex_lock(&g->lock);
    memcpy(g->ranked, top, ntop * sizeof *top);
    g->nranked = ntop;
    g->span_s = span;
    pthread_mutex_unlock(&g->lock);
}

void gh_heap_growth_add(gh_heap_growth_t *g, int64_t t_ms)
{
    if (!g)
        return;
    if (g->count && t_ms - g->t_ms[slot(g, g->count - 1)] < g->period_ms)
        return;
    size_t s;
    if (g->count == GH_HEAP_GROWTH_SNAPS) {
        s = g->head;
        g->head = (g->head + 1) % GH_HEAP_GROWTH_SNAPS;
    } else {
        s = slot(g, g->count);
        g->count++;
    }
    size_t n = g->source(g->now, GH_HEAP_MAX_STACKS);
    for (size_t i = 0; i < n; i++)
        g->snaps[s * GH_HEAP_MAX_STACKS + i] = (float)g->now[i];
    g->nstacks[s] = (uint32_t)n;
    g->t_ms[s] = t_ms;
    rank(g);
}

size_t gh_heap_growth_ranked(gh_heap_growth_t *g, gh_heap_growing_t *out, size_t cap,
                             double *span_s)
{
    if (!g) {
        if (span_s)
            *span_s = 0;
        return 0;
    }
    pthread_mutex_lock(&g->lock);
    size_t n = g->nranked < cap ? g->nranked : cap;
    memcpy(out, g->ranked, n * sizeof *out);
    if (span_s)
        *span_s = g->span_s;
    pthread_mutex_unlock(&g->lock);
    return n;
}
