/* Helpers shared by the pretraining trainers (src/train/pretrain*.c):
 * shapes-world batches, caption tokens, output paths, the create / resume /
 * run sequence around the harness. */
#ifndef DA_TRAIN_PRETRAIN_H
#define DA_TRAIN_PRETRAIN_H

#include "dalign/train.h"

#define DP_PATH_MAX 4096

/* buf = DIR/NAME.EXT; DA_ERR_RANGE when it does not fit DP_PATH_MAX */
da_status dp_path(char *buf, const char *dir, const char *name, const char *ext);
/* Never replace a model silently: DIR/NAME.{safetensors,json} must not
 * exist unless force (the message names the file and --force). */
da_status dp_check_new_outputs(const char *dir, const char *name, int force);
/* Create DIR (one level) unless it exists. */
da_status dp_ensure_dir(const char *dir);

/* A phrasing of scene s drawn from rng, tokenized: ids, keep (DA_MAX_TOKENS). */
da_status dp_caption_tokens(da_rng *rng, const da_scene *s, int *ids, uint8_t *keep);
/* The unconditional prompt of classifier-free guidance, the pipeline's
 * DA_UNCOND_PROMPT (the empty text): BOS EOS PAD ... */
void dp_empty_tokens(int *ids, uint8_t *keep);
/* 1 when a parsed prompt spec describes scene s: same number of objects,
 * every stated attribute equal, the relation read either way round. */
int dp_spec_fits(const da_scene *spec, const da_scene *s);

/* n train-split examples from rng: images (n, 3, 32, 32) in [-1, 1], token
 * rows (n, DA_MAX_TOKENS) (ids and keep NULL: no captions are drawn), the
 * scenes (may be NULL). Dedupe needs captions and scenes. With
 * dedupe, an example whose caption fits an earlier example's scene, or whose
 * scene an earlier caption fits, is drawn again (up to DP_MAX_REDRAWS
 * times); *n_redrawn (may be NULL) counts the re-draws. */
#define DP_MAX_REDRAWS 64
da_status dp_world_batch(da_rng *rng, int n, int dedupe, float *img, int *ids, uint8_t *keep,
                         da_scene *scenes, int *n_redrawn);

/* Create the trainer over params, resume from o->resume when set, run.
 * Fills res (steps, loss, stop_signal, exit_code). On success *out is the
 * trainer (the caller saves weights from it and frees it); on failure it is
 * freed and *out is NULL. */
da_status dp_train(const da_trainer_config *tc, const da_pretrain_opts *o, da_params *params,
                   da_step_fn fn, void *user, da_trainer **out, da_pretrain_result *res);

/* Mean squared error of two float arrays (double accumulation, in order). */
double dp_mse(const float *a, const float *b, size_t n);

#endif
