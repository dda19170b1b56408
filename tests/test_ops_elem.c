/* Broadcasting add/sub/mul, scale and add-scalar: finite differences,
 * PyTorch reference, threads. */
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static da_tensor *build_add(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_add(t, in[0], in[1]);
}

static da_tensor *build_sub(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_sub(t, in[0], in[1]);
}

static da_tensor *build_mul(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_mul(t, in[0], in[1]);
}

/* x * x: both gradient paths accumulate into the same buffer */
static da_tensor *build_square(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_mul(t, in[0], in[0]);
}

/* (a - b) * b + a: a and b each feed two ops */
static da_tensor *build_chain(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_add(t, da_mul(t, da_sub(t, in[0], in[1]), in[1]), in[0]);
}

static da_tensor *build_scale(da_tape *t, da_tensor **in, void *ctx)
{
    return da_scale(t, in[0], *(const float *)ctx);
}

static da_tensor *build_add_scalar(da_tape *t, da_tensor **in, void *ctx)
{
    return da_add_scalar(t, in[0], *(const float *)ctx);
}

typedef struct op_entry {
    const char *name;
    tu_build_fn fn;
} op_entry;

static const op_entry binary_ops[] = {{"add", build_add}, {"sub", build_sub}, {"mul", build_mul}};

/* Broadcast patterns: a's shape, then b's (right-aligned against a's). */
typedef struct bcast_shape {
    int na, a[DA_MAX_DIMS];
    int nb, b[DA_MAX_DIMS];
} bcast_shape;

static const bcast_shape patterns[] = {
    {3, {2, 3, 4}, 3, {2, 3, 4}},         /* equal shapes: the flat path */
    {3, {2, 3, 4}, 1, {4}},               /* bias (C) over (N, T, C) */
    {4, {2, 3, 4, 5}, 3, {3, 1, 1}},      /* per-channel over (N, C, H, W) */
    {4, {2, 3, 4, 5}, 4, {2, 3, 1, 1}},   /* timestep embedding */
    {4, {2, 3, 4, 5}, 4, {2, 1, 1, 1}},   /* per-sample scalars */
    {4, {2, 3, 4, 5}, 4, {2, 1, 4, 1}},   /* alternating broadcast dims */
    {2, {2, 3}, 2, {1, 3}},               /* leading 1 */
    {3, {2, 3, 4}, 1, {1}},               /* scalar-like */
    {3, {2, 3, 4}, 0, {0}},               /* 0-d scalar */
    {3, {2, 1, 4}, 2, {1, 4}},            /* a has a dim of size 1 */
};
#define N_PATTERNS (sizeof patterns / sizeof patterns[0])

static tu_case pattern_case(const bcast_shape *p, uint32_t seed, int grad_a, int grad_b)
{
    tu_case c = {.n_in = 2, .ndim = {p->na, p->nb}, .needs_grad = {grad_a, grad_b}};
    memcpy(c.shape[0], p->a, sizeof p->a);
    memcpy(c.shape[1], p->b, sizeof p->b);
    for (int i = 0; i < 2; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(c.ndim[i], c.shape[i]), seed + i, -1.0f, 1.0f);
    return c;
}

static tu_case unary_case(int ndim, const int *shape, uint32_t seed)
{
    tu_case c = {.n_in = 1, .ndim = {ndim}, .needs_grad = {1}};
    memcpy(c.shape[0], shape, (size_t)ndim * sizeof(int));
    c.data[0] = tu_alloc_fill(da_shape_size(ndim, shape), seed, -1.0f, 1.0f);
    return c;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* Finite differences with eps 1e-2. add/sub/mul are linear in each single
 * input element, so the central difference has no truncation error; what is
 * left is the f32 rounding of each output the perturbed element touches
 * (<= 2^-24 * |out| <= 1.2e-7, |out| < 2) divided by 2*eps, i.e. <= 1.2e-5
 * per touched output, times at most 120 touched outputs (scalar-like b over
 * (2, 3, 4, 5)) and |dout| < 1: <= 1.5e-3 in the worst case, far less in
 * practice (the roundings have random signs). */
static void test_elem_gradcheck(void **state)
{
    (void)state;
    char what[64];
    for (size_t p = 0; p < N_PATTERNS; p++) {
        for (int k = 0; k < 3; k++) {
            tu_case c = pattern_case(&patterns[p], 100u + 7u * (uint32_t)p, 1, 1);
            snprintf(what, sizeof what, "%s pattern %zu", binary_ops[k].name, p);
            tu_gradcheck(what, binary_ops[k].fn, NULL, &c, 1e-2, 2e-3, 2e-3);
            free_case(&c);
        }
    }
    /* only one side wants a gradient */
    tu_case c = pattern_case(&patterns[3], 300u, 1, 0);
    tu_gradcheck("mul, b constant", build_mul, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = pattern_case(&patterns[3], 310u, 0, 1);
    tu_gradcheck("mul, a constant", build_mul, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    /* x * x is quadratic in x: the central difference is still exact */
    const int sq[] = {2, 3, 4};
    c = unary_case(3, sq, 320u);
    tu_gradcheck("x * x", build_square, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = pattern_case(&patterns[1], 330u, 1, 1);
    tu_gradcheck("(a - b) * b + a", build_chain, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
}

/* scale and add-scalar are affine: same reasoning as above, one output per input */
static void test_scalar_gradcheck(void **state)
{
    (void)state;
    const int shape[] = {2, 3, 4};
    float s = 0.37f, c0 = -0.3f;
    tu_case c = unary_case(3, shape, 400u);
    tu_gradcheck("scale", build_scale, &s, &c, 1e-2, 1e-4, 1e-4);
    tu_gradcheck("add_scalar", build_add_scalar, &c0, &c, 1e-2, 1e-4, 1e-4);
    free_case(&c);
}

/* The forward values, a tiny known case: (2, 3) op (3) and op (2, 1). */
static void test_elem_known(void **state)
{
    (void)state;
    float a[6] = {1, 2, 3, 4, 5, 6}, row[3] = {10, 20, 30}, col[2] = {-1, 2};
    const float add_row[6] = {11, 22, 33, 14, 25, 36};
    const float mul_col[6] = {-1, -2, -3, 8, 10, 12};
    const float sub_col[6] = {2, 3, 4, 2, 3, 4};
    tu_case c = {.n_in = 2, .ndim = {2, 1}, .shape = {{2, 3}, {3}}, .data = {a, row}, .needs_grad = {1, 1}};
    const float ones[6] = {1, 1, 1, 1, 1, 1};
    tu_result r = tu_run(build_add, NULL, &c, ones);
    tu_assert_bits("add row", r.out, add_row, 6);
    const float db_row[3] = {2, 2, 2};   /* each b element feeds 2 outputs */
    tu_assert_bits("add row: db", r.grad[1], db_row, 3);
    tu_result_free(&r);
    tu_case c2 = {.n_in = 2, .ndim = {2, 2}, .shape = {{2, 3}, {2, 1}}, .data = {a, col}, .needs_grad = {1, 1}};
    r = tu_run(build_mul, NULL, &c2, ones);
    tu_assert_bits("mul col", r.out, mul_col, 6);
    const float da_col[6] = {-1, -1, -1, 2, 2, 2}, db_col[2] = {6, 15};
    tu_assert_bits("mul col: da", r.grad[0], da_col, 6);
    tu_assert_bits("mul col: db", r.grad[1], db_col, 2);
    tu_result_free(&r);
    r = tu_run(build_sub, NULL, &c2, ones);
    tu_assert_bits("sub col", r.out, sub_col, 6);
    const float dbs[2] = {-3, -3};
    tu_assert_bits("sub col: db", r.grad[1], dbs, 2);
    tu_result_free(&r);
}

/* Compare the output and the gradient of a with PyTorch bit for bit: each is
 * one f32 operation per element in both implementations. */
static void oracle_bits(da_safetensors *st, const char *cs, tu_build_fn fn, void *ctx, int n_in)
{
    static const char *names[] = {"a", "b"};
    char name[128];
    tu_case c = {.n_in = n_in};
    for (int i = 0; i < n_in; i++) {
        snprintf(name, sizeof name, "%s.%s", cs, n_in == 1 ? "x" : names[i]);
        c.ndim[i] = tu_ref_shape(st, name, c.shape[i]);
        c.data[i] = tu_ref(st, name, 0);
        c.needs_grad[i] = 1;
    }
    snprintf(name, sizeof name, "%s.out", cs);
    float *want = tu_ref(st, name, 0);
    snprintf(name, sizeof name, "%s.dout", cs);
    float *dout = tu_ref(st, name, 0);
    tu_result r = tu_run(fn, ctx, &c, dout);
    snprintf(name, sizeof name, "%s.grad.%s", cs, n_in == 1 ? "x" : "a");
    float *ga = tu_ref(st, name, da_shape_size(c.ndim[0], c.shape[0]));
    snprintf(name, sizeof name, "%s: forward bits vs PyTorch", cs);
    tu_assert_bits(name, r.out, want, r.out_n);
    snprintf(name, sizeof name, "%s: grad of a, bits vs PyTorch", cs);
    tu_assert_bits(name, r.grad[0], ga, da_shape_size(c.ndim[0], c.shape[0]));
    tu_result_free(&r);
    free(ga);
    free(want);
    free(dout);
    free_case(&c);
}

typedef struct oracle_entry {
    const char *name;
    tu_build_fn fn;
    int reduces;   /* b is broadcast: its gradient is a sum over broadcast dims */
} oracle_entry;

static const oracle_entry oracle_cases[] = {
    {"add_same", build_add, 0},   {"sub_same", build_sub, 0},   {"mul_same", build_mul, 0},
    {"add_bias", build_add, 1},   {"sub_bias", build_sub, 1},   {"mul_bias", build_mul, 1},
    {"mul_chan", build_mul, 1},   {"add_temb", build_add, 1},   {"mul_temb", build_mul, 1},
    {"mul_sample", build_mul, 1}, {"sub_sample", build_sub, 1}, {"mul_row", build_mul, 1},
    {"add_one", build_add, 1},    {"mul_one", build_mul, 1},    {"mul_alt", build_mul, 1},
};
#define N_ORACLE (sizeof oracle_cases / sizeof oracle_cases[0])

static void test_elem_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_elem");
    const char *ab[] = {"a", "b"};
    for (size_t i = 0; i < N_ORACLE; i++) {
        const oracle_entry *e = &oracle_cases[i];
        oracle_bits(st, e->name, e->fn, NULL, 2);
        /* Without a reduction every value is one f32 op in both: exact.
         * With one, PyTorch sums db (up to 60 terms of |x| < ~5) in its own
         * (vectorised) order and we sum row-major: the two differ by a few
         * ulp of the partial sums (~1e-6 at most), so 1e-5 is ample. */
        double tol = e->reduces ? 1e-5 : 0.0;
        tu_oracle_case(st, e->name, e->fn, NULL, ab, 2, tol, tol);
    }
    /* b without a gradient in the file: treated as a constant */
    tu_oracle_case(st, "mul_const", build_mul, NULL, ab, 2, 0.0, 0.0);
    /* PyTorch rounds the Python scalar to f32 and does one f32 op: exact */
    const char *x[] = {"x"};
    float s = 0.37f, c0 = -0.3f;
    oracle_bits(st, "scale", build_scale, &s, 1);
    tu_oracle_case(st, "scale", build_scale, &s, x, 1, 0.0, 0.0);
    oracle_bits(st, "add_scalar", build_add_scalar, &c0, 1);
    tu_oracle_case(st, "add_scalar", build_add_scalar, &c0, x, 1, 0.0, 0.0);
    da_st_close(st);
}

/* Bigger shapes than the gradchecks so that 2 threads really split rows and
 * db elements. */
static void test_elem_threads(void **state)
{
    (void)state;
    static const bcast_shape big[] = {
        {3, {4, 16, 32}, 3, {4, 16, 32}},
        {3, {4, 16, 32}, 1, {32}},
        {4, {4, 8, 6, 6}, 4, {4, 8, 1, 1}},
        {4, {4, 8, 6, 6}, 3, {8, 1, 1}},
        {4, {4, 8, 6, 6}, 4, {4, 1, 1, 1}},
        {4, {4, 8, 6, 6}, 4, {4, 1, 6, 1}},
        {3, {4, 8, 6}, 1, {1}},
    };
    char what[64];
    for (size_t p = 0; p < sizeof big / sizeof big[0]; p++) {
        for (int k = 0; k < 3; k++) {
            tu_case c = pattern_case(&big[p], 500u + (uint32_t)p, 1, 1);
            snprintf(what, sizeof what, "%s big pattern %zu", binary_ops[k].name, p);
            tu_check_threads(what, binary_ops[k].fn, NULL, &c);
            free_case(&c);
        }
    }
    const int shape[] = {4, 16, 32};
    float s = 0.37f;
    tu_case c = unary_case(3, shape, 600u);
    tu_check_threads("scale", build_scale, &s, &c);
    tu_check_threads("add_scalar", build_add_scalar, &s, &c);
    tu_check_threads("x * x", build_square, NULL, &c);
    free_case(&c);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_elem_known),
        cmocka_unit_test(test_elem_gradcheck),
        cmocka_unit_test(test_scalar_gradcheck),
        cmocka_unit_test(test_elem_vs_torch),
        cmocka_unit_test(test_elem_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
