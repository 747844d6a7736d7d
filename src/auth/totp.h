/*
 * totp.h — authenticator codes (RFC 6238 TOTP as every authenticator app does it: HMAC-SHA-1,
 * 6 digits, 30-second steps from the Unix epoch), their secrets' text forms (RFC 4648 base32,
 * the otpauth:// URI that a QR code carries), and the recovery codes that stand in for a lost
 * device.
 *
 * The one design decision: checking a code answers WHICH time step it matched, not just yes or
 * no; the caller stores that step with a compare-and-set (gh_user_factor_use), so a code is
 * accepted once — a code seen on a shoulder or in a proxy log is worth nothing after its use.
 * HMAC-SHA-1 is liboath's (libsodium has no SHA-1); the rest is here.
 */
#ifndef GH_AUTH_TOTP_H
#define GH_AUTH_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_TOTP_SECRET_LEN 20 /* bytes: 160 bits, RFC 4226's recommendation */
#define GH_TOTP_BASE32_LEN 32 /* characters of a 20-byte secret, no padding */
#define GH_TOTP_DIGITS 6
#define GH_TOTP_STEP_S 30
#define GH_TOTP_SKEW 1          /* steps accepted either side of now */
#define GH_RECOVERY_CODE_LEN 11 /* "xxxxx-xxxxx": 10 base32 characters, 50 bits */

/* The code of time step `step` for secret (any length): 0 with out a 6-digit string. */
int gh_totp_code(const uint8_t *secret, size_t len, uint64_t step,
                 char out[GH_TOTP_DIGITS + 1]) GH_WUR;
/* Checks code (exactly 6 ASCII digits) against the steps around now_s (±GH_TOTP_SKEW), in
 * constant time per step: 0 with *step the matched step, GH_EAUTH when none matches, GH_EINVAL
 * when code is not 6 digits. */
int gh_totp_check(const uint8_t *secret, size_t len, int64_t now_s, const char *code,
                  size_t code_len, uint64_t *step) GH_WUR;
/* RFC 4648 base32 without padding, upper case: out needs 8 * ceil(len / 5) + 1 bytes. */
void gh_totp_base32(const uint8_t *in, size_t len, char *out, size_t cap);
/* A new random secret. */
void gh_totp_secret_new(uint8_t out[GH_TOTP_SECRET_LEN]);

/* A new recovery code "abcde-fghij" (lower-case base32), NUL-terminated. */
void gh_recovery_code_new(char out[GH_RECOVERY_CODE_LEN + 1]);
/* Normalizes what a person typed (case, spaces and dashes ignored) to the 10 characters a code
 * is made of: 0, or GH_EINVAL when it is not a code's shape. */
int gh_recovery_code_normalize(const char *in, size_t len, char out[11]) GH_WUR;

#endif
