/* dalign sample: text -> image(s) with the pipeline (docs/pipeline.md).
 * --prompt may repeat: image p*n + k is prompt p with seed + k, so every
 * prompt gets the same seeds and a grid has one row per prompt. Images are
 * generated in chunks of CHUNK. With --refiner a PromptLoop refiner rewrites
 * each prompt while sampling (docs/promptloop.md); -v then prints the prompt
 * of every refinement and draws the loop: OUT-loop.png, one row per image,
 * the decoded x̂0 the refiner read at each refinement, then the image. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    int n, grid, scale;   /* n: images per prompt */
    cli_common common;    /* -q: nothing but errors; -v: timing, the refiner's prompts and OUT-loop.png */
    cli_loop_args loop;
} sample_args;

static const char CMD[] = "sample";   /* the prefix of every message */

static int total_images(const sample_args *a) { return a->n_prompts * a->n; }

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign sample -p TEXT [-p TEXT ...] -o OUT.png [options]  (--opt=value works too)\n"
            "\n"
            "Generate images from a text prompt with the latent diffusion pipeline.\n"
            "\n"
            "Options:\n"
            "  -p, --prompt TEXT  what to draw, in the shapes-world grammar (\"\" = unconditional);\n"
            "                     repeat it for several prompts (at most 64): each gets the\n"
            "                     same K seeds, and a grid has one row per prompt\n"
            "  --negative TEXT    the uncond side of CFG (default: the empty prompt);\n"
            "                     alias --negative-prompt\n"
            "  -s, --seed N       seed of image 0 of a prompt; image k uses N + k (default 0;\n"
            "                     -1: a random seed, printed)\n"
            "  --steps N          sampler steps (default 20)\n"
            "  --cfg W            guidance weight; 1 = no guidance (default 3); alias --cfg-scale\n"
            "  --sampler NAME     ddim, ddpm or euler (default ddim); alias --sampling-method\n"
            "  --eta E            DDIM eta: 0 deterministic, 1 DDPM-like (default 0)\n"
            "  --n K              images per prompt (default 1); alias --batch-count. More than\n"
            "                     one image in all writes OUT-0.png, OUT-1.png, .. (prompt-major),\n"
            "                     or one grid with --grid\n"
            "  --grid             put the images in one grid image: one prompt -> ceil(sqrt(K))\n"
            "                     columns; several -> one row per prompt, K columns\n"
            "  --scale S          upscale S times, nearest neighbour, for viewing (default 1)\n"
            "  --weights DIR      weights directory (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --unet NAME|FILE   a UNet in DIR (NAME.{json,safetensors}, default unet) or a\n"
            "                     FILE.safetensors with its config FILE.json beside it\n"
            "  --latents FILE     also save the final latents (P*K, 4, 8, 8) as safetensors\n"
            CLI_LOOP_HELP
            "  -o, --output PATH  output PNG\n"
            CLI_COMMON_HELP
            "\n"
            "With --refiner, -v also prints the prompt of each refinement and writes\n"
            "OUT-loop.png: per image the decoded x0 the refiner read at each refinement.\n"
            "Every output path (and the PNG's size) is checked before the sampling starts.\n"
            "The files of a run are a set: each is written under a temporary name\n"
            "(PATH.tmp.PID) and all are renamed to their names only after every one was\n"
            "written, so OUT-0.png .. OUT-(N-1).png, --latents and OUT-loop.png are never\n"
            "a partial set; a failed run removes its temporary files, and those a killed\n"
            "run left are removed by the next run to the same outputs.\n"
            "The resolved options and the files written go to stderr (not with -q);\n"
            "progress too, when stderr is a terminal.\n"
            "Exit status: 0 ok, 1 failure (bad prompt, missing or corrupt weights, I/O), 2 usage error.\n");
}

/* A prompt as messages show it: a 100 KB prompt must not flood stderr */
#define SHOWN_PROMPT_CHARS 80
static const char *shown(const char *text, char *buf, size_t cap)
{
    size_t len = strlen(text);
    if (len <= SHOWN_PROMPT_CHARS) return text;
    snprintf(buf, cap, "%.*s... (%zu bytes)", SHOWN_PROMPT_CHARS, text, len);
    return buf;
}

enum {
    OPT_NEGATIVE = CLI_O_LOCAL, OPT_N, OPT_GRID, OPT_SCALE, OPT_WEIGHTS, OPT_UNET, OPT_LATENTS,
};
static const struct option LONG_OPTS[] = {
    {"prompt", required_argument, 0, 'p'},
    {"negative", required_argument, 0, OPT_NEGATIVE},
    {"negative-prompt", required_argument, 0, OPT_NEGATIVE},
    {"seed", required_argument, 0, 's'},
    {"n", required_argument, 0, OPT_N},
    {"batch-count", required_argument, 0, OPT_N},
    {"grid", no_argument, 0, OPT_GRID},
    {"scale", required_argument, 0, OPT_SCALE},
    {"weights", required_argument, 0, OPT_WEIGHTS},
    {"unet", required_argument, 0, OPT_UNET},
    {"latents", required_argument, 0, OPT_LATENTS},
    {"output", required_argument, 0, 'o'},
    CLI_SAMPLE_LONG,
    CLI_LOOP_LONG,
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* one option of code c with its value (p->val): 0, or the exit code of a usage error */
static int parse_option(sample_args *a, const cli_parser *p, int c)
{
    int rc = cli_sample_opt(p, c, &a->opts);
    if (rc == CLI_NOT_MINE) rc = cli_loop_opt(p, c, &a->loop);
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case 'p':
        if (a->n_prompts == MAX_PROMPTS) {
            fprintf(stderr, "dalign sample: at most %d --prompt options\n", MAX_PROMPTS);
            return 2;
        }
        a->prompt[a->n_prompts++] = p->val;
        return 0;
    case OPT_NEGATIVE: a->negative = p->val; return 0;
    case OPT_WEIGHTS: a->weights = p->val; return 0;
    case OPT_UNET: a->unet = p->val; return 0;
    case OPT_LATENTS: a->latents = p->val; return 0;
    case 'o': a->out = p->val; return 0;
    case OPT_GRID: a->grid = 1; return 0;
    case 's': return cli_parse_seed(CMD, p->opt, p->val, &a->seed);
    case OPT_N: return cli_parse_int_in(CMD, p->opt, p->val, 1, MAX_N, &a->n);
    case OPT_SCALE: return cli_parse_int_in(CMD, p->opt, p->val, 1, MAX_SCALE, &a->scale);
    default: return cli_unhandled(p);
    }
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
    cli_parser p = cli_parser_init(CMD, argc, argv, "p:o:s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = parse_option(a, &p, c);
        if (rc) return rc;
    }
    a->common = p.common;
    if (p.optind < argc) {
        fprintf(stderr, "dalign sample: unexpected argument '%s' (the prompt goes after -p)\n", argv[p.optind]);
        return 2;
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

/* OUT.png -> OUT-SUFFIX.png (the suffix goes before the extension, if any):
 * 0, or -1 when the path does not fit in cap */
static int suffixed_path(char *buf, size_t cap, const char *path, const char *suffix)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (!dot || (slash && dot < slash) || dot == (slash ? slash + 1 : path)) dot = path + strlen(path);
    int n = snprintf(buf, cap, "%.*s-%s%s", (int)(dot - path), path, suffix, dot);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ---- the set of output files --------------------------------------------
 * File k of a run: the PNGs first (OUT.png, or OUT-i.png for each image when
 * there are several and no grid), then --latents, then with -v and a loop
 * refiner OUT-loop.png. All are checked before the sampling and written as
 * PATH.tmp.PID, then renamed together (rename_outputs). */
static int one_png(const sample_args *a) { return total_images(a) == 1 || a->grid; }
static int writes_strip(const sample_args *a)
{
    return a->loop.refiner && a->common.verbose && a->loop.opts.mode == DA_REFINE_LOOP;
}
static int n_pngs(const sample_args *a) { return one_png(a) ? 1 : total_images(a); }
static int n_outputs(const sample_args *a) { return n_pngs(a) + (a->latents != NULL) + writes_strip(a); }

/* file k's final path: 0, or -1 when too long */
static int output_path(const sample_args *a, int k, char *buf, size_t cap)
{
    if (k < n_pngs(a)) {
        if (one_png(a)) return snprintf(buf, cap, "%s", a->out) < (int)cap ? 0 : -1;
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        return suffixed_path(buf, cap, a->out, idx);
    }
    if (a->latents && k == n_pngs(a)) return snprintf(buf, cap, "%s", a->latents) < (int)cap ? 0 : -1;
    return suffixed_path(buf, cap, a->out, "loop");
}

/* file k's temporary name: PATH.tmp.PID (the writers' own atomic write then
 * goes through PATH.tmp.PID.tmp.PID) */
static int temp_path(const sample_args *a, int k, char *buf, size_t cap)
{
    char final[4096];
    if (output_path(a, k, final, sizeof final)) return -1;
    int n = snprintf(buf, cap, "%s.tmp.%ld", final, (long)getpid());
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* the grid's columns: the same for the size check and the writer */
static int png_cols(const sample_args *a)
{
    if (a->n_prompts > 1) return a->n;
    int c = 1, n = total_images(a);
    while (c * c < n) c++;   /* ceil(sqrt(n)), exactly */
    return c;
}

/* a grid of n tiles in cols columns at scale s fits the PNG writer
 * (DA_PNG_MAX_SIDE): 0, or 2 after a message */
static int check_png_size(const char *what, int n, int cols, int scale)
{
    int gh, gw;
    da_grid_size(n, cols, DA_IMG, DA_IMG, 1, &gh, &gw);
    if ((long)gh * scale <= DA_PNG_MAX_SIDE && (long)gw * scale <= DA_PNG_MAX_SIDE) return 0;
    fprintf(stderr, "dalign sample: %s would be %ld x %ld pixels, more than %d a side: use fewer images, "
                    "a smaller --scale%s\n", what, (long)gw * scale, (long)gh * scale, DA_PNG_MAX_SIDE,
            n > 1 && cols > 1 ? " or no --grid" : "");
    return 2;
}

/* create and remove path (a temporary name): 1 when that worked, else 0 with errno set */
static int creatable(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return 0;
    close(fd);
    unlink(path);
    return 1;
}

/* Every output before any work: the PNG sizes, no two outputs the same
 * file, no directory in the way, and each temporary name creatable.
 * 0, 1 (cannot write) or 2 (a usage error). */
static int check_outputs(const sample_args *a)
{
    if (one_png(a) && check_png_size(total_images(a) > 1 ? "the grid" : "the image", total_images(a), png_cols(a),
                                     a->scale))
        return 2;
    if (writes_strip(a) &&
        check_png_size("OUT-loop.png", total_images(a) * (da_loop_n_refine(&a->loop.opts) + 1),
                       da_loop_n_refine(&a->loop.opts) + 1, a->scale))
        return 2;
    for (int k = 0; k < n_outputs(a); k++) {
        char final[4096], tmp[4096 + 64];
        if (output_path(a, k, final, sizeof final) || temp_path(a, k, tmp, sizeof tmp - 32)) {
            fprintf(stderr, "dalign sample: cannot write -o %.200s...: path too long\n", a->out);
            return 1;
        }
        if (a->latents && k < n_pngs(a) && !strcmp(final, a->latents)) {
            fprintf(stderr, "dalign sample: --latents %s is also an image of -o %s\n", a->latents, a->out);
            return 2;
        }
        struct stat sb;
        if (stat(final, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "dalign sample: cannot write %s: it is a directory\n", final);
            return 1;
        }
        if (!creatable(tmp)) {
            fprintf(stderr, "dalign sample: cannot write %s %s: %s (checked before the sampling)\n",
                    a->latents && k == n_pngs(a) ? "--latents" : "-o", final, strerror(errno));
            return 1;
        }
    }
    return 0;
}

/* ---- stale temporaries of a killed run ----------------------------------
 * A run killed before its renames leaves PATH.tmp.PID (and the writer's own
 * PATH.tmp.PID.tmp.PID2) beside its outputs; the next run to the same
 * outputs removes those whose process is gone. Only names this run would
 * itself use are touched. */

/* NAME.tmp.PID or NAME.tmp.PID.tmp.PID2: PID, with *base_len = strlen(NAME); else 0 */
static long temp_owner(const char *name, size_t *base_len)
{
    for (const char *t = strstr(name, ".tmp."); t; t = strstr(t + 1, ".tmp.")) {
        const char *d = t + 5, *end = d;
        long pid = 0;
        while (*end >= '0' && *end <= '9' && pid < 1000000000L) pid = pid * 10 + (*end++ - '0');
        if (end == d || pid <= 0) continue;
        if (*end && strncmp(end, ".tmp.", 5)) continue;
        if (*end) {   /* the writer's PATH.tmp.PID.tmp.PID2: digits to the end */
            const char *e = end + 5;
            if (!*e) continue;
            while (*e >= '0' && *e <= '9') e++;
            if (*e) continue;
        }
        *base_len = (size_t)(t - name);
        return pid;
    }
    return 0;
}

/* path is one of this run's outputs */
static int is_output(const sample_args *a, const char *path)
{
    char final[4096];
    for (int k = 0; k < n_outputs(a); k++)
        if (!output_path(a, k, final, sizeof final) && !strcmp(final, path)) return 1;
    return 0;
}

/* the stale temporaries in the directory of path (an output) */
static void remove_stale_in(const sample_args *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    int prefix = slash ? (int)(slash - path + 1) : 0;   /* "DIR/", kept as the user wrote it */
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", prefix ? prefix : 1, prefix ? path : ".");
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len;
        long pid = temp_owner(e->d_name, &len);
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char base[4096], stale[4096];
        if (snprintf(base, sizeof base, "%.*s%.*s", prefix, path, (int)len, e->d_name) >= (int)sizeof base ||
            snprintf(stale, sizeof stale, "%.*s%s", prefix, path, e->d_name) >= (int)sizeof stale ||
            !is_output(a, base))
            continue;
        if (unlink(stale) == 0 && !a->common.quiet)
            fprintf(stderr, "dalign sample: removed %s, left by a run that was stopped (pid %ld)\n", stale, pid);
    }
    closedir(d);
}

static void remove_stale_temps(const sample_args *a)
{
    remove_stale_in(a, a->out);
    if (a->latents) remove_stale_in(a, a->latents);
}

/* remove the temporary files 0..n-1 of a failed run */
static void remove_temps(const sample_args *a, int n)
{
    char tmp[4096 + 64];
    for (int k = 0; k < n; k++)
        if (!temp_path(a, k, tmp, sizeof tmp)) unlink(tmp);
}

/* every file written under its temporary name: rename them all, then say
 * where they are. 0, or 1 (the temporaries not yet renamed are removed). */
static int rename_outputs(const sample_args *a)
{
    int n = n_outputs(a);
    for (int k = 0; k < n; k++) {
        char final[4096], tmp[4096 + 64];
        output_path(a, k, final, sizeof final);   /* checked by check_outputs */
        temp_path(a, k, tmp, sizeof tmp);
        if (rename(tmp, final) != 0) {
            fprintf(stderr, "dalign sample: cannot rename %s to %s: %s\n", tmp, final, strerror(errno));
            for (int j = k; j < n; j++)
                if (!temp_path(a, j, tmp, sizeof tmp)) unlink(tmp);
            return 1;
        }
    }
    if (a->common.quiet) return 0;
    for (int k = 0; k < n; k++) {
        char final[4096];
        output_path(a, k, final, sizeof final);
        if (k == n_pngs(a) && a->latents) fprintf(stderr, "wrote %s (latents)\n", final);
        else if (k >= n_pngs(a))
            fprintf(stderr, "wrote %s (rows: images; columns: the x0 read at each refinement, then the image)\n",
                    final);
        else if (n_pngs(a) <= 8 || k == 0 || k == n_pngs(a) - 1)
            fprintf(stderr, "wrote %s%s\n", final, one_png(a) && total_images(a) > 1 ? " (grid)" : "");
        else if (k == 1)
            fprintf(stderr, "  ... (%d files)\n", n_pngs(a) - 2);
    }
    return 0;
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
    const char *env = getenv("DALIGN_WEIGHTS");
    const char *src = a->weights ? "--weights" : env && *env ? "$DALIGN_WEIGHTS" : "default";
    char buf[SHOWN_PROMPT_CHARS + 64];
    fprintf(stderr, "dalign sample:\n");
    for (int p = 0; p < a->n_prompts; p++)
        fprintf(stderr, "  prompt    \"%s\"%s\n", shown(a->prompt[p], buf, sizeof buf),
                *a->prompt[p] ? "" : " (unconditional)");
    fprintf(stderr, "  negative  \"%s\"%s\n", a->negative ? shown(a->negative, buf, sizeof buf) : DA_UNCOND_PROMPT,
            a->opts.cfg == 1.0f ? " (unused: cfg 1)" : a->negative ? "" : " (the empty prompt)");
    fprintf(stderr, "  weights   %s (%s), unet %s\n", dir, src, a->unet);
    fprintf(stderr, "  sampler   %s, steps %d, cfg %g, eta %g\n", da_sampler_name(a->opts.sampler), a->opts.steps,
            (double)a->opts.cfg, (double)a->opts.eta);
    fprintf(stderr, "  seeds     %llu..%llu (n %d per prompt)\n", (unsigned long long)a->seed,
            (unsigned long long)(a->seed + (uint64_t)a->n - 1), a->n);
    fprintf(stderr, "  output    %s%s, scale %d%s%s\n", a->out,
            total_images(a) > 1 ? (a->grid ? " (grid)" : " (one file per image)") : "",
            a->scale, a->latents ? ", latents " : "", a->latents ? a->latents : "");
    if (a->loop.refiner) {
        char when[128];
        da_loop_steps_text(&a->loop.opts, a->opts.steps, when, sizeof when);
        fprintf(stderr, "  refiner   %s, mode %s, %d refinement%s (%s), temperature %g, keep meaning %s\n",
                a->loop.refiner, da_refine_mode_name(a->loop.opts.mode), da_loop_n_refine(&a->loop.opts),
                da_loop_n_refine(&a->loop.opts) > 1 ? "s" : "", when, (double)a->loop.opts.temperature,
                a->loop.opts.keep_meaning ? "on" : "off");
    }
    fprintf(stderr, "  threads   %d, gemm %s\n", da_get_threads(), da_gemm_backend());
}

/* -v with a refiner: the prompt each refinement wrote, image by image */
static void print_trace(const da_loop_trace *tr, const float *step_t, int i0, const char *query)
{
    char text[DA_CAPTION_MAX * 2], buf[SHOWN_PROMPT_CHARS + 64];
    for (int i = 0; i < tr->n; i++) {
        fprintf(stderr, "image %d: \"%s\"\n", i0 + i, shown(query, buf, sizeof buf));
        for (int k = 0; k < tr->K; k++) {
            size_t row = (size_t)i * tr->K + k;
            if (da_detokenize(tr->out_ids + row * DA_MAX_TOKENS, DA_MAX_TOKENS, text, sizeof text) != DA_OK)
                snprintf(text, sizeof text, "(%s)", da_last_error());
            /* --refine-keep-meaning discarded it: the image kept the prompt in use */
            const char *note = memcmp(tr->out_ids + row * DA_MAX_TOKENS, tr->used_ids + row * DA_MAX_TOKENS,
                                      DA_MAX_TOKENS * sizeof(int))
                                   ? " (another meaning: discarded)" : "";
            if (tr->steps[k] < 0)
                fprintf(stderr, "  before step 0: \"%s\"%s\n", text, note);
            else   /* steps counted from 0, as da_loop_steps_text and --refine-window count them */
                fprintf(stderr, "  after step %d (t %g): \"%s\"%s\n", tr->steps[k], (double)step_t[tr->steps[k]],
                        text, note);
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
    if (a->common.verbose) {
        float *t = malloc((size_t)a->opts.steps * sizeof *t);
        s = t ? da_sampler_timesteps(pipe, &a->opts, t) : da_fail(DA_ERR_NOMEM, "out of memory");
        for (int j = 0; s == DA_OK && j < k; j++) {
            da_loop_trace one = tr;   /* image j's rows, printed with its query */
            one.n = 1;
            one.out_ids = tr.out_ids + (size_t)j * tr.K * DA_MAX_TOKENS;
            one.used_ids = tr.used_ids + (size_t)j * tr.K * DA_MAX_TOKENS;
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
    progress pr = {.tty = !a->common.quiet && isatty(2), .total = total};
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

/* the PNGs and the latents under their temporary names: 0, or 1 after a
 * message (the caller removes the temporaries) */
static int write_outputs(const da_pipeline *pipe, const sample_args *a, const float *images, const float *latents)
{
    da_status s = DA_OK;
    int total = total_images(a);
    char tmp[4096 + 64];
    for (int k = 0; s == DA_OK && k < n_pngs(a); k++) {
        temp_path(a, k, tmp, sizeof tmp);
        s = one_png(a) ? da_png_save_images(tmp, images, total, png_cols(a), a->scale)
                       : da_png_save_images(tmp, images + (size_t)k * DA_IMG_FLOATS, 1, 1, a->scale);
    }
    if (s == DA_OK && a->latents) {
        temp_path(a, n_pngs(a), tmp, sizeof tmp);
        da_st_entry e = {.name = "latents", .data = latents, .ndim = 4,
                         .shape = {total, pipe->vae->cfg.latent_channels, pipe->latent_h, pipe->latent_w}};
        s = da_st_write(tmp, &e, 1, NULL, 0);
    }
    if (s != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        return 1;
    }
    return 0;
}

/* OUT-loop.png (under its temporary name): row i = the decoded x̂0 the
 * refiner read at each of the K refinements of image i, then the image */
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
    char tmp[4096 + 64];
    temp_path(a, n_outputs(a) - 1, tmp, sizeof tmp);
    if (s == DA_OK) s = da_png_save_images(tmp, tiles, total * cols, cols, a->scale);
    free(tiles);
    free(decoded);
    if (s != DA_OK) {
        fprintf(stderr, "dalign sample: %s\n", da_last_error());
        return 1;
    }
    return 0;
}

int cmd_sample(int argc, char **argv)
{
    sample_args a;
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    /* a bad prompt fails before any weights are read, with the parser's words */
    da_scene spec;
    char buf[SHOWN_PROMPT_CHARS + 64];
    for (int p = 0; p < a.n_prompts; p++)
        if (*a.prompt[p] && da_parse_prompt(a.prompt[p], &spec) != DA_OK) {
            fprintf(stderr, "dalign sample: bad prompt \"%s\": %s\n", shown(a.prompt[p], buf, sizeof buf),
                    da_last_error());
            return 1;
        }
    /* and every output before minutes of sampling, not after them */
    if ((rc = check_outputs(&a))) return rc;
    remove_stale_temps(&a);
    const char *dir = da_weights_dir(a.weights);
    if ((rc = cli_loop_resolve(CMD, &a.loop, dir, a.opts.steps, a.common.quiet))) return rc;
    if (!a.common.quiet) print_resolved(&a, dir);
    double t0 = da_now_s();
    da_pipeline *pipe;
    if (da_weights_load_pipeline(&pipe, dir, a.unet) != DA_OK) {
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
    int strip = ref && writes_strip(&a);
    float *obs = strip ? malloc(total * (size_t)da_loop_n_refine(&a.loop.opts) * nl * sizeof(float)) : NULL;
    if (!images || !latents || (strip && !obs)) {
        fprintf(stderr, "dalign sample: out of memory\n");
        rc = 1;
    } else {
        double t1 = da_now_s();
        rc = generate_all(pipe, ref, &a, images, latents, obs);
        if (rc == 0 && a.common.verbose)
            fprintf(stderr, "  load %.2f s, sample %.2f s (%.2f images/s)\n", t1 - t0, da_now_s() - t1,
                    (double)total / fmax(da_now_s() - t1, 1e-9));
        if (rc == 0) rc = write_outputs(pipe, &a, images, latents);
        if (rc == 0 && strip) rc = write_loop_strip(pipe, &a, images, obs);
        if (rc == 0) rc = rename_outputs(&a);
        else remove_temps(&a, n_outputs(&a));
    }
    free(images);
    free(latents);
    free(obs);
    da_refiner_free(ref);
    da_pipeline_free(pipe);
    return rc;
}
