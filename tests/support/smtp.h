/*
 * smtp.h — a real SMTP server for tests: Debian's aiosmtpd (tests/support/smtp_sink.py) on a
 * free loopback port, writing every accepted message to a directory; started and stopped by PID
 * (never by name), restartable on the same port and directory, so a test can take the mail server
 * away and bring it back. And the few MIME helpers a test needs to read what arrived: a header,
 * a base64 part decoded, the link in a text.
 *
 * The one design decision: the server is real and separate (a Python process speaking SMTP), so
 * the node's libcurl client is tested against another implementation, not against itself.
 * Nothing here uses libgatehouse.
 */
#ifndef GH_TESTS_SUPPORT_SMTP_H
#define GH_TESTS_SUPPORT_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    pid_t pid; /* 0 when not running */
    int port;  /* chosen at the first start, kept across restarts */
    char dir[512];
    char url[64]; /* smtp://127.0.0.1:PORT */
} ts_smtp_t;

/* Starts (or restarts) the server; extra: NULL or one option of smtp_sink.py ("--delay",
 * "--fail-first", "--reject") and its value (NULL for --reject). 0 or -1. */
int ts_smtp_start(ts_smtp_t *s, const char *opt, const char *value);
/* Picks the port and directory without starting (a test that starts the server later). */
int ts_smtp_prepare(ts_smtp_t *s);
void ts_smtp_stop(ts_smtp_t *s);
void ts_smtp_cleanup(ts_smtp_t *s); /* stops and removes the directory */

/* Messages received so far. */
int ts_smtp_count(const ts_smtp_t *s);
/* Waits until at least n messages arrived (true) or timeout_ms passed. */
bool ts_smtp_wait(const ts_smtp_t *s, int n, int timeout_ms);
/* Message i (1-based), malloc'd and NUL-terminated; NULL when absent. */
char *ts_smtp_message(const ts_smtp_t *s, int i);
/* Its envelope ("from X\nto Y\n"), malloc'd. */
char *ts_smtp_envelope(const ts_smtp_t *s, int i);

/* The value of a top-level header (unfolded, without the name), into out. */
bool ts_mail_header(const char *msg, const char *name, char *out, size_t len);
/* The decoded body of the first part of this Content-Type (base64 or 7bit). */
bool ts_mail_part(const char *msg, const char *content_type, char *out, size_t len);
/* The first URL in text that starts with prefix, up to a space, quote, '<' or line end. */
bool ts_mail_link(const char *text, const char *prefix, char *out, size_t len);

#endif
