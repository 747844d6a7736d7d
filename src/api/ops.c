/*
 * ops.c — the operator's routes: liveness, readiness, /metrics, and /debug/memory, which says
 * in one JSON document where every accounted byte is, how much of RSS nothing explains, how close
 * the session store is to its budget, what the watchdog forecasts and which alerts fire — the page
 * the postmortem's first hour needed.
 *
 * The design decision: what an operator sees is read in one place, gh_api_memory_read, and
 * rendered twice — as JSON here and as the /ops page (pages.c) — so the page and the document
 * can never disagree, and the page's chart is the watchdog's own ring, not a second history.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/heap.h"
#include "mem/mem.h"
#include "watch/metrics.h"

void gh_api_healthz(gh_req_t *r)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)gh_reply(r, 200, "application/json", body, sizeof body - 1);
}

void gh_api_readyz(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (gh_user_ping(app->users) != 0) {
        gh_api_reply_fail(r, GH_ESTORE, "the user store does not answer or cannot write", 0);
        return;
    }
    if (gh_session_ping(app->sessions) != 0) {
        gh_api_reply_fail(r, GH_ESTORE, "the session store does not answer or cannot write", 0);
        return;
    }
    /* A load balancer drains this node before memory runs out (memory_high at critical). */
    if (app->watchdog && gh_watchdog_memory_critical(app->watchdog)) {
        gh_api_reply_err(r, GH_ECRITICAL);
        return;
    }
    static const char body[] = "{\"status\":\"ready\"}";
    (void)gh_reply(r, 200, "application/json", body, sizeof body - 1);
}

int gh_api_memory_read(gh_req_t *r, size_t history_max, gh_api_memory_t *m)
{
    gh_app_t *app = r->app;
    memset(m, 0, sizeof *m);
    m->rss = gh_mem_rss_bytes();
    m->allocator = gh_mem_allocator_in_use();
    m->accounted = gh_mem_total_bytes();
    m->limit = app->cfg.memory_limit;
    m->cgroup_limit = gh_mem_cgroup_limit();
    m->session_budget = app->cfg.session_memory;
    m->session_policy = app->cfg.session_policy == GH_POLICY_REFUSE ? "refuse" : "evict-idle";
    for (int c = 0; c < GH_MEM__COUNT; c++) {
        m->component_bytes[c] = gh_mem_bytes((gh_mem_component_t)c);
        m->component_objects[c] = gh_mem_objects((gh_mem_component_t)c);
    }
    gh_session_stats(app->sessions, &m->sessions);
    gh_session_clients(app->sessions, &m->clients);
    m->password_queue_depth = gh_password_queue_depth(app->passwords);
    gh_api_metrics_totals(app, &m->totals);
    if (!app->watchdog)
        return 0;
    m->watching = true;
    gh_watchdog_status(app->watchdog, &m->watch);
    if (history_max == 0)
        return 0;
    m->history = gh_pool_alloc(&r->pool, history_max * sizeof *m->history);
    if (!m->history)
        return GH_ENOMEM;
    m->nhistory = gh_watchdog_history(app->watchdog, m->history, history_max);
    return 0;
}

/* The ring as columns: seconds before the newest sample, RSS, accounted and each component. */
static json_t *history_json(const gh_api_memory_t *m)
{
    json_t *h = json_object(), *ago = json_array(), *rss = json_array(), *acc = json_array(),
           *sessions = json_array(), *comps = json_object();
    json_t *comp[GH_MEM__COUNT] = {0};
    bool bad = !h || !ago || !rss || !acc || !sessions || !comps;
    for (int c = 0; !bad && c < GH_MEM__COUNT; c++)
        bad = !(comp[c] = json_array()) ||
              json_object_set(comps, gh_mem_component_name((gh_mem_component_t)c), comp[c]) != 0;
    const gh_watch_sample_t *newest = m->nhistory ? &m->history[m->nhistory - 1] : NULL;
    for (size_t i = 0; !bad && i < m->nhistory; i++) {
        const gh_watch_sample_t *s = &m->history[i];
        uint64_t sum = 0;
        for (int c = 0; c < GH_MEM__COUNT; c++) {
            sum += s->component_bytes[c];
            bad |= json_array_append_new(comp[c], json_integer((json_int_t)s->component_bytes[c]));
        }
        bad |= json_array_append_new(ago, json_real((double)(newest->t_ms - s->t_ms) / 1000.0));
        bad |= json_array_append_new(rss, json_integer((json_int_t)s->rss_bytes));
        bad |= json_array_append_new(acc, json_integer((json_int_t)sum));
        bad |= json_array_append_new(sessions, json_integer((json_int_t)s->sessions_active));
    }
    for (int c = 0; c < GH_MEM__COUNT; c++)
        json_decref(comp[c]); /* comps holds its own reference */
    if (!bad) {
        bad |= json_object_set_new(h, "points", json_integer((json_int_t)m->nhistory));
        bad |= json_object_set_new(h, "seconds_ago", ago);
        bad |= json_object_set_new(h, "rss_bytes", rss);
        bad |= json_object_set_new(h, "accounted_bytes", acc);
        bad |= json_object_set_new(h, "sessions_active", sessions);
        bad |= json_object_set_new(h, "components", comps);
        ago = rss = acc = sessions = comps = NULL;
    }
    json_decref(ago);
    json_decref(rss);
    json_decref(acc);
    json_decref(sessions);
    json_decref(comps);
    if (bad) {
        json_decref(h);
        return NULL;
    }
    return h;
}

json_t *gh_api_memory_json(const gh_api_memory_t *m)
{
    json_t *components = json_object();
    for (int c = 0; components && c < GH_MEM__COUNT; c++) {
        json_t *one = json_pack("{s:I, s:I}", "bytes", (json_int_t)m->component_bytes[c], "objects",
                                (json_int_t)m->component_objects[c]);
        if (json_object_set_new(components, gh_mem_component_name((gh_mem_component_t)c), one)) {
            json_decref(components);
            components = NULL;
        }
    }
    json_t *j = gh_api_json_set(
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I}", "rss_bytes",
                  (json_int_t)m->rss, "allocator_in_use_bytes", (json_int_t)m->allocator,
                  "accounted_bytes", (json_int_t)m->accounted, "unexplained_bytes",
                  (json_int_t)m->rss - (json_int_t)m->accounted, "limit_bytes",
                  (json_int_t)m->limit, "cgroup_limit_bytes", (json_int_t)m->cgroup_limit,
                  "session_budget_bytes", (json_int_t)m->session_budget, "session_policy",
                  m->session_policy, "sessions_active", (json_int_t)m->sessions.active,
                  "sessions_bytes", (json_int_t)m->sessions.bytes, "password_queue_depth",
                  (json_int_t)m->password_queue_depth),
        "components", components);
    j = gh_api_json_set(
        j, "session_clients",
        json_pack("{s:I, s:I, s:I, s:I, s:I}", "entries", (json_int_t)m->clients.entries, "bytes",
                  (json_int_t)m->clients.bytes, "max_entries", (json_int_t)m->clients.max_entries,
                  "max_bytes", (json_int_t)m->clients.max_bytes, "full_total",
                  (json_int_t)m->clients.full_total));
    j = gh_api_json_set(j, "totals",
                        json_pack("{s:I, s:I, s:I, s:I}", "requests",
                                  (json_int_t)m->totals.requests, "server_errors",
                                  (json_int_t)m->totals.server_errors, "logins_succeeded",
                                  (json_int_t)m->totals.logins_ok, "logins_failed",
                                  (json_int_t)m->totals.logins_failed));
    if (j && m->watching) { /* the forecast, the growing component, the alerts, the ring */
        json_t *w = gh_api_json_set(gh_watch_status_json(&m->watch), "history", history_json(m));
        j = gh_api_json_set(j, "watchdog", w);
    }
    return j;
}

/* GET /debug/memory (GH_ROUTE_ADMIN: the token was checked before this runs). */
void gh_api_debug_memory(gh_req_t *r)
{
    gh_api_memory_t *m = gh_pool_alloc(&r->pool, sizeof *m);
    int rc = m ? gh_api_memory_read(r, GH_API_HISTORY_MAX, m) : GH_ENOMEM;
    if (rc != 0) {
        gh_api_reply_err(r, rc);
        return;
    }
    gh_api_reply_json(r, 200, gh_api_memory_json(m));
}

/* GET /metrics: the Prometheus text of every family (metrics.c), rendered per scrape. */
void gh_api_metrics(gh_req_t *r)
{
    char *text = NULL;
    size_t len = 0;
    int rc = gh_api_metrics_render(r->app, &text, &len);
    if (rc != 0) {
        gh_api_reply_err(r, rc == GH_ETOOBIG ? GH_EINTERNAL : rc);
        return;
    }
    (void)gh_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    gh_metrics_text_free(&text);
}

/* ---- GET /debug/heap: the sampling heap profile (mem/heap.h) in collapsed-stack text ---- */

#define HEAP_BODY_MAX ((size_t)256 * 1024) /* the largest stacks first, until this is full */

typedef struct {
    uint32_t id;
    double bytes;
} heap_row_t;

static int heap_row_cmp(const void *a, const void *b)
{
    const heap_row_t *x = a, *y = b;
    return x->bytes < y->bytes ? 1 : x->bytes > y->bytes ? -1 : 0;
}

/* Each line: frames root first joined by ';', a space, bytes (the estimate of live bytes, or
 * with ?growth=1 the bytes a stack grew by over the watchdog's window, fastest first). A profile
 * that is off answers 200 with a comment-free empty body and says why in X-Heap-Profile. */
void gh_api_debug_heap(gh_req_t *r)
{
    gh_app_t *app = r->app;
    const char *g = gh_req_query(r, "growth");
    bool growth = g && (strcmp(g, "1") == 0 || strcmp(g, "true") == 0);
    heap_row_t *rows = gh_mem_calloc(GH_MEM_HTTP, GH_HEAP_MAX_STACKS, sizeof *rows);
    double *live = gh_mem_calloc(GH_MEM_HTTP, GH_HEAP_MAX_STACKS, sizeof *live);
    char *body = gh_mem_alloc(GH_MEM_HTTP, HEAP_BODY_MAX);
    char *line = gh_mem_alloc(GH_MEM_HTTP, 4096);
    size_t n = 0, len = 0;
    if (!rows || !live || !body || !line) {
        gh_api_reply_err(r, GH_ENOMEM);
        goto done;
    }
    if (growth) {
        gh_heap_growing_t gr[GH_HEAP_GROWTH_RANKED];
        size_t k = app->watchdog
                       ? gh_watchdog_heap_growth(app->watchdog, gr, GH_HEAP_GROWTH_RANKED, NULL)
                       : 0;
        for (size_t i = 0; i < k; i++)
            rows[n++] = (heap_row_t){.id = gr[i].stack, .bytes = gr[i].growth};
    } else {
        size_t k = gh_heap_live_by_stack(live, GH_HEAP_MAX_STACKS);
        for (size_t i = 0; i < k; i++)
            if (live[i] >= 1)
                rows[n++] = (heap_row_t){.id = (uint32_t)i, .bytes = live[i]};
    }
    qsort(rows, n, sizeof *rows, heap_row_cmp);
    for (size_t i = 0; i < n; i++) {
        gh_heap_stack_collapsed(rows[i].id, line, 4096 - 32);
        int w = snprintf(body + len, HEAP_BODY_MAX - len, "%s %.0f\n", line, rows[i].bytes);
        if (w < 0 || (size_t)w >= HEAP_BODY_MAX - len)
            break;
        len += (size_t)w;
    }
    GH_IGNORE(gh_reply_header(r, "X-Heap-Profile", gh_heap_state()));
    (void)gh_reply(r, 200, "text/plain; charset=utf-8", body, len);
done:
    gh_mem_free(GH_MEM_HTTP, rows);
    gh_mem_free(GH_MEM_HTTP, live);
    gh_mem_free(GH_MEM_HTTP, body);
    gh_mem_free(GH_MEM_HTTP, line);
}
