/* dalign reward --reward NAME [--prompt TEXT] [--weights DIR] IMAGE.png...
 * One line per image: the score, a tab, the file name. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "cli/cli.h"
#include "dalign.h"

static const char CMD[] = "reward";   /* the prefix of every message */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign reward --reward NAME [-p TEXT] [--weights DIR] IMAGE.png...  (--opt=value works too)\n"
            "\n"
            "Score 32x32 images with one reward and print one line per image:\n"
            "  SCORE<TAB>IMAGE\n"
            "An image that is an exact integer upscale of a 32x32 one (nearest neighbour, as\n"
            "dalign sample --scale S writes) is scored as that 32x32 image; any other size\n"
            "is refused.\n"
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
            "faithful, clip and pref need --prompt; a prompt with words the tokenizer does\n"
            "not know (read as <unk>) or too many words is scored with a warning on stderr.\n"
            "\n"
            "Options:\n"
            "  --reward NAME      the reward (required)\n"
            "  -p, --prompt TEXT  the prompt every image is scored against\n"
            "  --weights DIR      weights directory (default: $DALIGN_WEIGHTS, else weights)\n"
            CLI_COMMON_HELP
            "Exit status: 0 ok, 1 an image or the weights could not be read, 2 usage error.\n");
}

enum { OPT_REWARD = CLI_O_LOCAL, OPT_WEIGHTS };
static const struct option LONG_OPTS[] = {
    {"reward", required_argument, 0, OPT_REWARD},
    {"prompt", required_argument, 0, 'p'},
    {"weights", required_argument, 0, OPT_WEIGHTS},
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* options into name, prompt, weights; the image paths are argv[*first .. argc).
 * -1 to go on, else the exit code (0 after --help) */
static int parse_args(int argc, char **argv, const char **name, const char **prompt, const char **weights,
                      int *first, cli_common *common)
{
    cli_parser p = cli_parser_init(CMD, argc, argv, "p:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        switch (c) {
        case CLI_EXIT: return p.rc;
        case OPT_REWARD: *name = p.val; break;
        case 'p': *prompt = p.val; break;
        case OPT_WEIGHTS: *weights = p.val; break;
        default: return cli_unhandled(&p);
        }
    }
    *first = p.optind;
    *common = p.common;
    return -1;
}

/* An image of DA_IMG x DA_IMG, or an exact nearest-neighbour upscale of one
 * by an integer S (every S x S block one colour): its DA_IMG x DA_IMG pixels
 * into img (every S-th pixel). 0, or 1 after a message naming the file. */
static int load_image(const char *path, float *img)
{
    da_status s = da_image_load(path, img);
    if (s == DA_OK) return 0;
    if (s != DA_ERR_INVALID) {   /* missing or undecodable: the loader's words */
        fprintf(stderr, "dalign reward: %s\n", da_last_error());
        return 1;
    }
    int w = 0, h = 0, n = 0;
    uint8_t *px = stbi_load(path, &w, &h, &n, 3);
    if (!px) {
        fprintf(stderr, "dalign reward: %s: not a readable image (%s)\n", path, stbi_failure_reason());
        return 1;
    }
    int S = w / DA_IMG;
    int exact = w == h && S >= 2 && w == S * DA_IMG;
    for (int y = 0; exact && y < h; y++)
        for (int x = 0; exact && x < w; x++) {
            const uint8_t *a = px + ((size_t)y * w + x) * 3, *b = px + ((size_t)(y / S * S) * w + x / S * S) * 3;
            exact = a[0] == b[0] && a[1] == b[1] && a[2] == b[2];
        }
    if (!exact) {
        fprintf(stderr, "dalign reward: %s: image is %dx%d; rewards read %dx%d images or an exact integer upscale "
                        "of one (nearest neighbour, as dalign sample --scale writes)%s\n",
                path, w, h, DA_IMG, DA_IMG, w == h && w % DA_IMG == 0 && S >= 2 ? ": its blocks are not one colour"
                                                                                  : "");
        stbi_image_free(px);
        return 1;
    }
    const size_t HW = (size_t)DA_IMG * DA_IMG;
    for (int y = 0; y < DA_IMG; y++)
        for (int x = 0; x < DA_IMG; x++) {
            const uint8_t *a = px + ((size_t)y * S * w + (size_t)x * S) * 3;
            for (int c = 0; c < 3; c++) img[(size_t)c * HW + (size_t)y * DA_IMG + x] = (float)a[c] / 255.0f;
        }
    stbi_image_free(px);
    return 0;
}

/* clip and pref read the prompt through the tokenizer: words it does not
 * know become <unk> and the score quietly means less, so say so; faithful
 * scores a prompt that does not parse 0, so say that */
static void warn_unknown_words(const char *prompt, const char *reward)
{
    da_scene spec;
    if (!strcmp(reward, "faithful") && da_parse_prompt(prompt, &spec) != DA_OK) {
        fprintf(stderr, "dalign reward: warning: the prompt does not parse (%s): faithful scores 0\n",
                da_last_error());
        return;
    }
    int ids[DA_MAX_TOKENS];
    uint8_t keep[DA_MAX_TOKENS];
    da_tok_report rep;
    if (da_tokenize(prompt, ids, keep, &rep) != DA_OK) return;
    if (rep.n_unknown)
        fprintf(stderr, "dalign reward: warning: the prompt has %d word%s the tokenizer does not know (%s), "
                        "read as <unk>: the score does not see %s\n",
                rep.n_unknown, rep.n_unknown > 1 ? "s" : "", rep.unknown, rep.n_unknown > 1 ? "them" : "it");
    if (rep.n_truncated)
        fprintf(stderr, "dalign reward: warning: the prompt is cut after %d words (%d dropped)\n", DA_MAX_TOKENS - 2,
                rep.n_truncated);
}

int cmd_reward(int argc, char **argv)
{
    const char *name = NULL, *prompt = NULL, *weights = NULL;
    int first = argc;
    cli_common common;
    int rc = parse_args(argc, argv, &name, &prompt, &weights, &first, &common);
    if (rc >= 0) return rc;
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
    if (prompt && da_reward_needs_prompt(r) && !common.quiet) warn_unknown_words(prompt, name);
    int n = argc - first;
    float *images = malloc((size_t)n * DA_IMG_FLOATS * sizeof(float)), *scores = malloc((size_t)n * sizeof(float));
    const char **prompts = malloc((size_t)n * sizeof *prompts);
    rc = images && scores && prompts ? 0 : 1;
    if (rc) fprintf(stderr, "dalign reward: out of memory\n");
    for (int i = 0; i < n && !rc; i++) {
        prompts[i] = prompt ? prompt : "";
        rc = load_image(argv[first + i], images + (size_t)i * DA_IMG_FLOATS);
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
