/*
 * engine.c — the load engine of `gatehouse load`: virtual users on one libcurl multi handle.
 *
 * Each virtual user (VU) owns one easy handle, reused for every request it makes, so libcurl keeps
 * its connection alive. A VU walks its scenario as a small state machine: the answer to one step
 * picks the next (a login's token feeds the checks, a 401 sends it back to log in).
 *
 * The one design decision: closed loop by default (a VU sends its next request when the previous
 * one is answered), open loop with --rate, where VU i has a fixed schedule of intended send times
 * and a request's latency is measured from its INTENDED time, not from when it could finally be
 * sent. That is wrk2's correction for coordinated omission: a server that stalls for a second is
 * charged for every request that should have gone out during that second, not for one.
 * Pending VUs (scheduled in the open loop, backing off after an error) wait in one binary heap
 * keyed by wake-up time, so the loop's cost does not grow with the number of VUs.
 */
#include "load/load.h"

#include <assert.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
/* After an unexpected answer or a transport failure, a closed-loop VU waits this long, so a
 * dead target is not hammered with connection attempts at full speed. */
#define ERROR_BACKOFF_NS (100 * NS_PER_MS)
/* After 503 overloaded during setup, the step is retried this much later. */
#define SETUP_RETRY_NS (1000 * NS_PER_MS)
/* Setup uses at most this many VUs at once: registration and login queue on the target's
 * password pool (queue 64 by default), and setup should not be the thing that overloads it. */
#define SETUP_CONCURRENCY 32u
/* A login response is a few hundred bytes; anything longer is cut (and the token then missing). */
#define BODY_MAX 4096
/* The /metrics text is bounded by the node (4 MiB); a scrape is given 2 s. */
#define SCRAPE_MAX (4u << 20)
#define SCRAPE_TIMEOUT_MS 2000
#define PREFLIGHT_TIMEOUT_MS 5000
/* The target counts as lost when the last this many seconds had transport failures only. */
#define LOST_AFTER_TICKS 3

#define PASSWORD "gatehouse-load-password"
#define WRONG_PASSWORD "gatehouse-load-wrong-password"

typedef enum {
    STEP_NONE = 0,
    STEP_REGISTER,
    STEP_LOGIN,
    STEP_CHECK,
    STEP_WHOAMI,
    STEP_LIST,
    STEP_LOGOUT,
    STEP_BAD_LOGIN,
} step_t;

typedef enum { PHASE_REGISTER = 0, PHASE_SETUP_LOGIN, PHASE_RUN, PHASE_DRAIN } phase_t;

typedef struct engine engine_t;

typedef struct {
    engine_t *e;
    CURL *easy;
    uint32_t id;
    uint32_t user;        /* index of the pool user it works as */
    step_t step;          /* in flight, or about to be sent when woken */
    step_t configured;    /* the step the easy handle's options are set for */
    uint32_t checks_left; /* churn: token checks before the logout */
    bool has_token;
    bool in_flight;
    bool measured;           /* counted in the result (load phase) */
    bool first_cycle;        /* churn: the first cycle is shortened to spread the VUs' phases */
    struct curl_slist *auth; /* "Authorization: Bearer <token>" */
    char token[96];
    char post[256];
    size_t post_len;
    char body[BODY_MAX];
    size_t body_len;
    int64_t intended_ns; /* open loop: when this request should go out */
    int64_t sent_ns;
    int64_t wake_ns; /* in the heap: when to send */
    size_t heap_pos; /* SIZE_MAX when not in the heap */
    uint64_t rng;
} vu_t;

struct engine {
    const gh_load_opts_t *o;
    gh_load_result_t *res;
    volatile sig_atomic_t *stop;
    char *err;
    size_t errlen;
    int failure; /* a GH_E* code that ends setup or the run, with err filled */

    CURLM *multi;
    vu_t *vus;
    uint32_t nvu;
    uint32_t inflight;
    vu_t **heap;
    size_t heap_len;
    bool open_loop;
    int64_t interval_ns; /* open loop: per-VU spacing of intended send times */

    char url_users[GH_LOAD_URL_MAX + 32];
    char url_sessions[GH_LOAD_URL_MAX + 32];
    char url_session[GH_LOAD_URL_MAX + 32];
    char url_auth[GH_LOAD_URL_MAX + 32];
    struct curl_slist *json_hdr;  /* Content-Type: application/json */
    struct curl_slist *admin_hdr; /* the same plus the admin bearer token */

    phase_t phase;
    uint32_t next_register; /* next pool user to register */
    uint32_t next_login;    /* next VU to log in (validate setup) */
    int64_t setup_deadline;
    int64_t t0, end_ns, drain_deadline, drain_started;

    /* per-second bookkeeping */
    int64_t next_tick;
    int64_t last_tick_ns;
    uint64_t tick_requests, tick_errors, tick_answers, tick_transport;
    gh_load_hist_t *tick_hist;
    uint32_t lost_ticks; /* consecutive ticks with transport failures only */

    /* /metrics scraping */
    CURL *scrape;
    char *scrape_buf;
    size_t scrape_len;
    bool scrape_busy, scrape_overflow;
    double last_rss, last_sessions;
};

static int64_t now_ns(void)
{
    return gh_clock_mono_ns();
}

static void fail(engine_t *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(engine_t *e, int code, const char *fmt, ...)
{
    if (e->failure)
        return;
    e->failure = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, e->errlen, fmt, ap);
    va_end(ap);
}

static uint32_t rnd(vu_t *vu, uint32_t bound)
{
    /* xorshift64*: good enough to pick weighted steps, and deterministic per VU. */
    vu->rng ^= vu->rng >> 12;
    vu->rng ^= vu->rng << 25;
    vu->rng ^= vu->rng >> 27;
    return (uint32_t)((vu->rng * 0x2545F4914F6CDD1DULL) >> 33) % bound;
}

/* ---- the heap of waiting VUs ---- */

static void heap_swap(engine_t *e, size_t a, size_t b)
{
    vu_t *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->heap_pos = a;
    e->heap[b]->heap_pos = b;
}

static void heap_push(engine_t *e, vu_t *vu, int64_t wake)
{
    assert(vu->heap_pos == SIZE_MAX && e->heap_len < e->nvu);
    vu->wake_ns = wake;
    size_t i = e->heap_len++;
    e->heap[i] = vu;
    vu->heap_pos = i;
    while (i > 0 && e->heap[(i - 1) / 2]->wake_ns > e->heap[i]->wake_ns) {
        heap_swap(e, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static vu_t *heap_pop(engine_t *e)
{
    assert(e->heap_len > 0);
    vu_t *top = e->heap[0];
    heap_swap(e, 0, --e->heap_len);
    top->heap_pos = SIZE_MAX;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < e->heap_len && e->heap[l]->wake_ns < e->heap[m]->wake_ns)
            m = l;
        if (r < e->heap_len && e->heap[r]->wake_ns < e->heap[m]->wake_ns)
            m = r;
        if (m == i)
            break;
        heap_swap(e, i, m);
        i = m;
    }
    return top;
}

/* ---- libcurl plumbing ---- */

static size_t vu_body(char *p, size_t size, size_t n, void *arg)
{
    vu_t *vu = arg;
    size_t len = size * n;
    /* Only login and registration answers are read; the rest is counted and dropped. */
    if (vu->step == STEP_LOGIN || vu->step == STEP_REGISTER) {
        size_t room = sizeof vu->body - 1 - vu->body_len;
        size_t take = len < room ? len : room;
        memcpy(vu->body + vu->body_len, p, take);
        vu->body_len += take;
        vu->body[vu->body_len] = '\0';
    }
    return len;
}

static size_t scrape_body(char *p, size_t size, size_t n, void *arg)
{
    engine_t *e = arg;
    size_t len = size * n;
    size_t room = SCRAPE_MAX - e->scrape_len;
    if (len > room) {
        e->scrape_overflow = true;
        return 0; /* aborts the transfer */
    }
    memcpy(e->scrape_buf + e->scrape_len, p, len);
    e->scrape_len += len;
    return len;
}

/* Options every handle of the tool gets: never a proxy, never a redirect, only HTTP(S). */
static int common_opts(CURL *c, long timeout_ms)
{
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (rc == CURLE_OK)                                                                            \
    rc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
    SET(CURLOPT_USERAGENT, "gatehouse-load");
    SET(CURLOPT_BUFFERSIZE,
        4096L); /* answers are small; the default 16 KiB is allocated per transfer */
#undef SET
    return rc == CURLE_OK ? 0 : GH_EINVAL;
}

/* Sets the easy handle up for vu->step (only what differs from the last step). */
static int configure(engine_t *e, vu_t *vu)
{
    if (vu->configured == vu->step)
        return 0;
    CURL *c = vu->easy;
    CURLcode rc = CURLE_OK;
    const char *url = NULL;
    struct curl_slist *hdr = NULL;
    bool post = false;
    const char *custom = NULL;
    switch (vu->step) {
    case STEP_REGISTER:
        url = e->url_users;
        hdr = e->o->admin_token[0] ? e->admin_hdr : e->json_hdr;
        post = true;
        break;
    case STEP_LOGIN:
    case STEP_BAD_LOGIN:
        url = e->url_sessions;
        hdr = e->json_hdr;
        post = true;
        break;
    case STEP_CHECK:
        url = e->url_auth;
        hdr = vu->auth;
        break;
    case STEP_WHOAMI:
        url = e->url_session;
        hdr = vu->auth;
        break;
    case STEP_LIST:
        url = e->url_sessions;
        hdr = vu->auth;
        break;
    case STEP_LOGOUT:
        url = e->url_session;
        hdr = vu->auth;
        custom = "DELETE";
        break;
    case STEP_NONE:
        return GH_EINVAL;
    }
    rc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    if (rc == CURLE_OK && post) {
        rc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, vu->post);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)vu->post_len);
    } else if (rc == CURLE_OK) {
        rc = curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, custom);
    if (rc != CURLE_OK)
        return GH_EINVAL;
    /* A POST body differs per user, so those steps are set up again every time. */
    vu->configured = post ? STEP_NONE : vu->step;
    return 0;
}

static void credentials(engine_t *e, vu_t *vu, const char *user_kind, uint32_t idx,
                        const char *password)
{
    int n = snprintf(vu->post, sizeof vu->post, "{\"username\":\"%s%s%u\",\"password\":\"%s\"}",
                     e->o->user_prefix, user_kind, idx, password);
    assert(n > 0 && (size_t)n < sizeof vu->post);
    vu->post_len = (size_t)n;
}

/* Sends vu->step now. intended is the time the request is charged from. */
static void send_step(engine_t *e, vu_t *vu, int64_t intended)
{
    assert(!vu->in_flight && vu->step != STEP_NONE);
    switch (vu->step) {
    case STEP_REGISTER:
    case STEP_LOGIN:
        credentials(e, vu, "", vu->user, PASSWORD);
        break;
    case STEP_BAD_LOGIN:
        /* Accounts outside the pool, so a flood never locks out the users churn relies on. */
        credentials(e, vu, "flood-", vu->user, WRONG_PASSWORD);
        break;
    default:
        break;
    }
    vu->body_len = 0;
    vu->body[0] = '\0';
    if (configure(e, vu) != 0 || curl_multi_add_handle(e->multi, vu->easy) != CURLM_OK) {
        fail(e, GH_ENOMEM, "gatehouse load: cannot start a request (libcurl refused)");
        return;
    }
    vu->in_flight = true;
    vu->sent_ns = now_ns();
    vu->intended_ns = intended;
    e->inflight++;
}

/* ---- scenarios: what a VU does next ---- */

static uint32_t next_user(engine_t *e, vu_t *vu)
{
    /* VU i walks users i, i + C, i + 2C, ... so concurrent VUs rarely share a user. */
    return (vu->user + e->nvu) % e->o->users;
}

/* Forgets the session token (wiped, also in libcurl's copy of the header line). */
static void drop_token(vu_t *vu)
{
    for (struct curl_slist *l = vu->auth; l; l = l->next)
        sodium_memzero(l->data, strlen(l->data));
    curl_slist_free_all(vu->auth);
    vu->auth = NULL;
    sodium_memzero(vu->token, sizeof vu->token);
    vu->has_token = false;
    vu->configured = STEP_NONE;
}

/* Takes the token out of a login answer. */
static bool take_token(vu_t *vu)
{
    const char *p = strstr(vu->body, "\"token\":\"");
    if (!p)
        return false;
    p += 9;
    const char *q = strchr(p, '"');
    if (!q || q - p < 4 || (size_t)(q - p) >= sizeof vu->token - 1 || strncmp(p, "gh_", 3) != 0)
        return false;
    drop_token(vu);
    char line[sizeof vu->token + 32];
    snprintf(line, sizeof line, "Authorization: Bearer %.*s", (int)(q - p), p);
    vu->auth = curl_slist_append(NULL, line);
    sodium_memzero(line, sizeof line);
    if (!vu->auth)
        return false;
    memcpy(vu->token, p, (size_t)(q - p));
    vu->token[q - p] = '\0';
    vu->has_token = true;
    vu->configured = STEP_NONE;
    return true;
}

static step_t mixed_pick(vu_t *vu)
{
    /* Weights out of 100: token checks dominate, as they do in production; a logout (and the
     * login after it) every ~7 requests gives the session churn the leak verdict normalises by. */
    uint32_t r = rnd(vu, 100);
    if (r < 55)
        return STEP_CHECK;
    if (r < 70)
        return STEP_WHOAMI;
    if (r < 80)
        return STEP_LIST;
    if (r < 85)
        return STEP_BAD_LOGIN;
    return STEP_LOGOUT;
}

static step_t first_step(engine_t *e, vu_t *vu)
{
    switch (e->o->scenario) {
    case GH_LOAD_VALIDATE:
        return vu->has_token ? STEP_CHECK : STEP_LOGIN;
    case GH_LOAD_LOGIN_FLOOD:
        return STEP_BAD_LOGIN;
    default:
        return STEP_LOGIN;
    }
}

/* The step after an answer: status is the HTTP status, 0 after a transport failure. */
static step_t next_step(engine_t *e, vu_t *vu, long status)
{
    const gh_load_opts_t *o = e->o;
    switch (o->scenario) {
    case GH_LOAD_CHURN:
    case GH_LOAD_SOAK:
        switch (vu->step) {
        case STEP_LOGIN:
            if (status == 201 && take_token(vu)) {
                vu->checks_left = o->checks;
                if (vu->first_cycle) {
                    /* VUs start in step with each other; in an open loop they would stay so and
                     * log out all at once, every cycle (live sessions would saw-tooth to 0). A
                     * first cycle shortened by id % (k + 1) spreads them over the cycle. */
                    vu->checks_left -= vu->id % (o->checks + 1);
                    vu->first_cycle = false;
                }
                return vu->checks_left ? STEP_CHECK : STEP_LOGOUT;
            }
            vu->user = next_user(e, vu);
            return STEP_LOGIN;
        case STEP_CHECK:
            if (status == 200) {
                return --vu->checks_left ? STEP_CHECK : STEP_LOGOUT;
            }
            break;
        case STEP_LOGOUT:
            if (status == 204)
                e->res->cycles++;
            break;
        default:
            break;
        }
        drop_token(vu);
        vu->user = next_user(e, vu);
        return STEP_LOGIN;

    case GH_LOAD_VALIDATE:
        if (vu->step == STEP_LOGIN)
            return status == 201 && take_token(vu) ? STEP_CHECK : STEP_LOGIN;
        if (status == 401) {
            drop_token(vu);
            return STEP_LOGIN;
        }
        return STEP_CHECK;

    case GH_LOAD_MIXED:
        switch (vu->step) {
        case STEP_LOGIN:
            if (status == 201 && take_token(vu))
                return mixed_pick(vu);
            vu->user = next_user(e, vu);
            return STEP_LOGIN;
        case STEP_LOGOUT:
            if (status == 204)
                e->res->cycles++;
            drop_token(vu);
            vu->user = next_user(e, vu);
            return STEP_LOGIN;
        case STEP_BAD_LOGIN:
            return vu->has_token ? mixed_pick(vu) : STEP_LOGIN;
        default:
            if (status == 401) {
                drop_token(vu);
                return STEP_LOGIN;
            }
            return mixed_pick(vu);
        }

    case GH_LOAD_LOGIN_FLOOD:
        vu->user = next_user(e, vu);
        return STEP_BAD_LOGIN;

    case GH_LOAD__SCENARIOS:
        break;
    }
    return STEP_LOGIN;
}

/* Whether `status` is the answer step expects. Wrong-password logins expect 401 and the designed
 * answers to a flood (429 rate_limited, 503 overloaded). */
static bool expected(step_t step, long status)
{
    switch (step) {
    case STEP_LOGIN:
        return status == 201;
    case STEP_CHECK:
    case STEP_WHOAMI:
    case STEP_LIST:
        return status == 200;
    case STEP_LOGOUT:
        return status == 204;
    case STEP_BAD_LOGIN:
        return status == 401 || status == 429 || status == 503;
    case STEP_REGISTER:
        return status == 201 || status == 409;
    case STEP_NONE:
        break;
    }
    return false;
}

/* ---- the load phase ---- */

static void record(engine_t *e, vu_t *vu, CURLcode cc, long status, int64_t done, bool *errored)
{
    gh_load_result_t *res = e->res;
    int64_t since = e->open_loop ? vu->intended_ns : vu->sent_ns;
    int64_t latency = done - since;
    res->requests++;
    e->tick_requests++;
    gh_load_hist_record(&res->latency, latency);
    gh_load_hist_record(e->tick_hist, latency);
    *errored = false;
    if (cc != CURLE_OK) {
        size_t idx = (size_t)cc < sizeof res->transport / sizeof res->transport[0]
                         ? (size_t)cc
                         : sizeof res->transport / sizeof res->transport[0] - 1;
        res->transport[idx]++;
        e->tick_transport++;
        *errored = true;
    } else {
        size_t idx = status > 0 && status < GH_LOAD_STATUS_MAX ? (size_t)status : 0;
        res->status[idx]++;
        e->tick_answers++;
        if (!expected(vu->step, status)) {
            res->status_error[idx]++;
            *errored = true;
        }
    }
    if (*errored) {
        res->errors++;
        e->tick_errors++;
    }
}

/* Puts vu on its way to step `next` after an answer at `done`. */
static void schedule(engine_t *e, vu_t *vu, step_t next, bool errored, int64_t done)
{
    vu->step = next;
    if (e->phase != PHASE_RUN || done >= e->end_ns)
        return; /* idle until the end */
    if (!e->open_loop) {
        if (errored)
            heap_push(e, vu, done + ERROR_BACKOFF_NS);
        else
            send_step(e, vu, done);
        return;
    }
    int64_t intended = vu->intended_ns + e->interval_ns;
    if (intended <= done) {
        /* Behind schedule: send at once, charged from when it should have gone out. */
        vu->wake_ns = intended;
        send_step(e, vu, intended);
    } else {
        vu->intended_ns = intended;
        heap_push(e, vu, intended);
    }
}

static void start_run(engine_t *e)
{
    e->phase = PHASE_RUN;
    e->t0 = now_ns();
    e->end_ns = e->t0 + e->o->duration_ms * NS_PER_MS;
    e->next_tick = e->t0;
    e->last_tick_ns = e->t0;
    for (uint32_t i = 0; i < e->nvu; i++) {
        vu_t *vu = &e->vus[i];
        vu->measured = true;
        vu->first_cycle = true;
        vu->step = first_step(e, vu);
        if (e->open_loop) {
            /* Stagger the VUs' schedules evenly over one interval. */
            int64_t at = e->t0 + e->interval_ns * (int64_t)i / (int64_t)e->nvu;
            vu->intended_ns = at;
            heap_push(e, vu, at);
        } else {
            send_step(e, vu, e->t0);
        }
    }
}

/* ---- setup: the user pool, then the validate sessions ---- */

static void setup_next(engine_t *e, vu_t *vu, int64_t now);

static void setup_answer(engine_t *e, vu_t *vu, CURLcode cc, long status, int64_t now)
{
    char code[64] = "";
    const char *c = strstr(vu->body, "\"code\":\"");
    if (c)
        sscanf(c + 8, "%63[^\"]", code);
    const char *what = vu->step == STEP_REGISTER ? "registering the load users" : "logging in";
    if (cc != CURLE_OK) {
        fail(e, GH_EIO, "gatehouse load: %s: lost the target: %s", what, curl_easy_strerror(cc));
        return;
    }
    if (status == 503) { /* overloaded: the password pool is busy; try again a little later */
        heap_push(e, vu, now + SETUP_RETRY_NS);
        return;
    }
    if (vu->step == STEP_REGISTER) {
        if (status == 201 || status == 409) {
            setup_next(e, vu, now);
            return;
        }
        if (status == 429)
            fail(e, GH_ELIMIT,
                 "gatehouse load: registering the load users: the target answered 429 "
                 "rate_limited; start it with --throttle-ip 0 or pass --admin-token");
        else if (status == 403 && !e->o->admin_token[0])
            fail(e, GH_EAUTH,
                 "gatehouse load: registering the load users: the target answered 403 %s; "
                 "pass --admin-token",
                 code);
        else if (status == 401 || status == 403)
            fail(e, GH_EAUTH,
                 "gatehouse load: registering the load users: the admin token was refused (%ld %s)",
                 status, code);
        else
            fail(e, GH_ESTORE, "gatehouse load: registering the load users: unexpected %ld %s",
                 status, code);
        return;
    }
    assert(vu->step == STEP_LOGIN);
    if (status == 201 && take_token(vu)) {
        setup_next(e, vu, now);
        return;
    }
    if (status == 401)
        fail(e, GH_EAUTH,
             "gatehouse load: logging in as %s%u: 401 %s: that user exists with another password; "
             "choose another --user-prefix",
             e->o->user_prefix, vu->user, code);
    else
        fail(e, GH_ESTORE, "gatehouse load: logging in the load users: unexpected %ld %s", status,
             code);
}

/* Starts the next setup job after `vu` finished one: vu registers the next pool user, or the
 * next VU without a session logs in (with its own handle, since the token is its own). */
static void setup_next(engine_t *e, vu_t *vu, int64_t now)
{
    if (e->failure)
        return;
    if (e->phase == PHASE_REGISTER && e->next_register < e->o->users) {
        vu->step = STEP_REGISTER;
        vu->user = e->next_register++;
        send_step(e, vu, now);
        return;
    }
    if (e->phase == PHASE_SETUP_LOGIN && e->o->scenario == GH_LOAD_VALIDATE &&
        e->next_login < e->nvu) {
        vu_t *w = &e->vus[e->next_login++];
        w->step = STEP_LOGIN;
        send_step(e, w, now);
    }
}

static bool needs_pool(const gh_load_opts_t *o)
{
    return o->scenario != GH_LOAD_LOGIN_FLOOD;
}

/* Moves setup on when the current stage is done; starts the run at the end of it. */
static void setup_advance(engine_t *e)
{
    if (e->failure || e->inflight > 0 || e->heap_len > 0)
        return;
    if (e->phase == PHASE_REGISTER) {
        e->phase = PHASE_SETUP_LOGIN;
        if (e->o->scenario == GH_LOAD_VALIDATE) {
            uint32_t n = e->nvu < SETUP_CONCURRENCY ? e->nvu : SETUP_CONCURRENCY;
            for (uint32_t i = 0; i < n; i++)
                setup_next(e, NULL, now_ns());
            /* Each login that finishes starts the next VU's (setup_answer). */
            return;
        }
    }
    assert(e->phase == PHASE_SETUP_LOGIN);
    start_run(e);
}

/* ---- scraping /metrics ---- */

static void scrape_start(engine_t *e)
{
    if (e->scrape_busy)
        return;
    e->scrape_len = 0;
    e->scrape_overflow = false;
    if (curl_multi_add_handle(e->multi, e->scrape) != CURLM_OK) {
        e->res->scrapes_failed++;
        return;
    }
    e->scrape_busy = true;
}

static void scrape_done(engine_t *e, CURLcode cc, int64_t done)
{
    long status = 0;
    gh_load_result_t *res = e->res;
    e->scrape_busy = false;
    if (cc == CURLE_OK)
        curl_easy_getinfo(e->scrape, CURLINFO_RESPONSE_CODE, &status);
    gh_load_sample_t s;
    if (status != 200 || gh_load_parse_metrics(e->scrape_buf, e->scrape_len, &s) != 0 ||
        res->nsamples >= res->samples_cap) {
        res->scrapes_failed++;
        return;
    }
    s.t_s = (double)(done - e->t0) / NS_PER_S;
    s.cycles = (double)res->cycles;
    res->samples[res->nsamples++] = s;
    e->last_rss = s.rss;
    e->last_sessions = s.sessions;
}

/* ---- ticks ---- */

static void flush_tick(engine_t *e, int64_t now)
{
    gh_load_result_t *res = e->res;
    if (now <= e->last_tick_ns || res->nticks >= res->ticks_cap)
        return;
    gh_load_tick_t *t = &res->ticks[res->nticks++];
    t->t_s = (double)(now - e->t0) / NS_PER_S;
    t->requests = e->tick_requests;
    t->errors = e->tick_errors;
    t->p50_ms = (double)gh_load_hist_percentile(e->tick_hist, 50) / 1e6;
    t->p99_ms = (double)gh_load_hist_percentile(e->tick_hist, 99) / 1e6;
    t->max_ms = (double)e->tick_hist->max_ns / 1e6;
    if (e->tick_transport > 0 && e->tick_answers == 0)
        e->lost_ticks++;
    else if (e->tick_answers > 0)
        e->lost_ticks = 0;
    e->tick_requests = e->tick_errors = e->tick_answers = e->tick_transport = 0;
    gh_load_hist_reset(e->tick_hist);
    e->last_tick_ns = now;
}

static void progress(engine_t *e, int64_t now)
{
    if (!e->o->progress)
        return;
    const gh_load_result_t *res = e->res;
    double el = (double)(now - e->t0) / NS_PER_S;
    double rate = res->nticks ? (double)res->ticks[res->nticks - 1].requests : 0;
    char rss[32];
    gh_load_format_bytes(e->last_rss, rss, sizeof rss);
    fprintf(stderr, "\r%s %4.0f/%.0f s  %8.0f req/s  %llu errors  rss %s  sessions %.0f\033[K",
            gh_load_scenario_name(e->o->scenario), el, (double)e->o->duration_ms / 1000, rate,
            (unsigned long long)res->errors, rss,
            isfinite(e->last_sessions) ? e->last_sessions : 0);
    fflush(stderr);
}

static void on_tick(engine_t *e, int64_t now)
{
    if (e->next_tick > e->t0) /* the tick at t0 only takes the first sample */
        flush_tick(e, now);
    scrape_start(e);
    progress(e, now);
    /* After a stall longer than a second, skip the missed ticks: one long tick (its rate is
     * divided by its real length) instead of a burst of empty ones. */
    do
        e->next_tick += NS_PER_S;
    while (e->next_tick <= now);
}

/* ---- the loop ---- */

static void on_done(engine_t *e, CURL *easy, CURLcode cc)
{
    int64_t done = now_ns();
    if (easy == e->scrape) {
        curl_multi_remove_handle(e->multi, easy);
        scrape_done(e, cc, done);
        return;
    }
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    vu_t *vu = (vu_t *)priv;
    assert(vu && vu->easy == easy && vu->in_flight);
    curl_multi_remove_handle(e->multi, easy);
    vu->in_flight = false;
    e->inflight--;
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (e->phase == PHASE_REGISTER || e->phase == PHASE_SETUP_LOGIN) {
        setup_answer(e, vu, cc, status, done);
        return;
    }
    bool errored = false;
    if (vu->measured)
        record(e, vu, cc, status, done, &errored);
    step_t next = next_step(e, vu, cc == CURLE_OK ? status : 0);
    schedule(e, vu, next, errored, done);
}

static void begin_drain(engine_t *e, int64_t now)
{
    e->phase = PHASE_DRAIN;
    e->drain_started = now;
    e->drain_deadline = now + GH_LOAD_DRAIN_MS * NS_PER_MS;
    e->heap_len = 0;
    for (uint32_t i = 0; i < e->nvu; i++)
        e->vus[i].heap_pos = SIZE_MAX;
    flush_tick(e, now);
    /* One last sample at the end of the load (unless one is still on its way). */
    scrape_start(e);
}

static int loop(engine_t *e)
{
    while (!e->failure) {
        int64_t now = now_ns();
        bool setup = e->phase == PHASE_REGISTER || e->phase == PHASE_SETUP_LOGIN;
        if (setup && now >= e->setup_deadline) {
            fail(e, GH_EIO,
                 "gatehouse load: setup (registering %u users) did not finish within %d s",
                 e->o->users, GH_LOAD_SETUP_MAX_MS / 1000);
            break;
        }
        if (setup && e->stop && *e->stop) {
            fail(e, GH_EIO, "gatehouse load: interrupted during setup");
            break;
        }
        if (e->phase == PHASE_RUN && (now >= e->end_ns || (e->stop && *e->stop))) {
            e->res->interrupted = now < e->end_ns;
            begin_drain(e, now);
        }
        if (e->phase == PHASE_DRAIN &&
            ((e->inflight == 0 && !e->scrape_busy) || now >= e->drain_deadline))
            break;
        while (e->heap_len > 0 && e->heap[0]->wake_ns <= now) {
            vu_t *vu = heap_pop(e);
            send_step(e, vu, e->open_loop && e->phase == PHASE_RUN ? vu->wake_ns : now);
        }
        if (e->phase == PHASE_RUN && now >= e->next_tick)
            on_tick(e, now);

        int running = 0;
        if (curl_multi_perform(e->multi, &running) != CURLM_OK) {
            fail(e, GH_EIO, "gatehouse load: libcurl multi failed");
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(e->multi, &left)))
            if (msg->msg == CURLMSG_DONE)
                on_done(e, msg->easy_handle, msg->data.result);
        if (setup)
            setup_advance(e);

        /* Sleep until the next thing to do: a socket, a wake-up, a tick, the end. */
        now = now_ns();
        int64_t wake = now + 100 * NS_PER_MS;
        if (e->heap_len > 0 && e->heap[0]->wake_ns < wake)
            wake = e->heap[0]->wake_ns;
        if (e->phase == PHASE_RUN && e->next_tick < wake)
            wake = e->next_tick;
        if (e->phase == PHASE_RUN && e->end_ns < wake)
            wake = e->end_ns;
        int timeout_ms = wake > now ? (int)((wake - now + NS_PER_MS - 1) / NS_PER_MS) : 0;
        if (timeout_ms > 0 && curl_multi_poll(e->multi, NULL, 0, timeout_ms, NULL) != CURLM_OK) {
            fail(e, GH_EIO, "gatehouse load: libcurl multi poll failed");
            break;
        }
    }
    return e->failure;
}

/* ---- preflight ---- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

/* True when ip is a loopback address (127.0.0.0/8 or ::1). */
static bool loopback_ip(const char *ip)
{
    return ip && (strncmp(ip, "127.", 4) == 0 || strcmp(ip, "::1") == 0);
}

/* One blocking GET for the preflight. Returns the status (0 on a transport failure, with the
 * reason in why). Refuses to talk to anything that did not connect over loopback. */
static long preflight_get(engine_t *e, const char *url, char *why, size_t whylen)
{
    CURL *c = curl_easy_init();
    long status = 0;
    if (!c) {
        snprintf(why, whylen, "out of memory");
        return 0;
    }
    e->scrape_len = 0;
    e->scrape_overflow = false;
    bool metrics = strcmp(url, e->o->metrics_url) == 0;
    CURLcode cc = common_opts(c, PREFLIGHT_TIMEOUT_MS) ? CURLE_FAILED_INIT : CURLE_OK;
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, metrics ? scrape_body : discard);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, e);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(c);
    if (cc == CURLE_OK) {
        char *ip = NULL;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(c, CURLINFO_PRIMARY_IP, &ip);
        if (!loopback_ip(ip)) {
            snprintf(why, whylen, "connected to %s, which is not a loopback address",
                     ip ? ip : "?");
            status = -1;
        }
    } else {
        snprintf(why, whylen, "%s", curl_easy_strerror(cc));
    }
    curl_easy_cleanup(c);
    return status;
}

static int preflight(engine_t *e)
{
    char url[GH_LOAD_URL_MAX + 32], why[256] = "";
    snprintf(url, sizeof url, "%s/healthz", e->o->url);
    long st = preflight_get(e, url, why, sizeof why);
    if (st <= 0) {
        fail(e, GH_EIO, "gatehouse load: cannot reach %s: %s", e->o->url, why);
        return e->failure;
    }
    if (st != 200) {
        fail(e, GH_EIO, "gatehouse load: %s answered %ld: is this a Gatehouse node?", url, st);
        return e->failure;
    }
    st = preflight_get(e, e->o->metrics_url, why, sizeof why);
    gh_load_sample_t s;
    if (st <= 0)
        fail(e, GH_EIO, "gatehouse load: cannot read %s: %s", e->o->metrics_url, why);
    else if (st != 200)
        fail(e, GH_EIO, "gatehouse load: %s answered %ld; pass --metrics-url", e->o->metrics_url,
             st);
    else if (gh_load_parse_metrics(e->scrape_buf, e->scrape_len, &s) != 0)
        fail(e, GH_EIO, "gatehouse load: %s has no process_resident_memory_bytes",
             e->o->metrics_url);
    else {
        e->last_rss = s.rss;
        e->last_sessions = s.sessions;
    }
    return e->failure;
}

/* ---- set-up and tear-down of the engine ---- */

static void engine_free(engine_t *e)
{
    for (uint32_t i = 0; e->vus && i < e->nvu; i++) {
        vu_t *vu = &e->vus[i];
        if (vu->easy) {
            if (vu->in_flight)
                curl_multi_remove_handle(e->multi, vu->easy);
            curl_easy_cleanup(vu->easy);
        }
        drop_token(vu);
    }
    if (e->scrape) {
        if (e->scrape_busy)
            curl_multi_remove_handle(e->multi, e->scrape);
        curl_easy_cleanup(e->scrape);
    }
    if (e->multi)
        curl_multi_cleanup(e->multi);
    curl_slist_free_all(e->json_hdr);
    curl_slist_free_all(e->admin_hdr);
    gh_mem_free(GH_MEM_OTHER, e->vus);
    gh_mem_free(GH_MEM_OTHER, e->heap);
    gh_mem_free(GH_MEM_OTHER, e->tick_hist);
    gh_mem_free(GH_MEM_OTHER, e->scrape_buf);
}

static int engine_init(engine_t *e)
{
    const gh_load_opts_t *o = e->o;
    e->nvu = o->concurrency;
    e->open_loop = o->rate > 0;
    if (e->open_loop)
        e->interval_ns = (int64_t)((double)e->nvu * NS_PER_S / o->rate);
    if (e->open_loop && e->interval_ns < 1)
        e->interval_ns = 1;
    snprintf(e->url_users, sizeof e->url_users, "%s%s", o->url,
             o->admin_token[0] ? "/v1/admin/users" : "/v1/users");
    snprintf(e->url_sessions, sizeof e->url_sessions, "%s/v1/sessions", o->url);
    snprintf(e->url_session, sizeof e->url_session, "%s/v1/session", o->url);
    snprintf(e->url_auth, sizeof e->url_auth, "%s/v1/auth", o->url);

    e->vus = gh_mem_calloc(GH_MEM_OTHER, e->nvu, sizeof *e->vus);
    e->heap = gh_mem_calloc(GH_MEM_OTHER, e->nvu, sizeof *e->heap);
    e->tick_hist = gh_mem_calloc(GH_MEM_OTHER, 1, sizeof *e->tick_hist);
    e->scrape_buf = gh_mem_alloc(GH_MEM_OTHER, SCRAPE_MAX);
    e->multi = curl_multi_init();
    e->json_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    if (!e->vus || !e->heap || !e->tick_hist || !e->scrape_buf || !e->multi || !e->json_hdr)
        return GH_ENOMEM;
    if (o->admin_token[0]) {
        char line[GH_LOAD_TOKEN_MAX + 32];
        snprintf(line, sizeof line, "Authorization: Bearer %s", o->admin_token);
        e->admin_hdr = curl_slist_append(NULL, "Content-Type: application/json");
        struct curl_slist *more = e->admin_hdr ? curl_slist_append(e->admin_hdr, line) : NULL;
        sodium_memzero(line, sizeof line);
        if (!more)
            return GH_ENOMEM;
        e->admin_hdr = more;
    }
    /* Keep one connection per VU (and the scraper's) alive between requests. */
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)e->nvu + 1);
    for (uint32_t i = 0; i < e->nvu; i++) {
        vu_t *vu = &e->vus[i];
        vu->e = e;
        vu->id = i;
        vu->user = i % o->users;
        vu->heap_pos = SIZE_MAX;
        vu->rng = 0x9E3779B97F4A7C15ULL * (i + 1);
        vu->easy = curl_easy_init();
        if (!vu->easy || common_opts(vu->easy, (long)o->timeout_ms) != 0 ||
            curl_easy_setopt(vu->easy, CURLOPT_PRIVATE, vu) != CURLE_OK ||
            curl_easy_setopt(vu->easy, CURLOPT_WRITEFUNCTION, vu_body) != CURLE_OK ||
            curl_easy_setopt(vu->easy, CURLOPT_WRITEDATA, vu) != CURLE_OK)
            return GH_ENOMEM;
    }
    e->scrape = curl_easy_init();
    if (!e->scrape || common_opts(e->scrape, SCRAPE_TIMEOUT_MS) != 0 ||
        curl_easy_setopt(e->scrape, CURLOPT_URL, o->metrics_url) != CURLE_OK ||
        curl_easy_setopt(e->scrape, CURLOPT_WRITEFUNCTION, scrape_body) != CURLE_OK ||
        curl_easy_setopt(e->scrape, CURLOPT_WRITEDATA, e) != CURLE_OK)
        return GH_ENOMEM;
    return 0;
}

int gh_load_run(const gh_load_opts_t *o, gh_load_result_t *res, volatile sig_atomic_t *stop,
                char *err, size_t errlen)
{
    assert(o->concurrency >= 1 && o->users >= 1 && o->duration_ms > 0);
    engine_t e = {.o = o, .res = res, .stop = stop, .err = err, .errlen = errlen};
    err[0] = '\0';
    int rc = engine_init(&e);
    if (rc != 0) {
        fail(&e, rc, "gatehouse load: %s", gh_strerror(rc));
        goto out;
    }
    if (preflight(&e) != 0)
        goto out;
    e.setup_deadline = now_ns() + GH_LOAD_SETUP_MAX_MS * NS_PER_MS;
    e.phase = needs_pool(o) ? PHASE_REGISTER : PHASE_SETUP_LOGIN;
    if (e.phase == PHASE_REGISTER) {
        uint32_t n = e.nvu < SETUP_CONCURRENCY ? e.nvu : SETUP_CONCURRENCY;
        for (uint32_t i = 0; i < n; i++)
            setup_next(&e, &e.vus[i], now_ns());
    }
    setup_advance(&e);
    if (loop(&e) != 0)
        goto out;
    int64_t end = now_ns();
    /* What completed during the drain belongs to the last second (a tick of a few ms would
     * show as a spike of throughput). */
    if (res->nticks > 0) {
        res->ticks[res->nticks - 1].requests += e.tick_requests;
        res->ticks[res->nticks - 1].errors += e.tick_errors;
    } else {
        flush_tick(&e, end);
    }
    for (uint32_t i = 0; i < e.nvu; i++)
        res->abandoned += e.vus[i].in_flight;
    res->elapsed_s = (double)(end - e.t0) / NS_PER_S;
    res->target_lost = e.lost_ticks >= LOST_AFTER_TICKS;
    if (e.o->progress)
        fprintf(stderr, "\r\033[K");
out:
    engine_free(&e);
    return e.failure;
}
