/*
 * jwt.c — JOSE on OpenSSL 3 (jwt.h): key generation, PKCS#8 import and export, public JWKs,
 * compact JWS signing and verification for RS256, ES256 and EdDSA.
 *
 * The one design decision: every JSON text made here (the JWS header, a JWK) is written with
 * snprintf from base64url strings and fixed names — nothing that needs escaping ever reaches it
 * (kids are checked to be base64url) — so the bytes signed are exactly the bytes sent, and no
 * JSON library sits on the signing path. jansson only READS (a JWK, a token's header).
 */
#include "auth/jwt.h"

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "common/base64url.h"
#include "mem/mem.h"

#define MEM GH_MEM_OIDC_KEYS
#define HEADER_MAX 160 /* {"alg":"EdDSA","typ":"JWT","kid":"<32>"} */
#define SIG_MAX 512    /* RSA up to 4096 bits */

struct gh_jwt_key {
    EVP_PKEY *pkey;
    gh_jwt_alg_t alg;
    bool priv;
    char kid[GH_JWT_KID_MAX + 1];
};

static const char *const alg_names[GH_JWT__ALGS] = {"RS256", "ES256", "EdDSA"};

const char *gh_jwt_alg_name(gh_jwt_alg_t alg)
{
    return (unsigned)alg < GH_JWT__ALGS ? alg_names[alg] : "?";
}

int gh_jwt_alg_parse(const char *name, gh_jwt_alg_t *out)
{
    for (int i = 0; name && i < GH_JWT__ALGS; i++) {
        if (strcmp(name, alg_names[i]) == 0) {
            *out = (gh_jwt_alg_t)i;
            return 0;
        }
    }
    return GH_EINVAL;
}

static bool kid_ok(const char *kid)
{
    size_t n = kid ? strnlen(kid, GH_JWT_KID_MAX + 1) : 0;
    if (n == 0 || n > GH_JWT_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (gh_base64url_value((unsigned char)kid[i]) < 0)
            return false;
    return true;
}

/* True when pkey is a key of the kind alg needs (RSA of at least 2048 bits, P-256, Ed25519). */
static bool kind_ok(EVP_PKEY *pkey, gh_jwt_alg_t alg)
{
    switch (alg) {
    case GH_JWT_RS256:
        return EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= 2048;
    case GH_JWT_ES256: {
        char group[32] = "";
        size_t gl = 0;
        return EVP_PKEY_is_a(pkey, "EC") &&
               EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                              &gl) == 1 &&
               strcmp(group, "prime256v1") == 0;
    }
    case GH_JWT_EDDSA:
        return EVP_PKEY_is_a(pkey, "ED25519");
    default:
        return false;
    }
}

static int wrap(EVP_PKEY *pkey, gh_jwt_alg_t alg, const char *kid, bool priv, gh_jwt_key_t **out)
{
    gh_jwt_key_t *k = gh_mem_calloc(MEM, 1, sizeof *k);
    if (!k) {
        EVP_PKEY_free(pkey);
        return GH_ENOMEM;
    }
    k->pkey = pkey;
    k->alg = alg;
    k->priv = priv;
    snprintf(k->kid, sizeof k->kid, "%s", kid ? kid : "");
    *out = k;
    return 0;
}

int gh_jwt_key_generate(gh_jwt_alg_t alg, const char *kid, gh_jwt_key_t **out)
{
    *out = NULL;
    if (!kid_ok(kid))
        return GH_EINVAL;
    EVP_PKEY *pkey = NULL;
    switch (alg) {
    case GH_JWT_RS256:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        break;
    case GH_JWT_ES256:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case GH_JWT_EDDSA:
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        break;
    default:
        return GH_EINVAL;
    }
    if (!pkey)
        return GH_EINTERNAL;
    return wrap(pkey, alg, kid, true, out);
}

int gh_jwt_key_export(const gh_jwt_key_t *k, uint8_t *der, size_t cap, size_t *len)
{
    *len = 0;
    if (!k->priv)
        return GH_EINVAL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k->pkey);
    if (!p8)
        return GH_EINTERNAL;
    int ret = 0;
    int n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
    if (n <= 0) {
        ret = GH_EINTERNAL;
    } else if ((size_t)n > cap) {
        ret = GH_ETOOBIG;
    } else {
        unsigned char *p = der;
        if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n)
            ret = GH_EINTERNAL;
        else
            *len = (size_t)n;
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    return ret;
}

int gh_jwt_key_import(gh_jwt_alg_t alg, const char *kid, const uint8_t *der, size_t len,
                      gh_jwt_key_t **out)
{
    *out = NULL;
    if (!kid_ok(kid) || (unsigned)alg >= GH_JWT__ALGS || len == 0 || len > GH_JWT_DER_MAX)
        return GH_EINVAL;
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (!p8)
        return GH_EINVAL;
    EVP_PKEY *pkey = EVP_PKCS82PKEY(p8);
    PKCS8_PRIV_KEY_INFO_free(p8);
    if (!pkey || !kind_ok(pkey, alg)) {
        EVP_PKEY_free(pkey);
        return GH_EINVAL;
    }
    return wrap(pkey, alg, kid, true, out);
}

void gh_jwt_key_free(gh_jwt_key_t **k)
{
    if (!k || !*k)
        return;
    EVP_PKEY_free((*k)->pkey); /* OpenSSL clears private key material as it frees it */
    gh_mem_free(MEM, *k);
    *k = NULL;
}

const char *gh_jwt_key_kid(const gh_jwt_key_t *k)
{
    return k->kid;
}

gh_jwt_alg_t gh_jwt_key_alg(const gh_jwt_key_t *k)
{
    return k->alg;
}

bool gh_jwt_key_private(const gh_jwt_key_t *k)
{
    return k->priv;
}

void gh_jwt_free(char *s)
{
    gh_mem_free(MEM, s);
}

/* ---- public JWKs ---- */

/* base64url of a big number (big-endian, `pad` bytes when pad > 0, else minimal) into out
 * (cap bytes). 0 or GH_EINTERNAL. */
static int bn_b64(const EVP_PKEY *pkey, const char *name, int pad, char *out, size_t cap)
{
    BIGNUM *bn = NULL;
    uint8_t buf[SIG_MAX];
    int ret = GH_EINTERNAL;
    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
        return ret;
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (n > 0 && (size_t)n <= sizeof buf && GH_BASE64URL_LEN((size_t)n) < cap) {
        gh_base64url_encode(buf, (size_t)n, out);
        ret = 0;
    }
    BN_free(bn);
    return ret;
}

int gh_jwt_key_public_jwk(const gh_jwt_key_t *k, char **json)
{
    *json = NULL;
    char a[GH_BASE64URL_LEN(SIG_MAX) + 1], b[GH_BASE64URL_LEN(SIG_MAX) + 1];
    size_t cap = 256 + sizeof a + sizeof b;
    char *s = gh_mem_alloc(MEM, cap);
    if (!s)
        return GH_ENOMEM;
    int ret = GH_EINTERNAL;
    if (k->alg == GH_JWT_RS256) {
        if (bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0, a, sizeof a) != 0 ||
            bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0, b, sizeof b) != 0)
            goto out;
        snprintf(s, cap,
                 "{\"kty\":\"RSA\",\"kid\":\"%s\",\"alg\":\"RS256\",\"use\":\"sig\","
                 "\"n\":\"%s\",\"e\":\"%s\"}",
                 k->kid, a, b);
    } else if (k->alg == GH_JWT_ES256) {
        if (bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32, a, sizeof a) != 0 ||
            bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b, sizeof b) != 0)
            goto out;
        snprintf(s, cap,
                 "{\"kty\":\"EC\",\"kid\":\"%s\",\"alg\":\"ES256\",\"use\":\"sig\","
                 "\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}",
                 k->kid, a, b);
    } else {
        uint8_t raw[32];
        size_t rl = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rl) != 1 || rl != 32)
            goto out;
        gh_base64url_encode(raw, rl, a);
        snprintf(s, cap,
                 "{\"kty\":\"OKP\",\"kid\":\"%s\",\"alg\":\"EdDSA\",\"use\":\"sig\","
                 "\"crv\":\"Ed25519\",\"x\":\"%s\"}",
                 k->kid, a);
    }
    *json = s;
    s = NULL;
    ret = 0;
out:
    gh_mem_free(MEM, s);
    return ret;
}

/* Decodes a base64url member of obj into out (cap bytes): its length, or -1. */
static long member_b64(json_t *obj, const char *name, uint8_t *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(obj, name));
    size_t n = 0;
    if (!v || gh_base64url_decode(v, strlen(v), out, cap, &n) != 0)
        return -1;
    return (long)n;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
            pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

int gh_jwt_key_from_jwk(const char *text, size_t len, gh_jwt_key_t **out)
{
    *out = NULL;
    json_t *j = json_loadb(text, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return GH_EINVAL;
    }
    const char *kty = json_string_value(json_object_get(j, "kty"));
    const char *crv = json_string_value(json_object_get(j, "crv"));
    const char *kid = json_string_value(json_object_get(j, "kid"));
    const char *alg_s = json_string_value(json_object_get(j, "alg"));
    uint8_t a[SIG_MAX], b[SIG_MAX];
    EVP_PKEY *pkey = NULL;
    gh_jwt_alg_t alg = GH_JWT__ALGS;
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *n = NULL, *e = NULL;
    if (!kty || (kid && !kid_ok(kid)))
        goto out;
    if (strcmp(kty, "RSA") == 0) {
        long nl = member_b64(j, "n", a, sizeof a), el = member_b64(j, "e", b, sizeof b);
        alg = GH_JWT_RS256;
        if (nl <= 0 || el <= 0 || !(bld = OSSL_PARAM_BLD_new()) ||
            !(n = BN_bin2bn(a, (int)nl, NULL)) || !(e = BN_bin2bn(b, (int)el, NULL)) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto out;
        pkey = from_params("RSA", bld);
    } else if (strcmp(kty, "EC") == 0 && crv && strcmp(crv, "P-256") == 0) {
        uint8_t pt[65];
        alg = GH_JWT_ES256;
        if (member_b64(j, "x", a, sizeof a) != 32 || member_b64(j, "y", b, sizeof b) != 32 ||
            !(bld = OSSL_PARAM_BLD_new()))
            goto out;
        pt[0] = 4;
        memcpy(pt + 1, a, 32);
        memcpy(pt + 33, b, 32);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt))
            goto out;
        pkey = from_params("EC", bld);
    } else if (strcmp(kty, "OKP") == 0 && crv && strcmp(crv, "Ed25519") == 0) {
        alg = GH_JWT_EDDSA;
        if (member_b64(j, "x", a, sizeof a) != 32)
            goto out;
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, a, 32);
    }
out:
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_BLD_free(bld);
    int ret = GH_EINVAL;
    /* A JWK that names an alg must name the one its key is for. */
    if (pkey && kind_ok(pkey, alg) && (!alg_s || strcmp(alg_s, alg_names[alg]) == 0))
        ret = wrap(pkey, alg, kid, false, out);
    else
        EVP_PKEY_free(pkey);
    json_decref(j);
    return ret;
}

/* ---- signing ---- */

/* Signs msg with k into sig (JOSE form: r||s for ES256). */
static int sign_raw(const gh_jwt_key_t *k, const uint8_t *msg, size_t len, uint8_t *sig,
                    size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t der[SIG_MAX];
    size_t dl = sizeof der;
    int ret = GH_EINTERNAL;
    if (!ctx)
        return GH_ENOMEM;
    if (EVP_DigestSignInit(ctx, NULL, k->alg == GH_JWT_EDDSA ? NULL : EVP_sha256(), NULL,
                           k->pkey) != 1 ||
        EVP_DigestSign(ctx, der, &dl, msg, len) != 1)
        goto out;
    if (k->alg != GH_JWT_ES256) {
        memcpy(sig, der, dl);
        *siglen = dl;
        ret = 0;
        goto out;
    }
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);
    if (es) {
        const BIGNUM *r, *s;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32) {
            *siglen = 64;
            ret = 0;
        }
        ECDSA_SIG_free(es);
    }
out:
    EVP_MD_CTX_free(ctx);
    return ret;
}

int gh_jwt_sign(const gh_jwt_key_t *k, const char *payload, size_t len, char **out)
{
    *out = NULL;
    if (!k->priv)
        return GH_EINVAL;
    if (len > GH_JWT_MAX)
        return GH_ETOOBIG;
    char header[HEADER_MAX];
    int hl = snprintf(header, sizeof header, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
                      alg_names[k->alg], k->kid);
    if (hl < 0 || (size_t)hl >= sizeof header)
        return GH_EINTERNAL;
    size_t h64 = GH_BASE64URL_LEN((size_t)hl), p64 = GH_BASE64URL_LEN(len);
    size_t cap = h64 + 1 + p64 + 1 + GH_BASE64URL_LEN(SIG_MAX) + 1;
    char *s = gh_mem_alloc(MEM, cap);
    if (!s)
        return GH_ENOMEM;
    size_t off = gh_base64url_encode((const uint8_t *)header, (size_t)hl, s);
    s[off++] = '.';
    off += gh_base64url_encode((const uint8_t *)payload, len, s + off);
    uint8_t sig[SIG_MAX];
    size_t sl = 0;
    int ret = sign_raw(k, (const uint8_t *)s, off, sig, &sl);
    if (ret != 0) {
        gh_mem_free(MEM, s);
        return ret;
    }
    s[off++] = '.';
    gh_base64url_encode(sig, sl, s + off);
    *out = s;
    return 0;
}

/* ---- verification ---- */

typedef struct {
    const char *h, *p, *s; /* the three parts */
    size_t hl, pl, sl;
} parts_t;

static int split(const char *jwt, size_t len, parts_t *out)
{
    if (!jwt || len == 0)
        return GH_EINVAL;
    if (len > GH_JWT_MAX)
        return GH_ETOOBIG;
    const char *d1 = memchr(jwt, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - jwt)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - jwt)))
        return GH_EINVAL;
    out->h = jwt;
    out->hl = (size_t)(d1 - jwt);
    out->p = d1 + 1;
    out->pl = (size_t)(d2 - out->p);
    out->s = d2 + 1;
    out->sl = len - (size_t)(out->s - jwt);
    return out->hl && out->sl ? 0 : GH_EINVAL;
}

/* The header's alg and kid. */
static int read_header(const parts_t *pt, char kid[GH_JWT_KID_MAX + 1], char alg[8])
{
    uint8_t buf[HEADER_MAX * 4];
    size_t n = 0;
    if (gh_base64url_decode(pt->h, pt->hl, buf, sizeof buf, &n) != 0)
        return GH_EINVAL;
    json_t *j = json_loadb((const char *)buf, n, 0, NULL);
    const char *a = json_string_value(json_object_get(j, "alg"));
    json_t *kj = json_object_get(j, "kid");
    const char *kd = json_string_value(kj);
    int ret = GH_EINVAL;
    if (json_is_object(j) && a && strlen(a) < 8 && (!kj || (kd && strlen(kd) <= GH_JWT_KID_MAX))) {
        snprintf(alg, 8, "%s", a);
        snprintf(kid, GH_JWT_KID_MAX + 1, "%s", kd ? kd : "");
        ret = 0;
    }
    json_decref(j);
    return ret;
}

int gh_jwt_peek(const char *jwt, size_t len, char kid[GH_JWT_KID_MAX + 1], char alg[8])
{
    parts_t pt;
    int rc = split(jwt, len, &pt);
    return rc != 0 ? rc : read_header(&pt, kid, alg);
}

static bool verify_raw(const gh_jwt_key_t *k, const uint8_t *msg, size_t len, const uint8_t *sig,
                       size_t sl)
{
    uint8_t der[SIG_MAX];
    size_t dl = sl;
    const uint8_t *use = sig;
    if (k->alg == GH_JWT_ES256) {
        if (sl != 64)
            return false;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return false;
        }
        unsigned char *p = der;
        int n = i2d_ECDSA_SIG(es, NULL);
        bool fits = n > 0 && (size_t)n <= sizeof der && i2d_ECDSA_SIG(es, &p) == n;
        ECDSA_SIG_free(es);
        if (!fits)
            return false;
        dl = (size_t)n;
        use = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx &&
              EVP_DigestVerifyInit(ctx, NULL, k->alg == GH_JWT_EDDSA ? NULL : EVP_sha256(), NULL,
                                   k->pkey) == 1 &&
              EVP_DigestVerify(ctx, use, dl, msg, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

int gh_jwt_verify(const gh_jwt_key_t *k, const char *jwt, size_t len, char **payload, size_t *plen)
{
    *payload = NULL;
    *plen = 0;
    parts_t pt;
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    int rc = split(jwt, len, &pt);
    if (rc == 0)
        rc = read_header(&pt, kid, alg);
    if (rc != 0)
        return rc;
    /* The key decides the algorithm; a header naming another (or "none") is refused. */
    if (strcmp(alg, alg_names[k->alg]) != 0 || (kid[0] && k->kid[0] && strcmp(kid, k->kid) != 0))
        return GH_EAUTH;
    uint8_t sig[SIG_MAX];
    size_t sl = 0;
    if (gh_base64url_decode(pt.s, pt.sl, sig, sizeof sig, &sl) != 0)
        return GH_EAUTH;
    if (!verify_raw(k, (const uint8_t *)jwt, pt.hl + 1 + pt.pl, sig, sl))
        return GH_EAUTH;
    char *p = gh_mem_alloc(MEM, pt.pl + 1);
    if (!p)
        return GH_ENOMEM;
    size_t n = 0;
    if (gh_base64url_decode(pt.p, pt.pl, (uint8_t *)p, pt.pl + 1, &n) != 0) {
        gh_mem_free(MEM, p);
        return GH_EINVAL;
    }
    p[n] = '\0';
    *payload = p;
    *plen = n;
    return 0;
}
