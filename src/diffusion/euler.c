/* Euler sampler in sigma space (Karras et al. 2022, "Algorithm 2" with
 * s_churn = 0) as diffusers' EulerDiscreteScheduler computes it with its
 * default "linspace" timestep spacing and linear sigma interpolation.
 *
 *   sigma(t)  = sqrt((1 - a_t) / a_t), interpolated at fractional t
 *   model in  = x / sqrt(sigma_i^2 + 1)
 *   x0_hat    = x - sigma_i m              (epsilon)
 *   x_{i+1}   = x + (x - x0_hat)/sigma_i * (sigma_{i+1} - sigma_i)
 * diffusers draws (and with s_churn = 0 discards) a randn per step; this
 * sampler is deterministic and draws nothing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/diffusion.h"

/* np.interp(x, arange(T), fp) in double: x is inside [0, T-1] here */
static double interp_index(double x, const float *fp, int T)
{
    if (x <= 0.0) return fp[0];
    if (x >= (double)(T - 1)) return fp[T - 1];
    int j = (int)floor(x);
    if ((double)j == x) return fp[j];
    double slope = (double)fp[j + 1] - (double)fp[j];   /* xp spacing is 1 */
    return slope * (x - (double)j) + (double)fp[j];
}

da_status da_euler_init(da_euler *e, const da_schedule *s, da_prediction pred, int n_steps)
{
    memset(e, 0, sizeof *e);
    int T = s->n_train;
    if (n_steps < 1 || n_steps > T)
        return da_fail(DA_ERR_INVALID, "euler: num_inference_steps %d must be in [1, num_train_timesteps = %d]",
                       n_steps, T);
    if ((unsigned)pred > DA_PRED_SAMPLE)
        return da_fail(DA_ERR_INVALID, "euler: unknown prediction type %d", (int)pred);
    float *full = malloc((size_t)T * sizeof(float));
    e->timesteps = malloc((size_t)n_steps * sizeof(float));
    e->sigmas = malloc((size_t)(n_steps + 1) * sizeof(float));
    if (!full || !e->timesteps || !e->sigmas) {
        free(full);
        da_euler_free(e);
        return da_fail(DA_ERR_NOMEM, "euler: out of memory");
    }
    /* ((1 - a) / a) ** 0.5 in float32, as torch computes it */
    for (int t = 0; t < T; t++) {
        float a = s->alphas_cumprod[t];
        full[t] = sqrtf((1.0f - a) / a);
    }
    /* np.linspace(0, T - 1, n, dtype=np.float32)[::-1]: float64 values
     * (endpoint exact) rounded to float32, then interpolated in float64 */
    double step = n_steps > 1 ? (double)(T - 1) / (double)(n_steps - 1) : 0.0;
    float max_sigma = 0.0f;
    for (int i = 0; i < n_steps; i++) {
        int j = n_steps - 1 - i;
        double tj = (n_steps > 1 && j == n_steps - 1) ? (double)(T - 1) : (double)j * step;
        float tf = (float)tj;
        e->timesteps[i] = tf;
        e->sigmas[i] = (float)interp_index((double)tf, full, T);
        if (e->sigmas[i] > max_sigma) max_sigma = e->sigmas[i];
    }
    e->sigmas[n_steps] = 0.0f;
    free(full);
    e->sched = s;
    e->prediction = pred;
    e->n_steps = n_steps;
    e->init_noise_sigma = max_sigma;   /* linspace spacing: sigma max, not sqrt(max^2 + 1) */
    return DA_OK;
}

void da_euler_free(da_euler *e)
{
    free(e->timesteps);
    free(e->sigmas);
    memset(e, 0, sizeof *e);
}

static da_status check_step(const da_euler *e, int i)
{
    if (i < 0 || i >= e->n_steps)
        return da_fail(DA_ERR_RANGE, "euler: step index %d outside [0, %d)", i, e->n_steps);
    return DA_OK;
}

/* out (n) = sample / sqrt(sigma_i^2 + 1); may alias sample */
da_status da_euler_scale_model_input(const da_euler *e, float *out, const float *sample, int i, size_t n)
{
    da_status st = check_step(e, i);
    if (st != DA_OK) return st;
    float sigma = e->sigmas[i];
    float scale = sqrtf(sigma * sigma + 1.0f);
    for (size_t k = 0; k < n; k++) out[k] = sample[k] / scale;
    return DA_OK;
}

/* prev, x0_pred (n) from model_out, sample (n) at step index i; elementwise,
 * outputs may alias inputs. */
da_status da_euler_step(const da_euler *e, float *prev, float *x0_pred, const float *model_out,
                        int i, const float *sample, size_t n)
{
    da_status st = check_step(e, i);
    if (st != DA_OK) return st;
    float sigma = e->sigmas[i];
    float dt = e->sigmas[i + 1] - sigma;
    float s2p1 = sigma * sigma + 1.0f;
    float v_scale = -sigma / sqrtf(s2p1);
    for (size_t k = 0; k < n; k++) {
        float m = model_out[k], x = sample[k], x0;
        if (e->prediction == DA_PRED_EPSILON) x0 = x - sigma * m;
        else if (e->prediction == DA_PRED_V) x0 = m * v_scale + x / s2p1;
        else x0 = m;
        float deriv = (x - x0) / sigma;
        if (x0_pred) x0_pred[k] = x0;
        prev[k] = x + deriv * dt;
    }
    return DA_OK;
}
