/*
 * heap.c — `gatehouse load` reads the node's sampling heap profile (GET /debug/heap, admin) at
 * the start and the end of a run and says which call stacks grew: the soak's verdict then names
 * the code, as the node's own leak alert does.
 *
 * The one design decision: the comparison is of two collapsed-stack texts (the flame-graph
 * format the node serves), matched line by line on the frames, so the tool needs nothing of the
 * node but that public route; a stack counts as growing only past GH_LOAD_NOISE_BAND, the band a
 * healthy node's memory wanders in.
 */
#include "load/load.h"

#include <curl/curl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/heap.h"
#include "mem/mem.h"

#define HEAP_TEXT_MAX ((size_t)1 << 20)
#define HEAP_LINES_MAX 4096

typedef struct {
    char *buf;
    size_t len;
    bool overflow;
} sink_t;

static size_t sink_body(char *p, size_t size, size_t n, void *arg)
{
    sink_t *s = arg;
    size_t len = size * n;
    if (len > HEAP_TEXT_MAX - s->len) {
        s->overflow = true;
        return 0;
    }
    memcpy(s->buf + s->len, p, len);
    s->len += len;
    return len;
}

int gh_load_heap_fetch(const gh_load_opts_t *o, char **text, size_t *len, char *why, size_t whylen)
{
    *text = NULL;
    *len = 0;
    if (!o->admin_token[0]) {
        snprintf(why, whylen, "no --admin-token: /debug/heap is an admin route");
        return GH_EINVAL;
    }
    sink_t s = {.buf = gh_mem_alloc(GH_MEM_OTHER, HEAP_TEXT_MAX + 1)};
    CURL *c = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char url[GH_LOAD_URL_MAX + 32], auth[GH_LOAD_TOKEN_MAX + 32];
    int rc = GH_EIO;
    snprintf(url, sizeof url, "%s/debug/heap", o->url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->admin_token);
    if (!s.buf || !c || !(hdrs = curl_slist_append(NULL, auth))) {
        snprintf(why, whylen, "out of memory");
        rc = GH_ENOMEM;
        goto out;
    }
    CURLcode cc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink_body);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    if (cc == CURLE_OK)
        cc = curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cc == CURLE_OK)
        cc = curl_easy_perform(c);
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (cc != CURLE_OK) {
        snprintf(why, whylen, "GET /debug/heap: %s", curl_easy_strerror(cc));
    } else if (status != 200) {
        snprintf(why, whylen, "GET /debug/heap answered %ld", status);
    } else {
        s.buf[s.len] = '\0';
        *text = s.buf;
        *len = s.len;
        s.buf = NULL;
        rc = 0;
    }
out:
    sodium_memzero(auth, sizeof auth);
    curl_slist_free_all(hdrs);
    if (c)
        curl_easy_cleanup(c);
    gh_mem_free(GH_MEM_OTHER, s.buf);
    return rc;
}

typedef struct {
    const char *frames; /* not NUL-terminated: flen bytes */
    size_t flen;
    double bytes;
} line_t;

/* Splits "frames bytes\n" lines; returns how many (at most max). */
static size_t parse(const char *t, size_t len, line_t *out, size_t max)
{
    size_t n = 0;
    const char *end = t + len;
    while (t < end && n < max) {
        const char *nl = memchr(t, '\n', (size_t)(end - t));
        const char *le = nl ? nl : end;
        const char *sp = le;
        while (sp > t && sp[-1] != ' ')
            sp--;
        if (sp > t) {
            out[n].frames = t;
            out[n].flen = (size_t)(sp - 1 - t);
            out[n].bytes = strtod(sp, NULL);
            n++;
        }
        t = nl ? nl + 1 : end;
    }
    return n;
}

/* "a;b;c" (root first) -> "c ← b ← a", at most three frames, allocator wrappers at the leaf
 * (gh_mem_alloc ...) skipped as the node's own alerts do. */
static void headline(const line_t *l, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    /* the frames, leaf first */
    const char *fr[64] = {0};
    size_t fl[64] = {0}, nf = 0;
    for (const char *end = l->frames + l->flen; end > l->frames && nf < 64;) {
        const char *start = end;
        while (start > l->frames && start[-1] != ';')
            start--;
        fr[nf] = start;
        fl[nf++] = (size_t)(end - start);
        end = start > l->frames ? start - 1 : l->frames;
    }
    if (nf == 0)
        return;
    size_t first = 0;
    char frame[160];
    for (; first + 1 < nf; first++) {
        snprintf(frame, sizeof frame, "%.*s", (int)fl[first], fr[first]);
        if (!gh_heap_is_wrapper(frame))
            break;
    }
    snprintf(frame, sizeof frame, "%.*s", (int)fl[first], fr[first]);
    if (strstr(frame, "+0x")) /* only unnamed frames and wrappers: start at the leaf */
        first = 0;
    for (size_t i = first; i < nf && i < first + 3 && len + 1 < n; i++) {
        int w = snprintf(out + len, n - len, "%s%.*s", i > first ? " \xe2\x86\x90 " : "",
                         (int)fl[i], fr[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len >= n)
        out[n - 1] = '\0';
    gh_heap_utf8_trim(out);
}

int gh_load_heap_compare(const char *a, size_t alen, const char *b, size_t blen,
                         gh_load_heap_t *out)
{
    memset(out, 0, sizeof *out);
    line_t *la = gh_mem_calloc(GH_MEM_OTHER, HEAP_LINES_MAX, sizeof *la);
    line_t *lb = gh_mem_calloc(GH_MEM_OTHER, HEAP_LINES_MAX, sizeof *lb);
    if (!la || !lb) {
        gh_mem_free(GH_MEM_OTHER, la);
        gh_mem_free(GH_MEM_OTHER, lb);
        return GH_ENOMEM;
    }
    size_t na = parse(a, alen, la, HEAP_LINES_MAX), nb = parse(b, blen, lb, HEAP_LINES_MAX);
    out->fetched = true;
    for (size_t j = 0; j < nb; j++) {
        double before = 0;
        for (size_t i = 0; i < na; i++)
            if (la[i].flen == lb[j].flen && memcmp(la[i].frames, lb[j].frames, la[i].flen) == 0) {
                before = la[i].bytes;
                break;
            }
        double g = lb[j].bytes - before;
        if (g <= 0)
            continue;
        out->total_growth += g;
        if (g <= GH_LOAD_NOISE_BAND)
            continue;
        size_t at = out->n;
        while (at > 0 && out->top[at - 1].growth < g)
            at--;
        if (at >= GH_LOAD_HEAP_TOP)
            continue;
        size_t last = out->n < GH_LOAD_HEAP_TOP ? out->n : GH_LOAD_HEAP_TOP - 1;
        memmove(&out->top[at + 1], &out->top[at], (last - at) * sizeof out->top[0]);
        headline(&lb[j], out->top[at].stack, sizeof out->top[at].stack);
        out->top[at].start_bytes = before;
        out->top[at].end_bytes = lb[j].bytes;
        out->top[at].growth = g;
        if (out->n < GH_LOAD_HEAP_TOP)
            out->n++;
    }
    for (size_t i = 0; i < out->n; i++)
        out->top[i].share = out->total_growth > 0 ? out->top[i].growth / out->total_growth : 0;
    gh_mem_free(GH_MEM_OTHER, la);
    gh_mem_free(GH_MEM_OTHER, lb);
    return 0;
}

void gh_load_heap_explain(const gh_load_heap_t *h, gh_load_memory_t *m)
{
    /* A pass is a pass: caches that filled are in the summary, not in the verdict's reason. */
    if (!h->fetched || h->n == 0 || m->verdict != GH_LOAD_LEAK)
        return;
    size_t len = strlen(m->reason);
    snprintf(m->reason + len, sizeof m->reason - len,
             "; the heap grew most at %s (%.0f%% of its growth, /debug/heap)", h->top[0].stack,
             100 * h->top[0].share);
    gh_heap_utf8_trim(m->reason);
}
