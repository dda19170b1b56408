/* Building blocks shared by the models: ResBlock (optionally with a time
 * embedding), SpatialTransformer (self + cross attention), the CNN tower,
 * down/upsampling convs and the sinusoidal timestep embedding; each with the
 * function that registers its parameters and the forward that uses them.
 * See blocks.h; docs/models.md says how to go from a tensor name to the
 * line that uses it. */
#include <assert.h>
#include <math.h>
#include <stdio.h>

#include "models/blocks.h"

/* ------------------------------------------------------------------------ */
/* timestep embedding                                                       */
/* ------------------------------------------------------------------------ */

/* out (B, dim) = [cos(t f) | sin(t f)] for timesteps (B). The frequencies
 * follow diffusers step by step in float32 (exponent = -ln(1e4) * i, / half,
 * exp; then t * f) so the arguments agree with PyTorch's bit for bit up to
 * exp's last ulp; sin and cos are taken in double and rounded once. */
void da_timestep_embedding_forward(float *out, const float *timesteps, int B, int dim)
{
    assert(dim > 0 && dim % 2 == 0);
    int half = dim / 2;
    const float neg_log_period = (float)-log(10000.0);
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * dim;
        for (int i = 0; i < half; i++) {
            float e = neg_log_period * (float)i;
            float f = da_expf(e / (float)half);
            double arg = (double)(timesteps[b] * f);
            o[i] = (float)cos(arg);
            o[half + i] = (float)sin(arg);
        }
    }
}

da_tensor *da_timestep_embedding(da_tape *t, const float *timesteps, int B, int dim)
{
    int shape[2] = {B, dim};
    da_tensor *out = da_tensor_new(t, 2, shape, 0);
    da_timestep_embedding_forward(out->data, timesteps, B, dim);
    return out;
}

/* ------------------------------------------------------------------------ */
/* parameter tables                                                         */
/* ------------------------------------------------------------------------ */

/* "PREFIX.SUB.LEAF" (SUB may be NULL) into buf */
static const char *pname(char *buf, size_t n, const char *prefix, const char *sub, const char *leaf)
{
    int w = sub ? snprintf(buf, n, "%s.%s.%s", prefix, sub, leaf)
                : snprintf(buf, n, "%s.%s", prefix, leaf);
    assert(w > 0 && (size_t)w < n);
    (void)w;
    return buf;
}

static void add_entry(da_params *p, const char *prefix, const char *sub, const char *leaf,
                      int ndim, const int *shape)
{
    char name[256];
    da_params_add(p, pname(name, sizeof name, prefix, sub, leaf), ndim, shape);
}

static void add_conv_sub(da_params *p, const char *prefix, const char *sub, int cin, int cout, int k)
{
    int w[4] = {cout, cin, k, k}, b[1] = {cout};
    add_entry(p, prefix, sub, "weight", 4, w);
    add_entry(p, prefix, sub, "bias", 1, b);
}

static void add_linear_sub(da_params *p, const char *prefix, const char *sub, int in, int out, int bias)
{
    int w[2] = {out, in}, b[1] = {out};
    add_entry(p, prefix, sub, "weight", 2, w);
    if (bias) add_entry(p, prefix, sub, "bias", 1, b);
}

static void add_norm_sub(da_params *p, const char *prefix, const char *sub, int C)
{
    int s[1] = {C};
    add_entry(p, prefix, sub, "weight", 1, s);
    add_entry(p, prefix, sub, "bias", 1, s);
}

void da_blk_add_conv(da_params *p, const char *prefix, int cin, int cout, int k)
{
    add_conv_sub(p, prefix, NULL, cin, cout, k);
}

void da_blk_add_linear(da_params *p, const char *prefix, int in, int out, int bias)
{
    add_linear_sub(p, prefix, NULL, in, out, bias);
}

void da_blk_add_norm(da_params *p, const char *prefix, int C) { add_norm_sub(p, prefix, NULL, C); }

void da_blk_add_resblock(da_params *p, const char *prefix, int cin, int cout, int temb_dim)
{
    add_norm_sub(p, prefix, "norm1", cin);
    add_conv_sub(p, prefix, "conv1", cin, cout, 3);
    if (temb_dim > 0) add_linear_sub(p, prefix, "time_proj", temb_dim, cout, 1);
    add_norm_sub(p, prefix, "norm2", cout);
    add_conv_sub(p, prefix, "conv2", cout, cout, 3);
    if (cin != cout) add_conv_sub(p, prefix, "nin_shortcut", cin, cout, 1);
}

void da_blk_add_tower(da_params *p, const char *prefix, int cin, const int *ch, int n_blocks, int film_dim)
{
    char sub[64];
    add_conv_sub(p, prefix, "conv_in", cin, ch[0], 3);
    for (int i = 0; i < n_blocks; i++) {
        snprintf(sub, sizeof sub, "blocks.%d.norm", i);
        add_norm_sub(p, prefix, sub, ch[i]);
        if (film_dim > 0) {
            snprintf(sub, sizeof sub, "blocks.%d.film", i);
            add_linear_sub(p, prefix, sub, film_dim, 2 * ch[i], 1);
        }
        snprintf(sub, sizeof sub, "blocks.%d.conv", i);
        add_conv_sub(p, prefix, sub, ch[i], ch[i + 1], 3);
    }
    add_norm_sub(p, prefix, "norm_out", ch[n_blocks]);
    if (film_dim > 0) add_linear_sub(p, prefix, "film_out", film_dim, 2 * ch[n_blocks], 1);
}

void da_blk_add_transformer(da_params *p, const char *prefix, int C, int ctx_dim)
{
    add_norm_sub(p, prefix, "norm", C);
    add_conv_sub(p, prefix, "proj_in", C, C, 1);
    add_norm_sub(p, prefix, "ln1", C);
    add_linear_sub(p, prefix, "attn1.to_q", C, C, 0);
    add_linear_sub(p, prefix, "attn1.to_k", C, C, 0);
    add_linear_sub(p, prefix, "attn1.to_v", C, C, 0);
    add_linear_sub(p, prefix, "attn1.to_out", C, C, 1);
    add_norm_sub(p, prefix, "ln2", C);
    add_linear_sub(p, prefix, "attn2.to_q", C, C, 0);
    add_linear_sub(p, prefix, "attn2.to_k", ctx_dim, C, 0);
    add_linear_sub(p, prefix, "attn2.to_v", ctx_dim, C, 0);
    add_linear_sub(p, prefix, "attn2.to_out", C, C, 1);
    add_norm_sub(p, prefix, "ln3", C);
    add_linear_sub(p, prefix, "ff.fc1", C, 4 * C, 1);
    add_linear_sub(p, prefix, "ff.fc2", 4 * C, C, 1);
    add_conv_sub(p, prefix, "proj_out", C, C, 1);
}

/* ------------------------------------------------------------------------ */
/* forward blocks                                                           */
/* ------------------------------------------------------------------------ */

static da_tensor *leaf(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                       const char *name)
{
    char buf[256];
    return da_params_leaf(t, p, "%s", pname(buf, sizeof buf, prefix, sub, name));
}

/* the entry or NULL when the table has no such parameter (optional bias) */
static da_tensor *leaf_opt(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                           const char *name)
{
    char buf[256];
    if (da_params_find(p, pname(buf, sizeof buf, prefix, sub, name)) < 0) return NULL;
    return da_params_leaf(t, p, "%s", buf);
}

static int has_module(const da_params *p, const char *prefix, const char *sub)
{
    char buf[256];
    return da_params_find(p, pname(buf, sizeof buf, prefix, sub, "weight")) >= 0;
}

static da_tensor *conv_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                           da_tensor *x, int stride, int pad)
{
    return da_conv2d(t, x, leaf(t, p, prefix, sub, "weight"), leaf_opt(t, p, prefix, sub, "bias"),
                     stride, pad);
}

static da_tensor *linear_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                             da_tensor *x)
{
    return da_linear(t, x, leaf(t, p, prefix, sub, "weight"), leaf_opt(t, p, prefix, sub, "bias"));
}

/* x (B, C, H, W) -> silu(groupnorm(x)) */
static da_tensor *norm_silu_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                                da_tensor *x, const da_blk_cfg *bc)
{
    /* one fused op, the same bits as da_silu(da_groupnorm(...)) */
    return da_groupnorm_silu(t, x, leaf(t, p, prefix, sub, "weight"), leaf(t, p, prefix, sub, "bias"), bc->groups,
                             bc->gn_eps);
}

da_tensor *da_blk_conv(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                       int stride, int pad)
{
    return conv_sub(t, p, prefix, NULL, x, stride, pad);
}

da_tensor *da_blk_linear(da_tape *t, const da_params *p, const char *prefix, da_tensor *x)
{
    return linear_sub(t, p, prefix, NULL, x);
}

da_tensor *da_blk_norm_silu(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                            const da_blk_cfg *bc)
{
    return norm_silu_sub(t, p, prefix, NULL, x, bc);
}

static da_tensor *resblock(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                           da_tensor *temb_act, const da_blk_cfg *bc)
{
    da_tensor *h = conv_sub(t, p, prefix, "conv1", norm_silu_sub(t, p, prefix, "norm1", x, bc), 1, 1);
    if (temb_act) {
        /* (B, cout) -> (B, cout, 1, 1), broadcast over H, W */
        da_tensor *e = linear_sub(t, p, prefix, "time_proj", temb_act);
        int shape[4] = {e->shape[0], e->shape[1], 1, 1};
        h = da_add(t, h, da_reshape(t, e, 4, shape));
    }
    h = conv_sub(t, p, prefix, "conv2", norm_silu_sub(t, p, prefix, "norm2", h, bc), 1, 1);
    da_tensor *skip = has_module(p, prefix, "nin_shortcut") ? conv_sub(t, p, prefix, "nin_shortcut", x, 1, 0)
                                                            : x;
    return da_add(t, skip, h);
}

/* x (B, cin, H, W), temb_act (B, temb_dim) or NULL -> (B, cout, H, W).
 * Each public block runs in an inference scope (core.h): without gradients
 * its intermediates are given back as it returns. */
da_tensor *da_blk_resblock(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                           da_tensor *temb_act, const da_blk_cfg *bc)
{
    da_tape_scope s = da_tape_scope_begin(t);
    return da_tape_scope_end(t, s, resblock(t, p, prefix, x, temb_act, bc));
}

/* the sub-names of one attention's projections: to_q, to_k, to_v (no
 * bias) and to_out (with bias) */
typedef struct attn_names {
    const char *to_q, *to_k, *to_v, *to_out;
} attn_names;

/* Attention with projections: xq (B, Tq, C), xkv (B, Tk, Ckv) -> (B, Tq, C);
 * kv, when given, holds k and v already projected from xkv */
static da_tensor *attention_sub(da_tape *t, const da_params *p, const char *prefix, const attn_names *n,
                                da_tensor *xq, da_tensor *xkv, const da_blk_kv *kv, const uint8_t *keep,
                                int n_heads)
{
    da_tensor *q = linear_sub(t, p, prefix, n->to_q, xq);                 /* W_q: (C, C) */
    da_tensor *k = kv ? kv->k : linear_sub(t, p, prefix, n->to_k, xkv);   /* W_k: (C, Ckv) */
    da_tensor *v = kv ? kv->v : linear_sub(t, p, prefix, n->to_v, xkv);   /* W_v: (C, Ckv) */
    da_tensor *o = da_attention(t, q, k, v, n_heads, 0, keep);
    return linear_sub(t, p, prefix, n->to_out, o);
}

static da_tensor *layernorm_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                                da_tensor *x, float eps)
{
    return da_layernorm(t, x, leaf(t, p, prefix, sub, "weight"), leaf(t, p, prefix, sub, "bias"), eps);
}

/* x (B, C, H, W), context (B, T, ctx_dim), keep (B, T) or NULL -> (B, C, H, W) */
/* the full sub-names as literals, so grep finds the line that uses a weight */
static const attn_names self_attn = {"attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out"};
static const attn_names cross_attn = {"attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out"};

da_blk_kv da_blk_cross_kv(da_tape *t, const da_params *p, const char *prefix, da_tensor *context)
{
    da_blk_kv kv = {linear_sub(t, p, prefix, cross_attn.to_k, context),
                    linear_sub(t, p, prefix, cross_attn.to_v, context)};
    return kv;
}

static da_tensor *transformer(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                              da_tensor *context, const uint8_t *context_keep, const da_blk_kv *kv,
                              const da_blk_cfg *bc)
{
    assert(x->ndim == 4 && context->ndim == 3 && context->shape[0] == x->shape[0]);
    int B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    da_tensor *h = da_groupnorm(t, x, leaf(t, p, prefix, "norm", "weight"),
                                leaf(t, p, prefix, "norm", "bias"), bc->groups, bc->gn_eps);
    h = conv_sub(t, p, prefix, "proj_in", h, 1, 0);
    /* (B, C, H, W) -> (B, H, W, C) -> (B, HW, C): tokens are pixels */
    static const int to_tokens[4] = {0, 2, 3, 1}, to_image[4] = {0, 3, 1, 2};
    int seq[3] = {B, H * W, C}, img[4] = {B, H, W, C};
    h = da_reshape(t, da_permute(t, h, to_tokens), 3, seq);
    da_tensor *a = layernorm_sub(t, p, prefix, "ln1", h, bc->ln_eps);
    h = da_add(t, h, attention_sub(t, p, prefix, &self_attn, a, a, NULL, NULL, bc->n_heads));
    a = layernorm_sub(t, p, prefix, "ln2", h, bc->ln_eps);   /* queries from the pixels, keys/values from the text */
    h = da_add(t, h, attention_sub(t, p, prefix, &cross_attn, a, context, kv, context_keep, bc->n_heads));
    a = layernorm_sub(t, p, prefix, "ln3", h, bc->ln_eps);
    a = linear_sub(t, p, prefix, "ff.fc2", da_gelu(t, linear_sub(t, p, prefix, "ff.fc1", a)));
    h = da_add(t, h, a);
    h = da_permute(t, da_reshape(t, h, 4, img), to_image);
    h = conv_sub(t, p, prefix, "proj_out", h, 1, 0);
    return da_add(t, h, x);
}

da_tensor *da_blk_transformer(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                              da_tensor *context, const uint8_t *context_keep, const da_blk_kv *kv,
                              const da_blk_cfg *bc)
{
    da_tape_scope s = da_tape_scope_begin(t);
    return da_tape_scope_end(t, s, transformer(t, p, prefix, x, context, context_keep, kv, bc));
}

/* silu(film(gn(x), g)) with the GroupNorm PREFIX.NORM and the FiLM Linear
 * PREFIX.FILM over g (B, D) -> (B, 2C) broadcast over H, W; g NULL: no film */
static da_tensor *norm_film_silu(da_tape *t, const da_params *p, const char *prefix, const char *norm,
                                 const char *film, da_tensor *x, da_tensor *g, const da_blk_cfg *bc)
{
    if (!g) return norm_silu_sub(t, p, prefix, norm, x, bc);
    int B = x->shape[0], C = x->shape[1], shape[4] = {B, C, 1, 1};
    da_tensor *y = da_groupnorm(t, x, leaf(t, p, prefix, norm, "weight"), leaf(t, p, prefix, norm, "bias"),
                                bc->groups, bc->gn_eps);
    da_tensor *ss = linear_sub(t, p, prefix, film, g);
    da_tensor *scale = da_reshape(t, da_narrow(t, ss, 1, 0, C), 4, shape);
    da_tensor *shift = da_reshape(t, da_narrow(t, ss, 1, C, C), 4, shape);
    return da_silu(t, da_add(t, da_mul(t, y, da_add_scalar(t, scale, 1.0f)), shift));
}

da_tensor *da_blk_tower(da_tape *t, const da_params *p, const char *prefix, da_tensor *x, da_tensor *g,
                        int n_blocks, const da_blk_cfg *bc, da_tensor **stem)
{
    da_tensor *h = conv_sub(t, p, prefix, "conv_in", x, 1, 1);
    /* pooled before any GroupNorm: absolute intensities survive here */
    if (stem) *stem = da_mean(t, da_silu(t, h), 2);
    for (int i = 0; i < n_blocks; i++) {
        char norm[64], film[64], conv[64];
        snprintf(norm, sizeof norm, "blocks.%d.norm", i);
        snprintf(film, sizeof film, "blocks.%d.film", i);
        snprintf(conv, sizeof conv, "blocks.%d.conv", i);
        h = conv_sub(t, p, prefix, conv, norm_film_silu(t, p, prefix, norm, film, h, g, bc), 2, 1);
    }
    h = norm_film_silu(t, p, prefix, "norm_out", "film_out", h, g, bc);
    return da_mean(t, h, 2);  /* (B, C, H, W) -> (B, C) */
}

da_tensor *da_blk_downsample(da_tape *t, const da_params *p, const char *prefix, da_tensor *x)
{
    return conv_sub(t, p, prefix, NULL, x, 2, 1);
}

da_tensor *da_blk_upsample(da_tape *t, const da_params *p, const char *prefix, da_tensor *x)
{
    da_tape_scope s = da_tape_scope_begin(t);
    return da_tape_scope_end(t, s, conv_sub(t, p, prefix, NULL, da_upsample2x(t, x), 1, 1));
}

/* ------------------------------------------------------------------------ */
/* Pre-LN transformer layer (text encoder, refiner)                         */
/* ------------------------------------------------------------------------ */

/* "layers.L.SUB" into buf (64 bytes) */
static const char *layer_name(char *buf, int l, const char *sub)
{
    snprintf(buf, 64, "layers.%d.%s", l, sub);
    return buf;
}

void da_blk_add_decoder_layer(da_params *p, int l, int D, int H)
{
    char n[64];
    da_blk_add_norm(p, layer_name(n, l, "ln1"), D);
    da_blk_add_linear(p, layer_name(n, l, "attn.q_proj"), D, D, 1);
    da_blk_add_linear(p, layer_name(n, l, "attn.k_proj"), D, D, 1);
    da_blk_add_linear(p, layer_name(n, l, "attn.v_proj"), D, D, 1);
    da_blk_add_linear(p, layer_name(n, l, "attn.out_proj"), D, D, 1);
    da_blk_add_norm(p, layer_name(n, l, "ln2"), D);
    da_blk_add_linear(p, layer_name(n, l, "mlp.fc1"), D, H, 1);
    da_blk_add_linear(p, layer_name(n, l, "mlp.fc2"), H, D, 1);
}

/* Linear with the "layers.L.<sub>.weight"/".bias" */
static da_tensor *layer_linear(da_tape *t, const da_params *p, da_tensor *x, int l, const char *sub)
{
    return da_linear(t, x, da_params_leaf(t, p, "layers.%d.%s.weight", l, sub),
                     da_params_leaf(t, p, "layers.%d.%s.bias", l, sub));
}

static da_tensor *layer_norm(da_tape *t, const da_params *p, da_tensor *x, int l, const char *sub, float eps)
{
    return da_layernorm(t, x, da_params_leaf(t, p, "layers.%d.%s.weight", l, sub),
                        da_params_leaf(t, p, "layers.%d.%s.bias", l, sub), eps);
}

static da_tensor *decoder_layer(da_tape *t, const da_params *p, da_tensor *x, int l, int n_heads, float ln_eps,
                                const uint8_t *keep)
{
    /* x + out_proj(attention(ln1(x))), causal with key padding */
    da_tensor *h = layer_norm(t, p, x, l, "ln1", ln_eps);
    da_tensor *q = layer_linear(t, p, h, l, "attn.q_proj");
    da_tensor *k = layer_linear(t, p, h, l, "attn.k_proj");
    da_tensor *v = layer_linear(t, p, h, l, "attn.v_proj");
    h = da_attention(t, q, k, v, n_heads, 1, keep);
    x = da_add(t, x, layer_linear(t, p, h, l, "attn.out_proj"));
    /* x + fc2(gelu(fc1(ln2(x)))) */
    h = layer_norm(t, p, x, l, "ln2", ln_eps);
    h = da_gelu(t, layer_linear(t, p, h, l, "mlp.fc1"));
    return da_add(t, x, layer_linear(t, p, h, l, "mlp.fc2"));
}

da_tensor *da_blk_decoder_layer(da_tape *t, const da_params *p, da_tensor *x, int l, int n_heads, float ln_eps,
                                const uint8_t *keep)
{
    da_tape_scope s = da_tape_scope_begin(t);
    return da_tape_scope_end(t, s, decoder_layer(t, p, x, l, n_heads, ln_eps, keep));
}
