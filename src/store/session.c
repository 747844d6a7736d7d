/*
 * session.c — what all session backends share: the names of the reasons a session ends, which
 * are the `reason` label of gatehouse_sessions_ended_total and so must never change, and the one
 * place a session's client (IP, User-Agent) is cleaned before any backend keeps it.
 *
 * The design decision: a User-Agent is whatever a client chose to send, and it ends up in HTML,
 * in JSON (jansson refuses invalid UTF-8, which would turn a listing into a 503) and in other
 * people's eyes. So it is made valid UTF-8 byte by byte, every character that could hide or
 * reorder text becomes '?', and it is cut to a fixed size at a character boundary — before it
 * is stored, not when it is shown, so every backend and every reader sees the same safe text.
 */
#include "store/session.h"

#include <arpa/inet.h>
#include <assert.h>
#include <string.h>

static const char *const end_names[] = {
#define GH__END_NAME(e, n) n,
    GH_SESSION_END_MAP(GH__END_NAME)
#undef GH__END_NAME
};

const char *gh_session_end_name(gh_session_end_t reason)
{
    return (unsigned)reason < GH_END__COUNT ? end_names[reason] : "?";
}

/* The length of the valid UTF-8 sequence at s (n bytes left) and its code point, or 0 when the
 * byte at s starts no valid sequence (overlong forms, surrogates and values past U+10FFFF
 * included, as RFC 3629 says). */
static size_t utf8_char(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Characters a person must never see as they are: controls (C0, DEL, C1), and the ones that
 * make text read differently from what it is — bidi embeddings, overrides and isolates, line and
 * paragraph separators, zero-width and directional marks, the byte order mark. */
static bool hidden(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff;
}

static void clean_ip(char out[GH_SESSION_IP_MAX + 1], const char *ip)
{
    out[0] = '\0';
    if (!ip)
        return;
    size_t n = strnlen(ip, GH_SESSION_IP_MAX + 1);
    if (n == 0 || n > GH_SESSION_IP_MAX)
        return;
    char text[GH_SESSION_IP_MAX + 1];
    memcpy(text, ip, n);
    text[n] = '\0';
    unsigned char raw[16];
    /* Written back in the canonical form inet_ntop gives, so one address is one string. */
    if (inet_pton(AF_INET, text, raw) == 1) {
        if (!inet_ntop(AF_INET, raw, out, GH_SESSION_IP_MAX + 1))
            out[0] = '\0';
    } else if (inet_pton(AF_INET6, text, raw) == 1) {
        static const unsigned char unspecified[16];
        if (memcmp(raw, unspecified, sizeof raw) == 0 || /* "::": no address at all */
            !inet_ntop(AF_INET6, raw, out, GH_SESSION_IP_MAX + 1))
            out[0] = '\0';
    }
}

void gh_session_client_make(gh_session_client_t *out, const char *ip, const char *ua, size_t ua_len)
{
    assert(out);
    clean_ip(out->ip, ip);
    const unsigned char *s = (const unsigned char *)ua;
    size_t o = 0, n = ua ? ua_len : 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        size_t len = utf8_char(s + i, n - i, &cp);
        if (len == 0 || hidden(cp)) { /* one '?' per invalid byte or hidden character */
            if (o + 1 > GH_SESSION_UA_MAX)
                break;
            out->user_agent[o++] = '?';
            i += len ? len : 1;
            continue;
        }
        if (o + len > GH_SESSION_UA_MAX) /* never half a character */
            break;
        memmove(out->user_agent + o, s + i, len); /* o <= i: cleaning in place is fine */
        o += len;
        i += len;
    }
    out->user_agent[o] = '\0';
}
