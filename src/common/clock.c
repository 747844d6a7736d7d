/* clock.c — coarse wall clock, monotonic clock and RFC 3339 formatting. */
#include "common/clock.h"

#include <stdio.h>

#include <stdlib.h>

#include <string.h>
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

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_to_civil). Plain
 * arithmetic: gmtime_r takes glibc's time-zone lock, and GET /v1/session formats four times. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10 % 10);
    p[1] = (char)('0' + v % 10);
}

void gh_clock_rfc3339(int64_t ms, char out[GH_RFC3339_LEN])
{
    int64_t secs = ms / 1000 - (ms % 1000 < 0); /* floor, for times before 1970 */
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999) { /* not four digits: RFC 3339 cannot say it; the nearest end */
        memcpy(out, y < 0 ? "0000-01-01T00:00:00Z" : "9999-12-31T23:59:59Z", GH_RFC3339_LEN);
        return;
    }
    memcpy(out, "0000-00-00T00:00:00Z", GH_RFC3339_LEN);
    put2(out, (unsigned)(y / 100));
    put2(out + 2, (unsigned)(y % 100));
    put2(out + 5, mo);
    put2(out + 8, d);
    put2(out + 11, (unsigned)(rem / 3600));
    put2(out + 14, (unsigned)(rem / 60 % 60));
    put2(out + 17, (unsigned)(rem % 60));
}

/* RFC 3339 UTC ("2026-12-06T00:00:00Z", optional .mmm) or milliseconds since the epoch. */
bool gh_clock_parse_time(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n >= 1 && n <= 15 && strspn(s, "0123456789") == n) {
        *out = strtoll(s, NULL, 10);
        return true;
    }
    if (n < 20 || n > 24)
        return false;
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        return false;
    int frac = 0;
    if (*end == '.') {
        end++;
        int digits = 0;
        while (*end >= '0' && *end <= '9' && digits < 3) {
            frac = frac * 10 + (*end++ - '0');
            digits++;
        }
        if (digits != 3)
            return false;
    }
    if (strcmp(end, "Z") != 0)
        return false;
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *out = (int64_t)t * 1000 + frac;
    return true;
}
