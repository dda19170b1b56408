/* dalign train refiner: the PromptLoop reference refiner, supervised on
 * paraphrases of the query while reading the frozen base model's x̂0
 * (src/train/refiner_sup.c, docs/promptloop.md), on the shared
 * harness: progress, JSONL metrics, checkpoints, bit-identical --resume,
 * Ctrl-C / SIGTERM -> checkpoint and exit 130 / 143. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_common.h"
#include "dalign.h"

#define CMD "train refiner"

typedef struct refiner_args {
    da_trainer_config tc;
    da_refiner_sup_opts o;
    int quiet;
    const char *ckpt, *config;
} refiner_args;

static void usage(FILE *f)
{
    da_trainer_config tc;
    da_refiner_sup_opts o;
    da_refiner_sup_defaults(&tc, &o);
    fprintf(f,
            "Usage: dalign train refiner --name NAME [OPTIONS]   (--opt value or --opt=value)\n"
            "\n"
            "Train the PromptLoop reference refiner (docs/promptloop.md): given\n"
            "a query, the base model's predicted clean latent x̂0 at a sampler step (or\n"
            "none) and the prompt in use, write a random paraphrase of the query (same\n"
            "meaning, other words). Loss: mean token cross-entropy of the paraphrase under\n"
            "teacher forcing, over the ids generation may write (all but PAD, BOS, UNK).\n"
            "The observations come from a bank of base-model trajectories, built once\n"
            "(minutes) and cached in OUT/NAME.bank.safetensors. Writes OUT/NAME.json,\n"
            "OUT/NAME.safetensors and OUT/NAME.report.json (final meaning rates: the share\n"
            "of written prompts that parse and mean the query, on held-back train-split\n"
            "and held-out-split queries, at temperature 1 and 0).\n"
            "\n"
            "Options:\n"
            "  --name NAME         output basename, e.g. refiner-ref (required)\n"
            "  --weights DIR       frozen text_encoder, vae and UNet (default: $DALIGN_WEIGHTS,\n"
            "                      else ./weights)\n"
            "  --unet NAME         the UNet whose trajectories are observed (default %s)\n"
            "  --out DIR           where NAME.* goes (default: --weights)\n"
            "  --force             replace an existing NAME.* or checkpoint (another run's)\n"
            "  --refiner-config F  the refiner's JSON config (default: d_model %d, %d layers)\n"
            "  --steps N           optimizer steps (default %ld)\n"
            "  --batch B           examples per step (default %d)\n"
            "  --lr LR             peak learning rate (default %g; AdamW, warmup, cosine)\n"
            "  --min-lr LR         learning rate at the end of the cosine (default %g)\n"
            "  --warmup N          linear warmup steps (default %ld)\n"
            "  --weight-decay W    AdamW weight decay (default %g)\n"
            "  --clip C            max global gradient norm, 0: none (default %g)\n"
            "  --ema D             EMA decay; > 0 saves the EMA weights (default %g: the trained ones)\n"
            "  -s, --seed S        seed of the init and the examples (default 0; -1: random, printed)\n"
            "  --bank FILE         observation bank cache (default OUT/NAME.bank.safetensors);\n"
            "                      rebuilt when its settings or the base models differ\n"
            "  --bank-size N       training queries, one trajectory each (default %d)\n"
            "  --bank-steps N      DDIM steps of the trajectories (default %d)\n"
            "  --cfg W             guidance weight of the trajectories (default %g; alias --cfg-scale)\n"
            "  --bank-seed S       seed of the queries and their noise (default 0)\n"
            "  --p-blind P         share of examples with no observation (zero latent, as the\n"
            "                      apriori and once modes) (default %g)\n"
            "  --p-query-prompt P  share whose prompt in use is the query, not a paraphrase (default %g)\n"
            "  --no-fresh-blind    blind examples take bank queries too (default: fresh captions)\n"
            "  --query-split S     training queries from both splits (all, default: the held-out\n"
            "                      colour-shape pairs and layouts are seen as text, validation\n"
            "                      meanings never are) or from the train split only (train)\n"
            "  --val-queries N     held-back queries per split, for the meaning rate (default %d)\n"
            "  --val-refine K      chained refinements per validation query (default %d)\n"
            "  --val-every N       quick meaning rate every N steps, 0: none (default %d)\n"
            "  --val-quick N       queries per split in the quick one (default %d)\n"
            "  --ckpt PATH         checkpoint (default OUT/NAME.ckpt)\n"
            "  --resume CKPT       continue a run from its checkpoint (same options)\n"
            "  --ckpt-every N      also checkpoint every N steps (default %ld; 0: end/signal)\n"
            "  --metrics FILE      JSONL metrics (default OUT/NAME.metrics.jsonl)\n"
            "  --log-every N       metrics period (default %ld)\n"
            CLI_COMMON_HELP
            "                      (results do not depend on the threads; -q: no progress)\n"
            "\n"
            "Logged: loss, tok_acc (argmax = target), t_out (longest target), lr, grad_norm\n"
            "every line; every --val-every steps val_t1, val_t0, heldout_t1, heldout_t0 (the\n"
            "meaning rates of the weights entering that step). Exit status: 0 done,\n"
            "1 failure, 2 usage error, 130/143 stopped by a signal (checkpoint saved).\n",
            o.unet, o.model.d_model, o.model.n_layers, tc.total_steps, tc.batch, (double)tc.lr, (double)tc.min_lr,
            tc.warmup, (double)tc.weight_decay, (double)tc.clip, (double)tc.ema_decay, o.bank_size, o.sample.steps,
            (double)o.sample.cfg, (double)o.p_blind, (double)o.p_query_prompt, o.val_queries, o.n_refine,
            o.val_every, o.val_quick, tc.ckpt_every, tc.log_every);
}

enum {
    O_NAME = CLI_O_LOCAL, O_WEIGHTS, O_UNET, O_OUT, O_FORCE, O_CONFIG, O_STEPS, O_BATCH, O_LR, O_MIN_LR, O_WARMUP,
    O_WD, O_CLIP, O_EMA, O_BANK, O_BANK_SIZE, O_BANK_STEPS, O_BANK_SEED, O_P_BLIND, O_P_QUERY, O_NO_FRESH,
    O_VAL_QUERIES, O_VAL_REFINE, O_VAL_EVERY, O_VAL_QUICK, O_CKPT, O_RESUME, O_CKPT_EVERY, O_METRICS, O_LOG_EVERY,
    O_QUERY_SPLIT
};

static const struct option LONG_OPTS[] = {
    {"name", required_argument, 0, O_NAME},             {"weights", required_argument, 0, O_WEIGHTS},
    {"unet", required_argument, 0, O_UNET},             {"out", required_argument, 0, O_OUT},
    {"force", no_argument, 0, O_FORCE},                 {"refiner-config", required_argument, 0, O_CONFIG},
    {"steps", required_argument, 0, O_STEPS},           {"batch", required_argument, 0, O_BATCH},
    {"lr", required_argument, 0, O_LR},                 {"min-lr", required_argument, 0, O_MIN_LR},
    {"warmup", required_argument, 0, O_WARMUP},         {"weight-decay", required_argument, 0, O_WD},
    {"clip", required_argument, 0, O_CLIP},             {"ema", required_argument, 0, O_EMA},
    {"seed", required_argument, 0, 's'},                {"bank", required_argument, 0, O_BANK},
    {"bank-size", required_argument, 0, O_BANK_SIZE},   {"bank-steps", required_argument, 0, O_BANK_STEPS},
    {"cfg", required_argument, 0, CLI_O_CFG},           {"cfg-scale", required_argument, 0, CLI_O_CFG},
    {"bank-seed", required_argument, 0, O_BANK_SEED},   {"p-blind", required_argument, 0, O_P_BLIND},
    {"p-query-prompt", required_argument, 0, O_P_QUERY}, {"no-fresh-blind", no_argument, 0, O_NO_FRESH},
    {"val-queries", required_argument, 0, O_VAL_QUERIES}, {"val-refine", required_argument, 0, O_VAL_REFINE},
    {"val-every", required_argument, 0, O_VAL_EVERY},   {"val-quick", required_argument, 0, O_VAL_QUICK},
    {"ckpt", required_argument, 0, O_CKPT},             {"resume", required_argument, 0, O_RESUME},
    {"ckpt-every", required_argument, 0, O_CKPT_EVERY}, {"metrics", required_argument, 0, O_METRICS},
    {"log-every", required_argument, 0, O_LOG_EVERY},   {"query-split", required_argument, 0, O_QUERY_SPLIT},
    CLI_COMMON_LONG,                                    {0, 0, 0, 0},
};

/* one option; 0 or a usage-error exit code */
static int take_option(refiner_args *a, const cli_parser *p, int c)
{
    const char *opt = p->opt, *val = p->val;
    da_refiner_sup_opts *o = &a->o;
    da_trainer_config *tc = &a->tc;
    switch (c) {
    case O_NAME: o->name = val; return 0;
    case O_WEIGHTS: o->weights_dir = val; return 0;
    case O_UNET: o->unet = val; return 0;
    case O_OUT: o->out_dir = val; return 0;
    case O_FORCE: o->force = 1; return 0;
    case O_CONFIG: a->config = val; return 0;
    case O_STEPS: return train_long(CMD, opt, val, 1, &tc->total_steps);
    case O_BATCH: return train_int(CMD, opt, val, 1, &tc->batch);
    case O_LR: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GT, &tc->lr);
    case O_MIN_LR: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->min_lr);
    case O_WARMUP: return train_long(CMD, opt, val, 0, &tc->warmup);
    case O_WD: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->weight_decay);
    case O_CLIP: return train_float(CMD, opt, val, 0.0f, TRAIN_NO_MAX, TRAIN_GE, &tc->clip);
    case O_EMA: return train_float(CMD, opt, val, 0.0f, 0.999999f, TRAIN_GE, &tc->ema_decay);
    case 's': return cli_parse_seed(CMD, opt, val, &tc->seed);
    case O_BANK: o->bank_path = val; return 0;
    case O_BANK_SIZE: return train_int(CMD, opt, val, 1, &o->bank_size);
    case O_BANK_STEPS: return cli_parse_int_in(CMD, opt, val, 1, DA_CLI_MAX_STEPS, &o->sample.steps);
    case CLI_O_CFG: return cli_sample_opt(p, c, &o->sample);
    case O_BANK_SEED: return cli_parse_seed(CMD, opt, val, &o->bank_seed);
    case O_P_BLIND: return train_float(CMD, opt, val, 0.0f, 1.0f, TRAIN_GE, &o->p_blind);
    case O_P_QUERY: return train_float(CMD, opt, val, 0.0f, 1.0f, TRAIN_GE, &o->p_query_prompt);
    case O_NO_FRESH: o->fresh_blind = 0; return 0;
    case O_QUERY_SPLIT:
        if (strcmp(val, "train") && strcmp(val, "all")) return cli_bad_value(CMD, opt, val, "train or all");
        o->query_split_all = !strcmp(val, "all");
        return 0;
    case O_VAL_QUERIES: return train_int(CMD, opt, val, 0, &o->val_queries);
    case O_VAL_REFINE: return train_int(CMD, opt, val, 1, &o->n_refine);
    case O_VAL_EVERY: return train_int(CMD, opt, val, 0, &o->val_every);
    case O_VAL_QUICK: return train_int(CMD, opt, val, 1, &o->val_quick);
    case O_CKPT: a->ckpt = val; return 0;
    case O_RESUME: o->resume = val; return 0;
    case O_CKPT_EVERY: return train_long(CMD, opt, val, 0, &tc->ckpt_every);
    case O_METRICS: tc->metrics_path = val; return 0;
    case O_LOG_EVERY: return train_long(CMD, opt, val, 1, &tc->log_every);
    default: return cli_unhandled(p);
    }
}

/* -1: go on; else the exit code (0 after --help) */
static int parse_args(refiner_args *a, int argc, char **argv)
{
    cli_parser p = cli_parser_init(CMD, argc, argv, "s:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        int rc = take_option(a, &p, c);
        if (rc) return rc;
    }
    if (p.optind < argc) {
        fprintf(stderr, "dalign " CMD ": unexpected argument '%s'\n", argv[p.optind]);
        return 2;
    }
    a->quiet = p.common.quiet;
    return -1;
}

static void print_done(const refiner_args *a, const da_refiner_sup_result *r)
{
    const char *out = train_out_dir(a->o.out_dir, a->o.weights_dir);
    printf("dalign " CMD ": %ld steps, final loss %.4f; wrote %s/%s.{safetensors,json}\n", r->steps, (double)r->loss,
           out, a->o.name);
    if (!r->validated) return;
    printf("meaning rate (parses and means the query) on %d held-back queries per split, %d outputs each:\n",
           r->val_queries, a->o.n_refine + 1);
    printf("  %-10s %6s %8s %8s %8s %8s\n", "split", "temp", "parse", "meaning", "loop", "blind");
    const da_refiner_meaning *m[4] = {&r->train_t1, &r->train_t0, &r->heldout_t1, &r->heldout_t0};
    for (int i = 0; i < 4; i++)
        printf("  %-10s %6d %8.4f %8.4f %8.4f %8.4f\n", i < 2 ? "train" : "held-out", i % 2 ? 0 : 1,
               (double)m[i]->parse, (double)m[i]->meaning, (double)m[i]->loop, (double)m[i]->blind);
    printf("report: %s/%s.report.json\n", out, a->o.name);
}

int cmd_train_refiner(int argc, char **argv)
{
    refiner_args a;
    memset(&a, 0, sizeof a);
    da_refiner_sup_defaults(&a.tc, &a.o);
    int rc = parse_args(&a, argc, argv);
    if (rc >= 0) return rc;
    if (!a.o.name) {
        fprintf(stderr, "dalign " CMD ": --name NAME is required (the output is OUT/NAME.safetensors + NAME.json)\n");
        return 2;
    }
    if (a.config && da_refiner_config_load(&a.o.model, a.config) != DA_OK) {
        fprintf(stderr, "dalign " CMD ": --refiner-config: %s\n", da_last_error());
        return 2;
    }
    a.tc.name = a.o.name;
    a.tc.progress = !a.quiet;
    a.tc.handle_signals = 1;
    if (a.tc.warmup >= a.tc.total_steps) a.tc.warmup = a.tc.total_steps / 10;   /* short runs keep a cosine */
    if (da_refiner_sup_check(&a.tc, &a.o) != DA_OK) {
        fprintf(stderr, "dalign " CMD ": %s\n", da_last_error());
        return 2;
    }
    char ckpt[4096], metrics[4096];
    const char *out = train_out_dir(a.o.out_dir, a.o.weights_dir);
    rc = train_default_paths(CMD, out, a.o.name, a.o.resume, &a.ckpt, ckpt, &a.tc.metrics_path, metrics, sizeof ckpt);
    if (rc) return rc;
    a.tc.ckpt_path = a.ckpt;
    const char *names[2] = {a.o.name, NULL};
    train_clean_stale_tmp(CMD, out, names, a.quiet);
    train_clean_stale_tmp_of(CMD, a.ckpt, a.quiet);
    if (train_check_ckpt(CMD, a.ckpt, a.o.resume, a.o.force, 0, &a.tc, NULL, a.quiet)) return 1;
    da_refiner_sup_result res;
    da_status s = da_refiner_sup_run(&a.tc, &a.o, &res);
    if (s != DA_OK) {
        fprintf(stderr, "dalign " CMD ": %s\n", da_last_error());
        return res.exit_code ? res.exit_code : 1;
    }
    if (res.stop_signal)
        printf("stopped at step %ld of %ld; continue with: dalign " CMD " --resume %s (same options)\n", res.steps,
               a.tc.total_steps, a.tc.ckpt_path);
    else if (res.steps >= a.tc.total_steps)
        print_done(&a, &res);
    return res.exit_code;
}
