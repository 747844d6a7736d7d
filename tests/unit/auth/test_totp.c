/*
 * test_totp.c — authenticator codes against RFC 6238's test vectors (SHA-1, cut to the 6 digits
 * apps show), the ±1 step window and the step it answers (what the replay rule stores), base32
 * against RFC 4648's vectors, recovery codes' shape and normalization, and the secret key:
 * sealing, a wrong key, and the key file's rules (created only when it is the default).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth/secretkey.h"
#include "auth/totp.h"

static const uint8_t RFC_SECRET[] = "12345678901234567890"; /* RFC 6238 appendix B, SHA-1 */

static void rfc6238_vectors(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        const char *code; /* the RFC's 8 digits, last 6 */
    } v[] = {{59, "287082"},         {1111111109, "081804"}, {1111111111, "050471"},
             {1234567890, "005924"}, {2000000000, "279037"}, {20000000000LL, "353130"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[GH_TOTP_DIGITS + 1];
        assert_int_equal(gh_totp_code(RFC_SECRET, 20, (uint64_t)v[i].t / 30, out), 0);
        assert_string_equal(out, v[i].code);
        uint64_t step = 0;
        assert_int_equal(gh_totp_check(RFC_SECRET, 20, v[i].t, v[i].code, 6, &step), 0);
        assert_int_equal(step, (uint64_t)v[i].t / 30);
    }
}

static void the_window_is_one_step_either_side(void **state)
{
    (void)state;
    const int64_t t = 1234567890; /* step 41152263 */
    char prev[7], next[7], far[7];
    assert_int_equal(gh_totp_code(RFC_SECRET, 20, t / 30 - 1, prev), 0);
    assert_int_equal(gh_totp_code(RFC_SECRET, 20, t / 30 + 1, next), 0);
    assert_int_equal(gh_totp_code(RFC_SECRET, 20, t / 30 + 2, far), 0);
    uint64_t step;
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, prev, 6, &step), 0);
    assert_int_equal(step, t / 30 - 1);
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, next, 6, &step), 0);
    assert_int_equal(step, t / 30 + 1);
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, far, 6, &step), GH_EAUTH);
    /* not a code's shape */
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, "00592", 5, &step), GH_EINVAL);
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, "0059244", 7, &step), GH_EINVAL);
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, "00592a", 6, &step), GH_EINVAL);
    assert_int_equal(gh_totp_check(RFC_SECRET, 20, t, NULL, 6, &step), GH_EINVAL);
}

static void base32_rfc4648(void **state)
{
    (void)state;
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const out[] = {"",        "MY",       "MZXQ",      "MZXW6",
                                      "MZXW6YQ", "MZXW6YTB", "MZXW6YTBOI"};
    for (size_t i = 0; i < 7; i++) {
        char b[32];
        gh_totp_base32((const uint8_t *)in[i], strlen(in[i]), b, sizeof b);
        assert_string_equal(b, out[i]);
    }
    uint8_t s[GH_TOTP_SECRET_LEN];
    gh_totp_secret_new(s);
    char b[GH_TOTP_BASE32_LEN + 1];
    gh_totp_base32(s, sizeof s, b, sizeof b);
    assert_int_equal(strlen(b), GH_TOTP_BASE32_LEN);
}

static void recovery_codes_have_one_shape(void **state)
{
    (void)state;
    char a[GH_RECOVERY_CODE_LEN + 1], b[GH_RECOVERY_CODE_LEN + 1], n[11], m[11];
    gh_recovery_code_new(a);
    gh_recovery_code_new(b);
    assert_int_equal(strlen(a), 11);
    assert_int_equal(a[5], '-');
    assert_string_not_equal(a, b);
    assert_int_equal(gh_recovery_code_normalize(a, strlen(a), n), 0);
    /* typed in capitals, with spaces instead of the dash: the same code */
    char typed[32];
    snprintf(typed, sizeof typed, " %.5s %s ", a, a + 6);
    for (char *p = typed; *p; p++)
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
    assert_int_equal(gh_recovery_code_normalize(typed, strlen(typed), m), 0);
    assert_string_equal(n, m);
    assert_int_equal(gh_recovery_code_normalize("abcde-fghi", 10, m), GH_EINVAL);
    assert_int_equal(gh_recovery_code_normalize("abcde-fghijk", 12, m), GH_EINVAL);
    assert_int_equal(gh_recovery_code_normalize("abcde-fgh1j", 11, m), GH_EINVAL); /* 1 */
}

static void sealing_needs_the_same_key(void **state)
{
    (void)state;
    uint8_t k1[32], k2[32], msg[20] = "a totp secret bytes", box[20 + GH_SEAL_OVERHEAD],
                            box2[sizeof box], back[20];
    memset(k1, 1, sizeof k1);
    memset(k2, 2, sizeof k2);
    gh_secret_seal(k1, msg, sizeof msg, box);
    gh_secret_seal(k1, msg, sizeof msg, box2);
    assert_memory_not_equal(box, box2, sizeof box); /* a fresh nonce each time */
    assert_int_equal(gh_secret_open(k1, box, sizeof box, back), 0);
    assert_memory_equal(back, msg, sizeof msg);
    assert_int_equal(gh_secret_open(k2, box, sizeof box, back), GH_EAUTH);
    box[30] ^= 1;
    assert_int_equal(gh_secret_open(k1, box, sizeof box, back), GH_EAUTH);
    assert_int_equal(gh_secret_open(k1, box, 10, back), GH_EAUTH);
    uint8_t h1[32], h2[32];
    gh_secret_code_hash(k1, 7, "abcdefghij", 10, h1);
    gh_secret_code_hash(k1, 8, "abcdefghij", 10, h2);
    assert_memory_not_equal(h1, h2, 32); /* another user's code is another hash */
}

static void the_key_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/gh-key-XXXXXX", path[128], why[512];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/secret.key", dir);
    uint8_t k[32], k2[32];
    /* named and missing: an error, nothing made */
    assert_int_equal(gh_secret_key_load(path, false, k, why, sizeof why), GH_EINVAL);
    assert_non_null(strstr(why, "cannot read"));
    assert_int_not_equal(access(path, F_OK), 0);
    /* the default: made, 0600, and read back the same */
    assert_int_equal(gh_secret_key_load(path, true, k, why, sizeof why), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(gh_secret_key_load(path, false, k2, why, sizeof why), 0);
    assert_memory_equal(k, k2, 32);
    /* what openssl rand -base64 32 writes */
    FILE *fp = fopen(path, "w");
    fputs("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", fp);
    fclose(fp);
    assert_int_equal(gh_secret_key_load(path, false, k, why, sizeof why), 0);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k[i], i);
    /* malformed: too short, not base64, empty */
    static const char *const bad[] = {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n", "not a key!\n",
                                      ""};
    for (size_t i = 0; i < 3; i++) {
        fp = fopen(path, "w");
        fputs(bad[i], fp);
        fclose(fp);
        assert_int_equal(gh_secret_key_load(path, true, k, why, sizeof why), GH_EINVAL);
    }
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rfc6238_vectors),
        cmocka_unit_test(the_window_is_one_step_either_side),
        cmocka_unit_test(base32_rfc4648),
        cmocka_unit_test(recovery_codes_have_one_shape),
        cmocka_unit_test(sealing_needs_the_same_key),
        cmocka_unit_test(the_key_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
