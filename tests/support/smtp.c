/*
 * smtp.c — see smtp.h. The server is /usr/bin/python3 tests/support/smtp_sink.py (Debian's
 * python3-aiosmtpd), started in its own process group with PR_SET_PDEATHSIG, stopped by PID.
 */
#include "smtp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

int ts_smtp_prepare(ts_smtp_t *s)
{
    if (s->port)
        return 0;
    s->port = free_port();
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/gh-smtp-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (s->port <= 0 || !mkdtemp(s->dir))
        return -1;
    snprintf(s->url, sizeof s->url, "smtp://127.0.0.1:%d", s->port);
    return 0;
}

int ts_smtp_start(ts_smtp_t *s, const char *opt, const char *value)
{
    if (ts_smtp_prepare(s) != 0)
        return -1;
    char port[16];
    snprintf(port, sizeof port, "%d", s->port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setpgid(0, 0);
        const char *argv[8] = {
            "/usr/bin/python3", "tests/support/smtp_sink.py", port, s->dir, opt, value, NULL};
        if (!freopen("/dev/null", "w", stdout))
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (listening(s->port))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fprintf(stderr, "smtp_sink.py exited at start (is python3-aiosmtpd installed?)\n");
            return -1;
        }
        sleep_ms(50);
    }
    ts_smtp_stop(s);
    return -1;
}

void ts_smtp_stop(ts_smtp_t *s)
{
    if (!s->pid)
        return;
    kill(s->pid, SIGKILL); /* by PID; it holds nothing that needs a clean stop */
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    for (int i = 0; i < 100 && listening(s->port); i++)
        sleep_ms(20);
}

void ts_smtp_cleanup(ts_smtp_t *s)
{
    ts_smtp_stop(s);
    if (!s->dir[0] || getenv("GATEHOUSE_TEST_KEEP"))
        return;
    DIR *d = opendir(s->dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", s->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(s->dir);
}

int ts_smtp_count(const ts_smtp_t *s)
{
    int n = 0;
    DIR *d = opendir(s->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += l > 4 && strcmp(e->d_name + l - 4, ".eml") == 0;
    }
    if (d)
        closedir(d);
    return n;
}

bool ts_smtp_wait(const ts_smtp_t *s, int n, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        if (ts_smtp_count(s) >= n)
            return true;
        sleep_ms(50);
    }
    return false;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    if (p)
        p[n] = '\0';
    fclose(f);
    return p;
}

char *ts_smtp_message(const ts_smtp_t *s, int i)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%04d.eml", s->dir, i);
    return slurp(p);
}

char *ts_smtp_envelope(const ts_smtp_t *s, int i)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%04d.env", s->dir, i);
    return slurp(p);
}

/* The end of the header block (the blank line), or the end of the text. */
static const char *headers_end(const char *msg)
{
    const char *e = strstr(msg, "\r\n\r\n");
    const char *e2 = strstr(msg, "\n\n");
    if (!e || (e2 && e2 < e))
        e = e2;
    return e ? e : msg + strlen(msg);
}

static bool header_in(const char *start, const char *end, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    for (const char *p = start; p < end;) {
        const char *eol = strchr(p, '\n');
        if (!eol || eol > end)
            eol = end;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            size_t o = 0;
            const char *v = p + nl + 1;
            for (;;) {
                while (v < eol && (*v == ' ' || *v == '\t'))
                    v++;
                while (v < eol && *v != '\r' && o + 1 < len)
                    out[o++] = *v++;
                /* folded continuation lines */
                if (eol < end && (eol[1] == ' ' || eol[1] == '\t')) {
                    v = eol + 1;
                    eol = strchr(v, '\n');
                    if (!eol || eol > end)
                        eol = end;
                    if (o + 1 < len)
                        out[o++] = ' ';
                    continue;
                }
                break;
            }
            out[o] = '\0';
            return true;
        }
        p = eol + 1;
    }
    return false;
}

bool ts_mail_header(const char *msg, const char *name, char *out, size_t len)
{
    return header_in(msg, headers_end(msg), name, out, len);
}

static int b64v(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

bool ts_mail_part(const char *msg, const char *content_type, char *out, size_t len)
{
    const char *body = headers_end(msg);
    for (const char *p = body; (p = strstr(p, "Content-Type:")) != NULL; p++) {
        const char *v = p + 13;
        while (*v == ' ')
            v++;
        if (strncasecmp(v, content_type, strlen(content_type)) != 0)
            continue;
        const char *hend = headers_end(p);
        char cte[64] = "";
        header_in(p, hend, "Content-Transfer-Encoding", cte, sizeof cte);
        const char *b = hend + (hend[0] == '\r' ? 4 : 2);
        const char *stop = strstr(b, "\n--");
        if (!stop)
            stop = b + strlen(b);
        size_t o = 0;
        if (strcasecmp(cte, "base64") == 0) {
            unsigned acc = 0;
            int bits = 0;
            for (const char *q = b; q < stop; q++) {
                int x = b64v((unsigned char)*q);
                if (x < 0)
                    continue;
                acc = (acc << 6) | (unsigned)x;
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    if (o + 1 < len)
                        out[o++] = (char)((acc >> bits) & 0xff);
                }
            }
        } else {
            for (const char *q = b; q < stop && o + 1 < len; q++)
                out[o++] = *q;
        }
        out[o] = '\0';
        return true;
    }
    return false;
}

bool ts_mail_link(const char *text, const char *prefix, char *out, size_t len)
{
    const char *p = strstr(text, prefix);
    if (!p)
        return false;
    size_t n = strcspn(p, " \t\r\n\"'<>");
    if (n + 1 > len)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}
