/*
 * fuzz_oidc_authorize.c — the authorization request parser of /oidc/authorize
 * (gh_oidc_form_split then gh_oidc_authz_parse, as a POSTed form; a GET's query reaches the same
 * parser as decoded pairs), into a request pool as the handler uses it.
 *
 * The first byte sizes the pool: below 16 it is tiny (k * 64 bytes) so the out-of-memory path
 * runs. Properties: the answer is a request, a malformed-encoding error or GH_ENOMEM (tiny pool
 * only); every value the request holds is non-empty, NUL-terminated, within its limit and given
 * exactly once in the input; a parameter given twice is never taken and is reported (bad_client
 * for client_id / redirect_uri, invalid otherwise); encoding the values again and parsing gives
 * them back; and the pool returns every byte.
 */
#include <stdbool.h>
#include <string.h>

#include "api/oidc.h"
#include "fuzz.h"
#include "mem/mem.h"

typedef struct {
    const char *name;
    size_t max;
    size_t off; /* offsetof the field in gh_oidc_authz_request_t */
} field_t;

#define F(n, m, f)                                                                                 \
    {                                                                                              \
        n, m, offsetof(gh_oidc_authz_request_t, f)                                                 \
    }
static const field_t fields[] = {
    F("client_id", GH_OIDC_CLIENT_ID_MAX, client_id),
    F("redirect_uri", GH_OIDC_URI_MAX, redirect_uri),
    F("response_type", 64, response_type),
    F("scope", GH_OIDC_SCOPE_MAX, scope),
    F("state", GH_OIDC_STATE_MAX, state),
    F("nonce", GH_OIDC_NONCE_MAX, nonce),
    F("code_challenge", 128, code_challenge),
    F("code_challenge_method", 16, code_challenge_method),
    F("prompt", 64, prompt),
    F("max_age", 12, max_age),
    F("response_mode", 32, response_mode),
    F(GH_OIDC_FRESH_PARAM, 20, fresh),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static const char *field(const gh_oidc_authz_request_t *q, size_t i)
{
    return *(const char *const *)((const char *)q + fields[i].off);
}

static size_t encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        out[j++] = '%';
        out[j++] = hex[c >> 4];
        out[j++] = hex[c & 15];
    }
    return j;
}

static void round_trip(const gh_oidc_authz_request_t *q)
{
    size_t cap = 64;
    for (size_t i = 0; i < NFIELDS; i++)
        cap += 32 + (field(q, i) ? 3 * strlen(field(q, i)) : 0);
    char *body = malloc(cap);
    FUZZ_CHECK(body != NULL);
    size_t n = 0;
    for (size_t i = 0; i < NFIELDS; i++) {
        if (!field(q, i))
            continue;
        n += (size_t)sprintf(body + n, "%s%s=", n ? "&" : "", fields[i].name);
        n += encode(field(q, i), body + n);
    }
    FUZZ_CHECK(n < cap);
    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, 1u << 20);
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    size_t nargs;
    gh_oidc_authz_request_t again;
    FUZZ_CHECK(gh_oidc_form_split(&pool, body, n, args, GH_OIDC_ARGS_MAX, &nargs) == 0);
    FUZZ_CHECK(gh_oidc_authz_parse(args, nargs, &again) == 0);
    FUZZ_CHECK(!again.bad_client && !again.invalid);
    for (size_t i = 0; i < NFIELDS; i++) {
        const char *a = field(q, i), *b = field(&again, i);
        FUZZ_CHECK((a == NULL) == (b == NULL));
        FUZZ_CHECK(!a || strcmp(a, b) == 0);
    }
    gh_pool_release(&pool);
    free(body);
}

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
    gh_req_arg_t args[GH_OIDC_ARGS_MAX];
    size_t nargs = 99;
    int rc = gh_oidc_form_split(&pool, body, len, args, GH_OIDC_ARGS_MAX, &nargs);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ENOMEM);
    FUZZ_CHECK(rc != GH_ENOMEM || tiny);
    if (rc == 0) {
        gh_oidc_authz_request_t q;
        FUZZ_CHECK(gh_oidc_authz_parse(args, nargs, &q) == 0);
        size_t stored = nargs < GH_OIDC_ARGS_MAX ? nargs : GH_OIDC_ARGS_MAX;
        bool repeated_any = false;
        for (size_t i = 0; i < NFIELDS; i++) {
            size_t times = 0;
            for (size_t k = 0; k < stored; k++)
                times += strcmp(args[k].name, fields[i].name) == 0;
            const char *v = field(&q, i);
            if (v) {
                FUZZ_CHECK(*v && strlen(v) <= fields[i].max);
                FUZZ_CHECK(times == 1);
            }
            if (times > 1) {
                repeated_any = true;
                FUZZ_CHECK(v == NULL);
                FUZZ_CHECK(q.bad_client || q.invalid);
            }
        }
        if (nargs > GH_OIDC_ARGS_MAX)
            FUZZ_CHECK(q.bad_client || q.invalid);
        if (!q.bad_client && !q.invalid && !repeated_any)
            round_trip(&q);
    }
    gh_pool_release(&pool);
    FUZZ_CHECK(gh_mem_bytes(GH_MEM_HTTP) == http0);
    return 0;
}
