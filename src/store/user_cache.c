/*
 * user_cache.c — a bounded cache of "who is user N" in front of any user store, for the token
 * check. Every GET /v1/auth turns a session into a username; without this, that is one SQLite
 * statement under the store's single connection lock (or one PostgreSQL round trip) per check,
 * and the lock, not the work, was what capped token checks (docs/BENCHMARKS.md).
 *
 * The one decision a reader must know: entries are trusted for a fixed time (--user-cache-ttl,
 * 1 s by default), not invalidated by the database. Writes through this store (password change,
 * deletion) drop their entry at once; a change made by ANOTHER process (the `gatehouse user`
 * command, another node) reaches this node's token checks within the TTL. Deleting a user
 * through the API also ends their sessions, so the TTL only matters for out-of-band changes.
 * A cached answer carries id, username and created_at, never the password hash: what needs the
 * hash (login, password change) asks the store itself.
 *
 * When the user store does not answer (a PostgreSQL outage), a token check may answer from an
 * expired entry up to --user-stale-max old (1 h): ending a user (delete, disable) ends their
 * sessions in the session store too, so a session that still exists belongs to a user who
 * existed, and APIs keep working while logins and registrations — which need the store itself —
 * fail closed. Such answers are counted (gatehouse_user_lookups_stale_total) and the age of the
 * oldest is a gauge; entries are never kept longer than the fixed table holds them anyway.
 *
 * Layout: a fixed, set-associative table (8 ways a set; the oldest entry of a full set is
 * replaced), allocated once at open and charged to GH_MEM_USERS, so its memory never depends on
 * how many users exist or who asks. Sets are guarded by 64 striped mutexes, so token checks on
 * different users rarely meet on a lock. A stripe's generation rises on every invalidation: a
 * miss remembers it before going to the store and does not insert what it read if it changed,
 * so an answer read before a write can never be cached after the write dropped its entry.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/clock.h"
#include "mem/mem.h"
#include "store/user.h"

#define WAYS 8
#define MAX_STRIPES 64

typedef struct {
    uint64_t id; /* 0: empty (ids start at 1) */
    int64_t fetched_ms;
    int64_t created_at_ms;
    char username[GH_USERNAME_MAX + 1];
    bool admin, disabled; /* fit the entry's padding: still 96 bytes */
} entry_t;

typedef struct {
    pthread_mutex_t lock;
    uint64_t generation;
    char pad[64 - (sizeof(pthread_mutex_t) + sizeof(uint64_t)) % 64]; /* one per cache line */
} stripe_t;

typedef struct {
    gh_user_store_t base; /* first: the interface pointer is the struct pointer */
    gh_user_store_t *backend;
    entry_t *entries; /* nsets * WAYS */
    uint32_t nsets;   /* a power of two */
    uint32_t nstripes;
    int64_t ttl_ms;
    int64_t stale_max_ms;
    uint64_t seed;
    atomic_uint_fast64_t stale_total, refused_total;
    atomic_int_fast64_t stale_age_max_ms;
    stripe_t stripes[MAX_STRIPES];
} cache_t;

static const gh_user_store_ops_t cache_ops;

static uint32_t set_of(const cache_t *c, uint64_t id)
{
    uint64_t z = id ^ c->seed; /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)((z ^ (z >> 31)) & (c->nsets - 1));
}

static stripe_t *stripe_of(cache_t *c, uint32_t set)
{
    return &c->stripes[set & (c->nstripes - 1)];
}

/* Copies an entry for id fetched less than max_age_ms ago into out (its age in *age_ms, may be
 * NULL); false when there is none. Stripe lock held. */
static bool find_fresh(cache_t *c, uint32_t set, uint64_t id, int64_t now, int64_t max_age_ms,
                       gh_user_t *out, int64_t *age_ms)
{
    entry_t *e = &c->entries[(size_t)set * WAYS];
    for (int w = 0; w < WAYS; w++) {
        if (e[w].id != id)
            continue;
        /* Unsigned: a clock that stepped back makes the entry stale, not immortal. */
        if ((uint64_t)(now - e[w].fetched_ms) >= (uint64_t)max_age_ms)
            return false;
        if (age_ms)
            *age_ms = now - e[w].fetched_ms;
        memset(out, 0, sizeof *out);
        out->id = id;
        out->created_at_ms = e[w].created_at_ms;
        memcpy(out->username, e[w].username, sizeof out->username);
        out->admin = e[w].admin;
        out->disabled = e[w].disabled;
        return true;
    }
    return false;
}

/* Puts u in its set: over its own old entry, else an empty way, else the oldest. Lock held. */
static void insert(cache_t *c, uint32_t set, const gh_user_t *u, int64_t now)
{
    entry_t *e = &c->entries[(size_t)set * WAYS], *victim = &e[0];
    for (int w = 0; w < WAYS; w++) {
        if (e[w].id == u->id || e[w].id == 0) {
            victim = &e[w];
            if (e[w].id == u->id)
                break;
        } else if (victim->id != 0 && victim->id != u->id && e[w].fetched_ms < victim->fetched_ms) {
            victim = &e[w];
        }
    }
    victim->id = u->id;
    victim->fetched_ms = now;
    victim->created_at_ms = u->created_at_ms;
    memcpy(victim->username, u->username, sizeof victim->username);
    victim->admin = u->admin;
    victim->disabled = u->disabled;
}

/* Drops id's entry and tells misses in flight on its stripe not to insert what they read. */
static void invalidate(cache_t *c, uint64_t id)
{
    uint32_t set = set_of(c, id);
    stripe_t *st = stripe_of(c, set);
    pthread_mutex_lock(&st->lock);
    entry_t *e = &c->entries[(size_t)set * WAYS];
    for (int w = 0; w < WAYS; w++)
        if (e[w].id == id)
            memset(&e[w], 0, sizeof e[w]);
    st->generation++;
    pthread_mutex_unlock(&st->lock);
}

int gh_user_get_by_id_cached(gh_user_store_t *base, uint64_t id, gh_user_t *out)
{
    if (base->ops != &cache_ops) {
        int rc = base->ops->get_by_id(base, id, out);
        if (rc == 0) /* the same answer as from the cache, whatever the store */
            memset(out->password_hash, 0, sizeof out->password_hash);
        return rc;
    }
    cache_t *c = (cache_t *)base;
    if (id == 0)
        return GH_ENOTFOUND;
    uint32_t set = set_of(c, id);
    stripe_t *st = stripe_of(c, set);
    int64_t now = gh_clock_now_ms();
    pthread_mutex_lock(&st->lock);
    bool hit = find_fresh(c, set, id, now, c->ttl_ms, out, NULL);
    uint64_t gen = st->generation;
    pthread_mutex_unlock(&st->lock);
    if (hit)
        return 0;
    int rc = c->backend->ops->get_by_id(c->backend, id, out);
    /* GH_ESTORE: no answer or an error; GH_EBUSY: every connection is stuck (a store that
     * hangs rather than refuses). */
    bool unreachable = rc == GH_ESTORE || rc == GH_EBUSY;
    if (unreachable && c->stale_max_ms > 0) {
        /* The store does not answer: the last known record, if it is young enough. An entry
         * dropped by a write (invalidate) is gone, so a deleted user never comes back here. */
        int64_t age = 0;
        pthread_mutex_lock(&st->lock);
        hit = find_fresh(c, set, id, now, c->stale_max_ms, out, &age);
        pthread_mutex_unlock(&st->lock);
        if (!hit) {
            atomic_fetch_add_explicit(&c->refused_total, 1, memory_order_relaxed);
            return rc;
        }
        atomic_fetch_add_explicit(&c->stale_total, 1, memory_order_relaxed);
        int_fast64_t cur = atomic_load_explicit(&c->stale_age_max_ms, memory_order_relaxed);
        while (age > cur &&
               !atomic_compare_exchange_weak_explicit(&c->stale_age_max_ms, &cur, age,
                                                      memory_order_relaxed, memory_order_relaxed))
            ;
        return 0;
    }
    if (unreachable)
        atomic_fetch_add_explicit(&c->refused_total, 1, memory_order_relaxed);
    if (rc != 0)
        return rc;
    if (atomic_load_explicit(&c->stale_age_max_ms, memory_order_relaxed) != 0)
        atomic_store_explicit(&c->stale_age_max_ms, 0, memory_order_relaxed);
    memset(out->password_hash, 0, sizeof out->password_hash);
    pthread_mutex_lock(&st->lock);
    if (st->generation == gen)
        insert(c, set, out, now);
    pthread_mutex_unlock(&st->lock);
    return 0;
}

static int c_create(gh_user_store_t *base, const char *username, const char *hash, int64_t now,
                    gh_user_t *out)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->create(c->backend, username, hash, now, out);
}

static int c_get_by_name(gh_user_store_t *base, const char *username, gh_user_t *out)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->get_by_name(c->backend, username, out);
}

/* The uncached read, with the hash: for whoever must see the store's present state. */
static int c_get_by_id(gh_user_store_t *base, uint64_t id, gh_user_t *out)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->get_by_id(c->backend, id, out);
}

/* Invalidation follows the write (see the top of the file for why not before). */
static int c_set_password(gh_user_store_t *base, uint64_t id, const char *hash)
{
    cache_t *c = (cache_t *)base;
    int rc = c->backend->ops->set_password(c->backend, id, hash);
    invalidate(c, id);
    return rc;
}

static int c_del(gh_user_store_t *base, uint64_t id)
{
    cache_t *c = (cache_t *)base;
    int rc = c->backend->ops->del(c->backend, id);
    invalidate(c, id);
    return rc;
}

static int c_list(gh_user_store_t *base, uint64_t after, gh_user_t *out, size_t cap, size_t *n)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->list(c->backend, after, out, cap, n);
}

static int c_set_flags(gh_user_store_t *base, uint64_t id, int admin, int disabled)
{
    cache_t *c = (cache_t *)base;
    int rc = c->backend->ops->set_flags(c->backend, id, admin, disabled);
    invalidate(c, id);
    return rc;
}

static int c_search(gh_user_store_t *base, const char *prefix, uint64_t after, gh_user_t *out,
                    size_t cap, size_t *n)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->search(c->backend, prefix, after, out, cap, n);
}

static int c_audit_append(gh_user_store_t *base, gh_audit_event_t *ev)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->audit_append(c->backend, ev);
}

static int c_audit_read(gh_user_store_t *base, const gh_audit_query_t *q, gh_audit_event_t *out,
                        size_t cap, size_t *n)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->audit_read(c->backend, q, out, cap, n);
}

static int c_audit_prune(gh_user_store_t *base, int64_t before_ms, size_t max, size_t *removed)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->audit_prune(c->backend, before_ms, max, removed);
}

/* The change runs on the backend (its operations, not the cache's), so the user it touched is
 * dropped from the cache afterwards, as set_password, set_flags and del do. */
static int c_audited(gh_user_store_t *base, gh_audit_event_t *ev,
                     int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    cache_t *c = (cache_t *)base;
    int rc = c->backend->ops->audited(c->backend, ev, change, arg);
    if (ev->user_id)
        invalidate(c, ev->user_id);
    return rc;
}

static int c_ping(gh_user_store_t *base)
{
    cache_t *c = (cache_t *)base;
    return c->backend->ops->ping(c->backend);
}

static void c_close(gh_user_store_t **base)
{
    cache_t *c = (cache_t *)*base;
    gh_user_store_close(&c->backend);
    for (uint32_t i = 0; i < c->nstripes; i++)
        pthread_mutex_destroy(&c->stripes[i].lock);
    gh_mem_free(GH_MEM_USERS, c->entries);
    gh_mem_free(GH_MEM_USERS, c);
    *base = NULL;
}

/* Factors and the OpenID Connect tables are not cached: their operations go to the backend. */
static gh_user_store_t *c_inner(gh_user_store_t *base)
{
    return ((cache_t *)base)->backend;
}

static const gh_user_store_ops_t cache_ops = {
    .inner = c_inner,
    .name = "cache",
    .set_flags = c_set_flags,
    .search = c_search,
    .audit_append = c_audit_append,
    .audit_read = c_audit_read,
    .audit_prune = c_audit_prune,
    .audited = c_audited,
    .create = c_create,
    .get_by_name = c_get_by_name,
    .get_by_id = c_get_by_id,
    .set_password = c_set_password,
    .del = c_del,
    .list = c_list,
    .ping = c_ping,
    .close = c_close,
};

int gh_user_cache_open(gh_user_store_t *backend, const gh_user_cache_options_t *opt,
                       gh_user_store_t **out)
{
    if (!backend || !opt || opt->entries == 0 || opt->entries > GH_USER_CACHE_MAX ||
        opt->ttl_ms <= 0 || opt->stale_max_ms < 0 || opt->stale_max_ms > GH_USER_STALE_MAX_MS ||
        !out)
        return GH_EINVAL;
    uint32_t nsets = 1;
    while ((uint64_t)nsets * WAYS < opt->entries)
        nsets <<= 1;
    cache_t *c = gh_mem_calloc(GH_MEM_USERS, 1, sizeof *c);
    if (!c)
        return GH_ENOMEM;
    c->entries = gh_mem_calloc(GH_MEM_USERS, (size_t)nsets * WAYS, sizeof *c->entries);
    if (!c->entries) {
        gh_mem_free(GH_MEM_USERS, c);
        return GH_ENOMEM;
    }
    c->base.ops = &cache_ops;
    c->backend = backend;
    c->nsets = nsets;
    c->nstripes = nsets < MAX_STRIPES ? nsets : MAX_STRIPES;
    c->ttl_ms = opt->ttl_ms;
    c->stale_max_ms = opt->stale_max_ms;
    c->seed = (uint64_t)gh_clock_mono_ns() * 0x9e3779b97f4a7c15ULL;
    for (uint32_t i = 0; i < c->nstripes; i++)
        pthread_mutex_init(&c->stripes[i].lock, NULL);
    *out = &c->base;
    return 0;
}

void gh_user_cache_stats(gh_user_store_t *base, gh_user_cache_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!base || base->ops != &cache_ops)
        return;
    cache_t *c = (cache_t *)base;
    out->stale_total = atomic_load_explicit(&c->stale_total, memory_order_relaxed);
    out->refused_total = atomic_load_explicit(&c->refused_total, memory_order_relaxed);
    out->stale_age_max_ms = atomic_load_explicit(&c->stale_age_max_ms, memory_order_relaxed);
}
