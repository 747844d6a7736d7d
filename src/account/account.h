/*
 * account.h — the account service: every workflow a person or an operator runs on an account —
 * register, log in, log out, change the password, list and end sessions (one's own, and for
 * admins anyone's), create and delete users — written once, under the JSON API, the HTML pages,
 * the command line and the unit tests alike.
 *
 * It knows no HTTP and no JSON: it takes plain arguments (the request facts a workflow needs —
 * the client's address and user agent — are a gh_account_client_t the caller fills) and answers
 * GH_E… codes (common/err.h) and result structs. The callers render those codes; the JSON API
 * maps them to the contract's error bodies in one table (src/api/request.c).
 *
 * The one design decision: a workflow that hashes (register, log in, change the password) never
 * blocks its caller. It is a short series of steps over a state struct the CALLER owns and keeps
 * alive (an HTTP handler keeps it in the request pool): `_begin` runs the synchronous checks; then
 * gh_account_submit() queues the state's pending argon2 job on the password pool and calls the
 * caller's completion callback, once, from a pool worker (an HTTP handler suspends its connection
 * before submitting and resumes it in the callback); then `_continue`, called back on the caller's
 * thread, finishes — or answers GH_ACCOUNT_PENDING when it queued-up another job (submit again).
 * Store writes and session creation therefore run on the caller's thread, never on a hash worker.
 *
 * This is where the next steps plug in: a second factor is a `next` value of the login result
 * (gh_account_next_t) and a step of its own; an audit event is a line in the workflow's function.
 *
 * Thread safety: a gh_account_t is read-only after set-up and may be shared by every thread; a
 * state struct belongs to one workflow at a time.
 */
#ifndef GH_ACCOUNT_ACCOUNT_H
#define GH_ACCOUNT_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/password.h"
#include "auth/token.h"
#include "auth/totp.h"
#include "common/err.h"
#include "mem/mem.h"
#include "ratelimit/ratelimit.h"
#include "store/pending.h"
#include "store/session.h"
#include "store/user.h"

/* Login outcomes: labels of gatehouse_logins_total{result}. */
#define GH_LOGIN_RESULT_MAP(X)                                                                     \
    X(SUCCESS, "success")                                                                          \
    X(FAILURE, "failure")                                                                          \
    X(RATE_LIMITED, "rate_limited")                                                                \
    X(OVERLOADED, "overloaded")

typedef enum {
#define GH__LOGIN_ENUM(e, n) GH_LOGIN_##e,
    GH_LOGIN_RESULT_MAP(GH__LOGIN_ENUM)
#undef GH__LOGIN_ENUM
        GH_LOGIN__COUNT
} gh_login_result_t;

/* `_continue` queued another argon2 job: call gh_account_submit() again. Positive, so it is
 * never mistaken for a GH_E… code. */
#define GH_ACCOUNT_PENDING 1

/* Who a request came from, filled by the caller. */
typedef struct {
    gh_ip_t ip;                 /* the address throttles count (all zeros: not an IP peer) */
    gh_session_client_t client; /* recorded on a new session (gh_session_client_make) */
    const char *via;            /* where it came in, for log lines ("/v1/sessions"); may be NULL */
} gh_account_client_t;

/* Everything the workflows use. The caller owns every pointer (the node, or a test) and keeps
 * them alive while workflows run. */
typedef struct {
    gh_user_store_t *users;
    gh_session_store_t *sessions;
    gh_password_pool_t *passwords;
    gh_ratelimit_t *ratelimit; /* login and registration throttles; NULL: none */
    bool registration_open;    /* --registration */
    size_t max_sessions_per_user;
    /* --ops-users: operators by user id (an entry of digits) or by name. A listed name can never
     * be registered (gh_account_register_begin answers GH_EEXISTS), so only an admin or the
     * command line can create it. NULL or "": nobody. */
    const char *operators;
    const uint8_t *log_salt; /* 16 bytes: salts the account tags in the lockout log line */
    /* Told of each login's outcome (gatehouse_logins_total); NULL: nobody. */
    void (*count_login)(void *ctx, gh_login_result_t result);
    void *count_ctx;
    /* Second factors (mfa.c). pending: the pending-login table (NULL: second factors are off,
     * every login is one step); secret_key: seals TOTP secrets, keys recovery-code hashes. */
    gh_pending_store_t *pending;
    const uint8_t *secret_key; /* GH_SECRET_KEY_LEN bytes */
    /* Told of each second step's outcome (gatehouse_mfa_total); NULL: nobody. */
    void (*count_mfa)(void *ctx, const char *method, const char *result);
    /* Email (account/email.h): addresses, reset links, notices; NULL: email is off. */
    struct gh_account_email *email;
    struct gh_audit *audit; /* the audit trail (account/audit.h); NULL: none */
    /* Who asks, for the audit trail: the API fills these in each request's copy (the client of
     * the request; actor "token" for the admin bearer token, "admin:<id>" for an admin user's
     * console session), the command line sets actor "cli". actor "": the subject user acts on
     * their own account. */
    gh_account_client_t caller;
    char actor[80];
    /* OpenID Connect (account/oidc.h): the grant store, whose families end with the sessions
     * and users they were issued to (logout, revocation, password change, disable, delete);
     * NULL: no provider. */
    struct gh_grant_store *grants;
    /* passkeys (account/passkey.h): the relying party and the challenge table; NULL: none */
    const struct gh_webauthn_rp_s *webauthn;
    struct gh_webauthn_challenges *webauthn_challenges;
} gh_account_t;

/* The pending argon2 job of a workflow's state (its fields are the service's). */
typedef struct {
    enum { GH_ACCOUNT_JOB_NONE, GH_ACCOUNT_JOB_VERIFY, GH_ACCOUNT_JOB_HASH } kind;
    const char *password; /* the caller's copy; must live until the job has run */
    size_t password_len;
    const char *stored_hash; /* verify: NULL = the pool's dummy hash (never a match) */
    gh_password_result_t verdict;
    void (*done)(void *arg);
    void *arg;
} gh_account_job_t;

/* Queues the state's pending job on the password pool. Returns true when it is queued: done(arg)
 * will be called exactly once, from a pool worker, when the verdict is in. Returns false when it
 * could not be queued (a full queue, no memory): done is never called, the failure is recorded
 * in the job, and the caller goes on to `_continue` at once, which reports it. */
bool gh_account_submit(gh_account_t *a, gh_account_job_t *job, void (*done)(void *arg), void *arg);

/* ---- register, and admins creating users ---- */

typedef struct {
    gh_account_job_t job;
    char username[GH_USERNAME_MAX + 1];
    gh_user_t user; /* the result: id, username, created_at (no hash) */
    int64_t retry_ms;
} gh_account_register_t;

/* Open registration's admission, before anything is read or hashed: GH_ECLOSED when registration
 * is closed; GH_ELIMIT (*retry_ms the wait) when the client's throttle budget is spent (an attempt
 * is taken from it, never given back). */
int gh_account_register_admit(gh_account_t *a, const gh_account_client_t *c,
                              int64_t *retry_ms) GH_WUR;
/* Checks the name and the password and that the name is free; then the state holds a hash job
 * (password must live until it has run). by_admin: an admin creates the user (operator names
 * are not reserved against the admin). GH_EUSERNAME, GH_EPASSWORD, GH_EEXISTS, store errors. */
int gh_account_register_begin(gh_account_t *a, gh_account_register_t *st, const char *username,
                              size_t ulen, const char *password, size_t plen, bool by_admin) GH_WUR;
/* Stores the user: 0 (st->user), GH_EEXISTS (taken meanwhile), GH_EBUSY / GH_ENOMEM (the hash
 * could not be made), store errors. The hash is wiped from the state. */
int gh_account_register_continue(gh_account_t *a, gh_account_register_t *st) GH_WUR;

/* ---- log in ---- */

/* What a login asks of the caller next: DONE (a session is made), or MFA (the password was
 * right, the user has a second factor: st->pending names a pending login, finished with
 * gh_account_mfa_finish; no session exists yet). */
typedef enum { GH_ACCOUNT_NEXT_DONE = 0, GH_ACCOUNT_NEXT_MFA } gh_account_next_t;

typedef struct {
    gh_account_job_t job;
    gh_account_client_t client;
    gh_user_t user; /* the user, when found (hash wiped once verified) */
    bool user_found;
    uint64_t account_key; /* the throttle's claim, settled exactly once */
    bool ip_taken, account_begun;
    /* results */
    int64_t retry_ms;             /* GH_ELIMIT: seconds to wait, in ms */
    gh_account_next_t next;       /* 0 on success */
    char token[GH_TOKEN_LEN + 1]; /* success: the new session's token (wipe after use) */
    uint8_t token_hash[GH_TOKEN_HASH_LEN];
    gh_session_info_t session; /* success: the new session */
    /* next == MFA: the pending login's token (wipe after use), when it ends, and its methods
     * (GH_PENDING_* bits) */
    char pending[GH_TOKEN_LEN + 1];
    int64_t pending_expires_ms;
    uint32_t methods;
    /* a finished second step: the method, and whether a recovery code was spent */
    const char *mfa_method;
    size_t recovery_left;
} gh_account_login_t;

/*
 * Steps: throttle → look the user up → (submit) verify on the password pool → settle the throttle
 * → rehash an outdated hash → create the session → count.
 *
 * begin: the throttles (GH_ELIMIT, st->retry_ms; counted rate_limited), then the user lookup
 * (a store error ends the login: GH_ESTORE…, not counted); on 0 the state holds the verify job —
 * against the dummy hash for an unknown user or an invalid name, so every failure costs the same.
 * password must live until the job has run. client is copied.
 */
int gh_account_login_begin(gh_account_t *a, gh_account_login_t *st, const char *username,
                           size_t ulen, const char *password, size_t plen,
                           const gh_account_client_t *client) GH_WUR;
/* continue: 0 with st->token / st->session / st->user (and st->next); GH_EAUTH invalid
 * credentials (counted failure); GH_EBUSY / GH_ENOMEM overloaded; session store errors. */
int gh_account_login_continue(gh_account_t *a, gh_account_login_t *st) GH_WUR;
/* The verify job was not queued (gh_account_submit returned false: the pool is full): gives the
 * throttles' claims back at once, before the caller's reply is sent later (continue then reports
 * overloaded). Without it, refused logins waiting for their reply still counted as in flight
 * against the account, and a burst could turn "overloaded" into "rate limited". */
void gh_account_login_unqueued(gh_account_t *a, gh_account_login_t *st);
/* The caller could not hand the token over (its reply failed): ends the session just made, so
 * none lives that nobody holds, and wipes the token. */
void gh_account_login_abandon(gh_account_t *a, gh_account_login_t *st);

/* ---- the second factor (mfa.c) ---- */

/* Methods as the API names them. */
#define GH_MFA_TOTP "totp"
#define GH_MFA_RECOVERY "recovery_code"
#define GH_MFA_WEBAUTHN "webauthn"

/* A second step's proof: method and code, or (webauthn) the assertion's JSON text. */
typedef struct {
    const char *method;
    const char *code;
    size_t code_len;
    const char *credential; /* webauthn: the `credential` member as JSON text */
    size_t credential_len;
} gh_account_mfa_proof_t;

/* After the password: when the user has a confirmed factor, makes a pending login instead of a
 * session (st->next = MFA, st->pending, st->pending_expires_ms, st->methods). Called by
 * gh_account_login_continue; 0 when the login goes on as one step; GH_EBUSY (the pending table
 * is full under refuse), store errors. */
int gh_account_mfa_gate(gh_account_t *a, gh_account_login_t *st) GH_WUR;
/* Finishes a pending login: 0 with st->token / session / user exactly as a one-step login;
 * GH_ECODE a wrong (or replayed) code — counted against the pending login (the 5th ends it:
 * GH_EPENDING) and the account's back-off; GH_EPENDING expired or unknown; GH_ELIMIT the
 * account's back-off (st->retry_ms); GH_EINVAL an unknown method; session store errors.
 * client is copied (the session records the client that finished the login). */
int gh_account_mfa_finish(gh_account_t *a, gh_account_login_t *st, const char *pending, size_t plen,
                          const gh_account_mfa_proof_t *proof,
                          const gh_account_client_t *client) GH_WUR;

/* Extension point for passkeys: checks a WebAuthn assertion (`proof->credential`) against the
 * user's passkeys and the challenge the pending login holds, recording the use (counter) on
 * success: 0 with *factor_id; GH_ECODE when it does not verify. The passkey code defines it;
 * until then it answers GH_EINVAL ("method not supported"). */
int gh_account_mfa_webauthn(gh_account_t *a, const gh_pending_t *p,
                            const gh_account_mfa_proof_t *proof, uint64_t *factor_id) GH_WUR;

/* Proof of presence for changing factors: the current password (verified on the password
 * pool, asynchronously like a login), or a second-factor code (checked at once). */
typedef struct {
    gh_account_job_t job;
    gh_user_t user;
    int verdict; /* by code: decided in begin */
} gh_account_proof_t;
/* GH_EINVAL when neither is given, GH_EAUTH when the user is gone; then job.kind is VERIFY
 * (submit it) or NONE (decided: call continue at once). password / code must live until then. */
int gh_account_proof_begin(gh_account_t *a, gh_account_proof_t *st, uint64_t user_id,
                           const char *password, size_t plen, const char *code, size_t clen) GH_WUR;
/* 0 proven; GH_ECURRENT (wrong password), GH_ECODE (wrong code), GH_EBUSY / GH_ENOMEM. */
int gh_account_proof_continue(gh_account_t *a, gh_account_proof_t *st) GH_WUR;

/* The user's factors (confirmed or not; secrets wiped), up to GH_FACTORS_MAX, and the state of
 * the recovery codes. */
typedef struct {
    gh_factor_t *list; /* in the caller's pool */
    size_t n;
    size_t recovery_left;
    int64_t recovery_used_at_ms; /* 0: none used */
} gh_account_factors_t;
int gh_account_factors_list(gh_account_t *a, gh_pool_t *pool, uint64_t user_id,
                            gh_account_factors_t *out) GH_WUR;

/* A new, unconfirmed TOTP factor (after a proof): the secret in base32 and the otpauth URI
 * (issuer "Gatehouse", the account name). GH_ELIMIT at GH_FACTORS_MAX, GH_EINVAL bad name. */
#define GH_OTPAUTH_URI_MAX 512
typedef struct {
    gh_factor_t factor;
    char secret_b32[40];
    char uri[GH_OTPAUTH_URI_MAX];
} gh_account_totp_enrol_t;
int gh_account_totp_enrol(gh_account_t *a, const gh_user_t *user, const char *name,
                          gh_account_totp_enrol_t *out) GH_WUR;
/* Confirms it with a first correct code: 0 with *factor; when it is the user's first confirmed
 * factor, *ncodes = GH_RECOVERY_CODES new recovery codes in codes (shown once). GH_ENOTFOUND,
 * GH_ECODE. */
int gh_account_totp_confirm(gh_account_t *a, uint64_t user_id, uint64_t factor_id, const char *code,
                            size_t clen, gh_factor_t *factor,
                            char (*codes)[GH_RECOVERY_CODE_LEN + 1], size_t *ncodes) GH_WUR;
/* Renames a factor: 0 with *factor (no secret); GH_ENOTFOUND, GH_EINVAL (1 to 64 bytes). */
int gh_account_factor_rename(gh_account_t *a, uint64_t user_id, uint64_t factor_id,
                             const char *name, gh_factor_t *factor) GH_WUR;
/* Removes a factor (after a proof). Removing the last confirmed one ends every other session of
 * the user (keep survives) and drops the recovery codes: *revoked. GH_ENOTFOUND. */
int gh_account_factor_remove(gh_account_t *a, uint64_t user_id, uint64_t factor_id,
                             const uint8_t keep[GH_TOKEN_HASH_LEN], size_t *revoked) GH_WUR;
/* New recovery codes (after a proof); the old ones die, and every other session ends.
 * GH_EINVAL when the user has no confirmed factor. */
int gh_account_recovery_regenerate(gh_account_t *a, uint64_t user_id,
                                   const uint8_t keep[GH_TOKEN_HASH_LEN],
                                   char (*codes)[GH_RECOVERY_CODE_LEN + 1], size_t *revoked) GH_WUR;
/* Admin: removes every factor and recovery code of the user: GH_ENOTFOUND (no such user). */
int gh_account_factors_reset(gh_account_t *a, uint64_t user_id, size_t *removed) GH_WUR;

/* ---- the caller's session ---- */

/* Ends the session of this token hash (log out). Already ended is fine: 0. */
int gh_account_logout(gh_account_t *a, const uint8_t token_hash[GH_TOKEN_HASH_LEN]) GH_WUR;
/* The user a session belongs to (from the user cache, no hash). A session whose user is gone
 * (deleted by another process) is ended here: GH_ENOTFOUND. */
int gh_account_session_user(gh_account_t *a, const gh_session_info_t *session,
                            const uint8_t token_hash[GH_TOKEN_HASH_LEN], gh_user_t *out) GH_WUR;

/* ---- sessions ---- */

typedef struct {
    gh_session_info_t *list; /* in the caller's pool */
    size_t n;
} gh_account_sessions_t;

/* A user's live sessions, into pool (room for max_sessions_per_user). by_admin: the user must
 * exist (GH_ENOTFOUND otherwise); one's own listing does not ask. */
int gh_account_sessions_list(gh_account_t *a, gh_pool_t *pool, uint64_t user_id, bool by_admin,
                             gh_account_sessions_t *out) GH_WUR;
/* Ends one session of the user by its public id: GH_ENOTFOUND when the user has no such one. */
int gh_account_sessions_revoke(gh_account_t *a, uint64_t user_id, const char *session_id) GH_WUR;
/* Ends every session of the user; *n how many. by_admin: the user must exist (GH_ENOTFOUND). */
int gh_account_sessions_revoke_all(gh_account_t *a, uint64_t user_id, bool by_admin,
                                   size_t *n) GH_WUR;

/* ---- change the password ---- */

typedef struct {
    gh_account_job_t job;
    gh_user_t user;
    uint8_t keep[GH_TOKEN_HASH_LEN]; /* the session that asked: it survives */
    const char *new_password;        /* the caller's copy; lives until the workflow ends */
    size_t new_len;
    size_t revoked; /* result: other sessions ended */
} gh_account_password_t;

/* Steps: check the new password → read the user fresh → verify the current one → hash the new
 * one → store it → end every other session of the user.
 * begin: GH_EPASSWORD (weak new password), GH_EAUTH (the user is gone: the asking session `keep`
 * is ended too), store errors; on 0 the
 * state holds the verify job. current and new_pw must live until the workflow ends. */
int gh_account_password_begin(gh_account_t *a, gh_account_password_t *st, uint64_t user_id,
                              const uint8_t keep[GH_TOKEN_HASH_LEN], const char *current,
                              size_t clen, const char *new_pw, size_t nlen) GH_WUR;
/* continue: GH_ACCOUNT_PENDING after the verify (submit the hash job); then 0 (st->revoked);
 * GH_ECURRENT the current password is wrong; GH_EBUSY / GH_ENOMEM; store errors. */
int gh_account_password_continue(gh_account_t *a, gh_account_password_t *st) GH_WUR;

/* ---- users (admin) ---- */

/* Users with id > after, up to cap, into out (no hashes). */
int gh_account_users_list(gh_account_t *a, uint64_t after, gh_user_t *out, size_t cap,
                          size_t *n) GH_WUR;
/* The user (no hash): GH_ENOTFOUND. */
int gh_account_user_get(gh_account_t *a, uint64_t user_id, gh_user_t *out) GH_WUR;
/* Ends every session of the user, then deletes the user (a session never outlives its user):
 * GH_ENOTFOUND, store errors; *revoked how many sessions ended. */
int gh_account_user_delete(gh_account_t *a, uint64_t user_id, size_t *revoked) GH_WUR;

/* Sets the user's roles (admin, disabled: -1 leaves one as it is, 0 or 1 sets it) into out (no
 * hash). Disabling ends every session of the user first (a disabled user's login then fails as
 * a wrong password does). Each change is audited (user.disabled / user.enabled, admin.<action>).
 * GH_ENOTFOUND, store errors. */
int gh_account_user_set_flags(gh_account_t *a, uint64_t user_id, int admin, int disabled,
                              gh_user_t *out) GH_WUR;

/* Unlocks the user's account throttle on this node (its failures and back-off are forgotten);
 * audited (throttle.unlocked, admin.throttle_unlock). *was_locked: it had failures. GH_ENOTFOUND
 * when the user does not exist; 0 with *was_locked false without throttles. */
int gh_account_throttle_unlock(gh_account_t *a, uint64_t user_id, bool *was_locked) GH_WUR;

/* ---- operators (--ops-users) ---- */

/* True when the user is named in a->operators (by id, or by name exactly as listed). */
bool gh_account_is_operator(const gh_account_t *a, const gh_user_t *user);
/* At start: logs a warning for each listed operator that names no user. Returns how many. */
size_t gh_account_check_operators(gh_account_t *a);

#endif
