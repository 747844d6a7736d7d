/*
 * router.c — matching a path against route templates. Templates are few and fixed, so a linear
 * scan of segment comparisons is simpler and faster than a trie at this size. A "{name}"
 * segment matches one non-empty segment of at most GH_ROUTE_PARAM_MAX characters of
 * [A-Za-z0-9._-]; anything else does not match (so odd input is a 404, never a handler's problem).
 */
#include "http/http.h"

#include <string.h>

static bool param_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/* Matches one template; on success copies parameters. */
static bool match_one(const char *tpl, const char *path,
                      char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1], size_t *np)
{
    size_t n = 0;
    while (*tpl && *path) {
        if (*tpl != '/' || *path != '/')
            return false;
        tpl++;
        path++;
        const char *te = strchr(tpl, '/');
        const char *pe = strchr(path, '/');
        size_t tl = te ? (size_t)(te - tpl) : strlen(tpl);
        size_t pl = pe ? (size_t)(pe - path) : strlen(path);
        if (tl >= 2 && tpl[0] == '{' && tpl[tl - 1] == '}') {
            if (pl == 0 || pl > GH_ROUTE_PARAM_MAX || n >= GH_ROUTE_MAX_PARAMS)
                return false;
            for (size_t i = 0; i < pl; i++)
                if (!param_char(path[i]))
                    return false;
            memcpy(params[n], path, pl);
            params[n][pl] = '\0';
            n++;
        } else if (tl != pl || memcmp(tpl, path, tl) != 0) {
            return false;
        }
        tpl += tl;
        path += pl;
    }
    if (*tpl || *path)
        return false;
    *np = n;
    return true;
}

int gh_router_match(const gh_route_t *routes, size_t n, unsigned method, const char *path,
                    char params[GH_ROUTE_MAX_PARAMS][GH_ROUTE_PARAM_MAX + 1], size_t *nparams,
                    unsigned *allowed)
{
    *allowed = 0;
    *nparams = 0;
    /* HEAD is answered wherever GET is (libmicrohttpd drops the body). */
    unsigned want = method == GH_HTTP_HEAD ? (GH_HTTP_HEAD | GH_HTTP_GET) : method;
    for (size_t i = 0; i < n; i++) {
        size_t np = 0;
        if (!match_one(routes[i].template, path, params, &np))
            continue;
        if (routes[i].methods & want) {
            *nparams = np;
            return (int)i;
        }
        *allowed |= routes[i].methods;
    }
    if (*allowed & GH_HTTP_GET)
        *allowed |= GH_HTTP_HEAD;
    return -1;
}

void gh_http_allow_header(unsigned methods, char out[64])
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{GH_HTTP_GET, "GET"},        {GH_HTTP_HEAD, "HEAD"},     {GH_HTTP_POST, "POST"},
                 {GH_HTTP_PUT, "PUT"},        {GH_HTTP_DELETE, "DELETE"}, {GH_HTTP_PATCH, "PATCH"},
                 {GH_HTTP_OPTIONS, "OPTIONS"}};
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(methods & names[i].bit))
            continue;
        size_t nl = strlen(names[i].name);
        if (len + nl + 3 >= 64)
            break;
        if (len) {
            memcpy(out + len, ", ", 2);
            len += 2;
        }
        memcpy(out + len, names[i].name, nl);
        len += nl;
        out[len] = '\0';
    }
}
