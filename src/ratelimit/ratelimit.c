/*
 * ratelimit.c — the per-IP and per-account throttles of ratelimit.h.
 *
 * Design decision: both tables are set-associative caches of fixed size (WAYS slots per set,
 * the set picked by a SipHash keyed at start). Finding, inserting and replacing an entry touch
 * one set only, so every operation is O(WAYS) under one striped lock, and memory is decided at
 * create time — an attacker with a million addresses only decides which old entries go. The
 * replacement order keeps what matters: a refilled bucket or a forgotten account is as good as
 * an empty slot; a bucket that is nearly full goes before one that is throttling someone; an
 * account in back-off is replaced last.
 *
 * Per-IP buckets use GCRA (the generic cell rate algorithm): one "theoretical arrival time" per
 * entry instead of a token count and a timestamp. A client may act while tat - now <= window -
 * interval, i.e. `count` times in a burst, then once per interval.
 */
#include "ratelimit/ratelimit.h"

#include <assert.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#include "mem/mem.h"

#define WAYS 8
#define MAX_LOCKS 256
#define USERNAME_HASH_MAX 256
/* An attempt in flight longer than this is taken to be lost (its request went away without
 * an outcome) and stops counting, so a lost request can never lock an account for good. */
#define INFLIGHT_STALE_MS (5 * 60 * 1000)

typedef struct {
    uint64_t key; /* 0 = empty */
    int64_t tat;  /* microseconds: when the bucket will be full again */
} ip_slot_t;

typedef struct {
    uint64_t key;        /* 0 = empty */
    int64_t next_ms;     /* in back-off: no new attempt before this */
    int64_t last_ms;     /* last attempt begun or ended (forgetting, replacement order) */
    int64_t inflight_ms; /* when the newest attempt in flight began */
    uint16_t failures;   /* consecutive, saturating */
    uint16_t inflight;   /* attempts begun and not yet ended */
} account_slot_t;

struct gh_ratelimit {
    gh_ratelimit_params_t p;
    uint8_t sip_key[crypto_shorthash_KEYBYTES];
    int64_t interval_us;            /* ip_window / ip_count */
    int64_t tau_us;                 /* ip_window - interval: how far ahead of now tat may run */
    uint32_t ip_sets, account_sets; /* powers of two */
    uint32_t nlocks;                /* power of two */
    ip_slot_t *ip;
    account_slot_t *acct;
    pthread_mutex_t locks[MAX_LOCKS];
    _Atomic uint64_t ip_entries, account_entries;
    _Atomic uint64_t ip_rejected, account_rejected;
    _Atomic uint64_t ip_evictions, account_evictions;
    _Atomic uint64_t lockouts;
};

static uint32_t pow2_sets(uint32_t slots)
{
    uint32_t sets = 1;
    while ((uint64_t)sets * WAYS < slots && sets < (1u << 26))
        sets <<= 1;
    return sets;
}

int gh_ratelimit_create(const gh_ratelimit_params_t *params, gh_ratelimit_t **out)
{
    if (params->ip_count && params->ip_window_ms <= 0)
        return GH_EINVAL;
    if (params->account_threshold &&
        (params->account_base_delay_ms <= 0 || params->account_max_delay_ms <= 0))
        return GH_EINVAL;
    gh_ratelimit_t *rl = gh_mem_calloc(GH_MEM_RATELIMIT, 1, sizeof *rl);
    if (!rl)
        return GH_ENOMEM;
    rl->p = *params;
    randombytes_buf(rl->sip_key, sizeof rl->sip_key);
    rl->ip_sets = pow2_sets(params->ip_slots);
    rl->account_sets = pow2_sets(params->account_slots);
    if (params->ip_count) {
        rl->interval_us = params->ip_window_ms * 1000 / params->ip_count;
        if (rl->interval_us < 1)
            rl->interval_us = 1;
        rl->tau_us = params->ip_window_ms * 1000 - rl->interval_us;
    }
    uint32_t biggest = rl->ip_sets > rl->account_sets ? rl->ip_sets : rl->account_sets;
    rl->nlocks = biggest < MAX_LOCKS ? biggest : MAX_LOCKS;
    rl->ip = gh_mem_calloc(GH_MEM_RATELIMIT, (size_t)rl->ip_sets * WAYS, sizeof *rl->ip);
    rl->acct = gh_mem_calloc(GH_MEM_RATELIMIT, (size_t)rl->account_sets * WAYS, sizeof *rl->acct);
    if (!rl->ip || !rl->acct) {
        gh_mem_free(GH_MEM_RATELIMIT, rl->ip);
        gh_mem_free(GH_MEM_RATELIMIT, rl->acct);
        gh_mem_free(GH_MEM_RATELIMIT, rl);
        return GH_ENOMEM;
    }
    for (uint32_t i = 0; i < rl->nlocks; i++)
        pthread_mutex_init(&rl->locks[i], NULL);
    *out = rl;
    return 0;
}

void gh_ratelimit_destroy(gh_ratelimit_t **rlp)
{
    gh_ratelimit_t *rl = *rlp;
    if (!rl)
        return;
    for (uint32_t i = 0; i < rl->nlocks; i++)
        pthread_mutex_destroy(&rl->locks[i]);
    gh_mem_free(GH_MEM_RATELIMIT, rl->ip);
    gh_mem_free(GH_MEM_RATELIMIT, rl->acct);
    sodium_memzero(rl->sip_key, sizeof rl->sip_key);
    gh_mem_free(GH_MEM_RATELIMIT, rl);
    *rlp = NULL;
}

static uint64_t keyed_hash(const gh_ratelimit_t *rl, const uint8_t *data, size_t len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t k;
    crypto_shorthash(h, data, len, rl->sip_key);
    memcpy(&k, h, sizeof k);
    return k ? k : 1; /* 0 marks an empty slot */
}

/* The set of a key uses its high bits; the stripe lock follows the set. */
static uint32_t set_of(uint64_t key, uint32_t nsets)
{
    return (uint32_t)(key >> 32) & (nsets - 1);
}

static pthread_mutex_t *lock_of(gh_ratelimit_t *rl, uint32_t set)
{
    return &rl->locks[set & (rl->nlocks - 1)];
}

/* ---- per IP ---- */

static uint64_t ip_key(const gh_ratelimit_t *rl, const gh_ip_t *ip)
{
    gh_ip_t k = *ip;
    if (!gh_ip_is_v4(&k))
        memset(k.b + 8, 0, 8); /* a /64 is one client */
    return keyed_hash(rl, k.b, sizeof k.b);
}

/* Finds key's slot in its set, reclaiming refilled entries on the way; when absent, takes a
 * free slot or replaces the entry closest to refilled. Never NULL. Called with the set locked. */
static ip_slot_t *ip_find(gh_ratelimit_t *rl, ip_slot_t *set, uint64_t key, int64_t now_us,
                          bool create)
{
    ip_slot_t *hit = NULL, *free_slot = NULL, *oldest = NULL;
    for (int i = 0; i < WAYS; i++) {
        ip_slot_t *s = &set[i];
        if (s->key == key) {
            hit = s;
            continue;
        }
        if (s->key && s->tat <= now_us) { /* refilled: the same as no entry */
            s->key = 0;
            atomic_fetch_sub_explicit(&rl->ip_entries, 1, memory_order_relaxed);
        }
        if (!s->key) {
            if (!free_slot)
                free_slot = s;
        } else if (!oldest || s->tat < oldest->tat) {
            oldest = s;
        }
    }
    if (hit || !create)
        return hit;
    if (free_slot) {
        atomic_fetch_add_explicit(&rl->ip_entries, 1, memory_order_relaxed);
        hit = free_slot;
    } else {
        assert(oldest);
        atomic_fetch_add_explicit(&rl->ip_evictions, 1, memory_order_relaxed);
        hit = oldest;
    }
    hit->key = key;
    hit->tat = now_us;
    return hit;
}

int gh_ratelimit_ip_take(gh_ratelimit_t *rl, const gh_ip_t *ip, int64_t now_ms, int64_t *retry_ms)
{
    if (!rl->p.ip_count)
        return 0;
    uint64_t key = ip_key(rl, ip);
    uint32_t set = set_of(key, rl->ip_sets);
    int64_t now_us = now_ms * 1000;
    int rc = 0;
    pthread_mutex_t *lk = lock_of(rl, set);
    pthread_mutex_lock(lk);
    ip_slot_t *s = ip_find(rl, &rl->ip[(size_t)set * WAYS], key, now_us, true);
    int64_t tat = s->tat > now_us ? s->tat : now_us;
    if (tat - now_us > rl->tau_us) {
        *retry_ms = (tat - rl->tau_us - now_us + 999) / 1000;
        if (*retry_ms < 1)
            *retry_ms = 1;
        atomic_fetch_add_explicit(&rl->ip_rejected, 1, memory_order_relaxed);
        rc = GH_ELIMIT;
    } else {
        s->tat = tat + rl->interval_us;
    }
    pthread_mutex_unlock(lk);
    return rc;
}

void gh_ratelimit_ip_refund(gh_ratelimit_t *rl, const gh_ip_t *ip, int64_t now_ms)
{
    if (!rl->p.ip_count)
        return;
    uint64_t key = ip_key(rl, ip);
    uint32_t set = set_of(key, rl->ip_sets);
    pthread_mutex_t *lk = lock_of(rl, set);
    pthread_mutex_lock(lk);
    ip_slot_t *s = ip_find(rl, &rl->ip[(size_t)set * WAYS], key, now_ms * 1000, false);
    if (s)
        s->tat -= rl->interval_us; /* at or below now it reads as a full bucket */
    pthread_mutex_unlock(lk);
}

/* ---- per account ---- */

uint64_t gh_ratelimit_account_key(const gh_ratelimit_t *rl, const char *username, size_t len)
{
    uint8_t lower[USERNAME_HASH_MAX];
    if (len > sizeof lower)
        len = sizeof lower;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)username[i];
        lower[i] = c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
    }
    uint64_t k = keyed_hash(rl, lower, len);
    sodium_memzero(lower, len); /* a username typed into the password field is a password */
    return k;
}

static int64_t backoff_delay(const gh_ratelimit_t *rl, uint32_t step)
{
    assert(step >= 1);
    int64_t d = rl->p.account_base_delay_ms, max = rl->p.account_max_delay_ms;
    for (uint32_t i = 1; i < step && d < max; i++)
        d *= 2; /* stops at the cap, so it cannot overflow */
    return d < max ? d : max;
}

/* Drops attempts in flight that have been lost; true when the entry holds nothing any more. */
static bool account_idle(const gh_ratelimit_t *rl, account_slot_t *s, int64_t now_ms)
{
    if (s->inflight && now_ms - s->inflight_ms > INFLIGHT_STALE_MS)
        s->inflight = 0;
    if (s->inflight)
        return false;
    return s->failures == 0 || now_ms - s->last_ms > rl->p.account_forget_ms;
}

/* Like ip_find. Replacement order: idle entries, then entries not blocking anyone now (least
 * recently used first), then the one whose back-off ends soonest. */
static account_slot_t *account_find(gh_ratelimit_t *rl, account_slot_t *set, uint64_t key,
                                    int64_t now_ms, bool create)
{
    account_slot_t *hit = NULL, *free_slot = NULL, *lru = NULL, *soonest = NULL;
    for (int i = 0; i < WAYS; i++) {
        account_slot_t *s = &set[i];
        if (s->key == key) {
            hit = s;
            continue;
        }
        if (s->key && account_idle(rl, s, now_ms)) {
            memset(s, 0, sizeof *s);
            atomic_fetch_sub_explicit(&rl->account_entries, 1, memory_order_relaxed);
        }
        if (!s->key) {
            if (!free_slot)
                free_slot = s;
        } else if (s->next_ms <= now_ms && s->inflight == 0) {
            if (!lru || s->last_ms < lru->last_ms)
                lru = s;
        } else if (!soonest || s->next_ms < soonest->next_ms) {
            soonest = s;
        }
    }
    if (hit && account_idle(rl, hit, now_ms)) {
        uint64_t k = hit->key;
        memset(hit, 0, sizeof *hit);
        hit->key = k;
    }
    if (hit || !create)
        return hit;
    if (free_slot) {
        atomic_fetch_add_explicit(&rl->account_entries, 1, memory_order_relaxed);
        hit = free_slot;
    } else {
        hit = lru ? lru : soonest;
        assert(hit);
        atomic_fetch_add_explicit(&rl->account_evictions, 1, memory_order_relaxed);
    }
    memset(hit, 0, sizeof *hit);
    hit->key = key;
    return hit;
}

int gh_ratelimit_account_begin(gh_ratelimit_t *rl, uint64_t key, int64_t now_ms, int64_t *retry_ms)
{
    if (!rl->p.account_threshold)
        return 0;
    uint32_t set = set_of(key, rl->account_sets);
    pthread_mutex_t *lk = lock_of(rl, set);
    int rc = 0;
    pthread_mutex_lock(lk);
    account_slot_t *s = account_find(rl, &rl->acct[(size_t)set * WAYS], key, now_ms, true);
    uint32_t pending = (uint32_t)s->failures + s->inflight;
    if (pending >= rl->p.account_threshold) {
        if (now_ms < s->next_ms) {
            *retry_ms = s->next_ms - now_ms;
            atomic_fetch_add_explicit(&rl->account_rejected, 1, memory_order_relaxed);
            rc = GH_ELIMIT;
            goto out;
        }
        /* One attempt per delay: hold the door for as long as this one would cost if it
         * fails, so parallel attempts queue behind it instead of guessing at once. */
        s->next_ms = now_ms + backoff_delay(rl, pending - rl->p.account_threshold + 1);
    }
    if (s->inflight < UINT16_MAX)
        s->inflight++;
    s->inflight_ms = now_ms;
    s->last_ms = now_ms;
out:
    pthread_mutex_unlock(lk);
    return rc;
}

bool gh_ratelimit_account_reset(gh_ratelimit_t *rl, uint64_t key, int64_t now_ms)
{
    uint32_t set = set_of(key, rl->account_sets);
    pthread_mutex_t *lk = lock_of(rl, set);
    pthread_mutex_lock(lk);
    account_slot_t *s = account_find(rl, &rl->acct[(size_t)set * WAYS], key, now_ms, false);
    bool had = s && s->failures > 0;
    if (s) {
        s->failures = 0;
        s->next_ms = 0;
    }
    pthread_mutex_unlock(lk);
    return had;
}

void gh_ratelimit_account_end(gh_ratelimit_t *rl, uint64_t key, gh_ratelimit_outcome_t outcome,
                              int64_t now_ms, gh_ratelimit_verdict_t *verdict)
{
    gh_ratelimit_verdict_t v = {0};
    if (!rl->p.account_threshold)
        goto out;
    uint32_t set = set_of(key, rl->account_sets);
    pthread_mutex_t *lk = lock_of(rl, set);
    pthread_mutex_lock(lk);
    /* A failure whose entry was replaced meanwhile starts a new one: it still counts. */
    account_slot_t *s = account_find(rl, &rl->acct[(size_t)set * WAYS], key, now_ms,
                                     outcome == GH_RATELIMIT_FAILURE);
    if (s) {
        if (s->inflight)
            s->inflight--;
        s->last_ms = now_ms;
        if (outcome == GH_RATELIMIT_SUCCESS) {
            /* Parallel attempts still in flight keep the entry; their outcome decides. */
            s->failures = 0;
            s->next_ms = 0;
        } else if (outcome == GH_RATELIMIT_FAILURE) {
            if (s->failures < UINT16_MAX)
                s->failures++;
            if (s->failures >= rl->p.account_threshold) {
                v.delay_ms = backoff_delay(rl, (uint32_t)s->failures - rl->p.account_threshold + 1);
                if (s->next_ms < now_ms + v.delay_ms)
                    s->next_ms = now_ms + v.delay_ms;
                v.lockout = s->failures == rl->p.account_threshold;
                if (v.lockout)
                    atomic_fetch_add_explicit(&rl->lockouts, 1, memory_order_relaxed);
            }
        }
        v.failures = s->failures;
        if (s->failures == 0 && s->inflight == 0) { /* nothing left to remember */
            s->key = 0;
            atomic_fetch_sub_explicit(&rl->account_entries, 1, memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(lk);
out:
    if (verdict)
        *verdict = v;
}

void gh_ratelimit_stats(const gh_ratelimit_t *rl, gh_ratelimit_stats_t *out)
{
#define LOAD(f) atomic_load_explicit(&rl->f, memory_order_relaxed)
    out->ip_entries = LOAD(ip_entries);
    out->account_entries = LOAD(account_entries);
    out->ip_rejected = LOAD(ip_rejected);
    out->account_rejected = LOAD(account_rejected);
    out->ip_evictions = LOAD(ip_evictions);
    out->account_evictions = LOAD(account_evictions);
    out->lockouts = LOAD(lockouts);
#undef LOAD
    out->ip_capacity = (uint64_t)rl->ip_sets * WAYS;
    out->account_capacity = (uint64_t)rl->account_sets * WAYS;
    out->bytes = sizeof *rl + (size_t)rl->ip_sets * WAYS * sizeof *rl->ip +
                 (size_t)rl->account_sets * WAYS * sizeof *rl->acct;
}
