/*
 * proc.h — the part of starting a real server for a test that does not depend on which server it
 * is (tests/support/nginx.c, apache.c): wait until the forked PID listens on its loopback port,
 * stop it by that PID (never by name), and remove its temp dir; and waiting, with a deadline, for
 * a forked script's process group to finish.
 *
 * The one design decision: these helpers only ever act on the PID the caller forked, so two test
 * binaries that each run an nginx never stop each other's. The caller prints what went wrong
 * (each server knows where its own log is).
 */
#ifndef GH_TESTS_SUPPORT_PROC_H
#define GH_TESTS_SUPPORT_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* Sleeps ms milliseconds, resuming after a signal. */
void ts_sleep_ms(long ms);

/* True when something accepts a TCP connection on 127.0.0.1:port. */
bool ts_port_open(int port);

/* Polls every 50 ms, up to tries times, until 127.0.0.1:port accepts a connection. Returns 0 when
 * it does; 1 when *pid exited first (then *pid is 0 and *status its wait status); -1 when it did
 * not listen in time (the process is left running). */
int ts_wait_listening(pid_t *pid, int port, int tries, int *status);

/* Sends sig to *pid, waits up to tries × 50 ms for it to exit, then SIGKILLs it and reaps it.
 * Sets *pid to 0. Does nothing when *pid is not positive. */
void ts_stop_pid(pid_t *pid, int sig, int tries);

/* Waits up to timeout_ms (polling every poll_ms) for pid, the leader of its own process group,
 * to exit. Returns its exit code (128 + the signal when a signal ended it); on the timeout kills
 * the whole group, reaps pid and returns -1. */
int ts_wait_group(pid_t pid, long timeout_ms, long poll_ms);

/* rm -rf dir (a temp dir a test made). */
void ts_rmtree(const char *dir);

#endif
