/* PromptLoop's GRPO loss (src/train/grpo_loss.c) against hand computations:
 * group advantages (known values; a group of equal rewards gives exactly 0
 * and no NaN), the k3 KL estimate's known values, the clipped surrogate in
 * both clip branches and inside the trust region, the gradient against
 * central differences of a double-precision re-implementation, and the
 * first-epoch identity: with the old log-probs from the same logits every
 * ratio is exactly 1 and nothing is clipped. */
#include "test_util.h"

#include <math.h>
#include <string.h>

#include "train/grpo.h"

#define NV 5

static const uint8_t ALLOWED[NV] = {0, 1, 1, 1, 1};   /* id 0 never written */

static void test_advantages(void **state)
{
    (void)state;
    const float r[6] = {1, 2, 3, 0.5f, 0.5f, 0.5f};
    float adv[6];
    int zero = grpo_advantages(adv, r, 2, 3, 1e-4f);
    assert_int_equal(zero, 1);
    double sd = sqrt(2.0 / 3.0);   /* population std of 1, 2, 3 */
    assert_float_equal(adv[0], -1.0 / (sd + 1e-4), 1e-6);
    assert_float_equal(adv[1], 0.0, 0.0);
    assert_float_equal(adv[2], 1.0 / (sd + 1e-4), 1e-6);
    for (int j = 3; j < 6; j++) assert_true(adv[j] == 0.0f);   /* exactly, no NaN */
}

/* the loss in double, straight from the definitions (grpo.h) */
static double loss_double(const double *x, const grpo_rows *a)
{
    double total = 0.0;
    for (int r = 0; r < a->R; r++) {
        const double *xr = x + (size_t)r * NV;
        double z = 0.0;
        for (int v = 0; v < NV; v++)
            if (ALLOWED[v]) z += exp(xr[v]);
        double lp = xr[a->target[r]] - log(z);
        double ratio = exp(lp - a->lp_old[r]), A = a->adv[r];
        double c = fmin(fmax(ratio, 1.0 - a->clip_eps), 1.0 + a->clip_eps);
        double d = a->lp_ref[r] - lp;
        total += a->weight[r] * (-fmin(ratio * A, c * A) + a->kl_coef * (exp(d) - d - 1.0));
    }
    return total;
}

/* Rows: 0 inside the trust region (A > 0), 1 clipped above (ratio > 1.2, A
 * > 0: no gradient from the surrogate), 2 clipped below (ratio < 0.8, A <
 * 0), 3 a slot after EOS (weight 0). */
static void test_loss_by_hand(void **state)
{
    (void)state;
    float logits[4 * NV] = {
        0.3f, 1.0f, -0.5f, 0.2f, 0.7f,
        -1.0f, 0.1f, 2.0f, -0.3f, 0.4f,
        0.9f, -0.2f, 0.5f, 1.5f, -1.1f,
        0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    };
    const int target[4] = {1, 2, 4, 3};
    float lp_now[4];
    grpo_token_logprobs(lp_now, logits, target, ALLOWED, 4, NV);
    /* old log-probs that put each row's ratio where the test wants it */
    const float lp_old[4] = {lp_now[0] - 0.1f, lp_now[1] - 0.5f, lp_now[2] + 0.6f, lp_now[3]};
    const float lp_ref[4] = {lp_now[0] + 0.3f, lp_now[1] - 0.2f, lp_now[2], 0.0f};
    const float adv[4] = {1.5f, 0.7f, -1.2f, 3.0f};
    const float weight[4] = {0.5f, 0.25f, 0.25f, 0.0f};
    float lp[4], dx[4 * NV];
    grpo_rows a = {.R = 4, .V = NV, .target = target, .weight = weight, .lp_old = lp_old, .lp_ref = lp_ref,
                   .adv = adv, .allowed = ALLOWED, .clip_eps = 0.2f, .kl_coef = 0.04f, .lp = lp};
    float L = grpo_loss(&a, logits, dx);
    /* by hand, per row: -min(ratio A, clip A) + 0.04 (e^d - d - 1) */
    double r0 = exp(0.1), r1 = exp(0.5), r2 = exp(-0.6);
    double k0 = exp(0.3) - 0.3 - 1.0, k1 = exp(-0.2) + 0.2 - 1.0;
    double want = 0.5 * (-(r0 * 1.5) + 0.04 * k0) + 0.25 * (-(1.2 * 0.7) + 0.04 * k1) +
                  0.25 * (-(0.8 * -1.2) + 0.0);
    assert_float_equal(L, want, 2e-6);
    assert_int_equal(a.st.n, 3);
    assert_int_equal(a.st.clipped, 2);   /* rows 1 and 2 */
    assert_float_equal(a.st.ratio_sum, r0 + r1 + r2, 1e-5);
    assert_float_equal(a.st.kl_sum, k0 + k1, 1e-6);
    for (int r = 0; r < 4; r++) assert_true(lp[r] == lp_now[r]);
    for (int v = 0; v < NV; v++) assert_true(dx[3 * NV + v] == 0.0f);   /* weight 0: no gradient */
    for (int r = 0; r < 3; r++) assert_true(dx[r * NV + 0] == 0.0f);    /* a never-written id */

    /* the gradient against central differences of the double loss */
    double x[4 * NV];
    for (int i = 0; i < 4 * NV; i++) x[i] = logits[i];
    for (int i = 0; i < 4 * NV; i++) {
        double h = 1e-6, keep = x[i];
        x[i] = keep + h;
        double up = loss_double(x, &a);
        x[i] = keep - h;
        double down = loss_double(x, &a);
        x[i] = keep;
        double fd = (up - down) / (2 * h);
        /* float forward against double differences: 1e-5 absolute covers
         * the float rounding of p and ratio (gradients here are O(1)) */
        if (fabs(fd - dx[i]) > 1e-5) fail_msg("d L / d logit %d: analytic %.8f, differences %.8f", i, dx[i], fd);
    }
    /* row 1's surrogate is clipped: only the KL moves it */
    double g_kl_only = 0.25 * 0.04 * (1.0 - exp(-0.2));   /* d/dlp of k3 at d = -0.2, times weight */
    double p_target = exp(lp_now[1]);
    assert_float_equal(dx[1 * NV + 2], g_kl_only * (1.0 - p_target), 1e-6);
}

/* k3 = e^d - d - 1: 0 at d = 0, e - 2 at d = 1, 1/e at d = -1 */
static void test_kl_known(void **state)
{
    (void)state;
    float logits[NV] = {0, 0.5f, -0.5f, 1.0f, 0.25f};
    const int target[1] = {3};
    float lp0;
    grpo_token_logprobs(&lp0, logits, target, ALLOWED, 1, NV);
    const float adv[1] = {0.0f}, weight[1] = {1.0f};
    const double d[3] = {0.0, 1.0, -1.0}, want[3] = {0.0, M_E - 2.0, 1.0 / M_E};
    for (int k = 0; k < 3; k++) {
        float lp_ref = lp0 + (float)d[k], lp;
        grpo_rows a = {.R = 1, .V = NV, .target = target, .weight = weight, .lp_old = &lp0, .lp_ref = &lp_ref,
                       .adv = adv, .allowed = ALLOWED, .clip_eps = 0.2f, .kl_coef = 1.0f, .lp = &lp};
        float L = grpo_loss(&a, logits, NULL);   /* A = 0: the loss is the KL alone */
        assert_float_equal(L, want[k], 1e-6);
        assert_float_equal(a.st.kl_sum, want[k], 1e-6);
    }
}

/* the first inner step: old log-probs from the same logits -> every ratio
 * exactly 1, nothing clipped, L = -sum w A, and the tape node adds its
 * gradient into the logits' */
static void test_first_epoch_and_node(void **state)
{
    (void)state;
    float logits[3 * NV];
    tu_fill(logits, 3 * NV, 7, -2.0f, 2.0f);
    const int target[3] = {1, 4, 2};
    float lp_old[3], lp[3], dx[3 * NV];
    grpo_token_logprobs(lp_old, logits, target, ALLOWED, 3, NV);
    const float adv[3] = {0.8f, -0.4f, 1.1f}, weight[3] = {0.5f, 0.25f, 0.25f};
    grpo_rows a = {.R = 3, .V = NV, .target = target, .weight = weight, .lp_old = lp_old, .lp_ref = NULL,
                   .adv = adv, .allowed = ALLOWED, .clip_eps = 0.2f, .kl_coef = 0.0f, .lp = lp};
    float L = grpo_loss(&a, logits, dx);
    assert_true(a.st.ratio_sum == 3.0);
    assert_int_equal(a.st.clipped, 0);
    assert_float_equal(L, -(0.5 * 0.8 - 0.25 * 0.4 + 0.25 * 1.1), 1e-6);

    da_tape t;
    da_tape_init(&t, 1 << 16);
    int shape[2] = {3, NV};
    float grad[3 * NV];
    for (int i = 0; i < 3 * NV; i++) grad[i] = 1.0f;   /* backward accumulates */
    da_tensor *x = da_leaf(&t, logits, grad, 2, shape);
    da_tensor *loss = grpo_loss_node(&t, x, &a);
    assert_true(loss->data[0] == L);
    da_tape_backward(&t, loss);
    for (int i = 0; i < 3 * NV; i++) assert_true(grad[i] == 1.0f + dx[i]);
    da_tape_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advantages),
        cmocka_unit_test(test_loss_by_hand),
        cmocka_unit_test(test_kl_known),
        cmocka_unit_test(test_first_epoch_and_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
