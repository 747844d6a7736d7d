/*
 * pending_memory.c — pending logins in this node's memory (pending.h).
 *
 * Design decision: one list in creation order, which is also expiry order (every entry lives
 * the same GH_PENDING_TTL_MS), and a chained hash table over the same entries. Expiry and
 * eviction therefore both take from the head in O(1) each, and no timer is needed: every call
 * first drops what expired at its `now`. One mutex guards everything; the table is touched once
 * or twice per login of a user with a second factor, far from the token-check path.
 *
 * Memory: each entry is one gh_mem allocation of GH_MEM_PENDING (wiped when freed: it names a
 * user and holds a challenge), the bucket array one more, made at create; so the component
 * returns to exactly the bucket array when the table is empty.
 */
#include "store/pending.h"

#include <pthread.h>
#include <string.h>

#include "mem/mem.h"

typedef struct entry {
    struct entry *next_hash;
    struct entry *prev, *next; /* creation order */
    uint8_t key[GH_PENDING_KEY_LEN];
    gh_pending_t p;
} entry_t;

typedef struct {
    gh_pending_store_t base;
    pthread_mutex_t lock;
    entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t cap, live;
    gh_session_policy_t policy;
    entry_t *head, *tail;
    gh_pending_stats_t stats;
} mem_t;

static size_t bucket_of(const mem_t *m, const uint8_t *key)
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* the key is a hash already */
    return (size_t)h & (m->nbuckets - 1);
}

static entry_t **find(mem_t *m, const uint8_t *key)
{
    entry_t **pp = &m->buckets[bucket_of(m, key)];
    while (*pp && memcmp((*pp)->key, key, GH_PENDING_KEY_LEN) != 0)
        pp = &(*pp)->next_hash;
    return pp;
}

static void unlink_free(mem_t *m, entry_t *e)
{
    entry_t **pp = find(m, e->key);
    if (*pp == e)
        *pp = e->next_hash;
    if (e->prev)
        e->prev->next = e->next;
    else
        m->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        m->tail = e->prev;
    m->live--;
    gh_mem_free_secret(GH_MEM_PENDING, e);
}

/* Drops expired entries from the head, at most max (lock held). */
static size_t expire_locked(mem_t *m, int64_t now, size_t max)
{
    size_t n = 0;
    while (n < max && m->head && m->head->p.expires_at_ms <= now) {
        unlink_free(m, m->head);
        m->stats.expired++;
        n++;
    }
    return n;
}

static entry_t *lookup(mem_t *m, const uint8_t *key, int64_t now)
{
    expire_locked(m, now, SIZE_MAX);
    return *find(m, key);
}

static int m_put(gh_pending_store_t *b, const uint8_t *key, const gh_pending_t *p, int64_t now)
{
    mem_t *m = (mem_t *)b;
    int ret = 0;
    pthread_mutex_lock(&m->lock);
    expire_locked(m, now, SIZE_MAX);
    if (m->live >= m->cap) {
        if (m->policy == GH_POLICY_REFUSE) {
            m->stats.refused++;
            ret = GH_EBUSY;
            goto out;
        }
        unlink_free(m, m->head);
        m->stats.evicted++;
    }
    if (*find(m, key)) {
        ret = GH_EEXISTS; /* a 256-bit random token twice: never */
        goto out;
    }
    entry_t *e = gh_mem_calloc(GH_MEM_PENDING, 1, sizeof *e);
    if (!e) {
        ret = GH_ENOMEM;
        goto out;
    }
    memcpy(e->key, key, GH_PENDING_KEY_LEN);
    e->p = *p;
    e->p.created_at_ms = now;
    e->p.expires_at_ms = now + GH_PENDING_TTL_MS;
    e->p.failures = 0;
    entry_t **slot = &m->buckets[bucket_of(m, key)];
    e->next_hash = *slot;
    *slot = e;
    e->prev = m->tail;
    if (m->tail)
        m->tail->next = e;
    else
        m->head = e;
    m->tail = e;
    m->live++;
out:
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_get(gh_pending_store_t *b, const uint8_t *key, int64_t now, gh_pending_t *out)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    entry_t *e = lookup(m, key, now);
    if (e)
        *out = e->p;
    pthread_mutex_unlock(&m->lock);
    return e ? 0 : GH_ENOTFOUND;
}

static int m_fail(gh_pending_store_t *b, const uint8_t *key, int64_t now, uint32_t *left)
{
    mem_t *m = (mem_t *)b;
    int ret = 0;
    *left = 0;
    pthread_mutex_lock(&m->lock);
    entry_t *e = lookup(m, key, now);
    if (!e) {
        ret = GH_ENOTFOUND;
    } else if (++e->p.failures >= GH_PENDING_MAX_FAILURES) {
        unlink_free(m, e);
        m->stats.expired++;
        ret = GH_EEXPIRED;
    } else {
        *left = GH_PENDING_MAX_FAILURES - e->p.failures;
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_take(gh_pending_store_t *b, const uint8_t *key, int64_t now, gh_pending_t *out)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    entry_t *e = lookup(m, key, now);
    if (e) {
        *out = e->p;
        unlink_free(m, e);
    }
    pthread_mutex_unlock(&m->lock);
    return e ? 0 : GH_ENOTFOUND;
}

static int m_set_challenge(gh_pending_store_t *b, const uint8_t *key, const uint8_t *c, size_t len,
                           int64_t now)
{
    if (len > GH_PENDING_CHALLENGE_MAX)
        return GH_EINVAL;
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    entry_t *e = lookup(m, key, now);
    if (e) {
        memcpy(e->p.challenge, c, len);
        e->p.challenge_len = len;
    }
    pthread_mutex_unlock(&m->lock);
    return e ? 0 : GH_ENOTFOUND;
}

static size_t m_expire(gh_pending_store_t *b, int64_t now, size_t max)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    size_t n = expire_locked(m, now, max);
    pthread_mutex_unlock(&m->lock);
    return n;
}

static void m_stats(gh_pending_store_t *b, gh_pending_stats_t *out)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    out->live = m->live;
    pthread_mutex_unlock(&m->lock);
}

static void m_destroy(gh_pending_store_t **b)
{
    mem_t *m = (mem_t *)*b;
    while (m->head)
        unlink_free(m, m->head);
    gh_mem_free(GH_MEM_PENDING, m->buckets);
    pthread_mutex_destroy(&m->lock);
    gh_mem_free(GH_MEM_PENDING, m);
    *b = NULL;
}

static const gh_pending_ops_t memory_ops = {
    .name = "memory",
    .put = m_put,
    .get = m_get,
    .fail_step = m_fail,
    .take = m_take,
    .set_challenge = m_set_challenge,
    .expire = m_expire,
    .stats = m_stats,
    .destroy = m_destroy,
};

int gh_pending_memory_create(size_t cap, gh_session_policy_t policy, gh_pending_store_t **out)
{
    *out = NULL;
    if (cap == 0 || cap > (1u << 24))
        return GH_EINVAL;
    mem_t *m = gh_mem_calloc(GH_MEM_PENDING, 1, sizeof *m);
    if (!m)
        return GH_ENOMEM;
    m->nbuckets = 16;
    while (m->nbuckets < cap)
        m->nbuckets <<= 1;
    m->buckets = gh_mem_calloc(GH_MEM_PENDING, m->nbuckets, sizeof *m->buckets);
    if (!m->buckets) {
        gh_mem_free(GH_MEM_PENDING, m);
        return GH_ENOMEM;
    }
    m->base.ops = &memory_ops;
    m->cap = cap;
    m->policy = policy;
    pthread_mutex_init(&m->lock, NULL);
    *out = &m->base;
    return 0;
}
