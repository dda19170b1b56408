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
 * prompts of A images do not depend on F and labels do not move prompts.
 * The file (writer and loader) is pairs_io.c. */
#include "dalign/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json.h"
#include "eval/chunks.h"
#include "eval/pairs_internal.h"

enum { STREAM_PROMPTS = 1, STREAM_OTHER = 2, STREAM_LABELS = 3, STREAM_IMAGES = 4 };
#define OTHER_TRIES 64        /* draws for a prompt that differs from A's: 1-2 needed in practice */

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

da_status da_pairs_check(const da_pairs_config *c, da_status code, const char *who)
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
    return da_pairs_check(c, DA_ERR_INVALID, "pairs");
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

/* ---- generation ------------------------------------------------------------------------ */

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
    long budget;                 /* candidates to label at most */
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

/* A labeller's view of a chunk: images first .. first + n - 1 of the
 * stream, labelled in stream order until n pairs are kept or the budget of
 * candidates is spent (the rest of the chunk is dropped). */
static da_status label_chunk(void *user, const da_chunk *ch, int *stop)
{
    labeller *lb = user;
    const da_pairs_config *c = lb->c;
    da_status st = DA_OK;
    for (int b = 0; b < ch->n && lb->out->n < c->n && lb->out->candidates < lb->budget; b++) {
        da_rater_terms t;
        st = da_rater_utility(&c->rater, ch->images + (size_t)b * DA_IMG_FLOATS, ch->prompts[b], &t);
        if (st != DA_OK) break;
        shot s = {ch->latents + (size_t)b * lb->per, t.utility, ch->seeds[b], ch->prompts[b]};
        take_image(lb, ch->first + b, &s);
    }
    *stop = lb->out->n >= c->n || lb->out->candidates >= lb->budget;
    return st;
}

/* the prompts and seeds of a chunk: the next images of the candidate stream */
static da_status plan_chunk(void *user, da_chunk *ch)
{
    planner *pl = user;
    da_status st = DA_OK;
    for (int b = 0; b < ch->n && st == DA_OK; b++)
        st = planner_next(pl, ch->text + (size_t)b * DA_CAPTION_MAX, &ch->seeds[b]);
    return st;
}

/* "pairs  k/n ..." on stderr */
static void pairs_progress(void *user, da_ticker *t)
{
    const labeller *lb = user;
    const da_pairs *o = lb->out;
    if (!da_ticker_due(t, o->n, lb->c->n)) return;
    da_ticker_print(t, o->n == lb->c->n, "pairs  %d/%d  candidates %ld  ties %ld  %.0f s", o->n, lb->c->n,
                    o->candidates, o->ties_dropped, da_now_s() - t->t0);
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
    labeller lb = {.c = c, .out = out, .per = (size_t)C * h * w, .budget = (long)c->max_attempts * c->n};
    st = da_pairs_alloc(out, c->n, C, h, w);
    lb.lat_a = malloc(lb.per * sizeof(float));
    if (st == DA_OK && !lb.lat_a) st = da_fail(DA_ERR_NOMEM, "pairs: out of memory");
    record_settings(out, c);   /* out->n (0) counts the kept pairs from here on */
    out->vae_scale_factor = p->vae->cfg.scale_factor;
    planner pl;
    planner_init(&pl, c);
    da_rng_seed(&lb.labels, stream_seed(c->seed, STREAM_LABELS));
    /* total 0: full chunks of the endless candidate stream until label_chunk stops it */
    da_chunks d = {.pipe = p, .opts = &c->opts, .batch = c->batch, .total = 0, .keep_latents = 1,
                   .plan = plan_chunk, .plan_user = &pl, .score = label_chunk,
                   .progress = c->progress ? pairs_progress : NULL, .user = &lb};
    if (st == DA_OK) st = da_chunks_run(&d);
    if (st == DA_OK && out->n < c->n)
        st = da_fail(DA_ERR_RANGE,
                     "pairs: only %d of %d pairs after %ld candidates (%ld ties, tie margin %g): the rater cannot "
                     "tell this model's images apart; raise max attempts or check the weights",
                     out->n, c->n, out->candidates, out->ties_dropped, (double)c->rater.tie_margin);
    free(lb.lat_a);
    return st;
}
