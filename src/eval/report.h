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
#ifndef DA_EVAL_REPORT_H
#define DA_EVAL_REPORT_H

#include <stdio.h>

#include "dalign.h"
#include "eval/eval.h"

#define DA_REPORT_FORMAT "dalign-eval-1"
#define DA_REPORT_N_REWARDS 6          /* the rewards of DA_REWARD_NAMES, in that order: */
enum { DA_REPORT_FAITHFUL, DA_REPORT_JPEG, DA_REPORT_JPEG_NEG, DA_REPORT_COLORFUL, DA_REPORT_CLIP, DA_REPORT_PREF };
#define DA_REPORT_ALL_REWARDS ((1u << DA_REPORT_N_REWARDS) - 1)
#define DA_REPORT_SPLIT_PROMPTS 200    /* heldin / heldout prompts when n_prompts is 0 */
#define DA_REPORT_MAX_GRID 64          /* rows of grid.png at most */
#define DA_REPORT_GRID_SEEDS 16        /* columns of grid.png at most (the first seeds) */
#define DA_REPORT_GRID_SCALE 4         /* grid.png upscaling: 32 px tiles shown as 128 px */

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
    da_step_cb step_cb;       /* NULL, or called after every sampler step (a prompt refiner) */
    void *step_user;
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
    da_eval_stat reward[DA_REPORT_N_REWARDS];
    da_eval_stat rater;
    da_eval_stat faith_all;   /* mean faithfulness over images */
    da_eval_stat exact;       /* fraction of images satisfying every clause */
    da_eval_stat extra;       /* fraction of images with more objects than the prompt names */
    da_eval_stat type[DA_N_CLAUSE_TYPES];   /* fraction of clauses of a type satisfied */
    da_eval_stat div;         /* mean per-prompt diversity (n = prompts); meaningless when K = 1 */
    double seconds;           /* wall time of da_report_run (never written to metrics.json) */
} da_report_result;

da_report_config da_report_config_default(void);
/* DA_ERR_INVALID naming the bad field */
da_status da_report_config_check(const da_report_config *c);
const char *da_report_reward_name(int i);   /* "faithful", ..., "pref"; NULL out of range */
const char *da_report_reward_unit(int i);   /* "fraction of clauses", "kB", ... */
/* "faithful,clip" -> the bits of those rewards. DA_ERR_INVALID (listing the
 * valid names) for an unknown or empty name. */
da_status da_report_parse_rewards(const char *list, unsigned *mask);

/* A prompt file: one prompt per line; blank lines and lines whose first
 * non-blank character is '#' are skipped; surrounding blanks are dropped.
 * Every prompt must tokenize (da_prompt_tokens) and parse (da_parse_prompt):
 * errors name FILE:LINE and the bad word. *texts: (*n, DA_CAPTION_MAX),
 * malloc'd. DA_ERR_IO for a missing file, DA_ERR_INVALID for no prompts. */
da_status da_report_read_prompts(const char *path, char **texts, int *n);

/* DIR/text_encoder, DIR/vae (+ DIR/scheduler.json) and the UNet: unet is
 * either a name in DIR ("unet", "unet-b": DIR/NAME.{json,safetensors}) or a
 * path ending in .safetensors whose config is the same path with .json
 * (da_weights_load_pipeline); DIR/clip for the embeddings and the selected
 * rewards. m is zeroed first; free it with da_report_models_free (also after
 * an error). */
da_status da_report_models_load(da_report_models *m, const char *weights_dir, const char *unet, unsigned rewards);
void da_report_models_free(da_report_models *m);

/* The prompts of c (checked) and the result's buffers. r is zeroed first;
 * free it with da_report_result_free (also after an error). */
da_status da_report_init(da_report_result *r, const da_report_config *c);
/* Generate, score and summarise (after da_report_init with the same c). */
da_status da_report_run(da_report_result *r, const da_report_models *m, const da_report_config *c);
void da_report_result_free(da_report_result *r);

/* CLIP image embeddings emb (n, E) of images (n, 3, 32, 32) in [0, 1] (read
 * as 2x - 1, the convention of the clip reward), in chunks of 32 images. */
da_status da_report_embed(const da_clip *clip, const float *images, int n, float *emb);
/* emb (K, E), K >= 2: the mean over the K(K-1)/2 pairs of 1 - cos(e_i, e_j),
 * in double, each row L2-normalised first (a zero row stays zero: cos 0). */
double da_report_diversity(const float *emb, int K, int E);

/* Into dir (created if missing), atomically: metrics.json, images.tsv,
 * grid.png and index.html (src/eval/report_write.c). weights and unet are
 * recorded as given. */
da_status da_report_write(const char *dir, const da_report_config *c, const da_report_result *r,
                          const char *weights, const char *unet);
/* The metrics table printed by the CLI (plain text). */
void da_report_table(FILE *f, const da_report_result *r);
/* index.html (src/eval/report_html.c): self-contained but for grid.png. */
void da_report_html(FILE *f, const da_report_config *c, const da_report_result *r, const char *weights,
                    const char *unet);

#endif
