/*
 * user_postgres.h — the PostgreSQL user store's struct, for the files that run statements on its
 * pool besides user_postgres.c (oidc_postgres.c: the OpenID Connect tables).
 */
#ifndef GH_STORE_USER_POSTGRES_H
#define GH_STORE_USER_POSTGRES_H

#include "store/pool.h"
#include "store/probe.h"
#include "store/user.h"

typedef struct {
    gh_user_store_t base; /* first: the interface pointer is the struct pointer */
    char *url;
    int timeout_ms;
    gh_store_pool_t *pool;  /* connections with back-off (store/pool.c) */
    gh_store_probe_t probe; /* told of every round trip */
} gh_user_pg_t;

#endif
