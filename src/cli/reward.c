/* dalign reward --reward NAME [--prompt TEXT] [--weights DIR] IMAGE.png...
 * One line per image: the score, a tab, the file name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dalign.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign reward --reward NAME [--prompt TEXT] [--weights DIR] IMAGE.png...\n"
            "\n"
            "Score 32x32 images with one reward and print one line per image:\n"
            "  SCORE<TAB>IMAGE\n"
            "\n"
            "Rewards (docs/evaluation.md):\n"
            "  faithful   fraction of the prompt's clauses the image satisfies (0 if the\n"
            "             prompt does not parse)\n"
            "  jpeg       JPEG size in kB at quality 95 (incompressibility)\n"
            "  jpeg-neg   minus the JPEG size (compressibility)\n"
            "  colorful   Hasler-Suesstrunk colourfulness\n"
            "  clip       CLIPScore of DIR/clip + DIR/text_encoder\n"
            "  pref       the learned preference model DIR/reward_net\n"
            "  outline    the outline-style detector's score in [0, 1] (0 when no object\n"
            "             is judged; >= 0.06 after the shipped VAE: in the style)\n"
            "faithful, clip and pref need --prompt.\n"
            "\n"
            "Options:\n"
            "  --reward NAME   the reward (required)\n"
            "  --prompt TEXT   the prompt every image is scored against\n"
            "  --weights DIR   weights directory (default: $DALIGN_WEIGHTS, else weights)\n"
            "Exit status: 0 ok, 1 an image or the weights could not be read, 2 usage error.\n");
}

/* options into name, prompt, weights; the image paths are argv[*first .. argc) */
static int parse_args(int argc, char **argv, const char **name, const char **prompt, const char **weights,
                      int *first)
{
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) { i++; break; }
        if (a[0] != '-' || !a[1]) break;
        const char **dst = !strcmp(a, "--reward") ? name : !strcmp(a, "--prompt") ? prompt
                           : !strcmp(a, "--weights") ? weights : NULL;
        if (!dst) {
            fprintf(stderr, "dalign reward: unknown option '%s'\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dalign reward: %s needs a value\n", a);
            return 2;
        }
        *dst = argv[++i];
    }
    *first = i;
    return 0;
}

int cmd_reward(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    const char *name = NULL, *prompt = NULL, *weights = NULL;
    int first = argc;
    int rc = parse_args(argc, argv, &name, &prompt, &weights, &first);
    if (rc) return rc;
    if (!name || first >= argc) {
        fprintf(stderr, "dalign reward: %s\n\n", !name ? "--reward NAME is required" : "no images given");
        usage(stderr);
        return 2;
    }
    da_reward *r;
    da_status st = da_reward_create(&r, name, weights);
    if (st != DA_OK) {
        fprintf(stderr, "dalign reward: %s\n", da_last_error());
        return st == DA_ERR_INVALID ? 2 : 1;   /* an unknown name is a usage error; unreadable weights are not */
    }
    if (da_reward_needs_prompt(r) && !prompt) {
        fprintf(stderr, "dalign reward: reward '%s' needs --prompt TEXT\n", name);
        da_reward_free(r);
        return 2;
    }
    int n = argc - first;
    float *images = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float)), *scores = malloc((size_t)n * sizeof(float));
    const char **prompts = malloc((size_t)n * sizeof *prompts);
    rc = images && scores && prompts ? 0 : 1;
    if (rc) fprintf(stderr, "dalign reward: out of memory\n");
    for (int i = 0; i < n && !rc; i++) {
        prompts[i] = prompt ? prompt : "";
        if (da_image_load(argv[first + i], images + (size_t)i * DA_IMG_FLOATS) != DA_OK) {
            fprintf(stderr, "dalign reward: %s\n", da_last_error());
            rc = 1;
        }
    }
    if (!rc && da_reward_score(r, images, prompts, n, scores) != DA_OK) {
        fprintf(stderr, "dalign reward: %s\n", da_last_error());
        rc = 1;
    }
    for (int i = 0; i < n && !rc; i++) printf("%.6f\t%s\n", (double)scores[i], argv[first + i]);
    free(images);
    free(scores);
    free(prompts);
    da_reward_free(r);
    return rc;
}
