/*
 * pages.h — the browser's front door: server-rendered HTML pages (/login, /account, /ops), the
 * small form routes behind their buttons, the redirect rule of a login, and the browser side of
 * forward auth. Pages use no JavaScript and no external asset; every dynamic value is escaped.
 *
 * The one decision a reader must know: pages never call the JSON handlers over HTTP. A browser
 * login posts to POST /v1/sessions itself (sessions.c asks gh_pages_login_is_form() and lets this
 * file turn the outcome into a 303 or the page again); the account buttons are page routes that
 * call the account service (src/account/) directly, each checked against a CSRF token derived
 * from the session.
 */
#ifndef GH_API_PAGES_H
#define GH_API_PAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/api.h"

/*
 * True when a browser may be sent to rd after a login: a path on this origin ("/x", never "//x"
 * or "/\x"), or an http(s) URL whose authority is `host` (the request's Host) or whose host is in
 * `allowed` (comma-separated; ".example.com" matches its subdomains). rd is taken as it is, never
 * decoded again; anything with a control character, a space, a backslash, user info or another
 * scheme is refused.
 */
bool gh_pages_redirect_ok(const char *rd, const char *host, const char *allowed);

/* A form-encoded field of the request body, decoded into the pool. Returns 0, GH_ENOTFOUND, or
 * GH_EINVAL (bad encoding) / GH_ENOMEM. */
int gh_pages_form_field(gh_req_t *r, const char *name, const char **out, size_t *len) GH_WUR;

/* The body is application/x-www-form-urlencoded. */
bool gh_pages_is_form(gh_req_t *r);
/* POST /v1/sessions from the login page: a form body with an "rd" field or Accept: text/html. */
bool gh_pages_login_is_form(gh_req_t *r);
/* Before every form login (any form-encoded body): refuses a cross-origin Origin (else Referer)
 * — the login page again with 403 for the page's login, the JSON 403 forbidden for another
 * client's. Returns true when it replied. */
bool gh_pages_login_refused(gh_req_t *r);
/* A form login succeeded: 303 to the checked rd, else /account (the caller adds the cookie). */
void gh_pages_login_done(gh_req_t *r);
/* A form login ended in an error reply: replaces it by the login page with one generic message. */
void gh_pages_login_failed(gh_req_t *r);
/* The login's second step as a page (the password was right; issue #18): a form posting the
 * pending token, the method and the code to /login/mfa; message: the error shown (then 401). */
void gh_pages_login_second_step(gh_req_t *r, const char *pending, uint32_t methods,
                                const char *message);
void gh_pages_login_mfa(gh_req_t *r); /* POST /login/mfa */
/* /account's second-factor forms (csrf and current_password; the confirm form: code) */
void gh_pages_account_totp(gh_req_t *r);          /* POST /account/factors/totp */
void gh_pages_account_totp_confirm(gh_req_t *r);  /* POST /account/factors/totp/{id}/confirm */
void gh_pages_account_factor_delete(gh_req_t *r); /* POST /account/factors/{id}/delete */
void gh_pages_account_recovery(gh_req_t *r);      /* POST /account/recovery-codes */
/* /v1/auth replied 401: with ?rd= or (Accept: text/html and --forward-auth-redirect) and an
 * original GET/HEAD, turns it into 302 to --login-url?rd=<the original URL>. */
void gh_pages_forward_auth_redirect(gh_req_t *r);

/* ---- what page files share (pages.c), for the admin console (admin_pages.c) ---- */

/* An HTML buffer in the request pool: bounded; an overflow turns the reply into 503. */
typedef struct gh_pages_html {
    char *buf;
    size_t len, cap;
    bool overflow;
} gh_pages_html_t;
#define GH_PAGES_CSRF_LEN 32
bool gh_pages_html_init(gh_req_t *r, gh_pages_html_t *h, size_t cap);
void gh_pages_put(gh_pages_html_t *h, const char *s);     /* constant markup */
void gh_pages_put_esc(gh_pages_html_t *h, const char *s); /* any value, escaped */
void gh_pages_put_int(gh_pages_html_t *h, long long v);
void gh_pages_put_nul(gh_pages_html_t *h); /* a NUL byte: the buffer as a C string */
void gh_pages_put_time(gh_pages_html_t *h, int64_t ms);
/* An inline POST form with the CSRF field and one button. */
void gh_pages_put_form(gh_pages_html_t *h, const char *action, const char *csrf, const char *label,
                       const char *aria);
void gh_pages_begin(gh_pages_html_t *h, const char *title);
void gh_pages_end(gh_pages_html_t *h);
void gh_pages_send(gh_req_t *r, int status, gh_pages_html_t *h);
void gh_pages_redirect(gh_req_t *r, int status, const char *location);
void gh_pages_message(gh_req_t *r, int status, const char *title, const char *text);
/* The caller's session and user (303 to /login?rd=back without one); 0 or replied. */
int gh_pages_session(gh_req_t *r, const char *back, gh_session_info_t *info,
                     uint8_t hash[GH_TOKEN_HASH_LEN], gh_user_t *user);
void gh_pages_csrf(const uint8_t hash[GH_TOKEN_HASH_LEN], char out[GH_PAGES_CSRF_LEN + 1]);
/* Origin (else Referer) is this host and the form's csrf field is the session's. */
bool gh_pages_csrf_ok(gh_req_t *r, const uint8_t hash[GH_TOKEN_HASH_LEN]);

/* Routes (routes.c). */
void gh_pages_login(gh_req_t *r);              /* GET /login */
void gh_pages_account(gh_req_t *r);            /* GET /account */
void gh_pages_account_revoke(gh_req_t *r);     /* POST /account/sessions/{id}/delete */
void gh_pages_account_logout(gh_req_t *r);     /* POST /account/logout */
void gh_pages_account_logout_all(gh_req_t *r); /* POST /account/logout-all */
void gh_pages_account_password(gh_req_t *r);   /* POST /account/password */
void gh_pages_ops(gh_req_t *r);                /* GET /ops */
/* the email pages (email.c) */
void gh_pages_reset(gh_req_t *r);              /* GET /reset */
void gh_pages_reset_post(gh_req_t *r);         /* POST /reset */
void gh_pages_reset_confirm(gh_req_t *r);      /* GET, HEAD /reset/confirm?token= */
void gh_pages_reset_confirm_post(gh_req_t *r); /* POST /reset/confirm */
void gh_pages_verify(gh_req_t *r);             /* GET, HEAD /verify?token= */
void gh_pages_verify_post(gh_req_t *r);        /* POST /verify */
/* The admin console (admin_pages.c): an admin user's session, the role read on every request. */
void gh_pages_admin(gh_req_t *r);        /* GET /admin */
void gh_pages_admin_user(gh_req_t *r);   /* GET /admin/users/{id} */
void gh_pages_admin_action(gh_req_t *r); /* POST /admin/users/{id}/{action} */
void gh_pages_admin_audit(gh_req_t *r);  /* GET /admin/audit */

#endif
