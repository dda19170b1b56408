/* groupnorm and layernorm: finite differences, PyTorch reference, statistics
 * against a double-precision recomputation, threads. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>

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

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_gradcheck),
        cmocka_unit_test(test_norm_vs_torch),
        cmocka_unit_test(test_groupnorm_stats),
        cmocka_unit_test(test_norm_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
