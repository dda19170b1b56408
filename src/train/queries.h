/* Training queries that are never evaluation prompts (src/train/queries.c).
 * The trainers that draw text queries (the reference refiner, PromptLoop's
 * RL) redraw any query whose meaning is one of the evaluation's held-in or
 * held-out prompts (da_eval_prompts at DA_EVAL_PROMPT_SEED, the first
 * DA_REPORT_SPLIT_PROMPTS of each split): results are reported on prompts
 * the method never trained on. */
#ifndef DA_TRAIN_QUERIES_H
#define DA_TRAIN_QUERIES_H

#include "dalign/train.h"

typedef struct dq_excluded {
    int n;
    da_scene *specs;   /* (n) the evaluation prompts' meanings */
} dq_excluded;

da_status dq_excluded_init(dq_excluded *x);
void dq_excluded_free(dq_excluded *x);
/* 1 when spec means what one of the evaluation prompts means */
int dq_is_excluded(const dq_excluded *x, const da_scene *spec);
/* A caption of a fresh scene of the split (da_world_example's phrasing)
 * whose meaning is no evaluation prompt's, and its parse; DA_ERR_RANGE
 * after many redraws. */
da_status dq_draw(da_rng *rng, da_split split, const dq_excluded *x, char *text, da_scene *spec);
/* The split of a training query: the train split (all_splits 0, rng not
 * touched), or either by a fair coin from rng (all_splits 1: held-out
 * compositions as text, docs/promptloop.md "Held-out compositions"). */
da_split dq_split(da_rng *rng, int all_splits);

#endif
