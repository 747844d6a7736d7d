/*
 * base64url.h — base64url without padding (RFC 4648 section 5), strict and canonical: tokens,
 * session ids. In common/ because the stores render ids with it and the tokens are made of it.
 */
#ifndef GH_COMMON_BASE64URL_H
#define GH_COMMON_BASE64URL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Characters of the base64url (no padding) rendering of n bytes, without the NUL. */
#define GH_BASE64URL_LEN(n) (((n)*4 + 2) / 3)

/* base64url without padding: out must hold GH_BASE64URL_LEN(n)+1 bytes (4*ceil(n/3)+1 is always
 * enough); writes a NUL and returns the length written (GH_BASE64URL_LEN(n)). */
size_t gh_base64url_encode(const uint8_t *in, size_t n, char *out);

/* Strict base64url decoding (no padding, no whitespace, no stray bits in the last character):
 * decodes len characters of in into out (cap bytes). *out_len receives the byte count.
 * Returns 0, GH_EINVAL for malformed input, GH_ETOOBIG when cap is too small. */
int gh_base64url_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                        size_t *out_len) GH_WUR;

/* Value 0..63 of a base64url character, or -1; straight-line, no branch on the character's
 * class (for checking secrets). */
int gh_base64url_value(unsigned char c);

#endif
