/* dalign/train.h: the train layer (src/train), the top of the library: the
 * training harness every trainer shares, pretraining of the CLIP towers,
 * the VAE and the UNet, the preference model's training, and preference
 * fine-tuning of the UNet (Diffusion-DPO, SFT, Diffusion-RPO,
 * Diffusion-KTO). */
#ifndef DALIGN_TRAIN_H
#define DALIGN_TRAIN_H

#include "dalign/eval.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Training harness (src/train)                                             */
/* The loop every trainer shares: accumulation, clipping, LR schedule,      */
/* AdamW, EMA, JSONL metrics, progress bar, atomic checkpoints, bit-exact   */
/* resume, SIGINT/SIGTERM. docs/training.md has the long form.              */
/* ------------------------------------------------------------------------ */

/* (The progress bar and the JSONL metrics log it draws and writes are in
 * dalign/core.h.) */

/* Trainer configuration. da_trainer_defaults() fills every field; a trainer
 * overrides what it needs. Every field from total_steps to seed is stored
 * in checkpoints and must match on resume (else the run would not continue
 * bit-identically). Strings are copied by da_trainer_create. */
typedef struct da_trainer_config {
    const char *name;          /* "unet": progress label, checkpoint metadata */
    long total_steps;          /* optimizer steps of the whole run (LR schedule) */
    int batch;                 /* examples per optimizer step */
    int micro_batches;         /* accumulation: step_fn runs this many times per
                                * step, on batch / micro_batches examples each */
    float lr, min_lr;          /* base LR; the cosine schedule ends at min_lr */
    long warmup;               /* linear warmup steps */
    da_lr_kind schedule;
    float beta1, beta2, eps, weight_decay;  /* AdamW */
    float clip;                /* max global gradient norm; 0: no clipping */
    float ema_decay;           /* EMA of the weights; 0: no EMA buffer */
    uint64_t seed;             /* data_rng gets seed, noise_rng seed ^ 0x9e3779b9 */
    /* not part of the stored config: */
    long stop_at;              /* 0: run to total_steps; else stop after this step */
    const char *ckpt_path;     /* NULL: no checkpoints */
    long ckpt_every;           /* also every N steps (0: only at the end / on a signal) */
    const char *metrics_path;  /* NULL: no JSONL log */
    long log_every;            /* a metrics line every N steps (and at the last) */
    int progress;              /* 1: progress bar and messages on stderr */
    long progress_every;       /* non-TTY progress line period (0: total/10) */
    int handle_signals;        /* 1: SIGINT/SIGTERM end the run with a checkpoint
                                * (a signal ignored at start stays ignored) */
} da_trainer_config;

DA_API da_trainer_config da_trainer_defaults(void);

#define DA_TRAINER_MAX_METRICS 16
#define DA_TRAINER_MAX_STATE 16

typedef struct da_trainer da_trainer;
/* One micro-batch: build the forward on `tape` (already reset), call
 * da_tape_backward, and set *loss to the micro-batch's MEAN loss. Draw all
 * randomness from tr->data_rng / tr->noise_rng and keep no state across
 * steps outside the trainer: that is what makes resume bit-exact. The
 * harness zeroes gradients before micro 0 and scales their sum by
 * 1/micro_batches afterwards. Extra metrics: da_trainer_metric(). */
typedef da_status (*da_step_fn)(da_trainer *tr, da_tape *tape, int micro, void *user, float *loss);

struct da_trainer {
    da_trainer_config cfg;   /* a copy; its strings are owned by the trainer */
    da_params *params;       /* the model (not owned); must have gradients */
    float *m, *v;            /* AdamW moments, same layout as params->data */
    float *ema;              /* EMA weights (same layout) or NULL */
    long step;               /* optimizer steps completed */
    int micro_size;          /* batch / micro_batches */
    da_rng data_rng, noise_rng;
    da_tape tape;
    float lr, loss;          /* LR and mean loss of the last step */
    double grad_norm;        /* global gradient norm of the last step, before clipping */
    double elapsed_s;        /* training wall time, summed over resumed sessions */
    int resumed;             /* state came from da_trainer_resume */
    int stop_signal;         /* signal that ended da_trainer_run, or 0 */
    int n_metrics;           /* extra metrics of the current step (mean over micro-batches) */
    char metric_name[DA_TRAINER_MAX_METRICS][32];
    double metric_sum[DA_TRAINER_MAX_METRICS];
    int metric_count[DA_TRAINER_MAX_METRICS];
    int n_state;             /* da_trainer_add_state buffers */
    struct { char name[48]; float *data; size_t n; } state[DA_TRAINER_MAX_STATE];
};

/* State a trainer keeps across steps (an RL trainer's rollout buffer): n
 * floats at data (owned by the caller, alive as long as the trainer) saved
 * in every checkpoint as "state.NAME" and restored by da_trainer_resume, so
 * a run stopped between two steps of one batch of rollouts resumes bit for
 * bit. Register before resuming; at most DA_TRAINER_MAX_STATE. */
DA_API da_status da_trainer_add_state(da_trainer *tr, const char *name, float *data, size_t n);
/* Validates cfg; params must be allocated with gradients and initialised
 * (the EMA starts as a copy). */
DA_API da_status da_trainer_create(da_trainer **out, const da_trainer_config *cfg, da_params *params);
/* Load a checkpoint written by this trainer's config and model: params, m,
 * v, EMA, step, RNGs. Refused (trainer untouched) when the model's tensors
 * or the stored config differ; the message names the field or tensor. */
DA_API da_status da_trainer_resume(da_trainer *tr, const char *path);
/* Run from tr->step to cfg.total_steps (or cfg.stop_at). Returns DA_OK when
 * the loop ended, also when a signal ended it (tr->stop_signal says so, a
 * checkpoint was saved); an error otherwise (a failed step, a non-finite
 * loss: no checkpoint is written, the last one stays valid). */
DA_API da_status da_trainer_run(da_trainer *tr, da_step_fn fn, void *user);
/* Exit code for the CLI: 0, 1 on error, 128 + signal (130 SIGINT, 143 SIGTERM). */
DA_API int da_trainer_exit_code(const da_trainer *tr, da_status status);
/* Record a named value for this step's metrics line (called from step_fn). */
DA_API void da_trainer_metric(da_trainer *tr, const char *name, double value);
/* Atomic checkpoint: "param.X", "adam_m.X", "adam_v.X", "ema.X" for every
 * parameter X, with step, RNG states and config in the metadata. */
DA_API da_status da_trainer_save(const da_trainer *tr, const char *path);
/* The weights alone under their plain names (the EMA when use_ema and kept). */
DA_API da_status da_trainer_save_weights(const da_trainer *tr, const char *path, int use_ema,
                                         const da_st_meta *meta, int n_meta);
DA_API void da_trainer_free(da_trainer *tr);

/* ------------------------------------------------------------------------ */
/* Pretraining (src/train/pretrain*.c): `dalign train clip|vae|unet`.       */
/* Train-split shapes-world data generated on the fly from the trainer's    */
/* RNGs; docs/training.md "Pretraining" has the long form.                  */
/* ------------------------------------------------------------------------ */

typedef enum { DA_PRETRAIN_CLIP = 0, DA_PRETRAIN_VAE = 1, DA_PRETRAIN_UNET = 2 } da_pretrain_model;

typedef struct da_pretrain_opts {
    da_pretrain_model model;
    const char *out_dir;       /* final weights + JSON configs go here ("weights") */
    const char *name;          /* unet: file basename ("unet", "unet-b"); clip writes
                                * text_encoder.* and clip.*, vae writes vae.* */
    const char *weights_dir;   /* unet: frozen text_encoder.* and vae.* (NULL: out_dir) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    da_text_config text;       /* clip: the two towers */
    da_clip_config clip;
    da_vae_config vae;         /* vae: architecture and kl_weight */
    da_unet_config unet;       /* unet: architecture; in/out channels and context_dim
                                * are taken from the frozen VAE and text encoder */
    int dedupe;                /* clip: re-draw an example whose caption fits another
                                * image of the batch (InfoNCE false negatives) */
    int cache_size;            /* unet: train images encoded once at the start */
    float cond_dropout;        /* unet: fraction of empty prompts (CFG) */
    float min_snr_gamma;       /* unet: > 0 weights each sample's eps MSE by
                                * min(SNR_t, gamma) / SNR_t (Min-SNR, Hang et al.
                                * 2023; default 5); 0: the plain mean */
    int scale_images;          /* vae: images for the latent scale factor */
    int eval_images;           /* vae: held-out images for the final PSNR */
} da_pretrain_opts;

typedef struct da_pretrain_result {
    long steps;                /* optimizer steps completed */
    float loss;                /* loss of the last step */
    float psnr;                /* vae: held-out PSNR (dB) of the final weights */
    float scale_factor;        /* vae: 1 / std of the encoder means */
    int stop_signal;           /* the signal that stopped the run, or 0 */
    int exit_code;             /* da_trainer_exit_code: 0, 1, 130, 143 */
} da_pretrain_result;

/* Defaults of `dalign train MODEL` ("clip", "vae", "unet"): trainer config
 * (steps, batch, LR schedule, EMA, ...) and options. DA_ERR_INVALID names
 * an unknown model. */
DA_API da_status da_pretrain_defaults(const char *model, da_trainer_config *tc, da_pretrain_opts *o);
/* Train o->model (resuming from o->resume when set), then write its weights
 * (the EMA when kept) and JSON configs into o->out_dir. A run stopped early
 * (a signal, tc->stop_at) writes only its checkpoint. res may be NULL. */
DA_API da_status da_pretrain_run(const da_trainer_config *tc, const da_pretrain_opts *o,
                                 da_pretrain_result *res);
DA_API da_status da_pretrain_clip(const da_trainer_config *tc, const da_pretrain_opts *o,
                                  da_pretrain_result *res);
DA_API da_status da_pretrain_vae(const da_trainer_config *tc, const da_pretrain_opts *o,
                                 da_pretrain_result *res);
DA_API da_status da_pretrain_unet(const da_trainer_config *tc, const da_pretrain_opts *o,
                                  da_pretrain_result *res);

/* ------------------------------------------------------------------------ */
/* The preference model's training (src/train/reward_train.c)               */
/* ------------------------------------------------------------------------ */

/* Training on rater-labelled synthetic pairs (da_synth_pair, ties dropped),
 * drawn fresh each step, with AdamW on the shared trainer (checkpoints,
 * bit-exact resume, signals); validation on fixed pairs of another seed.
 * (src/train/reward_train.c) */
typedef struct da_reward_train_config {
    int steps;            /* optimizer steps: 8000 (0: validation only) */
    int batch;            /* pairs per step: 32 */
    float lr, min_lr;     /* cosine from lr to min_lr after warmup: 1e-3, 1e-5 */
    int warmup;           /* 100 */
    float weight_decay;   /* 0.01 */
    int val_pairs;        /* labelled pairs per validation set: 1000 */
    uint64_t seed;        /* training data, noise, init */
    int log_every;        /* progress on stderr, a line every N steps; 0: quiet */
    da_rater_config rater;
    /* the run, as in da_trainer_config (none of it changes the bits; the
     * rater config is not in the checkpoint: resume with the same one): */
    const char *ckpt_path;     /* NULL: no checkpoints */
    long ckpt_every;           /* also every N steps (0: only at the end / on a signal) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    const char *metrics_path;  /* JSONL log, a line every log_every steps (every step when 0) */
    long stop_at;              /* 0: run all steps; else stop after this step */
    int handle_signals;        /* 1: SIGINT/SIGTERM stop the run with a checkpoint */
} da_reward_train_config;
typedef struct da_reward_train_report {
    float loss_first, loss_last;   /* mean BT loss over the first / last 10% of steps
                                      (NaN when some of them ran before a resume) */
    int n_val;                     /* non-tie pairs in each validation set */
    float acc, rater_acc;          /* train-split validation pairs: reward net and the
                                      noiseless rater against the rater's noisy labels */
    float heldout_acc, heldout_rater_acc;  /* the same on held-out-split scenes */
    int stop_signal;               /* the signal that stopped the run, or 0 */
    long steps_done;               /* optimizer steps completed; a run stopped before
                                      `steps` (signal, stop_at) is not validated */
} da_reward_train_report;
DA_API da_reward_train_config da_reward_train_defaults(void);
/* m trainable and initialised; rep may be NULL */
DA_API da_status da_reward_net_train(da_reward_net *m, const da_reward_train_config *cfg,
                                     da_reward_train_report *rep);
/* Pair accuracy of m on (img_w[i], img_l[i], prompts[i]) pairs where img_w
 * is the rater's choice: the fraction with r(w) > r(l). */
DA_API da_status da_reward_net_pair_accuracy(const da_reward_net *m, const float *img_w, const float *img_l,
                                             const char *const *prompts, int n, float *acc);


/* ------------------------------------------------------------------------ */
/* Preference fine-tuning of the UNet on labelled pairs (`dalign train      */
/* dpo|sft|rpo|kto`): Diffusion-DPO, SFT on the preferred images,           */
/* Diffusion-RPO and Diffusion-KTO. docs/alignment-preference.md maps       */
/* every equation to its function in src/train/pref.c and pref_loss.c       */
/* (the loss kernels: src/train/pref.h, internal).                          */
/* ------------------------------------------------------------------------ */

/* the method: its loss kernel and its defaults */
typedef enum { DA_PREF_DPO = 0, DA_PREF_SFT, DA_PREF_RPO, DA_PREF_KTO } da_pref_method;

/* ------------------------------------------------------------------------ */
/* The trainer (src/train/pref.c)                                           */
/* ------------------------------------------------------------------------ */
/* what RPO's similarity e is made of: the CLIP text embedding of the
 * image's prompt, the CLIP image embedding of the image, or the
 * normalised mean of the two (default; docs/alignment-preference.md says why) */
typedef enum { DA_RPO_EMBED_BOTH = 0, DA_RPO_EMBED_TEXT, DA_RPO_EMBED_IMAGE } da_rpo_embed;

#define DA_PREF_MAX_FILES 16

typedef struct da_pref_opts {
    da_pref_method method;
    const char *pairs[DA_PREF_MAX_FILES];  /* pairs files (dalign pairs), concatenated */
    int n_pairs;
    const char *weights_dir;   /* frozen text encoder, VAE, CLIP; the init UNet (NULL: da_weights_dir) */
    const char *init;          /* the UNet to start from and the frozen reference: "unet" */
    const char *out_dir;       /* where NAME.{json,safetensors} go (NULL: weights_dir) */
    const char *name;          /* output basename, e.g. "unet-dpo" (required) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    int force;                 /* 1: replace existing NAME.* and an existing checkpoint */
    float beta;                /* DPO, RPO, KTO: the KL strength (default 2000) */
    float tau;                 /* RPO: similarity temperature (default 0.5) */
    int weight_outside;        /* RPO: w_ij multiplies -log sigmoid, not the logit */
    da_rpo_embed embed;        /* RPO: the similarity's embedding */
    float empty_prompt;        /* share of pairs trained on the empty prompt (0.2) */
    const char *val_pairs;     /* held-back pairs: implicit accuracy at the end, OUT/NAME.val.json */
    int val_draws;             /* (t, eps) draws per validation pair (4) */
    int swap_labels;           /* a control: train on every pair with winner and loser
                                  exchanged (the validation pairs keep their labels) */
} da_pref_opts;

/* The implicit preference of the tuned UNet on held-back pairs, for any
 * method: with d = m - r (policy minus reference MSE), a pair is ranked
 * right when d_w < d_l, i.e. when the fine-tuning improved the winner more
 * than the loser; K draws of (t, eps) per pair, fixed by the pair's index. */
typedef struct da_pref_val {
    int pairs, draws;
    float acc;                 /* share of (pair, draw) with d_w < d_l */
    float margin;              /* mean of -(d_w - d_l) / 2 (DPO's margin / beta) */
    float dpo_loss;            /* mean -log sigmoid(beta * margin) at the run's beta */
    float mse_w, mse_l, ref_mse_w, ref_mse_l;
} da_pref_val;

typedef struct da_pref_result {
    long steps;
    float loss;
    int stop_signal;
    int exit_code;             /* da_trainer_exit_code: 0, 1, 130, 143 */
    int n_pairs;               /* pairs read */
    int validated;             /* 1: val holds the validation (val_pairs given) */
    da_pref_val val;
} da_pref_result;

/* "dpo" | "sft" | "rpo" | "kto" */
DA_API da_status da_pref_method_parse(const char *name, da_pref_method *out);
DA_API const char *da_pref_method_name(da_pref_method m);
DA_API da_status da_rpo_embed_parse(const char *name, da_rpo_embed *out);
DA_API const char *da_rpo_embed_name(da_rpo_embed e);
/* Defaults of `dalign train METHOD`: the trainer config and options. */
DA_API void da_pref_defaults(da_pref_method m, da_trainer_config *tc, da_pref_opts *o);
/* Check every option (beta > 0, tau > 0, files given, ...) before anything
 * loads; the message names the option. */
DA_API da_status da_pref_check(const da_trainer_config *tc, const da_pref_opts *o);
/* Train (resuming when o->resume is set), then write NAME.json and
 * NAME.safetensors into out_dir. A run stopped early (a signal, stop_at)
 * writes only its checkpoint. res may be NULL. */
DA_API da_status da_pref_run(const da_trainer_config *tc, const da_pref_opts *o, da_pref_result *res);

/* ------------------------------------------------------------------------ */
/* The PromptLoop reference refiner (`dalign train refiner`,                */
/* src/train/refiner_sup.c; docs/promptloop.md): supervised on paraphrases  */
/* of the query while reading the frozen base model's x̂0; the policy GRPO  */
/* starts from and its KL anchor.                                           */
/* ------------------------------------------------------------------------ */

typedef struct da_refiner_sup_opts {
    const char *weights_dir;   /* frozen text_encoder, vae, UNet (NULL: da_weights_dir) */
    const char *unet;          /* the UNet whose trajectories are observed: "unet" */
    const char *out_dir;       /* NAME.{json,safetensors,report.json} (NULL: weights_dir) */
    const char *name;          /* output basename, e.g. "refiner-ref" (required) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    const char *bank_path;     /* observation bank cache (NULL: OUT/NAME.bank.safetensors) */
    int force;                 /* 1: replace existing NAME.* */
    da_refiner_config model;   /* the refiner (default: da_refiner_config_default) */
    /* the observation bank (rebuilt when these or the models change) */
    int bank_size;             /* training queries, one trajectory each (1024) */
    int val_queries;           /* held-back queries per split, in the bank too (128) */
    da_sample_opts sample;     /* the base sampler: 20 DDIM steps, cfg 3 */
    uint64_t bank_seed;        /* the queries and their noise (0) */
    /* examples */
    float p_blind;             /* share with a zero latent (apriori, once): 0.25 */
    float p_query_prompt;      /* share whose prompt in use is the query itself: 0.5 */
    int fresh_blind;           /* 1: a blind example's query is a fresh caption */
    int query_split_all;       /* 0: training queries (bank and fresh) from the train split only;
                                * 1: from both splits (held-out combinations seen as text; the
                                * validation queries' meanings are still never trained on) */
    /* validation: the meaning rate (share of outputs that parse and mean the query) */
    int n_refine;              /* K of the validation's loop chains (4) */
    int val_every;             /* a quick validation every N steps (0: none) */
    int val_quick;             /* queries per split in the quick one (32) */
} da_refiner_sup_opts;

/* Meaning rates of one split at one temperature: loop rows (K chained
 * refinements on the bank's x̂0) and blind rows (a zero latent). */
typedef struct da_refiner_meaning {
    int n;                     /* outputs judged, loop + blind */
    float parse;               /* share that parse */
    float meaning;             /* share that parse and mean the query */
    float loop, blind;         /* meaning rate of the loop rows, of the blind rows */
} da_refiner_meaning;

typedef struct da_refiner_sup_result {
    long steps;
    float loss;
    int stop_signal;
    int exit_code;             /* da_trainer_exit_code: 0, 1, 130, 143 */
    int bank_cached;           /* 1: the bank was read from its file */
    double bank_s;             /* seconds spent building the bank (0 when cached) */
    int validated;             /* 1: the final validation ran (val_queries > 0, run complete) */
    int val_queries;
    da_refiner_meaning train_t1, train_t0;     /* held-back train-split queries, temperature 1 and 0 */
    da_refiner_meaning heldout_t1, heldout_t0; /* held-out-split queries */
} da_refiner_sup_result;

/* Defaults of `dalign train refiner`: the trainer config and options. */
DA_API void da_refiner_sup_defaults(da_trainer_config *tc, da_refiner_sup_opts *o);
/* Check every option before anything loads; the message names the option. */
DA_API da_status da_refiner_sup_check(const da_trainer_config *tc, const da_refiner_sup_opts *o);
/* Load (or build and cache) the bank, train (resuming when o->resume is
 * set), then write NAME.json, NAME.safetensors (the EMA when kept, else the
 * trained weights) and NAME.report.json (the final meaning rates) into
 * out_dir. A run stopped early (a signal, stop_at) writes only its
 * checkpoint. res may be NULL. */
DA_API da_status da_refiner_sup_run(const da_trainer_config *tc, const da_refiner_sup_opts *o,
                                    da_refiner_sup_result *res);

/* ------------------------------------------------------------------------ */
/* PromptLoop's RL trainer (src/train/promptloop.c, the token loss in       */
/* src/train/grpo_loss.c; docs/promptloop.md "The RL trainer"): GRPO on     */
/* the refiner, the diffusion model and the reward frozen.                  */
/* ------------------------------------------------------------------------ */

typedef struct da_promptloop_opts {
    const char *weights_dir;   /* models and rewards (NULL: da_weights_dir) */
    const char *unet;          /* the frozen UNet: "unet" */
    const char *init;          /* the reference refiner: the policy's start and the KL anchor: "refiner-ref" */
    const char *reward;        /* the reward judging each image against its query: "faithful" */
    const char *out_dir;       /* where NAME.{json,safetensors} go (NULL: weights_dir) */
    const char *name;          /* output basename (required) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    int force;                 /* 1: replace existing NAME.* */
    int queries;               /* Q queries per iteration (4) */
    int group;                 /* G rollouts per query (8) */
    int shared_noise;          /* 1: the G rollouts of a query share the initial noise */
    int query_split_all;       /* 0: queries from the train split only; 1: from either split by a
                                * coin (held-out compositions as text, as the reference refiner;
                                * never an evaluation prompt's meaning either way) */
    da_loop_opts loop;         /* mode loop, K 4, temperature 1 */
    da_sample_opts sample;     /* DDIM, 20 steps, cfg 3 */
    int epochs;                /* passes over each rollout batch (2) */
    int minibatches;           /* optimizer steps per pass, whole groups each (2) */
    float clip_eps;            /* 0.2 */
    float kl_coef;             /* 0.04 */
    int kl_to_old;             /* 1: KL to the rollout policy (the paper's) instead of the reference */
    float adv_eps;             /* 1e-4: A = (r - mean) / (std + adv_eps) */
} da_promptloop_opts;

typedef struct da_promptloop_result {
    long steps;                /* optimizer steps done */
    float loss;
    int stop_signal;
    int exit_code;             /* da_trainer_exit_code */
} da_promptloop_result;

DA_API da_promptloop_opts da_promptloop_defaults(void);
/* the trainer config that fits o: batch = Q G / minibatches images per
 * update, one micro-batch, constant LR 1e-5, no EMA, 100 iterations */
DA_API void da_promptloop_trainer_defaults(da_trainer_config *tc, const da_promptloop_opts *o);
/* every option, before anything loads; the message names the option */
DA_API da_status da_promptloop_check(const da_trainer_config *tc, const da_promptloop_opts *o);
/* Train (resuming when o->resume is set; the checkpoint holds the rollout
 * buffer), then write NAME.json and NAME.safetensors into out_dir. */
DA_API da_status da_promptloop_run(const da_trainer_config *tc, const da_promptloop_opts *o,
                                   da_promptloop_result *res);

/* ------------------------------------------------------------------------ */
/* RL on the UNet's weights (`dalign train ddpo|grpo|raft`,                 */
/* src/train/rl_weights.c, the losses in src/train/rl_losses.c;             */
/* docs/rl-weights.md; design §6, §11): DDPO, GRPO on DDIM eta > 0 and      */
/* RAFT (best of K), the baselines PromptLoop is compared with.             */
/* ------------------------------------------------------------------------ */

typedef enum { DA_RLW_DDPO = 0, DA_RLW_GRPO, DA_RLW_RAFT } da_rlw_method;

typedef struct da_rlw_opts {
    da_rlw_method method;
    const char *weights_dir;   /* models and rewards (NULL: da_weights_dir) */
    const char *init;          /* the UNet to start from and (GRPO) the frozen KL anchor: "unet" */
    const char *reward;        /* the reward of each image against its prompt: "faithful" */
    const char *out_dir;       /* where NAME.{json,safetensors} go (NULL: weights_dir) */
    const char *name;          /* output basename (required) */
    const char *resume;        /* checkpoint to continue from, or NULL */
    int force;                 /* 1: replace existing NAME.* */
    int prompts;               /* Q train-split prompts per iteration */
    int group;                 /* G rollouts per prompt (RAFT: the K of best-of-K) */
    int prompt_pool;           /* > 0: prompts drawn from a fixed pool of this many (DDPO's
                                * finite prompt list, so the per-prompt tracker sees repeats);
                                * 0: a fresh train query every time */
    int shared_noise;          /* GRPO: the G rollouts of a prompt share x_T (not the step noise) */
    da_sample_opts sample;     /* DDIM, 20 steps, cfg 3, eta 1 (RAFT: eta 0) */
    float timestep_frac;       /* DDPO, GRPO: share of each trajectory's steps trained on */
    int epochs;                /* passes over each rollout batch */
    int minibatches;           /* optimizer steps per pass, whole groups each */
    float clip_eps;            /* PPO ratio clip: 1e-4 */
    float adv_clip;            /* advantages clamped to +-adv_clip: 5 */
    float adv_eps;             /* A = (r - mean) / (std + adv_eps): 1e-6 DDPO, 1e-4 GRPO */
    float kl_coef;             /* GRPO: KL to the base through the step means: 0.04 */
    int tracker_size;          /* DDPO: past rewards kept per prompt: 32 */
    int tracker_min;           /* DDPO: fewer than this -> the batch's mean and std: 16 */
} da_rlw_opts;

typedef struct da_rlw_result {
    long steps;                /* optimizer steps done */
    float loss;
    int stop_signal;
    int exit_code;             /* da_trainer_exit_code */
} da_rlw_result;

/* "ddpo" | "grpo" | "raft" */
DA_API da_status da_rlw_method_parse(const char *name, da_rlw_method *out);
DA_API const char *da_rlw_method_name(da_rlw_method m);
DA_API da_rlw_opts da_rlw_defaults(da_rlw_method m);
/* the trainer config that fits o: batch = images per update, one
 * micro-batch, constant LR 1e-5, no EMA, 100 iterations */
DA_API void da_rlw_trainer_defaults(da_trainer_config *tc, const da_rlw_opts *o);
/* every option, before anything loads; the message names the option */
DA_API da_status da_rlw_check(const da_trainer_config *tc, const da_rlw_opts *o);
/* Train (resuming when o->resume is set; the checkpoint holds the rollout
 * buffer and the per-prompt tracker), then write NAME.json and
 * NAME.safetensors into out_dir. res may be NULL. */
DA_API da_status da_rlw_run(const da_trainer_config *tc, const da_rlw_opts *o, da_rlw_result *res);

#ifdef __cplusplus
}
#endif

#endif /* DALIGN_TRAIN_H */
