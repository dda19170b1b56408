/* The `dalign` command: dispatches to one subcommand per file in src/cli/. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "dalign.h"

static const cli_command commands[] = {
    {"inspect", "list the tensors of a safetensors file", cmd_inspect},
    {"toy", "train and sample a tiny 2-D diffusion model (core demo)", cmd_toy},
    {"sample", "generate images from a text prompt (PNG)", cmd_sample},
    {"train", "pretrain clip, vae, unet or the preference model (reward); fine-tune a UNet on pairs (dpo, sft, rpo, kto); the PromptLoop refiner (refiner, promptloop); RL on the UNet (ddpo, grpo, raft)", cmd_train},
    {"reward", "score images with a reward (faithful, jpeg, colorful, clip, pref, outline, ...)", cmd_reward},
    {"eval-base", "faithfulness of the base model on held-in/held-out prompts, VAE PSNR", cmd_eval_base},
    {"pairs", "sample preference pairs from the model and label them with the rater", cmd_pairs},
    {"eval", "evaluate a model: every reward, faithfulness, diversity; HTML report", cmd_eval},
    {"compare", "side-by-side table of two metrics.json files with deltas", cmd_compare},
    {"winrate", "win-rate of a model against the base on the same prompts and seeds", cmd_winrate},
    {"table", "Markdown table of chosen metrics (mean [95% interval]) across runs", cmd_table},
    {"plot", "training curves from JSONL metric logs as an SVG chart", cmd_plot},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign [-t N] [-q|-v] [--gemm BACKEND] COMMAND [ARGS...]\n"
            "       dalign --help | --version\n"
            "\n"
            "dalign: diffusion-model alignment in pure C.\n"
            "\n"
            "Commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "Options:\n"
            "  -t, --threads N   worker threads, >= 1 (default: $DA_THREADS, else all cores)\n"
            "  -q, --quiet       print nothing but errors (every command)\n"
            "  -v, --verbose     print the resolved options and timing (every command)\n"
            "  --gemm BACKEND    matrix products: portable (the same bits on every\n"
            "                    machine, x86-64 and aarch64) or openblas (when\n"
            "                    built with it; equal within rounding, faster on\n"
            "                    some Intel cores); default: $DA_GEMM, else portable\n"
            "  -h, --help        show this help and exit\n"
            "  --version         show the version, the GEMM backend and tile and the\n"
            "                    vector kernels in use, and exit\n"
            "\n"
            "Threads never change the bits of a result. Idle worker threads spin\n"
            "briefly, then sleep (GOMP_SPINCOUNT=1000) unless OMP_WAIT_POLICY or\n"
            "GOMP_SPINCOUNT is set.\n"
            "\n"
            "Every command also takes -t, -q and -v after its name, and both --opt value\n"
            "and --opt=value. Run 'dalign COMMAND --help' for a command's options.\n");
}

/* Idle OpenMP threads sleep unless the user chose otherwise. libgomp's
 * default spins an idle thread for 300000 rounds: with the other core of a
 * 2-core machine busy, 16 images (50 steps) took 27.7 s instead of 14.8 s.
 * OMP_WAIT_POLICY=passive (sleep at once) takes 12.7 s there but costs 50%
 * on an idle machine (8.9 s instead of 5.9 s: every parallel region wakes
 * its threads with a futex). GOMP_SPINCOUNT=1000, the count libgomp itself
 * uses when threads outnumber cores, spins briefly and then
 * sleeps: 14.8 s busy, 6.1-7.5 s idle. libgomp reads these
 * variables once, in its own constructor, before main runs (a setenv in main,
 * in a constructor or even in .preinit_array is too late: glibc resets
 * environ between the two), so when neither is set the binary sets
 * GOMP_SPINCOUNT and re-executes itself. The path comes from readlink, not
 * execv of /proc/self/exe: under qemu-user that link is qemu itself, while
 * its readlink answers with the emulated program. When exec fails (no /proc,
 * an emulated binary with no binfmt handler) dalign just runs as it is. */
#ifdef _OPENMP   /* without OpenMP there are no idle threads to tune */
#define REEXEC_MARK "DALIGN_SPINCOUNT_REEXEC"
static void default_wait_policy(char **argv)
{
    if (getenv(REEXEC_MARK)) {   /* we are the re-executed process */
        unsetenv(REEXEC_MARK);
        return;
    }
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;   /* the user's choice */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
    self[n] = '\0';
    if (setenv("GOMP_SPINCOUNT", "1000", 1) || setenv(REEXEC_MARK, "1", 1)) return;
    fflush(NULL);
    execv(self, argv);
    unsetenv(REEXEC_MARK);   /* exec failed: go on as we are */
}
#endif

/* DA_THREADS, when set, must be a thread count as --threads is: a value
 * below 1 is refused, not read as "all cores" */
static int check_env_threads(void)
{
    const char *env = getenv("DA_THREADS");
    int n;
    if (!env || !*env) return 0;
    if (cli_parse_int(env, &n) || n < 1 || n > DA_CLI_MAX_THREADS) {
        fprintf(stderr, "dalign: DA_THREADS needs an integer in [1, %d], got '%s'\n", DA_CLI_MAX_THREADS, env);
        return 2;
    }
    return 0;
}

enum { OPT_GEMM = CLI_O_LOCAL, OPT_VERSION };
static const struct option LONG[] = {
    {"gemm", required_argument, NULL, OPT_GEMM}, {"version", no_argument, NULL, OPT_VERSION}, CLI_COMMON_LONG, {0},
};

int main(int argc, char **argv)
{
#ifdef _OPENMP
    default_wait_policy(argv);
#endif
    if (check_env_threads()) return 2;
    da_threads_init();
    /* "+": stop at the command name; what follows is the command's */
    cli_parser p = cli_parser_init("", argc, argv, "+", LONG, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        if (c == OPT_VERSION) {
            printf("dalign %s (gemm: %s, portable tile %s; vector kernels: %s)\n", da_version(), da_gemm_backend(),
                   da_gemm_tile(), da_isa());
            return 0;
        }
        if (c == OPT_GEMM && da_gemm_set_backend(p.val) != DA_OK) {
            fprintf(stderr, "dalign: --gemm: %s\n", da_last_error());
            return 2;
        }
    }
    cli_global = p.common;
    int i = p.optind;
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (int c = 0; c < N_COMMANDS; c++)
        if (!strcmp(argv[i], commands[c].name)) return commands[c].run(argc - i, argv + i);
    fprintf(stderr, "dalign: unknown command '%s'\n\n", argv[i]);
    usage(stderr);
    return 2;
}
