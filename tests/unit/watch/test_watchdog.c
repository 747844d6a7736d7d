/*
 * test_watchdog.c — forecast, leak suspicion and hysteresis on synthetic series fed through
 * gh_watchdog_step with the test's own clock: healthy shapes (steady churn, GC sawtooth, step then
 * plateau, growth that sessions explain) raise nothing they should not; leak shapes (slow, fast,
 * noisy, in an accounted component, starting late) are flagged within one window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/log.h"
#include "mem/mem.h"
#include "watch/statsd.h"
#include "watch/watchdog.h"

#define MiB (1024.0 * 1024.0)
#define KiB 1024.0
#define GiB (1024.0 * MiB)
#define WINDOW_S 600 /* the default 10 min window at 1 s */

/* ---- what the sinks saw ---- */

typedef struct {
    int n;
    gh_watch_event_t ev[64];
    int fired[GH_WATCH__NALERTS]; /* events with firing = true */
    int64_t first_fire_t[GH_WATCH__NALERTS];
    int64_t now_t; /* sample time of the step in progress, seconds */
} seen_t;

static void on_event(void *ctx, const gh_watch_event_t *ev)
{
    seen_t *s = ctx;
    if (s->n < 64)
        s->ev[s->n] = *ev;
    s->n++;
    if (ev->firing) {
        if (!s->fired[ev->alert])
            s->first_fire_t[ev->alert] = s->now_t;
        s->fired[ev->alert]++;
    }
}

static int64_t fixed_wall_clock(void)
{
    return 1795000000000; /* 2026-11-18T...Z: alert timestamps do not depend on the machine */
}

static gh_watchdog_t *make(seen_t *seen, double limit)
{
    memset(seen, 0, sizeof *seen);
    gh_watch_options_t o = {.interval_ms = 1000,
                            .window_ms = WINDOW_S * 1000,
                            .limit_bytes = (uint64_t)limit,
                            .wall_clock_ms = fixed_wall_clock,
                            .on_event = on_event,
                            .event_ctx = seen};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    return wd;
}

/* ---- synthetic series ---- */

static uint64_t rng_state;
static double noise(void) /* uniform in [-1, 1), deterministic */
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) / (double)(1ULL << 52) - 1.0;
}

typedef struct {
    double unexplained; /* bytes nobody accounts for */
    double sessions;    /* live sessions */
    double per_session; /* accounted session bytes per live session */
    double http;        /* accounted http bytes */
    double req_rate, failed_rate, limited_rate;
} shape_t;

typedef struct {
    double requests, failed, limited;
} counters_t;

static gh_watch_sample_t sample_at(int64_t t, const shape_t *sh, counters_t *c)
{
    gh_watch_sample_t s;
    memset(&s, 0, sizeof s);
    s.t_ms = t * 1000;
    s.sessions_active = (uint64_t)(sh->sessions + 0.5);
    s.component_bytes[GH_MEM_SESSIONS] = (uint64_t)(sh->sessions * sh->per_session);
    s.component_bytes[GH_MEM_HTTP] = (uint64_t)sh->http;
    s.component_bytes[GH_MEM_USERS] = (uint64_t)(3 * MiB);
    s.component_bytes[GH_MEM_SQLITE] = (uint64_t)(8 * MiB);
    double accounted = 0;
    for (int i = 0; i < GH_MEM__COUNT; i++)
        accounted += (double)s.component_bytes[i];
    s.rss_bytes = (uint64_t)(accounted + sh->unexplained);
    s.allocator_bytes = (uint64_t)accounted;
    c->requests += sh->req_rate;
    c->failed += sh->failed_rate;
    c->limited += sh->limited_rate;
    s.requests_total = (uint64_t)c->requests;
    s.failed_logins_total = (uint64_t)c->failed;
    s.rate_limited_total = (uint64_t)c->limited;
    return s;
}

typedef void (*shape_fn)(int64_t t, shape_t *sh, const void *param);

static void base(shape_t *sh)
{
    *sh = (shape_t){.unexplained = 150 * MiB,
                    .sessions = 1204,
                    .per_session = 2 * KiB,
                    .http = 6 * MiB,
                    .req_rate = 410,
                    .failed_rate = 0.2,
                    .limited_rate = 0};
}

/* Feeds samples t = from .. to-1 (seconds). */
static void run(gh_watchdog_t *wd, seen_t *seen, int64_t from, int64_t to, shape_fn fn,
                const void *param, counters_t *c)
{
    for (int64_t t = from; t < to; t++) {
        shape_t sh;
        base(&sh);
        fn(t, &sh, param);
        gh_watch_sample_t s = sample_at(t, &sh, c);
        seen->now_t = t;
        gh_watchdog_step(wd, &s);
    }
}

static void churn(int64_t t, shape_t *sh, const void *param)
{
    (void)t;
    (void)param;
    /* Sessions come and go around 1,204; memory follows them and the allocator jitters. */
    sh->sessions = 1204 + 60 * noise();
    sh->unexplained += 3 * MiB * noise();
    sh->http += 1 * MiB * noise();
    sh->req_rate = 410 + 40 * noise();
}

static void sawtooth(int64_t t, shape_t *sh, const void *param)
{
    double period = *(const double *)param;
    double phase = fmod((double)t, period) / period;
    sh->unexplained += 40 * MiB * phase; /* garbage builds up, then a collection drops it */
    sh->unexplained += 0.5 * MiB * noise();
}

static void step_then_flat(int64_t t, shape_t *sh, const void *param)
{
    (void)param;
    if (t >= 120)
        sh->unexplained = 750 * MiB; /* a cache filled once: 76% of 1 GiB with the rest */
    sh->unexplained += 1 * MiB * noise();
}

typedef struct {
    double rate;  /* bytes per second */
    double noise; /* amplitude in bytes */
    int64_t start;
} leak_t;

static void leak_unexplained(int64_t t, shape_t *sh, const void *param)
{
    const leak_t *l = param;
    if (t > l->start)
        sh->unexplained += l->rate * (double)(t - l->start);
    sh->unexplained += l->noise * noise();
    sh->sessions = 1204 + 20 * noise();
}

static void leak_per_session(int64_t t, shape_t *sh, const void *param)
{
    const leak_t *l = param;
    /* The session store keeps bytes of every session it ends: bytes per live session grow. */
    sh->per_session += l->rate * (double)t / 1204.0;
    sh->unexplained += 0.5 * MiB * noise();
}

static void sessions_grow(int64_t t, shape_t *sh, const void *param)
{
    (void)param;
    /* Real load: twice the sessions over the window, memory follows them. */
    sh->sessions = 1000 + 1000 * (double)t / WINDOW_S;
    sh->per_session = 16 * KiB;
    sh->req_rate = 400 + 400 * (double)t / WINDOW_S;
    sh->unexplained += 0.5 * MiB * noise();
}

/* ---- healthy shapes ---- */

static void assert_never_fired(const seen_t *seen)
{
    for (int a = 0; a < GH_WATCH__NALERTS; a++)
        if (seen->fired[a])
            fail_msg("%s fired at t=%llds: %s", gh_watch_alert_names[a],
                     (long long)seen->first_fire_t[a], seen->ev[0].summary);
}

static void steady_churn_raises_nothing(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 1;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    run(wd, &seen, 0, 3 * WINDOW_S, churn, NULL, &c);
    assert_never_fired(&seen);
    assert_true(gh_watchdog_eta_seconds(wd) > 2 * 3600);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_int_equal(st.samples, WINDOW_S + 1);
    assert_string_equal(st.growing, "");
    gh_watchdog_destroy(&wd);
}

static void gc_sawtooth_raises_nothing(void **state)
{
    (void)state;
    static const double periods[] = {13, 47, 90, 173, 250};
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++) {
        seen_t seen;
        counters_t c = {0};
        rng_state = 7;
        gh_watchdog_t *wd = make(&seen, 1 * GiB);
        run(wd, &seen, 0, 3 * WINDOW_S, sawtooth, &periods[i], &c);
        if (seen.n)
            fail_msg("period %.0fs: %s fired: %s", periods[i], seen.ev[0].name, seen.ev[0].summary);
        assert_true(gh_watchdog_eta_seconds(wd) > 2 * 3600);
        gh_watchdog_destroy(&wd);
    }
}

static void step_then_flat_is_memory_high_only(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 3;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    run(wd, &seen, 0, 3 * WINDOW_S, step_then_flat, NULL, &c);
    assert_int_equal(seen.fired[GH_WATCH_MEMORY_HIGH], 1);
    assert_int_equal(seen.fired[GH_WATCH_EXHAUSTION_FORECAST], 0);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 0);
    assert_int_equal(seen.n, 1);
    const gh_watch_event_t *ev = &seen.ev[0];
    assert_int_equal(ev->severity, GH_WATCH_WARNING);
    assert_true(ev->firing);
    /* Fired after fire_after (5) evaluations over the threshold, not before. */
    assert_int_equal(seen.first_fire_t[GH_WATCH_MEMORY_HIGH], 120 + 4);
    assert_non_null(strstr(ev->summary, "of the limit 1 GiB (warning at 70%)"));
    assert_non_null(strstr(ev->summary, "largest part: unexplained"));
    assert_false(isfinite(gh_watchdog_eta_seconds(wd)));
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_MEMORY_HIGH), GH_WATCH_WARNING);
    assert_false(gh_watchdog_memory_critical(wd));
    gh_watchdog_destroy(&wd);
}

static void growth_that_sessions_explain_is_not_a_leak(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 5;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    run(wd, &seen, 0, WINDOW_S, sessions_grow, NULL, &c);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 0);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_string_equal(st.growing, "sessions"); /* it grows; it is just not a leak */
    gh_watchdog_destroy(&wd);
}

/* ---- leak shapes ---- */

static const gh_watch_event_t *first_event(const seen_t *seen, gh_watch_alert_t a)
{
    for (int i = 0; i < seen->n && i < 64; i++)
        if (seen->ev[i].alert == a && seen->ev[i].firing)
            return &seen->ev[i];
    fail_msg("%s never fired", gh_watch_alert_names[a]);
    return NULL;
}

static void slow_leak_is_flagged_within_a_window(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 11;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    leak_t l = {.rate = 20 * KiB, .noise = 0.5 * MiB};
    run(wd, &seen, 0, WINDOW_S, leak_unexplained, &l, &c);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
    const gh_watch_event_t *ev = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
    assert_string_equal(ev->component, "unexplained");
    assert_int_equal(ev->severity, GH_WATCH_WARNING);
    assert_true(fabs(ev->slope_bytes_per_s - 20 * KiB) < 4 * KiB);
    assert_int_equal(ev->sessions_active >= 1184 && ev->sessions_active <= 1224, 1);
    assert_true(fabs(ev->request_rate - 410) < 1);
    assert_non_null(strstr(ev->summary, "unexplained memory +"));
    assert_non_null(strstr(ev->summary, " KiB/s for "));
    assert_non_null(strstr(ev->summary, "while sessions are flat at 1,"));
    assert_non_null(strstr(ev->summary, "requests steady at 410/s: not load, not an attack"));
    assert_non_null(strstr(ev->summary, "; limit 1 GiB in "));
    assert_true(isfinite(ev->eta_s));
    /* 20 KiB/s leaves hours: too slow for the forecast alert, which is the point of this one. */
    assert_int_equal(seen.fired[GH_WATCH_EXHAUSTION_FORECAST], 0);
    assert_int_equal(seen.fired[GH_WATCH_MEMORY_HIGH], 0);
    gh_watchdog_destroy(&wd);
}

static void leak_starting_late_is_flagged_within_a_window(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 13;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    leak_t l = {.rate = 40 * KiB, .noise = 1 * MiB, .start = 2 * WINDOW_S};
    run(wd, &seen, 0, 3 * WINDOW_S, leak_unexplained, &l, &c);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
    assert_true(seen.first_fire_t[GH_WATCH_LEAK_SUSPECTED] > l.start);
    assert_true(seen.first_fire_t[GH_WATCH_LEAK_SUSPECTED] < l.start + WINDOW_S);
    gh_watchdog_destroy(&wd);
}

static void fast_leak_is_forecast_early_and_named(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 17;
    gh_watchdog_t *wd = make(&seen, 4 * GiB);
    leak_t l = {.rate = 2 * MiB, .noise = 2 * MiB};
    run(wd, &seen, 0, WINDOW_S, leak_unexplained, &l, &c);

    /* The forecast needs half a window of history, then fire_after evaluations. */
    assert_true(seen.fired[GH_WATCH_EXHAUSTION_FORECAST] >= 1);
    assert_true(seen.first_fire_t[GH_WATCH_EXHAUSTION_FORECAST] <= WINDOW_S / 2 + 10);
    const gh_watch_event_t *fc = first_event(&seen, GH_WATCH_EXHAUSTION_FORECAST);
    assert_string_equal(fc->component, "unexplained");
    /* Truth at that moment: (4 GiB - RSS) / 2 MiB/s. */
    double truth = (4 * GiB - (double)fc->rss_bytes) / (2 * MiB);
    assert_true(fabs(fc->eta_s - truth) < 0.1 * truth);
    assert_non_null(strstr(fc->summary, "grows +2 MiB/s steadily"));
    assert_non_null(strstr(fc->summary, "(fastest: unexplained)"));

    /* The leak itself is named within the window. */
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
    assert_true(seen.first_fire_t[GH_WATCH_LEAK_SUSPECTED] < WINDOW_S);
    const gh_watch_event_t *lk = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
    assert_string_equal(lk->component, "unexplained");
    assert_true(fabs(lk->slope_bytes_per_s - 2 * MiB) < 0.1 * MiB);
    gh_watchdog_destroy(&wd);
}

static void noisy_leak_is_flagged_within_a_window(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 19;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    /* The noise (+-8 MiB) is larger than three minutes of growth. */
    leak_t l = {.rate = 50 * KiB, .noise = 8 * MiB};
    run(wd, &seen, 0, WINDOW_S, leak_unexplained, &l, &c);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
    const gh_watch_event_t *ev = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
    assert_string_equal(ev->component, "unexplained");
    assert_true(fabs(ev->slope_bytes_per_s - 50 * KiB) < 15 * KiB);
    gh_watchdog_destroy(&wd);
}

static void leak_in_an_accounted_component_is_named(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 23;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    leak_t l = {.rate = 30 * KiB};
    run(wd, &seen, 0, WINDOW_S, leak_per_session, &l, &c);
    assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
    const gh_watch_event_t *ev = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
    assert_string_equal(ev->component, "sessions");
    assert_non_null(strstr(ev->summary, "sessions memory +30 KiB/s for "));
    assert_non_null(strstr(ev->summary, "sessions are flat at 1,204"));
    gh_watchdog_destroy(&wd);
}

static void failed_logins_are_reported_as_a_possible_attack(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    rng_state = 29;
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    leak_t l = {.rate = 100 * KiB};
    for (int64_t t = 0; t < WINDOW_S; t++) {
        shape_t sh;
        base(&sh);
        leak_unexplained(t, &sh, &l);
        sh.failed_rate = 120;
        sh.limited_rate = 35;
        gh_watch_sample_t s = sample_at(t, &sh, &c);
        seen.now_t = t;
        gh_watchdog_step(wd, &s);
    }
    const gh_watch_event_t *ev = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
    assert_true(fabs(ev->failed_login_rate - 120) < 1);
    assert_true(fabs(ev->rate_limited_rate - 35) < 1);
    assert_non_null(
        strstr(ev->summary, "failed logins 120/s and rate-limited 35/s: an attack may be"));
    gh_watchdog_destroy(&wd);
}

static void a_long_window_is_thinned_and_still_right(void **state)
{
    (void)state;
    /* A 1 h window at 1 s: each trend looks at 1,024 evenly spaced samples of the 3,601. */
    for (int leaking = 0; leaking < 2; leaking++) {
        seen_t seen;
        counters_t c = {0};
        rng_state = 31;
        memset(&seen, 0, sizeof seen);
        gh_watch_options_t o = {.interval_ms = 1000,
                                .window_ms = 3600 * 1000,
                                .limit_bytes = (uint64_t)(1 * GiB),
                                .wall_clock_ms = fixed_wall_clock,
                                .on_event = on_event,
                                .event_ctx = &seen};
        gh_watchdog_t *wd = NULL;
        assert_int_equal(gh_watchdog_create(&o, &wd), 0);
        leak_t l = {.rate = leaking ? 4 * KiB : 0, .noise = 1 * MiB};
        run(wd, &seen, 0, 3600, leak_unexplained, &l, &c);
        if (leaking) {
            assert_int_equal(seen.fired[GH_WATCH_LEAK_SUSPECTED], 1);
            const gh_watch_event_t *ev = first_event(&seen, GH_WATCH_LEAK_SUSPECTED);
            assert_string_equal(ev->component, "unexplained");
            assert_true(fabs(ev->slope_bytes_per_s - 4 * KiB) < 1 * KiB);
        } else {
            assert_never_fired(&seen);
        }
        gh_watchdog_destroy(&wd);
    }
}

/* ---- forecast ---- */

static void line(int64_t t, shape_t *sh, const void *param)
{
    (void)param;
    sh->unexplained = 150 * MiB + 1 * MiB * (double)t;
}

static void flat(int64_t t, shape_t *sh, const void *param)
{
    (void)t;
    (void)param;
    (void)sh;
}

static void eta_is_within_ten_percent_on_a_clean_line(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    /* Before half a window of history there is no trend, hence no ETA. */
    run(wd, &seen, 0, WINDOW_S / 2 - 1, line, NULL, &c);
    assert_false(isfinite(gh_watchdog_eta_seconds(wd)));
    run(wd, &seen, WINDOW_S / 2 - 1, 400, line, NULL, &c);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    double truth = (1 * GiB - (double)st.rss_bytes) / MiB;
    double eta = gh_watchdog_eta_seconds(wd);
    assert_true(isfinite(eta));
    assert_true(fabs(eta - truth) <= 0.1 * truth);
    assert_true(fabs(st.forecast_slope - MiB) < 0.01 * MiB);
    /* The line's level is where the ETA counts from: on a clean line, RSS now. */
    assert_true(fabs(st.forecast_level - (double)st.rss_bytes) < 0.01 * MiB);
    assert_true(fabs(eta - (1 * GiB - st.forecast_level) / st.forecast_slope) < 1e-6 * eta);
    assert_string_equal(st.growing, "unexplained");
    gh_watchdog_destroy(&wd);
}

/* The ring for charts: everything when it fits, else evenly spaced from the oldest sample to the
 * newest; never more than asked, and the 5xx rate comes from the ring too. */
static void history_copies_the_ring_thinned_to_fit(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    gh_watch_sample_t out[700];
    assert_int_equal(gh_watchdog_history(wd, out, 700), 0); /* nothing sampled yet */
    for (int64_t t = 0; t < 1000; t++) {
        shape_t sh;
        base(&sh);
        sh.unexplained = 100 * MiB + (double)t * KiB;
        gh_watch_sample_t s = sample_at(t, &sh, &c);
        s.server_errors_total = (uint64_t)t * 3; /* 3 per second */
        gh_watchdog_step(wd, &s);
    }
    /* The ring holds the last WINDOW_S + 1 samples: t = 399 .. 999. */
    size_t n = gh_watchdog_history(wd, out, 700);
    assert_int_equal(n, WINDOW_S + 1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i].t_ms, (int64_t)(399 + i) * 1000);
    n = gh_watchdog_history(wd, out, 7);
    assert_int_equal(n, 7);
    assert_int_equal(out[0].t_ms, 399 * 1000);
    assert_int_equal(out[6].t_ms, 999 * 1000);
    for (size_t i = 1; i < n; i++) {
        int64_t gap = out[i].t_ms - out[i - 1].t_ms;
        assert_true(gap >= 99 * 1000 && gap <= 101 * 1000); /* 600 s in six even steps */
        assert_true(out[i].rss_bytes > out[i - 1].rss_bytes);
    }
    n = gh_watchdog_history(wd, out, 1);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].t_ms, 999 * 1000); /* one sample: the newest */
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_true(fabs(st.server_error_rate - 3) < 0.01);
    gh_watchdog_destroy(&wd);
}

static void eta_is_infinite_when_flat_or_falling(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    run(wd, &seen, 0, WINDOW_S, flat, NULL, &c);
    assert_false(isfinite(gh_watchdog_eta_seconds(wd)));
    assert_true(gh_watchdog_eta_seconds(wd) > 0);
    gh_watchdog_destroy(&wd);

    wd = make(&seen, 1 * GiB);
    for (int64_t t = 0; t < WINDOW_S; t++) {
        shape_t sh;
        base(&sh);
        sh.unexplained = 600 * MiB - 0.5 * MiB * (double)t;
        gh_watch_sample_t s = sample_at(t, &sh, &c);
        gh_watchdog_step(wd, &s);
    }
    assert_false(isfinite(gh_watchdog_eta_seconds(wd)));
    assert_int_equal(seen.n, 0);
    gh_watchdog_destroy(&wd);
}

/* ---- hysteresis ---- */

static void feed_rss(gh_watchdog_t *wd, seen_t *seen, int64_t *t, double rss, int times)
{
    for (int i = 0; i < times; i++, (*t)++) {
        gh_watch_sample_t s;
        memset(&s, 0, sizeof s);
        s.t_ms = *t * 1000;
        s.rss_bytes = (uint64_t)rss;
        seen->now_t = *t;
        gh_watchdog_step(wd, &s);
    }
}

/* A local database that cannot write (a full disk) raises store_writes_failing at critical
 * after fire_after samples and resolves after resolve_after clear ones; it is not a memory alert:
 * /readyz's memory_critical stays false. */
static void store_writes_failing_fires_and_resolves(void **state)
{
    (void)state;
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    gh_watch_options_t o = {.interval_ms = 1000,
                            .window_ms = 60000,
                            .limit_bytes = 1000 * 1000,
                            .fire_after = 3,
                            .resolve_after = 4,
                            .wall_clock_ms = fixed_wall_clock,
                            .on_event = on_event,
                            .event_ctx = &seen};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    int64_t t = 0;
    uint64_t failures = 0;
    for (int i = 0; i < 12; i++, t++) {
        gh_watch_sample_t s;
        memset(&s, 0, sizeof s);
        s.t_ms = t * 1000;
        s.rss_bytes = 100 * 1000;
        s.stores_not_writable = i >= 2 && i < 6; /* failing for 4 samples */
        failures += s.stores_not_writable ? 5 : 0;
        s.store_write_failures_total = failures;
        seen.now_t = t;
        gh_watchdog_step(wd, &s);
        if (i == 3)
            assert_int_equal(seen.n, 0); /* two failing samples: not yet */
        if (i == 4) {
            assert_int_equal(seen.n, 1);
            assert_int_equal(seen.ev[0].alert, GH_WATCH_STORE_WRITES_FAILING);
            assert_string_equal(seen.ev[0].name, "store_writes_failing");
            assert_int_equal(seen.ev[0].severity, GH_WATCH_CRITICAL);
            assert_true(seen.ev[0].firing);
            assert_non_null(strstr(seen.ev[0].summary, "1 local database cannot be written"));
            assert_non_null(strstr(seen.ev[0].summary, "15 failed writes"));
            assert_false(gh_watchdog_memory_critical(wd));
        }
        if (i == 8)
            assert_int_equal(seen.n, 1); /* three clear: still firing */
    }
    assert_int_equal(seen.n, 2);
    assert_false(seen.ev[1].firing);
    assert_int_equal(seen.ev[1].previous, GH_WATCH_CRITICAL);
    assert_non_null(strstr(seen.ev[1].summary, "resolved: the local databases take writes"));
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_STORE_WRITES_FAILING), GH_WATCH_OK);
    gh_watchdog_destroy(&wd);
}

/* Audit events dropped by a full audit queue raise audit_events_dropped (a warning, not about
 * memory) while drops are in the last minute, and resolve once the minute is clear. */
static void audit_events_dropped_fires_and_resolves(void **state)
{
    (void)state;
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    gh_watch_options_t o = {.interval_ms = 1000,
                            .window_ms = 120000,
                            .limit_bytes = 1000 * 1000,
                            .fire_after = 2,
                            .resolve_after = 2,
                            .wall_clock_ms = fixed_wall_clock,
                            .on_event = on_event,
                            .event_ctx = &seen};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    uint64_t dropped = 0;
    for (int64_t t = 0; t < 90; t++) {
        gh_watch_sample_t s;
        memset(&s, 0, sizeof s);
        s.t_ms = t * 1000;
        s.rss_bytes = 100 * 1000;
        dropped += t >= 5 && t < 9 ? 50 : 0; /* a flood overflows the queue for 4 s */
        s.audit_dropped_total = dropped;
        seen.now_t = t;
        gh_watchdog_step(wd, &s);
        if (t == 4)
            assert_int_equal(seen.n, 0);
        if (t == 6) {
            assert_int_equal(seen.n, 1);
            assert_int_equal(seen.ev[0].alert, GH_WATCH_AUDIT_EVENTS_DROPPED);
            assert_string_equal(seen.ev[0].name, "audit_events_dropped");
            assert_int_equal(seen.ev[0].severity, GH_WATCH_WARNING);
            assert_true(seen.ev[0].firing);
            assert_non_null(strstr(seen.ev[0].summary, "audit events/s dropped"));
            assert_false(gh_watchdog_memory_critical(wd));
        }
        if (t == 40)
            assert_int_equal(seen.n, 1); /* drops within the last minute: still firing */
    }
    assert_int_equal(seen.n, 2);
    assert_false(seen.ev[1].firing);
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_AUDIT_EVENTS_DROPPED), GH_WATCH_OK);
    gh_watchdog_destroy(&wd);
}

static void alerts_fire_and_resolve_with_hysteresis(void **state)
{
    (void)state;
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    gh_watch_options_t o = {.interval_ms = 1000,
                            .window_ms = 60000,
                            .limit_bytes = 1000 * 1000,
                            .fire_after = 3,
                            .resolve_after = 4,
                            .wall_clock_ms = fixed_wall_clock,
                            .on_event = on_event,
                            .event_ctx = &seen};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    int64_t t = 0;
    double low = 500e3, warn = 750e3, crit = 900e3;

    feed_rss(wd, &seen, &t, warn, 2);
    feed_rss(wd, &seen, &t, low, 1);
    feed_rss(wd, &seen, &t, warn, 2);
    assert_int_equal(seen.n, 0); /* never 3 in a row */
    feed_rss(wd, &seen, &t, warn, 1);
    assert_int_equal(seen.n, 1); /* the third in a row fires */
    assert_true(seen.ev[0].firing);
    assert_int_equal(seen.ev[0].severity, GH_WATCH_WARNING);
    assert_int_equal(seen.ev[0].previous, GH_WATCH_OK);
    assert_int_equal(seen.ev[0].at_ms, fixed_wall_clock());
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_MEMORY_HIGH), GH_WATCH_WARNING);

    feed_rss(wd, &seen, &t, low, 3);
    feed_rss(wd, &seen, &t, warn, 1);
    feed_rss(wd, &seen, &t, low, 3);
    assert_int_equal(seen.n, 1); /* never 4 clear in a row: still firing */
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_MEMORY_HIGH), GH_WATCH_WARNING);

    feed_rss(wd, &seen, &t, crit, 2);
    assert_false(gh_watchdog_memory_critical(wd));
    feed_rss(wd, &seen, &t, crit, 1); /* escalates after 3 */
    assert_int_equal(seen.n, 2);
    assert_true(seen.ev[1].firing);
    assert_int_equal(seen.ev[1].severity, GH_WATCH_CRITICAL);
    assert_int_equal(seen.ev[1].previous, GH_WATCH_WARNING);
    assert_true(gh_watchdog_memory_critical(wd));
    assert_non_null(strstr(seen.ev[1].summary, "is 90% of the limit"));
    assert_non_null(strstr(seen.ev[1].summary, "(critical at 85%)"));

    double values[GH_WATCH__NALERTS * 2];
    assert_int_equal(gh_watchdog_collect_firing(wd, values, GH_WATCH__NALERTS * 2), 0);
    assert_true(values[GH_WATCH_MEMORY_HIGH * 2 + 0] == 0); /* warning */
    assert_true(values[GH_WATCH_MEMORY_HIGH * 2 + 1] == 1); /* critical */
    for (int a = 1; a < GH_WATCH__NALERTS; a++)
        assert_true(values[a * 2] == 0 && values[a * 2 + 1] == 0);

    feed_rss(wd, &seen, &t, low, 3);
    assert_int_equal(seen.n, 2);
    feed_rss(wd, &seen, &t, low, 1); /* 4 clear: resolves straight to ok */
    assert_int_equal(seen.n, 3);
    assert_false(seen.ev[2].firing);
    assert_int_equal(seen.ev[2].severity, GH_WATCH_OK);
    assert_int_equal(seen.ev[2].previous, GH_WATCH_CRITICAL);
    assert_non_null(strstr(seen.ev[2].summary, "resolved: RSS 488 KiB is 50% of the limit"));
    assert_false(gh_watchdog_memory_critical(wd));
    assert_int_equal(gh_watchdog_severity(wd, GH_WATCH_MEMORY_HIGH), GH_WATCH_OK);

    /* A sample from the past is ignored. */
    gh_watch_sample_t old = {.t_ms = 0, .rss_bytes = (uint64_t)crit};
    for (int i = 0; i < 10; i++)
        gh_watchdog_step(wd, &old);
    assert_int_equal(seen.n, 3);
    gh_watchdog_destroy(&wd);
}

/* ---- sinks ---- */

static void sinks_get_a_log_line_an_event_and_a_service_check(void **state)
{
    (void)state;
    int agent = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(agent >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(agent, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t slen = sizeof sin;
    assert_int_equal(getsockname(agent, (struct sockaddr *)&sin, &slen), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    int logpipe[2];
    assert_int_equal(pipe(logpipe), 0);
    gh_log_setup(GH_LOG_JSON, GH_LOG_INFO);
    gh_log_set_fd(logpipe[1]);

    gh_watch_options_t o = {.interval_ms = 1000,
                            .window_ms = 60000,
                            .limit_bytes = 1000 * 1000,
                            .fire_after = 1,
                            .resolve_after = 1,
                            .statsd = addr,
                            .statsd_period_ms = 3600000};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    gh_watch_sample_t s = {.t_ms = 0, .rss_bytes = 900000};
    gh_watchdog_step(wd, &s);
    gh_log_set_fd(2);
    gh_log_setup(GH_LOG_JSON, GH_LOG_ERROR + 1);

    /* The log line. */
    char logbuf[4096];
    ssize_t n = read(logpipe[0], logbuf, sizeof logbuf - 1);
    assert_true(n > 0);
    logbuf[n] = '\0';
    assert_non_null(strstr(logbuf,
                           "\"level\":\"error\",\"msg\":\"alert\",\"alert\":\"memory_high\","
                           "\"state\":\"firing\",\"severity\":\"critical\""));
    assert_non_null(strstr(logbuf, "\"summary\":\"RSS 879 KiB is 90% of the limit 977 KiB"));

    /* Datagrams: the event, its service check, then the periodic gauges and service check. */
    bool saw_event = false, saw_check = false, saw_rss = false, saw_firing = false;
    char d[GH_STATSD_MAX_DATAGRAM + 1];
    struct pollfd p = {.fd = agent, .events = POLLIN};
    while (poll(&p, 1, 1000) == 1) {
        ssize_t k = recv(agent, d, sizeof d - 1, 0);
        assert_true(k > 0);
        d[k] = '\0';
        if (strncmp(d, "_e{", 3) == 0) {
            assert_non_null(strstr(d, ":gatehouse memory_high critical|RSS 879 KiB is 90%"));
            assert_non_null(
                strstr(d, "|t:error|#service:gatehouse,alert:memory_high,severity:critical"));
            saw_event = true;
        }
        static const char check[] = "_sc|gatehouse.memory|2|#service:gatehouse|m:RSS 879 KiB";
        if (strncmp(d, check, sizeof check - 1) == 0)
            saw_check = true;
        if (strcmp(d, "gatehouse.memory.rss_bytes:900000|g|#service:gatehouse") == 0)
            saw_rss = true;
        if (strcmp(d, "gatehouse.alert.firing:2|g|#service:gatehouse,alert:memory_high") == 0)
            saw_firing = true;
    }
    assert_true(saw_event && saw_check && saw_rss && saw_firing);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_true(st.statsd_sent > 10);
    assert_int_equal(st.events, 1);
    gh_watchdog_destroy(&wd);
    close(agent);
    close(logpipe[0]);
    close(logpipe[1]);
}

/* ---- read-outs ---- */

static void status_json_shows_the_forecast_and_alerts(void **state)
{
    (void)state;
    seen_t seen;
    counters_t c = {0};
    gh_watchdog_t *wd = make(&seen, 1 * GiB);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    json_t *j = gh_watch_status_json(&st);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "eta_seconds")));
    assert_string_equal(json_string_value(json_object_get(j, "summary")), "no sample yet");
    json_decref(j);

    run(wd, &seen, 0, 320, line, NULL, &c);
    gh_watchdog_status(wd, &st);
    j = gh_watch_status_json(&st);
    assert_non_null(j);
    assert_true(json_is_real(json_object_get(j, "eta_seconds")));
    assert_string_equal(json_string_value(json_object_get(j, "growing_component")), "unexplained");
    assert_int_equal(json_integer_value(json_object_get(j, "samples")), 320);
    json_t *alerts = json_object_get(j, "alerts");
    assert_int_equal(json_array_size(alerts), GH_WATCH__NALERTS);
    json_t *fc = json_array_get(alerts, GH_WATCH_EXHAUSTION_FORECAST);
    assert_string_equal(json_string_value(json_object_get(fc, "alert")),
                        "memory_exhaustion_forecast");
    assert_true(json_is_true(json_object_get(fc, "firing")));
    assert_non_null(json_object_get(json_object_get(j, "components"), "sessions"));
    const char *summary = json_string_value(json_object_get(j, "summary"));
    assert_non_null(strstr(summary, "growing +1 MiB/s (fastest: unexplained +1 MiB/s)"));
    json_decref(j);

    double eta = 0;
    assert_int_equal(gh_watchdog_collect_eta(wd, &eta, 1), 0);
    assert_true(isfinite(eta) && eta > 0);
    gh_watchdog_destroy(&wd);
}

static void formats_read_well(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(gh_watch_fmt_bytes(1 * GiB, b, sizeof b), "1 GiB");
    assert_string_equal(gh_watch_fmt_bytes(870 * MiB, b, sizeof b), "870 MiB");
    assert_string_equal(gh_watch_fmt_bytes(2.9 * MiB, b, sizeof b), "2.9 MiB");
    assert_string_equal(gh_watch_fmt_bytes(512, b, sizeof b), "512 B");
    assert_string_equal(gh_watch_fmt_bytes(-3 * MiB, b, sizeof b), "-3 MiB");
    assert_string_equal(gh_watch_fmt_duration(45, b, sizeof b), "45s");
    assert_string_equal(gh_watch_fmt_duration(312, b, sizeof b), "5m12s");
    assert_string_equal(gh_watch_fmt_duration(7500, b, sizeof b), "2h05m");
    assert_string_equal(gh_watch_fmt_duration(3 * 86400 + 4 * 3600, b, sizeof b), "3d4h");
    assert_string_equal(gh_watch_fmt_duration(INFINITY, b, sizeof b), "never");
}

/* ---- thread mode and life cycle ---- */

typedef struct {
    pthread_mutex_t lock;
    int calls;
} counting_t;

static int counting_sampler(void *ctx, gh_watch_sample_t *out)
{
    counting_t *c = ctx;
    pthread_mutex_lock(&c->lock);
    int n = c->calls++;
    pthread_mutex_unlock(&c->lock);
    memset(out, 0, sizeof *out);
    out->t_ms = n * 1000;
    out->rss_bytes = 1000;
    return n % 2 ? GH_EIO : 0; /* every other figure is "unknown": skipped */
}

static void the_thread_samples_and_stops_promptly(void **state)
{
    (void)state;
    counting_t c = {.calls = 0};
    pthread_mutex_init(&c.lock, NULL);
    gh_watch_options_t o = {.interval_ms = 2,
                            .window_ms = 100,
                            .limit_bytes = 1 << 20,
                            .sampler = counting_sampler,
                            .sampler_ctx = &c};
    gh_watchdog_t *wd = NULL;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    assert_int_equal(gh_watchdog_start(wd), 0);
    assert_int_equal(gh_watchdog_start(wd), GH_EINVAL);
    for (int i = 0; i < 10000; i++) { /* waits for 20 calls, at most 10 s */
        pthread_mutex_lock(&c.lock);
        int calls = c.calls;
        pthread_mutex_unlock(&c.lock);
        if (calls >= 20)
            break;
        usleep(1000);
    }
    gh_watchdog_stop(wd);
    gh_watchdog_stop(wd); /* a second stop is a no-op */
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_true(c.calls >= 20);
    assert_int_equal(st.samples, (size_t)(c.calls + 1) / 2); /* the failed ones were skipped */
    gh_watchdog_destroy(&wd);

    /* With an hour between samples, stop still returns at once. */
    o.interval_ms = 3600000;
    o.window_ms = 8 * 3600000;
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    assert_int_equal(gh_watchdog_start(wd), 0);
    gh_watchdog_destroy(&wd); /* stops the thread itself */
    assert_null(wd);
    pthread_mutex_destroy(&c.lock);
}

static void bad_options_are_refused_and_memory_comes_back(void **state)
{
    (void)state;
    size_t before = gh_mem_bytes(GH_MEM_METRICS);
    gh_watchdog_t *wd = NULL;
    gh_watch_options_t o = {.interval_ms = 1000, .window_ms = 5000, .limit_bytes = 1};
    assert_int_equal(gh_watchdog_create(&o, &wd), GH_EINVAL); /* fewer than 8 samples */
    o = (gh_watch_options_t){.interval_ms = 1, .window_ms = 3600000, .limit_bytes = 1};
    assert_int_equal(gh_watchdog_create(&o, &wd), GH_EINVAL); /* over GH_WATCH_MAX_SAMPLES */
    o = (gh_watch_options_t){.warn_ratio = 0.9, .critical_ratio = 0.8, .limit_bytes = 1};
    assert_int_equal(gh_watchdog_create(&o, &wd), GH_EINVAL);
    o = (gh_watch_options_t){.limit_bytes = 1, .statsd = "no-port"};
    assert_int_equal(gh_watchdog_create(&o, &wd), GH_EINVAL);
    o = (gh_watch_options_t){.limit_bytes = 1, .webhook_url = "gopher://x"};
    assert_int_equal(gh_watchdog_create(&o, &wd), GH_EINVAL);
    assert_null(wd);
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), before);

    /* Defaults: a 10 min window at 1 s, a limit found by itself. */
    o = (gh_watch_options_t){0};
    assert_int_equal(gh_watchdog_create(&o, &wd), 0);
    gh_watch_status_t st;
    gh_watchdog_status(wd, &st);
    assert_int_equal(st.capacity, 601);
    assert_true(st.limit_bytes > 0);
    assert_true(st.warn_ratio == 0.70 && st.critical_ratio == 0.85);
    assert_int_equal(st.horizon_ms, 2 * 3600 * 1000);
    /* The real sampler reads this process. */
    assert_int_equal(gh_watchdog_tick(wd), 0);
    gh_watchdog_status(wd, &st);
    assert_int_equal(st.samples, 1);
    assert_true(st.rss_bytes > 0);
    assert_true(st.component_bytes[GH_MEM_METRICS] > 0); /* the ring itself */
    assert_true(gh_mem_bytes(GH_MEM_METRICS) > before);
    gh_watchdog_destroy(&wd);
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), before);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(steady_churn_raises_nothing),
        cmocka_unit_test(gc_sawtooth_raises_nothing),
        cmocka_unit_test(step_then_flat_is_memory_high_only),
        cmocka_unit_test(growth_that_sessions_explain_is_not_a_leak),
        cmocka_unit_test(slow_leak_is_flagged_within_a_window),
        cmocka_unit_test(leak_starting_late_is_flagged_within_a_window),
        cmocka_unit_test(fast_leak_is_forecast_early_and_named),
        cmocka_unit_test(noisy_leak_is_flagged_within_a_window),
        cmocka_unit_test(leak_in_an_accounted_component_is_named),
        cmocka_unit_test(failed_logins_are_reported_as_a_possible_attack),
        cmocka_unit_test(a_long_window_is_thinned_and_still_right),
        cmocka_unit_test(eta_is_within_ten_percent_on_a_clean_line),
        cmocka_unit_test(eta_is_infinite_when_flat_or_falling),
        cmocka_unit_test(history_copies_the_ring_thinned_to_fit),
        cmocka_unit_test(alerts_fire_and_resolve_with_hysteresis),
        cmocka_unit_test(sinks_get_a_log_line_an_event_and_a_service_check),
        cmocka_unit_test(status_json_shows_the_forecast_and_alerts),
        cmocka_unit_test(store_writes_failing_fires_and_resolves),
        cmocka_unit_test(audit_events_dropped_fires_and_resolves),
        cmocka_unit_test(formats_read_well),
        cmocka_unit_test(the_thread_samples_and_stops_promptly),
        cmocka_unit_test(bad_options_are_refused_and_memory_comes_back),
    };
    gh_mem_init();
    gh_log_setup(GH_LOG_JSON, GH_LOG_ERROR + 1); /* alert lines would drown the report */
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
