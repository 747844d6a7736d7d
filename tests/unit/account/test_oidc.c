/*
 * test_oidc.c — the OpenID Connect protocol's workflows (account/oidc.h) without HTTP, over a
 * real SQLite user store, the memory session store, the memory grant store and a real key set:
 * the authorization decision's order (the page's errors before any redirect), PKCE, prompts and
 * the fresh-login marker, consent; the code grant (redirect binding, verifier, replay revoking
 * what the code issued); refresh rotation and reuse; revocation; userinfo and introspection;
 * ending sessions and users ends their grants; the tokens' strict form; amr and acr.
 */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sodium.h>

#include "account/oidc.h"
#include "common/base64url.h"
#include "common/clock.h"
#include "mem/mem.h"

#define HOUR (3600 * 1000LL)
#define RP "https://rp.example/cb"

typedef struct {
    char dir[256];
    gh_user_store_t *users;
    gh_session_store_t *sessions;
    gh_grant_store_t *grants;
    gh_oidc_keys_t *keys;
    uint8_t key[GH_SECRET_KEY_LEN];
    gh_account_t a;
    gh_oidc_t o;
    gh_oidc_client_t conf, pub;
    char secret[GH_OIDC_SECRET_LEN + 1];
    gh_oidc_session_t s;
    uint8_t session_hash[GH_TOKEN_HASH_LEN];
    unsigned reuse;
} fixture_t;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void count_reuse(void *ctx)
{
    ((fixture_t *)ctx)->reuse++;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    snprintf(f->dir, sizeof f->dir, "%s/gh-oidc-flow-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    gh_session_limits_t sl = {.session_ttl_ms = 12 * HOUR,
                              .idle_ttl_ms = HOUR,
                              .max_per_user = 10,
                              .policy = GH_POLICY_EVICT_IDLE};
    gh_grant_limits_t gl = {.max_codes = 100,
                            .max_families = 100,
                            .max_per_user = 10,
                            .refresh_ttl_ms = 24 * HOUR,
                            .policy = GH_POLICY_EVICT_IDLE};
    randombytes_buf(f->key, sizeof f->key);
    if (!mkdtemp(f->dir) || gh_user_sqlite_open(f->dir, &f->users) != 0 ||
        gh_session_memory_open(&sl, &f->sessions) != 0 ||
        gh_grant_memory_open(&gl, &f->grants) != 0 ||
        gh_oidc_keys_open(f->users, f->key, 0, HOUR, &f->keys) != 0)
        return -1;
    f->a = (gh_account_t){.users = f->users,
                          .sessions = f->sessions,
                          .max_sessions_per_user = 10,
                          .operators = "",
                          .secret_key = f->key,
                          .grants = f->grants};
    f->o = (gh_oidc_t){.a = &f->a,
                       .grants = f->grants,
                       .keys = f->keys,
                       .issuer = "https://login.example",
                       .access_ttl_ms = 600000,
                       .code_ttl_ms = GH_GRANT_CODE_TTL_MS,
                       .count_reuse = count_reuse,
                       .count_ctx = f};
    const char *why = NULL;
    snprintf(f->conf.name, sizeof f->conf.name, "Wiki");
    snprintf(f->conf.redirect_uris[0], sizeof f->conf.redirect_uris[0], RP);
    f->conf.n_redirect = 1;
    if (gh_oidc_client_add(f->users, f->key, &f->conf, false, gh_clock_now_ms(), f->secret, &why) !=
        0)
        return -1;
    char none[GH_OIDC_SECRET_LEN + 1];
    snprintf(f->pub.name, sizeof f->pub.name, "Mobile");
    snprintf(f->pub.redirect_uris[0], sizeof f->pub.redirect_uris[0], RP);
    f->pub.n_redirect = 1;
    f->pub.is_public = true;
    if (gh_oidc_client_add(f->users, f->key, &f->pub, false, gh_clock_now_ms(), none, &why) != 0)
        return -1;
    /* a signed-in user */
    char token[GH_TOKEN_LEN + 1];
    if (gh_user_create(f->users, "alice", "not-a-hash", gh_clock_now_ms(), &f->s.user) != 0)
        return -1;
    gh_token_new(token, f->session_hash);
    if (gh_session_create_amr(f->sessions, f->s.user.id, f->session_hash, NULL,
                              GH_AMR_PWD | GH_AMR_OTP, gh_clock_now_ms(), &f->s.info) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    gh_oidc_keys_close(&f->keys);
    gh_grant_destroy(&f->grants);
    gh_session_store_destroy(&f->sessions);
    gh_user_store_close(&f->users);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

typedef struct {
    char verifier[64], challenge[64];
} pkce_t;

/* Client ids never begin with '-' (they are typed after `gatehouse client del`): of 300 new
 * ones, some 99% of the time at least one would if nothing prevented it. */
static void client_ids_never_begin_with_a_dash(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 300; i++) {
        gh_oidc_client_t c = f->pub;
        char none[GH_OIDC_SECRET_LEN + 1];
        const char *why = NULL;
        assert_int_equal(gh_oidc_client_add(f->users, f->key, &c, false, 0, none, &why), 0);
        assert_int_equal(strlen(c.client_id), 22);
        if (c.client_id[0] == '-')
            fail_msg("client id %s", c.client_id);
    }
}

static void pkce(pkce_t *p)
{
    uint8_t raw[32], d[32];
    randombytes_buf(raw, sizeof raw);
    gh_base64url_encode(raw, sizeof raw, p->verifier);
    crypto_hash_sha256(d, (const uint8_t *)p->verifier, strlen(p->verifier));
    gh_base64url_encode(d, sizeof d, p->challenge);
}

static gh_oidc_authz_request_t request(const gh_oidc_client_t *c, const pkce_t *p)
{
    return (gh_oidc_authz_request_t){.client_id = c->client_id,
                                     .redirect_uri = RP,
                                     .response_type = "code",
                                     .scope = "openid profile",
                                     .state = "st",
                                     .nonce = "n1",
                                     .code_challenge = p ? p->challenge : NULL,
                                     .code_challenge_method = p ? "S256" : NULL};
}

static void authorize(fixture_t *f, const gh_oidc_authz_request_t *q, bool signed_in,
                      gh_oidc_authz_t *d)
{
    assert_int_equal(gh_oidc_authorize(&f->o, q, signed_in ? &f->s : NULL, 0, gh_clock_now_ms(), d),
                     0);
}

static void the_decision_refuses_in_order(void **state)
{
    fixture_t *f = *state;
    pkce_t p;
    pkce(&p);
    gh_oidc_authz_t *d = malloc(sizeof *d);
    gh_oidc_authz_request_t q = request(&f->conf, &p);
    /* client and redirect first: a page, never a redirect */
    q.client_id = "unknown";
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_PAGE_ERROR);
    q = request(&f->conf, &p);
    q.redirect_uri = RP "/";
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_PAGE_ERROR);
    q = request(&f->conf, &p);
    q.bad_client = true;
    q.response_type = "token"; /* even with another error: the page wins */
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_PAGE_ERROR);
    /* then the client's errors, to its redirect_uri */
    q = request(&f->conf, &p);
    q.response_type = "token";
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_REDIRECT_ERROR);
    assert_string_equal(d->error, "unsupported_response_type");
    q = request(&f->conf, &p);
    q.scope = "profile email";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_scope");
    q = request(&f->conf, &p);
    q.code_challenge_method = "plain";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    q = request(&f->pub, NULL); /* a public client without PKCE */
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    q = request(&f->conf, &p);
    q.prompt = "none login";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    q = request(&f->conf, &p);
    q.invalid = "is given more than once";
    q.invalid_param = "nonce";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    assert_string_equal(d->description, "nonce is given more than once");
    q = request(&f->conf, &p);
    q.request_object = true;
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "request_not_supported");
    /* a confidential client may skip PKCE */
    q = request(&f->conf, NULL);
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_CODE);
    free(d);
}

static void login_prompts_and_the_fresh_marker(void **state)
{
    fixture_t *f = *state;
    pkce_t p;
    pkce(&p);
    gh_oidc_authz_t *d = malloc(sizeof *d);
    gh_oidc_authz_request_t q = request(&f->conf, &p);
    authorize(f, &q, false, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_LOGIN);
    assert_int_equal(d->fresh_after_ms, 0);
    q.prompt = "none";
    authorize(f, &q, false, d);
    assert_string_equal(d->error, "login_required");
    q.prompt = "login";
    int64_t now = gh_clock_now_ms() + 1;
    assert_int_equal(gh_oidc_authorize(&f->o, &q, &f->s, 0, now, d), 0);
    assert_int_equal(d->next, GH_OIDC_NEXT_LOGIN);
    assert_int_equal(d->fresh_after_ms, now);
    /* the way back: the marker instead of prompt=login; an older session is not enough, a
     * session made after it is */
    char marker[24];
    snprintf(marker, sizeof marker, "%lld", (long long)now);
    q.prompt = NULL;
    q.fresh = marker;
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_LOGIN);
    snprintf(marker, sizeof marker, "%lld", (long long)(f->s.info.created_at_ms - 1));
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_CODE);
    /* max_age: 0 s and an old session: log in again; with the marker met: a code */
    q = request(&f->conf, &p);
    q.max_age = "0";
    assert_int_equal(gh_oidc_authorize(&f->o, &q, &f->s, 0, f->s.info.created_at_ms + 5000, d), 0);
    assert_int_equal(d->next, GH_OIDC_NEXT_LOGIN);
    q.fresh = marker;
    assert_int_equal(gh_oidc_authorize(&f->o, &q, &f->s, 0, f->s.info.created_at_ms + 5000, d), 0);
    assert_int_equal(d->next, GH_OIDC_NEXT_CODE);
    q.max_age = "-1";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    free(d);
}

static void consent_is_asked_remembered_and_denied(void **state)
{
    fixture_t *f = *state;
    pkce_t p;
    pkce(&p);
    gh_oidc_authz_t *d = malloc(sizeof *d);
    gh_oidc_authz_request_t q = request(&f->conf, &p);
    q.prompt = "consent"; /* a first-party client asked to show it */
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_CONSENT);
    q.prompt = "consent none";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    q.prompt = "none consent";
    authorize(f, &q, true, d);
    assert_string_equal(d->error, "invalid_request");
    q.prompt = "consent";
    assert_int_equal(gh_oidc_authorize(&f->o, &q, &f->s, -1, gh_clock_now_ms(), d), 0);
    assert_string_equal(d->error, "access_denied");
    assert_int_equal(gh_oidc_authorize(&f->o, &q, &f->s, 1, gh_clock_now_ms(), d), 0);
    assert_int_equal(d->next, GH_OIDC_NEXT_CODE);
    uint32_t given = 0;
    assert_int_equal(gh_grant_consent_get(f->grants, f->s.user.id, f->conf.client_id, &given), 0);
    assert_int_equal(given, GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_PROFILE);
    free(d);
}

static void code(fixture_t *f, const gh_oidc_client_t *c, const pkce_t *p, char out[64])
{
    gh_oidc_authz_t *d = malloc(sizeof *d);
    gh_oidc_authz_request_t q = request(c, p);
    authorize(f, &q, true, d);
    assert_int_equal(d->next, GH_OIDC_NEXT_CODE);
    snprintf(out, 64, "%s", d->code);
    free(d);
}

static int grant(fixture_t *f, const gh_oidc_client_t *c, const char *secret,
                 gh_oidc_token_request_t *q, gh_oidc_grant_t *g)
{
    gh_oidc_client_cred_t cred = {
        .id = c->client_id, .secret = secret, .secret_len = secret ? strlen(secret) : 0};
    return gh_oidc_token(&f->o, &cred, q, gh_clock_now_ms(), g);
}

static void code_grant_replay_refresh_reuse(void **state)
{
    fixture_t *f = *state;
    pkce_t p, other;
    pkce(&p);
    pkce(&other);
    char c1[64];
    gh_oidc_grant_t *g = malloc(sizeof *g), *g2 = malloc(sizeof *g2);
    code(f, &f->conf, &p, c1);
    gh_oidc_token_request_t q = {.grant_type = "authorization_code",
                                 .code = c1,
                                 .redirect_uri = RP,
                                 .code_verifier = p.verifier};
    assert_int_equal(grant(f, &f->conf, "wrong", &q, g), GH_EOAUTHCLIENT);
    assert_int_equal(grant(f, &f->conf, NULL, &q, g), GH_EOAUTHCLIENT);
    q.redirect_uri = NULL;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), GH_EINVAL);
    q.redirect_uri = RP;
    q.code_verifier = other.verifier;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), GH_EOAUTHGRANT); /* spent now */
    code(f, &f->conf, &p, c1);
    q.code = c1;
    q.code_verifier = p.verifier;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), 0);
    assert_string_equal(g->nonce, "n1");
    assert_int_equal(g->family.user_id, f->s.user.id);
    assert_int_equal(g->family.amr, GH_AMR_PWD | GH_AMR_OTP);
    assert_int_equal(g->expires_in_s, 600);
    assert_string_equal(g->family.session_id, f->s.info.id);
    gh_oidc_token_info_t info;
    assert_int_equal(gh_oidc_userinfo(&f->o, g->access_token, gh_clock_now_ms(), &info), 0);
    assert_string_equal(info.user.username, "alice");
    /* replay: refused, and what it issued is revoked */
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g2), GH_EOAUTHGRANT);
    assert_int_equal(gh_oidc_userinfo(&f->o, g->access_token, gh_clock_now_ms(), &info),
                     GH_EOAUTHTOKEN);

    /* refresh rotates; a spent one revokes the family */
    code(f, &f->conf, &p, c1);
    q.code = c1;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), 0);
    char spent[GH_OIDC_TOKEN_LEN + 1];
    snprintf(spent, sizeof spent, "%s", g->refresh_token);
    gh_oidc_token_request_t rq = {.grant_type = "refresh_token", .refresh_token = spent};
    assert_int_equal(grant(f, &f->conf, f->secret, &rq, g2), 0);
    assert_string_not_equal(g2->refresh_token, spent);
    assert_int_equal(g2->family.generation, 1);
    assert_int_equal(gh_oidc_introspect(&f->o, &f->conf, spent, gh_clock_now_ms(), &info), 0);
    assert_false(info.active);
    assert_int_equal(
        gh_oidc_introspect(&f->o, &f->conf, g2->refresh_token, gh_clock_now_ms(), &info), 0);
    assert_true(info.active && info.refresh);
    assert_int_equal(gh_oidc_introspect(&f->o, &f->pub, g2->access_token, gh_clock_now_ms(), &info),
                     GH_EOAUTHCLIENT);
    rq.scope = "openid email";
    rq.refresh_token = g2->refresh_token;
    assert_int_equal(grant(f, &f->conf, f->secret, &rq, g), GH_EOAUTHSCOPE);
    rq.scope = NULL;
    assert_int_equal(f->reuse, 0);
    rq.refresh_token = spent;
    assert_int_equal(grant(f, &f->conf, f->secret, &rq, g), GH_EOAUTHGRANT);
    assert_int_equal(f->reuse, 1);
    rq.refresh_token = g2->refresh_token;
    assert_int_equal(grant(f, &f->conf, f->secret, &rq, g), GH_EOAUTHGRANT);
    rq.grant_type = "password";
    assert_int_equal(grant(f, &f->conf, f->secret, &rq, g), GH_EGRANTTYPE);
    free(g);
    free(g2);
}

static void revocation_and_ended_sessions(void **state)
{
    fixture_t *f = *state;
    pkce_t p;
    pkce(&p);
    char c1[64];
    gh_oidc_grant_t *g = malloc(sizeof *g);
    gh_oidc_token_info_t info;
    gh_oidc_token_request_t q = {
        .grant_type = "authorization_code", .redirect_uri = RP, .code_verifier = p.verifier};
    /* RFC 7009: another client's token is left alone; unknown ones are fine */
    code(f, &f->conf, &p, c1);
    q.code = c1;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), 0);
    assert_int_equal(gh_oidc_revoke(&f->o, &f->pub, g->access_token, gh_clock_now_ms()), 0);
    assert_int_equal(gh_oidc_userinfo(&f->o, g->access_token, gh_clock_now_ms(), &info), 0);
    assert_int_equal(gh_oidc_revoke(&f->o, &f->conf, "gha_nonsense", gh_clock_now_ms()), 0);
    assert_int_equal(gh_oidc_revoke(&f->o, &f->conf, g->access_token, gh_clock_now_ms()), 0);
    assert_int_equal(gh_oidc_userinfo(&f->o, g->access_token, gh_clock_now_ms(), &info),
                     GH_EOAUTHTOKEN);
    /* logging out ends what the session was given; a code from before starts nothing after */
    code(f, &f->conf, &p, c1);
    q.code = c1;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), 0);
    char pending[64];
    code(f, &f->conf, &p, pending);
    assert_int_equal(gh_account_logout(&f->a, f->session_hash), 0);
    assert_int_equal(gh_oidc_userinfo(&f->o, g->access_token, gh_clock_now_ms(), &info),
                     GH_EOAUTHTOKEN);
    q.code = pending;
    assert_int_equal(grant(f, &f->conf, f->secret, &q, g), GH_EOAUTHGRANT);
    free(g);
}

static void tokens_amr_acr(void **state)
{
    (void)state;
    uint8_t id[GH_GRANT_FAMILY_ID_LEN], id2[GH_GRANT_FAMILY_ID_LEN], h[32], h2[32];
    char t[GH_OIDC_TOKEN_LEN + 1];
    randombytes_buf(id, sizeof id);
    gh_oidc_token_make(GH_OIDC_ACCESS_PREFIX, id, t, h);
    assert_int_equal(strlen(t), GH_OIDC_TOKEN_LEN);
    assert_int_equal(gh_oidc_token_read(t, GH_OIDC_ACCESS_PREFIX, id2, h2), 0);
    assert_memory_equal(id, id2, sizeof id);
    assert_memory_equal(h, h2, sizeof h);
    assert_int_equal(gh_oidc_token_read(t, GH_OIDC_REFRESH_PREFIX, id2, h2), GH_EINVAL);
    t[10] = '*';
    assert_int_equal(gh_oidc_token_read(t, GH_OIDC_ACCESS_PREFIX, id2, h2), GH_EINVAL);
    assert_int_equal(gh_oidc_token_read("gha_short", GH_OIDC_ACCESS_PREFIX, id2, h2), GH_EINVAL);

    const char *n[4];
    size_t k = gh_oidc_amr_names(GH_AMR_PWD, n);
    assert_int_equal(k, 1);
    assert_string_equal(n[0], "pwd");
    assert_string_equal(gh_oidc_acr(GH_AMR_PWD), "urn:gatehouse:pwd");
    k = gh_oidc_amr_names(GH_AMR_PWD | GH_AMR_RECOVERY, n);
    assert_int_equal(k, 3);
    assert_string_equal(n[1], "otp");
    assert_string_equal(n[2], "mfa");
    k = gh_oidc_amr_names(GH_AMR_HWK, n);
    assert_int_equal(k, 2);
    assert_string_equal(n[0], "hwk");
    assert_string_equal(n[1], "mfa");
    assert_string_equal(gh_oidc_acr(GH_AMR_HWK), "urn:gatehouse:mfa");
    k = gh_oidc_amr_names(GH_AMR_PWD | GH_AMR_HWK, n);
    assert_int_equal(k, 3);
    char text[64];
    gh_oidc_scope_text(GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_EMAIL, text, sizeof text);
    assert_string_equal(text, "openid email");
}

int main(void)
{
    gh_mem_init();
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_decision_refuses_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(client_ids_never_begin_with_a_dash, setup, teardown),
        cmocka_unit_test_setup_teardown(login_prompts_and_the_fresh_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(consent_is_asked_remembered_and_denied, setup, teardown),
        cmocka_unit_test_setup_teardown(code_grant_replay_refresh_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(revocation_and_ended_sessions, setup, teardown),
        cmocka_unit_test(tokens_amr_acr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
