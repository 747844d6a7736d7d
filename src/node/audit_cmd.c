/*
 * audit_cmd.c — `gatehouse audit`: the audit trail on the command line, as JSON lines (the shape
 * of GET /v1/admin/audit's events and of --audit-log), newest first, with the API's filters.
 * Like `gatehouse user`, it finds the user store from the flags, environment and config file of
 * `serve`.
 *
 * The one design decision: it reads the store directly, page by page (keyset, 200 at a time),
 * so it works while no node runs and never holds more than one page in memory.
 */
#include "node/node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account/audit.h"
#include "common/clock.h"
#include "common/log.h"

#define PAGE 200

static void usage(FILE *out)
{
    fprintf(out, "usage: gatehouse audit [--user ID] [--type TYPE] [--since TIME] [--until TIME]\n"
                 "                       [--cursor ID] [--limit N] [flags]\n"
                 "Prints audit events as JSON lines, newest first (--limit, default 100; 0 = "
                 "all).\n"
                 "TIME: 2026-12-06T00:00:00Z or milliseconds since the epoch. TYPE: an event type\n"
                 "(login.failed, ...) or \"admin\" for every admin.<action>.\n"
                 "Flags, environment and --config are those of `gatehouse serve`; --data-dir,\n"
                 "--user-store and --postgres-url matter here.\n");
}

static bool digits(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || strspn(s, "0123456789") != n)
        return false;
    *out = strtoll(s, NULL, 10);
    return true;
}

int gh_audit_cmd_main(int argc, char **argv)
{
    gh_audit_query_t q;
    memset(&q, 0, sizeof q);
    int64_t limit = 100, v;
    char *fargv[256];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, ours = true;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(f, "--user") == 0) {
            ok = val && digits(val, &v) && v > 0;
            if (ok)
                q.user_id = (uint64_t)v;
        } else if (strcmp(f, "--type") == 0) {
            ok = val && (strcmp(val, "admin") == 0 || gh_audit_type_valid(val));
            if (ok)
                snprintf(q.type, sizeof q.type, "%s", val);
        } else if (strcmp(f, "--since") == 0) {
            ok = val && gh_clock_parse_time(val, &q.since_ms);
        } else if (strcmp(f, "--until") == 0) {
            ok = val && gh_clock_parse_time(val, &q.until_ms);
        } else if (strcmp(f, "--cursor") == 0) {
            ok = val && digits(val, &q.before_id) && q.before_id > 0;
        } else if (strcmp(f, "--limit") == 0) {
            ok = val && digits(val, &limit);
        } else {
            ours = false;
        }
        if (!ok) {
            fprintf(stderr, "gatehouse: audit: bad value for %s\n", f);
            return 2;
        }
        if (ours) {
            i++;
            continue;
        }
        if (fargc < 255)
            fargv[fargc++] = argv[i];
    }
    fargv[fargc] = NULL;
    gh_config_t cfg;
    char err[512];
    int rc = gh_config_load(&cfg, fargc, fargv, stdout, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s\n", err);
        return 2;
    }
    gh_log_setup(GH_LOG_TEXT, GH_LOG_WARN);
    gh_user_store_t *store = NULL;
    if (cfg.user_store == GH_USER_STORE_POSTGRES) {
        gh_user_postgres_options_t po = {.url = cfg.postgres_url, .pool_size = 1};
        rc = gh_user_postgres_open(&po, &store);
    } else {
        rc = gh_user_sqlite_open(cfg.data_dir, &store);
    }
    if (rc != 0) {
        fprintf(stderr, "gatehouse: audit: cannot open the user store: %s\n", gh_strerror(rc));
        return 1;
    }
    static gh_audit_event_t page[PAGE];
    int64_t printed = 0;
    int code = 0;
    for (;;) {
        size_t want = PAGE, n = 0;
        if (limit > 0 && limit - printed < PAGE)
            want = (size_t)(limit - printed);
        if (want == 0)
            break;
        if ((rc = gh_user_audit_read(store, &q, page, want, &n)) != 0) {
            fprintf(stderr, "gatehouse: audit: %s\n", gh_strerror(rc));
            code = 1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            char line[2048];
            if (gh_audit_event_json(&page[i], line, sizeof line) > 0)
                printf("%s\n", line);
        }
        printed += (int64_t)n;
        if (n < want)
            break;
        q.before_id = page[n - 1].id;
    }
    gh_user_store_close(&store);
    return code;
}
