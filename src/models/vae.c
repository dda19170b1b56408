/* KL-regularised autoencoder (f = 4), SD-style, over the blocks in blocks.c.
 *
 *   encoder: conv_in -> down.0 (res, downsample) -> down.1 (res, downsample)
 *            -> down.2 (res) -> mid.res -> norm_out, silu, conv_out
 *            -> [mean | logvar] (logvar clamped to [-30, 20] as in SD)
 *   decoder: conv_in -> mid.res -> up.2 (res, upsample) -> up.1 (res, upsample)
 *            -> up.0 (res) -> norm_out, silu, conv_out
 *
 * SD's 1x1 quant_conv / post_quant_conv are left out: a 1x1 conv right after
 * conv_out (or before conv_in) adds no expressive power. docs/models.md has
 * the long form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/ops_unary.h"
#include "models/blocks.h"
#include "models/params.h"

#define VAE_LOGVAR_MIN -30.0f
#define VAE_LOGVAR_MAX 20.0f

da_vae_config da_vae_config_default(void)
{
    da_vae_config c = {
        .in_channels = 3, .latent_channels = 4, .ch = {32, 64, 128},
        .groups = 8, .gn_eps = 1e-6f, .kl_weight = 1e-4f, .scale_factor = 1.0f,
    };
    return c;
}

/* one table drives the JSON reader and writer */
static int vae_cfg_fields(void *cfg, da_cfg_list *list, da_cfg_field *f)
{
    (void)list;
    da_vae_config *c = cfg;
    da_cfg_field t[] = {
        {"in_channels", DA_CFG_INT, 1, &c->in_channels},
        {"latent_channels", DA_CFG_INT, 1, &c->latent_channels},
        {"channels", DA_CFG_INT, 3, c->ch},
        {"groups", DA_CFG_INT, 1, &c->groups},
        {"gn_eps", DA_CFG_FLOAT, 1, &c->gn_eps},
        {"kl_weight", DA_CFG_FLOAT, 1, &c->kl_weight},
        {"scale_factor", DA_CFG_FLOAT, 1, &c->scale_factor},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

/* one size field in [1, max], named as in vae.json */
static da_status vae_size(const char *key, int index, int v, int max)
{
    if (v >= 1 && v <= max) return DA_OK;
    if (index >= 0)
        return da_fail(DA_ERR_INVALID, "vae config: \"%s\"[%d] = %d must lie in [1, %d]", key, index, v, max);
    return da_fail(DA_ERR_INVALID, "vae config: \"%s\" = %d must lie in [1, %d]", key, v, max);
}

static da_status vae_cfg_check(const da_vae_config *c)
{
    da_status s = vae_size("in_channels", -1, c->in_channels, DA_MAX_IMAGE_CHANNELS);
    if (s == DA_OK) s = vae_size("latent_channels", -1, c->latent_channels, DA_MAX_IMAGE_CHANNELS);
    if (s == DA_OK) s = vae_size("groups", -1, c->groups, DA_MAX_CHANNELS);
    for (int i = 0; s == DA_OK && i < 3; i++) {
        s = vae_size("channels", i, c->ch[i], DA_MAX_CHANNELS);
        if (s == DA_OK && c->ch[i] % c->groups)
            s = da_fail(DA_ERR_INVALID, "vae config: \"channels\"[%d] = %d is not a multiple of groups = %d", i,
                        c->ch[i], c->groups);
    }
    if (s == DA_OK && (!(c->gn_eps > 0.0f) || !(c->kl_weight >= 0.0f) || !(c->scale_factor > 0.0f)))
        s = da_fail(DA_ERR_INVALID, "vae config: gn_eps and scale_factor must be > 0, kl_weight >= 0");
    return s;
}

static da_status vae_cfg_check_any(const void *c) { return vae_cfg_check(c); }

/* lenient: keys absent from the file keep the caller's values */
static const da_cfg_type VAE_CFG = {sizeof(da_vae_config), vae_cfg_fields, vae_cfg_check_any, 0};

da_status da_vae_config_load(da_vae_config *cfg, const char *path) { return da_cfg_load(&VAE_CFG, cfg, path); }

da_status da_vae_config_save(const da_vae_config *cfg, const char *path) { return da_cfg_save(&VAE_CFG, cfg, path); }

/* the parameter table, in forward order */
static void vae_build_table(da_params *p, const da_vae_config *c)
{
    const int *ch = c->ch;
    da_blk_add_conv(p, "encoder.conv_in", c->in_channels, ch[0], 3);
    da_blk_add_resblock(p, "encoder.down.0.res", ch[0], ch[0], 0);
    da_blk_add_conv(p, "encoder.down.0.downsample", ch[0], ch[0], 3);
    da_blk_add_resblock(p, "encoder.down.1.res", ch[0], ch[1], 0);
    da_blk_add_conv(p, "encoder.down.1.downsample", ch[1], ch[1], 3);
    da_blk_add_resblock(p, "encoder.down.2.res", ch[1], ch[2], 0);
    da_blk_add_resblock(p, "encoder.mid.res", ch[2], ch[2], 0);
    da_blk_add_norm(p, "encoder.norm_out", ch[2]);
    da_blk_add_conv(p, "encoder.conv_out", ch[2], 2 * c->latent_channels, 3);

    da_blk_add_conv(p, "decoder.conv_in", c->latent_channels, ch[2], 3);
    da_blk_add_resblock(p, "decoder.mid.res", ch[2], ch[2], 0);
    da_blk_add_resblock(p, "decoder.up.2.res", ch[2], ch[2], 0);
    da_blk_add_conv(p, "decoder.up.2.upsample", ch[2], ch[2], 3);
    da_blk_add_resblock(p, "decoder.up.1.res", ch[2], ch[1], 0);
    da_blk_add_conv(p, "decoder.up.1.upsample", ch[1], ch[1], 3);
    da_blk_add_resblock(p, "decoder.up.0.res", ch[1], ch[0], 0);
    da_blk_add_norm(p, "decoder.norm_out", ch[0]);
    da_blk_add_conv(p, "decoder.conv_out", ch[0], c->in_channels, 3);
}

da_vae *da_vae_create(const da_vae_config *cfg, int trainable)
{
    if (vae_cfg_check(cfg) != DA_OK) return NULL;
    da_vae *m = calloc(1, sizeof *m);
    if (!m) {
        da_fail(DA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    da_params_init(&m->params);
    vae_build_table(&m->params, cfg);
    if (da_params_alloc(&m->params, trainable) != DA_OK) {
        da_vae_free(m);
        return NULL;
    }
    return m;
}

/* PyTorch's defaults throughout (models/init.c) */
void da_vae_init(da_vae *m, da_rng *rng) { da_init_params(&m->params, rng, NULL, 0); }

void da_vae_free(da_vae *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

da_status da_vae_save(const da_vae *m, const char *path)
{
    char scale[32];
    snprintf(scale, sizeof scale, "%.9g", (double)m->cfg.scale_factor);
    da_st_meta meta[2] = {{"model", "vae"}, {"scale_factor", scale}};
    return da_params_save(&m->params, path, meta, 2);
}

/* da_params_extra_fn: a "scale_factor" metadata entry, when present,
 * replaces the config's value */
static da_status read_scale_factor(const da_safetensors *st, void *ctx)
{
    da_vae *m = ctx;
    const char *sf = da_st_meta_get(st, "scale_factor");
    if (!sf) return DA_OK;
    char *end;
    float v = strtof(sf, &end);
    if (*end || !(v > 0.0f) || v != v) return da_fail(DA_ERR_FORMAT, "bad scale_factor metadata '%s'", sf);
    m->cfg.scale_factor = v;
    return DA_OK;
}

/* Strict by name and shape (da_params_load_st), then the scale factor */
da_status da_vae_load(da_vae *m, const char *path)
{
    return da_params_load_with(&m->params, path, read_scale_factor, m);
}

static da_blk_cfg vae_blk(const da_vae *m)
{
    da_blk_cfg bc = {.groups = m->cfg.groups, .gn_eps = m->cfg.gn_eps};
    return bc;
}

/* 1 when x is (B, C, H, W) with B >= 1 and H, W positive multiples of f */
static int is_image(const da_tensor *x, int C, int f)
{
    return x && x->ndim == 4 && x->shape[0] >= 1 && x->shape[1] == C && x->shape[2] >= f &&
           x->shape[3] >= f && x->shape[2] % f == 0 && x->shape[3] % f == 0;
}

static int same_shape(const da_tensor *a, const da_tensor *b)
{
    if (!a || !b || a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

/* x (B, in_channels, H, W), H and W multiples of 4 -> mean, logvar
 * (B, latent, H/4, W/4); on a bad x both are NULL and the status says why */
da_status da_vae_encode(da_tape *t, const da_vae *m, da_tensor *x, da_tensor **mean, da_tensor **logvar)
{
    *mean = *logvar = NULL;
    if (!is_image(x, m->cfg.in_channels, 4))
        return da_fail(DA_ERR_INVALID, "vae encode: x must be (B, %d, H, W) with B >= 1 and H, W multiples of 4",
                       m->cfg.in_channels);
    const da_params *p = &m->params;
    da_blk_cfg bc = vae_blk(m);
    da_tensor *h = da_blk_conv(t, p, "encoder.conv_in", x, 1, 1);
    h = da_blk_resblock(t, p, "encoder.down.0.res", h, NULL, &bc);
    h = da_blk_downsample(t, p, "encoder.down.0.downsample", h);
    h = da_blk_resblock(t, p, "encoder.down.1.res", h, NULL, &bc);
    h = da_blk_downsample(t, p, "encoder.down.1.downsample", h);
    h = da_blk_resblock(t, p, "encoder.down.2.res", h, NULL, &bc);
    h = da_blk_resblock(t, p, "encoder.mid.res", h, NULL, &bc);
    h = da_blk_norm_silu(t, p, "encoder.norm_out", h, &bc);
    h = da_blk_conv(t, p, "encoder.conv_out", h, 1, 1);
    /* (B, 2L, h, w): the first L channels are the mean, the rest log-variance */
    int L = m->cfg.latent_channels;
    *mean = da_narrow(t, h, 1, 0, L);
    *logvar = da_clamp(t, da_narrow(t, h, 1, L, L), VAE_LOGVAR_MIN, VAE_LOGVAR_MAX);
    return DA_OK;
}

/* z = mean + exp(0.5 logvar) * eps; eps (mean's shape) is caller memory */
da_tensor *da_vae_sample_eps(da_tape *t, da_tensor *mean, da_tensor *logvar, const float *eps)
{
    if (!same_shape(mean, logvar) || !eps) {
        da_fail(DA_ERR_INVALID, "vae sample: mean and logvar must have one shape, and eps its size");
        return NULL;
    }
    da_tensor *e = da_tensor_new(t, mean->ndim, mean->shape, 0);
    memcpy(e->data, eps, mean->size * sizeof(float));
    return da_add(t, mean, da_mul(t, da_exp_scaled(t, logvar, 0.5f), e));
}

/* the same with eps = da_randn(rng) (mean's shape, row-major order) */
da_tensor *da_vae_sample(da_tape *t, da_tensor *mean, da_tensor *logvar, da_rng *rng)
{
    if (!same_shape(mean, logvar)) return da_vae_sample_eps(t, mean, logvar, NULL);  /* its error */
    float *eps = da_arena_alloc(&t->arena, mean->size * sizeof(float));
    da_randn(rng, eps, mean->size);
    return da_vae_sample_eps(t, mean, logvar, eps);
}

/* z (B, latent, h, w) -> x_hat (B, in_channels, 4h, 4w); NULL on a bad z */
da_tensor *da_vae_decode(da_tape *t, const da_vae *m, da_tensor *z)
{
    if (!is_image(z, m->cfg.latent_channels, 1)) {
        da_fail(DA_ERR_INVALID, "vae decode: z must be (B, %d, h, w) with B, h, w >= 1", m->cfg.latent_channels);
        return NULL;
    }
    const da_params *p = &m->params;
    da_blk_cfg bc = vae_blk(m);
    da_tensor *h = da_blk_conv(t, p, "decoder.conv_in", z, 1, 1);
    h = da_blk_resblock(t, p, "decoder.mid.res", h, NULL, &bc);
    h = da_blk_resblock(t, p, "decoder.up.2.res", h, NULL, &bc);
    h = da_blk_upsample(t, p, "decoder.up.2.upsample", h);
    h = da_blk_resblock(t, p, "decoder.up.1.res", h, NULL, &bc);
    h = da_blk_upsample(t, p, "decoder.up.1.upsample", h);
    h = da_blk_resblock(t, p, "decoder.up.0.res", h, NULL, &bc);
    h = da_blk_norm_silu(t, p, "decoder.norm_out", h, &bc);
    return da_blk_conv(t, p, "decoder.conv_out", h, 1, 1);
}

/* () = mse(x_hat, x) + kl_weight * mean over latent elements of
 * 0.5 (mean^2 + exp(logvar) - 1 - logvar) */
da_tensor *da_vae_loss(da_tape *t, const da_vae *m, da_tensor *x, da_tensor *x_hat,
                       da_tensor *mean, da_tensor *logvar, float *recon, float *kl)
{
    if (!same_shape(x, x_hat) || !same_shape(mean, logvar)) {
        da_fail(DA_ERR_INVALID, "vae loss: x and x_hat, and mean and logvar, must have one shape each");
        return NULL;
    }
    da_tensor *rec = da_mse(t, x_hat, x);
    da_tensor *k = da_sub(t, da_add(t, da_mul(t, mean, mean), da_exp_scaled(t, logvar, 1.0f)), logvar);
    k = da_scale(t, da_add_scalar(t, da_mean(t, k, 0), -1.0f), 0.5f);
    if (recon) *recon = rec->data[0];
    if (kl) *kl = k->data[0];
    return da_add(t, rec, da_scale(t, k, m->cfg.kl_weight));
}
