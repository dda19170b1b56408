/* softmax, log_softmax and multi-head attention: finite differences, PyTorch
 * reference, fully masked rows, masking == removing keys, the backward's
 * bits against plain loops, threads. */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static da_tensor *build_softmax(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_softmax(t, in[0]);
}

static da_tensor *build_log_softmax(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_log_softmax(t, in[0]);
}

typedef struct attn_cfg {
    int heads, causal;
} attn_cfg;

/* in = q, k, v and optionally keep (B, Tk) as f32 0/1, a constant input.
 * The uint8 mask lives in a heap buffer that is wiped and freed right after
 * the call: the wrapper must not keep the caller's mask (ASan in the
 * SANITIZE=1 build, or wrong gradients, would show it). */
static da_tensor *build_attention(da_tape *t, da_tensor **in, void *ctx)
{
    const attn_cfg *cfg = ctx;
    uint8_t *keep = NULL;
    if (in[3]) {
        keep = malloc(in[3]->size ? in[3]->size : 1);
        assert_non_null(keep);
        for (size_t i = 0; i < in[3]->size; i++) keep[i] = in[3]->data[i] != 0.0f;
    }
    da_tensor *out = da_attention(t, in[0], in[1], in[2], cfg->heads, cfg->causal, keep);
    if (keep) memset(keep, 0, in[3]->size);
    free(keep);
    return out;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* (N, C) logits in [-3, 3) */
static tu_case softmax_case(int N, int C, uint32_t seed)
{
    tu_case c = {.n_in = 1, .ndim = {2}, .shape = {{N, C}}, .needs_grad = {1}};
    c.data[0] = tu_alloc_fill((size_t)N * C, seed, -3.0f, 3.0f);
    return c;
}

/* q (B, Tq, D), k/v (B, Tk, D) in [-1, 1); keep (B, Tk) when given */
static tu_case attn_case(int B, int Tq, int Tk, int D, const float *keep, uint32_t seed)
{
    tu_case c = {.n_in = keep ? 4 : 3, .ndim = {3, 3, 3, 2},
                 .shape = {{B, Tq, D}, {B, Tk, D}, {B, Tk, D}, {B, Tk}},
                 .needs_grad = {1, 1, 1, 0}};
    for (int i = 0; i < 3; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(3, c.shape[i]), seed + i, -1.0f, 1.0f);
    if (keep) {
        c.data[3] = malloc((size_t)B * Tk * sizeof(float));
        memcpy(c.data[3], keep, (size_t)B * Tk * sizeof(float));
    }
    return c;
}

/* Central differences, eps 1e-2, O(1) smooth maps: truncation ~eps^2 * f'''
 * ~1e-5..1e-4 and f32 forward rounding ~1e-7 * sqrt(n) / (2 eps) ~ 1e-5
 * (observed worst: 2.3e-5, log_softmax). 5e-4 keeps a 20x margin; a wrong
 * or missing term (scale, row-sum) moves gradients by O(0.1). */
#define GC_EPS 1e-2
#define GC_TOL 5e-4

static void test_softmax_gradcheck(void **state)
{
    (void)state;
    tu_case c = softmax_case(3, 7, 1u);
    tu_gradcheck("softmax (3,7)", build_softmax, NULL, &c, GC_EPS, GC_TOL, GC_TOL);
    tu_gradcheck("log_softmax (3,7)", build_log_softmax, NULL, &c, GC_EPS, GC_TOL, GC_TOL);
    free_case(&c);
}

/* Same formulas in f32; expf/logf may differ from PyTorch's vectorised
 * versions by ~1 ulp. Probabilities are <= 1 (1e-6 absolute); log-probs
 * reach about -20 in the *_big rows (ulp 2e-6, hence 1e-5 relative).
 * Observed worst: 1.2e-7. The *_big rows (offsets of +-100, 88) overflow
 * exp without the max shift. */
static void test_softmax_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_attention");
    const char *x[] = {"x"};
    tu_oracle_case(st, "softmax", build_softmax, NULL, x, 1, 1e-6, 1e-5);
    tu_oracle_case(st, "log_softmax", build_log_softmax, NULL, x, 1, 1e-6, 1e-5);
    tu_oracle_case(st, "softmax_big", build_softmax, NULL, x, 1, 1e-6, 1e-5);
    tu_oracle_case(st, "log_softmax_big", build_log_softmax, NULL, x, 1, 1e-6, 1e-5);
    da_st_close(st);
}

static void test_attention_gradcheck(void **state)
{
    (void)state;
    attn_cfg two = {2, 0}, causal = {2, 1}, one = {1, 0};
    tu_case c = attn_case(2, 5, 5, 8, NULL, 10u);
    tu_gradcheck("attention self B2 T5 D8 H2", build_attention, &two, &c, GC_EPS, GC_TOL, GC_TOL);
    tu_gradcheck("attention causal", build_attention, &causal, &c, GC_EPS, GC_TOL, GC_TOL);
    tu_gradcheck("attention H1", build_attention, &one, &c, GC_EPS, GC_TOL, GC_TOL);
    free_case(&c);
    const float keep[2 * 6] = {1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1};
    c = attn_case(2, 4, 6, 8, keep, 20u);
    tu_gradcheck("attention cross Tq4 Tk6 + padding", build_attention, &two, &c, GC_EPS, GC_TOL, GC_TOL);
    free_case(&c);
}

/* f32 against f32 with different summation orders (GEMM blocking, exp):
 * values and gradients are O(1) with K <= 8 terms per dot product, so errors
 * stay at a few ulp; 1e-5 absolute + 1e-5 relative. */
static void test_attention_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_attention");
    const char *qkv[] = {"q", "k", "v", "keep"};
    attn_cfg two = {2, 0}, causal = {2, 1}, one = {1, 0};
    tu_oracle_case(st, "attn_self", build_attention, &two, qkv, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "attn_causal", build_attention, &causal, qkv, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "attn_cross", build_attention, &two, qkv, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "attn_pad", build_attention, &two, qkv, 4, 1e-5, 1e-5);
    tu_oracle_case(st, "attn_causal_pad", build_attention, &causal, qkv, 4, 1e-5, 1e-5);
    tu_oracle_case(st, "attn_h1", build_attention, &one, qkv, 3, 1e-5, 1e-5);
    da_st_close(st);
}

static int all_zero(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return 0;
    return 1;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Rows with no visible key (PyTorch: NaN) are our documented choice: exact
 * zeros in the output and no gradient. B = 2, T = 4, D = 8, 2 heads, causal;
 * batch 0 masks key 0, so query 0 sees nothing while queries 1..3 see keys;
 * batch 1 masks every key. */
static void test_attention_fully_masked(void **state)
{
    (void)state;
    enum { B = 2, T = 4, D = 8 };
    const float keep[B * T] = {0, 1, 1, 1, 0, 0, 0, 0};
    attn_cfg cfg = {2, 1};
    tu_case c = attn_case(B, T, T, D, keep, 30u);
    tu_result r = tu_run(build_attention, &cfg, &c, NULL);
    assert_true(all_finite(r.out, B * T * D));
    for (int i = 0; i < 3; i++) assert_true(all_finite(r.grad[i], B * T * D));
    /* batch 0, query 0: zero output and zero dq */
    assert_true(all_zero(r.out, D));
    assert_true(all_zero(r.grad[0], D));
    /* batch 0, queries 1..3 see keys: outputs are not all zero */
    assert_false(all_zero(r.out + D, (T - 1) * D));
    /* batch 0, masked key 0: nobody attends to it, so dk/dv are zero */
    assert_true(all_zero(r.grad[1], D));
    assert_true(all_zero(r.grad[2], D));
    /* batch 1: everything zero */
    assert_true(all_zero(r.out + T * D, T * D));
    for (int i = 0; i < 3; i++) assert_true(all_zero(r.grad[i] + T * D, T * D));
    tu_result_free(&r);
    /* and the analytic gradients still agree with finite differences */
    tu_gradcheck("attention with fully masked rows", build_attention, &cfg, &c, GC_EPS, GC_TOL, GC_TOL);
    free_case(&c);
}

/* Masking key j must equal deleting row j of k and v: same output and dq,
 * same dk/dv on the kept rows, zero dk/dv on the masked rows. The two runs
 * differ only in zero-probability terms, so 1e-6 covers GEMM blocking. */
static void test_attention_mask_is_removal(void **state)
{
    (void)state;
    enum { Tq = 3, Tk = 6, Tkept = 4, D = 8 };
    const float keep[Tk] = {1, 0, 1, 1, 0, 1};
    attn_cfg cfg = {2, 0};
    tu_case full = attn_case(1, Tq, Tk, D, keep, 40u);
    tu_case cut = attn_case(1, Tq, Tkept, D, NULL, 40u);
    memcpy(cut.data[0], full.data[0], Tq * D * sizeof(float));
    for (int i = 1; i < 3; i++)
        for (int j = 0, jj = 0; j < Tk; j++)
            if (keep[j]) memcpy(cut.data[i] + (jj++) * D, full.data[i] + j * D, D * sizeof(float));
    float *dout = tu_alloc_fill(Tq * D, 41u, -1.0f, 1.0f);
    tu_result rf = tu_run(build_attention, &cfg, &full, dout);
    tu_result rc = tu_run(build_attention, &cfg, &cut, dout);
    tu_assert_close("masked vs removed: out", rf.out, rc.out, Tq * D, 1e-6, 1e-6);
    tu_assert_close("masked vs removed: dq", rf.grad[0], rc.grad[0], Tq * D, 1e-6, 1e-6);
    for (int i = 1; i < 3; i++) {
        for (int j = 0, jj = 0; j < Tk; j++) {
            const float *g = rf.grad[i] + j * D;
            if (keep[j]) tu_assert_close("masked vs removed: dk/dv", g, rc.grad[i] + (jj++) * D, D, 1e-6, 1e-6);
            else assert_true(all_zero(g, D));
        }
    }
    tu_result_free(&rf);
    tu_result_free(&rc);
    free(dout);
    free_case(&full);
    free_case(&cut);
}

/* The backward's bits are those of plain loops: the portable GEMM gives
 * the ordered sum's bits (c = alpha * sum + beta * c; tests/test_gemm.c),
 * and the softmax backward sums each row in order, then subtracts and
 * multiplies (ops_attention.c runs 8 rows' sums side by side; any other
 * order of a sum changes bits). Shapes: rows that fill groups of 8 or not,
 * cross-attention's 16 keys, a mask, an image with no visible key; 1 and 2
 * threads (da_attention_backward has one scratch block, so its GEMMs split
 * themselves; the tape's split over (image, head) pairs runs the same
 * per-pair code, and test_threads holds it to the 1-thread bits). */
static float fin(float s, float c, float alpha, float beta) { return beta == 0.0f ? alpha * s : alpha * s + beta * c; }

static void plain_backward(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                           const float *k, const float *v, int B, int Tq, int Tk, int D, int H)
{
    int hd = D / H;
    float scale = 1.0f / sqrtf((float)hd);
    float *ds = malloc((size_t)Tq * Tk * sizeof(float));
    assert_non_null(ds);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *a = att + ((size_t)b * H + h) * Tq * Tk;
            const float *go = dout + (size_t)b * Tq * D + h * hd, *qh = q + (size_t)b * Tq * D + h * hd;
            const float *kh = k + (size_t)b * Tk * D + h * hd, *vh = v + (size_t)b * Tk * D + h * hd;
            float *dqh = dq + (size_t)b * Tq * D + h * hd, *dkh = dk + (size_t)b * Tk * D + h * hd;
            float *dvh = dv + (size_t)b * Tk * D + h * hd;
            for (int j = 0; j < Tk; j++)     /* dv_h += att^T dout_h */
                for (int d = 0; d < hd; d++) {
                    float acc = 0.0f;
                    for (int i = 0; i < Tq; i++) acc += a[(size_t)i * Tk + j] * go[(size_t)i * D + d];
                    dvh[(size_t)j * D + d] = fin(acc, dvh[(size_t)j * D + d], 1.0f, 1.0f);
                }
            for (int i = 0; i < Tq; i++)     /* datt = dout_h v_h^T */
                for (int j = 0; j < Tk; j++) {
                    float acc = 0.0f;
                    for (int d = 0; d < hd; d++) acc += go[(size_t)i * D + d] * vh[(size_t)j * D + d];
                    ds[(size_t)i * Tk + j] = fin(acc, 0.0f, 1.0f, 0.0f);
                }
            for (int i = 0; i < Tq; i++) {   /* softmax backward, row by row */
                float dot = 0.0f;
                for (int j = 0; j < Tk; j++) dot += a[(size_t)i * Tk + j] * ds[(size_t)i * Tk + j];
                for (int j = 0; j < Tk; j++) ds[(size_t)i * Tk + j] = a[(size_t)i * Tk + j] * (ds[(size_t)i * Tk + j] - dot);
            }
            for (int i = 0; i < Tq; i++)     /* dq_h += scale ds k_h */
                for (int d = 0; d < hd; d++) {
                    float acc = 0.0f;
                    for (int j = 0; j < Tk; j++) acc += ds[(size_t)i * Tk + j] * kh[(size_t)j * D + d];
                    dqh[(size_t)i * D + d] = fin(acc, dqh[(size_t)i * D + d], scale, 1.0f);
                }
            for (int j = 0; j < Tk; j++)     /* dk_h += scale ds^T q_h */
                for (int d = 0; d < hd; d++) {
                    float acc = 0.0f;
                    for (int i = 0; i < Tq; i++) acc += ds[(size_t)i * Tk + j] * qh[(size_t)i * D + d];
                    dkh[(size_t)j * D + d] = fin(acc, dkh[(size_t)j * D + d], scale, 1.0f);
                }
        }
    free(ds);
}

static void test_attention_backward_bits(void **state)
{
    (void)state;
    const char *backend = da_gemm_backend();
    int threads0 = da_get_threads();
    assert_int_equal(da_gemm_set_backend("portable"), DA_OK);
    const int shapes[][5] = {{2, 13, 13, 24, 3}, {3, 64, 16, 32, 4}, {2, 9, 20, 8, 1}, {1, 8, 8, 16, 2}};
    for (int c = 0; c < 4; c++)
        for (int masked = 0; masked < 2; masked++) {
            int B = shapes[c][0], Tq = shapes[c][1], Tk = shapes[c][2], D = shapes[c][3], H = shapes[c][4];
            size_t nq = (size_t)B * Tq * D, nk = (size_t)B * Tk * D;
            float *q = tu_alloc_fill(nq, 100u + c, -1.0f, 1.0f), *k = tu_alloc_fill(nk, 200u + c, -1.0f, 1.0f);
            float *v = tu_alloc_fill(nk, 300u + c, -1.0f, 1.0f), *dout = tu_alloc_fill(nq, 400u + c, -1.0f, 1.0f);
            float *dq0 = tu_alloc_fill(nq, 500u + c, -1.0f, 1.0f), *dk0 = tu_alloc_fill(nk, 600u + c, -1.0f, 1.0f);
            float *dv0 = tu_alloc_fill(nk, 700u + c, -1.0f, 1.0f);   /* gradients accumulate into these */
            float *out = malloc(nq * sizeof(float)), *att = malloc((size_t)B * H * Tq * Tk * sizeof(float));
            float *ds = malloc((size_t)Tq * Tk * sizeof(float)), *want[3], *got[3];
            uint8_t *keep = malloc((size_t)B * Tk);
            assert_true(out && att && ds && keep);
            for (int i = 0; i < B * Tk; i++) keep[i] = (i % 5) != 2;
            for (int j = 0; j < Tk; j++) keep[j] = 0;   /* image 0 sees no key: zero gradients */
            int causal = masked && Tq == Tk;
            da_attention_forward(out, att, q, k, v, masked ? keep : NULL, B, Tq, Tk, D, H, causal);
            size_t n[3] = {nq, nk, nk};
            float *init[3] = {dq0, dk0, dv0};
            for (int g = 0; g < 3; g++) {
                want[g] = malloc(n[g] * sizeof(float));
                got[g] = malloc(n[g] * sizeof(float));
                memcpy(want[g], init[g], n[g] * sizeof(float));
            }
            plain_backward(want[0], want[1], want[2], dout, att, q, k, v, B, Tq, Tk, D, H);
            for (int threads = 1; threads <= 2; threads++) {
                da_set_threads(threads);
                for (int g = 0; g < 3; g++) memcpy(got[g], init[g], n[g] * sizeof(float));
                da_attention_backward(got[0], got[1], got[2], dout, att, q, k, v, ds, B, Tq, Tk, D, H);
                tu_assert_bits("attention dq", got[0], want[0], nq);
                tu_assert_bits("attention dk", got[1], want[1], nk);
                tu_assert_bits("attention dv", got[2], want[2], nk);
            }
            da_set_threads(threads0);
            for (int g = 0; g < 3; g++) {
                free(want[g]);
                free(got[g]);
            }
            free(q), free(k), free(v), free(dout), free(dq0), free(dk0), free(dv0);
            free(out), free(att), free(ds), free(keep);
        }
    assert_int_equal(da_gemm_set_backend(backend), DA_OK);
}

/* The forward's bits are the same under every vector copy the CPU runs
 * (DA_ISA): with AVX2 the softmax's row groups go 8 keys at a time through
 * register transposes (ops_attention.c:rows_max_by_8, rows_sum_by_8), the
 * base copy one key at a time; the exps and the portable GEMM's tiles
 * keep their bits on every copy. Shapes: 64 keys (self-attention), 24 with
 * padded keys masked (cross-attention), causal rows, key counts that are
 * no multiple of 8 (13, 37), row counts that leave a group short, a first
 * key masked, and scores with NaN and inf. */
static void test_attention_forward_same_on_every_isa(void **state)
{
    (void)state;
    static const struct {
        int B, Tq, Tk, D, heads, causal, mask;
    } shapes[] = {{2, 64, 64, 64, 4, 0, 0}, {3, 64, 24, 64, 4, 0, 1}, {2, 20, 20, 32, 2, 1, 0},
                  {2, 29, 13, 16, 2, 0, 1}, {1, 11, 37, 48, 3, 0, 2}, {2, 33, 33, 64, 4, 1, 1}};
    const char *saved = da_isa(), *isas[3] = {"base", "avx2", "avx512"};
    const char *backend = da_gemm_backend();
    assert_int_equal(da_gemm_set_backend("portable"), DA_OK);
    int n_cmp = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int B = shapes[s].B, Tq = shapes[s].Tq, Tk = shapes[s].Tk, D = shapes[s].D, H = shapes[s].heads;
        size_t nq = (size_t)B * Tq * D, nk = (size_t)B * Tk * D, na = (size_t)B * H * Tq * Tk;
        float *q = tu_alloc_fill(nq, 900u + (uint32_t)s, -2.0f, 2.0f), *k = tu_alloc_fill(nk, 910u + (uint32_t)s, -2.0f, 2.0f);
        float *v = tu_alloc_fill(nk, 920u + (uint32_t)s, -1.0f, 1.0f);
        uint8_t *keep = NULL;
        if (shapes[s].mask) {
            keep = malloc((size_t)B * Tk);
            assert_non_null(keep);
            /* mask 1: every fifth key and the padding past 3/4; mask 2 also the first key */
            for (int i = 0; i < B * Tk; i++) keep[i] = (i % 5) != 2 && (i % Tk) < Tk * 3 / 4;
            if (shapes[s].mask == 2) for (int b = 0; b < B; b++) keep[(size_t)b * Tk] = 0;
        }
        if (s == 4) {   /* NaN and inf in some scores: through q and k */
            q[5] = NAN, q[D + 1] = INFINITY, k[3 * D + 2] = -INFINITY;
        }
        float *out[3], *att[3];
        int have[3] = {0};
        for (int i = 0; i < 3; i++) {
            out[i] = malloc(nq * sizeof(float)), att[i] = malloc(na * sizeof(float));
            if (da_set_isa(isas[i]) != DA_OK) continue;   /* not on this CPU */
            have[i] = 1;
            da_attention_forward(out[i], att[i], q, k, v, keep, B, Tq, Tk, D, H, shapes[s].causal);
        }
        assert_true(have[0]);
        for (int i = 1; i < 3; i++) {
            if (!have[i]) continue;
            char what[120];
            snprintf(what, sizeof what, "attention probabilities, shape %zu, %s vs base", s, isas[i]);
            tu_assert_bits(what, att[i], att[0], na);
            snprintf(what, sizeof what, "attention output, shape %zu, %s vs base", s, isas[i]);
            tu_assert_bits(what, out[i], out[0], nq);
            n_cmp++;
        }
        for (int i = 0; i < 3; i++) free(out[i]), free(att[i]);
        free(q), free(k), free(v), free(keep);
    }
    assert_int_equal(da_set_isa(saved), DA_OK);
    assert_int_equal(da_gemm_set_backend(backend), DA_OK);
    print_message("attention forward: %d comparisons with the base copy\n", n_cmp);
}

/* Larger shapes so both threads get rows and OpenBLAS may split GEMMs. */
static void test_threads(void **state)
{
    (void)state;
    tu_case c = softmax_case(37, 29, 50u);
    tu_check_threads("softmax", build_softmax, NULL, &c);
    tu_check_threads("log_softmax", build_log_softmax, NULL, &c);
    free_case(&c);
    attn_cfg four = {4, 0}, causal = {4, 1};
    float keep[2 * 33];
    for (int i = 0; i < 2 * 33; i++) keep[i] = (i % 7) != 3;
    c = attn_case(2, 33, 33, 64, keep, 60u);
    tu_check_threads("attention causal + padding", build_attention, &causal, &c);
    free_case(&c);
    c = attn_case(2, 40, 17, 64, NULL, 70u);
    tu_check_threads("attention cross", build_attention, &four, &c);
    free_case(&c);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_gradcheck),
        cmocka_unit_test(test_softmax_vs_torch),
        cmocka_unit_test(test_attention_gradcheck),
        cmocka_unit_test(test_attention_vs_torch),
        cmocka_unit_test(test_attention_fully_masked),
        cmocka_unit_test(test_attention_mask_is_removal),
        cmocka_unit_test(test_attention_backward_bits),
        cmocka_unit_test(test_attention_forward_same_on_every_isa),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
