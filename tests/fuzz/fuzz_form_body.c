/*
 * fuzz_form_body.c — the login form decoder (application/x-www-form-urlencoded bodies of
 * POST /v1/sessions): gh_api_form_credentials, into a request pool as the handler uses it.
 *
 * The first byte sizes the pool: below 16 it is tiny (k * 64 bytes) so the out-of-memory path
 * runs, otherwise it is what the server gives a request under the default 64 KiB body limit.
 * Properties: the answer is credentials, a client error with a message, or GH_ENOMEM (only with
 * a tiny pool); decoded values are NUL-terminated and no longer than the body; percent-encoding
 * the decoded values and decoding again gives them back; and the pool returns every byte.
 */
#include <stdbool.h>
#include <string.h>

#include "api/api.h"
#include "fuzz.h"
#include "mem/mem.h"

/* Every byte as %XX: the encoding any client may use. */
static size_t encode(const char *s, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = '%';
        out[j++] = hex[c >> 4];
        out[j++] = hex[c & 15];
    }
    return j;
}

static void round_trip(const char *user, size_t ulen, const char *pw, size_t plen)
{
    size_t cap = 32 + 3 * (ulen + plen);
    char *body = malloc(cap);
    FUZZ_CHECK(body != NULL);
    size_t n = 0;
    memcpy(body + n, "password=", 9);
    n += 9;
    n += encode(pw, plen, body + n);
    memcpy(body + n, "&username=", 10);
    n += 10;
    n += encode(user, ulen, body + n);
    FUZZ_CHECK(n < cap);

    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, 1u << 20);
    const char *u2, *p2, *why;
    size_t ul2, pl2;
    FUZZ_CHECK(gh_api_form_credentials(&pool, body, n, &u2, &ul2, &p2, &pl2, &why) == 0);
    FUZZ_CHECK(ul2 == ulen && memcmp(u2, user, ulen) == 0);
    FUZZ_CHECK(pl2 == plen && memcmp(p2, pw, plen) == 0);
    gh_pool_release(&pool);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536)
        return 0;
    bool tiny = data[0] < 16;
    size_t limit = tiny ? (size_t)data[0] * 64 : 2 * 65536 + 512 * 1024; /* http/server.c */
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    size_t http0 = gh_mem_bytes(GH_MEM_HTTP);
    gh_pool_t pool;
    gh_pool_init(&pool, GH_MEM_HTTP, limit);
    const char *user = (const char *)1, *pw = (const char *)1, *why = NULL;
    size_t ulen = 99, plen = 99;
    int rc = gh_api_form_credentials(&pool, body, len, &user, &ulen, &pw, &plen, &why);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(user && pw);
        FUZZ_CHECK(ulen <= len && plen <= len && user[ulen] == '\0' && pw[plen] == '\0');
        round_trip(user, ulen, pw, plen);
    } else {
        FUZZ_CHECK(user == NULL && pw == NULL);
        FUZZ_CHECK(rc != GH_EINVAL || (why != NULL && *why));
        FUZZ_CHECK(rc != GH_ENOMEM || tiny);
    }
    gh_pool_release(&pool);
    FUZZ_CHECK(gh_mem_bytes(GH_MEM_HTTP) == http0);
    return 0;
}
