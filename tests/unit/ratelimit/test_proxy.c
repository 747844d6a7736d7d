/* test_proxy.c — client addresses: parsing, trusted-proxy CIDRs, and which address a request is
 * throttled as when it names a client through X-Forwarded-For or X-Real-IP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit/ratelimit.h"

static gh_ip_t ip(const char *s)
{
    gh_ip_t out;
    assert_int_equal(gh_ip_parse(s, strlen(s), &out), 0);
    return out;
}

static void assert_ip(const gh_ip_t *got, const char *want)
{
    char buf[GH_IP_STR];
    gh_ip_format(got, buf);
    assert_string_equal(buf, want);
}

static gh_proxies_t proxies(const char *list)
{
    gh_proxies_t p;
    assert_int_equal(gh_proxies_parse(list, &p), 0);
    return p;
}

static void addresses_parse_in_every_form_proxies_write(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } ok[] = {{"192.0.2.7", "192.0.2.7"},
              {"  192.0.2.7\t", "192.0.2.7"},
              {"192.0.2.7:8443", "192.0.2.7"},
              {"2001:db8::1", "2001:db8::1"},
              {"[2001:db8::1]", "2001:db8::1"},
              {"[2001:db8::1]:443", "2001:db8::1"},
              {"::ffff:198.51.100.9", "198.51.100.9"},
              {"::1", "::1"}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        gh_ip_t a = ip(ok[i].in);
        assert_ip(&a, ok[i].out);
    }
    gh_ip_t v4 = ip("10.1.2.3"), v6 = ip("fe80::1");
    assert_true(gh_ip_is_v4(&v4));
    assert_false(gh_ip_is_v4(&v6));

    static const char *const bad[] = {"",
                                      "   ",
                                      "unknown",
                                      "1.2.3",
                                      "1.2.3.4.5",
                                      "256.1.1.1",
                                      "1.2.3.4:",
                                      "1.2.3.4:x",
                                      "1.2.3.4 5",
                                      "[::1",
                                      "[::1]x",
                                      "[::1]:",
                                      "::g",
                                      "1.2.3.4/24",
                                      "[1.2.3.4]",
                                      "-1.2.3.4",
                                      "1.2.3.4:99999999",
                                      "2001:db8::1:80:1:1:1:1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gh_ip_t a;
        if (gh_ip_parse(bad[i], strlen(bad[i]), &a) != GH_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    /* Length is honoured: the rest of the buffer is not part of the address. */
    gh_ip_t a;
    assert_int_equal(gh_ip_parse("10.0.0.1, 10.0.0.2", 8, &a), 0);
    assert_ip(&a, "10.0.0.1");
}

static void cidr_lists_parse_strictly(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("");
    assert_int_equal(p.n, 0);
    p = proxies("  ");
    assert_int_equal(p.n, 0);
    p = proxies("10.0.0.0/8, 192.168.1.7 ,::1/128,2001:db8::/32");
    assert_int_equal(p.n, 4);

    static const char *const bad[] = {"10.0.0.0/33", "::1/129",     "10.0.0.0/",   "10.0.0.0/-1",
                                      "abc",         "10.0.0.1,,",  ",10.0.0.1",   "10.0.0.1,",
                                      "[::1]/128",   "10.0.0.1:80", "10.0.0.0/8x", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (gh_proxies_parse(bad[i], &p) != GH_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    char many[GH_PROXIES_MAX * 16 + 32] = "";
    for (int i = 0; i <= GH_PROXIES_MAX; i++) {
        char one[16];
        snprintf(one, sizeof one, "%s10.0.%d.1", i ? "," : "", i);
        strcat(many, one);
    }
    assert_int_equal(gh_proxies_parse(many, &p), GH_ELIMIT);
}

static void membership_follows_the_prefix(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("10.0.0.0/8,192.168.1.7,2001:db8:1::/48,172.16.5.4/30");
    gh_ip_t in[] = {ip("10.0.0.0"),           ip("10.255.255.255"), ip("192.168.1.7"),
                    ip("2001:db8:1:ffff::9"), ip("172.16.5.7"),     ip("::ffff:10.9.9.9")};
    gh_ip_t out[] = {ip("11.0.0.0"),      ip("9.255.255.255"), ip("192.168.1.8"),
                     ip("2001:db8:2::1"), ip("172.16.5.8"),    ip("::a09:909")};
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        assert_true(gh_proxies_contains(&p, &in[i]));
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++)
        assert_false(gh_proxies_contains(&p, &out[i]));

    gh_proxies_t everyone = proxies("0.0.0.0/0"), all6 = proxies("::/0"), none = proxies("");
    gh_ip_t a = ip("203.0.113.1"), b = ip("2001:db8::1");
    assert_true(gh_proxies_contains(&everyone, &a));
    assert_false(gh_proxies_contains(&everyone, &b)); /* an IPv4 /0 is not all of IPv6 */
    assert_true(gh_proxies_contains(&all6, &b));
    assert_false(gh_proxies_contains(&none, &a));
}

static gh_ip_t client(const gh_proxies_t *p, const char *peer, const char *const *xff, size_t nxff,
                      const char *real_ip)
{
    gh_ip_t pe = ip(peer), out;
    gh_proxies_client(p, &pe, xff, nxff, real_ip, &out);
    return out;
}

static void untrusted_peers_are_the_client_whatever_they_send(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("10.0.0.0/8");
    const char *xff[] = {"203.0.113.9"};
    gh_ip_t c = client(&p, "198.51.100.1", xff, 1, "203.0.113.10");
    assert_ip(&c, "198.51.100.1");
    gh_proxies_t none = proxies("");
    c = client(&none, "10.0.0.1", xff, 1, "203.0.113.10");
    assert_ip(&c, "10.0.0.1");
}

static void forwarded_for_is_read_from_the_right(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("10.0.0.0/8");
    /* One proxy: its own addition is the client. */
    const char *one[] = {"203.0.113.9"};
    gh_ip_t c = client(&p, "10.0.0.1", one, 1, NULL);
    assert_ip(&c, "203.0.113.9");
    /* The client sent its own header; the proxy appended the real address: believe the right. */
    const char *spoof[] = {"1.1.1.1, 6.6.6.6,203.0.113.9"};
    c = client(&p, "10.0.0.1", spoof, 1, NULL);
    assert_ip(&c, "203.0.113.9");
    /* Two trusted proxies in a chain: skip them. */
    const char *chain[] = {"6.6.6.6, 203.0.113.9, 10.1.1.1, 10.2.2.2"};
    c = client(&p, "10.0.0.1", chain, 1, NULL);
    assert_ip(&c, "203.0.113.9");
    /* Several header lines are one list, in order. */
    const char *lines[] = {"6.6.6.6", "203.0.113.9", "10.1.1.1"};
    c = client(&p, "10.0.0.1", lines, 3, NULL);
    assert_ip(&c, "203.0.113.9");
    /* Every hop trusted: the left-most is the client. */
    const char *inside[] = {"10.3.3.3, 10.1.1.1"};
    c = client(&p, "10.0.0.1", inside, 1, NULL);
    assert_ip(&c, "10.3.3.3");
    /* IPv6 and ports as some proxies write them. */
    const char *v6[] = {"[2001:db8::7]:5555"};
    c = client(&p, "10.0.0.1", v6, 1, NULL);
    assert_ip(&c, "2001:db8::7");
}

static void garbage_stops_the_walk_at_the_last_good_hop(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("10.0.0.0/8");
    const char *left[] = {"<script>, 203.0.113.9"};
    gh_ip_t c = client(&p, "10.0.0.1", left, 1, NULL);
    assert_ip(&c, "203.0.113.9");
    const char *right[] = {"203.0.113.9, unknown"};
    c = client(&p, "10.0.0.1", right, 1, NULL);
    assert_ip(&c, "10.0.0.1");
    const char *behind_trusted[] = {"203.0.113.9,,10.2.2.2"};
    c = client(&p, "10.0.0.1", behind_trusted, 1, NULL);
    assert_ip(&c, "10.2.2.2");
    const char *empty[] = {""};
    c = client(&p, "10.0.0.1", empty, 1, "203.0.113.5");
    assert_ip(&c, "10.0.0.1"); /* a header was sent, so X-Real-IP is not consulted */
}

static void real_ip_is_used_only_without_forwarded_for(void **state)
{
    (void)state;
    gh_proxies_t p = proxies("10.0.0.0/8,::1");
    gh_ip_t c = client(&p, "10.0.0.1", NULL, 0, "203.0.113.5");
    assert_ip(&c, "203.0.113.5");
    c = client(&p, "::1", NULL, 0, "2001:db8::5");
    assert_ip(&c, "2001:db8::5");
    c = client(&p, "10.0.0.1", NULL, 0, "not an address");
    assert_ip(&c, "10.0.0.1");
    c = client(&p, "10.0.0.1", NULL, 0, NULL);
    assert_ip(&c, "10.0.0.1");
    const char *xff[] = {"198.51.100.3"};
    c = client(&p, "10.0.0.1", xff, 1, "203.0.113.5");
    assert_ip(&c, "198.51.100.3");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(addresses_parse_in_every_form_proxies_write),
        cmocka_unit_test(cidr_lists_parse_strictly),
        cmocka_unit_test(membership_follows_the_prefix),
        cmocka_unit_test(untrusted_peers_are_the_client_whatever_they_send),
        cmocka_unit_test(forwarded_for_is_read_from_the_right),
        cmocka_unit_test(garbage_stops_the_walk_at_the_last_good_hop),
        cmocka_unit_test(real_ip_is_used_only_without_forwarded_for),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
