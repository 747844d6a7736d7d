/*
 * grant_memory.c — the grant store in this node's memory (grant.h): codes, refresh-token
 * families and consents, each in its own accounted component.
 *
 * The one design decision: every table is a list in creation order plus chained hash indexes
 * over the same entries, and every entry of a table lives the same time (codes 60 s, families
 * refresh_ttl), so creation order is expiry order: expiry and eviction of the oldest both take
 * from the head in O(1), and a taken code's tombstone keeps its place. The hash indexes grow and
 * shrink with what they hold (a power of two from 64 buckets), so an emptied store returns to
 * exactly the bytes it started with.
 *
 * Indexes: codes by key; families by id, by the Gatehouse session's public id (a multi-map: a
 * logout walks one chain) and by user (a record per user with its families in creation order,
 * for the per-user bound and revoke_user); consents by (user, client) and by user (the same kind
 * of record). revoke_client walks every family and consent: it is an admin's rare act.
 *
 * Memory: code headers (a tombstone is just the header) and bodies (the nonce allocated in
 * exactly its length) are `oidc_codes`; families, their user records and the family indexes
 * `oidc_tokens`; consents, their user records and indexes `oidc_consents`. Entries holding
 * secrets' hashes, challenges and nonces are wiped when freed. One mutex guards everything.
 */
#include "store/grant.h"
#include "store/grant_internal.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include <sodium.h>

#include "mem/mem.h"

#define MIN_BUCKETS 64
#define CONTAINER(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- a chained hash index that grows and shrinks ---- */

typedef struct hnode {
    struct hnode *next;
    uint64_t h;
} hnode_t;

typedef struct {
    hnode_t **b;
    size_t n, count;
    gh_mem_component_t comp;
} htab_t;

static int ht_init(htab_t *t, gh_mem_component_t comp)
{
    t->comp = comp;
    t->n = MIN_BUCKETS;
    t->count = 0;
    t->b = gh_mem_calloc(comp, t->n, sizeof *t->b);
    return t->b ? 0 : GH_ENOMEM;
}

static void ht_free(htab_t *t)
{
    gh_mem_free(t->comp, t->b);
    t->b = NULL;
}

static void ht_resize(htab_t *t, size_t n)
{
    hnode_t **nb = gh_mem_calloc(t->comp, n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->n; i++) {
        hnode_t *e = t->b[i];
        while (e) {
            hnode_t *next = e->next;
            e->next = nb[e->h & (n - 1)];
            nb[e->h & (n - 1)] = e;
            e = next;
        }
    }
    gh_mem_free(t->comp, t->b);
    t->b = nb;
    t->n = n;
}

static hnode_t *ht_head(const htab_t *t, uint64_t h)
{
    return t->b[h & (t->n - 1)];
}

static void ht_insert(htab_t *t, hnode_t *e, uint64_t h)
{
    e->h = h;
    if (t->count + 1 > t->n)
        ht_resize(t, t->n * 2);
    hnode_t **slot = &t->b[h & (t->n - 1)];
    e->next = *slot;
    *slot = e;
    t->count++;
}

static void ht_remove(htab_t *t, hnode_t *e)
{
    hnode_t **pp = &t->b[e->h & (t->n - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
    t->count--;
    size_t n = t->n;
    while (n > MIN_BUCKETS && t->count < n / 8)
        n /= 2;
    if (n != t->n)
        ht_resize(t, n);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then mixed */
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 0x100000001b3ULL;
    return mix64(h);
}

static uint64_t hash_key(const uint8_t *key) /* already a hash or random */
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return h;
}

/* ---- entries ---- */

typedef struct code_body {
    char client_id[GH_GRANT_CLIENT_ID_MAX + 1];
    char session_id[GH_SESSION_ID_LEN + 1];
    char code_challenge[GH_GRANT_CHALLENGE_MAX + 1];
    uint8_t amr;
    uint8_t nonce_len;
    uint8_t redirect_hash[GH_GRANT_REDIRECT_HASH_LEN];
    uint64_t user_id;
    uint32_t scopes;
    int64_t auth_time_ms;
    char nonce[]; /* nonce_len bytes, no terminator */
} code_body_t;

typedef struct code {
    hnode_t node;
    struct code *prev, *next; /* creation order */
    code_body_t *body;        /* NULL: taken (a tombstone) */
    int64_t expires_at_ms;
    bool has_family;
    uint8_t key[GH_GRANT_KEY_LEN];
    uint8_t family_id[GH_GRANT_FAMILY_ID_LEN];
} code_t;

typedef struct user_rec user_rec_t;

typedef struct family {
    hnode_t by_id, by_session;
    struct family *prev, *next;           /* creation order */
    struct family *user_prev, *user_next; /* the user's, in creation order */
    user_rec_t *user;
    gh_grant_family_t f;
} family_t;

typedef struct consent {
    hnode_t node;
    struct consent *prev, *next;           /* given order */
    struct consent *user_prev, *user_next; /* the user's, in given order */
    user_rec_t *user;
    uint64_t user_id;
    uint32_t scopes;
    int64_t given_at_ms;
    uint8_t client_len;
    char client_id[]; /* client_len bytes + NUL */
} consent_t;

struct user_rec {
    hnode_t node;
    uint64_t user_id;
    uint32_t count;
    bool pinned;       /* an insert for this user is under way: keep the record */
    void *head, *tail; /* family_t or consent_t */
};

typedef struct {
    htab_t t;
    gh_mem_component_t comp;
} users_t;

typedef struct {
    gh_grant_store_t base;
    pthread_mutex_t lock;
    gh_grant_limits_t limits;
    gh_grant_hooks_t hooks;

    htab_t codes;
    code_t *c_head, *c_tail;

    htab_t fam_ids, fam_sessions;
    users_t fam_users;
    family_t *f_head, *f_tail;

    htab_t consents;
    users_t con_users;
    consent_t *k_head, *k_tail;

    gh_grant_stats_t stats;
} mem_t;

#define LIST_APPEND(head, tail, e, prev, next)                                                     \
    do {                                                                                           \
        (e)->prev = (tail);                                                                        \
        (e)->next = NULL;                                                                          \
        if (tail)                                                                                  \
            (tail)->next = (e);                                                                    \
        else                                                                                       \
            (head) = (e);                                                                          \
        (tail) = (e);                                                                              \
    } while (0)

#define LIST_UNLINK(head, tail, e, prev, next)                                                     \
    do {                                                                                           \
        if ((e)->prev)                                                                             \
            (e)->prev->next = (e)->next;                                                           \
        else                                                                                       \
            (head) = (e)->next;                                                                    \
        if ((e)->next)                                                                             \
            (e)->next->prev = (e)->prev;                                                           \
        else                                                                                       \
            (tail) = (e)->prev;                                                                    \
    } while (0)

/* ---- user records ---- */

static user_rec_t *user_find(users_t *u, uint64_t user_id)
{
    uint64_t h = mix64(user_id);
    for (hnode_t *n = ht_head(&u->t, h); n; n = n->next) {
        user_rec_t *r = CONTAINER(n, user_rec_t, node);
        if (n->h == h && r->user_id == user_id)
            return r;
    }
    return NULL;
}

static user_rec_t *user_get(users_t *u, uint64_t user_id)
{
    user_rec_t *r = user_find(u, user_id);
    if (r)
        return r;
    r = gh_mem_calloc(u->comp, 1, sizeof *r);
    if (!r)
        return NULL;
    r->user_id = user_id;
    ht_insert(&u->t, &r->node, mix64(user_id));
    return r;
}

static void user_drop_if_empty(users_t *u, user_rec_t *r)
{
    if (r->count || r->pinned)
        return;
    ht_remove(&u->t, &r->node);
    gh_mem_free(u->comp, r);
}

/* ---- codes ---- */

static code_t *code_find(mem_t *m, const uint8_t *key)
{
    uint64_t h = hash_key(key);
    for (hnode_t *n = ht_head(&m->codes, h); n; n = n->next) {
        code_t *c = CONTAINER(n, code_t, node);
        if (n->h == h && memcmp(c->key, key, GH_GRANT_KEY_LEN) == 0)
            return c;
    }
    return NULL;
}

static void code_free(mem_t *m, code_t *c)
{
    ht_remove(&m->codes, &c->node);
    LIST_UNLINK(m->c_head, m->c_tail, c, prev, next);
    if (c->body)
        gh_mem_free_secret(GH_MEM_OIDC_CODES, c->body);
    gh_mem_free_secret(GH_MEM_OIDC_CODES, c);
}

static size_t codes_expire(mem_t *m, int64_t now, size_t max)
{
    size_t n = 0;
    while (n < max && m->c_head && m->c_head->expires_at_ms <= now) {
        code_free(m, m->c_head);
        m->stats.expired++;
        n++;
    }
    return n;
}

static int m_put_code(gh_grant_store_t *b, const uint8_t *key, const gh_grant_code_t *c,
                      int64_t now)
{
    mem_t *m = (mem_t *)b;
    size_t nonce_len = strnlen(c->nonce, sizeof c->nonce);
    if (nonce_len > GH_GRANT_NONCE_MAX ||
        strnlen(c->client_id, sizeof c->client_id) > GH_GRANT_CLIENT_ID_MAX ||
        strnlen(c->code_challenge, sizeof c->code_challenge) > GH_GRANT_CHALLENGE_MAX ||
        strnlen(c->session_id, sizeof c->session_id) > GH_SESSION_ID_LEN)
        return GH_EINVAL;
    int ret = 0;
    pthread_mutex_lock(&m->lock);
    codes_expire(m, now, SIZE_MAX);
    if (code_find(m, key)) {
        ret = GH_EEXISTS;
        goto out;
    }
    if (m->codes.count >= m->limits.max_codes) {
        if (m->limits.policy == GH_POLICY_REFUSE) {
            m->stats.refused++;
            ret = GH_EBUSY;
            goto out;
        }
        code_free(m, m->c_head);
        m->stats.evicted++;
    }
    code_t *e = gh_mem_calloc(GH_MEM_OIDC_CODES, 1, sizeof *e);
    code_body_t *body = gh_mem_calloc(GH_MEM_OIDC_CODES, 1, sizeof *body + nonce_len);
    if (!e || !body) {
        gh_mem_free(GH_MEM_OIDC_CODES, e);
        gh_mem_free(GH_MEM_OIDC_CODES, body);
        ret = GH_ENOMEM;
        goto out;
    }
    memcpy(body->client_id, c->client_id, sizeof body->client_id);
    body->client_id[GH_GRANT_CLIENT_ID_MAX] = '\0';
    memcpy(body->session_id, c->session_id, sizeof body->session_id);
    body->session_id[GH_SESSION_ID_LEN] = '\0';
    memcpy(body->code_challenge, c->code_challenge, sizeof body->code_challenge);
    body->code_challenge[GH_GRANT_CHALLENGE_MAX] = '\0';
    memcpy(body->redirect_hash, c->redirect_hash, sizeof body->redirect_hash);
    body->user_id = c->user_id;
    body->scopes = c->scopes;
    body->auth_time_ms = c->auth_time_ms;
    body->amr = c->amr;
    body->nonce_len = (uint8_t)nonce_len;
    memcpy(body->nonce, c->nonce, nonce_len);
    e->body = body;
    memcpy(e->key, key, GH_GRANT_KEY_LEN);
    e->expires_at_ms = now + GH_GRANT_CODE_TTL_MS;
    ht_insert(&m->codes, &e->node, hash_key(key));
    LIST_APPEND(m->c_head, m->c_tail, e, prev, next);
out:
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_take_code(gh_grant_store_t *b, const uint8_t *key, int64_t now, gh_grant_code_t *out)
{
    mem_t *m = (mem_t *)b;
    int ret = 0;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    codes_expire(m, now, SIZE_MAX);
    code_t *e = code_find(m, key);
    if (!e) {
        ret = GH_ENOTFOUND;
    } else if (!e->body) {
        out->has_family = e->has_family;
        memcpy(out->family_id, e->family_id, GH_GRANT_FAMILY_ID_LEN);
        out->expires_at_ms = e->expires_at_ms;
        m->stats.replays++;
        ret = GH_EREPLAY;
    } else {
        const code_body_t *d = e->body;
        memcpy(out->client_id, d->client_id, sizeof out->client_id);
        memcpy(out->session_id, d->session_id, sizeof out->session_id);
        memcpy(out->code_challenge, d->code_challenge, sizeof out->code_challenge);
        memcpy(out->redirect_hash, d->redirect_hash, sizeof out->redirect_hash);
        memcpy(out->nonce, d->nonce, d->nonce_len);
        out->nonce[d->nonce_len] = '\0';
        out->user_id = d->user_id;
        out->scopes = d->scopes;
        out->auth_time_ms = d->auth_time_ms;
        out->amr = d->amr;
        out->expires_at_ms = e->expires_at_ms;
        gh_mem_free_secret(GH_MEM_OIDC_CODES, e->body);
        e->body = NULL;
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_code_bind(gh_grant_store_t *b, const uint8_t *key, const uint8_t *family_id,
                       int64_t now)
{
    mem_t *m = (mem_t *)b;
    int ret = 0;
    pthread_mutex_lock(&m->lock);
    codes_expire(m, now, SIZE_MAX);
    code_t *e = code_find(m, key);
    if (!e || e->body) {
        ret = GH_ENOTFOUND;
    } else {
        memcpy(e->family_id, family_id, GH_GRANT_FAMILY_ID_LEN);
        e->has_family = true;
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

/* ---- families ---- */

static uint64_t hash_session(const char *sid)
{
    return hash_bytes(sid, strnlen(sid, GH_SESSION_ID_LEN));
}

static family_t *family_find(mem_t *m, const uint8_t *id)
{
    uint64_t h = hash_key(id);
    for (hnode_t *n = ht_head(&m->fam_ids, h); n; n = n->next) {
        family_t *f = CONTAINER(n, family_t, by_id);
        if (n->h == h && memcmp(f->f.id, id, GH_GRANT_FAMILY_ID_LEN) == 0)
            return f;
    }
    return NULL;
}

/* Frees a family; tells the hook unless it expired (lock held). */
static void family_free(mem_t *m, family_t *f, bool tell)
{
    if (tell && m->hooks.family_gone)
        m->hooks.family_gone(m->hooks.ctx, f->f.id);
    ht_remove(&m->fam_ids, &f->by_id);
    ht_remove(&m->fam_sessions, &f->by_session);
    LIST_UNLINK(m->f_head, m->f_tail, f, prev, next);
    user_rec_t *u = f->user;
    family_t *uh = u->head, *ut = u->tail;
    LIST_UNLINK(uh, ut, f, user_prev, user_next);
    u->head = uh;
    u->tail = ut;
    u->count--;
    user_drop_if_empty(&m->fam_users, u);
    gh_mem_free_secret(GH_MEM_OIDC_TOKENS, f);
}

static size_t families_expire(mem_t *m, int64_t now, size_t max)
{
    size_t n = 0;
    while (n < max && m->f_head && m->f_head->f.expires_at_ms <= now) {
        family_free(m, m->f_head, false);
        m->stats.expired++;
        n++;
    }
    return n;
}

static family_t *family_live(mem_t *m, const uint8_t *id, int64_t now)
{
    family_t *f = family_find(m, id);
    if (f && f->f.expires_at_ms <= now) {
        family_free(m, f, false);
        m->stats.expired++;
        f = NULL;
    }
    return f;
}

/* Inserts a family record as given (times included); the bounds apply. Lock held. */
static void consent_free(mem_t *m, consent_t *c, bool tell);

/* Makes room for one more family (consent: false) or consent (true) of the user u: the user's
 * own bound first, where their oldest makes room whatever the policy; then the table's bound,
 * where the oldest of all makes room unless the policy refuses. On a refusal counts it, drops u
 * if it is left empty and returns GH_EBUSY; the caller frees what it allocated. u is pinned
 * meanwhile, so evicting the user's last record cannot free it. */
static int make_room(mem_t *m, user_rec_t *u, bool consent)
{
    u->pinned = true;
    while (u->count >= m->limits.max_per_user) {
        if (consent)
            consent_free(m, (consent_t *)u->head, true);
        else
            family_free(m, (family_t *)u->head, true);
        m->stats.evicted++;
    }
    if ((consent ? m->consents.count : m->fam_ids.count) >= m->limits.max_families) {
        if (m->limits.policy == GH_POLICY_REFUSE) {
            m->stats.refused++;
            u->pinned = false;
            user_drop_if_empty(consent ? &m->con_users : &m->fam_users, u);
            return GH_EBUSY;
        }
        if (consent)
            consent_free(m, m->k_head, true);
        else
            family_free(m, m->f_head, true);
        m->stats.evicted++;
    }
    u->pinned = false;
    return 0;
}

static int family_insert(mem_t *m, const gh_grant_family_t *rec)
{
    if (family_find(m, rec->id))
        return GH_EEXISTS;
    family_t *f = gh_mem_calloc(GH_MEM_OIDC_TOKENS, 1, sizeof *f);
    if (!f)
        return GH_ENOMEM;
    user_rec_t *u = user_get(&m->fam_users, rec->user_id);
    if (!u) {
        gh_mem_free(GH_MEM_OIDC_TOKENS, f);
        return GH_ENOMEM;
    }
    if (make_room(m, u, false) != 0) {
        gh_mem_free(GH_MEM_OIDC_TOKENS, f);
        return GH_EBUSY;
    }
    f->f = *rec;
    f->f.client_id[GH_GRANT_CLIENT_ID_MAX] = '\0';
    f->f.session_id[GH_SESSION_ID_LEN] = '\0';
    f->user = u;
    ht_insert(&m->fam_ids, &f->by_id, hash_key(f->f.id));
    ht_insert(&m->fam_sessions, &f->by_session, hash_session(f->f.session_id));
    /* A restored family may be older than the newest: keep both lists in expiry order. */
    family_t *after = m->f_tail;
    while (after && after->f.expires_at_ms > f->f.expires_at_ms)
        after = after->prev;
    f->prev = after;
    f->next = after ? after->next : m->f_head;
    if (f->next)
        f->next->prev = f;
    else
        m->f_tail = f;
    if (after)
        after->next = f;
    else
        m->f_head = f;
    family_t *ua = u->tail;
    while (ua && ua->f.created_at_ms > f->f.created_at_ms)
        ua = ua->user_prev;
    f->user_prev = ua;
    f->user_next = ua ? ua->user_next : (family_t *)u->head;
    if (f->user_next)
        f->user_next->user_prev = f;
    else
        u->tail = f;
    if (ua)
        ua->user_next = f;
    else
        u->head = f;
    u->count++;
    return 0;
}

static int m_family_create(gh_grant_store_t *b, const gh_grant_family_t *in, int64_t now,
                           gh_grant_family_t *out)
{
    mem_t *m = (mem_t *)b;
    if (strnlen(in->client_id, sizeof in->client_id) > GH_GRANT_CLIENT_ID_MAX ||
        strnlen(in->session_id, sizeof in->session_id) > GH_SESSION_ID_LEN)
        return GH_EINVAL;
    gh_grant_family_t rec = *in;
    rec.created_at_ms = now;
    rec.expires_at_ms = now + m->limits.refresh_ttl_ms;
    rec.generation = 0;
    pthread_mutex_lock(&m->lock);
    families_expire(m, now, SIZE_MAX);
    int ret = family_insert(m, &rec);
    pthread_mutex_unlock(&m->lock);
    if (ret == 0 && out)
        *out = rec;
    return ret;
}

static int m_family_get(gh_grant_store_t *b, const uint8_t *id, int64_t now, gh_grant_family_t *out)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    family_t *f = family_live(m, id, now);
    if (f)
        *out = f->f;
    pthread_mutex_unlock(&m->lock);
    return f ? 0 : GH_ENOTFOUND;
}

static int m_family_rotate(gh_grant_store_t *b, const uint8_t *id, const uint8_t *presented,
                           const uint8_t *new_refresh, const uint8_t *new_access,
                           int64_t access_expires_at, int64_t now, gh_grant_family_t *out)
{
    mem_t *m = (mem_t *)b;
    int ret = 0;
    pthread_mutex_lock(&m->lock);
    family_t *f = family_live(m, id, now);
    if (!f) {
        ret = GH_ENOTFOUND;
    } else if (sodium_memcmp(f->f.refresh_hash, presented, GH_GRANT_HASH_LEN) != 0) {
        if (out)
            *out = f->f;
        m->stats.reuse++;
        family_free(m, f, true);
        ret = GH_EREUSE;
    } else {
        memcpy(f->f.refresh_hash, new_refresh, GH_GRANT_HASH_LEN);
        memcpy(f->f.access_hash, new_access, GH_GRANT_HASH_LEN);
        f->f.access_expires_at_ms = access_expires_at;
        f->f.generation++;
        if (out)
            *out = f->f;
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_family_check_access(gh_grant_store_t *b, const uint8_t *id, const uint8_t *access,
                                 int64_t now, gh_grant_family_t *out)
{
    mem_t *m = (mem_t *)b;
    int ret = GH_ENOTFOUND;
    pthread_mutex_lock(&m->lock);
    family_t *f = family_live(m, id, now);
    if (f && f->f.access_expires_at_ms > now &&
        sodium_memcmp(f->f.access_hash, access, GH_GRANT_HASH_LEN) == 0) {
        if (out)
            *out = f->f;
        ret = 0;
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_family_revoke(gh_grant_store_t *b, const uint8_t *id)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    family_t *f = family_find(m, id);
    if (f)
        family_free(m, f, true);
    pthread_mutex_unlock(&m->lock);
    return f ? 0 : GH_ENOTFOUND;
}

static int m_revoke_session(gh_grant_store_t *b, const char *sid, size_t *n)
{
    mem_t *m = (mem_t *)b;
    size_t k = 0;
    uint64_t h = hash_session(sid);
    pthread_mutex_lock(&m->lock);
    hnode_t *node = ht_head(&m->fam_sessions, h);
    while (node) {
        hnode_t *next = node->next;
        family_t *f = CONTAINER(node, family_t, by_session);
        if (node->h == h && strncmp(f->f.session_id, sid, GH_SESSION_ID_LEN + 1) == 0) {
            family_free(m, f, true); /* may shrink the index: start the chain again */
            k++;
            next = ht_head(&m->fam_sessions, h);
        }
        node = next;
    }
    pthread_mutex_unlock(&m->lock);
    if (n)
        *n = k;
    return 0;
}

static int m_revoke_user(gh_grant_store_t *b, uint64_t user_id, size_t *n)
{
    mem_t *m = (mem_t *)b;
    size_t k = 0;
    pthread_mutex_lock(&m->lock);
    user_rec_t *u;
    while ((u = user_find(&m->fam_users, user_id)) != NULL) {
        family_free(m, (family_t *)u->head, true); /* the last one frees u */
        k++;
    }
    pthread_mutex_unlock(&m->lock);
    if (n)
        *n = k;
    return 0;
}

/* ---- consents ---- */

static uint64_t hash_consent(uint64_t user_id, const char *client_id)
{
    return mix64(user_id) ^ hash_bytes(client_id, strlen(client_id));
}

static consent_t *consent_find(mem_t *m, uint64_t user_id, const char *client_id)
{
    uint64_t h = hash_consent(user_id, client_id);
    for (hnode_t *n = ht_head(&m->consents, h); n; n = n->next) {
        consent_t *c = CONTAINER(n, consent_t, node);
        if (n->h == h && c->user_id == user_id && strcmp(c->client_id, client_id) == 0)
            return c;
    }
    return NULL;
}

static void consent_free(mem_t *m, consent_t *c, bool tell)
{
    if (tell && m->hooks.consent_gone)
        m->hooks.consent_gone(m->hooks.ctx, c->user_id, c->client_id);
    ht_remove(&m->consents, &c->node);
    LIST_UNLINK(m->k_head, m->k_tail, c, prev, next);
    user_rec_t *u = c->user;
    consent_t *uh = u->head, *ut = u->tail;
    LIST_UNLINK(uh, ut, c, user_prev, user_next);
    u->head = uh;
    u->tail = ut;
    u->count--;
    user_drop_if_empty(&m->con_users, u);
    gh_mem_free(GH_MEM_OIDC_CONSENTS, c);
}

static int m_consent_put(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t scopes, int64_t now)
{
    mem_t *m = (mem_t *)b;
    size_t len = strnlen(client_id, GH_GRANT_CLIENT_ID_MAX + 1);
    if (len == 0 || len > GH_GRANT_CLIENT_ID_MAX)
        return GH_EINVAL;
    int ret = 0;
    pthread_mutex_lock(&m->lock);
    consent_t *c = consent_find(m, user_id, client_id);
    if (c) { /* replaced: now the newest given */
        c->scopes = scopes;
        c->given_at_ms = now;
        LIST_UNLINK(m->k_head, m->k_tail, c, prev, next);
        LIST_APPEND(m->k_head, m->k_tail, c, prev, next);
        user_rec_t *u = c->user;
        consent_t *uh = u->head, *ut = u->tail;
        LIST_UNLINK(uh, ut, c, user_prev, user_next);
        LIST_APPEND(uh, ut, c, user_prev, user_next);
        u->head = uh;
        u->tail = ut;
        goto out;
    }
    user_rec_t *u = user_get(&m->con_users, user_id);
    c = u ? gh_mem_calloc(GH_MEM_OIDC_CONSENTS, 1, sizeof *c + len + 1) : NULL;
    if (!c) {
        if (u)
            user_drop_if_empty(&m->con_users, u);
        ret = GH_ENOMEM;
        goto out;
    }
    if (make_room(m, u, true) != 0) {
        gh_mem_free(GH_MEM_OIDC_CONSENTS, c);
        ret = GH_EBUSY;
        goto out;
    }
    c->user_id = user_id;
    c->scopes = scopes;
    c->given_at_ms = now;
    c->client_len = (uint8_t)len;
    memcpy(c->client_id, client_id, len);
    c->user = u;
    ht_insert(&m->consents, &c->node, hash_consent(user_id, c->client_id));
    LIST_APPEND(m->k_head, m->k_tail, c, prev, next);
    consent_t *uh = u->head, *ut = u->tail;
    LIST_APPEND(uh, ut, c, user_prev, user_next);
    u->head = uh;
    u->tail = ut;
    u->count++;
out:
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_consent_get(gh_grant_store_t *b, uint64_t user_id, const char *client_id,
                         uint32_t *scopes)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    consent_t *c = consent_find(m, user_id, client_id);
    if (c)
        *scopes = c->scopes;
    pthread_mutex_unlock(&m->lock);
    return c ? 0 : GH_ENOTFOUND;
}

static int m_consent_revoke(gh_grant_store_t *b, uint64_t user_id, const char *client_id)
{
    mem_t *m = (mem_t *)b;
    int ret = GH_ENOTFOUND;
    pthread_mutex_lock(&m->lock);
    if (client_id) {
        consent_t *c = consent_find(m, user_id, client_id);
        if (c) {
            consent_free(m, c, true);
            ret = 0;
        }
    } else {
        user_rec_t *u;
        while ((u = user_find(&m->con_users, user_id)) != NULL) {
            consent_free(m, (consent_t *)u->head, true);
            ret = 0;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return ret;
}

static int m_revoke_client(gh_grant_store_t *b, const char *client_id, size_t *n)
{
    mem_t *m = (mem_t *)b;
    size_t k = 0;
    pthread_mutex_lock(&m->lock);
    for (family_t *f = m->f_head, *next; f; f = next) {
        next = f->next;
        if (strcmp(f->f.client_id, client_id) == 0) {
            family_free(m, f, true);
            k++;
        }
    }
    for (consent_t *c = m->k_head, *next; c; c = next) {
        next = c->next;
        if (strcmp(c->client_id, client_id) == 0)
            consent_free(m, c, true);
    }
    pthread_mutex_unlock(&m->lock);
    if (n)
        *n = k;
    return 0;
}

/* ---- the rest ---- */

static size_t m_expire(gh_grant_store_t *b, int64_t now, size_t max)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    size_t n = codes_expire(m, now, max);
    if (n < max)
        n += families_expire(m, now, max - n);
    pthread_mutex_unlock(&m->lock);
    return n;
}

static void m_stats(gh_grant_store_t *b, gh_grant_stats_t *out)
{
    mem_t *m = (mem_t *)b;
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    out->codes = m->codes.count;
    out->families = m->fam_ids.count;
    out->consents = m->consents.count;
    pthread_mutex_unlock(&m->lock);
    out->bytes = gh_mem_bytes(GH_MEM_OIDC_CODES) + gh_mem_bytes(GH_MEM_OIDC_TOKENS) +
                 gh_mem_bytes(GH_MEM_OIDC_CONSENTS);
}

/* The hash tables of the store (not what they point to); each may be unallocated. */
static void free_tables(mem_t *m)
{
    ht_free(&m->codes);
    ht_free(&m->fam_ids);
    ht_free(&m->fam_sessions);
    ht_free(&m->fam_users.t);
    ht_free(&m->consents);
    ht_free(&m->con_users.t);
}

static void m_destroy(gh_grant_store_t **b)
{
    mem_t *m = (mem_t *)*b;
    while (m->c_head)
        code_free(m, m->c_head);
    while (m->f_head)
        family_free(m, m->f_head, false);
    while (m->k_head)
        consent_free(m, m->k_head, false);
    free_tables(m);
    pthread_mutex_destroy(&m->lock);
    gh_mem_free(GH_MEM_OIDC_TOKENS, m);
    *b = NULL;
}

static const gh_grant_ops_t memory_ops = {
    .name = "memory",
    .put_code = m_put_code,
    .take_code = m_take_code,
    .code_bind_family = m_code_bind,
    .family_create = m_family_create,
    .family_get = m_family_get,
    .family_rotate = m_family_rotate,
    .family_check_access = m_family_check_access,
    .family_revoke = m_family_revoke,
    .revoke_session = m_revoke_session,
    .revoke_user = m_revoke_user,
    .revoke_client = m_revoke_client,
    .consent_put = m_consent_put,
    .consent_get = m_consent_get,
    .consent_revoke = m_consent_revoke,
    .expire = m_expire,
    .stats = m_stats,
    .destroy = m_destroy,
};

int gh_grant_limits_check(const gh_grant_limits_t *l)
{
    if (!l || l->max_codes == 0 || l->max_codes > (1u << 26) || l->max_families == 0 ||
        l->max_families > (1u << 28) || l->max_per_user == 0 || l->refresh_ttl_ms <= 0)
        return GH_EINVAL;
    return 0;
}

int gh_grant_memory_open(const gh_grant_limits_t *limits, gh_grant_store_t **out)
{
    *out = NULL;
    if (gh_grant_limits_check(limits) != 0)
        return GH_EINVAL;
    mem_t *m = gh_mem_calloc(GH_MEM_OIDC_TOKENS, 1, sizeof *m);
    if (!m)
        return GH_ENOMEM;
    m->base.ops = &memory_ops;
    m->limits = *limits;
    m->fam_users.comp = GH_MEM_OIDC_TOKENS;
    m->con_users.comp = GH_MEM_OIDC_CONSENTS;
    if (ht_init(&m->codes, GH_MEM_OIDC_CODES) != 0 ||
        ht_init(&m->fam_ids, GH_MEM_OIDC_TOKENS) != 0 ||
        ht_init(&m->fam_sessions, GH_MEM_OIDC_TOKENS) != 0 ||
        ht_init(&m->fam_users.t, GH_MEM_OIDC_TOKENS) != 0 ||
        ht_init(&m->consents, GH_MEM_OIDC_CONSENTS) != 0 ||
        ht_init(&m->con_users.t, GH_MEM_OIDC_CONSENTS) != 0) {
        free_tables(m);
        gh_mem_free(GH_MEM_OIDC_TOKENS, m);
        return GH_ENOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    *out = &m->base;
    return 0;
}

/* ---- for the persistence layer (grant_internal.h) ---- */

bool gh_grant_memory_is(gh_grant_store_t *s)
{
    return s && s->ops == &memory_ops;
}

void gh_grant_memory_set_hooks(gh_grant_store_t *s, const gh_grant_hooks_t *hooks)
{
    mem_t *m = (mem_t *)s;
    pthread_mutex_lock(&m->lock);
    m->hooks = hooks ? *hooks : (gh_grant_hooks_t){0};
    pthread_mutex_unlock(&m->lock);
}

int gh_grant_memory_restore_family(gh_grant_store_t *s, const gh_grant_family_t *f, int64_t now)
{
    mem_t *m = (mem_t *)s;
    if (f->expires_at_ms <= now)
        return GH_EEXPIRED;
    if (f->expires_at_ms > f->created_at_ms + m->limits.refresh_ttl_ms) {
        gh_grant_family_t g = *f; /* a shorter --oidc-refresh-ttl now: it holds */
        g.expires_at_ms = f->created_at_ms + m->limits.refresh_ttl_ms;
        if (g.expires_at_ms <= now)
            return GH_EEXPIRED;
        pthread_mutex_lock(&m->lock);
        int ret = family_insert(m, &g);
        pthread_mutex_unlock(&m->lock);
        return ret;
    }
    pthread_mutex_lock(&m->lock);
    int ret = family_insert(m, f);
    pthread_mutex_unlock(&m->lock);
    return ret;
}

size_t gh_grant_memory_family_ids(gh_grant_store_t *s, gh_grant_select_t by, uint64_t user_id,
                                  const char *key, uint8_t (*out)[GH_GRANT_FAMILY_ID_LEN],
                                  size_t cap)
{
    mem_t *m = (mem_t *)s;
    size_t k = 0;
    pthread_mutex_lock(&m->lock);
    if (by == GH_GRANT_BY_USER) {
        user_rec_t *u = user_find(&m->fam_users, user_id);
        for (family_t *f = u ? u->head : NULL; f && k < cap; f = f->user_next)
            memcpy(out[k++], f->f.id, GH_GRANT_FAMILY_ID_LEN);
    } else if (by == GH_GRANT_BY_SESSION) {
        uint64_t h = hash_session(key);
        for (hnode_t *n = ht_head(&m->fam_sessions, h); n && k < cap; n = n->next) {
            family_t *f = CONTAINER(n, family_t, by_session);
            if (n->h == h && strncmp(f->f.session_id, key, GH_SESSION_ID_LEN + 1) == 0)
                memcpy(out[k++], f->f.id, GH_GRANT_FAMILY_ID_LEN);
        }
    } else {
        for (family_t *f = m->f_head; f && k < cap; f = f->next)
            if (strcmp(f->f.client_id, key) == 0)
                memcpy(out[k++], f->f.id, GH_GRANT_FAMILY_ID_LEN);
    }
    pthread_mutex_unlock(&m->lock);
    return k;
}

int gh_grant_memory_restore_consent(gh_grant_store_t *s, uint64_t user_id, const char *client_id,
                                    uint32_t scopes, int64_t given_at_ms)
{
    return m_consent_put(s, user_id, client_id, scopes, given_at_ms);
}

void gh_grant_memory_clear(gh_grant_store_t *s)
{
    mem_t *m = (mem_t *)s;
    pthread_mutex_lock(&m->lock);
    while (m->f_head)
        family_free(m, m->f_head, false);
    while (m->k_head)
        consent_free(m, m->k_head, false);
    pthread_mutex_unlock(&m->lock);
}
