/*
 * user_sqlite.h — what the SQLite user store's files share (user_sqlite.c, the users;
 * user_factors_sqlite.c, second factors and recovery codes; user_sqlite_common.c, what both
 * use): the store is one connection behind one mutex.
 */
#ifndef GH_STORE_USER_SQLITE_H
#define GH_STORE_USER_SQLITE_H

#include <sqlite3.h>

#include "store/audit_sqlite.h"
#include "store/user.h"

#include <pthread.h>
#include <stdbool.h>

#define GH_USER_SQLITE_STATEMENTS 16 /* prepared at open (user_sqlite.c's list) */

typedef struct gh_user_sqlite {
    gh_user_store_t base; /* first: the interface pointer is the struct pointer */
    sqlite3 *db;
    sqlite3_stmt *st[GH_USER_SQLITE_STATEMENTS];
    gh_audit_sqlite_t audit; /* audit_events and the role columns (audit_sqlite.c) */
    pthread_mutex_t lock;    /* serializes every use of db and st[] (recursive) */
    bool failing;         /* the last write failed: ping answers GH_ESTORE until one succeeds */
} gh_user_sqlite_t;

/* Takes the store's mutex and answers its connection; gh_user_sqlite_unlock gives it back. */
sqlite3 *gh_user_sqlite_lock(gh_user_sqlite_t *s);
void gh_user_sqlite_unlock(gh_user_sqlite_t *s);
/* Logs a failure of op (never a bound value) and answers GH_ESTORE (lock held). */
int gh_user_sqlite_error(gh_user_sqlite_t *s, const char *op, int rc);
/* A write's outcome (lock held): a GH_ESTORE makes the store unready until a write succeeds. */
void gh_user_sqlite_note_write(gh_user_sqlite_t *s, int ret);

/* The factor operations of gh_user_store_ops_t (user.h), for user_sqlite.c's table. */
int gh_user_sqlite_factor_add(gh_user_store_t *s, gh_factor_t *f);
int gh_user_sqlite_factor_list(gh_user_store_t *s, uint64_t user_id, gh_factor_t *out, size_t cap,
                               size_t *n);
int gh_user_sqlite_factor_get(gh_user_store_t *s, uint64_t user_id, uint64_t id, gh_factor_t *out);
int gh_user_sqlite_factor_by_credential(gh_user_store_t *s, const uint8_t *cred, size_t len,
                                        gh_factor_t *out);
int gh_user_sqlite_factor_rename(gh_user_store_t *s, uint64_t user_id, uint64_t id,
                                 const char *name);
int gh_user_sqlite_factor_confirm(gh_user_store_t *s, uint64_t user_id, uint64_t id);
int gh_user_sqlite_factor_use(gh_user_store_t *s, uint64_t user_id, uint64_t id, uint64_t counter,
                              int64_t now_ms);
int gh_user_sqlite_factor_del(gh_user_store_t *s, uint64_t user_id, uint64_t id);
int gh_user_sqlite_factor_del_all(gh_user_store_t *s, uint64_t user_id, size_t *n);
int gh_user_sqlite_recovery_set(gh_user_store_t *s, uint64_t user_id,
                                const uint8_t (*hashes)[GH_RECOVERY_HASH_LEN], size_t n,
                                int64_t now_ms);
int gh_user_sqlite_recovery_use(gh_user_store_t *s, uint64_t user_id,
                                const uint8_t hash[GH_RECOVERY_HASH_LEN], int64_t now_ms);
int gh_user_sqlite_recovery_state(gh_user_store_t *s, uint64_t user_id, size_t *left,
                                  int64_t *last_used_ms);

#endif
