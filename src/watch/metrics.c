/*
 * metrics.c — the metrics registry (metrics.h) and its Prometheus text exposition.
 *
 * The decision a reader must know: every series of a family is allocated when the family is
 * registered, as one flat array of atomic 64-bit cells, so an update is an index and one or two
 * relaxed atomic operations. A counter is one integer cell; a gauge is one cell holding the bits
 * of a double; a histogram series is (nbuckets + 1) non-cumulative bucket cells followed by one
 * cell with the bits of the sum. Buckets are stored non-cumulative so an observation touches one
 * bucket; render adds them up, and derives _count from the same reads so _count always equals the
 * +Inf bucket even while observations race the render.
 */
#include "watch/metrics.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem/mem.h"

struct gh_metric {
    gh_metric_t *next;
    char *name;
    char *help;
    gh_metric_type_t type;
    unsigned flags;
    size_t nlabels;
    char *label_names[GH_METRIC_MAX_LABELS];
    char **label_values[GH_METRIC_MAX_LABELS];
    size_t label_nvalues[GH_METRIC_MAX_LABELS];
    size_t nseries;
    double *buckets; /* histograms: nbuckets finite bounds */
    size_t nbuckets;
    size_t stride;                /* cells per series */
    _Atomic uint64_t *cells;      /* NULL for callback families */
    gh_metric_collect_fn collect; /* NULL for stored families */
    void *collect_ctx;
};

struct gh_metrics {
    gh_metric_t *head;
    gh_metric_t *tail;
    size_t max_callback_series; /* sizes the scratch array a render hands to callbacks */
};

const double gh_metric_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t gh_metric_latency_nbuckets =
    sizeof gh_metric_latency_buckets / sizeof gh_metric_latency_buckets[0];

/* ---------------------------------------------------------------- registry ---- */

int gh_metrics_create(gh_metrics_t **out)
{
    assert(out);
    *out = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof **out);
    return *out ? 0 : GH_ENOMEM;
}

static void family_free(gh_metric_t *f)
{
    if (!f)
        return;
    gh_mem_free(GH_MEM_METRICS, f->name);
    gh_mem_free(GH_MEM_METRICS, f->help);
    for (size_t i = 0; i < GH_METRIC_MAX_LABELS; i++) {
        gh_mem_free(GH_MEM_METRICS, f->label_names[i]);
        if (f->label_values[i]) {
            for (size_t j = 0; j < f->label_nvalues[i]; j++)
                gh_mem_free(GH_MEM_METRICS, f->label_values[i][j]);
            gh_mem_free(GH_MEM_METRICS, f->label_values[i]);
        }
    }
    gh_mem_free(GH_MEM_METRICS, f->buckets);
    gh_mem_free(GH_MEM_METRICS, (void *)f->cells);
    gh_mem_free(GH_MEM_METRICS, f);
}

void gh_metrics_destroy(gh_metrics_t **m)
{
    if (!m || !*m)
        return;
    gh_metric_t *f = (*m)->head;
    while (f) {
        gh_metric_t *next = f->next;
        family_free(f);
        f = next;
    }
    gh_mem_free(GH_MEM_METRICS, *m);
    *m = NULL;
}

static bool valid_metric_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool valid_label_name(const char *s, gh_metric_type_t type)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0)
        return false;
    /* "le" is the bucket label a histogram adds itself. */
    if (type == GH_METRIC_HISTOGRAM && strcmp(s, "le") == 0)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static int check_desc(const gh_metrics_t *m, const gh_metric_desc_t *d, size_t *nseries)
{
    if (!valid_metric_name(d->name) || !d->help || strchr(d->help, '\n'))
        return GH_EINVAL;
    if (d->type != GH_METRIC_COUNTER && d->type != GH_METRIC_GAUGE &&
        d->type != GH_METRIC_HISTOGRAM)
        return GH_EINVAL;
    if (d->nlabels > GH_METRIC_MAX_LABELS || (d->nlabels > 0 && !d->labels))
        return GH_EINVAL;
    if (d->collect && d->type == GH_METRIC_HISTOGRAM)
        return GH_EINVAL;
    if (d->type == GH_METRIC_HISTOGRAM) {
        if (d->nbuckets > GH_METRIC_MAX_BUCKETS || (d->nbuckets > 0 && !d->buckets))
            return GH_EINVAL;
        for (size_t i = 0; i < d->nbuckets; i++) {
            if (!isfinite(d->buckets[i]) || (i > 0 && !(d->buckets[i] > d->buckets[i - 1])))
                return GH_EINVAL;
        }
    } else if (d->nbuckets > 0) {
        return GH_EINVAL;
    }
    size_t n = 1;
    for (size_t i = 0; i < d->nlabels; i++) {
        const gh_metric_label_t *l = &d->labels[i];
        if (!valid_label_name(l->name, d->type) || l->nvalues == 0 || !l->values)
            return GH_EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(d->labels[j].name, l->name) == 0)
                return GH_EINVAL;
        }
        /* Duplicate values would render the same series twice. */
        for (size_t v = 0; v < l->nvalues; v++) {
            if (!l->values[v] || !*l->values[v])
                return GH_EINVAL;
            for (size_t w = 0; w < v; w++) {
                if (strcmp(l->values[v], l->values[w]) == 0)
                    return GH_EINVAL;
            }
        }
        if (l->nvalues > GH_METRIC_MAX_SERIES / n)
            return GH_ERANGE;
        n *= l->nvalues;
    }
    for (const gh_metric_t *f = m->head; f; f = f->next) {
        if (strcmp(f->name, d->name) == 0)
            return GH_EEXISTS;
    }
    *nseries = n;
    return 0;
}

int gh_metrics_add(gh_metrics_t *m, const gh_metric_desc_t *d, gh_metric_t **out)
{
    assert(m && d);
    size_t nseries = 0;
    gh_metric_t *f = NULL;
    int rc = check_desc(m, d, &nseries);
    if (rc)
        goto fail;
    rc = GH_ENOMEM;
    f = gh_mem_calloc(GH_MEM_METRICS, 1, sizeof *f);
    if (!f)
        goto fail;
    f->type = d->type;
    f->flags = d->flags;
    f->nseries = nseries;
    f->nlabels = d->nlabels;
    f->collect = d->collect;
    f->collect_ctx = d->collect_ctx;
    f->name = gh_mem_strdup(GH_MEM_METRICS, d->name);
    f->help = gh_mem_strdup(GH_MEM_METRICS, d->help);
    if (!f->name || !f->help)
        goto fail;
    for (size_t i = 0; i < d->nlabels; i++) {
        const gh_metric_label_t *l = &d->labels[i];
        f->label_names[i] = gh_mem_strdup(GH_MEM_METRICS, l->name);
        f->label_values[i] = gh_mem_calloc(GH_MEM_METRICS, l->nvalues, sizeof(char *));
        if (!f->label_names[i] || !f->label_values[i])
            goto fail;
        f->label_nvalues[i] = l->nvalues;
        for (size_t v = 0; v < l->nvalues; v++) {
            f->label_values[i][v] = gh_mem_strdup(GH_MEM_METRICS, l->values[v]);
            if (!f->label_values[i][v])
                goto fail;
        }
    }
    if (d->type == GH_METRIC_HISTOGRAM && d->nbuckets > 0) {
        f->buckets = gh_mem_calloc(GH_MEM_METRICS, d->nbuckets, sizeof(double));
        if (!f->buckets)
            goto fail;
        memcpy(f->buckets, d->buckets, d->nbuckets * sizeof(double));
    }
    f->nbuckets = d->type == GH_METRIC_HISTOGRAM ? d->nbuckets : 0;
    f->stride = d->type == GH_METRIC_HISTOGRAM ? f->nbuckets + 2 : 1;
    if (!f->collect) {
        /* Zeroed memory is a valid all-zero state for every cell: integer 0 and the bits of
         * +0.0 are both all-zero. */
        f->cells = gh_mem_calloc(GH_MEM_METRICS, nseries * f->stride, sizeof(_Atomic uint64_t));
        if (!f->cells)
            goto fail;
    }
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    if (f->collect && nseries > m->max_callback_series)
        m->max_callback_series = nseries;
    if (out)
        *out = f;
    return 0;
fail:
    family_free(f);
    if (out)
        *out = NULL;
    return rc;
}

/* ------------------------------------------------------------ request path ---- */

static inline uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static inline double bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* A double added atomically: compare-and-swap on its bits until no other thread got between. */
static inline void atomic_add_double(_Atomic uint64_t *cell, double delta)
{
    uint64_t old = atomic_load_explicit(cell, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(cell, &old, dbits(bitsd(old) + delta),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void gh_metric_inc(gh_metric_t *f, size_t series)
{
    gh_metric_add(f, series, 1);
}

void gh_metric_add(gh_metric_t *f, size_t series, uint64_t n)
{
    assert(f && f->type == GH_METRIC_COUNTER && f->cells && series < f->nseries);
    atomic_fetch_add_explicit(&f->cells[series], n, memory_order_relaxed);
}

void gh_metric_set(gh_metric_t *f, size_t series, double v)
{
    assert(f && f->type == GH_METRIC_GAUGE && f->cells && series < f->nseries);
    atomic_store_explicit(&f->cells[series], dbits(v), memory_order_relaxed);
}

void gh_metric_gauge_add(gh_metric_t *f, size_t series, double delta)
{
    assert(f && f->type == GH_METRIC_GAUGE && f->cells && series < f->nseries);
    atomic_add_double(&f->cells[series], delta);
}

void gh_metric_observe(gh_metric_t *f, size_t series, double v)
{
    assert(f && f->type == GH_METRIC_HISTOGRAM && f->cells && series < f->nseries);
    if (isnan(v))
        return;
    _Atomic uint64_t *cell = &f->cells[series * f->stride];
    size_t b = 0;
    while (b < f->nbuckets && v > f->buckets[b])
        b++;
    /* b == nbuckets is the +Inf bucket. */
    atomic_fetch_add_explicit(&cell[b], 1, memory_order_relaxed);
    atomic_add_double(&cell[f->nbuckets + 1], v);
}

void gh_metric_observe_ns(gh_metric_t *f, size_t series, int64_t ns)
{
    gh_metric_observe(f, series, (double)ns / 1e9);
}

size_t gh_metric_series(const gh_metric_t *f, const size_t *idx)
{
    assert(f);
    size_t s = 0;
    for (size_t i = 0; i < f->nlabels; i++) {
        assert(idx[i] < f->label_nvalues[i]);
        s = s * f->label_nvalues[i] + idx[i];
    }
    assert(s < f->nseries);
    return s;
}

size_t gh_metric_nseries(const gh_metric_t *f)
{
    assert(f);
    return f->nseries;
}

int gh_metric_label_index(const gh_metric_t *f, size_t label, const char *value)
{
    assert(f);
    if (label >= f->nlabels || !value)
        return -1;
    for (size_t v = 0; v < f->label_nvalues[label]; v++) {
        if (strcmp(f->label_values[label][v], value) == 0)
            return (int)v;
    }
    return -1;
}

/* Reads a histogram series once: counts[] cumulative, total = the +Inf bucket. */
static uint64_t read_histogram(const gh_metric_t *f, size_t series, uint64_t *cumulative,
                               double *sum)
{
    _Atomic uint64_t *cell = &f->cells[series * f->stride];
    uint64_t acc = 0;
    for (size_t b = 0; b <= f->nbuckets; b++) {
        acc += atomic_load_explicit(&cell[b], memory_order_relaxed);
        if (cumulative)
            cumulative[b] = acc;
    }
    if (sum)
        *sum = bitsd(atomic_load_explicit(&cell[f->nbuckets + 1], memory_order_relaxed));
    return acc;
}

double gh_metric_value(const gh_metric_t *f, size_t series)
{
    assert(f && series < f->nseries);
    if (!f->cells)
        return NAN;
    switch (f->type) {
    case GH_METRIC_COUNTER:
        return (double)atomic_load_explicit(&f->cells[series], memory_order_relaxed);
    case GH_METRIC_GAUGE:
        return bitsd(atomic_load_explicit(&f->cells[series], memory_order_relaxed));
    case GH_METRIC_HISTOGRAM:
        return (double)read_histogram(f, series, NULL, NULL);
    }
    return NAN;
}

double gh_metric_total(const gh_metric_t *f)
{
    assert(f);
    double total = 0;
    for (size_t s = 0; s < f->nseries; s++)
        total += gh_metric_value(f, s);
    return total;
}

double gh_metric_sum(const gh_metric_t *f, size_t series)
{
    assert(f && f->type == GH_METRIC_HISTOGRAM && series < f->nseries);
    double sum = 0;
    (void)read_histogram(f, series, NULL, &sum);
    return sum;
}

/* ------------------------------------------------------------------ render ---- */

/* A growable text buffer with a hard maximum; the first error sticks, so the renderer appends
 * without checking each call and looks once at the end (curl's dynbuf has the same shape). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* text bytes allowed, NUL excluded */
    int err;
} textbuf_t;

static void tb_reserve(textbuf_t *b, size_t extra)
{
    if (b->err)
        return;
    if (extra > b->max - b->len) {
        b->err = GH_ETOOBIG;
        return;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = gh_mem_realloc(GH_MEM_METRICS, b->data, cap);
    if (!p) {
        b->err = GH_ENOMEM;
        return;
    }
    b->data = p;
    b->cap = cap;
}

static void tb_put(textbuf_t *b, const char *s, size_t n)
{
    tb_reserve(b, n);
    if (b->err)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void tb_puts(textbuf_t *b, const char *s)
{
    tb_put(b, s, strlen(s));
}

static void tb_putc(textbuf_t *b, char c)
{
    tb_put(b, &c, 1);
}

/* Escapes for the text format: label values escape \ " and newline; HELP escapes \ and newline. */
static void tb_escaped(textbuf_t *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            tb_put(b, "\\\\", 2);
        else if (*p == '\n')
            tb_put(b, "\\n", 2);
        else if (quote && *p == '"')
            tb_put(b, "\\\"", 2);
        else
            tb_putc(b, *p);
    }
}

/* Shortest of %.15g/%.17g that reads back as the same double, with Prometheus' spellings of the
 * special values ("+Inf", "-Inf", "NaN"). out holds 32 bytes. */
static const char *fmt_double(double v, char out[32])
{
    if (isnan(v))
        return "NaN";
    if (isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    snprintf(out, 32, "%.15g", v);
    if (strtod(out, NULL) != v)
        snprintf(out, 32, "%.17g", v);
    return out;
}

static void tb_double(textbuf_t *b, double v)
{
    char tmp[32];
    tb_puts(b, fmt_double(v, tmp));
}

static void tb_u64(textbuf_t *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    tb_put(b, tmp, (size_t)n);
}

/* {a="x",b="y"} for one series, plus le="…" for a histogram bucket (le may be NULL). Nothing at
 * all for a family without labels and no le. */
static void tb_labels(textbuf_t *b, const gh_metric_t *f, size_t series, const char *le)
{
    if (f->nlabels == 0 && !le)
        return;
    size_t idx[GH_METRIC_MAX_LABELS];
    size_t rest = series;
    for (size_t i = f->nlabels; i-- > 0;) {
        idx[i] = rest % f->label_nvalues[i];
        rest /= f->label_nvalues[i];
    }
    assert(rest == 0);
    tb_putc(b, '{');
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i)
            tb_putc(b, ',');
        tb_puts(b, f->label_names[i]);
        tb_put(b, "=\"", 2);
        tb_escaped(b, f->label_values[i][idx[i]], true);
        tb_putc(b, '"');
    }
    if (le) {
        if (f->nlabels)
            tb_putc(b, ',');
        tb_put(b, "le=\"", 4);
        tb_puts(b, le);
        tb_putc(b, '"');
    }
    tb_putc(b, '}');
}

static void tb_sample_start(textbuf_t *b, const gh_metric_t *f, const char *suffix, size_t series,
                            const char *le)
{
    tb_puts(b, f->name);
    if (suffix)
        tb_puts(b, suffix);
    tb_labels(b, f, series, le);
    tb_putc(b, ' ');
}

static const char *type_name(gh_metric_type_t t)
{
    switch (t) {
    case GH_METRIC_COUNTER:
        return "counter";
    case GH_METRIC_GAUGE:
        return "gauge";
    case GH_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static void render_histogram(textbuf_t *b, const gh_metric_t *f)
{
    uint64_t cumulative[GH_METRIC_MAX_BUCKETS + 1];
    for (size_t s = 0; s < f->nseries; s++) {
        double sum = 0;
        uint64_t count = read_histogram(f, s, cumulative, &sum);
        assert(count == cumulative[f->nbuckets]);
        if (count == 0 && (f->flags & GH_METRIC_SKIP_ZERO))
            continue;
        for (size_t i = 0; i <= f->nbuckets; i++) {
            char le[32];
            tb_sample_start(b, f, "_bucket", s,
                            i < f->nbuckets ? fmt_double(f->buckets[i], le) : "+Inf");
            tb_u64(b, cumulative[i]);
            tb_putc(b, '\n');
        }
        tb_sample_start(b, f, "_sum", s, NULL);
        tb_double(b, sum);
        tb_putc(b, '\n');
        tb_sample_start(b, f, "_count", s, NULL);
        tb_u64(b, count);
        tb_putc(b, '\n');
    }
}

static void render_family(textbuf_t *b, const gh_metric_t *f, double *scratch)
{
    if (f->collect) {
        assert(scratch && f->nseries > 0);
        for (size_t s = 0; s < f->nseries; s++)
            scratch[s] = 0;
        if (f->collect(f->collect_ctx, scratch, f->nseries) != 0)
            return; /* the owner has no figure right now: leave the family out */
    }
    tb_put(b, "# HELP ", 7);
    tb_puts(b, f->name);
    if (*f->help) {
        tb_putc(b, ' ');
        tb_escaped(b, f->help, false);
    }
    tb_put(b, "\n# TYPE ", 8);
    tb_puts(b, f->name);
    tb_putc(b, ' ');
    tb_puts(b, type_name(f->type));
    tb_putc(b, '\n');

    if (f->type == GH_METRIC_HISTOGRAM) {
        render_histogram(b, f);
        return;
    }
    bool skip_zero = f->type == GH_METRIC_COUNTER && (f->flags & GH_METRIC_SKIP_ZERO);
    for (size_t s = 0; s < f->nseries; s++) {
        if (f->collect) {
            if (skip_zero && scratch[s] == 0)
                continue;
            tb_sample_start(b, f, NULL, s, NULL);
            tb_double(b, scratch[s]);
        } else if (f->type == GH_METRIC_COUNTER) {
            uint64_t v = atomic_load_explicit(&f->cells[s], memory_order_relaxed);
            if (skip_zero && v == 0)
                continue;
            tb_sample_start(b, f, NULL, s, NULL);
            tb_u64(b, v);
        } else {
            tb_sample_start(b, f, NULL, s, NULL);
            tb_double(b, bitsd(atomic_load_explicit(&f->cells[s], memory_order_relaxed)));
        }
        tb_putc(b, '\n');
    }
}

int gh_metrics_render(gh_metrics_t *m, size_t max_bytes, char **text, size_t *len)
{
    assert(m && text && len);
    textbuf_t b = {.max = max_bytes};
    double *scratch = NULL;
    *text = NULL;
    *len = 0;
    if (m->max_callback_series > 0) {
        scratch = gh_mem_calloc(GH_MEM_METRICS, m->max_callback_series, sizeof(double));
        if (!scratch) {
            b.err = GH_ENOMEM;
            goto out;
        }
    }
    tb_reserve(&b, 0); /* an empty registry still yields a valid "" string */
    for (const gh_metric_t *f = m->head; f && !b.err; f = f->next)
        render_family(&b, f, scratch);
out:
    gh_mem_free(GH_MEM_METRICS, scratch);
    if (b.err) {
        gh_mem_free(GH_MEM_METRICS, b.data);
        return b.err;
    }
    *text = b.data;
    *len = b.len;
    return 0;
}

void gh_metrics_text_free(char **text)
{
    if (!text)
        return;
    gh_mem_free(GH_MEM_METRICS, *text);
    *text = NULL;
}
