/*
 * stop.h — the process's stop request, as long work at start-up sees it. The node's signal
 * thread sets it when SIGTERM or SIGINT arrives before the node serves; a loop that may run for
 * seconds (loading persisted sessions) checks it every few thousand steps and gives up with
 * GH_ECANCELED, so a stop sent at any moment of start-up is acted on promptly.
 *
 * The one design decision: a process-wide flag in common/ rather than a callback through every
 * layer: it is set once and never cleared, any layer may read it, and reading it is one relaxed
 * atomic load.
 */
#ifndef GH_COMMON_STOP_H
#define GH_COMMON_STOP_H

#include <stdbool.h>

/* Asks every start-up loop to give up (idempotent; async-signal-safe). */
void gh_stop_request(void);
/* True once a stop was requested. */
bool gh_stop_requested(void);

#endif
