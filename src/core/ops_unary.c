/* Elementwise ops with a scalar parameter: exp(s * x) and clamp. Kernel
 * pairs over n values, then the tape wrappers. Each output element depends
 * on one input element only, so any thread count gives the same bits. */
#include <assert.h>
#include <string.h>

#include "core/mathf.h"
#include "core/par.h"
#include "core/ops_unary.h"

/* ------------------------------------------------------------------------ */
/* exp(s * x)                                                               */
/* ------------------------------------------------------------------------ */

#define BLK MATHF_BLK

/* out (m <= BLK) = exp(s * inp): core/mathf.h's expf_lane over a local
 * block, a loop GCC vectorises, with da_expf's bits */
static void exp_scaled_block(float *out, const float *inp, float s, size_t m)
{
    float x[BLK] = {0}, y[BLK];
    memcpy(x, inp, m * sizeof(float));
    for (int i = 0; i < BLK; i++) y[i] = expf_lane(s * x[i]);
    memcpy(out, y, m * sizeof(float));
}

/* out (n) = exp(s * inp (n)) */
void da_exp_scaled_forward(float *out, const float *inp, float s, size_t n)
{
    size_t nb = (n + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t b = 0; b < nb; b++) {
        size_t off = b * BLK;
        exp_scaled_block(out + off, inp + off, s, n - off < BLK ? n - off : BLK);
    }
}

/* dinp (n) += dout * s * out: the derivative of exp(s x) is s exp(s x) */
void da_exp_scaled_backward(float *dinp, const float *dout, const float *out, float s, size_t n)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (s * out[i]);
}

static void exp_scaled_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_exp_scaled_backward(x->grad, nd->out->grad, nd->out->data, nd->f[0], x->size);
}

da_tensor *da_exp_scaled(da_tape *t, da_tensor *x, float s)
{
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    da_exp_scaled_forward(out->data, x->data, s, x->size);
    da_node nd = {.backward = exp_scaled_backward_node, .out = out, .in = {x}, .f = {s}};
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* clamp                                                                    */
/* ------------------------------------------------------------------------ */

/* out (n) = min(max(inp (n), lo), hi) */
void da_clamp_forward(float *out, const float *inp, float lo, float hi, size_t n)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}

/* dinp (n) += dout where lo <= inp <= hi (as torch.clamp), else nothing */
void da_clamp_backward(float *dinp, const float *dout, const float *inp, float lo, float hi, size_t n)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++)
        if (inp[i] >= lo && inp[i] <= hi) dinp[i] += dout[i];
}

static void clamp_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_clamp_backward(x->grad, nd->out->grad, x->data, nd->f[0], nd->f[1], x->size);
}

/* lo > hi is a programming error, as a bad shape is for the other core ops */
da_tensor *da_clamp(da_tape *t, da_tensor *x, float lo, float hi)
{
    assert(lo <= hi);
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    da_clamp_forward(out->data, x->data, lo, hi, x->size);
    da_node nd = {.backward = clamp_backward_node, .out = out, .in = {x}, .f = {lo, hi}};
    da_tape_push(t, &nd);
    return out;
}
