/* Internal to the PromptLoop refiner: what src/models/refiner.c (the model
 * and its teacher-forced forward) and src/models/refiner_generate.c (the
 * cached autoregressive generation) share, and the generation's test hook.
 * The sequence layout is in refiner.c's header comment and
 * docs/promptloop.md. */
#ifndef DA_MODELS_REFINER_INTERNAL_H
#define DA_MODELS_REFINER_INTERNAL_H

#include "dalign/models.h"

#define REFINER_LN_EPS 1e-5f
#define REFINER_CFG_MAX 1000000   /* sanity bound on every config integer and on B */

/* the tokenizer's special ids (dalign/data.h, a higher layer: tests check they agree) */
enum { TOK_PAD = 0, TOK_BOS = 1, TOK_EOS = 2, TOK_UNK = 3 };
/* segment ids, in sequence order */
enum { SEG_LATENT, SEG_TIME, SEG_QUERY, SEG_PROMPT, SEG_OUTPUT };

/* latent patch tokens: (latent_size / patch)^2 */
int da_refiner_n_patches(const da_refiner_config *c);
/* the segment (SEG_*) of sequence slot `slot` */
int da_refiner_segment(const da_refiner_config *c, int slot);
/* DA_OK, or DA_ERR_INVALID with a message for a NULL input, a batch outside
 * [1, REFINER_CFG_MAX] or a query/prompt id outside [0, V) */
da_status da_refiner_check_inputs(const da_refiner_config *c, const float *x0, const float *timesteps,
                                  const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                                  const uint8_t *prompt_keep, int B);

/* Test hook of the cached path (refiner_generate.c): the logits (T_out, V)
 * of one row teacher-forced on out_ids (T_out), computed the way
 * da_refiner_generate computes them (the observation and out_ids[0] in one
 * pass, then one slot at a time over the key/value cache). Inputs as
 * da_refiner_forward's for B = 1, 1 <= T_out <= max_tokens. DA_ERR_INVALID
 * (bad id, size or NULL) or DA_ERR_NOMEM with a message. */
da_status da_refiner_cached_logits(const da_refiner *m, const float *x0, float timestep, const int *query_ids,
                                   const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                                   const int *out_ids, int T_out, float *logits);

#endif
