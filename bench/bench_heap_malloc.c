/*
 * bench_heap_malloc.c — the sampling heap profiler's cost per allocation, linked with the
 * interposer as the gatehouse binary is (src/mem/heap_malloc.c): malloc + free pairs of a mix of
 * sizes (16 B to 4 KiB, a working set of 4096 blocks) with the profiler off, on at the default
 * interval, and on at 64 KiB, in interleaved rounds; CPU time of this thread per pair (so other
 * work on the machine takes wall time, not the figure), median of the rounds.
 * Part of `make bench-heap`; docs/BENCHMARKS.md, "Heap profiler overhead".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mem/heap.h"

#define PAIRS 5000000
#define ROUNDS 5
#define SLOTS 4096

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *slot[SLOTS];

static double run(void)
{
    uint64_t r = 88172645463325252ull;
    double t0 = cpu_ns();
    for (int i = 0; i < PAIRS; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t k = r % SLOTS;
        free(slot[k]);
        slot[k] = malloc(16 + (r >> 20) % 4096);
        if (!slot[k])
            abort();
    }
    return (cpu_ns() - t0) / PAIRS;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    if (!gh_heap_configure(true, 0)) {
        printf("bench-heap-malloc: the profiler cannot run here (%s)\n", gh_heap_state());
        return 0;
    }
    static const struct {
        const char *name;
        bool on;
        uint64_t interval;
    } modes[] = {{"off", false, 0}, {"on, 512 KiB", true, 512 * 1024}, {"on, 64 KiB", true, 65536}};
    double ns[3][ROUNDS];
    run(); /* warm: the working set, the arenas */
    for (int round = 0; round < ROUNDS; round++)
        for (int m = 0; m < 3; m++) {
            gh_heap_configure(modes[m].on, modes[m].interval);
            ns[m][round] = run();
        }
    double off = 0;
    for (int m = 0; m < 3; m++) {
        qsort(ns[m], ROUNDS, sizeof ns[m][0], cmp);
        double med = ns[m][ROUNDS / 2];
        if (m == 0)
            off = med;
        printf("heap-profile malloc+free pair, profiler %-12s %6.1f ns (CPU, median of %d x %d)"
               "%s",
               modes[m].name, med, ROUNDS, PAIRS, m ? "" : "\n");
        if (m)
            printf("  +%.1f ns, %.1f%%\n", med - off, 100 * (med - off) / off);
    }
    gh_heap_stats_t st;
    gh_heap_stats(&st);
    printf("heap-profile tables: %.2f MiB fixed (%llu stacks, %llu samples live)\n",
           (double)st.table_bytes / 1048576, (unsigned long long)st.stacks,
           (unsigned long long)st.samples_live);
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    return 0;
}
