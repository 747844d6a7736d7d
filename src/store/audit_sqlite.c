/*
 * audit_sqlite.c — the audit_events table of users.db and the users' role columns (see
 * audit_sqlite.h for the one design decision).
 *
 * The table is append-only: a trigger refuses every UPDATE; rows leave only through retention's
 * bounded DELETE of the oldest rows (gh_audit_sqlite_prune). Ids are AUTOINCREMENT, so they only
 * grow and never come back after a prune — what keyset pagination (id < cursor) relies on.
 */
#include "store/audit_sqlite.h"

#include <stdio.h>
#include <string.h>

const char gh_audit_sqlite_migration[] =
    "ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE audit_events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " time INTEGER NOT NULL,"
    " type TEXT NOT NULL,"
    " actor TEXT NOT NULL,"
    " user_id INTEGER NOT NULL,"
    " session_id TEXT NOT NULL,"
    " ip TEXT NOT NULL,"
    " user_agent TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " outcome TEXT NOT NULL,"
    " detail TEXT NOT NULL);"
    "CREATE INDEX audit_events_user ON audit_events (user_id, id);"
    "CREATE INDEX audit_events_time ON audit_events (time);"
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events"
    " BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;";

#define COLUMNS "id, time, type, actor, user_id, session_id, ip, user_agent, node, outcome, detail"

static const char sql_append[] =
    "INSERT INTO audit_events (time, type, actor, user_id, session_id, ip, user_agent, node,"
    " outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
/* Each filter switches itself off at its zero value. "admin" as a type matches every
 * admin.<action> (a range on the text, not LIKE: nothing in the filter is a pattern). */
static const char sql_read[] =
    "SELECT " COLUMNS " FROM audit_events WHERE"
    " (?1 = 0 OR user_id = ?1)"
    " AND (?2 = '' OR type = ?2 OR (?2 = 'admin' AND type >= 'admin.' AND type < 'admin/'))"
    " AND (?3 = 0 OR time >= ?3) AND (?4 = 0 OR time < ?4) AND (?5 = 0 OR id < ?5)"
    " ORDER BY id DESC LIMIT ?6";
static const char sql_prune[] =
    "DELETE FROM audit_events WHERE id IN"
    " (SELECT id FROM audit_events WHERE time < ?1 ORDER BY id LIMIT ?2)";
static const char sql_set_flags[] =
    "UPDATE users SET admin = CASE WHEN ?2 < 0 THEN admin ELSE ?2 END,"
    " disabled = CASE WHEN ?3 < 0 THEN disabled ELSE ?3 END WHERE id = ?1";
/* A prefix as a range of the NOCASE collation: [prefix, prefix || x'f4908080'), on the name or
 * the email address. No LIKE, so '%' and '_' in a search are plain characters. */
static const char sql_search[] =
    "SELECT id, username, '', created_at, admin, disabled FROM users"
    " WHERE ((username >= ?1 AND username < ?1 || char(1114111))"
    " OR (email COLLATE NOCASE >= ?1 AND email COLLATE NOCASE < ?1 || char(1114111)))"
    " AND id > ?2 ORDER BY id LIMIT ?3";

int gh_audit_sqlite_prepare(sqlite3 *db, gh_audit_sqlite_t *a)
{
    const char *sql[] = {sql_append, sql_read, sql_prune, sql_set_flags, sql_search};
    sqlite3_stmt **st[] = {&a->append, &a->read, &a->prune, &a->set_flags, &a->search};
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, st[i], NULL);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

void gh_audit_sqlite_finalize(gh_audit_sqlite_t *a)
{
    sqlite3_finalize(a->append);
    sqlite3_finalize(a->read);
    sqlite3_finalize(a->prune);
    sqlite3_finalize(a->set_flags);
    sqlite3_finalize(a->search);
    memset(a, 0, sizeof *a);
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int gh_audit_sqlite_append(sqlite3 *db, gh_audit_sqlite_t *a, gh_audit_event_t *ev)
{
    sqlite3_stmt *st = a->append;
    const char *texts[] = {ev->type,       ev->actor, NULL,        ev->session_id, ev->ip,
                           ev->user_agent, ev->node,  ev->outcome, ev->detail};
    int rc = sqlite3_bind_int64(st, 1, ev->time_ms);
    for (int i = 0; rc == SQLITE_OK && i < 9; i++)
        rc = i == 2 ? sqlite3_bind_int64(st, 4, (sqlite3_int64)ev->user_id)
                    : sqlite3_bind_text(st, i + 2, texts[i], -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ev->id = sqlite3_last_insert_rowid(db);
        rc = SQLITE_OK;
    }
    done(st);
    return rc;
}

static void col(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int gh_audit_sqlite_read(gh_audit_sqlite_t *a, const gh_audit_query_t *q, gh_audit_event_t *out,
                         size_t cap, size_t *n)
{
    sqlite3_stmt *st = a->read;
    *n = 0;
    int rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)q->user_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, q->type, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 3, q->since_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 4, q->until_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 5, q->before_id);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 6, (sqlite3_int64)cap);
    while (rc == SQLITE_OK && *n < cap) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            rc = s;
            break;
        }
        gh_audit_event_t *ev = &out[*n];
        memset(ev, 0, sizeof *ev);
        ev->id = sqlite3_column_int64(st, 0);
        ev->time_ms = sqlite3_column_int64(st, 1);
        col(st, 2, ev->type, sizeof ev->type);
        col(st, 3, ev->actor, sizeof ev->actor);
        ev->user_id = (uint64_t)sqlite3_column_int64(st, 4);
        col(st, 5, ev->session_id, sizeof ev->session_id);
        col(st, 6, ev->ip, sizeof ev->ip);
        col(st, 7, ev->user_agent, sizeof ev->user_agent);
        col(st, 8, ev->node, sizeof ev->node);
        col(st, 9, ev->outcome, sizeof ev->outcome);
        col(st, 10, ev->detail, sizeof ev->detail);
        ++*n;
    }
    done(st);
    if (rc != SQLITE_OK)
        *n = 0;
    return rc;
}

int gh_audit_sqlite_prune(sqlite3 *db, gh_audit_sqlite_t *a, int64_t before_ms, size_t max,
                          size_t *removed)
{
    sqlite3_stmt *st = a->prune;
    *removed = 0;
    int rc = sqlite3_bind_int64(st, 1, before_ms);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        *removed = (size_t)sqlite3_changes(db);
        rc = SQLITE_OK;
    }
    done(st);
    return rc;
}
