/* softmax and log-softmax over the last dim: kernel pairs over float*, then
 * the tape wrappers. Rows are independent, so every loop is parallel over
 * rows and each row's reductions run in index order (deterministic).
 *
 * The exponentials are taken BLK at a time with core/mathf.h's expf_lane (a
 * vectorised loop with da_expf's bits); the sums over a row stay one
 * sequential float sum in index order, as before: any other order would
 * round differently. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/mathf.h"
#include "core/par.h"
#include "dalign/core.h"

#define BLK MATHF_BLK

/* Max of one row: subtracting it before exp keeps every exponent <= 0, so
 * nothing overflows and the largest term is exactly 1. */
static float row_max(const float *x, int C)
{
    float m = -INFINITY;
    for (int c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
    return m;
}

/* e (K) = exp(x (m <= K values) - mx), K a constant after inlining (the
 * loop vectorises); e past m is exp(0 - mx), unused */
DA_LANE void exp_shifted_k(float *e, const float *x, int m, float mx, int K)
{
    float t[BLK];
    memcpy(t, x, (size_t)m * sizeof(float));
    memset(t + m, 0, (size_t)(K - m) * sizeof(float));
    for (int i = 0; i < K; i++) e[i] = expf_lane(t[i] - mx);
}

/* e (m <= BLK) as above, over the smallest of 8, 16, 32, 64 lanes that
 * holds m: short rows (24 keys of cross-attention) waste little */
static void exp_shifted_block(float *e, const float *x, int m, float mx)
{
    if (m <= 8) exp_shifted_k(e, x, m, mx, 8);
    else if (m <= 16) exp_shifted_k(e, x, m, mx, 16);
    else if (m <= 32) exp_shifted_k(e, x, m, mx, 32);
    else exp_shifted_k(e, x, m, mx, BLK);
}

/* y (C) = exp(x (C) - mx), y may be NULL; returns sum_c exp(x_c - mx),
 * added in index order */
static float exp_shifted_sum(float *y, const float *x, int C, float mx)
{
    float sum = 0.0f, e[BLK];
    for (int c0 = 0; c0 < C; c0 += BLK) {
        int m = C - c0 < BLK ? C - c0 : BLK;
        exp_shifted_block(e, x + c0, m, mx);
        for (int i = 0; i < m; i++) sum += e[i];
        if (y) memcpy(y + c0, e, (size_t)m * sizeof(float));
    }
    return sum;
}

/* out (N, C) = softmax(inp (N, C)) over C */
void da_softmax_forward(float *out, const float *inp, int N, int C)
{
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float sum = exp_shifted_sum(y, x, C, row_max(x, C));
        float inv = 1.0f / sum;
        for (int c = 0; c < C; c++) y[c] *= inv;
    }
}

/* dinp (N, C) += out * (dout - sum_c dout * out): the softmax Jacobian
 * diag(y) - y y^T applied to dout, written with the output only */
void da_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C)
{
    if (!dinp) return;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *y = out + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float dot = 0.0f;
        for (int c = 0; c < C; c++) dot += dy[c] * y[c];
        for (int c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
    }
}

/* out (N, C) = (inp - max) - log(sum exp(inp - max)) over C */
void da_log_softmax_forward(float *out, const float *inp, int N, int C)
{
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float m = row_max(x, C);
        float sum = exp_shifted_sum(NULL, x, C, m);
        /* (x - m) - log(sum), not x - (m + log(sum)): rounding m + log(sum)
         * would cost an ulp of |m| even where the result is near 0 */
        float ls = da_logf(sum);
        for (int c = 0; c < C; c++) y[c] = (x[c] - m) - ls;
    }
}

/* dinp (N, C) += dout - exp(out) * sum_c dout, with out = log-probabilities */
void da_log_softmax_backward(float *dinp, const float *dout, const float *out, int N, int C)
{
    if (!dinp) return;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)N * C)
    for (int n = 0; n < N; n++) {
        const float *dy = dout + (size_t)n * C;
        const float *y = out + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float sum = 0.0f;
        for (int c = 0; c < C; c++) sum += dy[c];
        for (int c0 = 0; c0 < C; c0 += BLK) {
            int m = C - c0 < BLK ? C - c0 : BLK;
            float p[BLK];
            exp_shifted_block(p, y + c0, m, 0.0f);   /* exp(y - 0): y - 0 is y, -0 too */
            for (int i = 0; i < m; i++) dx[c0 + i] += dy[c0 + i] - p[i] * sum;
        }
    }
}

static void softmax_backward_node(const da_node *nd)
{
    da_softmax_backward(nd->in[0]->grad, nd->out->grad, nd->out->data, nd->i[0], nd->i[1]);
}

static void log_softmax_backward_node(const da_node *nd)
{
    da_log_softmax_backward(nd->in[0]->grad, nd->out->grad, nd->out->data, nd->i[0], nd->i[1]);
}

/* x (..., C) -> same shape; both backward kernels read the output, which
 * lives in the arena with the tape */
static da_tensor *softmax_op(da_tape *t, da_tensor *x, int log_space)
{
    assert(x->ndim >= 1);
    int C = x->shape[x->ndim - 1];
    int N = C ? (int)(x->size / (size_t)C) : 0;
    da_tensor *in[1] = {x};
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, in, 1);
    if (log_space) da_log_softmax_forward(out->data, x->data, N, C);
    else da_softmax_forward(out->data, x->data, N, C);
    da_node nd = {.backward = log_space ? log_softmax_backward_node : softmax_backward_node,
                  .out = out, .in = {x}, .i = {N, C}};
    da_tape_push(t, &nd);
    return out;
}

da_tensor *da_softmax(da_tape *t, da_tensor *x) { return softmax_op(t, x, 0); }
da_tensor *da_log_softmax(da_tape *t, da_tensor *x) { return softmax_op(t, x, 1); }
