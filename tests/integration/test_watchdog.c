/*
 * test_watchdog.c — the memory watchdog end to end, through the real binary.
 *
 * A real `gatehouse serve` is made to leak memory nothing accounts for (the test-only preload
 * library leak_preload.so, 2 MiB/s, from the moment the test says: once the node is warm) while
 * the test keeps a steady churn of logins and logouts going. The watchdog (10 s window, 50 ms
 * samples, so the test takes seconds, not minutes) must flag memory_leak_suspected naming the
 * unexplained memory, with a finite ETA; the alert must reach a DogStatsD agent (event and service
 * check on a real UDP socket), a webhook receiver (a real HTTP listener in this test), the log,
 * /metrics, /debug/memory and the /ops page an operator opens with their session. The same churn on
 * a node that does not leak raises nothing anywhere, and /ops says "No alerts".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define ADMIN "watchdog-test-admin-token"
#define PASSWORD "correct horse battery"
#define WAIT_ALERT_MS 60000 /* generous: only bounds a broken build */
#define QUIET_MS 22000      /* two windows and more of a healthy node */
#define WARMUP_MS 12000     /* one window and more: the caches fill */
#define WARMUP_CHURNS 12000 /* ... and as many logins, however slow a busy machine makes them */
#define WARMUP_MAX_MS 90000 /* only bounds a broken build */

/* ---- a DogStatsD agent: a UDP socket on loopback ---- */

typedef struct {
    int fd;
    char addr[64];
} agent_t;

static void agent_open(agent_t *a)
{
    a->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(a->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(a->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(a->fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(a->addr, sizeof a->addr, "127.0.0.1:%u", ntohs(sin.sin_port));
}

/* Reads every datagram waiting; counts the ones that start with prefix and contain needle
 * (NULL: any), copying the first such into first. Returns the count. */
typedef struct {
    int events, checks, gauges, leak_events;
    int worst_check;
    char leak_event[8193];
} datagrams_t;

static void agent_drain(agent_t *a, datagrams_t *d)
{
    char buf[8193];
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    while (poll(&p, 1, 0) == 1) {
        ssize_t n = recv(a->fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
            break;
        buf[n] = '\0';
        if (strncmp(buf, "_e{", 3) == 0) {
            d->events++;
            if (strstr(buf, ":gatehouse memory_leak_suspected warning|") && !d->leak_events++)
                snprintf(d->leak_event, sizeof d->leak_event, "%s", buf);
        } else if (strncmp(buf, "_sc|gatehouse.memory|", 21) == 0) {
            d->checks++;
            int status = buf[21] - '0';
            if (status > d->worst_check)
                d->worst_check = status;
        } else if (strstr(buf, "|g|#service:gatehouse")) {
            d->gauges++;
        }
    }
}

/* ---- a webhook receiver: HTTP/1.1 on loopback, one request per connection ---- */

typedef struct {
    int fd;
    char url[96];
    pthread_t thread;
    pthread_mutex_t lock;
    int posts;
    char first_leak[8192]; /* body of the first memory_leak_suspected post */
} receiver_t;

static void *receiver_main(void *arg)
{
    receiver_t *rv = arg;
    for (;;) {
        int c = accept(rv->fd, NULL, NULL);
        if (c < 0)
            break;
        char buf[16384];
        size_t len = 0;
        char *body = NULL;
        size_t clen = 0;
        while (len < sizeof buf - 1) {
            ssize_t n = recv(c, buf + len, sizeof buf - 1 - len, 0);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            if (end && !body) {
                body = end + 4;
                for (char *l = strstr(buf, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
                    if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
                        clen = strtoul(l + 17, NULL, 10);
            }
            if (body && (size_t)(buf + len - body) >= clen)
                break;
        }
        if (body) {
            pthread_mutex_lock(&rv->lock);
            rv->posts++;
            if (!rv->first_leak[0] && strstr(body, "\"alert\":\"memory_leak_suspected\""))
                snprintf(rv->first_leak, sizeof rv->first_leak, "%s", body);
            pthread_mutex_unlock(&rv->lock);
        }
        static const char ok[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        ssize_t w = send(c, ok, sizeof ok - 1, MSG_NOSIGNAL);
        (void)w;
        close(c);
    }
    return NULL;
}

static void receiver_start(receiver_t *rv)
{
    memset(rv, 0, sizeof *rv);
    pthread_mutex_init(&rv->lock, NULL);
    rv->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(rv->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(rv->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(rv->fd, 16), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(rv->fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(rv->url, sizeof rv->url, "http://127.0.0.1:%u/alerts", ntohs(sin.sin_port));
    assert_int_equal(pthread_create(&rv->thread, NULL, receiver_main, rv), 0);
}

static void receiver_stop(receiver_t *rv)
{
    shutdown(rv->fd, SHUT_RDWR);
    pthread_join(rv->thread, NULL);
    close(rv->fd);
    pthread_mutex_destroy(&rv->lock);
}

/* ---- the server under test ---- */

typedef struct {
    ht_server_t srv;
    agent_t agent;
    receiver_t rv;
    bool listening; /* agent and receiver are up: teardown takes them down */
    char preload[PATH_MAX + 96];
    char leak_dir[PATH_MAX], leak_when[PATH_MAX + 32], leak_env[PATH_MAX + 64];
    char statsd_flag[96], webhook_flag[128];
    ht_response_t r;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    ht_server_cleanup(&f->srv);
    if (f->leak_dir[0])
        ht_rmtree(f->leak_dir);
    if (f->listening) {
        receiver_stop(&f->rv);
        close(f->agent.fd);
    }
    free(f);
    return 0;
}

/* leak_preload.so sits in the build tree next to the test binaries: BIN_DIR/tests/integration. */
static void preload_path(char *out, size_t n)
{
    assert_true(n > PATH_MAX + 40);
    const char *bin = getenv("GATEHOUSE_BIN");
    char tmp[PATH_MAX], abs[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", bin && *bin ? bin : "build/gatehouse");
    if (!realpath(dirname(tmp), abs))
        fail_msg("cannot resolve the build directory of %s", bin ? bin : "build/gatehouse");
    snprintf(out, n, "%s/tests/integration/leak_preload.so", abs);
    if (access(out, R_OK) != 0)
        fail_msg("%s is missing: make test-integration builds it", out);
}

static void start(fixture_t *f, bool leak)
{
    agent_open(&f->agent);
    receiver_start(&f->rv);
    f->listening = true;
    snprintf(f->statsd_flag, sizeof f->statsd_flag, "--statsd=%s", f->agent.addr);
    snprintf(f->webhook_flag, sizeof f->webhook_flag, "--alert-webhook=%s", f->rv.url);
    size_t e = 0;
    if (leak) {
        char path[PATH_MAX + 64];
        preload_path(path, sizeof path);
        snprintf(f->preload, sizeof f->preload, "LD_PRELOAD=%s", path);
        f->srv.env[e++] = f->preload;
        f->srv.env[e++] = "GH_TEST_LEAK_RATE=2097152";
        /* the leak starts when the test says, once the node is warm (leak_begins) */
        assert_int_equal(ht_tempdir(f->leak_dir), 0);
        snprintf(f->leak_when, sizeof f->leak_when, "%s/leak-now", f->leak_dir);
        snprintf(f->leak_env, sizeof f->leak_env, "GH_TEST_LEAK_WHEN=%s", f->leak_when);
        f->srv.env[e++] = f->leak_env;
        /* An ASan build must let a plain library be preloaded before its runtime, and the leak is
         * the point here, not a finding. */
        f->srv.env[e++] = "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0";
    }
    f->srv.env[e] = NULL;
    /* The heap profiler samples every 64 KiB (production: 512 KiB) so that the 5 s of leak
     * the suspicion waits for hold enough samples to name the leaking stack as it fires. */
    if (ht_server_start(&f->srv, "--watch-window", "10s", "--watch-interval", "50ms",
                        "--heap-sample-interval", "64KiB", "--memory-limit", "2GiB",
                        "--admin-token", ADMIN, "--ops-users", "2" /* olga */, f->statsd_flag,
                        f->webhook_flag, NULL) != 0)
        fail_msg("server did not start");
}

/* The server log's size now (a mark for log_has_after). */
static long log_size(const fixture_t *f)
{
    FILE *in = fopen(f->srv.log_path, "r");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fclose(in);
    return n;
}

/* True when a line written after the mark `from` contains needle. */
static bool log_has_after(const fixture_t *f, long from, const char *needle)
{
    FILE *in = fopen(f->srv.log_path, "r");
    assert_non_null(in);
    fseek(in, from, SEEK_SET);
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, in))
        found = strstr(line, needle) != NULL;
    fclose(in);
    return found;
}

/* True when a line of the server log contains needle. The log holds a line per request, so it is
 * read line by line from the file rather than copied whole. */
static bool log_has(const fixture_t *f, const char *needle)
{
    FILE *in = fopen(f->srv.log_path, "r");
    assert_non_null(in);
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof line, in))
        found = strstr(line, needle) != NULL;
    fclose(in);
    return found;
}

/* One round of ordinary traffic: log in, ask who I am, log out. Live sessions stay flat. */
static void churn(fixture_t *f)
{
    char token[64];
    if (ht_login(&f->srv, "alice", PASSWORD, token, NULL) != 201)
        fail_msg("login failed");
    if (ht_get(&f->srv, "/v1/session", token, &f->r) != 200)
        fail_msg("whoami failed");
    if (ht_delete(&f->srv, "/v1/session", token, &f->r) != 204)
        fail_msg("logout failed");
}

/* GET /ops as the operator olga would: a form login's cookie. */
static void ops_page(fixture_t *f)
{
    char token[64], cookie[128];
    if (ht_login(&f->srv, "olga", PASSWORD, token, NULL) != 201)
        fail_msg("olga's login failed");
    snprintf(cookie, sizeof cookie, "Cookie: gatehouse_session=%s", token);
    const char *hdrs[] = {cookie, NULL};
    if (ht_request(&f->srv, "GET", "/ops", hdrs, NULL, 0, &f->r) != 200)
        fail_msg("/ops -> %ld: %.300s", f->r.status, f->r.body);
    ht_response_t *out = calloc(1, sizeof *out); /* f->r keeps the page */
    assert_non_null(out);
    long st = ht_delete(&f->srv, "/v1/session", token, out);
    free(out);
    if (st != 204)
        fail_msg("olga's logout failed");
}

static void page_has(const char *page, const char *needle)
{
    if (!strstr(page, needle))
        fail_msg("/ops lacks \"%s\": %.4000s", needle,
                 strstr(page, "<h2") ? strstr(page, "<h2") : page);
}

/* gatehouse_alert_firing{alert="NAME",severity="SEV"} from /metrics; -1 when absent. */
static double metric(fixture_t *f, const char *series)
{
    if (ht_get(&f->srv, "/metrics", NULL, &f->r) != 200)
        fail_msg("/metrics failed");
    const char *p = f->r.body;
    size_t n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == f->r.body || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL); /* reads "+Inf" too */
        p += n;
    }
    return -1;
}

/* The heap profiler is off under ASan (ASan owns malloc): the stacks are only named in the
 * normal build. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_PROFILED 0
#else
#define HEAP_PROFILED 1
#endif

/* The percentage in "NN% of the growth allocated at WHO"; -1 when the text does not say so. */
static int growth_share(const char *text, const char *who)
{
    char needle[128];
    snprintf(needle, sizeof needle, "%% of the growth allocated at %s", who);
    const char *p = strstr(text, needle);
    if (!p)
        return -1;
    while (p > text && p[-1] >= '0' && p[-1] <= '9')
        p--;
    return atoi(p);
}

/* GET /debug/heap?growth=1: the first line names who with at least 80% of all lines' bytes. */
static void heap_growth_names(fixture_t *f, const char *who)
{
    const char *auth[] = {"Authorization: Bearer " ADMIN, NULL};
    assert_int_equal(ht_request(&f->srv, "GET", "/debug/heap?growth=1", auth, NULL, 0, &f->r), 200);
    double total = 0, first = -1;
    bool first_names = false;
    for (const char *line = f->r.body; line && *line;) {
        const char *end = strchr(line, '\n');
        const char *sp = end ? end : line + strlen(line);
        while (sp > line && sp[-1] != ' ')
            sp--;
        double b = strtod(sp, NULL);
        if (first < 0) {
            first = b;
            char frames[4096];
            snprintf(frames, sizeof frames, "%.*s", (int)(sp - line), line);
            first_names = strstr(frames, who) != NULL;
        }
        total += b;
        line = end ? end + 1 : NULL;
    }
    if (!first_names || !(first >= 0.8 * total))
        fail_msg("/debug/heap?growth=1 does not name %s with 80%% of the growth: %.2000s", who,
                 f->r.body);
}

/* True while any of the watchdog's alerts fires, at either severity. */
static bool any_alert(fixture_t *f)
{
    const char *alerts[] = {"memory_high", "memory_exhaustion_forecast", "memory_leak_suspected"};
    for (size_t i = 0; i < 3; i++)
        for (int sev = 0; sev < 2; sev++) {
            char series[160];
            snprintf(series, sizeof series, "gatehouse_alert_firing{alert=\"%s\",severity=\"%s\"}",
                     alerts[i], sev ? "critical" : "warning");
            if (metric(f, series) != 0)
                return true;
        }
    return false;
}

/* A fresh node fills bounded caches as the churn starts: SQLite's page caches of users.db (each
 * login writes its audit event there) grow to their cap of about 2 MB a connection. With this
 * test's 10 s window that start reads as a trend (production's 10 min window averages it away),
 * so a node is judged once warm: one window of churn and WARMUP_CHURNS logins first (the caches
 * fill by the logins, not by the clock: a busy machine takes longer), and any alert the start
 * raised has ended. */
static void warm_up(fixture_t *f)
{
    long long start = ht_now_ms();
    for (int n = 0; (n < WARMUP_CHURNS || ht_now_ms() < start + WARMUP_MS) &&
                    ht_now_ms() < start + WARMUP_MAX_MS;
         n++)
        churn(f);
    for (long long settle = ht_now_ms() + WARMUP_MS; ht_now_ms() < settle && any_alert(f);)
        for (int i = 0; i < 10; i++)
            churn(f);
}

#define LEAK_FIRING "gatehouse_alert_firing{alert=\"memory_leak_suspected\",severity=\"warning\"}"
#define ETA "gatehouse_memory_exhaustion_eta_seconds"

static void a_leaking_node_is_flagged_everywhere(void **state)
{
    fixture_t *f = *state;
    start(f, true);
    assert_int_equal(ht_register(&f->srv, "alice", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(&f->srv, "olga", PASSWORD, NULL), 201);
    /* The leak begins in a warm node, as the outage's did after hours of serving; what the
     * sinks got during the start is drained, so the first alert they get is the leak's. */
    warm_up(f);
    datagrams_t warm_datagrams = {0};
    agent_drain(&f->agent, &warm_datagrams);
    pthread_mutex_lock(&f->rv.lock);
    f->rv.first_leak[0] = '\0';
    pthread_mutex_unlock(&f->rv.lock);
    FILE *go = fopen(f->leak_when, "w");
    assert_non_null(go);
    fclose(go);

    long long deadline = ht_now_ms() + WAIT_ALERT_MS;
    bool firing = false;
    while (!firing && ht_now_ms() < deadline) {
        for (int i = 0; i < 10; i++)
            churn(f);
        firing = metric(f, LEAK_FIRING) == 1;
    }
    if (!firing) {
        ht_get(&f->srv, "/debug/memory", ADMIN, &f->r);
        fail_msg("memory_leak_suspected did not fire; /debug/memory: %.3000s", f->r.body);
    }

    /* /metrics: a finite forecast. */
    double eta = metric(f, ETA);
    assert_true(isfinite(eta) && eta > 0);

    /* /debug/memory names the growing part and carries the alert's summary. */
    const char *auth[] = {"Authorization: Bearer " ADMIN, NULL};
    assert_int_equal(ht_request(&f->srv, "GET", "/debug/memory", auth, NULL, 0, &f->r), 200);
    char growing[64], summary[1024];
    assert_true(ht_jstr(&f->r, "watchdog.growing_component", growing, sizeof growing));
    assert_string_equal(growing, "unexplained");
    assert_true(ht_jstr(&f->r, "watchdog.alerts.2.summary", summary, sizeof summary));
    if (!strstr(summary, "unexplained memory +") || !strstr(summary, "while sessions are flat") ||
        !strstr(summary, "not an attack") || !strstr(summary, "limit 2 GiB in "))
        fail_msg("summary: %s", summary);
    fprintf(stderr, "DBG summary: %s\n", summary);
    /* ... and the function that leaks, with most of the growth (the heap profiler). */
    if (HEAP_PROFILED) {
        if (growth_share(summary, "leak_main (leak_preload.c:") < 80)
            fail_msg("the summary does not name leak_main with 80%% of the growth: %s", summary);
        char where[256];
        assert_true(
            ht_jstr(&f->r, "watchdog.heap_profile.growing_stacks.0.stack", where, sizeof where));
        assert_non_null(strstr(where, "leak_main (leak_preload.c:"));
        /* the exhaustion forecast (the limit is 2 GiB: minutes away) names it too, once it fires
         * (it may trail the leak alert by an evaluation or two) */
        summary[0] = '\0';
        for (long long until = ht_now_ms() + 10000; !summary[0] && ht_now_ms() < until;) {
            assert_int_equal(ht_request(&f->srv, "GET", "/debug/memory", auth, NULL, 0, &f->r),
                             200);
            assert_true(ht_jstr(&f->r, "watchdog.alerts.1.summary", summary, sizeof summary));
            if (!summary[0])
                ht_sleep_ms(100);
        }
        if (growth_share(summary, "leak_main (leak_preload.c:") < 80)
            fail_msg("the forecast does not name leak_main with 80%% of the growth: %s", summary);
        heap_growth_names(f, ";leak_main");
        /* the live profile has it too, and an anonymous caller gets none of it */
        assert_int_equal(ht_request(&f->srv, "GET", "/debug/heap", auth, NULL, 0, &f->r), 200);
        assert_non_null(strstr(f->r.body, ";leak_main "));
        assert_true(ht_get(&f->srv, "/debug/heap", NULL, &f->r) >= 400);
    }

    /* /ops, for an operator: the alert firing with its severity, since when and its summary
     * naming the growing part; the forecast with its ETA, drawn as a line to the limit. */
    ops_page(f);
    char *page = strdup(f->r.body);
    assert_non_null(page);
    page_has(page, "<li class=\"alert warn\"><strong class=\"name\">memory_leak_suspected"
                   "</strong> <span class=\"sev\">warning</span> since <time datetime=\"");
    page_has(page, "<span class=\"summary\">unexplained memory +");
    page_has(page, "while sessions are flat");
    page_has(page, "<strong>Forecast:</strong> RSS grows +");
    page_has(page, "reaches the limit 2 GiB in <strong class=\"eta\">");
    page_has(page, "Fastest growing part: <strong class=\"growing\">unexplained</strong>");
    page_has(page, "<line class=\"forecast\"");
    page_has(page, ">limit in ");
    page_has(page, "<polyline class=\"rss\"");
    if (HEAP_PROFILED) {
        page_has(page, "<strong>Growing call stacks:</strong>");
        page_has(page, "/s <code class=\"stack\">leak_main (leak_preload.c:");
    }
    assert_null(strstr(page, "No alerts"));
    free(page);

    /* The log has the alert line. */
    assert_true(log_has(f, "\"msg\":\"alert\",\"alert\":\"memory_leak_suspected\","
                           "\"state\":\"firing\",\"severity\":\"warning\""));
    if (HEAP_PROFILED)
        assert_true(log_has(f, "of the growth allocated at leak_main (leak_preload.c:"));

    /* The webhook receiver got the alert JSON (delivery runs on its own thread: wait for it). */
    bool posted = false;
    for (long long until = ht_now_ms() + 10000; !posted && ht_now_ms() < until;) {
        pthread_mutex_lock(&f->rv.lock);
        posted = f->rv.first_leak[0] != '\0';
        pthread_mutex_unlock(&f->rv.lock);
        if (!posted)
            ht_sleep_ms(50);
    }
    assert_true(posted);
    json_error_t jerr;
    json_t *j = json_loads(f->rv.first_leak, 0, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "firing");
    assert_string_equal(json_string_value(json_object_get(j, "severity")), "warning");
    assert_string_equal(json_string_value(json_object_get(j, "component")), "unexplained");
    assert_true(json_number_value(json_object_get(j, "slope_bytes_per_second")) > 512 * 1024);
    assert_true(json_is_number(json_object_get(j, "eta_seconds")));
    const char *text = json_string_value(json_object_get(j, "text"));
    assert_non_null(text);
    assert_non_null(strstr(text, "memory_leak_suspected"));
    if (HEAP_PROFILED) {
        assert_true(growth_share(text, "leak_main (leak_preload.c:") >= 80);
        json_t *top = json_array_get(json_object_get(j, "growing_stacks"), 0);
        const char *where = json_string_value(json_object_get(top, "stack"));
        if (!where || strncmp(where, "leak_main (leak_preload.c:", 26) != 0 ||
            !(json_number_value(json_object_get(top, "share")) >= 0.8))
            fail_msg("webhook body: %s", f->rv.first_leak);
    }
    json_decref(j);

    /* The DogStatsD agent got the event, the service check and the gauges. */
    datagrams_t d = {0};
    agent_drain(&f->agent, &d);
    if (d.leak_events != 1)
        fail_msg("leak events: %d (events %d, checks %d, gauges %d)", d.leak_events, d.events,
                 d.checks, d.gauges);
    assert_non_null(strstr(d.leak_event, "|t:warning|#service:gatehouse,alert:memory_leak_"
                                         "suspected,severity:warning"));
    if (HEAP_PROFILED && growth_share(d.leak_event, "leak_main (leak_preload.c:") < 80)
        fail_msg("the DogStatsD event does not name leak_main: %s", d.leak_event);
    assert_true(d.checks >= 1 && d.worst_check >= 1);
    assert_true(warm_datagrams.gauges + d.gauges >= 10);

    assert_int_equal(ht_server_stop(&f->srv), 0);
}

static void the_same_churn_without_a_leak_raises_nothing(void **state)
{
    fixture_t *f = *state;
#if defined(__SANITIZE_ADDRESS__)
    /* Under ASan the allocator itself grows for minutes (quarantine, metadata, stack depot):
     * RSS really rises steadily, and the watchdog is right to say so. A healthy node is only
     * healthy in the normal build, where this test runs. */
    skip();
#endif
    start(f, false);
    assert_int_equal(ht_register(&f->srv, "alice", PASSWORD, NULL), 201);
    assert_int_equal(ht_register(&f->srv, "olga", PASSWORD, NULL), 201);
    warm_up(f);
    long long events_warm = -1;
    {
        const char *auth[] = {"Authorization: Bearer " ADMIN, NULL};
        assert_int_equal(ht_request(&f->srv, "GET", "/debug/memory", auth, NULL, 0, &f->r), 200);
        assert_true(ht_jint(&f->r, "watchdog.sinks.events", &events_warm));
    }
    /* What the sinks got during the start is drained; from here on they must get nothing. */
    datagrams_t warm_datagrams = {0};
    agent_drain(&f->agent, &warm_datagrams);
    pthread_mutex_lock(&f->rv.lock);
    int posts_warm = f->rv.posts;
    pthread_mutex_unlock(&f->rv.lock);
    long log_warm = log_size(f);
    long long until = ht_now_ms() + QUIET_MS;
    while (ht_now_ms() < until) {
        for (int i = 0; i < 10; i++)
            churn(f);
        for (const char *const *a =
                 (const char *const[]){"memory_high", "memory_exhaustion_forecast",
                                       "memory_leak_suspected", NULL};
             *a; a++) {
            for (int sev = 0; sev < 2; sev++) {
                char series[160];
                snprintf(series, sizeof series,
                         "gatehouse_alert_firing{alert=\"%s\",severity=\"%s\"}", *a,
                         sev ? "critical" : "warning");
                if (metric(f, series) != 0) {
                    ht_get(&f->srv, "/debug/memory", ADMIN, &f->r);
                    fail_msg("%s fired on a healthy node; /debug/memory: %.3000s", series,
                             f->r.body);
                }
            }
        }
    }
    const char *auth[] = {"Authorization: Bearer " ADMIN, NULL};
    assert_int_equal(ht_request(&f->srv, "GET", "/debug/memory", auth, NULL, 0, &f->r), 200);
    long long samples = 0, events = -1;
    assert_true(ht_jint(&f->r, "watchdog.samples", &samples));
    assert_int_equal(samples, 201); /* the ring is full: the watchdog did look */
    assert_true(ht_jint(&f->r, "watchdog.sinks.events", &events));
    assert_int_equal(events, events_warm); /* nothing fired or resolved once warm */
    /* The heap profiler is on and sees the node's heap, but no stack grows. */
    char hstate[32];
    assert_true(ht_jstr(&f->r, "watchdog.heap_profile.state", hstate, sizeof hstate));
    assert_string_equal(hstate, "on");
    long long live_samples = 0;
    assert_true(ht_jint(&f->r, "watchdog.heap_profile.samples_live", &live_samples));
    assert_true(live_samples > 0);
    assert_null(strstr(f->r.body, "\"growing_stacks\":[{"));
    assert_int_equal(ht_request(&f->srv, "GET", "/debug/heap?growth=1", auth, NULL, 0, &f->r), 200);
    if (f->r.body[0])
        fail_msg("a stack grows on a healthy node: %.2000s", f->r.body);
    assert_int_equal(ht_request(&f->srv, "GET", "/debug/heap", auth, NULL, 0, &f->r), 200);
    assert_non_null(strstr(f->r.body, "gh_"));
    assert_int_equal(ht_get(&f->srv, "/readyz", NULL, &f->r), 200);
    ops_page(f);
    page_has(f->r.body, "id=\"no-alerts\">No alerts");
    page_has(f->r.body, "<strong>Forecast:</strong> RSS is not growing steadily");
    page_has(f->r.body, "<strong>Growing call stacks:</strong> none: no call stack");
    assert_null(strstr(f->r.body, "class=\"alert "));
    assert_null(strstr(f->r.body, "<line class=\"forecast\""));

    /* Nothing reached the sinks but gauges and the OK service check. */
    datagrams_t d = {0};
    agent_drain(&f->agent, &d);
    assert_int_equal(d.events, 0);
    assert_int_equal(d.worst_check, 0);
    assert_true(d.checks >= 2 && d.gauges >= 10);
    pthread_mutex_lock(&f->rv.lock);
    int posts = f->rv.posts;
    pthread_mutex_unlock(&f->rv.lock);
    assert_int_equal(posts, posts_warm);
    assert_false(log_has_after(f, log_warm, "\"msg\":\"alert\""));

    assert_int_equal(ht_server_stop(&f->srv), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_leaking_node_is_flagged_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(the_same_churn_without_a_leak_raises_nothing, setup,
                                        teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
