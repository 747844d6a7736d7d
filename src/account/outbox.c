/*
 * outbox.c — the email service's state and its sender: one thread per node that claims due
 * messages from the outbox (store/mail.h), sends each over SMTP (mail/smtp.c), and records the
 * outcome; retries with exponential back-off for up to --smtp-retry-for.
 *
 * The one design decision: the database is the queue. Nothing about a message lives only in
 * memory: the sender holds one claimed row at a time (so its memory is one message, at most
 * GH_MAIL_MESSAGE_MAX, charged to `mail`), a lease makes a row one node's for a bounded time, and
 * a node killed mid-send leaves the row to be claimed again when the lease runs out. Delivery is
 * therefore at least once; it is exactly once unless a node dies between the server's "250 OK"
 * and the settle that follows it.
 */
#include "account/email_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define POLL_MS 1000             /* looks for due messages (other nodes', retries) */
#define STATS_MS 1000            /* refreshes depth and oldest age */
#define PURGE_MS (3600 * 1000LL) /* drops expired tokens and old settled rows */
#define KEEP_SETTLED_MS (7 * 24 * 3600 * 1000LL)
#define BACKOFF_BASE_MS 1000
#define BACKOFF_MAX_MS (5 * 60 * 1000LL)

void gh_email_outbox_kick(struct gh_account_email *e)
{
    pthread_mutex_lock(&e->lock);
    e->kicked = true;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
}

static void refresh_stats(gh_account_email_t *e)
{
    gh_mail_stats_t st;
    if (e->store->ops->stats(e->store, &st) == 0) {
        atomic_store(&e->depth, st.depth);
        atomic_store(&e->oldest_ms, st.oldest_ms);
    }
}

/* Sends one claimed row and settles it. */
static void deliver(gh_account_email_t *e, gh_mail_row_t *row)
{
    char err[256];
    gh_mail_send_t m = {.url = e->smtp_url,
                        .user = e->smtp_user,
                        .password = e->smtp_password,
                        .from = e->from,
                        .to = row->rcpt,
                        .message = row->message,
                        .len = row->len,
                        .timeout_ms = (long)e->smtp_timeout_ms};
    int rc = gh_mail_send(&m, err, sizeof err);
    int64_t now = gh_clock_now_ms();
    gh_mail_outcome_t outcome = GH_MAIL_SENT;
    int64_t next = now;
    if (rc != 0) {
        int shift = row->attempts < 20 ? row->attempts : 20;
        int64_t backoff = (int64_t)BACKOFF_BASE_MS << shift;
        if (backoff > BACKOFF_MAX_MS)
            backoff = BACKOFF_MAX_MS;
        next = now + backoff;
        outcome = (rc == GH_EINVAL || next > row->created_at_ms + e->retry_for_ms) ? GH_MAIL_FAILED
                                                                                   : GH_MAIL_RETRY;
    }
    int src =
        e->store->ops->settle(e->store, row->id, e->node, outcome, next, rc ? err : NULL, now);
    if (outcome == GH_MAIL_SENT) {
        atomic_fetch_add(&e->sent, 1);
        GH_LOG(GH_LOG_INFO, "email sent", GH_LI("id", row->id), GH_LS("kind", row->kind),
               GH_LI("attempts", row->attempts + 1), GH_LB("recorded", src == 0));
    } else if (outcome == GH_MAIL_FAILED) {
        atomic_fetch_add(&e->failed, 1);
        GH_LOG(GH_LOG_ERROR, "email given up", GH_LI("id", row->id), GH_LS("kind", row->kind),
               GH_LI("attempts", row->attempts + 1), GH_LS("error", err),
               GH_LS("effect", rc == GH_EINVAL ? "the mail server refused it for good"
                                               : "--smtp-retry-for has passed"));
    } else {
        atomic_fetch_add(&e->retried, 1);
        GH_LOG(GH_LOG_WARN, "email delivery failed, will retry", GH_LI("id", row->id),
               GH_LS("kind", row->kind), GH_LI("attempts", row->attempts + 1),
               GH_LI("retry_in_ms", next - now), GH_LS("error", err));
    }
}

static void *sender_main(void *arg)
{
    gh_account_email_t *e = arg;
    int64_t last_purge = 0;
    bool warned_off = false;
    pthread_mutex_lock(&e->lock);
    while (!e->stop) {
        pthread_mutex_unlock(&e->lock);
        int64_t now = gh_clock_now_ms();
        if (now - last_purge > PURGE_MS) {
            GH_IGNORE(e->store->ops->purge(e->store, now, now - KEEP_SETTLED_MS));
            last_purge = now;
        }
        bool more = false;
        if (e->smtp_url[0]) {
            gh_mail_row_t row;
            int64_t lease = e->smtp_timeout_ms + 5000;
            int rc = e->store->ops->claim(e->store, e->node, now, lease, &row);
            if (rc == 0) {
                deliver(e, &row);
                gh_mailstore_row_free(&row);
                more = true;
            }
        }
        refresh_stats(e);
        if (!e->smtp_url[0] && atomic_load(&e->depth) > 0 && !warned_off) {
            GH_LOG(GH_LOG_WARN, "email is queued but not sent: no --smtp-url",
                   GH_LI("queued", atomic_load(&e->depth)));
            warned_off = true;
        }
        pthread_mutex_lock(&e->lock);
        if (more || e->stop)
            continue;
        if (!e->kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += POLL_MS / 1000;
            pthread_cond_timedwait(&e->wake, &e->lock, &ts);
        }
        e->kicked = false;
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

static char *dup_or_empty(const char *s)
{
    return gh_mem_strdup(GH_MEM_MAIL, s ? s : "");
}

int gh_account_email_create(const gh_email_options_t *o, gh_account_email_t **out)
{
    *out = NULL;
    char from[GH_MAIL_ADDR_MAX + 1];
    if (!o->store || !gh_mail_product_valid(o->product) || !o->from ||
        gh_mail_addr_normalize(o->from, strlen(o->from), from) != 0 || !o->public_url ||
        (strncmp(o->public_url, "http://", 7) != 0 && strncmp(o->public_url, "https://", 8) != 0))
        return GH_EINVAL;
    for (const char *p = o->public_url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == '"' || *p == '<' || *p == '>' || *p == 0x7f)
            return GH_EINVAL;
    gh_account_email_t *e = gh_mem_calloc(GH_MEM_MAIL, 1, sizeof *e);
    if (!e)
        return GH_ENOMEM;
    e->store = o->store;
    e->nslots = o->throttle_slots ? o->throttle_slots : GH_EMAIL_THROTTLE_SLOTS;
    e->slots = gh_mem_calloc(GH_MEM_MAIL, e->nslots, sizeof *e->slots);
    e->product = dup_or_empty(o->product);
    e->public_url = dup_or_empty(o->public_url);
    e->from = dup_or_empty(from);
    e->templates = dup_or_empty(o->templates);
    e->smtp_url = dup_or_empty(o->smtp_url);
    e->smtp_user = dup_or_empty(o->smtp_user);
    e->smtp_password = dup_or_empty(o->smtp_password);
    e->node = dup_or_empty(o->node);
    e->retry_for_ms = o->retry_for_ms > 0 ? o->retry_for_ms : 24 * 3600 * 1000LL;
    e->smtp_timeout_ms = o->smtp_timeout_ms > 0 ? o->smtp_timeout_ms : 30000;
    randombytes_buf(e->key, sizeof e->key);
    pthread_mutex_init(&e->throttle_lock, NULL);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->wake, NULL);
    /* a public URL without its trailing slash: links append "/reset/confirm?…" */
    size_t n = e->public_url ? strlen(e->public_url) : 0;
    while (n > 0 && e->public_url[n - 1] == '/')
        e->public_url[--n] = '\0';
    if (!e->slots || !e->product || !e->public_url || !e->from || !e->templates || !e->smtp_url ||
        !e->smtp_user || !e->smtp_password || !e->node) {
        gh_account_email_destroy(&e);
        return GH_ENOMEM;
    }
    *out = e;
    return 0;
}

int gh_account_email_start(gh_account_email_t *e)
{
    if (pthread_create(&e->thread, NULL, sender_main, e) != 0)
        return GH_EINTERNAL;
    e->started = true;
    if (!e->smtp_url[0])
        GH_LOG(GH_LOG_WARN, "email is queued but not sent: no --smtp-url",
               GH_LS("effect", "reset links and notices wait in the outbox until a mail server "
                               "is configured"));
    return 0;
}

void gh_account_email_destroy(gh_account_email_t **ep)
{
    gh_account_email_t *e = *ep;
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
    }
    pthread_mutex_destroy(&e->throttle_lock);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->wake);
    gh_mem_free(GH_MEM_MAIL, e->slots);
    gh_mem_free(GH_MEM_MAIL, e->product);
    gh_mem_free(GH_MEM_MAIL, e->public_url);
    gh_mem_free(GH_MEM_MAIL, e->from);
    gh_mem_free(GH_MEM_MAIL, e->templates);
    gh_mem_free(GH_MEM_MAIL, e->smtp_url);
    gh_mem_free(GH_MEM_MAIL, e->smtp_user);
    gh_mem_free_secret(GH_MEM_MAIL, e->smtp_password);
    gh_mem_free(GH_MEM_MAIL, e->node);
    gh_mem_free(GH_MEM_MAIL, e);
    *ep = NULL;
}

void gh_account_email_stats(gh_account_email_t *e, gh_email_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!e)
        return;
    out->delivering = e->smtp_url[0] != '\0';
    out->depth = atomic_load(&e->depth);
    int64_t oldest = atomic_load(&e->oldest_ms);
    out->oldest_age_s = oldest > 0 ? (double)(gh_clock_now_ms() - oldest) / 1000.0 : 0;
    if (out->oldest_age_s < 0)
        out->oldest_age_s = 0;
    out->sent = atomic_load(&e->sent);
    out->failed = atomic_load(&e->failed);
    out->attempts_failed = atomic_load(&e->retried);
}
