/* Shape ops: reshape (a view), permute, concat and narrow (copies).
 * Forward/backward kernel pairs over float*, then the tape wrappers.
 * Every output element maps to exactly one input element, so backward
 * kernels parallelise over outputs without two threads touching one address.
 * Dims may be given negative, counting from the end as in PyTorch. */
#include <assert.h>
#include <string.h>

#include "core/par.h"
#include "core/vec.h"
#include "dalign/core.h"

static int norm_dim(int dim, int ndim)
{
    if (dim < 0) dim += ndim;
    assert(dim >= 0 && dim < ndim);
    return dim;
}

/* product of shape[lo..hi) */
static size_t span(const int *shape, int lo, int hi)
{
    size_t n = 1;
    for (int d = lo; d < hi; d++) n *= (size_t)shape[d];
    return n;
}

/* ------------------------------------------------------------------------ */
/* reshape: a view. The new tensor shares x's data and grad buffers, so a     */
/* gradient written into the view lands in x->grad: no tape node is needed.   */
/* One entry of shape may be -1: it is inferred from x's size.               */
/* ------------------------------------------------------------------------ */

da_tensor *da_reshape(da_tape *t, da_tensor *x, int ndim, const int *shape)
{
    assert(ndim >= 0 && ndim <= DA_MAX_DIMS);
    int s[DA_MAX_DIMS];
    int infer = -1;
    size_t known = 1;
    for (int d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (s[d] == -1) {
            assert(infer < 0 && "reshape: at most one -1");
            infer = d;
        } else {
            assert(s[d] >= 0);
            known *= (size_t)s[d];
        }
    }
    if (infer >= 0) {
        assert(known > 0 && x->size % known == 0);
        s[infer] = (int)(x->size / known);
    }
    assert(da_shape_size(ndim, s) == x->size);
    return da_leaf(t, x->data, x->grad, ndim, s);
}

/* ------------------------------------------------------------------------ */
/* permute: out = x.permute(perm), stored contiguous                         */
/* ------------------------------------------------------------------------ */

typedef struct perm_plan {
    int nd;
    size_t n[DA_MAX_DIMS];     /* output shape */
    size_t istr[DA_MAX_DIMS];  /* stride in the input of each output dim */
} perm_plan;

/* shape: the input's (nd dims); perm[i] is the input dim of output dim i */
static void perm_plan_make(perm_plan *p, int nd, const int *shape, const int *perm)
{
    size_t str[DA_MAX_DIMS], s = 1;
    for (int d = nd - 1; d >= 0; d--) { str[d] = s; s *= (size_t)shape[d]; }
    int seen[DA_MAX_DIMS] = {0};
    p->nd = nd;
    for (int i = 0; i < nd; i++) {
        assert(perm[i] >= 0 && perm[i] < nd && !seen[perm[i]]);
        seen[perm[i]] = 1;
        p->n[i] = (size_t)shape[perm[i]];
        p->istr[i] = str[perm[i]];
    }
    if (nd == 0) { p->nd = 1; p->n[0] = 1; p->istr[0] = 1; }  /* a scalar */
}

/* offset in the input of the first element of output row r (rows: all dims but the last) */
static size_t perm_row_ioff(const perm_plan *p, size_t r)
{
    size_t off = 0;
    for (int d = p->nd - 2; d >= 0; d--) {
        off += (r % p->n[d]) * p->istr[d];
        r /= p->n[d];
    }
    return off;
}

/* ---- permutes that are a batch of matrix transposes ---------------------- */
/* The transformer's (B, C, H, W) <-> (B, HW, C) are: row by row, with a    */
/* strided read, they took 1.6% of sampling at batch 16.                    */

/* *nb, *R, *S when the permute is out[b][r][s] = in[b][s][r] for nb (S, R)
 * matrices in (output dims merged where they run on in the input); else 0 */
static int perm_as_transposes(const perm_plan *p, size_t *nb, size_t *R, size_t *S)
{
    size_t n[DA_MAX_DIMS], str[DA_MAX_DIMS];
    int k = 0;
    for (int d = 0; d < p->nd; d++) {
        if (p->n[d] == 1) continue;   /* a dim of 1 moves nothing */
        if (k > 0 && str[k - 1] == p->istr[d] * p->n[d]) {
            n[k - 1] *= p->n[d];
            str[k - 1] = p->istr[d];
        } else {
            n[k] = p->n[d];
            str[k] = p->istr[d];
            k++;
        }
    }
    if (k == 2) { /* one matrix: shift in a batch of 1 */
        n[2] = n[1], str[2] = str[1], n[1] = n[0], str[1] = str[0];
        n[0] = 1, str[0] = n[1] * n[2];
        k = 3;
    }
    if (k != 3 || str[1] != 1 || str[2] != n[1] || str[0] != n[1] * n[2]) return 0;
    *nb = n[0], *R = n[1], *S = n[2];
    return 1;
}

/* *d = v, or *d + v: one element of a transpose, or of its gradient */
static inline void put(float *d, float v, int add) { *d = add ? *d + v : v; }

/* rows [r_lo, r_hi) of dst (R, S) = (add ? dst + : ) the transpose of src
 * (S, R), in blocks of 8 x 8 (the plain loop's operations on every element:
 * a copy, or one add); r_lo a multiple of 8 */
#define DEFINE_TRANSPOSE(SFX, ATTR, BLOCK8)                                                        \
    ATTR static void transpose_into##SFX(float *restrict dst, const float *restrict src, size_t R, \
                                         size_t S, size_t r_lo, size_t r_hi, int add)             \
    {                                                                                            \
        size_t r0 = r_lo;                                                                        \
        for (; r0 + 8 <= r_hi; r0 += 8) {                                                         \
            size_t s0 = 0;                                                                       \
            for (; s0 + 8 <= S; s0 += 8) BLOCK8(dst + r0 * S + s0, S, src + s0 * R + r0, R, add); \
            for (size_t r = r0; r < r0 + 8; r++)                                                 \
                for (size_t s = s0; s < S; s++) put(dst + r * S + s, src[s * R + r], add);       \
        }                                                                                        \
        for (size_t r = r0; r < r_hi; r++)                                                       \
            for (size_t s = 0; s < S; s++) put(dst + r * S + s, src[s * R + r], add);            \
    }

/* dst (8, 8), rows ldd apart, (+)= the transpose of src (8, 8), rows lds apart */
static inline void block8_plain(float *restrict dst, size_t ldd, const float *restrict src, size_t lds, int add)
{
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) put(dst + i * ldd + j, src[j * lds + i], add);
}
DEFINE_TRANSPOSE(, , block8_plain)

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#include "core/transpose8.h"
#define TRANSPOSE_TWIN 1
__attribute__((target("avx2"), always_inline)) static inline void block8_avx(float *restrict dst, size_t ldd,
                                                                            const float *restrict src,
                                                                            size_t lds, int add)
{
    const float *rows[8] = {src, src + lds, src + 2 * lds, src + 3 * lds,
                            src + 4 * lds, src + 5 * lds, src + 6 * lds, src + 7 * lds};
    DA_LOAD8_ROWS(r, rows, 0);
    DA_TRANSPOSE8(r, o);
    if (add) { /* o##k = dst's row k + o##k, as put adds */
        const float *drows[8] = {dst, dst + ldd, dst + 2 * ldd, dst + 3 * ldd,
                                 dst + 4 * ldd, dst + 5 * ldd, dst + 6 * ldd, dst + 7 * ldd};
        DA_LOAD8_ROWS(d, drows, 0);
        o0 = d0 + o0, o1 = d1 + o1, o2 = d2 + o2, o3 = d3 + o3;
        o4 = d4 + o4, o5 = d5 + o5, o6 = d6 + o6, o7 = d7 + o7;
    }
    DA_STORE8_ROWS(o, dst, ldd);
}
DEFINE_TRANSPOSE(_avx, __attribute__((target("avx2"))), block8_avx)
#endif

#define TRANSPOSE_ROWS 64 /* rows of dst per piece: a batch of one still splits over the threads */

/* the nb transposes, in pieces of TRANSPOSE_ROWS rows of one matrix */
static void transposes(float *dst, const float *src, size_t nb, size_t R, size_t S, int add)
{
#ifdef TRANSPOSE_TWIN
    int avx = da_vec_avx2();
#endif
    size_t per = (R + TRANSPOSE_ROWS - 1) / TRANSPOSE_ROWS;
    DA_PAR_FOR((double)nb * R * S, for (size_t q = 0; q < nb * per; q++) {
        size_t b = q / per, r_lo = (q % per) * TRANSPOSE_ROWS;
        size_t r_hi = r_lo + TRANSPOSE_ROWS < R ? r_lo + TRANSPOSE_ROWS : R;
        float *d = dst + b * R * S;
        const float *sr = src + b * R * S;
#ifdef TRANSPOSE_TWIN
        if (avx) {
            transpose_into_avx(d, sr, R, S, r_lo, r_hi, add);
            continue;
        }
#endif
        transpose_into(d, sr, R, S, r_lo, r_hi, add);
    });
}

/* row r of permute_forward's out */
static void permute_row(float *out, const float *inp, const perm_plan *p, size_t r)
{
    size_t inner = p->n[p->nd - 1], is = p->istr[p->nd - 1];
    const float *ir = inp + perm_row_ioff(p, r);
    for (size_t i = 0; i < inner; i++) out[r * inner + i] = ir[i * is];
}

/* out (shape[perm[0]], ..., shape[perm[nd-1]]) = inp (shape[0], ..., shape[nd-1]) permuted */
static void permute_forward(float *out, const float *inp, const perm_plan *p, size_t n)
{
    size_t inner = p->n[p->nd - 1], nb, R, S;
    if (n == 0) return;
    if (perm_as_transposes(p, &nb, &R, &S)) {
        transposes(out, inp, nb, R, S, 0);
        return;
    }
    size_t rows = n / inner;
    DA_PAR_FOR((double)n, for (size_t r = 0; r < rows; r++) permute_row(out, inp, p, r));
}

/* row r of dout scattered back into dinp (permute_backward) */
static void permute_row_backward(float *dinp, const float *dout, const perm_plan *p, size_t r)
{
    size_t inner = p->n[p->nd - 1], is = p->istr[p->nd - 1];
    float *dr = dinp + perm_row_ioff(p, r);
    for (size_t i = 0; i < inner; i++) dr[i * is] += dout[r * inner + i];
}

/* dinp (input shape) += dout (output shape) scattered back; 1:1 map, so no races */
static void permute_backward(float *dinp, const float *dout, const perm_plan *p, size_t n)
{
    size_t inner = p->n[p->nd - 1], nb, R, S;
    if (n == 0) return;
    if (perm_as_transposes(p, &nb, &R, &S)) {
        /* dinp[b] (S, R) += the transpose of dout[b] (R, S) */
        transposes(dinp, dout, nb, S, R, 1);
        return;
    }
    size_t rows = n / inner;
    DA_PAR_FOR((double)n, for (size_t r = 0; r < rows; r++) permute_row_backward(dinp, dout, p, r));
}

static void permute_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (!x->grad) return;
    perm_plan p;
    perm_plan_make(&p, x->ndim, x->shape, nd->i);
    permute_backward(x->grad, nd->out->grad, &p, x->size);
}

da_tensor *da_permute(da_tape *t, da_tensor *x, const int *perm)
{
    da_node nd = {.backward = permute_backward_node, .in = {x}};
    int shape[DA_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        nd.i[i] = norm_dim(perm[i], x->ndim);
        shape[i] = x->shape[nd.i[i]];
    }
    perm_plan p;
    perm_plan_make(&p, x->ndim, x->shape, nd.i);   /* asserts perm is a permutation */
    da_tensor *out = da_tensor_for_op(t, x->ndim, shape, &x, 1);
    permute_forward(out->data, x->data, &p, x->size);
    nd.out = out;
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* concat and narrow. Seen as 2-D: (outer, dims from `dim` on), each row of   */
/* the output is a row of a followed by a row of b (concat), or a window of a */
/* row of x (narrow).                                                        */
/* ------------------------------------------------------------------------ */

/* out (outer, na + nb) = [a (outer, na), b (outer, nb)] */
static void concat_forward(float *out, const float *a, const float *b, size_t outer, size_t na, size_t nb)
{
    DA_PAR_FOR((double)outer * (na + nb), for (size_t o = 0; o < outer; o++) {
        memcpy(out + o * (na + nb), a + o * na, na * sizeof(float));
        memcpy(out + o * (na + nb) + na, b + o * nb, nb * sizeof(float));
    });
}

/* da (outer, na) += dout[:, :na]; db (outer, nb) += dout[:, na:] */
static void concat_backward(float *da, float *db, const float *dout, size_t outer, size_t na, size_t nb)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(outer * (na + nb))
    for (size_t o = 0; o < outer; o++) {
        const float *dr = dout + o * (na + nb);
        if (da) for (size_t i = 0; i < na; i++) da[o * na + i] += dr[i];
        if (db) for (size_t i = 0; i < nb; i++) db[o * nb + i] += dr[na + i];
    }
}

static void concat_backward_node(const da_node *nd)
{
    da_tensor *a = nd->in[0], *b = nd->in[1];
    int dim = nd->i[0];
    concat_backward(a->grad, b->grad, nd->out->grad, span(a->shape, 0, dim),
                    span(a->shape, dim, a->ndim), span(b->shape, dim, b->ndim));
}

/* a and b have equal shapes except along dim */
da_tensor *da_concat(da_tape *t, da_tensor *a, da_tensor *b, int dim)
{
    assert(a->ndim == b->ndim);
    dim = norm_dim(dim, a->ndim);
    int shape[DA_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        assert(d == dim || a->shape[d] == b->shape[d]);
        shape[d] = a->shape[d];
    }
    shape[dim] = a->shape[dim] + b->shape[dim];
    da_tensor *in[2] = {a, b};
    da_tensor *out = da_tensor_for_op(t, a->ndim, shape, in, 2);
    concat_forward(out->data, a->data, b->data, span(a->shape, 0, dim),
                   span(a->shape, dim, a->ndim), span(b->shape, dim, b->ndim));
    da_node nd = {.backward = concat_backward_node, .out = out, .in = {a, b}, .i = {dim}};
    da_tape_push(t, &nd);
    return out;
}

/* out (outer, len) = x (outer, n)[:, start:start+len] */
static void narrow_forward(float *out, const float *x, size_t outer, size_t n, size_t start, size_t len)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(outer * len)
    for (size_t o = 0; o < outer; o++)
        memcpy(out + o * len, x + o * n + start, len * sizeof(float));
}

/* dx (outer, n)[:, start:start+len] += dout (outer, len) */
static void narrow_backward(float *dx, const float *dout, size_t outer, size_t n, size_t start, size_t len)
{
#pragma omp parallel for schedule(static) DA_PAR_IF(outer * len)
    for (size_t o = 0; o < outer; o++)
        for (size_t i = 0; i < len; i++) dx[o * n + start + i] += dout[o * len + i];
}

/* i = {dim, start, len} */
static void narrow_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (!x->grad) return;
    int dim = nd->i[0];
    size_t inner = span(x->shape, dim + 1, x->ndim);
    narrow_backward(x->grad, nd->out->grad, span(x->shape, 0, dim), (size_t)x->shape[dim] * inner,
                    (size_t)nd->i[1] * inner, (size_t)nd->i[2] * inner);
}

da_tensor *da_narrow(da_tape *t, da_tensor *x, int dim, int start, int len)
{
    dim = norm_dim(dim, x->ndim);
    assert(start >= 0 && len >= 0 && start + len <= x->shape[dim]);
    int shape[DA_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    da_tensor *out = da_tensor_for_op(t, x->ndim, shape, &x, 1);
    size_t inner = span(x->shape, dim + 1, x->ndim);
    narrow_forward(out->data, x->data, span(x->shape, 0, dim), (size_t)x->shape[dim] * inner,
                   (size_t)start * inner, (size_t)len * inner);
    da_node nd = {.backward = narrow_backward_node, .out = out, .in = {x}, .i = {dim, start, len}};
    da_tape_push(t, &nd);
    return out;
}
