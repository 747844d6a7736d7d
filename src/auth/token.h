/*
 * token.h — session tokens. A token is "gh_" + base64url (no padding) of 32 random bytes from
 * libsodium: 256 bits a client holds and the server never stores. Stores key sessions on the
 * BLAKE2b-256 of the whole token string, so a stolen store (or a core dump) yields no usable token.
 */
#ifndef GH_AUTH_TOKEN_H
#define GH_AUTH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_TOKEN_PREFIX "gh_"
#define GH_TOKEN_RAW_LEN 32
#define GH_TOKEN_LEN 46 /* 3 + 43 */
#define GH_TOKEN_HASH_LEN 32

/* Makes a new random token (NUL-terminated) and its hash. Never fails once libsodium is up. */
void gh_token_new(char out[GH_TOKEN_LEN + 1], uint8_t hash[GH_TOKEN_HASH_LEN]);

/* Checks the token's form (prefix, length, alphabet) and hashes it.
 * Returns 0, or GH_EINVAL for anything that is not a well-formed token. Constant work for
 * well-formed input; no allocation. */
int gh_token_hash(const char *token, size_t len, uint8_t hash[GH_TOKEN_HASH_LEN]) GH_WUR;

/* base64url without padding: out must hold 4*ceil(n/3)+1 bytes; returns the length written. */
size_t gh_base64url_encode(const uint8_t *in, size_t n, char *out);

#endif
