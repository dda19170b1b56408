/* Escaping and inline PNG images for the eval layer's pages (html_util.h). */
#include "eval/html_util.h"

#include <stb/stb_image_write.h>

void da_html_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* stb_image_write hands the PNG over in pieces: base64 them onto the page
 * as they come (3 bytes -> 4 characters; a remainder waits for the next) */
typedef struct b64_out {
    FILE *f;
    uint8_t rest[3];
    int n_rest;
} b64_out;

static void b64_triple(FILE *f, const uint8_t *b, int n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t v = (uint32_t)b[0] << 16 | (uint32_t)(n > 1 ? b[1] : 0) << 8 | (uint32_t)(n > 2 ? b[2] : 0);
    char out[4] = {A[v >> 18 & 63], A[v >> 12 & 63], n > 1 ? A[v >> 6 & 63] : '=', n > 2 ? A[v & 63] : '='};
    fwrite(out, 1, 4, f);
}

static void b64_put(void *ctx, void *data, int size)
{
    b64_out *o = ctx;
    const uint8_t *p = data;
    for (int i = 0; i < size; i++) {
        o->rest[o->n_rest++] = p[i];
        if (o->n_rest == 3) {
            b64_triple(o->f, o->rest, 3);
            o->n_rest = 0;
        }
    }
}

void da_html_inline_png(FILE *f, const uint8_t *rgb, int w, int h, const char *alt)
{
    fputs("<img src=\"data:image/png;base64,", f);
    b64_out o = {f, {0, 0, 0}, 0};
    stbi_write_png_to_func(b64_put, &o, w, h, 3, rgb, 3 * w);
    if (o.n_rest) b64_triple(f, o.rest, o.n_rest);
    fputs("\" alt=\"", f);
    da_html_esc(f, alt);
    fputs("\">", f);
}
