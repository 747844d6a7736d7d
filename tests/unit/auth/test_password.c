/* test_password.c — the password rules and the pool: verify, dummy, rehash, the queue bound,
 * exactly-once callbacks, and memory back to baseline. Uses libsodium's minimum cost. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth/password.h"
#include "mem/mem.h"

static const gh_password_params_t cheap = {.memory = 8192, .ops = 1, .workers = 2, .queue = 8};

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    gh_password_result_t last;
} waiter_t;

static waiter_t w;

static void on_done(void *arg, const gh_password_result_t *res)
{
    waiter_t *x = arg;
    pthread_mutex_lock(&x->lock);
    x->calls++;
    x->last = *res;
    pthread_cond_broadcast(&x->cond);
    pthread_mutex_unlock(&x->lock);
}

static void wait_calls(int n)
{
    pthread_mutex_lock(&w.lock);
    while (w.calls < n)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
}

static int reset(void **state)
{
    (void)state;
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    w.calls = 0;
    memset(&w.last, 0, sizeof w.last);
    return 0;
}

static void username_rules(void **state)
{
    (void)state;
    const char *good[] = {"a", "alice", "A.b_c-d@e", "0123456789"};
    const char *bad[] = {"", "with space", "sl/ash", "ünï", "semi;colon", "quote'"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(gh_auth_username_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(gh_auth_username_valid(bad[i], strlen(bad[i])));
    char long_name[66];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    assert_true(gh_auth_username_valid(long_name, 64));
    assert_false(gh_auth_username_valid(long_name, 65));
}

static void password_rules(void **state)
{
    (void)state;
    assert_true(gh_auth_password_valid("12345678", 8));
    assert_false(gh_auth_password_valid("1234567", 7));
    assert_true(gh_auth_password_valid("pässwörd-€-𝄞", strlen("pässwörd-€-𝄞")));
    const char *bad[] = {"abcdefg\xff", "abcdefg\xc0\xaf",       /* invalid byte, overlong */
                         "abcdefg\xed\xa0\x80",                  /* surrogate */
                         "abcdefg\xf4\x90\x80\x80",              /* above U+10FFFF */
                         "abcdefgh\xe2\x82"};                    /* truncated */
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(gh_auth_password_valid(bad[i], strlen(bad[i])));
    assert_false(gh_auth_password_valid("abcd\0efgh", 9)); /* NUL */
    static char big[1026];
    memset(big, 'a', sizeof big);
    assert_true(gh_auth_password_valid(big, 1024));
    assert_false(gh_auth_password_valid(big, 1025));
}

static void hash_verify_and_dummy(void **state)
{
    (void)state;
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    assert_int_equal(gh_password_hash_async(p, "correct horse", 13, on_done, &w), 0);
    wait_calls(1);
    assert_int_equal(w.last.result, 0);
    char hash[GH_PWHASH_STR_MAX];
    memcpy(hash, w.last.new_hash, sizeof hash);
    assert_memory_equal(hash, "$argon2id$", 10);

    assert_int_equal(gh_password_verify_async(p, hash, "correct horse", 13, on_done, &w), 0);
    wait_calls(2);
    assert_int_equal(w.last.result, 0);
    assert_string_equal(w.last.new_hash, ""); /* same cost: no rehash */

    assert_int_equal(gh_password_verify_async(p, hash, "wrong horse", 11, on_done, &w), 0);
    wait_calls(3);
    assert_int_equal(w.last.result, GH_EAUTH);

    assert_int_equal(gh_password_verify_async(p, NULL, "correct horse", 13, on_done, &w), 0);
    wait_calls(4);
    assert_int_equal(w.last.result, GH_EAUTH);
    gh_password_pool_stop(&p);
    assert_null(p);
}

static void outdated_cost_is_rehashed(void **state)
{
    (void)state;
    gh_password_params_t old = cheap;
    old.ops = 2;
    char hash[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&old, "correct horse", 13, hash), 0);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    assert_int_equal(gh_password_verify_async(p, hash, "correct horse", 13, on_done, &w), 0);
    wait_calls(1);
    assert_int_equal(w.last.result, 0);
    assert_memory_equal(w.last.new_hash, "$argon2id$", 10);
    assert_string_not_equal(w.last.new_hash, hash);
    gh_password_pool_stop(&p);
}

static void full_queue_refuses_and_every_job_calls_back_once(void **state)
{
    (void)state;
    gh_password_params_t tight = {.memory = 1 << 20, .ops = 3, .workers = 1, .queue = 2};
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&tight, &p), 0);
    int accepted = 0, refused = 0;
    for (int i = 0; i < 20; i++) {
        int rc = gh_password_hash_async(p, "password", 8, on_done, &w);
        if (rc == 0)
            accepted++;
        else if (rc == GH_EBUSY)
            refused++;
        else
            fail_msg("unexpected %d", rc);
    }
    assert_true(refused > 0);
    assert_true(accepted >= 2 && accepted <= 3 + 2);
    assert_true(gh_password_queue_depth(p) <= 3);
    gh_password_pool_stop(&p); /* queued jobs still run and call back */
    assert_int_equal(w.calls, accepted);
}

static void memory_back_to_baseline_and_alloc_failure(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_PASSWORD), o0 = gh_mem_objects(GH_MEM_PASSWORD);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    gh_mem_fail_at(1);
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &w), GH_ENOMEM);
    gh_mem_fail_at(0);
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &w), 0);
    wait_calls(1);
    gh_password_pool_stop(&p);
    assert_int_equal(w.calls, 1);
    assert_int_equal(gh_mem_bytes(GH_MEM_PASSWORD), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);
    /* start itself fails cleanly at each of its allocations */
    for (uint64_t n = 1; n <= 3; n++) {
        gh_mem_fail_at(n);
        int rc = gh_password_pool_start(&cheap, &p);
        gh_mem_fail_at(0);
        if (rc == 0)
            gh_password_pool_stop(&p);
        else
            assert_int_equal(rc, GH_ENOMEM);
        assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(username_rules),
        cmocka_unit_test(password_rules),
        cmocka_unit_test_setup(hash_verify_and_dummy, reset),
        cmocka_unit_test_setup(outdated_cost_is_rehashed, reset),
        cmocka_unit_test_setup(full_queue_refuses_and_every_job_calls_back_once, reset),
        cmocka_unit_test_setup(memory_back_to_baseline_and_alloc_failure, reset),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
