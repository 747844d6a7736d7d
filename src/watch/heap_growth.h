/*
 * heap_growth.h — which call stacks grow: the watchdog's view of the sampling heap profiler
 * (mem/heap.h). Every window / (GH_HEAP_GROWTH_SNAPS - 1) it records the estimated live bytes of
 * every interned stack, and ranks stacks by their growth over the ring with the same robust
 * trend as the leak suspicion (common/trend.h: Theil-Sen over every pair of snapshots, with
 * Sen's 95% interval). A stack grows over a stretch — the whole ring or, once the ring covers
 * the window, its latest half or latest quarter (the watchdog's scales) — when the interval's low
 * end is above zero, the line rises at min_growth per ring or faster, the growth is steady by the
 * suspicion's own test (gh_trend_steady: one step, a plateau or a late climb is not) and a latest
 * part ends above every level before it (a sawtooth's rising edge is not growth); its share is its
 * slope over the slope of the whole sampled heap (the sum of every stack) on that stretch, at
 * most 1.
 *
 * The one design decision: the history is a fixed ring of GH_HEAP_GROWTH_SNAPS snapshots of
 * GH_HEAP_MAX_STACKS floats (512 KiB, charged to GH_MEM_METRICS) — bounded whatever the uptime
 * or the number of stacks; stack ids are stable (interned forever), so a column is one stack.
 *
 * Threads: gh_heap_growth_add from one thread (the watchdog's); gh_heap_growth_ranked from any.
 */
#ifndef GH_WATCH_HEAP_GROWTH_H
#define GH_WATCH_HEAP_GROWTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mem/heap.h"

#define GH_HEAP_GROWTH_SNAPS 32
#define GH_HEAP_GROWTH_RANKED 32 /* stacks kept in the ranking */

/* Estimated live bytes per stack id into out[0..cap); returns how many ids. */
typedef size_t (*gh_heap_source_fn)(double *out, size_t cap);

typedef struct {
    uint32_t stack;
    double slope;      /* bytes per second over the stretch it grows on */
    double growth;     /* slope x that stretch's span: bytes it grew by */
    double share;      /* of the whole sampled heap's slope, 0..1 */
    double live_bytes; /* estimate at the newest snapshot */
} gh_heap_growing_t;

typedef struct gh_heap_growth gh_heap_growth_t;

/* source NULL -> gh_heap_live_by_stack. GH_EINVAL, GH_ENOMEM. */
int gh_heap_growth_create(int64_t window_ms, int64_t interval_ms, double min_growth,
                          gh_heap_source_fn source, gh_heap_growth_t **out) GH_WUR;
void gh_heap_growth_destroy(gh_heap_growth_t **g);
/* Called every watchdog sample (monotonic ms); snapshots and ranks when one is due. */
void gh_heap_growth_add(gh_heap_growth_t *g, int64_t t_ms);
/* The growing stacks, fastest first; returns how many (<= cap). span_s: seconds the ring covers
 * (0 while it covers less than half the window, less one snapshot period: nothing is
 * ranked yet, as the leak suspicion waits for half a window). */
size_t gh_heap_growth_ranked(gh_heap_growth_t *g, gh_heap_growing_t *out, size_t cap,
                             double *span_s);

#endif
