/* examples/paraphrases.c: prompts of the shapes world and their paraphrases.
 *
 *   paraphrases SPLIT N P SEED OUT_PREFIX
 *
 * Draws N prompts of SPLIT (train or heldout) whose meanings are pairwise
 * different (da_world_prompts, generator seeded with SEED: the evaluation
 * prompts use seed 2025, so pick another one for a study that must not touch
 * them) and writes P + 1 prompt files: OUT_PREFIX0.txt holds the N prompts,
 * OUT_PREFIXj.txt (j = 1..P) one random paraphrase of each, same line, same
 * meaning (da_world_paraphrase: synonyms, optional words, clause order, the
 * relation stated from the other object). Every paraphrase is parsed back
 * and checked to mean its prompt.
 *
 * Line p of every file is prompt p, so `dalign eval --prompts OUT_PREFIXj.txt`
 * gives line p the same noise seeds in every file: the images of one prompt
 * and its paraphrases differ only by the words. docs/promptloop.md ("How
 * much a rewrite can give") uses it to measure what any prompt rewriter could
 * gain in this world. Public headers only (<dalign.h>). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dalign.h>

static int fail(const char *what)
{
    fprintf(stderr, "paraphrases: %s: %s\n", what, da_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 6 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc == 2 ? stdout : stderr,
                "usage: paraphrases SPLIT N P SEED OUT_PREFIX\n"
                "  N prompts of SPLIT (train|heldout), P paraphrases each: OUT_PREFIX0..P.txt\n");
        return argc == 2 ? 0 : 2;
    }
    da_split split;
    if (!strcmp(argv[1], "train")) split = DA_SPLIT_TRAIN;
    else if (!strcmp(argv[1], "heldout")) split = DA_SPLIT_HELDOUT;
    else { fprintf(stderr, "paraphrases: split '%s' is not train or heldout\n", argv[1]); return 2; }
    int n = atoi(argv[2]), n_para = atoi(argv[3]);
    if (n < 1 || n > 10000 || n_para < 1 || n_para > 64) {
        fprintf(stderr, "paraphrases: N must be in 1..10000 and P in 1..64\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[4], NULL, 10);

    size_t stride = DA_CAPTION_MAX;
    char *texts = malloc((size_t)n * stride);
    da_scene *specs = malloc((size_t)n * sizeof *specs);
    if (!texts || !specs) { fprintf(stderr, "paraphrases: out of memory\n"); return 1; }
    da_rng rng;
    da_rng_seed(&rng, seed);
    if (da_world_prompts(&rng, split, n, NULL, texts, stride) != DA_OK) return fail("prompts");
    /* the spec each text states (unstated attributes stay DA_ANY): what a
     * paraphrase must mean, not the placed scene the text was drawn from */
    for (int p = 0; p < n; p++)
        if (da_parse_prompt(texts + (size_t)p * stride, &specs[p]) != DA_OK) return fail("parse");

    int rc = 0;
    for (int j = 0; j <= n_para && !rc; j++) {
        char path[4096];
        snprintf(path, sizeof path, "%s%d.txt", argv[5], j);
        FILE *f = fopen(path, "w");
        if (!f) { perror(path); return 1; }
        if (j) fprintf(f, "# %s prompts (seed %llu), paraphrase %d of each\n", argv[1], (unsigned long long)seed, j);
        else   fprintf(f, "# %s prompts (seed %llu), as drawn\n", argv[1], (unsigned long long)seed);
        for (int p = 0; p < n && !rc; p++) {
            const char *text = texts + (size_t)p * stride;
            char buf[DA_CAPTION_MAX];
            da_scene back;
            if (j > 0) {
                if (da_world_paraphrase(&rng, &specs[p], buf, sizeof buf) != DA_OK) { rc = fail("paraphrase"); break; }
                if (da_parse_prompt(buf, &back) != DA_OK || !da_spec_same_meaning(&specs[p], &back)) {
                    fprintf(stderr, "paraphrases: '%s' does not mean '%s'\n", buf, text);
                    rc = 1;
                    break;
                }
                text = buf;
            }
            fprintf(f, "%s\n", text);
        }
        if (fclose(f) != 0) { perror(path); rc = 1; }
    }
    free(texts);
    free(specs);
    return rc;
}
