/*
 * oidc_records.h — what the user store keeps for OpenID Connect (issue #21): the registered
 * clients (relying parties) and the signing keys, as plain records. The store judges nothing
 * about them beyond their sizes: redirect URIs are checked, client secrets hashed and private
 * keys sealed by the account service (account/oidc_keys.h) before they get here.
 *
 * The one design decision: a rotation is a GENERATION. Every key carries the generation it was
 * made in, and (generation, alg) is unique, so two nodes (or a node and `gatehouse keys rotate`)
 * rotating at the same moment cannot both succeed: the second insert of generation N+1 fails as
 * GH_EEXISTS and nothing of it is written, without any lock held across calls.
 */
#ifndef GH_STORE_OIDC_RECORDS_H
#define GH_STORE_OIDC_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GH_OIDC_CLIENT_ID_MAX 32   /* generated: base64url of 16 random bytes (22 characters) */
#define GH_OIDC_CLIENT_NAME_MAX 64 /* bytes of the display name */
#define GH_OIDC_MAX_URIS 8         /* redirect URIs, and post-logout URIs, per client */
#define GH_OIDC_URI_MAX 512        /* bytes of one URI */
#define GH_OIDC_SECRET_HASH_LEN 32 /* keyed BLAKE2b-256 of the client secret */
#define GH_OIDC_CLIENTS_MAX 10000  /* clients a store holds (the account service enforces it) */

typedef struct {
    char client_id[GH_OIDC_CLIENT_ID_MAX + 1];
    char name[GH_OIDC_CLIENT_NAME_MAX + 1];
    bool is_public;       /* no secret; PKCE required (token_endpoint_auth_method "none") */
    bool consent;         /* show the consent screen (not first-party) */
    char id_token_alg[8]; /* "RS256", "ES256" or "EdDSA" */
    char redirect_uris[GH_OIDC_MAX_URIS][GH_OIDC_URI_MAX + 1];
    size_t n_redirect;
    char post_logout_uris[GH_OIDC_MAX_URIS][GH_OIDC_URI_MAX + 1];
    size_t n_post_logout;
    int64_t created_at; /* ms since the epoch */
    /* Confidential clients: the keyed hash of the secret (never the secret). */
    uint8_t secret_hash[GH_OIDC_SECRET_HASH_LEN];
} gh_oidc_client_t;

#define GH_OIDC_KID_MAX 32          /* base64url of 12 random bytes (16 characters) */
#define GH_OIDC_KEY_SEALED_MAX 2048 /* a sealed PKCS#8 DER key (RSA-2048: about 1.3 KB) */
#define GH_OIDC_KEYS_MAX 64         /* keys a store holds: current + retired-but-published */

typedef struct {
    char kid[GH_OIDC_KID_MAX + 1];
    char alg[8];                            /* "RS256", "ES256", "EdDSA" */
    int64_t generation;                     /* the rotation that made it (1, 2, ...) */
    int64_t created_at;                     /* ms */
    int64_t retired_at;                     /* ms; 0 while it is current (signs) */
    uint8_t sealed[GH_OIDC_KEY_SEALED_MAX]; /* gh_secret_seal of the PKCS#8 DER private key */
    size_t sealed_len;
} gh_oidc_key_rec_t;

#endif
