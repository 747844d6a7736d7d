/* clock.c — coarse wall clock, monotonic clock and RFC 3339 formatting. */
#include "common/clock.h"

#include <time.h>

int64_t gh_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gh_clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void gh_clock_rfc3339(int64_t ms, char out[GH_RFC3339_LEN])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, GH_RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
