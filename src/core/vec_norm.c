/* Group normalisation and layer normalisation: the kernel pairs over
 * float*, built once per instruction set (core/vec.h; the tape wrappers are
 * in ops_norm.c). Layernorm over (N, C) is groupnorm with one group and
 * S = 1 (each row is one group, gamma/beta per channel), so both share the
 * same two kernels.
 *
 * Statistics: two passes in f32 (mean, then the mean of squared deviations),
 * the biased variance as in PyTorch; rstd = 1/sqrt(var + eps).
 * Threads: forward and dinp are parallel over (n, g) groups, which own
 * disjoint outputs; dgamma/dbeta are parallel over channels with n summed in
 * order, so every reduction has one fixed order.
 *
 * Summation order: every sum (a group's sum of x and of squared deviations,
 * its two backward sums, a channel's dgamma and dbeta) is one sequential
 * float sum in index order, the order the bits of every result so far
 * (goldens, checkpoints) were made with; any other order (pairwise, per
 * vector lane) rounds differently. Such a sum is bound by the latency of one
 * add, so LANES groups (or channels) are summed side by side instead: each
 * lane is its own sequential sum, in the same order as alone, and the lanes'
 * additions overlap. The elementwise passes (normalise, dinp) run over
 * chunks of CHUNK values with a constant trip count, which GCC vectorises
 * at -O2. Neither changes a bit: tests/test_ops_norm.c compares with the
 * plain loops. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "core/mathf.h"
#include "core/par.h"
#include "core/vec.h"
#include "dalign/core.h"

#define LANES 8
#define CHUNK 16
_Static_assert(CHUNK % EXPF_N_STEP == 0, "silu_span's exps go EXPF_N_STEP at a time");

/* Loops over the LANES lanes are unrolled, so that each lane's sum lives
 * in a register of its own (a sum kept in a stack array would go through
 * memory on every addition). */
#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL_LANES _Pragma("GCC unroll 8")
#else
#define UNROLL_LANES
#endif

/* ---- elementwise pieces ------------------------------------------------------ */

/* y (n) = (x - m) * r * gm + bt, gm and bt one value (a channel's).
 * x is copied chunk by chunk, so y may be x and the loop cannot alias. */
static void normalize_span(float *y, const float *x, size_t n, float m, float r, float gm, float bt)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float xb[CHUNK];
        memcpy(xb, x + i, sizeof xb);
        for (int k = 0; k < CHUNK; k++) y[i + k] = (xb[k] - m) * r * gm + bt;
    }
    for (; i < n; i++) y[i] = (x[i] - m) * r * gm + bt;
}

/* y (n) = (x - m) * r * gamma[i] + beta[i]: a layernorm row (S = 1) */
static void normalize_row(float *y, const float *x, size_t n, float m, float r, const float *gamma,
                          const float *beta)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float xb[CHUNK], gb[CHUNK], bb[CHUNK];
        memcpy(xb, x + i, sizeof xb);
        memcpy(gb, gamma + i, sizeof gb);
        memcpy(bb, beta + i, sizeof bb);
        for (int k = 0; k < CHUNK; k++) y[i + k] = (xb[k] - m) * r * gb[k] + bb[k];
    }
    for (; i < n; i++) y[i] = (x[i] - m) * r * gamma[i] + beta[i];
}

/* out (n) = y * sigmoid(y): da_silu_forward's formula (core/mathf.h) */
static void silu_span(float *out, const float *y, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float yb[CHUNK], t[CHUNK], e[CHUNK];
        memcpy(yb, y + i, sizeof yb);
        for (int k = 0; k < CHUNK; k++) t[k] = -fabsf(yb[k]);
        EXPF_N(e, t, CHUNK);
        for (int k = 0; k < CHUNK; k++) out[i + k] = yb[k] * sigmoid_of_exp(yb[k], e[k]);
    }
    for (; i < n; i++) out[i] = y[i] * sigmoidf_lane(y[i]);
}

/* dx (n) += r * (dy * gm - mean_g - xhat * mean_gx), xhat = (x - m) * r */
static void dinp_span(float *dx, const float *dy, const float *x, size_t n, float m, float r, float gm,
                      float mean_g, float mean_gx)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float xb[CHUNK], db[CHUNK];
        memcpy(xb, x + i, sizeof xb);
        memcpy(db, dy + i, sizeof db);
        for (int k = 0; k < CHUNK; k++) {
            float xhat = (xb[k] - m) * r;
            dx[i + k] += r * (db[k] * gm - mean_g - xhat * mean_gx);
        }
    }
    for (; i < n; i++) {
        float xhat = (x[i] - m) * r;
        dx[i] += r * (dy[i] * gm - mean_g - xhat * mean_gx);
    }
}

/* dx (n) += r * (dy * gamma[i] - mean_g - xhat * mean_gx): a layernorm row */
static void dinp_row(float *dx, const float *dy, const float *x, size_t n, float m, float r, const float *gamma,
                     float mean_g, float mean_gx)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        float xb[CHUNK], db[CHUNK], gb[CHUNK];
        memcpy(xb, x + i, sizeof xb);
        memcpy(db, dy + i, sizeof db);
        memcpy(gb, gamma + i, sizeof gb);
        for (int k = 0; k < CHUNK; k++) {
            float xhat = (xb[k] - m) * r;
            dx[i + k] += r * (db[k] * gb[k] - mean_g - xhat * mean_gx);
        }
    }
    for (; i < n; i++) {
        float xhat = (x[i] - m) * r;
        dx[i] += r * (dy[i] * gamma[i] - mean_g - xhat * mean_gx);
    }
}

/* ---- forward ------------------------------------------------------------------- */

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX2__)
/* The avx2 and avx512 copies read the LANES groups 8 values at a time and
 * transpose them in registers (core/transpose8.h): a vector then holds
 * value i of every group, and each lane is still its group's sequential
 * sum in index order. GCC's own vectorisation of the lanes loop below
 * builds that vector from 8 scalar loads and 7 inserts per value: the
 * statistics were a third of the fused GroupNorm + SiLU (perf, Zen 5). */
#include "core/transpose8.h"
#define STATS_BY_8 1
_Static_assert(LANES == 8, "lane_stats transposes 8 groups");
#endif

/* mean, rstd of LANES groups, x[l] (count values) each: per group, the sum
 * of x, then of (x - mean)^2, each in index order */
static void lane_stats(float *mean, float *rstd, const float *const *x, size_t count, float eps)
{
    float sum[LANES] = {0}, ss[LANES] = {0}, m[LANES];
    size_t i = 0;
#ifdef STATS_BY_8
    da_v8f vsum = {0};
    for (; i + 8 <= count; i += 8) {
        DA_LOAD8_ROWS(r, x, i);
        DA_TRANSPOSE8(r, v);
        DA_ADD_COLUMNS8(vsum, v);
    }
    memcpy(sum, &vsum, sizeof sum);
#endif
    for (; i < count; i++)
        UNROLL_LANES for (int l = 0; l < LANES; l++) sum[l] += x[l][i];
    for (int l = 0; l < LANES; l++) m[l] = sum[l] / (float)count;
    i = 0;
#ifdef STATS_BY_8
    da_v8f vm, vss = {0}, d;
    memcpy(&vm, m, sizeof vm);
    for (; i + 8 <= count; i += 8) {
        DA_LOAD8_ROWS(r, x, i);
        DA_TRANSPOSE8(r, v);
        d = v0 - vm, vss += d * d, d = v1 - vm, vss += d * d, d = v2 - vm, vss += d * d, d = v3 - vm, vss += d * d;
        d = v4 - vm, vss += d * d, d = v5 - vm, vss += d * d, d = v6 - vm, vss += d * d, d = v7 - vm, vss += d * d;
    }
    memcpy(ss, &vss, sizeof ss);
#endif
    for (; i < count; i++)
        UNROLL_LANES for (int l = 0; l < LANES; l++) {
            float d = x[l][i] - m[l];
            ss[l] += d * d;
        }
    for (int l = 0; l < LANES; l++) {
        mean[l] = m[l];
        rstd[l] = 1.0f / sqrtf(ss[l] / (float)count + eps);
    }
}

/* y (Cg, S) of group ng = (x - mean) * rstd * gamma (C) + beta (C);
 * out = silu(y) when out is given (then y may be NULL: out holds y first) */
static void normalize_group(float *out, float *y, const float *x, const float *gamma, const float *beta,
                            float m, float r, int c0, int Cg, int S)
{
    float *dst = y ? y : out;
    if (S == 1 && gamma && beta) {
        normalize_row(dst, x, (size_t)Cg, m, r, gamma + c0, beta + c0);
    } else {
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0 + cg] : 1.0f;
            float bt = beta ? beta[c0 + cg] : 0.0f;
            size_t off = (size_t)cg * S;
            normalize_span(dst + off, x + off, (size_t)S, m, r, gm, bt);
        }
    }
    if (out) silu_span(out, dst, (size_t)Cg * S);
}

/* the groups of set q: LANES groups from q * LANES, the last set's spare
 * lanes repeating its last group */
static void groupnorm_forward_set(float *out, float *y, float *mean, float *rstd, const float *inp,
                                  const float *gamma, const float *beta, int q, int NG, int G, int Cg, int S,
                                  float eps)
{
    size_t count = (size_t)Cg * S;  /* a group is one contiguous block of Cg*S values */
    int ng0 = q * LANES, nl = NG - ng0 < LANES ? NG - ng0 : LANES;
    const float *x[LANES];
    float m[LANES], r[LANES];
    for (int l = 0; l < LANES; l++) x[l] = inp + (size_t)(ng0 + (l < nl ? l : nl - 1)) * count;
    lane_stats(m, r, x, count, eps);
    for (int l = 0; l < nl; l++) {
        int ng = ng0 + l;
        size_t off = (size_t)ng * count;
        mean[ng] = m[l];
        rstd[ng] = r[l];
        normalize_group(out ? out + off : NULL, y ? y + off : NULL, x[l], gamma, beta, m[l], r[l],
                        (ng % G) * Cg, Cg, S);
    }
}

/* The groupnorm forward, with the SiLU fused when out is given: y (N, C, S)
 * (or NULL when out is given) the normalised values, out = silu(y).
 * Groups are taken LANES at a time; lanes past the last group repeat it
 * (their statistics are computed and dropped). */
static void groupnorm_forward_impl(float *out, float *y, float *mean, float *rstd, const float *inp,
                                   const float *gamma, const float *beta, int N, int C, int S, int G,
                                   float eps)
{
    assert(G > 0 && C % G == 0);
    int Cg = C / G, NG = N * G;
    int n_sets = (NG + LANES - 1) / LANES;
    DA_PAR_FOR((double)N * C * S,
        for (int q = 0; q < n_sets; q++)
            groupnorm_forward_set(out, y, mean, rstd, inp, gamma, beta, q, NG, G, Cg, S, eps));
}

/* out (N, C, S) = (inp - mean[n,g]) * rstd[n,g] * gamma (C) + beta (C),
 * G groups of C/G consecutive channels; mean/rstd (N, G) are written */
void VEC_FN(da_groupnorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                          const float *gamma, const float *beta, int N, int C, int S, int G, float eps)
{
    groupnorm_forward_impl(NULL, out, mean, rstd, inp, gamma, beta, N, C, S, G, eps);
}

/* out (N, C, S) = silu(groupnorm(inp)), bit for bit da_silu_forward of
 * da_groupnorm_forward's output; normed (N, C, S) gets that output, or is
 * NULL (not needed: inference) */
void VEC_FN(da_groupnorm_silu_forward)(float *out, float *normed, float *mean, float *rstd, const float *inp,
                               const float *gamma, const float *beta, int N, int C, int S, int G, float eps)
{
    groupnorm_forward_impl(out, normed, mean, rstd, inp, gamma, beta, N, C, S, G, eps);
}

/* ---- backward ------------------------------------------------------------------ */

/* dinp for LANES groups: with xhat = (x - mean) * rstd and g = dout * gamma,
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). The two sums run over
 * all lanes (lane l: group ng[l]); only the first nl lanes are written. */
static void groupnorm_dinp_lanes(float *dinp, const float *dout, const float *inp, const float *gamma,
                                 const float *mean, const float *rstd, const int *ng, int nl, int G,
                                 int Cg, int S)
{
    size_t count = (size_t)Cg * S;
    const float *x[LANES], *dy[LANES];
    float m[LANES], r[LANES], sum_g[LANES] = {0}, sum_gx[LANES] = {0};
    int c0[LANES];
    for (int l = 0; l < LANES; l++) {
        x[l] = inp + (size_t)ng[l] * count;
        dy[l] = dout + (size_t)ng[l] * count;
        m[l] = mean[ng[l]];
        r[l] = rstd[ng[l]];
        c0[l] = (ng[l] % G) * Cg;
    }
    for (int cg = 0; cg < Cg; cg++) {
        float gm[LANES];
        UNROLL_LANES for (int l = 0; l < LANES; l++) gm[l] = gamma ? gamma[c0[l] + cg] : 1.0f;
        for (int s = 0; s < S; s++) {
            size_t i = (size_t)cg * S + s;
            UNROLL_LANES for (int l = 0; l < LANES; l++) {
                float g = dy[l][i] * gm[l];
                sum_g[l] += g;
                sum_gx[l] += g * (x[l][i] - m[l]) * r[l];
            }
        }
    }
    for (int l = 0; l < nl; l++) {
        float mean_g = sum_g[l] / (float)count, mean_gx = sum_gx[l] / (float)count;
        float *dx = dinp + (size_t)ng[l] * count;
        if (S == 1 && gamma) {
            dinp_row(dx, dy[l], x[l], (size_t)Cg, m[l], r[l], gamma + c0[l], mean_g, mean_gx);
            continue;
        }
        for (int cg = 0; cg < Cg; cg++) {
            float gm = gamma ? gamma[c0[l] + cg] : 1.0f;
            size_t off = (size_t)cg * S;
            dinp_span(dx + off, dy[l] + off, x[l] + off, (size_t)S, m[l], r[l], gm, mean_g, mean_gx);
        }
    }
}

/* dgamma[c] += sum_{n,s} dout * (x - mean) * rstd, dbeta[c] += sum_{n,s} dout
 * for LANES channels c[l] (n, then s, in order); the first nl are written */
static void groupnorm_dparams_lanes(float *dgamma, float *dbeta, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, const int *c, int nl, int N,
                                    int C, int S, int G)
{
    int Cg = C / G, g[LANES];
    float sg[LANES] = {0}, sb[LANES] = {0};
    for (int l = 0; l < LANES; l++) g[l] = c[l] / Cg;
    for (int n = 0; n < N; n++) {
        const float *x[LANES], *dy[LANES];
        float m[LANES], r[LANES];
        UNROLL_LANES for (int l = 0; l < LANES; l++) {
            int ng = n * G + g[l];
            m[l] = mean[ng];
            r[l] = rstd[ng];
            x[l] = inp + ((size_t)n * C + c[l]) * S;
            dy[l] = dout + ((size_t)n * C + c[l]) * S;
        }
        for (int s = 0; s < S; s++)
            UNROLL_LANES for (int l = 0; l < LANES; l++) {
                sg[l] += dy[l][s] * (x[l][s] - m[l]) * r[l];
                sb[l] += dy[l][s];
            }
    }
    for (int l = 0; l < nl; l++) {
        if (dgamma) dgamma[c[l]] += sg[l];
        if (dbeta) dbeta[c[l]] += sb[l];
    }
}

/* The same sums for a layernorm (S = 1, G = 1), where a row's channels are
 * contiguous: CHUNK channels c0.. at once (nc <= CHUNK of them), the rows n
 * in order; each channel's sum is still its own sequential one, and the
 * loads of a row are contiguous, so the chunk's loop vectorises. */
static void layernorm_dparams_chunk(float *dgamma, float *dbeta, const float *dout, const float *inp,
                                    const float *mean, const float *rstd, int c0, int nc, int N, int C)
{
    float sg[CHUNK] = {0}, sb[CHUNK] = {0};
    for (int n = 0; n < N; n++) {
        float m = mean[n], r = rstd[n], xb[CHUNK] = {0}, db[CHUNK] = {0};
        memcpy(xb, inp + (size_t)n * C + c0, (size_t)nc * sizeof(float));
        memcpy(db, dout + (size_t)n * C + c0, (size_t)nc * sizeof(float));
        for (int k = 0; k < CHUNK; k++) {
            sg[k] += db[k] * (xb[k] - m) * r;
            sb[k] += db[k];
        }
    }
    for (int k = 0; k < nc; k++) {
        if (dgamma) dgamma[c0 + k] += sg[k];
        if (dbeta) dbeta[c0 + k] += sb[k];
    }
}

/* The three loops of the backward, one set (q) of LANES groups or channels,
 * or one chunk of CHUNK channels, at a time; spare lanes of the last set
 * repeat its last group or channel and are dropped */
static void groupnorm_dinp_set(float *dinp, const float *dout, const float *inp, const float *gamma,
                               const float *mean, const float *rstd, int q, int NG, int G, int Cg, int S)
{
    int ng[LANES], nl = NG - q * LANES < LANES ? NG - q * LANES : LANES;
    for (int l = 0; l < LANES; l++) ng[l] = q * LANES + (l < nl ? l : nl - 1);
    groupnorm_dinp_lanes(dinp, dout, inp, gamma, mean, rstd, ng, nl, G, Cg, S);
}

static void layernorm_dparams_chunk_q(float *dgamma, float *dbeta, const float *dout, const float *inp,
                                const float *mean, const float *rstd, int q, int N, int C)
{
    int c0 = q * CHUNK, nc = C - c0 < CHUNK ? C - c0 : CHUNK;
    layernorm_dparams_chunk(dgamma, dbeta, dout, inp, mean, rstd, c0, nc, N, C);
}

static void groupnorm_dparams_set(float *dgamma, float *dbeta, const float *dout, const float *inp,
                                  const float *mean, const float *rstd, int q, int N, int C, int S, int G)
{
    int c[LANES], nl = C - q * LANES < LANES ? C - q * LANES : LANES;
    for (int l = 0; l < LANES; l++) c[l] = q * LANES + (l < nl ? l : nl - 1);
    groupnorm_dparams_lanes(dgamma, dbeta, dout, inp, mean, rstd, c, nl, N, C, S, G);
}

/* dinp (N, C, S) += see above; dgamma (C) += sum_{n,s} dout * xhat;
 * dbeta (C) += sum_{n,s} dout. NULL gradients are skipped; gamma NULL = 1. */
void VEC_FN(da_groupnorm_backward)(float *dinp, float *dgamma, float *dbeta, const float *dout,
                           const float *inp, const float *gamma, const float *mean, const float *rstd,
                           int N, int C, int S, int G)
{
    assert(G > 0 && C % G == 0);
    int Cg = C / G, NG = N * G;
    if (dinp) {
        int n_sets = (NG + LANES - 1) / LANES;
        DA_PAR_FOR((double)N * C * S,
            for (int q = 0; q < n_sets; q++) groupnorm_dinp_set(dinp, dout, inp, gamma, mean, rstd, q, NG, G, Cg, S));
    }
    if ((dgamma || dbeta) && S == 1 && G == 1) {
        int n_chunks = (C + CHUNK - 1) / CHUNK;
        DA_PAR_FOR((double)N * C,
            for (int q = 0; q < n_chunks; q++) layernorm_dparams_chunk_q(dgamma, dbeta, dout, inp, mean, rstd, q, N, C));
    } else if (dgamma || dbeta) {
        /* LANES channels per set; batch items and positions summed in order */
        int n_sets = (C + LANES - 1) / LANES;
        DA_PAR_FOR((double)N * C * S,
            for (int q = 0; q < n_sets; q++)
                groupnorm_dparams_set(dgamma, dbeta, dout, inp, mean, rstd, q, N, C, S, G));
    }
}
