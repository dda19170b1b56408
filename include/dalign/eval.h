/* dalign/eval.h: the eval layer (src/eval): what a model's images are worth,
 * measured with the pipeline and the rewards: the base-model evaluation
 * (faithfulness per clause type, VAE PSNR), the alignment evaluation and
 * its report (every reward, the rater, diversity), the win-rate against a
 * base model, and the preference-pairs files the trainers read. */
#ifndef DALIGN_EVAL_H
#define DALIGN_EVAL_H

#include <stdio.h>

#include "dalign/rewards.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Base-model evaluation (src/eval/eval.c): `dalign eval-base`              */
/* ------------------------------------------------------------------------ */

/* Evaluation of the base text-to-image model (docs/evaluation-base.md):
 * shapes-world faithfulness of generated images on held-in (train split) and
 * held-out prompts, per clause type, and the VAE's reconstruction PSNR.
 * Used by `dalign eval-base` (src/cli/eval_base.c) and its tests. */

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

/* A mean with its 95% interval [lo, hi], the interval every file and page
 * shows. half is the normal (delta-method) half width; for a quantity
 * without bounds [lo, hi] = [mean - half, mean + half], for a share (a
 * proportion, or a mean of values in [0, 1]) it is the Wilson score
 * interval (da_eval_cluster_share), inside [0, 1] and not symmetric. */
typedef struct da_eval_stat {
    double mean, half;
    long n;                   /* images or clauses it is over */
    double lo, hi;            /* the 95% interval */
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

DA_API da_eval_config da_eval_config_default(void);
DA_API da_status da_eval_config_check(const da_eval_config *c);
DA_API const char *da_clause_type_name(int type);   /* "colour", "shape", ... */

/* The n evaluation prompts of a split, from a generator seeded with
 * prompt_seed (held-in) or prompt_seed + 1 (held-out): scenes drawn with
 * da_world_sample and phrased with da_world_caption, skipping any prompt
 * that says the same as an earlier one ("A left of B" = "B right of A").
 * texts: n rows of DA_CAPTION_MAX bytes; scenes (n) may be NULL. The first
 * n of a longer list are the same prompts. */
DA_API da_status da_eval_prompts(uint64_t prompt_seed, da_split split, int n, char *texts, da_scene *scenes);
/* seed of image k of prompt p: image_seed + 2^28 split + 256 p + k (distinct
 * modulo 2^32, the part of a seed the generator uses, for image_seed <
 * 2^32 - 2^29) */
DA_API uint64_t da_eval_image_seed(uint64_t image_seed, da_split split, int p, int k);

/* 95% interval of a ratio sum(s) / sum(n) over independent clusters
 * (prompts), each with s[i] successes out of n[i] (delta method, normal
 * quantile 1.96). With n[i] = const it is the interval of a mean of
 * per-cluster means. half = 0 for fewer than two clusters. */
DA_API da_eval_stat da_eval_cluster_mean(const double *s, const double *n, int k);
/* The Wilson score interval (95%, z = 1.96) of a share of `successes` out of
 * n trials: inside [0, 1] whatever the counts (10/10 -> [0.722, 1], 0/10 ->
 * [0, 0.278]), where mean +- half would reach past 1 or below 0. n = 0:
 * all zero. */
DA_API da_eval_stat da_eval_wilson(double successes, double n);
/* da_eval_cluster_mean of a share (s[i] <= n[i]; or a sum of values in
 * [0, 1]) with the Wilson interval at the effective sample size
 * p (1 - p) / var, var the clustered variance of the delta method (the
 * design effect of the prompts); with no spread to measure (p 0 or 1, or
 * one cluster) at the plain count sum(n). mean, half and n as
 * da_eval_cluster_mean. */
DA_API da_eval_stat da_eval_cluster_share(const double *s, const double *n, int k);

/* Score images (B, 3, 32, 32) against one prompt each; score[b] and the
 * clause counts (B, DA_N_CLAUSE_TYPES) of each image. DA_ERR_INVALID for a
 * prompt that does not parse. */
DA_API da_status da_eval_score(const float *images, const char *const *prompts, int B, float *score,
                               int *n_type,
                               int *sat_type);
/* Fill the statistics of a split from its scores and clause counts. */
DA_API void da_eval_split_stats(da_eval_split *s);

/* Generate and score both splits, then the VAE PSNR. r is zeroed first;
 * free it with da_eval_result_free (also after an error). */
DA_API da_status da_eval_base_run(da_pipeline *p, const da_eval_config *c, da_eval_result *r);
DA_API void da_eval_result_free(da_eval_result *r);

/* VAE reconstruction of n held-out ground-truth images (generator seeded
 * with `seed`): encode, decode the mean, clamp to [0, 1], PSNR on [0, 1]. */
DA_API da_status da_eval_vae_psnr(const da_vae *vae, int n, uint64_t seed, int batch, double *psnr,
                                  da_eval_stat *per_image, double *worst);

/* Output files in dir (created if missing): metrics.json, table.md,
 * grid.png (rows: prompts, columns: seeds), grid.txt (the grid's prompts),
 * prompts.tsv (every prompt with its per-seed scores). Atomic writes, then
 * the completion marker DA_EVAL_DONE last (removed first). metrics.json
 * records da_version() and the SHA-256 of the weights files read. */
DA_API da_status da_eval_write(const char *dir, const da_eval_config *c, const da_eval_result *r,
                               const char *weights_dir, const char *unet_name);
/* The markdown table of table.md. */
DA_API void da_eval_table(FILE *f, const da_eval_result *r);

/* ------------------------------------------------------------------------ */
/* Alignment evaluation and its report (src/eval/report*.c): `dalign eval`  */
/* ------------------------------------------------------------------------ */

/* The alignment evaluation (`dalign eval`, docs/evaluation.md "dalign eval"):
 * sample K seeds of every prompt with a pipeline, then score each image with
 * EVERY reward (not only the one a run optimised), faithfulness per clause
 * type, the synthetic rater's utility (the held-back judge) and the
 * diversity of CLIP image embeddings across the seeds of a prompt. Output:
 * metrics.json (deterministic), grid.png, images.tsv and index.html.
 *
 *   for prompt p, seed k:  image = pipeline(prompt p, seed(p, k))   in chunks of `batch`
 *                          every reward, faithfulness clauses, rater utility, CLIP embedding
 *   per reward:   mean + 95% interval clustered by prompt (da_eval_cluster_mean)
 *   diversity:    per prompt the mean over seed pairs of 1 - cos(e_i, e_j), then mean + 95% interval
 *
 * Images are generated in the order (prompt, seed), `batch` per pipeline
 * call except the last, which takes what is left (P*K mod batch images when
 * that is not 0), as in eval-base (src/eval/eval.c). The chunks depend
 * only on P, K and batch: that makes the numbers repeat bit for bit and not
 * depend on the thread count. */

#define DA_REPORT_FORMAT "dalign-eval-1"
#define DA_EVAL_DONE "DONE"   /* completion marker of eval and eval-base output folders, written last */
#define DA_REPORT_N_REWARDS 7          /* the rewards of DA_REWARD_NAMES, in that order: */
enum { DA_REPORT_FAITHFUL, DA_REPORT_JPEG, DA_REPORT_JPEG_NEG, DA_REPORT_COLORFUL, DA_REPORT_CLIP, DA_REPORT_PREF,
       DA_REPORT_OUTLINE };
#define DA_REPORT_ALL_REWARDS ((1u << DA_REPORT_N_REWARDS) - 1)
#define DA_REPORT_SPLIT_PROMPTS 200    /* heldin / heldout prompts when n_prompts is 0 */
#define DA_REPORT_MAX_GRID 64          /* rows of grid.png at most */
#define DA_REPORT_GRID_SEEDS 16        /* columns of grid.png at most (the first seeds) */
#define DA_REPORT_GRID_SCALE 4         /* grid.png upscaling: 32 px tiles shown as 128 px */
#define DA_REPORT_PAGE_IMAGES 20000    /* images index.html shows at most (~2 KB each, inline) */
/* An image is in the outline style when its outline reward is >= this: not
 * DA_OUTLINE_THRESHOLD (0.5, for renders) but the threshold that best tells
 * shipped-VAE round trips of outline renders (score ~0.18) from those of
 * plain ones (~0.02), at accuracy 0.94 (tests/test_style.c): a generated
 * image comes out of that VAE too (docs/evaluation.md, "style_share"). */
#define DA_REPORT_STYLE_THRESHOLD 0.06f

typedef struct da_report_config {
    const char *prompts;      /* "heldin", "heldout" (da_eval_prompts) or a prompt file */
    int n_prompts;            /* 0: 200 for heldin / heldout, every prompt of a file;
                               * else exactly that many (the first ones of a file) */
    int n_seeds;              /* K images per prompt: 4 */
    int batch;                /* images per pipeline call: 8 (fixed: OpenBLAS bits depend on it) */
    int grid_prompts;         /* rows of grid.png: 8 (fewer when there are fewer prompts) */
    unsigned rewards;         /* bit i: reward i of da_report_reward_name; DA_REPORT_ALL_REWARDS */
    uint64_t prompt_seed;     /* DA_EVAL_PROMPT_SEED (heldin / heldout only) */
    uint64_t image_seed;      /* DA_EVAL_IMAGE_SEED: seed of image k of prompt p is
                               * da_eval_image_seed(image_seed, split, p, k), split
                               * DA_SPLIT_HELDOUT for heldout, DA_SPLIT_TRAIN otherwise */
    da_sample_opts opts;      /* da_sample_opts_default(): DDIM, 20 steps, cfg 3 */
    da_step_cb step_cb;       /* NULL, or called after every sampler step */
    void *step_user;
    const da_refiner *refiner;   /* NULL, or a PromptLoop refiner rewriting every prompt while
                                  * sampling (not with step_cb); the scores judge the image
                                  * against the query, never the written prompt */
    da_loop_opts loop;        /* da_loop_opts_default(); image i's writer seed is
                               * da_loop_refine_seed(its image seed) */
    const char *refiner_name; /* how metrics.json names the refiner (NULL: "refiner") */
    int progress;             /* 1: progress lines on stderr */
} da_report_config;

/* The models an evaluation reads: the pipeline, the CLIP image tower for the
 * diversity embeddings, and one scorer per selected reward. */
typedef struct da_report_models {
    da_pipeline *pipe;        /* owns its models */
    da_clip *clip;
    da_reward *reward[DA_REPORT_N_REWARDS];   /* NULL where not selected */
} da_report_models;

typedef struct da_report_result {
    int n_prompts, n_seeds;   /* P, K */
    da_split split;           /* the seeds' split (see image_seed) */
    char *prompts;            /* (P, DA_CAPTION_MAX) */
    int *n_objects;           /* (P) objects each prompt names */
    unsigned rewards;         /* the rewards scored */
    float *scores;            /* (DA_REPORT_N_REWARDS, P, K) every selected reward of every image */
    float *faith;             /* (P, K) faithfulness (da_faithfulness) */
    float *utility;           /* (P, K) the rater's noiseless utility (da_rater_utility, defaults) */
    int *n_detected;          /* (P, K) objects the detector found */
    int *n_type, *sat_type;   /* (P, DA_N_CLAUSE_TYPES) clause counts summed over the seeds */
    int embed_dim;            /* E */
    float *emb;               /* (P, K, E) CLIP image embeddings (not normalised) */
    double *diversity;        /* (P) per-prompt diversity; NULL when K = 1 */
    int grid_prompts, grid_seeds;
    float *grid;              /* (grid_prompts, grid_seeds, 3, 32, 32) */
    /* What index.html shows of each image of the first page_prompts
     * prompts (all of them unless P x page_seeds > DA_REPORT_PAGE_IMAGES)
     * and their first page_seeds seeds: its pixels and the clauses the
     * detector checked (da_faith), in the prompt's clause order. */
    int page_prompts, page_seeds;
    uint8_t *rgb;             /* (page_prompts, page_seeds, 32, 32, 3) 8-bit RGB */
    int *n_clauses;           /* (page_prompts, page_seeds) */
    da_clause *clauses;       /* (page_prompts, page_seeds, DA_MAX_CLAUSES) */
    da_eval_stat reward[DA_REPORT_N_REWARDS];
    da_eval_stat style_share; /* fraction of images with outline >= DA_REPORT_STYLE_THRESHOLD;
                               * n = 0 when the outline reward was not scored */
    da_eval_stat rater;
    da_eval_stat faith_all;   /* mean faithfulness over images */
    da_eval_stat exact;       /* fraction of images satisfying every clause */
    da_eval_stat extra;       /* fraction of images with more objects than the prompt names */
    da_eval_stat type[DA_N_CLAUSE_TYPES];   /* fraction of clauses of a type satisfied */
    da_eval_stat div;         /* mean per-prompt diversity (n = prompts); meaningless when K = 1 */
    double seconds;           /* wall time of da_report_run (never written to metrics.json) */
} da_report_result;

DA_API da_report_config da_report_config_default(void);
/* DA_ERR_INVALID naming the bad field */
DA_API da_status da_report_config_check(const da_report_config *c);
DA_API const char *da_report_reward_name(int i);   /* "faithful", ..., "outline"; NULL out of range */
DA_API const char *da_report_reward_unit(int i);   /* "fraction of clauses", "kB", ... */
/* "faithful,clip" -> the bits of those rewards. DA_ERR_INVALID (listing the
 * valid names) for an unknown or empty name. */
DA_API da_status da_report_parse_rewards(const char *list, unsigned *mask);

/* A prompt file: one prompt per line; blank lines and lines whose first
 * non-blank character is '#' are skipped; surrounding blanks are dropped.
 * Every prompt must tokenize (da_prompt_tokens) and parse (da_parse_prompt):
 * errors name FILE:LINE and the bad word. *texts: (*n, DA_CAPTION_MAX),
 * malloc'd. DA_ERR_IO for a missing file, DA_ERR_INVALID for no prompts. */
DA_API da_status da_report_read_prompts(const char *path, char **texts, int *n);

/* DIR/text_encoder, DIR/vae (+ DIR/scheduler.json) and the UNet: unet is
 * either a name in DIR ("unet", "unet-b": DIR/NAME.{json,safetensors}) or a
 * path ending in .safetensors whose config is the same path with .json
 * (da_weights_load_pipeline); DIR/clip for the embeddings and the selected
 * rewards. m is zeroed first; free it with da_report_models_free (also after
 * an error). */
DA_API da_status da_report_models_load(da_report_models *m, const char *weights_dir, const char *unet,
                                       unsigned rewards);
DA_API void da_report_models_free(da_report_models *m);

/* The prompts of c (checked) and the result's buffers. r is zeroed first;
 * free it with da_report_result_free (also after an error). */
DA_API da_status da_report_init(da_report_result *r, const da_report_config *c);
/* Generate, score and summarise (after da_report_init with the same c). */
DA_API da_status da_report_run(da_report_result *r, const da_report_models *m, const da_report_config *c);
DA_API void da_report_result_free(da_report_result *r);

/* CLIP image embeddings emb (n, E) of images (n, 3, 32, 32) in [0, 1] (read
 * as 2x - 1, the convention of the clip reward), in chunks of 32 images. */
DA_API da_status da_report_embed(const da_clip *clip, const float *images, int n, float *emb);
/* emb (K, E), K >= 2: the mean over the K(K-1)/2 pairs of 1 - cos(e_i, e_j),
 * in double, each row L2-normalised first (a zero row stays zero: cos 0). */
DA_API double da_report_diversity(const float *emb, int K, int E);

/* Into dir (created if missing), atomically: metrics.json, images.tsv,
 * images.png (every image index.html shows: row p = prompt p, column k = seed k),
 * grid.png and index.html (src/eval/report_write.c), then the completion
 * marker DA_EVAL_DONE, last: a folder without it is an unfinished (or
 * killed) run, whatever else it holds. The marker is removed first, so a
 * rerun into the same folder is unfinished until it is written again.
 * weights and unet are recorded as given; metrics.json also records
 * da_version() and the SHA-256 of every weights file the run read. */
DA_API da_status da_report_write(const char *dir, const da_report_config *c, const da_report_result *r,
                                 const char *weights, const char *unet);
/* The metrics table printed by the CLI (plain text). */
DA_API void da_report_table(FILE *f, const da_report_result *r);
/* index.html (src/eval/report_html.c): one self-contained page (images
 * inline as PNG data URIs): settings, metrics, charts with tooltips, and
 * every prompt's images, worst prompts first, each image captioned with the
 * clauses it failed. */
DA_API void da_report_html(FILE *f, const da_report_config *c, const da_report_result *r, const char *weights,
                           const char *unet);

/* ------------------------------------------------------------------------ */
/* Win-rate against a base model (src/eval/winrate.c): `dalign winrate`     */
/* ------------------------------------------------------------------------ */

/* Win-rate of a model against the base on the same prompt and seed, the
 * headline form of the preference-tuning papers (`dalign winrate`,
 * src/cli/winrate.c). Both runs of `dalign eval` wrote DIR/images.tsv with
 * one row per image; the rows must be the same images (prompt, k, seed) in
 * the same order, so each model image has its own base image to beat.
 *
 * Per image i:  win_i  = 1 if model_i > base_i, 1/2 if equal, else 0
 *               diff_i = model_i - base_i
 * and both means get a 95% interval clustered by prompt
 * (da_eval_cluster_mean), since the seeds of one prompt are not independent
 * draws: a prompt the model handles well wins on all its seeds. */

#define DA_WINRATE_MAX_BYTES (256u << 20)   /* an images.tsv is ~100 bytes an image */

typedef struct da_winrate {
    da_eval_stat win;    /* share of images the model wins (ties 1/2); n = images */
    da_eval_stat diff;   /* mean of model - base; n = images */
    int n_images, n_prompts;
} da_winrate;

/* The win-rate of the images.tsv at model_tsv against the one at base_tsv
 * on the column `column` (e.g. "rater", "pref", "faithful"). *out is zeroed
 * first. Errors, each naming the file and the row (line) at fault:
 * DA_ERR_IO a file cannot be read; DA_ERR_FORMAT no header, a missing
 * column, a row with the wrong number of fields, an index or seed that is
 * not an integer, a value that is not a finite number, no rows at all;
 * DA_ERR_INVALID the two files' rows are not the same images in the same
 * order (the first differing row is named). */
DA_API da_status da_winrate_compute(const char *base_tsv, const char *model_tsv, const char *column,
                                    da_winrate *out);

/* The result as a JSON object (metrics.json's number format, "%.9g"):
 * {"column", "base", "model", "win_rate": {"mean", "ci95", "n"},
 *  "diff": {...}, "images", "prompts"}. */
DA_API void da_winrate_json(FILE *f, const da_winrate *w, const char *column, const char *base,
                            const char *model);

/* ------------------------------------------------------------------------ */
/* Preference pairs (src/eval/pairs.c, pairs_io.c): `dalign pairs`          */
/* ------------------------------------------------------------------------ */

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
 *   style                     only in style pairs (src/eval/style_pairs.h):
 *                             the style of the preferred images ("outline");
 *                             absent from rater-labelled files, and read as ""
 *                             when absent, so older files load unchanged
 * Floats are written "%.9g" (every float reads back exactly).
 * Pair i's preferred image is prompts_w[i] sampled with seeds_w[i]; its
 * other image is prompts_l[i] with seeds_l[i]. */

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
    char style[16];                 /* style pairs: the winners' style (da_style_name); "" rater-labelled */
    float different_prompt_fraction;
    long candidates, ties_dropped;
    da_rater_config rater;
    char *text;                     /* storage of the prompts: 2n rows of DA_CAPTION_MAX bytes */
} da_pairs;

DA_API da_pairs_config da_pairs_config_default(void);
DA_API da_status da_pairs_config_check(const da_pairs_config *c);

/* The candidate stream: candidate k has images 2k (A) and 2k + 1 (B); the
 * image stream is generated in pipeline calls of exactly c->batch images
 * (call j makes images j*batch .. j*batch + batch - 1). Writes the first
 * n_images prompts (rows of DA_CAPTION_MAX bytes) and seeds. */
DA_API da_status da_pairs_plan(const da_pairs_config *c, long n_images, char *prompts, uint64_t *seeds);
/* seed of image k (0: A, 1: B) of candidate `cand` */
DA_API uint64_t da_pairs_image_seed(uint64_t seed, long cand, int k);

/* Sample, label and keep c->n non-tie pairs. out is zeroed first; free it
 * with da_pairs_free (also after an error). */
DA_API da_status da_pairs_generate(da_pipeline *p, const da_pairs_config *c, da_pairs *out);
/* Write the documented layout atomically. */
DA_API da_status da_pairs_save(const da_pairs *pr, const char *path);
/* Read and validate a pairs file; errors name the file and the problem.
 * out is zeroed first; free with da_pairs_free (also after an error). */
DA_API da_status da_pairs_load(const char *path, da_pairs *out);
DA_API void da_pairs_free(da_pairs *pr);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_EVAL_H */
