/* test_user_sqlite.c — the SQLite user store: the shared user suite (user_suite.h) against it,
 * then what only the embedded store promises: a private data dir and file, WAL mode, the
 * schema version it writes and refuses, and SQLite's own heap reported as the `sqlite` component.
 */
#include <ftw.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "user_suite.h"

static int sqlite_open(gh_user_store_t **out)
{
    return gh_user_sqlite_open(user_suite_dir, out);
}

static const user_backend_t sqlite_backend = {.name = "sqlite",
                                              .setup = user_suite_dir_setup,
                                              .teardown = user_suite_dir_teardown,
                                              .open = sqlite_open,
                                              .set_email = user_suite_sqlite_set_email};

static void data_dir_and_file_are_private(void **state)
{
    (void)state;
    char sub[300];
    snprintf(sub, sizeof sub, "%s/data", user_suite_dir);
    gh_user_store_t *s = NULL;
    assert_int_equal(gh_user_sqlite_open(sub, &s), 0); /* created when missing */
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    char db[320];
    snprintf(db, sizeof db, "%s/users.db", sub);
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    gh_user_store_close(&s);

    char missing[320];
    snprintf(missing, sizeof missing, "%s/no/such/parent", user_suite_dir);
    assert_int_equal(gh_user_sqlite_open(missing, &s), GH_EIO);
    assert_null(s);
}

static void wal_mode_and_schema_version_are_set(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_store_close(&s);
    char db[300];
    snprintf(db, sizeof db, "%s/users.db", user_suite_dir);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal"); /* persistent */
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 5); /* 2: audit, 3: factors, 4: email, 5: oidc */
    sqlite3_finalize(st);
    sqlite3_close(raw);
}

static void newer_schema_is_refused(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "hank", "h", 1, &u), 0);
    gh_user_store_close(&s);

    char db[300];
    snprintf(db, sizeof db, "%s/users.db", user_suite_dir);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    size_t o0 = gh_mem_objects(GH_MEM_USERS);
    assert_int_equal(gh_user_sqlite_open(user_suite_dir, &s), GH_ESTORE);
    assert_null(s);
    assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);
}

static int set_password_to_x(gh_user_store_t *s, void *arg)
{
    return gh_user_set_password(s, *(uint64_t *)arg, "x");
}

/* A change and its audit event are one transaction: when the event cannot be stored, the change
 * is rolled back too (an event refused by a trigger stands for a full disk). */
static void a_change_and_its_event_commit_together(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "ivy", "old", 1, &u), 0);
    char db[300];
    snprintf(db, sizeof db, "%s/users.db", user_suite_dir);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_busy_timeout(raw, 5000);
    assert_int_equal(sqlite3_exec(raw,
                                  "CREATE TRIGGER refuse BEFORE INSERT ON audit_events "
                                  "BEGIN SELECT RAISE(ABORT, 'no room'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    gh_audit_event_t ev;
    memset(&ev, 0, sizeof ev);
    snprintf(ev.type, sizeof ev.type, "password.changed");
    ev.user_id = u.id;
    assert_int_equal(gh_user_audited(s, &ev, set_password_to_x, &u.id), GH_ESTORE);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), 0);
    assert_string_equal(u.password_hash, "old"); /* rolled back with the event */
    assert_int_equal(sqlite3_exec(raw, "DROP TRIGGER refuse", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    assert_int_equal(gh_user_audited(s, &ev, set_password_to_x, &u.id), 0);
    assert_true(ev.id > 0);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), 0);
    assert_string_equal(u.password_hash, "x");
    /* and the store takes other writes after the refused one */
    assert_int_equal(gh_user_create(s, "jay", "h", 1, &u), 0);
    gh_user_store_close(&s);
}

static void sqlite_heap_is_reported(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    assert_true(gh_mem_bytes(GH_MEM_SQLITE) > 0);
    gh_user_store_close(&s);
}

int main(int argc, char **argv)
{
    backend = &sqlite_backend;
    const struct CMUnitTest tests[] = {
        USER_SUITE_TESTS,
        USER_SUITE_TEST(data_dir_and_file_are_private),
        USER_SUITE_TEST(a_change_and_its_event_commit_together),
        USER_SUITE_TEST(wal_mode_and_schema_version_are_set),
        USER_SUITE_TEST(newer_schema_is_refused),
        USER_SUITE_TEST(sqlite_heap_is_reported),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
