/* dalign train dpo|sft|rpo|kto: preference fine-tuning of a UNet on pairs
 * files from `dalign pairs` (src/train/pref.c), on the shared harness:
 * progress, JSONL metrics, checkpoints, bit-identical --resume, Ctrl-C /
 * SIGTERM -> checkpoint and exit 130 / 143. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_common.h"
#include "dalign.h"
#include "train/pref.h"

#define CMD_CAP 32

typedef struct pref_args {
    da_trainer_config tc;
    da_pref_opts o;
    int quiet;
    const char *ckpt;
    char cmd[CMD_CAP];          /* "train dpo", for messages */
} pref_args;

static void usage(FILE *f, const char *method)
{
    da_trainer_config tc;
    da_pref_opts o;
    da_pref_method m = DA_PREF_DPO;
    if (method) da_pref_method_parse(method, &m);
    da_pref_defaults(m, &tc, &o);
    fprintf(f,
            "Usage: dalign train dpo|sft|rpo|kto --pairs FILE [--pairs FILE ...] --name NAME [OPTIONS]\n"
            "       (--opt value or --opt=value)\n"
            "\n"
            "Fine-tune a UNet on preference pairs (made by 'dalign pairs') and write\n"
            "OUT/NAME.safetensors + OUT/NAME.json, loadable with --unet NAME:\n"
            "  dpo  Diffusion-DPO: -log sigmoid(-(beta/2)((m_w - r_w) - (m_l - r_l))), the pair\n"
            "       sharing noise and timestep; r = the frozen starting UNet's eps-MSE\n"
            "  sft  eps-MSE on the preferred image only (no reference)\n"
            "  rpo  Diffusion-RPO: every preferred i against every dispreferred j of the\n"
            "       batch, weighted by w_ij = softmax_j(-(1 - cos(e_i, e_j)) / tau)\n"
            "  kto  Diffusion-KTO: winners liked, losers disliked, unpaired;\n"
            "       1 - sigmoid(y beta (g - mean g)), g = r - m\n"
            "docs/alignment-preference.md has the equations and the experiment.\n"
            "\n"
            "Options:\n"
            "  --pairs FILE        a pairs file (repeat for more, at most %d)\n"
            "  --name NAME         output basename, e.g. unet-dpo (required)\n"
            "  --init NAME         the UNet to start from and the frozen reference (default %s)\n"
            "  --weights DIR       frozen text_encoder, vae, clip and the --init UNet\n"
            "                      (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --out DIR           where NAME.* goes (default: --weights)\n"
            "  --force             replace an existing NAME.* or checkpoint (another run's)\n"
            "  --beta B            KL strength of dpo, rpo, kto (default %g; logged for sft)\n"
            "  --tau T             rpo: similarity temperature (default %g)\n"
            "  --rpo-embed E       rpo: the similarity's CLIP embedding: both (prompt text and\n"
            "                      image, default), text or image\n"
            "  --rpo-weight-outside  rpo: w_ij multiplies -log sigmoid(logit) instead of the logit\n"
            "  --empty-prompt P    share of pairs trained on the empty prompt (default %g)\n"
            "  --val FILE          held-back pairs: at the end, the share the tuned UNet ranks\n"
            "                      right (its eps-MSE gain over the start larger on the\n"
            "                      winner) -> OUT/NAME.val.json\n"
            "  --val-draws K       (t, noise) draws per validation pair (default 4)\n"
            "  --swap-labels       a control: train on every pair judged the other way\n"
            "                      (winner and loser exchanged; --val keeps its labels)\n"
            "  --steps N           optimizer steps (default %ld)\n"
            "  --batch B           pairs per step (default %d)\n"
            "  --micro K           micro-batches per step (dpo, sft; B %% K == 0)\n"
            "  --lr LR             peak learning rate (default %g; AdamW)\n"
            "  --min-lr LR         learning rate at the end of the cosine (default %g)\n"
            "  --warmup N          linear warmup steps (default %ld)\n"
            "  --weight-decay W    AdamW weight decay (default %g)\n"
            "  --clip C            max global gradient norm, 0: none (default %g)\n"
            "  --ema D             EMA decay of the weights, saved when > 0 (default %g)\n"
            "  -s, --seed S        seed of the batches and the noise (default 0; -1: random, printed)\n"
            "  --ckpt PATH         checkpoint (default OUT/NAME.ckpt)\n"
            "  --resume CKPT       continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N      also checkpoint every N steps (default %ld; 0: end/signal)\n"
            "  --metrics FILE      JSONL health metrics (default OUT/NAME.metrics.jsonl)\n"
            "  --log-every N       metrics period (default %ld)\n"
            CLI_COMMON_HELP
            "                      (results do not depend on the threads; -q: no progress)\n"
            "\n"
            "Logged every step: loss, acc (share of positive implicit margins), margin,\n"
            "mse_w / mse_l (policy on winners / losers), ref_mse_w / ref_mse_l, grad_norm;\n"
            "rpo also w_offdiag and w_entropy. Exit status: 0 done, 1 failure, 2 usage\n"
            "error, 130/143 stopped by a signal (checkpoint saved).\n",
            DA_PREF_MAX_FILES, o.init, (double)o.beta, (double)o.tau, (double)o.empty_prompt, tc.total_steps,
            tc.batch, (double)tc.lr, (double)tc.min_lr, tc.warmup, (double)tc.weight_decay, (double)tc.clip,
            (double)tc.ema_decay, tc.ckpt_every, tc.log_every);
}

enum {
    O_PAIRS = CLI_O_LOCAL, O_NAME, O_INIT, O_WEIGHTS, O_OUT, O_FORCE, O_BETA, O_TAU, O_EMBED, O_OUTSIDE, O_EMPTY,
    O_STEPS, O_BATCH, O_MICRO, O_LR, O_MIN_LR, O_WARMUP, O_WD, O_CLIP, O_EMA, O_CKPT, O_RESUME,
    O_CKPT_EVERY, O_METRICS, O_LOG_EVERY, O_VAL, O_VAL_DRAWS, O_SWAP
};

static const struct option LONG_OPTS[] = {
    {"pairs", required_argument, 0, O_PAIRS},      {"name", required_argument, 0, O_NAME},
    {"init", required_argument, 0, O_INIT},        {"weights", required_argument, 0, O_WEIGHTS},
    {"out", required_argument, 0, O_OUT},          {"force", no_argument, 0, O_FORCE},
    {"beta", required_argument, 0, O_BETA},        {"tau", required_argument, 0, O_TAU},
    {"rpo-embed", required_argument, 0, O_EMBED},  {"rpo-weight-outside", no_argument, 0, O_OUTSIDE},
    {"swap-labels", no_argument, 0, O_SWAP},
    {"empty-prompt", required_argument, 0, O_EMPTY}, {"steps", required_argument, 0, O_STEPS},
    {"batch", required_argument, 0, O_BATCH},      {"micro", required_argument, 0, O_MICRO},
    {"lr", required_argument, 0, O_LR},            {"min-lr", required_argument, 0, O_MIN_LR},
    {"warmup", required_argument, 0, O_WARMUP},    {"weight-decay", required_argument, 0, O_WD},
    {"clip", required_argument, 0, O_CLIP},        {"ema", required_argument, 0, O_EMA},
    {"seed", required_argument, 0, 's'},           {"ckpt", required_argument, 0, O_CKPT},
    {"resume", required_argument, 0, O_RESUME},    {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
    {"metrics", required_argument, 0, O_METRICS},  {"log-every", required_argument, 0, O_LOG_EVERY},
    {"val", required_argument, 0, O_VAL},          {"val-draws", required_argument, 0, O_VAL_DRAWS},
    CLI_COMMON_LONG,                               {0, 0, 0, 0},
};

/* one option; 0 or a usage-error exit code */
static int take_option(pref_args *a, const cli_parser *p, int c)
{
    const char *cmd = p->cmd, *opt = p->opt, *val = p->val;
    da_trainer_config *tc = &a->tc;
    switch (c) {
    case O_PAIRS:
        if (a->o.n_pairs == DA_PREF_MAX_FILES) return cli_bad_value(cmd, opt, val, "at most 16 files");
        a->o.pairs[a->o.n_pairs++] = val;
        return 0;
    case O_NAME: a->o.name = val; return 0;
    case O_INIT: a->o.init = val; return 0;
    case O_WEIGHTS: a->o.weights_dir = val; return 0;
    case O_OUT: a->o.out_dir = val; return 0;
    case O_FORCE: a->o.force = 1; return 0;
    case O_BETA: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &a->o.beta);
    case O_TAU: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &a->o.tau);
    case O_EMBED:
        return da_rpo_embed_parse(val, &a->o.embed) == DA_OK ? 0 : cli_bad_value(cmd, opt, val, "both, text or image");
    case O_OUTSIDE: a->o.weight_outside = 1; return 0;
    case O_SWAP: a->o.swap_labels = 1; return 0;
    case O_EMPTY: return train_float(cmd, opt, val, 0.0f, 1.0f, TRAIN_GE | TRAIN_LE, &a->o.empty_prompt);
    case O_STEPS: return train_long(cmd, opt, val, 1, &tc->total_steps);
    case O_BATCH: return train_int(cmd, opt, val, 1, &tc->batch);
    case O_MICRO: return train_int(cmd, opt, val, 1, &tc->micro_batches);
    case O_LR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &tc->lr);
    case O_MIN_LR: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->min_lr);
    case O_WARMUP: return train_long(cmd, opt, val, 0, &tc->warmup);
    case O_WD: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->weight_decay);
    case O_CLIP: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->clip);
    case O_EMA: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->ema_decay);
    case 's': return cli_parse_seed(cmd, opt, val, &tc->seed);
    case O_CKPT: a->ckpt = val; return 0;
    case O_RESUME: a->o.resume = val; return 0;
    case O_CKPT_EVERY: return train_long(cmd, opt, val, 0, &tc->ckpt_every);
    case O_METRICS: tc->metrics_path = val; return 0;
    case O_LOG_EVERY: return train_long(cmd, opt, val, 1, &tc->log_every);
    case O_VAL: a->o.val_pairs = val; return 0;
    case O_VAL_DRAWS: return train_int(cmd, opt, val, 1, &a->o.val_draws);
    default: return cli_unhandled(p);
    }
}

static const char *usage_method;   /* whose defaults --help shows */
static void usage_of_method(FILE *f) { usage(f, usage_method); }

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(pref_args *a, int argc, char **argv)
{
    usage_method = argv[0];
    cli_parser p = cli_parser_init(a->cmd, argc, argv, "s:", LONG_OPTS, usage_of_method);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = take_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign %s: unexpected argument '%s'\n", a->cmd, argv[p.optind]);
        return 2;
    }
    a->quiet = p.common.quiet;
    return -1;
}

int cmd_train_pref(int argc, char **argv)
{
    pref_args a;
    memset(&a, 0, sizeof a);
    da_pref_method m;
    if (da_pref_method_parse(argv[0], &m) != DA_OK) {
        fprintf(stderr, "dalign train: %s\n", da_last_error());
        return 2;
    }
    da_pref_defaults(m, &a.tc, &a.o);
    snprintf(a.cmd, sizeof a.cmd, "train %s", da_pref_method_name(m));
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    a.tc.progress = !a.quiet;
    a.tc.handle_signals = 1;
    char ckpt[4096], metrics[4096];
    const char *out = train_out_dir(a.o.out_dir, a.o.weights_dir);
    if (a.o.name) {
        rc = train_default_paths(a.cmd, out, a.o.name, a.o.resume, &a.ckpt, ckpt, &a.tc.metrics_path, metrics,
                                 sizeof ckpt);
        if (rc) return rc;
    }
    a.tc.ckpt_path = a.ckpt;
    if (da_pref_check(&a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", a.cmd, da_last_error());
        return 2;
    }
    const char *names[2] = {a.o.name, NULL};
    train_clean_stale_tmp(a.cmd, out, names, a.quiet);
    if (a.ckpt) train_clean_stale_tmp_of(a.cmd, a.ckpt, a.quiet);
    if (train_check_ckpt(a.cmd, a.ckpt, a.o.resume, a.o.force, 0, &a.tc, NULL, a.quiet)) return 1;
    da_pref_result res;
    da_status s = da_pref_run(&a.tc, &a.o, &res);
    if (s != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", a.cmd, da_last_error());
        return res.exit_code ? res.exit_code : 1;
    }
    if (res.validated)
        printf("dalign %s: validation on %d pairs x %d draws: implicit accuracy %.4f, margin %.4g, DPO loss %.4f\n",
               a.cmd, res.val.pairs, res.val.draws, (double)res.val.acc, (double)res.val.margin, (double)res.val.dpo_loss);
    if (!res.stop_signal && res.steps >= a.tc.total_steps)
        printf("dalign %s: %ld steps on %d pairs, final loss %.6g; wrote %s/%s.{safetensors,json}\n", a.cmd, res.steps,
               res.n_pairs, (double)res.loss, a.o.out_dir ? a.o.out_dir : da_weights_dir(a.o.weights_dir), a.o.name);
    return res.exit_code;
}
