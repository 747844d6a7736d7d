/*
 * notice.c — security notices and the rendering every email workflow shares: a message is
 * rendered from its template and queued in the outbox (store/mail.h); outbox.c sends it.
 *
 * The one design decision: this file calls no other workflow, so every workflow (the password
 * change, the second factor, email.c's address and reset flows) can send a notice without a
 * call cycle between the account service's files (scripts/check-layers.py).
 */
#include "account/email_internal.h"

#include <stdio.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

/* Renders a message (link: public_url + path + token, or the reset page when path is NULL). */
int gh_email_render(gh_account_email_t *e, gh_mail_kind_t kind, const char *to,
                    const char *username, const char *path, const char *tok, const char *new_email,
                    char **msg, size_t *len)
{
    char link[1024];
    snprintf(link, sizeof link, "%s%s%s", e->public_url, path ? path : "/reset", tok ? tok : "");
    gh_mail_vars_t v = {.product = e->product,
                        .from = e->from,
                        .to = to,
                        .username = username,
                        .link = link,
                        .new_email = new_email,
                        .templates = e->templates,
                        .now_ms = gh_clock_now_ms()};
    int rc = gh_mail_render(kind, &v, msg, len);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, "cannot render an email", GH_LS("kind", gh_mail_kind_name(kind)),
               GH_LS("error", gh_strerror(rc)));
    return rc;
}

/* Queues a message without a token. */
int gh_email_queue_notice(gh_account_email_t *e, gh_mail_kind_t kind, const char *to,
                          const char *username, const char *new_email)
{
    char *msg = NULL;
    size_t len = 0;
    int rc = gh_email_render(e, kind, to, username, NULL, NULL, new_email, &msg, &len);
    if (rc != 0)
        return rc;
    rc = e->store->ops->issue(e->store, NULL, 0, GH_TOKEN_RESET, NULL, 0, gh_mail_kind_name(kind),
                              to, msg, len, gh_clock_now_ms());
    gh_mem_free(GH_MEM_MAIL, msg);
    if (rc == 0)
        gh_email_outbox_kick(e);
    return rc;
}

int gh_account_notify(gh_account_t *a, uint64_t user_id, gh_mail_kind_t kind)
{
    gh_account_email_t *e = a->email;
    if (!e)
        return 0;
    char to[GH_MAIL_ADDR_MAX + 1];
    bool verified = false;
    gh_user_t user;
    int rc = e->store->ops->get_email(e->store, user_id, to, &verified);
    if (rc == 0 && (!to[0] || !verified))
        return 0;
    if (rc == 0)
        rc = gh_user_get_by_id_cached(a->users, user_id, &user);
    if (rc == 0)
        rc = gh_email_queue_notice(e, kind, to, user.username, NULL);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, "cannot queue a security notice", GH_LI("user_id", user_id),
               GH_LS("kind", gh_mail_kind_name(kind)), GH_LS("error", gh_strerror(rc)));
    return rc;
}
