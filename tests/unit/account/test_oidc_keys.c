/*
 * test_oidc_keys.c — the OpenID provider's signing keys and clients (account/oidc_keys.h) over a
 * real SQLite user store: the first keys are made once; a rotation keeps the old key published
 * (its tokens still verify) until retire_after, then deletes it; a scheduled rotation by two
 * nodes at once makes ONE generation; a stored private key does not open with another secret
 * key; clients are added, found, authenticated (wrong secret, unknown client, public client)
 * and deleted; redirect URIs match byte for byte; registration checks; audit events; and the
 * key set's memory returns to its baseline.
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "account/audit.h"
#include "account/oidc_keys.h"
#include "common/clock.h"
#include "mem/mem.h"

#define MIN (60 * 1000LL)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

typedef struct {
    char dir[256];
    gh_user_store_t *users;
    uint8_t key[GH_SECRET_KEY_LEN];
} fixture_t;

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    snprintf(f->dir, sizeof f->dir, "%s/gh-oidc-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(f->dir) || gh_user_sqlite_open(f->dir, &f->users) != 0)
        return -1;
    randombytes_buf(f->key, sizeof f->key);
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    gh_user_store_close(&f->users);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* The kids of a JWKS text, in order, comma-joined into out. */
static size_t jwks_kids(gh_oidc_keys_t *ks, char *out, size_t cap)
{
    char *text = NULL;
    assert_int_equal(gh_oidc_keys_jwks(ks, &text), 0);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    json_t *keys = json_object_get(j, "keys");
    out[0] = '\0';
    size_t n = json_array_size(keys), off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(keys, i);
        assert_null(json_object_get(k, "d")); /* never a private part */
        off += (size_t)snprintf(out + off, cap - off, "%s%s", i ? "," : "",
                                json_string_value(json_object_get(k, "kid")));
    }
    json_decref(j);
    gh_jwt_free(text);
    return n;
}

static char *sign(gh_oidc_keys_t *ks, const char *alg)
{
    char *jwt = NULL;
    assert_int_equal(gh_oidc_keys_sign(ks, alg, "{\"sub\":\"1\"}", 11, &jwt), 0);
    return jwt;
}

static int verify(gh_oidc_keys_t *ks, const char *jwt)
{
    char *payload = NULL;
    size_t plen = 0;
    int rc = gh_oidc_keys_verify(ks, jwt, strlen(jwt), &payload, &plen);
    if (rc == 0)
        assert_string_equal(payload, "{\"sub\":\"1\"}");
    gh_jwt_free(payload);
    return rc;
}

static void first_keys_are_made_once(void **state)
{
    fixture_t *f = *state;
    size_t base = gh_mem_bytes(GH_MEM_OIDC_KEYS);
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks), 0);
    char kids[512], again[512];
    assert_int_equal(jwks_kids(ks, kids, sizeof kids), 3);
    gh_oidc_kids_t cur;
    gh_oidc_keys_current(ks, &cur);
    for (int a = 0; a < GH_JWT__ALGS; a++) {
        assert_true(strlen(cur.kid[a]) == 16);
        assert_non_null(strstr(kids, cur.kid[a]));
        char *jwt = sign(ks, gh_jwt_alg_name((gh_jwt_alg_t)a));
        char kid[GH_JWT_KID_MAX + 1], alg[8];
        assert_int_equal(gh_jwt_peek(jwt, strlen(jwt), kid, alg), 0);
        assert_string_equal(kid, cur.kid[a]);
        assert_string_equal(alg, gh_jwt_alg_name((gh_jwt_alg_t)a));
        assert_int_equal(verify(ks, jwt), 0);
        gh_jwt_free(jwt);
    }
    char *jwt = NULL;
    assert_int_equal(gh_oidc_keys_sign(ks, "HS256", "{}", 2, &jwt), GH_EINVAL);
    assert_int_equal(gh_oidc_keys_sign(ks, "none", "{}", 2, &jwt), GH_EINVAL);
    /* a second node (or a restart) reads the same keys, making none */
    gh_oidc_keys_t *ks2 = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks2), 0);
    assert_int_equal(jwks_kids(ks2, again, sizeof again), 3);
    assert_string_equal(kids, again);
    gh_oidc_keys_close(&ks2);
    gh_oidc_keys_close(&ks);
    assert_null(ks);
    assert_int_equal(gh_mem_bytes(GH_MEM_OIDC_KEYS), base);
}

static void rotation_keeps_the_old_key_published_then_retires_it(void **state)
{
    fixture_t *f = *state;
    size_t base = gh_mem_bytes(GH_MEM_OIDC_KEYS);
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks), 0);
    int64_t now = gh_clock_now_ms();
    gh_oidc_kids_t old, fresh, cur;
    gh_oidc_keys_current(ks, &old);
    char *before = sign(ks, "RS256");

    /* the command line rotates (no key set of its own); the node sees it at its refresh */
    assert_int_equal(gh_oidc_keys_rotate(f->users, f->key, now, &fresh), 0);
    gh_oidc_keys_current(ks, &cur);
    assert_string_equal(cur.kid[GH_JWT_RS256], old.kid[GH_JWT_RS256]); /* not yet read */
    assert_int_equal(gh_oidc_keys_refresh(ks, now + MIN), 0);
    gh_oidc_keys_current(ks, &cur);
    char kids[1024];
    assert_int_equal(jwks_kids(ks, kids, sizeof kids), 6);
    for (int a = 0; a < GH_JWT__ALGS; a++) {
        assert_string_equal(cur.kid[a], fresh.kid[a]);
        assert_string_not_equal(fresh.kid[a], old.kid[a]);
        assert_non_null(strstr(kids, old.kid[a]));
    }
    /* current keys come first in the JWKS */
    assert_true(strstr(kids, fresh.kid[GH_JWT_RS256]) < strstr(kids, old.kid[GH_JWT_RS256]));
    char *after = sign(ks, "RS256");
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    assert_int_equal(gh_jwt_peek(after, strlen(after), kid, alg), 0);
    assert_string_equal(kid, fresh.kid[GH_JWT_RS256]);
    assert_int_equal(verify(ks, before), 0); /* signed before the rotation: still valid */
    assert_int_equal(verify(ks, after), 0);

    /* just before retire_after: still published */
    assert_int_equal(gh_oidc_keys_refresh(ks, now + HOUR - 1), 0);
    assert_int_equal(jwks_kids(ks, kids, sizeof kids), 6);
    /* past it: gone from the JWKS, its tokens no longer verify, deleted from the store */
    assert_int_equal(gh_oidc_keys_refresh(ks, now + HOUR + 1), 0);
    assert_int_equal(jwks_kids(ks, kids, sizeof kids), 3);
    assert_null(strstr(kids, old.kid[GH_JWT_RS256]));
    assert_int_equal(verify(ks, before), GH_EAUTH);
    assert_int_equal(verify(ks, after), 0);
    gh_oidc_key_rec_t *recs = calloc(GH_OIDC_KEYS_MAX, sizeof *recs);
    size_t n = 0;
    assert_int_equal(gh_user_oidc_key_list(f->users, recs, GH_OIDC_KEYS_MAX, &n), 0);
    assert_int_equal(n, 3);
    free(recs);
    gh_jwt_free(before);
    gh_jwt_free(after);
    gh_oidc_keys_close(&ks);
    assert_int_equal(gh_mem_bytes(GH_MEM_OIDC_KEYS), base);
}

static void a_schedule_rotates_once_across_nodes(void **state)
{
    fixture_t *f = *state;
    gh_oidc_keys_t *a = NULL, *b = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, DAY, 2 * DAY, &a), 0);
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, DAY, 2 * DAY, &b), 0);
    int64_t now = gh_clock_now_ms();
    gh_oidc_kids_t k0, ka, kb;
    gh_oidc_keys_current(a, &k0);
    /* not due yet */
    assert_int_equal(gh_oidc_keys_refresh(a, now + DAY - MIN), 0);
    gh_oidc_keys_current(a, &ka);
    assert_string_equal(ka.kid[GH_JWT_ES256], k0.kid[GH_JWT_ES256]);
    /* due: both nodes refresh; one generation is made, both sign with it */
    assert_int_equal(gh_oidc_keys_refresh(a, now + DAY + MIN), 0);
    assert_int_equal(gh_oidc_keys_refresh(b, now + DAY + MIN), 0);
    gh_oidc_keys_current(a, &ka);
    gh_oidc_keys_current(b, &kb);
    for (int i = 0; i < GH_JWT__ALGS; i++) {
        assert_string_not_equal(ka.kid[i], k0.kid[i]);
        assert_string_equal(ka.kid[i], kb.kid[i]);
    }
    char kids[1024];
    assert_int_equal(jwks_kids(b, kids, sizeof kids), 6);
    /* a token of either node verifies on the other */
    char *jwt = sign(a, "EdDSA");
    assert_int_equal(verify(b, jwt), 0);
    gh_jwt_free(jwt);
    gh_oidc_keys_close(&a);
    gh_oidc_keys_close(&b);
}

static void a_sealed_key_does_not_open_with_another_secret_key(void **state)
{
    fixture_t *f = *state;
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks), 0);
    gh_oidc_keys_close(&ks);
    /* the stored blob is sealed: it opens with our key only, and holds no DER in the clear */
    gh_oidc_key_rec_t *recs = calloc(GH_OIDC_KEYS_MAX, sizeof *recs);
    size_t n = 0;
    assert_int_equal(gh_user_oidc_key_list(f->users, recs, GH_OIDC_KEYS_MAX, &n), 0);
    assert_int_equal(n, 3);
    uint8_t other[GH_SECRET_KEY_LEN], plain[GH_OIDC_KEY_SEALED_MAX];
    randombytes_buf(other, sizeof other);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(gh_secret_open(other, recs[i].sealed, recs[i].sealed_len, plain),
                         GH_EAUTH);
        assert_int_equal(gh_secret_open(f->key, recs[i].sealed, recs[i].sealed_len, plain), 0);
        size_t dl = recs[i].sealed_len - GH_SEAL_OVERHEAD;
        assert_true(memmem(recs[i].sealed, recs[i].sealed_len, plain + dl - 24, 24) == NULL);
        sodium_memzero(plain, sizeof plain);
    }
    free(recs);
    /* a node started with the wrong --secret-key-file refuses to start */
    assert_int_equal(gh_oidc_keys_open(f->users, other, 0, HOUR, &ks), GH_EAUTH);
    assert_null(ks);
}

/* ---- clients ---- */

static gh_oidc_client_t *client(const char *name, bool is_public)
{
    static gh_oidc_client_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s", name);
    c.is_public = is_public;
    snprintf(c.redirect_uris[0], sizeof c.redirect_uris[0], "https://app.example/cb");
    snprintf(c.redirect_uris[1], sizeof c.redirect_uris[1], "http://localhost:8080/cb?x=1");
    c.n_redirect = 2;
    snprintf(c.post_logout_uris[0], sizeof c.post_logout_uris[0], "https://app.example/bye");
    c.n_post_logout = 1;
    return &c;
}

static void clients_add_get_authenticate_delete(void **state)
{
    fixture_t *f = *state;
    char secret[GH_OIDC_SECRET_LEN + 1];
    const char *why = NULL;
    gh_oidc_client_t *c = client("Wiki", false);
    assert_int_equal(gh_oidc_client_add(f->users, f->key, c, false, 1000, secret, &why), 0);
    assert_int_equal(strlen(secret), GH_OIDC_SECRET_LEN);
    assert_int_equal(strlen(c->client_id), 22);
    assert_string_equal(c->id_token_alg, "RS256"); /* the default */
    char id[GH_OIDC_CLIENT_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", c->client_id);

    gh_oidc_client_t got;
    assert_int_equal(gh_oidc_client_get(f->users, id, &got), 0);
    assert_string_equal(got.name, "Wiki");
    assert_int_equal(got.created_at, 1000);
    /* only a keyed hash is stored: not the secret, not its plain BLAKE2b */
    assert_null(memmem(&got, sizeof got, secret, GH_OIDC_SECRET_LEN));

    gh_oidc_client_t who;
    assert_int_equal(
        gh_oidc_client_authenticate(f->users, f->key, id, secret, strlen(secret), &who), 0);
    assert_string_equal(who.client_id, id);
    char wrong[GH_OIDC_SECRET_LEN + 1];
    snprintf(wrong, sizeof wrong, "%s", secret);
    wrong[5] = wrong[5] == 'a' ? 'b' : 'a';
    assert_int_equal(gh_oidc_client_authenticate(f->users, f->key, id, wrong, strlen(wrong), &who),
                     GH_EAUTH);
    assert_int_equal(gh_oidc_client_authenticate(f->users, f->key, id, secret, 10, &who), GH_EAUTH);
    assert_int_equal(gh_oidc_client_authenticate(f->users, f->key, id, NULL, 0, &who), GH_EAUTH);
    assert_int_equal(
        gh_oidc_client_authenticate(f->users, f->key, "nobody", secret, strlen(secret), &who),
        GH_EAUTH);
    /* the same secret under another secret key (another deployment) does not authenticate */
    uint8_t other[GH_SECRET_KEY_LEN];
    randombytes_buf(other, sizeof other);
    assert_int_equal(gh_oidc_client_authenticate(f->users, other, id, secret, strlen(secret), &who),
                     GH_EAUTH);

    /* a public client: no secret given out; it authenticates by id, and refuses a secret */
    gh_oidc_client_t *p = client("Mobile", true);
    snprintf(p->id_token_alg, sizeof p->id_token_alg, "EdDSA");
    assert_int_equal(gh_oidc_client_add(f->users, f->key, p, false, 2000, secret, &why), 0);
    assert_string_equal(secret, "");
    char pid[GH_OIDC_CLIENT_ID_MAX + 1];
    snprintf(pid, sizeof pid, "%s", p->client_id);
    assert_int_equal(gh_oidc_client_authenticate(f->users, f->key, pid, NULL, 0, &who), 0);
    assert_true(who.is_public);
    assert_string_equal(who.id_token_alg, "EdDSA");
    assert_int_equal(gh_oidc_client_authenticate(f->users, f->key, pid, "x", 1, &who), GH_EAUTH);

    gh_oidc_client_t list[4];
    size_t n = 0;
    assert_int_equal(gh_oidc_client_list(f->users, "", list, 4, &n), 0);
    assert_int_equal(n, 2);

    assert_int_equal(gh_oidc_client_del(f->users, id), 0);
    assert_int_equal(gh_oidc_client_del(f->users, id), GH_ENOTFOUND);
    assert_int_equal(gh_oidc_client_get(f->users, id, &got), GH_ENOTFOUND);
    assert_int_equal(
        gh_oidc_client_authenticate(f->users, f->key, id, secret, strlen(secret), &who), GH_EAUTH);
}

static void redirect_uris_match_exactly(void **state)
{
    (void)state;
    gh_oidc_client_t *c = client("App", false);
    assert_true(gh_oidc_client_redirect_ok(c, "https://app.example/cb"));
    assert_true(gh_oidc_client_redirect_ok(c, "http://localhost:8080/cb?x=1"));
    static const char *refused[] = {
        "https://app.example/cb/",      /* trailing slash */
        "https://APP.example/cb",       /* host case */
        "HTTPS://app.example/cb",       /* scheme case */
        "https://app.example/CB",       /* path case */
        "https://app.example/cb?x=1",   /* a query added */
        "http://localhost:8080/cb",     /* a query dropped */
        "http://localhost:8080/cb?x=2", /* another query */
        "https://app.example/cb#f",     /* a fragment */
        "https://app.example:443/cb",   /* an explicit default port */
        "https://app.example/c",        /* a prefix */
        "https://app.example/cbx",      /* an extension */
        "https://app.example.evil/cb",  /* a longer host */
        "http://app.example/cb",        /* http for https */
        "",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        assert_false(gh_oidc_client_redirect_ok(c, refused[i]));
    assert_false(gh_oidc_client_redirect_ok(c, NULL));
    assert_true(gh_oidc_client_logout_redirect_ok(c, "https://app.example/bye"));
    assert_false(gh_oidc_client_logout_redirect_ok(c, "https://app.example/bye/"));
    assert_false(gh_oidc_client_logout_redirect_ok(c, "https://app.example/cb"));
}

static void registrations_are_checked(void **state)
{
    (void)state;
    const char *why = NULL;
    static const char *bad[] = {
        "http://app.example/cb",          /* http for a non-loopback host */
        "https://app.example/cb#x",       /* fragment */
        "/cb",                            /* relative */
        "app.example/cb",                 /* no scheme */
        "ftp://app.example/cb",           /* scheme */
        "javascript:alert(1)",            /* scheme */
        "https:///cb",                    /* no host */
        "https://user:pw@app.example/cb", /* user info */
        "https://app.example/a b",        /* whitespace */
        "https://app.example:99999x/",    /* port */
        "https://app.example/\xc3\xa9",   /* not ASCII */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gh_oidc_client_t *c = client("App", false);
        snprintf(c->redirect_uris[0], sizeof c->redirect_uris[0], "%s", bad[i]);
        assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
        assert_non_null(why);
    }
    static const char *good[] = {"https://app.example/cb", "http://127.0.0.1:9000/cb",
                                 "http://[::1]/cb", "http://LOCALHOST/cb",
                                 "com.example.app:/cb" /* refused: no custom schemes */};
    for (size_t i = 0; i < 4; i++) {
        gh_oidc_client_t *c = client("App", false);
        snprintf(c->redirect_uris[0], sizeof c->redirect_uris[0], "%s", good[i]);
        assert_int_equal(gh_oidc_client_check(c, false, &why), 0);
    }
    gh_oidc_client_t *c = client("App", false);
    snprintf(c->redirect_uris[0], sizeof c->redirect_uris[0], "%s", good[4]);
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    /* http to any host when the operator allows it */
    c = client("App", false);
    snprintf(c->redirect_uris[0], sizeof c->redirect_uris[0], "http://app.internal/cb");
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    assert_int_equal(gh_oidc_client_check(c, true, &why), 0);
    /* name, counts, alg */
    c = client("", false);
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    c = client("tab\there", false);
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    c = client("App", false);
    c->n_redirect = 0;
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    c = client("App", false);
    c->n_redirect = GH_OIDC_MAX_URIS + 1;
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    c = client("App", false);
    snprintf(c->id_token_alg, sizeof c->id_token_alg, "HS256");
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
    c = client("App", false);
    snprintf(c->post_logout_uris[0], sizeof c->post_logout_uris[0], "http://evil.example/");
    assert_int_equal(gh_oidc_client_check(c, false, &why), GH_EINVAL);
}

/* The admin workflows leave their admin.* events in the trail (here: the store directly, as the
 * command line does). */
static void admin_workflows_are_audited(void **state)
{
    fixture_t *f = *state;
    gh_account_t a = {.users = f->users, .secret_key = f->key};
    snprintf(a.actor, sizeof a.actor, "cli");
    char secret[GH_OIDC_SECRET_LEN + 1];
    const char *why = NULL;
    gh_oidc_client_t *c = client("Grafana", false);
    assert_int_equal(gh_account_oidc_client_add(&a, c, false, 5, secret, &why), 0);
    char id[GH_OIDC_CLIENT_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", c->client_id);
    gh_oidc_kids_t kids;
    assert_int_equal(gh_account_oidc_keys_rotate(&a, gh_clock_now_ms(), &kids), 0);
    assert_int_equal(gh_account_oidc_client_del(&a, id), 0);
    assert_int_equal(gh_account_oidc_client_del(&a, id), GH_ENOTFOUND);

    gh_audit_query_t q = {0};
    gh_audit_event_t ev[8];
    size_t n = 0;
    assert_int_equal(gh_user_audit_read(f->users, &q, ev, 8, &n), 0);
    assert_int_equal(n, 3); /* the failed delete stored nothing */
    assert_string_equal(ev[0].type, "admin.client_deleted");
    assert_string_equal(ev[1].type, "admin.keys_rotated");
    assert_string_equal(ev[2].type, "admin.client_added");
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(ev[i].actor, "cli");
    assert_non_null(strstr(ev[2].detail, id));
    assert_non_null(strstr(ev[0].detail, id));
    assert_non_null(strstr(ev[1].detail, kids.kid[GH_JWT_RS256]));
    assert_null(strstr(ev[2].detail, secret));
}

/* Every allocation of loading, signing, publishing and refreshing may fail: each failure is an
 * error (never a crash), and nothing stays charged to oidc_keys afterwards. */
static void allocation_failures_are_errors_and_leak_nothing(void **state)
{
    fixture_t *f = *state;
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks), 0); /* makes the keys */
    gh_oidc_keys_close(&ks);
    size_t base = gh_mem_bytes(GH_MEM_OIDC_KEYS);
    int failed = 0;
    bool done = false;
    for (uint64_t n = 1; n < 200 && !done; n++) {
        gh_mem_fail_at(n);
        char *text = NULL, *jwt = NULL;
        int rc = gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks);
        if (rc == 0) {
            if (gh_oidc_keys_jwks(ks, &text) == 0)
                assert_non_null(strstr(text, "\"keys\""));
            if (gh_oidc_keys_sign(ks, "ES256", "{\"sub\":\"1\"}", 11, &jwt) == 0)
                assert_int_equal(verify(ks, jwt) == 0 || gh_mem_fail_fired(), true);
            GH_IGNORE(gh_oidc_keys_refresh(ks, gh_clock_now_ms()));
            gh_jwt_free(text);
            gh_jwt_free(jwt);
            gh_oidc_keys_close(&ks);
        } else {
            assert_int_equal(rc, GH_ENOMEM);
            assert_null(ks);
            failed++;
        }
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        assert_int_equal(gh_mem_bytes(GH_MEM_OIDC_KEYS), base);
        done = !fired; /* past the last allocation: every one has been failed once */
    }
    assert_true(done);
    assert_true(failed > 0);
}

/* Signers on several threads while the key set is rotated and refreshed under them: every
 * signature is made with a published key and verifies (the read-mostly lock). */
typedef struct {
    gh_oidc_keys_t *ks;
    int alg;
    int ok, bad;
    atomic_bool *stop;
} signer_t;

static void *signer_main(void *arg)
{
    signer_t *s = arg;
    while (!atomic_load(s->stop)) {
        char *jwt = NULL;
        if (gh_oidc_keys_sign(s->ks, gh_jwt_alg_name((gh_jwt_alg_t)s->alg), "{\"sub\":\"1\"}", 11,
                              &jwt) == 0 &&
            verify(s->ks, jwt) == 0)
            s->ok++;
        else
            s->bad++;
        gh_jwt_free(jwt);
    }
    return NULL;
}

static void signing_goes_on_during_rotations(void **state)
{
    fixture_t *f = *state;
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(f->users, f->key, 0, HOUR, &ks), 0);
    atomic_bool stop = false;
    enum { THREADS = 3 };
    signer_t s[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        s[i] = (signer_t){.ks = ks, .alg = i % GH_JWT__ALGS, .stop = &stop};
        assert_int_equal(pthread_create(&t[i], NULL, signer_main, &s[i]), 0);
    }
    int64_t now = gh_clock_now_ms();
    for (int r = 0; r < 4; r++) {
        assert_int_equal(gh_oidc_keys_rotate(f->users, f->key, now + r, NULL), 0);
        assert_int_equal(gh_oidc_keys_refresh(ks, now + r), 0);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(s[i].bad, 0);
        assert_true(s[i].ok > 0);
    }
    char kids[2048];
    assert_int_equal(jwks_kids(ks, kids, sizeof kids), 15); /* five generations, none expired */
    gh_oidc_keys_close(&ks);
}

int main(void)
{
    gh_mem_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(first_keys_are_made_once, setup, teardown),
        cmocka_unit_test_setup_teardown(rotation_keeps_the_old_key_published_then_retires_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_schedule_rotates_once_across_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(a_sealed_key_does_not_open_with_another_secret_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(clients_add_get_authenticate_delete, setup, teardown),
        cmocka_unit_test(redirect_uris_match_exactly),
        cmocka_unit_test(registrations_are_checked),
        cmocka_unit_test_setup_teardown(admin_workflows_are_audited, setup, teardown),
        cmocka_unit_test_setup_teardown(signing_goes_on_during_rotations, setup, teardown),
        cmocka_unit_test_setup_teardown(allocation_failures_are_errors_and_leak_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
