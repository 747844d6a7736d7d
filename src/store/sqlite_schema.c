/*
 * sqlite_schema.c — numbered, append-only migrations of an SQLite file of the data dir
 * (sqlite_schema.h), for users.db and sessions.db alike.
 */
#include "store/sqlite_schema.h"

#include <stdio.h>

#include "common/log.h"

int gh_sqlite_read_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int gh_sqlite_migrate(sqlite3 *db, const char *path, const char *what,
                      const char *const *migrations, int n)
{
    char msg[96];
    int version = 0;
    if (gh_sqlite_read_int(db, "PRAGMA user_version", &version) != SQLITE_OK)
        return GH_ESTORE;
    if (version > n) {
        snprintf(msg, sizeof msg, "the %s was written by a newer Gatehouse", what);
        GH_LOG(GH_LOG_ERROR, msg, GH_LS("path", path), GH_LI("schema_version", version),
               GH_LI("supported", n));
        return GH_ESTORE;
    }
    if (version == n)
        return 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return GH_ESTORE;
    /* Another process may have migrated between the read above and our write lock. */
    if (gh_sqlite_read_int(db, "PRAGMA user_version", &version) != SQLITE_OK)
        goto fail;
    for (int v = version; v < n; v++)
        if (sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    if (version < n) {
        char sql[48];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", n);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            goto fail;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (version < n) {
        snprintf(msg, sizeof msg, "%s schema migrated", what);
        GH_LOG(GH_LOG_INFO, msg, GH_LS("path", path), GH_LI("from", version), GH_LI("to", n));
    }
    return 0;
fail:
    snprintf(msg, sizeof msg, "%s migration failed", what);
    GH_LOG(GH_LOG_ERROR, msg, GH_LS("path", path), GH_LS("detail", sqlite3_errmsg(db)));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return GH_ESTORE;
}
