/*
 * node.c — assembling a node from a loaded configuration: the stores, the password pool, the
 * throttles, metrics, the memory watchdog, the janitor thread that expires sessions and the HTTP
 * server; and taking it apart again in the reverse order (stop accepting, finish in-flight
 * requests, stop the pool, close the stores).
 *
 * The one design decision: this is the only file that names store backends and reads the
 * configuration into them; everything above it (serve.c, reload.c, the tests) drives a node
 * through node.h, and everything below it sees only the store interfaces.
 */
#include "node/node.h"

/* Live passkey challenges at most (about 80 bytes each, charged to "webauthn"). */
#define GH_NODE_WEBAUTHN_CHALLENGES 4096

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "account/audit.h"
#include "account/oidc_keys.h"
#include "auth/secretkey.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/heap.h"
#include "mem/mem.h"
#include "watch/statsd.h"

#define JANITOR_PERIOD_MS 100
#define JANITOR_MAX_WORK 20000
#define AUDIT_PRUNE_EVERY 10     /* janitor ticks between two retention steps (1 s) */
#define AUDIT_PRUNE_MAX_WORK 500 /* audit events removed per retention step at most */
/* A retired signing key stays published at least this long, and never less than the life of a
 * token it signed (ID and access tokens live --oidc-access-ttl, 10 minutes by default). */
#define OIDC_RETIRE_AFTER_MIN_MS (60 * 60 * 1000LL)

typedef struct {
    gh_app_t *app;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    unsigned ticks;
    unsigned oidc_every; /* janitor ticks between two refreshes of the signing keys */
} janitor_t;

/* Ends expired sessions every 100 ms with bounded work, so every session is gone within a
 * second of its deadline even if nobody presents it again. */
static void *janitor_main(void *arg)
{
    janitor_t *j = arg;
    pthread_mutex_lock(&j->lock);
    while (!j->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += JANITOR_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->wake, &j->lock, &ts);
        if (j->stop)
            break;
        pthread_mutex_unlock(&j->lock);
        size_t n = gh_session_expire(j->app->sessions, gh_clock_now_ms(), JANITOR_MAX_WORK);
        if (n)
            GH_LOG(GH_LOG_DEBUG, "sessions expired", GH_LI("count", n));
        if (j->app->grants) {
            size_t g = gh_grant_expire(j->app->grants, gh_clock_now_ms(), JANITOR_MAX_WORK);
            if (g)
                GH_LOG(GH_LOG_DEBUG, "grants expired", GH_LI("count", g));
        }
        /* Audit retention, incrementally: a backlog (a long-stopped node) drains over ticks. */
        ++j->ticks;
        if (j->app->audit && j->ticks % AUDIT_PRUNE_EVERY == 0) {
            size_t pruned = 0;
            if (gh_audit_prune(j->app->audit, gh_clock_now_ms(), AUDIT_PRUNE_MAX_WORK, &pruned) ==
                    0 &&
                pruned)
                GH_LOG(GH_LOG_DEBUG, "audit events pruned", GH_LI("count", pruned));
        }
        /* The signing keys: a rotation by another node or by `gatehouse keys rotate`, a rotation
         * due on schedule, retired keys past their time (--oidc-key-refresh, 60 s). */
        if (j->app->oidc_keys && j->ticks % j->oidc_every == 0)
            GH_IGNORE(gh_oidc_keys_refresh(j->app->oidc_keys, gh_clock_now_ms()));
        /* systemd's watchdog hears from the thread that proves the session store is alive. */
        gh_notify_watchdog();
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static unsigned clamp_ms(int64_t ms)
{
    return ms > (int64_t)UINT_MAX ? UINT_MAX : ms < 0 ? 0 : (unsigned)ms;
}

/* Connections per network store: one for each HTTP thread, the janitor and /metrics, so a
 * request never waits for a connection another request holds. */
static unsigned store_pool_size(const gh_config_t *cfg)
{
    return cfg->http_threads + 2;
}

/* The user store the configuration names: SQLite in the data dir, or PostgreSQL. */
static int open_user_store(const gh_config_t *cfg, gh_store_probe_t probe, gh_user_store_t **out)
{
    int rc;
    if (cfg->user_store == GH_USER_STORE_POSTGRES) {
        gh_user_postgres_options_t o = {
            .url = cfg->postgres_url, .pool_size = store_pool_size(cfg), .probe = probe};
        if ((rc = gh_user_postgres_open(&o, out)) != 0)
            GH_LOG(GH_LOG_ERROR, "cannot open the user store", GH_LS("store", "postgres"),
                   GH_LS("error", gh_strerror(rc)));
        return rc;
    }
    if ((rc = gh_user_sqlite_open(cfg->data_dir, out)) != 0)
        GH_LOG(GH_LOG_ERROR, "cannot open the user store", GH_LS("data_dir", cfg->data_dir),
               GH_LS("error", gh_strerror(rc)));
    return rc;
}

/* The user store with the token check's cache in front (user_cache.c), unless it is off. */
/* Reads USER:PASSWORD from the first line of path into user and password. */
static int read_smtp_credentials(const char *path, char *user, size_t ulen, char *password,
                                 size_t plen)
{
    char line[1024] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return GH_EIO;
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = strchr(line, ':');
    int rc = 0;
    if (!ok || !colon || colon == line || (size_t)(colon - line) >= ulen ||
        strlen(colon + 1) >= plen)
        rc = GH_EINVAL;
    else {
        size_t un = (size_t)(colon - line), pn = strlen(colon + 1);
        memcpy(user, line, un); /* both lengths were checked against ulen and plen above */
        user[un] = '\0';
        memcpy(password, colon + 1, pn);
        password[pn] = '\0';
    }
    sodium_memzero(line, sizeof line);
    return rc;
}

/* Email is on when --public-url and --smtp-from are set: opens the email tables of the user
 * store's database and starts the sender (account/outbox.c). */
static int start_email(const gh_config_t *cfg, gh_app_t *app)
{
    if (!cfg->public_url[0] || !cfg->smtp_from[0]) {
        GH_LOG(GH_LOG_INFO, "email is off",
               GH_LS("why", "--public-url and --smtp-from are needed"));
        return 0;
    }
    char user[256] = "", password[512] = "", host[HOST_NAME_MAX + 1] = "", node[96];
    int rc;
    if (cfg->smtp_credentials_file[0] &&
        (rc = read_smtp_credentials(cfg->smtp_credentials_file, user, sizeof user, password,
                                    sizeof password)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot read --smtp-credentials-file",
               GH_LS("path", cfg->smtp_credentials_file),
               GH_LS("expected", "USER:PASSWORD on the first line"));
        return rc;
    }
    gethostname(host, sizeof host - 1);
    snprintf(node, sizeof node, "%.60s/%ld", host, (long)getpid());
    rc = cfg->user_store == GH_USER_STORE_POSTGRES
             ? gh_mail_postgres_open(cfg->postgres_url, 5000, &app->mail_store)
             : gh_mail_sqlite_open(cfg->data_dir, &app->mail_store);
    if (rc != 0)
        goto out;
    gh_email_options_t eo = {.store = app->mail_store,
                             .product = cfg->product_name,
                             .public_url = cfg->public_url,
                             .from = cfg->smtp_from,
                             .templates = cfg->email_templates,
                             .smtp_url = cfg->smtp_url,
                             .smtp_user = user,
                             .smtp_password = password,
                             .retry_for_ms = cfg->smtp_retry_for_ms,
                             .smtp_timeout_ms = cfg->smtp_timeout_ms,
                             .node = node};
    if ((rc = gh_account_email_create(&eo, &app->email)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot set up email",
               GH_LS("why", rc == GH_EINVAL ? "--smtp-from is not a plain address, or "
                                              "--product-name holds a control character"
                                            : gh_strerror(rc)));
        goto out;
    }
    if ((rc = gh_account_email_start(app->email)) != 0)
        goto out;
    GH_LOG(GH_LOG_INFO, "email is on", GH_LB("delivering", cfg->smtp_url[0] != '\0'),
           GH_LS("node", node));
out:
    sodium_memzero(password, sizeof password);
    return rc;
}

static int open_cached_user_store(const gh_config_t *cfg, gh_store_probe_t probe,
                                  gh_user_store_t **out)
{
    gh_user_store_t *backend = NULL;
    int rc = open_user_store(cfg, probe, &backend);
    if (rc != 0 || cfg->user_cache == 0) {
        *out = backend;
        return rc;
    }
    gh_user_cache_options_t o = {.entries = cfg->user_cache,
                                 .ttl_ms = cfg->user_cache_ttl_ms,
                                 .stale_max_ms = cfg->user_stale_max_ms};
    if ((rc = gh_user_cache_open(backend, &o, out)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot open the user cache", GH_LS("error", gh_strerror(rc)));
        gh_user_store_close(&backend);
    }
    return rc;
}

/* Sessions in Redis, shared with the other nodes (the in-memory store is opened, with its
 * persistence, in gh_node_start_ex). Lookups record last use at most every idle_ttl/100 (capped
 * at 10 s): a token checked many times a second then costs reads, not writes, and the idle
 * deadline is early by at most that much. */
static int open_redis_sessions(const gh_config_t *cfg, gh_store_probe_t probe,
                               gh_session_store_t **out)
{
    gh_session_limits_t limits = {.session_ttl_ms = cfg->session_ttl_ms,
                                  .idle_ttl_ms = cfg->idle_ttl_ms,
                                  .max_per_user = cfg->max_sessions_per_user,
                                  .policy = cfg->session_policy};
    int64_t touch = cfg->idle_ttl_ms / 100;
    gh_session_redis_options_t o = {.url = cfg->redis_url,
                                    .pool_size = store_pool_size(cfg),
                                    .touch_interval_ms = touch < 10000 ? touch : 10000,
                                    .wait_replicas = cfg->redis_wait_replicas,
                                    .probe = probe};
    int rc = gh_session_redis_open(&limits, &o, out);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, "cannot open the session store", GH_LS("store", "redis"),
               GH_LS("error", gh_strerror(rc)));
    return rc;
}

/* The session store's eviction report (per-user cap or budget), under the store's lock: one
 * session.revoked (actor "system", by=cap / by=eviction) copied into the trail's bounded queue,
 * never a write on this path (a full queue counts a drop). */
static void session_evicted(void *ctx, uint64_t user_id,
                            const char session_id[GH_SESSION_ID_LEN + 1], bool by_cap)
{
    gh_app_t *app = ctx;
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, GH_AUDIT_SESSION_REVOKED, GH_AUDIT_SUCCESS, user_id, NULL);
    gh_audit_event_actor(&ev, "system");
    gh_audit_event_session(&ev, session_id);
    gh_audit_event_detail(&ev, "by=%s", by_cap ? "cap" : "eviction");
    gh_audit_emit_queued(app->audit, &ev);
}

/* The bound port of a listening socket (0 when unknown). */
static uint16_t socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

struct gh_node {
    gh_app_t app;
    gh_http_server_t *http;
    janitor_t janitor;
    pthread_t janitor_thread;
    bool janitor_started;
    uint16_t port;
    int listen_fd;                  /* owned by http while it runs; by the node otherwise */
    gh_http_options_t hopt;         /* kept so HTTP can start (again) on listen_fd */
    gh_session_load_stats_t loaded; /* what the session store brought back at start */
    gh_statsd_t *audit_statsd;      /* admin actions as DogStatsD events (--statsd) */
};

/* A stored admin.<action> event as a DogStatsD event. */
static void audit_admin_event(void *ctx, const gh_audit_event_t *ev)
{
    gh_node_t *n = ctx;
    char title[96], text[512];
    snprintf(title, sizeof title, "gatehouse %s", ev->type);
    snprintf(text, sizeof text, "%s on user %llu (%s) node %s %s", ev->actor,
             (unsigned long long)ev->user_id, ev->outcome, ev->node, ev->detail);
    GH_IGNORE(gh_statsd_event(n->audit_statsd, title, text, "info", "source:audit"));
}

/* The OpenID issuer: --public-url without its trailing slashes, else http:// and the listening
 * address (an IPv6 host in brackets; the port the node really listens on). */
static void set_issuer(gh_app_t *app, uint16_t port)
{
    const gh_config_t *cfg = &app->cfg;
    if (cfg->public_url[0]) {
        size_t n = strlen(cfg->public_url);
        while (n > 0 && cfg->public_url[n - 1] == '/')
            n--;
        snprintf(app->issuer, sizeof app->issuer, "%.*s", (int)n, cfg->public_url);
    } else {
        bool v6 = strchr(cfg->listen_host, ':') != NULL;
        snprintf(app->issuer, sizeof app->issuer, "http://%s%s%s:%u", v6 ? "[" : "",
                 cfg->listen_host, v6 ? "]" : "", (unsigned)port);
    }
}

static int open_audit(gh_node_t *n)
{
    gh_app_t *app = &n->app;
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        host[0] = '\0';
    if (app->cfg.statsd[0] &&
        gh_statsd_open(app->cfg.statsd, "service:gatehouse", &n->audit_statsd) != 0)
        n->audit_statsd = NULL; /* the watchdog logs a bad address */
    gh_audit_options_t ao = {.users = app->users,
                             .node = host,
                             .queue_cap = app->cfg.audit_queue,
                             .retention_ms = app->cfg.audit_retention_ms,
                             .log_path = app->cfg.audit_log,
                             .on_admin = n->audit_statsd ? audit_admin_event : NULL,
                             .on_admin_ctx = n};
    int rc = gh_audit_open(&ao, &app->audit);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, "cannot open the audit trail", GH_LS("error", gh_strerror(rc)));
    return rc;
}

gh_app_t *gh_node_app(gh_node_t *n)
{
    return &n->app;
}

uint16_t gh_node_port(gh_node_t *n)
{
    return n->port;
}

unsigned gh_node_inflight(gh_node_t *n)
{
    return n->http ? gh_http_inflight(n->http) : 0;
}

void gh_node_stop(gh_node_t **np, int64_t drain_ms)
{
    gh_node_t *n = *np;
    if (!n)
        return;
    atomic_store(&n->app.http, NULL); /* metrics stop reading the server's counters */
    if (n->http) {
        gh_http_stop(&n->http, drain_ms); /* closes the listening socket */
        n->listen_fd = -1;
    }
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    /* Before the stores and metrics it reads through gh_api_watch_counters. */
    gh_watchdog_destroy(&n->app.watchdog);
    if (n->janitor_started) {
        pthread_mutex_lock(&n->janitor.lock);
        n->janitor.stop = true;
        pthread_cond_signal(&n->janitor.wake);
        pthread_mutex_unlock(&n->janitor.lock);
        pthread_join(n->janitor_thread, NULL);
    }
    gh_password_pool_stop(&n->app.passwords);
    gh_oidc_keys_close(&n->app.oidc_keys); /* the janitor that refreshed it has stopped */
    gh_audit_close(&n->app.audit);         /* stores what is queued, before the user store goes */
    gh_statsd_close(&n->audit_statsd);
    gh_ratelimit_destroy(&n->app.ratelimit);
    gh_webauthn_challenges_free(&n->app.webauthn_challenges);
    gh_session_store_destroy(&n->app.sessions);
    gh_account_email_destroy(&n->app.email); /* its sender uses the mail store */
    gh_mail_store_close(&n->app.mail_store);
    gh_user_store_close(&n->app.users);
    gh_pending_destroy(&n->app.pending);
    gh_grant_destroy(&n->app.grants);
    sodium_memzero(n->app.secret_key, sizeof n->app.secret_key);
    gh_api_metrics_destroy(&n->app); /* after the stores, which report to it */
    pthread_mutex_destroy(&n->janitor.lock);
    pthread_cond_destroy(&n->janitor.wake);
    sodium_memzero(n->app.cfg.admin_token, sizeof n->app.cfg.admin_token);
    gh_mem_free(GH_MEM_OTHER, n);
    *np = NULL;
}

/* --secret-key-file: the default (DATA_DIR/secret.key) is made on first start; a named file
 * that is missing or not a key stops the start (GH_EINVAL: exit 2), never a new key. */
static int load_secret_key(const gh_config_t *cfg, uint8_t key[GH_SECRET_KEY_LEN])
{
    char path[GH_CONFIG_STR + 16], why[GH_CONFIG_STR + 160];
    bool dflt = cfg->secret_key_file[0] == '\0';
    if (dflt)
        snprintf(path, sizeof path, "%s/secret.key", cfg->data_dir);
    else
        snprintf(path, sizeof path, "%s", cfg->secret_key_file);
    int rc = gh_secret_key_load(path, dflt, key, why, sizeof why);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, why);
    return rc;
}

int gh_node_start(const gh_config_t *config, gh_node_t **out)
{
    return gh_node_start_ex(config, NULL, out);
}

static int pending_connect(void *ctx, void **conn)
{
    return gh_session_redis_connect(ctx, conn);
}

int gh_node_start_ex(const gh_config_t *config, const gh_node_opts_t *opts, gh_node_t **out)
{
    static const gh_node_opts_t defaults = {.listen_fd = -1};
    if (!opts)
        opts = &defaults;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    /* The sampling heap profiler first, so it sees the stores' tables too; the watchdog follows
     * its stacks when it is on. */
    gh_heap_configure(config->heap_profile, config->heap_sample_interval);
    gh_mem_set_reporter(GH_MEM_PROFILER, gh_heap_own_bytes);
    gh_node_t *n = gh_mem_calloc(GH_MEM_OTHER, 1, sizeof *n);
    if (!n)
        return GH_ENOMEM;
    n->listen_fd = -1;
    gh_app_t *app = &n->app;
    app->cfg = *config;
    gh_config_t *cfg = &app->cfg;
    gh_api_json_setup();
    randombytes_buf(app->log_salt, sizeof app->log_salt);
    app->started_ms = gh_clock_now_ms();
    app->cookie_name = cfg->cookie_secure ? "__Host-gatehouse_session" : "gatehouse_session";
    n->janitor.app = app;
    pthread_mutex_init(&n->janitor.lock, NULL);
    pthread_cond_init(&n->janitor.wake, NULL);

    int rc, listen_fd = -1;
    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        GH_LOG(GH_LOG_ERROR, "cannot create the data directory", GH_LS("data_dir", cfg->data_dir),
               GH_LS("error", strerror(errno)));
        rc = GH_EIO;
        goto fail;
    }
    /* Metrics first: the network stores report their round trips to its families. */
    if ((rc = gh_api_metrics_init(app)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot set up metrics", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    if ((rc = load_secret_key(cfg, app->secret_key)) != 0)
        goto fail;
    /* Said once the configuration has passed its last check (a bad key file is one line). */
    GH_LOG(GH_LOG_INFO, "heap profiler", GH_LS("state", gh_heap_state()),
           GH_LI("sample_interval", config->heap_sample_interval));
    if ((rc = open_cached_user_store(cfg, gh_api_store_probe(app), &app->users)) != 0)
        goto fail;
    if ((rc = open_audit(n)) != 0)
        goto fail;
    /* OpenID Connect signing keys: made on the first start, sealed with the secret key. */
    if ((rc = gh_oidc_keys_open(app->users, app->secret_key, cfg->oidc_key_rotation_ms,
                                cfg->oidc_access_ttl_ms > OIDC_RETIRE_AFTER_MIN_MS
                                    ? cfg->oidc_access_ttl_ms
                                    : OIDC_RETIRE_AFTER_MIN_MS,
                                &app->oidc_keys)) != 0) {
        /* Keys sealed with another secret key (a node that joined a cluster with its own
         * default key, say) turn the OpenID provider off on this node, loudly, rather than
         * keep the node from serving logins and token checks: a rolling upgrade of nodes with
         * different keys must not take the cluster down. Any other failure stops the start. */
        GH_LOG(GH_LOG_ERROR, "cannot load the OpenID signing keys", GH_LS("error", gh_strerror(rc)),
               GH_LS("hint", rc == GH_EAUTH ? "they were sealed with another --secret-key-file: "
                                              "every node of a cluster needs the same one; the "
                                              "OpenID provider is off on this node"
                                            : "see the lines above"));
        if (rc != GH_EAUTH)
            goto fail;
        app->oidc_keys = NULL;
    }
    n->janitor.oidc_every = (unsigned)(cfg->oidc_key_refresh_ms / JANITOR_PERIOD_MS);
    if (n->janitor.oidc_every == 0)
        n->janitor.oidc_every = 1;
    if (cfg->session_store == GH_SESSION_STORE_REDIS) {
        if ((rc = open_redis_sessions(cfg, gh_api_store_probe(app), &app->sessions)) != 0)
            goto fail;
    } else {
        gh_session_limits_t limits = {.session_ttl_ms = cfg->session_ttl_ms,
                                      .idle_ttl_ms = cfg->idle_ttl_ms,
                                      .max_per_user = cfg->max_sessions_per_user,
                                      .budget_bytes = cfg->session_memory,
                                      .policy = cfg->session_policy,
                                      .max_clients = cfg->session_clients,
                                      .on_evict = app->audit ? session_evicted : NULL,
                                      .on_evict_ctx = app};
        if ((rc = gh_session_persist_open(cfg->data_dir, &limits, cfg->durability, opts->successor,
                                          &n->loaded, &app->sessions)) != 0) {
            GH_LOG(GH_LOG_ERROR, "cannot open the session store", GH_LS("error", gh_strerror(rc)));
            goto fail;
        }
        GH_LOG(GH_LOG_INFO, "sessions loaded", GH_LI("loaded", n->loaded.loaded),
               GH_LI("expired", n->loaded.expired), GH_LI("dropped", n->loaded.dropped),
               GH_LI("duration_ms", n->loaded.duration_ms), GH_LB("handover", opts->successor));
    }
    /* Pending logins live beside the sessions: in Redis on the session store's own connections
     * (its sentinels and master check), so a login started on one node finishes on another. */
    if ((rc = cfg->session_store == GH_SESSION_STORE_REDIS
                  ? gh_pending_redis_create_on(pending_connect, app->sessions, cfg->pending_logins,
                                               cfg->session_policy, &app->pending)
                  : gh_pending_memory_create(cfg->pending_logins, cfg->session_policy,
                                             &app->pending)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot make the pending-login table",
               GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    /* OpenID Connect grants beside them: in Redis on the session store's connections, else in
     * memory with families and consents written through to DATA_DIR/grants.db. */
    gh_grant_limits_t gl = {.max_codes = cfg->max_oidc_codes,
                            .max_families = cfg->max_oidc_families,
                            .max_per_user = cfg->max_oidc_families_per_user,
                            .refresh_ttl_ms = cfg->oidc_refresh_ttl_ms,
                            .policy = cfg->session_policy};
    if ((rc = cfg->session_store == GH_SESSION_STORE_REDIS
                  ? gh_grant_redis_open(pending_connect, app->sessions, &gl, &app->grants)
                  : gh_grant_persist_open(cfg->data_dir, &gl, cfg->durability, &app->grants)) !=
        0) {
        GH_LOG(GH_LOG_ERROR, "cannot open the grant store", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    gh_password_params_t pp = {.memory = cfg->hash_memory,
                               .ops = cfg->hash_ops,
                               .workers = cfg->hash_workers,
                               .queue = cfg->hash_queue};
    if ((rc = gh_password_pool_start(&pp, &app->passwords)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot start the password pool", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    gh_api_metrics_attach_passwords(app);
    if ((rc = gh_proxies_parse(cfg->trusted_proxies, &app->proxies)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot use --trusted-proxies", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    gh_ratelimit_params_t rp = {.ip_count = cfg->throttle_ip_count,
                                .ip_window_ms = cfg->throttle_ip_window_ms,
                                .account_threshold = cfg->throttle_account,
                                .account_base_delay_ms = GH_RATELIMIT_BASE_DELAY_MS,
                                .account_max_delay_ms = GH_RATELIMIT_MAX_DELAY_MS,
                                .account_forget_ms = GH_RATELIMIT_FORGET_MS,
                                .ip_slots = GH_RATELIMIT_IP_SLOTS,
                                .account_slots = GH_RATELIMIT_ACCOUNT_SLOTS};
    if ((rc = gh_ratelimit_create(&rp, &app->ratelimit)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot set up the login throttles", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    /* Passkeys: the relying party, and the challenges of ceremonies under way (5 minutes each,
     * at most GH_NODE_WEBAUTHN_CHALLENGES live: the oldest goes first). */
    if (cfg->webauthn_origin[0])
        snprintf(app->webauthn_origin, sizeof app->webauthn_origin, "%s", cfg->webauthn_origin);
    else
        snprintf(app->webauthn_origin, sizeof app->webauthn_origin, "http://%s:%u",
                 cfg->webauthn_rp_id, (unsigned)cfg->listen_port);
    app->webauthn_rp =
        (gh_webauthn_rp_t){.rp_id = cfg->webauthn_rp_id, .origin = app->webauthn_origin};
    if (cfg->webauthn_rp_id[0] &&
        (rc = gh_webauthn_challenges_new(GH_NODE_WEBAUTHN_CHALLENGES, 300000,
                                         &app->webauthn_challenges)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot set up passkeys", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    gh_api_account_start(app);
    if ((rc = start_email(cfg, app)) != 0)
        goto fail;
    gh_watch_options_t wo = {.interval_ms = cfg->watch_interval_ms,
                             .window_ms = cfg->watch_window_ms,
                             .limit_bytes = cfg->memory_limit,
                             .warn_ratio = cfg->memory_warn_percent / 100.0,
                             .critical_ratio = cfg->memory_critical_percent / 100.0,
                             .horizon_ms = cfg->forecast_horizon_ms,
                             .counters = gh_api_watch_counters,
                             .counters_ctx = app,
                             .statsd = cfg->statsd,
                             .webhook_url = cfg->alert_webhook};
    if ((rc = gh_watchdog_create(&wo, &app->watchdog)) != 0 ||
        (rc = gh_watchdog_start(app->watchdog)) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot start the memory watchdog", GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    if (pthread_create(&n->janitor_thread, NULL, janitor_main, &n->janitor) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot start the expiry thread");
        rc = GH_EINTERNAL;
        goto fail;
    }
    n->janitor_started = true;
    if (opts->listen_fd >= 0) {
        /* Inherited from a predecessor or from systemd: already bound and listening. */
        listen_fd = opts->listen_fd;
        n->port = socket_port(listen_fd);
    } else if (gh_http_listen(cfg->listen_host, cfg->listen_port, &listen_fd, &n->port) != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot listen", GH_LS("host", cfg->listen_host),
               GH_LI("port", cfg->listen_port), GH_LS("error", strerror(errno)));
        rc = GH_EIO;
        goto fail;
    }
    n->listen_fd = listen_fd;
    set_issuer(app, n->port);
    if (app->oidc_keys) {
        gh_oidc_kids_t kids;
        gh_oidc_keys_current(app->oidc_keys, &kids);
        GH_LOG(GH_LOG_INFO, "OpenID provider", GH_LS("issuer", app->issuer),
               GH_LS("rs256_kid", kids.kid[GH_JWT_RS256]),
               GH_LS("es256_kid", kids.kid[GH_JWT_ES256]),
               GH_LS("eddsa_kid", kids.kid[GH_JWT_EDDSA]));
    }
    gh_http_options_t hopt = {.listen_fd = listen_fd,
                              .threads = cfg->http_threads,
                              .max_connections = cfg->max_connections,
                              .max_connections_per_ip = cfg->max_connections_per_ip,
                              .uncapped_peers = &app->proxies,
                              .connection_timeout_s =
                                  (unsigned)((cfg->connection_timeout_ms + 999) / 1000),
                              .connection_memory = cfg->connection_memory,
                              .max_body = cfg->max_body,
                              .max_requests_per_connection = cfg->max_requests_per_connection,
                              .header_timeout_ms = clamp_ms(cfg->header_timeout_ms),
                              .body_timeout_ms = clamp_ms(cfg->body_timeout_ms),
                              .routes = gh_api_routes,
                              .nroutes = gh_api_nroutes,
                              .app = app,
                              .on_complete = gh_api_on_complete,
                              .on_reply = gh_api_on_reply,
                              .admit = gh_api_admit};
    n->hopt = hopt;
    /* A successor serves only after it has taken the session database over (reload.c). */
    if (!opts->successor && (rc = gh_node_serve(n)) != 0)
        goto fail;
    *out = n;
    return 0;
fail:
    gh_node_stop(&n, 0);
    return rc;
}

int gh_node_serve(gh_node_t *n)
{
    if (n->http)
        return 0;
    int rc = gh_http_start(&n->hopt, &n->http);
    if (rc != 0)
        GH_LOG(GH_LOG_ERROR, "cannot start the HTTP server", GH_LS("error", gh_strerror(rc)));
    else
        atomic_store(&n->app.http, n->http);
    return rc;
}

void gh_node_handoff(gh_node_t *n, int64_t drain_ms)
{
    atomic_store(&n->app.http, NULL);
    gh_http_handoff(&n->http, drain_ms); /* listen_fd stays open, owned by the node again */
}

int gh_node_listen_fd(gh_node_t *n)
{
    return n->listen_fd;
}
