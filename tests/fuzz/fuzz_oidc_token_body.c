/*
 * fuzz_oidc_token_body.c — the form body parser of /oidc/token (and of /oidc/revoke,
 * /oidc/introspect, /oidc/logout): gh_oidc_token_parse into a request pool as the handler uses it.
 *
 * The first byte sizes the pool: below 16 it is tiny (k * 64 bytes) so the out-of-memory path
 * runs. Properties: the answer is 0 or GH_ENOMEM (tiny pool only) — a malformed body is the
 * request's `invalid`, never an error; every value taken is non-empty, NUL-terminated, within its
 * limit; `invalid` always names what was wrong; a body whose parameters are all given once, short
 * and well encoded is never refused; and the pool returns every byte.
 */
#include <stdbool.h>
#include <string.h>

#include "api/oidc.h"
#include "fuzz.h"
#include "mem/mem.h"

typedef struct {
    size_t max;
    size_t off;
} field_t;

#define F(m, f)                                                                                    \
    {                                                                                              \
        m, offsetof(gh_oidc_token_request_t, f)                                                    \
    }
static const field_t fields[] = {
    F(64, grant_type),
    F(128, code),
    F(GH_OIDC_URI_MAX, redirect_uri),
    F(128, code_verifier),
    F(128, refresh_token),
    F(GH_OIDC_CLIENT_ID_MAX, client_id),
    F(256, client_secret),
    F(GH_OIDC_SCOPE_MAX, scope),
    F(128, token),
    F(32, token_type_hint),
    F(8192, id_token_hint),
    F(GH_OIDC_URI_MAX, post_logout_redirect_uri),
    F(GH_OIDC_STATE_MAX, state),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    bool tiny = data[0] < 16;
    size_t limit = tiny ? (size_t)data[0] * 64 : 2 * 65536 + 512 * 1024;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    size_t http0 = gh_mem_bytes(GH_MEM_HTTP);
    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, limit);
    gh_oidc_token_request_t q;
    int rc = gh_oidc_token_parse(&pool, body, len, &q);
    FUZZ_CHECK(rc == 0 || (rc == GH_ENOMEM && tiny));
    if (rc == 0) {
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
            const char *v = *(const char *const *)((const char *)&q + fields[i].off);
            FUZZ_CHECK(!v || (*v && strlen(v) <= fields[i].max));
        }
        FUZZ_CHECK(!q.invalid || *q.invalid);
        /* A NUL-free body without '%' cannot be malformed, repeat-free if it has no '&' */
        if (!memchr(body, '%', len) && !memchr(body, '&', len) && !memchr(body, '\0', len) &&
            len < 40)
            FUZZ_CHECK(!q.invalid);
    }
    gh_pool_release(&pool);
    FUZZ_CHECK(gh_mem_bytes(GH_MEM_HTTP) == http0);
    return 0;
}
