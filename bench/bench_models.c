/* Model benchmarks (issue 3, item 11; issue 11, item 6): the whole text ->
 * image sampling run and the UNet's forward pass and training step. Numbers
 * only, never pass/fail. bench/torch_models.py measures the same
 * architectures in PyTorch the same way; bench/run.sh runs the two
 * alternately, several processes per side, and prints medians and spreads.
 *
 * usage: bench_models WEIGHTS MEASUREMENT BATCH [results_file]
 *   WEIGHTS      a weights directory holding text_encoder, vae and unet
 *                (.json + .safetensors), or "-": models of the default
 *                configs (da_*_config_default), randomly initialised in
 *                memory; speed does not depend on the values
 *   MEASUREMENT  sample      da_pipeline_generate: text encoder, 20 DDIM
 *                            steps with CFG 3 (one UNet call of 2*BATCH rows
 *                            per step), VAE decode; what `dalign sample`
 *                            runs, minus loading and the PNG
 *                unet-fwd    da_unet_forward, gradients off; also prints
 *                            the forward's FLOP count per image (counted
 *                            from the config, see unet_fwd_flop)
 *                unet-train  zero grads, forward, eps MSE, backward, AdamW
 *                sgemm       not a model: BATCH = n, the best of 20
 *                            n x n x n da_gemm calls (after one warm-up) in
 *                            GFLOP/s, at DA_THREADS threads; run.sh runs it
 *                            on 1 thread as the reference for the UNet's
 *                            achieved GFLOP/s
 *   results_file "name value..." lines appended for bench/run.sh
 *
 * ONE measurement per process: ru_maxrss (peak RSS) is a high-water mark
 * over the process's life, so measurements sharing a process would share a
 * peak. Threads: DA_THREADS (default: all cores).
 *
 * Timing, kept short because run.sh repeats whole processes (5 by default)
 * and takes the median over them: one warm-up call (it also grows the tape's
 * arena to its final size), then one timed call; a sample is that many calls
 * that last >= 50 ms (one call when a call takes longer), and the process
 * takes as many samples as fit in DA_BENCH_BUDGET seconds (default 1), at
 * least 1 and at most DA_BENCH_SAMPLES (default 3); the median sample's time
 * per call is reported. DA_BENCH_QUICK=1: the warm-up and one timed call
 * (checks that the program works; the numbers mean little). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dalign.h"

#define MAX_SAMPLES 15     /* cap of DA_BENCH_SAMPLES */
#define MIN_SAMPLE_S 0.05
#define STEPS 20
#define CFG_W 3.0f

/* what the models are conditioned on; cycled over the batch */
static const char *const PROMPTS[] = {
    "a large red circle to the left of a small blue square",
    "a green triangle on a black background",
    "a small yellow square above a large purple circle",
    "a pink circle below a cyan triangle on a white background",
    "a large orange triangle",
    "a blue circle to the right of a red square",
    "a small green square on a gray background",
    "a purple triangle above a yellow circle",
};
#define N_PROMPTS ((int)(sizeof PROMPTS / sizeof PROMPTS[0]))

static int quick;                /* DA_BENCH_QUICK */
static int max_samples = 3;      /* DA_BENCH_SAMPLES */
static double budget_s = 1.0;    /* DA_BENCH_BUDGET: seconds of timed samples per process */
static int n_samples_used, inner_used;   /* what time_s did, for the report line */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* peak resident set of this process so far, MiB (Linux: ru_maxrss in KiB) */
static double peak_rss_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static void die(const char *what, da_status s)
{
    fprintf(stderr, "bench_models: %s: %s (%s)\n", what, da_last_error(), da_strerror(s));
    exit(1);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "bench_models: out of memory\n");
        exit(1);
    }
    return p;
}

typedef void (*bench_fn)(void *ctx);

/* median seconds per call of fn(ctx) (header comment: "Timing") */
static double time_s(bench_fn fn, void *ctx)
{
    fn(ctx);   /* warm-up */
    double t0 = now();
    fn(ctx);
    double one = now() - t0;
    int inner = quick || one >= MIN_SAMPLE_S ? 1 : (int)(MIN_SAMPLE_S / (one > 1e-7 ? one : 1e-7)) + 1;
    double per_sample = one * inner;
    int n = quick ? 1 : (int)(budget_s / (per_sample > 1e-9 ? per_sample : 1e-9));
    if (n > max_samples) n = max_samples;
    if (n < 1) n = 1;
    double s[MAX_SAMPLES];
    int i = 0;
    if (inner == 1) s[i++] = one;   /* the probing call is a sample of its own */
    for (; i < n; i++) {
        t0 = now();
        for (int r = 0; r < inner; r++) fn(ctx);
        s[i] = (now() - t0) / inner;
    }
    qsort(s, (size_t)n, sizeof s[0], cmp_double);
    n_samples_used = n, inner_used = inner;
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ------------------------------------------------------------------------ */
/* FLOP count of a UNet forward, from the config                            */
/* ------------------------------------------------------------------------ */

/* Multiply-adds count 2 FLOP; only the GEMM-shaped work is counted (convs,
 * linears, the two attention matmuls), not norms, activations, adds, the
 * softmax or the sinusoidal embedding (together well under 1% here). This
 * walks the same blocks in the same order as da_unet_forward
 * (src/models/unet.c, blocks in src/models/blocks.c); update it with them. */
static double conv_flop(int cin, int cout, int k, int out_hw) { return 2.0 * cout * cin * k * k * out_hw; }
static double linear_flop(int in, int out, int rows) { return 2.0 * in * out * rows; }

/* da_blk_resblock: conv1 3x3, time_proj on one row, conv2 3x3, 1x1
 * nin_shortcut when the width changes */
static double resblock_flop(int cin, int cout, int hw, int time_dim)
{
    double f = conv_flop(cin, cout, 3, hw) + linear_flop(time_dim, cout, 1) + conv_flop(cout, cout, 3, hw);
    return cin != cout ? f + conv_flop(cin, cout, 1, hw) : f;
}

/* da_blk_transformer on hw pixel tokens of width C, T context tokens of
 * width ctx_dim: proj_in and proj_out 1x1; self-attention q, k, v, out
 * (C x C) and its matmuls q k^T and p v (2 hw hw C each, over all heads);
 * cross-attention q and out (C x C) on hw rows, k and v (ctx_dim -> C) on T
 * rows, matmuls 2 hw T C each (all T keys: padded keys are computed, then
 * masked); the MLP C -> 4C -> C */
static double transformer_flop(int C, int hw, int ctx_dim, int T)
{
    double f = 2 * conv_flop(C, C, 1, hw);
    f += 4 * linear_flop(C, C, hw) + 2 * (2.0 * hw * hw * C);
    f += 2 * linear_flop(C, C, hw) + 2 * linear_flop(ctx_dim, C, T) + 2 * (2.0 * hw * T * C);
    f += linear_flop(C, 4 * C, hw) + linear_flop(4 * C, C, hw);
    return f;
}

/* one image of latent H x W and T context tokens */
static double unet_fwd_flop(const da_unet_config *c, int H, int W, int T)
{
    int c0 = c->ch[0], c1 = c->ch[1], td = c->time_dim, cd = c->context_dim;
    int hw0 = H * W, hw1 = (H / 2) * (W / 2);
    double f = linear_flop(c->time_freq_dim, td, 1) + linear_flop(td, td, 1);   /* time_embed */
    f += conv_flop(c->in_channels, c0, 3, hw0);                                  /* conv_in */
    f += resblock_flop(c0, c0, hw0, td) + transformer_flop(c0, hw0, cd, T);       /* down.0 */
    f += conv_flop(c0, c0, 3, hw1);                                               /* downsample, stride 2 */
    f += resblock_flop(c0, c1, hw1, td) + transformer_flop(c1, hw1, cd, T);       /* down.1 */
    f += 2 * resblock_flop(c1, c1, hw1, td) + transformer_flop(c1, hw1, cd, T);   /* mid */
    f += resblock_flop(c1 + c1, c1, hw1, td) + transformer_flop(c1, hw1, cd, T);  /* up.1 */
    f += conv_flop(c1, c1, 3, hw0);                                               /* upsample: 2x, then 3x3 */
    f += resblock_flop(c1 + c0, c0, hw0, td) + transformer_flop(c0, hw0, cd, T);  /* up.0 */
    f += conv_flop(c0, c->out_channels, 3, hw0);                                  /* conv_out */
    return f;
}

/* ------------------------------------------------------------------------ */
/* sgemm reference: best of 20 n^3 da_gemm calls                            */
/* ------------------------------------------------------------------------ */

static double sgemm_gflops(int n)
{
    size_t nn = (size_t)n * n;
    float *a = xcalloc(nn, sizeof(float)), *b = xcalloc(nn, sizeof(float)), *c = xcalloc(nn, sizeof(float));
    da_rng rng;
    da_rng_seed(&rng, 1);
    da_randn(&rng, a, nn);
    da_randn(&rng, b, nn);
    da_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);   /* warm-up */
    double best = 1e30;
    for (int i = 0; i < (quick ? 3 : 20); i++) {
        double t0 = now();
        da_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    free(a), free(b), free(c);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* Models: from a weights directory, or random with the default configs     */
/* ------------------------------------------------------------------------ */

static void path_of(char *buf, size_t cap, const char *dir, const char *name, const char *ext)
{
    if ((size_t)snprintf(buf, cap, "%s/%s%s", dir, name, ext) >= cap) {
        fprintf(stderr, "bench_models: path too long: %s/%s%s\n", dir, name, ext);
        exit(1);
    }
}

/* the UNet of `dir` (config and weights), or the default config at random */
static da_unet *make_unet(const char *dir, int trainable, da_rng *rng)
{
    da_unet_config c = da_unet_config_default();
    char path[4096];
    da_status s;
    if (dir) {
        path_of(path, sizeof path, dir, "unet", ".json");
        if ((s = da_unet_config_load(&c, path)) != DA_OK) die(path, s);
    }
    da_unet *m = da_unet_create(&c, trainable);
    if (!m) die("da_unet_create", DA_ERR_INVALID);
    if (dir) {
        path_of(path, sizeof path, dir, "unet", ".safetensors");
        if ((s = da_unet_load(m, path)) != DA_OK) die(path, s);
    } else {
        da_unet_init(m, rng);
    }
    return m;
}

/* da_pipeline_load's pipeline owns its models; over random ones it does not */
static da_pipeline *make_pipeline(const char *dir, da_rng *rng)
{
    da_pipeline *p = NULL;
    da_status s;
    if (dir) {
        if ((s = da_pipeline_load(&p, dir, "unet")) != DA_OK) die(dir, s);
        return p;
    }
    da_text_config tc = da_text_config_default();
    tc.vocab_size = da_vocab_size();   /* as the shipped text encoder */
    da_vae_config vc = da_vae_config_default();
    da_text_encoder *text = da_text_encoder_create(&tc, 0);
    da_vae *vae = da_vae_create(&vc, 0);
    if (!text || !vae) die("create models", DA_ERR_INVALID);
    da_text_encoder_init(text, rng);
    da_vae_init(vae, rng);
    da_unet *unet = make_unet(NULL, 0, rng);
    if ((s = da_pipeline_create(&p, text, vae, unet, NULL)) != DA_OK) die("da_pipeline_create", s);
    return p;
}

static void free_pipeline(da_pipeline *p)
{
    da_text_encoder *text = p->text;
    da_vae *vae = p->vae;
    da_unet *unet = p->unet;
    int owned = p->owns_models;
    da_pipeline_free(p);
    if (!owned) {
        da_text_encoder_free(text);
        da_vae_free(vae);
        da_unet_free(unet);
    }
}

/* ------------------------------------------------------------------------ */
/* The three measurements                                                   */
/* ------------------------------------------------------------------------ */

typedef struct sample_ctx {
    da_pipeline *p;
    da_sample_opts opts;
    const char **prompts;
    uint64_t *seeds;
    int n;
    float *images;
} sample_ctx;

static void run_sample(void *c)
{
    sample_ctx *s = c;
    da_status st = da_pipeline_generate(s->p, &s->opts, s->prompts, NULL, s->seeds, s->n, NULL, NULL,
                                        s->images, NULL);
    if (st != DA_OK) die("da_pipeline_generate", st);
}

typedef struct unet_ctx {
    da_unet *m;
    da_tape tape;
    int B, T;
    int xs[4], cs[3];      /* x (B, C, h, w), context (B, T, context_dim) */
    float *x, *t, *ctx, *target;
    uint8_t *keep;
    float *adam_m, *adam_v;
    long step;
    da_adamw opt;
} unet_ctx;

static da_tensor *unet_pred(unet_ctx *u)
{
    da_tape *t = &u->tape;
    da_tape_reset(t);
    da_tensor *x = da_leaf(t, u->x, NULL, 4, u->xs);
    da_tensor *ctx = da_leaf(t, u->ctx, NULL, 3, u->cs);
    return da_unet_forward(t, u->m, x, u->t, ctx, u->keep);
}

static void run_unet_fwd(void *c) { unet_pred(c); }

/* one optimizer step, as a trainer's (without clipping and EMA: flat loops) */
static void run_unet_train(void *c)
{
    unet_ctx *u = c;
    da_params *p = &u->m->params;
    da_params_zero_grad(p);
    da_tensor *pred = unet_pred(u);
    da_tensor *loss = da_mse(&u->tape, pred, da_leaf(&u->tape, u->target, NULL, 4, u->xs));
    da_tape_backward(&u->tape, loss);
    da_adamw_step(p->data, p->grad, u->adam_m, u->adam_v, p->total, ++u->step, &u->opt);
}

/* inputs of a UNet call: latents, timesteps in [0, 1000), the token features
 * of PROMPTS (random values, real padding masks), a target eps */
static void unet_setup(unet_ctx *u, da_unet *m, int B, int train, da_rng *rng)
{
    memset(u, 0, sizeof *u);
    u->m = m;
    u->B = B;
    u->T = DA_MAX_TOKENS;
    int h = DA_IMG / 4;
    u->xs[0] = B, u->xs[1] = m->cfg.in_channels, u->xs[2] = h, u->xs[3] = h;
    u->cs[0] = B, u->cs[1] = u->T, u->cs[2] = m->cfg.context_dim;
    size_t nx = da_shape_size(4, u->xs), nc = da_shape_size(3, u->cs);
    u->x = xcalloc(nx, sizeof(float));
    u->target = xcalloc(nx, sizeof(float));
    u->ctx = xcalloc(nc, sizeof(float));
    u->t = xcalloc((size_t)B, sizeof(float));
    u->keep = xcalloc((size_t)B * u->T, 1);
    da_randn(rng, u->x, nx);
    da_randn(rng, u->target, nx);
    da_randn(rng, u->ctx, nc);
    int ids[DA_MAX_TOKENS];
    for (int b = 0; b < B; b++) {
        u->t[b] = (float)(da_rng_u32(rng) % 1000u);
        da_status s = da_prompt_tokens(PROMPTS[b % N_PROMPTS], ids, u->keep + (size_t)b * u->T);
        if (s != DA_OK) die("da_prompt_tokens", s);
    }
    da_tape_init(&u->tape, (size_t)16 << 20);
    da_tape_set_grad(&u->tape, train);
    if (train) {
        u->adam_m = xcalloc(m->params.total, sizeof(float));
        u->adam_v = xcalloc(m->params.total, sizeof(float));
        u->opt = (da_adamw){1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f};
    }
}

static void unet_teardown(unet_ctx *u)
{
    da_tape_free(&u->tape);
    free(u->x), free(u->target), free(u->ctx), free(u->t), free(u->keep);
    free(u->adam_m), free(u->adam_v);
}

/* ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: bench_models WEIGHTS_DIR|- sample|unet-fwd|unet-train|sgemm BATCH [results_file]\n");
    exit(2);
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0");
}

static FILE *open_results(int argc, char **argv)
{
    if (argc <= 4) return NULL;
    FILE *f = fopen(argv[4], "a");
    if (!f) {
        perror(argv[4]);
        exit(1);
    }
    return f;
}

int main(int argc, char **argv)
{
    if (argc < 4) usage();
    const char *dir = strcmp(argv[1], "-") ? argv[1] : NULL;
    const char *what = argv[2];
    int B = atoi(argv[3]);
    if (B < 1) usage();
    int is_sample = !strcmp(what, "sample"), is_fwd = !strcmp(what, "unet-fwd");
    int is_train = !strcmp(what, "unet-train"), is_sgemm = !strcmp(what, "sgemm");
    if (!is_sample && !is_fwd && !is_train && !is_sgemm) usage();
    quick = env_flag("DA_BENCH_QUICK");
    const char *v = getenv("DA_BENCH_SAMPLES");
    if (v && atoi(v) >= 1) max_samples = atoi(v) < MAX_SAMPLES ? atoi(v) : MAX_SAMPLES;
    v = getenv("DA_BENCH_BUDGET");
    if (v && atof(v) >= 0.0) budget_s = atof(v);
    da_threads_init();
    double rss_start = peak_rss_mib();
    da_rng rng;
    da_rng_seed(&rng, 0);

    if (is_sgemm) {
        double g = sgemm_gflops(B);
        printf("sgemm %d^3 (da_gemm, %s), %d thread%s: best of %d calls %.1f GFLOP/s\n", B, da_gemm_backend(),
               da_get_threads(), da_get_threads() == 1 ? "" : "s", quick ? 3 : 20, g);
        FILE *f = open_results(argc, argv);
        if (f) fprintf(f, "sgemm.%d %.3f %d\n", B, g, da_get_threads()), fclose(f);
        return 0;
    }

    char name[64], label[160];
    double sec, flop = 0.0;
    size_t n_params;
    if (is_sample) {
        sample_ctx s = {make_pipeline(dir, &rng), da_sample_opts_default(), NULL, NULL, B, NULL};
        n_params = s.p->text->params.total + s.p->vae->params.total + s.p->unet->params.total;
        s.opts.sampler = DA_SAMPLER_DDIM;
        s.opts.steps = STEPS;
        s.opts.cfg = CFG_W;
        s.opts.eta = 0.0f;
        s.prompts = xcalloc((size_t)B, sizeof *s.prompts);
        s.seeds = xcalloc((size_t)B, sizeof *s.seeds);
        for (int b = 0; b < B; b++) s.prompts[b] = PROMPTS[b % N_PROMPTS], s.seeds[b] = (uint64_t)b;
        s.images = xcalloc((size_t)B * DA_IMG_FLOATS, sizeof(float));
        sec = time_s(run_sample, &s);
        snprintf(name, sizeof name, "sample.b%d", B);
        snprintf(label, sizeof label, "sample b%d: text encoder + %d DDIM steps, CFG %g (UNet batch %d) + VAE decode",
                 B, STEPS, (double)CFG_W, 2 * B);
        free(s.prompts), free(s.seeds), free(s.images);
        free_pipeline(s.p);
    } else {
        unet_ctx u;
        da_unet *m = make_unet(dir, is_train, &rng);
        n_params = m->params.total;
        unet_setup(&u, m, B, is_train, &rng);
        flop = unet_fwd_flop(&m->cfg, u.xs[2], u.xs[3], u.T);
        sec = time_s(is_train ? run_unet_train : run_unet_fwd, &u);
        snprintf(name, sizeof name, "%s.b%d", is_train ? "unet_train" : "unet_fwd", B);
        snprintf(label, sizeof label, is_train ? "UNet train step b%d: zero grads, forward, MSE, backward, AdamW"
                                               : "UNet forward b%d (no gradients)", B);
        unet_teardown(&u);
        da_unet_free(m);
    }
    double rss = peak_rss_mib();
    printf("%-72s %10.2f ms %9.2f images/s  peak RSS %7.1f MiB (%.1f at start)  %zu params  (%d thread%s, median "
           "of %d x %d call%s)\n",
           label, sec * 1e3, B / sec, rss, rss_start, n_params, da_get_threads(), da_get_threads() == 1 ? "" : "s",
           n_samples_used, inner_used, inner_used == 1 ? "" : "s");
    if (is_fwd)
        printf("UNet forward: %.2f MFLOP per image (convs, linears, attention matmuls; from the config), %.1f "
               "GFLOP/s\n",
               flop * 1e-6, flop * B / sec * 1e-9);
    FILE *f = open_results(argc, argv);
    if (f) {
        fprintf(f, "model.%s %.6f %d\nrss.%s %.3f %.3f\n", name, sec * 1e3, B, name, rss, rss_start);
        if (is_fwd) fprintf(f, "flop.%s %.0f\n", name, flop);
        fclose(f);
    }
    return 0;
}
