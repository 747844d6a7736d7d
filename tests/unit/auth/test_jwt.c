/*
 * test_jwt.c — the JOSE primitives (auth/jwt.h) for RS256, ES256 and EdDSA: sign/verify round
 * trips; the public JWK checked the way a relying party uses it — its n/e or x/y turned into a
 * key by OpenSSL directly (not by our code) verifies our signature; PKCS#8 export and import;
 * tampered tokens, a header naming another alg or "none", and a foreign key refused; and every
 * byte charged to `oidc_keys` given back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "auth/jwt.h"
#include "common/base64url.h"
#include "mem/mem.h"

static const char PAYLOAD[] = "{\"iss\":\"https://id.example\",\"sub\":\"42\",\"aud\":\"app\"}";

static size_t b64d(const char *s, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;
    assert_int_equal(gh_base64url_decode(s, n, out, cap, &len), 0);
    return len;
}

static size_t member(json_t *j, const char *name, uint8_t *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, name));
    assert_non_null(v);
    return b64d(v, strlen(v), out, cap);
}

/* A public key made by OpenSSL from the JWK's members — independent of jwt.c's own parser. */
static EVP_PKEY *openssl_key_from_jwk(const char *jwk)
{
    json_t *j = json_loads(jwk, 0, NULL);
    assert_non_null(j);
    const char *kty = json_string_value(json_object_get(j, "kty"));
    uint8_t a[600], b[600], pt[65] = {4}; /* pt: the builder keeps a pointer to it */
    EVP_PKEY *pkey = NULL;
    if (strcmp(kty, "OKP") == 0) {
        assert_string_equal(json_string_value(json_object_get(j, "crv")), "Ed25519");
        size_t n = member(j, "x", a, sizeof a);
        assert_int_equal(n, 32);
        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, a, n);
    } else {
        OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
        BIGNUM *n = NULL, *e = NULL;
        const char *type = kty;
        if (strcmp(kty, "RSA") == 0) {
            size_t nl = member(j, "n", a, sizeof a), el = member(j, "e", b, sizeof b);
            assert_int_equal(nl, 256); /* RSA 2048 */
            n = BN_bin2bn(a, (int)nl, NULL);
            e = BN_bin2bn(b, (int)el, NULL);
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n);
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e);
        } else {
            assert_string_equal(kty, "EC");
            assert_string_equal(json_string_value(json_object_get(j, "crv")), "P-256");
            assert_int_equal(member(j, "x", a, sizeof a), 32);
            assert_int_equal(member(j, "y", b, sizeof b), 32);
            memcpy(pt + 1, a, 32);
            memcpy(pt + 33, b, 32);
            OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt);
        }
        OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
        assert_int_equal(EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params), 1);
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        BN_free(n);
        BN_free(e);
    }
    json_decref(j);
    assert_non_null(pkey);
    return pkey;
}

/* Verifies a compact JWS with OpenSSL alone (ES256's r||s turned into DER here). */
static bool openssl_verify(EVP_PKEY *pkey, gh_jwt_alg_t alg, const char *jwt)
{
    const char *d2 = strrchr(jwt, '.');
    uint8_t sig[600], der[128];
    size_t sl = b64d(d2 + 1, strlen(d2 + 1), sig, sizeof sig);
    const uint8_t *use = sig;
    size_t ul = sl;
    if (alg == GH_JWT_ES256) {
        assert_int_equal(sl, 64); /* raw r||s, never DER */
        ECDSA_SIG *es = ECDSA_SIG_new();
        ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
        unsigned char *p = der;
        ul = (size_t)i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        use = der;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(
        EVP_DigestVerifyInit(ctx, NULL, alg == GH_JWT_EDDSA ? NULL : EVP_sha256(), NULL, pkey), 1);
    int ok = EVP_DigestVerify(ctx, use, ul, (const uint8_t *)jwt, (size_t)(d2 - jwt));
    EVP_MD_CTX_free(ctx);
    return ok == 1;
}

static void round_trip(gh_jwt_alg_t alg)
{
    size_t base = gh_mem_bytes(GH_MEM_OIDC_KEYS);
    gh_jwt_key_t *k = NULL;
    assert_int_equal(gh_jwt_key_generate(alg, "kid-1_A", &k), 0);
    assert_true(gh_jwt_key_private(k));
    assert_string_equal(gh_jwt_key_kid(k), "kid-1_A");

    char *jwt = NULL;
    assert_int_equal(gh_jwt_sign(k, PAYLOAD, strlen(PAYLOAD), &jwt), 0);
    /* the header, exactly */
    char kid[GH_JWT_KID_MAX + 1], a[8];
    assert_int_equal(gh_jwt_peek(jwt, strlen(jwt), kid, a), 0);
    assert_string_equal(kid, "kid-1_A");
    assert_string_equal(a, gh_jwt_alg_name(alg));
    uint8_t hdr[200];
    size_t hl = b64d(jwt, (size_t)(strchr(jwt, '.') - jwt), hdr, sizeof hdr);
    char want[128];
    snprintf(want, sizeof want, "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"kid-1_A\"}",
             gh_jwt_alg_name(alg));
    assert_int_equal(hl, strlen(want));
    assert_memory_equal(hdr, want, hl);

    char *payload = NULL;
    size_t plen = 0;
    assert_int_equal(gh_jwt_verify(k, jwt, strlen(jwt), &payload, &plen), 0);
    assert_int_equal(plen, strlen(PAYLOAD));
    assert_string_equal(payload, PAYLOAD);
    gh_jwt_free(payload);

    /* the JWK, read by OpenSSL alone, verifies the signature */
    char *jwk = NULL;
    assert_int_equal(gh_jwt_key_public_jwk(k, &jwk), 0);
    json_t *j = json_loads(jwk, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "kid")), "kid-1_A");
    assert_string_equal(json_string_value(json_object_get(j, "alg")), gh_jwt_alg_name(alg));
    assert_string_equal(json_string_value(json_object_get(j, "use")), "sig");
    assert_null(json_object_get(j, "d")); /* nothing private */
    json_decref(j);
    EVP_PKEY *pub = openssl_key_from_jwk(jwk);
    assert_true(openssl_verify(pub, alg, jwt));

    /* our own JWK reader gives a public key that verifies, and cannot sign */
    gh_jwt_key_t *pk = NULL;
    assert_int_equal(gh_jwt_key_from_jwk(jwk, strlen(jwk), &pk), 0);
    assert_false(gh_jwt_key_private(pk));
    assert_int_equal(gh_jwt_verify(pk, jwt, strlen(jwt), &payload, &plen), 0);
    gh_jwt_free(payload);
    char *nope = NULL;
    assert_int_equal(gh_jwt_sign(pk, PAYLOAD, strlen(PAYLOAD), &nope), GH_EINVAL);

    /* tampered: a payload byte, a signature byte, a header naming another alg or none */
    char *t = strdup(jwt);
    char *dot = strchr(t, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    assert_int_equal(gh_jwt_verify(k, t, strlen(t), &payload, &plen), GH_EAUTH);
    assert_false(openssl_verify(pub, alg, t));
    strcpy(t, jwt);
    char *last = t + strlen(t) - 5;
    *last = *last == 'A' ? 'B' : 'A';
    assert_int_equal(gh_jwt_verify(k, t, strlen(t), &payload, &plen), GH_EAUTH);
    free(t);
    static const char none_hdr[] = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    static const char hs_hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"kid-1_A\"}";
    const char *hdrs[] = {none_hdr, hs_hdr};
    for (size_t i = 0; i < 2; i++) {
        char forged[4096];
        size_t off = gh_base64url_encode((const uint8_t *)hdrs[i], strlen(hdrs[i]), forged);
        snprintf(forged + off, sizeof forged - off, "%s", strchr(jwt, '.'));
        assert_int_equal(gh_jwt_verify(k, forged, strlen(forged), &payload, &plen), GH_EAUTH);
        assert_null(payload);
    }
    /* malformed */
    assert_int_equal(gh_jwt_verify(k, "a.b", 3, &payload, &plen), GH_EINVAL);
    assert_int_equal(gh_jwt_verify(k, "a.b.c.d", 7, &payload, &plen), GH_EINVAL);

    /* another key of the same alg (same kid) does not verify */
    gh_jwt_key_t *other = NULL;
    assert_int_equal(gh_jwt_key_generate(alg, "kid-1_A", &other), 0);
    assert_int_equal(gh_jwt_verify(other, jwt, strlen(jwt), &payload, &plen), GH_EAUTH);
    gh_jwt_key_free(&other);

    /* PKCS#8 out and back: the imported key signs tokens the original verifies */
    uint8_t der[GH_JWT_DER_MAX];
    size_t dl = 0;
    assert_int_equal(gh_jwt_key_export(k, der, sizeof der, &dl), 0);
    assert_true(dl > 32);
    uint8_t small[16];
    assert_int_equal(gh_jwt_key_export(k, small, sizeof small, &dl), GH_ETOOBIG);
    assert_int_equal(gh_jwt_key_export(k, der, sizeof der, &dl), 0);
    gh_jwt_key_t *back = NULL;
    assert_int_equal(gh_jwt_key_import(alg, "kid-1_A", der, dl, &back), 0);
    char *jwt2 = NULL;
    assert_int_equal(gh_jwt_sign(back, "{}", 2, &jwt2), 0);
    assert_int_equal(gh_jwt_verify(k, jwt2, strlen(jwt2), &payload, &plen), 0);
    assert_string_equal(payload, "{}");
    gh_jwt_free(payload);
    gh_jwt_free(jwt2);
    gh_jwt_key_free(&back);
    /* a key of another kind is not imported as this alg */
    gh_jwt_alg_t wrong = (gh_jwt_alg_t)((alg + 1) % GH_JWT__ALGS);
    assert_int_equal(gh_jwt_key_import(wrong, "kid-1_A", der, dl, &back), GH_EINVAL);
    assert_null(back);

    EVP_PKEY_free(pub);
    gh_jwt_free(jwk);
    gh_jwt_free(jwt);
    gh_jwt_key_free(&pk);
    gh_jwt_key_free(&k);
    assert_null(k);
    assert_int_equal(gh_mem_bytes(GH_MEM_OIDC_KEYS), base);
}

static void rs256(void **state)
{
    (void)state;
    round_trip(GH_JWT_RS256);
}

static void es256(void **state)
{
    (void)state;
    round_trip(GH_JWT_ES256);
}

static void eddsa(void **state)
{
    (void)state;
    round_trip(GH_JWT_EDDSA);
}

/* A token of one alg is refused by a key of another, even with the same kid. */
static void cross_alg_refused(void **state)
{
    (void)state;
    gh_jwt_key_t *rs = NULL, *es = NULL;
    assert_int_equal(gh_jwt_key_generate(GH_JWT_RS256, "k", &rs), 0);
    assert_int_equal(gh_jwt_key_generate(GH_JWT_ES256, "k", &es), 0);
    char *jwt = NULL, *payload = NULL;
    size_t plen = 0;
    assert_int_equal(gh_jwt_sign(rs, "{}", 2, &jwt), 0);
    assert_int_equal(gh_jwt_verify(es, jwt, strlen(jwt), &payload, &plen), GH_EAUTH);
    gh_jwt_free(jwt);
    gh_jwt_key_free(&rs);
    gh_jwt_key_free(&es);
}

static void names_and_bad_input(void **state)
{
    (void)state;
    gh_jwt_alg_t a;
    assert_int_equal(gh_jwt_alg_parse("RS256", &a), 0);
    assert_int_equal(a, GH_JWT_RS256);
    assert_int_equal(gh_jwt_alg_parse("EdDSA", &a), 0);
    assert_int_equal(a, GH_JWT_EDDSA);
    assert_int_equal(gh_jwt_alg_parse("rs256", &a), GH_EINVAL);
    assert_int_equal(gh_jwt_alg_parse("none", &a), GH_EINVAL);
    assert_int_equal(gh_jwt_alg_parse("HS256", &a), GH_EINVAL);
    gh_jwt_key_t *k = NULL;
    assert_int_equal(gh_jwt_key_generate(GH_JWT_ES256, "", &k), GH_EINVAL);
    assert_int_equal(gh_jwt_key_generate(GH_JWT_ES256, "has space", &k), GH_EINVAL);
    assert_int_equal(gh_jwt_key_generate(GH_JWT_ES256, "a\"b", &k), GH_EINVAL);
    assert_int_equal(gh_jwt_key_generate(GH_JWT__ALGS, "k", &k), GH_EINVAL);
    uint8_t junk[64] = {0x30, 0x03, 1, 2, 3};
    assert_int_equal(gh_jwt_key_import(GH_JWT_RS256, "k", junk, sizeof junk, &k), GH_EINVAL);
    static const char *bad_jwks[] = {
        "{}",
        "[]",
        "{\"kty\":\"oct\",\"k\":\"AAAA\"}",
        "{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AAAA\",\"y\":\"AAAA\"}",
        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}",
        "not json"};
    for (size_t i = 0; i < sizeof bad_jwks / sizeof bad_jwks[0]; i++)
        assert_int_equal(gh_jwt_key_from_jwk(bad_jwks[i], strlen(bad_jwks[i]), &k), GH_EINVAL);
    assert_null(k);
}

int main(void)
{
    gh_mem_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rs256),
        cmocka_unit_test(es256),
        cmocka_unit_test(eddsa),
        cmocka_unit_test(cross_alg_refused),
        cmocka_unit_test(names_and_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
