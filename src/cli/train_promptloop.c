/* dalign train promptloop: GRPO on the PromptLoop refiner with the diffusion
 * model and the reward frozen (src/train/promptloop.c, docs/promptloop.md),
 * on the shared harness: progress, JSONL metrics, checkpoints with the
 * rollout buffer, bit-identical --resume, Ctrl-C / SIGTERM -> checkpoint and
 * exit 130 / 143. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_common.h"
#include "dalign.h"

static const char CMD[] = "train promptloop";

typedef struct pl_args {
    da_trainer_config tc;
    da_promptloop_opts o;
    int quiet, iterations, iterations_set;
    const char *ckpt;
} pl_args;

static void usage(FILE *f)
{
    da_trainer_config tc;
    da_promptloop_opts o = da_promptloop_defaults();
    da_promptloop_trainer_defaults(&tc, &o);
    fprintf(f,
            "Usage: dalign train promptloop --name NAME [OPTIONS]   (--opt value or --opt=value)\n"
            "\n"
            "Train a PromptLoop refiner with GRPO: the frozen diffusion model samples each\n"
            "train-split query G times while the refiner rewrites its prompt K times from\n"
            "the model's predicted latent; the reward judges each image against the\n"
            "ORIGINAL query; advantages are relative to the query's group; the update is\n"
            "the clipped token ratio plus a KL to the reference refiner (k3 estimator).\n"
            "Writes OUT/NAME.safetensors + OUT/NAME.json (use with --refiner NAME).\n"
            "docs/promptloop.md has the equations.\n"
            "\n"
            "Options:\n"
            "  --name NAME          output basename, e.g. refiner (required)\n"
            "  --init NAME          the reference refiner: the policy's start and the KL\n"
            "                       anchor (default %s)\n"
            "  --reward NAME        the reward (default %s; see dalign reward --help)\n"
            "  --unet NAME          the frozen UNet (default %s)\n"
            "  --weights DIR        models and rewards (default: $DALIGN_WEIGHTS, else ./weights, else the installed ones)\n"
            "  --out DIR            where NAME.* goes (default: --weights)\n"
            "  --force              replace an existing NAME.* or checkpoint (another run's)\n"
            "  --iterations N       rollout batches (default %ld)\n"
            "  --queries Q          queries per iteration (default %d)\n"
            "  --group G            rollouts per query (default %d)\n"
            "  --shared-noise       one initial noise per group (the rollouts differ in prompts only)\n"
            "  --query-split S      train (default): queries from the train split only; all:\n"
            "                       either split by a coin (held-out compositions as text, as\n"
            "                       the reference refiner; never an evaluation prompt's meaning)\n"
            "  --refine-mode M      loop, apriori or once: what the refiner reads (default loop)\n"
            "  --refine-steps K     refinements per image (default %d)\n"
            "  --refine-keep-meaning  a written prompt that does not mean the query is\n"
            "                       ignored by the image (it keeps the prompt in use) but\n"
            "                       is still the action scored: GRPO in a world that\n"
            "                       enforces the meaning (docs/promptloop.md)\n"
            "  --refine-window FIRST:END  spread the refinements over sampler steps\n"
            "                       FIRST .. END-1 (default: the whole trajectory); saved\n"
            "                       in the refiner's file, so sample and eval follow it\n"
            "  --temperature T      rollout sampling temperature (default %g)\n"
            "  --steps S            sampler steps (default %d)\n"
            "  --cfg W              guidance weight (default %g; alias --cfg-scale)\n"
            "  --epochs E           passes over each rollout batch (default %d)\n"
            "  --minibatches B      optimizer steps per pass, each of whole groups (default %d)\n"
            "  --clip-eps E         ratio clip (default %g)\n"
            "  --kl C               KL coefficient (default %g; 0: no KL)\n"
            "  --kl-to-old          KL to the rollout policy (the paper's), not the reference\n"
            "  --lr LR              learning rate (default %g; AdamW, constant)\n"
            "  --clip C             max global gradient norm (default %g)\n"
            "  -s, --seed S         seed of the queries, noises and writer draws (default 0;\n"
            "                       -1: random, printed)\n"
            "  --ckpt PATH          checkpoint (default OUT/NAME.ckpt)\n"
            "  --resume CKPT        continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N       also checkpoint every N optimizer steps (default %ld)\n"
            "  --metrics FILE       JSONL health metrics (default OUT/NAME.metrics.jsonl)\n"
            CLI_COMMON_HELP
            "                       (results do not depend on the threads; -q: no progress)\n"
            "\n"
            "Logged each iteration: reward (mean, std), zero_std (share of groups with equal\n"
            "rewards), faith (image vs query: drift), prompt_len, parse and meaning (shares\n"
            "of written prompts that parse and mean the query); each update: loss,\n"
            "clip_frac, kl, ratio, grad_norm. Exit status: 0 done, 1 failure, 2 usage\n"
            "error, 130/143 stopped by a signal (checkpoint saved).\n",
            o.init, o.reward, o.unet, tc.total_steps / (o.epochs * o.minibatches), o.queries, o.group,
            o.loop.n_refine, (double)o.loop.temperature, o.sample.steps, (double)o.sample.cfg, o.epochs,
            o.minibatches, (double)o.clip_eps, (double)o.kl_coef, (double)tc.lr, (double)tc.clip, tc.ckpt_every);
}

enum {
    O_NAME = CLI_O_LOCAL, O_INIT, O_REWARD, O_UNET, O_WEIGHTS, O_OUT, O_FORCE, O_ITER, O_QUERIES, O_GROUP, O_SHARED,
    O_TEMP, O_EPOCHS, O_MINIB, O_CLIP_EPS, O_KL, O_KL_OLD, O_LR, O_CLIP, O_CKPT, O_RESUME, O_CKPT_EVERY, O_METRICS,
    O_QUERY_SPLIT
};

static const struct option LONG_OPTS[] = {
    {"name", required_argument, 0, O_NAME},         {"init", required_argument, 0, O_INIT},
    {"reward", required_argument, 0, O_REWARD},     {"unet", required_argument, 0, O_UNET},
    {"weights", required_argument, 0, O_WEIGHTS},   {"out", required_argument, 0, O_OUT},
    {"force", no_argument, 0, O_FORCE},             {"iterations", required_argument, 0, O_ITER},
    {"queries", required_argument, 0, O_QUERIES},   {"group", required_argument, 0, O_GROUP},
    {"shared-noise", no_argument, 0, O_SHARED},     {"refine-mode", required_argument, 0, CLI_O_REFINE_MODE},
    {"refine-steps", required_argument, 0, CLI_O_REFINE_STEPS}, {"temperature", required_argument, 0, O_TEMP},
    {"steps", required_argument, 0, CLI_O_STEPS},   {"cfg", required_argument, 0, CLI_O_CFG},
    {"cfg-scale", required_argument, 0, CLI_O_CFG}, {"epochs", required_argument, 0, O_EPOCHS},
    {"minibatches", required_argument, 0, O_MINIB}, {"clip-eps", required_argument, 0, O_CLIP_EPS},
    {"kl", required_argument, 0, O_KL},             {"kl-to-old", no_argument, 0, O_KL_OLD},
    {"lr", required_argument, 0, O_LR},             {"clip", required_argument, 0, O_CLIP},
    {"seed", required_argument, 0, 's'},            {"ckpt", required_argument, 0, O_CKPT},
    {"resume", required_argument, 0, O_RESUME},     {"ckpt-every", required_argument, 0, O_CKPT_EVERY},
    {"metrics", required_argument, 0, O_METRICS},   {"query-split", required_argument, 0, O_QUERY_SPLIT},
    {"refine-keep-meaning", no_argument, 0, CLI_O_REFINE_KEEP_MEANING},
    {"refine-window", required_argument, 0, CLI_O_REFINE_WINDOW},
    CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* the refine options, through cli_loop_opt (the same words as sample's) */
static int take_loop_option(const cli_parser *p, int c, da_loop_opts *loop)
{
    cli_loop_args l = {.opts = *loop};
    int rc = cli_loop_opt(p, c, &l);
    if (rc == 0) *loop = l.opts;
    return rc;
}

static int take_option(pl_args *a, const cli_parser *p, int c)
{
    const char *opt = p->opt, *val = p->val;
    da_promptloop_opts *o = &a->o;
    int rc = cli_sample_opt(p, c, &o->sample);
    if (rc == CLI_NOT_MINE) rc = take_loop_option(p, c, &o->loop);
    if (rc != CLI_NOT_MINE) return rc;
    switch (c) {
    case O_NAME: o->name = val; return 0;
    case O_INIT: o->init = val; return 0;
    case O_REWARD: o->reward = val; return 0;
    case O_UNET: o->unet = val; return 0;
    case O_WEIGHTS: o->weights_dir = val; return 0;
    case O_OUT: o->out_dir = val; return 0;
    case O_FORCE: o->force = 1; return 0;
    case O_ITER: a->iterations_set = 1; return train_int(CMD, opt, val, 1, &a->iterations);
    case O_QUERIES: return train_int(CMD, opt, val, 1, &o->queries);
    case O_GROUP: return train_int(CMD, opt, val, 2, &o->group);
    case O_SHARED: o->shared_noise = 1; return 0;
    case O_QUERY_SPLIT:
        if (strcmp(val, "train") && strcmp(val, "all")) return cli_bad_value(CMD, opt, val, "train or all");
        o->query_split_all = !strcmp(val, "all");
        return 0;
    case O_TEMP: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &o->loop.temperature);
    case O_EPOCHS: return train_int(CMD, opt, val, 1, &o->epochs);
    case O_MINIB: return train_int(CMD, opt, val, 1, &o->minibatches);
    case O_CLIP_EPS: return train_float(CMD, opt, val, 0.0f, 1.0f, TRAIN_GT | TRAIN_LT, &o->clip_eps);
    case O_KL: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &o->kl_coef);
    case O_KL_OLD: o->kl_to_old = 1; return 0;
    case O_LR:
        rc = train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &a->tc.lr);
        a->tc.min_lr = a->tc.lr;   /* constant learning rate */
        return rc;
    case O_CLIP: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &a->tc.clip);
    case 's': return cli_parse_seed(CMD, opt, val, &a->tc.seed);
    case O_CKPT: a->ckpt = val; return 0;
    case O_RESUME: o->resume = val; return 0;
    case O_CKPT_EVERY: return train_long(CMD, opt, val, 0, &a->tc.ckpt_every);
    case O_METRICS: a->tc.metrics_path = val; return 0;
    default: return cli_unhandled(p);
    }
}

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(pl_args *a, int argc, char **argv)
{
    cli_parser p = cli_parser_init(CMD, argc, argv, "s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = take_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign %s: unexpected argument '%s'\n", CMD, argv[p.optind]);
        return 2;
    }
    a->quiet = p.common.quiet;
    return -1;
}

int cmd_train_promptloop(int argc, char **argv)
{
    pl_args a;
    memset(&a, 0, sizeof a);
    a.o = da_promptloop_defaults();
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    /* the trainer's sizes follow the options (iterations x updates per iteration) */
    da_trainer_config given = a.tc;
    da_promptloop_trainer_defaults(&a.tc, &a.o);
    if (given.lr > 0.0f) a.tc.lr = a.tc.min_lr = given.lr;
    if (given.clip > 0.0f) a.tc.clip = given.clip;
    a.tc.seed = given.seed;
    a.tc.ckpt_every = given.ckpt_every ? given.ckpt_every : a.tc.ckpt_every;
    a.tc.metrics_path = given.metrics_path;
    if (a.iterations_set) a.tc.total_steps = (long)a.iterations * a.o.epochs * a.o.minibatches;
    a.tc.progress = !a.quiet;
    a.tc.handle_signals = 1;
    char ckpt[4096], metrics[4096];
    const char *out = train_out_dir(a.o.out_dir, a.o.weights_dir);
    if (a.o.name) {
        rc = train_default_paths(CMD, out, a.o.name, a.o.resume, &a.ckpt, ckpt, &a.tc.metrics_path, metrics,
                                 sizeof ckpt);
        if (rc) return rc;
    }
    a.tc.ckpt_path = a.ckpt;
    if (da_promptloop_check(&a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", CMD, da_last_error());
        return 2;
    }
    const char *names[2] = {a.o.name, NULL};
    train_clean_stale_tmp(CMD, out, names, a.quiet);
    if (a.ckpt) train_clean_stale_tmp_of(CMD, a.ckpt, a.quiet);
    if (train_check_ckpt(CMD, a.ckpt, a.o.resume, a.o.force, 0, &a.tc, NULL, a.quiet)) return 1;
    da_promptloop_result res;
    da_status s = da_promptloop_run(&a.tc, &a.o, &res);
    if (s != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", CMD, da_last_error());
        return res.exit_code ? res.exit_code : 1;
    }
    if (!res.stop_signal && res.steps >= a.tc.total_steps)
        printf("dalign %s: %ld updates, final loss %.6g; wrote %s/%s.{safetensors,json}\n", CMD, res.steps,
               (double)res.loss, a.o.out_dir ? a.o.out_dir : da_weights_dir(a.o.weights_dir), a.o.name);
    return res.exit_code;
}
