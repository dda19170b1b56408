/* The vector kernels' copies per instruction set (src/core/vec.h): every
 * copy this CPU runs gives the base copy's bits for every kernel, on
 * inputs that reach every branch of the formulas (zeros of both signs,
 * subnormals, infinities, NaN, the ends of each function's ranges) and on
 * lengths that leave partial blocks; choosing a copy works and refuses
 * what it must. On a CPU without AVX-512 (or on aarch64) the copies it
 * lacks are reported as skipped checks, not passed ones. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ISAS[] = {"avx2", "avx512"};
#define N_ISAS (int)(sizeof ISAS / sizeof ISAS[0])

#define N 1237   /* not a multiple of any block (64) or chunk (16) */

/* inputs of the elementwise kernels: special values, then a wide log-uniform
 * spread of both signs, then a dense spread over [-12, 12] */
static float *inputs(uint32_t seed)
{
    static const float special[] = {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, 1.17549435e-38f,
                                    INFINITY, -INFINITY, NAN, -NAN, 88.7228f, 88.7229f, -87.33f, -103.98f,
                                    -104.0f, 0.5f, -0.5f, 0.84375f, 1.25f, 2.857f, 3.9f, 6.0f, 9.0f, -9.0f,
                                    1e30f, -1e30f, 3.4028235e38f, -3.4028235e38f, 1.0f, -1.0f, 0.01f, -0.99999f};
    int ns = (int)(sizeof special / sizeof special[0]);
    float *x = malloc(N * sizeof(float));
    memcpy(x, special, sizeof special);
    uint32_t s = seed;
    for (int i = ns; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        float u = (float)(s >> 8) / 16777216.0f;
        if (i < N / 2) x[i] = (s & 1 ? -1.0f : 1.0f) * powf(10.0f, -30.0f + 60.0f * u);
        else x[i] = -12.0f + 24.0f * u;
    }
    return x;
}

/* the kernels of one copy over the same inputs, every output in one buffer */
typedef struct outs {
    float *y;
    size_t n;
} outs;

static void run_all(outs *o)
{
    float *x = inputs(7), *dy = inputs(11), *pos = inputs(13);
    for (int i = 0; i < N; i++) pos[i] = fabsf(pos[i]);   /* log's domain, and log1p's beyond -1 */
    /* groupnorm (N 3, C 32, S 17, G 8) and layernorm (N 5, C 37): S = 1, G = 1 */
    int gN = 3, gC = 32, gS = 17, gG = 8, lN = 5, lC = 37;
    size_t gn = (size_t)gN * gC * gS, ln = (size_t)lN * lC;
    float *gx = tu_alloc_fill(gn, 21, -3.0f, 5.0f), *gdy = tu_alloc_fill(gn, 22, -1.0f, 1.0f);
    float *gam = tu_alloc_fill(gC > lC ? gC : lC, 23, 0.5f, 1.5f), *bet = tu_alloc_fill(gC > lC ? gC : lC, 24, -1, 1);
    float *lx = tu_alloc_fill(ln, 25, -2.0f, 2.0f), *ldy = tu_alloc_fill(ln, 26, -1.0f, 1.0f);

    size_t cap = 32 * (size_t)N + 8 * gn + 6 * ln + 1024, k = 0;
    float *y = calloc(cap, sizeof(float));
    da_expf_n(y + k, x, N), k += N;
    da_logf_n(y + k, pos, N), k += N;
    da_logf_n(y + k, x, N), k += N;
    da_log1pf_n(y + k, pos, N), k += N;
    da_log1pf_n(y + k, x, N), k += N;
    da_tanhf_n(y + k, x, N), k += N;
    da_erff_n(y + k, x, N), k += N;
    void (*fwd[4])(float *, const float *, size_t) = {da_silu_forward, da_gelu_forward, da_gelu_tanh_forward,
                                                      da_log_sigmoid_forward};
    void (*bwd[4])(float *, const float *, const float *, size_t) = {da_silu_backward, da_gelu_backward,
                                                                     da_gelu_tanh_backward, da_log_sigmoid_backward};
    for (int f = 0; f < 4; f++) {
        fwd[f](y + k, x, N), k += N;
        tu_grad_pattern(y + k, N, 31 + f, 0.5f);   /* backward adds onto what is there */
        bwd[f](y + k, dy, x, N), k += N;
    }
    float *mean = y + k, *rstd = y + k + 256;   /* four sets of statistics at 0, 32, 64, 100 */
    k += 512;
    da_groupnorm_forward(y + k, mean, rstd, gx, gam, bet, gN, gC, gS, gG, 1e-5f), k += gn;
    da_groupnorm_forward(y + k, mean + 32, rstd + 32, gx, NULL, NULL, gN, gC, gS, gG, 1e-5f), k += gn;
    float *normed = y + k;
    k += gn;
    da_groupnorm_silu_forward(y + k, normed, mean + 64, rstd + 64, gx, gam, bet, gN, gC, gS, gG, 1e-5f), k += gn;
    float *dgam = y + k, *dbet = y + k + gC;
    k += 2 * (size_t)gC;
    tu_grad_pattern(y + k, gn, 41, 0.25f);
    da_groupnorm_backward(y + k, dgam, dbet, gdy, gx, gam, mean, rstd, gN, gC, gS, gG), k += gn;
    da_layernorm_forward(y + k, mean + 100, rstd + 100, lx, gam, bet, lN, lC, 1e-5f), k += ln;
    float *ldg = y + k, *ldb = y + k + lC;
    k += 2 * (size_t)lC;
    tu_grad_pattern(y + k, ln, 42, 0.25f);
    da_layernorm_backward(y + k, ldg, ldb, ldy, lx, gam, mean + 100, rstd + 100, lN, lC), k += ln;
    assert_true(k <= cap);
    o->y = y;
    o->n = k;
    free(x), free(dy), free(pos), free(gx), free(gdy), free(gam), free(bet), free(lx), free(ldy);
}

/* NaN outputs are compared as NaN (their payload is not part of the promise) */
static void assert_same(const char *isa, const outs *a, const outs *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        if (isnan(a->y[i]) && isnan(b->y[i])) continue;
        uint32_t ua, ub;
        memcpy(&ua, &a->y[i], 4);
        memcpy(&ub, &b->y[i], 4);
        if (ua != ub) fail_msg("copy %s differs from base at output %zu: %.9g vs %.9g", isa, i, b->y[i], a->y[i]);
    }
}

static void test_copies_match_base(void **state)
{
    (void)state;
    const char *saved = da_isa();
    for (int t = 1; t <= 2; t++) {   /* the kernels thread themselves: 1 and 2 threads */
        da_set_threads(t);
        assert_int_equal(da_set_isa("base"), DA_OK);
        assert_string_equal(da_isa(), "base");
        outs base;
        run_all(&base);
        int ran = 0;
        for (int i = 0; i < N_ISAS; i++) {
            if (da_set_isa(ISAS[i]) != DA_OK) {
                if (t == 1) printf("skipped: copy %s (%s)\n", ISAS[i], da_last_error());
                continue;
            }
            assert_string_equal(da_isa(), ISAS[i]);
            outs o;
            run_all(&o);
            assert_same(ISAS[i], &base, &o);
            free(o.y);
            ran++;
        }
        if (t == 1) printf("compared with base: %d cop%s, %zu outputs each\n", ran, ran == 1 ? "y" : "ies", base.n);
        free(base.y);
    }
    assert_int_equal(da_set_isa(saved), DA_OK);
}

/* the copy in use at start is the widest this CPU runs, "best" returns to it */
static void test_choice(void **state)
{
    (void)state;
    const char *saved = da_isa();
    assert_int_equal(da_set_isa("best"), DA_OK);
    const char *best = da_isa();
    int wide = 0;
    for (int i = 0; i < N_ISAS; i++)
        if (da_set_isa(ISAS[i]) == DA_OK) wide = i + 1;
    assert_string_equal(best, wide ? ISAS[wide - 1] : "base");
    assert_int_equal(da_set_isa(NULL), DA_OK);
    assert_string_equal(da_isa(), best);

    assert_int_equal(da_set_isa("sse9"), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "sse9"));
    assert_string_equal(da_isa(), best);   /* a refusal changes nothing */
    assert_int_equal(da_set_isa(saved), DA_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copies_match_base),
        cmocka_unit_test(test_choice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
