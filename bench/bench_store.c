/*
 * bench_store.c — the in-memory session store at one million sessions: operations per second
 * for create, lookup and expire with one and two threads, lookup and create latency
 * percentiles, and what a session costs in accounted and in resident bytes.
 *
 * Sessions are created with the unknown client (a record and its table entries, nothing else)
 * except in the last scenario, where they come from a population of CLIENTS distinct clients
 * (IP and a browser's user agent) and the client table's bytes count too.
 *
 * The one decision: each scenario runs in a forked child, so every resident-bytes figure is
 * measured in a heap that no earlier scenario has grown (glibc keeps freed memory, which would
 * hide the next scenario's growth). Prints one "name value" figure per line; exits non-zero only
 * when it cannot run. Usage: bench_store [sessions]   (default 1000000)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "mem/mem.h"
#include "store/session.h"

#define T0 1700000000000LL
#define CLIENTS 10000 /* distinct clients in the last scenario: many offices, homes, phones */

typedef struct {
    uint8_t b[GH_TOKEN_HASH_LEN];
} hash_t;

static hash_t *hashes; /* 2 * n: the second half for the latency pass */
static size_t n_sessions;

/* ---- a small HDR-style histogram: 16 linear sub-buckets per power of two of nanoseconds ---- */

#define SUB 16
typedef struct {
    uint64_t count[64 * SUB];
    uint64_t total;
} histo_t;

static void histo_add(histo_t *h, uint64_t ns)
{
    unsigned b = 0, sub = (unsigned)ns;
    if (ns >= SUB) {
        unsigned p = 63 - (unsigned)__builtin_clzll(ns); /* ns in [2^p, 2^(p+1)) */
        b = p - 3;                                       /* p >= 4 */
        sub = (unsigned)(ns >> (p - 4)) - SUB;
    }
    h->count[b * SUB + sub]++;
    h->total++;
}

/* Upper bound of the bucket holding the q-quantile. */
static uint64_t histo_quantile(const histo_t *h, double q)
{
    uint64_t want = (uint64_t)(q * (double)h->total), seen = 0;
    for (unsigned i = 0; i < 64 * SUB; i++) {
        seen += h->count[i];
        if (seen > want && h->count[i]) {
            unsigned b = i / SUB, sub = i % SUB;
            if (b == 0)
                return sub;
            return ((uint64_t)(sub + SUB + 1) << (b - 1)) - 1;
        }
    }
    return 0;
}

static void print_histo(const char *name, const histo_t *h)
{
    printf("%s_ns_p50 %" PRIu64 "\n", name, histo_quantile(h, 0.50));
    printf("%s_ns_p99 %" PRIu64 "\n", name, histo_quantile(h, 0.99));
    printf("%s_ns_p999 %" PRIu64 "\n", name, histo_quantile(h, 0.999));
}

/* ---- helpers ---- */

static double seconds(void)
{
    return (double)gh_clock_mono_ns() / 1e9;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int open_store(gh_session_store_t **s)
{
    gh_session_limits_t l = {.session_ttl_ms = 12LL * 3600 * 1000,
                             .idle_ttl_ms = 30LL * 60 * 1000,
                             .max_per_user = 100,
                             .budget_bytes = 0,
                             .policy = GH_POLICY_EVICT_IDLE};
    int rc = gh_session_memory_open(&l, s);
    if (rc != 0)
        fprintf(stderr, "bench_store: open: %s\n", gh_strerror(rc));
    return rc;
}

static size_t store_bytes(gh_session_store_t *s)
{
    gh_session_stats_t st;
    gh_session_stats(s, &st);
    return st.bytes;
}

typedef struct {
    gh_session_store_t *s;
    size_t from, to, per_user, ops;
    uint64_t seed;
    int64_t now;
    size_t done;
    const gh_session_client_t *clients; /* NULL: every session's client is unknown */
} job_t;

static void *create_job(void *arg)
{
    job_t *j = arg;
    for (size_t i = j->from; i < j->to; i++)
        if (gh_session_create(j->s, i / j->per_user, hashes[i].b,
                              j->clients ? &j->clients[i % CLIENTS] : NULL,
                              j->now + (int64_t)(i / 1000), NULL) == 0)
            j->done++;
    return NULL;
}

static void *lookup_job(void *arg)
{
    job_t *j = arg;
    for (size_t k = 0; k < j->ops; k++)
        if (gh_session_lookup(j->s, hashes[xorshift(&j->seed) % n_sessions].b, j->now, NULL) == 0)
            j->done++;
    return NULL;
}

static void *expire_job(void *arg)
{
    job_t *j = arg;
    for (size_t k; (k = gh_session_expire(j->s, j->now, 1024)) != 0;)
        j->done += k;
    return NULL;
}

/* Runs fn on `threads` jobs at once; returns wall seconds. */
static double run(void *(*fn)(void *), job_t *jobs, int threads)
{
    pthread_t th[2];
    double t = seconds();
    for (int i = 1; i < threads; i++)
        if (pthread_create(&th[i], NULL, fn, &jobs[i]) != 0)
            return -1;
    fn(&jobs[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(th[i], NULL);
    return seconds() - t;
}

/* ---- scenarios (each in its own process) ---- */

/* One session per user (every session carries a user-table entry: the costliest shape). */
static int scenario_one_per_user(void)
{
    gh_session_store_t *s;
    if (open_store(&s) != 0)
        return 1;
    size_t n = n_sessions, rss0 = gh_mem_rss_bytes(), acc0 = store_bytes(s);
    job_t c = {.s = s, .from = 0, .to = n, .per_user = 1, .now = T0};
    double dt = run(create_job, &c, 1);
    if (c.done != n) {
        fprintf(stderr, "bench_store: only %zu of %zu creates succeeded\n", c.done, n);
        return 1;
    }
    size_t rss1 = gh_mem_rss_bytes(), acc1 = store_bytes(s);
    printf("sessions %zu\n", n);
    printf("create_ops_per_s_1thread %.0f\n", (double)n / dt);
    printf("accounted_bytes_per_session_1_per_user %.1f\n", (double)(acc1 - acc0) / (double)n);
    printf("resident_bytes_per_session_1_per_user %.1f\n",
           (double)((ssize_t)rss1 - (ssize_t)rss0) / (double)n);

    int64_t now = T0 + 60 * 1000;
    job_t l[2] = {{.s = s, .ops = 2 * n, .seed = 88172645463325252ull, .now = now},
                  {.s = s, .ops = 2 * n, .seed = 1442695040888963407ull, .now = now}};
    dt = run(lookup_job, l, 1);
    printf("lookup_ops_per_s_1thread %.0f\n", (double)l[0].ops / dt);
    l[0].done = l[1].done = 0;
    dt = run(lookup_job, l, 2);
    printf("lookup_ops_per_s_2threads %.0f\n", (double)(l[0].ops + l[1].ops) / dt);

    /* Latency, each operation timed on its own (includes ~20 ns of clock reading). */
    static histo_t hl, hc;
    uint64_t seed = 7;
    for (size_t k = 0; k < n / 4; k++) {
        const uint8_t *h = hashes[xorshift(&seed) % n].b;
        int64_t t = gh_clock_mono_ns();
        int rc = gh_session_lookup(s, h, now, NULL);
        histo_add(&hl, (uint64_t)(gh_clock_mono_ns() - t));
        if (rc != 0)
            return 1;
    }
    for (size_t k = 0; k < n / 4; k++) {
        int64_t t = gh_clock_mono_ns();
        int rc = gh_session_create(s, n + k, hashes[n + k].b, NULL, now, NULL);
        histo_add(&hc, (uint64_t)(gh_clock_mono_ns() - t));
        if (rc != 0)
            return 1;
    }
    print_histo("lookup", &hl);
    print_histo("create", &hc);

    /* Everything idles out: the sweep ends all of it in 1024-session steps. */
    job_t e = {.s = s, .now = now + 31 * 60 * 1000};
    dt = run(expire_job, &e, 1);
    printf("expire_ops_per_s_1thread %.0f\n", (double)e.done / dt);
    printf("baseline_exact_after_expire %d\n", store_bytes(s) == acc0);
    gh_session_store_destroy(&s);
    return 0;
}

/* Four sessions per user, built and swept by two threads at once. */
static int scenario_two_threads(void)
{
    gh_session_store_t *s;
    if (open_store(&s) != 0)
        return 1;
    size_t n = n_sessions, rss0 = gh_mem_rss_bytes(), acc0 = store_bytes(s);
    job_t c[2] = {{.s = s, .from = 0, .to = n / 2, .per_user = 4, .now = T0},
                  {.s = s, .from = n / 2, .to = n, .per_user = 4, .now = T0}};
    double dt = run(create_job, c, 2);
    if (c[0].done + c[1].done != n)
        return 1;
    size_t rss1 = gh_mem_rss_bytes(), acc1 = store_bytes(s);
    printf("create_ops_per_s_2threads %.0f\n", (double)n / dt);
    printf("accounted_bytes_per_session_4_per_user %.1f\n", (double)(acc1 - acc0) / (double)n);
    printf("resident_bytes_per_session_4_per_user %.1f\n",
           (double)((ssize_t)rss1 - (ssize_t)rss0) / (double)n);
    job_t e[2] = {{.s = s, .now = T0 + 13LL * 3600 * 1000},
                  {.s = s, .now = T0 + 13LL * 3600 * 1000}};
    dt = run(expire_job, e, 2);
    printf("expire_ops_per_s_2threads %.0f\n", (double)(e[0].done + e[1].done) / dt);
    printf("baseline_exact_after_expire_2threads %d\n", store_bytes(s) == acc0);
    gh_session_store_destroy(&s);
    return 0;
}

/* One session per user, each from one of CLIENTS clients: what a session costs with the client
 * table, and that the table goes back to nothing with the sessions. */
static int scenario_clients(void)
{
    gh_session_store_t *s;
    if (open_store(&s) != 0)
        return 1;
    gh_session_client_t *clients = gh_mem_calloc(GH_MEM_OTHER, CLIENTS, sizeof *clients);
    if (!clients)
        return 1;
    for (unsigned k = 0; k < CLIENTS; k++) {
        char ip[32], ua[GH_SESSION_UA_MAX + 1];
        snprintf(ip, sizeof ip, "198.%u.%u.%u", 18 + k / 65536 % 2, k / 256 % 256, k % 256);
        snprintf(ua, sizeof ua,
                 "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                 "Gecko) Chrome/%u.0.%u.%u Safari/537.36",
                 100 + k % 30, k / 30 % 9000, k % 200);
        gh_session_client_make(&clients[k], ip, ua, strlen(ua));
    }
    size_t n = n_sessions, acc0 = store_bytes(s);
    job_t c = {.s = s, .from = 0, .to = n, .per_user = 1, .now = T0, .clients = clients};
    run(create_job, &c, 1);
    if (c.done != n)
        return 1;
    gh_session_clients_stats_t cs;
    gh_session_memory_clients(s, &cs);
    printf("accounted_bytes_per_session_1_per_user_%d_clients %.1f\n", CLIENTS,
           (double)(store_bytes(s) - acc0) / (double)n);
    printf("client_table_entries %" PRIu64 "\n", cs.entries);
    printf("client_table_bytes %" PRIu64 "\n", cs.bytes);
    printf("client_table_bytes_per_entry %.1f\n",
           cs.entries ? (double)cs.bytes / (double)cs.entries : 0);
    job_t e = {.s = s, .now = T0 + 13LL * 3600 * 1000};
    run(expire_job, &e, 1);
    gh_session_memory_clients(s, &cs);
    printf("baseline_exact_after_expire_clients %d\n", store_bytes(s) == acc0 && cs.bytes == 0);
    gh_session_store_destroy(&s);
    gh_mem_free(GH_MEM_OTHER, clients);
    return 0;
}

static int in_child(int (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        int rc = fn();
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
        return 1;
    return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
    gh_mem_init();
    n_sessions = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (n_sessions < 1000 || sodium_init() < 0) {
        fprintf(stderr, "usage: bench_store [sessions >= 1000]\n");
        return 2;
    }
    /* Random hashes made up front (and touched) so neither their cost nor their pages land in
     * a figure; real tokens' hashes are just as uniform. */
    hashes = gh_mem_alloc(GH_MEM_OTHER, 2 * n_sessions * sizeof *hashes);
    if (!hashes)
        return 1;
    randombytes_buf(hashes, 2 * n_sessions * sizeof *hashes);
    int rc = in_child(scenario_one_per_user);
    if (rc == 0)
        rc = in_child(scenario_two_threads);
    if (rc == 0)
        rc = in_child(scenario_clients);
    gh_mem_free(GH_MEM_OTHER, hashes);
    return rc;
}
