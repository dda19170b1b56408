/* dalign train ddpo|grpo|raft: RL on the UNet's weights (src/train/rl_weights.c,
 * docs/rl-weights.md) on the shared harness: progress, JSONL metrics,
 * checkpoints with the rollout buffer, bit-identical --resume, Ctrl-C /
 * SIGTERM -> checkpoint and exit 130 / 143. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_common.h"
#include "dalign.h"

typedef struct rl_args {
    da_trainer_config tc;
    da_rlw_opts o;
    int quiet, iterations, iterations_set;
    const char *ckpt;
    char cmd[32];   /* "train ddpo" */
} rl_args;

static const char *const ABOUT[] = {
    "DDPO (Black et al.): PPO on the DDIM eta-1 trajectory. Each step is a Gaussian\n"
    "policy; its log-probability under the current weights, with CFG as at sampling,\n"
    "enters a clipped ratio (clip 1e-4); advantages are normalised per prompt by a\n"
    "running tracker of past rewards and clamped to +-5; a timestep fraction trains\n"
    "on a random subset of each trajectory's steps.\n",
    "GRPO on the weights (Flow-GRPO / DanceGRPO on DDIM eta > 0): advantages relative\n"
    "to the G rollouts of a prompt, the same clipped ratio, and a KL to the frozen\n"
    "base through the step means, ||mu - mu_ref||^2 / (2 sigma_t^2).\n",
    "RAFT (best of K): sample K images per prompt, keep the best by the reward, and\n"
    "fine-tune on them with the eps-MSE of pretraining; repeat. The floor every RL\n"
    "method must beat.\n",
};

static void usage(FILE *f, da_rlw_method m)
{
    da_trainer_config tc;
    da_rlw_opts o = da_rlw_defaults(m);
    da_rlw_trainer_defaults(&tc, &o);
    const char *name = da_rlw_method_name(m);
    fprintf(f, "Usage: dalign train %s --name NAME [OPTIONS]   (--opt value or --opt=value)\n\n%s\n", name, ABOUT[m]);
    fprintf(f,
            "Writes OUT/NAME.safetensors + OUT/NAME.json, a UNet (use with --unet NAME).\n"
            "docs/rl-weights.md has the equations.\n"
            "\n"
            "Options:\n"
            "  --name NAME          output basename, e.g. unet-%s (required)\n"
            "  --init NAME          the UNet to start from%s (default %s)\n"
            "  --reward NAME        the reward (default %s; see dalign reward --help)\n"
            "  --weights DIR        models and rewards (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --out DIR            where NAME.* goes (default: --weights)\n"
            "  --force              replace an existing NAME.* or checkpoint (another run's)\n"
            "  --iterations N       rollout batches (default %ld)\n"
            "  --prompts Q          train-split prompts per iteration (default %d)\n"
            "  --group G            images per prompt%s (default %d)\n"
            "  --prompt-pool N      draw the prompts from a fixed pool of N (default 0: fresh)\n"
            "  --steps S            DDIM steps (default %d)\n"
            "  --cfg W              guidance weight, in sampling and training (default %g;\n"
            "                       alias --cfg-scale)\n"
            "  --eta E              DDIM eta (default %g)\n"
            "  --epochs E           passes over each rollout batch (default %d)\n"
            "  --minibatches B      optimizer steps per pass, each of whole groups (default %d)\n",
            name, m == DA_RLW_GRPO ? " and the KL anchor" : "", o.init, o.reward, tc.total_steps / (o.epochs * o.minibatches),
            o.prompts, m == DA_RLW_RAFT ? " (the K of best-of-K)" : "", o.group, o.sample.steps, (double)o.sample.cfg,
            (double)o.sample.eta, o.epochs, o.minibatches);
    if (m != DA_RLW_RAFT)
        fprintf(f,
                "  --timestep-frac F    share of each trajectory's noisy steps trained on (default %g)\n"
                "  --clip-eps E         ratio clip (default %g)\n"
                "  --adv-clip A         advantages clamped to +-A (default %g)\n",
                (double)o.timestep_frac, (double)o.clip_eps, (double)o.adv_clip);
    if (m == DA_RLW_DDPO)
        fprintf(f,
                "  --tracker-size N     past rewards kept per prompt (default %d)\n"
                "  --tracker-min N      below this many, the batch's mean and std (default %d)\n",
                o.tracker_size, o.tracker_min);
    if (m == DA_RLW_GRPO)
        fprintf(f,
                "  --kl C               KL coefficient (default %g; 0: no KL)\n"
                "  --shared-noise       one initial noise per group (DanceGRPO)\n",
                (double)o.kl_coef);
    fprintf(f,
            "  --lr LR              learning rate (default %g; AdamW, constant)\n"
            "  --clip C             max global gradient norm (default %g)\n"
            "  -s, --seed S         seed of the prompts and noises (default 0; -1: random, printed)\n"
            "  --ckpt PATH          checkpoint (default OUT/NAME.ckpt)\n"
            "  --resume CKPT        continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N       also checkpoint every N optimizer steps (default %ld)\n"
            "  --metrics FILE       JSONL health metrics (default OUT/NAME.metrics.jsonl)\n"
            CLI_COMMON_HELP
            "                       (results do not depend on the threads; -q: no progress)\n"
            "\n"
            "Logged each iteration: reward (mean, std), zero_std (share of prompts whose\n"
            "images all scored the same)%s; each update: loss, grad_norm%s.\n"
            "Exit status: 0 done, 1 failure, 2 usage error, 130/143 stopped by a signal\n"
            "(checkpoint saved).\n",
            (double)tc.lr, (double)tc.clip, tc.ckpt_every, m == DA_RLW_RAFT ? ", best_reward (mean of the kept)" : "",
            m == DA_RLW_RAFT ? "" : m == DA_RLW_GRPO ? ", clip_frac, approx_kl, ratio, kl_ref" : ", clip_frac, approx_kl, ratio");
}

enum {
    O_NAME = CLI_O_LOCAL, O_INIT, O_REWARD, O_WEIGHTS, O_OUT, O_FORCE, O_ITER, O_PROMPTS, O_GROUP, O_POOL, O_EPOCHS,
    O_MINIB, O_TFRAC, O_CLIP_EPS, O_ADV_CLIP, O_TSIZE, O_TMIN, O_KL, O_SHARED, O_LR, O_CLIP, O_CKPT, O_RESUME,
    O_CKPT_EVERY, O_METRICS
};

static const struct option LONG_OPTS[] = {
    {"name", required_argument, 0, O_NAME},           {"init", required_argument, 0, O_INIT},
    {"reward", required_argument, 0, O_REWARD},       {"weights", required_argument, 0, O_WEIGHTS},
    {"out", required_argument, 0, O_OUT},             {"force", no_argument, 0, O_FORCE},
    {"iterations", required_argument, 0, O_ITER},     {"prompts", required_argument, 0, O_PROMPTS},
    {"group", required_argument, 0, O_GROUP},         {"prompt-pool", required_argument, 0, O_POOL},
    {"steps", required_argument, 0, CLI_O_STEPS},     {"cfg", required_argument, 0, CLI_O_CFG},
    {"cfg-scale", required_argument, 0, CLI_O_CFG},   {"eta", required_argument, 0, CLI_O_ETA},
    {"epochs", required_argument, 0, O_EPOCHS},       {"minibatches", required_argument, 0, O_MINIB},
    {"timestep-frac", required_argument, 0, O_TFRAC}, {"clip-eps", required_argument, 0, O_CLIP_EPS},
    {"adv-clip", required_argument, 0, O_ADV_CLIP},   {"tracker-size", required_argument, 0, O_TSIZE},
    {"tracker-min", required_argument, 0, O_TMIN},    {"kl", required_argument, 0, O_KL},
    {"shared-noise", no_argument, 0, O_SHARED},       {"lr", required_argument, 0, O_LR},
    {"clip", required_argument, 0, O_CLIP},           {"seed", required_argument, 0, 's'},
    {"ckpt", required_argument, 0, O_CKPT},           {"resume", required_argument, 0, O_RESUME},
    {"ckpt-every", required_argument, 0, O_CKPT_EVERY}, {"metrics", required_argument, 0, O_METRICS},
    CLI_COMMON_LONG,                                  {0, 0, 0, 0},
};

/* the options a method does not have are usage errors, not silently ignored */
static int method_has(const rl_args *a, int c)
{
    da_rlw_method m = a->o.method;
    if (c == O_TFRAC || c == O_CLIP_EPS || c == O_ADV_CLIP) return m != DA_RLW_RAFT;
    if (c == O_TSIZE || c == O_TMIN) return m == DA_RLW_DDPO;
    if (c == O_KL || c == O_SHARED) return m == DA_RLW_GRPO;
    return 1;
}

static int take_option(rl_args *a, const cli_parser *p, int c)
{
    const char *cmd = a->cmd, *opt = p->opt, *val = p->val;
    da_rlw_opts *o = &a->o;
    int rc = cli_sample_opt(p, c, &o->sample);   /* --steps, --cfg, --eta */
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case O_NAME: o->name = val; return 0;
    case O_INIT: o->init = val; return 0;
    case O_REWARD: o->reward = val; return 0;
    case O_WEIGHTS: o->weights_dir = val; return 0;
    case O_OUT: o->out_dir = val; return 0;
    case O_FORCE: o->force = 1; return 0;
    case O_ITER: a->iterations_set = 1; return train_int(cmd, opt, val, 1, &a->iterations);
    case O_PROMPTS: return train_int(cmd, opt, val, 1, &o->prompts);
    case O_GROUP: return train_int(cmd, opt, val, 2, &o->group);
    case O_POOL: return train_int(cmd, opt, val, 0, &o->prompt_pool);
    case O_EPOCHS: return train_int(cmd, opt, val, 1, &o->epochs);
    case O_MINIB: return train_int(cmd, opt, val, 1, &o->minibatches);
    case O_TFRAC: return train_float(cmd, opt, val, 0.0f, 1.0f, TRAIN_GT | TRAIN_LE, &o->timestep_frac);
    case O_CLIP_EPS: return train_float(cmd, opt, val, 0.0f, 1.0f, TRAIN_GT | TRAIN_LT, &o->clip_eps);
    case O_ADV_CLIP: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &o->adv_clip);
    case O_TSIZE: return train_int(cmd, opt, val, 1, &o->tracker_size);
    case O_TMIN: return train_int(cmd, opt, val, 1, &o->tracker_min);
    case O_KL: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &o->kl_coef);
    case O_SHARED: o->shared_noise = 1; return 0;
    case O_LR:
        rc = train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &a->tc.lr);
        a->tc.min_lr = a->tc.lr;   /* constant learning rate */
        return rc;
    case O_CLIP: return train_float(cmd, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &a->tc.clip);
    case 's': return cli_parse_seed(cmd, opt, val, &a->tc.seed);
    case O_CKPT: a->ckpt = val; return 0;
    case O_RESUME: o->resume = val; return 0;
    case O_CKPT_EVERY: return train_long(cmd, opt, val, 0, &a->tc.ckpt_every);
    case O_METRICS: a->tc.metrics_path = val; return 0;
    default: return cli_unhandled(p);
    }
}

static da_rlw_method usage_method;   /* whose options --help shows */
static void usage_of_method(FILE *f) { usage(f, usage_method); }

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(rl_args *a, int argc, char **argv)
{
    usage_method = a->o.method;
    cli_parser p = cli_parser_init(a->cmd, argc, argv, "s:", LONG_OPTS, usage_of_method);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        if (!method_has(a, c)) {
            fprintf(stderr, "dalign %s: no such option for this method: '%s' (see dalign %s --help)\n", a->cmd,
                    p.opt, a->cmd);
            return 2;
        }
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

/* the trainer's sizes follow the options (iterations x updates per iteration) */
static void fit_trainer(rl_args *a)
{
    da_trainer_config given = a->tc;
    da_rlw_trainer_defaults(&a->tc, &a->o);
    if (given.lr > 0.0f) a->tc.lr = a->tc.min_lr = given.lr;
    if (given.clip > 0.0f) a->tc.clip = given.clip;
    a->tc.seed = given.seed;
    a->tc.ckpt_every = given.ckpt_every ? given.ckpt_every : a->tc.ckpt_every;
    a->tc.metrics_path = given.metrics_path;
    if (a->iterations_set) a->tc.total_steps = (long)a->iterations * a->o.epochs * a->o.minibatches;
    a->tc.progress = !a->quiet;
    a->tc.handle_signals = 1;
}

int cmd_train_rl(int argc, char **argv)
{
    rl_args a;
    memset(&a, 0, sizeof a);
    da_rlw_method m;
    if (argc < 1 || da_rlw_method_parse(argv[0], &m) != DA_OK) {
        fprintf(stderr, "dalign train: %s\n", da_last_error());
        return 2;
    }
    a.o = da_rlw_defaults(m);
    snprintf(a.cmd, sizeof a.cmd, "train %s", da_rlw_method_name(m));
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    fit_trainer(&a);
    char ckpt[4096], metrics[4096];
    const char *out = train_out_dir(a.o.out_dir, a.o.weights_dir);
    if (a.o.name) {
        rc = train_default_paths(a.cmd, out, a.o.name, a.o.resume, &a.ckpt, ckpt, &a.tc.metrics_path, metrics,
                                 sizeof ckpt);
        if (rc) return rc;
    }
    a.tc.ckpt_path = a.ckpt;
    if (da_rlw_check(&a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", a.cmd, da_last_error());
        return 2;
    }
    const char *names[2] = {a.o.name, NULL};
    train_clean_stale_tmp(a.cmd, out, names, a.quiet);
    if (a.ckpt) train_clean_stale_tmp_of(a.cmd, a.ckpt, a.quiet);
    if (train_check_ckpt(a.cmd, a.ckpt, a.o.resume, a.o.force, 0, &a.tc, NULL, a.quiet)) return 1;
    da_rlw_result res;
    da_status s = da_rlw_run(&a.tc, &a.o, &res);
    if (s != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", a.cmd, da_last_error());
        return res.exit_code ? res.exit_code : 1;
    }
    if (!res.stop_signal && res.steps >= a.tc.total_steps)
        printf("dalign %s: %ld updates, final loss %.6g; wrote %s/%s.{safetensors,json}\n", a.cmd, res.steps,
               (double)res.loss, a.o.out_dir ? a.o.out_dir : da_weights_dir(a.o.weights_dir), a.o.name);
    return res.exit_code;
}
