/*
 * user_sqlite_common.c — what both halves of the SQLite user store use (user_sqlite.h): the
 * mutex around the one connection, and how a failure is logged and marks the store unready.
 * Its own file so that neither half calls the other.
 */
#include "common/log.h"
#include "store/user_sqlite.h"
#include "store/writes.h"

sqlite3 *gh_user_sqlite_lock(gh_user_sqlite_t *s)
{
    pthread_mutex_lock(&s->lock);
    return s->db;
}

void gh_user_sqlite_unlock(gh_user_sqlite_t *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* Logs a SQLite failure (never a value that was bound: it could be a hash) and maps it. */
int gh_user_sqlite_error(gh_user_sqlite_t *s, const char *op, int rc)
{
    GH_LOG(GH_LOG_ERROR, "user store error", GH_LS("op", op), GH_LI("sqlite_rc", rc),
           GH_LS("detail", sqlite3_errmsg(s->db)));
    return GH_ESTORE;
}

/* A write's outcome (lock held): a failure makes the store unready until a write succeeds. */
void gh_user_sqlite_note_write(gh_user_sqlite_t *s, int ret)
{
    bool ok = ret != GH_ESTORE;
    gh_store_write_outcome(GH_STORE_DB_USERS, ok);
    if (!ok && !s->failing)
        GH_LOG(GH_LOG_ERROR, "the user database cannot write",
               GH_LS("effect", "registrations and password changes answer 503; /readyz answers "
                               "503 until a write succeeds"));
    else if (ok && s->failing)
        GH_LOG(GH_LOG_WARN, "the user database writes again");
    s->failing = !ok;
}
