/*
 * metrics.h — the metrics registry and its Prometheus text exposition (format 0.0.4).
 *
 * The one design decision: label sets are bounded by construction. A family is registered at
 * start with a FIXED list of values for each label (routes are templates, codes a fixed list of
 * status codes), and the registry allocates one series for every combination right then. On the
 * request path a series is addressed by a small integer index, and an update is one or two
 * relaxed atomic operations: no lock, no allocation, no lookup by string. Nothing a client sends
 * can create a series, so /metrics cannot grow with traffic.
 *
 * Series index: row-major over the declared labels. For labels (route: R values, code: C
 * values) the series of route r and code c is r * C + c; GH_METRIC_AT(f, r, c) computes it.
 * A family without labels has one series, index 0.
 *
 * Values owned elsewhere (live sessions, bytes per memory component, queue depth, RSS) are
 * callback families: a function fills every series of the family at render time.
 *
 * Threads: register every family (gh_metrics_add*) before any other thread sees the registry,
 * and destroy it after they have stopped. Updates and renders are safe from any thread at any
 * time in between, concurrently with each other. Render takes no lock either; a render that
 * races updates sees each series at some recent value, and a histogram's _count always equals
 * its +Inf bucket.
 *
 * Memory: everything the registry holds (names, help, label values, series) and every rendered
 * text is charged to GH_MEM_METRICS; gh_metrics_destroy returns all of it.
 */
#ifndef GH_WATCH_METRICS_H
#define GH_WATCH_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum {
    GH_METRIC_COUNTER = 1,
    GH_METRIC_GAUGE,
    GH_METRIC_HISTOGRAM,
} gh_metric_type_t;

/* At most this many labels per family (route x code is 2). */
#define GH_METRIC_MAX_LABELS 4
/* At most this many series per family: a guard against a label list that multiplies badly. */
#define GH_METRIC_MAX_SERIES 16384
/* At most this many finite bucket bounds per histogram (+Inf is implicit). */
#define GH_METRIC_MAX_BUCKETS 32
/* A sensible bound for gh_metrics_render's max_bytes. */
#define GH_METRICS_RENDER_MAX (4u << 20)

typedef struct gh_metrics gh_metrics_t; /* the registry */
typedef struct gh_metric gh_metric_t;   /* one family; owned by the registry */

/* One label dimension: its name and the complete list of values it can take. */
typedef struct {
    const char *name;          /* "route"; not "le", not starting with "__" */
    const char *const *values; /* {"/v1/sessions", "/v1/session", ...}; each non-empty */
    size_t nvalues;            /* >= 1 */
} gh_metric_label_t;

/*
 * Called at render time to fill values[0 .. nseries-1] (row-major series order, as above) for a
 * callback family. May run on any thread, concurrently with itself when two renders overlap, so
 * it must only read. Return 0 to render the values, nonzero to leave the whole family out of
 * this render (e.g. the figure is unknown right now). values arrive filled with 0.
 */
typedef int (*gh_metric_collect_fn)(void *ctx, double *values, size_t nseries);

/* Render flags. */
enum {
    /* Series whose counter is 0 / whose histogram has no observations are not rendered: for a
     * route x code family most combinations never happen. Gauges ignore it. */
    GH_METRIC_SKIP_ZERO = 1u << 0,
};

typedef struct {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*, unique in the registry; counters end _total */
    const char *help; /* one line of text; may be "" */
    gh_metric_type_t type;
    const gh_metric_label_t *labels; /* NULL when nlabels == 0 */
    size_t nlabels;                  /* <= GH_METRIC_MAX_LABELS */
    /* Histograms only: finite upper bounds, strictly increasing; +Inf is added implicitly. */
    const double *buckets;
    size_t nbuckets; /* <= GH_METRIC_MAX_BUCKETS */
    /* Callback families (counter or gauge only): collect != NULL. */
    gh_metric_collect_fn collect;
    void *collect_ctx;
    unsigned flags; /* GH_METRIC_SKIP_ZERO */
} gh_metric_desc_t;

/* Bucket bounds in seconds for request latencies: 0.5 ms .. 10 s (14 bounds). */
extern const double gh_metric_latency_buckets[];
extern const size_t gh_metric_latency_nbuckets;

/* Creates an empty registry. *out is freed with gh_metrics_destroy. GH_ENOMEM. */
int gh_metrics_create(gh_metrics_t **out) GH_WUR;
/* Frees the registry, its families and their series. Every gh_metric_t from it becomes invalid.
 * *m = NULL; NULL and *m == NULL are no-ops. */
void gh_metrics_destroy(gh_metrics_t **m);

/*
 * Registers a family; the registry copies every string and array of d, so d may be temporary.
 * *out (may be NULL when the caller keeps no handle, e.g. callback families) stays valid until
 * gh_metrics_destroy. Families render in registration order.
 * Errors: GH_EINVAL (bad name, label, type, buckets, or collect on a histogram), GH_EEXISTS
 * (name already registered), GH_ERANGE (more than GH_METRIC_MAX_SERIES series), GH_ENOMEM.
 */
int gh_metrics_add(gh_metrics_t *m, const gh_metric_desc_t *d, gh_metric_t **out) GH_WUR;

/* Registers the standard process families, as every Prometheus client exports them:
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_cpu_seconds_total,
 * process_open_fds, process_max_fds, process_start_time_seconds (read from /proc at render; a
 * figure /proc cannot give at that moment is left out of that render). On an error the families
 * added so far stay registered; gh_metrics_destroy frees them. */
int gh_metrics_add_process(gh_metrics_t *m) GH_WUR;

/*
 * Renders every family as Prometheus text format 0.0.4 (Content-Type
 * "text/plain; version=0.0.4; charset=utf-8"). On success *text is a NUL-terminated string of
 * *len bytes that the caller owns and frees with gh_metrics_text_free. Errors: GH_ETOOBIG when the
 * text would exceed max_bytes, GH_ENOMEM; then *text = NULL and nothing stays allocated.
 */
int gh_metrics_render(gh_metrics_t *m, size_t max_bytes, char **text, size_t *len) GH_WUR;
/* Frees a rendered text; *text = NULL. */
void gh_metrics_text_free(char **text);

/* --- the request path: any thread, no lock, no allocation. series < gh_metric_nseries(f). --- */

/* Counters. */
void gh_metric_inc(gh_metric_t *f, size_t series);
void gh_metric_add(gh_metric_t *f, size_t series, uint64_t n);
/* Gauges. */
void gh_metric_set(gh_metric_t *f, size_t series, double v);
void gh_metric_gauge_add(gh_metric_t *f, size_t series, double delta); /* negative to subtract */
/* Histograms: v in the family's unit (seconds for *_seconds); NaN is ignored. */
void gh_metric_observe(gh_metric_t *f, size_t series, double v);
/* Observes a duration in nanoseconds as seconds. */
void gh_metric_observe_ns(gh_metric_t *f, size_t series, int64_t ns);

/* Row-major series index from one index per label (idx[i] < nvalues of label i). */
size_t gh_metric_series(const gh_metric_t *f, const size_t *idx);
#define GH_METRIC_AT(f, ...) gh_metric_series((f), (const size_t[]){__VA_ARGS__})
size_t gh_metric_nseries(const gh_metric_t *f);
/* Position of `value` in the declared values of label number `label`, or -1. For building
 * lookup tables at start (status code -> index), not for the request path. */
int gh_metric_label_index(const gh_metric_t *f, size_t label, const char *value);

/* Reading back (watchdog rates, tests): a counter's or gauge's value, a histogram's count; NaN
 * for a callback family (its values live with its owner). */
double gh_metric_value(const gh_metric_t *f, size_t series);
/* Sum of gh_metric_value over every series of the family (e.g. all requests). */
double gh_metric_total(const gh_metric_t *f);
/* A histogram series' sum of observations. */
double gh_metric_sum(const gh_metric_t *f, size_t series);

/* --- process figures (src/watch/process.c) --- */

typedef struct {
    double resident_bytes;     /* /proc/self/statm resident × page size */
    double virtual_bytes;      /* /proc/self/statm size × page size */
    double cpu_seconds;        /* utime + stime from /proc/self/stat, in seconds */
    double open_fds;           /* entries of /proc/self/fd */
    double max_fds;            /* RLIMIT_NOFILE soft limit */
    double start_time_seconds; /* Unix time the process started: btime + starttime / CLK_TCK */
} gh_process_stats_t;

/* Reads the figures above. GH_EIO when /proc cannot be read (fields then hold 0). */
int gh_metrics_process_read(gh_process_stats_t *out) GH_WUR;

#endif
