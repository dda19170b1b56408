/* Core kernel benchmarks: GEMM (da_gemm's backend and the portable kernel),
 * conv2d and attention forward/backward. Numbers only, never pass/fail.
 *
 * usage: bench_core [peak_core_gflops [results_file]]
 *   peak_core_gflops  one core's FP32 peak (bench_peak prints it); with it the
 *                     GEMM table adds % of peak for the threads in use
 *   results_file      "name ms" lines for bench/run.sh's side-by-side table
 * Threads: DA_THREADS (default: all cores).
 *
 * Timing: one warm-up call, then 7 samples of enough calls to last >= 50 ms
 * each; the median sample's time per call is reported. bench/torch_core.py
 * times the PyTorch side the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalign.h"

#ifdef DA_USE_OPENBLAS
#include <cblas.h>
#endif

#define N_SAMPLES 7
#define MIN_SAMPLE_S 0.05

static FILE *results;
static double peak_gflops; /* for the threads in use; 0 = unknown */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*bench_fn)(void *ctx);

/* median milliseconds per call of fn(ctx) */
static double time_ms(bench_fn fn, void *ctx)
{
    fn(ctx);
    double t0 = now();
    fn(ctx);
    double one = now() - t0;
    int inner = one >= MIN_SAMPLE_S ? 1 : (int)(MIN_SAMPLE_S / (one > 1e-7 ? one : 1e-7)) + 1;
    double s[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) {
        t0 = now();
        for (int r = 0; r < inner; r++) fn(ctx);
        s[i] = (now() - t0) / inner;
    }
    qsort(s, N_SAMPLES, sizeof s[0], cmp_double);
    return s[N_SAMPLES / 2] * 1e3;
}

static void record(const char *name, double ms)
{
    if (results) fprintf(results, "%s %.6f\n", name, ms);
}

static float *alloc_fill(size_t n, uint32_t seed)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "bench_core: out of memory\n");
        exit(1);
    }
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f; /* uniform [-1, 1) */
    }
    return x;
}

/* ------------------------------------------------------------------------ */
/* GEMM                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct gemm_ctx {
    void (*gemm)(int, int, int, int, int, float, const float *, int, const float *, int, float,
                 float *, int);
    int M, N, K;
    float *A, *B, *C;
} gemm_ctx;

static void run_gemm(void *p)
{
    gemm_ctx *g = p;
    g->gemm(0, 0, g->M, g->N, g->K, 1.0f, g->A, g->K, g->B, g->N, 0.0f, g->C, g->N);
}

#ifdef DA_USE_OPENBLAS
/* What da_gemm did before it owned the split: one cblas_sgemm that OpenBLAS
 * threads itself (its split, and with some kernels its bits, depend on the
 * thread count). Kept here only to measure what the owned split costs. */
static void openblas_threaded(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                              const float *B, int ldb, float beta, float *C, int ldc)
{
    int t = da_get_threads();
    openblas_set_num_threads(t); /* OpenMP flavour: also sets omp's count */
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
    da_set_threads(t); /* back to one OpenBLAS thread per piece */
}
#endif

/* C (M, N) = A (M, K) @ B (K, N), both kernels */
static void bench_gemm(const char *key, const char *label, int M, int N, int K)
{
    gemm_ctx g = {da_gemm, M, N, K, alloc_fill((size_t)M * K, 1), alloc_fill((size_t)K * N, 2),
                  alloc_fill((size_t)M * N, 3)};
    double flop = 2.0 * M * N * K;
    double ms_blas = time_ms(run_gemm, &g);
    g.gemm = da_gemm_portable;
    double ms_port = time_ms(run_gemm, &g);
    double gf_blas = flop / ms_blas * 1e-6, gf_port = flop / ms_port * 1e-6;
    printf("%-22s %5d %5d %5d | %9.3f %8.1f", label, M, N, K, ms_blas, gf_blas);
    if (peak_gflops > 0) printf(" %5.1f%%", 100.0 * gf_blas / peak_gflops);
    printf(" | %9.3f %8.1f", ms_port, gf_port);
    if (peak_gflops > 0) printf(" %5.1f%%", 100.0 * gf_port / peak_gflops);
    printf(" | %5.2f", ms_port / ms_blas);
#ifdef DA_USE_OPENBLAS
    g.gemm = openblas_threaded;
    double ms_own = time_ms(run_gemm, &g);
    printf(" | %9.3f %5.2f", ms_own, ms_blas / ms_own);
#endif
    printf("\n");
    char name[96];
    snprintf(name, sizeof name, "gemm.%s", key);
    record(name, ms_blas);
    snprintf(name, sizeof name, "gemm_portable.%s", key);
    record(name, ms_port);
    free(g.A);
    free(g.B);
    free(g.C);
}

static void gemm_section(void)
{
    /* The table compares the two backends: da_gemm runs OpenBLAS here when
     * the build has it, whatever the default (the portable kernel since
     * 2026-12-06); the sections after it run the default again. */
    const char *saved = da_gemm_backend();
    if (da_gemm_set_backend("openblas") != DA_OK) da_gemm_set_backend(saved);
    printf("\n== GEMM: C (M, N) = A (M, K) @ B (K, N), f32 row-major, alpha 1, beta 0\n");
    const char *pk = peak_gflops > 0 ? "  peak" : "";
    printf("%-22s %5s %5s %5s | %-9s %8s%s | %-9s %8s%s | %s%s\n", "shape", "M", "N", "K", "da_gemm ms",
           "GFLOP/s", pk, "portable", "GFLOP/s", pk, "portable/da_gemm",
           strcmp(da_gemm_backend(), "openblas") ? "" : " | OB-thr ms  da_gemm/OB-thr");
    printf("(da_gemm = %s in this table: pieces fixed by the shape, one thread each; OB-thr = one cblas_sgemm\n"
           " threaded by OpenBLAS itself, as before dalign owned the split: the last column is the split's cost)\n",
           da_gemm_backend());
    static const int sq[] = {64, 128, 256, 512, 1024};
    for (int i = 0; i < 5; i++) {
        char key[32], label[32];
        snprintf(key, sizeof key, "%d", sq[i]);
        snprintf(label, sizeof label, "square %d", sq[i]);
        bench_gemm(key, label, sq[i], sq[i], sq[i]);
    }
    /* the per-image im2col GEMMs of a 3x3 conv: W (O, C*9) @ col (C*9, H*W) */
    bench_gemm("conv_c64_32x32", "conv3x3 C64 32x32", 64, 1024, 576);
    bench_gemm("conv_c128_8x8", "conv3x3 C128 8x8", 128, 64, 1152);
    /* a UNet attention projection over one image's 8x8 tokens */
    bench_gemm("linear_64x128", "linear T64 C128", 64, 128, 128);
    da_gemm_set_backend(saved);
}

/* ------------------------------------------------------------------------ */
/* conv2d                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct conv_ctx {
    int N, C, H, W, O, k, stride, pad, OH, OW;
    float *x, *w, *b, *out, *col, *dout, *dx, *dw, *db;
} conv_ctx;

static void conv_fwd(void *p)
{
    conv_ctx *c = p;
    da_conv2d_forward(c->out, c->x, c->w, c->b, c->col, c->N, c->C, c->H, c->W, c->O, c->k,
                      c->stride, c->pad);
}

/* a training step's share: forward, zeroed gradients, backward into all three */
static void conv_fwd_bwd(void *p)
{
    conv_ctx *c = p;
    conv_fwd(c);
    memset(c->dx, 0, (size_t)c->N * c->C * c->H * c->W * sizeof(float));
    memset(c->dw, 0, (size_t)c->O * c->C * c->k * c->k * sizeof(float));
    memset(c->db, 0, (size_t)c->O * sizeof(float));
    da_conv2d_backward(c->dx, c->dw, c->db, c->dout, c->x, c->w, c->col, c->N, c->C, c->H, c->W,
                       c->O, c->k, c->stride, c->pad);
}

static void bench_conv(const char *key, int N, int C, int H, int W, int O, int k, int stride, int pad)
{
    conv_ctx c = {N, C, H, W, O, k, stride, pad, (H + 2 * pad - k) / stride + 1,
                  (W + 2 * pad - k) / stride + 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nx = (size_t)N * C * H * W, nw = (size_t)O * C * k * k, ny = (size_t)N * O * c.OH * c.OW;
    c.x = alloc_fill(nx, 10);
    c.w = alloc_fill(nw, 11);
    c.b = alloc_fill((size_t)O, 12);
    c.out = alloc_fill(ny, 13);
    c.dout = alloc_fill(ny, 14);
    c.col = alloc_fill(da_conv2d_col_size(N, C, H, W, O, k, stride, pad), 15);
    c.dx = alloc_fill(nx, 16);
    c.dw = alloc_fill(nw, 17);
    c.db = alloc_fill((size_t)O, 18);
    double ms_f = time_ms(conv_fwd, &c), ms_fb = time_ms(conv_fwd_bwd, &c);
    double flop = 2.0 * N * O * c.OH * c.OW * C * k * k; /* forward; backward is twice this */
    char label[96], name[96];
    snprintf(label, sizeof label, "N%d C%d->%d %dx%d k%d s%d p%d", N, C, O, H, W, k, stride, pad);
    printf("%-30s | %9.3f %8.1f | %9.3f %8.1f\n", label, ms_f, flop / ms_f * 1e-6, ms_fb,
           3.0 * flop / ms_fb * 1e-6);
    snprintf(name, sizeof name, "conv.%s.fwd", key);
    record(name, ms_f);
    snprintf(name, sizeof name, "conv.%s.fwd_bwd", key);
    record(name, ms_fb);
    free(c.x), free(c.w), free(c.b), free(c.out), free(c.dout), free(c.col);
    free(c.dx), free(c.dw), free(c.db);
}

static void conv_section(void)
{
    printf("\n== conv2d (im2col + one GEMM per group of images); fwd+bwd = forward, zero grads, backward "
           "(dinp, dweight, dbias)\n");
    printf("%-30s | %-9s %8s | %-9s %8s\n", "shape", "fwd ms", "GFLOP/s", "fwd+bwd", "GFLOP/s");
    bench_conv("c64_32x32", 16, 64, 32, 32, 64, 3, 1, 1);
    bench_conv("c128_8x8", 16, 128, 8, 8, 128, 3, 1, 1);
}

/* ------------------------------------------------------------------------ */
/* attention                                                                */
/* ------------------------------------------------------------------------ */

typedef struct attn_ctx {
    int B, Tq, Tk, D, H;
    float *q, *k, *v, *out, *att, *dout, *dq, *dk, *dv, *ds;
} attn_ctx;

static void attn_fwd(void *p)
{
    attn_ctx *a = p;
    da_attention_forward(a->out, a->att, a->q, a->k, a->v, NULL, a->B, a->Tq, a->Tk, a->D, a->H, 0);
}

static void attn_fwd_bwd(void *p)
{
    attn_ctx *a = p;
    attn_fwd(a);
    memset(a->dq, 0, (size_t)a->B * a->Tq * a->D * sizeof(float));
    memset(a->dk, 0, (size_t)a->B * a->Tk * a->D * sizeof(float));
    memset(a->dv, 0, (size_t)a->B * a->Tk * a->D * sizeof(float));
    da_attention_backward(a->dq, a->dk, a->dv, a->dout, a->att, a->q, a->k, a->v, a->ds, a->B,
                          a->Tq, a->Tk, a->D, a->H);
}

static void bench_attn(const char *key, int B, int Tq, int Tk, int D, int H)
{
    attn_ctx a = {B, Tq, Tk, D, H, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    size_t nq = (size_t)B * Tq * D, nk = (size_t)B * Tk * D;
    a.q = alloc_fill(nq, 20);
    a.k = alloc_fill(nk, 21);
    a.v = alloc_fill(nk, 22);
    a.out = alloc_fill(nq, 23);
    a.att = alloc_fill((size_t)B * H * Tq * Tk, 24);
    a.dout = alloc_fill(nq, 25);
    a.dq = alloc_fill(nq, 26);
    a.dk = alloc_fill(nk, 27);
    a.dv = alloc_fill(nk, 28);
    a.ds = alloc_fill((size_t)Tq * Tk, 29);
    double ms_f = time_ms(attn_fwd, &a), ms_fb = time_ms(attn_fwd_bwd, &a);
    char label[96], name[96];
    snprintf(label, sizeof label, "B%d Tq%d Tk%d D%d H%d", B, Tq, Tk, D, H);
    printf("%-30s | %9.3f | %9.3f\n", label, ms_f, ms_fb);
    snprintf(name, sizeof name, "attn.%s.fwd", key);
    record(name, ms_f);
    snprintf(name, sizeof name, "attn.%s.fwd_bwd", key);
    record(name, ms_fb);
    free(a.q), free(a.k), free(a.v), free(a.out), free(a.att), free(a.dout);
    free(a.dq), free(a.dk), free(a.dv), free(a.ds);
}

static void attn_section(void)
{
    printf("\n== attention (softmax(q k^T / sqrt(hd)) v per head, no mask); fwd+bwd = forward, "
           "zero grads, backward (dq, dk, dv)\n");
    printf("%-30s | %-9s | %-9s\n", "shape", "fwd ms", "fwd+bwd");
    bench_attn("self_T64", 16, 64, 64, 128, 4);
    bench_attn("cross_T64x24", 16, 64, 24, 128, 4);
}

int main(int argc, char **argv)
{
    da_threads_init();
    int threads = da_get_threads();
    double peak_core = argc > 1 ? atof(argv[1]) : 0.0;
    peak_gflops = peak_core * threads;
    if (argc > 2) {
        results = fopen(argv[2], "w");
        if (!results) {
            perror(argv[2]);
            return 1;
        }
    }
    printf("== dalign core benchmarks: %d thread%s, da_gemm backend %s (portable tile %s, vector kernels %s)\n",
           threads, threads == 1 ? "" : "s", da_gemm_backend(), da_gemm_tile(), da_isa());
    if (peak_gflops > 0)
        printf("peak for %d thread%s: %.1f GFLOP/s (bench_peak's per-core peak x threads)\n", threads,
               threads == 1 ? "" : "s", peak_gflops);
    gemm_section();
    conv_section();
    attn_section();
    if (results) fclose(results);
    return 0;
}
