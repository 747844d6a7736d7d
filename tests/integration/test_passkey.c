/*
 * test_passkey.c — passkeys through the real binary, with a software authenticator (an Ed25519
 * key from libsodium) that answers the server's options the way a browser's would: register a
 * passkey on an account (with the password as proof), sign in with it alone, and every hostile
 * credential — malformed JSON, base64url and CBOR, a huge one, a wrong origin, a challenge the
 * server never issued, a replayed assertion, a cloned authenticator with a lower counter — gets a
 * clear 4xx, stores nothing, and the node keeps serving.
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
#include <sodium.h>

#include "../support/servers.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define ORIGIN "http://localhost:8443"

typedef struct {
    ht_server_t srv;
} fixture_t;

static int setup(void **state)
{
    *state = calloc(1, sizeof(fixture_t));
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    free(f);
    return rc;
}

#define SRV(state) (&((fixture_t *)*(state))->srv)

#define EXPECT(r, call, want)                                                                      \
    do {                                                                                           \
        long got_ = (call);                                                                        \
        if (got_ != (want))                                                                        \
            fail_msg("line %d: status %ld, want %ld: %.600s", __LINE__, got_, (long)(want),        \
                     (r)->body);                                                                   \
    } while (0)

/* ------------------------------------------------------------- a software authenticator -- */

typedef struct {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    uint8_t id[16];
    uint32_t count;
} authn_t;

typedef struct {
    uint8_t b[8192];
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
static void head(buf_t *o, int major, size_t v)
{
    if (v < 24) {
        put_u8(o, (uint8_t)(major << 5 | v));
    } else if (v < 256) {
        put_u8(o, (uint8_t)(major << 5 | 24));
        put_u8(o, (uint8_t)v);
    } else {
        put_u8(o, (uint8_t)(major << 5 | 25));
        put_u8(o, (uint8_t)(v >> 8));
        put_u8(o, (uint8_t)v);
    }
}
static void text(buf_t *o, const char *s)
{
    head(o, 3, strlen(s)), put(o, s, strlen(s));
}

static char *b64(const void *p, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *s = malloc(cap);
    assert_non_null(s);
    sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return s;
}

static void auth_data(const authn_t *a, uint8_t flags, uint32_t count, buf_t *o)
{
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)"localhost", 9);
    put(o, h, 32);
    put_u8(o, flags);
    for (int s = 24; s >= 0; s -= 8)
        put_u8(o, (uint8_t)(count >> s));
    if (flags & 0x40) {
        uint8_t aaguid[16] = {0};
        put(o, aaguid, 16);
        put_u8(o, 0);
        put_u8(o, sizeof a->id);
        put(o, a->id, sizeof a->id);
        /* COSE OKP Ed25519: {1:1, 3:-8, -1:6, -2:pk} */
        static const uint8_t hdr[] = {0xa4, 0x01, 0x01, 0x03, 0x27, 0x20, 0x06, 0x21, 0x58, 0x20};
        put(o, hdr, sizeof hdr);
        put(o, a->pk, sizeof a->pk);
    }
}

static char *client_data(const char *type, const char *challenge, const char *origin)
{
    char cd[512];
    snprintf(cd, sizeof cd, "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\"}", type,
             challenge, origin);
    return b64(cd, strlen(cd));
}

/* A registration credential answering `challenge` (base64url) from `origin`. */
static char *make_registration(const authn_t *a, const char *challenge, const char *origin)
{
    buf_t ad = {0}, att = {0};
    auth_data(a, 0x45, 0, &ad);
    head(&att, 5, 3);
    text(&att, "fmt"), text(&att, "none");
    text(&att, "attStmt"), head(&att, 5, 0);
    text(&att, "authData"), head(&att, 2, ad.n), put(&att, ad.b, ad.n);
    char *id = b64(a->id, sizeof a->id), *cd = client_data("webauthn.create", challenge, origin);
    char *ao = b64(att.b, att.n);
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:s,s:s}}", "id", id, "rawId", id, "type", "public-key",
                          "response", "clientDataJSON", cd, "attestationObject", ao);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    free(id), free(cd), free(ao);
    return s;
}

/* An assertion credential answering `challenge`, with the given counter and user handle. */
static char *make_assertion(const authn_t *a, const char *challenge, uint32_t count,
                            uint64_t user_id)
{
    buf_t ad = {0};
    auth_data(a, 0x05, count, &ad);
    char cd[512];
    snprintf(cd, sizeof cd, "{\"type\":\"webauthn.get\",\"challenge\":\"%s\",\"origin\":\"%s\"}",
             challenge, ORIGIN);
    uint8_t msg[512 + 32], sig[64], handle[8];
    memcpy(msg, ad.b, ad.n);
    crypto_hash_sha256(msg + ad.n, (const uint8_t *)cd, strlen(cd));
    crypto_sign_detached(sig, NULL, msg, ad.n + 32, a->sk);
    for (int i = 0; i < 8; i++)
        handle[i] = (uint8_t)(user_id >> (56 - 8 * i));
    char *id = b64(a->id, sizeof a->id), *cd64 = b64(cd, strlen(cd)), *ad64 = b64(ad.b, ad.n);
    char *sig64 = b64(sig, sizeof sig), *uh = b64(handle, sizeof handle);
    json_t *j = json_pack("{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s}}", "id", id, "rawId", id, "type",
                          "public-key", "response", "clientDataJSON", cd64, "authenticatorData",
                          ad64, "signature", sig64, "userHandle", uh);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    free(id), free(cd64), free(ad64), free(sig64), free(uh);
    return s;
}

/* ------------------------------------------------------------------------------ the flows -- */

static void register_options(ht_server_t *s, const char *token, char challenge[64])
{
    ht_response_t *r = malloc(sizeof *r);
    EXPECT(r, ht_json(s, "POST", "/v1/factors/webauthn/options", token, "{}", r), 200);
    char rp[64], alg_type[32];
    assert_true(ht_jstr(r, "publicKey.challenge", challenge, 64));
    assert_int_equal(strlen(challenge), 43);
    assert_true(ht_jstr(r, "publicKey.rp.id", rp, sizeof rp));
    assert_string_equal(rp, "localhost");
    assert_true(ht_jstr(r, "publicKey.attestation", alg_type, sizeof alg_type));
    assert_string_equal(alg_type, "none");
    free(r);
}

static long add_passkey(ht_server_t *s, const char *token, const char *password,
                        const char *credential, ht_response_t *r)
{
    size_t cap = strlen(credential) + 256;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"current_password\":\"%s\",\"name\":\"laptop\",\"credential\":%s}",
             password, credential);
    long st = ht_json(s, "POST", "/v1/factors/webauthn", token, body, r);
    free(body);
    return st;
}

static void login_options(ht_server_t *s, char challenge[64])
{
    ht_response_t *r = malloc(sizeof *r);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/passkey/options", NULL, "{}", r), 200);
    assert_true(ht_jstr(r, "publicKey.challenge", challenge, 64));
    char uv[32];
    assert_true(ht_jstr(r, "publicKey.userVerification", uv, sizeof uv));
    assert_string_equal(uv, "required");
    free(r);
}

static long passkey_login(ht_server_t *s, const char *credential, ht_response_t *r)
{
    size_t cap = strlen(credential) + 64;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"credential\":%s}", credential);
    long st = ht_json(s, "POST", "/v1/sessions/passkey", NULL, body, r);
    free(body);
    return st;
}

static void register_and_sign_in_with_a_passkey(void **state)
{
    ht_server_t *s = SRV(state);
    if (ht_server_start(s, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN, NULL) != 0)
        fail_msg("server did not start");
    ht_response_t *r = malloc(sizeof *r);
    long long uid = 0;
    assert_int_equal(ht_register(s, "pat", PASSWORD, &uid), 201);
    char token[64];
    assert_int_equal(ht_login(s, "pat", PASSWORD, token, NULL), 201);

    authn_t a = {0};
    crypto_sign_keypair(a.pk, a.sk);
    randombytes_buf(a.id, sizeof a.id);
    char ch[64];

    /* Without a session: 401. */
    EXPECT(r, ht_json(s, "POST", "/v1/factors/webauthn/options", NULL, "{}", r), 401);

    /* No proof at all: 400 naming it. */
    register_options(s, token, ch);
    char *cred = make_registration(&a, ch, ORIGIN);
    size_t cap = strlen(cred) + 64;
    char *noproof = malloc(cap);
    snprintf(noproof, cap, "{\"name\":\"laptop\",\"credential\":%s}", cred);
    EXPECT(r, ht_json(s, "POST", "/v1/factors/webauthn", token, noproof, r), 400);
    assert_non_null(strstr(r->body, "current_password"));
    free(noproof);
    free(cred);

    /* The wrong password: 401, nothing stored (and the challenge is spent). */
    register_options(s, token, ch);
    cred = make_registration(&a, ch, ORIGIN);
    EXPECT(r, add_passkey(s, token, "not the password", cred, r), 401);
    assert_string_equal(r->error_code, "invalid_credentials");
    EXPECT(r, add_passkey(s, token, PASSWORD, cred, r), 401); /* spent */
    assert_string_equal(r->error_code, "invalid_passkey");
    free(cred);

    /* Registered. */
    register_options(s, token, ch);
    cred = make_registration(&a, ch, ORIGIN);
    EXPECT(r, add_passkey(s, token, PASSWORD, cred, r), 201);
    char type[32], name[32];
    assert_true(ht_jstr(r, "factor.type", type, sizeof type));
    assert_string_equal(type, "webauthn");
    assert_true(ht_jstr(r, "factor.name", name, sizeof name));
    assert_string_equal(name, "laptop");
    free(cred);
    /* The same passkey twice: 400. */
    register_options(s, token, ch);
    cred = make_registration(&a, ch, ORIGIN);
    EXPECT(r, add_passkey(s, token, PASSWORD, cred, r), 400);
    free(cred);

    /* Passwordless: 201 with the body of a login; the token works. */
    login_options(s, ch);
    char *as = make_assertion(&a, ch, 1, (uint64_t)uid);
    EXPECT(r, passkey_login(s, as, r), 201);
    char tok2[64], user[32];
    assert_true(ht_jstr(r, "token", tok2, sizeof tok2));
    assert_true(ht_jstr(r, "user.username", user, sizeof user));
    assert_string_equal(user, "pat");
    assert_true(ht_jhas(r, "session.id"));
    EXPECT(r, ht_get(s, "/v1/session", tok2, r), 200);
    /* The same assertion again: its challenge is spent. */
    EXPECT(r, passkey_login(s, as, r), 401);
    assert_string_equal(r->error_code, "invalid_passkey");
    free(as);

    /* A clone with a lower (equal) counter: refused, and the log says so. */
    login_options(s, ch);
    as = make_assertion(&a, ch, 1, (uint64_t)uid);
    EXPECT(r, passkey_login(s, as, r), 401);
    free(as);
    assert_true(ht_server_wait_log(
        s, "passkey counter went backwards: possible cloned authenticator", 2000));
    /* The real one, with its counter moved on, still works. */
    login_options(s, ch);
    as = make_assertion(&a, ch, 7, (uint64_t)uid);
    EXPECT(r, passkey_login(s, as, r), 201);
    free(as);
    /* Another user's handle: refused. */
    login_options(s, ch);
    as = make_assertion(&a, ch, 8, (uint64_t)uid + 1);
    EXPECT(r, passkey_login(s, as, r), 401);
    free(as);
    /* No challenge appears in the log. */
    char *log = malloc(1 << 20);
    ht_server_log(s, log, 1 << 20);
    assert_null(strstr(log, ch));
    free(log);
    free(r);
}

static void hostile_credentials_are_refused_and_nothing_is_stored(void **state)
{
    ht_server_t *s = SRV(state);
    if (ht_server_start(s, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN, NULL) != 0)
        fail_msg("server did not start");
    ht_response_t *r = malloc(sizeof *r);
    long long uid = 0;
    assert_int_equal(ht_register(s, "eve", PASSWORD, &uid), 201);
    char token[64], ch[64];
    assert_int_equal(ht_login(s, "eve", PASSWORD, token, NULL), 201);
    authn_t a = {0};
    crypto_sign_keypair(a.pk, a.sk);
    randombytes_buf(a.id, sizeof a.id);

    struct {
        const char *what;
        const char *credential; /* NULL: built below */
        long status;
        const char *code;
    } cases[] = {
        {"not an object", "\"x\"", 400, "invalid_request"},
        {"no credential", "null", 400, "invalid_request"},
        {"malformed base64url",
         "{\"rawId\":\"AAAA\",\"type\":\"public-key\",\"response\":{"
         "\"clientDataJSON\":\"a+b/\",\"attestationObject\":\"AA\"}}",
         400, "invalid_request"},
        {"malformed CBOR", NULL, 400, "invalid_request"},
        {"wrong origin", NULL, 401, "invalid_passkey"},
        {"challenge never issued", NULL, 401, "invalid_passkey"},
        {"huge", NULL, 413, "payload_too_large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        register_options(s, token, ch);
        char *cred = NULL;
        if (!cases[i].credential) {
            if (strcmp(cases[i].what, "wrong origin") == 0) {
                cred = make_registration(&a, ch, "http://evil.example");
            } else if (strcmp(cases[i].what, "challenge never issued") == 0) {
                cred = make_registration(&a, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ORIGIN);
            } else if (strcmp(cases[i].what, "malformed CBOR") == 0) {
                char *cd = client_data("webauthn.create", ch, ORIGIN);
                static const uint8_t junk[] = {0xa3, 0x63, 'f', 'm', 't', 0x5b, 0xff, 0xff, 0xff};
                char *ao = b64(junk, sizeof junk);
                cred = malloc(1024);
                snprintf(cred, 1024,
                         "{\"rawId\":\"AAAA\",\"type\":\"public-key\",\"response\":{"
                         "\"clientDataJSON\":\"%s\",\"attestationObject\":\"%s\"}}",
                         cd, ao);
                free(cd), free(ao);
            } else { /* huge: 40 KB of attestation object */
                char *cd = client_data("webauthn.create", ch, ORIGIN);
                cred = malloc(45000);
                int n = snprintf(cred, 45000,
                                 "{\"rawId\":\"AAAA\",\"type\":\"public-key\","
                                 "\"response\":{\"clientDataJSON\":\"%s\",\"attestationObject\":\"",
                                 cd);
                memset(cred + n, 'A', 40000);
                strcpy(cred + n + 40000, "\"}}");
                free(cd);
            }
        }
        long st = add_passkey(s, token, PASSWORD, cred ? cred : cases[i].credential, r);
        if (st != cases[i].status || strcmp(r->error_code, cases[i].code) != 0)
            fail_msg("%s: %ld %s, want %ld %s: %.300s", cases[i].what, st, r->error_code,
                     cases[i].status, cases[i].code, r->body);
        free(cred);
    }
    /* Sign-in with hostile assertions. */
    login_options(s, ch);
    EXPECT(r, passkey_login(s, "{\"type\":\"public-key\"}", r), 400);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/passkey", NULL, "{\"credential\":[1,2]}", r), 400);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/passkey", NULL, "not json", r), 400);
    /* Nothing was stored: this authenticator's passkey is unknown to the sign-in. */
    login_options(s, ch);
    char *as = make_assertion(&a, ch, 1, (uint64_t)uid);
    EXPECT(r, passkey_login(s, as, r), 401);
    assert_string_equal(r->error_code, "invalid_passkey");
    free(as);
    /* The node keeps serving. */
    EXPECT(r, ht_get(s, "/healthz", NULL, r), 200);
    EXPECT(r, ht_get(s, "/v1/session", token, r), 200);
    free(r);
}

static long mfa_step(ht_server_t *s, const char *pending, const char *credential, ht_response_t *r)
{
    size_t cap = strlen(credential) + 256;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"pending\":\"%s\",\"method\":\"webauthn\",\"credential\":%s}", pending,
             credential);
    long st = ht_json(s, "POST", "/v1/sessions/mfa", NULL, body, r);
    free(body);
    return st;
}

static void mfa_options(ht_server_t *s, const char *pending, char challenge[64], ht_response_t *r)
{
    char body[256];
    snprintf(body, sizeof body, "{\"pending\":\"%s\"}", pending);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/mfa/options", NULL, body, r), 200);
    assert_true(ht_jstr(r, "publicKey.challenge", challenge, 64));
}

static void a_passkey_is_the_second_step_of_a_password_login(void **state)
{
    ht_server_t *s = SRV(state);
    if (ht_server_start(s, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN, NULL) != 0)
        fail_msg("server did not start");
    ht_response_t *r = malloc(sizeof *r);
    long long uid = 0;
    assert_int_equal(ht_register(s, "max", PASSWORD, &uid), 201);
    char token[64], ch[64];
    assert_int_equal(ht_login(s, "max", PASSWORD, token, NULL), 201);
    authn_t a = {0};
    crypto_sign_keypair(a.pk, a.sk);
    randombytes_buf(a.id, sizeof a.id);
    register_options(s, token, ch);
    char *cred = make_registration(&a, ch, ORIGIN);
    EXPECT(r, add_passkey(s, token, PASSWORD, cred, r), 201);
    free(cred);

    /* The password alone is no longer a session: 202 with webauthn among the methods. */
    char body[256], pending[128];
    snprintf(body, sizeof body, "{\"username\":\"max\",\"password\":\"%s\"}", PASSWORD);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions", NULL, body, r), 202);
    assert_true(ht_jstr(r, "pending", pending, sizeof pending));
    assert_non_null(strstr(r->body, "\"webauthn\""));

    /* Options for the step: a challenge, and this passkey allowed. */
    mfa_options(s, pending, ch, r);
    char *id = b64(a.id, sizeof a.id);
    char allowed[64];
    assert_true(ht_jstr(r, "publicKey.allowCredentials.0.id", allowed, sizeof allowed));
    assert_string_equal(allowed, id);
    free(id);

    /* A wrong signature (another key): 401 invalid_code; the pending login lives on. */
    authn_t other = a;
    crypto_sign_keypair(other.pk, other.sk);
    char *as = make_assertion(&other, ch, 1, (uint64_t)uid);
    EXPECT(r, mfa_step(s, pending, as, r), 401);
    assert_string_equal(r->error_code, "invalid_code");
    free(as);
    /* Garbage for a credential: the same. */
    EXPECT(r, mfa_step(s, pending, "{\"type\":\"public-key\",\"rawId\":\"@@\"}", r), 401);
    assert_string_equal(r->error_code, "invalid_code");

    /* The passkey: 201, a session like a one-step login's. */
    as = make_assertion(&a, ch, 3, (uint64_t)uid);
    EXPECT(r, mfa_step(s, pending, as, r), 201);
    char tok2[64];
    assert_true(ht_jstr(r, "token", tok2, sizeof tok2));
    EXPECT(r, ht_get(s, "/v1/session", tok2, r), 200);
    /* The pending login is gone: the same assertion again is refused. */
    EXPECT(r, mfa_step(s, pending, as, r), 401);
    assert_string_equal(r->error_code, "pending_expired");
    free(as);
    /* Options for a pending login that does not exist: 401. */
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/mfa/options", NULL, "{\"pending\":\"gh_nope\"}", r),
           401);
    free(r);
}

static void the_script_and_its_policy_and_passkeys_off(void **state)
{
    ht_server_t *s = SRV(state);
    if (ht_server_start(s, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN, NULL) != 0)
        fail_msg("server did not start");
    ht_response_t *r = malloc(sizeof *r);
    char h[512];
    /* The one script: same origin, JavaScript, no sniffing, a policy of its own. */
    EXPECT(r, ht_get(s, "/static/webauthn.js", NULL, r), 200);
    assert_true(ht_header(r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "text/javascript; charset=utf-8");
    assert_true(ht_header(r, "X-Content-Type-Options", h, sizeof h));
    assert_non_null(strstr(r->body, "navigator.credentials.get"));
    assert_null(strstr(r->body, "http"));
    /* /login loads it under script-src 'self' and nothing inline. */
    EXPECT(r, ht_get(s, "/login", NULL, r), 200);
    assert_non_null(strstr(r->body, "<script src=\"/static/webauthn.js\" defer></script>"));
    assert_null(strstr(r->body, "<script>"));
    assert_true(ht_header(r, "Content-Security-Policy", h, sizeof h));
    assert_non_null(strstr(h, "script-src 'self'"));
    assert_non_null(strstr(h, "default-src 'none'"));
    assert_null(strstr(h, "unsafe-eval"));
    assert_int_equal(ht_server_stop(s), 0);
    ht_server_cleanup(s);

    /* Without --webauthn-rp-id passkeys are off: a clear 400, and the pages carry no script. */
    memset(s, 0, sizeof *s);
    if (ht_server_start(s, NULL) != 0)
        fail_msg("server did not start");
    EXPECT(r, ht_json(s, "POST", "/v1/sessions/passkey/options", NULL, "{}", r), 400);
    assert_non_null(strstr(r->body, "passkeys are not configured"));
    EXPECT(r, ht_get(s, "/login", NULL, r), 200);
    assert_null(strstr(r->body, "<script"));
    free(r);
}

/* With --session-store redis the pending login, and so the passkey step's challenge, lives in
 * Redis: options asked on node A, the assertion finished on node B. */
static void a_passkey_step_started_on_one_node_finishes_on_another(void **state)
{
    ht_server_t *s = SRV(state);
    ts_server_t redis = {.kind = TS_REDIS};
    if (ts_server_start(&redis) != 0)
        fail_msg("cannot start redis-server");
    if (ht_server_start(s, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN,
                        "--session-store", "redis", "--redis-url", redis.url, NULL) != 0)
        fail_msg("server A did not start");
    ht_server_t b = {.data_dir = s->dir};
    if (ht_server_start(&b, "--webauthn-rp-id", "localhost", "--webauthn-origin", ORIGIN,
                        "--session-store", "redis", "--redis-url", redis.url, NULL) != 0)
        fail_msg("server B did not start");
    ht_response_t *r = malloc(sizeof *r);
    long long uid = 0;
    assert_int_equal(ht_register(s, "lou", PASSWORD, &uid), 201);
    char token[64], ch[64], pending[128], body[256];
    assert_int_equal(ht_login(s, "lou", PASSWORD, token, NULL), 201);
    authn_t a = {0};
    crypto_sign_keypair(a.pk, a.sk);
    randombytes_buf(a.id, sizeof a.id);
    register_options(s, token, ch);
    char *cred = make_registration(&a, ch, ORIGIN);
    EXPECT(r, add_passkey(s, token, PASSWORD, cred, r), 201);
    free(cred);
    snprintf(body, sizeof body, "{\"username\":\"lou\",\"password\":\"%s\"}", PASSWORD);
    EXPECT(r, ht_json(s, "POST", "/v1/sessions", NULL, body, r), 202); /* on A */
    assert_true(ht_jstr(r, "pending", pending, sizeof pending));
    mfa_options(s, pending, ch, r); /* on A */
    char *as = make_assertion(&a, ch, 1, (uint64_t)uid);
    EXPECT(r, mfa_step(&b, pending, as, r), 201); /* on B */
    char tok2[64];
    assert_true(ht_jstr(r, "token", tok2, sizeof tok2));
    EXPECT(r, ht_get(s, "/v1/session", tok2, r), 200);
    free(as);
    free(r);
    assert_int_equal(ht_server_release(&b), 0);
    ts_server_cleanup(&redis);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(register_and_sign_in_with_a_passkey, setup, teardown),
        cmocka_unit_test_setup_teardown(hostile_credentials_are_refused_and_nothing_is_stored,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_passkey_is_the_second_step_of_a_password_login, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(the_script_and_its_policy_and_passkeys_off, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_passkey_step_started_on_one_node_finishes_on_another,
                                        setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
