/*
 * test_pages.c — the redirect rule of a login (gh_pages_redirect_ok): what a browser may be sent
 * to after logging in, and every open-redirect trick we know of that it must refuse.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/pages.h"

#define HOST "app.example:8080"

static void paths_on_this_origin_are_allowed(void **state)
{
    (void)state;
    assert_true(gh_pages_redirect_ok("/", HOST, ""));
    assert_true(gh_pages_redirect_ok("/app/page?x=1#frag", HOST, ""));
    assert_true(gh_pages_redirect_ok("/%2F%2Fevil.example", HOST, "")); /* a path, not a host */
    assert_true(gh_pages_redirect_ok("http://app.example:8080/x", HOST, ""));
    assert_true(gh_pages_redirect_ok("HTTPS://APP.EXAMPLE:8080", HOST, ""));
}

static void open_redirect_tricks_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        " /x",
        "https://evil.example/",
        "http:/evil.example",
        "http:evil.example",
        "https:///evil.example",
        "javascript:alert(1)",
        "JavaScript://app.example:8080/%0aalert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://app.example:8080/",
        "http://app.example:8080@evil.example/",
        "http://evil.example\\@app.example:8080/",
        "http://evil.example%2f@app.example:8080/",
        "http://app.example%3A8080.evil.example/",
        "http://app.example:8080.evil.example/",
        "http://app.example.evil.example:8080/",
        "%2F%2Fevil.example",
        "http://app.example:8080/\xc3\xa9",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (gh_pages_redirect_ok(bad[i], HOST, "allowed.example"))
            fail_msg("accepted \"%s\"", bad[i]);
    assert_false(gh_pages_redirect_ok(NULL, HOST, ""));
    assert_false(gh_pages_redirect_ok("http://app.example:8080/", NULL, NULL));
}

static void allowed_hosts_match_host_or_subdomains(void **state)
{
    (void)state;
    const char *allowed = "wiki.example, .corp.example";
    assert_true(gh_pages_redirect_ok("https://wiki.example/page", HOST, allowed));
    assert_true(gh_pages_redirect_ok("https://WIKI.example:8443/page", HOST, allowed));
    assert_true(gh_pages_redirect_ok("https://a.corp.example/", HOST, allowed));
    assert_true(gh_pages_redirect_ok("https://corp.example", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://evilcorp.example/", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://wiki.example.evil/", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://xwiki.example/", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://wiki.example:/", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://wiki.example:80x/", HOST, allowed));
    assert_false(gh_pages_redirect_ok("https://wiki.example/", HOST, ""));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paths_on_this_origin_are_allowed),
        cmocka_unit_test(open_redirect_tricks_are_refused),
        cmocka_unit_test(allowed_hosts_match_host_or_subdomains),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
