/* The token-level GRPO loss of PromptLoop's RL trainer (src/train/grpo_loss.c),
 * internal to src/train; docs/promptloop.md "The RL trainer" maps each
 * equation to its function. */
#ifndef DA_TRAIN_GRPO_H
#define DA_TRAIN_GRPO_H

#include "dalign/train.h"

/* Group-relative advantages: adv[g*G + j] = (r[g*G + j] - mean_g) /
 * (std_g + eps), std the population standard deviation of group g (a group
 * whose rewards are all equal gets 0, never NaN). Returns the number of such
 * zero-std groups. */
int grpo_advantages(float *adv, const float *r, int n_groups, int G, float eps);

/* lp (R) = log softmax over the allowed ids (allowed[v] != 0) of logits row
 * r (R, V), at target[r]: the log-probability the refiner's generation
 * samples from (no tape; the old and reference policies' log-probs). */
void grpo_token_logprobs(float *lp, const float *logits, const int *target, const uint8_t *allowed, int R, int V);

/* health of one loss call, over the rows with weight > 0 */
typedef struct grpo_stats {
    double ratio_sum, kl_sum;    /* sums of ratio and of the k3 estimate */
    int clipped, n;              /* rows whose gradient the clip removed; rows counted */
} grpo_stats;

/* One batch of token rows (a row = one sampled token of one written prompt):
 *   ratio_r = exp(lp_r - lp_old_r)
 *   L = sum_r weight_r [ -min(ratio_r A_r, clip(ratio_r, 1 - eps, 1 + eps) A_r)
 *                        + kl_coef (exp(lp_ref_r - lp_r) - (lp_ref_r - lp_r) - 1) ]
 * weight_r = 1 / (sequences * tokens of its sequence), so L is the mean over
 * sequences of each sequence's mean over its tokens (GRPO's 1/G sum_i 1/|o_i|
 * sum_t); rows with weight 0 (slots after EOS, the forced EOS) count nothing.
 * The arrays must live until the backward has run. */
typedef struct grpo_rows {
    int R, V;
    const int *target;        /* (R) the token written */
    const float *weight;      /* (R) */
    const float *lp_old;      /* (R) the rollout policy's log-prob */
    const float *lp_ref;      /* (R) the reference refiner's, or NULL (kl_coef must then be 0) */
    const float *adv;         /* (R) the advantage of the row's image */
    const uint8_t *allowed;   /* (V) the ids generation may write */
    float clip_eps, kl_coef;
    float *lp;                /* (R) output: the current policy's log-prob */
    grpo_stats st;            /* output */
} grpo_rows;

/* The loss and its gradient in plain floats: returns L; dlogits (R, V) or
 * NULL receives (written) d L / d logits. Fills a->lp and a->st. */
float grpo_loss(grpo_rows *a, const float *logits, float *dlogits);
/* The same as a tape node over logits (R, V): the backward adds
 * dL * d L / d logits into logits->grad. */
da_tensor *grpo_loss_node(da_tape *t, da_tensor *logits, grpo_rows *a);

#endif
