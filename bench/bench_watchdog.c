/*
 * bench_watchdog.c — what the memory watchdog costs: one evaluation (gh_watchdog_step) over a
 * full ring of the default 10 min window at 1 s, and over a 1 h ring; one real sample
 * (gh_watch_sample_process: /proc/self/statm, mallinfo2, the component counters); and so the
 * CPU share of the watchdog thread at the default one sample per second.
 *
 * The one decision: evaluations are timed on a ring that is already full, with a slow leak in
 * the series, so every trend scale and the steadiness tests run — the worst case of a quiet
 * node, not the cheap start-up path. Rings longer than 1,024 samples are thinned to 1,024 points
 * per trend, so the 1 h figure is also the cost for any longer window. Prints one "name value"
 * figure per line.
 * Usage: bench_watchdog
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "mem/mem.h"
#include "watch/watchdog.h"

#define MiB (1024.0 * 1024.0)

/* CPU time of this thread: the machine is shared, and wall time would count other work. */
static int64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rng = 1;
static double noise(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng >> 11) / (double)(1ULL << 52) - 1.0;
}

static gh_watch_sample_t synthetic(int64_t t)
{
    gh_watch_sample_t s;
    memset(&s, 0, sizeof s);
    s.t_ms = t * 1000;
    s.component_bytes[GH_MEM_SESSIONS] = (uint64_t)(2.4 * MiB + 0.1 * MiB * noise());
    s.component_bytes[GH_MEM_SQLITE] = (uint64_t)(8 * MiB);
    s.rss_bytes = (uint64_t)(160 * MiB + 20e3 * (double)t + 2 * MiB * noise());
    s.sessions_active = 1204;
    s.requests_total = (uint64_t)(410 * t);
    return s;
}

/* Mean nanoseconds per evaluation over a full ring of `window_s` one-second samples. */
static double step_ns(int64_t window_s, int rounds)
{
    gh_watch_options_t o = {
        .interval_ms = 1000, .window_ms = window_s * 1000, .limit_bytes = (uint64_t)(1024 * MiB)};
    gh_watchdog_t *wd = NULL;
    if (gh_watchdog_create(&o, &wd) != 0) {
        fprintf(stderr, "bench_watchdog: cannot create a watchdog\n");
        exit(1);
    }
    int64_t t = 0;
    for (; t <= window_s; t++) { /* fill the ring */
        gh_watch_sample_t s = synthetic(t);
        gh_watchdog_step(wd, &s);
    }
    int64_t t0 = cpu_ns();
    for (int i = 0; i < rounds; i++, t++) {
        gh_watch_sample_t s = synthetic(t);
        gh_watchdog_step(wd, &s);
    }
    double ns = (double)(cpu_ns() - t0) / rounds;
    gh_watchdog_destroy(&wd);
    return ns;
}

int main(void)
{
    gh_mem_init();
    gh_log_setup(GH_LOG_JSON, GH_LOG_ERROR + 1); /* the leak's alerts are not the point here */

    double step_600 = step_ns(600, 2000);
    printf("watchdog_step_us_window_10m_1s %.1f\n", step_600 / 1000);
    printf("watchdog_step_us_window_1h_1s %.1f\n", step_ns(3600, 300) / 1000);

    gh_watch_sample_t s;
    int rounds = 2000;
    int64_t t0 = cpu_ns();
    for (int i = 0; i < rounds; i++)
        if (gh_watch_sample_process(NULL, NULL, &s) != 0) {
            fprintf(stderr, "bench_watchdog: /proc/self/statm unreadable\n");
            return 1;
        }
    double sample_ns = (double)(cpu_ns() - t0) / rounds;
    printf("watchdog_sample_us %.1f\n", sample_ns / 1000);
    /* At the default one sample per second, the watchdog thread's share of one core. */
    printf("watchdog_cpu_percent_at_1s %.4f\n", (step_600 + sample_ns) / 1e9 * 100);
    return 0;
}
