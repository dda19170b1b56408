/* The internal side of the models' parameter tables (the public da_params_*
 * are in dalign.h): the one initialiser every model uses (init.c) and a
 * loader for models that keep more than tensors in the file (params.c). */
#ifndef DA_MODELS_PARAMS_H
#define DA_MODELS_PARAMS_H

#include "dalign/models.h"

/* ---- init (init.c): PyTorch's defaults by name and shape, plus a few
 * per-model rules ---------------------------------------------------------- */

/* A model's own start for the entries whose name ends with `suffix`:
 *   DA_INIT_NORMAL  N(0, 1) * value (nn.Embedding's N(0, 1); CLIP's tokens 0.02)
 *   DA_INIT_CONST   every element = value (CLIP's logit_scale) */
typedef enum { DA_INIT_NORMAL, DA_INIT_CONST } da_init_kind;
typedef struct da_init_rule {
    const char *suffix;
    da_init_kind kind;
    float value;
} da_init_rule;

/* In table order (so the RNG draws follow the table), each entry by the
 * first rule whose suffix matches its name, else by PyTorch's default:
 *   a tensor of 2+ dims is a Linear/Conv weight: U(-1/sqrt(fan_in), +)
 *   with fan_in = prod(shape[1:]) (= in * kh * kw);
 *   a 1-D "X.bias" whose "X.weight" has 2+ dims: the same bound as X.weight;
 *   any other 1-D "X.weight" is a norm's scale: 1; everything else: 0
 *   (norm shifts, scalars). */
void da_init_params(da_params *p, da_rng *rng, const da_init_rule *own, int n_own);

/* ---- load (params.c) ------------------------------------------------------- */

/* What a model reads from the open file besides its tensors (metadata). */
typedef da_status (*da_params_extra_fn)(const da_safetensors *st, void *ctx);

/* da_params_load, then extra(st, ctx) (NULL: nothing) while the file is
 * open; any error message starts with "PATH: " */
da_status da_params_load_with(da_params *p, const char *path, da_params_extra_fn extra, void *ctx);

#endif
