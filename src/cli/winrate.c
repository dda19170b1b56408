/* dalign winrate BASE_DIR MODEL_DIR: the share of images where the model
 * beats the base on the same prompt and seed, with a 95% interval clustered
 * by prompt (src/eval/winrate.c). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"

#define PATH_CAP 4096

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign winrate BASE_DIR MODEL_DIR [--column NAME] [--json FILE]\n"
            "\n"
            "The win-rate of a model against the base on the same prompt and seed (the\n"
            "headline form of the preference-tuning papers): the share of images where\n"
            "MODEL's value in the column is greater than BASE's (a tie counts 1/2), and the\n"
            "mean difference MODEL - BASE, each with a 95%% interval clustered by prompt\n"
            "(the win-rate's a Wilson score interval, inside [0, 1]).\n"
            "BASE_DIR and MODEL_DIR are output directories of 'dalign eval' run with the\n"
            "same prompts and seeds (or their images.tsv files); their rows must be the\n"
            "same images in the same order, else the first differing one is named.\n"
            "\n"
            "Options:\n"
            "  --column NAME   the images.tsv column to compare (default rater, the held-back\n"
            "                  judge's utility; also faithful, pref, clip, jpeg, colorful, ...)\n"
            "  --json FILE     also write the result as JSON (written whole or not at all)\n"
            CLI_COMMON_HELP
            "\n"
            "Exit status: 0 ok, 1 a file is missing or malformed or the two runs' images\n"
            "differ, 2 usage error.\n");
}

typedef struct winrate_args {
    const char *dir[2];   /* base, model */
    const char *column, *json;
} winrate_args;

enum { OPT_COLUMN = CLI_O_LOCAL, OPT_JSON };
static const struct option LONG_OPTS[] = {
    {"column", required_argument, NULL, OPT_COLUMN}, {"json", required_argument, NULL, OPT_JSON}, CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* 0 with a filled args, -1 after --help, else the exit code of a usage error */
static int parse_args(int argc, char **argv, winrate_args *a)
{
    cli_parser p = cli_parser_init("winrate", argc, argv, "", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc ? p.rc : -1;
        if (c != OPT_COLUMN && c != OPT_JSON) return cli_unhandled(&p);
        if (!p.val[0]) return cli_bad_value("winrate", p.opt, p.val, c == OPT_COLUMN ? "a column name" : "a file");
        *(c == OPT_COLUMN ? &a->column : &a->json) = p.val;
    }
    int n_dirs = argc - p.optind;
    if (n_dirs == 2) {
        a->dir[0] = argv[p.optind];
        a->dir[1] = argv[p.optind + 1];
        return 0;
    }
    if (n_dirs > 2) {
        fprintf(stderr, "dalign winrate: unexpected argument '%s'\n", argv[p.optind + 2]);
        return 2;
    }
    fprintf(stderr, "dalign winrate: expected BASE_DIR and MODEL_DIR, got %d\n\n", n_dirs);
    usage(stderr);
    return 2;
}

/* DIR/images.tsv for a directory, the path itself otherwise */
static int tsv_path(const char *dir, char *out, size_t cap)
{
    struct stat sb;
    int is_dir = stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode);
    return snprintf(out, cap, is_dir ? "%s/images.tsv" : "%s", dir) < (int)cap ? 0 : -1;
}

typedef struct json_ctx {
    const da_winrate *w;
    const winrate_args *a;
} json_ctx;

static void write_json(FILE *f, const void *ctx)
{
    const json_ctx *j = ctx;
    da_winrate_json(f, j->w, j->a->column, j->a->dir[0], j->a->dir[1]);
}

int cmd_winrate(int argc, char **argv)
{
    winrate_args a = {{NULL, NULL}, "rater", NULL};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    char path[2][PATH_CAP];
    for (int k = 0; k < 2; k++)
        if (tsv_path(a.dir[k], path[k], sizeof path[k])) {
            fprintf(stderr, "dalign winrate: path too long: %s\n", a.dir[k]);
            return 2;
        }
    da_winrate w;
    if (da_winrate_compute(path[0], path[1], a.column, &w) != DA_OK) {
        fprintf(stderr, "dalign winrate: %s\n", da_last_error());
        return 1;
    }
    printf("%s win-rate of %s against %s: %.4f [%.4f, %.4f]; mean difference %+.4g [%+.4g, %+.4g]; "
           "%d images, %d prompts\n",
           a.column, a.dir[1], a.dir[0], w.win.mean, w.win.lo, w.win.hi, w.diff.mean, w.diff.lo, w.diff.hi, w.n_images,
           w.n_prompts);
    json_ctx j = {&w, &a};
    if (a.json && da_write_path_with(a.json, write_json, &j) != DA_OK) {
        fprintf(stderr, "dalign winrate: %s\n", da_last_error());
        return 1;
    }
    return 0;
}
