/*
 * bench_load.c — how long a restart takes to bring sessions back: sessions.db with N sessions
 * (default one million, four per user, all live) is loaded by gh_session_persist_open, three
 * times; and what persistence adds to a login: the latency of a create that commits, with
 * --durability normal and full.
 *
 * The one decision: the database is filled with one bulk transaction straight through SQLite in
 * the store's own schema (the store creates it first), because a million separate commits would
 * measure the fill, not the load. Prints one "name value" figure per line; exits non-zero only
 * when it cannot run. Usage: bench_load [sessions]
 *
 * `bench_load --fill DIR [sessions]` only writes DIR/sessions.db (DIR must exist and hold no
 * sessions.db yet) and exits: bench/bench_rss.sh starts a real node on it, to measure from the
 * outside the resident bytes per session and the start-up time with a million sessions.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "common/clock.h"
#include "mem/mem.h"
#include "store/session.h"

#define MIN_MS 60000LL
#define HOUR_MS (60 * MIN_MS)

static gh_session_limits_t limits(void)
{
    return (gh_session_limits_t){.session_ttl_ms = 12 * HOUR_MS,
                                 .idle_ttl_ms = 30 * MIN_MS,
                                 .max_per_user = 100,
                                 .budget_bytes = 0,
                                 .policy = GH_POLICY_EVICT_IDLE};
}

static int fill(const char *dir, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sessions.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO sessions (token_hash, id, user_id, created_at,"
                           " last_seen_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int64_t now = gh_clock_now_ms();
    for (size_t i = 0; i < n; i++) {
        uint8_t hash[GH_TOKEN_HASH_LEN], id[GH_SESSION_ID_RAW_LEN];
        uint64_t k = i;
        crypto_generichash(hash, sizeof hash, (const uint8_t *)&k, sizeof k, NULL, 0);
        randombytes_buf(id, sizeof id);
        /* Live, in creation order, last seen within the last 20 minutes in random order. */
        int64_t created = now - 6 * HOUR_MS + (int64_t)(i * (5 * HOUR_MS) / n);
        int64_t seen = now - (int64_t)randombytes_uniform(20 * 60 * 1000);
        if (seen < created)
            seen = created;
        sqlite3_bind_blob(st, 1, hash, sizeof hash, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 2, id, sizeof id, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, (int64_t)(i / 4 + 1));
        sqlite3_bind_int64(st, 4, created);
        sqlite3_bind_int64(st, 5, seen);
        sqlite3_bind_int64(st, 6, created + 12 * HOUR_MS);
        if (sqlite3_step(st) != SQLITE_DONE)
            return -1;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    int rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    sqlite3_close(db);
    return rc;
}

/* CPU time of this process: the load runs on one thread, so on a busy shared machine this is
 * what the load costs, where wall time also counts waiting for a core. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Create latency through the persistent store: p50 / p99 / p99.9 in microseconds. */
static int create_latency(const char *dir, gh_durability_t d, size_t count, const char *label)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    if (gh_session_persist_open(dir, &l, d, false, NULL, &s) != 0)
        return -1;
    int64_t *ns = gh_mem_alloc(GH_MEM_OTHER, count * sizeof *ns);
    if (!ns)
        return -1;
    int64_t t_all = gh_clock_mono_ns();
    for (size_t i = 0; i < count; i++) {
        uint8_t hash[GH_TOKEN_HASH_LEN];
        randombytes_buf(hash, sizeof hash);
        int64_t t0 = gh_clock_mono_ns();
        if (gh_session_create(s, 1000000000ull + i, hash, NULL, gh_clock_now_ms(), NULL) != 0)
            return -1;
        ns[i] = gh_clock_mono_ns() - t0;
    }
    double secs = (double)(gh_clock_mono_ns() - t_all) / 1e9;
    qsort(ns, count, sizeof *ns, cmp_i64);
    printf("create_%s_per_s %.0f\n", label, (double)count / secs);
    printf("create_%s_latency_us_p50_p99_p999 %.1f %.1f %.1f\n", label, (double)ns[count / 2] / 1e3,
           (double)ns[count * 99 / 100] / 1e3, (double)ns[count * 999 / 1000] / 1e3);
    gh_mem_free(GH_MEM_OTHER, ns);
    gh_session_store_destroy(&s);
    return 0;
}

/* The store creates the schema (so the fill writes exactly the format it reads), then one bulk
 * transaction fills it. */
static int create_filled(const char *dir, size_t n)
{
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    if (gh_session_persist_open(dir, &l, GH_DURABILITY_NORMAL, false, NULL, &s) != 0)
        return -1;
    gh_session_store_destroy(&s);
    return fill(dir, n);
}

static int fill_only(const char *dir, size_t n)
{
    int64_t t0 = gh_clock_mono_ns();
    if (create_filled(dir, n) != 0) {
        fprintf(stderr, "bench_load: cannot fill %s/sessions.db\n", dir);
        return 1;
    }
    printf("sessions %zu\n", n);
    printf("fill_s %.2f\n", (double)(gh_clock_mono_ns() - t0) / 1e9);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--fill") == 0) {
        size_t n = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 1000000;
        if (sodium_init() < 0 || n == 0)
            return 1;
        gh_mem_init();
        return fill_only(argv[2], n);
    }
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 1000000;
    if (sodium_init() < 0 || n == 0)
        return 1;
    gh_mem_init();
    char dir[] = "/tmp/gh-bench-load-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    gh_session_limits_t l = limits();
    gh_session_store_t *s = NULL;
    int rc = 1;
    int64_t t0 = gh_clock_mono_ns();
    if (create_filled(dir, n) != 0) {
        fprintf(stderr, "bench_load: cannot fill the database\n");
        goto out;
    }
    printf("sessions %zu\n", n);
    printf("fill_s %.2f\n", (double)(gh_clock_mono_ns() - t0) / 1e9);
    double best = 1e9, best_cpu = 1e9;
    for (int run = 0; run < 3; run++) {
        gh_session_load_stats_t st;
        int64_t t = gh_clock_mono_ns();
        double c = cpu_s();
        if (gh_session_persist_open(dir, &l, GH_DURABILITY_NORMAL, false, &st, &s) != 0)
            goto out;
        double secs = (double)(gh_clock_mono_ns() - t) / 1e9;
        double cpu = cpu_s() - c;
        gh_session_stats_t ss;
        gh_session_stats(s, &ss);
        printf("load_run%d_s %.3f cpu_s %.3f loaded %" PRIu64 " expired %" PRIu64
               " bytes_per_session %.1f\n",
               run + 1, secs, cpu, st.loaded, st.expired,
               ss.active ? (double)ss.bytes / (double)ss.active : 0.0);
        if (st.loaded != n) {
            fprintf(stderr, "bench_load: loaded %" PRIu64 " of %zu\n", st.loaded, n);
            goto out;
        }
        best = secs < best ? secs : best;
        best_cpu = cpu < best_cpu ? cpu : best_cpu;
        gh_session_store_destroy(&s);
    }
    printf("load_best_s %.3f\n", best);
    printf("load_best_cpu_s %.3f\n", best_cpu);
    printf("load_sessions_per_s %.0f\n", (double)n / best);
    if (create_latency(dir, GH_DURABILITY_NORMAL, 20000, "normal") != 0 ||
        create_latency(dir, GH_DURABILITY_FULL, 2000, "full") != 0)
        goto out;
    rc = 0;
out:;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
