/* Preference pairs (docs/pairs.md):
 *
 *   for candidate k = 0, 1, 2, ...:
 *     q_a = caption of a scene of the split         (prompt stream)
 *     q_b = q_a, or with probability F another one  (other-prompt stream)
 *     x_a = pipeline(q_a, seed(k, 0)),  x_b = pipeline(q_b, seed(k, 1))
 *     u_a = utility(x_a, q_a),  u_b = utility(x_b, q_b)    (noiseless rater)
 *     label = rater(u_a, u_b, label stream): A, B or a tie (dropped)
 *   until n pairs are kept; each is stored winner first.
 *
 * The images form one stream A_0, B_0, A_1, B_1, ... generated in pipeline
 * calls of exactly `batch` images: with OpenBLAS an image's bits depend on
 * how many rows its GEMMs had, so a fixed chunking (never one sized by how
 * many pairs are still missing) is what makes a file repeat bit for bit.
 * Every random choice comes from the seed through separate streams, so the
 * prompts of A images do not depend on F and labels do not move prompts. */
#include "eval/pairs.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"

enum { STREAM_PROMPTS = 1, STREAM_OTHER = 2, STREAM_LABELS = 3, STREAM_IMAGES = 4 };
#define OTHER_TRIES 64        /* draws for a prompt that differs from A's: 1-2 needed in practice */
#define MAX_LATENT_DIM 4096   /* a sanity bound on C, h, w read from a file */

static const char *const split_names[2] = {"train", "heldout"};

da_pairs_config da_pairs_config_default(void)
{
    da_pairs_config c = {
        .n = 1000, .seed = 0, .split = DA_SPLIT_TRAIN, .opts = da_sample_opts_default(), .batch = 8,
        .rater = da_rater_config_default(), .different_prompt_fraction = 0.0f, .max_attempts = 10,
        .unet_name = "unet", .weights = NULL, .progress = 0,
    };
    return c;
}

/* The rater's numbers: finite, and a temperature that da_rater_prob can
 * divide by (0 would turn every label into the noiseless one). */
static da_status check_rater(const da_rater_config *r, da_status code, const char *who)
{
    const float v[6] = {r->w_faith, r->w_size, r->w_centre, r->w_contrast, r->temperature, r->tie_margin};
    for (int i = 0; i < 6; i++)
        if (!isfinite(v[i])) return da_fail(code, "%s: rater numbers must be finite", who);
    if (!(r->temperature > 0.0f))
        return da_fail(code, "%s: rater temperature %g must be > 0", who, (double)r->temperature);
    if (!(r->tie_margin >= 0.0f))
        return da_fail(code, "%s: rater tie margin %g must be >= 0", who, (double)r->tie_margin);
    return DA_OK;
}

/* The checks of da_pairs_config_check, shared with the loader (which
 * reports code DA_ERR_FORMAT and who "metadata"). */
static da_status check_config(const da_pairs_config *c, da_status code, const char *who)
{
    if (c->n < 1 || c->n > DA_PAIRS_MAX_N)
        return da_fail(code, "%s: n %d not in [1, %d]", who, c->n, DA_PAIRS_MAX_N);
    if (c->batch < 1 || c->batch > DA_PAIRS_MAX_BATCH)
        return da_fail(code, "%s: batch %d not in [1, %d]", who, c->batch, DA_PAIRS_MAX_BATCH);
    if (c->split != DA_SPLIT_TRAIN && c->split != DA_SPLIT_HELDOUT)
        return da_fail(code, "%s: unknown split %d", who, (int)c->split);
    if (!(c->different_prompt_fraction >= 0.0f && c->different_prompt_fraction <= 1.0f))
        return da_fail(code, "%s: different-prompt fraction %g not in [0, 1]", who,
                       (double)c->different_prompt_fraction);
    if (c->max_attempts < 1 || c->max_attempts > 1000)
        return da_fail(code, "%s: max attempts %d not in [1, 1000]", who, c->max_attempts);
    if (c->opts.steps < 1) return da_fail(code, "%s: steps %d must be >= 1", who, c->opts.steps);
    if (!isfinite(c->opts.cfg)) return da_fail(code, "%s: guidance weight must be finite", who);
    if (!(c->opts.eta >= 0.0f && c->opts.eta <= 1e6f))
        return da_fail(code, "%s: eta %g must be >= 0", who, (double)c->opts.eta);
    if (c->opts.eta != 0.0f && c->opts.sampler != DA_SAMPLER_DDIM)
        return da_fail(code, "%s: eta is a DDIM option; the %s sampler has none", who,
                       da_sampler_name(c->opts.sampler));
    da_status s = check_rater(&c->rater, code, who);
    if (s != DA_OK) return s;
    /* both go into the safetensors metadata, which must be UTF-8: refused
     * here, not when the file is written after all the sampling */
    const char *u = c->unet_name ? c->unet_name : "unet";
    if (!*u || strlen(u) >= DA_PAIRS_UNET_MAX || !da_json_utf8_valid(u, strlen(u)))
        return da_fail(code, "%s: unet name '%s' empty, longer than %d bytes or not UTF-8", who, u,
                       DA_PAIRS_UNET_MAX - 1);
    const char *w = c->weights ? c->weights : "";
    if (strlen(w) >= DA_PAIRS_WEIGHTS_MAX || !da_json_utf8_valid(w, strlen(w)))
        return da_fail(code, "%s: weights path '%s' longer than %d bytes or not UTF-8", who, w,
                       DA_PAIRS_WEIGHTS_MAX - 1);
    return DA_OK;
}

da_status da_pairs_config_check(const da_pairs_config *c)
{
    if (!c) return da_fail(DA_ERR_INVALID, "pairs: NULL config");
    return check_config(c, DA_ERR_INVALID, "pairs");
}

/* ---- seeds and the candidate stream ---------------------------------------------- */

/* one splitmix64 step: add its increment, then its finaliser (docs/pairs.md
 * spells it out for a reimplementation); a bijection that spreads nearby
 * seeds apart */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t stream_seed(uint64_t seed, int stream) { return mix64(seed ^ mix64((uint64_t)stream)); }

/* da_rng_seed, like torch.manual_seed, keeps only the low 32 bits: image
 * seeds are consecutive 32-bit numbers from a hashed base, so no two images
 * of a file share noise (below 2^31 candidates) */
uint64_t da_pairs_image_seed(uint64_t seed, long cand, int k)
{
    return (uint32_t)(stream_seed(seed, STREAM_IMAGES) + 2u * (uint64_t)cand + (uint64_t)k);
}

typedef struct planner {
    const da_pairs_config *c;
    da_rng prompts, other;
    long image;                       /* next image of the stream */
    char text_b[DA_CAPTION_MAX];      /* B's prompt, decided with A's */
} planner;

static void planner_init(planner *pl, const da_pairs_config *c)
{
    pl->c = c;
    pl->image = 0;
    da_rng_seed(&pl->prompts, stream_seed(c->seed, STREAM_PROMPTS));
    da_rng_seed(&pl->other, stream_seed(c->seed, STREAM_OTHER));
}

/* the caption of a fresh scene of the split, with the training phrasing */
static da_status draw_prompt(da_rng *rng, da_split split, char *text)
{
    da_scene s;
    da_status st = da_world_sample(rng, split, &s);
    return st ? st : da_world_caption(rng, &s, text, DA_CAPTION_MAX);
}

/* 1 when the two prompts ask for the same thing (equal parsed specs) */
static int same_request(const char *a, const char *b)
{
    da_scene x, y;
    memset(&x, 0, sizeof x);
    memset(&y, 0, sizeof y);
    if (da_parse_prompt(a, &x) != DA_OK || da_parse_prompt(b, &y) != DA_OK) return !strcmp(a, b);
    return !memcmp(&x, &y, sizeof x);
}

/* B's prompt of a different-prompt candidate: redrawn until it asks for
 * something else than A's */
static da_status draw_other(planner *pl, const char *text_a)
{
    for (int t = 0; t < OTHER_TRIES; t++) {
        da_status st = draw_prompt(&pl->other, pl->c->split, pl->text_b);
        if (st != DA_OK) return st;
        if (!same_request(text_a, pl->text_b)) return DA_OK;
    }
    return da_fail(DA_ERR_RANGE, "pairs: no prompt different from '%s' in %d draws", text_a, OTHER_TRIES);
}

/* prompt and seed of the next image of the stream */
static da_status planner_next(planner *pl, char *text, uint64_t *seed)
{
    long cand = pl->image / 2;
    int k = (int)(pl->image % 2);
    *seed = da_pairs_image_seed(pl->c->seed, cand, k);
    pl->image++;
    if (k == 1) {
        memcpy(text, pl->text_b, DA_CAPTION_MAX);
        return DA_OK;
    }
    da_status st = draw_prompt(&pl->prompts, pl->c->split, text);
    if (st != DA_OK) return st;
    float u;
    da_rand(&pl->prompts, &u, 1);   /* drawn for every candidate: A's prompts never depend on F */
    if (u < pl->c->different_prompt_fraction) return draw_other(pl, text);
    memcpy(pl->text_b, text, DA_CAPTION_MAX);
    return DA_OK;
}

da_status da_pairs_plan(const da_pairs_config *c, long n_images, char *prompts, uint64_t *seeds)
{
    da_status st = da_pairs_config_check(c);
    if (st != DA_OK) return st;
    if (n_images < 0 || (n_images && (!prompts || !seeds))) return da_fail(DA_ERR_INVALID, "da_pairs_plan: bad arguments");
    planner pl;
    planner_init(&pl, c);
    for (long i = 0; i < n_images && st == DA_OK; i++) st = planner_next(&pl, prompts + (size_t)i * DA_CAPTION_MAX, &seeds[i]);
    return st;
}

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

/* room for n pairs of (C, h, w) latents; the prompt pointers are set to
 * their rows of pr->text (all empty) */
static da_status pairs_alloc(da_pairs *pr, int n, int C, int h, int w)
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

/* ---- generation ------------------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One image of the stream as the labeller sees it. */
typedef struct shot {
    const float *latent;   /* (C, h, w) */
    float utility;
    uint64_t seed;
    const char *prompt;
} shot;

typedef struct labeller {
    const da_pairs_config *c;
    da_pairs *out;
    da_rng labels;
    size_t per;                  /* floats per latent */
    float *lat_a;                /* (C, h, w) image A, kept until its B arrives (maybe in the next chunk) */
    shot a;
    char text_a[DA_CAPTION_MAX];
} labeller;

static void keep_pair(labeller *lb, const shot *w, const shot *l, long cand)
{
    da_pairs *o = lb->out;
    int i = o->n++;
    memcpy(o->latents_w + (size_t)i * lb->per, w->latent, lb->per * sizeof(float));
    memcpy(o->latents_l + (size_t)i * lb->per, l->latent, lb->per * sizeof(float));
    o->utility_w[i] = w->utility;
    o->utility_l[i] = l->utility;
    o->prob_w[i] = da_rater_prob(&lb->c->rater, w->utility, l->utility);
    snprintf(o->prompts_w[i], DA_CAPTION_MAX, "%s", w->prompt);
    snprintf(o->prompts_l[i], DA_CAPTION_MAX, "%s", l->prompt);
    o->seeds_w[i] = w->seed;
    o->seeds_l[i] = l->seed;
    o->candidate[i] = cand;
}

/* image `image` of the stream: an A waits for its B; a B completes a
 * candidate, which the rater labels (one label draw per candidate, ties too) */
static void take_image(labeller *lb, long image, const shot *s)
{
    if (image % 2 == 0) {
        memcpy(lb->lat_a, s->latent, lb->per * sizeof(float));
        snprintf(lb->text_a, sizeof lb->text_a, "%s", s->prompt);
        lb->a = *s;
        lb->a.latent = lb->lat_a;
        lb->a.prompt = lb->text_a;
        return;
    }
    int label = da_rater_label(&lb->c->rater, lb->a.utility, s->utility, &lb->labels);
    lb->out->candidates++;
    if (label == 0) lb->out->ties_dropped++;
    else if (label > 0) keep_pair(lb, &lb->a, s, image / 2);
    else keep_pair(lb, s, &lb->a, image / 2);
}

/* buffers of one pipeline call of `batch` images */
typedef struct chunk {
    char *text;               /* (batch, DA_CAPTION_MAX) */
    const char **prompts;     /* (batch) rows of text */
    uint64_t *seeds;          /* (batch) */
    float *images;            /* (batch, 3, 32, 32) */
    float *latents;           /* (batch, C, h, w) */
} chunk;

static void chunk_free(chunk *ch)
{
    free(ch->text);
    free(ch->prompts);
    free(ch->seeds);
    free(ch->images);
    free(ch->latents);
}

static da_status chunk_alloc(chunk *ch, int B, size_t per)
{
    memset(ch, 0, sizeof *ch);
    ch->text = calloc((size_t)B, DA_CAPTION_MAX);
    ch->prompts = malloc((size_t)B * sizeof *ch->prompts);
    ch->seeds = malloc((size_t)B * sizeof *ch->seeds);
    ch->images = malloc((size_t)B * DA_IMG_FLOATS * sizeof(float));
    ch->latents = malloc((size_t)B * per * sizeof(float));
    if (!ch->text || !ch->prompts || !ch->seeds || !ch->images || !ch->latents)
        return da_fail(DA_ERR_NOMEM, "pairs: out of memory");
    for (int b = 0; b < B; b++) ch->prompts[b] = ch->text + (size_t)b * DA_CAPTION_MAX;
    return DA_OK;
}

/* "pairs  k/n ..." on stderr: redrawn on a terminal, else about ten lines a run */
static void progress_line(const da_pairs_config *c, const da_pairs *o, double t0, int *next)
{
    int tty = isatty(2), last = o->n == c->n;
    if (!c->progress || (!tty && !last && o->n < *next)) return;
    *next = o->n + (c->n / 10 > 0 ? c->n / 10 : 1);
    fprintf(stderr, "%spairs  %d/%d  candidates %ld  ties %ld  %.0f s%s", tty ? "\r" : "", o->n, c->n, o->candidates,
            o->ties_dropped, now_s() - t0, tty && !last ? "" : "\n");
}

/* generate one chunk, score its images and hand them to the labeller in
 * stream order, stopping as soon as n pairs are kept or the budget is spent */
static da_status run_chunk(da_pipeline *p, planner *pl, chunk *ch, labeller *lb, long budget)
{
    const da_pairs_config *c = lb->c;
    long image0 = pl->image;
    da_status st = DA_OK;
    for (int b = 0; b < c->batch && st == DA_OK; b++) st = planner_next(pl, ch->text + (size_t)b * DA_CAPTION_MAX, &ch->seeds[b]);
    if (st == DA_OK)
        st = da_pipeline_generate(p, &c->opts, ch->prompts, NULL, ch->seeds, c->batch, NULL, NULL, ch->images,
                                  ch->latents);
    for (int b = 0; b < c->batch && st == DA_OK && lb->out->n < c->n && lb->out->candidates < budget; b++) {
        da_rater_terms t;
        st = da_rater_utility(&c->rater, ch->images + (size_t)b * DA_IMG_FLOATS, ch->prompts[b], &t);
        if (st != DA_OK) break;
        shot s = {ch->latents + (size_t)b * lb->per, t.utility, ch->seeds[b], ch->prompts[b]};
        take_image(lb, image0 + b, &s);
    }
    return st;
}

static void record_settings(da_pairs *o, const da_pairs_config *c)
{
    o->seed = c->seed;
    o->split = c->split;
    o->opts = c->opts;
    o->batch = c->batch;
    snprintf(o->unet, sizeof o->unet, "%s", c->unet_name ? c->unet_name : "unet");
    snprintf(o->weights, sizeof o->weights, "%s", c->weights ? c->weights : "");
    o->different_prompt_fraction = c->different_prompt_fraction;
    o->rater = c->rater;
}

da_status da_pairs_generate(da_pipeline *p, const da_pairs_config *c, da_pairs *out)
{
    memset(out, 0, sizeof *out);
    if (!p) return da_fail(DA_ERR_INVALID, "da_pairs_generate: NULL pipeline");
    da_status st = da_pairs_config_check(c);
    if (st != DA_OK) return st;
    int C = p->vae->cfg.latent_channels, h = p->latent_h, w = p->latent_w;
    labeller lb = {.c = c, .out = out, .per = (size_t)C * h * w};
    chunk ch = {0};
    st = pairs_alloc(out, c->n, C, h, w);
    if (st == DA_OK) st = chunk_alloc(&ch, c->batch, lb.per);
    lb.lat_a = malloc(lb.per * sizeof(float));
    if (st == DA_OK && !lb.lat_a) st = da_fail(DA_ERR_NOMEM, "pairs: out of memory");
    record_settings(out, c);   /* out->n (0) counts the kept pairs from here on */
    out->vae_scale_factor = p->vae->cfg.scale_factor;
    planner pl;
    planner_init(&pl, c);
    da_rng_seed(&lb.labels, stream_seed(c->seed, STREAM_LABELS));
    long budget = (long)c->max_attempts * c->n;
    double t0 = now_s();
    int next = 0;
    while (st == DA_OK && out->n < c->n && out->candidates < budget) {
        st = run_chunk(p, &pl, &ch, &lb, budget);
        if (st == DA_OK) progress_line(c, out, t0, &next);
    }
    if (st == DA_OK && out->n < c->n)
        st = da_fail(DA_ERR_RANGE,
                     "pairs: only %d of %d pairs after %ld candidates (%ld ties, tie margin %g): the rater cannot "
                     "tell this model's images apart; raise max attempts or check the weights",
                     out->n, c->n, out->candidates, out->ties_dropped, (double)c->rater.tie_margin);
    chunk_free(&ch);
    free(lb.lat_a);
    return st;
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
}

da_status da_pairs_save(const da_pairs *pr, const char *path)
{
    if (!pr || !path || pr->n < 1 || !pr->latents_w)
        return da_fail(DA_ERR_INVALID, "da_pairs_save: no pairs to write to %s", path ? path : "(null)");
    if (!pr->unet[0]) return da_fail(DA_ERR_INVALID, "da_pairs_save: empty unet name");
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

/* the value of a metadata key; NULL after a failure naming the key */
static const char *meta_need(const da_safetensors *st, const char *key)
{
    const char *v = da_st_meta_get(st, key);
    if (!v) da_fail(DA_ERR_FORMAT, "metadata '%s' is missing", key);
    return v;
}

/* decimal digits only, no sign, no overflow */
static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static da_status meta_long(const da_safetensors *st, const char *key, long lo, long hi, long *out)
{
    const char *v = meta_need(st, key);
    if (!v) return DA_ERR_FORMAT;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return da_fail(DA_ERR_FORMAT, "metadata '%s' = '%s' is not an integer in [%ld, %ld]", key, v, lo, hi);
    *out = x;
    return DA_OK;
}

/* the whole of s as a finite float: strtof turns an overflow into inf,
 * which isfinite refuses (an underflow to 0 or a subnormal is a number) */
static int parse_float(const char *s, float *out)
{
    char *end;
    float x = strtof(s, &end);
    if (end == s || *end || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

static da_status meta_float(const da_safetensors *st, const char *key, float *out)
{
    const char *v = meta_need(st, key);
    if (!v) return DA_ERR_FORMAT;
    if (parse_float(v, out)) return da_fail(DA_ERR_FORMAT, "metadata '%s' = '%s' is not a finite number", key, v);
    return DA_OK;
}

/* parse a metadata value as JSON of the given type (and n items when n >= 0) */
static da_status meta_json(const da_safetensors *st, const char *key, da_json_type type, int n, da_json_value *v)
{
    memset(v, 0, sizeof *v);
    const char *s = meta_need(st, key);
    if (!s) return DA_ERR_FORMAT;
    char err[160];
    if (da_json_parse(s, strlen(s), v, err, sizeof err)) return da_fail(DA_ERR_FORMAT, "metadata '%s': %s", key, err);
    if (v->type == type && (n < 0 || v->n == n)) return DA_OK;
    int items = v->type == DA_JSON_ARRAY || v->type == DA_JSON_OBJECT ? v->n : 0;
    da_json_free(v);
    if (type == DA_JSON_ARRAY)
        return da_fail(DA_ERR_FORMAT, "metadata '%s' must be a JSON array of %d items (n), has %d", key, n, items);
    return da_fail(DA_ERR_FORMAT, "metadata '%s' must be a JSON object", key);
}

/* n prompts the text encoder can read, into rows[i] (DA_CAPTION_MAX bytes each) */
static da_status load_prompts(const da_safetensors *st, const char *key, int n, char **rows)
{
    da_json_value v;
    da_status s = meta_json(st, key, DA_JSON_ARRAY, n, &v);
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
    da_status s = meta_json(st, key, DA_JSON_ARRAY, n, &v);
    for (int i = 0; i < n && s == DA_OK; i++)
        if (v.items[i].type != DA_JSON_STRING || parse_u64(v.items[i].str, &seeds[i]))
            s = da_fail(DA_ERR_FORMAT, "%s[%d] is not a seed (a string of decimal digits)", key, i);
    da_json_free(&v);
    return s;
}

/* n increasing candidate indices */
static da_status load_candidates(const da_safetensors *st, int n, long *cand)
{
    da_json_value v;
    da_status s = meta_json(st, "candidate_index", DA_JSON_ARRAY, n, &v);
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
    da_status s = meta_json(st, "rater", DA_JSON_OBJECT, -1, &v);
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

static da_status load_settings(const da_safetensors *st, da_pairs *o)
{
    const char *v;
    long x;
    if (!(v = meta_need(st, "seed"))) return DA_ERR_FORMAT;
    if (parse_u64(v, &o->seed)) return da_fail(DA_ERR_FORMAT, "metadata 'seed' = '%s' is not a seed", v);
    if (!(v = meta_need(st, "split"))) return DA_ERR_FORMAT;
    if (strcmp(v, "train") && strcmp(v, "heldout"))
        return da_fail(DA_ERR_FORMAT, "metadata 'split' = '%s': expected train or heldout", v);
    o->split = strcmp(v, "train") ? DA_SPLIT_HELDOUT : DA_SPLIT_TRAIN;
    if (!(v = meta_need(st, "sampler"))) return DA_ERR_FORMAT;
    if (da_sampler_parse(v, &o->opts.sampler) != DA_OK)
        return da_fail(DA_ERR_FORMAT, "metadata 'sampler' = '%s': expected ddim, ddpm or euler", v);
    da_status s = meta_long(st, "steps", 1, 1000000, &x);
    o->opts.steps = (int)x;
    if (s == DA_OK) s = meta_float(st, "cfg", &o->opts.cfg);
    if (s == DA_OK) s = meta_float(st, "eta", &o->opts.eta);
    if (s == DA_OK) s = meta_long(st, "batch", 1, DA_PAIRS_MAX_BATCH, &x);
    o->batch = (int)x;
    if (s == DA_OK) s = meta_float(st, "different_prompt_fraction", &o->different_prompt_fraction);
    if (s == DA_OK) s = meta_long(st, "candidates", o->n, (long)DA_PAIRS_MAX_N * 1000, &o->candidates);
    if (s == DA_OK) s = meta_long(st, "ties_dropped", o->candidates - o->n, o->candidates - o->n, &o->ties_dropped);
    if (s == DA_OK) s = load_rater(st, &o->rater);
    if (s != DA_OK) return s;
    if (!(v = meta_need(st, "unet"))) return DA_ERR_FORMAT;
    if (!*v || strlen(v) >= sizeof o->unet)
        return da_fail(DA_ERR_FORMAT, "metadata 'unet' empty or longer than %d bytes", (int)sizeof o->unet - 1);
    snprintf(o->unet, sizeof o->unet, "%s", v);
    if (!(v = meta_need(st, "weights"))) return DA_ERR_FORMAT;
    if (strlen(v) >= sizeof o->weights)
        return da_fail(DA_ERR_FORMAT, "metadata 'weights' longer than %d bytes", (int)sizeof o->weights - 1);
    snprintf(o->weights, sizeof o->weights, "%s", v);
    s = meta_float(st, "vae_scale_factor", &o->vae_scale_factor);
    if (s == DA_OK && !(o->vae_scale_factor > 0.0f))
        s = da_fail(DA_ERR_FORMAT, "metadata 'vae_scale_factor' %g must be > 0", (double)o->vae_scale_factor);
    return s;
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
    da_status s = check_config(&c, DA_ERR_FORMAT, "metadata");
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
    if (s == DA_OK) s = pairs_alloc(o, n, sw[1], sw[2], sw[3]);
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
    da_status s = meta_long(st, "n", 1, DA_PAIRS_MAX_N, &n);
    o->n = (int)n;
    if (s == DA_OK) s = load_tensors(st, o);
    if (s == DA_OK) s = load_prompts(st, "prompts_w", o->n, o->prompts_w);
    if (s == DA_OK) s = load_prompts(st, "prompts_l", o->n, o->prompts_l);
    if (s == DA_OK) s = load_seeds(st, "seeds_w", o->n, o->seeds_w);
    if (s == DA_OK) s = load_seeds(st, "seeds_l", o->n, o->seeds_l);
    if (s == DA_OK) s = load_candidates(st, o->n, o->candidate);
    if (s == DA_OK) s = load_settings(st, o);
    if (s == DA_OK) s = check_loaded(o);
    return s;
}

/* the last error with the file name in front */
static da_status with_path(const char *path, da_status s)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", da_last_error());
    return da_fail(s, "%s: %s", path, msg);
}

da_status da_pairs_load(const char *path, da_pairs *out)
{
    memset(out, 0, sizeof *out);
    if (!path) return da_fail(DA_ERR_INVALID, "da_pairs_load: NULL path");
    /* A file that cannot be opened gets a message of its own; after that
     * every message gets the path in front: da_st_open names the file only
     * when open() fails (its parser's messages name nothing), and the checks
     * below never do. */
    if (access(path, R_OK) != 0)
        return da_fail(DA_ERR_IO, "cannot open pairs file %s: %s", path, strerror(errno));
    da_safetensors *st;
    da_status s = da_st_open(path, &st);
    if (s != DA_OK) return with_path(path, s);
    s = load_all(st, out);
    da_st_close(st);
    if (s != DA_OK) {
        da_pairs_free(out);
        return with_path(path, s);
    }
    return DA_OK;
}
