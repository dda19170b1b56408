/* Noise schedules (betas, alphas, alphas_cumprod), inference timesteps and
 * the training-side helpers (q_sample, v target, x0/eps estimates).
 *
 * The schedule reproduces diffusers' float32 values bit for bit as torch
 * 1.13 computes them on CPU (tests/oracle/schedule.py dumps them):
 *  - torch.linspace has a vectorised kernel whose rounding is not
 *    start + i*step (see da_linspace_f32);
 *  - torch.cumprod on CPU keeps its running product in double and rounds
 *    only what it stores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/diffusion.h"
#include "diffusion/predict.h"
#include "diffusion/schedule.h"

/* ------------------------------------------------------------------------ */
/* Option names (diffusers' spellings)                                      */
/* ------------------------------------------------------------------------ */

da_status da_parse_choice(const char *name, const char *const *names, int n, int *out, const char *what)
{
    for (int i = 0; name && i < n; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return DA_OK;
        }
    char expected[256] = "";   /* "a, b or c" */
    for (int i = 0; i < n; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof expected - used, "%s%s", i == 0 ? "" : (i + 1 < n ? ", " : " or "),
                 names[i]);
    }
    return da_fail(DA_ERR_INVALID, "unknown %s '%s' (expected %s)", what, name ? name : "(null)", expected);
}

/* each table in the enum's order */
da_status da_beta_schedule_parse(const char *name, da_beta_schedule *out)
{
    static const char *const names[] = {"linear", "scaled_linear"};
    int i;
    da_status s = da_parse_choice(name, names, 2, &i, "beta schedule");
    if (s == DA_OK) *out = (da_beta_schedule)i;
    return s;
}

da_status da_prediction_parse(const char *name, da_prediction *out)
{
    static const char *const names[] = {"epsilon", "v_prediction", "sample"};
    int i;
    da_status s = da_parse_choice(name, names, 3, &i, "prediction type");
    if (s == DA_OK) *out = (da_prediction)i;
    return s;
}

da_status da_spacing_parse(const char *name, da_spacing *out)
{
    static const char *const names[] = {"leading", "trailing", "linspace"};
    int i;
    da_status s = da_parse_choice(name, names, 3, &i, "timestep spacing");
    if (s == DA_OK) *out = (da_spacing)i;
    return s;
}

/* ------------------------------------------------------------------------ */
/* Schedule                                                                 */
/* ------------------------------------------------------------------------ */

/* out (n) = torch.linspace(start, end, n) in float32, as torch 1.13's CPU
 * kernel computes it (AVX2 build):
 *  - step = (end - start) / (n - 1) in float;
 *  - the first half counts up from start, the second half down from end;
 *  - the kernel runs in vectors of 8 lanes, two vectors per iteration
 *    (16 values), the leftover tail element by element. A vector's base is
 *    one fused multiply-add (GCC contracted start + step*idx into an FMA
 *    in libtorch), its lanes are base + k*step with k*step rounded first;
 *    a vector straddling the midpoint counts up from its base. */
#define LS_LANES 8
static float linspace_base(float start, float end, float step, int n, int idx)
{
    if (idx < n / 2) return fmaf(step, (float)idx, start);
    return fmaf(-step, (float)(n - idx - 1), end);
}

void da_linspace_f32(float *out, float start, float end, int n)
{
    if (n <= 0) return;
    if (n == 1) { out[0] = start; return; }
    float step = (end - start) / (float)(n - 1);
    int i = 0;
    for (; i + 2 * LS_LANES <= n; i += 2 * LS_LANES) {
        for (int v = i; v < i + 2 * LS_LANES; v += LS_LANES) {
            float base = linspace_base(start, end, step, n, v);
            for (int k = 0; k < LS_LANES; k++) out[v + k] = base + (float)k * step;
        }
    }
    for (; i < n; i++) out[i] = linspace_base(start, end, step, n, i);
}

da_status da_schedule_init(da_schedule *s, da_beta_schedule kind, int n_train,
                           double beta_start, double beta_end)
{
    memset(s, 0, sizeof *s);
    if (n_train < 1)
        return da_fail(DA_ERR_INVALID, "schedule: num_train_timesteps must be >= 1, got %d", n_train);
    if (!(beta_start >= 0.0 && beta_end >= 0.0 && beta_start < 1.0 && beta_end < 1.0))
        return da_fail(DA_ERR_INVALID, "schedule: betas must lie in [0, 1), got beta_start %g beta_end %g",
                       beta_start, beta_end);
    if (kind != DA_BETA_LINEAR && kind != DA_BETA_SCALED_LINEAR)
        return da_fail(DA_ERR_INVALID, "schedule: unknown beta schedule %d", (int)kind);
    size_t T = (size_t)n_train;
    s->betas = malloc(T * sizeof(float));
    s->alphas = malloc(T * sizeof(float));
    s->alphas_cumprod = malloc(T * sizeof(float));
    if (!s->betas || !s->alphas || !s->alphas_cumprod) {
        da_schedule_free(s);
        return da_fail(DA_ERR_NOMEM, "schedule: out of memory for %d timesteps", n_train);
    }
    s->n_train = n_train;
    if (kind == DA_BETA_LINEAR) {
        da_linspace_f32(s->betas, (float)beta_start, (float)beta_end, n_train);
    } else {
        /* diffusers: linspace(beta_start**0.5, beta_end**0.5) ** 2; the square
         * roots are Python doubles rounded to float by torch */
        da_linspace_f32(s->betas, (float)sqrt(beta_start), (float)sqrt(beta_end), n_train);
        for (size_t i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
    }
    double acc = 1.0;   /* torch's CPU cumprod accumulates in double */
    for (size_t i = 0; i < T; i++) {
        s->alphas[i] = 1.0f - s->betas[i];
        acc *= (double)s->alphas[i];
        s->alphas_cumprod[i] = (float)acc;
    }
    return DA_OK;
}

void da_schedule_free(da_schedule *s)
{
    free(s->betas);
    free(s->alphas);
    free(s->alphas_cumprod);
    memset(s, 0, sizeof *s);
}

/* diffusers set_timesteps (DDIM/DDPM), descending:
 *   leading:  (i * (T / n)) reversed, + steps_offset
 *   trailing: round(T - i * T/n) - 1  (numpy arange(T, 0, -T/n))
 *   linspace: round(linspace(0, T - 1, n)) reversed
 * np.round rounds half to even, as rint() does in the default mode. */
da_status da_timesteps(int *out, int n_steps, int n_train, da_spacing spacing, int steps_offset)
{
    if (n_steps < 1 || n_steps > n_train)
        return da_fail(DA_ERR_INVALID, "num_inference_steps %d must be in [1, num_train_timesteps = %d]",
                       n_steps, n_train);
    for (int i = 0; i < n_steps; i++) {
        double v;
        if (spacing == DA_SPACING_LEADING) {
            v = (double)(n_steps - 1 - i) * (double)(n_train / n_steps) + steps_offset;
        } else if (spacing == DA_SPACING_TRAILING) {
            double ratio = (double)n_train / n_steps;
            double delta = ((double)n_train - ratio) - (double)n_train; /* numpy arange's fill step */
            v = rint((double)n_train + (double)i * delta) - 1.0;
        } else if (spacing == DA_SPACING_LINSPACE) {
            int j = n_steps - 1 - i;
            double x = n_steps == 1 ? 0.0 : (double)j * ((double)(n_train - 1) / (n_steps - 1));
            if (j == n_steps - 1) x = n_train - 1;  /* numpy sets the endpoint exactly */
            v = rint(x);
        } else {
            return da_fail(DA_ERR_INVALID, "unknown timestep spacing %d", (int)spacing);
        }
        if (v < 0.0 || v >= (double)n_train)
            return da_fail(DA_ERR_INVALID, "timestep %.0f (steps_offset %d) is outside [0, %d)",
                           v, steps_offset, n_train);
        out[i] = (int)v;
    }
    return DA_OK;
}

da_status da_timesteps_new(int **out, const da_schedule *s, int n_steps, da_spacing spacing, int steps_offset,
                           const char *who)
{
    *out = NULL;
    int *ts = malloc((size_t)(n_steps > 0 ? n_steps : 1) * sizeof(int));
    if (!ts) return da_fail(DA_ERR_NOMEM, "%s: out of memory", who);
    da_status st = da_timesteps(ts, n_steps, s->n_train, spacing, steps_offset);
    if (st != DA_OK) {
        free(ts);
        return st;
    }
    *out = ts;
    return DA_OK;
}

da_status da_check_timestep(const da_schedule *s, const char *who, int t)
{
    if (t < 0 || t >= s->n_train)
        return da_fail(DA_ERR_RANGE, "%s: timestep %d outside [0, %d)", who, t, s->n_train);
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Training side                                                            */
/* ------------------------------------------------------------------------ */

/* every t[b] in [0, n_train), checked before anything is written */
static da_status check_timesteps(const da_schedule *s, const int *t, int B)
{
    for (int b = 0; b < B; b++)
        if (t[b] < 0 || t[b] >= s->n_train)
            return da_fail(DA_ERR_RANGE, "timestep %d of item %d outside [0, %d)", t[b], b, s->n_train);
    return DA_OK;
}

/* xt (B, n_per) = sqrt(a) x0 + sqrt(1 - a) eps with a = alphas_cumprod[t[b]] */
da_status da_add_noise(const da_schedule *s, float *xt, const float *x0, const float *eps,
                       const int *t, int B, size_t n_per)
{
    da_status st = check_timesteps(s, t, B);
    if (st != DA_OK) return st;
    for (int b = 0; b < B; b++) {
        float a = s->alphas_cumprod[t[b]];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        size_t o = (size_t)b * n_per;
        for (size_t i = 0; i < n_per; i++) xt[o + i] = sa * x0[o + i] + sb * eps[o + i];
    }
    return DA_OK;
}

/* v (B, n_per) = sqrt(a) eps - sqrt(1 - a) x0 (diffusers get_velocity) */
da_status da_velocity(const da_schedule *s, float *v, const float *x0, const float *eps,
                      const int *t, int B, size_t n_per)
{
    da_status st = check_timesteps(s, t, B);
    if (st != DA_OK) return st;
    for (int b = 0; b < B; b++) {
        float a = s->alphas_cumprod[t[b]];
        float sa = sqrtf(a), sb = sqrtf(1.0f - a);
        size_t o = (size_t)b * n_per;
        for (size_t i = 0; i < n_per; i++) v[o + i] = sa * eps[o + i] - sb * x0[o + i];
    }
    return DA_OK;
}

/* x0, eps (n) from model_out, sample (n) (diffusion/predict.h); each
 * element reads its inputs before writing, so the outputs may alias them. */
void da_predict_x0_eps(float *x0, float *eps, const float *model_out, const float *sample,
                       size_t n, float alpha_cumprod, da_prediction pred)
{
    float sa = sqrtf(alpha_cumprod), sb = sqrtf(1.0f - alpha_cumprod);
    for (size_t i = 0; i < n; i++) {
        float p0, pe;
        da_pred_x0_eps(pred, sa, sb, model_out[i], sample[i], &p0, &pe);
        x0[i] = p0;
        if (eps) eps[i] = pe;
    }
}
