/* linear and batched matmul: finite differences, PyTorch reference, threads. */
#include "test_util.h"

#include <string.h>

#include <stdlib.h>

static da_tensor *build_linear(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_linear(t, in[0], in[1], in[2]);
}

static da_tensor *build_linear_nobias(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_linear(t, in[0], in[1], NULL);
}

static da_tensor *build_matmul(da_tape *t, da_tensor **in, void *ctx)
{
    (void)ctx;
    return da_matmul(t, in[0], in[1]);
}

static tu_case linear_case(void)
{
    tu_case c = {.n_in = 3, .ndim = {3, 2, 1},
                 .shape = {{2, 3, 7}, {5, 7}, {5}}, .needs_grad = {1, 1, 1}};
    for (int i = 0; i < 3; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(c.ndim[i], c.shape[i]), 10u + i, -1.0f, 1.0f);
    return c;
}

static tu_case matmul_case(void)
{
    tu_case c = {.n_in = 2, .ndim = {3, 3}, .shape = {{3, 4, 5}, {3, 5, 6}}, .needs_grad = {1, 1}};
    for (int i = 0; i < 2; i++)
        c.data[i] = tu_alloc_fill(da_shape_size(c.ndim[i], c.shape[i]), 20u + i, -1.0f, 1.0f);
    return c;
}

static void free_case(tu_case *c)
{
    for (int i = 0; i < c->n_in; i++) free(c->data[i]);
}

/* Linear maps are exact under central differences up to f32 rounding of the
 * forward (~1e-7 relative per term over ~40 terms / 2 eps): 2e-3 is ample. */
static void test_linear_gradcheck(void **state)
{
    (void)state;
    tu_case c = linear_case();
    tu_gradcheck("linear", build_linear, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
    c = matmul_case();
    tu_gradcheck("matmul", build_matmul, NULL, &c, 1e-2, 2e-3, 2e-3);
    free_case(&c);
}

/* f32 GEMM against PyTorch's f32 GEMM: different summation orders, K <= 9,
 * values ~N(0,1): errors stay at a few ulp of the row norm. */
static void test_linear_vs_torch(void **state)
{
    (void)state;
    da_safetensors *st = tu_oracle("ops_linear");
    const char *lin[] = {"x", "w", "b"};
    tu_oracle_case(st, "linear", build_linear, NULL, lin, 3, 1e-5, 1e-5);
    tu_oracle_case(st, "linear_nobias", build_linear_nobias, NULL, lin, 2, 1e-5, 1e-5);
    const char *mm[] = {"a", "b"};
    tu_oracle_case(st, "matmul", build_matmul, NULL, mm, 2, 1e-5, 1e-5);
    da_st_close(st);
}

static void test_linear_threads(void **state)
{
    (void)state;
    tu_case c = linear_case();
    tu_check_threads("linear", build_linear, NULL, &c);
    free_case(&c);
    c = matmul_case();
    tu_check_threads("matmul", build_matmul, NULL, &c);
    free_case(&c);
}

/* Zero-width inputs: linear over C = 0 features gives the bias (an empty
 * sum), a matmul over K = 0 gives zeros, and neither divides by zero. */
static void test_linear_zero_width(void **state)
{
    (void)state;
    da_tape t;
    da_tape_init(&t, 1 << 16);
    da_tape_set_grad(&t, 0);
    float dummy[1] = {0.0f}, bias[3] = {1.0f, 2.0f, 3.0f};
    int xs[2] = {2, 0}, ws[2] = {3, 0}, bs[1] = {3};
    da_tensor *y = da_linear(&t, da_leaf(&t, dummy, NULL, 2, xs), da_leaf(&t, dummy, NULL, 2, ws),
                             da_leaf(&t, bias, NULL, 1, bs));
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[1], 3);
    for (int i = 0; i < 6; i++) assert_true(y->data[i] == bias[i % 3]);
    int as[3] = {2, 2, 0}, bs2[3] = {2, 0, 3};
    da_tensor *m = da_matmul(&t, da_leaf(&t, dummy, NULL, 3, as), da_leaf(&t, dummy, NULL, 3, bs2));
    assert_int_equal(m->size, 12);
    for (size_t i = 0; i < m->size; i++) assert_true(m->data[i] == 0.0f);
    da_tape_free(&t);
}

/* dbias is each channel's sum over the rows in order, added to dbias: the
 * bits of the plain loop (the kernel runs channels side by side) */
static void test_linear_dbias_bits(void **state)
{
    (void)state;
    static const int shapes[][4] = {{32, 64, 8, 256}, {3, 7, 5, 70}, {1, 1, 2, 1}, {2, 16, 4, 129}};
    for (int s = 0; s < 4; s++) {
        int B = shapes[s][0], T = shapes[s][1], C = shapes[s][2], OC = shapes[s][3], N = B * T;
        float *dout = tu_alloc_fill((size_t)N * OC, 50u + (uint32_t)s, -3.0f, 3.0f);
        float *db = tu_alloc_fill((size_t)OC, 60u + (uint32_t)s, -1.0f, 1.0f), *want = malloc((size_t)OC * sizeof(float));
        for (int o = 0; o < OC; o++) {
            float acc = 0.0f;
            for (int n = 0; n < N; n++) acc += dout[(size_t)n * OC + o];
            want[o] = db[o] + acc;
        }
        for (int nth = 1; nth <= 2; nth++) {
            float *got = malloc((size_t)OC * sizeof(float));
            memcpy(got, db, (size_t)OC * sizeof(float));
            int keep = da_get_threads();
            da_set_threads(nth);
            da_linear_backward(NULL, NULL, got, dout, NULL, NULL, B, T, C, OC);
            da_set_threads(keep);
            tu_assert_bits("linear dbias vs the ordered sum", got, want, (size_t)OC);
            free(got);
        }
        free(dout), free(db), free(want);
    }
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_dbias_bits),
        cmocka_unit_test(test_linear_gradcheck),
        cmocka_unit_test(test_linear_vs_torch),
        cmocka_unit_test(test_linear_threads),
        cmocka_unit_test(test_linear_zero_width),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
