/*
 * secretkey.h — the node's secret key (--secret-key-file) and what it protects: TOTP secrets
 * sealed at rest (libsodium secretbox: XSalsa20-Poly1305, a random nonce per seal) and the keyed
 * hashes recovery codes are stored as.
 *
 * The one design decision: a key the operator NAMED that is missing or malformed stops the
 * start (never a silent new key, which would orphan every stored secret); only the default file
 * in the data dir is created when missing, so `make run` needs no set-up.
 */
#ifndef GH_AUTH_SECRETKEY_H
#define GH_AUTH_SECRETKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_SECRET_KEY_LEN 32
/* A sealed blob: nonce, MAC, then the message. */
#define GH_SEAL_OVERHEAD (24 + 16)

/* Reads the key: base64 of exactly 32 bytes on the first line (as `openssl rand -base64 32`
 * writes). create_if_missing (the default path): a missing file is made (mode 0600, 32 random
 * bytes). 0; GH_EINVAL with *why (a sentence naming the path) when the file is missing (and not
 * to be created), unreadable or not a key; GH_EIO when it cannot be created. */
int gh_secret_key_load(const char *path, bool create_if_missing, uint8_t key[GH_SECRET_KEY_LEN],
                       char *why, size_t why_cap) GH_WUR;

/* Seals len bytes into out (len + GH_SEAL_OVERHEAD bytes). */
void gh_secret_seal(const uint8_t key[GH_SECRET_KEY_LEN], const uint8_t *in, size_t len,
                    uint8_t *out);
/* Opens a sealed blob into out (len - GH_SEAL_OVERHEAD bytes): 0, or GH_EAUTH when it was not
 * sealed with this key (or was altered). */
int gh_secret_open(const uint8_t key[GH_SECRET_KEY_LEN], const uint8_t *in, size_t len,
                   uint8_t *out) GH_WUR;

/* The stored form of a recovery code: BLAKE2b-256 keyed by the secret key over the user id and
 * the normalized code, so a copy of the database alone does not let anyone test guesses. */
void gh_secret_code_hash(const uint8_t key[GH_SECRET_KEY_LEN], uint64_t user_id, const char *code,
                         size_t len, uint8_t out[32]);

#endif
