/*
 * bench_metrics.c — what metrics cost a request: one counter increment and one histogram
 * observation on the request path (the two updates every request makes), on one and two
 * threads, and one full render of a registry shaped like the service's. Prints one figure per
 * line; exits non-zero only when it cannot run.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/clock.h"
#include "watch/metrics.h"

#define OPS 20000000

static gh_metric_t *counter, *histogram;

static void *hammer(void *arg)
{
    size_t series = (size_t)arg;
    for (long i = 0; i < OPS; i++) {
        gh_metric_inc(counter, (series + (size_t)i) % 64);
        gh_metric_observe_ns(histogram, series % 16, 250000 + (i & 1023) * 1000);
    }
    return NULL;
}

int main(void)
{
    gh_metrics_t *m = NULL;
    static const char *const routes[] = {"r0", "r1", "r2",  "r3",  "r4",  "r5",  "r6",  "r7",
                                         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
    static const char *const codes[] = {"200", "201", "204", "400"};
    gh_metric_label_t req[] = {{"route", routes, 16}, {"code", codes, 4}};
    gh_metric_desc_t c = {.name = "bench_requests_total",
                          .help = "requests",
                          .type = GH_METRIC_COUNTER,
                          .labels = req,
                          .nlabels = 2};
    gh_metric_desc_t h = {.name = "bench_request_duration_seconds",
                          .help = "durations",
                          .type = GH_METRIC_HISTOGRAM,
                          .labels = req,
                          .nlabels = 1,
                          .buckets = gh_metric_latency_buckets,
                          .nbuckets = gh_metric_latency_nbuckets};
    if (gh_metrics_create(&m) != 0 || gh_metrics_add(m, &c, &counter) != 0 ||
        gh_metrics_add(m, &h, &histogram) != 0 || gh_metrics_add_process(m) != 0) {
        fprintf(stderr, "bench_metrics: cannot build the registry\n");
        return 1;
    }
    int64_t t0 = gh_clock_mono_ns();
    hammer((void *)0);
    int64_t one = gh_clock_mono_ns() - t0;
    printf("request_metrics_ns_per_request_1thread %.1f\n", (double)one / OPS);

    pthread_t th[2];
    t0 = gh_clock_mono_ns();
    for (long i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, hammer, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int64_t two = gh_clock_mono_ns() - t0;
    printf("request_metrics_ns_per_request_2threads %.1f\n", (double)two / OPS);

    char *text = NULL;
    size_t len = 0;
    t0 = gh_clock_mono_ns();
    int rounds = 200;
    for (int i = 0; i < rounds; i++) {
        if (gh_metrics_render(m, GH_METRICS_RENDER_MAX, &text, &len) != 0)
            return 1;
        gh_metrics_text_free(&text);
    }
    printf("render_us %.1f\n", (double)(gh_clock_mono_ns() - t0) / rounds / 1000.0);
    printf("render_bytes %zu\n", len);
    gh_metrics_destroy(&m);
    return 0;
}
