/*
 * oidc_clients.c — the OpenID provider's registered clients (account/oidc_keys.h): checking a
 * registration, making its id and secret, authenticating it at the token endpoint, and matching
 * its redirect URIs.
 *
 * The one design decision: a client secret is a 256-bit random string that the store never
 * sees. It keeps BLAKE2b-256 keyed by the node's secret key over the client id and the secret
 * (as recovery codes are kept), so a copy of the database alone lets nobody test guesses, and
 * authentication hashes and compares in constant time whether or not the client exists.
 */
#include "account/oidc_keys.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/base64url.h"
#include "common/clock.h"

#define CLIENT_ID_BYTES 16
#define SECRET_BYTES 32
#define HASH_DOMAIN "gatehouse oidc client secret"

static void secret_hash(const uint8_t key[GH_SECRET_KEY_LEN], const char *client_id,
                        const char *secret, size_t len, uint8_t out[GH_OIDC_SECRET_HASH_LEN])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, GH_SECRET_KEY_LEN, GH_OIDC_SECRET_HASH_LEN);
    crypto_generichash_update(&st, (const uint8_t *)HASH_DOMAIN, sizeof HASH_DOMAIN);
    crypto_generichash_update(&st, (const uint8_t *)client_id, strlen(client_id) + 1);
    crypto_generichash_update(&st, (const uint8_t *)secret, len);
    crypto_generichash_final(&st, out, GH_OIDC_SECRET_HASH_LEN);
    sodium_memzero(&st, sizeof st);
}

/* ---- checking a registration ---- */

static bool text_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static bool loopback(const char *host, size_t n)
{
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(host, names[i], n) == 0)
            return true;
    return false;
}

/* An absolute http(s) URI of printable ASCII, without fragment, userinfo or whitespace, with a
 * host; http only for a loopback host unless allow_http. */
static bool uri_ok(const char *u, bool allow_http)
{
    size_t n = strnlen(u, GH_OIDC_URI_MAX + 1);
    if (n == 0 || n > GH_OIDC_URI_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u[i];
        /* printable ASCII without what RFC 3986 never allows unencoded (nor a fragment) */
        if (c <= 0x20 || c >= 0x7f || strchr("#\\\"<>`{}|^", c))
            return false;
    }
    bool https = strncmp(u, "https://", 8) == 0;
    if (!https && strncmp(u, "http://", 7) != 0)
        return false;
    const char *host = u + (https ? 8 : 7);
    size_t alen = strcspn(host, "/?");
    if (alen == 0 || memchr(host, '@', alen))
        return false;
    size_t hlen;
    if (host[0] == '[') {
        const char *end = memchr(host, ']', alen);
        if (!end)
            return false;
        hlen = (size_t)(end - host) + 1;
    } else {
        const char *colon = memchr(host, ':', alen);
        hlen = colon ? (size_t)(colon - host) : alen;
    }
    if (hlen == 0)
        return false;
    if (hlen < alen) { /* a port: 1..5 digits */
        if (host[hlen] != ':' || alen - hlen < 2 || alen - hlen > 6)
            return false;
        for (size_t i = hlen + 1; i < alen; i++)
            if (host[i] < '0' || host[i] > '9')
                return false;
    }
    return https || allow_http || loopback(host, hlen);
}

int gh_oidc_client_check(gh_oidc_client_t *c, bool allow_http, const char **why)
{
    static const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    if (!text_ok(c->name, GH_OIDC_CLIENT_NAME_MAX)) {
        *why = "the name must be 1 to 64 bytes without control characters";
        return GH_EINVAL;
    }
    if (c->n_redirect == 0 || c->n_redirect > GH_OIDC_MAX_URIS ||
        c->n_post_logout > GH_OIDC_MAX_URIS) {
        *why = "a client needs 1 to 8 redirect URIs and at most 8 post-logout URIs";
        return GH_EINVAL;
    }
    for (size_t i = 0; i < c->n_redirect + c->n_post_logout; i++) {
        const char *u =
            i < c->n_redirect ? c->redirect_uris[i] : c->post_logout_uris[i - c->n_redirect];
        if (!uri_ok(u, allow_http)) {
            *why = "a redirect URI must be an absolute https URI (http only for localhost, "
                   "127.0.0.1 or [::1]) of at most 512 printable ASCII bytes, without a "
                   "fragment or user info";
            return GH_EINVAL;
        }
    }
    gh_jwt_alg_t alg;
    if (!c->id_token_alg[0])
        snprintf(c->id_token_alg, sizeof c->id_token_alg, "RS256");
    else if (gh_jwt_alg_parse(c->id_token_alg, &alg) != 0) {
        *why = "id_token_alg must be RS256, ES256 or EdDSA";
        return GH_EINVAL;
    }
    return 0;
}

/* ---- the store's clients ---- */

int gh_oidc_client_add(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                       gh_oidc_client_t *c, bool allow_http, int64_t now_ms,
                       char secret[GH_OIDC_SECRET_LEN + 1], const char **why)
{
    secret[0] = '\0';
    int rc = gh_oidc_client_check(c, allow_http, why);
    if (rc != 0)
        return rc;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    uint8_t raw[SECRET_BYTES];
    c->created_at = now_ms;
    memset(c->secret_hash, 0, sizeof c->secret_hash);
    /* A fresh id on the (astronomically unlikely) collision. */
    for (int attempt = 0; attempt < 3; attempt++) {
        /* never a leading '-': an id is typed after `gatehouse client del`, where it would
         * read as an option */
        do {
            randombytes_buf(raw, CLIENT_ID_BYTES);
            gh_base64url_encode(raw, CLIENT_ID_BYTES, c->client_id);
        } while (c->client_id[0] == '-');
        if (!c->is_public) {
            randombytes_buf(raw, SECRET_BYTES);
            gh_base64url_encode(raw, SECRET_BYTES, secret);
            secret_hash(key, c->client_id, secret, GH_OIDC_SECRET_LEN, c->secret_hash);
        }
        rc = gh_user_oidc_client_add(users, c);
        if (rc != GH_EEXISTS)
            break;
    }
    sodium_memzero(raw, sizeof raw);
    if (rc != 0)
        sodium_memzero(secret, GH_OIDC_SECRET_LEN + 1);
    return rc;
}

int gh_oidc_client_get(gh_user_store_t *users, const char *client_id, gh_oidc_client_t *out)
{
    if (!client_id || strnlen(client_id, GH_OIDC_CLIENT_ID_MAX + 1) > GH_OIDC_CLIENT_ID_MAX)
        return GH_ENOTFOUND;
    return gh_user_oidc_client_get(users, client_id, out);
}

int gh_oidc_client_list(gh_user_store_t *users, const char *after, gh_oidc_client_t *out,
                        size_t cap, size_t *n)
{
    return gh_user_oidc_client_list(users, after ? after : "", out, cap, n);
}

int gh_oidc_client_del(gh_user_store_t *users, const char *client_id)
{
    if (!client_id || strnlen(client_id, GH_OIDC_CLIENT_ID_MAX + 1) > GH_OIDC_CLIENT_ID_MAX)
        return GH_ENOTFOUND;
    return gh_user_oidc_client_del(users, client_id);
}

int gh_oidc_client_authenticate(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                                const char *client_id, const char *secret, size_t len,
                                gh_oidc_client_t *client)
{
    int rc = gh_oidc_client_get(users, client_id, client);
    if (rc != 0 && rc != GH_ENOTFOUND)
        return rc;
    bool known = rc == 0;
    if (!known) { /* the same work as for a client that exists: hash and compare */
        memset(client, 0, sizeof *client);
        client_id = "";
    }
    uint8_t h[GH_OIDC_SECRET_HASH_LEN];
    secret_hash(key, client_id, secret ? secret : "", secret ? len : 0, h);
    bool match = sodium_memcmp(h, client->secret_hash, sizeof h) == 0;
    bool ok;
    if (!known)
        ok = false;
    else if (client->is_public)
        ok = !secret || len == 0; /* a public client has no secret to send */
    else
        ok = secret && len > 0 && match;
    sodium_memzero(h, sizeof h);
    if (!ok) {
        memset(client, 0, sizeof *client);
        return GH_EAUTH;
    }
    return 0;
}

static bool one_of(const char (*uris)[GH_OIDC_URI_MAX + 1], size_t n, const char *uri)
{
    if (!uri)
        return false;
    for (size_t i = 0; i < n && i < GH_OIDC_MAX_URIS; i++)
        if (strcmp(uris[i], uri) == 0)
            return true;
    return false;
}

bool gh_oidc_client_redirect_ok(const gh_oidc_client_t *c, const char *uri)
{
    return one_of(c->redirect_uris, c->n_redirect, uri);
}

bool gh_oidc_client_logout_redirect_ok(const gh_oidc_client_t *c, const char *uri)
{
    return one_of(c->post_logout_uris, c->n_post_logout, uri);
}
