/* Group normalisation and layer normalisation: kernel pairs over float*, then
 * the tape wrappers. Layernorm over (N, C) is groupnorm with one group and
 * S = 1 (each row is one group, gamma/beta per channel), so both share the
 * same two kernels.
 *
 * Statistics: two passes in f32 (mean, then the mean of squared deviations),
 * the biased variance as in PyTorch; rstd = 1/sqrt(var + eps).
 * Threads: forward and dinp are parallel over (n, g) groups, which own
 * disjoint outputs; dgamma/dbeta are parallel over channels with n summed in
 * order, so every reduction has one fixed order. */
#include <assert.h>
#include <math.h>

#include "dalign/core.h"

/* out (N, C, S) = (inp - mean[n,g]) * rstd[n,g] * gamma (C) + beta (C),
 * G groups of C/G consecutive channels; mean/rstd (N, G) are written */
void da_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int N, int C, int S, int G, float eps)
{
    assert(G > 0 && C % G == 0);
    int Cg = C / G;
    size_t count = (size_t)Cg * S;  /* a group is one contiguous block of Cg*S values */
#pragma omp parallel for schedule(static)
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

/* dinp for one group: with xhat = (x - mean) * rstd and g = dout * gamma,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) */
static void groupnorm_dinp_group(float *dx, const float *dy, const float *x, const float *gamma,
                                 float m, float r, int Cg, int S, int c0)
{
    size_t count = (size_t)Cg * S;
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

/* dinp (N, C, S) += see above; dgamma (C) += sum_{n,s} dout * xhat;
 * dbeta (C) += sum_{n,s} dout. NULL gradients are skipped; gamma NULL = 1. */
void da_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean, const float *rstd,
                           int N, int C, int S, int G)
{
    assert(G > 0 && C % G == 0);
    int Cg = C / G;
    size_t count = (size_t)Cg * S;
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int ng = 0; ng < N * G; ng++) {
            size_t off = (size_t)ng * count;
            groupnorm_dinp_group(dinp + off, dout + off, inp + off, gamma, mean[ng], rstd[ng],
                                 Cg, S, (ng % G) * Cg);
        }
    }
    if (dgamma || dbeta) {
        /* one thread per channel; batch items and positions summed in order */
#pragma omp parallel for schedule(static)
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
            if (dgamma) dgamma[c] += sg;
            if (dbeta) dbeta[c] += sb;
        }
    }
}

/* out (N, C) = layernorm over C; mean/rstd (N) */
void da_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int N, int C, float eps)
{
    da_groupnorm_forward(out, mean, rstd, inp, gamma, beta, N, C, 1, 1, eps);
}

void da_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean, const float *rstd,
                           int N, int C)
{
    da_groupnorm_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, N, C, 1, 1);
}

/* nd->i = {N, C, S, G}; saved = mean (N, G), saved2 = rstd (N, G) */
static void norm_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *gamma = nd->in[1], *beta = nd->in[2];
    da_groupnorm_backward(x->grad, gamma ? gamma->grad : NULL, beta ? beta->grad : NULL,
                          nd->out->grad, x->data, gamma ? gamma->data : NULL, nd->saved, nd->saved2,
                          nd->i[0], nd->i[1], nd->i[2], nd->i[3]);
}

/* Shared wrapper: x viewed as (N, C, S); gamma/beta (C) or NULL (no affine). */
static da_tensor *norm_op(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta,
                          int N, int C, int S, int G, float eps)
{
    assert(G > 0 && C % G == 0);
    assert(!gamma || (int)gamma->size == C);
    assert(!beta || (int)beta->size == C);
    da_tensor *in[3] = {x, gamma, beta};
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, in, 3);
    size_t nstat = (size_t)N * G;
    float *mean = da_arena_alloc(&t->arena, (nstat ? nstat : 1) * sizeof(float));
    float *rstd = da_arena_alloc(&t->arena, (nstat ? nstat : 1) * sizeof(float));
    da_groupnorm_forward(out->data, mean, rstd, x->data, gamma ? gamma->data : NULL,
                         beta ? beta->data : NULL, N, C, S, G, eps);
    da_node nd = {.backward = norm_backward_node, .out = out, .in = {x, gamma, beta},
                  .i = {N, C, S, G}, .f = {eps}, .saved = mean, .saved2 = rstd};
    da_tape_push(t, &nd);
    return out;
}

/* x (N, C, ...) -> same shape; S = product of the trailing dims (1 for 2-D) */
da_tensor *da_groupnorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, int groups, float eps)
{
    assert(x->ndim >= 2);
    int N = x->shape[0], C = x->shape[1];
    int S = (int)da_shape_size(x->ndim - 2, x->shape + 2);
    return norm_op(t, x, gamma, beta, N, C, S, groups, eps);
}

/* x (..., C) -> same shape */
da_tensor *da_layernorm(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, float eps)
{
    assert(x->ndim >= 1);
    int C = x->shape[x->ndim - 1];
    int N = C ? (int)(x->size / (size_t)C) : 0;
    return norm_op(t, x, gamma, beta, N, C, 1, 1, eps);
}
