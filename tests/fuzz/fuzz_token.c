/*
 * fuzz_token.c — session token decoding: gh_token_hash (the check every authenticated request
 * runs on a client's bytes) and the strict base64url decoder under it.
 *
 * Properties: a token is accepted only in its one canonical spelling ("gh_" + 43 base64url
 * characters that decode to 32 bytes and encode back to the same text), and its hash is the
 * BLAKE2b-256 of exactly those 46 bytes; base64url input that decodes encodes back unchanged.
 */
#include <string.h>

#include <sodium.h>

#include "auth/token.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    int rc = gh_token_hash(s, size, hash);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc == 0) {
        FUZZ_CHECK(size == GH_TOKEN_LEN && memcmp(s, GH_TOKEN_PREFIX, 3) == 0);
        uint8_t raw[GH_TOKEN_RAW_LEN];
        size_t n = 0;
        FUZZ_CHECK(gh_base64url_decode(s + 3, size - 3, raw, sizeof raw, &n) == 0);
        FUZZ_CHECK(n == GH_TOKEN_RAW_LEN);
        char again[GH_TOKEN_LEN + 1] = GH_TOKEN_PREFIX;
        FUZZ_CHECK(gh_base64url_encode(raw, n, again + 3) == GH_TOKEN_LEN - 3);
        FUZZ_CHECK(memcmp(again, s, GH_TOKEN_LEN) == 0);
        uint8_t want[GH_TOKEN_HASH_LEN];
        crypto_generichash(want, sizeof want, data, size, NULL, 0);
        FUZZ_CHECK(memcmp(want, hash, sizeof want) == 0);
    }

    /* The decoder alone, on at most 340 characters (255 bytes: fits the buffer exactly). */
    size_t len = size < 340 ? size : 340;
    uint8_t buf[255];
    size_t n = 0;
    rc = gh_base64url_decode(s, len, buf, sizeof buf, &n);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc == 0) {
        char enc[GH_BASE64URL_LEN(255) + 4];
        FUZZ_CHECK(n <= sizeof buf);
        FUZZ_CHECK(gh_base64url_encode(buf, n, enc) == len);
        FUZZ_CHECK(memcmp(enc, s, len) == 0);
    }
    /* A buffer one byte short of the decoded size is refused, never overrun. */
    if (rc == 0 && n > 0) {
        uint8_t *tight = malloc(n - 1 ? n - 1 : 1);
        size_t m = 0;
        FUZZ_CHECK(tight != NULL);
        FUZZ_CHECK(gh_base64url_decode(s, len, tight, n - 1, &m) == GH_ETOOBIG);
        free(tight);
    }
    return 0;
}
