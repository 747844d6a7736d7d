/*
 * bench_email.c — what the email outbox costs and how fast one node drains it: N messages
 * (a rendered reset message each, with its token) are queued into a fresh users.db, timing each
 * transaction and measuring the database's growth; then the sender thread of one node delivers
 * them all to a real SMTP server on loopback (aiosmtpd, tests/support/smtp.c) and the drain is
 * timed.
 *
 * The design decision: the same code paths as the service (gh_mail_render, the mail store's
 * issue transaction, the outbox sender over libcurl), without HTTP in front, so the figures are
 * the outbox's own. Usage: bench_email [N] (default 500).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "../tests/support/smtp.h"
#include "account/email.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"
#include "store/mail.h"
#include "store/user.h"

static long long file_size(const char *dir, const char *name)
{
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 500;
    if (n <= 0 || sodium_init() < 0)
        return 2;
    gh_log_setup(GH_LOG_JSON, GH_LOG_WARN);
    char dir[] = "/tmp/gh-bench-email-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    gh_user_store_t *users = NULL;
    gh_mail_store_t *ms = NULL;
    if (gh_user_sqlite_open(dir, &users) != 0 || gh_mail_sqlite_open(dir, &ms) != 0) {
        fprintf(stderr, "cannot open the stores in %s\n", dir);
        return 1;
    }
    long long before = file_size(dir, "users.db") + file_size(dir, "users.db-wal");
    size_t mem_before = gh_mem_bytes(GH_MEM_MAIL);
    int64_t t0 = gh_clock_mono_ns(), worst = 0;
    for (int i = 0; i < n; i++) {
        char to[64], link[160];
        snprintf(to, sizeof to, "user%d@bench.test", i);
        uint8_t raw[32], hash[32];
        randombytes_buf(raw, sizeof raw);
        crypto_hash_sha256(hash, raw, sizeof raw);
        snprintf(link, sizeof link, "https://login.bench.test/reset/confirm?token=%064d", i);
        gh_mail_vars_t v = {.product = "Gatehouse",
                            .from = "noreply@bench.test",
                            .to = to,
                            .username = to,
                            .link = link,
                            .now_ms = gh_clock_now_ms()};
        char *msg = NULL;
        size_t len = 0;
        int64_t a = gh_clock_mono_ns();
        if (gh_mail_render(GH_MAIL_RESET, &v, &msg, &len) != 0 ||
            ms->ops->issue(ms, hash, (uint64_t)i + 1, GH_TOKEN_RESET, NULL,
                           gh_clock_now_ms() + 1800000, "reset", to, msg, len,
                           gh_clock_now_ms()) != 0) {
            fprintf(stderr, "queueing failed at %d\n", i);
            return 1;
        }
        int64_t d = gh_clock_mono_ns() - a;
        worst = d > worst ? d : worst;
        gh_mem_free(GH_MEM_MAIL, msg);
    }
    double queue_s = (double)(gh_clock_mono_ns() - t0) / 1e9;
    long long after = file_size(dir, "users.db") + file_size(dir, "users.db-wal");
    printf("queued %d messages: %.1f us each (render + one transaction; worst %.1f us), "
           "%.0f bytes of database each, %zu bytes of memory held after\n",
           n, queue_s * 1e6 / n, (double)worst / 1e3, (double)(after - before) / n,
           gh_mem_bytes(GH_MEM_MAIL) - mem_before);

    ts_smtp_t smtp = {0};
    if (ts_smtp_start(&smtp, NULL, NULL) != 0) {
        fprintf(stderr, "cannot start the SMTP server (python3-aiosmtpd)\n");
        return 1;
    }
    gh_email_options_t eo = {.store = ms,
                             .product = "Gatehouse",
                             .public_url = "https://login.bench.test",
                             .from = "noreply@bench.test",
                             .smtp_url = smtp.url,
                             .node = "bench"};
    gh_account_email_t *e = NULL;
    if (gh_account_email_create(&eo, &e) != 0 || gh_account_email_start(e) != 0)
        return 1;
    int64_t t1 = gh_clock_mono_ns();
    size_t peak = 0;
    for (;;) {
        gh_email_stats_t st;
        gh_account_email_stats(e, &st);
        size_t m = gh_mem_bytes(GH_MEM_MAIL);
        peak = m > peak ? m : peak;
        if (ts_smtp_count(&smtp) >= n)
            break;
        if ((gh_clock_mono_ns() - t1) / 1000000000 > 300) {
            fprintf(stderr, "only %d of %d delivered in 300 s\n", ts_smtp_count(&smtp), n);
            return 1;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    double send_s = (double)(gh_clock_mono_ns() - t1) / 1e9;
    printf("delivered %d messages to a loopback SMTP server in %.2f s: %.0f messages/s "
           "(one sender thread, one connection per message); mail memory peak %zu bytes\n",
           n, send_s, n / send_s, peak);
    gh_account_email_destroy(&e);
    gh_mail_store_close(&ms);
    gh_user_store_close(&users);
    ts_smtp_cleanup(&smtp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
