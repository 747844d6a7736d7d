/*
 * leak_preload.c — a test-only LD_PRELOAD library that makes the process it is loaded into leak
 * memory nothing accounts for, at a steady rate, the way the outage's session-cleanup bug did.
 * The end-to-end watchdog test preloads it into a real `gatehouse serve`.
 *
 * The one design decision: the leak runs on its own thread, started by a constructor with every
 * signal blocked, so it leaks exactly like a bug would (plain malloc, pages touched so RSS grows)
 * without changing how the server takes SIGTERM. Never linked into anything; never shipped.
 *
 *   GH_TEST_LEAK_RATE   bytes per second (default 2 MiB)
 *   GH_TEST_LEAK_MAX    stop after this many bytes (default 512 MiB), so a stuck test is bounded
 *   GH_TEST_LEAK_WHEN   a path: leak only once it exists (checked every 50 ms), as a bug starts
 *                       to leak in a node that has been serving, its caches already full
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : def;
}

static void *leak_main(void *arg)
{
    (void)arg;
    uint64_t rate = env_u64("GH_TEST_LEAK_RATE", 2u << 20);
    uint64_t max = env_u64("GH_TEST_LEAK_MAX", 512u << 20);
    if (rate == 0)
        return NULL;
    uint64_t period_ns = (uint64_t)CHUNK * 1000000000u / rate;
    const char *when = getenv("GH_TEST_LEAK_WHEN");
    if (when && *when) {
        struct timespec tick = {0, 50 * 1000000L};
        while (access(when, F_OK) != 0)
            nanosleep(&tick, NULL);
    }
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (uint64_t leaked = 0; leaked < max; leaked += CHUNK) {
        char *p = malloc(CHUNK);
        if (p)
            memset(p, 0x5a, CHUNK); /* touched, so it is resident; never freed */
        next.tv_nsec += (long)period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return NULL;
}

__attribute__((constructor)) static void leak_start(void)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t t;
    if (pthread_create(&t, NULL, leak_main, NULL) == 0)
        pthread_detach(t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
