/*
 * fuzz_email.c — the address parser (gh_mail_addr_normalize), the only way an address reaches a
 * mail header or an SMTP envelope, and the message builder on what it accepts.
 *
 * Properties: an accepted address is 3..254 bytes of printable ASCII without space, CR, LF, ',',
 * '<', '>', '"', '(' or ')', with exactly one '@', all lower case, and normalizing it again
 * gives itself; a rendered message for it has CRLF line ends only, its To header is exactly
 * "To: <address>", and no header line carries a byte of the input other than that one.
 */
#include <string.h>

#include "fuzz.h"
#include "mail/mail.h"
#include "mem/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[GH_MAIL_ADDR_MAX + 1];
    int rc = gh_mail_addr_normalize((const char *)data, size, out);
    FUZZ_CHECK(rc == 0 || rc == GH_EINVAL);
    if (rc != 0)
        return 0;
    size_t n = strlen(out);
    FUZZ_CHECK(n == size && n >= 3 && n <= GH_MAIL_ADDR_MAX);
    int ats = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)out[i];
        FUZZ_CHECK(c > 0x20 && c < 0x7f);
        FUZZ_CHECK(!strchr(",<>\"()[]\\;:", c));
        FUZZ_CHECK(!(c >= 'A' && c <= 'Z'));
        ats += c == '@';
    }
    FUZZ_CHECK(ats == 1);
    char again[GH_MAIL_ADDR_MAX + 1];
    FUZZ_CHECK(gh_mail_addr_normalize(out, n, again) == 0 && strcmp(again, out) == 0);

    gh_mail_vars_t v = {.product = "Gatehouse",
                        .from = "noreply@gatehouse.test",
                        .to = out,
                        .username = (const char *)out,
                        .link = "https://gatehouse.test/reset/confirm?token=x",
                        .now_ms = 0};
    char *msg = NULL;
    size_t len = 0;
    FUZZ_CHECK(gh_mail_render(GH_MAIL_RESET, &v, &msg, &len) == 0);
    FUZZ_CHECK(strlen(msg) == len);
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n')
            FUZZ_CHECK(i > 0 && msg[i - 1] == '\r');
        if (msg[i] == '\r')
            FUZZ_CHECK(i + 1 < len && msg[i + 1] == '\n');
    }
    char want[GH_MAIL_ADDR_MAX + 16];
    snprintf(want, sizeof want, "\r\nTo: %s\r\n", out);
    FUZZ_CHECK(strstr(msg, want) != NULL);
    const char *end = strstr(msg, "\r\n\r\n");
    FUZZ_CHECK(end != NULL);
    /* the headers name the address once (To) and nothing else of the input */
    size_t hlen = (size_t)(end - msg);
    int seen = 0;
    for (const char *p = msg; p && p < msg + hlen; p++) {
        p = strstr(p, out);
        if (!p || p >= msg + hlen)
            break;
        seen++;
    }
    FUZZ_CHECK(seen == 1);
    gh_mem_free(GH_MEM_MAIL, msg);
    return 0;
}
