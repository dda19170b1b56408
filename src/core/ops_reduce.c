/* Sum and mean over trailing dimensions: x (d0, ..., d_{k-1}, rest...) ->
 * (d0, ..., d_{k-1}), keep = k leading dims kept (keep = 0: a scalar).
 *
 * Order of summation: each output is a plain left-to-right sum of its `inner`
 * inputs, accumulated in double and rounded once to float. This is
 * deterministic (one thread owns one output) and at least as accurate as
 * PyTorch's float cascade sum, so the two agree to about one float ulp. */
#include <assert.h>
#include <math.h>

#include "core/par.h"
#include "dalign/core.h"

/* out (outer) = sum_j inp (outer, inner)[o, j] / div  (div = 1: sum, inner: mean) */
static void reduce_forward(float *out, const float *inp, int outer, int inner, double div)
{
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)outer * inner)
    for (int o = 0; o < outer; o++) {
        const float *x = inp + (size_t)o * inner;
        double acc = 0.0;
        for (int j = 0; j < inner; j++) acc += (double)x[j];
        out[o] = (float)(acc / div);
    }
}

/* dinp (outer, inner)[o, j] += dout (outer)[o] / div */
static void reduce_backward(float *dinp, const float *dout, int outer, int inner, float div)
{
    size_t n = (size_t)outer * (size_t)inner;
    /* flat loop so that keep = 0 (one output) still spreads over threads */
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i / (size_t)inner] / div;
}

static void reduce_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) reduce_backward(x->grad, nd->out->grad, nd->i[0], nd->i[1], nd->f[0]);
}

static da_tensor *reduce_op(da_tape *t, da_tensor *x, int keep, int is_mean)
{
    assert(keep >= 0 && keep <= x->ndim);
    size_t outer = da_shape_size(keep, x->shape);
    size_t inner = da_shape_size(x->ndim - keep, x->shape + keep);
    assert(outer <= 0x7fffffff && inner <= 0x7fffffff);
    da_tensor *out = da_tensor_for_op(t, keep, x->shape, &x, 1);
    /* mean over zero elements is 0/0 = NaN, as in PyTorch */
    double div = is_mean ? (double)inner : 1.0;
    reduce_forward(out->data, x->data, (int)outer, (int)inner, div);
    da_node nd = {.backward = reduce_backward_node, .out = out, .in = {x},
                  .i = {(int)outer, (int)inner}, .f = {(float)div}};
    da_tape_push(t, &nd);
    return out;
}

da_tensor *da_sum(da_tape *t, da_tensor *x, int keep) { return reduce_op(t, x, keep, 0); }
da_tensor *da_mean(da_tape *t, da_tensor *x, int keep) { return reduce_op(t, x, keep, 1); }

size_t da_first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return (size_t)-1;
}
