/* dalign eval-base: faithfulness of the base text-to-image model on held-in
 * and held-out prompts, per clause type, and the VAE's reconstruction PSNR
 * (src/eval/eval.c, docs/evaluation-base.md). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"

typedef struct eval_args {
    const char *weights, *unet, *out;
    da_eval_config cfg;
} eval_args;

static const char CMD[] = "eval-base";   /* the prefix of every message */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign eval-base [options]  (--opt=value works too)\n"
            "\n"
            "Evaluate the base text-to-image model: generate images for held-in (train split)\n"
            "and held-out prompts of the shapes world, score each with the detector's\n"
            "faithfulness per clause, and measure the VAE's reconstruction PSNR.\n"
            "\n"
            "Options:\n"
            "  --weights DIR       weights directory (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --unet NAME|FILE    a UNet in DIR (NAME.{json,safetensors}, default unet) or a\n"
            "                      FILE.safetensors with its config FILE.json beside it\n"
            "  --n-prompts N       prompts per split (default 200); the same option as eval's\n"
            "                      --n-prompts. Both splits' prompts are always used, so\n"
            "                      eval-base takes no prompt source (eval's --prompts SRC is\n"
            "                      refused here, as is its old spelling --prompts N)\n"
            "  --seeds K           images per prompt (default 4)\n"
            "  --steps S           sampler steps (default 20)\n"
            "  --cfg W             guidance weight (default 3); alias --cfg-scale\n"
            "  --sampler NAME      ddim, ddpm or euler (default ddim); alias --sampling-method\n"
            "  --eta E             DDIM eta (default 0)\n"
            "  --batch B           images per pipeline call (default 8; speed only: an\n"
            "                      image's bits do not depend on its batch)\n"
            "  --recon N           held-out images for the VAE PSNR (default 200; 0 skips)\n"
            "  --grid-prompts G    prompts per split in grid.png (default 4)\n"
            "  --prompt-seed P     prompt selection seed (default %u; held-out uses P + 1)\n"
            "  -s, --seed S        image seed base (default %u; -1: random, printed)\n"
            "  -o, --output DIR    output directory (default out/eval-base; checked before\n"
            "                      sampling)\n"
            CLI_COMMON_HELP
            "\n"
            "Writes DIR/metrics.json, DIR/table.md, DIR/grid.png, DIR/grid.txt, DIR/prompts.tsv,\n"
            "then the completion marker DIR/" DA_EVAL_DONE " last (removed first): a folder without it\n"
            "is unfinished. Prints the table on stdout. Exit status: 0 ok, 1 failure, 2 usage error.\n",
            DA_EVAL_PROMPT_SEED, DA_EVAL_IMAGE_SEED);
}

enum {
    OPT_WEIGHTS = CLI_O_LOCAL, OPT_UNET, OPT_N_PROMPTS, OPT_OLD_PROMPTS, OPT_SEEDS, OPT_BATCH, OPT_RECON,
    OPT_GRID_PROMPTS, OPT_PROMPT_SEED,
};
static const struct option LONG_OPTS[] = {
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"unet", required_argument, 0, OPT_UNET},
    {"output", required_argument, 0, 'o'},
    {"n-prompts", required_argument, 0, OPT_N_PROMPTS},
    {"prompts", required_argument, 0, OPT_OLD_PROMPTS},
    {"seeds", required_argument, 0, OPT_SEEDS},
    {"batch", required_argument, 0, OPT_BATCH},
    {"recon", required_argument, 0, OPT_RECON},
    {"grid-prompts", required_argument, 0, OPT_GRID_PROMPTS},
    {"prompt-seed", required_argument, 0, OPT_PROMPT_SEED},
    {"seed", required_argument, 0, 's'},
    CLI_SAMPLE_LONG,
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* eval-base always evaluates both splits; --prompts is eval's prompt
 * source (heldin|heldout|FILE), so here it is refused rather than read as
 * a count (the spelling eval-base used to have) */
static int refuse_prompts(const cli_parser *p)
{
    fprintf(stderr, "dalign eval-base: %s '%s': eval-base evaluates both splits' prompts and takes no prompt "
                    "source (that is eval's --prompts heldin|heldout|FILE); the number of prompts per split is "
                    "--n-prompts N\n", p->opt, p->val);
    return 2;
}

/* one option of code c with its value: 0, or the exit code of a usage error */
static int parse_option(eval_args *a, const cli_parser *p, int c)
{
    da_eval_config *cf = &a->cfg;
    const char *opt = p->opt, *val = p->val;
    int rc = cli_sample_opt(p, c, &cf->opts);
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case OPT_WEIGHTS: a->weights = val; return 0;
    case OPT_UNET: a->unet = val; return 0;
    case 'o': a->out = val; return 0;
    case OPT_N_PROMPTS: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_PROMPTS, &cf->n_prompts);
    case OPT_OLD_PROMPTS: return refuse_prompts(p);
    case OPT_SEEDS: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_SEEDS, &cf->n_seeds);
    case OPT_BATCH: return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_BATCH, &cf->batch);
    case OPT_RECON: return cli_parse_int_in(CMD, opt, val, 0, DA_EVAL_MAX_PROMPTS, &cf->n_recon);
    case OPT_GRID_PROMPTS: return cli_parse_int_in(CMD, opt, val, 0, 16, &cf->grid_prompts);
    case OPT_PROMPT_SEED: return cli_parse_seed(CMD, opt, val, &cf->prompt_seed);
    case 's': return cli_parse_seed(CMD, opt, val, &cf->image_seed);
    default: return cli_unhandled(p);
    }
}

/* -1 to go on, else an exit code (0 after --help) */
static int parse_args(eval_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cfg = da_eval_config_default();
    a->unet = "unet";
    a->out = "out/eval-base";
    cli_parser p = cli_parser_init(CMD, argc, argv, "o:s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = parse_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign eval-base: unexpected argument '%s' (see dalign eval-base --help)\n", argv[p.optind]);
        return 2;
    }
    a->cfg.progress = !p.common.quiet;
    return -1;
}

/* -o DIR, created now and written to once, so that a directory that cannot
 * be made or written is found before the sampling, not after it (as eval) */
static int prepare_output(const char *dir)
{
    char metrics[4096];   /* the first file da_eval_write writes */
    if (da_make_dirs(dir) != DA_OK) {
        fprintf(stderr, "dalign eval-base: cannot write -o %s: %s\n", dir, da_last_error());
        return 1;
    }
    snprintf(metrics, sizeof metrics, "%s/metrics.json", dir);   /* too long: cli_check_writable says so */
    return cli_check_writable(CMD, dir, metrics);
}

int cmd_eval_base(int argc, char **argv)
{
    eval_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    if (da_eval_config_check(&a.cfg) != DA_OK) {
        fprintf(stderr, "dalign eval-base: %s\n", da_last_error());
        return 2;
    }
    if (prepare_output(a.out)) return 1;
    const char *dir = da_weights_dir(a.weights);
    double t0 = da_now_s();
    da_pipeline *pipe;
    if (da_weights_load_pipeline(&pipe, dir, a.unet) != DA_OK) {
        fprintf(stderr, "dalign eval-base: %s\n", da_last_error());
        return 1;
    }
    if (a.cfg.progress)
        fprintf(stderr, "eval-base: weights %s (unet %s), %d prompts x %d seeds per split, %s %d steps, cfg %g, "
                        "batch %d, %d threads\n",
                dir, a.unet, a.cfg.n_prompts, a.cfg.n_seeds, da_sampler_name(a.cfg.opts.sampler), a.cfg.opts.steps,
                (double)a.cfg.opts.cfg, a.cfg.batch, da_get_threads());
    da_eval_result r;
    da_status s = da_eval_base_run(pipe, &a.cfg, &r);
    if (s == DA_OK) s = da_eval_write(a.out, &a.cfg, &r, dir, a.unet);
    if (s == DA_OK) {
        da_eval_table(stdout, &r);
        if (r.n_recon) printf("\nVAE PSNR (%d held-out images): %.2f dB\n", r.n_recon, r.psnr);
        if (a.cfg.progress)
            fprintf(stderr, "eval-base: generation %.1f s (%.2f images/s), VAE %.1f s, total %.1f s; wrote %s/\n",
                    r.seconds_generate, 2.0 * a.cfg.n_prompts * a.cfg.n_seeds / fmax(r.seconds_generate, 1e-9),
                    r.seconds_recon, da_now_s() - t0, a.out);
    } else {
        fprintf(stderr, "dalign eval-base: %s\n", da_last_error());
    }
    da_eval_result_free(&r);
    da_pipeline_free(pipe);
    return s == DA_OK ? 0 : 1;
}
