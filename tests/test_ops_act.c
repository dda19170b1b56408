/* Activations (silu, gelu, gelu_tanh, log_sigmoid): finite differences,
 * PyTorch reference, thread determinism, behaviour at large |x|. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>

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

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_gradcheck),
        cmocka_unit_test(test_act_vs_torch),
        cmocka_unit_test(test_act_threads),
        cmocka_unit_test(test_act_large_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
