/* test_clock.c — RFC 3339 formatting by arithmetic (clock.c) agrees with the C library's
 * gmtime_r + strftime from year 1000 to 9999, pads earlier years to four digits as RFC 3339
 * wants, and clamps beyond them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "common/clock.h"

static void libc_rfc3339(int64_t ms, char out[GH_RFC3339_LEN])
{
    time_t secs = (time_t)(ms / 1000 - (ms % 1000 < 0));
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(out, GH_RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void check(int64_t ms)
{
    char a[GH_RFC3339_LEN], b[GH_RFC3339_LEN];
    gh_clock_rfc3339(ms, a);
    libc_rfc3339(ms, b);
    if (strcmp(a, b) != 0)
        fail_msg("%lld ms: %s, the C library says %s", (long long)ms, a, b);
}

static void known_instants(void **state)
{
    (void)state;
    char out[GH_RFC3339_LEN];
    gh_clock_rfc3339(0, out);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
    gh_clock_rfc3339(951782400000LL, out); /* a leap day in a year divisible by 400 */
    assert_string_equal(out, "2000-02-29T00:00:00Z");
    gh_clock_rfc3339(1795451543999LL, out); /* milliseconds are cut, not rounded */
    assert_string_equal(out, "2026-11-23T16:32:23Z");
    gh_clock_rfc3339(-1, out);
    assert_string_equal(out, "1969-12-31T23:59:59Z");
    gh_clock_rfc3339(-31734889444744LL, out); /* a year of three digits, padded to four */
    assert_string_equal(out, "0964-05-12T00:55:55Z");
}

static void agrees_with_the_c_library(void **state)
{
    (void)state;
    /* Every day boundary (and a second either side) from 1900 to 2200, then a spread of
     * pseudo-random instants over the whole four-digit range. */
    for (int64_t day = -25567; day <= 84000; day++) {
        int64_t ms = day * 86400000LL;
        check(ms);
        check(ms - 1000);
        check(ms + 43210123);
    }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    /* 1000..9999: below 1000 glibc's %Y does not pad to four digits (RFC 3339 does). */
    const int64_t lo = -30610224000000LL, span = 253402300799999LL - lo;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check(lo + (int64_t)(x % (uint64_t)span));
    }
}

static void years_past_four_digits_are_clamped(void **state)
{
    (void)state;
    char out[GH_RFC3339_LEN];
    gh_clock_rfc3339(INT64_MAX, out);
    assert_string_equal(out, "9999-12-31T23:59:59Z");
    gh_clock_rfc3339(-62167219200001LL, out); /* just before year 0 */
    assert_string_equal(out, "0000-01-01T00:00:00Z");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_instants),
        cmocka_unit_test(agrees_with_the_c_library),
        cmocka_unit_test(years_past_four_digits_are_clamped),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
