/* test_server_limits.c — the HTTP server's body limit and the arithmetic on it: a max_body whose
 * pool size (2 x max_body + GH_HTTP_POOL_EXTRA) would wrap is refused by gh_http_start (it once
 * made a 5 KB body corrupt the heap), and at the largest accepted limit bodies below, at and
 * above the limit are read, read and refused with 413 — through a real socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "http/http.h"
#include "mem/mem.h"

/* POST /echo answers the length of the body it received. */
static void echo_len(gh_req_t *r)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%zu", r->body_len);
    (void)gh_reply(r, 200, "text/plain", buf, (size_t)n);
}

static const gh_route_t routes[] = {{GH_HTTP_POST, "/echo", echo_len, 0}};

static gh_http_options_t options(int fd, size_t max_body)
{
    return (gh_http_options_t){.listen_fd = fd,
                               .threads = 1,
                               .max_connections = 8,
                               .max_connections_per_ip = 8,
                               .connection_timeout_s = 5,
                               .connection_memory = 32 * 1024,
                               .max_body = max_body,
                               .routes = routes,
                               .nroutes = 1};
}

static void a_limit_whose_pool_would_wrap_is_refused(void **state)
{
    (void)state;
    size_t before = gh_mem_total_bytes();
    const size_t bad[] = {SIZE_MAX, SIZE_MAX / 2, GH_HTTP_MAX_BODY + 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gh_http_options_t o = options(-1, bad[i]);
        gh_http_server_t *s = NULL;
        assert_int_equal(gh_http_start(&o, &s), GH_EINVAL);
        assert_null(s);
    }
    assert_int_equal(gh_mem_total_bytes(), before);
}

/* Sends POST /echo with a body of n bytes on a fresh connection; returns the status line's
 * code and copies the response body (after the blank line) into out. */
static int post(uint16_t port, size_t n, char *out, size_t outlen)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    char head[160];
    int hl = snprintf(head, sizeof head,
                      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      n);
    assert_int_equal(write(c, head, (size_t)hl), hl);
    char *body = malloc(n ? n : 1);
    assert_non_null(body);
    memset(body, 'a', n);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(c, body + off, n - off);
        if (w <= 0)
            break; /* a refused body may be cut short by the server; the status still arrives */
        off += (size_t)w;
    }
    free(body);
    char resp[4096];
    size_t got = 0;
    for (ssize_t k; got < sizeof resp - 1 && (k = read(c, resp + got, sizeof resp - 1 - got)) > 0;)
        got += (size_t)k;
    resp[got] = '\0';
    close(c);
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &status), 1);
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(out, outlen, "%s", b ? b + 4 : "");
    return status;
}

static void the_largest_limit_serves_bodies_around_it(void **state)
{
    (void)state;
    int fd = -1;
    uint16_t port = 0;
    assert_int_equal(gh_http_listen("127.0.0.1", 0, &fd, &port), 0);
    const size_t limit = 64 * 1024; /* what --max-body 64KiB gives; the pool holds 2x + extra */
    gh_http_options_t o = options(fd, limit);
    gh_http_server_t *s = NULL;
    assert_int_equal(gh_http_start(&o, &s), 0);
    char body[256];
    assert_int_equal(post(port, 5000, body, sizeof body), 200);
    assert_string_equal(body, "5000");
    assert_int_equal(post(port, limit, body, sizeof body), 200);
    assert_int_equal(atol(body), (long)limit);
    assert_int_equal(post(port, limit + 1, body, sizeof body), 413);
    gh_http_stop(&s, 1000);
    close(fd);

    /* At GH_HTTP_MAX_BODY itself, no sum overflows: a 5 KB body is read whole. */
    assert_int_equal(gh_http_listen("127.0.0.1", 0, &fd, &port), 0);
    o = options(fd, GH_HTTP_MAX_BODY);
    assert_int_equal(gh_http_start(&o, &s), 0);
    assert_int_equal(post(port, 5000, body, sizeof body), 200);
    assert_string_equal(body, "5000");
    gh_http_stop(&s, 1000);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_limit_whose_pool_would_wrap_is_refused),
        cmocka_unit_test(the_largest_limit_serves_bodies_around_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
