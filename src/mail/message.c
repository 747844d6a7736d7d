/*
 * message.c — renders a message: template → text and HTML bodies → one RFC 5322 message with a
 * multipart/alternative body, CRLF line ends, both parts base64-encoded.
 *
 * The one design decision: base64 for both bodies. Whatever a template or a username holds
 * (unicode, long lines, a lone "." on a line, CR/LF), the body the SMTP server sees is lines of
 * base64: it can neither end the DATA phase nor start a header. The headers are built only from
 * validated values (mail.h).
 */
#include "mail/mail.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mem/mem.h"

#define TEMPLATE_MAX (32 * 1024)

typedef struct {
    const char *subject, *text, *html;
} builtin_t;

static const builtin_t builtins[GH_MAIL__COUNT] = {
    [GH_MAIL_RESET] =
        {"{{product}}: reset your password",
         "Someone asked to reset the password of the {{product}} account {{username}}.\n\n"
         "To choose a new password, open this link within 30 minutes:\n\n{{link}}\n\n"
         "If it was not you, ignore this message: your password stays as it is.\n",
         "<p>Someone asked to reset the password of the {{product}} account "
         "<b>{{username}}</b>.</p>\n<p><a href=\"{{link}}\">Choose a new password</a> "
         "(the link works for 30 minutes).</p>\n<p>If it was not you, ignore this message: your "
         "password stays as it is.</p>\n"},
    [GH_MAIL_VERIFY] =
        {"{{product}}: confirm your email address",
         "Confirm that this address belongs to the {{product}} account {{username}}:\n\n"
         "{{link}}\n\nThe link works for 24 hours. If you did not ask for this, ignore it.\n",
         "<p>Confirm that this address belongs to the {{product}} account "
         "<b>{{username}}</b>:</p>\n<p><a href=\"{{link}}\">Confirm the address</a> (the link "
         "works for 24 hours).</p>\n<p>If you did not ask for this, ignore it.</p>\n"},
    [GH_MAIL_EMAIL_CHANGED] =
        {"{{product}}: your email address is being changed",
         "The email address of the {{product}} account {{username}} is being changed to "
         "{{email}}.\n\nIf it was not you, change your password now and contact your "
         "administrator.\n",
         "<p>The email address of the {{product}} account <b>{{username}}</b> is being changed "
         "to {{email}}.</p>\n<p>If it was not you, change your password now and contact your "
         "administrator.</p>\n"},
    [GH_MAIL_PASSWORD_CHANGED] =
        {"{{product}}: your password was changed",
         "The password of the {{product}} account {{username}} was changed, and every session "
         "of the account was ended.\n\nIf it was not you, reset your password now: {{link}}\n",
         "<p>The password of the {{product}} account <b>{{username}}</b> was changed, and every "
         "session of the account was ended.</p>\n<p>If it was not you, <a href=\"{{link}}\">reset "
         "your password now</a>.</p>\n"},
    [GH_MAIL_FACTOR_ADDED] =
        {"{{product}}: a second factor was added",
         "A second factor was added to the {{product}} account {{username}}.\n\nIf it was not "
         "you, reset your password now: {{link}}\n",
         "<p>A second factor was added to the {{product}} account <b>{{username}}</b>.</p>\n"
         "<p>If it was not you, <a href=\"{{link}}\">reset your password now</a>.</p>\n"},
    [GH_MAIL_FACTOR_REMOVED] =
        {"{{product}}: a second factor was removed",
         "A second factor was removed from the {{product}} account {{username}}.\n\nIf it was "
         "not you, reset your password now: {{link}}\n",
         "<p>A second factor was removed from the {{product}} account <b>{{username}}</b>.</p>\n"
         "<p>If it was not you, <a href=\"{{link}}\">reset your password now</a>.</p>\n"},
    [GH_MAIL_RECOVERY_CODE_USED] =
        {"{{product}}: a recovery code was used",
         "A recovery code of the {{product}} account {{username}} was used to log in.\n\nIf it "
         "was not you, reset your password now: {{link}}\n",
         "<p>A recovery code of the {{product}} account <b>{{username}}</b> was used to log "
         "in.</p>\n<p>If it was not you, <a href=\"{{link}}\">reset your password now</a>.</p>\n"},
};

static const char *const kind_names[GH_MAIL__COUNT] = {
#define GH__MAIL_NAME(e, n) [GH_MAIL_##e] = n,
    GH_MAIL_KIND_MAP(GH__MAIL_NAME)
#undef GH__MAIL_NAME
};

const char *gh_mail_kind_name(gh_mail_kind_t k)
{
    return (unsigned)k < GH_MAIL__COUNT ? kind_names[k] : "unknown";
}

/* A growing buffer charged to GH_MEM_MAIL, capped at GH_MAIL_MESSAGE_MAX. */
typedef struct {
    char *p;
    size_t len, cap;
    int err;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > GH_MAIL_MESSAGE_MAX) {
        b->err = GH_ETOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = gh_mem_realloc(GH_MEM_MAIL, b->p, cap);
        if (!p) {
            b->err = GH_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->err = b->err ? b->err : GH_ETOOBIG;
        return;
    }
    put(b, tmp, (size_t)n);
}

static void put_html(buf_t *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            puts_(b, "&lt;");
            break;
        case '>':
            puts_(b, "&gt;");
            break;
        case '&':
            puts_(b, "&amp;");
            break;
        case '"':
            puts_(b, "&quot;");
            break;
        case '\'':
            puts_(b, "&#39;");
            break;
        default:
            put(b, s, 1);
        }
    }
}

/* Expands {{name}} placeholders of tpl into b; html escapes the values. */
static void expand(buf_t *b, const char *tpl, const gh_mail_vars_t *v, bool html)
{
    while (*tpl) {
        const char *open = strstr(tpl, "{{");
        if (!open) {
            puts_(b, tpl);
            return;
        }
        put(b, tpl, (size_t)(open - tpl));
        const char *close = strstr(open, "}}");
        if (!close) {
            puts_(b, open);
            return;
        }
        size_t n = (size_t)(close - open - 2);
        const char *val = NULL;
        if (n == 7 && !memcmp(open + 2, "product", 7))
            val = v->product;
        else if (n == 8 && !memcmp(open + 2, "username", 8))
            val = v->username;
        else if (n == 4 && !memcmp(open + 2, "link", 4))
            val = v->link;
        else if (n == 5 && !memcmp(open + 2, "email", 5))
            val = v->new_email;
        if (!val)
            val = "";
        if (html)
            put_html(b, val);
        else
            puts_(b, val);
        tpl = close + 2;
    }
}

/* Reads DIR/<kind>.<ext> into *out (GH_MEM_MAIL) when the file exists: 0 (and *out NULL when
 * there is no such file), GH_EIO, GH_ETOOBIG, GH_ENOMEM. */
static int read_template(const char *dir, gh_mail_kind_t kind, const char *ext, char **out)
{
    *out = NULL;
    if (!dir || !*dir)
        return 0;
    char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s.%s", dir, kind_names[kind], ext);
    if (n < 0 || (size_t)n >= sizeof path)
        return GH_EINVAL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? 0 : GH_EIO;
    char *p = gh_mem_alloc(GH_MEM_MAIL, TEMPLATE_MAX + 1);
    int rc = 0;
    if (!p) {
        rc = GH_ENOMEM;
        goto out;
    }
    size_t got = fread(p, 1, TEMPLATE_MAX + 1, f);
    if (ferror(f)) {
        rc = GH_EIO;
    } else if (got > TEMPLATE_MAX) {
        rc = GH_ETOOBIG;
    } else {
        p[got] = '\0';
        *out = p;
        p = NULL;
    }
out:
    gh_mem_free(GH_MEM_MAIL, p);
    fclose(f);
    return rc;
}

/* Appends s as base64 in lines of 76 characters. */
static void put_base64(buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !b->err; i += 57) {
        size_t chunk = n - i < 57 ? n - i : 57;
        char line[80];
        sodium_bin2base64(line, sizeof line, (const unsigned char *)s + i, chunk,
                          sodium_base64_VARIANT_ORIGINAL);
        puts_(b, line);
        puts_(b, "\r\n");
    }
}

/* Appends the text with every line end as CRLF. */
static void to_crlf(buf_t *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\r')
            continue;
        if (*s == '\n')
            put(out, "\r", 1);
        put(out, s, 1);
    }
}

static bool ascii_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

int gh_mail_render(gh_mail_kind_t kind, const gh_mail_vars_t *v, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    char addr[GH_MAIL_ADDR_MAX + 1];
    if ((unsigned)kind >= GH_MAIL__COUNT || !gh_mail_product_valid(v->product) || !v->to ||
        !v->from || gh_mail_addr_normalize(v->to, strlen(v->to), addr) != 0 ||
        strcmp(addr, v->to) != 0 || gh_mail_addr_normalize(v->from, strlen(v->from), addr) != 0)
        return GH_EINVAL;
    char *ftpl[3] = {NULL, NULL, NULL};
    static const char *const exts[3] = {"subject", "txt", "html"};
    buf_t subj = {0}, text = {0}, html = {0}, msg = {0};
    int rc = 0;
    for (int i = 0; i < 3; i++)
        if ((rc = read_template(v->templates, kind, exts[i], &ftpl[i])) != 0)
            goto out;
    const builtin_t *bi = &builtins[kind];
    expand(&subj, ftpl[0] ? ftpl[0] : bi->subject, v, false);
    expand(&text, ftpl[1] ? ftpl[1] : bi->text, v, false);
    expand(&html, ftpl[2] ? ftpl[2] : bi->html, v, true);
    if ((rc = subj.err ? subj.err : text.err ? text.err : html.err) != 0)
        goto out;
    /* a subject file may end with one line end; nothing else of it may be a control */
    while (subj.len && (subj.p[subj.len - 1] == '\n' || subj.p[subj.len - 1] == '\r'))
        subj.p[--subj.len] = '\0';
    for (size_t i = 0; i < subj.len; i++)
        if ((unsigned char)subj.p[i] < 0x20 || subj.p[i] == 0x7f) {
            rc = GH_EINVAL;
            goto out;
        }
    if (subj.len == 0 || subj.len > 512) {
        rc = GH_EINVAL;
        goto out;
    }

    unsigned char rnd[16];
    char id[33], boundary[40];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2hex(id, sizeof id, rnd, sizeof rnd);
    snprintf(boundary, sizeof boundary, "=_gh_%.24s", id);
    char date[64];
    time_t t = (time_t)(v->now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    const char *domain = strchr(v->from, '@') + 1;

    putf(&msg, "Date: %s\r\n", date);
    putf(&msg, "From: %s\r\n", v->from);
    putf(&msg, "To: %s\r\n", v->to);
    if (ascii_printable(subj.p)) {
        puts_(&msg, "Subject: ");
        puts_(&msg, subj.p);
        puts_(&msg, "\r\n");
    } else {
        /* RFC 2047 encoded words of at most 45 bytes of input each (no UTF-8 sequence split:
         * a decoder joins adjacent encoded words before decoding, RFC 2047 6.2 notwithstanding,
         * every mail client does) */
        puts_(&msg, "Subject:");
        for (size_t i = 0; i < subj.len && !msg.err;) {
            size_t chunk = subj.len - i < 45 ? subj.len - i : 45;
            while (i + chunk < subj.len && ((unsigned char)subj.p[i + chunk] & 0xc0) == 0x80)
                chunk--;
            char enc[80];
            sodium_bin2base64(enc, sizeof enc, (const unsigned char *)subj.p + i, chunk,
                              sodium_base64_VARIANT_ORIGINAL);
            putf(&msg, " =?UTF-8?B?%s?=\r\n", enc);
            i += chunk;
        }
    }
    putf(&msg, "Message-ID: <%s@%s>\r\n", id, domain);
    putf(&msg, "X-Gatehouse-Kind: %s\r\n", kind_names[kind]);
    puts_(&msg, "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n");
    putf(&msg, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary);
    buf_t crlf = {0};
    putf(&msg,
         "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n",
         boundary);
    to_crlf(&crlf, text.p ? text.p : "");
    put_base64(&msg, crlf.p ? crlf.p : "", crlf.len);
    gh_mem_free(GH_MEM_MAIL, crlf.p);
    crlf = (buf_t){0};
    putf(&msg,
         "--%s\r\nContent-Type: text/html; charset=utf-8\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n",
         boundary);
    to_crlf(&crlf, "<!doctype html>\n<html><body>\n");
    to_crlf(&crlf, html.p ? html.p : "");
    puts_(&crlf, "</body></html>\r\n");
    put_base64(&msg, crlf.p ? crlf.p : "", crlf.len);
    rc = crlf.err;
    gh_mem_free(GH_MEM_MAIL, crlf.p);
    putf(&msg, "--%s--\r\n", boundary);
    if (!rc)
        rc = msg.err;
    if (rc == 0) {
        *out = msg.p;
        *len = msg.len;
        msg.p = NULL;
    }
out:
    for (int i = 0; i < 3; i++)
        gh_mem_free(GH_MEM_MAIL, ftpl[i]);
    gh_mem_free(GH_MEM_MAIL, subj.p);
    gh_mem_free(GH_MEM_MAIL, text.p);
    gh_mem_free(GH_MEM_MAIL, html.p);
    gh_mem_free(GH_MEM_MAIL, msg.p);
    return rc;
}
