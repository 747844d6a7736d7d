/*
 * config.h — the command-line and configuration contract of `gatehouse serve` (DESIGN.md).
 *
 * Precedence: command-line flag > environment (GATEHOUSE_<KEY>, '-' as '_', upper case) >
 * INI file (--config, libinih; keys at top level or in a [gatehouse] section) > built-in default.
 * Every key is one row of a table in config.c (name, type, default, help), so parsing, the
 * environment, the INI file and `--help` can never disagree. Durations ("500ms", "30m", "12h")
 * and sizes ("512KiB", "256MiB") are parsed strictly: garbage, overflow or a missing unit is an
 * error that names the key.
 */
#ifndef GH_CONFIG_CONFIG_H
#define GH_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/log.h"
#include "store/policy.h"

typedef enum { GH_USER_STORE_SQLITE = 0, GH_USER_STORE_POSTGRES } gh_user_store_kind_t;
typedef enum { GH_SESSION_STORE_MEMORY = 0, GH_SESSION_STORE_REDIS } gh_session_store_kind_t;

#define GH_CONFIG_STR 512

typedef struct {
    /* network */
    char listen_host[GH_CONFIG_STR]; /* "127.0.0.1" */
    uint16_t listen_port;            /* 8080; 0 = pick a free port */
    char data_dir[GH_CONFIG_STR];    /* "./var" */
    gh_durability_t durability;      /* normal */

    /* sessions */
    int64_t session_ttl_ms;         /* 12h */
    int64_t idle_ttl_ms;            /* 30m */
    uint32_t max_sessions_per_user; /* 100 */
    uint64_t memory_limit;          /* bytes; 0 in the file = auto (cgroup, else 50% of RAM) —
                                       gh_config_load resolves it, so after load it is never 0 */
    uint64_t session_memory;        /* bytes; resolved to memory_limit / 2 when not set */
    gh_session_policy_t session_policy;
    uint32_t session_clients; /* 65536: distinct (IP, user agent) pairs the memory store keeps */

    /* passwords */
    uint64_t hash_memory;  /* bytes, 19MiB; minimum 8KiB */
    uint64_t hash_ops;     /* 2; minimum 1 */
    uint32_t hash_workers; /* default: number of cores */
    uint32_t hash_queue;   /* 64 */

    /* accounts and abuse */
    bool registration_open;               /* "open" | "closed" */
    uint32_t throttle_ip_count;           /* "20/1m" -> 20; 0 = off */
    int64_t throttle_ip_window_ms;        /* "20/1m" -> 60000; 0 when off */
    uint32_t throttle_account;            /* 10 */
    char trusted_proxies[GH_CONFIG_STR];  /* comma-separated CIDRs, "" = none */
    char admin_token[GH_CONFIG_STR];      /* "" = admin routes answer 403 forbidden */
    char admin_token_file[GH_CONFIG_STR]; /* read into admin_token by gh_config_load */
    bool cookie_secure;

    /* pages and forward auth (src/api/pages.c) */
    /* hosts besides the request's own a login may send the browser to; ".example.com" =
     * subdomains */
    char allowed_redirect_hosts[GH_CONFIG_STR];
    bool forward_auth_redirect;    /* /v1/auth answers 302 to login_url for Accept: text/html */
    char login_url[GH_CONFIG_STR]; /* "/login"; an absolute URL when the login page is elsewhere */
    char ops_users[GH_CONFIG_STR]; /* usernames whose session cookie opens /ops */
    char webauthn_rp_id[GH_CONFIG_STR];  /* passkeys: relying party ID; "" = off */
    char webauthn_origin[GH_CONFIG_STR]; /* passkeys: "" = http://RP-ID:PORT */

    /* second factors */
    char secret_key_file[GH_CONFIG_STR]; /* "" = DATA_DIR/secret.key, created when missing */
    uint32_t pending_logins;             /* 10000: the pending-login table's cap */

    /* OpenID Connect grants (store/grant.h) */
    uint32_t max_oidc_codes;             /* 100000 */
    uint32_t max_oidc_families;          /* 1000000; also the bound of consents */
    uint32_t max_oidc_families_per_user; /* 100: families and consents per user */
    int64_t oidc_access_ttl_ms;          /* 10m */
    int64_t oidc_refresh_ttl_ms;         /* 30d */

    /* stores */
    gh_user_store_kind_t user_store;
    char postgres_url[GH_CONFIG_STR];
    uint32_t user_cache;           /* 16384 entries; 0 = off */
    char audit_log[GH_CONFIG_STR]; /* --audit-log: JSON lines to this file, "-" stdout, "" none */
    int64_t audit_retention_ms;    /* --audit-retention: 90d; 0 = keep forever */
    uint32_t audit_queue;          /* --audit-queue: queued failure events at most */
    int64_t user_cache_ttl_ms;     /* 1s */
    int64_t user_stale_max_ms;     /* 1h: token checks answer from a record this old while the user
                                    * store does not answer; 0 = never */
    gh_session_store_kind_t session_store;
    char redis_url[GH_CONFIG_STR];
    uint32_t redis_wait_replicas; /* 0: a write is acknowledged once the master has it */

    /* observability */
    char statsd[GH_CONFIG_STR];        /* "host:port" or "" */
    char alert_webhook[GH_CONFIG_STR]; /* URL or "" */
    int64_t watch_window_ms;           /* 10m */
    int64_t watch_interval_ms;         /* 1s */
    bool heap_profile;                 /* "on" | "off": the sampling heap profiler (mem/heap.h) */
    uint64_t heap_sample_interval;     /* 512KiB: mean bytes between samples */
    uint32_t memory_warn_percent;      /* 70: memory_high warns at this % of memory_limit */
    uint32_t memory_critical_percent;  /* 85: memory_high is critical (and /readyz 503) */
    int64_t forecast_horizon_ms;       /* 2h: exhaustion forecast alerts under this ETA */
    gh_log_format_t log_format;        /* json */
    gh_log_level_t log_level;          /* info */

    /* email (account/email.h) */
    char public_url[GH_CONFIG_STR];            /* base of emailed links; "" = email off */
    char smtp_url[GH_CONFIG_STR];              /* "" = mail stays queued */
    char smtp_from[GH_CONFIG_STR];             /* "" = email off */
    char smtp_credentials_file[GH_CONFIG_STR]; /* USER:PASSWORD on its first line */
    int64_t smtp_retry_for_ms;                 /* 24h */
    int64_t smtp_timeout_ms;                   /* 30s: one delivery; the lease is this + 5s */
    char email_templates[GH_CONFIG_STR];       /* "" = built-in */
    char product_name[GH_CONFIG_STR];          /* "Gatehouse" */

    /* OpenID Connect: signing keys and clients */
    int64_t oidc_key_rotation_ms;   /* 90d; 0 = only by `gatehouse keys rotate` */
    int64_t oidc_key_refresh_ms;    /* 60s: a node re-reads the keys this often */
    bool oidc_allow_http_redirects; /* false: http:// redirect URIs only to loopback hosts */

    /* HTTP limits (not in the DESIGN table; added, documented in --help and docs/OPERATIONS.md) */
    uint32_t http_threads;                /* 0 in the file = number of cores; resolved by load */
    uint32_t max_connections;             /* 1024 */
    uint32_t max_connections_per_ip;      /* 64 */
    int64_t connection_timeout_ms;        /* 30s */
    uint64_t connection_memory;           /* 32KiB per connection (libmicrohttpd pool) */
    uint64_t max_body;                    /* 64KiB; larger -> 413 */
    uint32_t max_requests_per_connection; /* 1000 keep-alive requests, then close; 0 = no limit */
    int64_t header_timeout_ms; /* 10s: whole request head, from accept or the last response */
    int64_t body_timeout_ms;   /* 10s: whole body, from the end of the head */
} gh_config_t;

/* Fills cfg with the built-in defaults (auto values still 0). */
void gh_config_defaults(gh_config_t *cfg);

/*
 * Parses `serve` arguments (argv[0] is "serve"), the environment and the --config file, in the
 * precedence above, then resolves automatic values (memory_limit, session_memory,
 * hash_workers, http_threads) and reads admin_token_file.
 * Returns 0; GH_EINVAL with one line in err naming the key and what was expected
 * (the caller prints it and exits 2); or 1 when --help was given (usage already printed to out).
 * After an error cfg is not usable (its admin_token is wiped). The file is read with fopen;
 * nothing is allocated and nothing needs freeing.
 */
int gh_config_load(gh_config_t *cfg, int argc, char **argv, FILE *out, char *err,
                   size_t errlen) GH_WUR;

/* Prints every key with its default and meaning. */
void gh_config_usage(FILE *out);

/* Strict parsers, exposed for tests and for other commands (`gatehouse load`).
 * Durations: integer + unit in {ms, s, m, h, d}; "0" alone is allowed. Sizes: integer + optional
 * unit in {B, KiB, MiB, GiB, TiB, KB, MB, GB, TB, K, M, G}; a bare integer is bytes.
 * Return 0, GH_EINVAL for garbage, GH_ERANGE for overflow. */
int gh_config_parse_duration(const char *s, int64_t *out_ms) GH_WUR;
int gh_config_parse_size(const char *s, uint64_t *out_bytes) GH_WUR;
/* "host:port" (IPv4, "localhost" or "[v6]"), port 0..65535. host receives the address without
 * brackets ("::1" for "[::1]:8080"); GH_ERANGE when it does not fit in hostlen. */
int gh_config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port) GH_WUR;

/* One numeric key (duration, size or integer): its accepted range, both ends included, and its
 * value in a configuration (ms, bytes or a count). For tests and the config fuzz target: every
 * value gh_config_load accepts lies in its key's range, and every such key has a finite max. */
typedef struct {
    const char *name;
    uint64_t min, max, value;
    bool duration; /* min, max and value are milliseconds */
} gh_config_range_t;
/* Fills out[0 .. max-1] with the numeric keys of cfg in table order; returns how many numeric
 * keys there are (only the first max are filled when that is more). */
size_t gh_config_ranges(const gh_config_t *cfg, gh_config_range_t *out, size_t max);

/* The memory limit rule of gh_config_load, apart so it can be tested on any machine:
 * configured 0 (auto) -> the cgroup limit, else physical / 2; a configured value is lowered to
 * the cgroup limit when that is smaller. 0 for cgroup or physical means unknown. Never 0. */
uint64_t gh_config_effective_memory_limit(uint64_t configured, uint64_t cgroup, uint64_t physical);

#endif
