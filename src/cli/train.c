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
#include "cli/train_common.h"
#include "core/fileio.h"
#include "dalign.h"
#include "train/pref.h"
#include "train/reward_run.h"

enum { FOR_CLIP = 1, FOR_VAE = 2, FOR_UNET = 4, FOR_ALL = 7 };

/* everything the command line can set */
typedef struct train_args {
    da_trainer_config tc;
    da_pretrain_opts o;
    int quiet, force;
    const char *ckpt, *unet_config;
    int width[2], width_set;
} train_args;

static void usage(FILE *f, const char *model)
{
    train_args a;
    int known = model && da_pretrain_defaults(model, &a.tc, &a.o) == DA_OK;
    fprintf(f,
            "Usage: dalign train clip|vae|unet [OPTIONS]   (--opt value or --opt=value)\n"
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
            "  -s, --seed S      seed of init, data and noise (default 0; -1: random, printed)\n"
            "  --out DIR         where the weights go (default weights)\n"
            "  --ckpt PATH       checkpoint file (default: --resume's file, else OUT/NAME.ckpt)\n"
            "  --resume CKPT     continue a run from its checkpoint (same options)\n"
            "  --force           overwrite a checkpoint at --ckpt that is another run's, or this\n"
            "                    run's unfinished one (without it: refused)\n"
            "  --ckpt-every N    also checkpoint every N steps (default 500; 0: end/signal only)\n"
            "  --metrics FILE    JSONL metrics log, one line per --log-every steps\n"
            "  --log-every N     metrics period (default 10)\n"
            CLI_COMMON_HELP
            "                    (results do not depend on the threads; -q: no progress bar)\n"
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

static const char *model_names[3] = {"clip", "vae", "unet"};

enum {
    O_STEPS = CLI_O_LOCAL, O_BATCH, O_MICRO, O_LR, O_MIN_LR, O_WARMUP, O_WD, O_CLIP, O_EMA, O_OUT, O_CKPT,
    O_RESUME, O_FORCE, O_CKPT_EVERY, O_METRICS, O_LOG_EVERY, O_NO_DEDUPE, O_KL_WEIGHT, O_SCALE_IMAGES,
    O_EVAL_IMAGES, O_WEIGHTS, O_NAME, O_WIDTH, O_UNET_CONFIG, O_CACHE, O_COND_DROPOUT, O_MIN_SNR,
    O_VAL_PAIRS,   /* train reward */
};

static const struct option LONG_OPTS[] = {
    {"steps", required_argument, 0, O_STEPS},          {"batch", required_argument, 0, O_BATCH},
    {"micro", required_argument, 0, O_MICRO},          {"lr", required_argument, 0, O_LR},
    {"min-lr", required_argument, 0, O_MIN_LR},        {"warmup", required_argument, 0, O_WARMUP},
    {"weight-decay", required_argument, 0, O_WD},      {"clip", required_argument, 0, O_CLIP},
    {"ema", required_argument, 0, O_EMA},              {"seed", required_argument, 0, 's'},
    {"out", required_argument, 0, O_OUT},              {"ckpt", required_argument, 0, O_CKPT},
    {"resume", required_argument, 0, O_RESUME},        {"force", no_argument, 0, O_FORCE},
    {"ckpt-every", required_argument, 0, O_CKPT_EVERY}, {"metrics", required_argument, 0, O_METRICS},
    {"log-every", required_argument, 0, O_LOG_EVERY},  {"no-dedupe", no_argument, 0, O_NO_DEDUPE},
    {"kl-weight", required_argument, 0, O_KL_WEIGHT},  {"scale-images", required_argument, 0, O_SCALE_IMAGES},
    {"eval-images", required_argument, 0, O_EVAL_IMAGES}, {"weights", required_argument, 0, O_WEIGHTS},
    {"name", required_argument, 0, O_NAME},            {"width", required_argument, 0, O_WIDTH},
    {"unet-config", required_argument, 0, O_UNET_CONFIG}, {"cache", required_argument, 0, O_CACHE},
    {"cond-dropout", required_argument, 0, O_COND_DROPOUT}, {"min-snr", required_argument, 0, O_MIN_SNR},
    CLI_COMMON_LONG,                                   {0, 0, 0, 0},
};

/* the models an option applies to (FOR_* bits) */
static unsigned option_models(int c)
{
    switch (c) {
    case O_NO_DEDUPE: return FOR_CLIP;
    case O_KL_WEIGHT: case O_SCALE_IMAGES: case O_EVAL_IMAGES: return FOR_VAE;
    case O_WEIGHTS: case O_NAME: case O_WIDTH: case O_UNET_CONFIG: case O_CACHE: case O_COND_DROPOUT:
    case O_MIN_SNR: return FOR_UNET;
    default: return FOR_ALL;
    }
}

/* a path or name: anything but the empty string */
static int take_string(const char *cmd, const char *opt, const char *val, const char **out)
{
    if (!*val) return cli_bad_value(cmd, opt, val, "a non-empty value");
    *out = val;
    return 0;
}

/* --width C0,C1 */
static int take_width(const char *cmd, const char *opt, const char *val, int w[2])
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", val);
    char *comma = strchr(buf, ',');
    if (comma) *comma = '\0';
    if (!comma || cli_parse_int(buf, &w[0]) || cli_parse_int(comma + 1, &w[1]) || w[0] < 1 || w[1] < 1)
        return cli_bad_value(cmd, opt, val, "two channel counts >= 1, as C0,C1");
    return 0;
}

/* one option of train clip|vae|unet: 0 or a usage error's exit code */
static int take_option(train_args *a, const cli_parser *p, int c)
{
    const char *cmd = p->cmd, *opt = p->opt, *val = p->val;
    da_trainer_config *tc = &a->tc;
    da_pretrain_opts *o = &a->o;
    switch (c) {
    case O_STEPS: return train_long(cmd, opt, val, 1, &tc->total_steps);
    case O_BATCH: return train_int(cmd, opt, val, 1, &tc->batch);
    case O_MICRO: return train_int(cmd, opt, val, 1, &tc->micro_batches);
    case O_LR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &tc->lr);
    case O_MIN_LR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->min_lr);
    case O_WARMUP: return train_long(cmd, opt, val, 0, &tc->warmup);
    case O_WD: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->weight_decay);
    case O_CLIP: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->clip);
    case O_EMA: return train_float(cmd, opt, val, 0.0f, 1.0f, TRAIN_LT, &tc->ema_decay);
    case 's': return cli_parse_seed(cmd, opt, val, &tc->seed);
    case O_OUT: return take_string(cmd, opt, val, &o->out_dir);
    case O_CKPT: return take_string(cmd, opt, val, &a->ckpt);
    case O_RESUME: return take_string(cmd, opt, val, &o->resume);
    case O_FORCE: a->force = 1; return 0;
    case O_CKPT_EVERY: return train_long(cmd, opt, val, 0, &tc->ckpt_every);
    case O_METRICS: return take_string(cmd, opt, val, &tc->metrics_path);
    case O_LOG_EVERY: return train_long(cmd, opt, val, 1, &tc->log_every);
    case O_NO_DEDUPE: o->dedupe = 0; return 0;
    case O_KL_WEIGHT: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &o->vae.kl_weight);
    case O_SCALE_IMAGES: return train_int(cmd, opt, val, 2, &o->scale_images);
    case O_EVAL_IMAGES: return train_int(cmd, opt, val, 1, &o->eval_images);
    case O_WEIGHTS: return take_string(cmd, opt, val, &o->weights_dir);
    case O_NAME: return take_string(cmd, opt, val, &o->name);
    case O_WIDTH: a->width_set = 1; return take_width(cmd, opt, val, a->width);
    case O_UNET_CONFIG: return take_string(cmd, opt, val, &a->unet_config);
    case O_CACHE: return train_int(cmd, opt, val, 1, &o->cache_size);
    case O_COND_DROPOUT: return train_float(cmd, opt, val, 0.0f, 1.0f, TRAIN_LE, &o->cond_dropout);
    case O_MIN_SNR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &o->min_snr_gamma);
    default: return cli_unhandled(p);
    }
}

static const char *usage_model;   /* the model whose defaults --help shows */
static void usage_of_model(FILE *f) { usage(f, usage_model); }

/* argv[0] is the model. -1: go on; else the exit code (0 after --help) */
static int parse_args(int argc, char **argv, const char *cmd, train_args *a)
{
    usage_model = argv[0];
    unsigned bit = 1u << a->o.model;
    cli_parser p = cli_parser_init(cmd, argc, argv, "s:", LONG_OPTS, usage_of_model);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        if (!(option_models(c) & bit)) {
            fprintf(stderr, "dalign %s: option %s does not apply to %s (see dalign %s --help)\n", cmd, p.opt,
                    argv[0], cmd);
            return 2;
        }
        int rc = take_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign %s: unexpected argument '%s'\n", cmd, argv[p.optind]);
        return 2;
    }
    a->quiet = p.common.quiet;
    return -1;
}

/* the files a pretraining run writes into --out: their stale temp files
 * are its to clean */
static void output_names(const train_args *a, const char *names[4])
{
    int n = 0;
    if (a->o.model == DA_PRETRAIN_CLIP) { names[n++] = "clip"; names[n++] = "text_encoder"; }
    else if (a->o.model == DA_PRETRAIN_VAE) names[n++] = "vae";
    else { names[n++] = a->tc.name; names[n++] = "scheduler"; }
    names[n] = NULL;
}

/* settings that depend on several options; the checkpoint guard and the
 * clean-up of a killed run's temp files. 0, or the exit code. */
static int resolve(train_args *a, const char *cmd, char *ckpt_buf, size_t cap)
{
    if (a->unet_config && da_unet_config_load(&a->o.unet, a->unet_config) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", cmd, da_last_error());
        return 1;
    }
    if (a->width_set) {
        a->o.unet.ch[0] = a->width[0];
        a->o.unet.ch[1] = a->width[1];
    }
    if (a->o.model == DA_PRETRAIN_UNET && a->o.name) a->tc.name = a->o.name;
    if (!da_metric_name_ok(a->tc.name)) {
        fprintf(stderr, "dalign %s: --name must be letters, digits, '_', '.', '-', got '%s'\n", cmd, a->tc.name);
        return 2;
    }
    int rc = train_default_paths(cmd, a->o.out_dir, a->tc.name, a->o.resume, &a->ckpt, ckpt_buf, NULL, NULL, cap);
    if (rc) return rc;
    a->tc.ckpt_path = a->ckpt;
    a->tc.progress = !a->quiet;
    const char *names[4];
    output_names(a, names);
    train_clean_stale_tmp(cmd, a->o.out_dir, names, a->quiet);
    train_clean_stale_tmp_of(cmd, a->ckpt, a->quiet);
    return train_check_ckpt(cmd, a->ckpt, a->o.resume, a->force, 1, &a->tc, NULL, a->quiet);
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
            "Usage: dalign train reward [OPTIONS]   (--opt value or --opt=value)\n"
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
            "  -s, --seed S    seed of the init, the pairs and the label noise (default %llu;\n"
            "                  -1: random, printed)\n"
            "  --val-pairs N   validation pairs per split (default %d; 0: no validation)\n"
            "  --out DIR       where the weights go (default weights)\n"
            "  --ckpt PATH     checkpoint file (default: --resume's file, else OUT/%s.ckpt)\n"
            "  --resume CKPT   continue a run from its checkpoint (same options)\n"
            "  --force         overwrite a checkpoint at --ckpt that is another run's, or this\n"
            "                  run's unfinished one (without it: refused)\n"
            "  --ckpt-every N  also checkpoint every N steps (default %d; 0: end/signal only)\n"
            "  --metrics FILE  JSONL metrics log, one line per %d steps (every step with --quiet)\n"
            CLI_COMMON_HELP
            "                  (results do not depend on the threads; -q: no progress lines)\n",
            d.steps, d.batch, (double)d.lr, d.warmup, (double)d.min_lr, (unsigned long long)d.seed, d.val_pairs,
            DA_REWARD_NET_NAME, REWARD_CKPT_EVERY, REWARD_LOG_EVERY);
}

/* everything `dalign train reward` can set */
typedef struct reward_args {
    da_reward_train_config c;
    const char *out, *ckpt;
    int quiet, force;
} reward_args;

/* one option of train reward: 0, or a usage error's exit code */
static int reward_option(reward_args *a, const cli_parser *p, int c)
{
    const char *cmd = p->cmd, *opt = p->opt, *val = p->val;
    da_reward_train_config *rc = &a->c;
    switch (c) {
    case O_STEPS: return train_int(cmd, opt, val, 1, &rc->steps);
    case O_BATCH: return train_int(cmd, opt, val, 1, &rc->batch);
    case O_VAL_PAIRS: return train_int(cmd, opt, val, 0, &rc->val_pairs);
    case O_LR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &rc->lr);
    case 's': return cli_parse_seed(cmd, opt, val, &rc->seed);
    case O_OUT: return take_string(cmd, opt, val, &a->out);
    case O_CKPT: return take_string(cmd, opt, val, &a->ckpt);
    case O_RESUME: return take_string(cmd, opt, val, &rc->resume);
    case O_FORCE: a->force = 1; return 0;
    case O_CKPT_EVERY: return train_long(cmd, opt, val, 0, &rc->ckpt_every);
    case O_METRICS: return take_string(cmd, opt, val, &rc->metrics_path);
    default: return cli_unhandled(p);
    }
}

static const struct option REWARD_LONG[] = {
    {"steps", required_argument, 0, O_STEPS},          {"batch", required_argument, 0, O_BATCH},
    {"val-pairs", required_argument, 0, O_VAL_PAIRS},  {"lr", required_argument, 0, O_LR},
    {"seed", required_argument, 0, 's'},               {"out", required_argument, 0, O_OUT},
    {"ckpt", required_argument, 0, O_CKPT},            {"resume", required_argument, 0, O_RESUME},
    {"force", no_argument, 0, O_FORCE},                {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
    {"metrics", required_argument, 0, O_METRICS},      CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* argv[0] is "reward". -1: go on; else the exit code (0 after --help) */
static int reward_parse(int argc, char **argv, reward_args *a)
{
    cli_parser p = cli_parser_init("train reward", argc, argv, "s:", REWARD_LONG, reward_usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = reward_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign train reward: unexpected argument '%s'\n", argv[p.optind]);
        return 2;
    }
    a->quiet = p.common.quiet;
    return -1;
}

/* settings that depend on several options, the checkpoint guard, stale
 * temp files: 0, or the exit code */
static int reward_resolve(reward_args *a, char *ckpt_buf, size_t cap)
{
    const char *cmd = "train reward";
    da_reward_train_config *c = &a->c;
    if (c->warmup >= c->steps) c->warmup = c->steps / 10;   /* short runs: keep the cosine part */
    c->log_every = a->quiet ? 0 : REWARD_LOG_EVERY;
    c->handle_signals = 1;
    int rc = train_default_paths(cmd, a->out, DA_REWARD_NET_NAME, c->resume, &a->ckpt, ckpt_buf, NULL, NULL, cap);
    if (rc) return rc;
    c->ckpt_path = a->ckpt;
    const char *names[2] = {DA_REWARD_NET_NAME, NULL};
    train_clean_stale_tmp(cmd, a->out, names, a->quiet);
    train_clean_stale_tmp_of(cmd, a->ckpt, a->quiet);
    /* the harness's config of this trainer is built inside the library
     * (reward_train.c): compare the fields that come from the options */
    da_trainer_config tc = da_trainer_defaults();
    tc.name = DA_REWARD_NET_NAME;
    tc.total_steps = c->steps;
    tc.batch = c->batch;
    tc.lr = c->lr;
    tc.min_lr = c->min_lr;
    tc.warmup = c->warmup;
    tc.seed = c->seed;
    static const char *const keys[] = {"total_steps", "batch", "lr", "min_lr", "warmup", "seed", NULL};
    return train_check_ckpt(cmd, a->ckpt, c->resume, a->force, 1, &tc, keys, a->quiet);
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
    if (rc >= 0) return rc;
    char ckpt[4096];
    rc = reward_resolve(&a, ckpt, sizeof ckpt);
    if (rc) return rc;
    const da_reward_train_config *c = &a.c;
    if (!a.quiet) {   /* -q: only the results and errors */
        printf("dalign train reward: %d steps x %d pairs, lr %g -> %g (warmup %d, cosine), seed %llu, %d threads\n",
               c->steps, c->batch, (double)c->lr, (double)c->min_lr, c->warmup, (unsigned long long)c->seed,
               da_get_threads());
        printf("  checkpoint %s%s, weights -> %s/\n", c->ckpt_path, c->resume ? " (resuming)" : "", a.out);
        fflush(stdout);
    }
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
    if (!strcmp(model, "reward")) return train_reward(argc - 1, argv + 1);
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
    char cmd[32];
    snprintf(cmd, sizeof cmd, "train %s", model);
    int rc = parse_args(argc - 1, argv + 1, cmd, &a);
    if (rc >= 0) return rc;
    char ckpt[4096];
    rc = resolve(&a, cmd, ckpt, sizeof ckpt);
    if (rc) return rc;
    if (!a.quiet) print_plan(&a, model);   /* -q: only the result line ("wrote ...") and errors */
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
