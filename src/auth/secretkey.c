/*
 * secretkey.c — loading (or, for the default path, creating) the secret key, and sealing with it
 * (secretkey.h). The file holds base64 text, so an operator can make one with
 * `openssl rand -base64 32` and read it back with the same tools.
 */
#include "auth/secretkey.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int create_key(const char *path, uint8_t key[GH_SECRET_KEY_LEN], char *why, size_t cap)
{
    char b64[sodium_base64_ENCODED_LEN(GH_SECRET_KEY_LEN, sodium_base64_VARIANT_ORIGINAL) + 1];
    randombytes_buf(key, GH_SECRET_KEY_LEN);
    sodium_bin2base64(b64, sizeof b64 - 1, key, GH_SECRET_KEY_LEN, sodium_base64_VARIANT_ORIGINAL);
    size_t n = strlen(b64);
    b64[n++] = '\n';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ret = 0;
    if (fd < 0 || write(fd, b64, n) != (ssize_t)n || fsync(fd) != 0) {
        snprintf(why, cap, "cannot create the secret key file \"%s\": %s", path, strerror(errno));
        ret = GH_EIO;
    }
    if (fd >= 0)
        close(fd);
    if (ret != 0)
        unlink(path);
    sodium_memzero(b64, sizeof b64);
    return ret;
}

int gh_secret_key_load(const char *path, bool create_if_missing, uint8_t key[GH_SECRET_KEY_LEN],
                       char *why, size_t cap)
{
    if (sodium_init() < 0)
        return GH_EINTERNAL;
    char line[256];
    int ret = GH_EINVAL;
    FILE *fp = fopen(path, "re");
    if (!fp && errno == ENOENT && create_if_missing)
        return create_key(path, key, why, cap);
    if (!fp) {
        snprintf(why, cap, "--secret-key-file: cannot read \"%s\": %s", path, strerror(errno));
        return GH_EINVAL;
    }
    size_t len = 0;
    if (!fgets(line, sizeof line, fp)) {
        snprintf(why, cap,
                 "--secret-key-file: \"%s\" is empty; expected 32 bytes in base64 "
                 "(openssl rand -base64 32)",
                 path);
        goto out;
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (sodium_base642bin(key, GH_SECRET_KEY_LEN, line, strlen(line), " \t", &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != GH_SECRET_KEY_LEN) {
        snprintf(why, cap,
                 "--secret-key-file: \"%s\" is not a key; expected 32 bytes in base64 "
                 "(openssl rand -base64 32)",
                 path);
        sodium_memzero(key, GH_SECRET_KEY_LEN);
        goto out;
    }
    ret = 0;
out:
    sodium_memzero(line, sizeof line);
    fclose(fp);
    return ret;
}

void gh_secret_seal(const uint8_t key[GH_SECRET_KEY_LEN], const uint8_t *in, size_t len,
                    uint8_t *out)
{
    randombytes_buf(out, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(out + crypto_secretbox_NONCEBYTES, in, len, out, key);
}

int gh_secret_open(const uint8_t key[GH_SECRET_KEY_LEN], const uint8_t *in, size_t len,
                   uint8_t *out)
{
    if (len < GH_SEAL_OVERHEAD)
        return GH_EAUTH;
    return crypto_secretbox_open_easy(out, in + crypto_secretbox_NONCEBYTES,
                                      len - crypto_secretbox_NONCEBYTES, in, key) == 0
               ? 0
               : GH_EAUTH;
}

void gh_secret_code_hash(const uint8_t key[GH_SECRET_KEY_LEN], uint64_t user_id, const char *code,
                         size_t len, uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t id[8];
    for (int i = 0; i < 8; i++)
        id[i] = (uint8_t)(user_id >> (8 * i));
    crypto_generichash_init(&st, key, GH_SECRET_KEY_LEN, 32);
    crypto_generichash_update(&st, id, sizeof id);
    crypto_generichash_update(&st, (const uint8_t *)code, len);
    crypto_generichash_final(&st, out, 32);
}
