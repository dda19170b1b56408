/* Reductions (sum, mean), losses (mse, cross_entropy) and embedding:
 * finite differences, PyTorch reference, thread determinism, edge cases. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- graphs under test ---------------------------------------------------- */

typedef struct reduce_ctx {
    int keep;
    int mean;  /* 0: da_sum, 1: da_mean */
} reduce_ctx;

static da_tensor *build_reduce(da_tape *t, da_tensor **in, void *ctx)
{
    const reduce_ctx *r = ctx;
    return r->mean ? da_mean(t, in[0], r->keep) : da_sum(t, in[0], r->keep);
}

static da_tensor *build_mse(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_mse(t, in[0], in[1]);
}

typedef struct emb_ctx {
    const int *ids;
    int B, T;
} emb_ctx;

static da_tensor *build_embedding(da_tape *t, da_tensor **in, void *ctx)
{
    const emb_ctx *e = ctx;
    return da_embedding(t, in[0], e->ids, e->B, e->T);
}

typedef struct ce_ctx {
    const int *targets;
    int ignore_index;
} ce_ctx;

static da_tensor *build_ce(da_tape *t, da_tensor **in, void *ctx)
{
    const ce_ctx *c = ctx;
    return da_cross_entropy(t, in[0], c->targets, c->ignore_index);
}

/* ---- helpers ----------------------------------------------------------- */

static tu_case one_input(int ndim, const int *shape, uint32_t seed, float lo, float hi)
{
    tu_case c = {.n_in = 1, .ndim = {ndim}, .needs_grad = {1}};
    memcpy(c.shape[0], shape, (size_t)ndim * sizeof(int));
    c.data[0] = tu_alloc_fill(da_shape_size(ndim, shape), seed, lo, hi);
    return c;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* Integer tensors are stored in the reference file as F32 holding exact
 * small integers; refuse anything that is not one. Returns a malloc'd array. */
static int *ref_ints(da_safetensors *st, const char *name, size_t n)
{
    float *f = tu_ref(st, name, n);
    int *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        if (f[i] != rintf(f[i]) || fabsf(f[i]) > 1e6f)
            fail_msg("%s[%zu] = %g is not an integer", name, i, f[i]);
        v[i] = (int)f[i];
    }
    free(f);
    return v;
}

/* ---- sum / mean ------------------------------------------------------------ */

/* sum and mean are linear: central differences are exact up to the f32
 * rounding of the forward, ~6e-8 * |y| / (2 eps) with |y| <= ~12: 1e-4. */
static void test_reduce_gradcheck(void **state)
{
    (void)state;
    int shape[3] = {2, 3, 4};
    tu_case c = one_input(3, shape, 31u, -1.0f, 1.0f);
    for (int keep = 0; keep <= 3; keep++) {
        for (int mean = 0; mean <= 1; mean++) {
            reduce_ctx ctx = {keep, mean};
            char what[64];
            snprintf(what, sizeof what, "%s keep=%d", mean ? "mean" : "sum", keep);
            tu_gradcheck(what, build_reduce, &ctx, &c, 1e-2, 1e-4, 1e-4);
        }
    }
    free_case(&c);
}

/* Output shapes: the first `keep` dims survive, keep = 0 is a scalar, and
 * keep = ndim is the identity. */
static void test_reduce_shapes(void **state)
{
    (void)state;
    int shape[3] = {2, 3, 4};
    tu_case c = one_input(3, shape, 32u, -1.0f, 1.0f);
    for (int keep = 0; keep <= 3; keep++) {
        reduce_ctx ctx = {keep, 1};
        tu_result r = tu_run(build_reduce, &ctx, &c, NULL);
        assert_int_equal(r.out_ndim, keep);
        for (int d = 0; d < keep; d++) assert_int_equal(r.out_shape[d], shape[d]);
        assert_int_equal(r.out_n, da_shape_size(keep, shape));
        if (keep == 3) tu_assert_bits("mean keep=ndim is the identity", r.out, c.data[0], 24);
        tu_result_free(&r);
    }
    free_case(&c);
}

/* PyTorch sums f32 with its own vectorised cascade order; we sum left to
 * right in double and round once. Up to 120 terms of N(0,1): both are within
 * a few f32 ulp of the exact sum (|sum| <~ 20 -> ulp ~2e-6): atol 1e-5 and
 * rtol 1e-5. Gradients are copies of dout (/ count): same bound. */
static void test_reduce_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_loss");
    const char *names[] = {"x"};
    for (int keep = 0; keep <= 3; keep++) {
        for (int mean = 0; mean <= 1; mean++) {
            reduce_ctx ctx = {keep, mean};
            char name[32];
            snprintf(name, sizeof name, "%s_k%d", mean ? "mean" : "sum", keep);
            tu_oracle_case(st, name, build_reduce, &ctx, names, 1, 1e-5, 1e-5);
        }
    }
    da_st_close(st);
}

/* 1050 elements: keep = 0 spreads the backward over both threads,
 * keep = 2 spreads the forward (15 outputs). */
static void test_reduce_threads(void **state)
{
    (void)state;
    int shape[3] = {3, 5, 70};
    tu_case c = one_input(3, shape, 33u, -2.0f, 2.0f);
    for (int keep = 0; keep <= 2; keep += 2) {
        for (int mean = 0; mean <= 1; mean++) {
            reduce_ctx ctx = {keep, mean};
            tu_check_threads(mean ? "mean" : "sum", build_reduce, &ctx, &c);
        }
    }
    free_case(&c);
}

/* Summation in double: 2^24 followed by 8 ones sums exactly to 2^24 + 8,
 * where an f32 running sum stays at 2^24 (each + 1 rounds away). */
static void test_reduce_double_accumulation(void **state)
{
    (void)state;
    float x[9] = {16777216.0f, 1, 1, 1, 1, 1, 1, 1, 1};
    tu_case c = {.n_in = 1, .ndim = {1}, .shape = {{9}}, .data = {x}, .needs_grad = {0}};
    reduce_ctx ctx = {0, 0};
    tu_result r = tu_run(build_reduce, &ctx, &c, NULL);
    assert_true(r.out[0] == 16777224.0f);
    tu_result_free(&r);
}

/* ---- mse ------------------------------------------------------------------ */

static tu_case mse_case(int b_needs_grad)
{
    tu_case c = {.n_in = 2, .ndim = {2, 2}, .shape = {{3, 7}, {3, 7}}, .needs_grad = {1, b_needs_grad}};
    c.data[0] = tu_alloc_fill(21, 41u, -2.0f, 2.0f);
    c.data[1] = tu_alloc_fill(21, 42u, -2.0f, 2.0f);
    return c;
}

/* quadratic: the central difference is exact in exact arithmetic; f32
 * rounding of the mean (~6e-8 * 2 / (2 eps)) is ~1e-5: 1e-4. */
static void test_mse_gradcheck(void **state)
{
    (void)state;
    for (int bg = 0; bg <= 1; bg++) {
        tu_case c = mse_case(bg);
        tu_gradcheck(bg ? "mse" : "mse (b constant)", build_mse, NULL, &c, 1e-2, 1e-4, 1e-4);
        free_case(&c);
    }
}

/* f32 mean of squares in a different order (torch) vs double (ours): a few
 * ulp of a value ~2: 1e-5 / 1e-5 as for the reductions. */
static void test_mse_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_loss");
    const char *names[] = {"a", "b"};
    tu_oracle_case(st, "mse", build_mse, NULL, names, 2, 1e-5, 1e-5);
    tu_oracle_case(st, "mse_const", build_mse, NULL, names, 2, 1e-5, 1e-5);
    da_st_close(st);
}

static void test_mse_threads(void **state)
{
    (void)state;
    tu_case c = {.n_in = 2, .ndim = {1, 1}, .shape = {{1000}, {1000}}, .needs_grad = {1, 1}};
    c.data[0] = tu_alloc_fill(1000, 43u, -2.0f, 2.0f);
    c.data[1] = tu_alloc_fill(1000, 44u, -2.0f, 2.0f);
    tu_check_threads("mse", build_mse, NULL, &c);
    free_case(&c);
}

/* ---- embedding ------------------------------------------------------------- */

/* V = 7, D = 5; id 3 appears 4 times and 0 twice (accumulated rows), id 6
 * never (its gradient must stay 0). */
static const int EMB_IDS[12] = {3, 0, 5, 3, 1, 3, 5, 0, 3, 2, 4, 1};

/* a gather is linear: exact up to f32 rounding (|y| <= 1): 1e-4 */
static void test_embedding_gradcheck(void **state)
{
    (void)state;
    int shape[2] = {7, 5};
    tu_case c = one_input(2, shape, 51u, -1.0f, 1.0f);
    emb_ctx ctx = {EMB_IDS, 3, 4};
    tu_gradcheck("embedding", build_embedding, &ctx, &c, 1e-2, 1e-4, 1e-4);
    tu_result r = tu_run(build_embedding, &ctx, &c, NULL);
    assert_int_equal(r.out_ndim, 3);
    assert_int_equal(r.out_shape[2], 5);
    for (int d = 0; d < 5; d++) assert_true(r.grad[0][6 * 5 + d] == 0.0f);
    tu_result_free(&r);
    free_case(&c);
}

/* The forward is a copy: exact. The backward sums up to 4 rows of dout in
 * another order than PyTorch's index_add: 1e-6 covers an ulp or two of
 * values ~3. */
static void test_embedding_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_loss");
    int shape[DA_MAX_DIMS];
    assert_int_equal(tu_ref_shape(st, "embedding.ids", shape), 2);
    int *ids = ref_ints(st, "embedding.ids", (size_t)shape[0] * shape[1]);
    emb_ctx ctx = {ids, shape[0], shape[1]};
    const char *names[] = {"table"};
    tu_oracle_case(st, "embedding", build_embedding, &ctx, names, 1, 1e-6, 1e-6);
    free(ids);
    da_st_close(st);
}

/* D = 40: three column blocks of 16, 16 and 8 spread over the threads; many
 * repeats of ids 0 and 2 to exercise the accumulation order. */
static void test_embedding_threads(void **state)
{
    (void)state;
    int shape[2] = {6, 40};
    tu_case c = one_input(2, shape, 52u, -1.0f, 1.0f);
    int ids[15] = {0, 2, 2, 5, 0, 0, 1, 2, 3, 0, 2, 4, 0, 2, 2};
    emb_ctx ctx = {ids, 3, 5};
    tu_check_threads("embedding", build_embedding, &ctx, &c);
    free_case(&c);
}

/* ---- cross-entropy ------------------------------------------------------ */

/* logits (5, 4); rows 1 and 3 ignored (-100) */
static const int CE_TARGETS[5] = {2, -100, 0, -100, 3};

/* smooth; second derivatives of log-sum-exp are <= 1/4 and the loss is a
 * mean over 3 rows: truncation ~eps^2/6 ~2e-5, f32 rounding of a loss ~2
 * over 2 eps ~1e-5: 1e-4. */
static void test_ce_gradcheck(void **state)
{
    (void)state;
    int shape[2] = {5, 4};
    tu_case c = one_input(2, shape, 61u, -3.0f, 3.0f);
    ce_ctx ctx = {CE_TARGETS, -100};
    tu_gradcheck("cross_entropy", build_ce, &ctx, &c, 1e-2, 1e-4, 1e-4);
    /* ignored rows get exactly no gradient */
    tu_result r = tu_run(build_ce, &ctx, &c, NULL);
    for (int k = 0; k < 4; k++) {
        assert_true(r.grad[0][1 * 4 + k] == 0.0f);
        assert_true(r.grad[0][3 * 4 + k] == 0.0f);
    }
    tu_result_free(&r);
    free_case(&c);
}

/* PyTorch: log_softmax in f32 then nll mean; ours: logsumexp with the exp sum
 * in double. Losses ~2-5 agree to a few ulp: 1e-5 / 1e-5 (ce_plain holds a
 * row shifted by +90, where a missing max subtraction gives inf/NaN).
 * The ignore_index values are the script's: -100, -100 and 0. */
static void test_ce_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_loss");
    static const struct { const char *name; int ignore_index; } cases[] = {
        {"ce_ignore", -100}, {"ce_plain", -100}, {"ce_pad0", 0}};
    const char *names[] = {"logits"};
    for (int i = 0; i < 3; i++) {
        char tname[64];
        snprintf(tname, sizeof tname, "%s.targets", cases[i].name);
        int shape[DA_MAX_DIMS];
        assert_int_equal(tu_ref_shape(st, tname, shape), 1);
        int *targets = ref_ints(st, tname, (size_t)shape[0]);
        ce_ctx ctx = {targets, cases[i].ignore_index};
        tu_oracle_case(st, cases[i].name, build_ce, &ctx, names, 1, 1e-5, 1e-5);
        free(targets);
    }
    da_st_close(st);
}

static void test_ce_threads(void **state)
{
    (void)state;
    int shape[2] = {40, 13};
    tu_case c = one_input(2, shape, 62u, -4.0f, 4.0f);
    int targets[40];
    for (int n = 0; n < 40; n++) targets[n] = n % 5 == 2 ? -1 : (n * 7) % 13;
    ce_ctx ctx = {targets, -1};
    tu_check_threads("cross_entropy", build_ce, &ctx, &c);
    free_case(&c);
}

/* Known answers: equal logits give log C; all rows ignored gives our
 * documented 0 (PyTorch: NaN) with zero gradients. */
static void test_ce_edge_cases(void **state)
{
    (void)state;
    int shape[2] = {3, 4};
    tu_case c = one_input(2, shape, 63u, -3.0f, 3.0f);
    int ignored[3] = {7, 7, 7};
    ce_ctx ctx = {ignored, 7};
    tu_result r = tu_run(build_ce, &ctx, &c, NULL);
    assert_true(r.out[0] == 0.0f);
    for (int i = 0; i < 12; i++) assert_true(r.grad[0][i] == 0.0f);
    tu_result_free(&r);

    for (int i = 0; i < 12; i++) c.data[0][i] = 0.5f;
    int targets[3] = {0, 3, 1};
    ce_ctx ctx2 = {targets, -100};
    r = tu_run(build_ce, &ctx2, &c, NULL);
    /* log 4 rounded to f32: 1 ulp */
    assert_true(fabs(r.out[0] - log(4.0)) < 2e-7);
    tu_result_free(&r);
    free_case(&c);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_gradcheck),
        cmocka_unit_test(test_reduce_shapes),
        cmocka_unit_test(test_reduce_vs_torch),
        cmocka_unit_test(test_reduce_threads),
        cmocka_unit_test(test_reduce_double_accumulation),
        cmocka_unit_test(test_mse_gradcheck),
        cmocka_unit_test(test_mse_vs_torch),
        cmocka_unit_test(test_mse_threads),
        cmocka_unit_test(test_embedding_gradcheck),
        cmocka_unit_test(test_embedding_vs_torch),
        cmocka_unit_test(test_embedding_threads),
        cmocka_unit_test(test_ce_gradcheck),
        cmocka_unit_test(test_ce_vs_torch),
        cmocka_unit_test(test_ce_threads),
        cmocka_unit_test(test_ce_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
