/* routes.c — the route table of the v1 API (DESIGN.md "HTTP API"); templates are metric labels. */
#include "api/api.h"
#include "api/pages.h"

const gh_route_t gh_api_routes[] = {
    {GH_HTTP_POST, "/v1/users", gh_api_register, GH_ROUTE_PASSWORD},
    {GH_HTTP_POST, "/v1/sessions", gh_api_login, GH_ROUTE_PASSWORD},
    {GH_HTTP_GET, "/v1/sessions", gh_api_list_sessions, 0},
    {GH_HTTP_DELETE, "/v1/sessions", gh_api_revoke_all, 0},
    {GH_HTTP_DELETE, "/v1/sessions/{id}", gh_api_revoke_session, 0},
    {GH_HTTP_GET, "/v1/session", gh_api_whoami, GH_ROUTE_QUIET},
    {GH_HTTP_DELETE, "/v1/session", gh_api_logout, 0},
    {GH_HTTP_PUT, "/v1/password", gh_api_change_password, GH_ROUTE_PASSWORD},
    {GH_HTTP_GET, "/v1/auth", gh_api_forward_auth, GH_ROUTE_QUIET},
    {GH_HTTP_GET, "/healthz", gh_api_healthz, GH_ROUTE_QUIET},
    {GH_HTTP_GET, "/readyz", gh_api_readyz, GH_ROUTE_QUIET},
    {GH_HTTP_GET, "/metrics", gh_api_metrics, GH_ROUTE_QUIET},
    {GH_HTTP_GET, "/debug/memory", gh_api_debug_memory, GH_ROUTE_ADMIN},
    {GH_HTTP_GET, "/debug/heap", gh_api_debug_heap, GH_ROUTE_ADMIN},
    {GH_HTTP_POST, "/v1/admin/users", gh_api_admin_create_user, GH_ROUTE_ADMIN},
    {GH_HTTP_GET, "/v1/admin/users", gh_api_admin_list_users, GH_ROUTE_ADMIN},
    {GH_HTTP_DELETE, "/v1/admin/users/{id}", gh_api_admin_delete_user, GH_ROUTE_ADMIN},
    {GH_HTTP_GET, "/v1/admin/users/{id}/sessions", gh_api_admin_user_sessions, GH_ROUTE_ADMIN},
    {GH_HTTP_DELETE, "/v1/admin/users/{id}/sessions", gh_api_admin_revoke_user_sessions,
     GH_ROUTE_ADMIN},
    {GH_HTTP_DELETE, "/v1/admin/users/{id}/sessions/{sid}", gh_api_admin_revoke_user_session,
     GH_ROUTE_ADMIN},
    /* browser pages and their form routes (pages.c) */
    {GH_HTTP_GET, "/login", gh_pages_login, 0},
    {GH_HTTP_GET, "/account", gh_pages_account, 0},
    {GH_HTTP_POST, "/account/sessions/{id}/delete", gh_pages_account_revoke, 0},
    {GH_HTTP_POST, "/account/logout", gh_pages_account_logout, 0},
    {GH_HTTP_POST, "/account/logout-all", gh_pages_account_logout_all, 0},
    {GH_HTTP_POST, "/account/password", gh_pages_account_password, GH_ROUTE_PASSWORD},
    {GH_HTTP_GET, "/ops", gh_pages_ops, 0},
};

const size_t gh_api_nroutes = sizeof gh_api_routes / sizeof gh_api_routes[0];
