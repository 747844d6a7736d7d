/*
 * webauthn.h — verification of WebAuthn Level 2 ceremonies (passkeys): a registration
 * (navigator.credentials.create, attestation "none" or "packed" self-attestation) and an
 * assertion (navigator.credentials.get), for ES256 (ECDSA P-256) and EdDSA (Ed25519) keys,
 * plus the table of challenges each ceremony is issued.
 *
 * The one design decision: a credential arrives as the browser's PublicKeyCredential in JSON
 * (every binary member base64url), and every piece of it is copied into fixed-size buffers of
 * the parsed struct with a maximum checked before decoding, so a huge or malformed credential
 * is a clear GH_EINVAL/GH_ETOOBIG and never an allocation a client controls. CBOR is read with
 * libcbor's streaming decoder (cbor_stream_decode: one item head at a time, no allocation) —
 * chosen over libcbor's tree loader (which mallocs outside the accounting) and over libfido2's
 * COSE helpers (which parse only the key, not the attestation object, and would bring a second
 * copy of libcbor's tree loader with them); ES256 signatures are checked with OpenSSL's libcrypto
 * and Ed25519 with libsodium, both of which Gatehouse links already or Debian ships everywhere.
 *
 * No function here logs a challenge. Failures carry a short static reason (`why`) for the log
 * and the error message; the caller decides what the client is told.
 */
#ifndef GH_AUTH_WEBAUTHN_H
#define GH_AUTH_WEBAUTHN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_WEBAUTHN_CHALLENGE_LEN 32
/* Level 2 caps credential ids at 1023 bytes. */
#define GH_WEBAUTHN_CRED_ID_MAX 1023
/* A COSE EC2 P-256 key is 77 bytes, an OKP Ed25519 key 42; room for a few extra members. */
#define GH_WEBAUTHN_COSE_KEY_MAX 256
#define GH_WEBAUTHN_CLIENT_DATA_MAX 2048
#define GH_WEBAUTHN_AUTH_DATA_MAX 1024
#define GH_WEBAUTHN_ATTESTATION_MAX 4096
#define GH_WEBAUTHN_SIG_MAX 128
#define GH_WEBAUTHN_USER_HANDLE_MAX 64
/* The largest credential JSON a handler should accept (every member base64url, with room). */
#define GH_WEBAUTHN_JSON_MAX 12288

/* COSE algorithm identifiers we accept. */
#define GH_WEBAUTHN_ALG_ES256 (-7)
#define GH_WEBAUTHN_ALG_EDDSA (-8)

/* authenticatorData flags */
#define GH_WEBAUTHN_FLAG_UP 0x01
#define GH_WEBAUTHN_FLAG_UV 0x04
#define GH_WEBAUTHN_FLAG_AT 0x40
#define GH_WEBAUTHN_FLAG_ED 0x80

/* The relying party: the RP ID (a domain: "localhost", "example.com") and the one origin its
 * pages are served from ("https://login.example.com", "http://localhost:8080"). */
typedef struct gh_webauthn_rp_s {
    const char *rp_id;
    const char *origin;
    bool require_uv; /* demand user verification (passwordless sign-in does) */
} gh_webauthn_rp_t;

/* A registered credential: what a factor of type webauthn stores. */
typedef struct {
    uint8_t id[GH_WEBAUTHN_CRED_ID_MAX];
    size_t id_len;
    uint8_t
        cose_key[GH_WEBAUTHN_COSE_KEY_MAX]; /* the COSE_Key exactly as the authenticator sent it */
    size_t cose_key_len;
    int alg;             /* GH_WEBAUTHN_ALG_ES256 or _EDDSA */
    uint32_t sign_count; /* as registered */
    uint8_t flags;       /* authenticatorData flags at registration */
} gh_webauthn_credential_t;

/* An assertion as the browser sent it, decoded but not yet verified: the caller finds the stored
 * credential by `id` (and, for a discoverable credential, the user by `user_handle`). */
typedef struct {
    uint8_t id[GH_WEBAUTHN_CRED_ID_MAX];
    size_t id_len;
    uint8_t client_data[GH_WEBAUTHN_CLIENT_DATA_MAX];
    size_t client_data_len;
    uint8_t auth_data[GH_WEBAUTHN_AUTH_DATA_MAX];
    size_t auth_data_len;
    uint8_t sig[GH_WEBAUTHN_SIG_MAX];
    size_t sig_len;
    uint8_t user_handle[GH_WEBAUTHN_USER_HANDLE_MAX];
    size_t user_handle_len;                       /* 0: none given */
    uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN]; /* from clientDataJSON, to find the ceremony */
} gh_webauthn_assertion_t;

/* A registration as the browser sent it, decoded but not yet verified. */
typedef struct {
    uint8_t id[GH_WEBAUTHN_CRED_ID_MAX];
    size_t id_len;
    uint8_t client_data[GH_WEBAUTHN_CLIENT_DATA_MAX];
    size_t client_data_len;
    uint8_t attestation[GH_WEBAUTHN_ATTESTATION_MAX];
    size_t attestation_len;
    uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN]; /* from clientDataJSON, to find the ceremony */
} gh_webauthn_registration_t;

/* Decodes a registration credential JSON (below) into *out, reading the challenge out of
 * clientDataJSON. Returns 0, GH_EINVAL, GH_ETOOBIG (with *why). Verifies nothing. */
int gh_webauthn_parse_registration(const json_t *credential, gh_webauthn_registration_t *out,
                                   const char **why) GH_WUR;

/* Verifies a parsed registration (everything gh_webauthn_verify_registration checks). */
int gh_webauthn_check_registration(const gh_webauthn_rp_t *rp,
                                   const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   const gh_webauthn_registration_t *reg,
                                   gh_webauthn_credential_t *out, const char **why) GH_WUR;

/* Verifies a registration: `credential` is the PublicKeyCredential JSON object
 * ({"id","rawId","type":"public-key","response":{"clientDataJSON","attestationObject"}}).
 * `challenge` is the one issued for this ceremony. On success fills *out.
 * Returns 0; GH_EINVAL (malformed: JSON, base64url, CBOR, COSE, unsupported algorithm or
 * attestation), GH_ETOOBIG (a member over its maximum), GH_EAUTH (well formed but refused: type,
 * challenge, origin, RP ID hash, flags, attestation signature). *why names what failed. */
int gh_webauthn_verify_registration(const gh_webauthn_rp_t *rp,
                                    const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                    const json_t *credential, gh_webauthn_credential_t *out,
                                    const char **why) GH_WUR;

/* Decodes an assertion credential JSON
 * ({"id","rawId","type":"public-key","response":{"clientDataJSON","authenticatorData",
 * "signature","userHandle"?}}) into *out, reading the challenge out of clientDataJSON.
 * Returns 0, GH_EINVAL, GH_ETOOBIG (with *why). Verifies nothing. */
int gh_webauthn_parse_assertion(const json_t *credential, gh_webauthn_assertion_t *out,
                                const char **why) GH_WUR;

/* Verifies a parsed assertion against the stored credential and the issued challenge: type
 * "webauthn.get", challenge, origin, RP ID hash, UP (and UV when rp->require_uv), the signature
 * over authenticatorData || SHA-256(clientDataJSON), and the signature counter: when the stored
 * or the new counter is non-zero the new one must be greater (a counter that did not go up means
 * a cloned authenticator: GH_EAUTH with *why "signature counter went backwards").
 * On success *new_count is the counter to store. Returns 0, GH_EINVAL, GH_EAUTH. */
int gh_webauthn_verify_assertion(const gh_webauthn_rp_t *rp,
                                 const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                 const gh_webauthn_assertion_t *a, const uint8_t *cose_key,
                                 size_t cose_key_len, uint32_t stored_count, uint32_t *new_count,
                                 const char **why) GH_WUR;

/* Reads a COSE_Key (EC2 P-256 / ES256 or OKP Ed25519 / EdDSA) and reports its algorithm.
 * Returns 0 or GH_EINVAL. Exposed for the store's sanity checks and the fuzz target. */
int gh_webauthn_cose_alg(const uint8_t *cose_key, size_t len, int *alg) GH_WUR;

/* ---- challenges: issued per ceremony, single use, short-lived, in a bounded table ---- */

typedef enum {
    GH_WEBAUTHN_REGISTER = 1, /* bound to the user registering a passkey */
    GH_WEBAUTHN_SECOND,       /* bound to a pending login */
    GH_WEBAUTHN_PASSWORDLESS, /* bound to nothing: anyone may sign in with a passkey */
} gh_webauthn_ceremony_t;

/* The subject a challenge is bound to (a user id, a pending login's hash); all zero for none. */
#define GH_WEBAUTHN_SUBJECT_LEN 32

typedef struct gh_webauthn_challenges gh_webauthn_challenges_t;

/* A table of at most `capacity` live challenges, each valid for `ttl_ms`, charged to
 * GH_MEM_WEBAUTHN. When full, issuing evicts the challenge closest to expiry (the oldest:
 * they all live as long), so a flood of ceremonies costs the flooders' oldest challenges and
 * never memory. Freed with gh_webauthn_challenges_free. Thread-safe. */
int gh_webauthn_challenges_new(size_t capacity, uint64_t ttl_ms,
                               gh_webauthn_challenges_t **out) GH_WUR;
void gh_webauthn_challenges_free(gh_webauthn_challenges_t **t);

/* Issues a fresh random challenge for a ceremony bound to `subject` (NULL: none), valid until
 * now_ms + ttl. Returns 0 or GH_EINVAL. */
int gh_webauthn_challenge_issue(gh_webauthn_challenges_t *t, gh_webauthn_ceremony_t kind,
                                const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t now_ms,
                                uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN]) GH_WUR;

/* Spends a challenge: finds it, removes it (whatever follows: single use), and checks that it
 * was issued for `kind` and `subject` and has not expired. Returns 0, GH_ENOTFOUND (never
 * issued or already spent), GH_EEXPIRED, GH_EAUTH (another ceremony or subject). */
int gh_webauthn_challenge_take(gh_webauthn_challenges_t *t, gh_webauthn_ceremony_t kind,
                               const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t now_ms,
                               const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN]) GH_WUR;

/* Live challenges (expired ones still in the table count until swept or overwritten). */
size_t gh_webauthn_challenges_live(gh_webauthn_challenges_t *t);

#endif
