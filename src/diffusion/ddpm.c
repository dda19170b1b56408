/* DDPM ancestral sampling (Ho et al. 2020) as diffusers' DDPMScheduler
 * computes it, float32 operation by operation.
 *
 * One step from x_t (a_t = alphas_cumprod[t], a_prev at t - T/n_steps, 1
 * past the end), beta' = 1 - a_t/a_prev (beta_t for the full chain):
 *   x0_hat = predict(model_out), clipped if clip_sample
 *   x_prev = sqrt(a_prev) beta' / (1 - a_t) x0_hat
 *          + sqrt(1 - beta') (1 - a_prev) / (1 - a_t) x_t  + std z
 *   std^2  = (1 - a_prev)/(1 - a_t) beta'  (fixed_small), beta' (fixed_large) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/diffusion.h"
#include "diffusion/predict.h"
#include "diffusion/schedule.h"

/* the table in the enum's order */
da_status da_variance_type_parse(const char *name, da_variance_type *out)
{
    static const char *const names[] = {"fixed_small", "fixed_small_log", "fixed_large"};
    int i;
    da_status s = da_parse_choice(name, names, 3, &i, "variance type");
    if (s == DA_OK) *out = (da_variance_type)i;
    return s;
}

da_ddpm_config da_ddpm_config_default(void)
{
    da_ddpm_config c = {
        .prediction = DA_PRED_EPSILON, .variance = DA_VAR_FIXED_SMALL, .spacing = DA_SPACING_LEADING,
        .steps_offset = 0, .clip_sample = 1, .clip_sample_range = 1.0f,
    };
    return c;
}

da_status da_ddpm_init(da_ddpm *d, const da_schedule *s, const da_ddpm_config *cfg, int n_steps)
{
    memset(d, 0, sizeof *d);
    if (!(cfg->clip_sample_range > 0.0f))
        return da_fail(DA_ERR_INVALID, "ddpm: clip_sample_range must be > 0, got %g", (double)cfg->clip_sample_range);
    if ((unsigned)cfg->prediction > DA_PRED_SAMPLE || (unsigned)cfg->variance > DA_VAR_FIXED_LARGE)
        return da_fail(DA_ERR_INVALID, "ddpm: unknown prediction (%d) or variance type (%d)",
                       (int)cfg->prediction, (int)cfg->variance);
    int *ts;
    da_status st = da_timesteps_new(&ts, s, n_steps, cfg->spacing, cfg->steps_offset, "ddpm");
    if (st != DA_OK) return st;
    d->sched = s;
    d->cfg = *cfg;
    d->n_steps = n_steps;
    d->timesteps = ts;
    return DA_OK;
}

void da_ddpm_free(da_ddpm *d)
{
    free(d->timesteps);
    memset(d, 0, sizeof *d);
}

int da_ddpm_prev_timestep(const da_ddpm *d, int t)
{
    return t - d->sched->n_train / d->n_steps;
}

static float alpha_at(const da_ddpm *d, int t)
{
    return t >= 0 ? d->sched->alphas_cumprod[t] : 1.0f;
}

/* diffusers _get_variance: the variance itself (std = sqrt of it) */
float da_ddpm_variance(const da_ddpm *d, int t)
{
    float a_t = alpha_at(d, t), a_prev = alpha_at(d, da_ddpm_prev_timestep(d, t));
    float beta_cur = 1.0f - a_t / a_prev;
    if (d->cfg.variance == DA_VAR_FIXED_LARGE) return beta_cur;
    float var = (1.0f - a_prev) / (1.0f - a_t) * beta_cur;
    return var < 1e-20f ? 1e-20f : var;   /* keeps the log finite at t = 0 */
}

/* the std the step adds: fixed_small_log goes through exp(0.5 log var) */
static float ddpm_std(const da_ddpm *d, int t)
{
    float var = da_ddpm_variance(d, t);
    if (d->cfg.variance == DA_VAR_FIXED_SMALL_LOG) return da_expf(0.5f * da_logf(var));
    return sqrtf(var);
}

/* prev, x0_pred (n) from model_out, sample, noise (n); elementwise, outputs
 * may alias inputs. diffusers adds noise only for t > 0. */
da_status da_ddpm_step(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                       int t, const float *sample, const float *noise, size_t n)
{
    da_status st = da_check_timestep(d->sched, "ddpm", t);
    if (st != DA_OK) return st;
    int noisy = t > 0;
    if (noisy && !noise) return da_fail(DA_ERR_INVALID, "ddpm: t = %d > 0 needs a noise buffer", t);
    const da_ddpm_config *g = &d->cfg;
    float a_t = alpha_at(d, t), a_prev = alpha_at(d, da_ddpm_prev_timestep(d, t));
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    float cur_alpha = a_t / a_prev, cur_beta = 1.0f - cur_alpha;
    float sa = sqrtf(a_t), sb = sqrtf(b_t);
    float c0 = (sqrtf(a_prev) * cur_beta) / b_t;     /* weight of x0_hat */
    float c1 = sqrtf(cur_alpha) * b_prev / b_t;      /* weight of x_t */
    float std = noisy ? ddpm_std(d, t) : 0.0f;
    float r = g->clip_sample_range;
    for (size_t i = 0; i < n; i++) {
        float x = sample[i], x0, eps;   /* the step needs x0 only */
        da_pred_x0_eps(g->prediction, sa, sb, model_out[i], x, &x0, &eps);
        if (g->clip_sample) x0 = x0 < -r ? -r : (x0 > r ? r : x0);
        float p = c0 * x0 + c1 * x;
        if (noisy) p = p + std * noise[i];
        if (x0_pred) x0_pred[i] = x0;
        prev[i] = p;
    }
    return DA_OK;
}

da_status da_ddpm_step_rng(const da_ddpm *d, float *prev, float *x0_pred, const float *model_out,
                           int t, const float *sample, da_rng *rng, float *noise, size_t n)
{
    da_status st = da_check_timestep(d->sched, "ddpm", t);
    if (st != DA_OK) return st;
    if (t > 0) {
        if (!rng || !noise) return da_fail(DA_ERR_INVALID, "ddpm: t > 0 needs a generator and a noise buffer");
        da_randn(rng, noise, n);  /* diffusers: randn_tensor(model_output.shape, generator) */
    }
    return da_ddpm_step(d, prev, x0_pred, model_out, t, sample, noise, n);
}
