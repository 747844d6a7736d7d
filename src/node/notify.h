/*
 * notify.h — the systemd notification protocol (sd_notify(3)): READY, RELOADING, STOPPING,
 * MAINPID and WATCHDOG, sent as one datagram to $NOTIFY_SOCKET.
 *
 * Hand-written rather than linked from libsystemd: the protocol is a documented, stable
 * datagram of "KEY=value" lines, forty lines of code, while libsystemd would add a library that
 * allocates outside gh_mem and a dependency every non-systemd build must carry. Outside systemd
 * (no NOTIFY_SOCKET) every call is a no-op.
 */
#ifndef GH_COMMON_NOTIFY_H
#define GH_COMMON_NOTIFY_H

#include <stdint.h>

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
