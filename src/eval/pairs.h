/* Preference pairs for Diffusion-DPO and Diffusion-RPO (docs/pairs.md):
 * two images per candidate from the current model (same prompt, different
 * seeds; optionally a different prompt for the second image, for RPO),
 * labelled by the synthetic rater, ties dropped. Used by `dalign pairs`
 * (src/cli/pairs.c); the trainers read the file with da_pairs_load.
 *
 * File layout (safetensors, format "dalign-pairs-1"). Tensors, all F32:
 *   latents_w   (N, C, h, w)  the preferred image's final latent in diffusion
 *                             space (what the UNet sees: VAE latent times the
 *                             scale factor), exactly da_pipeline_generate's
 *                             out_latents
 *   latents_l   (N, C, h, w)  the other image's, same space and shape
 *   utility_w   (N)           the rater's noiseless utility of the preferred
 *                             image under its own prompt
 *   utility_l   (N)           the same for the other image
 *   prob_w      (N)           da_rater_prob(u_w, u_l): the Bradley-Terry
 *                             probability the rater gave the preferred image
 * Metadata, all strings:
 *   format                    "dalign-pairs-1"
 *   n                         N, decimal
 *   prompts_w, prompts_l      JSON arrays of N strings
 *   seeds_w, seeds_l          JSON arrays of N decimal strings (64-bit safe)
 *   candidate_index           JSON array of N integers: the candidate each
 *                             pair came from (0-based, increasing)
 *   seed, split, sampler, steps, cfg, eta, batch, unet,
 *   different_prompt_fraction the generation settings (split "train" or
 *                             "heldout", sampler "ddim" | "ddpm" | "euler")
 *   candidates                candidates labelled (kept + ties)
 *   ties_dropped              candidates that tied
 *   rater                     the rater config as a JSON object
 *   weights                   the weights directory as given ("" when the
 *                             caller named none)
 *   vae_scale_factor          the pipeline VAE's scale factor ("%.9g"): the
 *                             latents are VAE latents times it, so a trainer
 *                             must decode them with the same VAE
 * Floats are written "%.9g" (every float reads back exactly).
 * Pair i's preferred image is prompts_w[i] sampled with seeds_w[i]; its
 * other image is prompts_l[i] with seeds_l[i]. */
#ifndef DA_EVAL_PAIRS_H
#define DA_EVAL_PAIRS_H

#include "dalign.h"

#define DA_PAIRS_FORMAT "dalign-pairs-1"
/* Every per-pair field lives in the safetensors header (the metadata), and
 * readers cap headers: ours at 100 MiB, Python's safetensors at 100,000,000
 * bytes. A pair's worst case in the header, where each metadata value (a
 * JSON array) is escaped a second time as a JSON string:
 *   2 prompts  2 * (159 * 7 + 4 + 2) = 2238   159 bytes (DA_CAPTION_MAX - 1),
 *              each at worst a control or non-UTF-8 byte: \u00xx (6), then
 *              \\u00xx (7); the two quotes \"...\" (4); the ", " between items
 *   2 seeds    2 * (20 + 4 + 2)      =   52   "18446744073709551615", quoted
 *   candidate  8 + 2                 =   10   < 1000 * N = 3e7: 8 digits
 *                                      2300 bytes a pair
 * The rest (settings, a weights path of < 4096 bytes * 7, the tensor
 * entries) stays under 64 KiB. 30000 pairs: 30000 * 2300 + 65536 =
 * 69,065,536 bytes, 69% of Python's limit (generated captions need no
 * escapes: 160 to 400 bytes a pair). For more pairs, write several files. */
#define DA_PAIRS_MAX_N 30000
#define DA_PAIRS_MAX_BATCH 256
#define DA_PAIRS_UNET_MAX 128
#define DA_PAIRS_WEIGHTS_MAX 4096   /* bytes of the recorded weights path, NUL included */

typedef struct da_pairs_config {
    int n;                          /* pairs to keep: 1000 */
    uint64_t seed;                  /* every random choice derives from it: 0 */
    da_split split;                 /* prompts of this split: DA_SPLIT_TRAIN (DPO trains on train prompts) */
    da_sample_opts opts;            /* da_sample_opts_default(): DDIM, 20 steps, cfg 3 */
    int batch;                      /* images per pipeline call, FIXED (OpenBLAS bits depend on it): 8 */
    da_rater_config rater;          /* da_rater_config_default() */
    float different_prompt_fraction;/* share of candidates whose second image has another prompt: 0 */
    int max_attempts;               /* give up after max_attempts * n candidates: 10 */
    const char *unet_name;          /* recorded in the file: "unet" */
    const char *weights;            /* the weights directory, recorded as given: NULL (recorded as "") */
    int progress;                   /* 1: progress lines on stderr */
} da_pairs_config;

/* A set of pairs in memory: what da_pairs_generate makes, da_pairs_save
 * writes and da_pairs_load reads back. */
typedef struct da_pairs {
    int n;                          /* pairs */
    int channels, height, width;    /* latent shape (C, h, w) */
    float *latents_w, *latents_l;   /* (n, C, h, w) diffusion space */
    float *utility_w, *utility_l;   /* (n) noiseless utilities */
    float *prob_w;                  /* (n) rater's probability for the winner */
    char **prompts_w, **prompts_l;  /* (n) NUL-terminated, each < DA_CAPTION_MAX bytes */
    uint64_t *seeds_w, *seeds_l;    /* (n) */
    long *candidate;                /* (n) candidate index of each pair */
    /* generation settings, as in the file */
    uint64_t seed;
    da_split split;
    da_sample_opts opts;
    int batch;
    char unet[DA_PAIRS_UNET_MAX];
    char weights[DA_PAIRS_WEIGHTS_MAX];   /* the weights directory as given; may be "" */
    float vae_scale_factor;         /* the VAE the latents came from: decode with the same one */
    float different_prompt_fraction;
    long candidates, ties_dropped;
    da_rater_config rater;
    char *text;                     /* storage of the prompts: 2n rows of DA_CAPTION_MAX bytes */
} da_pairs;

da_pairs_config da_pairs_config_default(void);
da_status da_pairs_config_check(const da_pairs_config *c);

/* The candidate stream: candidate k has images 2k (A) and 2k + 1 (B); the
 * image stream is generated in pipeline calls of exactly c->batch images
 * (call j makes images j*batch .. j*batch + batch - 1). Writes the first
 * n_images prompts (rows of DA_CAPTION_MAX bytes) and seeds. */
da_status da_pairs_plan(const da_pairs_config *c, long n_images, char *prompts, uint64_t *seeds);
/* seed of image k (0: A, 1: B) of candidate `cand` */
uint64_t da_pairs_image_seed(uint64_t seed, long cand, int k);

/* Sample, label and keep c->n non-tie pairs. out is zeroed first; free it
 * with da_pairs_free (also after an error). */
da_status da_pairs_generate(da_pipeline *p, const da_pairs_config *c, da_pairs *out);
/* Write the documented layout atomically. */
da_status da_pairs_save(const da_pairs *pr, const char *path);
/* Read and validate a pairs file; errors name the file and the problem.
 * out is zeroed first; free with da_pairs_free (also after an error). */
da_status da_pairs_load(const char *path, da_pairs *out);
void da_pairs_free(da_pairs *pr);

#endif
