/*
 * test_heap_profile.c — the sampling heap profiler with its interposer linked in, as in the
 * gatehouse binary (the Makefile links src/mem/heap_malloc.c into this test only): the estimate
 * of live bytes agrees with mallinfo2's in-use figure within 10% over millions of allocations,
 * a leaking function is named with its bytes, threads allocating and freeing at once leave
 * nothing behind, fork children (also while other threads allocate) work, and under ASan or
 * valgrind the interposer is off and says why.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/heap.h"

static bool usable(void)
{
    const char *why = gh_heap_state();
    if (strcmp(why, "AddressSanitizer owns malloc") == 0 ||
        strcmp(why, "ThreadSanitizer owns malloc") == 0 ||
        strcmp(why, "valgrind owns malloc") == 0) {
        /* the interposer stands aside cleanly: it cannot be turned on, and malloc works */
        assert_false(gh_heap_configure(true, 4096));
        assert_false(gh_heap_active());
        void *p = malloc(100);
        assert_non_null(p);
        free(p);
        return false;
    }
    return true;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define SLOTS 32768

static void estimate_agrees_with_mallinfo2(void **state)
{
    (void)state;
    if (!usable())
        skip();
    assert_true(gh_heap_configure(true, 32 * 1024));
    assert_string_equal(gh_heap_state(), "on");
    gh_heap_stats_t s0, s1;
    gh_heap_stats(&s0);
    struct mallinfo2 m0 = mallinfo2();
    static void *slot[SLOTS];
    /* a steady working set of SLOTS blocks of 16..4111 bytes (about 64 MiB), churned 3 million
     * times: every allocation replaces a random block */
    for (int i = 0; i < SLOTS; i++) {
        slot[i] = malloc(16 + next() % 4096);
        assert_non_null(slot[i]);
    }
    for (int i = 0; i < 3000000; i++) {
        size_t k = next() % SLOTS;
        free(slot[k]);
        slot[k] = (i & 7) == 0 ? calloc(1, 16 + next() % 4096) : malloc(16 + next() % 4096);
        assert_non_null(slot[k]);
    }
    struct mallinfo2 m1 = mallinfo2();
    gh_heap_stats(&s1);
    double real = (double)(m1.uordblks + m1.hblkhd) - (double)(m0.uordblks + m0.hblkhd);
    double est = s1.live_bytes - s0.live_bytes;
    print_message("mallinfo2 in use +%.0f bytes, estimate +%.0f (%+.1f%%), %llu samples live\n",
                  real, est, 100 * (est - real) / real, (unsigned long long)s1.samples_live);
    assert_true(est > 0.9 * real && est < 1.1 * real);
    for (int i = 0; i < SLOTS; i++)
        free(slot[i]);
    gh_heap_stats(&s1);
    assert_true(s1.live_bytes - s0.live_bytes < 0.02 * real);
    assert_true(s1.samples_total > s0.samples_total + 1000);
}

#define LEAKS 1024
static void *leaked[LEAKS];

__attribute__((noinline)) void heap_test_leaker(int i)
{
    leaked[i] = malloc(64 * 1024);
    __asm__ volatile("" ::: "memory");
}

static void a_leaking_function_is_named(void **state)
{
    (void)state;
    if (!usable())
        skip();
    assert_true(gh_heap_configure(true, 512 * 1024));
    for (int i = 0; i < LEAKS; i++)
        heap_test_leaker(i);
    static double live[GH_HEAP_MAX_STACKS];
    size_t n = gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS);
    double found = 0;
    char line[1024], collapsed[2048];
    for (uint32_t id = 1; id < n; id++) {
        gh_heap_stack_headline(id, 3, line, sizeof line);
        if (strncmp(line, "heap_test_leaker (", 18) == 0) {
            found += live[id];
            gh_heap_stack_collapsed(id, collapsed, sizeof collapsed);
            assert_non_null(strstr(collapsed, ";heap_test_leaker"));
            assert_non_null(strstr(collapsed, "a_leaking_function_is_named"));
            /* this file is built with -g: the leaking frame carries its source line */
            assert_non_null(strstr(line, "heap_test_leaker (test_heap_profile.c:"));
            assert_non_null(strstr(collapsed, ";heap_test_leaker (test_heap_profile.c:"));
        }
    }
    print_message("heap_test_leaker: estimate %.1f MiB of 64 MiB\n", found / 1048576);
    /* 64 MiB in 64 KiB blocks at 512 KiB: about 135 samples, so within 30% */
    assert_true(found > 0.7 * 64 * 1048576 && found < 1.3 * 64 * 1048576);
    for (int i = 0; i < LEAKS; i++)
        free(leaked[i]);
    n = gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS);
    for (uint32_t id = 1; id < n; id++) {
        gh_heap_stack_headline(id, 3, line, sizeof line);
        if (strncmp(line, "heap_test_leaker", 16) == 0)
            assert_true(live[id] == 0);
    }
}

static void *churn_main(void *arg)
{
    uint64_t r = (uint64_t)(uintptr_t)arg * 2654435761u + 1;
    void *keep[256] = {0};
    for (int i = 0; i < 400000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        size_t k = r % 256;
        free(keep[k]);
        switch (i % 4) {
        case 0:
            keep[k] = malloc(r % 8192 + 1);
            break;
        case 1:
            keep[k] = calloc(1, r % 4096 + 1);
            break;
        case 2:
            keep[k] = realloc(malloc(64), r % 16384 + 1);
            break;
        default:
            if (posix_memalign(&keep[k], 64, r % 4096 + 1) != 0)
                keep[k] = NULL;
        }
        if (!keep[k])
            return (void *)1;
    }
    for (int k = 0; k < 256; k++)
        free(keep[k]);
    return NULL;
}

static void threads_allocating_and_freeing_leave_nothing(void **state)
{
    (void)state;
    if (!usable())
        skip();
    assert_true(gh_heap_configure(true, 4096)); /* many samples: the tables work hard */
    gh_heap_stats_t s0, s1;
    gh_heap_stats(&s0);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_main, (void *)(i + 1)), 0);
    for (int i = 0; i < 4; i++) {
        void *rv = (void *)2;
        assert_int_equal(pthread_join(t[i], &rv), 0);
        assert_null(rv);
    }
    gh_heap_stats(&s1);
    print_message("%llu samples taken, %llu live before, %llu after, %llu dropped\n",
                  (unsigned long long)(s1.samples_total - s0.samples_total),
                  (unsigned long long)s0.samples_live, (unsigned long long)s1.samples_live,
                  (unsigned long long)s1.samples_dropped);
    assert_true(s1.samples_total - s0.samples_total > 10000);
    /* everything the threads allocated is freed: their samples are forgotten (a thread's own
     * stack and TLS blocks stay with glibc's thread cache, so allow a few) */
    assert_true(s1.samples_live <= s0.samples_live + 64);
    assert_true(s1.live_bytes - s0.live_bytes < 2.0 * 1024 * 1024);
    assert_true(gh_heap_configure(true, 512 * 1024));
}

static void fork_children_work_while_threads_allocate(void **state)
{
    (void)state;
    if (!usable())
        skip();
    assert_true(gh_heap_configure(true, 4096));
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn_main, (void *)(i + 7)), 0);
    for (int round = 0; round < 40; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* the child inherits the tables (and no held lock): sample, free, exit */
            void *p[512];
            for (int i = 0; i < 20000; i++) {
                p[i % 512] = malloc((size_t)(i % 3000) + 1);
                if (!p[i % 512])
                    _exit(3);
                if (i % 512 == 511)
                    for (int j = 0; j < 512; j++)
                        free(p[j]);
            }
            _exit(gh_heap_active() ? 0 : 4);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_true(gh_heap_configure(true, 512 * 1024));
}

static void off_means_off(void **state)
{
    (void)state;
    if (!usable())
        skip();
    assert_false(gh_heap_configure(false, 0));
    assert_string_equal(gh_heap_state(), "off");
    gh_heap_stats_t s0, s1;
    gh_heap_stats(&s0);
    for (int i = 0; i < 1000; i++)
        free(malloc(1 << 20));
    gh_heap_stats(&s1);
    assert_int_equal(s1.samples_total, s0.samples_total);
}

/* The tables and the read-outs from several threads at once, without the interposer (so it runs
 * under ThreadSanitizer too, which owns malloc): recorders and forgetters on four threads while
 * this one ranks stacks and symbolises them. Everything recorded is forgotten at the end. */
#define TABLE_ROUNDS 20000
static char table_blocks[4][64][16];

__attribute__((noinline)) static void *table_worker(void *arg)
{
    uintptr_t t = (uintptr_t)arg;
    uintptr_t frames[3] = {(uintptr_t)table_worker + 8 + t, (uintptr_t)usable + 8,
                           (uintptr_t)churn_main + 8};
    for (int i = 0; i < TABLE_ROUNDS; i++) {
        void *p = table_blocks[t][i % 64];
        gh_heap_record(p, 4096, frames, 3);
        if (i >= 32)
            gh__heap_forget(table_blocks[t][(i - 32) % 64]);
    }
    for (int i = TABLE_ROUNDS - 32; i < TABLE_ROUNDS; i++)
        gh__heap_forget(table_blocks[t][i % 64]);
    return NULL;
}

static void tables_and_readouts_from_threads(void **state)
{
    (void)state;
    gh_heap_stats_t s0, s1;
    gh_heap_stats(&s0);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, table_worker, (void *)i), 0);
    static double live[GH_HEAP_MAX_STACKS];
    char line[512], collapsed[2048];
    for (int round = 0; round < 50; round++) {
        size_t n = gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS);
        for (uint32_t id = 1; id < n && id < 64; id++)
            if (live[id] > 0) {
                gh_heap_stack_headline(id, 3, line, sizeof line);
                gh_heap_stack_collapsed(id, collapsed, sizeof collapsed);
            }
        gh_heap_stats(&s1);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    gh_heap_stats(&s1);
    assert_true(s1.samples_total >= s0.samples_total + 4 * TABLE_ROUNDS);
    /* every block is forgotten; allow the interposer's own samples of this thread's reads */
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 64; j++)
            gh__heap_forget(table_blocks[i][j]);
    assert_true(s1.samples_live <= s0.samples_live + 64);
}

/* More distinct stacks than the table holds: the rest count as stack 0, "(other stacks)", their
 * bytes still counted and forgotten; the table's memory does not move. Runs last (it fills the
 * table) and without the interposer (gh_heap_record is what the interposer calls). */
static void the_stack_table_is_bounded(void **state)
{
    (void)state;
    gh_heap_stats_t s0, s1;
    gh_heap_stats(&s0);
    enum { N = GH_HEAP_MAX_STACKS + 500 };
    static char blocks[N][16];
    for (int i = 0; i < N; i++) {
        uintptr_t frames[3] = {0x1000 + (uintptr_t)i, 0x2000, 0x3000};
        gh_heap_record(blocks[i], 1 << 20, frames, 3);
    }
    gh_heap_stats(&s1);
    assert_int_equal(s1.stacks, GH_HEAP_MAX_STACKS - 1);
    assert_true(s1.stacks_overflow >= s0.stacks_overflow + 500);
    assert_int_equal(s1.table_bytes, s0.table_bytes);
    static double live[GH_HEAP_MAX_STACKS];
    assert_int_equal(gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS), GH_HEAP_MAX_STACKS);
    assert_true(live[0] >= 500.0 * (1 << 20));
    char line[64];
    assert_string_equal(gh_heap_stack_headline(0, 3, line, sizeof line), "(other stacks)");
    for (int i = 0; i < N; i++)
        gh__heap_forget(blocks[i]);
    gh_heap_stats(&s1);
    assert_int_equal(s1.samples_live, s0.samples_live);
    gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS);
    assert_true(live[0] == 0);
}

/* A truncated "←" (E2 86 90) is cut off whole, so the text stays valid JSON. */
static void utf8_trim_cuts_a_partial_arrow(void **state)
{
    (void)state;
    char a[] = "f \xe2\x86\x90 g", b[] = "f \xe2\x86", c[] = "f \xe2", d[] = "f \xe2\x86\x90";
    gh_heap_utf8_trim(a);
    gh_heap_utf8_trim(b);
    gh_heap_utf8_trim(c);
    gh_heap_utf8_trim(d);
    assert_string_equal(a, "f \xe2\x86\x90 g");
    assert_string_equal(b, "f ");
    assert_string_equal(c, "f ");
    assert_string_equal(d, "f \xe2\x86\x90");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(utf8_trim_cuts_a_partial_arrow),
        cmocka_unit_test(estimate_agrees_with_mallinfo2),
        cmocka_unit_test(a_leaking_function_is_named),
        cmocka_unit_test(threads_allocating_and_freeing_leave_nothing),
        cmocka_unit_test(fork_children_work_while_threads_allocate),
        cmocka_unit_test(off_means_off),
        cmocka_unit_test(tables_and_readouts_from_threads),
        cmocka_unit_test(the_stack_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
