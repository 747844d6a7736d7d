/*
 * pages.c — /login, /account and /ops as server-rendered HTML, the form routes behind the
 * account page's buttons, the redirect rule of a login, and forward auth's 302 for browsers.
 *
 * Design decision: CSRF protection needs no server state. Every cookie-authenticated form carries
 * a token derived from the session (BLAKE2b keyed by the session's token hash), so any node that
 * knows the session can check it, a reload keeps it valid, and it dies with the session. On top,
 * the cookie is SameSite=Lax and a present Origin (else Referer) must name this host.
 *
 * /ops draws nothing of its own: it renders the reading /debug/memory renders as JSON
 * (gh_api_memory_read in ops.c) — the watchdog's alerts, its forecast and its sample ring — so
 * the page an operator looks at and the document a script reads are the same figures.
 */
#include "api/pages.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "account/audit.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/heap.h"
#include "mem/mem.h"

#define CSRF_LEN 32 /* hex of 16 bytes */
#define RD_MAX 4096 /* an authorization request sent back after the login fits */

/* ---- an HTML buffer in the request pool: bounded, an overflow turns into 503 ---- */

typedef gh_pages_html_t html_t; /* pages.h: shared with admin_pages.c */

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
    ".cur{background:#f3f7ff}form.inline{display:inline;margin:0}"
    "td.ua{overflow-wrap:anywhere;max-width:22rem}.unknown{font-style:italic;color:#555}"
    "code.sid{font-size:.8rem;color:#555}"
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}"
    ".alerts{list-style:none;padding:0}.alert{border-left:6px solid;padding:.4rem .7rem;"
    "margin:.5rem 0;background:#fff8e6}.alert.crit{background:#fdecea}.alert.warn{"
    "border-color:#b26a00}.alert.crit{border-color:#8b0000}.sev{text-transform:uppercase;"
    "font-size:.8rem;font-weight:700}.summary{font-family:ui-monospace,monospace;font-size:.85rem}"
    ".legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3rem 1rem;"
    "font-size:.9rem}.sw{display:inline-block;width:.9rem;height:.9rem;margin-right:.3rem;"
    "vertical-align:middle}.sw.line{height:.2rem}.sw.dash{height:0;border-top:2px dashed;"
    "width:1rem}.note{font-size:.85rem;color:#555}";

/* refresh: NULL, or the URL the page reloads itself to every 5 seconds (no JavaScript). Every
 * page shares one style sheet, inline in the head (no external asset). */
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

#define PAGE_CSP                                                                                   \
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "                        \
    "frame-ancestors 'none'; base-uri 'none'"
/* The pages with passkey buttons load one same-origin script (GET /static/webauthn.js) that
 * talks to this origin's API; nothing inline, nothing from elsewhere. */
#define PAGE_CSP_SCRIPT PAGE_CSP "; script-src 'self'; connect-src 'self'"

static void page_send_csp(gh_req_t *r, int status, html_t *h, const char *csp);

/* Sends the page with headers that keep it out of caches and frames. */
static void page_send(gh_req_t *r, int status, html_t *h)
{
    page_send_csp(r, status, h, PAGE_CSP);
}

/* Passkeys are on when the node has a challenge table (--webauthn-rp-id set). */
static bool passkeys_on(gh_req_t *r)
{
    gh_app_t *app = r->app;
    return app->webauthn_challenges != NULL;
}

static void page_send_csp(gh_req_t *r, int status, html_t *h, const char *csp)
{
    if (h->overflow) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    r->nheaders = 0; /* a page replaces whatever reply came before it */
    if (gh_reply(r, status, "text/html; charset=utf-8", h->buf, h->len) != 0)
        return;
    (void)gh_reply_header(r, "Cache-Control", "no-store");
    (void)gh_reply_header(r, "Content-Security-Policy", csp);
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

bool gh_pages_is_form(gh_req_t *r)
{
    const char *ct = gh_req_header(r, "Content-Type");
    return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
           (ct[33] == '\0' || ct[33] == ';' || ct[33] == ' ');
}

int gh_pages_form_field(gh_req_t *r, const char *name, const char **out, size_t *len)
{
    size_t nl = strlen(name);
    const char *p = r->body && gh_pages_is_form(r) ? r->body : "";
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
    if (gh_api_authenticate(r, info, hash) != 0) {
        if (r->status == 401) {
            char loc[64];
            snprintf(loc, sizeof loc, "/login?rd=%s", back);
            redirect(r, 303, loc);
        }
        return GH_EAUTH;
    }
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_session_user(&a, info, hash, user);
    if (rc == GH_ENOTFOUND) {
        redirect(r, 303, "/login");
        gh_api_clear_session_cookie(r);
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
    if (app->email)
        put(&h, "<p><a href=\"/reset\" id=\"forgot\">Forgot your password?</a></p>\n");
    if (passkeys_on(r)) {
        /* Hidden until the script runs: without it the button could do nothing. */
        put(&h, "<p><button type=\"button\" id=\"passkey-login\" hidden data-rd=\"");
        put_esc(&h, rd ? rd : "");
        put(&h, "\">Sign in with a passkey</button></p>\n"
                "<p class=\"err\" role=\"alert\" id=\"passkey-login-msg\" hidden></p>\n"
                "<script src=\"/static/webauthn.js\" defer></script>\n");
    }
    page_end(&h);
    page_send_csp(r, status, &h, passkeys_on(r) ? PAGE_CSP_SCRIPT : PAGE_CSP);
}

void gh_pages_login(gh_req_t *r)
{
    login_page(r, 200, gh_req_query(r, "rd"), NULL);
}

bool gh_pages_login_is_form(gh_req_t *r)
{
    const char *rd;
    size_t n;
    return gh_pages_is_form(r) && (accepts_html(r) || gh_pages_form_field(r, "rd", &rd, &n) == 0);
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
    if (gh_pages_login_is_form(r))
        login_page(r, 403, NULL, "This form was sent from another site. Log in here instead.");
    else /* a form login of another client: refused all the same, no cookie, the JSON body */
        gh_api_reply_fail(r, GH_EFORBIDDEN, "a form login must come from this site", 0);
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

/* ---- the second step of a login (issue #18) ---- */

void gh_pages_login_second_step(gh_req_t *r, const char *pending, uint32_t methods,
                                const char *message)
{
    html_t h;
    if (!html_init(r, &h, 16384)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    const char *rd = form_rd(r);
    gh_app_t *app = r->app;
    if (rd && !gh_pages_redirect_ok(rd, gh_req_header(r, "Host"), app->cfg.allowed_redirect_hosts))
        rd = NULL;
    page_begin(&h, "Second step", NULL);
    if (message) {
        put(&h, "<p class=\"err\" role=\"alert\" id=\"mfa-error\">");
        put_esc(&h, message);
        put(&h, "</p>\n");
    }
    put(&h, "<p>Your password was right. Enter the 6-digit code from your authenticator app, "
            "or one of your recovery codes.</p>\n");
    put(&h, "<form method=\"post\" action=\"/login/mfa\" aria-label=\"Second step\">\n"
            "<input type=\"hidden\" name=\"rd\" value=\"");
    put_esc(&h, rd ? rd : "");
    put(&h, "\">\n<input type=\"hidden\" name=\"pending\" value=\"");
    put_esc(&h, pending);
    put(&h, "\">\n<label for=\"method\">Method</label>\n<select id=\"method\" name=\"method\">");
    if (methods & GH_PENDING_TOTP)
        put(&h, "<option value=\"totp\" selected>Authenticator code</option>");
    if (methods & GH_PENDING_RECOVERY)
        put(&h, "<option value=\"recovery_code\">Recovery code</option>");
    put(&h, "</select>\n<label for=\"code\">Code</label>\n"
            "<input id=\"code\" name=\"code\" type=\"text\" autocomplete=\"one-time-code\" "
            "required autofocus maxlength=\"64\">\n"
            "<div><button type=\"submit\">Continue</button></div>\n</form>\n");
    bool passkey = passkeys_on(r) && (methods & GH_PENDING_WEBAUTHN);
    if (passkey) {
        put(&h, "<p><button type=\"button\" id=\"passkey-mfa\" hidden data-pending=\"");
        put_esc(&h, pending);
        put(&h, "\" data-rd=\"");
        put_esc(&h, rd ? rd : "");
        put(&h, "\">Use your passkey</button></p>\n"
                "<p class=\"err\" role=\"alert\" id=\"passkey-mfa-msg\" hidden></p>\n"
                "<script src=\"/static/webauthn.js\" defer></script>\n");
    }
    page_end(&h);
    page_send_csp(r, message ? 401 : 200, &h, passkey ? PAGE_CSP_SCRIPT : PAGE_CSP);
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

/* What a user's own events say, in words. */
static const char *activity_text(const gh_audit_event_t *e)
{
    static const struct {
        const char *type, *text;
    } texts[] = {{"login.succeeded", "Signed in"},
                 {"login.failed", "A sign-in failed (wrong password)"},
                 {"login.throttled", "Sign-ins were slowed down after failures"},
                 {"mfa.succeeded", "Second step passed"},
                 {"mfa.failed", "A second step failed"},
                 {"logout", "Signed out"},
                 {"session.revoked", "A session was logged out"},
                 {"password.changed", "Password changed"},
                 {"password.reset", "Password reset"},
                 {"factor.added", "Second factor added"},
                 {"factor.removed", "Second factor removed"},
                 {"recovery_code.used", "Recovery code used"},
                 {"email.changed", "Email address changed"},
                 {"email.verified", "Email address verified"},
                 {"user.created", "Account created"},
                 {"user.disabled", "Account disabled by an administrator"},
                 {"user.enabled", "Account enabled by an administrator"},
                 {"throttle.unlocked", "Sign-in throttle unlocked by an administrator"}};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (strcmp(e->type, texts[i].type) == 0)
            return texts[i].text;
    return strncmp(e->type, "admin.", 6) == 0 ? "An administrator acted on your account" : e->type;
}

/* The user's own recent security events (GET /v1/account/activity's, in words). A failure to
 * read them leaves the section out: the rest of the page still works. */
static void account_activity(gh_req_t *r, html_t *h, uint64_t user_id)
{
    enum { ACTIVITY = 10 };
    gh_audit_event_t *evs = gh_pool_alloc(&r->pool, ACTIVITY * sizeof *evs);
    gh_audit_query_t q;
    size_t n = 0;
    int64_t next;
    memset(&q, 0, sizeof q);
    q.user_id = user_id;
    gh_app_t *app = r->app;
    if (!evs || !app->audit || gh_audit_read(app->audit, &q, evs, ACTIVITY, &n, &next) != 0)
        return;
    put(h, "<h2 id=\"activity-title\">Recent activity</h2>\n<ul id=\"activity\">\n");
    for (size_t i = 0; i < n; i++) {
        put(h, "<li data-type=\"");
        put_esc(h, evs[i].type);
        put(h, "\">");
        put_time(h, evs[i].time_ms);
        put(h, " — ");
        put_esc(h, activity_text(&evs[i]));
        if (evs[i].ip[0]) {
            put(h, " from ");
            put_esc(h, evs[i].ip);
        }
        if (evs[i].user_agent[0]) {
            put(h, " (<span class=\"agent\">");
            put_esc(h, evs[i].user_agent);
            put(h, "</span>)");
        }
        put(h, "</li>\n");
    }
    put(h, "</ul>\n");
    if (n == 0)
        put(h, "<p class=\"note\">No activity yet.</p>\n");
}

/* ---- second factors on /account (issue #18) ---- */

/* A form with the CSRF token and a current-password field, posting to action. */
static void put_proof_form(html_t *h, const char *action, const char *csrf, const char *id,
                           const char *button)
{
    put(h, "<form method=\"post\" action=\"");
    put_esc(h, action);
    put(h, "\"><input type=\"hidden\" name=\"csrf\" value=\"");
    put_esc(h, csrf);
    put(h, "\"><label for=\"");
    put_esc(h, id);
    put(h, "\">Current password</label><input id=\"");
    put_esc(h, id);
    put(h, "\" name=\"current_password\" type=\"password\" autocomplete=\"current-password\" "
           "required><div><button type=\"submit\">");
    put_esc(h, button);
    put(h, "</button></div></form>\n");
}

static void factors_section(gh_req_t *r, html_t *h, const char *csrf, uint64_t user_id)
{
    gh_account_t a;
    gh_account_factors_t f;
    gh_api_account(r, &a);
    put(h, "<h2 id=\"mfa-title\">Second factor</h2>\n");
    if (gh_account_factors_list(&a, &r->pool, user_id, &f) != 0) {
        put(h, "<p class=\"err\">Your second factors cannot be shown right now.</p>\n");
        return;
    }
    size_t confirmed = 0;
    for (size_t i = 0; i < f.n; i++)
        confirmed += f.list[i].confirmed;
    if (f.recovery_used_at_ms) {
        put(h, "<p class=\"err\" role=\"status\" id=\"recovery-notice\">A recovery code was "
               "used to log in on ");
        put_time(h, f.recovery_used_at_ms);
        putf(h, ". %zu recovery codes are left. If it was not you, change your password.</p>\n",
             f.recovery_left);
    }
    if (f.n == 0) {
        put(h, "<p>Logins ask only for your password. Add an authenticator app so that a leaked "
               "password is not enough.</p>\n");
    } else {
        put(h, "<table aria-labelledby=\"mfa-title\" id=\"factors\"><thead><tr>"
               "<th scope=\"col\">Name</th><th scope=\"col\">Type</th>"
               "<th scope=\"col\">Added</th><th scope=\"col\">Last used</th>"
               "<th scope=\"col\"><span class=\"sr\">Action</span></th></tr></thead><tbody>\n");
        for (size_t i = 0; i < f.n; i++) {
            const gh_factor_t *x = &f.list[i];
            putf(h, "<tr data-factor=\"%llu\"><td>", (unsigned long long)x->id);
            put_esc(h, x->name);
            put(h, x->confirmed ? "" : " <em>(not confirmed)</em>");
            put(h, "</td><td>");
            put(h, x->type == GH_FACTOR_WEBAUTHN ? "passkey" : "authenticator app");
            put(h, "</td><td>");
            put_time(h, x->created_at_ms);
            put(h, "</td><td>");
            if (x->last_used_at_ms)
                put_time(h, x->last_used_at_ms);
            else
                put(h, "never");
            put(h, "</td><td><details><summary>Remove</summary>");
            char action[64], id[32];
            snprintf(action, sizeof action, "/account/factors/%llu/delete",
                     (unsigned long long)x->id);
            snprintf(id, sizeof id, "rm-pw-%llu", (unsigned long long)x->id);
            put_proof_form(h, action, csrf, id, "Remove");
            put(h, "</details></td></tr>\n");
        }
        put(h, "</tbody></table>\n");
        if (confirmed) {
            putf(h, "<p id=\"recovery-left\">%zu recovery codes left.</p>\n", f.recovery_left);
            put(h, "<details><summary>New recovery codes</summary><p>The old ones stop working "
                   "and your other sessions are logged out.</p>");
            put_proof_form(h, "/account/recovery-codes", csrf, "rc-pw", "Make new codes");
            put(h, "</details>\n");
        }
    }
    put(h, "<h3>Add an authenticator app</h3>\n");
    put_proof_form(h, "/account/factors/totp", csrf, "totp-pw", "Add authenticator app");
}

/* The account page for a checked session; `error` (constant text) is shown when not NULL. */
/* The passkeys part of /account: the form that adds one (the factor list above shows and removes
 * passkeys like every factor). Adding goes through the JSON API from the one script (the browser
 * offers WebAuthn only to scripts), with the current password as proof; the form stays hidden
 * until the script shows it. */
static void put_passkeys(gh_req_t *r, html_t *h)
{
    const char *done = r->method == GH_HTTP_GET ? gh_req_query(r, "done") : NULL;
    put(h, "<h2 id=\"passkeys-title\">Add a passkey</h2>\n");
    if (done && strcmp(done, "passkey") == 0)
        put(h, "<p class=\"ok\" role=\"status\" id=\"passkey-added\">The passkey was added.</p>\n");
    put(h, "<form id=\"passkey-add\" method=\"post\" hidden aria-labelledby=\"passkeys-title\">\n"
           "<label for=\"passkey-name\">Passkey name</label>\n"
           "<input id=\"passkey-name\" name=\"name\" type=\"text\" maxlength=\"64\" required "
           "value=\"My passkey\">\n"
           "<label for=\"passkey-password\">Current password (to add a passkey)</label>\n"
           "<input id=\"passkey-password\" name=\"current_password\" type=\"password\" "
           "autocomplete=\"current-password\" required>\n"
           "<div><button type=\"submit\">Add a passkey</button></div>\n</form>\n"
           "<p class=\"err\" role=\"alert\" id=\"passkey-add-msg\" hidden></p>\n"
           "<script src=\"/static/webauthn.js\" defer></script>\n");
}

static void account_page(gh_req_t *r, int status, const gh_session_info_t *cur_session,
                         const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_user_t *u,
                         const char *error)
{
    const gh_session_info_t info = *cur_session;
    const gh_user_t user = *u;
    gh_account_t a;
    gh_account_sessions_t sessions;
    gh_api_account(r, &a);
    int rc = gh_account_sessions_list(&a, &r->pool, info.user_id, false, &sessions);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    const gh_session_info_t *list = sessions.list;
    size_t n = sessions.n;
    char csrf[CSRF_LEN + 1];
    csrf_token(hash, csrf);
    html_t h;
    /* A row: a user agent of 160 bytes escapes to at most 960, plus the id twice, times and
     * the button. */
    if (!html_init(r, &h, 16384 + n * 2048 + 10 * 1536 + 4096)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    page_begin(&h, "Your account", NULL);
    const char *done = r->method == GH_HTTP_GET ? gh_req_query(r, "done") : NULL;
    if (done && strcmp(done, "revoked") == 0)
        put(&h, "<p class=\"ok\" role=\"status\">The session was logged out.</p>\n");
    if (done && strcmp(done, "factor-removed") == 0)
        put(&h, "<p class=\"ok\" role=\"status\">The second factor was removed.</p>\n");
    if (done && strcmp(done, "factor") == 0)
        put(&h, "<p class=\"ok\" role=\"status\">Your authenticator app is set up: logins now "
                "ask for its code.</p>\n");
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
    if (user.admin)
        put(&h, "<p><a href=\"/admin\">Admin console</a></p>\n");
    put(&h, "<p>");
    put_form(&h, "/account/logout", csrf, "Log out", NULL);
    put(&h, " ");
    put_form(&h, "/account/logout-all", csrf, "Log out everywhere", NULL);
    put(&h, "</p>\n<h2 id=\"sessions-title\">Your sessions</h2>\n"
            "<table aria-labelledby=\"sessions-title\"><thead><tr><th scope=\"col\">Device</th>"
            "<th scope=\"col\">IP address</th><th scope=\"col\">Created</th>"
            "<th scope=\"col\">Last seen</th><th scope=\"col\">Expires</th>"
            "<th scope=\"col\"><span class=\"sr\">Action</span></th></tr></thead><tbody>\n");
    for (size_t i = 0; i < n; i++) {
        bool cur = strcmp(list[i].id, info.id) == 0;
        const gh_session_client_t *c = &list[i].client;
        put(&h, cur ? "<tr class=\"cur\" data-session=\"" : "<tr data-session=\"");
        put_esc(&h, list[i].id);
        /* The user agent is what the client sent, cleaned by the store (valid UTF-8, no control
         * or bidi character, 160 bytes at most) and escaped here like every other value. */
        put(&h, "\"><td class=\"ua\">");
        if (c->user_agent[0]) {
            put(&h, "<span class=\"agent\">");
            put_esc(&h, c->user_agent);
            put(&h, "</span>");
        } else {
            put(&h, "<span class=\"agent unknown\">unknown device</span>");
        }
        if (cur)
            put(&h, " <strong>(this session)</strong>");
        put(&h, "<br><code class=\"sid\">");
        put_esc(&h, list[i].id);
        put(&h, "</code></td><td class=\"ip\">");
        put_esc(&h, c->ip[0] ? c->ip : "unknown");
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
    put(&h, "</tbody></table>\n");
    factors_section(r, &h, csrf, info.user_id);
    account_activity(r, &h, info.user_id);
    put(&h, "<h2 id=\"pw-title\">Change your password</h2>\n"
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
    if (passkeys_on(r))
        put_passkeys(r, &h);
    page_end(&h);
    sodium_memzero(csrf, sizeof csrf);
    page_send_csp(r, status, &h, passkeys_on(r) ? PAGE_CSP_SCRIPT : PAGE_CSP);
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
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_sessions_revoke(&a, info.user_id, r->params[0]);
    if (rc != 0 && rc != GH_ENOTFOUND) { /* already gone is what the user asked for */
        gh_api_reply_err(r, rc);
        return;
    }
    if (strcmp(r->params[0], info.id) == 0) {
        redirect(r, 303, "/login");
        gh_api_clear_session_cookie(r);
        return;
    }
    redirect(r, 303, "/account?done=revoked");
}

void gh_pages_account_logout(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_logout(&a, hash);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    redirect(r, 303, "/login");
    gh_api_clear_session_cookie(r);
}

void gh_pages_account_logout_all(gh_req_t *r)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t n = 0;
    int rc = gh_account_sessions_revoke_all(&a, info.user_id, false, &n);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    redirect(r, 303, "/login");
    gh_api_clear_session_cookie(r);
}

/* The account service's password change (the workflow PUT /v1/password runs too), rendered as
 * pages: phase 0 checks the session and the CSRF token, reads the form and begins; each later
 * phase continues it, submitting again while the service asks (the hash of the new password). */
typedef struct {
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    gh_account_password_t pw;
} password_state_t;

/* The password pool's completion callback (a pool worker): the handler goes on. */
static void password_resume(void *arg)
{
    gh_req_resume(arg);
}

static void password_busy(gh_req_t *r)
{
    message_page(r, 503, "Try again", "The service is busy. Try again in a moment.");
}

/* A failed step as the page shows it; anything else is the contract's error body. */
static void password_failed(gh_req_t *r, password_state_t *st, int rc)
{
    if (rc == GH_EBUSY || rc == GH_ENOMEM)
        password_busy(r);
    else if (rc == GH_ECURRENT)
        account_page(r, 401, &st->info, st->hash, &st->user,
                     "The current password is wrong. Your password was not changed.");
    else if (rc == GH_EPASSWORD)
        account_page(r, 400, &st->info, st->hash, &st->user,
                     "The new password must be 8 to 1024 bytes of valid UTF-8.");
    else
        gh_api_reply_err(r, rc);
}

void gh_pages_account_password(gh_req_t *r)
{
    r->pool.wipe = true;
    password_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc;
    if (r->phase == 0) {
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
        /* Both were decoded into the request pool, which lives as long as the workflow and is
         * wiped. */
        rc = gh_account_password_begin(&a, &st->pw, st->info.user_id, st->hash, cur, clen, next,
                                       nlen);
        if (rc != 0) {
            password_failed(r, st, rc);
            return;
        }
    } else {
        rc = gh_account_password_continue(&a, &st->pw);
        if (rc == 0) {
            redirect(r, 303, "/account?done=password");
            return;
        }
        if (rc != GH_ACCOUNT_PENDING) {
            password_failed(r, st, rc);
            return;
        }
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->pw.job, password_resume, r))
        gh_req_resume(r); /* not queued: the next phase reports why */
}

/* ---- second-factor buttons of /account ---- */

static void confirm_form(html_t *h, const char *csrf, uint64_t id)
{
    putf(h,
         "<form method=\"post\" action=\"/account/factors/totp/%llu/confirm\" "
         "aria-label=\"Confirm\"><input type=\"hidden\" name=\"csrf\" value=\"",
         (unsigned long long)id);
    put_esc(h, csrf);
    put(h, "\"><label for=\"code\">The 6-digit code the app shows now</label>"
           "<input id=\"code\" name=\"code\" type=\"text\" inputmode=\"numeric\" "
           "autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\" maxlength=\"6\" required>"
           "<div><button type=\"submit\">Confirm</button></div></form>\n");
}

static void codes_page(gh_req_t *r, const char (*codes)[GH_RECOVERY_CODE_LEN + 1], size_t n,
                       const char *intro)
{
    html_t h;
    if (!html_init(r, &h, 8192)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    page_begin(&h, "Recovery codes", NULL);
    put(&h, "<p class=\"ok\" role=\"status\">");
    put_esc(&h, intro);
    put(&h, "</p>\n<p>Keep these recovery codes somewhere safe. Each one logs you in once if "
            "you lose your device. <strong>They are shown only now.</strong></p>\n"
            "<ul id=\"recovery-codes\">");
    for (size_t i = 0; i < n; i++) {
        put(&h, "<li><code>");
        put_esc(&h, codes[i]);
        put(&h, "</code></li>");
    }
    put(&h, "</ul>\n<p><a href=\"/account\">Back to your account</a></p>\n");
    page_end(&h);
    page_send(r, 200, &h);
}

typedef enum { PAGE_ENROL, PAGE_REMOVE, PAGE_RECOVERY } factor_action_t;

typedef struct {
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    gh_account_proof_t proof;
    factor_action_t action;
    uint64_t factor_id;
} factor_state_t;

static void factor_action(gh_req_t *r, gh_account_t *a, factor_state_t *st)
{
    int rc;
    size_t revoked;
    if (st->action == PAGE_REMOVE) {
        rc = gh_account_factor_remove(a, st->info.user_id, st->factor_id, st->hash, &revoked);
        if (rc == GH_ENOTFOUND)
            account_page(r, 404, &st->info, st->hash, &st->user, "No such second factor.");
        else if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            redirect(r, 303, "/account?done=factor-removed");
        return;
    }
    if (st->action == PAGE_RECOVERY) {
        char codes[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
        rc = gh_account_recovery_regenerate(a, st->info.user_id, st->hash, codes, &revoked);
        if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            codes_page(r, (const char(*)[GH_RECOVERY_CODE_LEN + 1]) codes, GH_RECOVERY_CODES,
                       "New recovery codes were made; the old ones no longer work.");
        sodium_memzero(codes, sizeof codes);
        return;
    }
    gh_account_totp_enrol_t *e = gh_pool_alloc(&r->pool, sizeof *e);
    if (!e) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    if ((rc = gh_account_totp_enrol(a, &st->user, NULL, e)) != 0) {
        if (rc == GH_ELIMIT)
            account_page(r, 400, &st->info, st->hash, &st->user,
                         "You have as many second factors as an account may have.");
        else
            gh_api_reply_err(r, rc);
        return;
    }
    char *svg = gh_api_qr_svg(&r->pool, e->uri);
    char csrf[CSRF_LEN + 1];
    csrf_token(st->hash, csrf);
    html_t h;
    if (!html_init(r, &h, 16384 + (svg ? strlen(svg) : 0))) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    page_begin(&h, "Add an authenticator app", NULL);
    put(&h, "<p>Scan this QR code with your authenticator app, then enter the code it shows.</p>"
            "\n<div id=\"qr\" role=\"img\" aria-label=\"QR code of your new authenticator "
            "secret\">");
    put(&h, svg ? svg : "");
    put(&h, "</div>\n<p>Or type this secret in: <code id=\"totp-secret\">");
    put_esc(&h, e->secret_b32);
    put(&h, "</code></p>\n");
    confirm_form(&h, csrf, e->factor.id);
    page_end(&h);
    sodium_memzero(e->secret_b32, sizeof e->secret_b32);
    sodium_memzero(csrf, sizeof csrf);
    page_send(r, 200, &h);
}

static void factor_page(gh_req_t *r, factor_action_t action)
{
    r->pool.wipe = true;
    factor_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    if (r->phase == 1) {
        int rc = gh_account_proof_continue(&a, &st->proof);
        if (rc == GH_ECURRENT)
            account_page(r, 401, &st->info, st->hash, &st->user,
                         "The current password is wrong. Nothing was changed.");
        else if (rc == GH_EBUSY || rc == GH_ENOMEM)
            password_busy(r);
        else if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            factor_action(r, &a, st);
        return;
    }
    if (!(st = gh_pool_alloc(&r->pool, sizeof *st))) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    memset(st, 0, sizeof *st);
    r->state = st;
    st->action = action;
    if (button_start(r, &st->info, st->hash, &st->user) != 0)
        return;
    if (action == PAGE_REMOVE && gh_api_param_id(r, 0, &st->factor_id) != 0)
        return;
    const char *pw;
    size_t plen;
    if (gh_pages_form_field(r, "current_password", &pw, &plen) != 0) {
        account_page(r, 400, &st->info, st->hash, &st->user, "Enter your current password.");
        return;
    }
    int rc = gh_account_proof_begin(&a, &st->proof, st->info.user_id, pw, plen, NULL, 0);
    if (rc != 0) {
        gh_api_reply_err(r, rc == GH_EAUTH ? GH_EUNAUTH : rc);
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->proof.job, password_resume, r))
        gh_req_resume(r); /* not queued: the next phase reports why */
}

void gh_pages_account_totp(gh_req_t *r)
{
    factor_page(r, PAGE_ENROL);
}

void gh_pages_account_factor_delete(gh_req_t *r)
{
    factor_page(r, PAGE_REMOVE);
}

void gh_pages_account_recovery(gh_req_t *r)
{
    factor_page(r, PAGE_RECOVERY);
}

void gh_pages_account_totp_confirm(gh_req_t *r)
{
    r->pool.wipe = true;
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_user_t user;
    if (button_start(r, &info, hash, &user) != 0)
        return;
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return;
    const char *code = "";
    size_t clen = 0;
    GH_IGNORE(gh_pages_form_field(r, "code", &code, &clen));
    gh_account_t a;
    gh_api_account(r, &a);
    gh_factor_t *f = gh_pool_alloc(&r->pool, sizeof *f);
    char codes[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
    size_t n = 0;
    int rc =
        f ? gh_account_totp_confirm(&a, info.user_id, id, code, clen, f, codes, &n) : GH_ENOMEM;
    if (rc == GH_ECODE) {
        char csrf[CSRF_LEN + 1];
        csrf_token(hash, csrf);
        html_t h;
        if (!html_init(r, &h, 8192)) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        page_begin(&h, "Add an authenticator app", NULL);
        put(&h, "<p class=\"err\" role=\"alert\">That code is not right. Enter the code the "
                "app shows now.</p>\n");
        confirm_form(&h, csrf, id);
        page_end(&h);
        sodium_memzero(csrf, sizeof csrf);
        page_send(r, 401, &h);
        return;
    }
    if (rc == GH_ENOTFOUND) {
        account_page(r, 404, &info, hash, &user, "No such second factor.");
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    if (n)
        codes_page(r, (const char(*)[GH_RECOVERY_CODE_LEN + 1]) codes, n,
                   "Your authenticator app is set up: logins now ask for its code.");
    else
        redirect(r, 303, "/account?done=factor");
    sodium_memzero(codes, sizeof codes);
}

/* ---- /ops ---- */

static void put_bytes(html_t *h, double b)
{
    char t[32];
    put(h, gh_watch_fmt_bytes(b, t, sizeof t));
}

static void put_duration(html_t *h, double s)
{
    char t[32];
    put(h, gh_watch_fmt_duration(s, t, sizeof t));
}

/* A rate (per second) the way a person reads it at a glance. */
static void put_rate(html_t *h, double v)
{
    if (!isfinite(v) || v < 0)
        v = 0;
    putf(h, v < 10 ? "%.2f" : "%.0f", v);
}

/* Colours of the components' areas (Tableau 10, distinct for common colour blindness), RSS,
 * the limit and the forecast. */
static const char *const component_colour[] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#bab0ac", "#9c755f", "#86bcb6", "#d37295",
    "#a0cbe8", "#8cd17d", "#b6992d", "#499894", "#f1ce63", /* the oidc_* components */
};
/* One colour per component: a component added without one would draw with none. */
_Static_assert(sizeof component_colour / sizeof component_colour[0] == GH_MEM__COUNT,
               "a colour per component");
#define RSS_COLOUR "#1b1b1b"
#define LIMIT_COLOUR "#8b0000"
#define FORECAST_COLOUR "#c0392b"

/* One bar of the "memory now" chart: label, width proportional to bytes / scale. */
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
    put_bytes(h, (double)bytes);
    putf(h, "</title></rect><text x=\"%.1f\" y=\"%d\" font-size=\"12\">", 156 + w, y + 14);
    put_bytes(h, (double)bytes);
    put(h, "</text>\n");
}

/* ---- the alerts ---- */

static void ops_alerts(html_t *h, const gh_api_memory_t *m, int64_t now_ms)
{
    put(h, "<h2 id=\"alerts-title\">Alerts</h2>\n");
    if (!m->watching) {
        put(h, "<p id=\"no-alerts\">The memory watchdog is not running on this node: no alerts "
               "and no forecast.</p>\n");
        return;
    }
    const gh_watch_status_t *w = &m->watch;
    int firing = 0;
    for (int a = 0; a < GH_WATCH__NALERTS; a++)
        firing += w->severity[a] != GH_WATCH_OK;
    if (!firing) {
        put(h, "<p class=\"ok\" id=\"no-alerts\">No alerts: memory is below ");
        putf(h, "%.0f%%", w->warn_ratio * 100);
        put(h, " of the limit, not forecast to reach it within ");
        put_duration(h, (double)w->horizon_ms / 1000.0);
        put(h, ", and no part of it grows while sessions stay flat.</p>\n");
        return;
    }
    put(h, "<ul class=\"alerts\" id=\"alerts\" aria-labelledby=\"alerts-title\">\n");
    /* Critical first: at 6 a.m. the first line is the one that matters. */
    for (int sev = GH_WATCH_CRITICAL; sev >= GH_WATCH_WARNING; sev--) {
        for (int a = 0; a < GH_WATCH__NALERTS; a++) {
            if ((int)w->severity[a] != sev)
                continue;
            bool crit = sev == GH_WATCH_CRITICAL;
            put(h, crit ? "<li class=\"alert crit\" role=\"alert\">" : "<li class=\"alert warn\">");
            put(h, "<strong class=\"name\">");
            put_esc(h, gh_watch_alert_names[a]);
            put(h, "</strong> <span class=\"sev\">");
            put(h, gh_watch_severity_name(w->severity[a]));
            put(h, "</span>");
            if (w->since_ms[a]) {
                put(h, " since ");
                char t[GH_RFC3339_LEN];
                gh_clock_rfc3339(w->since_ms[a], t);
                put(h, "<time datetime=\"");
                put_esc(h, t);
                put(h, "\">");
                put_esc(h, t);
                put(h, "</time> (");
                put_duration(h, now_ms > w->since_ms[a] ? (double)(now_ms - w->since_ms[a]) / 1000.0
                                                        : 0);
                put(h, ")");
            }
            put(h, "<br><span class=\"summary\">");
            put_esc(h, w->alert_summary[a]);
            put(h, "</span></li>\n");
        }
    }
    put(h, "</ul>\n");
}

/* ---- memory over time: the watchdog's ring ---- */

typedef struct {
    double x0, x1, y0, y1; /* the plot area */
    double t0, t1;         /* seconds relative to the newest sample at x0 and x1 */
    double top;            /* bytes at y0 */
} plot_t;

static double plot_x(const plot_t *p, double t)
{
    return p->x0 + (t - p->t0) / (p->t1 - p->t0) * (p->x1 - p->x0);
}

static double plot_y(const plot_t *p, double v)
{
    double y = p->y1 - v / p->top * (p->y1 - p->y0);
    return y < p->y0 ? p->y0 : y > p->y1 ? p->y1 : y;
}

static double sample_t(const gh_api_memory_t *m, size_t i)
{
    return (double)(m->history[i].t_ms - m->history[m->nhistory - 1].t_ms) / 1000.0;
}

/* Sum of components 0..upto (inclusive) of sample i; upto -1 gives 0. */
static double stacked(const gh_api_memory_t *m, size_t i, int upto)
{
    double v = 0;
    for (int c = 0; c <= upto; c++)
        v += (double)m->history[i].component_bytes[c];
    return v;
}

/* The forecast line: from the trend's level now to the limit, or to the chart's edge. */
typedef struct {
    bool on;
    double level, slope, eta, t_end, v_end;
    bool reaches; /* the limit is reached within the chart */
} forecast_line_t;

static forecast_line_t forecast_line(const gh_api_memory_t *m, double ahead)
{
    forecast_line_t f = {0};
    const gh_watch_status_t *w = &m->watch;
    if (!m->watching || !(w->forecast_slope > 0) || !isfinite(w->eta_s))
        return f;
    f.on = true;
    f.level = w->forecast_level;
    f.slope = w->forecast_slope;
    f.eta = w->eta_s;
    f.reaches = f.eta <= ahead;
    f.t_end = f.reaches ? f.eta : ahead;
    f.v_end = f.level + f.slope * f.t_end;
    return f;
}

static void ops_history_chart(html_t *h, const gh_api_memory_t *m)
{
    put(h, "<h2 id=\"hist-title\">Memory over time</h2>\n");
    if (!m->watching || m->nhistory == 0) {
        put(h, "<p id=\"no-history\">");
        put(h, m->watching ? "The chart starts with the watchdog's first sample, within "
                             "--watch-interval of the start."
                           : "No watchdog, no history.");
        put(h, "</p>\n");
        return;
    }
    const gh_watch_status_t *w = &m->watch;
    /* The x axis is the watchdog's window once its ring is full (a scale that stays put from
     * one refresh to the next); until then, what has been sampled. */
    double window = (double)w->window_ms / 1000.0, span = -sample_t(m, 0);
    if (window < span || w->samples < w->capacity)
        window = span;
    if (window <= 0)
        window = 1;
    plot_t p = {.x0 = 70, .x1 = 700, .y0 = 16, .y1 = 216, .t0 = -window, .t1 = window / 3};
    forecast_line_t f = forecast_line(m, p.t1);
    /* Components with bytes at some point are stacked; the top of the stack is the accounted
     * total, and the gap up to the RSS line is what nothing accounts for. */
    bool shown[GH_MEM__COUNT] = {0};
    double top = 1 << 20;
    for (size_t i = 0; i < m->nhistory; i++) {
        double rss = (double)m->history[i].rss_bytes, acc = stacked(m, i, GH_MEM__COUNT - 1);
        top = rss > top ? rss : top;
        top = acc > top ? acc : top;
        for (int c = 0; c < GH_MEM__COUNT; c++)
            shown[c] |= m->history[i].component_bytes[c] > 0;
    }
    if (f.on && f.v_end > top)
        top = f.v_end;
    top *= 1.1;
    double limit = (double)m->limit;
    bool limit_shown = limit > 0 && limit <= top * 4;
    if (limit_shown && limit * 1.05 > top)
        top = limit * 1.05;
    p.top = top;

    char a[32], b[32], c[32];
    put(h, "<svg role=\"img\" aria-labelledby=\"hist-title hist-desc\" width=\"720\" "
           "height=\"246\" viewBox=\"0 0 720 246\" xmlns=\"http://www.w3.org/2000/svg\">"
           "<desc id=\"hist-desc\">");
    putf(h, "Memory over the last %s, %zu samples of the watchdog: RSS ",
         gh_watch_fmt_duration(span, a, sizeof a), m->nhistory);
    put_bytes(h, (double)m->history[m->nhistory - 1].rss_bytes);
    put(h, " (black line) and accounted bytes ");
    put_bytes(h, stacked(m, m->nhistory - 1, GH_MEM__COUNT - 1));
    put(h, " stacked by component (coloured areas); the limit ");
    put_bytes(h, limit);
    put(h, limit_shown ? " (red line)" : " (above the chart)");
    if (f.on)
        putf(h, "; the dashed line is the watchdog's forecast, reaching the limit in %s",
             gh_watch_fmt_duration(f.eta, b, sizeof b));
    put(h, ".</desc>\n");
    /* Axes and their labels. */
    putf(h,
         "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#888\"/>"
         "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#bbb\" "
         "stroke-dasharray=\"2 3\"/>\n",
         p.x0, p.y1, p.x1, p.y1, plot_x(&p, 0), p.y0, plot_x(&p, 0), p.y1);
    putf(h, "<text x=\"0\" y=\"%.0f\" font-size=\"11\">", p.y0 + 4);
    put_bytes(h, top);
    putf(h, "</text><text x=\"0\" y=\"%.0f\" font-size=\"11\">0</text>\n", p.y1 + 3);
    putf(h,
         "<text x=\"%.0f\" y=\"236\" font-size=\"11\">-%s</text>"
         "<text x=\"%.1f\" y=\"236\" font-size=\"11\" text-anchor=\"middle\">now</text>"
         "<text x=\"%.0f\" y=\"236\" font-size=\"11\" text-anchor=\"end\">+%s</text>\n",
         p.x0, gh_watch_fmt_duration(window, a, sizeof a), plot_x(&p, 0), p.x1,
         gh_watch_fmt_duration(p.t1, c, sizeof c));
    /* The stacked areas, bottom component first. */
    int below = -1;
    for (int k = 0; k < GH_MEM__COUNT; k++) {
        if (!shown[k])
            continue;
        putf(h, "<polygon class=\"area\" fill=\"%s\" fill-opacity=\"0.85\" points=\"",
             component_colour[k]);
        for (size_t i = 0; i < m->nhistory; i++)
            putf(h, "%.1f,%.1f ", plot_x(&p, sample_t(m, i)), plot_y(&p, stacked(m, i, k)));
        for (size_t i = m->nhistory; i-- > 0;)
            putf(h, "%.1f,%.1f ", plot_x(&p, sample_t(m, i)), plot_y(&p, stacked(m, i, below)));
        put(h, "\"><title>");
        put(h, gh_mem_component_name((gh_mem_component_t)k));
        put(h, "</title></polygon>\n");
        below = k;
    }
    putf(h, "<polyline class=\"rss\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
         RSS_COLOUR);
    for (size_t i = 0; i < m->nhistory; i++)
        putf(h, "%.1f,%.1f ", plot_x(&p, sample_t(m, i)),
             plot_y(&p, (double)m->history[i].rss_bytes));
    put(h, "\"><title>RSS</title></polyline>");
    /* The newest sample as a dot: the line of a node that has just started has one point. */
    putf(h, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", plot_x(&p, 0),
         plot_y(&p, (double)m->history[m->nhistory - 1].rss_bytes), RSS_COLOUR);
    if (limit_shown) {
        double y = plot_y(&p, limit);
        putf(h,
             "<line class=\"limit\" x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" "
             "stroke=\"%s\" stroke-width=\"1.5\"/><text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" "
             "fill=\"%s\">limit</text>\n",
             p.x0, y, p.x1, y, LIMIT_COLOUR, p.x0 + 4, y - 4, LIMIT_COLOUR);
    }
    if (f.on) {
        double x0 = plot_x(&p, 0), y0 = plot_y(&p, f.level);
        double x1 = plot_x(&p, f.t_end), y1 = plot_y(&p, f.v_end);
        putf(h,
             "<line class=\"forecast\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
             "stroke=\"%s\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>",
             x0, y0, x1, y1, FORECAST_COLOUR);
        if (f.reaches)
            putf(h, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>", x1, y1,
                 FORECAST_COLOUR);
        putf(h,
             "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"600\" fill=\"%s\" "
             "text-anchor=\"end\">limit in %s</text>\n",
             x1 - 4, y1 - 8 < p.y0 + 10 ? p.y0 + 10 : y1 - 8, FORECAST_COLOUR,
             gh_watch_fmt_duration(f.eta, b, sizeof b));
    }
    put(h, "</svg>\n");

    /* The legend, with today's values: readable without the colours. */
    put(h, "<ul class=\"legend\" aria-label=\"Chart legend\">");
    putf(h, "<li><span class=\"sw line\" style=\"background:%s\"></span>RSS ", RSS_COLOUR);
    put_bytes(h, (double)m->history[m->nhistory - 1].rss_bytes);
    put(h, "</li>");
    for (int k = GH_MEM__COUNT - 1; k >= 0; k--) {
        if (!shown[k])
            continue;
        putf(h, "<li><span class=\"sw\" style=\"background:%s\"></span>", component_colour[k]);
        put(h, gh_mem_component_name((gh_mem_component_t)k));
        put(h, " ");
        put_bytes(h, (double)m->history[m->nhistory - 1].component_bytes[k]);
        put(h, "</li>");
    }
    putf(h, "<li><span class=\"sw line\" style=\"background:%s\"></span>limit ", LIMIT_COLOUR);
    put_bytes(h, limit);
    put(h, limit_shown ? "" : " (above the chart)");
    put(h, "</li>");
    if (f.on)
        putf(h, "<li><span class=\"sw dash\" style=\"border-color:%s\"></span>forecast</li>",
             FORECAST_COLOUR);
    put(h, "</ul>\n<p class=\"note\">The gap between the top of the coloured areas and the RSS "
           "line is memory nothing accounts for (unexplained).</p>\n");
}

/* The watchdog's forecast in one sentence (its slope, over how long, the ETA, what grows). */
static void ops_forecast(html_t *h, const gh_api_memory_t *m)
{
    if (!m->watching)
        return;
    const gh_watch_status_t *w = &m->watch;
    put(h, "<p id=\"forecast\"><strong>Forecast:</strong> ");
    if (w->forecast_slope > 0 && isfinite(w->eta_s)) {
        put(h, "RSS grows +");
        put_bytes(h, w->forecast_slope);
        put(h, "/s steadily over the last ");
        put_duration(h, (double)w->forecast_span_ms / 1000.0);
        put(h, "; at this rate it reaches the limit ");
        put_bytes(h, (double)w->limit_bytes);
        put(h, w->eta_s > 0 ? " in <strong class=\"eta\">" : " <strong class=\"eta\">");
        if (w->eta_s > 0)
            put_duration(h, w->eta_s);
        else
            put(h, "now");
        put(h, "</strong>.");
    } else if (w->samples < w->capacity / 2) {
        putf(h,
             "none yet: a trend is trusted after half the window (%zu of %zu samples so "
             "far).",
             w->samples, w->capacity / 2);
    } else {
        put(h, "RSS is not growing steadily: no exhaustion in sight.");
    }
    if (w->growing[0]) {
        put(h, " Fastest growing part: <strong class=\"growing\">");
        put_esc(h, w->growing);
        put(h, "</strong> +");
        put_bytes(h, w->growing_slope);
        put(h, "/s.");
    }
    put(h, "</p>\n");
}

/* The heap profiler's fastest growing call stacks over the window, under the memory chart. */
static void ops_heap_stacks(html_t *h, const gh_api_memory_t *m)
{
    if (!m->watching)
        return;
    const gh_watch_status_t *w = &m->watch;
    put(h, "<p id=\"heap-stacks\"><strong>Growing call stacks:</strong> ");
    if (!w->heap_profile) {
        put(h, "the heap profiler is ");
        put_esc(h, gh_heap_state());
        put(h, ".</p>\n");
        return;
    }
    if (w->nstacks == 0) {
        put(h, w->stacks_span_s > 0 ? "none: no call stack's heap grows steadily."
                                    : "none yet: stacks are ranked after half the window.");
        put(h, " The live profile: <code>/debug/heap</code>.</p>\n");
        return;
    }
    put(h, "</p>\n<ol class=\"heap-stacks\">\n");
    for (size_t i = 0; i < w->nstacks; i++) {
        char where[GH_WATCH_STACK_LEN];
        gh_heap_stack_headline(w->stacks[i].stack, 3, where, sizeof where);
        putf(h, "<li><span class=\"share\">%.0f%%</span> +", 100 * w->stacks[i].share);
        put_bytes(h, w->stacks[i].slope);
        put(h, "/s <code class=\"stack\">");
        put_esc(h, where);
        put(h, "</code></li>\n");
    }
    put(h, "</ol>\n");
}

static void ops_figures(html_t *h, const gh_api_memory_t *m)
{
    put(h, "<h2 id=\"fig-title\">Figures</h2>\n<table aria-labelledby=\"fig-title\"><tbody>\n");
    struct {
        const char *name;
        uint64_t v;
        bool bytes;
    } rows[] = {
        {"RSS", m->rss, true},
        {"accounted", m->accounted, true},
        {"unexplained (RSS − accounted)", m->rss > m->accounted ? m->rss - m->accounted : 0, true},
        {"memory limit", m->limit, true},
        {"session budget", m->session_budget, true},
        {"session store bytes", m->sessions.bytes, true},
        {"sessions active", m->sessions.active, false},
        {"sessions created (total)", m->sessions.created_total, false},
        {"session clients kept", m->clients.entries, false},
        {"session client bytes", m->clients.bytes, true},
        {"password queue depth", m->password_queue_depth, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        put(h, "<tr><th scope=\"row\">");
        put_esc(h, rows[i].name);
        put(h, "</th><td>");
        if (rows[i].bytes)
            put_bytes(h, (double)rows[i].v);
        else
            putf(h, "%llu", (unsigned long long)rows[i].v);
        put(h, "</td></tr>\n");
    }
    put(h, "</tbody></table>\n");
}

static void ops_requests(html_t *h, const gh_api_memory_t *m)
{
    put(h, "<h2 id=\"req-title\">Requests</h2>\n<table aria-labelledby=\"req-title\"><tbody>\n");
    if (m->watching) {
        const gh_watch_status_t *w = &m->watch;
        struct {
            const char *name;
            double v;
        } rates[] = {
            {"requests per second", w->request_rate},
            {"5xx per second", w->server_error_rate},
            {"failed logins per second", w->failed_login_rate},
            {"rate-limited logins per second", w->rate_limited_rate},
        };
        for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
            put(h, "<tr><th scope=\"row\">");
            put(h, rates[i].name);
            put(h, " (last minute)</th><td>");
            put_rate(h, rates[i].v);
            put(h, "</td></tr>\n");
        }
    }
    putf(h, "<tr><th scope=\"row\">requests (total)</th><td>%llu</td></tr>\n",
         (unsigned long long)m->totals.requests);
    putf(h, "<tr><th scope=\"row\">answered 5xx (total)</th><td>%llu</td></tr>\n",
         (unsigned long long)m->totals.server_errors);
    putf(h,
         "<tr><th scope=\"row\">logins succeeded / failed (total)</th><td>%llu / %llu</td>"
         "</tr>\n",
         (unsigned long long)m->totals.logins_ok, (unsigned long long)m->totals.logins_failed);
    put(h, "</tbody></table>\n");
}

static void ops_now(html_t *h, const gh_api_memory_t *m)
{
    uint64_t scale = m->rss > m->limit ? m->rss : m->limit;
    put(h, "<h2 id=\"mem-title\">Memory now</h2>\n");
    int rows = 3 + GH_MEM__COUNT;
    putf(h,
         "<svg role=\"img\" aria-labelledby=\"mem-title mem-desc\" width=\"720\" height=\"%d\" "
         "viewBox=\"0 0 720 %d\" xmlns=\"http://www.w3.org/2000/svg\">"
         "<desc id=\"mem-desc\">Bars of resident memory, accounted bytes per component and the "
         "limit, on one logarithmic scale from 1 KiB.</desc>\n",
         20 + rows * 26, 20 + rows * 26);
    svg_bar(h, 0, "limit", m->limit, scale, LIMIT_COLOUR);
    svg_bar(h, 1, "RSS", m->rss, scale, "#1f4e9c");
    svg_bar(h, 2, "accounted", m->accounted, scale, "#3b7d3b");
    for (int c = 0; c < GH_MEM__COUNT; c++)
        svg_bar(h, 3 + c, gh_mem_component_name((gh_mem_component_t)c), m->component_bytes[c],
                scale, component_colour[c]);
    put(h, "</svg>\n");
}

void gh_pages_ops(gh_req_t *r)
{
    if (gh_req_header(r, "Authorization")) {
        if (gh_api_require_admin(r) != 0)
            return;
    } else {
        gh_session_info_t info;
        uint8_t hash[GH_TOKEN_HASH_LEN];
        gh_user_t user;
        if (page_session(r, "/ops", &info, hash, &user) != 0)
            return;
        gh_account_t a;
        gh_api_account(r, &a);
        /* An admin user (the console links here) opens it too; the role is read fresh. */
        gh_user_t fresh;
        bool admin = !gh_account_is_operator(&a, &user) &&
                     gh_account_user_get(&a, user.id, &fresh) == 0 && fresh.admin &&
                     !fresh.disabled;
        if (!admin && !gh_account_is_operator(&a, &user)) {
            message_page(r, 403, "Operations",
                         "Only operators may open this page (--ops-users, an admin user or the "
                         "admin token).");
            return;
        }
    }
    /* The same reading /debug/memory renders as JSON: the figures, the watchdog's alerts and
     * forecast, and its ring for the chart. */
    gh_api_memory_t *m = gh_pool_alloc(&r->pool, sizeof *m);
    int rc = m ? gh_api_memory_read(r, GH_API_HISTORY_MAX, m) : GH_ENOMEM;
    html_t h;
    if (rc != 0 || !html_init(r, &h, 256 * 1024)) {
        gh_api_reply_err(r, rc ? rc : GH_ENOMEM);
        return;
    }
    page_begin(&h, "Operations", "/ops");
    put(&h, "<p>This node, refreshed every 5 seconds from the memory watchdog. The same figures "
            "as JSON: <code>/debug/memory</code>, <code>/metrics</code>.</p>\n");
    ops_alerts(&h, m, gh_clock_now_ms());
    if (m->watching) {
        put(&h, "<p id=\"summary\">");
        put_esc(&h, m->watch.summary);
        put(&h, "</p>\n");
    }
    ops_history_chart(&h, m);
    ops_forecast(&h, m);
    ops_heap_stacks(&h, m);
    ops_requests(&h, m);
    ops_figures(&h, m);
    ops_now(&h, m);
    page_end(&h);
    page_send(r, 200, &h);
}

/* ---- what other page files share (pages.h; admin_pages.c) ---- */

bool gh_pages_html_init(gh_req_t *r, gh_pages_html_t *h, size_t cap)
{
    return html_init(r, h, cap);
}
void gh_pages_put(gh_pages_html_t *h, const char *s)
{
    put(h, s);
}
void gh_pages_put_esc(gh_pages_html_t *h, const char *s)
{
    put_esc(h, s);
}
void gh_pages_put_int(gh_pages_html_t *h, long long v)
{
    putf(h, "%lld", v);
}
void gh_pages_put_nul(gh_pages_html_t *h)
{
    put_n(h, "", 1);
}
void gh_pages_put_time(gh_pages_html_t *h, int64_t ms)
{
    put_time(h, ms);
}
void gh_pages_put_form(gh_pages_html_t *h, const char *action, const char *csrf, const char *label,
                       const char *aria)
{
    put_form(h, action, csrf, label, aria);
}
void gh_pages_begin(gh_pages_html_t *h, const char *title)
{
    page_begin(h, title, NULL);
}
void gh_pages_end(gh_pages_html_t *h)
{
    page_end(h);
}
void gh_pages_send(gh_req_t *r, int status, gh_pages_html_t *h)
{
    page_send(r, status, h);
}
void gh_pages_redirect(gh_req_t *r, int status, const char *location)
{
    redirect(r, status, location);
}
void gh_pages_message(gh_req_t *r, int status, const char *title, const char *text)
{
    message_page(r, status, title, text);
}
int gh_pages_session(gh_req_t *r, const char *back, gh_session_info_t *info,
                     uint8_t hash[GH_TOKEN_HASH_LEN], gh_user_t *user)
{
    return page_session(r, back, info, hash, user);
}
void gh_pages_csrf(const uint8_t hash[GH_TOKEN_HASH_LEN], char out[GH_PAGES_CSRF_LEN + 1])
{
    csrf_token(hash, out);
}
bool gh_pages_csrf_ok(gh_req_t *r, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    return csrf_ok(r, hash);
}
