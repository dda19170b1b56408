/* Activation and normalisation kernels, before and after vectorisation:
 * the elementary functions (scalar against da_*f_n), GELU, SiLU, softmax,
 * GroupNorm (+ SiLU), LayerNorm at the UNet's sizes
 * (batch 16: 8x8 and 4x4 latents, 64/128/256 channels, 16 groups, 4 heads,
 * transformer MLPs of 4C). Numbers only, never pass/fail.
 *
 * usage: bench_act            (one thread: the kernels alone, no OpenMP)
 *
 * "before" is the kernel as it was written before (one da_expf / da_erff /
 * ... call per element, plain sequential loops for the norms), compiled here
 * with the library's flags; "after" is the library's kernel. Both give the
 * same bits (tests/test_ops_act.c, tests/test_ops_norm.c). Timing: one
 * warm-up call, then 9 samples of enough calls to last >= 20 ms each; the
 * median sample is reported as ns per element, with the spread (min-max) of
 * the samples. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dalign.h"

#define N_SAMPLES 9
#define MIN_SAMPLE_S 0.02

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

/* seconds per call of fn(ctx): median, min and max of the samples */
typedef struct timing { double med, lo, hi; } timing;

static timing time_call(bench_fn fn, void *ctx)
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
    return (timing){s[N_SAMPLES / 2], s[0], s[N_SAMPLES - 1]};
}

static float *alloc_fill(size_t n, uint32_t seed, float lo, float hi)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "bench_act: out of memory\n");
        exit(1);
    }
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = lo + (hi - lo) * (float)(s >> 8) * (1.0f / 16777216.0f);
    }
    return x;
}

/* n values of about N(0, sd^2) (a sum of 4 uniforms, Irwin-Hall): what
 * the layers feed SiLU and GELU */
static float *alloc_normal(size_t n, uint32_t seed, float sd)
{
    float *x = alloc_fill(4 * n, seed, -1.0f, 1.0f), *y = alloc_fill(n, seed, 0, 1);
    for (size_t i = 0; i < n; i++)   /* each uniform(-1, 1) has variance 1/3 */
        y[i] = sd * (x[4 * i] + x[4 * i + 1] + x[4 * i + 2] + x[4 * i + 3]) * 0.8660254f;
    free(x);
    return y;
}

/* one row of the table: before and after in ns per element, and the ratio */
static void report(const char *name, size_t n, bench_fn before, bench_fn after, void *ctx)
{
    timing b = time_call(before, ctx), a = time_call(after, ctx);
    double k = 1e9 / (double)n;
    printf("%-34s %9zu | %7.2f [%6.2f-%6.2f] | %7.2f [%6.2f-%6.2f] | %5.2fx\n", name, n, b.med * k, b.lo * k,
           b.hi * k, a.med * k, a.lo * k, a.hi * k, b.med / a.med);
}

/* ---- the kernels as they were before ------------------------------------- */

#define INV_SQRT2      0.70710678118654752440f
#define INV_SQRT_2PI   0.39894228040143267794f

static float old_sigmoid(float x)
{
    float e = da_expf(-fabsf(x));
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

static void old_silu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = inp[i] * old_sigmoid(inp[i]);
}

static void old_silu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], s = old_sigmoid(x);
        dinp[i] += dout[i] * (s * (1.0f + x * (1.0f - s)));
    }
}

static void old_gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + da_erff(inp[i] * INV_SQRT2));
}

static void old_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + da_erff(x * INV_SQRT2));
        float pdf = INV_SQRT_2PI * da_expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

static void old_softmax_forward(float *out, const float *inp, int N, int C)
{
    for (int r = 0; r < N; r++) {
        const float *x = inp + (size_t)r * C;
        float *y = out + (size_t)r * C;
        float m = -INFINITY;
        for (int c = 0; c < C; c++) m = x[c] > m ? x[c] : m;
        float sum = 0.0f;
        for (int c = 0; c < C; c++) {
            y[c] = da_expf(x[c] - m);
            sum += y[c];
        }
        float inv = 1.0f / sum;
        for (int c = 0; c < C; c++) y[c] *= inv;
    }
}

static void old_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                                  const float *beta, int N, int C, int S, int G, float eps)
{
    int Cg = C / G;
    size_t count = (size_t)Cg * S;
    for (int ng = 0; ng < N * G; ng++) {
        const float *x = inp + (size_t)ng * count;
        float *y = out + (size_t)ng * count;
        float sum = 0.0f;
        for (size_t i = 0; i < count; i++) sum += x[i];
        float m = sum / (float)count;
        float ss = 0.0f;
        for (size_t i = 0; i < count; i++) {
            float d = x[i] - m;
            ss += d * d;
        }
        float r = 1.0f / sqrtf(ss / (float)count + eps);
        mean[ng] = m;
        rstd[ng] = r;
        int c0 = (ng % G) * Cg;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            float bt = beta ? beta[c0 + cg] : 0.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                y[i] = (x[i] - m) * r * gm + bt;
            }
        }
    }
}

static void old_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                   const float *inp, const float *gamma, const float *mean, const float *rstd,
                                   int N, int C, int S, int G)
{
    int Cg = C / G;
    size_t count = (size_t)Cg * S;
    for (int ng = 0; ng < N * G; ng++) {
        size_t off = (size_t)ng * count;
        float *dx = dinp + off;
        const float *dy = dout + off, *x = inp + off;
        float m = mean[ng], r = rstd[ng], sum_g = 0.0f, sum_gx = 0.0f;
        int c0 = (ng % G) * Cg;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                float g = dy[i] * gm;
                sum_g += g;
                sum_gx += g * (x[i] - m) * r;
            }
        }
        float mean_g = sum_g / (float)count, mean_gx = sum_gx / (float)count;
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            for (int s = 0; s < S; s++) {
                size_t i = (size_t)cg * S + s;
                float xhat = (x[i] - m) * r;
                dx[i] += r * (dy[i] * gm - mean_g - xhat * mean_gx);
            }
        }
    }
    for (int c = 0; c < C; c++) {
        float sg = 0.0f, sb = 0.0f;
        for (int n = 0; n < N; n++) {
            int ng = n * G + c / Cg;
            float m = mean[ng], r = rstd[ng];
            const float *x = inp + ((size_t)n * C + c) * S;
            const float *dy = dout + ((size_t)n * C + c) * S;
            for (int s = 0; s < S; s++) {
                sg += dy[s] * (x[s] - m) * r;
                sb += dy[s];
            }
        }
        dgamma[c] += sg;
        dbeta[c] += sb;
    }
}

/* ---- elementary functions ------------------------------------------------- */

typedef struct fn_ctx {
    size_t n;
    float *x, *y;
    float (*scalar)(float);
    void (*array)(float *, const float *, size_t);
} fn_ctx;

static void fn_scalar(void *p)
{
    fn_ctx *c = p;
    for (size_t i = 0; i < c->n; i++) c->y[i] = c->scalar(c->x[i]);
}

static void fn_array(void *p)
{
    fn_ctx *c = p;
    c->array(c->y, c->x, c->n);
}

/* 4096 values (in L1) in each function's working range: the scalar
 * function called per value, against its array version */
static void functions_section(void)
{
    static const struct {
        const char *name;
        float (*scalar)(float);
        void (*array)(float *, const float *, size_t);
        float lo, hi;
    } ROWS[] = {
        {"expf [-10, 10]", da_expf, da_expf_n, -10.0f, 10.0f},
        {"logf [0.01, 100]", da_logf, da_logf_n, 0.01f, 100.0f},
        {"erff [-5, 5]", da_erff, da_erff_n, -5.0f, 5.0f},
        {"tanhf [-5, 5]", da_tanhf, da_tanhf_n, -5.0f, 5.0f},
        {"log1pf [-0.9, 10]", da_log1pf, da_log1pf_n, -0.9f, 10.0f},
    };
    for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++) {
        fn_ctx c = {4096, alloc_fill(4096, 20 + (uint32_t)r, ROWS[r].lo, ROWS[r].hi), alloc_fill(4096, 0, 0, 1),
                    ROWS[r].scalar, ROWS[r].array};
        report(ROWS[r].name, c.n, fn_scalar, fn_array, &c);
        free(c.x), free(c.y);
    }
}

/* ---- elementwise ---------------------------------------------------------- */

typedef struct elem_ctx {
    size_t n;
    float *x, *y, *dy, *dx;
} elem_ctx;

static void silu_fwd_old(void *p) { elem_ctx *c = p; old_silu_forward(c->y, c->x, c->n); }
static void silu_fwd_new(void *p) { elem_ctx *c = p; da_silu_forward(c->y, c->x, c->n); }
static void silu_bwd_old(void *p) { elem_ctx *c = p; old_silu_backward(c->dx, c->dy, c->x, c->n); }
static void silu_bwd_new(void *p) { elem_ctx *c = p; da_silu_backward(c->dx, c->dy, c->x, c->n); }
static void gelu_fwd_old(void *p) { elem_ctx *c = p; old_gelu_forward(c->y, c->x, c->n); }
static void gelu_fwd_new(void *p) { elem_ctx *c = p; da_gelu_forward(c->y, c->x, c->n); }
static void gelu_bwd_old(void *p) { elem_ctx *c = p; old_gelu_backward(c->dx, c->dy, c->x, c->n); }
static void gelu_bwd_new(void *p) { elem_ctx *c = p; da_gelu_backward(c->dx, c->dy, c->x, c->n); }

static void elementwise_section(void)
{
    /* SiLU on the ResBlocks' (16, C, H, W); GELU on the transformers' MLP
     * hidden (16 * HW tokens, 4C); inputs about N(0, 1) */
    static const struct { const char *name; size_t n; int gelu; } ROWS[] = {
        {"silu (16,64,8,8)", 16 * 64 * 64, 0},
        {"silu (16,128,4,4)", 16 * 128 * 16, 0},
        {"gelu (16*64,256)", 16 * 64 * 256, 1},
        {"gelu (16*16,512)", 16 * 16 * 512, 1},
    };
    for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++) {
        size_t n = ROWS[r].n;
        elem_ctx c = {n, alloc_normal(n, 1, 1.0f), alloc_fill(n, 2, 0, 1), alloc_fill(n, 3, -1, 1),
                      alloc_fill(n, 4, -1, 1)};
        char name[64];
        snprintf(name, sizeof name, "%s fwd", ROWS[r].name);
        report(name, n, ROWS[r].gelu ? gelu_fwd_old : silu_fwd_old, ROWS[r].gelu ? gelu_fwd_new : silu_fwd_new, &c);
        snprintf(name, sizeof name, "%s bwd", ROWS[r].name);
        report(name, n, ROWS[r].gelu ? gelu_bwd_old : silu_bwd_old, ROWS[r].gelu ? gelu_bwd_new : silu_bwd_new, &c);
        free(c.x), free(c.y), free(c.dy), free(c.dx);
    }
}

/* ---- softmax ---------------------------------------------------------------- */

typedef struct softmax_ctx {
    int N, C;
    float *x, *y;
} softmax_ctx;

static void softmax_old(void *p) { softmax_ctx *c = p; old_softmax_forward(c->y, c->x, c->N, c->C); }
static void softmax_new(void *p) { softmax_ctx *c = p; da_softmax_forward(c->y, c->x, c->N, c->C); }

static void softmax_section(void)
{
    /* attention probabilities: (16 * 4 heads * 64 queries, keys) */
    static const struct { const char *name; int N, C; } ROWS[] = {
        {"softmax (16*4*64, 64) self", 16 * 4 * 64, 64},
        {"softmax (16*4*64, 24) cross", 16 * 4 * 64, 24},
        {"softmax (16*4*16, 16) self 4x4", 16 * 4 * 16, 16},
    };
    for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++) {
        size_t n = (size_t)ROWS[r].N * ROWS[r].C;
        softmax_ctx c = {ROWS[r].N, ROWS[r].C, alloc_fill(n, 5, -4.0f, 4.0f), alloc_fill(n, 6, 0, 1)};
        report(ROWS[r].name, n, softmax_old, softmax_new, &c);
        free(c.x), free(c.y);
    }
}

/* ---- normalisation ---------------------------------------------------------- */

typedef struct norm_ctx {
    int N, C, S, G;
    float *x, *y, *z, *gamma, *beta, *mean, *rstd, *dy, *dx, *dgamma, *dbeta;
} norm_ctx;

static void gn_fwd_old(void *p)
{
    norm_ctx *c = p;
    old_groupnorm_forward(c->y, c->mean, c->rstd, c->x, c->gamma, c->beta, c->N, c->C, c->S, c->G, 1e-5f);
}

static void gn_fwd_new(void *p)
{
    norm_ctx *c = p;
    da_groupnorm_forward(c->y, c->mean, c->rstd, c->x, c->gamma, c->beta, c->N, c->C, c->S, c->G, 1e-5f);
}

/* groupnorm then SiLU: the two old kernels, against the fused one in
 * inference (the normalised values not kept) */
static void gn_silu_old(void *p)
{
    norm_ctx *c = p;
    gn_fwd_old(p);
    old_silu_forward(c->z, c->y, (size_t)c->N * c->C * c->S);
}

static void gn_silu_new(void *p)
{
    norm_ctx *c = p;
    da_groupnorm_silu_forward(c->z, NULL, c->mean, c->rstd, c->x, c->gamma, c->beta, c->N, c->C, c->S, c->G,
                              1e-5f);
}

static void gn_bwd_old(void *p)
{
    norm_ctx *c = p;
    old_groupnorm_backward(c->dx, c->dgamma, c->dbeta, c->dy, c->x, c->gamma, c->mean, c->rstd, c->N, c->C,
                           c->S, c->G);
}

static void gn_bwd_new(void *p)
{
    norm_ctx *c = p;
    da_groupnorm_backward(c->dx, c->dgamma, c->dbeta, c->dy, c->x, c->gamma, c->mean, c->rstd, c->N, c->C,
                          c->S, c->G);
}

static void norm_section(void)
{
    /* GroupNorm (16, C, H, W), 16 groups; LayerNorm (tokens, C) as groupnorm
     * with G = 1, S = 1 (what da_layernorm_forward runs) */
    static const struct { const char *name; int N, C, S, G, silu; } ROWS[] = {
        {"groupnorm (16,64,8,8) G16", 16, 64, 64, 16, 1},
        {"groupnorm (16,128,4,4) G16", 16, 128, 16, 16, 1},
        {"groupnorm (16,256,4,4) G16", 16, 256, 16, 16, 1},
        {"layernorm (16*64,64)", 16 * 64, 64, 1, 1, 0},
        {"layernorm (16*16,128)", 16 * 16, 128, 1, 1, 0},
    };
    for (size_t r = 0; r < sizeof ROWS / sizeof ROWS[0]; r++) {
        int N = ROWS[r].N, C = ROWS[r].C, S = ROWS[r].S, G = ROWS[r].G;
        size_t n = (size_t)N * C * S, ng = (size_t)N * G;
        norm_ctx c = {N, C, S, G, alloc_fill(n, 7, -1, 3), alloc_fill(n, 8, 0, 1), alloc_fill(n, 9, 0, 1),
                      alloc_fill((size_t)C, 10, 0.5f, 1.5f), alloc_fill((size_t)C, 11, -0.5f, 0.5f),
                      alloc_fill(ng, 12, 0, 1), alloc_fill(ng, 13, 0, 1), alloc_fill(n, 14, -1, 1),
                      alloc_fill(n, 15, -1, 1), alloc_fill((size_t)C, 16, 0, 1), alloc_fill((size_t)C, 17, 0, 1)};
        char name[64];
        snprintf(name, sizeof name, "%s fwd", ROWS[r].name);
        report(name, n, gn_fwd_old, gn_fwd_new, &c);
        if (ROWS[r].silu) {
            snprintf(name, sizeof name, "%s +silu fwd", ROWS[r].name);
            report(name, n, gn_silu_old, gn_silu_new, &c);
        }
        snprintf(name, sizeof name, "%s bwd", ROWS[r].name);
        report(name, n, gn_bwd_old, gn_bwd_new, &c);
        free(c.x), free(c.y), free(c.z), free(c.gamma), free(c.beta), free(c.mean), free(c.rstd);
        free(c.dy), free(c.dx), free(c.dgamma), free(c.dbeta);
    }
}

int main(void)
{
    da_set_threads(1);
    printf("== activation and normalisation kernels, 1 thread: ns per element, median [min-max] of %d samples\n",
           N_SAMPLES);
    printf("%-34s %9s | %-24s | %-24s | %s\n", "kernel (shape)", "elements", "before (scalar)", "after",
           "speed-up");
    functions_section();
    elementwise_section();
    softmax_section();
    norm_section();
    return 0;
}
