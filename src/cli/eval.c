/* dalign eval: every reward, faithfulness per clause type, the rater and the
 * diversity across seeds of a model's samples, with an HTML report
 * (src/eval/report.c, docs/evaluation.md "dalign eval"). */
#include <errno.h>
#include <getopt.h>
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
            "Usage: dalign eval [options] --prompts heldin|heldout|FILE -o DIR  (--opt=value works too)\n"
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
            "  --weights DIR       weights directory (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --unet NAME|FILE    a UNet in DIR (NAME.{json,safetensors}, default unet) or a\n"
            "                      FILE.safetensors with its config FILE.json beside it\n"
            CLI_LOOP_HELP
            "                     (the scores judge each image against its query, never\n"
            "                     against the prompt the refiner wrote)\n"
            "  --prompts SRC       which prompts: heldin or heldout (the evaluation prompts of\n"
            "                      that split) or a file, one prompt per line, # comments\n"
            "                      (default heldout); eval-base takes no prompt source\n"
            "  --n-prompts N       how many prompts (default: %d of a split, every prompt of a\n"
            "                      file); the same option as eval-base's --n-prompts\n"
            "  --seeds K           images per prompt, 1..%d (default 4; K = 1: no diversity)\n"
            "  --rewards LIST      comma-separated rewards to score (default: all; the style\n"
            "                      share is reported when outline is among them)\n"
            "  --steps S           sampler steps (default 20)\n"
            "  --cfg W             guidance weight (default 3); alias --cfg-scale\n"
            "  --sampler NAME      ddim, ddpm or euler (default ddim); alias --sampling-method\n"
            "  --eta E             DDIM eta (default 0)\n"
            "  --batch B           images per pipeline call (default 8; speed only: an\n"
            "                      image's bits do not depend on its batch)\n"
            "  --grid-prompts G    rows of grid.png (default 8)\n"
            "  -s, --seed S        image seed base (default %u; -1: random, printed)\n"
            "  --prompt-seed P     prompt selection seed of heldin/heldout (default %u)\n"
            "  -o, --output DIR    output directory (default out/eval; checked before sampling)\n"
            CLI_COMMON_HELP
            "\n"
            "Writes DIR/metrics.json, DIR/images.tsv, DIR/grid.png and DIR/index.html (open\n"
            "it in a browser), then the completion marker DIR/" DA_EVAL_DONE " last (removed first):\n"
            "a folder without it is unfinished. Prints the metrics table on stdout.\n"
            "Compare two runs with dalign compare A/metrics.json B/metrics.json.\n"
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

enum {
    OPT_WEIGHTS = CLI_O_LOCAL, OPT_UNET, OPT_PROMPTS, OPT_N_PROMPTS, OPT_SEEDS, OPT_BATCH, OPT_GRID_PROMPTS,
    OPT_PROMPT_SEED, OPT_REWARDS,
};
static const struct option LONG_OPTS[] = {
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"unet", required_argument, 0, OPT_UNET},
    {"output", required_argument, 0, 'o'},
    {"prompts", required_argument, 0, OPT_PROMPTS},
    {"n-prompts", required_argument, 0, OPT_N_PROMPTS},
    {"seeds", required_argument, 0, OPT_SEEDS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"grid-prompts", required_argument, 0, OPT_GRID_PROMPTS},
    {"seed", required_argument, 0, 's'},
    {"prompt-seed", required_argument, 0, OPT_PROMPT_SEED},
    {"rewards", required_argument, 0, OPT_REWARDS},
    CLI_SAMPLE_LONG,
    CLI_LOOP_LONG,
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* one option of code c with its value: 0, or the exit code of a usage error */
static int parse_option(eval_args *a, const cli_parser *p, int c)
{
    da_report_config *cf = &a->cfg;
    const char *opt = p->opt, *val = p->val;
    int rc = cli_sample_opt(p, c, &cf->opts);
    if (rc == CLI_NOT_MINE) rc = cli_loop_opt(p, c, &a->loop);
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case OPT_WEIGHTS: a->weights = val; return 0;
    case OPT_UNET: a->unet = val; return 0;
    case 'o': a->out = val; return 0;
    case OPT_PROMPTS: return parse_prompts(val, &cf->prompts);
    case OPT_N_PROMPTS: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_PROMPTS, &cf->n_prompts);
    case OPT_SEEDS: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_SEEDS, &cf->n_seeds);
    case OPT_BATCH: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_BATCH, &cf->batch);
    case OPT_GRID_PROMPTS: return cli_parse_int_in(CMD, opt, val, 0, DA_REPORT_MAX_GRID, &cf->grid_prompts);
    case 's': return cli_parse_seed(CMD, opt, val, &cf->image_seed);
    case OPT_PROMPT_SEED: return cli_parse_seed(CMD, opt, val, &cf->prompt_seed);
    case OPT_REWARDS:
        if (da_report_parse_rewards(val, &cf->rewards) != DA_OK) {
            fprintf(stderr, "dalign eval: %s: %s\n", opt, da_last_error());
            return 2;
        }
        return 0;
    default: return cli_unhandled(p);
    }
}

/* -1 to go on, else an exit code (0 after --help) */
static int parse_args(eval_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cfg = da_report_config_default();
    a->unet = "unet";
    a->out = "out/eval";
    a->loop.opts = da_loop_opts_default();
    cli_parser p = cli_parser_init(CMD, argc, argv, "o:s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = parse_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign eval: unexpected argument '%s' (see dalign eval --help)\n", argv[p.optind]);
        return 2;
    }
    a->cfg.progress = !p.common.quiet;
    int rc = cli_check_loop_args(CMD, &a->loop, &a->cfg.opts);
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
    if ((rc = cli_loop_resolve(CMD, &a.loop, dir, a.cfg.opts.steps, !a.cfg.progress))) return rc;
    a.cfg.loop = a.loop.opts;
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
    if (!rc && a.cfg.progress && ref) {
        char when[128];
        da_loop_steps_text(&a.cfg.loop, a.cfg.opts.steps, when, sizeof when);
        fprintf(stderr, "eval: refiner %s, mode %s, %d refinement(s) (%s), temperature %g, keep meaning %s\n",
                a.loop.refiner, da_refine_mode_name(a.cfg.loop.mode), da_loop_n_refine(&a.cfg.loop), when,
                (double)a.cfg.loop.temperature, a.cfg.loop.keep_meaning ? "on" : "off");
    }
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
