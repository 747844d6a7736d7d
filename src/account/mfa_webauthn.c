/*
 * mfa_webauthn.c — a passkey as the second step of a login (account.h, gh_account_mfa_webauthn)
 * and the request options of that step (passkey.h, gh_account_passkey_mfa_options).
 *
 * The one design decision: the challenge of this ceremony lives on the pending login itself
 * (gh_pending_set_challenge), not in the node's challenge table, so it shares the pending
 * login's store, lifetime and failure count: a login started on one node finishes on another,
 * a new options call replaces the challenge, and every refused assertion is one of the five
 * wrong steps a pending login allows (GH_ECODE, 401 invalid_code) — whatever was wrong with it.
 */
#include <sodium.h>
#include <string.h>

#include "account/passkey.h"
#include "common/clock.h"
#include "common/log.h"

int gh_account_mfa_webauthn(gh_account_t *a, const gh_pending_t *p,
                            const gh_account_mfa_proof_t *proof, uint64_t *factor_id)
{
    const char *why = NULL;
    int rc;
    json_t *cred = NULL;
    gh_webauthn_assertion_t *as = NULL;
    gh_factor_t *factor = NULL;
    if (!a->webauthn)
        return GH_EINVAL;
    if (p->challenge_len != GH_WEBAUTHN_CHALLENGE_LEN) {
        why = "no challenge was issued for this login (POST /v1/sessions/mfa/options)";
        rc = GH_ECODE;
        goto out;
    }
    if (!proof->credential || proof->credential_len > GH_WEBAUTHN_JSON_MAX) {
        why = "the credential is missing or too large";
        rc = GH_ECODE;
        goto out;
    }
    json_error_t err;
    cred = json_loadb(proof->credential, proof->credential_len, 0, &err);
    as = gh_mem_alloc(GH_MEM_USERS, sizeof *as);
    factor = gh_mem_alloc(GH_MEM_USERS, sizeof *factor);
    if (!as || !factor) {
        rc = GH_ENOMEM;
        goto out;
    }
    rc = gh_webauthn_parse_assertion(cred, as, &why);
    if (rc == 0)
        rc = gh_account_passkey_verify_with(a, p->challenge, p->user_id, as, factor, &why);
    if (rc == 0)
        *factor_id = factor->id;
    else if (rc == GH_EINVAL || rc == GH_ETOOBIG || rc == GH_EAUTH || rc == GH_EPASSKEY)
        rc = GH_ECODE;
out:
    /* mfa.succeeded / mfa.failed (method=webauthn) are emitted by gh_account_mfa_finish, which
     * knows the outcome of the whole step; here the log says why a passkey was refused. */
    if (rc == GH_ECODE)
        GH_LOG(GH_LOG_INFO, "passkey step refused", GH_LI("user_id", p->user_id),
               GH_LS("reason", why ? why : ""));
    json_decref(cred);
    if (as)
        gh_mem_free_secret(GH_MEM_USERS, as);
    if (factor)
        gh_mem_free_secret(GH_MEM_USERS, factor);
    return rc;
}

int gh_account_passkey_mfa_options(gh_account_t *a, const char *pending, size_t plen,
                                   uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN],
                                   gh_account_passkey_id_t *ids, size_t *n)
{
    uint8_t key[GH_TOKEN_HASH_LEN];
    gh_pending_t p;
    int64_t now = gh_clock_now_ms();
    *n = 0;
    if (!a->webauthn)
        return GH_EINVAL;
    if (!a->pending || gh_token_hash(pending, plen, key) != 0 ||
        gh_pending_get(a->pending, key, now, &p) != 0 || !(p.methods & GH_PENDING_WEBAUTHN))
        return GH_EPENDING;
    gh_factor_t *f = gh_mem_calloc(GH_MEM_USERS, GH_FACTORS_MAX, sizeof *f);
    if (!f)
        return GH_ENOMEM;
    size_t nf = 0;
    int rc = gh_user_factor_list(a->users, p.user_id, f, GH_FACTORS_MAX, &nf);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < nf; i++) {
        if (f[i].type != GH_FACTOR_WEBAUTHN || !f[i].confirmed)
            continue;
        memcpy(ids[*n].id, f[i].credential, f[i].credential_len);
        ids[*n].len = f[i].credential_len;
        (*n)++;
    }
    randombytes_buf(challenge, GH_WEBAUTHN_CHALLENGE_LEN);
    rc = gh_pending_set_challenge(a->pending, key, challenge, GH_WEBAUTHN_CHALLENGE_LEN, now);
    if (rc == GH_ENOTFOUND)
        rc = GH_EPENDING;
out:
    gh_mem_free_secret(GH_MEM_USERS, f);
    return rc;
}
