/*
 * audit_sqlite.h — the audit_events table of users.db (store-internal: used by user_sqlite.c,
 * which owns the connection and its lock).
 *
 * The one design decision: the table's statements are prepared once beside the user store's and
 * run under the user store's lock, so an event and the change it records share one connection
 * and one serialization point; the filters of a read are one parameterized statement whose
 * unused conditions switch themselves off — no SQL text is ever built from a filter.
 */
#ifndef GH_STORE_AUDIT_SQLITE_H
#define GH_STORE_AUDIT_SQLITE_H

#include <sqlite3.h>
#include <stddef.h>

#include "store/audit_record.h"

/* The migration that creates the table (and the users' admin and disabled columns). */
extern const char gh_audit_sqlite_migration[];

typedef struct {
    sqlite3_stmt *append, *read, *prune, *set_flags, *search;
} gh_audit_sqlite_t;

/* Prepares the statements: SQLITE_OK or an SQLite code. */
int gh_audit_sqlite_prepare(sqlite3 *db, gh_audit_sqlite_t *a);
void gh_audit_sqlite_finalize(gh_audit_sqlite_t *a);

/* Each returns an SQLite code (SQLITE_OK / SQLITE_DONE-equivalents mapped to SQLITE_OK). The
 * caller holds the connection's lock. */
int gh_audit_sqlite_append(sqlite3 *db, gh_audit_sqlite_t *a, gh_audit_event_t *ev);
int gh_audit_sqlite_read(gh_audit_sqlite_t *a, const gh_audit_query_t *q, gh_audit_event_t *out,
                         size_t cap, size_t *n);
int gh_audit_sqlite_prune(sqlite3 *db, gh_audit_sqlite_t *a, int64_t before_ms, size_t max,
                          size_t *removed);

#endif
