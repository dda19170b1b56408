/* GEMM dispatch, and dalign's own parallel split of every GEMM.
 *
 * Why dalign splits the work itself: a threaded BLAS cuts a GEMM by the
 * number of threads, and on some CPU kernels (OpenBLAS's Haswell, Zen,
 * Prescott) the cut changes the summation order, so 1 and 2 threads gave
 * different bits. Here a GEMM is cut into PIECES whose shape depends on the
 * problem only (M, N, K: never the thread count), each piece is one
 * single-threaded GEMM, and OpenMP hands whole pieces to threads. A piece's
 * bits then depend only on its own inputs, whoever computes it.
 *
 * Batches: da_gemm_items runs `items` independent GEMMs of one shape (the
 * images of a batch) and never puts two items in one piece, so an image's
 * bits do not depend on how many images share its batch or on its position
 * in it (OpenBLAS's summation order may depend on the call's shape, so an
 * image must always be computed by calls of the same shape).
 *
 * Backends, chosen at run time (da_gemm_set_backend, DA_GEMM):
 * - "portable" (the default): gemm_portable.c, whose every element is the
 *   naive k-ordered sum whatever the blocking: bits identical on every
 *   machine and architecture. Because of that it may take a whole batch as one wide GEMM
 *   (faster) without changing any image's bits.
 * - "openblas" (builds with OpenBLAS): cblas_sgemm per piece, pinned to one
 *   thread.
 */
#include <string.h>

#include "core/gemm_packer.h"
#include "core/par.h"
#include "core/span.h"
#include "dalign/core.h"

#ifdef DA_USE_OPENBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* The portable kernel is the default in every build: its bits are the same
 * on every machine, and since its register tiles follow the vector width
 * and op(A) is read in place (2026-12-06) it is also the faster of the two
 * on the machines measured (docs/benchmarks.md). OpenBLAS stays one switch
 * away (DA_GEMM=openblas, --gemm openblas) for CPUs where its FMA kernels
 * win: an Intel core, where a multiply and an add share the FMA ports, gives
 * a kernel without FMA about half its peak. */
static int use_portable = 1;

const char *da_gemm_backend(void) { return use_portable ? "portable" : "openblas"; }

da_status da_gemm_set_backend(const char *name)
{
    if (name && !strcmp(name, "portable")) {
        use_portable = 1;
        return DA_OK;
    }
    if (name && !strcmp(name, "openblas")) {
#ifdef DA_USE_OPENBLAS
        use_portable = 0;
        return DA_OK;
#else
        return da_fail(DA_ERR_INVALID, "gemm backend 'openblas': this build has no OpenBLAS (built with BLAS=none)");
#endif
    }
    return da_fail(DA_ERR_INVALID, "unknown gemm backend '%s' (expected portable or openblas)", name ? name : "(null)");
}

/* ------------------------------------------------------------------------ */
/* Pieces                                                                   */
/* ------------------------------------------------------------------------ */

/* A piece gets at least PIECE_MNK multiply-adds (~25 us on one core), so a
 * piece is worth waking a thread for; at most MAX_PIECES per item. Piece
 * edges fall on multiples of PIECE_ALIGN rows/columns, so OpenBLAS's
 * register tiles (at most 16 wide on every x86 and ARM kernel) stay whole. */
#define PIECE_MNK (1 << 18)
#define MAX_PIECES 16
#define PIECE_ALIGN 16
/* below SERIAL_PER_FLOAT x core/par.h's da_par_min multiply-adds (2.1
 * million by default, about 100 microseconds) a call does not open a
 * parallel region. Picked on a UNet forward at batch 1 on 2 threads: 2.25
 * ms with threads that spin briefly (GOMP_SPINCOUNT=1000, the CLI's
 * default; 2.2 with no threshold), 3.1 with sleeping ones (passive; 8.3 with
 * no threshold); 1 thread: 2.9 ms. */
#define SERIAL_PER_FLOAT 64.0

typedef struct gemm_problem {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    const float *bias_c, *bias_r; /* or NULL: da_gemm_items_bias */
} gemm_problem;

#ifdef DA_USE_OPENBLAS   /* the portable kernel runs each item whole, with its own blocking */
typedef struct piece_plan {
    int mc, nc;   /* rows, columns of a full piece */
    int tm, tn;   /* pieces down and across one item */
} piece_plan;

static int ceil_div(int a, int b) { return (a + b - 1) / b; }
static int round_up(int a, int b) { return ceil_div(a, b) * b; }

/* Cut C (M, N) into tm x tn pieces: split the longer side while the pieces
 * keep PIECE_MNK work and are at least 2 * PIECE_ALIGN long on that side. */
static piece_plan plan_pieces(int M, int N, int K)
{
    double work = (double)M * N * K;
    int want = work / PIECE_MNK < MAX_PIECES ? (int)(work / PIECE_MNK) : MAX_PIECES;
    int tm = 1, tn = 1;
    while (tm * tn < want) {
        int rows = ceil_div(M, tm), cols = ceil_div(N, tn);
        int can_m = rows >= 2 * PIECE_ALIGN, can_n = cols >= 2 * PIECE_ALIGN;
        if (can_m && (!can_n || rows >= cols)) tm++;
        else if (can_n) tn++;
        else break;
    }
    piece_plan pp;
    pp.mc = tm > 1 ? round_up(ceil_div(M, tm), PIECE_ALIGN) : M;
    pp.nc = tn > 1 ? round_up(ceil_div(N, tn), PIECE_ALIGN) : N;
    pp.tm = ceil_div(M, pp.mc);
    pp.tn = ceil_div(N, pp.nc);
    return pp;
}

/* C[i0 : i0+rows, j0 : j0+cols] of one problem, on the calling thread. */
static void openblas_piece(const gemm_problem *g, int i0, int rows, int j0, int cols)
{
    const float *a = g->trans_a ? g->A + i0 : g->A + (size_t)i0 * g->lda;
    const float *b = g->trans_b ? g->B + (size_t)j0 * g->ldb : g->B + j0;
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, rows, cols, g->K, g->alpha, a, g->lda,
                b, g->ldb, g->beta, g->C + (size_t)i0 * g->ldc + j0, g->ldc);
}
#endif

/* C = beta * C (K == 0 or alpha == 0: BLAS semantics leave A and B unread;
 * OpenBLAS 0.3.21 reads them anyway and lets a NaN through) */
static void scale_c(const gemm_problem *g)
{
    for (int i = 0; i < g->M; i++) {
        float *c = g->C + (size_t)i * g->ldc;
        for (int j = 0; j < g->N; j++) c[j] = g->beta == 0.0f ? 0.0f : g->beta * c[j];
    }
}

/* The items of one call: item i is `g` with A, B, C moved by i strides. */
typedef struct gemm_items {
    gemm_problem g;
    int items;
    size_t stride_a, stride_b, stride_c;
} gemm_items;

static gemm_problem item_problem(const gemm_items *it, int i)
{
    gemm_problem g = it->g;
    g.A += (size_t)i * it->stride_a;
    g.B += (size_t)i * it->stride_b;
    g.C += (size_t)i * it->stride_c;
    return g;
}

/* OpenBLAS: every (item, piece) is one single-threaded cblas_sgemm. */
static void run_openblas(const gemm_items *it)
{
#ifdef DA_USE_OPENBLAS
    piece_plan pp = plan_pieces(it->g.M, it->g.N, it->g.K);
    int per_item = pp.tm * pp.tn, n = it->items * per_item;
    int nth = 1;
#ifdef _OPENMP
    /* inside an enclosing parallel region (a caller's loop over images) the
     * pieces run on the calling thread */
    if (omp_get_level() == 0) nth = da_get_threads() < n ? da_get_threads() : n;
    /* a call worth less than a few hundred microseconds runs its pieces on
     * the calling thread: waking a sleeping thread (OMP_WAIT_POLICY=passive)
     * costs tens of microseconds, as much as the pieces (core/par.h) */
    if ((double)it->items * it->g.M * it->g.N * it->g.K < SERIAL_PER_FLOAT * da_par_min) nth = 1;
#else
    /* Without OpenMP nothing below sets OpenBLAS's team to one thread, and
     * a program that never called da_set_threads / da_threads_init would
     * get OpenBLAS's own threading (all cores), whose cut changes the bits.
     * Pin it before the first call (in OpenMP builds this call would also
     * reset the caller's OpenMP thread count, and the region below pins
     * each piece instead). */
    static int pinned;
    if (!pinned) {
        openblas_set_num_threads(1);
        pinned = 1;
    }
    (void)nth;
#endif
#pragma omp parallel num_threads(nth)
    {
#ifdef _OPENMP
        /* OpenBLAS's OpenMP build sizes its own team from this ICV (of this
         * thread's task only): one thread per piece, whatever the caller set */
        omp_set_num_threads(1);
#endif
#pragma omp for schedule(static)
        for (int p = 0; p < n; p++) {
            gemm_problem g = item_problem(it, p / per_item);
            int q = p % per_item;
            int i0 = (q / pp.tn) * pp.mc, j0 = (q % pp.tn) * pp.nc;
            int rows = g.M - i0 < pp.mc ? g.M - i0 : pp.mc;
            int cols = g.N - j0 < pp.nc ? g.N - j0 : pp.nc;
            openblas_piece(&g, i0, rows, j0, cols);
        }
    }
#else
    (void)it;
#endif
}

/* Portable: merge the items into one wide GEMM where the layout allows
 * (rows of a shared-B problem stacked in A and C, or columns of a shared-A
 * problem side by side in B and C); each element's bits are the same either
 * way. Otherwise one call per item. */
static void portable_call(const gemm_problem *p, int M, int N)
{
    if (p->bias_c || p->bias_r)
        da_gemm_portable_bias(p->trans_a, p->trans_b, M, N, p->K, p->A, p->lda, p->B, p->ldb, p->C, p->ldc,
                              p->bias_c, p->bias_r);
    else
        da_gemm_portable(p->trans_a, p->trans_b, M, N, p->K, p->alpha, p->A, p->lda, p->B, p->ldb, p->beta,
                         p->C, p->ldc);
}

/* (a row bias cannot follow the items' rows stacked, nor a column bias
 * their columns side by side) */
static void run_portable(const gemm_items *it)
{
    const gemm_problem *g = &it->g;
    int n = it->items;
    if (n > 1 && !g->bias_r && it->stride_b == 0 && !g->trans_a && it->stride_a == (size_t)g->M * g->lda &&
        it->stride_c == (size_t)g->M * g->ldc) {
        portable_call(g, g->M * n, g->N);
        return;
    }
    if (n > 1 && !g->bias_c && it->stride_a == 0 && it->stride_c == (size_t)g->N &&
        it->stride_b == (g->trans_b ? (size_t)g->N * g->ldb : (size_t)g->N)) {
        portable_call(g, g->M, g->N * n);
        return;
    }
    for (int i = 0; i < n; i++) {
        gemm_problem p = item_problem(it, i);
        portable_call(&p, p.M, p.N);
    }
}

/* The bias pass after a GEMM without the portable kernel's epilogue:
 * c = s + bias_c[j], then + bias_r[i], the same operations */
static void add_bias_pass(const gemm_items *it)
{
    const gemm_problem *g = &it->g;
    long rows = (long)it->items * g->M;
    DA_PAR_FOR((double)rows * g->N, for (long r = 0; r < rows; r++) {
        float *c = g->C + (size_t)(r / g->M) * it->stride_c + (size_t)(r % g->M) * g->ldc;
        if (g->bias_c) da_span_add(c, c, g->bias_c, (size_t)g->N);
        if (g->bias_r) da_span_add_scalar(c, c, g->bias_r[r % g->M], (size_t)g->N);
    });
}

void da_gemm_items(int items, size_t stride_a, size_t stride_b, size_t stride_c,
                   int trans_a, int trans_b, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb,
                   float beta, float *C, int ldc)
{
    if (items <= 0 || M <= 0 || N <= 0) return;
    gemm_items it = {{trans_a, trans_b, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, NULL, NULL},
                     items, stride_a, stride_b, stride_c};
    if (use_portable) {
        run_portable(&it);
        return;
    }
    if (alpha == 0.0f || K <= 0) {
        for (int i = 0; i < items; i++) {
            gemm_problem g = item_problem(&it, i);
            scale_c(&g);
        }
        return;
    }
    run_openblas(&it);
}

void da_gemm_items_bias(int items, size_t stride_a, size_t stride_b, size_t stride_c, int trans_a, int trans_b,
                        int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                        const float *bias_c, const float *bias_r)
{
    if (items <= 0 || M <= 0 || N <= 0) return;
    gemm_items it = {{trans_a, trans_b, M, N, K, 1.0f, 0.0f, A, B, C, lda, ldb, ldc, bias_c, bias_r},
                     items, stride_a, stride_b, stride_c};
    if (use_portable) {
        run_portable(&it);
        return;
    }
    da_gemm_items(items, stride_a, stride_b, stride_c, trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    if (bias_c || bias_r) add_bias_pass(&it);
}

void da_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha,
             const float *A, int lda, const float *B, int ldb,
             float beta, float *C, int ldc)
{
    da_gemm_items(1, 0, 0, 0, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
