/*
 * test_session_persist.c — the memory store made durable: what is created and every end that
 * matters (logout, revocation, eviction) is on disk when the call returns; expired sessions stay
 * gone; last-seen times reach the disk by flush; and a handover between two stores on one
 * database loses nothing made while the successor was loading.
 *
 * Each test works in its own temporary data dir. Times are near the real clock, because loading
 * judges deadlines against it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>
#include <sqlite3.h>

#include "common/clock.h"
#include "store/session.h"

#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

typedef struct {
    char dir[256];
    char mnt[300]; /* a tmpfs mounted by the test, unmounted by teardown */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/gh-persist-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->mnt[0] && umount2(f->mnt, MNT_DETACH) != 0)
        fprintf(stderr, "could not unmount %s\n", f->mnt);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

#define DIR(state) (((fixture_t *)*(state))->dir)

static gh_session_limits_t limits(void)
{
    return (gh_session_limits_t){.session_ttl_ms = 12 * HOUR,
                                 .idle_ttl_ms = 30 * MIN,
                                 .max_per_user = 100,
                                 .budget_bytes = 0,
                                 .policy = GH_POLICY_EVICT_IDLE};
}

typedef struct {
    uint8_t b[GH_TOKEN_HASH_LEN];
} hash_t;

static hash_t H(int n)
{
    hash_t h;
    crypto_generichash(h.b, sizeof h.b, (const uint8_t *)&n, sizeof n, NULL, 0);
    return h;
}

static gh_session_store_t *open_store(const char *dir, const gh_session_limits_t *l, bool successor,
                                      gh_session_load_stats_t *st)
{
    gh_session_store_t *s = NULL;
    int rc = gh_session_persist_open(dir, l, GH_DURABILITY_NORMAL, successor, st, &s);
    if (rc != 0)
        fail_msg("gh_session_persist_open -> %s", gh_strerror(rc));
    return s;
}

static bool live(gh_session_store_t *s, int n)
{
    hash_t h = H(n);
    int rc = gh_session_lookup(s, h.b, gh_clock_now_ms(), NULL);
    assert_true(rc == 0 || rc == GH_ENOTFOUND);
    return rc == 0;
}

static uint64_t active(gh_session_store_t *s)
{
    gh_session_stats_t st;
    gh_session_stats(s, &st);
    return st.active;
}

static void create_ok(gh_session_store_t *s, uint64_t user, int n, int64_t now,
                      gh_session_info_t *info)
{
    hash_t h = H(n);
    int rc = gh_session_create(s, user, h.b, NULL, now, info);
    if (rc != 0)
        fail_msg("create %d -> %s", n, gh_strerror(rc));
}

static void creates_and_every_end_survive_a_reopen(void **state)
{
    gh_session_limits_t l = limits();
    l.max_per_user = 2;
    gh_session_load_stats_t st;
    gh_session_store_t *s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 0);
    int64_t now = gh_clock_now_ms();
    gh_session_info_t i4;
    create_ok(s, 1, 0, now, NULL);
    create_ok(s, 1, 1, now + 1, NULL);
    create_ok(s, 1, 2, now + 2, NULL); /* evicts 0 */
    create_ok(s, 2, 3, now + 3, NULL);
    create_ok(s, 3, 4, now + 4, &i4);
    create_ok(s, 5, 5, now + 5, NULL);
    hash_t h1 = H(1);
    assert_int_equal(gh_session_end(s, h1.b, GH_END_LOGOUT), 0);
    size_t ended = 0;
    assert_int_equal(gh_session_end_user(s, 2, NULL, GH_END_REVOKED, &ended), 0);
    assert_int_equal(ended, 1);
    assert_int_equal(gh_session_end_by_id(s, 3, i4.id, GH_END_REVOKED), 0);
    assert_int_equal(active(s), 2);
    gh_session_store_destroy(&s);

    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 2);
    assert_int_equal(st.expired, 0);
    assert_int_equal(active(s), 2);
    assert_false(live(s, 0)); /* evicted */
    assert_false(live(s, 1)); /* logged out */
    assert_true(live(s, 2));
    assert_false(live(s, 3)); /* revoked with all of user 2's */
    assert_false(live(s, 4)); /* revoked by id */
    assert_true(live(s, 5));
    const char *why = NULL;
    assert_int_equal(gh_session_memory_check(gh_session_persist_memory(s), &why), 0);
    gh_session_store_destroy(&s);

    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/sessions.db", DIR(state));
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

static void the_public_id_and_times_come_back(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    gh_session_info_t before, after;
    create_ok(s, 42, 7, now - 10 * MIN, &before);
    gh_session_store_destroy(&s);
    s = open_store(DIR(state), &l, false, NULL);
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 42, gh_clock_now_ms(), &after, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(after.id, before.id);
    assert_int_equal(after.created_at_ms, before.created_at_ms);
    assert_int_equal(after.expires_at_ms, before.expires_at_ms);
    assert_int_equal(after.last_seen_at_ms, before.last_seen_at_ms);
    gh_session_store_destroy(&s);
}

static gh_session_client_t client(const char *ip, const char *ua)
{
    gh_session_client_t c;
    gh_session_client_make(&c, ip, ua, strlen(ua));
    return c;
}

static void client_of_listed(gh_session_store_t *s, uint64_t user, size_t i,
                             gh_session_client_t *out)
{
    gh_session_info_t list[8];
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, user, gh_clock_now_ms(), list, 8, &n), 0);
    assert_true(i < n);
    assert_true(list[i].has_client);
    *out = list[i].client;
}

/* The client is on disk with the session. When the memory store's client table was full, the
 * session lived with the unknown client, but the disk kept the real one: a restart with room
 * shows it again. */
static void clients_come_back_after_a_restart(void **state)
{
    gh_session_limits_t l = limits();
    l.max_clients = 1;
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    gh_session_client_t a = client("192.0.2.10", "Firefox/128.0"),
                        b = client("2001:db8::7", "Safari/17.5 «mobile»"), got;
    hash_t h1 = H(1), h2 = H(2), h3 = H(3);
    gh_session_info_t info;
    assert_int_equal(gh_session_create(s, 1, h1.b, &a, now, &info), 0);
    assert_string_equal(info.client.user_agent, a.user_agent);
    assert_int_equal(gh_session_create(s, 1, h2.b, &b, now + 1, &info), 0);
    assert_string_equal(info.client.user_agent, ""); /* the table is full */
    assert_int_equal(gh_session_create(s, 1, h3.b, NULL, now + 2, NULL), 0);
    gh_session_store_destroy(&s);
    l.max_clients = 0;
    s = open_store(DIR(state), &l, false, NULL);
    client_of_listed(s, 1, 0, &got);
    assert_string_equal(got.ip, "");
    assert_string_equal(got.user_agent, "");
    client_of_listed(s, 1, 1, &got);
    assert_string_equal(got.ip, b.ip);
    assert_string_equal(got.user_agent, b.user_agent);
    client_of_listed(s, 1, 2, &got);
    assert_string_equal(got.ip, a.ip);
    assert_string_equal(got.user_agent, a.user_agent);
    const char *why = NULL;
    assert_int_equal(gh_session_memory_check(gh_session_persist_memory(s), &why), 0);
    gh_session_store_destroy(&s);
}

/* A sessions.db written before clients were kept (schema 1) is migrated in place: its sessions
 * load with the unknown client, and new ones keep theirs. */
static void a_database_from_before_clients_is_migrated(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sessions.db", DIR(state));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    int64_t now = gh_clock_now_ms();
    hash_t h1 = H(1);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "CREATE TABLE sessions (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
             " token_hash BLOB NOT NULL UNIQUE, id BLOB NOT NULL, user_id INTEGER NOT NULL,"
             " created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,"
             " expires_at INTEGER NOT NULL);"
             "CREATE TABLE ended (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
             " token_hash BLOB NOT NULL, reason INTEGER NOT NULL);"
             "INSERT INTO sessions (token_hash, id, user_id, created_at, last_seen_at, expires_at)"
             " VALUES (?, x'000102030405060708090a0b0c0d0e0f', 4, %lld, %lld, %lld);"
             "PRAGMA user_version = 1;",
             (long long)now, (long long)now, (long long)(now + HOUR));
    const char *tail = sql;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, tail, -1, &st, &tail), SQLITE_OK);
        if (!st)
            break;
        if (sqlite3_bind_parameter_count(st) == 1)
            assert_int_equal(sqlite3_bind_blob(st, 1, h1.b, sizeof h1.b, SQLITE_STATIC), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);

    gh_session_limits_t l = limits();
    gh_session_load_stats_t st;
    gh_session_store_t *s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 1);
    assert_true(live(s, 1));
    gh_session_client_t got, c = client("198.51.100.4", "curl/8.5.0");
    client_of_listed(s, 4, 0, &got);
    assert_string_equal(got.ip, "");
    assert_string_equal(got.user_agent, "");
    hash_t h2 = H(2);
    assert_int_equal(gh_session_create(s, 4, h2.b, &c, now + 1, NULL), 0);
    gh_session_store_destroy(&s);
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 2);
    client_of_listed(s, 4, 0, &got);
    assert_string_equal(got.ip, c.ip);
    assert_string_equal(got.user_agent, c.user_agent);
    gh_session_store_destroy(&s);
}

/* How a session was signed in survives a restart; a row from before amr was kept (the v1 file
 * above, migrated) reads as a password login. */
static void amr_comes_back_after_a_restart(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    hash_t h1 = H(1), h2 = H(2);
    gh_session_info_t info;
    assert_int_equal(gh_session_create_amr(s, 5, h1.b, NULL, GH_AMR_PWD | GH_AMR_OTP, now, &info),
                     0);
    assert_int_equal(gh_session_create_amr(s, 5, h2.b, NULL, GH_AMR_HWK, now + 1, &info), 0);
    gh_session_store_destroy(&s);
    s = open_store(DIR(state), &l, false, NULL);
    assert_int_equal(gh_session_lookup(s, h1.b, now + 2, &info), 0);
    assert_int_equal(info.amr, GH_AMR_PWD | GH_AMR_OTP);
    assert_int_equal(gh_session_lookup(s, h2.b, now + 2, &info), 0);
    assert_int_equal(info.amr, GH_AMR_HWK);
    gh_session_store_destroy(&s);
}

static void a_row_from_before_amr_reads_as_a_password_login(void **state)
{
    a_database_from_before_clients_is_migrated(state);
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    hash_t h1 = H(1);
    gh_session_info_t info;
    assert_int_equal(gh_session_lookup(s, h1.b, gh_clock_now_ms(), &info), 0);
    assert_int_equal(info.amr, GH_AMR_PWD);
    gh_session_store_destroy(&s);
}

static void expired_sessions_are_dropped_and_deleted(void **state)
{
    gh_session_limits_t l = limits();
    l.session_ttl_ms = HOUR;
    l.idle_ttl_ms = 30 * MIN;
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    create_ok(s, 1, 0, now - 2 * HOUR, NULL); /* past the absolute deadline */
    create_ok(s, 2, 1, now - 40 * MIN, NULL); /* idle for 40 minutes */
    create_ok(s, 3, 2, now - 10 * MIN, NULL); /* live */
    gh_session_store_destroy(&s);
    gh_session_load_stats_t st;
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 1);
    assert_int_equal(st.expired, 2);
    assert_true(live(s, 2));
    gh_session_store_destroy(&s);
    /* The load deleted them: the next one does not even see them. */
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 1);
    assert_int_equal(st.expired, 0);
    gh_session_store_destroy(&s);
}

/* Token checks do not write; the flush carries their last-seen time to disk. */
static void last_seen_reaches_the_disk_by_flush(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    create_ok(s, 9, 0, now - 20 * MIN, NULL);
    hash_t h = H(0);
    gh_session_info_t info;
    assert_int_equal(gh_session_lookup(s, h.b, now, &info), 0);
    assert_int_equal(gh_session_persist_flush(s), 0);
    /* Read the row straight from the file, as a successor or a restart would. */
    sqlite3 *db = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/sessions.db", DIR(state));
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT last_seen_at FROM sessions", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int64(q, 0), info.last_seen_at_ms);
    sqlite3_finalize(q);
    sqlite3_close(db);
    gh_session_store_destroy(&s);
    /* Without a later use, the session would now idle out 30 minutes after `now`, not after
     * its creation 20 minutes earlier. */
    s = open_store(DIR(state), &l, false, NULL);
    size_t n = 0;
    assert_int_equal(gh_session_list_user(s, 9, gh_clock_now_ms(), &info, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_true(info.last_seen_at_ms >= now - 1);
    gh_session_store_destroy(&s);
}

static void handover_catches_up_what_changed_during_the_load(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *a = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    create_ok(a, 1, 0, now, NULL);
    create_ok(a, 1, 1, now + 1, NULL);
    create_ok(a, 2, 2, now + 2, NULL);
    assert_int_equal(gh_session_persist_handover_begin(a), 0);

    gh_session_load_stats_t st;
    gh_session_store_t *b = open_store(DIR(state), &l, true, &st);
    assert_int_equal(st.loaded, 3);
    /* Not the writer yet. */
    hash_t hx = H(99);
    assert_int_equal(gh_session_create(b, 1, hx.b, NULL, now, NULL), GH_ESTORE);

    /* The predecessor still serves: a login (from a browser), a logout, a revocation. */
    gh_session_client_t c3 = client("203.0.113.3", "Mozilla/5.0 (handover)"), got;
    hash_t h3 = H(3);
    assert_int_equal(gh_session_create(a, 1, h3.b, &c3, now + 3, NULL), 0);
    hash_t h0 = H(0);
    assert_int_equal(gh_session_end(a, h0.b, GH_END_LOGOUT), 0);
    assert_int_equal(gh_session_end_user(a, 2, NULL, GH_END_REVOKED, NULL), 0);
    assert_int_equal(gh_session_persist_detach(a), 0);
    assert_int_equal(gh_session_create(a, 1, hx.b, NULL, now, NULL), GH_ESTORE);

    assert_int_equal(gh_session_persist_takeover(b, &st), 0);
    assert_int_equal(st.loaded, 1);
    assert_int_equal(st.ended, 2);
    assert_false(live(b, 0));
    assert_true(live(b, 1));
    assert_false(live(b, 2));
    assert_true(live(b, 3));
    assert_int_equal(active(b), 2);
    client_of_listed(b, 1, 0, &got); /* taken over with its client */
    assert_string_equal(got.ip, c3.ip);
    assert_string_equal(got.user_agent, c3.user_agent);
    gh_session_store_destroy(&a); /* detached: writes nothing on the way out */
    create_ok(b, 1, 4, now + 4, NULL);
    gh_session_store_destroy(&b);

    gh_session_store_t *c = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 3);
    assert_true(live(c, 1));
    assert_true(live(c, 3));
    assert_true(live(c, 4));
    assert_false(live(c, 0));
    assert_false(live(c, 2));
    gh_session_store_destroy(&c);
}

static void an_aborted_handover_leaves_the_predecessor_in_charge(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *a = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    create_ok(a, 1, 0, now, NULL);
    assert_int_equal(gh_session_persist_handover_begin(a), 0);
    gh_session_store_t *b = open_store(DIR(state), &l, true, NULL);
    assert_int_equal(gh_session_persist_detach(a), 0);
    gh_session_store_destroy(&b); /* the successor dies before taking over */
    gh_session_persist_handover_abort(a);
    create_ok(a, 1, 1, now + 1, NULL);
    hash_t h0 = H(0);
    assert_int_equal(gh_session_end(a, h0.b, GH_END_LOGOUT), 0);
    gh_session_store_destroy(&a);
    gh_session_load_stats_t st;
    a = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 1);
    assert_false(live(a, 0));
    assert_true(live(a, 1));
    gh_session_store_destroy(&a);
}

static void a_smaller_cap_at_load_drops_the_oldest_for_good(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    for (int i = 0; i < 5; i++)
        create_ok(s, 1, i, now + i, NULL);
    gh_session_store_destroy(&s);
    l.max_per_user = 2;
    gh_session_load_stats_t st;
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded + st.dropped, 5);
    assert_int_equal(active(s), 2);
    assert_true(live(s, 3));
    assert_true(live(s, 4));
    gh_session_store_destroy(&s);
    l.max_per_user = 100;
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 2);
    assert_false(live(s, 0));
    gh_session_store_destroy(&s);
}

static void refuses_bad_arguments_and_newer_schemas(void **state)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    assert_int_equal(gh_session_persist_open(NULL, &l, GH_DURABILITY_NORMAL, false, NULL, &s),
                     GH_EINVAL);
    gh_session_limits_t hooked = l;
    hooked.on_end = (gh_session_end_hook_t)1;
    assert_int_equal(
        gh_session_persist_open(DIR(state), &hooked, GH_DURABILITY_NORMAL, false, NULL, &s),
        GH_EINVAL);
    assert_int_equal(gh_session_persist_open(DIR(state), &l, GH_DURABILITY_FULL, false, NULL, &s),
                     0);
    gh_session_store_destroy(&s);
    char path[512];
    snprintf(path, sizeof path, "%s/sessions.db", DIR(state));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(gh_session_persist_open(DIR(state), &l, GH_DURABILITY_NORMAL, false, NULL, &s),
                     GH_ESTORE);
    assert_null(s);
}

/* "Log out everywhere" for a user with more sessions than one batch of deletes (256). */
static void ending_many_sessions_of_a_user_goes_in_batches(void **state)
{
    gh_session_limits_t l = limits();
    l.max_per_user = 0;
    gh_session_store_t *s = open_store(DIR(state), &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    for (int n = 0; n < 600; n++)
        create_ok(s, 7, n, now + n, NULL);
    create_ok(s, 8, 1000, now, NULL);
    size_t ended = 0;
    assert_int_equal(gh_session_end_user(s, 7, H(599).b, GH_END_REVOKED, &ended), 0);
    assert_int_equal(ended, 599);
    assert_int_equal(active(s), 2);
    const char *why = NULL;
    assert_int_equal(gh_session_memory_check(gh_session_persist_memory(s), &why), 0);
    gh_session_store_destroy(&s);
    gh_session_load_stats_t st;
    s = open_store(DIR(state), &l, false, &st);
    assert_int_equal(st.loaded, 2);
    assert_true(live(s, 599));
    assert_true(live(s, 1000));
    assert_false(live(s, 0));
    assert_false(live(s, 300));
    gh_session_store_destroy(&s);
}

/* Fills the filesystem of `path` with zeros until it says ENOSPC. */
static void fill_disk(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    static char zeros[4096];
    while (write(fd, zeros, sizeof zeros) > 0)
        ;
    while (write(fd, zeros, 1) == 1)
        ;
    close(fd);
}

/*
 * On a real full filesystem (a 1 MiB tmpfs), every write either happens whole or changes nothing:
 * a create that cannot commit leaves neither its session nor its evictions' absence in memory;
 * an end, a revocation by id, a "log out everywhere" that cannot commit leaves the sessions live.
 * Whatever answered 0 is on disk: after the space comes back and the store reopens, memory is
 * exactly what it was. The store says it cannot write (ping) until a write succeeds again.
 */
static void a_full_disk_changes_nothing_it_cannot_write(void **state)
{
    fixture_t *f = *state;
    snprintf(f->mnt, sizeof f->mnt, "%s/data", f->dir);
    assert_int_equal(mkdir(f->mnt, 0700), 0);
    if (mount("gatehouse-test", f->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") != 0) {
        int e = errno;
        f->mnt[0] = '\0';
        if (e == EPERM) {
            fprintf(stderr, "SKIPPED: mounting a tmpfs is not permitted here (run as root)\n");
            skip();
        }
        fail_msg("mount tmpfs: %s", strerror(e));
    }
    gh_session_limits_t l = limits();
    l.max_per_user = 3;
    gh_session_store_t *s = open_store(f->mnt, &l, false, NULL);
    int64_t now = gh_clock_now_ms();
    gh_session_info_t info[3];
    for (int n = 0; n < 3; n++)
        create_ok(s, 1, n, now + n, &info[n]);
    create_ok(s, 3, 10, now, NULL);
    create_ok(s, 3, 11, now + 1, NULL);
    assert_int_equal(gh_session_ping(s), 0);
    char fill[400];
    snprintf(fill, sizeof fill, "%s/fill", f->mnt);
    fill_disk(fill);

    /* User 2 is at the cap of 3 after three creates, so every later create evicts the oldest:
     * create until one fails (the log cannot grow any more). */
    int n = 100, rc = 0;
    for (; n < 3100 && (rc = gh_session_create(s, 2, H(n).b, NULL, now + n, NULL)) == 0; n++)
        ;
    assert_int_equal(rc, GH_ESTORE);
    assert_int_equal(gh_session_ping(s), GH_ESTORE);
    assert_true(gh_session_persist_write_failures(s) >= 1);
    assert_false(live(s, n));
    if (n >= 103) { /* its eviction was put back: user 2's three newest are all live */
        for (int k = n - 3; k < n; k++)
            if (!live(s, k))
                fail_msg("session %d was evicted by a create that failed", k);
    }
    const char *why = NULL;
    assert_int_equal(gh_session_memory_check(gh_session_persist_memory(s), &why), 0);

    /* Ends on the full disk: all or nothing, never the memory alone. */
    int failed = 0;
    rc = gh_session_end(s, H(0).b, GH_END_LOGOUT);
    assert_true(rc == 0 || rc == GH_ESTORE);
    failed += rc == GH_ESTORE;
    assert_true(live(s, 0) == (rc == GH_ESTORE));
    rc = gh_session_end_by_id(s, 1, info[1].id, GH_END_REVOKED);
    assert_true(rc == 0 || rc == GH_ESTORE);
    failed += rc == GH_ESTORE;
    assert_true(live(s, 1) == (rc == GH_ESTORE));
    size_t ended = 99;
    rc = gh_session_end_user(s, 3, NULL, GH_END_REVOKED, &ended);
    assert_true(rc == 0 || rc == GH_ESTORE);
    failed += rc == GH_ESTORE;
    assert_true(live(s, 10) == (rc == GH_ESTORE) && live(s, 11) == (rc == GH_ESTORE));
    assert_int_equal(ended, rc == 0 ? 2 : 0);
    /* A create for user 1 (at the cap: it would evict session 0 or 1). */
    bool before[3] = {live(s, 0), live(s, 1), live(s, 2)};
    rc = gh_session_create(s, 1, H(20).b, NULL, now + 20, NULL);
    assert_true(rc == 0 || rc == GH_ESTORE);
    failed += rc == GH_ESTORE;
    if (rc == GH_ESTORE) {
        assert_false(live(s, 20));
        for (int k = 0; k < 3; k++)
            assert_true(live(s, k) == before[k]);
    }
    print_message("first failed create after %d; %d of the 4 later writes failed\n", n - 100,
                  failed);
    assert_true(failed >= 1); /* the log could not grow: at least one of these had to fail */
    assert_int_equal(gh_session_memory_check(gh_session_persist_memory(s), &why), 0);

    /* What memory holds now is what the disk must give back. */
    bool want[3200];
    for (int k = 0; k < 3200; k++)
        want[k] = live(s, k);
    uint64_t count = active(s);

    /* Space again: the next flush's probe write clears the failure. */
    assert_int_equal(unlink(fill), 0);
    assert_int_equal(gh_session_persist_flush(s), 0);
    assert_int_equal(gh_session_ping(s), 0);
    gh_session_store_destroy(&s);
    gh_session_load_stats_t st;
    s = open_store(f->mnt, &l, false, &st);
    assert_int_equal(active(s), count);
    for (int k = 0; k < 3200; k++)
        if (live(s, k) != want[k])
            fail_msg("session %d: %s before the reopen, %s after", k, want[k] ? "live" : "gone",
                     want[k] ? "gone" : "live");
    gh_session_store_destroy(&s);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(creates_and_every_end_survive_a_reopen),
        T(the_public_id_and_times_come_back),
        T(clients_come_back_after_a_restart),
        T(a_database_from_before_clients_is_migrated),
        T(amr_comes_back_after_a_restart),
        T(a_row_from_before_amr_reads_as_a_password_login),
        T(expired_sessions_are_dropped_and_deleted),
        T(last_seen_reaches_the_disk_by_flush),
        T(handover_catches_up_what_changed_during_the_load),
        T(an_aborted_handover_leaves_the_predecessor_in_charge),
        T(a_smaller_cap_at_load_drops_the_oldest_for_good),
        T(refuses_bad_arguments_and_newer_schemas),
        T(ending_many_sessions_of_a_user_goes_in_batches),
        T(a_full_disk_changes_nothing_it_cannot_write),
    };
#undef T
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
