/* exp(s x) and clamp (src/core/ops_unary.c): finite differences, thread
 * determinism, clamp's exact values and its gradient mask, and torch.clamp's
 * convention at the bounds. (Moved here from test_model_vae.c with the ops.) */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>

#include "core/ops_unary.h"

static da_tensor *build_exp_half(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_exp_scaled(t, in[0], 0.5f);
}

static da_tensor *build_exp_one(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_exp_scaled(t, in[0], 1.0f);
}

static da_tensor *build_clamp(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_clamp(t, in[0], -0.5f, 0.7f);
}

/* one input (3, n/3), uniform in [lo, hi) */
static tu_case one_input(int n, uint32_t seed, float lo, float hi)
{
    tu_case c = {.n_in = 1, .ndim = {2}, .shape = {{3, n / 3}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill((size_t)n, seed, lo, hi);
    return c;
}

/* exp is smooth: central differences with eps 1e-3 have truncation error
 * ~eps^2 f''' / 6 < 1e-6; the f32 rounding of the loss (~1e-7 |L| / eps,
 * |L| ~ 10) dominates: measured worst 3.5e-5. atol/rtol 2e-3 still fails a
 * 1% error in the derivative (checked by mutation). */
static void test_exp_scaled_gradcheck(void **state)
{
    (void)state;
    tu_case c = one_input(24, 1u, -2.0f, 2.0f);
    tu_gradcheck("exp(0.5 x)", build_exp_half, NULL, &c, 1e-3, 2e-3, 2e-3);
    tu_gradcheck("exp(x)", build_exp_one, NULL, &c, 1e-3, 2e-3, 2e-3);
    tu_check_threads("exp(0.5 x)", build_exp_half, NULL, &c);
    free(c.data[0]);
}

/* clamp: inputs stay >= 0.05 away from the bounds (no kink inside the
 * difference step), where it is exactly linear; same tolerance as exp. */
static void test_clamp(void **state)
{
    (void)state;
    tu_case c = one_input(24, 1u, -2.0f, 2.0f);
    for (size_t i = 0; i < 24; i++) {
        float *x = &c.data[0][i];
        if (fabsf(*x + 0.5f) < 0.05f || fabsf(*x - 0.7f) < 0.05f) *x += 0.12f;
    }
    tu_gradcheck("clamp", build_clamp, NULL, &c, 1e-3, 2e-3, 2e-3);
    tu_check_threads("clamp", build_clamp, NULL, &c);
    /* forward values and the gradient mask, exactly */
    tu_result r = tu_run(build_clamp, NULL, &c, NULL);
    float *dout = tu_alloc_fill(24, 12345u, -1.0f, 1.0f);  /* tu_run's fixed dout */
    for (size_t i = 0; i < 24; i++) {
        float x = c.data[0][i], want = x < -0.5f ? -0.5f : (x > 0.7f ? 0.7f : x);
        assert_true(r.out[i] == want);
        assert_true(r.grad[0][i] == (x >= -0.5f && x <= 0.7f ? dout[i] : 0.0f));
    }
    /* boundary convention of torch.clamp: the gradient passes at x == bound */
    float xb[2] = {-0.5f, 0.7f}, gb[2] = {0}, one[2] = {1.0f, 1.0f};
    da_clamp_backward(gb, one, xb, -0.5f, 0.7f, 2);
    assert_true(gb[0] == 1.0f && gb[1] == 1.0f);
    free(dout);
    tu_result_free(&r);
    free(c.data[0]);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_scaled_gradcheck),
        cmocka_unit_test(test_clamp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
