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
#ifndef DA_EVAL_WINRATE_H
#define DA_EVAL_WINRATE_H

#include <stdio.h>

#include "dalign.h"
#include "eval/eval.h"

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
da_status da_winrate_compute(const char *base_tsv, const char *model_tsv, const char *column, da_winrate *out);

/* The result as a JSON object (metrics.json's number format, "%.9g"):
 * {"column", "base", "model", "win_rate": {"mean", "ci95", "n"},
 *  "diff": {...}, "images", "prompts"}. */
void da_winrate_json(FILE *f, const da_winrate *w, const char *column, const char *base, const char *model);

#endif
