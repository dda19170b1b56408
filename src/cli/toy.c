/* dalign toy: the smallest honest end-to-end job of the core.
 *
 * Trains a 3-layer MLP to predict the noise of a 2-D diffusion process whose
 * data are 8 Gaussian blobs on a circle, then samples with deterministic DDIM
 * and measures how many samples land on a blob. Exercises the whole core:
 * torch-compatible RNG, tape autograd (linear, SiLU, MSE), AdamW with warmup
 * and cosine decay, gradient clipping, EMA, safetensors save and reload.
 * The image model replaces this once the latent-diffusion issue lands. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dalign.h"

#define N_MODES 8
#define MODE_RADIUS 2.0f
#define MODE_STD 0.1f
#define HIDDEN 128
#define IN_DIM 4  /* x_t (2), sin and cos of the noise angle */
#define T_MAX 0.98f /* alpha_bar(T_MAX) = 1e-3: keeps 1/sqrt(alpha_bar) finite */
#define MAX_BATCH 65536      /* a few MB of buffers; far above any useful batch */
#define MAX_STEPS 100000000

/* One parameter buffer described by a table of PyTorch names (da_params, the
 * pattern every model uses); AdamW's m and v and the EMA share its layout. */
static void toy_params_build(da_params *p, int with_grad)
{
    const int fc1_w[2] = {HIDDEN, IN_DIM}, fc2_w[2] = {HIDDEN, HIDDEN}, fc3_w[2] = {2, HIDDEN};
    const int hidden[1] = {HIDDEN}, out[1] = {2};
    da_params_init(p);
    da_params_add(p, "fc1.weight", 2, fc1_w);
    da_params_add(p, "fc1.bias", 1, hidden);
    da_params_add(p, "fc2.weight", 2, fc2_w);
    da_params_add(p, "fc2.bias", 1, hidden);
    da_params_add(p, "fc3.weight", 2, fc3_w);
    da_params_add(p, "fc3.bias", 1, out);
    if (da_params_alloc(p, with_grad) != DA_OK) {
        fprintf(stderr, "dalign toy: %s\n", da_last_error());
        exit(1);
    }
}

/* PyTorch's nn.Linear default, in table order: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 * for the weight and for the bias that follows it */
static void toy_params_init(da_params *p, da_rng *rng)
{
    for (int i = 0; i < p->n; i++) {
        int fan_in = p->ndim[i] == 2 ? p->shape[i][1] : p->shape[i - 1][1];
        da_init_uniform(rng, p->data + p->offset[i], da_shape_size(p->ndim[i], p->shape[i]),
                        1.0f / sqrtf((float)fan_in));
    }
}

/* The same table over other weights (the EMA): shares names, no gradients. */
static da_params toy_params_view(const da_params *p, float *data)
{
    da_params v = *p;
    v.data = data;
    v.grad = NULL;
    return v;
}

/* cosine schedule: alpha_bar(t) = cos^2(pi t / 2), t in [0, 1] */
static float alpha_bar(float t)
{
    float c = cosf(0.5f * (float)M_PI * t);
    return c * c;
}

/* eps_theta(x_t, t): x (B, 2), t (B) -> (B, 2) */
static da_tensor *toy_forward(da_tape *tape, const da_params *p, const float *x, const float *t, int B)
{
    float *in = da_arena_alloc(&tape->arena, (size_t)B * IN_DIM * sizeof(float));
    for (int b = 0; b < B; b++) {
        in[b * IN_DIM + 0] = x[2 * b];
        in[b * IN_DIM + 1] = x[2 * b + 1];
        in[b * IN_DIM + 2] = sinf(0.5f * (float)M_PI * t[b]);
        in[b * IN_DIM + 3] = cosf(0.5f * (float)M_PI * t[b]);
    }
    int in_shape[2] = {B, IN_DIM};
    da_tensor *h = da_leaf(tape, in, NULL, 2, in_shape);
    h = da_silu(tape, da_linear(tape, h, da_params_leaf(tape, p, "fc1.weight"), da_params_leaf(tape, p, "fc1.bias")));
    h = da_silu(tape, da_linear(tape, h, da_params_leaf(tape, p, "fc2.weight"), da_params_leaf(tape, p, "fc2.bias")));
    return da_linear(tape, h, da_params_leaf(tape, p, "fc3.weight"), da_params_leaf(tape, p, "fc3.bias"));
}

/* 0, or -1 when out of memory */
static int sample_data(da_rng *rng, float *x0, int B)
{
    int64_t *mode = malloc((size_t)B * sizeof *mode);
    float *jitter = malloc((size_t)B * 2 * sizeof *jitter);
    if (!mode || !jitter) {
        free(mode);
        free(jitter);
        return -1;
    }
    da_randint(rng, mode, (size_t)B, 0, N_MODES);
    da_randn(rng, jitter, (size_t)B * 2);
    for (int b = 0; b < B; b++) {
        float ang = 2.0f * (float)M_PI * (float)mode[b] / N_MODES;
        x0[2 * b] = MODE_RADIUS * cosf(ang) + MODE_STD * jitter[2 * b];
        x0[2 * b + 1] = MODE_RADIUS * sinf(ang) + MODE_STD * jitter[2 * b + 1];
    }
    free(mode);
    free(jitter);
    return 0;
}

/* Deterministic DDIM (eta = 0) from pure noise, `steps` steps from T_MAX
 * to 0. 0, or -1 when out of memory. */
static int ddim_sample(const da_params *p, uint64_t seed, float *x, int B, int steps)
{
    float *tt = malloc((size_t)B * sizeof *tt);
    if (!tt) return -1;
    da_rng rng;
    da_rng_seed(&rng, seed);
    da_randn(&rng, x, (size_t)B * 2);
    da_tape tape;
    da_tape_init(&tape, 1 << 20);
    da_tape_set_grad(&tape, 0);
    for (int s = 0; s < steps; s++) {
        float t = T_MAX * (float)(steps - s) / steps, t_prev = T_MAX * (float)(steps - s - 1) / steps;
        float a = alpha_bar(t), a_prev = s == steps - 1 ? 1.0f : alpha_bar(t_prev);
        for (int b = 0; b < B; b++) tt[b] = t;
        da_tape_reset(&tape);
        da_tensor *eps = toy_forward(&tape, p, x, tt, B);
        for (int i = 0; i < 2 * B; i++) {
            float x0 = (x[i] - sqrtf(1.0f - a) * eps->data[i]) / sqrtf(a);
            x[i] = sqrtf(a_prev) * x0 + sqrtf(1.0f - a_prev) * eps->data[i];
        }
    }
    free(tt);
    da_tape_free(&tape);
    return 0;
}

/* fraction of samples within 4 standard deviations of a mode centre */
static float on_mode_fraction(const float *x, int B)
{
    int hits = 0;
    for (int b = 0; b < B; b++) {
        for (int k = 0; k < N_MODES; k++) {
            float ang = 2.0f * (float)M_PI * k / N_MODES;
            float dx = x[2 * b] - MODE_RADIUS * cosf(ang), dy = x[2 * b + 1] - MODE_RADIUS * sinf(ang);
            if (dx * dx + dy * dy < 16.0f * MODE_STD * MODE_STD) { hits++; break; }
        }
    }
    return (float)hits / B;
}

/* a 48x21 character density plot of the samples over [-3, 3]^2 */
static void ascii_plot(const float *x, int B)
{
    enum { W = 48, H = 21 };
    int count[H][W];
    memset(count, 0, sizeof count);
    for (int b = 0; b < B; b++) {
        int c = (int)floorf((x[2 * b] + 3.0f) / 6.0f * W), r = (int)floorf((3.0f - x[2 * b + 1]) / 6.0f * H);
        if (c >= 0 && c < W && r >= 0 && r < H) count[r][c]++;
    }
    const char *shade = " .:*#";
    for (int r = 0; r < H; r++) {
        printf("    |");
        for (int c = 0; c < W; c++) {
            int n = count[r][c], lvl = n == 0 ? 0 : n < 3 ? 1 : n < 10 ? 2 : n < 30 ? 3 : 4;
            putchar(shade[lvl]);
        }
        printf("|\n");
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign toy [--steps N] [--batch B] [-s S] [-o FILE]  (--opt=value works too)\n"
            "\n"
            "Train a tiny 2-D diffusion model (an MLP that predicts noise) on 8 blobs\n"
            "on a circle, sample it with DDIM, report how many samples land on a blob,\n"
            "save the EMA weights as safetensors and check the reload samples the same bits.\n"
            "\n"
            "  --steps N   training steps (default 12000)\n"
            "  --batch B   batch size, 1..65536 (default 256)\n"
            "  -s, --seed S  seed for init, data and sampling (default 0; -1: random, printed)\n"
            "  -o, --output FILE  checkpoint path (default toy.safetensors; checked before training)\n"
            CLI_COMMON_HELP);
}

enum { OPT_STEPS = CLI_O_LOCAL, OPT_BATCH };
static const struct option LONG_OPTS[] = {
    {"steps", required_argument, 0, OPT_STEPS}, {"batch", required_argument, 0, OPT_BATCH},
    {"seed", required_argument, 0, 's'},        {"output", required_argument, 0, 'o'},
    CLI_COMMON_LONG,                            {0, 0, 0, 0},
};

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(int argc, char **argv, int *steps, int *B, uint64_t *seed, const char **out_path)
{
    cli_parser p = cli_parser_init("toy", argc, argv, "s:o:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        int rc;
        switch (c) {
        case CLI_EXIT: return p.rc;
        case 'o': *out_path = p.val; rc = 0; break;
        case 's': rc = cli_parse_seed("toy", p.opt, p.val, seed); break;
        case OPT_STEPS: rc = cli_parse_int_in("toy", p.opt, p.val, 1, MAX_STEPS, steps); break;
        case OPT_BATCH: rc = cli_parse_int_in("toy", p.opt, p.val, 1, MAX_BATCH, B); break;
        default: rc = cli_unhandled(&p);
        }
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign toy: unexpected argument '%s'\n", argv[p.optind]);
        return 2;
    }
    return -1;
}

int cmd_toy(int argc, char **argv)
{
    int steps = 12000, B = 256;
    uint64_t seed = 0;
    const char *out_path = "toy.safetensors";
    int rc0 = parse_args(argc, argv, &steps, &B, &seed, &out_path);
    if (rc0 >= 0) return rc0;
    /* the output is checked before minutes of training, not after */
    if (cli_check_writable("toy", out_path, out_path)) return 1;

    da_rng rng;
    da_rng_seed(&rng, (uint64_t)seed);
    da_params net;
    toy_params_build(&net, 1);
    toy_params_init(&net, &rng);
    float *m = calloc(net.total, sizeof(float)), *v = calloc(net.total, sizeof(float));
    float *ema = malloc(net.total * sizeof(float));
    if (!m || !v || !ema) {
        fprintf(stderr, "dalign toy: out of memory\n");
        return 1;
    }
    memcpy(ema, net.data, net.total * sizeof(float));
    da_params ema_view = toy_params_view(&net, ema);
    const int n_eval = 2000, ddim_steps = 50;
    float *samples = malloc((size_t)n_eval * 2 * sizeof(float));
    float *x0 = malloc((size_t)B * 2 * sizeof(float)), *eps = malloc((size_t)B * 2 * sizeof(float));
    float *xt = malloc((size_t)B * 2 * sizeof(float)), *t = malloc((size_t)B * sizeof(float));
    if (!samples || !x0 || !eps || !xt || !t || ddim_sample(&net, (uint64_t)seed + 1, samples, n_eval, ddim_steps)) {
        fprintf(stderr, "dalign toy: out of memory (batch %d)\n", B);
        free(samples); free(x0); free(eps); free(xt); free(t); free(m); free(v); free(ema);
        da_params_free(&net);
        return 1;
    }
    printf("dalign toy: 2-D diffusion on %d blobs, MLP 4-%d-%d-2 (%zu parameters), %d threads\n",
           N_MODES, HIDDEN, HIDDEN, net.total, da_get_threads());
    printf("  before training: %.1f%% of %d DDIM samples land on a blob\n", 100.0f * on_mode_fraction(samples, n_eval), n_eval);

    da_adamw opt = {.lr = 2e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 1e-4f};
    da_tape tape;
    da_tape_init(&tape, 1 << 22);
    double loss_avg = 0.0, first_loss = 0.0;
    for (int step = 0; step < steps; step++) {
        /* x_t = sqrt(a) x0 + sqrt(1 - a) eps, t ~ U(0, T_MAX) */
        if (sample_data(&rng, x0, B)) {
            fprintf(stderr, "dalign toy: out of memory (batch %d)\n", B);
            return 1;
        }
        da_randn(&rng, eps, (size_t)B * 2);
        da_rand(&rng, t, (size_t)B);
        for (int b = 0; b < B; b++) {
            t[b] *= T_MAX;
            float a = alpha_bar(t[b]);
            for (int j = 0; j < 2; j++) xt[2 * b + j] = sqrtf(a) * x0[2 * b + j] + sqrtf(1.0f - a) * eps[2 * b + j];
        }
        da_tape_reset(&tape);
        da_params_zero_grad(&net);
        da_tensor *pred = toy_forward(&tape, &net, xt, t, B);
        int eps_shape[2] = {B, 2};
        da_tensor *loss = da_mse(&tape, pred, da_leaf(&tape, eps, NULL, 2, eps_shape));
        da_tape_backward(&tape, loss);
        da_grad_clip(net.grad, net.total, 1.0f);
        opt.lr = da_lr_at(DA_LR_COSINE, 2e-3f, 1e-5f, step, 100, steps);
        da_adamw_step(net.data, net.grad, m, v, net.total, step + 1, &opt);
        da_ema_update(ema, net.data, net.total, 0.995f);
        loss_avg = step == 0 ? loss->data[0] : 0.98 * loss_avg + 0.02 * loss->data[0];
        if (step == 0) first_loss = loss->data[0];
        if ((step + 1) % (steps / 5 > 0 ? steps / 5 : 1) == 0)
            printf("  step %5d/%d  loss (moving avg) %.4f  lr %.2e\n", step + 1, steps, loss_avg, opt.lr);
    }
    printf("  loss %.4f -> %.4f (predicting zero noise scores 1.0)\n", first_loss, loss_avg);

    if (ddim_sample(&ema_view, (uint64_t)seed + 1, samples, n_eval, ddim_steps)) {
        fprintf(stderr, "dalign toy: out of memory\n");
        return 1;
    }
    float frac = on_mode_fraction(samples, n_eval);
    printf("  after training:  %.1f%% of %d DDIM samples (%d steps, EMA weights) land on a blob\n",
           100.0f * frac, n_eval, ddim_steps);
    ascii_plot(samples, n_eval);

    int rc = 0;
    da_st_meta meta[1] = {{"model", "dalign toy 2-D eps-prediction MLP (EMA weights)"}};
    if (da_params_save(&ema_view, out_path, meta, 1) != DA_OK) {
        fprintf(stderr, "dalign toy: cannot save %s: %s\n", out_path, da_last_error());
        rc = 1;
    } else {
        da_params reloaded; /* a fresh model: the strict loader checks every name and shape */
        toy_params_build(&reloaded, 0);
        float *again = malloc((size_t)n_eval * 2 * sizeof(float));
        if (!again || da_params_load(&reloaded, out_path) != DA_OK) {
            fprintf(stderr, "dalign toy: cannot reload %s: %s\n", out_path, da_last_error());
            rc = 1;
        } else {
            int same = ddim_sample(&reloaded, (uint64_t)seed + 1, again, n_eval, ddim_steps) == 0 &&
                       memcmp(again, samples, (size_t)n_eval * 2 * sizeof(float)) == 0;
            printf("  saved %s; reloaded weights sample %s\n", out_path,
                   same ? "the same bits" : "DIFFERENT bits (bug)");
            if (!same) rc = 1;
        }
        da_params_free(&reloaded);
        free(again);
    }
    free(x0); free(eps); free(xt); free(t); free(samples);
    da_tape_free(&tape);
    free(m); free(v); free(ema);
    da_params_free(&net);
    return rc;
}
