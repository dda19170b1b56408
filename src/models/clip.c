/* CLIP image tower and the contrastive (InfoNCE) loss (design §5).
 *
 *   h = conv_in(x)                                    (B, c0, S, S)
 *   for each block i: h = conv_i(silu(gn_i(h)))       stride 2: S -> S/2
 *   e = visual_projection(mean_HW(silu(norm_out(h)))) (B, embed_dim)
 *
 *   logits = min(exp(logit_scale), 100) * normalize(img) @ normalize(txt)^T
 *   loss   = (CE(logits, arange) + CE(logits^T, arange)) / 2
 *
 * The two cross-entropies are one: rows of [logits; logits^T] (2B, B) with
 * targets [0..B-1, 0..B-1], whose mean over 2B rows is exactly their average;
 * one small op (pair_logits) scales and stacks both matrices.
 * logit_scale is clamped at exp = 100 where it is used (the clamp passes no
 * gradient above it), instead of OpenCLIP's in-place clamp after each step:
 * the same effect with no optimiser hook. GroupNorm eps is PyTorch's 1e-5.
 * Own ops: row L2 normalisation and pair_logits (kernel pairs below). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "core/config.h"
#include "models/blocks.h"
#include "models/params.h"

#define GN_EPS 1e-5f
#define NORM_EPS 1e-12     /* F.normalize's eps: a zero row stays zero */
#define LOGIT_SCALE_MAX 100.0f
#define CFG_MAX 1000000

/* ------------------------------------------------------------------------ */
/* Config                                                                   */
/* ------------------------------------------------------------------------ */

da_clip_config da_clip_config_default(void)
{
    da_clip_config c = {.image_size = 32, .in_channels = 3, .n_blocks = 3,
                        .channels = {32, 64, 128, 128}, .groups = 8, .embed_dim = 128};
    return c;
}

da_status da_clip_config_check(const da_clip_config *c)
{
    if (c->n_blocks < 0 || c->n_blocks > DA_CLIP_MAX_BLOCKS)
        return da_fail(DA_ERR_INVALID, "clip config: n_blocks %d not in [0, %d]", c->n_blocks, DA_CLIP_MAX_BLOCKS);
    const int v[] = {c->image_size, c->in_channels, c->groups, c->embed_dim};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 1 || v[i] > CFG_MAX)
            return da_fail(DA_ERR_INVALID, "clip config: sizes must lie in [1, %d]", CFG_MAX);
    for (int i = 0; i <= c->n_blocks; i++)
        if (c->channels[i] < 1 || c->channels[i] > CFG_MAX || c->channels[i] % c->groups)
            return da_fail(DA_ERR_INVALID, "clip config: channels[%d] = %d must be in [1, %d] and divisible by groups %d",
                           i, c->channels[i], CFG_MAX, c->groups);
    return DA_OK;
}

/* one table drives the JSON reader and writer, in the order keys are written;
 * "channels" is a list of n_blocks + 1 integers */
static int clip_cfg_fields(void *cfg, da_cfg_list *ch, da_cfg_field *f)
{
    da_clip_config *c = cfg;
    *ch = (da_cfg_list){c->channels, &c->n_blocks, 1};
    da_cfg_field t[] = {
        {"image_size", DA_CFG_INT, 1, &c->image_size},
        {"in_channels", DA_CFG_INT, 1, &c->in_channels},
        {"channels", DA_CFG_INT_LIST, DA_CLIP_MAX_BLOCKS + 1, ch},
        {"groups", DA_CFG_INT, 1, &c->groups},
        {"embed_dim", DA_CFG_INT, 1, &c->embed_dim},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

static da_status clip_cfg_check_any(const void *c) { return da_clip_config_check(c); }

/* Strict: an object with exactly the known keys, integers in [0, CFG_MAX];
 * "channels" an array of 1 .. DA_CLIP_MAX_BLOCKS + 1 integers (n_blocks =
 * its length - 1). */
static const da_cfg_type CLIP_CFG = {sizeof(da_clip_config), clip_cfg_fields, clip_cfg_check_any, CFG_MAX};

/* temp file, fsync, rename: a crash never leaves a half-written config */
da_status da_clip_config_save(const da_clip_config *cfg, const char *path)
{
    da_status s = da_clip_config_check(cfg);
    return s ? s : da_cfg_save(&CLIP_CFG, cfg, path);
}

da_status da_clip_config_load(da_clip_config *cfg, const char *path) { return da_cfg_load(&CLIP_CFG, cfg, path); }

/* ------------------------------------------------------------------------ */
/* Create / init / load / save                                              */
/* ------------------------------------------------------------------------ */

da_clip *da_clip_create(const da_clip_config *cfg, int trainable)
{
    if (da_clip_config_check(cfg)) return NULL;
    da_clip *m = calloc(1, sizeof *m);
    if (!m) { da_fail(DA_ERR_NOMEM, "out of memory"); return NULL; }
    m->cfg = *cfg;
    da_params *p = &m->params;
    da_params_init(p);
    da_blk_add_tower(p, "visual", cfg->in_channels, cfg->channels, cfg->n_blocks, 0);
    da_blk_add_linear(p, "visual_projection", cfg->channels[cfg->n_blocks], cfg->embed_dim, 0);
    int scalar[1] = {0};
    da_params_add(p, "logit_scale", 0, scalar);
    if (da_params_alloc(p, trainable)) {
        da_clip_free(m);
        return NULL;
    }
    return m;
}

/* PyTorch's defaults (conv and Linear U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
 * GroupNorm weight 1 bias 0; models/init.c) and CLIP's own temperature:
 * logit_scale = log(1/0.07). */
void da_clip_init(da_clip *m, da_rng *rng)
{
    const da_init_rule own[] = {{"logit_scale", DA_INIT_CONST, da_logf(1.0f / 0.07f)}};
    da_init_params(&m->params, rng, own, 1);
}

da_status da_clip_load(da_clip *m, const char *path) { return da_params_load(&m->params, path); }

da_status da_clip_save(const da_clip *m, const char *path)
{
    return da_params_save(&m->params, path, NULL, 0);
}

void da_clip_free(da_clip *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Image tower                                                              */
/* ------------------------------------------------------------------------ */

/* images (B, C, S, S) -> (B, embed_dim) */
da_tensor *da_clip_image_forward(da_tape *t, const da_clip *m, da_tensor *images)
{
    const da_clip_config *c = &m->cfg;
    if (!images || images->ndim != 4 || images->shape[0] < 1 || images->shape[1] != c->in_channels ||
        images->shape[2] != c->image_size || images->shape[3] != c->image_size) {
        da_fail(DA_ERR_INVALID, "clip: images must be (B, %d, %d, %d)", c->in_channels, c->image_size,
                c->image_size);
        return NULL;
    }
    da_blk_cfg bc = {.groups = c->groups, .gn_eps = GN_EPS};
    da_tensor *h = da_blk_tower(t, &m->params, "visual", images, NULL, c->n_blocks, &bc, NULL);  /* (B, C) */
    return da_blk_linear(t, &m->params, "visual_projection", h);
}

da_tensor *da_clip_logit_scale(da_tape *t, const da_clip *m)
{
    return da_params_leaf(t, &m->params, "logit_scale");
}

/* ------------------------------------------------------------------------ */
/* Row L2 normalisation                                                     */
/* ------------------------------------------------------------------------ */

/* out (N, D) = x / max(||x||, eps), norm (N) = max(||x||, eps) as used */
static void normalize_forward(float *out, float *norm, const float *x, int N, int D)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * D;
        double ss = 0.0;
        for (int d = 0; d < D; d++) ss += (double)r[d] * r[d];
        double nrm = fmax(sqrt(ss), NORM_EPS);
        norm[n] = (float)nrm;
        for (int d = 0; d < D; d++) out[(size_t)n * D + d] = (float)(r[d] / nrm);
    }
}

/* dx (N, D) += (dy - y (y . dy)) / ||x||, the Jacobian of x/||x||; below eps
 * the denominator is the constant eps, so dx += dy / eps */
static void normalize_backward(float *dx, const float *dout, const float *out, const float *norm,
                               int N, int D)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *y = out + (size_t)n * D, *dy = dout + (size_t)n * D;
        double dot = 0.0;
        if (norm[n] > (float)NORM_EPS)
            for (int d = 0; d < D; d++) dot += (double)y[d] * dy[d];
        for (int d = 0; d < D; d++)
            dx[(size_t)n * D + d] += (float)((dy[d] - y[d] * dot) / norm[n]);
    }
}

static void normalize_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) normalize_backward(x->grad, nd->out->grad, nd->out->data, nd->saved, nd->i[0], nd->i[1]);
}

da_tensor *da_clip_normalize(da_tape *t, da_tensor *x)
{
    if (!x || x->ndim != 2) {
        da_fail(DA_ERR_INVALID, "clip normalize: x must be (N, D)");
        return NULL;
    }
    int N = x->shape[0], D = x->shape[1];
    da_tensor *out = da_tensor_for_op(t, 2, x->shape, &x, 1);
    float *norm = da_arena_alloc(&t->arena, (size_t)(N ? N : 1) * sizeof(float));
    normalize_forward(out->data, norm, x->data, N, D);
    da_node nd = {.backward = normalize_backward_node, .out = out, .in = {x}, .i = {N, D}, .saved = norm};
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Both InfoNCE logit matrices at once: [s * cos; s * cos^T], s = min(exp(ls), 100) */
/* ------------------------------------------------------------------------ */

static float clamped_scale(float ls) { return fminf(da_expf(ls), LOGIT_SCALE_MAX); }

/* out (2B, B) = [s * x; s * x^T] for x (B, B): rows 0..B-1 classify texts for
 * each image, rows B..2B-1 images for each text */
static void pair_logits_forward(float *out, const float *x, float ls, int B)
{
    float s = clamped_scale(ls);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float v = s * x[(size_t)i * B + j];
            out[(size_t)i * B + j] = v;
            out[(size_t)(B + j) * B + i] = v;
        }
}

/* dx (B, B)[i, j] += s * (dout[i, j] + dout[B + j, i]);
 * dls () += s * sum(dx_unscaled * x) while exp(ls) <= 100 (d exp = exp; the
 * clamp, like torch.clamp, passes the gradient at the bound and none above).
 * The scalar sum runs in a fixed order: not parallelised. */
static void pair_logits_backward(float *dx, float *dls, const float *dout, const float *x, float ls, int B)
{
    float s = clamped_scale(ls);
    int pass = da_expf(ls) <= LOGIT_SCALE_MAX;
    double acc = 0.0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            float g = dout[(size_t)i * B + j] + dout[(size_t)(B + j) * B + i];
            if (dx) dx[(size_t)i * B + j] += s * g;
            acc += (double)g * x[(size_t)i * B + j];
        }
    if (dls && pass) dls[0] += (float)(s * acc);
}

static void pair_logits_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0], *ls = nd->in[1];
    pair_logits_backward(x->grad, ls->grad, nd->out->grad, x->data, ls->data[0], nd->i[0]);
}

/* cos (B, B), logit_scale () -> (2B, B) */
static da_tensor *pair_logits(da_tape *t, da_tensor *cos, da_tensor *ls)
{
    assert(cos->ndim == 2 && cos->shape[0] == cos->shape[1] && ls->size == 1);
    int B = cos->shape[0], shape[2] = {2 * B, B};
    da_tensor *in[2] = {cos, ls};
    da_tensor *out = da_tensor_for_op(t, 2, shape, in, 2);
    pair_logits_forward(out->data, cos->data, ls->data[0], B);
    da_node nd = {.backward = pair_logits_backward_node, .out = out, .in = {cos, ls}, .i = {B}};
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* InfoNCE and CLIPScore                                                    */
/* ------------------------------------------------------------------------ */

/* img_emb, txt_emb (B, E), logit_scale () -> scalar; NULL + da_last_error()
 * on other shapes */
da_tensor *da_clip_loss(da_tape *t, da_tensor *img_emb, da_tensor *txt_emb, da_tensor *logit_scale)
{
    if (!img_emb || !txt_emb || img_emb->ndim != 2 || txt_emb->ndim != 2 || img_emb->shape[0] < 1 ||
        img_emb->shape[0] != txt_emb->shape[0] || img_emb->shape[1] != txt_emb->shape[1] || !logit_scale ||
        logit_scale->size != 1) {
        da_fail(DA_ERR_INVALID, "clip loss: needs image and text embeddings of one shape (B, E) and a scalar logit_scale");
        return NULL;
    }
    int B = img_emb->shape[0];
    da_tensor *img = da_clip_normalize(t, img_emb), *txt = da_clip_normalize(t, txt_emb);
    /* cos (B, B) = img @ txt^T: a Linear with txt as its weight */
    da_tensor *both = pair_logits(t, da_linear(t, img, txt, NULL), logit_scale);  /* (2B, B) */
    int *targets = da_arena_alloc(&t->arena, (size_t)(B > 0 ? 2 * B : 1) * sizeof(int));
    for (int i = 0; i < 2 * B; i++) targets[i] = i % B;
    return da_cross_entropy(t, both, targets, -1);
}

void da_clip_cosine(float *cos, const float *a, const float *b, int N, int E)
{
    for (int n = 0; n < N; n++) {
        const float *x = a + (size_t)n * E, *y = b + (size_t)n * E;
        double xy = 0.0, xx = 0.0, yy = 0.0;
        for (int e = 0; e < E; e++) {
            xy += (double)x[e] * y[e];
            xx += (double)x[e] * x[e];
            yy += (double)y[e] * y[e];
        }
        cos[n] = (float)(xy / (fmax(sqrt(xx), NORM_EPS) * fmax(sqrt(yy), NORM_EPS)));
    }
}

void da_clip_score(float *score, const float *img_emb, const float *txt_emb, int N, int E)
{
    da_clip_cosine(score, img_emb, txt_emb, N, E);
    for (int n = 0; n < N; n++) score[n] = 100.0f * fmaxf(score[n], 0.0f);
}
