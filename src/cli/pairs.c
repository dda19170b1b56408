/* dalign pairs: preference pairs for Diffusion-DPO / Diffusion-RPO, sampled
 * from the current model and labelled by the synthetic rater
 * (src/eval/pairs.c, docs/pairs.md); with --style, style pairs: the prompt's
 * own scene rendered in a style against a base sample
 * (src/eval/style_pairs.c, docs/shapes-world.md "Style pairs"). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"
#include "eval/style_pairs.h"

typedef struct pairs_args {
    const char *weights, *out;
    int have_n;
    int have_style;   /* --style: style pairs instead of rater-labelled ones */
    da_style style;
    da_pairs_config cfg;
} pairs_args;

static const char CMD[] = "pairs";   /* the prefix of every message */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign pairs --n N -o FILE [options]  (--opt=value works too)\n"
            "\n"
            "Sample two images per candidate from the model (same prompt, different seeds; with\n"
            "--different-prompts F a share F of candidates gets another prompt for the second\n"
            "image, for RPO), label each candidate with the synthetic rater, drop ties, and\n"
            "write N pairs (winner first) as safetensors: latents, prompts, seeds, utilities.\n"
            "\n"
            "Options:\n"
            "  --n N                 pairs to keep (required, 1..%d: every pair's fields go\n"
            "                        in the safetensors header, which readers cap)\n"
            "  -o, --output FILE     the pairs file (required; written atomically)\n"
            "  --weights DIR         weights directory (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --unet NAME|FILE      a UNet in DIR (NAME.{json,safetensors}, default unet) or a\n"
            "                        FILE.safetensors with its config FILE.json beside it\n"
            "  -s, --seed S          seed of every random choice (default 0; -1: random, printed)\n"
            "  --split NAME          prompts of the train or heldout split (default train)\n"
            "  --steps S             sampler steps (default 20)\n"
            "  --cfg W               guidance weight (default 3); alias --cfg-scale\n"
            "  --sampler NAME        ddim, ddpm or euler (default ddim); alias --sampling-method\n"
            "  --eta E               DDIM eta (default 0)\n"
            "  --batch B             images per pipeline call (default 8; speed only: an\n"
            "                        image's bits do not depend on its batch)\n"
            "  --different-prompts F share of candidates whose second image has another\n"
            "                        prompt, in [0, 1] (default 0)\n"
            "  --max-attempts K      give up after K * N candidates (default 10)\n"
            "  --style NAME          style pairs instead (NAME: outline): per candidate the\n"
            "                        prompt's own scene (a scene of --split) rendered in the\n"
            "                        style and VAE-encoded is preferred to the model's sample\n"
            "                        for that prompt; every candidate is kept, the rater only\n"
            "                        records its utilities; the file's metadata 'style' says\n"
            "                        NAME. Not with --different-prompts > 0 (both images\n"
            "                        answer one prompt); --max-attempts is not used\n"
            CLI_COMMON_HELP
            "\n"
            "Prints a summary on stdout (with --style: the outline score of the decoded\n"
            "winners and samples). Exit status: 0 ok, 1 failure, 2 usage error.\n",
            DA_PAIRS_MAX_N);
}

/* a finite number in [lo, hi] */
static int parse_float_in(const char *opt, const char *val, float lo, float hi, float *out)
{
    char want[80];
    snprintf(want, sizeof want, "a number in [%g, %g]", (double)lo, (double)hi);
    float v;
    if (cli_parse_float(val, &v) || v < lo || v > hi) return cli_bad_value(CMD, opt, val, want);
    *out = v;
    return 0;
}

enum {
    OPT_WEIGHTS = CLI_O_LOCAL, OPT_UNET, OPT_N, OPT_BATCH, OPT_MAX_ATTEMPTS, OPT_DIFFERENT_PROMPTS, OPT_STYLE,
    OPT_SPLIT,
};
static const struct option LONG_OPTS[] = {
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"unet", required_argument, 0, OPT_UNET},
    {"output", required_argument, 0, 'o'},
    {"n", required_argument, 0, OPT_N},
    {"batch", required_argument, 0, OPT_BATCH},
    {"max-attempts", required_argument, 0, OPT_MAX_ATTEMPTS},
    {"different-prompts", required_argument, 0, OPT_DIFFERENT_PROMPTS},
    {"seed", required_argument, 0, 's'},
    {"style", required_argument, 0, OPT_STYLE},
    {"split", required_argument, 0, OPT_SPLIT},
    CLI_SAMPLE_LONG,
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* one option of code c with its value: 0, or the exit code of a usage error */
static int parse_option(pairs_args *a, const cli_parser *p, int c)
{
    da_pairs_config *cf = &a->cfg;
    const char *opt = p->opt, *val = p->val;
    int rc = cli_sample_opt(p, c, &cf->opts);
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case OPT_WEIGHTS: a->weights = val; return 0;
    case OPT_UNET: cf->unet_name = val; return 0;
    case 'o': a->out = val; return 0;
    case OPT_N:
        a->have_n = 1;
        return cli_parse_int_in(CMD, opt, val, 1, DA_PAIRS_MAX_N, &cf->n);
    case OPT_BATCH: return cli_parse_int_in(CMD, opt, val, 1, DA_PAIRS_MAX_BATCH, &cf->batch);
    case OPT_MAX_ATTEMPTS: return cli_parse_int_in(CMD, opt, val, 1, 1000, &cf->max_attempts);
    case OPT_DIFFERENT_PROMPTS: return parse_float_in(opt, val, 0.0f, 1.0f, &cf->different_prompt_fraction);
    case 's': return cli_parse_seed(CMD, opt, val, &cf->seed);
    case OPT_STYLE:
        if (da_style_parse(val, &a->style) != DA_OK) return cli_bad_value(CMD, opt, val, "outline or plain");
        a->have_style = 1;
        return 0;
    case OPT_SPLIT:
        if (strcmp(val, "train") && strcmp(val, "heldout")) return cli_bad_value(CMD, opt, val, "train or heldout");
        cf->split = strcmp(val, "train") ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN;
        return 0;
    default: return cli_unhandled(p);
    }
}

/* -1 to go on, else an exit code (0 after --help) */
static int parse_args(pairs_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cfg = da_pairs_config_default();
    cli_parser p = cli_parser_init(CMD, argc, argv, "o:s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = parse_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign pairs: unexpected argument '%s' (see dalign pairs --help)\n", argv[p.optind]);
        return 2;
    }
    a->cfg.progress = !p.common.quiet;
    if (!a->have_n || !a->out) {
        fprintf(stderr, "dalign pairs: %s is required (see dalign pairs --help)\n", !a->have_n ? "--n N" : "-o FILE");
        return 2;
    }
    if (a->have_style && a->cfg.different_prompt_fraction > 0.0f) {
        fprintf(stderr, "dalign pairs: --style pairs a render with a sample of the same prompt: "
                        "--different-prompts must be 0, not %g\n", (double)a->cfg.different_prompt_fraction);
        return 2;
    }
    a->cfg.weights = da_weights_dir(a->weights);   /* recorded in the file as given */
    if (da_pairs_config_check(&a->cfg) != DA_OK) {
        fprintf(stderr, "dalign pairs: %s\n", da_last_error());
        return 2;
    }
    return -1;
}

/* The file is written only after all the sampling, so find an unwritable
 * -o now: da_st_write goes through FILE.tmp.<pid> beside FILE and renames
 * it, so create and remove exactly that. 0, or exit status 1 after a
 * message naming the path. */
static int check_output(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "dalign pairs: cannot write -o %s: it is a directory\n", path);
        return 1;
    }
    return cli_check_writable(CMD, path, path);
}

static void summary(const da_pairs *pr, const char *path, double seconds)
{
    double uw = 0.0, ul = 0.0;
    int higher = 0;
    for (int i = 0; i < pr->n; i++) {
        uw += pr->utility_w[i];
        ul += pr->utility_l[i];
        higher += pr->utility_w[i] > pr->utility_l[i];
    }
    printf("pairs kept        %d (of %ld candidates; %ld ties dropped)\n", pr->n, pr->candidates, pr->ties_dropped);
    printf("mean utility      winner %.4f, loser %.4f\n", uw / pr->n, ul / pr->n);
    printf("winner's u higher %.3f (%d of %d; the others are the rater's label noise)\n", (double)higher / pr->n,
           higher, pr->n);
    printf("wall time         %.1f s\n", seconds);
    printf("wrote             %s\n", path);
}

/* mean outline reward of the images the latents (n, C, h, w) decode to and
 * how many reach DA_REPORT_STYLE_THRESHOLD; decoded `batch` at a time */
static da_status outline_of_latents(da_pipeline *p, const da_reward *outline, const float *latents, int n,
                                    int batch, double *mean, int *in_style)
{
    size_t per = (size_t)p->vae->cfg.latent_channels * p->latent_h * p->latent_w;
    float *img = malloc((size_t)batch * DA_IMG_FLOATS * sizeof(float)), *score = malloc((size_t)batch * sizeof(float));
    da_status s = img && score ? DA_OK : da_fail(DA_ERR_NOMEM, "out of memory");
    double sum = 0.0;
    *in_style = 0;
    for (int i0 = 0; i0 < n && s == DA_OK; i0 += batch) {
        int b = n - i0 < batch ? n - i0 : batch;
        s = da_pipeline_decode(p, latents + (size_t)i0 * per, b, img);
        if (s == DA_OK) s = da_reward_score(outline, img, NULL, b, score);
        for (int k = 0; k < b && s == DA_OK; k++) {
            sum += score[k];
            *in_style += score[k] >= DA_REPORT_STYLE_THRESHOLD;
        }
    }
    *mean = n ? sum / n : 0.0;
    free(img);
    free(score);
    return s;
}

/* what style pairs teach: the outline of decoded winners against the samples, and what the rater says */
static da_status style_summary(da_pipeline *p, const da_pairs *pr, int batch, const char *path, double seconds)
{
    da_reward *outline;
    double ow = 0.0, ol = 0.0, uw = 0.0, ul = 0.0;
    int sw = 0, sl = 0, higher = 0;
    da_status s = da_reward_create(&outline, "outline", NULL);
    if (s == DA_OK) s = outline_of_latents(p, outline, pr->latents_w, pr->n, batch, &ow, &sw);
    if (s == DA_OK) s = outline_of_latents(p, outline, pr->latents_l, pr->n, batch, &ol, &sl);
    da_reward_free(outline);
    if (s != DA_OK) return s;
    for (int i = 0; i < pr->n; i++) {
        uw += pr->utility_w[i];
        ul += pr->utility_l[i];
        higher += pr->utility_w[i] > pr->utility_l[i];
    }
    printf("style pairs       %d (style %s; every candidate kept)\n", pr->n, pr->style);
    printf("outline score     winner %.4f, sample %.4f (decoded; >= %g: %d vs %d of %d)\n", ow, ol,
           (double)DA_REPORT_STYLE_THRESHOLD, sw, sl, pr->n);
    printf("mean utility      winner %.4f, sample %.4f\n", uw / pr->n, ul / pr->n);
    printf("rater agrees      %.3f (%d of %d: the winner's u is higher; the rest is what the style costs)\n",
           (double)higher / pr->n, higher, pr->n);
    printf("wall time         %.1f s\n", seconds);
    printf("wrote             %s\n", path);
    return DA_OK;
}

/* the rater-labelled pairs or, with --style, the style pairs; written to a->out */
static da_status make_pairs(da_pipeline *pipe, const pairs_args *a, da_pairs *pr)
{
    da_status s = a->have_style ? da_style_pairs_generate(pipe, &a->cfg, a->style, pr)
                                : da_pairs_generate(pipe, &a->cfg, pr);
    return s == DA_OK ? da_pairs_save(pr, a->out) : s;
}

static void announce(const pairs_args *a, const char *dir)
{
    const da_pairs_config *c = &a->cfg;
    char kind[64];
    if (a->have_style) snprintf(kind, sizeof kind, "style %s", da_style_name(a->style));
    else snprintf(kind, sizeof kind, "different prompts %g", (double)c->different_prompt_fraction);
    fprintf(stderr, "pairs: weights %s (unet %s), %d pairs, split %s, %s %d steps, cfg %g, batch %d, %s, seed %llu, "
                    "%d threads\n",
            dir, c->unet_name, c->n, c->split == DA_SPLIT_TRAIN ? "train" : "heldout", da_sampler_name(c->opts.sampler),
            c->opts.steps, (double)c->opts.cfg, c->batch, kind, (unsigned long long)c->seed, da_get_threads());
}

int cmd_pairs(int argc, char **argv)
{
    pairs_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    if (check_output(a.out)) return 1;
    const char *dir = a.cfg.weights;
    double t0 = da_now_s();
    da_pipeline *pipe;
    if (da_weights_load_pipeline(&pipe, dir, a.cfg.unet_name) != DA_OK) {
        fprintf(stderr, "dalign pairs: %s\n", da_last_error());
        return 1;
    }
    if (a.cfg.progress) announce(&a, dir);
    da_pairs pr;
    da_status s = make_pairs(pipe, &a, &pr);
    if (s == DA_OK && a.have_style) s = style_summary(pipe, &pr, a.cfg.batch, a.out, da_now_s() - t0);
    else if (s == DA_OK) summary(&pr, a.out, da_now_s() - t0);
    if (s != DA_OK) fprintf(stderr, "dalign pairs: %s\n", da_last_error());
    da_pairs_free(&pr);
    da_pipeline_free(pipe);
    return s == DA_OK ? 0 : 1;
}
