/*
 * leak_preload.c — a test-only LD_PRELOAD library that makes the process it is loaded into leak.
 *
 * A constructor starts one detached thread that, every 100 ms, allocates a tenth of
 * GH_LEAK_BYTES_PER_S bytes (default 512 KiB per second) in 4 KiB blocks with plain malloc, writes
 * every byte so the pages are resident, and never frees them. That is the leak a bug in a library
 * or a forgotten free makes: RSS grows steadily and nothing of it is accounted to a Gatehouse
 * component (gatehouse_memory_unexplained_bytes grows), while live sessions do not.
 *
 * The blocks are chained through their first word from a global head, so they stay reachable: a
 * LeakSanitizer build of the process does not report them and fail for a reason the test did not
 * ask about. GH_LEAK_AFTER_MS delays the start (default 0). Built by the Makefile into
 * BUILD/tests/support/leak_preload.so; never linked into anything.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BLOCK 4096

static void *volatile leaked_head;

static long env_long(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 0 ? v : dflt;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *leak_thread(void *arg)
{
    (void)arg;
    long rate = env_long("GH_LEAK_BYTES_PER_S", 512 * 1024);
    long after = env_long("GH_LEAK_AFTER_MS", 0);
    if (after)
        sleep_ms(after);
    long per_tick = rate / 10;
    for (;;) {
        for (long done = 0; done < per_tick; done += BLOCK) {
            void **block = malloc(BLOCK);
            if (!block)
                break;
            memset(block, 0xA5, BLOCK);
            *block = leaked_head;
            leaked_head = block;
        }
        sleep_ms(100);
    }
    return NULL;
}

__attribute__((constructor)) static void leak_start(void)
{
    pthread_t t;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    (void)pthread_create(&t, &attr, leak_thread, NULL);
    pthread_attr_destroy(&attr);
}
