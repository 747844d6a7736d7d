/*
 * login.c — logging in, and the login and registration throttles (ratelimit.h) it and
 * registration's admission share.
 *
 * Design decision: an attempt is charged BEFORE any work is done for it (the user lookup and the
 * argon2 hash are what an attacker wants us to spend) and settled exactly once when its outcome is
 * known: a successful login gives its attempt back, so only failures and registrations use up a
 * client's budget, while parallel guesses cannot all pass a check that only failures would update.
 * Unknown users and invalid names are verified against the pool's dummy hash, so the outcome,
 * the answer and the time taken match a wrong password.
 */
#include "account/account.h"
#include "account/audit.h"

#include <sodium.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

/* Throttle time is monotonic: a wall clock set back must not lock anyone out for the difference. */
static int64_t now_ms(void)
{
    return gh_clock_mono_ns() / 1000000;
}

static void count(gh_account_t *a, gh_login_result_t result)
{
    if (a->count_login)
        a->count_login(a->count_ctx, result);
}

static void log_limited(const gh_account_client_t *c, const char *kind, int64_t retry_ms)
{
    char addr[GH_IP_STR];
    gh_ip_format(&c->ip, addr);
    GH_LOG(GH_LOG_INFO, "rate limited", GH_LS("kind", kind), GH_LS("route", c->via ? c->via : ""),
           GH_LS("client", addr), GH_LI("retry_after_ms", retry_ms));
}

int gh_account_register_admit(gh_account_t *a, const gh_account_client_t *c, int64_t *retry_ms)
{
    *retry_ms = 0;
    if (!a->registration_open)
        return GH_ECLOSED;
    if (!a->ratelimit)
        return 0;
    if (gh_ratelimit_ip_take(a->ratelimit, &c->ip, now_ms(), retry_ms) == 0)
        return 0;
    log_limited(c, "ip", *retry_ms);
    return GH_ELIMIT;
}

/* A login's event, from the login's own client (what the throttles saw). */
static void login_event(gh_account_t *a, gh_audit_event_t *ev, gh_audit_type_t type,
                        gh_audit_outcome_t outcome, uint64_t user_id, const gh_account_client_t *c)
{
    gh_audit_event_init(ev, type, outcome, user_id, c);
    if (a->actor[0])
        gh_audit_event_actor(ev, a->actor);
}

/* A refused login's event: queued (an attacker makes these as fast as they like). */
static void audit_throttled(gh_account_t *a, const gh_account_client_t *c, const char *kind,
                            int64_t retry_ms)
{
    gh_audit_event_t ev;
    login_event(a, &ev, GH_AUDIT_LOGIN_THROTTLED, GH_AUDIT_FAILURE, 0, c);
    gh_audit_event_detail(&ev, "limit=%s retry_after_ms=%lld", kind, (long long)retry_ms);
    gh_account_audit_queued(a, &ev);
}

/* Takes the login's claim on both throttles, or nothing (GH_ELIMIT with st->retry_ms). */
static int throttle_take(gh_account_t *a, gh_account_login_t *st, const char *username, size_t len)
{
    if (!a->ratelimit)
        return 0;
    int64_t now = now_ms(), retry = 0;
    if (gh_ratelimit_ip_take(a->ratelimit, &st->client.ip, now, &retry) != 0) {
        log_limited(&st->client, "ip", retry);
        audit_throttled(a, &st->client, "ip", retry);
        st->retry_ms = retry;
        return GH_ELIMIT;
    }
    st->account_key = gh_ratelimit_account_key(a->ratelimit, username, len);
    if (gh_ratelimit_account_begin(a->ratelimit, st->account_key, now, &retry) != 0) {
        /* A refusal costs us nothing, so it costs the client's budget nothing either: several
         * people behind one address must not lose their logins to one locked account. */
        gh_ratelimit_ip_refund(a->ratelimit, &st->client.ip, now);
        log_limited(&st->client, "account", retry);
        audit_throttled(a, &st->client, "account", retry);
        st->retry_ms = retry;
        return GH_ELIMIT;
    }
    st->ip_taken = true;
    st->account_begun = true;
    return 0;
}

/* Settles the claim once the outcome is known (idempotent): success gives the attempt back and
 * clears the account's failures; failure keeps it spent and counts against the account, logging
 * a lockout when back-off starts; overloaded gives everything back. */
static void throttle_settle(gh_account_t *a, gh_account_login_t *st, gh_login_result_t result)
{
    int64_t now = now_ms();
    bool failed = result == GH_LOGIN_FAILURE;
    if (st->ip_taken && !failed)
        gh_ratelimit_ip_refund(a->ratelimit, &st->client.ip, now);
    st->ip_taken = false;
    if (!st->account_begun)
        return;
    st->account_begun = false;
    gh_ratelimit_verdict_t v;
    gh_ratelimit_account_end(a->ratelimit, st->account_key,
                             result == GH_LOGIN_SUCCESS ? GH_RATELIMIT_SUCCESS
                             : failed                   ? GH_RATELIMIT_FAILURE
                                                        : GH_RATELIMIT_ABANDONED,
                             now, &v);
    if (!v.lockout)
        return;
    /* The account is named by a salted tag, not by what was typed: a username field often
     * holds a password. */
    uint8_t h[4];
    char tag[9], addr[GH_IP_STR];
    crypto_generichash(h, sizeof h, (const uint8_t *)&st->account_key, sizeof st->account_key,
                       a->log_salt, a->log_salt ? 16 : 0);
    sodium_bin2hex(tag, sizeof tag, h, sizeof h);
    gh_ip_format(&st->client.ip, addr);
    if (st->user_found)
        GH_LOG(GH_LOG_WARN, "account locked", GH_LS("account", tag), GH_LI("user_id", st->user.id),
               GH_LI("failures", v.failures), GH_LI("delay_ms", v.delay_ms), GH_LS("client", addr));
    else
        GH_LOG(GH_LOG_WARN, "account locked", GH_LS("account", tag), GH_LB("known_user", false),
               GH_LI("failures", v.failures), GH_LI("delay_ms", v.delay_ms), GH_LS("client", addr));
}

int gh_account_login_begin(gh_account_t *a, gh_account_login_t *st, const char *username,
                           size_t ulen, const char *password, size_t plen,
                           const gh_account_client_t *client)
{
    memset(st, 0, sizeof *st);
    st->client = *client;
    int rc = throttle_take(a, st, username, ulen);
    if (rc != 0) {
        count(a, GH_LOGIN_RATE_LIMITED);
        return rc;
    }
    if (gh_auth_username_valid(username, ulen) && plen <= GH_PASSWORD_MAX) {
        rc = gh_user_get_by_name(a->users, username, &st->user);
        if (rc == 0) {
            st->user_found = true;
        } else if (rc != GH_ENOTFOUND) {
            throttle_settle(a, st, GH_LOGIN_OVERLOADED);
            return rc;
        }
    }
    st->job.kind = GH_ACCOUNT_JOB_VERIFY;
    st->job.stored_hash = st->user_found ? st->user.password_hash : NULL;
    st->job.password = password;
    /* Over the maximum: a verify against the dummy hash all the same; never a match. */
    st->job.password_len = plen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : plen;
    return 0;
}

void gh_account_login_unqueued(gh_account_t *a, gh_account_login_t *st)
{
    throttle_settle(a, st, GH_LOGIN_OVERLOADED);
}

int gh_account_login_continue(gh_account_t *a, gh_account_login_t *st)
{
    int v = st->job.verdict.result;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    bool overloaded = v == GH_EBUSY || v == GH_ENOMEM;
    /* A disabled user's login fails exactly as a wrong password does (same verify, same
     * answer, same throttle accounting); only the trail says why. */
    bool disabled = st->user_found && st->user.disabled;
    bool failed = !overloaded && (v != 0 || !st->user_found || disabled);
    if (!overloaded && !failed && a->pending) {
        /* The right password of a user with a second factor: a pending login, not a session.
         * Its throttle claim is settled as neither success nor failure, so the account's
         * failures (wrong codes among them, mfa.c) are not cleared by knowing the password. */
        int rc = gh_account_mfa_gate(a, st);
        if (rc != 0 || st->next == GH_ACCOUNT_NEXT_MFA) {
            /* an outdated hash is kept when the login completes with a one-step login */
            sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
            throttle_settle(a, st, GH_LOGIN_OVERLOADED);
            if (rc != 0)
                count(a,
                      rc == GH_EBUSY || rc == GH_ENOMEM ? GH_LOGIN_OVERLOADED : GH_LOGIN_FAILURE);
            return rc;
        }
    }
    throttle_settle(a, st,
                    overloaded ? GH_LOGIN_OVERLOADED
                    : failed   ? GH_LOGIN_FAILURE
                               : GH_LOGIN_SUCCESS);
    if (overloaded) {
        count(a, GH_LOGIN_OVERLOADED);
        return v;
    }
    if (failed) {
        count(a, GH_LOGIN_FAILURE);
        GH_LOG(GH_LOG_INFO, "login failed", GH_LS("reason", "invalid_credentials"));
        gh_audit_event_t ev;
        login_event(a, &ev, GH_AUDIT_LOGIN_FAILED, GH_AUDIT_FAILURE,
                    st->user_found ? st->user.id : 0, &st->client);
        if (!a->actor[0])
            gh_audit_event_actor(&ev, "anonymous"); /* whoever typed it: not the user, yet */
        gh_audit_event_detail(&ev, "reason=%s",
                              !st->user_found ? "unknown_user"
                              : disabled      ? "disabled"
                                              : "invalid_credentials");
        gh_account_audit_queued(a, &ev);
        return GH_EAUTH;
    }
    if (st->job.verdict.new_hash[0]) {
        /* The stored hash had an outdated cost: keep the new one (best effort). */
        if (gh_user_set_password(a->users, st->user.id, st->job.verdict.new_hash) == 0)
            GH_LOG(GH_LOG_INFO, "password rehashed", GH_LI("user_id", st->user.id));
        sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    }
    gh_token_new(st->token, st->token_hash);
    int rc = gh_session_create_amr(a->sessions, st->user.id, st->token_hash, &st->client.client,
                                   GH_AMR_PWD, gh_clock_now_ms(), &st->session);
    if (rc != 0) {
        sodium_memzero(st->token, sizeof st->token);
        count(a, rc == GH_EBUSY || rc == GH_ENOMEM ? GH_LOGIN_OVERLOADED : GH_LOGIN_FAILURE);
        return rc;
    }
    /* Stored before the token is handed out: no session exists that the trail does not know. */
    gh_audit_event_t ev;
    login_event(a, &ev, GH_AUDIT_LOGIN_SUCCEEDED, GH_AUDIT_SUCCESS, st->user.id, &st->client);
    gh_audit_event_session(&ev, st->session.id);
    if ((rc = gh_account_audit(a, &ev)) != 0) {
        GH_IGNORE(gh_session_end(a->sessions, st->token_hash, GH_END_REVOKED));
        sodium_memzero(st->token, sizeof st->token);
        count(a, GH_LOGIN_OVERLOADED);
        return rc;
    }
    st->next = GH_ACCOUNT_NEXT_DONE;
    count(a, GH_LOGIN_SUCCESS);
    return 0;
}

void gh_account_login_abandon(gh_account_t *a, gh_account_login_t *st)
{
    GH_IGNORE(gh_session_end(a->sessions, st->token_hash, GH_END_REVOKED));
    sodium_memzero(st->token, sizeof st->token);
}
