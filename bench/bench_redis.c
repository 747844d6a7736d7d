/*
 * bench_redis.c — token checks per second through the Redis session store next to the memory
 * store, with redis-benchmark's GET on the same redis-server as the ceiling; what a session
 * costs in Redis memory; and that the node's own accounted bytes do not move.
 *
 * The one decision: every figure comes from one redis-server this program starts on a free
 * loopback port (tests/support/servers.h), so the figures compare like with like on the machine
 * at hand, and nothing but loopback traffic is made. A token check is gh_session_lookup on a
 * random live session; "write" runs with touch interval 0 (every check records last use: a
 * script that writes), "coarse" with the node's default (10 s: the check only reads).
 * "plain_get" is the floor of a check: a plain GET of the same session keys, from as many threads
 * each with its own hiredis connection, on the same server; Redis CPU per check divided by Redis
 * CPU per plain GET is the check's overhead ratio. "nodes" forks 1, 2 and 4 processes, each with
 * its own store and connection pool (what separate Gatehouse nodes hold), checking tokens against
 * the one redis-server at once: checks per second and Redis CPU per check as nodes are added.
 * Memory: used_memory growth over the fill divided by the sessions, and MEMORY USAGE of one key
 * of each kind.
 * Each scenario runs for a fixed time. Prints one "name value" figure per line; exits non-zero
 * only when it cannot run. Usage: bench_redis [sessions] [seconds-per-scenario]
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis.h>
#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/session.h"
#include "../tests/support/servers.h"

#define T0 1700000000000LL
#define MAX_THREADS 16

typedef struct {
    uint8_t b[GH_TOKEN_HASH_LEN];
} hash_t;

static hash_t *hashes;
static size_t n_sessions = 20000;
static double scenario_s = 2.0;
static ts_server_t redis = {.kind = TS_REDIS};

/* ---- latency histogram: 16 linear sub-buckets per power of two of nanoseconds ---- */

#define SUB 16
typedef struct {
    uint64_t count[64 * SUB];
    uint64_t total;
} histo_t;

static void histo_add(histo_t *h, uint64_t ns)
{
    unsigned b = 0, sub = (unsigned)ns;
    if (ns >= SUB) {
        unsigned p = 63 - (unsigned)__builtin_clzll(ns);
        b = p - 3;
        sub = (unsigned)(ns >> (p - 4)) - SUB;
    }
    h->count[b * SUB + sub]++;
    h->total++;
}

static void histo_merge(histo_t *into, const histo_t *h)
{
    for (unsigned i = 0; i < 64 * SUB; i++)
        into->count[i] += h->count[i];
    into->total += h->total;
}

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

/* ---- helpers ---- */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static gh_session_limits_t limits(void)
{
    return (gh_session_limits_t){.session_ttl_ms = 12LL * 3600 * 1000,
                                 .idle_ttl_ms = 30LL * 60 * 1000,
                                 .max_per_user = 100,
                                 .policy = GH_POLICY_EVICT_IDLE};
}

static int open_redis(int64_t touch_ms, unsigned pool, gh_session_store_t **s)
{
    gh_session_limits_t l = limits();
    gh_session_redis_options_t o = {
        .url = redis.url, .pool_size = pool, .touch_interval_ms = touch_ms};
    int rc = gh_session_redis_open(&l, &o, s);
    if (rc != 0)
        fprintf(stderr, "bench_redis: open: %s\n", gh_strerror(rc));
    return rc;
}

typedef struct {
    gh_session_store_t *s;
    uint64_t seed;
    int64_t now;
    bool advance; /* each check 1 ms later than the last: with touch interval 0, each writes */
    double until;
    uint64_t ops, failures;
    histo_t h;
} job_t;

static double seconds(void)
{
    return (double)gh_clock_mono_ns() / 1e9;
}

static void *lookup_job(void *arg)
{
    job_t *j = arg;
    while (seconds() < j->until) {
        for (int k = 0; k < 64; k++) {
            const uint8_t *h = hashes[xorshift(&j->seed) % n_sessions].b;
            int64_t t = gh_clock_mono_ns();
            if (gh_session_lookup(j->s, h, j->advance ? j->now + (int64_t)j->ops : j->now, NULL) !=
                0)
                j->failures++;
            histo_add(&j->h, (uint64_t)(gh_clock_mono_ns() - t));
            j->ops++;
        }
    }
    return NULL;
}

/* CPU time redis-server has used so far, in microseconds (INFO cpu, read by a Lua one-liner
 * so the reply is one integer). Per operation it is the Redis cost of a check, which other load
 * on the machine does not inflate the way it inflates wall-clock rates. */
static long long redis_cpu_us(void)
{
    char reply[64];
    const char *cmd = "EVAL \"local i = redis.call('INFO', 'cpu') return math.floor(("
                      "tonumber(string.match(i, 'used_cpu_sys:([%d.]+)')) + "
                      "tonumber(string.match(i, 'used_cpu_user:([%d.]+)'))) * 1000000)\" 0";
    if (ts_redis_cmd(&redis, cmd, reply, sizeof reply) != 0 || reply[0] != ':')
        return -1;
    return atoll(reply + 1);
}

static double last_cpu_per_op; /* Redis CPU per check of the last checks() */
static double last_cmd_per_op; /* Redis command time per check of the last checks() */

/* Microseconds Redis spent executing commands (INFO commandstats, every command's usec) since
 * the last CONFIG RESETSTAT: the commands' own cost, without the network and event loop, which
 * other load on the machine inflates. -1 when unknown. */
static long long redis_cmd_us(void)
{
    char reply[64];
    const char *cmd = "EVAL \"local n = 0 for u in string.gmatch(redis.call('INFO', "
                      "'commandstats'), 'usec=(%d+)') do n = n + tonumber(u) end return n\" 0";
    if (ts_redis_cmd(&redis, cmd, reply, sizeof reply) != 0 || reply[0] != ':')
        return -1;
    return atoll(reply + 1);
}

static void reset_stats(void)
{
    char reply[64];
    ts_redis_cmd(&redis, "CONFIG RESETSTAT", reply, sizeof reply);
}

/* Token checks for scenario_s seconds from `threads` threads; prints ops/s and latency. */
static int checks(const char *name, gh_session_store_t *s, int threads)
{
    static job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    double t0 = seconds();
    for (int i = 0; i < threads; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i] = (job_t){.s = s,
                          .seed = 88172645463325252ull + 7919 * (uint64_t)i,
                          .now = T0 + 60000,
                          .advance = strncmp(name, "redis_write", 11) == 0,
                          .until = t0 + scenario_s};
        if (pthread_create(&th[i], NULL, lookup_job, &jobs[i]) != 0)
            return 1;
    }
    static histo_t all;
    memset(&all, 0, sizeof all);
    long long cpu0 = strncmp(name, "redis", 5) == 0 ? redis_cpu_us() : -1;
    if (cpu0 >= 0)
        reset_stats();
    uint64_t ops = 0, failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ops += jobs[i].ops;
        failures += jobs[i].failures;
        histo_merge(&all, &jobs[i].h);
    }
    double dt = seconds() - t0;
    if (failures) {
        fprintf(stderr, "bench_redis: %s: %" PRIu64 " lookups failed\n", name, failures);
        return 1;
    }
    printf("%s_checks_per_s_%dthreads %.0f\n", name, threads, (double)ops / dt);
    printf("%s_check_ns_p50_%dthreads %" PRIu64 "\n", name, threads, histo_quantile(&all, 0.5));
    printf("%s_check_ns_p99_%dthreads %" PRIu64 "\n", name, threads, histo_quantile(&all, 0.99));
    long long cpu1 = cpu0 >= 0 ? redis_cpu_us() : -1;
    last_cpu_per_op = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / (double)ops : -1;
    long long cmd_us = cpu0 >= 0 ? redis_cmd_us() : -1;
    last_cmd_per_op = cmd_us >= 0 ? (double)cmd_us / (double)ops : -1;
    if (cmd_us >= 0)
        printf("%s_redis_cmd_us_per_check_%dthreads %.3f\n", name, threads, last_cmd_per_op);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("%s_redis_cpu_us_per_check_%dthreads %.2f\n", name, threads,
               (double)(cpu1 - cpu0) / (double)ops);
    fflush(stdout);
    return 0;
}

static int fill(gh_session_store_t *s)
{
    for (size_t i = 0; i < n_sessions; i++) {
        int rc = gh_session_create(s, i / 2, hashes[i].b, NULL, T0 + (int64_t)(i / 1000), NULL);
        if (rc != 0) {
            fprintf(stderr, "bench_redis: create %zu: %s\n", i, gh_strerror(rc));
            return 1;
        }
    }
    return 0;
}

/* ---- the floor: a plain GET of the same keys ---- */

typedef struct {
    uint64_t seed;
    double until;
    uint64_t ops, failures;
} get_job_t;

static void *get_job(void *arg)
{
    get_job_t *j = arg;
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    if (!c || c->err) {
        j->failures++;
        if (c)
            redisFree(c);
        return NULL;
    }
    char key[4 + 24] = "gh:k";
    while (seconds() < j->until) {
        for (int k = 0; k < 64; k++) {
            memcpy(key + 4, hashes[xorshift(&j->seed) % n_sessions].b, 24);
            redisReply *r = redisCommand(c, "GET %b", key, sizeof key);
            if (!r || r->type != REDIS_REPLY_STRING)
                j->failures++;
            if (r)
                freeReplyObject(r);
            j->ops++;
        }
    }
    redisFree(c);
    return NULL;
}

static double last_get_cmd_per_op;

/* Returns Redis CPU microseconds per GET (or -1). */
static double plain_gets(int threads)
{
    static get_job_t jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    double t0 = seconds();
    long long cpu0 = redis_cpu_us();
    reset_stats();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (get_job_t){.seed = 88172645463325252ull + 7919 * (uint64_t)i,
                              .until = t0 + scenario_s};
        if (pthread_create(&th[i], NULL, get_job, &jobs[i]) != 0)
            return -1;
    }
    uint64_t ops = 0, failures = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        ops += jobs[i].ops;
        failures += jobs[i].failures;
    }
    long long cpu1 = redis_cpu_us();
    double dt = seconds() - t0;
    if (failures || !ops) {
        fprintf(stderr, "bench_redis: plain GET: %" PRIu64 " failed\n", failures);
        return -1;
    }
    double per = cpu0 >= 0 && cpu1 >= 0 ? (double)(cpu1 - cpu0) / (double)ops : -1;
    printf("plain_get_per_s_%dthreads %.0f\n", threads, (double)ops / dt);
    printf("plain_get_redis_cpu_us_per_op_%dthreads %.2f\n", threads, per);
    long long cmd_us = redis_cmd_us();
    last_get_cmd_per_op = cmd_us >= 0 ? (double)cmd_us / (double)ops : -1;
    if (cmd_us >= 0)
        printf("plain_get_redis_cmd_us_per_op_%dthreads %.3f\n", threads, last_get_cmd_per_op);
    fflush(stdout);
    return per;
}

/* ---- several nodes on one Redis: processes, each with its own store ---- */

static int nodes(int n)
{
    int fds[8][2];
    pid_t pids[8];
    double until = seconds() + 0.3 + scenario_s; /* every child starts before the clock runs */
    for (int i = 0; i < n; i++) {
        if (pipe(fds[i]) != 0)
            return 1;
        pids[i] = fork();
        if (pids[i] < 0)
            return 1;
        if (pids[i] == 0) {
            close(fds[i][0]);
            gh_session_store_t *s = NULL;
            uint64_t ops = 0;
            if (open_redis(10000, 2, &s) == 0) {
                job_t j[2];
                pthread_t th[2];
                for (int k = 0; k < 2; k++) {
                    memset(&j[k], 0, sizeof j[k]);
                    j[k] = (job_t){.s = s,
                                   .seed = 1234567ull * (uint64_t)(i * 2 + k + 1),
                                   .now = T0 + 60000,
                                   .until = until};
                    pthread_create(&th[k], NULL, lookup_job, &j[k]);
                }
                for (int k = 0; k < 2; k++) {
                    pthread_join(th[k], NULL);
                    ops += j[k].failures ? 0 : j[k].ops;
                }
                gh_session_store_destroy(&s);
            }
            ssize_t w = write(fds[i][1], &ops, sizeof ops);
            _exit(w == (ssize_t)sizeof ops ? 0 : 1);
        }
        close(fds[i][1]);
    }
    long long cpu0 = redis_cpu_us();
    double t0 = seconds();
    uint64_t ops = 0;
    int ret = 0;
    for (int i = 0; i < n; i++) {
        uint64_t o = 0;
        if (read(fds[i][0], &o, sizeof o) != (ssize_t)sizeof o || o == 0)
            ret = 1;
        ops += o;
        close(fds[i][0]);
        waitpid(pids[i], NULL, 0);
    }
    long long cpu1 = redis_cpu_us();
    double dt = seconds() - t0;
    if (ret) {
        fprintf(stderr, "bench_redis: a node failed\n");
        return 1;
    }
    /* the children's clock started 0.3 s after cpu0 at most: the rate uses their window */
    printf("redis_nodes_%d_checks_per_s %.0f\n", n, (double)ops / scenario_s);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("redis_nodes_%d_redis_cpu_us_per_check %.2f\n", n,
               (double)(cpu1 - cpu0) / (double)ops);
    (void)dt;
    fflush(stdout);
    return 0;
}

/* MEMORY USAGE of the first key matching `pattern` (found by SCAN), printed as `name` (Redis's
 * estimate: exact for small keys, from 5 sampled members for a big sorted set). */
static void key_usage(const char *name, const char *pattern)
{
    char cmd[256], reply[64];
    snprintf(cmd, sizeof cmd,
             "EVAL \"local c, k = '0' repeat local r = redis.call('SCAN', c, 'MATCH', '%s', "
             "'COUNT', 1000) c, k = r[1], r[2][1] until k or c == '0' "
             "if not k then return -1 end return redis.call('MEMORY', 'USAGE', k)\" 0",
             pattern);
    if (ts_redis_cmd(&redis, cmd, reply, sizeof reply) == 0 && reply[0] == ':' &&
        atoll(reply + 1) >= 0)
        printf("%s %lld\n", name, atoll(reply + 1));
}

/* redis-benchmark GET against the same server: the most a Redis round trip can give, in
 * requests per second and in Redis CPU per request. */
static void ceiling(int clients)
{
    char cmd[256];
    int n = clients == 1 ? 50000 : 200000;
    snprintf(cmd, sizeof cmd,
             "redis-benchmark -h 127.0.0.1 -p %d -t get -n %d -c %d --threads %d -q 2>/dev/null",
             redis.port, n, clients, clients == 1 ? 1 : 2);
    long long cpu0 = redis_cpu_us();
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("redis_benchmark_get_per_s_%dclients unavailable\n", clients);
        return;
    }
    char line[512];
    double rps = -1;
    while (fgets(line, sizeof line, p)) {
        /* "GET: 123456.79 requests per second, p50=0.103 msec" after \r-separated progress */
        for (char *g = strstr(line, "GET: "); g; g = strstr(g + 1, "GET: "))
            if (strtod(g + 5, NULL) > 0)
                rps = strtod(g + 5, NULL); /* the last one: progress lines come first */
    }
    pclose(p);
    long long cpu1 = redis_cpu_us();
    if (rps < 0) {
        printf("redis_benchmark_get_per_s_%dclients unavailable\n", clients);
        return;
    }
    printf("redis_benchmark_get_per_s_%dclients %.0f\n", clients, rps);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf("redis_benchmark_get_redis_cpu_us_per_op_%dclients %.2f\n", clients,
               (double)(cpu1 - cpu0) / n);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n_sessions = (size_t)strtoull(argv[1], NULL, 10);
    if (argc > 2)
        scenario_s = strtod(argv[2], NULL);
    if (sodium_init() < 0 || n_sessions == 0 || scenario_s <= 0)
        return 1;
    gh_log_setup(GH_LOG_TEXT, GH_LOG_WARN);
    hashes = gh_mem_calloc(GH_MEM_OTHER, n_sessions, sizeof *hashes);
    if (!hashes)
        return 1;
    for (size_t i = 0; i < n_sessions; i++)
        randombytes_buf(hashes[i].b, sizeof hashes[i].b);
    if (ts_server_start(&redis) != 0)
        return 1;
    int ret = 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    printf("sessions %zu\ncores %ld\nseconds_per_scenario %.1f\n", n_sessions, cores, scenario_s);

    /* memory: the ceiling of the in-process store */
    gh_session_store_t *m = NULL, *r = NULL;
    gh_session_limits_t l = limits();
    if (gh_session_memory_open(&l, &m) != 0 || fill(m) != 0)
        goto out;
    if (checks("memory", m, 1) || checks("memory", m, 2))
        goto out;
    gh_session_store_destroy(&m);

    /* Redis: what one session costs there, and that the node holds nothing per session */
    char reply[64];
    ts_redis_cmd(&redis, "FLUSHALL", reply, sizeof reply);
    if (open_redis(0, 8, &r) != 0)
        goto out;
    gh_session_stats_t st0, st1;
    gh_session_stats(r, &st0);
    long long used0 = -1, used1 = -1;
    /* used_memory through INFO is a bulk reply; a Lua one-liner returns it as an integer */
    const char *used_cmd = "EVAL \"return tonumber(string.match(redis.call('INFO','memory'),"
                           "'used_memory:(%d+)'))\" 0";
    if (ts_redis_cmd(&redis, used_cmd, reply, sizeof reply) == 0 && reply[0] == ':')
        used0 = atoll(reply + 1);
    double t = seconds();
    if (fill(r) != 0)
        goto out;
    printf("redis_creates_per_s_1thread %.0f\n", (double)n_sessions / (seconds() - t));
    if (ts_redis_cmd(&redis, used_cmd, reply, sizeof reply) == 0 && reply[0] == ':')
        used1 = atoll(reply + 1);
    gh_session_stats(r, &st1);
    if (used0 >= 0 && used1 >= 0)
        printf("redis_bytes_per_session %.0f\n", (double)(used1 - used0) / (double)n_sessions);
    printf("node_accounted_bytes_before %" PRIu64 "\nnode_accounted_bytes_after %" PRIu64 "\n",
           st0.bytes, st1.bytes);
    key_usage("redis_memory_usage_session_key", "gh:k*");
    key_usage("redis_memory_usage_user_key_2_sessions", "gh:U:*");
    key_usage("redis_memory_usage_expiry_index", "gh:E");
    fflush(stdout);

    /* Every session checked once at the scenarios' `now` (and its last use recorded), so that
     * the coarse scenarios below measure the steady state of a token checked more often than
     * the touch interval: reads only. The write scenarios measure a write per check. */
    for (size_t i = 0; i < n_sessions; i++)
        if (gh_session_lookup(r, hashes[i].b, T0 + 60000, NULL) != 0)
            goto out;
    int threads[] = {1, 2, 8};
    for (size_t i = 0; i < sizeof threads / sizeof *threads; i++)
        if (checks("redis_write", r, threads[i]))
            goto out;
    gh_session_store_destroy(&r);
    if (open_redis(10000, 8, &r) != 0)
        goto out;
    double coarse[3] = {0}, plain[3] = {0};
    for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
        /* the check and the plain GET alternate, so drift on the machine hits both */
        if (checks("redis_coarse", r, threads[i]))
            goto out;
        coarse[i] = last_cpu_per_op;
        double coarse_cmd = last_cmd_per_op;
        plain[i] = plain_gets(threads[i]);
        if (coarse[i] > 0 && plain[i] > 0)
            printf("check_vs_plain_get_redis_cpu_ratio_%dthreads %.2f\n", threads[i],
                   coarse[i] / plain[i]);
        if (coarse_cmd > 0 && last_get_cmd_per_op > 0)
            printf("check_vs_plain_get_redis_cmd_ratio_%dthreads %.2f\n", threads[i],
                   coarse_cmd / last_get_cmd_per_op);
    }
    gh_session_store_destroy(&r);
    for (int n = 1; n <= 4; n *= 2)
        if (nodes(n))
            goto out;

    ceiling(1);
    ceiling(8);
    ret = 0;
out:
    gh_session_store_destroy(&m);
    gh_session_store_destroy(&r);
    ts_server_cleanup(&redis);
    gh_mem_free(GH_MEM_OTHER, hashes);
    return ret;
}
