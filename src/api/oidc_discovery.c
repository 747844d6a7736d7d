/*
 * oidc_discovery.c — the OpenID provider's public face and its clients' admin API: the discovery
 * document (/.well-known/openid-configuration), the JWKS (/oidc/jwks) and /v1/admin/clients.
 * The protocol endpoints themselves (/oidc/authorize, /oidc/token, …) are in oidc.c.
 *
 * The one design decision: every endpoint URL in the discovery document is the node's issuer
 * (app->issuer, computed once at start from --public-url or the listening address) followed by
 * a fixed path, so the document a relying party reads and the `iss` of every ID token can never
 * disagree. Both public documents are cacheable (the JWKS for 60 s: a relying party that meets
 * an unknown kid fetches it again, as OpenID Connect libraries do).
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account/oidc_keys.h"
#include "api/api.h"
#include "common/clock.h"
#include "mem/mem.h"

#define CLIENTS_LIST_MAX 100 /* clients in one page of GET /v1/admin/clients */

static json_t *strings(const char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

#define STRINGS(...)                                                                               \
    strings((const char *const[]){__VA_ARGS__},                                                    \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static json_t *endpoint(const gh_app_t *app, const char *path)
{
    char url[sizeof app->issuer + 32];
    snprintf(url, sizeof url, "%s%s", app->issuer, path);
    return json_string(url);
}

void gh_api_oidc_configuration(gh_req_t *r)
{
    const gh_app_t *app = r->app;
    if (!app->oidc_keys) { /* the provider is off on this node (see node.c) */
        gh_api_reply_fail(r, GH_ENOTFOUND, "OpenID Connect is not enabled on this node", 0);
        return;
    }
    json_t *d = json_object();
    static const struct {
        const char *key, *path;
    } eps[] = {{"authorization_endpoint", "/oidc/authorize"},
               {"token_endpoint", "/oidc/token"},
               {"userinfo_endpoint", "/oidc/userinfo"},
               {"jwks_uri", "/oidc/jwks"},
               {"revocation_endpoint", "/oidc/revoke"},
               {"introspection_endpoint", "/oidc/introspect"},
               {"end_session_endpoint", "/oidc/logout"}};
    d = gh_api_json_set(d, "issuer", json_string(app->issuer));
    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++)
        d = gh_api_json_set(d, eps[i].key, endpoint(app, eps[i].path));
    d = gh_api_json_set(d, "response_types_supported", STRINGS("code"));
    d = gh_api_json_set(d, "response_modes_supported", STRINGS("query"));
    d = gh_api_json_set(d, "grant_types_supported", STRINGS("authorization_code", "refresh_token"));
    d = gh_api_json_set(d, "subject_types_supported", STRINGS("public"));
    d = gh_api_json_set(d, "id_token_signing_alg_values_supported",
                        STRINGS("RS256", "ES256", "EdDSA"));
    d = gh_api_json_set(d, "token_endpoint_auth_methods_supported",
                        STRINGS("client_secret_basic", "client_secret_post", "none"));
    d = gh_api_json_set(d, "revocation_endpoint_auth_methods_supported",
                        STRINGS("client_secret_basic", "client_secret_post", "none"));
    d = gh_api_json_set(d, "introspection_endpoint_auth_methods_supported",
                        STRINGS("client_secret_basic", "client_secret_post"));
    d = gh_api_json_set(d, "code_challenge_methods_supported", STRINGS("S256"));
    d = gh_api_json_set(d, "scopes_supported", STRINGS("openid", "profile", "email"));
    d = gh_api_json_set(d, "claims_supported",
                        STRINGS("iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr",
                                "acr", "preferred_username", "name", "email", "email_verified"));
    d = gh_api_json_set(d, "prompt_values_supported", STRINGS("none", "login", "consent"));
    d = gh_api_json_set(d, "acr_values_supported",
                        STRINGS("urn:gatehouse:pwd", "urn:gatehouse:mfa"));
    d = gh_api_json_set(d, "claims_parameter_supported", json_false());
    d = gh_api_json_set(d, "request_parameter_supported", json_false());
    d = gh_api_json_set(d, "request_uri_parameter_supported", json_false());
    gh_api_reply_json(r, 200, d);
    (void)gh_reply_header(r, "Cache-Control", "public, max-age=300");
}

void gh_api_oidc_jwks(gh_req_t *r)
{
    const gh_app_t *app = r->app;
    char *text = NULL;
    int rc = app->oidc_keys ? gh_oidc_keys_jwks(app->oidc_keys, &text) : GH_ENOTFOUND;
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    if (gh_reply(r, 200, "application/jwk-set+json", text, strlen(text)) == 0)
        (void)gh_reply_header(r, "Cache-Control", "public, max-age=60");
    gh_jwt_free(text);
}

/* ---- /v1/admin/clients ---- */

static json_t *uri_array(const char (*uris)[GH_OIDC_URI_MAX + 1], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(uris[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* {"client_id","name","public","consent","id_token_alg","redirect_uris",
 *  "post_logout_redirect_uris","created_at"} */
static json_t *client_json(const gh_oidc_client_t *c)
{
    char created[GH_RFC3339_LEN];
    gh_clock_rfc3339(c->created_at, created);
    json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s, s:s}", "client_id", c->client_id, "name",
                          c->name, "public", c->is_public, "consent", c->consent, "id_token_alg",
                          c->id_token_alg, "created_at", created);
    o = gh_api_json_set(o, "redirect_uris", uri_array(c->redirect_uris, c->n_redirect));
    return gh_api_json_set(o, "post_logout_redirect_uris",
                           uri_array(c->post_logout_uris, c->n_post_logout));
}

void gh_api_admin_clients_list(gh_req_t *r)
{
    const char *after = gh_req_query(r, "after"), *l = gh_req_query(r, "limit");
    size_t limit = CLIENTS_LIST_MAX;
    if (l) {
        char *end;
        unsigned long long v = strtoull(l, &end, 10);
        if (!*l || *end || *l == '-' || v == 0 || v > CLIENTS_LIST_MAX) {
            gh_api_reply_fail(r, GH_EINVAL, "\"limit\" must be 1 to 100", 0);
            return;
        }
        limit = (size_t)v;
    }
    /* About 8 KiB a client: a page is too big for the request pool, so it is borrowed and
     * given back before the reply. */
    gh_oidc_client_t *list = gh_mem_calloc(GH_MEM_HTTP, limit, sizeof *list);
    if (!list) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    gh_app_t *app = r->app;
    size_t n = 0;
    int rc = gh_oidc_client_list(app->users, after ? after : "", list, limit, &n);
    json_t *arr = rc == 0 ? json_array() : NULL;
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, client_json(&list[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    gh_mem_free(GH_MEM_HTTP, list);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "clients", arr));
}

/* Copies a JSON array of strings into uris: 0, or a message for the client. */
static const char *read_uris(json_t *v, const char *field, char (*uris)[GH_OIDC_URI_MAX + 1],
                             size_t *n)
{
    static char why[96];
    *n = 0;
    if (!v)
        return NULL;
    if (!json_is_array(v) || json_array_size(v) > GH_OIDC_MAX_URIS) {
        snprintf(why, sizeof why, "\"%s\" must be an array of at most %d URIs", field,
                 GH_OIDC_MAX_URIS);
        return why;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *s = json_array_get(v, i);
        const char *u = json_string_value(s);
        if (!u || json_string_length(s) > GH_OIDC_URI_MAX || strlen(u) != json_string_length(s)) {
            snprintf(why, sizeof why, "\"%s\" must hold strings of at most %d bytes", field,
                     GH_OIDC_URI_MAX);
            return why;
        }
        snprintf(uris[i], GH_OIDC_URI_MAX + 1, "%s", u);
        (*n)++;
    }
    return NULL;
}

void gh_api_admin_clients_add(gh_req_t *r)
{
    json_t *body = NULL;
    if (gh_api_json_body(r, &body) != 0)
        return;
    gh_oidc_client_t *c = gh_pool_alloc(&r->pool, sizeof *c);
    if (!c) {
        json_decref(body);
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    memset(c, 0, sizeof *c);
    const char *why = NULL;
    json_t *name = json_object_get(body, "name"), *pub = json_object_get(body, "public"),
           *consent = json_object_get(body, "consent"),
           *alg = json_object_get(body, "id_token_alg");
    if (!json_is_string(name) || json_string_length(name) > GH_OIDC_CLIENT_NAME_MAX)
        why = "\"name\" must be a string of 1 to 64 bytes";
    else if ((pub && !json_is_boolean(pub)) || (consent && !json_is_boolean(consent)))
        why = "\"public\" and \"consent\" must be true or false";
    else if (alg && (!json_is_string(alg) || json_string_length(alg) >= sizeof c->id_token_alg))
        why = "id_token_alg must be RS256, ES256 or EdDSA";
    else if (!json_is_array(json_object_get(body, "redirect_uris")))
        why = "\"redirect_uris\" must be an array of URIs";
    if (!why)
        why = read_uris(json_object_get(body, "redirect_uris"), "redirect_uris", c->redirect_uris,
                        &c->n_redirect);
    if (!why)
        why = read_uris(json_object_get(body, "post_logout_redirect_uris"),
                        "post_logout_redirect_uris", c->post_logout_uris, &c->n_post_logout);
    if (why) {
        json_decref(body);
        gh_api_reply_fail(r, GH_EINVAL, why, 0);
        return;
    }
    snprintf(c->name, sizeof c->name, "%s", json_string_value(name));
    c->is_public = json_is_true(pub);
    c->consent = json_is_true(consent);
    if (alg)
        snprintf(c->id_token_alg, sizeof c->id_token_alg, "%s", json_string_value(alg));
    json_decref(body);

    r->pool.wipe = true; /* the secret passes through the pool on its way out */
    gh_app_t *app = r->app;
    gh_account_t a;
    gh_api_account(r, &a);
    char secret[GH_OIDC_SECRET_LEN + 1];
    int rc = gh_account_oidc_client_add(&a, c, app->cfg.oidc_allow_http_redirects,
                                        gh_clock_now_ms(), secret, &why);
    if (rc != 0) {
        gh_api_reply_fail(r, rc,
                          rc == GH_EINVAL   ? why
                          : rc == GH_ELIMIT ? "the client table is full (10000 clients)"
                                            : NULL,
                          0);
        return;
    }
    json_t *o = client_json(c);
    if (!c->is_public)
        o = gh_api_json_set(o, "client_secret", json_string(secret));
    sodium_memzero(secret, sizeof secret);
    gh_api_reply_json(r, 201, o);
    (void)gh_reply_header(r, "Cache-Control", "no-store");
}

void gh_api_admin_clients_del(gh_req_t *r)
{
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_oidc_client_del(&a, r->params[0]);
    if (rc != 0) {
        gh_api_reply_fail(r, rc, rc == GH_ENOTFOUND ? "no such client" : NULL, 0);
        return;
    }
    (void)gh_reply(r, 204, NULL, NULL, 0);
}
