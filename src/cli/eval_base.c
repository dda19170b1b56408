/* dalign eval-base: faithfulness of the base text-to-image model on held-in
 * and held-out prompts, per clause type, and the VAE's reconstruction PSNR
 * (src/eval/eval.c, docs/evaluation-base.md). */
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
            "Usage: dalign eval-base [options]\n"
            "\n"
            "Evaluate the base text-to-image model: generate images for held-in (train split)\n"
            "and held-out prompts of the shapes world, score each with the detector's\n"
            "faithfulness per clause, and measure the VAE's reconstruction PSNR.\n"
            "\n"
            "Options:\n"
            "  --weights DIR       weights directory (default: $DALIGN_WEIGHTS, else ./weights)\n"
            "  --unet NAME         UNet files DIR/NAME.{json,safetensors} (default unet)\n"
            "  --prompts N         prompts per split (default 200)\n"
            "  --seeds K           images per prompt (default 4)\n"
            "  --steps S           sampler steps (default 20)\n"
            "  --cfg W             guidance weight (default 3)\n"
            "  --sampler NAME      ddim, ddpm or euler (default ddim)\n"
            "  --batch B           images per pipeline call (default 8; speed only: an\n"
            "                      image's bits do not depend on its batch)\n"
            "  --recon N           held-out images for the VAE PSNR (default 200; 0 skips)\n"
            "  --grid-prompts G    prompts per split in grid.png (default 4)\n"
            "  --prompt-seed P     prompt selection seed (default %u; held-out uses P + 1)\n"
            "  --seed S            image seed base (default %u)\n"
            "  -o, --output DIR    output directory (default out/eval-base)\n"
            "  -q, --quiet         no progress on stderr\n"
            "  -h, --help          show this help and exit\n"
            "\n"
            "Writes DIR/metrics.json, DIR/table.md, DIR/grid.png, DIR/grid.txt, DIR/prompts.tsv\n"
            "and prints the table on stdout. Exit status: 0 ok, 1 failure, 2 usage error.\n",
            DA_EVAL_PROMPT_SEED, DA_EVAL_IMAGE_SEED);
}

/* one option with its value: 0, CLI_NOT_MINE, or the exit code of a usage error */
static int parse_option(void *args, const char *opt, const char *val)
{
    eval_args *a = args;
    da_eval_config *c = &a->cfg;
    int rc = cli_parse_sample_option(CMD, opt, val, &c->opts);
    if (rc != CLI_NOT_MINE) return rc;
    if (!strcmp(opt, "--weights")) a->weights = val;
    else if (!strcmp(opt, "--unet")) a->unet = val;
    else if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) a->out = val;
    else if (!strcmp(opt, "--prompts")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_PROMPTS, &c->n_prompts);
    else if (!strcmp(opt, "--seeds")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_SEEDS, &c->n_seeds);
    else if (!strcmp(opt, "--batch")) return cli_parse_int_in(CMD, opt, val, 1, DA_EVAL_MAX_BATCH, &c->batch);
    else if (!strcmp(opt, "--recon")) return cli_parse_int_in(CMD, opt, val, 0, DA_EVAL_MAX_PROMPTS, &c->n_recon);
    else if (!strcmp(opt, "--grid-prompts")) return cli_parse_int_in(CMD, opt, val, 0, 16, &c->grid_prompts);
    else if (!strcmp(opt, "--prompt-seed")) return cli_parse_seed(CMD, opt, val, &c->prompt_seed);
    else if (!strcmp(opt, "--seed")) return cli_parse_seed(CMD, opt, val, &c->image_seed);
    else return CLI_NOT_MINE;
    return 0;
}

/* -1 to go on, else an exit code (0 after --help) */
static int parse_args(eval_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->cfg = da_eval_config_default();
    a->cfg.progress = 1;
    a->unet = "unet";
    a->out = "out/eval-base";
    return cli_parse_options(CMD, argc, argv, usage, parse_option, a, &a->cfg.progress);
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
    const char *dir = da_weights_dir(a.weights);
    double t0 = da_now_s();
    da_pipeline *pipe;
    if (da_pipeline_load(&pipe, dir, a.unet) != DA_OK) {
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
