/* index.html of `dalign eval` (report.h): one self-contained page, images
 * inline as PNG data URIs, with the run's settings, the metrics table, two
 * inline SVG charts (faithfulness per clause type on a shared 0..1 axis;
 * per metric the spread of per-prompt means on its own axis, each dot with
 * a tooltip naming its prompt and a link to it), and every prompt's images,
 * worst prompts first, each image captioned with the clauses it failed.
 * Every number written depends on the inputs only, like metrics.json. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/eval.h"
#include "eval/html_util.h"

#define SVG_W 900             /* room right of the plot for "mean [lo, hi]" */
#define LABEL_W 230           /* left column of a chart: the row's name */
#define PLOT_X0 (LABEL_W + 10)
#define PLOT_W 380
#define MAX_DOTS 2000         /* prompts drawn per spread row: keeps the page small */

static void esc(FILE *f, const char *s) { da_html_esc(f, s); }

/* a number for the page: never "-0" */
static double tidy(double v) { return v == 0.0 ? 0.0 : v; }

static void head(FILE *f, const da_report_config *c, const char *unet)
{
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>dalign eval: ");
    esc(f, c->prompts);
    fprintf(f, ", ");
    esc(f, unet);
    fprintf(f, "</title>\n<style>\n"
               "body { font-family: sans-serif; max-width: 1150px; margin: 1.5em auto; padding: 0 1em; color: #222; }\n"
               "table { border-collapse: collapse; margin: 0.5em 0; }\n"
               "th, td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: right; }\n"
               "th:first-child, td:first-child { text-align: left; }\n"
               ".samples { display: flex; gap: 1.5em; align-items: flex-start; overflow-x: auto; }\n"
               ".samples img { image-rendering: pixelated; flex: none; }\n"
               ".row { height: 132px; display: flex; flex-direction: column; justify-content: center; }\n"
               ".small, .note { color: #666; font-size: 90%%; }\n"
               ".judge { background: #fff6e0; }\n"
               ".prompt { border-top: 1px solid #ddd; padding: 0.6em 0; }\n"
               ".prompt h3 { font-size: 100%%; font-weight: normal; margin: 0 0 0.4em 0; }\n"
               ".prompt h3 b { margin-right: 0.5em; }\n"
               ".shots { display: flex; flex-wrap: wrap; gap: 10px; }\n"
               ".shot { width: 128px; font-size: 80%%; }\n"
               ".shot img { width: 128px; height: 128px; image-rendering: pixelated; display: block; "
               "border: 1px solid #ccc; }\n"
               ".ok { color: #1e7b34; }\n"
               ".fail { color: #b0281a; }\n"
               "svg a circle:hover { fill-opacity: 1; stroke: #000; }\n"
               "svg text { font-family: sans-serif; font-size: 12px; }\n"
               "</style>\n</head>\n<body>\n<h1>dalign eval</h1>\n");
}

static void setting(FILE *f, const char *name, const char *value)
{
    fprintf(f, "<tr><td>%s</td><td style=\"text-align:left\">", name);
    esc(f, value);
    fprintf(f, "</td></tr>\n");
}

static void settings(FILE *f, const da_report_config *c, const da_report_result *r, const char *weights,
                     const char *unet)
{
    char buf[256];
    fprintf(f, "<h2>Run</h2>\n<table>\n");
    setting(f, "prompts", c->prompts);
    snprintf(buf, sizeof buf, "%d prompts x %d seeds = %d images", r->n_prompts, r->n_seeds,
             r->n_prompts * r->n_seeds);
    setting(f, "images", buf);
    snprintf(buf, sizeof buf, "%s, %d steps, cfg %g, eta %g, batch %d", da_sampler_name(c->opts.sampler),
             c->opts.steps, (double)c->opts.cfg, (double)c->opts.eta, c->batch);
    setting(f, "sampler", buf);
    snprintf(buf, sizeof buf, "image seed %llu (%s split), prompt seed %llu", (unsigned long long)c->image_seed,
             r->split == DA_SPLIT_HELDOUT ? "held-out" : "train", (unsigned long long)c->prompt_seed);
    setting(f, "seeds", buf);
    setting(f, "weights", weights);
    setting(f, "unet", unet);
    setting(f, "gemm", da_gemm_backend());
    fprintf(f, "</table>\n");
}

/* ---- every prompt's images ------------------------------------------------------------------ */

/* what clause c asked, in the prompt's words: "red", "circle", "left of" */
static void clause_words(char *out, size_t cap, const da_clause *c, const da_scene *spec)
{
    const da_object *o = c->object >= 0 && c->object < DA_MAX_OBJECTS ? &spec->obj[c->object] : NULL;
    const char *w = NULL;
    switch (c->type) {
    case DA_CLAUSE_COLOUR: w = o ? da_colour_name(o->colour) : NULL; break;
    case DA_CLAUSE_SHAPE: w = o ? da_shape_name(o->shape) : NULL; break;
    case DA_CLAUSE_SIZE: w = o ? da_size_name(o->size) : NULL; break;
    case DA_CLAUSE_RELATION: w = da_relation_name(spec->relation); break;
    case DA_CLAUSE_BACKGROUND: w = da_background_name(spec->background); break;
    default: break;
    }
    const char *type = da_clause_type_name(c->type);
    if (o && spec->n_objects > 1)
        snprintf(out, cap, "%s %s (object %d)", type ? type : "clause", w ? w : "?", c->object + 1);
    else snprintf(out, cap, "%s %s", type ? type : "clause", w ? w : "?");
}

/* one image: the picture, its scores and the clauses it failed */
static void shot(FILE *f, const da_report_result *r, const da_scene *spec, int p, int k, int parsed)
{
    size_t q = (size_t)p * r->page_seeds + k, j = (size_t)p * r->n_seeds + k;
    char alt[64];
    snprintf(alt, sizeof alt, "prompt %d, seed %d", p + 1, k);
    fprintf(f, "<div class=\"shot\">");
    da_html_inline_png(f, r->rgb + q * DA_IMG * DA_IMG * 3, DA_IMG, DA_IMG, alt);
    fprintf(f, "<div>seed %d: faithful %.2f, rater %.2f</div>", k, (double)r->faith[j], (double)r->utility[j]);
    const da_clause *c = r->clauses + q * DA_MAX_CLAUSES;
    int failed = 0;
    for (int i = 0; i < r->n_clauses[q] && i < DA_MAX_CLAUSES; i++) {
        if (c[i].satisfied) continue;
        char words[96];
        if (parsed) clause_words(words, sizeof words, &c[i], spec);
        else snprintf(words, sizeof words, "%s", da_clause_type_name(c[i].type));
        fprintf(f, "<div class=\"fail\">&#10007; %s</div>", words);
        failed++;
    }
    if (!failed) fprintf(f, "<div class=\"ok\">&#10003; every clause met</div>");
    if (r->n_detected[j] > r->n_objects[p])
        fprintf(f, "<div class=\"fail\">%d objects for %d named</div>", r->n_detected[j], r->n_objects[p]);
    fprintf(f, "</div>\n");
}

/* mean faithfulness of prompt p over its seeds, then its mean rater utility */
static void prompt_key(const da_report_result *r, int p, double *faith, double *util)
{
    double a = 0.0, b = 0.0;
    for (int k = 0; k < r->n_seeds; k++) {
        a += r->faith[(size_t)p * r->n_seeds + k];
        b += r->utility[(size_t)p * r->n_seeds + k];
    }
    *faith = a / r->n_seeds;
    *util = b / r->n_seeds;
}

/* qsort_r's comparison: the page's prompts, worst first */
static int worst_first(const void *x, const void *y, void *ctx)
{
    const da_report_result *r = ctx;
    int a = *(const int *)x, b = *(const int *)y;
    double fa, ua, fb, ub;
    prompt_key(r, a, &fa, &ua);
    prompt_key(r, b, &fb, &ub);
    if (fa != fb) return fa < fb ? -1 : 1;
    if (ua != ub) return ua < ub ? -1 : 1;
    return a - b;   /* a total order: the page repeats bit for bit */
}

static void gallery(FILE *f, const da_report_result *r)
{
    int P = r->page_prompts, K = r->page_seeds;
    if (P == 0 || !r->rgb) return;
    int *order = malloc((size_t)P * sizeof *order);
    if (!order) return;   /* the tables above still hold */
    for (int p = 0; p < P; p++) order[p] = p;
    qsort_r(order, (size_t)P, sizeof *order, worst_first, (void *)r);
    fprintf(f, "<h2 id=\"prompts\">Every prompt, worst first</h2>\n<p class=\"note\">");
    if (P < r->n_prompts) fprintf(f, "The first %d of %d prompts ", P, r->n_prompts);
    else fprintf(f, "All %d prompts ", P);
    fprintf(f, "with %s%d of %d seeds, ordered by mean faithfulness over the seeds (then the rater's utility), "
               "lowest first. Under each image: its scores and the clauses the detector found it failed "
               "(&#10007;). Every score of every image is in images.tsv.</p>\n",
            K < r->n_seeds ? "the first " : "", K, r->n_seeds);
    for (int i = 0; i < P; i++) {
        int p = order[i];
        double faith, util;
        prompt_key(r, p, &faith, &util);
        const char *text = r->prompts + (size_t)p * DA_CAPTION_MAX;
        da_scene spec;
        int parsed = da_parse_prompt(text, &spec) == DA_OK;
        fprintf(f, "<div class=\"prompt\" id=\"p%d\"><h3><b>%d.</b>", p + 1, i + 1);
        esc(f, text);
        fprintf(f, " <span class=\"small\">(prompt %d; faithful %.2f, rater %.2f)</span></h3>\n<div class=\"shots\">\n",
                p + 1, faith, util);
        for (int k = 0; k < K; k++) shot(f, r, &spec, p, k, parsed);
        fprintf(f, "</div></div>\n");
    }
    free(order);
}

static void metric_row(FILE *f, const char *cls, const char *name, const char *unit, const da_eval_stat *s)
{
    fprintf(f, "<tr%s><td>%s</td><td style=\"text-align:left\">%s</td>", cls, name, unit);
    if (s->n == 0) fprintf(f, "<td>-</td><td>-</td><td>0</td></tr>\n");
    else fprintf(f, "<td>%.4f</td><td>[%.4f, %.4f]</td><td>%ld</td></tr>\n", tidy(s->mean), tidy(s->lo), tidy(s->hi),
                 s->n);
}

static void metrics(FILE *f, const da_report_result *r)
{
    fprintf(f, "<h2>Metrics</h2>\n<p class=\"note\">Mean and 95%% interval, clustered by prompt (the seeds of "
               "one prompt are not independent); for shares and scores in [0, 1] the Wilson score interval, which "
               "stays inside [0, 1]. n: images, clauses or prompts it is over.</p>\n<table>\n"
               "<tr><th>metric</th><th style=\"text-align:left\">unit</th><th>mean</th><th>95%% interval</th>"
               "<th>n</th></tr>\n");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
        if (r->rewards & (1u << i))
            metric_row(f, "", da_report_reward_name(i), da_report_reward_unit(i), &r->reward[i]);
    if (r->rewards & (1u << DA_REPORT_OUTLINE)) {
        char unit[96];
        snprintf(unit, sizeof unit, "fraction of images with outline &gt;= %g", (double)DA_REPORT_STYLE_THRESHOLD);
        metric_row(f, "", "style share", unit, &r->style_share);
    }
    metric_row(f, "", "every clause met", "fraction of images", &r->exact);
    metric_row(f, "", "extra objects", "fraction of images with more objects than the prompt names", &r->extra);
    if (r->diversity) metric_row(f, "", "diversity", "mean 1 - cos of CLIP image embeddings over seed pairs", &r->div);
    else fprintf(f, "<tr><td>diversity</td><td style=\"text-align:left\">one seed per prompt: no pairs, so no "
                    "diversity (null, not 0)</td><td>-</td><td>-</td><td>0</td></tr>\n");
    metric_row(f, " class=\"judge\"", "rater (held-back judge)",
               "the synthetic rater's noiseless utility; never optimised", &r->rater);
    fprintf(f, "</table>\n");
}

/* x in [a, b] -> pixel column of the plot */
static double px(double x, double a, double b)
{
    double t = (x - a) / (b - a);
    t = t < 0.0 ? 0.0 : t > 1.0 ? 1.0 : t;
    return PLOT_X0 + t * PLOT_W;
}

/* vertical grid lines with labels at a, a + step, ..., b, under rows [y0, y1) */
static void axis(FILE *f, double a, double b, double step, int y0, int y1)
{
    int n = (int)floor((b - a) / step + 0.5);
    for (int i = 0; i <= n; i++) {
        double v = tidy(a + i * step), x = px(v, a, b);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>", x, y0, x, y1);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#666\">%g</text>\n", x, y1 + 13, v);
    }
}

/* the interval [mean - half, mean + half] as a whisker with end caps at height y */
static void whisker(FILE *f, const da_eval_stat *s, double a, double b, int y)
{
    double lo = px(s->lo, a, b), hi = px(s->hi, a, b);
    fprintf(f, "<path d=\"M%.1f %dV%dM%.1f %dH%.1fM%.1f %dV%d\" stroke=\"#222\" stroke-width=\"1.5\" fill=\"none\"/>",
            lo, y - 5, y + 5, lo, y, hi, hi, y - 5, y + 5);
}

static void clause_bar(FILE *f, const char *name, const da_eval_stat *s, int y)
{
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>", LABEL_W, y + 4, name);
    if (s->n == 0) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#666\">no clause of this type in the prompts</text>\n", PLOT_X0 + 4,
                y + 4);
        return;
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"14\" fill=\"#6b9bd1\"><title>%s: %.4f [%.4f, "
               "%.4f], n %ld</title></rect>",
            PLOT_X0, y - 7, px(s->mean, 0.0, 1.0) - PLOT_X0, name, s->mean, s->lo, s->hi, s->n);
    whisker(f, s, 0.0, 1.0, y);
    fprintf(f, "<text x=\"%d\" y=\"%d\">%.3f [%.3f, %.3f]</text>\n", PLOT_X0 + PLOT_W + 12, y + 4,
            tidy(s->mean), tidy(s->lo), tidy(s->hi));
}

static void clause_chart(FILE *f, const da_report_result *r)
{
    enum { ROW = 28, TOP = 14 };
    int rows = 2 + DA_N_CLAUSE_TYPES, h = TOP + rows * ROW + 24;
    fprintf(f, "<h2>Faithfulness by clause type</h2>\n<p class=\"note\">Fraction of the prompts' clauses of each "
               "type that the detector finds satisfied (bars), with 95%% intervals (whiskers). A policy that games "
               "one reward usually loses one clause type first.</p>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "role=\"img\" aria-label=\"faithfulness per clause type\">\n",
            SVG_W, h, SVG_W, h);
    axis(f, 0.0, 1.0, 0.25, TOP - 4, TOP + rows * ROW - 8);
    clause_bar(f, "all clauses (faithfulness)", &r->faith_all, TOP + ROW / 2);
    clause_bar(f, "every clause met (images)", &r->exact, TOP + ROW + ROW / 2);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        char name[64];
        snprintf(name, sizeof name, "%s", da_clause_type_name(t));
        clause_bar(f, name, &r->type[t], TOP + (2 + t) * ROW + ROW / 2);
    }
    fprintf(f, "</svg>\n");
}

/* "nice" axis [a, b] with 3..8 ticks of step 1, 2 or 5 x 10^k covering [lo, hi] */
static void nice_axis(double lo, double hi, double *a, double *b, double *step)
{
    if (!(hi > lo)) {   /* one value: a small range around it */
        double d = fabs(lo) > 0.0 ? 0.1 * fabs(lo) : 1.0;
        lo -= d;
        hi += d;
    }
    double raw = (hi - lo) / 4.0, mag = pow(10.0, floor(log10(raw))), r = raw / mag;
    *step = (r <= 1.0 ? 1.0 : r <= 2.0 ? 2.0 : r <= 5.0 ? 5.0 : 10.0) * mag;
    *a = floor(lo / *step) * *step;
    *b = ceil(hi / *step) * *step;
}

/* one row of the spread chart: a metric's per-prompt values v (P) */
typedef struct spread_row {
    const char *name, *unit;
    const da_eval_stat *stat;
    double lo, hi;      /* fixed axis when lo < hi, else from the data */
} spread_row;

static void spread(FILE *f, const spread_row *row, const double *v, int P, int y, const da_report_result *r)
{
    double lo = row->stat->lo, hi = row->stat->hi, a, b, step;
    for (int p = 0; p < P; p++) {
        lo = fmin(lo, v[p]);
        hi = fmax(hi, v[p]);
    }
    if (row->lo < row->hi) {
        lo = fmin(lo, row->lo);
        hi = fmax(hi, row->hi);
    }
    nice_axis(lo, hi, &a, &b, &step);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-weight=\"bold\">%s</text>", LABEL_W, y - 4,
            row->name);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" fill=\"#666\">%s</text>\n", LABEL_W, y + 11, row->unit);
    axis(f, a, b, step, y - 18, y + 18);
    int shown = P < MAX_DOTS ? P : MAX_DOTS;
    for (int p = 0; p < shown; p++) {   /* a fixed vertical jitter keeps equal values apart */
        /* the tooltip names the prompt; a click goes to its images (when the page shows them) */
        if (p < r->page_prompts) fprintf(f, "<a href=\"#p%d\">", p + 1);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"3\" fill=\"#2c6fbb\" fill-opacity=\"0.55\"><title>%s %.4g: "
                   "prompt %d, ",
                px(v[p], a, b), y + (p * 7) % 25 - 12, row->name, v[p], p + 1);
        esc(f, r->prompts + (size_t)p * DA_CAPTION_MAX);
        fprintf(f, "</title></circle>%s\n", p < r->page_prompts ? "</a>" : "");
    }
    if (row->stat->n == 0) return;
    double m = px(row->stat->mean, a, b);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#c0392b\" stroke-width=\"3\"><title>mean "
               "%.4f [%.4f, %.4f]</title></line>",
            m, y - 16, m, y + 16, row->stat->mean, row->stat->lo, row->stat->hi);
    whisker(f, row->stat, a, b, y);
    fprintf(f, "<text x=\"%d\" y=\"%d\">%.4g [%.4g, %.4g]</text>\n", PLOT_X0 + PLOT_W + 12, y + 4,
            tidy(row->stat->mean), tidy(row->stat->lo), tidy(row->stat->hi));
}

/* per-prompt mean over the seeds of x (P, K) into v (P) */
static void prompt_means(const float *x, int P, int K, double *v)
{
    for (int p = 0; p < P; p++) {
        double s = 0.0;
        for (int k = 0; k < K; k++) s += x[(size_t)p * K + k];
        v[p] = s / K;
    }
}

static void spread_chart(FILE *f, const da_report_result *r)
{
    enum { ROW = 62, TOP = 30 };
    int P = r->n_prompts, K = r->n_seeds, rows = 0;
    size_t PK = (size_t)P * K;
    da_rater_config rc = da_rater_config_default();
    double umax = rc.w_faith + rc.w_size + rc.w_centre + rc.w_contrast;
    double *v = malloc((size_t)P * sizeof *v);
    if (!v) return;   /* the table above has the numbers */
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) rows += (r->rewards >> i) & 1u;
    rows += 1 + (r->diversity != NULL);
    int h = TOP + rows * ROW;
    fprintf(f, "<h2>Every metric, prompt by prompt</h2>\n<p class=\"note\">One row per metric, each on its own axis "
               "in its own units. Dots: the mean over the seeds of each prompt%s; red line: the mean over all "
               "images; whisker: its 95%% interval. Hover a dot for its prompt, click it for the prompt's images. "
               "A reward that rises while the others and the rater fall is "
               "being gamed.</p>\n",
            P > MAX_DOTS ? " (the first 2000 prompts)" : "");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "role=\"img\" aria-label=\"per-prompt spread of every metric\">\n",
            SVG_W, h, SVG_W, h);
    int y = TOP;
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        spread_row row = {da_report_reward_name(i), da_report_reward_unit(i), &r->reward[i], 0.0, 0.0};
        if (i == DA_REPORT_FAITHFUL || i == DA_REPORT_OUTLINE) row.hi = 1.0;   /* both in [0, 1] */
        if (i == DA_REPORT_CLIP) row.hi = 100.0;     /* CLIPScore's range */
        prompt_means(r->scores + i * PK, P, K, v);
        spread(f, &row, v, P, y, r);
        y += ROW;
    }
    if (r->diversity) {
        spread_row row = {"diversity", "1 - cos, CLIP, seed pairs", &r->div, 0.0, 0.0};
        spread(f, &row, r->diversity, P, y, r);
        y += ROW;
    }
    spread_row judge = {"rater (held-back judge)", "noiseless utility", &r->rater, 0.0, umax};
    prompt_means(r->utility, P, K, v);
    spread(f, &judge, v, P, y, r);
    fprintf(f, "</svg>\n");
    free(v);
}

static void reading(FILE *f)
{
    fprintf(f,
            "<h2>Reading this report</h2>\n<ul>\n"
            "<li>Every reward is reported, not only the one a run optimised: a gain on the optimised reward with "
            "flat or falling others is reward hacking, not alignment.</li>\n"
            "<li><b>jpeg</b> rising: look for noise in the images and a falling shape clause. <b>jpeg-neg</b> rising: "
            "objects shrink or vanish (faithfulness and diversity fall). <b>colorful</b> rising: background and size "
            "clauses fall. <b>clip</b> rising: relation clauses fall while colour holds. <b>pref</b> rising: the "
            "rater and faithfulness fall. <b>faithful</b> rising: extra objects rise, diversity falls.</li>\n"
            "<li><b>outline</b>: the outline-style detector's score (0 to 1; 0 when no object is judged). Through "
            "the shipped VAE a true outline render keeps only about 0.18 and a plain one 0.02, so <b>style share"
            "</b> counts images at or above %g, the threshold that tells those round trips apart (0.94 "
            "accuracy), and 0.18, not 1, is the ceiling. A style gained while faithfulness falls cost the "
            "content.</li>\n"
            "<li>The prompts at the top of <a href=\"#prompts\">Every prompt</a> are where the model fails: the "
            "&#10007; lines say which clause, so a lost colour or relation shows on the images themselves.</li>\n"
            "<li>Diversity falling towards 0 is mode collapse: the seeds of a prompt give the same image.</li>\n"
            "<li>The rater is the judge no trainer sees: its utility should rise with real alignment.</li>\n"
            "<li>docs/evaluation.md explains every metric; images.tsv has every score of every image; "
            "<code>dalign compare A/metrics.json B/metrics.json</code> compares two runs.</li>\n</ul>\n",
            (double)DA_REPORT_STYLE_THRESHOLD);
}

void da_report_html(FILE *f, const da_report_config *c, const da_report_result *r, const char *weights,
                    const char *unet)
{
    head(f, c, unet);
    settings(f, c, r, weights, unet);
    metrics(f, r);
    clause_chart(f, r);
    spread_chart(f, r);
    gallery(f, r);
    reading(f);
    fprintf(f, "</body>\n</html>\n");
}
