/* The per-step losses of RL on the UNet's weights (src/train/rl_weights.h;
 * docs/rl-weights.md): DDPO's clipped surrogate on the DDIM step
 * log-probability, Flow-GRPO's KL to the frozen base through the step
 * means, and DDPO's per-prompt reward tracker. Plain floats, with a tape
 * node over the guided model output. */
#include <math.h>
#include <string.h>

#include "train/rl_weights.h"

/* ---- per-prompt tracker ----------------------------------------------------- */

/* slot layout: key_hi, key_lo (16-bit halves of the text's FNV-1a, exact in
 * a float), last-used stamp + 1 (0: empty), count, head, then cap rewards */
#define TR_HEAD 5

size_t rlw_tracker_floats(int slots, int cap) { return (size_t)slots * (size_t)(TR_HEAD + cap); }

static uint32_t text_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* the prompt's slot: its own, else an empty one, else the least recently used */
static float *tracker_slot(rlw_tracker *t, const char *prompt, long stamp)
{
    uint32_t h = text_hash(prompt);
    float hi = (float)(h >> 16), lo = (float)(h & 0xffff);
    size_t w = (size_t)(TR_HEAD + t->cap);
    float *best = NULL;
    for (int k = 0; k < t->slots; k++) {
        float *s = t->data + (size_t)k * w;
        if (s[2] > 0.0f && s[0] == hi && s[1] == lo) {
            s[2] = (float)(stamp + 1);
            return s;
        }
        if (!best || s[2] < best[2]) best = s;   /* empty slots (0) first, then the oldest */
    }
    memset(best, 0, w * sizeof(float));
    best[0] = hi, best[1] = lo, best[2] = (float)(stamp + 1);
    return best;
}

static void mean_std(const float *x, int n, double *mean, double *std)
{
    double s = 0.0, q = 0.0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *std = sqrt(q / n);
}

void rlw_tracker_update(rlw_tracker *t, const char *const *prompts, const float *r, int n, float eps, long stamp,
                        float *adv)
{
    /* every reward joins its prompt's history before any advantage is taken,
     * as DDPO's tracker extends the deque first */
    for (int i = 0; i < n; i++) {
        float *s = tracker_slot(t, prompts[i], stamp);
        int head = (int)s[4];
        s[TR_HEAD + head] = r[i];
        s[4] = (float)((head + 1) % t->cap);
        if (s[3] < (float)t->cap) s[3] += 1.0f;
    }
    double bm, bs;
    mean_std(r, n, &bm, &bs);
    for (int i = 0; i < n; i++) {
        float *s = tracker_slot(t, prompts[i], stamp);
        double m = bm, sd = bs;
        if ((int)s[3] >= t->min_count) mean_std(s + TR_HEAD, (int)s[3], &m, &sd);
        adv[i] = (float)((r[i] - m) / (sd + eps));
    }
}

/* ---- DDPO / GRPO surrogate -------------------------------------------------- */

/* ratio = exp(lp - lp_old); L = max(-A ratio, -A clip(ratio, 1-eps, 1+eps)):
 * the gradient flows only through the unclipped branch */
float rlw_ppo_term(float lp, float lp_old, float adv, float clip_eps, float *dl_dlp, int *clipped, float *ratio_out)
{
    float ratio = da_expf(lp - lp_old);
    float rc = ratio < 1.0f - clip_eps ? 1.0f - clip_eps : (ratio > 1.0f + clip_eps ? 1.0f + clip_eps : ratio);
    float un = -adv * ratio, cl = -adv * rc;
    *dl_dlp = un >= cl ? -adv * ratio : 0.0f;
    *clipped = fabsf(ratio - 1.0f) > clip_eps;
    *ratio_out = ratio;
    return un >= cl ? un : cl;
}

/* KL(N(mu, s^2) || N(mu_ref, s^2)) per value = (mu - mu_ref)^2 / (2 s^2), mean over n */
float rlw_kl_term(float *dmodel, const float *mu, const float *mu_ref, float c_e, float sigma, size_t n, float scale)
{
    double inv = 1.0 / ((double)sigma * sigma), acc = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)mu[i] - mu_ref[i];
        acc += d * d;
        if (dmodel) dmodel[i] += (float)(scale * d * c_e * inv / (double)n);
    }
    return (float)(0.5 * acc * inv / (double)n);
}

da_status rlw_ddim_coef(const da_ddim *d, int t, float *c_e, float *sigma)
{
    float one = 1.0f, zero = 0.0f, mu;
    da_status s = da_ddim_step(d, &mu, NULL, &one, t, &zero, &zero, 1);
    if (s != DA_OK) return s;
    *c_e = mu;
    *sigma = d->cfg.eta * sqrtf(da_ddim_variance(d, t, da_ddim_prev_timestep(d, t)));
    return DA_OK;
}

da_status rlw_ddim_mean(const da_ddim *d, int t, const float *model_out, const float *x, const float *zeros,
                        float *mu, size_t n)
{
    return da_ddim_step(d, mu, NULL, model_out, t, x, zeros, n);
}

/* ---- the rows' loss ---------------------------------------------------------- */

/* L = weight sum_r [ max(-A_r ratio_r, -A_r clip(ratio_r)) + kl_coef KL_r ] */
da_status rlw_rows_loss(rlw_rows *a, const float *eps, float *deps, float *loss)
{
    double total = 0.0;
    a->ratio_sum = a->approx_kl_sum = a->kl_sum = 0.0;
    a->clipped = 0;
    if (deps) memset(deps, 0, (size_t)a->R * a->n * sizeof(float));
    for (int r = 0; r < a->R; r++) {
        size_t o = (size_t)r * a->n;
        da_status s = da_ddim_logprob_forward(&a->lp[r], eps + o, a->x_prev + o, a->x + o, a->ddim, a->t[r], 1, a->n);
        if (s != DA_OK) return s;
        float dl, ratio;
        int clipped;
        total += rlw_ppo_term(a->lp[r], a->lp_old[r], a->adv[r], a->clip_eps, &dl, &clipped, &ratio);
        a->ratio_sum += ratio;
        a->clipped += clipped;
        double dlp = (double)a->lp[r] - a->lp_old[r];
        a->approx_kl_sum += 0.5 * dlp * dlp;   /* DDPO's logged approx_kl */
        if (deps) {
            float g = a->weight * dl;
            da_ddim_logprob_backward(deps + o, &g, eps + o, a->x_prev + o, a->x + o, a->ddim, a->t[r], 1, a->n);
        }
        if (a->mu_ref) {
            float c_e, sigma;
            s = rlw_ddim_coef(a->ddim, a->t[r], &c_e, &sigma);
            if (s == DA_OK) s = rlw_ddim_mean(a->ddim, a->t[r], eps + o, a->x + o, a->zeros, a->mu, a->n);
            if (s != DA_OK) return s;
            float kl = rlw_kl_term(deps ? deps + o : NULL, a->mu, a->mu_ref + o, c_e, sigma, a->n, a->weight * a->kl_coef);
            a->kl_sum += kl;
            total += (double)a->kl_coef * kl;
        }
    }
    *loss = (float)(total * a->weight);
    return DA_OK;
}

static void rows_backward(const da_node *nd)
{
    const rlw_rows *a = nd->saved;
    const float *deps = nd->saved2;
    da_tensor *x = nd->in[0];
    if (!x->grad) return;
    float g = nd->out->grad[0];
    size_t n = (size_t)a->R * a->n;
    for (size_t i = 0; i < n; i++) x->grad[i] += g * deps[i];
}

da_tensor *rlw_rows_node(da_tape *t, da_tensor *eps, rlw_rows *a)
{
    float *deps = da_arena_alloc(&t->arena, (size_t)a->R * a->n * sizeof(float));
    da_tensor *out = da_tensor_for_op(t, 0, NULL, &eps, 1);
    if (rlw_rows_loss(a, eps->data, deps, &out->data[0]) != DA_OK) return NULL;
    da_node nd = {.backward = rows_backward, .out = out, .in = {eps}, .saved = a, .saved2 = deps};
    da_tape_push(t, &nd);
    return out;
}
