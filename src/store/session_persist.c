/*
 * session_persist.c — the memory store made durable: <data-dir>/sessions.db (SQLite, WAL) holds
 * every live session's token hash, public id, user id, times and client (IP, user agent), so a
 * restart, a crash or a reload logs nobody out, forgets no session's device and brings no ended
 * session back.
 *
 * The one design decision: persistence follows the memory store's own order of events, and
 * nothing is acknowledged or kept in memory that is not on disk. Every call that can end or
 * create a session runs as "the writer", holding this layer's db_lock, so writers are serialized.
 * An end (logout, revocation, "log out everywhere", a password change's revocations) deletes the
 * rows first and commits, and only then ends the sessions in memory: an end that cannot be
 * written (a full disk) leaves every session as it was, so the client's retry works, and an end
 * that answered success holds across a restart. A create opens a write transaction and calls the
 * memory store, whose end hook, on this same thread, deletes the rows of the sessions it evicts
 * inside that transaction; then it inserts the new row and commits. If that commit fails, the new
 * session is taken back and the evicted ones are put back from their rows (still on disk, since
 * the transaction rolled back). Because writers are serialized, the database can never disagree
 * with memory about which of two racing events came last (a session created and at once revoked
 * by "log out everywhere" is deleted, never re-inserted after). The hook doing SQL under the store
 * lock is the price: a DELETE by primary key into an open transaction is a few microseconds with
 * no I/O, and only creates do it; token checks never do.
 *
 * A failed write marks the store not writable (ping answers GH_ESTORE, so /readyz answers 503)
 * until a write succeeds; while it is marked, the flusher tries a one-page write every second.
 *
 * Idle and absolute expiry (the janitor, or a lookup past a deadline) happen on any thread and
 * need no write before anything: a row past its deadline is dropped at load, because its
 * last-seen on disk is never newer than in memory. Their hashes go to a fixed ring that the
 * flusher deletes once a second; if the ring is full the row simply waits for a purge.
 * The flusher also writes last-seen times, found by walking the store's LRU list from its newest
 * end (gh_session_memory_touched), so the cost is per session touched, not per token check.
 *
 * Locks, always taken in this order: db_lock, then the store's lock, then ring_lock.
 *
 * Memory: the memory store charges `sessions` and is what the session budget bounds; this
 * layer's own buffers are fixed (about 300 KiB, not per session) and charged to `other`, and
 * SQLite's heap shows under `sqlite`.
 */
#include "store/session.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/stop.h"
#include "mem/mem.h"
#include "store/sqlite_schema.h"
#include "store/writes.h"

#define FLUSH_PERIOD_MS 1000
#define TOUCH_PAGE 4096       /* last-seen times written per transaction */
#define TOUCH_MAX_PAGES 128   /* at most 512K sessions' last-seen per flush; older ones wait */
#define RING_SLOTS 4096       /* expired hashes waiting for the flusher */
#define PURGE_PERIOD_MS 60000 /* at most one full purge of expired rows a minute */
#define BUSY_TIMEOUT_MS 5000
#define CACHE_KIB 2048
#define END_BATCH 256  /* a user's sessions deleted per transaction by end_user */
#define UNDO_SLOTS 256 /* evictions one create can take back when its commit fails */

enum {
    ST_BEGIN,
    ST_BEGIN_READ,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INSERT,
    ST_DELETE,
    ST_LOG_END,
    ST_TOUCH,
    ST_LOAD,
    ST_ENDED,
    ST_ENDED_MAX,
    ST_CLEAR_ENDED,
    ST_PURGE,
    ST_GET,
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO sessions (token_hash, id, user_id, created_at, last_seen_at,"
                  " expires_at, ip, user_agent, amr) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_DELETE] = "DELETE FROM sessions WHERE token_hash = ?1",
    [ST_LOG_END] = "INSERT INTO ended (token_hash, reason) VALUES (?1, ?2)",
    /* max(): a flush never moves a session's idle clock back. */
    [ST_TOUCH] = "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE token_hash = ?1",
    [ST_LOAD] = "SELECT seq, token_hash, id, user_id, created_at, last_seen_at, expires_at, ip,"
                " user_agent, amr FROM sessions WHERE seq > ?1 ORDER BY seq",
    [ST_ENDED] = "SELECT seq, token_hash, reason FROM ended WHERE seq > ?1 ORDER BY seq",
    [ST_ENDED_MAX] = "SELECT coalesce(max(seq), 0) FROM ended",
    [ST_CLEAR_ENDED] = "DELETE FROM ended",
    [ST_PURGE] = "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2",
    [ST_GET] = "SELECT id, user_id, created_at, last_seen_at, expires_at, ip, user_agent, amr"
               " FROM sessions WHERE token_hash = ?1",
};

/* migrations[i] brings the schema from user_version i to i + 1. Append; never edit. `seq` is
 * AUTOINCREMENT so it never reuses a value: a successor finds rows created after its snapshot
 * by seq alone. `ended` is written only during a handover. */
static const char *const migrations[] = {
    "CREATE TABLE sessions ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " token_hash BLOB NOT NULL UNIQUE,"
    " id BLOB NOT NULL,"
    " user_id INTEGER NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " last_seen_at INTEGER NOT NULL,"
    " expires_at INTEGER NOT NULL);"
    "CREATE TABLE ended ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " token_hash BLOB NOT NULL,"
    " reason INTEGER NOT NULL)",
    /* 1 -> 2: the client a session was created for; older rows have the unknown one. */
    "ALTER TABLE sessions ADD COLUMN ip TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT ''",
    /* 2 -> 3: how the session was signed in (GH_AMR_*); older rows were password logins. */
    "ALTER TABLE sessions ADD COLUMN amr INTEGER"
    " NOT NULL DEFAULT 1",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

typedef uint8_t hash_t[GH_TOKEN_HASH_LEN];

typedef struct {
    gh_session_store_t base; /* first: the interface pointer is the struct pointer */
    gh_session_store_t *mem;
    gh_session_limits_t limits;
    char path[1024];

    pthread_mutex_t db_lock; /* the connection, its statements and everything below to ring */
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    int txn_rc;     /* first failure inside the writer's open transaction (the hook's) */
    bool loading;   /* the hook defers its deletes (a scan of the table is running) */
    bool log_ends;  /* predecessor during a handover: ends go to `ended` too */
    bool detached;  /* predecessor after handing over: writes nothing */
    bool successor; /* loaded during a handover, not the writer yet */
    int64_t seq_mark, ended_mark; /* successor: what its snapshot covered */
    hash_t *deferred; /* rows the load dropped, deleted when this process becomes the writer */
    size_t ndeferred, deferred_cap;
    int64_t flushed_until; /* last-seen times before this are on disk */
    int64_t last_purge_ms;
    gh_session_touch_t *touch_buf; /* TOUCH_PAGE, fixed */
    hash_t *ring_copy;             /* RING_SLOTS, fixed: the flusher's copy of the ring */
    hash_t *batch;                 /* END_BATCH, fixed: hashes an end deletes before it ends */
    hash_t *undo;                  /* UNDO_SLOTS, fixed: rows the running create deleted */
    size_t nundo;
    bool undo_on;                   /* a create is the writer: the hook records its evictions */
    sqlite3_int64 changes_at_begin; /* total changes when the write transaction began */
    bool probing;                   /* the open transaction is the probe write */
    sqlite3_stmt *probe;            /* rewrites user_version with its own value: one page */

    /* Whether the database takes writes (readiness, gatehouse_store_writable): set by any
     * failed statement, cleared by a commit that wrote something (a probe write included). */
    atomic_bool failing;
    atomic_uint_fast64_t write_failures;

    pthread_mutex_t ring_lock;
    hash_t *ring; /* RING_SLOTS, fixed */
    size_t ring_len;
    uint64_t ring_dropped;
    bool purge_needed;

    pthread_mutex_t fl_lock;
    pthread_cond_t fl_wake;
    bool fl_stop, fl_started;
    pthread_t flusher;
} persist_t;

/* The persistent store whose writer this thread is, while it calls the memory store. */
static _Thread_local persist_t *tls_writer;
/* Set while a create that could not be written is taken back outside the writer. */
static _Thread_local persist_t *tls_quiet;
/* Set while sessions whose rows this thread has already deleted (and committed) end in memory:
 * the hook has nothing left to write. */
static _Thread_local persist_t *tls_written;

static const gh_session_store_ops_t persist_ops;

static size_t sqlite_bytes(void)
{
    sqlite3_int64 n = sqlite3_memory_used();
    return n > 0 ? (size_t)n : 0;
}

/* A write that failed (or a statement of one): the store is not writable until a later write
 * (or the flusher's probe) succeeds. */
static void note_failure(persist_t *p)
{
    atomic_fetch_add_explicit(&p->write_failures, 1, memory_order_relaxed);
    gh_store_write_outcome(GH_STORE_DB_SESSIONS, false);
    if (!atomic_exchange(&p->failing, true))
        GH_LOG(GH_LOG_ERROR, "the session database cannot write", GH_LS("path", p->path),
               GH_LS("effect", "logins and revocations answer 503 and change nothing; "
                               "/readyz answers 503 until a write succeeds"));
}

static void note_success(persist_t *p)
{
    gh_store_write_outcome(GH_STORE_DB_SESSIONS, true);
    if (atomic_exchange(&p->failing, false))
        GH_LOG(GH_LOG_WARN, "the session database writes again", GH_LS("path", p->path));
}

static int db_error(persist_t *p, const char *op, int rc)
{
    if (p->probing)
        return GH_ESTORE; /* already known not to write: neither logged nor counted again */
    GH_LOG(GH_LOG_ERROR, "session database error", GH_LS("op", op), GH_LI("sqlite_rc", rc),
           GH_LS("detail", sqlite3_errmsg(p->db)));
    note_failure(p);
    return GH_ESTORE;
}

/* Runs a statement without result rows and leaves it ready for the next use. */
static int exec_stmt(persist_t *p, int which)
{
    sqlite3_stmt *st = p->st[which];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : db_error(p, statements[which], rc);
}

static int begin(persist_t *p)
{
    p->changes_at_begin = sqlite3_total_changes64(p->db);
    return exec_stmt(p, ST_BEGIN);
}

/* A commit that wrote rows (or the probe's page) proves the database takes writes again. */
static int commit(persist_t *p)
{
    bool wrote = p->probing || sqlite3_total_changes64(p->db) != p->changes_at_begin;
    int rc = exec_stmt(p, ST_COMMIT);
    if (rc != 0 && !sqlite3_get_autocommit(p->db))
        (void)exec_stmt(p, ST_ROLLBACK);
    if (rc == 0 && wrote)
        note_success(p);
    return rc;
}

static void rollback(persist_t *p)
{
    if (!sqlite3_get_autocommit(p->db))
        (void)exec_stmt(p, ST_ROLLBACK);
}

static int delete_row(persist_t *p, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    if (sqlite3_bind_blob(p->st[ST_DELETE], 1, hash, GH_TOKEN_HASH_LEN, SQLITE_STATIC) != SQLITE_OK)
        return db_error(p, "bind", SQLITE_ERROR);
    return exec_stmt(p, ST_DELETE);
}

static int defer_delete(persist_t *p, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    if (p->ndeferred == p->deferred_cap) {
        size_t cap = p->deferred_cap ? 2 * p->deferred_cap : 256;
        hash_t *d = gh_mem_realloc(GH_MEM_OTHER, p->deferred, cap * sizeof *d);
        if (!d)
            return GH_ENOMEM;
        p->deferred = d;
        p->deferred_cap = cap;
    }
    memcpy(p->deferred[p->ndeferred++], hash, GH_TOKEN_HASH_LEN);
    return 0;
}

static void ring_push(persist_t *p, const uint8_t hash[GH_TOKEN_HASH_LEN])
{
    pthread_mutex_lock(&p->ring_lock);
    if (p->ring_len < RING_SLOTS) {
        memcpy(p->ring[p->ring_len++], hash, GH_TOKEN_HASH_LEN);
    } else {
        p->ring_dropped++;
        p->purge_needed = true;
    }
    pthread_mutex_unlock(&p->ring_lock);
}

/* The memory store's end hook (its lock is held). */
static void on_end(void *ctx, const uint8_t hash[GH_TOKEN_HASH_LEN], gh_session_end_t reason)
{
    persist_t *p = ctx;
    if (tls_written == p)
        return; /* its row is already gone, committed */
    if (reason == GH_END_IDLE || reason == GH_END_EXPIRED || tls_quiet == p) {
        ring_push(p, hash);
        return;
    }
    /* Logout, revocation and eviction only happen inside this layer's writer calls. */
    assert(tls_writer == p);
    if (tls_writer != p) {
        ring_push(p, hash); /* never expected; at least the row goes eventually */
        return;
    }
    int rc = 0;
    if (p->loading) {
        rc = defer_delete(p, hash);
    } else {
        /* A create's evictions: if its commit fails, these rows are still on disk and the
         * sessions come back from them (take_back); past UNDO_SLOTS they stay ended and the
         * flusher deletes their rows later. */
        if (p->undo_on) {
            if (p->nundo < UNDO_SLOTS)
                memcpy(p->undo[p->nundo++], hash, GH_TOKEN_HASH_LEN);
            else
                ring_push(p, hash);
        }
        rc = delete_row(p, hash);
        if (rc == 0 && p->log_ends) {
            sqlite3_stmt *st = p->st[ST_LOG_END];
            if (sqlite3_bind_blob(st, 1, hash, GH_TOKEN_HASH_LEN, SQLITE_STATIC) != SQLITE_OK ||
                sqlite3_bind_int(st, 2, (int)reason) != SQLITE_OK)
                rc = db_error(p, "bind", SQLITE_ERROR);
            else
                rc = exec_stmt(p, ST_LOG_END);
        }
    }
    if (rc != 0 && p->txn_rc == 0)
        p->txn_rc = rc;
}

/* ---- loading ---- */

/* Reads rows with seq > after into the memory store (db_lock held, inside a transaction, with
 * loading set so the hook defers). Rows that cannot come back are queued for deletion. */
static int load_rows(persist_t *p, int64_t after, int64_t now, gh_session_load_stats_t *stats,
                     int64_t *max_seq)
{
    sqlite3_stmt *st = p->st[ST_LOAD];
    int rc = 0, src;
    if (sqlite3_bind_int64(st, 1, after) != SQLITE_OK)
        return db_error(p, "bind", SQLITE_ERROR);
    uint64_t rows = 0;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        /* A stop asked for during a long load is acted on within a few thousand rows. */
        if ((++rows & 4095) == 0 && gh_stop_requested()) {
            rc = GH_ECANCELED;
            break;
        }
        int64_t seq = sqlite3_column_int64(st, 0);
        const void *hash = sqlite3_column_blob(st, 1);
        int hlen = sqlite3_column_bytes(st, 1);
        const void *id = sqlite3_column_blob(st, 2);
        int idlen = sqlite3_column_bytes(st, 2);
        if (seq > *max_seq)
            *max_seq = seq;
        if (!hash || hlen != GH_TOKEN_HASH_LEN) {
            stats->dropped++; /* cannot even be named for deletion; the purge takes it */
            continue;
        }
        int r = GH_EINVAL;
        gh_session_info_t in = {0};
        if (id && idlen == GH_SESSION_ID_RAW_LEN) {
            gh_base64url_encode(id, GH_SESSION_ID_RAW_LEN, in.id);
            in.user_id = (uint64_t)sqlite3_column_int64(st, 3);
            in.created_at_ms = sqlite3_column_int64(st, 4);
            in.last_seen_at_ms = sqlite3_column_int64(st, 5);
            in.expires_at_ms = sqlite3_column_int64(st, 6);
            /* Text as it was stored; the restore cleans it again, as a create would. */
            const unsigned char *ip = sqlite3_column_text(st, 7);
            const unsigned char *ua = sqlite3_column_text(st, 8);
            int ualen = sqlite3_column_bytes(st, 8);
            gh_session_client_make(&in.client, (const char *)ip, (const char *)ua,
                                   ua && ualen > 0 ? (size_t)ualen : 0);
            in.amr = (uint8_t)sqlite3_column_int(st, 9);
            r = gh_session_memory_restore(p->mem, hash, &in, now);
        }
        if (r == 0) {
            stats->loaded++;
        } else if (r == GH_EEXISTS) {
            /* takeover: already loaded from the snapshot */
        } else if (r == GH_ENOMEM) {
            rc = GH_ENOMEM;
            break;
        } else {
            if (r == GH_EEXPIRED)
                stats->expired++;
            else
                stats->dropped++; /* over the cap or the budget, or a malformed id */
            if ((rc = defer_delete(p, hash)) != 0)
                break;
        }
        if (p->txn_rc != 0) {
            rc = p->txn_rc;
            break;
        }
    }
    if (rc == 0 && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = db_error(p, "load", src);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Deletes the rows the load dropped (db_lock held, inside a write transaction). */
static int write_deferred(persist_t *p)
{
    for (size_t i = 0; i < p->ndeferred; i++) {
        int rc = delete_row(p, p->deferred[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void free_deferred(persist_t *p)
{
    gh_mem_free(GH_MEM_OTHER, p->deferred);
    p->deferred = NULL;
    p->ndeferred = p->deferred_cap = 0;
}

static int64_t ended_max(persist_t *p, int *rc)
{
    sqlite3_stmt *st = p->st[ST_ENDED_MAX];
    int64_t v = 0;
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        *rc = db_error(p, "ended max", src);
    sqlite3_reset(st);
    return v;
}

/* The first load, at open. An owner becomes the writer at once; a successor keeps the marks of
 * its snapshot and its deletions for takeover. */
static int initial_load(persist_t *p, gh_session_load_stats_t *stats)
{
    int64_t t0 = gh_clock_mono_ns(), now = gh_clock_now_ms();
    int rc = exec_stmt(p, ST_BEGIN_READ);
    if (rc != 0)
        return rc;
    p->loading = true;
    tls_writer = p;
    int64_t max_seq = 0;
    rc = load_rows(p, 0, now, stats, &max_seq);
    if (rc == 0)
        p->ended_mark = ended_max(p, &rc);
    tls_writer = NULL;
    p->loading = false;
    rollback(p); /* a read transaction: ending it is all a rollback does */
    p->seq_mark = max_seq;
    if (rc != 0)
        return rc;
    if (!p->successor) {
        /* Leftovers of a handover that never finished are of no use to anyone now. */
        if ((rc = begin(p)) == 0 && (rc = write_deferred(p)) == 0 &&
            (rc = exec_stmt(p, ST_CLEAR_ENDED)) == 0)
            rc = commit(p);
        else
            rollback(p);
        if (rc == 0)
            free_deferred(p);
    }
    /* Rows come in creation order, not in last-seen order: the store sorts its lists once,
     * and it should happen here, inside the load, rather than under its lock at the first
     * expiry tick while requests wait. (An expire with no work only sorts.) */
    if (stats->loaded)
        (void)gh_session_expire(p->mem, now, 0);
    stats->duration_ms = (gh_clock_mono_ns() - t0) / 1000000;
    p->flushed_until = now;
    p->last_purge_ms = now;
    return rc;
}

int gh_session_persist_takeover(gh_session_store_t *s, gh_session_load_stats_t *stats)
{
    if (!s || s->ops != &persist_ops)
        return GH_EINVAL;
    persist_t *p = (persist_t *)s;
    gh_session_load_stats_t local = {0};
    int64_t t0 = gh_clock_mono_ns(), now = gh_clock_now_ms();
    pthread_mutex_lock(&p->db_lock);
    int rc = 0;
    if (!p->successor)
        goto out;
    /* The write lock also proves the predecessor has stopped writing (it committed before it
     * told us to go). */
    if ((rc = begin(p)) != 0)
        goto out;
    p->loading = true;
    tls_writer = p;
    int64_t max_seq = p->seq_mark;
    rc = load_rows(p, p->seq_mark, now, &local, &max_seq);
    /* Sessions the predecessor ended after the snapshot. */
    sqlite3_stmt *st = p->st[ST_ENDED];
    if (rc == 0 && sqlite3_bind_int64(st, 1, p->ended_mark) != SQLITE_OK)
        rc = db_error(p, "bind", SQLITE_ERROR);
    int src = SQLITE_DONE;
    while (rc == 0 && (src = sqlite3_step(st)) == SQLITE_ROW) {
        const void *hash = sqlite3_column_blob(st, 1);
        int reason = sqlite3_column_int(st, 2);
        if (!hash || sqlite3_column_bytes(st, 1) != GH_TOKEN_HASH_LEN || reason < 0 ||
            reason >= GH_END__COUNT)
            continue;
        uint8_t h[GH_TOKEN_HASH_LEN];
        memcpy(h, hash, sizeof h);
        if (gh_session_end(p->mem, h, (gh_session_end_t)reason) == 0)
            local.ended++;
        if (p->txn_rc != 0)
            rc = p->txn_rc;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = db_error(p, "ended", src);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    tls_writer = NULL;
    p->loading = false;
    if (rc == 0)
        rc = write_deferred(p);
    if (rc == 0)
        rc = exec_stmt(p, ST_CLEAR_ENDED);
    if (rc == 0)
        rc = commit(p);
    else
        rollback(p);
    p->txn_rc = 0;
    if (rc == 0) {
        free_deferred(p);
        p->successor = false;
        p->flushed_until = now;
    }
out:
    pthread_mutex_unlock(&p->db_lock);
    local.duration_ms = (gh_clock_mono_ns() - t0) / 1000000;
    if (stats)
        *stats = local;
    return rc;
}

/* ---- the flusher ---- */

/* Last-seen times and expired rows to disk (db_lock held). */
static int flush_locked(persist_t *p)
{
    if (p->detached || p->successor)
        return 0;
    int rc = 0;
    int64_t t0 = gh_clock_now_ms(), before = INT64_MAX;
    for (int page = 0; page < TOUCH_MAX_PAGES; page++) {
        size_t n =
            gh_session_memory_touched(p->mem, p->flushed_until, before, p->touch_buf, TOUCH_PAGE);
        if (n == 0)
            break;
        if ((rc = begin(p)) != 0)
            return rc;
        sqlite3_stmt *st = p->st[ST_TOUCH];
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (sqlite3_bind_blob(st, 1, p->touch_buf[i].token_hash, GH_TOKEN_HASH_LEN,
                                  SQLITE_STATIC) != SQLITE_OK ||
                sqlite3_bind_int64(st, 2, p->touch_buf[i].last_seen_at_ms) != SQLITE_OK)
                rc = db_error(p, "bind", SQLITE_ERROR);
            else
                rc = exec_stmt(p, ST_TOUCH);
        }
        if (rc == 0)
            rc = commit(p);
        else
            rollback(p);
        if (rc != 0)
            return rc;
        if (n < TOUCH_PAGE)
            break;
        int64_t oldest = p->touch_buf[n - 1].last_seen_at_ms;
        before = oldest < before ? oldest : before - 1; /* always progress */
    }
    p->flushed_until = t0;

    pthread_mutex_lock(&p->ring_lock);
    size_t n = p->ring_len;
    memcpy(p->ring_copy, p->ring, n * sizeof *p->ring);
    p->ring_len = 0;
    bool purge = p->purge_needed && t0 - p->last_purge_ms >= PURGE_PERIOD_MS;
    if (purge)
        p->purge_needed = false;
    pthread_mutex_unlock(&p->ring_lock);
    if (n || purge) {
        if ((rc = begin(p)) != 0)
            return rc;
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = delete_row(p, p->ring_copy[i]);
        if (rc == 0 && purge) {
            /* The ring overflowed: sweep every row past a deadline at once. */
            sqlite3_stmt *st = p->st[ST_PURGE];
            if (sqlite3_bind_int64(st, 1, t0) != SQLITE_OK ||
                sqlite3_bind_int64(st, 2, t0 - p->limits.idle_ttl_ms) != SQLITE_OK)
                rc = db_error(p, "bind", SQLITE_ERROR);
            else
                rc = exec_stmt(p, ST_PURGE);
            p->last_purge_ms = t0;
        }
        if (rc == 0)
            rc = commit(p);
        else
            rollback(p);
        if (rc != 0) {
            /* Those hashes are gone from the ring: the purge sweeps their rows later. */
            pthread_mutex_lock(&p->ring_lock);
            p->purge_needed = true;
            pthread_mutex_unlock(&p->ring_lock);
        }
    }
    /* The WAL is checkpointed here, off the request path, rather than inside some login's
     * commit (wal_autocheckpoint is off). */
    if (rc == 0)
        (void)sqlite3_wal_checkpoint_v2(p->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc;
}

/* While writes fail, one small write a second says when they work again (nothing else might
 * write for a long time). db_lock held. */
static int probe_locked(persist_t *p)
{
    if (p->detached || p->successor || !atomic_load(&p->failing))
        return 0;
    int rc = begin(p);
    if (rc == 0) {
        p->probing = true;
        int src = sqlite3_step(p->probe);
        sqlite3_reset(p->probe);
        if (src != SQLITE_DONE && src != SQLITE_ROW)
            rc = db_error(p, "probe", src);
        if (rc == 0)
            rc = commit(p);
        else
            rollback(p);
        p->probing = false;
    }
    return rc;
}

int gh_session_persist_flush(gh_session_store_t *s)
{
    if (!s || s->ops != &persist_ops)
        return GH_EINVAL;
    persist_t *p = (persist_t *)s;
    pthread_mutex_lock(&p->db_lock);
    int rc = probe_locked(p);
    int frc = flush_locked(p);
    if (rc == 0)
        rc = frc;
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static void *flusher_main(void *arg)
{
    persist_t *p = arg;
    bool warned = false;
    pthread_mutex_lock(&p->fl_lock);
    while (!p->fl_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += FLUSH_PERIOD_MS / 1000;
        pthread_cond_timedwait(&p->fl_wake, &p->fl_lock, &ts);
        if (p->fl_stop)
            break;
        pthread_mutex_unlock(&p->fl_lock);
        /* Said once per outage: while the disk is full this fails every second. */
        if (gh_session_persist_flush(&p->base) == 0) {
            warned = false;
        } else if (!warned) {
            GH_LOG(GH_LOG_WARN, "session flush failed; retrying every second");
            warned = true;
        }
        pthread_mutex_lock(&p->fl_lock);
    }
    pthread_mutex_unlock(&p->fl_lock);
    return NULL;
}

/* ---- handover ---- */

int gh_session_persist_handover_begin(gh_session_store_t *s)
{
    if (!s || s->ops != &persist_ops)
        return GH_EINVAL;
    persist_t *p = (persist_t *)s;
    pthread_mutex_lock(&p->db_lock);
    int rc = flush_locked(p);
    if (rc == 0 && (rc = begin(p)) == 0 && (rc = exec_stmt(p, ST_CLEAR_ENDED)) == 0)
        rc = commit(p);
    else
        rollback(p);
    if (rc == 0)
        p->log_ends = true;
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

int gh_session_persist_detach(gh_session_store_t *s)
{
    if (!s || s->ops != &persist_ops)
        return GH_EINVAL;
    persist_t *p = (persist_t *)s;
    pthread_mutex_lock(&p->db_lock);
    int rc = flush_locked(p);
    /* Even if the flush failed: the successor is about to own the rows, and a predecessor
     * writing from its stale view could undo what the successor does. */
    p->detached = true;
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

void gh_session_persist_handover_abort(gh_session_store_t *s)
{
    if (!s || s->ops != &persist_ops)
        return;
    persist_t *p = (persist_t *)s;
    pthread_mutex_lock(&p->db_lock);
    p->detached = false;
    p->log_ends = false;
    if (begin(p) == 0 && exec_stmt(p, ST_CLEAR_ENDED) == 0)
        (void)commit(p);
    else
        rollback(p);
    pthread_mutex_unlock(&p->db_lock);
}

uint64_t gh_session_persist_write_failures(gh_session_store_t *s)
{
    return s && s->ops == &persist_ops ? atomic_load(&((persist_t *)s)->write_failures) : 0;
}

gh_session_store_t *gh_session_persist_memory(gh_session_store_t *s)
{
    return s && s->ops == &persist_ops ? ((persist_t *)s)->mem : NULL;
}

/* ---- the writer calls ---- */

/* Takes db_lock and opens the write transaction every writer call runs in. */
static int writer_enter(persist_t *p)
{
    pthread_mutex_lock(&p->db_lock);
    if (p->detached || p->successor) {
        pthread_mutex_unlock(&p->db_lock);
        GH_LOG(GH_LOG_ERROR, "session change refused: this process does not own the database");
        return GH_ESTORE;
    }
    int rc = begin(p);
    if (rc != 0) {
        pthread_mutex_unlock(&p->db_lock);
        return rc;
    }
    p->txn_rc = 0;
    tls_writer = p;
    return 0;
}

/* Puts back, from its row, a session the running create evicted before its commit failed (the
 * rollback left the row on disk; db_lock held, no transaction open). Whatever the restore itself
 * evicts goes the expiry way: ended in memory, row deleted by the flusher. */
static void take_back_eviction(persist_t *p, const uint8_t hash[GH_TOKEN_HASH_LEN], int64_t now)
{
    sqlite3_stmt *st = p->st[ST_GET];
    gh_session_info_t in = {0};
    int r = GH_ENOTFOUND;
    if (sqlite3_bind_blob(st, 1, hash, GH_TOKEN_HASH_LEN, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == GH_SESSION_ID_RAW_LEN) {
        gh_base64url_encode(sqlite3_column_blob(st, 0), GH_SESSION_ID_RAW_LEN, in.id);
        in.user_id = (uint64_t)sqlite3_column_int64(st, 1);
        in.created_at_ms = sqlite3_column_int64(st, 2);
        in.last_seen_at_ms = sqlite3_column_int64(st, 3);
        in.expires_at_ms = sqlite3_column_int64(st, 4);
        const unsigned char *ip = sqlite3_column_text(st, 5);
        const unsigned char *ua = sqlite3_column_text(st, 6);
        int ualen = sqlite3_column_bytes(st, 6);
        gh_session_client_make(&in.client, (const char *)ip, (const char *)ua,
                               ua && ualen > 0 ? (size_t)ualen : 0);
        in.amr = (uint8_t)sqlite3_column_int(st, 7);
        tls_quiet = p;
        r = gh_session_memory_restore(p->mem, hash, &in, now);
        tls_quiet = NULL;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r != 0 && r != GH_EEXISTS) {
        /* Gone from memory for good (past a deadline, or no room): its row must go too. */
        ring_push(p, hash);
    }
}

static int p_create(gh_session_store_t *s, uint64_t user_id, const uint8_t hash[GH_TOKEN_HASH_LEN],
                    const gh_session_client_t *client, uint8_t amr, int64_t now_ms,
                    gh_session_info_t *out)
{
    persist_t *p = (persist_t *)s;
    gh_session_info_t info;
    /* The disk keeps the client as it came (cleaned), even when the memory store's table was
     * full and kept it as unknown: a restart with room brings it back. */
    gh_session_client_t c;
    if (client)
        gh_session_client_make(&c, client->ip, client->user_agent,
                               strnlen(client->user_agent, sizeof client->user_agent));
    else
        c.ip[0] = c.user_agent[0] = '\0';
    int rc = writer_enter(p);
    if (rc != 0)
        return rc;
    p->nundo = 0;
    p->undo_on = true;
    int mrc = gh_session_create_amr(p->mem, user_id, hash, &c, amr, now_ms, &info);
    p->undo_on = false;
    int dbrc = 0;
    if (mrc == 0) {
        uint8_t raw[GH_SESSION_ID_RAW_LEN];
        size_t rawlen = 0;
        sqlite3_stmt *st = p->st[ST_INSERT];
        if (gh_base64url_decode(info.id, GH_SESSION_ID_LEN, raw, sizeof raw, &rawlen) != 0 ||
            rawlen != sizeof raw)
            dbrc = GH_EINTERNAL;
        else if (sqlite3_bind_blob(st, 1, hash, GH_TOKEN_HASH_LEN, SQLITE_STATIC) != SQLITE_OK ||
                 sqlite3_bind_blob(st, 2, raw, sizeof raw, SQLITE_TRANSIENT) != SQLITE_OK ||
                 sqlite3_bind_int64(st, 3, (int64_t)info.user_id) != SQLITE_OK ||
                 sqlite3_bind_int64(st, 4, info.created_at_ms) != SQLITE_OK ||
                 sqlite3_bind_int64(st, 5, info.last_seen_at_ms) != SQLITE_OK ||
                 sqlite3_bind_int64(st, 6, info.expires_at_ms) != SQLITE_OK ||
                 sqlite3_bind_text(st, 7, c.ip, -1, SQLITE_STATIC) != SQLITE_OK ||
                 sqlite3_bind_text(st, 8, c.user_agent, -1, SQLITE_STATIC) != SQLITE_OK ||
                 sqlite3_bind_int(st, 9, info.amr) != SQLITE_OK)
            dbrc = db_error(p, "bind", SQLITE_ERROR);
        else
            dbrc = exec_stmt(p, ST_INSERT);
        sodium_memzero(raw, sizeof raw);
    }
    /* Evictions made on the way commit even when the create itself was refused. Keep db_lock
     * past the commit: a failure is undone before any other writer runs. */
    tls_writer = NULL;
    if (dbrc == 0 && p->txn_rc != 0)
        dbrc = p->txn_rc;
    if (dbrc == 0)
        dbrc = commit(p);
    else
        rollback(p);
    p->txn_rc = 0;
    if (dbrc != 0) {
        /* Nothing of this create is on disk, so none of it may stay in memory: the new session
         * goes (a restart would log it out; the hook only queues a delete of a row that is not
         * there), and the sessions it evicted come back from their rows. */
        if (mrc == 0) {
            tls_quiet = p;
            GH_IGNORE(gh_session_end(p->mem, hash, GH_END_REVOKED));
            tls_quiet = NULL;
        }
        for (size_t i = 0; i < p->nundo; i++)
            take_back_eviction(p, p->undo[i], now_ms);
        p->nundo = 0;
        pthread_mutex_unlock(&p->db_lock);
        return dbrc;
    }
    p->nundo = 0;
    pthread_mutex_unlock(&p->db_lock);
    if (mrc == 0 && out)
        *out = info;
    return mrc;
}

/*
 * Ends sessions whose rows go first: deletes the n rows (logging the ends during a handover) and
 * commits, and only then ends the sessions in memory. An end that cannot be written changes
 * nothing, so the client's retry finds its session as it was; an end that answered success is on
 * disk. db_lock held (writer_enter), no transaction open. *ended: how many ended in memory.
 */
static int end_rows(persist_t *p, hash_t *hashes, size_t n, gh_session_end_t reason, size_t *ended)
{
    *ended = 0;
    int rc = begin(p);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = delete_row(p, hashes[i]);
        if (rc == 0 && p->log_ends) {
            sqlite3_stmt *st = p->st[ST_LOG_END];
            if (sqlite3_bind_blob(st, 1, hashes[i], GH_TOKEN_HASH_LEN, SQLITE_STATIC) !=
                    SQLITE_OK ||
                sqlite3_bind_int(st, 2, (int)reason) != SQLITE_OK)
                rc = db_error(p, "bind", SQLITE_ERROR);
            else
                rc = exec_stmt(p, ST_LOG_END);
        }
    }
    if (rc == 0)
        rc = commit(p);
    else
        rollback(p);
    if (rc != 0)
        return rc;
    tls_written = p;
    for (size_t i = 0; i < n; i++)
        if (gh_session_end(p->mem, hashes[i], reason) == 0)
            (*ended)++;
    tls_written = NULL;
    return 0;
}

/* Takes db_lock for an end: refused where this process does not own the database. */
static int ender_enter(persist_t *p)
{
    pthread_mutex_lock(&p->db_lock);
    if (p->detached || p->successor) {
        pthread_mutex_unlock(&p->db_lock);
        GH_LOG(GH_LOG_ERROR, "session change refused: this process does not own the database");
        return GH_ESTORE;
    }
    return 0;
}

static int p_end(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
                 gh_session_end_t reason)
{
    persist_t *p = (persist_t *)s;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    int rc = ender_enter(p);
    if (rc != 0)
        return rc;
    size_t n = 0;
    memcpy(p->batch[0], hash, GH_TOKEN_HASH_LEN);
    rc = end_rows(p, p->batch, 1, reason, &n);
    pthread_mutex_unlock(&p->db_lock);
    return rc != 0 ? rc : n ? 0 : GH_ENOTFOUND;
}

static int p_end_by_id(gh_session_store_t *s, uint64_t user_id, const char *id,
                       gh_session_end_t reason)
{
    persist_t *p = (persist_t *)s;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    if (!id)
        return GH_ENOTFOUND;
    int rc = ender_enter(p);
    if (rc != 0)
        return rc;
    size_t n = 0;
    /* Writers are serialized by db_lock, so the session found here is the one that ends (or it
     * idled out meanwhile, which ends it as well). */
    if (gh_session_memory_hashes(p->mem, user_id, id, NULL, p->batch, 1) == 1)
        rc = end_rows(p, p->batch, 1, reason, &n);
    pthread_mutex_unlock(&p->db_lock);
    return rc != 0 ? rc : n ? 0 : GH_ENOTFOUND;
}

static int p_end_user(gh_session_store_t *s, uint64_t user_id, const uint8_t *keep,
                      gh_session_end_t reason, size_t *ended)
{
    persist_t *p = (persist_t *)s;
    size_t total = 0;
    if ((unsigned)reason >= GH_END__COUNT)
        return GH_EINVAL;
    int rc = ender_enter(p);
    if (rc != 0)
        return rc;
    /* In batches of END_BATCH, each committed before its sessions end: a failure leaves the
     * sessions not yet ended as they were, and a retry ends them. No create can add one of the
     * user's sessions meanwhile (creates are writers too). */
    for (;;) {
        size_t n = gh_session_memory_hashes(p->mem, user_id, NULL, keep, p->batch, END_BATCH);
        size_t done = 0;
        if (n == 0 || (rc = end_rows(p, p->batch, n, reason, &done)) != 0)
            break;
        total += done;
        /* A batch that ended nothing had idled out meanwhile (the janitor ended them): the
         * next batch holds others. A short batch was the last one. */
        if (n < END_BATCH)
            break;
    }
    pthread_mutex_unlock(&p->db_lock);
    if (ended)
        *ended = total;
    return rc;
}

/* Ready while the database takes writes: a failed write makes this GH_ESTORE until a later one
 * (the flusher probes once a second) succeeds. */
static int p_ping(gh_session_store_t *s)
{
    persist_t *p = (persist_t *)s;
    return atomic_load(&p->failing) ? GH_ESTORE : 0;
}

/* ---- the read side: straight to memory ---- */

static int p_lookup(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN], int64_t now_ms,
                    gh_session_info_t *out)
{
    return gh_session_lookup(((persist_t *)s)->mem, hash, now_ms, out);
}

static int p_list_user(gh_session_store_t *s, uint64_t user_id, int64_t now_ms,
                       gh_session_info_t *out, size_t cap, size_t *n)
{
    return gh_session_list_user(((persist_t *)s)->mem, user_id, now_ms, out, cap, n);
}

static size_t p_expire(gh_session_store_t *s, int64_t now_ms, size_t max_work)
{
    return gh_session_expire(((persist_t *)s)->mem, now_ms, max_work);
}

static void p_stats(gh_session_store_t *s, gh_session_stats_t *out)
{
    gh_session_stats(((persist_t *)s)->mem, out);
}

/* ---- open and close ---- */

static void p_destroy(gh_session_store_t **s)
{
    persist_t *p = (persist_t *)*s;
    if (!p)
        return;
    if (p->fl_started) {
        pthread_mutex_lock(&p->fl_lock);
        p->fl_stop = true;
        pthread_cond_signal(&p->fl_wake);
        pthread_mutex_unlock(&p->fl_lock);
        pthread_join(p->flusher, NULL);
    }
    if (p->db && p->mem && gh_session_persist_flush(&p->base) != 0)
        GH_LOG(GH_LOG_WARN, "last flush of session times failed",
               GH_LS("effect", "sessions may idle out a little early after the restart"));
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(p->st[i]);
    sqlite3_finalize(p->probe);
    if (p->db) {
        int rc = sqlite3_close(p->db);
        assert(rc == SQLITE_OK);
        (void)rc;
    }
    gh_session_store_destroy(&p->mem);
    free_deferred(p);
    gh_mem_free(GH_MEM_OTHER, p->touch_buf);
    gh_mem_free(GH_MEM_OTHER, p->ring_copy);
    gh_mem_free(GH_MEM_OTHER, p->ring);
    gh_mem_free(GH_MEM_OTHER, p->batch);
    gh_mem_free(GH_MEM_OTHER, p->undo);
    pthread_mutex_destroy(&p->db_lock);
    pthread_mutex_destroy(&p->ring_lock);
    pthread_mutex_destroy(&p->fl_lock);
    pthread_cond_destroy(&p->fl_wake);
    gh_mem_free(GH_MEM_OTHER, p);
    *s = NULL;
}

static void p_clients(gh_session_store_t *s, gh_session_clients_stats_t *out)
{
    gh_session_memory_clients(((persist_t *)s)->mem, out);
}

static int p_handover(gh_session_store_t *s, gh_session_handover_t step,
                      gh_session_load_stats_t *stats)
{
    switch (step) {
    case GH_HANDOVER_BEGIN:
        return gh_session_persist_handover_begin(s);
    case GH_HANDOVER_DETACH:
        return gh_session_persist_detach(s);
    case GH_HANDOVER_ABORT:
        gh_session_persist_handover_abort(s);
        return 0;
    case GH_HANDOVER_TAKEOVER:
        return gh_session_persist_takeover(s, stats);
    }
    return GH_EINVAL;
}

static const gh_session_store_ops_t persist_ops = {
    .name = "memory+sqlite",
    .create = p_create,
    .lookup = p_lookup,
    .end = p_end,
    .end_by_id = p_end_by_id,
    .end_user = p_end_user,
    .list_user = p_list_user,
    .expire = p_expire,
    .stats = p_stats,
    .destroy = p_destroy,
    .ping = p_ping,
    .clients = p_clients,
    .handover = p_handover,
};

static int open_db(persist_t *p, gh_durability_t durability)
{
    /* Born 0600, like users.db: it holds token hashes and user ids. */
    int fd = open(p->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        GH_LOG(GH_LOG_ERROR, "cannot create the session database", GH_LS("path", p->path),
               GH_LS("error", strerror(errno)));
        return GH_EIO;
    }
    close(fd);
    gh_mem_set_reporter(GH_MEM_SQLITE, sqlite_bytes);
    int rc = sqlite3_open_v2(
        p->path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot open the session database", GH_LS("path", p->path),
               GH_LS("detail", p->db ? sqlite3_errmsg(p->db) : sqlite3_errstr(rc)));
        return GH_ESTORE;
    }
    sqlite3_busy_timeout(p->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(p->db, 1);
    /* WAL + NORMAL: a commit is a write() into the WAL, so a killed process loses nothing;
     * FULL adds an fsync per commit for power loss. */
    char sql[200];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA cache_size=-%d;"
             " PRAGMA wal_autocheckpoint=0;",
             durability == GH_DURABILITY_FULL ? "FULL" : "NORMAL", CACHE_KIB);
    if (sqlite3_exec(p->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot configure the session database", GH_LS("path", p->path),
               GH_LS("detail", sqlite3_errmsg(p->db)));
        return GH_ESTORE;
    }
    if ((rc = gh_sqlite_migrate(p->db, p->path, "session database", migrations, SCHEMA_VERSION)) !=
        0)
        return rc;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(p->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &p->st[i],
                               NULL) != SQLITE_OK) {
            GH_LOG(GH_LOG_ERROR, "cannot prepare a session statement", GH_LS("path", p->path),
                   GH_LI("statement", i), GH_LS("detail", sqlite3_errmsg(p->db)));
            return GH_ESTORE;
        }
    }
    /* The probe rewrites the schema version with its own value: one page, nothing changed. */
    char probe[48];
    snprintf(probe, sizeof probe, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (sqlite3_prepare_v3(p->db, probe, -1, SQLITE_PREPARE_PERSISTENT, &p->probe, NULL) !=
        SQLITE_OK) {
        GH_LOG(GH_LOG_ERROR, "cannot prepare the session probe", GH_LS("path", p->path),
               GH_LS("detail", sqlite3_errmsg(p->db)));
        return GH_ESTORE;
    }
    return 0;
}

int gh_session_persist_open(const char *data_dir, const gh_session_limits_t *limits,
                            gh_durability_t durability, bool successor,
                            gh_session_load_stats_t *stats, gh_session_store_t **out)
{
    gh_session_load_stats_t local = {0};
    int rc = GH_EINVAL;
    persist_t *p = NULL;
    if (!data_dir || !*data_dir || !limits || limits->on_end || !out)
        goto out;
    rc = GH_ENOMEM;
    if (!(p = gh_mem_calloc(GH_MEM_OTHER, 1, sizeof *p)))
        goto out;
    p->base.ops = &persist_ops;
    pthread_mutex_init(&p->db_lock, NULL);
    pthread_mutex_init(&p->ring_lock, NULL);
    pthread_mutex_init(&p->fl_lock, NULL);
    pthread_cond_init(&p->fl_wake, NULL);
    p->successor = successor;
    p->limits = *limits;
    rc = GH_EINVAL;
    if (snprintf(p->path, sizeof p->path, "%s/sessions.db", data_dir) >= (int)sizeof p->path)
        goto fail;
    rc = GH_ENOMEM;
    p->touch_buf = gh_mem_calloc(GH_MEM_OTHER, TOUCH_PAGE, sizeof *p->touch_buf);
    p->ring = gh_mem_calloc(GH_MEM_OTHER, RING_SLOTS, sizeof *p->ring);
    p->ring_copy = gh_mem_calloc(GH_MEM_OTHER, RING_SLOTS, sizeof *p->ring_copy);
    p->batch = gh_mem_calloc(GH_MEM_OTHER, END_BATCH, sizeof *p->batch);
    p->undo = gh_mem_calloc(GH_MEM_OTHER, UNDO_SLOTS, sizeof *p->undo);
    if (!p->touch_buf || !p->ring || !p->ring_copy || !p->batch || !p->undo)
        goto fail;
    gh_session_limits_t ml = *limits;
    ml.on_end = on_end;
    ml.on_end_ctx = p;
    if ((rc = gh_session_memory_open(&ml, &p->mem)) != 0)
        goto fail;
    if ((rc = open_db(p, durability)) != 0)
        goto fail;
    pthread_mutex_lock(&p->db_lock);
    rc = initial_load(p, &local);
    pthread_mutex_unlock(&p->db_lock);
    if (rc != 0) {
        GH_LOG(GH_LOG_ERROR, "cannot load sessions", GH_LS("path", p->path),
               GH_LS("error", gh_strerror(rc)));
        goto fail;
    }
    if (pthread_create(&p->flusher, NULL, flusher_main, p) != 0) {
        rc = GH_EINTERNAL;
        goto fail;
    }
    p->fl_started = true;
    *out = &p->base;
    rc = 0;
    goto out;
fail:
    if (p) {
        gh_session_store_t *b = &p->base;
        p->detached = true; /* nothing was loaded that a flush could write */
        p_destroy(&b);
    }
out:
    if (stats)
        *stats = local;
    return rc;
}
