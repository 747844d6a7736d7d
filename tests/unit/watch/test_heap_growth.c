/*
 * test_heap_growth.c — growth by call stack over synthetic series: a stack that grows steadily
 * among noisy ones is ranked first with most of the growth; a sawtooth, a step and noise are
 * not growing; hundreds of churning stacks do not dilute the leak's share; a leak that begins
 * in a warm heap is named once it fills half the window; nothing is ranked
 * before half a window; the snapshot ring stays bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>
#include <cmocka.h>

#include "watch/heap_growth.h"

static int64_t now_ms;
static int mode;
static uint64_t rng = 42;

static double noise(double amp)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return amp * ((double)(rng % 2001) / 1000.0 - 1.0);
}

/* 10 stacks: 1..9 hover around 5 MiB with 1 MiB of noise; mode 3 is a node's heap instead, 400
 * stacks around 64 KiB with 64 KiB of noise (some 25 MiB in all). In modes 1 and 3, stack 7
 * leaks 2 MiB/s and stack 3 leaks 64 KiB/s; in mode 2, stack 4 saws (fills for 3 s, drops) and
 * stack 5 steps once by 8 MiB. */
static size_t source(double *out, size_t cap)
{
    double t = (double)now_ms / 1000.0;
    size_t n = mode == 3 ? 400 : 10;
    n = n < cap ? n : cap;
    for (size_t i = 0; i < n; i++)
        out[i] = i == 0 ? 0 : mode == 3 ? 65536 + noise(65536) : 5.0 * 1048576 + noise(1048576);
    if (mode == 4) /* a warm node whose leak begins at 10 s */
        out[7] += t > 10 ? 2.0 * 1048576 * (t - 10) : 0;
    if (mode == 1 || mode == 3) {
        out[7] += 2.0 * 1048576 * t;
        out[3] += 65536.0 * t;
    } else if (mode == 2) {
        out[4] += fmod(t, 3.0) * 4 * 1048576;
        out[5] += t > 4 ? 8.0 * 1048576 : 0;
    }
    return n;
}

/* A growth ranking over a 10 s window of 50 ms samples, fed by source in mode m from time 0. */
static gh_heap_growth_t *fresh(int m)
{
    gh_heap_growth_t *g = NULL;
    mode = m;
    now_ms = 0;
    rng = 42;
    assert_int_equal(gh_heap_growth_create(10000, 50, 1 << 20, source, &g), 0);
    return g;
}

static void run(gh_heap_growth_t *g, int64_t until_ms)
{
    for (; now_ms <= until_ms; now_ms += 50)
        gh_heap_growth_add(g, now_ms);
}

static void a_leaking_stack_is_ranked_first(void **state)
{
    (void)state;
    gh_heap_growth_t *g = fresh(1);
    gh_heap_growing_t top[8];
    double span;
    run(g, 2000);
    assert_int_equal(gh_heap_growth_ranked(g, top, 8, &span), 0); /* not yet half a window */
    assert_true(span == 0);
    run(g, 20000);
    size_t n = gh_heap_growth_ranked(g, top, 8, &span);
    assert_true(n >= 1);
    assert_int_equal(top[0].stack, 7);
    assert_true(top[0].share >= 0.8);
    assert_true(fabs(top[0].slope - 2.0 * 1048576) < 0.2 * 1048576);
    assert_true(span > 9 && span < 12); /* snapshots fall on samples: up to 31 x 350 ms */
    gh_heap_growth_destroy(&g);
    assert_null(g);
}

/* A real node's heap has hundreds of stacks that churn: their noise, half of it a positive
 * slope by chance, is not growth and must not dilute the leak's share. */
static void many_churning_stacks_leave_the_leak_its_share(void **state)
{
    (void)state;
    gh_heap_growth_t *g = fresh(3);
    gh_heap_growing_t top[8];
    double span;
    run(g, 6000);
    size_t n = gh_heap_growth_ranked(g, top, 8, &span);
    assert_true(n >= 1);
    assert_int_equal(top[0].stack, 7);
    if (!(top[0].share >= 0.85 && top[0].share <= 1))
        fail_msg("the leak has %.0f%% of the growth", 100 * top[0].share);
    gh_heap_growth_destroy(&g);
}

/* The leak suspicion fires once the leak fills half the window; the stack must be named by
 * then, though the ring's older half is flat. */
static void a_leak_that_begins_late_is_named_at_half_a_window(void **state)
{
    (void)state;
    gh_heap_growth_t *g = fresh(4);
    gh_heap_growing_t top[8];
    double span;
    run(g, 11000);
    assert_int_equal(gh_heap_growth_ranked(g, top, 8, &span), 0); /* 1 s of leak: not yet */
    run(g, 16000);
    size_t n = gh_heap_growth_ranked(g, top, 8, &span);
    assert_true(n >= 1);
    assert_int_equal(top[0].stack, 7);
    assert_true(fabs(top[0].slope - 2.0 * 1048576) < 0.2 * 1048576);
    assert_true(top[0].growth > 8.0 * 1048576 && top[0].growth < 13.0 * 1048576);
    gh_heap_growth_destroy(&g);
}

static void noise_a_sawtooth_and_a_step_do_not_grow(void **state)
{
    (void)state;
    gh_heap_growth_t *g = fresh(2);
    gh_heap_growing_t top[8];
    double span;
    for (int64_t until = 3000; until <= 40000; until += 1000) {
        run(g, until);
        size_t n = gh_heap_growth_ranked(g, top, 8, &span);
        if (n != 0)
            fail_msg("at %lld ms stack %u grows %.0f B/s", (long long)until, top[0].stack,
                     top[0].slope);
    }
    gh_heap_growth_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_leaking_stack_is_ranked_first),
        cmocka_unit_test(many_churning_stacks_leave_the_leak_its_share),
        cmocka_unit_test(a_leak_that_begins_late_is_named_at_half_a_window),
        cmocka_unit_test(noise_a_sawtooth_and_a_step_do_not_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
