/*
 * jwt.h — the JOSE primitives of the OpenID provider (OpenSSL's libcrypto): signing keys for
 * RS256 (RSA 2048), ES256 (P-256) and EdDSA (Ed25519), their private form as PKCS#8 DER bytes
 * (what the key set seals into the store), their public JWK (RFC 7517/7518/8037), and compact
 * JWS (RFC 7515) signing and verification of a JSON payload.
 *
 * The one design decision: the JWS header is always {"alg","typ":"JWT","kid"} of the key that
 * signs, and verification takes the algorithm from the KEY, never from the token's header (a
 * token whose header names another alg, or "none", is refused), so no algorithm confusion can
 * turn a public key into an HMAC secret.
 *
 * Memory: a key and every string these functions return are charged to `oidc_keys`; the private
 * key bytes they copy are wiped before they are freed. Keys are immutable once made: one key may
 * sign and verify from any number of threads at once.
 */
#ifndef GH_AUTH_JWT_H
#define GH_AUTH_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef enum { GH_JWT_RS256 = 0, GH_JWT_ES256, GH_JWT_EDDSA, GH_JWT__ALGS } gh_jwt_alg_t;

#define GH_JWT_KID_MAX 32   /* bytes of a key id */
#define GH_JWT_DER_MAX 2048 /* PKCS#8 DER of any key made here (RSA-2048: about 1.2 KB) */
#define GH_JWT_MAX 16384    /* bytes of a token gh_jwt_verify accepts */

typedef struct gh_jwt_key gh_jwt_key_t;

/* "RS256", "ES256", "EdDSA"; "?" out of range. */
const char *gh_jwt_alg_name(gh_jwt_alg_t alg);
/* The alg of its JOSE name (exact case): 0, or GH_EINVAL. */
int gh_jwt_alg_parse(const char *name, gh_jwt_alg_t *out) GH_WUR;

/* A new private key for alg, named kid (1..GH_JWT_KID_MAX bytes of base64url characters).
 * GH_EINVAL (bad alg or kid), GH_ENOMEM, GH_EINTERNAL (OpenSSL failed). */
int gh_jwt_key_generate(gh_jwt_alg_t alg, const char *kid, gh_jwt_key_t **out) GH_WUR;
/* The private key as PKCS#8 DER into der (cap bytes): GH_ETOOBIG, GH_EINVAL for a public key. */
int gh_jwt_key_export(const gh_jwt_key_t *k, uint8_t *der, size_t cap, size_t *len) GH_WUR;
/* A private key back from PKCS#8 DER; GH_EINVAL when the bytes are not a key of alg. */
int gh_jwt_key_import(gh_jwt_alg_t alg, const char *kid, const uint8_t *der, size_t len,
                      gh_jwt_key_t **out) GH_WUR;
/* A public key from one JWK's JSON text (kty RSA/EC/OKP with its alg or the alg its kty and
 * curve imply): what a relying party does with the JWKS. GH_EINVAL when it is not one. */
int gh_jwt_key_from_jwk(const char *json, size_t len, gh_jwt_key_t **out) GH_WUR;
void gh_jwt_key_free(gh_jwt_key_t **k);

const char *gh_jwt_key_kid(const gh_jwt_key_t *k);
gh_jwt_alg_t gh_jwt_key_alg(const gh_jwt_key_t *k);
bool gh_jwt_key_private(const gh_jwt_key_t *k);

/* The public JWK as one JSON object text, NUL-terminated:
 * {"kty","kid","alg","use":"sig", "n","e" | "crv","x"[,"y"]}. Free with gh_jwt_free. */
int gh_jwt_key_public_jwk(const gh_jwt_key_t *k, char **json) GH_WUR;

/* Compact JWS: base64url(header).base64url(payload).base64url(signature), NUL-terminated, with
 * header {"alg","typ":"JWT","kid"}; ES256's signature is r||s (64 bytes), never DER.
 * payload is taken as given (the caller's JSON). Free with gh_jwt_free. GH_EINVAL for a public
 * key, GH_ETOOBIG past GH_JWT_MAX, GH_ENOMEM, GH_EINTERNAL. */
int gh_jwt_sign(const gh_jwt_key_t *k, const char *payload, size_t len, char **out) GH_WUR;

/* The header's kid and alg of a compact JWS, without checking anything else (to pick the key).
 * GH_EINVAL when it is not a JWS with a JSON header. kid is "" when the header has none. */
int gh_jwt_peek(const char *jwt, size_t len, char kid[GH_JWT_KID_MAX + 1], char alg[8]) GH_WUR;

/* Checks jwt against k: the header's alg must be k's, its kid (when present) k's, the signature
 * valid. On success *payload holds the decoded payload (NUL-terminated, *plen bytes; free with
 * gh_jwt_free). Claims (exp, iss, aud) are the caller's to judge. GH_EAUTH for a bad signature
 * or a mismatched header, GH_EINVAL for a malformed token, GH_ETOOBIG past GH_JWT_MAX. */
int gh_jwt_verify(const gh_jwt_key_t *k, const char *jwt, size_t len, char **payload,
                  size_t *plen) GH_WUR;

/* Frees a string returned above (charged to oidc_keys). NULL is a no-op. */
void gh_jwt_free(char *s);

#endif
