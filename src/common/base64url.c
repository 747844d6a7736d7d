/*
 * base64url.c — base64url without padding (RFC 4648 section 5), strict both ways: the one
 * encoding of tokens, session ids and anything else that travels in a URL or a cookie.
 *
 * The one decision: decoding is canonical (no padding, no whitespace, no stray bits in the last
 * character), so each byte string has exactly one spelling; and the character test is straight
 * line, so checking a secret costs the same whatever its characters.
 */
#include "common/base64url.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value 0..63 of a base64url character, or -1. Straight-line comparisons: no branch on which
 * class the (secret) character falls in. */
int gh_base64url_value(unsigned char c)
{
    int v = -1;
    v = (c >= 'A' && c <= 'Z') ? c - 'A' : v;
    v = (c >= 'a' && c <= 'z') ? c - 'a' + 26 : v;
    v = (c >= '0' && c <= '9') ? c - '0' + 52 : v;
    v = (c == '-') ? 62 : v;
    v = (c == '_') ? 63 : v;
    return v;
}

size_t gh_base64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64url_alphabet[(w >> 18) & 63];
        out[o++] = b64url_alphabet[(w >> 12) & 63];
        out[o++] = b64url_alphabet[(w >> 6) & 63];
        out[o++] = b64url_alphabet[w & 63];
    }
    if (n - i == 1) {
        uint32_t w = (uint32_t)in[i] << 16;
        out[o++] = b64url_alphabet[(w >> 18) & 63];
        out[o++] = b64url_alphabet[(w >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t w = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64url_alphabet[(w >> 18) & 63];
        out[o++] = b64url_alphabet[(w >> 12) & 63];
        out[o++] = b64url_alphabet[(w >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

int gh_base64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    int rc = GH_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if ((!in && len) || len % 4 == 1)
        goto out;
    if (need > cap) {
        rc = GH_ETOOBIG;
        goto out;
    }
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = gh_base64url_value((unsigned char)in[i]);
        if (v < 0)
            goto out;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits (2 or 4) must be zero, or two spellings would decode to the same bytes. */
    if (acc & ((1u << bits) - 1))
        goto out;
    if (out_len)
        *out_len = o;
    rc = 0;
out:
    return rc;
}
