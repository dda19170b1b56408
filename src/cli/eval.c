/* dalign eval: every reward, faithfulness per clause type, the rater and the
 * diversity across seeds of a model's samples, with an HTML report
 * (src/eval/report.c, docs/evaluation.md "dalign eval"). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"

typedef struct eval_args {
    const char *weights, *unet, *out;
    da_report_config cfg;
    cli_loop_args loop;
} eval_args;

static const char CMD[] = "eval";   /* the prefix of every message */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign eval [options] --prompts heldin|heldout|FILE -o DIR\n"
            "\n"
            "Sample K seeds of every prompt and report, each with a mean and a 95%% interval\n"
            "clustered by prompt: every reward\n"
            "(" DA_REWARD_NAMES "),\n"
            "the share of images in the outline style (outline >= %g, the threshold that\n"
            "tells VAE round trips of outline renders from plain ones), faithfulness per\n"
            "clause type, the synthetic rater's utility (the held-back judge, never\n"
            "optimised) and diversity (mean 1 - cos of CLIP image embeddings over the seed\n"
            "pairs of a prompt). Same inputs, same numbers.\n"
            "\n"
            "Options:\n"
            "  --weights DIR       weights directory (default: $DALIGN_WEIGHTS, else ./weights)\n"
            "  --unet NAME|FILE    a UNet in DIR (NAME.{json,safetensors}, default unet) or a\n"
            "                      FILE.safetensors with its config FILE.json beside it\n"
            CLI_LOOP_HELP
            "                     (the scores judge each image against its query, never\n"
            "                     against the prompt the refiner wrote)\n"
            "  --prompts SRC       heldin or heldout (the evaluation prompts of that split) or a\n"
            "                      file, one prompt per line, # comments (default heldout)\n"
            "  --n-prompts N       prompts (default: %d of a split, every prompt of a file)\n"
            "  --seeds K           images per prompt, 1..%d (default 4; K = 1: no diversity)\n"
            "  --rewards LIST      comma-separated rewards to score (default: all; the style\n"
            "                      share is reported when outline is among them)\n"
            "  --steps S           sampler steps (default 20)\n"
            "  --cfg W             guidance weight (default 3)\n"
            "  --sampler NAME      ddim, ddpm or euler (default ddim)\n"
            "  --eta E             DDIM eta (default 0)\n"
            "  --batch B           images per pipeline call (default 8; speed only: an\n"
            "                      image's bits do not depend on its batch)\n"
            "  --grid-prompts G    rows of grid.png (default 8)\n"
            "  --seed S            image seed base (default %u)\n"
            "  --prompt-seed P     prompt selection seed of heldin/heldout (default %u)\n"
            "  -o, --output DIR    output directory (default out/eval)\n"
            "  -q, --quiet         no progress on stderr\n"
            "  -h, --help          show this help and exit\n"
            "\n"
            "Writes DIR/metrics.json, DIR/images.tsv, DIR/grid.png and DIR/index.html (open\n"
            "it in a browser) and prints the metrics table on stdout. Compare two runs with\n"
            "dalign compare A/metrics.json B/metrics.json.\n"
            "Exit status: 0 ok, 1 failure, 2 usage error.\n",
            (double)DA_REPORT_STYLE_THRESHOLD, DA_REPORT_SPLIT_PROMPTS, DA_EVAL_MAX_SEEDS, DA_EVAL_IMAGE_SEED,
            DA_EVAL_PROMPT_SEED);
}

/* heldin, heldout or a regular file that can be opened (a directory passes
 * access() but fails only later, when it is read) */
static int parse_prompts(const char *val, const char **out)
{
    *out = val;
    if (!strcmp(val, "heldin") || !strcmp(val, "heldout")) return 0;
    struct stat sb;
    if (stat(val, &sb) != 0 || access(val, R_OK) != 0) {
        fprintf(stderr, "dalign eval: --prompts '%s' is not heldin, heldout or a readable file (%s)\n", val,
                strerror(errno));
        return 2;
    }
    if (!S_ISREG(sb.st_mode)) {
        fprintf(stderr, "dalign eval: --prompts '%s' is a %s, not a prompt file (one prompt per line)\n", val,
                S_ISDIR(sb.st_mode) ? "directory" : "special file");
        return 2;
    }
    return 0;
}

/* -o DIR, created now and written to once, so that a directory that cannot
 * be made or written is found before the sampling, not after it */
static int prepare_output(const char *dir)
{
    char metrics[4096];   /* the first file da_report_write writes */
    if (da_make_dirs(dir) != DA_OK) {
        fprintf(stderr, "dalign eval: -o %s: %s\n", dir, da_last_error());
        return 1;
    }
    snprintf(metrics, sizeof metrics, "%s/metrics.json", dir);   /* too long: cli_check_writable says so */
    return cli_check_writable(CMD, dir, metrics);
}

/* one option with its value: 0, CLI_NOT_MINE, or the exit code of a usage error */
static int parse_option(void *args, const char *opt, const char *val)
{
    eval_args *a = args;
    da_report_config *c = &a->cfg;
    int rc = cli_parse_sample_option(CMD, opt, val, &c->opts);
    if (rc != CLI_NOT_MINE) return rc;
    if (!strcmp(opt, "--weights")) a->weights = val;
    else if (!strcmp(opt, "--unet")) a->unet = val;
    else if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) a->out = val;
    else if (!strcmp(opt, "--prompts")) return parse_prompts(val, &c->prompts);
    else if (!strcmp(opt, "--n-prompts")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_PROMPTS, &c->n_prompts);
    else if (!strcmp(opt, "--seeds")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_SEEDS, &c->n_seeds);
    else if (!strcmp(opt, "--batch")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_BATCH, &c->batch);
    else if (!strcmp(opt, "--grid-prompts"))
        return cli_parse_int_in(CMD, opt, val, 0, DA_REPORT_MAX_GRID, &c->grid_prompts);
    else if (!strcmp(opt, "--seed")) return cli_parse_seed(CMD, opt, val, &c->image_seed);
    else if (!strcmp(opt, "--prompt-seed")) return cli_parse_seed(CMD, opt, val, &c->prompt_seed);
    else if (!strcmp(opt, "--rewards")) {
        if (da_report_parse_rewards(val, &c->rewards) != DA_OK) {
            fprintf(stderr, "dalign eval: --rewards: %s\n", da_last_error());
            return 2;
        }
    } else {
        return cli_parse_loop_option(CMD, opt, val, &a->loop);
    }
    return 0;
}

/* -1 to go on, else an exit code (0 after --help) */
static int parse_args(eval_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cfg = da_report_config_default();
    a->cfg.progress = 1;
    a->unet = "unet";
    a->out = "out/eval";
    a->loop.opts = da_loop_opts_default();
    int rc = cli_parse_options(CMD, argc, argv, usage, parse_option, a, &a->cfg.progress);
    if (rc >= 0) return rc;
    rc = cli_check_loop_args(CMD, &a->loop, &a->cfg.opts);
    a->cfg.loop = a->loop.opts;
    a->cfg.refiner_name = a->loop.refiner;
    return rc ? rc : -1;
}

/* a failure after the options were accepted: exit 1 with the library's message */
static int fail(void)
{
    fprintf(stderr, "dalign eval: %s\n", da_last_error());
    return 1;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    if (da_report_config_check(&a.cfg) != DA_OK) {
        fprintf(stderr, "dalign eval: %s\n", da_last_error());
        return 2;
    }
    const char *dir = da_weights_dir(a.weights);
    da_report_result r;
    da_report_models m;
    memset(&m, 0, sizeof m);
    /* the prompts and the output directory first: a bad prompt file or an
     * unwritable -o fails before the models load and the sampling */
    rc = 0;
    if (da_report_init(&r, &a.cfg) != DA_OK) rc = fail();
    if (!rc) rc = prepare_output(a.out);
    if (!rc && da_report_models_load(&m, dir, a.unet, a.cfg.rewards) != DA_OK) rc = fail();
    da_refiner *ref = NULL;
    if (!rc && a.loop.refiner && da_weights_load_refiner(&ref, dir, a.loop.refiner) != DA_OK) rc = fail();
    a.cfg.refiner = ref;
    if (!rc && a.cfg.progress)
        fprintf(stderr, "eval: weights %s (unet %s), %s: %d prompts x %d seeds, %s %d steps, cfg %g, batch %d, "
                        "%d threads\n",
                dir, a.unet, a.cfg.prompts, r.n_prompts, r.n_seeds, da_sampler_name(a.cfg.opts.sampler),
                a.cfg.opts.steps, (double)a.cfg.opts.cfg, a.cfg.batch, da_get_threads());
    if (!rc && a.cfg.progress && ref)
        fprintf(stderr, "eval: refiner %s, mode %s, %d refinement(s), temperature %g\n", a.loop.refiner,
                da_refine_mode_name(a.cfg.loop.mode), da_loop_n_refine(&a.cfg.loop), (double)a.cfg.loop.temperature);
    if (!rc && da_report_run(&r, &m, &a.cfg) != DA_OK) rc = fail();
    if (!rc && da_report_write(a.out, &a.cfg, &r, dir, a.unet) != DA_OK) rc = fail();
    if (!rc) {
        da_report_table(stdout, &r);
        printf("\nreport: %s/index.html\n", a.out);
        if (a.cfg.progress)
            fprintf(stderr, "eval: %d images in %.1f s (%.2f images/s); wrote %s/\n", r.n_prompts * r.n_seeds,
                    r.seconds, r.n_prompts * r.n_seeds / fmax(r.seconds, 1e-9), a.out);
    }
    da_report_models_free(&m);
    da_report_result_free(&r);
    da_refiner_free(ref);
    return rc;
}
