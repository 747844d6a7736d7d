/* writes.c — process-wide outcome of local database writes (writes.h): two relaxed atomics per
 * database, no lock, no allocation. */
#include "store/writes.h"

#include <stdatomic.h>

const char *const gh_store_db_names[GH_STORE_DB__COUNT] = {
#define GH__STORE_DB_NAME(e, n) n,
    GH_STORE_DB_MAP(GH__STORE_DB_NAME)
#undef GH__STORE_DB_NAME
};

static atomic_uint_fast64_t failures[GH_STORE_DB__COUNT];
static atomic_bool not_writable[GH_STORE_DB__COUNT];

void gh_store_write_outcome(gh_store_db_t db, bool ok)
{
    if ((unsigned)db >= GH_STORE_DB__COUNT)
        return;
    if (!ok)
        atomic_fetch_add_explicit(&failures[db], 1, memory_order_relaxed);
    atomic_store_explicit(&not_writable[db], !ok, memory_order_relaxed);
}

uint64_t gh_store_write_failures(gh_store_db_t db)
{
    return (unsigned)db < GH_STORE_DB__COUNT
               ? atomic_load_explicit(&failures[db], memory_order_relaxed)
               : 0;
}

bool gh_store_writable(gh_store_db_t db)
{
    return (unsigned)db < GH_STORE_DB__COUNT
               ? !atomic_load_explicit(&not_writable[db], memory_order_relaxed)
               : true;
}
