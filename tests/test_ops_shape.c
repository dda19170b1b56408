/* reshape (view), permute, concat, narrow: finite differences, PyTorch
 * reference, threads. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shape_arg {
    int ndim;
    int shape[DA_MAX_DIMS];
} shape_arg;

typedef struct narrow_arg {
    int dim, start, len;
} narrow_arg;

static da_tensor *build_reshape(da_tape *t, da_tensor **in, void *ctx)
{
    const shape_arg *s = ctx;
    return da_reshape(t, in[0], s->ndim, s->shape);
}

/* reshape(x) * w: the mul's gradient reaches x only through the view */
static da_tensor *build_reshape_mul(da_tape *t, da_tensor **in, void *ctx)
{
    const shape_arg *s = ctx;
    return da_mul(t, da_reshape(t, in[0], s->ndim, s->shape), in[1]);
}

/* permute(reshape(scale(x))): the view sits between two ops */
static da_tensor *build_scale_reshape_permute(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    static const int shape[] = {2, 3, 4}, perm[] = {2, 0, 1};
    return da_permute(t, da_reshape(t, da_scale(t, in[0], 1.5f), 3, shape), perm);
}

static da_tensor *build_permute(da_tape *t, da_tensor **in, void *ctx)
{
    return da_permute(t, in[0], (const int *)ctx);
}

static da_tensor *build_concat(da_tape *t, da_tensor **in, void *ctx)
{
    return da_concat(t, in[0], in[1], *(const int *)ctx);
}

static da_tensor *build_narrow(da_tape *t, da_tensor **in, void *ctx)
{
    const narrow_arg *n = ctx;
    return da_narrow(t, in[0], n->dim, n->start, n->len);
}

/* split x along dim 1 into two narrows and glue them back in swapped order */
static da_tensor *build_split_swap(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    da_tensor *lo = da_narrow(t, in[0], 1, 0, 2), *hi = da_narrow(t, in[0], 1, 2, 3);
    return da_concat(t, hi, lo, 1);
}

/* Graphs where one input feeds an op twice, so a backward that overwrote
 * instead of accumulating (= for +=) would lose a contribution. */
static da_tensor *build_transpose_plus(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    static const int perm[] = {1, 0};
    return da_add(t, da_permute(t, in[0], perm), in[0]);   /* x^T + x, x square */
}

static da_tensor *build_concat_self(da_tape *t, da_tensor **in, void *ctx)
{
    return da_concat(t, in[0], in[0], *(const int *)ctx);
}

static da_tensor *build_narrow_overlap(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_add(t, da_narrow(t, in[0], 1, 0, 3), da_narrow(t, in[0], 1, 1, 3));
}

static tu_case make_case(int n_in, const int *ndim, const int (*shape)[DA_MAX_DIMS], uint32_t seed)
{
    tu_case c = {.n_in = n_in};
    for (int i = 0; i < n_in; i++) {
        c.ndim[i] = ndim[i];
        memcpy(c.shape[i], shape[i], sizeof shape[i]);
        c.needs_grad[i] = 1;
        c.data[i] = tu_alloc_fill(da_shape_size(ndim[i], shape[i]), seed + (uint32_t)i, -1.0f, 1.0f);
    }
    return c;
}

static tu_case case1(int ndim, const int *shape, uint32_t seed)
{
    int sh[1][DA_MAX_DIMS] = {{0}};
    memcpy(sh[0], shape, (size_t)ndim * sizeof(int));
    return make_case(1, &ndim, sh, seed);
}

static tu_case case2(int ndim, const int *sa, const int *sb, uint32_t seed)
{
    int nd[2] = {ndim, ndim}, sh[2][DA_MAX_DIMS] = {{0}};
    memcpy(sh[0], sa, (size_t)ndim * sizeof(int));
    memcpy(sh[1], sb, (size_t)ndim * sizeof(int));
    return make_case(2, nd, sh, seed);
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* The views share buffers with their source; -1 is inferred. */
static void test_reshape_view(void **state)
{
    (void)state;
    da_tape t;
    da_tape_init(&t, 1 << 16);
    float data[24], grad[24] = {0};
    const int shape[] = {2, 3, 4}, to[] = {4, -1};
    da_tensor *x = da_leaf(&t, data, grad, 3, shape);
    da_tensor *y = da_reshape(&t, x, 2, to);
    assert_ptr_equal(y->data, data);
    assert_ptr_equal(y->grad, grad);
    assert_int_equal(y->ndim, 2);
    assert_int_equal(y->shape[0], 4);
    assert_int_equal(y->shape[1], 6);
    assert_int_equal(y->size, 24);
    assert_int_equal(t.n_nodes, 0);   /* a view records nothing */
    da_tensor *c = da_leaf(&t, data, NULL, 3, shape);
    assert_null(da_reshape(&t, c, 1, (const int[]){24})->grad);
    da_tape_free(&t);
}

/* Every op here copies values: perturbing one input element moves each output
 * it reaches by the f32-rounded eps, so the central difference is exact up to
 * the rounding of x +- eps (<= 2^-24 * |x|, |x| < 1.5) over 2*eps = 2e-2, i.e.
 * <= 1e-5 per output reached, times |dout| < 1. At most 2 outputs per input
 * here, except w in reshape-then-mul (4, plus the mul's own rounding of the
 * same size): all below 1e-4. */
static void test_shape_gradcheck(void **state)
{
    (void)state;
    const int s234[] = {2, 3, 4}, s2345[] = {2, 3, 4, 5};
    tu_case c = case1(3, s234, 10u);
    shape_arg r1 = {2, {6, 4}};
    tu_gradcheck("reshape", build_reshape, &r1, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);

    int nd[2] = {3, 1}, sh[2][DA_MAX_DIMS] = {{2, 3, 4}, {6}};
    c = make_case(2, nd, sh, 20u);
    shape_arg r2 = {2, {4, -1}};
    tu_gradcheck("reshape then mul", build_reshape_mul, &r2, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    const int s24[] = {24};
    c = case1(1, s24, 30u);
    tu_gradcheck("scale, reshape, permute", build_scale_reshape_permute, NULL, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);

    int p021[] = {0, 2, 1}, p210[] = {2, 1, 0}, p0231[] = {0, 2, 3, 1}, p3102[] = {3, 1, 0, 2};
    c = case1(3, s234, 40u);
    tu_gradcheck("permute (0,2,1)", build_permute, p021, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("permute (2,1,0)", build_permute, p210, &c, 1e-2, 1e-4, 1e-4);
    int pneg[] = {0, -1, 1};   /* negative entries count from the end: (0,2,1) */
    tu_gradcheck("permute (0,-1,1)", build_permute, pneg, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    c = case1(4, s2345, 50u);
    tu_gradcheck("permute (0,2,3,1)", build_permute, p0231, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("permute (3,1,0,2)", build_permute, p3102, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);

    int d0 = 0, d1 = 1, dlast = -1;
    c = case2(3, (const int[]){2, 3, 4}, (const int[]){1, 3, 4}, 60u);
    tu_gradcheck("concat dim 0", build_concat, &d0, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    c = case2(3, (const int[]){2, 3, 4}, (const int[]){2, 2, 4}, 70u);
    tu_gradcheck("concat dim 1", build_concat, &d1, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    c = case2(3, (const int[]){2, 3, 4}, (const int[]){2, 3, 5}, 80u);
    tu_gradcheck("concat dim -1", build_concat, &dlast, &c, 1e-2, 1e-4, 1e-4);
    c.needs_grad[0] = 0;   /* a constant, b trainable */
    tu_gradcheck("concat dim -1, a constant", build_concat, &dlast, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);

    const int s2543[] = {2, 5, 4, 3};
    narrow_arg n1 = {1, 1, 3}, n2 = {2, 2, 2}, n0 = {0, 1, 1}, nl = {-1, 1, 2};
    c = case1(4, s2543, 90u);
    tu_gradcheck("narrow dim 1", build_narrow, &n1, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("narrow dim 2", build_narrow, &n2, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("narrow dim 0", build_narrow, &n0, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("narrow dim -1", build_narrow, &nl, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    const int s44[] = {4, 4};
    c = case1(2, s44, 110u);
    tu_gradcheck("x^T + x", build_transpose_plus, NULL, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    c = case1(3, s234, 120u);
    tu_gradcheck("concat(x, x, 1)", build_concat_self, &d1, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    const int s243[] = {2, 4, 3};
    c = case1(3, s243, 130u);
    tu_gradcheck("narrow + overlapping narrow", build_narrow_overlap, NULL, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
    const int s354[] = {3, 5, 4};
    c = case1(3, s354, 100u);
    tu_gradcheck("split and swap", build_split_swap, NULL, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
}

/* Known values: permute of a (2, 3) iota, concat and narrow of small ones. */
static void test_shape_known(void **state)
{
    (void)state;
    float x[6] = {0, 1, 2, 3, 4, 5}, y[2] = {6, 7};
    int perm[] = {1, 0}, dim = 1;
    tu_case c = {.n_in = 1, .ndim = {2}, .shape = {{2, 3}}, .data = {x}, .needs_grad = {1}};
    tu_result r = tu_run(build_permute, perm, &c, x);
    const float xt[6] = {0, 3, 1, 4, 2, 5};
    tu_assert_bits("transpose", r.out, xt, 6);
    assert_int_equal(r.out_shape[0], 3);
    assert_int_equal(r.out_shape[1], 2);
    /* dout = x read as (3, 2): the gradient is its transpose back */
    const float gt[6] = {0, 2, 4, 1, 3, 5};
    tu_assert_bits("transpose: grad", r.grad[0], gt, 6);
    tu_result_free(&r);

    tu_case c2 = {.n_in = 2, .ndim = {2, 2}, .shape = {{2, 3}, {2, 1}}, .data = {x, y}, .needs_grad = {1, 1}};
    const float dcat[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    r = tu_run(build_concat, &dim, &c2, dcat);
    const float cat[8] = {0, 1, 2, 6, 3, 4, 5, 7};
    tu_assert_bits("concat", r.out, cat, 8);
    const float ga[6] = {1, 2, 3, 5, 6, 7}, gb[2] = {4, 8};
    tu_assert_bits("concat: grad a", r.grad[0], ga, 6);
    tu_assert_bits("concat: grad b", r.grad[1], gb, 2);
    tu_result_free(&r);

    narrow_arg n = {1, 1, 2};
    const float dn[4] = {1, 2, 3, 4};
    r = tu_run(build_narrow, &n, &c, dn);
    const float nar[4] = {1, 2, 4, 5}, gn[6] = {0, 1, 2, 0, 3, 4};
    tu_assert_bits("narrow", r.out, nar, 4);
    tu_assert_bits("narrow: grad", r.grad[0], gn, 6);
    tu_result_free(&r);
}

/* Copies and one-to-one scatters are exact: outputs and gradients must equal
 * PyTorch's bit for bit (tolerance 0). reshape_mul is one f32 multiply per
 * element for x's gradient; w's sums 4 terms, which PyTorch may order
 * differently: 1e-6 covers a few ulp of |sum| < ~5 for that case. */
static void test_shape_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_shape");
    const char *x[] = {"x"}, *xw[] = {"x", "w"}, *ab[] = {"a", "b"};
    shape_arg r1 = {2, {6, 4}}, r2 = {2, {4, -1}};
    tu_oracle_case(st, "reshape", build_reshape, &r1, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "reshape_mul", build_reshape_mul, &r2, xw, 2, 1e-6, 1e-6);

    int p10[] = {1, 0}, p021[] = {0, 2, 1}, p0231[] = {0, 2, 3, 1}, p3102[] = {3, 1, 0, 2};
    tu_oracle_case(st, "permute_2d", build_permute, p10, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "permute_021", build_permute, p021, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "permute_0231", build_permute, p0231, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "permute_3102", build_permute, p3102, x, 1, 0.0, 0.0);

    int d0 = 0, d1 = 1, dlast = -1;
    tu_oracle_case(st, "concat_0", build_concat, &d0, ab, 2, 0.0, 0.0);
    tu_oracle_case(st, "concat_1", build_concat, &d1, ab, 2, 0.0, 0.0);
    tu_oracle_case(st, "concat_last", build_concat, &dlast, ab, 2, 0.0, 0.0);
    tu_oracle_case(st, "concat_const", build_concat, &d1, ab, 2, 0.0, 0.0);

    narrow_arg n1 = {1, 1, 3}, n2 = {2, 2, 2}, n0 = {0, 1, 2}, nl = {-1, 0, 2};
    tu_oracle_case(st, "narrow_1", build_narrow, &n1, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "narrow_2", build_narrow, &n2, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "narrow_0", build_narrow, &n0, x, 1, 0.0, 0.0);
    tu_oracle_case(st, "narrow_last", build_narrow, &nl, x, 1, 0.0, 0.0);
    da_st_close(st);
}

/* Larger shapes than the gradchecks so that 2 threads really split rows. */
static void test_shape_threads(void **state)
{
    (void)state;
    const int s4[] = {4, 8, 6, 10};
    int p0231[] = {0, 2, 3, 1}, p3102[] = {3, 1, 0, 2}, p021[] = {0, 2, 1};
    tu_case c = case1(4, s4, 200u);
    tu_check_threads("permute (0,2,3,1)", build_permute, p0231, &c);
    tu_check_threads("permute (3,1,0,2)", build_permute, p3102, &c);
    narrow_arg n1 = {1, 2, 5}, n3 = {3, 3, 4};
    tu_check_threads("narrow dim 1", build_narrow, &n1, &c);
    tu_check_threads("narrow dim 3", build_narrow, &n3, &c);
    shape_arg r = {2, {32, 60}};
    tu_check_threads("reshape", build_reshape, &r, &c);
    free_case(&c);
    const int s3[] = {8, 12, 10};
    c = case1(3, s3, 210u);
    tu_check_threads("permute (0,2,1)", build_permute, p021, &c);
    tu_check_threads("split and swap", build_split_swap, NULL, &c);
    free_case(&c);
    int d0 = 0, d1 = 1, dlast = -1;
    c = case2(3, (const int[]){8, 12, 10}, (const int[]){3, 12, 10}, 220u);
    tu_check_threads("concat dim 0", build_concat, &d0, &c);
    free_case(&c);
    c = case2(3, (const int[]){8, 12, 10}, (const int[]){8, 5, 10}, 230u);
    tu_check_threads("concat dim 1", build_concat, &d1, &c);
    free_case(&c);
    c = case2(3, (const int[]){8, 12, 10}, (const int[]){8, 12, 7}, 240u);
    tu_check_threads("concat dim -1", build_concat, &dlast, &c);
    free_case(&c);
}

/* Permutes that are a batch of matrix transposes run 8 x 8 blocks
 * (ops_shape.c:transposes; in registers under the AVX copies). Output and
 * gradient, bit for bit, against the index arithmetic of the definition,
 * under every vector copy the CPU runs: sizes with and without remainders
 * of 8 on both sides, a batch of one (a single matrix, also one cut into
 * pieces of 64 rows), a dim of 1 among the others, and the transformer's
 * two permutes at the UNet's sizes. A
 * block stored at the wrong row or column, or a remainder skipped, fails
 * it. */
static void test_permute_transposes(void **state)
{
    (void)state;
    static const struct { int nd, shape[4], perm[4]; } cases[] = {
        {4, {2, 24, 4, 5}, {0, 2, 3, 1}}, {4, {2, 4, 5, 24}, {0, 3, 1, 2}}, {4, {1, 64, 8, 8}, {0, 2, 3, 1}},
        {4, {3, 64, 8, 8}, {0, 2, 3, 1}}, {4, {3, 8, 8, 128}, {0, 3, 1, 2}}, {2, {16, 19}, {1, 0}},
        {4, {3, 8, 1, 16}, {0, 2, 3, 1}}, {3, {5, 9, 17}, {0, 2, 1}},
        {4, {1, 24, 10, 13}, {0, 2, 3, 1}}, /* one matrix of 130 rows: three pieces, the last partial */
    };
    const char *saved = da_isa(), *isas[3] = {"base", "avx2", "avx512"};
    int n_run = 0;
    for (int k = 0; k < 3; k++) {
        if (da_set_isa(isas[k]) != DA_OK) continue; /* not on this CPU */
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            int nd = cases[ci].nd;
            const int *sh = cases[ci].shape, *perm = cases[ci].perm;
            tu_case c = case1(nd, sh, 700u + (uint32_t)ci);
            size_t n = 1, str[4], ostr[4];
            int osh[4];
            for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
            for (int d = nd - 1, st = 1; d >= 0; st *= sh[d], d--) str[d] = (size_t)st;
            for (int d = 0; d < nd; d++) osh[d] = sh[perm[d]];
            for (int d = nd - 1, st = 1; d >= 0; st *= osh[d], d--) ostr[d] = (size_t)st;
            float *dout = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float)), *gwant = malloc(n * sizeof(float));
            assert_true(dout && want && gwant);
            tu_fill(dout, n, 800u + (uint32_t)ci, -1.0f, 1.0f);
            for (size_t o = 0; o < n; o++) { /* out[o] = x[the input offset of o's index] */
                size_t rem = o, off = 0;
                for (int d = 0; d < nd; d++) {
                    off += (rem / ostr[d]) * str[perm[d]];
                    rem %= ostr[d];
                }
                want[o] = c.data[0][off];
                gwant[off] = dout[o];
            }
            tu_result r = tu_run(build_permute, (void *)perm, &c, dout);
            char what[96];
            snprintf(what, sizeof what, "permute %zu (%s): out", ci, isas[k]);
            tu_assert_bits(what, r.out, want, n);
            snprintf(what, sizeof what, "permute %zu (%s): grad", ci, isas[k]);
            tu_assert_bits(what, r.grad[0], gwant, n);
            tu_result_free(&r);
            free(dout);
            free(want);
            free(gwant);
            free_case(&c);
            n_run++;
        }
    }
    assert_int_equal(da_set_isa(saved), DA_OK);
    assert_true(n_run >= 9);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape_view),
        cmocka_unit_test(test_shape_known),
        cmocka_unit_test(test_shape_gradcheck),
        cmocka_unit_test(test_shape_vs_torch),
        cmocka_unit_test(test_shape_threads),
        cmocka_unit_test(test_permute_transposes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
