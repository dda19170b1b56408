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

/* ---- Whose checkpoint is it? (defined in trainer.c, which owns the format)
 * A fresh run (no --resume) must not silently overwrite another run's
 * checkpoint. dp_ckpt_describe reads the file at path the way resume does
 * and compares it with tc: its trainer name and the stored config fields
 * that decide a run's bits (keys: the field names to compare, "seed",
 * "total_steps", ..., NULL-terminated; NULL: all of them). */
typedef enum {
    DP_CKPT_ABSENT,      /* nothing at path */
    DP_CKPT_SAME_RUN,    /* this run's trainer name and settings: --resume would continue it */
    DP_CKPT_OTHER_RUN,   /* a checkpoint of another trainer name or other settings (why says which) */
    DP_CKPT_OTHER_FILE,  /* something that is no dalign checkpoint, or unreadable (why) */
} dp_ckpt_kind;
typedef struct dp_ckpt_info {
    dp_ckpt_kind kind;
    char name[64];       /* the checkpoint's trainer name */
    long step, total;    /* its step and total_steps (-1: not stored) */
    char why[256];       /* OTHER_*: what differs, in words */
} dp_ckpt_info;
da_status dp_ckpt_describe(const char *path, const da_trainer_config *tc, const char *const *keys,
                           dp_ckpt_info *info);

/* ---- Shipping a model's files as a set ------------------------------------
 * A model is a pair (NAME.safetensors + NAME.json, more for clip) that only
 * loads together. Each writer already writes atomically (temp + rename), but
 * one after the other, so a failure between two of them (disk full while
 * writing the config) used to leave new weights beside the old config: a
 * folder that no longer loads. A dp_ship stages every file first, under
 * DIR/NAME.EXT.new.tmp.PID (the writer writes there: all the slow work and
 * every likely failure happen before anything is replaced), then
 * dp_ship_commit renames them into place back to back, config last. Should
 * a rename fail, the files already replaced are put back from hard links of
 * the old ones, so the folder holds either the whole old set or the whole
 * new one. Only a crash of the machine or a SIGKILL in the microseconds
 * between two renames can leave a mixed set, and even then it loads when
 * the config did not change (the usual rerun). */
#define DP_SHIP_MAX 4
typedef struct dp_ship {
    int n;
    char final[DP_SHIP_MAX][DP_PATH_MAX];
    char stage[DP_SHIP_MAX][DP_PATH_MAX];
} dp_ship;
void dp_ship_init(dp_ship *sh);
/* register DIR/NAME.EXT; *stage is the path its writer must write to */
da_status dp_ship_add(dp_ship *sh, const char *dir, const char *name, const char *ext, const char **stage);
/* rename every staged file into place, in the order added (all or none) */
da_status dp_ship_commit(dp_ship *sh);
/* remove the staged files (after a writer failed); nothing is replaced */
void dp_ship_abort(dp_ship *sh);

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
