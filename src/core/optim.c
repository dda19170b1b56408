/* Optimisation utilities over flat parameter buffers: AdamW, global-norm
 * gradient clipping, EMA of weights and the learning-rate schedule.
 *
 * Every loop is elementwise over independent entries (one thread writes each
 * element), except the norm, whose sum runs over fixed chunks in a fixed
 * order, so results are bit-identical for any thread count. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "dalign/core.h"

/* AdamW, float for float as torch 1.13's _single_tensor_adamw on its
 * portable CPU kernels (ATEN_CPU_CAPABILITY=default). Scalars are computed in
 * double, as Python does, from the float hyperparameters, then rounded to
 * float where torch hands them to a float kernel:
 *   p  = p * (float)(1 - lr*wd)                      param.mul_
 *   m  = m * b1 + (float)(1 - b1) * g                exp_avg.mul_.add_(alpha)
 *   v  = v * b2 + ((float)(1 - b2) * g) * g          exp_avg_sq.mul_.addcmul_
 *   denom = sqrtf(v) / (float)sqrt(1 - b2^step) + eps
 *   p  = p + ((float)-(lr / (1 - b1^step)) * m) / denom   param.addcdiv_
 * torch's AVX2 kernels fuse the m and v multiply-adds (FMA); we never fuse
 * (-ffp-contract=off), so against them we differ by a few ulp
 * (tests/test_optim.c measures it). */
#define ADAMW_BLOCK 4096 /* values per thread's piece */
#define ADAMW_SPAN 16    /* values per step inside a piece */

/* the step's float constants (da_adamw_step says how they are made) */
typedef struct adamw_consts {
    float decay, beta1, one_minus_b1, beta2, one_minus_b2, neg_step_size, bias2_sqrt, eps;
} adamw_consts;

/* The update of len <= ADAMW_SPAN values, through local copies: a constant
 * trip count GCC vectorises (core/span.h says why; the Makefile builds this
 * file with -fno-math-errno, without which sqrtf stays a scalar call).
 * Lanes past len run on zeros and are dropped. */
static void adamw_span(float *params, const float *grads, float *m, float *v, size_t len, const adamw_consts *k)
{
    float g[ADAMW_SPAN], p[ADAMW_SPAN], mi[ADAMW_SPAN], vi[ADAMW_SPAN];
    if (len < ADAMW_SPAN) {
        memset(g, 0, sizeof g);
        memset(p, 0, sizeof p);
        memset(mi, 0, sizeof mi);
        memset(vi, 0, sizeof vi);
    }
    memcpy(g, grads, len * sizeof(float));
    memcpy(p, params, len * sizeof(float));
    memcpy(mi, m, len * sizeof(float));
    memcpy(vi, v, len * sizeof(float));
    for (int q = 0; q < ADAMW_SPAN; q++) {
        float pq = p[q] * k->decay;
        mi[q] = mi[q] * k->beta1 + k->one_minus_b1 * g[q];
        vi[q] = vi[q] * k->beta2 + k->one_minus_b2 * g[q] * g[q];
        float denom = sqrtf(vi[q]) / k->bias2_sqrt + k->eps;
        p[q] = pq + k->neg_step_size * mi[q] / denom;
    }
    memcpy(m, mi, len * sizeof(float));
    memcpy(v, vi, len * sizeof(float));
    memcpy(params, p, len * sizeof(float));
}

void da_adamw_step(float *params, const float *grads, float *m, float *v, size_t n,
                   long step, const da_adamw *cfg)
{
    // params, grads, m, v (n); step counts from 1
    assert(step >= 1);
    const double lr = cfg->lr, b1 = cfg->beta1, b2 = cfg->beta2;
    const double bias1 = 1.0 - pow(b1, (double)step);
    const double bias2 = 1.0 - pow(b2, (double)step);
    const adamw_consts k = {.decay = (float)(1.0 - lr * (double)cfg->weight_decay),
                            .beta1 = cfg->beta1, .one_minus_b1 = (float)(1.0 - b1),
                            .beta2 = cfg->beta2, .one_minus_b2 = (float)(1.0 - b2),
                            .neg_step_size = (float)(-(lr / bias1)), .bias2_sqrt = (float)sqrt(bias2),
                            .eps = cfg->eps};
    size_t blocks = (n + ADAMW_BLOCK - 1) / ADAMW_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t blk = 0; blk < blocks; blk++) {
        size_t i1 = (blk + 1) * ADAMW_BLOCK < n ? (blk + 1) * ADAMW_BLOCK : n;
        for (size_t i = blk * ADAMW_BLOCK; i < i1; i += ADAMW_SPAN)
            adamw_span(params + i, grads + i, m + i, v + i, i1 - i < ADAMW_SPAN ? i1 - i : ADAMW_SPAN, &k);
    }
}

/* Chunks of the norm's sum: each is summed by one thread, and the chunk
 * partials are added serially in chunk order, so the bits never depend on
 * the thread count. A batch of partials lives on the stack: no malloc. */
#define NORM_CHUNK 4096
#define NORM_BATCH 256

double da_grad_norm(const float *grads, size_t n)
{
    // grads (n) -> sqrt(sum g^2), accumulated in double
    double total = 0.0;
    double partial[NORM_BATCH];
    size_t n_chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    for (size_t c0 = 0; c0 < n_chunks; c0 += NORM_BATCH) {
        int nb = (int)(n_chunks - c0 < NORM_BATCH ? n_chunks - c0 : NORM_BATCH);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            size_t lo = (c0 + (size_t)b) * NORM_CHUNK;
            size_t hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
            double acc = 0.0;
            for (size_t i = lo; i < hi; i++) acc += (double)grads[i] * (double)grads[i];
            partial[b] = acc;
        }
        for (int b = 0; b < nb; b++) total += partial[b];
    }
    return sqrt(total);
}

/* torch.nn.utils.clip_grad_norm_ (norm_type 2) in its float arithmetic:
 * torch computes clip_coef = max_norm / (norm + 1e-6) as
 * reciprocal(norm + 1e-6f) * max_norm on a float tensor; we do the same on
 * the norm rounded to float. torch always multiplies by min(coef, 1); we skip
 * the multiply by exactly 1, which changes no bits. */
double da_grad_clip(float *grads, size_t n, float max_norm)
{
    // grads (n), scaled in place
    double norm = da_grad_norm(grads, n);
    float coef = (1.0f / ((float)norm + 1e-6f)) * max_norm;
    if (coef < 1.0f) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) grads[i] *= coef;
    }
    return norm;
}

/* ema = decay * ema + (1 - decay) * params, in float, unfused, as
 * ema.mul_(decay).add_(p, alpha=1 - decay):
 *   ema[i] = ema[i] * decay + (1.0f - decay) * params[i]
 * decay = 1 leaves ema bit-identical; decay = 0 copies params. */
void da_ema_update(float *ema, const float *params, size_t n, float decay)
{
    // ema, params (n)
    const float w = 1.0f - decay;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = ema[i] * decay + w * params[i];
}

/* Learning rate at 0-based `step`, computed in double, returned as float:
 *   step < warmup:  base_lr * (step + 1) / warmup   (reaches base_lr at step warmup-1)
 *   CONSTANT:       base_lr
 *   COSINE:         min_lr + 0.5 * (base_lr - min_lr) * (1 + cos(pi * progress)),
 *                   progress = (step - warmup) / (total_steps - warmup) clamped to
 *                   [0, 1]; total_steps <= warmup means progress 1 (min_lr).
 * Negative step or warmup count as 0. */
float da_lr_at(da_lr_kind kind, float base_lr, float min_lr, long step, long warmup, long total_steps)
{
    if (step < 0) step = 0;
    if (warmup < 0) warmup = 0;
    if (step < warmup) return (float)((double)base_lr * (double)(step + 1) / (double)warmup);
    if (kind != DA_LR_COSINE) return base_lr;
    double progress = 1.0;
    if (total_steps > warmup) {
        progress = (double)(step - warmup) / (double)(total_steps - warmup);
        if (progress > 1.0) progress = 1.0;
    }
    double base = base_lr, lo = min_lr;
    return (float)(lo + 0.5 * (base - lo) * (1.0 + cos(M_PI * progress)));
}
