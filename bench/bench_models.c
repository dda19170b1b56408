/* Model benchmarks (issue 3, item 11): the whole text -> image sampling run
 * and the UNet's forward pass and training step. Numbers only, never
 * pass/fail. bench/torch_models.py measures the same architectures in
 * PyTorch the same way; bench/run.sh prints the two side by side.
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
 *                unet-fwd    da_unet_forward, gradients off
 *                unet-train  zero grads, forward, eps MSE, backward, AdamW
 *   results_file "name value..." lines appended for bench/run.sh
 *
 * ONE measurement per process: ru_maxrss (peak RSS) is a high-water mark
 * over the process's life, so measurements sharing a process would share a
 * peak. Threads: DA_THREADS (default: all cores).
 *
 * Timing: one warm-up call (it also grows the tape's arena to its final
 * size), then 5 samples of enough calls to last >= 0.2 s each; the median
 * sample's time per call is reported. DA_BENCH_QUICK=1: one sample of one
 * call (checks that the program works; the numbers mean little). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "dalign.h"

#define N_SAMPLES 5
#define MIN_SAMPLE_S 0.2
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

static int quick;   /* DA_BENCH_QUICK */

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

/* median seconds per call of fn(ctx) */
static double time_s(bench_fn fn, void *ctx)
{
    fn(ctx);   /* warm-up */
    int n_samples = quick ? 1 : N_SAMPLES;
    double t0 = now();
    fn(ctx);
    double one = now() - t0;
    int inner = quick || one >= MIN_SAMPLE_S ? 1 : (int)(MIN_SAMPLE_S / (one > 1e-7 ? one : 1e-7)) + 1;
    double s[N_SAMPLES];
    for (int i = 0; i < n_samples; i++) {
        t0 = now();
        for (int r = 0; r < inner; r++) fn(ctx);
        s[i] = (now() - t0) / inner;
    }
    qsort(s, (size_t)n_samples, sizeof s[0], cmp_double);
    return s[n_samples / 2];
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
    fprintf(stderr, "usage: bench_models WEIGHTS_DIR|- sample|unet-fwd|unet-train BATCH [results_file]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 4) usage();
    const char *dir = strcmp(argv[1], "-") ? argv[1] : NULL;
    const char *what = argv[2];
    int B = atoi(argv[3]);
    if (B < 1) usage();
    int is_sample = !strcmp(what, "sample"), is_fwd = !strcmp(what, "unet-fwd");
    int is_train = !strcmp(what, "unet-train");
    if (!is_sample && !is_fwd && !is_train) usage();
    const char *q = getenv("DA_BENCH_QUICK");
    quick = q && *q && strcmp(q, "0");
    da_threads_init();
    double rss_start = peak_rss_mib();
    da_rng rng;
    da_rng_seed(&rng, 0);

    char name[64], label[160];
    double sec;
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
        sec = time_s(is_train ? run_unet_train : run_unet_fwd, &u);
        snprintf(name, sizeof name, "%s.b%d", is_train ? "unet_train" : "unet_fwd", B);
        snprintf(label, sizeof label, is_train ? "UNet train step b%d: zero grads, forward, MSE, backward, AdamW"
                                               : "UNet forward b%d (no gradients)", B);
        unet_teardown(&u);
        da_unet_free(m);
    }
    double rss = peak_rss_mib();
    printf("%-72s %10.2f ms %9.2f images/s  peak RSS %7.1f MiB (%.1f at start)  %zu params\n", label,
           sec * 1e3, B / sec, rss, rss_start, n_params);
    if (argc > 4) {
        FILE *f = fopen(argv[4], "a");
        if (!f) {
            perror(argv[4]);
            return 1;
        }
        fprintf(f, "model.%s %.6f %d\nrss.%s %.3f %.3f\n", name, sec * 1e3, B, name, rss, rss_start);
        fclose(f);
    }
    return 0;
}
