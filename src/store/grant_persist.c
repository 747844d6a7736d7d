/*
 * grant_persist.c — the memory grant store with families and consents written through to
 * <data-dir>/grants.db (grant.h). Not written yet: opening answers GH_EINTERNAL (logged).
 */
#include "store/grant.h"

#include "common/log.h"

int gh_grant_persist_open(const char *data_dir, const gh_grant_limits_t *limits,
                          gh_durability_t durability, gh_grant_store_t **out)
{
    (void)data_dir;
    (void)limits;
    (void)durability;
    *out = NULL;
    GH_LOG(GH_LOG_ERROR, "grant store: persistence is not built yet");
    return GH_EINTERNAL;
}
