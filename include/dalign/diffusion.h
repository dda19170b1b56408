/* dalign/diffusion.h: the diffusion layer (src/diffusion): noise schedules,
 * training targets, the DDIM, DDPM and Euler samplers and classifier-free
 * guidance, as pure functions over float* latents. Uses only the core (the
 * RNG, the tape for the DDIM log-probability); includes dalign/models.h for
 * the layer order only. */
#ifndef DALIGN_DIFFUSION_H
#define DALIGN_DIFFUSION_H

#include "dalign/models.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Diffusion (src/diffusion): noise schedules and samplers                  */
/* ------------------------------------------------------------------------ */

/* (section: diffusion) */

/* Every sampler step is a pure function over float* latents of any size n
 * (a batch is just n = B*C*H*W), following diffusers' schedulers operation
 * by operation in float32; docs/samplers.md maps each equation to code.
 * Samplers borrow their da_schedule: it must outlive them. */

typedef enum { DA_BETA_LINEAR = 0, DA_BETA_SCALED_LINEAR = 1 } da_beta_schedule;
typedef enum { DA_PRED_EPSILON = 0, DA_PRED_V = 1, DA_PRED_SAMPLE = 2 } da_prediction;
/* how inference timesteps are spread over [0, T): diffusers' timestep_spacing */
typedef enum { DA_SPACING_LEADING = 0, DA_SPACING_TRAILING = 1, DA_SPACING_LINSPACE = 2 } da_spacing;

typedef struct da_schedule {
    int n_train;             /* T training timesteps (diffusers num_train_timesteps) */
    float *betas;            /* (T) */
    float *alphas;           /* (T) 1 - betas */
    float *alphas_cumprod;   /* (T) prod_{s <= t} alphas[s] */
} da_schedule;

/* "linear" | "scaled_linear"; "epsilon" | "v_prediction" | "sample";
 * "leading" | "trailing" | "linspace". DA_ERR_INVALID names a bad string. */
DA_API da_status da_beta_schedule_parse(const char *name, da_beta_schedule *out);
DA_API da_status da_prediction_parse(const char *name, da_prediction *out);
DA_API da_status da_spacing_parse(const char *name, da_spacing *out);
/* torch.linspace(start, end, n, dtype=torch.float32) on CPU, bit for bit */
DA_API void da_linspace_f32(float *out, float start, float end, int n);
/* linear: betas = linspace(beta_start, beta_end, T); scaled_linear:
 * linspace(sqrt(beta_start), sqrt(beta_end), T)^2; alphas_cumprod =
 * cumprod(1 - betas). Bit-identical to torch 1.13's float32 values.
 * DA_ERR_INVALID unless T >= 1 and every beta is in [0, 1). */
DA_API da_status da_schedule_init(da_schedule *s, da_beta_schedule kind, int n_train,
                                  double beta_start, double beta_end);
DA_API void da_schedule_free(da_schedule *s);
/* set_timesteps: n_steps timesteps in descending order into out (n_steps).
 * DA_ERR_INVALID unless 1 <= n_steps <= T and every timestep is in [0, T). */
DA_API da_status da_timesteps(int *out, int n_steps, int n_train, da_spacing spacing, int steps_offset);

/* Training targets, per batch item b at timestep t[b] in [0, T), n_per
 * values each (a = alphas_cumprod[t[b]]):
 *   add_noise (q_sample): x_t = sqrt(a) x0 + sqrt(1 - a) eps
 *   velocity (v target):  v   = sqrt(a) eps - sqrt(1 - a) x0
 * DA_ERR_RANGE, before writing anything, when a t[b] is outside [0, T). */
DA_API da_status da_add_noise(const da_schedule *s, float *xt, const float *x0, const float *eps,
                              const int *t, int B, size_t n_per);
DA_API da_status da_velocity(const da_schedule *s, float *v, const float *x0, const float *eps,
                             const int *t, int B, size_t n_per);
/* Clean-sample and noise estimates from a model output at alphas_cumprod a:
 *   epsilon: x0 = (x - sqrt(1-a) m) / sqrt(a),  eps = m
 *   v:       x0 = sqrt(a) x - sqrt(1-a) m,      eps = sqrt(a) m + sqrt(1-a) x
 *   sample:  x0 = m,                            eps = (x - sqrt(a) x0) / sqrt(1-a)
 * x0/eps (n) may alias the inputs; eps may be NULL. */
DA_API void da_predict_x0_eps(float *x0, float *eps, const float *model_out, const float *sample,
                              size_t n, float alpha_cumprod, da_prediction pred);

/* Classifier-free guidance: out = eps_u + w (eps_c - eps_u). w == 1 returns
 * eps_c exactly (no guidance). out may alias either input. */
DA_API void da_cfg_combine(float *out, const float *eps_u, const float *eps_c, float w, size_t n);

/* ---- DDIM (diffusers DDIMScheduler) ---- */
typedef struct da_ddim_config {
    da_prediction prediction;   /* epsilon */
    da_spacing spacing;         /* leading */
    int steps_offset;           /* 0 (Stable Diffusion uses 1) */
    int clip_sample;            /* 1: clamp x0_hat to [-clip_sample_range, clip_sample_range] */
    float clip_sample_range;    /* 1 */
    int set_alpha_to_one;       /* 1: alpha_prev = 1 after the last step, else alphas_cumprod[0] */
    float eta;                  /* 0: deterministic DDIM; 1: DDPM-like variance (a step() arg in diffusers) */
    int use_clipped_model_output; /* 0: re-derive eps from the clipped x0 (a step() arg in diffusers) */
} da_ddim_config;
DA_API da_ddim_config da_ddim_config_default(void);   /* diffusers' defaults (values above) */

typedef struct da_ddim {
    const da_schedule *sched;   /* borrowed */
    da_ddim_config cfg;
    int n_steps;
    int *timesteps;             /* (n_steps) descending, owned */
    float final_alpha_cumprod;  /* alpha_prev when t - T/n_steps < 0 */
} da_ddim;

DA_API da_status da_ddim_init(da_ddim *d, const da_schedule *s, const da_ddim_config *cfg, int n_steps);
DA_API void da_ddim_free(da_ddim *d);
DA_API int da_ddim_prev_timestep(const da_ddim *d, int t);     /* t - T / n_steps */
DA_API float da_ddim_alpha_cumprod(const da_ddim *d, int t);   /* alphas_cumprod[t],
                                   final_alpha_cumprod for t < 0 */
/* sigma_t^2 / eta^2 = (1 - a_prev)/(1 - a_t) * (1 - a_t/a_prev) (diffusers _get_variance) */
DA_API float da_ddim_variance(const da_ddim *d, int t, int t_prev);
/* One step from timestep t: prev = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - std^2) eps_hat
 * (+ std * noise when eta > 0), std = eta sqrt(variance). noise (n) is N(0,1)
 * and only read when eta > 0 (then it must not be NULL). x0_pred (n) receives
 * x0_hat after clipping, or is NULL. prev/x0_pred may alias sample or
 * model_out. DA_ERR_RANGE for t outside [0, T). */
DA_API da_status da_ddim_step(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                              int t, const float *sample, const float *noise, size_t n);
/* The same, drawing noise as diffusers does (torch.randn(n) from rng iff
 * eta > 0) into the caller's scratch `noise` (n floats). */
DA_API da_status da_ddim_step_rng(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                                  int t, const float *sample, da_rng *rng, float *noise, size_t n);
/* DDIM step log-probability (design §6, DDPO), per batch item b of n_per values:
 * logp[b] = mean_i [ -(x_prev - mean)^2 / (2 std^2) - log std - log sqrt(2 pi) ],
 * mean = the step's noiseless output, std = eta sqrt(variance). Needs std > 0
 * (eta > 0 and a_prev < 1), else DA_ERR_INVALID. Backward accumulates
 * d logp / d model_out (x_prev and sample are constants, as in DDPO). */
DA_API da_status da_ddim_logprob_forward(float *logp, const float *model_out, const float *x_prev,
                                         const float *sample, const da_ddim *d, int t, int B, size_t n_per);
DA_API void da_ddim_logprob_backward(float *dmodel_out, const float *dlogp, const float *model_out,
                                     const float *x_prev, const float *sample, const da_ddim *d, int t,
                                     int B, size_t n_per);
/* model_out, x_prev, sample (B, ...) -> logp (B); gradient flows to model_out
 * only; `d` must outlive the backward pass. NULL (da_last_error set) when std == 0,
 * t is out of range or the three differ in size. */
DA_API da_tensor *da_ddim_logprob(da_tape *tp, const da_ddim *d, da_tensor *model_out, da_tensor *x_prev,
                                  da_tensor *sample, int t);

/* ---- DDPM (diffusers DDPMScheduler) ---- */
typedef enum { DA_VAR_FIXED_SMALL = 0, DA_VAR_FIXED_SMALL_LOG = 1, DA_VAR_FIXED_LARGE = 2 } da_variance_type;
DA_API da_status da_variance_type_parse(const char *name, da_variance_type *out); /* "fixed_small" ... */

typedef struct da_ddpm_config {
    da_prediction prediction;   /* epsilon */
    da_variance_type variance;  /* fixed_small */
    da_spacing spacing;         /* leading */
    int steps_offset;           /* 0 */
    int clip_sample;            /* 1 */
    float clip_sample_range;    /* 1 */
} da_ddpm_config;
DA_API da_ddpm_config da_ddpm_config_default(void);

typedef struct da_ddpm {
    const da_schedule *sched;   /* borrowed */
    da_ddpm_config cfg;
    int n_steps;                /* T gives the full ancestral chain T-1 .. 0 */
    int *timesteps;             /* (n_steps) descending, owned */
} da_ddpm;

DA_API da_status da_ddpm_init(da_ddpm *d, const da_schedule *s, const da_ddpm_config *cfg, int n_steps);
DA_API void da_ddpm_free(da_ddpm *d);
DA_API int da_ddpm_prev_timestep(const da_ddpm *d, int t);     /* t - T / n_steps */
/* posterior variance at t: fixed_small(_log) (1 - a_prev)/(1 - a_t) beta_t'
 * (clamped to >= 1e-20), fixed_large beta_t' = 1 - a_t/a_prev */
DA_API float da_ddpm_variance(const da_ddpm *d, int t);
/* prev = c0 x0_hat + c1 x_t (+ std * noise when t > 0; noise then required) */
DA_API da_status da_ddpm_step(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                              int t, const float *sample, const float *noise, size_t n);
/* draws torch.randn(n) from rng into `noise` (scratch, n floats) iff t > 0 */
DA_API da_status da_ddpm_step_rng(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                                  int t, const float *sample, da_rng *rng, float *noise, size_t n);

/* ---- Euler (diffusers EulerDiscreteScheduler, linspace spacing, s_churn = 0) ---- */
typedef struct da_euler {
    const da_schedule *sched;   /* borrowed */
    da_prediction prediction;
    int n_steps;
    float *timesteps;           /* (n_steps) descending, fractional: the model's t input */
    float *sigmas;              /* (n_steps + 1), sigmas[n_steps] = 0 */
    float init_noise_sigma;     /* scale of the initial N(0,1) latent (max sigma) */
} da_euler;

DA_API da_status da_euler_init(da_euler *e, const da_schedule *s, da_prediction pred, int n_steps);
DA_API void da_euler_free(da_euler *e);
/* step index i in [0, n_steps): out = sample / sqrt(sigma_i^2 + 1) (the model's input) */
DA_API da_status da_euler_scale_model_input(const da_euler *e, float *out, const float *sample, int i,
                                            size_t n);
/* prev = x + (x - x0_hat)/sigma_i * (sigma_{i+1} - sigma_i). Both:
 * DA_ERR_RANGE for i outside [0, n_steps), nothing written. */
DA_API da_status da_euler_step(const da_euler *e, float *prev, float *x0_pred, const float *model_out,
                               int i, const float *sample, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_DIFFUSION_H */
