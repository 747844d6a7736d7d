/*
 * load.h — `gatehouse load`: a load and soak generator for a Gatehouse node that ends with a
 * memory-leak verdict.
 *
 * The one design decision: a single thread drives every virtual user through one libcurl multi
 * handle (keep-alive connections, no thread per connection) and the same loop scrapes the
 * target's /metrics once a second. Requests, throughput, session cycles and memory samples
 * therefore share one clock and one timeline, so a memory slope can be divided by the session
 * cycles completed in the very same seconds, and nothing the tool does depends on thread timing.
 *
 * Safety: the target must be on the loopback interface (127.0.0.1, localhost or ::1; checked by
 * gh_load_parse_url before anything is sent), proxies from the environment are ignored and
 * redirects are never followed, so this tool cannot send load anywhere else. Every run is bounded:
 * user setup by GH_LOAD_SETUP_MAX_MS, the load by --duration, the drain by GH_LOAD_DRAIN_MS.
 *
 * Memory: everything the tool allocates, libcurl's and jansson's allocations included, goes
 * through gh_mem_* charged to GH_MEM_OTHER; time series are preallocated for the whole
 * --duration (at most GH_LOAD_DURATION_MAX), so nothing grows with the target's answers.
 */
#ifndef GH_LOAD_LOAD_H
#define GH_LOAD_LOAD_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "mem/mem.h"

#define GH_LOAD_URL_MAX 512
#define GH_LOAD_PATH_MAX 1024
#define GH_LOAD_PREFIX_MAX 32
#define GH_LOAD_TOKEN_MAX 512

#define GH_LOAD_DURATION_MAX (24LL * 3600 * 1000) /* ms: one day */
#define GH_LOAD_CONCURRENCY_MAX 1024u
#define GH_LOAD_USERS_MAX 100000u
#define GH_LOAD_CHECKS_MAX 1000u
#define GH_LOAD_RATE_MAX 1e6 /* requests per second */
/* Registering users and logging the validate sessions in may take at most this long. */
#define GH_LOAD_SETUP_MAX_MS 120000
/* Requests still in flight this long after --duration are abandoned (and counted as such). */
#define GH_LOAD_DRAIN_MS 5000
/* Fewer samples than this after the warm-up and the verdict is `inconclusive`. */
#define GH_LOAD_MIN_FIT_SAMPLES 10

typedef enum {
    GH_LOAD_CHURN = 0, /* log in -> k token checks -> log out, over a pool of users */
    GH_LOAD_VALIDATE,  /* hot token checks on sessions logged in during setup */
    GH_LOAD_MIXED,     /* weighted mix: checks, who-am-I, listing, failed logins, churn */
    GH_LOAD_LOGIN_FLOOD,
    /* wrong passwords */ GH_LOAD_SOAK, /* churn at a fixed --rate, in waves, for a long --duration
                                         */
    GH_LOAD__SCENARIOS
} gh_load_scenario_t;

/* Name of a scenario ("login-flood"); "?" when out of range. */
const char *gh_load_scenario_name(gh_load_scenario_t s);

/* The unit of a leak threshold (--max-leak). */
typedef enum {
    GH_LOAD_LEAK_PER_S = 0, /* bytes per second of the fit window */
    GH_LOAD_LEAK_PER_1K,    /* bytes per 1,000 completed session cycles */
} gh_load_leak_unit_t;

typedef struct {
    char url[GH_LOAD_URL_MAX];         /* base URL without a trailing '/' */
    char metrics_url[GH_LOAD_URL_MAX]; /* default: url + "/metrics" */
    gh_load_scenario_t scenario;
    int64_t duration_ms; /* default 30s (soak: 10m) */
    int64_t warmup_ms;   /* -1 = default: gh_load_warmup_ms */
    int64_t timeout_ms;  /* per request, default 10s */
    uint32_t concurrency;
    uint32_t users;
    uint32_t checks; /* token checks per churn cycle */
    double rate;     /* requests per second; 0 = closed loop */
    int64_t wave_ms; /* soak: the period of the session wave (default 5s); 0 = steady churn */
    double max_leak; /* threshold in max_leak_unit; < 0 = the default for the fit window */
    gh_load_leak_unit_t max_leak_unit;
    char json_path[GH_LOAD_PATH_MAX];    /* "" = none */
    char report_path[GH_LOAD_PATH_MAX];  /* "" = none */
    char admin_token[GH_LOAD_TOKEN_MAX]; /* "" = register through POST /v1/users */
    char user_prefix[GH_LOAD_PREFIX_MAX];
    bool progress; /* draw the progress line (stderr is a TTY) */
} gh_load_opts_t;

/* ---- command-line parsing (cli.c) ---- */

/*
 * Parses `load` arguments (argv[0] is "load") into o, the defaults filled first. Returns 0, 1 when
 * --help was printed to out, or GH_EINVAL with one line in err naming the flag and what was
 * expected (the caller prints it and exits 2). A non-loopback --url or --metrics-url is GH_EINVAL.
 */
int gh_load_parse_args(gh_load_opts_t *o, int argc, char **argv, FILE *out, char *err,
                       size_t errlen) GH_WUR;

/*
 * Checks that url is http:// or https:// on 127.0.0.1, localhost or [::1] (no user info, no query
 * or fragment) and writes it to base without a trailing '/'. GH_EINVAL with a reason in err.
 */
int gh_load_parse_url(const char *url, char *base, size_t baselen, char *err, size_t errlen) GH_WUR;

/* "64KiB/s", "2MiB/min", "1GiB/h" (bytes per second) or "16KiB/1k" (per 1,000 session cycles).
 * The size part is gh_config_parse_size's. GH_EINVAL otherwise. */
int gh_load_parse_leak(const char *s, double *bytes, gh_load_leak_unit_t *unit) GH_WUR;

/* The command: parse, run, print, write files. Exit status 0 pass (or inconclusive), 1 leak,
 * 2 usage or connection error. */
int gh_load_main(int argc, char **argv);

/* ---- latency histogram (stats.c) ---- */

/*
 * Log-linear like HdrHistogram: nanoseconds below 256 are exact; above, every power of two is
 * cut into 128 equal buckets, so a recorded value is known to within 0.8%. Values from 0 to
 * 2^40 ns (18 minutes) fit; larger ones land in the last bucket and max stays exact.
 */
#define GH_LOAD_HIST_SUB_BITS 7
#define GH_LOAD_HIST_LINEAR 256
#define GH_LOAD_HIST_MAX_BITS 40
#define GH_LOAD_HIST_BUCKETS                                                                       \
    (GH_LOAD_HIST_LINEAR + (GH_LOAD_HIST_MAX_BITS - 8) * (1 << GH_LOAD_HIST_SUB_BITS))

typedef struct {
    uint64_t counts[GH_LOAD_HIST_BUCKETS];
    uint64_t total;
    int64_t max_ns;
} gh_load_hist_t;

void gh_load_hist_reset(gh_load_hist_t *h);
void gh_load_hist_record(gh_load_hist_t *h, int64_t ns);
void gh_load_hist_merge(gh_load_hist_t *dst, const gh_load_hist_t *src);
/* The value at percentile p (0 < p <= 100): the upper edge of the bucket holding the
 * ceil(p% x total)-th value, never above max. 0 when empty. */
int64_t gh_load_hist_percentile(const gh_load_hist_t *h, double p);

/* ---- robust slope (stats.c) ---- */

/*
 * Theil–Sen estimator: the median of the slopes of all pairs (x[i], y[i]), (x[j], y[j]) with
 * x[i] != x[j]; the intercept is the median of y - slope * x. A single spike or a missed sample
 * cannot move it the way it moves least squares. low and high are Sen's 95% confidence interval
 * of the slope: the pairwise slopes 1.96 standard deviations of Kendall's S either side of the
 * median rank (ties ignored, which only widens it). Series longer than GH_LOAD_SLOPE_MAX_POINTS
 * are first reduced to that many points (each the median of a consecutive block), which bounds the
 * work to ~180,000 pairs. NaN entries are skipped. GH_EINVAL with fewer than two usable points,
 * GH_ENOMEM.
 */
#define GH_LOAD_SLOPE_MAX_POINTS 600
typedef struct {
    double slope, intercept;
    double low, high;
} gh_load_fit_t;
int gh_load_theil_sen(const double *x, const double *y, size_t n, gh_load_fit_t *fit) GH_WUR;

/* ---- samples of the target's /metrics (stats.c) ---- */

typedef struct {
    double t_s;                      /* seconds since the load started */
    double rss;                      /* process_resident_memory_bytes */
    double accounted;                /* sum of gatehouse_memory_bytes{component} */
    double unexplained;              /* gatehouse_memory_unexplained_bytes */
    double sessions;                 /* gatehouse_sessions_active */
    double component[GH_MEM__COUNT]; /* gatehouse_memory_bytes{component=…} */
    double start_time;               /* process_start_time_seconds: a restart changes it */
    double cycles;                   /* session cycles completed by then (filled by caller) */
} gh_load_sample_t;

/*
 * Reads the figures above from Prometheus text. Figures that are absent are NaN (unexplained
 * falls back to rss - accounted). GH_EINVAL when process_resident_memory_bytes is missing.
 */
int gh_load_parse_metrics(const char *text, size_t len, gh_load_sample_t *out) GH_WUR;

/* ---- a run and its result (engine.c, stats.c) ---- */

/* One second of the run. */
typedef struct {
    double t_s;        /* end of the second, since the load started */
    uint64_t requests; /* completed in this second */
    uint64_t errors;
    double p50_ms, p99_ms, max_ms; /* of the requests completed in this second (0 when none) */
} gh_load_tick_t;

typedef enum { GH_LOAD_PASS = 0, GH_LOAD_LEAK, GH_LOAD_INCONCLUSIVE } gh_load_verdict_t;
const char *gh_load_verdict_name(gh_load_verdict_t v);

typedef struct {
    size_t samples;     /* all samples taken */
    size_t fit_samples; /* samples at or after the warm-up */
    double warmup_s;
    double fit_window_s;      /* seconds between the first and last fit sample */
    double start_bytes;       /* RSS of the first sample */
    double end_bytes;         /* RSS of the last sample */
    double slope_bytes_per_s; /* Theil–Sen slope of RSS over the fit samples */
    double slope_low;         /* its 95% confidence interval */
    double slope_high;
    double intercept;         /* of that fit, at t = 0 */
    double rss_band_bytes;    /* max - min of RSS around that line over the fit samples */
    double unexplained_slope; /* bytes/s */
    double accounted_slope;   /* bytes/s */
    double component_slope[GH_MEM__COUNT];
    double sessions_start, sessions_end; /* over the fit window */
    double cycles_per_s;                 /* session cycles per second over the fit window */
    double bytes_per_1k_cycles;          /* slope / cycles_per_s x 1000; NaN without cycles */
    double max_leak;                     /* the threshold applied, in max_leak_unit */
    gh_load_leak_unit_t max_leak_unit;
    bool max_leak_default; /* derived from the fit window, not given */
    const char *growing;   /* largest positive slope: a component name, "unaccounted" or NULL */
    bool restarted;        /* process_start_time_seconds changed during the run */
    gh_load_verdict_t verdict;
    char reason[384]; /* one sentence saying why */
} gh_load_memory_t;

/* The node's heap profile (GET /debug/heap, with the admin token) at the start and the end of
 * the run: the call stacks whose estimated live bytes grew most (heap.c). */
#define GH_LOAD_HEAP_TOP 3
#define GH_LOAD_HEAP_STACK_MAX 240
typedef struct {
    bool fetched;        /* both profiles were read */
    char why[160];       /* when not: why ("no --admin-token", "the profiler is off", ...) */
    double total_growth; /* sum of the positive growths of every stack */
    size_t n;            /* stacks in top: those that grew by more than GH_LOAD_NOISE_BAND */
    struct {
        char stack[GH_LOAD_HEAP_STACK_MAX]; /* leaf first: "leak_main ← start_thread ← clone3" */
        double start_bytes, end_bytes, growth, share;
    } top[GH_LOAD_HEAP_TOP];
} gh_load_heap_t;

#define GH_LOAD_STATUS_MAX 600

typedef struct {
    /* time */
    double elapsed_s; /* from the start of the load to the end of the drain */
    /* requests measured in the load phase (setup is not counted) */
    uint64_t requests;  /* completed with an HTTP answer or a transport failure */
    uint64_t errors;    /* unexpected statuses plus transport failures */
    uint64_t cycles;    /* completed session cycles: login .. logout answered 204 */
    uint64_t abandoned; /* still in flight GH_LOAD_DRAIN_MS after the end */
    uint64_t status[GH_LOAD_STATUS_MAX];       /* answers by status */
    uint64_t status_error[GH_LOAD_STATUS_MAX]; /* of those, unexpected for their step */
    uint64_t transport[128];                   /* failures by CURLcode */
    gh_load_hist_t latency;
    /* time series: one tick per second, one sample per successful scrape */
    gh_load_tick_t *ticks;
    size_t nticks, ticks_cap;
    gh_load_sample_t *samples;
    size_t nsamples, samples_cap;
    uint64_t scrapes_failed;
    /* the memory analysis (gh_load_analyse) */
    gh_load_memory_t memory;
    gh_load_heap_t heap;    /* gh_load_heap_* (heap.c) */
    double wave_s;          /* soak: the period of a wave as run (0 = no waves) */
    uint32_t wave_sessions; /* soak: sessions each VU logs in per wave */
    bool interrupted;       /* SIGINT or SIGTERM ended the run early */
    bool target_lost;       /* the last seconds of the run saw only transport failures */
} gh_load_result_t;

/* Allocates the result's series for a run of o->duration_ms. *out is freed with
 * gh_load_result_free. GH_ENOMEM. */
int gh_load_result_new(const gh_load_opts_t *o, gh_load_result_t **out) GH_WUR;
void gh_load_result_free(gh_load_result_t **r);

/*
 * Runs the scenario against the target: preflight (GET /healthz and the metrics URL), setup
 * (register the user pool; log in the validate sessions), then the load for o->duration_ms, then a
 * drain. Fills res (not res->memory). Returns 0; GH_EIO when the target cannot be reached or
 * answers the preflight wrongly, GH_EAUTH/GH_ELIMIT/GH_ESTORE when the setup was refused, with one
 * line in err; GH_ENOMEM. stop, when non-NULL, is polled: nonzero ends the load early.
 */
int gh_load_run(const gh_load_opts_t *o, gh_load_result_t *res, volatile sig_atomic_t *stop,
                char *err, size_t errlen) GH_WUR;

/*
 * The memory analysis and verdict over res->samples. The fit uses the samples with t >= warm-up.
 * The verdict compares the 95% interval of the RSS slope with the threshold (a per-1k threshold is
 * converted at the window's cycle rate): `leak` when all of it lies above, `pass` when all of it
 * lies at or below, `inconclusive` when it straddles the threshold (the node's memory is too noisy
 * for this window), when fewer than GH_LOAD_MIN_FIT_SAMPLES samples remain, when the target
 * restarted, or when the threshold is per 1k cycles and no cycle completed. GH_ENOMEM.
 */
int gh_load_analyse(const gh_load_opts_t *o, gh_load_result_t *res) GH_WUR;

/*
 * The default --max-leak in bytes per second for a fit window of window_s seconds:
 *   GH_LOAD_NOISE_BAND / window_s + GH_LOAD_NOISE_FLOOR.
 * A healthy node's RSS after the warm-up wanders within a band of GH_LOAD_NOISE_BAND bytes (a
 * slab chunk, an arena, SQLite's page cache settling), and such a wander can fake at most
 * band / window of slope; GH_LOAD_NOISE_FLOOR covers the residual drift seen over long healthy
 * soaks. Both were measured (docs/BENCHMARKS.md, "Leak verdict noise floor").
 */
#define GH_LOAD_NOISE_BAND (1024.0 * 1024.0)
#define GH_LOAD_NOISE_FLOOR 1024.0
double gh_load_default_max_leak(double window_s);

/* Warm-up used for o: o->warmup_ms, or the default: 25% of the duration within [5s, 2m], and
 * never more than half of it. */
int64_t gh_load_warmup_ms(const gh_load_opts_t *o);

/* ---- the node's heap profile (heap.c) ---- */

/* GET o->url/debug/heap with the admin token into *text (gh_mem, GH_MEM_OTHER; the caller frees
 * it). Returns 0, or GH_EINVAL without a token, GH_EIO with one line in why. */
int gh_load_heap_fetch(const gh_load_opts_t *o, char **text, size_t *len, char *why,
                       size_t whylen) GH_WUR;
/* Compares two collapsed-stack profiles into out (the growth of each stack from a to b, largest
 * first). GH_ENOMEM. */
int gh_load_heap_compare(const char *a, size_t alen, const char *b, size_t blen,
                         gh_load_heap_t *out) GH_WUR;
/* Appends to a leak verdict's reason the stack that grew most, when one did. */
void gh_load_heap_explain(const gh_load_heap_t *h, gh_load_memory_t *m);

/* ---- output (report.c) ---- */

/* "12.3 MiB" (binary units, one decimal; "-" for NaN). In stats.c. */
void gh_load_format_bytes(double bytes, char *out, size_t len);

/* The summary table (stdout). */
void gh_load_print_summary(FILE *out, const gh_load_opts_t *o, const gh_load_result_t *res);
/* The --json document: {requests, errors, throughput_rps, latency_ms:{p50,p90,p99,p999,max},
 * memory:{samples, start_bytes, end_bytes, slope_bytes_per_s, bytes_per_1k_cycles}, verdict}
 * plus further fields documented in docs/OPERATIONS.md. GH_EIO, GH_ENOMEM. */
int gh_load_write_json(const char *path, const gh_load_opts_t *o,
                       const gh_load_result_t *res) GH_WUR;
/* The --report HTML file: self-contained, inline SVG charts. GH_EIO. */
int gh_load_write_report(const char *path, const gh_load_opts_t *o,
                         const gh_load_result_t *res) GH_WUR;

#endif
