/*
 * mail.h — e-mail without a store: the strict address parser, the message builder (templates,
 * MIME, headers) and one SMTP delivery through libcurl. The outbox that decides WHEN to send is
 * the account service's (account/outbox.c); this component only knows HOW.
 *
 * The one design decision: no header is ever built from a value that did not pass a validator
 * here. Addresses pass gh_mail_addr_normalize (a strict subset of RFC 5321: dot-atom local part,
 * LDH domain, ASCII only, no CR/LF, at most 254 bytes); the subject holds only the product name
 * (checked once at start: printable, encoded as RFC 2047 when not ASCII) and fixed words; every
 * user-supplied value (a username) goes only into the base64-encoded bodies, HTML-escaped in the
 * HTML part.
 *
 * Thread safety: every function is re-entrant.
 */
#ifndef GH_MAIL_MAIL_H
#define GH_MAIL_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_MAIL_ADDR_MAX 254 /* RFC 5321 path limit minus the brackets */
#define GH_MAIL_LOCAL_MAX 64
#define GH_MAIL_PRODUCT_MAX 64
#define GH_MAIL_MESSAGE_MAX (64 * 1024) /* a rendered message; larger templates are refused */

/* Checks an address and writes its normal form (lower case) to out. 0, or GH_EINVAL for anything
 * that is not plain local@domain: quotes, comments, display names, IP literals, non-ASCII, control
 * characters, empty or over-long parts, a domain without a dot. */
int gh_mail_addr_normalize(const char *in, size_t len, char out[GH_MAIL_ADDR_MAX + 1]) GH_WUR;

/* True when s is usable as the product name in a subject: 1..64 bytes of valid UTF-8 with no
 * control characters. */
bool gh_mail_product_valid(const char *s);

/* The messages Gatehouse sends. */
#define GH_MAIL_KIND_MAP(X)                                                                        \
    X(RESET, "reset")                                                                              \
    X(VERIFY, "verify")                                                                            \
    X(EMAIL_CHANGED, "email_changed")                                                              \
    X(PASSWORD_CHANGED, "password_changed")                                                        \
    X(FACTOR_ADDED, "factor_added")                                                                \
    X(FACTOR_REMOVED, "factor_removed")                                                            \
    X(RECOVERY_CODE_USED, "recovery_code_used")

typedef enum {
#define GH__MAIL_ENUM(e, n) GH_MAIL_##e,
    GH_MAIL_KIND_MAP(GH__MAIL_ENUM)
#undef GH__MAIL_ENUM
        GH_MAIL__COUNT
} gh_mail_kind_t;

const char *gh_mail_kind_name(gh_mail_kind_t k);

/* What a message says. Every string is checked or escaped by the builder; NULL = "". */
typedef struct {
    const char *product;   /* --product name (validated: gh_mail_product_valid) */
    const char *from;      /* --smtp-from, a normalized address */
    const char *to;        /* a normalized address */
    const char *username;  /* only ever in the bodies */
    const char *link;      /* the link the message carries (built from --public-url) */
    const char *new_email; /* EMAIL_CHANGED: the new address (masked by the caller) */
    const char *templates; /* --email-templates DIR, or NULL / "" for the built-in ones */
    int64_t now_ms;
} gh_mail_vars_t;

/* Renders the whole RFC 5322 message (headers, multipart/alternative with a text/plain and a
 * text/html part, CRLF line ends) into *out (GH_MEM_MAIL; free with gh_mem_free). A template
 * file DIR/<kind>.txt, DIR/<kind>.html or DIR/<kind>.subject replaces the built-in one; in it
 * {{product}}, {{username}}, {{link}}, {{email}} are replaced. GH_EINVAL (an address or the
 * product fails its check, or a subject template holds a control character), GH_ETOOBIG,
 * GH_EIO (a template file cannot be read), GH_ENOMEM. */
int gh_mail_render(gh_mail_kind_t kind, const gh_mail_vars_t *v, char **out, size_t *len) GH_WUR;

/* One SMTP delivery. */
typedef struct {
    const char *url;      /* smtp://host:port or smtps://host:port */
    const char *user;     /* NULL: no AUTH */
    const char *password; /* with user */
    const char *from;     /* envelope sender */
    const char *to;       /* envelope recipient */
    const char *message;  /* the rendered message */
    size_t len;
    long timeout_ms; /* the whole exchange */
} gh_mail_send_t;

/* Sends with libcurl: STARTTLS when the server offers it (CURLUSESSL_TRY), AUTH when user is set.
 * 0 when the server accepted the message; GH_EIO with a reason in err (a transient failure:
 * connection, timeout, 4xx); GH_EINVAL for a permanent refusal (5xx). */
int gh_mail_send(const gh_mail_send_t *m, char *err, size_t errlen) GH_WUR;

#endif
