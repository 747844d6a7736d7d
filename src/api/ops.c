/*
 * ops.c — the operator's routes: liveness, readiness, and /debug/memory, which says in one JSON
 * document where every accounted byte is, how much of RSS nothing explains, and how close the
 * session store is to its budget — the page the postmortem's first hour needed.
 */
#include "api/api.h"

#include "mem/mem.h"

void gh_api_healthz(gh_req_t *r)
{
    static const char body[] = "{\"status\":\"ok\"}";
    (void)gh_reply(r, 200, "application/json", body, sizeof body - 1);
}

void gh_api_readyz(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (gh_user_ping(app->users) != 0) {
        gh_reply_error(r, 503, "store_unavailable", "the user store does not answer");
        return;
    }
    if (gh_session_ping(app->sessions) != 0) {
        gh_reply_error(r, 503, "store_unavailable", "the session store does not answer");
        return;
    }
    /* A load balancer drains this node before memory runs out (memory_high at critical). */
    if (app->watchdog && gh_watchdog_memory_critical(app->watchdog)) {
        gh_reply_error(r, 503, "memory_critical", "memory use is critical; see /debug/memory");
        return;
    }
    static const char body[] = "{\"status\":\"ready\"}";
    (void)gh_reply(r, 200, "application/json", body, sizeof body - 1);
}

void gh_api_debug_memory(gh_req_t *r)
{
    gh_app_t *app = r->app;
    if (gh_api_require_admin(r) != 0)
        return;
    json_t *components = json_object();
    for (int c = 0; components && c < GH_MEM__COUNT; c++) {
        json_t *one = json_pack("{s:I, s:I}", "bytes", (json_int_t)gh_mem_bytes(c), "objects",
                                (json_int_t)gh_mem_objects(c));
        if (json_object_set_new(components, gh_mem_component_name(c), one)) {
            json_decref(components);
            components = NULL;
        }
    }
    gh_session_stats_t st;
    gh_session_stats(app->sessions, &st);
    size_t rss = gh_mem_rss_bytes(), accounted = gh_mem_total_bytes();
    json_t *j = gh_api_json_set(
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I}", "rss_bytes",
                  (json_int_t)rss, "allocator_in_use_bytes", (json_int_t)gh_mem_allocator_in_use(),
                  "accounted_bytes", (json_int_t)accounted, "unexplained_bytes",
                  (json_int_t)((json_int_t)rss - (json_int_t)accounted), "limit_bytes",
                  (json_int_t)app->cfg.memory_limit, "cgroup_limit_bytes",
                  (json_int_t)gh_mem_cgroup_limit(), "session_budget_bytes",
                  (json_int_t)app->cfg.session_memory, "session_policy",
                  app->cfg.session_policy == GH_POLICY_REFUSE ? "refuse" : "evict-idle",
                  "sessions_active", (json_int_t)st.active, "sessions_bytes", (json_int_t)st.bytes,
                  "password_queue_depth", (json_int_t)gh_password_queue_depth(app->passwords)),
        "components", components);
    if (j && app->watchdog) { /* the forecast, the growing component, the alerts */
        gh_watch_status_t ws;
        gh_watchdog_status(app->watchdog, &ws);
        j = gh_api_json_set(j, "watchdog", gh_watch_status_json(&ws));
    }
    gh_api_reply_json(r, 200, j);
}
