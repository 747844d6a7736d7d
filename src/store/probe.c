/* probe.c — the process-wide store probe (probe.h): observations go to whichever metric families
 * are attached, and an error count is kept regardless, so tests can read it without a node. */
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

static _Atomic(gh_metric_t *) attached_duration;
static _Atomic(gh_metric_t *) attached_errors;
static atomic_uint_fast64_t error_count[GH_STORE__COUNT];

bool gh_store_probe_attach(gh_metric_t *duration, gh_metric_t *errors)
{
    gh_metric_t *none = NULL;
    if (!atomic_compare_exchange_strong(&attached_duration, &none, duration))
        return false;
    atomic_store(&attached_errors, errors);
    return true;
}

void gh_store_probe_detach(gh_metric_t *duration)
{
    gh_metric_t *mine = duration;
    if (duration && atomic_load(&attached_duration) == mine) {
        atomic_store(&attached_errors, NULL);
        atomic_store(&attached_duration, NULL);
    }
}

void gh_store_observe(gh_store_kind_t store, gh_store_op_t op, int64_t duration_ns, bool failed)
{
    if ((unsigned)store >= GH_STORE__COUNT || (unsigned)op >= GH_STORE_OP__COUNT)
        return;
    if (failed)
        atomic_fetch_add_explicit(&error_count[store], 1, memory_order_relaxed);
    gh_metric_t *d = atomic_load_explicit(&attached_duration, memory_order_acquire);
    gh_metric_t *e = atomic_load_explicit(&attached_errors, memory_order_acquire);
    if (d)
        gh_metric_observe_ns(d, GH_METRIC_AT(d, (size_t)store, (size_t)op), duration_ns);
    if (e && failed)
        gh_metric_inc(e, (size_t)store);
}

uint64_t gh_store_errors(gh_store_kind_t store)
{
    return (unsigned)store < GH_STORE__COUNT
               ? atomic_load_explicit(&error_count[store], memory_order_relaxed)
               : 0;
}
