/*
 * grant_redis.c — the grant store in Redis (grant.h). Not written yet: opening answers
 * GH_EINTERNAL (logged).
 */
#include "store/grant.h"

#include "common/log.h"

int gh_grant_redis_open(gh_grant_connect_fn connect, void *ctx, const gh_grant_limits_t *limits,
                        gh_grant_store_t **out)
{
    (void)connect;
    (void)ctx;
    (void)limits;
    *out = NULL;
    GH_LOG(GH_LOG_ERROR, "grant store: Redis is not built yet");
    return GH_EINTERNAL;
}
