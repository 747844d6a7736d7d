/*
 * fuzz_webauthn.c — WebAuthn credentials as the passkey routes hand them to src/auth/webauthn.c.
 *
 * The first input byte picks what the rest is (mod 5):
 *   0  a registration credential's JSON, verified against challenge 0…0, origin
 *      http://localhost:8080 and RP ID localhost;
 *   1  an assertion credential's JSON, parsed and verified against a fixed Ed25519 COSE key;
 *   2  the raw attestationObject (CBOR) of a registration whose clientDataJSON is right, so the
 *      fuzzer reaches the CBOR, authenticatorData and COSE readers without learning base64url;
 *   3  the raw authenticatorData of an assertion whose clientDataJSON is right;
 *   4  a COSE key.
 * Properties: every answer is 0 or GH_EINVAL / GH_ETOOBIG / GH_EAUTH with a reason; a registered
 * credential's stored key reads back with the algorithm reported; an accepted assertion's counter
 * is the one in the authenticatorData; jansson's bytes (GH_MEM_HTTP) are all back afterwards.
 */
#include <string.h>

#include "api/api.h"
#include "auth/webauthn.h"
#include "common/base64url.h"
#include "fuzz.h"
#include "mem/mem.h"

static const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN];
static const gh_webauthn_rp_t rp = {.rp_id = "localhost", .origin = "http://localhost:8080"};
/* {1:1, 3:-8, -1:6, -2:h'00…00'} — an Ed25519 COSE key. */
static const uint8_t stored_key[] = {
    0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gh_api_json_setup();
    return 0;
}

static void check_answer(int rc, const char *why)
{
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ETOOBIG || rc == GH_EAUTH);
    FUZZ_CHECK(rc == 0 ? why == NULL : (why != NULL && *why));
}

static void registration(json_t *cred)
{
    gh_webauthn_credential_t out;
    const char *why = NULL;
    int rc = gh_webauthn_verify_registration(&rp, challenge, cred, &out, &why);
    check_answer(rc, why);
    if (rc == 0) {
        int alg = 0;
        FUZZ_CHECK(out.id_len > 0 && out.id_len <= GH_WEBAUTHN_CRED_ID_MAX);
        FUZZ_CHECK(gh_webauthn_cose_alg(out.cose_key, out.cose_key_len, &alg) == 0);
        FUZZ_CHECK(alg == out.alg);
    }
}

static void assertion(json_t *cred)
{
    static gh_webauthn_assertion_t a;
    const char *why = NULL;
    int rc = gh_webauthn_parse_assertion(cred, &a, &why);
    check_answer(rc, why);
    if (rc != 0)
        return;
    FUZZ_CHECK(a.client_data_len <= sizeof a.client_data && a.auth_data_len <= sizeof a.auth_data);
    uint32_t count = 0;
    rc = gh_webauthn_verify_assertion(&rp, challenge, &a, stored_key, sizeof stored_key, 0, &count,
                                      &why);
    check_answer(rc, why);
    if (rc == 0)
        FUZZ_CHECK(a.auth_data_len >= 37 &&
                   count == ((uint32_t)a.auth_data[33] << 24 | (uint32_t)a.auth_data[34] << 16 |
                             (uint32_t)a.auth_data[35] << 8 | a.auth_data[36]));
}

/* A credential whose clientDataJSON passes, with `raw` as its attestationObject or authData. */
static json_t *wrap(bool create, const uint8_t *raw, size_t len)
{
    char ch[64], cd[256], cd64[400];
    static char raw64[GH_BASE64URL_LEN(GH_WEBAUTHN_ATTESTATION_MAX + 1) + 8];
    gh_base64url_encode(challenge, sizeof challenge, ch);
    int n = snprintf(cd, sizeof cd, "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\"}",
                     create ? "webauthn.create" : "webauthn.get", ch, rp.origin);
    gh_base64url_encode((const uint8_t *)cd, (size_t)n, cd64);
    gh_base64url_encode(raw, len, raw64);
    json_t *j;
    if (create)
        j = json_pack("{s:s,s:s,s:{s:s,s:s}}", "rawId", "AAAAAAAAAAAAAAAAAAAAAA", "type",
                      "public-key", "response", "clientDataJSON", cd64, "attestationObject", raw64);
    else
        j = json_pack("{s:s,s:s,s:{s:s,s:s,s:s}}", "rawId", "AAAAAAAAAAAAAAAAAAAAAA", "type",
                      "public-key", "response", "clientDataJSON", cd64, "authenticatorData", raw64,
                      "signature",
                      "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                      "AAAAAAAAAA");
    return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > GH_WEBAUTHN_JSON_MAX)
        return 0;
    static bool ready;
    if (!ready) {
        gh_api_json_setup();
        ready = true;
    }
    size_t http0 = gh_mem_bytes(GH_MEM_HTTP), objects0 = gh_mem_objects(GH_MEM_HTTP);
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    json_t *cred = NULL;
    switch (data[0] % 5) {
    case 0:
    case 1: {
        json_error_t err;
        cred = json_loadb((const char *)body, len, 0, &err);
        if (!cred)
            break;
        if (data[0] % 5 == 0)
            registration(cred);
        else
            assertion(cred);
        break;
    }
    case 2:
        if (len > GH_WEBAUTHN_ATTESTATION_MAX)
            break;
        cred = wrap(true, body, len);
        FUZZ_CHECK(cred != NULL);
        registration(cred);
        break;
    case 3:
        if (len > GH_WEBAUTHN_ATTESTATION_MAX)
            break;
        cred = wrap(false, body, len);
        FUZZ_CHECK(cred != NULL);
        assertion(cred);
        break;
    default: {
        int alg = 0;
        int rc = gh_webauthn_cose_alg(body, len, &alg);
        FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
        FUZZ_CHECK(rc != 0 || alg == GH_WEBAUTHN_ALG_ES256 || alg == GH_WEBAUTHN_ALG_EDDSA);
        break;
    }
    }
    json_decref(cred);
    FUZZ_CHECK(gh_mem_bytes(GH_MEM_HTTP) == http0);
    FUZZ_CHECK(gh_mem_objects(GH_MEM_HTTP) == objects0);
    return 0;
}
