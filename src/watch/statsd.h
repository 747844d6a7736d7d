/*
 * statsd.h — a DogStatsD client (the Datadog agent's UDP protocol): gauges, events and service
 * checks, each one datagram.
 *
 * The one design decision: sending never blocks and never fails loudly. The socket is a
 * connected, non-blocking UDP socket; a datagram the kernel will not take at once (EAGAIN), or
 * that the agent refuses (ECONNREFUSED from an earlier ICMP), is dropped and counted. Telemetry
 * must never slow down or stop the service it reports on. The address is resolved once, at open.
 *
 * Datagrams (service:gatehouse stands for the client's base tags):
 *   gauge          name:value|g|#service:gatehouse[,extra]
 *   event          _e{title_len,text_len}:title|text|t:alert_type|#service:gatehouse[,extra]
 *   service check  _sc|name|status|#service:gatehouse[,extra]|m:message
 * Lengths are UTF-8 bytes after escaping. Newlines in event text and service check messages are
 * sent as the two characters "\n" (the agent turns them back); in a message "m:" is sent as "m\:"
 * because m: must be the last field.
 *
 * Threads: one client may be used from several threads; each call formats into its own stack
 * buffer and sends one datagram.
 */
#ifndef GH_WATCH_STATSD_H
#define GH_WATCH_STATSD_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Datagrams longer than this are not sent (GH_ETOOBIG); the agent's default buffer is 8 KiB. */
#define GH_STATSD_MAX_DATAGRAM 8192

typedef struct gh_statsd gh_statsd_t;

/* Service check statuses. */
enum { GH_STATSD_OK = 0, GH_STATSD_WARNING = 1, GH_STATSD_CRITICAL = 2, GH_STATSD_UNKNOWN = 3 };

/*
 * Opens a client for "host:port" (IPv4, a name, or "[v6]:port"). tags are the base tags added to
 * every datagram, comma-separated ("service:gatehouse"); NULL or "" for none. The client copies
 * tags. *out is freed with gh_statsd_close. Errors: GH_EINVAL (malformed address or tags),
 * GH_ENOTFOUND (the name does not resolve), GH_EIO (no socket), GH_ENOMEM.
 */
int gh_statsd_open(const char *hostport, const char *tags, gh_statsd_t **out) GH_WUR;
/* Closes the socket and frees the client; *s = NULL. NULL and *s == NULL are no-ops. */
void gh_statsd_close(gh_statsd_t **s);

/*
 * Each sends one datagram. extra_tags (comma-separated, may be NULL) follow the base tags.
 * Names and tags must not contain '|', '#' or newlines, nor tags ',' inside one tag (GH_EINVAL).
 * Returns 0 when the datagram was handed to the kernel; GH_EBUSY when it was dropped (counted in
 * gh_statsd_dropped); GH_EINVAL for a non-finite value or a bad name; GH_ETOOBIG past
 * GH_STATSD_MAX_DATAGRAM. Callers that only report may ignore the result (GH_IGNORE).
 */
int gh_statsd_gauge(gh_statsd_t *s, const char *name, double value, const char *extra_tags) GH_WUR;
/* alert_type: "error", "warning", "info" or "success". */
int gh_statsd_event(gh_statsd_t *s, const char *title, const char *text, const char *alert_type,
                    const char *extra_tags) GH_WUR;
/* status: GH_STATSD_OK .. GH_STATSD_UNKNOWN; message may be NULL. */
int gh_statsd_service_check(gh_statsd_t *s, const char *name, int status, const char *message,
                            const char *extra_tags) GH_WUR;

/* Datagrams sent and dropped since open. */
uint64_t gh_statsd_sent(const gh_statsd_t *s);
uint64_t gh_statsd_dropped(const gh_statsd_t *s);

#endif
