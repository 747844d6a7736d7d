/*
 * heap_malloc.c — the C allocator's entry points, interposed in the gatehouse binary for the
 * sampling heap profiler (heap.h). Linked into the binary only (the Makefile keeps it out of
 * libgatehouse.a); every call forwards to glibc's __libc_* functions.
 *
 * The one design decision: the unsampled fast path is a thread-local countdown (initial-exec
 * TLS: no allocation and no lock, valid before main and in fork children) on malloc, and one
 * relaxed load of the live-sample count on free; everything else is in the rare slow path.
 * Reentrancy (the unwinder or the tables calling malloc) is cut by a thread-local busy flag.
 * Under AddressSanitizer or ThreadSanitizer this file compiles to a constructor that only says why
 * the profiler is off; under valgrind it forwards and never arms.
 */
#include "mem/heap.h"

#if defined(__SANITIZE_ADDRESS__)
#define GH_HEAP_NO_INTERPOSE "AddressSanitizer owns malloc"
#elif defined(__SANITIZE_THREAD__)
#define GH_HEAP_NO_INTERPOSE "ThreadSanitizer owns malloc"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GH_HEAP_NO_INTERPOSE "AddressSanitizer owns malloc"
#elif __has_feature(thread_sanitizer)
#define GH_HEAP_NO_INTERPOSE "ThreadSanitizer owns malloc"
#endif
#endif

#ifdef GH_HEAP_NO_INTERPOSE

__attribute__((constructor)) static void heap_malloc_init(void)
{
    gh__heap_unavailable = GH_HEAP_NO_INTERPOSE;
}

#else

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unwind.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

#define TLS __thread __attribute__((tls_model("initial-exec")))
static TLS int64_t tl_left; /* bytes until the next sample; <= 0: take the slow path */
static TLS uint64_t tl_rng;
static TLS int tl_busy;
static TLS int tl_started;

#define DISARMED_RECHECK (1 << 20) /* bytes between looks at the armed flag while off */

static uint64_t next_rand(void)
{
    if (tl_rng == 0)
        tl_rng = ((uint64_t)(uintptr_t)&tl_rng * 0x9E3779B97F4A7C15ull) | 1;
    tl_rng ^= tl_rng << 13;
    tl_rng ^= tl_rng >> 7;
    tl_rng ^= tl_rng << 17;
    return tl_rng;
}

static int64_t draw(void)
{
    double u = (double)((next_rand() >> 11) + 1) / 9007199254740993.0; /* (0, 1] */
    double t = (double)atomic_load_explicit(&gh__heap_interval, memory_order_relaxed);
    double x = -log(u) * t;
    return x < 1 ? 1 : x > 9e18 ? (int64_t)9e18 : (int64_t)x;
}

typedef struct {
    uintptr_t *frames;
    int n, skip;
} walk_t;

static _Unwind_Reason_Code walk_one(struct _Unwind_Context *ctx, void *arg)
{
    walk_t *w = arg;
    uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
    if (ip == 0)
        return _URC_END_OF_STACK;
    if (w->skip > 0) {
        w->skip--;
        return _URC_NO_REASON;
    }
    w->frames[w->n++] = ip;
    return w->n >= GH_HEAP_MAX_DEPTH ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* Frames: [0] capture, [1] slow_path, [2] the interposed entry point, [3] its caller. */
__attribute__((noinline)) static int capture(uintptr_t *frames)
{
    walk_t w = {.frames = frames, .n = 0, .skip = 3};
    _Unwind_Backtrace(walk_one, &w);
    return w.n;
}

__attribute__((noinline)) static void slow_path(void *p, size_t n)
{
    if (!atomic_load_explicit(&gh__heap_armed, memory_order_relaxed)) {
        tl_left = DISARMED_RECHECK;
        return;
    }
    /* A thread's first look after arming: start its countdown, sample nothing yet (the
     * countdown was not running, so this allocation has no probability to weigh it by). */
    if (!tl_started) {
        tl_started = 1;
        tl_left = draw();
        return;
    }
    while (tl_left <= 0)
        tl_left += draw();
    if (tl_busy || !p)
        return;
    tl_busy = 1;
    uintptr_t frames[GH_HEAP_MAX_DEPTH];
    int d = capture(frames);
    gh_heap_record(p, n, frames, d);
    tl_busy = 0;
}

#define ACCOUNT(p, n)                                                                              \
    do {                                                                                           \
        tl_left -= (int64_t)(n);                                                                   \
        if (__builtin_expect(tl_left <= 0, 0))                                                     \
            slow_path((p), (n));                                                                   \
    } while (0)

static inline void forget(void *p)
{
    if (__builtin_expect(atomic_load_explicit(&gh__heap_live, memory_order_relaxed) != 0, 0) &&
        atomic_load_explicit(&gh__heap_filter[gh__heap_hash(p)], memory_order_relaxed) != 0)
        gh__heap_forget(p);
}

void *malloc(size_t n)
{
    void *p = __libc_malloc(n);
    ACCOUNT(p, n);
    return p;
}

void free(void *p)
{
    if (!p)
        return;
    forget(p);
    __libc_free(p);
}

void *calloc(size_t count, size_t size)
{
    void *p = __libc_calloc(count, size);
    ACCOUNT(p, count * size);
    return p;
}

void *realloc(void *old, size_t n)
{
    if (old)
        forget(old);
    void *p = __libc_realloc(old, n);
    if (p)
        ACCOUNT(p, n);
    return p;
}

void *reallocarray(void *old, size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    if (old)
        forget(old);
    void *p = __libc_realloc(old, n);
    if (p)
        ACCOUNT(p, n);
    return p;
}

void *memalign(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    ACCOUNT(p, n);
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    void *p = __libc_memalign(align, n);
    ACCOUNT(p, n);
    return p;
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align % sizeof(void *) != 0 || (align & (align - 1)) != 0 || align == 0)
        return EINVAL;
    void *p = __libc_memalign(align, n);
    if (!p)
        return ENOMEM;
    ACCOUNT(p, n);
    *out = p;
    return 0;
}

void *valloc(size_t n)
{
    void *p = __libc_valloc(n);
    ACCOUNT(p, n);
    return p;
}

void *pvalloc(size_t n)
{
    void *p = __libc_pvalloc(n);
    ACCOUNT(p, n);
    return p;
}

__attribute__((constructor)) static void heap_malloc_init(void)
{
    const char *pre = getenv("LD_PRELOAD");
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND)
        gh__heap_unavailable = "valgrind owns malloc";
#endif
    if (pre && strstr(pre, "vgpreload"))
        gh__heap_unavailable = "valgrind owns malloc";
    gh__heap_linked = 1;
}

#endif
