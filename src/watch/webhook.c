/*
 * webhook.c — a bounded queue of JSON bodies and one thread that POSTs them with libcurl.
 * Producers (the watchdog) only copy into the queue under a mutex; the thread owns the curl
 * handle, so no network wait ever happens on a producer's thread. Backoff waits sit on a
 * condition variable, so stop is prompt even in the middle of a backoff.
 */
#include "watch/webhook.h"

#include <assert.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/version.h"
#include "mem/mem.h"

typedef struct {
    char *body; /* GH_MEM_METRICS */
    size_t len;
} item_t;

struct gh_webhook {
    gh_webhook_options_t opt;
    char *url; /* GH_MEM_METRICS */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* producer -> thread: an item or stop */
    pthread_cond_t idle; /* thread -> waiters: queue empty and nothing in flight */
    item_t *queue;       /* ring of opt.queue_max */
    size_t head, count;
    bool inflight, stopping;
    int64_t drain_deadline_ns;
    gh_webhook_stats_t stats;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    /* libcurl >= 7.84 makes this thread-safe; pthread_once keeps older ones safe too. */
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* Absolute CLOCK_MONOTONIC deadline for pthread_cond_timedwait. */
static struct timespec deadline_after(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (ms % 1000) * 1000000;
    ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/* One POST. Returns the HTTP status, or 0 for a transport error (no answer). */
static long post_once(gh_webhook_t *w, CURL *curl, struct curl_slist *headers, const item_t *it)
{
    curl_easy_setopt(curl, CURLOPT_URL, w->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)it->len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)w->opt.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)w->opt.timeout_ms);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "gatehouse/" GH_VERSION);
    long status = 0;
    if (curl_easy_perform(curl) == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static bool retryable(long status)
{
    return status == 0 || status == 429 || status >= 500;
}

static void *deliver_main(void *arg)
{
    gh_webhook_t *w = arg;
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* curl waits up to a second for "100 Continue" on larger bodies; receivers rarely send it. */
    struct curl_slist *h2 = headers ? curl_slist_append(headers, "Expect:") : NULL;
    if (h2)
        headers = h2;

    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->count == 0 && !w->stopping)
            pthread_cond_wait(&w->wake, &w->lock);
        if (w->count == 0)
            break; /* stopping and nothing left */
        if (w->stopping && gh_clock_mono_ns() >= w->drain_deadline_ns)
            break; /* the rest is dropped below */
        item_t it = w->queue[w->head];
        w->queue[w->head] = (item_t){0};
        w->head = (w->head + 1) % w->opt.queue_max;
        w->count--;
        w->inflight = true;

        bool done = false;
        for (unsigned attempt = 1; !done; attempt++) {
            pthread_mutex_unlock(&w->lock);
            long status = curl && headers ? post_once(w, curl, headers, &it) : 0;
            pthread_mutex_lock(&w->lock);
            w->stats.last_status = status;
            if (status >= 200 && status < 300) {
                w->stats.delivered++;
                done = true;
            } else if (!retryable(status) || attempt >= w->opt.max_attempts || w->stopping) {
                w->stats.failed++;
                done = true;
                GH_LOG(GH_LOG_WARN, "alert webhook gave up", GH_LI("status", status),
                       GH_LI("attempts", attempt));
            } else {
                w->stats.retries++;
                int64_t wait = w->opt.backoff_ms;
                for (unsigned i = 1; i < attempt && wait < w->opt.backoff_max_ms; i++)
                    wait *= 2;
                if (wait > w->opt.backoff_max_ms)
                    wait = w->opt.backoff_max_ms;
                struct timespec until = deadline_after(wait);
                while (!w->stopping && pthread_cond_timedwait(&w->wake, &w->lock, &until) == 0) {
                    /* woken by a new post: keep waiting out the backoff */
                }
                if (w->stopping) {
                    w->stats.failed++;
                    done = true;
                }
            }
        }
        gh_mem_free(GH_MEM_METRICS, it.body);
        w->inflight = false;
        if (w->count == 0)
            pthread_cond_broadcast(&w->idle);
    }
    /* Whatever is still queued at stop is dropped. */
    while (w->count) {
        gh_mem_free(GH_MEM_METRICS, w->queue[w->head].body);
        w->queue[w->head] = (item_t){0};
        w->head = (w->head + 1) % w->opt.queue_max;
        w->count--;
        w->stats.dropped++;
    }
    pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->lock);
    curl_slist_free_all(headers);
    if (curl)
        curl_easy_cleanup(curl);
    return NULL;
}

int gh_webhook_start(const gh_webhook_options_t *opt, gh_webhook_t **out)
{
    *out = NULL;
    if (!opt || !opt->url ||
        (strncasecmp(opt->url, "http://", 7) != 0 && strncasecmp(opt->url, "https://", 8) != 0))
        return GH_EINVAL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return GH_EINTERNAL;
    gh_webhook_t *w = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *w);
    if (!w)
        return GH_ENOMEM;
    w->opt = *opt;
    if (!w->opt.queue_max)
        w->opt.queue_max = 32;
    if (!w->opt.max_attempts)
        w->opt.max_attempts = 5;
    if (w->opt.backoff_ms <= 0)
        w->opt.backoff_ms = 500;
    if (w->opt.backoff_max_ms <= 0)
        w->opt.backoff_max_ms = 30000;
    if (w->opt.backoff_max_ms < w->opt.backoff_ms)
        w->opt.backoff_max_ms = w->opt.backoff_ms;
    if (w->opt.timeout_ms <= 0)
        w->opt.timeout_ms = 5000;
    w->url = gh_mem_strdup(GH_MEM_METRICS, opt->url);
    w->opt.url = w->url;
    w->queue = gh_mem_calloc(GH_MEM_METRICS, w->opt.queue_max, sizeof *w->queue);
    if (!w->url || !w->queue) {
        gh_mem_free(GH_MEM_METRICS, w->queue);
        gh_mem_free(GH_MEM_METRICS, w->url);
        gh_mem_free(GH_MEM_METRICS, w);
        return GH_ENOMEM;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, &ca);
    pthread_cond_init(&w->idle, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&w->thread, NULL, deliver_main, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        pthread_cond_destroy(&w->idle);
        gh_mem_free(GH_MEM_METRICS, w->queue);
        gh_mem_free(GH_MEM_METRICS, w->url);
        gh_mem_free(GH_MEM_METRICS, w);
        return GH_EINTERNAL;
    }
    *out = w;
    return 0;
}

int gh_webhook_post(gh_webhook_t *w, const char *body, size_t len)
{
    assert(w && body);
    char *copy = gh_mem_alloc(GH_MEM_METRICS, len + 1);
    if (!copy)
        return GH_ENOMEM;
    memcpy(copy, body, len);
    copy[len] = '\0';
    char *dropped = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping) {
        pthread_mutex_unlock(&w->lock);
        gh_mem_free(GH_MEM_METRICS, copy);
        return GH_EINVAL;
    }
    if (w->count == w->opt.queue_max) { /* full: the oldest waiting body goes */
        dropped = w->queue[w->head].body;
        w->queue[w->head] = (item_t){0};
        w->head = (w->head + 1) % w->opt.queue_max;
        w->count--;
        w->stats.dropped++;
    }
    size_t tail = (w->head + w->count) % w->opt.queue_max;
    w->queue[tail] = (item_t){.body = copy, .len = len};
    w->count++;
    w->stats.posted++;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    gh_mem_free(GH_MEM_METRICS, dropped);
    return 0;
}

int gh_webhook_wait_idle(gh_webhook_t *w, int64_t timeout_ms)
{
    struct timespec until = deadline_after(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    while (w->count || w->inflight) {
        if (pthread_cond_timedwait(&w->idle, &w->lock, &until) != 0) {
            rc = (w->count || w->inflight) ? GH_EBUSY : 0;
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return rc;
}

void gh_webhook_stats(gh_webhook_t *w, gh_webhook_stats_t *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->lock);
}

void gh_webhook_stop(gh_webhook_t **wp, int64_t drain_ms)
{
    if (!wp || !*wp)
        return;
    gh_webhook_t *w = *wp;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    w->drain_deadline_ns = gh_clock_mono_ns() + (drain_ms > 0 ? drain_ms : 0) * 1000000;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    assert(w->count == 0);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->idle);
    gh_mem_free(GH_MEM_METRICS, w->queue);
    gh_mem_free(GH_MEM_METRICS, w->url);
    gh_mem_free(GH_MEM_METRICS, w);
    *wp = NULL;
}
