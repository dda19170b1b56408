/* dalign/rewards.h: the rewards layer (src/rewards): every reward behind one
 * interface, the per-image measures, the synthetic rater (the stand-in for
 * human raters) and synthetic preference pairs. The learned preference
 * model is a model (dalign/models.h); its training is in dalign/train.h. */
#ifndef DALIGN_REWARDS_H
#define DALIGN_REWARDS_H

#include "dalign/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Rewards (src/rewards), the synthetic rater and synthetic pairs.          */
/* docs/evaluation.md, docs/rater.md.                                       */
/* ------------------------------------------------------------------------ */

/* Per-image measures. img (3, H, W) in [0, 1]; values are clamped to
 * [0, 1] first, as when the image is saved to a file. */
/* Hasler and Suesstrunk (2003) colourfulness on 0..255 values:
 * rg = R - G, yb = (R + G)/2 - B, M = sqrt(sd_rg^2 + sd_yb^2) +
 * 0.3 sqrt(mean_rg^2 + mean_yb^2) (population std). 0 for any grey image. */
DA_API float da_colorfulness(const float *img, int H, int W);
/* Size of the image encoded as JPEG at quality 95 by stb_image_write, in kB
 * (1000 bytes), as DDPO's compressibility rewards. */
DA_API da_status da_jpeg_kb(const float *img, int H, int W, float *kb);
/* Read a PNG (or any format stb_image reads) of exactly DA_IMG x DA_IMG
 * pixels into img (DA_IMG_FLOATS) in [0, 1]. Grey is replicated to RGB,
 * alpha is dropped. DA_ERR_IO for a missing/unreadable file, DA_ERR_FORMAT
 * for an undecodable one, DA_ERR_INVALID for another size. */
DA_API da_status da_image_load(const char *path, float *img);

/* One interface for every reward: images (B, 3, DA_IMG, DA_IMG) in [0, 1]
 * and one prompt per image -> scores (B), higher is better. Names:
 *   faithful   shapes-world faithfulness in [0, 1]; an unparsable prompt scores 0
 *   jpeg       JPEG size in kB (incompressibility)
 *   jpeg-neg   minus the JPEG size (compressibility)
 *   colorful   Hasler-Suesstrunk colourfulness
 *   clip       CLIPScore, 100 max(cos, 0), of the CLIP towers in weights_dir
 *   pref       the learned preference model in weights_dir
 *   outline    the outline-style detector's score (da_outline_score) in [0, 1];
 *              an image with no judged object scores 0
 * weights_dir (NULL: da_weights_dir(NULL)) holds, each as NAME.json (config)
 * + NAME.safetensors, clip and text_encoder for clip, reward_net for pref;
 * the other rewards ignore it. */
#define DA_REWARD_NAMES "faithful, jpeg, jpeg-neg, colorful, clip, pref, outline"
typedef struct da_reward da_reward;
/* DA_ERR_INVALID (listing the valid names) for an unknown name; load errors
 * name the file. */
DA_API da_status da_reward_create(da_reward **out, const char *name, const char *weights_dir);
DA_API const char *da_reward_name(const da_reward *r);
DA_API int da_reward_needs_prompt(const da_reward *r);   /* faithful, clip, pref */
/* prompts (B) may be NULL when the reward needs none. Scores of one image
 * do not depend on the rest of the batch. */
DA_API da_status da_reward_score(const da_reward *r, const float *images, const char *const *prompts, int B,
                                 float *scores);
DA_API void da_reward_free(da_reward *r);

/* The synthetic rater (docs/rater.md): the stand-in for human raters. Its
 * utility u = w_faith faith + w_size size + w_centre centre + w_contrast
 * contrast (each term in [0, 1], from the detector and the pixels). It is
 * NOT a reward name: trainers never optimise it directly. */
typedef struct da_rater_config {
    float w_faith, w_size, w_centre, w_contrast;
    float temperature;   /* Bradley-Terry: P(A > B) = sigmoid((u_A - u_B) / temperature) */
    float tie_margin;    /* |u_A - u_B| < tie_margin: a tie */
} da_rater_config;       /* defaults: weights 8, 1, 1, 0.5; temperature 0.25; tie_margin 0.05 */
typedef struct da_rater_terms {
    float faith;      /* faithfulness; 0 when the prompt does not parse */
    float size;       /* min(1, sqrt(area of the two largest objects) / 16) */
    float centre;     /* max(0, 1 - |their area-weighted centroid - image centre| / 16) */
    float contrast;   /* |luminance of object pixels - luminance of the border| */
    float utility;
    int parsed;       /* 0: the prompt did not parse */
} da_rater_terms;
DA_API da_rater_config da_rater_config_default(void);
DA_API da_status da_rater_utility(const da_rater_config *c, const float *img, const char *prompt,
                                  da_rater_terms *out);
/* sigmoid((u_a - u_b) / temperature) */
DA_API float da_rater_prob(const da_rater_config *c, float u_a, float u_b);
/* +1: A preferred, -1: B preferred, 0: a tie (|u_a - u_b| < tie_margin).
 * rng NULL: noiseless (the sign of u_a - u_b); else one da_rand draw per
 * call (also for ties, so the stream does not depend on the outcomes). */
DA_API int da_rater_label(const da_rater_config *c, float u_a, float u_b, da_rng *rng);

/* Synthetic preference pairs without a diffusion model: a scene of `split`
 * and its caption; each image is the ground-truth render, a faithful
 * re-placement, or a perturbed render (colour, shape, size, position,
 * background, noise, blur). The two images differ. */
DA_API da_status da_synth_pair(da_rng *rng, da_split split, float *img_a, float *img_b, char *prompt,
                               size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_REWARDS_H */
