/*
 * pages.c — /login, /account and /ops as server-rendered HTML, the form routes behind the
 * account page's buttons, the redirect rule of a login, and forward auth's 302 for browsers.
 *
 * Design decision: CSRF protection needs no server state. Every cookie-authenticated form carries
 * a token derived from the session (BLAKE2b keyed by the session's token hash), so any node that
 * knows the session can check it, a reload keeps it valid, and it dies with the session. On top,
 * the cookie is SameSite=Lax and a present Origin (else Referer) must name this host.
 */
#include "api/pages.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define CSRF_LEN 32 /* hex of 16 bytes */
#define RD_MAX 2048

/* ---- an HTML buffer in the request pool: bounded, an overflow turns into 503 ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool overflow;
} html_t;

static bool html_init(gh_req_t *r, html_t *h, size_t cap)
{
    h->buf = gh_pool_alloc(&r->pool, cap);
    h->len = 0;
    h->cap = h->buf ? cap : 0;
    h->overflow = !h->buf;
    return h->buf != NULL;
}

static void put_n(html_t *h, const char *s, size_t n)
{
    if (h->overflow || h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    memcpy(h->buf + h->len, s, n);
    h->len += n;
}

static void put(html_t *h, const char *s)
{
    put_n(h, s, strlen(s));
}

/* Text and attribute values alike: the five characters that can end either. */
static void put_esc(html_t *h, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            put(h, "&amp;");
            break;
        case '<':
            put(h, "&lt;");
            break;
        case '>':
            put(h, "&gt;");
            break;
        case '"':
            put(h, "&quot;");
            break;
        case '\'':
            put(h, "&#39;");
            break;
        default:
            put_n(h, s, 1);
        }
    }
}

/* Formatted output for numbers and constant text only; dynamic strings go through put_esc. */
static void putf(html_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(html_t *h, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        h->overflow = true;
        return;
    }
    put_n(h, tmp, (size_t)n);
}

static const char STYLE[] =
    "body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;"
    "color:#1b1b1b;background:#fff}h1{font-size:1.6rem}label{display:block;margin:.6rem 0 .2rem}"
    "input[type=text],input[type=password]{width:100%;max-width:22rem;padding:.4rem;font:inherit}"
    "button{font:inherit;padding:.35rem .9rem;margin-top:.6rem;cursor:pointer}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;"
    "border-bottom:1px solid #ccc}.err{color:#8b0000;font-weight:600}.ok{color:#05603a}"
    ".cur{font-weight:600}form.inline{display:inline;margin:0}";

/* refresh: NULL, or the URL the page reloads itself to every 5 seconds (no JavaScript). */
static void page_begin(html_t *h, const char *title, const char *refresh)
{
    put(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    if (refresh) {
        put(h, "<meta http-equiv=\"refresh\" content=\"5; url=");
        put_esc(h, refresh);
        put(h, "\">");
    }
    put(h, "<title>");
    put_esc(h, title);
    put(h, " · Gatehouse</title><style>");
    put(h, STYLE);
    put(h, "</style></head><body><main>\n<h1>");
    put_esc(h, title);
    put(h, "</h1>\n");
}

static void page_end(html_t *h)
{
    put(h, "</main></body></html>\n");
}

/* Sends the page with headers that keep it out of caches and frames. */
static void page_send(gh_req_t *r, int status, html_t *h)
{
    if (h->overflow) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    r->nheaders = 0; /* a page replaces whatever reply came before it */
    if (gh_reply(r, status, "text/html; charset=utf-8", h->buf, h->len) != 0)
        return;
    (void)gh_reply_header(r, "Cache-Control", "no-store");
    (void)gh_reply_header(r, "Content-Security-Policy",
                          "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                          "frame-ancestors 'none'; base-uri 'none'");
    (void)gh_reply_header(r, "X-Frame-Options", "DENY");
    (void)gh_reply_header(r, "Referrer-Policy", "same-origin");
}

static void redirect(gh_req_t *r, int status, const char *location)
{
    r->nheaders = 0;
    if (gh_reply(r, status, NULL, NULL, 0) != 0)
        return;
    (void)gh_reply_header(r, "Location", location);
    (void)gh_reply_header(r, "Cache-Control", "no-store");
}

/* ---- the redirect rule ---- */

static bool host_in_list(const char *host, size_t hlen, const char *list)
{
    const char *p = list;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        const char *e = p;
        size_t en = n;
        while (en && (*e == ' ' || *e == '\t')) {
            e++;
            en--;
        }
        while (en && (e[en - 1] == ' ' || e[en - 1] == '\t'))
            en--;
        if (en) {
            if (e[0] == '.') { /* ".example.com": example.com itself and its subdomains */
                if (hlen == en - 1 && strncasecmp(host, e + 1, en - 1) == 0)
                    return true;
                if (hlen > en && strncasecmp(host + hlen - en, e, en) == 0)
                    return true;
            } else if (hlen == en && strncasecmp(host, e, en) == 0) {
                return true;
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

bool gh_pages_redirect_ok(const char *rd, const char *host, const char *allowed)
{
    if (!rd || !*rd)
        return false;
    size_t n = strlen(rd);
    if (n > RD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rd[i];
        /* Browsers drop tabs and newlines and read '\' as '/': refuse them rather than guess. */
        if (c <= 0x20 || c >= 0x7f || c == '\\')
            return false;
    }
    if (rd[0] == '/')
        return rd[1] != '/';
    size_t skip;
    if (strncasecmp(rd, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(rd, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    const char *auth = rd + skip;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || memchr(auth, '@', alen) || memchr(auth, '%', alen))
        return false;
    if (host && strlen(host) == alen && strncasecmp(auth, host, alen) == 0)
        return true;
    /* The host without its port ("[::1]:80" keeps its brackets). */
    size_t hlen = alen;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close)
            return false;
        hlen = (size_t)(close - auth) + 1;
    } else {
        const char *colon = memchr(auth, ':', alen);
        if (colon)
            hlen = (size_t)(colon - auth);
    }
    if (hlen < alen) { /* a port must be digits */
        if (auth[hlen] != ':' || hlen + 1 == alen)
            return false;
        for (size_t i = hlen + 1; i < alen; i++)
            if (auth[i] < '0' || auth[i] > '9')
                return false;
    }
    return hlen > 0 && allowed && host_in_list(auth, hlen, allowed);
}

/* ---- form bodies ---- */

static bool is_form(gh_req_t *r)
{
    const char *ct = gh_req_header(r, "Content-Type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
           (ct[33] == '\0' || ct[33] == ';' || ct[33] == ' ');
}

int gh_pages_form_field(gh_req_t *r, const char *name, const char **out, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = r->body && is_form(r) ? r->body : "";
    while (*p) {
        size_t seg = strcspn(p, "&");
        const char *eq = memchr(p, '=', seg);
        if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
            return gh_api_form_decode(&r->pool, eq + 1, seg - nl - 1, out, len);
        }
        p += seg;
        if (*p == '&')
            p++;
    }
    return GH_ENOTFOUND;
}

/* ---- origin, CSRF, the caller's session ---- */

/* True when Origin (else Referer) is absent or names this Host exactly; "null" never does. */
static bool same_origin(gh_req_t *r)
{
    const char *o = gh_req_header(r, "Origin");
    if (!o)
        o = gh_req_header(r, "Referer");
    if (!o)
        return true;
    const char *host = gh_req_header(r, "Host");
    size_t skip;
    if (strncasecmp(o, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(o, "https://", 8) == 0)
        skip = 8;
    else
        return false;
    const char *auth = o + skip;
    size_t alen = strcspn(auth, "/?#");
    return host && alen && strlen(host) == alen && strncasecmp(auth, host, alen) == 0;
}

static void csrf_token(const uint8_t hash[GH_TOKEN_HASH_LEN], char out[CSRF_LEN + 1])
{
    static const char label[] = "gatehouse csrf v1";
    uint8_t mac[CSRF_LEN / 2];
    crypto_generichash(mac, sizeof mac, (const uint8_t *)label, sizeof label - 1, hash,
                       GH_TOKEN_HASH_LEN);
    sodium_bin2hex(out, CSRF_LEN + 1, mac, sizeof mac);
    sodium_memzero(mac, sizeof mac);
}

static bool csrf_ok(gh_req_t *r, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    const char *given;
    size_t glen;
    if (!same_origin(r) || gh_pages_form_field(r, "csrf", &given, &glen) != 0 || glen != CSRF_LEN)
        return false;
    char want[CSRF_LEN + 1];
    csrf_token(hash, want);
    bool ok = sodium_memcmp(given, want, CSRF_LEN) == 0;
    sodium_memzero(want, sizeof want);
    return ok;
}

static void clear_cookie(gh_req_t *r)
{
    gh_app_t *app = r->app;
    char cookie[160];
    snprintf(cookie, sizeof cookie, "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax%s",
             app->cookie_name, app->cfg.cookie_secure ? "; Secure" : "");
    (void)gh_reply_header(r, "Set-Cookie", cookie);
}

static void message_page(gh_req_t *r, int status, const char *title, const char *text)
{
    html_t h;
    if (!html_init(r, &h, 8192)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    page_begin(&h, title, NULL);
    put(&h, "<p class=\"err\" role=\"alert\">");
    put_esc(&h, text);
    put(&h, "</p><p><a href=\"/account\">Your account</a> · <a href=\"/login\">Log in</a></p>");
    page_end(&h);
    page_send(r, status, &h);
}

/* The caller's session and user. Without a valid session: 303 to the login page, which sends
 * the browser back to `back` afterwards. Returns 0 or non-zero (then it replied). */
static int page_session(gh_req_t *r, const char *back, gh_session_info_t *info,
                        uint8_t hash[GH_TOKEN_HASH_LEN], gh_user_t *user)
{
    gh_app_t *app = r->app;
    if (gh_api_authenticate(r, info, hash) != 0) {
        if (r->status == 401) {
            char loc[64];
            snprintf(loc, sizeof loc, "/login?rd=%s", back);
            redirect(r, 303, loc);
        }
        return GH_EAUTH;
    }
    int rc = gh_user_get_by_id_cached(app->users, info->user_id, user);
    if (rc == GH_ENOTFOUND) {
        GH_IGNORE(gh_session_end(app->sessions, hash, GH_END_REVOKED));
        redirect(r, 303, "/login");
        clear_cookie(r);
        return rc;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return rc;
    }
    return 0;
}

/* ---- /login and the browser side of POST /v1/sessions ---- */

static bool accepts_html(gh_req_t *r)
{
    const char *a = gh_req_header(r, "Accept");
    return a && strstr(a, "text/html") != NULL;
}

static void login_page(gh_req_t *r, int status, const char *rd, const char *message)
{
    gh_app_t *app = r->app;
    html_t h;
    if (!html_init(r, &h, 16384)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    if (rd && !gh_pages_redirect_ok(rd, gh_req_header(r, "Host"), app->cfg.allowed_redirect_hosts))
        rd = NULL; /* never carried along: the form cannot become an open redirect */
    page_begin(&h, "Log in", NULL);
    if (message) {
        put(&h, "<p class=\"err\" role=\"alert\" id=\"login-error\">");
        put_esc(&h, message);
        put(&h, "</p>\n");
    }
    put(&h, "<form method=\"post\" action=\"/v1/sessions\" aria-label=\"Log in\">\n"
            "<input type=\"hidden\" name=\"rd\" value=\"");
    put_esc(&h, rd ? rd : "");
    put(&h, "\">\n<label for=\"username\">Username</label>\n"
            "<input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" "
            "required autofocus maxlength=\"64\">\n"
            "<label for=\"password\">Password</label>\n"
            "<input id=\"password\" name=\"password\" type=\"password\" "
            "autocomplete=\"current-password\" required>\n"
            "<div><button type=\"submit\">Log in</button></div>\n</form>\n");
    page_end(&h);
    page_send(r, status, &h);
}

void gh_pages_login(gh_req_t *r)
{
    login_page(r, 200, gh_req_query(r, "rd"), NULL);
}

bool gh_pages_login_is_form(gh_req_t *r)
{
    const char *rd;
    size_t n;
    return is_form(r) && (accepts_html(r) || gh_pages_form_field(r, "rd", &rd, &n) == 0);
}

static const char *form_rd(gh_req_t *r)
{
    const char *rd;
    size_t n;
    return gh_pages_form_field(r, "rd", &rd, &n) == 0 && n == strlen(rd) ? rd : NULL;
}

bool gh_pages_login_refused(gh_req_t *r)
{
    if (same_origin(r))
        return false;
    GH_LOG(GH_LOG_WARN, "login form refused", GH_LS("reason", "cross_origin"));
    login_page(r, 403, NULL, "This form was sent from another site. Log in here instead.");
    return true;
}

void gh_pages_login_done(gh_req_t *r)
{
    gh_app_t *app = r->app;
    const char *rd = form_rd(r);
    if (!rd || !gh_pages_redirect_ok(rd, gh_req_header(r, "Host"), app->cfg.allowed_redirect_hosts))
        rd = "/account";
    redirect(r, 303, rd);
}

void gh_pages_login_failed(gh_req_t *r)
{
    int status = r->status;
    const char *retry = NULL;
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcasecmp(r->headers[i].name, "Retry-After") == 0)
            retry = r->headers[i].value;
    const char *msg = "Invalid username or password.";
    if (status == 429)
        msg = "Too many attempts. Wait a moment and try again.";
    else if (status >= 500)
        msg = "The service is busy. Try again in a moment.";
    else
        status = 401; /* one answer for every failed attempt, malformed ones included */
    login_page(r, status, form_rd(r), msg);
    if (retry && r->status == status)
        (void)gh_reply_header(r, "Retry-After", retry);
}

/* ---- forward auth for browsers ---- */

static void put_urlenc(html_t *h, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            put_n(h, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put_n(h, e, 3);
        }
    }
}

void gh_pages_forward_auth_redirect(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (!r->replied || r->status != 401)
        return;
    const char *rd = gh_req_query(r, "rd");
    if (!rd && !(app->cfg.forward_auth_redirect && accepts_html(r)))
        return;
    /* Only a navigation can come back after the login; a POST would lose its body. */
    const char *method = gh_req_header(r, "X-Forwarded-Method");
    if (method && strcasecmp(method, "GET") != 0 && strcasecmp(method, "HEAD") != 0)
        return;
    html_t loc;
    if (!html_init(r, &loc, 3 * RD_MAX + GH_CONFIG_STR + 16))
        return;
    put(&loc, app->cfg.login_url);
    put(&loc, strchr(app->cfg.login_url, '?') ? "&rd=" : "?rd=");
    if (rd && *rd) {
        put_urlenc(&loc, rd);
    } else {
        const char *proto = gh_req_header(r, "X-Forwarded-Proto");
        const char *host = gh_req_header(r, "X-Forwarded-Host");
        const char *uri = gh_req_header(r, "X-Forwarded-Uri");
        if (!host)
            host = gh_req_header(r, "Host");
        html_t u;
        if (!html_init(r, &u, RD_MAX + 1))
            return;
        put(&u, proto && strcasecmp(proto, "https") == 0 ? "https://" : "http://");
        put(&u, host ? host : "");
        put(&u, uri && uri[0] == '/' ? uri : "/");
        put_n(&u, "", 1);
        if (!u.overflow)
            put_urlenc(&loc, u.buf);
    }
    put_n(&loc, "", 1);
    if (loc.overflow)
        return;
    redirect(r, 302, loc.buf);
}

/* ---- /account and its buttons ---- */

static void put_time(html_t *h, int64_t ms)
{
    char t[GH_RFC3339_LEN];
    gh_clock_rfc3339(ms, t);
    put(h, "<time datetime=\"");
    put_esc(h, t);
    put(h, "\">");
    put_esc(h, t);
    put(h, "</time>");
}

static void put_form(html_t *h, const char *action, const char *csrf, const char *label,
                     const char *aria)
{
    put(h, "<form class=\"inline\" method=\"post\" action=\"");
    put_esc(h, action);
    put(h, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    put_esc(h, csrf);
    put(h, "\"><button type=\"submit\"");
    if (aria) {
        put(h, " aria-label=\"");
        put_esc(h, aria);
        put(h, "\"");
    }
    put(h, ">");
    put_esc(h, label);
    put(h, "</button></form>");
}

/* The account page for a checked session; `error` (constant text) is shown when not NULL. */
static void account_page(gh_req_t *r, int status, const gh_session_info_t *cur_session,
                         const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_user_t *u,
                         const char *error)
{
    gh_app_t *app = r->app;
    const gh_session_info_t info = *cur_session;
    const gh_user_t user = *u;
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
    char csrf[CSRF_LEN + 1];
    csrf_token(hash, csrf);
    html_t h;
    if (!html_init(r, &h, 16384 + n * 1024)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    page_begin(&h, "Your account", NULL);
    const char *done = r->method == GH_HTTP_GET ? gh_req_query(r, "done") : NULL;
    if (done && strcmp(done, "revoked") == 0)
        put(&h, "<p class=\"ok\" role=\"status\">The session was logged out.</p>\n");
    if (done && strcmp(done, "password") == 0)
        put(&h, "<p class=\"ok\" role=\"status\">Your password was changed; your other "
                "sessions were logged out.</p>\n");
    if (error) {
        put(&h, "<p class=\"err\" role=\"alert\">");
        put_esc(&h, error);
        put(&h, "</p>\n");
    }
    put(&h, "<p>Logged in as <strong id=\"username\">");
    put_esc(&h, user.username);
    putf(&h, "</strong> (user %llu).</p>\n", (unsigned long long)user.id);
    put(&h, "<p>");
    put_form(&h, "/account/logout", csrf, "Log out", NULL);
    put(&h, " ");
    put_form(&h, "/account/logout-all", csrf, "Log out everywhere", NULL);
    put(&h, "</p>\n<h2 id=\"sessions-title\">Your sessions</h2>\n"
            "<table aria-labelledby=\"sessions-title\"><thead><tr><th scope=\"col\">Session</th>"
            "<th scope=\"col\">Created</th><th scope=\"col\">Last seen</th>"
            "<th scope=\"col\">Expires</th><th scope=\"col\"><span class=\"sr\">Action</span>"
            "</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        bool cur = strcmp(list[i].id, info.id) == 0;
        put(&h, cur ? "<tr class=\"cur\" data-session=\"" : "<tr data-session=\"");
        put_esc(&h, list[i].id);
        put(&h, "\"><td><code>");
        put_esc(&h, list[i].id);
        put(&h, "</code>");
        if (cur)
            put(&h, " (this session)");
        put(&h, "</td><td>");
        put_time(&h, list[i].created_at_ms);
        put(&h, "</td><td>");
        put_time(&h, list[i].last_seen_at_ms);
        put(&h, "</td><td>");
        put_time(&h, list[i].expires_at_ms);
        put(&h, "</td><td>");
        char action[GH_SESSION_ID_LEN + 40], aria[GH_SESSION_ID_LEN + 40];
        snprintf(action, sizeof action, "/account/sessions/%s/delete", list[i].id);
        snprintf(aria, sizeof aria, "Log out session %s", list[i].id);
        put_form(&h, action, csrf, "Log out", aria);
        put(&h, "</td></tr>\n");
    }
    put(&h, "</tbody></table>\n<h2 id=\"pw-title\">Change your password</h2>\n"
            "<p>Changing it logs out every other session.</p>\n"
            "<form method=\"post\" action=\"/account/password\" aria-labelledby=\"pw-title\">"
            "<input type=\"hidden\" name=\"csrf\" value=\"");
    put_esc(&h, csrf);
    put(&h, "\">\n<label for=\"current_password\">Current password</label>\n"
            "<input id=\"current_password\" name=\"current_password\" type=\"password\" "
            "autocomplete=\"current-password\" required>\n"
            "<label for=\"new_password\">New password (8 characters or more)</label>\n"
            "<input id=\"new_password\" name=\"new_password\" type=\"password\" "
            "autocomplete=\"new-password\" minlength=\"8\" required>\n"
            "<div><button type=\"submit\">Change password</button></div>\n</form>\n");
    page_end(&h);
    sodium_memzero(csrf, sizeof csrf);
    page_send(r, status, &h);
}

void gh_pages_account(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (page_session(r, "/account", &info, hash, &user) != 0)
        return;
    account_page(r, 200, &info, hash, &user, NULL);
}

/* The common start of every account button: session, then CSRF. Returns 0 or replied. */
static int button_start(gh_req_t *r, gh_session_info_t *info, uint8_t hash[GH_TOKEN_HASH_LEN],
                        gh_user_t *user)
{
    if (page_session(r, "/account", info, hash, user) != 0)
        return GH_EAUTH;
    if (!csrf_ok(r, hash)) {
        GH_LOG(GH_LOG_WARN, "account form refused", GH_LS("reason", "csrf"));
        message_page(r, 403, "Form refused",
                     "This form is out of date or came from another site. Reload your account "
                     "page and try again.");
        return GH_EAUTH;
    }
    return 0;
}

void gh_pages_account_revoke(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    int rc = gh_session_end_by_id(app->sessions, info.user_id, r->params[0], GH_END_REVOKED);
    if (rc != 0 && rc != GH_ENOTFOUND) { /* already gone is what the user asked for */
        gh_api_reply_err(r, rc);
        return;
    }
    if (strcmp(r->params[0], info.id) == 0) {
        redirect(r, 303, "/login");
        clear_cookie(r);
        return;
    }
    redirect(r, 303, "/account?done=revoked");
}

void gh_pages_account_logout(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    int rc = gh_session_end(app->sessions, hash, GH_END_LOGOUT);
    if (rc != 0 && rc != GH_ENOTFOUND) {
        gh_api_reply_err(r, rc);
        return;
    }
    redirect(r, 303, "/login");
    clear_cookie(r);
}

void gh_pages_account_logout_all(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    size_t n = 0;
    int rc = gh_session_end_user(app->sessions, info.user_id, NULL, GH_END_REVOKED, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    GH_LOG(GH_LOG_INFO, "sessions revoked", GH_LI("user_id", info.user_id), GH_LI("count", n));
    redirect(r, 303, "/login");
    clear_cookie(r);
}

/* Phase 0 checks the session, the CSRF token and the new password and queues the verify of the
 * current one; phase 1 queues the hash of the new one; phase 2 stores it and ends every other
 * session of the user (like PUT /v1/password, whose JSON contract this form leaves alone). */
typedef struct {
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    gh_password_result_t verdict;
    char *new_password; /* in the request pool, wiped with it */
    size_t new_len;
} password_state_t;

static void password_done(void *arg, const gh_password_result_t *res)
{
    gh_req_t *r = arg;
    password_state_t *st = r->state;
    st->verdict = *res;
    gh_req_resume(r);
}

static void password_busy(gh_req_t *r)
{
    message_page(r, 503, "Try again", "The service is busy. Try again in a moment.");
}

void gh_pages_account_password(gh_req_t *r)
{
    gh_app_t *app = r->app;
    r->pool.wipe = true;
    password_state_t *st = r->state;
    int rc;
    if (r->phase == 1) {
        if (st->verdict.result == GH_EBUSY || st->verdict.result == GH_ENOMEM) {
            password_busy(r);
            return;
        }
        if (st->verdict.result != 0) {
            account_page(r, 401, &st->info, st->hash, &st->user,
                         "The current password is wrong. Your password was not changed.");
            return;
        }
        r->phase = 2;
        gh_req_suspend(r);
        rc =
            gh_password_hash_async(app->passwords, st->new_password, st->new_len, password_done, r);
        if (rc != 0) {
            st->verdict.result = rc;
            gh_req_resume(r);
        }
        return;
    }
    if (r->phase == 2) {
        if (st->verdict.result != 0) {
            password_busy(r);
            return;
        }
        rc = gh_user_set_password(app->users, st->user.id, st->verdict.new_hash);
        sodium_memzero(st->verdict.new_hash, sizeof st->verdict.new_hash);
        size_t n = 0;
        if (rc == 0)
            rc = gh_session_end_user(app->sessions, st->user.id, st->hash, GH_END_REVOKED, &n);
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            return;
        }
        GH_LOG(GH_LOG_INFO, "password changed", GH_LI("user_id", st->user.id),
               GH_LI("sessions_revoked", n));
        redirect(r, 303, "/account?done=password");
        return;
    }
    st = gh_pool_alloc(&r->pool, sizeof *st);
    if (!st) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    memset(st, 0, sizeof *st);
    r->state = st;
    if (button_start(r, &st->info, st->hash, &st->user) != 0)
        return;
    const char *cur, *next;
    size_t clen, nlen;
    if (gh_pages_form_field(r, "current_password", &cur, &clen) != 0 ||
        gh_pages_form_field(r, "new_password", &next, &nlen) != 0) {
        account_page(r, 400, &st->info, st->hash, &st->user,
                     "Enter your current password and a new one.");
        return;
    }
    if (!gh_auth_password_valid(next, nlen)) {
        account_page(r, 400, &st->info, st->hash, &st->user,
                     "The new password must be 8 to 1024 bytes of valid UTF-8.");
        return;
    }
    st->new_password = (char *)next; /* decoded into the pool, which is wiped */
    st->new_len = nlen;
    /* The session's user came from the user cache, which holds no hash: read it fresh. */
    if ((rc = gh_user_get_by_id(app->users, st->info.user_id, &st->user)) != 0) {
        gh_api_reply_err(r, rc == GH_ENOTFOUND ? GH_EAUTH : rc);
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    rc =
        gh_password_verify_async(app->passwords, st->user.password_hash, cur,
                                 clen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : clen, password_done, r);
    if (rc != 0) {
        st->verdict.result = rc;
        gh_req_resume(r);
    }
}

/* ---- /ops ---- */

static bool name_in_list(const char *name, const char *list)
{
    size_t nl = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ",");
        const char *e = p;
        size_t en = n;
        while (en && *e == ' ') {
            e++;
            en--;
        }
        while (en && e[en - 1] == ' ')
            en--;
        if (en == nl && memcmp(e, name, nl) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static void put_bytes(html_t *h, uint64_t b)
{
    if (b >= 10ull << 20)
        putf(h, "%.1f MiB", (double)b / (1 << 20));
    else if (b >= 10ull << 10)
        putf(h, "%.1f KiB", (double)b / (1 << 10));
    else
        putf(h, "%llu B", (unsigned long long)b);
}

/* One bar of the chart: label, width proportional to bytes / scale. */
static void svg_bar(html_t *h, int row, const char *label, uint64_t bytes, uint64_t scale,
                    const char *colour)
{
    /* A log scale from 1 KiB: a 10 MiB RSS under a 12 GiB limit must still be a visible bar. */
    double w = 0;
    if (bytes > 1024 && scale > 1024)
        w = 480.0 * log((double)bytes / 1024) / log((double)scale / 1024);
    if (w > 480)
        w = 480;
    int y = 10 + row * 26;
    putf(h, "<text x=\"0\" y=\"%d\" font-size=\"13\">", y + 14);
    put_esc(h, label);
    putf(h, "</text><rect x=\"150\" y=\"%d\" width=\"%.1f\" height=\"18\" fill=\"%s\"><title>", y,
         w, colour);
    put_esc(h, label);
    put(h, ": ");
    put_bytes(h, bytes);
    putf(h, "</title></rect><text x=\"%.1f\" y=\"%d\" font-size=\"12\">", 156 + w, y + 14);
    put_bytes(h, bytes);
    put(h, "</text>\n");
}

/* Memory over time without server state: like the rates, each refresh carries the last
 * HIST_MAX samples (KiB) in its URL, so the chart grows while the page is open. The watchdog's
 * own ring, when there is one, is the longer record (/debug/memory). */
#define HIST_MAX 60
#define HIST_AHEAD 15 /* samples the forecast line looks ahead */

typedef struct {
    uint64_t rss[HIST_MAX], acc[HIST_MAX]; /* KiB, oldest first */
    size_t n;
} history_t;

/* "k,k,k" into out; stops at the first entry that is not a plain number. */
static size_t parse_kib_list(const char *v, uint64_t *out, size_t max)
{
    size_t n = 0;
    while (v && *v && n < max) {
        uint64_t k = 0;
        size_t digits = 0;
        while (*v >= '0' && *v <= '9' && digits < 15) {
            k = k * 10 + (uint64_t)(*v++ - '0');
            digits++;
        }
        if (!digits || (*v && *v != ','))
            break;
        out[n++] = k;
        if (*v == ',')
            v++;
    }
    return n;
}

static void history_load(gh_req_t *r, history_t *hi, uint64_t rss, uint64_t acc)
{
    size_t nr = parse_kib_list(gh_req_query(r, "hr"), hi->rss, HIST_MAX);
    size_t na = parse_kib_list(gh_req_query(r, "ha"), hi->acc, HIST_MAX);
    hi->n = nr < na ? nr : na;
    if (hi->n == HIST_MAX) {
        memmove(hi->rss, hi->rss + 1, (HIST_MAX - 1) * sizeof hi->rss[0]);
        memmove(hi->acc, hi->acc + 1, (HIST_MAX - 1) * sizeof hi->acc[0]);
        hi->n--;
    }
    hi->rss[hi->n] = rss / 1024;
    hi->acc[hi->n] = acc / 1024;
    hi->n++;
}

static void put_kib_list(html_t *h, const uint64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        putf(h, i ? ",%llu" : "%llu", (unsigned long long)v[i]);
}

static void put_duration(html_t *h, double s)
{
    if (s < 120)
        putf(h, "%.0f s", s);
    else if (s < 7200)
        putf(h, "%.0f min", s / 60);
    else if (s < 172800)
        putf(h, "%.1f h", s / 3600);
    else
        putf(h, "%.1f days", s / 86400);
}

/* Least-squares slope of RSS in KiB per sample; 0 with fewer than 3 samples. */
static double history_slope(const history_t *hi)
{
    if (hi->n < 3)
        return 0;
    double sx = 0, sy = 0, sxx = 0, sxy = 0, n = (double)hi->n;
    for (size_t i = 0; i < hi->n; i++) {
        sx += (double)i;
        sy += (double)hi->rss[i];
        sxx += (double)i * (double)i;
        sxy += (double)i * (double)hi->rss[i];
    }
    double d = n * sxx - sx * sx;
    return d > 0 ? (n * sxy - sx * sy) / d : 0;
}

static void history_line(html_t *h, const uint64_t *v, size_t n, double (*x)(size_t, size_t),
                         double ymax, const char *colour)
{
    putf(h, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
    for (size_t i = 0; i < n; i++)
        putf(h, "%.1f,%.1f ", x(i, n), 170.0 - 160.0 * (double)v[i] / ymax);
    put(h, "\"/>");
    /* The newest sample as a dot: a line of one sample would not show at all. */
    putf(h, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x(n - 1, n),
         170.0 - 160.0 * (double)v[n - 1] / ymax, colour);
}

/* The x of sample i of n: the newest sits at 80% of the plot, leaving room for the forecast. */
static double history_x(size_t i, size_t n)
{
    double step = 520.0 / (HIST_MAX - 1);
    return 60.0 + 520.0 - step * (double)(n - 1 - i);
}

static void history_chart(html_t *h, const history_t *hi, uint64_t limit_bytes)
{
    double limit = (double)limit_bytes / 1024, top = 1;
    for (size_t i = 0; i < hi->n; i++) {
        if ((double)hi->rss[i] > top)
            top = (double)hi->rss[i];
        if ((double)hi->acc[i] > top)
            top = (double)hi->acc[i];
    }
    double slope = history_slope(hi), last = (double)hi->rss[hi->n - 1];
    double ahead = last + slope * HIST_AHEAD;
    if (ahead > top)
        top = ahead;
    top *= 1.25;
    bool limit_on_chart = limit > 0 && limit <= top * 4;
    if (limit_on_chart && limit * 1.05 > top)
        top = limit * 1.05;
    put(h, "<h2 id=\"hist-title\">Memory over time</h2>\n"
           "<svg role=\"img\" aria-labelledby=\"hist-title hist-desc\" width=\"720\" "
           "height=\"200\" viewBox=\"0 0 720 200\" xmlns=\"http://www.w3.org/2000/svg\">"
           "<desc id=\"hist-desc\">");
    putf(h,
         "RSS (blue) and accounted bytes (green) over the last %zu samples, 5 seconds apart; "
         "the dashed line is the RSS trend.",
         hi->n);
    put(h, "</desc>\n<line x1=\"60\" y1=\"170\" x2=\"700\" y2=\"170\" stroke=\"#888\"/>"
           "<text x=\"0\" y=\"16\" font-size=\"11\">");
    put_bytes(h, (uint64_t)(top * 1024));
    put(h, "</text><text x=\"0\" y=\"172\" font-size=\"11\">0</text>\n");
    if (limit_on_chart) {
        double y = 170.0 - 160.0 * limit / top;
        putf(h,
             "<line x1=\"60\" y1=\"%.1f\" x2=\"700\" y2=\"%.1f\" stroke=\"#8b0000\"/>"
             "<text x=\"600\" y=\"%.1f\" font-size=\"11\" fill=\"#8b0000\">limit</text>\n",
             y, y, y - 3);
    }
    history_line(h, hi->acc, hi->n, history_x, top, "#3b7d3b");
    history_line(h, hi->rss, hi->n, history_x, top, "#1f4e9c");
    if (hi->n >= 3) {
        double x0 = history_x(hi->n - 1, hi->n), x1 = x0 + 520.0 / (HIST_MAX - 1) * HIST_AHEAD;
        double y0 = 170.0 - 160.0 * last / top, y1 = 170.0 - 160.0 * (ahead < 0 ? 0 : ahead) / top;
        putf(h,
             "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1f4e9c\" "
             "stroke-dasharray=\"5 4\"/>\n",
             x0, y0, x1, y1);
    }
    put(h, "</svg>\n<p id=\"forecast\">");
    if (hi->n < 3)
        put(h, "The trend needs a few refreshes.");
    else if (slope <= 0 || limit <= last)
        put(h, "RSS is not growing.");
    else {
        put(h, "At this trend RSS reaches the limit in about ");
        put_duration(h, (limit - last) / slope * 5.0);
        put(h, ".");
    }
    if (!limit_on_chart)
        put(h, " The limit is far above the chart.");
    put(h, "</p>\n");
}

/* A decimal query parameter; 0 when absent or not a plain number. */
static uint64_t query_u64(gh_req_t *r, const char *name)
{
    const char *v = gh_req_query(r, name);
    uint64_t n = 0;
    if (!v || !*v || strlen(v) > 19)
        return 0;
    for (; *v; v++) {
        if (*v < '0' || *v > '9')
            return 0;
        n = n * 10 + (uint64_t)(*v - '0');
    }
    return n;
}

void gh_pages_ops(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (gh_req_header(r, "Authorization")) {
        if (gh_api_require_admin(r) != 0)
            return;
    } else {
        gh_session_info_t info;
        uint8_t hash[GH_TOKEN_HASH_LEN];
        gh_user_t user;
        if (page_session(r, "/ops", &info, hash, &user) != 0)
            return;
        if (!name_in_list(user.username, app->cfg.ops_users)) {
            message_page(r, 403, "Operations",
                         "Only operators may open this page (--ops-users or the admin token).");
            return;
        }
    }
    gh_session_stats_t st;
    gh_session_stats(app->sessions, &st);
    uint64_t rss = gh_mem_rss_bytes(), accounted = gh_mem_total_bytes();
    uint64_t limit = app->cfg.memory_limit;
    uint64_t scale = rss > limit ? rss : limit;
    html_t h;
    if (!html_init(r, &h, 65536)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    /* Rates without server state: each refresh carries the previous sample in its URL, and
     * this render divides the difference by the time between them. */
    gh_api_totals_t tot;
    gh_api_metrics_totals(app, &tot);
    int64_t now = gh_clock_now_ms();
    history_t *hist = gh_pool_alloc(&r->pool, sizeof *hist);
    html_t refresh;
    if (!hist || !html_init(r, &refresh, 256 + 2 * HIST_MAX * 17)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    history_load(r, hist, rss, accounted);
    putf(&refresh, "/ops?t=%lld&n=%llu&e=%llu&f=%llu&hr=", (long long)now,
         (unsigned long long)tot.requests, (unsigned long long)tot.server_errors,
         (unsigned long long)tot.logins_failed);
    put_kib_list(&refresh, hist->rss, hist->n);
    put(&refresh, "&ha=");
    put_kib_list(&refresh, hist->acc, hist->n);
    put_n(&refresh, "", 1);
    if (refresh.overflow) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    uint64_t prev_t = query_u64(r, "t"), prev_n = query_u64(r, "n"), prev_e = query_u64(r, "e"),
             prev_f = query_u64(r, "f");
    bool have_rates = prev_t > 0 && (int64_t)prev_t < now && prev_n <= tot.requests &&
                      prev_e <= tot.server_errors && prev_f <= tot.logins_failed;
    double secs = have_rates ? (double)(now - (int64_t)prev_t) / 1000.0 : 0;
    page_begin(&h, "Operations", refresh.buf);
    put(&h, "<p>Refreshes every 5 seconds. Bars use a logarithmic scale. The same figures as JSON: "
            "<code>/debug/memory</code>, "
            "<code>/metrics</code>.</p>\n");
    history_chart(&h, hist, limit);
    put(&h, "<h2 id=\"mem-title\">Memory now</h2>\n");
    int rows = 3 + GH_MEM__COUNT;
    putf(&h,
         "<svg role=\"img\" aria-labelledby=\"mem-title mem-desc\" width=\"720\" height=\"%d\" "
         "viewBox=\"0 0 720 %d\" xmlns=\"http://www.w3.org/2000/svg\">"
         "<desc id=\"mem-desc\">Bars of resident memory, accounted bytes per component and the "
         "limit, on one logarithmic scale from 1 KiB.</desc>\n",
         20 + rows * 26, 20 + rows * 26);
    svg_bar(&h, 0, "limit", limit, scale, "#8b0000");
    svg_bar(&h, 1, "RSS", rss, scale, "#1f4e9c");
    svg_bar(&h, 2, "accounted", accounted, scale, "#3b7d3b");
    for (int c = 0; c < GH_MEM__COUNT; c++)
        svg_bar(&h, 3 + c, gh_mem_component_name(c), gh_mem_bytes(c), scale, "#7a9a3a");
    put(&h, "</svg>\n<h2>Figures</h2>\n<table><tbody>\n");
    struct {
        const char *name;
        uint64_t v;
        bool bytes;
    } rowsv[] = {
        {"RSS", rss, true},
        {"accounted", accounted, true},
        {"unexplained (RSS − accounted)", rss > accounted ? rss - accounted : 0, true},
        {"memory limit", limit, true},
        {"session budget", app->cfg.session_memory, true},
        {"session store bytes", st.bytes, true},
        {"sessions active", st.active, false},
        {"sessions created (total)", st.created_total, false},
        {"password queue depth", gh_password_queue_depth(app->passwords), false},
    };
    for (size_t i = 0; i < sizeof rowsv / sizeof rowsv[0]; i++) {
        put(&h, "<tr><th scope=\"row\">");
        put_esc(&h, rowsv[i].name);
        put(&h, "</th><td>");
        if (rowsv[i].bytes)
            put_bytes(&h, rowsv[i].v);
        else
            putf(&h, "%llu", (unsigned long long)rowsv[i].v);
        put(&h, "</td></tr>\n");
    }
    put(&h, "</tbody></table>\n<h2>Requests</h2>\n<table><tbody>\n");
    putf(&h, "<tr><th scope=\"row\">requests (total)</th><td>%llu</td></tr>\n",
         (unsigned long long)tot.requests);
    putf(&h, "<tr><th scope=\"row\">answered 5xx (total)</th><td>%llu</td></tr>\n",
         (unsigned long long)tot.server_errors);
    putf(&h,
         "<tr><th scope=\"row\">logins succeeded / failed (total)</th><td>%llu / %llu</td>"
         "</tr>\n",
         (unsigned long long)tot.logins_ok, (unsigned long long)tot.logins_failed);
    if (have_rates) {
        putf(&h, "<tr><th scope=\"row\">requests per second</th><td>%.2f</td></tr>\n",
             (double)(tot.requests - prev_n) / secs);
        putf(&h, "<tr><th scope=\"row\">5xx per second</th><td>%.2f</td></tr>\n",
             (double)(tot.server_errors - prev_e) / secs);
        putf(&h, "<tr><th scope=\"row\">failed logins per second</th><td>%.2f</td></tr>\n",
             (double)(tot.logins_failed - prev_f) / secs);
    } else {
        put(&h, "<tr><th scope=\"row\">rates</th><td>after the first refresh</td></tr>\n");
    }
    put(&h, "</tbody></table>\n");
    page_end(&h);
    page_send(r, 200, &h);
}
