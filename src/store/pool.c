/*
 * pool.c — the network stores' connection pool with back-off (pool.h): conns[free[0..nfree)]
 * are idle; a connection of an older generation than the pool's is re-made on its next use;
 * while down_until is ahead, a stale connection is not even tried.
 */
#include "store/pool.h"

#include <assert.h>
#include <malloc.h>
#include <pthread.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct {
    void *c;      /* NULL until connected */
    unsigned gen; /* the pool generation it was connected in */
} conn_t;

struct gh_store_pool {
    gh_store_pool_options_t o;
    pthread_mutex_t lock;
    pthread_cond_t returned;
    conn_t *conns;
    unsigned *free;
    unsigned nconns, nfree;
    unsigned gen;          /* bumped when a connection fails: older ones are re-made */
    int64_t down_until_ns; /* monotonic; acquire fails at once before this */
    int64_t backoff_ms;    /* 0 while healthy */
    size_t bytes;
};

int gh_store_pool_create(const gh_store_pool_options_t *o, gh_store_pool_t **out)
{
    *out = NULL;
    if (!o || !o->size || !o->connect || !o->disconnect || o->timeout_ms < 0)
        return GH_EINVAL;
    gh_store_pool_t *p = gh_mem_calloc(o->mem, 1, sizeof *p);
    if (!p)
        return GH_ENOMEM;
    p->o = *o;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->returned, NULL);
    p->nconns = o->size;
    p->conns = gh_mem_calloc(o->mem, p->nconns, sizeof *p->conns);
    p->free = gh_mem_calloc(o->mem, p->nconns, sizeof *p->free);
    if (!p->conns || !p->free) {
        gh_store_pool_destroy(&p);
        return GH_ENOMEM;
    }
    for (unsigned i = 0; i < p->nconns; i++)
        p->free[p->nfree++] = p->nconns - 1 - i;
    /* What gh_mem charged (it counts usable sizes); it never changes after this. */
    p->bytes = malloc_usable_size(p) + malloc_usable_size(p->conns) + malloc_usable_size(p->free);
    *out = p;
    return 0;
}

void gh_store_pool_destroy(gh_store_pool_t **pp)
{
    gh_store_pool_t *p = *pp;
    if (!p)
        return;
    if (p->conns) {
        /* nobody may still hold a connection (a half-built pool has no free list yet) */
        assert(!p->free || p->nfree == p->nconns);
        for (unsigned i = 0; i < p->nconns; i++)
            if (p->conns[i].c)
                p->o.disconnect(p->o.ctx, p->conns[i].c);
    }
    gh_mem_free(p->o.mem, p->conns);
    gh_mem_free(p->o.mem, p->free);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->returned);
    gh_mem_free(p->o.mem, p);
    *pp = NULL;
}

size_t gh_store_pool_bytes(const gh_store_pool_t *p)
{
    return p->bytes;
}

/* Called with the lock held when a connection of generation `gen` failed. */
static void mark_down_locked(gh_store_pool_t *p, unsigned gen)
{
    if (gen == p->gen)
        p->gen++;
    bool was_up = p->backoff_ms == 0;
    int64_t max = p->o.backoff_max_ms > 0 ? p->o.backoff_max_ms : GH_STORE_POOL_BACKOFF_MAX_MS;
    p->backoff_ms =
        was_up ? GH_STORE_POOL_BACKOFF_MIN_MS : (p->backoff_ms * 2 > max ? max : p->backoff_ms * 2);
    p->down_until_ns = gh_clock_mono_ns() + p->backoff_ms * 1000000;
    if (was_up) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s unavailable", p->o.what);
        GH_LOG(GH_LOG_ERROR, msg, GH_LS("store", p->o.store), GH_LI("retry_ms", p->backoff_ms));
    }
}

static void mark_up_locked(gh_store_pool_t *p)
{
    if (p->backoff_ms != 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s reachable again", p->o.what);
        GH_LOG(GH_LOG_INFO, msg, GH_LS("store", p->o.store));
    }
    p->backoff_ms = 0;
    p->down_until_ns = 0;
}

int gh_store_pool_acquire(gh_store_pool_t *p, unsigned *slot, void **conn)
{
    pthread_mutex_lock(&p->lock);
    if (p->nfree == 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += p->o.timeout_ms / 1000;
        until.tv_nsec += (long)(p->o.timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (p->nfree == 0)
            if (pthread_cond_timedwait(&p->returned, &p->lock, &until) != 0)
                break;
        if (p->nfree == 0) {
            pthread_mutex_unlock(&p->lock);
            return GH_EBUSY;
        }
    }
    unsigned i = p->free[--p->nfree];
    conn_t *k = &p->conns[i];
    bool stale = !k->c || k->gen != p->gen;
    if (stale && gh_clock_mono_ns() < p->down_until_ns) {
        p->free[p->nfree++] = i;
        pthread_mutex_unlock(&p->lock);
        return GH_ESTORE; /* fail closed without waiting for a timeout */
    }
    unsigned gen = p->gen;
    pthread_mutex_unlock(&p->lock);
    if (stale) {
        if (k->c) {
            p->o.disconnect(p->o.ctx, k->c);
            k->c = NULL;
        }
        void *c = NULL;
        int rc = p->o.connect(p->o.ctx, &c);
        pthread_mutex_lock(&p->lock);
        if (rc != 0) {
            mark_down_locked(p, gen);
            p->free[p->nfree++] = i;
            pthread_cond_signal(&p->returned);
            pthread_mutex_unlock(&p->lock);
            return GH_ESTORE;
        }
        k->c = c;
        k->gen = gen;
        mark_up_locked(p);
        pthread_mutex_unlock(&p->lock);
    }
    *slot = i;
    *conn = k->c;
    return 0;
}

void gh_store_pool_reset(gh_store_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->gen++;
    p->backoff_ms = 0;
    p->down_until_ns = 0;
    pthread_mutex_unlock(&p->lock);
}

void gh_store_pool_release(gh_store_pool_t *p, unsigned slot, bool broken)
{
    conn_t *k = &p->conns[slot];
    if (broken && k->c) {
        p->o.disconnect(p->o.ctx, k->c);
        k->c = NULL;
    }
    pthread_mutex_lock(&p->lock);
    if (broken)
        mark_down_locked(p, k->gen);
    p->free[p->nfree++] = slot;
    pthread_cond_signal(&p->returned);
    pthread_mutex_unlock(&p->lock);
}
