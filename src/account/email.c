/*
 * email.c — the email workflows of the account service (account/email.h): addresses and their
 * verification, password reset by a link, security notices. Every workflow writes its mail into
 * the outbox (store/mail.h) in the same transaction as the token it carries; outbox.c sends.
 *
 * The one design decision: a reset request does the same work whether or not an account
 * matches — the lookup, a fresh 256-bit token, its hash, a rendered message and one write
 * transaction (for no account the token is stored for user 0, which no confirm can spend, and
 * nothing is queued) — so its answer and its timing say nothing about which addresses exist.
 * The throttle that would differ (per account) never answers 429: over its budget, the request
 * is answered 202 like any other and simply mails nothing.
 */
#include "account/email_internal.h"
#include "account/audit.h"
#include "account/oidc.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "auth/password.h"
#include "common/base64url.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define NOBODY "nobody@gatehouse.invalid" /* the To of the message rendered for no account */

/* ---- throttles ---- */

enum { TH_IP = 1, TH_TARGET, TH_ACCOUNT };

/* Takes one from the key's budget; false when it is spent (*retry_ms the wait). */
static bool throttle_take(gh_account_email_t *e, int kind, const void *data, size_t n,
                          uint32_t budget, int64_t now, int64_t *retry_ms)
{
    uint8_t in[1 + 256];
    in[0] = (uint8_t)kind;
    if (n > sizeof in - 1)
        n = sizeof in - 1;
    memcpy(in + 1, data, n);
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, in, n + 1, e->key);
    uint64_t key;
    memcpy(&key, h, sizeof key);
    key |= 1; /* 0 marks a free slot */
    bool ok = true;
    pthread_mutex_lock(&e->throttle_lock);
    gh_email_slot_t *s = &e->slots[key % e->nslots];
    if (now - s->window_start_ms >= GH_EMAIL_THROTTLE_WINDOW_MS) {
        s->key = key;
        s->window_start_ms = now;
        s->count = 0;
    }
    if (s->count >= budget) {
        ok = false;
        if (retry_ms)
            *retry_ms = s->window_start_ms + GH_EMAIL_THROTTLE_WINDOW_MS - now;
    } else {
        s->count++;
    }
    pthread_mutex_unlock(&e->throttle_lock);
    return ok;
}

/* ---- tokens and mail ---- */

static void token_new(char tok[GH_EMAIL_LINK_TOKEN_LEN + 1], uint8_t hash[GH_MAILSTORE_HASH_LEN])
{
    uint8_t raw[32];
    randombytes_buf(raw, sizeof raw);
    gh_base64url_encode(raw, sizeof raw, tok);
    tok[GH_EMAIL_LINK_TOKEN_LEN] = '\0';
    crypto_hash_sha256(hash, (const uint8_t *)tok, GH_EMAIL_LINK_TOKEN_LEN);
    sodium_memzero(raw, sizeof raw);
}

/* The token's hash, when it is shaped like one of ours (43 base64url characters). */
static int token_hash(const char *tok, size_t len, uint8_t hash[GH_MAILSTORE_HASH_LEN])
{
    if (!tok || len != GH_EMAIL_LINK_TOKEN_LEN)
        return GH_ETOKEN;
    for (size_t i = 0; i < len; i++)
        if (gh_base64url_value((unsigned char)tok[i]) < 0)
            return GH_ETOKEN;
    crypto_hash_sha256(hash, (const uint8_t *)tok, len);
    return 0;
}

/* Makes a token, renders its message and writes both (one transaction). */
static int issue(gh_account_email_t *e, gh_mail_kind_t kind, gh_mail_token_purpose_t purpose,
                 uint64_t user_id, const char *username, const char *to, const char *path,
                 int64_t ttl_ms, bool queue)
{
    char tok[GH_EMAIL_LINK_TOKEN_LEN + 1];
    uint8_t hash[GH_MAILSTORE_HASH_LEN];
    token_new(tok, hash);
    char *msg = NULL;
    size_t len = 0;
    int rc = gh_email_render(e, kind, to, username, path, tok, NULL, &msg, &len);
    sodium_memzero(tok, sizeof tok);
    if (rc != 0)
        return rc;
    int64_t now = gh_clock_now_ms();
    rc = e->store->ops->issue(e->store, hash, user_id, purpose,
                              purpose == GH_TOKEN_RESET ? NULL : to, now + ttl_ms,
                              gh_mail_kind_name(kind), queue ? to : NULL, msg, len, now);
    gh_mem_free_secret(GH_MEM_MAIL, msg);
    if (rc == 0 && queue)
        gh_email_outbox_kick(e);
    return rc;
}

static int normalize(const char *email, size_t len, char out[GH_MAIL_ADDR_MAX + 1])
{
    return gh_mail_addr_normalize(email, len, out) == 0 ? 0 : GH_EEMAIL;
}

/* ---- addresses ---- */

int gh_account_email_check_new(gh_account_t *a, const char *email, size_t len)
{
    if (!a->email)
        return GH_ECLOSED;
    char norm[GH_MAIL_ADDR_MAX + 1];
    uint64_t other;
    if (normalize(email, len, norm) != 0)
        return GH_EEMAIL;
    int rc = a->email->store->ops->find_by_email(a->email->store, norm, &other);
    return rc == 0 ? GH_EEMAILTAKEN : rc == GH_ENOTFOUND ? 0 : rc;
}

int gh_account_email_attach(gh_account_t *a, const gh_user_t *user, const char *email, size_t len)
{
    gh_account_email_t *e = a->email;
    if (!e)
        return GH_ECLOSED;
    char norm[GH_MAIL_ADDR_MAX + 1];
    if (normalize(email, len, norm) != 0)
        return GH_EEMAIL;
    int rc = e->store->ops->set_email(e->store, user->id, norm, false);
    if (rc == GH_EEXISTS)
        return GH_EEMAILTAKEN;
    if (rc != 0)
        return rc;
    return issue(e, GH_MAIL_VERIFY, GH_TOKEN_VERIFY, user->id, user->username, norm,
                 "/verify?token=", GH_EMAIL_VERIFY_TTL_MS, true);
}

int gh_account_email_get(gh_account_t *a, uint64_t user_id, char email[GH_MAIL_ADDR_MAX + 1],
                         bool *verified)
{
    email[0] = '\0';
    *verified = false;
    if (!a->email)
        return 0;
    return a->email->store->ops->get_email(a->email->store, user_id, email, verified);
}

int gh_account_email_change_begin(gh_account_t *a, gh_account_email_change_t *st, uint64_t user_id,
                                  const char *current, size_t clen, const char *email, size_t elen)
{
    memset(st, 0, sizeof *st);
    if (!a->email)
        return GH_ECLOSED;
    int rc = gh_account_email_check_new(a, email, elen);
    if (rc != 0)
        return rc;
    GH_IGNORE(normalize(email, elen, st->email));
    rc = gh_user_get_by_id(a->users, user_id, &st->user);
    if (rc == GH_ENOTFOUND)
        return GH_EAUTH;
    if (rc != 0)
        return rc;
    st->job.kind = GH_ACCOUNT_JOB_VERIFY;
    st->job.stored_hash = st->user.password_hash;
    st->job.password = current;
    st->job.password_len = clen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : clen;
    return 0;
}

int gh_account_email_change_continue(gh_account_t *a, gh_account_email_change_t *st)
{
    gh_account_email_t *e = a->email;
    int v = st->job.verdict.result;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    if (v == GH_EBUSY || v == GH_ENOMEM)
        return v;
    if (v != 0)
        return GH_ECURRENT;
    char old[GH_MAIL_ADDR_MAX + 1];
    bool verified;
    int rc = e->store->ops->get_email(e->store, st->user.id, old, &verified);
    if (rc != 0)
        return rc == GH_ENOTFOUND ? GH_EAUTH : rc;
    if (!old[0]) {
        /* no address yet: set it, unverified, and mail a verification link */
        rc = gh_account_email_attach(a, &st->user, st->email, strlen(st->email));
    } else {
        /* the address changes when the link mailed to the new one is followed; the old one
         * is told now */
        rc = issue(e, GH_MAIL_VERIFY, GH_TOKEN_CHANGE, st->user.id, st->user.username, st->email,
                   "/verify?token=", GH_EMAIL_VERIFY_TTL_MS, true);
        if (rc == 0 && strcmp(old, st->email) != 0)
            GH_IGNORE(
                gh_email_queue_notice(e, GH_MAIL_EMAIL_CHANGED, old, st->user.username, st->email));
    }
    if (rc == 0) {
        GH_LOG(GH_LOG_INFO, "email change requested", GH_LI("user_id", st->user.id),
               GH_LB("had_address", old[0] != '\0'));
        /* email.changed: the address on the account changes now only when it had none (else
         * when the new one's link is followed, gh_account_email_verify) */
        if (!old[0]) {
            gh_audit_event_t ev;
            gh_account_audit_event(a, &ev, GH_AUDIT_EMAIL_CHANGED, GH_AUDIT_SUCCESS, st->user.id);
            gh_audit_event_detail(&ev, "set=unverified");
            rc = gh_account_audit(a, &ev);
        }
    }
    return rc;
}

int gh_account_email_verify(gh_account_t *a, const char *token, size_t len)
{
    gh_account_email_t *e = a->email;
    if (!e)
        return GH_ECLOSED;
    uint8_t hash[GH_MAILSTORE_HASH_LEN];
    int rc = token_hash(token, len, hash);
    if (rc != 0)
        return rc;
    uint64_t uid = 0;
    char email[GH_MAILSTORE_ADDR_MAX + 1];
    gh_mail_token_purpose_t purpose = GH_TOKEN_VERIFY;
    int64_t now = gh_clock_now_ms();
    rc = e->store->ops->token(e->store, hash, purpose, now, true, &uid, email);
    if (rc == GH_ENOTFOUND) {
        purpose = GH_TOKEN_CHANGE;
        rc = e->store->ops->token(e->store, hash, purpose, now, true, &uid, email);
    }
    if (rc == GH_ENOTFOUND)
        return GH_ETOKEN;
    if (rc != 0)
        return rc;
    char cur[GH_MAIL_ADDR_MAX + 1];
    bool verified;
    rc = e->store->ops->get_email(e->store, uid, cur, &verified);
    if (rc == GH_ENOTFOUND)
        return GH_ETOKEN; /* the user is gone */
    if (rc != 0)
        return rc;
    if (purpose == GH_TOKEN_VERIFY && strcmp(cur, email) != 0)
        return GH_ETOKEN; /* the address changed since the link was sent */
    rc = e->store->ops->set_email(e->store, uid, email, true);
    if (rc == GH_EEXISTS)
        return GH_EEMAILTAKEN;
    if (rc != 0)
        return rc;
    GH_LOG(GH_LOG_INFO, "email verified", GH_LI("user_id", uid),
           GH_LB("changed", purpose == GH_TOKEN_CHANGE));
    gh_audit_event_t ev;
    if (purpose == GH_TOKEN_CHANGE) {
        gh_account_audit_event(a, &ev, GH_AUDIT_EMAIL_CHANGED, GH_AUDIT_SUCCESS, uid);
        gh_audit_event_detail(&ev, "confirmed_by=link");
        if ((rc = gh_account_audit(a, &ev)) != 0)
            return rc;
    }
    gh_account_audit_event(a, &ev, GH_AUDIT_EMAIL_VERIFIED, GH_AUDIT_SUCCESS, uid);
    return gh_account_audit(a, &ev);
}

int gh_account_link_peek(gh_account_t *a, bool reset, const char *token, size_t len,
                         bool *needs_code)
{
    *needs_code = false;
    gh_account_email_t *e = a->email;
    if (!e)
        return GH_ECLOSED;
    uint8_t hash[GH_MAILSTORE_HASH_LEN];
    int rc = token_hash(token, len, hash);
    if (rc != 0)
        return rc;
    uint64_t uid = 0;
    char email[GH_MAILSTORE_ADDR_MAX + 1];
    int64_t now = gh_clock_now_ms();
    if (reset) {
        rc = e->store->ops->token(e->store, hash, GH_TOKEN_RESET, now, false, &uid, email);
    } else {
        rc = e->store->ops->token(e->store, hash, GH_TOKEN_VERIFY, now, false, &uid, email);
        if (rc == GH_ENOTFOUND)
            rc = e->store->ops->token(e->store, hash, GH_TOKEN_CHANGE, now, false, &uid, email);
    }
    if (rc == 0 && uid == 0)
        rc = GH_ENOTFOUND;
    if (rc == GH_ENOTFOUND)
        return GH_ETOKEN;
    if (rc == 0 && reset)
        rc = gh_account_user_has_factor(a, uid, needs_code);
    return rc;
}

/* ---- password reset ---- */

int gh_account_reset_request(gh_account_t *a, const gh_account_client_t *c, bool by_email,
                             const char *ident, size_t len, int64_t *retry_ms)
{
    gh_account_email_t *e = a->email;
    *retry_ms = 0;
    if (!e)
        return GH_ECLOSED;
    char norm[GH_MAIL_ADDR_MAX + 1];
    if (by_email) {
        if (normalize(ident, len, norm) != 0)
            return GH_EEMAIL;
    } else {
        if (!ident || len == 0 || len > GH_USERNAME_MAX)
            return GH_EINVAL;
        for (size_t i = 0; i < len; i++)
            norm[i] =
                (ident[i] >= 'A' && ident[i] <= 'Z') ? (char)(ident[i] - 'A' + 'a') : ident[i];
        norm[len] = '\0';
    }
    int64_t now = gh_clock_now_ms();
    if (!throttle_take(e, TH_IP, &c->ip, sizeof c->ip, GH_EMAIL_THROTTLE_PER_IP, now, retry_ms))
        return GH_ELIMIT;
    if (!throttle_take(e, TH_TARGET, norm, strlen(norm), GH_EMAIL_THROTTLE_PER_TARGET, now,
                       retry_ms))
        return GH_ELIMIT;

    /* the same steps for every request from here on */
    uint64_t uid = 0;
    gh_user_t user;
    memset(&user, 0, sizeof user);
    char to[GH_MAIL_ADDR_MAX + 1] = "";
    bool verified = false;
    int rc;
    if (by_email) {
        rc = e->store->ops->find_by_email(e->store, norm, &uid);
        if (rc == 0)
            rc = gh_user_get_by_id(a->users, uid, &user);
    } else {
        rc = gh_user_get_by_name(a->users, norm, &user);
        uid = rc == 0 ? user.id : 0;
    }
    sodium_memzero(user.password_hash, sizeof user.password_hash);
    if (rc != 0 && rc != GH_ENOTFOUND)
        return rc;
    rc = uid ? e->store->ops->get_email(e->store, uid, to, &verified)
             : e->store->ops->get_email(e->store, 0, to, &verified);
    if (rc != 0 && rc != GH_ENOTFOUND)
        return rc;
    bool send = uid != 0 && to[0] && verified;
    if (send &&
        !throttle_take(e, TH_ACCOUNT, &uid, sizeof uid, GH_EMAIL_THROTTLE_PER_ACCOUNT, now, NULL))
        send = false; /* answered like the others: a 429 here would say the account exists */
    rc = issue(e, GH_MAIL_RESET, GH_TOKEN_RESET, send ? uid : 0, send ? user.username : "nobody",
               send ? to : NOBODY, "/reset/confirm?token=", GH_EMAIL_RESET_TTL_MS, send);
    if (rc == 0 && send)
        GH_LOG(GH_LOG_INFO, "password reset link queued", GH_LI("user_id", uid),
               GH_LS("via", c->via ? c->via : ""));
    return rc;
}

int gh_account_reset_send(gh_account_t *a, uint64_t user_id, bool *sent, int64_t *retry_ms)
{
    gh_account_email_t *e = a->email;
    *sent = false;
    *retry_ms = 0;
    if (!e)
        return GH_ECLOSED;
    gh_user_t user;
    int rc = gh_user_get_by_id(a->users, user_id, &user);
    sodium_memzero(user.password_hash, sizeof user.password_hash);
    if (rc != 0)
        return rc;
    char to[GH_MAIL_ADDR_MAX + 1] = "";
    bool verified = false;
    rc = e->store->ops->get_email(e->store, user_id, to, &verified);
    if (rc == GH_ENOTFOUND || (rc == 0 && (!to[0] || !verified)))
        return 0;
    if (rc != 0)
        return rc;
    if (!throttle_take(e, TH_ACCOUNT, &user_id, sizeof user_id, GH_EMAIL_THROTTLE_PER_ACCOUNT,
                       gh_clock_now_ms(), retry_ms))
        return GH_ELIMIT;
    rc = issue(e, GH_MAIL_RESET, GH_TOKEN_RESET, user_id, user.username, to,
               "/reset/confirm?token=", GH_EMAIL_RESET_TTL_MS, true);
    if (rc == 0)
        rc = gh_account_audit_admin(a, "password_reset_send", user_id, NULL, NULL);
    if (rc == 0) {
        *sent = true;
        GH_LOG(GH_LOG_INFO, "password reset link queued", GH_LI("user_id", user_id),
               GH_LS("via", "admin"));
    }
    return rc;
}

int gh_account_reset_begin(gh_account_t *a, gh_account_reset_t *st, const char *token, size_t tlen,
                           const char *new_pw, size_t nlen, const char *code, size_t codelen)
{
    memset(st, 0, sizeof *st);
    gh_account_email_t *e = a->email;
    if (!e)
        return GH_ECLOSED;
    int rc = token_hash(token, tlen, st->token_hash);
    if (rc != 0)
        return rc;
    uint64_t uid = 0;
    char email[GH_MAILSTORE_ADDR_MAX + 1];
    rc = e->store->ops->token(e->store, st->token_hash, GH_TOKEN_RESET, gh_clock_now_ms(), false,
                              &uid, email);
    if (rc == GH_ENOTFOUND || (rc == 0 && uid == 0))
        return GH_ETOKEN;
    if (rc != 0)
        return rc;
    if (!gh_auth_password_valid(new_pw, nlen))
        return GH_EPASSWORD;
    rc = gh_user_get_by_id(a->users, uid, &st->user);
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    if (rc == GH_ENOTFOUND)
        return GH_ETOKEN;
    if (rc != 0)
        return rc;
    bool has = false;
    if ((rc = gh_account_user_has_factor(a, uid, &has)) != 0)
        return rc;
    if (has) {
        if (!code || codelen == 0)
            return GH_EMFA;
        if (gh_account_user_check_code(a, uid, code, codelen) != 0)
            return GH_EMFA;
    }
    st->job.kind = GH_ACCOUNT_JOB_HASH;
    st->job.stored_hash = NULL;
    st->job.password = new_pw;
    st->job.password_len = nlen;
    return 0;
}

int gh_account_reset_continue(gh_account_t *a, gh_account_reset_t *st)
{
    gh_account_email_t *e = a->email;
    int v = st->job.verdict.result, rc;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    if (v != 0) {
        rc = v == GH_EBUSY ? GH_EBUSY : GH_ENOMEM;
        goto out;
    }
    uint64_t uid = 0;
    char email[GH_MAILSTORE_ADDR_MAX + 1];
    /* spent here, once: of two confirms racing, one gets it */
    rc = e->store->ops->token(e->store, st->token_hash, GH_TOKEN_RESET, gh_clock_now_ms(), true,
                              &uid, email);
    if (rc == GH_ENOTFOUND || (rc == 0 && uid != st->user.id)) {
        rc = GH_ETOKEN;
        goto out;
    }
    if (rc != 0)
        goto out;
    size_t after = 0;
    rc = gh_session_end_user(a->sessions, uid, NULL, GH_END_REVOKED, &st->revoked);
    if (rc == 0)
        rc = gh_user_set_password(a->users, uid, st->job.verdict.new_hash);
    if (rc == 0)
        rc = gh_session_end_user(a->sessions, uid, NULL, GH_END_REVOKED, &after);
    st->revoked += after;
    if (rc != 0)
        goto out;
    gh_oidc_end_user_grants(a, uid);
    GH_LOG(GH_LOG_INFO, "password reset", GH_LI("user_id", uid),
           GH_LI("sessions_revoked", st->revoked));
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_PASSWORD_RESET, GH_AUDIT_SUCCESS, uid);
    gh_audit_event_detail(&ev, "sessions_revoked=%zu", st->revoked);
    if ((rc = gh_account_audit(a, &ev)) != 0)
        goto out;
    GH_IGNORE(gh_account_notify(a, uid, GH_MAIL_PASSWORD_CHANGED));
out:
    sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    return rc;
}

/* ---- notices ---- */
