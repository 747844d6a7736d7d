/*
 * err.h — the one table of Gatehouse error codes.
 *
 * Functions that can fail return int: 0 on success or a negative GH_E* code, and write their
 * results through out parameters (libuv's convention). The codes live in one X-macro table so
 * that the enum, gh_strerror() and gh_errname() can never drift apart. The HTTP layer maps codes
 * to the API contract's error bodies in one place (gh_api_reply_err in src/api/request.c).
 */
#ifndef GH_COMMON_ERR_H
#define GH_COMMON_ERR_H

#define GH_WUR __attribute__((warn_unused_result))
/* Discards a GH_WUR result on purpose (a cast to void does not silence gcc). */
#define GH_IGNORE(expr)                                                                            \
    do {                                                                                           \
        if (expr) {                                                                                \
        }                                                                                          \
    } while (0)

/* X(NAME, number, message) */
#define GH_ERRNO_MAP(X)                                                                            \
    X(NOMEM, 1, "out of memory")                                                                   \
    X(INVAL, 2, "invalid argument")                                                                \
    X(NOTFOUND, 3, "not found")                                                                    \
    X(EXISTS, 4, "already exists")                                                                 \
    X(BUSY, 5, "overloaded, try again later")                                                      \
    X(IO, 6, "I/O error")                                                                          \
    X(STORE, 7, "store unavailable")                                                               \
    X(RANGE, 8, "value out of range")                                                              \
    X(AUTH, 9, "authentication failed")                                                            \
    X(LIMIT, 10, "limit reached")                                                                  \
    X(EXPIRED, 11, "expired")                                                                      \
    X(TOOBIG, 12, "too large")                                                                     \
    X(INTERNAL, 13, "internal error")                                                              \
    X(USERNAME, 14, "invalid username")                                                            \
    X(PASSWORD, 15, "weak password")                                                               \
    X(CLOSED, 16, "registration is closed")                                                        \
    X(CURRENT, 17, "the current password is wrong")                                                \
    X(UNAUTH, 18, "a valid session is required")                                                   \
    X(FORBIDDEN, 19, "forbidden")                                                                  \
    X(MEDIATYPE, 20, "unsupported media type")                                                     \
    X(CRITICAL, 21, "memory use is critical")                                                      \
    X(CANCELED, 22, "cancelled: the process is stopping")                                          \
    X(CODE, 23, "invalid second-factor code")                                                      \
    X(PENDING, 24, "the pending login has expired")                                                \
    X(PASSKEY, 60, "the passkey was refused")                                                      \
    X(EMAIL, 25, "invalid email address")                                                          \
    X(EMAILTAKEN, 26, "that email address is taken")                                               \
    X(TOKEN, 27, "invalid or expired link token")                                                  \
    X(MFA, 28, "a second-factor code is required")                                                 \
    X(REPLAY, 70, "the authorization code was used already")                                       \
    X(REUSE, 71, "a spent refresh token was presented")                                            \
    X(OAUTHCLIENT, 80, "client authentication failed")                                             \
    X(OAUTHGRANT, 81, "the grant is invalid, expired, revoked or another client's")                \
    X(GRANTTYPE, 82, "unsupported grant type")                                                     \
    X(OAUTHSCOPE, 83, "invalid scope")                                                             \
    X(OAUTHTOKEN, 84, "the access token is invalid, expired or revoked")                           \
    X(UNAUTHCLIENT, 85, "the client may not use this grant")

enum {
    GH_OK = 0,
#define GH__ERR_ENUM(name, num, msg) GH_E##name = -(num),
    GH_ERRNO_MAP(GH__ERR_ENUM)
#undef GH__ERR_ENUM
};

/* Human-readable message for a GH_E* code (or "ok" for 0); never NULL. */
const char *gh_strerror(int code);
/* Symbolic name such as "GH_ENOMEM"; never NULL. */
const char *gh_errname(int code);

#endif
