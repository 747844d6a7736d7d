/* test_user_sqlite.c — the SQLite user store: uniqueness without case, durability, paging, and
 * that everything it allocates is returned on close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "store/user.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/gh-users-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void create_and_find_case_insensitively(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    gh_user_t u, v;
    assert_int_equal(gh_user_create(s, "Alice", "$argon2id$x", 1000, &u), 0);
    assert_true(u.id > 0);
    assert_int_equal(gh_user_create(s, "alice", "$argon2id$y", 1001, &v), GH_EEXISTS);
    assert_int_equal(gh_user_get_by_name(s, "ALICE", &v), 0);
    assert_string_equal(v.username, "Alice");
    assert_string_equal(v.password_hash, "$argon2id$x");
    assert_int_equal(v.id, u.id);
    assert_int_equal(v.created_at_ms, 1000);
    assert_int_equal(gh_user_get_by_id(s, u.id, &v), 0);
    assert_string_equal(v.username, "Alice");
    assert_int_equal(gh_user_get_by_name(s, "bob", &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_id(s, u.id + 100, &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_ping(s), 0);
    gh_user_store_close(&s);
    assert_null(s);
}

static void password_delete_and_durability(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    gh_user_t u;
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    assert_int_equal(gh_user_create(s, "carol", "h1", 1, &u), 0);
    assert_int_equal(gh_user_create(s, "dave", "h2", 2, &u), 0);
    uint64_t dave = u.id;
    assert_int_equal(gh_user_set_password(s, dave, "h3"), 0);
    assert_int_equal(gh_user_set_password(s, dave + 100, "h3"), GH_ENOTFOUND);
    gh_user_store_close(&s);

    assert_int_equal(gh_user_sqlite_open(dir, &s), 0); /* reopened: still there */
    assert_int_equal(gh_user_get_by_name(s, "dave", &u), 0);
    assert_string_equal(u.password_hash, "h3");
    assert_int_equal(gh_user_del(s, dave), 0);
    assert_int_equal(gh_user_del(s, dave), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "dave", &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, "carol", &u), 0);
    gh_user_store_close(&s);
}

static void injection_looking_names_are_literal(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    gh_user_t u;
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    const char *name = "x' OR '1'='1";
    assert_int_equal(gh_user_create(s, name, "h", 1, &u), 0);
    assert_int_equal(gh_user_get_by_name(s, "x", &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_name(s, name, &u), 0);
    assert_string_equal(u.username, name);
    gh_user_store_close(&s);
}

static void list_pages_in_id_order(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    gh_user_t u, page[10];
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%02d", i);
        assert_int_equal(gh_user_create(s, name, "hash", i, &u), 0);
    }
    uint64_t after = 0;
    size_t total = 0, n;
    do {
        assert_int_equal(gh_user_list(s, after, page, 10, &n), 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(page[i].id > after);
            assert_string_equal(page[i].password_hash, "");
            after = page[i].id;
        }
        total += n;
    } while (n == 10);
    assert_int_equal(total, 25);
    gh_user_store_close(&s);
}

static void memory_returns_to_baseline(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_USERS), o0 = gh_mem_objects(GH_MEM_USERS);
    gh_user_store_t *s = NULL;
    gh_user_t u;
    assert_int_equal(gh_user_sqlite_open(dir, &s), 0);
    assert_true(gh_mem_objects(GH_MEM_USERS) > o0);
    assert_int_equal(gh_user_create(s, "erin", "h", 1, &u), 0);
    gh_user_store_close(&s);
    assert_int_equal(gh_mem_bytes(GH_MEM_USERS), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_find_case_insensitively, setup, teardown),
        cmocka_unit_test_setup_teardown(password_delete_and_durability, setup, teardown),
        cmocka_unit_test_setup_teardown(injection_looking_names_are_literal, setup, teardown),
        cmocka_unit_test_setup_teardown(list_pages_in_id_order, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_returns_to_baseline, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
