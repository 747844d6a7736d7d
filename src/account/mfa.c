/*
 * mfa.c — the second factor: the login's second step, proofs of presence, and managing TOTP
 * factors and recovery codes (account.h, "the second factor").
 *
 * The one design decision: the password step makes a PENDING login (store/pending.h), never a
 * session; only gh_account_mfa_finish turns it into one, through the same session creation a
 * one-step login uses, and it takes the pending entry out of the table before doing so, so one
 * pending login yields at most one session however many requests race to finish it. Every
 * wrong second step counts three times: against the pending login (the 5th ends it), against
 * the account's back-off (login.c's throttle) and in gatehouse_mfa_total.
 *
 * Secrets: a TOTP secret is stored sealed with the secret key (auth/secretkey.h) and opened
 * only into a stack buffer that is wiped at once; recovery codes are stored as keyed hashes and
 * exist in clear only in the reply that shows them.
 */
#include "account/account.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "account/audit.h"
#include "account/email.h"
#include "auth/secretkey.h"
#include "common/clock.h"
#include "common/log.h"

static void count(gh_account_t *a, const char *method, const char *result)
{
    if (a->count_mfa)
        a->count_mfa(a->count_ctx, method, result);
}

/* The user's factors into a temporary array (free with free_factors). */
static int load_factors(gh_account_t *a, uint64_t user_id, gh_factor_t **out, size_t *n)
{
    *n = 0;
    *out = gh_mem_calloc(GH_MEM_USERS, GH_FACTORS_MAX, sizeof **out);
    if (!*out)
        return GH_ENOMEM;
    int rc = gh_user_factor_list(a->users, user_id, *out, GH_FACTORS_MAX, n);
    if (rc != 0) {
        gh_mem_free(GH_MEM_USERS, *out);
        *out = NULL;
    }
    return rc;
}

static void free_factors(gh_factor_t *f)
{
    if (f)
        gh_mem_free_secret(GH_MEM_USERS, f);
}

static uint32_t methods_of(const gh_factor_t *f, size_t n)
{
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!f[i].confirmed)
            continue;
        m |= f[i].type == GH_FACTOR_WEBAUTHN ? GH_PENDING_WEBAUTHN : GH_PENDING_TOTP;
        m |= GH_PENDING_RECOVERY;
    }
    return m;
}

int gh_account_mfa_gate(gh_account_t *a, gh_account_login_t *st)
{
    gh_factor_t *f;
    size_t n;
    st->next = GH_ACCOUNT_NEXT_DONE;
    int rc = load_factors(a, st->user.id, &f, &n);
    if (rc != 0)
        return rc;
    uint32_t methods = methods_of(f, n);
    free_factors(f);
    if (!methods)
        return 0;
    uint8_t key[GH_TOKEN_HASH_LEN];
    gh_token_new(st->pending, key);
    gh_pending_t p = {.user_id = st->user.id, .account_key = st->account_key, .methods = methods};
    int64_t now = gh_clock_now_ms();
    rc = gh_pending_put(a->pending, key, &p, now);
    if (rc != 0) {
        sodium_memzero(st->pending, sizeof st->pending);
        GH_LOG(GH_LOG_WARN, "pending login refused", GH_LI("user_id", st->user.id),
               GH_LS("error", gh_strerror(rc)));
        return rc;
    }
    st->next = GH_ACCOUNT_NEXT_MFA;
    st->pending_expires_ms = now + GH_PENDING_TTL_MS;
    st->methods = methods;
    GH_LOG(GH_LOG_INFO, "second factor required", GH_LI("user_id", st->user.id));
    return 0;
}

/* Checks a TOTP code against the user's confirmed TOTP factors and spends its time step:
 * 0 with *factor_id, GH_ECODE (wrong, or replayed), store errors. */
static int check_totp(gh_account_t *a, uint64_t user_id, const char *code, size_t len,
                      uint64_t *factor_id)
{
    gh_factor_t *f;
    size_t n;
    int rc = load_factors(a, user_id, &f, &n);
    if (rc != 0)
        return rc;
    rc = GH_ECODE;
    int64_t now = gh_clock_now_ms();
    for (size_t i = 0; i < n && rc == GH_ECODE; i++) {
        if (f[i].type != GH_FACTOR_TOTP || !f[i].confirmed ||
            f[i].secret_len != GH_TOTP_SECRET_LEN + GH_SEAL_OVERHEAD)
            continue;
        uint8_t secret[GH_TOTP_SECRET_LEN];
        uint64_t step;
        if (gh_secret_open(a->secret_key, f[i].secret, f[i].secret_len, secret) != 0) {
            GH_LOG(GH_LOG_ERROR, "a TOTP secret does not open with the secret key",
                   GH_LI("user_id", user_id), GH_LI("factor_id", f[i].id),
                   GH_LS("hint", "was --secret-key-file changed? see OPERATIONS.md"));
            continue;
        }
        int c = gh_totp_check(secret, sizeof secret, now / 1000, code, len, &step);
        sodium_memzero(secret, sizeof secret);
        if (c != 0)
            continue;
        int u = gh_user_factor_use(a->users, user_id, f[i].id, step, now);
        if (u == 0) {
            *factor_id = f[i].id;
            rc = 0;
        } else if (u == GH_ERANGE) {
            GH_LOG(GH_LOG_INFO, "a TOTP code was replayed", GH_LI("user_id", user_id),
                   GH_LI("factor_id", f[i].id));
        } else {
            rc = u;
        }
    }
    free_factors(f);
    return rc;
}

/* Spends a recovery code: 0, GH_ECODE, store errors. */
static int use_recovery(gh_account_t *a, uint64_t user_id, const char *code, size_t len)
{
    char norm[11];
    if (gh_recovery_code_normalize(code, len, norm) != 0)
        return GH_ECODE;
    uint8_t h[GH_RECOVERY_HASH_LEN];
    gh_secret_code_hash(a->secret_key, user_id, norm, 10, h);
    sodium_memzero(norm, sizeof norm);
    int rc = gh_user_recovery_use(a->users, user_id, h, gh_clock_now_ms());
    return rc == GH_ENOTFOUND ? GH_ECODE : rc;
}

/* A pending login is made with the password of its moment: a password reset or change since
 * then ends it (the reset "ends every pending login of the user"). The audit trail, which every
 * node shares, says when the last one happened; when it cannot be read the step fails closed. */
static bool password_changed_since(gh_account_t *a, uint64_t user_id, int64_t since_ms)
{
    static const char *const types[] = {"password.reset", "password.changed"};
    if (!a->audit)
        return false;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        gh_audit_query_t q;
        gh_audit_event_t ev;
        size_t n = 0;
        int64_t next = 0;
        memset(&q, 0, sizeof q);
        q.user_id = user_id;
        snprintf(q.type, sizeof q.type, "%s", types[i]);
        q.since_ms = since_ms;
        if (gh_audit_read(a->audit, &q, &ev, 1, &n, &next) != 0 || n > 0)
            return true;
    }
    return false;
}

int gh_account_mfa_finish(gh_account_t *a, gh_account_login_t *st, const char *pending, size_t plen,
                          const gh_account_mfa_proof_t *proof, const gh_account_client_t *client)
{
    memset(st, 0, sizeof *st);
    st->client = *client;
    const char *method = proof->method ? proof->method : "";
    uint8_t key[GH_TOKEN_HASH_LEN];
    gh_pending_t p;
    int64_t now = gh_clock_now_ms();
    if (!a->pending || gh_token_hash(pending, plen, key) != 0 ||
        gh_pending_get(a->pending, key, now, &p) != 0) {
        count(a, "none", "expired");
        return GH_EPENDING;
    }
    bool totp = strcmp(method, GH_MFA_TOTP) == 0, rec = strcmp(method, GH_MFA_RECOVERY) == 0,
         wa = strcmp(method, GH_MFA_WEBAUTHN) == 0;
    if ((totp && !(p.methods & GH_PENDING_TOTP)) || (rec && !(p.methods & GH_PENDING_RECOVERY)) ||
        (wa && !(p.methods & GH_PENDING_WEBAUTHN)) || (!totp && !rec && !wa))
        return GH_EINVAL;
    st->mfa_method = totp ? GH_MFA_TOTP : rec ? GH_MFA_RECOVERY : GH_MFA_WEBAUTHN;
    int64_t mono = gh_clock_mono_ns() / 1000000, retry = 0;
    bool begun = false;
    if (a->ratelimit) {
        if (gh_ratelimit_account_begin(a->ratelimit, p.account_key, mono, &retry) != 0) {
            st->retry_ms = retry;
            count(a, st->mfa_method, "rate_limited");
            return GH_ELIMIT;
        }
        begun = true;
    }
    uint64_t factor_id = 0;
    int rc = totp  ? check_totp(a, p.user_id, proof->code, proof->code_len, &factor_id)
             : rec ? use_recovery(a, p.user_id, proof->code, proof->code_len)
                   : gh_account_mfa_webauthn(a, &p, proof, &factor_id);
    gh_ratelimit_verdict_t v;
    if (begun)
        gh_ratelimit_account_end(a->ratelimit, p.account_key,
                                 rc == 0          ? GH_RATELIMIT_SUCCESS
                                 : rc == GH_ECODE ? GH_RATELIMIT_FAILURE
                                                  : GH_RATELIMIT_ABANDONED,
                                 mono, &v);
    if (rc == GH_ECODE) {
        uint32_t left = 0;
        int f = gh_pending_fail(a->pending, key, now, &left);
        count(a, st->mfa_method, "failure");
        gh_audit_event_t ev;
        gh_audit_event_init(&ev, GH_AUDIT_MFA_FAILED, GH_AUDIT_FAILURE, p.user_id, &st->client);
        gh_audit_event_detail(&ev, "method=%s steps_left=%u", st->mfa_method, (unsigned)left);
        gh_account_audit_queued(a, &ev);
        GH_LOG(GH_LOG_INFO, "second factor failed", GH_LI("user_id", p.user_id),
               GH_LS("method", st->mfa_method), GH_LI("steps_left", left));
        return f == 0 ? GH_ECODE : GH_EPENDING;
    }
    if (rc != 0) {
        count(a, st->mfa_method, "error");
        return rc;
    }
    /* Exactly one finisher wins the pending login. */
    if (gh_pending_take(a->pending, key, now, &p) != 0) {
        count(a, st->mfa_method, "expired");
        return GH_EPENDING;
    }
    if ((rc = gh_user_get_by_id(a->users, p.user_id, &st->user)) != 0)
        return rc == GH_ENOTFOUND ? GH_EPENDING : rc;
    if (password_changed_since(a, p.user_id, p.created_at_ms)) {
        sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
        count(a, st->mfa_method, "expired");
        return GH_EPENDING;
    }
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    st->user_found = true;
    if (rec) {
        int64_t last;
        if (gh_user_recovery_state(a->users, p.user_id, &st->recovery_left, &last) != 0)
            st->recovery_left = 0;
        GH_LOG(GH_LOG_WARN, "recovery code used", GH_LI("user_id", p.user_id),
               GH_LI("codes_left", st->recovery_left));
    }
    gh_token_new(st->token, st->token_hash);
    /* amr: the password, then the second step's kind (RFC 8176 via the ID token). */
    uint8_t amr = GH_AMR_PWD | (totp ? GH_AMR_OTP : rec ? GH_AMR_RECOVERY : GH_AMR_HWK);
    rc = gh_session_create_amr(a->sessions, st->user.id, st->token_hash, &st->client.client, amr,
                               now, &st->session);
    if (rc != 0) {
        sodium_memzero(st->token, sizeof st->token);
        count(a, st->mfa_method, "error");
        if (a->count_login)
            a->count_login(a->count_ctx, rc == GH_EBUSY || rc == GH_ENOMEM ? GH_LOGIN_OVERLOADED
                                                                           : GH_LOGIN_FAILURE);
        return rc;
    }
    /* The trail holds the login before anyone holds its session. */
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_MFA_SUCCEEDED, GH_AUDIT_SUCCESS, p.user_id, &st->client);
    gh_audit_event_session(&ev, st->session.id);
    gh_audit_event_detail(&ev, "method=%s", st->mfa_method);
    rc = gh_account_audit(a, &ev);
    if (rc == 0 && rec) {
        gh_audit_event_init(&ev, GH_AUDIT_RECOVERY_CODE_USED, GH_AUDIT_SUCCESS, p.user_id,
                            &st->client);
        gh_audit_event_session(&ev, st->session.id);
        gh_audit_event_detail(&ev, "codes_left=%zu", st->recovery_left);
        rc = gh_account_audit(a, &ev);
    }
    if (rc != 0) { /* no session without its event */
        GH_IGNORE(gh_session_end(a->sessions, st->token_hash, GH_END_REVOKED));
        sodium_memzero(st->token, sizeof st->token);
        count(a, st->mfa_method, "error");
        return rc;
    }
    if (rec)
        GH_IGNORE(gh_account_notify(a, p.user_id, GH_MAIL_RECOVERY_CODE_USED));
    count(a, st->mfa_method, "success");
    if (a->count_login)
        a->count_login(a->count_ctx, GH_LOGIN_SUCCESS);
    GH_LOG(GH_LOG_INFO, "second factor passed", GH_LI("user_id", p.user_id),
           GH_LS("method", st->mfa_method), GH_LI("factor_id", factor_id));
    return 0;
}

/* ---- the password reset's questions (account/email.h) ---- */

int gh_account_user_has_factor(gh_account_t *a, uint64_t user_id, bool *has)
{
    gh_factor_t *f;
    size_t n;
    *has = false;
    int rc = load_factors(a, user_id, &f, &n);
    if (rc != 0)
        return rc;
    *has = methods_of(f, n) != 0;
    free_factors(f);
    return 0;
}

int gh_account_user_check_code(gh_account_t *a, uint64_t user_id, const char *code, size_t len)
{
    uint64_t factor_id;
    int rc = check_totp(a, user_id, code, len, &factor_id);
    if (rc == GH_ECODE)
        rc = use_recovery(a, user_id, code, len);
    if (rc == 0)
        GH_IGNORE(gh_account_notify(a, user_id, GH_MAIL_RECOVERY_CODE_USED));
    return rc == 0 ? 0 : GH_EAUTH;
}

/* ---- proofs ---- */

int gh_account_proof_begin(gh_account_t *a, gh_account_proof_t *st, uint64_t user_id,
                           const char *password, size_t plen, const char *code, size_t clen)
{
    memset(st, 0, sizeof *st);
    int rc = gh_user_get_by_id(a->users, user_id, &st->user);
    if (rc == GH_ENOTFOUND)
        return GH_EAUTH;
    if (rc != 0)
        return rc;
    if (password) {
        st->job.kind = GH_ACCOUNT_JOB_VERIFY;
        st->job.stored_hash = st->user.password_hash;
        st->job.password = password;
        st->job.password_len = plen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : plen;
        return 0;
    }
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    if (!code)
        return GH_EINVAL;
    uint64_t fid;
    st->verdict = check_totp(a, user_id, code, clen, &fid);
    if (st->verdict == GH_ECODE)
        st->verdict = use_recovery(a, user_id, code, clen) == 0 ? 0 : GH_ECODE;
    return 0;
}

int gh_account_proof_continue(gh_account_t *a, gh_account_proof_t *st)
{
    (void)a;
    if (st->job.kind != GH_ACCOUNT_JOB_VERIFY)
        return st->verdict;
    int v = st->job.verdict.result;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    if (v == GH_EBUSY || v == GH_ENOMEM)
        return v;
    return v == 0 ? 0 : GH_ECURRENT;
}

/* ---- managing factors ---- */

int gh_account_factors_list(gh_account_t *a, gh_pool_t *pool, uint64_t user_id,
                            gh_account_factors_t *out)
{
    memset(out, 0, sizeof *out);
    out->list = gh_pool_alloc(pool, GH_FACTORS_MAX * sizeof *out->list);
    if (!out->list)
        return GH_ENOMEM;
    int rc = gh_user_factor_list(a->users, user_id, out->list, GH_FACTORS_MAX, &out->n);
    for (size_t i = 0; i < out->n; i++)
        sodium_memzero(out->list[i].secret, sizeof out->list[i].secret);
    if (rc == 0)
        rc = gh_user_recovery_state(a->users, user_id, &out->recovery_left,
                                    &out->recovery_used_at_ms);
    return rc;
}

/* Percent-encodes s for an otpauth URI's label or parameter. */
static void uri_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

int gh_account_totp_enrol(gh_account_t *a, const gh_user_t *user, const char *name,
                          gh_account_totp_enrol_t *out)
{
    memset(out, 0, sizeof *out);
    gh_factor_t *f;
    size_t n;
    int rc = load_factors(a, user->id, &f, &n);
    if (rc != 0)
        return rc;
    free_factors(f);
    if (n >= GH_FACTORS_MAX)
        return GH_ELIMIT;
    if (!name || !*name)
        name = "Authenticator";
    size_t nlen = strlen(name);
    if (nlen > GH_FACTOR_NAME_MAX)
        return GH_EINVAL;
    uint8_t secret[GH_TOTP_SECRET_LEN];
    gh_totp_secret_new(secret);
    gh_factor_t *g = &out->factor;
    g->user_id = user->id;
    g->type = GH_FACTOR_TOTP;
    memcpy(g->name, name, nlen + 1);
    g->created_at_ms = gh_clock_now_ms();
    gh_secret_seal(a->secret_key, secret, sizeof secret, g->secret);
    g->secret_len = sizeof secret + GH_SEAL_OVERHEAD;
    gh_totp_base32(secret, sizeof secret, out->secret_b32, sizeof out->secret_b32);
    sodium_memzero(secret, sizeof secret);
    rc = gh_user_factor_add(a->users, g);
    sodium_memzero(g->secret, sizeof g->secret);
    g->secret_len = 0;
    if (rc != 0) {
        sodium_memzero(out->secret_b32, sizeof out->secret_b32);
        return rc;
    }
    char label[3 * GH_USERNAME_MAX + 1];
    uri_escape(user->username, label, sizeof label);
    snprintf(out->uri, sizeof out->uri,
             "otpauth://totp/Gatehouse:%s?secret=%s&issuer=Gatehouse&algorithm=SHA1&digits=6"
             "&period=30",
             label, out->secret_b32);
    GH_LOG(GH_LOG_INFO, "factor enrolled", GH_LI("user_id", user->id), GH_LS("type", "totp"),
           GH_LI("factor_id", g->id));
    return 0;
}

static bool has_confirmed(const gh_factor_t *f, size_t n, uint64_t except)
{
    for (size_t i = 0; i < n; i++)
        if (f[i].confirmed && f[i].id != except)
            return true;
    return false;
}

/* Makes GH_RECOVERY_CODES new codes and stores their hashes (the old ones die). */
static int new_codes(gh_account_t *a, uint64_t user_id, char (*codes)[GH_RECOVERY_CODE_LEN + 1])
{
    uint8_t h[GH_RECOVERY_CODES][GH_RECOVERY_HASH_LEN];
    for (size_t i = 0; i < GH_RECOVERY_CODES; i++) {
        char norm[11];
        gh_recovery_code_new(codes[i]);
        if (gh_recovery_code_normalize(codes[i], GH_RECOVERY_CODE_LEN, norm) != 0)
            return GH_EINTERNAL;
        gh_secret_code_hash(a->secret_key, user_id, norm, 10, h[i]);
        sodium_memzero(norm, sizeof norm);
    }
    int rc = gh_user_recovery_set(a->users, user_id, (const uint8_t(*)[GH_RECOVERY_HASH_LEN])h,
                                  GH_RECOVERY_CODES, gh_clock_now_ms());
    if (rc != 0)
        sodium_memzero(codes, GH_RECOVERY_CODES * sizeof *codes);
    return rc;
}

int gh_account_totp_confirm(gh_account_t *a, uint64_t user_id, uint64_t factor_id, const char *code,
                            size_t clen, gh_factor_t *factor,
                            char (*codes)[GH_RECOVERY_CODE_LEN + 1], size_t *ncodes)
{
    *ncodes = 0;
    gh_factor_t *f;
    size_t n;
    int rc = load_factors(a, user_id, &f, &n);
    if (rc != 0)
        return rc;
    gh_factor_t *t = NULL;
    for (size_t i = 0; i < n; i++)
        if (f[i].id == factor_id && f[i].type == GH_FACTOR_TOTP)
            t = &f[i];
    bool first = !has_confirmed(f, n, factor_id);
    if (!t) {
        rc = GH_ENOTFOUND;
        goto out;
    }
    uint8_t secret[GH_TOTP_SECRET_LEN];
    uint64_t step;
    if (t->secret_len != sizeof secret + GH_SEAL_OVERHEAD ||
        gh_secret_open(a->secret_key, t->secret, t->secret_len, secret) != 0) {
        rc = GH_ECODE;
        goto out;
    }
    rc = gh_totp_check(secret, sizeof secret, gh_clock_now_ms() / 1000, code, clen, &step);
    sodium_memzero(secret, sizeof secret);
    if (rc != 0) {
        rc = GH_ECODE;
        goto out;
    }
    if ((rc = gh_user_factor_use(a->users, user_id, t->id, step, gh_clock_now_ms())) != 0) {
        rc = rc == GH_ERANGE ? GH_ECODE : rc;
        goto out;
    }
    if (!t->confirmed && (rc = gh_user_factor_confirm(a->users, user_id, t->id)) != 0)
        goto out;
    if (first) {
        if ((rc = new_codes(a, user_id, codes)) != 0)
            goto out;
        *ncodes = GH_RECOVERY_CODES;
    }
    if (!t->confirmed) {
        gh_audit_event_t ev;
        gh_audit_event_init(&ev, GH_AUDIT_FACTOR_ADDED, GH_AUDIT_SUCCESS, user_id, NULL);
        gh_audit_event_detail(&ev, "type=totp factor_id=%llu recovery_codes_issued=%d",
                              (unsigned long long)t->id, first ? 1 : 0);
        if ((rc = gh_account_audit(a, &ev)) != 0)
            goto out;
        GH_IGNORE(gh_account_notify(a, user_id, GH_MAIL_FACTOR_ADDED));
    }
    rc = gh_user_factor_get(a->users, user_id, t->id, factor);
    sodium_memzero(factor->secret, sizeof factor->secret);
    if (rc == 0)
        GH_LOG(GH_LOG_INFO, "factor confirmed", GH_LI("user_id", user_id),
               GH_LI("factor_id", t->id), GH_LB("recovery_codes_issued", first));
out:
    free_factors(f);
    return rc;
}

int gh_account_factor_rename(gh_account_t *a, uint64_t user_id, uint64_t factor_id,
                             const char *name, gh_factor_t *factor)
{
    int rc = gh_user_factor_rename(a->users, user_id, factor_id, name);
    if (rc == 0)
        rc = gh_user_factor_get(a->users, user_id, factor_id, factor);
    sodium_memzero(factor->secret, sizeof factor->secret);
    return rc;
}

int gh_account_factor_remove(gh_account_t *a, uint64_t user_id, uint64_t factor_id,
                             const uint8_t keep[GH_TOKEN_HASH_LEN], size_t *revoked)
{
    *revoked = 0;
    gh_factor_t *f;
    size_t n;
    int rc = load_factors(a, user_id, &f, &n);
    if (rc != 0)
        return rc;
    bool others = has_confirmed(f, n, factor_id);
    free_factors(f);
    if ((rc = gh_user_factor_del(a->users, user_id, factor_id)) != 0)
        return rc;
    if (!others) {
        /* The last factor gone: the account is password-only again. Sessions that were made
         * with the second factor stand no more than the password does now. */
        size_t ignored;
        GH_IGNORE(gh_user_factor_del_all(a->users, user_id, &ignored));
        rc = gh_session_end_user(a->sessions, user_id, keep, GH_END_REVOKED, revoked);
    }
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_FACTOR_REMOVED, GH_AUDIT_SUCCESS, user_id, NULL);
    gh_audit_event_detail(&ev, "factor_id=%llu last=%d sessions_revoked=%zu",
                          (unsigned long long)factor_id, others ? 0 : 1, *revoked);
    int arc = gh_account_audit(a, &ev);
    if (rc == 0)
        rc = arc;
    if (rc == 0)
        GH_IGNORE(gh_account_notify(a, user_id, GH_MAIL_FACTOR_REMOVED));
    GH_LOG(GH_LOG_INFO, "factor removed", GH_LI("user_id", user_id), GH_LI("factor_id", factor_id),
           GH_LB("last", !others), GH_LI("sessions_revoked", *revoked));
    return rc;
}

int gh_account_recovery_regenerate(gh_account_t *a, uint64_t user_id,
                                   const uint8_t keep[GH_TOKEN_HASH_LEN],
                                   char (*codes)[GH_RECOVERY_CODE_LEN + 1], size_t *revoked)
{
    *revoked = 0;
    gh_factor_t *f;
    size_t n;
    int rc = load_factors(a, user_id, &f, &n);
    if (rc != 0)
        return rc;
    bool any = has_confirmed(f, n, 0);
    free_factors(f);
    if (!any)
        return GH_EINVAL;
    if ((rc = new_codes(a, user_id, codes)) != 0)
        return rc;
    rc = gh_session_end_user(a->sessions, user_id, keep, GH_END_REVOKED, revoked);
    GH_LOG(GH_LOG_INFO, "recovery codes regenerated", GH_LI("user_id", user_id),
           GH_LI("sessions_revoked", *revoked));
    return rc;
}

int gh_account_factors_reset(gh_account_t *a, uint64_t user_id, size_t *removed)
{
    gh_user_t u;
    *removed = 0;
    int rc = gh_user_get_by_id(a->users, user_id, &u);
    if (rc != 0)
        return rc;
    sodium_memzero(u.password_hash, sizeof u.password_hash);
    rc = gh_user_factor_del_all(a->users, user_id, removed);
    if (rc == 0) {
        gh_audit_event_t ev;
        /* the caller's actor: "token" for the bearer API, "admin:<id>" for the console */
        gh_account_audit_event(a, &ev, GH_AUDIT_FACTOR_REMOVED, GH_AUDIT_SUCCESS, user_id);
        if (!a->actor[0])
            gh_audit_event_actor(&ev, "token");
        gh_audit_event_detail(&ev, "by=admin_reset factors_removed=%zu", *removed);
        rc = gh_account_audit(a, &ev);
    }
    if (rc == 0) {
        char detail[48];
        snprintf(detail, sizeof detail, "factors_removed=%zu", *removed);
        rc = gh_account_audit_admin(a, "factors_reset", user_id, NULL, detail);
    }
    if (rc == 0 && *removed > 0)
        GH_IGNORE(gh_account_notify(a, user_id, GH_MAIL_FACTOR_REMOVED));
    if (rc == 0)
        GH_LOG(GH_LOG_WARN, "second factors reset by an admin", GH_LI("user_id", user_id),
               GH_LI("factors_removed", *removed));
    return rc;
}
