/* The page of `dalign compare A B --html OUT` (compare.h): two runs side by
 * side, self-contained (images inline). Its sections: where the runs come
 * from (differences marked), the metrics with their intervals and B - A,
 * the other shared numbers, and the prompts both runs have, A's images
 * beside B's, biggest loss first. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image.h>

#include "core/fileio.h"
#include "dalign/eval.h"
#include "eval/compare.h"
#include "eval/html_util.h"

#define PATH_CAP 4096
#define MAX_TSV_BYTES (256u << 20)
#define MAX_ATLAS_BYTES (512u << 20)

static void esc(FILE *f, const char *s) { da_html_esc(f, s); }

static void head(FILE *f, const char *name_a, const char *name_b)
{
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>dalign compare: ");
    esc(f, name_a);
    fputs(" vs ", f);
    esc(f, name_b);
    fputs("</title>\n<style>\n"
          "body { font-family: sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }\n"
          "table { border-collapse: collapse; margin: 0.5em 0; }\n"
          "th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }\n"
          "th:first-child, td:first-child { text-align: left; }\n"
          "td.text { text-align: left; font-family: monospace; font-size: 85%; word-break: break-all; }\n"
          ".up { color: #1e7b34; } .down { color: #b0281a; } .same { color: #666; }\n"
          ".differ { background: #ffe9e6; }\n"
          ".note, .small { color: #666; font-size: 90%; }\n"
          ".pair { border-top: 1px solid #ddd; padding: 0.6em 0; }\n"
          ".pair h3 { font-size: 100%; font-weight: normal; margin: 0 0 0.4em 0; }\n"
          ".runs { display: flex; gap: 2.5em; flex-wrap: wrap; }\n"
          ".run b { display: block; margin-bottom: 0.2em; }\n"
          ".run img { width: 96px; height: 96px; image-rendering: pixelated; border: 1px solid #ccc; "
          "margin-right: 4px; }\n"
          "</style>\n</head>\n<body>\n<h1>dalign compare</h1>\n",
          f);
    fputs("<p>A: <code>", f);
    esc(f, name_a);
    fputs("</code><br>B: <code>", f);
    esc(f, name_b);
    fputs("</code></p>\n", f);
}

static int is_provenance(const char *key)
{
    return !strcmp(key, "dalign_version") || !strncmp(key, "weights_sha256.", 15);
}

/* a text cell: a SHA-256 shortened to 16 digits (the whole in its tooltip) */
static void text_cell(FILE *f, const char *key, const char *v)
{
    if (!strncmp(key, "weights_sha256.", 15) && strlen(v) == 64) {
        fputs("<td class=\"text\" title=\"", f);
        esc(f, v);
        fprintf(f, "\">%.16s&hellip;</td>", v);
        return;
    }
    fputs("<td class=\"text\">", f);
    esc(f, v);
    fputs("</td>", f);
}

/* one row of the text table; only differing rows (want_differ) or only equal ones */
static int text_rows(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, int want_differ)
{
    int rows = 0;
    for (int k = 0; k < 2; k++) {
        const da_flat_metrics *x = k ? b : a, *y = k ? a : b;
        for (int i = 0; i < x->n_text; i++) {
            const da_flat_text *t = &x->text[i], *u = da_flat_metrics_find_text(y, t->key);
            if (k && u) continue;   /* shown with A's */
            const char *va = k ? (u ? u->value : "-") : t->value, *vb = k ? t->value : (u ? u->value : "-");
            int differ = strcmp(va, vb) != 0;
            if (differ != want_differ) continue;
            fprintf(f, "<tr%s><td>", differ && is_provenance(t->key) ? " class=\"differ\"" : "");
            esc(f, t->key);
            fputs("</td>", f);
            text_cell(f, t->key, va);
            text_cell(f, t->key, vb);
            fputs("</tr>\n", f);
            rows++;
        }
    }
    return rows;
}

/* the text values that differ (provenance in red), then the rest folded */
static void provenance(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b)
{
    int differ = 0;
    for (int i = 0; i < a->n_text; i++) {
        const da_flat_text *y = da_flat_metrics_find_text(b, a->text[i].key);
        differ += is_provenance(a->text[i].key) && (!y || strcmp(y->value, a->text[i].value));
    }
    fprintf(f, "<h2>Settings and provenance</h2>\n<p class=\"note\">%s</p>\n",
            differ ? "<b>The runs differ in dalign version or weights</b> (rows in red): a difference in the "
                     "metrics below may come from those, not only from what was trained."
                   : "Same dalign version and the same weights files (SHA-256) in both runs, as far as both "
                     "files record them.");
    fputs("<table>\n<tr><th>differs</th><th style=\"text-align:left\">A</th><th style=\"text-align:left\">B</th>"
          "</tr>\n",
          f);
    if (!text_rows(f, a, b, 1)) fputs("<tr><td colspan=\"3\">no setting differs</td></tr>\n", f);
    fputs("</table>\n<details><summary>the settings both runs share</summary>\n<table>\n", f);
    text_rows(f, a, b, 0);
    fputs("</table>\n</details>\n", f);
}

static const char *trend(double d) { return d > 0.0 ? "up" : d < 0.0 ? "down" : "same"; }

/* "KEY.mean" with KEY.ci95.0 / .1 in the file: 1 and the three numbers */
static int stat_of(const da_flat_metrics *m, const char *base, double *mean, double *lo, double *hi)
{
    char k[DA_METRIC_KEY_MAX + 16];
    const da_flat_metric *x, *l, *h;
    snprintf(k, sizeof k, "%s.mean", base);
    x = da_flat_metrics_find(m, k);
    snprintf(k, sizeof k, "%s.ci95.0", base);
    l = da_flat_metrics_find(m, k);
    snprintf(k, sizeof k, "%s.ci95.1", base);
    h = da_flat_metrics_find(m, k);
    if (!x || !l || !h) return 0;
    *mean = x->value, *lo = l->value, *hi = h->value;
    return 1;
}

/* 1 when key belongs to a KEY.{mean,ci95.*} triple shown in the stats table */
static int in_stat(const da_flat_metrics *m, const char *key)
{
    char base[DA_METRIC_KEY_MAX];
    const char *dot = strrchr(key, '.');
    if (!dot) return 0;
    size_t n = (size_t)(dot - key);
    if (!strcmp(dot, ".0") || !strcmp(dot, ".1")) {   /* KEY.ci95.0 */
        if (n < 5 || strncmp(key + n - 5, ".ci95", 5)) return 0;
        n -= 5;
    } else if (strcmp(dot, ".mean")) {
        return 0;
    }
    snprintf(base, sizeof base, "%.*s", (int)n, key);
    double x, l, h;
    return stat_of(m, base, &x, &l, &h);
}

static void metrics(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b)
{
    fputs("<h2>Metrics</h2>\n<p class=\"note\">Mean and 95% interval of each run (as its metrics.json has them: "
          "clustered by prompt, Wilson for shares) and the change B - A; <b>overlap</b>: whether the two "
          "intervals overlap (no overlap: a difference the noise of the prompts does not explain).</p>\n<table>\n"
          "<tr><th>metric</th><th>A</th><th>B</th><th>B - A</th><th>intervals</th></tr>\n",
          f);
    int rows = 0;
    for (int i = 0; i < a->n; i++) {
        const char *key = a->m[i].key;
        size_t n = strlen(key);
        if (n < 5 || strcmp(key + n - 5, ".mean")) continue;
        char base[DA_METRIC_KEY_MAX];
        snprintf(base, sizeof base, "%.*s", (int)(n - 5), key);
        double ma, la, ha, mb, lb, hb;
        if (!stat_of(a, base, &ma, &la, &ha) || !stat_of(b, base, &mb, &lb, &hb)) continue;
        double d = mb - ma;
        int overlap = !(hb < la || ha < lb);
        fputs("<tr><td>", f);
        esc(f, base);
        fprintf(f, "</td><td>%.4g [%.4g, %.4g]</td><td>%.4g [%.4g, %.4g]</td><td class=\"%s\">%+.4g</td><td>%s</td>"
                   "</tr>\n",
                ma, la, ha, mb, lb, hb, trend(d), d, overlap ? "overlap" : "<b>apart</b>");
        rows++;
    }
    if (!rows) fputs("<tr><td colspan=\"5\">no metric with an interval in both files</td></tr>\n", f);
    fputs("</table>\n<details><summary>Every other number both files have</summary>\n<table>\n<tr><th>key</th>"
          "<th>A</th><th>B</th><th>B - A</th></tr>\n",
          f);
    for (int i = 0; i < a->n; i++) {
        const da_flat_metric *x = &a->m[i], *y = da_flat_metrics_find(b, x->key);
        if (!y || in_stat(a, x->key)) continue;
        double d = y->value - x->value;
        fputs("<tr><td>", f);
        esc(f, x->key);
        fprintf(f, "</td><td>%.6g</td><td>%.6g</td><td class=\"%s\">%+.6g</td></tr>\n", x->value, y->value, trend(d),
                d);
    }
    fputs("</table>\n</details>\n", f);
}

/* ---- images: images.png and images.tsv of each run ------------------------------------- */

typedef struct run_images {
    int prompts, seeds;       /* the atlas' rows and columns */
    uint8_t *px;              /* (prompts * 32, seeds * 32, 3) */
    char **text;              /* (prompts) each prompt's text */
    double *value;            /* (prompts, seeds) the faithful column (rater without it); NAN: not in the tsv */
    const char *column;
} run_images;

static void run_images_free(run_images *r)
{
    if (r->px) stbi_image_free(r->px);
    for (int p = 0; r->text && p < r->prompts; p++) free(r->text[p]);
    free(r->text);
    free(r->value);
    memset(r, 0, sizeof *r);
}

/* field i of a tab-separated line (copied into out), 0 when there */
static int field(const char *line, int i, char *out, size_t cap)
{
    for (; i > 0; i--) {
        line = strchr(line, '\t');
        if (!line) return -1;
        line++;
    }
    size_t n = strcspn(line, "\t\n");
    if (n >= cap) n = cap - 1;
    memcpy(out, line, n);
    out[n] = '\0';
    return 0;
}

/* the tsv's prompts and values over the atlas' cells; 0, or -1 when it is not an eval's images.tsv */
static int read_tsv(const char *path, run_images *r)
{
    char *text = NULL;
    size_t len = 0;
    if (da_read_file(path, MAX_TSV_BYTES, &text, &len) != DA_OK) return -1;
    char *nl = strchr(text, '\n');
    int col = -1, rc = -1;
    if (nl && !strncmp(text, "prompt_index\tk\tseed\tprompt", 26)) {
        *nl = '\0';
        const char *names[2] = {"faithful", "rater"};
        for (int w = 0; w < 2 && col < 0; w++) {
            char name[64];
            for (int i = 4; field(text, i, name, sizeof name) == 0; i++)
                if (!strcmp(name, names[w])) {
                    col = i;
                    r->column = names[w];
                    break;
                }
        }
        rc = 0;
    }
    for (char *line = nl ? nl + 1 : NULL; rc == 0 && line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        char a[32], b[32], v[64], prompt[DA_CAPTION_MAX + 1];
        if (field(line, 0, a, sizeof a) == 0 && field(line, 1, b, sizeof b) == 0 &&
            field(line, 3, prompt, sizeof prompt) == 0) {
            int p = atoi(a), k = atoi(b);
            if (p >= 0 && p < r->prompts && k >= 0 && k < r->seeds) {
                if (!r->text[p]) r->text[p] = strdup(prompt);
                if (col >= 0 && field(line, col, v, sizeof v) == 0)
                    r->value[(size_t)p * r->seeds + k] = strtod(v, NULL);
            }
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
    return rc;
}

/* DIR/images.png and DIR/images.tsv: 0, or -1 (the page then shows no images) */
static int load_run(const char *dir, run_images *r)
{
    memset(r, 0, sizeof *r);
    if (!dir) return -1;
    char path[PATH_CAP];
    int w, h, c;
    snprintf(path, sizeof path, "%s/images.png", dir);
    r->px = stbi_load(path, &w, &h, &c, 3);
    if (!r->px || w % DA_IMG || h % DA_IMG || (size_t)w * h * 3 > MAX_ATLAS_BYTES) {
        run_images_free(r);
        return -1;
    }
    r->seeds = w / DA_IMG;
    r->prompts = h / DA_IMG;
    r->text = calloc((size_t)r->prompts, sizeof *r->text);
    r->value = malloc((size_t)r->prompts * r->seeds * sizeof *r->value);
    if (!r->text || !r->value) {
        run_images_free(r);
        return -1;
    }
    for (size_t i = 0; i < (size_t)r->prompts * r->seeds; i++) r->value[i] = NAN;
    snprintf(path, sizeof path, "%s/images.tsv", dir);
    if (read_tsv(path, r)) {
        run_images_free(r);
        return -1;
    }
    return 0;
}

static double row_mean(const run_images *r, int p)
{
    double s = 0.0;
    int n = 0;
    for (int k = 0; k < r->seeds; k++) {
        double v = r->value[(size_t)p * r->seeds + k];
        if (isfinite(v)) s += v, n++;
    }
    return n ? s / n : NAN;
}

/* B's prompts sorted by text, to find A's prompts in them: n log n */
typedef struct by_text {
    const char *text;
    int p;
} by_text;

static int cmp_text(const void *x, const void *y)
{
    return strcmp(((const by_text *)x)->text, ((const by_text *)y)->text);
}

typedef struct pair_row {
    int pa, pb;
    double change;   /* B - A of the row means; NAN sorts last */
} pair_row;

static int cmp_change(const void *x, const void *y)
{
    const pair_row *a = x, *b = y;
    int fa = isfinite(a->change), fb = isfinite(b->change);
    if (fa != fb) return fb - fa;
    if (fa && a->change != b->change) return a->change < b->change ? -1 : 1;
    return a->pa - b->pa;
}

static void run_row(FILE *f, const char *label, const run_images *r, int p)
{
    fprintf(f, "<div class=\"run\"><b>%s</b>", label);
    uint8_t tile[DA_IMG * DA_IMG * 3];
    int W = r->seeds * DA_IMG;
    for (int k = 0; k < r->seeds; k++) {
        for (int y = 0; y < DA_IMG; y++)
            memcpy(tile + (size_t)y * DA_IMG * 3, r->px + 3 * (((size_t)p * DA_IMG + y) * W + (size_t)k * DA_IMG),
                   DA_IMG * 3);
        char alt[64];
        snprintf(alt, sizeof alt, "%s, seed %d", label, k);
        da_html_inline_png(f, tile, DA_IMG, DA_IMG, alt);
    }
    double m = row_mean(r, p);
    if (isfinite(m)) fprintf(f, "<div class=\"small\">%s %.3f (mean over these seeds)</div>", r->column, m);
    fputs("</div>", f);
}

static void images(FILE *f, const char *dir_a, const char *dir_b)
{
    run_images a, b;
    int ok_a = load_run(dir_a, &a) == 0, ok_b = load_run(dir_b, &b) == 0;
    fputs("<h2 id=\"images\">The same prompts, side by side</h2>\n", f);
    if (!ok_a || !ok_b) {
        fprintf(f, "<p class=\"note\">No images: %s. Images need the folders of two runs of <code>dalign eval</code> "
                   "(images.png and images.tsv).</p>\n",
                !dir_a || !dir_b ? "compare was given files, not folders" : "a folder lacks images.png or images.tsv");
        if (ok_a) run_images_free(&a);
        if (ok_b) run_images_free(&b);
        return;
    }
    by_text *idx = malloc(((size_t)b.prompts + 1) * sizeof *idx);
    pair_row *rows = malloc(((size_t)a.prompts + 1) * sizeof *rows);
    int n_idx = 0, n_rows = 0;
    for (int p = 0; idx && p < b.prompts; p++)
        if (b.text[p]) idx[n_idx++] = (by_text){b.text[p], p};
    if (idx) qsort(idx, (size_t)n_idx, sizeof *idx, cmp_text);
    for (int p = 0; idx && rows && p < a.prompts; p++) {
        if (!a.text[p]) continue;
        by_text key = {a.text[p], 0}, *hit = bsearch(&key, idx, (size_t)n_idx, sizeof *idx, cmp_text);
        if (hit) rows[n_rows++] = (pair_row){p, hit->p, row_mean(&b, hit->p) - row_mean(&a, p)};
    }
    if (rows) qsort(rows, (size_t)n_rows, sizeof *rows, cmp_change);
    const char *col = !strcmp(a.column ? a.column : "", b.column ? b.column : "") ? a.column : NULL;
    fprintf(f, "<p class=\"note\">%d prompts both runs have, ordered by the change B - A of the mean %s over "
               "their seeds, biggest loss first.</p>\n",
            n_rows, col ? col : "score");
    for (int i = 0; i < n_rows; i++) {
        fprintf(f, "<div class=\"pair\"><h3><b>%d.</b> ", i + 1);
        esc(f, a.text[rows[i].pa]);
        if (isfinite(rows[i].change))
            fprintf(f, " <span class=\"%s\">(%s %+.3f)</span>", trend(rows[i].change), col ? col : "score",
                    rows[i].change);
        fputs("</h3>\n<div class=\"runs\">", f);
        run_row(f, "A", &a, rows[i].pa);
        run_row(f, "B", &b, rows[i].pb);
        fputs("</div></div>\n", f);
    }
    free(idx);
    free(rows);
    run_images_free(&a);
    run_images_free(&b);
}

da_status da_compare_html(FILE *f, const da_flat_metrics *a, const da_flat_metrics *b, const char *name_a,
                          const char *name_b, const char *dir_a, const char *dir_b)
{
    head(f, name_a, name_b);
    provenance(f, a, b);
    metrics(f, a, b);
    images(f, dir_a, dir_b);
    fputs("</body>\n</html>\n", f);
    return DA_OK;
}
