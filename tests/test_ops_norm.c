/* groupnorm and layernorm: finite differences, PyTorch reference, statistics
 * against a double-precision recomputation, threads; the kernels bit for bit
 * against the plain sequential loops they replaced, and the fused
 * groupnorm + SiLU against the two ops. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-5f /* the eps of tests/oracle/ops_norm.py */

/* ctx: the number of groups; gamma/beta are in[1], in[2] or absent (NULL) */
static da_tensor *build_groupnorm(da_tape *t, da_tensor **in, void *ctx)
{
    return da_groupnorm(t, in[0], in[1], in[2], *(const int *)ctx, EPS);
}

static da_tensor *build_layernorm(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_layernorm(t, in[0], in[1], in[2], EPS);
}

/* x of the given shape plus gamma/beta (C = shape[c_dim]) when n_in == 3.
 * uniform(-1, 1) inputs: groups are far from constant, so the variance is
 * well above eps and the normalisation is well-conditioned. */
static tu_case norm_case(int ndim, const int *shape, int c_dim, int n_in, uint32_t seed)
{
    tu_case c = {.n_in = n_in, .ndim = {ndim, 1, 1}, .needs_grad = {1, 1, 1}};
    for (int d = 0; d < ndim; d++) c.shape[0][d] = shape[d];
    c.shape[1][0] = c.shape[2][0] = shape[c_dim];
    for (int i = 0; i < n_in; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(c.ndim[i], c.shape[i]), seed + i, -1.0f, 1.0f);
    return c;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* Central differences with eps 1e-2 on a smooth map of O(1) inputs:
 * truncation O(eps^2 * f''') and f32 forward rounding ~1e-7 * sqrt(n) / (2 eps).
 * Small groups (4 values, S = 1) are the most curved: observed worst 3.6e-4
 * there. 2e-3 leaves a 5x margin yet catches any wrong term (a dropped mean
 * or variance term changes gradients by O(0.1)). */
static void test_norm_gradcheck(void **state)
{
    (void)state;
    int G = 3;
    tu_case c = norm_case(4, (int[]){2, 6, 2, 2}, 1, 3, 100u);
    tu_gradcheck("groupnorm (2,6,2,2) G=3", build_groupnorm, &G, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    G = 2;
    c = norm_case(2, (int[]){3, 8}, 1, 3, 110u);
    tu_gradcheck("groupnorm (3,8) G=2 (S=1)", build_groupnorm, &G, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = norm_case(3, (int[]){2, 4, 3}, 1, 1, 120u);
    tu_gradcheck("groupnorm (2,4,3) G=2 no affine", build_groupnorm, &G, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = norm_case(3, (int[]){2, 3, 8}, 2, 3, 130u);
    tu_gradcheck("layernorm (2,3,8)", build_layernorm, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
}

/* Both sides compute in f32 with different summation orders over groups of
 * <= 27 values of O(1); outputs and gradients are O(1) (up to ~10 after
 * division by small stds): 1e-5 absolute + 1e-5 relative is a few ulp. */
static void test_norm_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_norm");
    const char *names[] = {"x", "gamma", "beta"};
    int G = 3;
    tu_oracle_case(st, "gn_2d", build_groupnorm, &G, names, 3, 1e-5, 1e-5);
    G = 2;
    tu_oracle_case(st, "gn_s1", build_groupnorm, &G, names, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "gn_1d", build_groupnorm, &G, names, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "gn_noaffine", build_groupnorm, &G, names, 1, 1e-5, 1e-5);
    tu_oracle_case(st, "ln", build_layernorm, NULL, names, 3, 1e-5, 1e-5);
    da_st_close(st);
}

/* The raw kernel's saved mean/rstd against a double two-pass recomputation,
 * and the normalised output (gamma 1, beta 0) has per-group mean 0 and
 * biased variance var/(var+eps). Inputs have a large offset (+50) so a
 * one-pass E[x^2]-E[x]^2 variance would lose most digits here. */
static void test_groupnorm_stats(void **state)
{
    (void)state;
    enum { N = 3, C = 8, S = 10, G = 4, CNT = (C / G) * S };
    float *x = tu_alloc_fill(N * C * S, 7u, 49.0f, 51.0f);
    float out[N * C * S], mean[N * G], rstd[N * G], want_mean[N * G], want_rstd[N * G];
    float gamma[C], beta[C];
    for (int c = 0; c < C; c++) { gamma[c] = 1.0f; beta[c] = 0.0f; }
    da_groupnorm_forward(out, mean, rstd, x, gamma, beta, N, C, S, G, EPS);
    for (int ng = 0; ng < N * G; ng++) {
        const float *xg = x + ng * CNT;
        const float *yg = out + ng * CNT;
        double m = 0.0, v = 0.0, ym = 0.0, yv = 0.0;
        for (int i = 0; i < CNT; i++) m += xg[i];
        m /= CNT;
        for (int i = 0; i < CNT; i++) v += (xg[i] - m) * (xg[i] - m);
        v /= CNT;
        want_mean[ng] = (float)m;
        want_rstd[ng] = (float)(1.0 / sqrt(v + EPS));
        for (int i = 0; i < CNT; i++) ym += yg[i];
        ym /= CNT;
        for (int i = 0; i < CNT; i++) yv += (yg[i] - ym) * (yg[i] - ym);
        yv /= CNT;
        /* f32 normalisation of values whose deviations carry ~7 digits after
         * removing the offset of 50: mean ~1e-6, variance within 1e-4 */
        assert_true(fabs(ym) < 1e-5);
        assert_true(fabs(yv - v / (v + EPS)) < 1e-4);
    }
    /* f32 sums of 20 values near 50: relative error ~20 ulp at most;
     * rstd inherits the error of the f32 mean (~4e-6 absolute) relative to
     * deviations ~0.6: ~1e-5. A one-pass E[x^2] - E[x]^2 in f32 is off by
     * ~1e-3 relative here and fails. */
    tu_assert_close("groupnorm mean", mean, want_mean, N * G, 0.0, 1e-6);
    tu_assert_close("groupnorm rstd", rstd, want_rstd, N * G, 0.0, 1e-4);
    free(x);
}

/* Shapes large enough that each thread gets several groups and channels. */
static void test_norm_threads(void **state)
{
    (void)state;
    int G = 4;
    tu_case c = norm_case(4, (int[]){3, 16, 5, 7}, 1, 3, 200u);
    tu_check_threads("groupnorm", build_groupnorm, &G, &c);
    free_case(&c);
    c = norm_case(3, (int[]){4, 9, 24}, 2, 3, 210u);
    tu_check_threads("layernorm", build_layernorm, NULL, &c);
    free_case(&c);
}

/* ---- bits: the kernels against the plain loops of before -------------------- */

/* The kernels as they were before the lanes and chunks: the reference. */
static void ref_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                                  const float *beta, int N, int C, int S, int G, float eps)
{
    int Cg = C / G;
    size_t count = (size_t)Cg * S;
    for (int ng = 0; ng < N * G; ng++) {
        const float *x = inp + (size_t)ng * count;
        float *y = out + (size_t)ng * count;
        float sum = 0.0f;
        for (size_t i = 0; i < count; i++) sum += x[i];
        float m = sum / (float)count;
        float ss = 0.0f;
        for (size_t i = 0; i < count; i++) {
            float d = x[i] - m;
            ss += d * d;
        }
        float r = 1.0f / sqrtf(ss / (float)count + eps);
        mean[ng] = m;
        rstd[ng] = r;
        int c0 = (ng % G) * Cg;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            float bt = beta ? beta[c0 + cg] : 0.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                y[i] = (x[i] - m) * r * gm + bt;
            }
        }
    }
}

static void ref_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                                   const float *gamma, const float *mean, const float *rstd, int N, int C,
                                   int S, int G)
{
    int Cg = C / G;
    size_t count = (size_t)Cg * S;
    for (int ng = 0; ng < N * G; ng++) {
        size_t off = (size_t)ng * count;
        float *dx = dinp + off;
        const float *dy = dout + off, *x = inp + off;
        float m = mean[ng], r = rstd[ng];
        int c0 = (ng % G) * Cg;
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                float g = dy[i] * gm;
                sum_g += g;
                sum_gx += g * (x[i] - m) * r;
            }
        }
        float mean_g = sum_g / (float)count, mean_gx = sum_gx / (float)count;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                float xhat = (x[i] - m) * r;
                dx[i] += r * (dy[i] * gm - mean_g - xhat * mean_gx);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        float sg = 0.0f, sb = 0.0f;
        for (int n = 0; n < N; n++) {
            int ng = n * G + c / Cg;
            float m = mean[ng], r = rstd[ng];
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) {
                sg += dy[s] * (x[s] - m) * r;
                sb += dy[s];
            }
        }
        dgamma[c] += sg;
        dbeta[c] += sb;
    }
}

typedef struct norm_shape { int N, C, S, G, affine; } norm_shape;

/* UNet-like groups (16 groups of 4 or 8 channels on 8x8 and 4x4), layernorm
 * rows (S = 1, G = 1), sizes that are no multiple of the chunk (16) or of
 * the lanes (8 groups or channels), no affine, one group */
static const norm_shape SHAPES[] = {
    {4, 64, 64, 16, 1},  {3, 128, 16, 16, 1}, {2, 256, 16, 16, 1}, {37, 64, 1, 1, 1}, {5, 130, 1, 1, 1},
    {3, 16, 35, 4, 1},   {2, 6, 4, 3, 1},     {3, 8, 1, 2, 1},     {3, 9, 24, 3, 0},  {1, 5, 7, 1, 1},
    {11, 12, 3, 6, 1},   {2, 24, 17, 8, 0},   {9, 64, 1, 1, 0},
};

static void check_norm_shape(const norm_shape *sh, uint32_t seed)
{
    int N = sh->N, C = sh->C, S = sh->S, G = sh->G, NG = sh->N * sh->G;
    size_t n = (size_t)N * C * S;
    char what[96];
    float *x = tu_alloc_fill(n, seed, -1.0f, 3.0f);
    float *gamma = sh->affine ? tu_alloc_fill((size_t)C, seed + 1, 0.5f, 1.5f) : NULL;
    float *beta = sh->affine ? tu_alloc_fill((size_t)C, seed + 2, -0.5f, 0.5f) : NULL;
    float *dy = tu_alloc_fill(n, seed + 3, -1.0f, 1.0f);
    float *y = malloc(n * sizeof *y), *y_ref = malloc(n * sizeof *y_ref);
    float *st = malloc(4 * (size_t)NG * sizeof *st);   /* mean, rstd; reference mean, rstd */
    float *dx = malloc(n * sizeof *dx), *dx_ref = malloc(n * sizeof *dx_ref);
    float *dp = malloc(4 * (size_t)C * sizeof *dp);      /* dgamma, dbeta; reference dgamma, dbeta */
    assert_true(y && y_ref && st && dx && dx_ref && dp);

    da_groupnorm_forward(y, st, st + NG, x, gamma, beta, N, C, S, G, EPS);
    ref_groupnorm_forward(y_ref, st + 2 * NG, st + 3 * NG, x, gamma, beta, N, C, S, G, EPS);
    snprintf(what, sizeof what, "groupnorm (%d,%d,%d) G=%d affine=%d", N, C, S, G, sh->affine);
    tu_assert_bits(what, y, y_ref, n);
    tu_assert_bits(what, st, st + 2 * NG, 2 * (size_t)NG);

    /* gradients add into buffers that start at a pattern */
    tu_grad_pattern(dx, n, seed + 4, 1.0f);
    memcpy(dx_ref, dx, n * sizeof *dx);
    tu_grad_pattern(dp, 2 * (size_t)C, seed + 5, 1.0f);
    memcpy(dp + 2 * C, dp, 2 * (size_t)C * sizeof *dp);
    da_groupnorm_backward(dx, dp, dp + C, dy, x, gamma, st, st + NG, N, C, S, G);
    ref_groupnorm_backward(dx_ref, dp + 2 * C, dp + 3 * C, dy, x, gamma, st, st + NG, N, C, S, G);
    tu_assert_bits(what, dx, dx_ref, n);
    tu_assert_bits(what, dp, dp + 2 * C, 2 * (size_t)C);

    /* fused: silu of the groupnorm output, with and without keeping it */
    float *z = malloc(n * sizeof *z), *normed = malloc(n * sizeof *normed);
    assert_true(z && normed);
    da_silu_forward(y_ref, y_ref, n);
    da_groupnorm_silu_forward(z, normed, st, st + NG, x, gamma, beta, N, C, S, G, EPS);
    tu_assert_bits(what, z, y_ref, n);
    tu_assert_bits(what, normed, y, n);
    da_groupnorm_silu_forward(z, NULL, st, st + NG, x, gamma, beta, N, C, S, G, EPS);
    tu_assert_bits(what, z, y_ref, n);
    free(z);
    free(normed);

    free(x);
    free(gamma);
    free(beta);
    free(dy);
    free(y);
    free(y_ref);
    free(st);
    free(dx);
    free(dx_ref);
    free(dp);
}

static void test_norm_bits_vs_plain_loops(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof SHAPES / sizeof SHAPES[0]; k++) check_norm_shape(&SHAPES[k], 300u + 10u * (uint32_t)k);
}

/* da_groupnorm_silu against da_silu(da_groupnorm(...)) on the tape:
 * output and every gradient, bit for bit */
static da_tensor *build_gn_silu_fused(da_tape *t, da_tensor **in, void *ctx)
{
    return da_groupnorm_silu(t, in[0], in[1], in[2], *(const int *)ctx, EPS);
}

static da_tensor *build_gn_silu_separate(da_tape *t, da_tensor **in, void *ctx)
{
    return da_silu(t, da_groupnorm(t, in[0], in[1], in[2], *(const int *)ctx, EPS));
}

static void test_groupnorm_silu_fused(void **state)
{
    (void)state;
    static const struct { int shape[4], G, n_in; } CASES[] = {
        {{3, 64, 8, 8}, 16, 3}, {{2, 12, 5, 3}, 4, 3}, {{2, 8, 4, 4}, 2, 1},
    };
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        int G = CASES[k].G;
        tu_case c = norm_case(4, CASES[k].shape, 1, CASES[k].n_in, 400u + (uint32_t)k);
        tu_result a = tu_run(build_gn_silu_fused, &G, &c, NULL);
        tu_result b = tu_run(build_gn_silu_separate, &G, &c, NULL);
        tu_assert_bits("groupnorm_silu output", a.out, b.out, a.out_n);
        for (int i = 0; i < c.n_in; i++)
            tu_assert_bits("groupnorm_silu gradient", a.grad[i], b.grad[i], da_shape_size(c.ndim[i], c.shape[i]));
        tu_result_free(&a);
        tu_result_free(&b);
        tu_check_threads("groupnorm_silu", build_gn_silu_fused, &G, &c);
        free_case(&c);
    }
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_gradcheck),
        cmocka_unit_test(test_norm_vs_torch),
        cmocka_unit_test(test_groupnorm_stats),
        cmocka_unit_test(test_norm_threads),
        cmocka_unit_test(test_norm_bits_vs_plain_loops),
        cmocka_unit_test(test_groupnorm_silu_fused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
