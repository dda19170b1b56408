/* Conditional UNet for eps-prediction on the VAE latent (SD-style, two
 * levels), over the blocks in blocks.c.
 *
 *   temb = time_embed.2(silu(time_embed.0(sinusoidal(t))))
 *   conv_in -> down.0 (res, attn) [skip0] -> down.0.downsample
 *           -> down.1 (res, attn) [skip1]
 *           -> mid (res1, attn, res2)
 *           -> cat skip1 -> up.1 (res, attn) -> up.1.upsample
 *           -> cat skip0 -> up.0 (res, attn)
 *           -> norm_out, silu, conv_out
 *
 * Every ResBlock adds time_proj(silu(temb)); every transformer block
 * cross-attends to the text context. docs/models.md has the long form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "models/blocks.h"
#include "models/params.h"

da_unet_config da_unet_config_default(void)
{
    da_unet_config c = {
        .in_channels = 4, .out_channels = 4, .ch = {64, 128}, .groups = 16,
        .gn_eps = 1e-5f, .ln_eps = 1e-5f, .n_heads = 4, .context_dim = 128,
        .time_freq_dim = 64, .time_dim = 256,
    };
    return c;
}

/* one table drives the JSON reader and writer, in the order keys are written */
static int unet_cfg_fields(void *cfg, da_cfg_list *list, da_cfg_field *f)
{
    (void)list;
    da_unet_config *c = cfg;
    da_cfg_field t[] = {
        {"in_channels", DA_CFG_INT, 1, &c->in_channels},
        {"out_channels", DA_CFG_INT, 1, &c->out_channels},
        {"channels", DA_CFG_INT, 2, c->ch},
        {"groups", DA_CFG_INT, 1, &c->groups},
        {"gn_eps", DA_CFG_FLOAT, 1, &c->gn_eps},
        {"ln_eps", DA_CFG_FLOAT, 1, &c->ln_eps},
        {"n_heads", DA_CFG_INT, 1, &c->n_heads},
        {"context_dim", DA_CFG_INT, 1, &c->context_dim},
        {"time_freq_dim", DA_CFG_INT, 1, &c->time_freq_dim},
        {"time_dim", DA_CFG_INT, 1, &c->time_dim},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

/* one size field in [1, max], named as in unet.json */
static da_status unet_size(const char *key, int index, int v, int max)
{
    if (v >= 1 && v <= max) return DA_OK;
    if (index >= 0)
        return da_fail(DA_ERR_INVALID, "unet config: \"%s\"[%d] = %d must lie in [1, %d]", key, index, v, max);
    return da_fail(DA_ERR_INVALID, "unet config: \"%s\" = %d must lie in [1, %d]", key, v, max);
}

static da_status unet_cfg_check(const da_unet_config *c)
{
    const struct { const char *key; int v, max; } sizes[] = {
        {"in_channels", c->in_channels, DA_MAX_IMAGE_CHANNELS}, {"out_channels", c->out_channels, DA_MAX_IMAGE_CHANNELS},
        {"groups", c->groups, DA_MAX_CHANNELS}, {"n_heads", c->n_heads, DA_MAX_CHANNELS},
        {"context_dim", c->context_dim, DA_MAX_CHANNELS}, {"time_freq_dim", c->time_freq_dim, DA_MAX_CHANNELS},
        {"time_dim", c->time_dim, DA_MAX_CHANNELS},
    };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        da_status s = unet_size(sizes[k].key, -1, sizes[k].v, sizes[k].max);
        if (s != DA_OK) return s;
    }
    for (int i = 0; i < 2; i++) {
        da_status s = unet_size("channels", i, c->ch[i], DA_MAX_CHANNELS);
        if (s != DA_OK) return s;
        if (c->ch[i] % c->groups || c->ch[i] % c->n_heads)
            return da_fail(DA_ERR_INVALID,
                           "unet config: \"channels\"[%d] = %d must be a multiple of groups (%d) and n_heads (%d)",
                           i, c->ch[i], c->groups, c->n_heads);
    }
    if (c->time_freq_dim % 2)
        return da_fail(DA_ERR_INVALID, "unet config: \"time_freq_dim\" = %d must be even", c->time_freq_dim);
    if (!(c->gn_eps > 0.0f) || !(c->ln_eps > 0.0f))
        return da_fail(DA_ERR_INVALID, "unet config: \"gn_eps\" and \"ln_eps\" must be > 0");
    return DA_OK;
}

static da_status unet_cfg_check_any(const void *c) { return unet_cfg_check(c); }

/* lenient: keys absent from the file keep the caller's values */
static const da_cfg_type UNET_CFG = {sizeof(da_unet_config), unet_cfg_fields, unet_cfg_check_any, 0};

da_status da_unet_config_load(da_unet_config *cfg, const char *path) { return da_cfg_load(&UNET_CFG, cfg, path); }

da_status da_unet_config_save(const da_unet_config *cfg, const char *path)
{
    return da_cfg_save(&UNET_CFG, cfg, path);
}

/* the parameter table, in forward order */
static void unet_build_table(da_params *p, const da_unet_config *c)
{
    int c0 = c->ch[0], c1 = c->ch[1], td = c->time_dim, cd = c->context_dim;
    da_blk_add_linear(p, "time_embed.0", c->time_freq_dim, td, 1);
    da_blk_add_linear(p, "time_embed.2", td, td, 1);
    da_blk_add_conv(p, "conv_in", c->in_channels, c0, 3);
    da_blk_add_resblock(p, "down.0.res", c0, c0, td);
    da_blk_add_transformer(p, "down.0.attn", c0, cd);
    da_blk_add_conv(p, "down.0.downsample", c0, c0, 3);
    da_blk_add_resblock(p, "down.1.res", c0, c1, td);
    da_blk_add_transformer(p, "down.1.attn", c1, cd);
    da_blk_add_resblock(p, "mid.res1", c1, c1, td);
    da_blk_add_transformer(p, "mid.attn", c1, cd);
    da_blk_add_resblock(p, "mid.res2", c1, c1, td);
    da_blk_add_resblock(p, "up.1.res", c1 + c1, c1, td);
    da_blk_add_transformer(p, "up.1.attn", c1, cd);
    da_blk_add_conv(p, "up.1.upsample", c1, c1, 3);
    da_blk_add_resblock(p, "up.0.res", c1 + c0, c0, td);
    da_blk_add_transformer(p, "up.0.attn", c0, cd);
    da_blk_add_norm(p, "norm_out", c0);
    da_blk_add_conv(p, "conv_out", c0, c->out_channels, 3);
}

da_unet *da_unet_create(const da_unet_config *cfg, int trainable)
{
    if (unet_cfg_check(cfg) != DA_OK) return NULL;
    da_unet *m = calloc(1, sizeof *m);
    if (!m) {
        da_fail(DA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    da_params_init(&m->params);
    unet_build_table(&m->params, cfg);
    if (da_params_alloc(&m->params, trainable) != DA_OK) {
        da_unet_free(m);
        return NULL;
    }
    return m;
}

/* PyTorch's defaults throughout (models/init.c) */
void da_unet_init(da_unet *m, da_rng *rng) { da_init_params(&m->params, rng, NULL, 0); }

void da_unet_free(da_unet *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

da_status da_unet_save(const da_unet *m, const char *path)
{
    da_st_meta meta[1] = {{"model", "unet"}};
    return da_params_save(&m->params, path, meta, 1);
}

da_status da_unet_load(da_unet *m, const char *path) { return da_params_load(&m->params, path); }

/* timesteps (B) -> silu(time_embed.2(silu(time_embed.0(sinusoidal)))) (B, time_dim):
 * the activated embedding every ResBlock projects */
static da_tensor *unet_time_embedding(da_tape *t, const da_unet *m, const float *timesteps, int B)
{
    const da_params *p = &m->params;
    da_tensor *e = da_timestep_embedding(t, timesteps, B, m->cfg.time_freq_dim);
    e = da_blk_linear(t, p, "time_embed.2", da_silu(t, da_blk_linear(t, p, "time_embed.0", e)));
    return da_silu(t, e);
}

/* What a caller passes, against the config: an error, never an abort (the
 * blocks below assert only what these checks already guarantee). */
static da_status unet_check_inputs(const da_unet_config *c, const da_tensor *x, const float *timesteps,
                                   const da_tensor *context)
{
    if (!x || x->ndim != 4 || x->shape[0] < 1 || x->shape[1] != c->in_channels || x->shape[2] < 2 ||
        x->shape[3] < 2 || x->shape[2] % 2 || x->shape[3] % 2)
        return da_fail(DA_ERR_INVALID, "unet: x must be (B, %d, H, W) with B >= 1 and H, W even", c->in_channels);
    if (!timesteps) return da_fail(DA_ERR_INVALID, "unet: no timesteps");
    if (!context || context->ndim != 3 || context->shape[0] != x->shape[0] || context->shape[1] < 1 ||
        context->shape[2] != c->context_dim)
        return da_fail(DA_ERR_INVALID, "unet: context must be (%d, T, %d) with T >= 1 (x's batch, context_dim)",
                       x->shape[0], c->context_dim);
    return DA_OK;
}

/* the transformer blocks, in forward order, and the level each works at */
static const char *const ATTN_BLOCKS[DA_UNET_N_ATTN] = {"down.0.attn", "down.1.attn", "mid.attn", "up.1.attn",
                                                         "up.0.attn"};
static const int ATTN_LEVEL[DA_UNET_N_ATTN] = {0, 1, 1, 1, 0};

int da_unet_attn_channels(const da_unet *m, int i)
{
    return i >= 0 && i < DA_UNET_N_ATTN ? m->cfg.ch[ATTN_LEVEL[i]] : 0;
}

da_status da_unet_context_kv(da_tape *t, const da_unet *m, da_tensor *context, da_unet_kv *kv)
{
    const da_unet_config *c = &m->cfg;
    if (!context || context->ndim != 3 || context->shape[0] < 1 || context->shape[1] < 1 ||
        context->shape[2] != c->context_dim)
        return da_fail(DA_ERR_INVALID, "unet: context must be (B, T, %d) with B, T >= 1", c->context_dim);
    for (int i = 0; i < DA_UNET_N_ATTN; i++) {
        da_blk_kv b = da_blk_cross_kv(t, &m->params, ATTN_BLOCKS[i], context);
        kv->k[i] = b.k;
        kv->v[i] = b.v;
    }
    return DA_OK;
}

/* x (B, in_channels, H, W) with H, W even, timesteps (B), context (B, T,
 * context_dim), context_keep (B, T) or NULL -> eps (B, out_channels, H, W);
 * NULL + da_last_error() on inputs that do not fit the config */
da_tensor *da_unet_forward_kv(da_tape *t, const da_unet *m, da_tensor *x, const float *timesteps,
                              da_tensor *context, const uint8_t *context_keep, const da_unet_kv *kv)
{
    const da_unet_config *c = &m->cfg;
    if (unet_check_inputs(c, x, timesteps, context) != DA_OK) return NULL;
    da_blk_kv akv[DA_UNET_N_ATTN];
    for (int i = 0; kv && i < DA_UNET_N_ATTN; i++) {
        const da_tensor *k = kv->k[i], *v = kv->v[i];
        int C = da_unet_attn_channels(m, i);
        int fits = k && v && k->ndim == 3 && v->ndim == 3 && k->shape[0] == x->shape[0] &&
                   k->shape[1] == context->shape[1] && k->shape[2] == C && !memcmp(k->shape, v->shape, sizeof k->shape);
        if (!fits) {
            da_fail(DA_ERR_INVALID, "unet: cached keys/values of %s must be (%d, %d, %d)", ATTN_BLOCKS[i],
                    x->shape[0], context->shape[1], C);
            return NULL;
        }
        akv[i] = (da_blk_kv){kv->k[i], kv->v[i]};
    }
    const da_params *p = &m->params;
    da_blk_cfg bc = {.groups = c->groups, .gn_eps = c->gn_eps, .ln_eps = c->ln_eps, .n_heads = c->n_heads};
    da_tensor *temb = unet_time_embedding(t, m, timesteps, x->shape[0]);
#define KV(i) (kv ? &akv[i] : NULL)

    da_tensor *h = da_blk_conv(t, p, "conv_in", x, 1, 1);
    h = da_blk_resblock(t, p, "down.0.res", h, temb, &bc);
    h = da_blk_transformer(t, p, "down.0.attn", h, context, context_keep, KV(0), &bc);
    da_tensor *skip0 = h;
    h = da_blk_downsample(t, p, "down.0.downsample", h);
    h = da_blk_resblock(t, p, "down.1.res", h, temb, &bc);
    h = da_blk_transformer(t, p, "down.1.attn", h, context, context_keep, KV(1), &bc);
    da_tensor *skip1 = h;

    h = da_blk_resblock(t, p, "mid.res1", h, temb, &bc);
    h = da_blk_transformer(t, p, "mid.attn", h, context, context_keep, KV(2), &bc);
    h = da_blk_resblock(t, p, "mid.res2", h, temb, &bc);

    /* skips join on the channel dim after the current features, as SD's torch.cat([h, skip], 1) */
    h = da_blk_resblock(t, p, "up.1.res", da_concat(t, h, skip1, 1), temb, &bc);
    h = da_blk_transformer(t, p, "up.1.attn", h, context, context_keep, KV(3), &bc);
    h = da_blk_upsample(t, p, "up.1.upsample", h);
    h = da_blk_resblock(t, p, "up.0.res", da_concat(t, h, skip0, 1), temb, &bc);
    h = da_blk_transformer(t, p, "up.0.attn", h, context, context_keep, KV(4), &bc);
#undef KV

    h = da_blk_norm_silu(t, p, "norm_out", h, &bc);
    return da_blk_conv(t, p, "conv_out", h, 1, 1);
}

da_tensor *da_unet_forward(da_tape *t, const da_unet *m, da_tensor *x, const float *timesteps,
                           da_tensor *context, const uint8_t *context_keep)
{
    return da_unet_forward_kv(t, m, x, timesteps, context, context_keep, NULL);
}
