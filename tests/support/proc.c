/*
 * proc.c — waiting for, stopping and cleaning up after a server a test forked (proc.h).
 * Everything acts on the PID the caller holds, never on a name.
 */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void ts_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool ts_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int ts_wait_listening(pid_t *pid, int port, int tries, int *status)
{
    for (int i = 0; i < tries; i++) {
        if (waitpid(*pid, status, WNOHANG) == *pid) {
            *pid = 0;
            return 1;
        }
        if (ts_port_open(port))
            return 0;
        ts_sleep_ms(50);
    }
    return -1;
}

void ts_stop_pid(pid_t *pid, int sig, int tries)
{
    if (*pid <= 0)
        return;
    kill(*pid, sig);
    bool gone = false;
    for (int i = 0; i < tries && !gone; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid)
            gone = true;
        else
            ts_sleep_ms(50);
    }
    if (!gone) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int ts_wait_group(pid_t pid, long timeout_ms, long poll_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int status;
    while (waitpid(pid, &status, WNOHANG) != pid) {
        if (now_ms() > deadline) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        ts_sleep_ms(poll_ms);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void ts_rmtree(const char *dir)
{
    /* The dir holds only what the server and its helper made: files and small temp dirs. */
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}
