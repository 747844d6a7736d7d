/*
 * server.c — libmicrohttpd glue. One gh_req_t per request, allocated on the first callback and
 * freed in the completion callback together with its scratch pool, so a request can never
 * outlive its memory or leak it. Bodies are bounded by max_body (413) before any handler runs.
 *
 * Design decision: we create the listening socket ourselves (gh_http_listen) and hand it to
 * libmicrohttpd, so port 0 can be resolved and logged, and so a later reload can pass the same
 * socket to a new process.
 *
 * The per-address connection cap is ours, not libmicrohttpd's (which counts by peer address and
 * nothing else): a fixed table of addresses, sized at start to twice --max-connections, checked
 * at accept (the accept policy) and exactly when the connection starts. Trusted proxies are not
 * capped, and a connection that has waited on the password pool is counted in a second budget of
 * its address, so a login storm cannot take the connections its address's token checks need.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct conn_state conn_state_t;

#define REAPER_PERIOD_MS 250
/* A SPARE connection (over its address's cap, for one quick request) that has not sent its
 * request head within this is cut: the spare budget absorbs bursts, not idle connections. */
#define SPARE_HEAD_MS 1000

/* The budgets of one address, each max_connections_per_ip connections:
 *   OPEN: connections that have carried no password request (token checks, pages, probes);
 *   PASSWORD: connections that have (login, registration, password change), for good;
 *   SPARE: taken at accept when OPEN is full — answered once and closed, and a password
 *     request on one is refused (503) at once: a burst of new connections from a storm
 *     (reconnecting after keep-alive limits) cannot keep the address's token checks out. */
enum { BUDGET_OPEN, BUDGET_PASSWORD, BUDGET_SPARE, BUDGETS, BUDGET_NONE = BUDGETS };

/* One client address (IPv6 by its /64) with open connections; free when every count is 0. */
typedef struct {
    gh_ip_t key;
    uint32_t home;           /* hash bucket, for the backward-shift delete */
    uint32_t count[BUDGETS]; /* connections in each budget */
} ip_slot_t;

static bool slot_free(const ip_slot_t *e)
{
    return !e->count[BUDGET_OPEN] && !e->count[BUDGET_PASSWORD] && !e->count[BUDGET_SPARE];
}

struct gh_http_server {
    struct MHD_Daemon *daemon;
    /* Per-address connection counts (under conns_lock): open addressing, linear probing, at
     * most one live slot per open connection, so never more than half full. */
    ip_slot_t *ips;
    size_t ips_mask;
    unsigned char ips_key[crypto_shorthash_KEYBYTES];
    /* Every open connection, for the header and body deadlines (reaper_main). */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_wake;
    conn_state_t *slots, *free_slots;
    size_t nslots;
    pthread_t reaper;
    bool reaper_started, reaper_stop;
    _Atomic uint64_t cut_header, cut_body; /* connections cut by each deadline */
    gh_http_options_t opt;
    _Atomic size_t inflight;
    _Atomic bool draining;
    /* Answer for a request whose state cannot be allocated: made at start, shared, never freed
     * until stop, so that saying "out of memory" needs no memory. */
    struct MHD_Response *nomem;
};

static const char nomem_body[] =
    "{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory, try again later\"}}";

int gh_http_listen(const char *host, uint16_t port, int *fd_out, uint16_t *bound_port)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    if (getaddrinfo(host, portstr, &hints, &res) != 0 || !res)
        return GH_EIO;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = GH_EIO;
    if (fd < 0)
        goto out;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0)
        goto out;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        goto out;
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0) {
        int e = errno;
        close(fd);
        errno = e;
    }
    freeaddrinfo(res);
    return rc;
}

unsigned gh_http_method_parse(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", GH_HTTP_GET},        {"HEAD", GH_HTTP_HEAD},
                   {"POST", GH_HTTP_POST},      {"PUT", GH_HTTP_PUT},
                   {"DELETE", GH_HTTP_DELETE},  {"PATCH", GH_HTTP_PATCH},
                   {"OPTIONS", GH_HTTP_OPTIONS}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(m, methods[i].name) == 0)
            return methods[i].bit;
    return GH_HTTP_OTHER;
}

const char *gh_req_header(gh_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *gh_req_cookie(gh_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

const char *gh_req_query(gh_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

typedef struct {
    gh_req_arg_t *out;
    size_t max, n;
} query_args_t;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)key_size;
    query_args_t *qa = cls;
    if (qa->n < qa->max)
        qa->out[qa->n] = (gh_req_arg_t){
            .name = key, .value = value ? value : "", .value_len = value ? value_size : 0};
    qa->n++;
    return MHD_YES;
}

size_t gh_req_query_args(gh_req_t *r, gh_req_arg_t *out, size_t max)
{
    query_args_t qa = {.out = out, .max = max};
    MHD_get_connection_values_n(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &qa);
    return qa.n;
}

typedef struct {
    const char *name;
    const char **out;
    size_t max, n;
} header_values_t;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    header_values_t *hv = cls;
    if (!value || strcasecmp(key, hv->name) != 0)
        return MHD_YES;
    if (hv->n == hv->max) { /* keep the last max: drop the oldest */
        memmove(hv->out, hv->out + 1, (hv->max - 1) * sizeof *hv->out);
        hv->n--;
    }
    hv->out[hv->n++] = value;
    return MHD_YES;
}

size_t gh_req_header_values(gh_req_t *r, const char *name, const char **out, size_t max)
{
    header_values_t hv = {.name = name, .out = out, .max = max};
    if (max == 0)
        return 0;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &hv);
    return hv.n;
}

void gh_req_peer(gh_req_t *r, char out[64])
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, 64);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, 64);
}

void gh_req_resume(gh_req_t *r)
{
    MHD_resume_connection(r->conn);
}

int gh_reply(gh_req_t *r, int status, const char *content_type, const char *body, size_t len)
{
    r->replied = true;
    r->status = status;
    r->content_type = content_type;
    char *copy = len ? gh_pool_alloc(&r->pool, len) : NULL;
    if (len && !copy) {
        r->status = 503;
        r->content_type = "application/json";
        r->resp_body = (char *)nomem_body;
        r->resp_len = sizeof nomem_body - 1;
        r->nheaders = 0;
        return GH_ENOMEM;
    }
    if (len)
        memcpy(copy, body, len);
    r->resp_body = copy;
    r->resp_len = len;
    return 0;
}

int gh_reply_header(gh_req_t *r, const char *name, const char *value)
{
    if (r->nheaders >= GH_REPLY_MAX_HEADERS)
        return GH_ELIMIT;
    char *v = gh_pool_strndup(&r->pool, value, strlen(value));
    if (!v)
        return GH_ENOMEM;
    r->headers[r->nheaders].name = name;
    r->headers[r->nheaders].value = v;
    r->nheaders++;
    return 0;
}

/* Writes s as a JSON string body (escaped) into out; returns bytes written (bounded). */
static size_t json_escape(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else if (ch < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", ch);
        } else {
            out[n++] = (char)ch;
        }
    }
    out[n] = '\0';
    return n;
}

void gh_reply_error(gh_req_t *r, int status, const char *code, const char *message)
{
    char msg[512], body[700];
    json_escape(message, msg, sizeof msg);
    int n =
        snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    if (n < 0 || (size_t)n >= sizeof body)
        n = (int)strlen(body);
    r->nheaders = 0;
    (void)gh_reply(r, status, "application/json", body, (size_t)n);
    if (status == 503 || status == 429)
        (void)gh_reply_header(r, "Retry-After", "1");
}

/* Where a connection is in its request cycle, for the deadlines the reaper enforces. */
enum {
    PHASE_WAITING, /* accepted, or answered: the next request head must arrive in time */
    PHASE_BODY,    /* head received: the body must arrive in time */
    PHASE_HANDLING /* complete: ours to answer (a login may wait on the password pool) */
};

/* Per connection (MHD's socket context): one slot of a table sized to --max-connections and
 * allocated at start, so opening a connection allocates nothing. */
struct conn_state {
    conn_state_t *next_free; /* under s->conns_lock */
    bool in_use;             /* under s->conns_lock */
    bool cut;                /* the reaper has shut it down (under s->conns_lock) */
    int fd;
    gh_http_server_t *srv;
    gh_ip_t ip;        /* the peer's key in s->ips (under s->conns_lock) */
    uint8_t budget;    /* BUDGET_*: which count of s->ips holds it (under s->conns_lock) */
    bool close_after;  /* over its address's budgets: close after this reply */
    unsigned requests; /* answered so far, for the keep-alive limit (its MHD thread only) */
    _Atomic int phase;
    _Atomic int64_t since_ms; /* monotonic; when the phase began */
};

static int64_t mono_ms(void)
{
    return gh_clock_mono_ns() / 1000000;
}

static conn_state_t *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_phase(conn_state_t *cs, int phase)
{
    if (!cs)
        return;
    atomic_store_explicit(&cs->since_ms, mono_ms(), memory_order_relaxed);
    atomic_store_explicit(&cs->phase, phase, memory_order_relaxed);
}

/* The key an address is capped as (IPv4 as ::ffff:a.b.c.d, IPv6 by its /64) and the full
 * address (for the trusted-proxy test). False for a family we do not cap. */
static bool peer_key(const struct sockaddr *sa, gh_ip_t *full, gh_ip_t *key)
{
    memset(full, 0, sizeof *full);
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        full->b[10] = full->b[11] = 0xff;
        memcpy(full->b + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(full->b, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return false;
    }
    *key = *full;
    if (!gh_ip_is_v4(key))
        memset(key->b + 8, 0, 8);
    return true;
}

/* True when the peer is counted: a cap is set and it is not an uncapped (trusted) proxy. */
static bool peer_capped(gh_http_server_t *s, const struct sockaddr *sa, gh_ip_t *key)
{
    gh_ip_t full;
    if (!s->ips || !peer_key(sa, &full, key))
        return false;
    return !(s->opt.uncapped_peers && gh_proxies_contains(s->opt.uncapped_peers, &full));
}

static uint32_t ip_home(gh_http_server_t *s, const gh_ip_t *key)
{
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key->b, sizeof key->b, s->ips_key);
    uint32_t v;
    memcpy(&v, h, sizeof v);
    return v & (uint32_t)s->ips_mask;
}

/* The address's slot (under conns_lock); with create, a fresh one when absent. NULL when absent
 * (or, never in practice, when the table is full). */
static ip_slot_t *ip_find(gh_http_server_t *s, const gh_ip_t *key, bool create)
{
    uint32_t home = ip_home(s, key);
    for (size_t n = 0, i = home; n <= s->ips_mask; n++, i = (i + 1) & s->ips_mask) {
        ip_slot_t *e = &s->ips[i];
        if (slot_free(e)) {
            if (!create)
                return NULL;
            e->key = *key;
            e->home = home;
            return e;
        }
        if (memcmp(e->key.b, key->b, sizeof key->b) == 0)
            return e;
    }
    return NULL;
}

/* Frees a slot whose counts are both 0, moving later entries of its probe run back so that
 * every lookup still finds them (backward-shift delete; no tombstones). */
static void ip_release(gh_http_server_t *s, ip_slot_t *e)
{
    if (!slot_free(e))
        return;
    size_t i = (size_t)(e - s->ips), j = i;
    for (;;) {
        j = (j + 1) & s->ips_mask;
        ip_slot_t *n = &s->ips[j];
        if (slot_free(n))
            break;
        size_t k = n->home;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        s->ips[i] = *n;
        memset(n->count, 0, sizeof n->count);
        i = j;
    }
}

/* libmicrohttpd's accept policy: refuses a connection from an address already at its cap before
 * a connection is made for it. on_connection checks again, exactly. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addrlen;
    gh_http_server_t *s = cls;
    /* A stop drains: every new connection is turned away at once (gh_http_stop). */
    if (atomic_load_explicit(&s->draining, memory_order_relaxed))
        return MHD_NO;
    gh_ip_t key;
    if (!peer_capped(s, addr, &key))
        return MHD_YES;
    pthread_mutex_lock(&s->conns_lock);
    const ip_slot_t *e = ip_find(s, &key, false);
    unsigned cap = s->opt.max_connections_per_ip;
    bool full = e && e->count[BUDGET_OPEN] >= cap && e->count[BUDGET_SPARE] >= cap;
    pthread_mutex_unlock(&s->conns_lock);
    return full ? MHD_NO : MHD_YES;
}

/* The connection carries a password request (a GH_ROUTE_PASSWORD route, or a request that
 * suspended to wait on the password pool): from now on it counts in its address's password
 * budget, or, that budget full, it is closed after its reply. */
static void conn_to_password_budget(conn_state_t *cs)
{
    gh_http_server_t *s = cs->srv;
    pthread_mutex_lock(&s->conns_lock);
    if (cs->budget == BUDGET_OPEN) {
        ip_slot_t *e = ip_find(s, &cs->ip, false);
        if (e && e->count[BUDGET_PASSWORD] < s->opt.max_connections_per_ip) {
            e->count[BUDGET_OPEN]--;
            e->count[BUDGET_PASSWORD]++;
            cs->budget = BUDGET_PASSWORD;
        } else {
            cs->close_after = true;
        }
    }
    pthread_mutex_unlock(&s->conns_lock);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    gh_http_server_t *s = cls;
    conn_state_t *cs = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        gh_ip_t key;
        bool capped = peer_capped(s, ai ? ai->client_addr : NULL, &key);
        bool over = false;
        pthread_mutex_lock(&s->conns_lock);
        cs = s->free_slots;
        if (cs) { /* never empty while libmicrohttpd keeps to the connection limit */
            s->free_slots = cs->next_free;
            cs->in_use = true;
            cs->cut = false;
            cs->requests = 0;
            cs->fd = ci ? ci->connect_fd : -1;
            cs->srv = s;
            cs->budget = BUDGET_NONE;
            cs->close_after = false;
            set_phase(cs, PHASE_WAITING);
            ip_slot_t *e = capped ? ip_find(s, &key, true) : NULL;
            if (e) {
                unsigned cap = s->opt.max_connections_per_ip;
                int b = e->count[BUDGET_OPEN] < cap    ? BUDGET_OPEN
                        : e->count[BUDGET_SPARE] < cap ? BUDGET_SPARE
                                                       : BUDGET_NONE;
                if (b == BUDGET_NONE) {
                    over = cs->cut = true; /* a race past on_accept: cut, never counted */
                } else {
                    e->count[b]++;
                    cs->ip = key;
                    cs->budget = (uint8_t)b;
                    cs->close_after = b == BUDGET_SPARE;
                }
            }
        }
        pthread_mutex_unlock(&s->conns_lock);
        if (over)
            (void)shutdown(cs->fd, SHUT_RDWR);
        *socket_context = cs;
        return;
    }
    if (!cs)
        return;
    /* libmicrohttpd closes the socket after this returns: once the slot is free, the reaper can
     * no longer reach an fd number that may be reused. */
    pthread_mutex_lock(&s->conns_lock);
    if (cs->budget != BUDGET_NONE) {
        ip_slot_t *e = ip_find(s, &cs->ip, false);
        if (e && e->count[cs->budget]) {
            e->count[cs->budget]--;
            ip_release(s, e);
        }
        cs->budget = BUDGET_NONE;
    }
    cs->in_use = false;
    cs->next_free = s->free_slots;
    s->free_slots = cs;
    pthread_mutex_unlock(&s->conns_lock);
    *socket_context = NULL;
}

void gh_req_suspend(gh_req_t *r)
{
    r->suspended = true;
    conn_state_t *cs = conn_of(r->conn);
    if (cs && cs->budget == BUDGET_OPEN) /* read here on the connection's own thread */
        conn_to_password_budget(cs);
    MHD_suspend_connection(r->conn);
}

/* Cuts connections that take too long to send a request head or body (slowloris): the total
 * time counts, not the gaps between bytes, which libmicrohttpd's own timeout measures. */
static void *reaper_main(void *arg)
{
    gh_http_server_t *s = arg;
    pthread_mutex_lock(&s->conns_lock);
    while (!s->reaper_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += REAPER_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->reaper_wake, &s->conns_lock, &ts);
        int64_t now = mono_ms();
        for (size_t i = 0; i < s->nslots; i++) {
            conn_state_t *cs = &s->slots[i];
            if (!cs->in_use)
                continue;
            int phase = atomic_load_explicit(&cs->phase, memory_order_relaxed);
            int64_t age = now - atomic_load_explicit(&cs->since_ms, memory_order_relaxed);
            int64_t limit = phase == PHASE_WAITING ? (int64_t)s->opt.header_timeout_ms
                            : phase == PHASE_BODY  ? (int64_t)s->opt.body_timeout_ms
                                                   : 0;
            if (phase == PHASE_WAITING && cs->budget == BUDGET_SPARE &&
                (limit == 0 || limit > SPARE_HEAD_MS))
                limit = SPARE_HEAD_MS;
            if (cs->cut || limit == 0 || age <= limit || cs->fd < 0)
                continue;
            /* shutdown, not close: libmicrohttpd sees the end of the stream and cleans up. */
            cs->cut = true;
            (void)shutdown(cs->fd, SHUT_RDWR);
            atomic_fetch_add_explicit(phase == PHASE_WAITING ? &s->cut_header : &s->cut_body, 1,
                                      memory_order_relaxed);
        }
    }
    pthread_mutex_unlock(&s->conns_lock);
    return NULL;
}

/* True when this reply is the last one the connection may carry. */
static bool last_on_connection(gh_http_server_t *s, gh_req_t *r)
{
    if (!s->opt.max_requests_per_connection)
        return false;
    conn_state_t *cs = conn_of(r->conn);
    return cs && ++cs->requests >= s->opt.max_requests_per_connection;
}

static enum MHD_Result queue_reply(gh_http_server_t *s, gh_req_t *r)
{
    if (s->opt.on_reply && !r->counted) {
        r->counted = true;
        s->opt.on_reply(r);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, r->resp_body, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    if (r->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    for (size_t i = 0; i < r->nheaders; i++)
        MHD_add_response_header(resp, r->headers[i].name, r->headers[i].value);
    conn_state_t *cs = conn_of(r->conn);
    if (last_on_connection(s, r) || (cs && cs->close_after) ||
        atomic_load_explicit(&s->draining, memory_order_relaxed))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static bool append_body(gh_http_server_t *s, gh_req_t *r, const char *data, size_t n, size_t *cap)
{
    /* body_len <= max_body <= GH_HTTP_MAX_BODY, so neither side of a comparison below wraps. */
    if (n > s->opt.max_body - r->body_len) {
        r->body_too_big = true;
        return true;
    }
    if (r->body_len + n + 1 > *cap) {
        size_t want = *cap ? *cap * 2 : 1024;
        while (want < r->body_len + n + 1)
            want *= 2;
        if (want > s->opt.max_body + 1)
            want = s->opt.max_body + 1;
        char *nb = gh_pool_alloc(&r->pool, want);
        if (!nb)
            return false;
        if (r->body_len)
            memcpy(nb, r->body, r->body_len);
        r->body = nb;
        *cap = want;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return true;
}

typedef struct {
    gh_req_t req;
    size_t body_cap;
    bool routed;
    bool queued;      /* the reply went to libmicrohttpd */
    bool bad_framing; /* conflicting Content-Length headers, or one beside Transfer-Encoding */
} req_box_t;

/* Request smuggling guard (RFC 9112 6.3): a body length given two ways is refused, because a
 * proxy in front may have read it the other way and sent the rest as another request. */
static bool framing_is_ambiguous(gh_req_t *r)
{
    const char *lens[4];
    size_t n = gh_req_header_values(r, "Content-Length", lens, 4);
    if (n && MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding"))
        return true;
    for (size_t i = 1; i < n; i++)
        if (strcmp(lens[i], lens[0]) != 0)
            return true;
    return false;
}

/* Routes the request (once) and runs its handler; queues the reply unless it suspended. */
static enum MHD_Result dispatch(gh_http_server_t *s, req_box_t *box)
{
    gh_req_t *r = &box->req;
    r->suspended = false;
    if (!box->routed && !r->replied) {
        box->routed = true;
        unsigned allowed = 0;
        r->route_index = gh_router_match(s->opt.routes, s->opt.nroutes, r->method, r->path,
                                         r->params, &r->nparams, &allowed);
        if (r->route_index < 0) {
            if (allowed) {
                char allow[64];
                gh_http_allow_header(allowed, allow);
                gh_reply_error(r, 405, "method_not_allowed", "method not allowed for this path");
                (void)gh_reply_header(r, "Allow", allow);
            } else {
                gh_reply_error(r, 404, "not_found", "no such route");
            }
        } else {
            r->route = &s->opt.routes[r->route_index];
            conn_state_t *cs = conn_of(r->conn);
            bool password = r->route->flags & GH_ROUTE_PASSWORD;
            if (password && cs && cs->budget == BUDGET_OPEN)
                conn_to_password_budget(cs);
            if (password && cs && cs->budget == BUDGET_SPARE)
                gh_reply_error(r, 503, "overloaded",
                               "too many connections from this address, try again later");
            else if (r->body_too_big)
                gh_reply_error(r, 413, "payload_too_large", "request body is too large");
            else if ((r->route->flags & GH_ROUTE_GUARDED) && s->opt.admit(r) != 0 && !r->replied)
                gh_reply_error(r, 403, "forbidden", "refused");
        }
        if (box->bad_framing) {
            gh_reply_error(r, 400, "invalid_request",
                           "conflicting Content-Length or Transfer-Encoding headers");
            (void)gh_reply_header(r, "Connection", "close");
        }
    }
    if (box->queued)
        return MHD_YES;
    if (!r->replied)
        r->route->handler(r);
    if (r->suspended)
        return MHD_YES;
    if (!r->replied)
        gh_reply_error(r, 500, "internal_error", "the handler did not answer");
    box->queued = true;
    return queue_reply(s, r);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    (void)version;
    gh_http_server_t *s = cls;
    req_box_t *box = *con_cls;
    if (!box) {
        box = gh_mem_calloc(GH_MEM_HTTP, 1, sizeof *box);
        if (!box)
            return MHD_queue_response(conn, 503, s->nomem);
        gh_req_t *r = &box->req;
        r->conn = conn;
        r->app = s->opt.app;
        gh_pool_init(&r->pool, GH_MEM_HTTP, 2 * s->opt.max_body + GH_HTTP_POOL_EXTRA);
        r->method = gh_http_method_parse(method);
        r->method_name = method;
        r->path = url;
        r->route_index = -1;
        r->start_ns = gh_clock_mono_ns();
        atomic_fetch_add(&s->inflight, 1);
        *con_cls = box;
        set_phase(conn_of(conn), PHASE_BODY);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(cl, &end, 10);
            if (errno || *end || v > s->opt.max_body)
                r->body_too_big = true;
        }
        box->bad_framing = framing_is_ambiguous(r);
        /* A declared oversized body, or one of two lengths, is refused at once, unread. */
        if (!r->body_too_big && !box->bad_framing)
            return MHD_YES;
    }
    gh_req_t *r = &box->req;
    if (*upload_size) {
        /* Past the limit (or out of memory) the rest of the body is read and dropped, and the
         * error is answered once the upload ends: libmicrohttpd cannot queue a reply mid-upload. */
        if (!r->body_too_big && !r->replied &&
            !append_body(s, r, upload_data, *upload_size, &box->body_cap))
            gh_reply_error(r, 503, "overloaded", "out of memory, try again later");
        *upload_size = 0;
        return MHD_YES;
    }
    if (!box->routed)
        set_phase(conn_of(conn), PHASE_HANDLING);
    return dispatch(s, box);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    gh_http_server_t *s = cls;
    req_box_t *box = *con_cls;
    set_phase(conn_of(conn), PHASE_WAITING);
    if (!box)
        return;
    gh_req_t *r = &box->req;
    if (s->opt.on_complete)
        s->opt.on_complete(r, gh_clock_mono_ns() - r->start_ns);
    if (r->body)
        sodium_memzero(r->body, r->body_len);
    gh_pool_release(&r->pool);
    gh_mem_free(GH_MEM_HTTP, box);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    /* libmicrohttpd out of descriptors advises its own option; say what to change here. */
    if (strstr(msg, "MHD_OPTION_CONNECTION_LIMIT"))
        GH_LOG(GH_LOG_WARN, "http", GH_LS("detail", msg),
               GH_LS("hint", "out of file descriptors: raise the open-file limit (ulimit -n, "
                             "systemd LimitNOFILE=) or lower --max-connections"));
    else
        GH_LOG(GH_LOG_WARN, "http", GH_LS("detail", msg));
}

int gh_http_start(const gh_http_options_t *opt, gh_http_server_t **out)
{
    for (size_t i = 0; i < opt->nroutes; i++)
        if ((opt->routes[i].flags & GH_ROUTE_GUARDED) && !opt->admit)
            return GH_EINVAL; /* a guard nobody wired: refuse to serve rather than open it */
    if (opt->max_body > GH_HTTP_MAX_BODY)
        return GH_EINVAL; /* 2 * max_body + GH_HTTP_POOL_EXTRA must not wrap */
    gh_http_server_t *s = gh_mem_calloc(GH_MEM_HTTP, 1, sizeof *s);
    if (!s)
        return GH_ENOMEM;
    s->opt = *opt;
    s->nomem = MHD_create_response_from_buffer(sizeof nomem_body - 1, (void *)nomem_body,
                                               MHD_RESPMEM_PERSISTENT);
    if (!s->nomem) {
        gh_mem_free(GH_MEM_HTTP, s);
        return GH_ENOMEM;
    }
    MHD_add_response_header(s->nomem, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(s->nomem, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    /* MHD_USE_ITC: MHD_quiesce_daemon needs it to take the listening socket out of running
     * worker threads (stop and handoff). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    s->nslots = opt->max_connections ? opt->max_connections : 1;
    s->slots = gh_mem_calloc(GH_MEM_HTTP, s->nslots, sizeof *s->slots);
    if (!s->slots) {
        MHD_destroy_response(s->nomem);
        gh_mem_free(GH_MEM_HTTP, s);
        return GH_ENOMEM;
    }
    for (size_t i = s->nslots; i-- > 0;) {
        s->slots[i].next_free = s->free_slots;
        s->free_slots = &s->slots[i];
    }
    if (opt->max_connections_per_ip) {
        size_t cap = 16;
        while (cap < 2 * s->nslots)
            cap *= 2;
        s->ips = gh_mem_calloc(GH_MEM_HTTP, cap, sizeof *s->ips);
        if (!s->ips) {
            gh_mem_free(GH_MEM_HTTP, s->slots);
            MHD_destroy_response(s->nomem);
            gh_mem_free(GH_MEM_HTTP, s);
            return GH_ENOMEM;
        }
        s->ips_mask = cap - 1;
        randombytes_buf(s->ips_key, sizeof s->ips_key);
    }
    pthread_mutex_init(&s->conns_lock, NULL);
    pthread_cond_init(&s->reaper_wake, NULL);
    s->daemon = MHD_start_daemon(
        flags, 0, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, opt->listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(opt->threads ? opt->threads : 1), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)opt->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)opt->connection_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)opt->connection_memory, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (!s->daemon)
        goto fail;
    bool reaper = opt->header_timeout_ms || opt->body_timeout_ms || s->ips;
    if (reaper && pthread_create(&s->reaper, NULL, reaper_main, s) != 0) {
        MHD_stop_daemon(s->daemon);
        goto fail;
    }
    s->reaper_started = reaper;
    *out = s;
    return 0;
fail:
    pthread_cond_destroy(&s->reaper_wake);
    pthread_mutex_destroy(&s->conns_lock);
    gh_mem_free(GH_MEM_HTTP, s->ips);
    gh_mem_free(GH_MEM_HTTP, s->slots);
    MHD_destroy_response(s->nomem);
    gh_mem_free(GH_MEM_HTTP, s);
    return GH_EIO;
}

size_t gh_http_inflight(gh_http_server_t *s)
{
    return atomic_load(&s->inflight);
}

/* Stops the reaper, then libmicrohttpd (which closes every connection), and frees it all. */
static void destroy(gh_http_server_t *s)
{
    if (s->reaper_started) {
        pthread_mutex_lock(&s->conns_lock);
        s->reaper_stop = true;
        pthread_cond_signal(&s->reaper_wake);
        pthread_mutex_unlock(&s->conns_lock);
        pthread_join(s->reaper, NULL);
    }
    MHD_stop_daemon(s->daemon);
    pthread_cond_destroy(&s->reaper_wake);
    pthread_mutex_destroy(&s->conns_lock);
    gh_mem_free(GH_MEM_HTTP, s->ips);
    gh_mem_free(GH_MEM_HTTP, s->slots);
    MHD_destroy_response(s->nomem);
    gh_mem_free(GH_MEM_HTTP, s);
}

void gh_http_stop(gh_http_server_t **sp, int64_t drain_ms)
{
    gh_http_server_t *s = *sp;
    if (!s)
        return;
    /* Not MHD_quiesce_daemon: with a pool of epoll threads it races the threads for the
     * listening socket inside libmicrohttpd (both take it out of the same epoll set; the loser
     * aborts the process: "Failed to remove listen FD from epoll set", exit 134). Draining
     * instead makes on_accept turn every new connection away; libmicrohttpd closes the
     * listening socket itself when it stops. */
    atomic_store(&s->draining, true);
    int64_t deadline = gh_clock_mono_ns() + drain_ms * 1000000;
    while (atomic_load(&s->inflight) > 0 && gh_clock_mono_ns() < deadline) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    destroy(s);
    *sp = NULL;
}

static unsigned connections(gh_http_server_t *s)
{
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

void gh_http_handoff(gh_http_server_t **sp, int64_t drain_ms)
{
    gh_http_server_t *s = *sp;
    if (!s)
        return;
    /* Not closed: the socket goes on to the next process, and may come back to this one.
     * Quiesced before draining is set, so that no connection is turned away meanwhile. (The
     * successor must get every connection this process no longer accepts, so a handoff, unlike
     * a stop, cannot do without MHD_quiesce_daemon; see gh_http_stop for its race.) */
    (void)MHD_quiesce_daemon(s->daemon);
    atomic_store(&s->draining, true);
    /* Every reply from now on says Connection: close, so a busy keep-alive client gets one
     * more answer here and reconnects to the queue of the listening socket. A connection
     * that stays quiet is idle, not mid-request: after IDLE_GRACE_MS without any connection
     * closing, the rest are closed with nothing in flight. */
    const int64_t idle_grace_ns = 250 * 1000000LL;
    int64_t now = gh_clock_mono_ns(), deadline = now + drain_ms * 1000000;
    int64_t last_change = now;
    unsigned last = connections(s);
    while (now < deadline) {
        unsigned c = connections(s);
        size_t inflight = atomic_load(&s->inflight);
        if (c == 0 && inflight == 0)
            break;
        if (c != last) {
            last = c;
            last_change = now;
        } else if (inflight == 0 && now - last_change >= idle_grace_ns) {
            break;
        }
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
        now = gh_clock_mono_ns();
    }
    destroy(s);
    *sp = NULL;
}

void gh_http_deadline_cuts(gh_http_server_t *s, uint64_t *header, uint64_t *body)
{
    *header = atomic_load_explicit(&s->cut_header, memory_order_relaxed);
    *body = atomic_load_explicit(&s->cut_body, memory_order_relaxed);
}
