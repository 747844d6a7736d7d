/*
 * api.h — the HTTP API of DESIGN.md: the application context every handler sees, the route
 * table, and the helpers handlers share (JSON bodies, authentication, replies). Handlers parse a
 * request, call the account service (account/account.h: every workflow lives there) and render
 * its answer; they name no backend.
 *
 * Error codes map to the contract's error bodies in one place: gh_api_reply_err() (request.c).
 */
#ifndef GH_API_API_H
#define GH_API_API_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "account/account.h"
#include "account/email.h"
#include "auth/password.h"
#include "auth/token.h"
#include "auth/webauthn.h"
#include "config/config.h"
#include "store/grant.h"
#include "http/http.h"
#include "ratelimit/ratelimit.h"
#include "store/session.h"
#include "store/user.h"
#include "watch/watchdog.h"

/* Route flags (gh_route_t.flags; unsigned, as GH_ROUTE_GUARDED is the top bit). */
/* Needs the admin bearer token: the HTTP layer refuses the request (gh_api_admit) before the
 * handler runs, so an admin handler never checks it itself. */
#define GH_ROUTE_ADMIN (GH_ROUTE_GUARDED | (1u << 0))
/* The bulk of the traffic (token checks, probes, scrapes): a 2xx is logged at debug, not info;
 * /metrics counts every one of them, and a line each would cost more than the check. */
#define GH_ROUTE_QUIET (1u << 1)
/* An OAuth endpoint (/oidc/token, /oidc/revoke, /oidc/introspect, /oidc/userinfo): its errors
 * are RFC 6749 bodies {"error","error_description"} with Cache-Control: no-store, because
 * relying parties parse that form; the same error table decides them (request.c). */
#define GH_ROUTE_OAUTH (1u << 4)

typedef struct gh_api_metrics gh_api_metrics_t;

typedef struct {
    gh_config_t cfg;
    gh_user_store_t *users;
    gh_session_store_t *sessions;
    gh_password_pool_t *passwords;
    gh_api_metrics_t *metrics;
    uint8_t log_salt[16]; /* salts the session tags in the request log */
    int64_t started_ms;
    const char *cookie_name;          /* "gatehouse_session" or "__Host-gatehouse_session" */
    gh_ratelimit_t *ratelimit;        /* login and registration throttles (account/login.c) */
    gh_proxies_t proxies;             /* --trusted-proxies, parsed once at start */
    _Atomic(gh_http_server_t *) http; /* set while the node serves (metrics read it) */
    gh_watchdog_t *watchdog;          /* memory watchdog; NULL until the node starts it */
    gh_mail_store_t *mail_store;      /* the email tables; NULL: email is off */
    struct gh_account_email *email;   /* the email workflows and sender; NULL: email is off */
    struct gh_audit *audit;           /* the audit trail (account/audit.h); NULL: none */
    /* passkeys (api/passkey.c): the relying party (rp_id and origin point into cfg and
     * webauthn_origin) and the challenge table; NULL table: passkeys off */
    gh_webauthn_rp_t webauthn_rp;
    char webauthn_origin[GH_CONFIG_STR + 32];
    gh_webauthn_challenges_t *webauthn_challenges;
    gh_pending_store_t *pending; /* logins waiting for a second factor (store/pending.h) */
    gh_grant_store_t *grants;    /* OpenID Connect codes, families, consents (store/grant.h) */
    uint8_t secret_key[32];      /* --secret-key-file (auth/secretkey.h) */
    /* OpenID Connect (issue #21): the issuer — --public-url without a trailing slash, or
     * http:// + --listen — computed once by the node; every endpoint is issuer + "/oidc/...".
     * oidc_keys: the signing key set (account/oidc_keys.h), refreshed by the node every 60 s. */
    char issuer[GH_CONFIG_STR + 16];
    struct gh_oidc_keys *oidc_keys;
} gh_app_t;

/* ---- OpenID Connect discovery, keys and clients (oidc_discovery.c) ---- */
void gh_api_oidc_configuration(gh_req_t *r); /* GET /.well-known/openid-configuration */
void gh_api_oidc_jwks(gh_req_t *r);          /* GET /oidc/jwks */
void gh_api_admin_clients_list(gh_req_t *r); /* GET /v1/admin/clients */
void gh_api_admin_clients_add(gh_req_t *r);  /* POST /v1/admin/clients */
void gh_api_admin_clients_del(gh_req_t *r);  /* DELETE /v1/admin/clients/{client_id} */

/* ---- the audit trail and users' roles (audit.c) ---- */
void gh_api_admin_audit(gh_req_t *r);
void gh_api_account_activity(gh_req_t *r);
void gh_api_admin_patch_user(gh_req_t *r);
/* {"id","username","created_at","admin","disabled"} */
json_t *gh_api_user_json(const gh_user_t *u);

extern const gh_route_t gh_api_routes[];
extern const size_t gh_api_nroutes;

/* ---- email (email.c) ---- */
void gh_api_email_get(gh_req_t *r);              /* GET /v1/email */
void gh_api_email_put(gh_req_t *r);              /* PUT /v1/email */
void gh_api_email_verify(gh_req_t *r);           /* POST /v1/email/verify */
void gh_api_password_reset(gh_req_t *r);         /* POST /v1/password/reset */
void gh_api_password_reset_confirm(gh_req_t *r); /* POST /v1/password/reset/confirm */

/* ---- helpers shared by the handlers (request.c) ---- */

/* Parses the body as a JSON object. On failure replies (415 or 400) and returns non-zero. */
int gh_api_json_body(gh_req_t *r, json_t **out) GH_WUR;
/* Gets a required string member; on failure replies 400 invalid_request naming the field. */
int gh_api_json_str(gh_req_t *r, json_t *obj, const char *key, const char **s, size_t *len) GH_WUR;
/* Finds the token (Bearer header, else cookie), checks it and looks the session up.
 * On failure replies 401 unauthenticated (with WWW-Authenticate) and returns non-zero. */
int gh_api_authenticate(gh_req_t *r, gh_session_info_t *info,
                        uint8_t hash[GH_TOKEN_HASH_LEN]) GH_WUR;
/* Checks the admin bearer token (constant time). On failure replies 401/403. */
int gh_api_require_admin(gh_req_t *r) GH_WUR;
/* Replies with j (dumped into the request pool) and releases j. */
void gh_api_reply_json(gh_req_t *r, int status, json_t *j);
/* Maps a GH_E* code to the contract's status and error code and replies: the one table of
 * error bodies (request.c). No handler writes an error code itself. */
void gh_api_reply_err(gh_req_t *r, int err);
/* The same with a message of the caller's (NULL: the table's) and, for a 429 or 503, the seconds
 * to wait in Retry-After (retry_ms rounded up; <= 0: 1 s). */
void gh_api_reply_fail(gh_req_t *r, int err, const char *message, int64_t retry_ms);
/* Sets obj[key] = value, taking value even on failure (json_pack's "o" leaks it when the pack
 * fails before reaching it). Returns obj, or NULL (both released) when anything is missing. */
json_t *gh_api_json_set(json_t *obj, const char *key, json_t *value);
/* The session object of the contract, with "user_agent" and "ip" when s->has_client (listings
 * and a login; not who-am-I, whose lookup does not read the client). NULL on allocation
 * failure. */
json_t *gh_api_session_json(const gh_session_info_t *s);
/* Writes s as the inside of a JSON string (quote, backslash and control characters escaped;
 * other bytes as they are, so s must be UTF-8) into out, cutting at cap - 1 bytes; out is
 * always terminated. 6 * strlen(s) + 1 bytes always suffice. */
void gh_api_json_escape(const char *s, char *out, size_t cap);
/* The session cookie (HttpOnly, SameSite=Lax, Secure with --cookie-secure) carrying token for
 * --session-ttl, and the header that clears it. */
void gh_api_set_session_cookie(gh_req_t *r, const char *token);
void gh_api_clear_session_cookie(gh_req_t *r);
/* Records the caller's session for the request log, which shows a short salted hash of its id
 * (computed only when the line is written). */
void gh_api_tag_session(gh_req_t *r, const char *session_id);
/* Parses a uint64 path parameter; replies 404 and returns non-zero when it is not one. */
int gh_api_param_id(gh_req_t *r, size_t idx, uint64_t *out) GH_WUR;
/* Routes JSON allocation through gh_mem (GH_MEM_HTTP; freed memory is wiped). */
void gh_api_json_setup(void);
/* The parsing half of gh_api_json_body, without a request (the fuzz target calls it): parses
 * len bytes as one JSON object (duplicate keys rejected, escaped NUL allowed). Returns 0 with
 * *out a new reference; GH_ENOMEM when an allocation failed (jansson cannot say so itself);
 * GH_EINVAL with *why the client's error message. */
int gh_api_json_parse(const char *body, size_t len, json_t **out, const char **why) GH_WUR;

/* ---- form bodies (sessions.c) ---- */
/* Decodes one application/x-www-form-urlencoded value (n bytes at s) into the pool: 0,
 * GH_EINVAL for a malformed escape, GH_ENOMEM when the pool is out of room (a 503, not the
 * client's fault). */
int gh_api_form_decode(gh_pool_t *pool, const char *s, size_t n, const char **out,
                       size_t *outlen) GH_WUR;

/* Reads `username` and `password` from an application/x-www-form-urlencoded body of len bytes
 * (the login form), decoding each into pool: NUL-terminated, *ulen / *plen without the NUL, and
 * a value may hold NUL bytes (%00). Other keys are ignored; a key given twice keeps the last.
 * Returns 0; GH_EINVAL with *why the client's error message (malformed escape, missing field);
 * GH_ENOMEM when the pool is out of room. On failure *user and *pw are NULL. */
int gh_api_form_credentials(gh_pool_t *pool, const char *body, size_t len, const char **user,
                            size_t *ulen, const char **pw, size_t *plen, const char **why) GH_WUR;

/* ---- metrics (metrics.c) ---- */
int gh_api_metrics_init(gh_app_t *app) GH_WUR;
void gh_api_metrics_destroy(gh_app_t *app);
/* The probe the network stores report their round trips to (the store families of /metrics);
 * valid from gh_api_metrics_init until gh_api_metrics_destroy, so open the stores between. */
gh_store_probe_t gh_api_store_probe(gh_app_t *app);
/* The Prometheus text of every family (GET /metrics, ops.c); free with gh_metrics_text_free. */
int gh_api_metrics_render(gh_app_t *app, char **text, size_t *len) GH_WUR;
/* Hands the password pool the hash-duration histogram, once both exist (metrics start before
 * the stores and the pool, so that the stores can report to them). */
void gh_api_metrics_attach_passwords(gh_app_t *app);
void gh_api_count_login(gh_app_t *app, gh_login_result_t result);
/* Called by the HTTP layer when a request completes: metrics and the request log line. */
void gh_api_on_complete(gh_req_t *r, int64_t duration_ns);
/* Called by the HTTP layer as a reply is queued: the request counter. */
void gh_api_on_reply(gh_req_t *r);
/* The watchdog's counters callback (ctx = the app): live sessions, requests, failed and
 * rate-limited logins, all read without a lock. */
void gh_api_watch_counters(void *app, gh_watch_sample_t *out);
/* Counters read back for the /ops page (pages.c): every request so far, those answered 5xx,
 * and logins by outcome. */
typedef struct {
    uint64_t requests;
    uint64_t server_errors;
    uint64_t logins_ok;
    uint64_t logins_failed;
} gh_api_totals_t;
void gh_api_metrics_totals(gh_app_t *app, gh_api_totals_t *out);

/* ---- the memory read-out (ops.c): one reading, two renderings ---- */

/* Samples of the watchdog's ring a read-out carries at most (thinned evenly over the ring). */
#define GH_API_HISTORY_MAX 240

/* Everything /debug/memory (JSON) and /ops (HTML) show, read once per request. */
typedef struct {
    uint64_t rss, allocator, accounted, limit, cgroup_limit, session_budget;
    const char *session_policy; /* "evict-idle" or "refuse" */
    uint64_t component_bytes[GH_MEM__COUNT], component_objects[GH_MEM__COUNT];
    gh_session_stats_t sessions;
    gh_session_clients_stats_t clients; /* zeros unless sessions are in memory */
    uint64_t password_queue_depth;
    gh_api_totals_t totals;
    bool watching; /* a watchdog runs: watch and history are filled */
    gh_watch_status_t watch;
    gh_watch_sample_t *history; /* in the request pool, oldest first; NULL when nhistory is 0 */
    size_t nhistory;
} gh_api_memory_t;

/* Reads it all into *out, the history (at most history_max samples) into the request pool.
 * Returns 0 or GH_ENOMEM (the pool is full). */
int gh_api_memory_read(gh_req_t *r, size_t history_max, gh_api_memory_t *out) GH_WUR;
/* /debug/memory's document (a new reference; NULL on allocation failure). */
json_t *gh_api_memory_json(const gh_api_memory_t *m);

/* ---- the account service from a request (request.c) ---- */

/* The account service over this node's stores, pool, throttles and counters. */
void gh_api_account(gh_req_t *r, gh_account_t *out);
/* Who the request came from: the throttled address (gh_api_client_ip), the client a new session
 * records, and the route for log lines. */
void gh_api_account_client(gh_req_t *r, gh_account_client_t *out);
/* At start: warns about --ops-users entries that name no user (the node calls it once). */
void gh_api_account_start(gh_app_t *app);
/* The address the request is throttled as: the peer, or the client a trusted proxy names
 * (X-Forwarded-For, X-Real-IP; see gh_proxies_client). */
void gh_api_client_ip(gh_req_t *r, gh_ip_t *out);
/* The HTTP layer's guard (gh_http_options_t.admit): refuses a GH_ROUTE_ADMIN route without the
 * admin token (401/403, the contract's body) before its handler runs. */
int gh_api_admit(gh_req_t *r);

/* ---- handlers ---- */
void gh_api_register(gh_req_t *r);        /* POST /v1/users */
void gh_api_login(gh_req_t *r);           /* POST /v1/sessions */
void gh_api_whoami(gh_req_t *r);          /* GET /v1/session */
void gh_api_logout(gh_req_t *r);          /* DELETE /v1/session */
void gh_api_list_sessions(gh_req_t *r);   /* GET /v1/sessions */
void gh_api_revoke_session(gh_req_t *r);  /* DELETE /v1/sessions/{id} */
void gh_api_revoke_all(gh_req_t *r);      /* DELETE /v1/sessions */
void gh_api_change_password(gh_req_t *r); /* PUT /v1/password */
void gh_api_forward_auth(gh_req_t *r);    /* GET /v1/auth */
void gh_api_healthz(gh_req_t *r);
void gh_api_readyz(gh_req_t *r);
void gh_api_metrics(gh_req_t *r);
void gh_api_debug_memory(gh_req_t *r);
void gh_api_debug_heap(gh_req_t *r); /* GET /debug/heap[?growth=1], collapsed stacks */
void gh_api_admin_create_user(gh_req_t *r);
void gh_api_admin_list_users(gh_req_t *r);
void gh_api_admin_delete_user(gh_req_t *r);
void gh_api_admin_user_sessions(gh_req_t *r);
void gh_api_admin_revoke_user_sessions(gh_req_t *r);
void gh_api_admin_revoke_user_session(gh_req_t *r);
void gh_api_passkey_register_options(gh_req_t *r); /* POST /v1/factors/webauthn/options */
void gh_api_passkey_register(gh_req_t *r);         /* POST /v1/factors/webauthn */
void gh_api_passkey_login_options(gh_req_t *r);    /* POST /v1/sessions/passkey/options */
void gh_api_passkey_login(gh_req_t *r);            /* POST /v1/sessions/passkey */
void gh_api_passkey_mfa_options(gh_req_t *r);      /* POST /v1/sessions/mfa/options */
void gh_api_static_webauthn_js(gh_req_t *r);       /* GET /static/webauthn.js */
/* second factors (mfa.c) */
void gh_api_login_mfa(gh_req_t *r);           /* POST /v1/sessions/mfa */
void gh_api_factors_list(gh_req_t *r);        /* GET /v1/factors */
void gh_api_totp_enrol(gh_req_t *r);          /* POST /v1/factors/totp */
void gh_api_totp_confirm(gh_req_t *r);        /* POST /v1/factors/totp/{id}/confirm */
void gh_api_factor_delete(gh_req_t *r);       /* DELETE /v1/factors/{id} */
void gh_api_factor_rename(gh_req_t *r);       /* PATCH /v1/factors/{id} */
void gh_api_recovery_codes(gh_req_t *r);      /* POST /v1/recovery-codes */
void gh_api_admin_reset_factors(gh_req_t *r); /* DELETE /v1/admin/users/{id}/factors */
/* The 202 of a login that needs its second factor (sessions.c calls it; mfa.c). */
void gh_api_reply_mfa_required(gh_req_t *r, const gh_account_login_t *l);
/* Renders a finished login (token, session, user) as 201 with the cookie: one-step and
 * two-step logins alike (sessions.c). */
void gh_api_reply_login(gh_req_t *r, gh_account_t *a, gh_account_login_t *l);
void gh_api_count_mfa(void *app, const char *method, const char *result);
/* A factor as the API shows it (no secret); NULL on allocation failure. */
json_t *gh_api_factor_json(const gh_factor_t *f);
/* The QR code of text as an inline SVG document, into pool; NULL when it cannot be made. */
char *gh_api_qr_svg(gh_pool_t *pool, const char *text);

#endif
