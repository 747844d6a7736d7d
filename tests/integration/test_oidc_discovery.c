/*
 * test_oidc_discovery.c — the OpenID provider's discovery, keys and clients through the real
 * binary: the discovery document (issuer from --public-url without its slash, or the listening
 * address; every endpoint under it; the supported values relying parties read), the JWKS (its
 * keys verify JWTs signed with the keys the server stored — read back from its data dir with its
 * secret key), `gatehouse keys rotate` while the server runs (both generations published, the new
 * one first, a token signed before still verifying), `gatehouse client add|list|del` output, the
 * admin clients API (401 without the token) with its audit events, and the same on PostgreSQL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "harness.h"
#include "../support/servers.h"
#include "account/oidc_keys.h"
#include "auth/secretkey.h"
#include "common/clock.h"

#include <sodium.h>

#define ADMIN "oidc-admin-token-0123456789abcdef"
#define ADMIN_ARG "--admin-token", ADMIN

typedef struct {
    ht_server_t srv;
    ht_run_t run;
    ht_response_t r;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    int rc = ht_server_release(&f->srv);
    free(f);
    return rc;
}

static void str_at(const ht_response_t *r, const char *path, const char *want)
{
    char got[1024];
    if (!ht_jstr(r, path, got, sizeof got))
        fail_msg("%s missing in %s", path, r->body);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got \"%s\", want \"%s\"", path, got, want);
}

/* True when the JSON array at path holds exactly the strings of want (in order). */
static void strings_at(const ht_response_t *r, const char *path, const char *const *want)
{
    json_t *root = ht_jbody(r), *a = root ? ht_jpath(root, path) : NULL;
    size_t n = 0;
    while (want[n])
        n++;
    if (!json_is_array(a) || json_array_size(a) != n)
        fail_msg("%s: want %zu strings in %s", path, n, r->body);
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(a, i)) ||
            strcmp(json_string_value(json_array_get(a, i)), want[i]) != 0)
            fail_msg("%s[%zu]: want %s in %s", path, i, want[i], r->body);
    json_decref(root);
}
#define STRINGS(r, path, ...) strings_at((r), (path), (const char *const[]){__VA_ARGS__, NULL})

static void discovery_names_every_endpoint_under_the_issuer(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_server_start(&f->srv, "--public-url", "https://id.example.test/", NULL), 0);
    assert_int_equal(ht_get(&f->srv, "/.well-known/openid-configuration", NULL, &f->r), 200);
    char h[128];
    assert_true(ht_header(&f->r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "application/json");
    assert_true(ht_header(&f->r, "Cache-Control", h, sizeof h));
    assert_string_equal(h, "public, max-age=300");
    str_at(&f->r, "issuer", "https://id.example.test"); /* no trailing slash */
    str_at(&f->r, "authorization_endpoint", "https://id.example.test/oidc/authorize");
    str_at(&f->r, "token_endpoint", "https://id.example.test/oidc/token");
    str_at(&f->r, "userinfo_endpoint", "https://id.example.test/oidc/userinfo");
    str_at(&f->r, "jwks_uri", "https://id.example.test/oidc/jwks");
    str_at(&f->r, "revocation_endpoint", "https://id.example.test/oidc/revoke");
    str_at(&f->r, "introspection_endpoint", "https://id.example.test/oidc/introspect");
    str_at(&f->r, "end_session_endpoint", "https://id.example.test/oidc/logout");
    STRINGS(&f->r, "response_types_supported", "code");
    STRINGS(&f->r, "grant_types_supported", "authorization_code", "refresh_token");
    STRINGS(&f->r, "subject_types_supported", "public");
    STRINGS(&f->r, "id_token_signing_alg_values_supported", "RS256", "ES256", "EdDSA");
    STRINGS(&f->r, "token_endpoint_auth_methods_supported", "client_secret_basic",
            "client_secret_post", "none");
    STRINGS(&f->r, "code_challenge_methods_supported", "S256");
    STRINGS(&f->r, "scopes_supported", "openid", "profile", "email");
    STRINGS(&f->r, "prompt_values_supported", "none", "login", "consent");
    assert_true(ht_jsize(&f->r, "claims_supported") >= 10);
    bool b = true;
    assert_true(ht_jbool(&f->r, "request_uri_parameter_supported", &b));
    assert_false(b);
    assert_int_equal(ht_server_stop(&f->srv), 0);
    ht_server_cleanup(&f->srv);

    /* without --public-url: http:// and the address it listens on */
    memset(&f->srv, 0, sizeof f->srv);
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    assert_int_equal(ht_get(&f->srv, "/.well-known/openid-configuration", NULL, &f->r), 200);
    char want[128];
    snprintf(want, sizeof want, "http://%s", f->srv.addr);
    str_at(&f->r, "issuer", want);
    snprintf(want, sizeof want, "http://%s/oidc/jwks", f->srv.addr);
    str_at(&f->r, "jwks_uri", want);
    assert_int_equal(ht_get(&f->srv, "/oidc/jwks", NULL, &f->r), 200);
    assert_true(ht_header(&f->r, "Content-Type", h, sizeof h));
    assert_string_equal(h, "application/jwk-set+json");
    assert_true(ht_header(&f->r, "Cache-Control", h, sizeof h));
    assert_string_equal(h, "public, max-age=60");
    assert_int_equal(ht_jsize(&f->r, "keys"), 3);
}

/* The kid of each key of a JWKS response, in order ("" past the end). */
static void jwks_kid(const ht_response_t *r, long i, char *out, size_t cap)
{
    char path[32];
    snprintf(path, sizeof path, "keys.%ld.kid", i);
    if (!ht_jstr(r, path, out, cap))
        out[0] = '\0';
}

static long jwks_index(const ht_response_t *r, const char *kid)
{
    for (long i = 0; i < ht_jsize(r, "keys"); i++) {
        char k[64];
        jwks_kid(r, i, k, sizeof k);
        if (strcmp(k, kid) == 0)
            return i;
    }
    return -1;
}

/* Verifies jwt with the key of its kid in the JWKS response r, as a relying party does. */
static int verify_with_jwks(const ht_response_t *r, const char *jwt)
{
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    assert_int_equal(gh_jwt_peek(jwt, strlen(jwt), kid, alg), 0);
    long i = jwks_index(r, kid);
    if (i < 0)
        return GH_ENOTFOUND;
    json_t *root = ht_jbody(r);
    json_t *jwk = json_array_get(json_object_get(root, "keys"), (size_t)i);
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), alg);
    assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
    assert_null(json_object_get(jwk, "d"));
    char *text = json_dumps(jwk, JSON_COMPACT);
    json_decref(root);
    gh_jwt_key_t *k = NULL;
    assert_int_equal(gh_jwt_key_from_jwk(text, strlen(text), &k), 0);
    free(text);
    char *payload = NULL;
    size_t plen = 0;
    int rc = gh_jwt_verify(k, jwt, strlen(jwt), &payload, &plen);
    if (rc == 0)
        assert_string_equal(payload, "{\"sub\":\"42\"}");
    gh_jwt_free(payload);
    gh_jwt_key_free(&k);
    return rc;
}

/* The server's own key set, read from its store with its secret key (what it signs with). */
static gh_oidc_keys_t *server_keys(const char *data_dir, gh_user_store_t *store)
{
    char path[HT_PATH_MAX + 32], why[256];
    uint8_t key[GH_SECRET_KEY_LEN];
    snprintf(path, sizeof path, "%s/secret.key", data_dir);
    assert_int_equal(gh_secret_key_load(path, false, key, why, sizeof why), 0);
    gh_oidc_keys_t *ks = NULL;
    assert_int_equal(gh_oidc_keys_open(store, key, 0, 3600 * 1000LL, &ks), 0);
    return ks;
}

/* Polls the JWKS (bounded) until it lists n keys. */
static void wait_jwks(fixture_t *f, long n)
{
    long long until = ht_now_ms() + 8000;
    for (;;) {
        assert_int_equal(ht_get(&f->srv, "/oidc/jwks", NULL, &f->r), 200);
        if (ht_jsize(&f->r, "keys") == n)
            return;
        if (ht_now_ms() > until)
            fail_msg("the JWKS did not reach %ld keys: %s", n, f->r.body);
        ht_sleep_ms(100);
    }
}

/* A rotation by command while the server runs; the store's options name it for the CLI. */
static void rotate_and_check(fixture_t *f, gh_user_store_t *store, const char *const *store_args)
{
    wait_jwks(f, 3);
    char old[3][64];
    for (long i = 0; i < 3; i++)
        jwks_kid(&f->r, i, old[i], sizeof old[i]);

    /* JWTs signed with the server's stored keys verify with the JWKS it serves */
    gh_oidc_keys_t *ks = server_keys(f->srv.dir, store);
    char *before[3];
    for (int a = 0; a < GH_JWT__ALGS; a++) {
        assert_int_equal(gh_oidc_keys_sign(ks, gh_jwt_alg_name((gh_jwt_alg_t)a), "{\"sub\":\"42\"}",
                                           12, &before[a]),
                         0);
        assert_int_equal(verify_with_jwks(&f->r, before[a]), 0);
        /* a tampered one does not */
        char *t = strdup(before[a]);
        char *dot = strchr(t, '.');
        dot[2] = dot[2] == 'e' ? 'f' : 'e';
        assert_int_not_equal(verify_with_jwks(&f->r, t), 0);
        free(t);
    }

    /* gatehouse keys rotate: one JSON object with the three new kids */
    const char *args[16] = {"keys", "rotate", NULL};
    size_t na = 2;
    for (size_t i = 0; store_args[i]; i++)
        args[na++] = store_args[i];
    args[na] = NULL;
    f->run.timeout_ms = 20000;
    assert_true(na <= 8); /* the list below passes up to 8 (NULL ends it early) */
    assert_int_equal(ht_run(&f->run, NULL, NULL, args[0], args[1], args[2], args[3], args[4],
                            args[5], args[6], args[7], NULL),
                     0);
    if (f->run.status != 0)
        fail_msg("keys rotate: %d %s", f->run.status, f->run.err);
    assert_int_equal(ht_count_lines(f->run.out), 1);
    json_t *kids = json_loads(f->run.out, 0, NULL);
    assert_non_null(kids);
    assert_int_equal(json_object_size(kids), 3);
    const char *fresh[3] = {json_string_value(json_object_get(kids, "RS256")),
                            json_string_value(json_object_get(kids, "ES256")),
                            json_string_value(json_object_get(kids, "EdDSA"))};
    for (int i = 0; i < 3; i++)
        assert_true(fresh[i] && ht_is_b64url(fresh[i], 16));

    /* the running server publishes both generations (within --oidc-key-refresh), new first */
    wait_jwks(f, 6);
    for (int i = 0; i < 3; i++) {
        long at = jwks_index(&f->r, fresh[i]);
        assert_true(at >= 0 && at < 3);
        assert_true(jwks_index(&f->r, old[i]) >= 3);
    }
    /* a token signed before the rotation still validates; so does one signed after */
    assert_int_equal(gh_oidc_keys_refresh(ks, gh_clock_now_ms()), 0);
    char *after = NULL;
    assert_int_equal(gh_oidc_keys_sign(ks, "ES256", "{\"sub\":\"42\"}", 12, &after), 0);
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    assert_int_equal(gh_jwt_peek(after, strlen(after), kid, alg), 0);
    assert_string_equal(kid, fresh[1]);
    assert_int_equal(verify_with_jwks(&f->r, after), 0);
    for (int a = 0; a < 3; a++) {
        assert_int_equal(verify_with_jwks(&f->r, before[a]), 0);
        gh_jwt_free(before[a]);
    }
    gh_jwt_free(after);
    json_decref(kids);
    gh_oidc_keys_close(&ks);

    /* the rotation is in the audit trail */
    assert_int_equal(ht_get(&f->srv, "/v1/admin/audit?type=admin.keys_rotated", ADMIN, &f->r), 200);
    str_at(&f->r, "events.0.actor", "cli");
}

static void jwks_verifies_server_keys_and_a_rotation_publishes_both(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_server_start(&f->srv, "--oidc-key-refresh", "1s", ADMIN_ARG, NULL), 0);
    gh_user_store_t *store = NULL;
    assert_int_equal(gh_user_sqlite_open(f->srv.dir, &store), 0);
    const char *args[] = {"--data-dir", f->srv.dir, NULL};
    rotate_and_check(f, store, args);
    gh_user_store_close(&store);
}

static void clients_from_the_command_line_and_the_admin_api(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_server_start(&f->srv, ADMIN_ARG, NULL), 0);
    const char *dir = f->srv.dir;

    /* client add prints exactly one JSON object: the id and the secret, shown once */
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "add", "Wiki", "--redirect-uri",
                            "https://wiki.example/cb", "--redirect-uri", "http://localhost:9/cb",
                            "--post-logout-uri", "https://wiki.example/", "--data-dir", dir, NULL),
                     0);
    assert_int_equal(f->run.status, 0);
    assert_int_equal(ht_count_lines(f->run.out), 1);
    json_t *j = json_loads(f->run.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 2);
    char wiki[64], secret[64];
    snprintf(wiki, sizeof wiki, "%s", json_string_value(json_object_get(j, "client_id")));
    snprintf(secret, sizeof secret, "%s", json_string_value(json_object_get(j, "client_secret")));
    json_decref(j);
    assert_true(ht_is_b64url(wiki, 22));
    assert_true(ht_is_b64url(secret, 43));

    /* --public: no secret */
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "add", "Mobile app", "--public",
                            "--consent", "--id-token-alg", "EdDSA", "--redirect-uri",
                            "http://127.0.0.1:7000/cb", "--data-dir", dir, NULL),
                     0);
    assert_int_equal(f->run.status, 0);
    j = json_loads(f->run.out, 0, NULL);
    assert_int_equal(json_object_size(j), 1);
    char mobile[64];
    snprintf(mobile, sizeof mobile, "%s", json_string_value(json_object_get(j, "client_id")));
    json_decref(j);

    /* refused registrations: nothing on stdout, exit 2, one line saying why */
    static const char *bad[] = {"http://wiki.example/cb", "https://wiki.example/cb#x", "/relative",
                                "https://u:p@wiki.example/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "add", "Bad", "--redirect-uri",
                                bad[i], "--data-dir", dir, NULL),
                         0);
        assert_int_equal(f->run.status, 2);
        assert_int_equal(f->run.out_len, 0);
        assert_int_equal(ht_count_lines(f->run.err), 1);
    }
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "add", "Bad", "--id-token-alg", "HS256",
                            "--redirect-uri", "https://a.example/", "--data-dir", dir, NULL),
                     0);
    assert_int_equal(f->run.status, 2);

    /* the printed secret is the one the store checks (keyed hash with the server's key) */
    gh_user_store_t *store = NULL;
    assert_int_equal(gh_user_sqlite_open(dir, &store), 0);
    char path[HT_PATH_MAX + 32], why[256];
    uint8_t key[GH_SECRET_KEY_LEN];
    snprintf(path, sizeof path, "%s/secret.key", dir);
    assert_int_equal(gh_secret_key_load(path, false, key, why, sizeof why), 0);
    gh_oidc_client_t c;
    assert_int_equal(gh_oidc_client_authenticate(store, key, wiki, secret, strlen(secret), &c), 0);
    assert_int_equal(c.n_redirect, 2);
    assert_int_equal(gh_oidc_client_authenticate(store, key, wiki, "x", 1, &c), GH_EAUTH);
    assert_int_equal(gh_oidc_client_authenticate(store, key, mobile, NULL, 0, &c), 0);

    /* client list, as a table and as JSON */
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "list", "--data-dir", dir, NULL), 0);
    assert_int_equal(f->run.status, 0);
    assert_non_null(strstr(f->run.out, wiki));
    assert_non_null(strstr(f->run.out, "confidential"));
    assert_non_null(strstr(f->run.out, "https://wiki.example/cb"));
    assert_int_equal(
        ht_run(&f->run, NULL, NULL, "client", "list", "--json", "--data-dir", dir, NULL), 0);
    j = json_loads(f->run.out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(j, "clients")), 2);
    json_decref(j);

    /* the admin API: refused without the token */
    assert_int_equal(ht_get(&f->srv, "/v1/admin/clients", NULL, &f->r), 401);
    assert_string_equal(f->r.error_code, "unauthenticated");
    assert_int_equal(ht_json(&f->srv, "POST", "/v1/admin/clients", NULL,
                             "{\"name\":\"X\",\"redirect_uris\":[\"https://x.example/\"]}", &f->r),
                     401);
    char del_path[128];
    snprintf(del_path, sizeof del_path, "/v1/admin/clients/%s", wiki);
    assert_int_equal(ht_delete(&f->srv, del_path, NULL, &f->r), 401);
    assert_int_equal(ht_delete(&f->srv, del_path, "a-user-token-is-not-admin", &f->r), 403);

    /* lists what the command line added */
    assert_int_equal(ht_get(&f->srv, "/v1/admin/clients", ADMIN, &f->r), 200);
    assert_int_equal(ht_jsize(&f->r, "clients"), 2);
    json_t *root = ht_jbody(&f->r);
    json_t *arr = json_object_get(root, "clients");
    bool seen_wiki = false;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        assert_null(json_object_get(o, "client_secret"));
        if (strcmp(json_string_value(json_object_get(o, "client_id")), wiki) == 0) {
            seen_wiki = true;
            assert_string_equal(json_string_value(json_object_get(o, "name")), "Wiki");
            assert_false(json_is_true(json_object_get(o, "public")));
            assert_int_equal(json_array_size(json_object_get(o, "redirect_uris")), 2);
            assert_string_equal(json_string_value(json_array_get(
                                    json_object_get(o, "post_logout_redirect_uris"), 0)),
                                "https://wiki.example/");
        }
    }
    json_decref(root);
    assert_true(seen_wiki);

    /* adds: 201 with the secret once (confidential), none for a public client */
    assert_int_equal(ht_json(&f->srv, "POST", "/v1/admin/clients", ADMIN,
                             "{\"name\":\"Grafana\",\"redirect_uris\":"
                             "[\"https://grafana.example/login/generic_oauth\"],"
                             "\"consent\":true,\"id_token_alg\":\"ES256\"}",
                             &f->r),
                     201);
    char grafana[64], gsecret[64], h[64];
    assert_true(ht_jstr(&f->r, "client_id", grafana, sizeof grafana));
    assert_true(ht_jstr(&f->r, "client_secret", gsecret, sizeof gsecret));
    assert_true(ht_is_b64url(gsecret, 43));
    str_at(&f->r, "id_token_alg", "ES256");
    assert_true(ht_header(&f->r, "Cache-Control", h, sizeof h));
    assert_string_equal(h, "no-store");
    assert_int_equal(gh_oidc_client_authenticate(store, key, grafana, gsecret, 43, &c), 0);
    assert_true(c.consent);
    assert_int_equal(ht_json(&f->srv, "POST", "/v1/admin/clients", ADMIN,
                             "{\"name\":\"SPA\",\"public\":true,\"redirect_uris\":"
                             "[\"https://spa.example/\"]}",
                             &f->r),
                     201);
    assert_false(ht_jhas(&f->r, "client_secret"));
    bool pub = false;
    assert_true(ht_jbool(&f->r, "public", &pub) && pub);
    /* refused: 400 with the contract's body */
    static const char *bodies[] = {
        "{\"name\":\"X\",\"redirect_uris\":[\"http://x.example/\"]}",
        "{\"name\":\"X\",\"redirect_uris\":[]}",
        "{\"name\":\"X\"}",
        "{\"redirect_uris\":[\"https://x.example/\"]}",
        "{\"name\":\"X\",\"redirect_uris\":[\"https://x.example/\"],\"id_token_alg\":\"none\"}",
        "{\"name\":\"X\",\"redirect_uris\":[\"https://x.example/\"],\"public\":\"yes\"}",
        "{\"name\":\"X\",\"redirect_uris\":[1]}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_int_equal(ht_json(&f->srv, "POST", "/v1/admin/clients", ADMIN, bodies[i], &f->r),
                         400);
        assert_string_equal(f->r.error_code, "invalid_request");
    }

    /* delete: 204, then 404; the client no longer authenticates */
    assert_int_equal(ht_delete(&f->srv, del_path, ADMIN, &f->r), 204);
    assert_int_equal(ht_delete(&f->srv, del_path, ADMIN, &f->r), 404);
    assert_string_equal(f->r.error_code, "not_found");
    assert_int_equal(gh_oidc_client_authenticate(store, key, wiki, secret, strlen(secret), &c),
                     GH_EAUTH);
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "del", mobile, "--data-dir", dir, NULL),
                     0);
    assert_int_equal(f->run.status, 0);
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "del", mobile, "--data-dir", dir, NULL),
                     0);
    assert_int_equal(f->run.status, 1);
    assert_int_equal(ht_get(&f->srv, "/v1/admin/clients", ADMIN, &f->r), 200);
    assert_int_equal(ht_jsize(&f->r, "clients"), 2); /* Grafana and SPA */

    /* every change is in the audit trail, by who made it; never a secret */
    assert_int_equal(ht_get(&f->srv, "/v1/admin/audit?type=admin", ADMIN, &f->r), 200);
    assert_null(strstr(f->r.body, secret));
    assert_null(strstr(f->r.body, gsecret));
    str_at(&f->r, "events.0.type", "admin.client_deleted");
    str_at(&f->r, "events.0.actor", "cli");
    str_at(&f->r, "events.1.type", "admin.client_deleted");
    str_at(&f->r, "events.1.actor", "token");
    str_at(&f->r, "events.2.type", "admin.client_added");
    str_at(&f->r, "events.2.actor", "token");
    sodium_memzero(key, sizeof key);
    gh_user_store_close(&store);
}

static void keys_and_clients_on_postgresql(void **state)
{
    fixture_t *f = *state;
    static ts_server_t pg = {.kind = TS_POSTGRES};
    char url[256];
    if (ts_server_start(&pg) != 0 || ts_postgres_fresh_url(&pg, url, sizeof url) != 0)
        fail_msg("cannot start PostgreSQL");
    assert_int_equal(ht_server_start(&f->srv, "--user-store", "postgres", "--postgres-url", url,
                                     "--oidc-key-refresh", "1s", ADMIN_ARG, NULL),
                     0);
    gh_user_postgres_options_t po = {.url = url, .pool_size = 1};
    gh_user_store_t *store = NULL;
    assert_int_equal(gh_user_postgres_open(&po, &store), 0);
    const char *args[] = {"--user-store", "postgres", "--postgres-url", url, "--data-dir",
                          f->srv.dir,     NULL};
    rotate_and_check(f, store, args);
    assert_int_equal(ht_run(&f->run, NULL, NULL, "client", "add", "PG app", "--redirect-uri",
                            "https://pg.example/cb", "--user-store", "postgres", "--postgres-url",
                            url, "--data-dir", f->srv.dir, NULL),
                     0);
    assert_int_equal(f->run.status, 0);
    assert_int_equal(ht_get(&f->srv, "/v1/admin/clients", ADMIN, &f->r), 200);
    assert_int_equal(ht_jsize(&f->r, "clients"), 1);
    str_at(&f->r, "clients.0.name", "PG app");
    gh_user_store_close(&store);
    assert_int_equal(ht_server_stop(&f->srv), 0);
    ts_server_cleanup(&pg);
}

/* A node whose secret key is not the one the stored signing keys were sealed with (one that
 * joined a cluster with its own default key) says so in its log and keeps serving logins with
 * the provider off, rather than refusing to start. */
static void a_node_with_another_secret_key_serves_with_the_provider_off(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(ht_server_start(&f->srv, NULL), 0);
    assert_int_equal(ht_register(&f->srv, "kim", "a long enough password", NULL), 201);
    assert_int_equal(ht_get(&f->srv, "/oidc/jwks", NULL, &f->r), 200);
    assert_int_equal(ht_server_stop(&f->srv), 0);

    const char *other = ht_shared_secret_key(); /* not the data dir's secret.key */
    assert_non_null(other);
    assert_int_equal(ht_server_start(&f->srv, "--secret-key-file", other, NULL), 0);
    assert_true(ht_server_wait_log(&f->srv, "cannot load the OpenID signing keys", 5000));
    static char log[1 << 16];
    ht_server_log(&f->srv, log, sizeof log);
    assert_non_null(strstr(log, "every node of a cluster needs the same one"));
    char token[64];
    assert_int_equal(ht_login(&f->srv, "kim", "a long enough password", token, NULL), 201);
    assert_int_equal(ht_get(&f->srv, "/v1/session", token, &f->r), 200);
    assert_int_equal(ht_get(&f->srv, "/.well-known/openid-configuration", NULL, &f->r), 404);
    assert_string_equal(f->r.error_code, "not_found");
    assert_int_equal(ht_get(&f->srv, "/oidc/jwks", NULL, &f->r), 404);
    assert_int_equal(ht_get(&f->srv, "/readyz", NULL, &f->r), 200);
}

int main(int argc, char **argv)
{
    gh_mem_init();
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(discovery_names_every_endpoint_under_the_issuer),
        T(jwks_verifies_server_keys_and_a_rotation_publishes_both),
        T(clients_from_the_command_line_and_the_admin_api),
        T(keys_and_clients_on_postgresql),
        T(a_node_with_another_secret_key_serves_with_the_provider_off),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
