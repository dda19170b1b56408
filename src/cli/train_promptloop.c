/* dalign train promptloop: GRPO on the PromptLoop refiner with the diffusion
 * model and the reward frozen (src/train/promptloop.c, docs/promptloop.md),
 * on the shared harness: progress, JSONL metrics, checkpoints with the
 * rollout buffer, bit-identical --resume, Ctrl-C / SIGTERM -> checkpoint and
 * exit 130 / 143. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "dalign.h"

static const char CMD[] = "train promptloop";

typedef struct pl_args {
    da_trainer_config tc;
    da_promptloop_opts o;
    int threads, quiet, iterations, iterations_set;
    const char *ckpt;
} pl_args;

static void usage(FILE *f)
{
    da_trainer_config tc;
    da_promptloop_opts o = da_promptloop_defaults();
    da_promptloop_trainer_defaults(&tc, &o);
    fprintf(f,
            "Usage: dalign train promptloop --name NAME [OPTIONS]\n"
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
            "  --weights DIR        models and rewards (default: $DALIGN_WEIGHTS, else ./weights)\n"
            "  --out DIR            where NAME.* goes (default: --weights)\n"
            "  --force              replace an existing NAME.* or checkpoint\n"
            "  --iterations N       rollout batches (default %ld)\n"
            "  --queries Q          queries per iteration (default %d)\n"
            "  --group G            rollouts per query (default %d)\n"
            "  --shared-noise       one initial noise per group (the rollouts differ in prompts only)\n"
            "  --refine-mode M      loop, apriori or once: what the refiner reads (default loop)\n"
            "  --refine-steps K     refinements per image (default %d)\n"
            "  --temperature T      rollout sampling temperature (default %g)\n"
            "  --steps S            sampler steps (default %d)\n"
            "  --cfg W              guidance weight (default %g)\n"
            "  --epochs E           passes over each rollout batch (default %d)\n"
            "  --minibatches B      optimizer steps per pass, each of whole groups (default %d)\n"
            "  --clip-eps E         ratio clip (default %g)\n"
            "  --kl C               KL coefficient (default %g; 0: no KL)\n"
            "  --kl-to-old          KL to the rollout policy (the paper's), not the reference\n"
            "  --lr LR              learning rate (default %g; AdamW, constant)\n"
            "  --clip C             max global gradient norm (default %g)\n"
            "  --seed S             seed of the queries, noises and writer draws (default 0)\n"
            "  --ckpt PATH          checkpoint (default OUT/NAME.ckpt)\n"
            "  --resume CKPT        continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N       also checkpoint every N optimizer steps (default %ld)\n"
            "  --metrics FILE       JSONL health metrics (default OUT/NAME.metrics.jsonl)\n"
            "  --threads N          worker threads (results do not depend on it)\n"
            "  -q, --quiet          no progress\n"
            "  -h, --help           show this help and exit\n"
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
    O_NAME = 256, O_INIT, O_REWARD, O_UNET, O_WEIGHTS, O_OUT, O_FORCE, O_ITER, O_QUERIES, O_GROUP, O_SHARED,
    O_MODE, O_KREF, O_TEMP, O_STEPS, O_CFG, O_EPOCHS, O_MINIB, O_CLIP_EPS, O_KL, O_KL_OLD, O_LR, O_CLIP, O_SEED,
    O_CKPT, O_RESUME, O_CKPT_EVERY, O_METRICS, O_THREADS
};

static const struct option LONG_OPTS[] = {
    {"name", required_argument, 0, O_NAME},         {"init", required_argument, 0, O_INIT},
    {"reward", required_argument, 0, O_REWARD},     {"unet", required_argument, 0, O_UNET},
    {"weights", required_argument, 0, O_WEIGHTS},   {"out", required_argument, 0, O_OUT},
    {"force", no_argument, 0, O_FORCE},             {"iterations", required_argument, 0, O_ITER},
    {"queries", required_argument, 0, O_QUERIES},   {"group", required_argument, 0, O_GROUP},
    {"shared-noise", no_argument, 0, O_SHARED},     {"refine-mode", required_argument, 0, O_MODE},
    {"refine-steps", required_argument, 0, O_KREF}, {"temperature", required_argument, 0, O_TEMP},
    {"steps", required_argument, 0, O_STEPS},       {"cfg", required_argument, 0, O_CFG},
    {"epochs", required_argument, 0, O_EPOCHS},     {"minibatches", required_argument, 0, O_MINIB},
    {"clip-eps", required_argument, 0, O_CLIP_EPS}, {"kl", required_argument, 0, O_KL},
    {"kl-to-old", no_argument, 0, O_KL_OLD},        {"lr", required_argument, 0, O_LR},
    {"clip", required_argument, 0, O_CLIP},         {"seed", required_argument, 0, O_SEED},
    {"ckpt", required_argument, 0, O_CKPT},         {"resume", required_argument, 0, O_RESUME},
    {"ckpt-every", required_argument, 0, O_CKPT_EVERY}, {"metrics", required_argument, 0, O_METRICS},
    {"threads", required_argument, 0, O_THREADS},   {"quiet", no_argument, 0, 'q'},
    {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0},
};

static int int_at_least(const char *opt, const char *val, int lo, int *out)
{
    char want[48];
    snprintf(want, sizeof want, "an integer >= %d", lo);
    int v;
    if (cli_parse_int(val, &v) != 0 || v < lo) return cli_bad_value(CMD, opt, val, want);
    *out = v;
    return 0;
}

static int float_above(const char *opt, const char *val, float lo, int strict, float *out)
{
    char want[48];
    snprintf(want, sizeof want, "a number %s %g", strict ? ">" : ">=", (double)lo);
    float v;
    if (cli_parse_float(val, &v) != 0 || (strict ? !(v > lo) : !(v >= lo))) return cli_bad_value(CMD, opt, val, want);
    *out = v;
    return 0;
}

static int take_option(pl_args *a, int c, const char *opt, const char *val)
{
    da_promptloop_opts *o = &a->o;
    long ce;
    int v, rc;
    switch (c) {
    case O_NAME: o->name = val; return 0;
    case O_INIT: o->init = val; return 0;
    case O_REWARD: o->reward = val; return 0;
    case O_UNET: o->unet = val; return 0;
    case O_WEIGHTS: o->weights_dir = val; return 0;
    case O_OUT: o->out_dir = val; return 0;
    case O_FORCE: o->force = 1; return 0;
    case O_ITER: a->iterations_set = 1; return int_at_least(opt, val, 1, &a->iterations);
    case O_QUERIES: return int_at_least(opt, val, 1, &o->queries);
    case O_GROUP: return int_at_least(opt, val, 2, &o->group);
    case O_SHARED: o->shared_noise = 1; return 0;
    case O_MODE: return da_refine_mode_parse(val, &o->loop.mode) == DA_OK ? 0 : cli_bad_value(CMD, opt, val, "loop, apriori or once");
    case O_KREF: return int_at_least(opt, val, 1, &o->loop.n_refine);
    case O_TEMP: return float_above(opt, val, 0.0f, 1, &o->loop.temperature);
    case O_STEPS: return cli_parse_int_in(CMD, opt, val, 1, DA_CLI_MAX_STEPS, &o->sample.steps);
    case O_CFG: return cli_parse_float(val, &o->sample.cfg) == 0 ? 0 : cli_bad_value(CMD, opt, val, "a number");
    case O_EPOCHS: return int_at_least(opt, val, 1, &o->epochs);
    case O_MINIB: return int_at_least(opt, val, 1, &o->minibatches);
    case O_CLIP_EPS: rc = float_above(opt, val, 0.0f, 1, &o->clip_eps);
        return rc ? rc : o->clip_eps < 1.0f ? 0 : cli_bad_value(CMD, opt, val, "a number in (0, 1)");
    case O_KL: return float_above(opt, val, 0.0f, 0, &o->kl_coef);
    case O_KL_OLD: o->kl_to_old = 1; return 0;
    case O_LR: rc = float_above(opt, val, 0.0f, 1, &a->tc.lr); a->tc.min_lr = a->tc.lr; return rc;
    case O_CLIP: return float_above(opt, val, 0.0f, 0, &a->tc.clip);
    case O_SEED: return cli_parse_u64(val, &a->tc.seed) == 0 ? 0 : cli_bad_value(CMD, opt, val, "a seed in [0, 2^64)");
    case O_CKPT: a->ckpt = val; return 0;
    case O_RESUME: o->resume = val; return 0;
    case O_CKPT_EVERY: rc = int_at_least(opt, val, 0, &v); ce = v; a->tc.ckpt_every = rc ? a->tc.ckpt_every : ce; return rc;
    case O_METRICS: a->tc.metrics_path = val; return 0;
    case O_THREADS: return int_at_least(opt, val, 1, &a->threads);
    case 'q': a->quiet = 1; return 0;
    }
    return 2;
}

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(pl_args *a, int argc, char **argv)
{
    opterr = 0;
    optind = 1;
    for (;;) {
        int idx = -1, c = getopt_long(argc, argv, ":qh", LONG_OPTS, &idx);
        if (c == -1) break;
        char opt[40];
        snprintf(opt, sizeof opt, "%s%s", idx >= 0 ? "--" : "", idx >= 0 ? LONG_OPTS[idx].name : argv[optind - 1]);
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "dalign %s: %s '%s' (see dalign %s --help)\n", CMD,
                    c == ':' ? "missing value for option" : "unknown option", argv[optind - 1], CMD);
            return 2;
        }
        int rc = take_option(a, c, opt, optarg);
        if (rc) return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "dalign %s: unexpected argument '%s'\n", CMD, argv[optind]);
        return 2;
    }
    return -1;
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* OUT/NAME.ckpt and OUT/NAME.metrics.jsonl unless given */
static int default_paths(pl_args *a, char *ckpt, char *metrics, size_t cap)
{
    const char *out = a->o.out_dir ? a->o.out_dir : da_weights_dir(a->o.weights_dir);
    if (!a->o.name) return 0;
    if (!a->ckpt) {
        snprintf(ckpt, cap, "%s/%s.ckpt", out, a->o.name);
        a->ckpt = a->o.resume ? a->o.resume : ckpt;
    }
    if (!a->tc.metrics_path) {
        snprintf(metrics, cap, "%s/%s.metrics.jsonl", out, a->o.name);
        a->tc.metrics_path = metrics;
    }
    if (!a->o.resume && !a->o.force && file_exists(a->ckpt)) {
        fprintf(stderr, "dalign %s: the checkpoint %s exists (another run's?): --resume it, or pass --force to start over\n",
                CMD, a->ckpt);
        return 1;
    }
    return 0;
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
    if (a.threads > 0) da_set_threads(a.threads);
    a.tc.progress = !a.quiet;
    a.tc.handle_signals = 1;
    char ckpt[4096], metrics[4096];
    if (default_paths(&a, ckpt, metrics, sizeof ckpt)) return 1;
    a.tc.ckpt_path = a.ckpt;
    if (da_promptloop_check(&a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign %s: %s\n", CMD, da_last_error());
        return 2;
    }
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
