/*
 * probe.h — round-trip latency and errors of the network stores (Redis sessions, PostgreSQL
 * users), for gatehouse_store_request_duration_seconds{store,op} and
 * gatehouse_store_errors_total{store}.
 *
 * The one design decision: a store knows nothing of metrics (it includes nothing of watch/). It
 * is handed a probe in its options — a function and its context, which the node takes from
 * whoever owns the metric families — and tells it of every round trip; a store opened with no
 * probe (tests, the `user` command) tells nobody. Errors are also counted per process, whoever
 * listens, so tests can read them without a node. An observation is one call and one relaxed
 * atomic add: no lock, no allocation.
 */
#ifndef GH_STORE_PROBE_H
#define GH_STORE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* X(ENUM, "label"): the store label. */
#define GH_STORE_KIND_MAP(X)                                                                       \
    X(REDIS, "redis")                                                                              \
    X(POSTGRES, "postgres")

/* X(ENUM, "label"): the op label — what the round trip did. */
#define GH_STORE_OP_MAP(X)                                                                         \
    X(CONNECT, "connect")                                                                          \
    X(CREATE, "create")                                                                            \
    X(LOOKUP, "lookup")                                                                            \
    X(GET, "get")                                                                                  \
    X(UPDATE, "update")                                                                            \
    X(END, "end")                                                                                  \
    X(END_USER, "end_user")                                                                        \
    X(DELETE, "delete")                                                                            \
    X(LIST, "list")                                                                                \
    X(EXPIRE, "expire")                                                                            \
    X(STATS, "stats")                                                                              \
    X(PING, "ping")

typedef enum {
#define GH__STORE_KIND_ENUM(e, n) GH_STORE_##e,
    GH_STORE_KIND_MAP(GH__STORE_KIND_ENUM)
#undef GH__STORE_KIND_ENUM
        GH_STORE__COUNT
} gh_store_kind_t;

typedef enum {
#define GH__STORE_OP_ENUM(e, n) GH_STORE_OP_##e,
    GH_STORE_OP_MAP(GH__STORE_OP_ENUM)
#undef GH__STORE_OP_ENUM
        GH_STORE_OP__COUNT
} gh_store_op_t;

/* The label values, in enum order (for registering the families). */
extern const char *const gh_store_kind_names[GH_STORE__COUNT];
extern const char *const gh_store_op_names[GH_STORE_OP__COUNT];

/* Told of every round trip: which store, what it did, how long it took, whether it failed. Must be
 * quick and must not block (it runs on the request path). */
typedef void (*gh_store_observer_t)(void *ctx, gh_store_kind_t store, gh_store_op_t op,
                                    int64_t duration_ns, bool failed);

/* What a network store reports to (a member of its options; all zero: nobody). The observer
 * and its context must outlive the store. */
typedef struct {
    gh_store_observer_t observe;
    void *ctx;
} gh_store_probe_t;

/* Records one round trip: how long it took and whether it failed (the store did not answer,
 * or answered with an error that is not a normal outcome like "not found"). */
void gh_store_observe(const gh_store_probe_t *probe, gh_store_kind_t store, gh_store_op_t op,
                      int64_t duration_ns, bool failed);

/* Errors recorded since start (kept even while nothing is attached; for tests). */
uint64_t gh_store_errors(gh_store_kind_t store);

#endif
