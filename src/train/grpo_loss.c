/* GRPO's loss on the refiner's written tokens (grpo.h; PromptLoop, design
 * §10): group-relative advantages, the clipped token ratio, and the k3
 * estimate of the KL to the reference refiner. Elementary functions are the
 * project's own (da_expf, da_logf), sums run in double in a fixed order: the
 * bits repeat on every machine. */
#include "train/grpo.h"

#include <math.h>
#include <string.h>

/* A_i = (r_i - mean_g) / (std_g + eps) over the G rollouts of group g */
int grpo_advantages(float *adv, const float *r, int n_groups, int G, float eps)
{
    int zero_std = 0;
    for (int g = 0; g < n_groups; g++) {
        const float *rg = r + (size_t)g * G;
        double mean = 0.0, var = 0.0;
        for (int j = 0; j < G; j++) mean += rg[j];
        mean /= G;
        for (int j = 0; j < G; j++) var += (rg[j] - mean) * (rg[j] - mean);
        double sd = sqrt(var / G);   /* sqrt is correctly rounded everywhere (IEEE 754) */
        /* equal rewards carry no signal: exactly 0, not 0/eps noise */
        int flat = var == 0.0;
        zero_std += flat;
        for (int j = 0; j < G; j++) adv[(size_t)g * G + j] = flat ? 0.0f : (float)((rg[j] - mean) / (sd + eps));
    }
    return zero_std;
}

/* log sum over allowed v of exp(x_v - mx), mx the largest allowed logit
 * (the sum in double, in id order) */
static float row_log_partition(const float *x, const uint8_t *allowed, int V, float *mx_out)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++)
        if (allowed[v] && x[v] > mx) mx = x[v];
    double z = 0.0;
    for (int v = 0; v < V; v++)
        if (allowed[v]) z += da_expf(x[v] - mx);
    *mx_out = mx;
    return da_logf((float)z);
}

void grpo_token_logprobs(float *lp, const float *logits, const int *target, const uint8_t *allowed, int R, int V)
{
    for (int r = 0; r < R; r++) {
        const float *x = logits + (size_t)r * V;
        float mx, logz = row_log_partition(x, allowed, V, &mx);
        lp[r] = (x[target[r]] - mx) - logz;
    }
}

/* d(per-row loss)/d lp of one row, and its statistics:
 *   surrogate = min(ratio A, clip(ratio) A): its derivative in lp is
 *   ratio A when the unclipped term is the smaller (or equal), 0 when the
 *   clipped constant is; k3 = exp(d) - d - 1 with d = lp_ref - lp has
 *   derivative 1 - exp(d). */
static float row_loss(const grpo_rows *a, int r, float lp, float *dl_dlp, grpo_stats *st)
{
    float ratio = da_expf(lp - a->lp_old[r]);
    float A = a->adv[r];
    float lo = 1.0f - a->clip_eps, hi = 1.0f + a->clip_eps;
    float clipped = ratio < lo ? lo : ratio > hi ? hi : ratio;
    float un = ratio * A, cl = clipped * A;
    int take_unclipped = un <= cl;
    float loss = -(take_unclipped ? un : cl);
    float d = -(take_unclipped ? un : 0.0f);
    float kl = 0.0f;
    if (a->lp_ref) {
        float diff = a->lp_ref[r] - lp, e = da_expf(diff);
        kl = e - diff - 1.0f;
        loss += a->kl_coef * kl;
        d += a->kl_coef * (1.0f - e);
    }
    st->ratio_sum += ratio;
    st->kl_sum += kl;
    st->clipped += !take_unclipped;
    st->n++;
    *dl_dlp = d;
    return loss;
}

float grpo_loss(grpo_rows *a, const float *logits, float *dlogits)
{
    memset(&a->st, 0, sizeof a->st);
    double total = 0.0;
    int V = a->V;
    for (int r = 0; r < a->R; r++) {
        const float *x = logits + (size_t)r * V;
        float *dx = dlogits ? dlogits + (size_t)r * V : NULL;
        float mx, logz = row_log_partition(x, a->allowed, V, &mx);
        a->lp[r] = (x[a->target[r]] - mx) - logz;
        if (dx) memset(dx, 0, (size_t)V * sizeof(float));
        if (a->weight[r] == 0.0f) continue;
        float dl_dlp;
        total += (double)a->weight[r] * row_loss(a, r, a->lp[r], &dl_dlp, &a->st);
        if (!dx) continue;
        /* d lp / d x_v = [v == target] - p_v over the allowed ids, 0 elsewhere */
        float g = a->weight[r] * dl_dlp;
        for (int v = 0; v < V; v++)
            if (a->allowed[v]) dx[v] = -g * da_expf((x[v] - mx) - logz);
        dx[a->target[r]] += g;
    }
    return (float)total;
}

/* ---- tape node ---------------------------------------------------------------- */

static void grpo_backward(const da_node *nd)
{
    const grpo_rows *a = nd->saved;
    const float *dlogits = nd->saved2;
    float g = nd->out->grad[0];
    da_tensor *x = nd->in[0];
    if (!x->grad) return;
    size_t n = (size_t)a->R * a->V;
    for (size_t i = 0; i < n; i++) x->grad[i] += g * dlogits[i];
}

da_tensor *grpo_loss_node(da_tape *t, da_tensor *logits, grpo_rows *a)
{
    float *dlogits = da_arena_alloc(&t->arena, (size_t)a->R * a->V * sizeof(float));
    da_tensor *out = da_tensor_for_op(t, 0, NULL, &logits, 1);
    out->data[0] = grpo_loss(a, logits->data, dlogits);
    da_node nd = {.backward = grpo_backward, .out = out, .in = {logits}, .saved = a, .saved2 = dlogits};
    da_tape_push(t, &nd);
    return out;
}
