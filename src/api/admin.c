/*
 * admin.c — the HTTP side of the admin API under /v1/admin/: list and delete users, list and
 * revoke a user's sessions (creating one is users.c's). Every route here is GH_ROUTE_ADMIN: the
 * HTTP layer checks the admin bearer token (gh_api_admit) before a handler runs, so none of them
 * checks it. The workflows are the account service's (src/account/).
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

#define ADMIN_LIST_MAX 1000

void gh_api_admin_list_users(gh_req_t *r)
{
    uint64_t after = 0;
    size_t limit = 100;
    const char *a = gh_req_query(r, "after"), *l = gh_req_query(r, "limit");
    char *end;
    if (a) {
        after = strtoull(a, &end, 10);
        if (!*a || *end || *a == '-') {
            gh_api_reply_fail(r, GH_EINVAL, "\"after\" must be a user id", 0);
            return;
        }
    }
    if (l) {
        unsigned long long v = strtoull(l, &end, 10);
        if (!*l || *end || *l == '-' || v == 0 || v > ADMIN_LIST_MAX) {
            gh_api_reply_fail(r, GH_EINVAL, "\"limit\" must be 1 to 1000", 0);
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
    gh_account_t acct;
    gh_api_account(r, &acct);
    int rc = gh_account_users_list(&acct, after, users, limit, &n);
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

/* The {id} parameter as a user id; replies 404 when it is not one. */
static int user_param(gh_req_t *r, uint64_t *id)
{
    return gh_api_param_id(r, 0, id);
}

static void reply_err(gh_req_t *r, int rc, const char *not_found)
{
    gh_api_reply_fail(r, rc, rc == GH_ENOTFOUND ? not_found : NULL, 0);
}

void gh_api_admin_delete_user(gh_req_t *r)
{
    uint64_t id;
    if (user_param(r, &id) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t n = 0;
    int rc = gh_account_user_delete(&a, id, &n);
    if (rc != 0) {
        reply_err(r, rc, "no such user");
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
}

void gh_api_admin_user_sessions(gh_req_t *r)
{
    uint64_t id;
    if (user_param(r, &id) != 0)
        return;
    gh_account_t a;
    gh_account_sessions_t out;
    gh_api_account(r, &a);
    int rc = gh_account_sessions_list(&a, &r->pool, id, true, &out);
    if (rc != 0) {
        reply_err(r, rc, "no such user");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < out.n; i++) {
        if (json_array_append_new(arr, gh_api_session_json(&out.list[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "sessions", arr));
}

void gh_api_admin_revoke_user_sessions(gh_req_t *r)
{
    uint64_t id;
    if (user_param(r, &id) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t n = 0;
    int rc = gh_account_sessions_revoke_all(&a, id, true, &n);
    if (rc != 0) {
        reply_err(r, rc, "no such user");
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
}

void gh_api_admin_revoke_user_session(gh_req_t *r)
{
    uint64_t id;
    gh_user_t user;
    if (user_param(r, &id) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_user_get(&a, id, &user);
    if (rc != 0) {
        reply_err(r, rc, "no such user");
        return;
    }
    rc = gh_account_sessions_revoke(&a, user.id, r->params[1]);
    if (rc != 0) {
        reply_err(r, rc, "no such session");
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
}
