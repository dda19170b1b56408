/* The PromptLoop refiner (design §10, docs/promptloop.md): a small
 * decoder-only transformer that rewrites the prompt while sampling.
 *
 * One sequence per row, L = P + 1 + 2M + T_out tokens (P patches, M = max_tokens):
 *   [P latent patches][timestep][query: M][prompt: M][output so far: T_out]
 *   patches  = patch_embed(x0)            Conv2d k = stride = patch: (B, P, d)
 *   timestep = time_mlp(sinusoid(t))      Linear, SiLU, Linear:       (B, 1, d)
 *   text     = token_embedding[ids]                                   (B, M|T_out, d)
 *   x = concat(...) + position_embedding[:L] + segment_embedding[segment of each slot]
 *   for each layer: x = x + out_proj(attn(ln1(x)))     causal, key padding
 *                   x = x + fc2(gelu(fc1(ln2(x))))      exact GELU
 *   logits = lm_head(final_ln(x[:, L - T_out:]))       (B, T_out, V), no bias, untied
 *
 * The layer is the text encoder's (same names, same pre-LN order); the
 * output segment comes last, so causal attention makes the output
 * autoregressive while every output token sees the whole observation.
 * Generation (a key/value cache over this forward) is in refiner_generate.c. */
#include <stdlib.h>
#include <string.h>

#include "dalign/models.h"
#include "core/config.h"
#include "models/blocks.h"
#include "models/params.h"
#include "models/refiner_internal.h"

#define LN_EPS REFINER_LN_EPS
#define CFG_MAX REFINER_CFG_MAX   /* no int overflow downstream */

/* ------------------------------------------------------------------------ */
/* Config                                                                   */
/* ------------------------------------------------------------------------ */

da_refiner_config da_refiner_config_default(void)
{
    da_refiner_config c = {.vocab_size = 34, .max_tokens = 24, .d_model = 128, .n_layers = 3,
                           .n_heads = 4, .mlp_ratio = 4, .latent_channels = 4, .latent_size = 8,
                           .patch = 2, .time_freq_dim = 64};
    return c;
}

da_status da_refiner_config_check(const da_refiner_config *c)
{
    const int v[] = {c->vocab_size, c->max_tokens, c->d_model, c->n_heads, c->mlp_ratio,
                     c->latent_channels, c->latent_size, c->patch, c->time_freq_dim};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 1 || v[i] > CFG_MAX)
            return da_fail(DA_ERR_INVALID, "refiner config: sizes must lie in [1, %d]", CFG_MAX);
    if (c->n_layers < 0 || c->n_layers > 1000)
        return da_fail(DA_ERR_INVALID, "refiner config: n_layers %d not in [0, 1000]", c->n_layers);
    if (c->d_model % c->n_heads)
        return da_fail(DA_ERR_INVALID, "refiner config: d_model %d not divisible by n_heads %d",
                       c->d_model, c->n_heads);
    if (c->latent_size % c->patch)
        return da_fail(DA_ERR_INVALID, "refiner config: latent_size %d not divisible by patch %d",
                       c->latent_size, c->patch);
    if (c->time_freq_dim % 2)
        return da_fail(DA_ERR_INVALID, "refiner config: time_freq_dim %d must be even", c->time_freq_dim);
    /* BOS, EOS and one word at least; and the sequence must fit an int comfortably */
    if (c->vocab_size <= TOK_EOS + 1)
        return da_fail(DA_ERR_INVALID, "refiner config: vocab_size %d leaves no word after PAD BOS EOS",
                       c->vocab_size);
    if (c->max_tokens < 2 || c->max_tokens > 4096 || c->latent_size / c->patch > 256)
        return da_fail(DA_ERR_INVALID, "refiner config: max_tokens %d not in [2, 4096] or too many patches",
                       c->max_tokens);
    return DA_OK;
}

/* one table drives the JSON reader and writer, in the order keys are written */
static int refiner_cfg_fields(void *cfg, da_cfg_list *list, da_cfg_field *f)
{
    (void)list;
    da_refiner_config *c = cfg;
    da_cfg_field t[] = {
        {"vocab_size", DA_CFG_INT, 1, &c->vocab_size},
        {"max_tokens", DA_CFG_INT, 1, &c->max_tokens},
        {"d_model", DA_CFG_INT, 1, &c->d_model},
        {"n_layers", DA_CFG_INT, 1, &c->n_layers},
        {"n_heads", DA_CFG_INT, 1, &c->n_heads},
        {"mlp_ratio", DA_CFG_INT, 1, &c->mlp_ratio},
        {"latent_channels", DA_CFG_INT, 1, &c->latent_channels},
        {"latent_size", DA_CFG_INT, 1, &c->latent_size},
        {"patch", DA_CFG_INT, 1, &c->patch},
        {"time_freq_dim", DA_CFG_INT, 1, &c->time_freq_dim},
    };
    memcpy(f, t, sizeof t);
    return (int)(sizeof t / sizeof t[0]);
}

static da_status refiner_cfg_check_any(const void *c) { return da_refiner_config_check(c); }

/* Strict: an object with exactly the known keys, each an integer in [0, CFG_MAX]. */
static const da_cfg_type REFINER_CFG = {sizeof(da_refiner_config), refiner_cfg_fields,
                                        refiner_cfg_check_any, CFG_MAX};

da_status da_refiner_config_save(const da_refiner_config *cfg, const char *path)
{
    da_status s = da_refiner_config_check(cfg);
    return s ? s : da_cfg_save(&REFINER_CFG, cfg, path);
}

da_status da_refiner_config_load(da_refiner_config *cfg, const char *path)
{
    return da_cfg_load(&REFINER_CFG, cfg, path);
}

int da_refiner_n_patches(const da_refiner_config *c)
{
    int side = c->latent_size / c->patch;
    return side * side;
}

static int n_patches(const da_refiner_config *c) { return da_refiner_n_patches(c); }

/* slot of the first output token: after patches, timestep, query and prompt */
static int output_start(const da_refiner_config *c) { return n_patches(c) + 1 + 2 * c->max_tokens; }

int da_refiner_segment(const da_refiner_config *c, int slot)
{
    int P = n_patches(c), M = c->max_tokens;
    return slot < P ? SEG_LATENT : slot == P ? SEG_TIME : slot < P + 1 + M ? SEG_QUERY
         : slot < P + 1 + 2 * M ? SEG_PROMPT : SEG_OUTPUT;
}

int da_refiner_seq_len(const da_refiner_config *c, int T_out) { return output_start(c) + T_out; }

/* ------------------------------------------------------------------------ */
/* Create / init / load / save                                              */
/* ------------------------------------------------------------------------ */

/* the inputs' embeddings, in sequence order */
static void add_embeddings(da_params *p, const da_refiner_config *c)
{
    int D = c->d_model;
    da_blk_add_conv(p, "patch_embed", c->latent_channels, D, c->patch);
    da_blk_add_linear(p, "time_mlp.0", c->time_freq_dim, D, 1);
    da_blk_add_linear(p, "time_mlp.2", D, D, 1);
    int tok[2] = {c->vocab_size, D};
    int pos[2] = {da_refiner_seq_len(c, c->max_tokens), D};
    int seg[2] = {DA_REFINER_SEGMENTS, D};
    da_params_add(p, "token_embedding.weight", 2, tok);
    da_params_add(p, "position_embedding.weight", 2, pos);
    da_params_add(p, "segment_embedding.weight", 2, seg);
}

da_refiner *da_refiner_create(const da_refiner_config *cfg, int trainable)
{
    if (da_refiner_config_check(cfg)) return NULL;
    da_refiner *m = calloc(1, sizeof *m);
    if (!m) { da_fail(DA_ERR_NOMEM, "out of memory"); return NULL; }
    m->cfg = *cfg;
    da_params *p = &m->params;
    da_params_init(p);
    add_embeddings(p, cfg);
    for (int l = 0; l < cfg->n_layers; l++)
        da_blk_add_decoder_layer(p, l, cfg->d_model, cfg->mlp_ratio * cfg->d_model);
    da_blk_add_norm(p, "final_ln", cfg->d_model);
    da_blk_add_linear(p, "lm_head", cfg->d_model, cfg->vocab_size, 0);
    if (da_params_alloc(p, trainable)) {
        da_refiner_free(m);
        return NULL;
    }
    return m;
}

/* the three tables (token, position, segment) N(0, 0.02) as GPT-2's; the rest
 * PyTorch's defaults (models/init.c) */
void da_refiner_init(da_refiner *m, da_rng *rng)
{
    const da_init_rule own[] = {{"embedding.weight", DA_INIT_NORMAL, 0.02f}};
    da_init_params(&m->params, rng, own, 1);
}

da_status da_refiner_load(da_refiner *m, const char *path) { return da_params_load(&m->params, path); }

da_status da_refiner_save(const da_refiner *m, const char *path)
{
    return da_params_save(&m->params, path, NULL, 0);
}

void da_refiner_free(da_refiner *m)
{
    if (!m) return;
    da_params_free(&m->params);
    free(m);
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */
/* ------------------------------------------------------------------------ */

/* x0 (B, C, S, S) -> patch tokens (B, P, D): a Conv2d with kernel = stride =
 * patch is the linear map of each patch's C*patch*patch values (ViT's
 * patchify), tokens in raster order of the patches */
static da_tensor *patch_tokens(da_tape *t, const da_refiner *m, const float *x0, int B)
{
    const da_refiner_config *c = &m->cfg;
    const da_params *p = &m->params;
    int xs[4] = {B, c->latent_channels, c->latent_size, c->latent_size};
    /* the latent is an input, never written: a leaf without gradient */
    da_tensor *x = da_leaf(t, (float *)x0, NULL, 4, xs);
    da_tensor *h = da_conv2d(t, x, da_params_leaf(t, p, "patch_embed.weight"),
                             da_params_leaf(t, p, "patch_embed.bias"), c->patch, 0);
    int flat[3] = {B, c->d_model, n_patches(c)};
    const int perm[3] = {0, 2, 1};
    return da_permute(t, da_reshape(t, h, 3, flat), perm);
}

/* timesteps (B) -> (B, 1, D) = time_mlp.2(silu(time_mlp.0(sinusoid(t)))) */
static da_tensor *time_token(da_tape *t, const da_refiner *m, const float *timesteps, int B)
{
    const da_params *p = &m->params;
    da_tensor *h = da_timestep_embedding(t, timesteps, B, m->cfg.time_freq_dim);
    h = da_silu(t, da_blk_linear(t, p, "time_mlp.0", h));
    h = da_blk_linear(t, p, "time_mlp.2", h);
    int s3[3] = {B, 1, m->cfg.d_model};
    return da_reshape(t, h, 3, s3);
}

/* (B, L, D) input embeddings: the five segments side by side, plus learned
 * positions and the segment table */
static da_tensor *embed_sequence(da_tape *t, const da_refiner *m, const float *x0, const float *timesteps,
                                 const int *query_ids, const int *prompt_ids, const int *out_ids, int B,
                                 int T_out)
{
    const da_refiner_config *c = &m->cfg;
    const da_params *p = &m->params;
    int M = c->max_tokens, D = c->d_model, L = da_refiner_seq_len(c, T_out);
    da_tensor *tok = da_params_leaf(t, p, "token_embedding.weight");
    da_tensor *x = da_concat(t, patch_tokens(t, m, x0, B), time_token(t, m, timesteps, B), 1);
    x = da_concat(t, x, da_embedding(t, tok, query_ids, B, M), 1);
    x = da_concat(t, x, da_embedding(t, tok, prompt_ids, B, M), 1);
    x = da_concat(t, x, da_embedding(t, tok, out_ids, B, T_out), 1);
    /* rows 0..L-1 of the position table are its first L*D floats: a leaf over them */
    da_tensor *pos_full = da_params_leaf(t, p, "position_embedding.weight");
    int pos_shape[2] = {L, D};
    x = da_add(t, x, da_leaf(t, pos_full->data, pos_full->grad, 2, pos_shape));
    /* segment of each slot, then its row of the table, broadcast over the batch */
    int *seg = da_arena_alloc(&t->arena, (size_t)L * sizeof(int));
    for (int j = 0; j < L; j++) seg[j] = da_refiner_segment(c, j);
    da_tensor *segs = da_embedding(t, da_params_leaf(t, p, "segment_embedding.weight"), seg, 1, L);
    return da_add(t, x, da_reshape(t, segs, 2, pos_shape));
}

/* keep (B, L): latent, timestep and output slots always visible; query and
 * prompt slots as the caller's masks say (PAD keys are invisible) */
static uint8_t *sequence_keep(da_tape *t, const da_refiner_config *c, const uint8_t *query_keep,
                              const uint8_t *prompt_keep, int B, int T_out)
{
    int M = c->max_tokens, P = n_patches(c), L = da_refiner_seq_len(c, T_out);
    uint8_t *keep = da_arena_alloc(&t->arena, (size_t)B * L);
    for (int b = 0; b < B; b++) {
        uint8_t *row = keep + (size_t)b * L;
        memset(row, 1, (size_t)L);
        for (int j = 0; j < M; j++) {
            row[P + 1 + j] = query_keep[(size_t)b * M + j] != 0;
            row[P + 1 + M + j] = prompt_keep[(size_t)b * M + j] != 0;
        }
    }
    return keep;
}

/* DA_OK when every id of ids (n) lies in [0, V); else an error naming `what` */
static da_status check_ids(const int *ids, size_t n, int V, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return da_fail(DA_ERR_INVALID, "refiner: %s token id %d at %zu not in [0, %d)", what, ids[i], i, V);
    return DA_OK;
}

da_status da_refiner_check_inputs(const da_refiner_config *c, const float *x0, const float *timesteps,
                                  const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                                  const uint8_t *prompt_keep, int B)
{
    if (!x0 || !timesteps || !query_ids || !query_keep || !prompt_ids || !prompt_keep)
        return da_fail(DA_ERR_INVALID, "refiner: NULL input (latent, timesteps, query or prompt)");
    if (B < 1 || B > CFG_MAX)
        return da_fail(DA_ERR_INVALID, "refiner: batch %d not in [1, %d]", B, CFG_MAX);
    size_t n = (size_t)B * c->max_tokens;
    da_status s = check_ids(query_ids, n, c->vocab_size, "query");
    return s ? s : check_ids(prompt_ids, n, c->vocab_size, "prompt");
}

da_tensor *da_refiner_forward(da_tape *t, const da_refiner *m, const float *x0, const float *timesteps,
                              const int *query_ids, const uint8_t *query_keep, const int *prompt_ids,
                              const uint8_t *prompt_keep, const int *out_ids, int B, int T_out)
{
    if (!m) {
        da_fail(DA_ERR_INVALID, "refiner: NULL model");
        return NULL;
    }
    const da_refiner_config *c = &m->cfg;
    if (da_refiner_check_inputs(c, x0, timesteps, query_ids, query_keep, prompt_ids, prompt_keep, B))
        return NULL;
    if (!out_ids || T_out < 1 || T_out > c->max_tokens) {
        da_fail(DA_ERR_INVALID, "refiner: %d output tokens (need output ids, 1 <= T_out <= %d)", T_out,
                c->max_tokens);
        return NULL;
    }
    if (check_ids(out_ids, (size_t)B * T_out, c->vocab_size, "output")) return NULL;

    const da_params *p = &m->params;
    da_tensor *x = embed_sequence(t, m, x0, timesteps, query_ids, prompt_ids, out_ids, B, T_out);
    const uint8_t *keep = sequence_keep(t, c, query_keep, prompt_keep, B, T_out);
    for (int l = 0; l < c->n_layers; l++) x = da_blk_decoder_layer(t, p, x, l, c->n_heads, LN_EPS, keep);
    /* only the output segment is read: norm and project those rows alone */
    x = da_narrow(t, x, 1, output_start(c), T_out);
    x = da_layernorm(t, x, da_params_leaf(t, p, "final_ln.weight"), da_params_leaf(t, p, "final_ln.bias"),
                     LN_EPS);
    return da_linear(t, x, da_params_leaf(t, p, "lm_head.weight"), NULL);   /* (B, T_out, V) */
}
