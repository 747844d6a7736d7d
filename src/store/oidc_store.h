/*
 * oidc_store.h — what the two backends of the OpenID Connect tables share (oidc_sqlite.c,
 * oidc_postgres.c): their operations for the user stores' tables of operations, the checks of a
 * record's sizes, and the newline-joined form of a URI list (oidc_common.c).
 */
#ifndef GH_STORE_OIDC_STORE_H
#define GH_STORE_OIDC_STORE_H

#include "store/user.h"

/* Bytes of a joined URI list with its NUL. */
#define GH_OIDC_URIS_TEXT_MAX (GH_OIDC_MAX_URIS * (GH_OIDC_URI_MAX + 1) + 1)

/* 0 when every field of c fits its column (id, name, alg non-empty and terminated; counts in
 * range; no URI holding a newline), else GH_EINVAL. */
int gh_oidc_client_fits(const gh_oidc_client_t *c);
/* 0 when k's kid and alg are non-empty and its sealed key fits; else GH_EINVAL. */
int gh_oidc_key_fits(const gh_oidc_key_rec_t *k);
/* Joins n URIs with '\n' into out (cap bytes): 0 or GH_EINVAL. */
int gh_oidc_uris_join(const char (*uris)[GH_OIDC_URI_MAX + 1], size_t n, char *out, size_t cap);
/* Splits a joined list back: 0, or GH_EINVAL for too many or too long. "" is no URI. */
int gh_oidc_uris_split(const char *text, char (*uris)[GH_OIDC_URI_MAX + 1], size_t *n);

/* SQLite (oidc_sqlite.c): migration 5 of users.db and the operations. */
extern const char gh_oidc_sqlite_migration[];
int gh_oidc_sqlite_client_add(gh_user_store_t *s, const gh_oidc_client_t *c);
int gh_oidc_sqlite_client_get(gh_user_store_t *s, const char *client_id, gh_oidc_client_t *out);
int gh_oidc_sqlite_client_list(gh_user_store_t *s, const char *after, gh_oidc_client_t *out,
                               size_t cap, size_t *n);
int gh_oidc_sqlite_client_del(gh_user_store_t *s, const char *client_id);
int gh_oidc_sqlite_key_list(gh_user_store_t *s, gh_oidc_key_rec_t *out, size_t cap, size_t *n);
int gh_oidc_sqlite_key_rotate(gh_user_store_t *s, const gh_oidc_key_rec_t *keys, size_t n,
                              int64_t now_ms);
int gh_oidc_sqlite_key_prune(gh_user_store_t *s, int64_t retired_before_ms, size_t *removed);

/* PostgreSQL (oidc_postgres.c): migration 5 and the operations, on the user store's pool
 * (store/user_postgres.h). */
extern const char gh_oidc_postgres_migration[];
int gh_oidc_pg_client_add(gh_user_store_t *s, const gh_oidc_client_t *c);
int gh_oidc_pg_client_get(gh_user_store_t *s, const char *client_id, gh_oidc_client_t *out);
int gh_oidc_pg_client_list(gh_user_store_t *s, const char *after, gh_oidc_client_t *out, size_t cap,
                           size_t *n);
int gh_oidc_pg_client_del(gh_user_store_t *s, const char *client_id);
int gh_oidc_pg_key_list(gh_user_store_t *s, gh_oidc_key_rec_t *out, size_t cap, size_t *n);
int gh_oidc_pg_key_rotate(gh_user_store_t *s, const gh_oidc_key_rec_t *keys, size_t n,
                          int64_t now_ms);
int gh_oidc_pg_key_prune(gh_user_store_t *s, int64_t retired_before_ms, size_t *removed);

#endif
