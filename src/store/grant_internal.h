/*
 * grant_internal.h — what the grant store's backends share inside src/store/ and nothing else
 * uses: the memory backend's hooks and selectors that the persistence layer (grant_persist.c)
 * drives it with, and the check of the limits.
 *
 * The one design decision: the persistence layer never reaches into the memory backend's
 * tables; it is told of every family and consent that a bound or a revocation removes (the
 * hooks, called with the memory store's lock held, on the caller's thread) and asks for the ids
 * a revocation will remove before it removes them (gh_grant_memory_family_ids), so rows are
 * deleted on disk before memory forgets them.
 */
#ifndef GH_STORE_GRANT_INTERNAL_H
#define GH_STORE_GRANT_INTERNAL_H

#include "store/grant.h"

typedef struct {
    /* A family removed by a bound, a revocation or a detected reuse (not by expiry). */
    void (*family_gone)(void *ctx, const uint8_t id[GH_GRANT_FAMILY_ID_LEN]);
    /* A consent removed by a bound or a revocation. */
    void (*consent_gone)(void *ctx, uint64_t user_id, const char *client_id);
    void *ctx;
} gh_grant_hooks_t;

typedef enum { GH_GRANT_BY_USER, GH_GRANT_BY_SESSION, GH_GRANT_BY_CLIENT } gh_grant_select_t;

/* 0, or GH_EINVAL for limits a store refuses. */
int gh_grant_limits_check(const gh_grant_limits_t *l);

bool gh_grant_memory_is(gh_grant_store_t *s);
void gh_grant_memory_set_hooks(gh_grant_store_t *s, const gh_grant_hooks_t *hooks);
/* Puts back a family read from disk, with its own times and generation (expires_at capped at
 * created_at + this store's refresh_ttl). GH_EEXPIRED when past; else as family_create. */
int gh_grant_memory_restore_family(gh_grant_store_t *s, const gh_grant_family_t *f, int64_t now);
/* The ids of up to cap families of a user (key unused), a session or a client (key). */
size_t gh_grant_memory_family_ids(gh_grant_store_t *s, gh_grant_select_t by, uint64_t user_id,
                                  const char *key, uint8_t (*out)[GH_GRANT_FAMILY_ID_LEN],
                                  size_t cap);
/* Drops every family and consent (not the codes), telling no hook: a reload before a new load. */
void gh_grant_memory_clear(gh_grant_store_t *s);
/* Puts back a consent with the time it was given. */
int gh_grant_memory_restore_consent(gh_grant_store_t *s, uint64_t user_id, const char *client_id,
                                    uint32_t scopes, int64_t given_at_ms);

#endif
