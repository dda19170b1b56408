/* The autograd tape: ops push a node after running their forward kernel;
 * backward walks the nodes in reverse and calls each node's backward, which
 * accumulates into its inputs' gradient buffers. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/core.h"

void da_tape_init(da_tape *t, size_t arena_block_bytes)
{
    memset(t, 0, sizeof *t);
    da_arena_init(&t->arena, arena_block_bytes);
    t->grad_enabled = 1;
}

void da_tape_free(da_tape *t)
{
    da_arena_free(&t->arena);
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

void da_tape_reset(da_tape *t)
{
    da_arena_reset(&t->arena);
    t->n_nodes = 0;
}

void da_tape_set_grad(da_tape *t, int enabled) { t->grad_enabled = enabled; }

da_tape_scope da_tape_scope_begin(const da_tape *t)
{
    da_tape_scope s = {da_arena_get_mark(&t->arena), t->n_nodes};
    return s;
}

da_tensor *da_tape_scope_end(da_tape *t, da_tape_scope s, da_tensor *keep)
{
    /* a recorded node may read any intermediate in backward: keep them all */
    if (!keep || keep->grad || t->n_nodes != s.n_nodes) return keep;
    int ndim = keep->ndim, shape[DA_MAX_DIMS];
    memcpy(shape, keep->shape, sizeof shape);
    const float *src = keep->data;
    size_t n = keep->size;
    da_arena_release(&t->arena, s.mark);
    /* Data first, then the header: the new data starts at or before the old
     * in the same block (or lies in an earlier block), so memmove is safe,
     * and nothing is written until it has moved (da_arena_alloc only hands
     * out memory). The header then lands after the moved data. */
    float *data = da_arena_alloc(&t->arena, n * sizeof(float));
    if (data != src) memmove(data, src, n * sizeof(float));
    return da_leaf(t, data, NULL, ndim, shape);
}

size_t da_shape_size(int ndim, const int *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

static da_tensor *tensor_header(da_tape *t, int ndim, const int *shape)
{
    assert(ndim >= 0 && ndim <= DA_MAX_DIMS);
    da_tensor *x = da_arena_alloc(&t->arena, sizeof *x);
    memset(x, 0, sizeof *x);
    x->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        assert(shape[i] >= 0);
        x->shape[i] = shape[i];
    }
    x->size = da_shape_size(ndim, shape);
    return x;
}

da_tensor *da_leaf(da_tape *t, float *data, float *grad, int ndim, const int *shape)
{
    da_tensor *x = tensor_header(t, ndim, shape);
    x->data = data;
    x->grad = grad;
    return x;
}

da_tensor *da_tensor_new(da_tape *t, int ndim, const int *shape, int with_grad)
{
    da_tensor *x = tensor_header(t, ndim, shape);
    x->data = da_arena_alloc(&t->arena, x->size * sizeof(float));
    if (with_grad && t->grad_enabled)
        x->grad = da_arena_calloc(&t->arena, x->size * sizeof(float));
    return x;
}

da_tensor *da_tensor_for_op(da_tape *t, int ndim, const int *shape, da_tensor *const *in, int n_in)
{
    int needs_grad = 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->grad) needs_grad = 1;
    return da_tensor_new(t, ndim, shape, needs_grad);
}

void da_tape_push(da_tape *t, const da_node *node)
{
    /* an op whose output carries no gradient has nothing to propagate */
    if (!t->grad_enabled || !node->out->grad) return;
    if (t->n_nodes == t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
        da_node *nodes = realloc(t->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            da_log(DA_LOG_ERROR, "dalign: tape out of memory");
            abort();
        }
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    t->nodes[t->n_nodes++] = *node;
}

void da_tape_backward(da_tape *t, da_tensor *loss)
{
    assert(loss->size == 1);
    const float one = 1.0f;
    da_tape_backward_from(t, loss, &one);
}

void da_tape_backward_from(da_tape *t, da_tensor *out, const float *dout)
{
    assert(out->grad);
    for (size_t i = 0; i < out->size; i++) out->grad[i] += dout[i];
    for (int i = t->n_nodes - 1; i >= 0; i--)
        t->nodes[i].backward(&t->nodes[i]);
}
