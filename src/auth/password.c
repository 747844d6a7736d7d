/*
 * password.c — the password pool (see password.h) and the username/password rules.
 *
 * Design decision: a fixed number of workers take jobs from a bounded FIFO (a ring of job
 * pointers allocated at start), and submission never waits — a full queue is refused at once, so
 * a login flood turns into fast 503s instead of a pile of suspended connections and argon2
 * buffers. Workers run at a lower CPU priority (nice +WORKER_NICE) than the threads that created
 * them, so on a saturated machine the scheduler favours the HTTP threads answering token checks.
 *
 * Each job owns a copy of the password in memory charged to `password`; the whole job (password
 * and stored hash) is zeroed when it is freed, right after its callback returns.
 *
 * A failed verify costs the configured argon2 work whoever the user is: an unknown user is
 * checked against a dummy made at the configured cost, and a stored hash of a lower cost (made
 * before the cost was raised) is topped up with argon2 work of the difference after a mismatch,
 * so "known user with an old hash" cannot be told from "no such user" by timing. Work is counted
 * in argon2 blocks (1 KiB compressed once per pass); a hash above the configured cost costs its
 * own work (a failure then costs max(stored, configured)).
 */
#include "auth/password.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

_Static_assert(GH_PWHASH_STR_MAX == crypto_pwhash_STRBYTES, "hash strings must fit");

#define WORKER_NICE 5

const double gh_password_hist_bounds[GH_PASSWORD_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1,
                                                                  0.25,  0.5,  1.0,   2.5,  5.0};

typedef enum { JOB_VERIFY, JOB_HASH } job_kind_t;

typedef struct {
    job_kind_t kind;
    bool has_hash; /* verify: false means "against the dummy" (unknown user) */
    gh_password_cb cb;
    void *arg;
    char stored_hash[GH_PWHASH_STR_MAX]; /* a copy: the caller's buffer may be gone by then */
    size_t pwlen;
    char pw[]; /* pwlen bytes and a NUL */
} job_t;

struct gh_password_pool {
    gh_password_params_t params;
    pthread_mutex_t lock;
    pthread_cond_t work; /* signalled when a job is queued or stopping is set */
    job_t **ring;        /* params.queue slots */
    size_t head, count;  /* count jobs waiting from ring[head] on */
    size_t running;      /* jobs taken by a worker and not yet called back and freed */
    bool stopping;
    pthread_t *threads;
    uint32_t nthreads; /* started so far */
    char dummy_hash[GH_PWHASH_STR_MAX];
    _Atomic uint64_t hist[GH_PASSWORD_HIST_BUCKETS + 1];
    _Atomic uint64_t sum_ns;
    _Atomic uint64_t verify_blocks;                 /* argon2 blocks computed by verify jobs */
    const gh_password_observer_t *_Atomic observer; /* the /metrics histogram, once attached */
};

static bool cost_valid(const gh_password_params_t *c)
{
    return c->ops >= crypto_pwhash_OPSLIMIT_MIN && c->ops <= crypto_pwhash_OPSLIMIT_MAX &&
           c->memory >= crypto_pwhash_MEMLIMIT_MIN && c->memory <= crypto_pwhash_MEMLIMIT_MAX;
}

/* Argon2 work of one hash at a cost, in blocks: argon2 uses max(8, memory / 1 KiB) blocks
 * rounded down to a multiple of 4 (one lane, four slices) and compresses each once per pass. */
static uint64_t cost_blocks(uint64_t ops, uint64_t memory)
{
    uint64_t m = memory / 1024;
    if (m < 8)
        m = 8;
    return ops * (m - m % 4);
}

static void observe(gh_password_pool_t *p, int64_t ns)
{
    double s = (double)ns / 1e9;
    size_t b = 0;
    while (b < GH_PASSWORD_HIST_BUCKETS && s > gh_password_hist_bounds[b])
        b++;
    atomic_fetch_add_explicit(&p->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->sum_ns, ns > 0 ? (uint64_t)ns : 0, memory_order_relaxed);
    const gh_password_observer_t *o = atomic_load_explicit(&p->observer, memory_order_acquire);
    if (o && o->observe)
        o->observe(o->ctx, ns);
}

/* crypto_pwhash_str at a cost. libsodium reports bad limits with EINVAL/EFBIG; the only other
 * way it fails is argon2 not getting its memory. */
static int hash_at(uint64_t ops, uint64_t memory, const char *pw, size_t len,
                   char out[GH_PWHASH_STR_MAX])
{
    errno = 0;
    if (crypto_pwhash_str(out, pw, len, ops, (size_t)memory) == 0)
        return 0;
    int err = errno;
    out[0] = '\0';
    if (err == EINVAL || err == EFBIG)
        return GH_EINVAL;
    GH_LOG(GH_LOG_WARN, "argon2 could not get its memory", GH_LI("hash_memory", memory));
    return GH_ENOMEM;
}

/* The parts of an argon2 hash string that crypto_pwhash needs to recompute it. */
typedef struct {
    int alg;
    unsigned long long ops;
    size_t memory;
    unsigned char salt[crypto_pwhash_SALTBYTES];
    unsigned char hash[64]; /* a 128-byte string cannot hold a longer one */
    size_t hash_len;
} phc_t;

/* Splits "$argon2id$v=19$m=M,t=T,p=1$<salt>$<hash>" (or $argon2i$). Only called on strings
 * libsodium's own decoder accepted, so it need not be a strict validator; false means "a form
 * crypto_pwhash cannot recompute" (p > 1, another salt size), not "malformed". */
static bool phc_parse(const char *s, phc_t *out)
{
    const char *rest;
    if (strncmp(s, "$argon2id$", 10) == 0) {
        out->alg = crypto_pwhash_ALG_ARGON2ID13;
        rest = s + 10;
    } else if (strncmp(s, "$argon2i$", 9) == 0) {
        out->alg = crypto_pwhash_ALG_ARGON2I13;
        rest = s + 9;
    } else {
        return false;
    }
    unsigned version, m, t, lanes;
    int used = 0;
    if (sscanf(rest, "v=%u$m=%u,t=%u,p=%u$%n", &version, &m, &t, &lanes, &used) != 4 || used == 0 ||
        version != 19 || lanes != 1)
        return false;
    rest += used;
    const char *sep = strchr(rest, '$');
    size_t salt_len;
    if (!sep ||
        sodium_base642bin(out->salt, sizeof out->salt, rest, (size_t)(sep - rest), NULL, &salt_len,
                          NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        salt_len != sizeof out->salt)
        return false;
    if (sodium_base642bin(out->hash, sizeof out->hash, sep + 1, strlen(sep + 1), NULL,
                          &out->hash_len, NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
        out->hash_len < crypto_pwhash_BYTES_MIN)
        return false;
    out->ops = t;
    out->memory = (size_t)m * 1024;
    return true;
}

/*
 * 0 when pw matches hash (a string libsodium's decoder accepts), GH_EAUTH when not, GH_ENOMEM
 * when argon2 could not get its memory. crypto_pwhash_str_verify cannot be used for the last
 * distinction: libsodium 1.0.18 (Debian 12) reports an allocation failure during a verify as a
 * mismatch, which would turn "server out of memory" into "wrong password" (a 401 that counts
 * toward the account's back-off). So the hash is recomputed with crypto_pwhash, which leaves the
 * allocator's ENOMEM, and compared in constant time — the same work argon2_verify does.
 */
/* The cost a hash string names ("...$m=M,t=T,..."), read loosely, as argon2 blocks; 0 when the
 * string names none. For hashes phc_parse leaves to libsodium (p > 1, other salt sizes). */
static uint64_t named_blocks(const char *hash)
{
    const char *m = strstr(hash, "$m="), *t = strstr(hash, ",t=");
    unsigned long long mv, tv;
    if (!m || !t || sscanf(m + 3, "%llu", &mv) != 1 || sscanf(t + 3, "%llu", &tv) != 1 ||
        mv > (1ULL << 32) || tv > (1ULL << 32))
        return 0;
    return cost_blocks(tv, mv * 1024);
}

static int check_password(const char *hash, const char *pw, size_t pwlen, uint64_t *blocks)
{
    phc_t phc;
    int ret;
    *blocks = 0;
    if (!phc_parse(hash, &phc)) {
        *blocks = named_blocks(hash);
        errno = 0;
        if (crypto_pwhash_str_verify(hash, pw, pwlen) == 0)
            ret = 0;
        else
            ret = errno == ENOMEM ? GH_ENOMEM : GH_EAUTH;
        goto out;
    }
    unsigned char computed[sizeof phc.hash];
    *blocks = cost_blocks(phc.ops, phc.memory);
    errno = 0;
    if (crypto_pwhash(computed, phc.hash_len, pw, pwlen, phc.salt, phc.ops, phc.memory, phc.alg) !=
        0)
        ret = errno == EINVAL || errno == EFBIG ? GH_EAUTH : GH_ENOMEM;
    else
        ret = sodium_memcmp(computed, phc.hash, phc.hash_len) == 0 ? 0 : GH_EAUTH;
    sodium_memzero(computed, sizeof computed);
out:
    sodium_memzero(&phc, sizeof phc);
    return ret;
}

/*
 * Argon2 work of `blocks` blocks whose result nobody reads: the top-up after a mismatch against a
 * hash cheaper than the configured cost. Spread over the configured passes like a real hash (so
 * it touches about as much memory per pass); below argon2's minimum of 8 blocks it is skipped
 * (microseconds). 0, or GH_ENOMEM when argon2 could not get its memory, like a real verify.
 */
static int pad_work(const gh_password_params_t *c, const job_t *job, uint64_t blocks,
                    uint64_t *done)
{
    uint64_t ops = c->ops, m = blocks / c->ops;
    if (m < 8) {
        ops = 1;
        m = blocks;
    }
    m -= m % 4;
    *done = 0;
    if (m < 8)
        return 0;
    static const unsigned char salt[crypto_pwhash_SALTBYTES];
    unsigned char out[32];
    errno = 0;
    int rc = crypto_pwhash(out, sizeof out, job->pw, job->pwlen, salt, ops, (size_t)(m * 1024),
                           crypto_pwhash_ALG_ARGON2ID13);
    sodium_memzero(out, sizeof out);
    if (rc != 0)
        return GH_ENOMEM;
    *done = ops * m;
    return 0;
}

/*
 * Verifies job->pw. Every outcome that is not a memory failure costs at least the configured
 * argon2 work: an unknown user (no stored hash) and a malformed stored hash are both checked
 * against the dummy, and a mismatch against a cheaper stored hash is topped up to the configured
 * work (pad_work), so none is faster than a wrong password for a user with a current hash.
 */
static int verify(gh_password_pool_t *p, const job_t *job, char new_hash[GH_PWHASH_STR_MAX])
{
    const gh_password_params_t *c = &p->params;
    uint64_t configured = cost_blocks(c->ops, c->memory), spent = 0, padded = 0;
    /* -1: not a hash libsodium can read; 0: current cost; 1: other cost or algorithm */
    int stale = job->has_hash
                    ? crypto_pwhash_str_needs_rehash(job->stored_hash, c->ops, (size_t)c->memory)
                    : 0;
    bool dummy = !job->has_hash || stale < 0;
    int rc = check_password(dummy ? p->dummy_hash : job->stored_hash, job->pw, job->pwlen, &spent);
    if (rc == GH_EAUTH && !dummy && stale > 0 && spent < configured)
        rc = pad_work(c, job, configured - spent, &padded) == 0 ? GH_EAUTH : GH_ENOMEM;
    atomic_fetch_add_explicit(&p->verify_blocks, spent + padded, memory_order_relaxed);
    if (rc == GH_ENOMEM) {
        GH_LOG(GH_LOG_WARN, "argon2 could not get its memory for a verify");
        return GH_ENOMEM;
    }
    if (dummy) {
        if (!job->has_hash)
            return GH_EAUTH;
        GH_LOG(GH_LOG_WARN, "a stored password hash is malformed");
        return GH_EINVAL;
    }
    if (rc != 0)
        return GH_EAUTH;
    if (stale > 0) {
        if (hash_at(c->ops, c->memory, job->pw, job->pwlen, new_hash) != 0)
            new_hash[0] = '\0'; /* keep the old hash; the login itself still succeeds */
        else
            atomic_fetch_add_explicit(&p->verify_blocks, configured, memory_order_relaxed);
    }
    return 0;
}

static void run_job(gh_password_pool_t *p, job_t *job)
{
    gh_password_result_t res;
    memset(&res, 0, sizeof res);
    int64_t t0 = gh_clock_mono_ns();
    if (job->kind == JOB_HASH)
        res.result = hash_at(p->params.ops, p->params.memory, job->pw, job->pwlen, res.new_hash);
    else
        res.result = verify(p, job, res.new_hash);
    observe(p, gh_clock_mono_ns() - t0);
    job->cb(job->arg, &res);
    sodium_memzero(&res, sizeof res);
}

/* Linux keeps a nice value per thread; raising our own never needs privileges. Failure only
 * means the workers compete at equal priority, so it is ignored. */
static void lower_priority(void)
{
    id_t tid = (id_t)gettid();
    errno = 0;
    int nice_now = getpriority(PRIO_PROCESS, tid);
    if (nice_now == -1 && errno != 0)
        return;
    int target = nice_now + WORKER_NICE > 19 ? 19 : nice_now + WORKER_NICE;
    if (setpriority(PRIO_PROCESS, tid, target) != 0)
        GH_LOG(GH_LOG_DEBUG, "password worker priority unchanged", GH_LS("error", strerror(errno)));
}

static void *worker_main(void *arg)
{
    gh_password_pool_t *p = arg;
    lower_priority();
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->count == 0)
            break; /* stopping, and every queued job has been taken */
        job_t *job = p->ring[p->head];
        p->ring[p->head] = NULL;
        p->head = (p->head + 1) % p->params.queue;
        p->count--;
        p->running++;
        pthread_mutex_unlock(&p->lock);
        run_job(p, job);
        gh_mem_free_secret(GH_MEM_PASSWORD, job);
        pthread_mutex_lock(&p->lock);
        p->running--;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Stops and joins the workers started so far (they drain the queue first) and frees the pool. */
static void teardown(gh_password_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < p->nthreads; i++) {
        assert(!pthread_equal(pthread_self(), p->threads[i])); /* never stop from a callback */
        pthread_join(p->threads[i], NULL);
    }
    /* Jobs can only be queued once start has returned the pool, and then workers exist. */
    assert(p->count == 0 && p->running == 0);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    gh_mem_free(GH_MEM_PASSWORD, p->ring);
    gh_mem_free(GH_MEM_PASSWORD, p->threads);
    sodium_memzero(p->dummy_hash, sizeof p->dummy_hash);
    gh_mem_free(GH_MEM_PASSWORD, p);
}

int gh_password_pool_start(const gh_password_params_t *params, gh_password_pool_t **out)
{
    *out = NULL;
    if (params->workers == 0 || params->queue == 0 || !cost_valid(params))
        return GH_EINVAL;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    gh_password_pool_t *p = gh_mem_calloc(GH_MEM_PASSWORD, 1, sizeof *p);
    if (!p)
        return GH_ENOMEM;
    int rc = GH_ENOMEM;
    p->params = *params;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    p->ring = gh_mem_calloc(GH_MEM_PASSWORD, params->queue, sizeof *p->ring);
    p->threads = gh_mem_calloc(GH_MEM_PASSWORD, params->workers, sizeof *p->threads);
    if (!p->ring || !p->threads)
        goto fail;
    /* The dummy: a hash of 32 random bytes nobody knows, at the configured cost, so verifying an
     * unknown user costs what verifying a wrong password does. */
    unsigned char secret[32];
    randombytes_buf(secret, sizeof secret);
    rc = hash_at(params->ops, params->memory, (const char *)secret, sizeof secret, p->dummy_hash);
    sodium_memzero(secret, sizeof secret);
    if (rc != 0)
        goto fail;
    for (uint32_t i = 0; i < params->workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            GH_LOG(GH_LOG_ERROR, "cannot start a password worker", GH_LS("error", strerror(errno)));
            rc = GH_EINTERNAL;
            goto fail;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
fail:
    teardown(p);
    return rc;
}

void gh_password_pool_stop(gh_password_pool_t **pp)
{
    gh_password_pool_t *p = *pp;
    if (!p)
        return;
    /* Refuse new work first, so the figures logged are the jobs that will still call back. */
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    size_t queued = p->count, running = p->running;
    pthread_mutex_unlock(&p->lock);
    GH_LOG(GH_LOG_INFO, "password pool stopping", GH_LI("queued", queued),
           GH_LI("running", running));
    teardown(p);
    *pp = NULL;
}

static int submit(gh_password_pool_t *p, job_kind_t kind, const char *stored_hash, const char *pw,
                  size_t pwlen, gh_password_cb cb, void *arg)
{
    assert(p && cb && (pw || pwlen == 0));
    if (pwlen > GH_PASSWORD_MAX)
        return GH_EINVAL;
    size_t hlen = stored_hash ? strnlen(stored_hash, GH_PWHASH_STR_MAX) : 0;
    if (hlen == GH_PWHASH_STR_MAX)
        return GH_EINVAL; /* longer than any hash libsodium writes */
    /* Refuse before copying anything: under a flood most submissions end here. */
    pthread_mutex_lock(&p->lock);
    bool refuse = p->stopping || p->count == p->params.queue;
    pthread_mutex_unlock(&p->lock);
    if (refuse)
        return GH_EBUSY;

    job_t *job = gh_mem_alloc(GH_MEM_PASSWORD, sizeof *job + pwlen + 1);
    if (!job)
        return GH_ENOMEM;
    memset(job, 0, sizeof *job);
    job->kind = kind;
    job->cb = cb;
    job->arg = arg;
    if (stored_hash) {
        job->has_hash = true;
        memcpy(job->stored_hash, stored_hash, hlen); /* already NUL-terminated by the memset */
    }
    if (pwlen)
        memcpy(job->pw, pw, pwlen);
    job->pw[pwlen] = '\0';
    job->pwlen = pwlen;

    pthread_mutex_lock(&p->lock);
    /* Checked again: another thread may have taken the last slot meanwhile. */
    refuse = p->stopping || p->count == p->params.queue;
    if (!refuse) {
        assert(p->count < p->params.queue);
        p->ring[(p->head + p->count) % p->params.queue] = job;
        p->count++;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->lock);
    if (refuse) {
        gh_mem_free_secret(GH_MEM_PASSWORD, job);
        return GH_EBUSY;
    }
    return 0;
}

int gh_password_verify_async(gh_password_pool_t *p, const char *stored_hash, const char *pw,
                             size_t pwlen, gh_password_cb cb, void *arg)
{
    return submit(p, JOB_VERIFY, stored_hash, pw, pwlen, cb, arg);
}

int gh_password_hash_async(gh_password_pool_t *p, const char *pw, size_t pwlen, gh_password_cb cb,
                           void *arg)
{
    return submit(p, JOB_HASH, NULL, pw, pwlen, cb, arg);
}

int gh_password_hash_sync(const gh_password_params_t *params, const char *pw, size_t pwlen,
                          char out[GH_PWHASH_STR_MAX])
{
    out[0] = '\0';
    if (!cost_valid(params) || pwlen > GH_PASSWORD_MAX)
        return GH_EINVAL;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    return hash_at(params->ops, params->memory, pw, pwlen, out);
}

uint64_t gh_password_verify_work(gh_password_pool_t *p)
{
    return atomic_load_explicit(&p->verify_blocks, memory_order_relaxed);
}

void gh_password_attach_observer(gh_password_pool_t *p, const gh_password_observer_t *o)
{
    atomic_store_explicit(&p->observer, o, memory_order_release);
}

size_t gh_password_queue_depth(gh_password_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->count + p->running;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void gh_password_hist(gh_password_pool_t *p, uint64_t counts[GH_PASSWORD_HIST_BUCKETS + 1],
                      double *sum_seconds)
{
    for (size_t i = 0; i <= GH_PASSWORD_HIST_BUCKETS; i++)
        counts[i] = atomic_load_explicit(&p->hist[i], memory_order_relaxed);
    *sum_seconds = (double)atomic_load_explicit(&p->sum_ns, memory_order_relaxed) / 1e9;
}

bool gh_auth_username_valid(const char *s, size_t len)
{
    if (len < 1 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-'))
            return false;
    }
    return true;
}

/* Strict UTF-8 (RFC 3629 table 3-7): the lead byte decides which continuation ranges are legal,
 * which rules out overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points above U+10FFFF (F4 90..BF, F5..FF) without decoding. NUL is refused too. */
bool gh_auth_password_valid(const char *str, size_t len)
{
    if (len < GH_PASSWORD_MIN || len > GH_PASSWORD_MAX)
        return false;
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t more;
        unsigned char lo = 0x80, hi = 0xBF; /* legal range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (len - i - 1 < more)
            return false; /* truncated at the end */
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        }
        i += more + 1;
    }
    return true;
}
