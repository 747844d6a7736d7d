/*
 * session_memory.c — the in-memory session store: every live session in one process, a fixed
 * and accounted number of bytes each, and every byte back when the session ends.
 *
 * The one decision a reader must know: sessions live in a DENSE array of fixed 112-byte records
 * (chunks of 1024), linked to each other by 32-bit indices, and a session that ends is replaced
 * by the last record (swap-remove). So n sessions always occupy exactly ceil(n/1024) chunks, a
 * store never fragments, and its bytes are a function of how many sessions and users it holds —
 * which is what lets the tests demand an exact return to baseline and the watchdog read growth
 * that live sessions don't explain as a leak. The price is that a record's index changes when it
 * moves; nothing outside this file ever sees an index, and inside, a move fixes every link to it.
 *
 * Record (rec_t, 112 bytes, 4-byte aligned):
 *   token_hash 32 | public id 16 | user_id 8 | created_ms 8 |
 *   last_seen, expires as 32-bit offsets from created in ticks (1 ms unless session_ttl >
 *   49.7 days) 8 | token-table chain 4 | LRU prev/next 8 | deadline-list prev/next 8 |
 *   per-user ring prev/next 8 | user-table chain 4 + session count 4 (used on the user's newest) |
 *   client id 4
 * Tables: two linear-hashing tables (token hash -> session; user id -> the user's newest
 * session) of 4-byte buckets, load kept in [0.5, 1], so 4..8 bytes each per entry.
 * Accounted bytes per session: 112 + 4..8 (token table) + 4..8 per user (user table), plus
 * chunk/directory overhead below 0.1 — about 121 at one session per user after growth. There is
 * no separate per-user entry: a user "exists" exactly while the user table chains their newest
 * session, so the user index is bounded by and freed with the sessions.
 *
 * Clients (IP, user agent; up to 206 bytes of text) are not in the record: most sessions of a
 * deployment come from few clients, so each distinct client is one refcounted entry of an
 * intern table and a record holds its 4-byte id (0 = unknown, no entry). What a client sends is
 * the key, so the table is bounded — max_clients entries and GH_SESSION_CLIENT_AVG_BYTES each on
 * average, inside the session budget too — and a create that finds it full gets the unknown
 * client instead of failing. Its hash is SipHash keyed per store, so no client can aim for one
 * bucket. An entry goes with the last session naming it, and the table's index with the last
 * entry, so an empty store is back at its baseline to the byte.
 *
 * Expiry, exact and incremental, without a timer wheel: the idle TTL is the same for every
 * session, so idle-deadline order is least-recently-used order, and the absolute deadline is
 * created + session_ttl, so deadline order is creation order. Two doubly linked lists (LRU by
 * last_seen; deadline list by expires) are kept sorted by appending at the tail, because the
 * store's clock never goes back (a `now` older than one already seen is taken as the latest).
 * Any session past a deadline then sits at the head of one of the two lists: expire() pops heads,
 * one unit of work each. LRU eviction for the budget is the same O(1) pop. Restored sessions
 * (persistence) may arrive in any order; they are appended and the lists are sorted once, on the
 * next expire or eviction (a radix sort through a temporary array, or an in-place merge when that
 * array cannot be had), once per restore batch.
 *
 * Growth and shrink never pause: the tables use linear hashing (Litwin), splitting one bucket per
 * insert and merging one or two per removal, with buckets in segments of doubling size (256, 256,
 * 512, 1024, ...) that are allocated when the first bucket in them is used (no copy, no rehash,
 * pages touched only as buckets split) and freed when the last one is merged away. Worst pause:
 * one allocation of up to half the table (a malloc; nothing is copied) or, every 1024 sessions,
 * one chunk; the chunk directory doubles by copying n/1024 pointers. Ending sessions never
 * allocates (removal frees only), so lookup, end and expire need no memory.
 *
 * Locking: one mutex per store. Every operation is O(1) pointer work (a few cache misses), the
 * expensive parts (token hashing, random ids) run before the lock, and a single lock keeps what
 * striping would break: one global LRU for exact budget eviction, one byte count against one
 * budget, and per-user rings that span the whole table. The cost, measured by bench_store at a
 * million sessions on a 2-core VM: ~2.9M lookups/s from one thread, ~2.4M/s from two (the lock's
 * cache line moves between cores) — an order of magnitude above what the HTTP layer can ask.
 * If that ever binds, shard whole stores by token hash and give each shard its slice of the
 * budget; the code inside a shard stays as it is.
 */
#include "store/session.h"

#include <assert.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "mem/mem.h"

#define NIL UINT32_MAX
#define CHUNK_SHIFT 10
#define CHUNK_RECS (1u << CHUNK_SHIFT)
#define LH_MIN_SHIFT 8
#define LH_MIN (1u << LH_MIN_SHIFT) /* buckets in segment 0: the table's floor */
#define LH_NSEG 25                  /* segment 0 plus 24 doubling ones: 2^32 buckets */
#define MAX_SESSIONS ((1u << 31) - 1)
#define MAX_TTL_MS ((int64_t)100 * 366 * 24 * 3600 * 1000)

typedef struct {
    uint8_t token_hash[GH_TOKEN_HASH_LEN];
    uint8_t id[GH_SESSION_ID_RAW_LEN];
    uint32_t user_id[2];    /* lo, hi: 64-bit fields split so the record stays 4-byte aligned */
    uint32_t created_ms[2]; /* lo, hi */
    uint32_t last_seen;     /* ticks after created */
    uint32_t expires;       /* ticks after created: the absolute deadline */
    uint32_t hash_next;     /* token table chain */
    uint32_t lru_prev, lru_next;
    uint32_t dl_prev, dl_next;     /* deadline list */
    uint32_t user_prev, user_next; /* ring of the user's sessions; user_next goes to older */
    uint32_t user_chain;           /* user table chain (meaningful on the user's newest only) */
    uint32_t user_count;           /* the user's sessions (meaningful on the newest only) */
    uint32_t client : 28;          /* id in the client table (<= 2^24); 0 = unknown */
    uint32_t amr : 4;              /* GH_AMR_* of the sign-in */
} rec_t;
_Static_assert(sizeof(rec_t) == 112, "a session record is 112 bytes");

/* One distinct client, shared by every session whose record names its id. */
typedef struct {
    uint32_t next; /* hash chain: the next id in the bucket, 0 = end */
    uint32_t refs; /* records naming this id */
    uint32_t key;  /* SipHash of the text */
    uint8_t ip_len, ua_len;
    char text[]; /* ip, NUL, user agent, NUL */
} client_t;

/* The client table's index: slot k holds the entry whose id is k + 1 and, independently, the
 * head of hash bucket k (the table has as many buckets as slots). */
typedef struct {
    client_t *entry;    /* NULL when the id is free */
    uint32_t bucket;    /* first id in bucket k, 0 = empty */
    uint32_t free_next; /* next free id while entry is NULL, 0 = end */
} cslot_t;

#define CLIENT_SLOTS_MIN 16
#define CLIENTS_MAX (1u << 24)

typedef struct {
    uint32_t *seg[LH_NSEG]; /* seg[k] holds buckets [seg_start(k), seg_start(k+1)) */
    uint32_t m;             /* buckets in use */
    uint32_t level;         /* 2^level <= m < 2^(level+1) */
    uint32_t count;         /* entries */
    uint32_t nseg;          /* seg[0..nseg-1] are allocated */
    uint32_t seg0[LH_MIN];
} lhtable_t;

enum { TOKENS, USERS };
enum { LRU, DEADLINE };

typedef struct {
    gh_session_store_t base;
    pthread_mutex_t lock;
    gh_session_limits_t limits;
    int64_t tick_ms;
    int64_t clock_ms; /* latest `now` seen: time in the store never goes back */
    uint64_t user_seed;
    size_t page;
    rec_t **chunks; /* directory of chunks of CHUNK_RECS records; NULL when empty */
    uint32_t nchunks, dircap;
    uint32_t n;         /* live sessions: records 0..n-1 */
    uint32_t reserving; /* 1 while a create holds capacity for one more record */
    uint32_t lru_head, lru_tail, dl_head, dl_tail;
    bool unsorted; /* a restore appended out of order: sort before relying on list order */
    lhtable_t tokens, users;
    size_t bytes; /* accounted bytes this store holds, its own struct included */
    /* the client table (ids 1..cl_used have been handed out; cl_slots is NULL while empty) */
    cslot_t *cl_slots;
    uint32_t cl_cap;   /* slots and buckets: a power of two */
    uint32_t cl_used;  /* ids handed out so far: 1..cl_used, live or free */
    uint32_t cl_free;  /* first free id, 0 = none */
    uint32_t cl_count; /* live entries */
    uint32_t cl_max;
    size_t cl_bytes, cl_max_bytes; /* entries and index; part of bytes */
    uint64_t cl_full_total;
    uint8_t cl_seed[crypto_shorthash_KEYBYTES];
    uint64_t created_total;  /* creates only: a restored session was created by an earlier run */
    uint64_t restored_total; /* for the invariant check */
    uint64_t ended_total[GH_END__COUNT];
} store_t;

static const gh_session_store_ops_t memory_ops;

/* ---- accounting ---- */

/* The store counts its own bytes exactly as mem.c charges them (malloc_usable_size), so its
 * figure is right even when something else charges GH_MEM_SESSIONS too. */
static void *sm_alloc(store_t *st, size_t n)
{
    void *p = gh_mem_alloc(GH_MEM_SESSIONS, n);
    if (p)
        st->bytes += malloc_usable_size(p);
    return p;
}

static void sm_free(store_t *st, void *p)
{
    if (!p)
        return;
    st->bytes -= malloc_usable_size(p);
    gh_mem_free(GH_MEM_SESSIONS, p);
}

/* An upper bound of what an allocation of n bytes will be charged: glibc hands a heap chunk
 * out with at most 15 spare bytes and rounds an mmapped one to pages. Used to decide budget
 * questions before allocating. */
static size_t alloc_cost(const store_t *st, size_t n)
{
    return n < st->page ? n + 16 : (n + 16 + st->page - 1) / st->page * st->page;
}

/* ---- the client table ---- */

static void *cl_alloc(store_t *st, size_t n)
{
    void *p = sm_alloc(st, n);
    if (p)
        st->cl_bytes += malloc_usable_size(p);
    return p;
}

static void cl_release_mem(store_t *st, void *p)
{
    st->cl_bytes -= malloc_usable_size(p);
    sm_free(st, p);
}

/* The key of a cleaned client: SipHash-2-4 of "ip NUL user-agent" under the store's seed. */
static uint32_t client_key(const store_t *st, const gh_session_client_t *c)
{
    uint8_t buf[sizeof c->ip + sizeof c->user_agent], h[crypto_shorthash_BYTES];
    size_t il = strlen(c->ip), ul = strlen(c->user_agent);
    memcpy(buf, c->ip, il + 1);
    memcpy(buf + il + 1, c->user_agent, ul);
    crypto_shorthash(h, buf, il + 1 + ul, st->cl_seed);
    uint32_t k;
    memcpy(&k, h, sizeof k);
    return k;
}

static inline cslot_t *cl_slot(const store_t *st, uint32_t id)
{
    assert(id >= 1 && id <= st->cl_used && st->cl_used <= st->cl_cap);
    return &st->cl_slots[id - 1];
}

static uint32_t client_find(const store_t *st, const gh_session_client_t *c, uint32_t key,
                            size_t il, size_t ul)
{
    if (!st->cl_slots)
        return 0;
    for (uint32_t id = st->cl_slots[key & (st->cl_cap - 1)].bucket; id;) {
        const client_t *e = cl_slot(st, id)->entry;
        if (e->key == key && e->ip_len == il && e->ua_len == ul &&
            memcmp(e->text, c->ip, il) == 0 && memcmp(e->text + il + 1, c->user_agent, ul) == 0)
            return id;
        id = e->next;
    }
    return 0;
}

/* The table's last entry went (or its first could not be made): the index goes too. Frees only. */
static void client_drop_index(store_t *st)
{
    assert(st->cl_count == 0);
    if (st->cl_slots)
        cl_release_mem(st, st->cl_slots);
    st->cl_slots = NULL;
    st->cl_cap = st->cl_used = st->cl_free = 0;
}

/* Moves the index to `cap` slots (more than it has, every id in use): entries keep their ids,
 * buckets are rebuilt. */
static int client_grow(store_t *st, uint32_t cap)
{
    assert(cap > st->cl_cap && (cap & (cap - 1)) == 0 && st->cl_free == 0);
    cslot_t *slots = cl_alloc(st, cap * sizeof *slots);
    if (!slots)
        return GH_ENOMEM;
    memset(slots, 0, cap * sizeof *slots);
    for (uint32_t id = 1; id <= st->cl_used; id++) {
        client_t *e = st->cl_slots[id - 1].entry;
        uint32_t b = e->key & (cap - 1);
        slots[id - 1].entry = e;
        e->next = slots[b].bucket;
        slots[b].bucket = id;
    }
    if (st->cl_slots)
        cl_release_mem(st, st->cl_slots);
    st->cl_slots = slots;
    st->cl_cap = cap;
    return 0;
}

/*
 * The id of the client's entry, with one more reference: an existing entry is shared, a new one
 * is made. 0 (unknown) for the unknown client and whenever a new entry would pass a bound — the
 * table's entries or bytes, or the session budget — or memory for it cannot be had: a session
 * never fails or evicts anything for its client's sake. Lock held.
 */
static uint32_t client_acquire(store_t *st, const gh_session_client_t *c, uint32_t key)
{
    size_t il = strlen(c->ip), ul = strlen(c->user_agent);
    assert(il <= GH_SESSION_IP_MAX && ul <= GH_SESSION_UA_MAX);
    if (il == 0 && ul == 0)
        return 0;
    uint32_t id = client_find(st, c, key, il, ul);
    if (id) {
        cl_slot(st, id)->entry->refs++;
        return id;
    }
    size_t size = sizeof(client_t) + il + 1 + ul + 1;
    bool grow = st->cl_free == 0 && st->cl_used == st->cl_cap;
    uint32_t cap = st->cl_cap ? 2 * st->cl_cap : CLIENT_SLOTS_MIN;
    while (cap / 2 >= st->cl_max && cap > 1) /* no more slots than entries allowed */
        cap /= 2;
    size_t need = alloc_cost(st, size) + (grow ? alloc_cost(st, cap * sizeof(cslot_t)) : 0);
    if (st->cl_count >= st->cl_max || (grow && cap <= st->cl_cap) ||
        st->cl_bytes + need > st->cl_max_bytes ||
        (st->limits.budget_bytes && st->bytes + need > st->limits.budget_bytes)) {
        st->cl_full_total++;
        return 0;
    }
    if (grow && client_grow(st, cap) != 0) {
        if (st->cl_count == 0)
            client_drop_index(st);
        return 0;
    }
    client_t *e = cl_alloc(st, size);
    if (!e) {
        if (st->cl_count == 0)
            client_drop_index(st);
        return 0;
    }
    e->refs = 1;
    e->key = key;
    e->ip_len = (uint8_t)il;
    e->ua_len = (uint8_t)ul;
    memcpy(e->text, c->ip, il + 1);
    memcpy(e->text + il + 1, c->user_agent, ul + 1);
    if (st->cl_free) {
        id = st->cl_free;
        st->cl_free = cl_slot(st, id)->free_next;
    } else {
        id = ++st->cl_used;
    }
    cslot_t *bucket = &st->cl_slots[key & (st->cl_cap - 1)];
    e->next = bucket->bucket;
    bucket->bucket = id;
    cl_slot(st, id)->entry = e;
    st->cl_count++;
    return id;
}

/* One reference fewer; the entry goes with its last one, the index with the last entry. Frees
 * only: ending sessions never allocates. */
static void client_release(store_t *st, uint32_t id)
{
    if (id == 0)
        return;
    cslot_t *sl = cl_slot(st, id);
    client_t *e = sl->entry;
    assert(e && e->refs > 0);
    if (--e->refs > 0)
        return;
    uint32_t *pp = &st->cl_slots[e->key & (st->cl_cap - 1)].bucket;
    while (*pp != id) {
        assert(*pp != 0);
        pp = &cl_slot(st, *pp)->entry->next;
    }
    *pp = e->next;
    cl_release_mem(st, e);
    sl->entry = NULL;
    sl->free_next = st->cl_free;
    st->cl_free = id;
    if (--st->cl_count == 0)
        client_drop_index(st);
}

static void client_copy(const store_t *st, uint32_t id, gh_session_client_t *out)
{
    out->ip[0] = out->user_agent[0] = '\0';
    if (id == 0)
        return;
    const client_t *e = cl_slot(st, id)->entry;
    memcpy(out->ip, e->text, (size_t)e->ip_len + 1);
    memcpy(out->user_agent, e->text + e->ip_len + 1, (size_t)e->ua_len + 1);
}

/* ---- records ---- */

static inline rec_t *REC(const store_t *st, uint32_t i)
{
    assert(i < st->nchunks * CHUNK_RECS);
    return &st->chunks[i >> CHUNK_SHIFT][i & (CHUNK_RECS - 1)];
}

static inline uint64_t get64(const uint32_t v[2])
{
    return (uint64_t)v[1] << 32 | v[0];
}

static inline void put64(uint32_t v[2], uint64_t x)
{
    v[0] = (uint32_t)x;
    v[1] = (uint32_t)(x >> 32);
}

static inline int64_t created_at(const rec_t *r)
{
    return (int64_t)get64(r->created_ms);
}

static inline int64_t last_seen_at(const store_t *st, const rec_t *r)
{
    return created_at(r) + (int64_t)r->last_seen * st->tick_ms;
}

static inline int64_t expires_at(const store_t *st, const rec_t *r)
{
    return created_at(r) + (int64_t)r->expires * st->tick_ms;
}

static inline int64_t idle_deadline(const store_t *st, const rec_t *r)
{
    int64_t idle = last_seen_at(st, r) + st->limits.idle_ttl_ms, abs = expires_at(st, r);
    return idle < abs ? idle : abs;
}

/* Is the session past a deadline at now? Deadlines are the first instant a session is no longer
 * valid. The reason is whichever deadline came first. */
static bool session_due(const store_t *st, const rec_t *r, int64_t now, gh_session_end_t *why)
{
    int64_t idle = last_seen_at(st, r) + st->limits.idle_ttl_ms, abs = expires_at(st, r);
    if (idle < abs && now >= idle) {
        *why = GH_END_IDLE;
        return true;
    }
    if (now >= abs) {
        *why = GH_END_EXPIRED;
        return true;
    }
    return false;
}

/* with_client: create and list copy the client; a lookup (every token check) does not. */
static void fill_info(const store_t *st, const rec_t *r, bool with_client, gh_session_info_t *out)
{
    if (!out)
        return;
    gh_base64url_encode(r->id, GH_SESSION_ID_RAW_LEN, out->id);
    out->user_id = get64(r->user_id);
    out->created_at_ms = created_at(r);
    out->last_seen_at_ms = last_seen_at(st, r);
    out->expires_at_ms = expires_at(st, r);
    out->idle_expires_at_ms = idle_deadline(st, r);
    out->amr = (uint8_t)r->amr;
    out->has_client = with_client;
    if (with_client)
        client_copy(st, r->client, &out->client);
    else
        out->client.ip[0] = out->client.user_agent[0] = '\0';
}

static int64_t advance_clock(store_t *st, int64_t now)
{
    if (now > st->clock_ms)
        st->clock_ms = now;
    return st->clock_ms;
}

/* ---- linear hashing tables ---- */

static inline uint32_t seg_of(uint32_t b)
{
    return b < LH_MIN ? 0 : 32 - (uint32_t)__builtin_clz(b >> LH_MIN_SHIFT);
}

static inline uint32_t seg_start(uint32_t k)
{
    return k ? LH_MIN << (k - 1) : 0;
}

static inline uint32_t seg_len(uint32_t k)
{
    return k ? LH_MIN << (k - 1) : LH_MIN;
}

static inline uint32_t *lh_bucket(lhtable_t *t, uint32_t b)
{
    uint32_t k = seg_of(b);
    assert(k < t->nseg);
    return &t->seg[k][b - seg_start(k)];
}

static inline uint32_t lh_addr(const lhtable_t *t, uint64_t h)
{
    uint32_t half = 1u << t->level;
    uint32_t a = (uint32_t)(h & (half - 1));
    if (a < t->m - half) /* that bucket has split already: one more bit decides */
        a = (uint32_t)(h & ((2ull << t->level) - 1));
    return a;
}

static inline uint32_t *chain_next(const store_t *st, int which, uint32_t i)
{
    rec_t *r = REC(st, i);
    return which == TOKENS ? &r->hash_next : &r->user_chain;
}

/* Token hashes are BLAKE2b output of server-made random tokens: their bits are already uniform
 * and no client chooses what gets inserted, so they index the table directly. */
static inline uint64_t token_key(const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    uint64_t h;
    memcpy(&h, hash, sizeof h);
    return h;
}

static inline uint64_t user_key(const store_t *st, uint64_t user_id)
{
    /* splitmix64 finaliser over a per-store random seed: sequential ids spread evenly. */
    uint64_t z = user_id ^ st->user_seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rec_key(const store_t *st, int which, uint32_t i)
{
    const rec_t *r = REC(st, i);
    return which == TOKENS ? token_key(r->token_hash) : user_key(st, get64(r->user_id));
}

static void lh_init(lhtable_t *t)
{
    memset(t->seg0, 0xff, sizeof t->seg0);
    t->seg[0] = t->seg0;
    t->m = LH_MIN;
    t->level = LH_MIN_SHIFT;
    t->count = 0;
    t->nseg = 1;
}

/* Frees segments no bucket in use lives in (keeping the one bucket m needs while a create holds
 * a reservation). Frees only. */
static void lh_trim(store_t *st, lhtable_t *t)
{
    uint64_t need = (uint64_t)t->m + st->reserving;
    while (t->nseg > 1 && seg_start(t->nseg - 1) >= need) {
        t->nseg--;
        sm_free(st, t->seg[t->nseg]);
        t->seg[t->nseg] = NULL;
    }
}

/* Bucket m comes into use: split bucket m - 2^level by the next hash bit. */
static void lh_split(store_t *st, int which, lhtable_t *t)
{
    uint32_t half = 1u << t->level, p = t->m - half, nb = t->m;
    assert(seg_of(nb) < t->nseg);
    uint32_t *src = lh_bucket(t, p), stay = NIL, move = NIL;
    for (uint32_t i = *src; i != NIL;) {
        uint32_t *nx = chain_next(st, which, i), next = *nx;
        if (rec_key(st, which, i) & half) {
            *nx = move;
            move = i;
        } else {
            *nx = stay;
            stay = i;
        }
        i = next;
    }
    *src = stay;
    *lh_bucket(t, nb) = move;
    t->m++;
    if (t->m == 2 * half)
        t->level++;
}

/* The last bucket goes out of use: its chain joins its split partner. */
static void lh_merge(store_t *st, int which, lhtable_t *t)
{
    assert(t->m > LH_MIN);
    if (t->m == (1u << t->level))
        t->level--;
    uint32_t b = t->m - 1, target = b - (1u << t->level);
    uint32_t moved = *lh_bucket(t, b);
    t->m--;
    if (moved != NIL) {
        uint32_t last = moved;
        while (*chain_next(st, which, last) != NIL)
            last = *chain_next(st, which, last);
        uint32_t *tp = lh_bucket(t, target);
        *chain_next(st, which, last) = *tp;
        *tp = moved;
    }
    lh_trim(st, t);
}

static void lh_insert(store_t *st, int which, lhtable_t *t, uint32_t i)
{
    uint32_t *b = lh_bucket(t, lh_addr(t, rec_key(st, which, i)));
    *chain_next(st, which, i) = *b;
    *b = i;
    t->count++;
    /* Load <= 1 where the segment is there; a budget that refused a segment only lengthens
     * chains a little, and two splits per insert catch up once it is there. */
    for (int k = 0; k < 2 && t->count > t->m && seg_of(t->m) < t->nseg; k++)
        lh_split(st, which, t);
}

/* The slot that holds index i in its chain. */
static uint32_t *lh_slot(store_t *st, int which, lhtable_t *t, uint64_t key, uint32_t i)
{
    uint32_t *pp = lh_bucket(t, lh_addr(t, key));
    while (*pp != i) {
        assert(*pp != NIL);
        pp = chain_next(st, which, *pp);
    }
    return pp;
}

static void lh_remove(store_t *st, int which, lhtable_t *t, uint32_t i)
{
    uint32_t *pp = lh_slot(st, which, t, rec_key(st, which, i), i);
    *pp = *chain_next(st, which, i);
    t->count--;
    /* Keep load >= 0.5: two merges per removal converge to the floor when the table empties. */
    for (int k = 0; k < 2 && t->m > LH_MIN && 2 * (uint64_t)t->count < t->m; k++)
        lh_merge(st, which, t);
}

static uint32_t token_find(store_t *st, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    lhtable_t *t = &st->tokens;
    for (uint32_t i = *lh_bucket(t, lh_addr(t, token_key(hash))); i != NIL;) {
        const rec_t *r = REC(st, i);
        /* A plain memcmp is fine: learning a stored hash by timing gives no token (preimage
         * resistance), and the bucket already depends on the hash. */
        if (memcmp(r->token_hash, hash, GH_TOKEN_HASH_LEN) == 0)
            return i;
        i = r->hash_next;
    }
    return NIL;
}

/* The user-table slot holding the user's newest session, or NULL when the user has none. */
static uint32_t *user_slot(store_t *st, uint64_t user_id)
{
    lhtable_t *t = &st->users;
    uint32_t *pp = lh_bucket(t, lh_addr(t, user_key(st, user_id)));
    while (*pp != NIL) {
        rec_t *r = REC(st, *pp);
        if (get64(r->user_id) == user_id)
            return pp;
        pp = &r->user_chain;
    }
    return NULL;
}

static uint32_t user_head(store_t *st, uint64_t user_id)
{
    uint32_t *pp = user_slot(st, user_id);
    return pp ? *pp : NIL;
}

/* ---- ordered lists (LRU by last_seen, deadline list by expires) ---- */

static inline uint32_t *lprev(const store_t *st, int which, uint32_t i)
{
    rec_t *r = REC(st, i);
    return which == LRU ? &r->lru_prev : &r->dl_prev;
}

static inline uint32_t *lnext(const store_t *st, int which, uint32_t i)
{
    rec_t *r = REC(st, i);
    return which == LRU ? &r->lru_next : &r->dl_next;
}

static inline uint32_t *lhead(store_t *st, int which)
{
    return which == LRU ? &st->lru_head : &st->dl_head;
}

static inline uint32_t *ltail(store_t *st, int which)
{
    return which == LRU ? &st->lru_tail : &st->dl_tail;
}

static inline int64_t lkey(const store_t *st, int which, uint32_t i)
{
    const rec_t *r = REC(st, i);
    return which == LRU ? last_seen_at(st, r) : expires_at(st, r);
}

static void list_append(store_t *st, int which, uint32_t i)
{
    uint32_t *tail = ltail(st, which);
    *lprev(st, which, i) = *tail;
    *lnext(st, which, i) = NIL;
    if (*tail != NIL)
        *lnext(st, which, *tail) = i;
    else
        *lhead(st, which) = i;
    *tail = i;
}

static void list_unlink(store_t *st, int which, uint32_t i)
{
    uint32_t p = *lprev(st, which, i), n = *lnext(st, which, i);
    if (p != NIL)
        *lnext(st, which, p) = n;
    else
        *lhead(st, which) = n;
    if (n != NIL)
        *lprev(st, which, n) = p;
    else
        *ltail(st, which) = p;
}

/* Links that pointed at `from` now point at `to` (the record moved). */
static void list_moved(store_t *st, int which, uint32_t from, uint32_t to)
{
    (void)from;
    uint32_t p = *lprev(st, which, to), n = *lnext(st, which, to);
    if (p != NIL)
        *lnext(st, which, p) = to;
    else
        *lhead(st, which) = to;
    if (n != NIL)
        *lprev(st, which, n) = to;
    else
        *ltail(st, which) = to;
}

/* Stable bottom-up merge sort of a list, in place (Tatham's algorithm): only after restores. */
static void list_sort(store_t *st, int which)
{
    uint32_t list = *lhead(st, which), tail = NIL;
    if (list == NIL)
        return;
    for (size_t insize = 1;; insize *= 2) {
        uint32_t p = list;
        size_t merges = 0;
        list = tail = NIL;
        while (p != NIL) {
            merges++;
            uint32_t q = p;
            size_t psize = 0, qsize = insize;
            for (size_t k = 0; k < insize && q != NIL; k++, psize++)
                q = *lnext(st, which, q);
            while (psize > 0 || (qsize > 0 && q != NIL)) {
                uint32_t e;
                if (psize == 0 ||
                    (qsize > 0 && q != NIL && lkey(st, which, q) < lkey(st, which, p))) {
                    e = q;
                    q = *lnext(st, which, q);
                    qsize--;
                } else {
                    e = p;
                    p = *lnext(st, which, p);
                    psize--;
                }
                if (tail != NIL)
                    *lnext(st, which, tail) = e;
                else
                    list = e;
                tail = e;
            }
            p = q;
        }
        *lnext(st, which, tail) = NIL;
        if (merges <= 1)
            break;
    }
    uint32_t prev = NIL;
    for (uint32_t i = list; i != NIL; i = *lnext(st, which, i)) {
        *lprev(st, which, i) = prev;
        prev = i;
    }
    *lhead(st, which) = list;
    *ltail(st, which) = prev;
}

/*
 * The same order by an array: gather (key, index) of every record in index order (sequential
 * memory), LSD radix sort on the key's offset from the smallest (16-bit digits, ties keep index
 * order), relink. Merging the linked list chases a pointer to a random record at every step of
 * every pass — at a million restored sessions that was 2 of the 2.5 seconds of a load; this is
 * a few sequential passes. It needs 24 bytes per session for the moment it runs (charged to
 * `other`, not to the session budget); when that cannot be had it returns false and the caller
 * merges in place, which needs nothing.
 */
static bool list_sort_array(store_t *st, int which)
{
    uint32_t n = st->n;
    if (n < 2)
        return false;
    uint64_t *key = gh_mem_alloc(GH_MEM_OTHER, 2 * (size_t)n * sizeof *key);
    uint32_t *idx = gh_mem_alloc(GH_MEM_OTHER, 2 * (size_t)n * sizeof *idx);
    uint32_t *count = gh_mem_calloc(GH_MEM_OTHER, 65536, sizeof *count);
    if (!key || !idx || !count) {
        gh_mem_free(GH_MEM_OTHER, key);
        gh_mem_free(GH_MEM_OTHER, idx);
        gh_mem_free(GH_MEM_OTHER, count);
        return false;
    }
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (uint32_t i = 0; i < n; i++) {
        int64_t k = lkey(st, which, i);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    uint64_t *ka = key, *kb = key + n;
    uint32_t *ia = idx, *ib = idx + n;
    for (uint32_t i = 0; i < n; i++) {
        ka[i] = (uint64_t)(lkey(st, which, i) - lo);
        ia[i] = i;
    }
    uint64_t range = (uint64_t)(hi - lo);
    for (unsigned shift = 0; shift < 64 && (range >> shift) != 0; shift += 16) {
        memset(count, 0, 65536 * sizeof *count);
        for (uint32_t i = 0; i < n; i++)
            count[(ka[i] >> shift) & 0xffff]++;
        uint32_t sum = 0;
        for (unsigned d = 0; d < 65536; d++) {
            uint32_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t at = count[(ka[i] >> shift) & 0xffff]++;
            kb[at] = ka[i];
            ib[at] = ia[i];
        }
        uint64_t *kt = ka;
        ka = kb;
        kb = kt;
        uint32_t *it = ia;
        ia = ib;
        ib = it;
    }
    for (uint32_t k = 0; k < n; k++) {
        *lprev(st, which, ia[k]) = k ? ia[k - 1] : NIL;
        *lnext(st, which, ia[k]) = k + 1 < n ? ia[k + 1] : NIL;
    }
    *lhead(st, which) = ia[0];
    *ltail(st, which) = ia[n - 1];
    gh_mem_free(GH_MEM_OTHER, key);
    gh_mem_free(GH_MEM_OTHER, idx);
    gh_mem_free(GH_MEM_OTHER, count);
    return true;
}

static void sort_if_needed(store_t *st)
{
    if (!st->unsorted)
        return;
    if (!list_sort_array(st, LRU))
        list_sort(st, LRU);
    if (!list_sort_array(st, DEADLINE))
        list_sort(st, DEADLINE);
    st->unsorted = false;
}

/* ---- capacity: reserve before a create changes anything, trim after ---- */

static size_t record_capacity_cost(const store_t *st)
{
    if ((uint64_t)st->n + 1 <= (uint64_t)st->nchunks * CHUNK_RECS)
        return 0;
    size_t c = alloc_cost(st, CHUNK_RECS * sizeof(rec_t));
    if (st->nchunks == st->dircap)
        c += alloc_cost(st, (st->dircap ? 2 * (size_t)st->dircap : 8) * sizeof(rec_t *));
    return c;
}

static int reserve_record(store_t *st)
{
    if ((uint64_t)st->n + 1 <= (uint64_t)st->nchunks * CHUNK_RECS)
        return 0;
    if (st->nchunks == st->dircap) {
        uint32_t cap = st->dircap ? 2 * st->dircap : 8;
        rec_t **dir = sm_alloc(st, cap * sizeof *dir);
        if (!dir)
            return GH_ENOMEM;
        if (st->nchunks)
            memcpy(dir, st->chunks, st->nchunks * sizeof *dir);
        sm_free(st, st->chunks);
        st->chunks = dir;
        st->dircap = cap;
    }
    rec_t *chunk = sm_alloc(st, CHUNK_RECS * sizeof(rec_t));
    if (!chunk)
        return GH_ENOMEM;
    st->chunks[st->nchunks++] = chunk;
    return 0;
}

/* The segment the next split would need. Skipped (not an error) when it would not fit the
 * budget: a table at the budget just runs a little above load 1. */
static int reserve_split(store_t *st, lhtable_t *t)
{
    if ((uint64_t)t->count + 1 <= t->m)
        return 0;
    uint32_t k = seg_of(t->m);
    if (k < t->nseg)
        return 0;
    assert(k == t->nseg && k < LH_NSEG);
    size_t n = seg_len(k) * sizeof(uint32_t);
    if (st->limits.budget_bytes && st->bytes + alloc_cost(st, n) > st->limits.budget_bytes)
        return 0;
    uint32_t *seg = sm_alloc(st, n);
    if (!seg)
        return GH_ENOMEM;
    t->seg[k] = seg;
    t->nseg = k + 1;
    return 0;
}

/* Frees whatever capacity the live sessions (and a create in progress) do not need. */
static void trim(store_t *st)
{
    uint64_t need = (uint64_t)st->n + st->reserving;
    uint32_t chunks = (uint32_t)((need + CHUNK_RECS - 1) / CHUNK_RECS);
    while (st->nchunks > chunks) {
        st->nchunks--;
#ifndef GH_PLANT_LEAK
        sm_free(st, st->chunks[st->nchunks]);
#else
        /* The planted leak (tests only: scripts/planted-leak.sh builds this mutant and checks
         * that the leak gate fails on it). A chunk that ending sessions emptied is dropped
         * without being released: the kind of cleanup leak the gate exists to catch. */
#endif
        st->chunks[st->nchunks] = NULL;
    }
    /* The directory is tiny (8 bytes per 1024 sessions) and only goes when the last chunk does:
     * shrinking it would need an allocation, and ending sessions never allocates. */
    if (st->nchunks == 0 && st->chunks) {
        sm_free(st, st->chunks);
        st->chunks = NULL;
        st->dircap = 0;
    }
    lh_trim(st, &st->tokens);
    lh_trim(st, &st->users);
}

/* ---- the user ring ---- */

static void user_link(store_t *st, uint32_t i)
{
    rec_t *r = REC(st, i);
    uint32_t *pp = user_slot(st, get64(r->user_id));
    if (!pp) {
        r->user_prev = r->user_next = i;
        r->user_count = 1;
        lh_insert(st, USERS, &st->users, i);
        return;
    }
    uint32_t h = *pp, x = h;
    rec_t *hr = REC(st, h);
    bool newest = created_at(r) >= created_at(hr);
    if (!newest) { /* restores only: find the first session not newer than this one */
        x = hr->user_next;
        while (x != h && created_at(REC(st, x)) > created_at(r))
            x = REC(st, x)->user_next;
    }
    uint32_t p = REC(st, x)->user_prev; /* insert between p and x */
    r->user_prev = p;
    r->user_next = x;
    REC(st, p)->user_next = i;
    REC(st, x)->user_prev = i;
    if (newest) {
        r->user_count = hr->user_count + 1;
        r->user_chain = hr->user_chain;
        *pp = i;
    } else {
        hr->user_count++;
    }
}

static void user_unlink(store_t *st, uint32_t i)
{
    rec_t *r = REC(st, i);
    if (r->user_next == i) { /* the user's only session: the user goes */
        lh_remove(st, USERS, &st->users, i);
        return;
    }
    REC(st, r->user_prev)->user_next = r->user_next;
    REC(st, r->user_next)->user_prev = r->user_prev;
    uint32_t *pp = user_slot(st, get64(r->user_id));
    assert(pp);
    if (*pp == i) { /* the newest goes: the next older takes its place in the table */
        rec_t *nr = REC(st, r->user_next);
        nr->user_count = r->user_count - 1;
        nr->user_chain = r->user_chain;
        *pp = r->user_next;
    } else {
        REC(st, *pp)->user_count--;
    }
}

/* ---- the one release path ---- */

/* The record at `from` (the last one) moves into the hole at `to`; every link follows it. */
static void move_record(store_t *st, uint32_t from, uint32_t to)
{
    rec_t *r = REC(st, to);
    *r = *REC(st, from);
    *lh_slot(st, TOKENS, &st->tokens, token_key(r->token_hash), from) = to;
    list_moved(st, LRU, from, to);
    list_moved(st, DEADLINE, from, to);
    if (r->user_next == from) {
        r->user_next = r->user_prev = to;
    } else {
        REC(st, r->user_prev)->user_next = to;
        REC(st, r->user_next)->user_prev = to;
    }
    uint32_t *pp = user_slot(st, get64(r->user_id));
    assert(pp);
    if (*pp == from)
        *pp = to;
}

/*
 * Every way a session ends comes here: logout, revocation, password change, user deletion,
 * idle and absolute expiry, the per-user cap and the budget. It unlinks the session from every
 * index, fills the hole with the last record, frees what is no longer needed and counts the
 * reason. Frees only; never allocates.
 */
static void release(store_t *st, uint32_t i, gh_session_end_t reason);

/* An eviction by the per-user cap (by_cap) or the budget: told to limits.on_evict (a copy into
 * the caller's bounded queue), then released. Lock held. */
static void evict(store_t *st, uint32_t i, bool by_cap)
{
    if (st->limits.on_evict) {
        char sid[GH_SESSION_ID_LEN + 1];
        gh_base64url_encode(REC(st, i)->id, GH_SESSION_ID_RAW_LEN, sid);
        st->limits.on_evict(st->limits.on_evict_ctx, get64(REC(st, i)->user_id), sid, by_cap);
    }
    release(st, i, GH_END_EVICTED);
}

static void release(store_t *st, uint32_t i, gh_session_end_t reason)
{
    assert(i < st->n && (unsigned)reason < GH_END__COUNT);
    uint32_t client = REC(st, i)->client;
    lh_remove(st, TOKENS, &st->tokens, i);
    list_unlink(st, LRU, i);
    list_unlink(st, DEADLINE, i);
    user_unlink(st, i);
    uint32_t last = --st->n;
    /* Told before the record is overwritten, while the lock still orders it after whatever
     * the store did before (the persistence layer depends on that order). */
    if (st->limits.on_end)
        st->limits.on_end(st->limits.on_end_ctx, REC(st, i)->token_hash, reason);
    if (i != last)
        move_record(st, last, i);
    sodium_memzero(REC(st, last), sizeof(rec_t));
    st->ended_total[reason]++;
    client_release(st, client);
    trim(st);
}

/* ---- create and restore ---- */

/*
 * Adds a session (lock held). Order matters for failure: budget decisions first (refuse changes
 * nothing; evict-idle ends least recently used sessions, which stay ended), then every
 * allocation (a failure frees what it took and changes nothing more), then the client's entry
 * (which cannot fail: at worst the client is unknown), then the per-user cap eviction and the
 * insert, which cannot fail. A create that replaces a user's oldest session allocates nothing
 * for the session (a client not seen before aside). The client reference is taken before the
 * cap eviction, so an entry the evicted session shares is never freed and made again.
 */
static int add_session(store_t *st, uint64_t user_id, const uint8_t hash[GH_TOKEN_HASH_LEN],
                       const uint8_t id[GH_SESSION_ID_RAW_LEN], const gh_session_client_t *client,
                       uint32_t client_key, uint8_t amr, int64_t created, int64_t last_seen,
                       int64_t expires, bool restoring, gh_session_info_t *out)
{
    int rc = 0;
    const gh_session_limits_t *lim = &st->limits;
    if (token_find(st, hash) != NIL)
        return GH_EEXISTS;
    if (st->n >= MAX_SESSIONS)
        return GH_ELIMIT;
    uint32_t h = user_head(st, user_id);
    bool cap_evict = lim->max_per_user && h != NIL && REC(st, h)->user_count >= lim->max_per_user;
    if (cap_evict && restoring && created < created_at(REC(st, REC(st, h)->user_prev)))
        return GH_ELIMIT;
    /* Replacing a user's oldest session does not grow the store: the budget has no say, and
     * neither table gains an entry. */
    if (!cap_evict && lim->budget_bytes) {
        if (lim->policy == GH_POLICY_REFUSE) {
            if (st->bytes + record_capacity_cost(st) > lim->budget_bytes)
                return GH_EBUSY;
        } else if (st->bytes + record_capacity_cost(st) > lim->budget_bytes) {
            /* Sort only when something must go: a restore batch leaves the lists unsorted, and
             * sorting on every restored session made a million of them quadratic. */
            sort_if_needed(st);
            while (st->n && st->bytes + record_capacity_cost(st) > lim->budget_bytes)
                evict(st, st->lru_head, false);
            if (st->bytes + record_capacity_cost(st) > lim->budget_bytes)
                return GH_EBUSY;        /* the budget cannot hold even one session */
            h = user_head(st, user_id); /* evictions may have taken all of theirs */
        }
    }
    /* A replacement reuses the slot of the session it evicts (release keeps capacity for one
     * more while reserving): it allocates nothing, so it cannot fail. */
    st->reserving = 1;
    if (!cap_evict &&
        ((rc = reserve_record(st)) != 0 || (rc = reserve_split(st, &st->tokens)) != 0))
        goto out;
    if (h == NIL && (rc = reserve_split(st, &st->users)) != 0)
        goto out;
    uint32_t cid = client_acquire(st, client, client_key);
    if (cap_evict) {
        h = user_head(st, user_id);
        evict(st, REC(st, h)->user_prev, true); /* the user's oldest */
    }
    uint32_t i = st->n++;
    rec_t *r = REC(st, i);
    memcpy(r->token_hash, hash, GH_TOKEN_HASH_LEN);
    memcpy(r->id, id, GH_SESSION_ID_RAW_LEN);
    put64(r->user_id, user_id);
    put64(r->created_ms, (uint64_t)created);
    r->expires = (uint32_t)((expires - created) / st->tick_ms);
    r->last_seen = (uint32_t)((last_seen - created) / st->tick_ms);
    r->client = cid;
    r->amr = (amr ? amr : GH_AMR_PWD) & 15u;
    lh_insert(st, TOKENS, &st->tokens, i);
    /* A create appends in order (the store's clock never goes back and restored deadlines are
     * capped at created + session_ttl); only a restore can land out of order. */
    bool out_of_order =
        (st->lru_tail != NIL && lkey(st, LRU, st->lru_tail) > last_seen_at(st, r)) ||
        (st->dl_tail != NIL && lkey(st, DEADLINE, st->dl_tail) > expires_at(st, r));
    assert(restoring || !out_of_order);
    st->unsorted |= out_of_order;
    list_append(st, LRU, i);
    list_append(st, DEADLINE, i);
    user_link(st, i);
    if (restoring)
        st->restored_total++;
    else
        st->created_total++;
    fill_info(st, r, true, out);
out:
    st->reserving = 0;
    trim(st);
    /* Safety net for an allocator that rounds more than alloc_cost() assumed. */
    if (rc == 0 && lim->budget_bytes && lim->policy == GH_POLICY_EVICT_IDLE) {
        while (st->bytes > lim->budget_bytes && st->n > 1 &&
               memcmp(REC(st, st->lru_head)->token_hash, hash, GH_TOKEN_HASH_LEN) != 0)
            evict(st, st->lru_head, false);
    }
    return rc;
}

/* Cleans a client as every backend must, and keys it; both outside the store's lock. */
static uint32_t client_prepare(const store_t *st, const gh_session_client_t *in,
                               gh_session_client_t *out)
{
    if (in)
        gh_session_client_make(out, in->ip, in->user_agent,
                               strnlen(in->user_agent, sizeof in->user_agent));
    else
        out->ip[0] = out->user_agent[0] = '\0';
    return client_key(st, out);
}

static int mem_create(gh_session_store_t *s, uint64_t user_id,
                      const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_session_client_t *client,
                      uint8_t amr, int64_t now_ms, gh_session_info_t *out)
{
    store_t *st = (store_t *)s;
    uint8_t id[GH_SESSION_ID_RAW_LEN];
    gh_session_client_t c;
    /* Outside the lock: random bytes may be a system call, and the client is cleaned and
     * hashed here. */
    randombytes_buf(id, sizeof id);
    uint32_t key = client_prepare(st, client, &c);
    pthread_mutex_lock(&st->lock);
    int64_t now = advance_clock(st, now_ms);
    int rc = add_session(st, user_id, hash, id, &c, key, amr, now, now,
                         now + st->limits.session_ttl_ms, false, out);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

int gh_session_memory_restore(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
                              const gh_session_info_t *in, int64_t now_ms)
{
    int rc = GH_EINVAL;
    uint8_t id[GH_SESSION_ID_RAW_LEN];
    size_t idlen = 0;
    if (!s || s->ops != &memory_ops || !hash || !in)
        return GH_EINVAL;
    store_t *st = (store_t *)s;
    if (strnlen(in->id, sizeof in->id) != GH_SESSION_ID_LEN ||
        gh_base64url_decode(in->id, GH_SESSION_ID_LEN, id, sizeof id, &idlen) != 0 ||
        idlen != sizeof id)
        return GH_EINVAL;
    gh_session_client_t c;
    uint32_t key = client_prepare(st, &in->client, &c);
    pthread_mutex_lock(&st->lock);
    int64_t now = advance_clock(st, now_ms);
    int64_t created = in->created_at_ms < now ? in->created_at_ms : now;
    int64_t expires = in->expires_at_ms;
    if (expires > created &&
        (uint64_t)expires - (uint64_t)created > (uint64_t)st->limits.session_ttl_ms)
        expires = created + st->limits.session_ttl_ms;
    if (expires <= created || created <= now - st->limits.session_ttl_ms) {
        rc = GH_EEXPIRED;
        goto out;
    }
    int64_t seen = in->last_seen_at_ms;
    seen = seen < created ? created : seen > now ? now : seen;
    /* Round to ticks the way the record will, then judge the deadlines on what is kept. */
    expires = created + (expires - created) / st->tick_ms * st->tick_ms;
    seen = created + (seen - created) / st->tick_ms * st->tick_ms;
    int64_t idle = seen + st->limits.idle_ttl_ms;
    if (now >= expires || now >= idle) {
        rc = GH_EEXPIRED;
        goto out;
    }
    rc = add_session(st, in->user_id, hash, id, &c, key, in->amr, created, seen, expires, true,
                     NULL);
out:
    pthread_mutex_unlock(&st->lock);
    sodium_memzero(id, sizeof id);
    return rc;
}

/* ---- lookups and ends ---- */

static int mem_lookup(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN], int64_t now_ms,
                      gh_session_info_t *out)
{
    store_t *st = (store_t *)s;
    int rc = GH_ENOTFOUND;
    pthread_mutex_lock(&st->lock);
    int64_t now = advance_clock(st, now_ms);
    uint32_t i = token_find(st, hash);
    if (i == NIL)
        goto out;
    rec_t *r = REC(st, i);
    gh_session_end_t why;
    if (session_due(st, r, now, &why)) {
        release(st, i, why);
        goto out;
    }
    r->last_seen = (uint32_t)((now - created_at(r)) / st->tick_ms);
    list_unlink(st, LRU, i);
    list_append(st, LRU, i);
    fill_info(st, r, false, out);
    rc = 0;
out:
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int mem_end(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
                   gh_session_end_t reason)
{
    store_t *st = (store_t *)s;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    int rc = GH_ENOTFOUND;
    pthread_mutex_lock(&st->lock);
    uint32_t i = token_find(st, hash);
    if (i != NIL) {
        release(st, i, reason);
        rc = 0;
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int mem_end_by_id(gh_session_store_t *s, uint64_t user_id, const char *id,
                         gh_session_end_t reason)
{
    store_t *st = (store_t *)s;
    uint8_t raw[GH_SESSION_ID_RAW_LEN];
    size_t len = 0;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    /* A malformed id names no session: the same answer as an unknown one. */
    if (!id || strnlen(id, GH_SESSION_ID_LEN + 1) != GH_SESSION_ID_LEN ||
        gh_base64url_decode(id, GH_SESSION_ID_LEN, raw, sizeof raw, &len) != 0 || len != sizeof raw)
        return GH_ENOTFOUND;
    int rc = GH_ENOTFOUND;
    pthread_mutex_lock(&st->lock);
    uint32_t h = user_head(st, user_id);
    if (h != NIL) {
        uint32_t x = h;
        do {
            if (memcmp(REC(st, x)->id, raw, sizeof raw) == 0) {
                release(st, x, reason);
                rc = 0;
                break;
            }
            x = REC(st, x)->user_next;
        } while (x != h);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int mem_end_user(gh_session_store_t *s, uint64_t user_id, const uint8_t *keep,
                        gh_session_end_t reason, size_t *ended)
{
    store_t *st = (store_t *)s;
    size_t count = 0;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    pthread_mutex_lock(&st->lock);
    /* Records move as others end, so each round starts again from the user's newest. */
    for (;;) {
        uint32_t h = user_head(st, user_id);
        if (h == NIL)
            break;
        uint32_t victim = h;
        if (keep && memcmp(REC(st, h)->token_hash, keep, GH_TOKEN_HASH_LEN) == 0) {
            victim = REC(st, h)->user_next;
            if (victim == h)
                break;
        }
        release(st, victim, reason);
        count++;
    }
    pthread_mutex_unlock(&st->lock);
    if (ended)
        *ended = count;
    return 0;
}

static int mem_list_user(gh_session_store_t *s, uint64_t user_id, int64_t now_ms,
                         gh_session_info_t *out, size_t cap, size_t *n)
{
    store_t *st = (store_t *)s;
    size_t k = 0;
    pthread_mutex_lock(&st->lock);
    int64_t now = advance_clock(st, now_ms);
    uint32_t h = user_head(st, user_id);
    if (h != NIL) {
        uint32_t x = h;
        do {
            const rec_t *r = REC(st, x);
            gh_session_end_t why;
            /* Past a deadline but not yet swept: not live, so not listed. */
            if (k < cap && !session_due(st, r, now, &why))
                fill_info(st, r, true, &out[k++]);
            x = r->user_next;
        } while (x != h && k < cap);
    }
    pthread_mutex_unlock(&st->lock);
    if (n)
        *n = k;
    return 0;
}

static size_t mem_expire(gh_session_store_t *s, int64_t now_ms, size_t max_work)
{
    store_t *st = (store_t *)s;
    size_t ended = 0;
    pthread_mutex_lock(&st->lock);
    int64_t now = advance_clock(st, now_ms);
    sort_if_needed(st);
    /* Any session past a deadline is at the head of the LRU (idle) or the deadline list. */
    while (ended < max_work) {
        gh_session_end_t why;
        if (st->lru_head != NIL && session_due(st, REC(st, st->lru_head), now, &why))
            release(st, st->lru_head, why);
        else if (st->dl_head != NIL && session_due(st, REC(st, st->dl_head), now, &why))
            release(st, st->dl_head, why);
        else
            break;
        ended++;
    }
    pthread_mutex_unlock(&st->lock);
    return ended;
}

static void mem_stats(gh_session_store_t *s, gh_session_stats_t *out)
{
    store_t *st = (store_t *)s;
    pthread_mutex_lock(&st->lock);
    out->active = st->n;
    out->created_total = st->created_total;
    memcpy(out->ended_total, st->ended_total, sizeof out->ended_total);
    out->bytes = st->bytes;
    out->budget_bytes = st->limits.budget_bytes;
    pthread_mutex_unlock(&st->lock);
}

static void mem_destroy(gh_session_store_t **s)
{
    store_t *st = (store_t *)*s;
    /* Sessions dropped here are not "ended": the process stops and persistence keeps them. */
    for (uint32_t c = 0; c < st->nchunks; c++)
        sm_free(st, st->chunks[c]);
    sm_free(st, st->chunks);
    for (uint32_t k = 1; k < st->tokens.nseg; k++)
        sm_free(st, st->tokens.seg[k]);
    for (uint32_t k = 1; k < st->users.nseg; k++)
        sm_free(st, st->users.seg[k]);
    for (uint32_t id = 1; id <= st->cl_used; id++)
        if (st->cl_slots[id - 1].entry)
            cl_release_mem(st, st->cl_slots[id - 1].entry);
    if (st->cl_slots)
        cl_release_mem(st, st->cl_slots);
    pthread_mutex_destroy(&st->lock);
    gh_mem_free(GH_MEM_SESSIONS, st);
    *s = NULL;
}

static const gh_session_store_ops_t memory_ops = {
    .name = "memory",
    .create = mem_create,
    .lookup = mem_lookup,
    .end = mem_end,
    .end_by_id = mem_end_by_id,
    .end_user = mem_end_user,
    .list_user = mem_list_user,
    .expire = mem_expire,
    .stats = mem_stats,
    .destroy = mem_destroy,
    .clients = gh_session_memory_clients,
};

int gh_session_memory_open(const gh_session_limits_t *limits, gh_session_store_t **out)
{
    int rc = GH_EINVAL;
    store_t *st = NULL;
    if (!limits || !out || limits->session_ttl_ms <= 0 || limits->idle_ttl_ms <= 0 ||
        limits->session_ttl_ms > MAX_TTL_MS || limits->idle_ttl_ms > MAX_TTL_MS ||
        (limits->policy != GH_POLICY_EVICT_IDLE && limits->policy != GH_POLICY_REFUSE) ||
        limits->max_clients > CLIENTS_MAX)
        goto out;
    rc = GH_EINTERNAL;
    if (sodium_init() < 0) /* idempotent; the store needs randombytes for ids and its seed */
        goto out;
    rc = GH_ENOMEM;
    st = gh_mem_calloc(GH_MEM_SESSIONS, 1, sizeof *st);
    if (!st)
        goto out;
    st->bytes = malloc_usable_size(st);
    if (pthread_mutex_init(&st->lock, NULL) != 0) {
        gh_mem_free(GH_MEM_SESSIONS, st);
        st = NULL;
        rc = GH_EINTERNAL;
        goto out;
    }
    st->base.ops = &memory_ops;
    st->limits = *limits;
    /* Offsets from created are 32-bit ticks: 1 ms up to a 49.7-day session_ttl, coarser past. */
    st->tick_ms = limits->session_ttl_ms / UINT32_MAX + 1;
    st->clock_ms = INT64_MIN;
    randombytes_buf(&st->user_seed, sizeof st->user_seed);
    crypto_shorthash_keygen(st->cl_seed);
    st->cl_max = limits->max_clients ? limits->max_clients : GH_SESSION_CLIENTS_DEFAULT;
    st->cl_max_bytes = (size_t)st->cl_max * GH_SESSION_CLIENT_AVG_BYTES;
    long page = sysconf(_SC_PAGESIZE);
    st->page = page > 0 ? (size_t)page : 4096;
    st->lru_head = st->lru_tail = st->dl_head = st->dl_tail = NIL;
    lh_init(&st->tokens);
    lh_init(&st->users);
    *out = &st->base;
    rc = 0;
out:
    return rc;
}

size_t gh_session_memory_touched(gh_session_store_t *s, int64_t since_ms, int64_t before_ms,
                                 gh_session_touch_t *out, size_t cap)
{
    if (!s || s->ops != &memory_ops || !out || cap == 0)
        return 0;
    store_t *st = (store_t *)s;
    size_t k = 0;
    pthread_mutex_lock(&st->lock);
    sort_if_needed(st);
    /* LRU order holds to within one tick (offsets round down), so look one tick further. */
    int64_t floor = since_ms - st->tick_ms;
    for (uint32_t i = st->lru_tail; i != NIL && k < cap; i = REC(st, i)->lru_prev) {
        const rec_t *r = REC(st, i);
        int64_t seen = last_seen_at(st, r);
        if (seen < floor)
            break;
        if (seen < since_ms || seen > before_ms)
            continue;
        memcpy(out[k].token_hash, r->token_hash, GH_TOKEN_HASH_LEN);
        out[k].last_seen_at_ms = seen;
        k++;
    }
    pthread_mutex_unlock(&st->lock);
    return k;
}

/* Token hashes of a user's sessions, newest first, for the persistence layer to delete rows
 * before the sessions end in memory (session.h). */
size_t gh_session_memory_hashes(gh_session_store_t *s, uint64_t user_id, const char *id,
                                const uint8_t *keep, uint8_t (*out)[GH_TOKEN_HASH_LEN], size_t cap)
{
    if (!s || s->ops != &memory_ops || !out || cap == 0)
        return 0;
    store_t *st = (store_t *)s;
    uint8_t raw[GH_SESSION_ID_RAW_LEN];
    size_t len = 0, k = 0;
    if (id && (strnlen(id, GH_SESSION_ID_LEN + 1) != GH_SESSION_ID_LEN ||
               gh_base64url_decode(id, GH_SESSION_ID_LEN, raw, sizeof raw, &len) != 0 ||
               len != sizeof raw))
        return 0;
    pthread_mutex_lock(&st->lock);
    uint32_t h = user_head(st, user_id);
    if (h != NIL) {
        uint32_t x = h;
        do {
            const rec_t *r = REC(st, x);
            if ((!id || memcmp(r->id, raw, sizeof raw) == 0) &&
                (!keep || memcmp(r->token_hash, keep, GH_TOKEN_HASH_LEN) != 0))
                memcpy(out[k++], r->token_hash, GH_TOKEN_HASH_LEN);
            x = r->user_next;
        } while (x != h && k < cap);
    }
    pthread_mutex_unlock(&st->lock);
    return k;
}

/* ---- invariants ---- */

/* The client table: every id either live or on the free list, every entry in its bucket and
 * named by exactly `refs` records, its bytes counted, its bounds kept; empty means no index. */
static int check_clients(store_t *st, const char **why)
{
#define CHECK(cond, msg)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            *why = msg;                                                                            \
            return GH_EINTERNAL;                                                                   \
        }                                                                                          \
    } while (0)
    CHECK((st->cl_slots == NULL) == (st->cl_count == 0), "client index without clients");
    CHECK(st->cl_count <= st->cl_max && st->cl_bytes <= st->cl_max_bytes,
          "client table past its bounds");
    size_t bytes = st->cl_slots ? malloc_usable_size(st->cl_slots) : 0;
    uint64_t live = 0, free_ids = 0, refs = 0, chained = 0;
    if (st->cl_slots) {
        CHECK(st->cl_cap && (st->cl_cap & (st->cl_cap - 1)) == 0 && st->cl_used <= st->cl_cap,
              "client index size");
        for (uint32_t id = 1; id <= st->cl_used; id++) {
            const client_t *e = st->cl_slots[id - 1].entry;
            if (!e)
                continue;
            live++;
            bytes += malloc_usable_size((void *)e);
            CHECK(e->refs > 0, "a client no session names is kept");
            CHECK(e->ip_len <= GH_SESSION_IP_MAX && e->ua_len <= GH_SESSION_UA_MAX &&
                      e->text[e->ip_len] == '\0' && e->text[e->ip_len + 1 + e->ua_len] == '\0' &&
                      strlen(e->text) == e->ip_len &&
                      strlen(e->text + e->ip_len + 1) == e->ua_len && (e->ip_len || e->ua_len),
                  "client text");
            refs += e->refs;
        }
        for (uint32_t id = st->cl_free; id; id = st->cl_slots[id - 1].free_next) {
            CHECK(id <= st->cl_used && !st->cl_slots[id - 1].entry, "free client id in use");
            CHECK(++free_ids <= st->cl_used, "client free list loops");
        }
        for (uint32_t b = 0; b < st->cl_cap; b++) {
            for (uint32_t id = st->cl_slots[b].bucket; id;) {
                CHECK(id <= st->cl_used && st->cl_slots[id - 1].entry, "client chain to a free id");
                const client_t *e = st->cl_slots[id - 1].entry;
                CHECK((e->key & (st->cl_cap - 1)) == b, "client in the wrong bucket");
                gh_session_client_t c;
                client_copy(st, id, &c);
                CHECK(e->key == client_key(st, &c), "client key differs from its text");
                CHECK(++chained <= live, "client chain loops");
                id = e->next;
            }
        }
    }
    CHECK(live == st->cl_count && chained == live, "client count");
    CHECK(live + free_ids == st->cl_used, "client ids lost");
    CHECK(bytes == st->cl_bytes, "client bytes differ from what is held");
    /* Refcounts: the sum first (needs nothing), then entry by entry when a scratch array can be
     * had (charged to `other`, freed before returning). */
    uint64_t named = 0;
    for (uint32_t i = 0; i < st->n; i++) {
        uint32_t c = REC(st, i)->client;
        if (!c)
            continue;
        CHECK(c <= st->cl_used && st->cl_slots[c - 1].entry, "a session names a free client");
        named++;
    }
    CHECK(named == refs, "client refcounts differ from the sessions naming them");
    uint32_t *count = st->cl_used ? gh_mem_calloc(GH_MEM_OTHER, st->cl_used, sizeof *count) : NULL;
    if (count) {
        for (uint32_t i = 0; i < st->n; i++)
            if (REC(st, i)->client)
                count[REC(st, i)->client - 1]++;
        bool same = true;
        for (uint32_t id = 1; id <= st->cl_used; id++)
            if (st->cl_slots[id - 1].entry && st->cl_slots[id - 1].entry->refs != count[id - 1])
                same = false;
        gh_mem_free(GH_MEM_OTHER, count);
        CHECK(same, "a client's refcount differs from the sessions naming it");
    }
#undef CHECK
    return 0;
}

static int check_locked(store_t *st, const char **why)
{
#define CHECK(cond, msg)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            *why = msg;                                                                            \
            return GH_EINTERNAL;                                                                   \
        }                                                                                          \
    } while (0)
    CHECK(st->reserving == 0, "reservation left behind");
    CHECK(st->nchunks == (st->n + CHUNK_RECS - 1) / CHUNK_RECS, "chunks != ceil(n/1024)");
    CHECK((st->nchunks == 0) == (st->chunks == NULL), "directory without chunks");
    size_t bytes = malloc_usable_size(st) + (st->chunks ? malloc_usable_size(st->chunks) : 0);
    for (uint32_t c = 0; c < st->nchunks; c++)
        bytes += malloc_usable_size(st->chunks[c]);
    lhtable_t *tables[2] = {&st->tokens, &st->users};
    for (int w = 0; w < 2; w++) {
        lhtable_t *t = tables[w];
        CHECK(t->m >= LH_MIN && (1u << t->level) <= t->m &&
                  t->m - (1u << t->level) < (1u << t->level),
              "table level");
        CHECK(t->nseg == seg_of(t->m - 1) + 1, "table segments != buckets in use");
        for (uint32_t k = 1; k < t->nseg; k++)
            bytes += malloc_usable_size(t->seg[k]);
        uint64_t seen = 0;
        for (uint32_t b = 0; b < t->m; b++) {
            for (uint32_t i = *lh_bucket(t, b); i != NIL; i = *chain_next(st, w, i)) {
                CHECK(i < st->n, "chain leads outside the records");
                CHECK(lh_addr(t, rec_key(st, w, i)) == b, "entry in the wrong bucket");
                CHECK(++seen <= st->n, "chain loops");
            }
        }
        CHECK(seen == t->count, "table count");
    }
    CHECK(st->tokens.count == st->n, "token table does not hold every session");
    int crc = check_clients(st, why);
    if (crc != 0)
        return crc;
    bytes += st->cl_bytes;
    CHECK(bytes == st->bytes, "accounted bytes differ from what is held");
    for (int w = 0; w < 2; w++) {
        uint64_t seen = 0;
        uint32_t prev = NIL;
        for (uint32_t i = *lhead(st, w); i != NIL; i = *lnext(st, w, i)) {
            CHECK(i < st->n && ++seen <= st->n, "list leads outside or loops");
            CHECK(*lprev(st, w, i) == prev, "list back link");
            /* Offsets round down to ticks: LRU order holds to within one tick. */
            CHECK(st->unsorted || prev == NIL ||
                      lkey(st, w, prev) <= lkey(st, w, i) + (w == LRU ? st->tick_ms - 1 : 0),
                  "list out of order");
            prev = i;
        }
        CHECK(prev == *ltail(st, w) && seen == st->n, "list tail or length");
    }
    uint64_t in_rings = 0;
    for (uint32_t b = 0; b < st->users.m; b++) {
        for (uint32_t h = *lh_bucket(&st->users, b); h != NIL; h = REC(st, h)->user_chain) {
            const rec_t *hr = REC(st, h);
            uint32_t x = h, count = 0;
            do {
                const rec_t *r = REC(st, x);
                CHECK(get64(r->user_id) == get64(hr->user_id), "foreign session in a user ring");
                CHECK(REC(st, r->user_next)->user_prev == x, "user ring back link");
                CHECK(r->user_next == h || created_at(REC(st, r->user_next)) <= created_at(r),
                      "user ring not newest first");
                CHECK(++count <= st->n, "user ring loops");
                x = r->user_next;
            } while (x != h);
            CHECK(count == hr->user_count, "user session count");
            CHECK(!st->limits.max_per_user || count <= st->limits.max_per_user,
                  "user above the cap");
            in_rings += count;
        }
    }
    CHECK(in_rings == st->n, "sessions outside user rings");
    for (uint32_t i = 0; i < st->n; i++) {
        const rec_t *r = REC(st, i);
        CHECK(r->last_seen <= r->expires, "last seen after the deadline");
        CHECK(token_find(st, r->token_hash) == i, "session not found by its hash");
    }
    uint64_t ended = 0;
    for (int r = 0; r < GH_END__COUNT; r++)
        ended += st->ended_total[r];
    CHECK(st->created_total + st->restored_total == ended + st->n, "created - ended != active");
    CHECK(!st->limits.budget_bytes || st->n == 0 || st->bytes <= st->limits.budget_bytes,
          "over the budget");
#undef CHECK
    *why = "ok";
    return 0;
}

int gh_session_memory_check(gh_session_store_t *s, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    if (!s || s->ops != &memory_ops) {
        *why = "not a memory store";
        return GH_EINVAL;
    }
    store_t *st = (store_t *)s;
    pthread_mutex_lock(&st->lock);
    int rc = check_locked(st, why);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

void gh_session_memory_clients(gh_session_store_t *s, gh_session_clients_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!s || s->ops != &memory_ops)
        return;
    store_t *st = (store_t *)s;
    pthread_mutex_lock(&st->lock);
    out->entries = st->cl_count;
    out->bytes = st->cl_bytes;
    out->max_entries = st->cl_max;
    out->max_bytes = st->cl_max_bytes;
    out->full_total = st->cl_full_total;
    pthread_mutex_unlock(&st->lock);
}
