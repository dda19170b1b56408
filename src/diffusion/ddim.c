/* DDIM (Song et al. 2021) as diffusers' DDIMScheduler computes it, float32
 * operation by operation, plus the step's Gaussian log-probability (design
 * §6) used by DDPO, with its gradient w.r.t. the model output.
 *
 * One step from x_t (a_t = alphas_cumprod[t], a_prev at t - T/n_steps):
 *   x0_hat, eps_hat = predict(model_out)        clipped x0_hat if clip_sample
 *   std  = eta * sqrt((1 - a_prev)/(1 - a_t) * (1 - a_t/a_prev))
 *   mean = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - std^2) eps_hat
 *   x_prev = mean + std * z,  z ~ N(0, I) */
#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/diffusion.h"
#include "diffusion/predict.h"
#include "diffusion/schedule.h"

da_ddim_config da_ddim_config_default(void)
{
    da_ddim_config c = {
        .prediction = DA_PRED_EPSILON, .spacing = DA_SPACING_LEADING, .steps_offset = 0,
        .clip_sample = 1, .clip_sample_range = 1.0f, .set_alpha_to_one = 1,
        .eta = 0.0f, .use_clipped_model_output = 0,
    };
    return c;
}

/* sqrt(1 - a_prev - std^2) of one step, std = eta sqrt(variance), as the
 * step computes it in float32: NaN when eta is too large for the step */
static int direction_ok(const da_ddim *d, int t, float eta)
{
    int tp = da_ddim_prev_timestep(d, t);
    float a_prev = da_ddim_alpha_cumprod(d, tp);
    float std = eta * sqrtf(da_ddim_variance(d, t, tp));
    return 1.0f - a_prev - std * std >= 0.0f;
}

/* The direction term needs sigma_t^2 = eta^2 variance <= 1 - a_prev at
 * every step: eta <= sqrt((1 - a_prev) / variance), smallest over the
 * steps (1 at least: eta = 1 is DDPM's variance). A larger eta would make
 * every latent NaN; refuse it naming the bound, rounded down to 4 decimals
 * and checked to pass. */
static da_status check_eta(const da_ddim *d)
{
    float eta = d->cfg.eta;
    int bad_t = -1;
    double bound = INFINITY;
    for (int i = 0; i < d->n_steps; i++) {
        int t = d->timesteps[i], tp = da_ddim_prev_timestep(d, t);
        double var = da_ddim_variance(d, t, tp), room = 1.0 - (double)da_ddim_alpha_cumprod(d, tp);
        if (var > 0.0 && sqrt(room / var) < bound) bound = sqrt(room / var);
        if (bad_t < 0 && !direction_ok(d, t, eta)) bad_t = t;
    }
    if (bad_t < 0) return DA_OK;
    double shown = floor(bound * 1e4) / 1e4;
    for (int i = 0; i < d->n_steps; i++)
        if (!direction_ok(d, d->timesteps[i], (float)shown)) {
            shown -= 1e-4;
            i = -1;
        }
    return da_fail(DA_ERR_RANGE,
                   "ddim: eta %g is too large for %d steps: at t = %d sigma_t^2 exceeds 1 - alpha_prev (the "
                   "direction term's square root); the largest eta allowed for these steps is %.4f",
                   (double)eta, d->n_steps, bad_t, shown);
}

da_status da_ddim_init(da_ddim *d, const da_schedule *s, const da_ddim_config *cfg, int n_steps)
{
    memset(d, 0, sizeof *d);
    if (!(cfg->eta >= 0.0f) || !(cfg->clip_sample_range > 0.0f))
        return da_fail(DA_ERR_INVALID, "ddim: need eta >= 0 and clip_sample_range > 0 (got %g, %g)",
                       (double)cfg->eta, (double)cfg->clip_sample_range);
    if ((unsigned)cfg->prediction > DA_PRED_SAMPLE)
        return da_fail(DA_ERR_INVALID, "ddim: unknown prediction type %d", (int)cfg->prediction);
    int *ts;
    da_status st = da_timesteps_new(&ts, s, n_steps, cfg->spacing, cfg->steps_offset, "ddim");
    if (st != DA_OK) return st;
    d->sched = s;
    d->cfg = *cfg;
    d->n_steps = n_steps;
    d->timesteps = ts;
    d->final_alpha_cumprod = cfg->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    st = check_eta(d);
    if (st != DA_OK) da_ddim_free(d);
    return st;
}

void da_ddim_free(da_ddim *d)
{
    free(d->timesteps);
    memset(d, 0, sizeof *d);
}

int da_ddim_prev_timestep(const da_ddim *d, int t)
{
    return t - d->sched->n_train / d->n_steps;
}

float da_ddim_alpha_cumprod(const da_ddim *d, int t)
{
    assert(t < d->sched->n_train);
    return t >= 0 ? d->sched->alphas_cumprod[t] : d->final_alpha_cumprod;
}

float da_ddim_variance(const da_ddim *d, int t, int t_prev)
{
    float a_t = da_ddim_alpha_cumprod(d, t), a_prev = da_ddim_alpha_cumprod(d, t_prev);
    float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    return (b_prev / b_t) * (1.0f - a_t / a_prev);
}

/* The per-step scalars, in diffusers' float32 order of operations. */
typedef struct ddim_coef {
    float sa, sb;        /* sqrt(a_t), sqrt(1 - a_t) */
    float sa_prev;       /* sqrt(a_prev) */
    float dir;           /* sqrt(1 - a_prev - std^2): weight of eps_hat */
    float std;           /* eta * sqrt(variance) */
} ddim_coef;

static ddim_coef ddim_coef_at(const da_ddim *d, int t)
{
    int tp = da_ddim_prev_timestep(d, t);
    float a_t = da_ddim_alpha_cumprod(d, t), a_prev = da_ddim_alpha_cumprod(d, tp);
    ddim_coef c;
    c.sa = sqrtf(a_t);
    c.sb = sqrtf(1.0f - a_t);
    c.sa_prev = sqrtf(a_prev);
    c.std = d->cfg.eta * sqrtf(da_ddim_variance(d, t, tp));
    c.dir = sqrtf(1.0f - a_prev - c.std * c.std);
    return c;
}

/* x0_hat and eps_hat for one element (prediction, clipping, re-derived eps) */
static void ddim_predict(const da_ddim *d, const ddim_coef *c, float m, float x, float *x0, float *eps)
{
    const da_ddim_config *g = &d->cfg;
    float p0, pe;
    da_pred_x0_eps(g->prediction, c->sa, c->sb, m, x, &p0, &pe);
    if (g->clip_sample) {
        float r = g->clip_sample_range;
        p0 = p0 < -r ? -r : (p0 > r ? r : p0);
    }
    if (g->use_clipped_model_output) pe = da_pred_eps_from_x0(c->sa, c->sb, x, p0);
    *x0 = p0;
    *eps = pe;
}

static da_status check_t(const da_ddim *d, int t) { return da_check_timestep(d->sched, "ddim", t); }

/* prev, x0_pred (n) from model_out, sample, noise (n); elementwise, so
 * outputs may alias inputs (each element is read before it is written). */
da_status da_ddim_step(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                       int t, const float *sample, const float *noise, size_t n)
{
    da_status st = check_t(d, t);
    if (st != DA_OK) return st;
    int noisy = d->cfg.eta > 0.0f;
    if (noisy && !noise) return da_fail(DA_ERR_INVALID, "ddim: eta > 0 needs a noise buffer");
    ddim_coef c = ddim_coef_at(d, t);
    for (size_t i = 0; i < n; i++) {
        float x0, eps;
        ddim_predict(d, &c, model_out[i], sample[i], &x0, &eps);
        float z = noisy ? noise[i] : 0.0f;
        float p = c.sa_prev * x0 + c.dir * eps;
        if (noisy) p = p + c.std * z;
        if (x0_pred) x0_pred[i] = x0;
        prev[i] = p;
    }
    return DA_OK;
}

da_status da_ddim_step_rng(const da_ddim *d, float *prev, float *x0_pred, const float *model_out,
                           int t, const float *sample, da_rng *rng, float *noise, size_t n)
{
    da_status st = check_t(d, t);
    if (st != DA_OK) return st;
    if (d->cfg.eta > 0.0f) {
        if (!rng || !noise) return da_fail(DA_ERR_INVALID, "ddim: eta > 0 needs a generator and a noise buffer");
        da_randn(rng, noise, n);  /* diffusers: randn_tensor(model_output.shape) */
    }
    return da_ddim_step(d, prev, x0_pred, model_out, t, sample, noise, n);
}

/* ---- log-probability ------------------------------------------------- */

static da_status logprob_coef(const da_ddim *d, int t, ddim_coef *c)
{
    da_status st = check_t(d, t);
    if (st != DA_OK) return st;
    *c = ddim_coef_at(d, t);
    if (!(c->std > 0.0f))
        return da_fail(DA_ERR_INVALID, "ddim logprob: std is %g at t = %d (needs eta > 0 and alpha_prev < 1)",
                       (double)c->std, t);
    return DA_OK;
}

/* logp (B) from model_out, x_prev, sample (B, n_per). The mean is the
 * step's own float32 mean, so x_prev = step(noise z) gives x_prev - mean =
 * std*z up to one rounding; the Gaussian terms and the mean over the item
 * are evaluated in double, in index order. */
da_status da_ddim_logprob_forward(float *logp, const float *model_out, const float *x_prev,
                                  const float *sample, const da_ddim *d, int t, int B, size_t n_per)
{
    ddim_coef c;
    da_status st = logprob_coef(d, t, &c);
    if (st != DA_OK) return st;
    double std = c.std, log_norm = log(std) + 0.5 * log(2.0 * M_PI);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * n_per;
        double acc = 0.0;
        for (size_t i = 0; i < n_per; i++) {
            float x0, eps;
            ddim_predict(d, &c, model_out[o + i], sample[o + i], &x0, &eps);
            float mean = c.sa_prev * x0 + c.dir * eps;
            double r = (double)x_prev[o + i] - (double)mean;
            acc += -(r * r) / (2.0 * std * std) - log_norm;
        }
        logp[b] = (float)(acc / (double)n_per);
    }
    return DA_OK;
}

/* d mean / d model_out for one element: the chain through x0_hat and
 * eps_hat. torch.clamp passes the gradient for lo <= x0 <= hi and blocks it
 * strictly outside, so look at the unclipped x0. */
static float dmean_dm(const da_ddim *d, const ddim_coef *c, float m, float x)
{
    const da_ddim_config *g = &d->cfg;
    float dx0, deps, raw, raw_eps;
    da_pred_x0_eps(g->prediction, c->sa, c->sb, m, x, &raw, &raw_eps);
    da_pred_x0_eps_grad(g->prediction, c->sa, c->sb, &dx0, &deps);
    float r = g->clip_sample_range;
    if (g->clip_sample && (raw < -r || raw > r)) dx0 = 0.0f;
    if (g->use_clipped_model_output) deps = -c->sa / c->sb * dx0;
    return c->sa_prev * dx0 + c->dir * deps;
}

/* dmodel_out (B, n_per) += dlogp[b] * (x_prev - mean) / (std^2 n_per) * dmean/dm */
void da_ddim_logprob_backward(float *dmodel_out, const float *dlogp, const float *model_out,
                              const float *x_prev, const float *sample, const da_ddim *d, int t,
                              int B, size_t n_per)
{
    ddim_coef c;
    if (logprob_coef(d, t, &c) != DA_OK) return;  /* forward already failed */
    double inv_var_n = 1.0 / ((double)c.std * (double)c.std * (double)n_per);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * n_per;
        for (size_t i = 0; i < n_per; i++) {
            float m = model_out[o + i], x = sample[o + i], x0, eps;
            ddim_predict(d, &c, m, x, &x0, &eps);
            float mean = c.sa_prev * x0 + c.dir * eps;
            double g = (double)dlogp[b] * ((double)x_prev[o + i] - (double)mean) * inv_var_n;
            dmodel_out[o + i] += (float)(g * (double)dmean_dm(d, &c, m, x));
        }
    }
}

static void logprob_backward_node(const da_node *nd)
{
    da_tensor *m = nd->in[0];
    if (!m->grad) return;
    da_ddim_logprob_backward(m->grad, nd->out->grad, m->data, nd->in[1]->data, nd->in[2]->data,
                             (const da_ddim *)nd->saved, nd->i[0], nd->i[1], (size_t)nd->i[2]);
}

da_tensor *da_ddim_logprob(da_tape *tp, const da_ddim *d, da_tensor *model_out, da_tensor *x_prev,
                           da_tensor *sample, int t)
{
    if (!model_out || !x_prev || !sample || model_out->ndim < 1 || model_out->shape[0] < 1 ||
        model_out->size != x_prev->size || model_out->size != sample->size) {
        da_fail(DA_ERR_INVALID, "ddim logprob: model_out, x_prev and sample must be (B, ...) of one size");
        return NULL;
    }
    int B = model_out->shape[0];
    size_t n_per = model_out->size / (size_t)B;
    if (n_per > INT_MAX) {   /* kept in the node's int slots */
        da_fail(DA_ERR_RANGE, "ddim logprob: %zu values per item (at most %d)", n_per, INT_MAX);
        return NULL;
    }
    da_tensor *in[1] = {model_out};   /* x_prev and sample are constants */
    int shape[1] = {B};
    da_tensor *out = da_tensor_for_op(tp, 1, shape, in, 1);
    if (da_ddim_logprob_forward(out->data, model_out->data, x_prev->data, sample->data, d, t, B, n_per) != DA_OK)
        return NULL;
    da_node nd = {.backward = logprob_backward_node, .out = out, .in = {model_out, x_prev, sample},
                  .i = {t, B, (int)n_per}, .saved = (void *)d};
    da_tape_push(tp, &nd);
    return out;
}
