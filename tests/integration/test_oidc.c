/*
 * test_oidc.c — the OpenID Connect provider through the real binary (issue #21): the whole
 * authorization code flow with PKCE as a relying party drives it with libcurl (log in, authorize
 * with the session cookie, exchange the code, check the ID token's signature against /oidc/jwks
 * and its claims, userinfo, refresh with rotation, revoke, introspect, RP-initiated logout), the
 * way back through the login page, consent, the second factor's amr, and every negative case the
 * issue names with its standard error. Memory: 100,000 abandoned authorizations return the
 * `oidc_codes` component to its exact baseline once they expire.
 *
 * Codes live 2 s here (the test knob GATEHOUSE_TEST_OIDC_CODE_TTL_MS), so expiry costs seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "auth/jwt.h"
#include "common/base64url.h"
#include "harness.h"

#define PASSWORD "correct horse battery"
#define ADMIN "admin-secret-token-for-oidc-tests"
#define RP "https://rp.example/cb"
#define RP_BYE "https://rp.example/bye"
#define CODE_TTL_MS 2000

typedef struct {
    ht_server_t srv;
    ht_response_t r;
    char issuer[256];
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

#define EXPECT(r, call, want)                                                                      \
    do {                                                                                           \
        long got_ = (call);                                                                        \
        if (got_ != (want))                                                                        \
            fail_msg("%s: got %ld, want %d: %.600s", #call, got_, (int)(want), (r)->body);         \
    } while (0)
/* An RFC 6749 error body: {"error": code, ...}. */
#define EXPECT_OAUTH(r, call, want, code)                                                          \
    do {                                                                                           \
        EXPECT(r, call, want);                                                                     \
        char e_[64] = "";                                                                          \
        if (!ht_jstr((r), "error", e_, sizeof e_) || strcmp(e_, (code)) != 0)                      \
            fail_msg("%s: error %s, want %s: %.300s", #call, e_, (code), (r)->body);               \
    } while (0)

static void start(fixture_t *f, ...)
{
    static const char *env[] = {"GATEHOUSE_TEST_OIDC_CODE_TTL_MS=2000", NULL};
    const char *args[32] = {"--admin-token", ADMIN};
    size_t n = 2;
    va_list ap;
    va_start(ap, f);
    for (const char *a; (a = va_arg(ap, const char *)) && n < 31;)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    f->srv.env[0] = env[0];
    assert_int_equal(ht_server_startv(&f->srv, args), 0);
    ht_response_t *r = &f->r;
    EXPECT(r, ht_get(&f->srv, "/.well-known/openid-configuration", NULL, r), 200);
    assert_true(ht_jstr(r, "issuer", f->issuer, sizeof f->issuer));
}

/* ---- small helpers ---- */

static void url_enc(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (; *s && j + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        }
    }
    out[j] = '\0';
}

/* The value of name in the query of url (decoded), or false. */
static bool query_param(const char *url, const char *name, char *out, size_t cap)
{
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);
    while (q) {
        q++;
        if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
            const char *v = q + nl + 1;
            size_t j = 0;
            for (; *v && *v != '&' && j + 1 < cap; v++) {
                if (*v == '%' && v[1] && v[2]) {
                    char hx[3] = {v[1], v[2], 0};
                    out[j++] = (char)strtol(hx, NULL, 16);
                    v += 2;
                } else {
                    out[j++] = *v == '+' ? ' ' : *v;
                }
            }
            out[j] = '\0';
            return true;
        }
        q = strchr(q, '&');
    }
    return false;
}

static long get_cookie(fixture_t *f, const char *path, const char *session)
{
    char cookie[128];
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", session ? session : "");
    const char *h[] = {session ? cookie : NULL, NULL};
    return ht_request(&f->srv, "GET", path, h, NULL, 0, &f->r);
}

static long post_form(fixture_t *f, const char *path, const char *body, const char *extra_header)
{
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", extra_header, NULL};
    return ht_request(&f->srv, "POST", path, h, body, strlen(body), &f->r);
}

/* Basic credentials of RFC 6749 §2.3.1 (form-encoded, then base64). */
static void basic(const char *id, const char *secret, char out[512])
{
    char plain[256], b64[400];
    snprintf(plain, sizeof plain, "%s:%s", id, secret);
    sodium_bin2base64(b64, sizeof b64, (const unsigned char *)plain, strlen(plain),
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, 512, "Authorization: Basic %s", b64);
}

typedef struct {
    char id[64];
    char secret[128]; /* "" for a public client */
} client_t;

static void add_client(fixture_t *f, const char *json, client_t *c)
{
    ht_response_t *r = &f->r;
    memset(c, 0, sizeof *c);
    EXPECT(r, ht_json(&f->srv, "POST", "/v1/admin/clients", ADMIN, json, r), 201);
    assert_true(ht_jstr(r, "client_id", c->id, sizeof c->id));
    if (!ht_jstr(r, "client_secret", c->secret, sizeof c->secret))
        c->secret[0] = '\0';
}

static void confidential(fixture_t *f, client_t *c)
{
    add_client(f,
               "{\"name\":\"Wiki\",\"redirect_uris\":[\"" RP "\"],"
               "\"post_logout_redirect_uris\":[\"" RP_BYE "\"]}",
               c);
    assert_true(c->secret[0]);
}

typedef struct {
    char verifier[64];
    char challenge[64];
} pkce_t;

static void pkce(pkce_t *p)
{
    uint8_t raw[32], digest[32];
    randombytes_buf(raw, sizeof raw);
    gh_base64url_encode(raw, sizeof raw, p->verifier);
    crypto_hash_sha256(digest, (const uint8_t *)p->verifier, strlen(p->verifier));
    gh_base64url_encode(digest, sizeof digest, p->challenge);
}

/* /oidc/authorize?… for client c (with PKCE when p), and more (already encoded) when given. */
static void authorize_path(char *out, size_t cap, const char *client_id, const char *redirect,
                           const char *scope, const pkce_t *p, const char *more)
{
    char ru[256], sc[128];
    url_enc(redirect, ru, sizeof ru);
    url_enc(scope, sc, sizeof sc);
    int n = snprintf(out, cap,
                     "/oidc/authorize?response_type=code&client_id=%s&redirect_uri=%s&scope=%s"
                     "&state=st-1&nonce=nonce-1",
                     client_id, ru, sc);
    if (p)
        n += snprintf(out + n, cap - (size_t)n, "&code_challenge=%s&code_challenge_method=S256",
                      p->challenge);
    if (more)
        snprintf(out + n, cap - (size_t)n, "&%s", more);
}

/* Authorizes with the session and returns the code from the 302. */
static void get_code(fixture_t *f, const client_t *c, const char *session, const pkce_t *p,
                     const char *scope, char code[128])
{
    ht_response_t *r = &f->r;
    char path[1024], loc[2048], v[128];
    authorize_path(path, sizeof path, c->id, RP, scope, p, NULL);
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(strncmp(loc, RP "?", strlen(RP) + 1) == 0);
    assert_true(query_param(loc, "code", code, 128));
    assert_true(strncmp(code, "ghc_", 4) == 0);
    assert_true(query_param(loc, "state", v, sizeof v));
    assert_string_equal(v, "st-1");
    assert_true(query_param(loc, "iss", v, sizeof v));
    assert_string_equal(v, f->issuer);
}

static long exchange(fixture_t *f, const client_t *c, const char *code, const char *verifier)
{
    char body[1024], ru[256], auth[512];
    url_enc(RP, ru, sizeof ru);
    int n = snprintf(body, sizeof body, "grant_type=authorization_code&code=%s&redirect_uri=%s",
                     code, ru);
    if (verifier)
        snprintf(body + n, sizeof body - (size_t)n, "&code_verifier=%s", verifier);
    if (c->secret[0]) {
        basic(c->id, c->secret, auth);
        return post_form(f, "/oidc/token", body, auth);
    }
    snprintf(body + strlen(body), sizeof body - strlen(body), "&client_id=%s", c->id);
    return post_form(f, "/oidc/token", body, NULL);
}

/* refresh_token grant with client_secret_post. */
static long refresh(fixture_t *f, const client_t *c, const char *rt)
{
    char body[512];
    snprintf(body, sizeof body, "grant_type=refresh_token&refresh_token=%s&client_id=%s%s%s", rt,
             c->id, c->secret[0] ? "&client_secret=" : "", c->secret);
    return post_form(f, "/oidc/token", body, NULL);
}

typedef struct {
    char access[128], refresh[128], id_token[4096];
} tokens_t;

static void read_tokens(fixture_t *f, tokens_t *t)
{
    ht_response_t *r = &f->r;
    char type[32], hdr[64];
    assert_true(ht_jstr(r, "access_token", t->access, sizeof t->access));
    assert_true(ht_jstr(r, "refresh_token", t->refresh, sizeof t->refresh));
    assert_true(ht_jstr(r, "id_token", t->id_token, sizeof t->id_token));
    assert_true(ht_jstr(r, "token_type", type, sizeof type));
    assert_string_equal(type, "Bearer");
    long long exp = 0;
    assert_true(ht_jint(r, "expires_in", &exp) && exp == 600);
    assert_true(strncmp(t->access, "gha_", 4) == 0 && strlen(t->access) == 68);
    assert_true(strncmp(t->refresh, "ghr_", 4) == 0 && strlen(t->refresh) == 68);
    assert_true(ht_header(r, "Cache-Control", hdr, sizeof hdr));
    assert_string_equal(hdr, "no-store");
    assert_true(ht_header(r, "Pragma", hdr, sizeof hdr));
    assert_string_equal(hdr, "no-cache");
}

/* Verifies the ID token's signature against /oidc/jwks (gh_jwt_verify) and returns its claims. */
static json_t *id_claims(fixture_t *f, const char *jwt)
{
    ht_response_t *r = &f->r;
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    assert_int_equal(gh_jwt_peek(jwt, strlen(jwt), kid, alg), 0);
    EXPECT(r, ht_get(&f->srv, "/oidc/jwks", NULL, r), 200);
    json_t *jwks = ht_jbody(r);
    assert_non_null(jwks);
    json_t *keys = json_object_get(jwks, "keys"), *k;
    size_t i;
    json_t *claims = NULL;
    json_array_foreach(keys, i, k)
    {
        const char *kk = json_string_value(json_object_get(k, "kid"));
        if (!kk || strcmp(kk, kid) != 0)
            continue;
        char *text = json_dumps(k, JSON_COMPACT);
        gh_jwt_key_t *key = NULL;
        assert_int_equal(gh_jwt_key_from_jwk(text, strlen(text), &key), 0);
        free(text);
        char *payload = NULL;
        size_t plen = 0;
        assert_int_equal(gh_jwt_verify(key, jwt, strlen(jwt), &payload, &plen), 0);
        /* a token altered by one byte of its payload is refused */
        char *bad = strdup(jwt);
        char *dot = strchr(bad, '.');
        dot[3] = dot[3] == 'A' ? 'B' : 'A';
        char *p2 = NULL;
        size_t l2 = 0;
        assert_int_not_equal(gh_jwt_verify(key, bad, strlen(bad), &p2, &l2), 0);
        free(bad);
        gh_jwt_key_free(&key);
        claims = json_loadb(payload, plen, 0, NULL);
        gh_jwt_free(payload);
        break;
    }
    json_decref(jwks);
    assert_non_null(claims);
    return claims;
}

static const char *jstr(json_t *j, const char *k)
{
    const char *s = json_string_value(json_object_get(j, k));
    if (!s)
        fail_msg("claim %s missing", k);
    return s;
}

/* The amr claim as "a,b,c". */
static void amr_text(json_t *claims, char *out, size_t cap)
{
    json_t *a = json_object_get(claims, "amr"), *v;
    size_t i, n = 0;
    out[0] = '\0';
    assert_true(json_is_array(a));
    json_array_foreach(a, i, v) n +=
        (size_t)snprintf(out + n, cap - n, "%s%s", i ? "," : "", json_string_value(v));
}

static double metric(fixture_t *f, const char *series)
{
    ht_response_t *r = &f->r;
    EXPECT(r, ht_get(&f->srv, "/metrics", NULL, r), 200);
    const char *p = r->body;
    size_t n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == r->body || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

static void user(fixture_t *f, const char *name, char token[64], long long *id)
{
    assert_int_equal(ht_register(&f->srv, name, PASSWORD, id), 201);
    assert_int_equal(ht_login(&f->srv, name, PASSWORD, token, NULL), 201);
}

/* ---- the flow ---- */

static void code_flow_end_to_end(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], code[128], buf[256];
    long long uid;
    user(f, "alice", session, &uid);
    client_t c;
    confidential(f, &c);
    pkce_t p;
    pkce(&p);

    get_code(f, &c, session, &p, "openid profile email", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    tokens_t t;
    read_tokens(f, &t);
    assert_true(ht_jstr(r, "scope", buf, sizeof buf));
    assert_string_equal(buf, "openid profile email");

    json_t *cl = id_claims(f, t.id_token);
    char sub[24];
    snprintf(sub, sizeof sub, "%lld", uid);
    assert_string_equal(jstr(cl, "iss"), f->issuer);
    assert_string_equal(jstr(cl, "sub"), sub);
    assert_string_equal(jstr(cl, "aud"), c.id);
    assert_string_equal(jstr(cl, "azp"), c.id);
    assert_string_equal(jstr(cl, "nonce"), "nonce-1");
    assert_string_equal(jstr(cl, "acr"), "urn:gatehouse:pwd");
    assert_string_equal(jstr(cl, "preferred_username"), "alice");
    amr_text(cl, buf, sizeof buf);
    assert_string_equal(buf, "pwd");
    json_int_t exp = json_integer_value(json_object_get(cl, "exp"));
    json_int_t iat = json_integer_value(json_object_get(cl, "iat"));
    json_int_t auth_time = json_integer_value(json_object_get(cl, "auth_time"));
    assert_int_equal(exp - iat, 600);
    assert_true(auth_time <= iat && auth_time > iat - 60);
    json_decref(cl);

    /* userinfo with the access token */
    EXPECT(r, ht_get(&f->srv, "/oidc/userinfo", t.access, r), 200);
    assert_true(ht_jstr(r, "sub", buf, sizeof buf));
    assert_string_equal(buf, sub);
    assert_true(ht_jstr(r, "preferred_username", buf, sizeof buf));
    assert_string_equal(buf, "alice");
    /* introspection (client_secret_basic) */
    char body[512], auth[512];
    basic(c.id, c.secret, auth);
    snprintf(body, sizeof body, "token=%s", t.access);
    EXPECT(r, post_form(f, "/oidc/introspect", body, auth), 200);
    bool active = false;
    assert_true(ht_jbool(r, "active", &active) && active);
    assert_true(ht_jstr(r, "client_id", buf, sizeof buf));
    assert_string_equal(buf, c.id);
    assert_true(ht_jstr(r, "username", buf, sizeof buf));
    assert_string_equal(buf, "alice");
    assert_true(ht_jstr(r, "token_type", buf, sizeof buf));
    assert_string_equal(buf, "Bearer");
    assert_true(ht_jstr(r, "sub", buf, sizeof buf));
    assert_string_equal(buf, sub);

    /* refresh rotates both tokens; the old access token dies with the rotation */
    EXPECT(r, refresh(f, &c, t.refresh), 200);
    tokens_t t2;
    read_tokens(f, &t2);
    assert_string_not_equal(t2.refresh, t.refresh);
    assert_string_not_equal(t2.access, t.access);
    json_t *cl2 = id_claims(f, t2.id_token);
    assert_string_equal(jstr(cl2, "sub"), sub);
    assert_null(json_object_get(cl2, "nonce"));
    json_decref(cl2);
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t.access, r), 401, "invalid_token");
    assert_true(ht_header(r, "WWW-Authenticate", buf, sizeof buf));
    assert_non_null(strstr(buf, "invalid_token"));
    EXPECT(r, ht_get(&f->srv, "/oidc/userinfo", t2.access, r), 200);

    /* revoke (RFC 7009) the refresh token: the family and its access token end */
    snprintf(body, sizeof body, "token=%s&token_type_hint=refresh_token", t2.refresh);
    EXPECT(r, post_form(f, "/oidc/revoke", body, auth), 200);
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t2.access, r), 401, "invalid_token");
    snprintf(body, sizeof body, "token=%s", t2.refresh);
    EXPECT(r, post_form(f, "/oidc/introspect", body, auth), 200);
    assert_true(ht_jbool(r, "active", &active) && !active);
    EXPECT_OAUTH(r, refresh(f, &c, t2.refresh), 400, "invalid_grant");
    /* unknown tokens: 200 all the same */
    EXPECT(r, post_form(f, "/oidc/revoke", "token=nonsense", auth), 200);

    /* RP-initiated logout with id_token_hint: the session and its families end, back to the RP */
    get_code(f, &c, session, &p, "openid", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    tokens_t t3;
    read_tokens(f, &t3);
    char path[8192], hint[4200], bye[64];
    url_enc(t3.id_token, hint, sizeof hint);
    url_enc(RP_BYE, bye, sizeof bye);
    snprintf(path, sizeof path,
             "/oidc/logout?id_token_hint=%s&post_logout_redirect_uri=%s&state=bye-1", hint, bye);
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", buf, sizeof buf));
    assert_string_equal(buf, RP_BYE "?state=bye-1");
    EXPECT(r, ht_get(&f->srv, "/v1/session", session, r), 401);
    EXPECT_OAUTH(r, refresh(f, &c, t3.refresh), 400, "invalid_grant");
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t3.access, r), 401, "invalid_token");
    /* an unregistered post-logout URI: a page, no redirect */
    snprintf(path, sizeof path,
             "/oidc/logout?client_id=%s&post_logout_redirect_uri=https%%3A%%2F%%2Fevil.example%%2F",
             c.id);
    EXPECT(r, get_cookie(f, path, NULL), 200);
    assert_false(ht_header(r, "Location", buf, sizeof buf));
    assert_non_null(strstr(r->body, "signed out"));

    /* without an id_token_hint the person is asked first (any site could link here) */
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, session, NULL), 201);
    snprintf(path, sizeof path, "/oidc/logout?client_id=%s&post_logout_redirect_uri=%s&state=s2",
             c.id, bye);
    EXPECT(r, get_cookie(f, path, session), 200);
    assert_false(ht_header(r, "Location", buf, sizeof buf));
    const char *cs = strstr(r->body, "name=\"csrf\" value=\"");
    assert_non_null(cs);
    char csrf[33], form[512], cookie[128];
    snprintf(csrf, sizeof csrf, "%.32s", cs + 19);
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", session);
    EXPECT(r, ht_get(&f->srv, "/v1/session", session, r), 200);
    snprintf(form, sizeof form, "client_id=%s&post_logout_redirect_uri=%s&state=s2", c.id, bye);
    EXPECT(r, post_form(f, "/oidc/logout", form, cookie), 200); /* no CSRF field: asked again */
    EXPECT(r, ht_get(&f->srv, "/v1/session", session, r), 200);
    snprintf(form, sizeof form, "csrf=%s&client_id=%s&post_logout_redirect_uri=%s&state=s2", csrf,
             c.id, bye);
    EXPECT(r, post_form(f, "/oidc/logout", form, cookie), 302);
    assert_true(ht_header(r, "Location", buf, sizeof buf));
    assert_string_equal(buf, RP_BYE "?state=s2");
    EXPECT(r, ht_get(&f->srv, "/v1/session", session, r), 401);

    /* logging out of Gatehouse (DELETE /v1/session) ends what was issued in that session */
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, session, NULL), 201);
    get_code(f, &c, session, &p, "openid", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    read_tokens(f, &t3);
    EXPECT(r, ht_delete(&f->srv, "/v1/session", session, r), 204);
    EXPECT_OAUTH(r, refresh(f, &c, t3.refresh), 400, "invalid_grant");
    /* a code issued before a logout starts no grant after it */
    assert_int_equal(ht_login(&f->srv, "alice", PASSWORD, session, NULL), 201);
    get_code(f, &c, session, &p, "openid", code);
    EXPECT(r, ht_delete(&f->srv, "/v1/session", session, r), 204);
    EXPECT_OAUTH(r, exchange(f, &c, code, p.verifier), 400, "invalid_grant");

    /* audit and metrics */
    assert_true(metric(f, "gatehouse_oidc_token_grants_total{grant_type=\"authorization_code\","
                          "result=\"ok\"}") == 3);
    assert_true(metric(f, "gatehouse_oidc_token_grants_total{grant_type=\"authorization_code\","
                          "result=\"invalid_grant\"}") == 1);
    assert_true(metric(f, "gatehouse_oidc_authorizations_total{result=\"code\"}") == 4);
    /* every route has its own label (none counted as "unmatched") */
    assert_true(metric(f, "gatehouse_http_requests_total{route=\"/oidc/token\",method=\"POST\","
                          "code=\"200\"}") >= 4);
    assert_true(metric(f, "gatehouse_http_requests_total{route=\"/oidc/authorize\",method=\"GET\","
                          "code=\"302\"}") >= 4);
    EXPECT(r, ht_get(&f->srv, "/v1/admin/audit?type=oidc.token", ADMIN, r), 200);
    assert_true(ht_jsize(r, "events") >= 3);
    EXPECT(r, ht_get(&f->srv, "/v1/admin/audit?type=oidc.revoked", ADMIN, r), 200);
    assert_true(ht_jsize(r, "events") >= 1);
}

/* No session: the login page (with rd), then back to the request; prompt=login forces a new
 * login; prompt=none answers login_required to the client. */
static void login_round_trip_and_prompts(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], loc[4096], rd[4096], path[2048], buf[256];
    long long uid;
    user(f, "bob", session, &uid);
    client_t c;
    confidential(f, &c);
    pkce_t p;
    pkce(&p);
    authorize_path(path, sizeof path, c.id, RP, "openid", &p, NULL);

    EXPECT(r, get_cookie(f, path, NULL), 303);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(strncmp(loc, "/login?rd=", 10) == 0);
    assert_true(query_param(loc, "rd", rd, sizeof rd));
    assert_true(strncmp(rd, "/oidc/authorize?", 16) == 0);
    /* the login page carries it, and the form login comes back to it */
    EXPECT(r, get_cookie(f, loc, NULL), 200);
    char enc[8192];
    url_enc(rd, enc, sizeof enc);
    char body[9000];
    snprintf(body, sizeof body, "username=bob&password=%s&rd=%s", "correct+horse+battery", enc);
    EXPECT(r, post_form(f, "/v1/sessions", body, NULL), 303);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_string_equal(loc, rd);
    char cookie[512], fresh[64];
    assert_true(ht_header(r, "Set-Cookie", cookie, sizeof cookie));
    assert_true(strncmp(cookie, "gatehouse_session=", 18) == 0);
    snprintf(fresh, sizeof fresh, "%.*s", (int)strcspn(cookie + 18, ";"), cookie + 18);
    EXPECT(r, get_cookie(f, loc, fresh), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "code", buf, sizeof buf));

    /* prompt=none without a session: login_required on the redirect, with the state */
    authorize_path(path, sizeof path, c.id, RP, "openid", &p, "prompt=none");
    EXPECT(r, get_cookie(f, path, NULL), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(strncmp(loc, RP "?", strlen(RP) + 1) == 0);
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "login_required");
    assert_true(query_param(loc, "state", buf, sizeof buf));
    assert_string_equal(buf, "st-1");
    assert_false(query_param(loc, "code", buf, sizeof buf));
    /* ... and with one: a code at once */
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "code", buf, sizeof buf));

    /* prompt=login: even with a session, the login page; the way back asks for a fresh one */
    authorize_path(path, sizeof path, c.id, RP, "openid", &p, "prompt=login");
    ht_sleep_ms(25); /* the clock is coarse (a few ms a tick): the old session is older */
    EXPECT(r, get_cookie(f, path, session), 303);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "rd", rd, sizeof rd));
    assert_null(strstr(rd, "prompt=login"));
    assert_non_null(strstr(rd, "gh_fresh="));
    EXPECT(r, get_cookie(f, rd, session), 303); /* the old session is not enough */
    ht_sleep_ms(25);                            /* and the new one newer */
    assert_int_equal(ht_login(&f->srv, "bob", PASSWORD, fresh, NULL), 201);
    EXPECT(r, get_cookie(f, rd, fresh), 302); /* a login after the request is */
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "code", buf, sizeof buf));
    /* the same request as a POSTed form (OpenID Connect Core 3.1.2.1) */
    char ru[128], form[1024], cookie_h[128];
    url_enc(RP, ru, sizeof ru);
    snprintf(form, sizeof form,
             "response_type=code&client_id=%s&redirect_uri=%s&scope=openid&state=post-1"
             "&code_challenge=%s&code_challenge_method=S256",
             c.id, ru, p.challenge);
    snprintf(cookie_h, sizeof cookie_h, "Cookie: gatehouse_session=%s", fresh);
    EXPECT(r, post_form(f, "/oidc/authorize", form, cookie_h), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "code", buf, sizeof buf));
    assert_true(query_param(loc, "state", buf, sizeof buf));
    assert_string_equal(buf, "post-1");
    assert_true(metric(f, "gatehouse_oidc_authorizations_total{result=\"login_required\"}") == 1);
    assert_true(metric(f, "gatehouse_oidc_authorizations_total{result=\"login\"}") == 3);
}

static void refused_requests(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], code[128], loc[2048], path[2048], buf[256], body[1024], auth[512];
    long long uid;
    user(f, "carol", session, &uid);
    client_t c, pub;
    confidential(f, &c);
    add_client(f, "{\"name\":\"Mobile\",\"redirect_uris\":[\"" RP "\"],\"public\":true}", &pub);
    assert_string_equal(pub.secret, "");
    pkce_t p;
    pkce(&p);

    /* redirect URI mismatch: a page (400), never a redirect */
    authorize_path(path, sizeof path, c.id, "https://evil.example/cb", "openid", &p, NULL);
    EXPECT(r, get_cookie(f, path, session), 400);
    assert_false(ht_header(r, "Location", buf, sizeof buf));
    assert_non_null(strstr(r->body, "redirect_uri"));
    /* unknown client: the same */
    authorize_path(path, sizeof path, "no-such-client", RP, "openid", &p, NULL);
    EXPECT(r, get_cookie(f, path, session), 400);
    assert_false(ht_header(r, "Location", buf, sizeof buf));
    /* a repeated client_id: the page too */
    snprintf(path, sizeof path, "/oidc/authorize?client_id=%s&client_id=%s&response_type=code",
             c.id, c.id);
    EXPECT(r, get_cookie(f, path, session), 400);
    assert_false(ht_header(r, "Location", buf, sizeof buf));
    /* other errors go back to the client: a public client without PKCE, a repeated state */
    authorize_path(path, sizeof path, pub.id, RP, "openid", NULL, NULL);
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "invalid_request");
    authorize_path(path, sizeof path, c.id, RP, "openid", &p, "state=again");
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "invalid_request");
    assert_false(query_param(loc, "state", buf, sizeof buf));
    authorize_path(path, sizeof path, c.id, RP, "profile", &p, NULL);
    EXPECT(r, get_cookie(f, path, session), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "invalid_scope");

    /* code replay: invalid_grant, and the first grant's refresh token is dead */
    get_code(f, &c, session, &p, "openid", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    tokens_t t;
    read_tokens(f, &t);
    EXPECT_OAUTH(r, exchange(f, &c, code, p.verifier), 400, "invalid_grant");
    EXPECT_OAUTH(r, refresh(f, &c, t.refresh), 400, "invalid_grant");
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t.access, r), 401, "invalid_token");

    /* wrong and missing PKCE verifier */
    pkce_t other;
    pkce(&other);
    get_code(f, &c, session, &p, "openid", code);
    EXPECT_OAUTH(r, exchange(f, &c, code, other.verifier), 400, "invalid_grant");
    get_code(f, &c, session, &p, "openid", code);
    EXPECT_OAUTH(r, exchange(f, &c, code, NULL), 400, "invalid_grant");
    /* a public client with its verifier, by client_id alone */
    get_code(f, &pub, session, &p, "openid", code);
    EXPECT(r, exchange(f, &pub, code, p.verifier), 200);

    /* expired code */
    get_code(f, &c, session, &p, "openid", code);
    ht_sleep_ms(CODE_TTL_MS + 200);
    EXPECT_OAUTH(r, exchange(f, &c, code, p.verifier), 400, "invalid_grant");

    /* wrong client secret: 401 invalid_client with Basic's challenge */
    get_code(f, &c, session, &p, "openid", code);
    client_t wrong = c;
    snprintf(wrong.secret, sizeof wrong.secret, "not-the-secret");
    EXPECT_OAUTH(r, exchange(f, &wrong, code, p.verifier), 401, "invalid_client");
    assert_true(ht_header(r, "WWW-Authenticate", buf, sizeof buf));
    assert_true(strncmp(buf, "Basic", 5) == 0);
    assert_true(ht_header(r, "Cache-Control", buf, sizeof buf));
    assert_string_equal(buf, "no-store");
    /* the code is still good for its own client after that */
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    read_tokens(f, &t);

    /* refresh reuse: the whole family is revoked, and counted */
    EXPECT(r, refresh(f, &c, t.refresh), 200);
    tokens_t t2;
    read_tokens(f, &t2);
    EXPECT_OAUTH(r, refresh(f, &c, t.refresh), 400, "invalid_grant");
    EXPECT_OAUTH(r, refresh(f, &c, t2.refresh), 400, "invalid_grant");
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t2.access, r), 401, "invalid_token");
    assert_true(metric(f, "gatehouse_oidc_refresh_reuse_total") == 1);
    EXPECT(r, ht_get(&f->srv, "/v1/admin/audit?type=oidc.refresh_reuse", ADMIN, r), 200);
    assert_int_equal(ht_jsize(r, "events"), 1);

    /* the token endpoint's own refusals */
    basic(c.id, c.secret, auth);
    const char *json_ct[] = {"Content-Type: application/json", auth, NULL};
    EXPECT_OAUTH(r, ht_request(&f->srv, "POST", "/oidc/token", json_ct, "{}", 2, r), 415,
                 "invalid_request");
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", "grant_type=password&username=x", auth), 400,
                 "unsupported_grant_type");
    snprintf(body, sizeof body, "grant_type=refresh_token&refresh_token=a&refresh_token=b");
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, auth), 400, "invalid_request");
    snprintf(body, sizeof body, "grant_type=authorization_code&code=ghc_x&client_secret=%s",
             c.secret);
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, auth), 400, "invalid_request");
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", "grant_type=authorization_code&code=x", NULL), 401,
                 "invalid_client");
    /* introspection needs a confidential client */
    snprintf(body, sizeof body, "token=x&client_id=%s", pub.id);
    EXPECT_OAUTH(r, post_form(f, "/oidc/introspect", body, NULL), 401, "invalid_client");
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", NULL, r), 401, "invalid_token");
    assert_true(ht_header(r, "WWW-Authenticate", buf, sizeof buf));
    assert_string_equal(buf, "Bearer realm=\"gatehouse\""); /* no token: no error code */
    assert_true(metric(f, "gatehouse_oidc_token_grants_total{grant_type=\"authorization_code\","
                          "result=\"invalid_grant\"}") >= 4);
}

/* A client added with consent: the page, Allow (remembered), Deny. */
static void consent_page(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], path[2048], loc[2048], buf[256], csrf[64];
    long long uid;
    user(f, "dave", session, &uid);
    client_t c;
    add_client(f, "{\"name\":\"Partner <App>\",\"redirect_uris\":[\"" RP "\"],\"consent\":true}",
               &c);
    pkce_t p;
    pkce(&p);
    authorize_path(path, sizeof path, c.id, RP, "openid email", &p, NULL);
    char none[2100];
    snprintf(none, sizeof none, "%s&prompt=none", path);
    EXPECT(r, get_cookie(f, none, session), 302); /* prompt=none cannot ask */
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "consent_required");
    EXPECT(r, get_cookie(f, path, session), 200);
    assert_non_null(strstr(r->body, "Partner &lt;App&gt;"));
    assert_non_null(strstr(r->body, "(email)"));
    const char *cs = strstr(r->body, "name=\"csrf\" value=\"");
    assert_non_null(cs);
    snprintf(csrf, sizeof csrf, "%.32s", cs + 19);
    /* the consent form as the page posts it */
    char ru[256], body[2048], cookie[128];
    url_enc(RP, ru, sizeof ru);
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", session);
    const char *h[] = {"Content-Type: application/x-www-form-urlencoded", cookie, NULL};
    int n = snprintf(body, sizeof body,
                     "csrf=%s&client_id=%s&redirect_uri=%s&response_type=code&scope=openid+email"
                     "&state=st-1&nonce=nonce-1&code_challenge=%s&code_challenge_method=S256",
                     csrf, c.id, ru, p.challenge);
    /* without the CSRF token: refused */
    EXPECT(r, ht_request(&f->srv, "POST", "/oidc/consent", h, body + 38, strlen(body + 38), r),
           403);
    snprintf(body + n, sizeof body - (size_t)n, "&decision=deny");
    EXPECT(r, ht_request(&f->srv, "POST", "/oidc/consent", h, body, strlen(body), r), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "error", buf, sizeof buf));
    assert_string_equal(buf, "access_denied");
    snprintf(body + n, sizeof body - (size_t)n, "&decision=allow");
    EXPECT(r, ht_request(&f->srv, "POST", "/oidc/consent", h, body, strlen(body), r), 302);
    assert_true(ht_header(r, "Location", loc, sizeof loc));
    assert_true(query_param(loc, "code", buf, sizeof buf));
    /* remembered: the next request gets its code at once */
    char code[128];
    get_code(f, &c, session, &p, "openid email", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    tokens_t t;
    read_tokens(f, &t);
    assert_true(metric(f, "gatehouse_oidc_consents") == 1);
    assert_true(metric(f, "gatehouse_oidc_authorizations_total{result=\"denied\"}") == 1);
    assert_true(metric(f, "gatehouse_oidc_authorizations_total{result=\"consent\"}") == 1);
    /* deleting the client ends its grants and consents at once */
    EXPECT(r, ht_get(&f->srv, "/oidc/userinfo", t.access, r), 200);
    snprintf(path, sizeof path, "/v1/admin/clients/%s", c.id);
    EXPECT(r, ht_delete(&f->srv, path, ADMIN, r), 204);
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t.access, r), 401, "invalid_token");
    assert_true(metric(f, "gatehouse_oidc_consents") == 0);
    assert_true(metric(f, "gatehouse_oidc_families") == 0);
}

/* `gatehouse client del` works on the store, not through the node: the grants the node holds for
 * that client end at their next use (userinfo, introspection), and the client can no longer
 * refresh. */
static void a_client_deleted_from_the_command_line_loses_its_tokens(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], code[128];
    long long uid;
    user(f, "alice", session, &uid);
    client_t c, other;
    confidential(f, &c);
    confidential(f, &other);
    tokens_t t[2]; /* two grants: one ends at introspection, the other at userinfo */
    for (int i = 0; i < 2; i++) {
        pkce_t p;
        pkce(&p);
        get_code(f, &c, session, &p, "openid", code);
        EXPECT(r, exchange(f, &c, code, p.verifier), 200);
        read_tokens(f, &t[i]);
        EXPECT(r, ht_get(&f->srv, "/oidc/userinfo", t[i].access, r), 200);
    }
    assert_true(metric(f, "gatehouse_oidc_families") == 2);

    ht_run_t *run = calloc(1, sizeof *run);
    assert_non_null(run);
    /* `--` first: an id may begin with a dash (older ones did) */
    assert_int_equal(
        ht_run(run, NULL, NULL, "client", "del", "--", c.id, "--data-dir", f->srv.dir, NULL), 0);
    if (run->status != 0)
        fail_msg("client del: %d %s", run->status, run->err);
    free(run);

    char body[512], auth[512];
    basic(other.id, other.secret, auth);
    snprintf(body, sizeof body, "token=%s", t[0].access);
    EXPECT(r, post_form(f, "/oidc/introspect", body, auth), 200);
    bool active = true;
    assert_true(ht_jbool(r, "active", &active) && !active);
    assert_true(metric(f, "gatehouse_oidc_families") == 1); /* ended, not only refused */
    EXPECT_OAUTH(r, ht_get(&f->srv, "/oidc/userinfo", t[1].access, r), 401, "invalid_token");
    assert_true(metric(f, "gatehouse_oidc_families") == 0);
    EXPECT_OAUTH(r, refresh(f, &c, t[1].refresh), 401, "invalid_client");
}

/* A user with TOTP signs in with both factors: amr ["pwd","otp","mfa"], acr mfa. */
static void second_factor_amr(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, NULL);
    char session[64], secret[64], path[128], body[256], code6[7], pending[64], code[128];
    long long uid, fid;
    user(f, "erin", session, &uid);
    EXPECT(r,
           ht_json(&f->srv, "POST", "/v1/factors/totp", session,
                   "{\"current_password\":\"" PASSWORD "\"}", r),
           201);
    assert_true(ht_jint(r, "id", &fid));
    assert_true(ht_jstr(r, "secret", secret, sizeof secret));
    snprintf(path, sizeof path, "/v1/factors/totp/%lld/confirm", fid);
    ht_totp(secret, 0, code6);
    snprintf(body, sizeof body, "{\"code\":\"%s\"}", code6);
    EXPECT(r, ht_json(&f->srv, "POST", path, session, body, r), 200);
    EXPECT(r,
           ht_json(&f->srv, "POST", "/v1/sessions", NULL,
                   "{\"username\":\"erin\",\"password\":\"" PASSWORD "\"}", r),
           202);
    assert_true(ht_jstr(r, "pending", pending, sizeof pending));
    ht_totp(secret, 30, code6);
    snprintf(body, sizeof body, "{\"pending\":\"%s\",\"method\":\"totp\",\"code\":\"%s\"}", pending,
             code6);
    EXPECT(r, ht_json(&f->srv, "POST", "/v1/sessions/mfa", NULL, body, r), 201);
    char mfa_session[64];
    assert_true(ht_jstr(r, "token", mfa_session, sizeof mfa_session));
    client_t c;
    confidential(f, &c);
    pkce_t p;
    pkce(&p);
    get_code(f, &c, mfa_session, &p, "openid", code);
    EXPECT(r, exchange(f, &c, code, p.verifier), 200);
    tokens_t t;
    read_tokens(f, &t);
    json_t *cl = id_claims(f, t.id_token);
    char amr[64];
    amr_text(cl, amr, sizeof amr);
    assert_string_equal(amr, "pwd,otp,mfa");
    assert_string_equal(jstr(cl, "acr"), "urn:gatehouse:mfa");
    json_decref(cl);
    /* a password change ends every grant of the user */
    EXPECT(r,
           ht_json(&f->srv, "PUT", "/v1/password", mfa_session,
                   "{\"current_password\":\"" PASSWORD "\",\"new_password\":\"another good "
                   "password\"}",
                   r),
           204);
    EXPECT_OAUTH(r, refresh(f, &c, t.refresh), 400, "invalid_grant");
}

/* Failed client authentications spend the address's login budget (--throttle-ip); a right
 * secret gives its attempt back. */
static void client_authentication_is_throttled(void **state)
{
    fixture_t *f = *state;
    ht_response_t *r = &f->r;
    start(f, "--throttle-ip", "3/1m", NULL);
    client_t c;
    confidential(f, &c);
    char auth[512], good[512], buf[32];
    basic(c.id, c.secret, good);
    const char *body = "grant_type=refresh_token&refresh_token=ghr_nothing";
    for (int i = 0; i < 5; i++) /* right secrets cost nothing */
        EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, good), 400, "invalid_grant");
    basic(c.id, "wrong-secret", auth);
    for (int i = 0; i < 3; i++)
        EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, auth), 401, "invalid_client");
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, auth), 429, "slow_down");
    assert_true(ht_header(r, "Retry-After", buf, sizeof buf));
    EXPECT_OAUTH(r, post_form(f, "/oidc/token", body, good), 429, "slow_down");
    /* and the password logins of that address with them */
    EXPECT(r, ht_login(&f->srv, "nobody", PASSWORD, NULL, NULL), 429);
}

/* ---- memory: abandoned authorizations ---- */

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return sz * n;
}

static long long codes_bytes(fixture_t *f, long long *objects)
{
    ht_response_t *r = &f->r;
    EXPECT(r, ht_get(&f->srv, "/debug/memory", ADMIN, r), 200);
    long long b = -1;
    assert_true(ht_jint(r, "components.oidc_codes.bytes", &b));
    assert_true(ht_jint(r, "components.oidc_codes.objects", objects));
    return b;
}

static void abandoned_authorizations_return_to_baseline(void **state)
{
    fixture_t *f = *state;
    start(f, "--max-oidc-codes", "200000", NULL);
    char session[64], path[1024], url[1200], cookie[128];
    long long uid, obj0, obj;
    user(f, "frank", session, &uid);
    client_t c;
    confidential(f, &c);
    pkce_t p;
    pkce(&p);
    long long base = codes_bytes(f, &obj0);

    authorize_path(path, sizeof path, c.id, RP, "openid", &p, NULL);
    snprintf(url, sizeof url, "http://%s%s", f->srv.addr, path);
    snprintf(cookie, sizeof cookie, "gatehouse_session=%s", session);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_COOKIE, cookie);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    long long t0 = ht_now_ms(), peak = 0;
    double held = 0;
    int ok = 0;
    for (int i = 0; i < 100000 && ht_now_ms() - t0 < 120000; i++) {
        long status = 0;
        if (curl_easy_perform(h) == CURLE_OK &&
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status == 302)
            ok++;
        if (i == 20000) { /* mid-run: codes are held and accounted */
            peak = codes_bytes(f, &obj);
            held = metric(f, "gatehouse_oidc_codes");
        }
    }
    curl_easy_cleanup(h);
    long long took = ht_now_ms() - t0;
    printf("# 100000 authorizations: %d codes issued in %lld ms\n", ok, took);
    assert_int_equal(ok, 100000);
    assert_true(peak > base);
    /* every code expires 2 s after it was made; the janitor sweeps them */
    long long now_b = 0;
    for (long long end = ht_now_ms() + CODE_TTL_MS + 8000; ht_now_ms() < end;) {
        now_b = codes_bytes(f, &obj);
        if (now_b == base && obj == obj0)
            break;
        ht_sleep_ms(200);
    }
    printf("# oidc_codes: baseline %lld bytes, mid-run %lld for %.0f codes (%.0f bytes a code), "
           "after expiry %lld (%lld objects)\n",
           base, peak, held, held > 0 ? (double)(peak - base) / held : 0, now_b, obj);
    assert_int_equal(now_b, base);
    assert_int_equal(obj, obj0);
    assert_true(metric(f, "gatehouse_oidc_codes") == 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(code_flow_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(login_round_trip_and_prompts, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(consent_page, setup, teardown),
        cmocka_unit_test_setup_teardown(a_client_deleted_from_the_command_line_loses_its_tokens,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(second_factor_amr, setup, teardown),
        cmocka_unit_test_setup_teardown(client_authentication_is_throttled, setup, teardown),
        cmocka_unit_test_setup_teardown(abandoned_authorizations_return_to_baseline, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
