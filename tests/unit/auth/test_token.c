/* test_token.c — token format, uniqueness, canonical parsing and base64url vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "auth/token.h"
#include "mem/mem.h"

static int is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void new_token_has_the_documented_form(void **state)
{
    (void)state;
    char tok[GH_TOKEN_LEN + 1];
    uint8_t hash[GH_TOKEN_HASH_LEN], again[GH_TOKEN_HASH_LEN];
    for (int n = 0; n < 100; n++) {
        memset(tok, 'x', sizeof tok);
        gh_token_new(tok, hash);
        assert_int_equal(strlen(tok), 46);
        assert_memory_equal(tok, "gh_", 3);
        for (int i = 3; i < GH_TOKEN_LEN; i++)
            assert_true(is_b64url(tok[i]));
        /* The hash handed out is the hash of the string, as gh_token_hash computes it. */
        assert_int_equal(gh_token_hash(tok, strlen(tok), again), 0);
        assert_memory_equal(hash, again, sizeof hash);
        uint8_t direct[GH_TOKEN_HASH_LEN];
        crypto_generichash(direct, sizeof direct, (const unsigned char *)tok, GH_TOKEN_LEN, NULL,
                           0);
        assert_memory_equal(hash, direct, sizeof hash);
    }
}

static int cmp_tok(const void *a, const void *b)
{
    return memcmp(a, b, GH_TOKEN_LEN + 1);
}

static void new_tokens_are_unique(void **state)
{
    (void)state;
    enum { N = 20000 };
    char(*toks)[GH_TOKEN_LEN + 1] = gh_mem_calloc(GH_MEM_OTHER, N, sizeof *toks);
    assert_non_null(toks);
    uint8_t hash[GH_TOKEN_HASH_LEN];
    for (int i = 0; i < N; i++)
        gh_token_new(toks[i], hash);
    qsort(toks, N, sizeof *toks, cmp_tok);
    for (int i = 1; i < N; i++)
        assert_true(memcmp(toks[i - 1], toks[i], sizeof toks[i]) != 0);
    gh_mem_free(GH_MEM_OTHER, toks);
}

static void hash_is_deterministic_and_distinguishes(void **state)
{
    (void)state;
    const char *t = "gh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const char *u = "gh_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE";
    uint8_t a[GH_TOKEN_HASH_LEN], b[GH_TOKEN_HASH_LEN], c[GH_TOKEN_HASH_LEN];
    assert_int_equal(gh_token_hash(t, strlen(t), a), 0);
    assert_int_equal(gh_token_hash(t, strlen(t), b), 0);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(gh_token_hash(u, strlen(u), c), 0);
    assert_memory_not_equal(a, c, sizeof a);
}

static void hash_rejects_malformed_tokens(void **state)
{
    (void)state;
    char good[GH_TOKEN_LEN + 1];
    uint8_t hash[GH_TOKEN_HASH_LEN];
    gh_token_new(good, hash);
    char bad[64];

    assert_int_equal(gh_token_hash(NULL, 0, hash), GH_EINVAL);
    assert_int_equal(gh_token_hash("", 0, hash), GH_EINVAL);
    /* wrong prefix */
    strcpy(bad, good);
    bad[0] = 'G';
    assert_int_equal(gh_token_hash(bad, strlen(bad), hash), GH_EINVAL);
    strcpy(bad, good);
    bad[2] = '-';
    assert_int_equal(gh_token_hash(bad, strlen(bad), hash), GH_EINVAL);
    /* wrong length: one short, one long, and a length that lies about the string */
    assert_int_equal(gh_token_hash(good, GH_TOKEN_LEN - 1, hash), GH_EINVAL);
    snprintf(bad, sizeof bad, "%sA", good);
    assert_int_equal(gh_token_hash(bad, strlen(bad), hash), GH_EINVAL);
    /* characters outside base64url: standard base64's + and /, padding, space, NUL, 8-bit */
    const char outside[] = {'+', '/', '=', ' ', '\0', '.', (char)0xc3};
    for (size_t k = 0; k < sizeof outside; k++) {
        for (int pos = 3; pos < GH_TOKEN_LEN; pos += 21) {
            memcpy(bad, good, sizeof good);
            bad[pos] = outside[k];
            assert_int_equal(gh_token_hash(bad, GH_TOKEN_LEN, hash), GH_EINVAL);
        }
    }
    /* the last character may only carry 4 data bits: 'A' (0) and 'E' (4) are fine, 'B' is not */
    memcpy(bad, good, sizeof good);
    bad[GH_TOKEN_LEN - 1] = 'E';
    assert_int_equal(gh_token_hash(bad, GH_TOKEN_LEN, hash), 0);
    const char stray[] = {'B', 'C', 'D', 'F', '_', '-', '1'};
    for (size_t k = 0; k < sizeof stray; k++) {
        bad[GH_TOKEN_LEN - 1] = stray[k];
        assert_int_equal(gh_token_hash(bad, GH_TOKEN_LEN, hash), GH_EINVAL);
    }
}

static void base64url_vectors(void **state)
{
    (void)state;
    /* RFC 4648 section 10 vectors, without padding, plus the two characters base64url changes. */
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        {"\xfb\xff", "-_8"},
        {"\xff\xff\xff", "____"},
        {"\xfb\xef\xbe", "----"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        char out[32];
        size_t n = strlen(v[i].in);
        assert_int_equal(gh_base64url_encode((const uint8_t *)v[i].in, n, out), strlen(v[i].out));
        assert_string_equal(out, v[i].out);
        assert_int_equal(strlen(out), GH_BASE64URL_LEN(n));
        uint8_t back[32];
        size_t len = 99;
        assert_int_equal(gh_base64url_decode(out, strlen(out), back, sizeof back, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(back, v[i].in, n);
    }
    /* and libsodium agrees on random input of every length up to 40 */
    for (size_t n = 0; n <= 40; n++) {
        uint8_t in[40];
        char ours[64], theirs[64];
        randombytes_buf(in, n);
        gh_base64url_encode(in, n, ours);
        sodium_bin2base64(theirs, sizeof theirs, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        assert_string_equal(ours, theirs);
    }
}

static void base64url_decode_is_strict(void **state)
{
    (void)state;
    uint8_t out[8];
    size_t len;
    assert_int_equal(gh_base64url_decode("Zg==", 4, out, sizeof out, &len), GH_EINVAL);
    assert_int_equal(gh_base64url_decode("Zm9v+", 5, out, sizeof out, &len), GH_EINVAL);
    assert_int_equal(gh_base64url_decode("Z", 1, out, sizeof out, &len), GH_EINVAL);
    assert_int_equal(gh_base64url_decode("Zh", 2, out, sizeof out, &len), GH_EINVAL); /* stray */
    assert_int_equal(gh_base64url_decode("Zm9vYmFy", 8, out, 5, &len), GH_ETOOBIG);
    assert_int_equal(gh_base64url_decode("Zm9vYmFy", 8, out, 6, &len), 0);
    assert_int_equal(len, 6);
    assert_memory_equal(out, "foobar", 6);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_token_has_the_documented_form),
        cmocka_unit_test(new_tokens_are_unique),
        cmocka_unit_test(hash_is_deterministic_and_distinguishes),
        cmocka_unit_test(hash_rejects_malformed_tokens),
        cmocka_unit_test(base64url_vectors),
        cmocka_unit_test(base64url_decode_is_strict),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
