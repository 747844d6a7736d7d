/*
 * token.h — session tokens. A token is "gh_" + base64url (no padding) of 32 random bytes from
 * libsodium: 256 bits a client holds and the server never stores. Stores key sessions on the
 * BLAKE2b-256 of the whole token string, so a stolen store (or a core dump) yields no usable token.
 */
#ifndef GH_AUTH_TOKEN_H
#define GH_AUTH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "common/base64url.h"
#include "common/err.h"
#include "common/token_format.h"

/* Both functions initialise libsodium themselves (once, through pthread_once: sodium_init() is
 * idempotent and thread-safe but takes a global lock on every call), so callers need not. */

/* Makes a new random token (NUL-terminated) and its hash. Never fails once libsodium is up
 * (aborts if libsodium cannot initialise: there is no safe token without a random source). */
void gh_token_new(char out[GH_TOKEN_LEN + 1], uint8_t hash[GH_TOKEN_HASH_LEN]);

/* Checks the token's form (prefix, exact length, base64url alphabet, and that the last character
 * carries no stray bits, so every token has exactly one spelling) and hashes the whole string.
 * Returns 0, or GH_EINVAL for anything that is not a well-formed token (token may be NULL).
 * Constant work for well-formed input; no allocation. */
int gh_token_hash(const char *token, size_t len, uint8_t hash[GH_TOKEN_HASH_LEN]) GH_WUR;

#endif
