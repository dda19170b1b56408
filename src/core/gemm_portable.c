/* Portable blocked GEMM: C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C,
 * row-major, op(X) = X or X^T.
 *
 * Goto-style blocking: C is cut into independent mc x nc tasks (OpenMP runs
 * whole tasks, K is never split between threads). Inside a task, for each
 * KC-deep slice of K, an mc x kc block of op(A) is packed into MR-row slivers
 * and a kc x nc block of op(B) into NR-column slivers (zero padded at the
 * edges), then an MR x NR register-tile micro-kernel runs over every pair of
 * slivers. Tile sums live in a per-task buffer between K slices; C is written
 * once, at the end.
 *
 * Summation order: every C element is s = ((0 + a0*b0) + a1*b1) + ... in f32
 * with k ascending, then c = alpha*s + beta*c (alpha*s when beta == 0). The
 * micro-kernel resumes from the saved partial sums between K slices, and its
 * vector lanes run across columns of C, never across k. With -ffp-contract=off
 * (no FMA) the result is therefore the naive triple loop, bit for bit, for any
 * blocking, thread count or vector width: x86 and ARM agree, and a tiny
 * problem may take the naive loop without changing a bit.
 */
#include <stdlib.h>
#include <string.h>

#include "dalign/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Tuned on a Sapphire Rapids core (48 KB L1d, 2 MB L2); see docs/benchmarks.md. */
#define MR 8        /* register tile rows: broadcasts of A per k step */
#define NR 16       /* register tile columns: one zmm, two ymm or four xmm */
#define KC 128      /* K slice: a kc x NR sliver of B (8 KB) stays in L1 */
#define MC_MAX 256  /* rows per task: the packed A block (128 KB) stays in L2 */
#define NC_MAX 512  /* columns per task: the packed B block (256 KB) stays in L2 */
#define SMALL_MNK 4096     /* below M*N*K this, the naive loop beats packing */
#define PARALLEL_MNK 65536 /* below this, waking threads costs more than it saves */

typedef void (*kernel_fn)(int kc, const float *a, const float *b, float *acc, int first);

/* ------------------------------------------------------------------------ */
/* Micro-kernel: acc (MR, NR) = (first ? 0 : acc) + sum_p a[p] (MR) x b[p] (NR) */
/* a: packed sliver (kc, MR); b: packed sliver (kc, NR); acc row-major.     */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
/* Written once with GNU vector types, stamped out per vector width so each
 * instance keeps its MR x NR accumulators in native registers. Plain C
 * arithmetic on vectors: no intrinsics, no FMA. */
#define DEFINE_KERNEL(name, attr, vbytes)                                               \
    attr static void name(int kc, const float *restrict a, const float *restrict b,     \
                          float *restrict acc, int first)                                \
    {                                                                                    \
        typedef float vec __attribute__((vector_size(vbytes)));                          \
        enum { VL = (vbytes) / (int)sizeof(float), NV = NR / VL };                        \
        vec c[MR][NV], bv[NV];                                                           \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                              \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                        \
                if (first) c[i][v] = (vec){0};                                           \
                else memcpy(&c[i][v], acc + i * NR + v * VL, sizeof(vec));                \
            }                                                                            \
        for (int p = 0; p < kc; p++, a += MR, b += NR) {                                 \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                memcpy(&bv[v], b + v * VL, sizeof(vec));                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                          \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                      \
                    c[i][v] += a[i] * bv[v];                                             \
        }                                                                                \
        _Pragma("GCC unroll 8") for (int i = 0; i < MR; i++)                              \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                memcpy(acc + i * NR + v * VL, &c[i][v], sizeof(vec));                     \
    }

DEFINE_KERNEL(kernel_v4, , 16) /* SSE2 / NEON: every 64-bit x86 and ARM core */
#if defined(__x86_64__) || defined(__i386__)
DEFINE_KERNEL(kernel_v8, __attribute__((target("avx2"))), 32)
DEFINE_KERNEL(kernel_v16, __attribute__((target("avx512f"))), 64)
#endif

/* Chosen per call from the running CPU (libgcc also checks that the OS saves
 * the wide registers). All instances give identical bits. */
static kernel_fn pick_kernel(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) return kernel_v16;
    if (__builtin_cpu_supports("avx2")) return kernel_v8;
#endif
    return kernel_v4;
}
#else
/* Other compilers: the same tile in scalar C. */
static void kernel_scalar(int kc, const float *restrict a, const float *restrict b,
                          float *restrict acc, int first)
{
    float c[MR * NR];
    for (int i = 0; i < MR * NR; i++) c[i] = first ? 0.0f : acc[i];
    for (int p = 0; p < kc; p++, a += MR, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i * NR + j] += a[i] * b[j];
    memcpy(acc, c, sizeof c);
}
static kernel_fn pick_kernel(void) { return kernel_scalar; }
#endif

/* ------------------------------------------------------------------------ */
/* Packing                                                                  */
/* ------------------------------------------------------------------------ */

/* dst: slivers (kc, MR) of op(A)[i0 : i0+rows, p0 : p0+kc], rows padded with 0.
 * Padded lanes only feed tile entries that are never stored, but zeros keep
 * uninitialised memory (slow denormals, sanitizer reports) out of them. */
static void pack_a(float *dst, const float *A, int lda, int trans_a, int i0, int rows, int p0, int kc)
{
    for (int s = 0; s < rows; s += MR, dst += (size_t)kc * MR) {
        int mr = rows - s < MR ? rows - s : MR;
        if (mr < MR) memset(dst, 0, (size_t)kc * MR * sizeof(float));
        if (trans_a) { /* op(A)[i][p] = A[p][i]: a sliver row is contiguous */
            for (int p = 0; p < kc; p++) {
                const float *src = A + (size_t)(p0 + p) * lda + i0 + s;
                for (int r = 0; r < mr; r++) dst[p * MR + r] = src[r];
            }
        } else {           /* op(A)[i][p] = A[i][p]: read each row along k */
            for (int r = 0; r < mr; r++) {
                const float *src = A + (size_t)(i0 + s + r) * lda + p0;
                for (int p = 0; p < kc; p++) dst[p * MR + r] = src[p];
            }
        }
    }
}

/* dst: slivers (kc, NR) of op(B)[p0 : p0+kc, j0 : j0+cols], columns padded with 0 */
static void pack_b(float *dst, const float *B, int ldb, int trans_b, int j0, int cols, int p0, int kc)
{
    for (int s = 0; s < cols; s += NR, dst += (size_t)kc * NR) {
        int nr = cols - s < NR ? cols - s : NR;
        if (nr < NR) memset(dst, 0, (size_t)kc * NR * sizeof(float));
        if (trans_b) { /* op(B)[p][j] = B[j][p]: read each row of B along k */
            for (int c = 0; c < nr; c++) {
                const float *src = B + (size_t)(j0 + s + c) * ldb + p0;
                for (int p = 0; p < kc; p++) dst[p * NR + c] = src[p];
            }
        } else if (nr == NR) { /* whole rows: a constant length, so the copy vectorises */
            for (int p = 0; p < kc; p++)
                memcpy(dst + p * NR, B + (size_t)(p0 + p) * ldb + j0 + s, NR * sizeof(float));
        } else {
            for (int p = 0; p < kc; p++) {
                const float *src = B + (size_t)(p0 + p) * ldb + j0 + s;
                for (int c = 0; c < nr; c++) dst[p * NR + c] = src[c];
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Driver                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct gemm_args {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
} gemm_args;

/* c = alpha*s + beta*c; beta == 0 never reads c (it may hold NaN garbage) */
static inline float finish(float s, float c, float alpha, float beta)
{
    return beta == 0.0f ? alpha * s : alpha * s + beta * c;
}

/* c (NR) = finish(t (NR), c): one whole row of a tile. The test of beta is
 * taken out of the loop and the length is a constant, so both loops
 * vectorise (the same operations per element as finish). */
static void finish_row(float *restrict c, const float *restrict t, float alpha, float beta)
{
    if (beta == 0.0f)
        for (int q = 0; q < NR; q++) c[q] = alpha * t[q];
    else
        for (int q = 0; q < NR; q++) c[q] = alpha * t[q] + beta * c[q];
}

/* The reference loop, used for tiny problems and if scratch allocation fails.
 * Same operations in the same order as the blocked path. */
static void gemm_naive(const gemm_args *g)
{
    for (int i = 0; i < g->M; i++) {
        for (int j = 0; j < g->N; j++) {
            float s = 0.0f;
            for (int p = 0; p < g->K; p++) {
                float a = g->trans_a ? g->A[(size_t)p * g->lda + i] : g->A[(size_t)i * g->lda + p];
                float b = g->trans_b ? g->B[(size_t)j * g->ldb + p] : g->B[(size_t)p * g->ldb + j];
                s += a * b;
            }
            float *c = &g->C[(size_t)i * g->ldc + j];
            *c = finish(s, *c, g->alpha, g->beta);
        }
    }
}

/* C = beta * C (K == 0 or alpha == 0: BLAS leaves A and B unread) */
static void scale_c(const gemm_args *g)
{
    for (int i = 0; i < g->M; i++) {
        float *c = g->C + (size_t)i * g->ldc;
        for (int j = 0; j < g->N; j++) c[j] = g->beta == 0.0f ? 0.0f : g->beta * c[j];
    }
}

/* One task: C[i0 : i0+rows, j0 : j0+cols]. acc holds (rows/MR) x (cols/NR)
 * tiles of MR x NR partial sums, tile (ti, tj) at (tj * tiles_m + ti). */
static void gemm_task(const gemm_args *g, kernel_fn kernel, int i0, int rows, int j0, int cols,
                      float *apack, float *bpack, float *acc)
{
    int tiles_m = (rows + MR - 1) / MR, tiles_n = (cols + NR - 1) / NR;
    for (int p0 = 0; p0 < g->K; p0 += KC) {
        int kc = g->K - p0 < KC ? g->K - p0 : KC;
        pack_a(apack, g->A, g->lda, g->trans_a, i0, rows, p0, kc);
        pack_b(bpack, g->B, g->ldb, g->trans_b, j0, cols, p0, kc);
        for (int tj = 0; tj < tiles_n; tj++) /* B sliver stays in L1 across ti */
            for (int ti = 0; ti < tiles_m; ti++)
                kernel(kc, apack + (size_t)ti * kc * MR, bpack + (size_t)tj * kc * NR,
                       acc + ((size_t)tj * tiles_m + ti) * MR * NR, p0 == 0);
    }
    for (int tj = 0; tj < tiles_n; tj++) {
        for (int ti = 0; ti < tiles_m; ti++) {
            const float *t = acc + ((size_t)tj * tiles_m + ti) * MR * NR;
            int mr = rows - ti * MR < MR ? rows - ti * MR : MR;
            int nr = cols - tj * NR < NR ? cols - tj * NR : NR;
            for (int r = 0; r < mr; r++) {
                float *c = g->C + (size_t)(i0 + ti * MR + r) * g->ldc + j0 + tj * NR;
                if (nr == NR) finish_row(c, t + r * NR, g->alpha, g->beta);
                else
                    for (int q = 0; q < nr; q++) c[q] = finish(t[r * NR + q], c[q], g->alpha, g->beta);
            }
        }
    }
}

static int ceil_div(int a, int b) { return (a + b - 1) / b; }
static int round_up(int a, int b) { return ceil_div(a, b) * b; }
static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; } /* floats per 64 bytes */

/* Cut C into tm x tn tasks of at most MC_MAX x NC_MAX. With several threads,
 * cut further until the tasks divide evenly among them (or are plenty);
 * where the cuts fall never changes the result. */
static void plan_tasks(int M, int N, int nth, int *mc, int *nc)
{
    int tm = ceil_div(M, MC_MAX), tn = ceil_div(N, NC_MAX);
    while (nth > 1 && (tm * tn) % nth != 0 && tm * tn < 8 * nth) {
        int can_m = ceil_div(M, tm) > MR, can_n = ceil_div(N, tn) > NR;
        if (!can_m && !can_n) break;
        if (can_m && (!can_n || (double)M / tm >= (double)N / tn)) tm++;
        else tn++;
    }
    *mc = round_up(ceil_div(M, tm), MR);
    *nc = round_up(ceil_div(N, tn), NR);
}

void da_gemm_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    gemm_args g = {trans_a, trans_b, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc};
    if (K <= 0 || alpha == 0.0f) { scale_c(&g); return; }
    if ((double)M * N * K < SMALL_MNK) { gemm_naive(&g); return; }

    int nth = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && (double)M * N * K >= PARALLEL_MNK) nth = omp_get_max_threads();
#endif
    int mc, nc;
    plan_tasks(M, N, nth, &mc, &nc);
    int tm = ceil_div(M, mc), tn = ceil_div(N, nc), n_tasks = tm * tn;
    if (nth > n_tasks) nth = n_tasks;
    int kc = K < KC ? K : KC;
    /* one scratch allocation per call, carved into per-thread regions */
    size_t a_n = round16((size_t)mc * kc), b_n = round16((size_t)kc * nc), acc_n = round16((size_t)mc * nc);
    size_t per_thread = a_n + b_n + acc_n;
    float *scratch = aligned_alloc(64, per_thread * (size_t)nth * sizeof(float));
    if (!scratch) { gemm_naive(&g); return; }
    kernel_fn kernel = pick_kernel();

#pragma omp parallel for schedule(static) num_threads(nth)
    for (int t = 0; t < n_tasks; t++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *base = scratch + (size_t)tid * per_thread;
        int i0 = (t / tn) * mc, j0 = (t % tn) * nc;
        int rows = M - i0 < mc ? M - i0 : mc, cols = N - j0 < nc ? N - j0 : nc;
        gemm_task(&g, kernel, i0, rows, j0, cols, base, base + a_n, base + a_n + b_n);
    }
    free(scratch);
}
