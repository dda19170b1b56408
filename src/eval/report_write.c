/* The files and the table of `dalign eval` (report.h): metrics.json,
 * images.tsv, grid.png, index.html (through report_html.c) and the metrics
 * table on stdout. Only what the inputs determine goes into the files. */
#include "dalign/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#include "core/fileio.h"
#include "core/json.h"
#include "eval/provenance.h"

#define PATH_CAP 4096

typedef struct out_ctx {
    const da_report_config *c;
    const da_report_result *r;
    const char *weights, *unet;
    const da_provenance *prov;
} out_ctx;

/* A number of metrics.json: "%.9g", so that a diversity of 4e-7 is not
 * printed as 0 (and cfg, eta read back as the same float); null when not
 * finite (JSON has no inf or NaN, and `dalign compare` skips nulls). */
static void json_num(FILE *f, double x)
{
    if (isfinite(x)) fprintf(f, "%.9g", x);
    else fputs("null", f);
}

/* "mean": m, "ci95": [lo, hi], "n": n  (null mean and interval over nothing) */
static void json_stat_body(FILE *f, const da_eval_stat *s)
{
    if (s->n == 0) {
        fprintf(f, "\"mean\": null, \"ci95\": null, \"n\": 0");
        return;
    }
    fputs("\"mean\": ", f);
    json_num(f, s->mean);
    fputs(", \"ci95\": [", f);
    json_num(f, s->lo);
    fputs(", ", f);
    json_num(f, s->hi);
    fprintf(f, "], \"n\": %ld", s->n);
}

static void json_rewards(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"rewards\": {");
    const char *sep = "\n";
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        fprintf(f, "%s    \"%s\": {", sep, da_report_reward_name(i));
        json_stat_body(f, &r->reward[i]);
        fprintf(f, ", \"unit\": \"%s\"}", da_report_reward_unit(i));
        sep = ",\n";
    }
    fprintf(f, "\n  },\n");
}

/* the share of images in the outline style; only when the outline reward was scored */
static void json_style_share(FILE *f, const da_report_result *r)
{
    if (!(r->rewards & (1u << DA_REPORT_OUTLINE))) return;
    fprintf(f, "  \"style_share\": {\"measure\": \"share of images whose outline reward is >= threshold (the "
               "threshold that tells VAE round trips of outline renders from plain ones)\", \"threshold\": %g, ",
            (double)DA_REPORT_STYLE_THRESHOLD);
    json_stat_body(f, &r->style_share);
    fputs("},\n", f);
}

static void json_faithfulness(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"faithfulness\": {");
    json_stat_body(f, &r->faith_all);
    fprintf(f, ",\n    \"exact\": {");
    json_stat_body(f, &r->exact);
    fprintf(f, "},\n    \"extra_objects\": {");
    json_stat_body(f, &r->extra);
    fprintf(f, "},\n    \"clauses\": {\n");
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        fprintf(f, "      \"%s\": {", da_clause_type_name(t));
        json_stat_body(f, &r->type[t]);
        fprintf(f, "}%s\n", t + 1 < DA_N_CLAUSE_TYPES ? "," : "");
    }
    fprintf(f, "    }\n  },\n");
}

static void json_diversity(FILE *f, const da_report_result *r)
{
    fprintf(f, "  \"diversity\": {\"measure\": \"mean over seed pairs of 1 - cos of CLIP image embeddings\", ");
    if (r->diversity) {
        json_stat_body(f, &r->div);
        fprintf(f, ", \"pairs_per_prompt\": %d},\n", r->n_seeds * (r->n_seeds - 1) / 2);
    } else {
        fprintf(f, "\"mean\": null, \"ci95\": null, \"n\": 0, \"note\": \"one seed per prompt: no pairs, so no "
                   "diversity (not 0)\"},\n");
    }
}

/* Only what the inputs determine goes in: no timings, no thread count, so
 * the same inputs give the same bytes. */
static void write_json(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_report_config *c = o->c;
    const da_report_result *r = o->r;
    da_rater_config rc = da_rater_config_default();
    fprintf(f, "{\n  \"format\": \"%s\",\n  \"prompts\": ", DA_REPORT_FORMAT);
    da_json_write_str(f, c->prompts);
    fprintf(f, ",\n  \"n_prompts\": %d,\n  \"seeds\": %d,\n  \"images\": %d,\n  \"sampler\": \"%s\",\n"
               "  \"steps\": %d,\n  \"cfg\": ",
            r->n_prompts, r->n_seeds, r->n_prompts * r->n_seeds, da_sampler_name(c->opts.sampler), c->opts.steps);
    json_num(f, c->opts.cfg);
    fputs(",\n  \"eta\": ", f);
    json_num(f, c->opts.eta);
    fprintf(f, ",\n  \"batch\": %d,\n  \"prompt_seed\": %llu,\n  \"image_seed\": %llu,\n  \"weights\": ", c->batch,
            (unsigned long long)c->prompt_seed, (unsigned long long)c->image_seed);
    da_json_write_str(f, o->weights);
    fprintf(f, ",\n  \"unet\": ");
    da_json_write_str(f, o->unet);
    fprintf(f, ",\n");
    da_provenance_json(f, o->prov, "  ");
    if (c->refiner) {   /* only then: a run without one keeps its bytes */
        fprintf(f, ",\n  \"refiner\": ");
        da_json_write_str(f, c->refiner_name ? c->refiner_name : "refiner");
        fprintf(f, ",\n  \"refine_mode\": \"%s\",\n  \"refine_steps\": %d,\n  \"refine_temperature\": ",
                da_refine_mode_name(c->loop.mode), da_loop_n_refine(&c->loop));
        json_num(f, c->loop.temperature);
        if (c->loop.keep_meaning) fprintf(f, ",\n  \"refine_keep_meaning\": true");
        if (c->loop.window_first || c->loop.window_end)   /* only then: older reports keep their bytes */
            fprintf(f, ",\n  \"refine_window\": [%d, %d]", c->loop.window_first,
                    c->loop.window_end ? c->loop.window_end : c->opts.steps);
    }
    fprintf(f, ",\n  \"gemm\": \"%s\",\n", da_gemm_backend());
    json_rewards(f, r);
    json_style_share(f, r);
    json_faithfulness(f, r);
    json_diversity(f, r);
    fprintf(f, "  \"rater\": {\"role\": \"held-back judge: the synthetic rater's noiseless utility "
               "(docs/rater.md); never an optimisation target\", ");
    json_stat_body(f, &r->rater);
    fputs(", \"max\": ", f);
    json_num(f, (double)(rc.w_faith + rc.w_size + rc.w_centre + rc.w_contrast));
    fputs("}\n}\n", f);
}

/* one line per image: its prompt, seed and every score */
static void write_tsv(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    const da_report_result *r = o->r;
    size_t PK = (size_t)r->n_prompts * r->n_seeds;
    fprintf(f, "prompt_index\tk\tseed\tprompt");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
        if (r->rewards & (1u << i)) fprintf(f, "\t%s", da_report_reward_name(i));
    fprintf(f, "\trater\tobjects\n");
    for (size_t j = 0; j < PK; j++) {
        int p = (int)(j / r->n_seeds), k = (int)(j % r->n_seeds);
        fprintf(f, "%d\t%d\t%llu\t", p, k,
                (unsigned long long)da_eval_image_seed(o->c->image_seed, r->split, p, k));
        for (const char *t = r->prompts + (size_t)p * DA_CAPTION_MAX; *t; t++) fputc(*t == '\t' ? ' ' : *t, f);
        for (int i = 0; i < DA_REPORT_N_REWARDS; i++)
            if (r->rewards & (1u << i)) fprintf(f, "\t%.6g", (double)r->scores[i * PK + j]);
        fprintf(f, "\t%.6g\t%d\n", (double)r->utility[j], r->n_detected[j]);
    }
}

static void write_html(FILE *f, const void *ctx)
{
    const out_ctx *o = ctx;
    da_report_html(f, o->c, o->r, o->weights, o->unet);
}

/* images.png: the images index.html shows, one row of page_seeds 32x32
 * tiles per prompt (prompt p's seed k at column k, row p), unscaled, no
 * gaps, for `dalign compare --html` to put two runs side by side */
typedef struct png_buf {
    uint8_t *data;
    size_t len, cap;
    int failed;
} png_buf;

static void png_put(void *ctx, void *data, int size)
{
    png_buf *m = ctx;
    if (m->failed || size <= 0) return;
    if (m->len + (size_t)size > m->cap) {
        size_t cap = m->cap ? m->cap : 65536;
        while (cap < m->len + (size_t)size) cap *= 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d) {
            m->failed = 1;
            return;
        }
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

static da_status write_atlas(const char *dir, const da_report_result *r)
{
    int P = r->page_prompts, K = r->page_seeds, W = K * DA_IMG, H = P * DA_IMG;
    char path[PATH_CAP];
    if (snprintf(path, sizeof path, "%s/images.png", dir) >= (int)sizeof path)
        return da_fail(DA_ERR_INVALID, "path too long: %s/images.png", dir);
    uint8_t *px = malloc((size_t)W * H * 3);
    if (!px) return da_fail(DA_ERR_NOMEM, "eval: out of memory for %s", path);
    for (int p = 0; p < P; p++)
        for (int k = 0; k < K; k++)
            for (int y = 0; y < DA_IMG; y++)
                memcpy(px + 3 * (((size_t)p * DA_IMG + y) * W + (size_t)k * DA_IMG),
                       r->rgb + (((size_t)p * K + k) * DA_IMG + y) * DA_IMG * 3, DA_IMG * 3);
    png_buf m = {0};
    int ok = stbi_write_png_to_func(png_put, &m, W, H, 3, px, 3 * W);
    da_status s = ok && !m.failed ? da_write_atomic(path, m.data, m.len)
                                  : da_fail(DA_ERR_NOMEM, "eval: cannot encode %s (out of memory)", path);
    free(px);
    free(m.data);
    return s;
}

da_status da_report_write(const char *dir, const da_report_config *c, const da_report_result *r,
                          const char *weights, const char *unet)
{
    if (!dir || !c || !r || !r->prompts) return da_fail(DA_ERR_INVALID, "da_report_write: bad argument");
    static const char *const files[] = {"grid.png", "images.png", "images.tsv", "metrics.json", "index.html", NULL};
    da_provenance prov;
    const char *extra[3] = {"clip", NULL, NULL};   /* the diversity tower (and the clip reward's) */
    if (r->rewards & (1u << DA_REPORT_PREF)) extra[1] = "reward_net";
    da_status s = da_make_dirs(dir);
    if (s == DA_OK) s = da_done_clear(dir);   /* unfinished from here until the marker is back */
    if (s == DA_OK) s = da_provenance_collect(&prov, weights, unet, extra);
    out_ctx o = {c, r, weights ? weights : "", unet ? unet : "unet", &prov};
    if (s == DA_OK && r->grid_prompts > 0) {
        char path[PATH_CAP];
        if (snprintf(path, sizeof path, "%s/grid.png", dir) >= (int)sizeof path)
            return da_fail(DA_ERR_INVALID, "path too long: %s/grid.png", dir);
        s = da_png_save_images(path, r->grid, r->grid_prompts * r->grid_seeds, r->grid_seeds, DA_REPORT_GRID_SCALE);
    }
    if (s == DA_OK && r->page_prompts > 0 && r->rgb) s = write_atlas(dir, r);
    if (s == DA_OK) s = da_write_with(dir, "images.tsv", write_tsv, &o);
    if (s == DA_OK) s = da_write_with(dir, "metrics.json", write_json, &o);
    if (s == DA_OK) s = da_write_with(dir, "index.html", write_html, &o);
    if (s == DA_OK) s = da_done_mark(dir, r->grid_prompts > 0 ? files : files + 1);   /* last: complete */
    return s;
}

/* ---- the table on stdout -------------------------------------------------------------------- */

static void table_row(FILE *f, const char *name, const da_eval_stat *s)
{
    if (s->n == 0) fprintf(f, "%-34s %10s  %-24s %7d\n", name, "-", "", 0);
    else fprintf(f, "%-34s %10.4f  [%9.4f, %9.4f]  %7ld\n", name, s->mean, s->lo, s->hi, s->n);
}

void da_report_table(FILE *f, const da_report_result *r)
{
    char name[96];
    fprintf(f, "%-34s %10s  %-24s %7s\n", "metric", "mean", "95% interval", "n");
    for (int i = 0; i < DA_REPORT_N_REWARDS; i++) {
        if (!(r->rewards & (1u << i))) continue;
        snprintf(name, sizeof name, "%s (%s)", da_report_reward_name(i), da_report_reward_unit(i));
        table_row(f, name, &r->reward[i]);
    }
    if (r->rewards & (1u << DA_REPORT_OUTLINE)) {
        snprintf(name, sizeof name, "in the outline style (>= %g)", (double)DA_REPORT_STYLE_THRESHOLD);
        table_row(f, name, &r->style_share);
    }
    if (!(r->rewards & (1u << DA_REPORT_FAITHFUL))) table_row(f, "faithfulness: all clauses", &r->faith_all);
    table_row(f, "faithfulness: every clause met", &r->exact);
    for (int t = 0; t < DA_N_CLAUSE_TYPES; t++) {
        snprintf(name, sizeof name, "faithfulness: %s clauses", da_clause_type_name(t));
        table_row(f, name, &r->type[t]);
    }
    table_row(f, "images with extra objects", &r->extra);
    if (r->diversity) table_row(f, "diversity (1 - cos, CLIP)", &r->div);
    else fprintf(f, "%-34s %10s  (one seed per prompt: no pairs)\n", "diversity (1 - cos, CLIP)", "null");
    table_row(f, "rater utility (held-back judge)", &r->rater);
}
