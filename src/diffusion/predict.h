/* The one conversion from a model output to (x0, eps), for every prediction
 * type, used by the training helpers (schedule.c) and the samplers (ddim.c,
 * ddpm.c). Inline: the samplers call it per element.
 *
 * With sa = sqrt(a_t), sb = sqrt(1 - a_t) and x = x_t (diffusers' order of
 * float32 operations, so the samplers stay bit-identical to it):
 *   epsilon: x0 = (x - sb m) / sa     eps = m
 *   v:       x0 = sa x - sb m         eps = sa m + sb x
 *   sample:  x0 = m                   eps = (x - sa x0) / sb
 * (The Euler sampler works in sigma space on a scaled input: its own form,
 * euler.c.) */
#ifndef DA_DIFFUSION_PREDICT_H
#define DA_DIFFUSION_PREDICT_H

#include "dalign/diffusion.h"

/* eps implied by x0 at x: x = sa x0 + sb eps solved for eps */
static inline float da_pred_eps_from_x0(float sa, float sb, float x, float x0)
{
    return (x - sa * x0) / sb;
}

/* model output m at x -> *x0, *eps */
static inline void da_pred_x0_eps(da_prediction pred, float sa, float sb, float m, float x, float *x0,
                                  float *eps)
{
    if (pred == DA_PRED_EPSILON) {
        *x0 = (x - sb * m) / sa;
        *eps = m;
    } else if (pred == DA_PRED_V) {
        *x0 = sa * x - sb * m;
        *eps = sa * m + sb * x;
    } else {
        *x0 = m;
        *eps = da_pred_eps_from_x0(sa, sb, x, *x0);
    }
}

/* d x0 / d m and d eps / d m of da_pred_x0_eps (constant per timestep) */
static inline void da_pred_x0_eps_grad(da_prediction pred, float sa, float sb, float *dx0, float *deps)
{
    if (pred == DA_PRED_EPSILON) {
        *dx0 = -sb / sa;
        *deps = 1.0f;
    } else if (pred == DA_PRED_V) {
        *dx0 = -sb;
        *deps = sa;
    } else {
        *dx0 = 1.0f;
        *deps = -sa / sb;
    }
}

#endif
