/* Convolution family: conv2d (im2col + GEMM), nearest upsample x2 and 2x2
 * average-pool downsample. Forward/backward kernel pairs over float*, then
 * the tape wrappers.
 *
 * conv2d runs im2col + GEMM over GROUPS of G images: the column matrix col
 * (C*k*k, G*OH*OW) holds the input patches of the G images side by side, so
 * the group is one GEMM tmp (O, G*OH*OW) = W (O, C*k*k) @ col + bias (the
 * GEMM's epilogue adds it to each sum), then copied into out (G, O, OH,
 * OW). The UNet works at 8x8 and 4x4, where one image alone gives a GEMM
 * only 64 or 16 columns wide that runs at half the GEMM's speed or less. Backward gathers dout into the same
 * (O, G*OH*OW) layout: dW += dout_g @ col^T is one GEMM with K = G*OH*OW,
 * and dcol = W^T @ dout_g is scattered back into dinp (col2im). A group of
 * one image writes out directly and reads dout in place. The group's GEMMs
 * that produce per-image values (out, dcol) keep each image's columns a
 * separate GEMM item, so an image's bits do not depend on its group (with
 * the portable GEMM they run as one wide GEMM all the same). With the
 * portable GEMM a stride-1 forward does not store col at all: the GEMM
 * packs its slivers straight from zero-padded copies of the images
 * (pack_cols, gemm_packer.h). All GEMMs run outside OpenMP regions. */
#include <assert.h>
#include <string.h>

#include "core/gemm_packer.h"
#include "core/par.h"
#include "core/span.h"
#include "core/vec.h"
#include "dalign/core.h"

/* Group size: add images until the GEMM is CONV_COLS columns wide or col +
 * tmp would pass CONV_SCRATCH_CAP bytes. Measured on the UNet/VAE shapes (N
 * 16, one core): 4x4 outputs run ~2x faster at G = 8..16, 8x8 ~1.1-1.3x at
 * G = 2..4, while 16x16 and larger outputs gain nothing, and a scratch past
 * ~1 MB (L2 is 2 MB) makes every shape slower: the GEMM then reads col from
 * L3. Both are fixed constants, so the grouping (and with it dweight's
 * summation order) depends on the shapes only, never on the thread count. */
#define CONV_COLS 256
#define CONV_SCRATCH_CAP ((size_t)1 << 20)

static int conv_out_size(int H, int k, int stride, int pad) { return (H + 2 * pad - k) / stride + 1; }

/* 1x1, stride 1, no padding: the input image already is its column matrix */
static int conv_is_pointwise(int k, int stride, int pad) { return k == 1 && stride == 1 && pad == 0; }

/* How conv2d cuts a batch: G images per GEMM, output positions P = OH*OW,
 * reduction length K = C*k*k. */
typedef struct conv_plan {
    int OH, OW, P, K, pointwise;
    int n_groups, G; /* G: images in the largest group */
} conv_plan;

static conv_plan conv_plan_make(int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    conv_plan pl = {.OH = conv_out_size(H, k, stride, pad), .OW = conv_out_size(W, k, stride, pad),
                    .K = C * k * k, .pointwise = conv_is_pointwise(k, stride, pad)};
    pl.P = pl.OH * pl.OW;
    /* pointwise convs read the input in place: grouping would add a copy */
    int want = pl.pointwise ? 1 : (CONV_COLS + pl.P - 1) / pl.P;
    size_t per_image = ((size_t)pl.K + (size_t)O) * (size_t)pl.P * sizeof(float);
    size_t fit = per_image ? CONV_SCRATCH_CAP / per_image : (size_t)N;
    int gmax = want < N ? want : N;
    if ((size_t)gmax > fit) gmax = (int)fit;
    if (gmax < 1) gmax = 1;
    /* as few groups as gmax allows, of near-equal sizes (conv_group): 17
     * images at most 16 per group run as 9 + 8, not 16 + 1 */
    pl.n_groups = (N + gmax - 1) / gmax;
    pl.G = pl.n_groups > 0 ? (N + pl.n_groups - 1) / pl.n_groups : 1;
    return pl;
}

/* images [*n0, *n0 + return) form group i of the plan */
static int conv_group(const conv_plan *pl, int N, int i, int *n0)
{
    *n0 = (int)((long long)i * N / pl->n_groups);
    return (int)((long long)(i + 1) * N / pl->n_groups) - *n0;
}

static size_t conv_plan_scratch(const conv_plan *pl, int O)
{
    if (pl->G > 1) return ((size_t)pl->K + (size_t)O) * (size_t)pl->G * (size_t)pl->P;
    return pl->pointwise ? 0 : (size_t)pl->K * (size_t)pl->P;
}

size_t da_conv2d_col_size(int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    conv_plan pl = conv_plan_make(N, C, H, W, O, k, stride, pad);
    return conv_plan_scratch(&pl, O);
}

/* Small images are the common case (4x4 to 32x32), where a row of the
 * column matrix is only 4 to 32 floats: per-row library calls and edge
 * tests would cost more than the copy. So a plane whose zero-padded copy
 * fits PAD_MAX floats goes through that copy on the stack, and every row
 * becomes one fixed-size copy; larger planes take the edge-aware path. */
#define PAD_MAX 4096

/* dst[0..n) = src[0..n) / dst[0..n) += src[0..n); constant trip counts for
 * the usual widths let the compiler emit a few vector moves */
static inline void copy_row(float *dst, const float *src, int n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4 * sizeof(float)); break;
    case 8: memcpy(dst, src, 8 * sizeof(float)); break;
    case 16: memcpy(dst, src, 16 * sizeof(float)); break;
    case 32: memcpy(dst, src, 32 * sizeof(float)); break;
    default: memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

static inline void add_row(float *dst, const float *src, int n)
{
    switch (n) {
    case 4: for (int i = 0; i < 4; i++) dst[i] += src[i]; break;
    case 8: for (int i = 0; i < 8; i++) dst[i] += src[i]; break;
    case 16: for (int i = 0; i < 16; i++) dst[i] += src[i]; break;
    case 32: for (int i = 0; i < 32; i++) dst[i] += src[i]; break;
    default: for (int i = 0; i < n; i++) dst[i] += src[i];
    }
}

/* buf (H+2pad, W+2pad) = plane (H, W) with a zero border of width pad */
static void pad_plane(float *buf, const float *plane, int H, int W, int pad)
{
    int Wp = W + 2 * pad;
    memset(buf, 0, (size_t)pad * Wp * sizeof(float));
    for (int h = 0; h < H; h++) {
        float *dst = buf + (size_t)(h + pad) * Wp;
        for (int j = 0; j < pad; j++) dst[j] = dst[pad + W + j] = 0.0f;
        copy_row(dst + pad, plane + (size_t)h * W, W);
    }
    memset(buf + (size_t)(H + pad) * Wp, 0, (size_t)pad * Wp * sizeof(float));
}

/* Output positions o in [0, n_out) whose input index o*stride + off falls in
 * [0, size) form one range [*lo, *hi): everything outside it reads padding. */
static void valid_range(int off, int stride, int size, int n_out, int *lo, int *hi)
{
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = size - 1 - off >= 0 ? (size - 1 - off) / stride + 1 : 0;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* im2col of a plane too large for the stack copy: zeros where a patch
 * reads the border, copies elsewhere */
static void im2col_plane_edges(float *rows, size_t ld, const float *plane, int H, int W, int k,
                               int stride, int pad, int OH, int OW)
{
    for (int ki = 0; ki < k; ki++) {
        int rlo, rhi;
        valid_range(ki - pad, stride, H, OH, &rlo, &rhi);
        for (int kj = 0; kj < k; kj++) {
            float *row = rows + (size_t)(ki * k + kj) * ld;
            int lo, hi;
            valid_range(kj - pad, stride, W, OW, &lo, &hi);
            for (int oh = 0; oh < OH; oh++) {
                float *dst = row + (size_t)oh * OW;
                if (oh < rlo || oh >= rhi) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                /* input column of ow is ow*stride + kj - pad, >= 0 inside [lo, hi) */
                const float *src = plane + (size_t)(oh * stride + ki - pad) * W;
                for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (stride == 1) {
                    memcpy(dst + lo, src + lo + kj - pad, (size_t)(hi - lo) * sizeof(float));
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * stride + kj - pad];
                }
                for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/* dst (OH, OW) = the OH rows of OW floats at src, Wp apart: one patch row
 * (ki, kj) of a padded plane, stride 1. The UNet's planes are 8x8 and 4x4,
 * so a row is one or two vector moves and the loop around it was most of
 * im2col's time: the width is switched on once per patch row instead of
 * once per row (copy_row's switch), and each constant-width loop compiles
 * to bare moves. */
#define DEFINE_PATCH_ROWS(W)                                                              \
    static void patch_rows_##W(float *restrict dst, const float *restrict src, int OH, int Wp) \
    {                                                                                    \
        for (int oh = 0; oh < OH; oh++)                                                  \
            memcpy(dst + (size_t)oh * (W), src + (size_t)oh * Wp, (W) * sizeof(float));   \
    }
DEFINE_PATCH_ROWS(4)
DEFINE_PATCH_ROWS(8)
DEFINE_PATCH_ROWS(16)
DEFINE_PATCH_ROWS(32)

static void patch_rows(float *dst, const float *src, int OH, int OW, int Wp)
{
    switch (OW) {
    case 4: patch_rows_4(dst, src, OH, Wp); return;
    case 8: patch_rows_8(dst, src, OH, Wp); return;
    case 16: patch_rows_16(dst, src, OH, Wp); return;
    case 32: patch_rows_32(dst, src, OH, Wp); return;
    default:
        for (int oh = 0; oh < OH; oh++)
            memcpy(dst + (size_t)oh * OW, src + (size_t)oh * Wp, (size_t)OW * sizeof(float));
    }
}

/* The k*k rows (ki, kj) of one channel's plane (H, W) in the column matrix:
 * row r holds OH*OW values at rows + r*ld. */
static void im2col_plane(float *rows, size_t ld, const float *plane, int H, int W, int k, int stride,
                         int pad, int OH, int OW)
{
    int Wp = W + 2 * pad;
    if ((size_t)(H + 2 * pad) * Wp > PAD_MAX) {
        im2col_plane_edges(rows, ld, plane, H, W, k, stride, pad, OH, OW);
        return;
    }
    float buf[PAD_MAX];
    pad_plane(buf, plane, H, W, pad);
    for (int ki = 0; ki < k; ki++) {
        for (int kj = 0; kj < k; kj++) {
            float *row = rows + (size_t)(ki * k + kj) * ld;
            const float *src = buf + (size_t)ki * Wp + kj;
            if (stride == 1) {
                patch_rows(row, src, OH, OW, Wp);
                continue;
            }
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) row[(size_t)oh * OW + ow] = src[(size_t)oh * stride * Wp + ow * stride];
        }
    }
}

/* im2col's block of (image g, channel c), gc = g * C + c */
static void im2col_image_channel(float *col, const float *inp, int gc, int G, int C, int H, int W, int k,
                                 int stride, int pad, int OH, int OW)
{
    size_t P = (size_t)OH * OW, ld = (size_t)G * P;
    int g = gc / C, c = gc % C;
    im2col_plane(col + (size_t)c * k * k * ld + (size_t)g * P, ld, inp + (size_t)gc * H * W, H, W, k, stride,
                 pad, OH, OW);
}

/* col (C*k*k, G*OH*OW) <- patches of G images inp (G, C, H, W); row (c, ki, kj),
 * image g in columns [g*OH*OW, (g+1)*OH*OW) */
static void im2col(float *col, const float *inp, int G, int C, int H, int W, int k, int stride, int pad,
                   int OH, int OW)
{
    size_t P = (size_t)OH * OW;
    /* each (image, channel) fills its own block: independent outputs */
    DA_PAR_FOR((double)G * C * k * k * P,
        for (int gc = 0; gc < G * C; gc++) im2col_image_channel(col, inp, gc, G, C, H, W, k, stride, pad, OH, OW));
}

/* col2im of a plane too large for the stack accumulator: skip the terms
 * that land on the border */
static void col2im_plane_edges(float *plane, const float *rows, size_t ld, int H, int W, int k,
                               int stride, int pad, int OH, int OW)
{
    for (int ki = 0; ki < k; ki++) {
        int rlo, rhi;
        valid_range(ki - pad, stride, H, OH, &rlo, &rhi);
        for (int kj = 0; kj < k; kj++) {
            const float *row = rows + (size_t)(ki * k + kj) * ld;
            int lo, hi;
            valid_range(kj - pad, stride, W, OW, &lo, &hi);
            for (int oh = rlo; oh < rhi; oh++) {
                const float *src = row + (size_t)oh * OW;
                float *dst = plane + (size_t)(oh * stride + ki - pad) * W;
                for (int ow = lo; ow < hi; ow++) dst[ow * stride + kj - pad] += src[ow];
            }
        }
    }
}

/* plane (H, W) += scatter of one channel's k*k rows of dcol (row stride ld);
 * every plane element sums its terms in the fixed (ki, kj, oh, ow) order */
static void col2im_plane(float *plane, const float *rows, size_t ld, int H, int W, int k, int stride,
                         int pad, int OH, int OW)
{
    int Wp = W + 2 * pad;
    size_t npad = (size_t)(H + 2 * pad) * Wp;
    if (npad > PAD_MAX) {
        col2im_plane_edges(plane, rows, ld, H, W, k, stride, pad, OH, OW);
        return;
    }
    /* sum into a zero-padded plane, then add its interior: no edge tests */
    float acc[PAD_MAX];
    memset(acc, 0, npad * sizeof(float));
    for (int ki = 0; ki < k; ki++) {
        for (int kj = 0; kj < k; kj++) {
            const float *row = rows + (size_t)(ki * k + kj) * ld;
            for (int oh = 0; oh < OH; oh++) {
                const float *src = row + (size_t)oh * OW;
                float *dst = acc + (size_t)(oh * stride + ki) * Wp + kj;
                if (stride == 1) {
                    add_row(dst, src, OW);
                } else {
                    for (int ow = 0; ow < OW; ow++) dst[ow * stride] += src[ow];
                }
            }
        }
    }
    for (int h = 0; h < H; h++) add_row(plane + (size_t)h * W, acc + (size_t)(h + pad) * Wp + pad, W);
}

/* col2im_add's plane of (image g, channel c), gc = g * C + c */
static void col2im_image_channel(float *dinp, const float *dcol, int gc, int G, int C, int H, int W, int k,
                                 int stride, int pad, int OH, int OW)
{
    size_t P = (size_t)OH * OW, ld = (size_t)G * P;
    int g = gc / C, c = gc % C;
    col2im_plane(dinp + (size_t)gc * H * W, dcol + (size_t)c * k * k * ld + (size_t)g * P, ld, H, W, k, stride,
                 pad, OH, OW);
}

/* dinp (G, C, H, W) += scatter of dcol (C*k*k, G*OH*OW), the transpose of im2col */
static void col2im_add(float *dinp, const float *dcol, int G, int C, int H, int W, int k, int stride,
                       int pad, int OH, int OW)
{
    size_t P = (size_t)OH * OW;
    /* an (image, channel) block of dcol only touches its own plane */
    DA_PAR_FOR((double)G * C * k * k * P,
        for (int gc = 0; gc < G * C; gc++) col2im_image_channel(dinp, dcol, gc, G, C, H, W, k, stride, pad, OH, OW));
}

/* scatter_out's plane go = g * O + o */
static void scatter_plane(float *out, const float *tmp, int G, int O, int P, int go)
{
    int g = go / O, o = go % O;
    memcpy(out + (size_t)go * P, tmp + ((size_t)o * G + g) * P, (size_t)P * sizeof(float));
}

/* out (G, O, P) = tmp (O, G*P) regrouped per image */
static void scatter_out(float *out, const float *tmp, int G, int O, int P)
{
    DA_PAR_FOR((double)G * O * P, for (int go = 0; go < G * O; go++) scatter_plane(out, tmp, G, O, P, go));
}

/* gather_dout's plane go = g * O + o */
static void gather_dout_plane(float *tmp, const float *dout, int go, int G, int O, int P)
{
    int g = go / O, o = go % O;
    memcpy(tmp + ((size_t)o * G + g) * P, dout + (size_t)go * P, (size_t)P * sizeof(float));
}

/* tmp (O, G*P) = dout (G, O, P) with the images side by side, as in col */
static void gather_dout(float *tmp, const float *dout, int G, int O, int P)
{
    DA_PAR_FOR((double)G * O * P,
        for (int go = 0; go < G * O; go++) gather_dout_plane(tmp, dout, go, G, O, P));
}

/* ---- the column matrix, never stored (portable GEMM, stride 1) -------------- */

/* With the portable GEMM, a stride-1 convolution does not write col at
 * all: the GEMM's B slivers are copied straight from zero-padded copies of
 * the images (gemm_packer.h). im2col wrote col and the GEMM then copied it
 * again into its slivers; now the values make one trip instead of two, and
 * they are the same values, so the bits are too. */
typedef struct conv_cols {
    const float *padded; /* (G, C, Hp, Wp): the group's images with their zero border */
    int C, Hp, Wp, k, OW, P;
} conv_cols;

/* one run of a sliver: `len` columns from dst column `at`, an output row's
 * positions from (g, oh, ow) on; `base` their patch origin in padded
 * (channel 0, ki = kj = 0) */
typedef struct col_run {
    int at, len;
    size_t base;
} col_run;

/* Rows p of a sliver, `n` at a time from off[] (their patch offsets in
 * padded), for runs of one length L: constant-width copies for the usual
 * widths (the UNet's 8x8 and 4x4 outputs give runs of 8 and 4), a
 * run-time width otherwise. */
#define DEFINE_COPY_RUNS(name, L)                                                                  \
    static void name(float *dst, int nr, const float *padded, const col_run *runs, int n_runs,       \
                     const size_t *off, int n, int len)                                              \
    {                                                                                               \
        (void)len;                                                                                  \
        for (int p = 0; p < n; p++)                                                                 \
            for (int r = 0; r < n_runs; r++)                                                        \
                memcpy(dst + (size_t)p * nr + runs[r].at, padded + runs[r].base + off[p], (L) * sizeof(float)); \
    }
DEFINE_COPY_RUNS(copy_runs_4, 4)
DEFINE_COPY_RUNS(copy_runs_8, 8)
DEFINE_COPY_RUNS(copy_runs_16, 16)
DEFINE_COPY_RUNS(copy_runs_n, (size_t)len)

/* Rows p of a whole sliver made of R runs of L columns (R L = nr), both
 * constants: the UNet's 8x8 outputs fill a 32-column sliver with 4 rows of
 * 8, 4x4 outputs with 8 rows of 4 (two images). The R run origins are held
 * in registers and each row is R fixed-size copies, with no walk over the
 * runs table, and an AVX copy of each moves a run of 8 in one load and
 * store: pack_cols and its copies went from 4.7% to 3.5% of sampling at
 * batch 16 (one thread, Zen 5). */
#define DEFINE_COPY_GRID(name, L, R, ATTR)                                                         \
    ATTR static void name(float *restrict dst, const float *restrict padded, const col_run *runs,      \
                          const size_t *off, int n)                                                  \
    {                                                                                               \
        const float *src[R];                                                                        \
        for (int r = 0; r < (R); r++) src[r] = padded + runs[r].base;                              \
        for (int p = 0; p < n; p++)                                                                 \
            for (int r = 0; r < (R); r++)                                                           \
                memcpy(dst + (size_t)p * (L) * (R) + r * (L), src[r] + off[p], (L) * sizeof(float)); \
    }
#define GRID_SHAPES(X, ATTR, SFX)                                                                   \
    X(copy_grid_8x4##SFX, 8, 4, ATTR) X(copy_grid_8x2##SFX, 8, 2, ATTR) X(copy_grid_8x3##SFX, 8, 3, ATTR) \
    X(copy_grid_4x8##SFX, 4, 8, ATTR) X(copy_grid_4x4##SFX, 4, 4, ATTR) X(copy_grid_4x6##SFX, 4, 6, ATTR) \
    X(copy_grid_16x2##SFX, 16, 2, ATTR)
GRID_SHAPES(DEFINE_COPY_GRID, , _base)
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define GRID_AVX 1
GRID_SHAPES(DEFINE_COPY_GRID, __attribute__((target("avx2"))), _avx)
#endif

#ifdef GRID_AVX
#define GRID_CALL(L, R) (avx ? copy_grid_##L##x##R##_avx : copy_grid_##L##x##R##_base)(dst, padded, runs, off, n)
#else
#define GRID_CALL(L, R) ((void)avx, copy_grid_##L##x##R##_base(dst, padded, runs, off, n))
#endif

/* a whole sliver of n_runs runs of len by a grid copy above (avx: its AVX
 * copy); 0 if none fits */
static int copy_grid(float *dst, const float *padded, const col_run *runs, int n_runs, const size_t *off, int n,
                     int len, int avx)
{
#define GRID_CASE(L, R)                                                                             \
    case (L) * 100 + (R):                                                                           \
        GRID_CALL(L, R);                                                                            \
        return 1;
    switch (len * 100 + n_runs) {
    GRID_CASE(8, 4) GRID_CASE(8, 2) GRID_CASE(8, 3) GRID_CASE(4, 8) GRID_CASE(4, 4) GRID_CASE(4, 6) GRID_CASE(16, 2)
    default: return 0;
    }
#undef GRID_CASE
}

/* a sliver's rows [p, p + n) when every run has length len; else one run at a time */
static void copy_runs(float *dst, int nr, const float *padded, const col_run *runs, int n_runs, const size_t *off,
                      int n, int avx)
{
    if (n_runs < 1) return;
    int len = runs[0].len;
    for (int r = 1; r < n_runs; r++)
        if (runs[r].len != len) {
            for (int q = 0; q < n_runs; q++) copy_runs_n(dst, nr, padded, runs + q, 1, off, n, runs[q].len);
            return;
        }
    if (len * n_runs == nr && copy_grid(dst, padded, runs, n_runs, off, n, len, avx)) return;
    switch (len) {
    case 4: copy_runs_4(dst, nr, padded, runs, n_runs, off, n, len); return;
    case 8: copy_runs_8(dst, nr, padded, runs, n_runs, off, n, len); return;
    case 16: copy_runs_16(dst, nr, padded, runs, n_runs, off, n, len); return;
    default: copy_runs_n(dst, nr, padded, runs, n_runs, off, n, len);
    }
}

#define ROWS_AT_ONCE 128 /* the patch offsets of this many rows p are computed once for every sliver */

/* da_gemm_pack_b_fn of the column matrix: row p = (c, ki, kj) of column j =
 * (g, oh, ow) is padded[g, c, oh + ki, ow + kj] (col's layout, im2col) */
static void pack_cols(const void *ctx, float *dst, int nr, int j0, int cols, int p0, int kc)
{
    const conv_cols *cc = ctx;
    assert(nr <= 64);
    int avx = da_vec_avx2();
    int n_slivers = (cols + nr - 1) / nr;
    size_t plane = (size_t)cc->Hp * cc->Wp;
    for (int q0 = 0; q0 < kc; q0 += ROWS_AT_ONCE) {
        int n = kc - q0 < ROWS_AT_ONCE ? kc - q0 : ROWS_AT_ONCE;
        size_t off[ROWS_AT_ONCE];
        for (int q = 0; q < n; q++) {
            int p = p0 + q0 + q, c_in = p / (cc->k * cc->k), kij = p % (cc->k * cc->k);
            off[q] = (size_t)c_in * plane + (size_t)(kij / cc->k) * cc->Wp + kij % cc->k;
        }
        for (int sl = 0; sl < n_slivers; sl++) {
            int s = sl * nr, used = cols - s < nr ? cols - s : nr, n_runs = 0;
            float *d = dst + (size_t)sl * kc * nr + (size_t)q0 * nr;
            col_run runs[64]; /* a run has at least one column: at most nr <= 64 runs */
            for (int c = 0; c < used;) {
                int j = j0 + s + c, g = j / cc->P, oh = (j % cc->P) / cc->OW, ow = j % cc->OW;
                int len = cc->OW - ow < used - c ? cc->OW - ow : used - c;
                runs[n_runs++] = (col_run){c, len, (size_t)g * cc->C * plane + (size_t)oh * cc->Wp + ow};
                c += len;
            }
            if (used < nr) memset(d, 0, (size_t)n * nr * sizeof(float));
            copy_runs(d, nr, cc->padded, runs, n_runs, off, n, avx);
        }
    }
}

/* padded (G, C, H+2pad, W+2pad) = inp (G, C, H, W) with a zero border */
static void pad_images(float *padded, const float *inp, int G, int C, int H, int W, int pad)
{
    size_t plane = (size_t)(H + 2 * pad) * (W + 2 * pad);
    DA_PAR_FOR((double)G * C * plane,
        for (int gc = 0; gc < G * C; gc++) pad_plane(padded + (size_t)gc * plane, inp + (size_t)gc * H * W, H, W, pad));
}

/* The stride-1 path of the portable GEMM needs an image's padded planes
 * where its col would be: they are never larger (C (H+2pad)(W+2pad) <=
 * C k^2 OH OW for the shapes conv2d meets), but check. */
static int cols_implicit(const conv_plan *pl, int C, int H, int W, int stride, int pad)
{
    if (pl->pointwise || stride != 1 || strcmp(da_gemm_backend(), "portable")) return 0;
    return (size_t)C * (H + 2 * pad) * (W + 2 * pad) <= (size_t)pl->K * pl->P;
}

/* out (N, O, OH, OW) = inp (N, C, H, W) * weight (O, C, k, k) + bias (O);
 * col: scratch of da_conv2d_col_size(N, C, H, W, O, k, stride, pad) floats */
void da_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                       float *col, int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    conv_plan pl = conv_plan_make(N, C, H, W, O, k, stride, pad);
    assert(pl.OH > 0 && pl.OW > 0 && stride > 0 && pad >= 0);
    assert(col || conv_plan_scratch(&pl, O) == 0);
    int K = pl.K, P = pl.P;
    int implicit = cols_implicit(&pl, C, H, W, stride, pad);
    conv_cols cc = {col, C, H + 2 * pad, W + 2 * pad, k, pl.OW, P};
    for (int i = 0; i < pl.n_groups; i++) {
        int n0, G = conv_group(&pl, N, i, &n0);
        const float *inp_g = inp + (size_t)n0 * C * H * W;
        float *out_g = out + (size_t)n0 * O * P;
        if (implicit) pad_images(col, inp_g, G, C, H, W, pad);
        /* each output is its sum over (c, ki, kj), then + bias[o] (the
         * GEMM's epilogue adds it): the same bits whether the GEMM writes
         * into out (one image) or into tmp, regrouped after */
        if (G == 1) {
            if (implicit) {
                da_gemm_portable_packed(0, O, P, K, weight, K, pack_cols, &cc, out_g, P, bias);
            } else {
                const float *cols = inp_g;
                if (!pl.pointwise) {
                    im2col(col, inp_g, 1, C, H, W, k, stride, pad, pl.OH, pl.OW);
                    cols = col;
                }
                da_gemm_items_bias(1, 0, 0, 0, 0, 0, O, P, K, weight, K, cols, P, out_g, P, NULL, bias);
            }
            continue;
        }
        int GP = G * P;
        float *tmp = col + (size_t)K * GP;
        if (implicit) {
            /* the images side by side, one wide GEMM: what da_gemm_items
             * makes of the per-image items below with the portable GEMM */
            da_gemm_portable_packed(0, O, GP, K, weight, K, pack_cols, &cc, tmp, GP, bias);
        } else {
            im2col(col, inp_g, G, C, H, W, k, stride, pad, pl.OH, pl.OW);
            /* one GEMM item per image (its P columns): see gemm.c */
            da_gemm_items_bias(G, 0, P, P, 0, 0, O, P, K, weight, K, col, GP, tmp, GP, NULL, bias);
        }
        scatter_out(out_g, tmp, G, O, P);
    }
}

#define DBIAS_LANES 8

/* dbias of the DBIAS_LANES channels of set q (da_conv2d_backward says how) */
static void dbias_set(float *dbias, const float *dout, int q, int N, int O, int P)
{
    int o0 = q * DBIAS_LANES, nl = O - o0 < DBIAS_LANES ? O - o0 : DBIAS_LANES;
    float acc[DBIAS_LANES] = {0};
    for (int n = 0; n < N; n++) {
        const float *d[DBIAS_LANES];
        for (int l = 0; l < DBIAS_LANES; l++) d[l] = dout + ((size_t)n * O + o0 + (l < nl ? l : nl - 1)) * P;
        for (int p = 0; p < P; p++) DA_UNROLL_LANES for (int l = 0; l < DBIAS_LANES; l++) acc[l] += d[l][p];
    }
    for (int l = 0; l < nl; l++) dbias[o0 + l] += acc[l];
}

/* dinp (N, C, H, W) += conv_transpose(dout, weight); dweight (O, C, k, k) +=
 * sum over groups of dout_g @ col_g^T; dbias (O) += sum over n, oh, ow of dout.
 * dout (N, O, OH, OW); col: scratch as in forward. NULL gradients are skipped. */
void da_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, float *col,
                        int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    conv_plan pl = conv_plan_make(N, C, H, W, O, k, stride, pad);
    assert(pl.OH > 0 && pl.OW > 0 && stride > 0 && pad >= 0);
    assert(col || conv_plan_scratch(&pl, O) == 0 || (!dinp && !dweight));
    int K = pl.K, P = pl.P;
    if (dbias) {
        /* each channel summed over n then position, in order (one chain of
         * adds); DBIAS_LANES channels' chains side by side, each in a
         * register of its own, so they overlap instead of waiting on each
         * other's latency; a thread per set of channels. Spare lanes of the
         * last set repeat its last channel and are dropped. */
        int sets = (O + DBIAS_LANES - 1) / DBIAS_LANES;
        DA_PAR_FOR((double)N * O * P,
            for (int q = 0; q < sets; q++) dbias_set(dbias, dout, q, N, O, P));
    }
    if (!dinp && !dweight) return;
    /* groups in order, so dweight's accumulation order is fixed */
    for (int i = 0; i < pl.n_groups; i++) {
        int n0, G = conv_group(&pl, N, i, &n0), GP = G * P;
        const float *inp_g = inp + (size_t)n0 * C * H * W;
        float *dinp_g = dinp ? dinp + (size_t)n0 * C * H * W : NULL;
        /* dout of the group as (O, G*P): the image itself when G == 1 */
        const float *dy = dout + (size_t)n0 * O * P;
        if (G > 1) {
            float *tmp = col + (size_t)K * GP;
            gather_dout(tmp, dy, G, O, P);
            dy = tmp;
        }
        if (pl.pointwise) {
            assert(G == 1);
            if (dweight) da_gemm(0, 1, O, C, P, 1.0f, dy, P, inp_g, P, 1.0f, dweight, C);
            if (dinp_g) da_gemm(1, 0, C, P, O, 1.0f, weight, C, dy, P, 1.0f, dinp_g, P);
            continue;
        }
        if (dweight) {
            im2col(col, inp_g, G, C, H, W, k, stride, pad, pl.OH, pl.OW);
            da_gemm(0, 1, O, K, GP, 1.0f, dy, GP, col, GP, 1.0f, dweight, K);
        }
        if (dinp_g) {
            /* col is free again: reuse it for dcol (C*k*k, G*P) = W^T @ dout_g */
            da_gemm_items(G, 0, P, P, 1, 0, K, P, O, 1.0f, weight, K, dy, GP, 0.0f, col, GP);
            col2im_add(dinp_g, col, G, C, H, W, k, stride, pad, pl.OH, pl.OW);
        }
    }
}

static void conv2d_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    const int *i = nd->i;
    da_conv2d_backward(x->grad, w->grad, b ? b->grad : NULL, nd->out->grad, x->data, w->data,
                       nd->saved, i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7]);
}

/* x (N, C, H, W), w (O, C, k, k), b (O) or NULL -> (N, O, OH, OW) */
da_tensor *da_conv2d(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b, int stride, int pad)
{
    assert(x->ndim == 4 && w->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int O = w->shape[0], k = w->shape[2];
    assert(w->shape[1] == C && w->shape[3] == k && (!b || (int)b->size == O));
    assert(stride >= 1 && pad >= 0 && H + 2 * pad >= k && W + 2 * pad >= k);
    int shape[4] = {N, O, conv_out_size(H, k, stride, pad), conv_out_size(W, k, stride, pad)};
    da_tensor *in[3] = {x, w, b};
    da_tensor *out = da_tensor_for_op(t, 4, shape, in, 3);
    /* the scratch lives until the tape is reset, so backward reuses it */
    size_t ncol = da_conv2d_col_size(N, C, H, W, O, k, stride, pad);
    float *col = ncol ? da_arena_alloc(&t->arena, ncol * sizeof(float)) : NULL;
    da_conv2d_forward(out->data, x->data, w->data, b ? b->data : NULL, col, N, C, H, W, O, k, stride, pad);
    da_node nd = {.backward = conv2d_backward_node, .out = out, .in = {x, w, b},
                  .i = {N, C, H, W, O, k, stride, pad}, .saved = col};
    da_tape_push(t, &nd);
    return out;
}

/* dst (2H, 2W) = src (H, W), each value repeated over a 2x2 block */
static void upsample_plane(float *dst, const float *src, int H, int W)
{
    int OW = 2 * W;
    for (int y = 0; y < H; y++) {
        float *r0 = dst + (size_t)(2 * y) * OW;
        for (int x = 0; x < W; x++) r0[2 * x] = r0[2 * x + 1] = src[(size_t)y * W + x];
        memcpy(r0 + OW, r0, (size_t)OW * sizeof(float));
    }
}

/* out (N, C, 2H, 2W): out[.., y, x] = inp[.., y/2, x/2] */
void da_upsample2x_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    DA_PAR_FOR((double)N * C * H * W * 4,
        for (int nc = 0; nc < N * C; nc++) upsample_plane(out + (size_t)nc * 4 * H * W, inp + (size_t)nc * H * W, H, W));
}

/* dst (H, W) += sum of the 2x2 children in src (2H, 2W) */
static void upsample_plane_backward(float *dst, const float *src, int H, int W)
{
    int OW = 2 * W;
    for (int y = 0; y < H; y++) {
        const float *r0 = src + (size_t)(2 * y) * OW, *r1 = r0 + OW;
        for (int x = 0; x < W; x++) dst[(size_t)y * W + x] += r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1];
    }
}

/* dinp (N, C, H, W) += sum of the 2x2 children in dout (N, C, 2H, 2W) */
void da_upsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W)
{
    size_t plane = (size_t)H * W;
    DA_PAR_FOR((double)N * C * plane * 4,
        for (int nc = 0; nc < N * C; nc++)
            upsample_plane_backward(dinp + (size_t)nc * plane, dout + (size_t)nc * 4 * plane, H, W));
}

static void upsample2x_backward_node(const da_node *nd)
{
    const int *i = nd->i;
    da_upsample2x_backward(nd->in[0]->grad, nd->out->grad, i[0], i[1], i[2], i[3]);
}

/* x (N, C, H, W) -> (N, C, 2H, 2W) */
da_tensor *da_upsample2x(da_tape *t, da_tensor *x)
{
    assert(x->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int shape[4] = {N, C, 2 * H, 2 * W};
    da_tensor *out = da_tensor_for_op(t, 4, shape, &x, 1);
    da_upsample2x_forward(out->data, x->data, N, C, H, W);
    da_node nd = {.backward = upsample2x_backward_node, .out = out, .in = {x}, .i = {N, C, H, W}};
    da_tape_push(t, &nd);
    return out;
}

/* out (N, C, H/2, W/2) = mean of each 2x2 block of inp (N, C, H, W) */
void da_downsample2x_forward(float *out, const float *inp, int N, int C, int H, int W)
{
    assert(H % 2 == 0 && W % 2 == 0);
    int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C * H * W)
    for (int nc = 0; nc < N * C; nc++) {
        const float *src = inp + (size_t)nc * H * W;
        float *dst = out + (size_t)nc * OH * OW;
        for (int y = 0; y < OH; y++) {
            const float *r0 = src + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < OW; x++)
                dst[(size_t)y * OW + x] = (r0[2 * x] + r0[2 * x + 1] + r1[2 * x] + r1[2 * x + 1]) * 0.25f;
        }
    }
}

/* dinp (N, C, H, W) += dout (N, C, H/2, W/2) / 4 spread over each 2x2 block */
void da_downsample2x_backward(float *dinp, const float *dout, int N, int C, int H, int W)
{
    assert(H % 2 == 0 && W % 2 == 0);
    int OH = H / 2, OW = W / 2;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C * H * W)
    for (int nc = 0; nc < N * C; nc++) {
        float *dst = dinp + (size_t)nc * H * W;
        const float *src = dout + (size_t)nc * OH * OW;
        for (int y = 0; y < OH; y++) {
            float *r0 = dst + (size_t)(2 * y) * W, *r1 = r0 + W;
            for (int x = 0; x < OW; x++) {
                float g = src[(size_t)y * OW + x] * 0.25f;
                r0[2 * x] += g;
                r0[2 * x + 1] += g;
                r1[2 * x] += g;
                r1[2 * x + 1] += g;
            }
        }
    }
}

static void downsample2x_backward_node(const da_node *nd)
{
    const int *i = nd->i;
    da_downsample2x_backward(nd->in[0]->grad, nd->out->grad, i[0], i[1], i[2], i[3]);
}

/* x (N, C, H, W) -> (N, C, H/2, W/2); H and W even (asserted: model code
 * only downsamples even sizes, an odd one is a bug in the model) */
da_tensor *da_downsample2x(da_tape *t, da_tensor *x)
{
    assert(x->ndim == 4);
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    assert(H % 2 == 0 && W % 2 == 0);
    int shape[4] = {N, C, H / 2, W / 2};
    da_tensor *out = da_tensor_for_op(t, 4, shape, &x, 1);
    da_downsample2x_forward(out->data, x->data, N, C, H, W);
    da_node nd = {.backward = downsample2x_backward_node, .out = out, .in = {x}, .i = {N, C, H, W}};
    da_tape_push(t, &nd);
    return out;
}
