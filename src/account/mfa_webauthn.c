/*
 * mfa_webauthn.c — the extension point for passkeys as a second step (account.h,
 * gh_account_mfa_webauthn). The passkey work replaces this file: it verifies the assertion in
 * proof->credential against the user's WebAuthn factors (gh_user_factor_by_credential) and the
 * challenge the pending login holds (p->challenge, set through gh_pending_set_challenge by the
 * /v1/sessions/mfa/options step), records the use with gh_user_factor_use (the signature
 * counter: GH_ERANGE is a cloned authenticator) and answers 0 with *factor_id, or GH_ECODE.
 *
 * The one design decision: until then the method is refused as unsupported (400), never
 * accepted, and a pending login never offers it (no WebAuthn factor can be enrolled yet).
 */
#include "account/account.h"

int gh_account_mfa_webauthn(gh_account_t *a, const gh_pending_t *p,
                            const gh_account_mfa_proof_t *proof, uint64_t *factor_id)
{
    (void)a, (void)p, (void)proof, (void)factor_id;
    return GH_EINVAL;
}
