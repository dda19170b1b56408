/* Building blocks shared by the VAE and the UNet: ResBlock (optionally with
 * a time embedding), SpatialTransformer (self + cross attention),
 * down/upsampling convs, the sinusoidal timestep embedding, exp/clamp ops,
 * the default init and the JSON config reader/writer. See blocks.h. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "models/blocks.h"

/* ------------------------------------------------------------------------ */
/* exp(s * x)                                                               */
/* ------------------------------------------------------------------------ */

/* out (n) = exp(s * inp (n)) */
void da_exp_scaled_forward(float *out, const float *inp, float s, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = da_expf(s * inp[i]);
}

/* dinp (n) += dout * s * out: the derivative of exp(s x) is s exp(s x) */
void da_exp_scaled_backward(float *dinp, const float *dout, const float *out, float s, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] += dout[i] * (s * out[i]);
}

static void exp_scaled_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_exp_scaled_backward(x->grad, nd->out->grad, nd->out->data, nd->f[0], x->size);
}

da_tensor *da_exp_scaled(da_tape *t, da_tensor *x, float s)
{
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    da_exp_scaled_forward(out->data, x->data, s, x->size);
    da_node nd = {.backward = exp_scaled_backward_node, .out = out, .in = {x}, .f = {s}};
    da_tape_push(t, &nd);
    return out;
}

/* ------------------------------------------------------------------------ */
/* clamp                                                                    */
/* ------------------------------------------------------------------------ */

/* out (n) = min(max(inp (n), lo), hi) */
void da_clamp_forward(float *out, const float *inp, float lo, float hi, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = x < lo ? lo : (x > hi ? hi : x);
    }
}

/* dinp (n) += dout where lo <= inp <= hi (as torch.clamp), else nothing */
void da_clamp_backward(float *dinp, const float *dout, const float *inp, float lo, float hi, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        if (inp[i] >= lo && inp[i] <= hi) dinp[i] += dout[i];
}

static void clamp_backward_node(const da_node *nd)
{
    da_tensor *x = nd->in[0];
    if (x->grad) da_clamp_backward(x->grad, nd->out->grad, x->data, nd->f[0], nd->f[1], x->size);
}

da_tensor *da_clamp(da_tape *t, da_tensor *x, float lo, float hi)
{
    assert(lo <= hi);
    da_tensor *out = da_tensor_for_op(t, x->ndim, x->shape, &x, 1);
    da_clamp_forward(out->data, x->data, lo, hi, x->size);
    da_node nd = {.backward = clamp_backward_node, .out = out, .in = {x}, .f = {lo, hi}};
    da_tape_push(t, &nd);
    return out;
}

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

/* index of the weight that goes with a 1-D entry "X.bias" / "X.weight", or -1 */
static int sibling_weight(const da_params *p, int e)
{
    const char *name = p->names[e];
    size_t n = strlen(name);
    if (n < 5 || strcmp(name + n - 5, ".bias") != 0) return -1;
    char w[256];
    if (n - 5 + 8 >= sizeof w) return -1;
    memcpy(w, name, n - 5);
    strcpy(w + n - 5, ".weight");
    return da_params_find(p, w);
}

void da_blk_init_params(da_params *p, da_rng *rng)
{
    for (int e = 0; e < p->n; e++) {
        float *x = p->data + p->offset[e];
        size_t n = da_shape_size(p->ndim[e], p->shape[e]);
        int wi = p->ndim[e] >= 2 ? e : (p->ndim[e] == 1 ? sibling_weight(p, e) : -1);
        if (wi >= 0 && p->ndim[wi] >= 2) {
            /* Linear / Conv weight or its bias: fan_in = in * kh * kw */
            size_t fan_in = da_shape_size(p->ndim[wi] - 1, p->shape[wi] + 1);
            da_init_uniform(rng, x, n, 1.0f / sqrtf((float)fan_in));
        } else {
            size_t len = strlen(p->names[e]);
            int is_weight = len >= 7 && !strcmp(p->names[e] + len - 7, ".weight");
            /* norm affine: identity; anything else starts at zero */
            for (size_t i = 0; i < n; i++) x[i] = is_weight && p->ndim[e] == 1 ? 1.0f : 0.0f;
        }
    }
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
    da_tensor *h = da_groupnorm(t, x, leaf(t, p, prefix, sub, "weight"),
                                leaf(t, p, prefix, sub, "bias"), bc->groups, bc->gn_eps);
    return da_silu(t, h);
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

/* x (B, cin, H, W), temb_act (B, temb_dim) or NULL -> (B, cout, H, W) */
da_tensor *da_blk_resblock(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
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

/* Attention with projections: xq (B, Tq, C), xkv (B, Tk, Ckv) -> (B, Tq, C).
 * to_q/to_k/to_v carry no bias, to_out does. */
static da_tensor *attention_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                                da_tensor *xq, da_tensor *xkv, const uint8_t *keep, int n_heads)
{
    char s[64];
    snprintf(s, sizeof s, "%s.to_q", sub);
    da_tensor *q = linear_sub(t, p, prefix, s, xq);
    snprintf(s, sizeof s, "%s.to_k", sub);
    da_tensor *k = linear_sub(t, p, prefix, s, xkv);
    snprintf(s, sizeof s, "%s.to_v", sub);
    da_tensor *v = linear_sub(t, p, prefix, s, xkv);
    da_tensor *o = da_attention(t, q, k, v, n_heads, 0, keep);
    snprintf(s, sizeof s, "%s.to_out", sub);
    return linear_sub(t, p, prefix, s, o);
}

static da_tensor *layernorm_sub(da_tape *t, const da_params *p, const char *prefix, const char *sub,
                                da_tensor *x, float eps)
{
    return da_layernorm(t, x, leaf(t, p, prefix, sub, "weight"), leaf(t, p, prefix, sub, "bias"), eps);
}

/* x (B, C, H, W), context (B, T, ctx_dim), keep (B, T) or NULL -> (B, C, H, W) */
da_tensor *da_blk_transformer(da_tape *t, const da_params *p, const char *prefix, da_tensor *x,
                              da_tensor *context, const uint8_t *context_keep,
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
    h = da_add(t, h, attention_sub(t, p, prefix, "attn1", a, a, NULL, bc->n_heads));
    a = layernorm_sub(t, p, prefix, "ln2", h, bc->ln_eps);
    h = da_add(t, h, attention_sub(t, p, prefix, "attn2", a, context, context_keep, bc->n_heads));
    a = layernorm_sub(t, p, prefix, "ln3", h, bc->ln_eps);
    a = linear_sub(t, p, prefix, "ff.fc2", da_gelu(t, linear_sub(t, p, prefix, "ff.fc1", a)));
    h = da_add(t, h, a);
    h = da_permute(t, da_reshape(t, h, 4, img), to_image);
    h = conv_sub(t, p, prefix, "proj_out", h, 1, 0);
    return da_add(t, h, x);
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
    return conv_sub(t, p, prefix, NULL, da_upsample2x(t, x), 1, 1);
}

/* ------------------------------------------------------------------------ */
/* JSON configs                                                             */
/* ------------------------------------------------------------------------ */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            if (cap > (64u << 20)) {        /* a config is tiny: refuse huge files */
                errno = EFBIG;
                break;
            }
            char *nb = realloc(buf, cap);
            if (!nb) break;
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            int bad = ferror(f);
            fclose(f);
            if (bad) { free(buf); return NULL; }
            *len = n;
            return buf ? buf : calloc(1, 1);
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

/* a JSON number literal as an int in [lo, hi]: no fraction or exponent, and
 * no minus sign at all when lo >= 0 (so "-0" is refused too) */
static int json_int(const da_json_value *v, int lo, int hi, int *out)
{
    if (v->type != DA_JSON_NUMBER || strpbrk(v->str, ".eE") || (lo >= 0 && v->str[0] == '-')) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(v->str, &end, 10);
    if (errno || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int json_float(const da_json_value *v, float *out)
{
    if (v->type != DA_JSON_NUMBER) return -1;
    char *end;
    double x = strtod(v->str, &end);
    if (*end || !isfinite((float)x)) return -1;
    *out = (float)x;
    return 0;
}

/* one field from its JSON value; ints must lie in [lo, hi] */
static da_status cfg_set(const char *path, const da_cfg_field *f, const da_json_value *v, int lo, int hi)
{
    int n = f->count;
    const da_json_value *items = v;
    void *dst = f->ptr;
    if (f->kind == DA_CFG_INT_LIST) {
        if (v->type != DA_JSON_ARRAY || v->n < 1 || v->n > n)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be an array of 1 to %d integers", path, f->key, n);
        n = v->n;
        items = v->items;
        dst = ((const da_cfg_list *)f->ptr)->values;
    } else if (n > 1) {
        if (v->type != DA_JSON_ARRAY || v->n != n)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be an array of %d numbers", path, f->key, n);
        items = v->items;
    }
    for (int i = 0; i < n; i++) {
        int bad = f->kind == DA_CFG_FLOAT ? json_float(&items[i], (float *)dst + i)
                                          : json_int(&items[i], lo, hi, (int *)dst + i);
        if (bad && f->kind == DA_CFG_FLOAT)
            return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must be a finite number", path, f->key);
        if (bad) return da_fail(DA_ERR_FORMAT, "%s: \"%s\" must hold integers in [%d, %d]", path, f->key, lo, hi);
    }
    if (f->kind == DA_CFG_INT_LIST) *((const da_cfg_list *)f->ptr)->len = n;
    return DA_OK;
}

/* strict: every field exactly once */
static da_status cfg_read(const char *path, const da_cfg_field *f, int n, int strict, int lo, int hi)
{
    size_t len = 0;
    char *text = read_text(path, &len);
    if (!text) return da_fail(DA_ERR_IO, "cannot read config %s: %s", path, strerror(errno));
    da_json_value root;
    char err[256];
    int bad = da_json_parse(text, len, &root, err, sizeof err);
    free(text);
    if (bad) return da_fail(DA_ERR_FORMAT, "%s: %s", path, err);
    da_status s = DA_OK;
    uint64_t seen = 0;  /* a bit per field (strict configs have < 64 fields) */
    assert(!strict || n < 64);
    if (root.type != DA_JSON_OBJECT) s = da_fail(DA_ERR_FORMAT, "%s: expected a JSON object", path);
    for (int i = 0; s == DA_OK && i < root.n; i++) {
        const da_json_value *v = &root.items[i];
        int k = 0;
        while (k < n && (strlen(f[k].key) != v->key_len || strcmp(f[k].key, v->key) != 0)) k++;
        if (k == n) s = da_fail(DA_ERR_FORMAT, "%s: unknown key \"%s\"", path, v->key);
        else if (strict && (seen >> k & 1)) s = da_fail(DA_ERR_FORMAT, "%s: duplicate key \"%s\"", path, v->key);
        else s = cfg_set(path, &f[k], v, lo, hi);
        if (k < n && strict) seen |= (uint64_t)1 << k;
    }
    for (int k = 0; s == DA_OK && strict && k < n; k++)
        if (!(seen >> k & 1)) s = da_fail(DA_ERR_FORMAT, "%s: missing key \"%s\"", path, f[k].key);
    da_json_free(&root);
    return s;
}

da_status da_cfg_read(const char *path, const da_cfg_field *f, int n)
{
    return cfg_read(path, f, n, 0, -2147483647, 2147483647);
}

da_status da_cfg_read_strict(const char *path, const da_cfg_field *f, int n, int int_max)
{
    return cfg_read(path, f, n, 1, 0, int_max);
}

static void write_value(FILE *fp, const da_cfg_field *f, int i)
{
    if (f->kind == DA_CFG_INT_LIST) fprintf(fp, "%d", ((const da_cfg_list *)f->ptr)->values[i]);
    else if (f->kind == DA_CFG_INT) fprintf(fp, "%d", ((const int *)f->ptr)[i]);
    else fprintf(fp, "%.9g", (double)((const float *)f->ptr)[i]);  /* 9 digits: f32 round-trips */
}

da_status da_cfg_write(const char *path, const da_cfg_field *f, int n)
{
    for (int k = 0; k < n; k++)
        for (int i = 0; f[k].kind == DA_CFG_FLOAT && i < f[k].count; i++)
            if (!isfinite(((const float *)f[k].ptr)[i]))
                return da_fail(DA_ERR_INVALID, "config value \"%s\" is not finite", f[k].key);
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return da_fail(DA_ERR_INVALID, "path too long: %s", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return da_fail(DA_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    fprintf(fp, "{\n");
    for (int k = 0; k < n; k++) {
        int list = f[k].kind == DA_CFG_INT_LIST, array = list || f[k].count > 1;
        int count = list ? *((const da_cfg_list *)f[k].ptr)->len : f[k].count;
        fprintf(fp, "  \"%s\": ", f[k].key);
        if (array) fputc('[', fp);
        for (int i = 0; i < count; i++) {
            if (i) fprintf(fp, ", ");
            write_value(fp, &f[k], i);
        }
        if (array) fputc(']', fp);
        fprintf(fp, k + 1 < n ? ",\n" : "\n");
    }
    fprintf(fp, "}\n");
    int bad = fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0;
    int e = errno;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, path) != 0) {
        if (!bad) e = errno;
        remove(tmp);
        return da_fail(DA_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    return DA_OK;
}
