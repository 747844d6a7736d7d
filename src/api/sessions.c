/*
 * sessions.c — logging in and out, "who am I", listing and revoking sessions, and the forward
 * auth check that reverse proxies call on every request.
 *
 * A login never blocks a polling thread: the handler looks the user up, suspends the request,
 * queues the argon2id verification on the password pool, and is called again (phase 1) when
 * the pool resumes it. Unknown users are verified against the pool's dummy hash, so status,
 * body and timing match a wrong password.
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
    gh_user_t user;
    bool user_found;
    gh_password_result_t verdict;
    gh_api_throttle_t throttle;
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
    const char *ct = gh_req_header(r, "Content-Type");
    if (ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
        (ct[33] == '\0' || ct[33] == ';' || ct[33] == ' ')) {
        const char *why;
        int rc = gh_api_form_credentials(&r->pool, r->body ? r->body : "", r->body_len, user, ulen,
                                         pw, plen, &why);
        if (rc == GH_EINVAL)
            gh_reply_error(r, 400, "invalid_request", why);
        else if (rc != 0)
            gh_api_reply_err(r, rc);
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

static void login_verified(void *arg, const gh_password_result_t *res)
{
    gh_req_t *r = arg;
    login_state_t *st = r->state;
    st->verdict = *res;
    gh_req_resume(r);
}

static void set_session_cookie(gh_req_t *r, const char *token)
{
    gh_app_t *app = r->app;
    char cookie[256];
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s",
             app->cookie_name, token, (long long)(app->cfg.session_ttl_ms / 1000),
             app->cfg.cookie_secure ? "; Secure" : "");
    (void)gh_reply_header(r, "Set-Cookie", cookie);
    sodium_memzero(cookie, sizeof cookie);
}

static void clear_session_cookie(gh_req_t *r)
{
    gh_app_t *app = r->app;
    char cookie[160];
    snprintf(cookie, sizeof cookie, "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax%s",
             app->cookie_name, app->cfg.cookie_secure ? "; Secure" : "");
    (void)gh_reply_header(r, "Set-Cookie", cookie);
}

static void login_finish(gh_req_t *r)
{
    gh_app_t *app = r->app;
    login_state_t *st = r->state;
    int v = st->verdict.result;
    gh_api_throttle_login_done(r, &st->throttle,
                               v == GH_EBUSY || v == GH_ENOMEM ? GH_LOGIN_OVERLOADED
                               : v != 0 || !st->user_found     ? GH_LOGIN_FAILURE
                                                               : GH_LOGIN_SUCCESS,
                               st->user_found ? st->user.id : 0);
    if (v == GH_EBUSY || v == GH_ENOMEM) {
        gh_api_count_login(app, GH_LOGIN_OVERLOADED);
        gh_api_reply_err(r, v);
        return;
    }
    if (v != 0 || !st->user_found) {
        gh_api_count_login(app, GH_LOGIN_FAILURE);
        GH_LOG(GH_LOG_INFO, "login failed", GH_LS("reason", "invalid_credentials"));
        gh_reply_error(r, 401, "invalid_credentials", "invalid username or password");
        return;
    }
    if (st->verdict.new_hash[0]) {
        /* The stored hash had an outdated cost: keep the new one (best effort). */
        if (gh_user_set_password(app->users, st->user.id, st->verdict.new_hash) == 0)
            GH_LOG(GH_LOG_INFO, "password rehashed", GH_LI("user_id", st->user.id));
    }
    char token[GH_TOKEN_LEN + 1];
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_session_info_t info;
    gh_session_client_t client;
    gh_api_request_client(r, &client);
    gh_token_new(token, hash);
    int rc = gh_session_create(app->sessions, st->user.id, hash, &client, gh_clock_now_ms(), &info);
    if (rc != 0) {
        sodium_memzero(token, sizeof token);
        gh_api_count_login(app, rc == GH_EBUSY || rc == GH_ENOMEM ? GH_LOGIN_OVERLOADED
                                                                  : GH_LOGIN_FAILURE);
        gh_api_reply_err(r, rc);
        return;
    }
    gh_api_tag_session(r, info.id);
    if (gh_pages_login_is_form(r)) { /* the login page: back where the browser was going */
        gh_api_count_login(app, GH_LOGIN_SUCCESS);
        gh_pages_login_done(r);
        if (r->status == 303)
            set_session_cookie(r, token);
        else /* as below: a session nobody will ever hold must go */
            GH_IGNORE(gh_session_end(app->sessions, hash, GH_END_REVOKED));
        sodium_memzero(token, sizeof token);
        return;
    }
    json_t *j = gh_api_json_set(
        gh_api_json_set(json_pack("{s:s}", "token", token), "session", gh_api_session_json(&info)),
        "user",
        json_pack("{s:I, s:s}", "id", (json_int_t)st->user.id, "username", st->user.username));
    gh_api_count_login(app, GH_LOGIN_SUCCESS);
    gh_api_reply_json(r, 201, j);
    if (r->status == 201)
        set_session_cookie(r, token);
    else /* the reply failed: the client never learns the token, so the session must go */
        GH_IGNORE(gh_session_end(app->sessions, hash, GH_END_REVOKED));
    sodium_memzero(token, sizeof token);
}

static void login_step(gh_req_t *r);

/* The login page posts here too: a form login is refused cross-origin, and its errors become
 * the page again (pages.c); the JSON contract is untouched for every other client. */
void gh_api_login(gh_req_t *r)
{
    if (r->phase == 0 && gh_pages_login_is_form(r) && gh_pages_login_refused(r))
        return;
    login_step(r);
    if (!r->suspended && r->replied && r->status >= 400 && gh_pages_login_is_form(r))
        gh_pages_login_failed(r);
}

static void login_step(gh_req_t *r)
{
    gh_app_t *app = r->app;
    r->pool.wipe = true;
    if (r->phase == 1) {
        login_finish(r);
        return;
    }
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
    memset(st, 0, sizeof *st);
    r->state = st;
    if (gh_api_throttle_login(r, user, ulen, &st->throttle) != 0) {
        json_decref(json);
        return;
    }
    if (gh_auth_username_valid(user, ulen) && plen <= GH_PASSWORD_MAX) {
        int rc = gh_user_get_by_name(app->users, user, &st->user);
        if (rc == 0) {
            st->user_found = true;
        } else if (rc != GH_ENOTFOUND) {
            gh_api_throttle_login_done(r, &st->throttle, GH_LOGIN_OVERLOADED, 0);
            json_decref(json);
            gh_api_reply_err(r, rc);
            return;
        }
    }
    if (plen > GH_PASSWORD_MAX)
        plen = GH_PASSWORD_MAX; /* a verify against the dummy hash; never a match */
    r->phase = 1;
    gh_req_suspend(r);
    int rc =
        gh_password_verify_async(app->passwords, st->user_found ? st->user.password_hash : NULL, pw,
                                 plen, login_verified, r);
    json_decref(json);
    if (rc != 0) {
        st->verdict.result = rc;
        gh_req_resume(r);
    }
}

/* The caller's session and its user. A session whose user was deleted behind this node's back
 * (by another process) ends here. On failure replies (401, 503) and returns non-zero. */
static int authenticate_user(gh_req_t *r, gh_session_info_t *info, gh_user_t *user)
{
    gh_app_t *app = r->app;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, info, hash) != 0)
        return GH_EAUTH;
    int rc = gh_user_get_by_id_cached(app->users, info->user_id, user);
    if (rc == GH_ENOTFOUND) {
        GH_IGNORE(gh_session_end(app->sessions, hash, GH_END_REVOKED));
        gh_reply_error(r, 401, "unauthenticated", "the session has ended or never existed");
        (void)gh_reply_header(r, "WWW-Authenticate", "Bearer realm=\"gatehouse\"");
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
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    int rc = gh_session_end(app->sessions, hash, GH_END_LOGOUT);
    if (rc != 0 && rc != GH_ENOTFOUND) {
        gh_api_reply_err(r, rc);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
    clear_session_cookie(r);
}

void gh_api_list_sessions(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    size_t cap = app->cfg.max_sessions_per_user, n = 0;
    gh_session_info_t *list = gh_pool_alloc(&r->pool, cap * sizeof *list);
    if (!list) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = gh_session_list_user(app->sessions, info.user_id, gh_clock_now_ms(), list, cap, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *one = gh_api_json_set(gh_api_session_json(&list[i]), "current",
                                      json_boolean(strcmp(list[i].id, info.id) == 0));
        if (!one || json_array_append_new(arr, one) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "sessions", arr));
}

void gh_api_revoke_session(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    int rc = gh_session_end_by_id(app->sessions, info.user_id, r->params[0], GH_END_REVOKED);
    if (rc == GH_ENOTFOUND) {
        gh_reply_error(r, 404, "not_found", "no such session");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
    if (strcmp(r->params[0], info.id) == 0)
        clear_session_cookie(r);
}

void gh_api_revoke_all(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    size_t n = 0;
    int rc = gh_session_end_user(app->sessions, info.user_id, NULL, GH_END_REVOKED, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    GH_LOG(GH_LOG_INFO, "sessions revoked", GH_LI("user_id", info.user_id), GH_LI("count", n));
    (void)gh_reply(r, 204, NULL, NULL, 0);
    clear_session_cookie(r);
}
