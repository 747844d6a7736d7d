/*
 * pool.h — the connection pool of the network stores (Redis sessions, PostgreSQL users): a
 * fixed number of connections made on first use, callers that wait (bounded) for a free one,
 * and a growing back-off while the server does not answer, so that every operation fails at
 * once (fail closed) instead of each waiting for a connect timeout, and service resumes by
 * itself when the server is back.
 *
 * The one design decision: failure is per generation, not per connection. A connection that
 * breaks bumps the pool's generation, and every connection of an older generation is re-made
 * on its next use: after a failover or a restart no request is sent down a stale connection
 * twice. The pool knows nothing of the protocol: the store hands it connect and disconnect.
 */
#ifndef GH_STORE_POOL_H
#define GH_STORE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mem/mem.h"

#define GH_STORE_POOL_BACKOFF_MIN_MS 50
#define GH_STORE_POOL_BACKOFF_MAX_MS 2000

typedef struct {
    const char *what;       /* "session store", "user store": the log lines' subject */
    const char *store;      /* "redis", "postgres": their store field */
    gh_mem_component_t mem; /* what the pool's memory is charged to */
    unsigned size;          /* connections, > 0 */
    int timeout_ms;         /* how long a caller waits for a free connection */
    int backoff_max_ms;     /* the longest back-off; 0 = GH_STORE_POOL_BACKOFF_MAX_MS */
    /* Makes a connection: 0 with *conn set, or GH_ESTORE (the pool backs off). */
    int (*connect)(void *ctx, void **conn);
    /* Closes a connection the pool holds (never NULL). */
    void (*disconnect)(void *ctx, void *conn);
    void *ctx;
} gh_store_pool_options_t;

typedef struct gh_store_pool gh_store_pool_t;

/* Creates the pool (no connection is made yet). Returns 0, GH_EINVAL or GH_ENOMEM. */
int gh_store_pool_create(const gh_store_pool_options_t *o, gh_store_pool_t **out) GH_WUR;
/* Closes every connection and frees the pool; nobody may hold one. *p = NULL. */
void gh_store_pool_destroy(gh_store_pool_t **p);

/* Takes a connected connection: 0 with *slot and *conn; GH_ESTORE while the server is down (at
 * once during the back-off) or when connecting failed; GH_EBUSY when every connection stayed
 * busy for the whole timeout. */
int gh_store_pool_acquire(gh_store_pool_t *p, unsigned *slot, void **conn) GH_WUR;
/* Gives a connection back; broken: it failed (it is closed, and the pool backs off). */
void gh_store_pool_release(gh_store_pool_t *p, unsigned slot, bool broken);

/* The server moved (a failover was announced): every connection is re-made on its next use,
 * and the back-off ends now instead of after its delay. */
void gh_store_pool_reset(gh_store_pool_t *p);

/* Bytes the pool holds, as gh_mem counts them (constant after create). */
size_t gh_store_pool_bytes(const gh_store_pool_t *p);

#endif
