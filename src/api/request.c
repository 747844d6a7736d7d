/*
 * request.c — what every handler needs: JSON bodies, the caller's session, the admin check (the
 * route guard), the account service built over the node, and replies, including the one table
 * that maps GH_E* codes to the contract's error bodies (no other file writes an error code).
 */
#include "api/api.h"

#include <assert.h>
#include <errno.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define XFF_LINES_MAX 8

/*
 * jansson and allocation failure. jansson does not tell an allocation failure from bad syntax,
 * and worse, its lexer ignores a failure to grow its token buffer: the token and the input fall
 * out of step, and it then aborts on an assert (numbers) or reads and writes past the buffer
 * (strings) — jansson issue #362, unfixed in 2.14. So a failed allocation must never return into
 * json_loadb: during a parse, json_alloc answers a failure with a longjmp back to
 * gh_api_json_parse, which frees every block the parse still holds (each carries a small header
 * that links it into the thread's list of parse blocks) and reports GH_ENOMEM. Blocks outside a
 * parse (json_pack for replies) carry the same header, unlinked, and fail the ordinary way.
 */
typedef struct json_block {
    struct json_block *prev, *next; /* the parse's blocks; both NULL when not in a parse */
} json_block_t;
#define JSON_HDR ((sizeof(json_block_t) + 15) & ~(size_t)15) /* keeps malloc's alignment */

static _Thread_local struct {
    bool active;       /* inside json_loadb of gh_api_json_parse */
    bool failed;       /* an allocation failed (outside a parse: json_pack may have lost data) */
    json_block_t head; /* circular list of the parse's live blocks */
    jmp_buf env;
} json_parse;

static void *json_alloc(size_t n)
{
    json_block_t *b = n <= SIZE_MAX - JSON_HDR ? gh_mem_alloc(GH_MEM_HTTP, JSON_HDR + n) : NULL;
    if (!b) {
        json_parse.failed = true;
        if (json_parse.active)
            longjmp(json_parse.env, 1);
        return NULL;
    }
    b->prev = b->next = NULL;
    if (json_parse.active) {
        b->next = json_parse.head.next;
        b->prev = &json_parse.head;
        json_parse.head.next->prev = b;
        json_parse.head.next = b;
    }
    return (char *)b + JSON_HDR;
}

/* JSON values may hold passwords: wipe every block jansson gives back. */
static void json_release(void *p)
{
    if (!p)
        return;
    json_block_t *b = (json_block_t *)((char *)p - JSON_HDR);
    if (b->next) {
        b->prev->next = b->next;
        b->next->prev = b->prev;
    }
    gh_mem_free_secret(GH_MEM_HTTP, b);
}

void gh_api_json_setup(void)
{
    json_set_alloc_funcs(json_alloc, json_release);
}

/* Ends a parse: the surviving blocks belong to the parsed value now, not to a parse list. */
static void json_parse_end(void)
{
    json_block_t *b = json_parse.head.next;
    while (b != &json_parse.head) {
        json_block_t *next = b->next;
        b->prev = b->next = NULL;
        b = next;
    }
    json_parse.active = false;
}

/* After a longjmp out of jansson: nothing of that parse is reachable, so every block goes. */
static void json_parse_abandon(void)
{
    json_block_t *b = json_parse.head.next;
    while (b != &json_parse.head) {
        json_block_t *next = b->next;
        gh_mem_free_secret(GH_MEM_HTTP, b);
        b = next;
    }
    json_parse.active = false;
}

/* True when the Content-Type's media type (parameters ignored) equals want. */
static bool media_type_is(const char *ct, const char *want)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, "; \t");
    return n == strlen(want) && strncasecmp(ct, want, n) == 0;
}

int gh_api_json_parse(const char *body, size_t len, json_t **out, const char **why)
{
    *out = NULL;
    *why = NULL;
    if (len == 0) {
        *why = "the body is not valid JSON";
        return GH_EINVAL;
    }
    assert(!json_parse.active); /* jansson never calls back into this */
    json_parse.failed = false;
    json_parse.head.prev = json_parse.head.next = &json_parse.head;
    json_parse.active = true;
    /* Only thread-locals and these arguments are used after a longjmp back here. */
    if (setjmp(json_parse.env) != 0) {
        json_parse_abandon();
        return GH_ENOMEM;
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    json_parse_end();
    assert(!json_parse.failed); /* a failure inside the parse came back through the longjmp */
    if (!j) {
        *why = "the body is not valid JSON";
        return GH_EINVAL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *why = "the body must be a JSON object";
        return GH_EINVAL;
    }
    *out = j;
    return 0;
}

int gh_api_json_body(gh_req_t *r, json_t **out)
{
    if (!media_type_is(gh_req_header(r, "Content-Type"), "application/json")) {
        gh_api_reply_err(r, GH_EMEDIATYPE);
        return GH_EINVAL;
    }
    const char *why;
    int rc = gh_api_json_parse(r->body, r->body_len, out, &why);
    if (rc != 0)
        gh_api_reply_fail(r, rc, why, 0);
    return rc;
}

int gh_api_json_str(gh_req_t *r, json_t *obj, const char *key, const char **s, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    if (!v || !json_is_string(v)) {
        char msg[128];
        snprintf(msg, sizeof msg, "\"%s\" is required and must be a string", key);
        gh_api_reply_fail(r, GH_EINVAL, msg, 0);
        return GH_EINVAL;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static void reply_unauthenticated(gh_req_t *r, const char *message)
{
    gh_api_reply_fail(r, GH_EUNAUTH, message, 0);
}

int gh_api_authenticate(gh_req_t *r, gh_session_info_t *info, uint8_t hash[GH_TOKEN_HASH_LEN])
{
    gh_app_t *app = r->app;
    const char *token = NULL;
    const char *auth = gh_req_header(r, "Authorization");
    if (auth) {
        if (strncasecmp(auth, "Bearer ", 7) != 0) {
            reply_unauthenticated(r, "the Authorization header must be \"Bearer <token>\"");
            return GH_EAUTH;
        }
        token = auth + 7;
        while (*token == ' ')
            token++;
    } else {
        token = gh_req_cookie(r, app->cookie_name);
    }
    if (!token || !*token) {
        reply_unauthenticated(r, "a session token is required");
        return GH_EAUTH;
    }
    if (gh_token_hash(token, strlen(token), hash) != 0) {
        reply_unauthenticated(r, "the session token is not valid");
        return GH_EAUTH;
    }
    int rc = gh_session_lookup(app->sessions, hash, gh_clock_now_ms(), info);
    if (rc == GH_ENOTFOUND) {
        reply_unauthenticated(r, "the session has ended or never existed");
        return GH_EAUTH;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return rc;
    }
    gh_api_tag_session(r, info->id);
    return 0;
}

int gh_api_require_admin(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (!app->cfg.admin_token[0]) {
        gh_api_reply_fail(r, GH_EFORBIDDEN, "the admin API is off: no admin token is configured",
                          0);
        return GH_EAUTH;
    }
    const char *auth = gh_req_header(r, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) {
        reply_unauthenticated(r, "an admin bearer token is required");
        return GH_EAUTH;
    }
    /* Compare digests so the time taken reveals neither the token nor its length. */
    uint8_t given[32], want[32];
    const char *tok = auth + 7;
    crypto_generichash(given, sizeof given, (const uint8_t *)tok, strlen(tok), NULL, 0);
    crypto_generichash(want, sizeof want, (const uint8_t *)app->cfg.admin_token,
                       strlen(app->cfg.admin_token), NULL, 0);
    int same = sodium_memcmp(given, want, sizeof given);
    sodium_memzero(given, sizeof given);
    sodium_memzero(want, sizeof want);
    if (same != 0) {
        gh_api_reply_fail(r, GH_EFORBIDDEN, "the admin token is not valid", 0);
        return GH_EAUTH;
    }
    return 0;
}

int gh_api_admit(gh_req_t *r)
{
    if (r->route && (r->route->flags & GH_ROUTE_ADMIN) == GH_ROUTE_ADMIN)
        return gh_api_require_admin(r);
    return 0;
}

void gh_api_reply_json(gh_req_t *r, int status, json_t *j)
{
    if (!j) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    size_t n = json_dumpb(j, NULL, 0, JSON_COMPACT);
    char *buf = n ? gh_pool_alloc(&r->pool, n) : NULL;
    if (!buf || json_dumpb(j, buf, n, JSON_COMPACT) != n) {
        json_decref(j);
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    json_decref(j);
    (void)gh_reply(r, status, "application/json", buf, n);
}

/* The contract's error bodies (docs/API.md "Errors"): one row per code. The last column is the
 * RFC 6749 error the OAuth routes (GH_ROUTE_OAUTH) answer instead; NULL: invalid_request for a
 * 4xx, temporarily_unavailable for a 503. */
static const struct {
    int err;
    int status;
    const char *code;
    const char *message; /* the default; a caller may say more */
    const char *oauth;
} error_bodies[] = {
    {GH_ENOMEM, 503, "overloaded", "out of memory, try again later", NULL},
    {GH_EBUSY, 503, "overloaded", "the service is at capacity, try again later", NULL},
    {GH_ESTORE, 503, "store_unavailable", "a store is unavailable, try again later", NULL},
    {GH_EIO, 503, "store_unavailable", "a store is unavailable, try again later", NULL},
    {GH_ECRITICAL, 503, "memory_critical", "memory use is critical; see /debug/memory", NULL},
    {GH_ENOTFOUND, 404, "not_found", "not found", NULL},
    {GH_EAUTH, 401, "invalid_credentials", "invalid username or password", "invalid_client"},
    {GH_ECURRENT, 401, "invalid_credentials", "the current password is wrong", NULL},
    {GH_EPASSKEY, 401, "invalid_passkey", "the passkey was refused", NULL},
    {GH_EUNAUTH, 401, "unauthenticated", "a session token is required", "invalid_token"},
    {GH_EFORBIDDEN, 403, "forbidden", "forbidden", NULL},
    {GH_ECLOSED, 403, "registration_closed", "registration is closed", NULL},
    {GH_EINVAL, 400, "invalid_request", "invalid request", NULL},
    {GH_EUSERNAME, 400, "invalid_username",
     "usernames are 1 to 64 characters of A-Z a-z 0-9 . _ @ -", NULL},
    {GH_EPASSWORD, 400, "weak_password", "passwords are 8 to 1024 bytes of valid UTF-8", NULL},
    {GH_EEXISTS, 409, "username_taken", "that username is taken", NULL},
    {GH_ETOOBIG, 413, "payload_too_large", "request body is too large", NULL},
    {GH_EMEDIATYPE, 415, "unsupported_media_type", "expected Content-Type: application/json", NULL},
    {GH_ELIMIT, 429, "rate_limited", "too many attempts, try again later", "slow_down"},
    {GH_ECODE, 401, "invalid_code", "the code is wrong, used already, or expired", NULL},
    {GH_EPENDING, 401, "pending_expired", "the pending login has expired; log in again", NULL},
    {GH_EEMAIL, 400, "invalid_email", "not a usable email address", NULL},
    {GH_EEMAILTAKEN, 409, "email_taken", "that email address is taken", NULL},
    {GH_ETOKEN, 400, "invalid_token", "the link is invalid, used or expired", NULL},
    {GH_EMFA, 401, "mfa_required", "a second-factor code or a recovery code is required", NULL},
    /* OpenID Connect (account/oidc.h): their own names in both forms */
    {GH_EOAUTHCLIENT, 401, "invalid_client", "client authentication failed", "invalid_client"},
    {GH_EOAUTHGRANT, 400, "invalid_grant",
     "the grant is invalid, expired, revoked, or another client's", "invalid_grant"},
    {GH_EGRANTTYPE, 400, "unsupported_grant_type",
     "grant_type is authorization_code or refresh_token", "unsupported_grant_type"},
    {GH_EOAUTHSCOPE, 400, "invalid_scope", "the scope is invalid", "invalid_scope"},
    {GH_EOAUTHTOKEN, 401, "invalid_token", "the access token is invalid, expired or revoked",
     "invalid_token"},
    {GH_EUNAUTHCLIENT, 400, "unauthorized_client", "the client may not use this grant",
     "unauthorized_client"},
};

/* The RFC 6749 form (§5.2) of the OAuth routes: {"error","error_description"}, never cached;
 * 401s say how to authenticate (Basic for a client, Bearer for an access token). */
static void reply_oauth(gh_req_t *r, int err, int status, const char *error, const char *message)
{
    char desc[512], body[640];
    gh_api_json_escape(message, desc, sizeof desc);
    int n =
        snprintf(body, sizeof body, "{\"error\":\"%s\",\"error_description\":\"%s\"}", error, desc);
    r->nheaders = 0;
    if (gh_reply(r, status, "application/json", body, (size_t)n) != 0)
        return;
    (void)gh_reply_header(r, "Cache-Control", "no-store");
    (void)gh_reply_header(r, "Pragma", "no-cache");
    if (status == 401 && err == GH_EUNAUTH) /* no token at all: no error code (RFC 6750 §3.1) */
        (void)gh_reply_header(r, "WWW-Authenticate", "Bearer realm=\"gatehouse\"");
    else if (status == 401 && strcmp(error, "invalid_token") == 0)
        (void)gh_reply_header(r, "WWW-Authenticate",
                              "Bearer realm=\"gatehouse\", error=\"invalid_token\"");
    else if (status == 401)
        (void)gh_reply_header(r, "WWW-Authenticate", "Basic realm=\"gatehouse\"");
}

static void set_retry_after(gh_req_t *r, int64_t retry_ms)
{
    long long secs = (retry_ms + 999) / 1000;
    char retry[24];
    snprintf(retry, sizeof retry, "%lld", secs < 1 ? 1 : secs);
    /* gh_reply_error said "Retry-After: 1"; say the real wait instead. */
    for (size_t h = 0; h < r->nheaders; h++)
        if (strcmp(r->headers[h].name, "Retry-After") == 0) {
            r->headers[h] = r->headers[--r->nheaders];
            break;
        }
    (void)gh_reply_header(r, "Retry-After", retry);
}

void gh_api_reply_fail(gh_req_t *r, int err, const char *message, int64_t retry_ms)
{
    bool oauth = r->route && (r->route->flags & GH_ROUTE_OAUTH);
    for (size_t i = 0; i < sizeof error_bodies / sizeof error_bodies[0]; i++) {
        if (error_bodies[i].err != err)
            continue;
        int status = error_bodies[i].status;
        const char *text = message ? message : error_bodies[i].message;
        if (oauth) {
            const char *e = error_bodies[i].oauth;
            if (!e)
                e = status >= 500 ? "temporarily_unavailable" : "invalid_request";
            reply_oauth(r, err, status, e, text);
            if (status == 429 || status == 503)
                set_retry_after(r, retry_ms);
            return;
        }
        gh_reply_error(r, status, error_bodies[i].code, text);
        if (status == 401 && err == GH_EUNAUTH)
            (void)gh_reply_header(r, "WWW-Authenticate", "Bearer realm=\"gatehouse\"");
        if ((status == 429 || status == 503) && retry_ms > 0)
            set_retry_after(r, retry_ms);
        return;
    }
    if (oauth)
        reply_oauth(r, err, 500, "server_error", gh_strerror(err));
    else
        gh_reply_error(r, 500, "internal_error", gh_strerror(err));
}

void gh_api_reply_err(gh_req_t *r, int err)
{
    gh_api_reply_fail(r, err, NULL, 0);
}

json_t *gh_api_json_set(json_t *obj, const char *key, json_t *value)
{
    if (!obj || !value) {
        json_decref(obj);
        json_decref(value);
        return NULL;
    }
    if (json_object_set_new(obj, key, value) != 0) { /* it released value */
        json_decref(obj);
        return NULL;
    }
    return obj;
}

json_t *gh_api_session_json(const gh_session_info_t *s)
{
    char c[GH_RFC3339_LEN], l[GH_RFC3339_LEN], e[GH_RFC3339_LEN], i[GH_RFC3339_LEN];
    gh_clock_rfc3339(s->created_at_ms, c);
    gh_clock_rfc3339(s->last_seen_at_ms, l);
    gh_clock_rfc3339(s->expires_at_ms, e);
    gh_clock_rfc3339(s->idle_expires_at_ms, i);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", s->id, "created_at", c, "last_seen_at",
                          l, "expires_at", e, "idle_expires_at", i);
    /* A lookup (who am I) does not read the client: better absent than shown as unknown. The
     * store keeps it valid UTF-8, so json_string cannot refuse it. */
    if (j && s->has_client) {
        j = gh_api_json_set(j, "user_agent", json_string(s->client.user_agent));
        j = gh_api_json_set(j, "ip", json_string(s->client.ip));
    }
    return j;
}

void gh_api_client_ip(gh_req_t *r, gh_ip_t *out)
{
    gh_app_t *app = r->app;
    char peer_text[64];
    gh_ip_t peer;
    gh_req_peer(r, peer_text);
    if (gh_ip_parse(peer_text, strlen(peer_text), &peer) != 0)
        memset(&peer, 0, sizeof peer); /* not an IP socket: one shared bucket */
    if (app->proxies.n == 0) {
        *out = peer;
        return;
    }
    const char *xff[XFF_LINES_MAX];
    size_t nxff = gh_req_header_values(r, "X-Forwarded-For", xff, XFF_LINES_MAX);
    gh_proxies_client(&app->proxies, &peer, xff, nxff, gh_req_header(r, "X-Real-IP"), out);
}

static void count_login(void *app, gh_login_result_t result)
{
    gh_api_count_login(app, result);
}

void gh_api_account(gh_req_t *r, gh_account_t *out)
{
    gh_app_t *app = r->app;
    *out = (gh_account_t){.users = app->users,
                          .sessions = app->sessions,
                          .passwords = app->passwords,
                          .ratelimit = app->ratelimit,
                          .registration_open = app->cfg.registration_open,
                          .max_sessions_per_user = app->cfg.max_sessions_per_user,
                          .operators = app->cfg.ops_users,
                          .log_salt = app->log_salt,
                          .count_login = count_login,
                          .count_ctx = app,
                          .audit = app->audit,
                          .webauthn = app->webauthn_challenges ? &app->webauthn_rp : NULL,
                          .webauthn_challenges = app->webauthn_challenges,
                          .pending = app->pending,
                          .secret_key = app->secret_key,
                          .count_mfa = gh_api_count_mfa,
                          .email = app->email,
                          .grants = app->grants};
    gh_api_account_client(r, &out->caller);
    if (r->route && (r->route->flags & GH_ROUTE_ADMIN) == GH_ROUTE_ADMIN)
        snprintf(out->actor, sizeof out->actor, "token");
}

void gh_api_account_client(gh_req_t *r, gh_account_client_t *out)
{
    static const gh_ip_t none;
    char text[GH_IP_STR] = "";
    gh_api_client_ip(r, &out->ip);
    if (memcmp(&out->ip, &none, sizeof out->ip) != 0) /* all zeros: no address to show */
        gh_ip_format(&out->ip, text);
    const char *ua = gh_req_header(r, "User-Agent");
    gh_session_client_make(&out->client, text, ua, ua ? strlen(ua) : 0);
    out->via = r->route ? r->route->template : NULL;
}

void gh_api_account_start(gh_app_t *app)
{
    gh_account_t a = {.users = app->users, .operators = app->cfg.ops_users};
    size_t missing = gh_account_check_operators(&a);
    if (missing)
        GH_LOG(GH_LOG_WARN,
               "--ops-users: name operators by user id; a listed name that does not "
               "exist can be created only by an admin",
               GH_LI("missing", missing));
}

void gh_api_json_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    assert(cap > 0);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[7];
        size_t k = 0;
        if (ch == '"' || ch == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'u';
            esc[k++] = '0';
            esc[k++] = '0';
            esc[k++] = hex[ch >> 4];
            esc[k++] = hex[ch & 15];
        } else {
            esc[k++] = (char)ch;
        }
        if (o + k >= cap)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    out[o] = '\0';
}

void gh_api_set_session_cookie(gh_req_t *r, const char *token)
{
    gh_app_t *app = r->app;
    char cookie[256];
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s",
             app->cookie_name, token, (long long)(app->cfg.session_ttl_ms / 1000),
             app->cfg.cookie_secure ? "; Secure" : "");
    (void)gh_reply_header(r, "Set-Cookie", cookie);
    sodium_memzero(cookie, sizeof cookie);
}

void gh_api_clear_session_cookie(gh_req_t *r)
{
    gh_app_t *app = r->app;
    char cookie[160];
    snprintf(cookie, sizeof cookie, "%s=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax%s",
             app->cookie_name, app->cfg.cookie_secure ? "; Secure" : "");
    (void)gh_reply_header(r, "Set-Cookie", cookie);
}

void gh_api_tag_session(gh_req_t *r, const char *session_id)
{
    snprintf(r->session_id, sizeof r->session_id, "%s", session_id);
}

int gh_api_param_id(gh_req_t *r, size_t idx, uint64_t *out)
{
    const char *p = idx < r->nparams ? r->params[idx] : "";
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (!*p || *end || errno || *p == '-' || *p == '+') {
        gh_api_reply_fail(r, GH_ENOTFOUND, "no such user", 0);
        return GH_ENOTFOUND;
    }
    *out = v;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gh_api_form_decode(gh_pool_t *pool, const char *s, size_t n, const char **out, size_t *outlen)
{
    char *d = gh_pool_alloc(pool, n + 1);
    if (!d)
        return GH_ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            d[j++] = ' ';
        } else if (s[i] == '%') {
            if (i + 2 >= n)
                return GH_EINVAL;
            int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return GH_EINVAL;
            d[j++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            d[j++] = s[i];
        }
    }
    assert(j <= n);
    d[j] = '\0';
    *out = d;
    *outlen = j;
    return 0;
}
