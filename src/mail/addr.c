/*
 * addr.c — the strict address parser: the only way an address reaches a header or an SMTP
 * envelope.
 *
 * The one design decision: accept far less than RFC 5322 allows — local@domain, dot-atom local
 * part, LDH domain with at least one dot, ASCII only — and normalize to lower case, so that one
 * mailbox has one spelling (uniqueness is then a plain comparison). Quoted local parts,
 * comments, display names, IP literals and internationalized addresses are refused: none of
 * them is needed to reset a password, and each is a place where a CR/LF or a second recipient
 * could hide.
 */
#include "mail/mail.h"

#include <string.h>

static bool atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL;
}

static bool ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

int gh_mail_addr_normalize(const char *in, size_t len, char out[GH_MAIL_ADDR_MAX + 1])
{
    out[0] = '\0';
    if (!in || len == 0 || len > GH_MAIL_ADDR_MAX)
        return GH_EINVAL;
    const char *at = memchr(in, '@', len);
    if (!at)
        return GH_EINVAL;
    size_t llen = (size_t)(at - in), dlen = len - llen - 1;
    if (llen == 0 || llen > GH_MAIL_LOCAL_MAX || dlen < 3)
        return GH_EINVAL;
    /* local part: atoms separated by single dots */
    for (size_t i = 0; i < llen; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '.') {
            if (i == 0 || i == llen - 1 || in[i - 1] == '.')
                return GH_EINVAL;
        } else if (!atext(c)) {
            return GH_EINVAL;
        }
    }
    /* domain: labels of 1..63 LDH characters, not starting or ending with '-', at least two */
    const char *d = at + 1;
    size_t label = 0, labels = 0;
    for (size_t i = 0; i < dlen; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return GH_EINVAL;
            label = 0;
            labels++;
        } else {
            if (!ldh(c) || (label == 0 && c == '-') || ++label > 63)
                return GH_EINVAL;
        }
    }
    if (label == 0 || d[dlen - 1] == '-' || labels == 0)
        return GH_EINVAL;
    /* the last label (the top-level domain) is not all digits: no IPv4 in disguise */
    size_t k = dlen, digits = 0;
    while (k > 0 && d[k - 1] != '.') {
        digits += d[k - 1] >= '0' && d[k - 1] <= '9';
        k--;
    }
    if (digits == dlen - k)
        return GH_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[len] = '\0';
    return 0;
}

bool gh_mail_product_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > GH_MAIL_PRODUCT_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t extra;
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80)
            extra = 0;
        else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
            extra = 1;
        else if ((c & 0xf0) == 0xe0)
            extra = 2;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
            extra = 3;
        else
            return false;
        if (i + extra >= n)
            return false;
        for (size_t j = 1; j <= extra; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return false;
        /* C1 controls (U+0080..U+009F) */
        if (extra == 1 && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0)
            return false;
        i += extra + 1;
    }
    return true;
}
