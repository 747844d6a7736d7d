/*
 * passkey_verify.c — the passkey checks every ceremony shares (account/passkey.h): challenges,
 * user handles, and verifying an assertion against a stored passkey (its owner, the signature,
 * the counter) — used by passwordless sign-in (passkey.c) and the second step (mfa_webauthn.c).
 *
 * The one design decision: this file calls no other workflow file, so the workflows that use it
 * (login → mfa → mfa_webauthn, and passkey.c, which takes its proof from mfa.c) never form a
 * loop (scripts/check-layers.py). A signature counter that did not move forward is a possible
 * cloned authenticator: refused and logged at warn with the user and factor, never the challenge.
 */
#include <sodium.h>
#include <string.h>

#include "account/passkey.h"
#include "common/clock.h"
#include "common/log.h"

static uint64_t mono_ms(void)
{
    return (uint64_t)(gh_clock_mono_ns() / 1000000);
}

static const char *challenge_why(int rc)
{
    return rc == GH_EEXPIRED ? "the challenge has expired"
           : rc == GH_EAUTH  ? "the challenge was issued for another ceremony"
                             : "the challenge is unknown or already used";
}

void gh_account_passkey_user_handle(uint64_t user_id, uint8_t out[GH_PASSKEY_USER_HANDLE_LEN])
{
    for (int i = 0; i < GH_PASSKEY_USER_HANDLE_LEN; i++)
        out[i] = (uint8_t)(user_id >> (56 - 8 * i));
}

void gh_account_passkey_subject(uint64_t user_id, uint8_t out[GH_WEBAUTHN_SUBJECT_LEN])
{
    memset(out, 0, GH_WEBAUTHN_SUBJECT_LEN);
    gh_account_passkey_user_handle(user_id, out);
}

int gh_account_passkey_challenge(gh_account_t *a, gh_webauthn_ceremony_t kind,
                                 const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN],
                                 uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN])
{
    if (!a->webauthn || !a->webauthn_challenges)
        return GH_EINVAL;
    return gh_webauthn_challenge_issue(a->webauthn_challenges, kind, subject, mono_ms(), challenge);
}

/* Everything after the challenge: the passkey (of user_id, or of anyone when 0), the user handle,
 * the assertion against `challenge`, the counter. */
static int verify_factor(gh_account_t *a, const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                         uint64_t user_id, bool require_uv, const gh_webauthn_assertion_t *as,
                         gh_factor_t *factor, const char **why)
{
    int rc = gh_user_factor_by_credential(a->users, as->id, as->id_len, factor);
    if (rc == GH_ENOTFOUND || (rc == 0 && (factor->type != GH_FACTOR_WEBAUTHN ||
                                           (user_id != 0 && factor->user_id != user_id)))) {
        *why = "no such passkey is registered";
        return GH_EPASSKEY;
    }
    if (rc != 0)
        return rc;
    if (user_id == 0 && as->user_handle_len != 0) {
        uint8_t handle[GH_PASSKEY_USER_HANDLE_LEN];
        gh_account_passkey_user_handle(factor->user_id, handle);
        if (as->user_handle_len != sizeof handle ||
            memcmp(as->user_handle, handle, sizeof handle) != 0) {
            *why = "the userHandle does not name the passkey's user";
            return GH_EPASSKEY;
        }
    }
    gh_webauthn_rp_t rp = *a->webauthn;
    rp.require_uv = rp.require_uv || require_uv;
    uint32_t count = 0;
    uint32_t stored = factor->counter > UINT32_MAX ? UINT32_MAX : (uint32_t)factor->counter;
    rc = gh_webauthn_verify_assertion(&rp, challenge, as, factor->secret, factor->secret_len,
                                      stored, &count, why);
    if (rc == 0) {
        rc = gh_user_factor_use(a->users, factor->user_id, factor->id, count, gh_clock_now_ms());
        if (rc == GH_ERANGE) { /* another use moved the counter past this one meanwhile */
            *why = "signature counter went backwards";
            rc = GH_EAUTH;
        } else if (rc != 0) {
            return rc;
        }
    }
    if (rc != 0) {
        if (*why && strcmp(*why, "signature counter went backwards") == 0)
            GH_LOG(GH_LOG_WARN, "passkey counter went backwards: possible cloned authenticator",
                   GH_LI("user_id", factor->user_id), GH_LI("factor_id", factor->id),
                   GH_LI("stored_counter", stored));
        return rc == GH_EINVAL || rc == GH_EAUTH ? GH_EPASSKEY : rc;
    }
    factor->counter = count;
    return 0;
}

int gh_account_passkey_verify(gh_account_t *a, gh_webauthn_ceremony_t kind,
                              const uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], uint64_t user_id,
                              const gh_webauthn_assertion_t *as, gh_factor_t *factor,
                              const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!a->webauthn || !a->webauthn_challenges) {
        *why = "passkeys are not configured";
        return GH_EINVAL;
    }
    int rc =
        gh_webauthn_challenge_take(a->webauthn_challenges, kind, subject, mono_ms(), as->challenge);
    if (rc != 0) {
        *why = challenge_why(rc);
        return GH_EPASSKEY;
    }
    return verify_factor(a, as->challenge, user_id, kind == GH_WEBAUTHN_PASSWORDLESS, as, factor,
                         why);
}

int gh_account_passkey_verify_with(gh_account_t *a,
                                   const uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   uint64_t user_id, const gh_webauthn_assertion_t *as,
                                   gh_factor_t *factor, const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!a->webauthn) {
        *why = "passkeys are not configured";
        return GH_EINVAL;
    }
    return verify_factor(a, challenge, user_id, false, as, factor, why);
}
