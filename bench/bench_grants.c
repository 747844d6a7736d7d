/*
 * bench_grants.c — what the OpenID Connect grant store costs (store/grant.h): bytes per
 * refresh-token family and per authorization code in the memory store (accounted, and resident
 * at 100,000 families), operations per second for the token endpoint's store work (create a
 * family, check an access token, rotate), and bytes per family in Redis (used_memory over a
 * real redis-server started on a free loopback port).
 *
 * The one decision: the memory figures come from a forked child, so the resident-bytes delta is
 * measured in a heap that nothing before has grown (glibc keeps what is freed). Prints one
 * "name value" figure per line; exits non-zero only when it cannot run.
 * Usage: bench_grants [families]   (default 100000)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tests/support/servers.h"
#include "common/clock.h"
#include "mem/mem.h"
#include "store/grant.h"

#define T0 1700000000000LL
#define USERS_PER 4 /* families per user: a user signed in to a few apps */

static size_t n_fam = 100000;

static double seconds(void)
{
    return (double)gh_clock_mono_ns() / 1e9;
}

static void fill(uint8_t *out, size_t n, uint64_t i, uint64_t salt)
{
    for (size_t w = 0; w * 8 < n; w++) {
        uint64_t z = i * 8 + w + salt * 0x1000003 + 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(out + 8 * w, &z, n - 8 * w < 8 ? n - 8 * w : 8);
    }
}

static gh_grant_family_t family(uint64_t i)
{
    gh_grant_family_t f = {.user_id = i / USERS_PER,
                           .scopes = GH_OIDC_SCOPE_OPENID | GH_OIDC_SCOPE_PROFILE,
                           .amr = GH_AMR_PWD | GH_AMR_OTP,
                           .auth_time_ms = T0,
                           .access_expires_at_ms = T0 + 600000};
    fill(f.id, sizeof f.id, i, 1);
    fill(f.refresh_hash, sizeof f.refresh_hash, i, 2);
    fill(f.access_hash, sizeof f.access_hash, i, 3);
    snprintf(f.client_id, sizeof f.client_id, "client-%02u", (unsigned)(i % 8));
    /* a session id as the store sees one: 22 base64url characters */
    snprintf(f.session_id, sizeof f.session_id, "s%021" PRIu64, i / USERS_PER);
    return f;
}

static gh_grant_limits_t limits(void)
{
    return (gh_grant_limits_t){.max_codes = 200000,
                               .max_families = 2000000,
                               .max_per_user = 100,
                               .refresh_ttl_ms = 30LL * 24 * 3600 * 1000,
                               .policy = GH_POLICY_EVICT_IDLE};
}

static int memory_figures(void)
{
    gh_grant_limits_t l = limits();
    gh_grant_store_t *s = NULL;
    if (gh_grant_memory_open(&l, &s) != 0)
        return 1;
    size_t tok0 = gh_mem_bytes(GH_MEM_OIDC_TOKENS), rss0 = gh_mem_rss_bytes();
    double t = seconds();
    for (size_t i = 0; i < n_fam; i++) {
        gh_grant_family_t f = family(i);
        if (gh_grant_family_create(s, &f, T0, NULL) != 0)
            return 1;
    }
    double dt = seconds() - t;
    size_t tok1 = gh_mem_bytes(GH_MEM_OIDC_TOKENS), rss1 = gh_mem_rss_bytes();
    printf("memory_families %zu\n", n_fam);
    printf("memory_family_creates_per_s %.0f\n", (double)n_fam / dt);
    printf("memory_accounted_bytes_per_family %.1f\n", (double)(tok1 - tok0) / (double)n_fam);
    printf("memory_rss_bytes_per_family %.1f\n", (double)(rss1 - rss0) / (double)n_fam);
    /* the token endpoint's and userinfo's store work */
    t = seconds();
    for (size_t i = 0; i < n_fam; i++) {
        gh_grant_family_t f = family(i), g;
        if (gh_grant_family_check_access(s, f.id, f.access_hash, T0 + 1, &g) != 0)
            return 1;
    }
    printf("memory_access_checks_per_s %.0f\n", (double)n_fam / (seconds() - t));
    t = seconds();
    for (size_t i = 0; i < n_fam; i++) {
        gh_grant_family_t f = family(i);
        uint8_t r[32], a[32];
        fill(r, 32, i, 4);
        fill(a, 32, i, 5);
        if (gh_grant_family_rotate(s, f.id, f.refresh_hash, r, a, T0 + 600000, T0 + 2, NULL) != 0)
            return 1;
    }
    printf("memory_rotations_per_s %.0f\n", (double)n_fam / (seconds() - t));
    /* codes: 100,000 abandoned authorizations, and their return to the baseline */
    size_t c0 = gh_mem_bytes(GH_MEM_OIDC_CODES);
    gh_grant_code_t c = {.user_id = 1, .scopes = 1, .auth_time_ms = T0, .amr = 1};
    snprintf(c.client_id, sizeof c.client_id, "client-01");
    snprintf(c.session_id, sizeof c.session_id, "s000000000000000000001");
    snprintf(c.code_challenge, sizeof c.code_challenge, "%s",
             "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    snprintf(c.nonce, sizeof c.nonce, "n-0S6_WzA2Mj-n-0S6_WzA2Mj"); /* 24 bytes */
    for (size_t i = 0; i < 100000; i++) {
        uint8_t k[GH_GRANT_KEY_LEN];
        fill(k, sizeof k, i, 6);
        if (gh_grant_put_code(s, k, &c, T0) != 0)
            return 1;
    }
    size_t c1 = gh_mem_bytes(GH_MEM_OIDC_CODES);
    printf("memory_accounted_bytes_per_code %.1f\n", (double)(c1 - c0) / 100000.0);
    while (gh_grant_expire(s, T0 + GH_GRANT_CODE_TTL_MS, 20000) > 0) {
    }
    printf("memory_codes_bytes_after_expiry_minus_baseline %zd\n",
           (ssize_t)gh_mem_bytes(GH_MEM_OIDC_CODES) - (ssize_t)c0);
    gh_grant_destroy(&s);
    return 0;
}

static int connect_fn(void *ctx, void **conn)
{
    return gh_session_redis_connect(ctx, conn);
}

static long long redis_used(ts_server_t *r)
{
    char reply[64];
    const char *cmd = "EVAL \"return tonumber(string.match(redis.call('INFO','memory'),"
                      "'used_memory:(%d+)'))\" 0";
    if (ts_redis_cmd(r, cmd, reply, sizeof reply) == 0 && reply[0] == ':')
        return atoll(reply + 1);
    return -1;
}

static int redis_figures(size_t n)
{
    ts_server_t redis = {.kind = TS_REDIS};
    gh_session_store_t *sessions = NULL;
    gh_grant_store_t *s = NULL;
    int rc = 1;
    if (ts_server_start(&redis) != 0)
        return 1;
    gh_session_limits_t sl = {.session_ttl_ms = 3600000, .idle_ttl_ms = 600000};
    gh_session_redis_options_t o = {.url = redis.url, .pool_size = 1, .timeout_ms = 2000};
    gh_grant_limits_t l = limits();
    if (gh_session_redis_open(&sl, &o, &sessions) != 0 ||
        gh_grant_redis_open(connect_fn, sessions, &l, &s) != 0)
        goto out;
    int64_t now = gh_clock_now_ms();
    long long u0 = redis_used(&redis);
    double t = seconds();
    for (size_t i = 0; i < n; i++) {
        gh_grant_family_t f = family(i);
        f.access_expires_at_ms = now + 600000;
        if (gh_grant_family_create(s, &f, now, NULL) != 0)
            goto out;
    }
    double dt = seconds() - t;
    long long u1 = redis_used(&redis);
    printf("redis_families %zu\n", n);
    printf("redis_family_creates_per_s_1conn %.0f\n", (double)n / dt);
    if (u0 >= 0 && u1 >= 0)
        printf("redis_used_memory_bytes_per_family %.1f\n", (double)(u1 - u0) / (double)n);
    t = seconds();
    for (size_t i = 0; i < n; i++) {
        gh_grant_family_t f = family(i), g;
        if (gh_grant_family_check_access(s, f.id, f.access_hash, now + 1, &g) != 0)
            goto out;
    }
    printf("redis_access_checks_per_s_1conn %.0f\n", (double)n / (seconds() - t));
    rc = 0;
out:
    gh_grant_destroy(&s);
    gh_session_store_destroy(&sessions);
    ts_server_cleanup(&redis);
    return rc;
}

int main(int argc, char **argv)
{
    gh_mem_init();
    if (argc > 1)
        n_fam = strtoul(argv[1], NULL, 10);
    if (n_fam == 0)
        return 2;
    printf("bench_grants: %ld cores\n", sysconf(_SC_NPROCESSORS_ONLN));
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = memory_figures();
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "bench_grants: the memory scenario failed\n");
        return 1;
    }
    fflush(stdout);
    if (redis_figures(n_fam / 5) != 0) {
        fprintf(stderr, "bench_grants: the Redis scenario failed\n");
        return 1;
    }
    return 0;
}
