/* Elementwise activations: SiLU, GELU (exact and tanh), log-sigmoid:
 * forward/backward kernel pairs over n values, built once per instruction
 * set (core/vec.h; the tape wrappers are in ops_act.c).
 * Every output element depends on one input element only, so the loops are
 * split over elements and the result is the same for any thread count.
 *
 * Each kernel runs over blocks of BLK values: a loop with a constant trip
 * count over core/mathf.h's branch-free lanes (expf_lane, erff_lane, ...),
 * which GCC vectorises at -O2 and which give da_expf's (...) bits, so the
 * results are those of the scalar formulas written in the comments, on every
 * machine and vector width (tests/test_ops_act.c compares them). Blocks are
 * copied into local buffers first: the loops then cannot alias, and the
 * last, partial block is padded there. */
#include <math.h>
#include <string.h>

#include "core/mathf.h"
#include "core/par.h"
#include "core/vec.h"
#include "dalign/core.h"

#define INV_SQRT2      0.70710678118654752440f  /* 1/sqrt(2) */
#define INV_SQRT_2PI   0.39894228040143267794f  /* 1/sqrt(2 pi) */
#define SQRT_2_OVER_PI 0.79788456080286535588f  /* sqrt(2/pi) */
#define GELU_CUBIC     0.044715f

#define BLK MATHF_BLK
_Static_assert(BLK % EXPF_N_STEP == 0, "the SiLU blocks' exps go EXPF_N_STEP at a time");

/* ---- blocks over threads ---------------------------------------------------- */

typedef void (*fwd_block_fn)(float *out, const float *x);                   /* BLK values */
typedef void (*bwd_block_fn)(float *dx, const float *dout, const float *x); /* BLK values */

/* out (n) = f(inp (n)), BLK at a time, blocks split over threads; the last
 * block zero padded when n is not a multiple of BLK */
static void forward_blocks(fwd_block_fn f, float *out, const float *inp, size_t n)
{
    size_t nb = (n + BLK - 1) / BLK;
    DA_PAR_FOR((double)n, for (size_t b = 0; b < nb; b++) {
        size_t off = b * BLK, m = n - off < BLK ? n - off : BLK;
        if (m == BLK) {
            f(out + off, inp + off);
        } else {
            float x[BLK] = {0}, y[BLK];
            memcpy(x, inp + off, m * sizeof(float));
            f(y, x);
            memcpy(out + off, y, m * sizeof(float));
        }
    });
}

/* dinp (n) += f(dout (n), inp (n)), as above */
static void backward_blocks(bwd_block_fn f, float *dinp, const float *dout, const float *inp, size_t n)
{
    size_t nb = (n + BLK - 1) / BLK;
    DA_PAR_FOR((double)n, for (size_t b = 0; b < nb; b++) {
        size_t off = b * BLK, m = n - off < BLK ? n - off : BLK;
        if (m == BLK) {
            f(dinp + off, dout + off, inp + off);
        } else {
            float dx[BLK] = {0}, dy[BLK] = {0}, x[BLK] = {0};
            memcpy(dx, dinp + off, m * sizeof(float));
            memcpy(dy, dout + off, m * sizeof(float));
            memcpy(x, inp + off, m * sizeof(float));
            f(dx, dy, x);
            memcpy(dinp + off, dx, m * sizeof(float));
        }
    });
}

/* ---- silu: out = x * sigmoid(x) ---------------------------------------- */

/* e (BLK) = exp(-|x (BLK)|), sigmoidf_lane's exps */
static void exp_neg_abs(float *e, const float *x)
{
    float t[BLK];
    for (int i = 0; i < BLK; i++) t[i] = -fabsf(x[i]);
    EXPF_N(e, t, BLK);
}

static void silu_fwd_block(float *out, const float *inp)
{
    float x[BLK], e[BLK];
    memcpy(x, inp, sizeof x);
    exp_neg_abs(e, x);
    for (int i = 0; i < BLK; i++) out[i] = x[i] * sigmoid_of_exp(x[i], e[i]);
}

/* dinp += dout * s (1 + x (1 - s)), s = sigmoid(x) */
static void silu_bwd_block(float *dinp, const float *dout, const float *inp)
{
    float x[BLK], dy[BLK], e[BLK];
    memcpy(x, inp, sizeof x);
    memcpy(dy, dout, sizeof dy);
    exp_neg_abs(e, x);
    for (int i = 0; i < BLK; i++) {
        float s = sigmoid_of_exp(x[i], e[i]);
        dinp[i] += dy[i] * (s * (1.0f + x[i] * (1.0f - s)));
    }
}

/* out (n) = inp (n) * sigmoid(inp) */
void VEC_FN(da_silu_forward)(float *out, const float *inp, size_t n)
{
    forward_blocks(silu_fwd_block, out, inp, n);
}

void VEC_FN(da_silu_backward)(float *dinp, const float *dout, const float *inp, size_t n)
{
    backward_blocks(silu_bwd_block, dinp, dout, inp, n);
}

/* ---- gelu (exact): out = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) ------- */

/* e (BLK) = erf(x / sqrt 2): core/mathf.h's erff_block, which computes
 * erf's piece polynomials only for the inputs that need them */
static void erf_scaled_block(float *e, const float *x)
{
    for (int i = 0; i < BLK; i++) e[i] = x[i] * INV_SQRT2;
    erff_block(e, e);
}

static void gelu_fwd_block(float *out, const float *inp)
{
    float x[BLK], e[BLK];
    memcpy(x, inp, sizeof x);
    erf_scaled_block(e, x);
    for (int i = 0; i < BLK; i++) out[i] = 0.5f * x[i] * (1.0f + e[i]);
}

/* dinp += dout * (Phi(x) + x phi(x)), phi the standard normal density */
static void gelu_bwd_block(float *dinp, const float *dout, const float *inp)
{
    float x[BLK], dy[BLK], e[BLK];
    memcpy(x, inp, sizeof x);
    memcpy(dy, dout, sizeof dy);
    erf_scaled_block(e, x);
    for (int i = 0; i < BLK; i++) {
        float cdf = 0.5f * (1.0f + e[i]);
        float pdf = INV_SQRT_2PI * expf_lane(-0.5f * x[i] * x[i]);
        dinp[i] += dy[i] * (cdf + x[i] * pdf);
    }
}

/* out (n) = 0.5 inp (1 + erf(inp / sqrt 2)) */
void VEC_FN(da_gelu_forward)(float *out, const float *inp, size_t n)
{
    forward_blocks(gelu_fwd_block, out, inp, n);
}

void VEC_FN(da_gelu_backward)(float *dinp, const float *dout, const float *inp, size_t n)
{
    backward_blocks(gelu_bwd_block, dinp, dout, inp, n);
}

/* ---- gelu (tanh approximation) ------------------------------------------ */

/* out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
static void gelu_tanh_fwd_block(float *out, const float *inp)
{
    float x[BLK];
    memcpy(x, inp, sizeof x);
    for (int i = 0; i < BLK; i++) {
        float u = SQRT_2_OVER_PI * (x[i] + GELU_CUBIC * x[i] * x[i] * x[i]);
        out[i] = 0.5f * x[i] * (1.0f + tanhf_lane(u));
    }
}

/* dinp += dout * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx), t = tanh(u) */
static void gelu_tanh_bwd_block(float *dinp, const float *dout, const float *inp)
{
    float x[BLK], dy[BLK];
    memcpy(x, inp, sizeof x);
    memcpy(dy, dout, sizeof dy);
    for (int i = 0; i < BLK; i++) {
        float u = SQRT_2_OVER_PI * (x[i] + GELU_CUBIC * x[i] * x[i] * x[i]);
        float t = tanhf_lane(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x[i] * x[i]);
        dinp[i] += dy[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t) * du);
    }
}

void VEC_FN(da_gelu_tanh_forward)(float *out, const float *inp, size_t n)
{
    forward_blocks(gelu_tanh_fwd_block, out, inp, n);
}

void VEC_FN(da_gelu_tanh_backward)(float *dinp, const float *dout, const float *inp, size_t n)
{
    backward_blocks(gelu_tanh_bwd_block, dinp, dout, inp, n);
}

/* ---- log-sigmoid ---------------------------------------------------------- */

/* out = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): exp never
 * overflows, and log1p keeps the tiny values at large positive x exact.
 * min(x, 0) is x < 0 ? x : 0, what the scalar fminf(x, 0.0f) gives on
 * x86-64 (at x = -0 and NaN too; aarch64's fminf gives -0 at -0, and
 * -0 - c = 0 - c for the c = log 2 there). */
static void log_sigmoid_fwd_block(float *out, const float *inp)
{
    float x[BLK];
    memcpy(x, inp, sizeof x);
    for (int i = 0; i < BLK; i++)
        out[i] = sel_f(x[i] < 0.0f, x[i], 0.0f) - log1pf_lane(expf_lane(-fabsf(x[i])));
}

/* dinp += dout * sigmoid(-x) */
static void log_sigmoid_bwd_block(float *dinp, const float *dout, const float *inp)
{
    float x[BLK], dy[BLK];
    memcpy(x, inp, sizeof x);
    memcpy(dy, dout, sizeof dy);
    for (int i = 0; i < BLK; i++) dinp[i] += dy[i] * sigmoidf_lane(-x[i]);
}

void VEC_FN(da_log_sigmoid_forward)(float *out, const float *inp, size_t n)
{
    forward_blocks(log_sigmoid_fwd_block, out, inp, n);
}

void VEC_FN(da_log_sigmoid_backward)(float *dinp, const float *dout, const float *inp, size_t n)
{
    backward_blocks(log_sigmoid_bwd_block, dinp, dout, inp, n);
}
