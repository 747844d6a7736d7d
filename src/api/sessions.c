/*
 * sessions.c — the HTTP side of logging in and out, "who am I", listing and revoking sessions,
 * and the forward auth check that reverse proxies call on every request. The workflows are the
 * account service's (src/account/); this file parses requests and renders answers.
 *
 * A login never blocks a polling thread: the handler begins the login (throttle, user lookup),
 * suspends the request, submits the argon2id verification to the password pool, and is called
 * again (phase 1) when the pool's callback resumes it, to finish (session, counters) and reply.
 */
#include "api/api.h"
#include "api/pages.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct {
    gh_account_login_t login;
} login_state_t;

int gh_api_form_credentials(gh_pool_t *pool, const char *body, size_t len, const char **user,
                            size_t *ulen, const char **pw, size_t *plen, const char **why)
{
    *user = *pw = NULL;
    *ulen = *plen = 0;
    *why = NULL;
    size_t off = 0;
    while (off < len) {
        const char *p = body + off;
        const char *amp = memchr(p, '&', len - off);
        size_t n = amp ? (size_t)(amp - p) : len - off;
        const char *eq = memchr(p, '=', n);
        if (eq) {
            size_t kl = (size_t)(eq - p), vl = n - kl - 1;
            const char **dst = NULL;
            size_t *dlen = NULL;
            if (kl == 8 && memcmp(p, "username", 8) == 0) {
                dst = user;
                dlen = ulen;
            } else if (kl == 8 && memcmp(p, "password", 8) == 0) {
                dst = pw;
                dlen = plen;
            }
            if (dst) {
                int rc = gh_api_form_decode(pool, eq + 1, vl, dst, dlen);
                if (rc != 0) {
                    *user = *pw = NULL;
                    *why = rc == GH_EINVAL ? "malformed form encoding" : NULL;
                    return rc;
                }
            }
        }
        off += n + (amp ? 1 : 0);
    }
    if (!*user || !*pw) {
        *user = *pw = NULL;
        *why = "\"username\" and \"password\" are required";
        return GH_EINVAL;
    }
    return 0;
}

/* Reads username and password from a JSON or form body. Replies and returns non-zero on error.
 * *json receives the parsed JSON (to release after use) or NULL for a form. */
static int read_credentials(gh_req_t *r, json_t **json, const char **user, size_t *ulen,
                            const char **pw, size_t *plen)
{
    *json = NULL;
    if (gh_pages_is_form(r)) {
        const char *why;
        int rc = gh_api_form_credentials(&r->pool, r->body ? r->body : "", r->body_len, user, ulen,
                                         pw, plen, &why);
        if (rc != 0)
            gh_api_reply_fail(r, rc, why, 0);
        return rc;
    }
    if (gh_api_json_body(r, json) != 0)
        return GH_EINVAL;
    if (gh_api_json_str(r, *json, "username", user, ulen) != 0 ||
        gh_api_json_str(r, *json, "password", pw, plen) != 0) {
        json_decref(*json);
        *json = NULL;
        return GH_EINVAL;
    }
    return 0;
}

/* The password pool's completion callback (a pool worker): the handler goes on in phase 1. */
static void resume(void *arg)
{
    gh_req_resume(arg);
}

/* Phase 0: read the credentials, begin the login, submit the verification. */
static void login_start(gh_req_t *r)
{
    json_t *json;
    const char *user, *pw;
    size_t ulen, plen;
    if (read_credentials(r, &json, &user, &ulen, &pw, &plen) != 0)
        return;
    login_state_t *st = gh_pool_alloc(&r->pool, sizeof *st);
    if (!st) {
        json_decref(json);
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    r->state = st;
    gh_account_t a;
    gh_account_client_t client;
    gh_api_account(r, &a);
    gh_api_account_client(r, &client);
    int rc = gh_account_login_begin(&a, &st->login, user, ulen, pw, plen, &client);
    if (rc != 0) {
        json_decref(json);
        gh_api_reply_fail(r, rc, NULL, st->login.retry_ms);
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->login.job, resume, r)) {
        gh_account_login_unqueued(&a, &st->login);
        gh_req_resume(r); /* not queued: phase 1 reports why */
    }
    json_decref(json);
}

/* Phase 1: finish the login and hand the session over (JSON, or the login page's redirect). */
static void login_finish(gh_req_t *r)
{
    login_state_t *st = r->state;
    gh_account_login_t *l = &st->login;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_login_continue(&a, l);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    if (l->next == GH_ACCOUNT_NEXT_MFA) {
        gh_api_reply_mfa_required(r, l);
        return;
    }
    gh_api_reply_login(r, &a, l);
}

void gh_api_reply_login(gh_req_t *r, gh_account_t *a, gh_account_login_t *l)
{
    gh_api_tag_session(r, l->session.id);
    if (gh_pages_login_is_form(r)) { /* the login page: back where the browser was going */
        gh_pages_login_done(r);
        if (r->status == 303)
            gh_api_set_session_cookie(r, l->token);
        else /* as below: a session nobody will ever hold must go */
            gh_account_login_abandon(a, l);
        sodium_memzero(l->token, sizeof l->token);
        return;
    }
    json_t *j = gh_api_json_set(
        gh_api_json_set(json_pack("{s:s}", "token", l->token), "session",
                        gh_api_session_json(&l->session)),
        "user",
        json_pack("{s:I, s:s}", "id", (json_int_t)l->user.id, "username", l->user.username));
    gh_api_reply_json(r, 201, j);
    if (r->status == 201)
        gh_api_set_session_cookie(r, l->token);
    else /* the reply failed: the client never learns the token, so the session must go */
        gh_account_login_abandon(a, l);
    sodium_memzero(l->token, sizeof l->token);
}

void gh_api_reply_mfa_required(gh_req_t *r, const gh_account_login_t *l)
{
    if (gh_pages_login_is_form(r)) {
        gh_pages_login_second_step(r, l->pending, l->methods, NULL);
        return;
    }
    char exp[GH_RFC3339_LEN];
    gh_clock_rfc3339(l->pending_expires_ms, exp);
    json_t *methods = json_array();
    if (l->methods & GH_PENDING_TOTP)
        json_array_append_new(methods, json_string(GH_MFA_TOTP));
    if (l->methods & GH_PENDING_RECOVERY)
        json_array_append_new(methods, json_string(GH_MFA_RECOVERY));
    if (l->methods & GH_PENDING_WEBAUTHN)
        json_array_append_new(methods, json_string(GH_MFA_WEBAUTHN));
    json_t *j = gh_api_json_set(
        json_pack("{s:b, s:s, s:s}", "mfa_required", 1, "pending", l->pending, "expires_at", exp),
        "methods", methods);
    gh_api_reply_json(r, 202, j);
}

/* POST /login/mfa (form: pending, method, code, rd): the login page's second step. */
void gh_pages_login_mfa(gh_req_t *r)
{
    r->pool.wipe = true;
    if (gh_pages_login_refused(r))
        return;
    const char *pending = NULL, *method = NULL, *code = NULL;
    size_t plen = 0, mlen = 0, clen = 0;
    gh_account_t a;
    gh_account_client_t client;
    gh_api_account(r, &a);
    gh_api_account_client(r, &client);
    gh_account_login_t *l = gh_pool_alloc(&r->pool, sizeof *l);
    if (!l) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = GH_EPENDING;
    if (gh_pages_form_field(r, "pending", &pending, &plen) == 0 &&
        gh_pages_form_field(r, "method", &method, &mlen) == 0 &&
        gh_pages_form_field(r, "code", &code, &clen) == 0) {
        gh_account_mfa_proof_t proof = {.method = method, .code = code, .code_len = clen};
        rc = gh_account_mfa_finish(&a, l, pending, plen, &proof, &client);
    }
    if (rc == GH_ECODE || rc == GH_EINVAL) {
        gh_pending_t p;
        uint8_t key[GH_TOKEN_HASH_LEN];
        uint32_t methods = GH_PENDING_TOTP | GH_PENDING_RECOVERY;
        if (gh_token_hash(pending, plen, key) == 0 &&
            gh_pending_get(a.pending, key, gh_clock_now_ms(), &p) == 0)
            methods = p.methods;
        gh_pages_login_second_step(r, pending, methods, "That code is not right. Try again.");
        return;
    }
    if (rc != 0) {
        /* the login page again, with the generic message (an expired login starts over) */
        gh_api_reply_fail(r, rc, NULL, l->retry_ms);
        gh_pages_login_failed(r);
        return;
    }
    gh_api_reply_login(r, &a, l);
}

/* The login page posts here too: every form login is refused cross-origin, and a page login's
 * errors become the page again (pages.c); the JSON contract is untouched for other clients. */
void gh_api_login(gh_req_t *r)
{
    r->pool.wipe = true;
    if (r->phase == 0 && gh_pages_is_form(r) && gh_pages_login_refused(r))
        return;
    if (r->phase == 0)
        login_start(r);
    else
        login_finish(r);
    if (!r->suspended && r->replied && r->status >= 400 && gh_pages_login_is_form(r))
        gh_pages_login_failed(r);
}

/* The caller's session and its user. A session whose user was deleted behind this node's back
 * (by another process) ends here. On failure replies (401, 503) and returns non-zero. */
static int authenticate_user(gh_req_t *r, gh_session_info_t *info, gh_user_t *user)
{
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, info, hash) != 0)
        return GH_EAUTH;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_session_user(&a, info, hash, user);
    if (rc == GH_ENOTFOUND) {
        gh_api_reply_fail(r, GH_EUNAUTH, "the session has ended or never existed", 0);
        return GH_EAUTH;
    }
    if (rc != 0)
        gh_api_reply_err(r, rc);
    return rc;
}

/* GET /v1/session. The body is printed straight into the request pool: building and dumping a
 * jansson tree was a third of this route's cost, and its shape never varies. */
void gh_api_whoami(gh_req_t *r)
{
    gh_session_info_t info;
    gh_user_t user;
    if (authenticate_user(r, &info, &user) != 0)
        return;
    char name[6 * GH_USERNAME_MAX + 1];
    char c[GH_RFC3339_LEN], l[GH_RFC3339_LEN], e[GH_RFC3339_LEN], i[GH_RFC3339_LEN];
    gh_api_json_escape(user.username, name, sizeof name);
    gh_clock_rfc3339(info.created_at_ms, c);
    gh_clock_rfc3339(info.last_seen_at_ms, l);
    gh_clock_rfc3339(info.expires_at_ms, e);
    gh_clock_rfc3339(info.idle_expires_at_ms, i);
    size_t cap = sizeof name + 256;
    char *buf = gh_pool_alloc(&r->pool, cap);
    if (!buf) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int n = snprintf(buf, cap,
                     "{\"user\":{\"id\":%llu,\"username\":\"%s\"},\"session\":{\"id\":\"%s\","
                     "\"created_at\":\"%s\",\"last_seen_at\":\"%s\",\"expires_at\":\"%s\","
                     "\"idle_expires_at\":\"%s\"}}",
                     (unsigned long long)user.id, name, info.id, c, l, e, i);
    assert(n > 0 && (size_t)n < cap);
    (void)gh_reply(r, 200, "application/json", buf, (size_t)n);
}

static void forward_auth_step(gh_req_t *r);

/* A 401 may become a 302 to the login page for browsers (pages.c). */
void gh_api_forward_auth(gh_req_t *r)
{
    forward_auth_step(r);
    gh_pages_forward_auth_redirect(r);
}

static void forward_auth_step(gh_req_t *r)
{
    gh_session_info_t info;
    gh_user_t user;
    if (authenticate_user(r, &info, &user) != 0)
        return;
    char uid[24];
    snprintf(uid, sizeof uid, "%llu", (unsigned long long)user.id);
    (void)gh_reply(r, 200, NULL, NULL, 0);
    (void)gh_reply_header(r, "X-Auth-User", user.username);
    (void)gh_reply_header(r, "X-Auth-User-Id", uid);
    (void)gh_reply_header(r, "X-Auth-Session-Id", info.id);
    (void)gh_reply_header(r, "Cache-Control", "no-store");
}

void gh_api_logout(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_logout(&a, hash);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
    gh_api_clear_session_cookie(r);
}

void gh_api_list_sessions(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    gh_account_t a;
    gh_account_sessions_t out;
    gh_api_account(r, &a);
    int rc = gh_account_sessions_list(&a, &r->pool, info.user_id, false, &out);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < out.n; i++) {
        json_t *one = gh_api_json_set(gh_api_session_json(&out.list[i]), "current",
                                      json_boolean(strcmp(out.list[i].id, info.id) == 0));
        if (!one || json_array_append_new(arr, one) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "sessions", arr));
}

void gh_api_revoke_session(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_sessions_revoke(&a, info.user_id, r->params[0]);
    if (rc != 0) {
        gh_api_reply_fail(r, rc, rc == GH_ENOTFOUND ? "no such session" : NULL, 0);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
    if (strcmp(r->params[0], info.id) == 0)
        gh_api_clear_session_cookie(r);
}

void gh_api_revoke_all(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t n = 0;
    int rc = gh_account_sessions_revoke_all(&a, info.user_id, false, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
    gh_api_clear_session_cookie(r);
}
