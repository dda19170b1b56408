/* dalign train clip|vae|unet: pretraining on shapes-world data generated on
 * the fly (src/train/pretrain*.c), through the shared harness: progress bar,
 * JSONL metrics, periodic atomic checkpoints, bit-identical --resume,
 * SIGINT/SIGTERM -> checkpoint and exit 130/143.
 * dalign train reward: the preference model on rater-labelled pairs
 * (src/train/reward_run.c), on the same harness, with its own few options. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"
#include "train/pref.h"
#include "train/reward_run.h"

enum { FOR_CLIP = 1, FOR_VAE = 2, FOR_UNET = 4, FOR_ALL = 7 };
typedef enum { OPT_INT, OPT_LONG, OPT_FLOAT, OPT_U64, OPT_STR, OPT_WIDTH, OPT_OFF, OPT_ON } opt_kind;

typedef struct opt_def {
    const char *name;
    opt_kind kind;
    unsigned models;   /* FOR_* bits: the models the option applies to */
    void *target;
    double min;        /* smallest accepted number */
} opt_def;

/* everything the command line can set */
typedef struct train_args {
    da_trainer_config tc;
    da_pretrain_opts o;
    int threads, quiet;
    const char *ckpt, *unet_config;
    int width[2], width_set;
} train_args;

#define N_OPTS 29
static int opt_table(train_args *a, opt_def *t)
{
    opt_def d[N_OPTS] = {
        {"--steps", OPT_LONG, FOR_ALL, &a->tc.total_steps, 1},
        {"--batch", OPT_INT, FOR_ALL, &a->tc.batch, 1},
        {"--micro", OPT_INT, FOR_ALL, &a->tc.micro_batches, 1},
        {"--lr", OPT_FLOAT, FOR_ALL, &a->tc.lr, 1e-30},
        {"--min-lr", OPT_FLOAT, FOR_ALL, &a->tc.min_lr, 0},
        {"--warmup", OPT_LONG, FOR_ALL, &a->tc.warmup, 0},
        {"--weight-decay", OPT_FLOAT, FOR_ALL, &a->tc.weight_decay, 0},
        {"--clip", OPT_FLOAT, FOR_ALL, &a->tc.clip, 0},
        {"--ema", OPT_FLOAT, FOR_ALL, &a->tc.ema_decay, 0},
        {"--seed", OPT_U64, FOR_ALL, &a->tc.seed, 0},
        {"--out", OPT_STR, FOR_ALL, &a->o.out_dir, 0},
        {"--ckpt", OPT_STR, FOR_ALL, &a->ckpt, 0},
        {"--resume", OPT_STR, FOR_ALL, &a->o.resume, 0},
        {"--ckpt-every", OPT_LONG, FOR_ALL, &a->tc.ckpt_every, 0},
        {"--metrics", OPT_STR, FOR_ALL, &a->tc.metrics_path, 0},
        {"--log-every", OPT_LONG, FOR_ALL, &a->tc.log_every, 1},
        {"--threads", OPT_INT, FOR_ALL, &a->threads, 0},
        {"--quiet", OPT_ON, FOR_ALL, &a->quiet, 0},
        {"--no-dedupe", OPT_OFF, FOR_CLIP, &a->o.dedupe, 0},
        {"--kl-weight", OPT_FLOAT, FOR_VAE, &a->o.vae.kl_weight, 0},
        {"--scale-images", OPT_INT, FOR_VAE, &a->o.scale_images, 2},
        {"--eval-images", OPT_INT, FOR_VAE, &a->o.eval_images, 1},
        {"--weights", OPT_STR, FOR_UNET, &a->o.weights_dir, 0},
        {"--name", OPT_STR, FOR_UNET, &a->o.name, 0},
        {"--width", OPT_WIDTH, FOR_UNET, a->width, 1},
        {"--unet-config", OPT_STR, FOR_UNET, &a->unet_config, 0},
        {"--cache", OPT_INT, FOR_UNET, &a->o.cache_size, 1},
        {"--cond-dropout", OPT_FLOAT, FOR_UNET, &a->o.cond_dropout, 0},
        {"--min-snr", OPT_FLOAT, FOR_UNET, &a->o.min_snr_gamma, 0},
    };
    memcpy(t, d, sizeof d);
    return N_OPTS;
}

static void usage(FILE *f, const char *model)
{
    train_args a;
    int known = model && da_pretrain_defaults(model, &a.tc, &a.o) == DA_OK;
    fprintf(f,
            "Usage: dalign train clip|vae|unet [OPTIONS]\n"
            "       dalign train reward [OPTIONS]   (options: dalign train reward --help)\n"
            "       dalign train dpo|sft|rpo|kto [OPTIONS]   (preference fine-tuning: dalign train dpo --help)\n"
            "       dalign train refiner --name NAME [OPTIONS]   (PromptLoop reference refiner: dalign train refiner --help)\n"
            "       dalign train promptloop --name NAME [OPTIONS]   (PromptLoop's GRPO: dalign train promptloop --help)\n"
            "       dalign train ddpo|grpo|raft --name NAME [OPTIONS]   (RL on the UNet's weights: dalign train ddpo --help)\n"
            "\n"
            "Pretrain a model on shapes-world data generated on the fly, then write its\n"
            "weights (EMA when kept) and JSON config into --out:\n"
            "  clip  text encoder + CLIP image tower, InfoNCE  -> text_encoder.*, clip.*\n"
            "  vae   KL autoencoder; latent scale factor and held-out PSNR at the end -> vae.*\n"
            "  unet  eps-prediction UNet on the frozen VAE's latents, conditioned on the\n"
            "        frozen text encoder, 10%% empty prompts (CFG) -> NAME.*\n"
            "Ctrl-C or SIGTERM saves a checkpoint and exits 130 / 143; --resume continues\n"
            "bit for bit. Exit status: 0 done, 1 failure, 2 usage error.\n"
            "\n"
            "Options (all models):\n"
            "  --steps N         optimizer steps%s\n"
            "  --batch B         examples per step\n"
            "  --micro K         micro-batches per step (gradient accumulation; B %% K == 0)\n"
            "  --lr LR           peak learning rate (AdamW, linear warmup, cosine decay)\n"
            "  --min-lr LR       learning rate at the end of the cosine\n"
            "  --warmup N        warmup steps\n"
            "  --weight-decay W  AdamW weight decay\n"
            "  --clip C          max global gradient norm (0: none)\n"
            "  --ema D           EMA decay of the weights (0: none)\n"
            "  --seed S          seed of init, data and noise (default 0)\n"
            "  --out DIR         where the weights go (default weights)\n"
            "  --ckpt PATH       checkpoint file (default: --resume's file, else OUT/NAME.ckpt)\n"
            "  --resume CKPT     continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N    also checkpoint every N steps (default 500; 0: end/signal only)\n"
            "  --metrics FILE    JSONL metrics log, one line per --log-every steps\n"
            "  --log-every N     metrics period (default 10)\n"
            "  --threads N       worker threads (results do not depend on it)\n"
            "  --quiet           no progress bar\n"
            "clip:\n"
            "  --no-dedupe       keep examples whose caption fits another image of the batch\n"
            "vae:\n"
            "  --kl-weight W     weight of the KL term (default 1e-4)\n"
            "  --scale-images N  images for the latent scale factor (default 2000)\n"
            "  --eval-images N   held-out images for the PSNR (default 500)\n"
            "unet:\n"
            "  --weights DIR     frozen text_encoder.* and vae.* (default: --out)\n"
            "  --name NAME       output basename and trainer name (default unet; e.g. unet-b)\n"
            "  --width C0,C1     channels of the two levels (default 64,128)\n"
            "  --unet-config F   UNet config JSON (--width overrides its channels)\n"
            "  --cache N         training images encoded once at the start (default 8192)\n"
            "  --cond-dropout P  fraction of empty prompts (default 0.1)\n"
            "  --min-snr G       weight each sample's MSE by min(SNR, G)/SNR (default 5; 0: plain MSE)\n",
            known ? "" : " (per-model defaults: dalign train MODEL --help)");
    if (known)
        fprintf(f,
                "\nDefaults for %s: --steps %ld --batch %d --lr %g --min-lr %g --warmup %ld "
                "--weight-decay %g --clip %g --ema %g\n",
                model, a.tc.total_steps, a.tc.batch, (double)a.tc.lr, (double)a.tc.min_lr, a.tc.warmup,
                (double)a.tc.weight_decay, (double)a.tc.clip, (double)a.tc.ema_decay);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */
/* ------------------------------------------------------------------------ */

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_value(const opt_def *d, const char *s)
{
    double v;
    switch (d->kind) {
    case OPT_INT: {
        int i;
        if (cli_parse_int(s, &i) || i < d->min) return -1;
        *(int *)d->target = i;
        return 0;
    }
    case OPT_LONG: {
        int i;
        if (cli_parse_int(s, &i) || i < d->min) return -1;
        *(long *)d->target = i;
        return 0;
    }
    case OPT_FLOAT:
        if (parse_double(s, &v) || v < d->min || fabs(v) > 3e38) return -1;
        *(float *)d->target = (float)v;
        return 0;
    case OPT_U64:
        return da_parse_u64(s, (uint64_t *)d->target);
    case OPT_STR:
        if (!*s) return -1;
        *(const char **)d->target = s;
        return 0;
    case OPT_WIDTH: {
        int *w = d->target;
        char buf[64];
        snprintf(buf, sizeof buf, "%s", s);
        char *comma = strchr(buf, ',');
        if (!comma) return -1;
        *comma = '\0';
        if (cli_parse_int(buf, &w[0]) || cli_parse_int(comma + 1, &w[1]) || w[0] < 1 || w[1] < 1) return -1;
        return 0;
    }
    case OPT_OFF: *(int *)d->target = 0; return 0;
    case OPT_ON: *(int *)d->target = 1; return 0;
    }
    return -1;
}

static const char *model_names[3] = {"clip", "vae", "unet"};

/* 0 ok, 1 --help shown, 2 usage error */
static int parse_args(int argc, char **argv, const char *model, train_args *a)
{
    opt_def t[N_OPTS];
    int n = opt_table(a, t);
    unsigned bit = 1u << a->o.model;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout, model);
            return 1;
        }
        const opt_def *d = NULL;
        for (int k = 0; k < n && !d; k++)
            if (!strcmp(argv[i], t[k].name)) d = &t[k];
        if (!d) {
            fprintf(stderr, "dalign train %s: unknown option '%s' (see dalign train %s --help)\n", model, argv[i],
                    model);
            return 2;
        }
        if (!(d->models & bit)) {
            fprintf(stderr, "dalign train %s: option %s does not apply to %s\n", model, d->name, model);
            return 2;
        }
        int takes_value = d->kind != OPT_OFF && d->kind != OPT_ON;
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "dalign train %s: option %s needs a value\n", model, d->name);
            return 2;
        }
        const char *val = takes_value ? argv[++i] : "";
        if (parse_value(d, val) != 0) {
            fprintf(stderr, "dalign train %s: bad value for %s: '%s'\n", model, d->name, val);
            return 2;
        }
        if (d->kind == OPT_WIDTH) a->width_set = 1;
    }
    return 0;
}

/* settings that depend on several options */
static int resolve(train_args *a, const char *model, char *ckpt_buf, size_t cap)
{
    if (a->unet_config && da_unet_config_load(&a->o.unet, a->unet_config) != DA_OK) {
        fprintf(stderr, "dalign train %s: %s\n", model, da_last_error());
        return 1;
    }
    if (a->width_set) {
        a->o.unet.ch[0] = a->width[0];
        a->o.unet.ch[1] = a->width[1];
    }
    if (a->o.model == DA_PRETRAIN_UNET && a->o.name) a->tc.name = a->o.name;
    if (!da_metric_name_ok(a->tc.name)) {
        fprintf(stderr, "dalign train %s: --name must be letters, digits, '_', '.', '-', got '%s'\n", model, a->tc.name);
        return 2;
    }
    const char *ck = a->ckpt ? a->ckpt : a->o.resume;
    if (!ck) {
        int w = snprintf(ckpt_buf, cap, "%s/%s.ckpt", a->o.out_dir, a->tc.name);
        if (w < 0 || (size_t)w >= cap) {
            fprintf(stderr, "dalign train %s: --out path too long\n", model);
            return 2;
        }
        ck = ckpt_buf;
    }
    a->tc.ckpt_path = ck;
    a->tc.progress = !a->quiet;
    if (a->threads > 0) da_set_threads(a->threads);
    return 0;
}

static void print_plan(const train_args *a, const char *model)
{
    const da_trainer_config *c = &a->tc;
    printf("dalign train %s: %ld steps, batch %d (x%d micro), lr %g -> %g (warmup %ld, cosine), wd %g, clip %g, "
           "ema %g, seed %llu, %d threads\n",
           model, c->total_steps, c->batch, c->micro_batches, (double)c->lr, (double)c->min_lr, c->warmup,
           (double)c->weight_decay, (double)c->clip, (double)c->ema_decay, (unsigned long long)c->seed,
           da_get_threads());
    if (a->o.model == DA_PRETRAIN_UNET)
        printf("  unet %s: channels %d,%d, frozen models from %s, cache %d images, %g empty prompts\n", c->name,
               a->o.unet.ch[0], a->o.unet.ch[1], a->o.weights_dir ? a->o.weights_dir : a->o.out_dir,
               a->o.cache_size, (double)a->o.cond_dropout);
    printf("  checkpoint %s%s, weights -> %s/\n", c->ckpt_path, a->o.resume ? " (resuming)" : "", a->o.out_dir);
    fflush(stdout);
}

static void print_done(const train_args *a, const da_pretrain_result *r, const char *model)
{
    const char *dir = a->o.out_dir;
    if (a->o.model == DA_PRETRAIN_CLIP)
        printf("wrote %s/text_encoder.{safetensors,json} and %s/clip.{safetensors,json}", dir, dir);
    else if (a->o.model == DA_PRETRAIN_VAE)
        printf("wrote %s/vae.{safetensors,json}: held-out PSNR %.2f dB, latent scale factor %.6f", dir,
               (double)r->psnr, (double)r->scale_factor);
    else
        printf("wrote %s/%s.{safetensors,json}", dir, a->tc.name);
    printf(" (%s %ld steps, last loss %.5f)\n", model, r->steps, (double)r->loss);
}

/* ------------------------------------------------------------------------ */
/* dalign train reward                                                      */
/* ------------------------------------------------------------------------ */

#define REWARD_LOG_EVERY 100     /* progress line and metrics period */
#define REWARD_CKPT_EVERY 500

static void reward_usage(FILE *f)
{
    da_reward_train_config d = da_reward_train_defaults();
    fprintf(f,
            "Usage: dalign train reward [OPTIONS]\n"
            "\n"
            "Train the preference model (docs/rater.md) with the Bradley-Terry loss on\n"
            "fresh synthetic pairs labelled by the synthetic rater (ties dropped), then\n"
            "write OUT/reward_net.{json,safetensors}, the files the `pref` reward loads.\n"
            "At the end it reports the model's pair accuracy on validation pairs it never\n"
            "saw (train split and held-out split) next to the rater's own noiseless\n"
            "accuracy on the same noisy labels, and their ratio (target >= 0.90).\n"
            "Same options, same bits. Ctrl-C or SIGTERM saves a checkpoint and exits\n"
            "130 / 143; --resume continues bit for bit.\n"
            "Exit status: 0 done, 1 failure, 2 usage error.\n"
            "\n"
            "Options:\n"
            "  --steps N       optimizer steps (default %d)\n"
            "  --batch B       pairs per step (default %d)\n"
            "  --lr LR         peak learning rate (default %g; %d warmup steps, then cosine to %g)\n"
            "  --seed S        seed of the init, the pairs and the label noise (default %llu)\n"
            "  --val-pairs N   validation pairs per split (default %d; 0: no validation)\n"
            "  --out DIR       where the weights go (default weights)\n"
            "  --ckpt PATH     checkpoint file (default: --resume's file, else OUT/%s.ckpt)\n"
            "  --resume CKPT   continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N  also checkpoint every N steps (default %d; 0: end/signal only)\n"
            "  --metrics FILE  JSONL metrics log, one line per %d steps (every step with --quiet)\n"
            "  --threads N     worker threads (results do not depend on it)\n"
            "  --quiet         no progress lines on stderr\n",
            d.steps, d.batch, (double)d.lr, d.warmup, (double)d.min_lr, (unsigned long long)d.seed, d.val_pairs,
            DA_REWARD_NET_NAME, REWARD_CKPT_EVERY, REWARD_LOG_EVERY);
}

/* everything `dalign train reward` can set */
typedef struct reward_args {
    da_reward_train_config c;
    const char *out, *ckpt;
    int threads, quiet;
} reward_args;

/* the option's opt_def, or one with a NULL target for an unknown option */
static opt_def reward_option(const char *o, reward_args *a)
{
    da_reward_train_config *c = &a->c;
    opt_def d = {o, OPT_INT, 0, NULL, 1};
    if (!strcmp(o, "--steps")) d.target = &c->steps;
    else if (!strcmp(o, "--batch")) d.target = &c->batch;
    else if (!strcmp(o, "--val-pairs")) d = (opt_def){o, OPT_INT, 0, &c->val_pairs, 0};
    else if (!strcmp(o, "--threads")) d.target = &a->threads;
    else if (!strcmp(o, "--lr")) d = (opt_def){o, OPT_FLOAT, 0, &c->lr, 1e-30};
    else if (!strcmp(o, "--seed")) d = (opt_def){o, OPT_U64, 0, &c->seed, 0};
    else if (!strcmp(o, "--out")) d = (opt_def){o, OPT_STR, 0, &a->out, 0};
    else if (!strcmp(o, "--ckpt")) d = (opt_def){o, OPT_STR, 0, &a->ckpt, 0};
    else if (!strcmp(o, "--resume")) d = (opt_def){o, OPT_STR, 0, &c->resume, 0};
    else if (!strcmp(o, "--ckpt-every")) d = (opt_def){o, OPT_LONG, 0, &c->ckpt_every, 0};
    else if (!strcmp(o, "--metrics")) d = (opt_def){o, OPT_STR, 0, &c->metrics_path, 0};
    return d;
}

/* 0 ok, 1 --help shown, 2 usage error */
static int reward_parse(int argc, char **argv, reward_args *a)
{
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            reward_usage(stdout);
            return 1;
        }
        if (!strcmp(o, "--quiet")) {
            a->quiet = 1;
            continue;
        }
        /* every other option takes a value: reuse the generic parser */
        opt_def d = reward_option(o, a);
        if (!d.target) {
            fprintf(stderr, "dalign train reward: unknown option '%s' (see dalign train reward --help)\n", o);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "dalign train reward: option %s needs a value\n", o);
            return 2;
        }
        if (parse_value(&d, argv[++i]) != 0) {
            fprintf(stderr, "dalign train reward: bad value for %s: '%s'\n", o, argv[i]);
            return 2;
        }
    }
    return 0;
}

/* settings that depend on several options: 0 ok, 2 usage error */
static int reward_resolve(reward_args *a, char *ckpt_buf, size_t cap)
{
    da_reward_train_config *c = &a->c;
    if (c->warmup >= c->steps) c->warmup = c->steps / 10;   /* short runs: keep the cosine part */
    c->log_every = a->quiet ? 0 : REWARD_LOG_EVERY;
    c->handle_signals = 1;
    c->ckpt_path = a->ckpt ? a->ckpt : c->resume;
    if (!c->ckpt_path) {
        int w = snprintf(ckpt_buf, cap, "%s/%s.ckpt", a->out, DA_REWARD_NET_NAME);
        if (w < 0 || (size_t)w >= cap) {
            fprintf(stderr, "dalign train reward: --out path too long\n");
            return 2;
        }
        c->ckpt_path = ckpt_buf;
    }
    if (a->threads > 0) da_set_threads(a->threads);
    return 0;
}

/* "0.6650", or "?" for a mean whose steps were not all run in this session */
static const char *loss_text(char *buf, size_t n, float loss)
{
    if (isnan(loss)) snprintf(buf, n, "?");
    else snprintf(buf, n, "%.4f", (double)loss);
    return buf;
}

static void reward_report(const da_reward_train_report *r, const da_reward_train_config *c, const char *out)
{
    char first[32], last[32];
    printf("wrote %s/%s.{json,safetensors} (%d steps x %d pairs, BT loss %s -> %s)\n", out, DA_REWARD_NET_NAME,
           c->steps, c->batch, loss_text(first, sizeof first, r->loss_first),
           loss_text(last, sizeof last, r->loss_last));
    if (c->val_pairs == 0) return;
    printf("pair accuracy on %d validation pairs per split (vs the rater's noisy labels):\n", r->n_val);
    printf("  %-10s %8s %16s %8s\n", "split", "model", "rater noiseless", "ratio");
    /* rater_acc > 0: at least one pair, and the noiseless rater beats chance on them */
    printf("  %-10s %8.4f %16.4f %8.3f\n", "train", (double)r->acc, (double)r->rater_acc,
           r->rater_acc > 0 ? (double)(r->acc / r->rater_acc) : 0.0);
    printf("  %-10s %8.4f %16.4f %8.3f\n", "held-out", (double)r->heldout_acc, (double)r->heldout_rater_acc,
           r->heldout_rater_acc > 0 ? (double)(r->heldout_acc / r->heldout_rater_acc) : 0.0);
}

static int train_reward(int argc, char **argv)
{
    reward_args a = {.c = da_reward_train_defaults(), .out = "weights"};
    a.c.ckpt_every = REWARD_CKPT_EVERY;
    int rc = reward_parse(argc, argv, &a);
    if (rc) return rc == 1 ? 0 : rc;
    char ckpt[4096];
    rc = reward_resolve(&a, ckpt, sizeof ckpt);
    if (rc) return rc;
    const da_reward_train_config *c = &a.c;
    printf("dalign train reward: %d steps x %d pairs, lr %g -> %g (warmup %d, cosine), seed %llu, %d threads\n",
           c->steps, c->batch, (double)c->lr, (double)c->min_lr, c->warmup, (unsigned long long)c->seed,
           da_get_threads());
    printf("  checkpoint %s%s, weights -> %s/\n", c->ckpt_path, c->resume ? " (resuming)" : "", a.out);
    fflush(stdout);
    da_reward_train_report r;
    if (da_reward_net_train_to_dir(NULL, c, a.out, &r) != DA_OK) {
        fprintf(stderr, "dalign train reward: %s\n", da_last_error());
        return 1;
    }
    if (r.stop_signal) {
        printf("stopped at step %ld of %d; continue with: dalign train reward --resume %s (same options)\n",
               r.steps_done, c->steps, c->ckpt_path);
        return 128 + r.stop_signal;
    }
    reward_report(&r, c, a.out);
    return 0;
}

int cmd_train(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout, NULL);
        return argc < 2 ? 2 : 0;
    }
    const char *model = argv[1];
    if (!strcmp(model, "reward")) return train_reward(argc, argv);
    if (!strcmp(model, "refiner")) return cmd_train_refiner(argc - 1, argv + 1);
    if (!strcmp(model, "promptloop")) return cmd_train_promptloop(argc - 1, argv + 1);
    da_rlw_method rl_method;
    if (da_rlw_method_parse(model, &rl_method) == DA_OK) return cmd_train_rl(argc - 1, argv + 1);
    da_pref_method method;
    if (da_pref_method_parse(model, &method) == DA_OK) return cmd_train_pref(argc - 1, argv + 1);
    train_args a;
    memset(&a, 0, sizeof a);
    if (da_pretrain_defaults(model, &a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign train: unknown model '%s' (expected %s, %s, %s, reward, refiner, promptloop, dpo, sft, rpo, kto, ddpo, grpo or raft)\n", model,
                model_names[0], model_names[1], model_names[2]);
        return 2;
    }
    a.tc.ckpt_every = 500;
    int rc = parse_args(argc, argv, model, &a);
    if (rc) return rc == 1 ? 0 : rc;
    char ckpt[4096];
    rc = resolve(&a, model, ckpt, sizeof ckpt);
    if (rc) return rc;
    print_plan(&a, model);
    da_pretrain_result r;
    da_status s = da_pretrain_run(&a.tc, &a.o, &r);
    if (s != DA_OK) {
        fprintf(stderr, "dalign train %s: %s\n", model, da_last_error());
        return 1;
    }
    if (r.stop_signal)
        printf("stopped at step %ld of %ld; continue with: dalign train %s --resume %s (same options)\n", r.steps,
               a.tc.total_steps, model, a.tc.ckpt_path);
    else
        print_done(&a, &r, model);
    return r.exit_code;
}
