/*
 * config.c — `gatehouse serve` configuration: flags, GATEHOUSE_* environment, INI file, defaults.
 *
 * The one design decision: every key is a row of `keys[]` below (name, kind, field, default as a
 * string, help), and every source — the built-in default, the INI file, the environment and the
 * command line — goes through the same apply_value() with that row. Defaults are parsed from their
 * strings like any other value, so `--help` shows exactly what the code uses. Precedence is
 * enforced by order of application (defaults, file, environment, flags: each later one
 * overwrites), never by where things appear in argv. Nothing here allocates: values live in the
 * fixed fields of gh_config_t, and the admin token read from a file is wiped from the stack.
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "mem/mem.h"

/* ---- the table of keys ---- */

typedef enum {
    K_STR,      /* char[GH_CONFIG_STR], optionally checked by `check` */
    K_BOOL,     /* bool; a bare flag means true */
    K_DURATION, /* int64_t milliseconds, >= min */
    K_SIZE,     /* uint64_t bytes, >= min */
    K_UINT,     /* uint32_t or uint64_t (by `size`), min..max */
    K_ENUM,     /* int-sized enum, or bool for two-valued keys; index into choices */
    K_LISTEN,   /* listen_host + listen_port */
    K_RATE,     /* throttle_ip_count + throttle_ip_window_ms */
} kind_t;

enum {
    F_AUTO = 1,   /* accepts "auto", stored as 0 and resolved by gh_config_load */
    F_SECRET = 2, /* the value is never echoed in an error */
};

typedef struct {
    const char *name;
    kind_t kind;
    size_t offset, size; /* of the field in gh_config_t (unused for K_LISTEN, K_RATE) */
    const char *def;     /* default, parsed like any other value */
    const char *shown;   /* default as --help words it; NULL = def, "" shown as "none" */
    const char *metavar;
    const char *help;
    const char *group; /* --help heading */
    /* K_DURATION (ms), K_SIZE (bytes), K_UINT: the accepted range, both ends included. Every
     * such key names a max that the code using the value is safe with (no overflow in the
     * arithmetic done on it, no start-up that takes forever); a unit test checks none is 0. */
    uint64_t min, max;
    const char *const *choices; /* K_ENUM, NULL-terminated */
    const char *expect;         /* what a valid value looks like (K_STR with check) */
    bool (*check)(const char *v);
    unsigned flags;
} keydesc_t;

#define FIELD(f) offsetof(gh_config_t, f), sizeof(((gh_config_t *)0)->f)
#define NOFIELD 0, 0

static const char *const policy_choices[] = {"evict-idle", "refuse", NULL};
static const char *const registration_choices[] = {"closed", "open", NULL}; /* index = open */
static const char *const user_store_choices[] = {"sqlite", "postgres", NULL};
static const char *const session_store_choices[] = {"memory", "redis", NULL};
static const char *const log_format_choices[] = {"json", "text", NULL};
static const char *const heap_profile_choices[] = {"off", "on", NULL}; /* index = on */
static const char *const log_level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const durability_choices[] = {"normal", "full", NULL};

static bool check_cidrs(const char *v);
static bool check_hostport(const char *v);
static bool check_http_url(const char *v);
static bool check_smtp_url(const char *v)
{
    return *v == '\0' || ((strncmp(v, "smtp://", 7) == 0 || strncmp(v, "smtps://", 8) == 0) &&
                          strcspn(v, " \t\r\n") == strlen(v));
}

#define KIB 1024ULL
#define MIB (1024ULL * 1024ULL)
#define GIB (1024ULL * MIB)
#define TIB (1024ULL * GIB)
#define SEC_MS 1000ULL
#define HOUR_MS (3600ULL * SEC_MS)
#define DAY_MS (24ULL * HOUR_MS)
/* --hash-memory x --hash-ops at most this: libsodium's "sensitive" preset is 1GiB x 4; this is
 * four times that, seconds per hash on today's machines. */
#define HASH_WORK_MAX (16ULL * GIB)

/* clang-format off */
static const keydesc_t keys[] = {
    {.name = "listen", .kind = K_LISTEN, NOFIELD, .def = "127.0.0.1:8080", .metavar = "HOST:PORT",
     .help = "address and port to serve on (port 0 picks a free one and logs it)",
     .group = "network"},
    {.name = "data-dir", .kind = K_STR, FIELD(data_dir), .def = "./var", .metavar = "DIR",
     .help = "SQLite files and other local state", .group = "network"},
    {.name = "durability", .kind = K_ENUM, FIELD(durability), .def = "normal",
     .metavar = "normal|full",
     .help = "sessions.db commits: normal survives a crash, full also a power loss (fsync each)",
     .group = "network", .choices = durability_choices},

    {.name = "session-ttl", .kind = K_DURATION, FIELD(session_ttl_ms), .def = "12h",
     .metavar = "DURATION", .help = "absolute session lifetime", .group = "sessions", .min = 1,
     .max = 365 * DAY_MS},
    {.name = "idle-ttl", .kind = K_DURATION, FIELD(idle_ttl_ms), .def = "30m",
     .metavar = "DURATION", .help = "idle timeout", .group = "sessions", .min = 1,
     .max = 365 * DAY_MS},
    {.name = "max-sessions-per-user", .kind = K_UINT, FIELD(max_sessions_per_user), .def = "100",
     .metavar = "N", .help = "sessions one user may hold; the oldest is evicted past this",
     .group = "sessions", .min = 1, .max = 16777216},
    {.name = "memory-limit", .kind = K_SIZE, FIELD(memory_limit), .def = "auto",
     .shown = "cgroup limit, else 50% of RAM", .metavar = "SIZE",
     .help = "effective limit for the watchdog and budgets; never above the cgroup limit",
     .group = "sessions", .min = 1 * MIB, .max = 64 * TIB, .flags = F_AUTO},
    {.name = "session-memory", .kind = K_SIZE, FIELD(session_memory), .def = "auto",
     .shown = "half of --memory-limit", .metavar = "SIZE",
     .help = "budget for the session store's accounted bytes", .group = "sessions",
     .min = 64 * KIB, .max = 64 * TIB, .flags = F_AUTO},
    {.name = "session-policy", .kind = K_ENUM, FIELD(session_policy), .def = "evict-idle",
     .metavar = "evict-idle|refuse",
     .help = "at the session budget: least recently used session goes, or new logins get 503",
     .group = "sessions", .choices = policy_choices},
    {.name = "session-clients", .kind = K_UINT, FIELD(session_clients), .def = "65536",
     .metavar = "N",
     .help = "distinct clients (IP, user agent) the memory store keeps for /account, at most "
             "128 bytes each on average; past this a session's client is unknown",
     .group = "sessions", .min = 1, .max = 16777216},

    {.name = "hash-memory", .kind = K_SIZE, FIELD(hash_memory), .def = "19MiB", .metavar = "SIZE",
     .help = "argon2id memory cost per hash (minimum 8KiB, for tests)", .group = "passwords",
     .min = 8 * KIB, .max = 4 * GIB},
    {.name = "hash-ops", .kind = K_UINT, FIELD(hash_ops), .def = "2", .metavar = "N",
     .help = "argon2id time cost (minimum 1, for tests)", .group = "passwords", .min = 1,
     .max = 64},
    {.name = "hash-workers", .kind = K_UINT, FIELD(hash_workers), .def = "auto",
     .shown = "half the cores, at least 1", .metavar = "N|auto",
     .help = "password hashing threads (leave cores free for token checks under a login flood)",
     .group = "passwords", .min = 1, .max = 1024, .flags = F_AUTO},
    {.name = "hash-queue", .kind = K_UINT, FIELD(hash_queue), .def = "64", .metavar = "N",
     .help = "password requests that may wait for a worker; past this, 503",
     .group = "passwords", .min = 1, .max = 65536},

    {.name = "registration", .kind = K_ENUM, FIELD(registration_open), .def = "open",
     .metavar = "open|closed", .help = "closed: only admins create users",
     .group = "accounts and abuse", .choices = registration_choices},
    {.name = "throttle-ip", .kind = K_RATE, NOFIELD, .def = "20/1m", .metavar = "N/DURATION",
     .help = "failed logins plus registrations per client IP per window (0 = off)",
     .group = "accounts and abuse"},
    {.name = "throttle-account", .kind = K_UINT, FIELD(throttle_account), .def = "10",
     .metavar = "N",
     .help = "consecutive failed logins before an account's back-off starts (1 s doubling to "
             "15 min, cleared by a success; at most 100, NIST SP 800-63B)",
     .group = "accounts and abuse", .min = 1, .max = 100},
    {.name = "trusted-proxies", .kind = K_STR, FIELD(trusted_proxies), .def = "",
     .metavar = "CIDR,...", .help = "proxies whose X-Forwarded-For/X-Real-IP name the client",
     .group = "accounts and abuse", .check = check_cidrs,
     .expect = "comma-separated CIDRs like 10.0.0.0/8,::1/128"},
    {.name = "admin-token", .kind = K_STR, FIELD(admin_token), .def = "", .metavar = "TOKEN",
     .help = "bearer token for /v1/admin/ and /debug/ (unset: those routes answer 403)",
     .group = "accounts and abuse", .flags = F_SECRET},
    {.name = "admin-token-file", .kind = K_STR, FIELD(admin_token_file), .def = "",
     .metavar = "FILE", .help = "read the admin token from the first line of FILE",
     .group = "accounts and abuse"},
    {.name = "cookie-secure", .kind = K_BOOL, FIELD(cookie_secure), .def = "false",
     .metavar = "[=true|false]", .help = "add Secure and use the __Host- cookie name prefix",
     .group = "accounts and abuse"},
    {.name = "allowed-redirect-hosts", .kind = K_STR, FIELD(allowed_redirect_hosts), .def = "",
     .metavar = "HOST,...", .help = "hosts a login may send the browser back to, besides its own "
     "(.example.com = any subdomain)", .group = "pages and forward auth"},
    {.name = "forward-auth-redirect", .kind = K_BOOL, FIELD(forward_auth_redirect),
     .def = "false", .metavar = "[=true|false]",
     .help = "/v1/auth answers 302 to the login page for browsers (Accept: text/html)",
     .group = "pages and forward auth"},
    {.name = "login-url", .kind = K_STR, FIELD(login_url), .def = "/login", .metavar = "URL",
     .help = "where /v1/auth sends browsers to log in", .group = "pages and forward auth"},
    {.name = "ops-users", .kind = K_STR, FIELD(ops_users), .def = "", .metavar = "ID,...",
     .help = "operators whose session opens /ops, by user id (a listed name cannot be "
             "registered; the admin token always opens it)",
     .group = "pages and forward auth"},

    {.name = "webauthn-rp-id", .kind = K_STR, FIELD(webauthn_rp_id), .def = "",
     .metavar = "DOMAIN",
     .help = "passkeys: the relying party ID, the domain passkeys are bound to (not an IP "
             "address); \"\" = passkeys off",
     .group = "pages and forward auth"},
    {.name = "webauthn-origin", .kind = K_STR, FIELD(webauthn_origin), .def = "",
     .metavar = "URL",
     .help = "passkeys: the origin the pages are served from (default http://RP-ID:PORT)",
     .group = "pages and forward auth"},
    /* second factors (issue #18) */
    {.name = "secret-key-file", .kind = K_STR, FIELD(secret_key_file), .def = "",
     .metavar = "FILE",
     .help = "32 random bytes in base64 (openssl rand -base64 32) sealing TOTP secrets; "
             "default DATA_DIR/secret.key, created on first start",
     .group = "accounts and abuse"},
    {.name = "pending-logins", .kind = K_UINT, FIELD(pending_logins), .def = "10000",
     .metavar = "N",
     .help = "logins waiting for their second factor (5 minutes each, ~300 bytes); past this "
             "--session-policy applies (oldest goes, or 503)",
     .group = "accounts and abuse", .min = 1, .max = 1u << 24},
    /* OpenID Connect grants (issue #21; store/grant.h) */
    {.name = "max-oidc-codes", .kind = K_UINT, FIELD(max_oidc_codes), .def = "100000",
     .metavar = "N",
     .help = "authorization codes waiting to be exchanged (60 s each); past this "
             "--session-policy applies (oldest goes, or temporarily_unavailable)",
     .group = "openid connect", .min = 1, .max = 1u << 26},
    {.name = "max-oidc-families", .kind = K_UINT, FIELD(max_oidc_families), .def = "1000000",
     .metavar = "N",
     .help = "refresh-token families (grants) held; also the bound of consents; past this "
             "--session-policy applies",
     .group = "openid connect", .min = 1, .max = 1u << 28},
    {.name = "max-oidc-families-per-user", .kind = K_UINT, FIELD(max_oidc_families_per_user),
     .def = "100", .metavar = "N",
     .help = "refresh-token families (and consents) one user may hold; the oldest is revoked",
     .group = "openid connect", .min = 1, .max = 100000},
    {.name = "oidc-access-ttl", .kind = K_DURATION, FIELD(oidc_access_ttl_ms), .def = "10m",
     .metavar = "DURATION", .help = "lifetime of an access token and of an ID token",
     .group = "openid connect", .min = 1000, .max = DAY_MS},
    {.name = "oidc-refresh-ttl", .kind = K_DURATION, FIELD(oidc_refresh_ttl_ms), .def = "30d",
     .metavar = "DURATION",
     .help = "absolute lifetime of a refresh-token family, counted from the grant",
     .group = "openid connect", .min = 60000, .max = 3650 * DAY_MS},

    {.name = "user-store", .kind = K_ENUM, FIELD(user_store), .def = "sqlite",
     .metavar = "sqlite|postgres", .help = "where users live", .group = "stores",
     .choices = user_store_choices},
    {.name = "postgres-url", .kind = K_STR, FIELD(postgres_url), .def = "", .metavar = "URL",
     .help = "PostgreSQL connection string for --user-store postgres", .group = "stores",
     .flags = F_SECRET},
    {.name = "audit-log", .kind = K_STR, FIELD(audit_log), .def = "", .metavar = "FILE|-",
     .help = "also write every audit event as a JSON line to FILE (- = standard output)",
     .group = "stores"},
    {.name = "audit-retention", .kind = K_DURATION, FIELD(audit_retention_ms), .def = "90d",
     .metavar = "DURATION", .help = "audit events older than this are pruned (0 = keep forever)",
     .group = "stores", .min = 0, .max = 3650 * DAY_MS},
    {.name = "audit-queue", .kind = K_UINT, FIELD(audit_queue), .def = "4096", .metavar = "N",
     .help = "failed and throttled login events waiting to be stored; past it they are dropped "
             "and counted (gatehouse_audit_dropped_total)",
     .group = "stores", .min = 16, .max = 1u << 20},
    {.name = "user-cache", .kind = K_UINT, FIELD(user_cache), .def = "16384", .metavar = "N",
     .help = "users whose names token checks keep in memory, ~96 bytes each (0 = off)",
     .group = "stores", .min = 0, .max = 1u << 24},
    {.name = "user-cache-ttl", .kind = K_DURATION, FIELD(user_cache_ttl_ms), .def = "1s",
     .metavar = "DURATION",
     .help = "a user deleted by another process is refused by token checks within this",
     .group = "stores", .min = 1, .max = DAY_MS},
    {.name = "user-stale-max", .kind = K_DURATION, FIELD(user_stale_max_ms), .def = "1h",
     .metavar = "DURATION",
     .help = "while the user store does not answer, token checks answer from a cached user "
             "record up to this old (0 = never; logins still fail)",
     .group = "stores", .min = 0, .max = 7 * DAY_MS},
    {.name = "session-store", .kind = K_ENUM, FIELD(session_store), .def = "memory",
     .metavar = "memory|redis", .help = "where sessions live", .group = "stores",
     .choices = session_store_choices},
    {.name = "redis-url", .kind = K_STR, FIELD(redis_url), .def = "", .metavar = "URL",
     .help = "Redis URL for --session-store redis", .group = "stores", .flags = F_SECRET},
    {.name = "redis-wait-replicas", .kind = K_UINT, FIELD(redis_wait_replicas), .def = "0",
     .metavar = "N",
     .help = "after each session create and revocation, wait until N Redis replicas have it "
             "(else 503); 0 = do not wait",
     .group = "stores", .min = 0, .max = 16},

    {.name = "statsd", .kind = K_STR, FIELD(statsd), .def = "", .shown = "off",
     .metavar = "HOST:PORT", .help = "DogStatsD agent to send metrics to",
     .group = "observability", .check = check_hostport,
     .expect = "host:port like 127.0.0.1:8125"},
    {.name = "alert-webhook", .kind = K_STR, FIELD(alert_webhook), .def = "", .shown = "off",
     .metavar = "URL", .help = "URL that receives alert JSON", .group = "observability",
     .check = check_http_url, .expect = "an http:// or https:// URL", .flags = F_SECRET},
    {.name = "watch-window", .kind = K_DURATION, FIELD(watch_window_ms), .def = "10m",
     .metavar = "DURATION", .help = "memory watchdog forecast window", .group = "observability",
     .min = 1, .max = 30 * DAY_MS},
    {.name = "heap-profile", .kind = K_ENUM, FIELD(heap_profile), .def = "on",
     .metavar = "on|off",
     .help = "sampling heap profiler: alerts name the stacks that grow; GET /debug/heap",
     .group = "observability", .choices = heap_profile_choices},
    {.name = "heap-sample-interval", .kind = K_SIZE, FIELD(heap_sample_interval),
     .def = "512KiB", .metavar = "SIZE",
     .help = "heap profiler: one allocation sampled per this many bytes on average",
     .group = "observability", .min = 4096, .max = 1ull << 32},
    {.name = "watch-interval", .kind = K_DURATION, FIELD(watch_interval_ms), .def = "1s",
     .metavar = "DURATION", .help = "memory watchdog sample period", .group = "observability",
     .min = 1, .max = HOUR_MS},
    {.name = "memory-warn", .kind = K_UINT, FIELD(memory_warn_percent), .def = "70",
     .metavar = "PERCENT", .help = "memory_high alert (warning) at this % of --memory-limit",
     .group = "observability", .min = 1, .max = 100},
    {.name = "memory-critical", .kind = K_UINT, FIELD(memory_critical_percent), .def = "85",
     .metavar = "PERCENT",
     .help = "memory_high alert (critical; /readyz answers 503) at this % of --memory-limit",
     .group = "observability", .min = 1, .max = 100},
    {.name = "forecast-horizon", .kind = K_DURATION, FIELD(forecast_horizon_ms), .def = "2h",
     .metavar = "DURATION", .help = "alert when memory is forecast to run out within this",
     .group = "observability", .min = 1, .max = 365 * DAY_MS},
    {.name = "log-format", .kind = K_ENUM, FIELD(log_format), .def = "json",
     .metavar = "json|text", .help = "log lines as JSON objects or key=value text",
     .group = "observability", .choices = log_format_choices},
    {.name = "log-level", .kind = K_ENUM, FIELD(log_level), .def = "info",
     .metavar = "debug|info|warn|error", .help = "least severe level logged",
     .group = "observability", .choices = log_level_choices},

    {.name = "public-url", .kind = K_STR, FIELD(public_url), .def = "", .shown = "off",
     .metavar = "URL", .help = "this service's address as users reach it: the base of emailed "
     "links (required for email)", .group = "email", .check = check_http_url,
     .expect = "an http:// or https:// URL"},
    {.name = "smtp-url", .kind = K_STR, FIELD(smtp_url), .def = "", .shown = "off",
     .metavar = "URL", .help = "mail server: smtp://host:port (STARTTLS when offered) or "
     "smtps://host:port (unset: mail stays queued in the outbox)", .group = "email",
     .check = check_smtp_url, .expect = "an smtp:// or smtps:// URL", .flags = F_SECRET},
    {.name = "smtp-from", .kind = K_STR, FIELD(smtp_from), .def = "", .metavar = "ADDRESS",
     .help = "the sender of every email (required for email)", .group = "email"},
    {.name = "smtp-credentials-file", .kind = K_STR, FIELD(smtp_credentials_file), .def = "",
     .metavar = "FILE", .help = "SMTP AUTH as USER:PASSWORD on the first line of FILE",
     .group = "email"},
    {.name = "smtp-retry-for", .kind = K_DURATION, FIELD(smtp_retry_for_ms), .def = "24h",
     .metavar = "DURATION", .help = "how long a message is retried before it is given up",
     .group = "email", .min = 1000, .max = 30 * DAY_MS},
    {.name = "smtp-timeout", .kind = K_DURATION, FIELD(smtp_timeout_ms), .def = "30s",
     .metavar = "DURATION", .help = "one delivery's time limit; a node that dies mid-delivery "
     "leaves the message to another after this plus 5s", .group = "email", .min = 1000,
     .max = 600000},
    {.name = "email-templates", .kind = K_STR, FIELD(email_templates), .def = "",
     .shown = "built-in", .metavar = "DIR",
     .help = "KIND.subject, KIND.txt, KIND.html files that replace the built-in messages",
     .group = "email"},
    {.name = "product-name", .kind = K_STR, FIELD(product_name), .def = "Gatehouse",
     .metavar = "NAME", .help = "the product named in emails", .group = "email"},

    /* OpenID Connect (issue #21): signing keys and clients (account/oidc_keys.h) */
    {.name = "oidc-key-rotation", .kind = K_DURATION, FIELD(oidc_key_rotation_ms), .def = "90d",
     .metavar = "DURATION",
     .help = "signing keys older than this are replaced (the old ones stay in the JWKS until "
             "their tokens expire); 0 = only by `gatehouse keys rotate`",
     .group = "openid connect", .min = 0, .max = 3650 * DAY_MS},
    {.name = "oidc-key-refresh", .kind = K_DURATION, FIELD(oidc_key_refresh_ms), .def = "60s",
     .metavar = "DURATION",
     .help = "how often a node re-reads the signing keys (a rotation by another node or by "
             "command is used and published within this)",
     .group = "openid connect", .min = 1000, .max = HOUR_MS},
    {.name = "oidc-allow-http-redirects", .kind = K_BOOL, FIELD(oidc_allow_http_redirects),
     .def = "false", .metavar = "[=true|false]",
     .help = "clients may register http:// redirect URIs to any host (default: https, or http "
             "to localhost, 127.0.0.1 and [::1] only)",
     .group = "openid connect"},

    {.name = "http-threads", .kind = K_UINT, FIELD(http_threads), .def = "auto",
     .shown = "number of cores", .metavar = "N|auto", .help = "threads serving HTTP (0 = auto)",
     .group = "HTTP limits", .min = 0, .max = 1024, .flags = F_AUTO},
    {.name = "max-connections", .kind = K_UINT, FIELD(max_connections), .def = "1024",
     .metavar = "N", .help = "open connections at once; more are refused",
     .group = "HTTP limits", .min = 1, .max = 1048576},
    {.name = "max-connections-per-ip", .kind = K_UINT, FIELD(max_connections_per_ip),
     .def = "64", .metavar = "N",
     .help = "open connections from one client IP (an IPv6 /64), in each of its budgets: "
             "without and with password requests, and spare; --trusted-proxies are not capped",
     .group = "HTTP limits", .min = 1, .max = 1048576},
    {.name = "connection-timeout", .kind = K_DURATION, FIELD(connection_timeout_ms),
     .def = "30s", .metavar = "DURATION", .help = "a connection silent both ways this long is closed",
     .group = "HTTP limits", .min = 1, .max = DAY_MS},
    {.name = "connection-memory", .kind = K_SIZE, FIELD(connection_memory), .def = "32KiB",
     .metavar = "SIZE",
     .help = "memory pool per connection: bounds the request line and the size and number of "
             "headers (past it: 431, or 414 for the URL)",
     .group = "HTTP limits", .min = 4 * KIB, .max = 16 * MIB},
    {.name = "max-body", .kind = K_SIZE, FIELD(max_body), .def = "64KiB", .metavar = "SIZE",
     .help = "largest request body; larger gets 413", .group = "HTTP limits", .min = 1 * KIB,
     .max = 64 * MIB},
    {.name = "max-requests-per-connection", .kind = K_UINT, FIELD(max_requests_per_connection),
     .def = "1000", .metavar = "N",
     .help = "keep-alive requests on one connection before it is closed (0 = no limit)",
     .group = "HTTP limits", .min = 0, .max = 1000000000},
    {.name = "header-timeout", .kind = K_DURATION, FIELD(header_timeout_ms), .def = "10s",
     .metavar = "DURATION",
     .help = "whole request head must arrive within this of the connection opening or the "
             "previous response, however slowly it trickles; also ends idle keep-alive (0 = off)",
     .group = "HTTP limits", .min = 0, .max = HOUR_MS},
    {.name = "body-timeout", .kind = K_DURATION, FIELD(body_timeout_ms), .def = "10s",
     .metavar = "DURATION", .help = "whole request body must arrive within this of the head (0 = off)",
     .group = "HTTP limits", .min = 0, .max = HOUR_MS},
};
/* clang-format on */

#define NKEYS (sizeof keys / sizeof keys[0])

/* ---- strict parsers ---- */

/* Leading decimal digits of s into *out; returns how many were read (0 = none), or -1 when the
 * number does not fit in 64 bits. No sign, no whitespace: those are garbage here. */
static int parse_digits(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    while (s[n] >= '0' && s[n] <= '9') {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        n++;
    }
    *out = v;
    return n;
}

int gh_config_parse_duration(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    uint64_t v;
    int n = parse_digits(s, &v);
    if (n == 0)
        return GH_EINVAL;
    if (n < 0) {
        /* Still garbage if what follows the digits is not a unit. */
        while (*s >= '0' && *s <= '9')
            s++;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strcmp(s, units[i].unit) == 0)
                return GH_ERANGE;
        return GH_EINVAL;
    }
    const char *unit = s + n;
    if (*unit == '\0') {
        /* A bare number is ambiguous (seconds? ms?) — except zero, which is zero in any unit. */
        if (v != 0)
            return GH_EINVAL;
        *out_ms = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].unit) == 0) {
            if (v > (uint64_t)INT64_MAX / units[i].ms)
                return GH_ERANGE;
            *out_ms = (int64_t)(v * units[i].ms);
            return 0;
        }
    }
    return GH_EINVAL;
}

static const struct {
    const char *unit;
    uint64_t bytes;
} size_units[] = {
    {"B", 1},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
    {"KB", 1000ULL},
    {"MB", 1000000ULL},
    {"GB", 1000000000ULL},
    {"TB", 1000000000000ULL},
    {"K", 1ULL << 10},
    {"M", 1ULL << 20},
    {"G", 1ULL << 30},
};

int gh_config_parse_size(const char *s, uint64_t *out_bytes)
{
    uint64_t v;
    int n = parse_digits(s, &v);
    if (n == 0)
        return GH_EINVAL;
    const char *unit = s;
    while (*unit >= '0' && *unit <= '9')
        unit++;
    uint64_t mult = 0;
    if (*unit == '\0') {
        mult = 1;
    } else {
        for (size_t i = 0; i < sizeof size_units / sizeof size_units[0]; i++) {
            if (strcmp(unit, size_units[i].unit) == 0) {
                mult = size_units[i].bytes;
                break;
            }
        }
    }
    if (mult == 0)
        return GH_EINVAL;
    if (n < 0 || v > UINT64_MAX / mult)
        return GH_ERANGE;
    *out_bytes = v * mult;
    return 0;
}

/* Port: 1 to 5 digits, 0..65535; returns false for anything else. */
static bool parse_port(const char *s, uint16_t *port)
{
    uint64_t v;
    int n = parse_digits(s, &v);
    if (n <= 0 || n > 5 || s[n] != '\0' || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

int gh_config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *h, *p;
    size_t hlen;
    unsigned char addr[sizeof(struct in6_addr)];
    int family;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return GH_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        p = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return GH_EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        p = colon + 1;
        family = AF_INET;
    }
    if (hlen == 0 || hlen >= sizeof buf)
        return GH_EINVAL;
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    uint16_t pv;
    if (!parse_port(p, &pv))
        return GH_EINVAL;
    bool ok =
        (family == AF_INET && strcmp(buf, "localhost") == 0) || inet_pton(family, buf, addr) == 1;
    if (!ok)
        return GH_EINVAL;
    if (hlen >= hostlen)
        return GH_ERANGE;
    memcpy(host, buf, hlen + 1);
    *port = pv;
    return 0;
}

uint64_t gh_config_effective_memory_limit(uint64_t configured, uint64_t cgroup, uint64_t physical)
{
    uint64_t limit = configured;
    if (limit == 0)
        limit = cgroup ? cgroup : physical / 2;
    else if (cgroup && cgroup < limit)
        limit = cgroup;
    /* RAM unknown and no cgroup: a modest figure beats 0, which would make every budget 0. */
    if (limit == 0)
        limit = 1024 * MIB;
    return limit;
}

/* --throttle-ip's bounds: a window of at most a day, at most a million attempts in it. */
#define RATE_MAX_COUNT 1000000
#define RATE_MAX_WINDOW_MS DAY_MS

/* "20/1m" -> 20, 60000; "0" -> off. */
static bool parse_rate(const char *s, uint32_t *count, int64_t *window_ms)
{
    if (strcmp(s, "0") == 0) {
        *count = 0;
        *window_ms = 0;
        return true;
    }
    uint64_t c;
    int n = parse_digits(s, &c);
    if (n <= 0 || s[n] != '/' || c > RATE_MAX_COUNT)
        return false;
    int64_t w;
    if (gh_config_parse_duration(s + n + 1, &w) != 0 || (w == 0 && c != 0) ||
        (uint64_t)w > RATE_MAX_WINDOW_MS)
        return false;
    *count = (uint32_t)c;
    *window_ms = c ? w : 0;
    return true;
}

static bool parse_cidr(const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned char addr[sizeof(struct in6_addr)];
    if (len == 0 || len >= sizeof buf)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    int family = strchr(buf, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, buf, addr) != 1)
        return false;
    if (!slash)
        return true;
    uint64_t bits;
    int n = parse_digits(slash + 1, &bits);
    return n > 0 && slash[1 + n] == '\0' && bits <= (family == AF_INET6 ? 128u : 32u);
}

static bool check_cidrs(const char *v)
{
    const char *p = v;
    if (*p == '\0')
        return true;
    for (;;) {
        while (*p == ' ')
            p++;
        size_t len = strcspn(p, ",");
        size_t trimmed = len;
        while (trimmed > 0 && p[trimmed - 1] == ' ')
            trimmed--;
        if (!parse_cidr(p, trimmed))
            return false;
        if (p[len] == '\0')
            return true;
        p += len + 1;
    }
}

static bool check_hostport(const char *v)
{
    if (*v == '\0')
        return true;
    const char *colon = strrchr(v, ':');
    uint16_t port;
    return colon && colon != v && parse_port(colon + 1, &port) && port != 0 &&
           strcspn(v, " \t/") == strlen(v);
}

static bool check_http_url(const char *v)
{
    if (*v == '\0')
        return true;
    const char *rest = NULL;
    if (strncmp(v, "http://", 7) == 0)
        rest = v + 7;
    else if (strncmp(v, "https://", 8) == 0)
        rest = v + 8;
    return rest && *rest != '\0' && *rest != '/' && strcspn(v, " \t") == strlen(v);
}

/* ---- errors ---- */

typedef enum { SRC_DEFAULT = 0, SRC_FILE, SRC_ENV, SRC_FLAG } src_kind_t;

typedef struct {
    src_kind_t kind;
    int line; /* SRC_FILE */
} src_t;

typedef struct {
    gh_config_t *cfg;
    src_t src[NKEYS]; /* where each key's value came from, for error messages */
    const char *file; /* the INI file's path, while it is read and after */
    char *err;
    size_t errlen;
    bool failed;
} load_t;

static void set_err(load_t *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(load_t *ld, const char *fmt, ...)
{
    if (ld->failed)
        return; /* the first error is the one worth reading */
    ld->failed = true;
    if (!ld->err || ld->errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, ld->errlen, fmt, ap);
    va_end(ap);
    /* One line, whatever a value contained. */
    for (char *p = ld->err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
}

/* A value as it may be echoed in an error: quoted by the caller, cut at 64 characters, control
 * characters replaced so the message stays one printable line. */
static void echo_value(char *dst, size_t dstlen, const char *v)
{
    assert(dstlen > 4);
    size_t i = 0, max = dstlen - 4;
    for (; i < max && i < 64 && v[i]; i++)
        dst[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
    if (v[i]) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

static void env_name(const keydesc_t *k, char *buf, size_t len)
{
    int n = snprintf(buf, len, "GATEHOUSE_%s", k->name);
    assert(n > 0 && (size_t)n < len);
    (void)n;
    for (char *p = buf; *p; p++)
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

/* How a person finds where the key was set: "--idle-ttl", "GATEHOUSE_IDLE_TTL" or
 * "gatehouse.ini:3: idle-ttl". */
static void key_label(const load_t *ld, size_t ki, char *buf, size_t len)
{
    const keydesc_t *k = &keys[ki];
    switch (ld->src[ki].kind) {
    case SRC_ENV:
        env_name(k, buf, len);
        break;
    case SRC_FILE:
        snprintf(buf, len, "%s:%d: %s", ld->file ? ld->file : "?", ld->src[ki].line, k->name);
        break;
    default:
        snprintf(buf, len, "--%s", k->name);
        break;
    }
}

/* "8KiB" for 8192: the largest binary unit that divides n exactly. */
static void format_size(uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t u = 0;
    while (u + 1 < sizeof units / sizeof units[0] && n != 0 && n % 1024 == 0) {
        n /= 1024;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)n, units[u]);
}

static void format_duration(int64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%lldms", (long long)ms);
}

static uint64_t key_max(const keydesc_t *k)
{
    return k->max ? k->max : (k->size == sizeof(uint32_t) ? UINT32_MAX : UINT64_MAX);
}

/* "1KiB to 64MiB", "1ms to 365d", "1 to 64": the range of a numeric key as a person writes it. */
static void format_range(const keydesc_t *k, char *buf, size_t len)
{
    char lo[32], hi[32];
    switch (k->kind) {
    case K_DURATION:
        format_duration((int64_t)k->min, lo, sizeof lo);
        format_duration((int64_t)key_max(k), hi, sizeof hi);
        break;
    case K_SIZE:
        format_size(k->min, lo, sizeof lo);
        format_size(key_max(k), hi, sizeof hi);
        break;
    default:
        snprintf(lo, sizeof lo, "%llu", (unsigned long long)k->min);
        snprintf(hi, sizeof hi, "%llu", (unsigned long long)key_max(k));
        break;
    }
    snprintf(buf, len, "%s to %s", lo, hi);
}

/* What a valid value of k looks like, for "expected ...". With `range` the value had the right
 * form but was out of bounds (or too large to read), so the bounds are what the reader needs. */
static void expected(const keydesc_t *k, bool range, char *buf, size_t len)
{
    char r[80];
    const char *or_auto = (k->flags & F_AUTO) ? " or auto" : "";
    switch (k->kind) {
    case K_STR:
        snprintf(buf, len, "%s", k->expect ? k->expect : "a string");
        break;
    case K_BOOL:
        snprintf(buf, len, "true or false");
        break;
    case K_DURATION:
        format_range(k, r, sizeof r);
        if (range)
            snprintf(buf, len, "a duration from %s", r);
        else
            snprintf(buf, len, "a duration like 500ms, 30m or 12h");
        break;
    case K_SIZE:
        format_range(k, r, sizeof r);
        if (range)
            snprintf(buf, len, "a size from %s%s", r, or_auto);
        else
            snprintf(buf, len, "a size like 512KiB or 256MiB%s", or_auto);
        break;
    case K_UINT:
        format_range(k, r, sizeof r);
        snprintf(buf, len, "an integer from %s%s", r, or_auto);
        break;
    case K_ENUM: {
        size_t used = (size_t)snprintf(buf, len, "one of");
        for (size_t i = 0; k->choices[i] && used < len; i++)
            used += (size_t)snprintf(buf + used, len - used, "%s %s", i ? "," : "", k->choices[i]);
        break;
    }
    case K_LISTEN:
        snprintf(buf, len,
                 "host:port like 127.0.0.1:8080, localhost:8080 or [::1]:8080 (port 0-65535)");
        break;
    case K_RATE:
        snprintf(buf, len,
                 "count/duration like 20/1m (count 1 to %d, duration up to 1d), or 0 to turn it "
                 "off",
                 RATE_MAX_COUNT);
        break;
    }
}

typedef enum { BAD_FORM = 0, BAD_RANGE, BAD_TOO_LARGE } bad_t;

static void bad_value(load_t *ld, size_t ki, const char *v, bad_t why)
{
    char label[GH_CONFIG_STR + 64], want[160], shown[72];
    key_label(ld, ki, label, sizeof label);
    expected(&keys[ki], why != BAD_FORM, want, sizeof want);
    if (keys[ki].flags & F_SECRET) {
        set_err(ld, "%s: expected %s (the value is not shown: it may be secret)", label, want);
        return;
    }
    echo_value(shown, sizeof shown, v);
    set_err(ld, "%s: expected %s, got \"%s\"%s", label, want, shown,
            why == BAD_TOO_LARGE ? " (too large)" : "");
}

/* ---- applying one value ---- */

static void *field(gh_config_t *cfg, const keydesc_t *k)
{
    return (char *)cfg + k->offset;
}

static int apply_value(load_t *ld, size_t ki, const char *v, src_t src)
{
    const keydesc_t *k = &keys[ki];
    gh_config_t *cfg = ld->cfg;
    void *f = field(cfg, k);
    bad_t why = BAD_FORM;
    ld->src[ki] = src;
    bool is_auto = (k->flags & F_AUTO) && strcmp(v, "auto") == 0;

    switch (k->kind) {
    case K_STR: {
        size_t len = strlen(v);
        assert(k->size == GH_CONFIG_STR);
        if (len >= GH_CONFIG_STR) {
            char label[GH_CONFIG_STR + 64];
            key_label(ld, ki, label, sizeof label);
            set_err(ld, "%s: expected at most %d characters, got %zu", label, GH_CONFIG_STR - 1,
                    len);
            return GH_EINVAL;
        }
        if (k->check && !k->check(v))
            goto bad;
        memcpy(f, v, len + 1);
        return 0;
    }
    case K_BOOL:
        assert(k->size == sizeof(bool));
        if (strcmp(v, "true") == 0)
            *(bool *)f = true;
        else if (strcmp(v, "false") == 0)
            *(bool *)f = false;
        else
            goto bad;
        return 0;
    case K_DURATION: {
        int64_t ms;
        int rc = gh_config_parse_duration(v, &ms);
        assert(k->size == sizeof(int64_t));
        if (rc != 0) {
            why = rc == GH_ERANGE ? BAD_TOO_LARGE : BAD_FORM;
            goto bad;
        }
        if ((uint64_t)ms < k->min || (uint64_t)ms > key_max(k)) {
            why = BAD_RANGE;
            goto bad;
        }
        *(int64_t *)f = ms;
        return 0;
    }
    case K_SIZE: {
        uint64_t n = 0;
        assert(k->size == sizeof(uint64_t));
        if (!is_auto) {
            int rc = gh_config_parse_size(v, &n);
            if (rc != 0) {
                why = rc == GH_ERANGE ? BAD_TOO_LARGE : BAD_FORM;
                goto bad;
            }
            /* 0 means auto for auto keys (config.h: "0 in the file = auto"). */
            bool zero_is_auto = n == 0 && (k->flags & F_AUTO);
            if ((n < k->min && !zero_is_auto) || n > key_max(k)) {
                why = BAD_RANGE;
                goto bad;
            }
        }
        *(uint64_t *)f = n;
        return 0;
    }
    case K_UINT: {
        uint64_t n = 0;
        uint64_t max = key_max(k);
        if (!is_auto) {
            int digits = parse_digits(v, &n);
            if (digits < 0 && strspn(v, "0123456789") == strlen(v)) {
                why = BAD_TOO_LARGE;
                goto bad;
            }
            if (digits <= 0 || v[digits] != '\0' || n < k->min || n > max)
                goto bad; /* the message of an integer key always states its range */
        }
        if (k->size == sizeof(uint32_t))
            *(uint32_t *)f = (uint32_t)n;
        else if (k->size == sizeof(uint64_t))
            *(uint64_t *)f = n;
        else
            assert(!"K_UINT field of unexpected size");
        return 0;
    }
    case K_ENUM:
        for (int i = 0; k->choices[i]; i++) {
            if (strcmp(v, k->choices[i]) == 0) {
                if (k->size == sizeof(bool))
                    *(bool *)f = i != 0;
                else if (k->size == sizeof(int))
                    memcpy(f, &i, sizeof i); /* enums here are int-sized; see the asserts */
                else
                    assert(!"K_ENUM field of unexpected size");
                return 0;
            }
        }
        goto bad;
    case K_LISTEN:
        if (gh_config_parse_listen(v, cfg->listen_host, sizeof cfg->listen_host,
                                   &cfg->listen_port) != 0)
            goto bad;
        return 0;
    case K_RATE:
        if (!parse_rate(v, &cfg->throttle_ip_count, &cfg->throttle_ip_window_ms))
            goto bad;
        return 0;
    }
bad:
    bad_value(ld, ki, v, why);
    return GH_EINVAL;
}

static_assert(sizeof(gh_session_policy_t) == sizeof(int), "K_ENUM stores int");
static_assert(sizeof(gh_user_store_kind_t) == sizeof(int), "K_ENUM stores int");
static_assert(sizeof(gh_session_store_kind_t) == sizeof(int), "K_ENUM stores int");
static_assert(sizeof(gh_log_format_t) == sizeof(int), "K_ENUM stores int");
static_assert(sizeof(gh_log_level_t) == sizeof(int), "K_ENUM stores int");
static_assert(sizeof(gh_durability_t) == sizeof(int), "K_ENUM stores int");

static int find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strlen(keys[i].name) == len && strncmp(keys[i].name, name, len) == 0)
            return (int)i;
    return -1;
}

void gh_config_defaults(gh_config_t *cfg)
{
    load_t ld = {.cfg = cfg};
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        int rc = apply_value(&ld, i, keys[i].def, (src_t){SRC_DEFAULT, 0});
        assert(rc == 0 && "a default in keys[] does not parse");
        (void)rc;
    }
}

/* ---- INI file ---- */

typedef struct {
    load_t *ld;
    FILE *fp;
    int line;         /* number of the line inih is working on */
    bool too_long;    /* a line did not fit inih's buffer */
    bool seen[NKEYS]; /* a key set twice in one file is an error, not a silent override */
} ini_ctx_t;

/* inih calls this once per line, so counting here gives the handler its line number without
 * depending on how the library was built (INI_HANDLER_LINENO). */
static char *ini_read_line(char *str, int num, void *stream)
{
    ini_ctx_t *ctx = stream;
    if (ctx->ld->failed || ctx->too_long)
        return NULL;
    if (!fgets(str, num, ctx->fp))
        return NULL;
    ctx->line++;
    size_t len = strlen(str);
    if (len > 0 && str[len - 1] != '\n') {
        int c = getc(ctx->fp);
        if (c != EOF) {
            /* inih would read the rest as a line of its own: refuse instead. */
            ctx->too_long = true;
            return NULL;
        }
    }
    /* inih reads an indented line as the continuation of the previous value, so an indented
     * `key = value` would silently become part of another key. Indentation means nothing in
     * our files: drop it, and every line stands on its own. */
    size_t lead = strspn(str, " \t");
    if (lead > 0)
        memmove(str, str + lead, len - lead + 1);
    return str;
}

static int ini_on_value(void *user, const char *section, const char *name, const char *value)
{
    ini_ctx_t *ctx = user;
    load_t *ld = ctx->ld;
    if (ld->failed)
        return 0;
    if (section[0] != '\0' && strcmp(section, "gatehouse") != 0) {
        set_err(ld, "%s:%d: unknown section [%s] (keys go at the top level or in [gatehouse])",
                ld->file, ctx->line, section);
        return 0;
    }
    int ki = find_key(name, strlen(name));
    if (ki < 0) {
        char shown[72];
        echo_value(shown, sizeof shown, name);
        set_err(ld, "%s:%d: unknown key \"%s\" (see gatehouse serve --help)", ld->file, ctx->line,
                shown);
        return 0;
    }
    if (ctx->seen[ki]) {
        set_err(ld, "%s:%d: %s: set twice in this file", ld->file, ctx->line, keys[ki].name);
        return 0;
    }
    ctx->seen[ki] = true;
    return apply_value(ld, (size_t)ki, value, (src_t){SRC_FILE, ctx->line}) == 0;
}

static int load_file(load_t *ld, const char *path, const char *named_by)
{
    ini_ctx_t ctx = {.ld = ld};
    ld->file = path;
    ctx.fp = fopen(path, "r");
    if (!ctx.fp) {
        set_err(ld, "%s: cannot open \"%s\": %s", named_by, path, strerror(errno));
        return GH_EINVAL;
    }
    int rc = ini_parse_stream(ini_read_line, &ctx, ini_on_value, &ctx);
    if (ferror(ctx.fp) && !ld->failed)
        set_err(ld, "%s: cannot read \"%s\"", named_by, path);
    fclose(ctx.fp);
    if (ctx.too_long && !ld->failed)
        set_err(ld, "%s:%d: line too long", path, ctx.line + 1);
    if (rc > 0 && !ld->failed)
        set_err(ld, "%s:%d: expected key = value, [gatehouse] or a ; comment", path, rc);
    if (rc < 0 && !ld->failed)
        set_err(ld, "%s: cannot read \"%s\"", named_by, path);
    return ld->failed ? GH_EINVAL : 0;
}

/* ---- environment ---- */

static int load_env(load_t *ld)
{
    char name[64];
    for (size_t i = 0; i < NKEYS; i++) {
        env_name(&keys[i], name, sizeof name);
        const char *v = getenv(name);
        /* Empty counts as unset: `GATEHOUSE_X=` in a compose file should not break a duration. */
        if (v && *v && apply_value(ld, i, v, (src_t){SRC_ENV, 0}) != 0)
            return GH_EINVAL;
    }
    return 0;
}

/* ---- command line ---- */

typedef struct {
    bool help;
    const char *config; /* --config FILE, or NULL */
} scan_t;

/* Walks argv. With apply == false it only checks the shape (unknown flags, missing values,
 * positional arguments) and finds --help and --config; with apply == true it sets values.
 * On a shape error it keeps scanning so that --help anywhere still wins. */
static int scan_args(load_t *ld, int argc, char **argv, bool apply, scan_t *scan)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            scan->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            char shown[72];
            echo_value(shown, sizeof shown, a);
            if (a[0] == '-' && a[1] != '-' && a[1] != '\0')
                set_err(ld, "unknown flag %s (see gatehouse serve --help)", shown);
            else
                set_err(ld,
                        "unexpected argument \"%s\": serve takes only flags (see gatehouse serve "
                        "--help)",
                        shown);
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
        bool is_config = namelen == 6 && strncmp(name, "config", 6) == 0;
        int ki = is_config ? -1 : find_key(name, namelen);
        if (!is_config && ki < 0) {
            char shown[72];
            echo_value(shown, sizeof shown, name);
            if (eq && (size_t)(eq - name) < strlen(shown))
                shown[eq - name] = '\0'; /* never echo a value: it may be a secret */
            set_err(ld, "unknown flag --%s (see gatehouse serve --help)", shown);
            continue;
        }
        const char *v;
        if (eq) {
            v = eq + 1;
        } else if (!is_config && keys[ki].kind == K_BOOL) {
            v = "true";
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            v = argv[++i];
        } else {
            char want[160] = "a file name";
            if (!is_config)
                expected(&keys[ki], false, want, sizeof want);
            set_err(ld, "--%.*s needs a value: %s", (int)namelen, name, want);
            continue;
        }
        if (is_config) {
            if (*v == '\0')
                set_err(ld, "--config needs a value: a file name");
            scan->config = v;
        } else if (apply && apply_value(ld, (size_t)ki, v, (src_t){SRC_FLAG, 0}) != 0) {
            return GH_EINVAL;
        }
    }
    return ld->failed ? GH_EINVAL : 0;
}

/* ---- after all sources: files named by keys, automatic values, checks across keys ---- */

static int read_admin_token_file(load_t *ld)
{
    gh_config_t *cfg = ld->cfg;
    size_t ki = (size_t)find_key("admin-token-file", 16);
    char label[GH_CONFIG_STR + 64], line[GH_CONFIG_STR + 2];
    int rc = 0;
    FILE *fp = NULL;

    if (cfg->admin_token_file[0] == '\0')
        return 0;
    key_label(ld, ki, label, sizeof label);
    if (cfg->admin_token[0] != '\0') {
        set_err(ld, "%s: give either --admin-token or --admin-token-file, not both", label);
        rc = GH_EINVAL;
        goto out;
    }
    fp = fopen(cfg->admin_token_file, "r");
    if (!fp) {
        set_err(ld, "%s: cannot read \"%s\": %s", label, cfg->admin_token_file, strerror(errno));
        rc = GH_EINVAL;
        goto out;
    }
    if (!fgets(line, sizeof line, fp)) {
        set_err(ld, "%s: expected a token on the first line of \"%s\", got an empty file", label,
                cfg->admin_token_file);
        rc = GH_EINVAL;
        goto out;
    }
    size_t len = strcspn(line, "\r\n");
    if (len >= GH_CONFIG_STR) {
        set_err(ld, "%s: expected a token of at most %d characters in \"%s\"", label,
                GH_CONFIG_STR - 1, cfg->admin_token_file);
        rc = GH_EINVAL;
        goto out;
    }
    if (len == 0) {
        set_err(ld, "%s: expected a token on the first line of \"%s\", got an empty line", label,
                cfg->admin_token_file);
        rc = GH_EINVAL;
        goto out;
    }
    memcpy(cfg->admin_token, line, len);
    cfg->admin_token[len] = '\0';
out:
    if (fp)
        fclose(fp);
    sodium_memzero(line, sizeof line);
    return rc;
}

static int resolve_and_check(load_t *ld)
{
    gh_config_t *cfg = ld->cfg;
    char label[GH_CONFIG_STR + 64], a[32], b[32];

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        cores = 1;
    if (cores > 1024)
        cores = 1024;
    /* Half the cores: argon2id is memory-bound, so more workers add little login throughput,
     * while a pool that fills every core makes token checks wait (docs/BENCHMARKS.md, flood). */
    if (cfg->hash_workers == 0)
        cfg->hash_workers = cores > 1 ? (uint32_t)cores / 2 : 1;
    if (cfg->http_threads == 0)
        cfg->http_threads = (uint32_t)cores;

    uint64_t cgroup = gh_mem_cgroup_limit();
    cfg->memory_limit =
        gh_config_effective_memory_limit(cfg->memory_limit, cgroup, gh_mem_physical_bytes());
    assert(cfg->memory_limit > 0);
    if (cfg->session_memory == 0) {
        cfg->session_memory = cfg->memory_limit / 2;
    } else if (cfg->session_memory > cfg->memory_limit) {
        key_label(ld, (size_t)find_key("session-memory", 14), label, sizeof label);
        format_size(cfg->session_memory, a, sizeof a);
        format_size(cfg->memory_limit, b, sizeof b);
        set_err(ld, "%s: expected at most the memory limit (%s%s), got %s", label, b,
                cgroup && cgroup == cfg->memory_limit ? ", the cgroup limit" : "", a);
        return GH_EINVAL;
    }

    if (cfg->watch_interval_ms > cfg->watch_window_ms) {
        key_label(ld, (size_t)find_key("watch-interval", 14), label, sizeof label);
        format_duration(cfg->watch_interval_ms, a, sizeof a);
        format_duration(cfg->watch_window_ms, b, sizeof b);
        set_err(ld, "%s: expected at most --watch-window (%s), got %s", label, b, a);
        return GH_EINVAL;
    }
    /* The watchdog's ring holds window / interval + 1 samples: at least 8 for a trend, at most
     * a day's worth at 1 s (GH_WATCH_MAX_SAMPLES). */
    if (cfg->watch_window_ms / cfg->watch_interval_ms < 7 ||
        cfg->watch_window_ms / cfg->watch_interval_ms > 86399) {
        key_label(ld, (size_t)find_key("watch-window", 12), label, sizeof label);
        format_duration(cfg->watch_window_ms, a, sizeof a);
        format_duration(cfg->watch_interval_ms, b, sizeof b);
        set_err(ld, "%s: expected 7 to 86399 times --watch-interval (%s), got %s", label, b, a);
        return GH_EINVAL;
    }
    /* Each cost is bounded alone; their product is what a hash costs. The pool hashes its dummy
     * at start, so a cost of minutes would be a start-up of minutes. */
    if (cfg->hash_memory * cfg->hash_ops > HASH_WORK_MAX) {
        key_label(ld, (size_t)find_key("hash-ops", 8), label, sizeof label);
        format_size(cfg->hash_memory, a, sizeof a);
        format_size(HASH_WORK_MAX, b, sizeof b);
        set_err(ld,
                "%s: expected --hash-memory x --hash-ops at most %s (1GiB x 16, 4GiB x 4), got "
                "%s x %llu",
                label, b, a, (unsigned long long)cfg->hash_ops);
        return GH_EINVAL;
    }
    if (cfg->memory_warn_percent > cfg->memory_critical_percent) {
        key_label(ld, (size_t)find_key("memory-warn", 11), label, sizeof label);
        set_err(ld, "%s: expected at most --memory-critical (%u), got %u", label,
                cfg->memory_critical_percent, cfg->memory_warn_percent);
        return GH_EINVAL;
    }
    if (cfg->user_store == GH_USER_STORE_POSTGRES && cfg->postgres_url[0] == '\0') {
        key_label(ld, (size_t)find_key("user-store", 10), label, sizeof label);
        set_err(ld, "%s: postgres needs --postgres-url", label);
        return GH_EINVAL;
    }
    if (cfg->session_store == GH_SESSION_STORE_REDIS && cfg->redis_url[0] == '\0') {
        key_label(ld, (size_t)find_key("session-store", 13), label, sizeof label);
        set_err(ld, "%s: redis needs --redis-url", label);
        return GH_EINVAL;
    }
    return 0;
}

int gh_config_load(gh_config_t *cfg, int argc, char **argv, FILE *out, char *err, size_t errlen)
{
    load_t ld = {.cfg = cfg, .err = err, .errlen = errlen};
    scan_t scan = {0};
    int rc;

    assert(cfg && argc >= 1 && argv);
    if (err && errlen)
        err[0] = '\0';
    gh_config_defaults(cfg);

    rc = scan_args(&ld, argc, argv, false, &scan);
    if (scan.help) {
        if (out)
            gh_config_usage(out);
        if (err && errlen)
            err[0] = '\0';
        rc = 1;
        goto out;
    }
    if (rc != 0)
        goto out;

    const char *env_config = getenv("GATEHOUSE_CONFIG");
    if (scan.config)
        rc = load_file(&ld, scan.config, "--config");
    else if (env_config && *env_config)
        rc = load_file(&ld, env_config, "GATEHOUSE_CONFIG");
    if (rc != 0)
        goto out;
    if ((rc = load_env(&ld)) != 0)
        goto out;
    if ((rc = scan_args(&ld, argc, argv, true, &scan)) != 0)
        goto out;
    if ((rc = read_admin_token_file(&ld)) != 0)
        goto out;
    rc = resolve_and_check(&ld);
out:
    if (rc < 0) {
        rc = GH_EINVAL;
        /* A half-loaded config is never used; make sure a secret in it does not linger. */
        sodium_memzero(cfg->admin_token, sizeof cfg->admin_token);
    }
    return rc;
}

size_t gh_config_ranges(const gh_config_t *cfg, gh_config_range_t *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const keydesc_t *k = &keys[i];
        if (k->kind != K_DURATION && k->kind != K_SIZE && k->kind != K_UINT)
            continue;
        if (n < max) {
            const void *f = (const char *)cfg + k->offset;
            uint64_t v;
            if (k->kind == K_DURATION) {
                int64_t ms;
                memcpy(&ms, f, sizeof ms);
                v = (uint64_t)ms;
            } else if (k->size == sizeof(uint32_t)) {
                uint32_t u;
                memcpy(&u, f, sizeof u);
                v = u;
            } else {
                memcpy(&v, f, sizeof v);
            }
            out[n] = (gh_config_range_t){.name = k->name,
                                         .min = k->min,
                                         .max = k->max,
                                         .value = v,
                                         .duration = k->kind == K_DURATION};
        }
        n++;
    }
    return n;
}

/* ---- --help ---- */

void gh_config_usage(FILE *out)
{
    char left[NKEYS][96];
    size_t width = strlen("--config FILE");
    for (size_t i = 0; i < NKEYS; i++) {
        const keydesc_t *k = &keys[i];
        snprintf(left[i], sizeof left[i], "--%s%s%s", k->name, k->kind == K_BOOL ? "" : " ",
                 k->metavar);
        if (strlen(left[i]) > width)
            width = strlen(left[i]);
    }
    int w = (int)width;
    fprintf(out,
            "usage: gatehouse serve [--config FILE] [flags]\n"
            "\n"
            "Runs the Gatehouse service. Every flag below can also be given:\n"
            "  - in the environment as GATEHOUSE_<KEY>, upper case with '-' as '_'\n"
            "    (GATEHOUSE_SESSION_TTL=12h); empty variables are ignored;\n"
            "  - in an INI file named by --config FILE or GATEHOUSE_CONFIG, as `key = value`\n"
            "    at the top level or in a [gatehouse] section (`session-ttl = 12h`).\n"
            "A flag beats the environment, the environment beats the file, the file beats the\n"
            "default, whatever the order they appear in.\n"
            "Durations: an integer and a unit, ms, s, m, h or d (500ms, 30m, 12h).\n"
            "Sizes: an integer and a unit, B, KiB, MiB, GiB, TiB (also K, M, G) or KB, MB, GB, TB\n"
            "(powers of 1000); a bare integer is bytes.\n"
            "\n"
            "  %-*s   %s\n"
            "  %-*s   %s\n",
            w, "--config FILE", "read settings from this INI file", w, "-h, --help",
            "show this help and exit");
    const char *group = NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        const keydesc_t *k = &keys[i];
        if (!group || strcmp(group, k->group) != 0) {
            group = k->group;
            fprintf(out, "\n%s:\n", group);
        }
        /* Secrets have no default to show; "" reads as "none" for every empty default. */
        const char *shown = k->shown ? k->shown : k->def;
        if (*shown == '\0')
            shown = "none";
        char range[80] = "";
        if (k->kind == K_DURATION || k->kind == K_SIZE || k->kind == K_UINT) {
            char r[72];
            format_range(k, r, sizeof r);
            snprintf(range, sizeof range, " [%s]", r);
        }
        fprintf(out, "  %-*s   %s%s (default: %s)\n", w, left[i], k->help, range, shown);
    }
}
