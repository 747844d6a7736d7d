/*
 * oidc_cmd.c — `gatehouse client add|list|del` and `gatehouse keys rotate`: the OpenID
 * provider's clients and signing keys from a shell. Like `gatehouse user`, they take the flags,
 * environment and config file of `serve` (so they find the same --data-dir or --postgres-url and
 * the same --secret-key-file), work on the store directly (no node needs to run), and record
 * admin.client_added / admin.client_deleted / admin.keys_rotated with actor "cli".
 *
 * The one design decision: what a script needs goes to standard output as ONE JSON object
 * (`client add` prints {"client_id","client_secret"} and nothing else; the secret is shown this
 * once and never again), every human note to standard error. A running node picks up a rotation
 * at its next key refresh (--oidc-key-refresh, 60 s) and a new client at its next token request.
 */
#include "node/node.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account/oidc_keys.h"
#include "auth/secretkey.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

#define LIST_PAGE 32

static void client_usage(FILE *out)
{
    fprintf(out,
            "usage: gatehouse client add NAME --redirect-uri URI [--redirect-uri URI...]\n"
            "                            [--post-logout-uri URI...] [--public] [--consent]\n"
            "                            [--id-token-alg RS256|ES256|EdDSA] [flags]\n"
            "       gatehouse client list [--json] [flags]\n"
            "       gatehouse client del CLIENT_ID [flags]\n"
            "       (`--` before NAME or CLIENT_ID lets it begin with '-')\n"
            "\n"
            "add prints {\"client_id\",\"client_secret\"} (no secret with --public: such a client "
            "must use PKCE);\n"
            "the secret is shown only now. --consent: the user is asked before the first grant "
            "(default:\n"
            "a first-party client, no consent screen). Redirect URIs match exactly; https, or "
            "http to\n"
            "localhost, 127.0.0.1 and [::1] (--oidc-allow-http-redirects allows any http host).\n"
            "\n"
            "Flags, environment and --config are those of `gatehouse serve`; --data-dir,\n"
            "--user-store, --postgres-url and --secret-key-file matter here.\n");
}

static void keys_usage(FILE *out)
{
    fprintf(out, "usage: gatehouse keys rotate [flags]\n"
                 "\n"
                 "Makes new RS256, ES256 and EdDSA signing keys current and prints their kids as "
                 "JSON.\n"
                 "The old keys stay in the JWKS until the tokens they signed have expired; "
                 "running nodes\n"
                 "sign with the new ones within --oidc-key-refresh (60 s).\n"
                 "\n"
                 "Flags, environment and --config are those of `gatehouse serve`; --data-dir,\n"
                 "--user-store, --postgres-url and --secret-key-file matter here.\n");
}

/* The store and the secret key the flags name, as `serve` would open them. */
static int open_store(const gh_config_t *cfg, const char *cmd, gh_user_store_t **store,
                      uint8_t key[GH_SECRET_KEY_LEN])
{
    int rc;
    if (cfg->user_store == GH_USER_STORE_POSTGRES) {
        gh_user_postgres_options_t po = {.url = cfg->postgres_url, .pool_size = 1};
        rc = gh_user_postgres_open(&po, store);
    } else {
        rc = gh_user_sqlite_open(cfg->data_dir, store);
    }
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s: cannot open the user store: %s\n", cmd, gh_strerror(rc));
        return 1;
    }
    char path[GH_CONFIG_STR + 16], why[GH_CONFIG_STR + 160];
    bool dflt = cfg->secret_key_file[0] == '\0';
    if (dflt)
        snprintf(path, sizeof path, "%s/secret.key", cfg->data_dir);
    else
        snprintf(path, sizeof path, "%s", cfg->secret_key_file);
    if ((rc = gh_secret_key_load(path, dflt, key, why, sizeof why)) != 0) {
        fprintf(stderr, "gatehouse: %s: %s\n", cmd, why);
        gh_user_store_close(store);
        return 1;
    }
    return 0;
}

/* Loads the configuration from the flags left over (fargv); 0, or the exit code. */
static int load_config(gh_config_t *cfg, int fargc, char **fargv, bool *help_shown)
{
    char err[512];
    fargv[fargc] = NULL;
    int rc = gh_config_load(cfg, fargc, fargv, stdout, err, sizeof err);
    *help_shown = rc == 1;
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s\n", err);
        return 2;
    }
    gh_log_setup(GH_LOG_TEXT, GH_LOG_WARN);
    return sodium_init() < 0 ? 1 : 0;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_uris(const char (*uris)[GH_OIDC_URI_MAX + 1], size_t n)
{
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            putchar(',');
        print_json_string(uris[i]);
    }
    putchar(']');
}

static int client_list(gh_user_store_t *store, bool json)
{
    gh_oidc_client_t *page = gh_mem_calloc(GH_MEM_OTHER, LIST_PAGE, sizeof *page);
    if (!page)
        return 1;
    char after[GH_OIDC_CLIENT_ID_MAX + 1] = "";
    size_t n = 0, total = 0;
    int rc;
    if (json)
        printf("{\"clients\":[");
    else
        printf("%-24s %-20s %-12s %-7s %-5s %s\n", "CLIENT_ID", "CREATED", "TYPE", "CONSENT", "ALG",
               "NAME / REDIRECT URIS");
    do {
        if ((rc = gh_oidc_client_list(store, after, page, LIST_PAGE, &n)) != 0)
            break;
        for (size_t i = 0; i < n; i++, total++) {
            const gh_oidc_client_t *c = &page[i];
            char created[GH_RFC3339_LEN];
            gh_clock_rfc3339(c->created_at, created);
            if (json) {
                printf("%s{\"client_id\":\"%s\",\"name\":", total ? "," : "", c->client_id);
                print_json_string(c->name);
                printf(
                    ",\"public\":%s,\"consent\":%s,\"id_token_alg\":\"%s\",\"created_at\":\"%s\","
                    "\"redirect_uris\":",
                    c->is_public ? "true" : "false", c->consent ? "true" : "false", c->id_token_alg,
                    created);
                print_uris(c->redirect_uris, c->n_redirect);
                printf(",\"post_logout_redirect_uris\":");
                print_uris(c->post_logout_uris, c->n_post_logout);
                putchar('}');
            } else {
                printf("%-24s %-20s %-12s %-7s %-5s %s\n", c->client_id, created,
                       c->is_public ? "public" : "confidential", c->consent ? "yes" : "no",
                       c->id_token_alg, c->name);
                for (size_t u = 0; u < c->n_redirect; u++)
                    printf("%75s %s\n", "", c->redirect_uris[u]);
            }
            snprintf(after, sizeof after, "%s", c->client_id);
        }
    } while (n == LIST_PAGE);
    if (json)
        printf("]}\n");
    gh_mem_free(GH_MEM_OTHER, page);
    if (rc != 0) {
        fprintf(stderr, "gatehouse: client list: %s\n", gh_strerror(rc));
        return 1;
    }
    return 0;
}

int gh_client_cmd_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        client_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    bool add = strcmp(action, "add") == 0, del = strcmp(action, "del") == 0,
         list = strcmp(action, "list") == 0;
    if (!add && !del && !list) {
        fprintf(stderr, "gatehouse: client: unknown action '%s' (expected add, list, del)\n",
                action);
        return 2;
    }
    const char *arg = NULL;
    int first = 2;
    if (add || del) {
        /* NAME or CLIENT_ID comes first; `--` before it lets it begin with '-' */
        bool dashes = argc > 3 && strcmp(argv[2], "--") == 0;
        if (argc < 3 || (!dashes && argv[2][0] == '-')) {
            fprintf(stderr, "gatehouse: client %s: %s is required\n", action,
                    add ? "a NAME" : "a CLIENT_ID");
            return 2;
        }
        arg = argv[dashes ? 3 : 2];
        first = dashes ? 4 : 3;
    }
    static gh_oidc_client_t c; /* 8 KiB: not on the stack */
    memset(&c, 0, sizeof c);
    bool json = false;
    char *fargv[256];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    for (int i = first; i < argc; i++) {
        const char *f = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool redirect = add && strcmp(f, "--redirect-uri") == 0,
             logout = add && strcmp(f, "--post-logout-uri") == 0,
             alg = add && strcmp(f, "--id-token-alg") == 0;
        if (redirect || logout || alg) {
            size_t *n = redirect ? &c.n_redirect : &c.n_post_logout;
            if (!val) {
                fprintf(stderr, "gatehouse: client add: %s needs a value\n", f);
                return 2;
            }
            if (alg) {
                snprintf(c.id_token_alg, sizeof c.id_token_alg, "%.7s", val);
                if (strlen(val) >= sizeof c.id_token_alg)
                    snprintf(c.id_token_alg, sizeof c.id_token_alg, "?");
            } else if (*n >= GH_OIDC_MAX_URIS || strlen(val) > GH_OIDC_URI_MAX) {
                fprintf(stderr, "gatehouse: client add: at most %d URIs of %d bytes each for %s\n",
                        GH_OIDC_MAX_URIS, GH_OIDC_URI_MAX, f);
                return 2;
            } else {
                snprintf(redirect ? c.redirect_uris[*n] : c.post_logout_uris[*n],
                         GH_OIDC_URI_MAX + 1, "%s", val);
                (*n)++;
            }
            i++;
        } else if (add && strcmp(f, "--public") == 0) {
            c.is_public = true;
        } else if (add && strcmp(f, "--consent") == 0) {
            c.consent = true;
        } else if (list && strcmp(f, "--json") == 0) {
            json = true;
        } else if (fargc < 255) {
            fargv[fargc++] = argv[i];
        }
    }
    gh_config_t cfg;
    bool help_shown;
    int code = load_config(&cfg, fargc, fargv, &help_shown);
    if (code != 0 || help_shown)
        return code;
    gh_user_store_t *store = NULL;
    uint8_t key[GH_SECRET_KEY_LEN];
    if ((code = open_store(&cfg, "client", &store, key)) != 0)
        return code;
    gh_account_t acct = {.users = store, .secret_key = key};
    snprintf(acct.actor, sizeof acct.actor, "cli");
    if (list) {
        code = client_list(store, json);
    } else if (add) {
        if (strlen(arg) > GH_OIDC_CLIENT_NAME_MAX) {
            fprintf(stderr, "gatehouse: client add: the name must be 1 to 64 bytes\n");
            code = 2;
            goto out;
        }
        snprintf(c.name, sizeof c.name, "%s", arg);
        char secret[GH_OIDC_SECRET_LEN + 1];
        const char *why = NULL;
        int rc = gh_account_oidc_client_add(&acct, &c, cfg.oidc_allow_http_redirects,
                                            gh_clock_now_ms(), secret, &why);
        if (rc != 0) {
            fprintf(stderr, "gatehouse: client add: %s\n", why ? why : gh_strerror(rc));
            code = rc == GH_EINVAL ? 2 : 1;
        } else if (c.is_public) {
            printf("{\"client_id\":\"%s\"}\n", c.client_id);
        } else {
            printf("{\"client_id\":\"%s\",\"client_secret\":\"%s\"}\n", c.client_id, secret);
            fprintf(stderr, "gatehouse: client add: the secret is shown only this once\n");
        }
        sodium_memzero(secret, sizeof secret);
    } else {
        int rc = gh_account_oidc_client_del(&acct, arg);
        if (rc == GH_ENOTFOUND)
            fprintf(stderr, "gatehouse: client del: no client %s\n", arg);
        else if (rc != 0)
            fprintf(stderr, "gatehouse: client del: %s\n", gh_strerror(rc));
        code = rc == 0 ? 0 : 1;
    }
out:
    sodium_memzero(key, sizeof key);
    gh_user_store_close(&store);
    return code;
}

int gh_keys_cmd_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        keys_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "rotate") != 0) {
        fprintf(stderr, "gatehouse: keys: unknown action '%s' (expected rotate)\n", argv[1]);
        return 2;
    }
    char *fargv[256];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    for (int i = 2; i < argc && fargc < 255; i++)
        fargv[fargc++] = argv[i];
    gh_config_t cfg;
    bool help_shown;
    int code = load_config(&cfg, fargc, fargv, &help_shown);
    if (code != 0 || help_shown)
        return code;
    gh_user_store_t *store = NULL;
    uint8_t key[GH_SECRET_KEY_LEN];
    if ((code = open_store(&cfg, "keys", &store, key)) != 0)
        return code;
    gh_account_t acct = {.users = store, .secret_key = key};
    snprintf(acct.actor, sizeof acct.actor, "cli");
    gh_oidc_kids_t kids;
    int rc = gh_account_oidc_keys_rotate(&acct, gh_clock_now_ms(), &kids);
    if (rc != 0) {
        fprintf(stderr, "gatehouse: keys rotate: %s\n", gh_strerror(rc));
        code = 1;
    } else {
        printf("{\"RS256\":\"%s\",\"ES256\":\"%s\",\"EdDSA\":\"%s\"}\n", kids.kid[GH_JWT_RS256],
               kids.kid[GH_JWT_ES256], kids.kid[GH_JWT_EDDSA]);
        fprintf(stderr,
                "gatehouse: keys rotate: running nodes sign with the new keys within "
                "--oidc-key-refresh; the old keys stay published until their tokens expire\n");
    }
    sodium_memzero(key, sizeof key);
    gh_user_store_close(&store);
    return code;
}
