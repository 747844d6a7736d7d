/*
 * notify.c — sd_notify(3) by hand: one sendto() of a datagram to the unix socket named by
 * NOTIFY_SOCKET (a path, or an abstract name when it starts with '@'). See node.h for why
 * this is not libsystemd. Nothing here allocates.
 */
#include "node/node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/clock.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len; /* 0: no NOTIFY_SOCKET */
static uint64_t watchdog_usec;
static _Atomic int64_t watchdog_last_ns;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static uint64_t parse_u64(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    return errno || !end || *end ? 0 : (uint64_t)v;
}

static void init_once(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n = path ? strlen(path) : 0;
    if (n > 0 && n < sizeof notify_addr.sun_path && (path[0] == '/' || path[0] == '@')) {
        notify_addr.sun_family = AF_UNIX;
        memcpy(notify_addr.sun_path, path, n);
        if (path[0] == '@')
            notify_addr.sun_path[0] = '\0'; /* abstract namespace */
        notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    uint64_t usec = parse_u64(getenv("WATCHDOG_USEC"));
    uint64_t pid = parse_u64(getenv("WATCHDOG_PID"));
    if (usec && pid && pid != (uint64_t)getpid())
        usec = 0; /* meant for another process */
    if (!usec)
        usec = parse_u64(getenv("GATEHOUSE_WATCHDOG_USEC"));
    watchdog_usec = usec;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    unsetenv("GATEHOUSE_WATCHDOG_USEC");
}

void gh_notify_init(void)
{
    pthread_once(&once, init_once);
}

int gh_notify(const char *state)
{
    gh_notify_init();
    if (notify_len == 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ssize_t n =
        sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr, notify_len);
    int e = errno;
    close(fd);
    errno = e;
    return n < 0 ? -1 : 0;
}

void gh_notify_watchdog(void)
{
    gh_notify_init();
    if (!watchdog_usec)
        return;
    int64_t now = gh_clock_mono_ns(), last = atomic_load(&watchdog_last_ns);
    if (now - last < (int64_t)watchdog_usec * 1000 / 2)
        return;
    if (atomic_compare_exchange_strong(&watchdog_last_ns, &last, now))
        (void)gh_notify("WATCHDOG=1");
}

uint64_t gh_notify_watchdog_usec(void)
{
    gh_notify_init();
    return watchdog_usec;
}
