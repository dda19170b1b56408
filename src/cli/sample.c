/* dalign sample: text -> image(s) with the pipeline (docs/pipeline.md).
 * --prompt may repeat: image p*n + k is prompt p with seed + k, so every
 * prompt gets the same seeds and a grid has one row per prompt. Images are
 * generated in chunks of CHUNK. With --refiner a PromptLoop refiner rewrites
 * each prompt while sampling (docs/promptloop.md); -v then prints the prompt
 * of every refinement and draws the loop: OUT-loop.png, one row per image,
 * the decoded x̂0 the refiner read at each refinement, then the image. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"

#define CHUNK 16          /* images per pipeline call: bounds the memory */
#define MAX_N 4096
#define MAX_SCALE 64
#define MAX_PROMPTS 64

typedef struct sample_args {
    const char *prompt[MAX_PROMPTS];
    int n_prompts;
    const char *negative, *out, *weights, *unet, *latents;
    uint64_t seed;
    da_sample_opts opts;
    int n, grid, scale, verbose;   /* n: images per prompt */
    cli_loop_args loop;
} sample_args;

static const char CMD[] = "sample";   /* the prefix of every message */

static int total_images(const sample_args *a) { return a->n_prompts * a->n; }

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign sample --prompt TEXT [--prompt TEXT ...] -o OUT.png [options]\n"
            "\n"
            "Generate images from a text prompt with the latent diffusion pipeline.\n"
            "\n"
            "Options:\n"
            "  --prompt TEXT      what to draw, in the shapes-world grammar (\"\" = unconditional);\n"
            "                     repeat it for several prompts (at most 64): each gets the\n"
            "                     same K seeds, and a grid has one row per prompt\n"
            "  --negative TEXT    the uncond side of CFG (default: the empty prompt)\n"
            "  --seed N           seed of image 0 of a prompt; image k uses N + k (default 0)\n"
            "  --steps N          sampler steps (default 20)\n"
            "  --cfg W            guidance weight; 1 = no guidance (default 3)\n"
            "  --sampler NAME     ddim, ddpm or euler (default ddim)\n"
            "  --eta E            DDIM eta: 0 deterministic, 1 DDPM-like (default 0)\n"
            "  --n K              images per prompt (default 1); more than one image in all\n"
            "                     writes OUT-0.png, OUT-1.png, .. (prompt-major), or one grid\n"
            "                     with --grid\n"
            "  --grid             put the images in one grid image: one prompt -> ceil(sqrt(K))\n"
            "                     columns; several -> one row per prompt, K columns\n"
            "  --scale S          upscale S times, nearest neighbour, for viewing (default 1)\n"
            "  --weights DIR      weights directory (default: $DALIGN_WEIGHTS, else ./weights)\n"
            "  --unet NAME        UNet files DIR/NAME.{json,safetensors} (default unet)\n"
            "  --latents FILE     also save the final latents (P*K, 4, 8, 8) as safetensors\n"
            CLI_LOOP_HELP
            "  -o, --output PATH  output PNG (written atomically)\n"
            "  -v, --verbose      print the resolved options and timing on stderr; with --refiner\n"
            "                     also the prompt of each refinement, and OUT-loop.png: per\n"
            "                     image the decoded x0 the refiner read at each refinement\n"
            "  -h, --help         show this help and exit\n"
            "\n"
            "Progress goes to stderr when it is a terminal.\n"
            "Exit status: 0 ok, 1 failure (bad prompt, missing or corrupt weights, I/O), 2 usage error.\n");
}

/* One option with its value; returns 0, or the exit code of a usage error. */
static int parse_option(sample_args *a, const char *opt, const char *val)
{
    int rc = val ? cli_parse_sample_option(CMD, opt, val, &a->opts) : CLI_NOT_MINE;
    if (rc == CLI_NOT_MINE && val) rc = cli_parse_loop_option(CMD, opt, val, &a->loop);
    if (rc != CLI_NOT_MINE) return rc;
    if (!strcmp(opt, "--prompt")) {
        if (a->n_prompts == MAX_PROMPTS) {
            fprintf(stderr, "dalign sample: at most %d --prompt options\n", MAX_PROMPTS);
            return 2;
        }
        a->prompt[a->n_prompts++] = val;
    }
    else if (!strcmp(opt, "--negative")) a->negative = val;
    else if (!strcmp(opt, "--weights")) a->weights = val;
    else if (!strcmp(opt, "--unet")) a->unet = val;
    else if (!strcmp(opt, "--latents")) a->latents = val;
    else if (!strcmp(opt, "-o") || !strcmp(opt, "--output")) a->out = val;
    else if (!strcmp(opt, "--seed")) return cli_parse_seed(CMD, opt, val, &a->seed);
    else if (!strcmp(opt, "--n")) return cli_parse_int_in(CMD, opt, val, 1, MAX_N, &a->n);
    else if (!strcmp(opt, "--scale")) return cli_parse_int_in(CMD, opt, val, 1, MAX_SCALE, &a->scale);
    else {
        fprintf(stderr, "dalign sample: unknown option '%s' (see dalign sample --help)\n", opt);
        return 2;
    }
    return 0;
}

static const char *const flags_with_value[] = {"--prompt", "--negative", "--seed", "--steps", "--cfg", "--sampler",
                                               "--eta", "--n", "--scale", "--weights", "--unet", "--latents",
                                               "-o", "--output", "--refiner", "--refine-mode", "--refine-steps",
                                               "--refine-temperature"};

static int takes_value(const char *opt)
{
    for (size_t i = 0; i < sizeof flags_with_value / sizeof *flags_with_value; i++)
        if (!strcmp(opt, flags_with_value[i])) return 1;
    return 0;
}

/* returns -1 to go on, else an exit code (0 after --help) */
static int parse_args(sample_args *a, int argc, char **argv)
{
    memset(a, 0, sizeof *a);
    a->opts = da_sample_opts_default();
    a->n = 1;
    a->scale = 1;
    a->unet = "unet";
    a->loop.opts = da_loop_opts_default();
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(o, "--grid")) {
            a->grid = 1;
        } else if (!strcmp(o, "-v") || !strcmp(o, "--verbose")) {
            a->verbose = 1;
        } else if (takes_value(o)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dalign sample: %s needs a value\n", o);
                return 2;
            }
            int rc = parse_option(a, o, argv[++i]);
            if (rc) return rc;
        } else {
            return parse_option(a, o, NULL);   /* unknown option or stray argument */
        }
    }
    if (!a->n_prompts || !a->out) {
        fprintf(stderr, "dalign sample: %s is required\n\n", !a->n_prompts ? "--prompt" : "-o OUT.png");
        usage(stderr);
        return 2;
    }
    if (total_images(a) > MAX_N) {
        fprintf(stderr, "dalign sample: %d prompts x %d images is more than %d images\n", a->n_prompts, a->n, MAX_N);
        return 2;
    }
    if (a->opts.eta != 0.0f && a->opts.sampler != DA_SAMPLER_DDIM) {
        fprintf(stderr, "dalign sample: --eta is a DDIM option (--sampler ddim)\n");
        return 2;
    }
    if (a->loop.refiner && a->negative) {
        fprintf(stderr, "dalign sample: --negative and --refiner do not go together (the loop's uncond side is "
                        "the empty prompt)\n");
        return 2;
    }
    int rc = cli_check_loop_args(CMD, &a->loop, &a->opts);
    return rc ? rc : -1;
}

/* OUT.png -> OUT-i.png (the index goes before the extension, if any) */
static void indexed_path(char *buf, size_t cap, const char *path, int i)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : path)) dot = path + strlen(path);
    snprintf(buf, cap, "%.*s-%d%s", (int)(dot - path), path, i, dot);
}

typedef struct progress {
    int tty, done, total;      /* images done before this chunk, all images */
    int chunk;
} progress;

static int on_step(da_step_info *info, void *user)
{
    const progress *p = user;
    if (p->tty)
        fprintf(stderr, "\rdalign sample: images %d-%d of %d, step %d/%d ", p->done + 1, p->done + p->chunk, p->total,
                info->step + 1, info->n_steps);
    return 0;
}

static void print_resolved(const sample_args *a, const char *dir)
{
    const char *src = a->weights ? "--weights" : getenv("DALIGN_WEIGHTS") && *getenv("DALIGN_WEIGHTS") ? "$DALIGN_WEIGHTS"
                                                                                                       : "default";
    fprintf(stderr, "dalign sample:\n");
    for (int p = 0; p < a->n_prompts; p++)
        fprintf(stderr, "  prompt    \"%s\"%s\n", a->prompt[p], *a->prompt[p] ? "" : " (unconditional)");
    fprintf(stderr, "  negative  \"%s\"%s\n", a->negative ? a->negative : DA_UNCOND_PROMPT,
            a->opts.cfg == 1.0f ? " (unused: cfg 1)" : a->negative ? "" : " (the empty prompt)");
    fprintf(stderr, "  weights   %s (%s), unet %s\n", dir, src, a->unet);
    fprintf(stderr, "  sampler   %s, steps %d, cfg %g, eta %g\n", da_sampler_name(a->opts.sampler), a->opts.steps,
            (double)a->opts.cfg, (double)a->opts.eta);
    fprintf(stderr, "  seeds     %llu..%llu (n %d per prompt)\n", (unsigned long long)a->seed,
            (unsigned long long)(a->seed + (uint64_t)a->n - 1), a->n);
    fprintf(stderr, "  output    %s%s, scale %d%s%s\n", a->out,
            total_images(a) > 1 ? (a->grid ? " (grid)" : " (one file per image)") : "",
            a->scale, a->latents ? ", latents " : "", a->latents ? a->latents : "");
    if (a->loop.refiner)
        fprintf(stderr, "  refiner   %s, mode %s, %d refinement%s, temperature %g\n", a->loop.refiner,
                da_refine_mode_name(a->loop.opts.mode), da_loop_n_refine(&a->loop.opts),
                da_loop_n_refine(&a->loop.opts) > 1 ? "s" : "", (double)a->loop.opts.temperature);
    fprintf(stderr, "  threads   %d, gemm %s\n", da_get_threads(), da_gemm_backend());
}

/* -v with a refiner: the prompt each refinement wrote, image by image */
static void print_trace(const da_loop_trace *tr, const float *step_t, int i0, const char *query)
{
    char text[DA_CAPTION_MAX * 2];
    for (int i = 0; i < tr->n; i++) {
        fprintf(stderr, "image %d: \"%s\"\n", i0 + i, query);
        for (int k = 0; k < tr->K; k++) {
            size_t row = (size_t)i * tr->K + k;
            if (da_detokenize(tr->out_ids + row * DA_MAX_TOKENS, DA_MAX_TOKENS, text, sizeof text) != DA_OK)
                snprintf(text, sizeof text, "(%s)", da_last_error());
            if (tr->steps[k] < 0)
                fprintf(stderr, "  before step 1: \"%s\"\n", text);
            else
                fprintf(stderr, "  after step %d (t %g): \"%s\"\n", tr->steps[k] + 1, (double)step_t[tr->steps[k]],
                        text);
        }
    }
}

/* one chunk through the loop; with -v the prompts are printed and each
 * refinement's observed x̂0 is kept in obs (n*K, C, h, w) */
static da_status loop_chunk(da_pipeline *pipe, const da_refiner *ref, const sample_args *a, const char *const *prompts,
                            const uint64_t *seeds, int k, int i0, float *images, float *latents, float *obs)
{
    uint64_t rseeds[CHUNK];
    for (int j = 0; j < k; j++) rseeds[j] = da_loop_refine_seed(seeds[j]);
    da_loop_trace tr;
    da_status s = da_loop_generate(pipe, ref, &a->opts, &a->loop.opts, prompts, seeds, rseeds, k, &tr, images, latents);
    if (s != DA_OK) return s;
    if (a->verbose) {
        float *t = malloc((size_t)a->opts.steps * sizeof *t);
        s = t ? da_sampler_timesteps(pipe, &a->opts, t) : da_fail(DA_ERR_NOMEM, "out of memory");
        for (int j = 0; s == DA_OK && j < k; j++) {
            da_loop_trace one = tr;   /* image j's rows, printed with its query */
            one.n = 1;
            one.out_ids = tr.out_ids + (size_t)j * tr.K * DA_MAX_TOKENS;
            print_trace(&one, t, i0 + j, prompts[j]);
        }
        free(t);
        if (obs) memcpy(obs, tr.x0, (size_t)k * tr.K * tr.latent_n * sizeof(float));
    }
    da_loop_trace_free(&tr);
    return s;
}

/* all P*n images in chunks; images (P*n, 3, 32, 32), latents (P*n, C, h, w);
 * obs (P*n*K, C, h, w) or NULL: the refiner's observations */
static int generate_all(da_pipeline *pipe, const da_refiner *ref, const sample_args *a, float *images, float *latents,
                        float *obs)
{
    const char *prompts[CHUNK];
    uint64_t seeds[CHUNK];
    size_t nl = (size_t)pipe->vae->cfg.latent_channels * pipe->latent_h * pipe->latent_w;
    int total = total_images(a);
    progress pr = {.tty = isatty(2), .total = total};
    for (int i0 = 0; i0 < total; i0 += CHUNK) {
        int k = total - i0 < CHUNK ? total - i0 : CHUNK;
        for (int j = 0; j < k; j++) {
            prompts[j] = a->prompt[(i0 + j) / a->n];
            seeds[j] = a->seed + (uint64_t)((i0 + j) % a->n);
        }
        pr.done = i0;
        pr.chunk = k;
        da_status s;
        if (ref) {
            int K = da_loop_n_refine(&a->loop.opts);
            s = loop_chunk(pipe, ref, a, prompts, seeds, k, i0, images + (size_t)i0 * DA_IMG_FLOATS,
                           latents + (size_t)i0 * nl, obs ? obs + (size_t)i0 * K * nl : NULL);
        } else {
            s = da_pipeline_generate(pipe, &a->opts, prompts, a->negative, seeds, k, on_step, &pr,
                                     images + (size_t)i0 * DA_IMG_FLOATS, latents + (size_t)i0 * nl);
        }
        if (s != DA_OK) {
            if (pr.tty) fputc('\n', stderr);
            fprintf(stderr, "dalign sample: %s\n", da_last_error());
            return 1;
        }
    }
    if (pr.tty) fprintf(stderr, "\r\033[K");   /* clear the progress line */
    return 0;
}

static int write_outputs(const da_pipeline *pipe, const sample_args *a, const float *images, const float *latents)
{
    da_status s = DA_OK;
    int total = total_images(a);
    if (total == 1 || a->grid) {
        s = da_png_save_images(a->out, images, total, a->n_prompts > 1 ? a->n : 0, a->scale);
        if (s == DA_OK && a->verbose) fprintf(stderr, "wrote %s\n", a->out);
    }
    for (int i = 0; s == DA_OK && !(total == 1 || a->grid) && i < total; i++) {
        char path[4096];
        indexed_path(path, sizeof path, a->out, i);
        s = da_png_save_images(path, images + (size_t)i * DA_IMG_FLOATS, 1, 1, a->scale);
        if (s == DA_OK && a->verbose) fprintf(stderr, "wrote %s\n", path);
    }
    if (s == DA_OK && a->latents) {
        da_st_entry e = {.name = "latents", .data = latents, .ndim = 4,
                         .shape = {total, pipe->vae->cfg.latent_channels, pipe->latent_h, pipe->latent_w}};
        s = da_st_write(a->latents, &e, 1, NULL, 0);
        if (s == DA_OK && a->verbose) fprintf(stderr, "wrote %s\n", a->latents);
    }
    if (s != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        return 1;
    }
    return 0;
}

/* OUT-loop.png: row i = the decoded x̂0 the refiner read at each of the K
 * refinements of image i, then the image itself */
static int write_loop_strip(da_pipeline *pipe, const sample_args *a, const float *images, const float *obs)
{
    int total = total_images(a), K = da_loop_n_refine(&a->loop.opts), cols = K + 1;
    float *tiles = malloc((size_t)total * cols * DA_IMG_FLOATS * sizeof(float));
    float *decoded = malloc((size_t)K * DA_IMG_FLOATS * sizeof(float));
    size_t nl = (size_t)pipe->vae->cfg.latent_channels * pipe->latent_h * pipe->latent_w;
    da_status s = tiles && decoded ? DA_OK : da_fail(DA_ERR_NOMEM, "out of memory for the loop strip");
    for (int i = 0; s == DA_OK && i < total; i++) {
        s = da_pipeline_decode(pipe, obs + (size_t)i * K * nl, K, decoded);
        float *row = tiles + (size_t)i * cols * DA_IMG_FLOATS;
        if (s == DA_OK) memcpy(row, decoded, (size_t)K * DA_IMG_FLOATS * sizeof(float));
        memcpy(row + (size_t)K * DA_IMG_FLOATS, images + (size_t)i * DA_IMG_FLOATS, DA_IMG_FLOATS * sizeof(float));
    }
    char path[4096];
    const char *dot = strrchr(a->out, '.'), *slash = strrchr(a->out, '/');
    if (!dot || (slash && dot < slash)) dot = a->out + strlen(a->out);
    snprintf(path, sizeof path, "%.*s-loop%s", (int)(dot - a->out), a->out, dot);
    if (s == DA_OK) s = da_png_save_images(path, tiles, total * cols, cols, a->scale);
    free(tiles);
    free(decoded);
    if (s != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        return 1;
    }
    fprintf(stderr, "wrote %s (rows: images; columns: the x0 read at each refinement, then the image)\n", path);
    return 0;
}

int cmd_sample(int argc, char **argv)
{
    sample_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    /* a bad prompt fails before any weights are read, with the parser's words */
    da_scene spec;
    for (int p = 0; p < a.n_prompts; p++)
        if (*a.prompt[p] && da_parse_prompt(a.prompt[p], &spec) != DA_OK) {
            fprintf(stderr, "dalign sample: bad prompt \"%s\": %s\n", a.prompt[p], da_last_error());
            return 1;
        }
    const char *dir = da_weights_dir(a.weights);
    if (a.verbose) print_resolved(&a, dir);
    double t0 = da_now_s();
    da_pipeline *pipe;
    if (da_pipeline_load(&pipe, dir, a.unet) != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        char probe[4096];
        snprintf(probe, sizeof probe, "%s/text_encoder.json", dir);
        if (access(probe, F_OK) != 0) /* no trained weights there at all: say how to get some */
            fprintf(stderr, "dalign sample: '%s' holds no trained weights: train them with 'make weights' "
                            "or point --weights / DALIGN_WEIGHTS at a weights directory\n", dir);
        return 1;
    }
    da_refiner *ref = NULL;
    if (a.loop.refiner && da_weights_load_refiner(&ref, dir, a.loop.refiner) != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        da_pipeline_free(pipe);
        return 1;
    }
    size_t nl = (size_t)pipe->vae->cfg.latent_channels * pipe->latent_h * pipe->latent_w;
    size_t total = (size_t)total_images(&a);
    float *images = malloc(total * DA_IMG_FLOATS * sizeof(float));
    float *latents = malloc(total * nl * sizeof(float));
    int strip = ref && a.verbose && a.loop.opts.mode == DA_REFINE_LOOP;
    float *obs = strip ? malloc(total * (size_t)da_loop_n_refine(&a.loop.opts) * nl * sizeof(float)) : NULL;
    if (!images || !latents || (strip && !obs)) {
        fprintf(stderr, "dalign sample: out of memory\n");
        rc = 1;
    } else {
        double t1 = da_now_s();
        rc = generate_all(pipe, ref, &a, images, latents, obs);
        if (rc == 0 && a.verbose)
            fprintf(stderr, "  load %.2f s, sample %.2f s (%.2f images/s)\n", t1 - t0, da_now_s() - t1,
                    (double)total / fmax(da_now_s() - t1, 1e-9));
        if (rc == 0) rc = write_outputs(pipe, &a, images, latents);
        if (rc == 0 && strip) rc = write_loop_strip(pipe, &a, images, obs);
    }
    free(images);
    free(latents);
    free(obs);
    da_refiner_free(ref);
    da_pipeline_free(pipe);
    return rc;
}
