/*
 * audit.c — the audit trail's events and emit paths (audit.h).
 *
 * Design decision: the durable path writes on the caller's thread, in the store, before the
 * caller answers; only the events an attacker can make without limit (failed and throttled
 * logins) take the queued path, whose fixed ring of flat events is drained by one writer thread,
 * so a login flood costs a bounded amount of memory and never waits on the database.
 */
#include "account/audit.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"

static const char *const type_names[GH_AUDIT__COUNT] = {
#define GH__AUDIT_NAME(e, n) n,
    GH_AUDIT_TYPE_MAP(GH__AUDIT_NAME)
#undef GH__AUDIT_NAME
};

const char *gh_audit_type_name(gh_audit_type_t type)
{
    return (unsigned)type < GH_AUDIT__COUNT ? type_names[type] : "?";
}

static bool action_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

bool gh_audit_type_valid(const char *s)
{
    if (!s)
        return false;
    if (strncmp(s, "admin.", 6) == 0)
        return action_valid(s + 6);
    for (int i = 0; i < GH_AUDIT__COUNT; i++)
        if (i != GH_AUDIT_ADMIN && strcmp(s, type_names[i]) == 0)
            return true;
    return false;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void gh_audit_event_init(gh_audit_event_t *ev, gh_audit_type_t type, gh_audit_outcome_t outcome,
                         uint64_t user_id, const gh_account_client_t *c)
{
    memset(ev, 0, sizeof *ev);
    ev->time_ms = gh_clock_now_ms();
    copy_str(ev->type, sizeof ev->type, gh_audit_type_name(type));
    copy_str(ev->outcome, sizeof ev->outcome, outcome == GH_AUDIT_SUCCESS ? "success" : "failure");
    ev->user_id = user_id;
    if (user_id)
        snprintf(ev->actor, sizeof ev->actor, "user:%llu", (unsigned long long)user_id);
    else
        copy_str(ev->actor, sizeof ev->actor, "anonymous");
    if (c) {
        copy_str(ev->ip, sizeof ev->ip, c->client.ip);
        copy_str(ev->user_agent, sizeof ev->user_agent, c->client.user_agent);
    }
}

void gh_audit_event_init_admin(gh_audit_event_t *ev, const char *action, uint64_t admin_id,
                               uint64_t user_id, gh_audit_outcome_t outcome,
                               const gh_account_client_t *c)
{
    gh_audit_event_init(ev, GH_AUDIT_ADMIN, outcome, user_id, c);
    snprintf(ev->type, sizeof ev->type, "admin.%s",
             action && action_valid(action) ? action : "unknown");
    gh_audit_event_actor_admin(ev, admin_id);
}

void gh_audit_event_actor(gh_audit_event_t *ev, const char *actor)
{
    copy_str(ev->actor, sizeof ev->actor, actor);
}

void gh_audit_event_actor_admin(gh_audit_event_t *ev, uint64_t admin_id)
{
    snprintf(ev->actor, sizeof ev->actor, "admin:%llu", (unsigned long long)admin_id);
}

void gh_audit_event_session(gh_audit_event_t *ev, const char *session_id)
{
    copy_str(ev->session_id, sizeof ev->session_id, session_id);
}

void gh_audit_event_detail(gh_audit_event_t *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->detail, sizeof ev->detail, fmt, ap);
    va_end(ap);
}

int gh_account_audit(gh_account_t *a, gh_audit_event_t *ev)
{
    if (!a || !a->audit)
        return 0;
    return gh_audit_emit(a->audit, ev);
}

void gh_account_audit_queued(gh_account_t *a, const gh_audit_event_t *ev)
{
    if (!a || !a->audit)
        return;
    gh_audit_emit_queued(a->audit, ev);
}

/* ---- the trail (first commit: the API only; the store follows) ---- */

int gh_audit_open(const gh_audit_options_t *opt, gh_audit_t **out)
{
    (void)opt;
    *out = NULL;
    return GH_EINVAL;
}

void gh_audit_close(gh_audit_t **au)
{
    if (au)
        *au = NULL;
}

int gh_audit_emit(gh_audit_t *au, gh_audit_event_t *ev)
{
    (void)au;
    (void)ev;
    return 0;
}

void gh_audit_emit_queued(gh_audit_t *au, const gh_audit_event_t *ev)
{
    (void)au;
    (void)ev;
}

int gh_audit_prune(gh_audit_t *au, int64_t now_ms, size_t max, size_t *removed)
{
    (void)au;
    (void)now_ms;
    (void)max;
    *removed = 0;
    return 0;
}

int gh_audit_read(gh_audit_t *au, const gh_audit_query_t *q, gh_audit_event_t *out, size_t cap,
                  size_t *n, int64_t *next_before)
{
    (void)au;
    (void)q;
    (void)out;
    (void)cap;
    *n = 0;
    *next_before = 0;
    return 0;
}

void gh_audit_stats(gh_audit_t *au, gh_audit_stats_t *out)
{
    (void)au;
    memset(out, 0, sizeof *out);
}

int gh_audit_event_json(const gh_audit_event_t *ev, char *buf, size_t cap)
{
    (void)ev;
    if (cap)
        buf[0] = '\0';
    return 0;
}
