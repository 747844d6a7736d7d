/*
 * writes.h — whether the node's local databases take writes (sessions.db, users.db), for
 * /readyz's neighbours in /metrics: gatehouse_store_write_failures_total{store} and
 * gatehouse_store_writable{store}.
 *
 * The one design decision: like probe.h, this is process-wide — the stores are opened before the
 * metrics registry exists and know nothing of it — but it depends on nothing (no metric types),
 * so a store reports with one relaxed atomic update and the registry's owner reads the values at
 * scrape time. Readiness does not read this: each store answers for itself through its ping.
 * One node per process: tests that run several stores in one process read the stores' own
 * state, not this.
 */
#ifndef GH_STORE_WRITES_H
#define GH_STORE_WRITES_H

#include <stdbool.h>
#include <stdint.h>

/* X(ENUM, "label"): the store label of the two families. */
#define GH_STORE_DB_MAP(X)                                                                         \
    X(SESSIONS, "sessions")                                                                        \
    X(USERS, "users")

typedef enum {
#define GH__STORE_DB_ENUM(e, n) GH_STORE_DB_##e,
    GH_STORE_DB_MAP(GH__STORE_DB_ENUM)
#undef GH__STORE_DB_ENUM
        GH_STORE_DB__COUNT
} gh_store_db_t;

extern const char *const gh_store_db_names[GH_STORE_DB__COUNT];

/* One write's outcome: a failure counts and marks the database not writable; a success marks it
 * writable again. */
void gh_store_write_outcome(gh_store_db_t db, bool ok);
/* Failed writes since start. */
uint64_t gh_store_write_failures(gh_store_db_t db);
/* false from a failed write until the next successful one (true before any write). */
bool gh_store_writable(gh_store_db_t db);

#endif
