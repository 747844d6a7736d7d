/*
 * session_persist.c — the memory store made durable: <data-dir>/sessions.db (SQLite, WAL) holds
 * every live session's token hash, public id, user id, times and client (IP, user agent), so a
 * restart, a crash or a reload logs nobody out, forgets no session's device and brings no ended
 * session back.
 *
 * The one design decision: persistence follows the memory store's own order of events through
 * its end hook, called under the store's lock. Every call that can end or create a session
 * (create, end, end_by_id, end_user) runs as "the writer": it holds this layer's db_lock, opens
 * a write transaction, calls the memory store — whose hook, on this same thread, deletes each
 * ended row inside that transaction, evictions included — then inserts the new row and commits,
 * all before returning. Because writers are serialized and the hook runs in the store's order, the
 * database can never disagree with memory about which of two racing events came last (a session
 * created and at once revoked by "log out everywhere" is deleted, never re-inserted after).
 * The hook doing SQL under the store lock is the price: a DELETE by primary key into an open
 * transaction is a few microseconds with no I/O (the commit, with its write or fsync, happens
 * after the store lock is released), and only writers ever do it; token checks never do.
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

#define FLUSH_PERIOD_MS 1000
#define TOUCH_PAGE 4096       /* last-seen times written per transaction */
#define TOUCH_MAX_PAGES 128   /* at most 512K sessions' last-seen per flush; older ones wait */
#define RING_SLOTS 4096       /* expired hashes waiting for the flusher */
#define PURGE_PERIOD_MS 60000 /* at most one full purge of expired rows a minute */
#define BUSY_TIMEOUT_MS 5000
#define CACHE_KIB 2048

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
    ST__COUNT
};

static const char *const statements[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INSERT] = "INSERT INTO sessions (token_hash, id, user_id, created_at, last_seen_at,"
                  " expires_at, ip, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_DELETE] = "DELETE FROM sessions WHERE token_hash = ?1",
    [ST_LOG_END] = "INSERT INTO ended (token_hash, reason) VALUES (?1, ?2)",
    /* max(): a flush never moves a session's idle clock back. */
    [ST_TOUCH] = "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2) WHERE token_hash = ?1",
    [ST_LOAD] = "SELECT seq, token_hash, id, user_id, created_at, last_seen_at, expires_at, ip,"
                " user_agent FROM sessions WHERE seq > ?1 ORDER BY seq",
    [ST_ENDED] = "SELECT seq, token_hash, reason FROM ended WHERE seq > ?1 ORDER BY seq",
    [ST_ENDED_MAX] = "SELECT coalesce(max(seq), 0) FROM ended",
    [ST_CLEAR_ENDED] = "DELETE FROM ended",
    [ST_PURGE] = "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?2",
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

static const gh_session_store_ops_t persist_ops;

static size_t sqlite_bytes(void)
{
    sqlite3_int64 n = sqlite3_memory_used();
    return n > 0 ? (size_t)n : 0;
}

static int db_error(persist_t *p, const char *op, int rc)
{
    GH_LOG(GH_LOG_ERROR, "session database error", GH_LS("op", op), GH_LI("sqlite_rc", rc),
           GH_LS("detail", sqlite3_errmsg(p->db)));
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
    return exec_stmt(p, ST_BEGIN);
}

static int commit(persist_t *p)
{
    int rc = exec_stmt(p, ST_COMMIT);
    if (rc != 0 && !sqlite3_get_autocommit(p->db))
        (void)exec_stmt(p, ST_ROLLBACK);
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
    }
    /* The WAL is checkpointed here, off the request path, rather than inside some login's
     * commit (wal_autocheckpoint is off). */
    if (rc == 0)
        (void)sqlite3_wal_checkpoint_v2(p->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc;
}

int gh_session_persist_flush(gh_session_store_t *s)
{
    if (!s || s->ops != &persist_ops)
        return GH_EINVAL;
    persist_t *p = (persist_t *)s;
    pthread_mutex_lock(&p->db_lock);
    int rc = flush_locked(p);
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static void *flusher_main(void *arg)
{
    persist_t *p = arg;
    pthread_mutex_lock(&p->fl_lock);
    while (!p->fl_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += FLUSH_PERIOD_MS / 1000;
        pthread_cond_timedwait(&p->fl_wake, &p->fl_lock, &ts);
        if (p->fl_stop)
            break;
        pthread_mutex_unlock(&p->fl_lock);
        if (gh_session_persist_flush(&p->base) != 0)
            GH_LOG(GH_LOG_WARN, "session flush failed; retrying in a second");
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

/* Commits (or rolls back after a failure) and releases db_lock. */
static int writer_leave(persist_t *p, int rc)
{
    tls_writer = NULL;
    if (rc == 0 && p->txn_rc != 0)
        rc = p->txn_rc;
    if (rc == 0)
        rc = commit(p);
    else
        rollback(p);
    p->txn_rc = 0;
    pthread_mutex_unlock(&p->db_lock);
    return rc;
}

static int p_create(gh_session_store_t *s, uint64_t user_id, const uint8_t hash[GH_TOKEN_HASH_LEN],
                    const gh_session_client_t *client, int64_t now_ms, gh_session_info_t *out)
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
    int mrc = gh_session_create(p->mem, user_id, hash, &c, now_ms, &info);
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
                 sqlite3_bind_text(st, 8, c.user_agent, -1, SQLITE_STATIC) != SQLITE_OK)
            dbrc = db_error(p, "bind", SQLITE_ERROR);
        else
            dbrc = exec_stmt(p, ST_INSERT);
        sodium_memzero(raw, sizeof raw);
    }
    /* Evictions made on the way commit even when the create itself was refused. */
    dbrc = writer_leave(p, dbrc);
    if (dbrc != 0 && mrc == 0) {
        /* Not on disk, so not a session: a restart would log it out. Take it back (the hook
         * only queues a delete of a row that is not there). */
        tls_quiet = p;
        GH_IGNORE(gh_session_end(p->mem, hash, GH_END_REVOKED));
        tls_quiet = NULL;
        return dbrc;
    }
    if (mrc == 0 && out)
        *out = info;
    return mrc;
}

static int p_end(gh_session_store_t *s, const uint8_t hash[GH_TOKEN_HASH_LEN],
                 gh_session_end_t reason)
{
    persist_t *p = (persist_t *)s;
    int rc = writer_enter(p);
    if (rc != 0)
        return rc;
    int mrc = gh_session_end(p->mem, hash, reason);
    rc = writer_leave(p, 0);
    return rc != 0 ? rc : mrc;
}

static int p_end_by_id(gh_session_store_t *s, uint64_t user_id, const char *id,
                       gh_session_end_t reason)
{
    persist_t *p = (persist_t *)s;
    int rc = writer_enter(p);
    if (rc != 0)
        return rc;
    int mrc = gh_session_end_by_id(p->mem, user_id, id, reason);
    rc = writer_leave(p, 0);
    return rc != 0 ? rc : mrc;
}

static int p_end_user(gh_session_store_t *s, uint64_t user_id, const uint8_t *keep,
                      gh_session_end_t reason, size_t *ended)
{
    persist_t *p = (persist_t *)s;
    int rc = writer_enter(p);
    if (rc != 0)
        return rc;
    int mrc = gh_session_end_user(p->mem, user_id, keep, reason, ended);
    rc = writer_leave(p, 0);
    return rc != 0 ? rc : mrc;
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
    if (!p->touch_buf || !p->ring || !p->ring_copy)
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
