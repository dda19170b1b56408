/* Building blocks shared by the models (src/models/blocks.c).
 *
 * A block is forward code over the core ops. Its parameters live in the
 * model's da_params table under a prefix ("down.0.res"), with the names a
 * torch.nn.Module of the same structure would have; the *_add_* functions
 * register them at model creation, the forward functions fetch them by name.
 * Optional parts are discovered from the table (a ResBlock has a
 * nin_shortcut iff "PREFIX.nin_shortcut.weight" exists).
 *
 * Also here: the sinusoidal timestep embedding. Elsewhere: the ops exp(s*x)
 * and clamp (core/ops_unary.h), the default parameter init
 * (models/init.c, declared in models/params.h) and the JSON config
 * reader/writer (core/config.h). */
#ifndef DA_MODELS_BLOCKS_H
#define DA_MODELS_BLOCKS_H

#include "dalign/models.h"

/* ---- timestep embedding -------------------------------------------------- */

/* Sinusoidal timestep embedding, diffusers' get_timestep_embedding with
 * flip_sin_to_cos=True, downscale_freq_shift=0, max_period 10000:
 * out (B, dim) = [cos(t f_i) | sin(t f_i)], f_i = exp(-ln(10000) i / (dim/2)),
 * i < dim/2. dim must be even. The result is a constant (no gradient to t). */
void da_timestep_embedding_forward(float *out, const float *timesteps, int B, int dim);
da_tensor *da_timestep_embedding(da_tape *t, const float *timesteps, int B, int dim);

/* ---- parameters ---------------------------------------------------------- */

/* Every model registers its tensors through these (and da_params_add for a
 * lone tensor such as an embedding table), in forward order. */

/* PREFIX.weight (cout, cin, k, k), PREFIX.bias (cout) */
void da_blk_add_conv(da_params *p, const char *prefix, int cin, int cout, int k);
/* PREFIX.weight (out, in) and, when bias, PREFIX.bias (out) */
void da_blk_add_linear(da_params *p, const char *prefix, int in, int out, int bias);
/* GroupNorm / LayerNorm affine: PREFIX.weight (C), PREFIX.bias (C) */
void da_blk_add_norm(da_params *p, const char *prefix, int C);
/* ResBlock: norm1, conv1, [time_proj (temb_dim -> cout) iff temb_dim > 0],
 * norm2, conv2, [nin_shortcut (1x1) iff cin != cout] */
void da_blk_add_resblock(da_params *p, const char *prefix, int cin, int cout, int temb_dim);
/* SpatialTransformer: norm, proj_in, ln1, attn1.to_{q,k,v,out}, ln2,
 * attn2.to_{q,k,v,out} (k, v from ctx_dim), ln3, ff.fc1, ff.fc2, proj_out */
void da_blk_add_transformer(da_params *p, const char *prefix, int C, int ctx_dim);

/* CNN tower (CLIP's image tower; the reward net's, FiLM-conditioned):
 * PREFIX.conv_in (3x3, cin -> ch[0]), then per block i < n_blocks
 * PREFIX.blocks.I.norm (GroupNorm ch[i]), [PREFIX.blocks.I.film (Linear
 * film_dim -> 2 ch[i])], PREFIX.blocks.I.conv (3x3, ch[i] -> ch[i+1]), then
 * PREFIX.norm_out, [PREFIX.film_out]; the films iff film_dim > 0. */
void da_blk_add_tower(da_params *p, const char *prefix, int cin, const int *ch, int n_blocks, int film_dim);

/* ---- forward blocks ----------------------------------------------------- */

typedef struct da_blk_cfg {
    int groups;      /* GroupNorm groups */
    float gn_eps;    /* GroupNorm eps */
    float ln_eps;    /* LayerNorm eps (transformer) */
    int n_heads;     /* attention heads (transformer) */
} da_blk_cfg;

/* Conv2d by name: x (B, cin, H, W) -> (B, cout, OH, OW) */
da_tensor *da_blk_conv(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                       int stride, int pad);
/* Linear by name (bias optional in the table): x (..., in) -> (..., out) */
da_tensor *da_blk_linear(da_tape *t, const da_params *p, const char *prefix, da_tensor *x);
/* silu(groupnorm(x)) by name: x (B, C, H, W) -> same */
da_tensor *da_blk_norm_silu(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                            const da_blk_cfg *bc);

/* ResBlock: x (B, cin, H, W), temb_act (B, temb_dim) = silu(time embedding)
 * or NULL (VAE) -> (B, cout, H, W).
 * h = conv1(silu(norm1(x))); h += time_proj(temb_act)[:, :, None, None];
 * h = conv2(silu(norm2(h))); out = (nin_shortcut(x) or x) + h.
 * (SD applies silu to the embedding inside every block; the caller applies
 * it once and shares the result: same values.) */
da_tensor *da_blk_resblock(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                           da_tensor *temb_act, const da_blk_cfg *bc);

/* SpatialTransformer (one block): x (B, C, H, W), context (B, T, ctx_dim),
 * context_keep (B, T) or NULL (0 = padding key) -> (B, C, H, W).
 * kv: the cross-attention's keys and values of this context, (B, T, C)
 * each, from da_blk_cross_kv (a caller whose context does not change keeps
 * them across calls); NULL: computed here from context (the same bits). */
typedef struct da_blk_kv {
    da_tensor *k, *v;
} da_blk_kv;
da_tensor *da_blk_transformer(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                              da_tensor *context, const uint8_t *context_keep, const da_blk_kv *kv,
                              const da_blk_cfg *bc);
/* the cross-attention's keys and values of block PREFIX for context (B, T, ctx_dim) */
da_blk_kv da_blk_cross_kv(da_tape *t, const da_params *p, const char *prefix, da_tensor *context);

/* CNN tower (see da_blk_add_tower): x (B, cin, S, S), g (B, film_dim) or NULL
 * -> (B, ch[n_blocks]):
 *   h = conv_in(x); per block i: h = conv_i(silu(film_i(gn_i(h), g)))  stride 2
 *   out = mean_HW(silu(film_out(norm_out(h), g)))
 *   film(y, g) = y * (1 + scale) + shift, [scale, shift] = Linear(g) per
 *   channel; no film when g is NULL.
 * stem, if not NULL, gets mean_HW(silu(conv_in(x))) (B, ch[0]): features
 * taken before any normalisation. */
da_tensor *da_blk_tower(da_tape *t, const da_params *p, const char *prefix, da_tensor *x, da_tensor *g,
                        int n_blocks, const da_blk_cfg *bc, da_tensor **stem);

/* Downsample: conv k3 s2 p1 named PREFIX: (B, C, H, W) -> (B, C, H/2, W/2) */
da_tensor *da_blk_downsample(da_tape *t, const da_params *p, const char *prefix, da_tensor *x);
/* Upsample: nearest x2 then conv k3 p1 named PREFIX: (B, C, H, W) -> (B, C, 2H, 2W) */
da_tensor *da_blk_upsample(da_tape *t, const da_params *p, const char *prefix, da_tensor *x);

/* The pre-LN transformer layer of the text encoder and the refiner:
 * "layers.L.ln1", "layers.L.attn.{q,k,v,out}_proj", "layers.L.ln2",
 * "layers.L.mlp.fc1" (D -> H), "layers.L.mlp.fc2" (H -> D), registered in
 * forward order; the layer maps x (B, T, D) to
 *   x += out_proj(causal_attention(ln1(x), keys masked by keep (B, T) or NULL))
 *   x += fc2(gelu(fc1(ln2(x)))) */
void da_blk_add_decoder_layer(da_params *p, int l, int D, int H);
da_tensor *da_blk_decoder_layer(da_tape *t, const da_params *p, da_tensor *x, int l, int n_heads, float ln_eps,
                                const uint8_t *keep);

#endif
