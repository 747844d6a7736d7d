/*
 * webauthn.c — WebAuthn Level 2 registration and assertion verification, and the challenge table.
 *
 * The one design decision: nothing a client sends is trusted for a length. Every base64url member
 * is measured against its fixed maximum before it is decoded into a fixed buffer; CBOR is walked
 * one item head at a time with libcbor's streaming decoder (no allocation, indefinite lengths and
 * nesting deeper than four refused, every declared length checked again against what is left,
 * since the decoder's own check can wrap on 64-bit lengths); authenticatorData must be consumed
 * exactly, with no trailing bytes. The only allocations are jansson's for the short
 * clientDataJSON (charged wherever the caller's jansson allocator charges) and OpenSSL's for the
 * ES256 key while it verifies, both released before returning.
 *
 * Challenges live in a fixed table scanned linearly under one mutex: a few thousand 80-byte slots
 * scan in microseconds, which is nothing next to a signature check, and the table cannot grow.
 */
#include "auth/webauthn.h"

#include <cbor.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

#include "common/base64url.h"
#include "mem/mem.h"

/* ---------------------------------------------------------------- CBOR, one item at a time -- */

typedef enum {
    CB_NONE,
    CB_UINT,
    CB_NEGINT,
    CB_BYTES,
    CB_TEXT,
    CB_ARRAY,
    CB_MAP,
    CB_TAG,
    CB_SIMPLE,
    CB_BAD
} cb_kind_t;

typedef struct {
    cb_kind_t kind;
    uint64_t u; /* UINT/NEGINT: the encoded value (a NEGINT means -1-u); ARRAY/MAP: the count */
    const uint8_t *data;
    size_t len;
    const uint8_t *end; /* end of the buffer being read, for the length re-check */
} cb_item_t;

typedef struct {
    const uint8_t *p;
    size_t left;
} cb_reader_t;

#define CB_MAX_DEPTH 4

static void cb_uint8(void *c, uint8_t v)
{
    ((cb_item_t *)c)->kind = CB_UINT, ((cb_item_t *)c)->u = v;
}
static void cb_uint16(void *c, uint16_t v)
{
    ((cb_item_t *)c)->kind = CB_UINT, ((cb_item_t *)c)->u = v;
}
static void cb_uint32(void *c, uint32_t v)
{
    ((cb_item_t *)c)->kind = CB_UINT, ((cb_item_t *)c)->u = v;
}
static void cb_uint64(void *c, uint64_t v)
{
    ((cb_item_t *)c)->kind = CB_UINT, ((cb_item_t *)c)->u = v;
}
static void cb_neg8(void *c, uint8_t v)
{
    ((cb_item_t *)c)->kind = CB_NEGINT, ((cb_item_t *)c)->u = v;
}
static void cb_neg16(void *c, uint16_t v)
{
    ((cb_item_t *)c)->kind = CB_NEGINT, ((cb_item_t *)c)->u = v;
}
static void cb_neg32(void *c, uint32_t v)
{
    ((cb_item_t *)c)->kind = CB_NEGINT, ((cb_item_t *)c)->u = v;
}
static void cb_neg64(void *c, uint64_t v)
{
    ((cb_item_t *)c)->kind = CB_NEGINT, ((cb_item_t *)c)->u = v;
}

static void cb_string_of(cb_item_t *it, cb_kind_t kind, cbor_data d, size_t n)
{
    /* Re-check the declared length against the buffer: never trust the decoder's arithmetic. */
    if (d > it->end || n > (size_t)(it->end - d)) {
        it->kind = CB_BAD;
        return;
    }
    it->kind = kind;
    it->data = d;
    it->len = n;
}
static void cb_bytes(void *c, cbor_data d, size_t n)
{
    cb_string_of(c, CB_BYTES, d, n);
}
static void cb_text(void *c, cbor_data d, size_t n)
{
    cb_string_of(c, CB_TEXT, d, n);
}
static void cb_array(void *c, size_t n)
{
    ((cb_item_t *)c)->kind = CB_ARRAY, ((cb_item_t *)c)->u = n;
}
static void cb_map(void *c, size_t n)
{
    ((cb_item_t *)c)->kind = CB_MAP, ((cb_item_t *)c)->u = n;
}
static void cb_tag(void *c, uint64_t v)
{
    ((cb_item_t *)c)->kind = CB_TAG, ((cb_item_t *)c)->u = v;
}
static void cb_bad(void *c)
{
    ((cb_item_t *)c)->kind = CB_BAD;
}
static void cb_simple(void *c)
{
    ((cb_item_t *)c)->kind = CB_SIMPLE;
}
static void cb_bool(void *c, bool v)
{
    (void)v, ((cb_item_t *)c)->kind = CB_SIMPLE;
}
static void cb_float(void *c, float v)
{
    (void)v, ((cb_item_t *)c)->kind = CB_SIMPLE;
}
static void cb_double(void *c, double v)
{
    (void)v, ((cb_item_t *)c)->kind = CB_SIMPLE;
}

static const struct cbor_callbacks cb_callbacks = {
    .uint8 = cb_uint8,
    .uint16 = cb_uint16,
    .uint32 = cb_uint32,
    .uint64 = cb_uint64,
    .negint8 = cb_neg8,
    .negint16 = cb_neg16,
    .negint32 = cb_neg32,
    .negint64 = cb_neg64,
    .byte_string_start = cb_bad,
    .byte_string = cb_bytes,
    .string = cb_text,
    .string_start = cb_bad,
    .indef_array_start = cb_bad,
    .array_start = cb_array,
    .indef_map_start = cb_bad,
    .map_start = cb_map,
    .tag = cb_tag,
    .float2 = cb_float,
    .float4 = cb_float,
    .float8 = cb_double,
    .undefined = cb_simple,
    .null = cb_simple,
    .boolean = cb_bool,
    .indef_break = cb_bad,
};

/* Reads the next item head (a string with its bytes). false: malformed, truncated, indefinite. */
static bool cb_next(cb_reader_t *r, cb_item_t *it)
{
    memset(it, 0, sizeof *it);
    it->end = r->p + r->left;
    if (r->left == 0)
        return false;
    struct cbor_decoder_result res = cbor_stream_decode(r->p, r->left, &cb_callbacks, it);
    if (res.status != CBOR_DECODER_FINISHED || res.read == 0 || res.read > r->left)
        return false;
    if (it->kind == CB_NONE || it->kind == CB_BAD)
        return false;
    /* A collection cannot hold more items than bytes remain: bounds every loop below. */
    if ((it->kind == CB_ARRAY || it->kind == CB_MAP) && it->u > r->left)
        return false;
    r->p += res.read;
    r->left -= res.read;
    return true;
}

/* Skips one whole item (with what it contains). */
static bool cb_skip(cb_reader_t *r, int depth)
{
    cb_item_t it;
    if (depth > CB_MAX_DEPTH || !cb_next(r, &it))
        return false;
    uint64_t inner = 0;
    if (it.kind == CB_ARRAY)
        inner = it.u;
    else if (it.kind == CB_MAP)
        inner = it.u * 2;
    else if (it.kind == CB_TAG)
        inner = 1;
    for (uint64_t i = 0; i < inner; i++)
        if (!cb_skip(r, depth + 1))
            return false;
    return true;
}

static bool cb_text_is(const cb_item_t *it, const char *s)
{
    size_t n = strlen(s);
    return it->kind == CB_TEXT && it->len == n && memcmp(it->data, s, n) == 0;
}

/* A small integer (a COSE label or value): -64..64 fits every member we read. */
static bool cb_small_int(const cb_item_t *it, int *out)
{
    if (it->kind == CB_UINT && it->u <= 64) {
        *out = (int)it->u;
        return true;
    }
    if (it->kind == CB_NEGINT && it->u < 64) {
        *out = -1 - (int)it->u;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------ COSE keys -- */

typedef struct {
    int alg;
    const uint8_t *x, *y;
    size_t len; /* bytes of the encoded key */
} cose_key_t;

/* Reads one COSE_Key at r (consuming exactly it). */
static bool cose_read(cb_reader_t *r, cose_key_t *k)
{
    const uint8_t *start = r->p;
    cb_item_t m;
    memset(k, 0, sizeof *k);
    if (!cb_next(r, &m) || m.kind != CB_MAP || m.u > 16)
        return false;
    int kty = 0, alg = 0, crv = 0;
    bool seen_kty = false, seen_alg = false, seen_crv = false;
    const uint8_t *x = NULL, *y = NULL;
    size_t xlen = 0, ylen = 0;
    for (uint64_t i = 0; i < m.u; i++) {
        cb_item_t key, val;
        int label;
        if (!cb_next(r, &key) || !cb_small_int(&key, &label))
            return false;
        if (label == 1 || label == 3 || label == -1) {
            int v;
            if (!cb_next(r, &val) || !cb_small_int(&val, &v))
                return false;
            if (label == 1)
                kty = v, seen_kty = true;
            else if (label == 3)
                alg = v, seen_alg = true;
            else
                crv = v, seen_crv = true;
        } else if (label == -2 || label == -3) {
            if (!cb_next(r, &val) || val.kind != CB_BYTES)
                return false;
            if (label == -2)
                x = val.data, xlen = val.len;
            else
                y = val.data, ylen = val.len;
        } else if (!cb_skip(r, 1)) {
            return false;
        }
    }
    if (!seen_kty || !seen_alg || !seen_crv || !x || xlen != 32)
        return false;
    if (alg == GH_WEBAUTHN_ALG_ES256) {
        if (kty != 2 || crv != 1 || !y || ylen != 32)
            return false;
    } else if (alg == GH_WEBAUTHN_ALG_EDDSA) {
        if (kty != 1 || crv != 6 || y)
            return false;
    } else {
        return false;
    }
    k->alg = alg;
    k->x = x;
    k->y = y;
    k->len = (size_t)(r->p - start);
    return true;
}

int gh_webauthn_cose_alg(const uint8_t *cose_key, size_t len, int *alg)
{
    if (!cose_key || len == 0 || len > GH_WEBAUTHN_COSE_KEY_MAX)
        return GH_EINVAL;
    cb_reader_t r = {cose_key, len};
    cose_key_t k;
    if (!cose_read(&r, &k) || r.left != 0)
        return GH_EINVAL;
    *alg = k.alg;
    return 0;
}

/* ------------------------------------------------------------------------------ signatures -- */

static bool es256_verify(const cose_key_t *k, const uint8_t *msg, size_t msg_len,
                         const uint8_t *sig, size_t sig_len)
{
    bool ok = false;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    uint8_t point[65];
    char group[] = "prime256v1";
    point[0] = 0x04;
    memcpy(point + 1, k->x, 32);
    memcpy(point + 33, k->y, 32);
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
        OSSL_PARAM_END,
    };
    /* DER ECDSA-Sig-Value for P-256: at most 72 bytes. */
    if (sig_len < 8 || sig_len > 72)
        goto out;
    pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!pctx || EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    md = EVP_MD_CTX_new();
    if (!md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1)
        goto out;
    ok = EVP_DigestVerify(md, sig, sig_len, msg, msg_len) == 1;
out:
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return ok;
}

/* The signature over authenticatorData || SHA-256(clientDataJSON). */
static bool signature_ok(const cose_key_t *k, const uint8_t *auth_data, size_t auth_len,
                         const uint8_t *client_data, size_t client_len, const uint8_t *sig,
                         size_t sig_len)
{
    uint8_t msg[GH_WEBAUTHN_ATTESTATION_MAX + crypto_hash_sha256_BYTES];
    if (auth_len > GH_WEBAUTHN_ATTESTATION_MAX)
        return false;
    memcpy(msg, auth_data, auth_len);
    crypto_hash_sha256(msg + auth_len, client_data, client_len);
    size_t msg_len = auth_len + crypto_hash_sha256_BYTES;
    if (k->alg == GH_WEBAUTHN_ALG_EDDSA)
        return sig_len == crypto_sign_BYTES &&
               crypto_sign_verify_detached(sig, msg, msg_len, k->x) == 0;
    return es256_verify(k, msg, msg_len, sig, sig_len);
}

/* ----------------------------------------------------------------------- authenticatorData -- */

typedef struct {
    const uint8_t *rp_hash;
    uint8_t flags;
    uint32_t count;
    const uint8_t *cred_id;
    size_t cred_id_len;
    cose_key_t key;
    const uint8_t *cose;
} auth_data_t;

static int auth_data_read(const uint8_t *d, size_t len, bool attested, auth_data_t *ad,
                          const char **why)
{
    memset(ad, 0, sizeof *ad);
    if (len < 37) {
        *why = "authenticatorData is too short";
        return GH_EINVAL;
    }
    ad->rp_hash = d;
    ad->flags = d[32];
    ad->count = (uint32_t)d[33] << 24 | (uint32_t)d[34] << 16 | (uint32_t)d[35] << 8 | d[36];
    size_t pos = 37;
    bool at = ad->flags & GH_WEBAUTHN_FLAG_AT;
    if (at != attested) {
        *why = attested ? "authenticatorData carries no attested credential"
                        : "authenticatorData of an assertion carries a credential";
        return GH_EINVAL;
    }
    if (at) {
        if (len - pos < 18) {
            *why = "attested credential data is truncated";
            return GH_EINVAL;
        }
        pos += 16; /* AAGUID: not used without attestation trust */
        size_t id_len = (size_t)d[pos] << 8 | d[pos + 1];
        pos += 2;
        if (id_len == 0 || id_len > GH_WEBAUTHN_CRED_ID_MAX || id_len > len - pos) {
            *why = "credential id length is out of range";
            return GH_EINVAL;
        }
        ad->cred_id = d + pos;
        ad->cred_id_len = id_len;
        pos += id_len;
        cb_reader_t r = {d + pos, len - pos};
        if (!cose_read(&r, &ad->key) || ad->key.len > GH_WEBAUTHN_COSE_KEY_MAX) {
            *why = "credential public key is not a supported COSE key (ES256 or EdDSA)";
            return GH_EINVAL;
        }
        ad->cose = d + pos;
        pos += ad->key.len;
    }
    if (ad->flags & GH_WEBAUTHN_FLAG_ED) {
        cb_reader_t r = {d + pos, len - pos};
        cb_item_t m;
        cb_reader_t peek = r;
        if (!cb_next(&peek, &m) || m.kind != CB_MAP || !cb_skip(&r, 0)) {
            *why = "authenticatorData extensions are malformed";
            return GH_EINVAL;
        }
        pos = len - r.left;
    }
    if (pos != len) {
        *why = "authenticatorData has trailing bytes";
        return GH_EINVAL;
    }
    return 0;
}

/* RP ID hash, UP and (when asked) UV. */
static int auth_data_check(const gh_webauthn_rp_t *rp, const auth_data_t *ad, const char **why)
{
    uint8_t want[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(want, (const uint8_t *)rp->rp_id, strlen(rp->rp_id));
    if (sodium_memcmp(want, ad->rp_hash, sizeof want) != 0) {
        *why = "RP ID hash does not match this relying party";
        return GH_EAUTH;
    }
    if (!(ad->flags & GH_WEBAUTHN_FLAG_UP)) {
        *why = "user presence flag is not set";
        return GH_EAUTH;
    }
    if (rp->require_uv && !(ad->flags & GH_WEBAUTHN_FLAG_UV)) {
        *why = "user verification flag is not set";
        return GH_EAUTH;
    }
    return 0;
}

/* ------------------------------------------------------------------------ the JSON members -- */

/* Decodes a base64url string member into out (cap bytes). */
static int b64_member(const json_t *obj, const char *name, bool required, uint8_t *out, size_t cap,
                      size_t *out_len, const char **why, const char *why_missing,
                      const char *why_big, const char *why_bad)
{
    *out_len = 0;
    const json_t *v = json_object_get(obj, name);
    if (!v) {
        if (!required)
            return 0;
        *why = why_missing;
        return GH_EINVAL;
    }
    if (!required && json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        *why = why_bad;
        return GH_EINVAL;
    }
    size_t len = json_string_length(v);
    if (len > GH_BASE64URL_LEN(cap)) {
        *why = why_big;
        return GH_ETOOBIG;
    }
    int rc = gh_base64url_decode(json_string_value(v), len, out, cap, out_len);
    if (rc == GH_ETOOBIG) {
        *why = why_big;
        return GH_ETOOBIG;
    }
    if (rc != 0) {
        *why = why_bad;
        return GH_EINVAL;
    }
    return 0;
}

/* type "public-key", rawId decoded into id, id (when given) spelled the same; the response. */
static int credential_head(const json_t *cred, uint8_t *id, size_t *id_len, const json_t **response,
                           const char **why)
{
    if (!cred || !json_is_object(cred)) {
        *why = "credential must be an object";
        return GH_EINVAL;
    }
    const json_t *type = json_object_get(cred, "type");
    if (!json_is_string(type) || strcmp(json_string_value(type), "public-key") != 0) {
        *why = "credential type must be \"public-key\"";
        return GH_EINVAL;
    }
    const char *raw_name = json_object_get(cred, "rawId") ? "rawId" : "id";
    int rc = b64_member(cred, raw_name, true, id, GH_WEBAUTHN_CRED_ID_MAX, id_len, why,
                        "credential rawId is missing", "credential id is too long",
                        "credential rawId is not base64url");
    if (rc != 0)
        return rc;
    const json_t *sid = json_object_get(cred, "id");
    const json_t *raw = json_object_get(cred, "rawId");
    if (sid && raw && (!json_is_string(sid) || !json_equal(sid, raw))) {
        *why = "credential id and rawId differ";
        return GH_EINVAL;
    }
    if (*id_len == 0) {
        *why = "credential id is empty";
        return GH_EINVAL;
    }
    *response = json_object_get(cred, "response");
    if (!*response || !json_is_object(*response)) {
        *why = "credential response must be an object";
        return GH_EINVAL;
    }
    return 0;
}

/* clientDataJSON: its type, its challenge (decoded into challenge), its origin and crossOrigin.
 * The challenge is compared by the caller. */
static int client_data_read(const gh_webauthn_rp_t *rp, const char *type, const uint8_t *cd,
                            size_t len, uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                            const char **why)
{
    int rc = GH_EINVAL;
    json_error_t err;
    json_t *o = json_loadb((const char *)cd, len, JSON_REJECT_DUPLICATES, &err);
    if (!o || !json_is_object(o)) {
        *why = "clientDataJSON is not a JSON object";
        goto out;
    }
    const json_t *t = json_object_get(o, "type");
    if (!json_is_string(t)) {
        *why = "clientDataJSON has no type";
        goto out;
    }
    const json_t *c = json_object_get(o, "challenge");
    size_t clen = 0;
    if (!json_is_string(c) ||
        json_string_length(c) != GH_BASE64URL_LEN(GH_WEBAUTHN_CHALLENGE_LEN) ||
        gh_base64url_decode(json_string_value(c), json_string_length(c), challenge,
                            GH_WEBAUTHN_CHALLENGE_LEN, &clen) != 0 ||
        clen != GH_WEBAUTHN_CHALLENGE_LEN) {
        *why = "clientDataJSON challenge is not one this server issues";
        rc = GH_EAUTH;
        goto out;
    }
    const json_t *origin = json_object_get(o, "origin");
    if (!json_is_string(origin)) {
        *why = "clientDataJSON has no origin";
        goto out;
    }
    if (strcmp(json_string_value(t), type) != 0) {
        *why = strcmp(type, "webauthn.create") == 0 ? "clientDataJSON type is not webauthn.create"
                                                    : "clientDataJSON type is not webauthn.get";
        rc = GH_EAUTH;
        goto out;
    }
    if (rp && strcmp(json_string_value(origin), rp->origin) != 0) {
        *why = "clientDataJSON origin is not this relying party's origin";
        rc = GH_EAUTH;
        goto out;
    }
    const json_t *cross = json_object_get(o, "crossOrigin");
    if (cross && !json_is_false(cross)) {
        *why = "cross-origin ceremonies are refused";
        rc = GH_EAUTH;
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

/* ------------------------------------------------------------------------------ registration -- */

/* The attestation object: {"fmt","attStmt","authData"}. */
typedef struct {
    char fmt[16];
    const uint8_t *att_stmt;
    size_t att_stmt_len;
    const uint8_t *auth_data;
    size_t auth_data_len;
} attestation_t;

static int attestation_read(const uint8_t *d, size_t len, attestation_t *a, const char **why)
{
    memset(a, 0, sizeof *a);
    cb_reader_t r = {d, len};
    cb_item_t m;
    *why = "attestationObject is not valid CBOR";
    if (!cb_next(&r, &m) || m.kind != CB_MAP || m.u > 8)
        return GH_EINVAL;
    for (uint64_t i = 0; i < m.u; i++) {
        cb_item_t key, val;
        if (!cb_next(&r, &key) || key.kind != CB_TEXT)
            return GH_EINVAL;
        if (cb_text_is(&key, "fmt")) {
            if (!cb_next(&r, &val) || val.kind != CB_TEXT || val.len == 0 ||
                val.len >= sizeof a->fmt || a->fmt[0])
                return GH_EINVAL;
            memcpy(a->fmt, val.data, val.len);
        } else if (cb_text_is(&key, "authData")) {
            if (!cb_next(&r, &val) || val.kind != CB_BYTES || a->auth_data)
                return GH_EINVAL;
            a->auth_data = val.data;
            a->auth_data_len = val.len;
        } else if (cb_text_is(&key, "attStmt")) {
            if (a->att_stmt)
                return GH_EINVAL;
            a->att_stmt = r.p;
            if (!cb_skip(&r, 1))
                return GH_EINVAL;
            a->att_stmt_len = (size_t)(r.p - a->att_stmt);
        } else if (!cb_skip(&r, 1)) {
            return GH_EINVAL;
        }
    }
    if (r.left != 0) {
        *why = "attestationObject has trailing bytes";
        return GH_EINVAL;
    }
    if (!a->fmt[0] || !a->att_stmt || !a->auth_data) {
        *why = "attestationObject lacks fmt, attStmt or authData";
        return GH_EINVAL;
    }
    return 0;
}

/* attStmt for "none" (empty) or "packed" self-attestation (alg + sig by the credential's key). */
static int att_stmt_check(const attestation_t *a, const auth_data_t *ad, const uint8_t *cd,
                          size_t cd_len, const char **why)
{
    cb_reader_t r = {a->att_stmt, a->att_stmt_len};
    cb_item_t m;
    if (!cb_next(&r, &m) || m.kind != CB_MAP) {
        *why = "attStmt is not a map";
        return GH_EINVAL;
    }
    if (strcmp(a->fmt, "none") == 0) {
        if (m.u != 0) {
            *why = "attestation \"none\" must have an empty attStmt";
            return GH_EINVAL;
        }
        return 0;
    }
    if (strcmp(a->fmt, "packed") != 0) {
        *why = "attestation format is not supported (use \"none\")";
        return GH_EINVAL;
    }
    int alg = 0;
    bool seen_alg = false;
    const uint8_t *sig = NULL;
    size_t sig_len = 0;
    for (uint64_t i = 0; i < m.u; i++) {
        cb_item_t key, val;
        if (!cb_next(&r, &key) || key.kind != CB_TEXT) {
            *why = "attStmt is malformed";
            return GH_EINVAL;
        }
        if (cb_text_is(&key, "alg")) {
            if (!cb_next(&r, &val) || !cb_small_int(&val, &alg)) {
                *why = "attStmt alg is malformed";
                return GH_EINVAL;
            }
            seen_alg = true;
        } else if (cb_text_is(&key, "sig")) {
            if (!cb_next(&r, &val) || val.kind != CB_BYTES || val.len > GH_WEBAUTHN_SIG_MAX) {
                *why = "attStmt sig is malformed";
                return GH_EINVAL;
            }
            sig = val.data;
            sig_len = val.len;
        } else if (cb_text_is(&key, "x5c") || cb_text_is(&key, "ecdaaKeyId")) {
            *why = "packed attestation with a certificate is not supported (use \"none\")";
            return GH_EINVAL;
        } else if (!cb_skip(&r, 1)) {
            *why = "attStmt is malformed";
            return GH_EINVAL;
        }
    }
    if (!seen_alg || !sig) {
        *why = "packed attStmt lacks alg or sig";
        return GH_EINVAL;
    }
    if (alg != ad->key.alg) {
        *why = "packed self-attestation alg differs from the credential's";
        return GH_EAUTH;
    }
    if (!signature_ok(&ad->key, a->auth_data, a->auth_data_len, cd, cd_len, sig, sig_len)) {
        *why = "attestation signature does not verify";
        return GH_EAUTH;
    }
    return 0;
}

int gh_webauthn_parse_registration(const json_t *credential, gh_webauthn_registration_t *out,
                                   const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    const json_t *resp = NULL;
    int rc;
    if (!out)
        return GH_EINVAL;
    memset(out, 0, sizeof *out);
    rc = credential_head(credential, out->id, &out->id_len, &resp, why);
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "clientDataJSON", true, out->client_data, sizeof out->client_data,
                    &out->client_data_len, why, "response.clientDataJSON is missing",
                    "response.clientDataJSON is too long",
                    "response.clientDataJSON is not base64url");
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "attestationObject", true, out->attestation, sizeof out->attestation,
                    &out->attestation_len, why, "response.attestationObject is missing",
                    "response.attestationObject is too long",
                    "response.attestationObject is not base64url");
    if (rc != 0)
        goto out;
    rc = client_data_read(NULL, "webauthn.create", out->client_data, out->client_data_len,
                          out->challenge, why);
out:
    if (rc != 0)
        memset(out, 0, sizeof *out);
    else
        *why = NULL;
    return rc;
}

int gh_webauthn_check_registration(const gh_webauthn_rp_t *rp,
                                   const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   const gh_webauthn_registration_t *reg,
                                   gh_webauthn_credential_t *out, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    int rc;
    uint8_t got[GH_WEBAUTHN_CHALLENGE_LEN];
    attestation_t a;
    auth_data_t ad;

    if (!rp || !rp->rp_id || !rp->origin || !challenge || !reg || !out) {
        *why = "no relying party configured";
        return GH_EINVAL;
    }
    memset(out, 0, sizeof *out);
    if (reg->id_len == 0 || reg->id_len > sizeof reg->id ||
        reg->client_data_len > sizeof reg->client_data ||
        reg->attestation_len > sizeof reg->attestation) {
        *why = "registration is malformed";
        return GH_EINVAL;
    }
    rc = client_data_read(rp, "webauthn.create", reg->client_data, reg->client_data_len, got, why);
    if (rc != 0)
        goto out;
    if (sodium_memcmp(got, challenge, GH_WEBAUTHN_CHALLENGE_LEN) != 0) {
        *why = "clientDataJSON challenge is not the one issued";
        rc = GH_EAUTH;
        goto out;
    }
    rc = attestation_read(reg->attestation, reg->attestation_len, &a, why);
    if (rc != 0)
        goto out;
    if (a.auth_data_len > GH_WEBAUTHN_AUTH_DATA_MAX) {
        *why = "authenticatorData is too long";
        rc = GH_ETOOBIG;
        goto out;
    }
    rc = auth_data_read(a.auth_data, a.auth_data_len, true, &ad, why);
    if (rc != 0)
        goto out;
    rc = auth_data_check(rp, &ad, why);
    if (rc != 0)
        goto out;
    if (ad.cred_id_len != reg->id_len || memcmp(ad.cred_id, reg->id, reg->id_len) != 0) {
        *why = "credential id differs from the attested one";
        rc = GH_EAUTH;
        goto out;
    }
    rc = att_stmt_check(&a, &ad, reg->client_data, reg->client_data_len, why);
    if (rc != 0)
        goto out;
    memcpy(out->id, reg->id, reg->id_len);
    out->id_len = reg->id_len;
    memcpy(out->cose_key, ad.cose, ad.key.len);
    out->cose_key_len = ad.key.len;
    out->alg = ad.key.alg;
    out->sign_count = ad.count;
    out->flags = ad.flags;
out:
    if (rc != 0)
        memset(out, 0, sizeof *out);
    else
        *why = NULL;
    return rc;
}

int gh_webauthn_verify_registration(const gh_webauthn_rp_t *rp,
                                    const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                    const json_t *credential, gh_webauthn_credential_t *out,
                                    const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!rp || !rp->rp_id || !rp->origin || !challenge || !out) {
        *why = "no relying party configured";
        return GH_EINVAL;
    }
    memset(out, 0, sizeof *out);
    /* About 7 KiB: on the heap of no one, the caller's stack holds it for the call. */
    gh_webauthn_registration_t reg;
    int rc = gh_webauthn_parse_registration(credential, &reg, why);
    if (rc == 0)
        rc = gh_webauthn_check_registration(rp, challenge, &reg, out, why);
    sodium_memzero(&reg, sizeof reg);
    return rc;
}

/* ------------------------------------------------------------------------------- assertion -- */

int gh_webauthn_parse_assertion(const json_t *credential, gh_webauthn_assertion_t *out,
                                const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    const json_t *resp = NULL;
    int rc;
    if (!out)
        return GH_EINVAL;
    memset(out, 0, sizeof *out);
    rc = credential_head(credential, out->id, &out->id_len, &resp, why);
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "clientDataJSON", true, out->client_data, sizeof out->client_data,
                    &out->client_data_len, why, "response.clientDataJSON is missing",
                    "response.clientDataJSON is too long",
                    "response.clientDataJSON is not base64url");
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "authenticatorData", true, out->auth_data, sizeof out->auth_data,
                    &out->auth_data_len, why, "response.authenticatorData is missing",
                    "response.authenticatorData is too long",
                    "response.authenticatorData is not base64url");
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "signature", true, out->sig, sizeof out->sig, &out->sig_len, why,
                    "response.signature is missing", "response.signature is too long",
                    "response.signature is not base64url");
    if (rc != 0)
        goto out;
    rc = b64_member(resp, "userHandle", false, out->user_handle, sizeof out->user_handle,
                    &out->user_handle_len, why, "", "response.userHandle is too long",
                    "response.userHandle is not base64url");
    if (rc != 0)
        goto out;
    /* Only the challenge, to find the ceremony; type and origin are checked when verifying. */
    rc = client_data_read(NULL, "webauthn.get", out->client_data, out->client_data_len,
                          out->challenge, why);
out:
    if (rc != 0)
        memset(out, 0, sizeof *out);
    else
        *why = NULL;
    return rc;
}

int gh_webauthn_verify_assertion(const gh_webauthn_rp_t *rp,
                                 const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                 const gh_webauthn_assertion_t *a, const uint8_t *cose_key,
                                 size_t cose_key_len, uint32_t stored_count, uint32_t *new_count,
                                 const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    uint8_t got[GH_WEBAUTHN_CHALLENGE_LEN];
    auth_data_t ad;
    cose_key_t key;
    int rc;
    if (!rp || !rp->rp_id || !rp->origin || !challenge || !a || !cose_key || !new_count) {
        *why = "no relying party configured";
        return GH_EINVAL;
    }
    if (a->client_data_len > sizeof a->client_data || a->auth_data_len > sizeof a->auth_data ||
        a->sig_len > sizeof a->sig) {
        *why = "assertion is malformed";
        return GH_EINVAL;
    }
    cb_reader_t r = {cose_key, cose_key_len};
    if (cose_key_len > GH_WEBAUTHN_COSE_KEY_MAX || !cose_read(&r, &key) || r.left != 0) {
        *why = "stored credential key is unreadable";
        return GH_EINVAL;
    }
    rc = client_data_read(rp, "webauthn.get", a->client_data, a->client_data_len, got, why);
    if (rc != 0)
        return rc;
    if (sodium_memcmp(got, challenge, GH_WEBAUTHN_CHALLENGE_LEN) != 0) {
        *why = "clientDataJSON challenge is not the one issued";
        return GH_EAUTH;
    }
    rc = auth_data_read(a->auth_data, a->auth_data_len, false, &ad, why);
    if (rc != 0)
        return rc;
    rc = auth_data_check(rp, &ad, why);
    if (rc != 0)
        return rc;
    if (!signature_ok(&key, a->auth_data, a->auth_data_len, a->client_data, a->client_data_len,
                      a->sig, a->sig_len)) {
        *why = "assertion signature does not verify";
        return GH_EAUTH;
    }
    if ((ad.count != 0 || stored_count != 0) && ad.count <= stored_count) {
        *why = "signature counter went backwards";
        return GH_EAUTH;
    }
    *new_count = ad.count;
    return 0;
}

/* ------------------------------------------------------------------------------ challenges -- */

typedef struct {
    uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN];
    uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN];
    uint64_t expires_ms;
    uint8_t kind; /* 0: free */
} challenge_slot_t;

struct gh_webauthn_challenges {
    pthread_mutex_t lock;
    size_t capacity;
    uint64_t ttl_ms;
    challenge_slot_t *slots;
};

int gh_webauthn_challenges_new(size_t capacity, uint64_t ttl_ms, gh_webauthn_challenges_t **out)
{
    if (!out || capacity == 0 || capacity > 1u << 20 || ttl_ms == 0)
        return GH_EINVAL;
    *out = NULL;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    gh_webauthn_challenges_t *t = gh_mem_calloc(GH_MEM_WEBAUTHN, 1, sizeof *t);
    if (!t)
        return GH_ENOMEM;
    t->slots = gh_mem_calloc(GH_MEM_WEBAUTHN, capacity, sizeof *t->slots);
    if (!t->slots) {
        gh_mem_free(GH_MEM_WEBAUTHN, t);
        return GH_ENOMEM;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->capacity = capacity;
    t->ttl_ms = ttl_ms;
    *out = t;
    return 0;
}

void gh_webauthn_challenges_free(gh_webauthn_challenges_t **t)
{
    if (!t || !*t)
        return;
    pthread_mutex_destroy(&(*t)->lock);
    gh_mem_free_secret(GH_MEM_WEBAUTHN, (*t)->slots);
    gh_mem_free(GH_MEM_WEBAUTHN, *t);
    *t = NULL;
}

int gh_webauthn_challenge_issue(gh_webauthn_challenges_t *t, gh_webauthn_ceremony_t kind,
                                const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t now_ms,
                                uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN])
{
    if (!t || !challenge || kind < GH_WEBAUTHN_REGISTER || kind > GH_WEBAUTHN_PASSWORDLESS)
        return GH_EINVAL;
    randombytes_buf(challenge, GH_WEBAUTHN_CHALLENGE_LEN);
    pthread_mutex_lock(&t->lock);
    /* A free or expired slot; failing that, the one closest to expiry (the oldest). */
    challenge_slot_t *pick = NULL;
    for (size_t i = 0; i < t->capacity; i++) {
        challenge_slot_t *s = &t->slots[i];
        if (s->kind == 0 || s->expires_ms <= now_ms) {
            pick = s;
            break;
        }
        if (!pick || s->expires_ms < pick->expires_ms)
            pick = s;
    }
    if (!pick) { /* capacity is at least 1: never, but said so for the reader and cppcheck */
        pthread_mutex_unlock(&t->lock);
        return GH_EINTERNAL;
    }
    memcpy(pick->challenge, challenge, GH_WEBAUTHN_CHALLENGE_LEN);
    if (subject)
        memcpy(pick->subject, subject, GH_WEBAUTHN_SUBJECT_LEN);
    else
        memset(pick->subject, 0, GH_WEBAUTHN_SUBJECT_LEN);
    pick->expires_ms = now_ms + t->ttl_ms;
    pick->kind = (uint8_t)kind;
    pthread_mutex_unlock(&t->lock);
    return 0;
}

int gh_webauthn_challenge_take(gh_webauthn_challenges_t *t, gh_webauthn_ceremony_t kind,
                               const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t now_ms,
                               const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN])
{
    static const uint8_t none[GH_WEBAUTHN_SUBJECT_LEN];
    if (!t || !challenge)
        return GH_EINVAL;
    if (!subject)
        subject = none;
    int rc = GH_ENOTFOUND;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->capacity; i++) {
        challenge_slot_t *s = &t->slots[i];
        if (s->kind == 0 || memcmp(s->challenge, challenge, GH_WEBAUTHN_CHALLENGE_LEN) != 0)
            continue;
        if (s->expires_ms <= now_ms)
            rc = GH_EEXPIRED;
        else if (s->kind != (uint8_t)kind ||
                 sodium_memcmp(s->subject, subject, GH_WEBAUTHN_SUBJECT_LEN) != 0)
            rc = GH_EAUTH;
        else
            rc = 0;
        sodium_memzero(s, sizeof *s); /* spent, whatever the verdict */
        break;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

size_t gh_webauthn_challenges_live(gh_webauthn_challenges_t *t)
{
    size_t n = 0;
    if (!t)
        return 0;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < t->capacity; i++)
        n += t->slots[i].kind != 0;
    pthread_mutex_unlock(&t->lock);
    return n;
}
