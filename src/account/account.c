/*
 * account.c — the account workflows other than the login (login.c): registration and admins
 * creating users, the password change, listing and ending sessions, deleting users, and the
 * operators of --ops-users. Each is written once here and rendered by the JSON API and the pages.
 *
 * Design decision: a workflow step that hashes only prepares a job in the caller's state; the
 * caller queues it (gh_account_submit) and calls the next step when it is back, so the store writes
 * that follow a hash run on the caller's thread, never on a hash worker (account.h).
 */
#include "account/account.h"
#include "account/email.h"
#include "account/audit.h"
#include "account/oidc.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/log.h"

/* ---- the password pool ---- */

static void job_done(void *arg, const gh_password_result_t *res)
{
    gh_account_job_t *job = arg;
    job->verdict = *res;
    job->done(job->arg);
}

bool gh_account_submit(gh_account_t *a, gh_account_job_t *job, void (*done)(void *arg), void *arg)
{
    job->done = done;
    job->arg = arg;
    memset(&job->verdict, 0, sizeof job->verdict);
    int rc;
    if (job->kind == GH_ACCOUNT_JOB_VERIFY)
        rc = gh_password_verify_async(a->passwords, job->stored_hash, job->password,
                                      job->password_len, job_done, job);
    else if (job->kind == GH_ACCOUNT_JOB_HASH)
        rc = gh_password_hash_async(a->passwords, job->password, job->password_len, job_done, job);
    else
        rc = GH_EINTERNAL;
    if (rc != 0)
        job->verdict.result = rc;
    return rc == 0;
}

/* The verdict of a hash job as the contract reports a failure: a full queue is overloaded, any
 * other failure (argon2 without memory) too. */
static int hash_failure(int result)
{
    return result == GH_EBUSY ? GH_EBUSY : GH_ENOMEM;
}

/* ---- operators ---- */

/* Calls fn for each entry of the comma-separated list (spaces around entries dropped); stops when
 * fn returns true and returns true. */
static bool each_entry(const char *list, bool (*fn)(const char *e, size_t n, const void *ctx),
                       const void *ctx)
{
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ",");
        const char *e = p;
        size_t en = n;
        while (en && *e == ' ') {
            e++;
            en--;
        }
        while (en && e[en - 1] == ' ')
            en--;
        if (en && fn(e, en, ctx))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

/* An entry of digits names a user id (ids are never reused). */
static bool entry_id(const char *e, size_t n, uint64_t *id)
{
    if (n == 0 || n > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i] < '0' || e[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(e[i] - '0');
    }
    *id = v;
    return true;
}

static bool matches_user(const char *e, size_t n, const void *ctx)
{
    const gh_user_t *u = ctx;
    uint64_t id;
    if (entry_id(e, n, &id))
        return id == u->id;
    return strlen(u->username) == n && memcmp(u->username, e, n) == 0;
}

bool gh_account_is_operator(const gh_account_t *a, const gh_user_t *user)
{
    return each_entry(a->operators, matches_user, user);
}

/* A name entry equal to the candidate, in any case (the user store's uniqueness rule). */
static bool reserves_name(const char *e, size_t n, const void *ctx)
{
    const char *name = ctx;
    uint64_t id;
    return !entry_id(e, n, &id) && strlen(name) == n && strncasecmp(name, e, n) == 0;
}

typedef struct {
    gh_account_t *a;
    size_t missing;
} check_ctx_t;

static bool check_entry(const char *e, size_t n, const void *ctx)
{
    check_ctx_t *c = (check_ctx_t *)ctx;
    char name[GH_USERNAME_MAX + 1];
    gh_user_t u;
    uint64_t id;
    int rc;
    bool by_id = entry_id(e, n, &id);
    if (n > GH_USERNAME_MAX) {
        rc = GH_ENOTFOUND;
    } else {
        memcpy(name, e, n);
        name[n] = '\0';
        rc = by_id ? gh_user_get_by_id(c->a->users, id, &u)
                   : gh_user_get_by_name(c->a->users, name, &u);
        sodium_memzero(u.password_hash, sizeof u.password_hash);
        if (rc == 0 && !by_id && strcmp(u.username, name) != 0)
            rc = GH_ENOTFOUND; /* listed names match exactly; another case is another name */
    }
    if (rc == GH_ENOTFOUND) {
        c->missing++;
        GH_LOG(GH_LOG_WARN, "--ops-users names no existing user",
               GH_LS("entry", n > GH_USERNAME_MAX ? "(too long)" : name),
               GH_LS("named_by", by_id ? "id" : "name"));
    } else if (rc != 0) {
        GH_LOG(GH_LOG_WARN, "cannot check --ops-users", GH_LS("error", gh_strerror(rc)));
    }
    return false;
}

size_t gh_account_check_operators(gh_account_t *a)
{
    check_ctx_t c = {.a = a, .missing = 0};
    each_entry(a->operators, check_entry, &c);
    return c.missing;
}

/* ---- register ---- */

int gh_account_register_begin(gh_account_t *a, gh_account_register_t *st, const char *username,
                              size_t ulen, const char *password, size_t plen, bool by_admin)
{
    memset(st, 0, sizeof *st);
    if (!gh_auth_username_valid(username, ulen))
        return GH_EUSERNAME;
    if (!gh_auth_password_valid(password, plen))
        return GH_EPASSWORD;
    memcpy(st->username, username, ulen);
    st->username[ulen] = '\0';
    /* A name --ops-users lists opens /ops: open registration must never hand it out. */
    if (!by_admin && each_entry(a->operators, reserves_name, st->username))
        return GH_EEXISTS;
    gh_user_t existing;
    int rc = gh_user_get_by_name(a->users, st->username, &existing);
    sodium_memzero(existing.password_hash, sizeof existing.password_hash);
    if (rc == 0)
        return GH_EEXISTS;
    if (rc != GH_ENOTFOUND)
        return rc;
    st->job.kind = GH_ACCOUNT_JOB_HASH;
    st->job.password = password;
    st->job.password_len = plen;
    return 0;
}

/* The user and its user.created event: one transaction where the store allows. */
typedef struct {
    gh_account_t *a;
    gh_account_register_t *st;
    gh_audit_event_t *ev;
} create_arg_t;

static int create_change(gh_user_store_t *users, void *p)
{
    create_arg_t *c = p;
    int rc = gh_user_create(users, c->st->username, c->st->job.verdict.new_hash, gh_clock_now_ms(),
                            &c->st->user);
    if (rc == 0) {
        c->ev->user_id = c->st->user.id;
        if (!c->a->actor[0])
            snprintf(c->ev->actor, sizeof c->ev->actor, "user:%llu",
                     (unsigned long long)c->st->user.id);
    }
    return rc;
}

int gh_account_register_continue(gh_account_t *a, gh_account_register_t *st)
{
    int rc;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    if (st->job.verdict.result != 0) {
        rc = hash_failure(st->job.verdict.result);
        goto out;
    }
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_USER_CREATED, GH_AUDIT_SUCCESS, 0);
    create_arg_t ca = {.a = a, .st = st, .ev = &ev};
    rc = gh_account_audit_change(a, &ev, create_change, &ca);
    if (rc == 0) {
        GH_LOG(GH_LOG_INFO, "user created", GH_LI("user_id", st->user.id));
        rc = gh_account_audit_admin(a, "user_create", st->user.id, NULL, NULL);
    }
out:
    sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
    return rc;
}

/* ---- the caller's session ---- */

int gh_account_logout(gh_account_t *a, const uint8_t token_hash[GH_TOKEN_HASH_LEN])
{
    gh_session_info_t info;
    bool known = (a->audit || a->grants) &&
                 gh_session_lookup(a->sessions, token_hash, gh_clock_now_ms(), &info) == 0;
    int rc = gh_session_end(a->sessions, token_hash, GH_END_LOGOUT);
    if (rc == GH_ENOTFOUND)
        return 0;
    if (rc == 0 && known)
        gh_oidc_end_session_grants(a, info.id);
    if (rc == 0 && known) {
        gh_audit_event_t ev;
        gh_account_audit_event(a, &ev, GH_AUDIT_LOGOUT, GH_AUDIT_SUCCESS, info.user_id);
        gh_audit_event_session(&ev, info.id);
        rc = gh_account_audit(a, &ev);
    }
    return rc;
}

int gh_account_session_user(gh_account_t *a, const gh_session_info_t *session,
                            const uint8_t token_hash[GH_TOKEN_HASH_LEN], gh_user_t *out)
{
    int rc = gh_user_get_by_id_cached(a->users, session->user_id, out);
    if (rc == GH_ENOTFOUND)
        GH_IGNORE(gh_session_end(a->sessions, token_hash, GH_END_REVOKED));
    return rc;
}

/* ---- sessions ---- */

int gh_account_sessions_list(gh_account_t *a, gh_pool_t *pool, uint64_t user_id, bool by_admin,
                             gh_account_sessions_t *out)
{
    out->list = NULL;
    out->n = 0;
    if (by_admin) {
        gh_user_t user;
        int rc = gh_account_user_get(a, user_id, &user);
        if (rc != 0)
            return rc;
    }
    size_t cap = a->max_sessions_per_user;
    gh_session_info_t *list = cap ? gh_pool_alloc(pool, cap * sizeof *list) : NULL;
    if (cap && !list)
        return GH_ENOMEM;
    int rc = gh_session_list_user(a->sessions, user_id, gh_clock_now_ms(), list, cap, &out->n);
    if (rc != 0)
        return rc;
    out->list = list;
    return 0;
}

int gh_account_sessions_revoke(gh_account_t *a, uint64_t user_id, const char *session_id)
{
    int rc = gh_session_end_by_id(a->sessions, user_id, session_id, GH_END_REVOKED);
    if (rc != 0)
        return rc;
    gh_oidc_end_session_grants(a, session_id);
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_SESSION_REVOKED, GH_AUDIT_SUCCESS, user_id);
    gh_audit_event_session(&ev, session_id);
    gh_audit_event_detail(&ev, "by=%s", gh_account_by_admin(a) ? "admin" : "user");
    rc = gh_account_audit(a, &ev);
    if (rc == 0)
        rc = gh_account_audit_admin(a, "session_revoke", user_id, session_id, NULL);
    return rc;
}

/* One session.revoked event for n sessions of user_id ended at once (by: who or what). */
static int audit_revoked(gh_account_t *a, uint64_t user_id, size_t n, const char *by)
{
    if (n == 0)
        return 0;
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_SESSION_REVOKED, GH_AUDIT_SUCCESS, user_id);
    gh_audit_event_detail(&ev, "by=%s count=%zu", by, n);
    return gh_account_audit(a, &ev);
}

int gh_account_sessions_revoke_all(gh_account_t *a, uint64_t user_id, bool by_admin, size_t *n)
{
    *n = 0;
    int rc;
    if (by_admin) {
        gh_user_t user;
        if ((rc = gh_account_user_get(a, user_id, &user)) != 0)
            return rc;
    }
    rc = gh_session_end_user(a->sessions, user_id, NULL, GH_END_REVOKED, n);
    if (rc != 0)
        return rc;
    gh_oidc_end_user_grants(a, user_id);
    rc = audit_revoked(a, user_id, *n, by_admin ? "admin" : "user");
    if (rc == 0 && by_admin) {
        char detail[32];
        snprintf(detail, sizeof detail, "count=%zu", *n);
        rc = gh_account_audit_admin(a, "sessions_revoke_all", user_id, NULL, detail);
    }
    if (rc != 0)
        return rc;
    if (by_admin)
        GH_LOG(GH_LOG_INFO, "sessions revoked", GH_LI("user_id", user_id), GH_LI("count", *n),
               GH_LS("by", "admin"));
    else
        GH_LOG(GH_LOG_INFO, "sessions revoked", GH_LI("user_id", user_id), GH_LI("count", *n));
    return 0;
}

/* ---- change the password ---- */

int gh_account_password_begin(gh_account_t *a, gh_account_password_t *st, uint64_t user_id,
                              const uint8_t keep[GH_TOKEN_HASH_LEN], const char *current,
                              size_t clen, const char *new_pw, size_t nlen)
{
    memset(st, 0, sizeof *st);
    if (!gh_auth_password_valid(new_pw, nlen))
        return GH_EPASSWORD;
    memcpy(st->keep, keep, sizeof st->keep);
    st->new_password = new_pw;
    st->new_len = nlen;
    /* The session's user may come from the user cache, which holds no hash: read it fresh. */
    int rc = gh_user_get_by_id(a->users, user_id, &st->user);
    if (rc == GH_ENOTFOUND) {
        /* The user was deleted behind this node's back (another process): the asking session
         * must not outlive it (the pages did this, PUT /v1/password did not). */
        GH_IGNORE(gh_session_end(a->sessions, keep, GH_END_REVOKED));
        return GH_EAUTH;
    }
    if (rc != 0)
        return rc;
    st->job.kind = GH_ACCOUNT_JOB_VERIFY;
    st->job.stored_hash = st->user.password_hash;
    st->job.password = current;
    st->job.password_len = clen > GH_PASSWORD_MAX ? GH_PASSWORD_MAX : clen;
    return 0;
}

static int set_password_change(gh_user_store_t *users, void *p)
{
    gh_account_password_t *st = p;
    return gh_user_set_password(users, st->user.id, st->job.verdict.new_hash);
}

int gh_account_password_continue(gh_account_t *a, gh_account_password_t *st)
{
    int v = st->job.verdict.result, rc;
    if (st->job.kind == GH_ACCOUNT_JOB_VERIFY) {
        st->job.kind = GH_ACCOUNT_JOB_NONE;
        sodium_memzero(st->user.password_hash, sizeof st->user.password_hash);
        sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
        if (v == GH_EBUSY || v == GH_ENOMEM)
            return v;
        if (v != 0)
            return GH_ECURRENT;
        st->job.kind = GH_ACCOUNT_JOB_HASH;
        st->job.stored_hash = NULL;
        st->job.password = st->new_password;
        st->job.password_len = st->new_len;
        return GH_ACCOUNT_PENDING;
    }
    if (st->job.kind != GH_ACCOUNT_JOB_HASH)
        return GH_EINTERNAL;
    st->job.kind = GH_ACCOUNT_JOB_NONE;
    if (v != 0) {
        rc = hash_failure(v);
        goto out;
    }
    /* The other sessions end before and after the new hash is written: a failed write then
     * never leaves the new password with the old sessions still valid (and the retry, with the
     * old password, still works). */
    size_t after = 0;
    rc = gh_session_end_user(a->sessions, st->user.id, st->keep, GH_END_REVOKED, &st->revoked);
    if (rc != 0)
        goto out;
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_PASSWORD_CHANGED, GH_AUDIT_SUCCESS, st->user.id);
    gh_audit_event_detail(&ev, "sessions_revoked=%zu", st->revoked);
    rc = gh_account_audit_change(a, &ev, set_password_change, st);
    if (rc != 0)
        goto out;
    rc = gh_session_end_user(a->sessions, st->user.id, st->keep, GH_END_REVOKED, &after);
    st->revoked += after;
    if (rc != 0)
        goto out;
    /* A new password ends every relying party's grant, the asking session's included. */
    gh_oidc_end_user_grants(a, st->user.id);
    GH_LOG(GH_LOG_INFO, "password changed", GH_LI("user_id", st->user.id),
           GH_LI("sessions_revoked", st->revoked));
    rc = audit_revoked(a, st->user.id, st->revoked, "password_change");
    if (rc == 0)
        GH_IGNORE(gh_account_notify(a, st->user.id, GH_MAIL_PASSWORD_CHANGED));
out:
    sodium_memzero(st->job.verdict.new_hash, sizeof st->job.verdict.new_hash);
    return rc;
}

/* ---- users (admin) ---- */

int gh_account_users_list(gh_account_t *a, uint64_t after, gh_user_t *out, size_t cap, size_t *n)
{
    return gh_user_list(a->users, after, out, cap, n);
}

int gh_account_user_get(gh_account_t *a, uint64_t user_id, gh_user_t *out)
{
    int rc = gh_user_get_by_id(a->users, user_id, out);
    sodium_memzero(out->password_hash, sizeof out->password_hash);
    return rc;
}

static int delete_change(gh_user_store_t *users, void *p)
{
    return gh_user_del(users, *(const uint64_t *)p);
}

int gh_account_user_delete(gh_account_t *a, uint64_t user_id, size_t *revoked)
{
    gh_user_t user;
    *revoked = 0;
    int rc = gh_account_user_get(a, user_id, &user);
    if (rc != 0)
        return rc;
    /* Sessions first: a session must never outlive its user, even for a moment. */
    rc = gh_session_end_user(a->sessions, user.id, NULL, GH_END_REVOKED, revoked);
    gh_oidc_end_user_grants(a, user.id);
    if (a->grants)
        GH_IGNORE(gh_grant_consent_revoke(a->grants, user.id, NULL));
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_USER_DELETED, GH_AUDIT_SUCCESS, user.id);
    gh_audit_event_detail(&ev, "username=%s sessions_revoked=%zu", user.username, *revoked);
    if (rc == 0)
        rc = gh_account_audit_change(a, &ev, delete_change, &user.id);
    if (rc == 0) {
        GH_LOG(GH_LOG_INFO, "user deleted", GH_LI("user_id", user.id),
               GH_LI("sessions_revoked", *revoked));
        rc = audit_revoked(a, user.id, *revoked, "user_delete");
        if (rc == 0)
            rc = gh_account_audit_admin(a, "user_delete", user.id, NULL, NULL);
    }
    return rc;
}

typedef struct {
    uint64_t id;
    int admin, disabled;
} flags_arg_t;

static int flags_change(gh_user_store_t *users, void *p)
{
    const flags_arg_t *f = p;
    return gh_user_set_flags(users, f->id, f->admin, f->disabled);
}

int gh_account_user_set_flags(gh_account_t *a, uint64_t user_id, int admin, int disabled,
                              gh_user_t *out)
{
    gh_user_t before;
    int rc = gh_account_user_get(a, user_id, &before);
    if (rc != 0)
        return rc;
    size_t ended = 0;
    if (disabled == 1) {
        rc = gh_session_end_user(a->sessions, user_id, NULL, GH_END_REVOKED, &ended);
        if (rc != 0)
            return rc;
    }
    /* A change of the disabled state is stored with its event, in one transaction. */
    bool toggles = disabled >= 0 && (disabled == 1) != before.disabled;
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, disabled == 1 ? GH_AUDIT_USER_DISABLED : GH_AUDIT_USER_ENABLED,
                           GH_AUDIT_SUCCESS, user_id);
    gh_audit_event_detail(&ev, "sessions_revoked=%zu", ended);
    flags_arg_t fa = {.id = user_id, .admin = admin, .disabled = disabled};
    rc = toggles ? gh_account_audit_change(a, &ev, flags_change, &fa)
                 : gh_user_set_flags(a->users, user_id, admin, disabled);
    if (rc == 0 && disabled == 1) /* a login that raced the first pass */
        rc = gh_session_end_user(a->sessions, user_id, NULL, GH_END_REVOKED, &(size_t){0});
    if (rc != 0)
        return rc;
    if (disabled == 1)
        gh_oidc_end_user_grants(a, user_id);
    if (toggles) {
        if ((rc = audit_revoked(a, user_id, ended, "disable")) != 0)
            return rc;
        if ((rc = gh_account_audit_admin(a, disabled ? "user_disable" : "user_enable", user_id,
                                         NULL, NULL)) != 0)
            return rc;
        GH_LOG(GH_LOG_INFO, disabled ? "user disabled" : "user enabled", GH_LI("user_id", user_id),
               GH_LI("sessions_revoked", ended));
    }
    if (admin >= 0 && (admin == 1) != before.admin) {
        rc = gh_account_audit_admin(a, admin ? "role_grant_admin" : "role_revoke_admin", user_id,
                                    NULL, NULL);
        if (rc != 0)
            return rc;
    }
    return gh_account_user_get(a, user_id, out);
}

int gh_account_throttle_unlock(gh_account_t *a, uint64_t user_id, bool *was_locked)
{
    gh_user_t user;
    *was_locked = false;
    int rc = gh_account_user_get(a, user_id, &user);
    if (rc != 0)
        return rc;
    if (a->ratelimit)
        *was_locked = gh_ratelimit_account_reset(
            a->ratelimit,
            gh_ratelimit_account_key(a->ratelimit, user.username, strlen(user.username)),
            gh_clock_mono_ns() / 1000000);
    gh_audit_event_t ev;
    gh_account_audit_event(a, &ev, GH_AUDIT_THROTTLE_UNLOCKED, GH_AUDIT_SUCCESS, user_id);
    gh_audit_event_detail(&ev, "was_locked=%s", *was_locked ? "true" : "false");
    if ((rc = gh_account_audit(a, &ev)) != 0)
        return rc;
    return gh_account_audit_admin(a, "throttle_unlock", user_id, NULL, ev.detail);
}
