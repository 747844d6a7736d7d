/*
 * statsd.c — DogStatsD datagrams over a connected, non-blocking UDP socket. Every datagram is
 * formatted into a stack buffer and sent with one send(MSG_DONTWAIT): no lock, no allocation
 * after open, and a full socket buffer or an absent agent costs a counted drop, never a wait.
 */
#include "watch/statsd.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mem/mem.h"

#define MAX_TAGS 512

struct gh_statsd {
    int fd;
    char tags[MAX_TAGS]; /* base tags, "" for none */
    atomic_uint_fast64_t sent, dropped;
};

/* Names and tags are written into the datagram as they are, so they may not carry its
 * separators. */
static bool plain(const char *s, bool allow_comma)
{
    for (; s && *s; s++)
        if (*s == '|' || *s == '#' || *s == '\n' || *s == '\r' || (!allow_comma && *s == ','))
            return false;
    return true;
}

int gh_statsd_open(const char *hostport, const char *tags, gh_statsd_t **out)
{
    char host[256], port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM}, *res = NULL;
    gh_statsd_t *s = NULL;
    int rc = GH_EINVAL;
    *out = NULL;
    if (!hostport || (tags && (!plain(tags, true) || strlen(tags) >= MAX_TAGS)))
        goto out;
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof port)
        goto out;
    const char *h = hostport;
    size_t hlen = (size_t)(colon - hostport);
    if (h[0] == '[') { /* "[::1]:8125" */
        if (hlen < 3 || h[hlen - 1] != ']')
            goto out;
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen)) {
        goto out; /* a bare IPv6 address is ambiguous: it needs brackets */
    }
    if (hlen >= sizeof host)
        goto out;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            goto out;
    long pn = strtol(port, NULL, 10);
    if (pn <= 0 || pn > 65535)
        goto out;

    if (getaddrinfo(host, port, &hints, &res) != 0 || !res) {
        rc = GH_ENOTFOUND;
        goto out;
    }
    s = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *s);
    if (!s) {
        rc = GH_ENOMEM;
        goto out;
    }
    s->fd = -1;
    rc = GH_EIO;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        /* connect() on UDP only fixes the destination: send() needs no address, and an agent
         * that is not there reports ECONNREFUSED instead of silently eating datagrams. */
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            s->fd = fd;
            break;
        }
        close(fd);
    }
    if (s->fd < 0)
        goto out;
    snprintf(s->tags, sizeof s->tags, "%s", tags ? tags : "");
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (res)
        freeaddrinfo(res);
    if (s)
        gh_mem_free(GH_MEM_METRICS, s);
    return rc;
}

void gh_statsd_close(gh_statsd_t **s)
{
    if (!s || !*s)
        return;
    if ((*s)->fd >= 0)
        close((*s)->fd);
    gh_mem_free(GH_MEM_METRICS, *s);
    *s = NULL;
}

uint64_t gh_statsd_sent(const gh_statsd_t *s)
{
    return atomic_load_explicit(&s->sent, memory_order_relaxed);
}

uint64_t gh_statsd_dropped(const gh_statsd_t *s)
{
    return atomic_load_explicit(&s->dropped, memory_order_relaxed);
}

typedef struct {
    char buf[GH_STATSD_MAX_DATAGRAM + 1];
    size_t len;
    bool overflow;
} dgram_t;

static void put(dgram_t *d, const char *s, size_t n)
{
    if (d->overflow || d->len + n > GH_STATSD_MAX_DATAGRAM) {
        d->overflow = true;
        return;
    }
    memcpy(d->buf + d->len, s, n);
    d->len += n;
}

static void puts_(dgram_t *d, const char *s)
{
    put(d, s, strlen(s));
}

/* Writes s with newlines as "\n" and, for a service check message, "m:" as "m\:". */
static void put_escaped(dgram_t *d, const char *s, bool message)
{
    for (; *s; s++) {
        if (*s == '\n')
            put(d, "\\n", 2);
        else if (*s == '\r')
            continue;
        else if (message && s[0] == 'm' && s[1] == ':') {
            put(d, "m\\:", 3);
            s++;
        } else
            put(d, s, 1);
    }
}

static size_t escaped_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n' ? 2 : *s == '\r' ? 0 : 1;
    return n;
}

static void put_tags(dgram_t *d, const gh_statsd_t *s, const char *extra)
{
    bool has_extra = extra && *extra;
    if (!s->tags[0] && !has_extra)
        return;
    put(d, "|#", 2);
    puts_(d, s->tags);
    if (has_extra) {
        if (s->tags[0])
            put(d, ",", 1);
        puts_(d, extra);
    }
}

static int emit(gh_statsd_t *s, const dgram_t *d)
{
    if (d->overflow)
        return GH_ETOOBIG;
    if (send(s->fd, d->buf, d->len, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)d->len) {
        atomic_fetch_add_explicit(&s->sent, 1, memory_order_relaxed);
        return 0;
    }
    atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
    return GH_EBUSY;
}

/* A gauge's value as the shortest text that reads back the same ("1073741824", "410.5"). */
static void fmt_value(double v, char out[40])
{
    snprintf(out, 40, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 40, "%.17g", v);
}

int gh_statsd_gauge(gh_statsd_t *s, const char *name, double value, const char *extra_tags)
{
    assert(s);
    if (!name || !*name || !plain(name, false) || strchr(name, ':') || !isfinite(value) ||
        !plain(extra_tags, true))
        return GH_EINVAL;
    dgram_t d;
    d.len = 0;
    d.overflow = false;
    char v[40];
    fmt_value(value, v);
    puts_(&d, name);
    put(&d, ":", 1);
    puts_(&d, v);
    put(&d, "|g", 2);
    put_tags(&d, s, extra_tags);
    return emit(s, &d);
}

int gh_statsd_event(gh_statsd_t *s, const char *title, const char *text, const char *alert_type,
                    const char *extra_tags)
{
    assert(s);
    if (!title || !*title || !text || !plain(extra_tags, true) ||
        (alert_type && !plain(alert_type, false)))
        return GH_EINVAL;
    dgram_t d;
    d.len = 0;
    d.overflow = false;
    char head[64];
    snprintf(head, sizeof head, "_e{%zu,%zu}:", escaped_len(title), escaped_len(text));
    puts_(&d, head);
    put_escaped(&d, title, false);
    put(&d, "|", 1);
    put_escaped(&d, text, false);
    if (alert_type && *alert_type) {
        put(&d, "|t:", 3);
        puts_(&d, alert_type);
    }
    put_tags(&d, s, extra_tags);
    return emit(s, &d);
}

int gh_statsd_service_check(gh_statsd_t *s, const char *name, int status, const char *message,
                            const char *extra_tags)
{
    assert(s);
    if (!name || !*name || !plain(name, false) || status < GH_STATSD_OK ||
        status > GH_STATSD_UNKNOWN || !plain(extra_tags, true))
        return GH_EINVAL;
    dgram_t d;
    d.len = 0;
    d.overflow = false;
    char st[16];
    snprintf(st, sizeof st, "|%d", status);
    put(&d, "_sc|", 4);
    puts_(&d, name);
    puts_(&d, st);
    put_tags(&d, s, extra_tags);
    if (message && *message) {
        put(&d, "|m:", 3);
        put_escaped(&d, message, true);
    }
    return emit(s, &d);
}
