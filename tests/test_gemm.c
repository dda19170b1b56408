/* GEMM: the portable blocked kernel and the da_gemm dispatch (OpenBLAS in the
 * default build) against a double-precision reference on odd shapes, every
 * transpose combination, padded leading dimensions and BLAS alpha/beta
 * semantics; plus thread-count determinism. */
#include "test_util.h"
#include "core/gemm_packer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C_SENTINEL 12345.0f /* C's padding columns: must never be written */

typedef void (*gemm_fn)(int, int, int, int, int, float, const float *, int, const float *, int,
                        float, float *, int);

/* A rows x cols matrix stored with leading dimension cols + pad. Padding holds
 * `pad_value`: NaN in inputs (a read of it would poison the result), a
 * sentinel in C (a write to it is caught). */
typedef struct mat {
    float *p;
    int rows, cols, ld;
} mat;

static mat mat_new(int rows, int cols, int pad, uint32_t seed, float pad_value)
{
    mat m = {NULL, rows, cols, cols + pad > 0 ? cols + pad : 1}; /* BLAS wants ld >= 1 */
    size_t n = (size_t)rows * m.ld;
    m.p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(m.p);
    for (int r = 0; r < rows; r++) {
        tu_fill(m.p + (size_t)r * m.ld, (size_t)cols, seed * 7919u + (uint32_t)r, -1.0f, 1.0f);
        for (int c = cols; c < m.ld; c++) m.p[(size_t)r * m.ld + c] = pad_value;
    }
    return m;
}

static mat mat_copy(const mat *a)
{
    mat m = *a;
    size_t n = (size_t)a->rows * a->ld;
    m.p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(m.p);
    memcpy(m.p, a->p, n * sizeof(float));
    return m;
}

static void mat_fill(mat *m, float v)
{
    for (int r = 0; r < m->rows; r++)
        for (int c = 0; c < m->cols; c++) m->p[(size_t)r * m->ld + c] = v;
}

/* op(X)[i][j] for X stored as (rows, cols) with trans: X^T */
static float op_at(const mat *x, int trans, int i, int j)
{
    return trans ? x->p[(size_t)j * x->ld + i] : x->p[(size_t)i * x->ld + j];
}

typedef struct gemm_case {
    int M, N, K, ta, tb, pad;
    float alpha, beta;
} gemm_case;

typedef struct gemm_inputs {
    mat A, B, C0;
} gemm_inputs;

static gemm_inputs inputs_new(const gemm_case *c, uint32_t seed)
{
    gemm_inputs in;
    in.A = c->ta ? mat_new(c->K, c->M, c->pad, seed, NAN) : mat_new(c->M, c->K, c->pad, seed, NAN);
    in.B = c->tb ? mat_new(c->N, c->K, c->pad, seed + 1, NAN) : mat_new(c->K, c->N, c->pad, seed + 1, NAN);
    in.C0 = mat_new(c->M, c->N, c->pad, seed + 2, C_SENTINEL);
    /* beta == 0 must overwrite C without reading it (BLAS): start from NaN */
    if (c->beta == 0.0f) mat_fill(&in.C0, NAN);
    return in;
}

static void inputs_free(gemm_inputs *in)
{
    free(in->A.p);
    free(in->B.p);
    free(in->C0.p);
}

static mat run_gemm(gemm_fn fn, const gemm_case *c, const gemm_inputs *in)
{
    mat C = mat_copy(&in->C0);
    fn(c->ta, c->tb, c->M, c->N, c->K, c->alpha, in->A.p, in->A.ld, in->B.p, in->B.ld, c->beta,
       C.p, C.ld);
    return C;
}

/* The loop the portable kernel promises to reproduce bit for bit: f32 sum from
 * 0 with k ascending, then alpha*s + beta*c (K == 0 or alpha == 0: beta*c,
 * and beta == 0 never reads C). */
static mat naive_f32(const gemm_case *c, const gemm_inputs *in)
{
    mat C = mat_copy(&in->C0);
    for (int i = 0; i < c->M; i++) {
        for (int j = 0; j < c->N; j++) {
            float *out = &C.p[(size_t)i * C.ld + j];
            if (c->K == 0 || c->alpha == 0.0f) {
                *out = c->beta == 0.0f ? 0.0f : c->beta * *out;
                continue;
            }
            float s = 0.0f;
            for (int p = 0; p < c->K; p++) s += op_at(&in->A, c->ta, i, p) * op_at(&in->B, c->tb, p, j);
            *out = c->beta == 0.0f ? c->alpha * s : c->alpha * s + c->beta * *out;
        }
    }
    return C;
}

static const char *case_str(const gemm_case *c, char *buf, size_t n)
{
    snprintf(buf, n, "M=%d N=%d K=%d trans_a=%d trans_b=%d pad=%d alpha=%g beta=%g", c->M, c->N,
             c->K, c->ta, c->tb, c->pad, c->alpha, c->beta);
    return buf;
}

/* Reference value of C[i][j] in double, and its tolerance. Recursive f32
 * summation of K products errs by at most ~K * 2^-24 * sum|a*b| (Higham,
 * Accuracy and Stability, eq. 3.5); alpha*s, beta*c and the final add cost
 * three more roundings. Any summation order (OpenBLAS's FMA and blocked sums
 * included) obeys the same bound, so one formula serves both kernels. A
 * missing or doubled term errs by ~|a*b| ~ 0.3, far above it. */
static double ref_at(const gemm_case *c, const gemm_inputs *in, int i, int j, double *tol)
{
    double s = 0.0, bound = 0.0;
    if (c->alpha != 0.0f) {
        for (int p = 0; p < c->K; p++) {
            double t = (double)op_at(&in->A, c->ta, i, p) * op_at(&in->B, c->tb, p, j);
            s += t;
            bound += fabs(t);
        }
    }
    double want = c->alpha * s, c0 = in->C0.p[(size_t)i * in->C0.ld + j];
    bound *= fabs(c->alpha);
    if (c->beta != 0.0f) {
        want += c->beta * c0;
        bound += fabs(c->beta * c0);
    }
    *tol = (c->K + 4) * 0x1p-24 * bound;
    return want;
}

/* got against the double reference, element by element; C's padding
 * columns must not have been written. */
static void check_ref(const char *who, const gemm_case *c, const gemm_inputs *in, const mat *got)
{
    char buf[160];
    for (int i = 0; i < c->M; i++) {
        for (int j = 0; j < c->N; j++) {
            double tol, want = ref_at(c, in, i, j, &tol);
            double g = got->p[(size_t)i * got->ld + j];
            if (!(fabs(g - want) <= tol))
                fail_msg("%s, %s: C[%d][%d] = %.9g, want %.9g (tol %.3g)", who,
                         case_str(c, buf, sizeof buf), i, j, g, want, tol);
        }
        for (int j = c->N; j < got->ld; j++)
            if (got->p[(size_t)i * got->ld + j] != C_SENTINEL)
                fail_msg("%s, %s: padding C[%d][%d] was written", who, case_str(c, buf, sizeof buf), i, j);
    }
}

static void check_bits(const char *who, const gemm_case *c, const mat *got, const mat *want)
{
    char buf[160], label[320];
    snprintf(label, sizeof label, "%s, %s", who, case_str(c, buf, sizeof buf));
    tu_assert_bits(label, got->p, want->p, (size_t)got->rows * got->ld);
}

/* Shapes: scalars, primes below one register tile, edge tiles in both
 * directions, vectors, K = 0, several K slices (K > 128) and several column
 * tasks (N > 512) of the blocked kernel. */
static const int shapes[][3] = {
    {1, 1, 1}, {7, 13, 5}, {16, 16, 16}, {257, 129, 65}, {1, 300, 1},
    {300, 1, 7}, {5, 6, 0}, {37, 520, 300},
};
static const float alpha_beta[][2] = {{1.0f, 0.0f}, {0.5f, 0.0f}, {0.5f, 1.0f}, {0.5f, -2.0f}};

/* Every shape x transpose pair x (alpha, beta); the leading dimension is
 * padded in half of them, so each transpose pair sees both layouts. */
static void test_gemm_shapes(void **state)
{
    (void)state;
    int n_cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int t = 0; t < 4; t++) {
            for (int ab = 0; ab < 4; ab++) {
                gemm_case c = {shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1,
                               (t + ab) % 2 ? 3 : 0, alpha_beta[ab][0], alpha_beta[ab][1]};
                gemm_inputs in = inputs_new(&c, 100u + (uint32_t)n_cases);
                mat naive = naive_f32(&c, &in);
                mat port = run_gemm(da_gemm_portable, &c, &in);
                mat disp = run_gemm(da_gemm, &c, &in);
                check_ref("da_gemm_portable", &c, &in, &port);
                check_ref(da_gemm_backend(), &c, &in, &disp);
                /* the blocked kernel keeps the naive summation order exactly */
                check_bits("da_gemm_portable vs naive f32 loop", &c, &port, &naive);
                free(naive.p);
                free(port.p);
                free(disp.p);
                inputs_free(&in);
                n_cases++;
            }
        }
    }
    assert_int_equal(n_cases, 8 * 4 * 4);
}

/* The portable GEMM's register tile: 8 x 16 in xmm (base), 4 x 24 in ymm
 * (avx2), 8 x 16 in ymm (avx512, where zmm is not clearly faster), 8 x 32
 * in zmm (avx512). Every tile this CPU runs, under every vector copy that runs it,
 * keeps the naive loop's bits, on shapes with partial tiles in both
 * directions (N = 520 is no multiple of 24 or 32, M = 37 of 8 or 4), with
 * C = A B (whole tiles sum in C itself) and C = 0.5 A B - 2 C (in a buffer),
 * and with leading dimensions of 4 KB (every A sliver packed, C summed in
 * the buffer), several row and column tasks (a packed B reused by the
 * next task of its columns), one thread and two (other task cuts). A tile the copy in use cannot run
 * falls back to the widest it can, and an unknown name is refused. */
static void test_gemm_every_tile(void **state)
{
    (void)state;
    const char *saved = da_isa(), *isas[3] = {"base", "avx2", "avx512"};
    const char *tiles[3] = {"xmm", "ymm", "zmm"};
    /* descs[copy][width]: the ymm tile of avx512 has AVX-512VL's 32 registers */
    const char *descs[3][3] = {{"xmm 8x16"}, {"xmm 8x16", "ymm 4x24"}, {"xmm 8x16", "ymm 8x16", "zmm 8x32"}};
    int saved_threads = da_get_threads(), n_run = 0;
    for (int k = 0; k < 3; k++) {
        if (da_set_isa(isas[k]) != DA_OK) continue; /* not on this CPU */
        for (int tile = 0; tile <= k; tile++) { /* the tiles this copy runs */
            assert_int_equal(da_gemm_set_tile(tiles[tile]), DA_OK);
            assert_string_equal(da_gemm_tile(), descs[k][tile]);
            n_run++;
            /* strides of 4 KB (ld 1024): A packed, C summed in the buffer */
            /* then 2 x 2 tasks (rows and columns) whose packed B, two K
             * slices of it, is kept for the next task of the same columns,
             * and must not be for the next columns' (at one thread, where a
             * thread runs both column blocks) */
            /* and a transposed B whose last K slice (203 = 128 + 75) is no
             * multiple of the 4 x 4 blocks its slivers are gathered in */
            /* and an A of 4 KB rows whose last K slice (1003 = 7 x 128 + 107)
             * is no multiple of the 8 x 8 blocks its slivers are packed in */
            /* and at most 16 columns, where the zmm tile is 8 x 16
             * (narrow_kernel): whole, in C, and an edge of 9 */
            /* and c = alpha s (beta 0), whose whole tiles sum in C and
             * take alpha in the kernel, on the last of three K slices */
            static const gemm_case more[10] = {{37, 1000, 1000, 0, 0, 24, 1.0f, 0.0f},
                                              {37, 1000, 1000, 0, 1, 24, 0.5f, -2.0f},
                                              {1000, 40, 200, 1, 0, 24, 1.0f, 0.0f},
                                              {300, 600, 200, 0, 1, 3, 1.0f, 0.0f},
                                              {40, 96, 203, 0, 1, 5, 1.0f, 0.0f},
                                              {37, 100, 1003, 0, 0, 21, 0.5f, -2.0f},
                                              {37, 16, 300, 0, 1, 3, 1.0f, 0.0f},
                                              {37, 9, 203, 1, 0, 0, 0.5f, -2.0f},
                                              {37, 520, 300, 0, 1, 3, 0.5f, 0.0f},
                                              {37, 16, 300, 1, 1, 0, 0.25f, 0.0f}};
            /* 4 transposes x (alpha 1, beta 0: sums kept in C; 0.5, -2), then more[] */
            for (int t = 0; t < 18; t++) {
                float alpha = t < 4 ? 1.0f : 0.5f, beta = t < 4 ? 0.0f : -2.0f;
                gemm_case c = t < 8 ? (gemm_case){37, 520, 300, (t >> 1) & 1, t & 1, 3, alpha, beta} : more[t - 8];
                gemm_inputs in = inputs_new(&c, 300u + (uint32_t)t);
                mat naive = naive_f32(&c, &in);
                char label[80];
                for (int th = 1; th <= 2; th++) {
                    da_set_threads(th);
                    mat port = run_gemm(da_gemm_portable, &c, &in);
                    snprintf(label, sizeof label, "da_gemm_portable (%s, tile %s, %d threads) vs naive", isas[k],
                             da_gemm_tile(), th);
                    check_bits(label, &c, &port, &naive);
                    free(port.p);
                }
                free(naive.p);
                inputs_free(&in);
            }
        }
        /* too wide for this copy: the widest it runs */
        if (k < 2) {
            assert_int_equal(da_gemm_set_tile("zmm"), DA_OK);
            assert_string_equal(da_gemm_tile(), descs[k][k]);
        }
    }
    assert_int_equal(da_gemm_set_tile("auto"), DA_OK);
    assert_int_equal(da_gemm_set_tile("ymm8"), DA_ERR_INVALID);
    assert_non_null(strstr(da_last_error(), "unknown GEMM tile 'ymm8'"));
    da_set_threads(saved_threads);
    assert_int_equal(da_set_isa(saved), DA_OK);
    assert_true(n_run >= 1); /* base runs everywhere */
}

static float *filled(size_t n, uint32_t seed);

/* want (c's C) = naive_f32 (alpha 1, beta 0), then + the bias (bias_c (N)
 * or bias_r (M)) as a pass after: the bits da_gemm_portable_bias promises */
static mat naive_plus_bias(const gemm_case *c, const gemm_inputs *in, const float *bias_c, const float *bias_r)
{
    mat C = naive_f32(c, in);
    for (int i = 0; i < c->M; i++)
        for (int j = 0; j < c->N; j++) {
            float *out = &C.p[(size_t)i * C.ld + j];
            *out = bias_c ? *out + bias_c[j] : *out + bias_r[i];
        }
    return C;
}

/* The bias epilogue (da_gemm_portable_bias: the kernel adds the bias to its
 * registers on the last K slice) keeps the bits of the sums and a bias pass
 * after, for a column's and a row's bias, under every vector copy and tile
 * and on 1 and 2 threads: edge tiles in both directions (the bias of a
 * partial tile is read from a padded copy), several K slices (added once,
 * on the last), sums kept in C and in the tile buffer (ld of 4 KB), at most
 * 16 columns (narrow_kernel), the naive loop of tiny GEMMs, and K = 0. A
 * bias added on every K slice, to the wrong tile, or with a row's and a
 * column's index swapped fails it. */
static void test_gemm_bias(void **state)
{
    (void)state;
    const char *saved = da_isa(), *isas[3] = {"base", "avx2", "avx512"}, *tiles[3] = {"xmm", "ymm", "zmm"};
    static const gemm_case cases[] = {
        {37, 520, 300, 0, 1, 3, 1.0f, 0.0f}, {37, 520, 300, 1, 0, 0, 1.0f, 0.0f},
        {40, 1024, 70, 0, 0, 0, 1.0f, 0.0f}, {37, 16, 300, 0, 1, 0, 1.0f, 0.0f},
        {64, 9, 24, 0, 0, 2, 1.0f, 0.0f},    {3, 5, 7, 0, 0, 1, 1.0f, 0.0f},
        {5, 6, 0, 0, 0, 1, 1.0f, 0.0f},
    };
    int saved_threads = da_get_threads(), n_run = 0;
    for (int k = 0; k < 3; k++) {
        if (da_set_isa(isas[k]) != DA_OK) continue; /* not on this CPU */
        for (int tile = 0; tile <= k; tile++) {
            assert_int_equal(da_gemm_set_tile(tiles[tile]), DA_OK);
            for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
                const gemm_case *c = &cases[ci];
                gemm_inputs in = inputs_new(c, 500u + (uint32_t)ci);
                for (int by_row = 0; by_row < 2; by_row++) {
                    /* exactly M or N long: a read past it (a partial tile's
                     * bias not taken from the padded copy) is the sanitizer
                     * build's to catch, as those sums are never stored */
                    float *bias = filled((size_t)(by_row ? c->M : c->N), 600u + (uint32_t)ci);
                    const float *bc = by_row ? NULL : bias, *br = by_row ? bias : NULL;
                    mat want = naive_plus_bias(c, &in, bc, br);
                    for (int th = 1; th <= 2; th++) {
                        da_set_threads(th);
                        mat got = mat_copy(&in.C0);
                        da_gemm_portable_bias(c->ta, c->tb, c->M, c->N, c->K, in.A.p, in.A.ld, in.B.p, in.B.ld,
                                              got.p, got.ld, bc, br);
                        char label[128];
                        snprintf(label, sizeof label, "da_gemm_portable_bias (%s, tile %s, %s bias, %d threads)",
                                 isas[k], da_gemm_tile(), by_row ? "row" : "column", th);
                        check_bits(label, c, &got, &want);
                        free(got.p);
                        n_run++;
                    }
                    free(want.p);
                    free(bias);
                }
                inputs_free(&in);
            }
        }
    }
    assert_int_equal(da_gemm_set_tile("auto"), DA_OK);
    da_set_threads(saved_threads);
    assert_int_equal(da_set_isa(saved), DA_OK);
    assert_true(n_run >= 28); /* base runs everywhere */
}

/* da_gemm_items_bias on both backends: each item the bits of da_gemm_items
 * (alpha 1, beta 0) and the bias passes after (a column's bias, then a
 * row's), in linear's layout (rows stacked over a shared B) and conv2d's
 * (columns side by side under a shared A), with a column's bias, a row's
 * and both, for 3 items and for 1: the portable GEMM merges the items into
 * one only where the bias follows, and one merged where it does not, or
 * an item's bias dropped, fails it */
static void test_gemm_items_bias(void **state)
{
    (void)state;
    enum { IT = 3, M = 40, N = 48, K = 150 };
    const char *saved = da_gemm_backend(), *backends[2] = {"portable", "openblas"};
    float *A = filled((size_t)IT * M * K, 11), *B = filled((size_t)IT * K * N, 12), *bias = filled(M + N, 13);
    float *got = malloc((size_t)IT * M * N * sizeof(float)), *want = malloc((size_t)IT * M * N * sizeof(float));
    assert_true(got && want);
    for (int b = 0; b < 2; b++) {
        if (da_gemm_set_backend(backends[b]) != DA_OK) continue; /* not built in */
        for (int layout = 0; layout < 2; layout++)
            for (int kind = 0; kind < 3; kind++)
                for (int items = 1; items <= IT; items += IT - 1) {
                    size_t sa = layout ? 0 : (size_t)M * K, sb = layout ? N : 0, sc = layout ? N : (size_t)M * N;
                    int ldb = layout ? items * N : N, ldc = layout ? items * N : N;
                    const float *bc = kind != 1 ? bias : NULL, *br = kind != 0 ? bias + N : NULL;
                    da_gemm_items_bias(items, sa, sb, sc, 0, 0, M, N, K, A, K, B, ldb, got, ldc, bc, br);
                    da_gemm_items(items, sa, sb, sc, 0, 0, M, N, K, 1.0f, A, K, B, ldb, 0.0f, want, ldc);
                    for (int i = 0; i < items; i++)
                        for (int r = 0; r < M; r++)
                            for (int j = 0; j < N; j++) {
                                float *w = want + i * sc + (size_t)r * ldc + j;
                                if (bc) *w += bc[j];
                                if (br) *w += br[r];
                            }
                    char what[128];
                    snprintf(what, sizeof what, "da_gemm_items_bias, %s, %s, %s bias, %d item(s)", da_gemm_backend(),
                             layout ? "columns side by side" : "rows stacked",
                             kind == 0 ? "column" : kind == 1 ? "row" : "column and row", items);
                    tu_assert_bits(what, got, want, (size_t)items * M * N);
                }
    }
    assert_int_equal(da_gemm_set_backend(saved), DA_OK);
    free(A);
    free(B);
    free(bias);
    free(got);
    free(want);
}

/* The two kernels agree with each other directly: each is within the
 * reference tolerance, so they differ by at most twice of it. Largest case,
 * where the blockings differ most. */
static void test_gemm_portable_vs_backend(void **state)
{
    (void)state;
    char buf[160];
    for (int t = 0; t < 4; t++) {
        gemm_case c = {37, 520, 300, t >> 1, t & 1, 3, 0.5f, -2.0f};
        gemm_inputs in = inputs_new(&c, 7u + (uint32_t)t);
        mat port = run_gemm(da_gemm_portable, &c, &in);
        mat disp = run_gemm(da_gemm, &c, &in);
        for (int i = 0; i < c.M; i++) {
            for (int j = 0; j < c.N; j++) {
                double tol, p = port.p[(size_t)i * port.ld + j], d = disp.p[(size_t)i * disp.ld + j];
                ref_at(&c, &in, i, j, &tol);
                if (!(fabs(p - d) <= 2.0 * tol))
                    fail_msg("portable vs %s, %s: C[%d][%d] %.9g vs %.9g", da_gemm_backend(),
                             case_str(&c, buf, sizeof buf), i, j, p, d);
            }
        }
        free(port.p);
        free(disp.p);
        inputs_free(&in);
    }
}

/* BLAS corner cases, for both functions. */
static void test_gemm_corners(void **state)
{
    (void)state;
    gemm_fn fns[2] = {da_gemm_portable, da_gemm};
    const char *names[2] = {"da_gemm_portable", da_gemm_backend()};
    char label[96];
    for (int f = 0; f < 2; f++) {
        /* M == 0 or N == 0: nothing is touched */
        float C[4] = {1, 2, 3, 4}, A[4] = {1, 1, 1, 1};
        fns[f](0, 0, 0, 2, 2, 1.0f, A, 2, A, 2, 0.0f, C, 2);
        fns[f](0, 0, 2, 0, 2, 1.0f, A, 2, A, 2, 0.0f, C, 2);
        assert_true(C[0] == 1 && C[1] == 2 && C[2] == 3 && C[3] == 4);

        /* K == 0: C = beta * C exactly; beta == 0 overwrites NaN */
        gemm_case c = {5, 6, 0, 0, 0, 2, 0.5f, -2.0f};
        gemm_inputs in = inputs_new(&c, 1u);
        mat got = run_gemm(fns[f], &c, &in);
        mat want = naive_f32(&c, &in);
        snprintf(label, sizeof label, "%s, K == 0", names[f]);
        check_bits(label, &c, &got, &want);
        free(got.p);
        free(want.p);
        inputs_free(&in);
        c.beta = 0.0f;
        in = inputs_new(&c, 2u);
        got = run_gemm(fns[f], &c, &in);
        for (int i = 0; i < c.M; i++)
            for (int j = 0; j < c.N; j++) assert_true(got.p[(size_t)i * got.ld + j] == 0.0f);
        free(got.p);
        inputs_free(&in);

        /* alpha == 0: C = beta * C, and (reference BLAS) A and B are not read,
         * so NaN there stays out. OpenBLAS 0.3.21 does read them (0 * NaN
         * leaks into C); da_gemm returns early for alpha == 0 to keep BLAS
         * semantics, so both functions are checked with NaN inputs. */
        gemm_case z = {40, 50, 60, 1, 0, 1, 0.0f, 0.5f};
        in = inputs_new(&z, 3u);
        mat_fill(&in.A, NAN);
        mat_fill(&in.B, NAN);
        got = run_gemm(fns[f], &z, &in);
        want = naive_f32(&z, &in);
        snprintf(label, sizeof label, "%s, alpha == 0", names[f]);
        check_bits(label, &z, &got, &want);
        free(got.p);
        free(want.p);
        inputs_free(&in);
    }
}

/* 1 and 2 threads give identical bits, for both kernels (the portable one
 * splits C into different tasks for each thread count). */
static void check_threads(gemm_fn fn, const char *who, const gemm_case *c)
{
    int saved = da_get_threads();
    gemm_inputs in = inputs_new(c, 42u);
    da_set_threads(1);
    mat one = run_gemm(fn, c, &in);
    da_set_threads(2);
    mat two = run_gemm(fn, c, &in);
    da_set_threads(saved);
    char label[64];
    snprintf(label, sizeof label, "%s, 1 vs 2 threads", who);
    check_bits(label, c, &two, &one);
    free(one.p);
    free(two.p);
    inputs_free(&in);
}

static void test_gemm_threads(void **state)
{
    (void)state;
    for (int t = 0; t < 4; t++) {
        gemm_case small = {257, 129, 65, t >> 1, t & 1, 1, 0.5f, 1.0f};
        gemm_case big = {300, 300, 300, t >> 1, t & 1, 0, 1.0f, 0.0f};
        check_threads(da_gemm_portable, "da_gemm_portable", &small);
        check_threads(da_gemm_portable, "da_gemm_portable", &big);
        check_threads(da_gemm, da_gemm_backend(), &small);
        check_threads(da_gemm, da_gemm_backend(), &big);
    }
}

/* da_gemm_items: each item has exactly the bits of the same GEMM run alone
 * on copies of its operands (other addresses), for 1 and 2 threads, in the
 * three layouts the ops use: rows stacked over a shared B (linear), columns
 * side by side under a shared A (conv groups), separate A, B, C (matmul).
 * The shape gives several pieces per item. Both backends where built. */
static float *filled(size_t n, uint32_t seed)
{
    float *p = malloc(n * sizeof(float));
    da_rng g;
    da_rng_seed(&g, seed);
    da_randn(&g, p, n);
    return p;
}

static void check_items_layout(int layout, int threads)
{
    enum { IT = 5, M = 64, N = 96, K = 200 };
    float *A = filled((size_t)IT * M * K, 1), *B = filled((size_t)IT * K * N, 2);
    float *C = filled((size_t)IT * M * N, 3), *C0 = malloc((size_t)IT * M * N * sizeof(float));
    memcpy(C0, C, (size_t)IT * M * N * sizeof(float));
    size_t sa, sb, sc;
    int lda = K, ldb = N, ldc = N;
    if (layout == 0) { sa = (size_t)M * K; sb = 0; sc = (size_t)M * N; }         /* linear */
    else if (layout == 1) { sa = 0; sb = N; sc = N; ldb = IT * N; ldc = IT * N; } /* conv group */
    else { sa = (size_t)M * K; sb = (size_t)K * N; sc = (size_t)M * N; }         /* matmul */
    int saved = da_get_threads();
    da_set_threads(threads);
    da_gemm_items(IT, sa, sb, sc, 0, 0, M, N, K, 0.5f, A, lda, B, ldb, 1.0f, C, ldc);
    for (int i = 0; i < IT; i++) {
        /* item i alone, from contiguous copies */
        float *a = malloc((size_t)M * K * sizeof(float)), *b = malloc((size_t)K * N * sizeof(float));
        float *c = malloc((size_t)M * N * sizeof(float)), *got = malloc((size_t)M * N * sizeof(float));
        for (int r = 0; r < M; r++) memcpy(a + (size_t)r * K, A + i * sa + (size_t)r * lda, K * sizeof(float));
        for (int r = 0; r < K; r++) memcpy(b + (size_t)r * N, B + i * sb + (size_t)r * ldb, N * sizeof(float));
        for (int r = 0; r < M; r++) {
            memcpy(c + (size_t)r * N, C0 + i * sc + (size_t)r * ldc, N * sizeof(float));
            memcpy(got + (size_t)r * N, C + i * sc + (size_t)r * ldc, N * sizeof(float));
        }
        da_gemm(0, 0, M, N, K, 0.5f, a, K, b, N, 1.0f, c, N);
        char what[128];
        snprintf(what, sizeof what, "%s, layout %d, %d thread(s): item %d vs alone", da_gemm_backend(), layout,
                 threads, i);
        tu_assert_bits(what, got, c, (size_t)M * N);
        free(a);
        free(b);
        free(c);
        free(got);
    }
    da_set_threads(saved);
    free(A);
    free(B);
    free(C);
    free(C0);
}

static void test_gemm_items(void **state)
{
    (void)state;
    const char *saved = da_gemm_backend();
    const char *backends[2] = {"portable", "openblas"};
    for (int b = 0; b < 2; b++) {
        if (da_gemm_set_backend(backends[b]) != DA_OK) continue; /* not built in */
        for (int layout = 0; layout < 3; layout++)
            for (int t = 1; t <= 2; t++) check_items_layout(layout, t);
    }
    assert_int_equal(da_gemm_set_backend(saved), DA_OK);
    assert_int_equal(da_gemm_set_backend("cuda"), DA_ERR_INVALID);
}

int main(void)
{
    da_threads_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_shapes),
        cmocka_unit_test(test_gemm_every_tile),
        cmocka_unit_test(test_gemm_portable_vs_backend),
        cmocka_unit_test(test_gemm_corners),
        cmocka_unit_test(test_gemm_threads),
        cmocka_unit_test(test_gemm_items),
        cmocka_unit_test(test_gemm_bias),
        cmocka_unit_test(test_gemm_items_bias),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
