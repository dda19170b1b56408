/* Per-image measures behind the image rewards, and PNG loading for the CLI:
 *   colourfulness  Hasler and Suesstrunk (2003), on 0..255 values
 *   JPEG size      kB at quality 95 through stb_image_write, as DDPO
 * Images are (3, H, W) planar floats in [0, 1]; values are clamped to [0, 1]
 * first, which is what saving the image to a file would do. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include "dalign/rewards.h"

#define JPEG_QUALITY 95

static float clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }  /* NaN -> 0 */

/* img (3, H, W) -> M = sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2)
 * with rg = R - G, yb = (R + G)/2 - B on 0..255 values and population
 * standard deviations; sums in double, in pixel order (deterministic). */
float da_colorfulness(const float *img, int H, int W)
{
    size_t HW = (size_t)H * (size_t)W;
    if (HW == 0) return 0.0f;
    const float *R = img, *G = img + HW, *Bl = img + 2 * HW;
    double s_rg = 0.0, s_yb = 0.0;
    for (size_t p = 0; p < HW; p++) {
        double r = 255.0 * clamp01(R[p]), g = 255.0 * clamp01(G[p]), b = 255.0 * clamp01(Bl[p]);
        s_rg += r - g;
        s_yb += 0.5 * (r + g) - b;
    }
    double m_rg = s_rg / (double)HW, m_yb = s_yb / (double)HW;
    /* two passes: the variance of a flat image is exactly 0, never a small negative */
    double v_rg = 0.0, v_yb = 0.0;
    for (size_t p = 0; p < HW; p++) {
        double r = 255.0 * clamp01(R[p]), g = 255.0 * clamp01(G[p]), b = 255.0 * clamp01(Bl[p]);
        double d_rg = (r - g) - m_rg, d_yb = (0.5 * (r + g) - b) - m_yb;
        v_rg += d_rg * d_rg;
        v_yb += d_yb * d_yb;
    }
    v_rg /= (double)HW;
    v_yb /= (double)HW;
    return (float)(sqrt(v_rg + v_yb) + 0.3 * sqrt(m_rg * m_rg + m_yb * m_yb));
}

/* stb_image_write hands the encoded bytes to a callback: count them */
static void count_bytes(void *ctx, void *data, int size)
{
    (void)data;
    *(size_t *)ctx += (size_t)size;
}

da_status da_jpeg_kb(const float *img, int H, int W, float *kb)
{
    if (!img || !kb || H < 1 || W < 1 || H > 4096 || W > 4096)
        return da_fail(DA_ERR_INVALID, "da_jpeg_kb: bad argument (size %dx%d)", H, W);
    uint8_t *rgb = malloc((size_t)H * (size_t)W * 3);
    if (!rgb) return da_fail(DA_ERR_NOMEM, "da_jpeg_kb: out of memory");
    da_image_to_rgb8(img, H, W, rgb);
    size_t bytes = 0;
    int ok = stbi_write_jpg_to_func(count_bytes, &bytes, W, H, 3, rgb, JPEG_QUALITY);
    free(rgb);
    if (!ok) return da_fail(DA_ERR_INVALID, "da_jpeg_kb: JPEG encoding failed");
    *kb = (float)((double)bytes / 1000.0);  /* DDPO: buffer.tell() / 1000 */
    return DA_OK;
}

da_status da_image_load(const char *path, float *img)
{
    if (!path || !img) return da_fail(DA_ERR_INVALID, "da_image_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return da_fail(DA_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    int w = 0, h = 0, n = 0;
    uint8_t *px = stbi_load_from_file(f, &w, &h, &n, 3);  /* 3: grey -> RGB, alpha dropped */
    fclose(f);
    if (!px) return da_fail(DA_ERR_FORMAT, "%s: not a readable image (%s)", path, stbi_failure_reason());
    if (w != DA_IMG || h != DA_IMG) {
        stbi_image_free(px);
        return da_fail(DA_ERR_INVALID, "%s: image is %dx%d, expected %dx%d", path, w, h, DA_IMG, DA_IMG);
    }
    const size_t HW = (size_t)DA_IMG * DA_IMG;
    for (size_t p = 0; p < HW; p++)
        for (int c = 0; c < 3; c++) img[(size_t)c * HW + p] = (float)px[p * 3 + c] / 255.0f;
    stbi_image_free(px);
    return DA_OK;
}
