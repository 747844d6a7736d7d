/*
 * fuzz_json_body.c — JSON request bodies as the handlers parse them: gh_api_json_parse (the
 * parsing half of gh_api_json_body) with jansson allocating through gh_mem, then the reads and
 * the reply dump a handler does.
 *
 * The first input byte can fail one allocation (SQLite's OOM tests, inside the fuzzer): values
 * 1..64 fail that allocation, anything else none. Properties: the answer is an object, a
 * client error with a message, or GH_ENOMEM — and GH_ENOMEM only when an allocation really
 * failed; whatever happened, every byte jansson took from GH_MEM_HTTP is back afterwards.
 */
#include <string.h>

#include "api/api.h"
#include "fuzz.h"
#include "mem/mem.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    gh_api_json_setup();
    return 0;
}

static void read_like_a_handler(json_t *obj)
{
    static const char *const keys[] = {"username", "password", "current_password", "new_password"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(obj, keys[i]);
        if (v && json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            FUZZ_CHECK(s != NULL && s[len] == '\0');
        }
    }
    /* The reply path: size, then dump into a buffer of exactly that size. */
    size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    if (n) {
        char *buf = malloc(n);
        FUZZ_CHECK(buf != NULL);
        FUZZ_CHECK(json_dumpb(obj, buf, n, JSON_COMPACT) == n);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static bool ready;
    if (!ready) { /* replay.c calls the initializer too; this covers a caller that does not */
        gh_api_json_setup();
        ready = true;
    }
    uint8_t fail = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    size_t http0 = gh_mem_bytes(GH_MEM_HTTP), objects0 = gh_mem_objects(GH_MEM_HTTP);
    gh_mem_fail_at(fail >= 1 && fail <= 64 ? fail : 0);
    json_t *obj = NULL;
    const char *why = NULL;
    int rc = gh_api_json_parse(body, len, &obj, &why);
    bool fired = gh_mem_fail_fired();
    gh_mem_fail_at(0);

    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL || rc == GH_ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(obj != NULL && json_is_object(obj));
        read_like_a_handler(obj);
        json_decref(obj);
    } else {
        FUZZ_CHECK(obj == NULL);
        FUZZ_CHECK(rc != GH_EINVAL || (why != NULL && *why));
        FUZZ_CHECK(rc != GH_ENOMEM || fired);
    }
    FUZZ_CHECK(gh_mem_bytes(GH_MEM_HTTP) == http0);
    FUZZ_CHECK(gh_mem_objects(GH_MEM_HTTP) == objects0);
    return 0;
}
