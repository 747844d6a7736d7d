/*
 * passkey.c — the HTTP side of passkeys (WebAuthn): creation and request options, registering a
 * passkey (with proof), passwordless sign-in, and the one static script the pages use.
 * The workflows are the account service's (src/account/passkey.c); this file decodes the
 * browser's credential JSON into auth/webauthn.h's fixed structs, calls it and renders.
 *
 * The one design decision: options are the WebAuthn dictionaries in their JSON form (every
 * binary member base64url, the shape of PublicKeyCredentialCreationOptionsJSON), under
 * "publicKey", so a browser script turns them into navigator.credentials arguments with a few
 * lines and no library; and every credential comes back in the same JSON form.
 */
#include "api/api.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "account/passkey.h"
#include "common/base64url.h"
#include "common/log.h"

#define CEREMONY_TIMEOUT_MS 300000 /* what the browser is told; the table's TTL is the same */

static void resume(void *arg)
{
    gh_req_resume(arg);
}

static json_t *b64_json(const uint8_t *p, size_t n)
{
    char buf[GH_BASE64URL_LEN(GH_WEBAUTHN_CHALLENGE_LEN) + 8];
    if (n > GH_WEBAUTHN_CHALLENGE_LEN)
        return NULL;
    gh_base64url_encode(p, n, buf);
    return json_string(buf);
}

/* The caller's session and its user; replies and returns non-zero on failure. */
static int session_user(gh_req_t *r, gh_user_t *user)
{
    gh_session_info_t info;
    uint8_t hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &info, hash) != 0)
        return GH_EAUTH;
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_session_user(&a, &info, hash, user);
    if (rc == GH_ENOTFOUND) {
        gh_api_reply_fail(r, GH_EUNAUTH, "the session has ended or never existed", 0);
        return GH_EAUTH;
    }
    if (rc != 0)
        gh_api_reply_err(r, rc);
    return rc;
}

static int issue(gh_req_t *r, gh_webauthn_ceremony_t kind, const uint8_t *subject,
                 uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN])
{
    gh_account_t a;
    gh_api_account(r, &a);
    int rc = gh_account_passkey_challenge(&a, kind, subject, challenge);
    if (rc == GH_EINVAL)
        gh_api_reply_fail(r, GH_EINVAL, "passkeys are not configured (--webauthn-rp-id)", 0);
    else if (rc != 0)
        gh_api_reply_err(r, rc);
    return rc;
}

/* POST /v1/factors/webauthn/options — creation options for the session's user. */
void gh_api_passkey_register_options(gh_req_t *r)
{
    gh_user_t user;
    if (session_user(r, &user) != 0)
        return;
    gh_app_t *app = r->app;
    uint8_t subject[GH_WEBAUTHN_SUBJECT_LEN], challenge[GH_WEBAUTHN_CHALLENGE_LEN];
    uint8_t handle[GH_PASSKEY_USER_HANDLE_LEN];
    gh_account_passkey_subject(user.id, subject);
    gh_account_passkey_user_handle(user.id, handle);
    if (issue(r, GH_WEBAUTHN_REGISTER, subject, challenge) != 0)
        return;
    json_t *pk =
        json_pack("{s:{s:s,s:s}, s:{s:o,s:s,s:s}, s:o, s:[{s:s,s:i},{s:s,s:i}], s:i, s:s,"
                  " s:{s:s,s:b,s:s}, s:[]}",
                  "rp", "id", app->webauthn_rp.rp_id, "name", "Gatehouse", "user", "id",
                  b64_json(handle, sizeof handle), "name", user.username, "displayName",
                  user.username, "challenge", b64_json(challenge, sizeof challenge),
                  "pubKeyCredParams", "type", "public-key", "alg", GH_WEBAUTHN_ALG_ES256, "type",
                  "public-key", "alg", GH_WEBAUTHN_ALG_EDDSA, "timeout", CEREMONY_TIMEOUT_MS,
                  "attestation", "none", "authenticatorSelection", "residentKey", "preferred",
                  "requireResidentKey", 0, "userVerification", "preferred", "excludeCredentials");
    sodium_memzero(challenge, sizeof challenge);
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "publicKey", pk));
}

typedef struct {
    gh_account_passkey_add_t add;
    /* copies in the (wiped) request pool: the proof outlives the JSON */
    char *current, *code;
} add_state_t;

/* An optional string member copied into the pool: 0 (absent: *out NULL), or replied 400/503. */
static int optional_str(gh_req_t *r, json_t *json, const char *key, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    json_t *v = json_object_get(json, key);
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        char msg[96];
        snprintf(msg, sizeof msg, "\"%s\" must be a string", key);
        gh_api_reply_fail(r, GH_EINVAL, msg, 0);
        return GH_EINVAL;
    }
    *len = json_string_length(v);
    if (!(*out = gh_pool_strndup(&r->pool, json_string_value(v), *len))) {
        gh_api_reply_err(r, GH_ENOMEM);
        return GH_ENOMEM;
    }
    return 0;
}

static json_t *factor_json(const gh_factor_t *f)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:I}", "id", (json_int_t)f->id, "type", "webauthn", "name",
                     f->name, "created_at", (json_int_t)(f->created_at_ms / 1000), "last_used_at",
                     (json_int_t)(f->last_used_at_ms / 1000));
}

/* Replies to a refused credential: the reason is the message. */
static void reply_refused(gh_req_t *r, int rc, const char *why)
{
    if (why && (rc == GH_EINVAL || rc == GH_ETOOBIG || rc == GH_EPASSKEY || rc == GH_EEXISTS ||
                rc == GH_ELIMIT))
        gh_api_reply_fail(r, rc == GH_EEXISTS || rc == GH_ELIMIT ? GH_EINVAL : rc, why, 0);
    else
        gh_api_reply_err(r, rc);
}

/* POST /v1/factors/webauthn {"current_password","name","credential"} */
void gh_api_passkey_register(gh_req_t *r)
{
    r->pool.wipe = true;
    add_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    json_t *json = NULL;
    int rc;
    if (r->phase == 0) {
        gh_user_t user;
        if (session_user(r, &user) != 0)
            return;
        if (gh_api_json_body(r, &json) != 0)
            return;
        const char *name;
        size_t nlen, clen, codelen;
        if (gh_api_json_str(r, json, "name", &name, &nlen) != 0)
            goto out;
        st = gh_pool_alloc(&r->pool, sizeof *st);
        if (!st) {
            gh_api_reply_err(r, GH_ENOMEM);
            goto out;
        }
        r->state = st;
        if (optional_str(r, json, "current_password", &st->current, &clen) != 0 ||
            optional_str(r, json, "code", &st->code, &codelen) != 0)
            goto out;
        const char *why = NULL;
        rc =
            gh_webauthn_parse_registration(json_object_get(json, "credential"), &st->add.reg, &why);
        if (rc != 0) {
            reply_refused(r, rc == GH_EAUTH ? GH_EPASSKEY : rc, why);
            goto out;
        }
        gh_account_client_t client;
        gh_api_account_client(r, &client);
        rc = gh_account_passkey_add_begin(&a, &st->add, user.id, st->current, clen, st->code,
                                          codelen, name, nlen, &client);
        if (rc != 0) {
            reply_refused(r, rc, st->add.why);
            goto out;
        }
        if (st->add.proof.job.kind != GH_ACCOUNT_JOB_VERIFY) { /* a code: decided already */
            r->phase = 1;
            gh_api_passkey_register(r);
            goto out;
        }
    } else {
        rc = gh_account_passkey_add_continue(&a, &st->add);
        if (rc != 0) {
            reply_refused(r, rc, st->add.why);
            return;
        }
        gh_api_reply_json(r, 201,
                          gh_api_json_set(json_object(), "factor", factor_json(&st->add.factor)));
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->add.proof.job, resume, r))
        gh_req_resume(r); /* not queued: the next phase reports why */
out:
    json_decref(json);
}

/* POST /v1/sessions/passkey/options — request options for a passwordless sign-in. */
void gh_api_passkey_login_options(gh_req_t *r)
{
    gh_app_t *app = r->app;
    uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN];
    if (issue(r, GH_WEBAUTHN_PASSWORDLESS, NULL, challenge) != 0)
        return;
    json_t *pk =
        json_pack("{s:o,s:s,s:i,s:s,s:[]}", "challenge", b64_json(challenge, sizeof challenge),
                  "rpId", app->webauthn_rp.rp_id, "timeout", CEREMONY_TIMEOUT_MS,
                  "userVerification", "required", "allowCredentials");
    sodium_memzero(challenge, sizeof challenge);
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "publicKey", pk));
}

/* POST /v1/sessions/passkey {"credential"} — 201 with the body of a password login. */
void gh_api_passkey_login(gh_req_t *r)
{
    r->pool.wipe = true;
    json_t *json = NULL;
    if (gh_api_json_body(r, &json) != 0)
        return;
    gh_account_login_t *l = gh_pool_alloc(&r->pool, sizeof *l);
    gh_webauthn_assertion_t *as = gh_pool_alloc(&r->pool, sizeof *as);
    if (!l || !as) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    const char *why = NULL;
    int rc = gh_webauthn_parse_assertion(json_object_get(json, "credential"), as, &why);
    if (rc != 0) {
        reply_refused(r, rc == GH_EAUTH ? GH_EPASSKEY : rc, why);
        goto out;
    }
    gh_account_t a;
    gh_account_client_t client;
    gh_api_account(r, &a);
    gh_api_account_client(r, &client);
    rc = gh_account_passkey_login(&a, l, as, &client, &why);
    if (rc != 0) {
        if (rc == GH_ELIMIT)
            gh_api_reply_fail(r, rc, NULL, l->retry_ms);
        else
            reply_refused(r, rc, why);
        goto out;
    }
    gh_api_tag_session(r, l->session.id);
    json_t *j = gh_api_json_set(
        gh_api_json_set(json_pack("{s:s}", "token", l->token), "session",
                        gh_api_session_json(&l->session)),
        "user",
        json_pack("{s:I, s:s}", "id", (json_int_t)l->user.id, "username", l->user.username));
    gh_api_reply_json(r, 201, j);
    if (r->status == 201)
        gh_api_set_session_cookie(r, l->token);
    else /* the reply failed: the client never learns the token, so the session must go */
        gh_account_login_abandon(&a, l);
    sodium_memzero(l->token, sizeof l->token);
out:
    json_decref(json);
}

/* POST /v1/sessions/mfa/options {"pending"} — request options for the second step. */
void gh_api_passkey_mfa_options(gh_req_t *r)
{
    gh_app_t *app = r->app;
    json_t *json = NULL;
    if (gh_api_json_body(r, &json) != 0)
        return;
    const char *pending;
    size_t plen;
    if (gh_api_json_str(r, json, "pending", &pending, &plen) != 0)
        goto out;
    gh_account_passkey_id_t *ids = gh_pool_alloc(&r->pool, GH_FACTORS_MAX * sizeof *ids);
    if (!ids) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto out;
    }
    gh_account_t a;
    gh_api_account(r, &a);
    uint8_t challenge[GH_WEBAUTHN_CHALLENGE_LEN];
    size_t n = 0;
    int rc = gh_account_passkey_mfa_options(&a, pending, plen, challenge, ids, &n);
    if (rc == GH_EINVAL) {
        gh_api_reply_fail(r, GH_EINVAL, "passkeys are not configured (--webauthn-rp-id)", 0);
        goto out;
    }
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        goto out;
    }
    json_t *allow = json_array();
    for (size_t i = 0; i < n; i++) {
        char *id = gh_pool_alloc(&r->pool, GH_BASE64URL_LEN(ids[i].len) + 1);
        if (!id)
            break;
        gh_base64url_encode(ids[i].id, ids[i].len, id);
        json_array_append_new(allow, json_pack("{s:s,s:s}", "type", "public-key", "id", id));
    }
    json_t *pk =
        json_pack("{s:o,s:s,s:i,s:s,s:o}", "challenge", b64_json(challenge, sizeof challenge),
                  "rpId", app->webauthn_rp.rp_id, "timeout", CEREMONY_TIMEOUT_MS,
                  "userVerification", "preferred", "allowCredentials", allow);
    sodium_memzero(challenge, sizeof challenge);
    gh_api_reply_json(r, 200, gh_api_json_set(json_object(), "publicKey", pk));
out:
    json_decref(json);
}

/* The script itself (GET /static/webauthn.js), kept here so the binary serves it with no file
 * to install. */
static const char webauthn_js[] =
    "// webauthn.js: the one script of Gatehouse's pages. Browsers offer passkeys (WebAuthn) only "
    "to\n"
    "// JavaScript, so the passkey buttons of /login and /account come to life here; everything "
    "else on\n"
    "// the pages works without it. It talks only to this origin's JSON API (CSP: script-src "
    "'self',\n"
    "// connect-src 'self').\n"
    "(function () {\n"
    "  'use strict';\n"
    "  function dec(s) {\n"
    "    s = s.replace(/-/g, '+').replace(/_/g, '/');\n"
    "    while (s.length % 4) s += '=';\n"
    "    var b = atob(s), u = new Uint8Array(b.length);\n"
    "    for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);\n"
    "    return u.buffer;\n"
    "  }\n"
    "  function enc(buf) {\n"
    "    var u = new Uint8Array(buf), s = '';\n"
    "    for (var i = 0; i < u.length; i++) s += String.fromCharCode(u[i]);\n"
    "    return btoa(s).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');\n"
    "  }\n"
    "  function ids(list) {\n"
    "    return (list || []).map(function (c) { return { type: c.type, id: dec(c.id) }; });\n"
    "  }\n"
    "  function credential(c) {\n"
    "    var r = c.response, o = { id: c.id, rawId: enc(c.rawId), type: c.type,\n"
    "                              response: { clientDataJSON: enc(r.clientDataJSON) } };\n"
    "    if (r.attestationObject) o.response.attestationObject = enc(r.attestationObject);\n"
    "    if (r.authenticatorData) {\n"
    "      o.response.authenticatorData = enc(r.authenticatorData);\n"
    "      o.response.signature = enc(r.signature);\n"
    "      if (r.userHandle) o.response.userHandle = enc(r.userHandle);\n"
    "    }\n"
    "    return o;\n"
    "  }\n"
    "  async function call(method, path, body) {\n"
    "    var res = await fetch(path, { method: method, credentials: 'same-origin',\n"
    "                                  headers: { 'Content-Type': 'application/json' },\n"
    "                                  body: JSON.stringify(body || {}) });\n"
    "    var j = null;\n"
    "    try { j = await res.json(); } catch (e) { j = null; }\n"
    "    return { status: res.status, body: j };\n"
    "  }\n"
    "  function fail(el, res, fallback) {\n"
    "    var why = res && res.body && res.body.error && res.body.error.message;\n"
    "    el.textContent = why ? fallback + ' (' + why + ')' : fallback;\n"
    "    el.hidden = false;\n"
    "  }\n"
    "  async function get(options) {\n"
    "    var pk = options.body.publicKey;\n"
    "    pk.challenge = dec(pk.challenge);\n"
    "    pk.allowCredentials = ids(pk.allowCredentials);\n"
    "    return credential(await navigator.credentials.get({ publicKey: pk }));\n"
    "  }\n"
    "  function go(el) {\n"
    "    var rd = el.getAttribute('data-rd');\n"
    "    location.assign(rd || '/account');\n"
    "  }\n"
    "  function wire(id, fn) {\n"
    "    var el = document.getElementById(id);\n"
    "    if (!el) return;\n"
    "    el.hidden = false;\n"
    "    var msg = document.getElementById(id + '-msg');\n"
    "    el.addEventListener(el.tagName === 'FORM' ? 'submit' : 'click', function (ev) {\n"
    "      ev.preventDefault();\n"
    "      msg.hidden = true;\n"
    "      fn(el).catch(function (e) { fail(msg, null, 'The passkey was not used: ' + e.message); "
    "});\n"
    "    });\n"
    "  }\n"
    "  wire('passkey-login', async function (el) {\n"
    "    var o = await call('POST', '/v1/sessions/passkey/options');\n"
    "    if (o.status !== 200) return fail(document.getElementById('passkey-login-msg'), o, 'Try "
    "again.');\n"
    "    var res = await call('POST', '/v1/sessions/passkey', { credential: await get(o) });\n"
    "    if (res.status === 201) return go(el);\n"
    "    fail(document.getElementById('passkey-login-msg'), res, 'The passkey was refused.');\n"
    "  });\n"
    "  wire('passkey-mfa', async function (el) {\n"
    "    var pending = el.getAttribute('data-pending');\n"
    "    var o = await call('POST', '/v1/sessions/mfa/options', { pending: pending });\n"
    "    if (o.status !== 200) return fail(document.getElementById('passkey-mfa-msg'), o, 'Try "
    "again.');\n"
    "    var res = await call('POST', '/v1/sessions/mfa',\n"
    "                         { pending: pending, method: 'webauthn', credential: await get(o) "
    "});\n"
    "    if (res.status === 201) return go(el);\n"
    "    fail(document.getElementById('passkey-mfa-msg'), res, 'The passkey was refused.');\n"
    "  });\n"
    "  wire('passkey-add', async function (form) {\n"
    "    var msg = document.getElementById('passkey-add-msg');\n"
    "    var o = await call('POST', '/v1/factors/webauthn/options');\n"
    "    if (o.status !== 200) return fail(msg, o, 'Try again.');\n"
    "    var pk = o.body.publicKey;\n"
    "    pk.challenge = dec(pk.challenge);\n"
    "    pk.user.id = dec(pk.user.id);\n"
    "    pk.excludeCredentials = ids(pk.excludeCredentials);\n"
    "    var c = credential(await navigator.credentials.create({ publicKey: pk }));\n"
    "    var res = await call('POST', '/v1/factors/webauthn', {\n"
    "      current_password: form.elements.current_password.value,\n"
    "      name: form.elements.name.value, credential: c });\n"
    "    if (res.status === 201) return location.assign('/account?done=passkey');\n"
    "    fail(msg, res, 'The passkey was refused.');\n"
    "  });\n"
    "})();\n";

/* GET /static/webauthn.js — the one script the pages load (script-src 'self'). */
void gh_api_static_webauthn_js(gh_req_t *r)
{
    if (gh_reply(r, 200, "text/javascript; charset=utf-8", webauthn_js, sizeof webauthn_js - 1) !=
        0)
        return;
    (void)gh_reply_header(r, "Cache-Control", "no-cache");
    (void)gh_reply_header(r, "Content-Security-Policy", "default-src 'none'");
    (void)gh_reply_header(r, "X-Content-Type-Options", "nosniff");
}
