/*
 * redis_common.h — what the Redis backends of the grant and pending-login stores share inside
 * src/store/ (grant_redis.c, pending_redis.c): the check of a reply, and how their records are
 * written into the strings Redis keeps.
 *
 * The one design decision: a reply that says the server is no longer a writable master
 * (READONLY, MASTERDOWN, LOADING: a failover under way) drops the connection, so the store's
 * next call reconnects and finds the new master, instead of writing to a replica forever.
 */
#ifndef GH_STORE_REDIS_COMMON_H
#define GH_STORE_REDIS_COMMON_H

#include <hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when r is a reply to use (the caller frees it). Otherwise (no reply, or an error reply)
 * logs msg at WARN with the error, frees r, drops and NULLs *c when the server is no longer a
 * writable master, and returns false. *c is the connection the command went on (not NULL). */
bool gh_redis_reply_ok(redisContext **c, redisReply *r, const char *msg);

/* Writes the n bytes of p as 2n lowercase hex digits and a NUL into out. */
void gh_redis_hex(const uint8_t *p, size_t n, char *out);

/* v as 8 bytes, least significant first; and back. */
void gh_redis_put64(uint8_t *p, uint64_t v);
uint64_t gh_redis_get64(const uint8_t *p);

#endif
