/* Text encoder: the CLIP text tower (design §5).
 *
 *   x = token_embedding[ids] + position_embedding[:T]
 *   for each layer: x = x + out_proj(attn(ln1(x)))     causal, key padding
 *                   x = x + fc2(gelu(fc1(ln2(x))))      exact GELU
 *   features = final_ln(x)                              (B, T, d): the UNet's context
 *   pooled = text_projection(features[b, eos[b]])       (B, proj): CLIP's text embedding
 *
 * Pre-LN like OpenAI CLIP; LayerNorm eps 1e-5 (PyTorch's default and CLIP's).
 * The only op of its own is the EOS gather (a row selection with a scatter-add
 * backward); everything else is core ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "core/config.h"
#include "models/blocks.h"
#include "models/params.h"

#define LN_EPS 1e-5f
#define CFG_MAX 1000000   /* sanity bound on every config integer: no int overflow downstream */

/* ------------------------------------------------------------------------ */
/* Config                                                                   */
/* ------------------------------------------------------------------------ */

da_text_config da_text_config_default(void)
{
    da_text_config c = {.vocab_size = 64, .context = 24, .d_model = 128, .n_layers = 3,
                        .n_heads = 4, .mlp_ratio = 4, .proj_dim = 128};
    return c;
}

da_status da_text_config_check(const da_text_config *c)
{
    /* each width bounded so that every shape (mlp_ratio * d_model, the
     * attention's context * context) stays far inside int */
    const struct { const char *key; int v, lo, max; } f[] = {
        {"vocab_size", c->vocab_size, 1, CFG_MAX}, {"context", c->context, 1, DA_MAX_CHANNELS},
        {"d_model", c->d_model, 1, DA_MAX_CHANNELS}, {"n_layers", c->n_layers, 0, 64},
        {"n_heads", c->n_heads, 1, DA_MAX_CHANNELS}, {"mlp_ratio", c->mlp_ratio, 1, 16},
        {"proj_dim", c->proj_dim, 1, DA_MAX_CHANNELS},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].max)
            return da_fail(DA_ERR_INVALID, "text encoder config: \"%s\" = %d must lie in [%d, %d]", f[i].key, f[i].v,
                           f[i].lo, f[i].max);
    if (c->d_model % c->n_heads)
        return da_fail(DA_ERR_INVALID, "text encoder config: d_model %d not divisible by n_heads %d",
                       c->d_model, c->n_heads);
    return DA_OK;
}

/* one table drives the JSON reader and writer, in the order keys are written */
static int text_cfg_fields(void *cfg, da_cfg_list *list, da_cfg_field *f)
{
    (void)list;
    da_text_config *c = cfg;
    da_cfg_field t[] = {
        {"vocab_size", DA_CFG_INT, 1, &c->vocab_size}, {"context", DA_CFG_INT, 1, &c->context},
        {"d_model", DA_CFG_INT, 1, &c->d_model},       {"n_layers", DA_CFG_INT, 1, &c->n_layers},
        {"n_heads", DA_CFG_INT, 1, &c->n_heads},       {"mlp_ratio", DA_CFG_INT, 1, &c->mlp_ratio},
        {"proj_dim", DA_CFG_INT, 1, &c->proj_dim},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

static da_status text_cfg_check_any(const void *c) { return da_text_config_check(c); }

/* Strict: an object with exactly the known keys, each an integer in [0, CFG_MAX]. */
static const da_cfg_type TEXT_CFG = {sizeof(da_text_config), text_cfg_fields, text_cfg_check_any, CFG_MAX};

/* temp file, fsync, rename: a crash never leaves a half-written config */
da_status da_text_config_save(const da_text_config *cfg, const char *path)
{
    da_status s = da_text_config_check(cfg);
    return s ? s : da_cfg_save(&TEXT_CFG, cfg, path);
}

da_status da_text_config_load(da_text_config *cfg, const char *path) { return da_cfg_load(&TEXT_CFG, cfg, path); }

/* ------------------------------------------------------------------------ */
/* Create / init / load / save                                              */
/* ------------------------------------------------------------------------ */

da_text_encoder *da_text_encoder_create(const da_text_config *cfg, int trainable)
{
    if (da_text_config_check(cfg)) return NULL;
    da_text_encoder *m = calloc(1, sizeof *m);
    if (!m) { da_fail(DA_ERR_NOMEM, "out of memory"); return NULL; }
    m->cfg = *cfg;
    int D = cfg->d_model, H = cfg->mlp_ratio * cfg->d_model;
    da_params *p = &m->params;
    da_params_init(p);
    int tok[2] = {cfg->vocab_size, D}, pos[2] = {cfg->context, D};
    da_params_add(p, "token_embedding.weight", 2, tok);
    da_params_add(p, "position_embedding.weight", 2, pos);
    for (int l = 0; l < cfg->n_layers; l++) da_blk_add_decoder_layer(p, l, D, H);
    da_blk_add_norm(p, "final_ln", D);
    da_blk_add_linear(p, "text_projection", D, cfg->proj_dim, 0);
    if (da_params_alloc(p, trainable)) {
        da_text_encoder_free(m);
        return NULL;
    }
    return m;
}

/* CLIP's token init, embeddings N(0, 0.02); the rest PyTorch's defaults
 * (models/init.c): layernorms weight 1 bias 0, Linear weight and bias
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = the weight's input width. */
void da_text_encoder_init(da_text_encoder *m, da_rng *rng)
{
    const da_init_rule own[] = {{"embedding.weight", DA_INIT_NORMAL, 0.02f}};
    da_init_params(&m->params, rng, own, 1);
}

da_status da_text_encoder_load(da_text_encoder *m, const char *path)
{
    return da_params_load(&m->params, path);
}

da_status da_text_encoder_save(const da_text_encoder *m, const char *path)
{
    return da_params_save(&m->params, path, NULL, 0);
}

void da_text_encoder_free(da_text_encoder *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Row gather: the feature at each row's EOS token                          */
/* ------------------------------------------------------------------------ */

/* out (B, D) = x (B, T, D)[b, pos[b], :] */
static void gather_forward(float *out, const float *x, const int *pos, int B, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * D, x + ((size_t)b * T + pos[b]) * D, (size_t)D * sizeof(float));
}

/* dx (B, T, D)[b, pos[b], :] += dout (B, D)[b, :]; one selected row per b, so
 * rows never collide and the loop over b is safe to split */
static void gather_backward(float *dx, const float *dout, const int *pos, int B, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *row = dx + ((size_t)b * T + pos[b]) * D;
        const float *g = dout + (size_t)b * D;
        for (int d = 0; d < D; d++) row[d] += g[d];
    }
}

static void gather_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) gather_backward(x->grad, nd->out->grad, nd->saved, nd->i[0], nd->i[1], nd->i[2]);
}

/* x (B, T, D), pos (B) in [0, T) -> (B, D); NULL + da_last_error() otherwise */
da_tensor *da_text_gather(da_tape *t, da_tensor *x, const int *pos)
{
    if (!x || x->ndim != 3 || !pos) {
        da_fail(DA_ERR_INVALID, "text gather: needs features (B, T, D) and positions (B)");
        return NULL;
    }
    int B = x->shape[0], T = x->shape[1], D = x->shape[2];
    for (int b = 0; b < B; b++)
        if (pos[b] < 0 || pos[b] >= T) {
            da_fail(DA_ERR_INVALID, "text gather: position %d of row %d not in [0, %d)", pos[b], b, T);
            return NULL;
        }
    int shape[2] = {B, D};
    da_tensor *out = da_tensor_for_op(t, 2, shape, &x, 1);
    gather_forward(out->data, x->data, pos, B, T, D);
    if (out->grad) {
        /* the caller may reuse its pos buffer before backward runs */
        int *saved = da_arena_alloc(&t->arena, (size_t)(B ? B : 1) * sizeof(int));
        if (B) memcpy(saved, pos, (size_t)B * sizeof(int));
        da_node nd = {.backward = gather_backward_node, .out = out, .in = {x}, .i = {B, T, D},
                      .saved = saved};
        da_tape_push(t, &nd);
    }
    return out;
}

da_status da_text_eos_positions(int *eos, const uint8_t *keep, int B, int T)
{
    for (int b = 0; b < B; b++) {
        eos[b] = -1;
        for (int j = 0; j < T; j++)
            if (keep[(size_t)b * T + j]) eos[b] = j;
        if (eos[b] < 0) return da_fail(DA_ERR_INVALID, "text row %d has no real token (no EOS)", b);
    }
    return DA_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

/* ids (B, T), keep (B, T) -> features (B, T, d_model) */
da_tensor *da_text_encoder_forward(da_tape *t, const da_text_encoder *m, const int *ids,
                                   const uint8_t *keep, int B, int T)
{
    const da_text_config *c = &m->cfg;
    if (!ids || B < 1 || T < 1 || T > c->context) {
        da_fail(DA_ERR_INVALID, "text encoder: batch %d x %d tokens (need B >= 1, 1 <= T <= %d)", B, T,
                c->context);
        return NULL;
    }
    for (size_t i = 0; i < (size_t)B * T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) {
            da_fail(DA_ERR_INVALID, "text encoder: token id %d at %zu not in [0, %d)", ids[i], i,
                    c->vocab_size);
            return NULL;
        }
    const da_params *p = &m->params;
    da_tensor *x = da_embedding(t, da_params_leaf(t, p, "token_embedding.weight"), ids, B, T);
    /* rows 0..T-1 of the (context, D) table are its first T*D floats: a leaf over them */
    da_tensor *pos_full = da_params_leaf(t, p, "position_embedding.weight");
    int pos_shape[2] = {T, c->d_model};
    x = da_add(t, x, da_leaf(t, pos_full->data, pos_full->grad, 2, pos_shape));
    for (int l = 0; l < c->n_layers; l++) x = da_blk_decoder_layer(t, p, x, l, c->n_heads, LN_EPS, keep);
    return da_layernorm(t, x, da_params_leaf(t, p, "final_ln.weight"),
                        da_params_leaf(t, p, "final_ln.bias"), LN_EPS);
}

/* features (B, T, D), eos (B) -> text_projection(features[b, eos[b]]) (B, proj_dim) */
da_tensor *da_text_encoder_pool(da_tape *t, const da_text_encoder *m, da_tensor *features, const int *eos)
{
    if (features && (features->ndim != 3 || features->shape[2] != m->cfg.d_model)) {
        da_fail(DA_ERR_INVALID, "text encoder pool: features must be (B, T, %d)", m->cfg.d_model);
        return NULL;
    }
    da_tensor *pooled = da_text_gather(t, features, eos);
    if (!pooled) return NULL;
    return da_linear(t, pooled, da_params_leaf(t, &m->params, "text_projection.weight"), NULL);
}
