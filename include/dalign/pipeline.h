/* dalign/pipeline.h: the pipeline layer (src/pipeline), the first that
 * joins the layers below it: prompt -> tokens -> text encoder -> sampler
 * loop over the UNet -> VAE decoder -> image; the weights directory and its
 * loaders; PNG output. */
#ifndef DALIGN_PIPELINE_H
#define DALIGN_PIPELINE_H

#include "dalign/data.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Pipeline (src/pipeline): text -> latent -> image, PNG output             */
/* ------------------------------------------------------------------------ */

/* docs/pipeline.md has the long form: the flow, the callback contract, the
 * weights directory and the seeds. */

/* The unconditional prompt: CFG's eps_u conditions on it (unless a negative
 * prompt is given), and the UNet trainer drops captions to it. It tokenizes
 * to BOS EOS. */
#define DA_UNCOND_PROMPT ""

/* The noise process the UNet was trained with plus the inference spacing:
 * DIR/scheduler.json (diffusers' key names; optional, absent keys keep the
 * defaults, unknown keys are errors). */
typedef struct da_noise_config {
    int n_train;                    /* num_train_timesteps: 1000 */
    da_beta_schedule beta_schedule; /* "linear" */
    float beta_start, beta_end;     /* 1e-4, 0.02 */
    da_prediction prediction;       /* prediction_type: "epsilon" */
    da_spacing spacing;             /* timestep_spacing: "leading" (DDIM, DDPM; Euler is linspace) */
    int steps_offset;               /* 0 */
    int clip_sample;                /* false: latents are not bounded to [-1, 1] */
    float clip_sample_range;        /* 1 */
    int set_alpha_to_one;           /* true (DDIM) */
} da_noise_config;
DA_API da_noise_config da_noise_config_default(void);
DA_API da_status da_noise_config_load(da_noise_config *cfg, const char *path);
DA_API da_status da_noise_config_save(const da_noise_config *cfg, const char *path);  /* atomic */

typedef enum { DA_SAMPLER_DDIM = 0, DA_SAMPLER_DDPM = 1, DA_SAMPLER_EULER = 2 } da_sampler_kind;
DA_API da_status da_sampler_parse(const char *name, da_sampler_kind *out);  /* "ddim" | "ddpm" | "euler" */
DA_API const char *da_sampler_name(da_sampler_kind kind);

typedef struct da_sample_opts {
    da_sampler_kind sampler;   /* ddim */
    int steps;                 /* 20; 1..n_train */
    float cfg;                 /* guidance weight w (3); 1 = conditional only, no uncond pass */
    float eta;                 /* DDIM eta (0); must be 0 for the other samplers */
} da_sample_opts;
DA_API da_sample_opts da_sample_opts_default(void);

/* What the per-step callback sees after step `step` and may change.
 * Latents are (batch, channels, height, width) in diffusion space. */
typedef struct da_step_info {
    int step, n_steps;         /* step in [0, n_steps), increasing */
    float timestep;            /* the UNet's t input at this step */
    int batch, channels, height, width;
    const float *x;            /* latent entering the step (x_t) */
    const float *x_prev;       /* latent after the step (x_{t-1}) */
    const float *x0;           /* the step's predicted clean latent */
    const int *ids;            /* (batch, DA_MAX_TOKENS) ids conditioning this step */
    /* Set by the callback to condition the FOLLOWING steps differently
     * (both NULL, as on entry: keep). new_prompts: batch texts, a NULL entry
     * keeps its row; new_ids: (batch, DA_MAX_TOKENS) ids, BOS .. EOS then
     * PAD. Only one of the two. The pipeline copies them as soon as the
     * callback returns, so that memory need only live until then. */
    const char *const *new_prompts;
    const int *new_ids;
} da_step_info;
/* Return 0 to go on, non-zero to stop after this step. */
typedef int (*da_step_cb)(da_step_info *info, void *user);

typedef struct da_pipeline {
    da_text_encoder *text;
    da_vae *vae;
    da_unet *unet;
    da_noise_config noise;
    da_schedule sched;
    da_tape tape;              /* one tape, reset per model call, gradients off */
    da_tape *worker_tapes;     /* (n_worker_tapes) more: one per piece of a batch beyond the first */
    int n_worker_tapes;
    int owns_models;           /* 1: loaded from a directory, freed with the pipeline */
    int latent_h, latent_w;    /* DA_IMG / 4 */
    int steps_done;            /* steps the last generate ran (< steps when stopped) */
} da_pipeline;

/* The weights directory: override when not NULL (--weights), else
 * $DALIGN_WEIGHTS when set and non-empty, else "weights" when the current
 * directory has one (a clone), else the directory `make install` filled,
 * $(PREFIX)/share/dalign/weights (compiled in as DA_WEIGHTS_DIR). */
DA_API const char *da_weights_dir(const char *override);
/* Load DIR/text_encoder, DIR/vae and DIR/<unet_name> (NULL: "unet"), each a
 * .json config and a .safetensors file, plus DIR/scheduler.json when present.
 * Frozen (no gradients). Errors name the file. */
DA_API da_status da_pipeline_load(da_pipeline **out, const char *dir, const char *unet_name);
/* A pipeline over models the caller owns (they must outlive it); noise NULL
 * means da_noise_config_default(). Checks that the models fit together. */
DA_API da_status da_pipeline_create(da_pipeline **out, da_text_encoder *text, da_vae *vae, da_unet *unet,
                                    const da_noise_config *noise);
DA_API void da_pipeline_free(da_pipeline *p);

/* da_tokenize that refuses what the model cannot read: unknown words
 * (DA_ERR_INVALID naming them) and prompts past DA_MAX_TOKENS. */
DA_API da_status da_prompt_tokens(const char *text, int *ids, uint8_t *keep);
/* x_T for one image: torch.manual_seed(seed); torch.randn(n) (unscaled) */
DA_API void da_initial_latent(uint64_t seed, float *x, size_t n);

/* Generate n images. Image i uses prompts[i] and its own generator seeded
 * with seeds[i] (x_T, then the DDPM / DDIM-eta noise of its steps). negative
 * (NULL: DA_UNCOND_PROMPT) is the uncond side of CFG. cb may be NULL.
 * out_images (n, 3, DA_IMG, DA_IMG) in [0, 1] and out_latents (n, C, h, w),
 * the final diffusion latent, may each be NULL. When the callback stops the
 * run before its last step, the outputs come from that step's predicted x0. */
DA_API da_status da_pipeline_generate(da_pipeline *p, const da_sample_opts *opts, const char *const *prompts,
                                      const char *negative, const uint64_t *seeds, int n, da_step_cb cb,
                                      void *user, float *out_images, float *out_latents);
/* The same from token ids: ids (n, DA_MAX_TOKENS), each row BOS, vocabulary
 * words, EOS, then PAD (what a prompt refiner writes; da_prompt_tokens
 * gives them for a text). da_pipeline_generate is this after tokenizing. */
DA_API da_status da_pipeline_generate_ids(da_pipeline *p, const da_sample_opts *opts, const int *ids,
                                          const char *negative, const uint64_t *seeds, int n, da_step_cb cb,
                                          void *user, float *out_images, float *out_latents);
/* t (opts->steps): the UNet's timestep input at every step of the sampler */
DA_API da_status da_sampler_timesteps(const da_pipeline *p, const da_sample_opts *opts, float *t);
/* latents (n, C, h, w) in diffusion space -> images (n, 3, 4h, 4w) in [0, 1]:
 * VAE decode of latents / scale_factor, then (x + 1) / 2 clamped */
DA_API da_status da_pipeline_decode(da_pipeline *p, const float *latents, int n, float *out_images);

/* ------------------------------------------------------------------------ */
/* PromptLoop's sampling loop (src/pipeline/promptloop.c, docs/promptloop.md) */
/* ------------------------------------------------------------------------ */

/* loop: refinement k after step floor(k * steps / K) reads that step's x̂0;
 * apriori: the same steps, all prompts written before sampling from the
 * query alone (zero latent); once: one prompt before step 0, no latent
 * (the feed-forward, RePrompt-style baseline) */
typedef enum { DA_REFINE_LOOP = 0, DA_REFINE_APRIORI = 1, DA_REFINE_ONCE = 2 } da_refine_mode;
DA_API da_status da_refine_mode_parse(const char *name, da_refine_mode *out);   /* "loop" | "apriori" | "once" */
DA_API const char *da_refine_mode_name(da_refine_mode m);                       /* NULL out of range */

typedef struct da_loop_opts {
    da_refine_mode mode;   /* loop */
    int n_refine;          /* K (4), 1 .. steps; once: always 1 */
    float temperature;     /* the writer's sampling temperature: 0 greedy (default), 1 for RL rollouts */
    int keep_meaning;      /* 0 (default): every rewrite is used. 1: a rewrite that does not parse to
                            * the query's meaning (da_spec_same_meaning) is discarded and the image keeps
                            * the prompt in use (the trace's used_ids); the written tokens stay in out_ids,
                            * so the RL trainer can learn from a run with the guard (the guard is then part
                            * of the environment: docs/promptloop.md) */
    int window_first;      /* loop and apriori: the K refinements are spread over the sampler steps */
    int window_end;        /* [window_first, window_end), s_k = first + floor(k (end - first) / K);
                            * window_end 0: the trajectory's end (so 0, 0, the default: [0, steps)).
                            * once ignores neither: a window there is refused (da_loop_opts_check) */
} da_loop_opts;
DA_API da_loop_opts da_loop_opts_default(void);
DA_API int da_loop_n_refine(const da_loop_opts *lo);                   /* K, or 1 for once */
/* the sampler step after which refinement k writes (once: -1, before step 0) */
DA_API int da_loop_refine_step(const da_loop_opts *lo, int k, int n_steps);
/* lo fits a trajectory of n_steps: a known mode, 1 <= K <= the window's
 * steps, 0 <= first < end <= n_steps (once: no window), temperature >= 0 */
DA_API da_status da_loop_opts_check(const da_loop_opts *lo, int n_steps);
/* "FIRST:END" (--refine-window, the refine_window of a refiner's file) into
 * *first, *end: decimal digits only, FIRST < END; DA_ERR_INVALID otherwise */
DA_API da_status da_loop_window_parse(const char *text, int *first, int *end);
/* "after steps 0, 5, 10, 15" (counted from 0) or "before step 0" (once), for
 * logs; cut short with "..." past cap */
DA_API void da_loop_steps_text(const da_loop_opts *lo, int n_steps, char *buf, size_t cap);

/* The writer seed of an image whose noise seed is `seed`, for callers with
 * no other (sample, eval): a splitmix64 step, so that the two generators
 * never run the same stream. */
DA_API uint64_t da_loop_refine_seed(uint64_t seed);

/* What a run did, row i * K + k for image i and refinement k: the writer's
 * inputs and output, enough to recompute its log-probs by teacher forcing
 * (the RL trainer) and to show the trajectory (sample -v). */
typedef struct da_loop_trace {
    int n, K, latent_n;
    int *steps;                /* (K) da_loop_refine_step of each refinement */
    float *x0;                 /* (n*K, latent_n) observed x̂0 (zeros when the mode observes none) */
    float *timesteps;          /* (n*K) */
    int *query_ids;            /* (n, DA_MAX_TOKENS) */
    uint8_t *query_keep;
    int *prompt_ids;           /* (n*K, DA_MAX_TOKENS) the prompt in use when the refinement ran */
    uint8_t *prompt_keep;
    int *out_ids;              /* (n*K, DA_MAX_TOKENS) the prompt written: BOS .. EOS PAD.. */
    float *logprobs;           /* (n*K) the writer's log-prob of out_ids */
    int *used_ids;             /* (n*K, DA_MAX_TOKENS) the prompt the image used from then on: out_ids,
                                * or with keep_meaning the prompt in use when out_ids was discarded */
} da_loop_trace;
DA_API da_status da_loop_trace_alloc(da_loop_trace *tr, int n, int K, int latent_n);
DA_API void da_loop_trace_free(da_loop_trace *tr);

/* A prompt writer: one image's next prompt (out_ids, DA_MAX_TOKENS) from its
 * observation x0 (latent_n values), the step's timestep, the query and the
 * prompt in use (ids and keep, DA_MAX_TOKENS each); draws only from rng;
 * adds nothing to *logprob but sets it. da_loop_refiner_writer (user = a
 * da_refiner) is the refiner's; tests and ablations supply their own. */
typedef da_status (*da_loop_writer)(void *user, const float *x0, float timestep, const int *query_ids,
                                    const uint8_t *query_keep, const int *prompt_ids, const uint8_t *prompt_keep,
                                    float temperature, da_rng *rng, int *out_ids, float *logprob);
DA_API da_status da_loop_refiner_writer(void *user, const float *x0, float timestep, const int *query_ids,
                                        const uint8_t *query_keep, const int *prompt_ids,
                                        const uint8_t *prompt_keep, float temperature, da_rng *rng,
                                        int *out_ids, float *logprob);

/* Generate n images with the refiner rewriting the prompt (uncond side: the
 * empty prompt). queries[i]: the user's text; seeds[i]: the image's noise
 * (as da_pipeline_generate); refine_seeds[i]: the writer's generator for
 * image i, independent of the noise. trace (may be NULL) is allocated here
 * (da_loop_trace_free it). Errors: a refiner whose vocabulary or latent
 * does not match, K outside 1 .. steps, unknown words in a query. */
DA_API da_status da_loop_generate(da_pipeline *p, const da_refiner *refiner, const da_sample_opts *opts,
                                  const da_loop_opts *lo, const char *const *queries, const uint64_t *seeds,
                                  const uint64_t *refine_seeds, int n, da_loop_trace *trace, float *out_images,
                                  float *out_latents);
/* the same with any writer */
DA_API da_status da_loop_generate_with(da_pipeline *p, const da_sample_opts *opts, const da_loop_opts *lo,
                                       da_loop_writer write, void *writer_user, const char *const *queries,
                                       const uint64_t *seeds, const uint64_t *refine_seeds, int n,
                                       da_loop_trace *trace, float *out_images, float *out_latents);

/* Images as 8-bit RGB, interleaved (H, W, 3) (src/pipeline/image.c). */
/* Size of a grid of n tiles (h, w) in cols columns with gap pixels between tiles */
DA_API void da_grid_size(int n, int cols, int h, int w, int gap, int *out_h, int *out_w);
/* tiles (n, h, w, 3) -> out (out_h, out_w, 3) row by row; gaps and empty cells get fill */
DA_API void da_rgb8_grid(uint8_t *out, const uint8_t *tiles, int n, int cols, int h, int w, int gap,
                         const uint8_t fill[3]);
/* in (h, w, 3) -> out (s*h, s*w, 3), nearest neighbour */
DA_API void da_rgb8_upscale(uint8_t *out, const uint8_t *in, int h, int w, int s);
/* the largest side, in pixels, of a PNG the writer accepts */
#define DA_PNG_MAX_SIDE 32768
/* PNG through stb_image_write, atomically (temp file, fsync, rename);
 * DA_ERR_INVALID for a side above DA_PNG_MAX_SIDE */
DA_API da_status da_png_write(const char *path, const uint8_t *rgb, int h, int w);
/* images (n, 3, DA_IMG, DA_IMG) in [0, 1] -> one PNG: a grid of cols columns
 * (cols <= 0: ceil(sqrt(n))) with a 1-pixel gap, upscaled scale times */
DA_API da_status da_png_save_images(const char *path, const float *images, int n, int cols, int scale);


/* More loaders from a weights directory (src/pipeline/weights.c, the one
 * loader of models behind da_pipeline_load). Every error names its file:
 * "<what> FILE: <why>" for a file that cannot be read, "FILE: <why>" for
 * anything else (weights.c says how). */
/* da_pipeline_load with the UNet named either way: a NAME in dir
 * (DIR/NAME.{json,safetensors}; NULL: "unet") or a path ending in
 * .safetensors whose config is the same path with .json (both checked
 * before anything loads). The pipeline owns its models. */
DA_API da_status da_weights_load_pipeline(da_pipeline **out, const char *dir, const char *unet);

/* DIR/clip.{json,safetensors}: a CLIP whose image tower reads the
 * pipeline's images (DA_IMG x DA_IMG RGB; any other config is refused
 * before its weights load). *out is NULL after an error. */
DA_API da_status da_weights_load_clip(da_clip **out, const char *dir);

/* A PromptLoop refiner: NAME in dir (DIR/NAME.{json,safetensors}) or a path
 * ending in .safetensors with its .json beside it; one whose vocabulary is
 * not the tokenizer's is refused, naming the file. *out is NULL on error. */
DA_API da_status da_weights_load_refiner(da_refiner **out, const char *dir, const char *name);

/* The world the refiner NAME (as for da_weights_load_refiner) was trained
 * in: *keep_meaning = 1 when it was trained with the guard
 * (da_loop_opts.keep_meaning; its file's metadata says so), else 0. Its
 * rewrites are evaluated as trained with da_loop_opts.keep_meaning set
 * to this (what dalign sample and eval do unless told otherwise). */
DA_API da_status da_weights_refiner_keep_meaning(const char *dir, const char *name, int *keep_meaning);
/* ... and the steps its refinements were spread over: *first, *end as
 * da_loop_opts.window_first, window_end (0, 0 when its file does not say:
 * a supervised refiner, or one trained before the window existed) */
DA_API da_status da_weights_refiner_window(const char *dir, const char *name, int *first, int *end);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_PIPELINE_H */
