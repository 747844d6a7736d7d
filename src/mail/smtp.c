/*
 * smtp.c — one message to one recipient over SMTP, through libcurl.
 *
 * The one design decision: a fresh connection per message, with a hard time limit on the whole
 * exchange. The sender (account/outbox.c) delivers a handful of messages a second at most —
 * password resets and notices, not newsletters — so a connection cache would buy nothing, and a
 * fresh handle means a server that hangs or errors costs one bounded attempt and leaves no state
 * behind. STARTTLS is used whenever the server offers it (CURLUSESSL_TRY); smtps:// is TLS from
 * the first byte.
 */
#include "mail/mail.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *p;
    size_t left;
} reader_t;

static size_t read_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
    reader_t *r = arg;
    size_t n = size * nmemb;
    if (n > r->left)
        n = r->left;
    memcpy(buf, r->p, n);
    r->p += n;
    r->left -= n;
    return n;
}

int gh_mail_send(const gh_mail_send_t *m, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "curl_easy_init failed");
        return GH_EIO;
    }
    char from[GH_MAIL_ADDR_MAX + 3], curl_err[CURL_ERROR_SIZE] = "";
    snprintf(from, sizeof from, "<%s>", m->from);
    struct curl_slist *rcpt = curl_slist_append(NULL, m->to);
    reader_t r = {m->message, m->len};
    int rc = 0;
    if (!rcpt) {
        snprintf(err, errlen, "out of memory");
        rc = GH_EIO;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, m->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c, CURLOPT_READDATA, &r);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, m->timeout_ms > 0 ? m->timeout_ms : 30000L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    if (m->user && *m->user) {
        curl_easy_setopt(c, CURLOPT_USERNAME, m->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, m->password ? m->password : "");
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        snprintf(err, errlen, "%s (%ld)", curl_err[0] ? curl_err : curl_easy_strerror(cc), code);
        /* 5xx to the recipient or the data: the server will never take it */
        rc = (code >= 500 && code < 600 && cc != CURLE_LOGIN_DENIED) ? GH_EINVAL : GH_EIO;
    }
out:
    curl_slist_free_all(rcpt);
    curl_easy_cleanup(c);
    return rc;
}
