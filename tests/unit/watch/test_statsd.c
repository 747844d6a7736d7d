/* test_statsd.c — the exact DogStatsD datagrams, received on a real UDP socket on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "watch/statsd.h"

typedef struct {
    int fd;
    char addr[64]; /* "127.0.0.1:port" */
} agent_t;

/* A stand-in for the Datadog agent: a UDP socket bound to a free port on loopback. */
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

/* Receives one datagram (waiting up to 10 s: loopback delivers at once, the bound only keeps a
 * broken build from hanging) and compares it with want. */
static void expect(agent_t *a, const char *want)
{
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    char buf[GH_STATSD_MAX_DATAGRAM + 16];
    ssize_t n = recv(a->fd, buf, sizeof buf - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void nothing_pending(agent_t *a)
{
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 0), 0);
}

static void gauges_carry_value_and_tags(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(a.addr, "service:gatehouse", &s), 0);

    assert_int_equal(gh_statsd_gauge(s, "gatehouse.memory.rss_bytes", 1073741824.0, NULL), 0);
    expect(&a, "gatehouse.memory.rss_bytes:1073741824|g|#service:gatehouse");
    assert_int_equal(gh_statsd_gauge(s, "gatehouse.requests.rate", 410.5, ""), 0);
    expect(&a, "gatehouse.requests.rate:410.5|g|#service:gatehouse");
    assert_int_equal(gh_statsd_gauge(s, "gatehouse.memory.bytes", 0, "component:sessions"), 0);
    expect(&a, "gatehouse.memory.bytes:0|g|#service:gatehouse,component:sessions");
    assert_int_equal(gh_statsd_gauge(s, "gatehouse.x", -0.25, NULL), 0);
    expect(&a, "gatehouse.x:-0.25|g|#service:gatehouse");
    assert_int_equal(gh_statsd_sent(s), 4);
    assert_int_equal(gh_statsd_dropped(s), 0);
    gh_statsd_close(&s);
    assert_null(s);
    close(a.fd);
}

static void events_count_bytes_and_escape_newlines(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(a.addr, "service:gatehouse", &s), 0);

    assert_int_equal(gh_statsd_event(s, "memory_leak_suspected firing",
                                     "unexplained memory +2.9 MiB/s", "error", NULL),
                     0);
    expect(&a, "_e{28,29}:memory_leak_suspected firing|unexplained memory +2.9 MiB/s|t:error"
               "|#service:gatehouse");
    /* A newline travels as "\n" and counts two bytes; UTF-8 counts bytes, not characters. */
    assert_int_equal(gh_statsd_event(s, "résolu", "a\nb", "success", "alert:memory_high"), 0);
    expect(&a, "_e{7,4}:résolu|a\\nb|t:success|#service:gatehouse,alert:memory_high");
    gh_statsd_close(&s);
    close(a.fd);
}

static void service_checks_put_the_message_last(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(a.addr, "service:gatehouse", &s), 0);

    assert_int_equal(gh_statsd_service_check(s, "gatehouse.memory", GH_STATSD_CRITICAL,
                                             "RSS 900 MiB is 88% of the limit", NULL),
                     0);
    expect(&a, "_sc|gatehouse.memory|2|#service:gatehouse|m:RSS 900 MiB is 88% of the limit");
    assert_int_equal(gh_statsd_service_check(s, "gatehouse.memory", GH_STATSD_OK, NULL, NULL), 0);
    expect(&a, "_sc|gatehouse.memory|0|#service:gatehouse");
    /* "m:" inside the message would start a new field: it is escaped, as are newlines. */
    assert_int_equal(
        gh_statsd_service_check(s, "gatehouse.memory", GH_STATSD_WARNING, "count:1\nm:2", NULL), 0);
    expect(&a, "_sc|gatehouse.memory|1|#service:gatehouse|m:count:1\\nm\\:2");
    gh_statsd_close(&s);
    close(a.fd);
}

static void no_base_tags_means_no_tag_field(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(a.addr, NULL, &s), 0);
    assert_int_equal(gh_statsd_gauge(s, "g", 1, NULL), 0);
    expect(&a, "g:1|g");
    assert_int_equal(gh_statsd_gauge(s, "g", 2, "a:b"), 0);
    expect(&a, "g:2|g|#a:b");
    gh_statsd_close(&s);

    /* A host name resolves too. */
    const char *port = strchr(a.addr, ':') + 1;
    char byname[64];
    snprintf(byname, sizeof byname, "localhost:%s", port);
    if (gh_statsd_open(byname, "service:gatehouse", &s) == 0) {
        assert_int_equal(gh_statsd_gauge(s, "h", 3, NULL), 0);
        struct pollfd p = {.fd = a.fd, .events = POLLIN};
        /* localhost may resolve to ::1 first on some machines, which this IPv4 socket does not
         * hear; only check the datagram when it arrives here. */
        if (poll(&p, 1, 1000) == 1)
            expect(&a, "h:3|g|#service:gatehouse");
        gh_statsd_close(&s);
    }
    close(a.fd);
}

static void bad_input_is_refused_and_nothing_is_sent(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open("127.0.0.1", NULL, &s), GH_EINVAL);
    assert_int_equal(gh_statsd_open("127.0.0.1:", NULL, &s), GH_EINVAL);
    assert_int_equal(gh_statsd_open("127.0.0.1:99999", NULL, &s), GH_EINVAL);
    assert_int_equal(gh_statsd_open("127.0.0.1:12x", NULL, &s), GH_EINVAL);
    assert_int_equal(gh_statsd_open("::1:8125", NULL, &s), GH_EINVAL);
    assert_int_equal(gh_statsd_open(a.addr, "bad|tag", &s), GH_EINVAL);
    assert_null(s);

    assert_int_equal(gh_statsd_open(a.addr, "service:gatehouse", &s), 0);
    assert_int_equal(gh_statsd_gauge(s, "x", NAN, NULL), GH_EINVAL);
    assert_int_equal(gh_statsd_gauge(s, "x", INFINITY, NULL), GH_EINVAL);
    assert_int_equal(gh_statsd_gauge(s, "x|y", 1, NULL), GH_EINVAL);
    assert_int_equal(gh_statsd_gauge(s, "x:y", 1, NULL), GH_EINVAL);
    assert_int_equal(gh_statsd_gauge(s, "x", 1, "a|b"), GH_EINVAL);
    assert_int_equal(gh_statsd_service_check(s, "c", 4, NULL, NULL), GH_EINVAL);
    assert_int_equal(gh_statsd_event(s, "", "t", NULL, NULL), GH_EINVAL);

    static char big[GH_STATSD_MAX_DATAGRAM + 10];
    memset(big, 'x', sizeof big - 1);
    assert_int_equal(gh_statsd_event(s, "t", big, "info", NULL), GH_ETOOBIG);
    assert_int_equal(gh_statsd_sent(s), 0);
    nothing_pending(&a);
    gh_statsd_close(&s);
    close(a.fd);
}

static void an_absent_agent_costs_a_drop_not_an_error(void **state)
{
    (void)state;
    agent_t a;
    agent_open(&a);
    char addr[64];
    snprintf(addr, sizeof addr, "%s", a.addr);
    close(a.fd); /* nobody listens on that port now */
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(addr, "service:gatehouse", &s), 0);
    for (int i = 0; i < 5; i++) {
        int rc = gh_statsd_gauge(s, "g", i, NULL);
        assert_true(rc == 0 || rc == GH_EBUSY);
    }
    assert_int_equal(gh_statsd_sent(s) + gh_statsd_dropped(s), 5);
    gh_statsd_close(&s);
}

static void the_client_returns_its_memory(void **state)
{
    (void)state;
    size_t before = gh_mem_bytes(GH_MEM_METRICS);
    agent_t a;
    agent_open(&a);
    gh_statsd_t *s = NULL;
    assert_int_equal(gh_statsd_open(a.addr, "service:gatehouse", &s), 0);
    assert_true(gh_mem_bytes(GH_MEM_METRICS) > before);
    gh_statsd_close(&s);
    gh_statsd_close(&s); /* a second close is a no-op */
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), before);
    close(a.fd);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gauges_carry_value_and_tags),
        cmocka_unit_test(events_count_bytes_and_escape_newlines),
        cmocka_unit_test(service_checks_put_the_message_last),
        cmocka_unit_test(no_base_tags_means_no_tag_field),
        cmocka_unit_test(bad_input_is_refused_and_nothing_is_sent),
        cmocka_unit_test(an_absent_agent_costs_a_drop_not_an_error),
        cmocka_unit_test(the_client_returns_its_memory),
    };
    gh_mem_init();
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
