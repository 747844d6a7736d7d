/*
 * audit.c — the HTTP side of the audit trail and of users' roles: GET /v1/admin/audit (the
 * trail, filtered, newest first, by keyset pages), GET /v1/account/activity (a user's own recent
 * events) and PATCH /v1/admin/users/{id} (disable / enable, grant / revoke admin).
 *
 * The one design decision: every filter is checked here, completely, before anything is read —
 * a number is digits of a bounded length, a type is one of the contract's names, a time is
 * RFC 3339 or milliseconds — and anything else is a 400 naming the parameter. The store then
 * only ever binds values of the right type; no text of a request reaches SQL as SQL.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "account/audit.h"
#include "common/clock.h"

#define AUDIT_PAGE_DEFAULT 50
#define AUDIT_PAGE_MAX 200
#define ACTIVITY_MAX 20

/* Digits only, 1..19 of them, > 0. */
static bool parse_id(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0)
        return false;
    *out = v;
    return true;
}

static json_t *event_json(const gh_audit_event_t *ev)
{
    char time[GH_RFC3339_LEN], id[24];
    gh_clock_rfc3339(ev->time_ms, time);
    snprintf(id, sizeof id, "%lld", (long long)ev->id);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", id, "time", time, "type", ev->type, "actor",
                          ev->actor);
    o = gh_api_json_set(o, "user",
                        ev->user_id ? json_integer((json_int_t)ev->user_id) : json_null());
    o = gh_api_json_set(o, "session_id",
                        ev->session_id[0] ? json_string(ev->session_id) : json_null());
    o = gh_api_json_set(o, "ip", ev->ip[0] ? json_string(ev->ip) : json_null());
    o = gh_api_json_set(o, "user_agent",
                        ev->user_agent[0] ? json_string(ev->user_agent) : json_null());
    o = gh_api_json_set(o, "node", json_string(ev->node));
    o = gh_api_json_set(o, "outcome", json_string(ev->outcome));
    return gh_api_json_set(o, "detail", json_string(ev->detail));
}

static json_t *events_json(const gh_audit_event_t *evs, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        json_t *one = event_json(&evs[i]);
        if (!one || json_array_append_new(arr, one) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

void gh_api_admin_audit(gh_req_t *r)
{
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    size_t limit = AUDIT_PAGE_DEFAULT;
    const char *user = gh_req_query(r, "user"), *type = gh_req_query(r, "type"),
               *since = gh_req_query(r, "since"), *until = gh_req_query(r, "until"),
               *cursor = gh_req_query(r, "cursor"), *lim = gh_req_query(r, "limit");
    int64_t v;
    if (user) {
        if (!parse_id(user, &v)) {
            gh_api_reply_fail(r, GH_EINVAL, "\"user\" must be a user id", 0);
            return;
        }
        q.user_id = (uint64_t)v;
    }
    if (type) {
        if (strcmp(type, "admin") != 0 && !gh_audit_type_valid(type)) {
            gh_api_reply_fail(r, GH_EINVAL, "\"type\" must be an audit event type", 0);
            return;
        }
        snprintf(q.type, sizeof q.type, "%s", type);
    }
    if (since && !gh_clock_parse_time(since, &q.since_ms)) {
        gh_api_reply_fail(r, GH_EINVAL, "\"since\" must be an RFC 3339 UTC time", 0);
        return;
    }
    if (until && !gh_clock_parse_time(until, &q.until_ms)) {
        gh_api_reply_fail(r, GH_EINVAL, "\"until\" must be an RFC 3339 UTC time", 0);
        return;
    }
    if (cursor && !parse_id(cursor, &q.before_id)) {
        gh_api_reply_fail(r, GH_EINVAL, "\"cursor\" is not a cursor this API gave", 0);
        return;
    }
    if (lim) {
        if (!parse_id(lim, &v) || v > AUDIT_PAGE_MAX) {
            gh_api_reply_fail(r, GH_EINVAL, "\"limit\" must be 1 to 200", 0);
            return;
        }
        limit = (size_t)v;
    }
    gh_audit_event_t *evs = gh_pool_alloc(&r->pool, limit * sizeof *evs);
    if (!evs) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    size_t n = 0;
    int64_t next = 0;
    int rc = gh_audit_read(((gh_app_t *)r->app)->audit, &q, evs, limit, &n, &next);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    char nc[24];
    snprintf(nc, sizeof nc, "%lld", (long long)next);
    json_t *o = gh_api_json_set(json_object(), "events", events_json(evs, n));
    gh_api_reply_json(r, 200,
                      gh_api_json_set(o, "next_cursor", next ? json_string(nc) : json_null()));
}

void gh_api_account_activity(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return;
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    q.user_id = info.user_id;
    gh_audit_event_t *evs = gh_pool_alloc(&r->pool, ACTIVITY_MAX * sizeof *evs);
    if (!evs) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    size_t n = 0;
    int64_t next = 0;
    int rc = gh_audit_read(((gh_app_t *)r->app)->audit, &q, evs, ACTIVITY_MAX, &n, &next);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "events", events_json(evs, n)));
}

json_t *gh_api_user_json(const gh_user_t *u)
{
    char created[GH_RFC3339_LEN];
    gh_clock_rfc3339(u->created_at_ms, created);
    return json_pack("{s:I, s:s, s:s, s:b, s:b}", "id", (json_int_t)u->id, "username", u->username,
                     "created_at", created, "admin", u->admin, "disabled", u->disabled);
}

void gh_api_admin_patch_user(gh_req_t *r)
{
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return;
    json_t *body;
    if (gh_api_json_body(r, &body) != 0)
        return;
    json_t *d = json_object_get(body, "disabled"), *ad = json_object_get(body, "admin");
    if ((!d && !ad) || (d && !json_is_boolean(d)) || (ad && !json_is_boolean(ad)) ||
        json_object_size(body) != (size_t)(!!d + !!ad)) {
        json_decref(body);
        gh_api_reply_fail(r, GH_EINVAL, "the body is {\"disabled\"?: bool, \"admin\"?: bool}", 0);
        return;
    }
    int disabled = d ? json_is_true(d) : -1, admin = ad ? json_is_true(ad) : -1;
    json_decref(body);
    gh_account_t a;
    gh_api_account(r, &a);
    gh_user_t user;
    int rc = gh_account_user_set_flags(&a, id, admin, disabled, &user);
    if (rc != 0) {
        gh_api_reply_fail(r, rc, rc == GH_ENOTFOUND ? "no such user" : NULL, 0);
        return;
    }
    gh_api_reply_json(r, 200, gh_api_user_json(&user));
}
