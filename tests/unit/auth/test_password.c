/* test_password.c — the username/password rules and the password pool: hash and verify, the
 * dummy for unknown users, malformed hashes, rehash on a cost change, the queue bound with
 * exactly-once callbacks, stop() draining queued jobs, worker priority, the duration histogram,
 * argon2 running out of memory, and memory back to baseline. Uses libsodium's minimum cost
 * (8 KiB, 1 pass) so it is fast; jobs that must stay "running" are held by a gate in their
 * callback, so no assertion depends on timing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "auth/password.h"
#include "common/log.h"
#include "mem/mem.h"

static const gh_password_params_t cheap = {.memory = 8192, .ops = 1, .workers = 2, .queue = 8};

/* What one job's callback saw. */
typedef struct {
    int calls;
    int result;
    char new_hash[GH_PWHASH_STR_MAX];
    bool on_submitting_thread;
    int nice;
    bool gate; /* hold the worker inside this callback until open_gate() */
} rec_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int total_calls;
static bool gate_entered, gate_open;
static pthread_t test_thread;

static void on_done(void *arg, const gh_password_result_t *res)
{
    rec_t *r = arg;
    pthread_mutex_lock(&mu);
    r->calls++;
    r->result = res->result;
    memcpy(r->new_hash, res->new_hash, sizeof r->new_hash);
    r->on_submitting_thread = pthread_equal(pthread_self(), test_thread);
    r->nice = getpriority(PRIO_PROCESS, (id_t)gettid());
    total_calls++;
    pthread_cond_broadcast(&cv);
    if (r->gate) {
        gate_entered = true;
        while (!gate_open)
            pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
}

static void wait_calls(int n)
{
    pthread_mutex_lock(&mu);
    while (total_calls < n)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void wait_gate_entered(void)
{
    pthread_mutex_lock(&mu);
    while (!gate_entered)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int reset(void **state)
{
    (void)state;
    total_calls = 0;
    gate_entered = gate_open = false;
    test_thread = pthread_self();
    return 0;
}

/* Runs one verify on the pool and returns what its callback saw. */
static rec_t verify_once(gh_password_pool_t *p, const char *hash, const char *pw)
{
    rec_t r = {0};
    int before = total_calls;
    assert_int_equal(gh_password_verify_async(p, hash, pw, strlen(pw), on_done, &r), 0);
    wait_calls(before + 1);
    pthread_mutex_lock(&mu);
    rec_t copy = r;
    pthread_mutex_unlock(&mu);
    assert_int_equal(copy.calls, 1);
    return copy;
}

static void username_rules(void **state)
{
    (void)state;
    const char *good[] = {"a", "alice", "Alice", "A.b_c-d@e", "0123456789", "x@example.org",
                          "-", "..",    "user_1"};
    const char *bad[] = {"",         "with space", "sl/ash",  "\xc3\xbcni", "semi;colon",
                         "quote'",   "dq\"",       "tab\t",   "new\nline",  "per%cent",
                         "back\\sl", "plus+",      "colon:x", "<b>"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(gh_auth_username_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (gh_auth_username_valid(bad[i], strlen(bad[i])))
            fail_msg("accepted bad username #%zu", i);
    }
    assert_false(gh_auth_username_valid("ab\0c", 4)); /* NUL inside */
    char name[66];
    memset(name, 'x', sizeof name);
    assert_true(gh_auth_username_valid(name, 64));
    assert_false(gh_auth_username_valid(name, 65));
}

typedef struct {
    const char *bytes;
    size_t len; /* 0: strlen */
    bool valid;
    const char *why;
} pw_case_t;

static void password_rules(void **state)
{
    (void)state;
    static char big[1025];
    memset(big, 'a', sizeof big);
    const pw_case_t cases[] = {
        {"12345678", 0, true, "8 ASCII bytes"},
        {"1234567", 0, false, "7 bytes"},
        {"p\xc3\xa4sswor", 0, true, "8 bytes with a 2-byte sequence"},
        {"\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 0, true, "3-byte sequences"},
        {"clef \xf0\x9d\x84\x9e", 0, true, "a 4-byte sequence"},
        {"abcdefgh\xdf\xbf", 0, true, "U+07FF"},
        {"abcdefgh\xe0\xa0\x80", 0, true, "U+0800"},
        {"abcdefgh\xed\x9f\xbf", 0, true, "U+D7FF"},
        {"abcdefgh\xee\x80\x80", 0, true, "U+E000"},
        {"abcdefgh\xef\xbf\xbf", 0, true, "U+FFFF"},
        {"abcdefgh\xf0\x90\x80\x80", 0, true, "U+10000"},
        {"abcdefgh\xf4\x8f\xbf\xbf", 0, true, "U+10FFFF"},
        {big, 1024, true, "1024 bytes"},
        {big, 1025, false, "1025 bytes"},
        {"abcd\0efgh", 9, false, "NUL inside"},
        {"abcdefgh\x80", 0, false, "lone continuation byte"},
        {"abcdefgh\xff", 0, false, "0xFF"},
        {"abcdefgh\xfe", 0, false, "0xFE"},
        {"abcdefgh\xc0\xaf", 0, false, "overlong 2-byte (C0)"},
        {"abcdefgh\xc1\xbf", 0, false, "overlong 2-byte (C1)"},
        {"abcdefgh\xe0\x80\xaf", 0, false, "overlong 3-byte"},
        {"abcdefgh\xe0\x9f\xbf", 0, false, "overlong 3-byte (U+07FF)"},
        {"abcdefgh\xf0\x80\x80\xaf", 0, false, "overlong 4-byte"},
        {"abcdefgh\xf0\x8f\xbf\xbf", 0, false, "overlong 4-byte (U+FFFF)"},
        {"abcdefgh\xed\xa0\x80", 0, false, "surrogate U+D800"},
        {"abcdefgh\xed\xbf\xbf", 0, false, "surrogate U+DFFF"},
        {"abcdefgh\xf4\x90\x80\x80", 0, false, "U+110000"},
        {"abcdefgh\xf5\x80\x80\x80", 0, false, "lead byte F5"},
        {"abcdefgh\xc3", 0, false, "truncated 2-byte at the end"},
        {"abcdefgh\xe2\x82", 0, false, "truncated 3-byte at the end"},
        {"abcdefgh\xf0\x9f\x98", 0, false, "truncated 4-byte at the end"},
        {"abcd\xe2\x82zefgh", 0, false, "truncated 3-byte in the middle"},
        {"abcd\xc3\xc3\xa4"
         "efgh",
         0, false, "lead byte where a continuation belongs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const pw_case_t *c = &cases[i];
        size_t len = c->len ? c->len : strlen(c->bytes);
        if (gh_auth_password_valid(c->bytes, len) != c->valid)
            fail_msg("%s: expected %s", c->why, c->valid ? "valid" : "invalid");
    }
}

static void hash_then_verify(void **state)
{
    (void)state;
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t h = {0};
    assert_int_equal(gh_password_hash_async(p, "correct horse", 13, on_done, &h), 0);
    wait_calls(1);
    assert_int_equal(h.calls, 1);
    assert_int_equal(h.result, 0);
    assert_false(h.on_submitting_thread);
    assert_memory_equal(h.new_hash, "$argon2id$", 10);
    assert_non_null(strstr(h.new_hash, "m=8,t=1,p=1"));

    rec_t ok = verify_once(p, h.new_hash, "correct horse");
    assert_int_equal(ok.result, 0);
    assert_false(ok.on_submitting_thread);
    assert_string_equal(ok.new_hash, ""); /* same cost: no rehash */

    rec_t wrong = verify_once(p, h.new_hash, "correct horsE");
    assert_int_equal(wrong.result, GH_EAUTH);
    assert_string_equal(wrong.new_hash, "");
    assert_int_equal(verify_once(p, h.new_hash, "").result, GH_EAUTH);

    /* two hashes of one password differ (random salt) and both verify */
    char again[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&cheap, "correct horse", 13, again), 0);
    assert_string_not_equal(again, h.new_hash);
    assert_int_equal(verify_once(p, again, "correct horse").result, 0);
    gh_password_pool_stop(&p);
    assert_null(p);
    gh_password_pool_stop(&p); /* stopping NULL is harmless */
}

static void unknown_user_and_malformed_hash_fail(void **state)
{
    (void)state;
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t r = verify_once(p, NULL, "any password at all");
    assert_int_equal(r.result, GH_EAUTH);
    assert_string_equal(r.new_hash, "");

    char good[GH_PWHASH_STR_MAX], cut[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&cheap, "password1", 9, good), 0);
    snprintf(cut, sizeof cut, "%.*s", (int)strlen(good) - 45, good);
    const char *malformed[] = {"", "not-a-hash", "$argon2id$", cut, "$2b$12$bcrypthashvalue"};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        r = verify_once(p, malformed[i], "password1");
        if (r.result != GH_EINVAL)
            fail_msg("malformed hash #%zu gave %s", i, gh_errname(r.result));
        assert_string_equal(r.new_hash, "");
    }
    char too_long[GH_PWHASH_STR_MAX + 8];
    memset(too_long, 'h', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    rec_t never = {0};
    assert_int_equal(gh_password_verify_async(p, too_long, "password1", 9, on_done, &never),
                     GH_EINVAL);
    gh_password_pool_stop(&p);
    assert_int_equal(never.calls, 0);
}

static void other_cost_is_rehashed_same_cost_is_not(void **state)
{
    (void)state;
    gh_password_params_t old = cheap;
    old.ops = 2;
    old.memory = 16384;
    char old_hash[GH_PWHASH_STR_MAX], same_hash[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&old, "correct horse", 13, old_hash), 0);
    assert_int_equal(gh_password_hash_sync(&cheap, "correct horse", 13, same_hash), 0);
    char argon2i_hash[crypto_pwhash_STRBYTES];
    assert_int_equal(crypto_pwhash_str_alg(argon2i_hash, "correct horse", 13, 3, 8192,
                                           crypto_pwhash_ALG_ARGON2I13),
                     0);

    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    const char *stale[] = {old_hash, argon2i_hash};
    for (size_t i = 0; i < 2; i++) {
        rec_t r = verify_once(p, stale[i], "correct horse");
        assert_int_equal(r.result, 0);
        assert_memory_equal(r.new_hash, "$argon2id$", 10);
        assert_non_null(strstr(r.new_hash, "m=8,t=1,p=1")); /* the configured cost */
        assert_int_equal(crypto_pwhash_str_verify(r.new_hash, "correct horse", 13), 0);
        /* a wrong password against the stale hash gets no new hash */
        rec_t w = verify_once(p, stale[i], "wrong horse");
        assert_int_equal(w.result, GH_EAUTH);
        assert_string_equal(w.new_hash, "");
    }
    rec_t r = verify_once(p, same_hash, "correct horse");
    assert_int_equal(r.result, 0);
    assert_string_equal(r.new_hash, "");
    gh_password_pool_stop(&p);
}

/* Hashes libsodium never writes (p > 1, an 8-byte salt) but can check, as another argon2 tool
 * would have made them: the argon2 reference implementation's README example. */
static void foreign_argon2_hashes_verify_and_are_rehashed(void **state)
{
    (void)state;
    const char *ref = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t r = verify_once(p, ref, "password");
    assert_int_equal(r.result, 0);
    assert_memory_equal(r.new_hash, "$argon2id$", 10);
    assert_int_equal(verify_once(p, ref, "passwore").result, GH_EAUTH);
    gh_password_pool_stop(&p);
}

/* Runs one verify and returns the argon2 work it did (gh_password_verify_work's growth). */
static uint64_t work_of(gh_password_pool_t *p, const char *hash, const char *pw, int want)
{
    uint64_t before = gh_password_verify_work(p);
    rec_t r = verify_once(p, hash, pw);
    if (r.result != want)
        fail_msg("verify of %s gave %s, want %s", hash ? hash : "(unknown user)",
                 gh_errname(r.result), gh_errname(want));
    return gh_password_verify_work(p) - before;
}

/*
 * After the cost is raised, a user whose stored hash still has the old cost must not fail
 * faster than an unknown user (issue: 0.2 ms against 8 ms, 8KiB/1 -> 16MiB/2). Every failed
 * verify does the configured work: counted in argon2 blocks, so nothing here depends on timing.
 * Configured 64KiB x 2 = 128 blocks; old 8KiB x 1 = 8 blocks; a hash above the configured cost
 * (256KiB x 3 = 768 blocks) costs its own work.
 */
static void failed_verify_costs_the_configured_work(void **state)
{
    (void)state;
    const gh_password_params_t now = {.memory = 64 * 1024, .ops = 2, .workers = 1, .queue = 8};
    const gh_password_params_t low = {.memory = 8192, .ops = 1, .workers = 1, .queue = 8};
    const gh_password_params_t high = {.memory = 256 * 1024, .ops = 3, .workers = 1, .queue = 8};
    char cur[GH_PWHASH_STR_MAX], old[GH_PWHASH_STR_MAX], above[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&now, "correct horse", 13, cur), 0);
    assert_int_equal(gh_password_hash_sync(&low, "correct horse", 13, old), 0);
    assert_int_equal(gh_password_hash_sync(&high, "correct horse", 13, above), 0);
    char old_i[crypto_pwhash_STRBYTES]; /* another algorithm at another cost: 8KiB x 3 */
    assert_int_equal(
        crypto_pwhash_str_alg(old_i, "correct horse", 13, 3, 8192, crypto_pwhash_ALG_ARGON2I13), 0);

    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&now, &p), 0);
    assert_int_equal(gh_password_verify_work(p), 0); /* the dummy is made, not verified */
    /* Every failure: exactly the configured work. */
    assert_int_equal(work_of(p, NULL, "wrong horse", GH_EAUTH), 128);
    assert_int_equal(work_of(p, cur, "wrong horse", GH_EAUTH), 128);
    assert_int_equal(work_of(p, old, "wrong horse", GH_EAUTH), 128);
    assert_int_equal(work_of(p, old_i, "wrong horse", GH_EAUTH), 128);
    assert_int_equal(work_of(p, "not-a-hash", "wrong horse", GH_EINVAL), 128);
    /* Above the configured cost: its own work, never less than the configured. */
    assert_int_equal(work_of(p, above, "wrong horse", GH_EAUTH), 768);
    /* Success with an old hash: its own work, then a rehash at the configured cost, as before. */
    uint64_t before = gh_password_verify_work(p);
    rec_t r = verify_once(p, old, "correct horse");
    assert_int_equal(r.result, 0);
    assert_non_null(strstr(r.new_hash, "m=64,t=2,p=1"));
    assert_int_equal(gh_password_verify_work(p) - before, 8 + 128);
    assert_int_equal(work_of(p, cur, "correct horse", 0), 128);
    gh_password_pool_stop(&p);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Median wall time of n failed verifies of `hash`, in ns. */
static int64_t median_fail_ns(gh_password_pool_t *p, const char *hash, int n)
{
    int64_t t[9] = {0};
    assert_true(n <= 9);
    for (int i = 0; i < n; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        rec_t r = verify_once(p, hash, "wrong horse");
        clock_gettime(CLOCK_MONOTONIC, &b);
        assert_int_equal(r.result, GH_EAUTH);
        t[i] = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_i64);
    return t[n / 2];
}

/* The same in wall time, within one run and with a wide margin: before the top-up the old-hash
 * user failed about 500 times faster (8KiB x 1 against 4MiB x 2). Medians of interleaved runs,
 * so a busy machine slows both sides alike. */
static void failed_verify_takes_as_long_for_an_old_hash_as_for_no_user(void **state)
{
    (void)state;
    const gh_password_params_t now = {.memory = 4 << 20, .ops = 2, .workers = 1, .queue = 8};
    char old[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&cheap, "correct horse", 13, old), 0);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&now, &p), 0);
    int64_t unknown = 0, stale = 0;
    for (int round = 0; round < 3; round++) {
        unknown += median_fail_ns(p, NULL, 3);
        stale += median_fail_ns(p, old, 3);
    }
    double ratio = (double)stale / (double)unknown;
    if (ratio < 0.5 || ratio > 2.0)
        fail_msg("failed verify: old-cost user %.2f ms, unknown user %.2f ms (ratio %.2f)",
                 (double)stale / 3e6, (double)unknown / 3e6, ratio);
    gh_password_pool_stop(&p);
}

#define FLOOD 20

static void full_queue_refuses_and_every_job_calls_back_once(void **state)
{
    (void)state;
    const gh_password_params_t tight = {.memory = 8192, .ops = 1, .workers = 1, .queue = 2};
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&tight, &p), 0);
    rec_t held = {.gate = true};
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &held), 0);
    wait_gate_entered(); /* the only worker is busy until open_gate() */
    assert_int_equal(gh_password_queue_depth(p), 1);

    rec_t recs[FLOOD] = {0};
    int rcs[FLOOD], accepted = 0, refused = 0;
    for (int i = 0; i < FLOOD; i++) {
        rcs[i] = gh_password_hash_async(p, "password", 8, on_done, &recs[i]);
        if (rcs[i] == 0)
            accepted++;
        else if (rcs[i] == GH_EBUSY)
            refused++;
        else
            fail_msg("unexpected %s", gh_errname(rcs[i]));
    }
    assert_int_equal(accepted, 2); /* exactly the queue bound */
    assert_int_equal(refused, FLOOD - 2);
    assert_int_equal(gh_password_queue_depth(p), 3); /* 2 waiting + 1 running */

    open_gate();
    wait_calls(3);
    gh_password_pool_stop(&p);
    assert_int_equal(total_calls, 3);
    assert_int_equal(held.calls, 1);
    for (int i = 0; i < FLOOD; i++) {
        assert_int_equal(recs[i].calls, rcs[i] == 0 ? 1 : 0);
        if (rcs[i] == 0)
            assert_int_equal(recs[i].result, 0);
    }
}

typedef struct {
    gh_password_pool_t **pool;
} stopper_t;

static void *stopper_main(void *arg)
{
    stopper_t *s = arg;
    gh_password_pool_stop(s->pool);
    return NULL;
}

/* Reads log lines from fd until one contains needle; copies it to line. Bounded by a generous
 * deadline only so that a broken pool fails the test instead of hanging it. */
static bool read_log_until(int fd, const char *needle, char *line, size_t cap)
{
    size_t len = 0;
    line[0] = '\0';
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 60000) <= 0)
            return false;
        if (len + 1 >= cap)
            len = 0; /* drop what did not match */
        ssize_t n = read(fd, line + len, cap - 1 - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
        line[len] = '\0';
        if (strstr(line, needle))
            return true;
    }
}

static void stop_runs_queued_jobs_and_frees_everything(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_PASSWORD), o0 = gh_mem_objects(GH_MEM_PASSWORD);
    const gh_password_params_t one = {.memory = 8192, .ops = 1, .workers = 1, .queue = 4};
    char hash[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&one, "password1", 9, hash), 0);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&one, &p), 0);
    rec_t held = {.gate = true}, right = {0}, wrong = {0}, hashed = {0};
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &held), 0);
    wait_gate_entered();
    assert_int_equal(gh_password_verify_async(p, hash, "password1", 9, on_done, &right), 0);
    assert_int_equal(gh_password_verify_async(p, hash, "password2", 9, on_done, &wrong), 0);
    assert_int_equal(gh_password_hash_async(p, "password3", 9, on_done, &hashed), 0);
    assert_true(gh_mem_objects(GH_MEM_PASSWORD) > o0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    gh_log_set_fd(fds[1]);
    pthread_t stopper;
    gh_password_pool_t *alias = p; /* the pool stays valid until its worker is released */
    stopper_t st = {.pool = &p};
    assert_int_equal(pthread_create(&stopper, NULL, stopper_main, &st), 0);
    char line[4096];
    bool seen = read_log_until(fds[0], "password pool stopping", line, sizeof line);
    if (!seen) {
        open_gate();
        pthread_join(stopper, NULL);
        gh_log_set_fd(2);
        fail_msg("stop() did not announce itself");
    }
    assert_non_null(strstr(line, "\"queued\":3"));
    rec_t late = {0};
    /* a slot is free, yet a stopping pool takes nothing new */
    assert_int_equal(gh_password_hash_async(alias, "password", 8, on_done, &late), GH_EBUSY);

    open_gate();
    pthread_join(stopper, NULL);
    gh_log_set_fd(2); /* only now: the stopper thread may log until it is joined */
    close(fds[0]);
    close(fds[1]);
    assert_null(p);
    assert_int_equal(total_calls, 4);
    assert_int_equal(held.calls, 1);
    assert_int_equal(right.calls, 1);
    assert_int_equal(right.result, 0);
    assert_int_equal(wrong.calls, 1);
    assert_int_equal(wrong.result, GH_EAUTH);
    assert_int_equal(hashed.calls, 1);
    assert_int_equal(hashed.result, 0);
    assert_int_equal(crypto_pwhash_str_verify(hashed.new_hash, "password3", 9), 0);
    assert_int_equal(late.calls, 0);
    assert_int_equal(gh_mem_bytes(GH_MEM_PASSWORD), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);
}

static void allocation_failure_leaks_nothing(void **state)
{
    (void)state;
    size_t b0 = gh_mem_bytes(GH_MEM_PASSWORD), o0 = gh_mem_objects(GH_MEM_PASSWORD);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t failed = {0}, failed2 = {0}, ok = {0};
    gh_mem_fail_at(1);
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &failed), GH_ENOMEM);
    assert_true(gh_mem_fail_fired());
    gh_mem_fail_at(1);
    assert_int_equal(gh_password_verify_async(p, NULL, "password", 8, on_done, &failed2),
                     GH_ENOMEM);
    gh_mem_fail_at(0);
    assert_int_equal(gh_password_hash_async(p, "password", 8, on_done, &ok), 0);
    wait_calls(1);
    gh_password_pool_stop(&p);
    assert_int_equal(failed.calls, 0);
    assert_int_equal(failed2.calls, 0);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(gh_mem_bytes(GH_MEM_PASSWORD), b0);
    assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);

    /* start fails cleanly at each of its allocations */
    for (uint64_t n = 1;; n++) {
        gh_mem_fail_at(n);
        int rc = gh_password_pool_start(&cheap, &p);
        bool fired = gh_mem_fail_fired();
        gh_mem_fail_at(0);
        if (!fired) {
            assert_int_equal(rc, 0);
            gh_password_pool_stop(&p);
            break;
        }
        assert_int_equal(rc, GH_ENOMEM);
        assert_null(p);
        assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);
    }
    assert_int_equal(gh_mem_bytes(GH_MEM_PASSWORD), b0);
}

static void invalid_parameters_are_refused(void **state)
{
    (void)state;
    const gh_password_params_t bad[] = {
        {.memory = 8192, .ops = 1, .workers = 0, .queue = 8},
        {.memory = 8192, .ops = 1, .workers = 1, .queue = 0},
        {.memory = 4096, .ops = 1, .workers = 1, .queue = 8},
        {.memory = 8192, .ops = 0, .workers = 1, .queue = 8},
    };
    size_t o0 = gh_mem_objects(GH_MEM_PASSWORD);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gh_password_pool_t *p = NULL;
        assert_int_equal(gh_password_pool_start(&bad[i], &p), GH_EINVAL);
        assert_null(p);
        char out[GH_PWHASH_STR_MAX];
        if (bad[i].memory < 8192 || bad[i].ops < 1)
            assert_int_equal(gh_password_hash_sync(&bad[i], "password", 8, out), GH_EINVAL);
    }
    assert_int_equal(gh_mem_objects(GH_MEM_PASSWORD), o0);

    static char big[GH_PASSWORD_MAX + 1];
    memset(big, 'a', sizeof big);
    char out[GH_PWHASH_STR_MAX];
    assert_int_equal(gh_password_hash_sync(&cheap, big, sizeof big, out), GH_EINVAL);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t never = {0};
    assert_int_equal(gh_password_hash_async(p, big, sizeof big, on_done, &never), GH_EINVAL);
    assert_int_equal(gh_password_verify_async(p, NULL, big, sizeof big, on_done, &never),
                     GH_EINVAL);
    gh_password_pool_stop(&p);
    assert_int_equal(never.calls, 0);
}

static void workers_run_at_lower_priority(void **state)
{
    (void)state;
    errno = 0;
    int mine = getpriority(PRIO_PROCESS, (id_t)gettid());
    assert_false(mine == -1 && errno != 0);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    rec_t r = verify_once(p, NULL, "password");
    gh_password_pool_stop(&p);
    int want = mine + 5 > 19 ? 19 : mine + 5;
    assert_int_equal(r.nice, want);
    /* the caller's own priority is untouched */
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)gettid()), mine);
}

static void hash_durations_are_counted(void **state)
{
    (void)state;
    for (int i = 1; i < GH_PASSWORD_HIST_BUCKETS; i++)
        assert_true(gh_password_hist_bounds[i] > gh_password_hist_bounds[i - 1]);
    gh_password_pool_t *p = NULL;
    assert_int_equal(gh_password_pool_start(&cheap, &p), 0);
    uint64_t counts[GH_PASSWORD_HIST_BUCKETS + 1];
    double sum;
    gh_password_hist(p, counts, &sum);
    for (int i = 0; i <= GH_PASSWORD_HIST_BUCKETS; i++)
        assert_int_equal(counts[i], 0); /* the dummy made at start is not a job */
    rec_t recs[5] = {0};
    for (int i = 0; i < 5; i++)
        assert_int_equal(gh_password_verify_async(p, NULL, "password", 8, on_done, &recs[i]), 0);
    wait_calls(5);
    gh_password_hist(p, counts, &sum);
    uint64_t total = 0;
    for (int i = 0; i <= GH_PASSWORD_HIST_BUCKETS; i++)
        total += counts[i];
    assert_int_equal(total, 5);
    assert_true(sum > 0);
    gh_password_pool_stop(&p);
}

/* Child-process half of argon2_out_of_memory: exit status is a bit set of failed checks. */
static int oom_child(void)
{
    /* Room for thread stacks and small allocations, not for a 1 GiB argon2 matrix. */
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = gh_mem_virtual_bytes() + (96u << 20);
    if (setrlimit(RLIMIT_AS, &rl) != 0)
        return 77;
    void *probe =
        mmap(NULL, 512u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (probe != MAP_FAILED)
        return 77; /* the limit is not enforced here (e.g. under valgrind) */

    int failed = 0;
    gh_password_params_t huge = cheap;
    huge.memory = 1u << 30;
    char out[GH_PWHASH_STR_MAX], cheap_hash[GH_PWHASH_STR_MAX], huge_hash[GH_PWHASH_STR_MAX];
    if (gh_password_hash_sync(&huge, "password", 8, out) != GH_ENOMEM)
        failed |= 1;
    gh_password_pool_t *p = NULL;
    if (gh_password_pool_start(&huge, &p) != GH_ENOMEM || p)
        failed |= 2;
    /* A well-formed stored hash whose cost (1 GiB) cannot be met on this machine now. */
    if (gh_password_hash_sync(&cheap, "password", 8, cheap_hash) != 0)
        return 64;
    char *m = strstr(cheap_hash, "m=8,");
    if (!m)
        return 65;
    snprintf(huge_hash, sizeof huge_hash, "%.*sm=1048576,%s", (int)(m - cheap_hash), cheap_hash,
             m + 4);
    if (gh_password_pool_start(&cheap, &p) != 0)
        return 66;
    rec_t r = {0};
    if (gh_password_verify_async(p, huge_hash, "password", 8, on_done, &r) != 0)
        return 67;
    wait_calls(1);
    gh_password_pool_stop(&p);
    if (r.result != GH_ENOMEM) {
        fprintf(stderr, "verify gave %s for %s\n", gh_errname(r.result), huge_hash);
        failed |= 4;
    }
    return failed;
}

static void argon2_out_of_memory_is_enomem(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's allocator aborts instead of failing under an address-space limit */
#endif
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(oom_child());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(username_rules),
        cmocka_unit_test(password_rules),
        cmocka_unit_test_setup(hash_then_verify, reset),
        cmocka_unit_test_setup(unknown_user_and_malformed_hash_fail, reset),
        cmocka_unit_test_setup(other_cost_is_rehashed_same_cost_is_not, reset),
        cmocka_unit_test_setup(foreign_argon2_hashes_verify_and_are_rehashed, reset),
        cmocka_unit_test_setup(failed_verify_costs_the_configured_work, reset),
        cmocka_unit_test_setup(failed_verify_takes_as_long_for_an_old_hash_as_for_no_user, reset),
        cmocka_unit_test_setup(full_queue_refuses_and_every_job_calls_back_once, reset),
        cmocka_unit_test_setup(stop_runs_queued_jobs_and_frees_everything, reset),
        cmocka_unit_test_setup(allocation_failure_leaks_nothing, reset),
        cmocka_unit_test_setup(invalid_parameters_are_refused, reset),
        cmocka_unit_test_setup(workers_run_at_lower_priority, reset),
        cmocka_unit_test_setup(hash_durations_are_counted, reset),
        cmocka_unit_test_setup(argon2_out_of_memory_is_enomem, reset),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
