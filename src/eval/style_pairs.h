/* Style pairs (style_pairs.c; docs/shapes-world.md, "Style pairs"): the
 * pairs file of pairs.h where the preferred image of candidate k is the
 * prompt's own scene rendered in a style (the VAE encoding of the render)
 * and the other image is the pipeline's sample for the same prompt. The
 * preference comes from the style, not from the rater; the rater's numbers
 * are still filled in, so a reader can see what the style costs it. */
#ifndef DA_EVAL_STYLE_PAIRS_H
#define DA_EVAL_STYLE_PAIRS_H

#include "dalign/eval.h"

/* Candidate k's two seeds (both 32-bit, da_pairs_image_seed(seed, k, 0 | 1)):
 * the scene seed seeds the da_rng that draws its scene and caption (the
 * file's seeds_w[k]); the sample seed is the pipeline's (seeds_l[k]). */
uint64_t da_style_scene_seed(uint64_t seed, long cand);
uint64_t da_style_sample_seed(uint64_t seed, long cand);

/* The preferred image of a candidate before encoding: with a da_rng seeded
 * with scene_seed, da_world_sample then da_world_caption (the draws of
 * da_world_example), then the render in `style`. caption holds
 * DA_CAPTION_MAX bytes; img DA_IMG_FLOATS. */
da_status da_style_candidate(uint64_t scene_seed, da_split split, da_style style, da_scene *s, char *caption,
                             float *img);

/* c->n pairs, every candidate kept (candidates = n, no ties). Reads from c:
 * n, seed, split, opts (the sample's), batch (renders encoded and samples
 * generated in calls of exactly `batch`: the bits depend on it), rater,
 * unet_name, weights, progress. out->style gets da_style_name(style) (the
 * file's "style" key). different_prompt_fraction must be 0 (the
 * two images share the prompt); max_attempts is not used. out is zeroed
 * first; free it with da_pairs_free (also after an error). */
da_status da_style_pairs_generate(da_pipeline *p, const da_pairs_config *c, da_style style, da_pairs *out);

#endif
