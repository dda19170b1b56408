/* Activations (silu, gelu, gelu_tanh, log_sigmoid): finite differences,
 * PyTorch reference, thread determinism, behaviour at large |x|, and the
 * vectorised kernels bit for bit against the scalar formulas they replaced
 * (and softmax / log-softmax, vectorised the same way, against theirs). */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct act_op {
    const char *name;
    da_tensor *(*fn)(da_tape *t, da_tensor *x);
} act_op;

static const act_op ACTS[] = {
    {"silu", da_silu},
    {"gelu", da_gelu},
    {"gelu_tanh", da_gelu_tanh},
    {"log_sigmoid", da_log_sigmoid},
};
#define N_ACTS (int)(sizeof ACTS / sizeof ACTS[0])

static da_tensor *build_act(da_tape *t, da_tensor **in, void *ctx)
{
    const act_op *op = ctx;
    return op->fn(t, in[0]);
}

/* one input of shape (rows, cols), uniform in [lo, hi) */
static tu_case act_case(int rows, int cols, uint32_t seed, float lo, float hi)
{
    tu_case c = {.n_in = 1, .ndim = {2}, .shape = {{rows, cols}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill((size_t)rows * cols, seed, lo, hi);
    return c;
}

/* Smooth functions, eps = 1e-2: the central-difference truncation error is
 * eps^2/6 |f'''| <= ~3e-5 here, and the f32 forward adds ~6e-8 |y| / (2 eps)
 * <= ~1.5e-5 (|y| <= 5); 2e-4 leaves a margin while still catching any wrong
 * derivative term (those are O(0.1) or more on [-5, 5]). */
static void test_act_gradcheck(void **state)
{
    (void)state;
    tu_case c = act_case(3, 9, 7u, -5.0f, 5.0f);
    c.data[0][0] = 0.0f;   /* log_sigmoid's branch point and gelu's centre */
    c.data[0][1] = -12.0f; /* tails: derivatives ~0 or ~1 */
    c.data[0][2] = 12.0f;
    for (int i = 0; i < N_ACTS; i++)
        tu_gradcheck(ACTS[i].name, build_act, (void *)&ACTS[i], &c, 1e-2, 2e-4, 2e-4);
    free(c.data[0]);
}

/* Against PyTorch's CPU kernels (their own vectorised exp/erf/tanh/log1p,
 * accurate to a few ulp): rtol 1e-5 covers a few ulp of each value. atol
 * 1e-6 covers gelu's cancellation in 1 + erf(x/sqrt2) for x ~ -5 (one ulp of
 * 1.0, 6e-8, times |x|), where relative error is meaningless. The input
 * holds +-30 and +-100; log_sigmoid's tiny values there are checked
 * relatively in test_act_large_inputs. */
static void test_act_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_act");
    const char *names[] = {"x"};
    for (int i = 0; i < N_ACTS; i++)
        tu_oracle_case(st, ACTS[i].name, build_act, (void *)&ACTS[i], names, 1, 1e-6, 1e-5);
    da_st_close(st);
}

/* 1000 elements so both threads get a share of every loop. */
static void test_act_threads(void **state)
{
    (void)state;
    tu_case c = act_case(10, 100, 11u, -8.0f, 8.0f);
    for (int i = 0; i < N_ACTS; i++) tu_check_threads(ACTS[i].name, build_act, (void *)&ACTS[i], &c);
    free(c.data[0]);
}

/* Stability at large |x|: no inf/NaN in outputs or gradients, and
 * log_sigmoid exact where a naive log(1 / (1 + exp(-x))) fails: exp(1000)
 * overflows to inf (-> log 0 = -inf), and 1 + exp(-30) rounds to 1 in f32
 * (-> 0 instead of -exp(-30)). */
static void test_act_large_inputs(void **state)
{
    (void)state;
    float x[8] = {-1000.0f, -100.0f, -30.0f, -0.0f, 0.0f, 30.0f, 100.0f, 1000.0f};
    tu_case c = {.n_in = 1, .ndim = {1}, .shape = {{8}}, .data = {x}, .needs_grad = {1}};
    float dout[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < N_ACTS; i++) {
        tu_result r = tu_run(build_act, (void *)&ACTS[i], &c, dout);
        for (int j = 0; j < 8; j++) {
            if (!isfinite(r.out[j]) || !isfinite(r.grad[0][j]))
                fail_msg("%s(%g): out %g grad %g not finite", ACTS[i].name, x[j], r.out[j], r.grad[0][j]);
        }
        tu_result_free(&r);
    }
    const act_op *ls = &ACTS[3];
    assert_string_equal(ls->name, "log_sigmoid");
    tu_result r = tu_run(build_act, (void *)ls, &c, dout);
    /* log sigmoid(x) = x - log1p(e^x) for x < 0, -log1p(e^-x) for x > 0;
     * the expected values and d/dx = sigmoid(-x) are computed in double */
    for (int j = 0; j < 8; j++) {
        double xd = x[j];
        double want = xd < 0 ? xd - log1p(exp(xd)) : -log1p(exp(-xd));
        double gwant = xd < 0 ? 1.0 / (1.0 + exp(xd)) : exp(-xd) / (1.0 + exp(-xd));
        /* 1e-6 relative: a few ulp of f32 expf/log1pf, so tiny values
         * (e^-30 ~ 1e-13) must be right relatively, not just close to 0.
         * 1e-44 absolute: e^-100 ~ 3.7e-44 is an f32 subnormal, whose
         * spacing (1.4e-45) allows only a few correct steps */
        if (fabs(r.out[j] - want) > 1e-6 * fabs(want) + 1e-44)
            fail_msg("log_sigmoid(%g) = %.9g, want %.9g", x[j], r.out[j], want);
        if (fabs(r.grad[0][j] - gwant) > 1e-6 * fabs(gwant) + 1e-44)
            fail_msg("log_sigmoid'(%g) = %.9g, want %.9g", x[j], r.grad[0][j], gwant);
    }
    tu_result_free(&r);
}

/* ---- bits: the kernels against the scalar loops of before ------------------ */

/* The kernels as they were written before they were vectorised (one
 * da_expf / da_erff / ... call per element): the reference. */
#define INV_SQRT2      0.70710678118654752440f
#define INV_SQRT_2PI   0.39894228040143267794f
#define SQRT_2_OVER_PI 0.79788456080286535588f
#define GELU_CUBIC     0.044715f

static float ref_sigmoid(float x)
{
    float e = da_expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static float ref_silu(float x) { return x * ref_sigmoid(x); }
static float ref_silu_d(float x, float dy)
{
    float s = ref_sigmoid(x);
    return dy * (s * (1.0f + x * (1.0f - s)));
}
static float ref_gelu(float x) { return 0.5f * x * (1.0f + da_erff(x * INV_SQRT2)); }
static float ref_gelu_d(float x, float dy)
{
    float cdf = 0.5f * (1.0f + da_erff(x * INV_SQRT2));
    float pdf = INV_SQRT_2PI * da_expf(-0.5f * x * x);
    return dy * (cdf + x * pdf);
}
static float ref_gelu_tanh(float x)
{
    float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    return 0.5f * x * (1.0f + da_tanhf(u));
}
static float ref_gelu_tanh_d(float x, float dy)
{
    float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
    float t = da_tanhf(u);
    float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
    return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
}
static float ref_log_sigmoid(float x) { return fminf(x, 0.0f) - da_log1pf(da_expf(-fabsf(x))); }
static float ref_log_sigmoid_d(float x, float dy) { return dy * ref_sigmoid(-x); }

typedef struct act_kernels {
    const char *name;
    void (*fwd)(float *out, const float *inp, size_t n);
    void (*bwd)(float *dinp, const float *dout, const float *inp, size_t n);
    float (*ref)(float x);
    float (*ref_d)(float x, float dy);
} act_kernels;

static const act_kernels KERNELS[] = {
    {"silu", da_silu_forward, da_silu_backward, ref_silu, ref_silu_d},
    {"gelu", da_gelu_forward, da_gelu_backward, ref_gelu, ref_gelu_d},
    {"gelu_tanh", da_gelu_tanh_forward, da_gelu_tanh_backward, ref_gelu_tanh, ref_gelu_tanh_d},
    {"log_sigmoid", da_log_sigmoid_forward, da_log_sigmoid_backward, ref_log_sigmoid, ref_log_sigmoid_d},
};

/* bits equal, or both NaN (a NaN's sign and payload are not promised: the
 * old log-sigmoid's fminf and the new select differ there on aarch64 for
 * signalling NaNs; test_mathf checks the elementary functions' NaNs) */
static void assert_bits_or_nan(const char *what, const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) == 0 || (isnan(got[i]) && isnan(want[i]))) continue;
        fail_msg("%s: bits differ at index %zu of %zu: %a vs %a", what, i, n, (double)got[i], (double)want[i]);
    }
}

/* inputs: an even sweep of [-30, 30], every 4093rd float bit pattern (all
 * exponents, infinities, NaNs), and specials; an odd count, so the last
 * block is partial */
static float *bit_inputs(size_t *n)
{
    enum { EVEN = 600001 };
    size_t n_bits = (size_t)((1ull << 32) / 4093) + 1;
    static const float SPECIAL[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -1e-30f, 0x1p-149f,
                                    -0x1p-149f, 88.7f, -88.7f, 104.0f, -104.0f, 0.5f, -0.5f, 10.0f, -10.0f};
    size_t total = EVEN + n_bits + sizeof SPECIAL / sizeof SPECIAL[0];
    float *x = malloc(total * sizeof *x);
    assert_non_null(x);
    size_t k = 0;
    for (int i = 0; i < EVEN; i++) x[k++] = -30.0f + 60.0f * (float)i / (float)(EVEN - 1);
    for (uint64_t u = 0; u < (1ull << 32); u += 4093) {
        uint32_t b = (uint32_t)u;
        memcpy(&x[k++], &b, sizeof b);
    }
    for (size_t i = 0; i < sizeof SPECIAL / sizeof SPECIAL[0]; i++) x[k++] = SPECIAL[i];
    *n = k;
    return x;
}

static void test_act_bits_vs_scalar(void **state)
{
    (void)state;
    size_t n;
    float *x = bit_inputs(&n);
    float *dy = tu_alloc_fill(n, 5u, -2.0f, 2.0f);
    float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t k = 0; k < sizeof KERNELS / sizeof KERNELS[0]; k++) {
        const act_kernels *a = &KERNELS[k];
        char what[64];
        a->fwd(got, x, n);
        for (size_t i = 0; i < n; i++) want[i] = a->ref(x[i]);
        snprintf(what, sizeof what, "%s forward", a->name);
        assert_bits_or_nan(what, got, want, n);
        /* backward adds into a buffer that starts at a pattern */
        tu_grad_pattern(got, n, 9u, 1.0f);
        memcpy(want, got, n * sizeof *want);
        a->bwd(got, dy, x, n);
        for (size_t i = 0; i < n; i++) want[i] += a->ref_d(x[i], dy[i]);
        snprintf(what, sizeof what, "%s backward", a->name);
        assert_bits_or_nan(what, got, want, n);
        print_message("  %-11s forward and backward = the scalar loops on %zu inputs\n", a->name, n);
    }
    free(x);
    free(dy);
    free(got);
    free(want);
}

/* softmax and log-softmax (ops_softmax.c, whose exps are vectorised the
 * same way) against their loops of before */
static float ref_row_max(const float *x, int C)
{
    float m = -INFINITY;
    for (int c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
    return m;
}

static void ref_softmax_forward(float *y, const float *x, int C)
{
    float m = ref_row_max(x, C), sum = 0.0f;
    for (int c = 0; c < C; c++) {
        y[c] = da_expf(x[c] - m);
        sum += y[c];
    }
    float inv = 1.0f / sum;
    for (int c = 0; c < C; c++) y[c] *= inv;
}

static void ref_log_softmax_forward(float *y, const float *x, int C)
{
    float m = ref_row_max(x, C), sum = 0.0f;
    for (int c = 0; c < C; c++) sum += da_expf(x[c] - m);
    float ls = da_logf(sum);
    for (int c = 0; c < C; c++) y[c] = (x[c] - m) - ls;
}

static void ref_log_softmax_backward(float *dx, const float *dy, const float *y, int C)
{
    float sum = 0.0f;
    for (int c = 0; c < C; c++) sum += dy[c];
    for (int c = 0; c < C; c++) dx[c] += dy[c] - da_expf(y[c]) * sum;
}

static void test_softmax_bits_vs_scalar(void **state)
{
    (void)state;
    static const int WIDTHS[] = {1, 7, 24, 63, 64, 65, 77, 200, 1000};
    enum { ROWS = 37 };
    for (size_t w = 0; w < sizeof WIDTHS / sizeof WIDTHS[0]; w++) {
        int C = WIDTHS[w];
        size_t n = (size_t)ROWS * C;
        float *x = tu_alloc_fill(n, 20u + (uint32_t)w, -20.0f, 20.0f);
        float *dy = tu_alloc_fill(n, 40u + (uint32_t)w, -1.0f, 1.0f);
        float *got = malloc(n * sizeof *got), *want = malloc(n * sizeof *want);
        assert_true(got && want);
        x[0] = -INFINITY;   /* a masked logit */
        x[n - 1] = 80.0f;   /* dominates its row */
        da_softmax_forward(got, x, ROWS, C);
        for (int r = 0; r < ROWS; r++) ref_softmax_forward(want + (size_t)r * C, x + (size_t)r * C, C);
        tu_assert_bits("softmax forward", got, want, n);
        da_log_softmax_forward(got, x, ROWS, C);
        for (int r = 0; r < ROWS; r++) ref_log_softmax_forward(want + (size_t)r * C, x + (size_t)r * C, C);
        tu_assert_bits("log_softmax forward", got, want, n);
        float *y = malloc(n * sizeof *y);
        assert_non_null(y);
        memcpy(y, got, n * sizeof *y);
        tu_grad_pattern(got, n, 60u, 1.0f);
        memcpy(want, got, n * sizeof *want);
        da_log_softmax_backward(got, dy, y, ROWS, C);
        for (int r = 0; r < ROWS; r++)
            ref_log_softmax_backward(want + (size_t)r * C, dy + (size_t)r * C, y + (size_t)r * C, C);
        tu_assert_bits("log_softmax backward", got, want, n);
        free(x);
        free(dy);
        free(got);
        free(want);
        free(y);
    }
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_gradcheck),
        cmocka_unit_test(test_act_vs_torch),
        cmocka_unit_test(test_act_threads),
        cmocka_unit_test(test_act_large_inputs),
        cmocka_unit_test(test_act_bits_vs_scalar),
        cmocka_unit_test(test_softmax_bits_vs_scalar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
