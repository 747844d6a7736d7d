/*
 * heap.h — the always-on sampling heap profiler: which call stacks hold the process's heap.
 *
 * heap_malloc.c (linked into the gatehouse binary only, never into libgatehouse.a) interposes
 * malloc, calloc, realloc, reallocarray, free, posix_memalign, aligned_alloc, memalign, valloc
 * and pvalloc, forwarding to glibc's __libc_* entry points. Once gh_heap_configure() turns it on,
 * each thread counts down bytes allocated from an exponentially distributed draw (mean: the
 * sample interval, as tcmalloc and jemalloc do); the allocation that crosses zero is sampled: its
 * call stack (libgcc's unwinder, at most GH_HEAP_MAX_DEPTH frames) is interned and the pointer is
 * remembered with its weight, size / (1 - exp(-size / interval)) — the bytes it stands for, so
 * the sum of weights is an unbiased estimate of live bytes. free() forgets a sampled pointer.
 *
 * The one design decision: every table is fixed-size and static (GH_HEAP_TABLE_BYTES, charged to
 * the `profiler` component), so the sampler never allocates, and its unsampled fast paths take
 * no lock: malloc decrements a thread-local countdown, free reads an atomic count of live samples
 * and, only when some are live, a counter in a hashed filter of sampled addresses — the striped
 * lock of the sample table is taken only for pointers the filter cannot rule out. A full table
 * drops samples (counted) rather than grow; a full stack table charges new stacks to stack 0,
 * "(other stacks)". Locks are spinlocks held for a few instructions; pthread_atfork takes them
 * all around fork, so a child inherits consistent tables.
 *
 * Off: under AddressSanitizer heap_malloc.c compiles to nothing (ASan owns malloc), under
 * valgrind (RUNNING_ON_VALGRIND, or vgpreload in LD_PRELOAD) it forwards only, and
 * --heap-profile off never arms it. Then every read-out below reports no stacks.
 */
#ifndef GH_MEM_HEAP_H
#define GH_MEM_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GH_HEAP_MAX_DEPTH 20
#define GH_HEAP_MAX_STACKS 4096
#define GH_HEAP_STRIPES 64
#define GH_HEAP_STRIPE_SLOTS 512 /* live samples per stripe: 32768 in all */
#define GH_HEAP_DEFAULT_INTERVAL (512u * 1024u)

/* Turns sampling on (interval bytes on average between samples; 0 -> the default) or off.
 * Returns true when sampling is on afterwards; false when off or unavailable (see state). */
bool gh_heap_configure(bool on, uint64_t interval);
/* The profiler's own memory while it samples (its fixed tables), else 0: the reporter of the
 * `profiler` component (gh_mem_set_reporter(GH_MEM_PROFILER, gh_heap_own_bytes)). */
size_t gh_heap_own_bytes(void);
/* True while sampling. */
bool gh_heap_active(void);
/* "on", "off", or why it is unavailable ("not linked in", "AddressSanitizer owns malloc",
 * "ThreadSanitizer owns malloc", "valgrind owns malloc"). */
const char *gh_heap_state(void);

typedef struct {
    bool active;
    uint64_t interval;
    uint64_t samples_live;    /* sampled pointers not yet freed */
    uint64_t samples_total;   /* since start */
    uint64_t samples_dropped; /* a stripe of the sample table was full */
    uint64_t stacks;          /* interned so far (<= GH_HEAP_MAX_STACKS) */
    uint64_t stacks_overflow; /* samples charged to "(other stacks)" */
    double live_bytes;        /* the estimate: the sum of live samples' weights */
    uint64_t table_bytes;     /* the profiler's own memory: fixed */
} gh_heap_stats_t;

void gh_heap_stats(gh_heap_stats_t *out);
/* Estimated live bytes per stack id: out[id] for id < the returned count (<= cap). */
size_t gh_heap_live_by_stack(double *out, size_t cap);
/* The frames of a stack, leaf first (return addresses); returns how many (0: no such stack). */
int gh_heap_stack_frames(uint32_t id, uintptr_t *frames, int max);
/* One frame for people: "function (library)" or "library+0x1a2b" when no symbol covers pc
 * (dladdr over the dynamic symbols, then the ELF symbol table of the file, which names static
 * functions too when the binary is not stripped). Never allocates through malloc. Returns out. */
char *gh_heap_symbol(uintptr_t pc, bool with_file, char *out, size_t n);
/* A stack for people, leaf first, frames joined by " ← ", allocator wrappers (gh_mem_*,
 * gh_pool_*, sqlite3Malloc...) skipped, at most max_frames frames, the first with its file:
 * "leak_main (leak_preload.c:31) ← libc.so.6+0x891f4" (file:line where the file has DWARF). Returns
 * out. */
char *gh_heap_stack_headline(uint32_t id, int max_frames, char *out, size_t n);
/* True for the frames a headline skips at the leaf: allocator wrappers (gh_mem_*, gh_pool_*,
 * sm_alloc, SQLite's malloc wrappers) and unnamed frames ("libfoo.so+0x1a2b"); a stack with no
 * other frame keeps its leaf. */
bool gh_heap_is_wrapper(const char *name);
/* Cuts an incomplete UTF-8 sequence off the end of s (what a truncating snprintf leaves), so the
 * text stays valid for JSON. */
void gh_heap_utf8_trim(char *s);
/* A stack in the collapsed format of flame-graph tools: root first, frames joined by ';'.
 * Returns out. */
char *gh_heap_stack_collapsed(uint32_t id, char *out, size_t n);

/* Test hook: records a sample as the interposer would (p, size, frames leaf first). */
void gh_heap_record(void *p, size_t size, const uintptr_t *frames, int depth);
/* The interposer's entry points into the tables (heap_malloc.c). */
void gh__heap_forget(void *p);
extern _Atomic uint32_t gh__heap_live;
extern _Atomic uint16_t gh__heap_filter[1u << 15];
extern _Atomic int gh__heap_armed;
extern _Atomic uint64_t gh__heap_interval;
/* Set by heap_malloc.c's constructor: 1 linked in, or the reason it stays off. */
extern int gh__heap_linked;
extern const char *gh__heap_unavailable;

static inline uint32_t gh__heap_hash(const void *p)
{
    uint64_t x = ((uint64_t)(uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 49); /* 15 bits: the filter's slots */
}

#endif
