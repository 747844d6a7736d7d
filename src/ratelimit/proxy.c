/*
 * proxy.c — client addresses: parsing, the trusted-proxy list, and the X-Forwarded-For walk.
 *
 * Design decision: X-Forwarded-For is read from the right. Each proxy appends the address it
 * received the request from, so only the right-most entries were written by machines we trust;
 * everything to the left of the first untrusted hop is whatever the client chose to send, and
 * believing it would let one attacker spread its failed logins over any number of made-up
 * addresses.
 */
#include "ratelimit/ratelimit.h"

#include <arpa/inet.h>
#include <assert.h>
#include <string.h>

static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool gh_ip_is_v4(const gh_ip_t *ip)
{
    return memcmp(ip->b, v4_prefix, sizeof v4_prefix) == 0;
}

/* Strips spaces and tabs from both ends of s[0..*len). */
static const char *trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return s;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int gh_ip_parse(const char *s, size_t len, gh_ip_t *out)
{
    char buf[GH_IP_STR + 1];
    s = trim(s, &len);
    if (len == 0)
        return GH_EINVAL;
    if (s[0] == '[') { /* "[v6]" or "[v6]:port" */
        const char *close = memchr(s, ']', len);
        if (!close)
            return GH_EINVAL;
        size_t alen = (size_t)(close - s) - 1, rest = len - alen - 2;
        if (rest && (close[1] != ':' || !all_digits(close + 2, rest - 1)))
            return GH_EINVAL;
        if (alen == 0 || alen >= sizeof buf)
            return GH_EINVAL;
        memcpy(buf, s + 1, alen);
        buf[alen] = '\0';
        return inet_pton(AF_INET6, buf, out->b) == 1 ? 0 : GH_EINVAL;
    }
    if (len >= sizeof buf)
        return GH_EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    const char *colon = strchr(buf, ':');
    if (colon && strchr(colon + 1, ':')) /* two colons: a bare IPv6 address */
        return inet_pton(AF_INET6, buf, out->b) == 1 ? 0 : GH_EINVAL;
    if (colon) { /* "a.b.c.d:port" */
        if (!all_digits(colon + 1, strlen(colon + 1)))
            return GH_EINVAL;
        buf[colon - buf] = '\0';
    }
    uint8_t v4[4];
    if (inet_pton(AF_INET, buf, v4) != 1)
        return GH_EINVAL;
    memcpy(out->b, v4_prefix, sizeof v4_prefix);
    memcpy(out->b + 12, v4, 4);
    return 0;
}

void gh_ip_format(const gh_ip_t *ip, char out[GH_IP_STR])
{
    if (gh_ip_is_v4(ip))
        inet_ntop(AF_INET, ip->b + 12, out, GH_IP_STR);
    else
        inet_ntop(AF_INET6, ip->b, out, GH_IP_STR);
}

static void mask(gh_ip_t *ip, unsigned prefix)
{
    assert(prefix <= 128);
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = prefix > i * 8 ? prefix - i * 8 : 0;
        if (keep < 8)
            ip->b[i] &= (uint8_t)(0xff00u >> keep);
    }
}

static int parse_cidr(const char *s, size_t len, gh_cidr_t *out)
{
    char buf[GH_IP_STR + 1];
    s = trim(s, &len);
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (alen == 0 || alen >= sizeof buf)
        return GH_EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    /* Plain addresses only: no brackets, no ports. */
    bool v4 = strchr(buf, ':') == NULL;
    if (v4) {
        memcpy(out->net.b, v4_prefix, sizeof v4_prefix);
        if (inet_pton(AF_INET, buf, out->net.b + 12) != 1)
            return GH_EINVAL;
    } else if (inet_pton(AF_INET6, buf, out->net.b) != 1) {
        return GH_EINVAL;
    }
    unsigned max = v4 ? 32 : 128, bits = max;
    if (slash) {
        size_t nlen = len - alen - 1;
        if (nlen > 3 || !all_digits(slash + 1, nlen))
            return GH_EINVAL;
        bits = 0;
        for (size_t i = 0; i < nlen; i++)
            bits = bits * 10 + (unsigned)(slash[1 + i] - '0');
        if (bits > max)
            return GH_EINVAL;
    }
    out->prefix = (uint8_t)(v4 ? bits + 96 : bits);
    mask(&out->net, out->prefix);
    return 0;
}

int gh_proxies_parse(const char *list, gh_proxies_t *out)
{
    out->n = 0;
    const char *p = list;
    size_t left = strlen(list), tl = left;
    if (trim(list, &tl), tl == 0)
        return 0;
    while (true) {
        const char *comma = memchr(p, ',', left);
        size_t len = comma ? (size_t)(comma - p) : left;
        if (out->n == GH_PROXIES_MAX)
            return GH_ELIMIT;
        if (parse_cidr(p, len, &out->nets[out->n]) != 0)
            return GH_EINVAL;
        out->n++;
        if (!comma)
            return 0;
        left -= len + 1;
        p = comma + 1;
    }
}

bool gh_proxies_contains(const gh_proxies_t *p, const gh_ip_t *ip)
{
    for (size_t i = 0; i < p->n; i++) {
        gh_ip_t m = *ip;
        mask(&m, p->nets[i].prefix);
        if (memcmp(m.b, p->nets[i].net.b, sizeof m.b) == 0)
            return true;
    }
    return false;
}

void gh_proxies_client(const gh_proxies_t *p, const gh_ip_t *peer, const char *const *xff,
                       size_t nxff, const char *real_ip, gh_ip_t *out)
{
    *out = *peer;
    if (!gh_proxies_contains(p, peer))
        return;
    if (nxff == 0) {
        gh_ip_t ip;
        if (real_ip && gh_ip_parse(real_ip, strlen(real_ip), &ip) == 0)
            *out = ip;
        return;
    }
    /* *out is always the last hop we have reason to believe: the peer, then each trusted hop. */
    for (size_t h = nxff; h-- > 0;) {
        const char *line = xff[h];
        size_t end = strlen(line);
        while (true) {
            size_t start = end;
            while (start > 0 && line[start - 1] != ',')
                start--;
            gh_ip_t hop;
            if (gh_ip_parse(line + start, end - start, &hop) != 0)
                return;
            *out = hop;
            if (!gh_proxies_contains(p, &hop))
                return;
            if (start == 0)
                break;
            end = start - 1; /* skip the comma */
        }
    }
}
