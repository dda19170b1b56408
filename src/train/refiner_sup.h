/* Internal to the PromptLoop reference refiner's trainer
 * (src/train/refiner_sup.c, docs/promptloop.md): the observation
 * bank, one batch of examples, the loss, and the meaning-rate validation,
 * for its tests (tests/test_train_refiner.c) and for the RL trainer, which
 * judges written prompts the same way. */
#ifndef DA_TRAIN_REFINER_SUP_H
#define DA_TRAIN_REFINER_SUP_H

#include "dalign/train.h"
#include "train/queries.h"

#define RS_BANK_FORMAT "dalign-refiner-bank-2"   /* 2: training queries are never evaluation prompts */

/* ------------------------------------------------------------------------ */
/* The observation bank                                                     */
/* ------------------------------------------------------------------------ */

/* What a bank is made of; two banks with equal settings hold the same bits. */
typedef struct rs_bank_settings {
    int n_train;             /* training queries (train split) */
    int n_val;               /* validation queries per split (train split held back, held-out split) */
    da_sample_opts sample;   /* the frozen pipeline's sampler */
    uint64_t seed;           /* queries and their noise seeds */
    const char *unet;        /* the UNet's name, for the metadata and messages */
    uint64_t models_hash;    /* FNV-1a of the text encoder's and UNet's weights and the schedule */
    int all_splits;          /* training queries from both splits (else the train split) */
} rs_bank_settings;

/* Rows [0, n_train): training queries (train split, or both with
 * all_splits); [n_train, n_train + n_val): held-back train-split queries;
 * [n_train + n_val, n): held-out-split queries. Every validation query's
 * meaning differs from those of the training rows, and the validation rows
 * of a split differ from each other in meaning. */
typedef struct rs_bank {
    int n, n_train, n_val;
    int steps, C, H, W, latent_n;
    float *x0;               /* (n, steps, latent_n) the base sampler's x̂0 at every step */
    float *timesteps;        /* (steps) the UNet's timestep at every step */
    int *query_ids;          /* (n, DA_MAX_TOKENS) */
    uint8_t *query_keep;
    da_scene *specs;         /* (n) the parsed queries */
    char (*text)[DA_CAPTION_MAX];   /* (n) the queries */
    dq_excluded excluded;    /* the evaluation prompts: no training query means one of them */
} rs_bank;

enum { RS_ROWS_TRAIN = 0, RS_ROWS_VAL = 1, RS_ROWS_HELDOUT = 2 };
/* first row of a group (RS_ROWS_*) */
int rs_bank_first(const rs_bank *b, int group);

/* The hash of rs_bank_settings.models_hash for pipeline p. */
uint64_t rs_models_hash(const da_pipeline *p);
/* The queries of the settings (text, ids, specs; n, n_train, n_val, steps),
 * no trajectories yet (x0 and timesteps NULL). */
da_status rs_bank_queries(rs_bank *b, const rs_bank_settings *st);
/* The trajectories of b's queries: p generates every query with its own
 * noise seed, and x̂0 and the timestep of every step are kept (latent shape
 * from p). progress: a line per chunk on stderr. */
da_status rs_bank_trajectories(rs_bank *b, da_pipeline *p, const rs_bank_settings *st, int progress);
/* Atomic write with the settings in the metadata. */
da_status rs_bank_save(const rs_bank *b, const rs_bank_settings *st, const char *path);
/* Read path's trajectories into b (its queries made by rs_bank_queries) if
 * the file holds a bank of exactly these settings and queries. *match = 1:
 * done; *match = 0: the file is missing or a bank of other settings (why:
 * the first difference), b untouched. An error: the file exists but is not
 * a bank, or a damaged one (the caller must not overwrite it). */
da_status rs_bank_load(rs_bank *b, const rs_bank_settings *st, const char *path, int *match, char *why,
                       size_t why_cap);
void rs_bank_free(rs_bank *b);

/* ------------------------------------------------------------------------ */
/* Examples and the loss                                                    */
/* ------------------------------------------------------------------------ */

/* How examples are drawn (docs/promptloop.md, "Data"). */
typedef struct rs_draw_opts {
    float p_blind;           /* zero latent (the apriori and once modes) */
    float p_query_prompt;    /* the prompt in use is the query (else a paraphrase of it) */
    int fresh_blind;         /* a blind example's query is a fresh caption */
    int all_splits;          /* fresh captions from both splits (else the train split) */
} rs_draw_opts;

/* One micro-batch of B examples: inputs of da_refiner_forward and targets. */
typedef struct rs_batch {
    int B, T_out;            /* T_out = longest target - 1 */
    int latent_n;
    float *x0;               /* (B, latent_n) */
    float *timesteps;        /* (B) */
    int *query_ids, *prompt_ids, *target_ids;   /* (B, M); target BOS .. EOS PAD.. */
    uint8_t *query_keep, *prompt_keep;
    int *out_ids;            /* (B, T_out) the target's first T_out tokens (teacher forcing) */
    int *next;               /* (B * T_out) the token each row predicts, -1 past EOS */
    int n_blind;
} rs_batch;

da_status rs_batch_alloc(rs_batch *x, int B, int latent_n);
void rs_batch_free(rs_batch *x);
/* Draw B examples from rng (every draw in a fixed order, example by
 * example): see refiner_sup.c "Examples". A fresh query never has the
 * meaning of a validation query of b. */
da_status rs_draw_batch(rs_batch *x, const rs_bank *b, const rs_draw_opts *o, da_rng *rng);
/* Set out_ids, next and T_out from target_ids (rows already filled). */
void rs_batch_targets(rs_batch *x);

/* Whether generation may write id v: every id but PAD, BOS and UNK. */
int rs_allowed_id(int v);
/* The mean restricted cross-entropy of the batch's targets (scalar, on the
 * tape, with its backward) and the token accuracy (argmax over the allowed
 * ids), through da_refiner_forward. NULL + da_last_error() on bad input. */
da_tensor *rs_loss(da_tape *t, const da_refiner *m, const rs_batch *x, double *tok_acc);

/* ------------------------------------------------------------------------ */
/* Meaning rate                                                             */
/* ------------------------------------------------------------------------ */

typedef struct rs_meaning {
    int n;                   /* outputs judged */
    int parsed;              /* that parse (da_parse_prompt) */
    int meant;               /* that parse and mean the query (da_spec_same_meaning) */
} rs_meaning;

/* 1 when ids (DA_MAX_TOKENS, BOS .. EOS) parse into a spec that means *query. */
int rs_judge(const int *ids, const da_scene *query, int *parsed);

/* The refiner on n queries of a group (RS_ROWS_VAL or RS_ROWS_HELDOUT; the
 * first n of it) at one temperature, as the PromptLoop modes use it:
 * loop: K refinements chained (prompt in use: the query, then the previous
 * output) reading the bank's x̂0 and timestep at step floor(k * steps / K);
 * blind: one refinement from a zero latent at step 0's timestep (once).
 * All draws from one generator seeded with seed. */
/* outs (may be NULL): (n, K + 1, DA_MAX_TOKENS) the written prompts, the
 * loop's K then the blind one. */
da_status rs_meaning_rate(const da_refiner *m, const rs_bank *b, int group, int n, int K, float temperature,
                          uint64_t seed, rs_meaning *loop, rs_meaning *blind, int *outs);

#endif
