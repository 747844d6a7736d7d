/*
 * email.h — the email workflows of the account service: an address per user (set, changed with
 * proof, verified by a link), password reset by a link, security notices; and the outbox sender
 * that delivers what they queue (outbox.c).
 *
 * The one design decision: every workflow only WRITES mail (into the outbox, in the user store's
 * database, in the same transaction as the token the mail carries) and never talks SMTP; the
 * sender thread does. A request is answered once its mail is durable, whether or not the mail
 * server is up. Links carry a 256-bit token of which only the SHA-256 is stored; looking a link
 * up (the GET of its page) never spends it, only the confirming POST does.
 *
 * Thread safety: a gh_account_email_t may be shared by every thread.
 */
#ifndef GH_ACCOUNT_EMAIL_H
#define GH_ACCOUNT_EMAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "account/account.h"
#include "mail/mail.h"
#include "store/mail.h"

#define GH_EMAIL_LINK_TOKEN_LEN 43 /* base64url of 32 random bytes */
#define GH_EMAIL_RESET_TTL_MS (30 * 60 * 1000LL)
#define GH_EMAIL_VERIFY_TTL_MS (24 * 3600 * 1000LL)
/* Reset requests: per client address, per requested address or name, per account. */
#define GH_EMAIL_THROTTLE_SLOTS 8192
#define GH_EMAIL_THROTTLE_WINDOW_MS (15 * 60 * 1000LL)
#define GH_EMAIL_THROTTLE_PER_IP 20
#define GH_EMAIL_THROTTLE_PER_TARGET 5
#define GH_EMAIL_THROTTLE_PER_ACCOUNT 3

typedef struct {
    gh_mail_store_t *store; /* the email tables (the caller keeps it open) */
    const char *product;    /* --product-name: in subjects and bodies */
    const char *public_url; /* --public-url: links are <public_url>/reset/confirm?token=… */
    const char *from;       /* --smtp-from (normalized) */
    const char *templates;  /* --email-templates DIR or "" */
    const char *smtp_url;   /* --smtp-url; "" = mail stays queued */
    const char *smtp_user;  /* from --smtp-credentials-file; "" = no AUTH */
    const char *smtp_password;
    int64_t retry_for_ms; /* --smtp-retry-for */
    int64_t smtp_timeout_ms;
    const char *node; /* this node's name on the leases it takes */
    /* the tests' fixed table size for the throttles (0 = GH_EMAIL_THROTTLE_SLOTS) */
    uint32_t throttle_slots;
} gh_email_options_t;

typedef struct gh_account_email gh_account_email_t;

/* Copies the options' strings. GH_EINVAL (product, from or public_url unusable), GH_ENOMEM. */
int gh_account_email_create(const gh_email_options_t *o, gh_account_email_t **out) GH_WUR;
/* Starts the sender thread (it also keeps the outbox's figures current without --smtp-url). */
int gh_account_email_start(gh_account_email_t *e) GH_WUR;
/* Stops the sender (a message being sent is finished or abandoned to its lease) and frees. */
void gh_account_email_destroy(gh_account_email_t **e);

typedef struct {
    bool delivering;          /* --smtp-url is set */
    uint64_t depth;           /* queued messages (all nodes) */
    double oldest_age_s;      /* age of the oldest queued message */
    uint64_t sent, failed;    /* by this node since start */
    uint64_t attempts_failed; /* attempts that will be retried, by this node */
} gh_email_stats_t;
void gh_account_email_stats(gh_account_email_t *e, gh_email_stats_t *out);

/* ---- the workflows (a->email must be set; GH_ECLOSED when it is NULL: email is off) ---- */

/* Registration with an address: checked before the user is made (GH_EEMAIL, GH_EEMAILTAKEN)… */
int gh_account_email_check_new(gh_account_t *a, const char *email, size_t len) GH_WUR;
/* …and stored (unverified) with a verification link mailed, once it is. */
int gh_account_email_attach(gh_account_t *a, const gh_user_t *user, const char *email,
                            size_t len) GH_WUR;

/* The user's address (*email "" when none). */
int gh_account_email_get(gh_account_t *a, uint64_t user_id, char email[GH_MAIL_ADDR_MAX + 1],
                         bool *verified) GH_WUR;

/* PUT /v1/email: with proof (the current password, verified on the pool). */
typedef struct {
    gh_account_job_t job;
    gh_user_t user;
    char email[GH_MAIL_ADDR_MAX + 1]; /* the new address, normalized */
} gh_account_email_change_t;
/* begin: GH_EEMAIL, GH_EEMAILTAKEN (another user has it), GH_EAUTH (the user is gone); on 0 the
 * state holds the verify job (current must live until it has run). */
int gh_account_email_change_begin(gh_account_t *a, gh_account_email_change_t *st, uint64_t user_id,
                                  const char *current, size_t clen, const char *email,
                                  size_t elen) GH_WUR;
/* continue: 0 (a confirmation is queued to the new address; a notice to the old one, when
 * there is one; with no old address the new one is set, unverified); GH_ECURRENT; GH_EBUSY. */
int gh_account_email_change_continue(gh_account_t *a, gh_account_email_change_t *st) GH_WUR;

/* POST /v1/email/verify, the /verify page's POST: spends the token and verifies (or, for a
 * change, sets) the address. GH_ETOKEN (unknown, spent, expired), GH_EEMAILTAKEN. */
int gh_account_email_verify(gh_account_t *a, const char *token, size_t len) GH_WUR;
/* The /verify and /reset/confirm pages' GET: is the link usable? Spends nothing.
 * 0 or GH_ETOKEN; *needs_code: the user has a second factor (reset only). */
int gh_account_link_peek(gh_account_t *a, bool reset, const char *token, size_t len,
                         bool *needs_code) GH_WUR;

/* POST /v1/password/reset: always 0 for a well-formed request, whether or not an account
 * matches, after the same work (a token is made, hashed and stored either way); GH_EEMAIL for a
 * malformed address, GH_EINVAL for neither field; GH_ELIMIT (*retry_ms) when the client's or the
 * target's budget is spent. by_email: ident is an address, else a username. */
int gh_account_reset_request(gh_account_t *a, const gh_account_client_t *c, bool by_email,
                             const char *ident, size_t len, int64_t *retry_ms) GH_WUR;

/* Admin (the console's "Send a password reset"): mails a reset link to the user's verified
 * address and records admin.password_reset_send. *sent false (and 0, nothing queued, nothing
 * recorded) when the user has no verified address. GH_ENOTFOUND (no such user), GH_ELIMIT
 * (*retry_ms) when the account's reset budget is spent, GH_ECLOSED without email. */
int gh_account_reset_send(gh_account_t *a, uint64_t user_id, bool *sent, int64_t *retry_ms) GH_WUR;

/* POST /v1/password/reset/confirm: new password, then (when the user has a factor) the code,
 * then the hash on the pool, then the token is spent, the hash stored, every session ended and a
 * notice mailed. */
typedef struct {
    gh_account_job_t job;
    uint8_t token_hash[GH_MAILSTORE_HASH_LEN];
    gh_user_t user;
    size_t revoked;
} gh_account_reset_t;
/* begin: GH_ETOKEN, GH_EPASSWORD, GH_EMFA (a factor and no code), GH_EAUTH-class code errors
 * from the factor hook; on 0 the state holds the hash job (new_pw must live until it has run). */
int gh_account_reset_begin(gh_account_t *a, gh_account_reset_t *st, const char *token, size_t tlen,
                           const char *new_pw, size_t nlen, const char *code,
                           size_t codelen) GH_WUR;
/* continue: 0 (st->revoked sessions ended); GH_ETOKEN (spent meanwhile); GH_EBUSY; store errors. */
int gh_account_reset_continue(gh_account_t *a, gh_account_reset_t *st) GH_WUR;

/* A security notice to the user's verified address (none: nothing, 0). For the second-factor
 * events: GH_MAIL_FACTOR_ADDED, GH_MAIL_FACTOR_REMOVED, GH_MAIL_RECOVERY_CODE_USED; and
 * GH_MAIL_PASSWORD_CHANGED (the password workflows call it). Never fails the caller's workflow:
 * a failure is logged and returned. */
int gh_account_notify(gh_account_t *a, uint64_t user_id, gh_mail_kind_t kind);

/* ---- the second-factor hook (answered by mfa.c from the user's factors) ---- */

/* *has: the user has a confirmed second factor. Default: never. */
int gh_account_user_has_factor(gh_account_t *a, uint64_t user_id, bool *has) GH_WUR;
/* 0 when code is a valid second-factor or recovery code of the user (spending a recovery
 * code); GH_EAUTH otherwise. Default: never valid. */
int gh_account_user_check_code(gh_account_t *a, uint64_t user_id, const char *code,
                               size_t len) GH_WUR;

#endif
