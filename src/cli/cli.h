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
 * 0 or 2. */
int cli_parse_seed(const char *cmd, const char *opt, const char *val, uint64_t *out);
/* The sampling options of every command that generates images: --steps N
 * (1..DA_CLI_MAX_STEPS), --cfg W, --eta E (>= 0), --sampler ddim|ddpm|euler,
 * into o. Returns 0 when it took opt, CLI_NOT_MINE when opt is another
 * option, else the exit code of a usage error. */
#define DA_CLI_MAX_STEPS 1000   /* the noise schedule's training steps: no sampler takes more */
#define CLI_NOT_MINE (-1)
int cli_parse_sample_option(const char *cmd, const char *opt, const char *val, da_sample_opts *o);

/* The PromptLoop options of sample and eval: --refiner NAME|FILE,
 * --refine-mode loop|apriori|once, --refine-steps K, --refine-temperature T
 * (same return convention as cli_parse_sample_option). */
typedef struct cli_loop_args {
    const char *refiner;   /* NULL: no refiner */
    da_loop_opts opts;     /* da_loop_opts_default() before parsing */
} cli_loop_args;
#define CLI_LOOP_HELP                                                                                  \
    "  --refiner NAME     rewrite the prompt while sampling with a PromptLoop refiner:\n"                  \
    "                     DIR/NAME.{json,safetensors}, or FILE.safetensors (docs/promptloop.md)\n"       \
    "  --refine-mode M    loop (reads the step's predicted latent), apriori (all prompts\n"               \
    "                     written before sampling) or once (one prompt, before step 0);\n"               \
    "                     default loop\n"                                                                 \
    "  --refine-steps K   refinements along the trajectory, after steps floor(k*steps/K)\n"             \
    "                     (default 4; once: 1)\n"                                                         \
    "  --refine-temperature T  the refiner's sampling temperature (default 0: greedy)\n"
int cli_parse_loop_option(const char *cmd, const char *opt, const char *val, cli_loop_args *l);
/* refine options without --refiner, or more refinements than steps: 2 after a message; else 0 */
int cli_check_loop_args(const char *cmd, const cli_loop_args *l, const da_sample_opts *o);

/* An output written only after the sampling is checked before it: create
 * and remove the temp file its atomic write will go through (PATH.tmp.PID,
 * beside PATH). 0, or 1 after "dalign CMD: cannot write -o SHOWN: why". */
int cli_check_writable(const char *cmd, const char *shown, const char *path);

/* One option and its value: 0, CLI_NOT_MINE for an option it does not
 * know, or the exit code of a usage error. */
typedef int (*cli_option_fn)(void *args, const char *opt, const char *val);

/* The argument loop of commands (eval, eval-base, pairs) whose options all
 * take one value but -h/--help (usage on stdout) and -q/--quiet (*progress
 * = 0): every other option goes to option(args, opt, value), and one it
 * does not know is a usage error naming it. Returns -1 to go on, else the
 * exit code (0 after --help). */
int cli_parse_options(const char *cmd, int argc, char **argv, void (*usage)(FILE *f), cli_option_fn option,
                      void *args, int *progress);

#endif
