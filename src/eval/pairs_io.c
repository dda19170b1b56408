/* The pairs file (pairs.h has the layout): da_pairs_save writes it,
 * da_pairs_load reads and validates it; the storage both share. */
#include "dalign/eval.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json.h"
#include "core/safetensors_meta.h"
#include "eval/pairs_internal.h"
#include "pipeline/weights.h"

#define MAX_LATENT_DIM 4096   /* a sanity bound on C, h, w read from a file */

static const char *const split_names[2] = {"train", "heldout"};

/* ---- storage ------------------------------------------------------------------------ */

void da_pairs_free(da_pairs *pr)
{
    if (!pr) return;
    free(pr->latents_w);
    free(pr->latents_l);
    free(pr->utility_w);
    free(pr->utility_l);
    free(pr->prob_w);
    free(pr->prompts_w);
    free(pr->prompts_l);
    free(pr->seeds_w);
    free(pr->seeds_l);
    free(pr->candidate);
    free(pr->text);
    memset(pr, 0, sizeof *pr);
}

da_status da_pairs_alloc(da_pairs *pr, int n, int C, int h, int w)
{
    size_t N = (size_t)n, per = (size_t)C * h * w;
    pr->channels = C;
    pr->height = h;
    pr->width = w;
    pr->latents_w = malloc(N * per * sizeof(float));
    pr->latents_l = malloc(N * per * sizeof(float));
    pr->utility_w = malloc(N * sizeof(float));
    pr->utility_l = malloc(N * sizeof(float));
    pr->prob_w = malloc(N * sizeof(float));
    pr->prompts_w = malloc(N * sizeof(char *));
    pr->prompts_l = malloc(N * sizeof(char *));
    pr->seeds_w = malloc(N * sizeof(uint64_t));
    pr->seeds_l = malloc(N * sizeof(uint64_t));
    pr->candidate = malloc(N * sizeof(long));
    pr->text = calloc(2 * N, DA_CAPTION_MAX);
    if (!pr->latents_w || !pr->latents_l || !pr->utility_w || !pr->utility_l || !pr->prob_w || !pr->prompts_w ||
        !pr->prompts_l || !pr->seeds_w || !pr->seeds_l || !pr->candidate || !pr->text)
        return da_fail(DA_ERR_NOMEM, "pairs: out of memory for %d pairs", n);
    for (size_t i = 0; i < N; i++) {
        pr->prompts_w[i] = pr->text + (2 * i) * DA_CAPTION_MAX;
        pr->prompts_l[i] = pr->text + (2 * i + 1) * DA_CAPTION_MAX;
    }
    return DA_OK;
}

/* ---- writing -------------------------------------------------------------------------- */

#define N_META 24

/* metadata under construction: values are malloc'd, keys are literals */
typedef struct meta_list {
    da_st_meta m[N_META];
    int n, nomem;
} meta_list;

static void meta_add(meta_list *ml, const char *key, char *value)
{
    if (!value || ml->n == N_META) {   /* N_META bounds the keys written below */
        ml->nomem = 1;
        free(value);
        return;
    }
    ml->m[ml->n].key = (char *)key;
    ml->m[ml->n++].value = value;
}

static void meta_fmt(meta_list *ml, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void meta_fmt(meta_list *ml, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = NULL;
    if (vasprintf(&v, fmt, ap) < 0) v = NULL;
    va_end(ap);
    meta_add(ml, key, v);
}

static void meta_free(meta_list *ml)
{
    for (int i = 0; i < ml->n; i++) free(ml->m[i].value);
}

typedef enum { ARR_STRINGS, ARR_SEEDS, ARR_LONGS } arr_kind;

/* a JSON array of n items: strings, seeds as decimal strings, or integers */
static char *json_array(arr_kind kind, const void *items, int n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        if (kind == ARR_STRINGS) da_json_write_str(f, ((char *const *)items)[i]);
        else if (kind == ARR_SEEDS) fprintf(f, "\"%llu\"", (unsigned long long)((const uint64_t *)items)[i]);
        else fprintf(f, "%ld", ((const long *)items)[i]);
    }
    fputc(']', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void settings_meta(meta_list *ml, const da_pairs *pr)
{
    const da_rater_config *r = &pr->rater;
    meta_fmt(ml, "format", "%s", DA_PAIRS_FORMAT);
    meta_fmt(ml, "n", "%d", pr->n);
    meta_fmt(ml, "seed", "%llu", (unsigned long long)pr->seed);
    meta_fmt(ml, "split", "%s", split_names[pr->split == DA_SPLIT_HELDOUT]);
    meta_fmt(ml, "sampler", "%s", da_sampler_name(pr->opts.sampler));
    meta_fmt(ml, "steps", "%d", pr->opts.steps);
    meta_fmt(ml, "cfg", "%.9g", (double)pr->opts.cfg);   /* %.9g: every float reads back exactly */
    meta_fmt(ml, "eta", "%.9g", (double)pr->opts.eta);
    meta_fmt(ml, "batch", "%d", pr->batch);
    meta_fmt(ml, "unet", "%s", pr->unet);
    meta_fmt(ml, "different_prompt_fraction", "%.9g", (double)pr->different_prompt_fraction);
    meta_fmt(ml, "candidates", "%ld", pr->candidates);
    meta_fmt(ml, "ties_dropped", "%ld", pr->ties_dropped);
    meta_fmt(ml, "rater",
             "{\"w_faith\": %.9g, \"w_size\": %.9g, \"w_centre\": %.9g, \"w_contrast\": %.9g, "
             "\"temperature\": %.9g, \"tie_margin\": %.9g}",
             (double)r->w_faith, (double)r->w_size, (double)r->w_centre, (double)r->w_contrast,
             (double)r->temperature, (double)r->tie_margin);
    meta_fmt(ml, "weights", "%s", pr->weights);
    meta_fmt(ml, "vae_scale_factor", "%.9g", (double)pr->vae_scale_factor);
    /* only style pairs carry it: a rater-labelled file keeps the bytes it had before the key existed */
    if (pr->style[0]) meta_fmt(ml, "style", "%s", pr->style);
}

da_status da_pairs_save(const da_pairs *pr, const char *path)
{
    if (!pr || !path || pr->n < 1 || !pr->latents_w)
        return da_fail(DA_ERR_INVALID, "da_pairs_save: no pairs to write to %s", path ? path : "(null)");
    if (!pr->unet[0]) return da_fail(DA_ERR_INVALID, "da_pairs_save: empty unet name");
    da_style style;
    if (pr->style[0] && (memchr(pr->style, 0, sizeof pr->style) == NULL || da_style_parse(pr->style, &style)))
        return da_fail(DA_ERR_INVALID, "da_pairs_save: style '%.*s' is not a style name (plain, outline)",
                       (int)sizeof pr->style, pr->style);
    if (!(pr->vae_scale_factor > 0.0f && isfinite(pr->vae_scale_factor)))   /* the loader would refuse it */
        return da_fail(DA_ERR_INVALID, "da_pairs_save: VAE scale factor %g is not a positive number",
                       (double)pr->vae_scale_factor);
    meta_list ml = {.n = 0, .nomem = 0};
    settings_meta(&ml, pr);
    meta_add(&ml, "prompts_w", json_array(ARR_STRINGS, pr->prompts_w, pr->n));
    meta_add(&ml, "prompts_l", json_array(ARR_STRINGS, pr->prompts_l, pr->n));
    meta_add(&ml, "seeds_w", json_array(ARR_SEEDS, pr->seeds_w, pr->n));
    meta_add(&ml, "seeds_l", json_array(ARR_SEEDS, pr->seeds_l, pr->n));
    meta_add(&ml, "candidate_index", json_array(ARR_LONGS, pr->candidate, pr->n));
    da_status st = DA_OK;
    if (ml.nomem) st = da_fail(DA_ERR_NOMEM, "pairs: out of memory writing %s", path);
    int N = pr->n, C = pr->channels, h = pr->height, w = pr->width;
    da_st_entry e[5] = {
        {"latents_w", pr->latents_w, 4, {N, C, h, w}}, {"latents_l", pr->latents_l, 4, {N, C, h, w}},
        {"utility_w", pr->utility_w, 1, {N}},          {"utility_l", pr->utility_l, 1, {N}},
        {"prob_w", pr->prob_w, 1, {N}},
    };
    if (st == DA_OK) st = da_st_write(path, e, 5, ml.m, ml.n);
    meta_free(&ml);
    return st;
}

/* ---- reading -------------------------------------------------------------------------- */

/* The metadata readers are core's (safetensors_meta.h), with no file name:
 * da_pairs_load puts the path in front of every message. */

/* the whole of s as a finite float: strtof turns an overflow into inf,
 * which isfinite refuses (the rater's numbers, inside its JSON object) */
static int parse_float(const char *s, float *out)
{
    char *end;
    float x = strtof(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

/* n prompts the text encoder can read, into rows[i] (DA_CAPTION_MAX bytes each) */
static da_status load_prompts(const da_safetensors *st, const char *key, int n, char **rows)
{
    da_json_value v;
    da_status s = da_st_meta_json(st, NULL, key, DA_JSON_ARRAY, n, &v);
    for (int i = 0; i < n && s == DA_OK; i++) {
        const da_json_value *it = &v.items[i];
        if (it->type != DA_JSON_STRING || it->len >= DA_CAPTION_MAX || strlen(it->str) != it->len) {
            s = da_fail(DA_ERR_FORMAT, "%s[%d] is not a prompt string of at most %d bytes", key, i, DA_CAPTION_MAX - 1);
            break;
        }
        memcpy(rows[i], it->str, it->len + 1);
        int ids[DA_MAX_TOKENS];
        uint8_t keep[DA_MAX_TOKENS];
        if (da_prompt_tokens(rows[i], ids, keep) != DA_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", da_last_error());
            s = da_fail(DA_ERR_FORMAT, "%s[%d] '%s': %s", key, i, rows[i], why);
        }
    }
    da_json_free(&v);
    return s;
}

/* n seeds written as decimal strings */
static da_status load_seeds(const da_safetensors *st, const char *key, int n, uint64_t *seeds)
{
    da_json_value v;
    da_status s = da_st_meta_json(st, NULL, key, DA_JSON_ARRAY, n, &v);
    for (int i = 0; i < n && s == DA_OK; i++)
        if (v.items[i].type != DA_JSON_STRING || da_parse_u64(v.items[i].str, &seeds[i]))
            s = da_fail(DA_ERR_FORMAT, "%s[%d] is not a seed (a string of decimal digits)", key, i);
    da_json_free(&v);
    return s;
}

/* n increasing candidate indices */
static da_status load_candidates(const da_safetensors *st, int n, long *cand)
{
    da_json_value v;
    da_status s = da_st_meta_json(st, NULL, "candidate_index", DA_JSON_ARRAY, n, &v);
    for (int i = 0; i < n && s == DA_OK; i++) {
        uint64_t x;
        if (da_json_to_u64(&v.items[i], &x) || x > (uint64_t)DA_PAIRS_MAX_N * 1000 || (i && (long)x <= cand[i - 1]))
            s = da_fail(DA_ERR_FORMAT, "candidate_index[%d] is not a candidate index above the previous one", i);
        else cand[i] = (long)x;
    }
    da_json_free(&v);
    return s;
}

static da_status load_rater(const da_safetensors *st, da_rater_config *r)
{
    static const char *const keys[6] = {"w_faith", "w_size", "w_centre", "w_contrast", "temperature", "tie_margin"};
    float *dst[6] = {&r->w_faith, &r->w_size, &r->w_centre, &r->w_contrast, &r->temperature, &r->tie_margin};
    da_json_value v;
    da_status s = da_st_meta_json(st, NULL, "rater", DA_JSON_OBJECT, -1, &v);
    for (int k = 0; k < 6 && s == DA_OK; k++) {
        const da_json_value *m = NULL;
        for (int i = 0; i < v.n && !m; i++)
            if (!strcmp(v.items[i].key, keys[k])) m = &v.items[i];
        if (!m || m->type != DA_JSON_NUMBER) s = da_fail(DA_ERR_FORMAT, "metadata 'rater' has no number '%s'", keys[k]);
        else if (parse_float(m->str, dst[k]))
            s = da_fail(DA_ERR_FORMAT, "metadata 'rater': '%s' = %s is not a finite float", keys[k], m->str);
    }
    da_json_free(&v);
    return s;
}

/* seed, split and the sampling options */
static da_status load_sampling(const da_safetensors *st, da_pairs *o)
{
    const char *v;
    long steps = 0, batch = 0;
    da_status s = da_st_meta_u64(st, NULL, "seed", &o->seed);
    if (s != DA_OK) return s;
    if (!(v = da_st_meta_need(st, NULL, "split"))) return DA_ERR_FORMAT;
    if (strcmp(v, "train") && strcmp(v, "heldout"))
        return da_fail(DA_ERR_FORMAT, "metadata 'split' = '%s': expected train or heldout", v);
    o->split = strcmp(v, "train") ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN;
    if (!(v = da_st_meta_need(st, NULL, "sampler"))) return DA_ERR_FORMAT;
    if (da_sampler_parse(v, &o->opts.sampler) != DA_OK)
        return da_fail(DA_ERR_FORMAT, "metadata 'sampler' = '%s': expected ddim, ddpm or euler", v);
    s = da_st_meta_long(st, NULL, "steps", 1, 1000000, &steps);
    if (s == DA_OK) s = da_st_meta_float(st, NULL, "cfg", &o->opts.cfg);
    if (s == DA_OK) s = da_st_meta_float(st, NULL, "eta", &o->opts.eta);
    if (s == DA_OK) s = da_st_meta_long(st, NULL, "batch", 1, DA_PAIRS_MAX_BATCH, &batch);
    if (s == DA_OK) s = da_st_meta_float(st, NULL, "different_prompt_fraction", &o->different_prompt_fraction);
    o->opts.steps = (int)steps;
    o->batch = (int)batch;
    return s;
}

/* candidates labelled, ties among them, the rater that labelled them */
static da_status load_labelling(const da_safetensors *st, da_pairs *o)
{
    da_status s = da_st_meta_long(st, NULL, "candidates", o->n, (long)DA_PAIRS_MAX_N * 1000, &o->candidates);
    long ties = o->candidates - o->n;   /* every candidate not kept tied */
    if (s == DA_OK) s = da_st_meta_long(st, NULL, "ties_dropped", ties, ties, &o->ties_dropped);
    if (s == DA_OK) s = load_rater(st, &o->rater);
    return s;
}

/* the models the pairs came from: UNet name, weights directory, VAE scale */
static da_status load_models(const da_safetensors *st, da_pairs *o)
{
    const char *v;
    if (!(v = da_st_meta_need(st, NULL, "unet"))) return DA_ERR_FORMAT;
    if (!*v || strlen(v) >= sizeof o->unet)
        return da_fail(DA_ERR_FORMAT, "metadata 'unet' empty or longer than %d bytes", (int)sizeof o->unet - 1);
    snprintf(o->unet, sizeof o->unet, "%s", v);
    if (!(v = da_st_meta_need(st, NULL, "weights"))) return DA_ERR_FORMAT;
    if (strlen(v) >= sizeof o->weights)
        return da_fail(DA_ERR_FORMAT, "metadata 'weights' longer than %d bytes", (int)sizeof o->weights - 1);
    snprintf(o->weights, sizeof o->weights, "%s", v);
    da_status s = da_st_meta_float(st, NULL, "vae_scale_factor", &o->vae_scale_factor);
    if (s == DA_OK && !(o->vae_scale_factor > 0.0f))
        s = da_fail(DA_ERR_FORMAT, "metadata 'vae_scale_factor' %g must be > 0", (double)o->vae_scale_factor);
    return s;
}

/* the winners' style of style pairs; absent (every rater-labelled file): "" */
static da_status load_style(const da_safetensors *st, da_pairs *o)
{
    const char *v = da_st_meta_get(st, "style");
    da_style style;
    o->style[0] = '\0';
    if (!v) return DA_OK;
    if (strlen(v) >= sizeof o->style || da_style_parse(v, &style) != DA_OK)
        return da_fail(DA_ERR_FORMAT, "metadata 'style' = '%.40s': expected plain or outline", v);
    snprintf(o->style, sizeof o->style, "%s", v);
    return DA_OK;
}

/* what the generator would have refused is refused here too, and every
 * pair comes from a labelled candidate */
static da_status check_loaded(const da_pairs *o)
{
    da_pairs_config c = da_pairs_config_default();
    c.n = o->n;
    c.seed = o->seed;
    c.split = o->split;
    c.opts = o->opts;
    c.batch = o->batch;
    c.rater = o->rater;
    c.different_prompt_fraction = o->different_prompt_fraction;
    c.unet_name = o->unet;
    c.weights = o->weights;
    da_status s = da_pairs_check(&c, DA_ERR_FORMAT, "metadata");
    if (s == DA_OK && o->candidate[o->n - 1] >= o->candidates)
        s = da_fail(DA_ERR_FORMAT, "candidate_index[%d] = %ld is not below candidates = %ld", o->n - 1,
                    o->candidate[o->n - 1], o->candidates);
    return s;
}

/* check a latent tensor is (n, C, h, w) and return its shape */
static da_status latent_shape(const da_safetensors *st, const char *name, int n, int shape[4])
{
    const da_st_tensor *t = da_st_find(st, name);
    if (!t) return da_fail(DA_ERR_FORMAT, "tensor '%s' is missing", name);
    if (t->ndim != 4) return da_fail(DA_ERR_FORMAT, "tensor '%s' has %d dims, expected 4 (N, C, h, w)", name, t->ndim);
    if (t->shape[0] != n)
        return da_fail(DA_ERR_FORMAT, "tensor '%s' has %lld rows but metadata n is %d", name, (long long)t->shape[0], n);
    shape[0] = n;
    for (int d = 1; d < 4; d++) {
        if (t->shape[d] < 1 || t->shape[d] > MAX_LATENT_DIM)
            return da_fail(DA_ERR_FORMAT, "tensor '%s': dim %d is %lld, not in [1, %d]", name, d, (long long)t->shape[d],
                           MAX_LATENT_DIM);
        shape[d] = (int)t->shape[d];
    }
    return DA_OK;
}

static da_status load_tensors(const da_safetensors *st, da_pairs *o)
{
    int sw[4], sl[4], n = o->n;
    da_status s = latent_shape(st, "latents_w", n, sw);
    if (s == DA_OK) s = latent_shape(st, "latents_l", n, sl);
    if (s == DA_OK && memcmp(sw, sl, sizeof sw))
        s = da_fail(DA_ERR_FORMAT, "latents_w (%d, %d, %d, %d) and latents_l (%d, %d, %d, %d) differ in shape", sw[0],
                    sw[1], sw[2], sw[3], sl[0], sl[1], sl[2], sl[3]);
    if (s == DA_OK) s = da_pairs_alloc(o, n, sw[1], sw[2], sw[3]);
    if (s != DA_OK) return s;
    da_st_to_f32(st, da_st_find(st, "latents_w"), o->latents_w);
    da_st_to_f32(st, da_st_find(st, "latents_l"), o->latents_l);
    s = da_st_read(st, "utility_w", o->utility_w, 1, &n);
    if (s == DA_OK) s = da_st_read(st, "utility_l", o->utility_l, 1, &n);
    if (s == DA_OK) s = da_st_read(st, "prob_w", o->prob_w, 1, &n);
    for (int i = 0; i < n && s == DA_OK; i++) {
        if (!isfinite(o->utility_w[i]) || !isfinite(o->utility_l[i]))
            s = da_fail(DA_ERR_FORMAT, "utility_w[%d] = %g or utility_l[%d] = %g is not finite", i,
                        (double)o->utility_w[i], i, (double)o->utility_l[i]);
        else if (!(o->prob_w[i] >= 0.0f && o->prob_w[i] <= 1.0f))   /* NaN fails too */
            s = da_fail(DA_ERR_FORMAT, "prob_w[%d] = %g is not a probability", i, (double)o->prob_w[i]);
    }
    return s;
}

static da_status load_all(const da_safetensors *st, da_pairs *o)
{
    const char *fmt = da_st_meta_get(st, "format");
    if (!fmt) return da_fail(DA_ERR_FORMAT, "not a pairs file: no 'format' metadata");
    if (strcmp(fmt, DA_PAIRS_FORMAT))
        return da_fail(DA_ERR_FORMAT, "format '%s', expected '%s'", fmt, DA_PAIRS_FORMAT);
    long n;
    da_status s = da_st_meta_long(st, NULL, "n", 1, DA_PAIRS_MAX_N, &n);
    o->n = (int)n;
    if (s == DA_OK) s = load_tensors(st, o);
    if (s == DA_OK) s = load_prompts(st, "prompts_w", o->n, o->prompts_w);
    if (s == DA_OK) s = load_prompts(st, "prompts_l", o->n, o->prompts_l);
    if (s == DA_OK) s = load_seeds(st, "seeds_w", o->n, o->seeds_w);
    if (s == DA_OK) s = load_seeds(st, "seeds_l", o->n, o->seeds_l);
    if (s == DA_OK) s = load_candidates(st, o->n, o->candidate);
    if (s == DA_OK) s = load_sampling(st, o);
    if (s == DA_OK) s = load_labelling(st, o);
    if (s == DA_OK) s = load_models(st, o);
    if (s == DA_OK) s = load_style(st, o);
    if (s == DA_OK) s = check_loaded(o);
    return s;
}

da_status da_pairs_load(const char *path, da_pairs *out)
{
    memset(out, 0, sizeof *out);
    if (!path) return da_fail(DA_ERR_INVALID, "da_pairs_load: NULL path");
    /* The loaders' rule (da_error_named): a file that cannot be opened gets
     * a message of its own; after that every message starts with the path:
     * da_st_open names the file only when open() fails (its parser's
     * messages name nothing), and the checks below never do. */
    if (access(path, R_OK) != 0)
        return da_fail(DA_ERR_IO, "cannot open pairs file %s: %s", path, strerror(errno));
    da_safetensors *st;
    da_status s = da_st_open(path, &st);
    if (s != DA_OK) return da_error_named(s, path);
    s = load_all(st, out);
    da_st_close(st);
    if (s != DA_OK) {
        da_pairs_free(out);
        return da_error_named(s, path);
    }
    return DA_OK;
}
