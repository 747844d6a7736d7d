/*
 * oidc.h — the OpenID Connect provider's protocol as workflows of the account service (issue
 * #21): the authorization decision, codes, the code and refresh grants, revocation (RFC 7009),
 * introspection (RFC 7662), userinfo and RP-initiated logout. No HTTP and no JSON: the handlers
 * (src/api/oidc.c) parse the parameters (src/api/oidc_params.c) into the request structs below,
 * call these, and render the results; failures are GH_E… codes that the one error table of
 * src/api/request.c turns into RFC 6749 error bodies on the OAuth routes.
 *
 * The one design decision: every token the provider hands out is opaque and checked against the
 * grant store (store/grant.h), exactly as a session token is checked against the session store,
 * so revoking a family — by RFC 7009, by a replayed code, by a spent refresh token coming back,
 * or by logging out of Gatehouse — takes effect on the next request everywhere. The access and
 * refresh tokens carry their family's id, so a check is one lookup and a family costs fixed
 * bytes however often it is refreshed.
 *
 * Thread safety: a gh_oidc_t is read-only after set-up (the HTTP side builds one per request on
 * its stack); every function may be called from any thread.
 */
#ifndef GH_ACCOUNT_OIDC_H
#define GH_ACCOUNT_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "account/account.h"
#include "account/oidc_keys.h"
#include "store/grant.h"

/* Token shapes (BRIEF: 256-bit secrets, base64url, only their hash is stored). */
#define GH_OIDC_CODE_PREFIX "ghc_"
#define GH_OIDC_ACCESS_PREFIX "gha_"
#define GH_OIDC_REFRESH_PREFIX "ghr_"
#define GH_OIDC_CODE_LEN (4 + 43)  /* ghc_ + base64url(32 bytes) */
#define GH_OIDC_TOKEN_LEN (4 + 64) /* gha_/ghr_ + base64url(family id 16 ‖ 32 random bytes) */

/* Parameter limits the parsers apply (bytes, before any other check). */
#define GH_OIDC_SCOPE_MAX 256
#define GH_OIDC_STATE_MAX 512
#define GH_OIDC_NONCE_MAX GH_GRANT_NONCE_MAX
/* The marker a login redirect carries so that the next visit needs a session made at or after
 * the given time (prompt=login, max_age): ms since the epoch. */
#define GH_OIDC_FRESH_PARAM "gh_fresh"

/* Authorization outcomes: labels of gatehouse_oidc_authorizations_total{result}. */
#define GH_OIDC_AUTHZ_RESULT_MAP(X)                                                                \
    X(CODE, "code")                                                                                \
    X(LOGIN, "login")                                                                              \
    X(CONSENT, "consent")                                                                          \
    X(DENIED, "denied")                                                                            \
    X(LOGIN_REQUIRED, "login_required")                                                            \
    X(CONSENT_REQUIRED, "consent_required")                                                        \
    X(ERROR, "error")

typedef enum {
#define GH__OIDC_AUTHZ_ENUM(e, n) GH_OIDC_AUTHZ_##e,
    GH_OIDC_AUTHZ_RESULT_MAP(GH__OIDC_AUTHZ_ENUM)
#undef GH__OIDC_AUTHZ_ENUM
        GH_OIDC_AUTHZ__COUNT
} gh_oidc_authz_result_t;

typedef enum {
    GH_OIDC_GRANT_CODE = 0,
    GH_OIDC_GRANT_REFRESH,
    GH_OIDC_GRANT__COUNT
} gh_oidc_grant_type_t;

/* Everything the workflows use; the caller owns every pointer. */
typedef struct {
    gh_account_t *a; /* users, sessions, throttles, the audit trail, the caller, secret_key */
    gh_grant_store_t *grants;
    gh_oidc_keys_t *keys;
    const char *issuer;    /* no trailing slash */
    int64_t access_ttl_ms; /* --oidc-access-ttl; the ID token lives as long */
    int64_t code_ttl_ms;   /* GH_GRANT_CODE_TTL_MS; shorter only under a test knob */
    /* Counters (gatehouse_oidc_*); NULL: none. result of a grant: "ok" or the OAuth error. */
    void (*count_authz)(void *ctx, gh_oidc_authz_result_t result);
    void (*count_grant)(void *ctx, gh_oidc_grant_type_t type, const char *result);
    void (*count_reuse)(void *ctx);
    void *count_ctx;
} gh_oidc_t;

/* ---- the authorization request ---- */

/* The parameters as parsed (src/api/oidc_params.c): NULL when absent or empty. */
typedef struct {
    const char *client_id, *redirect_uri, *response_type, *scope, *state, *nonce;
    const char *code_challenge, *code_challenge_method, *prompt, *max_age, *response_mode;
    const char *fresh;   /* GH_OIDC_FRESH_PARAM */
    bool request_object; /* request or request_uri was given: request_not_supported */
    bool bad_client;     /* client_id or redirect_uri was repeated, too long or held NUL */
    const char *invalid; /* another parameter's first problem ("is too long"), or NULL */
    const char *invalid_param;
} gh_oidc_authz_request_t;

/* What the endpoint does next. */
typedef enum {
    GH_OIDC_NEXT_PAGE_ERROR,     /* client_id / redirect_uri unusable: an error page, 400 */
    GH_OIDC_NEXT_REDIRECT_ERROR, /* error / description to the client's redirect_uri */
    GH_OIDC_NEXT_LOGIN,          /* 303 to the login page, back to this request afterwards */
    GH_OIDC_NEXT_CONSENT,        /* the consent page */
    GH_OIDC_NEXT_CODE,           /* code to the client's redirect_uri */
} gh_oidc_next_t;

typedef struct {
    gh_oidc_next_t next;
    const char *error;       /* REDIRECT_ERROR: the OAuth error code */
    const char *description; /* PAGE_ERROR, REDIRECT_ERROR: the sentence */
    gh_oidc_client_t client; /* all but PAGE_ERROR */
    uint32_t scopes;         /* GH_OIDC_SCOPE_* asked for (and granted with CODE) */
    /* LOGIN: the next visit needs a session made at or after this (prompt=login, max_age
     * exceeded); 0 when any session will do. */
    int64_t fresh_after_ms;
    char code[GH_OIDC_CODE_LEN + 1]; /* CODE; wipe after use */
} gh_oidc_authz_t;

/* The caller's Gatehouse session, when it has one (the user is checked live and enabled). */
typedef struct {
    gh_session_info_t info;
    gh_user_t user;
} gh_oidc_session_t;

/* The decision. consent: 0 none given in this request (stored consents count), 1 the consent
 * form's Allow (stored here), -1 its Deny. 0 with out->next; store errors (GH_ESTORE, GH_EBUSY
 * at a bound under refuse, GH_ENOMEM), which the caller reports to the client's redirect_uri
 * as server_error / temporarily_unavailable when out->next is REDIRECT_ERROR-capable. Counts
 * gatehouse_oidc_authorizations_total and audits oidc.authorized / oidc.consent. */
int gh_oidc_authorize(gh_oidc_t *o, const gh_oidc_authz_request_t *q, const gh_oidc_session_t *s,
                      int consent, int64_t now_ms, gh_oidc_authz_t *out) GH_WUR;

/* The space-separated scope names of bits (into out, cap bytes). */
void gh_oidc_scope_text(uint32_t scopes, char *out, size_t cap);

/* ---- the token endpoint and its neighbours ---- */

/* Form parameters of /oidc/token, /oidc/revoke, /oidc/introspect, /oidc/logout: NULL when
 * absent or empty. */
typedef struct {
    const char *grant_type, *code, *redirect_uri, *code_verifier, *refresh_token;
    const char *client_id, *client_secret, *scope, *token, *token_type_hint;
    const char *id_token_hint, *post_logout_redirect_uri, *state;
    const char *invalid; /* the first problem ("is given more than once"), or NULL */
    const char *invalid_param;
} gh_oidc_token_request_t;

/* A client's credentials as the request gave them: HTTP Basic (client_secret_basic) or the
 * body (client_secret_post), or client_id alone (a public client). */
typedef struct {
    const char *id;
    const char *secret; /* NULL: none */
    size_t secret_len;
    bool basic; /* from the Authorization header */
    bool both;  /* the header AND body credentials: invalid_request */
} gh_oidc_client_cred_t;

/* Authenticates the client (a failure counts against the caller's per-IP throttle, a success
 * gives its attempt back). 0 and *client; GH_EOAUTHCLIENT (invalid_client); GH_ELIMIT (the
 * throttle; *retry_ms); GH_EINVAL (no client_id, or two methods at once); store errors. */
int gh_oidc_client_auth(gh_oidc_t *o, const gh_oidc_client_cred_t *cred, gh_oidc_client_t *client,
                        int64_t *retry_ms) GH_WUR;

/* A successful grant: the tokens and what the ID token says. */
typedef struct {
    gh_oidc_client_t client;                   /* the authenticated client */
    int64_t retry_ms;                          /* GH_ELIMIT: the wait */
    char access_token[GH_OIDC_TOKEN_LEN + 1];  /* wipe after use */
    char refresh_token[GH_OIDC_TOKEN_LEN + 1]; /* wipe after use */
    int64_t expires_in_s;
    gh_grant_family_t family;           /* client, user, session, scopes, amr, auth_time */
    char nonce[GH_GRANT_NONCE_MAX + 1]; /* the code grant's nonce ("" none, and on refresh) */
    gh_user_t user;                     /* the user now (no hash) */
    const char *description;            /* a failure's error_description, or NULL */
} gh_oidc_grant_t;

/* POST /oidc/token: authenticates the client (gh_oidc_client_auth: GH_EOAUTHCLIENT, GH_ELIMIT
 * with out->retry_ms), then grant_type authorization_code (code, redirect_uri, code_verifier)
 * or refresh_token (refresh_token, optional narrower scope). 0 and *out; GH_EINVAL
 * (invalid_request), GH_EOAUTHGRANT (invalid_grant; a replayed code revokes the family it
 * issued, a spent refresh token revokes its family: both audited), GH_EGRANTTYPE
 * (unsupported_grant_type), GH_EOAUTHSCOPE (invalid_scope), store errors; out->description says
 * more. Counts gatehouse_oidc_token_grants_total. */
int gh_oidc_token(gh_oidc_t *o, const gh_oidc_client_cred_t *cred, const gh_oidc_token_request_t *q,
                  int64_t now_ms, gh_oidc_grant_t *out) GH_WUR;

/* RFC 7009: revokes the family of an access or refresh token the client holds. Unknown,
 * malformed, expired or another client's tokens are answered 0 all the same (nothing done). */
int gh_oidc_revoke(gh_oidc_t *o, const gh_oidc_client_t *client, const char *token,
                   int64_t now_ms) GH_WUR;

/* What a token is (introspection, userinfo). */
typedef struct {
    bool active;
    bool refresh; /* a refresh token (else an access token) */
    gh_grant_family_t family;
    gh_user_t user;
    int64_t exp_ms, iat_ms;
} gh_oidc_token_info_t;

/* RFC 7662 for an authenticated confidential client (a public one: GH_EOAUTHCLIENT): 0 with
 * out->active false for anything not live. */
int gh_oidc_introspect(gh_oidc_t *o, const gh_oidc_client_t *client, const char *token,
                       int64_t now_ms, gh_oidc_token_info_t *out) GH_WUR;

/* The access token's user for /oidc/userinfo: 0; GH_EOAUTHTOKEN (invalid_token) for anything
 * not a live access token, or a user who is gone or disabled. */
int gh_oidc_userinfo(gh_oidc_t *o, const char *access_token, int64_t now_ms,
                     gh_oidc_token_info_t *out) GH_WUR;

/* RP-initiated logout. id_token_hint (verified against the published keys; an expired one is
 * fine) and/or client_id name the client; post_logout_redirect_uri must be one of its
 * post-logout URIs exactly. session_hash: the caller's Gatehouse session (NULL: none), which
 * ends (with every family issued in it). *redirect_ok: the URI may be used. 0; GH_EINVAL when
 * the hint and client_id disagree or the hint is not ours. */
int gh_oidc_end_session(gh_oidc_t *o, const gh_oidc_token_request_t *q, const uint8_t *session_hash,
                        bool *redirect_ok) GH_WUR;

/* ---- what other workflows call when sessions end (account.c, email.c, mfa.c) ---- */

/* Ends the families issued in the session (by its public id) / of the user. No grant store
 * (a->grants NULL): nothing. Errors are logged, never fail the calling workflow. */
void gh_oidc_end_session_grants(gh_account_t *a, const char *session_id);
void gh_oidc_end_user_grants(gh_account_t *a, uint64_t user_id);
/* Ends every family and consent of a deleted client (account/oidc_admin.c). */
void gh_oidc_end_client_grants(gh_account_t *a, const char *client_id);

/* Builds and parses tokens (exposed for the tests). */
void gh_oidc_token_make(const char *prefix, const uint8_t family_id[GH_GRANT_FAMILY_ID_LEN],
                        char out[GH_OIDC_TOKEN_LEN + 1], uint8_t hash[GH_GRANT_HASH_LEN]);
/* 0 with the family id and the hash when token has prefix and the exact form; GH_EINVAL. */
int gh_oidc_token_read(const char *token, const char *prefix,
                       uint8_t family_id[GH_GRANT_FAMILY_ID_LEN],
                       uint8_t hash[GH_GRANT_HASH_LEN]) GH_WUR;

/* The RFC 8176 amr values of the GH_AMR_* bits, as a JSON-free list into out (n names, at most
 * 4); and the acr. */
size_t gh_oidc_amr_names(uint8_t amr, const char *out[4]);
const char *gh_oidc_acr(uint8_t amr);

#endif
