/*
 * factor_hook.c — the account service's question "has this user a second factor, and is this
 * code one of theirs?", asked by password reset (account/email.c).
 *
 * The one design decision: a seam of two functions with the safe default of "no factor", so the
 * reset workflow is written once and the second-factor feature (TOTP, recovery codes, WebAuthn)
 * answers here when it lands: replace these bodies with calls into its store; nothing in
 * email.c changes.
 */
#include "account/email.h"

int gh_account_user_has_factor(gh_account_t *a, uint64_t user_id, bool *has)
{
    (void)a;
    (void)user_id;
    *has = false;
    return 0;
}

int gh_account_user_check_code(gh_account_t *a, uint64_t user_id, const char *code, size_t len)
{
    (void)a;
    (void)user_id;
    (void)code;
    (void)len;
    return GH_EAUTH;
}
