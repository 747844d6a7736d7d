/*
 * audit_record.h — one audit event as the user store keeps it: the row of the append-only
 * `audit_events` table, shared by the account service (which fills it, account/audit.h), the
 * user store backends (which append, read and prune it) and the renderers.
 *
 * The one design decision: every field is a bounded, fixed-size, already-cleaned value (the type
 * as its contract name, the actor as text), so an event is one flat struct that can be copied into
 * a queue slot, written in one statement and never needs an allocation of its own.
 */
#ifndef GH_STORE_AUDIT_RECORD_H
#define GH_STORE_AUDIT_RECORD_H

#include <stdint.h>

#include "store/session.h"

#define GH_AUDIT_TYPE_MAX 47    /* "admin.<action>" at most */
#define GH_AUDIT_ACTOR_MAX 79   /* "user:<id>", "admin:<id>", "system", "cli", "token" */
#define GH_AUDIT_NODE_MAX 63    /* the node's name (host name, or --node-name) */
#define GH_AUDIT_OUTCOME_MAX 15 /* "success" or "failure" */
#define GH_AUDIT_DETAIL_MAX 255 /* reason codes and counts: never a secret, never a password */

typedef struct {
    int64_t id;      /* assigned by the store (increasing); 0 before it is stored */
    int64_t time_ms; /* wall clock, ms since the epoch */
    char type[GH_AUDIT_TYPE_MAX + 1];
    char actor[GH_AUDIT_ACTOR_MAX + 1];
    uint64_t user_id; /* the subject user; 0: none or unknown */
    char session_id[GH_SESSION_ID_LEN + 1];
    char ip[GH_SESSION_IP_MAX + 1];
    char user_agent[GH_SESSION_UA_MAX + 1];
    char node[GH_AUDIT_NODE_MAX + 1];
    char outcome[GH_AUDIT_OUTCOME_MAX + 1];
    char detail[GH_AUDIT_DETAIL_MAX + 1];
} gh_audit_event_t;

/* A read of the trail: newest first, keyset pagination on (id). Zero fields filter nothing. */
typedef struct {
    uint64_t user_id;                 /* 0: every user */
    char type[GH_AUDIT_TYPE_MAX + 1]; /* "": every type; "admin." matches every admin.<action> */
    int64_t since_ms, until_ms;       /* 0: unbounded; since inclusive, until exclusive */
    int64_t before_id;                /* the cursor: only events with id < before_id; 0: newest */
} gh_audit_query_t;

#endif
