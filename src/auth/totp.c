/*
 * totp.c — RFC 6238 codes on liboath's HMAC, base32, recovery codes (totp.h).
 *
 * Design decision: liboath only computes (oath_totp_generate2 for one step at a time); the
 * window, the constant-time comparison and the replay rule (the matched step goes back to the
 * caller) are ours, because liboath's validate functions compare with strcmp and answer a window
 * position rather than the absolute step we must store.
 */
#include "auth/totp.h"

#include <liboath/oath.h>
#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    if (oath_init() != OATH_OK || sodium_init() < 0)
        abort();
}

int gh_totp_code(const uint8_t *secret, size_t len, uint64_t step, char out[GH_TOTP_DIGITS + 1])
{
    pthread_once(&once, init);
    /* time = step * 30 with start 0 and step size 30 gives exactly counter `step` */
    time_t t = (time_t)(step * GH_TOTP_STEP_S);
    int rc = oath_totp_generate2((const char *)secret, len, t, GH_TOTP_STEP_S, 0, GH_TOTP_DIGITS, 0,
                                 out);
    return rc == OATH_OK ? 0 : GH_EINTERNAL;
}

int gh_totp_check(const uint8_t *secret, size_t len, int64_t now_s, const char *code,
                  size_t code_len, uint64_t *step)
{
    if (!code || code_len != GH_TOTP_DIGITS)
        return GH_EINVAL;
    for (size_t i = 0; i < code_len; i++)
        if (code[i] < '0' || code[i] > '9')
            return GH_EINVAL;
    if (now_s < 0)
        return GH_EAUTH;
    uint64_t now = (uint64_t)now_s / GH_TOTP_STEP_S;
    int found = 0;
    for (int d = -GH_TOTP_SKEW; d <= GH_TOTP_SKEW; d++) {
        if (d < 0 && now < (uint64_t)-d)
            continue;
        uint64_t s = now + (uint64_t)(int64_t)d;
        char want[GH_TOTP_DIGITS + 1];
        if (gh_totp_code(secret, len, s, want) != 0)
            return GH_EINTERNAL;
        if (sodium_memcmp(want, code, GH_TOTP_DIGITS) == 0 && !found) {
            *step = s;
            found = 1;
        }
        sodium_memzero(want, sizeof want);
    }
    return found ? 0 : GH_EAUTH;
}

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

void gh_totp_base32(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    uint32_t buf = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        buf = (buf << 8) | in[i];
        bits += 8;
        while (bits >= 5 && o + 1 < cap) {
            out[o++] = B32[(buf >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0 && o + 1 < cap)
        out[o++] = B32[(buf << (5 - bits)) & 31];
    if (cap)
        out[o] = '\0';
}

void gh_totp_secret_new(uint8_t out[GH_TOTP_SECRET_LEN])
{
    pthread_once(&once, init);
    randombytes_buf(out, GH_TOTP_SECRET_LEN);
}

void gh_recovery_code_new(char out[GH_RECOVERY_CODE_LEN + 1])
{
    pthread_once(&once, init);
    for (int i = 0, o = 0; i < 10; i++) {
        if (i == 5)
            out[o++] = '-';
        char c = B32[randombytes_uniform(32)];
        out[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    out[GH_RECOVERY_CODE_LEN] = '\0';
}

int gh_recovery_code_normalize(const char *in, size_t len, char out[11])
{
    size_t n = 0;
    if (!in || len > 64)
        return GH_EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) || n == 10)
            return GH_EINVAL;
        out[n++] = c;
    }
    if (n != 10)
        return GH_EINVAL;
    out[10] = '\0';
    return 0;
}
