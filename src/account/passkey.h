/*
 * passkey.h — the account service's passkey workflows (WebAuthn, issue #18): issuing a
 * ceremony's challenge, registering a passkey as a factor of type webauthn (with proof: the
 * current password), verifying an assertion against a stored passkey (the second step of a
 * login, and passwordless sign-in), and signing in with a passkey alone.
 *
 * The one design decision: the HTTP side only decodes the browser's JSON into the fixed-size
 * structs of auth/webauthn.h; every check that decides (the challenge's ceremony and subject,
 * the signature, the counter, the user) is here, so the JSON API and the pages cannot differ.
 * A challenge is spent by the first attempt that names it, whatever its outcome.
 *
 * userHandle: a passkey's user handle is the user id as 8 bytes, big-endian.
 */
#ifndef GH_ACCOUNT_PASSKEY_H
#define GH_ACCOUNT_PASSKEY_H

#include "account/account.h"
#include "auth/webauthn.h"

#define GH_PASSKEY_USER_HANDLE_LEN 8

/* The user handle of a user id (8 bytes, big-endian). */
void gh_account_passkey_user_handle(uint64_t user_id, uint8_t out[GH_PASSKEY_USER_HANDLE_LEN]);

/* The subject a challenge is bound to for a user id (registration) — all zero but the id. */
void gh_account_passkey_subject(uint64_t user_id, uint8_t out[GH_WEBAUTHN_SUBJECT_LEN]);

/* Issues a challenge for a ceremony (subject NULL: none). GH_EINVAL when passkeys are not
 * configured (a->webauthn NULL). */
int gh_account_passkey_challenge(gh_account_t *a, gh_webauthn_ceremony_t kind,
                                 const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN],
                                 uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN]) GH_WUR;

/* ---- registering a passkey (with proof) ---- */
typedef struct {
    gh_account_proof_t proof;       /* the current password or a second-factor code */
    gh_webauthn_registration_t reg; /* the caller decodes the credential into it before begin */
    char name[GH_FACTOR_NAME_MAX + 1];
    gh_account_client_t client;
    gh_factor_t factor; /* result */
    const char *why;    /* on refusal: what failed, for the message */
} gh_account_passkey_add_t;

/* begin: the name (1..64 bytes), the challenge (issued to this user for registration, unexpired;
 * spent now), then the proof (gh_account_proof_begin: the current password, or a second-factor
 * code; password / code must live until continue): st->proof.job is then a verify job to submit,
 * or NONE (a code, decided: call continue at once). GH_EINVAL (name, no proof, or no passkeys
 * configured), GH_EPASSKEY (the challenge: st->why), GH_EAUTH (the user is gone), store errors. */
int gh_account_passkey_add_begin(gh_account_t *a, gh_account_passkey_add_t *st, uint64_t user_id,
                                 const char *current, size_t clen, const char *code, size_t codelen,
                                 const char *name, size_t nlen,
                                 const gh_account_client_t *client) GH_WUR;
/* continue: GH_ECURRENT (wrong password), GH_ECODE (wrong code), GH_EBUSY/GH_ENOMEM, GH_EINVAL /
 * GH_ETOOBIG / GH_EPASSKEY (the credential was refused: st->why), GH_EEXISTS (that passkey is
 * registered already), GH_ELIMIT (the user has GH_FACTORS_MAX factors), store errors; 0: st->factor
 * stored and factor.added emitted. */
int gh_account_passkey_add_continue(gh_account_t *a, gh_account_passkey_add_t *st) GH_WUR;

/* ---- verifying an assertion ---- */
/* Spends the assertion's challenge (issued for `kind` and `subject`), finds the passkey by its
 * credential id — of user_id when user_id is non-zero, of anyone otherwise (then a userHandle,
 * when given, must name the passkey's user) — verifies it (user verification required for
 * passwordless), and records its use (the counter moves forward, or the assertion is refused and
 * a possible clone logged). 0: *factor is the passkey used (its user in factor->user_id).
 * GH_EPASSKEY (*why: challenge, unknown passkey, signature, counter…), GH_EINVAL (not
 * configured), store errors. */
int gh_account_passkey_verify(gh_account_t *a, gh_webauthn_ceremony_t kind,
                              const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t user_id,
                              const gh_webauthn_assertion_t *as, gh_factor_t *factor,
                              const char **why) GH_WUR;

/* The same after the challenge, for a ceremony whose challenge the caller keeps itself (the
 * second step: the pending login holds it): `challenge` is the one issued, user_id the user. */
int gh_account_passkey_verify_with(gh_account_t *a,
                                   const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   uint64_t user_id, const gh_webauthn_assertion_t *as,
                                   gh_factor_t *factor, const char **why) GH_WUR;

/* ---- the second step of a login ---- */
/* Request options for a pending login: issues a challenge and keeps it on the pending login
 * (so a login started on one node finishes on another with a shared pending store), and lists
 * the user's passkeys (credential ids into ids[], *n of them, at most GH_FACTORS_MAX).
 * GH_EPENDING (unknown or expired pending login, or it offers no passkey), GH_EINVAL (passkeys
 * not configured), store errors. */
typedef struct {
    uint8_t id[GH_FACTOR_CREDENTIAL_MAX];
    size_t len;
} gh_account_passkey_id_t;
int gh_account_passkey_mfa_options(gh_account_t *a, const char *pending, size_t plen,
                                   uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   gh_account_passkey_id_t *ids, size_t *n) GH_WUR;

/* ---- signing in with a passkey alone ---- */
/* The IP throttle, gh_account_passkey_verify (passwordless, user verification required), the
 * user, a new session — the result in st as a password login leaves it (st->token, st->session,
 * st->user), counted in gatehouse_logins_total. GH_ELIMIT (st->retry_ms), GH_EPASSKEY (*why),
 * session store errors. A reply that fails must gh_account_login_abandon(a, st). */
int gh_account_passkey_login(gh_account_t *a, gh_account_login_t *st,
                             const gh_webauthn_assertion_t *as, const gh_account_client_t *client,
                             const char **why) GH_WUR;

#endif
