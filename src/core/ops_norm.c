/* Group normalisation and layer normalisation on the tape, and the
 * layernorm kernels (a groupnorm with one group and S = 1). The groupnorm
 * kernels are in vec_norm.c, one copy per instruction set. */
#include <assert.h>
#include <string.h>

#include "dalign/core.h"

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

/* ---- groupnorm + silu, fused ------------------------------------------------ */

/* nd->in = {x, gamma, beta, normed}, nd->i = {N, C, S, G}; saved = mean,
 * saved2 = rstd (N, G). normed's gradient buffer is the scratch for d/d
 * normed: zeroed, then the SiLU backward adds into it, as it would into
 * the separate ops' intermediate tensor (0 + v, -0 included, is the same). */
static void groupnorm_silu_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *gamma = nd->in[1], *beta = nd->in[2], *y = nd->in[3];
    memset(y->grad, 0, y->size * sizeof(float));
    da_silu_backward(y->grad, nd->out->grad, y->data, y->size);
    da_groupnorm_backward(x->grad, gamma ? gamma->grad : NULL, beta ? beta->grad : NULL, y->grad, x->data,
                          gamma ? gamma->data : NULL, nd->saved, nd->saved2, nd->i[0], nd->i[1], nd->i[2],
                          nd->i[3]);
}

/* silu(groupnorm(x)) in one op, the same bits as da_silu(t, da_groupnorm(t,
 * x, ...)) forward and backward. The normalised values are kept only when
 * a gradient will be needed (the SiLU backward reads them). */
da_tensor *da_groupnorm_silu(da_tape *t, da_tensor *x, da_tensor *gamma, da_tensor *beta, int groups,
                             float eps)
{
    assert(x->ndim >= 2);
    int N = x->shape[0], C = x->shape[1], G = groups;
    int S = (int)da_shape_size(x->ndim - 2, x->shape + 2);
    assert(G > 0 && C % G == 0);
    assert(!gamma || (int)gamma->size == C);
    assert(!beta || (int)beta->size == C);
    da_tensor *in[3] = {x, gamma, beta};
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, in, 3);
    da_tensor *normed = out->grad ? da_tensor_for_op(t, x->ndim, x->shape, in, 3) : NULL;
    size_t nstat = (size_t)N * G;
    float *mean = da_arena_alloc(&t->arena, (nstat ? nstat : 1) * sizeof(float));
    float *rstd = da_arena_alloc(&t->arena, (nstat ? nstat : 1) * sizeof(float));
    da_groupnorm_silu_forward(out->data, normed ? normed->data : NULL, mean, rstd, x->data,
                              gamma ? gamma->data : NULL, beta ? beta->data : NULL, N, C, S, G, eps);
    da_node nd = {.backward = groupnorm_silu_backward_node, .out = out, .in = {x, gamma, beta, normed},
                  .i = {N, C, S, G}, .f = {eps}, .saved = mean, .saved2 = rstd};
    da_tape_push(t, &nd);
    return out;
}
