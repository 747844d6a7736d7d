/*
 * nginx.h — a real nginx for tests, running the shipped deploy/nginx/gatehouse.conf in front of
 * a gatehouse and a stand-in app, on free loopback ports in a temp dir, stopped by PID.
 *
 * The one decision: nginx runs with `daemon off; master_process off;`, so the PID we fork is the
 * server itself. The shipped file is used as it is except for its two upstream addresses and its
 * listen line. The app is a second server block that answers 200 with
 * "app: user=[<X-Auth-User>] id=[<X-Auth-User-Id>] uri=<request URI>" — what nginx passed on.
 * Like servers.h, it uses nothing of libgatehouse.
 */
#ifndef GH_TESTS_SUPPORT_NGINX_H
#define GH_TESTS_SUPPORT_NGINX_H

#include <sys/types.h>

#define TN_PATH_MAX 512

typedef struct {
    pid_t pid; /* 0 when not running */
    int port;  /* the front door: where browsers and tests send requests */
    int app_port;
    char dir[TN_PATH_MAX];
} tn_nginx_t;

/* Starts nginx with conf_path (the shipped config) in front of gatehouse_addr ("127.0.0.1:P").
 * Waits up to 10 s until it listens. Returns 0, or -1 with the reason on stderr (then nothing
 * runs). */
int tn_nginx_start(tn_nginx_t *n, const char *conf_path, const char *gatehouse_addr);
/* Stops it (SIGQUIT, then SIGKILL after 5 s) and removes its dir unless GATEHOUSE_TEST_KEEP=1. */
void tn_nginx_cleanup(tn_nginx_t *n);

#endif
