/*
 * fuzz_route.c — route matching (gh_router_match) on any path a client can send, against the
 * real route table and a table that asks for more parameters than a route may have.
 *
 * Property: the router agrees with an independent reference matcher written the slow, obvious
 * way (split both on '/', compare segment by segment): the same route index, the same Allow
 * mask for a 405, and parameters that put back into the template give the path again.
 * Input: first byte picks the method (and the table), the rest is the path.
 */
#include <stdbool.h>
#include <string.h>

#include "api/api.h"
#include "fuzz.h"

#define MAX_SEGS 64

static const gh_route_t deep_routes[] = {
    {GH_HTTP_GET, "/a/{w}/{x}/{y}/{z}", NULL, 0}, /* one parameter too many: never matches */
    {GH_HTTP_GET | GH_HTTP_PUT, "/a/{x}/{y}/{z}", NULL, 0},
    {GH_HTTP_DELETE, "/a/{x}/b", NULL, 0},
    {GH_HTTP_POST, "/", NULL, 0},
    {GH_HTTP_GET, "/{x}", NULL, 0},
};

/* Splits a path that starts with '/' into segments (empty ones kept). -1 when not a path. */
static int split(const char *s, const char *seg[MAX_SEGS], size_t len[MAX_SEGS])
{
    if (s[0] != '/')
        return -1;
    int n = 0;
    const char *p = s + 1;
    for (;;) {
        if (n == MAX_SEGS)
            return -1;
        const char *e = strchr(p, '/');
        seg[n] = p;
        len[n] = e ? (size_t)(e - p) : strlen(p);
        n++;
        if (!e)
            return n;
        p = e + 1;
    }
}

static bool is_param(const char *seg, size_t len)
{
    return len >= 2 && seg[0] == '{' && seg[len - 1] == '}';
}

static bool param_ok(const char *seg, size_t len)
{
    if (len == 0 || len > GH_ROUTE_PARAM_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = seg[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static bool ref_match(const char *tpl, const char *path)
{
    const char *ts[MAX_SEGS], *ps[MAX_SEGS];
    size_t tl[MAX_SEGS], pl[MAX_SEGS];
    int nt = split(tpl, ts, tl), np = split(path, ps, pl);
    if (nt < 0 || np < 0 || nt != np)
        return false;
    int params = 0;
    for (int i = 0; i < nt; i++) {
        if (is_param(ts[i], tl[i])) {
            if (++params > GH_ROUTE_MAX_PARAMS || !param_ok(ps[i], pl[i]))
                return false;
        } else if (tl[i] != pl[i] || memcmp(ts[i], ps[i], tl[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* The template with its {name} segments replaced by params, in order. */
static void fill(const char *tpl, char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1],
                 size_t nparams, char *out, size_t cap)
{
    const char *ts[MAX_SEGS];
    size_t tl[MAX_SEGS], used = 0, k = 0;
    int nt = split(tpl, ts, tl);
    FUZZ_CHECK(nt > 0);
    out[0] = '\0';
    for (int i = 0; i < nt; i++) {
        const char *seg = ts[i];
        size_t len = tl[i];
        if (is_param(seg, len)) {
            FUZZ_CHECK(k < nparams);
            seg = params[k++];
            len = strlen(seg);
        }
        FUZZ_CHECK(used + len + 2 < cap);
        out[used++] = '/';
        memcpy(out + used, seg, len);
        used += len;
        out[used] = '\0';
    }
    FUZZ_CHECK(k == nparams);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    unsigned method = 1u << (data[0] & 7); /* GH_HTTP_GET .. GH_HTTP_OTHER */
    const gh_route_t *routes = data[0] & 8 ? deep_routes : gh_api_routes;
    size_t nroutes = data[0] & 8 ? sizeof deep_routes / sizeof deep_routes[0] : gh_api_nroutes;
    /* libmicrohttpd hands the router a C string: the path ends at the first NUL. */
    char *path = malloc(size);
    FUZZ_CHECK(path != NULL);
    memcpy(path, data + 1, size - 1);
    path[size - 1] = '\0';

    char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1];
    size_t nparams = 99;
    unsigned allowed = 0xdead;
    int idx = gh_router_match(routes, nroutes, method, path, params, &nparams, &allowed);

    unsigned want = method == GH_HTTP_HEAD ? (GH_HTTP_HEAD | GH_HTTP_GET) : method;
    int ref_idx = -1;
    unsigned ref_allowed = 0;
    for (size_t i = 0; i < nroutes; i++) {
        if (!ref_match(routes[i].template, path))
            continue;
        if (routes[i].methods & want) {
            ref_idx = (int)i;
            break;
        }
        ref_allowed |= routes[i].methods;
    }
    FUZZ_CHECK(idx == ref_idx);
    if (idx >= 0) {
        FUZZ_CHECK(nparams <= GH_ROUTE_MAX_PARAMS);
        char again[8192];
        fill(routes[idx].template, params, nparams, again, sizeof again);
        FUZZ_CHECK(strcmp(again, path) == 0);
    } else {
        if (ref_allowed & GH_HTTP_GET)
            ref_allowed |= GH_HTTP_HEAD;
        FUZZ_CHECK(allowed == ref_allowed);
        FUZZ_CHECK(nparams == 0);
        char allow[64];
        gh_http_allow_header(allowed, allow);
        FUZZ_CHECK(strlen(allow) < sizeof allow);
    }
    free(path);
    return 0;
}
