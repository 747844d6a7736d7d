/*
 * token.c — session tokens: 256 random bits rendered "gh_" + base64url, and the BLAKE2b-256 of
 * the whole token string that stores key sessions on.
 *
 * The one decision: parsing is strict and canonical. Exact length, the base64url alphabet only,
 * and no stray bits in the last character (43 characters carry 258 bits for 256), so each secret
 * has exactly one spelling and therefore exactly one hash; a client cannot reach the same session
 * through a second, differently spelled token.
 *
 * libsodium is initialised here through pthread_once: sodium_init() is idempotent and thread-safe,
 * but it takes a global lock on every call, and token checks run on every request.
 */
#include "auth/token.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_setup(void)
{
    /* Without a working random source there is no safe token to hand out: stop here. */
    if (sodium_init() < 0)
        abort();
}

static void ensure_sodium(void)
{
    (void)pthread_once(&sodium_once, sodium_setup);
}

int gh_token_hash(const char *token, size_t len, uint8_t hash[GH_TOKEN_HASH_LEN])
{
    int rc = GH_EINVAL;
    const size_t plen = sizeof GH_TOKEN_PREFIX - 1;
    if (!token || len != GH_TOKEN_LEN || memcmp(token, GH_TOKEN_PREFIX, plen) != 0)
        goto out;
    /* Every character is checked (no early exit), so well-formed input costs the same work. */
    int bad = 0, v = 0;
    for (size_t i = plen; i < GH_TOKEN_LEN; i++) {
        v = gh_base64url_value((unsigned char)token[i]);
        bad |= v < 0;
    }
    /* 43 characters hold 258 bits for 256: the last character's low 2 bits must be zero. */
    bad |= (v & 3) != 0;
    if (bad)
        goto out;
    ensure_sodium();
    crypto_generichash(hash, GH_TOKEN_HASH_LEN, (const unsigned char *)token, GH_TOKEN_LEN, NULL,
                       0);
    rc = 0;
out:
    return rc;
}

void gh_token_new(char out[GH_TOKEN_LEN + 1], uint8_t hash[GH_TOKEN_HASH_LEN])
{
    uint8_t raw[GH_TOKEN_RAW_LEN];
    _Static_assert(sizeof GH_TOKEN_PREFIX - 1 + GH_BASE64URL_LEN(GH_TOKEN_RAW_LEN) == GH_TOKEN_LEN,
                   "token length");
    ensure_sodium();
    randombytes_buf(raw, sizeof raw);
    memcpy(out, GH_TOKEN_PREFIX, sizeof GH_TOKEN_PREFIX - 1);
    gh_base64url_encode(raw, sizeof raw, out + sizeof GH_TOKEN_PREFIX - 1);
    sodium_memzero(raw, sizeof raw);
    crypto_generichash(hash, GH_TOKEN_HASH_LEN, (const unsigned char *)out, GH_TOKEN_LEN, NULL, 0);
}
