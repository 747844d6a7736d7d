/*
 * heap_growth.c — growth by call stack over the watchdog's window (heap_growth.h).
 *
 * The one design decision: snapshots are taken at a fixed period (window / 31) whatever the
 * watchdog's sample interval, so every stack's series has at most 32 points and the ranking
 * (Theil-Sen over every pair: 496 slopes per stack, at most 644 over its three stretches) costs
 * some 45 ms per snapshot when all of the table's 4096 stacks move (33 ms with the whole ring
 * alone), every 19 s at the default 10 min window, on the watchdog's thread; between snapshots
 * it costs nothing.
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
    double t[GH_HEAP_GROWTH_SNAPS], y[GH_HEAP_GROWTH_SNAPS], total[GH_HEAP_GROWTH_SNAPS];
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

/* As the leak suspicion asks of a recent stretch (watchdog.h): its line ends clearly above
 * every level the series had before it, so the rising edge of a slow sawtooth, which never
 * leaves the band it always lived in, is not growth. The stretch begins at g->y[from]. */
static bool above_before(const gh_heap_growth_t *g, size_t from, double slope, double level,
                         double span_s)
{
    if (from == 0)
        return true;
    double before = g->y[0];
    for (size_t i = 1; i < from; i++)
        before = g->y[i] > before ? g->y[i] : before;
    return level - before >= 0.25 * slope * span_s;
}

/* The stretches a stack may grow over, the watchdog's scales: the whole ring, then (once the
 * ring covers the window) its latest half and its latest quarter. A leak that began in a warm
 * node fills only the latest half of the watchdog's ring when the suspicion fires, and less of
 * the snapshots here (they trail the samples by up to a period): it must be named then. */
#define STRETCHES 3

static void rank(gh_heap_growth_t *g)
{
    size_t m = g->count;
    int64_t t0 = g->t_ms[slot(g, 0)], tn = g->t_ms[slot(g, m - 1)];
    double span = (double)(tn - t0) / 1000.0;
    gh_heap_growing_t top[GH_HEAP_GROWTH_RANKED] = {{0}};
    size_t ntop = 0;
    if (m >= 8 && (tn - t0) * 2 >= g->window_ms - g->period_ms) {
        uint32_t n = g->nstacks[slot(g, m - 1)];
        for (size_t i = 0; i < m; i++) {
            size_t s = slot(g, i);
            g->t[i] = (double)(g->t_ms[s] - tn) / 1000.0;
            g->total[i] = 0;
            for (uint32_t id = 0; id < g->nstacks[s]; id++)
                g->total[i] += g->snaps[s * GH_HEAP_MAX_STACKS + id];
        }
        /* each stretch: its first snapshot, its span and the whole sampled heap's slope over it
         * (the share's denominator: churning stacks' noise cancels in the sum, where adding up
         * their positive slopes would count it as growth) */
        size_t from[STRETCHES], nstretch = 0;
        double stretch_s[STRETCHES], heap_slope[STRETCHES];
        bool covered = tn - t0 >= g->window_ms - g->period_ms;
        for (size_t k = 0; k < STRETCHES && (m >> k) >= 8 && (k == 0 || covered); k++)
            from[nstretch++] = m - (m >> k);
        for (size_t k = 0; k < nstretch; k++) {
            size_t len = m - from[k];
            gh_trend_pairs_t pairs = {.lag_lo = 1, .lag_hi = len - 1};
            gh_trend_fit_t heap;
            stretch_s[k] = -g->t[from[k]];
            heap_slope[k] = gh_trend_theil_sen(g->t + from[k], g->total + from[k], len, &pairs, 1,
                                               g->scratch, &heap) == 0
                                ? heap.slope
                                : 0;
        }
        for (uint32_t id = 0; id < n; id++) {
            bool moves = false;
            for (size_t i = 0; i < m; i++) {
                size_t s = slot(g, i);
                g->y[i] = id < g->nstacks[s] ? g->snaps[s * GH_HEAP_MAX_STACKS + id] : 0;
                moves |= g->y[i] != g->y[0];
            }
            if (!moves)
                continue;
            /* the first stretch it grows steadily over, at min_growth per ring or faster */
            gh_heap_growing_t x = {.stack = id};
            for (size_t k = 0; k < nstretch && x.slope == 0; k++) {
                size_t len = m - from[k];
                gh_trend_pairs_t pairs = {.lag_lo = 1, .lag_hi = len - 1};
                gh_trend_fit_t fit;
                if (gh_trend_theil_sen(g->t + from[k], g->y + from[k], len, &pairs, 1, g->scratch,
                                       &fit) != 0 ||
                    !(fit.low > 0) || fit.slope * span < g->min_growth)
                    continue;
                double level =
                    gh_trend_level(g->t + from[k], g->y + from[k], len, fit.slope, 0, g->scratch);
                if (!gh_trend_steady(g->t + from[k], g->y + from[k], len, fit.slope, level,
                                     g->scratch) ||
                    !above_before(g, from[k], fit.slope, level, stretch_s[k]))
                    continue;
                x.slope = fit.slope;
                x.growth = fit.slope * stretch_s[k];
                x.share = heap_slope[k] > fit.slope ? fit.slope / heap_slope[k] : 1;
                x.live_bytes = g->y[m - 1];
            }
            if (x.slope == 0)
                continue;
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
