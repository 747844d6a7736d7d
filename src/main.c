/* main.c — the one gatehouse binary: dispatches `serve`, `user`, `load`, `version`. */
#include <stdio.h>
#include <string.h>

#include "node/node.h"
#include "common/version.h"
#include "load/load.h"
#include "mem/mem.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: gatehouse <command> [flags]\n"
            "\n"
            "commands:\n"
            "  serve [--config FILE] [flags]   run the service\n"
            "  user add|del|list|passwd ...    manage users in the configured user store\n"
            "  audit [--user ID] [--type T]... the audit trail as JSON lines\n"
            "  client add|list|del ...         OpenID Connect clients (relying parties)\n"
            "  keys rotate                     new OpenID signing keys\n"
            "  reload [serve flags]            replace the running node (same data dir) without\n"
            "                                  dropping a connection or a session\n"
            "  load --url URL [flags]          load and soak a local node, leak verdict\n"
            "  version                         print the version\n"
            "\n"
            "`gatehouse <command> --help` lists a command's flags.\n");
}

int main(int argc, char **argv)
{
    gh_mem_init();
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("gatehouse %s\n", GH_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0)
        return gh_serve_main(argc - 1, argv + 1);
    if (strcmp(cmd, "user") == 0)
        return gh_user_cmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "audit") == 0)
        return gh_audit_cmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "client") == 0)
        return gh_client_cmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "keys") == 0)
        return gh_keys_cmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "reload") == 0)
        return gh_reload_cmd_main(argc - 1, argv + 1);
    if (strcmp(cmd, "load") == 0)
        return gh_load_main(argc - 1, argv + 1);
    fprintf(stderr,
            "gatehouse: unknown command '%s' (expected serve, user, audit, client, keys, reload, "
            "load, version)\n",
            cmd);
    return 2;
}
