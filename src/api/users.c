/*
 * users.c — the HTTP side of registering users (open registration and the admin route share one
 * path) and of changing a password. The workflows are the account service's (src/account/):
 * both hash on the password pool, so the handler suspends and the pool's callback resumes it.
 */
#include "api/api.h"

#include <string.h>

typedef struct {
    gh_account_register_t reg;
    gh_account_password_t pw;
    const char *email; /* registration's optional address (a pool copy), or NULL */
    size_t email_len;
} user_state_t;

/* The password pool's completion callback (a pool worker): the handler goes on. */
static void resume(void *arg)
{
    gh_req_resume(arg);
}

static user_state_t *state_new(gh_req_t *r)
{
    user_state_t *st = gh_pool_alloc(&r->pool, sizeof *st);
    if (st)
        memset(st, 0, sizeof *st);
    r->state = st;
    return st;
}

/* Phase 0 validates and submits the hash; phase 1 stores the user. */
static void create_user(gh_req_t *r, bool by_admin)
{
    r->pool.wipe = true;
    user_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    if (r->phase == 1) {
        int rc = gh_account_register_continue(&a, &st->reg);
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            return;
        }
        json_t *out = json_pack("{s:I, s:s}", "id", (json_int_t)st->reg.user.id, "username",
                                st->reg.user.username);
        /* the address, checked before the hash, is stored now and a verification link mailed */
        if (st->email &&
            (rc = gh_account_email_attach(&a, &st->reg.user, st->email, st->email_len)) != 0)
            GH_LOG(GH_LOG_WARN, "user created without the email address given",
                   GH_LI("user_id", st->reg.user.id), GH_LS("error", gh_strerror(rc)));
        if (out && st->email && rc == 0)
            out = gh_api_json_set(out, "email", json_string(st->email));
        gh_api_reply_json(r, 201, out);
        return;
    }
    json_t *json;
    const char *name, *pw;
    size_t nlen, plen;
    if (gh_api_json_body(r, &json) != 0)
        return;
    if (gh_api_json_str(r, json, "username", &name, &nlen) != 0 ||
        gh_api_json_str(r, json, "password", &pw, &plen) != 0)
        goto out;
    if (!(st = state_new(r))) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    const char *email = NULL;
    size_t elen = 0;
    int rc = 0;
    if (json_object_get(json, "email") && !json_is_null(json_object_get(json, "email"))) {
        if (gh_api_json_str(r, json, "email", &email, &elen) != 0)
            goto out;
        rc = a.email ? gh_account_email_check_new(&a, email, elen) : GH_EEMAIL;
        if (rc == 0 && !(st->email = gh_pool_strndup(&r->pool, email, elen)))
            rc = GH_ENOMEM;
        st->email_len = elen;
    }
    if (rc == 0)
        rc = gh_account_register_begin(&a, &st->reg, name, nlen, pw, plen, by_admin);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        goto out;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->reg.job, resume, r))
        gh_req_resume(r); /* not queued: phase 1 reports why */
out:
    json_decref(json);
}

void gh_api_register(gh_req_t *r)
{
    if (r->phase == 0) {
        gh_account_t a;
        gh_account_client_t client;
        int64_t retry_ms = 0;
        gh_api_account(r, &a);
        gh_api_account_client(r, &client);
        int rc = gh_account_register_admit(&a, &client, &retry_ms);
        if (rc != 0) {
            gh_api_reply_fail(r, rc, NULL, retry_ms);
            return;
        }
    }
    create_user(r, false);
}

/* POST /v1/admin/users (GH_ROUTE_ADMIN: the token was checked before this runs). */
void gh_api_admin_create_user(gh_req_t *r)
{
    create_user(r, true);
}

/* Phase 0: authenticate, read the body, begin (the new password's strength, the user) and submit
 * the verification of the current one; then, as long as the service asks, submit again (the hash
 * of the new one); finally 204. */
void gh_api_change_password(gh_req_t *r)
{
    r->pool.wipe = true;
    user_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc;
    json_t *json = NULL;
    if (r->phase == 0) {
        if (!(st = state_new(r))) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        gh_session_info_t session;
        uint8_t token_hash[GH_TOKEN_HASH_LEN];
        if (gh_api_authenticate(r, &session, token_hash) != 0)
            return;
        const char *cur, *next;
        size_t clen, nlen;
        if (gh_api_json_body(r, &json) != 0)
            return;
        if (gh_api_json_str(r, json, "current_password", &cur, &clen) != 0 ||
            gh_api_json_str(r, json, "new_password", &next, &nlen) != 0)
            goto out;
        /* The new password outlives this call (it is hashed in a later phase): a copy in the
         * request pool, which is wiped. */
        char *copy = gh_pool_strndup(&r->pool, next, nlen);
        if (!copy) {
            rc = GH_ENOMEM;
        } else {
            rc = gh_account_password_begin(&a, &st->pw, session.user_id, token_hash, cur, clen,
                                           copy, nlen);
        }
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            goto out;
        }
    } else {
        rc = gh_account_password_continue(&a, &st->pw);
        if (rc != GH_ACCOUNT_PENDING) {
            if (rc != 0)
                gh_api_reply_err(r, rc);
            else
                (void)gh_reply(r, 204, NULL, NULL, 0);
            return;
        }
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->pw.job, resume, r))
        gh_req_resume(r); /* not queued: the next phase reports why */
out:
    json_decref(json);
}
