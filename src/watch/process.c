/*
 * process.c — the standard process_* metrics, read from /proc at render time.
 *
 * The decision a reader must know: nothing is cached. Each family's callback reads only the /proc
 * file its figure comes from, into stack buffers, so a scrape costs a few small reads, allocates
 * nothing through us, and always reports the present value. The names and units are the ones
 * every Prometheus client library exports, so stock dashboards and alert rules work unchanged.
 */
#include "watch/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file whole into buf (NUL-terminated). Returns bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

static int read_statm(double *virt, double *rss)
{
    char buf[256];
    unsigned long long size = 0, resident = 0;
    if (read_small("/proc/self/statm", buf, sizeof buf) < 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2)
        return GH_EIO;
    double page = (double)sysconf(_SC_PAGESIZE);
    *virt = (double)size * page;
    *rss = (double)resident * page;
    return 0;
}

/* utime, stime (fields 14, 15) and starttime (field 22) of /proc/self/stat, in clock ticks.
 * Field 2 is the command name in parentheses and may itself hold spaces and ')', so parsing
 * starts after the LAST ')'. */
static int read_stat(unsigned long long *utime, unsigned long long *stime,
                     unsigned long long *starttime)
{
    char buf[1024];
    if (read_small("/proc/self/stat", buf, sizeof buf) < 0)
        return GH_EIO;
    char *p = strrchr(buf, ')');
    if (!p)
        return GH_EIO;
    p++;
    /* After ')' comes field 3; fields 14, 15 and 22 are the 12th, 13th and 20th tokens. */
    unsigned long long v[20];
    for (int i = 0; i < 20; i++) {
        while (*p == ' ')
            p++;
        if (i == 0) { /* field 3, the state, is a letter */
            if (!*p)
                return GH_EIO;
            p++;
            v[i] = 0;
            continue;
        }
        char *end;
        v[i] = strtoull(p, &end, 10);
        if (end == p)
            return GH_EIO;
        p = end;
    }
    *utime = v[11];
    *stime = v[12];
    *starttime = v[19];
    return 0;
}

/* The boot time line of /proc/stat. The file is read in chunks rather than whole: on a machine
 * with many CPUs and interrupts the lines before "btime" run to tens of kilobytes. */
static int read_btime(double *btime)
{
    enum { CARRY = 64 };
    char buf[4096 + 1];
    size_t keep = 0;
    int rc = GH_EIO;
    int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return GH_EIO;
    for (;;) {
        ssize_t n = read(fd, buf + keep, sizeof buf - 1 - keep);
        if (n <= 0)
            break;
        size_t len = keep + (size_t)n;
        buf[len] = '\0';
        char *p = strstr(buf, "btime ");
        /* A match must start a line and its number must be complete in the buffer. */
        if (p && (p == buf || p[-1] == '\n') && strchr(p, '\n')) {
            unsigned long long v;
            if (sscanf(p + 6, "%llu", &v) == 1) {
                *btime = (double)v;
                rc = 0;
            }
            break;
        }
        /* Keep the tail, which may hold the start of the line, for the next chunk. */
        keep = len < CARRY ? len : CARRY;
        memmove(buf, buf + len - keep, keep);
    }
    close(fd);
    return rc;
}

static int read_cpu(double *seconds)
{
    unsigned long long ut, st, start;
    int rc = read_stat(&ut, &st, &start);
    if (rc)
        return rc;
    *seconds = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

static int read_start_time(double *seconds)
{
    unsigned long long ut, st, start;
    double btime;
    int rc = read_stat(&ut, &st, &start);
    if (!rc)
        rc = read_btime(&btime);
    if (rc)
        return rc;
    *seconds = btime + (double)start / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* Open descriptors, not counting the one this count itself holds open on /proc/self/fd. */
static int read_open_fds(double *count)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return GH_EIO;
    int self = dirfd(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (atoi(e->d_name) == self)
            continue;
        n++;
    }
    closedir(d);
    *count = (double)n;
    return 0;
}

static int read_max_fds(double *max)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return GH_EIO;
    *max = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
    return 0;
}

int gh_metrics_process_read(gh_process_stats_t *out)
{
    gh_process_stats_t s = {0};
    int rc = 0, r;
    if ((r = read_statm(&s.virtual_bytes, &s.resident_bytes)))
        rc = r;
    if ((r = read_cpu(&s.cpu_seconds)))
        rc = r;
    if ((r = read_open_fds(&s.open_fds)))
        rc = r;
    if ((r = read_max_fds(&s.max_fds)))
        rc = r;
    if ((r = read_start_time(&s.start_time_seconds)))
        rc = r;
    *out = s;
    return rc;
}

typedef enum { P_RSS, P_VIRT, P_CPU, P_OPEN_FDS, P_MAX_FDS, P_START } process_figure_t;

/* The figure to read is the callback's context: the enum value cast to a pointer. */
static int collect_process(void *ctx, double *values, size_t nseries)
{
    (void)nseries;
    double ignored;
    switch ((process_figure_t)(uintptr_t)ctx) {
    case P_RSS:
        return read_statm(&ignored, &values[0]);
    case P_VIRT:
        return read_statm(&values[0], &ignored);
    case P_CPU:
        return read_cpu(&values[0]);
    case P_OPEN_FDS:
        return read_open_fds(&values[0]);
    case P_MAX_FDS:
        return read_max_fds(&values[0]);
    case P_START:
        return read_start_time(&values[0]);
    }
    return GH_EINVAL;
}

int gh_metrics_add_process(gh_metrics_t *m)
{
    static const struct {
        const char *name;
        const char *help;
        gh_metric_type_t type;
        process_figure_t figure;
    } families[] = {
        {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
         GH_METRIC_COUNTER, P_CPU},
        {"process_open_fds", "Number of open file descriptors.", GH_METRIC_GAUGE, P_OPEN_FDS},
        {"process_max_fds", "Maximum number of open file descriptors.", GH_METRIC_GAUGE, P_MAX_FDS},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", GH_METRIC_GAUGE, P_VIRT},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", GH_METRIC_GAUGE, P_RSS},
        {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         GH_METRIC_GAUGE, P_START},
    };
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        gh_metric_desc_t d = {
            .name = families[i].name,
            .help = families[i].help,
            .type = families[i].type,
            .collect = collect_process,
            .collect_ctx = (void *)(uintptr_t)families[i].figure,
        };
        int rc = gh_metrics_add(m, &d, NULL);
        if (rc)
            return rc;
    }
    return 0;
}
