/*
 * node.h — a running node and the commands that run one: assembly (node.c: stores, password
 * pool, metrics, watchdog, janitor, HTTP), the `serve` command with its signals (serve.c),
 * reload and hand-over (reload.c), systemd notification (notify.c) and the `user` command line
 * (user_cmd.c).
 *
 * The one design decision: the node is the top of the house. It alone reads the configuration,
 * names store backends and wires the components together; nothing below includes this header.
 * Inside, node.c knows nothing of reload or of signals, reload.c drives a node through the calls
 * below, and serve.c drives both, so the files of this folder call each other one way only.
 */
#ifndef GH_NODE_NODE_H
#define GH_NODE_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "config/config.h"

/* ---- a running node (node.c): stores, password pool, metrics, janitor, HTTP ---- */
typedef struct gh_node gh_node_t;
/* Starts a node from a loaded configuration (copied). Logs what failed. */
int gh_node_start(const gh_config_t *cfg, gh_node_t **out) GH_WUR;
typedef struct {
    int listen_fd;  /* an inherited listening socket the node takes over, or -1 to bind one */
    bool successor; /* reload: load sessions as a successor and do not serve until
                       the session store's handover (TAKEOVER) and gh_node_serve() */
} gh_node_opts_t;
int gh_node_start_ex(const gh_config_t *cfg, const gh_node_opts_t *opts, gh_node_t **out) GH_WUR;
/* Starts serving HTTP on the node's listening socket (no-op when it already does). */
int gh_node_serve(gh_node_t *node) GH_WUR;
/* Stops serving HTTP but keeps the listening socket open (gh_http_handoff). */
void gh_node_handoff(gh_node_t *node, int64_t drain_ms);
int gh_node_listen_fd(gh_node_t *node);
/* Stops accepting, drains for up to drain_ms, stops everything, frees; *node = NULL. */
void gh_node_stop(gh_node_t **node, int64_t drain_ms);
gh_app_t *gh_node_app(gh_node_t *node);
uint16_t gh_node_port(gh_node_t *node); /* the bound port (useful with port 0) */
/* Requests in flight (0 when the node does not serve). */
unsigned gh_node_inflight(gh_node_t *node);

/* ---- reload and process lifecycle (reload.c) ---- */
/* What this process inherited: a listening socket (from a predecessor, GATEHOUSE_LISTEN_FD, or
 * from systemd socket activation, LISTEN_FDS) and the handover channel of a reload
 * (GATEHOUSE_RELOAD_FD). Reads and removes those variables; -1 when absent. */
typedef struct {
    int listen_fd;
    int handover_fd;
    bool activated; /* listen_fd came from systemd */
} gh_inherited_t;
void gh_reload_inherited(gh_inherited_t *out);
/* Remembers the binary and the arguments a reload re-executes. Call first in serve. */
void gh_reload_init(int argc, char **argv);
/* The predecessor's side of a reload (SIGHUP). Returns true when the successor has taken over:
 * the node has stopped serving and its session store is detached, so the caller stops the node
 * and exits 0. False when the successor failed: the node still (or again) serves. */
bool gh_reload_handover(gh_node_t *node);
/* The successor's side: tells the predecessor the sessions are loaded, waits until it has
 * stopped, takes the session database over and starts serving. Returns 0 or an error (then
 * the caller exits and the predecessor serves on). */
int gh_reload_successor(gh_node_t *node, int handover_fd) GH_WUR;
/* <data-dir>/gatehouse.pid: written once serving, removed at a clean stop if it is still ours. */
int gh_reload_pidfile_write(const char *data_dir) GH_WUR;
void gh_reload_pidfile_remove(const char *data_dir);

/* ---- commands: `serve` (serve.c), `user` (user_cmd.c), `reload` (reload.c) ---- */
int gh_serve_main(int argc, char **argv);
int gh_user_cmd_main(int argc, char **argv);
/* `gatehouse audit [filters] [flags]` (audit_cmd.c): the audit trail as JSON lines. */
int gh_audit_cmd_main(int argc, char **argv);
/* `gatehouse client add|list|del` and `gatehouse keys rotate` (oidc_cmd.c). */
int gh_client_cmd_main(int argc, char **argv);
int gh_keys_cmd_main(int argc, char **argv);
/* `gatehouse reload`: signals the node named by <data-dir>/gatehouse.pid and waits for it. */
int gh_reload_cmd_main(int argc, char **argv);

/* ---- systemd notification (notify.c) ----
 *
 * The protocol (sd_notify(3)): READY, RELOADING, STOPPING, MAINPID and WATCHDOG, sent as one
 * datagram to $NOTIFY_SOCKET. Hand-written rather than linked from libsystemd: the protocol is a
 * documented, stable datagram of "KEY=value" lines, forty lines of code, while libsystemd would
 * add a library that allocates outside gh_mem and a dependency every non-systemd build must
 * carry. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.
 */
/* Reads NOTIFY_SOCKET and the watchdog settings once (WATCHDOG_USEC for this pid, or
 * GATEHOUSE_WATCHDOG_USEC handed down by a predecessor on reload) and removes the watchdog
 * variables from the environment so no child takes them for its own. */
void gh_notify_init(void);

/* Sends `state` ("READY=1", "STOPPING=1", ...). Returns 0 or -1 (errno set); 0 when there is
 * no NOTIFY_SOCKET. */
int gh_notify(const char *state);

/* "WATCHDOG=1" when the watchdog is on and half its period has passed since the last one.
 * Cheap enough to call from a loop that runs every 100 ms. */
void gh_notify_watchdog(void);

/* The watchdog period in microseconds, 0 when off: a predecessor passes it to its successor. */
uint64_t gh_notify_watchdog_usec(void);

#endif
