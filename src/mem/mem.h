/*
 * mem.h — every long-lived byte Gatehouse holds, charged to a named component.
 *
 * All allocation outside this folder goes through gh_mem_* (Redis routes everything through
 * zmalloc the same way); scripts/check-alloc.sh fails the build's tests if a bare malloc appears.
 * Bytes are counted by malloc_usable_size, so the figures are what the allocator really handed
 * out, and live objects are counted too. Counters are relaxed atomics on separate cache lines:
 * an allocation costs two uncontended atomic adds.
 *
 * Ownership: memory from gh_mem_alloc(c, …) is freed with gh_mem_free(c, …) of the SAME
 * component, by whoever the owning header names. Freeing NULL is a no-op.
 *
 * Fault injection (SQLite's OOM tests, curl's torture mode): gh_mem_fail_at(n) makes the n-th
 * allocation from now return NULL; the environment variable GH_MEM_FAIL_AT=n does the same at
 * gh_mem_init(). Code must answer such a failure with an error, never crash, and leak nothing.
 */
#ifndef GH_MEM_MEM_H
#define GH_MEM_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* X(ENUM, "name") — names are the `component` label of gatehouse_memory_bytes. */
#define GH_MEM_COMPONENT_MAP(X)                                                                    \
    X(SESSIONS, "sessions")                                                                        \
    X(USERS, "users")                                                                              \
    X(RATELIMIT, "ratelimit")                                                                      \
    X(HTTP, "http")                                                                                \
    X(PASSWORD, "password")                                                                        \
    X(METRICS, "metrics")                                                                          \
    X(SQLITE, "sqlite")                                                                            \
    X(PENDING, "pending")                                                                          \
    X(MAIL, "mail")                                                                                \
    X(AUDIT, "audit")                                                                              \
    X(WEBAUTHN, "webauthn")                                                                        \
    X(PROFILER, "profiler")                                                                        \
    X(OIDC_CODES, "oidc_codes")                                                                    \
    X(OIDC_TOKENS, "oidc_tokens")                                                                  \
    X(OIDC_CONSENTS, "oidc_consents")                                                              \
    X(OIDC_KEYS, "oidc_keys")                                                                      \
    X(OTHER, "other")

typedef enum {
#define GH__MEM_ENUM(e, n) GH_MEM_##e,
    GH_MEM_COMPONENT_MAP(GH__MEM_ENUM)
#undef GH__MEM_ENUM
        GH_MEM__COUNT
} gh_mem_component_t;

/* Reads GH_MEM_FAIL_AT. Call once at start; the counters work without it. */
void gh_mem_init(void);

/* Allocation wrappers; NULL on failure (real or injected). n == 0 allocates 1 byte. */
void *gh_mem_alloc(gh_mem_component_t c, size_t n) __attribute__((malloc, warn_unused_result));
void *gh_mem_calloc(gh_mem_component_t c, size_t count, size_t size)
    __attribute__((malloc, warn_unused_result));
/* On failure returns NULL and leaves p allocated and charged. */
void *gh_mem_realloc(gh_mem_component_t c, void *p, size_t n) __attribute__((warn_unused_result));
void gh_mem_free(gh_mem_component_t c, void *p);
/* Like gh_mem_free, but zeroes the whole block first: for memory that held a secret. */
void gh_mem_free_secret(gh_mem_component_t c, void *p);
char *gh_mem_strdup(gh_mem_component_t c, const char *s)
    __attribute__((malloc, warn_unused_result));
char *gh_mem_strndup(gh_mem_component_t c, const char *s, size_t n)
    __attribute__((malloc, warn_unused_result));

/* Name of a component ("sessions"); "?" when out of range. */
const char *gh_mem_component_name(gh_mem_component_t c);

/* Accounted bytes and live objects of one component. For GH_MEM_SQLITE the bytes come from the
 * external reporter if one is registered (SQLite keeps its own counters; the heap profiler's
 * tables are static, mem/heap.h). */
size_t gh_mem_bytes(gh_mem_component_t c);
size_t gh_mem_objects(gh_mem_component_t c);
/* Sum of gh_mem_bytes over all components. */
size_t gh_mem_total_bytes(void);

/* A component whose memory is counted by a library itself (SQLite): fn returns its bytes. */
void gh_mem_set_reporter(gh_mem_component_t c, size_t (*fn)(void));

/* Fault injection: the n-th allocation from now fails (once); 0 disarms. Returns how many
 * allocations have been made since start, so a test can size a sweep. */
void gh_mem_fail_at(uint64_t n);
uint64_t gh_mem_alloc_count(void);
/* True once an injected failure has fired since the last gh_mem_fail_at(). */
bool gh_mem_fail_fired(void);

/* Process figures for /metrics and /debug/memory. Each returns 0 when unknown. */
size_t gh_mem_rss_bytes(void);        /* /proc/self/statm resident pages × page size */
size_t gh_mem_virtual_bytes(void);    /* /proc/self/statm size */
size_t gh_mem_allocator_in_use(void); /* mallinfo2().uordblks + hblkhd */
size_t gh_mem_physical_bytes(void);   /* RAM of the machine */
/* The cgroup memory limit (v2 memory.max, else v1 memory.limit_in_bytes); 0 when none. */
size_t gh_mem_cgroup_limit(void);

/*
 * Per-request scratch pool (h2o's h2o_mem_pool_t): many small allocations released together
 * when the request ends. Charged to a component (usually GH_MEM_HTTP) and bounded by `limit`
 * bytes: an allocation past the limit returns NULL.
 */
typedef struct gh_pool_chunk gh_pool_chunk_t;
typedef struct {
    gh_mem_component_t component;
    size_t limit; /* bytes this pool may hold in chunks */
    size_t used;  /* bytes held in chunks */
    bool wipe;    /* zero every chunk on release (the pool held passwords or tokens) */
    gh_pool_chunk_t *chunks;
} gh_pool_t;

void gh_pool_init(gh_pool_t *pool, gh_mem_component_t c, size_t limit);
void *gh_pool_alloc(gh_pool_t *pool, size_t n) __attribute__((warn_unused_result));
char *gh_pool_strndup(gh_pool_t *pool, const char *s, size_t n) __attribute__((warn_unused_result));
/* Frees every chunk; the pool can be used again afterwards. */
void gh_pool_release(gh_pool_t *pool);

#endif
