/* dalign table A/metrics.json B/metrics.json ...: one Markdown table of
 * chosen metrics across runs, each cell "mean [lo, hi]", for the results
 * tables of the docs (the flattening is compare.h's). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "dalign.h"
#include "eval/compare.h"

#define MAX_COLUMNS 64
#define MAX_KEYS 256
#define PATH_CAP 4096
#define CELL_CAP 96

/* the headline metrics of dalign eval's metrics.json */
static const char *const DEFAULT_KEYS[] = {
    "rater", "rewards.pref", "faithfulness", "faithfulness.clauses.colour", "faithfulness.clauses.shape",
    "faithfulness.clauses.size", "faithfulness.clauses.relation", "faithfulness.clauses.background",
    "faithfulness.exact", "diversity", "rewards.clip"};
#define N_DEFAULT_KEYS (int)(sizeof DEFAULT_KEYS / sizeof DEFAULT_KEYS[0])

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign table [--keys K1,K2,...] [--labels L1,L2,...] A/metrics.json B/metrics.json ...\n"
            "\n"
            "A Markdown table with one row per key and one column per file, each cell\n"
            "\"mean [lo, hi]\" from KEY.mean and KEY.ci95 of the file (a key without an\n"
            "interval: its plain value; a key the file lacks: \"-\"). Keys are the dotted\n"
            "names of 'dalign compare' (rewards.pref, faithfulness.clauses.colour, ...).\n"
            "A directory stands for its metrics.json.\n"
            "\n"
            "Options:\n"
            "  --keys K1,...     the rows (default: rater, rewards.pref, faithfulness,\n"
            "                    faithfulness.clauses.colour, .shape, .size, .relation,\n"
            "                    .background, faithfulness.exact, diversity, rewards.clip)\n"
            "  --labels L1,...   the column heads, one per file (default: the directory\n"
            "                    each file is in)\n"
            CLI_COMMON_HELP
            "\n"
            "Exit status: 0 ok, 1 a file is missing or not a valid JSON object, 2 usage error.\n");
}

typedef struct table_args {
    const char *file[MAX_COLUMNS];
    const char *label[MAX_COLUMNS];
    const char *key[MAX_KEYS];
    int n_files, n_labels, n_keys;
} table_args;

/* Split val in place at commas into out[*n]: 0, or 2 after a message for
 * an empty item or more than cap items. */
static int parse_list(const char *opt, char *val, const char **out, int cap, int *n)
{
    *n = 0;
    for (char *item = val;;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (!*item) {
            fprintf(stderr, "dalign table: %s needs a comma-separated list without empty items\n", opt);
            return 2;
        }
        if (*n == cap) {
            fprintf(stderr, "dalign table: %s takes at most %d items\n", opt, cap);
            return 2;
        }
        out[(*n)++] = item;
        if (!comma) return 0;
        item = comma + 1;
    }
}

enum { OPT_KEYS = CLI_O_LOCAL, OPT_LABELS };
static const struct option LONG_OPTS[] = {
    {"keys", required_argument, NULL, OPT_KEYS}, {"labels", required_argument, NULL, OPT_LABELS}, CLI_COMMON_LONG,
    {0, 0, 0, 0},
};

/* 0 with a filled args, -1 after --help, else 2 */
static int parse_args(int argc, char **argv, table_args *a)
{
    cli_parser p = cli_parser_init("table", argc, argv, "", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc ? p.rc : -1;
        /* parse_list splits in place: the value is argv's own string */
        char *val = (char *)p.val;
        int rc = c == OPT_KEYS     ? parse_list(p.opt, val, a->key, MAX_KEYS, &a->n_keys)
                 : c == OPT_LABELS ? parse_list(p.opt, val, a->label, MAX_COLUMNS, &a->n_labels)
                                   : cli_unhandled(&p);
        if (rc) return rc;
    }
    for (int i = p.optind; i < argc; i++) {
        if (a->n_files == MAX_COLUMNS) {
            fprintf(stderr, "dalign table: at most %d files\n", MAX_COLUMNS);
            return 2;
        }
        a->file[a->n_files++] = argv[i];
    }
    if (a->n_files == 0) {
        fprintf(stderr, "dalign table: no metrics.json given\n\n");
        usage(stderr);
        return 2;
    }
    if (a->n_labels && a->n_labels != a->n_files) {
        fprintf(stderr, "dalign table: %d labels for %d files\n", a->n_labels, a->n_files);
        return 2;
    }
    return 0;
}

/* DIR/metrics.json for a directory, the path itself otherwise */
static int metrics_path(const char *file, char *out, size_t cap)
{
    struct stat sb;
    int is_dir = stat(file, &sb) == 0 && S_ISDIR(sb.st_mode);
    return snprintf(out, cap, is_dir ? "%s/metrics.json" : "%s", file) < (int)cap ? 0 : -1;
}

/* The name of the directory path is in ("runs/dpo/metrics.json" -> "dpo"),
 * or path itself when it has none. */
static void default_label(const char *path, char *out, size_t cap)
{
    const char *end = strrchr(path, '/');
    if (!end) {
        snprintf(out, cap, "%s", path);
        return;
    }
    while (end > path && end[-1] == '/') end--;   /* "a//metrics.json" */
    const char *start = end;
    while (start > path && start[-1] != '/') start--;
    if (start == end) snprintf(out, cap, "%s", path);   /* "/metrics.json" */
    else snprintf(out, cap, "%.*s", (int)(end - start), start);
}

/* s with '|' escaped, so it stays inside its cell */
static void put_cell(FILE *f, const char *s)
{
    fputs(" ", f);
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
    fputs(" |", f);
}

/* "mean [lo, hi]", a plain value, or "-"; 0 for "-" */
static int format_cell(const da_flat_metrics *m, const char *key, char *out, size_t cap)
{
    char k[DA_METRIC_KEY_MAX + 16];
    snprintf(k, sizeof k, "%s.mean", key);
    const da_flat_metric *mean = da_flat_metrics_find(m, k);
    snprintf(k, sizeof k, "%s.ci95.0", key);
    const da_flat_metric *lo = da_flat_metrics_find(m, k);
    snprintf(k, sizeof k, "%s.ci95.1", key);
    const da_flat_metric *hi = da_flat_metrics_find(m, k);
    const da_flat_metric *plain = mean ? mean : da_flat_metrics_find(m, key);
    if (mean && lo && hi) snprintf(out, cap, "%.4g [%.4g, %.4g]", mean->value, lo->value, hi->value);
    else if (plain) snprintf(out, cap, "%.4g", plain->value);
    else snprintf(out, cap, "-");
    return plain != NULL;
}

static void print_table(FILE *f, const table_args *a, const da_flat_metrics *m)
{
    char cell[CELL_CAP];
    fputs("| metric |", f);
    for (int c = 0; c < a->n_files; c++) put_cell(f, a->label[c]);
    fputs("\n|---|", f);
    for (int c = 0; c < a->n_files; c++) fputs("---|", f);
    fputs("\n", f);
    for (int r = 0; r < a->n_keys; r++) {
        fputs("|", f);
        put_cell(f, a->key[r]);
        int found = 0;
        for (int c = 0; c < a->n_files; c++) {
            found += format_cell(&m[c], a->key[r], cell, sizeof cell);
            put_cell(f, cell);
        }
        fputs("\n", f);
        if (!found) fprintf(stderr, "dalign table: no file has '%s'\n", a->key[r]);   /* a typo, most likely */
    }
}

int cmd_table(int argc, char **argv)
{
    table_args a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    if (a.n_keys == 0) {
        for (int i = 0; i < N_DEFAULT_KEYS; i++) a.key[i] = DEFAULT_KEYS[i];
        a.n_keys = N_DEFAULT_KEYS;
    }
    static char labels[MAX_COLUMNS][PATH_CAP];
    da_flat_metrics m[MAX_COLUMNS];
    int loaded = 0;
    for (; loaded < a.n_files; loaded++) {
        char path[PATH_CAP];
        if (metrics_path(a.file[loaded], path, sizeof path)) {
            fprintf(stderr, "dalign table: path too long: %s\n", a.file[loaded]);
            rc = 2;
            break;
        }
        if (da_flat_metrics_load(path, &m[loaded]) != DA_OK) {
            fprintf(stderr, "dalign table: %s\n", da_last_error());
            rc = 1;
            break;
        }
        if (a.n_labels) continue;
        default_label(path, labels[loaded], sizeof labels[loaded]);
        a.label[loaded] = labels[loaded];
    }
    if (!rc) print_table(stdout, &a, m);
    for (int c = 0; c < loaded; c++) da_flat_metrics_free(&m[c]);
    return rc;
}
