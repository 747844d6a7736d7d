/*
 * oidc_admin.c — the OpenID provider's administrator workflows with their audit events
 * (account/oidc_keys.h): adding and deleting a client, rotating the signing keys. The admin API
 * and the command line call these; the plain functions of oidc_clients.c and oidc_keys.c are the
 * steps.
 *
 * The one design decision: the change and its event go through gh_account_audit_change, so on
 * SQLite the client (or the new keys) and the admin.* event commit together or not at all; a
 * command line without a trail appends the event after the change, as `gatehouse user` does.
 */
#include <stdio.h>
#include <string.h>

#include "account/audit.h"
#include "account/oidc.h"
#include "account/oidc_keys.h"
#include "common/log.h"

static void start(gh_account_t *a, gh_audit_event_t *ev, const char *action)
{
    gh_audit_event_init_admin(ev, action, 0, 0, GH_AUDIT_SUCCESS, &a->caller);
    gh_audit_event_actor(ev, a->actor[0] ? a->actor : "cli");
}

/* Runs change with its event: through the trail, or (no trail) change then a plain append. */
static int audited(gh_account_t *a, gh_audit_event_t *ev,
                   int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    if (a->audit)
        return gh_account_audit_change(a, ev, change, arg);
    int rc = change(a->users, arg);
    if (rc == 0 && gh_user_audit_append(a->users, ev) != 0)
        GH_LOG(GH_LOG_WARN, "an audit event was not stored", GH_LS("type", ev->type));
    return rc;
}

typedef struct {
    gh_account_t *a;
    gh_audit_event_t *ev;
    gh_oidc_client_t *c;
    bool allow_http;
    int64_t now_ms;
    char *secret;
    const char **why;
    const char *client_id;
    gh_oidc_kids_t *kids;
} step_t;

static int add_step(gh_user_store_t *s, void *arg)
{
    step_t *st = arg;
    int rc = gh_oidc_client_add(s, st->a->secret_key, st->c, st->allow_http, st->now_ms, st->secret,
                                st->why);
    if (rc == 0)
        gh_audit_event_detail(st->ev, "client_id=%s public=%s", st->c->client_id,
                              st->c->is_public ? "true" : "false");
    return rc;
}

int gh_account_oidc_client_add(gh_account_t *a, gh_oidc_client_t *c, bool allow_http,
                               int64_t now_ms, char secret[GH_OIDC_SECRET_LEN + 1],
                               const char **why)
{
    gh_audit_event_t ev;
    start(a, &ev, "client_added");
    step_t st = {.a = a,
                 .ev = &ev,
                 .c = c,
                 .allow_http = allow_http,
                 .now_ms = now_ms,
                 .secret = secret,
                 .why = why};
    secret[0] = '\0';
    return audited(a, &ev, add_step, &st);
}

static int del_step(gh_user_store_t *s, void *arg)
{
    step_t *st = arg;
    return gh_oidc_client_del(s, st->client_id);
}

int gh_account_oidc_client_del(gh_account_t *a, const char *client_id)
{
    gh_audit_event_t ev;
    start(a, &ev, "client_deleted");
    gh_audit_event_detail(&ev, "client_id=%.40s", client_id ? client_id : "");
    step_t st = {.a = a, .ev = &ev, .client_id = client_id};
    int rc = audited(a, &ev, del_step, &st);
    if (rc == 0) /* its grants and consents go with it (oidc_end.c) */
        gh_oidc_end_client_grants(a, client_id);
    return rc;
}

static int rotate_step(gh_user_store_t *s, void *arg)
{
    step_t *st = arg;
    int rc = gh_oidc_keys_rotate(s, st->a->secret_key, st->now_ms, st->kids);
    if (rc == 0)
        gh_audit_event_detail(st->ev, "kids=%s,%s,%s", st->kids->kid[GH_JWT_RS256],
                              st->kids->kid[GH_JWT_ES256], st->kids->kid[GH_JWT_EDDSA]);
    return rc;
}

int gh_account_oidc_keys_rotate(gh_account_t *a, int64_t now_ms, gh_oidc_kids_t *out)
{
    gh_oidc_kids_t kids;
    memset(&kids, 0, sizeof kids);
    gh_audit_event_t ev;
    start(a, &ev, "keys_rotated");
    step_t st = {.a = a, .ev = &ev, .now_ms = now_ms, .kids = out ? out : &kids};
    return audited(a, &ev, rotate_step, &st);
}
