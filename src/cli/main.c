/* The `dalign` command: dispatches to one subcommand per file in src/cli/. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "dalign.h"

static const cli_command commands[] = {
    {"inspect", "list the tensors of a safetensors file", cmd_inspect},
    {"toy", "train and sample a tiny 2-D diffusion model (core demo)", cmd_toy},
    {"sample", "generate images from a text prompt (PNG)", cmd_sample},
    {"train", "pretrain clip, vae or unet, or train the preference model (reward)", cmd_train},
    {"reward", "score images with a reward (faithful, jpeg, colorful, clip, pref, ...)", cmd_reward},
    {"eval-base", "faithfulness of the base model on held-in/held-out prompts, VAE PSNR", cmd_eval_base},
    {"pairs", "sample preference pairs from the model and label them with the rater", cmd_pairs},
    {"eval", "evaluate a model: every reward, faithfulness, diversity; HTML report", cmd_eval},
    {"compare", "side-by-side table of two metrics.json files with deltas", cmd_compare},
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign [--threads N] COMMAND [ARGS...]\n"
            "       dalign --help | --version\n"
            "\n"
            "dalign: diffusion-model alignment in pure C.\n"
            "\n"
            "Commands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "Options:\n"
            "  --threads N  worker threads (default: $DA_THREADS, else all cores)\n"
            "  -h, --help   show this help and exit\n"
            "  --version    show the version and exit\n"
            "\n"
            "Run 'dalign COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    da_threads_init();
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("dalign %s (gemm: %s)\n", DA_VERSION, da_gemm_backend());
            return 0;
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            int n;
            if (cli_parse_int(argv[++i], &n) != 0) {
                fprintf(stderr, "dalign: --threads needs an integer, got '%s'\n", argv[i]);
                return 2;
            }
            da_set_threads(n);
        } else {
            fprintf(stderr, "dalign: unknown option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
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
