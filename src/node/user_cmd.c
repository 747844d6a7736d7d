/*
 * user_cmd.c — `gatehouse user add|del|list|passwd`: manage users in the configured user store
 * from a shell. It takes the same flags, environment and config file as `serve` (so it finds
 * the same --data-dir and hashes at the same cost). The password comes from a TTY prompt with
 * echo off (asked twice), or as one line on standard input for scripts; it is wiped after use.
 *
 * With --user-store postgres it works on the shared table every node uses.
 *
 * With the embedded default (SQLite users, in-memory sessions) a running node sees a deleted
 * user on the session's first check after its user cache's TTL (--user-cache-ttl, 1 s) and ends
 * the session then; a password changed here does not
 * end sessions a running node holds (docs/OPERATIONS.md says so).
 *
 * Addresses (`add NAME --email ADDR`, `email NAME ADDR`) go through the account service's email
 * functions, so they are checked and normalised as on the API; one set here is unverified and
 * its verification link is queued in the durable outbox, which a running node's sender delivers.
 * That needs email on (--public-url and --smtp-from, as for `serve`): without it the command
 * refuses, since an address that can never be verified is of no use. Errors never echo the
 * address (it may hold a line break).
 */
#include "node/node.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "account/audit.h"
#include "account/email.h"
#include "common/clock.h"
#include "common/log.h"
#include "mem/mem.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gatehouse user add NAME [--admin] [flags]  create a user (password from stdin "
            "or a prompt); --admin: may use the admin console\n"
            "       gatehouse user del NAME [flags]      delete a user\n"
            "       gatehouse user list [flags]          list users\n"
            "       gatehouse user passwd NAME [flags]   set a user's password\n"
            "       gatehouse user email NAME ADDR [flags] set a user's email address "
            "(unverified; a verification link is mailed); add takes --email ADDR too\n"
            "       gatehouse user mfa-reset NAME [flags] remove a user's second factors and "
            "recovery codes (a lost device)\n"
            "\n"
            "Flags, environment and --config are those of `gatehouse serve` (see its --help);\n"
            "--data-dir, --user-store, --hash-memory and --hash-ops matter here; an address needs\n"
            "--public-url and --smtp-from (email on).\n");
}

/* Reads one line without echo from the terminal, or from stdin when it is not one. */
static int read_secret(const char *prompt, char *buf, size_t cap, size_t *len)
{
    bool tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "%s", prompt);
        fflush(stderr);
        if (tcgetattr(STDIN_FILENO, &old) == 0) {
            quiet = old;
            quiet.c_lflag &= ~(tcflag_t)ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        } else {
            tty = false;
        }
    }
    char *got = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return GH_EINVAL;
    size_t n = strlen(buf);
    if (n == cap - 1 && buf[n - 1] != '\n')
        return GH_ETOOBIG;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    *len = n;
    return 0;
}

static int ask_password(char *buf, size_t cap, size_t *len)
{
    int rc = read_secret("New password: ", buf, cap, len);
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s\n",
                rc == GH_ETOOBIG ? "password: longer than 1024 bytes" : "password: none given");
        return 2;
    }
    if (!gh_auth_password_valid(buf, *len)) {
        fprintf(stderr, "gatehouse: password: expected 8 to 1024 bytes of valid UTF-8\n");
        return 2;
    }
    if (isatty(STDIN_FILENO)) {
        char again[GH_PASSWORD_MAX + 2];
        size_t alen = 0;
        rc = read_secret("Repeat password: ", again, sizeof again, &alen);
        bool same = rc == 0 && alen == *len && sodium_memcmp(again, buf, alen) == 0;
        sodium_memzero(again, sizeof again);
        if (!same) {
            fprintf(stderr, "gatehouse: password: the two entries differ\n");
            return 2;
        }
    }
    return 0;
}

/* Email for the address commands: the mail tables of the user store's database and the account
 * service's email functions (the sender is not started: the mail waits in the outbox). */
static int email_open(const gh_config_t *cfg, gh_mail_store_t **ms, gh_account_email_t **e)
{
    if (!cfg->public_url[0] || !cfg->smtp_from[0]) {
        fprintf(stderr, "gatehouse: user: an email address needs email on: set --public-url and "
                        "--smtp-from (as for serve)\n");
        return 2;
    }
    int rc = cfg->user_store == GH_USER_STORE_POSTGRES
                 ? gh_mail_postgres_open(cfg->postgres_url, 5000, ms)
                 : gh_mail_sqlite_open(cfg->data_dir, ms);
    gh_email_options_t eo = {.store = *ms,
                             .product = cfg->product_name,
                             .public_url = cfg->public_url,
                             .from = cfg->smtp_from,
                             .templates = cfg->email_templates,
                             .smtp_url = "",
                             .smtp_user = "",
                             .smtp_password = "",
                             .retry_for_ms = cfg->smtp_retry_for_ms,
                             .smtp_timeout_ms = cfg->smtp_timeout_ms,
                             .node = "cli"};
    if (rc == 0)
        rc = gh_account_email_create(&eo, e);
    if (rc != 0) {
        fprintf(stderr, "gatehouse: user: cannot set up email: %s\n", gh_strerror(rc));
        return 1;
    }
    return 0;
}

static const char *email_error(int rc)
{
    return rc == GH_EEMAIL        ? "not a usable email address"
           : rc == GH_EEMAILTAKEN ? "that email address is taken by another user"
                                  : gh_strerror(rc);
}

/* The command line's acts go to the trail too (actor "cli"); a failure to store one is said. */
static void audit_cli(gh_user_store_t *store, gh_audit_type_t type, uint64_t user_id,
                      const char *detail)
{
    gh_audit_event_t ev;
    gh_audit_event_init(&ev, type, GH_AUDIT_SUCCESS, user_id, NULL);
    gh_audit_event_actor(&ev, "cli");
    gh_audit_event_detail(&ev, "%s", detail);
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) == 0)
        snprintf(ev.node, sizeof ev.node, "%s", host);
    if (gh_user_audit_append(store, &ev) != 0)
        fprintf(stderr, "gatehouse: warning: the audit event %s was not stored\n", ev.type);
}

int gh_user_cmd_main(int argc, char **argv)
{
    /* argv: "user" ACTION [NAME] [flags...] */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    bool needs_name = strcmp(action, "list") != 0;
    if (strcmp(action, "add") && strcmp(action, "del") && strcmp(action, "list") &&
        strcmp(action, "passwd") && strcmp(action, "mfa-reset") && strcmp(action, "email")) {
        fprintf(stderr,
                "gatehouse: user: unknown action '%s' (expected add, del, list, passwd, email, "
                "mfa-reset)\n",
                action);
        return 2;
    }
    const char *name = NULL;
    int first_flag = 2;
    if (needs_name) {
        if (argc < 3 || argv[2][0] == '-') {
            fprintf(stderr, "gatehouse: user %s: a username is required\n", action);
            return 2;
        }
        name = argv[2];
        first_flag = 3;
        if (!gh_auth_username_valid(name, strlen(name))) {
            fprintf(stderr,
                    "gatehouse: user %s: username: expected 1 to 64 of A-Z a-z 0-9 . _ @ -\n",
                    action);
            return 2;
        }
    }
    const char *address = NULL;
    if (strcmp(action, "email") == 0) {
        if (argc < 4 || argv[3][0] == '-') {
            fprintf(stderr, "gatehouse: user email: an address is required\n");
            return 2;
        }
        address = argv[3];
        first_flag = 4;
    }
    /* Hand the flags to the shared config parser as if they followed "user" (--admin is ours). */
    char *fargv[256];
    int fargc = 0;
    bool make_admin = false;
    fargv[fargc++] = argv[0];
    for (int i = first_flag; i < argc && fargc < 255; i++) {
        if (strcmp(argv[i], "--admin") == 0 && strcmp(action, "add") == 0) {
            make_admin = true;
            continue;
        }
        if (strcmp(argv[i], "--email") == 0 && strcmp(action, "add") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "gatehouse: user add: --email needs an address\n");
                return 2;
            }
            address = argv[++i];
            continue;
        }
        fargv[fargc++] = argv[i];
    }
    fargv[fargc] = NULL;

    gh_config_t cfg;
    char err[512];
    int rc = gh_config_load(&cfg, fargc, fargv, stdout, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "gatehouse: %s\n", err);
        return 2;
    }
    gh_log_setup(GH_LOG_TEXT, GH_LOG_WARN);
    if (sodium_init() < 0)
        return 1;
    gh_user_store_t *store = NULL;
    if (cfg.user_store == GH_USER_STORE_POSTGRES) {
        gh_user_postgres_options_t po = {.url = cfg.postgres_url, .pool_size = 1};
        if ((rc = gh_user_postgres_open(&po, &store)) != 0) {
            fprintf(stderr, "gatehouse: cannot open the user store in PostgreSQL: %s\n",
                    gh_strerror(rc));
            return 1;
        }
    } else if ((rc = gh_user_sqlite_open(cfg.data_dir, &store)) != 0) {
        fprintf(stderr, "gatehouse: cannot open the user store in %s: %s\n", cfg.data_dir,
                gh_strerror(rc));
        return 1;
    }
    int code = 1;
    char pw[GH_PASSWORD_MAX + 2];
    char hash[GH_PWHASH_STR_MAX];
    size_t pwlen = 0;
    gh_password_params_t pp = {.memory = cfg.hash_memory, .ops = cfg.hash_ops};
    gh_user_t user;
    gh_mail_store_t *mail = NULL;
    gh_account_email_t *email = NULL;
    gh_account_t acct = {.users = store};
    if (address) {
        if ((code = email_open(&cfg, &mail, &email)) != 0)
            goto out;
        code = 1;
        acct.email = email;
        if ((rc = gh_account_email_check_new(&acct, address, strlen(address))) != 0) {
            fprintf(stderr, "gatehouse: user %s: address: %s\n", action, email_error(rc));
            goto out;
        }
    }

    if (strcmp(action, "list") == 0) {
        uint64_t after = 0;
        gh_user_t page[100];
        size_t n;
        printf("%-10s %-24s %s\n", "ID", "CREATED", "USERNAME");
        do {
            if ((rc = gh_user_list(store, after, page, 100, &n)) != 0)
                goto fail;
            for (size_t i = 0; i < n; i++) {
                char created[GH_RFC3339_LEN];
                gh_clock_rfc3339(page[i].created_at_ms, created);
                printf("%-10llu %-24s %s\n", (unsigned long long)page[i].id, created,
                       page[i].username);
                after = page[i].id;
            }
        } while (n == 100);
        code = 0;
        goto out;
    }
    if (strcmp(action, "del") == 0) {
        if ((rc = gh_user_get_by_name(store, name, &user)) == 0)
            rc = gh_user_del(store, user.id);
        if (rc == GH_ENOTFOUND) {
            fprintf(stderr, "gatehouse: user del: no user named %s\n", name);
            code = 1;
            goto out;
        }
        if (rc != 0)
            goto fail;
        audit_cli(store, GH_AUDIT_USER_DELETED, user.id, user.username);
        printf("deleted user %s (id %llu)\n", user.username, (unsigned long long)user.id);
        code = 0;
        goto out;
    }
    if (strcmp(action, "email") == 0) {
        if ((rc = gh_user_get_by_name(store, name, &user)) == GH_ENOTFOUND) {
            fprintf(stderr, "gatehouse: user email: no user named %s\n", name);
            goto out;
        }
        if (rc != 0)
            goto fail;
        sodium_memzero(user.password_hash, sizeof user.password_hash);
        if ((rc = gh_account_email_attach(&acct, &user, address, strlen(address))) != 0) {
            fprintf(stderr, "gatehouse: user email: address: %s\n", email_error(rc));
            goto out;
        }
        audit_cli(store, GH_AUDIT_EMAIL_CHANGED, user.id, "verified=false");
        printf("set the email address of %s (unverified; a verification link is queued)\n",
               user.username);
        code = 0;
        goto out;
    }
    if (strcmp(action, "mfa-reset") == 0) {
        size_t removed = 0;
        if ((rc = gh_user_get_by_name(store, name, &user)) == 0)
            rc = gh_user_factor_del_all(store, user.id, &removed);
        if (rc == GH_ENOTFOUND) {
            fprintf(stderr, "gatehouse: user mfa-reset: no user named %s\n", name);
            goto out;
        }
        if (rc != 0)
            goto fail;
        printf("removed %zu second factor(s) and the recovery codes of %s (id %llu)\n", removed,
               user.username, (unsigned long long)user.id);
        code = 0;
        goto out;
    }
    /* add and passwd need a password */
    bool exists = gh_user_get_by_name(store, name, &user) == 0;
    if (strcmp(action, "add") == 0 && exists) {
        fprintf(stderr, "gatehouse: user add: the username %s is taken\n", name);
        goto out;
    }
    if (strcmp(action, "passwd") == 0 && !exists) {
        fprintf(stderr, "gatehouse: user passwd: no user named %s\n", name);
        goto out;
    }
    if ((code = ask_password(pw, sizeof pw, &pwlen)) != 0)
        goto out;
    code = 1;
    if ((rc = gh_password_hash_sync(&pp, pw, pwlen, hash)) != 0)
        goto fail;
    if (strcmp(action, "add") == 0) {
        rc = gh_user_create(store, name, hash, gh_clock_now_ms(), &user);
        if (rc == GH_EEXISTS) {
            fprintf(stderr, "gatehouse: user add: the username %s is taken\n", name);
            goto out;
        }
        if (rc != 0)
            goto fail;
        if (make_admin && (rc = gh_user_set_flags(store, user.id, 1, -1)) != 0)
            goto fail;
        audit_cli(store, GH_AUDIT_USER_CREATED, user.id, make_admin ? "admin=true" : "");
        printf("created %suser %s (id %llu)\n", make_admin ? "admin " : "", user.username,
               (unsigned long long)user.id);
        if (address) {
            if ((rc = gh_account_email_attach(&acct, &user, address, strlen(address))) != 0) {
                fprintf(stderr,
                        "gatehouse: user add: address: %s (the user was created without it)\n",
                        email_error(rc));
                goto out;
            }
            audit_cli(store, GH_AUDIT_EMAIL_CHANGED, user.id, "verified=false");
            printf("set the email address of %s (unverified; a verification link is queued)\n",
                   user.username);
        }
    } else {
        if ((rc = gh_user_set_password(store, user.id, hash)) != 0)
            goto fail;
        audit_cli(store, GH_AUDIT_PASSWORD_RESET, user.id, "");
        printf("password changed for %s\n", user.username);
    }
    code = 0;
    goto out;
fail:
    fprintf(stderr, "gatehouse: user %s: %s\n", action, gh_strerror(rc));
    code = 1;
out:
    sodium_memzero(pw, sizeof pw);
    sodium_memzero(hash, sizeof hash);
    gh_account_email_destroy(&email);
    gh_mail_store_close(&mail);
    gh_user_store_close(&store);
    return code;
}
