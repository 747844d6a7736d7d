/*
 * test_user_postgres.c — the PostgreSQL user store against a real server (initdb'd in a temp dir,
 * on a free loopback port, as an unprivileged user): the shared user suite (user_suite.h), each
 * test in a schema of its own, then what only the shared store promises — two nodes starting
 * at once migrate once, a newer schema is refused, a bad address fails at open, and when the
 * server goes away calls fail closed and then work again, without reopening, once it is back.
 */
#include <time.h>

#include "user_suite.h"
#include "store/probe.h"
#include "../../support/servers.h"

static ts_server_t pg = {.kind = TS_POSTGRES};
static char url[256];

static int pg_setup(void)
{
    return ts_postgres_fresh_url(&pg, url, sizeof url);
}

static int pg_teardown(void)
{
    return 0; /* the schemas go with the whole cluster, at the end of the group */
}

static int pg_open(gh_user_store_t **out)
{
    gh_user_postgres_options_t o = {.url = url, .pool_size = 3, .timeout_ms = 3000};
    return gh_user_postgres_open(&o, out);
}

static int pg_set_email(uint64_t user_id, const char *email)
{
    gh_mail_store_t *m = NULL;
    int rc = gh_mail_postgres_open(url, 3000, &m);
    if (rc == 0)
        rc = m->ops->set_email(m, user_id, email, true);
    gh_mail_store_close(&m);
    return rc;
}

static const user_backend_t postgres_backend = {.name = "postgres",
                                                .setup = pg_setup,
                                                .teardown = pg_teardown,
                                                .open = pg_open,
                                                .set_email = pg_set_email};

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    gh_user_store_t *s;
    int rc;
} opener_t;

static void *open_one(void *arg)
{
    opener_t *o = arg;
    o->rc = pg_open(&o->s);
    return NULL;
}

static void nodes_starting_together_migrate_once(void **state)
{
    (void)state;
    enum { NODES = 4 };
    opener_t o[NODES] = {{0}};
    pthread_t t[NODES];
    for (int i = 0; i < NODES; i++)
        assert_int_equal(pthread_create(&t[i], NULL, open_one, &o[i]), 0);
    for (int i = 0; i < NODES; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(o[i].rc, 0);
    }
    /* one node registers, every other sees the name taken */
    gh_user_t u;
    assert_int_equal(gh_user_create(o[0].s, "Olga", "h", 1, &u), 0);
    for (int i = 1; i < NODES; i++) {
        assert_int_equal(gh_user_create(o[i].s, "olga", "h", 1, &u), GH_EEXISTS);
        assert_int_equal(gh_user_get_by_name(o[i].s, "OLGA", &u), 0);
        assert_string_equal(u.username, "Olga");
    }
    for (int i = 0; i < NODES; i++)
        gh_user_store_close(&o[i].s);
    char sql[240];
    snprintf(sql, sizeof sql,
             "DO $$ BEGIN IF (SELECT count(*) FROM gatehouse_schema) <> "
             "(SELECT max(version) FROM gatehouse_schema) THEN "
             "RAISE 'migrated more than once'; END IF; END $$");
    assert_int_equal(ts_postgres_exec(url, sql), 0);
}

static void newer_schema_is_refused(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_store_close(&s);
    assert_int_equal(ts_postgres_exec(url, "INSERT INTO gatehouse_schema (version) VALUES (99)"),
                     0);
    size_t o0 = gh_mem_objects(GH_MEM_USERS);
    assert_int_equal(pg_open(&s), GH_ESTORE);
    assert_null(s);
    assert_int_equal(gh_mem_objects(GH_MEM_USERS), o0);
}

static void bad_address_fails_at_open(void **state)
{
    (void)state;
    gh_user_store_t *s = NULL;
    gh_user_postgres_options_t o = {.url = NULL};
    assert_int_equal(gh_user_postgres_open(&o, &s), GH_EINVAL);
    o.url = "";
    assert_int_equal(gh_user_postgres_open(&o, &s), GH_EINVAL);
    char bad[128];
    snprintf(bad, sizeof bad, "postgresql://gatehouse@127.0.0.1:%d/postgres", ts_free_port());
    o.url = bad;
    o.timeout_ms = 2000;
    assert_int_equal(gh_user_postgres_open(&o, &s), GH_ESTORE);
    snprintf(bad, sizeof bad, "postgresql://gatehouse@127.0.0.1:%d/no_such_db", pg.port);
    assert_int_equal(gh_user_postgres_open(&o, &s), GH_ESTORE);
    o.url = "this is not a connection string";
    assert_int_equal(gh_user_postgres_open(&o, &s), GH_ESTORE);
    assert_null(s);
}

static void bytes_postgres_refuses_are_not_a_store_error(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    /* Not UTF-8: SQLite stores any bytes, PostgreSQL refuses them; neither is "unavailable". */
    assert_int_equal(gh_user_create(s, "bad\xff", "h", 1, &u), GH_EINVAL);
    assert_int_equal(gh_user_get_by_name(s, "bad\xff", &u), GH_ENOTFOUND);
    assert_int_equal(gh_user_ping(s), 0);
    gh_user_store_close(&s);
}

static void server_going_away_fails_closed_and_recovers(void **state)
{
    (void)state;
    gh_user_store_t *s = open_store();
    gh_user_t u;
    assert_int_equal(gh_user_create(s, "rita", "h1", 1, &u), 0);
    uint64_t errors0 = gh_store_errors(GH_STORE_POSTGRES);
    assert_int_equal(ts_server_stop(&pg), 0);

    assert_int_equal(gh_user_get_by_name(s, "rita", &u), GH_ESTORE); /* never "not found" */
    assert_int_equal(gh_user_get_by_id(s, u.id, &u), GH_ESTORE);
    assert_int_equal(gh_user_create(s, "sam", "h", 2, &u), GH_ESTORE);
    assert_int_equal(gh_user_set_password(s, 1, "h2"), GH_ESTORE);
    assert_int_equal(gh_user_ping(s), GH_ESTORE);
    assert_true(gh_store_errors(GH_STORE_POSTGRES) > errors0);

    assert_int_equal(ts_server_start(&pg), 0);
    int rc = GH_ESTORE;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = gh_user_get_by_name(s, "RITA", &u);
        if (rc != 0)
            sleep_ms(50);
    }
    assert_int_equal(rc, 0);
    assert_string_equal(u.password_hash, "h1");
    assert_int_equal(gh_user_ping(s), 0);
    assert_int_equal(gh_user_create(s, "sam", "h", 2, &u), 0);
    gh_user_store_close(&s);
}

/*
 * The token check's cache over PostgreSQL while the server is away: a user looked up before
 * answers from the last known record up to stale_max_ms old, counted; a user deleted through the
 * cache, or never looked up, answers GH_ESTORE; logins (by name) fail closed; past stale_max_ms
 * even the known user fails closed; with the server back, answers are fresh again by themselves.
 */
static void the_cache_answers_stale_while_the_server_is_away(void **state)
{
    (void)state;
    gh_user_store_t *inner = open_store(), *s = NULL, *strict = NULL;
    /* Generous bounds: the test also runs under valgrind. */
    gh_user_cache_options_t o = {.entries = 64, .ttl_ms = 50, .stale_max_ms = 4000};
    gh_user_cache_options_t bad = o;
    bad.stale_max_ms = -1;
    assert_int_equal(gh_user_cache_open(inner, &bad, &s), GH_EINVAL);
    bad.stale_max_ms = GH_USER_STALE_MAX_MS + 1;
    assert_int_equal(gh_user_cache_open(inner, &bad, &s), GH_EINVAL);
    assert_int_equal(gh_user_cache_open(inner, &o, &s), 0);
    gh_user_store_t *inner2 = open_store();
    gh_user_cache_options_t o0 = {.entries = 64, .ttl_ms = 50, .stale_max_ms = 0};
    assert_int_equal(gh_user_cache_open(inner2, &o0, &strict), 0);

    gh_user_t una, vic, wes, u;
    assert_int_equal(gh_user_create(s, "una", "h", 1, &una), 0);
    assert_int_equal(gh_user_create(s, "vic", "h", 1, &vic), 0);
    assert_int_equal(gh_user_create(s, "wes", "h", 1, &wes), 0);
    assert_int_equal(gh_user_get_by_id_cached(s, una.id, &u), 0);
    assert_int_equal(gh_user_get_by_id_cached(s, vic.id, &u), 0);
    assert_int_equal(gh_user_get_by_id_cached(strict, una.id, &u), 0);
    struct timespec t0; /* when una's record was read */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(gh_user_del(s, vic.id), 0);
    gh_user_cache_stats_t st;
    gh_user_cache_stats(s, &st);
    assert_int_equal(st.stale_total, 0);
    assert_int_equal(st.stale_age_max_ms, 0);

    assert_int_equal(ts_server_stop(&pg), 0);
    sleep_ms(200); /* past the TTL */
    memset(&u, 0, sizeof u);
    assert_int_equal(gh_user_get_by_id_cached(s, una.id, &u), 0);
    assert_int_equal(u.id, una.id);
    assert_string_equal(u.username, "una");
    assert_string_equal(u.password_hash, "");
    assert_int_equal(gh_user_get_by_id_cached(s, vic.id, &u), GH_ESTORE); /* deleted */
    assert_int_equal(gh_user_get_by_id_cached(s, wes.id, &u), GH_ESTORE); /* never seen */
    assert_int_equal(gh_user_get_by_name(s, "una", &u), GH_ESTORE);       /* logins fail */
    assert_int_equal(gh_user_get_by_id(s, una.id, &u), GH_ESTORE); /* the uncached read too */
    assert_int_equal(gh_user_get_by_id_cached(strict, una.id, &u), GH_ESTORE);
    gh_user_cache_stats(s, &st);
    assert_int_equal(st.stale_total, 1);
    assert_true(st.stale_age_max_ms >= 200 && st.stale_age_max_ms < 4000);
    assert_true(st.refused_total >= 2);

    /* Past stale_max_ms since the record was read: fail closed. */
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (spent < 4100)
        sleep_ms(4100 - spent);
    assert_int_equal(gh_user_get_by_id_cached(s, una.id, &u), GH_ESTORE);

    assert_int_equal(ts_server_start(&pg), 0);
    int rc = GH_ESTORE;
    for (int i = 0; i < 100 && rc != 0; i++) {
        rc = gh_user_get_by_id_cached(s, una.id, &u);
        if (rc != 0)
            sleep_ms(50);
    }
    assert_int_equal(rc, 0);
    gh_user_cache_stats(s, &st);
    assert_int_equal(st.stale_age_max_ms, 0);
    assert_int_equal(gh_user_get_by_id_cached(s, vic.id, &u), GH_ENOTFOUND);
    gh_user_store_close(&strict);
    gh_user_store_close(&s);
}

static int group_setup(void **state)
{
    (void)state;
    return ts_server_start(&pg);
}

static int group_teardown(void **state)
{
    (void)state;
    ts_server_cleanup(&pg);
    return 0;
}

int main(int argc, char **argv)
{
    backend = &postgres_backend;
    const struct CMUnitTest tests[] = {
        USER_SUITE_TESTS,
        USER_SUITE_TEST(nodes_starting_together_migrate_once),
        USER_SUITE_TEST(newer_schema_is_refused),
        USER_SUITE_TEST(bad_address_fails_at_open),
        USER_SUITE_TEST(bytes_postgres_refuses_are_not_a_store_error),
        USER_SUITE_TEST(server_going_away_fails_closed_and_recovers),
        USER_SUITE_TEST(the_cache_answers_stale_while_the_server_is_away),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
