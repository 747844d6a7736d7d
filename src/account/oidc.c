/*
 * oidc.c — the OpenID Connect protocol's workflows (account/oidc.h): the authorization decision,
 * codes, the code and refresh grants, revocation, introspection, userinfo and RP-initiated
 * logout, over the grant store (store/grant.h), the clients and keys (account/oidc_keys.h) and
 * the session workflows.
 *
 * The one design decision: a code, an access token and a refresh token are each checked once,
 * here, and every failure that could be an attack ends something. A replayed code revokes the
 * family its first exchange created; a spent refresh token revokes its family (the store does it
 * inside the rotation, so two racing rotations cannot both win); both are audited. Everything a
 * client gets wrong is one GH_E… code the error table turns into its RFC 6749 body.
 */
#include "account/oidc.h"
#include "account/audit.h"
#include "account/email.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/base64url.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define FAMILY_SECRET_LEN 32
#define TOKEN_RAW_LEN (GH_GRANT_FAMILY_ID_LEN + FAMILY_SECRET_LEN)
_Static_assert(4 + GH_BASE64URL_LEN(TOKEN_RAW_LEN) == GH_OIDC_TOKEN_LEN, "token length");
_Static_assert(4 + GH_BASE64URL_LEN(32) == GH_OIDC_CODE_LEN, "code length");

/* ---- tokens ---- */

static void hash_text(const char *s, size_t n, uint8_t out[GH_GRANT_HASH_LEN])
{
    crypto_generichash(out, GH_GRANT_HASH_LEN, (const uint8_t *)s, n, NULL, 0);
}

void gh_oidc_token_make(const char *prefix, const uint8_t family_id[GH_GRANT_FAMILY_ID_LEN],
                        char out[GH_OIDC_TOKEN_LEN + 1], uint8_t hash[GH_GRANT_HASH_LEN])
{
    uint8_t raw[TOKEN_RAW_LEN];
    memcpy(raw, family_id, GH_GRANT_FAMILY_ID_LEN);
    randombytes_buf(raw + GH_GRANT_FAMILY_ID_LEN, FAMILY_SECRET_LEN);
    memcpy(out, prefix, 4);
    gh_base64url_encode(raw, sizeof raw, out + 4);
    sodium_memzero(raw, sizeof raw);
    hash_text(out, GH_OIDC_TOKEN_LEN, hash);
}

int gh_oidc_token_read(const char *token, const char *prefix,
                       uint8_t family_id[GH_GRANT_FAMILY_ID_LEN], uint8_t hash[GH_GRANT_HASH_LEN])
{
    if (!token || strlen(token) != GH_OIDC_TOKEN_LEN || memcmp(token, prefix, 4) != 0)
        return GH_EINVAL;
    uint8_t raw[TOKEN_RAW_LEN];
    size_t n;
    if (gh_base64url_decode(token + 4, GH_OIDC_TOKEN_LEN - 4, raw, sizeof raw, &n) != 0 ||
        n != sizeof raw) {
        sodium_memzero(raw, sizeof raw);
        return GH_EINVAL;
    }
    memcpy(family_id, raw, GH_GRANT_FAMILY_ID_LEN);
    sodium_memzero(raw, sizeof raw);
    hash_text(token, GH_OIDC_TOKEN_LEN, hash);
    return 0;
}

static void code_make(char out[GH_OIDC_CODE_LEN + 1], uint8_t hash[GH_GRANT_KEY_LEN])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    memcpy(out, GH_OIDC_CODE_PREFIX, 4);
    gh_base64url_encode(raw, sizeof raw, out + 4);
    sodium_memzero(raw, sizeof raw);
    hash_text(out, GH_OIDC_CODE_LEN, hash);
}

static int code_read(const char *code, uint8_t hash[GH_GRANT_KEY_LEN])
{
    uint8_t raw[32];
    size_t n;
    if (!code || strlen(code) != GH_OIDC_CODE_LEN || memcmp(code, GH_OIDC_CODE_PREFIX, 4) != 0 ||
        gh_base64url_decode(code + 4, GH_OIDC_CODE_LEN - 4, raw, sizeof raw, &n) != 0 ||
        n != sizeof raw)
        return GH_EINVAL;
    sodium_memzero(raw, sizeof raw);
    hash_text(code, GH_OIDC_CODE_LEN, hash);
    return 0;
}

static void redirect_hash(const char *uri, uint8_t out[GH_GRANT_REDIRECT_HASH_LEN])
{
    crypto_generichash(out, GH_GRANT_REDIRECT_HASH_LEN, (const uint8_t *)uri, strlen(uri), NULL, 0);
}

/* ---- claims helpers ---- */

size_t gh_oidc_amr_names(uint8_t amr, const char *out[4])
{
    size_t n = 0, bits = 0;
    if (amr & GH_AMR_PWD) {
        out[n++] = "pwd";
        bits++;
    }
    if (amr & (GH_AMR_OTP | GH_AMR_RECOVERY)) {
        out[n++] = "otp";
        bits += ((amr & GH_AMR_OTP) != 0) + ((amr & GH_AMR_RECOVERY) != 0);
    }
    if (amr & GH_AMR_HWK) {
        out[n++] = "hwk";
        bits++;
    }
    /* Two factors, or a passkey alone (possession plus the authenticator's user verification). */
    if (bits >= 2 || amr == GH_AMR_HWK)
        out[n++] = "mfa";
    return n;
}

const char *gh_oidc_acr(uint8_t amr)
{
    return amr & (GH_AMR_OTP | GH_AMR_RECOVERY | GH_AMR_HWK) ? "urn:gatehouse:mfa"
                                                             : "urn:gatehouse:pwd";
}

/* Scope names to bits. Unknown names are ignored (RFC 6749 §3.3 lets the server narrow the
 * request); offline_access is accepted and needs nothing (every code grant gets a refresh
 * token). GH_EINVAL for an empty list or a bad character. */
static int scope_parse(const char *s, uint32_t *out)
{
    *out = 0;
    if (!s)
        return GH_EINVAL;
    for (const char *p = s; *p; p++)
        if (*p < 0x21 && *p != ' ')
            return GH_EINVAL;
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 6 && memcmp(s, "openid", 6) == 0)
            *out |= GH_OIDC_SCOPE_OPENID;
        else if (n == 7 && memcmp(s, "profile", 7) == 0)
            *out |= GH_OIDC_SCOPE_PROFILE;
        else if (n == 5 && memcmp(s, "email", 5) == 0)
            *out |= GH_OIDC_SCOPE_EMAIL;
        s += n;
    }
    return 0;
}

void gh_oidc_scope_text(uint32_t scopes, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", scopes & GH_OIDC_SCOPE_OPENID ? "openid" : "",
             scopes & GH_OIDC_SCOPE_PROFILE ? " profile" : "",
             scopes & GH_OIDC_SCOPE_EMAIL ? " email" : "");
}

/* A decimal of at most 18 digits: 0 and *out, or GH_EINVAL. */
static int parse_uint(const char *s, int64_t *out)
{
    int64_t v = 0;
    size_t n = 0;
    for (; s[n]; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 18)
            return GH_EINVAL;
        v = v * 10 + (s[n] - '0');
    }
    if (n == 0)
        return GH_EINVAL;
    *out = v;
    return 0;
}

static bool b64url_text(const char *s, size_t n)
{
    if (strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (gh_base64url_value((unsigned char)s[i]) < 0)
            return false;
    return true;
}

/* ---- counting and auditing ---- */

static void count_authz(gh_oidc_t *o, gh_oidc_authz_result_t r)
{
    if (o->count_authz)
        o->count_authz(o->count_ctx, r);
}

static void count_grant(gh_oidc_t *o, gh_oidc_grant_type_t t, const char *result)
{
    if (o->count_grant)
        o->count_grant(o->count_ctx, t, result);
}

static const char *oauth_error_name(int rc)
{
    switch (rc) {
    case GH_EINVAL:
        return "invalid_request";
    case GH_EOAUTHCLIENT:
        return "invalid_client";
    case GH_EOAUTHGRANT:
        return "invalid_grant";
    case GH_EGRANTTYPE:
        return "unsupported_grant_type";
    case GH_EOAUTHSCOPE:
        return "invalid_scope";
    case GH_EUNAUTHCLIENT:
        return "unauthorized_client";
    default:
        return "server_error";
    }
}

static void event(gh_oidc_t *o, gh_audit_event_t *ev, gh_audit_type_t type,
                  gh_audit_outcome_t outcome, uint64_t user_id, const char *session_id)
{
    gh_account_audit_event(o->a, ev, type, outcome, user_id);
    if (session_id && *session_id)
        gh_audit_event_session(ev, session_id);
}

/* ---- the authorization request ---- */

static int authz_page(gh_oidc_t *o, gh_oidc_authz_t *out, const char *why)
{
    out->next = GH_OIDC_NEXT_PAGE_ERROR;
    out->description = why;
    count_authz(o, GH_OIDC_AUTHZ_ERROR);
    return 0;
}

static int authz_error(gh_oidc_t *o, gh_oidc_authz_t *out, const char *error, const char *why,
                       gh_oidc_authz_result_t r)
{
    out->next = GH_OIDC_NEXT_REDIRECT_ERROR;
    out->error = error;
    out->description = why;
    count_authz(o, r);
    return 0;
}

typedef struct {
    bool none, login, consent;
} prompt_t;

static int prompt_parse(const char *s, prompt_t *p)
{
    memset(p, 0, sizeof *p);
    size_t words = 0;
    while (s && *s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 0)
            break;
        words++;
        if (n == 4 && memcmp(s, "none", 4) == 0)
            p->none = true;
        else if (n == 5 && memcmp(s, "login", 5) == 0)
            p->login = true;
        else if (n == 7 && memcmp(s, "consent", 7) == 0)
            p->consent = true;
        else if (!(n == 14 && memcmp(s, "select_account", 14) == 0))
            return GH_EINVAL;
        s += n;
    }
    return p->none && words > 1 ? GH_EINVAL : 0;
}

static int issue_code(gh_oidc_t *o, const gh_oidc_authz_request_t *q, const gh_oidc_session_t *s,
                      int64_t now, gh_oidc_authz_t *out)
{
    gh_grant_code_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.client_id, sizeof c.client_id, "%s", out->client.client_id);
    c.user_id = s->user.id;
    snprintf(c.session_id, sizeof c.session_id, "%s", s->info.id);
    redirect_hash(q->redirect_uri, c.redirect_hash);
    if (q->code_challenge)
        snprintf(c.code_challenge, sizeof c.code_challenge, "%s", q->code_challenge);
    if (q->nonce)
        snprintf(c.nonce, sizeof c.nonce, "%s", q->nonce);
    c.scopes = out->scopes;
    c.auth_time_ms = s->info.created_at_ms;
    c.amr = s->info.amr ? s->info.amr : GH_AMR_PWD;
    uint8_t key[GH_GRANT_KEY_LEN];
    code_make(out->code, key);
    /* The store gives every code GH_GRANT_CODE_TTL_MS from `now`; a shorter lifetime (a test
     * knob) starts the code's clock that much earlier. */
    int64_t start = now;
    if (o->code_ttl_ms > 0 && o->code_ttl_ms < GH_GRANT_CODE_TTL_MS)
        start = now - (GH_GRANT_CODE_TTL_MS - o->code_ttl_ms);
    int rc = gh_grant_put_code(o->grants, key, &c, start);
    sodium_memzero(key, sizeof key);
    if (rc != 0) {
        sodium_memzero(out->code, sizeof out->code);
        out->next = GH_OIDC_NEXT_REDIRECT_ERROR;
        out->error = rc == GH_EBUSY || rc == GH_ENOMEM ? "temporarily_unavailable" : "server_error";
        out->description = "the authorization could not be stored; try again later";
        count_authz(o, GH_OIDC_AUTHZ_ERROR);
        return 0;
    }
    /* Queued, not durable: a code is worth nothing until it is exchanged (oidc.token is
     * durable), and anyone with a session can ask for codes as fast as they like. */
    gh_audit_event_t ev;
    event(o, &ev, GH_AUDIT_OIDC_AUTHORIZED, GH_AUDIT_SUCCESS, s->user.id, s->info.id);
    gh_audit_event_detail(&ev, "client=%s", out->client.client_id);
    gh_account_audit_queued(o->a, &ev);
    out->next = GH_OIDC_NEXT_CODE;
    count_authz(o, GH_OIDC_AUTHZ_CODE);
    return 0;
}

int gh_oidc_authorize(gh_oidc_t *o, const gh_oidc_authz_request_t *q, const gh_oidc_session_t *s,
                      int consent, int64_t now, gh_oidc_authz_t *out)
{
    memset(out, 0, sizeof *out);
    /* First who is asking and where the answer may go: until both are known good, nothing is
     * redirected anywhere (RFC 6749 §4.1.2.1). */
    if (q->bad_client)
        return authz_page(o, out, "client_id or redirect_uri is repeated, too long or malformed.");
    if (!q->client_id)
        return authz_page(o, out, "The request names no client (client_id is missing).");
    int rc = gh_oidc_client_get(o->a->users, q->client_id, &out->client);
    if (rc == GH_ENOTFOUND || rc == GH_EINVAL)
        return authz_page(o, out, "The application that sent you here is not registered.");
    if (rc != 0) {
        count_authz(o, GH_OIDC_AUTHZ_ERROR);
        return rc;
    }
    if (!q->redirect_uri)
        return authz_page(o, out, "The request names no redirect_uri.");
    if (!gh_oidc_client_redirect_ok(&out->client, q->redirect_uri))
        return authz_page(o, out,
                          "The redirect_uri is not one this application registered; you were "
                          "not sent back to it.");

    /* From here on errors go back to the client. */
    if (q->invalid) {
        static _Thread_local char why[96];
        snprintf(why, sizeof why, "%s %s", q->invalid_param ? q->invalid_param : "a parameter",
                 q->invalid);
        return authz_error(o, out, "invalid_request", why, GH_OIDC_AUTHZ_ERROR);
    }
    if (q->request_object)
        return authz_error(o, out, "request_not_supported", "request objects are not supported",
                           GH_OIDC_AUTHZ_ERROR);
    if (!q->response_type)
        return authz_error(o, out, "invalid_request", "response_type is required",
                           GH_OIDC_AUTHZ_ERROR);
    if (strcmp(q->response_type, "code") != 0)
        return authz_error(o, out, "unsupported_response_type", "only response_type=code",
                           GH_OIDC_AUTHZ_ERROR);
    if (q->response_mode && strcmp(q->response_mode, "query") != 0)
        return authz_error(o, out, "invalid_request", "only response_mode=query",
                           GH_OIDC_AUTHZ_ERROR);
    if (scope_parse(q->scope, &out->scopes) != 0 || !(out->scopes & GH_OIDC_SCOPE_OPENID))
        return authz_error(o, out, "invalid_scope", "scope must include openid",
                           GH_OIDC_AUTHZ_ERROR);
    if (q->code_challenge) {
        if (!q->code_challenge_method || strcmp(q->code_challenge_method, "S256") != 0)
            return authz_error(o, out, "invalid_request", "code_challenge_method must be S256",
                               GH_OIDC_AUTHZ_ERROR);
        if (!b64url_text(q->code_challenge, GH_GRANT_CHALLENGE_MAX))
            return authz_error(o, out, "invalid_request",
                               "code_challenge must be 43 base64url characters",
                               GH_OIDC_AUTHZ_ERROR);
    } else if (q->code_challenge_method) {
        return authz_error(o, out, "invalid_request", "code_challenge is missing",
                           GH_OIDC_AUTHZ_ERROR);
    } else if (out->client.is_public) {
        return authz_error(o, out, "invalid_request",
                           "a public client must use PKCE (code_challenge with S256)",
                           GH_OIDC_AUTHZ_ERROR);
    }
    prompt_t prompt;
    if (prompt_parse(q->prompt, &prompt) != 0)
        return authz_error(o, out, "invalid_request", "prompt is none, login, consent",
                           GH_OIDC_AUTHZ_ERROR);
    int64_t max_age = -1, fresh = 0;
    if (q->max_age && parse_uint(q->max_age, &max_age) != 0)
        return authz_error(o, out, "invalid_request", "max_age must be a number of seconds",
                           GH_OIDC_AUTHZ_ERROR);
    if (q->fresh && parse_uint(q->fresh, &fresh) != 0)
        return authz_error(o, out, "invalid_request", "a malformed login marker",
                           GH_OIDC_AUTHZ_ERROR);

    /* Who is signed in, and freshly enough. A login that the marker asked for (a session made
     * after the request that asked) satisfies prompt=login and max_age both, so the way back
     * never loops. */
    int64_t need_after = 0;
    if (s) {
        bool fresh_ok = fresh > 0 && s->info.created_at_ms > fresh;
        if (fresh > 0 && !fresh_ok)
            need_after = fresh;
        if (!fresh_ok && prompt.login)
            need_after = now;
        if (!fresh_ok && max_age >= 0 && now - s->info.created_at_ms > max_age * 1000)
            need_after = now;
    } else {
        need_after = fresh;
    }
    if (!s || need_after) {
        if (prompt.none)
            return authz_error(o, out, "login_required", "the user is not signed in",
                               GH_OIDC_AUTHZ_LOGIN_REQUIRED);
        out->next = GH_OIDC_NEXT_LOGIN;
        out->fresh_after_ms = need_after;
        count_authz(o, GH_OIDC_AUTHZ_LOGIN);
        return 0;
    }

    /* Consent: clients added with --consent, or any client whose request says prompt=consent. */
    if (consent < 0) {
        gh_audit_event_t ev;
        event(o, &ev, GH_AUDIT_OIDC_CONSENT, GH_AUDIT_FAILURE, s->user.id, s->info.id);
        gh_audit_event_detail(&ev, "client=%s decision=deny", out->client.client_id);
        if ((rc = gh_account_audit(o->a, &ev)) != 0)
            return rc;
        return authz_error(o, out, "access_denied", "the user denied the request",
                           GH_OIDC_AUTHZ_DENIED);
    }
    if (consent > 0) {
        rc = gh_grant_consent_put(o->grants, s->user.id, out->client.client_id, out->scopes, now);
        if (rc != 0)
            return rc;
        gh_audit_event_t ev;
        char text[64];
        gh_oidc_scope_text(out->scopes, text, sizeof text);
        event(o, &ev, GH_AUDIT_OIDC_CONSENT, GH_AUDIT_SUCCESS, s->user.id, s->info.id);
        gh_audit_event_detail(&ev, "client=%s decision=allow scope=%s", out->client.client_id,
                              text);
        if ((rc = gh_account_audit(o->a, &ev)) != 0)
            return rc;
    } else if (out->client.consent || prompt.consent) {
        uint32_t given = 0;
        rc = out->client.consent
                 ? gh_grant_consent_get(o->grants, s->user.id, out->client.client_id, &given)
                 : GH_ENOTFOUND;
        if (rc != 0 && rc != GH_ENOTFOUND)
            return rc;
        bool covered = rc == 0 && (given & out->scopes) == out->scopes;
        if (prompt.consent || !covered) {
            if (prompt.none)
                return authz_error(o, out, "consent_required",
                                   "the user has not consented to this client",
                                   GH_OIDC_AUTHZ_CONSENT_REQUIRED);
            out->next = GH_OIDC_NEXT_CONSENT;
            count_authz(o, GH_OIDC_AUTHZ_CONSENT);
            return 0;
        }
    }
    return issue_code(o, q, s, now, out);
}

/* ---- client authentication ---- */

int gh_oidc_client_auth(gh_oidc_t *o, const gh_oidc_client_cred_t *cred, gh_oidc_client_t *client,
                        int64_t *retry_ms)
{
    *retry_ms = 0;
    if (cred->both)
        return GH_EINVAL;
    if (!cred->id || !*cred->id)
        return GH_EOAUTHCLIENT;
    gh_ratelimit_t *rl = o->a->ratelimit;
    int64_t now = gh_clock_mono_ns() / 1000000;
    if (rl && gh_ratelimit_ip_take(rl, &o->a->caller.ip, now, retry_ms) != 0)
        return GH_ELIMIT;
    int rc = gh_oidc_client_authenticate(o->a->users, o->a->secret_key, cred->id, cred->secret,
                                         cred->secret ? cred->secret_len : 0, client);
    if (rc == 0) {
        if (rl)
            gh_ratelimit_ip_refund(rl, &o->a->caller.ip, now);
        return 0;
    }
    if (rc == GH_EAUTH || rc == GH_ENOTFOUND || rc == GH_EINVAL) {
        char addr[GH_IP_STR];
        gh_ip_format(&o->a->caller.ip, addr);
        GH_LOG(GH_LOG_INFO, "oidc client authentication failed", GH_LS("client", addr));
        return GH_EOAUTHCLIENT;
    }
    if (rl) /* the store failed: not the client's attempt */
        gh_ratelimit_ip_refund(rl, &o->a->caller.ip, now);
    return rc;
}

/* ---- grants ---- */

/* The user of a grant, as a token may be issued to them now: live and enabled. */
static int live_user(gh_oidc_t *o, uint64_t user_id, gh_user_t *out)
{
    int rc = gh_user_get_by_id_cached(o->a->users, user_id, out);
    sodium_memzero(out->password_hash, sizeof out->password_hash);
    if (rc == GH_ENOTFOUND || (rc == 0 && out->disabled))
        return GH_EOAUTHGRANT;
    return rc;
}

/* True when the Gatehouse session a code was issued in still lives: a code issued before a
 * logout must not start a grant after it (the logout ended that session's grants already).
 * Store errors answer false as well (the exchange is refused, the client may start again). */
static bool session_alive(gh_oidc_t *o, uint64_t user_id, const char *session_id, int64_t now)
{
    size_t cap = o->a->max_sessions_per_user ? o->a->max_sessions_per_user : 1, n = 0;
    gh_session_info_t *list = gh_mem_alloc(GH_MEM_HTTP, cap * sizeof *list);
    if (!list)
        return false;
    bool alive = false;
    if (gh_session_list_user(o->a->sessions, user_id, now, list, cap, &n) == 0)
        for (size_t i = 0; i < n && !alive; i++)
            alive = strcmp(list[i].id, session_id) == 0;
    gh_mem_free(GH_MEM_HTTP, list);
    return alive;
}

/* A new family's or a rotation's pair of tokens. */
static void new_pair(const uint8_t id[GH_GRANT_FAMILY_ID_LEN], gh_oidc_grant_t *out,
                     uint8_t refresh_hash[GH_GRANT_HASH_LEN],
                     uint8_t access_hash[GH_GRANT_HASH_LEN])
{
    gh_oidc_token_make(GH_OIDC_REFRESH_PREFIX, id, out->refresh_token, refresh_hash);
    gh_oidc_token_make(GH_OIDC_ACCESS_PREFIX, id, out->access_token, access_hash);
}

static bool pkce_ok(const char *challenge, const char *verifier)
{
    size_t n = strlen(verifier);
    if (n < 43 || n > 128) /* RFC 7636 §4.1 */
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = verifier[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~'))
            return false;
    }
    uint8_t digest[crypto_hash_sha256_BYTES];
    char want[GH_BASE64URL_LEN(crypto_hash_sha256_BYTES) + 1];
    crypto_hash_sha256(digest, (const uint8_t *)verifier, n);
    gh_base64url_encode(digest, sizeof digest, want);
    return strlen(challenge) == strlen(want) && sodium_memcmp(want, challenge, strlen(want)) == 0;
}

static int code_grant(gh_oidc_t *o, const gh_oidc_client_t *client,
                      const gh_oidc_token_request_t *q, int64_t now, gh_oidc_grant_t *out)
{
    if (!q->code) {
        out->description = "code is required";
        return GH_EINVAL;
    }
    if (!q->redirect_uri) {
        out->description = "redirect_uri is required";
        return GH_EINVAL;
    }
    uint8_t key[GH_GRANT_KEY_LEN];
    if (code_read(q->code, key) != 0) {
        out->description = "the code is not one this server issued";
        return GH_EOAUTHGRANT;
    }
    gh_grant_code_t c;
    int rc = gh_grant_take_code(o->grants, key, now, &c);
    if (rc == GH_EREPLAY) {
        /* A code used twice: someone else has it. What its first use issued is revoked. */
        size_t revoked = 0;
        if (c.has_family && gh_grant_family_revoke(o->grants, c.family_id) == 0)
            revoked = 1;
        gh_audit_event_t ev;
        event(o, &ev, GH_AUDIT_OIDC_TOKEN, GH_AUDIT_FAILURE, 0, NULL);
        gh_audit_event_detail(&ev, "client=%s reason=code_replay families_revoked=%zu",
                              client->client_id, revoked);
        GH_IGNORE(gh_account_audit(o->a, &ev));
        GH_LOG(GH_LOG_WARN, "oidc code replayed", GH_LS("client_id", client->client_id),
               GH_LI("families_revoked", revoked));
        out->description = "the code was used already; what it issued is revoked";
        return GH_EOAUTHGRANT;
    }
    if (rc == GH_ENOTFOUND) {
        out->description = "the code is unknown or expired";
        return GH_EOAUTHGRANT;
    }
    if (rc != 0)
        return rc;
    uint8_t rh[GH_GRANT_REDIRECT_HASH_LEN];
    redirect_hash(q->redirect_uri, rh);
    if (strcmp(c.client_id, client->client_id) != 0) {
        out->description = "the code was issued to another client";
        rc = GH_EOAUTHGRANT;
    } else if (sodium_memcmp(rh, c.redirect_hash, sizeof rh) != 0) {
        out->description = "redirect_uri is not the one the code was issued for";
        rc = GH_EOAUTHGRANT;
    } else if (c.code_challenge[0] && !q->code_verifier) {
        out->description = "code_verifier is required";
        rc = GH_EOAUTHGRANT;
    } else if (c.code_challenge[0] && !pkce_ok(c.code_challenge, q->code_verifier)) {
        out->description = "code_verifier does not match the code_challenge";
        rc = GH_EOAUTHGRANT;
    } else if (!c.code_challenge[0] && q->code_verifier) {
        out->description = "code_verifier given for a code issued without a code_challenge";
        rc = GH_EOAUTHGRANT;
    } else if ((rc = live_user(o, c.user_id, &out->user)) == GH_EOAUTHGRANT) {
        out->description = "the user can no longer sign in";
    } else if (rc == 0 && !session_alive(o, c.user_id, c.session_id, now)) {
        out->description = "the session the code was issued in has ended";
        rc = GH_EOAUTHGRANT;
    }
    if (rc != 0)
        goto out;

    gh_grant_family_t f;
    memset(&f, 0, sizeof f);
    randombytes_buf(f.id, sizeof f.id);
    snprintf(f.client_id, sizeof f.client_id, "%s", client->client_id);
    f.user_id = c.user_id;
    snprintf(f.session_id, sizeof f.session_id, "%s", c.session_id);
    f.scopes = c.scopes;
    f.amr = c.amr;
    f.auth_time_ms = c.auth_time_ms;
    new_pair(f.id, out, f.refresh_hash, f.access_hash);
    f.access_expires_at_ms = now + o->access_ttl_ms;
    rc = gh_grant_family_create(o->grants, &f, now, &out->family);
    if (rc != 0)
        goto out;
    /* A replay of this code from now on revokes this family. */
    GH_IGNORE(gh_grant_code_bind_family(o->grants, key, f.id, now));
    snprintf(out->nonce, sizeof out->nonce, "%s", c.nonce);
    gh_audit_event_t ev;
    event(o, &ev, GH_AUDIT_OIDC_TOKEN, GH_AUDIT_SUCCESS, c.user_id, c.session_id);
    gh_audit_event_detail(&ev, "client=%s grant=authorization_code", client->client_id);
    if ((rc = gh_account_audit(o->a, &ev)) != 0) {
        GH_IGNORE(gh_grant_family_revoke(o->grants, f.id));
        goto out;
    }
    out->expires_in_s = o->access_ttl_ms / 1000;
out:
    if (rc != 0) {
        sodium_memzero(out->access_token, sizeof out->access_token);
        sodium_memzero(out->refresh_token, sizeof out->refresh_token);
    }
    sodium_memzero(key, sizeof key);
    sodium_memzero(&c, sizeof c);
    return rc;
}

static int refresh_grant(gh_oidc_t *o, const gh_oidc_client_t *client,
                         const gh_oidc_token_request_t *q, int64_t now, gh_oidc_grant_t *out)
{
    if (!q->refresh_token) {
        out->description = "refresh_token is required";
        return GH_EINVAL;
    }
    uint8_t id[GH_GRANT_FAMILY_ID_LEN], presented[GH_GRANT_HASH_LEN];
    if (gh_oidc_token_read(q->refresh_token, GH_OIDC_REFRESH_PREFIX, id, presented) != 0) {
        out->description = "the refresh token is not one this server issued";
        return GH_EOAUTHGRANT;
    }
    gh_grant_family_t f;
    int rc = gh_grant_family_get(o->grants, id, now, &f);
    if (rc == GH_ENOTFOUND) {
        out->description = "the refresh token is unknown, expired or revoked";
        return GH_EOAUTHGRANT;
    }
    if (rc != 0)
        return rc;
    if (strcmp(f.client_id, client->client_id) != 0) {
        out->description = "the refresh token was issued to another client";
        return GH_EOAUTHGRANT;
    }
    if (q->scope) {
        uint32_t asked;
        if (scope_parse(q->scope, &asked) != 0 || (asked & f.scopes) != asked) {
            out->description = "scope may only narrow what was granted";
            return GH_EOAUTHSCOPE;
        }
    }
    uint8_t rh[GH_GRANT_HASH_LEN], ah[GH_GRANT_HASH_LEN];
    new_pair(id, out, rh, ah);
    rc = gh_grant_family_rotate(o->grants, id, presented, rh, ah, now + o->access_ttl_ms, now,
                                &out->family);
    if (rc == GH_EREUSE) {
        if (o->count_reuse)
            o->count_reuse(o->count_ctx);
        gh_audit_event_t ev;
        event(o, &ev, GH_AUDIT_OIDC_REFRESH_REUSE, GH_AUDIT_FAILURE, out->family.user_id,
              out->family.session_id);
        gh_audit_event_detail(&ev, "client=%s generation=%u family revoked", client->client_id,
                              (unsigned)out->family.generation);
        GH_IGNORE(gh_account_audit(o->a, &ev));
        GH_LOG(GH_LOG_WARN, "oidc refresh token reused: family revoked",
               GH_LS("client_id", client->client_id), GH_LI("user_id", out->family.user_id));
        out->description = "the refresh token was used already; the grant is revoked";
        rc = GH_EOAUTHGRANT;
    } else if (rc == GH_ENOTFOUND) {
        out->description = "the refresh token is unknown, expired or revoked";
        rc = GH_EOAUTHGRANT;
    } else if (rc == 0 && (rc = live_user(o, f.user_id, &out->user)) == GH_EOAUTHGRANT) {
        GH_IGNORE(gh_grant_family_revoke(o->grants, id));
        out->description = "the user can no longer sign in";
    }
    if (rc != 0) {
        sodium_memzero(out->access_token, sizeof out->access_token);
        sodium_memzero(out->refresh_token, sizeof out->refresh_token);
        return rc;
    }
    out->expires_in_s = o->access_ttl_ms / 1000;
    return 0;
}

int gh_oidc_token(gh_oidc_t *o, const gh_oidc_client_cred_t *cred, const gh_oidc_token_request_t *q,
                  int64_t now, gh_oidc_grant_t *out)
{
    memset(out, 0, sizeof *out);
    gh_oidc_grant_type_t type;
    int rc;
    if (!q->grant_type) {
        out->description = "grant_type is required";
        return GH_EINVAL;
    }
    if (strcmp(q->grant_type, "authorization_code") == 0) {
        type = GH_OIDC_GRANT_CODE;
    } else if (strcmp(q->grant_type, "refresh_token") == 0) {
        type = GH_OIDC_GRANT_REFRESH;
    } else {
        out->description = "grant_type is authorization_code or refresh_token";
        return GH_EGRANTTYPE;
    }
    rc = gh_oidc_client_auth(o, cred, &out->client, &out->retry_ms);
    if (rc == GH_EINVAL)
        out->description = "use one client authentication method, not two";
    else if (rc == GH_EOAUTHCLIENT)
        out->description = "client authentication failed";
    else if (rc == 0 && q->invalid)
        rc = GH_EINVAL; /* the caller words it */
    else if (rc == 0)
        rc = type == GH_OIDC_GRANT_CODE ? code_grant(o, &out->client, q, now, out)
                                        : refresh_grant(o, &out->client, q, now, out);
    if (rc != GH_ELIMIT)
        count_grant(o, type, rc == 0 ? "ok" : oauth_error_name(rc));
    return rc;
}

/* ---- revocation, introspection, userinfo ---- */

/* Finds the live family of an access or refresh token: 0 with *info (active), GH_ENOTFOUND. */
static int token_lookup(gh_oidc_t *o, const char *token, int64_t now, bool access_only,
                        gh_oidc_token_info_t *info)
{
    uint8_t id[GH_GRANT_FAMILY_ID_LEN], h[GH_GRANT_HASH_LEN];
    memset(info, 0, sizeof *info);
    if (gh_oidc_token_read(token, GH_OIDC_ACCESS_PREFIX, id, h) == 0) {
        int rc = gh_grant_family_check_access(o->grants, id, h, now, &info->family);
        if (rc != 0)
            return rc;
        info->exp_ms = info->family.access_expires_at_ms;
        info->iat_ms = info->exp_ms - o->access_ttl_ms;
    } else if (!access_only && gh_oidc_token_read(token, GH_OIDC_REFRESH_PREFIX, id, h) == 0) {
        int rc = gh_grant_family_get(o->grants, id, now, &info->family);
        if (rc != 0)
            return rc;
        if (sodium_memcmp(h, info->family.refresh_hash, sizeof h) != 0)
            return GH_ENOTFOUND; /* a spent one: not active (reuse is the token endpoint's) */
        info->refresh = true;
        info->exp_ms = info->family.expires_at_ms;
        info->iat_ms = info->family.created_at_ms;
    } else {
        return GH_ENOTFOUND;
    }
    /* The client must still exist: one deleted from the command line (or through another node)
     * leaves its grants in this node's grant store, and they end here, at their next use. */
    gh_oidc_client_t *c = gh_mem_alloc(GH_MEM_HTTP, sizeof *c);
    if (!c)
        return GH_ENOMEM;
    int rc = gh_oidc_client_get(o->a->users, info->family.client_id, c);
    gh_mem_free(GH_MEM_HTTP, c);
    if (rc == GH_ENOTFOUND) {
        int revoked = gh_grant_family_revoke(o->grants, id);
        (void)revoked; /* gone already, or the store failed: the token is refused either way */
        memset(info, 0, sizeof *info);
        return GH_ENOTFOUND;
    }
    if (rc != 0)
        return rc;
    info->active = true;
    return 0;
}

int gh_oidc_revoke(gh_oidc_t *o, const gh_oidc_client_t *client, const char *token, int64_t now)
{
    uint8_t id[GH_GRANT_FAMILY_ID_LEN], h[GH_GRANT_HASH_LEN];
    if (!token || (gh_oidc_token_read(token, GH_OIDC_ACCESS_PREFIX, id, h) != 0 &&
                   gh_oidc_token_read(token, GH_OIDC_REFRESH_PREFIX, id, h) != 0))
        return 0;
    gh_grant_family_t f;
    int rc = gh_grant_family_get(o->grants, id, now, &f);
    if (rc == GH_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    /* The token must be the family's, current or spent: a forged one naming a family id is not
     * enough. A spent refresh token still revokes (its holder wants it dead). */
    bool mine = strcmp(f.client_id, client->client_id) == 0;
    bool current = sodium_memcmp(h, f.access_hash, sizeof h) == 0 ||
                   sodium_memcmp(h, f.refresh_hash, sizeof h) == 0;
    if (!mine || !current)
        return 0;
    rc = gh_grant_family_revoke(o->grants, id);
    if (rc == GH_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    gh_audit_event_t ev;
    event(o, &ev, GH_AUDIT_OIDC_REVOKED, GH_AUDIT_SUCCESS, f.user_id, f.session_id);
    gh_audit_event_detail(&ev, "client=%s by=rfc7009", client->client_id);
    return gh_account_audit(o->a, &ev);
}

int gh_oidc_introspect(gh_oidc_t *o, const gh_oidc_client_t *client, const char *token, int64_t now,
                       gh_oidc_token_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (client->is_public)
        return GH_EOAUTHCLIENT;
    if (!token)
        return GH_EINVAL;
    int rc = token_lookup(o, token, now, false, out);
    if (rc == GH_ENOTFOUND) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = live_user(o, out->family.user_id, &out->user);
    if (rc == GH_EOAUTHGRANT) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    return rc;
}

int gh_oidc_userinfo(gh_oidc_t *o, const char *access_token, int64_t now, gh_oidc_token_info_t *out)
{
    int rc = token_lookup(o, access_token, now, true, out);
    if (rc == GH_ENOTFOUND)
        return GH_EOAUTHTOKEN;
    if (rc != 0)
        return rc;
    rc = live_user(o, out->family.user_id, &out->user);
    return rc == GH_EOAUTHGRANT ? GH_EOAUTHTOKEN : rc;
}

/* ---- RP-initiated logout ---- */

/* The client an id_token_hint names (its aud), when it is a token this issuer signed. */
static int hint_client(gh_oidc_t *o, const char *hint, char client_id[GH_OIDC_CLIENT_ID_MAX + 1])
{
    char *payload = NULL;
    size_t plen = 0;
    int rc = gh_oidc_keys_verify(o->keys, hint, strlen(hint), &payload, &plen);
    if (rc != 0)
        return GH_EINVAL;
    json_error_t jerr;
    json_t *j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, &jerr);
    gh_jwt_free(payload);
    rc = GH_EINVAL;
    if (j) {
        const char *iss = json_string_value(json_object_get(j, "iss"));
        json_t *aud = json_object_get(j, "aud");
        const char *a = json_is_string(aud)  ? json_string_value(aud)
                        : json_is_array(aud) ? json_string_value(json_array_get(aud, 0))
                                             : NULL;
        if (iss && strcmp(iss, o->issuer) == 0 && a && strlen(a) <= GH_OIDC_CLIENT_ID_MAX) {
            snprintf(client_id, GH_OIDC_CLIENT_ID_MAX + 1, "%s", a);
            rc = 0;
        }
        json_decref(j);
    }
    return rc;
}

int gh_oidc_end_session(gh_oidc_t *o, const gh_oidc_token_request_t *q, const uint8_t *session_hash,
                        bool *redirect_ok)
{
    *redirect_ok = false;
    char from_hint[GH_OIDC_CLIENT_ID_MAX + 1] = "";
    if (q->id_token_hint && hint_client(o, q->id_token_hint, from_hint) != 0)
        return GH_EINVAL;
    if (from_hint[0] && q->client_id && strcmp(from_hint, q->client_id) != 0)
        return GH_EINVAL;
    const char *client_id = from_hint[0] ? from_hint : q->client_id;
    if (session_hash) {
        int rc = gh_account_logout(o->a, session_hash);
        if (rc != 0)
            return rc;
    }
    if (client_id && q->post_logout_redirect_uri) {
        gh_oidc_client_t c;
        int rc = gh_oidc_client_get(o->a->users, client_id, &c);
        *redirect_ok =
            rc == 0 && gh_oidc_client_logout_redirect_ok(&c, q->post_logout_redirect_uri);
        if (rc != 0 && rc != GH_ENOTFOUND && rc != GH_EINVAL)
            return rc;
    }
    return 0;
}
