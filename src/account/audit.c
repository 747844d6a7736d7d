/*
 * audit.c — the audit trail's events and emit paths (audit.h).
 *
 * Design decision: the durable path writes on the caller's thread, in the store, before the
 * caller answers; only the events an attacker can make without limit (failed and throttled
 * logins) take the queued path, whose fixed ring of flat events is drained by one writer thread,
 * so a login flood costs a bounded amount of memory and never waits on the database.
 */
#include "account/audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

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

void gh_account_audit_event(gh_account_t *a, gh_audit_event_t *ev, gh_audit_type_t type,
                            gh_audit_outcome_t outcome, uint64_t user_id)
{
    gh_audit_event_init(ev, type, outcome, user_id, &a->caller);
    if (a->actor[0])
        gh_audit_event_actor(ev, a->actor);
}

bool gh_account_by_admin(const gh_account_t *a)
{
    return strcmp(a->actor, "token") == 0 || strncmp(a->actor, "admin:", 6) == 0;
}

int gh_account_audit_admin(gh_account_t *a, const char *action, uint64_t user_id,
                           const char *session_id, const char *detail)
{
    if (!a->audit || !gh_account_by_admin(a))
        return 0;
    gh_audit_event_t ev;
    gh_audit_event_init_admin(&ev, action, 0, user_id, GH_AUDIT_SUCCESS, &a->caller);
    gh_audit_event_actor(&ev, a->actor);
    gh_audit_event_session(&ev, session_id);
    if (detail)
        gh_audit_event_detail(&ev, "%s", detail);
    return gh_account_audit(a, &ev);
}

int gh_account_audit(gh_account_t *a, gh_audit_event_t *ev)
{
    if (!a || !a->audit)
        return 0;
    return gh_audit_emit(a->audit, ev);
}

int gh_account_audit_change(gh_account_t *a, gh_audit_event_t *ev,
                            int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    if (!a->audit)
        return change(a->users, arg);
    return gh_audit_emit_with(a->audit, ev, change, arg);
}

void gh_account_audit_queued(gh_account_t *a, const gh_audit_event_t *ev)
{
    if (!a || !a->audit)
        return;
    gh_audit_emit_queued(a->audit, ev);
}

/* ---- the trail ---- */

#define DEFAULT_QUEUE 1024
#define MAX_QUEUE (1u << 20)

struct gh_audit {
    gh_user_store_t *users;
    char node[GH_AUDIT_NODE_MAX + 1];
    int64_t retention_ms;
    void (*on_admin)(void *ctx, const gh_audit_event_t *ev);
    void *on_admin_ctx;
    FILE *log; /* --audit-log, or NULL */
    bool log_owned;
    pthread_mutex_t log_lock;
    /* the queue: a ring of cap events */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    gh_audit_event_t *ring;
    size_t cap, head, len;
    bool stop;
    pthread_t writer;
    bool writer_started;
    _Atomic uint64_t stored, dropped, failed, pruned;
};

static void json_str(char **p, char *end, const char *s)
{
    char *o = *p;
    if (o < end)
        *o++ = '"';
    for (; *s && o < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            if (end - o < 2)
                break;
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            if (end - o < 6)
                break;
            o += snprintf(o, 7, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    if (o < end)
        *o++ = '"';
    *p = o;
}

int gh_audit_event_json(const gh_audit_event_t *ev, char *buf, size_t cap)
{
    if (cap < 64)
        return GH_ETOOBIG;
    char *p = buf, *end = buf + cap - 1;
    char user[24], time[GH_RFC3339_LEN];
    snprintf(user, sizeof user, "%llu", (unsigned long long)ev->user_id);
    gh_clock_rfc3339(ev->time_ms, time);
    p += snprintf(p, (size_t)(end - p),
                  "{\"id\":\"%lld\",\"time\":\"%s\",\"type\":", (long long)ev->id, time);
    struct {
        const char *key, *val;
        bool null_when_empty;
    } f[] = {{NULL, ev->type, false},      {"actor", ev->actor, false},
             {"user", user, false},        {"session_id", ev->session_id, true},
             {"ip", ev->ip, true},         {"user_agent", ev->user_agent, true},
             {"node", ev->node, false},    {"outcome", ev->outcome, false},
             {"detail", ev->detail, false}};
    for (size_t i = 0; i < sizeof f / sizeof f[0] && p < end; i++) {
        if (f[i].key)
            p += snprintf(p, (size_t)(end - p), ",\"%s\":", f[i].key);
        if (p >= end)
            break;
        if (f[i].val == user) {
            if (ev->user_id)
                p += snprintf(p, (size_t)(end - p), "%s", user);
            else
                p += snprintf(p, (size_t)(end - p), "null");
        } else if (f[i].null_when_empty && !f[i].val[0]) {
            p += snprintf(p, (size_t)(end - p), "null");
        } else {
            json_str(&p, end, f[i].val);
        }
    }
    if (p >= end - 1)
        return GH_ETOOBIG;
    *p++ = '}';
    *p = '\0';
    return (int)(p - buf);
}

static void ship(gh_audit_t *au, const gh_audit_event_t *ev)
{
    if (au->log) {
        char line[2048];
        int n = gh_audit_event_json(ev, line, sizeof line - 1);
        if (n > 0) {
            line[n++] = '\n';
            pthread_mutex_lock(&au->log_lock);
            fwrite(line, 1, (size_t)n, au->log);
            fflush(au->log);
            pthread_mutex_unlock(&au->log_lock);
        }
    }
    if (au->on_admin && strncmp(ev->type, "admin.", 6) == 0)
        au->on_admin(au->on_admin_ctx, ev);
}

/* Remembers what the change itself answered, so a refused change (not found, taken) is told
 * apart from an event the store could not take. */
typedef struct {
    int (*change)(gh_user_store_t *s, void *arg);
    void *arg;
    int rc;
} tramp_t;

static int run_change(gh_user_store_t *s, void *p)
{
    tramp_t *t = p;
    t->rc = t->change(s, t->arg);
    return t->rc;
}

static int emit(gh_audit_t *au, gh_audit_event_t *ev, int (*change)(gh_user_store_t *s, void *arg),
                void *arg)
{
    snprintf(ev->node, sizeof ev->node, "%s", au->node);
    if (ev->time_ms == 0)
        ev->time_ms = gh_clock_now_ms();
    tramp_t t = {.change = change, .arg = arg, .rc = 1};
    int rc = change ? gh_user_audited(au->users, ev, run_change, &t)
                    : gh_user_audit_append(au->users, ev);
    if (change && rc != 0 && t.rc != 0)
        return rc; /* the change itself failed (not found, taken): no event to count */
    if (rc != 0) {
        atomic_fetch_add(&au->failed, 1);
        GH_LOG(GH_LOG_ERROR, "audit event not stored", GH_LS("type", ev->type),
               GH_LI("user_id", (int64_t)ev->user_id), GH_LS("error", gh_strerror(rc)));
        return rc;
    }
    atomic_fetch_add(&au->stored, 1);
    ship(au, ev);
    return 0;
}

int gh_audit_emit(gh_audit_t *au, gh_audit_event_t *ev)
{
    return au ? emit(au, ev, NULL, NULL) : 0;
}

int gh_audit_emit_with(gh_audit_t *au, gh_audit_event_t *ev,
                       int (*change)(gh_user_store_t *s, void *arg), void *arg)
{
    return emit(au, ev, change, arg);
}

void gh_audit_emit_queued(gh_audit_t *au, const gh_audit_event_t *ev)
{
    if (!au)
        return;
    pthread_mutex_lock(&au->lock);
    if (au->len == au->cap || au->stop) {
        pthread_mutex_unlock(&au->lock);
        if (atomic_fetch_add(&au->dropped, 1) == 0)
            GH_LOG(GH_LOG_WARN, "audit queue full: events dropped",
                   GH_LS("effect", "counted in gatehouse_audit_dropped_total"));
        return;
    }
    au->ring[(au->head + au->len) % au->cap] = *ev;
    au->len++;
    pthread_cond_signal(&au->wake);
    pthread_mutex_unlock(&au->lock);
}

static void *writer_main(void *arg)
{
    gh_audit_t *au = arg;
    gh_audit_event_t ev;
    pthread_mutex_lock(&au->lock);
    for (;;) {
        while (au->len == 0 && !au->stop)
            pthread_cond_wait(&au->wake, &au->lock);
        if (au->len == 0)
            break; /* stopping, and drained */
        ev = au->ring[au->head];
        au->head = (au->head + 1) % au->cap;
        au->len--;
        pthread_mutex_unlock(&au->lock);
        GH_IGNORE(gh_audit_emit(au, &ev)); /* a failure is counted and logged */
        pthread_mutex_lock(&au->lock);
    }
    pthread_mutex_unlock(&au->lock);
    return NULL;
}

int gh_audit_open(const gh_audit_options_t *opt, gh_audit_t **out)
{
    *out = NULL;
    if (!opt || !opt->users || opt->queue_cap > MAX_QUEUE || opt->retention_ms < 0)
        return GH_EINVAL;
    gh_audit_t *au = gh_mem_calloc(GH_MEM_AUDIT, 1, sizeof *au);
    if (!au)
        return GH_ENOMEM;
    int ret = 0;
    au->users = opt->users;
    snprintf(au->node, sizeof au->node, "%s", opt->node ? opt->node : "");
    au->retention_ms = opt->retention_ms;
    au->on_admin = opt->on_admin;
    au->on_admin_ctx = opt->on_admin_ctx;
    au->cap = opt->queue_cap ? opt->queue_cap : DEFAULT_QUEUE;
    pthread_mutex_init(&au->lock, NULL);
    pthread_mutex_init(&au->log_lock, NULL);
    pthread_cond_init(&au->wake, NULL);
    au->ring = gh_mem_calloc(GH_MEM_AUDIT, au->cap, sizeof *au->ring);
    if (!au->ring) {
        ret = GH_ENOMEM;
        goto fail;
    }
    if (opt->log_path && opt->log_path[0]) {
        if (strcmp(opt->log_path, "-") == 0) {
            au->log = stdout;
        } else {
            au->log = fopen(opt->log_path, "ae");
            if (!au->log) {
                GH_LOG(GH_LOG_ERROR, "cannot open the audit log", GH_LS("path", opt->log_path),
                       GH_LS("error", strerror(errno)));
                ret = GH_EIO;
                goto fail;
            }
            au->log_owned = true;
        }
    }
    if (pthread_create(&au->writer, NULL, writer_main, au) != 0) {
        ret = GH_ENOMEM;
        goto fail;
    }
    au->writer_started = true;
    *out = au;
    return 0;
fail:
    gh_audit_close(&au);
    return ret;
}

void gh_audit_close(gh_audit_t **aup)
{
    gh_audit_t *au = aup ? *aup : NULL;
    if (!au)
        return;
    if (au->writer_started) {
        pthread_mutex_lock(&au->lock);
        au->stop = true;
        pthread_cond_signal(&au->wake);
        pthread_mutex_unlock(&au->lock);
        pthread_join(au->writer, NULL); /* it stores what is queued first */
    }
    if (au->log_owned)
        fclose(au->log);
    else if (au->log)
        fflush(au->log);
    pthread_cond_destroy(&au->wake);
    pthread_mutex_destroy(&au->lock);
    pthread_mutex_destroy(&au->log_lock);
    gh_mem_free(GH_MEM_AUDIT, au->ring);
    gh_mem_free(GH_MEM_AUDIT, au);
    *aup = NULL;
}

int gh_audit_prune(gh_audit_t *au, int64_t now_ms, size_t max, size_t *removed)
{
    *removed = 0;
    if (!au || au->retention_ms == 0 || max == 0)
        return 0;
    int rc = gh_user_audit_prune(au->users, now_ms - au->retention_ms, max, removed);
    if (rc == 0)
        atomic_fetch_add(&au->pruned, *removed);
    return rc;
}

int gh_audit_read(gh_audit_t *au, const gh_audit_query_t *q, gh_audit_event_t *out, size_t cap,
                  size_t *n, int64_t *next_before)
{
    *n = 0;
    *next_before = 0;
    if (!au)
        return 0;
    /* A full page may have a next one; an empty next page then ends the walk. */
    int rc = gh_user_audit_read(au->users, q, out, cap, n);
    if (rc != 0)
        return rc;
    if (*n == cap && cap > 0)
        *next_before = out[cap - 1].id;
    return 0;
}

void gh_audit_stats(gh_audit_t *au, gh_audit_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!au)
        return;
    out->stored_total = atomic_load(&au->stored);
    out->dropped_total = atomic_load(&au->dropped);
    out->failed_total = atomic_load(&au->failed);
    out->pruned_total = atomic_load(&au->pruned);
    pthread_mutex_lock(&au->lock);
    out->queue_len = au->len;
    out->queue_cap = au->cap;
    pthread_mutex_unlock(&au->lock);
}
