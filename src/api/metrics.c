/*
 * metrics.c — the service's metric families (names are part of the contract, DESIGN.md) and the
 * per-request bookkeeping: one counter and one histogram update per request, then the request
 * log line. Families whose values live elsewhere (sessions, memory, the password queue) are
 * callback families read at scrape time, so the request path never touches them.
 */
#include "api/api.h"
#include "api/oidc.h"

#include "account/audit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/probe.h"
#include "store/writes.h"
#include "watch/metrics.h"

#define MAX_ROUTE_LABELS 128 /* distinct route templates; past it: "unmatched" */

static const char *const status_codes[] = {"200", "201", "204", "302", "303",  "400",
                                           "401", "403", "404", "405", "409",  "413",
                                           "415", "429", "500", "503", "other"};
#define NCODES (sizeof status_codes / sizeof status_codes[0])
static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "other"};
/* gatehouse_mfa_total's labels; the last of each list catches anything else */
static const char *const mfa_methods[] = {"totp", "recovery_code", "webauthn", "none"};
#define NMFA_METHODS (sizeof mfa_methods / sizeof mfa_methods[0])
static const char *const mfa_results[] = {"success", "failure", "expired", "rate_limited", "error"};
#define NMFA_RESULTS (sizeof mfa_results / sizeof mfa_results[0])
#define NMETHODS (sizeof methods / sizeof methods[0])
/* gatehouse_oidc_* labels (account/oidc.h); a grant's result is "ok" or its OAuth error */
static const char *const oidc_authz_results[] = {
#define GH__OIDC_AUTHZ_NAME(e, n) n,
    GH_OIDC_AUTHZ_RESULT_MAP(GH__OIDC_AUTHZ_NAME)
#undef GH__OIDC_AUTHZ_NAME
};
static const char *const oidc_grant_types[] = {"authorization_code", "refresh_token"};
static const char *const oidc_grant_results[] = {"ok",
                                                 "invalid_request",
                                                 "invalid_client",
                                                 "invalid_grant",
                                                 "invalid_scope",
                                                 "unauthorized_client",
                                                 "unsupported_grant_type",
                                                 "server_error"};
#define NOIDC_GRANT_RESULTS (sizeof oidc_grant_results / sizeof oidc_grant_results[0])

struct gh_api_metrics {
    gh_metrics_t *registry;
    gh_metric_t *requests;  /* route x method x code */
    gh_metric_t *durations; /* route */
    gh_metric_t *logins;    /* result */
    gh_metric_t *mfa;       /* method x result: second steps (issue #18) */
    gh_metric_t *oidc_authz, *oidc_grants, *oidc_reuse; /* OpenID Connect (issue #21) */
    const char *route_labels[MAX_ROUTE_LABELS];
    size_t nroutes;
    size_t route_of[128]; /* route table index -> route label index */

    /* Round trips to Redis and PostgreSQL (store/probe.h): store x op, and errors by store. */
    gh_metric_t *store_durations;
    gh_metric_t *store_errors;

    /* The password pool's jobs (auth/password.c observes them once attached). */
    gh_metric_t *password_durations;
    gh_password_observer_t password_observer; /* into password_durations */
};

static size_t code_index(int status)
{
    char s[8];
    snprintf(s, sizeof s, "%d", status);
    for (size_t i = 0; i + 1 < NCODES; i++)
        if (strcmp(s, status_codes[i]) == 0)
            return i;
    return NCODES - 1;
}

static size_t method_index(unsigned m)
{
    switch (m) {
    case GH_HTTP_GET:
        return 0;
    case GH_HTTP_HEAD:
        return 1;
    case GH_HTTP_POST:
        return 2;
    case GH_HTTP_PUT:
        return 3;
    case GH_HTTP_DELETE:
        return 4;
    default:
        return 5;
    }
}

static int collect_pending(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_pending_stats_t st = {0};
    (void)n;
    if (app->pending) {
        gh_pending_expire(app->pending, gh_clock_now_ms(), SIZE_MAX);
        gh_pending_stats(app->pending, &st);
    }
    v[0] = (double)st.live;
    return 0;
}

static int collect_sessions_active(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_session_stats_t st;
    (void)n;
    gh_session_stats(app->sessions, &st);
    v[0] = (double)st.active;
    return 0;
}

static int collect_sessions_created(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_session_stats_t st;
    (void)n;
    gh_session_stats(app->sessions, &st);
    v[0] = (double)st.created_total;
    return 0;
}

static int collect_sessions_ended(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_session_stats_t st;
    gh_session_stats(app->sessions, &st);
    for (size_t i = 0; i < n && i < GH_END__COUNT; i++)
        v[i] = (double)st.ended_total[i];
    return 0;
}

static int collect_memory_bytes(void *ctx, double *v, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        v[i] = (double)gh_mem_bytes((gh_mem_component_t)i);
    return 0;
}

static int collect_memory_objects(void *ctx, double *v, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        v[i] = (double)gh_mem_objects((gh_mem_component_t)i);
    return 0;
}

static int collect_memory_limit(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    (void)n;
    v[0] = (double)app->cfg.memory_limit;
    return 0;
}

static int collect_session_budget(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    (void)n;
    v[0] = (double)app->cfg.session_memory;
    return 0;
}

static int collect_unexplained(void *ctx, double *v, size_t n)
{
    (void)ctx;
    (void)n;
    double rss = (double)gh_mem_rss_bytes();
    if (rss == 0)
        return 1;
    v[0] = rss - (double)gh_mem_total_bytes();
    return 0;
}

static int collect_allocator(void *ctx, double *v, size_t n)
{
    (void)ctx;
    (void)n;
    v[0] = (double)gh_mem_allocator_in_use();
    return 0;
}

static int collect_queue_depth(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    (void)n;
    v[0] = (double)gh_password_queue_depth(app->passwords);
    return 0;
}

/* The watchdog's figures; left out of a scrape until the node has started the watchdog. */
static int collect_eta(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    return app->watchdog ? gh_watchdog_collect_eta(app->watchdog, v, n) : 1;
}

static int collect_alert_firing(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    return app->watchdog ? gh_watchdog_collect_firing(app->watchdog, v, n) : 1;
}

/* The throttles' figures, read at scrape time like the other callback families. */
static int collect_ratelimit(void *ctx, double *v, size_t n, int which)
{
    gh_app_t *app = ctx;
    if (!app->ratelimit)
        return 1;
    gh_ratelimit_stats_t st;
    gh_ratelimit_stats(app->ratelimit, &st);
    /* Series order follows the label values: {"ip", "account"}. */
    const uint64_t by[][2] = {{st.ip_rejected, st.account_rejected},
                              {st.ip_entries, st.account_entries},
                              {st.ip_capacity, st.account_capacity},
                              {st.ip_evictions, st.account_evictions},
                              {st.lockouts, 0}};
    for (size_t i = 0; i < n && i < 2; i++)
        v[i] = (double)by[which][i];
    return 0;
}

static int collect_rl_rejected(void *ctx, double *v, size_t n)
{
    return collect_ratelimit(ctx, v, n, 0);
}

static int collect_rl_entries(void *ctx, double *v, size_t n)
{
    return collect_ratelimit(ctx, v, n, 1);
}

static int collect_rl_capacity(void *ctx, double *v, size_t n)
{
    return collect_ratelimit(ctx, v, n, 2);
}

static int collect_rl_evictions(void *ctx, double *v, size_t n)
{
    return collect_ratelimit(ctx, v, n, 3);
}

static int collect_rl_lockouts(void *ctx, double *v, size_t n)
{
    return collect_ratelimit(ctx, v, n, 4);
}

static int collect_deadline_cuts(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_http_server_t *http = atomic_load(&app->http);
    if (!http || n < 2)
        return 1;
    uint64_t header, body;
    gh_http_deadline_cuts(http, &header, &body);
    v[0] = (double)header;
    v[1] = (double)body;
    return 0;
}

/* The email outbox (account/outbox.c); the families are left out while email is off. */
static int collect_email(void *ctx, double *v, int which)
{
    gh_app_t *app = ctx;
    if (!app->email)
        return 1;
    gh_email_stats_t st;
    gh_account_email_stats(app->email, &st);
    const double by[] = {
        (double)st.depth,           st.oldest_age_s,      (double)st.sent, (double)st.failed,
        (double)st.attempts_failed, st.delivering ? 1 : 0};
    v[0] = by[which];
    return 0;
}

static int collect_email_depth(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 0) : 1;
}

static int collect_email_oldest(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 1) : 1;
}

static int collect_email_sent(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 2) : 1;
}

static int collect_email_failed(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 3) : 1;
}

static int collect_email_retries(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 4) : 1;
}

static int collect_email_delivering(void *ctx, double *v, size_t n)
{
    return n ? collect_email(ctx, v, 5) : 1;
}

static int collect_write_failures(void *ctx, double *v, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n && i < GH_STORE_DB__COUNT; i++)
        v[i] = (double)gh_store_write_failures((gh_store_db_t)i);
    return 0;
}

static int collect_writable(void *ctx, double *v, size_t n)
{
    (void)ctx;
    for (size_t i = 0; i < n && i < GH_STORE_DB__COUNT; i++)
        v[i] = gh_store_writable((gh_store_db_t)i) ? 1 : 0;
    return 0;
}

static int collect_user_stale(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_user_cache_stats_t st;
    (void)n;
    gh_user_cache_stats(app->users, &st);
    v[0] = (double)st.stale_total;
    return 0;
}

static int collect_user_stale_age(void *ctx, double *v, size_t n)
{
    gh_app_t *app = ctx;
    gh_user_cache_stats_t st;
    (void)n;
    gh_user_cache_stats(app->users, &st);
    v[0] = (double)st.stale_age_max_ms / 1000.0;
    return 0;
}

/* The audit trail's counters (account/audit.h); zeros without one. */
static int collect_audit(void *ctx, double *v, size_t n, int which)
{
    gh_app_t *app = ctx;
    gh_audit_stats_t st;
    (void)n;
    gh_audit_stats(app->audit, &st);
    v[0] = which == 0   ? (double)st.stored_total
           : which == 1 ? (double)st.dropped_total
           : which == 2 ? (double)st.failed_total
                        : (double)st.queue_len;
    return 0;
}
static int collect_audit_stored(void *ctx, double *v, size_t n)
{
    return collect_audit(ctx, v, n, 0);
}
static int collect_audit_dropped(void *ctx, double *v, size_t n)
{
    return collect_audit(ctx, v, n, 1);
}
static int collect_audit_failed(void *ctx, double *v, size_t n)
{
    return collect_audit(ctx, v, n, 2);
}
static int collect_audit_queue(void *ctx, double *v, size_t n)
{
    return collect_audit(ctx, v, n, 3);
}

/* The grant store's figures (store/grant.h); left out while the provider is off. */
static int collect_oidc(void *ctx, double *v, size_t n, int which)
{
    gh_app_t *app = ctx;
    if (!app->grants || n < 1)
        return 1;
    gh_grant_stats_t st;
    gh_grant_stats(app->grants, &st);
    v[0] = which == 0 ? (double)st.codes : which == 1 ? (double)st.families : (double)st.consents;
    return 0;
}
static int collect_oidc_codes(void *ctx, double *v, size_t n)
{
    return collect_oidc(ctx, v, n, 0);
}
static int collect_oidc_families(void *ctx, double *v, size_t n)
{
    return collect_oidc(ctx, v, n, 1);
}
static int collect_oidc_consents(void *ctx, double *v, size_t n)
{
    return collect_oidc(ctx, v, n, 2);
}

static int add_family(gh_metrics_t *reg, const char *name, const char *help, gh_metric_type_t type,
                      const gh_metric_label_t *labels, size_t nlabels, gh_metric_collect_fn fn,
                      void *ctx, gh_metric_t **out)
{
    gh_metric_desc_t d = {.name = name,
                          .help = help,
                          .type = type,
                          .labels = labels,
                          .nlabels = nlabels,
                          .collect = fn,
                          .collect_ctx = ctx};
    return gh_metrics_add(reg, &d, out);
}

/* The store probe's observer (store/probe.h): a round trip into the two store families. */
static void store_observe(void *ctx, gh_store_kind_t store, gh_store_op_t op, int64_t duration_ns,
                          bool failed)
{
    gh_api_metrics_t *m = ctx;
    gh_metric_observe_ns(m->store_durations,
                         GH_METRIC_AT(m->store_durations, (size_t)store, (size_t)op), duration_ns);
    if (failed)
        gh_metric_inc(m->store_errors, (size_t)store);
}

gh_store_probe_t gh_api_store_probe(gh_app_t *app)
{
    return (gh_store_probe_t){.observe = app->metrics ? store_observe : NULL, .ctx = app->metrics};
}

/* The password pool's observer (auth/password.h): a job's duration into its histogram. */
static void password_observe(void *ctx, int64_t duration_ns)
{
    gh_api_metrics_t *m = ctx;
    gh_metric_observe_ns(m->password_durations, 0, duration_ns);
}

void gh_api_metrics_attach_passwords(gh_app_t *app)
{
    if (app->metrics && app->passwords)
        gh_password_attach_observer(app->passwords, &app->metrics->password_observer);
}

int gh_api_metrics_init(gh_app_t *app)
{
    gh_api_metrics_t *m = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *m);
    if (!m)
        return GH_ENOMEM;
    int rc = gh_metrics_create(&m->registry);
    if (rc != 0)
        goto fail;
    /* Route labels: the distinct templates of the route table, plus "unmatched". */
    for (size_t i = 0; i < gh_api_nroutes && i < 128; i++) {
        size_t j = 0;
        while (j < m->nroutes && strcmp(m->route_labels[j], gh_api_routes[i].template) != 0)
            j++;
        if (j == m->nroutes && m->nroutes < MAX_ROUTE_LABELS - 1)
            m->route_labels[m->nroutes++] = gh_api_routes[i].template;
        m->route_of[i] = j;
    }
    m->route_labels[m->nroutes++] = "unmatched";

    static const char *const results[] = {
#define GH__LOGIN_NAME(e, n) n,
        GH_LOGIN_RESULT_MAP(GH__LOGIN_NAME)
#undef GH__LOGIN_NAME
    };
    static const char *const reasons[] = {
#define GH__END_NAME(e, n) n,
        GH_SESSION_END_MAP(GH__END_NAME)
#undef GH__END_NAME
    };
    static const char *const components[] = {
#define GH__MEM_NAME(e, n) n,
        GH_MEM_COMPONENT_MAP(GH__MEM_NAME)
#undef GH__MEM_NAME
    };
    const gh_metric_label_t req_labels[] = {{"route", m->route_labels, m->nroutes},
                                            {"method", methods, NMETHODS},
                                            {"code", status_codes, NCODES}};
    const gh_metric_label_t result_label[] = {{"result", results, GH_LOGIN__COUNT}};
    const gh_metric_label_t reason_label[] = {{"reason", reasons, GH_END__COUNT}};
    const gh_metric_label_t comp_label[] = {{"component", components, GH_MEM__COUNT}};
    const gh_metric_label_t alert_labels[] = {{"alert", gh_watch_alert_names, GH_WATCH__NALERTS},
                                              {"severity", gh_watch_severity_labels, 2}};
    static const char *const rl_kinds[] = {"ip", "account"};
    const gh_metric_label_t rl_kind_label[] = {{"kind", rl_kinds, 2}};
    const gh_metric_label_t rl_table_label[] = {{"table", rl_kinds, 2}};
    static const char *const deadlines[] = {"header", "body"};
    const gh_metric_label_t deadline_label[] = {{"deadline", deadlines, 2}};
    const gh_metric_label_t mfa_labels[] = {{"method", mfa_methods, NMFA_METHODS},
                                            {"result", mfa_results, NMFA_RESULTS}};
    gh_metrics_t *reg = m->registry;

    gh_metric_desc_t req = {.name = "gatehouse_http_requests_total",
                            .help = "HTTP requests by route template, method and status code.",
                            .type = GH_METRIC_COUNTER,
                            .labels = req_labels,
                            .nlabels = 3,
                            .flags = GH_METRIC_SKIP_ZERO};
    gh_metric_desc_t dur = {.name = "gatehouse_http_request_duration_seconds",
                            .help = "Time from the first byte of a request to its completion.",
                            .type = GH_METRIC_HISTOGRAM,
                            .labels = req_labels,
                            .nlabels = 1,
                            .buckets = gh_metric_latency_buckets,
                            .nbuckets = gh_metric_latency_nbuckets,
                            .flags = GH_METRIC_SKIP_ZERO};
    if ((rc = gh_metrics_add(reg, &req, &m->requests)) ||
        (rc = gh_metrics_add(reg, &dur, &m->durations)) ||
        (rc = add_family(reg, "gatehouse_logins_total", "Login attempts by outcome.",
                         GH_METRIC_COUNTER, result_label, 1, NULL, NULL, &m->logins)) ||
        (rc = add_family(reg, "gatehouse_mfa_total",
                         "Second login steps by method and outcome (expired: the pending login "
                         "had ended, or the 5th wrong step ended it).",
                         GH_METRIC_COUNTER, mfa_labels, 2, NULL, NULL, &m->mfa)) ||
        (rc = add_family(reg, "gatehouse_pending_logins", "Logins waiting for their second factor.",
                         GH_METRIC_GAUGE, NULL, 0, collect_pending, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_sessions_active",
                         "Live sessions held by this node's store.", GH_METRIC_GAUGE, NULL, 0,
                         collect_sessions_active, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_sessions_created_total", "Sessions created.",
                         GH_METRIC_COUNTER, NULL, 0, collect_sessions_created, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_sessions_ended_total", "Sessions ended, by reason.",
                         GH_METRIC_COUNTER, reason_label, 1, collect_sessions_ended, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_password_queue_depth",
                         "Password hashing jobs waiting or running.", GH_METRIC_GAUGE, NULL, 0,
                         collect_queue_depth, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_bytes", "Accounted bytes per component.",
                         GH_METRIC_GAUGE, comp_label, 1, collect_memory_bytes, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_objects",
                         "Accounted live allocations per component.", GH_METRIC_GAUGE, comp_label,
                         1, collect_memory_objects, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_limit_bytes",
                         "The effective memory limit the budget and watchdog work against.",
                         GH_METRIC_GAUGE, NULL, 0, collect_memory_limit, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_session_budget_bytes",
                         "The session store's budget of accounted bytes.", GH_METRIC_GAUGE, NULL, 0,
                         collect_session_budget, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_unexplained_bytes",
                         "Resident bytes not accounted to any component (RSS - accounted).",
                         GH_METRIC_GAUGE, NULL, 0, collect_unexplained, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_allocator_in_use_bytes",
                         "Bytes in use according to the C allocator (mallinfo2).", GH_METRIC_GAUGE,
                         NULL, 0, collect_allocator, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_memory_exhaustion_eta_seconds",
                         "Forecast seconds until RSS reaches the memory limit (+Inf when RSS does "
                         "not grow steadily).",
                         GH_METRIC_GAUGE, NULL, 0, collect_eta, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_alert_firing",
                         "1 while the watchdog's alert fires at this severity.", GH_METRIC_GAUGE,
                         alert_labels, 2, collect_alert_firing, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_ratelimit_rejected_total",
                         "Logins and registrations refused with 429, by the throttle that refused "
                         "them (per client IP, or per account in back-off).",
                         GH_METRIC_COUNTER, rl_kind_label, 1, collect_rl_rejected, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_ratelimit_entries",
                         "Throttle table slots in use (fixed capacity; old entries are replaced).",
                         GH_METRIC_GAUGE, rl_table_label, 1, collect_rl_entries, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_ratelimit_capacity", "Throttle table slots.",
                         GH_METRIC_GAUGE, rl_table_label, 1, collect_rl_capacity, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_ratelimit_evictions_total",
                         "Live throttle entries replaced because their set was full (a flood of "
                         "distinct addresses or usernames).",
                         GH_METRIC_COUNTER, rl_table_label, 1, collect_rl_evictions, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_ratelimit_lockouts_total",
                         "Accounts that entered login back-off after --throttle-account "
                         "consecutive failures.",
                         GH_METRIC_COUNTER, NULL, 0, collect_rl_lockouts, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_http_connections_cut_total",
                         "Connections cut for taking longer than --header-timeout to send a "
                         "request head (or to start the next one) or --body-timeout to send a "
                         "body.",
                         GH_METRIC_COUNTER, deadline_label, 1, collect_deadline_cuts, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_outbox_depth",
                         "Messages in the outbox waiting to be sent (every node's).",
                         GH_METRIC_GAUGE, NULL, 0, collect_email_depth, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_outbox_oldest_age_seconds",
                         "Age of the oldest message waiting in the outbox (0 when empty).",
                         GH_METRIC_GAUGE, NULL, 0, collect_email_oldest, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_sent_total",
                         "Messages this node handed to the mail server.", GH_METRIC_COUNTER, NULL,
                         0, collect_email_sent, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_failed_total",
                         "Messages this node gave up (refused for good, or --smtp-retry-for "
                         "passed).",
                         GH_METRIC_COUNTER, NULL, 0, collect_email_failed, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_retries_total",
                         "Delivery attempts that failed and will be retried.", GH_METRIC_COUNTER,
                         NULL, 0, collect_email_retries, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_email_delivering",
                         "1 when --smtp-url is set; 0 when mail only queues.", GH_METRIC_GAUGE,
                         NULL, 0, collect_email_delivering, app, NULL)) ||
        (rc = gh_metrics_add_process(reg)))
        goto fail;
    const gh_metric_label_t store_labels[] = {{"store", gh_store_kind_names, GH_STORE__COUNT},
                                              {"op", gh_store_op_names, GH_STORE_OP__COUNT}};
    gh_metric_desc_t store_dur = {.name = "gatehouse_store_request_duration_seconds",
                                  .help = "Round trips to a network store, by store and operation.",
                                  .type = GH_METRIC_HISTOGRAM,
                                  .labels = store_labels,
                                  .nlabels = 2,
                                  .buckets = gh_metric_latency_buckets,
                                  .nbuckets = gh_metric_latency_nbuckets,
                                  .flags = GH_METRIC_SKIP_ZERO};
    gh_metric_desc_t pw_dur = {.name = "gatehouse_password_hash_duration_seconds",
                               .help = "Argon2 work of one password job (hash or verify), in "
                                       "seconds.",
                               .type = GH_METRIC_HISTOGRAM,
                               .buckets = gh_password_hist_bounds,
                               .nbuckets = GH_PASSWORD_HIST_BUCKETS};
    m->password_observer = (gh_password_observer_t){.observe = password_observe, .ctx = m};
    if ((rc = gh_metrics_add(reg, &pw_dur, &m->password_durations)) ||
        (rc = gh_metrics_add(reg, &store_dur, &m->store_durations)) ||
        (rc = add_family(reg, "gatehouse_store_errors_total",
                         "Store round trips that failed (no answer, or an error answer).",
                         GH_METRIC_COUNTER, store_labels, 1, NULL, NULL, &m->store_errors)))
        goto fail;
    const gh_metric_label_t db_label[] = {{"store", gh_store_db_names, GH_STORE_DB__COUNT}};
    const gh_metric_label_t oidc_authz_label[] = {
        {"result", oidc_authz_results, GH_OIDC_AUTHZ__COUNT}};
    const gh_metric_label_t oidc_grant_labels[] = {
        {"grant_type", oidc_grant_types, GH_OIDC_GRANT__COUNT},
        {"result", oidc_grant_results, NOIDC_GRANT_RESULTS}};
    if ((rc = add_family(reg, "gatehouse_oidc_authorizations_total",
                         "OpenID Connect authorization requests by outcome (code issued, sent to "
                         "log in, consent asked, denied, prompt=none refused, error).",
                         GH_METRIC_COUNTER, oidc_authz_label, 1, NULL, NULL, &m->oidc_authz)) ||
        (rc = add_family(reg, "gatehouse_oidc_token_grants_total",
                         "Token endpoint grants by grant_type and result (ok or the OAuth "
                         "error).",
                         GH_METRIC_COUNTER, oidc_grant_labels, 2, NULL, NULL, &m->oidc_grants)) ||
        (rc = add_family(reg, "gatehouse_oidc_refresh_reuse_total",
                         "Spent refresh tokens presented again: each revoked its family.",
                         GH_METRIC_COUNTER, NULL, 0, NULL, NULL, &m->oidc_reuse)) ||
        (rc = add_family(reg, "gatehouse_oidc_codes",
                         "Authorization codes held (used ones until their 60 s deadline).",
                         GH_METRIC_GAUGE, NULL, 0, collect_oidc_codes, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_oidc_families",
                         "Live refresh-token families (one per grant, with its access token).",
                         GH_METRIC_GAUGE, NULL, 0, collect_oidc_families, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_oidc_consents", "Consents users gave to clients.",
                         GH_METRIC_GAUGE, NULL, 0, collect_oidc_consents, app, NULL)))
        goto fail;
    if ((rc = add_family(reg, "gatehouse_store_write_failures_total",
                         "Writes to a local database (sessions.db, users.db) that failed: a full "
                         "disk, an I/O error.",
                         GH_METRIC_COUNTER, db_label, 1, collect_write_failures, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_store_writable",
                         "0 from a failed write to a local database until a write succeeds "
                         "(/readyz answers 503 meanwhile), else 1.",
                         GH_METRIC_GAUGE, db_label, 1, collect_writable, NULL, NULL)) ||
        (rc = add_family(reg, "gatehouse_user_lookups_stale_total",
                         "Token checks answered from a cached user record past its TTL because "
                         "the user store did not answer (at most --user-stale-max old).",
                         GH_METRIC_COUNTER, NULL, 0, collect_user_stale, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_user_stale_age_seconds",
                         "Age of the oldest user record a token check answered from since the "
                         "user store last answered (0 while it answers).",
                         GH_METRIC_GAUGE, NULL, 0, collect_user_stale_age, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_audit_events_total",
                         "Audit events stored in the user store's audit trail.", GH_METRIC_COUNTER,
                         NULL, 0, collect_audit_stored, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_audit_dropped_total",
                         "Failed or throttled login events dropped because the audit queue was "
                         "full (--audit-queue): the trail misses them.",
                         GH_METRIC_COUNTER, NULL, 0, collect_audit_dropped, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_audit_write_failures_total",
                         "Audit events the user store refused (the request that made a durable "
                         "one answered an error).",
                         GH_METRIC_COUNTER, NULL, 0, collect_audit_failed, app, NULL)) ||
        (rc = add_family(reg, "gatehouse_audit_queue_length",
                         "Failed or throttled login events waiting to be stored.", GH_METRIC_GAUGE,
                         NULL, 0, collect_audit_queue, app, NULL)))
        goto fail;
    if (app->passwords)
        gh_password_attach_observer(app->passwords, &m->password_observer);
    app->metrics = m;
    return 0;
fail:
    gh_metrics_destroy(&m->registry);
    gh_mem_free(GH_MEM_METRICS, m);
    return rc ? rc : GH_ENOMEM;
}

void gh_api_metrics_destroy(gh_app_t *app)
{
    if (!app->metrics)
        return;
    if (app->passwords)
        gh_password_attach_observer(app->passwords, NULL);
    gh_metrics_destroy(&app->metrics->registry);
    gh_mem_free(GH_MEM_METRICS, app->metrics);
    app->metrics = NULL;
}

void gh_api_watch_counters(void *ctx, gh_watch_sample_t *out)
{
    gh_app_t *app = ctx;
    gh_session_stats_t st;
    gh_session_stats(app->sessions, &st);
    out->sessions_active = st.active;
    out->requests_total = (uint64_t)gh_metric_total(app->metrics->requests);
    out->failed_logins_total = (uint64_t)gh_metric_value(app->metrics->logins, GH_LOGIN_FAILURE);
    out->rate_limited_total =
        (uint64_t)gh_metric_value(app->metrics->logins, GH_LOGIN_RATE_LIMITED);
    gh_api_totals_t tot;
    gh_api_metrics_totals(app, &tot);
    out->server_errors_total = tot.server_errors;
    out->stores_not_writable = 0;
    out->store_write_failures_total = 0;
    for (int d = 0; d < GH_STORE_DB__COUNT; d++) {
        out->stores_not_writable += !gh_store_writable((gh_store_db_t)d);
        out->store_write_failures_total += gh_store_write_failures((gh_store_db_t)d);
    }
    gh_audit_stats_t au;
    gh_audit_stats(app->audit, &au);
    out->audit_dropped_total = au.dropped_total;
    gh_email_stats_t em;
    gh_account_email_stats(app->email, &em);
    out->email_oldest_age_ms = (int64_t)(em.oldest_age_s * 1000.0);
    out->email_outbox_depth = em.depth;
}

static size_t index_of(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    return n - 1;
}

void gh_api_count_mfa(void *ctx, const char *method, const char *result)
{
    gh_app_t *app = ctx;
    gh_metric_t *f = app->metrics->mfa;
    gh_metric_inc(f, GH_METRIC_AT(f, index_of(mfa_methods, NMFA_METHODS, method),
                                  index_of(mfa_results, NMFA_RESULTS, result)));
}

void gh_api_count_oidc_authz(void *ctx, gh_oidc_authz_result_t result)
{
    gh_app_t *app = ctx;
    if (app->metrics && (size_t)result < GH_OIDC_AUTHZ__COUNT)
        gh_metric_inc(app->metrics->oidc_authz, (size_t)result);
}

void gh_api_count_oidc_grant(void *ctx, gh_oidc_grant_type_t type, const char *result)
{
    gh_app_t *app = ctx;
    if (!app->metrics || (size_t)type >= GH_OIDC_GRANT__COUNT)
        return;
    gh_metric_t *f = app->metrics->oidc_grants;
    gh_metric_inc(f, GH_METRIC_AT(f, (size_t)type,
                                  index_of(oidc_grant_results, NOIDC_GRANT_RESULTS, result)));
}

void gh_api_count_oidc_reuse(void *ctx)
{
    gh_app_t *app = ctx;
    if (app->metrics)
        gh_metric_inc(app->metrics->oidc_reuse, 0);
}

void gh_api_count_login(gh_app_t *app, gh_login_result_t result)
{
    gh_metric_inc(app->metrics->logins, (size_t)result);
}

static size_t route_label(gh_api_metrics_t *m, gh_req_t *r)
{
    return r->route_index >= 0 && (size_t)r->route_index < 128 ? m->route_of[r->route_index]
                                                               : m->nroutes - 1;
}

/* Counted as the reply is queued, so a client that reads its reply and then scrapes /metrics
 * always finds it counted. */
void gh_api_on_reply(gh_req_t *r)
{
    gh_api_metrics_t *m = ((gh_app_t *)r->app)->metrics;
    gh_metric_inc(m->requests, GH_METRIC_AT(m->requests, route_label(m, r), method_index(r->method),
                                            code_index(r->status)));
}

void gh_api_on_complete(gh_req_t *r, int64_t duration_ns)
{
    gh_app_t *app = r->app;
    gh_api_metrics_t *m = app->metrics;
    size_t route = route_label(m, r);
    int status = r->replied ? r->status : 0;
    if (!r->counted) /* never answered (the client went away while it waited) */
        gh_metric_inc(m->requests, GH_METRIC_AT(m->requests, route, method_index(r->method),
                                                code_index(status)));
    gh_metric_observe_ns(m->durations, route, duration_ns);
    bool quiet = r->route && (r->route->flags & GH_ROUTE_QUIET) && status >= 200 && status < 300;
    gh_log_level_t level = quiet ? GH_LOG_DEBUG : GH_LOG_INFO;
    if (level < gh_log_min_level)
        return;
    const char *tpl = m->route_labels[route];
    double ms = (double)duration_ns / 1e6;
    if (r->session_id[0]) {
        uint8_t h[4];
        char tag[9];
        crypto_generichash(h, sizeof h, (const uint8_t *)r->session_id, strlen(r->session_id),
                           app->log_salt, sizeof app->log_salt);
        sodium_bin2hex(tag, sizeof tag, h, sizeof h);
        GH_LOG(level, "request", GH_LS("method", r->method_name), GH_LS("route", tpl),
               GH_LI("status", status), GH_LD("duration_ms", ms), GH_LS("session", tag));
    } else {
        GH_LOG(level, "request", GH_LS("method", r->method_name), GH_LS("route", tpl),
               GH_LI("status", status), GH_LD("duration_ms", ms));
    }
}

/* GET /metrics */
int gh_api_metrics_render(gh_app_t *app, char **text, size_t *len)
{
    return gh_metrics_render(app->metrics->registry, GH_METRICS_RENDER_MAX, text, len);
}

/* For /ops: the request family's series are route x method x code, row-major, so a series'
 * code is its index modulo NCODES. */
void gh_api_metrics_totals(gh_app_t *app, gh_api_totals_t *out)
{
    gh_api_metrics_t *m = app->metrics;
    memset(out, 0, sizeof *out);
    size_t n = gh_metric_nseries(m->requests);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)gh_metric_value(m->requests, i);
        const char *code = status_codes[i % NCODES];
        out->requests += v;
        if (code[0] == '5')
            out->server_errors += v;
    }
    out->logins_ok = (uint64_t)gh_metric_value(m->logins, GH_LOGIN_SUCCESS);
    out->logins_failed = (uint64_t)gh_metric_value(m->logins, GH_LOGIN_FAILURE);
}
