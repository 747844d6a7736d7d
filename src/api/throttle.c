/*
 * throttle.c — where the handlers meet the login and registration throttles (ratelimit.h).
 *
 * Design decision: an attempt is charged BEFORE any work is done for it (the user lookup and the
 * argon2 hash are what an attacker wants us to spend) and settled when its outcome is known: a
 * successful login gives its attempt back, so only failures and registrations use up a client's
 * budget, while parallel guesses cannot all pass a check that only failures would update.
 */
#include "api/api.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

/* Throttle time is monotonic: a wall clock set back must not lock anyone out for the difference. */
static int64_t now_ms(void)
{
    return gh_clock_mono_ns() / 1000000;
}

static void reply_rate_limited(gh_req_t *r, int64_t retry_ms)
{
    long long secs = (retry_ms + 999) / 1000;
    if (secs < 1)
        secs = 1;
    char retry[24];
    snprintf(retry, sizeof retry, "%lld", secs);
    gh_reply_error(r, 429, "rate_limited", "too many attempts, try again later");
    /* gh_reply_error set "Retry-After: 1"; say the real wait instead. */
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, "Retry-After") == 0) {
            r->headers[i] = r->headers[--r->nheaders];
            break;
        }
    (void)gh_reply_header(r, "Retry-After", retry);
}

static void log_limited(gh_req_t *r, const char *kind, const gh_ip_t *client, int64_t retry_ms)
{
    char addr[GH_IP_STR];
    gh_ip_format(client, addr);
    GH_LOG(GH_LOG_INFO, "rate limited", GH_LS("kind", kind), GH_LS("route", r->route->template),
           GH_LS("client", addr), GH_LI("retry_after_ms", retry_ms));
}

int gh_api_throttle_login(gh_req_t *r, const char *username, size_t len, gh_api_throttle_t *t)
{
    gh_app_t *app = r->app;
    memset(t, 0, sizeof *t);
    if (!app->ratelimit)
        return 0;
    gh_api_client_ip(r, &t->client);
    int64_t now = now_ms(), retry = 0;
    if (gh_ratelimit_ip_take(app->ratelimit, &t->client, now, &retry) != 0) {
        log_limited(r, "ip", &t->client, retry);
        goto limited;
    }
    t->account = gh_ratelimit_account_key(app->ratelimit, username, len);
    if (gh_ratelimit_account_begin(app->ratelimit, t->account, now, &retry) != 0) {
        /* A refusal costs us nothing, so it costs the client's budget nothing either: several
         * people behind one address must not lose their logins to one locked account. */
        gh_ratelimit_ip_refund(app->ratelimit, &t->client, now);
        log_limited(r, "account", &t->client, retry);
        goto limited;
    }
    t->ip_taken = true;
    t->account_begun = true;
    return 0;
limited:
    gh_api_count_login(app, GH_LOGIN_RATE_LIMITED);
    reply_rate_limited(r, retry);
    return GH_ELIMIT;
}

void gh_api_throttle_login_done(gh_req_t *r, gh_api_throttle_t *t, gh_login_result_t result,
                                uint64_t user_id)
{
    gh_app_t *app = r->app;
    int64_t now = now_ms();
    bool failed = result == GH_LOGIN_FAILURE;
    if (t->ip_taken && !failed)
        gh_ratelimit_ip_refund(app->ratelimit, &t->client, now);
    t->ip_taken = false;
    if (!t->account_begun)
        return;
    t->account_begun = false;
    gh_ratelimit_verdict_t v;
    gh_ratelimit_account_end(app->ratelimit, t->account,
                             result == GH_LOGIN_SUCCESS ? GH_RATELIMIT_SUCCESS
                             : failed                   ? GH_RATELIMIT_FAILURE
                                                        : GH_RATELIMIT_ABANDONED,
                             now, &v);
    if (!v.lockout)
        return;
    /* The account is named by a salted tag, not by what was typed: a username field often
     * holds a password. */
    uint8_t h[4];
    char tag[9], addr[GH_IP_STR];
    crypto_generichash(h, sizeof h, (const uint8_t *)&t->account, sizeof t->account, app->log_salt,
                       sizeof app->log_salt);
    sodium_bin2hex(tag, sizeof tag, h, sizeof h);
    gh_ip_format(&t->client, addr);
    if (user_id)
        GH_LOG(GH_LOG_WARN, "account locked", GH_LS("account", tag), GH_LI("user_id", user_id),
               GH_LI("failures", v.failures), GH_LI("delay_ms", v.delay_ms), GH_LS("client", addr));
    else
        GH_LOG(GH_LOG_WARN, "account locked", GH_LS("account", tag), GH_LB("known_user", false),
               GH_LI("failures", v.failures), GH_LI("delay_ms", v.delay_ms), GH_LS("client", addr));
}

int gh_api_throttle_register(gh_req_t *r)
{
    gh_app_t *app = r->app;
    gh_ip_t client;
    if (!app->ratelimit)
        return 0;
    gh_api_client_ip(r, &client);
    int64_t retry = 0;
    if (gh_ratelimit_ip_take(app->ratelimit, &client, now_ms(), &retry) == 0)
        return 0;
    log_limited(r, "ip", &client, retry);
    reply_rate_limited(r, retry);
    return GH_ELIMIT;
}
