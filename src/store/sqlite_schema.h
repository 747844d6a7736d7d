/*
 * sqlite_schema.h — the schema of an SQLite file of the data dir (users.db, sessions.db):
 * numbered migrations kept in PRAGMA user_version, run in one transaction.
 *
 * The one design decision: migrations only ever append. migrations[i] brings a file from
 * version i to i + 1 and is never edited once released (a file in the field may have run it);
 * a file from a newer Gatehouse is refused rather than half understood; and a crash mid-way
 * leaves the old version intact, because the version is written in the same transaction.
 */
#ifndef GH_STORE_SQLITE_SCHEMA_H
#define GH_STORE_SQLITE_SCHEMA_H

#include <sqlite3.h>
#include <stddef.h>

#include "common/err.h"

/* Runs sql (one row, one integer column) into *out. Returns an SQLite code (SQLITE_OK). */
int gh_sqlite_read_int(sqlite3 *db, const char *sql, int *out);

/* Brings db (the file at path; what names it in the log: "user database") up to version n by
 * running migrations[version .. n - 1]. Returns 0 or GH_ESTORE (logged). */
int gh_sqlite_migrate(sqlite3 *db, const char *path, const char *what,
                      const char *const *migrations, int n) GH_WUR;

#endif
