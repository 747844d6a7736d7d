/*
 * mfa.c — the HTTP side of second factors (issue #18): the login's second step, the factor
 * list, TOTP enrolment and confirmation, removing a factor, new recovery codes, and the admin's
 * reset. The workflows are the account service's (account/mfa.c); this file parses and renders.
 *
 * The one design decision: every route that changes factors takes its proof (current_password,
 * or a second-factor `code`) in the same request, through one two-phase handler shape
 * (proved()): phase 0 authenticates, copies what phase 1 needs into the (wiped) request pool and
 * starts the proof — a password goes to the password pool and the request is suspended, a code
 * is checked at once — and phase 1 runs the route's action only when the proof holds.
 */
#include "api/api.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

/* ---- the second step of a login ---- */

/* An optional string member: 0 (absent: *s NULL), or replies 400 when it is not a string. */
static int opt_str(gh_req_t *r, json_t *obj, const char *key, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
        gh_api_reply_fail(r, GH_EINVAL, msg, 0);
        return GH_EINVAL;
    }
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* POST /v1/sessions/mfa {"pending","method","code"} (or "credential" for webauthn). */
void gh_api_login_mfa(gh_req_t *r)
{
    r->pool.wipe = true;
    json_t *json = NULL;
    const char *pending, *method, *code = NULL;
    size_t plen, mlen, clen = 0;
    char *cred = NULL;
    if (gh_api_json_body(r, &json) != 0)
        return;
    if (gh_api_json_str(r, json, "pending", &pending, &plen) != 0 ||
        gh_api_json_str(r, json, "method", &method, &mlen) != 0)
        goto out;
    gh_account_mfa_proof_t proof = {.method = method};
    if (strcmp(method, GH_MFA_WEBAUTHN) == 0) {
        json_t *c = json_object_get(json, "credential");
        if (!json_is_object(c)) {
            gh_api_reply_fail(r, GH_EINVAL, "\"credential\" must be an object", 0);
            goto out;
        }
        size_t n = json_dumpb(c, NULL, 0, JSON_COMPACT);
        cred = n ? gh_pool_alloc(&r->pool, n + 1) : NULL;
        if (!cred) {
            gh_api_reply_err(r, GH_ENOMEM);
            goto out;
        }
        proof.credential_len = json_dumpb(c, cred, n, JSON_COMPACT);
        cred[proof.credential_len] = '\0';
        proof.credential = cred;
    } else {
        if (gh_api_json_str(r, json, "code", &code, &clen) != 0)
            goto out;
        proof.code = code;
        proof.code_len = clen;
    }
    gh_account_t a;
    gh_account_client_t client;
    gh_api_account(r, &a);
    gh_api_account_client(r, &client);
    gh_account_login_t *l = gh_pool_alloc(&r->pool, sizeof *l);
    if (!l) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    int rc = gh_account_mfa_finish(&a, l, pending, plen, &proof, &client);
    if (rc == GH_EINVAL) {
        gh_api_reply_fail(r, GH_EINVAL,
                          "\"method\" must be one of the methods the pending login offers", 0);
        goto out;
    }
    if (rc != 0) {
        gh_api_reply_fail(r, rc, NULL, l->retry_ms);
        goto out;
    }
    gh_api_reply_login(r, &a, l);
out:
    json_decref(json);
}

/* ---- rendering ---- */

json_t *gh_api_factor_json(const gh_factor_t *f)
{
    char c[GH_RFC3339_LEN], u[GH_RFC3339_LEN];
    gh_clock_rfc3339(f->created_at_ms, c);
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)f->id, "type",
                          f->type == GH_FACTOR_WEBAUTHN ? "webauthn" : "totp", "name", f->name,
                          "created_at", c, "confirmed", f->confirmed);
    if (!j)
        return NULL;
    if (f->last_used_at_ms) {
        gh_clock_rfc3339(f->last_used_at_ms, u);
        json_object_set_new(j, "last_used_at", json_string(u));
    } else {
        json_object_set_new(j, "last_used_at", json_null());
    }
    return j;
}

/* ---- routes that need a proof ---- */

typedef enum { ACT_ENROL, ACT_DELETE, ACT_RECOVERY } action_t;

typedef struct {
    gh_account_proof_t proof;
    action_t action;
    uint64_t user_id, factor_id;
    uint8_t keep[GH_TOKEN_HASH_LEN];
    char *name;
} proved_t;

static void resume(void *arg)
{
    gh_req_resume(arg);
}

static void run_action(gh_req_t *r, gh_account_t *a, proved_t *st)
{
    int rc;
    size_t revoked = 0;
    if (st->action == ACT_ENROL) {
        gh_account_totp_enrol_t *e = gh_pool_alloc(&r->pool, sizeof *e);
        if (!e) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        if ((rc = gh_account_totp_enrol(a, &st->proof.user, st->name, e)) != 0) {
            gh_api_reply_err(r, rc);
            return;
        }
        char *svg = gh_api_qr_svg(&r->pool, e->uri);
        json_t *j = json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)e->factor.id, "secret",
                              e->secret_b32, "otpauth_uri", e->uri, "qr_svg", svg ? svg : "");
        sodium_memzero(e->secret_b32, sizeof e->secret_b32);
        gh_api_reply_json(r, 201, j);
        return;
    }
    if (st->action == ACT_DELETE) {
        rc = gh_account_factor_remove(a, st->user_id, st->factor_id, st->keep, &revoked);
        if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            (void)gh_reply(r, 204, NULL, NULL, 0);
        return;
    }
    char codes[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
    rc = gh_account_recovery_regenerate(a, st->user_id, st->keep, codes, &revoked);
    if (rc == GH_EINVAL) {
        gh_api_reply_fail(r, GH_EINVAL, "recovery codes need a confirmed second factor first", 0);
        return;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < GH_RECOVERY_CODES; i++)
        json_array_append_new(list, json_string(codes[i]));
    sodium_memzero(codes, sizeof codes);
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "recovery_codes", list));
}

static void proved(gh_req_t *r, action_t action)
{
    r->pool.wipe = true;
    proved_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    json_t *json = NULL;
    int rc;
    if (r->phase == 1) {
        rc = gh_account_proof_continue(&a, &st->proof);
        if (rc != 0)
            gh_api_reply_fail(r, rc == GH_ECODE ? GH_ECURRENT : rc,
                              rc == GH_ECODE ? "the second-factor code is wrong" : NULL, 0);
        else
            run_action(r, &a, st);
        return;
    }
    gh_session_info_t session;
    if (!(st = gh_pool_alloc(&r->pool, sizeof *st))) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    memset(st, 0, sizeof *st);
    r->state = st;
    st->action = action;
    if (gh_api_authenticate(r, &session, st->keep) != 0)
        return;
    st->user_id = session.user_id;
    if (action == ACT_DELETE && gh_api_param_id(r, 0, &st->factor_id) != 0)
        return;
    if (gh_api_json_body(r, &json) != 0)
        return;
    const char *pw, *code, *name;
    size_t plen, clen, nlen;
    if (opt_str(r, json, "current_password", &pw, &plen) != 0 ||
        opt_str(r, json, "code", &code, &clen) != 0 || opt_str(r, json, "name", &name, &nlen) != 0)
        goto out;
    if (!pw && !code) {
        gh_api_reply_fail(r, GH_EINVAL,
                          "\"current_password\" (or a second-factor \"code\") is "
                          "required",
                          0);
        goto out;
    }
    if (name && (nlen == 0 || nlen > GH_FACTOR_NAME_MAX || strlen(name) != nlen)) {
        gh_api_reply_fail(r, GH_EINVAL, "\"name\" must be 1 to 64 bytes", 0);
        goto out;
    }
    /* What phase 1 reads outlives the JSON document: copies in the (wiped) pool. */
    char *pcopy = pw ? gh_pool_strndup(&r->pool, pw, plen) : NULL;
    st->name = name ? gh_pool_strndup(&r->pool, name, nlen) : NULL;
    if ((pw && !pcopy) || (name && !st->name)) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    rc = gh_account_proof_begin(&a, &st->proof, st->user_id, pcopy, plen, code, clen);
    if (rc != 0) {
        gh_api_reply_fail(r, rc == GH_EAUTH ? GH_EUNAUTH : rc, NULL, 0);
        goto out;
    }
    r->phase = 1;
    if (st->proof.job.kind == GH_ACCOUNT_JOB_NONE) {
        proved(r, action); /* decided by the code already */
        goto out;
    }
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->proof.job, resume, r))
        gh_req_resume(r); /* not queued: phase 1 reports why */
out:
    json_decref(json);
}

void gh_api_totp_enrol(gh_req_t *r)
{
    proved(r, ACT_ENROL);
}

void gh_api_factor_delete(gh_req_t *r)
{
    proved(r, ACT_DELETE);
}

void gh_api_recovery_codes(gh_req_t *r)
{
    proved(r, ACT_RECOVERY);
}

/* ---- routes with the session only ---- */

void gh_api_factors_list(gh_req_t *r)
{
    gh_session_info_t session;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &session, hash) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    gh_account_factors_t f;
    int rc = gh_account_factors_list(&a, &r->pool, session.user_id, &f);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < f.n; i++)
        json_array_append_new(list, gh_api_factor_json(&f.list[i]));
    json_t *j = gh_api_json_set(
        json_pack("{s:I}", "recovery_codes_left", (json_int_t)f.recovery_left), "factors", list);
    if (j && f.recovery_used_at_ms) {
        char t[GH_RFC3339_LEN];
        gh_clock_rfc3339(f.recovery_used_at_ms, t);
        json_object_set_new(j, "recovery_code_used_at", json_string(t));
    }
    gh_api_reply_json(r, 200, j);
}

void gh_api_totp_confirm(gh_req_t *r)
{
    r->pool.wipe = true;
    gh_session_info_t session;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &session, hash) != 0)
        return;
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return;
    json_t *json;
    if (gh_api_json_body(r, &json) != 0)
        return;
    const char *code;
    size_t clen;
    if (gh_api_json_str(r, json, "code", &code, &clen) == 0) {
        gh_account_t a;
        gh_api_account(r, &a);
        gh_factor_t *f = gh_pool_alloc(&r->pool, sizeof *f);
        char codes[GH_RECOVERY_CODES][GH_RECOVERY_CODE_LEN + 1];
        size_t n = 0;
        int rc = f ? gh_account_totp_confirm(&a, session.user_id, id, code, clen, f, codes, &n)
                   : GH_ENOMEM;
        if (rc != 0) {
            gh_api_reply_err(r, rc);
        } else {
            json_t *list = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(list, json_string(codes[i]));
            sodium_memzero(codes, sizeof codes);
            gh_api_reply_json(
                r, 200,
                gh_api_json_set(gh_api_json_set(json_object(), "factor", gh_api_factor_json(f)),
                                "recovery_codes", list));
        }
    }
    json_decref(json);
}

/* PATCH /v1/factors/{id} {"name"}: the session is enough (a name changes no security). */
void gh_api_factor_rename(gh_req_t *r)
{
    gh_session_info_t session;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &session, hash) != 0)
        return;
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return;
    json_t *json;
    if (gh_api_json_body(r, &json) != 0)
        return;
    const char *name;
    size_t nlen;
    if (gh_api_json_str(r, json, "name", &name, &nlen) == 0) {
        gh_account_t a;
        gh_api_account(r, &a);
        gh_factor_t *f = gh_pool_alloc(&r->pool, sizeof *f);
        int rc = !f ? GH_ENOMEM
                 : nlen == 0 || nlen > GH_FACTOR_NAME_MAX || strlen(name) != nlen
                     ? GH_EINVAL
                     : gh_account_factor_rename(&a, session.user_id, id, name, f);
        if (rc == GH_EINVAL)
            gh_api_reply_fail(r, GH_EINVAL, "\"name\" must be 1 to 64 bytes", 0);
        else if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            gh_api_reply_json(r, 200,
                              gh_api_json_set(json_object(), "factor", gh_api_factor_json(f)));
    }
    json_decref(json);
}

/* DELETE /v1/admin/users/{id}/factors (GH_ROUTE_ADMIN). */
void gh_api_admin_reset_factors(gh_req_t *r)
{
    uint64_t id;
    if (gh_api_param_id(r, 0, &id) != 0)
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t removed;
    int rc = gh_account_factors_reset(&a, id, &removed);
    if (rc == GH_ENOTFOUND)
        gh_api_reply_fail(r, GH_ENOTFOUND, "no such user", 0);
    else if (rc != 0)
        gh_api_reply_err(r, rc);
    else
        (void)gh_reply(r, 204, NULL, NULL, 0);
}
