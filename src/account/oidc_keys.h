/*
 * oidc_keys.h — the OpenID provider's signing keys and its registered clients, as workflows of
 * the account service (no HTTP, no JSON in or out of HTTP): the key set a node signs ID tokens
 * with and publishes as its JWKS (oidc_keys.c), and the clients — relying parties — that may ask
 * for tokens (oidc_clients.c).
 *
 * Keys: one CURRENT key per alg (RS256, ES256, EdDSA) signs; a rotation makes a new key of every
 * alg current and retires the old ones, which stay in the JWKS for `retire_after` (at least the
 * longest lifetime of a token they signed) and are then deleted. Private keys are stored sealed
 * with the secret key (--secret-key-file); the set a node holds in memory is re-read from the
 * store by gh_oidc_keys_refresh, so a rotation by another node or by `gatehouse keys rotate`
 * reaches every node within one refresh period.
 *
 * Clients: confidential clients have a 256-bit secret, shown once, stored as a keyed BLAKE2b
 * hash; public clients have none (PKCE is the flow's business). Redirect URIs match exactly —
 * byte for byte, no wildcard, no normalisation.
 *
 * Thread safety: every function may be called from any thread; the key set is behind a
 * read-mostly lock (signing takes it shared).
 */
#ifndef GH_ACCOUNT_OIDC_KEYS_H
#define GH_ACCOUNT_OIDC_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "account/account.h"
#include "auth/jwt.h"
#include "auth/secretkey.h"
#include "common/err.h"
#include "store/user.h" /* gh_oidc_client_t, GH_OIDC_* sizes (store/oidc_records.h) */

/* ------------------------------------------------------------------ signing keys */

typedef struct gh_oidc_keys gh_oidc_keys_t;

/* The kids a rotation made, one per alg (index gh_jwt_alg_t). */
typedef struct {
    char kid[GH_JWT__ALGS][GH_OIDC_KID_MAX + 1];
} gh_oidc_kids_t;

/* Loads the key set from users (creating the first RS256, ES256 and EdDSA keys when the store
 * has none). rotation_ms: a key older than this is replaced by gh_oidc_keys_refresh (0: only
 * by command). retire_after_ms (> 0): how long a retired key stays published, then deleted.
 * The store and the key are the caller's and must outlive the set (the key is copied).
 * GH_ESTORE, GH_ENOMEM, GH_EAUTH when a stored key does not open with this secret key (logged:
 * the wrong --secret-key-file), GH_EINVAL for bad arguments. */
int gh_oidc_keys_open(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                      int64_t rotation_ms, int64_t retire_after_ms, gh_oidc_keys_t **out) GH_WUR;
void gh_oidc_keys_close(gh_oidc_keys_t **keys);

/* Signs payload (JSON text, len bytes) with the CURRENT key of alg ("RS256", "ES256", "EdDSA"):
 * a compact JWS (auth/jwt.h) in *jwt, freed with gh_jwt_free. GH_EINVAL for an unknown alg. */
int gh_oidc_keys_sign(gh_oidc_keys_t *keys, const char *alg, const char *payload, size_t len,
                      char **jwt) GH_WUR;

/* Verifies a JWS signed by any published key of the set (the header's kid picks it): as
 * gh_jwt_verify (the payload in *payload, freed with gh_jwt_free); GH_EAUTH also for a kid that
 * is not published. For an id_token_hint, and for tests. */
int gh_oidc_keys_verify(gh_oidc_keys_t *keys, const char *jwt, size_t len, char **payload,
                        size_t *plen) GH_WUR;

/* {"keys":[…]}: every published key (current ones first, then retired ones not yet past
 * retire_after), NUL-terminated, freed with gh_jwt_free. */
int gh_oidc_keys_jwks(gh_oidc_keys_t *keys, char **json_text) GH_WUR;

/* The current kid of each alg (a snapshot). */
void gh_oidc_keys_current(gh_oidc_keys_t *keys, gh_oidc_kids_t *out);

/* Re-reads the store (a rotation elsewhere), rotates when the current keys are older than the
 * rotation interval (once across nodes: the store's generations), and deletes keys retired more
 * than retire_after ago. The node calls it every 60 s. On a store error the set in memory is
 * kept (and still signs) and the error returned. */
int gh_oidc_keys_refresh(gh_oidc_keys_t *keys, int64_t now_ms) GH_WUR;

/* A rotation by command: new keys of every alg become current in the store, the old ones are
 * retired (published until retire_after, which the nodes judge). Needs no key set open (the
 * CLI): nodes pick the new keys up at their next refresh. *out (may be NULL) gets the new kids. */
int gh_oidc_keys_rotate(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                        int64_t now_ms, gh_oidc_kids_t *out) GH_WUR;

/* ------------------------------------------------------------------ clients */

/* The secret handed out once: base64url of 32 random bytes. */
#define GH_OIDC_SECRET_LEN 43

/* Checks a client before it is stored: name 1..GH_OIDC_CLIENT_NAME_MAX bytes of printable
 * UTF-8-free-of-controls text; 1..GH_OIDC_MAX_URIS redirect URIs and 0..GH_OIDC_MAX_URIS
 * post-logout URIs, each an absolute http(s) URI without fragment or whitespace, https unless
 * its host is a loopback name (localhost, 127.0.0.1, [::1]) or allow_http; id_token_alg one of
 * the three ("" means RS256 and is filled in). GH_EINVAL with *why (a static sentence). */
int gh_oidc_client_check(gh_oidc_client_t *c, bool allow_http, const char **why) GH_WUR;

/* Registers c (name, flags, URIs, id_token_alg filled by the caller; checked as above): fills
 * c->client_id and c->created_at and, for a confidential client, writes its secret (shown only
 * now) to secret (GH_OIDC_SECRET_LEN + 1 bytes; "" for a public client). GH_EINVAL (*why),
 * GH_ELIMIT past GH_OIDC_CLIENTS_MAX, GH_ESTORE. */
int gh_oidc_client_add(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                       gh_oidc_client_t *c, bool allow_http, int64_t now_ms,
                       char secret[GH_OIDC_SECRET_LEN + 1], const char **why) GH_WUR;
/* GH_ENOTFOUND. */
int gh_oidc_client_get(gh_user_store_t *users, const char *client_id, gh_oidc_client_t *out) GH_WUR;
/* Clients with client_id > after ("" first), in client_id order, up to cap. */
int gh_oidc_client_list(gh_user_store_t *users, const char *after, gh_oidc_client_t *out,
                        size_t cap, size_t *n) GH_WUR;
/* GH_ENOTFOUND. */
int gh_oidc_client_del(gh_user_store_t *users, const char *client_id) GH_WUR;

/* Authenticates a client at the token endpoint: client_id and its secret (len bytes; NULL/0
 * for a public client, which then authenticates by its id alone). 0 and *client filled, or
 * GH_EAUTH — for an unknown client, a wrong or missing secret, a secret sent by a public
 * client — with the same work done (a keyed hash and a constant-time compare) in every case.
 * GH_ESTORE when the store fails. */
int gh_oidc_client_authenticate(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                                const char *client_id, const char *secret, size_t len,
                                gh_oidc_client_t *client) GH_WUR;

/* ------------------------------------------------------------------ audited admin workflows */

/* The workflows above as an administrator's actions, each with its audit event: add a client
 * (admin.client_added, detail client_id=…), delete one (admin.client_deleted), rotate the keys
 * (admin.keys_rotated, detail the new kids). They use a->users and a->secret_key; the actor is
 * a->actor ("token" on the admin API, "cli" on the command line; "" is taken as "cli"). With a
 * trail (a->audit) the event is durable as gh_account_audit_change makes it (a failure to store
 * it fails the workflow); without one (the command line) it is appended to the user store after
 * the change, and a failure to append is logged. now_ms: the time of the change. */
int gh_account_oidc_client_add(gh_account_t *a, gh_oidc_client_t *c, bool allow_http,
                               int64_t now_ms, char secret[GH_OIDC_SECRET_LEN + 1],
                               const char **why) GH_WUR;
int gh_account_oidc_client_del(gh_account_t *a, const char *client_id) GH_WUR;
int gh_account_oidc_keys_rotate(gh_account_t *a, int64_t now_ms, gh_oidc_kids_t *out) GH_WUR;

/* True when uri is one of the client's redirect URIs, byte for byte. */
bool gh_oidc_client_redirect_ok(const gh_oidc_client_t *c, const char *uri);
/* True when uri is one of the client's post-logout redirect URIs, byte for byte. */
bool gh_oidc_client_logout_redirect_ok(const gh_oidc_client_t *c, const char *uri);

#endif
