/*
 * users.c — registering users (open registration and the admin route share one path) and
 * changing a password. Both hash on the password pool: the handler suspends, the pool resumes it.
 * A password change ends every other session of the user through the store's revoke path.
 */
#include "api/api.h"

#include <sodium.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct {
    char username[GH_USERNAME_MAX + 1];
    gh_password_result_t verdict;
    /* password change */
    gh_session_info_t session;
    uint8_t token_hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    char *new_password; /* in the request pool, wiped with it */
    size_t new_len;
} user_state_t;

static void pool_done(void *arg, const gh_password_result_t *res)
{
    gh_req_t *r = arg;
    user_state_t *st = r->state;
    st->verdict = *res;
    gh_req_resume(r);
}

static user_state_t *state_new(gh_req_t *r)
{
    user_state_t *st = gh_pool_alloc(&r->pool, sizeof *st);
    if (st)
        memset(st, 0, sizeof *st);
    r->state = st;
    return st;
}

/* Phase 0 validates and queues the hash; phase 1 stores the user. */
static void create_user(gh_req_t *r)
{
    gh_app_t *app = r->app;
    r->pool.wipe = true;
    user_state_t *st = r->state;
    if (r->phase == 1) {
        if (st->verdict.result != 0) {
            gh_api_reply_err(r, st->verdict.result == GH_EBUSY ? GH_EBUSY : GH_ENOMEM);
            return;
        }
        gh_user_t user;
        int rc = gh_user_create(app->users, st->username, st->verdict.new_hash, gh_clock_now_ms(),
                                &user);
        sodium_memzero(st->verdict.new_hash, sizeof st->verdict.new_hash);
        if (rc == GH_EEXISTS) {
            gh_reply_error(r, 409, "username_taken", "that username is taken");
            return;
        }
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            return;
        }
        GH_LOG(GH_LOG_INFO, "user created", GH_LI("user_id", user.id));
        gh_api_reply_json(
            r, 201, json_pack("{s:I, s:s}", "id", (json_int_t)user.id, "username", user.username));
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
    if (!gh_auth_username_valid(name, nlen)) {
        gh_reply_error(r, 400, "invalid_username",
                       "usernames are 1 to 64 characters of A-Z a-z 0-9 . _ @ -");
        goto out;
    }
    if (!gh_auth_password_valid(pw, plen)) {
        gh_reply_error(r, 400, "weak_password", "passwords are 8 to 1024 bytes of valid UTF-8");
        goto out;
    }
    gh_user_t existing;
    int rc = gh_user_get_by_name(app->users, name, &existing);
    if (rc == 0) {
        gh_reply_error(r, 409, "username_taken", "that username is taken");
        goto out;
    }
    if (rc != GH_ENOTFOUND) {
        gh_api_reply_err(r, rc);
        goto out;
    }
    if (!(st = state_new(r))) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    memcpy(st->username, name, nlen + 1);
    r->phase = 1;
    gh_req_suspend(r);
    rc = gh_password_hash_async(app->passwords, pw, plen, pool_done, r);
    if (rc != 0) {
        st->verdict.result = rc;
        gh_req_resume(r);
    }
out:
    json_decref(json);
}

void gh_api_register(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (r->phase == 0 && !app->cfg.registration_open) {
        gh_reply_error(r, 403, "registration_closed", "registration is closed");
        return;
    }
    if (r->phase == 0 && gh_api_throttle_register(r) != 0)
        return;
    create_user(r);
}

void gh_api_admin_create_user(gh_req_t *r)
{
    if (r->phase == 0 && gh_api_require_admin(r) != 0)
        return;
    create_user(r);
}

/* Phase 0: authenticate, validate, verify the current password. Phase 1: hash the new one.
 * Phase 2: store it and end every other session. */
void gh_api_change_password(gh_req_t *r)
{
    gh_app_t *app = r->app;
    r->pool.wipe = true;
    user_state_t *st = r->state;
    int rc;
    if (r->phase == 1) {
        if (st->verdict.result == GH_EBUSY || st->verdict.result == GH_ENOMEM) {
            gh_api_reply_err(r, st->verdict.result);
            return;
        }
        if (st->verdict.result != 0) {
            gh_reply_error(r, 401, "invalid_credentials", "the current password is wrong");
            return;
        }
        r->phase = 2;
        gh_req_suspend(r);
        rc = gh_password_hash_async(app->passwords, st->new_password, st->new_len, pool_done, r);
        if (rc != 0) {
            st->verdict.result = rc;
            gh_req_resume(r);
        }
        return;
    }
    if (r->phase == 2) {
        if (st->verdict.result != 0) {
            gh_api_reply_err(r, st->verdict.result == GH_EBUSY ? GH_EBUSY : GH_ENOMEM);
            return;
        }
        /* Other sessions end before and after the change: a failed write then never leaves the
         * new password with the old sessions (the retry, with the old password, still works). */
        size_t n = 0, n2 = 0;
        rc = gh_session_end_user(app->sessions, st->user.id, st->token_hash, GH_END_REVOKED, &n);
        if (rc == 0)
            rc = gh_user_set_password(app->users, st->user.id, st->verdict.new_hash);
        sodium_memzero(st->verdict.new_hash, sizeof st->verdict.new_hash);
        if (rc == 0)
            rc = gh_session_end_user(app->sessions, st->user.id, st->token_hash, GH_END_REVOKED,
                                     &n2);
        n += n2;
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            return;
        }
        GH_LOG(GH_LOG_INFO, "password changed", GH_LI("user_id", st->user.id),
               GH_LI("sessions_revoked", n));
        (void)gh_reply(r, 204, NULL, NULL, 0);
        return;
    }
    if (!(st = state_new(r))) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    if (gh_api_authenticate(r, &st->session, st->token_hash) != 0)
        return;
    json_t *json;
    const char *cur, *next;
    size_t clen, nlen;
    if (gh_api_json_body(r, &json) != 0)
        return;
    if (gh_api_json_str(r, json, "current_password", &cur, &clen) != 0 ||
        gh_api_json_str(r, json, "new_password", &next, &nlen) != 0)
        goto out;
    if (!gh_auth_password_valid(next, nlen)) {
        gh_reply_error(r, 400, "weak_password", "passwords are 8 to 1024 bytes of valid UTF-8");
        goto out;
    }
    rc = gh_user_get_by_id(app->users, st->session.user_id, &st->user);
    if (rc != 0) {
        gh_api_reply_err(r, rc == GH_ENOTFOUND ? GH_EAUTH : rc);
        goto out;
    }
    st->new_password = gh_pool_strndup(&r->pool, next, nlen);
    st->new_len = nlen;
    if (!st->new_password) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    r->phase = 1;
    gh_req_suspend(r);
    rc = gh_password_verify_async(app->passwords, st->user.password_hash, cur,
                                  clen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : clen, pool_done, r);
    if (rc != 0) {
        st->verdict.result = rc;
        gh_req_resume(r);
    }
out:
    json_decref(json);
}
