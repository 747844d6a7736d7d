/*
 * oidc_common.c — the record checks and the URI-list form both OpenID Connect store backends
 * use (store/oidc_store.h). Its own file so that neither backend calls the other.
 */
#include <string.h>

#include "store/oidc_store.h"

static bool terminated(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return n > 0 && n < cap;
}

int gh_oidc_client_fits(const gh_oidc_client_t *c)
{
    if (!terminated(c->client_id, sizeof c->client_id) || !terminated(c->name, sizeof c->name) ||
        !terminated(c->id_token_alg, sizeof c->id_token_alg) || c->n_redirect == 0 ||
        c->n_redirect > GH_OIDC_MAX_URIS || c->n_post_logout > GH_OIDC_MAX_URIS)
        return GH_EINVAL;
    return 0;
}

int gh_oidc_key_fits(const gh_oidc_key_rec_t *k)
{
    if (!terminated(k->kid, sizeof k->kid) || !terminated(k->alg, sizeof k->alg) ||
        k->sealed_len == 0 || k->sealed_len > sizeof k->sealed || k->generation <= 0)
        return GH_EINVAL;
    return 0;
}

int gh_oidc_uris_join(const char (*uris)[GH_OIDC_URI_MAX + 1], size_t n, char *out, size_t cap)
{
    size_t off = 0;
    if (cap == 0 || n > GH_OIDC_MAX_URIS)
        return GH_EINVAL;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strnlen(uris[i], GH_OIDC_URI_MAX + 1);
        if (len == 0 || len > GH_OIDC_URI_MAX || memchr(uris[i], '\n', len) || off + len + 2 > cap)
            return GH_EINVAL;
        if (i)
            out[off++] = '\n';
        memcpy(out + off, uris[i], len);
        off += len;
        out[off] = '\0';
    }
    return 0;
}

int gh_oidc_uris_split(const char *text, char (*uris)[GH_OIDC_URI_MAX + 1], size_t *n)
{
    *n = 0;
    while (*text) {
        size_t len = strcspn(text, "\n");
        if (*n >= GH_OIDC_MAX_URIS || len == 0 || len > GH_OIDC_URI_MAX)
            return GH_EINVAL;
        memcpy(uris[*n], text, len);
        uris[*n][len] = '\0';
        (*n)++;
        text += len;
        if (*text == '\n')
            text++;
    }
    return 0;
}
