/*
 * password.h — the password pool: argon2id (libsodium crypto_pwhash_str*) on a fixed set of
 * worker threads behind a bounded queue, so that hashing can never take the threads that answer
 * token checks. Memory for hashing is at most workers × hash_memory. A full queue is refused at
 * once (GH_EBUSY → 503 overloaded + Retry-After), never waited on.
 *
 * Unknown usernames are verified against a dummy hash made at start with the same cost, so a
 * wrong password and an unknown user take the same time. A stored hash whose cost differs from
 * the configured one is rehashed during a successful verify (result.new_hash); a mismatch against
 * one of a lower cost is topped up with argon2 work to the configured cost, so every failed
 * verify costs the configured work (or, for a hash above it, the hash's own).
 *
 * Callbacks run on a worker thread, exactly once per accepted job, and must not block long.
 * Password copies held by jobs are wiped with sodium_memzero when the job ends. Workers run at a
 * lower CPU priority (nice +5) than the thread that started the pool.
 *
 * Results: 0 match (verify) or hashed (hash); GH_EAUTH wrong password or unknown user (NULL
 * stored hash); GH_EINVAL the stored hash is not one libsodium can read (still costs one argon2
 * run, so it is no faster than a mismatch); GH_ENOMEM argon2 could not get its memory.
 */
#ifndef GH_AUTH_PASSWORD_H
#define GH_AUTH_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_PASSWORD_MIN 8
#define GH_PASSWORD_MAX 1024
#define GH_PWHASH_STR_MAX 128 /* crypto_pwhash_STRBYTES */

typedef struct {
    uint64_t memory; /* bytes (>= 8KiB) */
    uint64_t ops;    /* >= 1 */
    uint32_t workers;
    uint32_t queue;
} gh_password_params_t;

typedef struct {
    int result;                       /* 0 match/hashed, GH_EAUTH mismatch, GH_ENOMEM, ... */
    char new_hash[GH_PWHASH_STR_MAX]; /* hash job: the hash; verify: a rehash, or "" */
} gh_password_result_t;

typedef void (*gh_password_cb)(void *arg, const gh_password_result_t *res);

typedef struct gh_password_pool gh_password_pool_t;

int gh_password_pool_start(const gh_password_params_t *params, gh_password_pool_t **out) GH_WUR;
/* Stops accepting (submissions get GH_EBUSY), lets the jobs already queued run (their callbacks
 * fire), joins the workers, frees everything and sets *pool = NULL. Must not be called from a
 * callback. No submission may race with the end of stop: stop whatever submits (the HTTP server)
 * first. */
void gh_password_pool_stop(gh_password_pool_t **pool);

/* Queues a verification of pw against stored_hash (NULL: the dummy hash, always GH_EAUTH).
 * Returns 0 (cb will run), GH_EBUSY (queue full or stopping), GH_ENOMEM, GH_EINVAL (pwlen over
 * GH_PASSWORD_MAX). pw and stored_hash are copied; the caller may free them at once.
 * On a match whose hash has another cost or algorithm, result.new_hash holds a hash at the
 * configured cost for the caller to store ("" when none is needed or it could not be made). */
int gh_password_verify_async(gh_password_pool_t *pool, const char *stored_hash, const char *pw,
                             size_t pwlen, gh_password_cb cb, void *arg) GH_WUR;
/* Queues hashing of pw at the configured cost; the hash arrives in result.new_hash. */
int gh_password_hash_async(gh_password_pool_t *pool, const char *pw, size_t pwlen,
                           gh_password_cb cb, void *arg) GH_WUR;
/* Hashes on the calling thread (for the `gatehouse user` command). GH_EINVAL for a cost outside
 * libsodium's limits or pwlen over GH_PASSWORD_MAX. */
int gh_password_hash_sync(const gh_password_params_t *params, const char *pw, size_t pwlen,
                          char out[GH_PWHASH_STR_MAX]) GH_WUR;
/* Argon2 work done by verify jobs since start, in blocks (1 KiB compressed once per pass; a hash
 * at memory M bytes and T passes is T x M / 1024 blocks, rounded as argon2 rounds). For tests:
 * what a failure costs must not depend on who the user is. */
uint64_t gh_password_verify_work(gh_password_pool_t *pool);
/* Told the duration of every job's argon2 work (from a pool worker: quick, no blocking). The
 * pool knows nothing of metrics: whoever owns the histogram hands it this. */
typedef struct {
    void (*observe)(void *ctx, int64_t duration_ns);
    void *ctx;
} gh_password_observer_t;
/* From now on every job's duration is also told to o (NULL: nobody), until the pool stops or
 * another is attached. o must stay valid until then. */
void gh_password_attach_observer(gh_password_pool_t *pool, const gh_password_observer_t *o);
/* Jobs waiting or running. */
size_t gh_password_queue_depth(gh_password_pool_t *pool);
/* Durations of every job's argon2 work since start, for metrics. counts[i] is the number of
 * jobs that took more than bounds[i-1] and at most bounds[i] seconds (per bucket, not cumulative);
 * counts[GH_PASSWORD_HIST_BUCKETS] those above the last bound. Relaxed reads: a concurrent
 * snapshot may be off by the jobs finishing meanwhile. */
#define GH_PASSWORD_HIST_BUCKETS 10
extern const double gh_password_hist_bounds[GH_PASSWORD_HIST_BUCKETS]; /* seconds, upper bounds */
void gh_password_hist(gh_password_pool_t *pool, uint64_t counts[GH_PASSWORD_HIST_BUCKETS + 1],
                      double *sum_seconds);

/* Policy checks shared by the API and the CLI. */
/* Username: 1..64 of [A-Za-z0-9._@-]. */
bool gh_auth_username_valid(const char *s, size_t len);
/* Password: 8..1024 bytes of valid UTF-8 without NUL. */
bool gh_auth_password_valid(const char *s, size_t len);

#endif
