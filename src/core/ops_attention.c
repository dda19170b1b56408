/* Multi-head scaled dot-product attention (no projections): kernel pair over
 * float*, then the tape wrapper.
 *
 * Head h of a (B, T, D) tensor is the column block h*hd .. (h+1)*hd-1, the
 * layout of PyTorch's MultiheadAttention before out_proj. The heads are never
 * copied out: each per-(b, h) matmul is one da_gemm on a strided view
 * (leading dimension D). With enough (b, h) pairs for the threads, the
 * forward runs each pair's scores, softmax and output together and the
 * backward each pair's gradients, the pairs split over threads (split_pairs);
 * else the GEMMs run one after another, each split over threads itself, and
 * the forward's softmax is a parallel loop over rows.
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
#include "core/span.h"
#include "core/vec.h"
#include "dalign/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Probabilities in place, a chunk of rows at a time: row r of att (Tk)
 * holds scaled scores of image r / (H Tq), query r % Tq; keys at j >= n_vis
 * (causal: the query's own position + 1) or with keep[j] == 0 are masked.
 * Max-subtracted for stability. Each row's max and sum run over j in order,
 * so a row's bits are its own; two things make it fast:
 * - the exps of a whole chunk are one vectorised call (da_expf_n: each
 *   value on its own, da_expf's bits). With one call a row, a row of 16
 *   keys (the cross-attention's context) paid for a 64-value block;
 * - up to ROW_GROUP rows that see the same keys run their max and sum
 *   side by side, one j at a time: each row's sum is still a chain of adds
 *   in order, but the chains overlap instead of waiting on each other
 *   (causal rows each see other keys, so they go one at a time).
 * Before both, the softmax was a tenth of a UNet forward. */
#define SOFTMAX_CHUNK 64 /* rows per exp call */
#define ROW_GROUP 8      /* rows whose chains run side by side */

typedef struct softmax_rows {
    int Tk, Tq, H, causal;
    const uint8_t *key_keep; /* (B, Tk) or NULL */
} softmax_rows;

/* the keys row r sees: j < *n_vis with keep[j] != 0 (keep NULL: all) */
static const uint8_t *row_keys(const softmax_rows *sr, int r, int *n_vis)
{
    *n_vis = sr->causal ? r % sr->Tq + 1 : sr->Tk;
    return sr->key_keep ? sr->key_keep + (size_t)(r / (sr->H * sr->Tq)) * sr->Tk : NULL;
}

/* rows [r, r + return) see the same keys, at most ROW_GROUP and up to r1 */
static int same_keys(const softmax_rows *sr, int r, int r1)
{
    int n_vis, n;
    const uint8_t *keep = row_keys(sr, r, &n_vis);
    for (n = 1; n < ROW_GROUP && r + n < r1; n++) {
        int nv;
        if (row_keys(sr, r + n, &nv) != keep || nv != n_vis) break;
    }
    return n;
}

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
/* With AVX2 (da_vec_avx2; this file is built for the baseline), the
 * row group's max and sum read 8 keys of each of the 8 rows and transpose
 * them in registers (core/transpose8.h): a vector then holds key j of every
 * row, and each lane is still its row's chain in key order. The lanes loop
 * builds that vector from 8 scalar loads and 7 inserts per key. */
#include "core/transpose8.h"
#define ROWS_BY_8 1
_Static_assert(ROW_GROUP == 8, "the row group is transposed 8 x 8");

/* m (8): each row's running max over keys [j, n) with keep (or NULL), 8
 * keys at a time: vm = v > vm ? v : vm per lane, as the lanes loop (a
 * masked key is skipped, a NaN key never taken); returns the first key
 * not done */
__attribute__((target("avx2"))) static int rows_max_by_8(float *m, const float *const *row, int j, int n,
                                                          const uint8_t *keep)
{
    da_v8f vm;
    memcpy(&vm, m, sizeof vm);
#define MAX_STEP(v, k)                                                                             \
    if (!keep || keep[j + (k)]) {                                                                  \
        da_v8i gt = (v) > vm;                                                                      \
        vm = (da_v8f)(((da_v8i)(v) & gt) | ((da_v8i)vm & ~gt));                                    \
    }
    for (; j + 8 <= n; j += 8) {
        DA_LOAD8_ROWS(r, row, j);
        DA_TRANSPOSE8(r, v);
        MAX_STEP(v0, 0) MAX_STEP(v1, 1) MAX_STEP(v2, 2) MAX_STEP(v3, 3)
        MAX_STEP(v4, 4) MAX_STEP(v5, 5) MAX_STEP(v6, 6) MAX_STEP(v7, 7)
    }
#undef MAX_STEP
    memcpy(m, &vm, sizeof vm);
    return j;
}

/* sum (8) += each row's keys [0, 8 floor(n / 8)) in order; returns the first key not done */
__attribute__((target("avx2"))) static int rows_sum_by_8(float *sum, const float *const *row, int n)
{
    da_v8f vs;
    memcpy(&vs, sum, sizeof vs);
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        DA_LOAD8_ROWS(r, row, j);
        DA_TRANSPOSE8(r, v);
        DA_ADD_COLUMNS8(vs, v);
    }
    memcpy(sum, &vs, sizeof vs);
    return j;
}

#endif

/* The ROW_GROUP row pointers of a group of nr rows Tk apart. Loops over
 * them are unrolled (DA_UNROLL_LANES, span.h), so that each row's running
 * max or sum lives in a register; a group of fewer rows repeats its last
 * row in the spare lanes, which only read, and whose results are dropped. */
static void group_rows(const float *row[ROW_GROUP], const float *s, int nr, int Tk)
{
    for (int q = 0; q < ROW_GROUP; q++) row[q] = s + (size_t)(q < nr ? q : nr - 1) * Tk;
}

/* s: nr rows Tk apart that see keys (keep, n_vis); each gets its max over
 * the visible keys subtracted, or, with no visible key, zeros (*any = 0).
 * A row's max starts at its first visible key and takes each later one
 * that is greater, in order (so a NaN first key stays the max, as before) */
static void rows_sub_max(float *s, int nr, int Tk, const uint8_t *keep, int n_vis, int *any)
{
    int j0 = 0;
    while (j0 < n_vis && keep && !keep[j0]) j0++;
    *any = j0 < n_vis;
    if (!*any) {
        memset(s, 0, (size_t)nr * Tk * sizeof(float)); /* exp gives 1s, zeroed after */
        return;
    }
    const float *row[ROW_GROUP];
    group_rows(row, s, nr, Tk);
    float m[ROW_GROUP];
    DA_UNROLL_LANES for (int q = 0; q < ROW_GROUP; q++) m[q] = row[q][j0];
    int j1 = j0 + 1;
#ifdef ROWS_BY_8
    if (da_vec_avx2()) j1 = rows_max_by_8(m, row, j1, n_vis, keep);
#endif
    for (int j = j1; j < n_vis; j++) {
        if (keep && !keep[j]) continue;
        DA_UNROLL_LANES for (int q = 0; q < ROW_GROUP; q++) {
            float v = row[q][j];
            m[q] = v > m[q] ? v : m[q];
        }
    }
    for (int q = 0; q < nr; q++) da_span_sub_scalar(s + (size_t)q * Tk, s + (size_t)q * Tk, m[q], (size_t)Tk);
}

/* s: nr rows of exps as above: masked keys zeroed, each row divided by its
 * sum (over all Tk keys, masked ones as zeros, in order) */
static void rows_normalise(float *s, int nr, int Tk, const uint8_t *keep, int n_vis, int any)
{
    if (!any) {
        memset(s, 0, (size_t)nr * Tk * sizeof(float));
        return;
    }
    if (keep || n_vis < Tk)
        for (int q = 0; q < nr; q++)
            for (int j = 0; j < Tk; j++)
                if (j >= n_vis || (keep && !keep[j])) s[(size_t)q * Tk + j] = 0.0f;
    const float *row[ROW_GROUP];
    group_rows(row, s, nr, Tk);
    float sum[ROW_GROUP] = {0};
    int j0 = 0;
#ifdef ROWS_BY_8
    if (da_vec_avx2()) j0 = rows_sum_by_8(sum, row, Tk);
#endif
    for (int j = j0; j < Tk; j++) DA_UNROLL_LANES for (int q = 0; q < ROW_GROUP; q++) sum[q] += row[q][j];
    for (int q = 0; q < nr; q++) da_span_mul_scalar(s + (size_t)q * Tk, s + (size_t)q * Tk, 1.0f / sum[q], (size_t)Tk);
}

/* rows [r0, r1) of att, at most SOFTMAX_CHUNK: max, one exp call, sums,
 * over the same groups of rows (the first pass records them) */
static void masked_softmax_chunk(float *att, int r0, int r1, const softmax_rows *sr)
{
    int Tk = sr->Tk, n_groups = 0, first[SOFTMAX_CHUNK], rows[SOFTMAX_CHUNK], any[SOFTMAX_CHUNK];
    for (int r = r0; r < r1; r += rows[n_groups++]) {
        int n_vis;
        const uint8_t *keep = row_keys(sr, r, &n_vis);
        first[n_groups] = r;
        rows[n_groups] = same_keys(sr, r, r1);
        rows_sub_max(att + (size_t)r * Tk, rows[n_groups], Tk, keep, n_vis, &any[n_groups]);
    }
    float *s0 = att + (size_t)r0 * Tk;
    da_expf_n(s0, s0, (size_t)(r1 - r0) * Tk);
    for (int i = 0; i < n_groups; i++) {
        int n_vis;
        const uint8_t *keep = row_keys(sr, first[i], &n_vis);
        rows_normalise(att + (size_t)first[i] * Tk, rows[i], Tk, keep, n_vis, any[i]);
    }
}

typedef struct attn_shape {
    int B, Tq, Tk, D, H, hd;
    float scale; /* 1 / sqrt(hd) */
} attn_shape;

/* Whether threads take whole (image, head) pairs, the GEMMs inside each
 * single-threaded: when there are at least as many pairs as threads, the
 * work is worth a parallel region (par.h), and no parallel region is
 * running already. Else the GEMMs run outside any region of ours and split
 * themselves over the threads. (The callers open a region only when it
 * splits: a GEMM that opens its own threads inside a region, even an
 * inactive one, gets new threads on every call, since libgomp pools
 * threads for the outermost level only.) Neither way changes a bit. */
static int split_pairs(const attn_shape *sh)
{
#ifdef _OPENMP
    if (omp_in_parallel()) return 0; /* a piece of a batch already (da_run_pieces): its threads are busy */
#endif
    int threads = da_get_threads(), pairs = sh->B * sh->H;
    return threads > 1 && pairs >= threads &&
           (double)pairs * sh->Tq * sh->Tk * sh->hd >= da_par_min;
}

/* pair bh = (b, h): its scores att_bh = q_h k_h^T * scale / its output out_h = att_bh v_h */
static void pair_scores(float *att, const float *q, const float *k, const attn_shape *sh, int bh)
{
    int b = bh / sh->H, h = bh % sh->H, Tq = sh->Tq, Tk = sh->Tk, D = sh->D, hd = sh->hd;
    da_gemm(0, 1, Tq, Tk, hd, sh->scale, q + (size_t)b * Tq * D + (size_t)h * hd, D,
            k + (size_t)b * Tk * D + (size_t)h * hd, D, 0.0f, att + (size_t)bh * Tq * Tk, Tk);
}

static void pair_output(float *out, const float *att, const float *v, const attn_shape *sh, int bh)
{
    int b = bh / sh->H, h = bh % sh->H, Tq = sh->Tq, Tk = sh->Tk, D = sh->D, hd = sh->hd;
    da_gemm(0, 0, Tq, hd, Tk, 1.0f, att + (size_t)bh * Tq * Tk, Tk, v + (size_t)b * Tk * D + (size_t)h * hd, D,
            0.0f, out + (size_t)b * Tq * D + (size_t)h * hd, D);
}

/* rows [r0, r1) of att through the softmax, SOFTMAX_CHUNK at a time */
static void softmax_rows_range(float *att, int r0, int r1, const softmax_rows *sr)
{
    for (int c0 = r0; c0 < r1; c0 += SOFTMAX_CHUNK)
        masked_softmax_chunk(att, c0, c0 + SOFTMAX_CHUNK < r1 ? c0 + SOFTMAX_CHUNK : r1, sr);
}

/* pair bh: att_bh = softmax(q_h k_h^T * scale), out_h = att_bh v_h */
static void pair_forward(float *out, float *att, const float *q, const float *k, const float *v,
                         const attn_shape *sh, const softmax_rows *sr, int bh)
{
    pair_scores(att, q, k, sh, bh);
    softmax_rows_range(att, bh * sh->Tq, (bh + 1) * sh->Tq, sr);
    pair_output(out, att, v, sh, bh);
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
    attn_shape sh = {B, Tq, Tk, D, H, hd, 1.0f / sqrtf((float)hd)};
    softmax_rows sr = {Tk, Tq, H, causal, key_keep};
    int pairs = B * H;
    if (split_pairs(&sh)) {
        /* one (image, head) at a time, all three steps: its scores (Tq, Tk)
         * stay in L1/L2 from the GEMM that makes them to the one that
         * reads them (a whole batch's were 2 MB at batch 32 on 8x8) */
#pragma omp parallel for schedule(static)
        for (int bh = 0; bh < pairs; bh++) pair_forward(out, att, q, k, v, &sh, &sr, bh);
        return;
    }
    if (da_get_threads() == 1) { /* the same, in turn */
        for (int bh = 0; bh < pairs; bh++) pair_forward(out, att, q, k, v, &sh, &sr, bh);
        return;
    }
    /* few pairs for the threads: the GEMMs split themselves, the softmax
     * rows are split over threads in between */
    for (int bh = 0; bh < pairs; bh++) pair_scores(att, q, k, &sh, bh);
    int rows = pairs * Tq, chunks = (rows + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK;
#pragma omp parallel for schedule(static) DA_PAR_IF((size_t)rows * Tk)
    for (int c = 0; c < chunks; c++) {
        int r0 = c * SOFTMAX_CHUNK;
        masked_softmax_chunk(att, r0, r0 + SOFTMAX_CHUNK < rows ? r0 + SOFTMAX_CHUNK : rows, &sr);
    }
    for (int bh = 0; bh < pairs; bh++) pair_output(out, att, v, &sh, bh);
}

/* datt (Tq, Tk) -> dscores in place: ds_ij = a_ij * (datt_ij - sum_j' a_ij' datt_ij').
 * Masked entries have a_ij == 0 exactly, so they (and fully masked rows) get 0.
 * Each row's sum is a chain of adds over j in order; ROW_GROUP rows run
 * their chains side by side (group_rows), and the update goes a span at a
 * time, a subtraction then a product: the bits of the plain loop. */
static void softmax_rows_backward(float *ds, const float *a, int Tq, int Tk)
{
    for (int i0 = 0; i0 < Tq; i0 += ROW_GROUP) {
        int nr = Tq - i0 < ROW_GROUP ? Tq - i0 : ROW_GROUP;
        const float *p[ROW_GROUP], *d[ROW_GROUP];
        group_rows(p, a + (size_t)i0 * Tk, nr, Tk);
        group_rows(d, ds + (size_t)i0 * Tk, nr, Tk);
        float dot[ROW_GROUP] = {0};
        for (int j = 0; j < Tk; j++) DA_UNROLL_LANES for (int q = 0; q < ROW_GROUP; q++) dot[q] += p[q][j] * d[q][j];
        for (int q = 0; q < nr; q++) {
            float *dq = ds + (size_t)(i0 + q) * Tk;
            da_span_sub_scalar(dq, dq, dot[q], (size_t)Tk);
            da_span_mul(dq, a + (size_t)(i0 + q) * Tk, dq, (size_t)Tk);
        }
    }
}

/* the gradients of pair bh = (b, h), with s its (Tq, Tk) scratch (NULL: dv only) */
static void pair_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                          const float *k, const float *v, float *s, const attn_shape *sh, int bh)
{
    int b = bh / sh->H, h = bh % sh->H, Tq = sh->Tq, Tk = sh->Tk, D = sh->D, hd = sh->hd;
    size_t oq = (size_t)b * Tq * D + (size_t)h * hd, ok = (size_t)b * Tk * D + (size_t)h * hd;
    const float *a = att + (size_t)bh * Tq * Tk;
    if (dv) da_gemm(1, 0, Tk, hd, Tq, 1.0f, a, Tk, dout + oq, D, 1.0f, dv + ok, D);
    if (!s) return;
    da_gemm(0, 1, Tq, Tk, hd, 1.0f, dout + oq, D, v + ok, D, 0.0f, s, Tk);
    softmax_rows_backward(s, a, Tq, Tk);
    if (dq) da_gemm(0, 0, Tq, hd, Tk, sh->scale, s, Tk, k + ok, D, 1.0f, dq + oq, D);
    if (dk) da_gemm(1, 0, Tk, hd, Tq, sh->scale, s, Tk, q + oq, D, 1.0f, dk + ok, D);
}

/* dq (B, Tq, D), dk, dv (B, Tk, D) += gradients of out given dout (B, Tq, D)
 * and the saved probabilities att (B, H, Tq, Tk). Per (b, h), in order:
 * dv_h += att^T dout_h; datt = dout_h v_h^T; dscores = softmax backward;
 * dq_h += dscores k_h / sqrt(hd); dk_h += dscores^T q_h / sqrt(hd).
 * Sums over query rows live inside one GEMM each, so their order is fixed.
 * ds: n_ds scratch blocks of (Tq, Tk). With more than one, and enough
 * (b, h) pairs for the threads, threads take whole pairs (each its own
 * block; a pair's gradients are blocks of dq, dk, dv no other pair
 * touches) and the GEMMs inside run single-threaded, as in the forward. */
static void attention_backward_pairs(float *dq, float *dk, float *dv, const float *dout, const float *att,
                                     const float *q, const float *k, const float *v, float *ds, int n_ds,
                                     int B, int Tq, int Tk, int D, int n_heads)
{
    assert(n_heads > 0 && D % n_heads == 0);
    assert(ds || (!dq && !dk));
    int H = n_heads, hd = D / n_heads;
    if (B == 0 || Tq == 0 || Tk == 0 || D == 0) return;
    attn_shape sh = {B, Tq, Tk, D, H, hd, 1.0f / sqrtf((float)hd)};
    if (!dq && !dk) ds = NULL; /* only dv wanted: skip the score gradients */
    int pairs = B * H;
    if (n_ds > 1 && split_pairs(&sh)) {
#pragma omp parallel for schedule(static) num_threads(da_get_threads() < n_ds ? da_get_threads() : n_ds)
        for (int bh = 0; bh < pairs; bh++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            pair_backward(dq, dk, dv, dout, att, q, k, v, ds ? ds + (size_t)tid * Tq * Tk : NULL, &sh, bh);
        }
    } else {
        for (int bh = 0; bh < pairs; bh++) pair_backward(dq, dk, dv, dout, att, q, k, v, ds, &sh, bh);
    }
}

void da_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                           const float *q, const float *k, const float *v, float *ds,
                           int B, int Tq, int Tk, int D, int n_heads)
{
    attention_backward_pairs(dq, dk, dv, dout, att, q, k, v, ds, 1, B, Tq, Tk, D, n_heads);
}

/* nd->i = {B, Tq, Tk, D, n_heads, causal, n_ds}; saved = att (B, H, Tq,
 * Tk); saved2 = n_ds (Tq, Tk) backward scratch blocks, one per thread the
 * forward saw, taken from the arena in forward so backward never allocates */
static void attention_backward_node(const da_node *nd)
{
    da_tensor *q = nd->in[0], *k = nd->in[1], *v = nd->in[2];
    attention_backward_pairs(q->grad, k->grad, v->grad, nd->out->grad, nd->saved, q->data, k->data, v->data,
                             nd->saved2, nd->i[6], nd->i[0], nd->i[1], nd->i[2], nd->i[3], nd->i[4]);
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
        /* one block per thread that may take pairs in backward; one inside
         * a parallel region (split_pairs will not split there) */
        int pairs = B * n_heads, n_ds = da_get_threads() < pairs ? da_get_threads() : pairs;
#ifdef _OPENMP
        if (omp_in_parallel()) n_ds = 1;
#endif
        if (n_ds < 1) n_ds = 1;
        size_t nds = (size_t)n_ds * Tq * Tk;
        float *ds = da_arena_alloc(&t->arena, (nds ? nds : 1) * sizeof(float));
        da_node nd = {.backward = attention_backward_node, .out = out, .in = {q, k, v},
                      .i = {B, Tq, Tk, D, n_heads, causal, n_ds}, .saved = att, .saved2 = ds};
        da_tape_push(t, &nd);
    }
    return out;
}
