/* Portable blocked GEMM: C (M, N) = alpha * op(A) (M, K) @ op(B) (K, N) + beta * C,
 * row-major, op(X) = X or X^T.
 *
 * Goto-style blocking: C is cut into independent mc x nc tasks (each
 * thread runs a contiguous range of whole tasks, rows fastest; K is never
 * split between threads). Inside a task, for each KC-deep slice of K, a
 * kc x nc block of op(B) is packed into NR-column slivers (zero padded at
 * the edge), then an MR x NR register-tile micro-kernel runs over every pair
 * of an MR-row sliver of op(A) and a B sliver. Where all of K fits (256 KB),
 * every slice's block is kept, and the thread's next task of the same
 * columns uses it without packing again. op(A) is not packed: the kernel
 * reads its rows where they lie (broadcasting one element per row and k
 * step, so a strided row costs what a packed one does), and only a last,
 * partial sliver is copied and padded. (A caller may pack op(B) itself
 * instead, from data op(B) is a view of: da_gemm_portable_packed,
 * gemm_packer.h.) Tile sums live between K slices in
 * a per-task buffer, copied into C at the end, or, when beta is 0, in C
 * itself (gemm_task). With alpha 1 and beta 0 the kernel may also add a
 * bias to its sums on the last K slice (da_gemm_portable_bias).
 *
 * Summation order: every C element is s = ((0 + a0*b0) + a1*b1) + ... in f32
 * with k ascending, then c = alpha*s + beta*c (alpha*s when beta == 0). The
 * micro-kernel resumes from the saved partial sums between K slices, and its
 * vector lanes run across columns of C, never across k. With -ffp-contract=off
 * (no FMA) the result is therefore the naive triple loop, bit for bit, for any
 * blocking, thread count or vector width: x86 and ARM agree, and a tiny
 * problem may take the naive loop without changing a bit.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/gemm_packer.h"
#include "core/transpose8.h"
#include "core/vec.h"
#include "dalign/core.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The register tile follows the instruction set and the core (tile_in_use
 * below): on AVX-512 8 x 32 in zmm (16 accumulators) or 8 x 16 in ymm,
 * whichever is faster on this core; 4 x 24 in ymm on AVX2; 8 x 16 in xmm
 * on SSE2 and NEON. The tile changes speed only, never a bit. */
#define KC 128      /* K slice: a kc x nr sliver of B (up to 16 KB) stays in L1 */
#define MC_MAX 256  /* rows per task: the A rows of one K slice (128 KB) stay in L2 */
#define NC_MAX 512  /* columns per task: the packed B block (256 KB) stays in L2 */
#define WHOLE_B_MAX (1 << 16) /* floats: a task's whole packed op(B) kept for the next task (256 KB) */
#define MR_MAX 8    /* the tallest register tile's rows */
#define NR_MAX 32   /* the widest register tile's columns */
/* Register widths by name, for DA_GEMM_TILE and da_gemm_set_tile (every
 * build knows them), and the width chosen so (-1: automatic). */
enum { XMM, YMM, ZMM };
static const char *const tile_names[] = {"xmm", "ymm", "zmm"};
static int tile_forced = -1;

#define SMALL_MNK 4096     /* below M*N*K this, the naive loop beats packing */
#define PARALLEL_MNK 65536 /* below this, waking threads costs more than it saves */

typedef void (*kernel_fn)(int kc, const float *a, ptrdiff_t rs, ptrdiff_t ps, const float *b, float *acc,
                          ptrdiff_t ld, int first, const float *scale, const float *bias_c, const float *bias_r);
typedef struct gemm_kernel {
    kernel_fn fn;
    int mr, nr; /* register tile: mr rows of op(A) x nr columns of op(B) */
} gemm_kernel;

/* ------------------------------------------------------------------------ */
/* Micro-kernel: acc (MR, NR) = (first ? 0 : acc) + sum_p a[:, p] (MR) x b[p] (NR) */
/* then, on a last K slice, * scale[0] (alpha, when not 1), + bias_c[j] (NR, */
/* a column's bias), + bias_r[i] (MR, a row's), each when given: every sum  */
/* s becomes alpha * s, or s + biases, in registers, the bits of s stored   */
/* and a pass after.                                                        */
/* a[i, p] = a[i * rs + p * ps]: A read where it lies (a whole sliver of     */
/* rows, rs = lda, ps = 1, or transposed, rs = 1, ps = lda) or from a packed */
/* edge sliver (rs = 1, ps = MR); b: packed sliver (kc, NR); acc row-major  */
/* with rows ld apart (the task's tile buffer, or C itself: gemm_task).     */
/* ------------------------------------------------------------------------ */

#if defined(__GNUC__)
/* Written once with GNU vector types, stamped out per vector width and tile
 * so each instance keeps its MR x NR accumulators in native registers. Plain
 * C arithmetic on vectors: no intrinsics, no FMA. Tiles measured, the kernel
 * alone in L1, one core (GFLOP/s):
 *   Zen 5: zmm 8x16 198, 8x32 225; ymm 8x16 75 (it spills: 16 accumulators
 *          + 2 B vectors > 16 registers), 6x16 90, 4x24 98; xmm (SSE2)
 *          37-42 for every tile from 4x8 to 8x16;
 *   Zen 4: zmm 4x32 86, 8x32 83, 8x16 102, 8x48 89, 12x32 53; ymm 4x24 113,
 *          6x16 110, 4x16 106 (and with AVX-512VL's 32 registers 8x24 113).
 * Which one runs: tile_in_use below. */
#define DEFINE_KERNEL(name, attr, vbytes, MR, NR)                                       \
    attr static void name(int kc, const float *restrict a, ptrdiff_t rs, ptrdiff_t ps,   \
                          const float *restrict b, float *restrict acc, ptrdiff_t ld,    \
                          int first, const float *restrict scale,                        \
                          const float *restrict bias_c, const float *restrict bias_r)    \
    {                                                                                    \
        typedef float vec __attribute__((vector_size(vbytes)));                          \
        enum { VL = (vbytes) / (int)sizeof(float), NV = (NR) / VL };                      \
        vec c[MR][NV], bv[NV];                                                           \
        const float *row[MR];                                                            \
        _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++) row[i] = a + i * rs;       \
        _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                        \
                if (first) c[i][v] = (vec){0};                                           \
                else memcpy(&c[i][v], acc + i * ld + v * VL, sizeof(vec));                \
            }                                                                            \
        for (ptrdiff_t p = 0; p < kc; p++, b += (NR)) {                                  \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                memcpy(&bv[v], b + v * VL, sizeof(vec));                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                        \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                      \
                    c[i][v] += row[i][p * ps] * bv[v];                                   \
        }                                                                                \
        if (scale)                                                                       \
            _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                        \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] *= scale[0];  \
        if (bias_c) {                                                                    \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                memcpy(&bv[v], bias_c + v * VL, sizeof(vec));                             \
            _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                        \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] += bv[v];     \
        }                                                                                \
        if (bias_r)                                                                      \
            _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                        \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) c[i][v] += bias_r[i]; \
        _Pragma("GCC unroll 8") for (int i = 0; i < (MR); i++)                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                memcpy(acc + i * ld + v * VL, &c[i][v], sizeof(vec));                     \
    }

DEFINE_KERNEL(kernel_v4, , 16, 8, 16) /* SSE2 / NEON: every 64-bit x86 and ARM core */
#if defined(__x86_64__) || defined(__i386__)
DEFINE_KERNEL(kernel_v8, __attribute__((target("avx2"))), 32, 4, 24)
/* AVX-512VL: ymm operations with 32 registers, so 8 x 16 does not spill */
DEFINE_KERNEL(kernel_v8_vl, __attribute__((target("avx512f,avx512vl"))), 32, 8, 16)
DEFINE_KERNEL(kernel_v16, __attribute__((target("avx512f"))), 64, 8, 32)
/* for GEMMs at most 16 columns wide (narrow_kernel) */
DEFINE_KERNEL(kernel_v16_n16, __attribute__((target("avx512f"))), 64, 8, 16)
#endif

/* ------------------------------------------------------------------------ */
/* Which tile runs. The vector width that is fastest is not the widest one  */
/* everywhere: the kernel alone in L1, one core (GFLOP/s):                  */
/*   Zen 5 (EPYC, family 26)  zmm 8x32 225, ymm 4x24  98                    */
/*   Zen 4 (EPYC, family 25)  zmm 8x32  83, ymm 4x24 113, ymm 8x16 111      */
/* (Zen 4 splits each zmm operation in two 256-bit halves). So on an        */
/* AVX-512 CPU zmm and ymm are timed once per process, on a kc = 128 sliver */
/* in L1 (under a millisecond), and zmm runs where it is clearly faster     */
/* (timed_width); DA_GEMM_TILE or da_gemm_set_tile chooses instead. The ymm */
/* tile of AVX-512 is 8 x 16, not AVX2's 4 x 24: the UNet's GEMMs have 64,  */
/* 128 or 256 rows and columns, which 8 x 16 tiles exactly, and its forward */
/* at batch 32 took 86 ms instead of 91 on Zen 4. Every tile gives the same */
/* bits: the choice changes speed only.                                     */
/* ------------------------------------------------------------------------ */

typedef struct tile_entry {
    const char *desc; /* da_gemm_tile's answer: registers and mr x nr */
    gemm_kernel k;
} tile_entry;

/* by register width: xmm, ymm, zmm (tile_names); by vector copy (da_isa),
 * the tiles of base, avx2 and avx512 (aarch64 has base only) */
static const tile_entry tile_xmm = {"xmm 8x16", {kernel_v4, 8, 16}};
#if defined(__x86_64__) || defined(__i386__)
static const tile_entry tile_ymm_avx2 = {"ymm 4x24", {kernel_v8, 4, 24}};
static const tile_entry tile_ymm_avx512 = {"ymm 8x16", {kernel_v8_vl, 8, 16}};
static const tile_entry tile_zmm = {"zmm 8x32", {kernel_v16, 8, 32}};
#endif

/* the widest register width the vector copy in use (da_isa) runs */
static int widest_width(void)
{
#if defined(__x86_64__) || defined(__i386__)
    const char *isa = da_isa();
    return !strcmp(isa, "avx512") ? ZMM : !strcmp(isa, "avx2") ? YMM : XMM;
#else
    return XMM;
#endif
}

/* the tile of width w (at most widest_width()) under the copy in use */
static const tile_entry *tile_of(int w)
{
#if defined(__x86_64__) || defined(__i386__)
    if (w == ZMM) return &tile_zmm;
    if (w == YMM) return widest_width() == ZMM ? &tile_ymm_avx512 : &tile_ymm_avx2;
#endif
    (void)w;
    return &tile_xmm;
}


#if defined(__x86_64__) || defined(__i386__)
/* the automatic choice on an AVX-512 CPU, once measured (-1: not yet) */
static int tile_timed = -1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ZMM unless YMM is about as fast: zmm pays on cores with whole 512-bit
 * units, where it is twice as fast (Zen 5: 225 against 98 GFLOP/s); on Zen
 * 4 ymm wins (111-113 against 85), but when the core's SMT sibling is busy
 * (a shared host) both fall to 75-80 and the faster one is a coin toss, so
 * zmm must win by 25%. Timed on the same work: an (mr x 128) A sliver read
 * in place and a packed (128, nr) B sliver, the two alternating, the best
 * of 5 rounds each. */
static int timed_width(void)
{
    enum { KT = 128, CALLS = 64, ROUNDS = 5 };
    float A_[16 * KT], B_[KT * 32], acc[16 * 32]; /* on the stack: two threads may time at once */
    for (int i = 0; i < 16 * KT; i++) A_[i] = (float)(i % 7) * 0.125f;
    for (int i = 0; i < KT * 32; i++) B_[i] = (float)(i % 5) * 0.25f;
    double best[2] = {0, 0}; /* GFLOP/s of zmm, ymm */
    const gemm_kernel who[2] = {tile_zmm.k, tile_ymm_avx512.k};
    for (int r = 0; r < ROUNDS; r++)
        for (int w = 0; w < 2; w++) {
            gemm_kernel k = who[w];
            double t0 = now_s();
            for (int c = 0; c < CALLS; c++) k.fn(KT, A_, KT, 1, B_, acc, k.nr, c == 0, NULL, NULL, NULL);
            double gflops = 2e-9 * k.mr * k.nr * KT * CALLS / (now_s() - t0 + 1e-12);
            if (gflops > best[w]) best[w] = gflops;
        }
    return best[0] >= 1.25 * best[1] ? ZMM : YMM;
}
#endif

/* the tile for the vector copy in use (da_isa): of the width chosen by name
 * (or the widest this copy runs, when it runs no such width); automatically,
 * the widest, except that on AVX-512 zmm must be clearly faster than ymm
 * (timed_width, once per process) */
static const tile_entry *tile_in_use(void)
{
    int widest = widest_width();
    if (tile_forced >= 0) return tile_of(tile_forced < widest ? tile_forced : widest);
#if defined(__x86_64__) || defined(__i386__)
    if (widest == ZMM) {
        int w = __atomic_load_n(&tile_timed, __ATOMIC_ACQUIRE);
        if (w < 0) { /* two threads may both time: either answer is right */
            w = timed_width();
            __atomic_store_n(&tile_timed, w, __ATOMIC_RELEASE);
        }
        return tile_of(w);
    }
#endif
    return tile_of(widest);
}

static gemm_kernel pick_kernel(void) { return tile_in_use()->k; }

/* The kernel for a GEMM N columns wide: the zmm 8 x 32 tile's half, 8 x
 * 16, where N <= 16, as in the attention's per-head products with 16 head
 * dimensions (P V, and Q K^T over 16 tokens), which left half of every 8 x
 * 32 tile empty (kernel alone in L1, Zen 5: 8 x 16 198 GFLOP/s, 8 x 32
 * 225, so 112 on 16 columns). The same sums, so the same bits. */
static gemm_kernel narrow_kernel(gemm_kernel k, int N)
{
#if defined(__x86_64__) || defined(__i386__)
    if (k.fn == kernel_v16 && N <= 16) return (gemm_kernel){kernel_v16_n16, 8, 16};
#endif
    (void)N;
    return k;
}

const char *da_gemm_tile(void) { return tile_in_use()->desc; }

#else
/* Other compilers: the same tile in scalar C. */
static void kernel_scalar(int kc, const float *restrict a, ptrdiff_t rs, ptrdiff_t ps,
                          const float *restrict b, float *restrict acc, ptrdiff_t ld, int first,
                          const float *restrict scale, const float *restrict bias_c, const float *restrict bias_r)
{
    enum { MR = 8, NR = 16 };
    float c[MR * NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * NR + j] = first ? 0.0f : acc[i * ld + j];
    for (ptrdiff_t p = 0; p < kc; p++, b += NR)
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) c[i * NR + j] += a[i * rs + p * ps] * b[j];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) {
            if (scale) c[i * NR + j] *= scale[0];
            if (bias_c) c[i * NR + j] += bias_c[j];
            if (bias_r) c[i * NR + j] += bias_r[i];
        }
    for (int i = 0; i < MR; i++) memcpy(acc + i * ld, c + i * NR, NR * sizeof(float));
}
static gemm_kernel pick_kernel(void) { return (gemm_kernel){kernel_scalar, 8, 16}; }
static gemm_kernel narrow_kernel(gemm_kernel k, int N) { (void)N; return k; }
const char *da_gemm_tile(void) { return "scalar 8x16"; } /* whatever width is asked for */
#endif

da_status da_gemm_set_tile(const char *name)
{
    if (!name || !*name || !strcmp(name, "auto")) {
        tile_forced = -1;
        return DA_OK;
    }
    for (int i = XMM; i <= ZMM; i++)
        if (!strcmp(name, tile_names[i])) {
            tile_forced = i;
            return DA_OK;
        }
    return da_fail(DA_ERR_INVALID, "unknown GEMM tile '%s' (auto, xmm, ymm, zmm; a tile wider than the "
                   "instruction set in use falls back to the widest it runs)", name);
}


/* ------------------------------------------------------------------------ */
/* Packing                                                                  */
/* ------------------------------------------------------------------------ */

/* W columns of one B sliver, dst (kc, W), rows dw >= W apart = op(B)[p0 :
 * p0+kc, W columns], per width W (dw = W: a whole sliver; dw > W: the used
 * columns of an edge sliver, the rest zero):
 * - gather_W, op(B) = B^T: dst[p * dw + c] = src[c * ld + p]. Written
 *   p-outer with a constant W, so each step reads W sequential streams and
 *   writes W contiguous floats (for W = 8, 1.6x the c-outer loop's speed,
 *   measured on a Zen 5 core);
 * - copy_W, op(B) = B: dst[p * dw + c] = src[p * ld + c]. A constant W lets
 *   the compiler copy each row with a few vector moves instead of a call to
 *   memcpy (5% of sampling time when it called). */
#if defined(__GNUC__) && !defined(__clang__)
/* dst (4, 4), rows ldd apart = the transpose of src (4, 4), rows lds apart:
 * four vector loads, eight shuffles, four vector stores (a strided gather
 * moved one float per load and store: 3-5% of a training step) */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
static inline void transpose4(float *restrict dst, size_t ldd, const float *restrict src, size_t lds)
{
    v4f r0, r1, r2, r3;
    memcpy(&r0, src, sizeof r0);
    memcpy(&r1, src + lds, sizeof r1);
    memcpy(&r2, src + 2 * lds, sizeof r2);
    memcpy(&r3, src + 3 * lds, sizeof r3);
    v4f lo01 = __builtin_shuffle(r0, r1, (v4i){0, 4, 1, 5}), lo23 = __builtin_shuffle(r2, r3, (v4i){0, 4, 1, 5});
    v4f hi01 = __builtin_shuffle(r0, r1, (v4i){2, 6, 3, 7}), hi23 = __builtin_shuffle(r2, r3, (v4i){2, 6, 3, 7});
    v4f o0 = __builtin_shuffle(lo01, lo23, (v4i){0, 1, 4, 5}), o1 = __builtin_shuffle(lo01, lo23, (v4i){2, 3, 6, 7});
    v4f o2 = __builtin_shuffle(hi01, hi23, (v4i){0, 1, 4, 5}), o3 = __builtin_shuffle(hi01, hi23, (v4i){2, 3, 6, 7});
    memcpy(dst, &o0, sizeof o0);
    memcpy(dst + ldd, &o1, sizeof o1);
    memcpy(dst + 2 * ldd, &o2, sizeof o2);
    memcpy(dst + 3 * ldd, &o3, sizeof o3);
}
#define GATHER_BLOCKS(W)                                                                  \
    for (; p + 4 <= kc; p += 4)                                                           \
        for (int c = 0; c < (W); c += 4) transpose4(dst + p * dw + c, dw, src + c * ld + p, ld);
#else
#define GATHER_BLOCKS(W)
#endif

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
/* The same with 8 x 8 blocks in AVX registers, for the AVX2 and AVX-512
 * copies: eight loads, 24 shuffles and eight stores move 64 floats, where
 * four 4 x 4 blocks take 16, 32 and 16; sampling at batch 1 spent 11% of
 * its time gathering the linear layers' weights (W (OC, C) is a transposed
 * B, packed again at every call). */
#define DA_GATHER8 1
__attribute__((target("avx2"))) static inline void transpose8(float *restrict dst, size_t ldd,
                                                              const float *restrict src, size_t lds)
{
    const float *rows[8] = {src, src + lds, src + 2 * lds, src + 3 * lds,
                            src + 4 * lds, src + 5 * lds, src + 6 * lds, src + 7 * lds};
    DA_LOAD8_ROWS(r, rows, 0);
    DA_TRANSPOSE8(r, o);
    DA_STORE8_ROWS(o, dst, ldd);
}
#endif

#ifdef DA_GATHER8
#define DEFINE_GATHER8(W)                                                                 \
    __attribute__((target("avx2"))) static void gather8_##W(float *restrict dst, size_t dw,                \
                                                            const float *restrict src, size_t ld, int kc) \
    {                                                                                    \
        int p = 0;                                                                       \
        for (; p + 8 <= kc; p += 8)                                                       \
            for (int c = 0; c < (W); c += 8) transpose8(dst + p * dw + c, dw, src + c * ld + p, ld); \
        for (; p < kc; p++)                                                               \
            for (int c = 0; c < (W); c++) dst[p * dw + c] = src[c * ld + p];             \
    }
#define GATHER_WIDE(W)                                                                    \
    if (wide) {                                                                          \
        gather8_##W(dst, dw, src, ld, kc);                                                \
        return;                                                                          \
    }
/* A twin of a plain loop (the row copies, the tile finish) built for AVX2,
 * taken when `wide`: the driver is built for the baseline, where those
 * loops move 16 bytes an instruction (they were 40% of run_tasks, 1.8% of
 * sampling at batch 16). The same operations: data moves, and finish's
 * multiply and add, never fused (no FMA in the target, -ffp-contract=off). */
#define AVX_TWIN_ATTR __attribute__((target("avx2")))
#define AVX_TWIN(wide, name, args)                                                        \
    if (wide) {                                                                          \
        name##_avx args;                                                                 \
        return;                                                                          \
    }
#else
#define DEFINE_GATHER8(W)
#define GATHER_WIDE(W) (void)wide;
#define AVX_TWIN(wide, name, args) (void)(wide);
#endif

/* DEFINE_WITH_TWIN(DEF, ...): DEF(suffix, attribute, ...) once plain and,
 * on x86 with GCC, once more as the _avx twin */
#ifdef DA_GATHER8
#define DEFINE_WITH_TWIN(DEF, ...) DEF(, , __VA_ARGS__) DEF(_avx, AVX_TWIN_ATTR, __VA_ARGS__)
#else
#define DEFINE_WITH_TWIN(DEF, ...) DEF(, , __VA_ARGS__)
#endif

/* gather_W: dst (kc, W), rows dw apart = the transpose of W rows of kc at
 * src, ld apart (op(B) of a transposed B): 8 x 8 blocks when `wide`
 * (gemm_args.avx2: the AVX2 and AVX-512 copies), else 4 x 4 blocks
 * (GCC), then the last rows one by one; copy_W: dst (kc, W), rows dw apart
 * = kc rows of W at src, ld apart */
#define DEFINE_SLIVER_COPIES(W)                                                           \
    DEFINE_GATHER8(W)                                                                    \
    static void gather_##W(float *restrict dst, size_t dw, const float *restrict src, size_t ld, int kc, \
                           int wide)                                                     \
    {                                                                                    \
        GATHER_WIDE(W)                                                                   \
        int p = 0;                                                                       \
        GATHER_BLOCKS(W)                                                                 \
        for (; p < kc; p++)                                                               \
            for (int c = 0; c < (W); c++) dst[p * dw + c] = src[c * ld + p];             \
    }                                                                                    \
    DEFINE_WITH_TWIN(DEFINE_COPY, W)                                                     \
    static void copy_##W(float *restrict dst, size_t dw, const float *restrict src, size_t ld, int kc, \
                         int wide)                                                       \
    {                                                                                    \
        AVX_TWIN(wide, copy_rows_##W, (dst, dw, src, ld, kc))                             \
        copy_rows_##W(dst, dw, src, ld, kc);                                             \
    }
#define DEFINE_COPY(SFX, ATTR, W)                                                         \
    ATTR static void copy_rows_##W##SFX(float *restrict dst, size_t dw, const float *restrict src, size_t ld, \
                                         int kc)                                         \
    {                                                                                    \
        for (int p = 0; p < kc; p++) memcpy(dst + p * dw, src + p * ld, (W) * sizeof(float)); \
    }
DEFINE_SLIVER_COPIES(8) /* A slivers of the 8-row tiles (pack_a_sliver) */
DEFINE_SLIVER_COPIES(16)
DEFINE_SLIVER_COPIES(24)
DEFINE_SLIVER_COPIES(32)

/* dst (kc, w) from the `used` <= w columns of op(B) at src (an edge
 * sliver's other columns are zero already, pack_b): a width above takes its
 * constant-width copy, whole sliver or edge (the per-head attention GEMMs,
 * N = 16 head dimensions or 24 tokens, are all edge: one float at a time
 * they took 4% of sampling at batch 16), any other the plain loop */
static void copy_sliver(float *restrict dst, int w, const float *restrict src, size_t ld, int trans, int used,
                        int kc, int wide)
{
#define SLIVER_OF(W)                                                                      \
    case W:                                                                              \
        if (trans) gather_##W(dst, (size_t)w, src, ld, kc, wide);                         \
        else copy_##W(dst, (size_t)w, src, ld, kc, wide);                                \
        return;
    switch (used) {
    SLIVER_OF(8)
    SLIVER_OF(16)
    SLIVER_OF(24)
    SLIVER_OF(32)
    default:
        if (trans)
            for (int p = 0; p < kc; p++)
                for (int c = 0; c < used; c++) dst[p * w + c] = src[c * ld + p];
        else
            for (int p = 0; p < kc; p++)
                for (int c = 0; c < used; c++) dst[p * w + c] = src[p * ld + c];
    }
#undef SLIVER_OF
}

/* dst: the sliver (kc, mr) of op(A)[i0 : i0+used, p0 : p0+kc], rows past
 * `used` set to 0. Most slivers are read where they lie; this copies a last,
 * partial one, and every one where A's stride aliases. Padded lanes only
 * feed tile entries that are never stored, but zeros keep uninitialised
 * memory (slow denormals, sanitizer reports) out of them. A whole sliver of
 * the 8-row tiles is B's sliver copy at width 8: A's rows transposed in
 * blocks (the one-float-at-a-time loop below took 2.6% of sampling at batch
 * 16, packing the (tokens, 1024) inputs of ff.fc2, whose 4 KB rows alias). */
static void pack_a_sliver(float *dst, int mr, const float *A, int lda, int trans_a, int i0, int used, int p0,
                          int kc, int wide)
{
    if (mr == 8 && used == 8) {
        const float *src = trans_a ? A + (size_t)p0 * lda + i0 : A + (size_t)i0 * lda + p0;
        if (trans_a) copy_8(dst, 8, src, (size_t)lda, kc, wide);
        else gather_8(dst, 8, src, (size_t)lda, kc, wide);
        return;
    }
    memset(dst, 0, (size_t)kc * mr * sizeof(float));
    for (int p = 0; p < kc; p++)
        for (int r = 0; r < used; r++)
            dst[p * mr + r] = trans_a ? A[(size_t)(p0 + p) * lda + i0 + r] : A[(size_t)(i0 + r) * lda + p0 + p];
}

/* A sliver read in place touches mr rows of A (kc rows, transposed) at one
 * stride apart, and a tile kept in C mr rows of C. When that stride is a
 * multiple of 4 KB the rows map to the same L1 sets and evict each other: a
 * 1024^3 GEMM with the 8 x 16 ymm tile ran at 73 GFLOP/s against 86 at
 * 1040^3 (Zen 4); with such an A packed and such a C summed in the tile
 * buffer, 91. */
static int stride_aliases(int ld) { return ((size_t)ld * sizeof(float)) % 4096 == 0; }

/* dst: slivers (kc, nr) of op(B)[p0 : p0+kc, j0 : j0+cols], columns padded with 0 */
static void pack_b(float *dst, int nr, const float *B, int ldb, int trans_b, int j0, int cols, int p0, int kc,
                   int wide)
{
    for (int s = 0; s < cols; s += nr, dst += (size_t)kc * nr) {
        int used = cols - s < nr ? cols - s : nr;
        if (used < nr) memset(dst, 0, (size_t)kc * nr * sizeof(float));
        /* op(B)[p][j] = B[j][p] when transposed: rows of B become sliver columns */
        const float *src = trans_b ? B + (size_t)(j0 + s) * ldb + p0 : B + (size_t)p0 * ldb + j0 + s;
        copy_sliver(dst, nr, src, (size_t)ldb, trans_b, used, kc, wide);
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
    da_gemm_pack_b_fn pack_b; /* or NULL: op(B) is B (gemm_packer.h) */
    const void *pack_ctx;
    int avx2; /* da_vec_avx2: 8 x 8 gathers, the _avx twins (gemm_run sets it once a call) */
    /* or NULL: c = s + bias_c[j] (N), then + bias_r[i] (M); only with
     * alpha 1 and beta 0 (da_gemm_portable_bias, da_gemm_portable_packed) */
    const float *bias_c, *bias_r;
} gemm_args;

/* s + the biases of element (i, j), in the kernel epilogue's order */
static inline float plus_bias(const gemm_args *g, float s, int i, int j)
{
    if (g->bias_c) s += g->bias_c[j];
    if (g->bias_r) s += g->bias_r[i];
    return s;
}

/* c = alpha*s + beta*c; beta == 0 never reads c (it may hold NaN garbage) */
static inline float finish(float s, float c, float alpha, float beta)
{
    return beta == 0.0f ? alpha * s : alpha * s + beta * c;
}

/* c (n) = finish(t (n), c): one row of a tile. The test of beta is taken out
 * of the loop, and the whole-tile widths get copies with a constant length,
 * so the loops vectorise (the same operations per element as finish); with a
 * run-time length the scalar loop took 10% of a UNet forward. */
#define DEFINE_FINISH(SFX, ATTR, name, W)                                                 \
    ATTR static void name##SFX(float *restrict c, const float *restrict t, int n, float alpha, float beta) \
    {                                                                                    \
        (void)n; /* the constant-width copies ignore it */                               \
        if (beta == 0.0f)                                                                \
            for (int q = 0; q < (W); q++) c[q] = alpha * t[q];                            \
        else                                                                             \
            for (int q = 0; q < (W); q++) c[q] = alpha * t[q] + beta * c[q];              \
    }
DEFINE_WITH_TWIN(DEFINE_FINISH, finish_16, 16)
DEFINE_WITH_TWIN(DEFINE_FINISH, finish_24, 24)
DEFINE_WITH_TWIN(DEFINE_FINISH, finish_32, 32)
DEFINE_FINISH(, , finish_n, n)

static void finish_row(float *restrict c, const float *restrict t, int n, float alpha, float beta, int wide)
{
    switch (n) {
    case 16: AVX_TWIN(wide, finish_16, (c, t, n, alpha, beta)) finish_16(c, t, n, alpha, beta); return;
    case 24: AVX_TWIN(wide, finish_24, (c, t, n, alpha, beta)) finish_24(c, t, n, alpha, beta); return;
    case 32: AVX_TWIN(wide, finish_32, (c, t, n, alpha, beta)) finish_32(c, t, n, alpha, beta); return;
    default: finish_n(c, t, n, alpha, beta);
    }
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
            *c = plus_bias(g, finish(s, *c, g->alpha, g->beta), i, j);
        }
    }
}

/* C = beta * C (K == 0 or alpha == 0: BLAS leaves A and B unread), + a bias
 * onto the empty sums (K == 0) as the naive loop adds it */
static void scale_c(const gemm_args *g)
{
    for (int i = 0; i < g->M; i++) {
        float *c = g->C + (size_t)i * g->ldc;
        for (int j = 0; j < g->N; j++) c[j] = plus_bias(g, g->beta == 0.0f ? 0.0f : g->beta * c[j], i, j);
    }
}

/* dst: op(B)'s slivers for a task's columns and one K slice, from g's
 * packer or from B (pack_b) */
static void pack_b_slice(const gemm_args *g, float *dst, int nr, int j0, int cols, int p0, int kc)
{
    if (g->pack_b) g->pack_b(g->pack_ctx, dst, nr, j0, cols, p0, kc);
    else pack_b(dst, nr, g->B, g->ldb, g->trans_b, j0, cols, p0, kc, g->avx2);
}

/* One task: C[i0 : i0+rows, j0 : j0+cols]. acc holds (rows/mr) x (cols/nr)
 * tiles of mr x nr partial sums, tile (ti, tj) at (tj * tiles_m + ti),
 * except that when c = alpha s (beta 0) a whole tile keeps its sums in C
 * itself, the kernel multiplying by alpha on the last K slice (the one
 * rounding finish makes), and the copy out is skipped (it took half the
 * driver's time, 3% of sampling; with alpha 1 / sqrt(head dim) the
 * attention's scores took it too), unless C's stride aliases
 * (stride_aliases). The first `in_place` slivers of
 * op(A) are read where they lie (A's transposition only changes the
 * strides), the others are packed into apack, zero padded: the last,
 * partial one, or all of them when A's stride aliases. bpack holds the
 * packed op(B) of the task's columns: the current K slice, or with whole_b
 * every slice, one after the other, which the next task of the same columns
 * reuses (b_ready: already packed). */
static void gemm_task(const gemm_args *g, gemm_kernel k, int i0, int rows, int j0, int cols, float *apack,
                      float *bpack, int whole_b, int b_ready, float *acc)
{
    int mr = k.mr, nr = k.nr, tiles_m = (rows + mr - 1) / mr, tiles_n = (cols + nr - 1) / nr;
    /* the bias of the last, partial tile row or column, zero padded: the
     * kernel reads a whole tile's (its sums there are never stored) */
    float edge_c[NR_MAX] = {0}, edge_r[MR_MAX] = {0};
    if (g->bias_c) memcpy(edge_c, g->bias_c + j0 + (tiles_n - 1) * nr, (size_t)(cols - (tiles_n - 1) * nr) * sizeof(float));
    if (g->bias_r) memcpy(edge_r, g->bias_r + i0 + (tiles_m - 1) * mr, (size_t)(rows - (tiles_m - 1) * mr) * sizeof(float));
    int in_place = stride_aliases(g->lda) ? 0 : rows / mr;
    /* tiles (ti < c_m, tj < c_n) sum in C: the whole ones, when c = alpha
     * s (beta 0), the kernel taking the alpha on the last K slice (scale) */
    int in_c = g->beta == 0.0f && !stride_aliases(g->ldc);
    int c_m = in_c ? rows / mr : 0, c_n = in_c ? cols / nr : 0;
    ptrdiff_t rs = g->trans_a ? 1 : g->lda, ps = g->trans_a ? g->lda : 1;
    for (int p0 = 0; p0 < g->K; p0 += KC) {
        int kc = g->K - p0 < KC ? g->K - p0 : KC;
        for (int ti = in_place; ti < tiles_m; ti++) {
            int used = rows - ti * mr < mr ? rows - ti * mr : mr;
            pack_a_sliver(apack + (size_t)(ti - in_place) * mr * kc, mr, g->A, g->lda, g->trans_a, i0 + ti * mr,
                          used, p0, kc, g->avx2);
        }
        float *bslice = whole_b ? bpack + (size_t)p0 * tiles_n * nr : bpack;
        if (!b_ready) pack_b_slice(g, bslice, nr, j0, cols, p0, kc);
        int last = p0 + kc >= g->K;
        const float *scale = last && g->alpha != 1.0f ? &g->alpha : NULL; /* for tiles in C */
        for (int tj = 0; tj < tiles_n; tj++) { /* B sliver stays in L1 across ti */
            const float *b = bslice + (size_t)tj * kc * nr;
            float *t = acc + (size_t)tj * tiles_m * mr * nr;
            float *t_c = g->C + (size_t)i0 * g->ldc + j0 + tj * nr; /* tile (0, tj) in C */
            const float *bc = !last || !g->bias_c ? NULL : tj < tiles_n - 1 ? g->bias_c + j0 + tj * nr : edge_c;
            for (int ti = 0; ti < tiles_m; ti++) {
                int here = ti < in_place;
                const float *a = here ? g->A + (i0 + ti * mr) * rs + p0 * ps : apack + (size_t)(ti - in_place) * mr * kc;
                ptrdiff_t ars = here ? rs : 1, aps = here ? ps : mr;
                const float *br = !last || !g->bias_r ? NULL : ti < tiles_m - 1 ? g->bias_r + i0 + ti * mr : edge_r;
                if (ti < c_m && tj < c_n)
                    k.fn(kc, a, ars, aps, b, t_c + (size_t)ti * mr * g->ldc, g->ldc, p0 == 0, scale, bc, br);
                else /* finish applies alpha and beta */
                    k.fn(kc, a, ars, aps, b, t + (size_t)ti * mr * nr, nr, p0 == 0, NULL, bc, br);
            }
        }
    }
    for (int tj = 0; tj < tiles_n; tj++) {
        for (int ti = 0; ti < tiles_m; ti++) {
            if (ti < c_m && tj < c_n) continue; /* already in C */
            const float *t = acc + ((size_t)tj * tiles_m + ti) * mr * nr;
            int rows_here = rows - ti * mr < mr ? rows - ti * mr : mr;
            int cols_here = cols - tj * nr < nr ? cols - tj * nr : nr;
            for (int r = 0; r < rows_here; r++) {
                float *c = g->C + (size_t)(i0 + ti * mr + r) * g->ldc + j0 + tj * nr;
                finish_row(c, t + r * nr, cols_here, g->alpha, g->beta, g->avx2);
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
static void plan_tasks(int M, int N, int nth, int mr, int nr, int *mc, int *nc)
{
    int tm = ceil_div(M, MC_MAX), tn = ceil_div(N, NC_MAX);
    while (nth > 1 && (tm * tn) % nth != 0 && tm * tn < 8 * nth) {
        int can_m = ceil_div(M, tm) > mr, can_n = ceil_div(N, tn) > nr;
        if (!can_m && !can_n) break;
        if (can_m && (!can_n || (double)M / tm >= (double)N / tn)) tm++;
        else tn++;
    }
    *mc = round_up(ceil_div(M, tm), mr);
    *nc = round_up(ceil_div(N, tn), nr);
}

/* The naive loop for any g: one with op(B) from its packer gets it
 * materialised as the row-major (K, N) matrix first, packed NAIVE_NR
 * columns at a time (a packer need not take slivers wider than the
 * kernels' 32), each sliver's rows then copied into place. */
#define NAIVE_NR 16
static void gemm_naive_any(gemm_args g)
{
    if (!g.pack_b) {
        gemm_naive(&g);
        return;
    }
    float *B = malloc((size_t)g.K * g.N * sizeof(float)), *sl = malloc((size_t)g.K * NAIVE_NR * sizeof(float));
    if (!B || !sl) {
        fprintf(stderr, "dalign: out of memory in the GEMM (%d x %d)\n", g.K, g.N);
        abort();
    }
    for (int j0 = 0; j0 < g.N; j0 += NAIVE_NR) {
        int cols = g.N - j0 < NAIVE_NR ? g.N - j0 : NAIVE_NR;
        g.pack_b(g.pack_ctx, sl, NAIVE_NR, j0, cols, 0, g.K);
        for (int p = 0; p < g.K; p++) memcpy(B + (size_t)p * g.N + j0, sl + (size_t)p * NAIVE_NR, (size_t)cols * sizeof(float));
    }
    free(sl);
    g.B = B;
    g.ldb = g.N;
    g.trans_b = 0;
    g.pack_b = NULL;
    gemm_naive(&g);
    free(B);
}

/* A call's tasks and where each thread's scratch lies (gemm_run) */
typedef struct task_plan {
    const gemm_args *g;
    gemm_kernel kernel;
    int tm, n_tasks, mc, nc, whole_b;
    float *scratch;
    size_t per_thread, a_n, b_n;
} task_plan;

/* Thread tid of nthr runs tasks [tid n / nthr, (tid + 1) n / nthr), rows
 * fastest, so tasks of the same columns follow each other in a thread.
 * On one thread gemm_run calls this directly rather than through a region
 * of one thread: libgomp ends every region, even of one thread, with a futex
 * wake, a system call (1.2 us on the 2-core EPYC VM), and sampling at batch
 * 1 makes some 5000 GEMM calls. */
static void run_tasks(const task_plan *p, int tid, int nthr)
{
    const gemm_args *g = p->g;
    float *base = p->scratch + (size_t)tid * p->per_thread;
    int t0 = (int)((long long)tid * p->n_tasks / nthr), t1 = (int)((long long)(tid + 1) * p->n_tasks / nthr);
    for (int t = t0; t < t1; t++) {
        int i0 = (t % p->tm) * p->mc, j0 = (t / p->tm) * p->nc;
        int rows = g->M - i0 < p->mc ? g->M - i0 : p->mc, cols = g->N - j0 < p->nc ? g->N - j0 : p->nc;
        int b_ready = p->whole_b && t > t0 && (t - 1) / p->tm == t / p->tm;
        gemm_task(g, p->kernel, i0, rows, j0, cols, base, base + p->a_n, p->whole_b, b_ready,
                  base + p->a_n + p->b_n);
    }
}

/* A call's scratch comes from a buffer its calling thread keeps, grown to
 * twice the largest call's so far (up to SCRATCH_KEEP floats; a larger
 * call allocates its own), and used by all of the call's threads, each its
 * own region. Sampling at batch 16 makes some 70 000 GEMM calls of about a
 * microsecond (the attention's per-head products), and an allocation and a
 * free per call took about 1% of its time (malloc_consolidate, perf). The
 * buffer is freed when its thread exits (a thread-specific key's
 * destructor; the main thread's lives as long as the process). A call that
 * finds the buffer busy (a GEMM inside a packer of another: none does
 * today) allocates its own. Under AddressSanitizer every call allocates
 * exactly what it asks for, so an overrun of a call's scratch is caught. */
#define SCRATCH_KEEP ((size_t)1 << 18) /* floats: 1 MB */
#if defined(__SANITIZE_ADDRESS__)
#define SCRATCH_EXACT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCRATCH_EXACT 1
#endif
#endif
static _Thread_local float *kept_scratch;
static _Thread_local size_t kept_n;
static _Thread_local int kept_busy;
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;

static void kept_key_make(void) { (void)pthread_key_create(&kept_key, free); }

/* scratch of n floats; *kept: it is the thread's buffer (give it back with
 * scratch_put), else the caller frees it */
static float *scratch_get(size_t n, int *kept)
{
#ifdef SCRATCH_EXACT
    const int exact = 1;
#else
    const int exact = 0;
#endif
    *kept = 0;
    if (exact || n > SCRATCH_KEEP || kept_busy) return aligned_alloc(64, n * sizeof(float));
    if (n > kept_n) {
        size_t grow = 2 * n < SCRATCH_KEEP ? 2 * n : SCRATCH_KEEP;
        float *p = aligned_alloc(64, grow * sizeof(float));
        if (!p) return aligned_alloc(64, n * sizeof(float));
        pthread_once(&kept_once, kept_key_make);
        free(kept_scratch);
        kept_scratch = p;
        kept_n = grow;
        (void)pthread_setspecific(kept_key, p); /* freed at the thread's exit */
    }
    kept_busy = 1;
    *kept = 1;
    return kept_scratch;
}

static void scratch_put(float *scratch, int kept)
{
    if (kept) kept_busy = 0;
    else free(scratch);
}

static void gemm_run(gemm_args g)
{
    int M = g.M, N = g.N, K = g.K, lda = g.lda;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || g.alpha == 0.0f) { scale_c(&g); return; }
    if ((double)M * N * K < SMALL_MNK) { gemm_naive_any(g); return; }

    int nth = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && (double)M * N * K >= PARALLEL_MNK) nth = omp_get_max_threads();
#endif
    gemm_kernel kernel = narrow_kernel(pick_kernel(), N);
#ifdef DA_GATHER8
    g.avx2 = da_vec_avx2();
#endif
    int mc, nc;
    plan_tasks(M, N, nth, kernel.mr, kernel.nr, &mc, &nc);
    int tm = ceil_div(M, mc), tn = ceil_div(N, nc), n_tasks = tm * tn;
    if (nth > n_tasks) nth = n_tasks;
    int kc = K < KC ? K : KC;
    /* the whole packed op(B) of a task's columns when it is small enough to
     * share a 1 MB L2 with the tile buffer and A: tasks of the same columns then pack
     * it once per thread, not once each (a linear layer of the UNet, M = 2048
     * tokens in 8 tasks, packed its weight 8 times: 2% of a forward) */
    int whole_b = (size_t)K * nc <= WHOLE_B_MAX;
    /* one scratch allocation per call, carved into per-thread regions */
    int a_rows = stride_aliases(lda) ? mc : kernel.mr; /* A packed: every sliver of a task, or the edge one */
    size_t a_n = round16((size_t)a_rows * kc), b_n = round16((size_t)(whole_b ? K : kc) * nc),
           acc_n = round16((size_t)mc * nc);
    size_t per_thread = a_n + b_n + acc_n;
    int kept;
    float *scratch = scratch_get(per_thread * (size_t)nth, &kept);
    if (!scratch) { gemm_naive_any(g); return; }

    task_plan plan = {&g, kernel, tm, n_tasks, mc, nc, whole_b, scratch, per_thread, a_n, b_n};
    if (nth == 1) {
        run_tasks(&plan, 0, 1);   /* no region: see run_tasks */
    } else {
#pragma omp parallel num_threads(nth)
        {
            int tid = 0, nthr = 1;
#ifdef _OPENMP
            tid = omp_get_thread_num();
            nthr = omp_get_num_threads();
#endif
            run_tasks(&plan, tid, nthr);
        }
    }
    scratch_put(scratch, kept);
}

void da_gemm_portable(int trans_a, int trans_b, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc)
{
    gemm_run((gemm_args){trans_a, trans_b, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, NULL, NULL, 0, NULL, NULL});
}

void da_gemm_portable_bias(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                           const float *B, int ldb, float *C, int ldc, const float *bias_c, const float *bias_r)
{
    gemm_run((gemm_args){trans_a, trans_b, M, N, K, 1.0f, 0.0f, A, B, C, lda, ldb, ldc, NULL, NULL, 0,
                         bias_c, bias_r});
}

void da_gemm_portable_packed(int trans_a, int M, int N, int K, const float *A, int lda, da_gemm_pack_b_fn pack_b,
                             const void *ctx, float *C, int ldc, const float *bias_r)
{
    gemm_run((gemm_args){trans_a, 0, M, N, K, 1.0f, 0.0f, A, NULL, C, lda, N, ldc, pack_b, ctx, 0, NULL, bias_r});
}
