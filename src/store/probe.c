/* probe.c — the process-wide store probe (probe.h): observations go to whichever observer is
 * attached, and an error count is kept regardless, so tests can read it without a node. */
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

static _Atomic(gh_store_observer_t) attached_observer;
static _Atomic(void *) attached_ctx;
static atomic_uint_fast64_t error_count[GH_STORE__COUNT];

bool gh_store_probe_attach(gh_store_observer_t observe, void *ctx)
{
    void *none = NULL;
    if (!observe || !ctx || !atomic_compare_exchange_strong(&attached_ctx, &none, ctx))
        return false;
    atomic_store(&attached_observer, observe);
    return true;
}

void gh_store_probe_detach(void *ctx)
{
    if (ctx && atomic_load(&attached_ctx) == ctx) {
        atomic_store(&attached_observer, NULL);
        atomic_store(&attached_ctx, NULL);
    }
}

void gh_store_observe(gh_store_kind_t store, gh_store_op_t op, int64_t duration_ns, bool failed)
{
    if ((unsigned)store >= GH_STORE__COUNT || (unsigned)op >= GH_STORE_OP__COUNT)
        return;
    if (failed)
        atomic_fetch_add_explicit(&error_count[store], 1, memory_order_relaxed);
    gh_store_observer_t observe = atomic_load_explicit(&attached_observer, memory_order_acquire);
    void *ctx = atomic_load_explicit(&attached_ctx, memory_order_acquire);
    if (observe && ctx)
        observe(ctx, store, op, duration_ns, failed);
}

uint64_t gh_store_errors(gh_store_kind_t store)
{
    return (unsigned)store < GH_STORE__COUNT
               ? atomic_load_explicit(&error_count[store], memory_order_relaxed)
               : 0;
}
