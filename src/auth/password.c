/*
 * password.c — the password pool (see password.h) and the username/password rules.
 *
 * Design decision: a fixed number of workers take jobs from a bounded FIFO, and submission never
 * waits — a full queue is refused at once so a login flood turns into fast 503s instead of a pile
 * of suspended connections and argon2 buffers. Workers run at a lower CPU priority (nice +5) than
 * the HTTP threads, so on a saturated machine the scheduler favours token checks.
 */
#include "auth/password.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define WORKER_NICE 5

const double gh_password_hist_bounds[GH_PASSWORD_HIST_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0};

typedef enum { JOB_VERIFY, JOB_HASH } job_kind_t;

typedef struct {
    job_kind_t kind;
    gh_password_cb cb;
    void *arg;
    const char *stored_hash; /* NULL: the dummy */
    char hash_copy[GH_PWHASH_STR_MAX];
    size_t pwlen;
    char pw[]; /* wiped before free */
} job_t;

struct gh_password_pool {
    gh_password_params_t params;
    pthread_mutex_t lock;
    pthread_cond_t work;
    job_t **ring; /* capacity params.queue */
    size_t head, count;
    size_t running;
    bool stopping;
    pthread_t *threads;
    uint32_t nthreads;
    char dummy_hash[GH_PWHASH_STR_MAX];
    _Atomic uint64_t hist[GH_PASSWORD_HIST_BUCKETS + 1];
    _Atomic uint64_t sum_ns;
};

static void observe(gh_password_pool_t *p, int64_t ns)
{
    double s = (double)ns / 1e9;
    size_t b = 0;
    while (b < GH_PASSWORD_HIST_BUCKETS && s > gh_password_hist_bounds[b])
        b++;
    atomic_fetch_add_explicit(&p->hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->sum_ns, (uint64_t)ns, memory_order_relaxed);
}

static int hash_now(uint64_t ops, uint64_t mem, const char *pw, size_t len,
                    char out[GH_PWHASH_STR_MAX])
{
    if (crypto_pwhash_str(out, pw, len, ops, (size_t)mem) != 0)
        return GH_ENOMEM; /* libsodium fails only when it cannot get the memory */
    return 0;
}

static void run_job(gh_password_pool_t *p, job_t *job)
{
    gh_password_result_t res;
    memset(&res, 0, sizeof res);
    int64_t t0 = gh_clock_mono_ns();
    if (job->kind == JOB_HASH) {
        res.result = hash_now(p->params.ops, p->params.memory, job->pw, job->pwlen, res.new_hash);
    } else {
        const char *h = job->stored_hash ? job->hash_copy : p->dummy_hash;
        int ok = crypto_pwhash_str_verify(h, job->pw, job->pwlen) == 0;
        if (ok && job->stored_hash &&
            crypto_pwhash_str_needs_rehash(h, p->params.ops, (size_t)p->params.memory) != 0) {
            if (hash_now(p->params.ops, p->params.memory, job->pw, job->pwlen, res.new_hash) != 0)
                res.new_hash[0] = '\0'; /* keep the old hash; the login still succeeds */
        }
        res.result = ok && job->stored_hash ? 0 : GH_EAUTH;
    }
    observe(p, gh_clock_mono_ns() - t0);
    job->cb(job->arg, &res);
    sodium_memzero(&res, sizeof res);
}

static void *worker_main(void *arg)
{
    gh_password_pool_t *p = arg;
    /* Linux applies nice per thread; failure only means equal priority. */
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE) != 0)
        GH_LOG(GH_LOG_DEBUG, "password worker priority unchanged");
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->count == 0 && !p->stopping)
            pthread_cond_wait(&p->work, &p->lock);
        if (p->count == 0 && p->stopping)
            break;
        job_t *job = p->ring[p->head];
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

int gh_password_pool_start(const gh_password_params_t *params, gh_password_pool_t **out)
{
    if (params->workers == 0 || params->queue == 0 || params->ops < 1 ||
        params->memory < crypto_pwhash_MEMLIMIT_MIN)
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
    /* The dummy hash: same cost as real ones, so unknown users take as long as wrong passwords. */
    char random_pw[33];
    randombytes_buf(random_pw, 32);
    rc = hash_now(params->ops, params->memory, random_pw, 32, p->dummy_hash);
    sodium_memzero(random_pw, sizeof random_pw);
    if (rc != 0)
        goto fail;
    for (uint32_t i = 0; i < params->workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            rc = GH_EINTERNAL;
            goto fail;
        }
        p->nthreads++;
    }
    *out = p;
    return 0;
fail:
    gh_password_pool_stop(&p);
    return rc;
}

void gh_password_pool_stop(gh_password_pool_t **pp)
{
    gh_password_pool_t *p = *pp;
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (uint32_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    /* No worker ran, so nothing drained the queue: fail what is left, exactly once each. */
    while (p->count) {
        job_t *job = p->ring[p->head];
        p->head = (p->head + 1) % p->params.queue;
        p->count--;
        gh_password_result_t res = {.result = GH_EBUSY};
        job->cb(job->arg, &res);
        gh_mem_free_secret(GH_MEM_PASSWORD, job);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    gh_mem_free(GH_MEM_PASSWORD, p->ring);
    gh_mem_free(GH_MEM_PASSWORD, p->threads);
    sodium_memzero(p->dummy_hash, sizeof p->dummy_hash);
    gh_mem_free(GH_MEM_PASSWORD, p);
    *pp = NULL;
}

static int submit(gh_password_pool_t *p, job_kind_t kind, const char *stored_hash, const char *pw,
                  size_t pwlen, gh_password_cb cb, void *arg)
{
    if (pwlen > GH_PASSWORD_MAX)
        return GH_EINVAL;
    job_t *job = gh_mem_alloc(GH_MEM_PASSWORD, sizeof *job + pwlen + 1);
    if (!job)
        return GH_ENOMEM;
    job->kind = kind;
    job->cb = cb;
    job->arg = arg;
    job->stored_hash = NULL;
    job->hash_copy[0] = '\0';
    if (stored_hash) {
        size_t hl = strnlen(stored_hash, GH_PWHASH_STR_MAX);
        if (hl == GH_PWHASH_STR_MAX) {
            gh_mem_free_secret(GH_MEM_PASSWORD, job);
            return GH_EINVAL;
        }
        memcpy(job->hash_copy, stored_hash, hl + 1);
        job->stored_hash = job->hash_copy;
    }
    memcpy(job->pw, pw, pwlen);
    job->pw[pwlen] = '\0';
    job->pwlen = pwlen;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->count >= p->params.queue) {
        pthread_mutex_unlock(&p->lock);
        gh_mem_free_secret(GH_MEM_PASSWORD, job);
        return GH_EBUSY;
    }
    p->ring[(p->head + p->count) % p->params.queue] = job;
    p->count++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
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
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    return hash_now(params->ops, params->memory, pw, pwlen, out);
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

/* Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF, no NUL. */
bool gh_auth_password_valid(const char *str, size_t len)
{
    if (len < GH_PASSWORD_MIN || len > GH_PASSWORD_MAX)
        return false;
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= len)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}
