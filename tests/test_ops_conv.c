/* conv2d, upsample2x, downsample2x: finite differences, PyTorch reference,
 * threads, and the raw kernels' accumulate/NULL-skip contract. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_cfg {
    const char *name;
    int N, C, H, W, O, k, stride, pad, bias;
} conv_cfg;

/* Every config has N >= 2 (dweight sums over images), H != W and C != O. */
static const conv_cfg conv_cfgs[] = {
    {"k3 s1 p1 bias", 2, 3, 5, 6, 4, 3, 1, 1, 1},
    {"k3 s2 p1 odd H", 2, 3, 7, 6, 5, 3, 2, 1, 1},
    {"k1 s1 p0 no bias", 2, 5, 4, 3, 3, 1, 1, 0, 0},
    {"k3 s1 p0", 3, 2, 5, 7, 3, 3, 1, 0, 1},
    {"k1 s2 p0", 2, 3, 6, 5, 4, 1, 2, 0, 1},
    {"k5 s1 p2", 2, 2, 6, 5, 3, 5, 1, 2, 1},
};
#define N_CONV_CFGS ((int)(sizeof conv_cfgs / sizeof conv_cfgs[0]))

static da_tensor *build_conv(da_tape *t, da_tensor **in, void *ctx)
{
    const conv_cfg *g = ctx;
    return da_conv2d(t, in[0], in[1], g->bias ? in[2] : NULL, g->stride, g->pad);
}

static da_tensor *build_upsample(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_upsample2x(t, in[0]);
}

static da_tensor *build_downsample(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_downsample2x(t, in[0]);
}

static tu_case conv_case(const conv_cfg *g, uint32_t seed)
{
    tu_case c = {.n_in = g->bias ? 3 : 2, .ndim = {4, 4, 1},
                 .shape = {{g->N, g->C, g->H, g->W}, {g->O, g->C, g->k, g->k}, {g->O}},
                 .needs_grad = {1, 1, 1}};
    for (int i = 0; i < c.n_in; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(c.ndim[i], c.shape[i]), seed + i, -1.0f, 1.0f);
    return c;
}

static tu_case image_case(int N, int C, int H, int W, uint32_t seed)
{
    tu_case c = {.n_in = 1, .ndim = {4}, .shape = {{N, C, H, W}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill(da_shape_size(4, c.shape[0]), seed, -1.0f, 1.0f);
    return c;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* conv2d is linear in each input element, so central differences are exact
 * up to f32 rounding of the forward: each output (|out| <~ 5) carries ~3e-7
 * error, up to ~60 outputs move per element, divided by 2*eps = 0.02, i.e.
 * ~1e-4 typical; 2e-3 leaves room without hiding a wrong term (those are O(0.1)+). */
static void test_conv_gradcheck(void **state)
{
    (void)state;
    for (int i = 0; i < N_CONV_CFGS; i++) {
        tu_case c = conv_case(&conv_cfgs[i], 100u + 10u * i);
        char what[64];
        snprintf(what, sizeof what, "conv2d %s", conv_cfgs[i].name);
        tu_gradcheck(what, build_conv, (void *)&conv_cfgs[i], &c, 1e-2, 2e-3, 2e-3);
        free_case(&c);
    }
}

/* Same argument: both ops are linear with <= 4 terms per output. */
static void test_resample_gradcheck(void **state)
{
    (void)state;
    tu_case c = image_case(2, 3, 3, 4, 7u);
    tu_gradcheck("upsample2x", build_upsample, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = image_case(2, 3, 4, 6, 8u);
    tu_gradcheck("downsample2x", build_downsample, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
}

/* f32 against PyTorch's f32 (MKLDNN or its own im2col) with a different
 * summation order. Values ~N(0,1); reordering a sum costs ~1e-6 of its
 * magnitude (measured: <= 5e-7 of max|ref| with OpenBLAS and the portable
 * GEMM), independent of the element's own value after cancellation, so atol
 * follows the largest reference value: ~19 in the small cases (reductions of
 * <= 50 terms) -> 1e-5; ~37 in conv_wide (C*k*k = 144 terms for the output,
 * N*OH*OW = 112 for dweight; measured error up to 1.9e-5) -> 6e-5. Both are
 * 3-5x the measured error and far below any indexing mistake (O(1)). */
static void test_conv_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_conv");
    const char *xwb[] = {"x", "w", "b"};
    static const struct { const char *name; conv_cfg g; double atol; } cases[] = {
        {"conv_k3s1p1", {.stride = 1, .pad = 1, .bias = 1}, 1e-5},
        {"conv_k3s2p1", {.stride = 2, .pad = 1, .bias = 1}, 1e-5},
        {"conv_k1s1p0", {.stride = 1, .pad = 0, .bias = 0}, 1e-5},
        {"conv_k3s1p0", {.stride = 1, .pad = 0, .bias = 1}, 1e-5},
        {"conv_k1s2p0", {.stride = 2, .pad = 0, .bias = 1}, 1e-5},
        {"conv_k5s1p2", {.stride = 1, .pad = 2, .bias = 1}, 1e-5},
        {"conv_constx", {.stride = 1, .pad = 1, .bias = 1}, 1e-5},  /* x frozen: dinp == NULL */
        {"conv_wide", {.stride = 1, .pad = 1, .bias = 1}, 6e-5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        tu_oracle_case(st, cases[i].name, build_conv, (void *)&cases[i].g, xwb, cases[i].g.bias ? 3 : 2,
                       cases[i].atol, 1e-5);
    /* nearest upsample copies and its gradient sums 4 terms; average pooling
     * sums 4 and scales by a power of two: at most an ulp or two apart */
    const char *x[] = {"x"};
    tu_oracle_case(st, "upsample", build_upsample, NULL, x, 1, 1e-6, 1e-6);
    tu_oracle_case(st, "downsample", build_downsample, NULL, x, 1, 1e-6, 1e-6);
    da_st_close(st);
}

static void test_conv_threads(void **state)
{
    (void)state;
    for (int i = 0; i < N_CONV_CFGS; i++) {
        tu_case c = conv_case(&conv_cfgs[i], 200u + 10u * i);
        tu_check_threads(conv_cfgs[i].name, build_conv, (void *)&conv_cfgs[i], &c);
        free_case(&c);
    }
    /* enough channels that both threads get several planes in im2col/col2im */
    static const conv_cfg wide = {"wide k3 s1 p1", 3, 16, 9, 8, 12, 3, 1, 1, 1};
    tu_case c = conv_case(&wide, 300u);
    tu_check_threads(wide.name, build_conv, (void *)&wide, &c);
    free_case(&c);
    c = image_case(2, 5, 3, 4, 9u);
    tu_check_threads("upsample2x", build_upsample, NULL, &c);
    free_case(&c);
    c = image_case(2, 5, 4, 6, 10u);
    tu_check_threads("downsample2x", build_downsample, NULL, &c);
    free_case(&c);
}

/* Raw kernels: backward ADDS into gradient buffers and skips NULL ones;
 * the column scratch has the documented size. */
static void test_conv_kernel_contract(void **state)
{
    (void)state;
    assert_int_equal(da_conv2d_col_size(1, 5, 4, 3, 3, 1, 1, 0), 0);
    assert_int_equal(da_conv2d_col_size(1, 3, 7, 6, 5, 3, 2, 1), 3 * 9 * 4 * 3);
    for (int i = 0; i < N_CONV_CFGS; i++) {
        const conv_cfg *g = &conv_cfgs[i];
        int OH = (g->H + 2 * g->pad - g->k) / g->stride + 1, OW = (g->W + 2 * g->pad - g->k) / g->stride + 1;
        size_t nx = (size_t)g->N * g->C * g->H * g->W, nw = (size_t)g->O * g->C * g->k * g->k;
        size_t ny = (size_t)g->N * g->O * OH * OW;
        size_t ncol = da_conv2d_col_size(g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        float *x = tu_alloc_fill(nx, 1u, -1.0f, 1.0f), *w = tu_alloc_fill(nw, 2u, -1.0f, 1.0f);
        float *dy = tu_alloc_fill(ny, 3u, -1.0f, 1.0f);
        float *col = ncol ? malloc(ncol * sizeof(float)) : NULL;
        float *dx1 = calloc(nx, sizeof(float)), *dw1 = calloc(nw, sizeof(float)), *db1 = calloc(g->O, sizeof(float));
        float *dx2 = malloc(nx * sizeof(float)), *dw2 = malloc(nw * sizeof(float)), *db2 = malloc(g->O * sizeof(float));
        da_conv2d_backward(dx1, dw1, db1, dy, x, w, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        /* one gradient at a time, twice each, onto start values that are
         * neither zero nor constant: must equal start + 2x the first result */
        tu_grad_pattern(dx2, nx, 5u, 1.0f);
        tu_grad_pattern(dw2, nw, 6u, 1.0f);
        tu_grad_pattern(db2, (size_t)g->O, 7u, 1.0f);
        for (size_t j = 0; j < nx; j++) dx1[j] = dx2[j] + 2.0f * dx1[j];
        for (size_t j = 0; j < nw; j++) dw1[j] = dw2[j] + 2.0f * dw1[j];
        for (int j = 0; j < g->O; j++) db1[j] = db2[j] + 2.0f * db1[j];
        for (int rep = 0; rep < 2; rep++) {
            da_conv2d_backward(dx2, NULL, NULL, dy, x, w, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
            da_conv2d_backward(NULL, dw2, NULL, dy, x, w, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
            da_conv2d_backward(NULL, NULL, db2, dy, x, w, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        }
        /* each pass adds term by term onto what is there, so it rounds
         * differently from start + 2x: a few ulp of values <~ 20 */
        tu_assert_close("conv2d backward accumulates dinp", dx2, dx1, nx, 1e-5, 1e-5);
        tu_assert_close("conv2d backward accumulates dweight", dw2, dw1, nw, 1e-5, 1e-5);
        tu_assert_close("conv2d backward accumulates dbias", db2, db1, g->O, 1e-5, 1e-5);
        free(x); free(w); free(dy); free(col);
        free(dx1); free(dw1); free(db1); free(dx2); free(dw2); free(db2);
    }
    /* resample backward kernels accumulate too: each call gives each element
     * one addition of the same value (`once`, from a zero start), so two calls
     * onto start values round exactly like (start + once) + once */
    float x[2 * 2 * 4], once[16] = {0}, want[16], dy[64];
    tu_fill(dy, 64, 4u, -1.0f, 1.0f);
    da_upsample2x_backward(once, dy, 1, 2, 2, 4);
    tu_grad_pattern(x, 16, 8u, 1.0f);
    for (int j = 0; j < 16; j++) want[j] = (x[j] + once[j]) + once[j];
    da_upsample2x_backward(x, dy, 1, 2, 2, 4);
    da_upsample2x_backward(x, dy, 1, 2, 2, 4);
    tu_assert_bits("upsample2x backward accumulates", x, want, 16);
    float dx[64], once64[64] = {0}, want64[64];
    da_downsample2x_backward(once64, dy, 1, 1, 8, 8);
    tu_grad_pattern(dx, 64, 9u, 1.0f);
    for (int j = 0; j < 64; j++) want64[j] = (dx[j] + once64[j]) + once64[j];
    da_downsample2x_backward(dx, dy, 1, 1, 8, 8);
    da_downsample2x_backward(dx, dy, 1, 1, 8, 8);
    tu_assert_bits("downsample2x backward accumulates", dx, want64, 64);
}

/* Direct convolution in double: out, and the gradients of sum(out * dy)
 * into dx (N, C, H, W), dw (O, C, k, k), db (O), all zeroed here. */
static void conv_direct(const conv_cfg *g, const float *x, const float *w, const double *b, const float *dy,
                        double *out, double *dx, double *dw, double *db)
{
    int OH = (g->H + 2 * g->pad - g->k) / g->stride + 1, OW = (g->W + 2 * g->pad - g->k) / g->stride + 1;
    memset(dx, 0, (size_t)g->N * g->C * g->H * g->W * sizeof *dx);
    memset(dw, 0, (size_t)g->O * g->C * g->k * g->k * sizeof *dw);
    memset(db, 0, (size_t)g->O * sizeof *db);
    for (int n = 0; n < g->N; n++)
        for (int o = 0; o < g->O; o++)
            for (int y = 0; y < OH; y++)
                for (int xo = 0; xo < OW; xo++) {
                    size_t io = (((size_t)n * g->O + o) * OH + y) * OW + xo;
                    double acc = b ? b[o] : 0.0, d = dy[io];
                    for (int c = 0; c < g->C; c++)
                        for (int ki = 0; ki < g->k; ki++)
                            for (int kj = 0; kj < g->k; kj++) {
                                int ih = y * g->stride + ki - g->pad, iw = xo * g->stride + kj - g->pad;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                size_t ix = (((size_t)n * g->C + c) * g->H + ih) * g->W + iw;
                                size_t iwt = (((size_t)o * g->C + c) * g->k + ki) * g->k + kj;
                                acc += (double)w[iwt] * x[ix];
                                dx[ix] += (double)w[iwt] * d;
                                dw[iwt] += d * x[ix];
                            }
                    out[io] = acc;
                    db[o] += d;
                }
}

/* An f32 sum of n terms drifts from the exact one like a random walk,
 * ~sqrt(n) roundings of the running magnitude, which the largest reference
 * value bounds (cancellation makes an element's own value meaningless).
 * Measured worst over these cases: 3.8e-8 * sqrt(n) * max|ref| (n from 27
 * to 10800); 2e-7 * sqrt(n) leaves 5x, and is still 1e-3 of max|ref| or
 * less, far below one wrong or missing term (|w * x| ~ 0.25). */
static void assert_close_double(const char *what, const conv_cfg *g, const float *got, const double *want,
                                size_t n, int n_terms)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    float *w32 = malloc((n ? n : 1) * sizeof *w32);
    for (size_t i = 0; i < n; i++) w32[i] = (float)want[i];
    char label[160];
    snprintf(label, sizeof label, "conv2d %s: %s vs direct double", g->name, what);
    tu_assert_close(label, got, w32, n, 2e-7 * sqrt((double)n_terms) * scale, 0.0);
    free(w32);
}

/* Shapes that exercise each way conv2d cuts a batch: several groups of
 * images side by side (equal and unequal), single-image groups next to a
 * grouped one, groups of one forced by the scratch cap (C*k*k huge), and
 * planes too large for the padded stack copy (the edge-aware im2col and
 * col2im). Raw kernels against a direct double convolution, gradients
 * accumulated onto nonzero buffers. */
static const conv_cfg group_cfgs[] = {
    {"8x8 out, 6 images (2 groups)", 6, 3, 8, 8, 4, 3, 1, 1, 1},
    {"8x8 out, 7 images (3 + 4)", 7, 2, 8, 8, 3, 3, 1, 1, 1},
    {"8x16 out, 3 images (1 + 2)", 3, 2, 8, 16, 3, 3, 1, 1, 0},
    {"4x4 out, s2, 20 images", 20, 3, 8, 7, 5, 3, 2, 1, 1},
    {"4x4 out, C 1200 (cap)", 3, 1200, 4, 4, 2, 3, 1, 1, 1},
    {"70x66 plane (edges)", 2, 2, 70, 66, 3, 3, 1, 1, 1},
    {"65x70 plane, s2 (edges)", 2, 2, 65, 70, 3, 3, 2, 1, 1},
    {"1 image", 1, 3, 8, 8, 4, 3, 1, 1, 1},
};

static void test_conv_groups(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof group_cfgs / sizeof group_cfgs[0]; i++) {
        const conv_cfg *g = &group_cfgs[i];
        int OH = (g->H + 2 * g->pad - g->k) / g->stride + 1, OW = (g->W + 2 * g->pad - g->k) / g->stride + 1;
        size_t nx = (size_t)g->N * g->C * g->H * g->W, nw = (size_t)g->O * g->C * g->k * g->k;
        size_t ny = (size_t)g->N * g->O * OH * OW;
        size_t ncol = da_conv2d_col_size(g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        float *x = tu_alloc_fill(nx, 20u + i, -1.0f, 1.0f), *w = tu_alloc_fill(nw, 40u + i, -1.0f, 1.0f);
        float *b = g->bias ? tu_alloc_fill(g->O, 60u + i, -1.0f, 1.0f) : NULL;
        float *dy = tu_alloc_fill(ny, 80u + i, -1.0f, 1.0f), *y = malloc(ny * sizeof *y);
        float *col = ncol ? malloc(ncol * sizeof(float)) : NULL;
        /* gradients start at known, non-constant values: backward must add onto them */
        float *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw), *db = malloc(g->O * sizeof *db);
        tu_grad_pattern(dx, nx, 1u, 0.5f);
        tu_grad_pattern(dw, nw, 2u, 0.5f);
        tu_grad_pattern(db, (size_t)g->O, 3u, 0.5f);
        double *ry = malloc(ny * sizeof *ry), *rdx = malloc(nx * sizeof *rdx), *rdw = malloc(nw * sizeof *rdw);
        double *rdb = malloc(g->O * sizeof *rdb), *rb = malloc(g->O * sizeof *rb);
        for (int o = 0; o < g->O; o++) rb[o] = b ? b[o] : 0.0;
        conv_direct(g, x, w, b ? rb : NULL, dy, ry, rdx, rdw, rdb);
        for (size_t j = 0; j < nx; j++) rdx[j] += dx[j];
        for (size_t j = 0; j < nw; j++) rdw[j] += dw[j];
        for (int j = 0; j < g->O; j++) rdb[j] += db[j];
        da_conv2d_forward(y, x, w, b, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        da_conv2d_backward(dx, dw, g->bias ? db : NULL, dy, x, w, col, g->N, g->C, g->H, g->W, g->O, g->k,
                           g->stride, g->pad);
        int kk = g->k * g->k, n_pos = g->N * OH * OW;
        assert_close_double("out", g, y, ry, ny, g->C * kk);
        assert_close_double("dinp", g, dx, rdx, nx, g->O * kk);
        assert_close_double("dweight", g, dw, rdw, nw, n_pos);
        if (g->bias) assert_close_double("dbias", g, db, rdb, g->O, n_pos);
        free(x); free(w); free(b); free(dy); free(y); free(col);
        free(dx); free(dw); free(db); free(ry); free(rdx); free(rdw); free(rdb); free(rb);
    }
}

/* the grouped cuts above are bit-identical with 1 and 2 threads too */
static void test_conv_groups_threads(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof group_cfgs / sizeof group_cfgs[0]; i++) {
        if (group_cfgs[i].C > 100) continue; /* the cap case: same code path as "1 image", and slow */
        tu_case c = conv_case(&group_cfgs[i], 400u + 10u * (uint32_t)i);
        tu_check_threads(group_cfgs[i].name, build_conv, (void *)&group_cfgs[i], &c);
        free_case(&c);
    }
}

/* With the portable GEMM every output is the ordered sum over (c, ki, kj)
 * of weight * input (zero outside the image), then + bias: the bits of
 * this loop, whichever way conv2d gets there. A stride-1 conv builds its
 * GEMM's B slivers straight from the padded images (ops_conv.c:pack_cols);
 * the cases cover runs of an output row that fill a sliver, that split
 * across slivers, images that share one (2x2 and 4x4 outputs), slivers
 * made of whole rows (8x8, 4x4, 16x16: the grid copies), odd widths,
 * rows wider than a sliver, planes past im2col's stack copy, groups of
 * images, and the im2col paths (stride 2, pointwise), on every register
 * tile (a sliver is 16, 24 or 32 columns), at 1 and 2 threads, and under
 * every vector copy the CPU runs (the grid copies have an AVX twin, taken
 * unless the copy is the base one). */
static void conv_ordered_sum(float *out, const float *x, const float *w, const float *b, const conv_cfg *g)
{
    int OH = (g->H + 2 * g->pad - g->k) / g->stride + 1, OW = (g->W + 2 * g->pad - g->k) / g->stride + 1;
    for (int n = 0; n < g->N; n++)
        for (int o = 0; o < g->O; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float s = 0.0f;
                    for (int c = 0; c < g->C; c++)
                        for (int ki = 0; ki < g->k; ki++)
                            for (int kj = 0; kj < g->k; kj++) {
                                int ih = oh * g->stride + ki - g->pad, iw = ow * g->stride + kj - g->pad;
                                float v = ih >= 0 && ih < g->H && iw >= 0 && iw < g->W
                                              ? x[(((size_t)n * g->C + c) * g->H + ih) * g->W + iw] : 0.0f;
                                s += w[(((size_t)o * g->C + c) * g->k + ki) * g->k + kj] * v;
                            }
                    out[(((size_t)n * g->O + o) * OH + oh) * OW + ow] = b ? s + b[o] : s;
                }
}

static void test_conv_forward_bits(void **state)
{
    (void)state;
    static const conv_cfg cases[] = {
        {"8x8, 17 images in groups", 17, 3, 8, 8, 5, 3, 1, 1, 1},
        {"4x4, images share a sliver", 5, 4, 4, 4, 6, 3, 1, 1, 1},
        {"16x16, rows of 16", 2, 3, 16, 16, 4, 3, 1, 1, 1},
        {"2x2, runs of 2", 9, 2, 2, 2, 3, 3, 1, 1, 0},
        {"odd width 7x5", 3, 3, 7, 5, 4, 3, 1, 1, 1},
        {"k3 p0", 2, 2, 6, 6, 3, 3, 1, 0, 1},
        {"k5 p2", 2, 2, 9, 9, 3, 5, 1, 2, 1},
        {"k2 p0", 3, 2, 5, 5, 3, 2, 1, 0, 1},
        {"rows wider than a sliver, 40x40", 2, 3, 40, 40, 4, 3, 1, 1, 1},
        {"plane past the stack copy, 70x66", 1, 1, 70, 66, 2, 3, 1, 1, 1},
        {"stride 2 (im2col)", 3, 2, 8, 8, 3, 3, 2, 1, 1},
        {"pointwise", 3, 4, 4, 4, 5, 1, 1, 0, 1},
        /* GEMMs small enough for the naive loop (M N K < 4096), 100 and 90
         * columns wide: the packer fills a materialised B in slivers */
        {"tiny, 10x10, one channel", 1, 1, 10, 10, 1, 3, 1, 1, 1},
        {"one column wide: runs of one", 3, 1, 30, 1, 1, 3, 1, 1, 0},
    };
    static const char *tiles[] = {"xmm", "ymm", "zmm"}, *isas[] = {"base", "avx2", "avx512"};
    const char *backend = da_gemm_backend(), *saved_isa = da_isa();
    assert_int_equal(da_gemm_set_backend("portable"), DA_OK);
    int threads = da_get_threads();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const conv_cfg *g = &cases[i];
        int OH = (g->H + 2 * g->pad - g->k) / g->stride + 1, OW = (g->W + 2 * g->pad - g->k) / g->stride + 1;
        size_t nx = (size_t)g->N * g->C * g->H * g->W, nw = (size_t)g->O * g->C * g->k * g->k,
               ny = (size_t)g->N * g->O * OH * OW;
        float *x = tu_alloc_fill(nx, 700u + (uint32_t)i, -1.0f, 1.0f), *w = tu_alloc_fill(nw, 800u + (uint32_t)i, -1.0f, 1.0f);
        float *b = g->bias ? tu_alloc_fill((size_t)g->O, 900u + (uint32_t)i, -1.0f, 1.0f) : NULL;
        float *want = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float));
        size_t n_col = da_conv2d_col_size(g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
        float *col = malloc((n_col ? n_col : 1) * sizeof(float));
        conv_ordered_sum(want, x, w, b, g);
        for (int is = 0; is < 3; is++) {
            if (da_set_isa(isas[is]) != DA_OK) continue; /* not on this CPU */
            for (int t = 0; t < 3; t++)
                for (int nth = 1; nth <= 2; nth++) {
                    assert_int_equal(da_gemm_set_tile(tiles[t]), DA_OK);
                    da_set_threads(nth);
                    memset(got, 0xff, ny * sizeof(float));
                    da_conv2d_forward(got, x, w, b, col, g->N, g->C, g->H, g->W, g->O, g->k, g->stride, g->pad);
                    char what[160];
                    snprintf(what, sizeof what, "conv2d %s, %s copy, tile %s, %d thread(s)", g->name, isas[is],
                             da_gemm_tile(), nth);
                    tu_assert_bits(what, got, want, ny);
                }
        }
        free(x), free(w), free(b), free(want), free(got), free(col);
    }
    assert_int_equal(da_gemm_set_tile("auto"), DA_OK);
    assert_int_equal(da_set_isa(saved_isa), DA_OK);
    da_set_threads(threads);
    assert_int_equal(da_gemm_set_backend(backend), DA_OK);
}

/* dbias is each channel's sum over images, then positions, in order, added
 * to dbias: the bits of the plain loop (the kernel runs channels side by side) */
static void test_conv_dbias_bits(void **state)
{
    (void)state;
    static const int shapes[][3] = {{32, 128, 64}, {5, 13, 35}, {17, 9, 16}, {1, 1, 1}};
    for (int s = 0; s < 4; s++) {
        int N = shapes[s][0], O = shapes[s][1], P = shapes[s][2];
        float *dout = tu_alloc_fill((size_t)N * O * P, 70u + (uint32_t)s, -3.0f, 3.0f);
        float *db = tu_alloc_fill((size_t)O, 80u + (uint32_t)s, -1.0f, 1.0f), *want = malloc((size_t)O * sizeof(float));
        for (int o = 0; o < O; o++) {
            float acc = 0.0f;
            for (int n = 0; n < N; n++)
                for (int p = 0; p < P; p++) acc += dout[((size_t)n * O + o) * P + p];
            want[o] = db[o] + acc;
        }
        for (int nth = 1; nth <= 2; nth++) {
            float *got = malloc((size_t)O * sizeof(float));
            memcpy(got, db, (size_t)O * sizeof(float));
            int keep = da_get_threads();
            da_set_threads(nth);
            /* a 1x1 conv of P = H*W positions, only dbias asked for */
            da_conv2d_backward(NULL, NULL, got, dout, NULL, NULL, NULL, N, 1, 1, P, O, 1, 1, 0);
            da_set_threads(keep);
            tu_assert_bits("conv2d dbias vs the ordered sum", got, want, (size_t)O);
            free(got);
        }
        free(dout), free(db), free(want);
    }
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_gradcheck),
        cmocka_unit_test(test_resample_gradcheck),
        cmocka_unit_test(test_conv_vs_torch),
        cmocka_unit_test(test_conv_threads),
        cmocka_unit_test(test_conv_kernel_contract),
        cmocka_unit_test(test_conv_groups),
        cmocka_unit_test(test_conv_groups_threads),
        cmocka_unit_test(test_conv_forward_bits),
        cmocka_unit_test(test_conv_dbias_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
