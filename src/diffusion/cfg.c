/* Classifier-free guidance (Ho & Salimans 2022): combine the unconditional
 * and conditional noise predictions. */
#include <string.h>

#include "dalign/diffusion.h"

/* out (n) = eps_u + w (eps_c - eps_u), diffusers' order of operations.
 * w == 1 means no guidance: return eps_c exactly instead of
 * eps_u + (eps_c - eps_u), which can be off by a rounding. */
void da_cfg_combine(float *out, const float *eps_u, const float *eps_c, float w, size_t n)
{
    if (w == 1.0f) {
        if (out != eps_c) memmove(out, eps_c, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = eps_u[i] + w * (eps_c[i] - eps_u[i]);
}
