/*
 * log.h — structured logging: one JSON object per line ({"ts","level","msg",fields...}) on
 * stderr, or `key=value` text for people (--log-format text). Each line is formatted into a
 * stack buffer and emitted with one write(2), so lines from different threads never interleave
 * and logging never allocates. Secrets (tokens, passwords, hashes) must never be passed here.
 *
 *   GH_LOG(GH_LOG_INFO, "listening", GH_LS("addr", addr), GH_LI("port", port));
 */
#ifndef GH_COMMON_LOG_H
#define GH_COMMON_LOG_H

#include <stddef.h>

typedef enum { GH_LOG_DEBUG = 0, GH_LOG_INFO, GH_LOG_WARN, GH_LOG_ERROR } gh_log_level_t;
typedef enum { GH_LOG_JSON = 0, GH_LOG_TEXT } gh_log_format_t;

typedef struct {
    const char *key;
    char type; /* 's' string, 'i' integer, 'd' double, 'b' boolean */
    union {
        const char *s;
        long long i;
        double d;
    } v;
} gh_log_field_t;

#define GH_LS(k, val) ((gh_log_field_t){.key = (k), .type = 's', .v.s = (val)})
#define GH_LI(k, val) ((gh_log_field_t){.key = (k), .type = 'i', .v.i = (long long)(val)})
#define GH_LD(k, val) ((gh_log_field_t){.key = (k), .type = 'd', .v.d = (double)(val)})
#define GH_LB(k, val) ((gh_log_field_t){.key = (k), .type = 'b', .v.i = !!(val)})

#define GH_LOG(level, msg, ...)                                                                    \
    do {                                                                                           \
        if ((level) >= gh_log_min_level) {                                                         \
            const gh_log_field_t gh__fields[] = {{0}, ##__VA_ARGS__};                              \
            gh_log_write((level), (msg), gh__fields + 1,                                           \
                         sizeof gh__fields / sizeof gh__fields[0] - 1);                            \
        }                                                                                          \
    } while (0)

extern gh_log_level_t gh_log_min_level;

/* Sets the format and minimum level; safe to call before any thread starts. */
void gh_log_setup(gh_log_format_t format, gh_log_level_t min_level);
/* Redirects output to fd (default 2). For tests. */
void gh_log_set_fd(int fd);
/* Writes one line. Prefer the GH_LOG macro, which skips formatting below the level. */
void gh_log_write(gh_log_level_t level, const char *msg, const gh_log_field_t *fields, size_t n);
/* Parses "debug|info|warn|error" and "json|text"; return 0 or GH_EINVAL. */
int gh_log_parse_level(const char *s, gh_log_level_t *out);
int gh_log_parse_format(const char *s, gh_log_format_t *out);

#endif
