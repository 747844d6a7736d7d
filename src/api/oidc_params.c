/*
 * oidc_params.c — the bounded parsers of the OpenID Connect endpoints: the authorization request
 * (a query string or a form body) and the form bodies of /oidc/token, /oidc/revoke,
 * /oidc/introspect and /oidc/logout. No HTTP here, so the fuzz targets drive them directly.
 *
 * The one design decision: a parser never fails the whole request by itself. Every parameter has
 * a length limit; a value over it, holding a NUL byte, or a parameter given twice (RFC 6749 §3.1:
 * "request parameters MUST NOT be included more than once") is recorded as the request's first
 * problem, and the endpoint decides how to answer: /oidc/authorize must still tell a bad
 * client_id or redirect_uri (an error page, never a redirect) from anything else (an error sent
 * back to the client's checked redirect_uri). Unknown parameters are ignored, as RFC 6749 says.
 */
#include "api/oidc.h"

#include <string.h>

/* Looks name up in spec; the index or -1. */
static int spec_index(const gh_oidc_param_t *spec, size_t nspec, const char *name)
{
    for (size_t i = 0; i < nspec; i++)
        if (strcmp(spec[i].name, name) == 0)
            return (int)i;
    return -1;
}

int gh_oidc_params_read(const gh_req_arg_t *args, size_t nargs, const gh_oidc_param_t *spec,
                        size_t nspec, gh_oidc_params_t *out)
{
    memset(out, 0, sizeof *out);
    if (nspec > GH_OIDC_PARAMS_MAX)
        return GH_EINVAL;
    out->bad_index = -1;
    if (nargs > GH_OIDC_ARGS_MAX) {
        out->why = "too many parameters";
        nargs = GH_OIDC_ARGS_MAX; /* args holds no more */
    }
    for (size_t i = 0; i < nargs; i++) {
        int k = spec_index(spec, nspec, args[i].name ? args[i].name : "");
        if (k < 0)
            continue;
        const char *problem = NULL;
        if (out->seen[k])
            problem = "is given more than once";
        else if (args[i].value_len != strlen(args[i].value))
            problem = "holds a NUL byte";
        else if (args[i].value_len > spec[k].max)
            problem = "is too long";
        out->seen[k] = true;
        if (problem) {
            out->value[k] = NULL;
            out->bad[k] = true;
            if (!out->why || out->bad_index < 0) {
                out->why = problem;
                out->bad_index = k;
            }
            continue;
        }
        /* RFC 6749 §3.1: a parameter sent without a value is treated as omitted. */
        out->value[k] = args[i].value_len ? args[i].value : NULL;
    }
    return 0;
}

int gh_oidc_form_split(gh_pool_t *pool, const char *body, size_t len, gh_req_arg_t *out, size_t max,
                       size_t *n)
{
    *n = 0;
    size_t off = 0;
    while (off < len) {
        const char *p = body + off;
        const char *amp = memchr(p, '&', len - off);
        size_t seg = amp ? (size_t)(amp - p) : len - off;
        off += seg + (amp ? 1 : 0);
        if (seg == 0)
            continue;
        const char *eq = memchr(p, '=', seg);
        size_t kl = eq ? (size_t)(eq - p) : seg;
        const char *key, *val = "";
        size_t klen, vlen = 0;
        int rc = gh_api_form_decode(pool, p, kl, &key, &klen);
        if (rc == 0 && eq)
            rc = gh_api_form_decode(pool, eq + 1, seg - kl - 1, &val, &vlen);
        if (rc != 0)
            return rc;
        if (klen != strlen(key))
            key = ""; /* a name holding NUL names no parameter */
        if (*n < max)
            out[*n] = (gh_req_arg_t){.name = key, .value = val, .value_len = vlen};
        (*n)++;
    }
    return 0;
}

/* ---- the authorization request ---- */

enum {
    A_CLIENT_ID,
    A_REDIRECT_URI,
    A_RESPONSE_TYPE,
    A_SCOPE,
    A_STATE,
    A_NONCE,
    A_CHALLENGE,
    A_CHALLENGE_METHOD,
    A_PROMPT,
    A_MAX_AGE,
    A_RESPONSE_MODE,
    A_FRESH,
    A_REQUEST,
    A_REQUEST_URI,
    A__COUNT
};

static const gh_oidc_param_t authz_spec[A__COUNT] = {
    [A_CLIENT_ID] = {"client_id", GH_OIDC_CLIENT_ID_MAX},
    [A_REDIRECT_URI] = {"redirect_uri", GH_OIDC_URI_MAX},
    [A_RESPONSE_TYPE] = {"response_type", 64},
    [A_SCOPE] = {"scope", GH_OIDC_SCOPE_MAX},
    [A_STATE] = {"state", GH_OIDC_STATE_MAX},
    [A_NONCE] = {"nonce", GH_OIDC_NONCE_MAX},
    [A_CHALLENGE] = {"code_challenge", 128},
    [A_CHALLENGE_METHOD] = {"code_challenge_method", 16},
    [A_PROMPT] = {"prompt", 64},
    [A_MAX_AGE] = {"max_age", 12},
    [A_RESPONSE_MODE] = {"response_mode", 32},
    [A_FRESH] = {GH_OIDC_FRESH_PARAM, 20},
    [A_REQUEST] = {"request", 8192},
    [A_REQUEST_URI] = {"request_uri", GH_OIDC_URI_MAX},
};

int gh_oidc_authz_parse(const gh_req_arg_t *args, size_t nargs, gh_oidc_authz_request_t *out)
{
    gh_oidc_params_t p;
    memset(out, 0, sizeof *out);
    int rc = gh_oidc_params_read(args, nargs, authz_spec, A__COUNT, &p);
    if (rc != 0)
        return rc;
    out->client_id = p.value[A_CLIENT_ID];
    out->redirect_uri = p.value[A_REDIRECT_URI];
    out->response_type = p.value[A_RESPONSE_TYPE];
    out->scope = p.value[A_SCOPE];
    out->state = p.value[A_STATE];
    out->nonce = p.value[A_NONCE];
    out->code_challenge = p.value[A_CHALLENGE];
    out->code_challenge_method = p.value[A_CHALLENGE_METHOD];
    out->prompt = p.value[A_PROMPT];
    out->max_age = p.value[A_MAX_AGE];
    out->response_mode = p.value[A_RESPONSE_MODE];
    out->fresh = p.value[A_FRESH];
    out->request_object = p.seen[A_REQUEST] || p.seen[A_REQUEST_URI];
    /* A bad client_id or redirect_uri is the page's error; any other bad parameter is the
     * client's invalid_request, sent to its redirect_uri once that is known to be its own. */
    out->bad_client = p.bad[A_CLIENT_ID] || p.bad[A_REDIRECT_URI];
    if (p.why && !out->bad_client) {
        out->invalid_param = authz_spec[p.bad_index >= 0 ? p.bad_index : 0].name;
        out->invalid = p.why;
        if (p.bad_index < 0)
            out->invalid_param = NULL;
    }
    if (p.bad[A_STATE])
        out->state = NULL; /* never echo what was refused */
    return 0;
}

/* ---- the token endpoint and its neighbours ---- */

enum {
    T_GRANT_TYPE,
    T_CODE,
    T_REDIRECT_URI,
    T_VERIFIER,
    T_REFRESH_TOKEN,
    T_CLIENT_ID,
    T_CLIENT_SECRET,
    T_SCOPE,
    T_TOKEN,
    T_HINT,
    T_ID_TOKEN_HINT,
    T_POST_LOGOUT,
    T_STATE,
    T__COUNT
};

static const gh_oidc_param_t token_spec[T__COUNT] = {
    [T_GRANT_TYPE] = {"grant_type", 64},
    [T_CODE] = {"code", 128},
    [T_REDIRECT_URI] = {"redirect_uri", GH_OIDC_URI_MAX},
    [T_VERIFIER] = {"code_verifier", 128},
    [T_REFRESH_TOKEN] = {"refresh_token", 128},
    [T_CLIENT_ID] = {"client_id", GH_OIDC_CLIENT_ID_MAX},
    [T_CLIENT_SECRET] = {"client_secret", 256},
    [T_SCOPE] = {"scope", GH_OIDC_SCOPE_MAX},
    [T_TOKEN] = {"token", 128},
    [T_HINT] = {"token_type_hint", 32},
    [T_ID_TOKEN_HINT] = {"id_token_hint", 8192},
    [T_POST_LOGOUT] = {"post_logout_redirect_uri", GH_OIDC_URI_MAX},
    [T_STATE] = {"state", GH_OIDC_STATE_MAX},
};

int gh_oidc_token_parse_args(const gh_req_arg_t *args, size_t nargs, gh_oidc_token_request_t *out)
{
    gh_oidc_params_t p;
    memset(out, 0, sizeof *out);
    int rc = gh_oidc_params_read(args, nargs, token_spec, T__COUNT, &p);
    if (rc != 0)
        return rc;
    out->grant_type = p.value[T_GRANT_TYPE];
    out->code = p.value[T_CODE];
    out->redirect_uri = p.value[T_REDIRECT_URI];
    out->code_verifier = p.value[T_VERIFIER];
    out->refresh_token = p.value[T_REFRESH_TOKEN];
    out->client_id = p.value[T_CLIENT_ID];
    out->client_secret = p.value[T_CLIENT_SECRET];
    out->scope = p.value[T_SCOPE];
    out->token = p.value[T_TOKEN];
    out->token_type_hint = p.value[T_HINT];
    out->id_token_hint = p.value[T_ID_TOKEN_HINT];
    out->post_logout_redirect_uri = p.value[T_POST_LOGOUT];
    out->state = p.bad[T_STATE] ? NULL : p.value[T_STATE];
    if (p.why) {
        out->invalid = p.why;
        out->invalid_param = p.bad_index >= 0 ? token_spec[p.bad_index].name : NULL;
    }
    return 0;
}

int gh_oidc_token_parse(gh_pool_t *pool, const char *body, size_t len, gh_oidc_token_request_t *out)
{
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    size_t n;
    memset(out, 0, sizeof *out);
    int rc = gh_oidc_form_split(pool, body, len, args, GH_OIDC_ARGS_MAX, &n);
    if (rc == GH_EINVAL) {
        out->invalid = "is not valid form encoding";
        return 0;
    }
    if (rc != 0)
        return rc;
    return gh_oidc_token_parse_args(args, n, out);
}
