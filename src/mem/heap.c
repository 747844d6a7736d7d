/*
 * heap.c — the sampling heap profiler's tables and read-outs (heap.h). The interposer that feeds
 * them is heap_malloc.c, linked into the gatehouse binary only; in every other binary (the unit
 * tests, the benches) these tables stay empty and gh_heap_state() says "not linked in".
 *
 * The one design decision: everything here is static and fixed-size, so recording a sample never
 * allocates and can run inside malloc; read-outs (symbols, collapsed stacks) run on request or
 * watchdog threads and only read.
 */
#include "mem/heap.h"

#include <dlfcn.h>
#include <elfutils/libdwfl.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- state shared with heap_malloc.c ---- */
_Atomic uint32_t gh__heap_live;
_Atomic uint16_t gh__heap_filter[1u << 15];
_Atomic int gh__heap_armed;
_Atomic uint64_t gh__heap_interval = GH_HEAP_DEFAULT_INTERVAL;
int gh__heap_linked;
const char *gh__heap_unavailable;

/* ---- spinlocks: a few instructions under each; fork takes them all ---- */
typedef struct {
    atomic_flag f;
} spin_t;

static inline void spin_lock(spin_t *s)
{
    while (atomic_flag_test_and_set_explicit(&s->f, memory_order_acquire))
        sched_yield();
}
static inline void spin_unlock(spin_t *s)
{
    atomic_flag_clear_explicit(&s->f, memory_order_release);
}

/* ---- interned stacks: open addressing over a fixed table, insert only ---- */
typedef struct {
    uint64_t hash;
    uint32_t depth;
    uintptr_t frames[GH_HEAP_MAX_DEPTH];
    _Atomic int64_t live_bytes; /* sum of the weights of its live samples */
} stack_t;

#define STACK_SLOTS (2 * GH_HEAP_MAX_STACKS)
static stack_t stacks[GH_HEAP_MAX_STACKS]; /* [0] is "(other stacks)" */
static uint16_t stack_index[STACK_SLOTS];  /* stack id + 1; 0 empty */
static _Atomic uint32_t nstacks = 1;
static spin_t stack_lock;

/* ---- live samples: striped chained hash over per-stripe node pools ---- */
typedef struct {
    uintptr_t p;
    int64_t weight;
    uint32_t stack;
    uint16_t next; /* node index + 1 */
} node_t;

#define STRIPE_BUCKETS 256
typedef struct {
    spin_t lock;
    uint16_t free_head; /* node index + 1 */
    uint16_t used;      /* nodes ever handed out (the rest are free without a list) */
    uint16_t buckets[STRIPE_BUCKETS];
    node_t nodes[GH_HEAP_STRIPE_SLOTS];
} stripe_t;

static stripe_t stripes[GH_HEAP_STRIPES];
static _Atomic uint64_t samples_total, samples_dropped, stacks_overflow;
static _Atomic int atfork_done;

#define TABLE_BYTES (sizeof stacks + sizeof stack_index + sizeof stripes + sizeof gh__heap_filter)

size_t gh_heap_own_bytes(void)
{
    return gh__heap_linked == 1 && atomic_load(&gh__heap_armed) ? TABLE_BYTES : 0;
}

static void fork_prepare(void)
{
    spin_lock(&stack_lock);
    for (int i = 0; i < GH_HEAP_STRIPES; i++)
        spin_lock(&stripes[i].lock);
}
static void fork_release(void)
{
    for (int i = GH_HEAP_STRIPES - 1; i >= 0; i--)
        spin_unlock(&stripes[i].lock);
    spin_unlock(&stack_lock);
}

bool gh_heap_configure(bool on, uint64_t interval)
{
    if (gh__heap_linked != 1 || gh__heap_unavailable) {
        atomic_store(&gh__heap_armed, 0);
        return false;
    }
    atomic_store(&gh__heap_interval, interval ? interval : GH_HEAP_DEFAULT_INTERVAL);
    if (on && !atomic_exchange(&atfork_done, 1))
        pthread_atfork(fork_prepare, fork_release, fork_release);
    atomic_store(&gh__heap_armed, on ? 1 : 0);
    return on;
}

bool gh_heap_active(void)
{
    return atomic_load_explicit(&gh__heap_armed, memory_order_relaxed) != 0;
}

const char *gh_heap_state(void)
{
    if (gh__heap_unavailable)
        return gh__heap_unavailable;
    if (gh__heap_linked != 1)
        return "not linked in";
    return gh_heap_active() ? "on" : "off";
}

static uint64_t frames_hash(const uintptr_t *f, int depth)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < depth; i++)
        h = (h ^ (uint64_t)f[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint32_t intern(const uintptr_t *frames, int depth)
{
    uint64_t h = frames_hash(frames, depth);
    uint32_t id = 0;
    spin_lock(&stack_lock);
    for (uint32_t i = 0, s = (uint32_t)h & (STACK_SLOTS - 1); i < STACK_SLOTS;
         i++, s = (s + 1) & (STACK_SLOTS - 1)) {
        uint16_t x = stack_index[s];
        if (x == 0) {
            uint32_t n = atomic_load_explicit(&nstacks, memory_order_relaxed);
            if (n >= GH_HEAP_MAX_STACKS)
                break;
            stack_t *st = &stacks[n];
            st->hash = h;
            st->depth = (uint32_t)depth;
            memcpy(st->frames, frames, (size_t)depth * sizeof *frames);
            stack_index[s] = (uint16_t)(n + 1);
            atomic_store_explicit(&nstacks, n + 1, memory_order_release);
            id = n;
            break;
        }
        stack_t *st = &stacks[x - 1];
        if (st->hash == h && st->depth == (uint32_t)depth &&
            memcmp(st->frames, frames, (size_t)depth * sizeof *frames) == 0) {
            id = x - 1u;
            break;
        }
    }
    spin_unlock(&stack_lock);
    if (id == 0)
        atomic_fetch_add_explicit(&stacks_overflow, 1, memory_order_relaxed);
    return id;
}

static int64_t weight_of(size_t size)
{
    double t = (double)atomic_load_explicit(&gh__heap_interval, memory_order_relaxed);
    double s = (double)size;
    double p = s > 0 ? -expm1(-s / t) : 1;
    return p > 0 ? (int64_t)(s / p + 0.5) : (int64_t)t;
}

void gh_heap_record(void *p, size_t size, const uintptr_t *frames, int depth)
{
    if (!p)
        return;
    if (depth > GH_HEAP_MAX_DEPTH)
        depth = GH_HEAP_MAX_DEPTH;
    uint32_t h = gh__heap_hash(p);
    stripe_t *sp = &stripes[h % GH_HEAP_STRIPES];
    uint32_t id = intern(frames, depth);
    int64_t w = weight_of(size);
    atomic_fetch_add_explicit(&samples_total, 1, memory_order_relaxed);
    spin_lock(&sp->lock);
    uint16_t ni;
    if (sp->free_head) {
        ni = sp->free_head;
        sp->free_head = sp->nodes[ni - 1].next;
    } else if (sp->used < GH_HEAP_STRIPE_SLOTS) {
        ni = (uint16_t)++sp->used;
    } else {
        spin_unlock(&sp->lock);
        atomic_fetch_add_explicit(&samples_dropped, 1, memory_order_relaxed);
        return;
    }
    node_t *nd = &sp->nodes[ni - 1];
    uint32_t b = (h / GH_HEAP_STRIPES) % STRIPE_BUCKETS;
    nd->p = (uintptr_t)p;
    nd->weight = w;
    nd->stack = id;
    nd->next = sp->buckets[b];
    sp->buckets[b] = ni;
    atomic_fetch_add_explicit(&gh__heap_filter[h], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&gh__heap_live, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stacks[id].live_bytes, w, memory_order_relaxed);
    spin_unlock(&sp->lock);
}

void gh__heap_forget(void *p)
{
    uint32_t h = gh__heap_hash(p);
    stripe_t *sp = &stripes[h % GH_HEAP_STRIPES];
    uint32_t b = (h / GH_HEAP_STRIPES) % STRIPE_BUCKETS;
    spin_lock(&sp->lock);
    for (uint16_t *pp = &sp->buckets[b]; *pp; pp = &sp->nodes[*pp - 1].next) {
        node_t *nd = &sp->nodes[*pp - 1];
        if (nd->p != (uintptr_t)p)
            continue;
        uint16_t ni = *pp;
        *pp = nd->next;
        atomic_fetch_sub_explicit(&stacks[nd->stack].live_bytes, nd->weight, memory_order_relaxed);
        atomic_fetch_sub_explicit(&gh__heap_filter[h], 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&gh__heap_live, 1, memory_order_relaxed);
        nd->p = 0;
        nd->next = sp->free_head;
        sp->free_head = ni;
        break;
    }
    spin_unlock(&sp->lock);
}

void gh_heap_stats(gh_heap_stats_t *out)
{
    memset(out, 0, sizeof *out);
    out->active = gh_heap_active();
    out->interval = atomic_load(&gh__heap_interval);
    out->samples_live = atomic_load(&gh__heap_live);
    out->samples_total = atomic_load(&samples_total);
    out->samples_dropped = atomic_load(&samples_dropped);
    out->stacks = atomic_load(&nstacks) - 1;
    out->stacks_overflow = atomic_load(&stacks_overflow);
    uint32_t n = atomic_load_explicit(&nstacks, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++)
        out->live_bytes +=
            (double)atomic_load_explicit(&stacks[i].live_bytes, memory_order_relaxed);
    out->table_bytes = gh__heap_linked == 1 ? TABLE_BYTES : 0;
}

size_t gh_heap_live_by_stack(double *out, size_t cap)
{
    uint32_t n = atomic_load_explicit(&nstacks, memory_order_acquire);
    if (n > cap)
        n = (uint32_t)cap;
    for (uint32_t i = 0; i < n; i++)
        out[i] = (double)atomic_load_explicit(&stacks[i].live_bytes, memory_order_relaxed);
    return n;
}

int gh_heap_stack_frames(uint32_t id, uintptr_t *frames, int max)
{
    if (id == 0 || id >= atomic_load_explicit(&nstacks, memory_order_acquire))
        return 0;
    int d = (int)stacks[id].depth < max ? (int)stacks[id].depth : max;
    memcpy(frames, stacks[id].frames, (size_t)d * sizeof *frames);
    return d;
}

/* ---- symbols ---- */

/* The ELF symbol table (.symtab) of a mapped file: names static functions dladdr cannot. A few
 * files are mapped once, read-only, for the life of the process. */
typedef struct {
    uintptr_t base; /* dli_fbase */
    const Elf64_Sym *syms;
    size_t nsyms;
    const char *strs;
    bool tried;
} elf_syms_t;

#define ELF_FILES 8
static elf_syms_t elf_files[ELF_FILES];
static pthread_mutex_t elf_lock = PTHREAD_MUTEX_INITIALIZER;

static void elf_load(elf_syms_t *e, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    struct stat sb;
    void *map = MAP_FAILED;
    if (fstat(fd, &sb) == 0 && sb.st_size > (off_t)sizeof(Elf64_Ehdr))
        map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return;
    const unsigned char *b = map;
    size_t size = (size_t)sb.st_size;
    const Elf64_Ehdr *eh = map;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > size) {
        munmap(map, size);
        return;
    }
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(b + eh->e_shoff);
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum)
            continue;
        const Elf64_Shdr *st = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + sh[i].sh_size > size || st->sh_offset + st->sh_size > size)
            continue;
        e->syms = (const Elf64_Sym *)(b + sh[i].sh_offset);
        e->nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
        e->strs = (const char *)(b + st->sh_offset);
        return; /* the mapping stays: the names point into it */
    }
    munmap(map, size);
}

/* Looked-up addresses, direct-mapped: stacks share most of their frames. */
#define SYM_CACHE 4096
static struct {
    uintptr_t pc;
    const char *name;
} sym_cache[SYM_CACHE];

static const char *elf_lookup(const Dl_info *di, uintptr_t pc, uintptr_t *off)
{
    const char *name = NULL;
    pthread_mutex_lock(&elf_lock);
    size_t slot = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 52) % SYM_CACHE;
    if (sym_cache[slot].pc == pc) {
        name = sym_cache[slot].name;
        pthread_mutex_unlock(&elf_lock);
        return name;
    }
    elf_syms_t *e = NULL;
    for (int i = 0; i < ELF_FILES; i++) {
        if (elf_files[i].tried && elf_files[i].base == (uintptr_t)di->dli_fbase) {
            e = &elf_files[i];
            break;
        }
        if (!elf_files[i].tried) {
            e = &elf_files[i];
            e->tried = true;
            e->base = (uintptr_t)di->dli_fbase;
            Dl_info self;
            bool main_exe = dladdr((void *)elf_lookup, &self) && self.dli_fbase == di->dli_fbase;
            elf_load(e, main_exe ? "/proc/self/exe" : di->dli_fname);
            break;
        }
    }
    if (e && e->syms) {
        uintptr_t rel = pc - e->base, best = 0;
        for (size_t i = 0; i < e->nsyms; i++) {
            const Elf64_Sym *s = &e->syms[i];
            if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || s->st_value == 0)
                continue;
            if (rel >= s->st_value && rel < s->st_value + (s->st_size ? s->st_size : 1) &&
                s->st_value >= best) {
                best = s->st_value;
                name = e->strs + s->st_name;
                *off = rel - s->st_value;
            }
        }
    }
    sym_cache[slot].pc = pc;
    sym_cache[slot].name = name;
    pthread_mutex_unlock(&elf_lock);
    return name;
}

/* Source lines from DWARF (libdw), for frames of files built with -g. One Dwfl session of this
 * process, opened on the first read-out; looked-up addresses (with or without a line) are kept in
 * a fixed direct-mapped table, so a profile's frames cost the DWARF walk once. Runs only on
 * read-outs, never inside malloc: libdw allocates through the interposer, which may sample it,
 * and that is fine because no lock the sampler takes is held here. */
#define SRC_CACHE 512
static struct {
    uintptr_t pc;
    int line; /* 0: no line information */
    char file[48];
} src_cache[SRC_CACHE];
static Dwfl *src_dwfl;
static bool src_tried;
static pthread_mutex_t src_lock = PTHREAD_MUTEX_INITIALIZER;

static Dwfl *src_open(void)
{
    static char *debuginfo_path;
    static const Dwfl_Callbacks cb = {.find_elf = dwfl_linux_proc_find_elf,
                                      .find_debuginfo = dwfl_standard_find_debuginfo,
                                      .debuginfo_path = &debuginfo_path};
    Dwfl *d = dwfl_begin(&cb);
    if (!d)
        return NULL;
    dwfl_report_begin(d);
    if (dwfl_linux_proc_report(d, getpid()) != 0 || dwfl_report_end(d, NULL, NULL) != 0) {
        dwfl_end(d);
        return NULL;
    }
    return d;
}

/* The source file's base name and line of pc (already the call byte) into file; 0 if unknown. */
static int src_lookup(uintptr_t pc, char *file, size_t n)
{
    int line = 0;
    pthread_mutex_lock(&src_lock);
    size_t slot = (size_t)((pc * 0x9E3779B97F4A7C15ull) >> 54) % SRC_CACHE;
    if (src_cache[slot].pc != pc) {
        if (!src_tried) {
            src_tried = true;
            src_dwfl = src_open();
        }
        src_cache[slot].pc = pc;
        src_cache[slot].line = 0;
        src_cache[slot].file[0] = '\0';
        Dwfl_Module *m = src_dwfl ? dwfl_addrmodule(src_dwfl, (Dwarf_Addr)pc) : NULL;
        Dwfl_Line *l = m ? dwfl_module_getsrc(m, (Dwarf_Addr)pc) : NULL;
        int ln = 0;
        const char *src = l ? dwfl_lineinfo(l, NULL, &ln, NULL, NULL, NULL) : NULL;
        if (src && ln > 0) {
            const char *base = strrchr(src, '/');
            snprintf(src_cache[slot].file, sizeof src_cache[slot].file, "%s",
                     base ? base + 1 : src);
            src_cache[slot].line = ln;
        }
    }
    line = src_cache[slot].line;
    if (line)
        snprintf(file, n, "%s", src_cache[slot].file);
    pthread_mutex_unlock(&src_lock);
    return line;
}

char *gh_heap_symbol(uintptr_t pc, bool with_file, char *out, size_t n)
{
    Dl_info di;
    uintptr_t q = pc ? pc - 1 : 0; /* a return address: the call is the byte before */
    if (!dladdr((void *)q, &di) || !di.dli_fname) {
        snprintf(out, n, "0x%llx", (unsigned long long)pc);
        return out;
    }
    const char *file = strrchr(di.dli_fname, '/');
    file = file ? file + 1 : di.dli_fname;
    if (!*file)
        file = "gatehouse";
    uintptr_t off = 0;
    const char *name = di.dli_sname && di.dli_saddr ? di.dli_sname : elf_lookup(&di, q, &off);
    char src[48];
    int line = name && with_file ? src_lookup(q, src, sizeof src) : 0;
    if (line)
        snprintf(out, n, "%s (%s:%d)", name, src, line);
    else if (name && with_file)
        snprintf(out, n, "%s (%s)", name, file);
    else if (name)
        snprintf(out, n, "%s", name);
    else
        snprintf(out, n, "%s+0x%llx", file, (unsigned long long)(q - (uintptr_t)di.dli_fbase));
    return out;
}

void gh_heap_utf8_trim(char *s)
{
    size_t len = strlen(s), i = len;
    while (i > 0 && len - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && (i - 1) + need > len)
        s[i - 1] = '\0';
}

bool gh_heap_is_wrapper(const char *name)
{
    static const char *const prefixes[] = {"gh_mem_",
                                           "gh_pool_",
                                           "sqlite3Malloc",
                                           "sqlite3_malloc",
                                           "sqlite3MemMalloc",
                                           "sqlite3DbMalloc",
                                           "sm_alloc",
                                           "gh_heap",
                                           "(",
                                           "0x"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return strstr(name, "+0x") != NULL; /* unnamed: a library's internal wrapper, usually */
}

char *gh_heap_stack_headline(uint32_t id, int max_frames, char *out, size_t n)
{
    uintptr_t f[GH_HEAP_MAX_DEPTH];
    int d = gh_heap_stack_frames(id, f, GH_HEAP_MAX_DEPTH);
    out[0] = '\0';
    if (d == 0) {
        snprintf(out, n, "(other stacks)");
        return out;
    }
    size_t len = 0;
    int shown = 0, first = 0;
    char sym[160];
    /* Skip the allocator wrappers at the leaf, but keep at least one frame. */
    while (first < d - 1 && gh_heap_is_wrapper(gh_heap_symbol(f[first], false, sym, sizeof sym)))
        first++;
    /* Only unnamed frames and wrappers: start at the leaf after all. */
    if (strstr(gh_heap_symbol(f[first], false, sym, sizeof sym), "+0x"))
        first = 0;
    for (int i = first; i < d && shown < max_frames && len + 1 < n; i++, shown++) {
        gh_heap_symbol(f[i], shown == 0, sym, sizeof sym);
        int w = snprintf(out + len, n - len, "%s%s", shown ? " \xe2\x86\x90 " : "", sym);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len >= n)
        out[n - 1] = '\0';
    gh_heap_utf8_trim(out);
    return out;
}

char *gh_heap_stack_collapsed(uint32_t id, char *out, size_t n)
{
    uintptr_t f[GH_HEAP_MAX_DEPTH];
    int d = gh_heap_stack_frames(id, f, GH_HEAP_MAX_DEPTH);
    out[0] = '\0';
    if (d == 0) {
        snprintf(out, n, "(other stacks)");
        return out;
    }
    size_t len = 0;
    char sym[160];
    for (int i = d - 1; i >= 0 && len + 1 < n; i--) {
        gh_heap_symbol(f[i], false, sym, sizeof sym);
        for (char *c = sym; *c; c++)
            if (*c == ';' || *c == ' ')
                *c = '_';
        char src[48];
        int ln = strstr(sym, "+0x") ? 0 : src_lookup(f[i] ? f[i] - 1 : 0, src, sizeof src);
        size_t sl = strlen(sym);
        if (ln && strchr(src, ';') == NULL)
            snprintf(sym + sl, sizeof sym - sl, " (%s:%d)", src, ln);
        int w = snprintf(out + len, n - len, "%s%s", len ? ";" : "", sym);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len >= n)
        out[n - 1] = '\0';
    return out;
}
