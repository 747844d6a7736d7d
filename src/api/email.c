/*
 * email.c — the email routes: GET/PUT /v1/email, POST /v1/email/verify, POST /v1/password/reset
 * and /v1/password/reset/confirm, and their pages: /reset (forgot password), /reset/confirm and
 * /verify (the links a message carries). Each parses, calls the account service (account/email.h)
 * and renders.
 *
 * The one design decision: a link's page never spends its token. GET and HEAD of /reset/confirm
 * or /verify only look the token up and show a form whose button POSTs it back; mail scanners and
 * link previews that fetch the page (even twice) leave the link usable, and only the person who
 * presses the button spends it.
 */
#include "api/api.h"
#include "api/pages.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

typedef struct {
    gh_account_reset_t reset;
    gh_account_email_change_t change;
    bool page; /* the form of /reset/confirm, not the JSON route */
} email_state_t;

static void resume(void *arg)
{
    gh_req_resume(arg);
}

static email_state_t *state_new(gh_req_t *r)
{
    email_state_t *st = gh_pool_alloc(&r->pool, sizeof *st);
    if (st)
        memset(st, 0, sizeof *st);
    r->state = st;
    return st;
}

static bool email_on(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (app->email)
        return true;
    gh_api_reply_fail(r, GH_ENOTFOUND, "email is not configured on this server", 0);
    return false;
}

/* An optional string member: NULL when absent; non-zero (and replied) when not a string. */
static int json_opt_str(gh_req_t *r, json_t *obj, const char *key, const char **s, size_t *len)
{
    *s = NULL;
    *len = 0;
    if (!json_object_get(obj, key))
        return 0;
    return gh_api_json_str(r, obj, key, s, len);
}

/* ---- JSON ---- */

void gh_api_email_get(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    gh_session_info_t session;
    uint8_t token_hash[GH_TOKEN_HASH_LEN];
    if (gh_api_authenticate(r, &session, token_hash) != 0)
        return;
    char email[GH_MAIL_ADDR_MAX + 1];
    bool verified;
    int rc = gh_account_email_get(&a, session.user_id, email, &verified);
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_api_reply_json(r, 200,
                      json_pack("{s:o,s:b}", "email", email[0] ? json_string(email) : json_null(),
                                "verified", verified));
}

void gh_api_email_put(gh_req_t *r)
{
    r->pool.wipe = true;
    if (r->phase == 0 && !email_on(r))
        return;
    email_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    json_t *json = NULL;
    int rc;
    if (r->phase == 0) {
        if (!(st = state_new(r))) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        gh_session_info_t session;
        uint8_t token_hash[GH_TOKEN_HASH_LEN];
        if (gh_api_authenticate(r, &session, token_hash) != 0)
            return;
        if (gh_api_json_body(r, &json) != 0)
            return;
        const char *cur, *email;
        size_t clen, elen;
        if (gh_api_json_str(r, json, "current_password", &cur, &clen) != 0 ||
            gh_api_json_str(r, json, "email", &email, &elen) != 0)
            goto out;
        char *copy = gh_pool_strndup(&r->pool, cur, clen);
        rc = copy ? gh_account_email_change_begin(&a, &st->change, session.user_id, copy, clen,
                                                  email, elen)
                  : GH_ENOMEM;
        if (rc != 0) {
            gh_api_reply_err(r, rc);
            goto out;
        }
    } else {
        rc = gh_account_email_change_continue(&a, &st->change);
        if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            gh_api_reply_json(
                r, 202, json_pack("{s:s,s:b}", "email", st->change.email, "confirmation_sent", 1));
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->change.job, resume, r))
        gh_req_resume(r);
out:
    json_decref(json);
}

void gh_api_email_verify(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    json_t *json = NULL;
    const char *tok;
    size_t tlen;
    if (gh_api_json_body(r, &json) != 0)
        return;
    if (gh_api_json_str(r, json, "token", &tok, &tlen) == 0) {
        int rc = gh_account_email_verify(&a, tok, tlen);
        if (rc != 0)
            gh_api_reply_err(r, rc);
        else
            (void)gh_reply(r, 204, NULL, NULL, 0);
    }
    json_decref(json);
}

static const char RESET_SENT[] =
    "{\"status\":\"accepted\",\"message\":\"if an account matches, a reset link has been sent "
    "to its verified email address\"}";

void gh_api_password_reset(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    gh_account_client_t c;
    gh_api_account_client(r, &c);
    json_t *json = NULL;
    const char *email, *name;
    size_t elen, nlen;
    int64_t retry = 0;
    if (gh_api_json_body(r, &json) != 0)
        return;
    if (json_opt_str(r, json, "email", &email, &elen) != 0 ||
        json_opt_str(r, json, "username", &name, &nlen) != 0)
        goto out;
    if (!email && !name) {
        gh_api_reply_fail(r, GH_EINVAL, "give \"email\" or \"username\"", 0);
        goto out;
    }
    int rc = email ? gh_account_reset_request(&a, &c, true, email, elen, &retry)
                   : gh_account_reset_request(&a, &c, false, name, nlen, &retry);
    if (rc != 0)
        gh_api_reply_fail(r, rc, NULL, retry);
    else
        (void)gh_reply(r, 202, "application/json", RESET_SENT, sizeof RESET_SENT - 1);
out:
    json_decref(json);
}

/* ---- pages: a small HTML writer in the request pool ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool overflow;
} page_t;

static void p_put(page_t *h, const char *s)
{
    size_t n = strlen(s);
    if (h->overflow || h->len + n > h->cap) {
        h->overflow = true;
        return;
    }
    memcpy(h->buf + h->len, s, n);
    h->len += n;
}

static void p_esc(page_t *h, const char *s)
{
    char one[2] = {0, 0};
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            p_put(h, "&amp;");
            break;
        case '<':
            p_put(h, "&lt;");
            break;
        case '>':
            p_put(h, "&gt;");
            break;
        case '"':
            p_put(h, "&quot;");
            break;
        case '\'':
            p_put(h, "&#39;");
            break;
        default:
            one[0] = *s;
            p_put(h, one);
        }
    }
}

static bool p_begin(gh_req_t *r, page_t *h, const char *title)
{
    h->cap = 8192;
    h->len = 0;
    h->buf = gh_pool_alloc(&r->pool, h->cap);
    h->overflow = !h->buf;
    if (!h->buf)
        return false;
    p_put(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             "<meta name=\"referrer\" content=\"no-referrer\"><title>");
    p_esc(h, title);
    p_put(h, " · Gatehouse</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:"
             "52rem;margin:2rem auto;padding:0 1rem}label{display:block;margin:.6rem 0 .2rem}"
             "input{width:100%;max-width:22rem;padding:.4rem;font:inherit}button{font:inherit;"
             "padding:.35rem .9rem;margin-top:.6rem}.err{color:#8b0000;font-weight:600}"
             ".ok{color:#05603a}</style></head><body><main>\n<h1>");
    p_esc(h, title);
    p_put(h, "</h1>\n");
    return true;
}

static void p_send(gh_req_t *r, int status, page_t *h)
{
    p_put(h, "</main></body></html>\n");
    if (h->overflow) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    r->nheaders = 0;
    if (gh_reply(r, status, "text/html; charset=utf-8", h->buf, h->len) != 0)
        return;
    (void)gh_reply_header(r, "Cache-Control", "no-store");
    (void)gh_reply_header(r, "Content-Security-Policy",
                          "default-src 'none'; style-src 'unsafe-inline'; "
                          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
    (void)gh_reply_header(r, "X-Frame-Options", "DENY");
    /* the token is in this page's URL: never hand it to another site */
    (void)gh_reply_header(r, "Referrer-Policy", "no-referrer");
}

static void p_message(gh_req_t *r, int status, const char *title, const char *cls, const char *text)
{
    page_t h;
    if (!p_begin(r, &h, title)) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    p_put(&h, "<p class=\"");
    p_put(&h, cls);
    p_put(&h, "\" role=\"status\" id=\"message\">");
    p_esc(&h, text);
    p_put(&h, "</p>\n<p><a href=\"/login\" id=\"to-login\">Log in</a></p>\n");
    p_send(r, status, &h);
}

static const char *form_value(gh_req_t *r, const char *name, size_t *len)
{
    const char *v = NULL;
    *len = 0;
    if (gh_pages_form_field(r, name, &v, len) != 0)
        return NULL;
    return v;
}

/* GET /reset: the forgot-password form. */
void gh_pages_reset(gh_req_t *r)
{
    if (!email_on(r))
        return;
    page_t h;
    if (!p_begin(r, &h, "Reset your password")) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    p_put(&h, "<p>Give the email address of your account, or its username. If the account has "
              "a verified address, a link to choose a new password is sent to it.</p>\n"
              "<form method=\"post\" action=\"/reset\" aria-label=\"Reset your password\">\n"
              "<label for=\"ident\">Email address or username</label>\n"
              "<input id=\"ident\" name=\"ident\" type=\"text\" autocomplete=\"email\" required "
              "maxlength=\"254\" autofocus>\n"
              "<div><button type=\"submit\">Send the link</button></div>\n</form>\n"
              "<p><a href=\"/login\">Back to log in</a></p>\n");
    p_send(r, 200, &h);
}

/* POST /reset (the form): the same request as POST /v1/password/reset. */
void gh_pages_reset_post(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    gh_account_client_t c;
    gh_api_account_client(r, &c);
    size_t len;
    const char *ident = form_value(r, "ident", &len);
    int64_t retry = 0;
    int rc = GH_EINVAL;
    if (ident && len)
        rc = gh_account_reset_request(&a, &c, memchr(ident, '@', len) != NULL, ident, len, &retry);
    if (rc == 0)
        p_message(r, 200, "Check your email", "ok",
                  "If an account matches, a link to choose a new password has been sent to its "
                  "verified email address. The link works for 30 minutes.");
    else if (rc == GH_ELIMIT)
        p_message(r, 429, "Reset your password", "err",
                  "Too many requests. Try again in a few minutes.");
    else if (rc == GH_EEMAIL || rc == GH_EINVAL)
        p_message(r, 400, "Reset your password", "err",
                  "That is neither an email address nor a username.");
    else
        p_message(r, 503, "Reset your password", "err",
                  "The service cannot take the request now. Try again later.");
}

/* GET and HEAD /reset/confirm?token=…: the new-password form. Spends nothing. */
void gh_pages_reset_confirm(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    const char *tok = gh_req_query(r, "token");
    bool needs_code = false;
    int rc = tok ? gh_account_link_peek(&a, true, tok, strlen(tok), &needs_code) : GH_ETOKEN;
    if (rc == GH_ETOKEN) {
        p_message(r, 400, "Reset your password", "err",
                  "This link is invalid, already used, or expired. Ask for a new one at /reset.");
        return;
    }
    if (rc != 0) {
        p_message(r, 503, "Reset your password", "err", "Try again later.");
        return;
    }
    page_t h;
    if (!p_begin(r, &h, "Choose a new password")) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    p_put(&h, "<form method=\"post\" action=\"/reset/confirm\" aria-label=\"Choose a new "
              "password\">\n<input type=\"hidden\" name=\"token\" value=\"");
    p_esc(&h, tok);
    p_put(&h, "\">\n<label for=\"new_password\">New password</label>\n"
              "<input id=\"new_password\" name=\"new_password\" type=\"password\" "
              "autocomplete=\"new-password\" required minlength=\"8\" maxlength=\"1024\">\n");
    if (needs_code)
        p_put(&h, "<label for=\"code\">Second-factor code or recovery code</label>\n"
                  "<input id=\"code\" name=\"code\" type=\"text\" autocomplete=\"one-time-code\" "
                  "required>\n");
    p_put(&h, "<div><button type=\"submit\">Set the password</button></div>\n</form>\n"
              "<p>Every session of the account ends when the password is set.</p>\n");
    p_send(r, 200, &h);
}

/* POST /v1/password/reset/confirm (JSON) and POST /reset/confirm (the page's form). */
static void reset_confirm(gh_req_t *r, bool page)
{
    r->pool.wipe = true;
    if (r->phase == 0 && !email_on(r))
        return;
    email_state_t *st = r->state;
    gh_account_t a;
    gh_api_account(r, &a);
    json_t *json = NULL;
    int rc;
    if (r->phase == 0) {
        if (!(st = state_new(r))) {
            gh_api_reply_err(r, GH_ENOMEM);
            return;
        }
        st->page = page;
        const char *tok = NULL, *pw = NULL, *code = NULL;
        size_t tlen = 0, plen = 0, clen = 0;
        if (page) {
            tok = form_value(r, "token", &tlen);
            pw = form_value(r, "new_password", &plen);
            code = form_value(r, "code", &clen);
            if (!tok || !pw) {
                p_message(r, 400, "Reset your password", "err", "The form is incomplete.");
                return;
            }
        } else {
            if (gh_api_json_body(r, &json) != 0)
                return;
            if (gh_api_json_str(r, json, "token", &tok, &tlen) != 0 ||
                gh_api_json_str(r, json, "new_password", &pw, &plen) != 0 ||
                json_opt_str(r, json, "code", &code, &clen) != 0)
                goto out;
        }
        char *copy = gh_pool_strndup(&r->pool, pw, plen);
        rc = copy ? gh_account_reset_begin(&a, &st->reset, tok, tlen, copy, plen, code, clen)
                  : GH_ENOMEM;
        if (rc != 0)
            goto fail;
    } else {
        rc = gh_account_reset_continue(&a, &st->reset);
        if (rc != 0)
            goto fail;
        if (st->page)
            p_message(r, 200, "Password changed", "ok",
                      "Your password was changed and every session of the account has ended. "
                      "Log in with the new password.");
        else
            (void)gh_reply(r, 204, NULL, NULL, 0);
        return;
    }
    r->phase = 1;
    gh_req_suspend(r);
    if (!gh_account_submit(&a, &st->reset.job, resume, r))
        gh_req_resume(r);
    goto out;
fail:
    if (!st->page)
        gh_api_reply_err(r, rc);
    else if (rc == GH_ETOKEN)
        p_message(r, 400, "Reset your password", "err",
                  "This link is invalid, already used, or expired. Ask for a new one at /reset.");
    else if (rc == GH_EPASSWORD)
        p_message(r, 400, "Reset your password", "err",
                  "Passwords are 8 to 1024 characters. Go back and choose another.");
    else if (rc == GH_EMFA)
        p_message(r, 401, "Reset your password", "err",
                  "A second-factor code or a recovery code is needed.");
    else
        p_message(r, 503, "Reset your password", "err", "Try again later.");
out:
    json_decref(json);
}

void gh_api_password_reset_confirm(gh_req_t *r)
{
    reset_confirm(r, false);
}

void gh_pages_reset_confirm_post(gh_req_t *r)
{
    reset_confirm(r, true);
}

/* GET and HEAD /verify?token=…: a button that confirms the address. Spends nothing. */
void gh_pages_verify(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    const char *tok = gh_req_query(r, "token");
    bool unused;
    int rc = tok ? gh_account_link_peek(&a, false, tok, strlen(tok), &unused) : GH_ETOKEN;
    if (rc != 0) {
        p_message(r, rc == GH_ETOKEN ? 400 : 503, "Confirm your email address", "err",
                  rc == GH_ETOKEN ? "This link is invalid, already used, or expired."
                                  : "Try again later.");
        return;
    }
    page_t h;
    if (!p_begin(r, &h, "Confirm your email address")) {
        gh_api_reply_err(r, GH_ENOMEM);
        return;
    }
    p_put(&h, "<form method=\"post\" action=\"/verify\" aria-label=\"Confirm the address\">\n"
              "<input type=\"hidden\" name=\"token\" value=\"");
    p_esc(&h, tok);
    p_put(&h, "\">\n<button type=\"submit\">Confirm this address</button>\n</form>\n");
    p_send(r, 200, &h);
}

/* POST /verify: spends the token. */
void gh_pages_verify_post(gh_req_t *r)
{
    if (!email_on(r))
        return;
    gh_account_t a;
    gh_api_account(r, &a);
    size_t len;
    const char *tok = form_value(r, "token", &len);
    int rc = tok ? gh_account_email_verify(&a, tok, len) : GH_ETOKEN;
    if (rc == 0)
        p_message(r, 200, "Address confirmed", "ok", "Your email address is confirmed.");
    else if (rc == GH_ETOKEN)
        p_message(r, 400, "Confirm your email address", "err",
                  "This link is invalid, already used, or expired.");
    else if (rc == GH_EEMAILTAKEN)
        p_message(r, 409, "Confirm your email address", "err",
                  "Another account has this address now.");
    else
        p_message(r, 503, "Confirm your email address", "err", "Try again later.");
}
