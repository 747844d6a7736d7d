/*
 * bench_audit.c — what the audit trail costs: a durable event (one INSERT into users.db, SQLite
 * WAL, synchronous=NORMAL) and a queued one, per call with percentiles; a whole login through
 * the account service (argon2id at libsodium's minimum cost, so the hash does not hide the rest)
 * with the trail and without, whose difference is the audit write cost per login; and token
 * checks (session lookups) with and without a flood of queued failure events beside them.
 *
 * The one decision: every figure is measured in-process on the same files and the same thread
 * count, trail on against trail off, interleaved in rounds, so the difference is the trail and
 * not the machine's mood. Prints one "name value" figure per line; exits non-zero only when it
 * cannot run. Usage: bench_audit [logins]   (default 2000)
 */
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "account/account.h"
#include "account/audit.h"
#include "common/clock.h"
#include "mem/mem.h"

#define PASSWORD "correct horse battery"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof *ns, cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    printf("%s_mean_us %.1f\n%s_p50_us %.1f\n%s_p99_us %.1f\n", name, sum / (double)n / 1000.0,
           name, (double)ns[n / 2] / 1000.0, name, (double)ns[n * 99 / 100] / 1000.0);
}

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} waiter_t;

static void wake(void *arg)
{
    waiter_t *w = arg;
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void run_job(gh_account_t *a, gh_account_job_t *job)
{
    waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    if (!gh_account_submit(a, job, wake, &w))
        return;
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
}

static int rm_entry(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static atomic_bool flooding;
static void *flood(void *arg)
{
    gh_audit_t *au = arg;
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE, 0, NULL);
    /* ~100 000 failed-login events a second: far past what the password pool can verify, so
     * the queue overflows, and the drops are counted. */
    while (atomic_load(&flooding)) {
        for (int i = 0; i < 100; i++)
            gh_audit_emit_queued(au, &ev);
        usleep(1000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    size_t logins = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000;
    if (sodium_init() < 0 || logins < 100)
        return 1;
    char dir[] = "/tmp/gh-bench-audit-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    gh_user_store_t *users = NULL;
    gh_session_store_t *sessions = NULL;
    gh_password_pool_t *pool = NULL;
    gh_audit_t *au = NULL;
    gh_session_limits_t limits = {.session_ttl_ms = 3600000,
                                  .idle_ttl_ms = 3600000,
                                  .max_per_user = 100,
                                  .policy = GH_POLICY_EVICT_IDLE};
    gh_password_params_t cheap = {.memory = 8192, .ops = 1, .workers = 1, .queue = 8};
    gh_audit_options_t ao = {.node = "bench", .queue_cap = 4096};
    int code = 1;
    if (gh_user_sqlite_open(dir, &users) != 0 || gh_session_memory_open(&limits, &sessions) != 0 ||
        gh_password_pool_start(&cheap, &pool) != 0)
        goto out;
    ao.users = users;
    if (gh_audit_open(&ao, &au) != 0)
        goto out;
    gh_account_t a = {.users = users,
                      .sessions = sessions,
                      .passwords = pool,
                      .registration_open = true,
                      .max_sessions_per_user = 100,
                      .operators = ""};
    gh_account_register_t reg;
    if (gh_account_register_begin(&a, &reg, "bench", 5, PASSWORD, strlen(PASSWORD), true) != 0)
        goto out;
    run_job(&a, &reg.job);
    if (gh_account_register_continue(&a, &reg) != 0)
        goto out;
    int64_t *ns = calloc(logins, sizeof *ns), *ns_off = calloc(logins, sizeof *ns_off);
    if (!ns || !ns_off)
        goto out;

    /* 1. a durable event alone */
    for (size_t i = 0; i < logins; i++) {
        gh_audit_event_t ev;
        gh_audit_event_init(&ev, GH_AUDIT_LOGOUT, GH_AUDIT_SUCCESS, 1, NULL);
        int64_t t0 = gh_clock_mono_ns();
        if (gh_audit_emit(au, &ev) != 0)
            goto out;
        ns[i] = gh_clock_mono_ns() - t0;
    }
    report("audit_durable_event", ns, logins);

    /* 2. a queued event, on the caller's side */
    for (size_t i = 0; i < logins; i++) {
        gh_audit_event_t ev;
        gh_audit_event_init(&ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE, 1, NULL);
        int64_t t0 = gh_clock_mono_ns();
        gh_audit_emit_queued(au, &ev);
        ns[i] = gh_clock_mono_ns() - t0;
        if (i % 64 == 63)
            usleep(2000); /* below the writer's pace: this measures the enqueue, not drops */
    }
    report("audit_queued_event", ns, logins);

    /* 3. a whole login, trail on and off, interleaved */
    gh_account_client_t c;
    memset(&c, 0, sizeof c);
    gh_session_client_make(&c.client, "192.0.2.1", "bench/1.0", 9);
    for (size_t i = 0; i < 2 * logins; i++) {
        bool on = i % 2 == 0;
        a.audit = on ? au : NULL;
        gh_account_login_t st;
        int64_t t0 = gh_clock_mono_ns();
        if (gh_account_login_begin(&a, &st, "bench", 5, PASSWORD, strlen(PASSWORD), &c) != 0)
            goto out;
        run_job(&a, &st.job);
        if (gh_account_login_continue(&a, &st) != 0)
            goto out;
        int64_t d = gh_clock_mono_ns() - t0;
        GH_IGNORE(gh_session_end(sessions, st.token_hash, GH_END_LOGOUT));
        (on ? ns : ns_off)[i / 2] = d;
    }
    double on_mean = 0, off_mean = 0;
    for (size_t i = 0; i < logins; i++) {
        on_mean += (double)ns[i];
        off_mean += (double)ns_off[i];
    }
    on_mean /= (double)logins;
    off_mean /= (double)logins;
    report("login_with_audit", ns, logins);
    report("login_without_audit", ns_off, logins);
    printf("audit_cost_per_login_us %.1f\naudit_cost_per_login_p50_us %.1f\n",
           (on_mean - off_mean) / 1000.0, (double)(ns[logins / 2] - ns_off[logins / 2]) / 1000.0);

    /* 4. token checks (session lookups) alone, then beside a flood of queued failure events;
     *    three rounds each, interleaved, best of each kept (the machine is shared) */
    gh_account_login_t st;
    a.audit = NULL;
    if (gh_account_login_begin(&a, &st, "bench", 5, PASSWORD, strlen(PASSWORD), &c) != 0)
        goto out;
    run_job(&a, &st.job);
    if (gh_account_login_continue(&a, &st) != 0)
        goto out;
    double best[2] = {0, 0};
    for (int r6 = 0; r6 < 6; r6++) {
        int round = r6 % 2;
        pthread_t th;
        if (round == 1) {
            atomic_store(&flooding, true);
            if (pthread_create(&th, NULL, flood, au) != 0)
                goto out;
        }
        const int checks = 1000000;
        int64_t t0 = gh_clock_mono_ns();
        for (int i = 0; i < checks; i++) {
            gh_session_info_t info;
            if (gh_session_lookup(sessions, st.token_hash, gh_clock_now_ms(), &info) != 0)
                goto out;
        }
        double secs = (double)(gh_clock_mono_ns() - t0) / 1e9;
        if (round == 1) {
            atomic_store(&flooding, false);
            pthread_join(th, NULL);
        }
        if (checks / secs > best[round])
            best[round] = checks / secs;
    }
    printf("token_checks_per_s_alone %.0f\ntoken_checks_per_s_beside_flood %.0f\n", best[0],
           best[1]);
    gh_audit_stats_t s;
    gh_audit_stats(au, &s);
    printf("flood_events_dropped %llu\nflood_queue_cap %zu\naudit_bytes_accounted %zu\n",
           (unsigned long long)s.dropped_total, s.queue_cap, gh_mem_bytes(GH_MEM_AUDIT));
    code = 0;
    free(ns);
    free(ns_off);
out:
    if (code)
        fprintf(stderr, "bench_audit: could not run\n");
    gh_audit_close(&au);
    gh_password_pool_stop(&pool);
    gh_session_store_destroy(&sessions);
    gh_user_store_close(&users);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return code;
}
