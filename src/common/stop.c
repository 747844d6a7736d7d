/* stop.c — the process's stop request (stop.h): one atomic flag, set once, never cleared. */
#include "common/stop.h"

#include <stdatomic.h>

static atomic_bool stop_requested;

void gh_stop_request(void)
{
    atomic_store(&stop_requested, true);
}

bool gh_stop_requested(void)
{
    return atomic_load_explicit(&stop_requested, memory_order_relaxed);
}
