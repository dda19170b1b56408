/* The loss kernels of preference fine-tuning (src/train/pref_loss.c),
 * internal to the trainer (src/train/pref.c); the trainer's options and
 * entry points (da_pref_*) are public: dalign/train.h. docs/alignment-
 * preference.md maps every equation to its function here and in pref.c. */
#ifndef DA_TRAIN_PREF_H
#define DA_TRAIN_PREF_H

#include "dalign/train.h"

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

#endif
