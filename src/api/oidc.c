/*
 * oidc.c (api) — the OpenID Connect endpoints: /oidc/authorize and its consent page,
 * /oidc/token, /oidc/userinfo, /oidc/revoke, /oidc/introspect and /oidc/logout. Each parses
 * its parameters (oidc_params.c), calls the protocol's workflow (account/oidc.h) and renders:
 * redirects and pages for the browser's endpoints, JSON for the OAuth ones, whose errors the one
 * error table renders in RFC 6749 form (their routes carry GH_ROUTE_OAUTH).
 *
 * The one design decision: a browser that must sign in is sent to the existing login page with
 * the authorization request itself as its `rd` (a path on this origin, which the redirect rule
 * accepts), so the login — its throttles, its second factor, passkeys — is the one every other
 * login uses, and the request simply runs again afterwards. prompt=login and max_age become a
 * marker in that URL (gh_fresh=<time>): the next visit needs a session made after it, which the
 * fresh login is, so the way back cannot loop.
 */
#include "api/oidc.h"
#include "api/pages.h"

#include <jansson.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "account/email.h"
#include "common/clock.h"
#include "common/log.h"

/* ---- context ---- */

/* The test knob GATEHOUSE_TEST_OIDC_CODE_TTL_MS (never documented for operators): codes that
 * live this long instead of 60 s, so a test of expiry need not wait a minute. Read once. */
static int64_t code_ttl_ms(void)
{
    static _Atomic int64_t ttl = -1;
    int64_t v = atomic_load(&ttl);
    if (v < 0) {
        const char *e = getenv("GATEHOUSE_TEST_OIDC_CODE_TTL_MS");
        char *end = NULL;
        long long n = e ? strtoll(e, &end, 10) : 0;
        v = e && end && !*end && n > 0 && n < GH_GRANT_CODE_TTL_MS ? n : GH_GRANT_CODE_TTL_MS;
        atomic_store(&ttl, v);
    }
    return v;
}

static void oidc_ctx(gh_req_t *r, gh_account_t *a, gh_oidc_t *o)
{
    gh_app_t *app = r->app;
    gh_api_account(r, a);
    *o = (gh_oidc_t){.a = a,
                     .grants = app->grants,
                     .keys = app->oidc_keys,
                     .issuer = app->issuer,
                     .access_ttl_ms = app->cfg.oidc_access_ttl_ms,
                     .code_ttl_ms = code_ttl_ms(),
                     .count_authz = gh_api_count_oidc_authz,
                     .count_grant = gh_api_count_oidc_grant,
                     .count_reuse = gh_api_count_oidc_reuse,
                     .count_ctx = app};
}

/* The provider is on when the node opened a grant store and a key set. */
static bool provider_on(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (app->grants && app->oidc_keys)
        return true;
    gh_api_reply_fail(r, GH_ENOTFOUND, "OpenID Connect is not enabled on this node", 0);
    return false;
}

/* ---- a URL built in the request pool ---- */

typedef gh_pages_html_t buf_t; /* bounded; an overflow fails the reply */

static void put_enc(buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            char one[2] = {(char)c, 0};
            gh_pages_put(b, one);
        } else {
            char e[4] = {'%', hex[c >> 4], hex[c & 15], 0};
            gh_pages_put(b, e);
        }
    }
}

/* Appends "&name=value" (or "?name=value" first) when value is set. */
static void put_param(buf_t *b, bool *first, const char *name, const char *value)
{
    if (!value)
        return;
    gh_pages_put(b, *first ? "?" : "&");
    *first = false;
    gh_pages_put(b, name);
    gh_pages_put(b, "=");
    put_enc(b, value);
}

/* prompt without "login" (the marker stands for it once the login is done). */
static const char *prompt_without_login(gh_req_t *r, const char *prompt)
{
    if (!prompt)
        return NULL;
    buf_t b;
    if (!gh_pages_html_init(r, &b, strlen(prompt) + 1))
        return NULL;
    const char *s = prompt;
    bool any = false;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n && !(n == 5 && memcmp(s, "login", 5) == 0)) {
            char word[64];
            snprintf(word, sizeof word, "%.*s", (int)n, s);
            if (any)
                gh_pages_put(&b, " ");
            gh_pages_put(&b, word);
            any = true;
        }
        s += n;
    }
    gh_pages_put_nul(&b);
    return any && !b.overflow ? b.buf : NULL;
}

/* The authorization request again, as the URL the login page sends the browser back to. */
static const char *authorize_url(gh_req_t *r, const gh_oidc_authz_request_t *q, int64_t fresh)
{
    buf_t b;
    if (!gh_pages_html_init(r, &b, 4096))
        return NULL;
    bool first = true;
    char t[24];
    gh_pages_put(&b, "/oidc/authorize");
    put_param(&b, &first, "client_id", q->client_id);
    put_param(&b, &first, "redirect_uri", q->redirect_uri);
    put_param(&b, &first, "response_type", q->response_type);
    put_param(&b, &first, "scope", q->scope);
    put_param(&b, &first, "state", q->state);
    put_param(&b, &first, "nonce", q->nonce);
    put_param(&b, &first, "code_challenge", q->code_challenge);
    put_param(&b, &first, "code_challenge_method", q->code_challenge_method);
    put_param(&b, &first, "prompt", fresh ? prompt_without_login(r, q->prompt) : q->prompt);
    put_param(&b, &first, "max_age", q->max_age);
    put_param(&b, &first, "response_mode", q->response_mode);
    if (fresh) {
        snprintf(t, sizeof t, "%lld", (long long)fresh);
        put_param(&b, &first, GH_OIDC_FRESH_PARAM, t);
    } else {
        put_param(&b, &first, GH_OIDC_FRESH_PARAM, q->fresh);
    }
    gh_pages_put_nul(&b);
    return b.overflow ? NULL : b.buf;
}

/* redirect_uri with the response's parameters (and iss, RFC 9207). */
static void redirect_to_client(gh_req_t *r, const char *redirect_uri, const char *const *kv,
                               size_t n)
{
    gh_app_t *app = r->app;
    buf_t b;
    if (!gh_pages_html_init(r, &b, strlen(redirect_uri) + 3 * 1024 + 3 * GH_OIDC_STATE_MAX)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_put(&b, redirect_uri);
    bool first = strchr(redirect_uri, '?') == NULL;
    for (size_t i = 0; i + 1 < n; i += 2)
        put_param(&b, &first, kv[i], kv[i + 1]);
    put_param(&b, &first, "iss", app->issuer);
    gh_pages_put_nul(&b);
    if (b.overflow) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_redirect(r, 302, b.buf);
}

/* ---- the caller's session, if any (never a reply) ---- */

static bool optional_session(gh_req_t *r, gh_oidc_session_t *s, uint8_t hash[GH_TOKEN_HASH_LEN])
{
    gh_app_t *app = r->app;
    const char *token = gh_req_cookie(r, app->cookie_name);
    if (!token || gh_token_hash(token, strlen(token), hash) != 0)
        return false;
    if (gh_session_lookup(app->sessions, hash, gh_clock_now_ms(), &s->info) != 0)
        return false;
    gh_account_t a;
    gh_api_account(r, &a);
    if (gh_account_session_user(&a, &s->info, hash, &s->user) != 0 || s->user.disabled)
        return false;
    sodium_memzero(s->user.password_hash, sizeof s->user.password_hash);
    gh_api_tag_session(r, s->info.id);
    return true;
}

/* ---- /oidc/authorize and the consent page ---- */

static void consent_page(gh_req_t *r, const gh_oidc_authz_request_t *q, const gh_oidc_authz_t *d,
                         const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_oidc_session_t *s)
{
    buf_t h;
    if (!gh_pages_html_init(r, &h, 16384)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    char csrf[GH_PAGES_CSRF_LEN + 1];
    gh_pages_csrf(hash, csrf);
    gh_pages_begin(&h, "Allow access?");
    gh_pages_put(&h, "<p><strong id=\"client-name\">");
    gh_pages_put_esc(&h, d->client.name);
    gh_pages_put(&h, "</strong> asks to sign you in as <strong>");
    gh_pages_put_esc(&h, s->user.username);
    gh_pages_put(&h, "</strong> and to see:</p>\n<ul id=\"scopes\">"
                     "<li>your user id (openid)</li>");
    if (d->scopes & GH_OIDC_SCOPE_PROFILE)
        gh_pages_put(&h, "<li>your username (profile)</li>");
    if (d->scopes & GH_OIDC_SCOPE_EMAIL)
        gh_pages_put(&h, "<li>your email address (email)</li>");
    gh_pages_put(&h,
                 "</ul>\n<form method=\"post\" action=\"/oidc/consent\" aria-label=\"Consent\">\n"
                 "<input type=\"hidden\" name=\"csrf\" value=\"");
    gh_pages_put(&h, csrf);
    gh_pages_put(&h, "\">\n");
    const char *names[] = {"client_id", "redirect_uri", "response_type",  "scope",
                           "state",     "nonce",        "code_challenge", "code_challenge_method",
                           "prompt",    "max_age",      "response_mode",  GH_OIDC_FRESH_PARAM};
    const char *values[] = {
        q->client_id, q->redirect_uri, q->response_type,  q->scope,
        q->state,     q->nonce,        q->code_challenge, q->code_challenge_method,
        q->prompt,    q->max_age,      q->response_mode,  q->fresh};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!values[i])
            continue;
        gh_pages_put(&h, "<input type=\"hidden\" name=\"");
        gh_pages_put(&h, names[i]);
        gh_pages_put(&h, "\" value=\"");
        gh_pages_put_esc(&h, values[i]);
        gh_pages_put(&h, "\">\n");
    }
    gh_pages_put(&h, "<button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow"
                     "</button> <button type=\"submit\" name=\"decision\" value=\"deny\" "
                     "id=\"deny\">Deny</button>\n</form>\n");
    gh_pages_end(&h);
    sodium_memzero(csrf, sizeof csrf);
    gh_pages_send(r, 200, &h);
}

static void authz_render(gh_req_t *r, const gh_oidc_authz_request_t *q, gh_oidc_authz_t *d, int rc,
                         const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_oidc_session_t *s)
{
    if (rc != 0) {
        gh_pages_message(r, 503, "Try again", "The service is busy. Try again in a moment.");
        return;
    }
    switch (d->next) {
    case GH_OIDC_NEXT_PAGE_ERROR:
        gh_pages_message(r, 400, "Sign-in request refused", d->description);
        return;
    case GH_OIDC_NEXT_REDIRECT_ERROR: {
        const char *kv[] = {"error",        d->error, "error_description",
                            d->description, "state",  q->state};
        redirect_to_client(r, q->redirect_uri, kv, 6);
        return;
    }
    case GH_OIDC_NEXT_LOGIN: {
        const char *back = authorize_url(r, q, d->fresh_after_ms);
        if (!back) { /* longer than the login page carries back (RD_MAX): say so */
            const char *kv[] = {"error",
                                "invalid_request",
                                "error_description",
                                "the request is too long to carry through the login",
                                "state",
                                q->state};
            redirect_to_client(r, q->redirect_uri, kv, 6);
            return;
        }
        buf_t b;
        if (!gh_pages_html_init(r, &b, 3 * strlen(back) + 16)) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        gh_pages_put(&b, "/login?rd=");
        put_enc(&b, back);
        gh_pages_put_nul(&b);
        gh_pages_redirect(r, 303, b.buf);
        return;
    }
    case GH_OIDC_NEXT_CONSENT:
        consent_page(r, q, d, hash, s);
        return;
    case GH_OIDC_NEXT_CODE: {
        const char *kv[] = {"code", d->code, "state", q->state};
        redirect_to_client(r, q->redirect_uri, kv, 4);
        sodium_memzero(d->code, sizeof d->code);
        return;
    }
    }
}

/* The request's arguments: the query of a GET, the form body of a POST. */
static int request_args(gh_req_t *r, gh_req_arg_t *args, size_t *n)
{
    if (r->method == GH_HTTP_POST) {
        if (!gh_pages_is_form(r))
            return GH_EMEDIATYPE;
        return gh_oidc_form_split(&r->pool, r->body ? r->body : "", r->body_len, args,
                                  GH_OIDC_ARGS_MAX, n);
    }
    *n = gh_req_query_args(r, args, GH_OIDC_ARGS_MAX);
    return 0;
}

/* Reads and parses the authorization request into q, whose strings point into args (room for
 * GH_OIDC_ARGS_MAX) and the request's pool. Returns 0 or the code of what was wrong. */
static int authz_request(gh_req_t *r, gh_req_arg_t *args, gh_oidc_authz_request_t *q)
{
    size_t n = 0;
    int rc = request_args(r, args, &n);
    if (rc == 0)
        rc = gh_oidc_authz_parse(args, n, q);
    return rc;
}

/* Asks the provider where q leads for the session signed_in (NULL: signed out) and the consent
 * decision (0: none yet), and answers with that (authz_render, given hash and s). */
static void authorize_render(gh_req_t *r, const gh_oidc_authz_request_t *q,
                             const gh_oidc_session_t *signed_in, int consent,
                             const uint8_t hash[GH_TOKEN_HASH_LEN], const gh_oidc_session_t *s)
{
    gh_account_t a;
    gh_oidc_t o;
    oidc_ctx(r, &a, &o);
    gh_oidc_authz_t d;
    int rc = gh_oidc_authorize(&o, q, signed_in, consent, gh_clock_now_ms(), &d);
    authz_render(r, q, &d, rc, hash, s);
}

void gh_api_oidc_authorize(gh_req_t *r)
{
    if (!provider_on(r))
        return;
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    gh_oidc_authz_request_t q;
    int rc = authz_request(r, args, &q);
    if (rc != 0) {
        gh_pages_message(r, rc == GH_ENOMEM ? 503 : 400, "Sign-in request refused",
                         "The sign-in request is malformed.");
        return;
    }
    gh_oidc_session_t s;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    bool signed_in = optional_session(r, &s, hash);
    authorize_render(r, &q, signed_in ? &s : NULL, 0, hash, &s);
    sodium_memzero(hash, sizeof hash);
}

void gh_api_oidc_consent(gh_req_t *r)
{
    if (!provider_on(r))
        return;
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    gh_oidc_authz_request_t q;
    int rc = authz_request(r, args, &q);
    if (rc != 0) {
        gh_pages_message(r, 400, "Sign-in request refused", "The consent form is malformed.");
        return;
    }
    gh_oidc_session_t s;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (!optional_session(r, &s, hash)) {
        /* Signed out meanwhile: sign in again, then the request asks again. */
        authorize_render(r, &q, NULL, 0, hash, &s);
        return;
    }
    if (!gh_pages_csrf_ok(r, hash)) {
        sodium_memzero(hash, sizeof hash);
        gh_pages_message(r, 403, "Form refused",
                         "This form was sent from another site or has expired.");
        return;
    }
    const char *decision;
    size_t dlen;
    int consent = 0;
    if (gh_pages_form_field(r, "decision", &decision, &dlen) == 0)
        consent = strcmp(decision, "allow") == 0 ? 1 : strcmp(decision, "deny") == 0 ? -1 : 0;
    if (consent == 0) {
        sodium_memzero(hash, sizeof hash);
        gh_pages_message(r, 400, "Form refused", "Choose Allow or Deny.");
        return;
    }
    authorize_render(r, &q, &s, consent, hash, &s);
    sodium_memzero(hash, sizeof hash);
}

/* ---- the OAuth endpoints ---- */

/* Reads the form body of an OAuth endpoint; replies (415, 400) and returns non-zero on error. */
static int oauth_form(gh_req_t *r, gh_oidc_token_request_t *q)
{
    if (!gh_pages_is_form(r)) {
        gh_api_reply_fail(r, GH_EMEDIATYPE,
                          "expected Content-Type: application/x-www-form-urlencoded", 0);
        return GH_EINVAL;
    }
    int rc = gh_oidc_token_parse(&r->pool, r->body ? r->body : "", r->body_len, q);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return rc;
    }
    return 0;
}

/* "<param> <problem>" of a refused parameter, in the pool. */
static const char *invalid_text(gh_req_t *r, const gh_oidc_token_request_t *q)
{
    char *s = gh_pool_alloc(&r->pool, 96);
    if (s)
        snprintf(s, 96, "%s %s", q->invalid_param ? q->invalid_param : "the body", q->invalid);
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* RFC 6749 §2.3.1: the Basic credentials are form-encoded before base64. Decodes s in place. */
static bool form_unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        if (*s == '+') {
            *o++ = ' ';
        } else if (*s == '%') {
            int hi = hexval(s[1]), lo = hi >= 0 ? hexval(s[2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return false;
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return true;
}

/* The client's credentials: HTTP Basic, else the body. Replies and returns non-zero when the
 * header is malformed. */
static int client_cred(gh_req_t *r, const gh_oidc_token_request_t *q, gh_oidc_client_cred_t *c)
{
    memset(c, 0, sizeof *c);
    const char *auth = gh_req_header(r, "Authorization");
    if (auth && strncasecmp(auth, "Basic ", 6) == 0) {
        const char *b64 = auth + 6;
        while (*b64 == ' ')
            b64++;
        size_t blen = strlen(b64);
        char *dec = blen <= 1024 ? gh_pool_alloc(&r->pool, blen + 1) : NULL;
        size_t dlen = 0;
        if (!dec ||
            sodium_base642bin((unsigned char *)dec, blen, b64, blen, NULL, &dlen, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            memchr(dec, '\0', dlen)) {
            gh_api_reply_fail(r, GH_EOAUTHCLIENT, "the Basic credentials are malformed", 0);
            return GH_EINVAL;
        }
        dec[dlen] = '\0';
        r->wipe = true;
        char *colon = strchr(dec, ':');
        if (!colon || !form_unescape(colon + 1)) {
            gh_api_reply_fail(r, GH_EOAUTHCLIENT, "the Basic credentials are malformed", 0);
            return GH_EINVAL;
        }
        *colon = '\0';
        if (!form_unescape(dec)) {
            gh_api_reply_fail(r, GH_EOAUTHCLIENT, "the Basic credentials are malformed", 0);
            return GH_EINVAL;
        }
        c->id = dec;
        c->secret = colon + 1;
        c->secret_len = strlen(colon + 1);
        c->basic = true;
        c->both =
            q->client_secret != NULL || (q->client_id != NULL && strcmp(q->client_id, c->id) != 0);
        return 0;
    }
    c->id = q->client_id;
    c->secret = q->client_secret;
    c->secret_len = q->client_secret ? strlen(q->client_secret) : 0;
    if (q->client_secret)
        r->wipe = true;
    return 0;
}

static void no_store(gh_req_t *r)
{
    (void)gh_reply_header(r, "Cache-Control", "no-store");
    (void)gh_reply_header(r, "Pragma", "no-cache");
}

static void reply_json_no_store(gh_req_t *r, json_t *j)
{
    gh_api_reply_json(r, 200, j);
    if (r->status == 200)
        no_store(r);
}

/* The ID token of a grant, signed with the client's alg (gh_jwt_free it). */
static int id_token(gh_req_t *r, gh_oidc_t *o, const gh_oidc_grant_t *g, int64_t now, char **jwt)
{
    gh_app_t *app = r->app;
    const gh_grant_family_t *f = &g->family;
    char sub[24];
    snprintf(sub, sizeof sub, "%llu", (unsigned long long)f->user_id);
    const char *amr[4];
    size_t namr = gh_oidc_amr_names(f->amr, amr);
    json_t *amrj = json_array();
    for (size_t i = 0; amrj && i < namr; i++)
        if (json_array_append_new(amrj, json_string(amr[i])) != 0) {
            json_decref(amrj);
            amrj = NULL;
        }
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s}", "iss", app->issuer, "sub", sub, "aud",
                  g->client.client_id, "exp", (json_int_t)((now + o->access_ttl_ms) / 1000), "iat",
                  (json_int_t)(now / 1000), "auth_time", (json_int_t)(f->auth_time_ms / 1000),
                  "acr", gh_oidc_acr(f->amr), "azp", g->client.client_id);
    j = gh_api_json_set(j, "amr", amrj);
    if (j && g->nonce[0])
        j = gh_api_json_set(j, "nonce", json_string(g->nonce));
    if (j && (f->scopes & GH_OIDC_SCOPE_PROFILE)) {
        j = gh_api_json_set(j, "preferred_username", json_string(g->user.username));
        j = gh_api_json_set(j, "name", json_string(g->user.username));
    }
    if (j && (f->scopes & GH_OIDC_SCOPE_EMAIL)) {
        char email[GH_MAIL_ADDR_MAX + 1];
        bool verified = false;
        if (gh_account_email_get(o->a, f->user_id, email, &verified) == 0 && email[0]) {
            j = gh_api_json_set(j, "email", json_string(email));
            j = gh_api_json_set(j, "email_verified", json_boolean(verified));
        }
    }
    if (!j)
        return GH_ENOMEM;
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    char *text = n ? gh_pool_alloc(&r->pool, n) : NULL;
    if (!text || json_dumpb(j, text, n, JSON_COMPACT) != n) {
        json_decref(j);
        return GH_ENOMEM;
    }
    json_decref(j);
    return gh_oidc_keys_sign(o->keys, g->client.id_token_alg[0] ? g->client.id_token_alg : "RS256",
                             text, n, jwt);
}

void gh_api_oidc_token(gh_req_t *r)
{
    if (!provider_on(r))
        return;
    gh_oidc_token_request_t q;
    gh_oidc_client_cred_t cred;
    if (oauth_form(r, &q) != 0 || client_cred(r, &q, &cred) != 0)
        return;
    gh_account_t a;
    gh_oidc_t o;
    oidc_ctx(r, &a, &o);
    int64_t now = gh_clock_now_ms();
    gh_oidc_grant_t *g = gh_pool_alloc(&r->pool, sizeof *g);
    if (!g) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    r->wipe = true;
    int rc = gh_oidc_token(&o, &cred, &q, now, g);
    if (rc != 0) {
        const char *why = g->description;
        if (rc == GH_EINVAL && !why && q.invalid)
            why = invalid_text(r, &q);
        gh_api_reply_fail(r, rc, why, g->retry_ms);
        return;
    }
    char *jwt = NULL;
    rc = id_token(r, &o, g, now, &jwt);
    if (rc != 0) {
        GH_LOG(GH_LOG_ERROR, "oidc id token not signed", GH_LS("error", gh_errname(rc)));
        /* No token is handed out without its ID token: the family goes. */
        GH_IGNORE(gh_grant_family_revoke(o.grants, g->family.id));
        gh_api_reply_err(r, rc == GH_ENOMEM ? GH_ENOMEM : GH_EBUSY);
        sodium_memzero(g, sizeof *g);
        return;
    }
    char scope[64];
    gh_oidc_scope_text(g->family.scopes, scope, sizeof scope);
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "access_token", g->access_token,
                          "token_type", "Bearer", "expires_in", (json_int_t)g->expires_in_s,
                          "refresh_token", g->refresh_token, "id_token", jwt, "scope", scope);
    gh_jwt_free(jwt);
    sodium_memzero(g, sizeof *g);
    reply_json_no_store(r, j);
}

/* The Bearer token of the Authorization header, or NULL. */
static const char *bearer(gh_req_t *r)
{
    const char *auth = gh_req_header(r, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return *auth ? auth : NULL;
}

void gh_api_oidc_userinfo(gh_req_t *r)
{
    if (!provider_on(r))
        return;
    const char *token = bearer(r);
    if (!token) {
        gh_api_reply_fail(r, GH_EUNAUTH, "an access token is required (Authorization: Bearer)", 0);
        return;
    }
    gh_account_t a;
    gh_oidc_t o;
    oidc_ctx(r, &a, &o);
    gh_oidc_token_info_t info;
    int rc = gh_oidc_userinfo(&o, token, gh_clock_now_ms(), &info);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    char sub[24];
    snprintf(sub, sizeof sub, "%llu", (unsigned long long)info.user.id);
    json_t *j = json_pack("{s:s}", "sub", sub);
    if (j && (info.family.scopes & GH_OIDC_SCOPE_PROFILE)) {
        j = gh_api_json_set(j, "preferred_username", json_string(info.user.username));
        j = gh_api_json_set(j, "name", json_string(info.user.username));
    }
    if (j && (info.family.scopes & GH_OIDC_SCOPE_EMAIL)) {
        char email[GH_MAIL_ADDR_MAX + 1];
        bool verified = false;
        if (gh_account_email_get(&a, info.user.id, email, &verified) == 0 && email[0]) {
            j = gh_api_json_set(j, "email", json_string(email));
            j = gh_api_json_set(j, "email_verified", json_boolean(verified));
        }
    }
    reply_json_no_store(r, j);
}

/* Authenticates the client of /oidc/revoke and /oidc/introspect; replies on failure. */
static int endpoint_client(gh_req_t *r, gh_oidc_t *o, gh_oidc_token_request_t *q,
                           gh_oidc_client_t *client)
{
    gh_oidc_client_cred_t cred;
    if (oauth_form(r, q) != 0 || client_cred(r, q, &cred) != 0)
        return GH_EINVAL;
    int64_t retry = 0;
    int rc = gh_oidc_client_auth(o, &cred, client, &retry);
    if (rc == 0 && q->invalid)
        rc = GH_EINVAL;
    if (rc != 0) {
        gh_api_reply_fail(r, rc,
                          rc == GH_EINVAL && q->invalid ? invalid_text(r, q)
                          : rc == GH_EINVAL             ? "use one client authentication method"
                                                        : NULL,
                          retry);
        return rc;
    }
    if (!q->token) {
        gh_api_reply_fail(r, GH_EINVAL, "token is required", 0);
        return GH_EINVAL;
    }
    return 0;
}

/* The common start of /oidc/revoke and /oidc/introspect: the provider is on, the client has
 * authenticated and named a token. Fills o, q and *client (from the request's pool); replies and
 * returns non-zero on any failure. */
static int endpoint_begin(gh_req_t *r, gh_account_t *a, gh_oidc_t *o, gh_oidc_token_request_t *q,
                          gh_oidc_client_t **client)
{
    if (!provider_on(r))
        return GH_ENOTFOUND;
    oidc_ctx(r, a, o);
    *client = gh_pool_alloc(&r->pool, sizeof **client);
    if (!*client) {
        gh_api_reply_err(r, GH_ENOMEM);
        return GH_ENOMEM;
    }
    return endpoint_client(r, o, q, *client);
}

void gh_api_oidc_revoke(gh_req_t *r)
{
    gh_account_t a;
    gh_oidc_t o;
    gh_oidc_token_request_t q;
    gh_oidc_client_t *client;
    if (endpoint_begin(r, &a, &o, &q, &client) != 0)
        return;
    int rc = gh_oidc_revoke(&o, client, q.token, gh_clock_now_ms());
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    if (gh_reply(r, 200, "application/json", "{}", 2) == 0)
        no_store(r);
}

void gh_api_oidc_introspect(gh_req_t *r)
{
    gh_account_t a;
    gh_oidc_t o;
    gh_oidc_token_request_t q;
    gh_oidc_client_t *client;
    if (endpoint_begin(r, &a, &o, &q, &client) != 0)
        return;
    gh_oidc_token_info_t info;
    int rc = gh_oidc_introspect(&o, client, q.token, gh_clock_now_ms(), &info);
    if (rc != 0) {
        gh_api_reply_fail(
            r, rc, rc == GH_EOAUTHCLIENT ? "introspection needs a confidential client" : NULL, 0);
        return;
    }
    if (!info.active) {
        reply_json_no_store(r, json_pack("{s:b}", "active", 0));
        return;
    }
    char sub[24], scope[64];
    snprintf(sub, sizeof sub, "%llu", (unsigned long long)info.family.user_id);
    gh_oidc_scope_text(info.family.scopes, scope, sizeof scope);
    json_t *j = json_pack("{s:b, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "active", 1, "sub", sub,
                          "client_id", info.family.client_id, "scope", scope, "exp",
                          (json_int_t)(info.exp_ms / 1000), "iat", (json_int_t)(info.iat_ms / 1000),
                          "token_type", info.refresh ? "refresh_token" : "Bearer", "username",
                          info.user.username, "iss", ((gh_app_t *)r->app)->issuer);
    reply_json_no_store(r, j);
}

/* ---- RP-initiated logout ---- */

static void signed_out_page(gh_req_t *r, int status, const char *text)
{
    buf_t h;
    if (!gh_pages_html_init(r, &h, 4096)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_pages_begin(&h, status == 200 ? "Signed out" : "Sign-out request refused");
    gh_pages_put(&h, "<p id=\"signed-out\">");
    gh_pages_put_esc(&h, text);
    gh_pages_put(&h, "</p><p><a href=\"/login\">Log in again</a></p>\n");
    gh_pages_end(&h);
    gh_pages_send(r, status, &h);
}

/* A logout request that proves nothing (no id_token_hint) asks the person first: any site could
 * link here, and signing someone out is not for any site to decide. The form posts the same
 * parameters back with the session's CSRF field. */
static void confirm_logout_page(gh_req_t *r, const gh_oidc_token_request_t *q,
                                const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    buf_t h;
    if (!gh_pages_html_init(r, &h, 8192)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    char csrf[GH_PAGES_CSRF_LEN + 1];
    gh_pages_csrf(hash, csrf);
    gh_pages_begin(&h, "Sign out?");
    gh_pages_put(&h, "<p>An application asks to sign you out of Gatehouse.</p>\n"
                     "<form method=\"post\" action=\"/oidc/logout\" aria-label=\"Sign out\">\n"
                     "<input type=\"hidden\" name=\"csrf\" value=\"");
    gh_pages_put(&h, csrf);
    gh_pages_put(&h, "\">\n");
    const char *names[] = {"client_id", "post_logout_redirect_uri", "state"};
    const char *values[] = {q->client_id, q->post_logout_redirect_uri, q->state};
    for (size_t i = 0; i < 3; i++) {
        if (!values[i])
            continue;
        gh_pages_put(&h, "<input type=\"hidden\" name=\"");
        gh_pages_put(&h, names[i]);
        gh_pages_put(&h, "\" value=\"");
        gh_pages_put_esc(&h, values[i]);
        gh_pages_put(&h, "\">\n");
    }
    gh_pages_put(&h, "<button type=\"submit\" id=\"sign-out\">Sign out</button>\n</form>\n");
    gh_pages_end(&h);
    sodium_memzero(csrf, sizeof csrf);
    gh_pages_send(r, 200, &h);
}

void gh_api_oidc_logout(gh_req_t *r)
{
    if (!provider_on(r))
        return;
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    size_t n = 0;
    gh_oidc_token_request_t q;
    int rc = request_args(r, args, &n);
    if (rc == 0)
        rc = gh_oidc_token_parse_args(args, n, &q);
    if (rc != 0 || q.invalid) {
        signed_out_page(r, 400, "The sign-out request is malformed.");
        return;
    }
    gh_app_t *app = r->app;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_oidc_session_t s;
    bool cookie = gh_req_cookie(r, app->cookie_name) != NULL;
    bool has = optional_session(r, &s, hash);
    if (has && !q.id_token_hint && !(r->method == GH_HTTP_POST && gh_pages_csrf_ok(r, hash))) {
        confirm_logout_page(r, &q, hash);
        sodium_memzero(hash, sizeof hash);
        return;
    }
    gh_account_t a;
    gh_oidc_t o;
    oidc_ctx(r, &a, &o);
    bool redirect_ok = false;
    rc = gh_oidc_end_session(&o, &q, has ? hash : NULL, &redirect_ok);
    sodium_memzero(hash, sizeof hash);
    if (rc == GH_EINVAL) {
        signed_out_page(r, 400,
                        "The id_token_hint is not a token of this server, or names "
                        "another client.");
        return;
    }
    if (rc != 0) {
        signed_out_page(r, 503, "The service is busy. Try again in a moment.");
        return;
    }
    if (redirect_ok) {
        buf_t b;
        if (!gh_pages_html_init(r, &b, strlen(q.post_logout_redirect_uri) + 3 * 600)) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        bool first = strchr(q.post_logout_redirect_uri, '?') == NULL;
        gh_pages_put(&b, q.post_logout_redirect_uri);
        put_param(&b, &first, "state", q.state);
        gh_pages_put_nul(&b);
        if (b.overflow) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        gh_pages_redirect(r, 302, b.buf);
    } else {
        signed_out_page(r, 200, "You are signed out of Gatehouse.");
    }
    if (cookie)
        gh_api_clear_session_cookie(r);
}
