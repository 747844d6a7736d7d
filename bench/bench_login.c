/*
 * bench_login.c — the ceiling of login throughput: how many argon2id verifications per second
 * this machine can do at the node's password cost on as many threads as the node has hash
 * workers, i.e. crypto_pwhash_str_verify of a correct password in a loop on each thread for a
 * fixed time, nothing else. bench/bench_login.sh runs it in turn with a node's real login
 * throughput (POST /v1/sessions) and prints the ratio.
 *
 * The one decision: the cost and the thread count are not written here but resolved by
 * gh_config_load from the same serve flags (and GATEHOUSE_* environment) the node gets, so the
 * ceiling follows the node's defaults (argon2id 19 MiB, 2 passes; half the cores, at least 1)
 * when they change. Prints one "name value" figure per line; exits non-zero only when it cannot
 * run. Usage: bench_login SECONDS [serve flags...]
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/clock.h"
#include "config/config.h"
#include "mem/mem.h"

#define PASSWORD "bench-login-password-1"

typedef struct {
    const char *hash; /* shared, read-only */
    int64_t deadline_ns;
    int64_t start_ns;
    uint64_t verified;
    int64_t end_ns; /* when this thread's last verification finished */
    int failed;
} worker_t;

/* Verifies until the deadline. Each thread's rate is its own count over its own time, so a
 * verification that runs past the deadline is counted with the time it took. */
static void *run(void *arg)
{
    worker_t *w = arg;
    while (gh_clock_mono_ns() < w->deadline_ns) {
        if (crypto_pwhash_str_verify(w->hash, PASSWORD, strlen(PASSWORD)) != 0) {
            w->failed = 1;
            break;
        }
        w->verified++;
    }
    w->end_ns = gh_clock_mono_ns();
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || atof(argv[1]) <= 0) {
        fprintf(stderr, "usage: bench_login SECONDS [serve flags...]\n");
        return 1;
    }
    double seconds = atof(argv[1]);
    if (sodium_init() < 0)
        return 1;
    gh_mem_init();

    /* argv[1] takes the place of "serve": gh_config_load skips argv[0]. */
    static gh_config_t cfg;
    char err[512];
    argv[1] = "serve";
    if (gh_config_load(&cfg, argc - 1, argv + 1, stderr, err, sizeof err) != 0) {
        fprintf(stderr, "bench_login: %s\n", err);
        return 1;
    }
    assert(cfg.hash_workers >= 1);

    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, PASSWORD, strlen(PASSWORD), cfg.hash_ops,
                          (size_t)cfg.hash_memory) != 0) {
        fprintf(stderr, "bench_login: cannot hash at m=%llu t=%llu\n",
                (unsigned long long)cfg.hash_memory, (unsigned long long)cfg.hash_ops);
        return 1;
    }

    int rc = 1;
    size_t n = cfg.hash_workers;
    worker_t *w = gh_mem_calloc(GH_MEM_OTHER, n, sizeof *w);
    pthread_t *tid = gh_mem_calloc(GH_MEM_OTHER, n, sizeof *tid);
    size_t started = 0;
    int64_t start = gh_clock_mono_ns();
    if (!w || !tid)
        goto out;
    for (; started < n; started++) {
        w[started] = (worker_t){
            .hash = hash, .start_ns = start, .deadline_ns = start + (int64_t)(seconds * 1e9)};
        if (pthread_create(&tid[started], NULL, run, &w[started]) != 0)
            goto out;
    }
out:;
    double rate = 0;
    uint64_t total = 0;
    int failed = 0;
    for (size_t i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        failed |= w[i].failed;
        total += w[i].verified;
        if (w[i].end_ns > w[i].start_ns)
            rate += (double)w[i].verified / ((double)(w[i].end_ns - w[i].start_ns) / 1e9);
    }
    if (started == n && !failed) {
        printf("raw_verify_per_s %.2f threads %zu verified %llu hash_memory %llu hash_ops %llu\n",
               rate, n, (unsigned long long)total, (unsigned long long)cfg.hash_memory,
               (unsigned long long)cfg.hash_ops);
        rc = 0;
    } else {
        fprintf(stderr, "bench_login: %s\n",
                failed ? "a verification of the correct password failed" : "cannot start threads");
    }
    gh_mem_free(GH_MEM_OTHER, w);
    gh_mem_free(GH_MEM_OTHER, tid);
    sodium_memzero(hash, sizeof hash);
    return rc;
}
