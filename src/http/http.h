/*
 * http.h — the HTTP layer: libmicrohttpd (epoll, internal thread pool, suspend/resume) under a
 * small router on route templates, with a per-request scratch pool (mem.h gh_pool_t) that is
 * released the moment the request completes.
 *
 * A request passes through: body accumulated up to max_body (413 past it, before the handler
 * runs) → route matched (404 / 405 with Allow) → handler. A handler fills the response through
 * gh_reply_*; or it suspends (gh_req_suspend) to wait for the password pool, and is called again
 * on the same gh_req_t once gh_req_resume() is called from any thread, with r->phase as it left
 * it. Response bodies live in the request pool and are handed to libmicrohttpd without a copy.
 *
 * The layer knows nothing of sessions or users: handlers, the route table and the application
 * context (`app`) come from src/api.
 */
#ifndef GH_HTTP_HTTP_H
#define GH_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "mem/mem.h"
#include "ratelimit/ratelimit.h"

typedef enum {
    GH_HTTP_GET = 1 << 0,
    GH_HTTP_HEAD = 1 << 1,
    GH_HTTP_POST = 1 << 2,
    GH_HTTP_PUT = 1 << 3,
    GH_HTTP_DELETE = 1 << 4,
    GH_HTTP_PATCH = 1 << 5,
    GH_HTTP_OPTIONS = 1 << 6,
    GH_HTTP_OTHER = 1 << 7,
} gh_http_method_t;

#define GH_ROUTE_MAX_PARAMS 3
#define GH_ROUTE_PARAM_MAX 64
#define GH_REPLY_MAX_HEADERS 8
/* The largest max_body a server accepts: a request's pool holds up to twice the body plus
 * GH_HTTP_POOL_EXTRA, and that sum must not wrap (config.c caps --max-body far lower). */
#define GH_HTTP_MAX_BODY ((size_t)1 << 30)
#define GH_HTTP_POOL_EXTRA ((size_t)512 * 1024)

typedef struct gh_req gh_req_t;
typedef void (*gh_handler_fn)(gh_req_t *r);

/* The route flags this layer reads (the others are the application's, api.h).
 * GH_ROUTE_GUARDED: the route's handler runs only after gh_http_options_t.admit has let the
 * request through, and gh_http_start refuses a table with guarded routes but no admit function —
 * a guard that is not wired fails closed.
 * GH_ROUTE_PASSWORD: the route may wait on the password pool (login, registration, password
 * change). The first such request on a connection moves it to its address's second connection
 * budget (max_connections_per_ip). */
#define GH_ROUTE_GUARDED (1u << 31)
#define GH_ROUTE_PASSWORD (1u << 15)

typedef struct {
    unsigned methods;     /* gh_http_method_t mask */
    const char *template; /* "/v1/sessions/{id}"; a {name} segment matches one path segment */
    gh_handler_fn handler;
    unsigned flags; /* application-defined (api.h: needs a JSON body, admin, ...) */
} gh_route_t;

typedef struct {
    const char *name;
    const char *value;
} gh_header_t;

struct gh_req {
    void *conn; /* struct MHD_Connection * */
    void *app;  /* the application context given to gh_http_start */
    gh_pool_t pool;
    unsigned method;
    const char *method_name;
    const char *path;
    const gh_route_t *route; /* NULL when unmatched */
    int route_index;         /* index into the route table, -1 when unmatched */
    char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t nparams;

    char *body; /* NUL-terminated copy of the request body, in the pool (wiped at the end) */
    size_t body_len;
    bool body_too_big;

    int64_t start_ns;
    int phase;   /* handler-owned state for resumed requests; 0 on the first call */
    void *state; /* handler-owned, in the pool */
    bool suspended;
    bool resumed_pending;
    bool wipe; /* the request carried secrets: wipe the pool before releasing it */

    /* response */
    bool replied;
    bool counted; /* on_reply has run for this request */
    int status;
    const char *content_type;
    char *resp_body;
    size_t resp_len;
    gh_header_t headers[GH_REPLY_MAX_HEADERS];
    size_t nheaders;
    char session_id[24]; /* public id of the caller's session, for the request log ("" = none) */
};

typedef struct gh_http_server gh_http_server_t;

typedef struct {
    int listen_fd; /* a bound, listening socket the server takes over */
    unsigned threads;
    unsigned max_connections;
    /* Per client address (IPv6 by its /64), counted by Gatehouse at accept, not by
     * libmicrohttpd: at most this many open connections that have carried no password request,
     * plus — a separate budget — at most this many that have (a connection moves there with its
     * first request on a GH_ROUTE_PASSWORD route or its first suspended request, and stays;
     * past that budget it is closed after its reply). So a login storm from one address cannot
     * use up the connections its token checks need. 0 = no per-address cap. */
    unsigned max_connections_per_ip;
    /* Peers in this list (a reverse proxy carrying many clients on its connections) are not
     * capped per address; the global max_connections and the timeouts still bound them. May be
     * NULL. The list must outlive the server. */
    const gh_proxies_t *uncapped_peers;
    unsigned connection_timeout_s;
    size_t connection_memory;
    size_t max_body; /* at most GH_HTTP_MAX_BODY, else gh_http_start answers GH_EINVAL */
    unsigned max_requests_per_connection; /* then "Connection: close"; 0 = no limit */
    /* Total time (not gaps between bytes) a connection may take to deliver a request head,
     * counted from its accept or its previous response (so it also ends idle keep-alive), and
     * then the body; past either it is cut. 0 = no deadline. */
    unsigned header_timeout_ms;
    unsigned body_timeout_ms;
    const gh_route_t *routes;
    size_t nroutes;
    void *app;
    /* Called once per completed request (after the reply is sent or the client went away). */
    void (*on_complete)(gh_req_t *r, int64_t duration_ns);
    /* Called once per request as its reply is handed to libmicrohttpd, before the client can
     * see it: counters updated here are already true when the client reads the reply. */
    void (*on_reply)(gh_req_t *r);
    /* Called before a GH_ROUTE_GUARDED route's handler first runs: 0 lets it run; anything else
     * means admit has replied (a refusal) and the handler is never called. */
    int (*admit)(gh_req_t *r);
} gh_http_options_t;

/* Binds host:port (port 0 = any free port) with SO_REUSEADDR and listens. *bound_port gets the
 * real port. Returns 0 or GH_EIO with errno set. */
int gh_http_listen(const char *host, uint16_t port, int *fd, uint16_t *bound_port) GH_WUR;

int gh_http_start(const gh_http_options_t *opt, gh_http_server_t **out) GH_WUR;
/* Stops accepting, waits up to drain_ms for in-flight requests (suspended ones included) to
 * finish, then closes every connection and frees the server. *s = NULL. */
void gh_http_stop(gh_http_server_t **s, int64_t drain_ms);
/* Like gh_http_stop, but leaves the listening socket open for the caller (a reload hands it
 * to the next process): stops accepting, answers every further request with Connection: close,
 * and waits up to drain_ms for the connections to close and requests to finish. */
void gh_http_handoff(gh_http_server_t **s, int64_t drain_ms);
/* Requests that have started and not completed. */
size_t gh_http_inflight(gh_http_server_t *s);
/* Connections cut for missing the header deadline and the body deadline, since start. */
void gh_http_deadline_cuts(gh_http_server_t *s, uint64_t *header, uint64_t *body);

/* Router: finds the route for method+path. Returns the index, or -1 with *allowed set to the
 * method mask of routes whose template matches the path (0 = no such path → 404). */
int gh_router_match(const gh_route_t *routes, size_t n, unsigned method, const char *path,
                    char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1], size_t *nparams,
                    unsigned *allowed);
/* "GET, DELETE" for a method mask; out must hold 64 bytes. */
void gh_http_allow_header(unsigned methods, char out[64]);
unsigned gh_http_method_parse(const char *name);

/* Request accessors. */
const char *gh_req_header(gh_req_t *r, const char *name);
const char *gh_req_cookie(gh_req_t *r, const char *name);
const char *gh_req_query(gh_req_t *r, const char *name);
/* One argument of the query string, decoded ('+' and %XX) by libmicrohttpd. */
typedef struct {
    const char *name;
    const char *value; /* "" for an argument without '=' */
    size_t value_len;  /* may be less than the bytes up to a NUL: a value may hold %00 */
} gh_req_arg_t;
/* Every argument of the query string in the order sent, duplicates included: up to max into
 * out. Returns how many the query holds (more than max: the caller refuses the request). */
size_t gh_req_query_args(gh_req_t *r, gh_req_arg_t *out, size_t max);
/* Every value of a header that may be sent on several lines (X-Forwarded-For), in the order
 * received. Keeps the LAST max values when there are more (the right end of such a list is the
 * part written by the nearest hops). Returns how many were stored in out. */
size_t gh_req_header_values(gh_req_t *r, const char *name, const char **out, size_t max);
/* Client address as text ("127.0.0.1"); out must hold 64 bytes. */
void gh_req_peer(gh_req_t *r, char out[64]);

/* Suspends the request: the handler returns, and is called again after gh_req_resume(). Must be
 * called from inside the handler before work that will resume it is queued. */
void gh_req_suspend(gh_req_t *r);
/* Resumes a suspended request; safe from any thread. */
void gh_req_resume(gh_req_t *r);

/* Replies. The body is copied into the request pool. Return 0, or GH_ENOMEM (then a 503 body
 * that needs no allocation is sent instead). */
int gh_reply(gh_req_t *r, int status, const char *content_type, const char *body, size_t len);
int gh_reply_header(gh_req_t *r, const char *name, const char *value);
/* The contract's error body: {"error":{"code":…,"message":…}}. */
void gh_reply_error(gh_req_t *r, int status, const char *code, const char *message);

#endif
