/*
 * audit.h — the audit trail: one event for every security-relevant act of the account service
 * (who did what to whom, from where, on which node, with what outcome), kept in the user store's
 * append-only `audit_events` table, copied to --audit-log as JSON lines, and read back by
 * GET /v1/admin/audit, GET /v1/account/activity, the admin console and `gatehouse audit`.
 *
 * How a workflow emits: fill an event with gh_audit_event_init() (type, outcome, subject user,
 * the request's client), adjust actor / session / detail with the setters, then
 *   - gh_account_audit(a, &ev): DURABLE. Returns once the event is stored (0) or with the
 *     store's error; a state-changing request is not answered as a success before its event is
 *     stored. Use it for everything except the two below.
 *   - gh_account_audit_queued(a, &ev): for login.failed and login.throttled, which an attacker
 *     can make as fast as they like. Never blocks: the event goes into a bounded, accounted
 *     queue that one writer thread drains; when the queue is full the event is dropped and
 *     counted (gatehouse_audit_dropped_total), never silently.
 * Both are no-ops answering 0 when the account service has no audit trail (a->audit NULL).
 *
 * The one design decision: the trail is written by the account service where each workflow
 * decides its outcome — not by handlers, not by the store — so the JSON API, the pages and the
 * command line produce the same events exactly once, and token checks (which are no workflow)
 * are never audited (they are counted in metrics).
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef GH_ACCOUNT_AUDIT_H
#define GH_ACCOUNT_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "account/account.h"
#include "store/audit_record.h"

/* X(ENUM, "type") — the contract's event types. ADMIN is "admin.<action>". */
#define GH_AUDIT_TYPE_MAP(X)                                                                       \
    X(LOGIN_SUCCEEDED, "login.succeeded")                                                          \
    X(LOGIN_FAILED, "login.failed")                                                                \
    X(LOGIN_THROTTLED, "login.throttled")                                                          \
    X(MFA_SUCCEEDED, "mfa.succeeded")                                                              \
    X(MFA_FAILED, "mfa.failed")                                                                    \
    X(LOGOUT, "logout")                                                                            \
    X(SESSION_REVOKED, "session.revoked")                                                          \
    X(PASSWORD_CHANGED, "password.changed")                                                        \
    X(PASSWORD_RESET, "password.reset")                                                            \
    X(FACTOR_ADDED, "factor.added")                                                                \
    X(FACTOR_REMOVED, "factor.removed")                                                            \
    X(RECOVERY_CODE_USED, "recovery_code.used")                                                    \
    X(EMAIL_CHANGED, "email.changed")                                                              \
    X(EMAIL_VERIFIED, "email.verified")                                                            \
    X(USER_CREATED, "user.created")                                                                \
    X(USER_DELETED, "user.deleted")                                                                \
    X(USER_DISABLED, "user.disabled")                                                              \
    X(USER_ENABLED, "user.enabled")                                                                \
    X(THROTTLE_UNLOCKED, "throttle.unlocked")                                                      \
    X(OIDC_AUTHORIZED, "oidc.authorized")                                                          \
    X(OIDC_CONSENT, "oidc.consent")                                                                \
    X(OIDC_TOKEN, "oidc.token")                                                                    \
    X(OIDC_REFRESH_REUSE, "oidc.refresh_reuse")                                                    \
    X(OIDC_REVOKED, "oidc.revoked")                                                                \
    X(ADMIN, "admin")

typedef enum {
#define GH__AUDIT_ENUM(e, n) GH_AUDIT_##e,
    GH_AUDIT_TYPE_MAP(GH__AUDIT_ENUM)
#undef GH__AUDIT_ENUM
        GH_AUDIT__COUNT
} gh_audit_type_t;

typedef enum { GH_AUDIT_SUCCESS = 0, GH_AUDIT_FAILURE = 1 } gh_audit_outcome_t;

/* The contract name of a type ("login.failed"; "admin" for GH_AUDIT_ADMIN); "?" out of range. */
const char *gh_audit_type_name(gh_audit_type_t type);
/* True when s is a type the trail can hold: one of the map's names, or "admin.<action>" with
 * <action> of 1..32 characters [a-z0-9_]. Used to check the `type` filter of reads. */
bool gh_audit_type_valid(const char *s);

/*
 * Starts an event: time now, the type's name, the outcome, the subject user (0: none/unknown),
 * the client's IP and user agent (c may be NULL: none), and the actor "user:<user_id>" (or
 * "anonymous" when user_id is 0) — the subject acting on their own account. Everything else
 * empty. The node is filled when the event is emitted.
 */
void gh_audit_event_init(gh_audit_event_t *ev, gh_audit_type_t type, gh_audit_outcome_t outcome,
                         uint64_t user_id, const gh_account_client_t *c);
/* An admin.<action> event (action: [a-z0-9_]{1,32}, e.g. "session_revoke"), by the admin user
 * admin_id (actor "admin:<id>") on the subject user_id. */
void gh_audit_event_init_admin(gh_audit_event_t *ev, const char *action, uint64_t admin_id,
                               uint64_t user_id, gh_audit_outcome_t outcome,
                               const gh_account_client_t *c);
/* Who acted, as text: "user:<id>", "admin:<id>", "system", "cli", "token" (the bearer token).
 * Cut to GH_AUDIT_ACTOR_MAX. */
void gh_audit_event_actor(gh_audit_event_t *ev, const char *actor);
/* The actor "admin:<id>". */
void gh_audit_event_actor_admin(gh_audit_event_t *ev, uint64_t admin_id);
/* The session concerned (its public id; NULL: none). */
void gh_audit_event_session(gh_audit_event_t *ev, const char *session_id);
/* Free-form detail, printf-style, cut to GH_AUDIT_DETAIL_MAX: reason codes and counts such as
 * "reason=invalid_credentials" or "by=password_change". Never a password, token or code. */
void gh_audit_event_detail(gh_audit_event_t *ev, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Durable emit (see above): 0 once stored; GH_ESTORE / GH_EBUSY / GH_ENOMEM when it could not be
 * stored (the caller then answers an error, not a success). a->audit NULL: 0. */
int gh_account_audit(gh_account_t *a, gh_audit_event_t *ev) GH_WUR;
/* Queued emit (see above): never blocks, never fails; a full queue counts a drop. */
void gh_account_audit_queued(gh_account_t *a, const gh_audit_event_t *ev);
/* Durable emit WITH the user-store change it records: change(users, arg) and the event in one
 * transaction where the store allows (gh_user_audited: SQLite yes; PostgreSQL the change, then
 * the event). Without a trail: change alone. Returns change's error, or the store's. */
int gh_account_audit_change(gh_account_t *a, gh_audit_event_t *ev,
                            int (*change)(gh_user_store_t *s, void *arg), void *arg) GH_WUR;

/* An event of a workflow run for account a: like gh_audit_event_init with a's caller (client and
 * actor, account.h) — the way the account service's workflows start their events. */
void gh_account_audit_event(gh_account_t *a, gh_audit_event_t *ev, gh_audit_type_t type,
                            gh_audit_outcome_t outcome, uint64_t user_id);
/* True when a's caller is an administrator (the bearer token or an admin user's session). */
bool gh_account_by_admin(const gh_account_t *a);
/* When a's caller is an administrator: stores admin.<action> on user_id (session_id and detail
 * may be NULL). Otherwise 0 and nothing. Durable, as gh_account_audit. */
int gh_account_audit_admin(gh_account_t *a, const char *action, uint64_t user_id,
                           const char *session_id, const char *detail) GH_WUR;

/* ---- the trail itself (the node opens it; the account service holds it in a->audit) ---- */

typedef struct gh_audit gh_audit_t;

typedef struct {
    gh_user_store_t *users; /* where events are stored (required) */
    const char *node;       /* this node's name, written on every event ("" allowed) */
    size_t queue_cap;       /* queued events at most; 0 = 1024 */
    int64_t retention_ms;   /* --audit-retention; 0 = keep forever */
    const char *log_path;   /* --audit-log: a file, "-" for stdout, NULL or "": none */
    /* Told of every stored admin.<action> event (a DogStatsD event when --statsd is set);
     * NULL: nobody. Called on the emitting thread, must not block. */
    void (*on_admin)(void *ctx, const gh_audit_event_t *ev);
    void *on_admin_ctx;
} gh_audit_options_t;

typedef struct {
    uint64_t stored_total;  /* events stored */
    uint64_t dropped_total; /* queued events dropped: the queue was full */
    uint64_t failed_total;  /* events the store refused (its error was logged) */
    uint64_t pruned_total;  /* events removed by retention */
    size_t queue_len, queue_cap;
} gh_audit_stats_t;

/* Opens the trail and starts its writer thread; charges the queue to GH_MEM_AUDIT. GH_EINVAL
 * (no store, bad options), GH_EIO (the --audit-log file cannot be opened), GH_ENOMEM. Close with
 * gh_audit_close, which drains the queue (bounded wait), stops the thread and sets *au NULL. */
int gh_audit_open(const gh_audit_options_t *opt, gh_audit_t **out) GH_WUR;
void gh_audit_close(gh_audit_t **au);

/* Stores one event now (fills node and, when 0, time): the durable path. */
int gh_audit_emit(gh_audit_t *au, gh_audit_event_t *ev) GH_WUR;
/* The same, with the user-store change it records (gh_account_audit_change). */
int gh_audit_emit_with(gh_audit_t *au, gh_audit_event_t *ev,
                       int (*change)(gh_user_store_t *s, void *arg), void *arg) GH_WUR;
/* Queues one event for the writer thread: the non-blocking path. */
void gh_audit_emit_queued(gh_audit_t *au, const gh_audit_event_t *ev);

/* One step of retention: removes at most `max` events older than the retention, oldest first;
 * *removed how many. Called by the node's maintenance tick (bounded work per tick). */
int gh_audit_prune(gh_audit_t *au, int64_t now_ms, size_t max, size_t *removed) GH_WUR;

/* Events matching q, newest first, at most cap into out; *n how many. *next_before the cursor of
 * the next page (the last event's id), 0 when this page is the last. */
int gh_audit_read(gh_audit_t *au, const gh_audit_query_t *q, gh_audit_event_t *out, size_t cap,
                  size_t *n, int64_t *next_before) GH_WUR;

void gh_audit_stats(gh_audit_t *au, gh_audit_stats_t *out);

/* Writes ev as one JSON object (no newline) into buf, the shape of docs/API.md:
 * {"id","time","type","actor","user","session_id","ip","user_agent","node","outcome","detail"}.
 * Returns the length, or GH_ETOOBIG when it does not fit. */
int gh_audit_event_json(const gh_audit_event_t *ev, char *buf, size_t cap) GH_WUR;

#endif
