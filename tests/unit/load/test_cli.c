/*
 * test_cli.c — the flags of `gatehouse load`: only loopback targets pass, leak thresholds parse
 * in both units, defaults and cross-checks (soak's rate, the warm-up, per-1k thresholds) hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "load/load.h"

static void loopback_urls_pass_and_lose_their_trailing_slash(void **state)
{
    (void)state;
    const char *ok[][2] = {
        {"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
        {"http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
        {"http://localhost:8080", "http://localhost:8080"},
        {"http://LOCALHOST", "http://LOCALHOST"},
        {"http://[::1]:9000/", "http://[::1]:9000"},
        {"https://127.0.0.1/auth//", "https://127.0.0.1/auth"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char base[GH_LOAD_URL_MAX], err[256];
        if (gh_load_parse_url(ok[i][0], base, sizeof base, err, sizeof err) != 0)
            fail_msg("%s refused: %s", ok[i][0], err);
        assert_string_equal(base, ok[i][1]);
    }
}

static void every_other_host_is_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "http://192.0.2.1:8080",
        "http://example.com/",
        "http://127.0.0.2",
        "http://127.0.0.1.nip.io",
        "http://localhost.evil.test",
        "http://[::2]:80",
        "http://0.0.0.0:80",
        "http://10.0.0.1",
        "ftp://127.0.0.1/",
        "file:///etc/passwd",
        "127.0.0.1:8080",
        "http://user:pw@127.0.0.1/",
        "http://127.0.0.1/?q=1",
        "http://127.0.0.1/#x",
        "",
        "http://[::ffff:192.0.2.1]/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char base[GH_LOAD_URL_MAX], err[256] = "";
        if (gh_load_parse_url(bad[i], base, sizeof base, err, sizeof err) != GH_EINVAL)
            fail_msg("'%s' was accepted as %s", bad[i], base);
        assert_true(err[0] != '\0');
    }
    char small[16], err[256];
    assert_int_equal(gh_load_parse_url("http://127.0.0.1:8080/a/long/path", small, sizeof small,
                                       err, sizeof err),
                     GH_EINVAL);
}

static void leak_thresholds_parse_in_both_units(void **state)
{
    (void)state;
    double b = 0;
    gh_load_leak_unit_t u = GH_LOAD_LEAK_PER_1K;
    assert_int_equal(gh_load_parse_leak("64KiB/s", &b, &u), 0);
    assert_true(b == 65536 && u == GH_LOAD_LEAK_PER_S);
    assert_int_equal(gh_load_parse_leak("60KiB/min", &b, &u), 0);
    assert_true(b == 1024 && u == GH_LOAD_LEAK_PER_S);
    assert_int_equal(gh_load_parse_leak("36MiB/h", &b, &u), 0);
    assert_true(fabs(b - 36.0 * 1024 * 1024 / 3600) < 1e-9);
    assert_int_equal(gh_load_parse_leak("16KiB/1k", &b, &u), 0);
    assert_true(b == 16384 && u == GH_LOAD_LEAK_PER_1K);
    assert_int_equal(gh_load_parse_leak("100/s", &b, &u), 0);
    assert_true(b == 100);
    const char *bad[] = {"64KiB", "/s", "64KiB/", "64KiB/day", "lots/s", "-1/s", "64KiB/s/s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gh_load_parse_leak(bad[i], &b, &u) != GH_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

static int parse(gh_load_opts_t *o, char *err, size_t len, ...)
{
    char *argv[32] = {"load"};
    int argc = 1;
    va_list ap;
    va_start(ap, len);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    FILE *out = fopen("/dev/null", "w");
    assert_non_null(out);
    int rc = gh_load_parse_args(o, argc, argv, out, err, len);
    fclose(out);
    return rc;
}

static gh_load_opts_t o;

static void defaults_and_cross_checks(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(parse(&o, err, sizeof err, "--url", "http://127.0.0.1:8080/", NULL), 0);
    assert_string_equal(o.url, "http://127.0.0.1:8080");
    assert_string_equal(o.metrics_url, "http://127.0.0.1:8080/metrics");
    assert_int_equal(o.scenario, GH_LOAD_CHURN);
    assert_int_equal(o.duration_ms, 30000);
    assert_true(o.rate == 0); /* closed loop */
    assert_true(o.max_leak < 0);
    assert_int_equal(o.concurrency, 16);
    assert_int_equal(o.users, 100);
    assert_int_equal(o.checks, 5);
    assert_string_equal(o.user_prefix, "load-");

    /* soak: churn at a fixed rate for long, unless told otherwise */
    assert_int_equal(
        parse(&o, err, sizeof err, "--url", "http://[::1]:1", "--scenario", "soak", NULL), 0);
    assert_int_equal(o.duration_ms, 600000);
    assert_true(o.rate == 100);
    assert_int_equal(parse(&o, err, sizeof err, "--url=http://[::1]:1", "--scenario=soak",
                           "--rate=2500/s", "--duration=90s", "--max-leak=8KiB/1k", NULL),
                     0);
    assert_true(o.rate == 2500 && o.duration_ms == 90000);
    assert_int_equal(o.max_leak_unit, GH_LOAD_LEAK_PER_1K);

    struct {
        const char *flag, *value, *says;
    } bad[] = {
        {"--scenario", "validate", "--max-leak"}, /* with --max-leak 1KiB/1k below */
        {"--warmup", "30s", "--warmup"},          /* not shorter than the 30 s duration */
        {"--metrics-url", "http://10.1.1.1/metrics", "--metrics-url"},
        {"--user-prefix", "bad prefix", "--user-prefix"},
        {"--checks", "1001", "--checks"},
        {"--concurrency", "1025", "--concurrency"},
        {"--duration", "500ms", "--duration"},
        {"--bogus", "1", "--bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = i == 0 ? parse(&o, err, sizeof err, "--url", "http://127.0.0.1:1", bad[i].flag,
                                bad[i].value, "--max-leak", "1KiB/1k", NULL)
                        : parse(&o, err, sizeof err, "--url", "http://127.0.0.1:1", bad[i].flag,
                                bad[i].value, NULL);
        if (rc != GH_EINVAL || !strstr(err, bad[i].says) || strchr(err, '\n'))
            fail_msg("%s %s: rc %d, err \"%s\"", bad[i].flag, bad[i].value, rc, err);
    }
    assert_int_equal(parse(&o, err, sizeof err, "--url", NULL), GH_EINVAL); /* no value */
    assert_int_equal(parse(&o, err, sizeof err, "--help", NULL), 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loopback_urls_pass_and_lose_their_trailing_slash),
        cmocka_unit_test(every_other_host_is_refused),
        cmocka_unit_test(leak_thresholds_parse_in_both_units),
        cmocka_unit_test(defaults_and_cross_checks),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
