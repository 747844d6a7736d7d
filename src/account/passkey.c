/*
 * passkey.c — passkeys in the account service: challenges, registration with proof, assertion
 * verification, passwordless sign-in (account/passkey.h).
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
#include "common/clock.h"
#include "common/log.h"

static uint64_t mono_ms(void)
{
    return (uint64_t)(gh_clock_mono_ns() / 1000000);
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
    GH_LOG(GH_LOG_INFO, "passkey registered", GH_LI("user_id", user->id),
           GH_LI("factor_id", st->factor.id), GH_LI("alg", cred.alg));
out:
    if (list)
        gh_mem_free(GH_MEM_USERS, list);
    sodium_memzero(&st->reg, sizeof st->reg);
    return rc;
}

/* ---- assertions ---- */

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
    rc = gh_session_create(a->sessions, st->user.id, st->token_hash, &st->client.client,
                           gh_clock_now_ms(), &st->session);
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
    if (gh_account_audit(a, &ev) != 0) {
        gh_account_login_abandon(a, st);
        return GH_ESTORE;
    }
    st->next = GH_ACCOUNT_NEXT_DONE;
    if (a->count_login)
        a->count_login(a->count_ctx, GH_LOGIN_SUCCESS);
    GH_LOG(GH_LOG_INFO, "passkey login", GH_LI("user_id", st->user.id),
           GH_LI("factor_id", factor.id));
    return 0;
}
