/*
 * email_internal.h — what email.c (the workflows) and outbox.c (the sender) share: the email
 * service's state. Not a face of the account service: nothing outside src/account/ includes it.
 *
 * The one design decision: the throttle tables are fixed arrays allocated at create (bounded,
 * charged to GH_MEM_MAIL); a slot is taken by the key's hash, and a busy slot of another key is
 * taken over only once its window has passed, else the newcomer shares the older key's count
 * (it is throttled a little early, never later than its own budget allows).
 */
#ifndef GH_ACCOUNT_EMAIL_INTERNAL_H
#define GH_ACCOUNT_EMAIL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "account/email.h"

typedef struct {
    uint64_t key;
    int64_t window_start_ms;
    uint32_t count;
} gh_email_slot_t;

struct gh_account_email {
    gh_mail_store_t *store;
    char *product, *public_url, *from, *templates, *smtp_url, *smtp_user, *smtp_password, *node;
    int64_t retry_for_ms, smtp_timeout_ms;
    uint8_t key[16]; /* siphash key of the throttle tables */

    pthread_mutex_t throttle_lock;
    gh_email_slot_t *slots; /* GH_EMAIL_THROTTLE_SLOTS */
    uint32_t nslots;

    /* the sender */
    pthread_t thread;
    bool started, stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool kicked;
    _Atomic uint64_t sent, failed, retried;
    _Atomic uint64_t depth;
    _Atomic int64_t oldest_ms;
};

/* Wakes the sender: a message was queued. */
void gh_email_outbox_kick(struct gh_account_email *e);

/* notice.c: renders a message (link: public_url + path + token, or the reset page when path is
 * NULL) into *msg (GH_MEM_MAIL; the caller frees it), and queues one without a token. */
int gh_email_render(struct gh_account_email *e, gh_mail_kind_t kind, const char *to,
                    const char *username, const char *path, const char *tok, const char *new_email,
                    char **msg, size_t *len);
int gh_email_queue_notice(struct gh_account_email *e, gh_mail_kind_t kind, const char *to,
                          const char *username, const char *new_email);

#endif
