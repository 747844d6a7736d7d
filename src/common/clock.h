/*
 * clock.h — time for Gatehouse. Wall-clock milliseconds since the Unix epoch are what sessions
 * store (they survive restarts and are shown to users as RFC 3339); the monotonic clock measures
 * durations. Stores take `now` as a parameter instead of reading a clock, so tests inject time.
 */
#ifndef GH_COMMON_CLOCK_H
#define GH_COMMON_CLOCK_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

/* Wall clock, milliseconds since the epoch (CLOCK_REALTIME_COARSE: cheap, ~4 ms resolution). */
int64_t gh_clock_now_ms(void);
/* Monotonic clock in nanoseconds, for measuring durations. */
int64_t gh_clock_mono_ns(void);
/* Writes ms-since-epoch as RFC 3339 UTC with seconds precision ("2026-11-24T18:42:23Z").
 * out must hold at least GH_RFC3339_LEN bytes. */
#define GH_RFC3339_LEN 21
void gh_clock_rfc3339(int64_t ms, char out[GH_RFC3339_LEN]);
/* Parses a UTC time as "2026-12-06T00:00:00Z" (optionally with .mmm before the Z) or as digits
 * of milliseconds since the epoch, into *ms. Returns false for anything else. */
bool gh_clock_parse_time(const char *s, int64_t *ms);

#endif
