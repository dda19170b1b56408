/* Linear layers and batched matmul: forward/backward kernel pairs over
 * float*, then the tape wrappers. All heavy lifting goes through da_gemm. */
#include <assert.h>
#include <string.h>

#include "core/gemm_packer.h"
#include "core/par.h"
#include "core/span.h"
#include "dalign/core.h"

/* out (B, T, OC) = inp (B, T, C) @ weight (OC, C)^T + bias (OC). The B
 * images are separate GEMM items, so an image's rows never share a piece
 * with another image's (batch invariance, see gemm.c). */
void da_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                       int B, int T, int C, int OC)
{
    /* out = s + bias, each row's sums s then the bias: the portable GEMM
     * adds it to its register tiles (a pass over out after the GEMM took
     * 1.7% of sampling at batch 16). (OpenBLAS, which adds each of its K
     * blocks onto C, would round (bias + part1) + part2 with out preset to
     * the bias: it gets the pass.) */
    da_gemm_items_bias(B, (size_t)T * C, 0, (size_t)T * OC, 0, 1, T, OC, C, inp, C, weight, C, out, OC, bias, NULL);
}

#define DBIAS_BLOCK 64 /* channels per thread's piece of dbias */

/* dbias[o0 .. o0 + DBIAS_BLOCK) of block blk += the sums of dout (N, OC)'s
 * rows, each channel's rows in order */
static void dbias_block(float *dbias, const float *dout, int blk, int N, int OC)
{
    int o0 = blk * DBIAS_BLOCK, w = OC - o0 < DBIAS_BLOCK ? OC - o0 : DBIAS_BLOCK;
    float acc[DBIAS_BLOCK] = {0};
    for (int n = 0; n < N; n++) da_span_add(acc, acc, dout + (size_t)n * OC + o0, (size_t)w);
    da_span_add(dbias + o0, dbias + o0, acc, (size_t)w);
}

/* dinp (B, T, C) += dout @ weight; dweight (OC, C) += dout^T @ inp over all
 * B*T rows; dbias (OC) += sum over rows of dout */
void da_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, int B, int T, int C, int OC)
{
    int N = B * T;
    if (dinp)
        da_gemm_items(B, (size_t)T * OC, 0, (size_t)T * C, 0, 0, T, C, OC, 1.0f, dout, OC, weight, C,
                      1.0f, dinp, C);
    if (dweight) da_gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
    if (dbias) {
        /* each channel's rows summed in order, then added to dbias; the
         * channels of a block side by side, a row at a time (lanes of one
         * vector add), one thread per block: deterministic */
        int blocks = (OC + DBIAS_BLOCK - 1) / DBIAS_BLOCK;
        DA_PAR_FOR((double)N * OC,
            for (int blk = 0; blk < blocks; blk++) dbias_block(dbias, dout, blk, N, OC));
    }
}

static void linear_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    da_linear_backward(x->grad, w->grad, b ? b->grad : NULL, nd->out->grad, x->data, w->data,
                       nd->i[0], nd->i[1], nd->i[2], nd->i[3]);
}

da_tensor *da_linear(da_tape *t, da_tensor *x, da_tensor *w, da_tensor *b)
{
    assert(x->ndim >= 1 && w->ndim == 2);
    int C = x->shape[x->ndim - 1], OC = w->shape[0];
    assert(w->shape[1] == C && (!b || (int)b->size == OC));
    /* dim 0 is the batch: B items of T rows (T: the other leading dims);
     * a 1-D x is one row */
    int B = x->ndim >= 2 ? x->shape[0] : 1;
    int T = x->ndim >= 2 ? (int)da_shape_size(x->ndim - 2, x->shape + 1) : 1;
    int shape[DA_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OC;
    da_tensor *in[3] = {x, w, b};
    da_tensor *out = da_tensor_for_op(t, x->ndim, shape, in, 3);
    da_linear_forward(out->data, x->data, w->data, b ? b->data : NULL, B, T, C, OC);
    da_node nd = {.backward = linear_backward_node, .out = out, .in = {x, w, b}, .i = {B, T, C, OC}};
    da_tape_push(t, &nd);
    return out;
}

/* out (B, M, N) = a (B, M, K) @ b (B, K, N) */
void da_matmul_forward(float *out, const float *a, const float *b, int B, int M, int K, int N)
{
    da_gemm_items(B, (size_t)M * K, (size_t)K * N, (size_t)M * N, 0, 0, M, N, K, 1.0f, a, K, b, N,
                  0.0f, out, N);
}

/* da (B, M, K) += dout @ b^T; db (B, K, N) += a^T @ dout */
void da_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                        int B, int M, int K, int N)
{
    if (da)
        da_gemm_items(B, (size_t)M * N, (size_t)K * N, (size_t)M * K, 0, 1, M, K, N, 1.0f, dout, N, b, N,
                      1.0f, da, K);
    if (db)
        da_gemm_items(B, (size_t)M * K, (size_t)M * N, (size_t)K * N, 1, 0, K, N, M, 1.0f, a, K, dout, N,
                      1.0f, db, N);
}

static void matmul_backward_node(const da_node *nd)
{
    da_tensor *a = nd->in[0], *b = nd->in[1];
    da_matmul_backward(a->grad, b->grad, nd->out->grad, a->data, b->data,
                       nd->i[0], nd->i[1], nd->i[2], nd->i[3]);
}

da_tensor *da_matmul(da_tape *t, da_tensor *a, da_tensor *b)
{
    assert(a->ndim >= 2 && a->ndim == b->ndim);
    int nd_ = a->ndim;
    int M = a->shape[nd_ - 2], K = a->shape[nd_ - 1], N = b->shape[nd_ - 1];
    assert(b->shape[nd_ - 2] == K);
    for (int i = 0; i < nd_ - 2; i++) assert(a->shape[i] == b->shape[i]);
    int B = (int)da_shape_size(nd_ - 2, a->shape); /* batch: all leading dims */
    int shape[DA_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[nd_ - 1] = N;
    da_tensor *in[2] = {a, b};
    da_tensor *out = da_tensor_for_op(t, nd_, shape, in, 2);
    da_matmul_forward(out->data, a->data, b->data, B, M, K, N);
    da_node nd = {.backward = matmul_backward_node, .out = out, .in = {a, b}, .i = {B, M, K, N}};
    da_tape_push(t, &nd);
    return out;
}
