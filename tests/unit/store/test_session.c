/*
 * test_session.c — what every session backend shares (session.c): the names of the end reasons
 * and gh_session_client_make, the one place a client's IP and User-Agent are cleaned before any
 * store keeps them. A User-Agent is whatever a client chose to send; the assertions are about
 * what a person would see on /account and what a JSON encoder would accept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "store/session.h"

/* True when s is valid UTF-8 with no C0/C1 control character. */
static bool clean_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        size_t len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : 4;
        if (*p >= 0x80 && (*p & 0xc0) == 0x80)
            return false;
        for (size_t i = 1; i < len; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        if (len == 2 && p[0] == 0xc2 && p[1] < 0xa0) /* U+0080..U+009F */
            return false;
        p += len;
    }
    return true;
}

static gh_session_client_t make(const char *ip, const char *ua, size_t len)
{
    gh_session_client_t c;
    memset(&c, 0x7f, sizeof c);
    gh_session_client_make(&c, ip, ua, len);
    /* Cleaning is idempotent: what a store keeps cleans to itself. */
    gh_session_client_t again;
    gh_session_client_make(&again, c.ip, c.user_agent, strlen(c.user_agent));
    assert_string_equal(again.ip, c.ip);
    assert_string_equal(again.user_agent, c.user_agent);
    assert_true(clean_utf8(c.user_agent));
    assert_true(strlen(c.user_agent) <= GH_SESSION_UA_MAX);
    return c;
}

#define UA(s) make(NULL, (s), sizeof(s) - 1).user_agent

static void ordinary_user_agents_are_kept_as_they_are(void **state)
{
    (void)state;
    static const char firefox[] =
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    assert_string_equal(UA(firefox), firefox);
    assert_string_equal(UA("curl/7.88.1"), "curl/7.88.1");
    assert_string_equal(UA("Navigateur «bêta» 日本語 😀"), "Navigateur «bêta» 日本語 😀");
    assert_string_equal(UA(""), "");
    assert_string_equal(make(NULL, NULL, 5).user_agent, "");
}

static void hidden_and_invalid_characters_become_question_marks(void **state)
{
    (void)state;
    assert_string_equal(UA("a\tb\r\nc\x1b[31md\x7f"), "a?b??c?[31md?");
    assert_string_equal(UA("nul\0byte"), "nul?byte");
    /* C1 control, right-to-left override, isolates, zero-width space, line separator, BOM. */
    assert_string_equal(UA("x\xc2\x85y"), "x?y");
    assert_string_equal(UA("evil\xe2\x80\xaegnp.exe"), "evil?gnp.exe");
    assert_string_equal(UA("\xe2\x81\xa6z\xe2\x81\xa9"), "?z?");
    assert_string_equal(UA("a\xe2\x80\x8b"
                           "b\xe2\x80\xa8"
                           "c\xef\xbb\xbf"),
                        "a?b?c?");
    /* Invalid UTF-8: one '?' per byte that starts no valid character. */
    assert_string_equal(UA("\xff\xfe"), "??");
    assert_string_equal(UA("\x80x"), "?x");                /* lone continuation */
    assert_string_equal(UA("\xc0\xafx"), "??x");           /* overlong '/' */
    assert_string_equal(UA("\xed\xa0\x80x"), "???x");      /* a surrogate */
    assert_string_equal(UA("\xf4\x90\x80\x80x"), "????x"); /* past U+10FFFF */
    assert_string_equal(UA("ab\xe6\x97"), "ab??");         /* cut short */
    assert_string_equal(UA("<script>alert(1)</script>"), "<script>alert(1)</script>"); /* HTML
                                                                                  is the page's
                                                                                  job to escape */
}

static void long_user_agents_are_cut_at_a_character_boundary(void **state)
{
    (void)state;
    char ua[400];
    memset(ua, 'a', sizeof ua);
    gh_session_client_t c = make(NULL, ua, sizeof ua);
    assert_int_equal(strlen(c.user_agent), GH_SESSION_UA_MAX);
    /* 159 bytes, then a 3-byte character that would end past 160: cut before it. */
    memcpy(ua + GH_SESSION_UA_MAX - 1, "\xe6\x97\xa5", 3);
    c = make(NULL, ua, sizeof ua);
    assert_int_equal(strlen(c.user_agent), GH_SESSION_UA_MAX - 1);
    /* 158 bytes and the character fits exactly. */
    memcpy(ua + GH_SESSION_UA_MAX - 3, "\xe6\x97\xa5", 3);
    c = make(NULL, ua, GH_SESSION_UA_MAX);
    assert_int_equal(strlen(c.user_agent), GH_SESSION_UA_MAX);
    assert_memory_equal(c.user_agent + GH_SESSION_UA_MAX - 3, "\xe6\x97\xa5", 3);
    /* A megabyte of garbage costs the same 160 bytes. */
    static char junk[1 << 20];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 131 + 7);
    c = make(NULL, junk, sizeof junk);
    assert_true(strlen(c.user_agent) <= GH_SESSION_UA_MAX);
}

static void addresses_are_checked_and_written_one_way(void **state)
{
    (void)state;
    assert_string_equal(make("203.0.113.7", NULL, 0).ip, "203.0.113.7");
    assert_string_equal(make("2001:DB8:0::0:1", NULL, 0).ip, "2001:db8::1");
    assert_string_equal(make("::ffff:198.51.100.2", NULL, 0).ip, "::ffff:198.51.100.2");
    static const char *const bad[] = {
        "",          "::",         "localhost",
        "999.1.1.1", "1.2.3.4:80", "[::1]",
        "<script>",  "1.2.3.4 ",   "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:1",
        NULL,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_string_equal(make(bad[i], NULL, 0).ip, "");
    /* Not NUL-terminated within the field: read no further than the field. */
    char field[GH_SESSION_IP_MAX + 1];
    memset(field, '1', sizeof field);
    assert_string_equal(make(field, NULL, 0).ip, "");
}

static void end_reasons_have_fixed_names(void **state)
{
    (void)state;
    assert_string_equal(gh_session_end_name(GH_END_LOGOUT), "logout");
    assert_string_equal(gh_session_end_name(GH_END_EVICTED), "evicted");
    assert_string_equal(gh_session_end_name(GH_END__COUNT), "?");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ordinary_user_agents_are_kept_as_they_are),
        cmocka_unit_test(hidden_and_invalid_characters_become_question_marks),
        cmocka_unit_test(long_user_agents_are_cut_at_a_character_boundary),
        cmocka_unit_test(addresses_are_checked_and_written_one_way),
        cmocka_unit_test(end_reasons_have_fixed_names),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
