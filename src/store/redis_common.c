/*
 * redis_common.c — the reply check and the record encoding the Redis-backed grant and
 * pending-login stores share (redis_common.h). A failover reply drops the connection so the
 * next call finds the new master.
 */
#include "store/redis_common.h"

#include <string.h>

#include "common/log.h"

bool gh_redis_reply_ok(redisContext **c, redisReply *r, const char *msg)
{
    if (r && r->type != REDIS_REPLY_ERROR)
        return true;
    GH_LOG(GH_LOG_WARN, msg, GH_LS("detail", r ? r->str : (*c)->errstr));
    /* A server that is no longer the master (a failover): the next call reconnects. */
    if (r && (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "MASTERDOWN", 10) == 0 ||
              strncmp(r->str, "LOADING", 7) == 0)) {
        redisFree(*c);
        *c = NULL;
    }
    if (r)
        freeReplyObject(r);
    return false;
}

void gh_redis_hex(const uint8_t *p, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[p[i] >> 4];
        out[2 * i + 1] = d[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void gh_redis_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint64_t gh_redis_get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}
