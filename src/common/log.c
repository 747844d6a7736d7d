/*
 * log.c — line-at-a-time structured logging. A line is built in a fixed stack buffer (longer
 * lines are cut and marked "truncated") and written with one write(2) call: atomic for pipes up
 * to PIPE_BUF and never interleaved in practice, with no lock and no allocation.
 */
#include "common/log.h"
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

gh_log_level_t gh_log_min_level = GH_LOG_INFO;
static gh_log_format_t log_format = GH_LOG_JSON;
static int log_fd = 2;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void gh_log_setup(gh_log_format_t format, gh_log_level_t min_level)
{
    log_format = format;
    gh_log_min_level = min_level;
}

void gh_log_set_fd(int fd)
{
    log_fd = fd;
}

typedef struct {
    char *buf;
    size_t cap, len;
    int truncated;
} line_t;

static void put(line_t *l, const char *s, size_t n)
{
    if (l->len + n >= l->cap) {
        n = l->cap - l->len - 1;
        l->truncated = 1;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(line_t *l, const char *s)
{
    put(l, s, strlen(s));
}

static void putf(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(line_t *l, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        put(l, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* JSON string escaping; control characters become \u00XX. */
static void put_json_str(line_t *l, const char *s)
{
    put(l, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            put(l, e, 2);
        } else if (*p < 0x20) {
            putf(l, "\\u%04x", *p);
        } else {
            put(l, (const char *)p, 1);
        }
    }
    put(l, "\"", 1);
}

/* Text values are quoted when they hold spaces, quotes or '='. */
static void put_text_str(line_t *l, const char *s)
{
    s = s ? s : "";
    if (*s && !strpbrk(s, " \"=\t\n")) {
        puts_(l, s);
        return;
    }
    put_json_str(l, s);
}

void gh_log_write(gh_log_level_t level, const char *msg, const gh_log_field_t *fields, size_t n)
{
    char buf[4096];
    line_t l = {buf, sizeof buf - 1, 0, 0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t wl = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + wl, sizeof when - wl, ".%03ldZ", ts.tv_nsec / 1000000);
    const char *lvl = level_names[level <= GH_LOG_ERROR ? level : GH_LOG_ERROR];

    if (log_format == GH_LOG_JSON) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, when);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, lvl);
        puts_(&l, "\",\"msg\":");
        put_json_str(&l, msg);
        for (size_t i = 0; i < n; i++) {
            put(&l, ",", 1);
            put_json_str(&l, fields[i].key);
            put(&l, ":", 1);
            switch (fields[i].type) {
            case 's':
                put_json_str(&l, fields[i].v.s);
                break;
            case 'i':
                putf(&l, "%lld", fields[i].v.i);
                break;
            case 'd':
                putf(&l, "%.6g", fields[i].v.d);
                break;
            default:
                puts_(&l, fields[i].v.i ? "true" : "false");
            }
        }
        if (l.truncated) {
            l.len = l.cap - 20 < l.len ? l.cap - 20 : l.len;
            l.truncated = 0;
            puts_(&l, ",\"truncated\":true");
        }
        put(&l, "}", 1);
    } else {
        puts_(&l, when);
        put(&l, " ", 1);
        putf(&l, "%-5s ", lvl);
        puts_(&l, msg);
        for (size_t i = 0; i < n; i++) {
            put(&l, " ", 1);
            puts_(&l, fields[i].key);
            put(&l, "=", 1);
            switch (fields[i].type) {
            case 's':
                put_text_str(&l, fields[i].v.s);
                break;
            case 'i':
                putf(&l, "%lld", fields[i].v.i);
                break;
            case 'd':
                putf(&l, "%.6g", fields[i].v.d);
                break;
            default:
                puts_(&l, fields[i].v.i ? "true" : "false");
            }
        }
    }
    buf[l.len++] = '\n';
    ssize_t w = write(log_fd, buf, l.len);
    (void)w;
}

int gh_log_parse_level(const char *s, gh_log_level_t *out)
{
    for (int i = 0; i <= GH_LOG_ERROR; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (gh_log_level_t)i;
            return 0;
        }
    }
    return GH_EINVAL;
}

int gh_log_parse_format(const char *s, gh_log_format_t *out)
{
    if (strcmp(s, "json") == 0)
        *out = GH_LOG_JSON;
    else if (strcmp(s, "text") == 0)
        *out = GH_LOG_TEXT;
    else
        return GH_EINVAL;
    return 0;
}
