/* test_webhook.c — alert bodies reach a real HTTP listener on 127.0.0.1: retried after a 500,
 * given up after a 400, the oldest dropped from a full queue, nothing left allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "mem/mem.h"
#include "watch/webhook.h"

#define MAX_REQS 16
#define WAIT_MS 20000 /* generous: only keeps a broken build from hanging */

typedef struct {
    char method[8], path[64], content_type[64];
    char body[1024];
} request_t;

/* A one-connection-at-a-time HTTP/1.1 server that answers each request with the next status of
 * a script and records what it got. */
typedef struct {
    int fd;
    char url[64];
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int statuses[MAX_REQS]; /* status for request i; 0 = 200 */
    request_t reqs[MAX_REQS];
    int nreqs;
    bool hold_first; /* keep request 0 unanswered until released */
    bool released;
} listener_t;

static bool read_request(int c, request_t *r)
{
    char buf[4096];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        ssize_t n = recv(c, buf + len, sizeof buf - 1 - len, 0);
        if (n <= 0)
            return false;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (!end && len >= sizeof buf - 1)
            return false;
    }
    memset(r, 0, sizeof *r);
    sscanf(buf, "%7s %63s", r->method, r->path);
    size_t clen = 0;
    for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
            clen = strtoul(line + 17, NULL, 10);
        if (strncasecmp(line + 2, "Content-Type:", 13) == 0)
            sscanf(line + 15, " %63[^\r]", r->content_type);
    }
    size_t have = len - (size_t)(end + 4 - buf);
    if (clen >= sizeof r->body)
        return false;
    memcpy(r->body, end + 4, have);
    while (have < clen) {
        ssize_t n = recv(c, r->body + have, clen - have, 0);
        if (n <= 0)
            return false;
        have += (size_t)n;
    }
    r->body[clen] = '\0';
    return true;
}

static void *listener_main(void *arg)
{
    listener_t *l = arg;
    for (;;) {
        int c = accept(l->fd, NULL, NULL);
        if (c < 0)
            break;
        request_t r;
        while (read_request(c, &r)) {
            pthread_mutex_lock(&l->lock);
            int i = l->nreqs;
            if (i < MAX_REQS)
                l->reqs[l->nreqs++] = r;
            pthread_cond_broadcast(&l->changed);
            while (i == 0 && l->hold_first && !l->released)
                pthread_cond_wait(&l->changed, &l->lock);
            int status = i < MAX_REQS && l->statuses[i] ? l->statuses[i] : 200;
            pthread_mutex_unlock(&l->lock);
            char head[160];
            int n = snprintf(head, sizeof head,
                             "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                             status);
            ssize_t w = send(c, head, (size_t)n, MSG_NOSIGNAL);
            (void)w;
            break; /* Connection: close */
        }
        close(c);
    }
    return NULL;
}

static void listener_start(listener_t *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l->fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(l->fd, 16), 0);
    socklen_t len = sizeof sin;
    assert_int_equal(getsockname(l->fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(l->url, sizeof l->url, "http://127.0.0.1:%u/hook", ntohs(sin.sin_port));
}

static void listener_run(listener_t *l)
{
    assert_int_equal(pthread_create(&l->thread, NULL, listener_main, l), 0);
}

static void listener_stop(listener_t *l)
{
    pthread_mutex_lock(&l->lock);
    l->released = true;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    shutdown(l->fd, SHUT_RDWR); /* wakes accept() */
    pthread_join(l->thread, NULL);
    close(l->fd);
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
}

static void wait_requests(listener_t *l, int n)
{
    pthread_mutex_lock(&l->lock);
    for (int i = 0; l->nreqs < n && i < WAIT_MS / 10; i++) {
        pthread_mutex_unlock(&l->lock);
        usleep(10000);
        pthread_mutex_lock(&l->lock);
    }
    int got = l->nreqs;
    pthread_mutex_unlock(&l->lock);
    assert_true(got >= n);
}

static gh_webhook_options_t fast(const char *url)
{
    return (gh_webhook_options_t){
        .url = url, .backoff_ms = 5, .backoff_max_ms = 20, .timeout_ms = 5000};
}

static void a_post_arrives_as_json(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l);
    listener_run(&l);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = fast(l.url);
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    const char *body = "{\"alert\":\"memory_high\",\"text\":\"RSS high\"}";
    assert_int_equal(gh_webhook_post(w, body, strlen(body)), 0);
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);

    gh_webhook_stats_t st;
    gh_webhook_stats(w, &st);
    assert_int_equal(st.posted, 1);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.retries, 0);
    assert_int_equal(st.last_status, 200);
    assert_int_equal(l.nreqs, 1);
    assert_string_equal(l.reqs[0].method, "POST");
    assert_string_equal(l.reqs[0].path, "/hook");
    assert_string_equal(l.reqs[0].content_type, "application/json");
    assert_string_equal(l.reqs[0].body, body);
    gh_webhook_stop(&w, 0);
    assert_null(w);
    listener_stop(&l);
}

static void a_500_is_retried_until_it_succeeds(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l);
    l.statuses[0] = 500;
    l.statuses[1] = 503;
    listener_run(&l);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = fast(l.url);
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    assert_int_equal(gh_webhook_post(w, "{\"n\":1}", 7), 0);
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);

    gh_webhook_stats_t st;
    gh_webhook_stats(w, &st);
    assert_int_equal(st.delivered, 1);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.failed, 0);
    assert_int_equal(l.nreqs, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(l.reqs[i].body, "{\"n\":1}");
    gh_webhook_stop(&w, 0);
    listener_stop(&l);
}

static void a_400_is_final_and_attempts_are_bounded(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l);
    l.statuses[0] = 400;
    for (int i = 1; i < MAX_REQS; i++)
        l.statuses[i] = 502;
    listener_run(&l);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = fast(l.url);
    o.max_attempts = 3;
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    assert_int_equal(gh_webhook_post(w, "{\"n\":1}", 7), 0); /* 400: no retry */
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);
    assert_int_equal(gh_webhook_post(w, "{\"n\":2}", 7), 0); /* 502 x3: given up */
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);

    gh_webhook_stats_t st;
    gh_webhook_stats(w, &st);
    assert_int_equal(st.delivered, 0);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.last_status, 502);
    assert_int_equal(l.nreqs, 4);
    gh_webhook_stop(&w, 0);
    listener_stop(&l);
}

static void an_absent_receiver_is_a_transport_error_retried(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l);
    char url[64];
    snprintf(url, sizeof url, "%s", l.url);
    close(l.fd); /* nobody listens on that port now */
    pthread_mutex_destroy(&l.lock);
    pthread_cond_destroy(&l.changed);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = fast(url);
    o.max_attempts = 2;
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    assert_int_equal(gh_webhook_post(w, "{}", 2), 0);
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);
    gh_webhook_stats_t st;
    gh_webhook_stats(w, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.last_status, 0);
    gh_webhook_stop(&w, 0);
}

static void a_full_queue_drops_the_oldest(void **state)
{
    (void)state;
    listener_t l;
    listener_start(&l);
    l.hold_first = true;
    listener_run(&l);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = fast(l.url);
    o.queue_max = 2;
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    assert_int_equal(gh_webhook_post(w, "{\"n\":0}", 7), 0);
    wait_requests(&l, 1); /* body 0 is in flight, held by the listener */
    for (int i = 1; i <= 3; i++) {
        char b[16];
        int n = snprintf(b, sizeof b, "{\"n\":%d}", i);
        assert_int_equal(gh_webhook_post(w, b, (size_t)n), 0);
    }
    /* Queue of 2 held bodies 1 and 2; body 3 pushed body 1 out. */
    pthread_mutex_lock(&l.lock);
    l.released = true;
    pthread_cond_broadcast(&l.changed);
    pthread_mutex_unlock(&l.lock);
    assert_int_equal(gh_webhook_wait_idle(w, WAIT_MS), 0);

    gh_webhook_stats_t st;
    gh_webhook_stats(w, &st);
    assert_int_equal(st.posted, 4);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.delivered, 3);
    assert_int_equal(l.nreqs, 3);
    assert_string_equal(l.reqs[0].body, "{\"n\":0}");
    assert_string_equal(l.reqs[1].body, "{\"n\":2}");
    assert_string_equal(l.reqs[2].body, "{\"n\":3}");
    gh_webhook_stop(&w, 0);
    listener_stop(&l);
}

static void stop_during_backoff_is_prompt_and_frees_everything(void **state)
{
    (void)state;
    size_t before = gh_mem_bytes(GH_MEM_METRICS);
    listener_t l;
    listener_start(&l);
    for (int i = 0; i < MAX_REQS; i++)
        l.statuses[i] = 500;
    listener_run(&l);
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = {.url = l.url, .backoff_ms = 3600000, .max_attempts = 10};
    assert_int_equal(gh_webhook_start(&o, &w), 0);
    assert_int_equal(gh_webhook_post(w, "{\"n\":1}", 7), 0);
    wait_requests(&l, 1); /* now waiting an hour before the retry */
    assert_int_equal(gh_webhook_post(w, "{\"n\":2}", 7), 0);
    assert_true(gh_mem_bytes(GH_MEM_METRICS) > before);
    gh_webhook_stop(&w, 0); /* returns without waiting the hour */
    assert_null(w);
    assert_int_equal(gh_mem_bytes(GH_MEM_METRICS), before);
    listener_stop(&l);
}

static void bad_urls_are_refused(void **state)
{
    (void)state;
    gh_webhook_t *w = NULL;
    gh_webhook_options_t o = {.url = "ftp://127.0.0.1/x"};
    assert_int_equal(gh_webhook_start(&o, &w), GH_EINVAL);
    o.url = NULL;
    assert_int_equal(gh_webhook_start(&o, &w), GH_EINVAL);
    assert_null(w);
    gh_webhook_stop(&w, 0); /* NULL is a no-op */
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_post_arrives_as_json),
        cmocka_unit_test(a_500_is_retried_until_it_succeeds),
        cmocka_unit_test(a_400_is_final_and_attempts_are_bounded),
        cmocka_unit_test(an_absent_receiver_is_a_transport_error_retried),
        cmocka_unit_test(a_full_queue_drops_the_oldest),
        cmocka_unit_test(stop_during_backoff_is_prompt_and_frees_everything),
        cmocka_unit_test(bad_urls_are_refused),
    };
    gh_mem_init();
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
