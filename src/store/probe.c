/* probe.c — the store probe (probe.h): an observation goes to the store's observer, if it has
 * one, and errors are counted per process regardless, so tests can read them without a node. */
#include "store/probe.h"

#include <stdatomic.h>

const char *const gh_store_kind_names[GH_STORE__COUNT] = {
#define GH__STORE_KIND_NAME(e, n) n,
    GH_STORE_KIND_MAP(GH__STORE_KIND_NAME)
#undef GH__STORE_KIND_NAME
};

const char *const gh_store_op_names[GH_STORE_OP__COUNT] = {
#define GH__STORE_OP_NAME(e, n) n,
    GH_STORE_OP_MAP(GH__STORE_OP_NAME)
#undef GH__STORE_OP_NAME
};

static atomic_uint_fast64_t error_count[GH_STORE__COUNT];

void gh_store_observe(const gh_store_probe_t *probe, gh_store_kind_t store, gh_store_op_t op,
                      int64_t duration_ns, bool failed)
{
    if ((unsigned)store >= GH_STORE__COUNT || (unsigned)op >= GH_STORE_OP__COUNT)
        return;
    if (failed)
        atomic_fetch_add_explicit(&error_count[store], 1, memory_order_relaxed);
    if (probe && probe->observe)
        probe->observe(probe->ctx, store, op, duration_ns, failed);
}

uint64_t gh_store_errors(gh_store_kind_t store)
{
    return (unsigned)store < GH_STORE__COUNT
               ? atomic_load_explicit(&error_count[store], memory_order_relaxed)
               : 0;
}
