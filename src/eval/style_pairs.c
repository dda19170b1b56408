/* Style pairs: preference data for style alignment (Diffusion-RPO's own
 * evaluation), in the pairs file of pairs.h.
 *
 * The style. DA_STYLE_OUTLINE draws the scene as the plain render does and
 * then a 1 px line on every background pixel 4-adjacent to an object:
 * near-black (20, 20, 20) on white and gray backgrounds, near-white
 * (235, 235, 235) on black, where a dark line could not be seen. Object
 * pixels are untouched, so the detector finds the same objects and the
 * caption is as true as of the plain render (src/data/world.c).
 *
 * The detector. da_outline_score (src/data/detect.c) unmixes the pixels
 * around each detected object into background, object colour and outline
 * colour and sums the outline's share over a band (the object's rim, its
 * ring and the ring outside); that mass over the ring's size is 1 for an
 * outline however blurred and 0 for a plain render. Measured (tests/
 * test_style.c, 2000 + 2000 renders of train and held-out scenes):
 * accuracy 1.0000 at DA_OUTLINE_THRESHOLD 0.5 on renders (outline 1.000
 * each, plain 0.000), 1.0000 under noise sigma 0.1, 0.9995 under a 3x3 box
 * blur. Through the shipped VAE (encode, decode) the outline keeps only
 * about a fifth of its mass (mean score 0.18 against 0.02 for plain round
 * trips; threshold 0.06 tells them apart at 0.94) and the VAE pays for it
 * in content: it turns the line into a darker, one pixel larger object
 * (faithfulness 0.84 against 1.00). A model tuned on these pairs is
 * therefore judged against that ceiling, not against 1
 * (docs/shapes-world.md has the tables).
 *
 * The pairs. For candidate k = 0 .. n-1:
 *   scene_k, prompt_k = the world generator from scene seed k (train split)
 *   preferred latent  = scale_factor * VAE mean of render(scene_k, style)
 *   other latent      = the pipeline's sample for prompt_k with sample seed k
 *   utilities         = the rater's noiseless utility of both decoded
 *                       images under prompt_k; prob_w = da_rater_prob
 * Renders are encoded and samples generated in calls of exactly `batch`
 * images, so a file repeats bit for bit. The file records the usual
 * settings and the metadata key "style" (the style's name, e.g. "outline"),
 * which rater-labelled files do not have (da_pairs.style ""). */
#include "eval/style_pairs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "eval/chunks.h"
#include "eval/pairs_internal.h"

uint64_t da_style_scene_seed(uint64_t seed, long cand) { return da_pairs_image_seed(seed, cand, 0); }
uint64_t da_style_sample_seed(uint64_t seed, long cand) { return da_pairs_image_seed(seed, cand, 1); }

da_status da_style_candidate(uint64_t scene_seed, da_split split, da_style style, da_scene *s, char *caption,
                             float *img)
{
    if (!s || !caption || !img) return da_fail(DA_ERR_INVALID, "da_style_candidate: NULL argument");
    da_rng rng;
    da_rng_seed(&rng, scene_seed);
    da_status st = da_world_sample(&rng, split, s);
    if (st == DA_OK) st = da_world_caption(&rng, s, caption, DA_CAPTION_MAX);
    if (st == DA_OK) st = da_world_render_style(s, style, img);
    return st;
}

/* What the chunk callbacks share. */
typedef struct styler {
    const da_pairs_config *c;
    da_style style;
    da_pipeline *p;
    da_pairs *out;
    size_t per;           /* floats per latent */
    float *renders;       /* (batch, 3, 32, 32) the chunk's preferred images, rendered by plan_chunk */
    float *decoded;       /* (batch, 3, 32, 32) their latents decoded, for the rater */
} styler;

/* imgs (n, 3, 32, 32) in [0, 1] -> latents (n, C, h, w) in diffusion
 * space: the VAE mean times its scale factor (the mean, not a sample: the
 * latent itself, as the base UNet was trained on). */
static da_status encode_renders(da_pipeline *p, const float *imgs, int n, float *latents)
{
    da_tape *t = &p->tape;
    da_tape_reset(t);
    int shape[4] = {n, 3, DA_IMG, DA_IMG};
    da_tensor *x = da_tensor_new(t, 4, shape, 0);
    if (!x) return da_fail(DA_ERR_NOMEM, "style pairs: out of memory encoding %d renders", n);
    for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f * imgs[i] - 1.0f;   /* the VAE's [-1, 1] */
    da_tensor *mean, *logvar;
    da_status st = da_vae_encode(t, p->vae, x, &mean, &logvar);
    if (st != DA_OK) return st;
    float sf = p->vae->cfg.scale_factor;
    for (size_t i = 0; i < mean->size; i++) latents[i] = sf * mean->data[i];
    return DA_OK;
}

/* the chunk's prompts and sample seeds; the preferred images rendered */
static da_status plan_chunk(void *user, da_chunk *ch)
{
    styler *sy = user;
    for (int b = 0; b < ch->n; b++) {
        long k = ch->first + b;
        da_scene s;
        char *text = ch->text + (size_t)b * DA_CAPTION_MAX;
        da_status st = da_style_candidate(da_style_scene_seed(sy->c->seed, k), sy->c->split, sy->style, &s, text,
                                          sy->renders + (size_t)b * DA_IMG_FLOATS);
        if (st != DA_OK) return st;
        ch->prompts[b] = text;
        ch->seeds[b] = da_style_sample_seed(sy->c->seed, k);
    }
    return DA_OK;
}

/* pair k: the rendered winner (latent already in place), the sampled loser */
static da_status keep_pair(styler *sy, const da_chunk *ch, int b)
{
    da_pairs *o = sy->out;
    long k = ch->first + b;
    da_rater_terms tw, tl;
    da_status st = da_rater_utility(&sy->c->rater, sy->decoded + (size_t)b * DA_IMG_FLOATS, ch->prompts[b], &tw);
    if (st == DA_OK) st = da_rater_utility(&sy->c->rater, ch->images + (size_t)b * DA_IMG_FLOATS, ch->prompts[b], &tl);
    if (st != DA_OK) return st;
    memcpy(o->latents_l + (size_t)k * sy->per, ch->latents + (size_t)b * sy->per, sy->per * sizeof(float));
    o->utility_w[k] = tw.utility;
    o->utility_l[k] = tl.utility;
    o->prob_w[k] = da_rater_prob(&sy->c->rater, tw.utility, tl.utility);   /* may be < 1/2: the rater was not asked */
    snprintf(o->prompts_w[k], DA_CAPTION_MAX, "%s", ch->prompts[b]);
    snprintf(o->prompts_l[k], DA_CAPTION_MAX, "%s", ch->prompts[b]);
    o->seeds_w[k] = da_style_scene_seed(sy->c->seed, k);
    o->seeds_l[k] = ch->seeds[b];
    o->candidate[k] = k;
    o->n = (int)k + 1;
    return DA_OK;
}

/* the generated chunk: encode its renders, decode them for the rater, keep every pair */
static da_status score_chunk(void *user, const da_chunk *ch, int *stop)
{
    styler *sy = user;
    float *won = sy->out->latents_w + (size_t)ch->first * sy->per;   /* (n, C, h, w) */
    da_status st = encode_renders(sy->p, sy->renders, ch->n, won);
    if (st == DA_OK) st = da_pipeline_decode(sy->p, won, ch->n, sy->decoded);
    for (int b = 0; b < ch->n && st == DA_OK; b++) st = keep_pair(sy, ch, b);
    *stop = 0;
    return st;
}

/* "style pairs  k/n  S s" on stderr */
static void style_progress(void *user, da_ticker *t)
{
    const styler *sy = user;
    if (!da_ticker_due(t, sy->out->n, sy->c->n)) return;
    da_ticker_print(t, sy->out->n == sy->c->n, "style pairs  %d/%d  %.0f s", sy->out->n, sy->c->n,
                    da_now_s() - t->t0);
}

static void record_settings(da_pairs *o, const da_pairs_config *c, const da_pipeline *p, da_style style)
{
    snprintf(o->style, sizeof o->style, "%s", da_style_name(style));
    o->seed = c->seed;
    o->split = c->split;
    o->opts = c->opts;
    o->batch = c->batch;
    snprintf(o->unet, sizeof o->unet, "%s", c->unet_name ? c->unet_name : "unet");
    snprintf(o->weights, sizeof o->weights, "%s", c->weights ? c->weights : "");
    o->vae_scale_factor = p->vae->cfg.scale_factor;
    o->different_prompt_fraction = 0.0f;
    o->rater = c->rater;
    o->candidates = c->n;   /* every candidate is a pair */
    o->ties_dropped = 0;
}

da_status da_style_pairs_generate(da_pipeline *p, const da_pairs_config *c, da_style style, da_pairs *out)
{
    if (!out) return da_fail(DA_ERR_INVALID, "da_style_pairs_generate: NULL output");
    memset(out, 0, sizeof *out);
    if (!p || !c) return da_fail(DA_ERR_INVALID, "da_style_pairs_generate: NULL pipeline or config");
    da_status st = da_pairs_check(c, DA_ERR_INVALID, "style pairs");
    if (st != DA_OK) return st;
    if (c->different_prompt_fraction != 0.0f)
        return da_fail(DA_ERR_INVALID, "style pairs: different-prompt fraction %g must be 0 (both images answer one prompt)",
                       (double)c->different_prompt_fraction);
    if (!da_style_name(style)) return da_fail(DA_ERR_INVALID, "style pairs: unknown style %d", (int)style);
    int C = p->vae->cfg.latent_channels, h = p->latent_h, w = p->latent_w;
    styler sy = {.c = c, .style = style, .p = p, .out = out, .per = (size_t)C * h * w};
    st = da_pairs_alloc(out, c->n, C, h, w);
    sy.renders = malloc((size_t)c->batch * DA_IMG_FLOATS * sizeof(float));
    sy.decoded = malloc((size_t)c->batch * DA_IMG_FLOATS * sizeof(float));
    if (st == DA_OK && (!sy.renders || !sy.decoded)) st = da_fail(DA_ERR_NOMEM, "style pairs: out of memory");
    record_settings(out, c, p, style);   /* out->n (0) counts the pairs made from here on */
    da_chunks d = {.pipe = p, .opts = &c->opts, .batch = c->batch, .total = c->n, .keep_latents = 1,
                   .plan = plan_chunk, .plan_user = &sy, .score = score_chunk,
                   .progress = c->progress ? style_progress : NULL, .user = &sy};
    if (st == DA_OK) st = da_chunks_run(&d);
    free(sy.renders);
    free(sy.decoded);
    return st;
}
