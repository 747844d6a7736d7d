/*
 * oidc_keys.c — the signing key set of the OpenID provider (account/oidc_keys.h): loaded from
 * the user store, sealed there with the secret key, rotated on a schedule or by command, and
 * published as the JWKS.
 *
 * The one design decision: the STORE is the truth and memory is a copy. Every node (and the
 * `gatehouse keys rotate` command) writes rotations to the store as a new generation, which the
 * store accepts once (store/oidc_records.h); a node only ever signs with what it last read, and
 * re-reads every refresh. So a rotation elsewhere reaches this node within one refresh period,
 * and until then this node signs with the previous key — still published, so its tokens verify.
 *
 * What is published is what the last refresh kept: a retired key leaves the JWKS (and stops
 * verifying) at the first refresh after its retire_after, so at most one refresh period late.
 *
 * Memory: the set (a fixed table of GH_OIDC_KEYS_MAX keys with their JWK texts) and the read
 * buffer are charged to `oidc_keys`; the unsealed DER of a private key lives on the stack only
 * while it is imported or sealed, and is wiped.
 */
#include "account/oidc_keys.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "common/base64url.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define MEM GH_MEM_OIDC_KEYS
#define KID_BYTES 12

typedef struct {
    gh_jwt_key_t *key; /* NULL: free slot */
    char *jwk;         /* the public JWK text */
    int64_t generation, created_at, retired_at;
} entry_t;

struct gh_oidc_keys {
    gh_user_store_t *users;
    uint8_t secret[GH_SECRET_KEY_LEN];
    int64_t rotation_ms, retire_after_ms;
    pthread_rwlock_t lock; /* entries and current: read by signers, written by refresh */
    entry_t entries[GH_OIDC_KEYS_MAX];
    int current[GH_JWT__ALGS]; /* index into entries, -1: none */
    pthread_mutex_t refresh;   /* one refresh at a time */
    gh_oidc_key_rec_t *recs;   /* GH_OIDC_KEYS_MAX records: the refresh's read buffer */
};

static void entry_clear(entry_t *e)
{
    gh_jwt_key_free(&e->key);
    gh_mem_free(MEM, e->jwk);
    memset(e, 0, sizeof *e);
}

/* ---- rotation (needs only the store and the secret key) ---- */

/* Makes a key of alg, sealed into rec. */
static int make_rec(const uint8_t secret[GH_SECRET_KEY_LEN], gh_jwt_alg_t alg, int64_t gen,
                    int64_t now_ms, gh_oidc_key_rec_t *rec)
{
    uint8_t raw[KID_BYTES], der[GH_JWT_DER_MAX];
    size_t len = 0;
    memset(rec, 0, sizeof *rec);
    randombytes_buf(raw, sizeof raw);
    gh_base64url_encode(raw, sizeof raw, rec->kid);
    snprintf(rec->alg, sizeof rec->alg, "%s", gh_jwt_alg_name(alg));
    rec->generation = gen;
    rec->created_at = now_ms;
    gh_jwt_key_t *k = NULL;
    int rc = gh_jwt_key_generate(alg, rec->kid, &k);
    if (rc == 0)
        rc = gh_jwt_key_export(k, der, sizeof der, &len);
    if (rc == 0 && len + GH_SEAL_OVERHEAD > sizeof rec->sealed)
        rc = GH_ETOOBIG;
    if (rc == 0) {
        gh_secret_seal(secret, der, len, rec->sealed);
        rec->sealed_len = len + GH_SEAL_OVERHEAD;
    }
    sodium_memzero(der, sizeof der);
    gh_jwt_key_free(&k);
    return rc;
}

/* Writes generation gen (a key per alg) to the store, retiring the older ones. */
static int rotate_to(gh_user_store_t *users, const uint8_t secret[GH_SECRET_KEY_LEN], int64_t gen,
                     int64_t now_ms, gh_oidc_kids_t *out)
{
    gh_oidc_key_rec_t *recs = gh_mem_calloc(MEM, GH_JWT__ALGS, sizeof *recs);
    if (!recs)
        return GH_ENOMEM;
    int rc = 0;
    for (int a = 0; a < GH_JWT__ALGS && rc == 0; a++)
        rc = make_rec(secret, (gh_jwt_alg_t)a, gen, now_ms, &recs[a]);
    if (rc == 0)
        rc = gh_user_oidc_key_rotate(users, recs, GH_JWT__ALGS, now_ms);
    if (rc == 0 && out)
        for (int a = 0; a < GH_JWT__ALGS; a++)
            snprintf(out->kid[a], sizeof out->kid[a], "%s", recs[a].kid);
    if (rc == 0)
        GH_LOG(GH_LOG_INFO, "OpenID signing keys rotated", GH_LI("generation", gen),
               GH_LS("rs256_kid", recs[GH_JWT_RS256].kid),
               GH_LS("es256_kid", recs[GH_JWT_ES256].kid),
               GH_LS("eddsa_kid", recs[GH_JWT_EDDSA].kid));
    gh_mem_free(MEM, recs);
    return rc;
}

static int64_t max_generation(const gh_oidc_key_rec_t *recs, size_t n)
{
    int64_t g = 0;
    for (size_t i = 0; i < n; i++)
        if (recs[i].generation > g)
            g = recs[i].generation;
    return g;
}

int gh_oidc_keys_rotate(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                        int64_t now_ms, gh_oidc_kids_t *out)
{
    gh_oidc_key_rec_t *recs = gh_mem_calloc(MEM, GH_OIDC_KEYS_MAX, sizeof *recs);
    if (!recs)
        return GH_ENOMEM;
    int rc = GH_EEXISTS;
    /* Another rotation may win the generation between our read and our write: read again. */
    for (int attempt = 0; attempt < 3 && rc == GH_EEXISTS; attempt++) {
        size_t n = 0;
        rc = gh_user_oidc_key_list(users, recs, GH_OIDC_KEYS_MAX, &n);
        if (rc == 0)
            rc = rotate_to(users, key, max_generation(recs, n) + 1, now_ms, out);
    }
    gh_mem_free(MEM, recs);
    return rc;
}

/* ---- the set in memory ---- */

static int find_entry(const gh_oidc_keys_t *ks, const char *kid)
{
    for (int i = 0; i < GH_OIDC_KEYS_MAX; i++)
        if (ks->entries[i].key && strcmp(gh_jwt_key_kid(ks->entries[i].key), kid) == 0)
            return i;
    return -1;
}

/* Opens a stored record into e. */
static int open_rec(const gh_oidc_keys_t *ks, const gh_oidc_key_rec_t *r, entry_t *e)
{
    gh_jwt_alg_t alg;
    uint8_t der[GH_OIDC_KEY_SEALED_MAX];
    if (gh_jwt_alg_parse(r->alg, &alg) != 0 || r->sealed_len <= GH_SEAL_OVERHEAD ||
        r->sealed_len > sizeof r->sealed)
        return GH_EINVAL;
    size_t len = r->sealed_len - GH_SEAL_OVERHEAD;
    int rc = gh_secret_open(ks->secret, r->sealed, r->sealed_len, der);
    if (rc == 0)
        rc = gh_jwt_key_import(alg, r->kid, der, len, &e->key);
    sodium_memzero(der, sizeof der);
    if (rc == 0 && (rc = gh_jwt_key_public_jwk(e->key, &e->jwk)) != 0)
        gh_jwt_key_free(&e->key);
    e->generation = r->generation;
    e->created_at = r->created_at;
    e->retired_at = r->retired_at;
    return rc;
}

static bool published(const gh_oidc_keys_t *ks, int64_t retired_at, int64_t now_ms)
{
    return retired_at == 0 || retired_at + ks->retire_after_ms > now_ms;
}

/* Brings the set to the records read (lock not held: builds the new table aside, then swaps). */
static int apply(gh_oidc_keys_t *ks, const gh_oidc_key_rec_t *recs, size_t n, int64_t now_ms)
{
    entry_t *next = gh_mem_calloc(MEM, GH_OIDC_KEYS_MAX, sizeof *next);
    if (!next)
        return GH_ENOMEM;
    int current[GH_JWT__ALGS];
    int64_t cur_gen[GH_JWT__ALGS];
    for (int a = 0; a < GH_JWT__ALGS; a++) {
        current[a] = -1;
        cur_gen[a] = -1;
    }
    size_t m = 0;
    int rc = 0;
    pthread_rwlock_rdlock(&ks->lock);
    for (size_t i = 0; i < n && m < GH_OIDC_KEYS_MAX; i++) {
        const gh_oidc_key_rec_t *r = &recs[i];
        if (!published(ks, r->retired_at, now_ms))
            continue;
        int old = find_entry(ks, r->kid);
        if (old >= 0) { /* keep what is open already: only the retirement can have changed */
            const entry_t *o = &ks->entries[old];
            next[m] = *o;
            next[m].key = NULL;
            next[m].jwk = NULL;
            next[m].retired_at = r->retired_at;
            /* copies are made below, under the write lock, by moving the pointers */
            next[m].generation = -1 - old; /* marks "move entry old" */
        } else if ((rc = open_rec(ks, r, &next[m])) != 0) {
            GH_LOG(GH_LOG_ERROR, "an OpenID signing key cannot be opened", GH_LS("kid", r->kid),
                   GH_LS("error", gh_errname(rc)),
                   GH_LS("hint", rc == GH_EAUTH    ? "it was sealed with another --secret-key-file"
                                 : rc == GH_EINVAL ? "the stored key is damaged"
                                                   : "out of memory or OpenSSL failed"));
            break;
        }
        gh_jwt_alg_t alg;
        if (r->retired_at == 0 && gh_jwt_alg_parse(r->alg, &alg) == 0 &&
            r->generation > cur_gen[alg]) {
            cur_gen[alg] = r->generation;
            current[alg] = (int)m;
        }
        m++;
    }
    pthread_rwlock_unlock(&ks->lock);
    if (rc != 0) {
        for (size_t i = 0; i < m + 1 && i < GH_OIDC_KEYS_MAX; i++)
            if (next[i].generation >= 0)
                entry_clear(&next[i]);
        gh_mem_free(MEM, next);
        return rc;
    }
    pthread_rwlock_wrlock(&ks->lock);
    for (size_t i = 0; i < m; i++) {
        if (next[i].generation < 0) {
            entry_t *o = &ks->entries[-1 - next[i].generation];
            int64_t retired = next[i].retired_at;
            next[i] = *o;
            next[i].retired_at = retired;
            o->key = NULL;
            o->jwk = NULL;
        }
    }
    for (int i = 0; i < GH_OIDC_KEYS_MAX; i++)
        entry_clear(&ks->entries[i]);
    memcpy(ks->entries, next, m * sizeof *next);
    memcpy(ks->current, current, sizeof current);
    pthread_rwlock_unlock(&ks->lock);
    gh_mem_free(MEM, next);
    return 0;
}

/* When the current keys are due for replacement (or an alg has none): true. */
static bool due(const gh_oidc_keys_t *ks, const gh_oidc_key_rec_t *recs, size_t n, int64_t now_ms)
{
    int64_t newest[GH_JWT__ALGS] = {0};
    bool have[GH_JWT__ALGS] = {false};
    for (size_t i = 0; i < n; i++) {
        gh_jwt_alg_t alg;
        if (recs[i].retired_at != 0 || gh_jwt_alg_parse(recs[i].alg, &alg) != 0)
            continue;
        have[alg] = true;
        if (recs[i].created_at > newest[alg])
            newest[alg] = recs[i].created_at;
    }
    for (int a = 0; a < GH_JWT__ALGS; a++) {
        if (!have[a])
            return true;
        if (ks->rotation_ms > 0 && newest[a] + ks->rotation_ms <= now_ms)
            return true;
    }
    return false;
}

int gh_oidc_keys_refresh(gh_oidc_keys_t *ks, int64_t now_ms)
{
    pthread_mutex_lock(&ks->refresh);
    size_t n = 0;
    int rc = gh_user_oidc_key_list(ks->users, ks->recs, GH_OIDC_KEYS_MAX, &n);
    if (rc == 0 && due(ks, ks->recs, n, now_ms)) {
        /* One node wins the generation; the others get GH_EEXISTS and read what it wrote. */
        rc = rotate_to(ks->users, ks->secret, max_generation(ks->recs, n) + 1, now_ms, NULL);
        if (rc == 0 || rc == GH_EEXISTS)
            rc = gh_user_oidc_key_list(ks->users, ks->recs, GH_OIDC_KEYS_MAX, &n);
    }
    if (rc == 0) {
        size_t removed = 0;
        if (gh_user_oidc_key_prune(ks->users, now_ms - ks->retire_after_ms, &removed) == 0 &&
            removed > 0)
            GH_LOG(GH_LOG_INFO, "retired OpenID signing keys deleted",
                   GH_LI("count", (int64_t)removed));
        rc = apply(ks, ks->recs, n, now_ms);
    }
    /* The unsealed keys never sit in this buffer, only sealed ones: no wipe needed. */
    pthread_mutex_unlock(&ks->refresh);
    if (rc != 0)
        GH_LOG(GH_LOG_WARN, "OpenID signing keys not refreshed", GH_LS("error", gh_errname(rc)));
    return rc;
}

int gh_oidc_keys_open(gh_user_store_t *users, const uint8_t key[GH_SECRET_KEY_LEN],
                      int64_t rotation_ms, int64_t retire_after_ms, gh_oidc_keys_t **out)
{
    *out = NULL;
    if (!users || !key || rotation_ms < 0 || retire_after_ms <= 0)
        return GH_EINVAL;
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    gh_oidc_keys_t *ks = gh_mem_calloc(MEM, 1, sizeof *ks);
    if (!ks)
        return GH_ENOMEM;
    ks->recs = gh_mem_calloc(MEM, GH_OIDC_KEYS_MAX, sizeof *ks->recs);
    if (!ks->recs) {
        gh_mem_free(MEM, ks);
        return GH_ENOMEM;
    }
    ks->users = users;
    memcpy(ks->secret, key, GH_SECRET_KEY_LEN);
    ks->rotation_ms = rotation_ms;
    ks->retire_after_ms = retire_after_ms;
    for (int a = 0; a < GH_JWT__ALGS; a++)
        ks->current[a] = -1;
    pthread_rwlock_init(&ks->lock, NULL);
    pthread_mutex_init(&ks->refresh, NULL);
    int rc = gh_oidc_keys_refresh(ks, gh_clock_now_ms());
    if (rc != 0) {
        gh_oidc_keys_close(&ks);
        return rc;
    }
    *out = ks;
    return 0;
}

void gh_oidc_keys_close(gh_oidc_keys_t **pks)
{
    if (!pks || !*pks)
        return;
    gh_oidc_keys_t *ks = *pks;
    for (int i = 0; i < GH_OIDC_KEYS_MAX; i++)
        entry_clear(&ks->entries[i]);
    pthread_rwlock_destroy(&ks->lock);
    pthread_mutex_destroy(&ks->refresh);
    gh_mem_free(MEM, ks->recs);
    gh_mem_free_secret(MEM, ks); /* holds the secret key */
    *pks = NULL;
}

int gh_oidc_keys_sign(gh_oidc_keys_t *ks, const char *alg_name, const char *payload, size_t len,
                      char **jwt)
{
    *jwt = NULL;
    gh_jwt_alg_t alg;
    if (gh_jwt_alg_parse(alg_name, &alg) != 0)
        return GH_EINVAL;
    pthread_rwlock_rdlock(&ks->lock);
    int i = ks->current[alg];
    int rc = i >= 0 ? gh_jwt_sign(ks->entries[i].key, payload, len, jwt) : GH_ENOTFOUND;
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int gh_oidc_keys_verify(gh_oidc_keys_t *ks, const char *jwt, size_t len, char **payload,
                        size_t *plen)
{
    *payload = NULL;
    *plen = 0;
    char kid[GH_JWT_KID_MAX + 1], alg[8];
    int rc = gh_jwt_peek(jwt, len, kid, alg);
    if (rc != 0)
        return rc;
    pthread_rwlock_rdlock(&ks->lock);
    int i = kid[0] ? find_entry(ks, kid) : -1;
    if (i < 0)
        rc = GH_EAUTH;
    else
        rc = gh_jwt_verify(ks->entries[i].key, jwt, len, payload, plen);
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int gh_oidc_keys_jwks(gh_oidc_keys_t *ks, char **json_text)
{
    *json_text = NULL;
    pthread_rwlock_rdlock(&ks->lock);
    size_t cap = 16;
    for (int i = 0; i < GH_OIDC_KEYS_MAX; i++)
        if (ks->entries[i].jwk)
            cap += strlen(ks->entries[i].jwk) + 1;
    char *s = gh_mem_alloc(MEM, cap);
    int rc = GH_ENOMEM;
    if (s) {
        size_t off = (size_t)snprintf(s, cap, "{\"keys\":[");
        bool first = true;
        /* current keys first (pass 0), then the retired ones still published (pass 1) */
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < GH_OIDC_KEYS_MAX; i++) {
                const entry_t *e = &ks->entries[i];
                if (!e->jwk || (e->retired_at == 0) != (pass == 0))
                    continue;
                off += (size_t)snprintf(s + off, cap - off, "%s%s", first ? "" : ",", e->jwk);
                first = false;
            }
        }
        snprintf(s + off, cap - off, "]}");
        *json_text = s;
        rc = 0;
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

void gh_oidc_keys_current(gh_oidc_keys_t *ks, gh_oidc_kids_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&ks->lock);
    for (int a = 0; a < GH_JWT__ALGS; a++)
        if (ks->current[a] >= 0)
            snprintf(out->kid[a], sizeof out->kid[a], "%s",
                     gh_jwt_key_kid(ks->entries[ks->current[a]].key));
    pthread_rwlock_unlock(&ks->lock);
}
