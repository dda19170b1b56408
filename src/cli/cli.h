/* Subcommands of the `dalign` binary: each lives in its own file and gets
 * argv starting at its own name. Exit codes: 0 ok, 1 failure, 2 usage error. */
#ifndef DALIGN_CLI_H
#define DALIGN_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "dalign.h"

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command;

int cmd_inspect(int argc, char **argv);
int cmd_toy(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_train_pref(int argc, char **argv);   /* argv[0]: dpo, sft, rpo or kto */
int cmd_train_refiner(int argc, char **argv);   /* argv[0]: refiner */
int cmd_train_promptloop(int argc, char **argv);   /* argv[0]: promptloop */
int cmd_train_rl(int argc, char **argv);   /* argv[0]: ddpo, grpo or raft */
int cmd_reward(int argc, char **argv);
int cmd_eval_base(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_pairs(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_winrate(int argc, char **argv);
int cmd_table(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* Strict parses of an option's value: the whole string, no overflow; 0 on
 * success, -1 (and *out untouched) otherwise. The caller words the error,
 * since what is wanted ("a number >= 0", ...) depends on the option. */
int cli_parse_int(const char *s, int *out);
/* Decimal digits only: a sign or a leading space is refused, since strtoull
 * would quietly wrap " -1" to 2^64 - 1 (seeds). da_parse_u64 by its CLI name. */
int cli_parse_u64(const char *s, uint64_t *out);
/* A finite float (no inf, nan or out-of-range exponent). */
int cli_parse_float(const char *s, float *out);

/* "dalign CMD: OPT needs WANT, got 'VAL'" on stderr; returns 2, the usage
 * error exit code, so an option parser can `return cli_bad_value(...)`. */
int cli_bad_value(const char *cmd, const char *opt, const char *val, const char *want);
/* cli_parse_int within [lo, hi], else cli_bad_value with "an integer in
 * [lo, hi]": 0 or 2. */
int cli_parse_int_in(const char *cmd, const char *opt, const char *val, int lo, int hi, int *out);
/* cli_parse_u64, else cli_bad_value with "a non-negative integer" (seeds):
 * 0 or 2. "-1" (stable-diffusion.cpp's spelling) draws a random seed from
 * the system and prints it on stderr, so the run can be repeated. */
int cli_parse_seed(const char *cmd, const char *opt, const char *val, uint64_t *out);
#define DA_CLI_MAX_STEPS 1000   /* the noise schedule's training steps: no sampler takes more */
#define CLI_NOT_MINE (-1)   /* an option parser's answer: another parser's option */

/* The PromptLoop options of sample and eval: --refiner NAME|FILE,
 * --refine-mode loop|apriori|once, --refine-steps K, --refine-temperature T,
 * --refine-keep-meaning, --no-refine-keep-meaning, --refine-window FIRST:END
 * (same return convention as cli_parse_sample_option). */
typedef struct cli_loop_args {
    const char *refiner;    /* NULL: no refiner */
    da_loop_opts opts;      /* da_loop_opts_default() before parsing */
    int keep_meaning_given; /* 1: --refine-keep-meaning or --no-refine-keep-meaning set opts.keep_meaning;
                             * 0: cli_loop_resolve sets it as the refiner was trained */
    int window_given;       /* the same for --refine-window and opts.window_first, window_end */
} cli_loop_args;
#define CLI_LOOP_HELP                                                                                  \
    "  --refiner NAME     rewrite the prompt while sampling with a PromptLoop refiner:\n"                  \
    "                     DIR/NAME.{json,safetensors}, or FILE.safetensors (docs/promptloop.md)\n"       \
    "  --refine-mode M    loop (reads the step's predicted latent), apriori (all prompts\n"               \
    "                     written before sampling) or once (one prompt, before step 0);\n"               \
    "                     default loop\n"                                                                 \
    "  --refine-steps K   refinements along the trajectory, after steps floor(k*steps/K)\n"             \
    "                     (default 4; once: 1)\n"                                                         \
    "  --refine-temperature T  the refiner's sampling temperature (default 0: greedy)\n"      \
    "  --refine-keep-meaning  discard a rewrite that does not parse to the query's meaning\n"          \
    "                     (the image keeps the prompt in use; docs/promptloop.md)\n"                     \
    "  --no-refine-keep-meaning  use every rewrite. Default: as the refiner was trained\n"              \
    "                     (its file says; the shipped weights/refiner keeps the meaning)\n"             \
    "  --refine-window FIRST:END  spread the refinements over steps FIRST .. END-1\n"                     \
    "                     (FIRST + floor(k*(END-FIRST)/K)); default: as the refiner was\n"              \
    "                     trained, else the whole trajectory (0:steps); once: none\n"
/* refine options without --refiner, or more refinements than steps: 2
 * after a message; else 0 (a window is checked by cli_loop_resolve, once
 * the refiner's file may have given it) */
int cli_check_loop_args(const char *cmd, const cli_loop_args *l, const da_sample_opts *o);
/* Without --refine-keep-meaning or --no-refine-keep-meaning, the guard is
 * set as the refiner in dir was trained (da_weights_refiner_keep_meaning),
 * and said on stderr when that turns it on (unless quiet), so a refiner
 * trained with the guard runs in the world it learnt in; the same for the
 * window without --refine-window (da_weights_refiner_window; once
 * ignores it: one prompt, before step 0). 0; 1 after a message (an
 * unreadable refiner file); 2 when the window, given or the file's, does
 * not fit n_steps. */
int cli_loop_resolve(const char *cmd, cli_loop_args *l, const char *dir, int n_steps, int quiet);

/* An output written only after the sampling is checked before it: create
 * and remove the temp file its atomic write will go through (PATH.tmp.PID,
 * beside PATH). 0, or 1 after "dalign CMD: cannot write -o SHOWN: why". */
int cli_check_writable(const char *cmd, const char *shown, const char *path);

/* ---- One command-line convention (glibc getopt_long) ---------------------
 * Every subcommand parses its argv with cli_next(): `--opt value` and
 * `--opt=value`, options before or after positional arguments, and the
 * options every command takes, before or after its name:
 *   -t, --threads N   worker threads, >= 1 (also `dalign --threads N CMD`)
 *   -q, --quiet       nothing on stderr but errors
 *   -v, --verbose     more on stderr (resolved options, timing)
 *   -h, --help        the command's usage on stdout, exit 0
 * A command lists its own options in a struct option table ending in
 * CLI_COMMON_LONG and {0}; long-only options use codes from CLI_O_LOCAL up.
 *
 *   static const struct option LONG[] = {{"seed", required_argument, 0, 's'}, ..., CLI_COMMON_LONG, {0}};
 *   cli_parser p = cli_parser_init(CMD, argc, argv, "s:o:", LONG, usage);
 *   for (int c; (c = cli_next(&p)) != CLI_DONE;) {
 *       if (c == CLI_EXIT) return p.rc;          // --help (0) or a usage error (2), already said
 *       switch (c) { case 's': rc = cli_parse_seed(CMD, p.opt, p.val, &seed); ... }
 *   }
 *   // positional arguments: argv[p.optind .. argc-1]
 */
#include <getopt.h>

/* -q / -v before the command name (main) are the defaults of every command */
typedef struct cli_common {
    int quiet, verbose;
} cli_common;
extern cli_common cli_global;

enum {
    /* shared long-only option codes (short options use their letter) */
    CLI_O_STEPS = 0x100, CLI_O_CFG, CLI_O_ETA, CLI_O_SAMPLER,                          /* sampling */
    CLI_O_REFINER, CLI_O_REFINE_MODE, CLI_O_REFINE_STEPS, CLI_O_REFINE_TEMPERATURE, CLI_O_REFINE_KEEP_MEANING,
    CLI_O_NO_REFINE_KEEP_MEANING, CLI_O_REFINE_WINDOW,
    CLI_O_LOCAL = 0x200,   /* a command's own long-only options start here */
};
#define CLI_COMMON_SHORT "t:qvh"
#define CLI_COMMON_LONG                                                                                           \
    {"threads", required_argument, NULL, 't'}, {"quiet", no_argument, NULL, 'q'},                               \
        {"verbose", no_argument, NULL, 'v'}, {"help", no_argument, NULL, 'h'}
#define CLI_COMMON_HELP                                                                                     \
    "  -t, --threads N    worker threads, >= 1 (default: $DA_THREADS, else all cores)\n"                        \
    "  -q, --quiet        print nothing but errors\n"                                                         \
    "  -v, --verbose      print the resolved options and timing\n"                                           \
    "  -h, --help         show this help and exit\n"
/* --steps, --cfg (alias --cfg-scale), --eta, --sampler (alias --sampling-method):
 * the stable-diffusion.cpp spellings are aliases of the same options */
#define CLI_SAMPLE_LONG                                                                                          \
    {"steps", required_argument, NULL, CLI_O_STEPS}, {"cfg", required_argument, NULL, CLI_O_CFG},               \
        {"cfg-scale", required_argument, NULL, CLI_O_CFG}, {"eta", required_argument, NULL, CLI_O_ETA},        \
        {"sampler", required_argument, NULL, CLI_O_SAMPLER},                                                     \
        {"sampling-method", required_argument, NULL, CLI_O_SAMPLER}
#define CLI_LOOP_LONG                                                                                             \
    {"refiner", required_argument, NULL, CLI_O_REFINER},                                                         \
        {"refine-mode", required_argument, NULL, CLI_O_REFINE_MODE},                                             \
        {"refine-steps", required_argument, NULL, CLI_O_REFINE_STEPS},                                           \
        {"refine-temperature", required_argument, NULL, CLI_O_REFINE_TEMPERATURE},                               \
        {"refine-keep-meaning", no_argument, NULL, CLI_O_REFINE_KEEP_MEANING},                                   \
        {"no-refine-keep-meaning", no_argument, NULL, CLI_O_NO_REFINE_KEEP_MEANING},                             \
        {"refine-window", required_argument, NULL, CLI_O_REFINE_WINDOW}

typedef struct cli_parser {
    const char *cmd;              /* the message prefix: "dalign CMD: ..." */
    int argc;
    char **argv;
    char shortopts[64];           /* ":" + the command's + CLI_COMMON_SHORT */
    const struct option *longopts;
    void (*usage)(FILE *f);
    const char *val;              /* the current option's value (NULL for a flag) */
    char opt[64];                 /* the current option as typed: "--steps", "-s" (for messages) */
    int optind;                   /* after CLI_DONE: the first positional argument */
    int rc;                       /* after CLI_EXIT: the exit code */
    cli_common common;            /* cli_global, then this command's -q / -v */
} cli_parser;
#define CLI_DONE (-1)
#define CLI_EXIT (-2)
cli_parser cli_parser_init(const char *cmd, int argc, char **argv, const char *shortopts,
                           const struct option *longopts, void (*usage)(FILE *f));
/* The next option's code (its letter or CLI_O_*), with p->opt and p->val
 * set; the common options are handled here and never returned. CLI_DONE
 * when the options are over (positional arguments from p->optind),
 * CLI_EXIT after --help or a usage error that it has reported (p->rc). */
int cli_next(cli_parser *p);
/* "dalign CMD: unknown option 'X' (see dalign CMD --help)" for an option
 * code the command's switch does not handle: 2 */
int cli_unhandled(const cli_parser *p);
/* A --threads value (>= 1, at most DA_CLI_MAX_THREADS): sets the threads;
 * 0 or the usage error's exit code. */
#define DA_CLI_MAX_THREADS 4096
int cli_set_threads(const char *cmd, const char *opt, const char *val);
/* The sampling options (CLI_SAMPLE_LONG) and the PromptLoop options
 * (CLI_LOOP_LONG): 0 when it took option c, CLI_NOT_MINE when c is another
 * option, else the exit code of a usage error. */
int cli_sample_opt(const cli_parser *p, int c, da_sample_opts *o);
int cli_loop_opt(const cli_parser *p, int c, cli_loop_args *l);

#endif
