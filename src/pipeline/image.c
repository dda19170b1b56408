/* Images out: grids, nearest-neighbour upscaling and PNG files through
 * stb_image_write (Debian's libstb ships the compiled implementation, so
 * only the header is included here). All buffers are 8-bit RGB interleaved
 * (H, W, 3), the layout PNG wants. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "core/fileio.h"
#include "dalign/pipeline.h"

#define MAX_SCALE 64

void da_grid_size(int n, int cols, int h, int w, int gap, int *out_h, int *out_w)
{
    if (cols > n) cols = n;   /* a grid is never wider than its tiles */
    if (cols < 1) cols = 1;
    int rows = (n + cols - 1) / cols;
    *out_w = cols * w + (cols - 1) * gap;
    *out_h = rows * h + (rows - 1) * gap;
}

void da_rgb8_grid(uint8_t *out, const uint8_t *tiles, int n, int cols, int h, int w, int gap,
                  const uint8_t fill[3])
{
    int gh, gw;
    da_grid_size(n, cols, h, w, gap, &gh, &gw);
    if (cols > n) cols = n;
    if (cols < 1) cols = 1;
    for (size_t i = 0; i < (size_t)gh * gw; i++) memcpy(out + 3 * i, fill, 3);
    for (int k = 0; k < n; k++) {
        int y0 = (k / cols) * (h + gap), x0 = (k % cols) * (w + gap);
        for (int y = 0; y < h; y++)
            memcpy(out + 3 * ((size_t)(y0 + y) * gw + x0), tiles + 3 * ((size_t)k * h * w + (size_t)y * w),
                   3 * (size_t)w);
    }
}

void da_rgb8_upscale(uint8_t *out, const uint8_t *in, int h, int w, int s)
{
    size_t ow = (size_t)w * s;
    for (int y = 0; y < h; y++) {
        uint8_t *row = out + 3 * (size_t)y * s * ow;
        for (int x = 0; x < w; x++)
            for (int d = 0; d < s; d++) memcpy(row + 3 * ((size_t)x * s + d), in + 3 * ((size_t)y * w + x), 3);
        for (int d = 1; d < s; d++) memcpy(row + 3 * d * ow, row, 3 * ow);   /* repeat the row s times */
    }
}

/* stb_image_write hands the encoded PNG over in pieces: collect them */
typedef struct membuf {
    uint8_t *data;
    size_t len, cap;
    int failed;
} membuf;

static void membuf_put(void *ctx, void *data, int size)
{
    membuf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->len + (size_t)size > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + (size_t)size) cap *= 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d) {
            m->failed = 1;
            return;
        }
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

da_status da_png_write(const char *path, const uint8_t *rgb, int h, int w)
{
    if (!path || !rgb || h < 1 || w < 1 || h > DA_PNG_MAX_SIDE || w > DA_PNG_MAX_SIDE)
        return da_fail(DA_ERR_INVALID, "png: bad image size %d x %d", h, w);
    membuf m = {0};
    int ok = stbi_write_png_to_func(membuf_put, &m, w, h, 3, rgb, 3 * w);
    da_status s = ok && !m.failed ? da_write_atomic(path, m.data, m.len)
                                  : da_fail(DA_ERR_NOMEM, "png: cannot encode %s (out of memory)", path);
    free(m.data);
    return s;
}

da_status da_png_save_images(const char *path, const float *images, int n, int cols, int scale)
{
    if (!images || n < 1) return da_fail(DA_ERR_INVALID, "png: no images");
    if (scale < 1 || scale > MAX_SCALE) return da_fail(DA_ERR_INVALID, "png: scale %d not in [1, %d]", scale, MAX_SCALE);
    if (cols <= 0) cols = (int)ceil(sqrt((double)n));
    int gh, gw;
    da_grid_size(n, cols, DA_IMG, DA_IMG, 1, &gh, &gw);
    if ((long)gh * scale > DA_PNG_MAX_SIDE || (long)gw * scale > DA_PNG_MAX_SIDE)
        return da_fail(DA_ERR_RANGE, "png: a %d x %d image is too large", gh * scale, gw * scale);
    size_t tile = (size_t)DA_IMG * DA_IMG * 3;
    uint8_t *tiles = malloc((size_t)n * tile);
    uint8_t *grid = malloc((size_t)gh * gw * 3);
    uint8_t *big = scale > 1 ? malloc((size_t)gh * gw * 3 * scale * scale) : NULL;
    da_status s = DA_OK;
    if (!tiles || !grid || (scale > 1 && !big)) s = da_fail(DA_ERR_NOMEM, "png: out of memory");
    if (s == DA_OK) {
        static const uint8_t fill[3] = {64, 64, 64};   /* none of the world's backgrounds */
        for (int k = 0; k < n; k++) da_image_to_rgb8(images + (size_t)k * DA_IMG_FLOATS, DA_IMG, DA_IMG, tiles + k * tile);
        da_rgb8_grid(grid, tiles, n, cols, DA_IMG, DA_IMG, 1, fill);
        if (big) da_rgb8_upscale(big, grid, gh, gw, scale);
        s = da_png_write(path, big ? big : grid, gh * scale, gw * scale);
    }
    free(tiles);
    free(grid);
    free(big);
    return s;
}
