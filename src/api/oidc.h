/*
 * oidc.h (api) — the HTTP side of the OpenID Connect provider: the handlers of /oidc/authorize,
 * /oidc/consent, /oidc/token, /oidc/userinfo, /oidc/revoke, /oidc/introspect and /oidc/logout
 * (oidc.c), the bounded parameter parsers they share with the fuzz targets (oidc_params.c), and
 * the counters metrics.c keeps for them. The protocol itself is the account service's
 * (account/oidc.h).
 */
#ifndef GH_API_OIDC_H
#define GH_API_OIDC_H

#include <stdbool.h>
#include <stddef.h>

#include "account/oidc.h"
#include "api/api.h"

/* ---- parameters (oidc_params.c) ---- */

/* Arguments one request may carry (query or form); more is invalid_request. */
#define GH_OIDC_ARGS_MAX 32
/* Parameters one endpoint reads at most. */
#define GH_OIDC_PARAMS_MAX 16

typedef struct {
    const char *name;
    size_t max; /* bytes of the decoded value */
} gh_oidc_param_t;

typedef struct {
    const char *value[GH_OIDC_PARAMS_MAX]; /* NULL: absent, empty or refused */
    bool seen[GH_OIDC_PARAMS_MAX];
    bool bad[GH_OIDC_PARAMS_MAX]; /* repeated, too long or holding NUL */
    const char *why;              /* the first problem ("is given more than once"), or NULL */
    int bad_index;                /* its parameter, -1 for one of the request as a whole */
} gh_oidc_params_t;

/* Reads the parameters of spec out of args (decoded name/value pairs, in order): unknown
 * names are ignored, an empty value counts as absent (RFC 6749 §3.1), and a parameter of spec
 * that is repeated, longer than its max or holds a NUL byte is refused (bad, and `why`).
 * Returns 0, or GH_EINVAL when spec is larger than GH_OIDC_PARAMS_MAX (a caller's bug). */
int gh_oidc_params_read(const gh_req_arg_t *args, size_t nargs, const gh_oidc_param_t *spec,
                        size_t nspec, gh_oidc_params_t *out) GH_WUR;
/* Splits an application/x-www-form-urlencoded body into decoded pairs in pool: up to max into
 * out, *n how many there are. 0; GH_EINVAL for a malformed escape; GH_ENOMEM (the pool). */
int gh_oidc_form_split(gh_pool_t *pool, const char *body, size_t len, gh_req_arg_t *out, size_t max,
                       size_t *n) GH_WUR;

/* The authorization request from its arguments (a query string's or a form body's). */
int gh_oidc_authz_parse(const gh_req_arg_t *args, size_t nargs,
                        gh_oidc_authz_request_t *out) GH_WUR;
/* The token endpoint's (and revoke's, introspect's, logout's) parameters from a form body:
 * 0 (a malformed body is out->invalid, not an error); GH_ENOMEM. */
int gh_oidc_token_parse(gh_pool_t *pool, const char *body, size_t len,
                        gh_oidc_token_request_t *out) GH_WUR;
int gh_oidc_token_parse_args(const gh_req_arg_t *args, size_t nargs,
                             gh_oidc_token_request_t *out) GH_WUR;

/* ---- handlers (oidc.c) ---- */
void gh_api_oidc_authorize(gh_req_t *r);  /* GET, POST /oidc/authorize */
void gh_api_oidc_consent(gh_req_t *r);    /* POST /oidc/consent */
void gh_api_oidc_token(gh_req_t *r);      /* POST /oidc/token */
void gh_api_oidc_userinfo(gh_req_t *r);   /* GET, POST /oidc/userinfo */
void gh_api_oidc_revoke(gh_req_t *r);     /* POST /oidc/revoke */
void gh_api_oidc_introspect(gh_req_t *r); /* POST /oidc/introspect */
void gh_api_oidc_logout(gh_req_t *r);     /* GET, POST /oidc/logout */

/* ---- counters (metrics.c) ---- */
void gh_api_count_oidc_authz(void *app, gh_oidc_authz_result_t result);
void gh_api_count_oidc_grant(void *app, gh_oidc_grant_type_t type, const char *result);
void gh_api_count_oidc_reuse(void *app);

#endif
