/* Evaluation of the base text-to-image model (docs/evaluation-base.md):
 * shapes-world faithfulness of generated images on held-in (train split) and
 * held-out prompts, per clause type, and the VAE's reconstruction PSNR.
 * Used by `dalign eval-base` (src/cli/eval_base.c) and its tests. */
#ifndef DA_EVAL_EVAL_H
#define DA_EVAL_EVAL_H

#include <stdio.h>

#include "dalign.h"

#define DA_EVAL_PROMPT_SEED 2025u      /* held-in prompts: rng seed; held-out: seed + 1 */
#define DA_EVAL_IMAGE_SEED 0u          /* image seeds: seed + 2^32 split + 256 prompt + k */
#define DA_EVAL_RECON_SEED 20250101u   /* the VAE trainer's held-out PSNR seed: same images */
#define DA_EVAL_MAX_SEEDS 256
#define DA_EVAL_MAX_PROMPTS 100000
#define DA_EVAL_MAX_BATCH 256

typedef struct da_eval_config {
    int n_prompts;            /* per split: 200 */
    int n_seeds;              /* images per prompt: 4 */
    int batch;                /* images per pipeline call (fixed: OpenBLAS bits depend on it) */
    int n_recon;              /* held-out ground-truth images for the VAE PSNR: 200 (0: skip) */
    int grid_prompts;         /* prompts per split in the grid image: 4 */
    uint64_t prompt_seed;     /* DA_EVAL_PROMPT_SEED */
    uint64_t image_seed;      /* DA_EVAL_IMAGE_SEED */
    da_sample_opts opts;      /* da_sample_opts_default(): DDIM, 20 steps, cfg 3 */
    int progress;             /* 1: progress lines on stderr */
} da_eval_config;

/* A mean with its 95% interval: mean +- half. */
typedef struct da_eval_stat {
    double mean, half;
    long n;                   /* images or clauses it is over */
} da_eval_stat;

typedef struct da_eval_split {
    int n_prompts, n_seeds;
    char *prompts;            /* (n_prompts, DA_CAPTION_MAX) texts */
    da_scene *scenes;         /* (n_prompts) the scenes the prompts were drawn from */
    float *scores;            /* (n_prompts, n_seeds) faithfulness of each image */
    int *n_type, *sat_type;   /* (n_prompts, DA_N_CLAUSE_TYPES) clause counts over its seeds */
    float *grid;              /* (grid_prompts, n_seeds, 3, 32, 32) images of the first prompts */
    int grid_prompts;
    da_eval_stat faith;       /* mean faithfulness over images */
    da_eval_stat exact;       /* fraction of images with every clause satisfied */
    da_eval_stat type[DA_N_CLAUSE_TYPES];   /* fraction of clauses of a type satisfied */
    da_eval_stat heldout_pair, heldout_layout;   /* held-out split: prompts with that element */
} da_eval_split;

typedef struct da_eval_result {
    da_eval_split split[2];   /* DA_SPLIT_TRAIN (held-in), DA_SPLIT_HELDOUT */
    double psnr;              /* 10 log10(1 / MSE) over all pixels of n_recon images */
    da_eval_stat psnr_image;  /* mean per-image PSNR */
    double psnr_min;          /* worst image */
    int n_recon;
    double seconds_generate, seconds_recon;
} da_eval_result;

da_eval_config da_eval_config_default(void);
da_status da_eval_config_check(const da_eval_config *c);
const char *da_clause_type_name(int type);   /* "colour", "shape", ... */

/* The n evaluation prompts of a split, from a generator seeded with
 * prompt_seed (held-in) or prompt_seed + 1 (held-out): scenes drawn with
 * da_world_sample and phrased with da_world_caption, skipping any prompt
 * that says the same as an earlier one ("A left of B" = "B right of A").
 * texts: n rows of DA_CAPTION_MAX bytes; scenes (n) may be NULL. The first
 * n of a longer list are the same prompts. */
da_status da_eval_prompts(uint64_t prompt_seed, da_split split, int n, char *texts, da_scene *scenes);
/* seed of image k of prompt p: image_seed + 2^28 split + 256 p + k (distinct
 * modulo 2^32, the part of a seed the generator uses, for image_seed <
 * 2^32 - 2^29) */
uint64_t da_eval_image_seed(uint64_t image_seed, da_split split, int p, int k);

/* 95% interval of a ratio sum(s) / sum(n) over independent clusters
 * (prompts), each with s[i] successes out of n[i] (delta method, normal
 * quantile 1.96). With n[i] = const it is the interval of a mean of
 * per-cluster means. half = 0 for fewer than two clusters. */
da_eval_stat da_eval_cluster_mean(const double *s, const double *n, int k);

/* Score images (B, 3, 32, 32) against one prompt each; score[b] and the
 * clause counts (B, DA_N_CLAUSE_TYPES) of each image. DA_ERR_INVALID for a
 * prompt that does not parse. */
da_status da_eval_score(const float *images, const char *const *prompts, int B, float *score, int *n_type,
                        int *sat_type);
/* Fill the statistics of a split from its scores and clause counts. */
void da_eval_split_stats(da_eval_split *s);

/* Generate and score both splits, then the VAE PSNR. r is zeroed first;
 * free it with da_eval_result_free (also after an error). */
da_status da_eval_base_run(da_pipeline *p, const da_eval_config *c, da_eval_result *r);
void da_eval_result_free(da_eval_result *r);

/* VAE reconstruction of n held-out ground-truth images (generator seeded
 * with `seed`): encode, decode the mean, clamp to [0, 1], PSNR on [0, 1]. */
da_status da_eval_vae_psnr(const da_vae *vae, int n, uint64_t seed, int batch, double *psnr,
                           da_eval_stat *per_image, double *worst);

/* Output files in dir (created if missing): metrics.json, table.md,
 * grid.png (rows: prompts, columns: seeds), grid.txt (the grid's prompts),
 * prompts.tsv (every prompt with its per-seed scores). Atomic writes. */
da_status da_eval_write(const char *dir, const da_eval_config *c, const da_eval_result *r,
                        const char *weights_dir, const char *unet_name);
/* The markdown table of table.md. */
void da_eval_table(FILE *f, const da_eval_result *r);

#endif
