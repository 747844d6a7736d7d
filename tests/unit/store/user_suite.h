/*
 * user_suite.h — the user store's behaviour, one suite for every backend: a test binary
 * (test_user_sqlite.c, test_user_postgres.c) sets `backend` and lists USER_SUITE_TESTS among its
 * own. Uniqueness without case, durability across a reopen, paging, literal storage of hostile
 * names, input bounds, concurrent callers, and everything the store allocates returned on close
 * hold for every backend alike; what only one backend promises (file modes, WAL, migrations
 * under concurrency, surviving a server restart) lives in that backend's own file.
 */
#ifndef GH_TESTS_UNIT_STORE_USER_SUITE_H
#define GH_TESTS_UNIT_STORE_USER_SUITE_H

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "store/mail.h"
#include "store/user.h"

typedef struct {
    const char *name;
    /* Makes a fresh, empty place for one test's users, and removes it after. */
    int (*setup)(void);
    int (*teardown)(void);
    /* Opens the store on the current test's place; a second open sees the same users. */
    int (*open)(gh_user_store_t **out);
    /* Gives a user an email address through the mail store on the same database. */
    int (*set_email)(uint64_t user_id, const char *email);
} user_backend_t;

static const user_backend_t *backend;

/* A fresh private directory per test for the backends that live in files (SQLite, the cache in
 * front of it): user_suite_dir_setup makes user_suite_dir, user_suite_dir_teardown removes it. */
__attribute__((unused)) static char user_suite_dir[256];

static inline int user_suite_dir_setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(user_suite_dir, sizeof user_suite_dir, "%s/gh-users-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(user_suite_dir) ? 0 : -1;
}

static inline int user_suite_remove_entry(const char *path, const struct stat *sb, int flag,
                                          struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline int user_suite_dir_teardown(void)
{
    return nftw(user_suite_dir, user_suite_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int user_suite_setup(void **state)
{
    (void)state;
    return backend->setup();
}

static int user_suite_teardown(void **state)
{
    (void)state;
    return backend->teardown();
}

static gh_user_store_t *open_store(void)
{
    gh_user_store_t *s = NULL;
    assert_int_equal(backend->open(&s), 0);
    assert_non_null(s);
    return s;
}

/* The SQLite-file backends (SQLite, the cache in front of it) share this one. */
__attribute__((unused)) static int user_suite_sqlite_set_email(uint64_t user_id, const char *email)
{
    gh_mail_store_t *m = NULL;
    int rc = gh_mail_sqlite_open(user_suite_dir, &m);
    if (rc == 0)
        rc = m->ops->set_email(m, user_id, email, true);
    gh_mail_store_close(&m);
    return rc;
}

/* ---- the suite ---- */

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

    /* the name is free again, and a new account never reuses the old id */
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
        int rc = backend->open(&s);
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

/* ---- roles and the audit trail ---- */

static void roles_are_kept_and_search_is_a_literal_prefix(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, v, page[8];
    size_t n;
    assert_int_equal(gh_user_create(s, "Alice", "h", 1, &u), 0);
    assert_false(u.admin);
    assert_false(u.disabled);
    assert_int_equal(gh_user_create(s, "alina", "h", 1, &v), 0);
    assert_int_equal(gh_user_create(s, "al%ice", "h", 1, &v), 0);
    assert_int_equal(gh_user_create(s, "bob", "h", 1, &v), 0);
    assert_int_equal(gh_user_set_flags(s, u.id, 1, -1), 0);
    assert_int_equal(gh_user_get_by_name(s, "alice", &u), 0);
    assert_true(u.admin);
    assert_false(u.disabled);
    assert_int_equal(gh_user_set_flags(s, u.id, -1, 1), 0);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), 0);
    assert_true(u.admin);
    assert_true(u.disabled);
    assert_int_equal(gh_user_set_flags(s, u.id, 0, 0), 0);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), 0);
    assert_false(u.admin || u.disabled);
    assert_int_equal(gh_user_set_flags(s, 999999, 1, 1), GH_ENOTFOUND);
    /* any case; '%' and '_' are characters, not wildcards */
    assert_int_equal(gh_user_search(s, "AL", 0, page, 8, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(gh_user_search(s, "al%", 0, page, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].username, "al%ice");
    assert_int_equal(gh_user_search(s, "%", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "_lice", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "' OR 1=1 --", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "", 0, page, 2, &n), 0); /* paged */
    assert_int_equal(n, 2);
    assert_int_equal(gh_user_search(s, "", page[1].id, page, 8, &n), 0);
    assert_int_equal(n, 2);
    gh_user_store_close(&s);
}

static void search_matches_an_email_prefix_literally(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, v, w, page[8];
    size_t n;
    assert_int_equal(gh_user_create(s, "carol", "h", 1, &u), 0);
    assert_int_equal(gh_user_create(s, "dave", "h", 1, &v), 0);
    assert_int_equal(gh_user_create(s, "erin", "h", 1, &w), 0); /* no address */
    assert_int_equal(backend->set_email(u.id, "Carol.Ops@Example.org"), 0);
    assert_int_equal(backend->set_email(v.id, "d_1%x@example.net"), 0);
    /* any case, on the address as on the name */
    assert_int_equal(gh_user_search(s, "carol.o", 0, page, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].username, "carol");
    assert_int_equal(gh_user_search(s, "D_1%X@EXAMPLE", 0, page, 8, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(page[0].username, "dave");
    assert_int_equal(gh_user_search(s, "c", 0, page, 8, &n), 0); /* name and address: once */
    assert_int_equal(n, 1);
    /* '%' and '_' are characters; SQL in the prefix is text */
    assert_int_equal(gh_user_search(s, "d%", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "d_2", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "_", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "x' OR email IS NULL --", 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_search(s, "example.org", 0, page, 8, &n), 0); /* a prefix only */
    assert_int_equal(n, 0);
    /* an address-long prefix is searched; a longer one matches nobody */
    char longq[GH_USER_SEARCH_MAX + 2];
    memset(longq, 'c', sizeof longq - 1);
    longq[sizeof longq - 1] = '\0';
    assert_int_equal(gh_user_search(s, longq, 0, page, 8, &n), 0);
    assert_int_equal(n, 0);
    gh_user_store_close(&s);
}

static void audit_events_append_filter_page_and_prune(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_audit_event_t ev, out[16];
    size_t n;
    const char *types[] = {"login.failed", "login.succeeded", "admin.user_disable", "logout"};
    for (int i = 0; i < 12; i++) {
        memset(&ev, 0, sizeof ev);
        ev.time_ms = 1000 * (i + 1);
        snprintf(ev.type, sizeof ev.type, "%s", types[i % 4]);
        snprintf(ev.actor, sizeof ev.actor, "user:%d", i % 3 + 1);
        ev.user_id = (uint64_t)(i % 3 + 1);
        snprintf(ev.ip, sizeof ev.ip, "192.0.2.%d", i);
        snprintf(ev.user_agent, sizeof ev.user_agent, "ua \"quoted\" ' ; DROP TABLE users; --");
        snprintf(ev.outcome, sizeof ev.outcome, "success");
        snprintf(ev.detail, sizeof ev.detail, "n=%d", i);
        assert_int_equal(gh_user_audit_append(s, &ev), 0);
        assert_true(ev.id > 0);
    }
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 12);
    assert_string_equal(out[0].detail, "n=11"); /* newest first */
    assert_string_equal(out[0].user_agent, "ua \"quoted\" ' ; DROP TABLE users; --");
    for (size_t i = 1; i < n; i++)
        assert_true(out[i].id < out[i - 1].id);
    q.user_id = 2;
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 4);
    q.user_id = 0;
    snprintf(q.type, sizeof q.type, "admin");
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 3);
    snprintf(q.type, sizeof q.type, "login.%%");
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 0);
    q.type[0] = '\0';
    q.since_ms = 3000;
    q.until_ms = 6000;
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 3); /* 3000, 4000, 5000 */
    memset(&q, 0, sizeof q);
    assert_int_equal(gh_user_audit_read(s, &q, out, 5, &n), 0);
    assert_int_equal(n, 5);
    q.before_id = out[4].id;
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 7);
    size_t removed;
    assert_int_equal(gh_user_audit_prune(s, 5500, 2, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(gh_user_audit_prune(s, 5500, 100, &removed), 0);
    assert_int_equal(removed, 3);
    memset(&q, 0, sizeof q);
    assert_int_equal(gh_user_audit_read(s, &q, out, 16, &n), 0);
    assert_int_equal(n, 7);
    gh_user_store_close(&s);
}

static int suite_delete(gh_user_store_t *s, void *arg)
{
    return gh_user_del(s, *(uint64_t *)arg);
}

/* gh_user_audited: a change that succeeds is stored with its event; one that fails stores none
 * and answers its own error. */
static void audited_changes_come_with_their_event(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "kim", "h", 1, &u), 0);
    gh_audit_event_t ev, out[4];
    memset(&ev, 0, sizeof ev);
    snprintf(ev.type, sizeof ev.type, "user.deleted");
    ev.user_id = u.id;
    uint64_t missing = u.id + 1000;
    assert_int_equal(gh_user_audited(s, &ev, suite_delete, &missing), GH_ENOTFOUND);
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    size_t n;
    assert_int_equal(gh_user_audit_read(s, &q, out, 4, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(gh_user_audited(s, &ev, suite_delete, &u.id), 0);
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_audit_read(s, &q, out, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].type, "user.deleted");
    gh_user_store_close(&s);
}

/* ---- second factors (issue #18) ---- */

static gh_factor_t *new_factor(uint64_t user, gh_factor_type_t type, const char *name,
                               const char *secret)
{
    static gh_factor_t f;
    memset(&f, 0, sizeof f);
    f.user_id = user;
    f.type = type;
    snprintf(f.name, sizeof f.name, "%s", name);
    f.created_at_ms = 5000;
    f.secret_len = strlen(secret);
    memcpy(f.secret, secret, f.secret_len);
    return &f;
}

static void factors_are_kept_per_user_and_survive_a_reopen(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t a, b;
    assert_int_equal(gh_user_create(s, "fa", "h", 1, &a), 0);
    assert_int_equal(gh_user_create(s, "fb", "h", 1, &b), 0);
    gh_factor_t *f = new_factor(a.id, GH_FACTOR_TOTP, "phone", "sealed\0bytes");
    f->secret_len = 12; /* a NUL inside: blobs are kept byte for byte */
    memcpy(f->secret, "sealed\0bytes", 12);
    assert_int_equal(gh_user_factor_add(s, f), 0);
    uint64_t totp = f->id;
    assert_true(totp > 0);
    f = new_factor(a.id, GH_FACTOR_WEBAUTHN, "key", "cose");
    f->confirmed = true;
    f->credential_len = 3;
    memcpy(f->credential, "\x01\x00\x02", 3);
    assert_int_equal(gh_user_factor_add(s, f), 0);
    uint64_t key = f->id;
    /* the credential id is unique across users */
    f = new_factor(b.id, GH_FACTOR_WEBAUTHN, "key", "cose");
    f->credential_len = 3;
    memcpy(f->credential, "\x01\x00\x02", 3);
    assert_int_equal(gh_user_factor_add(s, f), GH_EEXISTS);
    /* bounds, and a user that does not exist */
    assert_int_equal(gh_user_factor_add(s, new_factor(a.id, GH_FACTOR_TOTP, "", "x")), GH_EINVAL);
    f = new_factor(a.id, GH_FACTOR_TOTP, "n", "x");
    f->secret_len = GH_FACTOR_SECRET_MAX + 1;
    assert_int_equal(gh_user_factor_add(s, f), GH_EINVAL);
    assert_int_equal(gh_user_factor_add(s, new_factor(b.id + 1000, GH_FACTOR_TOTP, "n", "x")),
                     GH_ENOTFOUND);
    gh_user_store_close(&s);

    s = open_store();
    gh_factor_t list[4];
    size_t n = 9;
    assert_int_equal(gh_user_factor_list(s, a.id, list, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, totp);
    assert_int_equal(list[0].type, GH_FACTOR_TOTP);
    assert_string_equal(list[0].name, "phone");
    assert_int_equal(list[0].secret_len, 12);
    assert_memory_equal(list[0].secret, "sealed\0bytes", 12);
    assert_false(list[0].confirmed);
    assert_int_equal(list[0].created_at_ms, 5000);
    assert_int_equal(list[0].last_used_at_ms, 0);
    assert_int_equal(list[0].credential_len, 0);
    assert_int_equal(list[1].id, key);
    assert_int_equal(list[1].type, GH_FACTOR_WEBAUTHN);
    assert_true(list[1].confirmed);
    assert_int_equal(gh_user_factor_list(s, b.id, list, 4, &n), 0);
    assert_int_equal(n, 0);
    gh_factor_t g;
    assert_int_equal(gh_user_factor_by_credential(s, (const uint8_t *)"\x01\x00\x02", 3, &g), 0);
    assert_int_equal(g.id, key);
    assert_int_equal(g.user_id, a.id);
    assert_int_equal(gh_user_factor_by_credential(s, (const uint8_t *)"\x01\x00", 2, &g),
                     GH_ENOTFOUND);
    /* another user's factor is not found through this user */
    assert_int_equal(gh_user_factor_get(s, b.id, totp, &g), GH_ENOTFOUND);
    assert_int_equal(gh_user_factor_confirm(s, b.id, totp), GH_ENOTFOUND);
    assert_int_equal(gh_user_factor_del(s, b.id, totp), GH_ENOTFOUND);
    assert_int_equal(gh_user_factor_rename(s, b.id, totp, "x"), GH_ENOTFOUND);
    assert_int_equal(gh_user_factor_rename(s, a.id, totp, ""), GH_EINVAL);
    assert_int_equal(gh_user_factor_rename(s, a.id, totp, "old phone"), 0);
    assert_int_equal(gh_user_factor_get(s, a.id, totp, &g), 0);
    assert_string_equal(g.name, "old phone");
    assert_int_equal(gh_user_factor_confirm(s, a.id, totp), 0);
    assert_int_equal(gh_user_factor_get(s, a.id, totp, &g), 0);
    assert_true(g.confirmed);
    assert_int_equal(gh_user_factor_del(s, a.id, key), 0);
    assert_int_equal(gh_user_factor_del(s, a.id, key), GH_ENOTFOUND);
    assert_int_equal(gh_user_factor_list(s, a.id, list, 4, &n), 0);
    assert_int_equal(n, 1);
    /* deleting the user takes the factors with it */
    assert_int_equal(gh_user_del(s, a.id), 0);
    assert_int_equal(gh_user_factor_get(s, a.id, totp, &g), GH_ENOTFOUND);
    gh_user_store_close(&s);
}

static void a_factor_counter_only_moves_forward(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t a;
    assert_int_equal(gh_user_create(s, "fc", "h", 1, &a), 0);
    gh_factor_t *f = new_factor(a.id, GH_FACTOR_TOTP, "phone", "x");
    assert_int_equal(gh_user_factor_add(s, f), 0);
    uint64_t id = f->id;
    assert_int_equal(gh_user_factor_use(s, a.id, id, 100, 7000), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, id, 100, 7001), GH_ERANGE); /* replayed */
    assert_int_equal(gh_user_factor_use(s, a.id, id, 99, 7002), GH_ERANGE);  /* older */
    assert_int_equal(gh_user_factor_use(s, a.id, id, 101, 7003), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, id + 1, 200, 7004), GH_ENOTFOUND);
    gh_factor_t g;
    assert_int_equal(gh_user_factor_get(s, a.id, id, &g), 0);
    assert_int_equal(g.counter, 101);
    assert_int_equal(g.last_used_at_ms, 7003);
    /* a passkey without a counter (always 0) is used again and again */
    f = new_factor(a.id, GH_FACTOR_WEBAUTHN, "key", "cose");
    assert_int_equal(gh_user_factor_add(s, f), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, f->id, 0, 8000), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, f->id, 0, 8001), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, f->id, 5, 8002), 0);
    assert_int_equal(gh_user_factor_use(s, a.id, f->id, 0, 8003), GH_ERANGE); /* went back */
    size_t n = 0;
    assert_int_equal(gh_user_factor_del_all(s, a.id, &n), 0);
    assert_int_equal(n, 2);
    gh_user_store_close(&s);
}

static void recovery_codes_are_single_use_and_replaced_whole(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t a, b;
    assert_int_equal(gh_user_create(s, "ra", "h", 1, &a), 0);
    assert_int_equal(gh_user_create(s, "rb", "h", 1, &b), 0);
    uint8_t h[GH_RECOVERY_CODES][GH_RECOVERY_HASH_LEN];
    for (int i = 0; i < GH_RECOVERY_CODES; i++)
        memset(h[i], i + 1, GH_RECOVERY_HASH_LEN);
    size_t left = 99;
    int64_t last = 99;
    assert_int_equal(gh_user_recovery_state(s, a.id, &left, &last), 0);
    assert_int_equal(left, 0);
    assert_int_equal(last, 0);
    assert_int_equal(gh_user_recovery_set(s, a.id, (const uint8_t(*)[GH_RECOVERY_HASH_LEN])h,
                                          GH_RECOVERY_CODES, 10),
                     0);
    assert_int_equal(gh_user_recovery_state(s, a.id, &left, &last), 0);
    assert_int_equal(left, 10);
    assert_int_equal(gh_user_recovery_use(s, b.id, h[3], 20), GH_ENOTFOUND); /* not b's */
    assert_int_equal(gh_user_recovery_use(s, a.id, h[3], 20), 0);
    assert_int_equal(gh_user_recovery_use(s, a.id, h[3], 21), GH_ENOTFOUND); /* spent */
    assert_int_equal(gh_user_recovery_state(s, a.id, &left, &last), 0);
    assert_int_equal(left, 9);
    assert_int_equal(last, 20);
    gh_user_store_close(&s);
    s = open_store();
    /* new codes: the old ones die, spent or not */
    uint8_t h2[2][GH_RECOVERY_HASH_LEN];
    memset(h2[0], 0xAA, GH_RECOVERY_HASH_LEN);
    memset(h2[1], 0xBB, GH_RECOVERY_HASH_LEN);
    assert_int_equal(
        gh_user_recovery_set(s, a.id, (const uint8_t(*)[GH_RECOVERY_HASH_LEN])h2, 2, 30), 0);
    assert_int_equal(gh_user_recovery_use(s, a.id, h[4], 31), GH_ENOTFOUND);
    assert_int_equal(gh_user_recovery_state(s, a.id, &left, &last), 0);
    assert_int_equal(left, 2);
    assert_int_equal(gh_user_recovery_use(s, a.id, h2[1], 32), 0);
    size_t n;
    assert_int_equal(gh_user_factor_del_all(s, a.id, &n), 0); /* the codes go with the factors */
    assert_int_equal(gh_user_recovery_state(s, a.id, &left, &last), 0);
    assert_int_equal(left, 0);
    gh_user_store_close(&s);
}

/* OpenID Connect clients (store/oidc_records.h): kept field for field (URI lists in order, the
 * secret hash or none), listed in client_id order from a cursor, unique ids, deleted once. */
static gh_oidc_client_t *oidc_client(const char *id, bool is_public)
{
    static gh_oidc_client_t c;
    memset(&c, 0, sizeof c);
    snprintf(c.client_id, sizeof c.client_id, "%s", id);
    snprintf(c.name, sizeof c.name, "App '%s'; --", id);
    snprintf(c.id_token_alg, sizeof c.id_token_alg, "ES256");
    c.is_public = is_public;
    c.consent = !is_public;
    snprintf(c.redirect_uris[0], sizeof c.redirect_uris[0], "https://app.example/cb?x=1&y='");
    snprintf(c.redirect_uris[1], sizeof c.redirect_uris[1], "http://127.0.0.1:8000/cb");
    c.n_redirect = 2;
    if (!is_public) {
        snprintf(c.post_logout_uris[0], sizeof c.post_logout_uris[0], "https://app.example/");
        c.n_post_logout = 1;
        memset(c.secret_hash, 0xab, sizeof c.secret_hash);
    }
    c.created_at = 1234567890123;
    return &c;
}

static void oidc_clients_are_kept_listed_and_deleted(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    assert_int_equal(gh_user_oidc_client_add(s, oidc_client("bbb", false)), 0);
    assert_int_equal(gh_user_oidc_client_add(s, oidc_client("aaa", true)), 0);
    assert_int_equal(gh_user_oidc_client_add(s, oidc_client("ccc", false)), 0);
    assert_int_equal(gh_user_oidc_client_add(s, oidc_client("aaa", false)), GH_EEXISTS);
    gh_oidc_client_t *bad = oidc_client("ddd", false);
    bad->n_redirect = 0;
    assert_int_equal(gh_user_oidc_client_add(s, bad), GH_EINVAL);
    bad = oidc_client("ddd", false);
    snprintf(bad->redirect_uris[0], sizeof bad->redirect_uris[0], "https://a/\nhttps://b/");
    bad->redirect_uris[0][10] = '\n'; /* a newline would split into two URIs */
    assert_int_equal(gh_user_oidc_client_add(s, bad), GH_EINVAL);
    gh_user_store_close(&s);

    s = open_store();
    gh_oidc_client_t *got = calloc(4, sizeof *got);
    assert_int_equal(gh_user_oidc_client_get(s, "bbb", &got[0]), 0);
    gh_oidc_client_t *want = oidc_client("bbb", false);
    assert_string_equal(got[0].client_id, "bbb");
    assert_string_equal(got[0].name, want->name);
    assert_false(got[0].is_public);
    assert_true(got[0].consent);
    assert_string_equal(got[0].id_token_alg, "ES256");
    assert_int_equal(got[0].n_redirect, 2);
    assert_string_equal(got[0].redirect_uris[0], want->redirect_uris[0]);
    assert_string_equal(got[0].redirect_uris[1], want->redirect_uris[1]);
    assert_int_equal(got[0].n_post_logout, 1);
    assert_string_equal(got[0].post_logout_uris[0], "https://app.example/");
    assert_memory_equal(got[0].secret_hash, want->secret_hash, sizeof want->secret_hash);
    assert_int_equal(got[0].created_at, 1234567890123);
    assert_int_equal(gh_user_oidc_client_get(s, "aaa", &got[0]), 0);
    assert_true(got[0].is_public);
    assert_int_equal(got[0].n_post_logout, 0);
    static const uint8_t zero[GH_OIDC_SECRET_HASH_LEN];
    assert_memory_equal(got[0].secret_hash, zero, sizeof zero);
    assert_int_equal(gh_user_oidc_client_get(s, "AAA", &got[0]), GH_ENOTFOUND);
    assert_int_equal(gh_user_oidc_client_get(s, "' OR 1=1 --", &got[0]), GH_ENOTFOUND);

    size_t n = 9;
    assert_int_equal(gh_user_oidc_client_list(s, "", got, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].client_id, "aaa");
    assert_string_equal(got[1].client_id, "bbb");
    assert_int_equal(gh_user_oidc_client_list(s, "bbb", got, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(got[0].client_id, "ccc");

    assert_int_equal(gh_user_oidc_client_del(s, "bbb"), 0);
    assert_int_equal(gh_user_oidc_client_del(s, "bbb"), GH_ENOTFOUND);
    assert_int_equal(gh_user_oidc_client_get(s, "bbb", &got[0]), GH_ENOTFOUND);
    assert_int_equal(gh_user_oidc_client_list(s, "", got, 4, &n), 0);
    assert_int_equal(n, 2);
    free(got);
    gh_user_store_close(&s);
}

static gh_oidc_key_rec_t oidc_key(const char *kid, const char *alg, int64_t gen, int64_t t)
{
    gh_oidc_key_rec_t k;
    memset(&k, 0, sizeof k);
    snprintf(k.kid, sizeof k.kid, "%s", kid);
    snprintf(k.alg, sizeof k.alg, "%s", alg);
    k.generation = gen;
    k.created_at = t;
    k.sealed_len = 1300; /* an RSA key's size, with a NUL inside */
    for (size_t i = 0; i < k.sealed_len; i++)
        k.sealed[i] = (uint8_t)(i * 7 + (size_t)gen);
    return k;
}

/* Signing keys: a rotation stores a generation and retires the older one in the same step; the
 * same generation a second time is refused whole (another node rotated first); prune deletes
 * only keys retired long enough ago. */
static void oidc_key_generations_rotate_once(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_oidc_key_rec_t *recs = calloc(8, sizeof *recs);
    size_t n = 9;
    assert_int_equal(gh_user_oidc_key_list(s, recs, 8, &n), 0);
    assert_int_equal(n, 0);
    gh_oidc_key_rec_t g1[2] = {oidc_key("k1rs", "RS256", 1, 100),
                               oidc_key("k1es", "ES256", 1, 100)};
    assert_int_equal(gh_user_oidc_key_rotate(s, g1, 2, 100), 0);
    gh_oidc_key_rec_t g2[2] = {oidc_key("k2rs", "RS256", 2, 200),
                               oidc_key("k2es", "ES256", 2, 200)};
    assert_int_equal(gh_user_oidc_key_rotate(s, g2, 2, 200), 0);
    /* another node's generation 2: refused, and nothing of it stored */
    gh_oidc_key_rec_t late[2] = {oidc_key("lxrs", "RS256", 2, 210),
                                 oidc_key("lxes", "ES256", 2, 210)};
    assert_int_equal(gh_user_oidc_key_rotate(s, late, 2, 210), GH_EEXISTS);
    gh_user_store_close(&s);

    s = open_store();
    assert_int_equal(gh_user_oidc_key_list(s, recs, 8, &n), 0);
    assert_int_equal(n, 4);
    /* newest generation first, then by alg */
    assert_string_equal(recs[0].kid, "k2es");
    assert_string_equal(recs[1].kid, "k2rs");
    assert_int_equal(recs[0].retired_at, 0);
    assert_int_equal(recs[1].retired_at, 0);
    assert_string_equal(recs[2].kid, "k1es");
    assert_int_equal(recs[2].retired_at, 200);
    assert_int_equal(recs[3].retired_at, 200);
    assert_int_equal(recs[3].generation, 1);
    assert_int_equal(recs[3].created_at, 100);
    gh_oidc_key_rec_t want = oidc_key("k1rs", "RS256", 1, 100);
    assert_string_equal(recs[3].alg, "RS256");
    assert_int_equal(recs[3].sealed_len, want.sealed_len);
    assert_memory_equal(recs[3].sealed, want.sealed, want.sealed_len);

    size_t removed = 9;
    assert_int_equal(gh_user_oidc_key_prune(s, 199, &removed), 0);
    assert_int_equal(removed, 0);
    assert_int_equal(gh_user_oidc_key_prune(s, 200, &removed), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(gh_user_oidc_key_list(s, recs, 8, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(gh_user_oidc_key_prune(s, INT64_MAX, &removed), 0);
    assert_int_equal(removed, 0); /* current keys are never pruned */
    free(recs);
    gh_user_store_close(&s);
}

#define USER_SUITE_TEST(f) cmocka_unit_test_setup_teardown(f, user_suite_setup, user_suite_teardown)
#define USER_SUITE_TESTS                                                                           \
    USER_SUITE_TEST(create_and_find_case_insensitively), USER_SUITE_TEST(set_password_and_delete), \
        USER_SUITE_TEST(reopen_finds_users_again),                                                 \
        USER_SUITE_TEST(injection_looking_names_are_literal),                                      \
        USER_SUITE_TEST(list_pages_in_id_order), USER_SUITE_TEST(out_of_bounds_input_is_refused),  \
        USER_SUITE_TEST(ping_answers), USER_SUITE_TEST(concurrent_callers_are_serialized),         \
        USER_SUITE_TEST(memory_returns_to_baseline),                                               \
        USER_SUITE_TEST(roles_are_kept_and_search_is_a_literal_prefix),                            \
        USER_SUITE_TEST(search_matches_an_email_prefix_literally),                                 \
        USER_SUITE_TEST(audit_events_append_filter_page_and_prune),                                \
        USER_SUITE_TEST(audited_changes_come_with_their_event),                                    \
        USER_SUITE_TEST(factors_are_kept_per_user_and_survive_a_reopen),                           \
        USER_SUITE_TEST(a_factor_counter_only_moves_forward),                                      \
        USER_SUITE_TEST(recovery_codes_are_single_use_and_replaced_whole),                         \
        USER_SUITE_TEST(oidc_clients_are_kept_listed_and_deleted),                                 \
        USER_SUITE_TEST(oidc_key_generations_rotate_once)

#endif
