/* Training queries that are never evaluation prompts (queries.h). */
#include "train/queries.h"

#include <stdlib.h>

#define MAX_REDRAWS 100000   /* the 400 excluded meanings are a small share of either split */

da_status dq_excluded_init(dq_excluded *x)
{
    int per = DA_REPORT_SPLIT_PROMPTS;
    x->n = 2 * per;
    x->specs = malloc((size_t)x->n * sizeof *x->specs);
    char *text = malloc((size_t)per * DA_CAPTION_MAX);
    da_status s = x->specs && text ? DA_OK : da_fail(DA_ERR_NOMEM, "out of memory for the evaluation prompts");
    for (int g = 0; g < 2 && s == DA_OK; g++) {
        s = da_eval_prompts(DA_EVAL_PROMPT_SEED, g ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN, per, text, NULL);
        for (int i = 0; i < per && s == DA_OK; i++)
            s = da_parse_prompt(text + (size_t)i * DA_CAPTION_MAX, &x->specs[g * per + i]);
    }
    free(text);
    if (s != DA_OK) dq_excluded_free(x);
    return s;
}

void dq_excluded_free(dq_excluded *x)
{
    free(x->specs);
    x->specs = NULL;
    x->n = 0;
}

int dq_is_excluded(const dq_excluded *x, const da_scene *spec)
{
    for (int i = 0; i < x->n; i++)
        if (da_spec_same_meaning(spec, &x->specs[i])) return 1;
    return 0;
}

da_status dq_draw(da_rng *rng, da_split split, const dq_excluded *x, char *text, da_scene *spec)
{
    for (long tries = 0; tries < MAX_REDRAWS; tries++) {
        da_scene scene;
        da_status s = da_world_example(rng, split, &scene, NULL, text, DA_CAPTION_MAX);
        if (s == DA_OK) s = da_parse_prompt(text, spec);
        if (s != DA_OK) return s;
        if (!dq_is_excluded(x, spec)) return DA_OK;
    }
    return da_fail(DA_ERR_RANGE, "no training query outside the evaluation prompts in %d draws", MAX_REDRAWS);
}

da_split dq_split(da_rng *rng, int all_splits)
{
    if (!all_splits) return DA_SPLIT_TRAIN;
    float u;
    da_rand(rng, &u, 1);
    return u < 0.5f ? DA_SPLIT_TRAIN : DA_SPLIT_HELDOUT;
}
