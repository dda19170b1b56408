/* Elementwise activations on the tape: SiLU, GELU (exact and tanh),
 * log-sigmoid. The kernels (da_silu_forward, ...) are in vec_act.c, one
 * copy per instruction set; each node here calls the one in use. */
#include "dalign/core.h"

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
