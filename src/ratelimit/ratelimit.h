/*
 * ratelimit.h — login and registration throttles whose memory an attacker cannot grow, and the
 * trusted-proxy rule that decides which address a request is throttled as.
 *
 * Two fixed tables are allocated once (charged to GH_MEM_RATELIMIT) and never resized:
 *   - per client IP: a GCRA token bucket (one deadline per entry) — `ip_count` attempts per
 *     `ip_window_ms`, refilling continuously. IPv6 clients are keyed by their /64 (one host
 *     usually owns a whole /64, so per-/128 keys would hand an attacker 2^64 buckets);
 *     IPv4 by the full address.
 *   - per account: consecutive failed logins keyed by a hash of the lower-cased username
 *     (whether or not the user exists, so the throttle reveals nothing). After `threshold`
 *     failures every further attempt must wait a delay that doubles from `base_delay_ms` up to
 *     `max_delay_ms`; a success resets the account. Never a permanent lock.
 * Both tables are set-associative (8 slots per set, chosen by a keyed SipHash so nobody can aim
 * keys at one set); a full set replaces the entry that matters least (a refilled bucket, an
 * account not in back-off, else the least recently used), so insertion and eviction are O(1)
 * and a flood of distinct addresses or usernames costs no memory, only old entries.
 *
 * Thread safety: every function may be called from any thread; each set is guarded by one of
 * a fixed array of striped mutexes, held for a scan of 8 slots.
 * Time is passed in (`now_ms`, wall clock or anything monotonic), so tests inject it.
 */
#ifndef GH_RATELIMIT_RATELIMIT_H
#define GH_RATELIMIT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* ---- addresses ---- */

/* An IPv6 address; IPv4 is held as ::ffff:a.b.c.d so one type covers both. */
typedef struct {
    uint8_t b[16];
} gh_ip_t;

#define GH_IP_STR 46 /* INET6_ADDRSTRLEN */

/* Parses "1.2.3.4", "2001:db8::1", "[2001:db8::1]", and either with a port ("1.2.3.4:80",
 * "[::1]:80", as some proxies write X-Forwarded-For). Spaces and tabs around are ignored.
 * Returns 0 or GH_EINVAL. */
int gh_ip_parse(const char *s, size_t len, gh_ip_t *out) GH_WUR;
/* Writes the address as text (IPv4 for mapped addresses) into out[GH_IP_STR]. */
void gh_ip_format(const gh_ip_t *ip, char out[GH_IP_STR]);
bool gh_ip_is_v4(const gh_ip_t *ip);

/* ---- trusted proxies ---- */

#define GH_PROXIES_MAX 64

typedef struct {
    gh_ip_t net;    /* masked to the prefix */
    uint8_t prefix; /* over the 128-bit form: an IPv4 /24 is stored as /120 */
} gh_cidr_t;

typedef struct {
    gh_cidr_t nets[GH_PROXIES_MAX];
    size_t n;
} gh_proxies_t;

/* Parses a comma-separated list of CIDRs ("10.0.0.0/8, ::1/128, 192.168.1.7"; a bare address
 * is a single host). "" gives an empty list. Returns 0, GH_EINVAL for a bad entry, GH_ELIMIT
 * for more than GH_PROXIES_MAX entries. */
int gh_proxies_parse(const char *list, gh_proxies_t *out) GH_WUR;
bool gh_proxies_contains(const gh_proxies_t *p, const gh_ip_t *ip);

/*
 * The address a request is throttled as. A peer outside the trusted list is the client,
 * whatever its headers say. A trusted peer may name the client: X-Forwarded-For (all `nxff`
 * header lines, in the order received, read as one list) is walked from the right, skipping
 * trusted hops; the first untrusted hop is the client. When every hop is trusted the left-most
 * is the client; an entry that is not an address stops the walk at the last good hop (the
 * attacker-controlled left part of the list is never believed past garbage). Without
 * X-Forwarded-For a valid X-Real-IP (`real_ip`, may be NULL) is the client.
 */
void gh_proxies_client(const gh_proxies_t *p, const gh_ip_t *peer, const char *const *xff,
                       size_t nxff, const char *real_ip, gh_ip_t *out);

/* ---- the limiter ---- */

typedef struct {
    uint32_t ip_count;             /* attempts per window per client; 0 = per-IP throttle off */
    int64_t ip_window_ms;          /* the window those attempts refill over */
    uint32_t account_threshold;    /* consecutive failures before back-off; 0 = off */
    int64_t account_base_delay_ms; /* delay after the threshold-th failure; doubles after each */
    int64_t account_max_delay_ms;  /* the cap on that delay */
    int64_t account_forget_ms;     /* an account with no attempt for this long starts afresh */
    uint32_t ip_slots;             /* table sizes; rounded up to a power of two, at least 8 */
    uint32_t account_slots;
} gh_ratelimit_params_t;

/* What gatehouse serve uses (the counts come from --throttle-ip and --throttle-account):
 * 1 s doubling to 15 min (NIST SP 800-63B: at that pace 100 consecutive failures take more than
 * 20 hours), forgotten after 24 h quiet, 64Ki address slots and 16Ki account slots (about
 * 1.7 MiB in all). */
#define GH_RATELIMIT_BASE_DELAY_MS 1000
#define GH_RATELIMIT_MAX_DELAY_MS (15 * 60 * 1000)
#define GH_RATELIMIT_FORGET_MS (24 * 3600 * 1000LL)
#define GH_RATELIMIT_IP_SLOTS 65536
#define GH_RATELIMIT_ACCOUNT_SLOTS 16384

typedef struct gh_ratelimit gh_ratelimit_t;

/* Allocates both tables (all the memory this limiter will ever hold). GH_EINVAL for a window
 * of 0 with a count, GH_ENOMEM. */
int gh_ratelimit_create(const gh_ratelimit_params_t *params, gh_ratelimit_t **out) GH_WUR;
/* Frees everything; *rl = NULL. NULL is a no-op. */
void gh_ratelimit_destroy(gh_ratelimit_t **rl);

/* Takes one attempt from the client's bucket. Returns 0, or GH_ELIMIT with *retry_ms (> 0) the
 * time until one attempt is available again. Always 0 when the per-IP throttle is off. */
int gh_ratelimit_ip_take(gh_ratelimit_t *rl, const gh_ip_t *ip, int64_t now_ms,
                         int64_t *retry_ms) GH_WUR;
/* Gives back an attempt taken by gh_ratelimit_ip_take (a login that succeeded, or one the
 * service could not process). Never raises a bucket above its capacity. */
void gh_ratelimit_ip_refund(gh_ratelimit_t *rl, const gh_ip_t *ip, int64_t now_ms);

/* The account key of a username: keyed hash of its ASCII-lower-cased bytes (at most the first
 * 256). Never 0. */
uint64_t gh_ratelimit_account_key(const gh_ratelimit_t *rl, const char *username, size_t len);

/* Starts a login attempt on an account. Returns 0 (the attempt may go on; end it with
 * gh_ratelimit_account_end), or GH_ELIMIT with *retry_ms when the account is in back-off.
 * Attempts in flight count as failures-to-be, so parallel guesses cannot slip past the
 * threshold; in back-off only one attempt per delay gets through. */
int gh_ratelimit_account_begin(gh_ratelimit_t *rl, uint64_t key, int64_t now_ms,
                               int64_t *retry_ms) GH_WUR;

typedef enum {
    GH_RATELIMIT_SUCCESS,   /* right password: the account's record is cleared */
    GH_RATELIMIT_FAILURE,   /* wrong password or unknown user: one more consecutive failure */
    GH_RATELIMIT_ABANDONED, /* the service could not decide (overloaded, store down) */
} gh_ratelimit_outcome_t;

typedef struct {
    uint32_t failures; /* consecutive failures after this outcome */
    int64_t delay_ms;  /* the wait before the next attempt (0 when not in back-off) */
    bool lockout;      /* this failure started the back-off (failures == threshold) */
} gh_ratelimit_verdict_t;

/* Ends an attempt begun with gh_ratelimit_account_begin. verdict may be NULL. */
/* Forgets the account's failures and back-off (an operator's unlock): its next attempt is
 * admitted at once. Attempts in flight are kept. Returns true when the account had failures. */
bool gh_ratelimit_account_reset(gh_ratelimit_t *rl, uint64_t key, int64_t now_ms);

void gh_ratelimit_account_end(gh_ratelimit_t *rl, uint64_t key, gh_ratelimit_outcome_t outcome,
                              int64_t now_ms, gh_ratelimit_verdict_t *verdict);

typedef struct {
    uint64_t ip_entries, account_entries;     /* slots in use (stale ones are reclaimed lazily) */
    uint64_t ip_capacity, account_capacity;   /* slots */
    uint64_t ip_rejected, account_rejected;   /* attempts refused */
    uint64_t ip_evictions, account_evictions; /* live entries replaced because a set was full */
    uint64_t lockouts;                        /* accounts that entered back-off */
    size_t bytes;                             /* accounted bytes this limiter holds */
} gh_ratelimit_stats_t;

/* Relaxed snapshot; safe while other threads use the limiter. */
void gh_ratelimit_stats(const gh_ratelimit_t *rl, gh_ratelimit_stats_t *out);

#endif
