/* Multi-head scaled dot-product attention (no projections): kernel pair over
 * float*, then the tape wrapper.
 *
 * Head h of a (B, T, D) tensor is the column block h*hd .. (h+1)*hd-1, the
 * layout of PyTorch's MultiheadAttention before out_proj. The heads are never
 * copied out: each per-(b, h) matmul is one da_gemm on a strided view
 * (leading dimension D). GEMMs run one after another outside any OpenMP
 * region; only the row-wise masked softmax is an OpenMP loop.
 *
 * Masking: a key is visible to query i when key_keep[b, j] != 0 (or
 * key_keep is NULL) and, if causal, j <= i. A query row with no visible key
 * gets an all-zero probability row, hence a zero output and zero gradients.
 * (PyTorch's softmax over an all -inf row gives NaN; zeros let padded
 * sequences flow through a model without poisoning the loss.) */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/par.h"
#include "dalign/core.h"

/* One row of probabilities in place: s (Tk) holds scaled scores; keys at
 * j >= n_vis or with keep[j] == 0 are masked. Max-subtracted for stability. */
static void masked_softmax_row(float *s, int Tk, const uint8_t *keep, int n_vis)
{
    float m = -INFINITY;
    int any = 0;
    for (int j = 0; j < n_vis; j++) {
        if (keep && !keep[j]) continue;
        m = (!any || s[j] > m) ? s[j] : m;
        any = 1;
    }
    if (!any) {
        memset(s, 0, (size_t)Tk * sizeof(float));
        return;
    }
    /* exp of every entry in one vectorised call (da_expf_n has da_expf's
     * bits); the hidden ones are zeroed after */
    for (int j = 0; j < Tk; j++) s[j] -= m;
    da_expf_n(s, s, (size_t)Tk);
    float sum = 0.0f;
    for (int j = 0; j < Tk; j++) {
        int visible = j < n_vis && (!keep || keep[j]);
        s[j] = visible ? s[j] : 0.0f;
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < Tk; j++) s[j] *= inv;
}

/* out (B, Tq, D), att (B, H, Tq, Tk) <- q (B, Tq, D), k (B, Tk, D), v (B, Tk, D),
 * key_keep (B, Tk) or NULL; per head: att = softmax(q_h k_h^T / sqrt(hd)), out_h = att v_h */
void da_attention_forward(float *out, float *att, const float *q, const float *k, const float *v,
                          const uint8_t *key_keep, int B, int Tq, int Tk, int D, int n_heads, int causal)
{
    assert(n_heads > 0 && D % n_heads == 0);
    assert(!causal || Tq == Tk);
    int H = n_heads, hd = D / n_heads;
    if (B == 0 || Tq == 0 || D == 0) return;
    if (Tk == 0) {  /* no key at all: every row is fully masked */
        memset(out, 0, (size_t)B * Tq * D * sizeof(float));
        return;
    }
    float scale = 1.0f / sqrtf((float)hd);
    size_t TT = (size_t)Tq * Tk;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            da_gemm(0, 1, Tq, Tk, hd, scale, q + (size_t)b * Tq * D + (size_t)h * hd, D,
                    k + (size_t)b * Tk * D + (size_t)h * hd, D, 0.0f,
                    att + ((size_t)b * H + h) * TT, Tk);
    int rows = B * H * Tq;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)rows * Tk)
    for (int r = 0; r < rows; r++) {
        int b = r / (H * Tq), i = r % Tq;
        masked_softmax_row(att + (size_t)r * Tk, Tk, key_keep ? key_keep + (size_t)b * Tk : NULL,
                           causal ? i + 1 : Tk);
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            da_gemm(0, 0, Tq, hd, Tk, 1.0f, att + ((size_t)b * H + h) * TT, Tk,
                    v + (size_t)b * Tk * D + (size_t)h * hd, D, 0.0f,
                    out + (size_t)b * Tq * D + (size_t)h * hd, D);
}

/* datt (Tq, Tk) -> dscores in place: ds_ij = a_ij * (datt_ij - sum_j' a_ij' datt_ij').
 * Masked entries have a_ij == 0 exactly, so they (and fully masked rows) get 0. */
static void softmax_rows_backward(float *ds, const float *a, int Tq, int Tk)
{
    for (int i = 0; i < Tq; i++) {
        float *d = ds + (size_t)i * Tk;
        const float *p = a + (size_t)i * Tk;
        float dot = 0.0f;
        for (int j = 0; j < Tk; j++) dot += p[j] * d[j];
        for (int j = 0; j < Tk; j++) d[j] = p[j] * (d[j] - dot);
    }
}

/* dq (B, Tq, D), dk, dv (B, Tk, D) += gradients of out given dout (B, Tq, D)
 * and the saved probabilities att (B, H, Tq, Tk). Per (b, h), in order:
 * dv_h += att^T dout_h; datt = dout_h v_h^T; dscores = softmax backward;
 * dq_h += dscores k_h / sqrt(hd); dk_h += dscores^T q_h / sqrt(hd).
 * Sums over query rows live inside one GEMM each, so their order is fixed. */
void da_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, float *ds,
                           int B, int Tq, int Tk, int D, int n_heads)
{
    assert(n_heads > 0 && D % n_heads == 0);
    assert(ds || (!dq && !dk));
    int H = n_heads, hd = D / n_heads;
    if (B == 0 || Tq == 0 || Tk == 0 || D == 0) return;
    float scale = 1.0f / sqrtf((float)hd);
    size_t TT = (size_t)Tq * Tk;
    if (!dq && !dk) ds = NULL; /* only dv wanted: skip the score gradients */
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            size_t oq = (size_t)b * Tq * D + (size_t)h * hd;
            size_t ok = (size_t)b * Tk * D + (size_t)h * hd;
            const float *a = att + ((size_t)b * H + h) * TT;
            if (dv) da_gemm(1, 0, Tk, hd, Tq, 1.0f, a, Tk, dout + oq, D, 1.0f, dv + ok, D);
            if (!ds) continue;
            da_gemm(0, 1, Tq, Tk, hd, 1.0f, dout + oq, D, v + ok, D, 0.0f, ds, Tk);
            softmax_rows_backward(ds, a, Tq, Tk);
            if (dq) da_gemm(0, 0, Tq, hd, Tk, scale, ds, Tk, k + ok, D, 1.0f, dq + oq, D);
            if (dk) da_gemm(1, 0, Tk, hd, Tq, scale, ds, Tk, q + oq, D, 1.0f, dk + ok, D);
        }
    }
}

/* nd->i = {B, Tq, Tk, D, n_heads}; saved = att (B, H, Tq, Tk); saved2 = the
 * (Tq, Tk) backward scratch, taken from the arena in forward so backward
 * never allocates */
static void attention_backward_node(const da_node *nd)
{
    da_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2];
    da_attention_backward(q->grad, k->grad, v->grad, nd->out->grad, nd->saved, q->data, k->data,
                          v->data, nd->saved2, nd->i[0], nd->i[1], nd->i[2], nd->i[3], nd->i[4]);
}

/* q (B, Tq, D), k and v (B, Tk, D) -> (B, Tq, D). The mask is only read here:
 * backward needs nothing but att (masked entries are exact zeros there), so
 * the node keeps no pointer to key_keep and the caller's mask need not
 * outlive this call. */
da_tensor *da_attention(da_tape *t, da_tensor *q, da_tensor *k, da_tensor *v, int n_heads,
                        int causal, const uint8_t *key_keep)
{
    assert(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    int B = q->shape[0], Tq = q->shape[1], D = q->shape[2], Tk = k->shape[1];
    assert(k->shape[0] == B && k->shape[2] == D);
    assert(v->shape[0] == B && v->shape[1] == Tk && v->shape[2] == D);
    assert(n_heads > 0 && D % n_heads == 0);
    assert(!causal || Tq == Tk);
    da_tensor *in[3] = {q, k, v};
    da_tensor *out = da_tensor_for_op(t, 3, q->shape, in, 3);
    size_t natt = (size_t)B * n_heads * Tq * Tk;
    float *att = da_arena_alloc(&t->arena, (natt ? natt : 1) * sizeof(float));
    da_attention_forward(out->data, att, q->data, k->data, v->data, key_keep, B, Tq, Tk, D,
                         n_heads, causal);
    if (out->grad) {
        size_t nds = (size_t)Tq * Tk;
        float *ds = da_arena_alloc(&t->arena, (nds ? nds : 1) * sizeof(float));
        da_node nd = {.backward = attention_backward_node, .out = out, .in = {q, k, v},
                      .i = {B, Tq, Tk, D, n_heads, causal}, .saved = att, .saved2 = ds};
        da_tape_push(t, &nd);
    }
    return out;
}
