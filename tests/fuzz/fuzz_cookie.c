/*
 * fuzz_cookie.c — the Cookie header of a real request. A node (the whole service: HTTP layer,
 * router, handlers, stores) runs in this process on 127.0.0.1; each input becomes the Cookie
 * header lines of one `GET /v1/auth`, the forward-auth check a reverse proxy sends for every
 * request of every user, sent over a socket.
 *
 * The design decision: the cookie string is split by libmicrohttpd, not by us, so the only
 * honest target is the request path itself (libmicrohttpd's parsing, gh_req_cookie, the token
 * check, the session lookup), observed from outside. Input lines ('\n'-separated, at most 8)
 * are separate Cookie headers. One live session exists, with a token fixed at start-up.
 *
 * Properties: every request gets an answer (the node never hangs or dies); the answer is 200,
 * 401 with the contract's body, or 400/431 from libmicrohttpd for a header it refuses; and 200
 * only when the input carries the live session's token.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/api.h"
#include "node/node.h"
#include "common/clock.h"
#include "common/log.h"
#include "fuzz.h"

/* A well-formed token: 'A' is 0 in base64url, so the last character carries no stray bits. */
#define LIVE_TOKEN "gh_fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuA"

static gh_node_t *node;
static uint16_t port;
static char dir[256];

static void stop_node(void)
{
    if (node)
        gh_node_stop(&node, 1000);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (dir[0] && system(cmd) != 0)
        fprintf(stderr, "fuzz_cookie: could not remove %s\n", dir);
}

int LLVMFuzzerInitialize(int *argc, char **argv[])
{
    (void)argc;
    (void)argv;
    _Static_assert(sizeof LIVE_TOKEN - 1 == GH_TOKEN_LEN, "the live token has a token's length");
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/gh-fuzz-cookie-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    char *args[] = {"serve", "--listen",      "127.0.0.1:0", "--data-dir",
                    dir,     "--hash-memory", "8KiB",        "--hash-ops",
                    "1",     "--log-level",   "error",       "--hash-workers",
                    "1",     "--throttle-ip", "0",           NULL};
    gh_config_t cfg;
    char err[256];
    FUZZ_CHECK(gh_config_load(&cfg, 15, args, stdout, err, sizeof err) == 0);
    gh_log_setup(GH_LOG_JSON, GH_LOG_ERROR);
    FUZZ_CHECK(gh_node_start(&cfg, &node) == 0);
    port = gh_node_port(node);
    atexit(stop_node);

    gh_app_t *app = gh_node_app(node);
    gh_user_t user;
    FUZZ_CHECK(gh_user_create(app->users, "fuzz", "not-a-hash", gh_clock_now_ms(), &user) == 0);
    uint8_t hash[GH_TOKEN_HASH_LEN];
    FUZZ_CHECK(gh_token_hash(LIVE_TOKEN, GH_TOKEN_LEN, hash) == 0);
    gh_session_info_t info;
    FUZZ_CHECK(gh_session_create(app->sessions, user.id, hash, NULL, gh_clock_now_ms(), &info) ==
               0);
    return 0;
}

/* A connection to the node. Thousands a second must not run out of ports: the client closes
 * with a reset (no TIME_WAIT on its side), and since the server closes first after a request it
 * refuses (leaving TIME_WAIT on its side, which blocks that client port for a minute), each
 * connection comes from the next of 248 loopback addresses, 127.0.0.2 to 127.0.0.249. */
static int connect_node(void)
{
    static unsigned next;
    for (int attempt = 0; attempt < 500; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(fd >= 0);
        struct timeval tv = {.tv_sec = 10};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (next++ % 248));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) == 0 &&
            connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        int e = errno;
        close(fd);
        /* Out of local ports is this process's problem, not the node's: wait and retry. Any
         * other failure (refused, timed out) means the node stopped accepting. */
        if (e != EADDRNOTAVAIL && e != EADDRINUSE) {
            fprintf(stderr, "connect to the node: %s\n", strerror(e));
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "connect to the node: no local port for 5 s\n");
    return -1;
}

/* Sends req and reads one response; returns the status, 0 when none arrived. */
static int exchange(const char *req, size_t len, char *resp, size_t cap)
{
    int fd = connect_node();
    FUZZ_CHECK(fd >= 0);
    for (size_t off = 0; off < len;) {
        ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (k <= 0)
            break; /* the server may refuse early and close; its answer is still readable */
        off += (size_t)k;
    }
    size_t got = 0;
    long want = -1; /* bytes of the whole response, once the headers say */
    while (got + 1 < cap && (want < 0 || (long)got < want)) {
        ssize_t k = recv(fd, resp + got, cap - 1 - got, 0);
        if (k <= 0)
            break;
        got += (size_t)k;
        resp[got] = '\0';
        const char *end = strstr(resp, "\r\n\r\n");
        if (end && want < 0) {
            const char *cl = strcasestr(resp, "\r\nContent-Length:");
            want = (end - resp) + 4 + (cl && cl < end ? atol(cl + 17) : 0);
        }
    }
    resp[got] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 6000)
        return 0;
    if (!node)
        LLVMFuzzerInitialize(NULL, NULL);
    static char req[8192], resp[16384];
    size_t n = (size_t)snprintf(req, sizeof req, "GET /v1/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    int lines = 0;
    for (size_t off = 0; off <= size && lines < 8; lines++) {
        const uint8_t *nl = memchr(data + off, '\n', size - off);
        size_t len = nl ? (size_t)(nl - (data + off)) : size - off;
        memcpy(req + n, "Cookie: ", 8);
        n += 8;
        for (size_t i = 0; i < len; i++) /* a bare CR would end the header early */
            req[n++] = data[off + i] == '\r' ? ' ' : (char)data[off + i];
        memcpy(req + n, "\r\n", 2);
        n += 2;
        off += len + 1;
    }
    memcpy(req + n, "\r\n", 2);
    n += 2;

    int status = exchange(req, n, resp, sizeof resp);
    if (status == 0)
        fprintf(stderr, "no answer; got %zu bytes:\n%s\n", strlen(resp), resp);
    FUZZ_CHECK(status != 0);
    FUZZ_CHECK(status == 200 || status == 401 || status == 400 || status == 431);
    if (status == 200) {
        FUZZ_CHECK(memmem(data, size, LIVE_TOKEN, GH_TOKEN_LEN) != NULL);
        FUZZ_CHECK(strcasestr(resp, "\r\nX-Auth-User: fuzz\r\n") != NULL);
    }
    if (status == 401)
        FUZZ_CHECK(strstr(resp, "\"code\":\"unauthenticated\"") != NULL);
    return 0;
}
