/* dalign plot --y KEY[,KEY...] -o OUT.svg A.jsonl [B.jsonl ...]: training
 * curves from the trainers' JSONL metric logs as one self-contained SVG
 * (src/eval/svg_plot.c draws it; this file reads the logs). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/fileio.h"
#include "core/json.h"
#include "dalign.h"
#include "eval/svg_plot.h"

#define MAX_FILES 32
#define MAX_Y 64   /* panels: every numeric key of a trainer's log fits */
#define MAX_LOG_BYTES (1u << 30)   /* a metrics log is ~150 bytes a step */
#define PATH_CAP 4096
#define LABEL_CAP 256

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: dalign plot [--y KEY[,KEY...]] -o OUT.svg [OPTIONS] A.jsonl [B.jsonl ...]\n"
            "\n"
            "Line charts of the trainers' JSONL metric logs (one JSON object a line) as one\n"
            "self-contained SVG: a panel per key (small multiples, stacked, sharing the x\n"
            "axis), a coloured line per file with a legend, round tick values. Without --y,\n"
            "every key that holds a number in some line is plotted (at most 64), so any\n"
            "trainer's health metrics can be looked at. Nulls and lines without the key are\n"
            "skipped.\n"
            "\n"
            "Options:\n"
            "  --y, --keys KEY,...  the metrics to plot, one panel each (e.g. loss,acc,margin;\n"
            "                    default: every numeric key but the x key)\n"
            "  -o, --out FILE    the SVG to write (written whole or not at all; --output too)\n"
            "  --x KEY           the x axis (default step)\n"
            "  --smooth N        moving average over the last N points (default 1: none)\n"
            "  --title T         a title above the legend\n"
            "  --labels L1,...   the legend, one per file (default: each file's name\n"
            "                    without .metrics.jsonl or .jsonl)\n"
            CLI_COMMON_HELP
            "\n"
            "Exit status: 0 ok, 1 a file is missing or not JSONL, or the SVG cannot be\n"
            "written, 2 usage error.\n");
}

typedef struct plot_args {
    const char *file[MAX_FILES], *label[MAX_FILES], *y[MAX_Y];
    int n_files, n_labels, n_y;
    const char *x, *out, *title;
    int smooth;
} plot_args;

/* One log as columns: col[0] = x, col[1 + k] = y key k, each (n); NAN
 * where a line lacks the key or has null. */
typedef struct run_log {
    int n, cap, width;   /* rows, allocated rows, 1 + number of y keys */
    double *rows;        /* (cap, width) while reading */
    double *col;         /* (width, n) after */
} run_log;

/* Split val in place at commas into out[*n]: 0, or 2 after a message for
 * an empty item or more than cap items. */
static int parse_list(const char *opt, char *val, const char **out, int cap, int *n)
{
    *n = 0;
    for (char *item = val;;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (!*item) {
            fprintf(stderr, "dalign plot: %s needs a comma-separated list without empty items\n", opt);
            return 2;
        }
        if (*n == cap) {
            fprintf(stderr, "dalign plot: %s takes at most %d items\n", opt, cap);
            return 2;
        }
        out[(*n)++] = item;
        if (!comma) return 0;
        item = comma + 1;
    }
}

enum { OPT_Y = CLI_O_LOCAL, OPT_X, OPT_SMOOTH, OPT_TITLE, OPT_LABELS };
static const struct option LONG_OPTS[] = {
    {"y", required_argument, NULL, OPT_Y},          {"keys", required_argument, NULL, OPT_Y},
    {"x", required_argument, NULL, OPT_X},          {"smooth", required_argument, NULL, OPT_SMOOTH},
    {"title", required_argument, NULL, OPT_TITLE},  {"labels", required_argument, NULL, OPT_LABELS},
    {"out", required_argument, NULL, 'o'},          {"output", required_argument, NULL, 'o'},
    CLI_COMMON_LONG,                                {0, 0, 0, 0},
};

static int option(plot_args *a, const cli_parser *p, int c)
{
    char *val = (char *)p->val;   /* argv's own string: parse_list splits it in place */
    switch (c) {
    case OPT_Y: return parse_list(p->opt, val, a->y, MAX_Y, &a->n_y);
    case OPT_LABELS: return parse_list(p->opt, val, a->label, MAX_FILES, &a->n_labels);
    case OPT_SMOOTH: return cli_parse_int_in("plot", p->opt, val, 1, 1000000, &a->smooth);
    case 'o': a->out = val; return 0;
    case OPT_X: a->x = val; return 0;
    case OPT_TITLE: a->title = val; return 0;
    default: return cli_unhandled(p);
    }
}

/* 0 with a filled args, -1 after --help, else 2 */
static int parse_args(int argc, char **argv, plot_args *a)
{
    cli_parser p = cli_parser_init("plot", argc, argv, "o:", LONG_OPTS, usage);
    for (int c; (c = cli_next(&p)) != CLI_DONE;) {
        if (c == CLI_EXIT) return p.rc ? p.rc : -1;
        int rc = option(a, &p, c);
        if (rc) return rc;
    }
    for (int i = p.optind; i < argc; i++) {
        if (a->n_files == MAX_FILES) {
            fprintf(stderr, "dalign plot: at most %d files\n", MAX_FILES);
            return 2;
        }
        a->file[a->n_files++] = argv[i];
    }
    const char *missing = !a->out ? "-o OUT.svg" : !a->n_files ? "a JSONL file" : NULL;
    if (missing) {
        fprintf(stderr, "dalign plot: %s is required\n\n", missing);
        usage(stderr);
        return 2;
    }
    if (a->n_labels && a->n_labels != a->n_files) {
        fprintf(stderr, "dalign plot: %d labels for %d files\n", a->n_labels, a->n_files);
        return 2;
    }
    return 0;
}

/* ---- reading the logs ---------------------------------------------------- */

static void log_free(run_log *log)
{
    free(log->rows);
    free(log->col);
    memset(log, 0, sizeof *log);
}

static double *new_row(run_log *log)
{
    if (log->n == log->cap) {
        int cap = log->cap ? 2 * log->cap : 256;
        double *p = realloc(log->rows, (size_t)cap * log->width * sizeof *p);
        if (!p) return NULL;
        log->rows = p;
        log->cap = cap;
    }
    return log->rows + (size_t)log->n++ * log->width;
}

/* member key of object o as a number: NAN when missing or null */
static da_status member_value(const da_json_value *o, const char *key, const char *path, int line, double *out)
{
    *out = NAN;
    for (int i = 0; i < o->n; i++) {
        const da_json_value *v = &o->items[i];
        if (strcmp(v->key, key)) continue;
        if (v->type == DA_JSON_NUMBER) *out = strtod(v->str, NULL);   /* out of range: inf, skipped later */
        else if (v->type != DA_JSON_NULL) return da_fail(DA_ERR_FORMAT, "%s:%d: '%s' is not a number", path, line, key);
    }
    return DA_OK;
}

/* one line of a log into a new row; blank lines are skipped, and so is an
 * unfinished last line (a trainer still writing) */
static da_status read_line(const plot_args *a, const char *path, int line, const char *text, size_t len,
                           int is_last, run_log *log)
{
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) i++;
    if (i == len) return DA_OK;
    da_json_value root;
    char err[256];
    if (da_json_parse(text, len, &root, err, sizeof err)) {
        if (!is_last) return da_fail(DA_ERR_FORMAT, "%s:%d: %s", path, line, err);
        fprintf(stderr, "dalign plot: %s:%d: skipping an unfinished last line\n", path, line);
        return DA_OK;
    }
    da_status s = root.type == DA_JSON_OBJECT ? DA_OK : da_fail(DA_ERR_FORMAT, "%s:%d: not a JSON object", path, line);
    double *row = s ? NULL : new_row(log);
    if (!s && !row) s = da_fail(DA_ERR_NOMEM, "out of memory reading %s", path);
    if (!s) s = member_value(&root, a->x, path, line, &row[0]);
    for (int k = 0; !s && k < a->n_y; k++) s = member_value(&root, a->y[k], path, line, &row[1 + k]);
    da_json_free(&root);
    return s;
}

/* rows (n, width) -> col (width, n) */
static da_status to_columns(run_log *log)
{
    log->col = malloc((size_t)log->width * log->n * sizeof *log->col + 1);
    if (!log->col) return da_fail(DA_ERR_NOMEM, "out of memory");
    for (int i = 0; i < log->n; i++)
        for (int c = 0; c < log->width; c++) log->col[(size_t)c * log->n + i] = log->rows[(size_t)i * log->width + c];
    return DA_OK;
}

static da_status read_log(const plot_args *a, const char *path, run_log *log)
{
    memset(log, 0, sizeof *log);
    log->width = 1 + a->n_y;
    char *text = NULL;
    size_t len = 0;
    da_status s = da_read_file(path, MAX_LOG_BYTES, &text, &len);
    int line = 0;
    for (char *p = text; !s && p < text + len; line++) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        s = read_line(a, path, line + 1, p, n, !nl, log);
        p += n + 1;
    }
    free(text);
    if (!s) s = to_columns(log);
    return s;
}

/* Without --y: every key that holds a number on some line of some file,
 * in the order first seen, but the x key. The names are strdup'd into
 * a->y (freed by free_keys). 0, or 1 after a message. */
static int scan_keys(plot_args *a)
{
    int dropped = 0;
    for (int l = 0; l < a->n_files; l++) {
        char *text = NULL;
        size_t len = 0;
        if (da_read_file(a->file[l], MAX_LOG_BYTES, &text, &len) != DA_OK) {
            fprintf(stderr, "dalign plot: %s\n", da_last_error());
            return 1;
        }
        for (char *p = text; p < text + len;) {
            char *nl = memchr(p, '\n', (size_t)(text + len - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
            da_json_value root;
            char err[256];
            if (da_json_parse(p, n, &root, err, sizeof err) == 0) {   /* bad lines are named by read_log */
                for (int i = 0; root.type == DA_JSON_OBJECT && i < root.n; i++) {
                    const da_json_value *v = &root.items[i];
                    int seen = v->type != DA_JSON_NUMBER || !strcmp(v->key, a->x);
                    for (int k = 0; !seen && k < a->n_y; k++) seen = !strcmp(a->y[k], v->key);
                    if (seen) continue;
                    if (a->n_y == MAX_Y) {
                        dropped++;
                        continue;
                    }
                    char *name = strdup(v->key);
                    if (name) a->y[a->n_y++] = name;
                }
                da_json_free(&root);
            }
            p += n + 1;
        }
        free(text);
    }
    if (dropped)
        fprintf(stderr, "dalign plot: more than %d numeric keys: plotting the first %d (choose with --y)\n", MAX_Y,
                MAX_Y);
    if (!a->n_y) {
        fprintf(stderr, "dalign plot: no numeric key besides '%s' in the logs\n", a->x);
        return 1;
    }
    return 0;
}

/* ---- the chart ----------------------------------------------------------- */

/* "runs/unet-dpo.metrics.jsonl" -> "unet-dpo" */
static void default_label(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    snprintf(out, cap, "%s", slash ? slash + 1 : path);
    size_t n = strlen(out);
    const char *suffixes[] = {".metrics.jsonl", ".jsonl"};
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(suffixes[i]);
        if (n > l && !strcmp(out + n - l, suffixes[i])) {
            out[n - l] = '\0';
            return;
        }
    }
}

/* a y key no file has a point of is most likely a typo: say so */
static void warn_empty_panels(const plot_args *a, const run_log *logs)
{
    for (int k = 0; k < a->n_y; k++) {
        int points = 0;
        for (int l = 0; l < a->n_files; l++)
            for (int i = 0; i < logs[l].n; i++) {
                const double *c = logs[l].col;
                points += isfinite(c[i]) && isfinite(c[(size_t)(1 + k) * logs[l].n + i]);
            }
        if (!points) fprintf(stderr, "dalign plot: no line has both '%s' and '%s'\n", a->x, a->y[k]);
    }
}

static void write_svg(FILE *f, const void *chart)
{
    da_svg_plot(f, chart);
}

/* each y column replaced by its moving average over a->smooth points */
static da_status smooth_logs(const plot_args *a, run_log *logs)
{
    for (int l = 0; l < a->n_files; l++) {
        size_t n = (size_t)logs[l].n;
        double *tmp = malloc(n * sizeof *tmp + 1);
        if (!tmp) return da_fail(DA_ERR_NOMEM, "out of memory smoothing %s", a->file[l]);
        for (int k = 0; k < a->n_y; k++) {
            double *y = logs[l].col + (1 + k) * n;
            da_svg_smooth(y, (int)n, a->smooth, tmp);
            memcpy(y, tmp, n * sizeof *tmp);
        }
        free(tmp);
    }
    return DA_OK;
}

static da_status plot(const plot_args *a, const run_log *logs)
{
    static char labels[MAX_FILES][LABEL_CAP];
    const char *label[MAX_FILES];
    da_svg_line lines[MAX_Y * MAX_FILES];   /* (n_y, n_files) */
    for (int l = 0; l < a->n_files; l++) {
        label[l] = a->label[l];
        if (!a->n_labels) {
            default_label(a->file[l], labels[l], LABEL_CAP);
            label[l] = labels[l];
        }
        const double *col = logs[l].col;
        size_t n = (size_t)logs[l].n;
        for (int k = 0; k < a->n_y; k++) lines[k * a->n_files + l] = (da_svg_line){(int)n, col, col + (1 + k) * n};
    }
    da_svg_chart chart = {a->title, a->x, a->n_y, a->n_files, a->y, label, lines};
    return da_write_path_with(a->out, write_svg, &chart);
}

int cmd_plot(int argc, char **argv)
{
    plot_args a;
    memset(&a, 0, sizeof a);
    a.x = "step";
    a.smooth = 1;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    int own_keys = a.n_y == 0;   /* every numeric key: names strdup'd by scan_keys */
    if (own_keys && scan_keys(&a)) {
        for (int k = 0; k < a.n_y; k++) free((char *)a.y[k]);
        return 1;
    }
    run_log logs[MAX_FILES];
    memset(logs, 0, sizeof logs);
    da_status s = DA_OK;
    for (int l = 0; !s && l < a.n_files; l++) s = read_log(&a, a.file[l], &logs[l]);
    if (!s) warn_empty_panels(&a, logs);
    if (!s && a.smooth > 1) s = smooth_logs(&a, logs);
    if (!s) s = plot(&a, logs);
    if (s) fprintf(stderr, "dalign plot: %s\n", da_last_error());
    for (int l = 0; l < a.n_files; l++) log_free(&logs[l]);
    for (int k = 0; own_keys && k < a.n_y; k++) free((char *)a.y[k]);
    return s ? 1 : 0;
}
