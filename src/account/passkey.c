/*
 * passkey.c — passkeys in the account service: registration with proof and passwordless
 * sign-in (account/passkey.h); the checks they share are in passkey_verify.c.
 *
 * Design decision: a challenge is spent before anything else is looked at, and every refusal
 * after that point is one code (GH_EPASSKEY) with a reason for the log and the message, so a
 * client learns nothing from the status about which check failed — while an operator reading
 * the log does. A signature counter that did not move forward is a possible cloned
 * authenticator: refused and logged at warn with the user and factor, never the challenge.
 */
#include "account/passkey.h"

#include <sodium.h>
#include <string.h>

#include "account/audit.h"
#include "account/email.h"
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

/* ---- registration ---- */

int gh_account_passkey_add_begin(gh_account_t *a, gh_account_passkey_add_t *st, uint64_t user_id,
                                 const char *current, size_t clen, const char *code, size_t codelen,
                                 const char *name, size_t nlen, const gh_account_client_t *client)
{
    st->why = NULL;
    memset(&st->proof, 0, sizeof st->proof);
    if (!a->webauthn || !a->webauthn_challenges) {
        st->why = "passkeys are not configured";
        return GH_EINVAL;
    }
    if (nlen == 0 || nlen > GH_FACTOR_NAME_MAX || memchr(name, 0, nlen)) {
        st->why = "\"name\" must be 1 to 64 bytes";
        return GH_EINVAL;
    }
    memcpy(st->name, name, nlen);
    st->name[nlen] = 0;
    st->client = *client;
    uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN];
    gh_account_passkey_subject(user_id, subject);
    int rc = gh_webauthn_challenge_take(a->webauthn_challenges, GH_WEBAUTHN_REGISTER, subject,
                                        mono_ms(), st->reg.challenge);
    if (rc != 0) {
        st->why = challenge_why(rc);
        return GH_EPASSKEY;
    }
    rc = gh_account_proof_begin(a, &st->proof, user_id, current, clen, code, codelen);
    if (rc == GH_EINVAL)
        st->why = "\"current_password\" (or a second-factor \"code\") is required";
    return rc;
}

int gh_account_passkey_add_continue(gh_account_t *a, gh_account_passkey_add_t *st)
{
    int rc;
    gh_factor_t *list = NULL;
    gh_webauthn_credential_t cred;
    gh_user_t *user = &st->proof.user;
    rc = gh_account_proof_continue(a, &st->proof);
    if (rc != 0)
        return rc;
    rc = gh_webauthn_check_registration(a->webauthn, st->reg.challenge, &st->reg, &cred, &st->why);
    if (rc == GH_EAUTH)
        rc = GH_EPASSKEY;
    if (rc != 0) {
        GH_LOG(GH_LOG_INFO, "passkey registration refused", GH_LI("user_id", user->id),
               GH_LS("reason", st->why ? st->why : ""));
        goto out;
    }
    /* The per-user bound on factors (the store keeps what it is given). */
    list = gh_mem_calloc(GH_MEM_USERS, GH_FACTORS_MAX, sizeof *list);
    if (!list) {
        rc = GH_ENOMEM;
        goto out;
    }
    size_t n = 0;
    rc = gh_user_factor_list(a->users, user->id, list, GH_FACTORS_MAX, &n);
    if (rc != 0)
        goto out;
    if (n >= GH_FACTORS_MAX) {
        st->why = "this account has the most factors it may have";
        rc = GH_ELIMIT;
        goto out;
    }
    memset(&st->factor, 0, sizeof st->factor);
    st->factor.user_id = user->id;
    st->factor.type = GH_FACTOR_WEBAUTHN;
    memcpy(st->factor.name, st->name, sizeof st->factor.name);
    st->factor.created_at_ms = gh_clock_now_ms();
    st->factor.confirmed = true;
    st->factor.counter = cred.sign_count;
    memcpy(st->factor.secret, cred.cose_key, cred.cose_key_len);
    st->factor.secret_len = cred.cose_key_len;
    memcpy(st->factor.credential, cred.id, cred.id_len);
    st->factor.credential_len = cred.id_len;
    rc = gh_user_factor_add(a->users, &st->factor);
    if (rc == GH_EEXISTS)
        st->why = "this passkey is registered already";
    if (rc != 0)
        goto out;
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_FACTOR_ADDED, GH_AUDIT_SUCCESS, user->id, &st->client);
    gh_audit_event_detail(&ev, "type=webauthn factor=%llu alg=%d",
                          (unsigned long long)st->factor.id, cred.alg);
    rc = gh_account_audit(a, &ev);
    if (rc != 0) { /* not answered as a success before its event is stored */
        GH_IGNORE(gh_user_factor_del(a->users, user->id, st->factor.id));
        goto out;
    }
    GH_IGNORE(gh_account_notify(a, user->id, GH_MAIL_FACTOR_ADDED));
    GH_LOG(GH_LOG_INFO, "passkey registered", GH_LI("user_id", user->id),
           GH_LI("factor_id", st->factor.id), GH_LI("alg", cred.alg));
out:
    if (list)
        gh_mem_free(GH_MEM_USERS, list);
    sodium_memzero(&st->reg, sizeof st->reg);
    return rc;
}

/* ---- assertions ---- */

int gh_account_passkey_login(gh_account_t *a, gh_account_login_t *st,
                             const gh_webauthn_assertion_t *as, const gh_account_client_t *client,
                             const char **why)
{
    static const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    memset(st, 0, sizeof *st);
    st->client = *client;
    int64_t now = (int64_t)mono_ms(), retry = 0;
    if (a->ratelimit && gh_ratelimit_ip_take(a->ratelimit, &client->ip, now, &retry) != 0) {
        st->retry_ms = retry;
        if (a->count_login)
            a->count_login(a->count_ctx, GH_LOGIN_RATE_LIMITED);
        return GH_ELIMIT;
    }
    /* gh_factor_t is about 2 KiB: on the caller's stack for this call only. */
    gh_factor_t factor;
    int rc = gh_account_passkey_verify(a, GH_WEBAUTHN_PASSWORDLESS, NULL, 0, as, &factor, why);
    if (rc == 0)
        rc = gh_user_get_by_id(a->users, factor.user_id, &st->user);
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    if (rc == GH_ENOTFOUND) {
        *why = "the passkey's user is gone";
        rc = GH_EPASSKEY;
    }
    if (rc != 0) {
        if (rc == GH_EPASSKEY) {
            GH_LOG(GH_LOG_INFO, "login failed", GH_LS("reason", "invalid_passkey"),
                   GH_LS("detail", *why ? *why : ""));
            gh_audit_event_t ev;
            gh_audit_event_init(&ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE, 0, client);
            gh_audit_event_detail(&ev, "method=passkey reason=invalid_passkey");
            gh_account_audit_queued(a, &ev);
        }
        if (a->count_login)
            a->count_login(a->count_ctx,
                           rc == GH_EPASSKEY ? GH_LOGIN_FAILURE : GH_LOGIN_OVERLOADED);
        return rc; /* the attempt stays spent on the address's budget */
    }
    if (a->ratelimit)
        gh_ratelimit_ip_refund(a->ratelimit, &client->ip, now);
    st->user_found = true;
    gh_token_new(st->token, st->token_hash);
    /* A passkey alone: a hardware key with user verification, no password. */
    rc = gh_session_create_amr(a->sessions, st->user.id, st->token_hash, &st->client.client,
                               GH_AMR_HWK, gh_clock_now_ms(), &st->session);
    if (rc != 0) {
        sodium_memzero(st->token, sizeof st->token);
        if (a->count_login)
            a->count_login(a->count_ctx, rc == GH_EBUSY || rc == GH_ENOMEM ? GH_LOGIN_OVERLOADED
                                                                           : GH_LOGIN_FAILURE);
        return rc;
    }
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_LOGIN_SUCCEEDED, GH_AUDIT_SUCCESS, st->user.id, client);
    gh_audit_event_session(&ev, st->session.id);
    gh_audit_event_detail(&ev, "method=passkey factor=%llu", (unsigned long long)factor.id);
    if (gh_account_audit(a, &ev) != 0) { /* not a success before its event is stored */
        GH_IGNORE(gh_session_end(a->sessions, st->token_hash, GH_END_REVOKED));
        sodium_memzero(st->token, sizeof st->token);
        return GH_ESTORE;
    }
    st->next = GH_ACCOUNT_NEXT_DONE;
    if (a->count_login)
        a->count_login(a->count_ctx, GH_LOGIN_SUCCESS);
    GH_LOG(GH_LOG_INFO, "passkey login", GH_LI("user_id", st->user.id),
           GH_LI("factor_id", factor.id));
    return 0;
}
