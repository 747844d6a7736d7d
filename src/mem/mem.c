/*
 * mem.c — the accounting allocator. Bytes are charged by malloc_usable_size(), so the figures
 * include the allocator's rounding and match what RSS can be explained by. Each component's
 * counters sit on their own cache line so that threads charging different components never
 * share one; counters are relaxed atomics, read approximately by the metrics (exact when quiet,
 * which is what the baseline tests need).
 */
#include "mem/mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    _Atomic int64_t bytes;
    _Atomic int64_t objects;
    char pad[64 - 2 * sizeof(int64_t)];
} counter_t;

static counter_t counters[GH_MEM__COUNT] __attribute__((aligned(64)));
static size_t (*reporters[GH_MEM__COUNT])(void);
static _Atomic uint64_t alloc_count;
static _Atomic uint64_t fail_at; /* alloc_count value that fails; 0 = off */
static _Atomic bool fail_fired;

static const char *const component_names[] = {
#define GH__MEM_NAME(e, n) n,
    GH_MEM_COMPONENT_MAP(GH__MEM_NAME)
#undef GH__MEM_NAME
};

void gh_mem_init(void)
{
    const char *s = getenv("GH_MEM_FAIL_AT");
    if (s && *s)
        gh_mem_fail_at(strtoull(s, NULL, 10));
}

static inline bool should_fail(void)
{
    uint64_t n = atomic_fetch_add_explicit(&alloc_count, 1, memory_order_relaxed) + 1;
    uint64_t at = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (__builtin_expect(at != 0 && n == at, 0)) {
        atomic_store(&fail_fired, true);
        return true;
    }
    return false;
}

static inline void charge(gh_mem_component_t c, void *p, int64_t sign)
{
    int64_t n = (int64_t)malloc_usable_size(p);
    atomic_fetch_add_explicit(&counters[c].bytes, sign * n, memory_order_relaxed);
    atomic_fetch_add_explicit(&counters[c].objects, sign, memory_order_relaxed);
}

void *gh_mem_alloc(gh_mem_component_t c, size_t n)
{
    if (should_fail())
        return NULL;
    void *p = malloc(n ? n : 1);
    if (p)
        charge(c, p, 1);
    return p;
}

void *gh_mem_calloc(gh_mem_component_t c, size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p)
        charge(c, p, 1);
    return p;
}

void *gh_mem_realloc(gh_mem_component_t c, void *p, size_t n)
{
    if (!p)
        return gh_mem_alloc(c, n);
    if (should_fail())
        return NULL;
    size_t old = malloc_usable_size(p);
    void *q = realloc(p, n ? n : 1);
    if (!q)
        return NULL;
    int64_t delta = (int64_t)malloc_usable_size(q) - (int64_t)old;
    atomic_fetch_add_explicit(&counters[c].bytes, delta, memory_order_relaxed);
    return q;
}

void gh_mem_free(gh_mem_component_t c, void *p)
{
    if (!p)
        return;
    charge(c, p, -1);
    free(p);
}

void gh_mem_free_secret(gh_mem_component_t c, void *p)
{
    if (!p)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    gh_mem_free(c, p);
}

char *gh_mem_strndup(gh_mem_component_t c, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = gh_mem_alloc(c, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

char *gh_mem_strdup(gh_mem_component_t c, const char *s)
{
    return gh_mem_strndup(c, s, strlen(s));
}

const char *gh_mem_component_name(gh_mem_component_t c)
{
    return (unsigned)c < GH_MEM__COUNT ? component_names[c] : "?";
}

size_t gh_mem_bytes(gh_mem_component_t c)
{
    if ((unsigned)c >= GH_MEM__COUNT)
        return 0;
    int64_t own = atomic_load_explicit(&counters[c].bytes, memory_order_relaxed);
    size_t ext = reporters[c] ? reporters[c]() : 0;
    return (own > 0 ? (size_t)own : 0) + ext;
}

size_t gh_mem_objects(gh_mem_component_t c)
{
    if ((unsigned)c >= GH_MEM__COUNT)
        return 0;
    int64_t n = atomic_load_explicit(&counters[c].objects, memory_order_relaxed);
    return n > 0 ? (size_t)n : 0;
}

size_t gh_mem_total_bytes(void)
{
    size_t t = 0;
    for (int c = 0; c < GH_MEM__COUNT; c++)
        t += gh_mem_bytes((gh_mem_component_t)c);
    return t;
}

void gh_mem_set_reporter(gh_mem_component_t c, size_t (*fn)(void))
{
    if ((unsigned)c < GH_MEM__COUNT)
        reporters[c] = fn;
}

void gh_mem_fail_at(uint64_t n)
{
    atomic_store(&fail_fired, false);
    atomic_store(&fail_at, n ? atomic_load(&alloc_count) + n : 0);
}

uint64_t gh_mem_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

bool gh_mem_fail_fired(void)
{
    return atomic_load(&fail_fired);
}

static size_t statm_field(int idx)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long v[2] = {0, 0};
    int n = fscanf(f, "%lu %lu", &v[0], &v[1]);
    fclose(f);
    if (n != 2)
        return 0;
    return (size_t)v[idx] * (size_t)sysconf(_SC_PAGESIZE);
}

size_t gh_mem_rss_bytes(void)
{
    return statm_field(1);
}

size_t gh_mem_virtual_bytes(void)
{
    return statm_field(0);
}

size_t gh_mem_allocator_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

size_t gh_mem_physical_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (size_t)pages * (size_t)size : 0;
}

static size_t read_limit_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[64] = {0};
    size_t v = 0;
    if (fgets(buf, sizeof buf, f) && strncmp(buf, "max", 3) != 0) {
        unsigned long long x = strtoull(buf, NULL, 10);
        /* cgroup v1 reports "no limit" as a huge page-rounded number. */
        if (x > 0 && x < (1ULL << 60))
            v = (size_t)x;
    }
    fclose(f);
    return v;
}

size_t gh_mem_cgroup_limit(void)
{
    /* cgroup v2: our own group's memory.max, found through /proc/self/cgroup ("0::/path"). */
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = '\0';
                char path[700];
                snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.max", line + 3);
                size_t v = read_limit_file(path);
                if (v) {
                    fclose(f);
                    return v;
                }
            }
        }
        fclose(f);
    }
    size_t v = read_limit_file("/sys/fs/cgroup/memory.max");
    if (!v)
        v = read_limit_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    return v;
}

/* ---- per-request pool ---- */

struct gh_pool_chunk {
    gh_pool_chunk_t *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

#define POOL_CHUNK 4096

void gh_pool_init(gh_pool_t *pool, gh_mem_component_t c, size_t limit)
{
    pool->component = c;
    pool->limit = limit;
    pool->used = 0;
    pool->wipe = false;
    pool->chunks = NULL;
}

void *gh_pool_alloc(gh_pool_t *pool, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    gh_pool_chunk_t *c = pool->chunks;
    if (!c || c->size - c->used < n) {
        size_t size = n > POOL_CHUNK / 2 ? n : POOL_CHUNK;
        if (pool->used + size > pool->limit)
            return NULL;
        gh_pool_chunk_t *nc = gh_mem_alloc(pool->component, sizeof *nc + size);
        if (!nc)
            return NULL;
        nc->size = size;
        nc->used = 0;
        pool->used += size;
        /* A big one-off allocation goes behind the current chunk so its free space stays usable. */
        if (c && size != POOL_CHUNK) {
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            pool->chunks = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *gh_pool_strndup(gh_pool_t *pool, const char *s, size_t n)
{
    char *d = gh_pool_alloc(pool, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

void gh_pool_release(gh_pool_t *pool)
{
    gh_pool_chunk_t *c = pool->chunks;
    while (c) {
        gh_pool_chunk_t *next = c->next;
        if (pool->wipe)
            explicit_bzero(c->data, c->used);
        gh_mem_free(pool->component, c);
        c = next;
    }
    pool->chunks = NULL;
    pool->used = 0;
}
