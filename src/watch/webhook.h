/*
 * webhook.h — delivers alert JSON to an HTTP endpoint (Slack, PagerDuty's Events API v2
 * through a relay, an in-house receiver) with libcurl, on a thread of its own.
 *
 * The one design decision: posting is fire-and-forget into a BOUNDED queue. gh_webhook_post
 * copies the body and returns at once; when the queue is full the OLDEST waiting body is dropped
 * (and counted), because during an incident the newest state of an alert is what matters and
 * memory must not grow while the receiver is down. The delivery thread retries transport errors,
 * 5xx and 429 with exponential backoff; any other status is final.
 *
 * The URL is never logged: webhook URLs usually carry a secret (Slack's do).
 *
 * Memory: the queue and every queued body are charged to GH_MEM_METRICS. libcurl's own
 * allocations are not accounted (it is shared with other users of libcurl in the process).
 */
#ifndef GH_WATCH_WEBHOOK_H
#define GH_WATCH_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct gh_webhook gh_webhook_t;

typedef struct {
    const char *url;        /* http:// or https://; copied */
    size_t queue_max;       /* bodies waiting at most; 0 -> 32 */
    unsigned max_attempts;  /* per body, first try included; 0 -> 5 */
    int64_t backoff_ms;     /* wait before the first retry, doubled each time; 0 -> 500 */
    int64_t backoff_max_ms; /* cap of the wait; 0 -> 30000 */
    int64_t timeout_ms;     /* one attempt, connect + transfer; 0 -> 5000 */
} gh_webhook_options_t;

typedef struct {
    uint64_t posted;    /* accepted by gh_webhook_post */
    uint64_t delivered; /* answered 2xx */
    uint64_t failed;    /* given up: attempts exhausted or a final status */
    uint64_t dropped;   /* pushed out of a full queue, or left when stopped */
    uint64_t retries;   /* attempts after the first */
    long last_status;   /* HTTP status of the last attempt, 0 for a transport error */
} gh_webhook_stats_t;

/* Starts the delivery thread. Errors: GH_EINVAL (no URL, or not http/https), GH_ENOMEM,
 * GH_EINTERNAL (libcurl or thread start failed). *out is freed by gh_webhook_stop. */
int gh_webhook_start(const gh_webhook_options_t *opt, gh_webhook_t **out) GH_WUR;

/* Queues a copy of body (len bytes, JSON). Never blocks on the network. 0, or GH_ENOMEM (the body
 * is not queued), or GH_EINVAL after stop has begun. */
int gh_webhook_post(gh_webhook_t *w, const char *body, size_t len) GH_WUR;

/* Waits until nothing is queued or in flight. 0, or GH_EBUSY when timeout_ms passed first. */
int gh_webhook_wait_idle(gh_webhook_t *w, int64_t timeout_ms) GH_WUR;

void gh_webhook_stats(gh_webhook_t *w, gh_webhook_stats_t *out);

/* Stops: no more retries; bodies still queued get one attempt each while drain_ms lasts, the rest
 * are dropped (counted). Joins the thread and frees everything; *w = NULL. NULL is a no-op. */
void gh_webhook_stop(gh_webhook_t **w, int64_t drain_ms);

#endif
