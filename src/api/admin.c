/*
 * admin.c — the admin API under /v1/admin/: list and delete users, list and revoke a user's
 * sessions. Every route checks the admin bearer token first (constant-time, request.c).
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

#define ADMIN_LIST_MAX 1000

void gh_api_admin_list_users(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (gh_api_require_admin(r) != 0)
        return;
    uint64_t after = 0;
    size_t limit = 100;
    const char *a = gh_req_query(r, "after"), *l = gh_req_query(r, "limit");
    char *end;
    if (a) {
        after = strtoull(a, &end, 10);
        if (!*a || *end || *a == '-') {
            gh_reply_error(r, 400, "invalid_request", "\"after\" must be a user id");
            return;
        }
    }
    if (l) {
        unsigned long long v = strtoull(l, &end, 10);
        if (!*l || *end || *l == '-' || v == 0 || v > ADMIN_LIST_MAX) {
            gh_reply_error(r, 400, "invalid_request", "\"limit\" must be 1 to 1000");
            return;
        }
        limit = (size_t)v;
    }
    gh_user_t *users = gh_pool_alloc(&r->pool, limit * sizeof *users);
    size_t n = 0;
    if (!users) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = gh_user_list(app->users, after, users, limit, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        char created[GH_RFC3339_LEN];
        gh_clock_rfc3339(users[i].created_at_ms, created);
        if (json_array_append_new(arr, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)users[i].id,
                                                 "username", users[i].username, "created_at",
                                                 created))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "users", arr));
}

/* Finds the user named by the {id} parameter; replies 404 when there is none. */
static int load_user(gh_req_t *r, gh_user_t *user)
{
    gh_app_t *app = r->app;
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return GH_ENOTFOUND;
    int rc = gh_user_get_by_id(app->users, id, user);
    if (rc == GH_ENOTFOUND)
        gh_reply_error(r, 404, "not_found", "no such user");
    else if (rc != 0)
        gh_api_reply_err(r, rc);
    return rc;
}

void gh_api_admin_delete_user(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_user_t user;
    if (gh_api_require_admin(r) != 0 || load_user(r, &user) != 0)
        return;
    /* Sessions first: a session must never outlive its user, even for a moment. */
    size_t n = 0;
    int rc = gh_session_end_user(app->sessions, user.id, NULL, GH_END_REVOKED, &n);
    if (rc == 0)
        rc = gh_user_del(app->users, user.id);
    if (rc == GH_ENOTFOUND) {
        gh_reply_error(r, 404, "not_found", "no such user");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    GH_LOG(GH_LOG_INFO, "user deleted", GH_LI("user_id", user.id), GH_LI("sessions_revoked", n));
    (void)gh_reply(r, 204, NULL, NULL, 0);
}

void gh_api_admin_user_sessions(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_user_t user;
    if (gh_api_require_admin(r) != 0 || load_user(r, &user) != 0)
        return;
    size_t cap = app->cfg.max_sessions_per_user, n = 0;
    gh_session_info_t *list = gh_pool_alloc(&r->pool, cap * sizeof *list);
    if (!list) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = gh_session_list_user(app->sessions, user.id, gh_clock_now_ms(), list, cap, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, gh_api_session_json(&list[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "sessions", arr));
}

void gh_api_admin_revoke_user_sessions(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_user_t user;
    if (gh_api_require_admin(r) != 0 || load_user(r, &user) != 0)
        return;
    size_t n = 0;
    int rc = gh_session_end_user(app->sessions, user.id, NULL, GH_END_REVOKED, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    GH_LOG(GH_LOG_INFO, "sessions revoked", GH_LI("user_id", user.id), GH_LI("count", n),
           GH_LS("by", "admin"));
    (void)gh_reply(r, 204, NULL, NULL, 0);
}

void gh_api_admin_revoke_user_session(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_user_t user;
    if (gh_api_require_admin(r) != 0 || load_user(r, &user) != 0)
        return;
    int rc = gh_session_end_by_id(app->sessions, user.id, r->params[1], GH_END_REVOKED);
    if (rc == GH_ENOTFOUND) {
        gh_reply_error(r, 404, "not_found", "no such session");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
}
