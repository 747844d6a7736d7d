/*
 * admin_pages.c — the admin console: /admin (find users by name or email prefix, page by
 * page), a user's page /admin/users/{id} (profile, sessions with revoke one / all, disable /
 * enable, unlock the account throttle, delete, the user's audit events) and /admin/audit (the
 * trail with filters).
 * /ops is one link away. Server-rendered HTML, no JavaScript.
 *
 * The one design decision: the console is for an admin USER's session, never for the bearer
 * token, and the role is read from the user store (not the user cache) on every request, so a
 * role taken away or a user disabled loses the console at once. Every state change is a POST
 * with the session's CSRF token that first answers a confirmation page and only acts when the
 * confirmed form comes back; the workflows run as actor "admin:<id>", so the account service
 * records each as admin.<action> beside the event of the change itself.
 */
#include "api/pages.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account/audit.h"
#include "account/email.h"
#include "common/clock.h"
#include "common/log.h"

#define SEARCH_PAGE 20
#define USER_EVENTS 20
#define AUDIT_PAGE 50

typedef struct {
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t me;
    char csrf[GH_PAGES_CSRF_LEN + 1];
    gh_account_t a; /* acting as admin:<me.id> */
} admin_t;

/* Session, then the admin role read fresh, then (for a form) CSRF. 0, or it replied. */
static int admin_start(gh_req_t *r, const char *back, bool form, admin_t *ad)
{
    gh_user_t cached;
    if (gh_pages_session(r, back, &ad->info, ad->hash, &cached) != 0)
        return GH_EAUTH;
    gh_api_account(r, &ad->a);
    int rc = gh_account_user_get(&ad->a, ad->info.user_id, &ad->me);
    if (rc != 0 && rc != GH_ENOTFOUND) {
        gh_api_reply_err(r, rc);
        return rc;
    }
    if (rc != 0 || !ad->me.admin || ad->me.disabled) {
        GH_LOG(GH_LOG_WARN, "admin console refused", GH_LI("user_id", ad->info.user_id),
               GH_LS("reason", "not an admin"));
        gh_pages_message(r, 403, "Forbidden", "The admin console is for admin users.");
        return GH_EFORBIDDEN;
    }
    if (form && !gh_pages_csrf_ok(r, ad->hash)) {
        GH_LOG(GH_LOG_WARN, "admin form refused", GH_LS("reason", "csrf"));
        gh_pages_message(r, 403, "Form refused",
                         "This form is out of date or came from another site. Reload the admin "
                         "page and try again.");
        return GH_EFORBIDDEN;
    }
    snprintf(ad->a.actor, sizeof ad->a.actor, "admin:%llu", (unsigned long long)ad->me.id);
    gh_pages_csrf(ad->hash, ad->csrf);
    return 0;
}

static void nav(gh_pages_html_t *h)
{
    gh_pages_put(h, "<nav><a href=\"/admin\">Users</a> · <a href=\"/admin/audit\">Audit trail</a>"
                    " · <a href=\"/ops\">Operations</a> · <a href=\"/account\">Your account</a>"
                    "</nav>\n");
}

static void bad_request(gh_req_t *r, const char *what)
{
    gh_pages_message(r, 400, "Bad request", what);
}

/* Digits only, 1..18 of them, > 0. */
static bool parse_id(const char *s, int64_t *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return false;
    *out = strtoll(s, NULL, 10);
    return *out > 0;
}

/* A query value as a URL component. */
static void put_urlenc(gh_pages_html_t *h, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        char one[4];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            one[0] = (char)c;
            one[1] = '\0';
        } else {
            one[0] = '%';
            one[1] = hex[c >> 4];
            one[2] = hex[c & 15];
            one[3] = '\0';
        }
        gh_pages_put(h, one);
    }
}

static void events_table(gh_pages_html_t *h, const gh_audit_event_t *evs, size_t n)
{
    gh_pages_put(h, "<table class=\"events\"><thead><tr><th scope=\"col\">Time</th>"
                    "<th scope=\"col\">Type</th><th scope=\"col\">Actor</th>"
                    "<th scope=\"col\">User</th><th scope=\"col\">Session</th>"
                    "<th scope=\"col\">IP</th><th scope=\"col\">Device</th>"
                    "<th scope=\"col\">Node</th><th scope=\"col\">Outcome</th>"
                    "<th scope=\"col\">Detail</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        const gh_audit_event_t *e = &evs[i];
        gh_pages_put(h, "<tr data-type=\"");
        gh_pages_put_esc(h, e->type);
        gh_pages_put(h, "\"><td>");
        gh_pages_put_time(h, e->time_ms);
        gh_pages_put(h, "</td><td class=\"type\">");
        gh_pages_put_esc(h, e->type);
        gh_pages_put(h, "</td><td>");
        gh_pages_put_esc(h, e->actor);
        gh_pages_put(h, "</td><td>");
        if (e->user_id) {
            gh_pages_put(h, "<a href=\"/admin/users/");
            gh_pages_put_int(h, (long long)e->user_id);
            gh_pages_put(h, "\">");
            gh_pages_put_int(h, (long long)e->user_id);
            gh_pages_put(h, "</a>");
        }
        gh_pages_put(h, "</td><td><code class=\"sid\">");
        gh_pages_put_esc(h, e->session_id);
        gh_pages_put(h, "</code></td><td>");
        gh_pages_put_esc(h, e->ip);
        gh_pages_put(h, "</td><td class=\"ua\">");
        gh_pages_put_esc(h, e->user_agent);
        gh_pages_put(h, "</td><td>");
        gh_pages_put_esc(h, e->node);
        gh_pages_put(h, "</td><td>");
        gh_pages_put_esc(h, e->outcome);
        gh_pages_put(h, "</td><td>");
        gh_pages_put_esc(h, e->detail);
        gh_pages_put(h, "</td></tr>\n");
    }
    gh_pages_put(h, "</tbody></table>\n");
    if (n == 0)
        gh_pages_put(h, "<p class=\"note\">No events.</p>\n");
}

/* ---- /admin: find users ---- */

void gh_pages_admin(gh_req_t *r)
{
    admin_t ad;
    if (admin_start(r, "/admin", false, &ad) != 0)
        return;
    const char *q = gh_req_query(r, "q"), *after_s = gh_req_query(r, "after");
    int64_t after = 0;
    if (q && strlen(q) > GH_USER_SEARCH_MAX) {
        bad_request(r, "The search is a name or email prefix of at most 254 characters.");
        return;
    }
    if (after_s && !parse_id(after_s, &after)) {
        bad_request(r, "\"after\" must be a user id.");
        return;
    }
    gh_user_t *users = gh_pool_alloc(&r->pool, SEARCH_PAGE * sizeof *users);
    size_t n = 0;
    if (!users) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = gh_user_search(ad.a.users, q ? q : "", (uint64_t)after, users, SEARCH_PAGE, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_pages_html_t h;
    if (!gh_pages_html_init(r, &h, 16384 + SEARCH_PAGE * 1024)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_begin(&h, "Admin console");
    nav(&h);
    const char *done = gh_req_query(r, "done");
    if (done && strcmp(done, "delete") == 0)
        gh_pages_put(&h, "<p class=\"ok\" role=\"status\">The user was deleted.</p>\n");
    gh_pages_put(&h, "<form method=\"get\" action=\"/admin\" role=\"search\">"
                     "<label for=\"q\">Find users by name or email prefix</label>"
                     "<input id=\"q\" name=\"q\" type=\"text\" maxlength=\"254\" value=\"");
    gh_pages_put_esc(&h, q ? q : "");
    gh_pages_put(&h,
                 "\"> <button type=\"submit\">Search</button></form>\n"
                 "<table id=\"users\"><thead><tr><th scope=\"col\">Id</th>"
                 "<th scope=\"col\">Name</th><th scope=\"col\">Created</th>"
                 "<th scope=\"col\">Role</th><th scope=\"col\">State</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        gh_pages_put(&h, "<tr><td>");
        gh_pages_put_int(&h, (long long)users[i].id);
        gh_pages_put(&h, "</td><td><a class=\"user\" href=\"/admin/users/");
        gh_pages_put_int(&h, (long long)users[i].id);
        gh_pages_put(&h, "\">");
        gh_pages_put_esc(&h, users[i].username);
        gh_pages_put(&h, "</a></td><td>");
        gh_pages_put_time(&h, users[i].created_at_ms);
        gh_pages_put(&h, users[i].admin ? "</td><td>admin</td>" : "</td><td>user</td>");
        gh_pages_put(&h, users[i].disabled ? "<td>disabled</td></tr>\n" : "<td>active</td></tr>\n");
    }
    gh_pages_put(&h, "</tbody></table>\n");
    if (n == 0)
        gh_pages_put(&h, "<p class=\"note\">No user matches.</p>\n");
    if (n == SEARCH_PAGE) {
        gh_pages_put(&h, "<p><a rel=\"next\" href=\"/admin?q=");
        put_urlenc(&h, q ? q : "");
        gh_pages_put(&h, "&amp;after=");
        gh_pages_put_int(&h, (long long)users[n - 1].id);
        gh_pages_put(&h, "\">Next page</a></p>\n");
    }
    gh_pages_end(&h);
    gh_pages_send(r, 200, &h);
}

/* ---- /admin/users/{id} ---- */

static const char *done_text(const char *done)
{
    static const struct {
        const char *action, *text;
    } texts[] = {
        {"revoke-session", "The session was ended."},
        {"revoke-all", "Every session of the user was ended."},
        {"disable", "The user was disabled; every session ended."},
        {"enable", "The user was enabled."},
        {"unlock", "The account throttle was unlocked."},
        {"factors-reset", "Every second factor and recovery code of the user was removed."},
        {"reset-send", "A password reset link was mailed to the user's verified address."},
        {"reset-none", "The user has no verified email address: no password reset was sent."}};
    for (size_t i = 0; done && i < sizeof texts / sizeof texts[0]; i++)
        if (strcmp(done, texts[i].action) == 0)
            return texts[i].text;
    return NULL;
}

/* A POST button to /admin/users/{id}/{action}, with an optional session id field. */
static void action_form(gh_pages_html_t *h, uint64_t id, const char *action, const char *csrf,
                        const char *sid, const char *label)
{
    gh_pages_put(h, "<form class=\"inline\" method=\"post\" action=\"/admin/users/");
    gh_pages_put_int(h, (long long)id);
    gh_pages_put(h, "/");
    gh_pages_put_esc(h, action);
    gh_pages_put(h, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    gh_pages_put_esc(h, csrf);
    gh_pages_put(h, "\">");
    if (sid) {
        gh_pages_put(h, "<input type=\"hidden\" name=\"sid\" value=\"");
        gh_pages_put_esc(h, sid);
        gh_pages_put(h, "\">");
    }
    gh_pages_put(h, "<button type=\"submit\" data-action=\"");
    gh_pages_put_esc(h, action);
    gh_pages_put(h, "\">");
    gh_pages_put_esc(h, label);
    gh_pages_put(h, "</button></form>");
}

/* The {id} of the path as a user id, or a 404 page. */
static int user_param(gh_req_t *r, uint64_t *id)
{
    int64_t v;
    if (!parse_id(r->params[0], &v)) {
        gh_pages_message(r, 404, "Not found", "There is no such user.");
        return GH_ENOTFOUND;
    }
    *id = (uint64_t)v;
    return 0;
}

void gh_pages_admin_user(gh_req_t *r)
{
    admin_t ad;
    uint64_t id;
    if (admin_start(r, "/admin", false, &ad) != 0 || user_param(r, &id) != 0)
        return;
    gh_user_t u;
    int rc = gh_account_user_get(&ad.a, id, &u);
    if (rc == GH_ENOTFOUND) {
        gh_pages_message(r, 404, "Not found", "There is no such user.");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_account_sessions_t s;
    if ((rc = gh_account_sessions_list(&ad.a, &r->pool, id, true, &s)) != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    q.user_id = id;
    gh_audit_event_t *evs = gh_pool_alloc(&r->pool, USER_EVENTS * sizeof *evs);
    size_t ne = 0;
    int64_t next = 0;
    if (!evs) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    if ((rc = gh_audit_read(((gh_app_t *)r->app)->audit, &q, evs, USER_EVENTS, &ne, &next)) != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_pages_html_t h;
    if (!gh_pages_html_init(r, &h, 24576 + s.n * 2048 + ne * 2560)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_begin(&h, u.username); /* escaped by the page */
    nav(&h);
    const char *done = done_text(gh_req_query(r, "done"));
    if (done) {
        gh_pages_put(&h, "<p class=\"ok\" role=\"status\">");
        gh_pages_put(&h, done);
        gh_pages_put(&h, "</p>\n");
    }
    gh_pages_put(&h, "<h2 id=\"profile\">Profile</h2>\n<dl><dt>Name</dt><dd id=\"username\">");
    gh_pages_put_esc(&h, u.username);
    gh_pages_put(&h, "</dd><dt>Id</dt><dd>");
    gh_pages_put_int(&h, (long long)u.id);
    gh_pages_put(&h, "</dd><dt>Created</dt><dd>");
    gh_pages_put_time(&h, u.created_at_ms);
    gh_pages_put(&h, "</dd><dt>Role</dt><dd>");
    gh_pages_put(&h, u.admin ? "admin" : "user");
    gh_pages_put(&h, "</dd><dt>State</dt><dd id=\"state\">");
    gh_pages_put(&h, u.disabled ? "disabled" : "active");
    gh_pages_put(&h, "</dd></dl>\n<p>");
    action_form(&h, id, u.disabled ? "enable" : "disable", ad.csrf, NULL,
                u.disabled ? "Enable" : "Disable");
    gh_pages_put(&h, " ");
    action_form(&h, id, "unlock", ad.csrf, NULL, "Unlock the login throttle");
    gh_pages_put(&h, " ");
    action_form(&h, id, "revoke-all", ad.csrf, NULL, "End every session");
    gh_pages_put(&h, " ");
    action_form(&h, id, "factors-reset", ad.csrf, NULL, "Reset second factors");
    gh_pages_put(&h, " ");
    action_form(&h, id, "reset-send", ad.csrf, NULL, "Send a password reset");
    gh_pages_put(&h, " ");
    action_form(&h, id, "delete", ad.csrf, NULL, "Delete the user");
    gh_pages_put(&h, "</p>\n<h2 id=\"sessions-title\">Sessions</h2>\n"
                     "<table aria-labelledby=\"sessions-title\" id=\"sessions\"><thead><tr>"
                     "<th scope=\"col\">Device</th><th scope=\"col\">IP address</th>"
                     "<th scope=\"col\">Created</th><th scope=\"col\">Last seen</th>"
                     "<th scope=\"col\"><span class=\"sr\">Action</span></th></tr></thead>"
                     "<tbody>\n");
    for (size_t i = 0; i < s.n; i++) {
        const gh_session_info_t *si = &s.list[i];
        gh_pages_put(&h, "<tr data-session=\"");
        gh_pages_put_esc(&h, si->id);
        gh_pages_put(&h, "\"><td class=\"ua\">");
        gh_pages_put_esc(&h, si->client.user_agent[0] ? si->client.user_agent : "unknown device");
        gh_pages_put(&h, "<br><code class=\"sid\">");
        gh_pages_put_esc(&h, si->id);
        gh_pages_put(&h, "</code></td><td>");
        gh_pages_put_esc(&h, si->client.ip[0] ? si->client.ip : "unknown");
        gh_pages_put(&h, "</td><td>");
        gh_pages_put_time(&h, si->created_at_ms);
        gh_pages_put(&h, "</td><td>");
        gh_pages_put_time(&h, si->last_seen_at_ms);
        gh_pages_put(&h, "</td><td>");
        action_form(&h, id, "revoke-session", ad.csrf, si->id, "End this session");
        gh_pages_put(&h, "</td></tr>\n");
    }
    gh_pages_put(&h, "</tbody></table>\n");
    if (s.n == 0)
        gh_pages_put(&h, "<p class=\"note\">No session.</p>\n");
    gh_pages_put(&h, "<h2>Recent audit events</h2>\n");
    events_table(&h, evs, ne);
    gh_pages_put(&h, "<p><a href=\"/admin/audit?user=");
    gh_pages_put_int(&h, (long long)id);
    gh_pages_put(&h, "\">Every event of this user</a></p>\n");
    gh_pages_end(&h);
    gh_pages_send(r, 200, &h);
}

/* ---- POST /admin/users/{id}/{action}: confirm, then act ---- */

static const struct {
    const char *action, *question;
} actions[] = {
    {"revoke-session", "End this session of the user?"},
    {"revoke-all", "End every session of the user?"},
    {"disable", "Disable the user? Every session ends, and logins fail until enabled again."},
    {"enable", "Enable the user?"},
    {"unlock", "Unlock the user's login throttle on this node?"},
    {"factors-reset", "Remove every second factor and recovery code of the user? They sign in "
                      "with the password alone until they enroll again."},
    {"reset-send", "Mail a password reset link to the user's verified email address?"},
    {"delete", "Delete the user and every session? This cannot be undone."},
};

static void confirm_page(gh_req_t *r, const admin_t *ad, uint64_t id, const gh_user_t *u,
                         const char *action, const char *question, const char *sid)
{
    gh_pages_html_t h;
    if (!gh_pages_html_init(r, &h, 8192)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_begin(&h, "Please confirm");
    gh_pages_put(&h, "<p role=\"alert\">");
    gh_pages_put(&h, question);
    gh_pages_put(&h, "</p><p>User: <strong>");
    gh_pages_put_esc(&h, u->username);
    gh_pages_put(&h, "</strong>");
    if (sid) {
        gh_pages_put(&h, ", session <code class=\"sid\">");
        gh_pages_put_esc(&h, sid);
        gh_pages_put(&h, "</code>");
    }
    gh_pages_put(&h, "</p>\n<form method=\"post\" action=\"/admin/users/");
    gh_pages_put_int(&h, (long long)id);
    gh_pages_put(&h, "/");
    gh_pages_put_esc(&h, action);
    gh_pages_put(&h, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    gh_pages_put_esc(&h, ad->csrf);
    gh_pages_put(&h, "\"><input type=\"hidden\" name=\"confirm\" value=\"yes\">");
    if (sid) {
        gh_pages_put(&h, "<input type=\"hidden\" name=\"sid\" value=\"");
        gh_pages_put_esc(&h, sid);
        gh_pages_put(&h, "\">");
    }
    gh_pages_put(&h, "<button type=\"submit\" id=\"confirm\">Yes, do it</button></form>\n"
                     "<p><a href=\"/admin/users/");
    gh_pages_put_int(&h, (long long)id);
    gh_pages_put(&h, "\">No, go back</a></p>\n");
    gh_pages_end(&h);
    gh_pages_send(r, 200, &h);
}

void gh_pages_admin_action(gh_req_t *r)
{
    admin_t ad;
    uint64_t id;
    if (admin_start(r, "/admin", true, &ad) != 0 || user_param(r, &id) != 0)
        return;
    const char *action = r->params[1], *question = NULL;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(action, actions[i].action) == 0)
            question = actions[i].question;
    if (!question) {
        gh_pages_message(r, 404, "Not found", "There is no such action.");
        return;
    }
    gh_user_t u;
    int rc = gh_account_user_get(&ad.a, id, &u);
    if (rc == GH_ENOTFOUND) {
        gh_pages_message(r, 404, "Not found", "There is no such user.");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    const char *sid = NULL, *confirm = NULL;
    size_t len;
    if (strcmp(action, "revoke-session") == 0 &&
        (gh_pages_form_field(r, "sid", &sid, &len) != 0 || len != GH_SESSION_ID_LEN)) {
        bad_request(r, "Which session? The form names none.");
        return;
    }
    if ((strcmp(action, "disable") == 0 || strcmp(action, "delete") == 0) && id == ad.me.id) {
        bad_request(r, "You cannot disable or delete yourself from the console.");
        return;
    }
    if (gh_pages_form_field(r, "confirm", &confirm, &len) != 0 || strcmp(confirm, "yes") != 0) {
        confirm_page(r, &ad, id, &u, action, question, sid);
        return;
    }
    size_t n = 0;
    bool was = false;
    gh_user_t after;
    if (strcmp(action, "revoke-session") == 0) {
        rc = gh_account_sessions_revoke(&ad.a, id, sid);
        if (rc == GH_ENOTFOUND)
            rc = 0; /* already gone is what was asked */
    } else if (strcmp(action, "revoke-all") == 0) {
        rc = gh_account_sessions_revoke_all(&ad.a, id, true, &n);
    } else if (strcmp(action, "disable") == 0 || strcmp(action, "enable") == 0) {
        rc = gh_account_user_set_flags(&ad.a, id, -1, strcmp(action, "disable") == 0, &after);
    } else if (strcmp(action, "unlock") == 0) {
        rc = gh_account_throttle_unlock(&ad.a, id, &was);
    } else if (strcmp(action, "factors-reset") == 0) {
        rc = gh_account_factors_reset(&ad.a, id, &n);
    } else if (strcmp(action, "reset-send") == 0) {
        int64_t retry_ms = 0;
        rc = gh_account_reset_send(&ad.a, id, &was, &retry_ms);
        if (rc == 0 && !was)
            action = "reset-none";
        if (rc == GH_ECLOSED) {
            gh_pages_message(r, 409, "Email is off",
                             "This node sends no email (no SMTP server is configured).");
            return;
        }
    } else {
        rc = gh_account_user_delete(&ad.a, id, &n);
        if (rc == 0) {
            gh_pages_redirect(r, 303, "/admin?done=delete");
            return;
        }
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    char loc[96];
    snprintf(loc, sizeof loc, "/admin/users/%llu?done=%s", (unsigned long long)id, action);
    gh_pages_redirect(r, 303, loc);
}

/* ---- /admin/audit ---- */

void gh_pages_admin_audit(gh_req_t *r)
{
    admin_t ad;
    if (admin_start(r, "/admin/audit", false, &ad) != 0)
        return;
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    const char *user = gh_req_query(r, "user"), *type = gh_req_query(r, "type"),
               *since = gh_req_query(r, "since"), *until = gh_req_query(r, "until"),
               *cursor = gh_req_query(r, "cursor");
    int64_t v;
    /* An empty field of the filter form filters nothing. */
    if (user && *user) {
        if (!parse_id(user, &v)) {
            bad_request(r, "\"user\" must be a user id (digits).");
            return;
        }
        q.user_id = (uint64_t)v;
    }
    if (type && *type) {
        if (strcmp(type, "admin") != 0 && !gh_audit_type_valid(type)) {
            bad_request(r, "\"type\" must be an audit event type such as login.failed, "
                           "or admin.");
            return;
        }
        snprintf(q.type, sizeof q.type, "%s", type);
    }
    if (since && *since && !gh_clock_parse_time(since, &q.since_ms)) {
        bad_request(r, "\"since\" must be a UTC time such as 2026-12-06T00:00:00Z.");
        return;
    }
    if (until && *until && !gh_clock_parse_time(until, &q.until_ms)) {
        bad_request(r, "\"until\" must be a UTC time such as 2026-12-06T00:00:00Z.");
        return;
    }
    if (cursor && *cursor && !parse_id(cursor, &q.before_id)) {
        bad_request(r, "\"cursor\" is not a cursor this page gave.");
        return;
    }
    gh_audit_event_t *evs = gh_pool_alloc(&r->pool, AUDIT_PAGE * sizeof *evs);
    size_t n = 0;
    int64_t next = 0;
    if (!evs) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    int rc = gh_audit_read(((gh_app_t *)r->app)->audit, &q, evs, AUDIT_PAGE, &n, &next);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_pages_html_t h;
    if (!gh_pages_html_init(r, &h, 16384 + n * 2560)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_begin(&h, "Audit trail");
    nav(&h);
    struct {
        const char *name, *label, *value;
    } f[] = {{"user", "User id", user},
             {"type", "Type (login.failed, admin, ...)", type},
             {"since", "Since (UTC)", since},
             {"until", "Until (UTC)", until}};
    gh_pages_put(&h, "<form method=\"get\" action=\"/admin/audit\" role=\"search\">");
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        gh_pages_put(&h, "<label for=\"f-");
        gh_pages_put(&h, f[i].name);
        gh_pages_put(&h, "\">");
        gh_pages_put(&h, f[i].label);
        gh_pages_put(&h, "</label><input type=\"text\" id=\"f-");
        gh_pages_put(&h, f[i].name);
        gh_pages_put(&h, "\" name=\"");
        gh_pages_put(&h, f[i].name);
        gh_pages_put(&h, "\" value=\"");
        gh_pages_put_esc(&h, f[i].value ? f[i].value : "");
        gh_pages_put(&h, "\">");
    }
    gh_pages_put(&h, " <button type=\"submit\">Filter</button></form>\n");
    events_table(&h, evs, n);
    if (next) {
        gh_pages_put(&h, "<p><a rel=\"next\" href=\"/admin/audit?cursor=");
        gh_pages_put_int(&h, (long long)next);
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            if (!f[i].value || !*f[i].value)
                continue;
            gh_pages_put(&h, "&amp;");
            gh_pages_put(&h, f[i].name);
            gh_pages_put(&h, "=");
            put_urlenc(&h, f[i].value);
        }
        gh_pages_put(&h, "\">Older events</a></p>\n");
    }
    gh_pages_end(&h);
    gh_pages_send(r, 200, &h);
}
