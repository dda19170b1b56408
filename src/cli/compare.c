/* dalign compare A B [--html OUT]: a side-by-side table of every numeric
 * metric two metrics.json files share, with B - A, the settings and
 * provenance that differ, and optionally a page of the two runs
 * (src/eval/compare.c, compare_html.c). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "dalign.h"
#include "eval/compare.h"

#define PATH_CAP 4096

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign compare A B [--html OUT.html]   (A, B: metrics.json files or run folders)\n"
            "\n"
            "Print every numeric value present in both files side by side (nested\n"
            "objects and arrays flattened to dotted keys, e.g. held_out.faithfulness.mean,\n"
            "held_out.faithfulness.ci95.0), with the change B - A and the relative change\n"
            "(B - A) / |A| (\"-\" when A is 0), in A's order; then the values only one file\n"
            "has, and the text values that differ: settings, and the provenance that\n"
            "dalign eval and eval-base record (dalign_version, weights_sha256.FILE), so\n"
            "two runs made with other weights or another dalign say so. Booleans and\n"
            "nulls are ignored. A folder stands for its metrics.json. Works with the\n"
            "metrics.json of dalign eval and dalign eval-base, or any JSON object.\n"
            "\n"
            "Options:\n"
            "  --html OUT    also write a self-contained page: provenance, every metric\n"
            "                with both intervals and B - A, and, when A and B are folders of\n"
            "                dalign eval, the same prompts' images side by side\n"
            CLI_COMMON_HELP
            "\n"
            "Exit status: 0 ok, 1 a file is missing or not a valid JSON object, or the page\n"
            "cannot be written, 2 usage error.\n");
}

/* DIR/metrics.json for a folder (and *dir = the folder), the path itself otherwise */
static int metrics_path(const char *arg, char *out, size_t cap, const char **dir)
{
    struct stat sb;
    int is_dir = stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode);
    *dir = is_dir ? arg : NULL;
    return snprintf(out, cap, is_dir ? "%s/metrics.json" : "%s", arg) < (int)cap ? 0 : -1;
}

typedef struct html_ctx {
    const da_flat_metrics *m;
    const char *const *name, *const *dir;
} html_ctx;

static void write_html(FILE *f, const void *ctx)
{
    const html_ctx *h = ctx;
    da_compare_html(f, &h->m[0], &h->m[1], h->name[0], h->name[1], h->dir[0], h->dir[1]);
}

enum { OPT_HTML = CLI_O_LOCAL };
static const struct option LONG_OPTS[] = {{"html", required_argument, NULL, OPT_HTML}, CLI_COMMON_LONG, {0, 0, 0, 0}};

int cmd_compare(int argc, char **argv)
{
    const char *html = NULL;
    cli_parser p = cli_parser_init("compare", argc, argv, "", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc;
        if (c != OPT_HTML) return cli_unhandled(&p);
        if (!p.val[0]) return cli_bad_value("compare", p.opt, p.val, "a file to write");
        html = p.val;
    }
    if (argc - p.optind != 2) {
        fprintf(stderr, "dalign compare: expected two files, got %d\n\n", argc - p.optind);
        usage(stderr);
        return 2;
    }
    const char *name[2] = {argv[p.optind], argv[p.optind + 1]}, *dir[2];
    char path[2][PATH_CAP];
    for (int k = 0; k < 2; k++)
        if (metrics_path(name[k], path[k], sizeof path[k], &dir[k])) {
            fprintf(stderr, "dalign compare: path too long: %s\n", name[k]);
            return 2;
        }
    if (html && cli_check_writable("compare", html, html)) return 1;
    da_flat_metrics m[2];
    for (int k = 0; k < 2; k++) {
        if (da_flat_metrics_load(path[k], &m[k]) != DA_OK) {
            fprintf(stderr, "dalign compare: %s\n", da_last_error());
            if (k) da_flat_metrics_free(&m[0]);
            return 1;
        }
    }
    da_flat_metrics_compare(stdout, &m[0], &m[1], path[0], path[1], NULL);
    int rc = 0;
    html_ctx h = {m, name, dir};
    if (html && da_write_path_with(html, write_html, &h) != DA_OK) {
        fprintf(stderr, "dalign compare: %s\n", da_last_error());
        rc = 1;
    } else if (html && !p.common.quiet) {
        fprintf(stderr, "dalign compare: wrote %s\n", html);
    }
    da_flat_metrics_free(&m[0]);
    da_flat_metrics_free(&m[1]);
    return rc;
}
