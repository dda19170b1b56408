/* Elementwise activations: SiLU, GELU (exact and tanh), log-sigmoid.
 * Forward/backward kernel pairs over n values, then the tape wrappers.
 * Every output element depends on one input element only, so the loops are
 * split over elements and the result is the same for any thread count. */
#include <math.h>

#include "dalign/core.h"

#define INV_SQRT2      0.70710678118654752440f  /* 1/sqrt(2) */
#define INV_SQRT_2PI   0.39894228040143267794f  /* 1/sqrt(2 pi) */
#define SQRT_2_OVER_PI 0.79788456080286535588f  /* sqrt(2/pi) */
#define GELU_CUBIC     0.044715f

/* sigmoid without overflow: exp is only taken of -|x| */
static inline float sigmoidf_stable(float x)
{
    float e = da_expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

/* ---- silu: out = x * sigmoid(x) ---------------------------------------- */

/* out (n) = inp (n) * sigmoid(inp) */
void da_silu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * sigmoidf_stable(inp[i]);
}

/* dinp (n) += dout * s (1 + x (1 - s)), s = sigmoid(x) */
void da_silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], s = sigmoidf_stable(x);
        dinp[i] += dout[i] * (s * (1.0f + x * (1.0f - s)));
    }
}

/* ---- gelu (exact): out = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) ------- */

/* out (n) = 0.5 inp (1 + erf(inp / sqrt 2)) */
void da_gelu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + da_erff(x * INV_SQRT2));
    }
}

/* dinp (n) += dout * (Phi(x) + x phi(x)), phi the standard normal density */
void da_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + da_erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * da_expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

/* ---- gelu (tanh approximation) ------------------------------------------ */

/* out (n) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
void da_gelu_tanh_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
        out[i] = 0.5f * x * (1.0f + da_tanhf(u));
    }
}

/* dinp (n) += dout * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx), t = tanh(u) */
void da_gelu_tanh_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x);
        float t = da_tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_CUBIC * x * x);
        dinp[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
    }
}

/* ---- log-sigmoid ---------------------------------------------------------- */

/* out (n) = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): exp never
 * overflows, and log1p keeps the tiny values at large positive x exact. */
void da_log_sigmoid_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = fminf(x, 0.0f) - da_log1pf(da_expf(-fabsf(x)));
    }
}

/* dinp (n) += dout * sigmoid(-x) */
void da_log_sigmoid_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * sigmoidf_stable(-inp[i]);
}

/* ---- tape wrappers -------------------------------------------------------- */

typedef void (*unary_forward_fn)(float *out, const float *inp, size_t n);

/* The four wrappers differ only in their kernels: forward is passed in, and
 * each op has its own small node function that calls its backward kernel. */
static da_tensor *unary_op(da_tape *t, da_tensor *x, unary_forward_fn fwd, da_backward_fn bwd)
{
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    fwd(out->data, x->data, x->size);
    da_node nd = {.backward = bwd, .out = out, .in = {x}};
    da_tape_push(t, &nd);
    return out;
}

static void silu_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_silu_backward(x->grad, nd->out->grad, x->data, x->size);
}

static void gelu_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_gelu_backward(x->grad, nd->out->grad, x->data, x->size);
}

static void gelu_tanh_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_gelu_tanh_backward(x->grad, nd->out->grad, x->data, x->size);
}

static void log_sigmoid_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_log_sigmoid_backward(x->grad, nd->out->grad, x->data, x->size);
}

da_tensor *da_silu(da_tape *t, da_tensor *x)
{
    return unary_op(t, x, da_silu_forward, silu_backward_node);
}

da_tensor *da_gelu(da_tape *t, da_tensor *x)
{
    return unary_op(t, x, da_gelu_forward, gelu_backward_node);
}

da_tensor *da_gelu_tanh(da_tape *t, da_tensor *x)
{
    return unary_op(t, x, da_gelu_tanh_forward, gelu_tanh_backward_node);
}

da_tensor *da_log_sigmoid(da_tape *t, da_tensor *x)
{
    return unary_op(t, x, da_log_sigmoid_forward, log_sigmoid_backward_node);
}
