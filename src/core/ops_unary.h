/* Two elementwise ops with a scalar parameter (src/core/ops_unary.c): the
 * VAE's exp(s * x) (its sampling std and KL term) and clamp (its logvar
 * range). Internal: declared here, not in dalign.h. */
#ifndef DA_CORE_OPS_UNARY_H
#define DA_CORE_OPS_UNARY_H

#include <stddef.h>

#include "dalign/core.h"

/* out (n) = exp(s * inp (n)); dinp += dout * s * out */
void da_exp_scaled_forward(float *out, const float *inp, float s, size_t n);
void da_exp_scaled_backward(float *dinp, const float *dout, const float *out, float s, size_t n);
da_tensor *da_exp_scaled(da_tape *t, da_tensor *x, float s);

/* out (n) = min(max(inp, lo), hi); the gradient passes where lo <= x <= hi
 * (torch.clamp's convention at the boundaries) */
void da_clamp_forward(float *out, const float *inp, float lo, float hi, size_t n);
void da_clamp_backward(float *dinp, const float *dout, const float *inp, float lo, float hi, size_t n);
da_tensor *da_clamp(da_tape *t, da_tensor *x, float lo, float hi);

#endif
