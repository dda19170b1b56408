/* RL on the UNet's weights (src/train/rl_weights.c, rl_losses.c), internal
 * to src/train: the per-prompt reward tracker of DDPO and the per-step
 * losses of DDPO and GRPO. docs/rl-weights.md maps each equation to its
 * function. */
#ifndef DA_TRAIN_RL_WEIGHTS_H
#define DA_TRAIN_RL_WEIGHTS_H

#include "dalign/train.h"

/* ---- DDPO's per-prompt tracker ------------------------------------------- */

/* A table of `slots` prompts (keyed by a hash of the text), each with its
 * last `cap` rewards, all in one float array (trainer state, so a resumed
 * run normalises as the uninterrupted one). A full table gives the slot
 * used longest ago to a new prompt. */
typedef struct rlw_tracker {
    int slots, cap, min_count;
    float *data;   /* (rlw_tracker_floats(slots, cap)), zeroed = empty */
} rlw_tracker;

size_t rlw_tracker_floats(int slots, int cap);
/* Push r[i] (n rewards of prompts[i]) into their prompts' histories, then
 * adv[i] = (r[i] - mean) / (std + eps): mean and std (population) of the
 * prompt's kept history when it holds >= min_count rewards, else of the
 * whole batch r (DDPO's PerPromptStatTracker). stamp: the iteration (for
 * the replacement order). */
void rlw_tracker_update(rlw_tracker *t, const char *const *prompts, const float *r, int n, float eps, long stamp,
                        float *adv);

/* ---- the per-step losses ------------------------------------------------- */

/* PPO's clipped surrogate of one (trajectory, step), DDPO's eq.:
 *   ratio = exp(lp - lp_old)
 *   L = max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps))
 * returns L; *dl_dlp = dL/dlp (0 where the clipped branch is taken);
 * *clipped = |ratio - 1| > eps (the logged clip fraction); *ratio_out. */
float rlw_ppo_term(float lp, float lp_old, float adv, float clip_eps, float *dl_dlp, int *clipped, float *ratio_out);

/* Flow-GRPO's KL of one step to the frozen base, both Gaussians of std
 * sigma: KL = mean_i (mu_i - mu_ref_i)^2 / (2 sigma^2), mean over the n
 * latent values. mu = c_x x + c_e model_out (the DDIM mean is affine in
 * the model output without clip_sample), so dKL/dmodel_out_i =
 * (mu_i - mu_ref_i) c_e / (sigma^2 n), added into dmodel (may be NULL)
 * times scale. */
float rlw_kl_term(float *dmodel, const float *mu, const float *mu_ref, float c_e, float sigma, size_t n,
                  float scale);

/* The step mean's coefficient of the model output at timestep t,
 * mu = c_x x + c_e m: c_e = mean(m = 1, x = 0), computed by the sampler's
 * own da_ddim_step; sigma = eta sqrt(variance) (0 at the last step). */
da_status rlw_ddim_coef(const da_ddim *d, int t, float *c_e, float *sigma);
/* mu (n) = the DDIM step's noiseless output (the Gaussian's mean); zeros
 * (n) is the caller's all-zero noise */
da_status rlw_ddim_mean(const da_ddim *d, int t, const float *model_out, const float *x, const float *zeros,
                        float *mu, size_t n);

/* One chunk of (trajectory, step) rows for the loss node: row r at
 * timestep t[r], its x_t and x_prev, old log-prob, advantage and (GRPO)
 * the base's mean. */
typedef struct rlw_rows {
    int R;                     /* rows */
    size_t n;                  /* latent values per row */
    const da_ddim *ddim;
    const int *t;              /* (R) */
    const float *x, *x_prev;   /* (R, n) */
    const float *lp_old;       /* (R) */
    const float *adv;          /* (R), already clamped */
    const float *mu_ref;       /* (R, n) or NULL (kl_coef 0) */
    float *mu, *zeros;         /* (n) scratch: the policy's mean; all zero */
    float clip_eps, kl_coef;
    float weight;              /* each row's share of the loss: 1 / (rows x steps of the update) */
    float *lp;                 /* (R) output: the current log-probs */
    /* output health: sums over the rows */
    double ratio_sum, approx_kl_sum, kl_sum;
    int clipped;
} rlw_rows;

/* L = weight sum_r [ ppo_r + kl_coef KL_r ] over the guided model outputs
 * eps (R, n), in plain floats; deps (R, n) or NULL receives dL/deps
 * (written). Fills a->lp and the health sums. */
da_status rlw_rows_loss(rlw_rows *a, const float *eps, float *deps, float *loss);
/* the same as a tape node: the backward adds dL * dL/deps into eps->grad */
da_tensor *rlw_rows_node(da_tape *t, da_tensor *eps, rlw_rows *a);

#endif
