/*
 * test_webauthn.c — WebAuthn registration and assertion verification against ceremonies this
 * test makes itself: a P-256 key from OpenSSL and an Ed25519 key from libsodium play the
 * authenticator, the test writes the authenticatorData, clientDataJSON, COSE key and attestation
 * object (CBOR) byte by byte and signs them. Each good ceremony verifies; then each field is
 * tampered with, one at a time, and each refusal is checked by its reason, so a tamper that
 * happened to be caught by another check would fail the test. Then the challenge table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "auth/webauthn.h"
#include "common/base64url.h"
#include "mem/mem.h"

#define RP_ID "localhost"
#define ORIGIN "http://localhost:8080"

/* ------------------------------------------------------------------- bytes and CBOR writer -- */

typedef struct {
    uint8_t b[16384];
    size_t n;
} buf_t;

static void put(buf_t *o, const void *p, size_t n)
{
    assert_true(o->n + n <= sizeof o->b);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

static void put_u8(buf_t *o, uint8_t v)
{
    put(o, &v, 1);
}

static void cbor_head(buf_t *o, int major, uint64_t v)
{
    uint8_t m = (uint8_t)(major << 5);
    if (v < 24) {
        put_u8(o, m | (uint8_t)v);
    } else if (v < 256) {
        put_u8(o, m | 24);
        put_u8(o, (uint8_t)v);
    } else if (v < 65536) {
        put_u8(o, m | 25);
        put_u8(o, (uint8_t)(v >> 8));
        put_u8(o, (uint8_t)v);
    } else {
        put_u8(o, m | 26);
        for (int s = 24; s >= 0; s -= 8)
            put_u8(o, (uint8_t)(v >> s));
    }
}
static void cbor_int(buf_t *o, int64_t v)
{
    v >= 0 ? cbor_head(o, 0, (uint64_t)v) : cbor_head(o, 1, (uint64_t)(-1 - v));
}
static void cbor_bytes(buf_t *o, const void *p, size_t n)
{
    cbor_head(o, 2, n), put(o, p, n);
}
static void cbor_text(buf_t *o, const char *s)
{
    cbor_head(o, 3, strlen(s)), put(o, s, strlen(s));
}

/* ------------------------------------------------------------------------ the authenticator -- */

typedef struct {
    int alg;
    EVP_PKEY *ec;
    uint8_t ed_pk[crypto_sign_PUBLICKEYBYTES], ed_sk[crypto_sign_SECRETKEYBYTES];
    uint8_t id[16];
} authenticator_t;

static void authenticator_make(authenticator_t *a, int alg)
{
    memset(a, 0, sizeof *a);
    a->alg = alg;
    randombytes_buf(a->id, sizeof a->id);
    if (alg == GH_WEBAUTHN_ALG_ES256) {
        a->ec = EVP_EC_gen("P-256");
        assert_non_null(a->ec);
    } else {
        crypto_sign_keypair(a->ed_pk, a->ed_sk);
    }
}

static void authenticator_free(authenticator_t *a)
{
    EVP_PKEY_free(a->ec);
}

static void cose_key(const authenticator_t *a, int alg_written, buf_t *o)
{
    if (a->alg == GH_WEBAUTHN_ALG_ES256) {
        uint8_t pt[65];
        size_t len = 0;
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(a->ec, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &len),
            1);
        assert_int_equal(len, 65);
        cbor_head(o, 5, 5);
        cbor_int(o, 1), cbor_int(o, 2);
        cbor_int(o, 3), cbor_int(o, alg_written);
        cbor_int(o, -1), cbor_int(o, 1);
        cbor_int(o, -2), cbor_bytes(o, pt + 1, 32);
        cbor_int(o, -3), cbor_bytes(o, pt + 33, 32);
    } else {
        cbor_head(o, 5, 4);
        cbor_int(o, 1), cbor_int(o, 1);
        cbor_int(o, 3), cbor_int(o, alg_written);
        cbor_int(o, -1), cbor_int(o, 6);
        cbor_int(o, -2), cbor_bytes(o, a->ed_pk, 32);
    }
}

static void sign(const authenticator_t *a, const buf_t *auth, const char *client_data, buf_t *sig)
{
    uint8_t msg[4096 + 32];
    memcpy(msg, auth->b, auth->n);
    crypto_hash_sha256(msg + auth->n, (const uint8_t *)client_data, strlen(client_data));
    size_t mlen = auth->n + 32;
    sig->n = 0;
    if (a->alg == GH_WEBAUTHN_ALG_EDDSA) {
        crypto_sign_detached(sig->b, NULL, msg, mlen, a->ed_sk);
        sig->n = crypto_sign_BYTES;
        return;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = sizeof sig->b;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->ec), 1);
    assert_int_equal(EVP_DigestSign(md, sig->b, &n, msg, mlen), 1);
    sig->n = n;
    EVP_MD_CTX_free(md);
}

/* --------------------------------------------------------------------------- the ceremony -- */

/* Every field of a ceremony a test may tamper with; ceremony_default gives the good one. */
typedef struct {
    const char *type, *origin, *rp_id, *fmt;
    const uint8_t *challenge;
    uint8_t flags;
    uint32_t count;
    int cose_alg; /* written into the COSE key */
    bool cross_origin, bad_sig, trailing, other_raw_id, att_alg_wrong, x5c;
    const char *client_data_override; /* raw clientDataJSON */
} ceremony_t;

static uint8_t issued[GH_WEBAUTHN_CHALLENGE_LEN];

static ceremony_t ceremony_default(const authenticator_t *a, bool create)
{
    ceremony_t c = {
        .type = create ? "webauthn.create" : "webauthn.get",
        .origin = ORIGIN,
        .rp_id = RP_ID,
        .fmt = "none",
        .challenge = issued,
        .flags = GH_WEBAUTHN_FLAG_UP | GH_WEBAUTHN_FLAG_UV | (create ? GH_WEBAUTHN_FLAG_AT : 0),
        .count = create ? 0 : 1,
        .cose_alg = a->alg,
    };
    return c;
}

static char *b64(const void *p, size_t n)
{
    char *s = malloc(GH_BASE64URL_LEN(n) + 4);
    assert_non_null(s);
    gh_base64url_encode(p, n, s);
    return s;
}

static void client_data(const ceremony_t *c, char *out, size_t cap)
{
    if (c->client_data_override) {
        snprintf(out, cap, "%s", c->client_data_override);
        return;
    }
    char *ch = b64(c->challenge, GH_WEBAUTHN_CHALLENGE_LEN);
    snprintf(out, cap,
             "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\",\"crossOrigin\":%s}", c->type,
             ch, c->origin, c->cross_origin ? "true" : "false");
    free(ch);
}

static void auth_data(const authenticator_t *a, const ceremony_t *c, buf_t *o)
{
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)c->rp_id, strlen(c->rp_id));
    put(o, h, 32);
    put_u8(o, c->flags);
    for (int s = 24; s >= 0; s -= 8)
        put_u8(o, (uint8_t)(c->count >> s));
    if (c->flags & GH_WEBAUTHN_FLAG_AT) {
        uint8_t aaguid[16] = {0};
        put(o, aaguid, 16);
        put_u8(o, 0);
        put_u8(o, sizeof a->id);
        put(o, a->id, sizeof a->id);
        cose_key(a, c->cose_alg, o);
    }
    if (c->trailing)
        put_u8(o, 0);
}

static json_t *registration(const authenticator_t *a, const ceremony_t *c)
{
    char cd[1024];
    client_data(c, cd, sizeof cd);
    buf_t *auth = calloc(1, sizeof *auth), *att = calloc(1, sizeof *att),
          *sig = calloc(1, sizeof *sig);
    auth_data(a, c, auth);
    bool packed = strcmp(c->fmt, "packed") == 0;
    cbor_head(att, 5, 3);
    cbor_text(att, "fmt"), cbor_text(att, c->fmt);
    cbor_text(att, "attStmt");
    if (packed) {
        sign(a, auth, cd, sig);
        if (c->bad_sig)
            sig->b[sig->n / 2] ^= 1;
        cbor_head(att, 5, c->x5c ? 3 : 2);
        cbor_text(att, "alg"), cbor_int(att, c->att_alg_wrong ? (a->alg == -7 ? -8 : -7) : a->alg);
        cbor_text(att, "sig"), cbor_bytes(att, sig->b, sig->n);
        if (c->x5c) {
            cbor_text(att, "x5c");
            cbor_head(att, 4, 1);
            cbor_bytes(att, "cert", 4);
        }
    } else {
        cbor_head(att, 5, 0);
    }
    cbor_text(att, "authData"), cbor_bytes(att, auth->b, auth->n);

    uint8_t other[16];
    memset(other, 7, sizeof other);
    char *id = b64(c->other_raw_id ? other : a->id, sizeof a->id);
    char *cd64 = b64(cd, strlen(cd));
    char *att64 = b64(att->b, att->n);
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "id", id, "rawId", id, "type", "public-key",
                          "response", "clientDataJSON", cd64, "attestationObject", att64);
    free(id), free(cd64), free(att64);
    free(auth), free(att), free(sig);
    assert_non_null(j);
    return j;
}

static json_t *assertion(const authenticator_t *a, const ceremony_t *c, const char *user_handle)
{
    char cd[1024];
    client_data(c, cd, sizeof cd);
    buf_t *auth = calloc(1, sizeof *auth), *sig = calloc(1, sizeof *sig);
    auth_data(a, c, auth);
    sign(a, auth, cd, sig);
    if (c->bad_sig)
        sig->b[sig->n - 3] ^= 0x10;
    char *id = b64(a->id, sizeof a->id);
    char *cd64 = b64(cd, strlen(cd));
    char *ad64 = b64(auth->b, auth->n);
    char *sig64 = b64(sig->b, sig->n);
    char *uh = user_handle ? b64(user_handle, strlen(user_handle)) : NULL;
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s?}}", "id", id, "rawId", id, "type",
                          "public-key", "response", "clientDataJSON", cd64, "authenticatorData",
                          ad64, "signature", sig64, "userHandle", uh);
    free(id), free(cd64), free(ad64), free(sig64), free(uh);
    free(auth), free(sig);
    assert_non_null(j);
    return j;
}

static const gh_webauthn_rp_t rp = {.rp_id = RP_ID, .origin = ORIGIN, .require_uv = false};

/* Registers and expects rc with reason containing `why_part` (NULL: success). */
static void expect_registration(const authenticator_t *a, const ceremony_t *c,
                                const gh_webauthn_rp_t *r, int rc, const char *why_part,
                                gh_webauthn_credential_t *out)
{
    json_t *j = registration(a, c);
    gh_webauthn_credential_t tmp;
    const char *why = NULL;
    int got = gh_webauthn_verify_registration(r, issued, j, out ? out : &tmp, &why);
    json_decref(j);
    if (got != rc || (why_part && (!why || !strstr(why, why_part))) || (!why_part && why))
        fail_msg("registration: rc %d (want %d), why \"%s\" (want \"%s\")", got, rc, why ? why : "",
                 why_part ? why_part : "");
}

static void setup_challenge(void)
{
    randombytes_buf(issued, sizeof issued);
}

/* ---------------------------------------------------------------------------- registration -- */

static void registration_good(void **state)
{
    (void)state;
    setup_challenge();
    int algs[] = {GH_WEBAUTHN_ALG_ES256, GH_WEBAUTHN_ALG_EDDSA};
    for (int i = 0; i < 2; i++) {
        authenticator_t a;
        authenticator_make(&a, algs[i]);
        for (int packed = 0; packed < 2; packed++) {
            ceremony_t c = ceremony_default(&a, true);
            c.fmt = packed ? "packed" : "none";
            gh_webauthn_credential_t cred;
            expect_registration(&a, &c, &rp, 0, NULL, &cred);
            assert_int_equal(cred.alg, algs[i]);
            assert_int_equal(cred.id_len, sizeof a.id);
            assert_memory_equal(cred.id, a.id, sizeof a.id);
            int alg = 0;
            assert_int_equal(gh_webauthn_cose_alg(cred.cose_key, cred.cose_key_len, &alg), 0);
            assert_int_equal(alg, algs[i]);
        }
        authenticator_free(&a);
    }
}

static void registration_tampered_is_refused(void **state)
{
    (void)state;
    setup_challenge();
    authenticator_t a;
    authenticator_make(&a, GH_WEBAUTHN_ALG_ES256);
    uint8_t other[GH_WEBAUTHN_CHALLENGE_LEN];
    memset(other, 0x42, sizeof other);
    ceremony_t c;

    c = ceremony_default(&a, true), c.challenge = other;
    expect_registration(&a, &c, &rp, GH_EAUTH, "challenge is not the one issued", NULL);
    c = ceremony_default(&a, true), c.origin = "http://evil.example";
    expect_registration(&a, &c, &rp, GH_EAUTH, "origin", NULL);
    c = ceremony_default(&a, true), c.type = "webauthn.get";
    expect_registration(&a, &c, &rp, GH_EAUTH, "type is not webauthn.create", NULL);
    c = ceremony_default(&a, true), c.cross_origin = true;
    expect_registration(&a, &c, &rp, GH_EAUTH, "cross-origin", NULL);
    c = ceremony_default(&a, true), c.rp_id = "evil.example";
    expect_registration(&a, &c, &rp, GH_EAUTH, "RP ID hash", NULL);
    c = ceremony_default(&a, true), c.flags &= (uint8_t)~GH_WEBAUTHN_FLAG_UP;
    expect_registration(&a, &c, &rp, GH_EAUTH, "user presence", NULL);
    c = ceremony_default(&a, true), c.flags &= (uint8_t)~GH_WEBAUTHN_FLAG_UV;
    expect_registration(&a, &c, &rp, 0, NULL, NULL); /* UV not required here ... */
    gh_webauthn_rp_t uv = rp;
    uv.require_uv = true;
    expect_registration(&a, &c, &uv, GH_EAUTH, "user verification", NULL); /* ... but here */
    c = ceremony_default(&a, true), c.flags &= (uint8_t)~GH_WEBAUTHN_FLAG_AT;
    expect_registration(&a, &c, &rp, GH_EINVAL, "no attested credential", NULL);
    c = ceremony_default(&a, true), c.trailing = true;
    expect_registration(&a, &c, &rp, GH_EINVAL, "trailing bytes", NULL);
    c = ceremony_default(&a, true), c.cose_alg = -257; /* RS256 */
    expect_registration(&a, &c, &rp, GH_EINVAL, "COSE key", NULL);
    c = ceremony_default(&a, true), c.other_raw_id = true;
    expect_registration(&a, &c, &rp, GH_EAUTH, "credential id differs", NULL);
    c = ceremony_default(&a, true), c.fmt = "tpm";
    expect_registration(&a, &c, &rp, GH_EINVAL, "format is not supported", NULL);
    c = ceremony_default(&a, true), c.fmt = "packed", c.bad_sig = true;
    expect_registration(&a, &c, &rp, GH_EAUTH, "attestation signature", NULL);
    c = ceremony_default(&a, true), c.fmt = "packed", c.att_alg_wrong = true;
    expect_registration(&a, &c, &rp, GH_EAUTH, "alg differs", NULL);
    c = ceremony_default(&a, true), c.fmt = "packed", c.x5c = true;
    expect_registration(&a, &c, &rp, GH_EINVAL, "certificate", NULL);
    c = ceremony_default(&a, true), c.client_data_override = "not json";
    expect_registration(&a, &c, &rp, GH_EINVAL, "not a JSON object", NULL);
    authenticator_free(&a);
}

static int register_json(json_t *j, const char **why)
{
    gh_webauthn_credential_t cred;
    int rc = gh_webauthn_verify_registration(&rp, issued, j, &cred, why);
    json_decref(j);
    return rc;
}

static void registration_malformed_members(void **state)
{
    (void)state;
    setup_challenge();
    authenticator_t a;
    authenticator_make(&a, GH_WEBAUTHN_ALG_EDDSA);
    ceremony_t c = ceremony_default(&a, true);
    const char *why;

    assert_int_equal(register_json(json_string("x"), &why), GH_EINVAL);
    assert_string_equal(why, "credential must be an object");

    json_t *j = registration(&a, &c);
    json_object_set_new(j, "type", json_string("password"));
    assert_int_equal(register_json(j, &why), GH_EINVAL);
    assert_non_null(strstr(why, "public-key"));

    j = registration(&a, &c);
    json_object_set_new(json_object_get(j, "response"), "clientDataJSON", json_string("a+b/"));
    assert_int_equal(register_json(j, &why), GH_EINVAL);
    assert_non_null(strstr(why, "not base64url"));

    j = registration(&a, &c);
    json_object_set_new(json_object_get(j, "response"), "attestationObject", json_integer(3));
    assert_int_equal(register_json(j, &why), GH_EINVAL);

    j = registration(&a, &c);
    json_object_del(json_object_get(j, "response"), "attestationObject");
    assert_int_equal(register_json(j, &why), GH_EINVAL);
    assert_non_null(strstr(why, "missing"));

    /* A huge attestation object: refused by its length, before decoding. */
    char *huge = malloc(200000);
    memset(huge, 'A', 199999);
    huge[199999] = 0;
    j = registration(&a, &c);
    json_object_set_new(json_object_get(j, "response"), "attestationObject", json_string(huge));
    assert_int_equal(register_json(j, &why), GH_ETOOBIG);
    assert_non_null(strstr(why, "too long"));
    j = registration(&a, &c);
    json_object_set_new(j, "rawId", json_string(huge));
    json_object_set_new(j, "id", json_string(huge));
    assert_int_equal(register_json(j, &why), GH_ETOOBIG);
    free(huge);

    /* id and rawId must agree. */
    j = registration(&a, &c);
    json_object_set_new(j, "id", json_string("AAAA"));
    assert_int_equal(register_json(j, &why), GH_EINVAL);

    /* CBOR: truncated, indefinite length, trailing, a lying 64-bit length. */
    static const uint8_t truncated[] = {0xa3, 0x63, 'f', 'm'};
    static const uint8_t indefinite[] = {0xbf, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n', 'e', 0xff};
    static const uint8_t lying[] = {0xa1, 0x63, 'f',  'm',  't',  0x5b, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xfc, 1,    2,    3};
    const uint8_t *bad[] = {truncated, indefinite, lying};
    size_t bad_len[] = {sizeof truncated, sizeof indefinite, sizeof lying};
    for (int i = 0; i < 3; i++) {
        j = registration(&a, &c);
        char *s = b64(bad[i], bad_len[i]);
        json_object_set_new(json_object_get(j, "response"), "attestationObject", json_string(s));
        free(s);
        assert_int_equal(register_json(j, &why), GH_EINVAL);
        assert_non_null(strstr(why, "CBOR"));
    }
    authenticator_free(&a);
}

/* ------------------------------------------------------------------------------ assertion -- */

static int verify(const authenticator_t *a, const ceremony_t *c,
                  const gh_webauthn_credential_t *cred, const gh_webauthn_rp_t *r, uint32_t stored,
                  uint32_t *count, const char **why)
{
    json_t *j = assertion(a, c, "user-42");
    gh_webauthn_assertion_t *as = malloc(sizeof *as);
    int rc = gh_webauthn_parse_assertion(j, as, why);
    json_decref(j);
    if (rc == 0) {
        assert_int_equal(as->user_handle_len, 7);
        assert_memory_equal(as->user_handle, "user-42", 7);
        assert_memory_equal(as->id, a->id, sizeof a->id);
        rc = gh_webauthn_verify_assertion(r, issued, as, cred->cose_key, cred->cose_key_len, stored,
                                          count, why);
    }
    free(as);
    return rc;
}

static void expect_assertion(const authenticator_t *a, const ceremony_t *c,
                             const gh_webauthn_credential_t *cred, const gh_webauthn_rp_t *r,
                             uint32_t stored, int rc, const char *why_part)
{
    uint32_t count = 0;
    const char *why = NULL;
    int got = verify(a, c, cred, r, stored, &count, &why);
    if (got != rc || (why_part && (!why || !strstr(why, why_part))) || (!why_part && why))
        fail_msg("assertion: rc %d (want %d), why \"%s\" (want \"%s\")", got, rc, why ? why : "",
                 why_part ? why_part : "");
    if (rc == 0)
        assert_int_equal(count, c->count);
}

static void assertion_good_and_tampered(void **state)
{
    (void)state;
    int algs[] = {GH_WEBAUTHN_ALG_ES256, GH_WEBAUTHN_ALG_EDDSA};
    for (int i = 0; i < 2; i++) {
        setup_challenge();
        authenticator_t a;
        authenticator_make(&a, algs[i]);
        ceremony_t c = ceremony_default(&a, true);
        gh_webauthn_credential_t cred;
        expect_registration(&a, &c, &rp, 0, NULL, &cred);

        c = ceremony_default(&a, false);
        expect_assertion(&a, &c, &cred, &rp, 0, 0, NULL);
        c.count = 5;
        expect_assertion(&a, &c, &cred, &rp, 4, 0, NULL);
        /* The counter: equal or lower is a clone; both zero means no counter at all. */
        expect_assertion(&a, &c, &cred, &rp, 5, GH_EAUTH, "counter went backwards");
        expect_assertion(&a, &c, &cred, &rp, 9, GH_EAUTH, "counter went backwards");
        c.count = 0;
        expect_assertion(&a, &c, &cred, &rp, 0, 0, NULL);
        expect_assertion(&a, &c, &cred, &rp, 3, GH_EAUTH, "counter went backwards");

        uint8_t other[GH_WEBAUTHN_CHALLENGE_LEN] = {1};
        c = ceremony_default(&a, false), c.challenge = other;
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "challenge is not the one issued");
        c = ceremony_default(&a, false), c.origin = "http://localhost:9999";
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "origin");
        c = ceremony_default(&a, false), c.type = "webauthn.create";
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "type is not webauthn.get");
        c = ceremony_default(&a, false), c.rp_id = "localhost.evil";
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "RP ID hash");
        c = ceremony_default(&a, false), c.flags = 0;
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "user presence");
        c = ceremony_default(&a, false), c.flags = GH_WEBAUTHN_FLAG_UP;
        expect_assertion(&a, &c, &cred, &rp, 0, 0, NULL);
        gh_webauthn_rp_t uv = rp;
        uv.require_uv = true;
        expect_assertion(&a, &c, &cred, &uv, 0, GH_EAUTH, "user verification");
        c = ceremony_default(&a, false), c.bad_sig = true;
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EAUTH, "signature does not verify");
        c = ceremony_default(&a, false), c.trailing = true;
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EINVAL, "trailing bytes");
        c = ceremony_default(&a, false), c.flags |= GH_WEBAUTHN_FLAG_AT;
        expect_assertion(&a, &c, &cred, &rp, 0, GH_EINVAL, "carries a credential");

        /* Another authenticator's signature over the same ceremony. */
        authenticator_t b;
        authenticator_make(&b, algs[i]);
        memcpy(b.id, a.id, sizeof a.id);
        c = ceremony_default(&b, false);
        expect_assertion(&b, &c, &cred, &rp, 0, GH_EAUTH, "signature does not verify");
        authenticator_free(&b);
        authenticator_free(&a);
    }
}

static void assertion_malformed(void **state)
{
    (void)state;
    setup_challenge();
    authenticator_t a;
    authenticator_make(&a, GH_WEBAUTHN_ALG_EDDSA);
    ceremony_t c = ceremony_default(&a, false);
    gh_webauthn_assertion_t *as = malloc(sizeof *as);
    const char *why;

    json_t *j = assertion(&a, &c, NULL);
    json_object_set_new(json_object_get(j, "response"), "signature", json_string("!!"));
    assert_int_equal(gh_webauthn_parse_assertion(j, as, &why), GH_EINVAL);
    json_decref(j);

    char big[400];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = 0;
    j = assertion(&a, &c, NULL);
    json_object_set_new(json_object_get(j, "response"), "signature", json_string(big));
    assert_int_equal(gh_webauthn_parse_assertion(j, as, &why), GH_ETOOBIG);
    json_decref(j);

    j = assertion(&a, &c, NULL);
    json_object_set_new(json_object_get(j, "response"), "userHandle", json_string(big));
    assert_int_equal(gh_webauthn_parse_assertion(j, as, &why), GH_ETOOBIG);
    json_decref(j);

    c.client_data_override = "{\"type\":\"webauthn.get\",\"challenge\":\"short\",\"origin\":\"x\"}";
    j = assertion(&a, &c, NULL);
    assert_int_equal(gh_webauthn_parse_assertion(j, as, &why), GH_EAUTH);
    json_decref(j);

    /* A stored key that is not a COSE key is refused, not trusted. */
    c = ceremony_default(&a, false);
    j = assertion(&a, &c, NULL);
    assert_int_equal(gh_webauthn_parse_assertion(j, as, &why), 0);
    assert_int_equal(as->user_handle_len, 0);
    json_decref(j);
    uint32_t count;
    static const uint8_t junk[] = {0xa1, 0x01, 0x02};
    assert_int_equal(
        gh_webauthn_verify_assertion(&rp, issued, as, junk, sizeof junk, 0, &count, &why),
        GH_EINVAL);
    free(as);
    authenticator_free(&a);
}

/* ----------------------------------------------------------------------------- challenges -- */

static void challenges_single_use_bound_and_short_lived(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_WEBAUTHN), o0 = gh_mem_objects(GH_MEM_WEBAUTHN);
    gh_webauthn_challenges_t *t = NULL;
    assert_int_equal(gh_webauthn_challenges_new(3, 1000, &t), 0);
    assert_true(gh_mem_bytes(GH_MEM_WEBAUTHN) > b0);

    uint8_t alice[GH_WEBAUTHN_SUBJECT_LEN] = {'a'}, bob[GH_WEBAUTHN_SUBJECT_LEN] = {'b'};
    uint8_t c1[32], c2[32], c3[32], c4[32];
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_REGISTER, alice, 100, c1), 0);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_REGISTER, alice, 100, c2), 0);
    assert_memory_not_equal(c1, c2, 32);
    assert_int_equal(gh_webauthn_challenges_live(t), 2);

    /* Single use. */
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_REGISTER, alice, 200, c1), 0);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_REGISTER, alice, 200, c1),
                     GH_ENOTFOUND);
    /* Bound to its subject and ceremony; a wrong try spends it too. */
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_REGISTER, bob, 200, c2), GH_EAUTH);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_REGISTER, alice, 200, c2),
                     GH_ENOTFOUND);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_PASSWORDLESS, NULL, 100, c3), 0);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_SECOND, NULL, 200, c3), GH_EAUTH);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_PASSWORDLESS, NULL, 100, c3), 0);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_PASSWORDLESS, NULL, 200, c3), 0);
    /* Short-lived. */
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 100, c4), 0);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_SECOND, bob, 1100, c4), GH_EEXPIRED);

    /* Bounded: a fourth live challenge in a table of three evicts the oldest. */
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 10, c1), 0);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 20, c2), 0);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 30, c3), 0);
    assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 40, c4), 0);
    assert_int_equal(gh_webauthn_challenges_live(t), 3);
    size_t full = gh_mem_bytes(GH_MEM_WEBAUTHN);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(gh_webauthn_challenge_issue(t, GH_WEBAUTHN_SECOND, bob, 50, c4), 0);
    assert_int_equal(gh_mem_bytes(GH_MEM_WEBAUTHN), full);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_SECOND, bob, 60, c1), GH_ENOTFOUND);
    assert_int_equal(gh_webauthn_challenge_take(t, GH_WEBAUTHN_SECOND, bob, 60, c4), 0);

    gh_webauthn_challenges_free(&t);
    assert_null(t);
    assert_int_equal(gh_mem_bytes(GH_MEM_WEBAUTHN), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_WEBAUTHN), o0);
    assert_int_equal(gh_webauthn_challenges_new(0, 1000, &t), GH_EINVAL);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registration_good),
        cmocka_unit_test(registration_tampered_is_refused),
        cmocka_unit_test(registration_malformed_members),
        cmocka_unit_test(assertion_good_and_tampered),
        cmocka_unit_test(assertion_malformed),
        cmocka_unit_test(challenges_single_use_bound_and_short_lived),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
