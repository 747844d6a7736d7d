/*
 * token_format.h — the shape of a session token and of its hash: what the stores key sessions
 * on (the hash's length) and what auth/token.c makes. Sizes only; making and checking tokens is
 * auth's. In common/ so that the stores, below auth, can size their keys.
 */
#ifndef GH_COMMON_TOKEN_FORMAT_H
#define GH_COMMON_TOKEN_FORMAT_H

#define GH_TOKEN_PREFIX "gh_"
#define GH_TOKEN_RAW_LEN 32
#define GH_TOKEN_LEN 46      /* 3 + 43: the prefix and base64url of 32 bytes */
#define GH_TOKEN_HASH_LEN 32 /* BLAKE2b-256 of the whole token string */

#endif
