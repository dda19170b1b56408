/* Rewards behind one interface (docs/evaluation.md): images (B, 3, 32, 32)
 * in [0, 1] + one prompt per image -> one score per image, higher is better.
 * The image-only rewards and faithfulness run per image (in parallel over
 * images: each writes its own score); clip and pref run their networks on
 * chunks of the batch with gradients off. A score never depends on the other
 * images of the batch (GroupNorm normalises per image), so batched == one by
 * one, bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/rewards.h"

#define CHUNK 32              /* images per network forward: bounds the tape's memory */
#define ARENA_BYTES (8u << 20)

typedef enum { R_FAITHFUL, R_JPEG, R_JPEG_NEG, R_COLORFUL, R_CLIP, R_PREF, R_OUTLINE, N_REWARDS } reward_kind;

static const char *const NAMES[N_REWARDS] = {"faithful", "jpeg", "jpeg-neg", "colorful", "clip", "pref", "outline"};
static const int NEEDS_PROMPT[N_REWARDS] = {1, 0, 0, 0, 1, 1, 0};

struct da_reward {
    reward_kind kind;
    da_text_encoder *text;   /* clip */
    da_clip *clip;           /* clip */
    da_reward_net *net;      /* pref */
};

/* ------------------------------------------------------------------------ */
/* Loading the networks: DIR/NAME.json + DIR/NAME.safetensors               */
/* ------------------------------------------------------------------------ */

static da_status weight_paths(const char *dir, const char *name, char *json, char *st, size_t cap)
{
    if (snprintf(json, cap, "%s/%s.json", dir, name) >= (int)cap ||
        snprintf(st, cap, "%s/%s.safetensors", dir, name) >= (int)cap)
        return da_fail(DA_ERR_INVALID, "weights path too long: %s", dir);
    return DA_OK;
}

static da_status load_clip(da_reward *r, const char *dir)
{
    char json[4096], st[4096];
    da_text_config tc;
    da_clip_config cc;
    da_status s = weight_paths(dir, "text_encoder", json, st, sizeof json);
    if (!s) s = da_text_config_load(&tc, json);
    if (s) return s;
    if (tc.vocab_size < da_vocab_size() || tc.context < DA_MAX_TOKENS)
        return da_fail(DA_ERR_FORMAT, "%s: vocab_size %d / context %d cannot read the tokenizer's %d ids / %d tokens",
                       json, tc.vocab_size, tc.context, da_vocab_size(), DA_MAX_TOKENS);
    if (!(r->text = da_text_encoder_create(&tc, 0))) return DA_ERR_INVALID;
    if ((s = da_text_encoder_load(r->text, st))) return s;
    if ((s = weight_paths(dir, "clip", json, st, sizeof json)) || (s = da_clip_config_load(&cc, json))) return s;
    if (cc.image_size != DA_IMG || cc.in_channels != 3 || cc.embed_dim != tc.proj_dim)
        return da_fail(DA_ERR_FORMAT, "%s: needs image_size %d, in_channels 3 and embed_dim = the text proj_dim %d",
                       json, DA_IMG, tc.proj_dim);
    if (!(r->clip = da_clip_create(&cc, 0))) return DA_ERR_INVALID;
    return da_clip_load(r->clip, st);
}

static da_status load_pref(da_reward *r, const char *dir)
{
    char json[4096], st[4096];
    da_reward_net_config c;
    da_status s = weight_paths(dir, "reward_net", json, st, sizeof json);
    if (!s) s = da_reward_net_config_load(&c, json);
    if (s) return s;
    if (c.image_size != DA_IMG || c.vocab_size < da_vocab_size() || c.context < DA_MAX_TOKENS)
        return da_fail(DA_ERR_FORMAT, "%s: needs image_size %d, vocab_size >= %d and context >= %d", json, DA_IMG,
                       da_vocab_size(), DA_MAX_TOKENS);
    if (!(r->net = da_reward_net_create(&c, 0))) return DA_ERR_INVALID;
    return da_reward_net_load(r->net, st);
}

da_status da_reward_create(da_reward **out, const char *name, const char *weights_dir)
{
    if (!out || !name) return da_fail(DA_ERR_INVALID, "da_reward_create: NULL argument");
    *out = NULL;
    int k = 0;
    while (k < N_REWARDS && strcmp(NAMES[k], name)) k++;
    if (k == N_REWARDS)
        return da_fail(DA_ERR_INVALID, "unknown reward '%s' (valid: " DA_REWARD_NAMES ")", name);
    da_reward *r = calloc(1, sizeof *r);
    if (!r) return da_fail(DA_ERR_NOMEM, "out of memory");
    r->kind = (reward_kind)k;
    const char *dir = da_weights_dir(weights_dir);
    da_status s = DA_OK;
    if (r->kind == R_CLIP) s = load_clip(r, dir);
    if (r->kind == R_PREF) s = load_pref(r, dir);
    if (s) {
        da_reward_free(r);
        return s;
    }
    *out = r;
    return DA_OK;
}

const char *da_reward_name(const da_reward *r) { return NAMES[r->kind]; }

int da_reward_needs_prompt(const da_reward *r) { return NEEDS_PROMPT[r->kind]; }

void da_reward_free(da_reward *r)
{
    if (!r) return;
    da_text_encoder_free(r->text);
    da_clip_free(r->clip);
    da_reward_net_free(r->net);
    free(r);
}

/* ------------------------------------------------------------------------ */
/* Scoring                                                                  */
/* ------------------------------------------------------------------------ */

/* The outline detector's score of the image as saved: clamped to [0, 1]
 * first, like the other image-only rewards (the detector itself reads raw
 * values). No judged object: 0. */
static float outline_reward(const float *img)
{
    float x[DA_IMG_FLOATS];   /* (3, 32, 32) */
    for (int i = 0; i < DA_IMG_FLOATS; i++) x[i] = img[i] < 0.0f ? 0.0f : img[i] > 1.0f ? 1.0f : img[i];
    float v = 0.0f;
    (void)da_outline_score(x, &v, NULL);   /* fails only on NULL pointers */
    return v;
}

/* per image, independent outputs: safe to split over threads */
static da_status score_per_image(reward_kind kind, const float *images, const char *const *prompts, int B,
                                 float *scores)
{
    int bad = -1;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *img = images + (size_t)b * DA_IMG_FLOATS;
        float v = 0.0f;
        if (kind == R_FAITHFUL) {
            /* an unparsable prompt is satisfied by no image: 0 (docs/evaluation.md) */
            if (da_faithfulness(img, prompts[b], NULL, &v) != DA_OK) v = 0.0f;
        } else if (kind == R_COLORFUL) {
            v = da_colorfulness(img, DA_IMG, DA_IMG);
        } else if (kind == R_OUTLINE) {
            v = outline_reward(img);
        } else if (da_jpeg_kb(img, DA_IMG, DA_IMG, &v) != DA_OK) {
#pragma omp critical
            bad = b;
        } else if (kind == R_JPEG_NEG) {
            v = -v;
        }
        scores[b] = v;
    }
    if (bad >= 0) return da_fail(DA_ERR_INVALID, "reward %s: JPEG encoding of image %d failed", NAMES[kind], bad);
    return DA_OK;
}

/* ids, keep (n, DA_MAX_TOKENS) of n prompts; unknown words map to UNK */
static void tokenize_all(const char *const *prompts, int n, int *ids, uint8_t *keep)
{
    for (int b = 0; b < n; b++)
        da_tokenize(prompts[b], ids + (size_t)b * DA_MAX_TOKENS, keep + (size_t)b * DA_MAX_TOKENS, NULL);
}

/* CLIPScore of n <= CHUNK images on a reset tape */
static da_status score_clip(const da_reward *r, da_tape *t, const float *images, const char *const *prompts,
                            int n, float *scores)
{
    int ids[CHUNK * DA_MAX_TOKENS], eos[CHUNK];
    uint8_t keep[CHUNK * DA_MAX_TOKENS];
    tokenize_all(prompts, n, ids, keep);
    da_status s = da_text_eos_positions(eos, keep, n, DA_MAX_TOKENS);
    if (s) return s;
    da_tensor *feat = da_text_encoder_forward(t, r->text, ids, keep, n, DA_MAX_TOKENS);
    if (!feat) return DA_ERR_INVALID;
    da_tensor *txt = da_text_encoder_pool(t, r->text, feat, eos);
    if (!txt) return DA_ERR_INVALID;
    int shape[4] = {n, 3, DA_IMG, DA_IMG};
    da_tensor *x = da_tensor_new(t, 4, shape, 0);
    for (size_t i = 0; i < x->size; i++) x->data[i] = 2.0f * images[i] - 1.0f;  /* CLIP reads [-1, 1] */
    da_tensor *img = da_clip_image_forward(t, r->clip, x);
    if (!img) return DA_ERR_INVALID;
    da_clip_score(scores, img->data, txt->data, n, r->clip->cfg.embed_dim);
    return DA_OK;
}

static da_status score_pref(const da_reward *r, da_tape *t, const float *images, const char *const *prompts,
                            int n, float *scores)
{
    int ids[CHUNK * DA_MAX_TOKENS];
    uint8_t keep[CHUNK * DA_MAX_TOKENS];
    tokenize_all(prompts, n, ids, keep);
    int shape[4] = {n, 3, DA_IMG, DA_IMG};
    da_tensor *x = da_leaf(t, (float *)images, NULL, 4, shape);  /* read only: no gradient, no writes */
    da_tensor *out = da_reward_net_forward(t, r->net, x, ids, keep, DA_MAX_TOKENS);
    if (!out) return DA_ERR_INVALID;
    memcpy(scores, out->data, (size_t)n * sizeof(float));
    return DA_OK;
}

static da_status score_networks(const da_reward *r, const float *images, const char *const *prompts, int B,
                                float *scores)
{
    da_tape t;
    da_tape_init(&t, ARENA_BYTES);
    da_tape_set_grad(&t, 0);
    da_status s = DA_OK;
    for (int b0 = 0; b0 < B && !s; b0 += CHUNK) {
        int n = B - b0 < CHUNK ? B - b0 : CHUNK;
        da_tape_reset(&t);
        const float *img = images + (size_t)b0 * DA_IMG_FLOATS;
        s = r->kind == R_CLIP ? score_clip(r, &t, img, prompts + b0, n, scores + b0)
                              : score_pref(r, &t, img, prompts + b0, n, scores + b0);
    }
    da_tape_free(&t);
    return s;
}

da_status da_reward_score(const da_reward *r, const float *images, const char *const *prompts, int B,
                          float *scores)
{
    if (!r || !images || !scores || B < 0) return da_fail(DA_ERR_INVALID, "da_reward_score: bad argument");
    if (NEEDS_PROMPT[r->kind]) {
        if (!prompts) return da_fail(DA_ERR_INVALID, "reward %s needs a prompt per image", NAMES[r->kind]);
        for (int b = 0; b < B; b++)
            if (!prompts[b]) return da_fail(DA_ERR_INVALID, "reward %s: prompt %d is NULL", NAMES[r->kind], b);
    }
    if (B == 0) return DA_OK;
    if (r->kind == R_CLIP || r->kind == R_PREF) return score_networks(r, images, prompts, B, scores);
    return score_per_image(r->kind, images, prompts, B, scores);
}
