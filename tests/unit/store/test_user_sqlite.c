/* test_user_sqlite.c — the SQLite user store: uniqueness without case, durability across a
 * reopen, paging, literal storage of hostile names, input bounds, schema versioning, concurrent
 * callers, and that everything it allocates is returned on close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "store/user.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/gh-users-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static gh_user_store_t *open_store(void)
{
    gh_user_store_t *s = NULL;
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    assert_non_null(s);
    return s;
}

static void create_and_find_case_insensitively(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, v;
    assert_int_equal(gh_user_create(s, "Alice", "$argon2id$x", 1000, &u), 0);
    assert_true(u.id > 0);
    assert_string_equal(u.username, "Alice");
    assert_int_equal(u.created_at_ms, 1000);
    assert_int_equal(gh_user_create(s, "alice", "$argon2id$y", 1001, &v), GH_EEXISTS);
    assert_int_equal(gh_user_create(s, "ALICE", "$argon2id$y", 1001, &v), GH_EEXISTS);

    assert_int_equal(gh_user_get_by_name(s, "ALICE", &v), 0);
    assert_int_equal(v.id, u.id);
    assert_string_equal(v.username, "Alice"); /* the first spelling is kept */
    assert_string_equal(v.password_hash, "$argon2id$x");
    assert_int_equal(v.created_at_ms, 1000);

    assert_int_equal(gh_user_get_by_id(s, u.id, &v), 0);
    assert_string_equal(v.username, "Alice");
    assert_string_equal(v.password_hash, "$argon2id$x");

    assert_int_equal(gh_user_get_by_name(s, "bob", &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "Alic", &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_id(s, u.id + 100, &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_id(s, UINT64_MAX, &v), GH_ENOTFOUND);
    gh_user_store_close(&s);
    assert_null(s);
    gh_user_store_close(&s); /* closing NULL is harmless */
}

static void set_password_and_delete(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, carol;
    assert_int_equal(gh_user_create(s, "carol", "h1", 1, &carol), 0);
    assert_int_equal(gh_user_create(s, "dave", "h2", 2, &u), 0);
    uint64_t dave = u.id;
    assert_int_not_equal(dave, carol.id);

    assert_int_equal(gh_user_set_password(s, dave, "h3"), 0);
    assert_int_equal(gh_user_get_by_id(s, dave, &u), 0);
    assert_string_equal(u.password_hash, "h3");
    assert_int_equal(gh_user_get_by_id(s, carol.id, &u), 0);
    assert_string_equal(u.password_hash, "h1"); /* only dave changed */
    assert_int_equal(gh_user_set_password(s, dave + 100, "h4"), GH_ENOTFOUND);

    assert_int_equal(gh_user_del(s, dave), 0);
    assert_int_equal(gh_user_del(s, dave), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "dave", &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_id(s, dave, &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_set_password(s, dave, "h5"), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "carol", &u), 0);

    /* the name is free again, and a new account never reuses the old id (AUTOINCREMENT) */
    assert_int_equal(gh_user_create(s, "Dave", "h6", 3, &u), 0);
    assert_true(u.id > dave);
    gh_user_store_close(&s);
}

static void reopen_finds_users_again(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t erin, frank, u;
    assert_int_equal(gh_user_create(s, "Erin", "h1", 11, &erin), 0);
    assert_int_equal(gh_user_create(s, "frank", "h2", 12, &frank), 0);
    assert_int_equal(gh_user_set_password(s, frank.id, "h3"), 0);
    gh_user_store_close(&s);

    s = open_store();
    assert_int_equal(gh_user_get_by_name(s, "erin", &u), 0);
    assert_int_equal(u.id, erin.id);
    assert_string_equal(u.username, "Erin");
    assert_string_equal(u.password_hash, "h1");
    assert_int_equal(u.created_at_ms, 11);
    assert_int_equal(gh_user_get_by_id(s, frank.id, &u), 0);
    assert_string_equal(u.password_hash, "h3");
    assert_int_equal(gh_user_create(s, "FRANK", "h", 13, &u), GH_EEXISTS);
    gh_user_store_close(&s);
}

static void injection_looking_names_are_literal(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    const char *names[] = {"x' OR '1'='1", "Robert'); DROP TABLE users;--", "%", "_", "a\"b", "x"};
    size_t n = sizeof names / sizeof *names;
    assert_int_equal(gh_user_create(s, "victim", "secret-hash", 1, &u), 0);
    for (size_t i = 0; i + 1 < n; i++) /* all but "x" */
        assert_int_equal(gh_user_create(s, names[i], "h", 1, &u), 0);
    assert_int_equal(gh_user_get_by_name(s, "x", &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "' OR 1=1 --", &u), GH_ENOTFOUND);
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(gh_user_get_by_name(s, names[i], &u), 0);
        assert_string_equal(u.username, names[i]);
        assert_string_equal(u.password_hash, "h");
    }
    /* the table and the other account survived */
    assert_int_equal(gh_user_get_by_name(s, "victim", &u), 0);
    assert_string_equal(u.password_hash, "secret-hash");
    gh_user_t page[16];
    size_t got;
    assert_int_equal(gh_user_list(s, 0, page, 16, &got), 0);
    assert_int_equal(got, n); /* victim + n - 1 */
    gh_user_store_close(&s);
}

static void list_pages_in_id_order(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, page[10];
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%02d", i);
        assert_int_equal(gh_user_create(s, name, "hash", 100 + i, &u), 0);
    }
    uint64_t after = 0;
    size_t total = 0, n, pages = 0;
    do {
        assert_int_equal(gh_user_list(s, after, page, 10, &n), 0);
        for (size_t i = 0; i < n; i++) {
            char want[16];
            snprintf(want, sizeof want, "user%02zu", total + i);
            assert_true(page[i].id > after);
            assert_string_equal(page[i].username, want);
            assert_string_equal(page[i].password_hash, ""); /* never listed */
            assert_int_equal(page[i].created_at_ms, 100 + (int64_t)(total + i));
            after = page[i].id;
        }
        total += n;
        pages++;
    } while (n == 10);
    assert_int_equal(total, 25);
    assert_int_equal(pages, 3);
    assert_int_equal(gh_user_list(s, after, page, 10, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_list(s, 0, page, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_list(s, UINT64_MAX, page, 10, &n), 0);
    assert_int_equal(n, 0);
    gh_user_store_close(&s);
}

static void out_of_bounds_input_is_refused(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    char name65[66], hash128[129];
    memset(name65, 'n', 65);
    name65[65] = '\0';
    memset(hash128, 'h', 128);
    hash128[128] = '\0';
    assert_int_equal(gh_user_create(s, "", "h", 1, &u), GH_EINVAL);
    assert_int_equal(gh_user_create(s, name65, "h", 1, &u), GH_EINVAL);
    assert_int_equal(gh_user_create(s, "gina", hash128, 1, &u), GH_EINVAL);
    assert_int_equal(gh_user_get_by_name(s, name65, &u), GH_ENOTFOUND);

    name65[64] = '\0'; /* exactly GH_USERNAME_MAX */
    hash128[127] = '\0';
    assert_int_equal(gh_user_create(s, name65, hash128, 1, &u), 0);
    assert_int_equal(gh_user_get_by_name(s, name65, &u), 0);
    assert_string_equal(u.username, name65);
    assert_string_equal(u.password_hash, hash128);
    hash128[127] = 'h';
    assert_int_equal(gh_user_set_password(s, u.id, hash128), GH_EINVAL);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), 0);
    assert_int_equal(strlen(u.password_hash), 127); /* unchanged */
    gh_user_store_close(&s);
}

static void data_dir_and_file_are_private(void **state)
{
    (void)state;
    char sub[300];
    snprintf(sub, sizeof sub, "%s/data", dir);
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
    snprintf(missing, sizeof missing, "%s/no/such/parent", dir);
    assert_int_equal(gh_user_sqlite_open(missing, &s), GH_EIO);
    assert_null(s);
}

static void wal_mode_and_schema_version_are_set(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_store_close(&s);
    char db[300];
    snprintf(db, sizeof db, "%s/users.db", dir);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal"); /* persistent */
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
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
    snprintf(db, sizeof db, "%s/users.db", dir);
    sqlite3 *raw = NULL;
    assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
    assert_int_equal(sqlite3_exec(raw, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);

    size_t o0 = gh_mem_objects(GH_MEM_USERS);
    assert_int_equal(gh_user_sqlite_open(dir, &s), GH_ESTORE);
    assert_null(s);
    assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);
}

static void ping_answers(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    assert_int_equal(gh_user_ping(s), 0); /* empty table */
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "ivy", "h", 1, &u), 0);
    assert_int_equal(gh_user_ping(s), 0);
    gh_user_store_close(&s);
}

#define THREADS 4
#define PER_THREAD 50

typedef struct {
    gh_user_store_t *store;
    int index;
    int failures;
} worker_arg_t;

static void *create_many(void *arg)
{
    worker_arg_t *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char name[32];
        gh_user_t u, v;
        snprintf(name, sizeof name, "t%d-u%d", w->index, i);
        if (gh_user_create(w->store, name, "h", i, &u) != 0 ||
            gh_user_get_by_name(w->store, name, &v) != 0 || v.id != u.id)
            w->failures++;
        /* every thread also tries a name that exists in another case: none may get it */
        if (i == 0 && gh_user_create(w->store, "contended", "h", 0, &u) == 0)
            w->failures += 1000;
    }
    return NULL;
}

static void concurrent_callers_are_serialized(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "Contended", "h", 0, &u), 0);
    pthread_t t[THREADS];
    worker_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (worker_arg_t){.store = s, .index = i};
        assert_int_equal(pthread_create(&t[i], NULL, create_many, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    gh_user_t page[THREADS * PER_THREAD + 8];
    size_t n;
    assert_int_equal(gh_user_list(s, 0, page, sizeof page / sizeof *page, &n), 0);
    assert_int_equal(n, THREADS * PER_THREAD + 1);
    gh_user_store_close(&s);
}

static void memory_returns_to_baseline(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_USERS), o0 = gh_mem_objects(GH_MEM_USERS);
    gh_user_store_t *s = open_store();
    assert_true(gh_mem_objects(GH_MEM_USERS) > o0);
    assert_true(gh_mem_bytes(GH_MEM_SQLITE) > 0); /* SQLite's heap is reported */
    gh_user_t u;
    for (int i = 0; i < 20; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i);
        assert_int_equal(gh_user_create(s, name, "h", 1, &u), 0);
    }
    gh_user_store_close(&s);
    assert_int_equal(gh_mem_bytes(GH_MEM_USERS), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);

    /* every gh_mem allocation open makes can fail: the answer is GH_ENOMEM and nothing leaks */
    for (uint64_t n = 1;; n++) {
        gh_mem_fail_at(n);
        int rc = gh_user_sqlite_open(dir, &s);
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        if (!fired) {
            assert_int_equal(rc, 0);
            gh_user_store_close(&s);
            break;
        }
        assert_int_equal(rc, GH_ENOMEM);
        assert_null(s);
        assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);
    }
    assert_int_equal(gh_mem_bytes(GH_MEM_USERS), b0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_find_case_insensitively, setup, teardown),
        cmocka_unit_test_setup_teardown(set_password_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_finds_users_again, setup, teardown),
        cmocka_unit_test_setup_teardown(injection_looking_names_are_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pages_in_id_order, setup, teardown),
        cmocka_unit_test_setup_teardown(out_of_bounds_input_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(data_dir_and_file_are_private, setup, teardown),
        cmocka_unit_test_setup_teardown(wal_mode_and_schema_version_are_set, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(ping_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(concurrent_callers_are_serialized, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_returns_to_baseline, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
