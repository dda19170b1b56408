/* Elementwise ops: add, sub, mul with numpy broadcasting of b to a's shape,
 * plus scale and add-scalar. Forward/backward kernel pairs over float*, then
 * the tape wrappers.
 *
 * Broadcasting: b's shape is right-aligned against a's; each b dim equals a's
 * or is 1 (missing leading dims count as 1). The output has a's shape. Before
 * running a kernel the shapes are folded into a "plan": dims of size 1 in a are
 * dropped, and neighbouring dims where b is either present or broadcast are
 * merged. A bias (C) over (N, T, C) becomes [broadcast N*T, present C]; a
 * timestep embedding (N, C, 1, 1) over (N, C, H, W) becomes
 * [present N*C, broadcast H*W]. Kernels then loop over rows of the last dim. */
#include <assert.h>
#include <string.h>

#include "core/par.h"
#include "core/span.h"
#include "dalign/core.h"

typedef enum { OP_ADD, OP_SUB, OP_MUL } elem_op;

typedef struct bcast_plan {
    int nd;                  /* folded dims, >= 1 */
    size_t n[DA_MAX_DIMS];   /* size of each folded dim */
    size_t astr[DA_MAX_DIMS]; /* stride in a (and out, dout): a is contiguous */
    size_t bstr[DA_MAX_DIMS]; /* stride in b; 0 where b is broadcast */
} bcast_plan;

/* Fold a's and b's shapes into a plan. Invalid shapes are programming errors. */
static void bcast_plan_make(bcast_plan *p, const da_tensor *a, const da_tensor *b)
{
    assert(b->ndim <= a->ndim);
    int off = a->ndim - b->ndim;
    int kind[DA_MAX_DIMS];   /* 1: b broadcast along this folded dim */
    p->nd = 0;
    for (int d = 0; d < a->ndim; d++) {
        int na = a->shape[d], nb = d < off ? 1 : b->shape[d - off];
        assert(nb == na || nb == 1);
        if (na == 1) continue;   /* nothing to iterate: same for a and b */
        int k = nb == 1;
        if (p->nd > 0 && kind[p->nd - 1] == k) {
            p->n[p->nd - 1] *= (size_t)na;
        } else {
            kind[p->nd] = k;
            p->n[p->nd++] = (size_t)na;
        }
    }
    if (p->nd == 0) {        /* every dim is 1: a single element */
        kind[0] = 0;
        p->n[p->nd++] = 1;
    }
    size_t sa = 1, sb = 1;
    for (int d = p->nd - 1; d >= 0; d--) {
        p->astr[d] = sa;
        p->bstr[d] = kind[d] ? 0 : sb;
        sa *= p->n[d];
        if (!kind[d]) sb *= p->n[d];
    }
    assert(sa == a->size && sb == b->size);
}

/* Offset in b of the first element of a's row r (rows = all folded dims but the last). */
static size_t plan_row_boff(const bcast_plan *p, size_t r)
{
    size_t boff = 0;
    for (int d = p->nd - 2; d >= 0; d--) {
        boff += (r % p->n[d]) * p->bstr[d];
        r /= p->n[d];
    }
    return boff;
}

/* row r of out = a op b (bcast_forward) */
static void bcast_forward_row(float *out, const float *a, const float *b, const bcast_plan *p, elem_op op, size_t r)
{
    size_t inner = p->n[p->nd - 1], bs = p->bstr[p->nd - 1];
    float *o = out + r * inner;
    const float *ar = a + r * inner, *br = b + plan_row_boff(p, r);
    switch (op) {
    case OP_ADD: for (size_t i = 0; i < inner; i++) o[i] = ar[i] + br[i * bs]; break;
    case OP_SUB: for (size_t i = 0; i < inner; i++) o[i] = ar[i] - br[i * bs]; break;
    case OP_MUL: for (size_t i = 0; i < inner; i++) o[i] = ar[i] * br[i * bs]; break;
    }
}

/* out (...) = a (...) op b (broadcast to a's shape) */
static void bcast_forward(float *out, const float *a, const float *b, const bcast_plan *p, elem_op op)
{
    size_t inner = p->n[p->nd - 1];
    size_t rows = p->astr[0] * p->n[0] / inner;
    /* rows are independent; b is only read */
    DA_PAR_FOR((double)rows * inner, for (size_t r = 0; r < rows; r++) bcast_forward_row(out, a, b, p, op, r));
}

/* da (...) += dout (...) * b (broadcast to a's shape) */
static void bcast_mul_backward_a(float *da, const float *dout, const float *b, const bcast_plan *p)
{
    size_t inner = p->n[p->nd - 1], bs = p->bstr[p->nd - 1];
    size_t rows = p->astr[0] * p->n[0] / inner;
#pragma omp parallel for schedule(static) DA_PAR_IF(rows * inner)
    for (size_t r = 0; r < rows; r++) {
        const float *br = b + plan_row_boff(p, r);
        for (size_t i = 0; i < inner; i++) da[r * inner + i] += dout[r * inner + i] * br[i * bs];
    }
}

/* The broadcast folded dims of a plan, outer to inner: the innermost is a
 * tight loop (last_n values last_s apart), the others are unravelled */
typedef struct reduce_dims {
    int bc[DA_MAX_DIMS], nbc;
    size_t last_n, last_s, outer;
} reduce_dims;

/* db[j] += sign * the sum of its contributions, in row-major order of a */
static void bcast_reduce_one(float *db, const float *dout, const float *a, float sign, const bcast_plan *p,
                             const reduce_dims *r, size_t j)
{
    /* offset in a of db[j]'s first contribution: unravel j over b's dims */
    size_t base = 0, rem = j;
    for (int d = p->nd - 1; d >= 0; d--) {
        if (p->bstr[d] == 0) continue;
        base += (rem % p->n[d]) * p->astr[d];
        rem /= p->n[d];
    }
    float acc = 0.0f;
    for (size_t o = 0; o < r->outer; o++) {
        size_t off = base, q = o;
        for (int k = r->nbc - 2; k >= 0; k--) {
            off += (q % p->n[r->bc[k]]) * p->astr[r->bc[k]];
            q /= p->n[r->bc[k]];
        }
        if (a) {
            for (size_t i = 0; i < r->last_n; i++) acc += dout[off + i * r->last_s] * a[off + i * r->last_s];
        } else {
            for (size_t i = 0; i < r->last_n; i++) acc += dout[off + i * r->last_s];
        }
    }
    db[j] += sign * acc;
}

/* db (b's shape) += sign * sum over the broadcast dims of dout (...) [* a (...)].
 * a may be NULL (add/sub). Each db element is owned by one thread and sums its
 * contributions in row-major order of a, so the result never depends on the
 * thread count. */
static void bcast_reduce_backward(float *db, const float *dout, const float *a, float sign,
                                  const bcast_plan *p, size_t nb)
{
    reduce_dims r = {.nbc = 0, .outer = 1};
    for (int d = 0; d < p->nd; d++)
        if (p->bstr[d] == 0) r.bc[r.nbc++] = d;
    r.last_n = r.nbc ? p->n[r.bc[r.nbc - 1]] : 1;
    r.last_s = r.nbc ? p->astr[r.bc[r.nbc - 1]] : 0;
    for (int k = 0; k < r.nbc - 1; k++) r.outer *= p->n[r.bc[k]];
    DA_PAR_FOR((double)p->astr[0] * p->n[0],
        for (size_t j = 0; j < nb; j++) bcast_reduce_one(db, dout, a, sign, p, &r, j));
}

/* Equal shapes: flat loops over n values. */

#define FLAT_BLOCK 4096 /* values per thread's piece; each piece runs a core/span.h loop */

/* out (n) = a (n) op b (n) */
static void flat_forward(float *out, const float *a, const float *b, size_t n, elem_op op)
{
    void (*f)(float *, const float *, const float *, size_t) =
        op == OP_ADD ? da_span_add : op == OP_SUB ? da_span_sub : da_span_mul;
    if (da_par_serial((double)n)) {
        f(out, a, b, n);   /* one IEEE operation per value: the pieces do not matter */
        return;
    }
    size_t blocks = (n + FLAT_BLOCK - 1) / FLAT_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < blocks; k++) {
        size_t i = k * FLAT_BLOCK, m = n - i < FLAT_BLOCK ? n - i : FLAT_BLOCK;
        f(out + i, a + i, b + i, m);
    }
}

/* dx (m) += s * dout (m) [* y (m)], y NULL or not, DA_SPAN values at a
 * time (core/span.h says why) */
static void flat_backward_piece(float *dx, const float *dout, const float *y, float s, size_t m)
{
    size_t i = 0;
    for (; i + DA_SPAN <= m; i += DA_SPAN) {
        float d[DA_SPAN], v[DA_SPAN];
        memcpy(d, dout + i, sizeof d);
        if (y) {
            memcpy(v, y + i, sizeof v);
            for (int k = 0; k < DA_SPAN; k++) dx[i + k] += s * (d[k] * v[k]);
        } else {
            for (int k = 0; k < DA_SPAN; k++) dx[i + k] += s * d[k];
        }
    }
    for (; i < m; i++) dx[i] += y ? s * (dout[i] * y[i]) : s * dout[i];
}

/* dx (n) += s * dout (n) [* y (n)]; y may be NULL */
static void flat_backward(float *dx, const float *dout, const float *y, float s, size_t n)
{
    if (da_par_serial((double)n)) {
        flat_backward_piece(dx, dout, y, s, n);   /* each value on its own: the pieces do not matter */
        return;
    }
    size_t blocks = (n + FLAT_BLOCK - 1) / FLAT_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < blocks; k++) {
        size_t i = k * FLAT_BLOCK, m = n - i < FLAT_BLOCK ? n - i : FLAT_BLOCK;
        flat_backward_piece(dx + i, dout + i, y ? y + i : NULL, s, m);
    }
}

static int same_shape(const da_tensor *a, const da_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

static void binary_backward_node(const da_node *nd)
{
    da_tensor *a = nd->in[0], *b = nd->in[1];
    const float *dout = nd->out->grad;
    elem_op op = (elem_op)nd->i[0];
    if (a->size == 0) return;
    if (same_shape(a, b)) {
        /* s * (dout * y) with s = +-1 is exact, so the flat path gives the same
         * bits as the broadcast path would */
        if (a->grad) flat_backward(a->grad, dout, op == OP_MUL ? b->data : NULL, 1.0f, a->size);
        if (b->grad) flat_backward(b->grad, dout, op == OP_MUL ? a->data : NULL,
                                   op == OP_SUB ? -1.0f : 1.0f, b->size);
        return;
    }
    bcast_plan p;
    bcast_plan_make(&p, a, b);
    if (a->grad) {
        if (op == OP_MUL) bcast_mul_backward_a(a->grad, dout, b->data, &p);
        else flat_backward(a->grad, dout, NULL, 1.0f, a->size);
    }
    if (b->grad)
        bcast_reduce_backward(b->grad, dout, op == OP_MUL ? a->data : NULL,
                              op == OP_SUB ? -1.0f : 1.0f, &p, b->size);
}

static da_tensor *binary(da_tape *t, da_tensor *a, da_tensor *b, elem_op op)
{
    da_tensor *in[2] = {a, b};
    da_tensor *out = da_tensor_for_op(t, a->ndim, a->shape, in, 2);
    if (same_shape(a, b)) {
        flat_forward(out->data, a->data, b->data, a->size, op);
    } else {
        bcast_plan p;
        bcast_plan_make(&p, a, b);   /* asserts the shapes broadcast */
        if (a->size) bcast_forward(out->data, a->data, b->data, &p, op);
    }
    da_node nd = {.backward = binary_backward_node, .out = out, .in = {a, b}, .i = {op}};
    da_tape_push(t, &nd);
    return out;
}

da_tensor *da_add(da_tape *t, da_tensor *a, da_tensor *b) { return binary(t, a, b, OP_ADD); }
da_tensor *da_sub(da_tape *t, da_tensor *a, da_tensor *b) { return binary(t, a, b, OP_SUB); }
da_tensor *da_mul(da_tape *t, da_tensor *a, da_tensor *b) { return binary(t, a, b, OP_MUL); }

/* out (n) = s * x (n) */
static void scale_forward(float *out, const float *x, float s, size_t n)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) out[i] = s * x[i];
}

/* out (n) = x (n) + s */
static void add_scalar_forward(float *out, const float *x, float s, size_t n)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(n)
    for (size_t i = 0; i < n; i++) out[i] = x[i] + s;
}

/* dx += f[0] * dout: f[0] is the scale (1 for add-scalar) */
static void affine_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) flat_backward(x->grad, nd->out->grad, NULL, nd->f[0], x->size);
}

/* record dx += ds * dout for out = s * x + c */
static void push_affine(da_tape *t, da_tensor *out, da_tensor *x, float ds)
{
    da_node nd = {.backward = affine_backward_node, .out = out, .in = {x}, .f = {ds}};
    da_tape_push(t, &nd);
}

da_tensor *da_scale(da_tape *t, da_tensor *x, float s)
{
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    scale_forward(out->data, x->data, s, x->size);
    push_affine(t, out, x, s);
    return out;
}

da_tensor *da_add_scalar(da_tape *t, da_tensor *x, float s)
{
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    add_scalar_forward(out->data, x->data, s, x->size);
    push_affine(t, out, x, 1.0f);
    return out;
}
