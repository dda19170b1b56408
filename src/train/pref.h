/* Preference fine-tuning of the UNet on labelled pairs (`dalign train
 * dpo|sft|rpo|kto`): Diffusion-DPO, SFT on the preferred images,
 * Diffusion-RPO and Diffusion-KTO. docs/alignment-preference.md maps every
 * equation to its function here and in pref_loss.c / pref.c. */
#ifndef DA_TRAIN_PREF_H
#define DA_TRAIN_PREF_H

#include "dalign.h"

/* ------------------------------------------------------------------------ */
/* The losses (src/train/pref_loss.c): forward/backward over per-sample     */
/* MSEs. m_* are the policy's MSEs, r_* the frozen reference's; dm_* (may   */
/* be NULL) receive d loss / d m (written, not added).                      */
/* ------------------------------------------------------------------------ */

/* implicit-reward statistics of one call: margins (DPO's inside, RPO's
 * diagonal logits, KTO's y beta (g - z)) and how many are > 0 */
typedef struct pref_stats {
    double margin_sum;
    int correct, n;
} pref_stats;
void pref_stats_add_margin(pref_stats *st, float margin);

/* m (B) = mean over n values of (pred - eps)^2; backward adds
 * dm[b] * 2 (pred - eps) / n into dpred */
void pref_mse_forward(float *m, const float *pred, const float *eps, int B, size_t n);
void pref_mse_backward(float *dpred, const float *dm, const float *pred, const float *eps, int B, size_t n);

float pref_dpo_loss(const float *m_w, const float *m_l, const float *r_w, const float *r_l, int B, float beta,
                    float *dm_w, float *dm_l, pref_stats *st);
float pref_sft_loss(const float *m_w, int B, float *dm_w);
/* w (B, B): row i = softmax_j(-(1 - cos(e_w[i], e_l[j])) / tau); e rows unit length */
void pref_rpo_weights(float *w, const float *e_w, const float *e_l, int B, int E, float tau);
float pref_rpo_loss(const float *m_w, const float *m_l, const float *r_w, const float *r_l, const float *w, int B,
                    float beta, int weight_outside, float *dm_w, float *dm_l, pref_stats *st);
void pref_rpo_weight_stats(const float *w, int B, float *off_diag, float *entropy);
/* y (N) = +1 liked / -1 disliked */
float pref_kto_loss(const float *m, const float *r, const float *y, int N, float beta, float *dm, pref_stats *st);

typedef enum { DA_PREF_DPO = 0, DA_PREF_SFT, DA_PREF_RPO, DA_PREF_KTO } da_pref_method;

/* One batch's loss as a tape node: pred (2B, C, h, w) is the policy's eps
 * on rows [0, B) = the winners (KTO: liked), [B, 2B) = the losers
 * (disliked), eps the noise they should predict. The forward fills m and
 * the method's dL/dm (in dm) and stats; the backward adds dL/dm * 2 (pred -
 * eps) / n into pred's gradient. The struct and every array it points at
 * must live until the backward has run. */
typedef struct pref_loss_args {
    da_pref_method method;
    int B;                     /* pairs: 2B images */
    float beta;
    int weight_outside;        /* RPO */
    size_t n;                  /* values per image, C * h * w */
    const float *eps;          /* (2B, n) */
    const float *r;            /* (2B) the reference's MSEs */
    const float *w;            /* RPO: (B, B) weights */
    const float *y;            /* KTO: (2B) +1 / -1 */
    float *m, *dm;             /* (2B) outputs */
    pref_stats st;             /* output */
} pref_loss_args;
da_tensor *pref_loss_node(da_tape *t, da_tensor *pred, pref_loss_args *a);

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
da_status da_pref_method_parse(const char *name, da_pref_method *out);
const char *da_pref_method_name(da_pref_method m);
da_status da_rpo_embed_parse(const char *name, da_rpo_embed *out);
const char *da_rpo_embed_name(da_rpo_embed e);
/* Defaults of `dalign train METHOD`: the trainer config and options. */
void da_pref_defaults(da_pref_method m, da_trainer_config *tc, da_pref_opts *o);
/* Check every option (beta > 0, tau > 0, files given, ...) before anything
 * loads; the message names the option. */
da_status da_pref_check(const da_trainer_config *tc, const da_pref_opts *o);
/* Train (resuming when o->resume is set), then write NAME.json and
 * NAME.safetensors into out_dir. A run stopped early (a signal, stop_at)
 * writes only its checkpoint. res may be NULL. */
da_status da_pref_run(const da_trainer_config *tc, const da_pref_opts *o, da_pref_result *res);

#endif
