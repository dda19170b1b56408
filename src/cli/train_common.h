/* What the `dalign train ...` commands share (train.c, train_pref.c,
 * train_refiner.c, train_promptloop.c, train_rl.c): the number parsers of
 * their options, the default output paths, the guard that keeps a fresh run
 * off another run's checkpoint, and the clean-up of temp files a killed run
 * left behind. */
#ifndef DALIGN_CLI_TRAIN_COMMON_H
#define DALIGN_CLI_TRAIN_COMMON_H

#include <stddef.h>

#include "dalign.h"

/* Option values, worded on failure as cli_bad_value does ("dalign CMD: OPT
 * needs an integer >= 1, got 'x'"): 0, or 2 (a usage error). */
int train_int(const char *cmd, const char *opt, const char *val, int lo, int *out);
int train_long(const char *cmd, const char *opt, const char *val, int lo, long *out);
/* a finite number above lo (TRAIN_GT: strictly) and below hi (TRAIN_LT:
 * strictly; hi = TRAIN_NO_MAX: no upper bound) */
enum { TRAIN_GE = 0, TRAIN_GT = 1, TRAIN_LE = 0, TRAIN_LT = 2 };
#define TRAIN_NO_MAX 3e38f
int train_float(const char *cmd, const char *opt, const char *val, float lo, float hi, int strict, float *out);

/* The output folder of a fine-tuning run: --out, else --weights, else
 * $DALIGN_WEIGHTS or ./weights. */
const char *train_out_dir(const char *out_dir, const char *weights_dir);

/* OUT/NAME.ckpt and OUT/NAME.metrics.jsonl for what the command line left
 * unset: *ckpt (NULL: --resume's file, else OUT/NAME.ckpt) and *metrics
 * (NULL: OUT/NAME.metrics.jsonl, or left NULL when metrics_default is 0),
 * written into the caller's buffers of cap bytes. 0, or 2 after "path too
 * long". */
int train_default_paths(const char *cmd, const char *out, const char *name, const char *resume, const char **ckpt,
                        char *ckpt_buf, const char **metrics, char *metrics_buf, size_t cap);

/* A fresh run (no --resume) never overwrites another run's checkpoint
 * silently. "Another run" is decided by what the file holds, read as
 * --resume would read it (dp_ckpt_describe, with tc and keys): the file at
 * ckpt is
 *   - absent: fine;
 *   - another run's (its trainer name or one of its stored settings, seed,
 *     steps, lr, ..., differs) or no checkpoint at all: refused, the message
 *     names what differs, "--force to overwrite it";
 *   - this run's (same name and settings), unfinished: refused, "--resume it
 *     to continue, or --force to start over" (its progress would be lost);
 *   - this run's, finished: replaced with a note when allow_finished (the
 *     pretraining commands, rerun whole by scripts/make-weights.sh: their
 *     weights are written already), else refused like the unfinished one
 *     (the fine-tuning commands, which refuse their existing NAME.* too).
 * --force replaces any of them (with a note). 0 to go on, 1 refused. */
int train_check_ckpt(const char *cmd, const char *ckpt, const char *resume, int force, int allow_finished,
                     const da_trainer_config *tc, const char *const *keys, int quiet);

/* Temp files of a killed run: DIR/NAME.*.tmp.PID (the atomic writers'
 * temp names) whose PID is no live process (kill(PID, 0) fails with ESRCH)
 * are removed, with a note each; nothing else is touched. For every name of
 * names (NULL-terminated). Never fails: a folder that cannot be read is
 * left alone (the run reports it when it writes there). */
void train_clean_stale_tmp(const char *cmd, const char *dir, const char *const *names, int quiet);
/* the same for the folder and file name of a path (the checkpoint) */
void train_clean_stale_tmp_of(const char *cmd, const char *path, int quiet);

#endif
