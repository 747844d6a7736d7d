/*
 * qr.c — the enrolment QR code as an inline SVG document (libqrencode), for the JSON API's
 * qr_svg and the /account page alike. One design decision: SVG rather than a PNG data URL, so
 * the page needs no image loading (its Content-Security-Policy allows none from elsewhere) and
 * the code scales crisply; one <path> of unit squares keeps it a few kilobytes.
 */
#include "api/api.h"

#include <qrencode.h>
#include <stdio.h>

/* The QR code of text as an SVG document: one path of unit squares, a 4-module quiet zone.
 * Into the pool; NULL when it cannot be made. */
char *gh_api_qr_svg(gh_pool_t *pool, const char *text)
{
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
    if (!q)
        return NULL;
    int w = q->width, size = w + 8;
    size_t cap = 256 + (size_t)w * (size_t)w * 14;
    char *out = gh_pool_alloc(pool, cap);
    if (out) {
        size_t o =
            (size_t)snprintf(out, cap,
                             "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" "
                             "width=\"%d\" height=\"%d\" shape-rendering=\"crispEdges\">"
                             "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>"
                             "<path fill=\"#000\" d=\"",
                             size, size, size * 5, size * 5);
        for (int y = 0; y < w; y++)
            for (int x = 0; x < w; x++)
                if (q->data[y * w + x] & 1)
                    o += (size_t)snprintf(out + o, cap - o, "M%d %dh1v1h-1z", x + 4, y + 4);
        snprintf(out + o, cap - o, "\"/></svg>");
    }
    QRcode_free(q);
    return out;
}
