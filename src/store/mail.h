/*
 * mail.h — the email tables of the user store's database: each user's address and its verified
 * flag, the single-use link tokens (only their SHA-256 hashes), and the durable outbox.
 *
 * The one design decision: these tables live in the USER STORE's database (the migration is the
 * user store's), but behind their own small interface and connection, so that the outbox write
 * and the token it mails are one transaction with nothing else in it, and the user store's
 * interface stays as it was. A message is in the outbox (committed) before the request that
 * caused it is answered; a sender claims a row with a lease (claimed_by, claimed_until) so that
 * with several nodes on one database each row is sent by one of them, and a node killed while
 * holding a lease only delays the message until the lease runs out.
 *
 * Thread safety: every function may be called from any thread (the backend serializes).
 */
#ifndef GH_STORE_MAIL_H
#define GH_STORE_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define GH_MAILSTORE_ADDR_MAX 254
#define GH_MAILSTORE_HASH_LEN 32
#define GH_MAILSTORE_NODE_MAX 64

/* What a link token is for. */
typedef enum { GH_TOKEN_RESET = 0, GH_TOKEN_VERIFY, GH_TOKEN_CHANGE } gh_mail_token_purpose_t;

/* One claimed outbox row; message is allocated (GH_MEM_MAIL) and freed by gh_mailstore_row_free. */
typedef struct {
    int64_t id;
    char kind[32];
    char rcpt[GH_MAILSTORE_ADDR_MAX + 1];
    char *message;
    size_t len;
    int attempts; /* before this one */
    int64_t created_at_ms;
} gh_mail_row_t;

typedef enum { GH_MAIL_SENT = 0, GH_MAIL_RETRY, GH_MAIL_FAILED } gh_mail_outcome_t;

typedef struct {
    uint64_t depth;        /* queued, not yet sent or given up */
    int64_t oldest_ms;     /* created_at of the oldest queued message; 0 when none */
    uint64_t sent, failed; /* rows in these states (kept for a week) */
} gh_mail_stats_t;

typedef struct gh_mail_store gh_mail_store_t;

typedef struct {
    /* Sets (email NULL: clears) the address; GH_EEXISTS when another user has it,
     * GH_ENOTFOUND when there is no such user. */
    int (*set_email)(gh_mail_store_t *s, uint64_t user_id, const char *email, bool verified);
    /* The user's address ("" when none) and flag; GH_ENOTFOUND when there is no such user. */
    int (*get_email)(gh_mail_store_t *s, uint64_t user_id, char email[GH_MAILSTORE_ADDR_MAX + 1],
                     bool *verified);
    /* The user with this (normalized) address; GH_ENOTFOUND. */
    int (*find_by_email)(gh_mail_store_t *s, const char *email, uint64_t *user_id);
    /* In ONE transaction: stores a token (when hash is not NULL) and queues a message (when
     * rcpt is not NULL). user_id 0 is a token that can never be spent (what a reset for an
     * unknown address stores, so that both cost the same). */
    int (*issue)(gh_mail_store_t *s, const uint8_t *hash, uint64_t user_id,
                 gh_mail_token_purpose_t purpose, const char *email, int64_t expires_ms,
                 const char *kind, const char *rcpt, const char *msg, size_t len, int64_t now_ms);
    /* Looks a live token up (spend false) or takes it, atomically (spend true; taking a reset
     * token also drops the user's other reset tokens). GH_ENOTFOUND when unknown, spent or
     * expired. email: the address the token was issued for ("" when none). */
    int (*token)(gh_mail_store_t *s, const uint8_t hash[GH_MAILSTORE_HASH_LEN],
                 gh_mail_token_purpose_t purpose, int64_t now_ms, bool spend, uint64_t *user_id,
                 char email[GH_MAILSTORE_ADDR_MAX + 1]);
    /* Claims the next due message for node until now + lease_ms: 0 (out filled), GH_ENOTFOUND
     * when none is due. */
    int (*claim)(gh_mail_store_t *s, const char *node, int64_t now_ms, int64_t lease_ms,
                 gh_mail_row_t *out);
    /* Records a claimed message's outcome (only while node still holds it). RETRY: due again at
     * next_ms. */
    int (*settle)(gh_mail_store_t *s, int64_t id, const char *node, gh_mail_outcome_t outcome,
                  int64_t next_ms, const char *error, int64_t now_ms);
    int (*stats)(gh_mail_store_t *s, gh_mail_stats_t *out);
    /* Deletes expired tokens and sent or failed messages settled before keep_before_ms. */
    int (*purge)(gh_mail_store_t *s, int64_t now_ms, int64_t keep_before_ms);
    void (*close)(gh_mail_store_t **s);
} gh_mail_store_ops_t;

struct gh_mail_store {
    const gh_mail_store_ops_t *ops;
};

/* Opens the email tables of <data_dir>/users.db (the user store opened and migrated it first).
 * GH_ESTORE when the file cannot be opened or is older than the email migration. */
int gh_mail_sqlite_open(const char *data_dir, gh_mail_store_t **out) GH_WUR;

/* The same tables in the PostgreSQL user store's database (url: its connection string), for
 * several nodes sharing one outbox. GH_EINVAL without a URL, GH_ESTORE, GH_ENOMEM. */
int gh_mail_postgres_open(const char *url, int timeout_ms, gh_mail_store_t **out) GH_WUR;

void gh_mailstore_row_free(gh_mail_row_t *row);

static inline void gh_mail_store_close(gh_mail_store_t **s)
{
    if (s && *s)
        (*s)->ops->close(s);
}

#endif
