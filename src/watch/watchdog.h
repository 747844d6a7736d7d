/*
 * watchdog.h — the memory watchdog: samples memory and traffic, forecasts exhaustion, names the
 * growing component, says whether traffic explains it, and raises alerts with hysteresis.
 *
 * The one design decision: the watchdog is a pure function of the samples it is fed. A sample
 * (time, RSS, allocator bytes, accounted bytes per component, live sessions, cumulative request,
 * failed-login and rate-limited counts) comes from an injectable sampler, and gh_watchdog_step()
 * evaluates one sample; the thread mode only calls the sampler every interval and steps. Tests
 * therefore drive it with synthetic series and their own clock, with no thread and no /proc.
 *
 * How it decides (each evaluation, over a fixed ring covering --watch-window):
 * - Trend: the Theil-Sen slope (median of pairwise slopes; pairs a quarter to three quarters of
 *   the span apart, subsampled to a fixed maximum, so a GC-like sawtooth averages out and the
 *   cost is bounded) over the whole ring, its latest half and its latest quarter. A trend is
 *   STEADY when it rises by more than twice the residual noise (MAD), the medians of its four
 *   quarters each rise by at least half of what the slope predicts (less two standard errors of
 *   sample noise, never less than a quarter), and a line fits every quarter (no quarter's
 *   median residual beyond 15% of the growth plus noise): one step and a plateau is not steady,
 *   nor is a flat stretch followed by a climb. A trend over a recent part of the ring must also
 *   climb clearly above the levels seen before it (the rising edge of a slow sawtooth does not).
 *   The fastest steady scale gives the forecast.
 * - ETA: (limit - fitted RSS now) / slope of the steady RSS trend; +Inf while RSS does not grow
 *   steadily, and before half the window has been sampled (a sawtooth slower than the span seen
 *   so far is indistinguishable from growth).
 * - memory_high: RSS >= warn_ratio (warning) or critical_ratio (critical) of the limit.
 * - memory_exhaustion_forecast: ETA < horizon (warning), ETA < horizon / 4 (critical).
 * - memory_leak_suspected (warning): once half a window has been sampled, unexplained bytes
 *   (RSS - accounted, while RSS grows too) or one component's accounted bytes grow steadily over
 *   at least half the window, by at least leak_min_growth per window, while live sessions grow by
 *   less than 10% (or 10 sessions). Accounted bytes that grow while sessions stay flat are bytes
 *   per live session growing.
 * - store_writes_failing (critical): the sample says a local database (sessions.db, users.db)
 *   failed its last write — a full disk — so logins and revocations answer 503 and /readyz too.
 *   Not a memory alert: it is left out of the gatehouse.memory service check.
 * - email_outbox_stuck: the oldest message waiting in the email outbox is older than
 *   GH_WATCH_EMAIL_STUCK_MS (warning) or four times that (critical): the mail server is down or
 *   refusing, or --smtp-url is unset. Not a memory alert either.
 * - Hysteresis: a higher severity takes fire_after consecutive evaluations, a lower one (or
 *   resolving) resolve_after consecutive evaluations — for the two trend alerts at least a
 *   quarter window's worth, since one noisy stretch of a leak must not resolve it.
 *
 * Sinks, run on the thread that steps (the watchdog thread in production, never a request
 * thread): a log line (msg "alert"; level error for critical, warn otherwise) on every change,
 * DogStatsD (event and gatehouse.memory service check on every change; key gauges and the service
 * check every statsd_period), the webhook (JSON with every field and a Slack-compatible "text"),
 * and an optional callback.
 *
 * Threads: create, start, stop and destroy from one thread. gh_watchdog_step/tick are called by
 * one thread at a time (the watchdog thread once started). The read-outs (eta, severities,
 * critical, status, history) may be called from any thread at any time: they copy, into the
 * caller's memory, state published under a mutex at the end of each evaluation (and the ring,
 * which the stepping thread changes under that mutex).
 *
 * Memory: the ring and scratch space are allocated once at create, charged to GH_MEM_METRICS.
 */
#ifndef GH_WATCH_WATCHDOG_H
#define GH_WATCH_WATCHDOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mem/mem.h"
#include "watch/heap_growth.h"

/* Alerts: X(ENUM, "name") — the `alert` label of gatehouse_alert_firing. */
#define GH_WATCH_ALERT_MAP(X)                                                                      \
    X(MEMORY_HIGH, "memory_high")                                                                  \
    X(EXHAUSTION_FORECAST, "memory_exhaustion_forecast")                                           \
    X(LEAK_SUSPECTED, "memory_leak_suspected")                                                     \
    X(STORE_WRITES_FAILING, "store_writes_failing")                                                \
    X(AUDIT_EVENTS_DROPPED, "audit_events_dropped")                                                \
    X(EMAIL_OUTBOX_STUCK, "email_outbox_stuck")

typedef enum {
#define GH__WATCH_ALERT_ENUM(e, n) GH_WATCH_##e,
    GH_WATCH_ALERT_MAP(GH__WATCH_ALERT_ENUM)
#undef GH__WATCH_ALERT_ENUM
        GH_WATCH__NALERTS
} gh_watch_alert_t;

/* Severities; also DogStatsD service check statuses (0 ok, 1 warning, 2 critical). */
typedef enum { GH_WATCH_OK = 0, GH_WATCH_WARNING = 1, GH_WATCH_CRITICAL = 2 } gh_watch_severity_t;

/* Label values for gatehouse_alert_firing{alert,severity}: alerts in enum order, and
 * {"warning", "critical"} (severity s is label index s - 1). */
extern const char *const gh_watch_alert_names[GH_WATCH__NALERTS];
extern const char *const gh_watch_severity_labels[2];
/* "ok", "warning", "critical". */
const char *gh_watch_severity_name(gh_watch_severity_t s);

/* email_outbox_stuck fires (warning) when the oldest queued message is this old. */
#define GH_WATCH_EMAIL_STUCK_MS (15 * 60 * 1000LL)

/* The most samples a ring may hold (a day at 1 s). */
#define GH_WATCH_MAX_SAMPLES 86400
/* Length of the one-line summaries, NUL included. */
#define GH_WATCH_SUMMARY_LEN 640
/* Growing stacks an alert names, and the length of one stack for people. */
#define GH_WATCH_STACKS 3
#define GH_WATCH_STACK_LEN 200
/* Length of a growing-component name ("unexplained", "sessions", ...), NUL included. */
#define GH_WATCH_NAME_LEN 24

/* One observation. Counters are cumulative since start; the watchdog derives rates. */
typedef struct {
    int64_t t_ms; /* monotonic milliseconds; must not go backwards */
    uint64_t rss_bytes;
    uint64_t allocator_bytes; /* allocator in-use bytes */
    uint64_t component_bytes[GH_MEM__COUNT];
    uint64_t sessions_active;
    uint64_t requests_total;
    uint64_t failed_logins_total;
    uint64_t rate_limited_total;
    uint64_t server_errors_total;        /* requests answered 5xx */
    uint32_t stores_not_writable;        /* local databases whose last write failed */
    uint64_t store_write_failures_total; /* failed writes to them since start */
    uint64_t audit_dropped_total;        /* audit events the full audit queue dropped */
    int64_t email_oldest_age_ms;         /* age of the oldest message waiting in the outbox */
    uint64_t email_outbox_depth;         /* messages waiting in the outbox */
} gh_watch_sample_t;

/* Fills one sample; returns 0, or nonzero to skip this tick (the figure is unknown now). */
typedef int (*gh_watch_sampler_fn)(void *ctx, gh_watch_sample_t *out);
/* The server's part of a real sample: sessions_active, the four cumulative counters and the
 * local databases' write state.
 * Called on the watchdog thread; must only read. */
typedef void (*gh_watch_counters_fn)(void *ctx, gh_watch_sample_t *out);

/* The real sampler: t_ms from the monotonic clock, RSS, allocator and component bytes from
 * gh_mem_*, then counters (may be NULL: zeros) for the rest. GH_EIO when RSS is unknown. */
int gh_watch_sample_process(gh_watch_counters_fn counters, void *ctx,
                            gh_watch_sample_t *out) GH_WUR;

/* One change of an alert, as every sink receives it. */
typedef struct {
    gh_watch_alert_t alert;
    const char *name;                  /* "memory_leak_suspected" */
    gh_watch_severity_t severity;      /* now; GH_WATCH_OK when resolved */
    gh_watch_severity_t previous;      /* before this change */
    bool firing;                       /* false: resolved */
    int64_t at_ms;                     /* wall clock, ms since the epoch */
    char host[64];                     /* gethostname */
    char component[GH_WATCH_NAME_LEN]; /* the growing component, "" when nothing grows */
    uint64_t bytes;                    /* the alert's subject now: RSS, or the growing series */
    double slope_bytes_per_s;          /* its slope (0 when not growing steadily) */
    double eta_s;                      /* time to the limit; INFINITY when none */
    int64_t growth_span_ms;            /* over how long the growth was seen */
    uint64_t rss_bytes, limit_bytes;
    uint64_t sessions_active;
    double request_rate, failed_login_rate, rate_limited_rate; /* per second, last minute */
    char summary[GH_WATCH_SUMMARY_LEN];
    /* memory_leak_suspected and memory_exhaustion_forecast: the fastest growing call stacks of
     * the heap profiler (mem/heap.h), leaf first, "" past nstacks */
    unsigned nstacks;
    struct {
        char where[GH_WATCH_STACK_LEN]; /* "leak_main ← start_thread (libc.so.6)" */
        double share;                   /* of the heap's growth, 0..1 */
        double slope_bytes_per_s;
    } stacks[GH_WATCH_STACKS];
} gh_watch_event_t;

typedef void (*gh_watch_event_fn)(void *ctx, const gh_watch_event_t *ev);

typedef struct {
    int64_t interval_ms; /* sample period; 0 -> 1000 */
    int64_t window_ms;   /* ring span; 0 -> 600000. window / interval + 1 <= GH_WATCH_MAX_SAMPLES */
    uint64_t limit_bytes;     /* effective limit; 0 -> cgroup limit, else half of physical memory */
    double warn_ratio;        /* 0 -> 0.70 */
    double critical_ratio;    /* 0 -> 0.85; must be >= warn_ratio, <= 1 */
    int64_t horizon_ms;       /* forecast horizon; 0 -> 2 h */
    unsigned fire_after;      /* consecutive evaluations to raise a severity; 0 -> 5 */
    unsigned resolve_after;   /* consecutive evaluations to lower or resolve; 0 -> 30 */
    uint64_t leak_min_growth; /* bytes per window a leak must grow at least; 0 -> 4 MiB */

    gh_watch_sampler_fn sampler; /* NULL -> gh_watch_sample_process(counters, counters_ctx) */
    void *sampler_ctx;
    gh_watch_counters_fn counters;
    void *counters_ctx;
    int64_t (*wall_clock_ms)(void); /* alert timestamps; NULL -> gh_clock_now_ms */

    const char *statsd;         /* "host:port" of a DogStatsD agent, NULL or "" for none */
    int64_t statsd_period_ms;   /* gauges and service check; 0 -> 10000 */
    const char *webhook_url;    /* NULL or "" for none */
    int64_t webhook_backoff_ms; /* first retry wait; 0 -> the webhook's default */

    /* Growth by call stack (watch/heap_growth.h): NULL -> the heap profiler's own tables when
     * it is on at create (mem/heap.h), else none. */
    gh_heap_source_fn heap_source;

    gh_watch_event_fn on_event; /* optional, called after the other sinks */
    void *event_ctx;
} gh_watch_options_t;

typedef struct gh_watchdog gh_watchdog_t;

/*
 * Creates a watchdog (not yet sampling). Copies what it needs from opt. A statsd address that
 * does not resolve now is logged and left out (telemetry never stops the service); a malformed
 * one is GH_EINVAL. Errors: GH_EINVAL (bad options), GH_ENOMEM, GH_EINTERNAL (webhook thread).
 * *out is freed with gh_watchdog_destroy.
 */
int gh_watchdog_create(const gh_watch_options_t *opt, gh_watchdog_t **out) GH_WUR;
/* Stops the thread if running, gives the webhook up to 2 s to deliver what is queued, frees
 * everything; *wd = NULL. NULL and *wd == NULL are no-ops. */
void gh_watchdog_destroy(gh_watchdog_t **wd);

/* Starts the thread: tick every interval. GH_EINVAL if already running, GH_EINTERNAL. */
int gh_watchdog_start(gh_watchdog_t *wd) GH_WUR;
/* Stops and joins the thread; returns promptly (the wait is interruptible). No-op if stopped. */
void gh_watchdog_stop(gh_watchdog_t *wd);

/* Takes one sample with the sampler and steps. 0, or the sampler's error (nothing changes). */
int gh_watchdog_tick(gh_watchdog_t *wd) GH_WUR;
/* Adds one sample to the ring and evaluates every alert; sinks run on this thread. A sample
 * older than the previous one is ignored. */
void gh_watchdog_step(gh_watchdog_t *wd, const gh_watch_sample_t *s);

/* ---- read-outs: any thread ---- */

/* Forecast seconds until RSS reaches the limit; INFINITY when flat, falling, not steady or not
 * enough samples. */
double gh_watchdog_eta_seconds(gh_watchdog_t *wd);
/* Current severity of an alert (GH_WATCH_OK when not firing). */
gh_watch_severity_t gh_watchdog_severity(gh_watchdog_t *wd, gh_watch_alert_t a);
/* True while memory_high fires at critical severity: /readyz answers 503. */
bool gh_watchdog_memory_critical(gh_watchdog_t *wd);

/* Everything /debug/memory shows of the watchdog. */
typedef struct {
    int64_t window_ms, interval_ms;
    size_t samples, capacity; /* in the ring now, and its size */
    uint64_t limit_bytes;
    double warn_ratio, critical_ratio;
    int64_t horizon_ms;
    /* latest sample */
    uint64_t rss_bytes, allocator_bytes, accounted_bytes, unexplained_bytes;
    uint64_t component_bytes[GH_MEM__COUNT];
    uint64_t sessions_active;
    double request_rate, failed_login_rate, rate_limited_rate, server_error_rate; /* last minute */
    /* trends: slopes in bytes/s over the whole ring (Theil-Sen), steady flag per series */
    double rss_slope, unexplained_slope, component_slope[GH_MEM__COUNT];
    bool rss_steady;
    double forecast_slope; /* the steady RSS slope the ETA uses; 0 when none */
    double forecast_level; /* RSS its line gives at the newest sample: the ETA counts from here */
    int64_t forecast_span_ms;
    double eta_s;
    char growing[GH_WATCH_NAME_LEN]; /* fastest steadily growing series, "" when none */
    /* the heap profiler's fastest growing stacks over the window (heap_growth.h) */
    bool heap_profile;
    size_t nstacks;
    gh_heap_growing_t stacks[GH_WATCH_STACKS];
    double stacks_span_s;
    double growing_slope;
    /* alerts */
    gh_watch_severity_t severity[GH_WATCH__NALERTS];
    int64_t since_ms[GH_WATCH__NALERTS]; /* wall clock of the last change, 0 never */
    char alert_summary[GH_WATCH__NALERTS][GH_WATCH_SUMMARY_LEN];
    char summary[GH_WATCH_SUMMARY_LEN]; /* the state in one line, alert or not */
    /* sinks */
    uint64_t events; /* alert changes since start */
    uint64_t statsd_sent, statsd_dropped;
    uint64_t webhook_delivered, webhook_failed, webhook_dropped;
} gh_watch_status_t;

void gh_watchdog_status(gh_watchdog_t *wd, gh_watch_status_t *out);
/* The ring for charts: copies min(cap, samples in the ring) samples into out, oldest first —
 * every sample when they fit, else evenly spaced over the whole ring from its oldest to its
 * newest, so a chart of any size covers the whole window. Returns how many. Allocates nothing;
 * holds the watchdog's mutex for the copy only. */
size_t gh_watchdog_history(gh_watchdog_t *wd, gh_watch_sample_t *out, size_t cap);
/* The heap profiler's growing stacks, fastest first (at most cap); span_s: seconds ranked over
 * (0 before half a window). 0 when the profiler is off. */
size_t gh_watchdog_heap_growth(gh_watchdog_t *wd, gh_heap_growing_t *out, size_t cap,
                               double *span_s);
/* The status as a JSON object (new reference; NULL on allocation failure). Infinite ETAs are
 * null. */
json_t *gh_watch_status_json(const gh_watch_status_t *st);

/* Collect callbacks for the metrics registry (ctx = the watchdog):
 * gatehouse_alert_firing{alert,severity} (GH_WATCH__NALERTS x 2 series, 1 where firing) and
 * gatehouse_memory_exhaustion_eta_seconds (one series, +Inf when none). */
int gh_watchdog_collect_firing(void *wd, double *values, size_t nseries);
int gh_watchdog_collect_eta(void *wd, double *values, size_t nseries);

/* Formats bytes for people ("870 MiB", "2.9 MiB", "1 GiB") and durations ("45s", "5m12s",
 * "2h05m", "3d4h"; "never" for INFINITY). Return out. */
char *gh_watch_fmt_bytes(double bytes, char *out, size_t n);
char *gh_watch_fmt_duration(double seconds, char *out, size_t n);

#endif
