/* test_user_cache.c — the user cache (user_cache.c) in front of the SQLite store: the shared user
 * suite (user_suite.h) through it, so it changes nothing a store promises; then what the cache
 * adds: answers without the hash, writes through it seen at once, a change made by another
 * process seen once the TTL has passed, a full set replacing its oldest entry, many threads. */
#include <unistd.h>

#include "user_suite.h"

static int open_with(uint32_t entries, int64_t ttl_ms, gh_user_store_t **out)
{
    gh_user_store_t *inner = NULL;
    int rc = gh_user_sqlite_open(user_suite_dir, &inner);
    if (rc != 0)
        return rc;
    gh_user_cache_options_t o = {.entries = entries, .ttl_ms = ttl_ms};
    if ((rc = gh_user_cache_open(inner, &o, out)) != 0)
        gh_user_store_close(&inner);
    return rc;
}

static int cache_open(gh_user_store_t **out)
{
    return open_with(64, 60 * 1000, out);
}

static const user_backend_t cache_backend = {.name = "cache",
                                             .setup = user_suite_dir_setup,
                                             .teardown = user_suite_dir_teardown,
                                             .open = cache_open,
                                             .set_email = user_suite_sqlite_set_email};

static void cached_answers_carry_no_hash(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u, v;
    assert_int_equal(gh_user_create(s, "Carol", "$argon2id$c", 7, &u), 0);
    for (int i = 0; i < 2; i++) { /* a miss, then a hit */
        assert_int_equal(gh_user_get_by_id_cached(s, u.id, &v), 0);
        assert_int_equal(v.id, u.id);
        assert_string_equal(v.username, "Carol");
        assert_int_equal(v.created_at_ms, 7);
        assert_string_equal(v.password_hash, "");
    }
    /* the store's own get_by_id still reads the hash */
    assert_int_equal(gh_user_get_by_id(s, u.id, &v), 0);
    assert_string_equal(v.password_hash, "$argon2id$c");
    assert_int_equal(gh_user_get_by_id_cached(s, u.id + 100, &v), GH_ENOTFOUND);
    assert_int_equal(gh_user_get_by_id_cached(s, 0, &v), GH_ENOTFOUND);
    gh_user_store_close(&s);

    /* without a cache the call is get_by_id, answering the same shape */
    gh_user_store_t *plain = NULL;
    assert_int_equal(gh_user_sqlite_open(user_suite_dir, &plain), 0);
    assert_int_equal(gh_user_get_by_id_cached(plain, u.id, &v), 0);
    assert_string_equal(v.username, "Carol");
    assert_string_equal(v.password_hash, "");
    gh_user_store_close(&plain);
}

static void writes_through_the_cache_are_seen_at_once(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    assert_int_equal(open_with(64, 3600 * 1000, &s), 0); /* an hour: only invalidation helps */
    gh_user_t u, v;
    assert_int_equal(gh_user_create(s, "dave", "$argon2id$d", 1, &u), 0);
    assert_int_equal(gh_user_get_by_id_cached(s, u.id, &v), 0);
    assert_int_equal(gh_user_set_password(s, u.id, "$argon2id$e"), 0);
    assert_int_equal(gh_user_get_by_id(s, u.id, &v), 0);
    assert_string_equal(v.password_hash, "$argon2id$e");
    assert_int_equal(gh_user_del(s, u.id), 0);
    assert_int_equal(gh_user_get_by_id_cached(s, u.id, &v), GH_ENOTFOUND);
    gh_user_store_close(&s);
}

static void another_process_is_seen_after_the_ttl(void **state)
{
    (void)state;
    gh_user_store_t *cached = NULL, *other = NULL, *slow = NULL;
    assert_int_equal(open_with(64, 1, &cached), 0);                   /* 1 ms */
    assert_int_equal(open_with(64, 3600 * 1000, &slow), 0);           /* 1 h */
    assert_int_equal(gh_user_sqlite_open(user_suite_dir, &other), 0); /* "gatehouse user del" */
    gh_user_t u, v;
    assert_int_equal(gh_user_create(other, "erin", "$argon2id$f", 1, &u), 0);
    assert_int_equal(gh_user_get_by_id_cached(cached, u.id, &v), 0);
    assert_int_equal(gh_user_get_by_id_cached(slow, u.id, &v), 0);
    assert_int_equal(gh_user_del(other, u.id), 0);
    /* Within its TTL the cache still answers (the documented price)... */
    assert_int_equal(gh_user_get_by_id_cached(slow, u.id, &v), 0);
    assert_string_equal(v.username, "erin");
    /* ...and past it, it asks the store again. The clock is coarse (a few ms): wait well past. */
    usleep(50 * 1000);
    assert_int_equal(gh_user_get_by_id_cached(cached, u.id, &v), GH_ENOTFOUND);
    gh_user_store_close(&cached);
    gh_user_store_close(&slow);
    gh_user_store_close(&other);
}

static void a_full_set_replaces_an_entry_and_stays_correct(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    assert_int_equal(open_with(8, 3600 * 1000, &s), 0); /* one set of 8 */
    size_t bytes = gh_mem_bytes(GH_MEM_USERS);
    enum { N = 100 };
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        gh_user_t u;
        snprintf(name, sizeof name, "u%03d", i);
        assert_int_equal(gh_user_create(s, name, "h", 1, &u), 0);
        ids[i] = u.id;
    }
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < N; i++) {
            gh_user_t v;
            char name[16];
            snprintf(name, sizeof name, "u%03d", i);
            assert_int_equal(gh_user_get_by_id_cached(s, ids[i], &v), 0);
            assert_string_equal(v.username, name);
        }
    assert_int_equal(gh_mem_bytes(GH_MEM_USERS), bytes); /* the table never grows */
    gh_user_store_close(&s);
}

static void bad_options_are_refused(void **state)
{
    (void)state;
    gh_user_store_t *inner = NULL, *s = NULL;
    assert_int_equal(gh_user_sqlite_open(user_suite_dir, &inner), 0);
    gh_user_cache_options_t o = {.entries = 0, .ttl_ms = 1000};
    assert_int_equal(gh_user_cache_open(inner, &o, &s), GH_EINVAL);
    o = (gh_user_cache_options_t){.entries = 8, .ttl_ms = 0};
    assert_int_equal(gh_user_cache_open(inner, &o, &s), GH_EINVAL);
    o = (gh_user_cache_options_t){.entries = GH_USER_CACHE_MAX + 1, .ttl_ms = 1000};
    assert_int_equal(gh_user_cache_open(inner, &o, &s), GH_EINVAL);
    assert_null(s);
    gh_user_store_close(&inner); /* still the caller's after a failed open */
}

typedef struct {
    gh_user_store_t *s;
    const uint64_t *ids;
    int n, seed, bad;
} reader_t;

static void *reader(void *arg)
{
    reader_t *r = arg;
    for (int k = 0; k < 20000; k++) {
        int i = (k * 7 + r->seed) % r->n;
        gh_user_t v;
        char name[16];
        snprintf(name, sizeof name, "t%03d", i);
        if (gh_user_get_by_id_cached(r->s, r->ids[i], &v) != 0 || strcmp(v.username, name) != 0)
            r->bad++;
    }
    return NULL;
}

static void many_threads_read_the_right_users(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    assert_int_equal(open_with(32, 3600 * 1000, &s), 0); /* fewer slots than users: churn */
    enum { N = 50, T = 4 };
    uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        gh_user_t u;
        snprintf(name, sizeof name, "t%03d", i);
        assert_int_equal(gh_user_create(s, name, "h", 1, &u), 0);
        ids[i] = u.id;
    }
    pthread_t th[T];
    reader_t rd[T];
    for (int t = 0; t < T; t++) {
        rd[t] = (reader_t){.s = s, .ids = ids, .n = N, .seed = t * 13};
        assert_int_equal(pthread_create(&th[t], NULL, reader, &rd[t]), 0);
    }
    for (int t = 0; t < T; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(rd[t].bad, 0);
    }
    gh_user_store_close(&s);
}

int main(int argc, char **argv)
{
    backend = &cache_backend;
    const struct CMUnitTest tests[] = {
        USER_SUITE_TESTS,
        USER_SUITE_TEST(cached_answers_carry_no_hash),
        USER_SUITE_TEST(writes_through_the_cache_are_seen_at_once),
        USER_SUITE_TEST(another_process_is_seen_after_the_ttl),
        USER_SUITE_TEST(a_full_set_replaces_an_entry_and_stays_correct),
        USER_SUITE_TEST(bad_options_are_refused),
        USER_SUITE_TEST(many_threads_read_the_right_users),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
